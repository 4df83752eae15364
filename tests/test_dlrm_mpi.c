/*
 * DLRM on N ranks (ctest: mpiexec -n 2 and -n 4, label mpi) against one-process DLRM on
 * the same global batches: the tables sharded (ember_sharded_ebc from a table-wise,
 * row-wise, column-wise or minimax plan), the dense layers under ember_ddp. Every rank
 * also builds the one-process reference itself (config.comm NULL, batch = the global
 * batch) and trains it on the global batch, the ranks' batches concatenated in rank order.
 *
 * Minimax plans from counts (config.freq), every rank counting the same global batches
 * of the run (the training data, as `ember count` would): (a) those counts, whose hot
 * ids the plan places one by one (hot rows split over the ranks: checked on the plan,
 * hot_blocks > 0); (b) the same with id 0 of every table 1000 times hotter, as if the
 * whole training set were counted, so the plan replicates it on every rank (checked:
 * replicated_blocks > 0; its gradients are then all-reduced).
 *
 * Model: 3 tables (50, 37, 64 rows, dim 4, sum pooling), 4 dense features, bottom MLP
 * {8, 4}, top {8, 1}, dot interaction; 4 samples per rank; bags of 0..3 ids, half drawn
 * from 3 hot ids so rows are hit by several ranks in one step. SGD for both halves, and
 * Adagrad for both (optimizer state in the tables and the dense layers); column-wise
 * also with sparse Adam (two state arrays per row, each sliced by columns).
 *
 * Checks, after every step of STEPS: the loss (the mean over the ranks of their mean
 * BCE; one process: the global batch's mean) within 2e-6 of the reference (|loss| ~ 0.7;
 * the dense gradients are the batch's sum split into per-rank partial sums, and row-wise
 * forward outputs reorder each bag's sum, so ulp-level differences compound: observed
 * 6e-8 on 2 and 4 ranks). At the end: every dense parameter within 1e-5 of the reference and the
 * same bits on every rank (ddp); every table's rows and optimizer state read back
 * (collective read_table) within 1e-5 of the reference (observed a few 1e-8).
 * Re-sharding: the reference's rows and state written into a fresh N-rank model
 * (write_table, each rank keeping its rows) read back bit-exact, and one more step on
 * both gives the same loss (within 2e-6), as resuming a one-process checkpoint on N
 * ranks does; with column slices this carries the state column by column. Precision
 * tiers on each rank's cached shard (run_tiers: hot = 1 bit for bit with untiered
 * shards, real tiers deterministic and near the reference). Errors: cache tiers by a
 * budget, or with neither counts nor maps, on N ranks; minimax without counts (named:
 * set freq); column-wise with rowwise Adagrad (named); a plan kind out of range.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "graph_util.h"
#include "mpi_world.h"
#include "ember/datasets.h"
#include "ember/dlrm.h"
#include "ember/parallel.h"

#define T 3
#define ND 4
#define BL 4 /* samples per rank */
#define STEPS 6
#define MAXN 8

static int R, N;
static const int64_t ROWS[T] = {50, 37, 64};

static uint32_t mix(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t h = a * 2654435761u ^ (b + 0x9e3779b9u) * 2246822519u ^ (c + 7u) * 3266489917u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    h *= 3266489917u;
    h ^= h >> 16;
    return h;
}

/* The global batch of a step: BG = N * BL samples; rank r's is samples [r BL, (r+1) BL). */
typedef struct gbatch {
    float dense[MAXN * BL * ND], labels[MAXN * BL];
    int64_t vals[T][MAXN * BL * 3], offs[T][MAXN * BL + 1];
    /* rank-local view: offsets rebased */
    int64_t loffs[T][BL + 1];
    ember_jagged_feature f[T], lf[T];
    ember_jagged j, lj;
} gbatch;

static void make_batch(gbatch *b, int step) {
    int64_t BG = (int64_t)N * BL;
    for (int64_t i = 0; i < BG; i++) {
        for (int k = 0; k < ND; k++) b->dense[i * ND + k] = (float)(mix((uint32_t)step, (uint32_t)i, 100u + (uint32_t)k) % 1000) / 500.0f - 1.0f;
        b->labels[i] = (float)(mix((uint32_t)step, (uint32_t)i, 7u) % 2);
    }
    for (int t = 0; t < T; t++) {
        int64_t n = 0;
        b->offs[t][0] = 0;
        for (int64_t i = 0; i < BG; i++) {
            int len = (int)(mix((uint32_t)step, (uint32_t)i, 200u + (uint32_t)t) % 4);
            for (int q = 0; q < len; q++) {
                uint32_t h = mix((uint32_t)step, (uint32_t)(i * 4 + q), 300u + (uint32_t)t);
                b->vals[t][n++] = (h & 1) ? (int64_t)(h >> 1) % 3 : (int64_t)(h >> 1) % ROWS[t];
            }
            b->offs[t][i + 1] = n;
        }
        b->f[t] = (ember_jagged_feature){.values = b->vals[t], .offsets = b->offs[t], .length = n};
        int64_t base = b->offs[t][(int64_t)R * BL];
        for (int64_t i = 0; i <= BL; i++) b->loffs[t][i] = b->offs[t][(int64_t)R * BL + i] - base;
        b->lf[t] = (ember_jagged_feature){.values = b->vals[t] + base, .offsets = b->loffs[t],
                                          .length = b->loffs[t][BL]};
    }
    b->j = (ember_jagged){.batch = BG, .num_features = T, .features = b->f};
    b->lj = (ember_jagged){.batch = BL, .num_features = T, .features = b->lf};
}

/* Counts of the run's global batches (steps 0 .. STEPS), every table's id 0 counted
   `boost` more times. The same on every rank. */
static ember_freq *count_batches(uint64_t boost) {
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = T}, &f));
    static gbatch b;
    static const int64_t zero = 0;
    for (int s = 0; f && s <= STEPS; s++) {
        make_batch(&b, s);
        for (int t = 0; t < T; t++) CHECK_OK(ember_freq_add(f, t, b.vals[t], b.f[t].length));
    }
    for (int t = 0; f && t < T; t++)
        for (uint64_t k = 0; k < boost; k++) CHECK_OK(ember_freq_add(f, t, &zero, 1));
    return f;
}

static ember_dlrm_config config(ember_comm *comm, ember_plan_kind plan, ember_sparse_optim so, ember_optim_kind dk) {
    ember_dlrm_config c = {.num_dense = ND, .num_tables = T, .table_rows = ROWS, .emb_dim = 4,
                           .bottom = {8, 4}, .top = {8, 1}, .batch = comm ? BL : (int64_t)N * BL,
                           .sparse_lr = 0.05f, .seed = 3, .comm = comm, .plan = plan};
    c.sparse_optim = (ember_sparse_optim_config){.type = so};
    c.dense_optim = ember_optimizer_defaults(dk);
    c.dense_optim.lr = 0.05;
    return c;
}

/* All dense parameters, in graph order, into a malloc'd array. */
static float *dense_params(ember_dlrm *m, int64_t *n) {
    size_t k = 0;
    float *v = graph_params_snapshot(ember_dlrm_graph(m), &k);
    CHECK(v != NULL);
    *n = (int64_t)k;
    return v;
}

static void set_dense_params(ember_dlrm *m, const float *src) { CHECK(graph_params_restore(ember_dlrm_graph(m), src)); }

/* Tables and their state of a and b (a sharded: collective) within tol. */
static void compare_tables(ember_dlrm *a, ember_dlrm *b, double tol) {
    for (int t = 0; t < T; t++) {
        int64_t d = ember_dlrm_table_dim(a, t), sf = ember_dlrm_state_floats(a, t);
        CHECK_EQ_INT(sf, ember_dlrm_state_floats(b, t));
        float *wa = calloc((size_t)(ROWS[t] * d), sizeof *wa), *wb = calloc((size_t)(ROWS[t] * d), sizeof *wb);
        float *sa = calloc((size_t)(ROWS[t] * (sf + 1)), sizeof *sa), *sb = calloc((size_t)(ROWS[t] * (sf + 1)), sizeof *sb);
        CHECK_OK(ember_dlrm_read_table(a, t, 0, ROWS[t], wa, sa));
        CHECK_OK(ember_dlrm_read_table(b, t, 0, ROWS[t], wb, sb));
        CHECK_NEAR_ARRAY(wa, wb, ROWS[t] * d, tol);
        CHECK_NEAR_ARRAY(sa, sb, ROWS[t] * sf, tol);
        /* a part of the table, not starting at row 0 */
        float part[8 * 4];
        CHECK_OK(ember_dlrm_read_table(a, t, 5, 8, part, NULL));
        CHECK_NEAR_ARRAY(part, wa + 5 * d, 8 * d, 0.0);
        free(wa), free(wb), free(sa), free(sb);
    }
}

/* what a minimax plan must show: hot rows placed apart from their ranges, or replicated */
enum { EXPECT_NONE, EXPECT_HOT, EXPECT_REPLICATED };

/* The most distinct ids of one table that this rank's shard serves in one step of the
   run (rows it owns or every rank holds, asked by any rank): a cache of this many slots
   evicts yet never runs out. */
static int64_t max_unique(const ember_plan *plan) {
    static gbatch b;
    int64_t best = 1;
    for (int s = 0; plan && s <= STEPS; s++) {
        make_batch(&b, s);
        for (int t = 0; t < T; t++) {
            int64_t u = plan_rank_unique(plan, t, b.vals[t], b.f[t].length, R);
            CHECK(u >= 0);
            if (u > best) best = u;
        }
    }
    return best;
}

/* Every row and state float this rank holds, in a and b (same plan): the same bits. */
static void same_shards(ember_dlrm *a, ember_dlrm *b) {
    ember_sharded_ebc *sa = ember_dlrm_sharded_tables(a), *sb = ember_dlrm_sharded_tables(b);
    for (int t = 0; sa && sb && t < T; t++) {
        if (ember_sharded_ebc_local_table(sa, t) < 0) continue;
        ember_plan_shard sh;
        CHECK_OK(ember_plan_get_shard(ember_dlrm_plan(a), t, R, &sh));
        int64_t n = sh.local_rows, w = sh.col_end - sh.col_begin;
        int64_t sf = ember_dlrm_state_floats(a, t) * w / ember_dlrm_table_dim(a, t); /* a slice's columns */
        float *x = calloc((size_t)(n * (w + sf)), 4), *y = calloc((size_t)(n * (w + sf)), 4);
        CHECK_OK(ember_sharded_ebc_read_local(sa, t, 0, n, x, sf ? x + n * w : NULL));
        CHECK_OK(ember_sharded_ebc_read_local(sb, t, 0, n, y, sf ? y + n * w : NULL));
        CHECK(memcmp(x, y, (size_t)(n * (w + sf)) * 4) == 0);
        free(x), free(y);
    }
}

static void run_case(ember_comm *w, ember_plan_kind plan, ember_sparse_optim so, ember_optim_kind dk,
                     const ember_freq *freq, int expect, int cached) {
    ember_dlrm *ref = NULL, *m = NULL, *m2 = NULL, *res = NULL; /* res: the resident twin of a cached m */
    ember_dlrm_config rc = config(NULL, plan, so, dk), mc = config(w, plan, so, dk);
    rc.freq = mc.freq = freq; /* ignored by the one-process reference */
    CHECK_OK(ember_dlrm_create(&rc, &ref));
    ember_cache_config cc = {.ratio = 0.05, .policy = EMBER_CACHE_POLICY_LFU};
    if (cached) {
        CHECK_OK(ember_dlrm_create(&mc, &res));
        cc.min_slots = max_unique(ember_dlrm_plan(res));
        mc.cache = &cc;
    }
    CHECK_OK(ember_dlrm_create(&mc, &m));
    if (!ref || !m || (cached && !res)) goto out;
    int holds = 0;
    for (int t = 0; t < T; t++) holds |= ember_sharded_ebc_local_table(ember_dlrm_sharded_tables(m), t) >= 0;
    CHECK_EQ_INT(ember_dlrm_cache(m) != NULL, cached && holds);
    CHECK_EQ_INT(ember_dlrm_world(m), N);
    CHECK_EQ_INT(ember_dlrm_rank(m), R);
    CHECK(ember_dlrm_sharded_tables(m) != NULL);
    CHECK(ember_dlrm_sharded_tables(ref) == NULL);
    CHECK(ember_dlrm_plan(ref) == NULL);
    CHECK(ember_dlrm_plan(m) != NULL);
    ember_plan_stats ps = {0};
    if (ember_dlrm_plan(m)) {
        CHECK_EQ_INT(ember_plan_get_kind(ember_dlrm_plan(m)), plan);
        CHECK_OK(ember_plan_get_stats(ember_dlrm_plan(m), BL, &ps, NULL));
    }
    if (expect == EXPECT_HOT) CHECK(ps.hot_blocks > 0);
    if (expect == EXPECT_REPLICATED) {
        ember_sharded_ebc_stats ss;
        CHECK(ps.replicated_blocks > 0);
        CHECK_OK(ember_sharded_ebc_get_stats(ember_dlrm_sharded_tables(m), &ss));
        CHECK(ss.replicated_floats > 0);
    }
    if (plan == EMBER_PLAN_MINIMAX)
        CHECK(ps.imbalance < 1.5); /* the counted load spread, not left on a hot row's owner */
    compare_tables(m, ref, 0.0); /* the same initial rows */
    static gbatch b;
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        make_batch(&b, s);
        float l0 = 0, l1 = 0;
        CHECK_OK(ember_dlrm_train_step(ref, b.dense, &b.j, b.labels, &l0));
        CHECK_OK(ember_dlrm_train_step(m, b.dense + (int64_t)R * BL * ND, &b.lj, b.labels + (int64_t)R * BL, &l1));
        CHECK_NEAR(l1, l0, 2e-6);
        if (fabs(l1 - l0) > worst) worst = fabs(l1 - l0);
        if (res) { /* the resident twin: the same loss, bit for bit */
            float l2 = 0;
            CHECK_OK(ember_dlrm_train_step(res, b.dense + (int64_t)R * BL * ND, &b.lj, b.labels + (int64_t)R * BL,
                                           &l2));
            CHECK(memcmp(&l1, &l2, sizeof l1) == 0);
        }
    }
    int64_t n0, n1;
    float *p0 = dense_params(ref, &n0), *p1 = dense_params(m, &n1);
    CHECK_EQ_INT(n0, n1);
    CHECK_NEAR_ARRAY(p1, p0, n0, 1e-5);
    int64_t ev[2] = {0, 0};
    if (res) {
        int64_t n2;
        float *p2 = dense_params(res, &n2);
        CHECK(n2 == n1 && memcmp(p2, p1, (size_t)n1 * sizeof *p1) == 0);
        free(p2);
        same_shards(m, res);
        ember_cache_stats cs = {0};
        if (ember_dlrm_cache(m)) CHECK_OK(ember_cache_get_stats(ember_dlrm_cache(m), &cs));
        ev[0] = cs.evictions;
        CHECK_OK(ember_comm_all_reduce(w, ev, ev + 1, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK(ev[1] > 0);
    }
    /* the dense parameters are the same bits on every rank */
    float *pr = malloc((size_t)n1 * sizeof *pr);
    memcpy(pr, p1, (size_t)n1 * sizeof *pr);
    CHECK_OK(ember_comm_broadcast(w, pr, n1, EMBER_DTYPE_F32, 0, NULL));
    CHECK(memcmp(pr, p1, (size_t)n1 * sizeof *pr) == 0);
    compare_tables(m, ref, 1e-5);
    if (R == 0)
        printf("%s plan, %s%s: %d steps on %d ranks, worst loss difference %.3g (plan: imbalance %.3f, %lld hot and "
               "%lld replicated rows)\n",
               ember_plan_kind_name(plan), ember_sparse_optim_name(so), cached ? ", cached shards" : "", STEPS, N,
               worst, ps.imbalance, (long long)ps.hot_blocks, (long long)ps.replicated_blocks);
    if (R == 0 && cached)
        printf("  against resident shards: loss, dense parameters, rows and state compared bit for bit; %lld rows "
               "evicted over the ranks\n", (long long)ev[1]);

    /* re-sharding: a one-process model's rows and state loaded by N ranks */
    CHECK_OK(ember_dlrm_create(&mc, &m2));
    if (m2) {
        for (int t = 0; t < T; t++) {
            int64_t d = ember_dlrm_table_dim(ref, t), sf = ember_dlrm_state_floats(ref, t);
            float *wv = malloc((size_t)(ROWS[t] * d) * sizeof *wv), *sv = malloc((size_t)(ROWS[t] * (sf + 1)) * sizeof *sv);
            CHECK_OK(ember_dlrm_read_table(ref, t, 0, ROWS[t], wv, sv));
            CHECK_OK(ember_dlrm_write_table(m2, t, 0, ROWS[t], wv, sv));
            free(wv), free(sv);
        }
        compare_tables(m2, ref, 0.0);
        if (dk == EMBER_OPTIM_SGD) { /* no dense optimizer state to carry over */
            set_dense_params(m2, p0);
            CHECK_OK(ember_dlrm_set_step(m2, ember_dlrm_step(ref)));
            float l0 = 0, l1 = 0;
            make_batch(&b, STEPS);
            CHECK_OK(ember_dlrm_train_step(ref, b.dense, &b.j, b.labels, &l0));
            CHECK_OK(ember_dlrm_train_step(m2, b.dense + (int64_t)R * BL * ND, &b.lj, b.labels + (int64_t)R * BL, &l1));
            CHECK_NEAR(l1, l0, 2e-6);
        }
    }
    free(p0), free(p1), free(pr);
out:
    ember_dlrm_destroy(m2);
    ember_dlrm_destroy(m);
    ember_dlrm_destroy(res);
    ember_dlrm_destroy(ref);
}

/*
 * Precision tiers on each rank's cached shard through the model (config.cache->tiers with
 * the counts of the whole tables, as the trainer passes them): row-wise, Adagrad for both
 * halves, TIER_STEPS steps against the one-process reference, beside the same cached
 * shards untiered. Every row HOT (hot = 1): the untiered shards' losses, dense parameters,
 * rows and state bit for bit. hot 0.1, warm 0.3: two runs the same bits; each rank's
 * store in all three tiers and smaller than f32; every step's loss within TIER_LOSS_TOL
 * of the reference. Why that tolerance: the loss is BCE (~0.7); dim-4 rows are stored
 * f16 when WARM or COLD (int8 is no smaller at dim 4), a relative rounding of 2^-11 (5e-4)
 * of embeddings of ~0.01-0.1, which moves the logits by ~1e-4 through the small MLPs and
 * the loss by as much; 1e-3 leaves room for that to compound over the steps (observed
 * 2.5e-4 on 2 ranks, 3e-4 on 4).
 */
#define TIER_STEPS 30
#define TIER_LOSS_TOL 1e-3
static void run_tiers(ember_comm *w) {
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = T}, &f));
    static gbatch b;
    for (int s = 0; f && s < TIER_STEPS; s++) {
        make_batch(&b, s);
        for (int t = 0; t < T; t++) CHECK_OK(ember_freq_add(f, t, b.vals[t], b.f[t].length));
    }
    ember_dlrm_config rc = config(NULL, EMBER_PLAN_ROWWISE, EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_OPTIM_ADAGRAD),
                      mc = config(w, EMBER_PLAN_ROWWISE, EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_OPTIM_ADAGRAD);
    ember_dlrm *ref = NULL, *m[4] = {NULL, NULL, NULL, NULL};
    CHECK_OK(ember_dlrm_create(&rc, &ref));
    CHECK_OK(ember_dlrm_create(&mc, &m[0])); /* resident, for the plan the caches are sized by */
    int64_t slots = 1;
    if (m[0]) {
        for (int s = 0; s < TIER_STEPS; s++) { /* max_unique over this run's steps */
            make_batch(&b, s);
            for (int t = 0; t < T; t++) {
                char seen[64] = {0};
                int64_t u = 0;
                for (int64_t k = 0; k < b.f[t].length; k++) {
                    int rk;
                    int64_t lr;
                    CHECK_OK(ember_plan_locate(ember_dlrm_plan(m[0]), t, b.vals[t][k], &rk, &lr));
                    if (rk == R || rk == EMBER_PLAN_EVERY_RANK) u += !seen[b.vals[t][k]]++;
                }
                if (u > slots) slots = u;
            }
        }
        ember_dlrm_destroy(m[0]);
        m[0] = NULL;
    }
    ember_cache_tiers hot1 = {.counts = f, .hot = 1.0, .seed = 5};
    ember_cache_tiers ti = {.counts = f, .hot = 0.1, .warm = 0.3, .seed = 5};
    ember_cache_config cc[4];
    for (int i = 0; i < 4; i++) {
        cc[i] = (ember_cache_config){.ratio = 0.05, .min_slots = slots, .policy = EMBER_CACHE_POLICY_LFU,
                                     .tiers = i == 0 ? NULL : i == 1 ? &hot1 : &ti};
        mc.cache = &cc[i];
        CHECK_OK(ember_dlrm_create(&mc, &m[i]));
    }
    if (!ref || !m[0] || !m[1] || !m[2] || !m[3]) goto out;
    double worst = 0;
    for (int s = 0; s < TIER_STEPS; s++) {
        make_batch(&b, s);
        float l0 = 0, l[4] = {0};
        CHECK_OK(ember_dlrm_train_step(ref, b.dense, &b.j, b.labels, &l0));
        for (int i = 0; i < 4; i++)
            CHECK_OK(ember_dlrm_train_step(m[i], b.dense + (int64_t)R * BL * ND, &b.lj, b.labels + (int64_t)R * BL,
                                           &l[i]));
        CHECK_NEAR(l[0], l0, 2e-6);
        CHECK(memcmp(&l[1], &l[0], sizeof l[0]) == 0);
        CHECK(memcmp(&l[3], &l[2], sizeof l[0]) == 0);
        CHECK_NEAR(l[2], l0, TIER_LOSS_TOL);
        if (fabs(l[2] - l0) > worst) worst = fabs(l[2] - l0);
    }
    int64_t n0, n1, n2, n3;
    float *p0 = dense_params(m[0], &n0), *p1 = dense_params(m[1], &n1);
    float *p2 = dense_params(m[2], &n2), *p3 = dense_params(m[3], &n3);
    CHECK(n1 == n0 && memcmp(p1, p0, (size_t)n0 * sizeof *p0) == 0);
    CHECK(n3 == n2 && memcmp(p3, p2, (size_t)n2 * sizeof *p2) == 0);
    free(p0), free(p1), free(p2), free(p3);
    same_shards(m[1], m[0]);
    same_shards(m[3], m[2]);
    ember_cache_stats cs = {0};
    CHECK(ember_dlrm_cache(m[2]) != NULL); /* row-wise: every rank holds rows of every table */
    if (ember_dlrm_cache(m[2])) CHECK_OK(ember_cache_get_stats(ember_dlrm_cache(m[2]), &cs));
    CHECK(cs.tier_rows[EMBER_CACHE_TIER_HOT] > 0 && cs.tier_rows[EMBER_CACHE_TIER_WARM] > 0 &&
          cs.tier_rows[EMBER_CACHE_TIER_COLD] > 0);
    CHECK(cs.store_bytes > 0 && cs.store_bytes < cs.store_f32_bytes);
    if (R == 0)
        printf("rowwise plan, adagrad, cached shards with tiers: hot = 1 equals untiered bit for bit; hot 0.1 warm "
               "0.3: two runs the same bits, %d steps within %.3g of one process's loss; rank 0's store %lld hot "
               "%lld warm %lld cold rows, %lld bytes vs %lld as f32\n",
               TIER_STEPS, worst, (long long)cs.tier_rows[EMBER_CACHE_TIER_HOT],
               (long long)cs.tier_rows[EMBER_CACHE_TIER_WARM], (long long)cs.tier_rows[EMBER_CACHE_TIER_COLD],
               (long long)cs.store_bytes, (long long)cs.store_f32_bytes);
out:
    for (int i = 0; i < 4; i++) ember_dlrm_destroy(m[i]);
    ember_dlrm_destroy(ref);
    ember_freq_destroy(f);
}

static void test_errors(ember_comm *w) {
    ember_dlrm *m = NULL;
    /* minimax without counts: named, what to give */
    ember_dlrm_config c = config(w, EMBER_PLAN_MINIMAX, EMBER_SPARSE_OPTIM_SGD, EMBER_OPTIM_SGD);
    CHECK_STATUS(ember_dlrm_create(&c, &m), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "ember_dlrm_create: plan minimax") != NULL);
    CHECK(strstr(ember_last_error(), "needs lookup counts: set freq") != NULL);
    CHECK(m == NULL);
    /* column slices cannot keep one state per row */
    c = config(w, EMBER_PLAN_COLUMNWISE, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD, EMBER_OPTIM_SGD);
    CHECK_STATUS(ember_dlrm_create(&c, &m), EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "plan columnwise: rowwise Adagrad needs whole rows") != NULL);
    c = config(w, (ember_plan_kind)EMBER_PLAN_KIND_COUNT, EMBER_SPARSE_OPTIM_SGD, EMBER_OPTIM_SGD);
    CHECK_STATUS(ember_dlrm_create(&c, &m), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "is not an ember_plan_kind") != NULL);
    c = config(w, EMBER_PLAN_TABLEWISE, EMBER_SPARSE_OPTIM_SGD, EMBER_OPTIM_SGD);
    /* precision tiers under a byte budget: not on shards (fractions are), refused on every
       rank; tiers without counts or maps: named */
    ember_freq *f = count_batches(0);
    ember_cache_tiers tiers = {.counts = f, .budget = 1 << 20};
    ember_cache_config cc = {.ratio = 0.5, .tiers = &tiers};
    c.cache = &cc;
    CHECK_STATUS(ember_dlrm_create(&c, &m), EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "a byte budget is not supported on shards") != NULL);
    CHECK(m == NULL);
    tiers = (ember_cache_tiers){.hot = 0.5};
    CHECK_STATUS(ember_dlrm_create(&c, &m), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "tiers: give either maps") != NULL);
    CHECK(m == NULL);
    ember_freq_destroy(f);
    /* a cache that cannot be made on one rank (an LMDB store that must exist, missing on
       the last rank only): that rank names it, the others name that rank, none hangs */
    char dir[64];
    int64_t pid = (int64_t)getpid();
    CHECK_OK(ember_comm_broadcast(w, &pid, 1, EMBER_DTYPE_I64, 0, NULL));
    snprintf(dir, sizeof dir, "/tmp/ember-test-dlrm-mpi-%lld", (long long)pid);
    c = config(w, EMBER_PLAN_ROWWISE, EMBER_SPARSE_OPTIM_SGD, EMBER_OPTIM_SGD); /* every rank holds rows */
    c.cache = &cc;
    cc = (ember_cache_config){.ratio = 0.5, .store = EMBER_CACHE_STORE_LMDB, .path = dir,
                              .open = R == N - 1 ? EMBER_CACHE_OPEN_EXISTING : EMBER_CACHE_OPEN_OR_CREATE};
    ember_status st = ember_dlrm_create(&c, &m);
    CHECK(st != EMBER_OK);
    if (R == N - 1) CHECK(strstr(ember_last_error(), "no store at") != NULL);
    else CHECK(strstr(ember_last_error(), "could not make its shard") != NULL);
    CHECK(m == NULL);
    ember_dlrm_destroy(m);
    CHECK_OK(ember_comm_barrier(w, NULL));
    if (R == 0) { /* the other ranks' stores */
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
    }
}

int main(void) {
    ember_comm *w = mpi_world(&R, &N);
    if (!w) return 1;
    if (mpi_skip(w, R, N < 2 || N > MAXN, "needs 2..%d ranks (mpiexec -n 2)", MAXN)) return 77;
    ember_freq *counted = count_batches(0), *boosted = count_batches(1000);
    const struct {
        ember_plan_kind kind;
        const ember_freq *freq;
        int expect;
    } cases[] = {{EMBER_PLAN_TABLEWISE, NULL, EXPECT_NONE},   {EMBER_PLAN_ROWWISE, NULL, EXPECT_NONE},
                 {EMBER_PLAN_COLUMNWISE, NULL, EXPECT_NONE},  {EMBER_PLAN_TABLEWISE, counted, EXPECT_NONE},
                 {EMBER_PLAN_MINIMAX, counted, EXPECT_HOT}, {EMBER_PLAN_MINIMAX, boosted, EXPECT_REPLICATED}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        run_case(w, cases[k].kind, EMBER_SPARSE_OPTIM_SGD, EMBER_OPTIM_SGD, cases[k].freq, cases[k].expect, 0);
        run_case(w, cases[k].kind, EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_OPTIM_ADAGRAD, cases[k].freq, cases[k].expect, 0);
    }
    /* Adam: two per-column state arrays, carried slice by slice */
    run_case(w, EMBER_PLAN_COLUMNWISE, EMBER_SPARSE_OPTIM_ADAM, EMBER_OPTIM_SGD, NULL, EXPECT_NONE, 0);
    /* each shard behind its own cache (LFU, few slots): SGD and Adagrad, every kind of plan,
       minimax with replicated rows */
    const int cached_cases[] = {0, 1, 2, 5};
    for (size_t i = 0; i < sizeof cached_cases / sizeof *cached_cases; i++) {
        int k = cached_cases[i];
        run_case(w, cases[k].kind, EMBER_SPARSE_OPTIM_SGD, EMBER_OPTIM_SGD, cases[k].freq, cases[k].expect, 1);
        run_case(w, cases[k].kind, EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_OPTIM_ADAGRAD, cases[k].freq, cases[k].expect, 1);
    }
    ember_freq_destroy(counted);
    ember_freq_destroy(boosted);
    run_tiers(w);
    test_errors(w);
    ember_comm_destroy(w);
    return check_summary();
}
