/*
 * Jagged batches: the checks every embedding call relies on.
 *
 * A kernel never bounds-checks an id (that would cost a compare per row in the
 * hottest loop and still leave a half-written output), so a batch is checked whole
 * before any kernel runs: offsets first (they decide which ids are read at all), then
 * the ids of the used range, in parallel, keeping the first bad position so the
 * message is the same whatever the thread count.
 */
#include <stdio.h>

#include "embedding/ebc_internal.h"
#include "engine/internal.h"

#define PAR_MIN_IDS 65536 /* below this, one thread scans the ids */
#define MAX_CHUNKS 1024

typedef struct {
    const int64_t *v;
    int64_t lo, hi, limit, chunks;
    int64_t bad[MAX_CHUNKS]; /* first bad position of each chunk, or hi */
} scan_job;

static void scan_chunk(void *p, int64_t c, int worker) {
    (void)worker;
    scan_job *j = p;
    int64_t n = j->hi - j->lo;
    int64_t s = j->lo + n * c / j->chunks, e = j->lo + n * (c + 1) / j->chunks;
    j->bad[c] = j->hi;
    for (int64_t k = s; k < e; k++)
        if (j->v[k] < 0 || j->v[k] >= j->limit) {
            j->bad[c] = k;
            return;
        }
}

static const char *table_label(int table, const char *name, char *buf, size_t n) {
    if (name && *name)
        snprintf(buf, n, "table %d (\"%s\")", table, name);
    else
        snprintf(buf, n, "table %d", table);
    return buf;
}

/* The bag holding position k: the last b with offsets[b] <= k (offsets validated). */
static int64_t sample_of(const int64_t *off, int64_t batch, int64_t k) {
    int64_t lo = 0, hi = batch; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (off[mid] <= k) lo = mid;
        else hi = mid;
    }
    return lo; /* empty bags before it share its offset and lose the search */
}

ember_status ember__jagged_check_feature(const char *fn, int table, const char *name,
                                         const ember_jagged_feature *f, int64_t batch,
                                         int64_t rows) {
    char tl[160];
    const int64_t *off = f->offsets;
    if (off[0] < 0)
        return ember__error(EMBER_ERR_INDEX,
                            "%s: %s, sample 0, position %lld: offsets[0] is negative", fn,
                            table_label(table, name, tl, sizeof tl), (long long)off[0]);
    for (int64_t b = 0; b < batch; b++)
        if (off[b + 1] < off[b])
            return ember__error(EMBER_ERR_INDEX,
                                "%s: %s, sample %lld, position %lld: offsets decrease "
                                "(offsets[%lld] = %lld, offsets[%lld] = %lld)",
                                fn, table_label(table, name, tl, sizeof tl), (long long)b,
                                (long long)off[b], (long long)b, (long long)off[b],
                                (long long)(b + 1), (long long)off[b + 1]);
    if (off[batch] > f->length)
        return ember__error(EMBER_ERR_INDEX,
                            "%s: %s, sample %lld, position %lld: offsets[%lld] = %lld is past "
                            "the end of values (length %lld)",
                            fn, table_label(table, name, tl, sizeof tl),
                            (long long)(batch > 0 ? batch - 1 : 0), (long long)off[batch],
                            (long long)batch, (long long)off[batch], (long long)f->length);

    const int64_t *v = f->values;
    const int64_t lo = off[0], hi = off[batch];
    int workers = hi - lo >= PAR_MIN_IDS ? ember__ebc_pool_workers() : 1;
    scan_job j = {.v = v, .lo = lo, .hi = hi, .limit = rows < 0 ? INT64_MAX : rows,
                  .chunks = workers == 1 ? 1 : (int64_t)workers * 4};
    if (j.chunks > MAX_CHUNKS) j.chunks = MAX_CHUNKS;
    ember__ebc_pool_run(workers, j.chunks, scan_chunk, &j);
    int64_t bad = hi;
    for (int64_t c = 0; c < j.chunks; c++)
        if (j.bad[c] < bad) bad = j.bad[c]; /* the first bad position, whoever scanned it */
    if (bad < hi) {
        int64_t id = v[bad];
        if (rows < 0)
            return ember__error(EMBER_ERR_INDEX, "%s: %s, sample %lld, position %lld: id %lld is negative",
                                fn, table_label(table, name, tl, sizeof tl),
                                (long long)sample_of(off, batch, bad), (long long)bad, (long long)id);
        return ember__error(EMBER_ERR_INDEX,
                            "%s: %s, sample %lld, position %lld: id %lld is outside [0, %lld)", fn,
                            table_label(table, name, tl, sizeof tl),
                            (long long)sample_of(off, batch, bad), (long long)bad, (long long)id,
                            (long long)rows);
    }
    return EMBER_OK;
}

ember_status ember__jagged_check_shape(const char *fn, const ember_jagged *b, int ntables) {
    EMBER_CHECK_NULL(b, fn);
    if (b->batch < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: batch size %lld is negative", fn,
                            (long long)b->batch);
    if (b->batch > INT32_MAX)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: batch size %lld exceeds %d", fn,
                            (long long)b->batch, INT32_MAX);
    if (ntables >= 0 && b->num_features != ntables)
        return ember__error(EMBER_ERR_SHAPE,
                            "%s: the batch has %d features but the collection has %d tables", fn,
                            b->num_features, ntables);
    if (b->num_features < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %d features", fn, b->num_features);
    if (b->num_features > 0 && !b->features)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: features is NULL for %d features", fn,
                            b->num_features);
    for (int t = 0; t < b->num_features; t++) {
        const ember_jagged_feature *f = &b->features[t];
        if (!f->offsets)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d: offsets is NULL", fn, t);
        if (f->length < 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d: length %lld is negative",
                                fn, t, (long long)f->length);
        if (f->length > 0 && !f->values)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "%s: table %d: values is NULL but length is %lld", fn, t,
                                (long long)f->length);
    }
    return EMBER_OK;
}

ember_status ember_jagged_validate(const ember_jagged *batch, const int64_t *rows) {
    static const char fn[] = "ember_jagged_validate";
    EMBER_TRY(ember__jagged_check_shape(fn, batch, -1));
    for (int t = 0; t < batch->num_features; t++)
        EMBER_TRY(ember__jagged_check_feature(fn, t, NULL, &batch->features[t], batch->batch,
                                              rows ? rows[t] : -1));
    return EMBER_OK;
}
