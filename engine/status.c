/*
 * Status names and messages from the one X-macro list, the thread-local detail
 * message, the log callback and the abort hook.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/internal.h"
#include "ember/status.h"

#define NAME_ENTRY(name, value, msg) {EMBER_##name, "EMBER_" #name, msg},
static const struct {
    ember_status st;
    const char *name;
    const char *msg;
} status_table[] = {EMBER_STATUS_LIST(NAME_ENTRY)};
#undef NAME_ENTRY

_Static_assert(sizeof status_table / sizeof status_table[0] == EMBER_STATUS_COUNT,
               "EMBER_STATUS_COUNT must equal the length of EMBER_STATUS_LIST");

static int status_index(ember_status st) {
    /* Values are 0, -1, -2, ... in list order; check rather than assume. */
    int i = -(int)st;
    if (i >= 0 && i < EMBER_STATUS_COUNT && status_table[i].st == st) return i;
    for (i = 0; i < EMBER_STATUS_COUNT; i++)
        if (status_table[i].st == st) return i;
    return -1;
}

const char *ember_strerror(ember_status st) {
    int i = status_index(st);
    return i < 0 ? "unknown status" : status_table[i].msg;
}

const char *ember_status_name(ember_status st) {
    int i = status_index(st);
    return i < 0 ? "EMBER_UNKNOWN" : status_table[i].name;
}

ember_status ember_status_at(int i) {
    if (i < 0 || i >= EMBER_STATUS_COUNT) return EMBER_ERR_INVALID_ARGUMENT;
    return status_table[i].st;
}

/* ---- thread-local detail ---- */

#define ERROR_CAP 1024
static _Thread_local char last_error[ERROR_CAP];
static _Thread_local ember_status last_status;

ember_status ember__error(ember_status st, const char *fmt, ...) {
    /* formatted aside first: the arguments may include ember_last_error() itself (a
       caller wrapping the error it got), which writing in place would overwrite */
    static _Thread_local char next[ERROR_CAP];
    int n = snprintf(next, ERROR_CAP, "%s: ", ember_status_name(st));
    if (n < 0) n = 0;
    if (n < ERROR_CAP) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(next + n, (size_t)(ERROR_CAP - n), fmt, ap);
        va_end(ap);
    }
    memcpy(last_error, next, ERROR_CAP);
    last_status = st;
    ember_log(EMBER_LOG_DEBUG, "%s", last_error);
    return st;
}

const char *ember_last_error(void) { return last_error; }
ember_status ember_last_status(void) { return last_status; }
void ember_clear_error(void) {
    last_error[0] = '\0';
    last_status = EMBER_OK;
}

/* ---- logging ---- */

static const char *level_names[EMBER_LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};

static void default_log(ember_log_level level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "ember %s: %s\n", level_names[level], msg);
}

static ember_log_fn log_fn = default_log;
static void *log_user;
static int log_level = -1; /* -1: not yet read from the environment */

static ember_log_level env_level(void) {
    const char *e = getenv("EMBER_LOG");
    if (e)
        for (int i = 0; i < EMBER_LOG_LEVEL_COUNT; i++)
            if (strcasecmp(e, level_names[i]) == 0) return (ember_log_level)i;
    return EMBER_LOG_WARN;
}

void ember_log_set_callback(ember_log_fn fn, void *user) {
    log_user = user;
    __atomic_store_n(&log_fn, fn ? fn : default_log, __ATOMIC_RELEASE);
}

void ember_log_set_level(ember_log_level level) {
    if ((int)level >= 0 && level < EMBER_LOG_LEVEL_COUNT)
        __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

ember_log_level ember_log_get_level(void) {
    int l = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = (int)env_level();
        __atomic_store_n(&log_level, l, __ATOMIC_RELAXED);
    }
    return (ember_log_level)l;
}

void ember_log(ember_log_level level, const char *fmt, ...) {
    if ((int)level < 0 || level >= EMBER_LOG_LEVEL_COUNT || level < ember_log_get_level())
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ember_log_fn fn = __atomic_load_n(&log_fn, __ATOMIC_ACQUIRE);
    fn(level, buf, log_user);
}

/* ---- invariants ---- */

static void default_abort(const char *file, int line, const char *expr, void *user) {
    (void)user;
    fprintf(stderr, "ember: internal invariant failed at %s:%d: %s\n", file, line, expr);
    abort(); /* default EMBER_ASSERT hook: an invariant broke, state is not trustworthy */
}

static ember_abort_fn abort_fn = default_abort;
static void *abort_user;

void ember_set_abort_hook(ember_abort_fn fn, void *user) {
    abort_user = user;
    __atomic_store_n(&abort_fn, fn ? fn : default_abort, __ATOMIC_RELEASE);
}

void ember__assert_fail(const char *file, int line, const char *expr) {
    ember_abort_fn fn = __atomic_load_n(&abort_fn, __ATOMIC_ACQUIRE);
    fn(file, line, expr, abort_user);
    /* A hook must not return; if it does, stop here rather than run on broken state. */
    default_abort(file, line, expr, NULL);
}

double ember__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
