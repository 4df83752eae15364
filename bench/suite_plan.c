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
 * Deterministic: no timing loop, the numbers depend only on the data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "ember/partition.h"
#include "engine/internal.h"

#define NT EMBER_CRITEO_NUM_SPARSE
#define SAMPLE "criteo_kaggle_head900.tsv"

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

ember_status ember_bench_suite_plan(const ember_bench_opts *o) {
    EMBER_TRY(case_gen(o));
    return case_sample(o);
}
