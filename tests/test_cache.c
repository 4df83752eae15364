/*
 * tests/test_cache.c: the embedding cache.
 *
 * The central check is equivalence: a small model trained through the cache, at
 * several cache ratios, every policy, look-ahead 0/1/2, over the host store and over
 * LMDB (with and without a DRAM cache capped below the table), gives bit-identical
 * pooled outputs at every step and bit-identical weights and optimizer state at the
 * end to the same model trained with its tables resident, for SGD, Adagrad, rowwise
 * Adagrad and Adam. Hundreds of steps against a cache of 1% of the rows force
 * evictions of dirty rows all along.
 *
 * The crash test runs this binary again as a child (fork + exec, so no thread or
 * OpenMP state crosses the fork) that trains with periodic checkpoints; the parent
 * kills it with SIGKILL at a random moment, reopens the store and finds exactly the
 * state of the last checkpoint, bit for bit against a resident run of that many steps.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ember/cache.h"
#include "ember/datasets.h"
#include "ember/embedding.h"

#define NT 3
#define BATCH 8
#define MAXBAG 3
#define SEED 1234u
#define MAX_LOOK_RING 8

/* ---- the model and its data ---- */

static const ember_ebc_table_config TABLES[NT] = {
    {.name = "users", .rows = 4000, .dim = 8, .format = EMBER_ROW_FORMAT_F32, .pooling = EMBER_POOLING_SUM},
    {.name = "items", .rows = 1500, .dim = 4, .format = EMBER_ROW_FORMAT_F16, .pooling = EMBER_POOLING_MEAN},
    {.name = "tags", .rows = 300, .dim = 12, .format = EMBER_ROW_FORMAT_INT8_ROWWISE,
     .pooling = EMBER_POOLING_SUM},
};

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double unit(uint64_t h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }

/* One batch: per table, BATCH bags of 0..MAXBAG Zipf-skewed ids (hot ids spread over
   the table), per-sample weights on table 0. */
typedef struct batch {
    int64_t ids[NT][BATCH * MAXBAG];
    int64_t off[NT][BATCH + 1];
    float w[BATCH * MAXBAG];
    ember_jagged_feature f[NT];
    ember_jagged j;
} batch;

/* The same over tables of the given row counts. */
static void make_batch_rows(batch *b, int64_t step, uint64_t salt, const int64_t *table_rows) {
    for (int t = 0; t < NT; t++) {
        int64_t n = 0, rows = table_rows[t];
        b->off[t][0] = 0;
        for (int s = 0; s < BATCH; s++) {
            uint64_t h = mix(salt ^ mix((uint64_t)step * 131 + (uint64_t)t * 17 + (uint64_t)s));
            int len = (int)(h % (MAXBAG + 1));
            for (int k = 0; k < len; k++) {
                uint64_t g = mix(h + (uint64_t)k * 7919);
                double u = unit(g);
                int64_t r = (int64_t)((double)rows * u * u * u); /* skewed to small r */
                int64_t id = (int64_t)(((uint64_t)r * 2654435761u) % (uint64_t)rows);
                b->ids[t][n] = id;
                if (t == 0) b->w[n] = (float)(0.5 + unit(mix(g)));
                n++;
            }
            b->off[t][s + 1] = n;
        }
        b->f[t] = (ember_jagged_feature){.values = b->ids[t], .offsets = b->off[t], .length = n,
                                         .weights = t == 0 ? b->w : NULL};
    }
    b->j = (ember_jagged){.batch = BATCH, .num_features = NT, .features = b->f};
}

static void make_batch(batch *b, int64_t step, uint64_t salt) {
    int64_t rows[NT];
    for (int t = 0; t < NT; t++) rows[t] = TABLES[t].rows;
    make_batch_rows(b, step, salt, rows);
}

/* dL/d(out): depends on out, so any difference in the forward shows in the update. */
static void make_grad(const float *out, float *g, int64_t n, int64_t step) {
    for (int64_t i = 0; i < n; i++)
        g[i] = 0.25f * out[i] + (float)(unit(mix((uint64_t)step * 1000003u + (uint64_t)i)) - 0.5) * 0.1f;
}

static ember_sparse_optim_config optim_of(ember_sparse_optim o) {
    ember_sparse_optim_config c = {.type = o};
    if (o == EMBER_SPARSE_OPTIM_ADAGRAD || o == EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD)
        c.initial_accumulator = 0.1f;
    if (o == EMBER_SPARSE_OPTIM_SGD) c.weight_decay = 0.01f;
    return c;
}

static float lr_of(int64_t step) { return 0.05f / (1.0f + 0.01f * (float)step); }

static int64_t out_dim(void) {
    int64_t d = 0;
    for (int t = 0; t < NT; t++) d += TABLES[t].dim;
    return d;
}

static ember_tensor *new_f32(int64_t r, int64_t c) {
    ember_tensor *x = NULL;
    ember_status st = ember_tensor_create(
        &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {r, c}}, &x);
    if (st != EMBER_OK) {
        fprintf(stderr, "tensor: %s\n", ember_last_error());
        exit(1);
    }
    return x;
}

/* ---- the resident reference ---- */

typedef struct reference {
    ember_sparse_optim optim;
    int64_t steps;
    float *outs;         /* (steps, BATCH, out_dim) */
    float *rows[NT];     /* final weights */
    float *state[NT];    /* final state */
    int state_floats[NT];
} reference;

static ember_ebc *resident_new(ember_sparse_optim o) {
    ember_ebc *e = NULL;
    ember_status st = ember_ebc_create(&(ember_ebc_config){.num_tables = NT, .tables = TABLES, .optim = optim_of(o)}, &e);
    if (st != EMBER_OK) {
        fprintf(stderr, "resident: %s\n", ember_last_error());
        exit(1);
    }
    ember_rng rng = {.seed = SEED, .offset = 8};
    CHECK_OK(ember_ebc_init_uniform(e, &rng, -0.1f, 0.1f));
    return e;
}

/* Train a resident collection from step `from` to `to` (steps are 0-based, the
   optimizer's step is k + 1). outs may be NULL. */
static void resident_train(ember_ebc *e, int64_t from, int64_t to, float *outs) {
    const int64_t D = out_dim();
    ember_tensor *out = new_f32(BATCH, D), *g = new_f32(BATCH, D);
    batch b;
    for (int64_t k = from; k < to; k++) {
        make_batch(&b, k, SEED);
        CHECK_OK(ember_ebc_forward(e, &b.j, out, NULL));
        const float *o = ember_tensor_data(out);
        if (outs) memcpy(outs + (size_t)k * BATCH * D, o, sizeof(float) * BATCH * (size_t)D);
        make_grad(o, ember_tensor_data(g), BATCH * D, k);
        CHECK_OK(ember_ebc_backward(e, &b.j, g, &(ember_ebc_call){.lr = lr_of(k), .step = k + 1}));
    }
    ember_tensor_destroy(out);
    ember_tensor_destroy(g);
}

static void reference_make(reference *r, ember_sparse_optim o, int64_t steps) {
    memset(r, 0, sizeof *r);
    r->optim = o;
    r->steps = steps;
    ember_ebc *e = resident_new(o);
    r->outs = malloc(sizeof(float) * (size_t)(steps * BATCH * out_dim()));
    resident_train(e, 0, steps, r->outs);
    for (int t = 0; t < NT; t++) {
        ember_ebc_table_info info;
        CHECK_OK(ember_ebc_get_table_info(e, t, &info));
        r->state_floats[t] = info.state_floats;
        r->rows[t] = malloc(sizeof(float) * (size_t)(info.rows * info.dim));
        r->state[t] = malloc(sizeof(float) * (size_t)(info.rows * (info.state_floats ? info.state_floats : 1)));
        CHECK_OK(ember_ebc_read_rows(e, t, 0, info.rows, r->rows[t]));
        if (info.state_floats) CHECK_OK(ember_ebc_read_state(e, t, 0, info.rows, r->state[t]));
    }
    ember_ebc_destroy(e);
}

static void reference_free(reference *r) {
    free(r->outs);
    for (int t = 0; t < NT; t++) {
        free(r->rows[t]);
        free(r->state[t]);
    }
}

/* Compare every row and state of a cache with a resident collection's (bitwise). */
static int cache_matches(ember_cache *c, ember_ebc *e, const char *what) {
    int ok = 1;
    for (int t = 0; t < ember_ebc_num_tables(e) && ok; t++) {
        ember_ebc_table_info info;
        CHECK_OK(ember_ebc_get_table_info(e, t, &info));
        size_t n = (size_t)(info.rows * info.dim), ns = (size_t)(info.rows * info.state_floats);
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        float *sa = malloc(sizeof(float) * (ns + 1)), *sb = malloc(sizeof(float) * (ns + 1));
        CHECK_OK(ember_ebc_read_rows(e, t, 0, info.rows, a));
        CHECK_OK(ember_cache_read_rows(c, t, 0, info.rows, b));
        if (memcmp(a, b, sizeof(float) * n) != 0) {
            for (size_t i = 0; i < n; i++)
                if (memcmp(&a[i], &b[i], 4)) {
                    fprintf(stderr, "FAIL %s: table %d row %zu col %zu: resident %.9g cache %.9g\n", what, t,
                            i / (size_t)info.dim, i % (size_t)info.dim, (double)a[i], (double)b[i]);
                    break;
                }
            ok = 0;
        }
        if (ok && ns) {
            CHECK_OK(ember_ebc_read_state(e, t, 0, info.rows, sa));
            CHECK_OK(ember_cache_read_state(c, t, 0, info.rows, sb));
            if (memcmp(sa, sb, sizeof(float) * ns) != 0) {
                fprintf(stderr, "FAIL %s: table %d optimizer state differs\n", what, t);
                ok = 0;
            }
        }
        free(a);
        free(b);
        free(sa);
        free(sb);
    }
    return ok;
}

/* ---- scratch directories ---- */

static char tmp_root[256];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static const char *tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmp_root, name);
    rm_rf(buf);
    return buf;
}

/* ---- training through the cache ---- */

typedef struct variant {
    double ratio;
    int64_t min_slots; /* 0: enough for three batches */
    ember_cache_policy policy;
    int lookahead;
    int store;         /* 0: host; 1: LMDB; 2: LMDB with a DRAM cache capped below the table */
    int reopen;        /* LMDB: checkpoint at half way, destroy, reopen, go on */
    const ember_cache_tiers *tiers; /* host store: precision tiers (all HOT: still exact) */
    int prep_threads;  /* the prepare's per-table passes on this many threads (0: auto) */
} variant;

static void base_config(ember_cache_config *cfg, ember_sparse_optim o, const variant *v, const char *path,
                        ember_memory *mm) {
    *cfg = (ember_cache_config){
        .collection = {.num_tables = NT, .tables = TABLES, .optim = optim_of(o)},
        .mm = mm,
        .ratio = v->ratio,
        .min_slots = v->min_slots ? v->min_slots : 3 * BATCH * MAXBAG,
        .policy = v->policy,
        .aging_interval = 16,
        .lookahead = v->lookahead,
        .store = v->store ? EMBER_CACHE_STORE_LMDB : EMBER_CACHE_STORE_HOST,
        .path = v->store ? path : NULL,
        .host_ratio = v->store == 2 ? 0.05 : 0.0,
        .tiers = v->tiers,
        .prepare_threads = v->prep_threads,
    };
}

/* Run steps [from, to) through the cache with its look-ahead, comparing outputs. */
static int cache_train(ember_cache *c, int look, int64_t from, int64_t to, const float *ref_outs,
                       const char *what) {
    const int64_t D = out_dim();
    ember_tensor *out = new_f32(BATCH, D), *g = new_f32(BATCH, D);
    batch *ring = calloc(MAX_LOOK_RING, sizeof *ring);
    int ok = 1;
    int64_t submitted = from;
    for (int64_t k = from; k < to && ok; k++) {
        while (submitted < to && submitted <= k + look) {
            batch *b = &ring[submitted % MAX_LOOK_RING];
            make_batch(b, submitted, SEED);
            ember_status st = ember_cache_submit(c, &b->j);
            if (st != EMBER_OK) {
                fprintf(stderr, "FAIL %s: submit %lld: %s\n", what, (long long)submitted, ember_last_error());
                ok = 0;
                break;
            }
            submitted++;
        }
        if (!ok) break;
        ember_cache_batch *cb = NULL;
        ember_status st = ember_cache_next(c, &cb);
        if (st != EMBER_OK) {
            fprintf(stderr, "FAIL %s: step %lld: %s\n", what, (long long)k, ember_last_error());
            ok = 0;
            break;
        }
        CHECK_EQ_INT(cb->seq >= 0, 1);
        CHECK_OK(ember_cache_forward(c, cb, out));
        const float *o = ember_tensor_data(out);
        if (ref_outs && memcmp(o, ref_outs + (size_t)k * BATCH * D, sizeof(float) * BATCH * (size_t)D) != 0) {
            fprintf(stderr, "FAIL %s: step %lld: pooled output differs from the resident run\n", what,
                    (long long)k);
            ok = 0;
        }
        make_grad(o, ember_tensor_data(g), BATCH * D, k);
        CHECK_OK(ember_cache_backward(c, cb, g, &(ember_ebc_call){.lr = lr_of(k), .step = k + 1}));
        CHECK_OK(ember_cache_release(c, cb, 1));
    }
    /* a failure may leave batches submitted: drain them */
    while (!ok) {
        ember_cache_batch *cb = NULL;
        ember_status st = ember_cache_next(c, &cb);
        if (st == EMBER_ERR_STATE) break;
        if (st == EMBER_OK) ember_cache_release(c, cb, 0);
    }
    free(ring);
    ember_tensor_destroy(out);
    ember_tensor_destroy(g);
    return ok;
}

static const char *store_label(int s) { return s == 0 ? "host" : s == 1 ? "lmdb" : "lmdb+dram"; }

static int run_variant(const reference *ref, const variant *v, ember_ebc *resident_final) {
    char what[160], path[512];
    snprintf(what, sizeof what, "%s ratio %.2f%s %s lookahead %d %s%s", ember_sparse_optim_name(ref->optim), v->ratio,
             v->min_slots ? " (mixed)" : "",
             ember_cache_policy_name(v->policy), v->lookahead, store_label(v->store), v->reopen ? " reopen" : "");
    tmp_path(path, sizeof path, "equiv");
    ember_cache_config cfg;
    base_config(&cfg, ref->optim, v, path, NULL);
    ember_cache *c = NULL;
    ember_status st = ember_cache_create(&cfg, &c);
    if (st != EMBER_OK) {
        fprintf(stderr, "FAIL %s: create: %s\n", what, ember_last_error());
        check__failed++;
        return 0;
    }
    ember_rng rng = {.seed = SEED, .offset = 8};
    CHECK_OK(ember_cache_init_uniform(c, &rng, -0.1f, 0.1f));
    int ok;
    if (v->reopen) {
        int64_t half = ref->steps / 2;
        ok = cache_train(c, v->lookahead, 0, half, ref->outs, what);
        CHECK_OK(ember_cache_checkpoint(c, half));
        ember_cache_destroy(c);
        c = NULL;
        cfg.open = EMBER_CACHE_OPEN_EXISTING;
        CHECK_OK(ember_cache_create(&cfg, &c));
        if (c) {
            CHECK_EQ_INT(ember_cache_checkpoint_step(c), half);
            ok = ok && cache_train(c, v->lookahead, half, ref->steps, ref->outs, what);
        } else {
            ok = 0;
        }
    } else {
        ok = cache_train(c, v->lookahead, 0, ref->steps, ref->outs, what);
    }
    if (c && ok) ok = cache_matches(c, resident_final, what);
    if (c && ok) {
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        /* the cache really worked: a small one evicted dirty rows, and LMDB was read */
        if (v->ratio < 0.05 && !v->min_slots) {
            CHECK(s.evictions > 0 && s.writebacks > 0);
            if (v->store == 2) CHECK(s.rows[EMBER_CACHE_LINK_DISK_TO_HOST] > 0 || s.generated > 0);
        }
        CHECK_EQ_INT(s.lookups, s.hits + (s.lookups - s.hits));
        CHECK(s.unique_hits <= s.unique && s.hits <= s.lookups);
    }
    if (ok) check__passed++;
    else check__failed++;
    ember_cache_destroy(c);
    rm_rf(path);
    return ok;
}

/* Keep the final resident collection of a reference run for row comparisons. */
static ember_ebc *resident_final(ember_sparse_optim o, int64_t steps) {
    ember_ebc *e = resident_new(o);
    resident_train(e, 0, steps, NULL);
    return e;
}

static void test_equivalence(void) {
    static const ember_sparse_optim optims[] = {EMBER_SPARSE_OPTIM_SGD, EMBER_SPARSE_OPTIM_ADAGRAD,
                                                EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD, EMBER_SPARSE_OPTIM_ADAM};
    /* 1%, 10%, 50%; 100% (every table mapped 1:1); 2% with the small table whole (mixed) */
    static const double ratios[] = {0.01, 0.10, 0.50, 1.0, 0.02};
    const int64_t steps = 200;
    int runs = 0, good = 0;
    for (size_t oi = 0; oi < sizeof optims / sizeof optims[0]; oi++) {
        reference ref;
        reference_make(&ref, optims[oi], steps);
        ember_ebc *fin = resident_final(optims[oi], steps);
        for (size_t ri = 0; ri < 5; ri++)
            for (int p = 0; p < EMBER_CACHE_POLICY_COUNT; p++)
                for (int look = 0; look <= 2; look++)
                    for (int store = 0; store <= 2; store++) {
                        variant v = {.ratio = ratios[ri], .policy = (ember_cache_policy)p, .lookahead = look,
                                     .store = store,
                                     .min_slots = ri == 4 ? 300 : 0,
                                     /* look-ahead 2 prepares on 3 threads (as on a GPU) */
                                     .prep_threads = look == 2 ? 3 : 0,
                                     .reopen = store > 0 && look == 1 && (ri == 0 || ri >= 3)};
                        runs++;
                        good += run_variant(&ref, &v, fin);
                    }
        ember_ebc_destroy(fin);
        reference_free(&ref);
    }
    printf("equivalence: %d of %d cached runs bit-identical to the resident run\n", good, runs);
}

/* Larger than RAM, in miniature: the host tier's budget is a quarter of the table, so
   rows live on disk and come up through a small DRAM cache; training still equals the
   resident run bit for bit. */
static void test_larger_than_ram(void) {
    static const ember_ebc_table_config big[2] = {{.name = "wide", .rows = 20000, .dim = 32},
                                                  {.name = "narrow", .rows = 5000, .dim = 8}};
    const ember_sparse_optim_config oc = {.type = EMBER_SPARSE_OPTIM_ADAM};
    size_t table_bytes = 0;
    for (int t = 0; t < 2; t++) {
        ember_ebc_table_info info;
        CHECK_OK(ember_ebc_record_layout(&big[t], &oc, 0, &info));
        table_bytes += (size_t)big[t].rows * info.record_bytes;
    }
    char path[512];
    tmp_path(path, sizeof path, "ram");
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU,
                                                        .budget = {[EMBER_TIER_HOST] = table_bytes / 4}},
                                 &mm));
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = 2, .tables = big, .optim = oc},
                                                      .mm = mm,
                                                      .ratio = 0.01,
                                                      .min_slots = 128,
                                                      .lookahead = 2,
                                                      .store = EMBER_CACHE_STORE_LMDB,
                                                      .path = path,
                                                      .host_ratio = 0.05},
                                &c));
    ember_ebc *res = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = big, .optim = oc}, &res));
    if (!c || !res) {
        ember_cache_destroy(c);
        ember_ebc_destroy(res);
        ember_memory_destroy(mm);
        return;
    }
    ember_rng r1 = {.seed = 9}, r2 = {.seed = 9};
    CHECK_OK(ember_cache_init_uniform(c, &r1, -0.5f, 0.5f));
    CHECK_OK(ember_ebc_init_uniform(res, &r2, -0.5f, 0.5f));
    enum { B = 16, L = 4, STEPS = 300 };
    ember_tensor *out = new_f32(B, 40), *g = new_f32(B, 40);
    int64_t ids[STEPS % 4 + 4][2][B * L], off[B + 1];
    for (int s = 0; s <= B; s++) off[s] = (int64_t)s * L;
    ember_jagged_feature f[4][2];
    ember_jagged j[4];
    int ok = 1;
    for (int64_t k = 0; k < STEPS + 2 && ok; k++) {
        if (k < STEPS) { /* submit k, two ahead of the one computed */
            int r = (int)(k % 4);
            for (int t = 0; t < 2; t++) {
                for (int i = 0; i < B * L; i++) {
                    double u = unit(mix((uint64_t)k * 977 + (uint64_t)t * 131 + (uint64_t)i));
                    ids[r][t][i] = (int64_t)((double)big[t].rows * u * u);
                }
                f[r][t] = (ember_jagged_feature){.values = ids[r][t], .offsets = off, .length = B * L};
            }
            j[r] = (ember_jagged){.batch = B, .num_features = 2, .features = f[r]};
            CHECK_OK(ember_cache_submit(c, &j[r]));
        }
        int64_t kk = k - 2;
        if (kk < 0) continue;
        ember_cache_batch *b = NULL;
        ember_status st = ember_cache_next(c, &b);
        CHECK_OK(st);
        if (st != EMBER_OK) {
            ok = 0;
            break;
        }
        CHECK_OK(ember_cache_forward(c, b, out));
        make_grad(ember_tensor_data(out), ember_tensor_data(g), B * 40, kk);
        CHECK_OK(ember_cache_backward(c, b, g, &(ember_ebc_call){.lr = 0.01f, .step = kk + 1}));
        CHECK_OK(ember_cache_release(c, b, 1));
        CHECK_OK(ember_ebc_forward(res, &j[kk % 4], out, NULL));
        make_grad(ember_tensor_data(out), ember_tensor_data(g), B * 40, kk);
        CHECK_OK(ember_ebc_backward(res, &j[kk % 4], g, &(ember_ebc_call){.lr = 0.01f, .step = kk + 1}));
    }
    CHECK(ok && cache_matches(c, res, "larger than RAM"));
    ember_cache_stats s;
    CHECK_OK(ember_cache_get_stats(c, &s));
    CHECK(s.rows[EMBER_CACHE_LINK_DISK_TO_HOST] > 0);
    CHECK(s.rows[EMBER_CACHE_LINK_HOST_TO_DISK] > 0);
    CHECK(s.host_hits > 0 && s.host_misses > 0);
    ember_memory_stats ms;
    ember_memory_get_stats(mm, &ms);
    CHECK(ms.peak_total[EMBER_TIER_HOST] < table_bytes / 4);
    ember_tensor_destroy(out);
    ember_tensor_destroy(g);
    ember_cache_destroy(c);
    ember_ebc_destroy(res);
    ember_memory_destroy(mm);
    rm_rf(path);
}

/* ---- policies ---- */

/* A one-table cache of 4 slots over a 100-row table, batches of single bags. */
static ember_cache *tiny_cache(ember_cache_policy p, int lookahead) {
    static const ember_ebc_table_config t1[1] = {{.name = "t", .rows = 100, .dim = 4}};
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = 1, .tables = t1},
                                                      .slots = (int64_t[]){4},
                                                      .policy = p,
                                                      .lookahead = lookahead},
                                &c));
    return c;
}

/* Prepare one bag of ids, return its hits (lookups whose row was cached). */
static int64_t touch(ember_cache *c, const int64_t *ids, int n) {
    int64_t off[2] = {0, n};
    ember_jagged_feature f = {.values = ids, .offsets = off, .length = n};
    ember_jagged j = {.batch = 1, .num_features = 1, .features = &f};
    ember_cache_batch *b = NULL;
    ember_status st = ember_cache_prepare(c, &j, &b);
    CHECK_OK(st);
    if (st != EMBER_OK) return -1;
    int64_t h = b->hits;
    CHECK_OK(ember_cache_release(c, b, 1));
    return h;
}

static void test_policies(void) {
    int64_t four1[4] = {1, 1, 1, 1};
    /* {1 x4}, {2}, {3}, {4} fill the cache; {5} evicts the LRU row (1) under LRU but the
       least frequent (2) under LFU */
    for (int p = 0; p < 2; p++) {
        ember_cache *c = tiny_cache(p == 0 ? EMBER_CACHE_POLICY_LRU : EMBER_CACHE_POLICY_LFU, 0);
        CHECK_EQ_INT(touch(c, four1, 4), 0); /* a row missed is missed by all its lookups */
        for (int64_t id = 2; id <= 5; id++) CHECK_EQ_INT(touch(c, &id, 1), 0);
        int64_t one = 1, two = 2;
        if (p == 0) {
            CHECK_EQ_INT(touch(c, &two, 1), 1);
            CHECK_EQ_INT(touch(c, &one, 1), 0);
        } else {
            CHECK_EQ_INT(touch(c, &one, 1), 1);
            CHECK_EQ_INT(touch(c, &two, 1), 0);
        }
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        CHECK_EQ_INT(s.evictions, 2);
        CHECK_EQ_INT(s.writebacks, 2);
        CHECK_EQ_INT(s.slots, 4);
        CHECK_EQ_INT(s.slots_used, 4);
        ember_cache_destroy(c);
    }
    /* STATIC: warm-up ranks keep 7 and 8 however the rest is used */
    {
        ember_cache *c = tiny_cache(EMBER_CACHE_POLICY_STATIC, 0);
        CHECK_OK(ember_cache_warmup(c, 0, (int64_t[]){7, 8}, (uint64_t[]){100, 50}, 2));
        for (int64_t id = 1; id <= 6; id++) CHECK_EQ_INT(touch(c, &id, 1), 0);
        int64_t seven = 7, eight = 8, five = 5, six = 6;
        CHECK_EQ_INT(touch(c, &seven, 1), 1);
        CHECK_EQ_INT(touch(c, &eight, 1), 1);
        CHECK_EQ_INT(touch(c, &six, 1), 1);
        CHECK_EQ_INT(touch(c, &five, 1), 1);
        ember_cache_destroy(c);
    }
    /* LFU warm-started from counts, then aged: a hot warm row outlives cold traffic */
    {
        ember_cache *c = tiny_cache(EMBER_CACHE_POLICY_LFU, 0);
        CHECK_OK(ember_cache_warmup(c, 0, (int64_t[]){42}, (uint64_t[]){1000}, 1));
        for (int64_t id = 1; id <= 20; id++) CHECK_EQ_INT(touch(c, &id, 1), 0);
        int64_t hot = 42;
        CHECK_EQ_INT(touch(c, &hot, 1), 1);
        ember_cache_destroy(c);
    }
}

/* Warm-up from a count file (ember_freq, as `ember count` writes it). */
static void test_warmup_counts(void) {
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 1}, &f));
    if (!f) return;
    /* 60 x 9, 50 x 8, 40 x 7, 30 x 6, then 20 cold ids once each */
    for (int64_t id = 6; id <= 9; id++)
        for (int r = 0; r < (int)(id - 3) * 10; r++) CHECK_OK(ember_freq_add(f, 0, &id, 1));
    for (int64_t id = 50; id < 70; id++) CHECK_OK(ember_freq_add(f, 0, &id, 1));
    char path[512];
    tmp_path(path, sizeof path, "counts.freq");
    CHECK_OK(ember_freq_save(f, path));
    for (int p = 0; p < EMBER_CACHE_POLICY_COUNT; p++) {
        ember_cache *c = tiny_cache((ember_cache_policy)p, 0);
        CHECK_OK(ember_cache_warmup_file(c, path));
        int64_t hot[4] = {9, 8, 7, 6};
        CHECK_EQ_INT(touch(c, hot, 4), 4);
        ember_cache_destroy(c);
    }
    /* counts of another model */
    ember_freq *f2 = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 2}, &f2));
    ember_cache *c = tiny_cache(EMBER_CACHE_POLICY_LFU, 0);
    CHECK_STATUS(ember_cache_warmup_counts(c, f2), EMBER_ERR_SHAPE);
    int64_t far = 1000;
    CHECK_OK(ember_freq_add(f, 0, &far, 1));
    for (int r = 0; r < 100; r++) CHECK_OK(ember_freq_add(f, 0, &far, 1));
    CHECK_STATUS(ember_cache_warmup_counts(c, f), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_cache_warmup_file(c, "/nonexistent/counts"), EMBER_ERR_IO);
    ember_cache_destroy(c);
    ember_freq_destroy(f);
    ember_freq_destroy(f2);
    remove(path);
}

/* Ids of a batch submitted ahead are not evicted for the batch before it. */
static void test_lookahead_protection(void) {
    ember_cache *c = tiny_cache(EMBER_CACHE_POLICY_LRU, 0);
    int64_t fill[4] = {1, 2, 3, 4};
    CHECK_EQ_INT(touch(c, fill, 4), 0);
    int64_t five = 5, one = 1, off[2] = {0, 1};
    ember_jagged_feature f5 = {.values = &five, .offsets = off, .length = 1};
    ember_jagged_feature f1 = {.values = &one, .offsets = off, .length = 1};
    ember_jagged j5 = {.batch = 1, .num_features = 1, .features = &f5};
    ember_jagged j1 = {.batch = 1, .num_features = 1, .features = &f1};
    CHECK_OK(ember_cache_submit(c, &j5));
    CHECK_OK(ember_cache_submit(c, &j1));
    ember_cache_batch *b = NULL;
    CHECK_OK(ember_cache_next(c, &b)); /* LRU would evict 1: batch 1 needs it, so 2 goes */
    if (b) CHECK_OK(ember_cache_release(c, b, 1));
    CHECK_OK(ember_cache_next(c, &b));
    if (b) {
        CHECK_EQ_INT(b->hits, 1);
        CHECK_OK(ember_cache_release(c, b, 1));
    }
    int64_t two = 2;
    CHECK_EQ_INT(touch(c, &two, 1), 0);
    ember_cache_stats s;
    CHECK_OK(ember_cache_get_stats(c, &s));
    CHECK_EQ_INT(s.protected_evictions, 0);
    ember_cache_destroy(c);
}

/* ---- initialisation, row I/O, warm-up, flush, statistics ---- */

static void test_rows_and_init(void) {
    static const ember_ebc_table_config fmts[4] = {
        {.rows = 513, .dim = 7, .format = EMBER_ROW_FORMAT_F32},
        {.rows = 300, .dim = 5, .format = EMBER_ROW_FORMAT_F16},
        {.rows = 300, .dim = 9, .format = EMBER_ROW_FORMAT_BF16},
        {.rows = 257, .dim = 6, .format = EMBER_ROW_FORMAT_INT8_ROWWISE},
    };
    ember_sparse_optim_config oc = {.type = EMBER_SPARSE_OPTIM_ADAGRAD, .initial_accumulator = 0.5f};
    for (int run = 0; run < 4; run++) {
        int store = run & 1;
        double ratio = run < 2 ? 0.1 : 1.0; /* 1.0: every table mapped 1:1 */
        ember_ebc *res = NULL;
        CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 4, .tables = fmts, .optim = oc}, &res));
        ember_rng r0 = {.seed = 77, .offset = 3};
        CHECK_OK(ember_ebc_init_uniform(res, &r0, -1.0f, 2.0f));
        char path[512];
        tmp_path(path, sizeof path, "rows");
        ember_cache *c = NULL;
        CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = 4, .tables = fmts, .optim = oc},
                                                          .ratio = ratio,
                                                          .store = store ? EMBER_CACHE_STORE_LMDB : EMBER_CACHE_STORE_HOST,
                                                          .path = store ? path : NULL,
                                                          .host_ratio = store ? 0.2 : 0.0},
                                    &c));
        if (!c) {
            ember_ebc_destroy(res);
            continue;
        }
        /* a new store is zeros with initial state, as a new collection */
        float z[9], st[9];
        CHECK_OK(ember_cache_read_rows(c, 2, 17, 1, z));
        CHECK_OK(ember_cache_read_state(c, 2, 17, 1, st));
        CHECK_NEAR(z[0], 0.0, 0.0);
        CHECK_NEAR(st[8], 0.5, 0.0);
        ember_rng r1 = {.seed = 77, .offset = 3};
        CHECK_OK(ember_cache_init_uniform(c, &r1, -1.0f, 2.0f));
        CHECK_EQ_INT(r1.offset, r0.offset); /* the same stream, the same advance */
        CHECK(cache_matches(c, res, store ? "init lmdb" : "init host"));
        /* write rows and state anywhere (some cached, some not), read them back */
        int64_t warm[3] = {5, 6, 400};
        CHECK_OK(ember_cache_warmup(c, 0, warm, NULL, 3));
        float w[10 * 7], back[10 * 7], s7[10 * 7];
        for (int i = 0; i < 70; i++) w[i] = (float)i * 0.25f - 3.0f;
        CHECK_OK(ember_cache_write_rows(c, 0, 2, 10, w));
        CHECK_OK(ember_cache_read_rows(c, 0, 2, 10, back));
        CHECK(memcmp(w, back, sizeof w) == 0);
        CHECK_OK(ember_ebc_write_rows(res, 0, 2, 10, w));
        for (int i = 0; i < 70; i++) s7[i] = (float)i;
        CHECK_OK(ember_cache_write_state(c, 0, 400, 10, s7));
        CHECK_OK(ember_ebc_write_state(res, 0, 400, 10, s7));
        CHECK_OK(ember_cache_flush(c));
        CHECK(cache_matches(c, res, "row I/O"));
        if (store == 0) {
            /* after a flush the host store is the whole, current table */
            ember_ebc *h = ember_cache_host_collection(c);
            CHECK(h != NULL);
            float hv[70];
            if (h) CHECK_OK(ember_ebc_read_rows(h, 0, 2, 10, hv));
            CHECK(memcmp(hv, w, sizeof hv) == 0);
        }
        /* ranges are checked */
        CHECK_STATUS(ember_cache_read_rows(c, 4, 0, 1, z), EMBER_ERR_INDEX);
        CHECK_STATUS(ember_cache_read_rows(c, 0, 510, 4, back), EMBER_ERR_INDEX);
        CHECK_STATUS(ember_cache_warmup(c, 0, (int64_t[]){513}, NULL, 1), EMBER_ERR_INDEX);
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        char json[4096];
        size_t need = ember_cache_stats_json(&s, json, sizeof json);
        CHECK(need < sizeof json);
        CHECK(strstr(json, "\"hit_rate\":") != NULL);
        CHECK(strstr(json, "\"host_to_device\":") != NULL);
        CHECK(strstr(json, "\"hidden_fraction\":") != NULL);
        CHECK_EQ_INT(ember_cache_stats_json(&s, NULL, 0), need);
        ember_cache_destroy(c);
        ember_ebc_destroy(res);
        rm_rf(path);
    }
}

/* ---- bad input: named statuses, nothing changed ---- */

static void test_bad_input(void) {
    const ember_sparse_optim o = EMBER_SPARSE_OPTIM_ADAGRAD;
    ember_ebc *res = resident_new(o);
    variant v = {.ratio = 0.05, .policy = EMBER_CACHE_POLICY_LFU, .lookahead = 1};
    ember_cache_config cfg;
    base_config(&cfg, o, &v, NULL, NULL);
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&cfg, &c));
    if (!c) {
        ember_ebc_destroy(res);
        return;
    }
    ember_rng rng = {.seed = SEED, .offset = 8};
    CHECK_OK(ember_cache_init_uniform(c, &rng, -0.1f, 0.1f));
    resident_train(res, 0, 20, NULL);
    CHECK(cache_train(c, 1, 0, 20, NULL, "bad input, before"));

    batch b;
    ember_cache_batch *cb = NULL;
    /* an id past the table */
    make_batch(&b, 20, SEED);
    int64_t last = b.f[1].length - 1;
    CHECK(last >= 0);
    b.ids[1][last] = TABLES[1].rows;
    CHECK_OK(ember_cache_submit(c, &b.j));
    CHECK_STATUS(ember_cache_next(c, &cb), EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "ember_cache_next") != NULL);
    CHECK(strstr(ember_last_error(), "table 1 (\"items\")") != NULL);
    CHECK(strstr(ember_last_error(), "is outside [0, 1500)") != NULL);
    /* a negative id, decreasing offsets */
    make_batch(&b, 20, SEED);
    b.ids[0][0] = -3;
    CHECK_OK(ember_cache_submit(c, &b.j));
    CHECK_STATUS(ember_cache_next(c, &cb), EMBER_ERR_INDEX);
    make_batch(&b, 20, SEED);
    b.off[2][3] = b.off[2][4] + 1;
    CHECK_OK(ember_cache_submit(c, &b.j));
    CHECK_STATUS(ember_cache_next(c, &cb), EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "offsets") != NULL);
    /* structure */
    make_batch(&b, 20, SEED);
    b.j.num_features = 2;
    CHECK_STATUS(ember_cache_submit(c, &b.j), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_cache_submit(c, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_cache_next(c, &cb), EMBER_ERR_STATE);
    CHECK_STATUS(ember_cache_checkpoint(c, 1), EMBER_ERR_UNSUPPORTED);
    CHECK_STATUS(ember_cache_init_uniform(c, &rng, 1.0f, 0.0f), EMBER_ERR_INVALID_ARGUMENT);
    /* a handed-out batch blocks row I/O; a released one cannot be released again */
    make_batch(&b, 20, SEED);
    CHECK_OK(ember_cache_submit(c, &b.j));
    CHECK_OK(ember_cache_next(c, &cb));
    float row[8];
    CHECK_STATUS(ember_cache_read_rows(c, 0, 0, 1, row), EMBER_ERR_STATE);
    CHECK_STATUS(ember_cache_flush(c), EMBER_ERR_STATE);
    CHECK_OK(ember_cache_release(c, cb, 0));
    CHECK_STATUS(ember_cache_release(c, cb, 0), EMBER_ERR_INVALID_ARGUMENT);
    /* nothing was changed by any of it: training goes on equal to the resident run */
    resident_train(res, 20, 40, NULL);
    CHECK(cache_train(c, 1, 20, 40, NULL, "bad input, after"));
    CHECK(cache_matches(c, res, "bad input"));
    ember_cache_destroy(c);
    ember_ebc_destroy(res);

    /* bad configs */
    ember_cache_config bad = cfg;
    bad.ratio = 0;
    CHECK_STATUS(ember_cache_create(&bad, &c), EMBER_ERR_INVALID_ARGUMENT);
    bad = cfg;
    bad.lookahead = 99;
    CHECK_STATUS(ember_cache_create(&bad, &c), EMBER_ERR_INVALID_ARGUMENT);
    bad = cfg;
    bad.prepare_threads = -1;
    CHECK_STATUS(ember_cache_create(&bad, &c), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "prepare_threads") != NULL);
    bad = cfg;
    bad.store = EMBER_CACHE_STORE_LMDB;
    bad.path = NULL;
    CHECK_STATUS(ember_cache_create(&bad, &c), EMBER_ERR_INVALID_ARGUMENT);
    bad = cfg;
    bad.host_ratio = 0.5;
    CHECK_STATUS(ember_cache_create(&bad, &c), EMBER_ERR_INVALID_ARGUMENT);
    ember_memory *small = NULL;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU, .budget = {[EMBER_TIER_DEVICE] = 4096}},
                                 &small));
    bad = cfg;
    bad.mm = small;
    CHECK_STATUS(ember_cache_create(&bad, &c), EMBER_ERR_OUT_OF_MEMORY);
    ember_memory_destroy(small);
}

/* A batch whose unique ids exceed a table's slots, alone or next to held batches. */
static void test_too_small(void) {
    ember_cache *c = tiny_cache(EMBER_CACHE_POLICY_LFU, 0);
    int64_t ten[10] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 10};
    int64_t off[2] = {0, 10};
    ember_jagged_feature f = {.values = ten, .offsets = off, .length = 10};
    ember_jagged j = {.batch = 1, .num_features = 1, .features = &f};
    ember_cache_batch *b = NULL;
    CHECK_STATUS(ember_cache_prepare(c, &j, &b), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(strstr(ember_last_error(), "9 unique ids") != NULL);
    CHECK(strstr(ember_last_error(), "must hold at least 9") != NULL);
    int64_t ok4[4] = {1, 2, 3, 4};
    CHECK_EQ_INT(touch(c, ok4, 4), 0);
    CHECK_EQ_INT(touch(c, ok4, 4), 4);
    /* holding a batch of 3 rows, the next one of 3 new rows cannot fit in 4 slots */
    int64_t a[3] = {20, 21, 22}, bb[3] = {30, 31, 32}, off3[2] = {0, 3};
    ember_jagged_feature fa = {.values = a, .offsets = off3, .length = 3};
    ember_jagged_feature fb = {.values = bb, .offsets = off3, .length = 3};
    ember_jagged ja = {.batch = 1, .num_features = 1, .features = &fa};
    ember_jagged jb = {.batch = 1, .num_features = 1, .features = &fb};
    ember_cache_batch *ba = NULL;
    CHECK_OK(ember_cache_prepare(c, &ja, &ba));
    CHECK_STATUS(ember_cache_prepare(c, &jb, &b), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(strstr(ember_last_error(), "release them") != NULL);
    if (ba) CHECK_OK(ember_cache_release(c, ba, 1));
    CHECK_OK(ember_cache_prepare(c, &jb, &b));
    if (b) CHECK_OK(ember_cache_release(c, b, 1));
    ember_cache_destroy(c);
    /* with look-ahead the same pair waits for the release instead of failing */
    c = tiny_cache(EMBER_CACHE_POLICY_LRU, 1);
    CHECK_OK(ember_cache_submit(c, &ja));
    CHECK_OK(ember_cache_submit(c, &jb));
    CHECK_OK(ember_cache_next(c, &ba));
    if (ba) CHECK_OK(ember_cache_release(c, ba, 1));
    CHECK_OK(ember_cache_next(c, &b));
    if (b) {
        CHECK_EQ_INT(b->hits, 0);
        CHECK_OK(ember_cache_release(c, b, 1));
    }
    ember_cache_destroy(c);
}

#ifdef EMBER_HAVE_LMDB
#include <lmdb.h>

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_lmdb_errors(void) {
    char path[512] = "", file[600];
    variant v = {.ratio = 0.1, .store = 1};
    ember_cache_config cfg;
    ember_cache *c = NULL;
    base_config(&cfg, EMBER_SPARSE_OPTIM_SGD, &v, path, NULL);
    /* not a directory */
    tmp_path(path, sizeof path, "plainfile");
    write_file(path, "hello");
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), "not a directory") != NULL);
    rm_rf(path);
    /* missing */
    cfg.open = EMBER_CACHE_OPEN_EXISTING;
    tmp_path(path, sizeof path, "missing");
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_NOT_FOUND);
    mkdir(path, 0755);
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_NOT_FOUND);
    CHECK(strstr(ember_last_error(), "no data.mdb") != NULL);
    /* a parent that does not exist */
    cfg.open = EMBER_CACHE_OPEN_OR_CREATE;
    char deep[600];
    snprintf(deep, sizeof deep, "%s/no/such/dir", path);
    cfg.path = deep;
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_NOT_FOUND);
    cfg.path = path;
    /* garbage where the store should be */
    snprintf(file, sizeof file, "%s/data.mdb", path);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk - 1; i++) junk[i] = (char)('a' + i % 23);
    junk[sizeof junk - 1] = '\0';
    write_file(file, junk);
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_FORMAT);
    rm_rf(path);
    /* a real store: create, checkpoint, then open it with other tables or optimizer */
    tmp_path(path, sizeof path, "store");
    CHECK_OK(ember_cache_create(&cfg, &c));
    if (c) {
        CHECK_EQ_INT(ember_cache_checkpoint_step(c), -1);
        CHECK_OK(ember_cache_checkpoint(c, 0));
        ember_cache_destroy(c);
    }
    cfg.open = EMBER_CACHE_OPEN_CREATE;
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_STATE);
    cfg.open = EMBER_CACHE_OPEN_EXISTING;
    ember_ebc_table_config other[NT];
    memcpy(other, TABLES, sizeof other);
    other[2].dim = 13;
    cfg.collection.tables = other;
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "table 2 has dim 12") != NULL);
    cfg.collection.tables = TABLES;
    cfg.collection.optim = optim_of(EMBER_SPARSE_OPTIM_ADAM);
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_FORMAT);
    cfg.collection.optim = optim_of(EMBER_SPARSE_OPTIM_SGD);
    CHECK_OK(ember_cache_create(&cfg, &c));
    if (c) {
        CHECK_EQ_INT(ember_cache_checkpoint_step(c), 0);
        ember_cache_destroy(c);
    }
    /* a stored row of the wrong size, written behind the cache's back */
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    int rc = mdb_env_create(&env);
    if (!rc) mdb_env_set_maxdbs(env, 4);
    if (!rc) rc = mdb_env_open(env, path, 0, 0644);
    if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "rows", 0, &dbi);
    unsigned char key[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
    MDB_val k = {12, key}, val = {3, (void *)"bad"};
    if (!rc) rc = mdb_put(txn, dbi, &k, &val, 0);
    if (!rc) rc = mdb_txn_commit(txn);
    if (env) mdb_env_close(env);
    CHECK_EQ_INT(rc, 0);
    CHECK_OK(ember_cache_create(&cfg, &c));
    if (c) {
        float row[8];
        CHECK_OK(ember_cache_read_rows(c, 0, 4, 1, row));
        CHECK_STATUS(ember_cache_read_rows(c, 0, 5, 1, row), EMBER_ERR_FORMAT);
        CHECK(strstr(ember_last_error(), "table 0 row 5 holds 3 B") != NULL);
        ember_cache_destroy(c);
    }
    rm_rf(path);
    /* an LMDB environment that is not an ember store */
    tmp_path(path, sizeof path, "foreign");
    mkdir(path, 0755);
    env = NULL;
    rc = mdb_env_create(&env);
    if (!rc) rc = mdb_env_open(env, path, 0, 0644);
    if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (!rc) rc = mdb_dbi_open(txn, NULL, 0, &dbi);
    if (!rc) rc = mdb_put(txn, dbi, &k, &val, 0);
    if (!rc) rc = mdb_txn_commit(txn);
    if (env) mdb_env_close(env);
    CHECK_EQ_INT(rc, 0);
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "not an ember store") != NULL);
    rm_rf(path);
}

/* The map fills up mid-training: a named status, the batch rolled back, nothing lost. */
static void test_map_full(void) {
    static const ember_ebc_table_config big[1] = {{.name = "big", .rows = 20000, .dim = 16}};
    char path[512];
    tmp_path(path, sizeof path, "full");
    ember_sparse_optim_config oc = {.type = EMBER_SPARSE_OPTIM_SGD};
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = 1, .tables = big, .optim = oc},
                                                      .slots = (int64_t[]){64},
                                                      .store = EMBER_CACHE_STORE_LMDB,
                                                      .path = path,
                                                      .map_size = 256 << 10},
                                &c));
    ember_ebc *res = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 1, .tables = big, .optim = oc}, &res));
    if (!c || !res) {
        ember_cache_destroy(c);
        ember_ebc_destroy(res);
        return;
    }
    ember_rng r1 = {.seed = 5}, r2 = {.seed = 5};
    CHECK_OK(ember_cache_init_uniform(c, &r1, -1.0f, 1.0f));
    CHECK_OK(ember_ebc_init_uniform(res, &r2, -1.0f, 1.0f));
    ember_tensor *out = new_f32(4, 16), *g = new_f32(4, 16);
    int64_t ids[16], off[5] = {0, 4, 8, 12, 16};
    ember_jagged_feature f = {.values = ids, .offsets = off, .length = 16};
    ember_jagged j = {.batch = 4, .num_features = 1, .features = &f};
    ember_status st = EMBER_OK;
    int64_t k;
    for (k = 0; k < 5000; k++) {
        for (int i = 0; i < 16; i++) ids[i] = (int64_t)(mix((uint64_t)k * 16 + (uint64_t)i) % 20000);
        ember_cache_batch *b = NULL;
        st = ember_cache_prepare(c, &j, &b);
        if (st != EMBER_OK) break;
        CHECK_OK(ember_cache_forward(c, b, out));
        make_grad(ember_tensor_data(out), ember_tensor_data(g), 64, k);
        CHECK_OK(ember_cache_backward(c, b, g, &(ember_ebc_call){.lr = 0.1f, .step = k + 1}));
        CHECK_OK(ember_cache_release(c, b, 1));
        CHECK_OK(ember_ebc_forward(res, &j, out, NULL));
        make_grad(ember_tensor_data(out), ember_tensor_data(g), 64, k);
        CHECK_OK(ember_ebc_backward(res, &j, g, &(ember_ebc_call){.lr = 0.1f, .step = k + 1}));
    }
    CHECK_STATUS(st, EMBER_ERR_STORE_FULL);
    CHECK(strstr(ember_last_error(), "map_size") != NULL);
    CHECK_STR(ember_status_name(EMBER_ERR_STORE_FULL), "EMBER_ERR_STORE_FULL");
    /* the failed batch changed nothing: every row still equals the resident run's */
    CHECK(cache_matches(c, res, "map full"));
    ember_tensor_destroy(out);
    ember_tensor_destroy(g);
    ember_cache_destroy(c);
    ember_ebc_destroy(res);
    rm_rf(path);
}

/* ---- crash: kill -9 at any moment, reopen at exactly the last checkpoint ---- */

#define CKPT_EVERY 5

static ember_cache_config crash_config(const char *path, ember_cache_open open) {
    static variant v = {.ratio = 0.01, .policy = EMBER_CACHE_POLICY_LFU, .lookahead = 1, .store = 2};
    ember_cache_config cfg;
    base_config(&cfg, EMBER_SPARSE_OPTIM_ADAM, &v, path, NULL);
    cfg.open = open;
    return cfg;
}

static int crash_child(const char *path, int fd) {
    ember_cache_config cfg = crash_config(path, EMBER_CACHE_OPEN_CREATE);
    ember_cache *c = NULL;
    if (ember_cache_create(&cfg, &c) != EMBER_OK) {
        fprintf(stderr, "crash child: %s\n", ember_last_error());
        return 3;
    }
    ember_rng rng = {.seed = SEED, .offset = 8};
    if (ember_cache_init_uniform(c, &rng, -0.1f, 0.1f) != EMBER_OK || ember_cache_checkpoint(c, 0) != EMBER_OK)
        return 4;
    if (dprintf(fd, "0\n") < 0) return 5;
    for (int64_t k = 0; k < 1000000; k += CKPT_EVERY) {
        if (!cache_train(c, 1, k, k + CKPT_EVERY, NULL, "crash child")) return 6;
        if (ember_cache_checkpoint(c, k + CKPT_EVERY) != EMBER_OK) {
            fprintf(stderr, "crash child: %s\n", ember_last_error());
            return 7;
        }
        if (dprintf(fd, "%lld\n", (long long)(k + CKPT_EVERY)) < 0) return 5;
    }
    ember_cache_destroy(c);
    return 0;
}

static void test_crash(void) {
    for (int trial = 0; trial < 3; trial++) {
        char path[512], name[32], fdarg[16];
        snprintf(name, sizeof name, "crash%d", trial);
        tmp_path(path, sizeof path, name);
        int p[2];
        if (pipe(p) != 0) {
            CHECK(0);
            return;
        }
        snprintf(fdarg, sizeof fdarg, "%d", p[1]);
        char *argv[] = {"test_cache", "--crash-child", path, fdarg, NULL};
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            execv("/proc/self/exe", argv);
            _exit(127);
        }
        close(p[1]);
        CHECK(pid > 0);
        if (pid <= 0) return;
        /* wait for a few checkpoints, then kill at a random moment */
        FILE *in = fdopen(p[0], "r");
        long long step = -1, got;
        int seen = 0;
        while (seen < 3 + 2 * trial && fscanf(in, "%lld", &got) == 1) {
            step = got;
            seen++;
        }
        struct timespec ts = {0, (long)(mix((uint64_t)trial + (uint64_t)time(NULL)) % 20000000)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        while (fscanf(in, "%lld", &got) == 1) step = got;
        fclose(in);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK(step >= 0);
        if (!(WIFSIGNALED(status)) || step < 0) {
            fprintf(stderr, "FAIL crash trial %d: the child ended on its own (status %d)\n", trial, status);
            continue;
        }
        ember_cache_config cfg = crash_config(path, EMBER_CACHE_OPEN_EXISTING);
        ember_cache *c = NULL;
        CHECK_OK(ember_cache_create(&cfg, &c));
        if (!c) continue;
        int64_t s = ember_cache_checkpoint_step(c);
        /* the child may die after a commit and before saying so */
        CHECK(s == step || s == step + CKPT_EVERY);
        ember_ebc *res = resident_new(EMBER_SPARSE_OPTIM_ADAM);
        resident_train(res, 0, s, NULL);
        char what[64];
        snprintf(what, sizeof what, "crash trial %d at step %lld", trial, (long long)s);
        CHECK(cache_matches(c, res, what));
        /* and training resumes from there */
        CHECK(cache_train(c, 1, s, s + 7, NULL, what));
        resident_train(res, s, s + 7, NULL);
        CHECK(cache_matches(c, res, what));
        ember_ebc_destroy(res);
        ember_cache_destroy(c);
        rm_rf(path);
    }
}
#endif

/* ---- precision tiers of the host store ---- */

/* Tables for the tier tests: f32 of dim > 8 (int8 COLD rows), f32 of dim 4 (COLD rows
   stay f16: int8 would be no smaller), and an f16 table (never tiered). */
static const ember_ebc_table_config TT[NT] = {
    {.name = "big", .rows = 3000, .dim = 16, .format = EMBER_ROW_FORMAT_F32, .pooling = EMBER_POOLING_SUM},
    {.name = "small", .rows = 800, .dim = 4, .format = EMBER_ROW_FORMAT_F32, .pooling = EMBER_POOLING_MEAN},
    {.name = "half", .rows = 500, .dim = 12, .format = EMBER_ROW_FORMAT_F16, .pooling = EMBER_POOLING_SUM},
};

static int64_t tt_out_dim(void) { return TT[0].dim + TT[1].dim + TT[2].dim; }

static ember_freq *tt_counts(int64_t steps) {
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f));
    int64_t rows[NT] = {TT[0].rows, TT[1].rows, TT[2].rows};
    batch b;
    for (int64_t k = 0; f && k < steps; k++) {
        make_batch_rows(&b, k, SEED, rows);
        for (int t = 0; t < NT; t++) CHECK_OK(ember_freq_add(f, t, b.f[t].values, b.f[t].length));
    }
    return f;
}

/* Every weight and state of a cache, tables one after the other. */
typedef struct snap {
    float *w, *s;
    size_t nw, ns;
} snap;

static void snap_take(ember_cache *c, const ember_ebc_table_config *tabs, ember_sparse_optim o, snap *out) {
    memset(out, 0, sizeof *out);
    ember_sparse_optim_config oc = optim_of(o);
    size_t nw = 0, ns = 0;
    for (int t = 0; t < NT; t++) {
        ember_ebc_table_info info;
        CHECK_OK(ember_ebc_record_layout(&tabs[t], &oc, 0, &info));
        nw += (size_t)(tabs[t].rows * tabs[t].dim);
        ns += (size_t)tabs[t].rows * (size_t)info.state_floats;
    }
    out->w = malloc(sizeof(float) * nw);
    out->s = malloc(sizeof(float) * (ns + 1));
    out->nw = nw;
    out->ns = ns;
    size_t kw = 0, ks = 0;
    for (int t = 0; t < NT; t++) {
        ember_ebc_table_info info;
        CHECK_OK(ember_ebc_record_layout(&tabs[t], &oc, 0, &info));
        CHECK_OK(ember_cache_read_rows(c, t, 0, tabs[t].rows, out->w + kw));
        kw += (size_t)(tabs[t].rows * tabs[t].dim);
        if (info.state_floats) CHECK_OK(ember_cache_read_state(c, t, 0, tabs[t].rows, out->s + ks));
        ks += (size_t)tabs[t].rows * (size_t)info.state_floats;
    }
}

static void snap_free(snap *s) {
    free(s->w);
    free(s->s);
}

static int snap_equal(const snap *a, const snap *b) {
    return a->nw == b->nw && a->ns == b->ns && memcmp(a->w, b->w, sizeof(float) * a->nw) == 0 &&
           memcmp(a->s, b->s, sizeof(float) * a->ns) == 0;
}

static double snap_max_diff(const snap *a, const snap *b) {
    double m = 0;
    for (size_t i = 0; i < a->nw && a->nw == b->nw; i++) m = fmax(m, fabs((double)a->w[i] - (double)b->w[i]));
    return m;
}

/* Train the TT tables `steps` steps through a small cache (2% of the rows, LFU) with
   tiers ti (NULL: none), flushing every flush_every steps (0: never); snapshot at the end. */
static void tier_train(const ember_cache_tiers *ti, ember_sparse_optim o, int look, int64_t steps, int flush_every,
                       snap *out) {
    memset(out, 0, sizeof *out);
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = NT, .tables = TT,
                                                                     .optim = optim_of(o)},
                                                      .ratio = 0.02,
                                                      .min_slots = 3 * BATCH * MAXBAG,
                                                      .policy = EMBER_CACHE_POLICY_LFU,
                                                      .aging_interval = 16,
                                                      .lookahead = look,
                                                      .tiers = ti},
                                &c));
    if (!c) return;
    ember_rng rng = {.seed = SEED, .offset = 8};
    CHECK_OK(ember_cache_init_uniform(c, &rng, -0.1f, 0.1f));
    const int64_t D = tt_out_dim();
    int64_t rows[NT] = {TT[0].rows, TT[1].rows, TT[2].rows};
    ember_tensor *outt = new_f32(BATCH, D), *g = new_f32(BATCH, D);
    batch *ring = calloc(MAX_LOOK_RING, sizeof *ring);
    int64_t submitted = 0;
    for (int64_t k = 0; k < steps; k++) {
        while (submitted < steps && submitted <= k + look) {
            make_batch_rows(&ring[submitted % MAX_LOOK_RING], submitted, SEED, rows);
            CHECK_OK(ember_cache_submit(c, &ring[submitted % MAX_LOOK_RING].j));
            submitted++;
        }
        ember_cache_batch *cb = NULL;
        CHECK_OK(ember_cache_next(c, &cb));
        if (!cb) break;
        CHECK_OK(ember_cache_forward(c, cb, outt));
        make_grad(ember_tensor_data(outt), ember_tensor_data(g), BATCH * D, k);
        CHECK_OK(ember_cache_backward(c, cb, g, &(ember_ebc_call){.lr = lr_of(k), .step = k + 1}));
        CHECK_OK(ember_cache_release(c, cb, 1));
        if (flush_every && (k + 1) % flush_every == 0 && submitted == k + 1) CHECK_OK(ember_cache_flush(c));
    }
    /* evict everything through the store: what a row reads back is what the store holds */
    CHECK_OK(ember_cache_flush(c));
    snap_take(c, TT, o, out);
    ember_cache_stats st;
    CHECK_OK(ember_cache_get_stats(c, &st));
    CHECK(st.evictions > 0 && st.writebacks > 0);
    free(ring);
    ember_tensor_destroy(outt);
    ember_tensor_destroy(g);
    ember_cache_destroy(c);
}

/* Every row HOT: training through tiers is training without them, bit for bit. */
static void test_tiers_all_hot(void) {
    static const ember_sparse_optim optims[] = {EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ADAM};
    uint8_t *zeros = calloc((size_t)TABLES[0].rows, 1);
    ember_cache_tier_map maps[NT] = {{.tier = zeros, .rows = TABLES[0].rows}, {0}, {0}};
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f));
    CHECK_OK(ember_freq_add(f, 0, (int64_t[]){7, 7, 9}, 3));
    ember_cache_tiers by_map = {.maps = maps, .seed = 3};
    ember_cache_tiers by_counts = {.counts = f, .hot = 1.0, .seed = 3};
    const int64_t steps = 120;
    for (size_t oi = 0; oi < 2; oi++) {
        reference ref;
        reference_make(&ref, optims[oi], steps);
        ember_ebc *fin = resident_final(optims[oi], steps);
        for (int way = 0; way < 2; way++)
            for (int look = 0; look <= 1; look++) {
                variant v = {.ratio = 0.01, .policy = EMBER_CACHE_POLICY_LFU, .lookahead = look,
                             .tiers = way ? &by_counts : &by_map};
                CHECK(run_variant(&ref, &v, fin));
            }
        ember_ebc_destroy(fin);
        reference_free(&ref);
    }
    ember_freq_destroy(f);
    free(zeros);
}

/* Stochastic rounding is a function of (seed, table, row, values): the same run twice,
   or with flushes in between, gives the same bits; another seed or rounding does not. */
static void test_tiers_determinism(void) {
    const int64_t steps = 150;
    ember_freq *f = tt_counts(steps);
    ember_cache_tiers ti = {.counts = f, .hot = 0.05, .warm = 0.25, .seed = 7};
    for (int oi = 0; oi < 2; oi++) {
        ember_sparse_optim o = oi ? EMBER_SPARSE_OPTIM_ADAM : EMBER_SPARSE_OPTIM_ADAGRAD;
        snap a, b, fl, other, rtn, plain;
        tier_train(&ti, o, 0, steps, 0, &a);
        tier_train(&ti, o, 0, steps, 0, &b);
        tier_train(&ti, o, 0, steps, 13, &fl);
        ember_cache_tiers t2 = ti;
        t2.seed = 8;
        tier_train(&t2, o, 0, steps, 0, &other);
        t2 = ti;
        t2.rounding = EMBER_CACHE_ROUNDING_NEAREST;
        tier_train(&t2, o, 0, steps, 0, &rtn);
        tier_train(NULL, o, 0, steps, 0, &plain);
        CHECK(snap_equal(&a, &b));
        CHECK(snap_equal(&a, &fl));
        CHECK(!snap_equal(&a, &other));
        CHECK(!snap_equal(&a, &rtn));
        CHECK(!snap_equal(&a, &plain));
        /* compression moves the weights a little, not a lot: Adagrad by rounding errors,
           Adam by about a step (lr 0.05) where a rounded m changes its sign */
        double d = snap_max_diff(&a, &plain), lim = oi ? 0.15 : 0.01;
        CHECK(d > 0 && d < lim);
        printf("tiers (%s): max weight difference to f32 training %.3g\n", ember_sparse_optim_name(o), d);
        /* with look-ahead the run still trains and its rounding stays seeded */
        snap la;
        tier_train(&ti, o, 1, steps, 0, &la);
        CHECK(la.w && snap_max_diff(&la, &plain) < lim);
        snap_free(&la);
        snap_free(&a), snap_free(&b), snap_free(&fl), snap_free(&other), snap_free(&rtn), snap_free(&plain);
    }
    ember_freq_destroy(f);
}

static uint64_t hrow(uint64_t r, uint64_t j) { return mix(r * 1000003u + j * 7919u + 11u); }

/* Rows written into each tier read back within the tier's error bound. */
static void test_tiers_round_trip(void) {
    enum { ROWS = 300, DIM = 40 };
    ember_ebc_table_config tab = {.rows = ROWS, .dim = DIM};
    uint8_t map[ROWS];
    for (int r = 0; r < ROWS; r++)
        map[r] = r < 100 ? EMBER_CACHE_TIER_HOT : r < 200 ? EMBER_CACHE_TIER_WARM : EMBER_CACHE_TIER_COLD;
    float *w = malloc(sizeof(float) * ROWS * DIM), *back = malloc(sizeof(float) * ROWS * DIM);
    float *st = malloc(sizeof(float) * ROWS * 2 * DIM), *sback = malloc(sizeof(float) * ROWS * 2 * DIM);
    for (int r = 0; r < ROWS; r++) {
        double scale = pow(10.0, (double)(r % 5) - 3.0); /* 1e-3 .. 10 */
        for (int j = 0; j < DIM; j++) {
            w[r * DIM + j] = (float)((unit(hrow((uint64_t)r, (uint64_t)j)) - 0.4) * scale);
            st[r * 2 * DIM + j] = (float)((unit(hrow((uint64_t)r + 7777, (uint64_t)j)) - 0.5) * scale * 0.1); /* m */
            st[r * 2 * DIM + DIM + j] = (float)(unit(hrow((uint64_t)r + 9999, (uint64_t)j)) * scale * scale); /* v */
        }
    }
    for (int sr = 0; sr < 2; sr++) {
        ember_cache *c = NULL;
        CHECK_OK(ember_cache_create(
            &(ember_cache_config){.collection = {.num_tables = 1, .tables = &tab,
                                                 .optim = {.type = EMBER_SPARSE_OPTIM_ADAM}},
                                  .slots = (int64_t[]){8},
                                  .tiers = &(ember_cache_tiers){.maps = &(ember_cache_tier_map){map, ROWS},
                                                                .rounding = sr ? EMBER_CACHE_ROUNDING_STOCHASTIC
                                                                               : EMBER_CACHE_ROUNDING_NEAREST,
                                                                .seed = 99}},
            &c));
        if (!c) break;
        CHECK(ember_cache_host_collection(c) == NULL);
        CHECK_OK(ember_cache_write_rows(c, 0, 0, ROWS, w));
        CHECK_OK(ember_cache_write_state(c, 0, 0, ROWS, st));
        CHECK_OK(ember_cache_read_rows(c, 0, 0, ROWS, back));
        CHECK_OK(ember_cache_read_state(c, 0, 0, ROWS, sback));
        int bad = 0;
        for (int r = 0; r < ROWS && !bad; r++) {
            /* three vectors per row: weights, m, v */
            for (int v = 0; v < 3 && !bad; v++) {
                const float *x = v == 0 ? w + r * DIM : st + r * 2 * DIM + (v - 1) * DIM;
                const float *y = v == 0 ? back + r * DIM : sback + r * 2 * DIM + (v - 1) * DIM;
                double mn = x[0], mx = x[0];
                for (int j = 1; j < DIM; j++) mn = fmin(mn, x[j]), mx = fmax(mx, x[j]);
                double q = (mx - mn) / 255.0;
                for (int j = 0; j < DIM && !bad; j++) {
                    double e = fabs((double)x[j] - (double)y[j]), tol;
                    if (map[r] == EMBER_CACHE_TIER_HOT) tol = 0;
                    else if (v > 0) /* Adam's state: bf16, half an ulp; a whole one stochastic */
                        tol = fabs((double)x[j]) * ldexp(1.0, sr ? -7 : -8);
                    else if (map[r] == EMBER_CACHE_TIER_WARM) /* half an f16 ulp; a whole one stochastic */
                        tol = fmax(fabs((double)x[j]) * ldexp(1.0, sr ? -10 : -11), ldexp(1.0, sr ? -24 : -25));
                    else /* half an int8 step; a whole one stochastic */
                        tol = q * (sr ? 1.0 : 0.5) * (1 + 1e-5) + 1e-6 * (fabs(mn) + fabs(mx));
                    if (e > tol) {
                        fprintf(stderr, "FAIL tiers round trip (%s): row %d (%s) vector %d elem %d: %.9g -> %.9g "
                                "(error %.3g > %.3g)\n", sr ? "stochastic" : "nearest", r,
                                ember_cache_tier_name((ember_cache_tier)map[r]), v, j, (double)x[j], (double)y[j],
                                e, tol);
                        bad = 1;
                    }
                }
            }
        }
        CHECK(!bad);
        /* and a WARM or COLD row did change (it is compressed), a HOT row did not */
        CHECK(memcmp(w + 150 * DIM, back + 150 * DIM, sizeof(float) * DIM) != 0);
        CHECK(memcmp(w + 250 * DIM, back + 250 * DIM, sizeof(float) * DIM) != 0);
        CHECK(memcmp(w, back, sizeof(float) * 100 * DIM) == 0);
        /* Adam's v stays non-negative */
        int neg = 0;
        for (int r = 0; r < ROWS; r++)
            for (int j = 0; j < DIM; j++) neg += sback[r * 2 * DIM + DIM + j] < 0;
        CHECK_EQ_INT(neg, 0);
        /* writing the values read back changes nothing: the rounding is a function of the values */
        float *again = malloc(sizeof(float) * ROWS * DIM);
        CHECK_OK(ember_cache_write_rows(c, 0, 0, ROWS, back));
        CHECK_OK(ember_cache_read_rows(c, 0, 0, ROWS, again));
        if (!sr) CHECK(memcmp(again, back, sizeof(float) * 200 * DIM) == 0); /* f16 RTN is idempotent */
        free(again);
        ember_cache_destroy(c);
    }
    free(w), free(back), free(st), free(sback);
}

/* What the store holds, byte for byte, and how rows are ranked into tiers. */
static void test_tiers_bytes(void) {
    static const ember_sparse_optim optims[] = {EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD};
    /* packed bytes per row, [table][tier]: dim 16 Adagrad 128 / 32+32 / 24+24; dim 4:
       32 / 8+8 / f16 8+8; rowwise Adagrad: 64+4 / 32+2 / 24+2 and 16+4 / 8+2 / 8+2 */
    static const int64_t rb[2][2][3] = {{{128, 64, 48}, {32, 16, 16}}, {{68, 34, 26}, {20, 10, 10}}};
    uint8_t *m0 = malloc((size_t)TT[0].rows), *m1 = malloc((size_t)TT[1].rows);
    for (int64_t i = 0; i < TT[0].rows; i++)
        m0[i] = i % 10 == 0 ? EMBER_CACHE_TIER_HOT : i % 10 <= 3 ? EMBER_CACHE_TIER_WARM : EMBER_CACHE_TIER_COLD;
    for (int64_t i = 0; i < TT[1].rows; i++) m1[i] = i < 400 ? EMBER_CACHE_TIER_HOT : EMBER_CACHE_TIER_COLD;
    ember_cache_tier_map maps[NT] = {{m0, TT[0].rows}, {m1, TT[1].rows}, {NULL, 0}};
    for (int oi = 0; oi < 2; oi++) {
        ember_sparse_optim_config oc = optim_of(optims[oi]);
        ember_cache *c = NULL;
        CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = NT, .tables = TT, .optim = oc},
                                                          .ratio = 0.05,
                                                          .tiers = &(ember_cache_tiers){.maps = maps}},
                                    &c));
        if (!c) continue;
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        int64_t f32 = 0, slots = 0, half = 0;
        for (int t = 0; t < NT; t++) {
            ember_ebc_table_info info;
            CHECK_OK(ember_ebc_record_layout(&TT[t], &oc, 0, &info));
            f32 += TT[t].rows * (int64_t)info.record_bytes;
            slots += ember_cache_slots(c, t) * (int64_t)info.record_bytes;
            if (t == 2) half = TT[t].rows * (int64_t)(info.weight_bytes + 4 * (size_t)info.state_floats);
        }
        CHECK_EQ_INT(s.tier_rows[EMBER_CACHE_TIER_HOT], 300 + 400 + 500);
        CHECK_EQ_INT(s.tier_rows[EMBER_CACHE_TIER_WARM], 900);
        CHECK_EQ_INT(s.tier_rows[EMBER_CACHE_TIER_COLD], 1800 + 400);
        CHECK_EQ_INT(s.tier_bytes[EMBER_CACHE_TIER_HOT], 300 * rb[oi][0][0] + 400 * rb[oi][1][0] + half);
        CHECK_EQ_INT(s.tier_bytes[EMBER_CACHE_TIER_WARM], 900 * rb[oi][0][1]);
        CHECK_EQ_INT(s.tier_bytes[EMBER_CACHE_TIER_COLD], 1800 * rb[oi][0][2] + 400 * rb[oi][1][2]);
        int64_t dir = (int64_t)((TT[0].rows + 63) / 64 + (TT[1].rows + 63) / 64) * 32; /* the f16 table: none */
        CHECK_EQ_INT(s.store_bytes, s.tier_bytes[0] + s.tier_bytes[1] + s.tier_bytes[2] + dir);
        CHECK_EQ_INT(s.store_f32_bytes, f32);
        CHECK_EQ_INT(s.slot_bytes, slots);
        CHECK(s.meta_bytes > 0);
        char json[4096];
        CHECK(ember_cache_stats_json(&s, json, sizeof json) < sizeof json);
        CHECK(strstr(json, "\"store_f32_bytes\":") != NULL && strstr(json, "\"cold\":{\"rows\":2200") != NULL);
        ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
        CHECK_OK(ember_cache_get_row_tier(c, 0, 20, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_HOT);
        CHECK_OK(ember_cache_get_row_tier(c, 0, 2999, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_COLD);
        CHECK_OK(ember_cache_get_row_tier(c, 0, 2993, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_WARM);
        CHECK_OK(ember_cache_get_row_tier(c, 2, 499, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_HOT);
        CHECK_STATUS(ember_cache_get_row_tier(c, 0, 3000, &k), EMBER_ERR_INDEX);
        CHECK_STATUS(ember_cache_get_row_tier(c, 3, 0, &k), EMBER_ERR_INDEX);
        /* a new store: weights 0 and the initial state in every tier */
        float z[16], sz[16];
        CHECK_OK(ember_cache_read_rows(c, 0, 2999, 1, z));
        CHECK_OK(ember_cache_read_state(c, 0, 2999, 1, sz));
        CHECK_NEAR(z[5], 0.0, 0.0);
        CHECK_NEAR(sz[0], 0.1f, oi ? 1e-4 : 0.0); /* int8 of a constant vector is exact; f16 is not */
        ember_cache_destroy(c);
    }
    /* an untiered host store counts its f32 records */
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = NT, .tables = TT}, .ratio = 0.05},
                                &c));
    if (c) {
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        CHECK_EQ_INT(s.store_bytes, s.store_f32_bytes);
        CHECK_EQ_INT(s.tier_rows[EMBER_CACHE_TIER_HOT], 4300);
        ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
        CHECK_OK(ember_cache_get_row_tier(c, 0, 5, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_HOT);
        ember_cache_destroy(c);
    }

    /* ranked by counts: fractions */
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f));
    for (int i = 0; i < 50; i++) CHECK_OK(ember_freq_add(f, 0, (int64_t[]){2999}, 1));
    for (int i = 0; i < 40; i++) CHECK_OK(ember_freq_add(f, 0, (int64_t[]){7, 5}, 2));
    for (int64_t id = 100; id < 200; id++) CHECK_OK(ember_freq_add(f, 0, &id, 1));
    CHECK_OK(ember_freq_add(f, 2, (int64_t[]){1, 2, 3}, 3));
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = NT, .tables = TT,
                                                                     .optim = optim_of(EMBER_SPARSE_OPTIM_ADAGRAD)},
                                                      .ratio = 0.05,
                                                      .tiers = &(ember_cache_tiers){.counts = f, .hot = 0.001,
                                                                                    .warm = 0.01}},
                                &c));
    if (c) {
        /* table 0: ceil(3) HOT = 2999, 5, 7 (ties by id); ceil(30) WARM = ids 100..129 */
        static const struct { int t; int64_t id; int tier; } want[] = {
            {0, 2999, EMBER_CACHE_TIER_HOT}, {0, 5, EMBER_CACHE_TIER_HOT},   {0, 7, EMBER_CACHE_TIER_HOT},
            {0, 100, EMBER_CACHE_TIER_WARM}, {0, 129, EMBER_CACHE_TIER_WARM}, {0, 130, EMBER_CACHE_TIER_COLD},
            {0, 0, EMBER_CACHE_TIER_COLD},   {1, 0, EMBER_CACHE_TIER_HOT},    {1, 8, EMBER_CACHE_TIER_WARM},
            {1, 9, EMBER_CACHE_TIER_COLD},   {2, 0, EMBER_CACHE_TIER_HOT}};
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
            CHECK_OK(ember_cache_get_row_tier(c, want[i].t, want[i].id, &k));
            if ((int)k != want[i].tier)
                fprintf(stderr, "FAIL tiers by fractions: table %d id %lld is %s, wanted %s\n", want[i].t,
                        (long long)want[i].id, ember_cache_tier_name(k),
                        ember_cache_tier_name((ember_cache_tier)want[i].tier));
            CHECK_EQ_INT(k, want[i].tier);
        }
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        CHECK_EQ_INT(s.tier_rows[EMBER_CACHE_TIER_HOT], 3 + 1 + 500);
        CHECK_EQ_INT(s.tier_rows[EMBER_CACHE_TIER_WARM], 30 + 8);
        ember_cache_destroy(c);
    }
    /* ranked by counts: a budget of half the f32 bytes */
    int64_t f32_rows = TT[0].rows * 128 + TT[1].rows * 32;
    size_t budget = (size_t)f32_rows / 2;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = NT, .tables = TT,
                                                                     .optim = optim_of(EMBER_SPARSE_OPTIM_ADAGRAD)},
                                                      .ratio = 0.05,
                                                      .tiers = &(ember_cache_tiers){.counts = f, .budget = budget}},
                                &c));
    if (c) {
        ember_cache_stats s;
        CHECK_OK(ember_cache_get_stats(c, &s));
        int64_t half = TT[2].rows * (24 + 48); /* the f16 table, HOT and outside the budget */
        int64_t used = s.tier_bytes[0] + s.tier_bytes[1] + s.tier_bytes[2] - half;
        CHECK(used <= (int64_t)budget && used > (int64_t)budget * 9 / 10);
        ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
        CHECK_OK(ember_cache_get_row_tier(c, 0, 2999, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_HOT);
        CHECK_OK(ember_cache_get_row_tier(c, 0, 150, &k));
        CHECK_EQ_INT(k, EMBER_CACHE_TIER_HOT);
        ember_cache_destroy(c);
    }
    ember_freq_destroy(f);
    free(m0);
    free(m1);
}

static void test_tiers_bad_config(void) {
    uint8_t *m0 = calloc((size_t)TT[0].rows, 1), *m2 = calloc((size_t)TT[2].rows, 1);
    ember_cache_tier_map maps[NT] = {{m0, TT[0].rows}, {NULL, 0}, {NULL, 0}};
    ember_freq *f = NULL, *f2 = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f));
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 2}, &f2));
    ember_cache_tiers ti = {.maps = maps};
    ember_cache_config cfg = {.collection = {.num_tables = NT, .tables = TT,
                                             .optim = optim_of(EMBER_SPARSE_OPTIM_ADAGRAD)},
                              .ratio = 0.05, .tiers = &ti};
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&cfg, &c)); /* the good one */
    ember_cache_destroy(c);
    c = NULL;
    /* a map of the wrong length */
    maps[0].rows = TT[0].rows - 1;
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "maps[0] has 2999 rows") != NULL);
    maps[0].rows = TT[0].rows;
    /* a value that is no tier */
    m0[17] = 3;
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "tier[17] = 3") != NULL);
    m0[17] = EMBER_CACHE_TIER_COLD;
    /* a COLD row in the f16 table */
    m2[4] = EMBER_CACHE_TIER_COLD;
    maps[2] = (ember_cache_tier_map){m2, TT[2].rows};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "only f32 tables") != NULL);
    maps[2] = (ember_cache_tier_map){NULL, 0};
    /* neither, both, fractions with maps */
    ti = (ember_cache_tiers){0};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.maps = maps, .counts = f};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.maps = maps, .hot = 0.5};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    /* bad fractions, fractions and a budget, bad rounding */
    ti = (ember_cache_tiers){.counts = f, .hot = 0.7, .warm = 0.4};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.counts = f, .hot = -0.1};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.counts = f, .hot = NAN};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.counts = f, .hot = 0.1, .budget = 100000};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.counts = f, .hot = 0.1, .rounding = EMBER_CACHE_ROUNDING_COUNT};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INVALID_ARGUMENT);
    /* counts of another number of tables; a counted id past its table */
    ti = (ember_cache_tiers){.counts = f2, .hot = 0.1};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_SHAPE);
    CHECK_OK(ember_freq_add(f, 1, (int64_t[]){800}, 1));
    ti = (ember_cache_tiers){.counts = f, .hot = 0.1};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "counted id 800 is outside [0, 800)") != NULL);
    /* a budget below every row COLD */
    ember_freq_destroy(f);
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f));
    ti = (ember_cache_tiers){.counts = f, .budget = 1000};
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(strstr(ember_last_error(), "tiers") != NULL);
    /* tiers are the host store's */
    char path[512];
    ti = (ember_cache_tiers){.maps = maps};
    cfg.store = EMBER_CACHE_STORE_LMDB;
    cfg.path = tmp_path(path, sizeof path, "tiers");
    CHECK_STATUS(ember_cache_create(&cfg, &c), EMBER_ERR_UNSUPPORTED);
    CHECK(c == NULL);
    ember_freq_destroy(f);
    ember_freq_destroy(f2);
    free(m0);
    free(m2);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--crash-child") == 0) {
#ifdef EMBER_HAVE_LMDB
        return crash_child(argv[2], atoi(argv[3]));
#else
        return 2;
#endif
    }
    const char *base = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/ember-cache-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_root)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmp_root, strerror(errno));
        return 1;
    }
    test_policies();
    test_lookahead_protection();
    test_warmup_counts();
    test_too_small();
    test_rows_and_init();
    test_bad_input();
    test_tiers_bytes();
    test_tiers_round_trip();
    test_tiers_bad_config();
    test_tiers_determinism();
    test_tiers_all_hot();
#ifdef EMBER_HAVE_LMDB
    test_lmdb_errors();
    test_map_full();
    test_larger_than_ram();
    test_crash();
#else
    printf("LMDB not built: the LMDB store tests are skipped\n");
#endif
    test_equivalence();
    rm_rf(tmp_root);
    return check_summary();
}
