/*
 * examples/recommender.c: a click-through-rate model trained with ember as a library,
 * through its public C API only (<ember/ember.h>).
 *
 *   1. data     a synthetic Criteo-shaped click log (ember_gen_*: Zipf-skewed ids,
 *               labels from a hidden model whose own AUC is known), or a Criteo TSV
 *   2. model    a DLRM whose embedding tables sit behind ember's block-wise cache:
 *               5% of each table's rows in fast memory, the rest in a host store
 *   3. train    batches handed to the cache one step ahead (ember_dlrm_submit), so
 *               the rows of batch k+1 are fetched while batch k computes
 *   4. evaluate AUC and logloss on held-out rows (ember_dlrm_predict, ember_metrics)
 *   5. report   the cache's hit rate, evictions and hidden transfer time
 *
 * usage: recommender [--steps N] [--batch B] [--scale S] [CRITEO.tsv]
 */
#include <ember/ember.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NT = EMBER_CRITEO_NUM_SPARSE, ND = EMBER_CRITEO_NUM_DENSE };

/* Every ember call returns a status; on failure ember_last_error() says what and where
   ("EMBER_ERR_PARSE: criteo day_0 line 4182 field 16 (C2): ..."). The helpers below
   return EMBER_ERR_OUT_OF_MEMORY themselves without a message: strerror covers them. */
#define CHECK(call)                                                                 \
    do {                                                                            \
        if ((st = (call)) != EMBER_OK) {                                            \
            const char *why = st == EMBER_ERR_OUT_OF_MEMORY && !*ember_last_error() \
                                  ? ember_strerror(st) : ember_last_error();        \
            fprintf(stderr, "recommender: %s failed:\n  %s\n", #call, why);         \
            goto done;                                                              \
        }                                                                           \
    } while (0)

/* The click log in memory: row i has dense[i*13..], sparse ids[i*26..] and a label. */
typedef struct click_log {
    int64_t n;
    float *dense;     /* (n, 13) log1p of the integer features */
    uint32_t *sparse; /* (n, 26) raw categorical ids */
    float *labels;    /* (n) 0 or 1 */
} click_log;

/* Room for n rows (keeping those held). */
static ember_status log_alloc(click_log *d, int64_t n) {
    void *p;
    if (!(p = realloc(d->dense, (size_t)n * ND * sizeof *d->dense))) return EMBER_ERR_OUT_OF_MEMORY;
    d->dense = p;
    if (!(p = realloc(d->sparse, (size_t)n * NT * sizeof *d->sparse))) return EMBER_ERR_OUT_OF_MEMORY;
    d->sparse = p;
    if (!(p = realloc(d->labels, (size_t)n * sizeof *d->labels))) return EMBER_ERR_OUT_OF_MEMORY;
    d->labels = p;
    return EMBER_OK;
}

/* (1a) n rows of the generator's stream; the same seed always gives the same rows. */
static ember_status log_generate(click_log *d, const ember_gen *g, int64_t n) {
    int64_t *ints = malloc((size_t)n * ND * sizeof *ints);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    ember_status st = ints && labels ? log_alloc(d, n) : EMBER_ERR_OUT_OF_MEMORY;
    if (st == EMBER_OK) st = ember_gen_rows(g, 0, n, ints, NULL, d->sparse, labels, NULL);
    for (int64_t i = 0; st == EMBER_OK && i < n; i++) {
        for (int j = 0; j < ND; j++) d->dense[i * ND + j] = (float)log1p(fmax((double)ints[i * ND + j], 0.0));
        d->labels[i] = (float)labels[i];
    }
    d->n = st == EMBER_OK ? n : 0;
    free(ints), free(labels);
    return st;
}

/* (1b) A Criteo TSV, whole (a pipeline over terabytes would stream it with ember_loader). */
static ember_status log_read_tsv(click_log *d, const char *path) {
    ember_criteo_reader *r = NULL;
    ember_criteo_rows rows;
    ember_status st = ember_criteo_open(&(ember_criteo_params){.path = path}, &r);
    while (st == EMBER_OK && (st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
        if ((st = log_alloc(d, d->n + rows.n)) != EMBER_OK) break;
        memcpy(d->dense + d->n * ND, rows.dense, (size_t)rows.n * ND * sizeof *d->dense);
        memcpy(d->sparse + d->n * NT, rows.sparse, (size_t)rows.n * NT * sizeof *d->sparse);
        for (int64_t i = 0; i < rows.n; i++) d->labels[d->n + i] = (float)rows.labels[i];
        d->n += rows.n;
    }
    ember_criteo_close(r);
    return st;
}

/*
 * A batch as ember wants it: one jagged feature per table. Criteo is one-hot, so bag b
 * holds the single id values[b] and offsets is 0, 1, ..., B for every table. A batch
 * handed to ember_dlrm_submit is read until its training step, so each batch in
 * flight needs arrays of its own: the training loop keeps two of these in a ring.
 */
typedef struct batch {
    int64_t *ids;                  /* (26, B) ids of each table, table-major */
    ember_jagged_feature feat[NT];
    ember_jagged jagged;           /* the pointer given to submit and then to train_step */
    int64_t first;                 /* its first row in the click log */
} batch;

static void batch_fill(batch *b, const click_log *d, int64_t first, int64_t B, const int64_t *rows,
                       const int64_t *offsets) {
    for (int t = 0; t < NT; t++) {
        for (int64_t i = 0; i < B; i++) b->ids[t * B + i] = d->sparse[(first + i) * NT + t] % (uint64_t)rows[t];
        b->feat[t] = (ember_jagged_feature){.values = b->ids + t * B, .offsets = offsets, .length = B};
    }
    b->jagged = (ember_jagged){.batch = B, .num_features = NT, .features = b->feat};
    b->first = first;
}

int main(int argc, char **argv) {
    int64_t steps = 300, B = 256;
    double scale = 0.002;
    const char *tsv = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoll(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = atoll(argv[++i]);
        else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) scale = atof(argv[++i]);
        else if (argv[i][0] != '-') tsv = argv[i];
        else {
            fprintf(stderr, "usage: %s [--steps N] [--batch B] [--scale S] [CRITEO.tsv]\n", argv[0]);
            return 2;
        }
    }
    if (steps < 1 || B < 1 || !(scale > 0)) {
        fprintf(stderr, "recommender: steps, batch and scale must be positive\n");
        return 2;
    }
    ember_status st = EMBER_OK;
    ember_gen *gen = NULL;
    ember_dlrm *m = NULL;
    click_log clicks = {0};
    int64_t rows[NT], *offsets = calloc((size_t)B + 1, sizeof *offsets);
    batch ring[2] = {{.ids = malloc((size_t)(NT * B) * sizeof(int64_t))},
                     {.ids = malloc((size_t)(NT * B) * sizeof(int64_t))}};
    float *probs = NULL;
    double bayes = NAN;
    if (!offsets || !ring[0].ids || !ring[1].ids) CHECK(EMBER_ERR_OUT_OF_MEMORY);
    for (int64_t i = 0; i <= B; i++) offsets[i] = i;

    /* (1) Data. Table t has the Kaggle cardinality of field t times scale; ids beyond a
       table's rows are folded into it (the hashing trick). */
    int64_t eval_n = 16 * B;
    if (tsv) {
        CHECK(log_read_tsv(&clicks, tsv));
        for (int t = 0; t < NT; t++) rows[t] = (int64_t)(ember_criteo_kaggle_cardinalities[t] * scale) + 1;
        eval_n = (clicks.n / 10 + B - 1) / B * B; /* the last ~10%, whole batches */
    } else {
        CHECK(ember_gen_create(&(ember_gen_params){.seed = 7, .scale = scale}, &gen));
        CHECK(log_generate(&clicks, gen, steps * B + eval_n));
        CHECK(ember_gen_bayes_auc(gen, clicks.n, &bayes));
        for (int t = 0; t < NT; t++) rows[t] = ember_gen_cardinality(gen, t);
    }
    int64_t train_batches = (clicks.n - eval_n) / B;
    if (train_batches < 1) {
        fprintf(stderr, "recommender: %lld rows are too few for batch %lld\n", (long long)clicks.n, (long long)B);
        st = EMBER_ERR_INVALID_ARGUMENT;
        goto done;
    }

    /* (2) The model. The cache keeps 5% of each table's rows in fast memory (the GPU, or
       a DRAM budget standing in for it), at least two batches' worth: the one computing
       and the one prepared ahead (lookahead 1) must be resident together. */
    int64_t total_rows = 0;
    for (int t = 0; t < NT; t++) total_rows += rows[t];
    ember_dlrm_config cfg = {
        .num_tables = NT, .table_rows = rows, .emb_dim = 16, .bottom = {64, 16}, .top = {64, 1}, .batch = B,
        .sparse_optim = {.type = EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD}, .sparse_lr = 0.05f, .seed = 1,
        .cache = &(ember_cache_config){.ratio = 0.05, .min_slots = 2 * B, .lookahead = 1}};
    cfg.dense_optim = ember_optimizer_defaults(EMBER_OPTIM_ADAGRAD);
    cfg.dense_optim.lr = 0.05;
    CHECK(ember_dlrm_create(&cfg, &m));
    printf("model: DLRM, %d tables, %lld embedding rows of dim 16, batch %lld; data: %lld rows%s%s\n", NT,
           (long long)total_rows, (long long)B, (long long)clicks.n, tsv ? " from " : " (synthetic)", tsv ? tsv : "");

    /* (3) Training. Batch k+1 is submitted before batch k trains, so the cache's worker
       fetches its missing rows (and writes back evicted dirty ones) during step k. */
    float loss = 0;
    double loss_sum = 0;
    batch_fill(&ring[0], &clicks, 0, B, rows, offsets);
    CHECK(ember_dlrm_submit(m, &ring[0].jagged));
    for (int64_t k = 0; k < steps; k++) {
        if (k + 1 < steps) {
            batch *next = &ring[(k + 1) % 2]; /* batch k-1's arrays: it has trained */
            batch_fill(next, &clicks, (k + 1) % train_batches * B, B, rows, offsets);
            CHECK(ember_dlrm_submit(m, &next->jagged));
        }
        batch *cur = &ring[k % 2];
        const float *dense = clicks.dense + cur->first * ND, *labels = clicks.labels + cur->first;
        CHECK(ember_dlrm_train_step(m, dense, &cur->jagged, labels, &loss));
        loss_sum += loss;
        if ((k + 1) % 100 == 0 || k + 1 == steps)
            printf("step %4lld  loss %.4f  (mean %.4f)\n", (long long)(k + 1), loss, loss_sum / (double)(k + 1));
    }

    /* (4) Evaluation on rows never trained on, in whole batches. */
    int64_t eval_first = clicks.n - eval_n;
    probs = malloc((size_t)eval_n * sizeof *probs);
    if (!probs) CHECK(EMBER_ERR_OUT_OF_MEMORY);
    for (int64_t first = eval_first; first < clicks.n; first += B) {
        batch_fill(&ring[0], &clicks, first, B, rows, offsets);
        CHECK(ember_dlrm_predict(m, clicks.dense + first * ND, &ring[0].jagged, probs + (first - eval_first)));
    }
    ember_metrics met;
    CHECK(ember_metrics_compute(probs, clicks.labels + eval_first, eval_n, &met));
    printf("eval: %lld held-out rows: AUC %.4f, logloss %.4f, accuracy %.4f", (long long)met.samples, met.auc,
           met.logloss, met.accuracy);
    if (!isnan(bayes)) printf(" (the hidden model's own AUC: %.4f)", bayes);
    printf("\n");

    /* (5) The cache: how often a lookup found its row resident, and how much of the
       time spent moving rows was hidden behind computation. */
    ember_cache_stats cs;
    CHECK(ember_cache_get_stats(ember_dlrm_cache(m), &cs));
    printf("cache: %lld of %lld rows resident; hit rate %.1f%% (%.1f%% of distinct rows per batch), "
           "%lld evictions (%lld written back), %.0f%% of transfer time hidden\n",
           (long long)cs.slots, (long long)total_rows, 100 * cs.hit_rate, 100 * cs.unique_hit_rate,
           (long long)cs.evictions, (long long)cs.writebacks, 100 * cs.hidden_fraction);
    size_t need = ember_cache_stats_json(&cs, NULL, 0);
    char *json = malloc(need + 1);
    if (json) {
        ember_cache_stats_json(&cs, json, need + 1);
        printf("cache stats: %s\n", json);
        free(json);
    }

done:
    ember_dlrm_destroy(m);
    ember_gen_destroy(gen);
    free(clicks.dense), free(clicks.sparse), free(clicks.labels), free(probs), free(offsets);
    free(ring[0].ids), free(ring[1].ids);
    return st == EMBER_OK ? 0 : 1;
}
