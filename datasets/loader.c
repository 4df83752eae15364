/*
 * The loader: Criteo rows from TSV files or npy triplets to training batches.
 *
 * One producer thread owns the inputs and the random stream: it reads rows in file
 * order, passes them through the shuffle buffer, cuts global batches of
 * batch_size * world rows and keeps this rank's slice. Because a single thread draws
 * every random number in stream order, the batches depend on (inputs, seed, epoch,
 * batch size, world) only: not on chunk sizes, parse threads, worker count or timing.
 * Worker threads turn a slice of row records into the batch layout (dense, labels,
 * jagged ids per table); batches live in a ring of prefetch + 1 slots, batch k in
 * slot k mod slots, so the consumer takes them in order and the ring bounds memory.
 * Every rank reads the whole stream and keeps its slice: the shuffle must be the same
 * on every rank, and for TSV input the parse is the cost either way.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/internal.h"

#define ND EMBER_CRITEO_NUM_DENSE
#define NS EMBER_CRITEO_NUM_SPARSE

typedef struct rec {
    float dense[ND];
    uint32_t sparse[NS];
    int32_t label;
} rec;

enum { SLOT_FREE, SLOT_JOB, SLOT_BUSY, SLOT_READY, SLOT_HELD };

typedef struct slot {
    int state;
    int64_t index;
    int64_t n;
    rec *rows;         /* (B) */
    float *dense;      /* (B, 13) */
    float *labels;     /* (B) */
    int64_t *values;   /* (26, B) */
    int64_t *offsets;  /* (26, B + 1) */
    ember_batch batch;
} slot;

typedef struct src {
    int file;
    ember_criteo_reader *r;
    ember_npy_triplet *t;
    const float *dense;
    const uint32_t *sparse;
    const int32_t *labels;
    int64_t n, pos;
    int64_t row; /* rows of the stream seen so far (all inputs), before the filters */
} src;

struct ember_loader {
    ember_memory *mm;
    char **paths;
    int *is_npy;
    int num_paths;
    ember_criteo_params tsv;
    int64_t B, G, shuffle;
    uint64_t seed;
    int rank, world, drop_last, nworkers, nslots;
    int64_t table_rows[NS];
    uint64_t table_m[NS];
    int has_table_rows;
    int64_t row_begin, row_end; /* stream rows read; row_end 0: all */
    uint64_t holdout_cut;       /* hash threshold of the held-out part; 0: no split */
    int holdout_part;
    uint64_t holdout_seed;

    pthread_mutex_t mu;
    pthread_cond_t cv_prod, cv_work, cv_cons;
    pthread_t producer;
    pthread_t *workers;
    int running, stop;

    slot *slots;
    rec *gbuf;       /* (G) a global batch */
    rec *shuf;       /* (shuffle) */
    int64_t epoch;
    int64_t next_index; /* next batch for the consumer */
    int64_t total;      /* batches in the epoch, -1 until the producer is done */
    int held;           /* slot held by the consumer, -1 if none */
    ember_status err;
    char err_msg[1024];
    int64_t rows_out;
    ember_criteo_stats tsv_done, tsv_cur;
};

/* ---- row source over all paths ---- */

static void src_close(ember_loader *l, src *s) {
    if (s->r) {
        ember_criteo_stats st;
        ember_criteo_get_stats(s->r, &st);
        pthread_mutex_lock(&l->mu);
        ember_criteo_stats *d = &l->tsv_done;
        d->lines += st.lines;
        d->rows += st.rows;
        for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) d->bad[k] += st.bad[k];
        d->bad_total += st.bad_total;
        d->bytes += st.bytes;
        d->raw_bytes += st.raw_bytes;
        d->file_bytes += st.file_bytes;
        d->has_label = st.has_label;
        d->gzip |= st.gzip;
        if (!d->first_bad[0]) memcpy(d->first_bad, st.first_bad, sizeof d->first_bad);
        memset(&l->tsv_cur, 0, sizeof l->tsv_cur);
        pthread_mutex_unlock(&l->mu);
        ember_criteo_close(s->r);
    }
    ember_npy_triplet_close(s->t);
    s->r = NULL;
    s->t = NULL;
    s->n = s->pos = 0;
}

/* Next row into *out; *got = 0 at the end of the last input. */
static ember_status src_next(ember_loader *l, src *s, rec *out, int *got) {
    *got = 0;
again:
    while (s->pos >= s->n) {
        if (s->r) {
            ember_criteo_rows rows;
            EMBER_TRY(ember_criteo_read(s->r, &rows));
            ember_criteo_stats cur;
            ember_criteo_get_stats(s->r, &cur);
            pthread_mutex_lock(&l->mu);
            l->tsv_cur = cur;
            pthread_mutex_unlock(&l->mu);
            if (rows.n > 0) {
                s->dense = rows.dense;
                s->sparse = rows.sparse;
                s->labels = rows.labels;
                s->n = rows.n;
                s->pos = 0;
                break;
            }
            src_close(l, s);
            s->file++;
            continue;
        }
        if (s->t) {
            src_close(l, s);
            s->file++;
            continue;
        }
        if (s->file >= l->num_paths) return EMBER_OK;
        if (__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) return ember__error(EMBER_ERR_CANCELLED, "loader stopped");
        if (l->is_npy[s->file]) {
            EMBER_TRY(ember_npy_triplet_open(l->paths[s->file], &s->t));
            s->dense = ember_npy_triplet_dense(s->t);
            s->sparse = ember_npy_triplet_sparse(s->t);
            s->labels = ember_npy_triplet_labels(s->t);
            s->n = ember_npy_triplet_rows(s->t);
            s->pos = 0;
        } else {
            ember_criteo_params p = l->tsv;
            p.path = l->paths[s->file];
            EMBER_TRY(ember_criteo_open(&p, &s->r));
        }
    }
    int64_t i = s->pos++, row = s->row++;
    if (row < l->row_begin) goto again;
    if (l->row_end && row >= l->row_end) return EMBER_OK;
    if (l->holdout_cut && (ember__mix64(l->holdout_seed ^ (uint64_t)row) < l->holdout_cut) != l->holdout_part)
        goto again;
    memcpy(out->dense, s->dense + i * ND, sizeof out->dense);
    memcpy(out->sparse, s->sparse + i * NS, sizeof out->sparse);
    out->label = s->labels[i];
    *got = 1;
    return EMBER_OK;
}

/* ---- random numbers: xoshiro256**, seeded by splitmix64 ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = ember__mix64(seed + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n). */
static inline int64_t rng_below(rng *r, int64_t n) { return (int64_t)(((__uint128_t)rng_next(r) * (uint64_t)n) >> 64); }

/* ---- batch assembly ---- */

static void assemble(ember_loader *l, slot *sl) {
    int64_t n = sl->n, B = l->B;
    for (int64_t i = 0; i < n; i++) {
        const rec *r = &sl->rows[i];
        memcpy(sl->dense + i * ND, r->dense, sizeof r->dense);
        sl->labels[i] = (float)r->label;
    }
    for (int t = 0; t < NS; t++) {
        int64_t *v = sl->values + t * B, *o = sl->offsets + t * (B + 1);
        if (l->has_table_rows && l->table_rows[t] <= (int64_t)UINT32_MAX) {
            uint32_t d = (uint32_t)l->table_rows[t];
            uint64_t m = l->table_m[t];
            for (int64_t i = 0; i < n; i++) v[i] = ember__fastmod(sl->rows[i].sparse[t], m, d);
        } else {
            for (int64_t i = 0; i < n; i++) v[i] = sl->rows[i].sparse[t];
        }
        for (int64_t i = 0; i <= n; i++) o[i] = i;
        sl->batch.values[t] = v;
        sl->batch.offsets[t] = o;
    }
    sl->batch.index = sl->index;
    sl->batch.size = n;
    sl->batch.num_tables = NS;
    sl->batch.dense = sl->dense;
    sl->batch.labels = sl->labels;
}

/* ---- threads ---- */

static void set_error(ember_loader *l, ember_status st, int64_t batches) {
    /* called with mu held */
    if (!l->err && st != EMBER_ERR_CANCELLED) {
        l->err = st;
        ember__copy_str(l->err_msg, sizeof l->err_msg, ember__error_text());
    }
    l->total = batches;
}

static void *producer_main(void *arg) {
    ember_loader *l = arg;
    src s = {0};
    rng rg;
    rng_seed(&rg, ember__mix64(l->seed) ^ ember__mix64(UINT64_C(0xE90C) + (uint64_t)l->epoch));
    int64_t count = 0; /* rows in the shuffle buffer */
    int src_done = 0;
    int64_t k = 0;
    ember_status st = EMBER_OK;
    int use_shuffle = l->shuffle > 1;
    for (;; k++) {
        /* A global batch from the (shuffled) stream. */
        int64_t R = 0;
        while (R < l->G && st == EMBER_OK) {
            if (!use_shuffle) {
                int got;
                st = src_next(l, &s, &l->gbuf[R], &got);
                if (st != EMBER_OK || !got) break;
                R++;
                continue;
            }
            while (!src_done && count < l->shuffle && st == EMBER_OK) {
                int got;
                st = src_next(l, &s, &l->shuf[count], &got);
                if (got) count++;
                else src_done = 1;
            }
            if (st != EMBER_OK || count == 0) break;
            int64_t j = rng_below(&rg, count);
            l->gbuf[R++] = l->shuf[j];
            int got = 0;
            if (!src_done) {
                st = src_next(l, &s, &l->shuf[j], &got);
                if (st != EMBER_OK) break;
                if (!got) src_done = 1;
            }
            if (!got) l->shuf[j] = l->shuf[--count];
        }
        if (st != EMBER_OK || R == 0 || (R < l->G && l->drop_last)) break;
        int64_t lo = R * l->rank / l->world, hi = R * (l->rank + 1) / l->world;
        /* Wait for this batch's slot. */
        pthread_mutex_lock(&l->mu);
        slot *sl = &l->slots[k % l->nslots];
        while (sl->state != SLOT_FREE && !l->stop) pthread_cond_wait(&l->cv_prod, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            st = ember__error(EMBER_ERR_CANCELLED, "loader stopped");
            break;
        }
        pthread_mutex_unlock(&l->mu);
        memcpy(sl->rows, l->gbuf + lo, (size_t)(hi - lo) * sizeof(rec));
        sl->n = hi - lo;
        sl->index = k;
        if (l->nworkers == 0) assemble(l, sl);
        pthread_mutex_lock(&l->mu);
        sl->state = l->nworkers == 0 ? SLOT_READY : SLOT_JOB;
        pthread_cond_broadcast(l->nworkers == 0 ? &l->cv_cons : &l->cv_work);
        pthread_mutex_unlock(&l->mu);
        if (R < l->G) {
            k++;
            break;
        }
    }
    src_close(l, &s);
    pthread_mutex_lock(&l->mu);
    if (st != EMBER_OK) set_error(l, st, k);
    else l->total = k;
    pthread_cond_broadcast(&l->cv_cons);
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void *worker_main(void *arg) {
    ember_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        slot *job = NULL;
        for (int i = 0; i < l->nslots; i++)
            if (l->slots[i].state == SLOT_JOB && (!job || l->slots[i].index < job->index)) job = &l->slots[i];
        if (!job) {
            if (l->stop || l->total >= 0) break;
            pthread_cond_wait(&l->cv_work, &l->mu);
            continue;
        }
        job->state = SLOT_BUSY;
        pthread_mutex_unlock(&l->mu);
        assemble(l, job);
        pthread_mutex_lock(&l->mu);
        job->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv_cons);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_threads(ember_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    __atomic_store_n(&l->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&l->cv_prod);
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->producer, NULL);
    for (int i = 0; i < l->nworkers; i++) pthread_join(l->workers[i], NULL);
    l->running = 0;
}

static ember_status start_threads(ember_loader *l, int64_t epoch) {
    l->epoch = epoch;
    l->stop = 0;
    l->next_index = 0;
    l->total = -1;
    l->held = -1;
    l->err = EMBER_OK;
    l->err_msg[0] = '\0';
    l->rows_out = 0;
    memset(&l->tsv_done, 0, sizeof l->tsv_done);
    memset(&l->tsv_cur, 0, sizeof l->tsv_cur);
    l->tsv_done.has_label = -1;
    for (int i = 0; i < l->nslots; i++) l->slots[i].state = SLOT_FREE;
    if (pthread_create(&l->producer, NULL, producer_main, l) != 0)
        return ember__error(EMBER_ERR_INTERNAL, "ember_loader: cannot start the producer thread");
    int started = 0;
    for (; started < l->nworkers; started++)
        if (pthread_create(&l->workers[started], NULL, worker_main, l) != 0) break;
    l->running = 1;
    if (started < l->nworkers) {
        int want = l->nworkers;
        l->nworkers = started;
        stop_threads(l);
        l->nworkers = want;
        return ember__error(EMBER_ERR_INTERNAL, "ember_loader: cannot start worker thread %d", started);
    }
    return EMBER_OK;
}

/* ---- public API ---- */

void ember_loader_destroy(ember_loader *l) {
    if (!l) return;
    stop_threads(l);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++) {
            slot *s = &l->slots[i];
            ember__ds_free(l->mm, s->rows);
            ember__ds_free(l->mm, s->dense);
            ember__ds_free(l->mm, s->labels);
            ember__ds_free(l->mm, s->values);
            ember__ds_free(l->mm, s->offsets);
        }
    ember__ds_free(l->mm, l->gbuf);
    ember__ds_free(l->mm, l->shuf);
    for (int i = 0; i < l->num_paths; i++) free(l->paths ? l->paths[i] : NULL);
    free(l->paths);
    free(l->is_npy);
    free(l->slots);
    free(l->workers);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_prod);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_cons);
    free(l);
}

ember_status ember_loader_create(const ember_loader_params *p, ember_loader **out) {
    EMBER_CHECK_NULL(p, "ember_loader_create");
    EMBER_CHECK_NULL(out, "ember_loader_create");
    *out = NULL;
    if (p->num_paths <= 0 || !p->paths)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: no input paths");
    if (p->batch_size <= 0 || p->batch_size > (INT64_C(1) << 30))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: batch_size %lld (1 .. 2^30)",
                            (long long)p->batch_size);
    int world = p->world ? p->world : 1;
    if (world < 1 || p->rank < 0 || p->rank >= world)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: rank %d of world %d", p->rank, world);
    if ((unsigned)p->format >= EMBER_LOADER_FORMAT_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: format %d invalid", (int)p->format);
    if (p->shuffle_buffer < 0 || p->workers < 0 || p->workers > 256 || p->prefetch < 0 || p->prefetch > 1024)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: shuffle_buffer %lld, workers %d, prefetch %d",
                            (long long)p->shuffle_buffer, p->workers, p->prefetch);
    if (p->row_begin < 0 || p->row_end < 0 || (p->row_end && p->row_end <= p->row_begin) ||
        !(p->holdout >= 0 && p->holdout < 1))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "ember_loader_create: rows [%lld, %lld) and holdout %g (0 <= holdout < 1)",
                            (long long)p->row_begin, (long long)p->row_end, p->holdout);
    if (p->table_rows)
        for (int t = 0; t < NS; t++)
            if (p->table_rows[t] <= 0)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: table_rows[%d] = %lld", t,
                                    (long long)p->table_rows[t]);
    ember_loader *l = calloc(1, sizeof *l);
    if (!l) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_loader_create");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_prod, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_cons, NULL);
    l->mm = p->mm;
    l->B = p->batch_size;
    l->world = world;
    l->rank = p->rank;
    l->G = l->B * world;
    l->shuffle = p->shuffle_buffer;
    l->seed = p->seed;
    l->drop_last = p->drop_last;
    l->nworkers = p->workers ? p->workers : 1;
    l->nslots = (p->prefetch ? p->prefetch : 4) + 1;
    l->row_begin = p->row_begin;
    l->row_end = p->row_end;
    l->holdout_part = p->holdout_part != 0;
    l->holdout_seed = p->holdout_seed;
    l->holdout_cut = p->holdout > 0 ? (uint64_t)(p->holdout * 18446744073709551616.0) : 0;
    if (p->holdout >= 1) l->holdout_cut = UINT64_MAX;
    l->tsv = p->tsv ? *p->tsv : (ember_criteo_params){0};
    l->tsv.data = NULL;
    l->tsv.mm = l->tsv.mm ? l->tsv.mm : p->mm;
    if (p->table_rows) {
        l->has_table_rows = 1;
        for (int t = 0; t < NS; t++) {
            l->table_rows[t] = p->table_rows[t];
            l->table_m[t] = p->table_rows[t] <= (int64_t)UINT32_MAX ? ember__fastmod_m((uint32_t)p->table_rows[t]) : 0;
        }
    }
    ember_status st = EMBER_OK;
    l->num_paths = p->num_paths;
    l->paths = calloc((size_t)p->num_paths, sizeof *l->paths);
    l->is_npy = calloc((size_t)p->num_paths, sizeof *l->is_npy);
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    l->workers = calloc((size_t)l->nworkers, sizeof *l->workers);
    if (!l->paths || !l->is_npy || !l->slots || !l->workers)
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_loader_create");
    for (int i = 0; i < p->num_paths && st == EMBER_OK; i++) {
        if (!p->paths[i]) {
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_create: paths[%d] is NULL", i);
            break;
        }
        l->paths[i] = strdup(p->paths[i]);
        if (!l->paths[i]) {
            st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_loader_create");
            break;
        }
        char probe[1100];
        snprintf(probe, sizeof probe, "%s_dense.npy", p->paths[i]);
        l->is_npy[i] = p->format == EMBER_LOADER_NPY || (p->format == EMBER_LOADER_AUTO && access(probe, R_OK) == 0);
        /* Open once now, so that a missing or malformed input fails here, not in a thread. */
        if (l->is_npy[i]) {
            ember_npy_triplet *t;
            st = ember_npy_triplet_open(p->paths[i], &t);
            ember_npy_triplet_close(t);
        } else if (strcmp(p->paths[i], "-") != 0 && access(p->paths[i], R_OK) != 0) {
            st = ember__error(EMBER_ERR_IO, "ember_loader_create: cannot read %s", p->paths[i]);
        }
    }
    size_t rb = sizeof(rec);
    int64_t B = l->B;
    for (int i = 0; i < l->nslots && st == EMBER_OK; i++) {
        slot *s = &l->slots[i];
        st = ember__ds_alloc(l->mm, (size_t)B * rb, (void **)&s->rows);
        if (st == EMBER_OK) st = ember__ds_alloc(l->mm, (size_t)B * ND * sizeof(float), (void **)&s->dense);
        if (st == EMBER_OK) st = ember__ds_alloc(l->mm, (size_t)B * sizeof(float), (void **)&s->labels);
        if (st == EMBER_OK) st = ember__ds_alloc(l->mm, (size_t)B * NS * sizeof(int64_t), (void **)&s->values);
        if (st == EMBER_OK) st = ember__ds_alloc(l->mm, (size_t)(B + 1) * NS * sizeof(int64_t), (void **)&s->offsets);
    }
    if (st == EMBER_OK) st = ember__ds_alloc(l->mm, (size_t)l->G * rb, (void **)&l->gbuf);
    if (st == EMBER_OK && l->shuffle > 1) st = ember__ds_alloc(l->mm, (size_t)l->shuffle * rb, (void **)&l->shuf);
    if (st == EMBER_OK) st = start_threads(l, 0);
    if (st != EMBER_OK) {
        ember_loader_destroy(l);
        return st;
    }
    *out = l;
    return EMBER_OK;
}

ember_status ember_loader_next(ember_loader *l, const ember_batch **out) {
    EMBER_CHECK_NULL(l, "ember_loader_next");
    EMBER_CHECK_NULL(out, "ember_loader_next");
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->slots[l->held].state = SLOT_FREE;
        l->held = -1;
        pthread_cond_broadcast(&l->cv_prod);
    }
    int64_t k = l->next_index;
    slot *sl = &l->slots[k % l->nslots];
    for (;;) {
        if (sl->state == SLOT_READY && sl->index == k) break;
        if (l->total >= 0 && k >= l->total) {
            ember_status st = l->err;
            char msg[1024];
            memcpy(msg, l->err_msg, sizeof msg);
            pthread_mutex_unlock(&l->mu);
            if (st != EMBER_OK) return ember__error(st, "%s", msg);
            return EMBER_OK; /* end of epoch */
        }
        if (!l->running) {
            pthread_mutex_unlock(&l->mu);
            return ember__error(EMBER_ERR_STATE, "ember_loader_next: the loader is not running");
        }
        pthread_cond_wait(&l->cv_cons, &l->mu);
    }
    sl->state = SLOT_HELD;
    l->held = (int)(k % l->nslots);
    l->next_index++;
    l->rows_out += sl->n;
    pthread_mutex_unlock(&l->mu);
    *out = &sl->batch;
    return EMBER_OK;
}

ember_status ember_loader_start_epoch(ember_loader *l, int64_t epoch) {
    EMBER_CHECK_NULL(l, "ember_loader_start_epoch");
    if (epoch < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_loader_start_epoch: epoch %lld", (long long)epoch);
    stop_threads(l);
    return start_threads(l, epoch);
}

void ember_loader_get_stats(const ember_loader *l, int64_t *rows, ember_criteo_stats *tsv) {
    if (!l) return;
    ember_loader *m = (ember_loader *)l; /* the lock is not part of the observable state */
    pthread_mutex_lock(&m->mu);
    if (rows) *rows = l->rows_out;
    if (tsv) {
        *tsv = l->tsv_done;
        const ember_criteo_stats *c = &l->tsv_cur;
        tsv->lines += c->lines;
        tsv->rows += c->rows;
        for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) tsv->bad[k] += c->bad[k];
        tsv->bad_total += c->bad_total;
        tsv->bytes += c->bytes;
        tsv->raw_bytes += c->raw_bytes;
        tsv->file_bytes += c->file_bytes;
        if (c->has_label >= 0) tsv->has_label = c->has_label;
        tsv->gzip |= c->gzip;
        if (!tsv->first_bad[0]) memcpy(tsv->first_bad, c->first_bad, sizeof tsv->first_bad);
    }
    pthread_mutex_unlock(&m->mu);
}
