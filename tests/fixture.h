/*
 * tests/fixture.h: reader of the reference files written by tests/ref/fixture.py.
 * Layout (little-endian): "EMBRFIX\0", u32 version 1, u32 count, then per tensor:
 * u32 name length, name, u32 ember_dtype, u32 ndim, i64 shape[ndim], data.
 */
#ifndef EMBER_TESTS_FIXTURE_H
#define EMBER_TESTS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/ember.h"

typedef struct fixture_tensor {
    char name[128];
    ember_dtype dtype;
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    int64_t numel;
    void *data;
} fixture_tensor;

typedef struct fixture {
    fixture_tensor *t;
    int n;
} fixture;

/* Path of a file under tests/ (ctest sets EMBER_TEST_DIR to the source tree's tests/). */
static inline void fixture_path(char *buf, size_t n, const char *rel) {
    const char *dir = getenv("EMBER_TEST_DIR");
    snprintf(buf, n, "%s/%s", dir ? dir : "tests", rel);
}

/* Loads the whole file; on any problem prints why and returns 0. */
static inline int fixture_load(fixture *fx, const char *rel) {
    char path[1024];
    fixture_path(path, sizeof path, rel);
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fixture %s: cannot open (run the test through ctest, which sets EMBER_TEST_DIR)\n", path);
        return 0;
    }
    char magic[8];
    uint32_t hdr[2];
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, "EMBRFIX", 8) == 0 && fread(hdr, 4, 2, f) == 2 &&
             hdr[0] == 1 && hdr[1] < 100000;
    if (ok) {
        fx->n = (int)hdr[1];
        fx->t = calloc((size_t)fx->n, sizeof *fx->t);
        ok = fx->t != NULL;
    }
    for (int i = 0; ok && i < fx->n; i++) {
        fixture_tensor *t = &fx->t[i];
        uint32_t len, dt, nd;
        ok = fread(&len, 4, 1, f) == 1 && len < sizeof t->name && fread(t->name, 1, len, f) == len &&
             fread(&dt, 4, 1, f) == 1 && fread(&nd, 4, 1, f) == 1 && nd <= EMBER_MAX_DIMS &&
             ember_dtype_valid((ember_dtype)dt);
        if (!ok) break;
        t->dtype = (ember_dtype)dt;
        t->ndim = (int)nd;
        t->numel = 1;
        ok = fread(t->shape, 8, nd, f) == nd;
        for (uint32_t d = 0; ok && d < nd; d++) t->numel *= t->shape[d];
        size_t bytes = (size_t)t->numel * ember_dtype_size(t->dtype);
        t->data = malloc(bytes ? bytes : 1);
        ok = ok && t->data && fread(t->data, 1, bytes, f) == bytes;
    }
    fclose(f);
    if (!ok) fprintf(stderr, "fixture %s: malformed file\n", path);
    return ok;
}

static inline const fixture_tensor *fixture_get(const fixture *fx, const char *name) {
    for (int i = 0; i < fx->n; i++)
        if (strcmp(fx->t[i].name, name) == 0) return &fx->t[i];
    fprintf(stderr, "fixture: no tensor named %s\n", name);
    return NULL;
}

static inline void fixture_free(fixture *fx) {
    for (int i = 0; i < fx->n; i++) free(fx->t[i].data);
    free(fx->t);
    memset(fx, 0, sizeof *fx);
}

#endif /* EMBER_TESTS_FIXTURE_H */
