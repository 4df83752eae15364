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
 *
 * Precision tiers per rank (run_tiers: row-wise, minimax with replicated rows,
 * column-wise): each rank's cached shard tiered by its own counts over 60 steps; every
 * row HOT equals untiered caches bit for bit, two tiered runs equal each other, each
 * rank's store holds all three tiers as ranked and fewer bytes than f32, and training
 * stays near f32 (tolerances and why at run_tiers). Tier maps of the whole tables land
 * on the right local rows; bad tier configs fail alike on every rank (test_tier_maps).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi_world.h"
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
   run of `steps` steps (rows it owns or that every rank holds, asked by any rank): slots
   enough for its batches, so a cache this small evicts yet never runs out. */
static int64_t max_unique(const ember_plan *plan, int steps) {
    int64_t best = 1;
    for (int step = 0; step < steps + 1; step++) {
        batch g;
        make_global(&g, step);
        for (int t = 0; t < T; t++) {
            int64_t u = plan_rank_unique(plan, t, g.vals[t], g.f[t].length, R);
            CHECK(u >= 0);
            if (u > best) best = u;
        }
        batch_free(&g);
    }
    return best;
}

/* Counts of the first `steps` global batches (the training data, whole tables): the
   same on every rank. */
static ember_freq *global_counts(int steps) {
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = T}, &f));
    for (int step = 0; f && step < steps; step++) {
        batch g;
        make_global(&g, step);
        for (int t = 0; t < T; t++) CHECK_OK(ember_freq_add(f, t, g.vals[t], g.f[t].length));
        batch_free(&g);
    }
    return f;
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
    ember_cache_config cc = {.ratio = 0.05, .min_slots = max_unique(plan, STEPS), .policy = EMBER_CACHE_POLICY_LFU};
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
        ember_freq *f = global_counts(STEPS);
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

/* ---- precision tiers per rank ---- */

#define TSTEPS 60 /* many steps: rows evicted, written back and recompressed again and again */
#define THOT 0.1
#define TWARM 0.3

/* TSTEPS steps on the loss of a collection behind caches of `slots` slots with tiers ti
   (NULL: none), warmed from f: loss[k] the global loss of step k (the ranks' sums added in
   rank order), outs this rank's forward outputs, (TSTEPS, MAXB, D). The collection, or NULL. */
static ember_sharded_ebc *tier_run(ember_comm *w, const ember_plan *plan, ember_sparse_optim opt, int64_t slots,
                                   const ember_freq *f, const ember_cache_tiers *ti, double *loss, float *outs) {
    ember_cache_config cc = {.ratio = 0.05, .min_slots = slots, .policy = EMBER_CACHE_POLICY_LFU, .tiers = ti};
    ember_sharded_ebc *s = NULL;
    CHECK_OK(ember_sharded_ebc_create(w, &(ember_sharded_ebc_config){.plan = plan, .num_tables = T, .tables = TABLES,
                                                                     .optim = {.type = opt}, .cache = &cc},
                                      &s));
    if (!s) return NULL;
    ember_rng rng = {.seed = 7};
    CHECK_OK(ember_sharded_ebc_init_uniform(s, &rng, -0.1f, 0.1f));
    CHECK_OK(ember_sharded_ebc_warmup_counts(s, f));
    const int64_t D = ember_sharded_ebc_output_dim(s), B = batch_of(R), f0 = first_of(R), BG = first_of(N);
    ember_tensor *out = mat(B, D), *dout = mat(B, D);
    for (int step = 0; step < TSTEPS; step++) {
        batch lb;
        make_local(&lb, step, R);
        CHECK_OK(ember_sharded_ebc_forward(s, &lb.j, out, NULL));
        float *o = ember_tensor_data(out), *d = ember_tensor_data(dout);
        const float inv = 1.0f / (float)BG;
        double sq = 0, all[64];
        for (int64_t b = 0; b < B; b++)
            for (int j = 0; j < D; j++) {
                float e = o[b * D + j] - target(step, f0 + b, j);
                sq += (double)e * (double)e;
                d[b * D + j] = e * inv * (float)N;
            }
        CHECK_OK(ember_comm_all_gather(w, &sq, all, 1, EMBER_DTYPE_I64, NULL)); /* the doubles' bits */
        loss[step] = 0;
        for (int r = 0; r < N; r++) loss[step] += all[r];
        loss[step] /= 2.0 * (double)BG;
        memcpy(outs + (size_t)step * MAXB * (size_t)D, o, (size_t)(B * D) * 4);
        CHECK_OK(ember_sharded_ebc_backward(s, dout, &(ember_ebc_call){.lr = 0.1f}));
        batch_free(&lb);
    }
    ember_tensor_destroy(out);
    ember_tensor_destroy(dout);
    return s;
}

/* The whole tables of two collections: max |a - b|, and the mean into *mean. */
static double tables_diff(ember_sharded_ebc *a, ember_sharded_ebc *b, double *mean) {
    double m = 0, sum = 0;
    int64_t count = 0;
    for (int t = 0; t < T; t++) {
        int64_t n = TABLES[t].rows * TABLES[t].dim;
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        CHECK_OK(ember_sharded_ebc_read_rows(a, t, 0, TABLES[t].rows, x));
        CHECK_OK(ember_sharded_ebc_read_rows(b, t, 0, TABLES[t].rows, y));
        double d = maxdiff(x, y, n);
        if (d > m) m = d;
        for (int64_t i = 0; i < n; i++) sum += fabs((double)x[i] - (double)y[i]);
        count += n;
        free(x), free(y);
    }
    *mean = sum / (double)count;
    return m;
}

static int64_t tfrac(double f, int64_t rows) {
    int64_t x = (int64_t)ceil(f * (double)rows - 1e-9);
    return x < 0 ? 0 : x > rows ? rows : x;
}

/* Each rank's tiers of its own rows, by its own counts: per f32 table, HOT the first
   ceil(THOT x rows held) (at least the replicated rows), then ceil(TWARM x rows held)
   WARM, the rest COLD; every HOT row counted at least as often as every WARM row, and
   every WARM row as every COLD one (replicated rows aside: HOT whatever their count).
   The f16 table all HOT. */
static void check_tier_ranking(ember_sharded_ebc *s, const ember_plan *plan, const ember_freq *f) {
    ember_cache *c = ember_sharded_ebc_cache(s);
    for (int t = 0; c && t < T; t++) {
        int l = ember_sharded_ebc_local_table(s, t);
        if (l < 0) continue;
        ember_plan_shard sh;
        CHECK_OK(ember_plan_get_shard(plan, t, R, &sh));
        int64_t rows = sh.local_rows, rep = sh.replicated_rows, have[EMBER_CACHE_TIER_COUNT] = {0};
        for (int64_t r = 0; r < rows; r++) {
            ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
            CHECK_OK(ember_cache_get_row_tier(c, l, r, &k));
            if (k < EMBER_CACHE_TIER_COUNT) have[k]++;
        }
        if (TABLES[t].format != EMBER_ROW_FORMAT_F32) {
            CHECK_EQ_INT(have[EMBER_CACHE_TIER_HOT], rows);
            continue;
        }
        int64_t nh = tfrac(THOT, rows), nw = tfrac(TWARM, rows);
        if (nh + nw > rows) nw = rows - nh;
        int64_t hot = nh > rep ? nh : rep, warm = nh + nw - hot > 0 ? nh + nw - hot : 0;
        CHECK_EQ_INT(have[EMBER_CACHE_TIER_HOT], hot);
        CHECK_EQ_INT(have[EMBER_CACHE_TIER_WARM], warm);
        CHECK_EQ_INT(have[EMBER_CACHE_TIER_COLD], rows - hot - warm);
        uint64_t lo[EMBER_CACHE_TIER_COUNT] = {UINT64_MAX, UINT64_MAX, UINT64_MAX}, hi[EMBER_CACHE_TIER_COUNT] = {0};
        for (int64_t id = 0; id < TABLES[t].rows; id++) {
            int rk;
            int64_t lr;
            CHECK_OK(ember_plan_locate(plan, t, id, &rk, &lr));
            if ((rk != R && rk != EMBER_PLAN_EVERY_RANK) || lr < rep) continue;
            ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
            CHECK_OK(ember_cache_get_row_tier(c, l, lr, &k));
            if (k >= EMBER_CACHE_TIER_COUNT) continue;
            uint64_t n = ember_freq_count(f, t, id);
            if (n < lo[k]) lo[k] = n;
            if (n > hi[k]) hi[k] = n;
        }
        CHECK(hi[EMBER_CACHE_TIER_WARM] <= lo[EMBER_CACHE_TIER_HOT]);
        CHECK(hi[EMBER_CACHE_TIER_COLD] <= lo[EMBER_CACHE_TIER_WARM]);
        CHECK(hi[EMBER_CACHE_TIER_COLD] <= lo[EMBER_CACHE_TIER_HOT]);
    }
}

/*
 * Precision tiers on every rank's cached shard, ranked by the rank's own counts (the
 * counts of the whole run, which also warm the caches). Four runs of TSTEPS steps on the
 * loss: untiered caches (f32), tiers with every row HOT (hot = 1), and two identical runs
 * with hot THOT and warm TWARM. Checks: hot = 1 gives the f32 run's outputs, losses, rows
 * and state bit for bit; the two tiered runs give each other's bits (seeded rounding, no
 * look-ahead); each rank's store has rows in all three tiers, laid out as ranked
 * (check_tier_ranking), and fewer bytes than as f32; the tiered loss stays within
 * LOSS_TOL (relative) of the f32 run's at every step, and the trained rows within
 * ROW_MEAN_TOL on average and ROW_TOL everywhere.
 *
 * Tolerances. Weights start in [-0.1, 0.1]; a WARM row is rounded to f16 (relative 2^-11,
 * about 5e-5 here), a COLD row of dim 16 to int8 over its range (0.2 / 255, about 8e-4
 * per element; rows of dim 8 or less stay f16), stochastically (unbiased), each time it
 * is written back. A bag sums at most 4 rows, so an output element moves by at most
 * 4 x 8e-4 ~ 3e-3 per rounding, against residuals (output - target) of ~0.1: the loss
 * (their mean square) by a few percent at most, LOSS_TOL 5% relative (observed at most
 * 0.8%, on 2 ranks row-wise). Rows: what the store holds is rounded by up to one int8
 * step, so ROW_MEAN_TOL is one step, 1e-3 (observed at most 2e-4). The largest single
 * difference is Adagrad's: its step is lr x g / sqrt(sum g^2), about lr whatever |g|, so
 * a gradient near 0 whose sign a rounding flips moves that element by up to lr (0.1) the
 * other way; ROW_TOL is lr (observed at most 0.036; SGD's 3e-4). The one-process tier
 * test (test_cache.c, test_tiers_determinism) reasons the same way for Adam.
 */
#define LOSS_TOL 0.05
#define ROW_TOL 0.1
#define ROW_MEAN_TOL 1e-3
static void run_tiers(ember_comm *w, ember_plan_kind kind, size_t rep_bytes, ember_sparse_optim opt) {
    ember_plan *plan = make_plan(kind, N, rep_bytes);
    ember_freq *f = global_counts(TSTEPS);
    if (!plan || !f) {
        ember_plan_destroy(plan);
        ember_freq_destroy(f);
        return;
    }
    const int64_t slots = max_unique(plan, TSTEPS), D = 8 + 16 + 4;
    const size_t nout = (size_t)TSTEPS * MAXB * (size_t)D;
    double loss[4][TSTEPS];
    float *outs[4];
    for (int i = 0; i < 4; i++) outs[i] = calloc(nout, 4);
    ember_cache_tiers all_hot = {.counts = f, .hot = 1.0, .seed = 7};
    ember_cache_tiers tiers = {.counts = f, .hot = THOT, .warm = TWARM, .seed = 7};
    ember_sharded_ebc *s[4] = {tier_run(w, plan, opt, slots, f, NULL, loss[0], outs[0]),
                               tier_run(w, plan, opt, slots, f, &all_hot, loss[1], outs[1]),
                               tier_run(w, plan, opt, slots, f, &tiers, loss[2], outs[2]),
                               tier_run(w, plan, opt, slots, f, &tiers, loss[3], outs[3])};
    if (s[0] && s[1] && s[2] && s[3]) {
        const int with_state = opt != EMBER_SPARSE_OPTIM_SGD;
        /* every row HOT: the f32 run, bit for bit */
        CHECK(memcmp(outs[1], outs[0], nout * 4) == 0);
        CHECK(memcmp(loss[1], loss[0], sizeof loss[0]) == 0);
        check_same_shards(s[1], s[0], plan, with_state);
        /* the same tiers and seed twice: the same bits */
        CHECK(memcmp(outs[3], outs[2], nout * 4) == 0);
        CHECK(memcmp(loss[3], loss[2], sizeof loss[0]) == 0);
        check_same_shards(s[3], s[2], plan, with_state);
        /* this rank's store: all three tiers, ranked by its counts, smaller than f32 */
        check_tier_ranking(s[2], plan, f);
        ember_cache_stats cs = {0};
        CHECK(ember_sharded_ebc_cache(s[2]) != NULL); /* every rank holds rows of these plans */
        if (ember_sharded_ebc_cache(s[2])) CHECK_OK(ember_cache_get_stats(ember_sharded_ebc_cache(s[2]), &cs));
        CHECK(cs.tier_rows[EMBER_CACHE_TIER_HOT] > 0 && cs.tier_rows[EMBER_CACHE_TIER_WARM] > 0 &&
              cs.tier_rows[EMBER_CACHE_TIER_COLD] > 0);
        CHECK(cs.store_bytes > 0 && cs.store_bytes < cs.store_f32_bytes);
        int64_t ev[2] = {cs.evictions, 0};
        CHECK_OK(ember_comm_all_reduce(w, ev, ev + 1, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK(ev[1] > 0);
        if (getenv("EMBER_TEST_VERBOSE"))
            fprintf(stderr, "rank %d: tiers %lld hot %lld warm %lld cold rows, store %lld bytes vs %lld as f32\n", R,
                    (long long)cs.tier_rows[EMBER_CACHE_TIER_HOT], (long long)cs.tier_rows[EMBER_CACHE_TIER_WARM],
                    (long long)cs.tier_rows[EMBER_CACHE_TIER_COLD], (long long)cs.store_bytes,
                    (long long)cs.store_f32_bytes);
        /* near f32 training over the whole run */
        double worst = 0;
        for (int k = 0; k < TSTEPS; k++) {
            double rel = fabs(loss[2][k] - loss[0][k]) / loss[0][k];
            if (rel > worst) worst = rel;
        }
        double mean = 0, rows = tables_diff(s[2], s[0], &mean);
        CHECK(worst <= LOSS_TOL);
        CHECK(rows > 0 && rows <= ROW_TOL);
        CHECK(mean <= ROW_MEAN_TOL);
        if (R == 0)
            printf("sharded %-10s %-8s tiers ranks %d: hot = 1 equals f32 bit for bit; hot %.2f warm %.2f: two runs "
                   "the same bits, %d steps within %.3g of f32's loss (relative), rows within %.3g (mean %.3g)\n",
                   ember_plan_kind_name(kind), ember_sparse_optim_name(opt), N, THOT, TWARM, TSTEPS, worst, rows,
                   mean);
    }
    for (int i = 0; i < 4; i++) {
        ember_sharded_ebc_destroy(s[i]);
        free(outs[i]);
    }
    ember_freq_destroy(f);
    ember_plan_destroy(plan);
}

/* Tiers given row by row over the whole tables: each rank's rows take their ids' tiers,
   replicated rows HOT, holes COLD. Bad tier configs: refused alike on every rank. */
static void test_tier_maps(ember_comm *w) {
    ember_plan *plan = make_plan(EMBER_PLAN_MINIMAX, N, (size_t)1 << 20);
    if (!plan) return;
    uint8_t *m[T] = {NULL};
    ember_cache_tier_map maps[T] = {{0}};
    for (int t = 0; t < 2; t++) { /* the f32 tables; the f16 one all HOT */
        m[t] = malloc((size_t)TABLES[t].rows);
        for (int64_t id = 0; id < TABLES[t].rows; id++) m[t][id] = (uint8_t)((id * 7 + t) % 3);
        maps[t] = (ember_cache_tier_map){.tier = m[t], .rows = TABLES[t].rows};
    }
    ember_cache_tiers ti = {.maps = maps, .seed = 3};
    ember_cache_config cc = {.ratio = 0.5, .tiers = &ti};
    ember_sharded_ebc_config sc = {.plan = plan, .num_tables = T, .tables = TABLES,
                                   .optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}, .cache = &cc};
    ember_sharded_ebc *s = NULL;
    CHECK_OK(ember_sharded_ebc_create(w, &sc, &s));
    ember_cache *c = ember_sharded_ebc_cache(s);
    for (int t = 0; c && t < T; t++) {
        int l = ember_sharded_ebc_local_table(s, t);
        if (l < 0) continue;
        ember_plan_shard sh;
        CHECK_OK(ember_plan_get_shard(plan, t, R, &sh));
        char *seen = calloc((size_t)sh.local_rows, 1);
        for (int64_t id = 0; id < TABLES[t].rows; id++) {
            int rk;
            int64_t lr;
            CHECK_OK(ember_plan_locate(plan, t, id, &rk, &lr));
            if (rk != R && rk != EMBER_PLAN_EVERY_RANK) continue;
            seen[lr] = 1;
            ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
            CHECK_OK(ember_cache_get_row_tier(c, l, lr, &k));
            CHECK_EQ_INT(k, lr < sh.replicated_rows || !m[t] ? EMBER_CACHE_TIER_HOT : m[t][id]);
        }
        for (int64_t r = 0; r < sh.local_rows; r++) {
            if (seen[r]) continue;
            ember_cache_tier k = EMBER_CACHE_TIER_COUNT;
            CHECK_OK(ember_cache_get_row_tier(c, l, r, &k));
            CHECK_EQ_INT(k, m[t] ? EMBER_CACHE_TIER_COLD : EMBER_CACHE_TIER_HOT);
        }
        free(seen);
    }
    ember_sharded_ebc_destroy(s);
    s = NULL;
    /* refused on every rank, each naming itself */
    char rank_is[32];
    snprintf(rank_is, sizeof rank_is, "rank %d of %d", R, N);
    ember_freq *f = global_counts(TSTEPS), *f2 = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 2}, &f2));
    ti = (ember_cache_tiers){.counts = f, .budget = 4096};
    CHECK_STATUS(ember_sharded_ebc_create(w, &sc, &s), EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "a byte budget is not supported on shards") != NULL);
    CHECK(strstr(ember_last_error(), rank_is) != NULL);
    ti = (ember_cache_tiers){.hot = 0.5};
    CHECK_STATUS(ember_sharded_ebc_create(w, &sc, &s), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "give either maps") != NULL);
    ti = (ember_cache_tiers){.counts = f, .hot = 0.7, .warm = 0.5};
    CHECK_STATUS(ember_sharded_ebc_create(w, &sc, &s), EMBER_ERR_INVALID_ARGUMENT);
    ti = (ember_cache_tiers){.counts = f2, .hot = 0.5};
    CHECK_STATUS(ember_sharded_ebc_create(w, &sc, &s), EMBER_ERR_SHAPE);
    m[2] = calloc((size_t)TABLES[2].rows, 1);
    m[2][5] = EMBER_CACHE_TIER_WARM;
    maps[2] = (ember_cache_tier_map){.tier = m[2], .rows = TABLES[2].rows};
    ti = (ember_cache_tiers){.maps = maps};
    CHECK_STATUS(ember_sharded_ebc_create(w, &sc, &s), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "maps[2].tier[5] = 1 is not HOT in a table that is not f32") != NULL);
    CHECK(s == NULL);
    CHECK(!ember_comm_is_broken(w));
    for (int t = 0; t < T; t++) free(m[t]);
    ember_freq_destroy(f);
    ember_freq_destroy(f2);
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
    /* column slices cannot keep a whole row's state, norm or scale: refused by name */
    ember_plan *pc = make_plan(EMBER_PLAN_COLUMNWISE, N, 0);
    const ember_sparse_optim_config rowwise = {.type = EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD};
    CHECK_STATUS(ember_sharded_ebc_create(w, &(ember_sharded_ebc_config){.plan = pc, .num_tables = T, .tables = TABLES,
                                                                        .optim = rowwise},
                                          &s),
                 EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "rowwise Adagrad") != NULL);
    CHECK_STATUS(ember_sharded_ebc_create(w, &(ember_sharded_ebc_config){.plan = pc, .num_tables = T, .tables = TABLES,
                                                                        .optim = {.max_grad_norm = 1.0f}},
                                          &s),
                 EMBER_ERR_UNSUPPORTED);
    ember_plan_destroy(pc);
    ember_sharded_ebc_destroy(NULL);
}

int main(void) {
    ember_comm *w = mpi_world(&R, &N);
    if (!w) return 1;
    if (mpi_skip(w, R, (N & (N - 1)) != 0 || N > 64, "the exact loss scaling needs a power-of-two world")) return 77;
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
    /* precision tiers on each rank's cached shard: row ranges and minimax with replicated
       rows under Adagrad (its state tiered with its row), column slices under SGD */
    run_tiers(w, EMBER_PLAN_ROWWISE, 192, EMBER_SPARSE_OPTIM_ADAGRAD);
    run_tiers(w, EMBER_PLAN_MINIMAX, (size_t)1 << 20, EMBER_SPARSE_OPTIM_ADAGRAD);
    run_tiers(w, EMBER_PLAN_COLUMNWISE, 192, EMBER_SPARSE_OPTIM_SGD);
    test_tier_maps(w);
    test_errors(w);
    ember_comm_destroy(w);
    return check_summary();
}
