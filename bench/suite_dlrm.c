/*
 * dlrm suite: samples per second of DLRM training steps (ember_dlrm_train_step:
 * forward, backward, the fused sparse Adagrad update of the embedding rows, the dense
 * Adagrad step) over a pool of pre-generated batches, and the AUC that one epoch of
 * training reaches on synthetic Criteo.
 *
 *   dlrm_b<B>_resident   the default DLRM (emb_dim 64, bottom 512-256-64, top
 *                        1024-1024-512-256-1, dot interaction) on the 26 Kaggle
 *                        cardinalities times SCALE, tables resident; B = 2048 and 16384
 *                        (--quick: 2048 only)
 *   dlrm_b<B>_cache1.5   the same model with its tables behind the block-wise cache
 *                        (host store, 1.5% of each table's rows in slots, raised to the
 *                        most unique ids one batch has in a table so that a batch fits:
 *                        1.8% of all rows at B 2048, 2.7% at 16384, in params
 *                        slots_fraction; look-ahead 2, batches submitted ahead with
 *                        ember_dlrm_submit), warm-started from frequency counts of
 *                        batches before the timed ones
 *   kaggle_b2048_resident  the DLRM reference's Kaggle configuration: dim 16, bottom
 *                        512-256-64-16, top 512-256-1, batch 2048, tables at
 *                        KAGGLE_SCALE of Kaggle's cardinalities
 *   auc_1epoch           (not under --tiny) a small DLRM trained one epoch, file order,
 *                        on the first AUC_TRAIN rows of `ember gen-data --format npy
 *                        --scale AUC_SCALE --seed 1` (the library's writer, the same
 *                        bytes), evaluated on the AUC_EVAL rows after them; metric auc,
 *                        the mean over AUC_SEEDS initialisations (one seed's AUC moves
 *                        by about 0.001 with the seed, as much as the two sides differ)
 *   ..._bf16             every case above again with bf16 matmul products
 *                        (ember_set_matmul_precision), where this CPU multiplies bf16
 *                        natively (AMX or AVX512-BF16 through oneDNN); params.mode says
 *                        which precision a case ran at. The headline cases are the
 *                        fastest precision available (bf16 where it is); the peer runs
 *                        its _bf16 cases under torch.autocast(bfloat16), its own fastest
 *   ranks<K>_<plan>      (ember bench dlrm --ranks N) the default DLRM trained on K =
 *                        1, 2, 4, ... N ranks of this machine (mpiexec -n K ember bench
 *                        dlrm-ranks; $MPIEXEC or mpiexec on $PATH) with each plan:
 *                        tablewise, rowwise and minimax (frequency-aware, from counts of
 *                        the timed batches taken first, as `ember count` over the
 *                        training data; every rank counts the same global batches, so all
 *                        build the same plan); dense layers data parallel, global batch
 *                        4096 split over the ranks, threads / K threads each;
 *                        samples_per_s of each (plan, K), with the plan's predicted
 *                        imbalance (max / mean lookups per rank) and hot / replicated rows
 *                        in params, and scaling = samples/s on K ranks over that plan's
 *                        samples/s on 1. On 1 rank a plan shards nothing (one process, the
 *                        same model for every plan): its three figures are three
 *                        measurements of the same run, a guide to the noise. The ranks
 *                        share the cores, so scaling is that of the engine's parallel
 *                        split on one machine, not of more hardware.
 *
 * Peers: bench/peers/dlrm.py (PyTorch: nn.EmbeddingBag(sparse=True), the same MLPs and
 * interaction, torch.optim.Adagrad dense and sparse) and bench/peers/dlrm-torchrec.py
 * (TorchRec's DLRM, its tables sharded into FBGEMM's CPU TBE with fused Adagrad). Both
 * have no cache: their resident figure is reported under the cache1.5 names as well.
 * Suite "dlrm-torchrec" runs exactly these cases under that name, so that bench/compare
 * pairs them with the TorchRec peer.
 *
 * Data of the timed batches, the same in the peers: ids of table t, batch k, sample s
 * from splitmix64 of (t << 56) ^ (k * B + s) to a Zipf(1.15) rank scattered over the
 * table (as bench/suite_cache.c), dense feature i = 4 u with u from splitmix64 of
 * ((32 + i) << 56) ^ (k * B + s), label = top bit of splitmix64 of (63 << 56) ^ (k * B + s).
 * Both sides use Adagrad (eps 1e-10, initial accumulator 0: torch's defaults) dense and
 * sparse, lr LR in the speed cases and AUC_LR in auc_1epoch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/internal.h"

#define NT 26
#define ND 13
#define ZIPF_S 1.15
#define SCATTER 2654435761ull
#define LR 0.01f     /* the speed cases */
#define AUC_LR 0.05f
#define SCALE 0.05        /* default DLRM: 1.69M rows */
#define KAGGLE_SCALE 0.25 /* reference config: 8.44M rows of dim 16 */
#define LOOKAHEAD 2
#define CACHE_RATIO 0.015
#define AUC_SCALE 0.01
#define AUC_BATCH 1024
#define AUC_TRAIN (196 * AUC_BATCH) /* 200704 */
#define AUC_EVAL (50 * AUC_BATCH)   /* 51200 */
#define AUC_SEEDS 3                 /* models (init seeds 1, 2, 3) whose AUCs are averaged */

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double unit_of(uint64_t key) { return (double)(mix64(key) >> 11) * (1.0 / 9007199254740992.0); }

static int64_t zipf_id(uint64_t key, int64_t rows) {
    double u = unit_of(key);
    double a = 1.0 - ZIPF_S, top = pow((double)rows + 1.0, a) - 1.0;
    int64_t r = (int64_t)floor(pow(top * u + 1.0, 1.0 / a)) - 1;
    if (r < 0) r = 0;
    if (r >= rows) r = rows - 1;
    return (int64_t)(((uint64_t)r * SCATTER) % (uint64_t)rows);
}

/* Kaggle's cardinalities times scale, rounded, at least 1: ember_gen's rule. */
static int64_t scaled_rows(double scale, int t, int64_t *total) {
    double c = floor((double)ember_criteo_kaggle_cardinalities[t] * scale + 0.5);
    int64_t r = c < 1 ? 1 : (int64_t)c;
    *total += r;
    return r;
}

typedef struct pool {
    int64_t B;
    int nb;
    int64_t rows[NT];
    float *dense;             /* (nb, B, ND) */
    float *labels;            /* (nb, B) */
    int64_t *ids;             /* (nb, NT, B) */
    int64_t *off;             /* (B + 1,) one id per bag */
    ember_jagged_feature *f;  /* (nb, NT) */
    ember_jagged *j;          /* (nb,) */
    int64_t max_unique;       /* most unique ids of one table in one batch */
} pool;

static void pool_free(pool *p) {
    free(p->dense);
    free(p->labels);
    free(p->ids);
    free(p->off);
    free(p->f);
    free(p->j);
    memset(p, 0, sizeof *p);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static ember_status pool_make(pool *p, int64_t B, int nb, const int64_t *rows) {
    memset(p, 0, sizeof *p);
    p->B = B;
    p->nb = nb;
    memcpy(p->rows, rows, sizeof p->rows);
    size_t n = (size_t)nb * (size_t)B;
    p->dense = malloc(n * ND * sizeof *p->dense);
    p->labels = malloc(n * sizeof *p->labels);
    p->ids = malloc(n * NT * sizeof *p->ids);
    p->off = malloc((size_t)(B + 1) * sizeof *p->off);
    p->f = malloc((size_t)nb * NT * sizeof *p->f);
    p->j = malloc((size_t)nb * sizeof *p->j);
    if (!p->dense || !p->labels || !p->ids || !p->off || !p->f || !p->j) {
        pool_free(p);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench dlrm: a pool of %d batches of %lld", nb, (long long)B);
    }
    for (int64_t s = 0; s <= B; s++) p->off[s] = s;
    int64_t most = 0;
#pragma omp parallel for schedule(static) reduction(max : most)
    for (int k = 0; k < nb; k++) {
        int64_t *tmp = malloc((size_t)B * sizeof *tmp);
        for (int64_t s = 0; s < B; s++) {
            uint64_t key = (uint64_t)k * (uint64_t)B + (uint64_t)s;
            float *d = p->dense + ((size_t)k * (size_t)B + (size_t)s) * ND;
            for (int i = 0; i < ND; i++) d[i] = (float)(4.0 * unit_of(((uint64_t)(32 + i) << 56) ^ key));
            p->labels[(size_t)k * (size_t)B + (size_t)s] = (float)(mix64((63ull << 56) ^ key) >> 63);
        }
        for (int t = 0; t < NT; t++) {
            int64_t *ids = p->ids + ((size_t)k * NT + (size_t)t) * (size_t)B;
            for (int64_t s = 0; s < B; s++)
                ids[s] = zipf_id(((uint64_t)t << 56) ^ ((uint64_t)k * (uint64_t)B + (uint64_t)s), rows[t]);
            if (tmp) {
                memcpy(tmp, ids, (size_t)B * sizeof *tmp);
                qsort(tmp, (size_t)B, sizeof *tmp, cmp_i64);
                int64_t u = B > 0;
                for (int64_t s = 1; s < B; s++) u += tmp[s] != tmp[s - 1];
                if (u > most) most = u;
            } else {
                most = B > most ? B : most;
            }
        }
        free(tmp);
    }
    p->max_unique = most;
    for (int k = 0; k < nb; k++) {
        for (int t = 0; t < NT; t++)
            p->f[k * NT + t] = (ember_jagged_feature){
                .values = p->ids + ((size_t)k * NT + (size_t)t) * (size_t)B, .offsets = p->off, .length = B};
        p->j[k] = (ember_jagged){.batch = B, .num_features = NT, .features = p->f + (size_t)k * NT};
    }
    return EMBER_OK;
}

/* The model half of a case: layer sizes and embedding dim. */
typedef struct arch {
    const char *name;
    int dim;
    int64_t bottom[EMBER_DLRM_MAX_LAYERS], top[EMBER_DLRM_MAX_LAYERS];
} arch;

static const arch DEFAULT = {"default", 64, {512, 256, 64}, {1024, 1024, 512, 256, 1}};
static const arch KAGGLE = {"kaggle", 16, {512, 256, 64, 16}, {512, 256, 1}};
static const arch AUC_ARCH = {"small", 16, {64, 16}, {128, 64, 1}};

static void layers_str(const int64_t *l, char *buf, size_t n) {
    size_t u = 0;
    buf[0] = '\0';
    for (int i = 0; i < EMBER_DLRM_MAX_LAYERS && l[i] > 0 && u < n; i++)
        u += (size_t)snprintf(buf + u, n - u, "%s%lld", i ? "-" : "", (long long)l[i]);
}

static ember_dlrm_config config_of(const arch *a, const int64_t *rows, int64_t B, float lr) {
    ember_dlrm_config c = {.num_dense = ND, .num_tables = NT, .table_rows = rows, .emb_dim = a->dim, .batch = B,
                           .sparse_optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}, .sparse_lr = lr, .seed = 1};
    memcpy(c.bottom, a->bottom, sizeof c.bottom);
    memcpy(c.top, a->top, sizeof c.top);
    c.dense_optim = ember_optimizer_defaults(EMBER_OPTIM_ADAGRAD);
    c.dense_optim.lr = lr;
    return c;
}

/* One timed call: batch `step` of the pool (from `first` on), with the look-ahead kept full. */
typedef struct loop {
    ember_dlrm *m;
    const pool *p;
    int64_t step, submitted, first;
    int look; /* 0: resident */
} loop;

static ember_status step_op(void *arg) {
    loop *l = arg;
    const pool *p = l->p;
    while (l->look && l->submitted <= l->step + l->look) {
        EMBER_TRY(ember_dlrm_submit(l->m, &p->j[(l->first + l->submitted) % p->nb]));
        l->submitted++;
    }
    int64_t k = (l->first + l->step) % p->nb;
    EMBER_TRY(ember_dlrm_train_step(l->m, p->dense + (size_t)k * (size_t)p->B * ND, &p->j[k],
                                    p->labels + (size_t)k * (size_t)p->B, NULL));
    l->step++;
    return EMBER_OK;
}

/* The headline cases (bench/compare's last line): each side's fastest matmul precision,
   bf16 where the CPU multiplies bf16 natively (the peer then runs under torch.autocast
   with bf16), else f32. The other precision's cases are reported beside them. */
static int headline_mode(void) {
    ember_features f;
    ember_get_features(&f);
    return ember_get_matmul_precision() == (f.bf16_matmul ? EMBER_MATMUL_BF16 : EMBER_MATMUL_F32);
}

static ember_status run_speed(const ember_bench_opts *o, const char *suite, const char *case_name, const arch *a,
                              const pool *p, double scale, int64_t rows_total, int cached) {
    ember_dlrm_config cfg = config_of(a, p->rows, p->B, LR);
    ember_cache_config cc = {.ratio = CACHE_RATIO, .min_slots = p->max_unique,
                             .lookahead = LOOKAHEAD, .store = EMBER_CACHE_STORE_HOST};
    if (cached) cfg.cache = &cc;
    loop l = {.p = p, .look = cached ? LOOKAHEAD : 0};
    ember_status st = ember_dlrm_create(&cfg, &l.m);
    int64_t slots = 0;
    if (st == EMBER_OK && cached) {
        ember_cache *c = ember_dlrm_cache(l.m);
        for (int t = 0; t < NT; t++) slots += ember_cache_slots(c, t);
        /* warm start: counts of the first quarter of the pool; the timed steps come after */
        ember_freq *f = NULL;
        int warm = p->nb / 4;
        st = ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f);
        for (int k = 0; k < warm && st == EMBER_OK; k++)
            for (int t = 0; t < NT && st == EMBER_OK; t++)
                st = ember_freq_add(f, t, p->j[k].features[t].values, p->B);
        if (st == EMBER_OK) st = ember_cache_warmup_counts(c, f);
        ember_freq_destroy(f);
        l.first = warm;
    }
    double sec = 0;
    if (st == EMBER_OK) st = ember_bench_time(o, step_op, &l, &sec);
    ember_cache_stats cs = {0};
    if (st == EMBER_OK && cached) st = ember_cache_get_stats(ember_dlrm_cache(l.m), &cs);
    /* train what is still submitted, so the cache has nothing in flight */
    while (st == EMBER_OK && ember_dlrm_pending(l.m) > 0) {
        l.look = 0;
        st = step_op(&l);
    }
    if (st == EMBER_OK) {
        char params[1024], bot[96], top[96];
        layers_str(a->bottom, bot, sizeof bot);
        layers_str(a->top, top, sizeof top);
        int n = snprintf(params, sizeof params,
                         "\"model\":\"%s\",\"tables\":%d,\"scale\":%g,\"rows_total\":%lld,\"dim\":%d,\"bottom\":\"%s\","
                         "\"top\":\"%s\",\"interaction\":\"dot\",\"batch\":%lld,\"optim\":\"adagrad\",\"lr\":%g,"
                         "\"zipf_s\":%.2f,\"store\":\"%s\",\"threads\":%d,\"mode\":\"%s\",\"headline\":%d",
                         a->name, NT, scale, (long long)rows_total, a->dim, bot, top, (long long)p->B, (double)LR,
                         ZIPF_S, cached ? "cache" : "resident", ember_get_num_threads(),
                         ember_matmul_precision_name(ember_get_matmul_precision()), headline_mode());
        if (cached && n > 0 && (size_t)n < sizeof params)
            snprintf(params + n, sizeof params - (size_t)n,
                     ",\"ratio\":%g,\"slots_fraction\":%.4f,\"lookahead\":%d,\"cache_store\":\"host\","
                     "\"hit_rate\":%.4f,\"hidden\":%.3f",
                     CACHE_RATIO, (double)slots / (double)rows_total, LOOKAHEAD, cs.hit_rate, cs.hidden_fraction);
        ember_bench_emit(o, suite, case_name, "samples_per_s", (double)p->B / sec, "samples/s", params);
    }
    ember_dlrm_destroy(l.m);
    return st;
}

/* ---- AUC after one epoch on `ember gen-data` rows ---- */

typedef struct auc_run {
    double auc, logloss, train_loss;
} auc_run;

/* One model (init seed `seed`): an epoch over the training rows in file order, then
   the click probabilities of the held-out rows. */
static ember_status auc_once(const ember_npy_triplet *tr, const int64_t *rows, uint64_t seed, auc_run *out) {
    const int64_t B = AUC_BATCH;
    ember_dlrm_config cfg = config_of(&AUC_ARCH, rows, B, AUC_LR);
    cfg.seed = seed;
    ember_dlrm *m = NULL;
    float *probs = malloc(AUC_EVAL * sizeof *probs), *labels = malloc(AUC_EVAL * sizeof *labels);
    float *lab = malloc((size_t)B * sizeof *lab);
    int64_t *ids = malloc((size_t)B * NT * sizeof *ids), *off = malloc((size_t)(B + 1) * sizeof *off);
    ember_status st = probs && labels && lab && ids && off
                          ? ember_dlrm_create(&cfg, &m)
                          : ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench dlrm: AUC buffers");
    ember_jagged_feature f[NT];
    ember_jagged jb = {.batch = B, .num_features = NT, .features = f};
    if (st == EMBER_OK) {
        for (int64_t s = 0; s <= B; s++) off[s] = s;
        for (int t = 0; t < NT; t++)
            f[t] = (ember_jagged_feature){.values = ids + (size_t)t * (size_t)B, .offsets = off, .length = B};
    }
    double loss_sum = 0;
    for (int64_t r0 = 0; st == EMBER_OK && r0 < AUC_TRAIN + AUC_EVAL; r0 += B) {
        const uint32_t *sp = ember_npy_triplet_sparse(tr) + (size_t)r0 * NT;
        const int32_t *lb = ember_npy_triplet_labels(tr) + r0;
        const float *dn = ember_npy_triplet_dense(tr) + (size_t)r0 * ND;
        for (int t = 0; t < NT; t++)
            for (int64_t s = 0; s < B; s++)
                ids[(size_t)t * (size_t)B + (size_t)s] = (int64_t)(sp[s * NT + t] % (uint64_t)rows[t]);
        if (r0 < AUC_TRAIN) {
            float loss = 0;
            for (int64_t s = 0; s < B; s++) lab[s] = (float)lb[s];
            st = ember_dlrm_train_step(m, dn, &jb, lab, &loss);
            loss_sum += loss;
        } else {
            int64_t e = r0 - AUC_TRAIN;
            for (int64_t s = 0; s < B; s++) labels[e + s] = (float)lb[s];
            st = ember_dlrm_predict(m, dn, &jb, probs + e);
        }
    }
    ember_metrics met = {0};
    if (st == EMBER_OK) st = ember_metrics_compute(probs, labels, AUC_EVAL, &met);
    if (st == EMBER_OK)
        *out = (auc_run){.auc = met.auc, .logloss = met.logloss, .train_loss = loss_sum / (double)(AUC_TRAIN / B)};
    free(probs), free(labels), free(lab), free(ids), free(off);
    ember_dlrm_destroy(m);
    return st;
}

static ember_status run_auc(const ember_bench_opts *o, const char *suite) {
    int64_t rows[NT], rows_total = 0;
    char dir[256], prefix[300];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ember-bench-dlrm-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(prefix, sizeof prefix, "%s/gen", dir);
    if (mkdir(dir, 0700) != 0) return ember__error(EMBER_ERR_IO, "bench dlrm: cannot make %s", dir);
    ember_gen *g = NULL;
    ember_npy_triplet *tr = NULL;
    ember_status st = ember_gen_create(&(ember_gen_params){.seed = 1, .scale = AUC_SCALE}, &g);
    if (st == EMBER_OK)
        st = ember_gen_write(g, &(ember_gen_write_params){.path = prefix, .format = EMBER_GEN_NPY,
                                                          .rows = AUC_TRAIN + AUC_EVAL});
    for (int t = 0; t < NT && st == EMBER_OK; t++) {
        rows[t] = ember_gen_cardinality(g, t);
        rows_total += rows[t];
    }
    if (st == EMBER_OK) st = ember_npy_triplet_open(prefix, &tr);
    if (st == EMBER_OK && ember_npy_triplet_rows(tr) != AUC_TRAIN + AUC_EVAL)
        st = ember__error(EMBER_ERR_SHAPE, "bench dlrm: %s has %lld rows", prefix,
                          (long long)ember_npy_triplet_rows(tr));
    auc_run runs[AUC_SEEDS] = {{0}};
    double t0 = ember__now(), auc = 0, logloss = 0, train_loss = 0;
    for (int i = 0; i < AUC_SEEDS && st == EMBER_OK; i++) {
        st = auc_once(tr, rows, (uint64_t)(i + 1), &runs[i]);
        auc += runs[i].auc / AUC_SEEDS;
        logloss += runs[i].logloss / AUC_SEEDS;
        train_loss += runs[i].train_loss / AUC_SEEDS;
    }
    double el = ember__now() - t0, bayes = 0;
    if (st == EMBER_OK) st = ember_gen_bayes_auc(g, AUC_TRAIN + AUC_EVAL, &bayes);
    if (st == EMBER_OK) {
        char params[1280], bot[96], top[96], seeds[160];
        layers_str(AUC_ARCH.bottom, bot, sizeof bot);
        layers_str(AUC_ARCH.top, top, sizeof top);
        size_t u = 0;
        for (int i = 0; i < AUC_SEEDS && u < sizeof seeds; i++)
            u += (size_t)snprintf(seeds + u, sizeof seeds - u, "%s%.5f", i ? "," : "", runs[i].auc);
        snprintf(params, sizeof params,
                 "\"data\":\"ember gen-data --format npy --scale %g --seed 1 --rows %d\",\"train_rows\":%d,"
                 "\"eval_rows\":%d,\"epochs\":1,\"order\":\"file\",\"rows_total\":%lld,\"dim\":%d,\"bottom\":\"%s\","
                 "\"top\":\"%s\",\"batch\":%d,\"optim\":\"adagrad\",\"lr\":%g,\"init_seeds\":%d,"
                 "\"auc_per_seed\":[%s],\"mean_train_loss\":%.5f,\"eval_logloss\":%.5f,\"bayes_auc\":%.4f,"
                 "\"seconds\":%.2f,\"threads\":%d,\"matmul_precision\":\"%s\"",
                 AUC_SCALE, AUC_TRAIN + AUC_EVAL, AUC_TRAIN, AUC_EVAL, (long long)rows_total, AUC_ARCH.dim, bot, top,
                 AUC_BATCH, (double)AUC_LR, AUC_SEEDS, seeds, train_loss, logloss, bayes, el, ember_get_num_threads(),
                 ember_matmul_precision_name(ember_get_matmul_precision()));
        ember_bench_emit(o, suite, ember_get_matmul_precision() == EMBER_MATMUL_BF16 ? "auc_1epoch_bf16" : "auc_1epoch",
                         "auc", auc, "AUC", params);
    }
    ember_npy_triplet_close(tr);
    ember_gen_destroy(g);
    const char *parts[] = {"dense", "sparse", "labels"};
    for (int i = 0; i < 3; i++) {
        char pth[400];
        snprintf(pth, sizeof pth, "%s_%s.npy", prefix, parts[i]);
        unlink(pth);
    }
    rmdir(dir);
    return st;
}

static ember_status run_precision(const ember_bench_opts *o, const char *suite);

/* Every case at f32, then again with bf16 matmul products where this CPU has them
   (cases suffixed _bf16); the precision is put back to what it was. */
static ember_status run_suite(const ember_bench_opts *o, const char *suite) {
    ember_features f;
    ember_get_features(&f);
    const ember_matmul_precision was = ember_get_matmul_precision();
    EMBER_TRY(ember_set_matmul_precision(EMBER_MATMUL_F32));
    ember_status st = run_precision(o, suite);
    if (st == EMBER_OK && f.bf16_matmul) {
        st = ember_set_matmul_precision(EMBER_MATMUL_BF16);
        if (st == EMBER_OK) st = run_precision(o, suite);
    }
    ember_status rs = ember_set_matmul_precision(was);
    return st != EMBER_OK ? st : rs;
}

static ember_status run_precision(const ember_bench_opts *o, const char *suite) {
    const char *sfx = ember_get_matmul_precision() == EMBER_MATMUL_BF16 ? "_bf16" : "";
    int64_t rows[NT], krows[NT], total = 0, ktotal = 0;
    double scale = o->tiny ? 0.001 : SCALE, kscale = o->tiny ? 0.001 : KAGGLE_SCALE;
    for (int t = 0; t < NT; t++) {
        rows[t] = scaled_rows(scale, t, &total);
        krows[t] = scaled_rows(kscale, t, &ktotal);
    }
    static const int64_t batches[] = {2048, 16384};
    int nbatch = o->quick ? 1 : 2;
    ember_status st = EMBER_OK;
    for (int i = 0; i < nbatch && st == EMBER_OK; i++) {
        int64_t B = o->tiny ? 256 : batches[i];
        pool p;
        st = pool_make(&p, B, o->tiny ? 8 : B >= 16384 ? 16 : 64, rows);
        for (int cached = 0; cached < 2 && st == EMBER_OK; cached++) {
            char name[64];
            snprintf(name, sizeof name, "dlrm_b%lld_%s%s", (long long)batches[i], cached ? "cache1.5" : "resident",
                     sfx);
            st = run_speed(o, suite, name, &DEFAULT, &p, scale, total, cached);
        }
        pool_free(&p);
    }
    if (st == EMBER_OK) {
        pool p;
        st = pool_make(&p, o->tiny ? 256 : 2048, o->tiny ? 8 : 64, krows);
        char name[64];
        snprintf(name, sizeof name, "kaggle_b2048_resident%s", sfx);
        if (st == EMBER_OK) st = run_speed(o, suite, name, &KAGGLE, &p, kscale, ktotal, 0);
        pool_free(&p);
    }
    if (st == EMBER_OK && !o->tiny) st = run_auc(o, suite);
    return st;
}

/* ---- scaling over ranks: ember bench dlrm --ranks N ---- */

#define RANKS_GLOBAL_BATCH 4096

static int64_t ranks_batch(const ember_bench_opts *o, int K) {
    int64_t b = (o->tiny ? 256 : RANKS_GLOBAL_BATCH) / K;
    return b < 1 ? 1 : b;
}

/* The plans measured on K ranks, in this order (cases ranks<K>_<name>). */
static const ember_plan_kind RANK_PLANS[] = {EMBER_PLAN_TABLEWISE, EMBER_PLAN_ROWWISE, EMBER_PLAN_MINIMAX};
#define NPLANS ((int)(sizeof RANK_PLANS / sizeof *RANK_PLANS))

/* Train one plan's model: a fixed number of steps per repeat (train_step is collective),
   the slowest rank's time of a repeat, the best repeat; emitted by rank 0. */
static ember_status time_plan(const ember_bench_opts *o, ember_comm *c, const pool *p, const ember_jagged *j,
                              const ember_freq *counts, ember_plan_kind kind, double scale, int64_t total) {
    int rank = ember_comm_rank(c), K = ember_comm_size(c);
    const int64_t b = ranks_batch(o, K), G = b * K;
    const int nb = p->nb, reps = o->tiny ? 2 : o->quick ? 3 : 5, per = o->tiny ? 2 : o->quick ? 3 : 5;
    ember_dlrm_config cfg = config_of(&DEFAULT, p->rows, b, LR);
    cfg.comm = c;
    cfg.plan = kind;
    cfg.freq = counts;
    ember_dlrm *m = NULL;
    ember_status st = ember_dlrm_create(&cfg, &m);
    ember_plan_stats ps = {.imbalance = 1};
    if (st == EMBER_OK && ember_dlrm_plan(m)) st = ember_plan_get_stats(ember_dlrm_plan(m), b, &ps, NULL);
    double best = 1e30;
    int64_t step = 0;
    for (int r = -1; r < reps && st == EMBER_OK; r++) { /* r = -1: warm-up */
        st = ember_comm_barrier(c, NULL);
        double t0 = ember__now();
        for (int s = 0; s < (r < 0 ? 2 : per) && st == EMBER_OK; s++, step++) {
            size_t k = (size_t)(step % nb), at = k * (size_t)G + (size_t)rank * (size_t)b;
            st = ember_dlrm_train_step(m, p->dense + at * ND, &j[k], p->labels + at, NULL);
        }
        float el = (float)(ember__now() - t0), slowest = el;
        if (st == EMBER_OK) st = ember_comm_all_reduce(c, &el, &slowest, 1, EMBER_DTYPE_F32, EMBER_REDUCE_MAX, NULL);
        if (st == EMBER_OK && r >= 0 && slowest < best) best = slowest;
    }
    if (st == EMBER_OK && rank == 0) {
        char params[1280], bot[96], top[96];
        layers_str(DEFAULT.bottom, bot, sizeof bot);
        layers_str(DEFAULT.top, top, sizeof top);
        snprintf(params, sizeof params,
                 "\"ranks\":%d,\"threads_per_rank\":%d,\"global_batch\":%lld,\"batch_per_rank\":%lld,"
                 "\"plan\":\"%s\",\"sharded\":%d,\"plan_imbalance\":%.4f,\"plan_hot_rows\":%lld,"
                 "\"plan_replicated_rows\":%lld,\"counts\":\"the %d timed global batches\",\"model\":\"default\","
                 "\"tables\":%d,\"scale\":%g,\"rows_total\":%lld,\"dim\":%d,\"bottom\":\"%s\",\"top\":\"%s\","
                 "\"optim\":\"adagrad\",\"zipf_s\":%.2f,\"steps_per_repeat\":%d,\"repeats\":%d",
                 K, ember_get_num_threads(), (long long)G, (long long)b, ember_plan_kind_name(kind), K > 1,
                 ps.imbalance, (long long)ps.hot_blocks, (long long)ps.replicated_blocks, nb, NT, scale,
                 (long long)total, DEFAULT.dim, bot, top, ZIPF_S, per, reps);
        char name[64];
        snprintf(name, sizeof name, "ranks%d_%s", K, ember_plan_kind_name(kind));
        ember_bench_emit(o, "dlrm", name, "samples_per_s", (double)G * per / best, "samples/s", params);
    }
    ember_dlrm_destroy(m);
    return st;
}

/* One rank of `ember bench dlrm-ranks` under mpirun: the default DLRM, dense layers data
   parallel, every rank training its slice of the same global batches, once per plan. The
   counts come first, over the pool of global batches (the training data). */
ember_status ember_bench_suite_dlrm_ranks(const ember_bench_opts *o) {
    ember_comm *c = NULL;
    EMBER_TRY(ember_comm_create_default(NULL, &c));
    int rank = ember_comm_rank(c), K = ember_comm_size(c);
    double scale = o->tiny ? 0.001 : SCALE;
    int64_t rows[NT], total = 0;
    for (int t = 0; t < NT; t++) rows[t] = scaled_rows(scale, t, &total);
    const int64_t b = ranks_batch(o, K), G = b * K;
    const int nb = o->tiny ? 4 : 8;
    pool p;
    ember_jagged_feature *f = NULL;
    ember_jagged *j = NULL;
    ember_freq *counts = NULL;
    ember_status st = pool_make(&p, G, nb, rows);
    if (st != EMBER_OK) {
        ember_comm_destroy(c);
        return st;
    }
    f = malloc((size_t)nb * NT * sizeof *f);
    j = malloc((size_t)nb * sizeof *j);
    if (!f || !j) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench dlrm-ranks: batch views");
    for (int k = 0; k < nb && st == EMBER_OK; k++) {
        for (int t = 0; t < NT; t++)
            f[k * NT + t] = (ember_jagged_feature){
                .values = p.ids + ((size_t)k * NT + (size_t)t) * (size_t)G + (size_t)rank * (size_t)b,
                .offsets = p.off, .length = b};
        j[k] = (ember_jagged){.batch = b, .num_features = NT, .features = f + (size_t)k * NT};
    }
    if (st == EMBER_OK) st = ember_freq_create(&(ember_freq_params){.num_tables = NT}, &counts);
    for (int k = 0; k < nb && st == EMBER_OK; k++)
        for (int t = 0; t < NT && st == EMBER_OK; t++)
            st = ember_freq_add(counts, t, p.ids + ((size_t)k * NT + (size_t)t) * (size_t)G, G);
    for (int i = 0; i < NPLANS && st == EMBER_OK; i++)
        st = time_plan(o, c, &p, j, counts, RANK_PLANS[i], scale, total);
    ember_freq_destroy(counts);
    free(f);
    free(j);
    pool_free(&p);
    ember_comm_destroy(c);
    return st;
}

/* mpiexec: $MPIEXEC, else the first on $PATH; 0 when there is none. */
static int find_mpiexec(char *buf, size_t n) {
    const char *e = getenv("MPIEXEC");
    if (e && *e) {
        snprintf(buf, n, "%s", e);
        return 1;
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0 && (size_t)snprintf(buf, n, "%.*s/mpiexec", (int)len, path) < n && access(buf, X_OK) == 0)
            return 1;
        path = end ? end + 1 : NULL;
    }
    return 0;
}

/* The parent of `ember bench dlrm --ranks N`: runs `mpiexec -n K ember bench dlrm-ranks`
   for K = 1, 2, 4, ... and N, passes on their lines (one per plan) and adds, per plan,
   scaling = samples/s on K ranks over samples/s on 1. The ranks share this machine's
   cores (threads / K each). */
static ember_status run_ranks(const ember_bench_opts *o) {
    char mpx[1024], self[1024];
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK"))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "bench dlrm --ranks starts mpiexec itself: run it without mpirun "
                            "(or run `mpirun -n K ember bench dlrm-ranks`)");
    if (!find_mpiexec(mpx, sizeof mpx)) {
        fprintf(stderr, "ember bench dlrm --ranks: no mpiexec ($MPIEXEC unset and none on $PATH): skipped\n");
        return EMBER_OK;
    }
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return ember__error(EMBER_ERR_IO, "bench dlrm --ranks: cannot read /proc/self/exe");
    self[sl] = '\0';
    if (strchr(mpx, '\'') || strchr(self, '\''))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "bench dlrm --ranks: a quote in the path of mpiexec or ember");
    const int threads = ember_get_num_threads();
    double base[NPLANS] = {0};
    for (int K = 1; K <= o->ranks; K = K * 2 > o->ranks && K < o->ranks ? o->ranks : K * 2) {
        const int tpr = threads / K > 1 ? threads / K : 1;
        char cmd[2600];
        snprintf(cmd, sizeof cmd,
                 "'%s' --allow-run-as-root --oversubscribe --bind-to none -n %d '%s' --threads %d bench dlrm-ranks "
                 "--json%s%s",
                 mpx, K, self, tpr, o->quick ? " --quick" : "", o->tiny ? " --tiny" : "");
        fflush(stdout);
        FILE *pp = popen(cmd, "r");
        if (!pp) return ember__error(EMBER_ERR_IO, "bench dlrm --ranks: cannot start %s", mpx);
        char line[4096], want[NPLANS][96], name[NPLANS][64];
        double sps[NPLANS] = {0};
        for (int i = 0; i < NPLANS; i++) {
            snprintf(name[i], sizeof name[i], "ranks%d_%s", K, ember_plan_kind_name(RANK_PLANS[i]));
            snprintf(want[i], sizeof want[i], "\"case\":\"ranks%d_%s\"", K, ember_plan_kind_name(RANK_PLANS[i]));
        }
        while (fgets(line, sizeof line, pp)) {
            const char *v = strstr(line, "\"value\":");
            int i = 0;
            while (i < NPLANS && !strstr(line, want[i])) i++;
            if (i < NPLANS && strstr(line, "\"metric\":\"samples_per_s\"") && v) {
                sps[i] = strtod(v + 8, NULL);
                if (o->json) fputs(line, stdout);
                else ember_bench_emit(o, "dlrm", name[i], "samples_per_s", sps[i], "samples/s", "");
            } else {
                fputs(line, stderr); /* whatever else mpiexec or the ranks print */
            }
        }
        int rc = pclose(pp);
        for (int i = 0; i < NPLANS; i++)
            if (rc != 0 || !(sps[i] > 0))
                return ember__error(EMBER_ERR_IO, "bench dlrm --ranks: `%s` failed (status %d; %s: %g samples/s)",
                                    cmd, rc, name[i], sps[i]);
        for (int i = 0; i < NPLANS; i++) {
            if (K == 1) base[i] = sps[i];
            char params[512];
            snprintf(params, sizeof params,
                     "\"ranks\":%d,\"threads_per_rank\":%d,\"global_batch\":%lld,\"plan\":\"%s\","
                     "\"samples_per_s\":%.6g,\"samples_per_s_1rank\":%.6g,\"threads\":%d",
                     K, tpr, (long long)(ranks_batch(o, K) * K), ember_plan_kind_name(RANK_PLANS[i]), sps[i], base[i],
                     threads);
            ember_bench_emit(o, "dlrm", name[i], "scaling", sps[i] / base[i], "x", params);
        }
        if (K == o->ranks) break;
    }
    return EMBER_OK;
}

ember_status ember_bench_suite_dlrm(const ember_bench_opts *o) { return o->ranks > 0 ? run_ranks(o) : run_suite(o, "dlrm"); }
ember_status ember_bench_suite_dlrm_torchrec(const ember_bench_opts *o) { return run_suite(o, "dlrm-torchrec"); }
