/*
 * plan suite: how evenly each sharding plan spreads the lookups of skewed embedding
 * tables over 2, 4 and 8 devices (include/ember/partition.h).
 *
 *   gen_kaggle     synthetic Criteo with the Kaggle cardinalities and the generator's
 *                  default skew (each field's top 1% of ids takes 90% of its lookups),
 *                  2M samples counted (--quick 200K; --tiny: cardinalities x 0.001, 20K);
 *   criteo_head900 the real Criteo sample's skew (tests/data/criteo_kaggle_head900.tsv,
 *                  ids numbered by a vocabulary of the sample), found through
 *                  $EMBER_TEST_DATA or ./tests/data; skipped when absent.
 *
 * One line per (data, world, plan): metric "imbalance" (max / mean lookups per device;
 * 1 is perfect; the minimax target is <= 1.05), case tablewise, rowwise, columnwise or
 * minimax. Each line's params also carry the predicted bytes a device moves per step
 * (batch 2048 per device, dim 128, rowwise Adagrad rows) and the plan's build time.
 *
 * Stage 2, case "tiers": what the precision tiers of a device's rows save and what they
 * cost in AUC. A small DLRM (dim 16, bottom 64-16, top 128-64-1, Adagrad lr 0.05 dense
 * and sparse, batch 1024) is trained one epoch, in stream order, on rows
 * [0, TIERS_TRAIN) of `ember gen-data --scale 0.01 --seed 1` (338K embedding rows) and
 * evaluated on the TIERS_EVAL rows after them, twice from the same initialisation and
 * batches: tables resident in f32, and tables behind the cache with a tiered host store
 * (the hottest TIERS_HOT of each table's rows by the training rows' counts f32, the next
 * TIERS_WARM f16, the rest int8-rowwise, optimizer state alike; stochastic rounding;
 * device slots TIERS_RATIO of each table's rows, at least TIERS_MIN_SLOTS, STATIC policy
 * warmed from the counts). Two lines:
 *   memory_saving  1 - (host store bytes + device slot bytes) / (the tables' f32 bytes,
 *                  rows x record bytes: what the resident run holds); the store's bytes
 *                  are its compressed rows and its tier maps; the cache's metadata (id
 *                  maps, slot records: params meta_mb, saving_with_meta) is left out;
 *   auc_delta      AUC(tiered) - AUC(f32) on the held-out rows (target |x| <= 0.001),
 *                  the mean over TIERS_SEEDS initialisations (1 under --quick).
 * --tiny: scale 0.001, batch 256, 16 + 8 batches, one seed (a smoke test: its AUCs mean
 * little).
 * Deterministic: no timing loop, the numbers depend only on the data.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "ember/partition.h"
#include "engine/internal.h"

#define NT EMBER_CRITEO_NUM_SPARSE
#define ND EMBER_CRITEO_NUM_DENSE
#define SAMPLE "criteo_kaggle_head900.tsv"

#define TIERS_SCALE 0.01
#define TIERS_BATCH 1024
#define TIERS_TRAIN (196 * TIERS_BATCH) /* 200704 */
#define TIERS_EVAL (50 * TIERS_BATCH)   /* 51200 */
#define TIERS_LR 0.05f
#define TIERS_SEEDS 3
#define TIERS_HOT 0.02
#define TIERS_WARM 0.10
#define TIERS_RATIO 0.03
#define TIERS_MIN_SLOTS 1024
#define TIERS_ROUND_SEED 7

static ember_status run_worlds(const ember_bench_opts *o, const char *data, const ember_freq *f, const int64_t *rows,
                               int64_t samples) {
    ember_ebc_table_info info;
    EMBER_TRY(ember_ebc_record_layout(&(ember_ebc_table_config){.rows = 1, .dim = 128},
                                      &(ember_sparse_optim_config){.type = EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD}, 0,
                                      &info));
    ember_plan_table tabs[NT];
    for (int t = 0; t < NT; t++)
        tabs[t] = (ember_plan_table){.rows = rows[t], .dim = 128, .row_bytes = (int64_t)info.record_bytes};
    for (int world = 2; world <= 8; world *= 2)
        for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++) {
            ember_plan *p = NULL;
            double t0 = ember__now();
            EMBER_TRY(ember_plan_build(&(ember_plan_params){.kind = (ember_plan_kind)k, .world = world, .num_tables = NT,
                                                            .tables = tabs, .freq = f},
                                       &p));
            double el = ember__now() - t0;
            ember_plan_stats s;
            ember_status st = ember_plan_get_stats(p, 2048, &s, NULL);
            ember_plan_destroy(p);
            EMBER_TRY(st);
            char params[512];
            snprintf(params, sizeof params,
                     "\"data\":\"%s\",\"world\":%d,\"samples\":%lld,\"max_comm_mb\":%.2f,\"max_mem_mb\":%.1f,"
                     "\"hot_blocks\":%lld,\"replicated_blocks\":%lld,\"build_s\":%.4f",
                     data, world, (long long)samples, s.max_comm_bytes / 1e6, (double)s.max_bytes / 1e6,
                     (long long)s.hot_blocks, (long long)s.replicated_blocks, el);
            if (!o->json) {
                char name[64];
                snprintf(name, sizeof name, "%s_w%d_%s", data, world, ember_plan_kind_name((ember_plan_kind)k));
                ember_bench_emit(o, "plan", name, "imbalance", s.imbalance, "max/mean", params);
            } else {
                ember_bench_emit(o, "plan", ember_plan_kind_name((ember_plan_kind)k), "imbalance", s.imbalance,
                                 "max/mean", params);
            }
        }
    return EMBER_OK;
}

static ember_status case_gen(const ember_bench_opts *o) {
    int64_t n = o->tiny ? 20000 : o->quick ? 200000 : 2000000;
    ember_gen *g = NULL;
    EMBER_TRY(ember_gen_create(&(ember_gen_params){.seed = 1, .scale = o->tiny ? 0.001 : 1.0}, &g));
    ember_freq *f = NULL;
    ember_status st = ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f);
    int64_t chunk = 65536;
    uint32_t *sp = st == EMBER_OK ? malloc((size_t)chunk * NT * sizeof *sp) : NULL;
    if (st == EMBER_OK && !sp) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench plan: %lld ids", (long long)chunk * NT);
    for (int64_t r = 0; r < n && st == EMBER_OK; r += chunk) {
        int64_t m = n - r < chunk ? n - r : chunk;
        st = ember_gen_rows(g, r, m, NULL, NULL, sp, NULL, NULL);
        if (st == EMBER_OK) st = ember_freq_add_rows(f, sp, m);
    }
    free(sp);
    int64_t rows[NT];
    for (int t = 0; t < NT; t++) rows[t] = ember_gen_cardinality(g, t);
    if (st == EMBER_OK) st = run_worlds(o, "gen_kaggle", f, rows, n);
    ember_freq_destroy(f);
    ember_gen_destroy(g);
    return st;
}

static ember_status case_sample(const ember_bench_opts *o) {
    char path[1200];
    const char *env = getenv("EMBER_TEST_DATA");
    if (env && *env) snprintf(path, sizeof path, "%s/%s", env, SAMPLE);
    if (!(env && *env) || access(path, R_OK) != 0) snprintf(path, sizeof path, "tests/data/%s", SAMPLE);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "bench plan: %s not found (set EMBER_TEST_DATA): criteo_head900 skipped\n", SAMPLE);
        return EMBER_OK;
    }
    const char *paths[1] = {path};
    ember_criteo_vocab *v = NULL;
    EMBER_TRY(ember_criteo_vocab_build(&(ember_criteo_vocab_params){.paths = paths, .num_paths = 1, .min_count = 1}, &v));
    ember_freq *f = NULL;
    ember_criteo_reader *r = NULL;
    int64_t n = 0;
    ember_status st = ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f);
    if (st == EMBER_OK) st = ember_criteo_open(&(ember_criteo_params){.path = path, .vocab = v}, &r);
    ember_criteo_rows rows;
    while (st == EMBER_OK && (st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
        st = ember_freq_add_rows(f, rows.sparse, rows.n);
        n += rows.n;
    }
    ember_criteo_close(r);
    int64_t card[NT];
    for (int t = 0; t < NT; t++) card[t] = ember_criteo_vocab_size(v, t);
    if (st == EMBER_OK) st = run_worlds(o, "criteo_head900", f, card, n);
    ember_freq_destroy(f);
    ember_criteo_vocab_destroy(v);
    return st;
}

/* ---- stage 2: precision tiers ---- */

typedef struct tier_data {
    int64_t B, ntrain, neval;
    int64_t rows[NT];
    float *dense;    /* (n, ND) log1p of the integer features */
    float *labels;   /* (n,) */
    int64_t *ids;    /* (n / B, NT, B): each batch's ids, table by table */
    int64_t *off;    /* (B + 1,) one id per bag */
    ember_freq *counts; /* of the training rows */
} tier_data;

static void tier_data_free(tier_data *d) {
    free(d->dense);
    free(d->labels);
    free(d->ids);
    free(d->off);
    ember_freq_destroy(d->counts);
}

static ember_status tier_data_make(const ember_bench_opts *o, tier_data *d) {
    memset(d, 0, sizeof *d);
    d->B = o->tiny ? 256 : TIERS_BATCH;
    d->ntrain = o->tiny ? 16 * d->B : TIERS_TRAIN;
    d->neval = o->tiny ? 8 * d->B : TIERS_EVAL;
    int64_t n = d->ntrain + d->neval, B = d->B;
    ember_gen *g = NULL;
    EMBER_TRY(ember_gen_create(&(ember_gen_params){.seed = 1, .scale = o->tiny ? 0.001 : TIERS_SCALE}, &g));
    for (int t = 0; t < NT; t++) d->rows[t] = ember_gen_cardinality(g, t);
    d->dense = malloc((size_t)n * ND * sizeof *d->dense);
    d->labels = malloc((size_t)n * sizeof *d->labels);
    d->ids = malloc((size_t)n * NT * sizeof *d->ids);
    d->off = malloc((size_t)(B + 1) * sizeof *d->off);
    int64_t *ints = malloc((size_t)B * ND * sizeof *ints);
    uint32_t *sp = malloc((size_t)B * NT * sizeof *sp);
    int32_t *lab = malloc((size_t)B * sizeof *lab);
    ember_status st = EMBER_OK;
    if (!d->dense || !d->labels || !d->ids || !d->off || !ints || !sp || !lab)
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench plan: tiers: %lld rows", (long long)n);
    if (st == EMBER_OK) st = ember_freq_create(&(ember_freq_params){.num_tables = NT}, &d->counts);
    for (int64_t s = 0; st == EMBER_OK && s <= B; s++) d->off[s] = s;
    for (int64_t r0 = 0; st == EMBER_OK && r0 < n; r0 += B) {
        st = ember_gen_rows(g, r0, B, ints, NULL, sp, lab, NULL);
        int64_t *ids = d->ids + (size_t)r0 * NT;
        for (int64_t s = 0; st == EMBER_OK && s < B; s++) {
            for (int i = 0; i < ND; i++) {
                int64_t x = ints[s * ND + i];
                d->dense[(size_t)(r0 + s) * ND + (size_t)i] = x > 0 ? (float)log1p((double)x) : 0.0f;
            }
            d->labels[r0 + s] = (float)lab[s];
            for (int t = 0; t < NT; t++) ids[(size_t)t * (size_t)B + (size_t)s] = (int64_t)(sp[s * NT + t] % (uint64_t)d->rows[t]);
        }
        /* counts of the training rows only */
        for (int t = 0; st == EMBER_OK && r0 < d->ntrain && t < NT; t++)
            st = ember_freq_add(d->counts, t, ids + (size_t)t * (size_t)B, B);
    }
    free(ints), free(sp), free(lab);
    ember_gen_destroy(g);
    if (st != EMBER_OK) tier_data_free(d);
    return st;
}

typedef struct tier_run {
    double auc, logloss;
    ember_cache_stats cs; /* tiered runs */
} tier_run;

/* One epoch (train rows in order) and the held-out metrics; cache NULL: resident f32. */
static ember_status tier_train(const tier_data *d, const ember_cache_config *cache, uint64_t seed, tier_run *out) {
    const int64_t B = d->B;
    ember_dlrm_config cfg = {.num_dense = ND, .num_tables = NT, .table_rows = d->rows, .emb_dim = 16,
                             .bottom = {64, 16}, .top = {128, 64, 1}, .batch = B,
                             .sparse_optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}, .sparse_lr = TIERS_LR,
                             .seed = seed, .cache = cache};
    cfg.dense_optim = ember_optimizer_defaults(EMBER_OPTIM_ADAGRAD);
    cfg.dense_optim.lr = TIERS_LR;
    ember_dlrm *m = NULL;
    float *probs = malloc((size_t)d->neval * sizeof *probs);
    ember_status st = probs ? ember_dlrm_create(&cfg, &m) : ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench plan: tiers");
    /* the hottest rows into the device slots, ranked by their counts (STATIC) */
    if (st == EMBER_OK && cache) st = ember_cache_warmup_counts(ember_dlrm_cache(m), d->counts);
    ember_jagged_feature f[NT];
    ember_jagged jb = {.batch = B, .num_features = NT, .features = f};
    for (int64_t r0 = 0; st == EMBER_OK && r0 < d->ntrain + d->neval; r0 += B) {
        const int64_t *ids = d->ids + (size_t)r0 * NT;
        for (int t = 0; t < NT; t++)
            f[t] = (ember_jagged_feature){.values = ids + (size_t)t * (size_t)B, .offsets = d->off, .length = B};
        const float *dn = d->dense + (size_t)r0 * ND;
        if (r0 < d->ntrain) st = ember_dlrm_train_step(m, dn, &jb, d->labels + r0, NULL);
        else st = ember_dlrm_predict(m, dn, &jb, probs + (r0 - d->ntrain));
    }
    ember_metrics met = {0};
    if (st == EMBER_OK) st = ember_metrics_compute(probs, d->labels + d->ntrain, d->neval, &met);
    if (st == EMBER_OK) {
        out->auc = met.auc;
        out->logloss = met.logloss;
        memset(&out->cs, 0, sizeof out->cs);
        if (cache) st = ember_cache_get_stats(ember_dlrm_cache(m), &out->cs);
    }
    free(probs);
    ember_dlrm_destroy(m);
    return st;
}

static ember_status case_tiers(const ember_bench_opts *o) {
    tier_data d;
    double t0 = ember__now();
    EMBER_TRY(tier_data_make(o, &d));
    int seeds = o->tiny || o->quick ? 1 : TIERS_SEEDS;
    ember_cache_tiers ti = {.counts = d.counts, .hot = TIERS_HOT, .warm = TIERS_WARM,
                            .rounding = EMBER_CACHE_ROUNDING_STOCHASTIC, .seed = TIERS_ROUND_SEED};
    ember_cache_config cc = {.ratio = TIERS_RATIO, .min_slots = o->tiny ? d.B : TIERS_MIN_SLOTS,
                             .policy = EMBER_CACHE_POLICY_STATIC, .store = EMBER_CACHE_STORE_HOST, .tiers = &ti};
    double auc32 = 0, auct = 0, ll32 = 0, llt = 0;
    char per_seed[256] = "";
    size_t u = 0;
    tier_run r32, rt;
    ember_status st = EMBER_OK;
    for (int i = 0; i < seeds && st == EMBER_OK; i++) {
        st = tier_train(&d, NULL, (uint64_t)(i + 1), &r32);
        if (st == EMBER_OK) st = tier_train(&d, &cc, (uint64_t)(i + 1), &rt);
        if (st != EMBER_OK) break;
        auc32 += r32.auc / seeds;
        auct += rt.auc / seeds;
        ll32 += r32.logloss / seeds;
        llt += rt.logloss / seeds;
        if (u < sizeof per_seed)
            u += (size_t)snprintf(per_seed + u, sizeof per_seed - u, "%s%.5f", i ? "," : "", rt.auc - r32.auc);
    }
    if (st == EMBER_OK) {
        const ember_cache_stats *s = &rt.cs;
        double f32 = (double)s->store_f32_bytes, rows = 0;
        for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++) rows += (double)s->tier_rows[k];
        double saving = 1.0 - ((double)s->store_bytes + (double)s->slot_bytes) / f32;
        double saving_meta = 1.0 - ((double)s->store_bytes + (double)s->slot_bytes + (double)s->meta_bytes) / f32;
        char params[1536];
        snprintf(params, sizeof params,
                 "\"data\":\"ember gen-data --scale %g --seed 1\",\"train_rows\":%lld,\"eval_rows\":%lld,"
                 "\"rows_total\":%.0f,\"dim\":16,\"optim\":\"adagrad\",\"batch\":%lld,\"hot\":%.4f,\"warm\":%.4f,"
                 "\"cold\":%.4f,\"hot_target\":%g,\"warm_target\":%g,\"rounding\":\"stochastic\",\"slots_ratio\":%g,"
                 "\"min_slots\":%lld,\"policy\":\"static\",\"f32_mb\":%.3f,\"store_mb\":%.3f,\"hot_mb\":%.3f,"
                 "\"warm_mb\":%.3f,\"cold_mb\":%.3f,\"slots_mb\":%.3f,\"meta_mb\":%.3f,\"saving_with_meta\":%.4f,"
                 "\"auc_f32\":%.5f,\"auc_tiers\":%.5f,\"logloss_f32\":%.5f,\"logloss_tiers\":%.5f,\"seeds\":%d,"
                 "\"auc_delta_per_seed\":[%s],\"seconds\":%.2f",
                 o->tiny ? 0.001 : TIERS_SCALE, (long long)d.ntrain, (long long)d.neval, rows, (long long)d.B,
                 s->tier_rows[0] / rows, s->tier_rows[1] / rows, s->tier_rows[2] / rows, TIERS_HOT, TIERS_WARM,
                 TIERS_RATIO, (long long)cc.min_slots, f32 / 1e6, (double)s->store_bytes / 1e6,
                 (double)s->tier_bytes[0] / 1e6, (double)s->tier_bytes[1] / 1e6, (double)s->tier_bytes[2] / 1e6,
                 (double)s->slot_bytes / 1e6, (double)s->meta_bytes / 1e6, saving_meta, auc32, auct, ll32, llt, seeds,
                 per_seed, ember__now() - t0);
        ember_bench_emit(o, "plan", "tiers", "memory_saving", saving, "fraction", params);
        ember_bench_emit(o, "plan", "tiers", "auc_delta", auct - auc32, "AUC", params);
    }
    tier_data_free(&d);
    return st;
}

ember_status ember_bench_suite_plan(const ember_bench_opts *o) {
    EMBER_TRY(case_gen(o));
    EMBER_TRY(case_sample(o));
    return case_tiers(o);
}
