/*
 * ember train: DLRM on Criteo-format data. With no data given it runs the embedded
 * default: a synthetic Criteo-like set with a known Bayes-optimal AUC, generated once
 * into a data directory it prints, one epoch of training, evaluation on held-out rows
 * of the same stream, and a short report. Progress goes to stderr (a bar on a
 * terminal), the report to stdout, per-step metrics to --metrics as JSON lines.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ember/datasets.h"
#include "ember/dlrm.h"
#include "ember/ember.h"
#include "tools/cli.h"

typedef struct train_opts {
    const char *data;     /* npy triplet prefix or TSV file; NULL: synthetic */
    const char *data_dir; /* where synthetic data is generated */
    const char *metrics;
    int64_t rows, eval_rows, batch;
    double scale;
    int epochs, emb_dim;
    float lr;
    uint64_t seed;
    int64_t bottom[EMBER_DLRM_MAX_LAYERS], top[EMBER_DLRM_MAX_LAYERS];
    ember_optim_kind optim;
} train_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_layers(const char *s, int64_t *out) {
    int n = 0;
    memset(out, 0, EMBER_DLRM_MAX_LAYERS * sizeof *out);
    while (*s && n < EMBER_DLRM_MAX_LAYERS) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 1) return -1;
        out[n++] = v;
        if (*end == '-') s = end + 1;
        else if (*end) return -1;
        else s = end;
    }
    return *s ? -1 : n;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: ember train [options]\n"
            "  --data PATH         npy triplet prefix (PATH_dense.npy ...) or Criteo TSV; default: synthetic\n"
            "  --data-dir DIR      where synthetic data is generated (default $EMBER_DATA_DIR or ./ember-data)\n"
            "  --rows N            synthetic training rows (default 2000000)\n"
            "  --eval-rows N       held-out rows for evaluation (default 200000)\n"
            "  --scale S           synthetic cardinalities: Kaggle's times S (default 0.05)\n"
            "  --batch B           samples per step (default 2048)\n"
            "  --epochs E          (default 1)\n"
            "  --lr LR             learning rate, dense and sparse (default 0.05)\n"
            "  --optimizer NAME    adagrad (default), sgd, adam\n"
            "  --emb-dim D         (default 64)\n"
            "  --bottom 512-256-64 --top 1024-1024-512-256-1   MLP sizes\n"
            "  --seed S            (default 1)\n"
            "  --metrics FILE      JSON lines per step: step, loss, samples/s\n");
}

static int parse(int argc, char **argv, train_opts *o) {
    *o = (train_opts){.rows = 2000000, .eval_rows = 200000, .batch = 2048, .scale = 0.05, .epochs = 1,
                      .emb_dim = 64, .lr = 0.05f, .seed = 1, .optim = EMBER_OPTIM_ADAGRAD};
    o->data_dir = getenv("EMBER_DATA_DIR") ? getenv("EMBER_DATA_DIR") : "ember-data";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                              \
    do {                                                                    \
        if (!v) {                                                           \
            fprintf(stderr, "ember train: %s needs a value\n", a);          \
            return 2;                                                       \
        }                                                                   \
        i++;                                                                \
    } while (0)
        if (strcmp(a, "--data") == 0) { NEED(); o->data = v; }
        else if (strcmp(a, "--data-dir") == 0) { NEED(); o->data_dir = v; }
        else if (strcmp(a, "--metrics") == 0) { NEED(); o->metrics = v; }
        else if (strcmp(a, "--rows") == 0) { NEED(); o->rows = atoll(v); }
        else if (strcmp(a, "--eval-rows") == 0) { NEED(); o->eval_rows = atoll(v); }
        else if (strcmp(a, "--batch") == 0) { NEED(); o->batch = atoll(v); }
        else if (strcmp(a, "--scale") == 0) { NEED(); o->scale = atof(v); }
        else if (strcmp(a, "--epochs") == 0) { NEED(); o->epochs = atoi(v); }
        else if (strcmp(a, "--lr") == 0) { NEED(); o->lr = (float)atof(v); }
        else if (strcmp(a, "--emb-dim") == 0) { NEED(); o->emb_dim = atoi(v); }
        else if (strcmp(a, "--seed") == 0) { NEED(); o->seed = strtoull(v, NULL, 10); }
        else if (strcmp(a, "--bottom") == 0) {
            NEED();
            if (parse_layers(v, o->bottom) < 1) { fprintf(stderr, "ember train: --bottom takes sizes like 512-256-64\n"); return 2; }
        } else if (strcmp(a, "--top") == 0) {
            NEED();
            if (parse_layers(v, o->top) < 1) { fprintf(stderr, "ember train: --top takes sizes like 1024-512-1\n"); return 2; }
        } else if (strcmp(a, "--optimizer") == 0) {
            NEED();
            if (strcmp(v, "adagrad") == 0) o->optim = EMBER_OPTIM_ADAGRAD;
            else if (strcmp(v, "sgd") == 0) o->optim = EMBER_OPTIM_SGD;
            else if (strcmp(v, "adam") == 0) o->optim = EMBER_OPTIM_ADAM;
            else { fprintf(stderr, "ember train: --optimizer adagrad|sgd|adam, not '%s'\n", v); return 2; }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "ember train: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef NEED
    }
    if (o->rows < 1 || o->eval_rows < 1 || o->batch < 1 || o->epochs < 1 || o->emb_dim < 1 || !(o->lr > 0) ||
        !(o->scale > 0)) {
        fprintf(stderr, "ember train: rows, eval rows, batch, epochs, emb-dim, lr and scale must be positive\n");
        return 2;
    }
    return 0;
}

static void progress(int64_t step, int64_t steps, double rate, float loss, double eta) {
    if (!isatty(STDERR_FILENO)) return;
    int width = 30, done = steps ? (int)(width * step / steps) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] step %lld/%lld  %.0f samples/s  loss %.4f  ETA %.0fs ", bar, (long long)step,
            (long long)steps, rate, loss, eta);
}

/* Held-out rows of the synthetic stream, in the loader's layout. */
static ember_status eval_synthetic(ember_dlrm *m, const ember_gen *gen, const train_opts *o, const int64_t *rows,
                                   ember_metrics *out) {
    int64_t n = o->eval_rows / o->batch * o->batch, B = o->batch;
    if (n == 0) n = B;
    float *probs = malloc((size_t)n * sizeof *probs), *labels = malloc((size_t)n * sizeof *labels);
    float *dense = malloc((size_t)B * 13 * sizeof *dense);
    int64_t *ints = malloc((size_t)B * 13 * sizeof *ints), *ids = malloc((size_t)B * 26 * sizeof *ids);
    int64_t *offs = malloc((size_t)(B + 1) * sizeof *offs);
    uint32_t *sparse = malloc((size_t)B * 26 * sizeof *sparse);
    int32_t *lab = malloc((size_t)B * sizeof *lab);
    ember_status st = probs && labels && dense && ints && ids && offs && sparse && lab
                          ? EMBER_OK
                          : EMBER_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i <= B; i++) offs[i] = i;
    for (int64_t first = 0; st == EMBER_OK && first < n; first += B) {
        st = ember_gen_rows(gen, o->rows + first, B, ints, NULL, sparse, lab, NULL);
        ember_jagged_feature f[26];
        for (int t = 0; t < 26 && st == EMBER_OK; t++) {
            for (int64_t r = 0; r < B; r++) ids[t * B + r] = (int64_t)(sparse[r * 26 + t] % (uint32_t)rows[t]);
            f[t] = (ember_jagged_feature){.values = ids + t * B, .offsets = offs, .length = B};
        }
        for (int64_t k = 0; k < B * 13; k++) dense[k] = (float)log1p(ints[k] > 0 ? (double)ints[k] : 0.0);
        for (int64_t r = 0; r < B; r++) labels[first + r] = (float)lab[r];
        ember_jagged batch = {.batch = B, .num_features = 26, .features = f};
        if (st == EMBER_OK) st = ember_dlrm_predict(m, dense, &batch, probs + first);
    }
    if (st == EMBER_OK) st = ember_metrics_compute(probs, labels, n, out);
    free(probs), free(labels), free(dense), free(ints), free(ids), free(offs), free(sparse), free(lab);
    return st;
}

int ember_cmd_train(int argc, char **argv) {
    train_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    ember_gen *gen = NULL;
    ember_dlrm *m = NULL;
    ember_loader *loader = NULL;
    FILE *mf = NULL;
    char prefix[4096];
    int64_t rows[26];
    double bayes = NAN;
    ember_status st = EMBER_OK;
    if (!o.data) {
        st = ember_gen_create(&(ember_gen_params){.seed = o.seed, .scale = o.scale}, &gen);
        mkdir(o.data_dir, 0755);
        snprintf(prefix, sizeof prefix, "%s/synthetic-r%lld-s%g-seed%llu", o.data_dir, (long long)o.rows, o.scale,
                 (unsigned long long)o.seed);
        char probe[4200];
        snprintf(probe, sizeof probe, "%s_labels.npy", prefix);
        if (st == EMBER_OK && access(probe, R_OK) != 0) {
            fprintf(stderr, "ember train: generating %lld synthetic rows into %s_*.npy\n", (long long)o.rows, prefix);
            st = ember_gen_write(gen, &(ember_gen_write_params){.path = prefix, .format = EMBER_GEN_NPY,
                                                                .rows = o.rows});
        } else if (st == EMBER_OK) {
            fprintf(stderr, "ember train: using synthetic data in %s_*.npy\n", prefix);
        }
        for (int t = 0; st == EMBER_OK && t < 26; t++) rows[t] = ember_gen_cardinality(gen, t);
        if (st == EMBER_OK) st = ember_gen_bayes_auc(gen, o.rows + o.eval_rows, &bayes);
    } else {
        snprintf(prefix, sizeof prefix, "%s", o.data);
        for (int t = 0; t < 26; t++) rows[t] = (int64_t)(ember_criteo_kaggle_cardinalities[t] * o.scale) + 1;
    }
    const char *paths[1] = {prefix};
    if (st == EMBER_OK)
        st = ember_loader_create(&(ember_loader_params){.paths = paths, .num_paths = 1, .batch_size = o.batch,
                                                        .drop_last = 1, .shuffle_buffer = 1 << 16, .seed = o.seed,
                                                        .table_rows = rows, .workers = 1},
                                 &loader);
    ember_dlrm_config cfg = {.num_dense = 13, .num_tables = 26, .table_rows = rows, .emb_dim = o.emb_dim,
                             .batch = o.batch, .sparse_lr = o.lr, .seed = o.seed,
                             .sparse_optim = {.type = o.optim == EMBER_OPTIM_SGD    ? EMBER_SPARSE_OPTIM_SGD
                                                      : o.optim == EMBER_OPTIM_ADAM ? EMBER_SPARSE_OPTIM_ADAM
                                                                                    : EMBER_SPARSE_OPTIM_ADAGRAD}};
    memcpy(cfg.bottom, o.bottom, sizeof cfg.bottom);
    memcpy(cfg.top, o.top, sizeof cfg.top);
    if (!cfg.bottom[0]) {
        cfg.bottom[0] = 512, cfg.bottom[1] = 256, cfg.bottom[2] = o.emb_dim;
    }
    cfg.dense_optim = ember_optimizer_defaults(o.optim);
    cfg.dense_optim.lr = o.lr;
    if (st == EMBER_OK) st = ember_dlrm_create(&cfg, &m);
    if (st == EMBER_OK && o.metrics && !(mf = fopen(o.metrics, "w"))) {
        fprintf(stderr, "ember train: cannot write --metrics %s\n", o.metrics);
        st = EMBER_ERR_IO;
    }
    int64_t steps_per_epoch = o.rows / o.batch, step = 0, samples = 0;
    double t0 = now_s(), loss_sum = 0;
    float loss = 0;
    for (int e = 0; e < o.epochs && st == EMBER_OK; e++) {
        if (e > 0) st = ember_loader_start_epoch(loader, e);
        const ember_batch *b;
        while (st == EMBER_OK && (st = ember_loader_next(loader, &b)) == EMBER_OK && b) {
            if (b->size != o.batch) continue;
            ember_jagged_feature f[26];
            for (int t = 0; t < 26; t++)
                f[t] = (ember_jagged_feature){.values = b->values[t], .offsets = b->offsets[t],
                                              .length = b->offsets[t][b->size]};
            ember_jagged jb = {.batch = b->size, .num_features = 26, .features = f};
            st = ember_dlrm_train_step(m, b->dense, &jb, b->labels, &loss);
            step++;
            samples += b->size;
            loss_sum += loss;
            double el = now_s() - t0, rate = (double)samples / el;
            if (step % 10 == 0 || step == steps_per_epoch * o.epochs) {
                progress(step, steps_per_epoch * o.epochs, rate, loss, (double)(steps_per_epoch * o.epochs - step) * o.batch / rate);
                if (mf) fprintf(mf, "{\"step\":%lld,\"loss\":%.6f,\"samples_per_s\":%.1f}\n", (long long)step, loss, rate);
            }
        }
    }
    double train_s = now_s() - t0;
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\n");
    ember_metrics met = {0};
    if (st == EMBER_OK && gen) st = eval_synthetic(m, gen, &o, rows, &met);
    if (st == EMBER_OK) {
        ember_memory_stats ms;
        ember_memory_get_stats(NULL, &ms);
        int64_t total_rows = 0;
        for (int t = 0; t < 26; t++) total_rows += rows[t];
        printf("ember train: DLRM, %d tables (%lld rows in all, dim %d), batch %lld, %s\n", 26,
               (long long)total_rows, o.emb_dim, (long long)o.batch, ember_optim_kind_name(o.optim));
        printf("  trained      %lld steps, %lld samples in %.1f s: %.0f samples/s, mean loss %.4f\n", (long long)step,
               (long long)samples, train_s, (double)samples / train_s, step ? loss_sum / (double)step : 0.0);
        if (gen)
            printf("  eval         %lld held-out rows: AUC %.4f (Bayes-optimal %.4f, gap %.4f), logloss %.4f, accuracy %.4f\n",
                   (long long)met.samples, met.auc, bayes, bayes - met.auc, met.logloss, met.accuracy);
        printf("  peak memory  host %.1f MiB (parameters %.1f, optimizer state %.1f, activations %.1f)\n",
               ms.peak_total[EMBER_TIER_HOST] / 1048576.0, ms.peak[EMBER_TIER_HOST][EMBER_MEM_PARAMETER] / 1048576.0,
               ms.peak[EMBER_TIER_HOST][EMBER_MEM_OPTIMIZER_STATE] / 1048576.0,
               ms.peak[EMBER_TIER_HOST][EMBER_MEM_ACTIVATION] / 1048576.0);
    } else {
        fprintf(stderr, "ember train: %s\n", ember_last_error());
    }
    if (mf) fclose(mf);
    ember_dlrm_destroy(m);
    ember_loader_destroy(loader);
    ember_gen_destroy(gen);
    return st == EMBER_OK ? 0 : 1;
}
