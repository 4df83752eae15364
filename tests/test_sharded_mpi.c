/*
 * Sharded embedding-bag collections over N ranks (ctest: mpiexec -n 2 and -n 4, label
 * mpi) against one ember_ebc over the whole tables in one process (every rank builds
 * that reference itself, on the global batch: the ranks' batches concatenated in rank
 * order).
 *
 * Tables: f32 sum (dim 8), f32 mean (dim 16), f16 weighted sum (dim 4). Batches: 4 or
 * 5 samples per rank (uneven), bags of 0..4 ids, half of them drawn from 4 hot ids so
 * rows are hit by several ranks in one step. Plans: table-wise, row-wise, column-wise,
 * and minimax with hot blocks and replicated rows.
 *
 * Loss and scaling: the global objective is L = 1/(2 BG) sum_b |out_b - target_b|^2,
 * so dL/d(out_b) = (out_b - target_b) / BG (computed in f32, the reference's gradient).
 * Rank r passes P times its rows of that gradient, as a rank whose loss is P/BG times
 * its share would; the collection's default grad_scale 1/P brings it back exactly
 * (P a power of two). Each side computes the gradient from its own forward output, so
 * this is a real training loop.
 *
 * Checks: init_uniform gives the reference's weights (bits); forward at every step
 * (table-wise and column-wise: bits; row-wise and minimax: the partial sums reorder
 * each bag's sum: |diff| <= 1e-6 on outputs of magnitude <= ~0.5); after STEPS steps
 * of SGD, Adagrad and Adam, every row of every table read back (read_rows) and every
 * row held in each rank's own shard equal the reference (table-wise: bits; column-wise:
 * 1e-6, the kernel's scalar tail sums c * dy with a rounding where the vector body
 * fuses it; row-wise and minimax: 1e-5, the forward's ulps fed through the loss,
 * observed a few 1e-8). Also: a bad id on one rank fails every rank's forward and
 * leaves the collection usable; backward without forward; a plan for another world.
 *
 * Cached shards (config.cache, LFU, SGD and Adagrad, every plan): each rank's shard
 * behind its own cache with as few slots as one step's distinct ids need (the largest
 * over the run, so rows are evicted and written back), trained beside the same plan
 * with resident shards: forward outputs, every row and every optimizer state the same
 * bits (the cache's invariant), and the cached run against one process within the
 * tolerances above; evictions counted over the ranks > 0. The caches are first warmed
 * from counts of the run's ids (ember_sharded_ebc_warmup_counts: rows loaded, nothing
 * changed). Inference: a forward with no backward, then rows read, then a training
 * step, still equal to the resident twin; so is a step whose bags are all empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ember/cache.h"
#include "ember/datasets.h"
#include "ember/parallel.h"

#define T 3
#define STEPS 5
#define MAXB 5

static int R, N;
static const ember_ebc_table_config TABLES[T] = {
    {.name = "sum8", .rows = 50, .dim = 8},
    {.name = "mean16", .rows = 37, .dim = 16, .pooling = EMBER_POOLING_MEAN},
    {.name = "wsum4", .rows = 64, .dim = 4, .format = EMBER_ROW_FORMAT_F16},
};

static uint32_t mix(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t h = a * 2654435761u ^ (b + 0x9e3779b9u) * 2246822519u ^ (c + 7u) * 3266489917u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    h *= 3266489917u;
    h ^= h >> 16;
    return h;
}

static int64_t batch_of(int r) { return 4 + (r % 2); }

/* a batch: rank r's at a step, or the global one */
typedef struct batch {
    int64_t B;
    int64_t *vals[T], *offs[T];
    float *wts[T];
    ember_jagged_feature f[T];
    ember_jagged j;
} batch;

static void batch_free(batch *b) {
    for (int t = 0; t < T; t++) free(b->vals[t]), free(b->offs[t]), free(b->wts[t]);
}

static void make_local(batch *b, int step, int r) {
    memset(b, 0, sizeof *b);
    b->B = batch_of(r);
    for (int t = 0; t < T; t++) {
        b->vals[t] = malloc(MAXB * 4 * sizeof(int64_t));
        b->offs[t] = malloc((MAXB + 1) * sizeof(int64_t));
        b->wts[t] = t == 2 ? malloc(MAXB * 4 * sizeof(float)) : NULL;
        int64_t n = 0;
        b->offs[t][0] = 0;
        for (int64_t i = 0; i < b->B; i++) {
            int len = (int)(mix((uint32_t)step, (uint32_t)(r * 100 + i), (uint32_t)t) % 5);
            for (int k = 0; k < len; k++, n++) {
                uint32_t h = mix((uint32_t)(step * 7 + k), (uint32_t)(r * 100 + i), (uint32_t)(t + 10));
                b->vals[t][n] = (h & 1) ? (int64_t)((h >> 1) % 4) : (int64_t)((h >> 1) % (uint32_t)TABLES[t].rows);
                if (b->wts[t]) b->wts[t][n] = 0.5f + (float)((h >> 8) % 1000) / 1000.0f;
            }
            b->offs[t][i + 1] = n;
        }
        b->f[t] =
            (ember_jagged_feature){.values = b->vals[t], .offsets = b->offs[t], .weights = b->wts[t], .length = n};
    }
    b->j = (ember_jagged){.batch = b->B, .num_features = T, .features = b->f};
}

static void make_global(batch *g, int step) {
    memset(g, 0, sizeof *g);
    batch parts[64];
    int64_t nid[T] = {0};
    for (int r = 0; r < N; r++) {
        make_local(&parts[r], step, r);
        g->B += parts[r].B;
        for (int t = 0; t < T; t++) nid[t] += parts[r].f[t].length;
    }
    for (int t = 0; t < T; t++) {
        g->vals[t] = malloc((size_t)(nid[t] + 1) * sizeof(int64_t));
        g->offs[t] = malloc((size_t)(g->B + 1) * sizeof(int64_t));
        g->wts[t] = t == 2 ? malloc((size_t)(nid[t] + 1) * sizeof(float)) : NULL;
        int64_t n = 0, bag = 0;
        g->offs[t][0] = 0;
        for (int r = 0; r < N; r++) {
            memcpy(g->vals[t] + n, parts[r].vals[t], (size_t)parts[r].f[t].length * 8);
            if (g->wts[t]) memcpy(g->wts[t] + n, parts[r].wts[t], (size_t)parts[r].f[t].length * 4);
            for (int64_t i = 0; i < parts[r].B; i++, bag++) g->offs[t][bag + 1] = n + parts[r].offs[t][i + 1];
            n += parts[r].f[t].length;
        }
        g->f[t] =
            (ember_jagged_feature){.values = g->vals[t], .offsets = g->offs[t], .weights = g->wts[t], .length = n};
    }
    for (int r = 0; r < N; r++) batch_free(&parts[r]);
    g->j = (ember_jagged){.batch = g->B, .num_features = T, .features = g->f};
}

static int64_t first_of(int r) {
    int64_t s = 0;
    for (int q = 0; q < r; q++) s += batch_of(q);
    return s;
}

/* Targets with many significant bits: gradients that cancel exactly in one summation
   order and leave a residue in another would make Adagrad's first step (~lr * sign(g))
   amplify an ulp into lr. */
static float target(int step, int64_t b, int j) {
    return ((float)(mix((uint32_t)step, (uint32_t)b, (uint32_t)j) % 200001) - 100000.0f) * 1.37e-6f;
}

static ember_tensor *mat(int64_t rows, int64_t cols) {
    ember_tensor *t = NULL;
    CHECK_OK(
        ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {rows, cols}}, &t));
    return t;
}

/* max |a - b| over n floats */
static double maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static ember_plan *make_plan(ember_plan_kind kind, int world, size_t rep_bytes) {
    /* counts: ids 0..3 hot (the batches draw half their ids there), then a decaying tail */
    static int64_t ids[T][64];
    static uint64_t cnt[T][64];
    ember_plan_table pt[T];
    for (int t = 0; t < T; t++) {
        for (int64_t i = 0; i < TABLES[t].rows; i++) {
            ids[t][i] = i;
            cnt[t][i] = i < 4 ? 1000 - 100 * (uint64_t)i : 50 / (uint64_t)(i + 1) + 1;
        }
        /* with replication allowed: a row hotter than a device's whole load (replicated) */
        if (rep_bytes > 4096 && t == 0) cnt[t][0] = 1000000;
        pt[t] = (ember_plan_table){.name = TABLES[t].name, .rows = TABLES[t].rows, .dim = TABLES[t].dim,
                                   .pooling = 2.0, .ids = ids[t], .counts = cnt[t], .num_counted = TABLES[t].rows};
    }
    ember_plan *plan = NULL;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = kind, .world = world, .num_tables = T, .tables = pt,
                                                   .block_rows = 1, .replicate_max_bytes = rep_bytes},
                              &plan));
    return plan;
}

static double tol_fwd(ember_plan_kind k, int step) {
    if (k == EMBER_PLAN_TABLEWISE) return 0.0;
    return k == EMBER_PLAN_COLUMNWISE && step == 0 ? 0.0 : 1e-6;
}
static double tol_rows(ember_plan_kind k) {
    return k == EMBER_PLAN_TABLEWISE ? 0.0 : k == EMBER_PLAN_COLUMNWISE ? 1e-6 : 1e-5;
}

/* The most distinct ids of one table that this rank's shard serves in one step of the
   run (rows it owns or that every rank holds, asked by any rank): slots enough for its
   batches, so a cache this small evicts yet never runs out. */
static int64_t max_unique(const ember_plan *plan) {
    int64_t best = 1;
    for (int step = 0; step < STEPS + 1; step++) {
        batch g;
        make_global(&g, step);
        for (int t = 0; t < T; t++) {
            char seen[64] = {0};
            int64_t u = 0;
            for (int64_t k = 0; k < g.f[t].length; k++) {
                int rk;
                int64_t lr;
                CHECK_OK(ember_plan_locate(plan, t, g.vals[t][k], &rk, &lr));
                if (rk == R || rk == EMBER_PLAN_EVERY_RANK) u += !seen[g.vals[t][k]]++;
            }
            if (u > best) best = u;
        }
        batch_free(&g);
    }
    return best;
}

/* Every row and state float of two collections over the same plan, read where each
   rank holds them: the same bits. */
static void check_same_shards(ember_sharded_ebc *a, ember_sharded_ebc *b, const ember_plan *plan, int with_state) {
    for (int t = 0; t < T; t++) {
        if (ember_sharded_ebc_local_table(a, t) < 0) continue;
        ember_plan_shard sh;
        CHECK_OK(ember_plan_get_shard(plan, t, R, &sh));
        int64_t n = sh.local_rows, w = sh.col_end - sh.col_begin, sf = with_state ? 2 * w : 0; /* <= Adam's */
        float *x = calloc((size_t)(n * (w + sf)), 4), *y = calloc((size_t)(n * (w + sf)), 4);
        CHECK_OK(ember_sharded_ebc_read_local(a, t, 0, n, x, with_state ? x + n * w : NULL));
        CHECK_OK(ember_sharded_ebc_read_local(b, t, 0, n, y, with_state ? y + n * w : NULL));
        CHECK(memcmp(x, y, (size_t)(n * (w + sf)) * 4) == 0);
        free(x);
        free(y);
    }
}

static void run_case(ember_comm *w, ember_plan_kind kind, size_t rep_bytes, ember_sparse_optim opt, int fixed,
                     int cached) {
    const char *kn = ember_plan_kind_name(kind), *on = ember_sparse_optim_name(opt);
    ember_plan *plan = make_plan(kind, N, rep_bytes);
    if (plan && R == 0 && getenv("EMBER_TEST_VERBOSE")) ember_plan_write_text(plan, 4, stdout);
    if (!plan) return;
    ember_sparse_optim_config oc = {.type = opt};
    ember_cache_config cc = {.ratio = 0.05, .min_slots = max_unique(plan), .policy = EMBER_CACHE_POLICY_LFU};
    ember_sharded_ebc *s = NULL, *res = NULL; /* res: the resident twin of a cached s */
    CHECK_OK(ember_sharded_ebc_create(w, &(ember_sharded_ebc_config){.plan = plan, .num_tables = T, .tables = TABLES,
                                                                     .optim = oc, .cache = cached ? &cc : NULL},
                                      &s));
    if (cached)
        CHECK_OK(ember_sharded_ebc_create(
            w, &(ember_sharded_ebc_config){.plan = plan, .num_tables = T, .tables = TABLES, .optim = oc}, &res));
    ember_ebc *ref = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = T, .tables = TABLES, .optim = oc}, &ref));
    if (!s || !ref || (cached && !res)) {
        ember_sharded_ebc_destroy(s);
        ember_sharded_ebc_destroy(res);
        ember_ebc_destroy(ref);
        ember_plan_destroy(plan);
        return;
    }
    int holds = 0;
    for (int t = 0; t < T; t++) holds |= ember_sharded_ebc_local_table(s, t) >= 0;
    CHECK_EQ_INT(ember_sharded_ebc_cache(s) != NULL, cached && holds);
    CHECK(!cached || ember_sharded_ebc_local(s) == NULL);
    const int64_t D = ember_sharded_ebc_output_dim(s);
    CHECK_EQ_INT(D, ember_ebc_output_dim(ref));
    ember_rng r1 = {.seed = 7}, r2 = {.seed = 7};
    CHECK_OK(ember_sharded_ebc_init_uniform(s, &r1, -0.1f, 0.1f));
    CHECK_OK(ember_ebc_init_uniform(ref, &r2, -0.1f, 0.1f));
    CHECK_EQ_INT(r1.offset, r2.offset);
    if (res) {
        ember_rng r3 = {.seed = 7};
        CHECK_OK(ember_sharded_ebc_init_uniform(res, &r3, -0.1f, 0.1f));
        check_same_shards(s, res, plan, opt != EMBER_SPARSE_OPTIM_SGD);
        /* warm each rank's cache from counts of the run's ids (whole tables): its own hottest rows */
        ember_freq *f = NULL;
        CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = T}, &f));
        for (int step = 0; f && step < STEPS; step++) {
            batch g;
            make_global(&g, step);
            for (int t = 0; t < T; t++) CHECK_OK(ember_freq_add(f, t, g.vals[t], g.f[t].length));
            batch_free(&g);
        }
        if (f) CHECK_OK(ember_sharded_ebc_warmup_counts(s, f));
        ember_freq_destroy(f);
        ember_cache_stats cs = {0};
        if (ember_sharded_ebc_cache(s)) CHECK_OK(ember_cache_get_stats(ember_sharded_ebc_cache(s), &cs));
        int64_t used[2] = {cs.slots_used, 0};
        CHECK_OK(ember_comm_all_reduce(w, used, used + 1, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK(used[1] > 0);
        check_same_shards(s, res, plan, opt != EMBER_SPARSE_OPTIM_SGD);
    }
    for (int t = 0; t < T; t++) {
        int64_t n = TABLES[t].rows * TABLES[t].dim;
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
        CHECK_OK(ember_sharded_ebc_read_rows(s, t, 0, TABLES[t].rows, a));
        CHECK_OK(ember_ebc_read_rows(ref, t, 0, TABLES[t].rows, b));
        CHECK(maxdiff(a, b, n) == 0.0);
        free(a);
        free(b);
    }
    const int64_t B = batch_of(R), f0 = first_of(R);
    double worst_fwd = 0.0;
    for (int step = 0; step < STEPS; step++) {
        batch lb, gb;
        make_local(&lb, step, R);
        make_global(&gb, step);
        ember_tensor *out = mat(B, D), *dout = mat(B, D), *gout = mat(gb.B, D), *gdout = mat(gb.B, D);
        CHECK_OK(ember_sharded_ebc_forward(s, &lb.j, out, NULL));
        CHECK_OK(ember_ebc_forward(ref, &gb.j, gout, NULL));
        float *o = ember_tensor_data(out), *go = ember_tensor_data(gout);
        double fd = maxdiff(o, go + f0 * D, B * D);
        if (fd > worst_fwd) worst_fwd = fd;
        if (!(fd <= tol_fwd(kind, step)))
            fprintf(stderr, "rank %d: %s %s step %d: forward differs by %.3g\n", R, kn, on, step, fd);
        CHECK(fd <= tol_fwd(kind, step));
        /* dL/d(out) of the global objective, from each side's own output */
        float *d = ember_tensor_data(dout), *gd = ember_tensor_data(gdout);
        const float inv = 1.0f / (float)gb.B;
        for (int64_t b = 0; b < gb.B; b++)
            for (int j = 0; j < D; j++) gd[b * D + j] = ((fixed ? 0.0f : go[b * D + j]) - target(step, b, j)) * inv;
        for (int64_t b = 0; b < B; b++)
            for (int j = 0; j < D; j++)
                d[b * D + j] = ((fixed ? 0.0f : o[b * D + j]) - target(step, f0 + b, j)) * inv * (float)N;
        CHECK_OK(ember_sharded_ebc_backward(s, dout, &(ember_ebc_call){.lr = 0.1f}));
        CHECK_OK(ember_ebc_backward(ref, &gb.j, gdout, &(ember_ebc_call){.lr = 0.1f, .trusted = 1}));
        if (res) { /* the resident twin: the same bits out, so the same gradient in */
            ember_tensor *rout = mat(B, D);
            CHECK_OK(ember_sharded_ebc_forward(res, &lb.j, rout, NULL));
            CHECK(memcmp(ember_tensor_data(rout), o, (size_t)(B * D) * 4) == 0);
            CHECK_OK(ember_sharded_ebc_backward(res, dout, &(ember_ebc_call){.lr = 0.1f}));
            ember_tensor_destroy(rout);
        }
        ember_tensor_destroy(out);
        ember_tensor_destroy(dout);
        ember_tensor_destroy(gout);
        ember_tensor_destroy(gdout);
        batch_free(&lb);
        batch_free(&gb);
    }
    /* the whole tables, and each rank's own shard row by row */
    double worst = 0.0, worst_local = 0.0;
    for (int t = 0; t < T; t++) {
        const int dim = TABLES[t].dim;
        int64_t n = TABLES[t].rows * dim;
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *row = malloc((size_t)dim * 4);
        CHECK_OK(ember_sharded_ebc_read_rows(s, t, 0, TABLES[t].rows, a));
        CHECK_OK(ember_ebc_read_rows(ref, t, 0, TABLES[t].rows, b));
        double m = maxdiff(a, b, n);
        if (m > worst) worst = m;
        int lt = ember_sharded_ebc_local_table(s, t);
        ember_plan_shard sh;
        CHECK_OK(ember_plan_get_shard(plan, t, R, &sh));
        CHECK_EQ_INT(lt >= 0, sh.local_rows > 0 && sh.col_end > sh.col_begin);
        int64_t held = 0;
        for (int64_t id = 0; id < TABLES[t].rows && lt >= 0; id++) {
            int rk;
            int64_t lr;
            CHECK_OK(ember_plan_locate(plan, t, id, &rk, &lr));
            if (rk != R && rk != EMBER_PLAN_EVERY_RANK) continue;
            held++;
            CHECK_OK(ember_sharded_ebc_read_local(s, t, lr, 1, row, NULL));
            double ml = maxdiff(row, b + id * dim + sh.col_begin, sh.col_end - sh.col_begin);
            if (ml > worst_local) worst_local = ml;
        }
        /* every row is held somewhere */
        int64_t all = 0;
        CHECK_OK(ember_comm_all_reduce(w, &held, &all, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK(all >= TABLES[t].rows);
        free(a);
        free(b);
        free(row);
    }
    /* with gradients that do not depend on the forward, row-wise updates are the same
       bits too (rows summed in global batch order), except replicated rows (all-reduced) */
    ember_sharded_ebc_stats st;
    CHECK_OK(ember_sharded_ebc_get_stats(s, &st));
    double tol = fixed && kind != EMBER_PLAN_COLUMNWISE && st.replicated_floats == 0 ? 0.0 : tol_rows(kind);
    if (!(worst <= tol) || !(worst_local <= tol))
        fprintf(stderr, "rank %d: %s %s%s: tables differ by %.3g (own shard %.3g)\n", R, kn, on,
                fixed ? " fixed" : "", worst, worst_local);
    CHECK(worst <= tol);
    CHECK(worst_local <= tol);
    if (N > 1) {
        int64_t sent = 0;
        CHECK_OK(ember_comm_all_reduce(w, &st.bags_sent, &sent, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK(sent > 0);
    }
    int64_t ev[2] = {0, 0};
    if (res) {
        check_same_shards(s, res, plan, opt != EMBER_SPARSE_OPTIM_SGD);
        ember_cache_stats cs = {0};
        if (ember_sharded_ebc_cache(s)) CHECK_OK(ember_cache_get_stats(ember_sharded_ebc_cache(s), &cs));
        ev[0] = cs.evictions;
        CHECK_OK(ember_comm_all_reduce(w, ev, ev + 1, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK(ev[1] > 0);
        /* inference (a forward, no backward), rows read, then a step: still the twin's bits */
        batch lb;
        make_local(&lb, STEPS, R);
        ember_tensor *out = mat(B, D), *rout = mat(B, D);
        CHECK_OK(ember_sharded_ebc_forward(s, &lb.j, out, NULL));
        float *a = malloc((size_t)(TABLES[0].rows * TABLES[0].dim) * 4);
        CHECK_OK(ember_sharded_ebc_read_rows(s, 0, 0, TABLES[0].rows, a));
        free(a);
        CHECK_OK(ember_sharded_ebc_forward(s, &lb.j, out, NULL));
        CHECK_OK(ember_sharded_ebc_forward(res, &lb.j, rout, NULL));
        CHECK(memcmp(ember_tensor_data(rout), ember_tensor_data(out), (size_t)(B * D) * 4) == 0);
        CHECK_OK(ember_sharded_ebc_read_rows(s, 1, 0, 1, ember_tensor_data(rout))); /* between forward and backward */
        CHECK_OK(ember_sharded_ebc_read_rows(res, 1, 0, 1, ember_tensor_data(rout)));
        CHECK_OK(ember_sharded_ebc_backward(s, out, &(ember_ebc_call){.lr = 0.1f}));
        CHECK_OK(ember_sharded_ebc_backward(res, out, &(ember_ebc_call){.lr = 0.1f}));
        check_same_shards(s, res, plan, opt != EMBER_SPARSE_OPTIM_SGD);
        /* a step whose bags are all empty: every owner's batch has no bags */
        for (int t = 0; t < T; t++) {
            memset(lb.offs[t], 0, (size_t)(B + 1) * sizeof(int64_t));
            lb.f[t].length = 0;
        }
        CHECK_OK(ember_sharded_ebc_forward(s, &lb.j, out, NULL));
        CHECK_OK(ember_sharded_ebc_backward(s, out, &(ember_ebc_call){.lr = 0.1f}));
        CHECK_OK(ember_sharded_ebc_forward(res, &lb.j, rout, NULL));
        CHECK_OK(ember_sharded_ebc_backward(res, rout, &(ember_ebc_call){.lr = 0.1f}));
        CHECK(memcmp(ember_tensor_data(rout), ember_tensor_data(out), (size_t)(B * D) * 4) == 0);
        check_same_shards(s, res, plan, opt != EMBER_SPARSE_OPTIM_SGD);
        ember_tensor_destroy(out);
        ember_tensor_destroy(rout);
        batch_free(&lb);
    }
    if (R == 0)
        printf("sharded %-10s %-8s %-5s%s ranks %d: forward |diff| %.3g, tables |diff| %.3g, replicated floats "
               "%lld%s\n",
               kn, on, fixed ? "fixed" : "loss", cached ? " cached" : "", N, worst_fwd, worst,
               (long long)st.replicated_floats, cached ? ", compared bit for bit with resident shards" : "");
    if (R == 0 && cached) printf("  %lld rows evicted over the ranks\n", (long long)ev[1]);
    ember_sharded_ebc_destroy(s);
    ember_sharded_ebc_destroy(res);
    ember_ebc_destroy(ref);
    ember_plan_destroy(plan);
}

static void test_errors(ember_comm *w) {
    ember_plan *plan = make_plan(EMBER_PLAN_ROWWISE, N, 0);
    ember_sharded_ebc *s = NULL;
    CHECK_OK(
        ember_sharded_ebc_create(w, &(ember_sharded_ebc_config){.plan = plan, .num_tables = T, .tables = TABLES}, &s));
    if (!s) {
        ember_plan_destroy(plan);
        return;
    }
    const int64_t D = ember_sharded_ebc_output_dim(s);
    ember_tensor *out = mat(batch_of(R), D);
    /* backward before any forward */
    CHECK_STATUS(ember_sharded_ebc_backward(s, out, &(ember_ebc_call){.lr = 0.1f}), EMBER_ERR_STATE);
    /* the last rank asks for an id outside its table: every rank fails, none hangs */
    batch lb;
    make_local(&lb, 0, R);
    if (R == N - 1 && lb.f[0].length > 0) lb.vals[0][0] = 1000;
    int bad_here = R == N - 1 && lb.f[0].length > 0;
    int64_t any = bad_here, anyall = 0;
    CHECK_OK(ember_comm_all_reduce(w, &any, &anyall, 1, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
    ember_status st = ember_sharded_ebc_forward(s, &lb.j, out, NULL);
    if (bad_here) CHECK_EQ_INT(st, EMBER_ERR_INDEX);
    else if (anyall) CHECK_EQ_INT(st, EMBER_ERR_INVALID_ARGUMENT);
    CHECK(!ember_comm_is_broken(w));
    CHECK_STATUS(ember_sharded_ebc_backward(s, out, &(ember_ebc_call){.lr = 0.1f}),
                 anyall ? EMBER_ERR_STATE : EMBER_OK);
    batch_free(&lb);
    /* still usable */
    make_local(&lb, 1, R);
    CHECK_OK(ember_sharded_ebc_forward(s, &lb.j, out, NULL));
    CHECK_OK(ember_sharded_ebc_backward(s, out, &(ember_ebc_call){.lr = 0.1f}));
    batch_free(&lb);
    ember_tensor_destroy(out);
    ember_sharded_ebc_destroy(s);
    ember_plan_destroy(plan);
    /* a plan for another world */
    ember_plan *p2 = make_plan(EMBER_PLAN_ROWWISE, N + 1, 0);
    CHECK_STATUS(
        ember_sharded_ebc_create(w, &(ember_sharded_ebc_config){.plan = p2, .num_tables = T, .tables = TABLES}, &s),
        EMBER_ERR_INVALID_ARGUMENT);
    ember_plan_destroy(p2);
    ember_sharded_ebc_destroy(NULL);
}

int main(void) {
    ember_comm *w = NULL;
    if (ember_comm_create_mpi(&(ember_comm_config){.validate = 1, .timeout_s = 120}, &w) != EMBER_OK) {
        fprintf(stderr, "%s\n", ember_last_error());
        return 1;
    }
    R = ember_comm_rank(w);
    N = ember_comm_size(w);
    if ((N & (N - 1)) != 0 || N > 64) {
        if (R == 0) fprintf(stderr, "the exact loss scaling needs a power-of-two world: skipped\n");
        ember_comm_destroy(w);
        return 77;
    }
    /* minimax twice: hot blocks only (replication capped at 192 bytes), then with the
       hot rows replicated on every rank */
    const ember_plan_kind kinds[] = {EMBER_PLAN_TABLEWISE, EMBER_PLAN_ROWWISE, EMBER_PLAN_COLUMNWISE,
                                     EMBER_PLAN_MINIMAX, EMBER_PLAN_MINIMAX};
    const size_t rep_bytes[] = {192, 192, 192, 192, (size_t)1 << 20};
    const ember_sparse_optim opts[] = {EMBER_SPARSE_OPTIM_SGD, EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ADAM};
    for (int k = 0; k < 5; k++)
        for (int o = 0; o < 3; o++)
            for (int fixed = 0; fixed < 2; fixed++) run_case(w, kinds[k], rep_bytes[k], opts[o], fixed, 0);
    /* each shard behind its own cache: SGD and Adagrad, every plan */
    for (int k = 0; k < 5; k++)
        for (int o = 0; o < 2; o++) run_case(w, kinds[k], rep_bytes[k], opts[o], 0, 1);
    test_errors(w);
    ember_comm_destroy(w);
    return check_summary();
}
