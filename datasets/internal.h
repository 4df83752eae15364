/*
 * datasets/internal.h: helpers shared by the datasets module. Not installed.
 */
#ifndef EMBER_DATASETS_INTERNAL_H
#define EMBER_DATASETS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ember/datasets.h"
#include "engine/internal.h"

/* ---- memory: big buffers through the memory manager (host tier, staging) ---- */

ember_status ember__ds_alloc(ember_memory *mm, size_t bytes, void **out);
void ember__ds_free(ember_memory *mm, void *p);
/* Grow *p from old_bytes to new_bytes keeping its contents (new_bytes > old_bytes). */
ember_status ember__ds_grow(ember_memory *mm, void **p, size_t old_bytes, size_t new_bytes);

/* ---- byte sources: a file, stdin or a memory buffer; gzip detected and inflated ---- */

typedef struct ember__source {
    int fd;       /* -1 for memory */
    int own_fd;
    const unsigned char *mem;
    size_t mem_len, mem_pos;
    int gzip;     /* 1 after the magic was seen */
    void *z;      /* z_stream when gzip */
    unsigned char *zin; /* compressed input buffer */
    size_t zin_len, zin_pos;
    int raw_eof;  /* no more raw bytes */
    int eof;      /* no more output bytes */
    uint64_t raw_bytes;  /* raw bytes taken from the input */
    uint64_t out_bytes;  /* bytes handed out */
    uint64_t file_bytes; /* size of a regular file, else 0 */
    ember_memory *mm;
    char name[256]; /* path for messages */
} ember__source;

/* path "-" = stdin; mem != NULL reads the buffer (path names it). */
ember_status ember__source_open(ember__source *s, const char *path, const void *mem, size_t len,
                                ember_memory *mm);
/* Up to cap bytes into buf; fills as much as it can before returning (short only at
 * end of input). *got == 0 means end of input. */
ember_status ember__source_read(ember__source *s, void *buf, size_t cap, size_t *got);
void ember__source_close(ember__source *s);

/* ---- Criteo line parser (shared by the reader and ember_criteo_parse_line) ---- */

typedef struct ember__criteo_cfg {
    int has_label;
    ember_dense_transform dense;
    uint32_t hash_cap;
    uint64_t hash_m; /* fastmod magic for hash_cap */
    const ember_criteo_vocab *vocab;
    size_t max_line;
} ember__criteo_cfg;

void ember__criteo_cfg_init(ember__criteo_cfg *c, const ember_criteo_params *p, int has_label);

/*
 * Parse the line [p, e) (e excludes the '\n'). *e must be readable and must not be a
 * digit, hex digit or tab (the reader guarantees a '\n' or a sentinel there).
 * Returns -1 on success, else the fault kind with *field set to the 0-based field.
 */
int ember__criteo_parse(const ember__criteo_cfg *c, const unsigned char *p, const unsigned char *e,
                        float *dense, uint32_t *sparse, int32_t *label, int *field);

/* Message for a fault: "criteo NAME line L field F (I3): ...". */
void ember__criteo_fault_text(char *buf, size_t n, const char *name, int64_t line, int fault,
                              int field, int has_label, const unsigned char *p,
                              const unsigned char *e, size_t max_line);

/* Dense transform of one raw integer. */
float ember__dense_value(ember_dense_transform t, int64_t x);

/* ---- thread pool (datasets/pool.c) ---- */

typedef struct ember__pool ember__pool;
typedef void (*ember__pool_fn)(void *arg, int job);

/* threads - 1 workers; the caller of ember__pool_run is the last thread. */
ember_status ember__pool_create(int threads, ember__pool **out);
void ember__pool_destroy(ember__pool *p);
/* Run fn(arg, j) for j in [0, njobs) on the workers and the caller; returns when all
 * are done. One run at a time per pool. */
void ember__pool_run(ember__pool *p, int njobs, ember__pool_fn fn, void *arg);

/* ---- small numeric helpers ---- */

/* Lemire's fastmod: a % d for 32-bit a with M = ember__fastmod_m(d) (d > 0). */
static inline uint64_t ember__fastmod_m(uint32_t d) { return UINT64_C(0xFFFFFFFFFFFFFFFF) / d + 1; }
static inline uint32_t ember__fastmod(uint32_t a, uint64_t m, uint32_t d) {
    uint64_t low = m * a;
    return (uint32_t)(((__uint128_t)low * d) >> 64);
}

/* splitmix64 finaliser: a good 64-bit mix, for seeds and stateless hashing. */
static inline uint64_t ember__mix64(uint64_t x) {
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

/* Uniform double in [0, 1) from 53 bits. */
static inline double ember__unit53(uint64_t x) { return (double)(x >> 11) * (1.0 / 9007199254740992.0); }

/* Copy a string into dst[n], truncating (always NUL-terminated). */
static inline void ember__copy_str(char *dst, size_t n, const char *src) {
    size_t k = 0;
    if (n == 0) return;
    while (k + 1 < n && src[k]) {
        dst[k] = src[k];
        k++;
    }
    dst[k] = '\0';
}

/* The last error's message without its "STATUS: " prefix (to re-raise it elsewhere). */
const char *ember__error_text(void);

/* Threads to use: requested, else ember_get_num_threads(), at least 1. */
int ember__ds_threads(int requested);

/* Write all bytes to fd (EINTR, short writes). 0 on success, else errno. */
int ember__write_all(int fd, const void *buf, size_t n);

/* "dir/name.tmp.PID.N" beside path, for write-then-rename. */
void ember__temp_path(char *buf, size_t n, const char *path);

#endif /* EMBER_DATASETS_INTERNAL_H */
