/*
 * The training job (ember/train.h): the config format, named errors before any work,
 * learning on a small synthetic set, and exact resume after SIGKILL — resident, through
 * the cache over the host store, through the cache over LMDB, and with the dense layers
 * offloaded under device-mem (ending on the bits of a run without offload or budget).
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ember/datasets.h"
#include "ember/train.h"

static char root[256];

static void small(ember_train_config *c, const char *name) {
    ember_train_config_defaults(c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s/data", root);
    c->rows = 12800;
    c->eval_rows = 4096;
    c->scale = 0.0005;
    c->emb_dim = 8;
    memcpy(c->bottom, (int64_t[EMBER_DLRM_MAX_LAYERS]){16, 8}, sizeof c->bottom);
    memcpy(c->top, (int64_t[EMBER_DLRM_MAX_LAYERS]){16, 1}, sizeof c->top);
    c->batch = 128;
    c->lr = 0.005f;
    c->sparse_lr = 0.1f;
    c->cache_ratio = 0.05;
    c->shuffle = 1000;
    c->threads = 2;
    if (name) snprintf(c->checkpoint_dir, sizeof c->checkpoint_dir, "%s/%s", root, name);
}

/* a written as text (returned; free it) and parsed back into b, which must equal a */
static char *roundtrip(const ember_train_config *a, ember_train_config *b) {
    size_t n = ember_train_config_format(a, NULL, 0);
    char *text = malloc(n + 1);
    ember_train_config_format(a, text, n + 1);
    memset(b, 0x5a, sizeof *b);
    ember_train_config_defaults(b);
    CHECK_OK(ember_train_config_parse(b, text, "roundtrip"));
    CHECK(memcmp(a, b, sizeof *a) == 0);
    return text;
}

static void test_config(void) {
    ember_train_config a, b;
    ember_train_config_defaults(&a);
    CHECK_EQ_INT(a.batch, 2048);
    CHECK(a.cache_ratio == 0.015);
    /* format -> parse round trip */
    ember_train_config_set(&a, "bottom", "32-16");
    ember_train_config_set(&a, "interaction", "dcn");
    ember_train_config_set(&a, "sparse-optimizer", "rowwise_adagrad");
    ember_train_config_set(&a, "lmdb", "/tmp/x y");
    char *text = roundtrip(&a, &b);
    CHECK_EQ_INT(b.sparse_optimizer, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD);
    CHECK_EQ_INT(b.bottom[1], 16);
    CHECK_EQ_INT(b.bottom[2], 0);
    free(text);
    /* named errors */
    CHECK_STATUS(ember_train_config_set(&a, "bacth", "1"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "unknown key 'bacth'") != NULL);
    CHECK_STATUS(ember_train_config_set(&a, "batch", "12x"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "batch = '12x'") != NULL);
    CHECK_STATUS(ember_train_config_set(&a, "batch", "0"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&a, "epochs", "1.5"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&a, "top", "64--1"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&a, "optimizer", "lamb"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&a, "resume", "maybe"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&a, "cache-ratio", "1.5"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_parse(&a, "# c\n\nbatch = 64\nepochs 3\n", "f.conf"), EMBER_ERR_PARSE);
    CHECK(strstr(ember_last_error(), "f.conf:4") != NULL);
    CHECK_STATUS(ember_train_config_parse(&a, "batch = 64   # comment\nnope = 1\n", "g.conf"),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "g.conf:2") != NULL && strstr(ember_last_error(), "'nope'") != NULL);
    CHECK_EQ_INT(a.batch, 64);
    CHECK_STATUS(ember_train_config_load(&a, "/nonexistent/x.conf"), EMBER_ERR_IO);
    CHECK(ember_train_config_is_flag("resume") && !ember_train_config_is_flag("batch"));
    /* combinations */
    ember_train_config_defaults(&a);
    ember_train_config_set(&a, "bottom", "64-32");
    CHECK_STATUS(ember_train_config_validate(&a), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "emb-dim") != NULL);
    ember_train_config_defaults(&a);
    ember_train_config_set(&a, "top", "64-2");
    CHECK_STATUS(ember_train_config_validate(&a), EMBER_ERR_INVALID_ARGUMENT);
    ember_train_config_defaults(&a);
    a.resume = 1;
    CHECK_STATUS(ember_train_config_validate(&a), EMBER_ERR_INVALID_ARGUMENT);
    ember_train_config_defaults(&a);
    ember_train_config_set(&a, "cache-ratio", "0");
    ember_train_config_set(&a, "lmdb", "/tmp/x");
    CHECK_STATUS(ember_train_config_validate(&a), EMBER_ERR_INVALID_ARGUMENT);
}

/* The keys of precision tiers and plan auto: round trip, ranges, combinations. */
static void test_config_tiers(void) {
    ember_train_config a, b;
    ember_train_config_defaults(&a);
    CHECK(a.tier_hot == 0 && a.tier_warm == 0 && a.tier_rounding == EMBER_CACHE_ROUNDING_STOCHASTIC);
    CHECK_EQ_INT(a.plan, EMBER_PLAN_TABLEWISE);
    CHECK_OK(ember_train_config_set(&a, "tier-hot", "0.05"));
    CHECK_OK(ember_train_config_set(&a, "tier-warm", "0.25"));
    CHECK_OK(ember_train_config_set(&a, "tier-rounding", "nearest"));
    CHECK_OK(ember_train_config_set(&a, "plan", "auto"));
    CHECK_OK(ember_train_config_set(&a, "warmup", "/tmp/counts.freq"));
    CHECK_EQ_INT(a.plan, EMBER_TRAIN_PLAN_AUTO);
    CHECK_EQ_INT(a.tier_rounding, EMBER_CACHE_ROUNDING_NEAREST);
    char *text = roundtrip(&a, &b);
    CHECK(strstr(text, "tier-hot = 0.05") && strstr(text, "tier-rounding = nearest") && strstr(text, "plan = auto"));
    free(text);
    CHECK_OK(ember_train_config_validate(&a));
    CHECK_OK(ember_train_config_set(&b, "plan", "rowwise"));
    CHECK_EQ_INT(b.plan, EMBER_PLAN_ROWWISE);
    CHECK_OK(ember_train_config_set(&b, "plan", "tablewise"));
    CHECK_EQ_INT(b.plan, EMBER_PLAN_TABLEWISE);
    CHECK_OK(ember_train_config_set(&b, "plan", "columnwise"));
    CHECK_EQ_INT(b.plan, EMBER_PLAN_COLUMNWISE);
    CHECK_OK(ember_train_config_set(&b, "plan", "minimax"));
    CHECK_EQ_INT(b.plan, EMBER_PLAN_MINIMAX);
    CHECK_STATUS(ember_train_config_set(&b, "plan", "hybrid"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "tablewise | rowwise | columnwise | minimax") != NULL);
    /* minimax places the hot rows by the warmup counts: without them a named error */
    ember_train_config_defaults(&b);
    b.plan = EMBER_PLAN_MINIMAX;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "plan minimax needs warmup COUNTS") != NULL);
    /* counts for the plan alone need no cache (minimax, auto), for nothing else they do */
    snprintf(b.warmup, sizeof b.warmup, "/tmp/counts.freq");
    b.cache_ratio = 0;
    CHECK_OK(ember_train_config_validate(&b));
    b.plan = EMBER_TRAIN_PLAN_AUTO;
    CHECK_OK(ember_train_config_validate(&b));
    b.plan = EMBER_PLAN_TABLEWISE;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "warmup needs the cache") != NULL);
    ember_train_config_set(&b, "plan", "minimax");
    size_t n = ember_train_config_format(&b, NULL, 0);
    text = malloc(n + 1);
    ember_train_config_format(&b, text, n + 1);
    CHECK(strstr(text, "plan = minimax") != NULL);
    free(text);
    ember_train_config_defaults(&b);
    CHECK_STATUS(ember_train_config_set(&b, "tier-hot", "1.5"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&b, "tier-warm", "-0.1"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&b, "tier-rounding", "up"), EMBER_ERR_INVALID_ARGUMENT);
    /* combinations: counts needed, the host store needed, fractions summing to at most 1 */
    ember_train_config_defaults(&b);
    b.tier_hot = 0.1;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "tier-hot needs warmup COUNTS (ember count -o FILE)") != NULL);
    b.tier_hot = 0;
    b.tier_warm = 0.1;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "tier-warm needs warmup") != NULL);
    snprintf(b.warmup, sizeof b.warmup, "/tmp/counts.freq");
    CHECK_OK(ember_train_config_validate(&b));
    b.tier_hot = 0.95;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    b.tier_hot = 0.1;
    snprintf(b.lmdb, sizeof b.lmdb, "/tmp/x");
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "lmdb") != NULL);
    b.lmdb[0] = '\0';
    b.cache_ratio = 0;
    b.warmup[0] = '\0';
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "cache") != NULL);
}

/* The offload keys: round trip, the values, and offload without device-mem. */
static void test_config_offload(void) {
    ember_train_config a, b;
    ember_train_config_defaults(&a);
    CHECK_EQ_INT(a.offload, EMBER_TRAIN_OFFLOAD_NONE);
    CHECK(a.offload_param_host == 0.5 && a.offload_state_host == 1);
    CHECK_OK(ember_train_config_set(&a, "offload", "static"));
    CHECK_OK(ember_train_config_set(&a, "offload-param-host", "0.25"));
    CHECK_OK(ember_train_config_set(&a, "offload-state-host", "0.75"));
    CHECK_OK(ember_train_config_set(&a, "device-mem", "1000000"));
    CHECK_EQ_INT(a.offload, EMBER_TRAIN_OFFLOAD_STATIC);
    char *text = roundtrip(&a, &b);
    CHECK(strstr(text, "offload = static\n") && strstr(text, "offload-param-host = 0.25\n"));
    free(text);
    CHECK_OK(ember_train_config_validate(&a));
    CHECK_OK(ember_train_config_set(&b, "offload", "auto"));
    CHECK_EQ_INT(b.offload, EMBER_TRAIN_OFFLOAD_AUTO);
    CHECK_OK(ember_train_config_set(&b, "offload", "none"));
    CHECK_EQ_INT(b.offload, EMBER_TRAIN_OFFLOAD_NONE);
    /* named errors */
    CHECK_STATUS(ember_train_config_set(&b, "offload", "naive"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "offload = 'naive'") != NULL);
    CHECK_STATUS(ember_train_config_set(&b, "offload-param-host", "1.5"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "offload-param-host = '1.5': out of range") != NULL);
    CHECK_STATUS(ember_train_config_set(&b, "offload-state-host", "-1"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_parse(&b, "offload = yes\n", "o.conf"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "o.conf:1") != NULL);
    /* device-mem in bytes or with a unit, as `ember plan --device-mem` takes it */
    static const struct {
        const char *text;
        int64_t bytes;
    } sizes[] = {{"3000000", 3000000},       {"2GiB", 2147483648LL}, {"512MiB", 512LL << 20}, {"16G", 16LL << 30},
                 {"3GB", 3000000000LL},      {"1.5k", 1536},         {"3e6", 3000000},        {"0", 0}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        CHECK_OK(ember_train_config_set(&b, "device-mem", sizes[i].text));
        CHECK_EQ_INT(b.device_mem, sizes[i].bytes);
    }
    CHECK_STATUS(ember_train_config_set(&b, "device-mem", "2GiBs"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "device-mem = '2GiBs': not a size") != NULL);
    CHECK_STATUS(ember_train_config_set(&b, "device-mem", "12x"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_train_config_set(&b, "device-mem", "-1MiB"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "out of range") != NULL);
    CHECK_STATUS(ember_train_config_set(&b, "device-mem", "MiB"), EMBER_ERR_INVALID_ARGUMENT);
    /* offload without a budget: named, also by the trainer before any work */
    ember_train_config_defaults(&b);
    b.offload = EMBER_TRAIN_OFFLOAD_AUTO;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "config: offload = auto needs device-mem") != NULL);
    ember_trainer *t = (ember_trainer *)1;
    CHECK_STATUS(ember_trainer_create(&b, NULL, NULL, &t), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(t == NULL);
    b.device_mem = 1 << 20;
    CHECK_OK(ember_train_config_validate(&b));
    b.offload = EMBER_TRAIN_OFFLOAD_COUNT;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    b.offload = EMBER_TRAIN_OFFLOAD_STATIC;
    b.offload_state_host = 2;
    CHECK_STATUS(ember_train_config_validate(&b), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "offload-state-host 2") != NULL);
}

/* Counts of the synthetic training rows of config c (generated by a trainer first), ids
   reduced modulo the table rows as the trainer reduces them, saved to path. */
static void count_synthetic(const ember_train_config *c, const char *path) {
    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(c, NULL, NULL, &t)); /* generates the data once */
    ember_trainer_destroy(t);
    ember_gen *g = NULL;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = c->seed, .scale = c->scale}, &g));
    if (!g) return;
    int64_t rows[EMBER_CRITEO_NUM_SPARSE];
    for (int k = 0; k < EMBER_CRITEO_NUM_SPARSE; k++) rows[k] = ember_gen_cardinality(g, k);
    ember_gen_destroy(g);
    char prefix[EMBER_TRAIN_PATH_MAX + 128];
    snprintf(prefix, sizeof prefix, "%s/synthetic-r%lld-s%g-seed%llu", c->data_dir,
             (long long)(c->rows + c->eval_rows), c->scale, (unsigned long long)c->seed);
    const char *paths[1] = {prefix};
    ember_loader *l = NULL;
    CHECK_OK(ember_loader_create(&(ember_loader_params){.paths = paths, .num_paths = 1, .batch_size = 1024,
                                                        .table_rows = rows, .row_end = c->rows},
                                 &l));
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = EMBER_CRITEO_NUM_SPARSE}, &f));
    const ember_batch *b;
    int64_t counted = 0;
    while (l && f && ember_loader_next(l, &b) == EMBER_OK && b) {
        for (int k = 0; k < EMBER_CRITEO_NUM_SPARSE; k++)
            CHECK_OK(ember_freq_add(f, k, b->values[k], b->offsets[k][b->size]));
        counted += b->size;
    }
    CHECK_EQ_INT(counted, c->rows);
    if (f) CHECK_OK(ember_freq_save(f, path));
    ember_freq_destroy(f);
    ember_loader_destroy(l);
}

/* Training with precision tiers over the host store: ranked by counts of the training
   data, the store is smaller than f32 records, training still learns; and the report
   says so. Without counts, a named error before any work. */
static void test_tiers(void) {
    ember_train_config c;
    small(&c, NULL);
    c.epochs = 2;
    char counts[EMBER_TRAIN_PATH_MAX];
    snprintf(counts, sizeof counts, "%s/counts.freq", root);
    count_synthetic(&c, counts);
    ember_train_config_set(&c, "tier-hot", "0.05");
    ember_train_config_set(&c, "tier-warm", "0.2");
    ember_trainer *t = (ember_trainer *)1;
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(t == NULL);
    CHECK(strstr(ember_last_error(), "tier-hot needs warmup COUNTS") != NULL);
    snprintf(c.warmup, sizeof c.warmup, "%s", counts);
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (!t) return;
    CHECK_OK(ember_trainer_run(t, NULL, NULL));
    ember_train_report r;
    CHECK_OK(ember_trainer_report(t, &r));
    fprintf(stderr, "tiers: AUC %.4f (Bayes %.4f), store %lld bytes vs %lld as f32, rows hot %lld warm %lld cold %lld\n",
            r.eval.auc, r.bayes_auc, (long long)r.cache.store_bytes, (long long)r.cache.store_f32_bytes,
            (long long)r.cache.tier_rows[EMBER_CACHE_TIER_HOT], (long long)r.cache.tier_rows[EMBER_CACHE_TIER_WARM],
            (long long)r.cache.tier_rows[EMBER_CACHE_TIER_COLD]);
    CHECK(r.cached && r.evaluated);
    CHECK(r.cache.store_bytes > 0 && r.cache.store_bytes < r.cache.store_f32_bytes);
    CHECK(r.cache.tier_rows[EMBER_CACHE_TIER_HOT] > 0 && r.cache.tier_rows[EMBER_CACHE_TIER_WARM] > 0 &&
          r.cache.tier_rows[EMBER_CACHE_TIER_COLD] > r.cache.tier_rows[EMBER_CACHE_TIER_WARM]);
    CHECK(r.eval.auc > 0.6 && r.bayes_auc - r.eval.auc < 0.1);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ember_train_report_print(&r, &c, f);
    fclose(f);
    CHECK(text && strstr(text, "  tiers        host store ") && strstr(text, "as f32"));
    free(text);
    ember_trainer_destroy(t);
    /* a counts file that is not one: the error names it */
    snprintf(c.warmup, sizeof c.warmup, "%s/missing.freq", root);
    CHECK(ember_trainer_create(&c, NULL, NULL, &t) != EMBER_OK);
}

static void test_bad_paths(void) {
    ember_train_config c;
    ember_trainer *t = (ember_trainer *)1;
    small(&c, NULL);
    snprintf(c.data, sizeof c.data, "%s/missing.tsv", root);
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_NOT_FOUND);
    CHECK(t == NULL);
    CHECK(strstr(ember_last_error(), "missing.tsv") != NULL);
    small(&c, "none");
    c.resume = 1;
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_NOT_FOUND);
    small(&c, NULL);
    snprintf(c.metrics, sizeof c.metrics, "%s/no/such/dir/m.jsonl", root);
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_IO);
    /* eval/predict on a directory without a complete checkpoint */
    ember_train_config from;
    CHECK_STATUS(ember_train_checkpoint_config(root, &from), EMBER_ERR_NOT_FOUND);
    /* a MANIFEST that lacks the loader position: named, before any tensor is read */
    small(&c, "torn");
    char dir[EMBER_TRAIN_PATH_MAX + 16], path[EMBER_TRAIN_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/ckpt-5", c.checkpoint_dir);
    CHECK(mkdir(c.checkpoint_dir, 0755) == 0 && mkdir(dir, 0755) == 0);
    size_t n = ember_train_config_format(&c, NULL, 0);
    char *text = malloc(n + 1);
    ember_train_config_format(&c, text, n + 1);
    snprintf(path, sizeof path, "%s/train.conf", dir);
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
    free(text);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    f = fopen(path, "w");
    if (f) fputs("# ember training checkpoint\nformat = 1\nstep = 5\nepoch = 0\n", f), fclose(f);
    CHECK_OK(ember_train_checkpoint_config(c.checkpoint_dir, &from));
    CHECK_EQ_INT(from.batch, c.batch);
    c.resume = 1;
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "'position'") != NULL);
}

/* Lines of a --metrics file (-1 when it cannot be read), and in *with those that
   contain `needle`. */
static int metrics_lines(const char *path, const char *needle, int *with) {
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return -1;
    int lines = 0;
    char line[512];
    *with = 0;
    while (fgets(line, sizeof line, f)) lines++, *with += strstr(line, needle) != NULL;
    fclose(f);
    return lines;
}

/* Learning: a few epochs' worth of a small synthetic set get within 0.02 of the Bayes AUC. */
static void test_learns(void) {
    ember_train_config c;
    small(&c, NULL);
    c.rows = 100000;
    c.eval_rows = 20000;
    c.scale = 0.001;
    c.emb_dim = 16;
    memcpy(c.bottom, (int64_t[EMBER_DLRM_MAX_LAYERS]){64, 16}, sizeof c.bottom);
    memcpy(c.top, (int64_t[EMBER_DLRM_MAX_LAYERS]){64, 1}, sizeof c.top);
    c.batch = 256;
    c.epochs = 2;
    snprintf(c.metrics, sizeof c.metrics, "%s/learn.jsonl", root);
    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (!t) return;
    CHECK_OK(ember_trainer_run(t, NULL, NULL));
    ember_train_report r;
    CHECK_OK(ember_trainer_report(t, &r));
    fprintf(stderr, "learning: AUC %.4f, Bayes %.4f, hit rate %.3f\n", r.eval.auc, r.bayes_auc, r.cache.hit_rate);
    CHECK(r.evaluated);
    CHECK(r.bayes_auc > 0.6);
    CHECK(r.bayes_auc - r.eval.auc < 0.02);
    CHECK_EQ_INT(r.steps, 2 * (100000 / 256));
    CHECK(r.cached && r.cache.lookups > 0);
    ember_metrics m;
    CHECK_OK(ember_trainer_evaluate(t, NULL, &m)); /* the same held-out rows again */
    CHECK(m.auc == r.eval.auc && m.samples == 20000);
    ember_trainer_destroy(t);
    int aucs = 0, lines = metrics_lines(c.metrics, "\"auc\"", &aucs);
    CHECK(lines > 10);
    CHECK_EQ_INT(aucs, 1);
}

/* matmul-precision bf16: the same small job trained with f32 and with bf16 products
   (layers wide enough to pass the bf16 threshold) reaches the same AUC within 0.005,
   and the key round-trips; where the CPU cannot, the key is refused by name. */
static void test_learns_bf16(void) {
    ember_train_config c;
    small(&c, NULL);
    CHECK_STATUS(ember_train_config_set(&c, "matmul-precision", "fp16"), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "matmul-precision") != NULL);
    ember_features f;
    ember_get_features(&f);
    CHECK_OK(ember_train_config_set(&c, "matmul-precision", "bf16"));
    if (!f.bf16_matmul) {
        CHECK_STATUS(ember_train_config_validate(&c), EMBER_ERR_UNSUPPORTED);
        CHECK(strstr(ember_last_error(), "matmul-precision bf16") != NULL);
        fprintf(stderr, "learning with bf16 matmuls: not available here, refusal checked\n");
        return;
    }
    double auc[2] = {0, 0}, bayes = 0;
    for (int bf = 0; bf < 2; bf++) {
        small(&c, NULL);
        c.rows = 100000;
        c.eval_rows = 20000;
        c.scale = 0.001;
        c.emb_dim = 16;
        memcpy(c.bottom, (int64_t[EMBER_DLRM_MAX_LAYERS]){256, 16}, sizeof c.bottom);
        memcpy(c.top, (int64_t[EMBER_DLRM_MAX_LAYERS]){512, 256, 1}, sizeof c.top);
        c.batch = 1024;
        c.epochs = 1;
        c.matmul_precision = bf ? EMBER_MATMUL_BF16 : EMBER_MATMUL_F32;
        ember_trainer *t = NULL;
        CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
        if (!t) return;
        CHECK(ember_get_matmul_precision() == c.matmul_precision);
        CHECK_OK(ember_trainer_run(t, NULL, NULL));
        ember_train_report r;
        CHECK_OK(ember_trainer_report(t, &r));
        auc[bf] = r.eval.auc;
        bayes = r.bayes_auc;
        ember_trainer_destroy(t);
    }
    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
    fprintf(stderr, "learning with bf16 matmuls: AUC %.4f (f32 %.4f), Bayes %.4f\n", auc[1], auc[0], bayes);
    CHECK(fabs(auc[1] - auc[0]) < 0.005);
    CHECK(bayes - auc[1] < 0.02);
}

/* The real Criteo sample (900 rows, 10% held out by hash): training runs and its loss falls. */
static void test_real_sample(void) {
    const char *dir = getenv("EMBER_TEST_DATA");
    ember_train_config c;
    small(&c, NULL);
    snprintf(c.data, sizeof c.data, "%s/criteo_kaggle_head900.tsv", dir ? dir : "tests/data");
    snprintf(c.metrics, sizeof c.metrics, "%s/real.jsonl", root);
    c.scale = 0.001;
    c.batch = 32;
    c.epochs = 8;
    c.metrics_every = 25; /* about an epoch */
    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (!t) return;
    CHECK_OK(ember_trainer_run(t, NULL, NULL));
    ember_train_report r;
    CHECK_OK(ember_trainer_report(t, &r));
    CHECK(r.evaluated && r.eval.samples > 50 && r.eval.samples < 150);
    CHECK(r.steps >= 8 * 20);
    ember_trainer_destroy(t);
    FILE *f = fopen(c.metrics, "r");
    double first = -1, last = -1, l;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss\":");
        if (p && sscanf(p + 7, "%lf", &l) == 1) {
            if (first < 0) first = l;
            last = l;
        }
    }
    if (f) fclose(f);
    fprintf(stderr, "real sample: loss %.4f -> %.4f, held-out AUC %.3f\n", first, last, r.eval.auc);
    CHECK(first > 0 && last > 0 && last < first);
}

/* Everything the model learned, dense and sparse, in one buffer. */
static float *snapshot(ember_trainer *t, size_t *n) {
    ember_dlrm *m = ember_trainer_model(t);
    size_t total = 0, at = 0;
    for (int k = 0; k < 26; k++)
        total += (size_t)(ember_dlrm_table_rows(m, k) * (ember_dlrm_table_dim(m, k) + ember_dlrm_state_floats(m, k)));
    ember_graph *g = ember_dlrm_graph(m);
    int nodes = ember_graph_node_count(g);
    for (int i = 0; i < nodes; i++) {
        ember_node_info info;
        ember_graph_node_info(g, i, &info);
        if (strcmp(info.op, "param") == 0) total += info.out_bytes / 4;
    }
    float *v = malloc(total * sizeof *v);
    for (int k = 0; k < 26; k++) {
        int64_t rows = ember_dlrm_table_rows(m, k), d = ember_dlrm_table_dim(m, k), s = ember_dlrm_state_floats(m, k);
        CHECK_OK(ember_dlrm_read_table(m, k, 0, rows, v + at, s ? v + at + rows * d : NULL));
        at += (size_t)(rows * (d + s));
    }
    for (int i = 0; i < nodes; i++) {
        ember_node_info info;
        ember_node *node;
        ember_tensor *val;
        ember_graph_node_info(g, i, &info);
        if (strcmp(info.op, "param") != 0) continue;
        CHECK_OK(ember_graph_find(g, info.name, &node));
        CHECK_OK(ember_node_value(node, &val));
        memcpy(v + at, ember_tensor_data(val), info.out_bytes);
        at += info.out_bytes / 4;
    }
    *n = total;
    return v;
}

static int kill_at_13(const ember_train_progress *p, void *user) {
    (void)user;
    if (p->step == 13) raise(SIGKILL);
    return 0;
}

static void run_to_end(ember_train_config *c, float **w, size_t *n) {
    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(c, NULL, NULL, &t));
    if (!t) return;
    CHECK_OK(ember_trainer_run(t, NULL, NULL));
    *w = snapshot(t, n);
    ember_trainer_destroy(t);
}

/* The dense tower of the offload tests: top MLP 359 -> 128 x 5 -> 1, 1.3 MiB of parameters,
   gradients and Adagrad state in one chunk of each kind. Beside the cache's slots and
   buffers and the activations (about 1.9 MB once the cache's ring of batches is full),
   2.6 MB holds a parameter and a gradient chunk, not the state: the parameters and the
   gradients move every step. 2 MB does not even hold the tower as tensors of its own. */
#define OFFLOAD_DEVICE_MEM 2600000
#define TOO_SMALL_DEVICE_MEM 2000000
static void offload_tower(ember_train_config *c) {
    memcpy(c->bottom, (int64_t[EMBER_DLRM_MAX_LAYERS]){64, 8}, sizeof c->bottom);
    memcpy(c->top, (int64_t[EMBER_DLRM_MAX_LAYERS]){128, 128, 128, 128, 128, 1}, sizeof c->top);
}

/* offload: 0 the small model; 1 the offload tower without offload or budget; 2 the tower
   with offload = auto under OFFLOAD_DEVICE_MEM. */
static void resume_config(ember_train_config *c, const char *name, double ratio, int lmdb, int offload) {
    small(c, name);
    c->cache_ratio = ratio;
    c->epochs = 2;
    c->checkpoint_every = 5;
    c->sparse_optimizer = EMBER_SPARSE_OPTIM_ADAM;
    if (lmdb) snprintf(c->lmdb, sizeof c->lmdb, "%s/%s-lmdb", root, name);
    if (offload) offload_tower(c);
    if (offload == 2) {
        c->offload = EMBER_TRAIN_OFFLOAD_AUTO;
        c->device_mem = OFFLOAD_DEVICE_MEM;
    }
}

/* The child of test_resume: train until the callback kills the process at step 13. */
static int killed_run(char **argv) {
    ember_train_config c;
    snprintf(root, sizeof root, "%s", argv[2]);
    resume_config(&c, argv[3], atof(argv[4]), atoi(argv[5]), atoi(argv[6]));
    ember_trainer *t = NULL;
    if (ember_trainer_create(&c, NULL, NULL, &t) == EMBER_OK) ember_trainer_run(t, kill_at_13, NULL);
    fprintf(stderr, "killed run: %s\n", ember_last_error());
    return 3; /* not reached */
}

/* What the report of an offload = auto run under OFFLOAD_DEVICE_MEM says. */
static void offload_report(const ember_train_report *r, const ember_train_config *c) {
    CHECK(r->offloaded);
    CHECK_EQ_INT(r->offload.policy, EMBER_OFFLOAD_AUTO);
    CHECK_EQ_INT(r->offload.device_budget, OFFLOAD_DEVICE_MEM);
    CHECK(r->offload.model_bytes > 0 && r->offload.h2d_bytes > 0 && r->offload.d2h_bytes > 0);
    CHECK(r->memory.peak_total[EMBER_TIER_DEVICE] > 0);
    CHECK(r->memory.peak_total[EMBER_TIER_DEVICE] <= OFFLOAD_DEVICE_MEM);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ember_train_report_print(r, c, f);
    fclose(f);
    CHECK(text && strstr(text, "  offload      auto: dense parameters, gradients and optimizer state ") &&
          strstr(text, " MB host->device, "));
    if (text) fprintf(stderr, "%s", text);
    free(text);
}

/* The tower does not fit device-mem as tensors of its own: a named out-of-memory error that
   points at offload; with offload = static it trains, and the metrics count the bytes moved. */
static void test_offload_budget(void) {
    ember_train_config c;
    small(&c, NULL);
    offload_tower(&c);
    c.device_mem = TOO_SMALL_DEVICE_MEM;
    ember_trainer *t = (ember_trainer *)1;
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(t == NULL);
    CHECK(strstr(ember_last_error(), "device-mem 2000000 B does not hold the model: device tier") != NULL);
    CHECK(strstr(ember_last_error(), "offload = auto or static") != NULL);
    c.device_mem = OFFLOAD_DEVICE_MEM;
    CHECK_OK(ember_train_config_set(&c, "offload", "static"));
    CHECK_OK(ember_train_config_set(&c, "offload-param-host", "1"));
    c.max_steps = 10;
    c.metrics_every = 5;
    snprintf(c.metrics, sizeof c.metrics, "%s/offload.jsonl", root);
    t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (!t) return;
    CHECK_OK(ember_trainer_run(t, NULL, NULL));
    ember_train_report r;
    CHECK_OK(ember_trainer_report(t, &r));
    CHECK(r.offloaded && r.offload.policy == EMBER_OFFLOAD_STATIC && r.offload.iterations == 10);
    CHECK(r.memory.peak_total[EMBER_TIER_DEVICE] <= OFFLOAD_DEVICE_MEM);
    ember_trainer_destroy(t);
    int moved = 0, lines = metrics_lines(c.metrics, "\"offload_h2d_bytes\":", &moved);
    CHECK_EQ_INT(moved, 2); /* steps 5 and 10; the evaluation line has none */
    CHECK_EQ_INT(lines, 3);
}

/* Killed with SIGKILL between checkpoints, resumed: the same bits as never stopping. With
   offload the killed and the resumed run keep the dense tower in the offload manager's
   chunks under device-mem, the uninterrupted one has neither offload nor budget. */
static void test_resume(const char *name, double ratio, int lmdb, int offload) {
    ember_train_config c;
    char ref_name[64];
    snprintf(ref_name, sizeof ref_name, "%s-ref", name);
    resume_config(&c, ref_name, ratio, lmdb, offload ? 1 : 0); /* 100 steps an epoch, 2 epochs; Adam counts steps */
    float *want = NULL, *got = NULL;
    size_t nw = 0, ng = 0;
    run_to_end(&c, &want, &nw);

    resume_config(&c, name, ratio, lmdb, offload ? 2 : 0);
    /* A fresh process (fork alone would inherit thread pools without their threads). */
    fflush(NULL);
    char ratio_s[32], lmdb_s[4], offload_s[4];
    snprintf(ratio_s, sizeof ratio_s, "%g", ratio);
    snprintf(lmdb_s, sizeof lmdb_s, "%d", lmdb);
    snprintf(offload_s, sizeof offload_s, "%d", offload ? 2 : 0);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_train", "--killed-run", root, name, ratio_s, lmdb_s, offload_s, (char *)NULL);
        _exit(3);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    c.resume = 1;
    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (t) {
        ember_train_report r;
        CHECK_OK(ember_trainer_run(t, NULL, NULL));
        CHECK_OK(ember_trainer_report(t, &r));
        CHECK_EQ_INT(r.resumed_from, 10);
        CHECK_EQ_INT(r.total_steps, 200);
        CHECK_EQ_INT(r.steps, 190);
        CHECK_EQ_INT(r.offloaded, offload != 0);
        if (offload) offload_report(&r, &c);
        got = snapshot(t, &ng);
        ember_trainer_destroy(t);
    }
    CHECK_EQ_INT((int64_t)nw, (int64_t)ng);
    if (want && got && nw == ng) {
        size_t diff = 0;
        for (size_t i = 0; i < nw; i++) diff += memcmp(&want[i], &got[i], sizeof *got) != 0;
        if (diff) fprintf(stderr, "%s: %zu of %zu values differ after the resume\n", name, diff, nw);
        CHECK(diff == 0);
    }
    /* resuming with another model is refused before any work */
    c.batch = 64;
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "batch") != NULL);
    free(want);
    free(got);
}

int main(int argc, char **argv) {
    if (argc == 7 && strcmp(argv[1], "--killed-run") == 0) return killed_run(argv);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(root, sizeof root, "%s/ember-test-train-XXXXXX", base);
    if (!mkdtemp(root)) {
        CHECK(0);
        return check_summary();
    }
    test_config();
    test_config_tiers();
    test_config_offload();
    test_bad_paths();
    test_tiers();
    test_learns();
    test_learns_bf16();
    test_real_sample();
    test_resume("resident", 0, 0, 0);
    test_resume("host", 0.05, 0, 0);
    test_resume("lmdb", 0.05, 1, 0);
    test_offload_budget();
    test_resume("offload", 0.05, 0, 1);
    if (!check__failed) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    return check_summary();
}
