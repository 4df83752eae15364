/*
 * ember/status.h: status codes, error detail messages, logging, invariants.
 *
 * Every public ember function that can fail returns an ember_status: EMBER_OK (0)
 * or a negative error. The status list is one X-macro, so the enum, the names and
 * the messages cannot drift apart. After a failure, ember_last_error() returns a
 * detail message for the calling thread that starts with the status name and says
 * what failed and where:
 *
 *     ember_status st = ember_tensor_create(&params, &t);
 *     if (st != EMBER_OK) {
 *         fprintf(stderr, "%s\n", ember_last_error());
 *         // "EMBER_ERR_OVERFLOW: ember_tensor_create: shape (4294967296, 4294967296) ..."
 *     }
 *
 * Library code never prints to stdout and never exits. Messages of interest go to the
 * log callback (stderr by default); broken internal invariants go through
 * EMBER_ASSERT to a replaceable abort hook.
 *
 * Thread safety: all functions here are thread-safe. The detail message is
 * thread-local and stays valid until the next failing ember call on the same thread.
 */
#ifndef EMBER_STATUS_H
#define EMBER_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message). Append only: values are part of the ABI. */
#define EMBER_STATUS_LIST(X)                                                         \
    X(OK, 0, "success")                                                              \
    X(ERR_INVALID_ARGUMENT, -1, "invalid argument")                                  \
    X(ERR_OUT_OF_MEMORY, -2, "out of memory (allocation exceeds budget or failed)")  \
    X(ERR_INDEX, -3, "index out of range")                                           \
    X(ERR_SHAPE, -4, "shape mismatch or invalid shape")                              \
    X(ERR_DTYPE, -5, "unsupported or mismatched dtype")                              \
    X(ERR_DEVICE, -6, "device unavailable or mismatched")                            \
    X(ERR_UNSUPPORTED, -7, "feature not built into this ember")                      \
    X(ERR_OVERFLOW, -8, "size arithmetic overflow")                                  \
    X(ERR_IO, -9, "input/output error")                                              \
    X(ERR_PARSE, -10, "malformed input")                                             \
    X(ERR_FORMAT, -11, "bad file format or version")                                 \
    X(ERR_CHECKSUM, -12, "checksum mismatch")                                        \
    X(ERR_NOT_FOUND, -13, "not found")                                               \
    X(ERR_STATE, -14, "object in wrong state for this call")                         \
    X(ERR_CUDA, -15, "CUDA runtime error")                                           \
    X(ERR_CUBLAS, -16, "cuBLAS error")                                               \
    X(ERR_CUSPARSE, -17, "cuSPARSE error")                                           \
    X(ERR_NCCL, -18, "NCCL error")                                                   \
    X(ERR_MPI, -19, "MPI error")                                                     \
    X(ERR_LMDB, -20, "LMDB error")                                                   \
    X(ERR_CANCELLED, -21, "operation cancelled")                                     \
    X(ERR_TIMEOUT, -22, "operation timed out")                                       \
    X(ERR_INTERNAL, -23, "internal error")                                           \
    X(ERR_STORE_FULL, -24, "store full (LMDB map size or transaction limit reached)")

typedef enum ember_status {
#define EMBER__STATUS_ENUM(name, value, msg) EMBER_##name = value,
    EMBER_STATUS_LIST(EMBER__STATUS_ENUM)
#undef EMBER__STATUS_ENUM
} ember_status;

/** Number of distinct statuses (EMBER_OK included). */
#define EMBER_STATUS_COUNT 25

/** Short message for a status ("out of memory ..."); "unknown status" otherwise. */
const char *ember_strerror(ember_status st);
/** Enum name of a status ("EMBER_ERR_OUT_OF_MEMORY"); "EMBER_UNKNOWN" otherwise. */
const char *ember_status_name(ember_status st);
/** The status at position i of the list (0 <= i < EMBER_STATUS_COUNT), for iteration. */
ember_status ember_status_at(int i);

/**
 * Detail message of the last failure on this thread ("" if none). Valid until the
 * next failing ember call on this thread.
 */
const char *ember_last_error(void);
/** Status of the last failure on this thread (EMBER_OK if none or cleared). */
ember_status ember_last_status(void);
/** Forget the last failure on this thread. */
void ember_clear_error(void);

/* ---- logging ---- */

typedef enum ember_log_level {
    EMBER_LOG_DEBUG,
    EMBER_LOG_INFO,
    EMBER_LOG_WARN,
    EMBER_LOG_ERROR,
    EMBER_LOG_LEVEL_COUNT
} ember_log_level;

/** Receives one formatted message (no trailing newline). May be called from any thread. */
typedef void (*ember_log_fn)(ember_log_level level, const char *msg, void *user);

/** Install a log callback (NULL restores the default, which writes to stderr). */
void ember_log_set_callback(ember_log_fn fn, void *user);
/** Messages below this level are dropped. Default: WARN, or $EMBER_LOG (debug|info|warn|error). */
void ember_log_set_level(ember_log_level level);
ember_log_level ember_log_get_level(void);
/** Log a message through the installed callback (printf-style). */
void ember_log(ember_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- invariants ---- */

/**
 * Called when an internal invariant fails (a bug in ember, never bad user input).
 * The default hook logs the message and aborts the process; a host may install its
 * own (it must not return: longjmp out, or terminate).
 */
typedef void (*ember_abort_fn)(const char *file, int line, const char *expr, void *user);
void ember_set_abort_hook(ember_abort_fn fn, void *user);

void ember__assert_fail(const char *file, int line, const char *expr);

#define EMBER_ASSERT(cond) \
    ((cond) ? (void)0 : ember__assert_fail(__FILE__, __LINE__, #cond))

#ifdef __cplusplus
}
#endif
#endif /* EMBER_STATUS_H */
