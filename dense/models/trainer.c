/*
 * The DLRM training job: data, model, cache, the step loop with look-ahead, held-out
 * evaluation, metrics, checkpoints and exact resume.
 *
 * Look-ahead. The loader's batch is valid only until its next call, and the cache
 * reads a submitted batch's ids until that batch is prepared, so the loop copies each
 * batch into a ring of lookahead + 1 slots it owns, submits it to the cache (which
 * prepares it on its worker while earlier steps compute) and trains the oldest.
 *
 * Sync points. A checkpoint or an evaluation needs every submitted batch trained (the
 * rows are read where they live), so the loop never submits past the next sync
 * point: the queue drains there, the checkpoint sees exactly the state after step S,
 * and the loader's position is "S's epoch, batches consumed in it".
 *
 * Resume is exact because everything a step depends on is saved or recomputed: dense
 * parameters and optimizer state (model.safetensors), rows and their optimizer state
 * (per-table safetensors, or the LMDB store committed at the same step), the sparse
 * step counter, and the loader position (the shuffle is a pure function of seed and
 * epoch; resuming replays the epoch's batches up to the position without training).
 * What the cache held does not matter: training through it equals resident training.
 *
 * Write order of a checkpoint ckpt-S: tables, model.safetensors, train.conf, MANIFEST
 * (atomic rename; a directory without it is incomplete and ignored), then with LMDB
 * the store's durable commit at S. With LMDB, resume takes the directory of the
 * store's committed step (its MANIFEST was written before the commit; directories are
 * removed only after the next commit), so the dense and sparse halves always match.
 *
 * N ranks (mpirun). The communicator comes from ember_comm_create_default; the model
 * shards its tables and runs its dense half data parallel (ember/dlrm.h), and the loader
 * gives this rank its batch / N rows of each global batch, so every rank trains the same
 * number of steps. Everything that talks to the model is then collective and runs on
 * every rank in the same order: steps, evaluation batches (a rank whose slice of the
 * last held-out batch is empty still runs it, on a dummy row), table reads of a
 * checkpoint. Files are rank 0's: metrics, predictions, checkpoints (followed by a
 * barrier, so no rank runs ahead of a checkpoint that is not on disk yet).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"
#include "ember/checkpoint.h"
#include "ember/datasets.h"
#include "ember/ember.h"
#include "ember/profiler.h"
#include "ember/train.h"

#define NT EMBER_CRITEO_NUM_SPARSE
#define ND 13
#define MAXP 64

typedef struct slotbuf {
    float *dense;  /* (B, 13) */
    float *labels; /* (B) */
    int64_t *values[NT], cap[NT];
    int64_t *offsets[NT]; /* (B + 1) each */
    ember_jagged_feature f[NT];
    ember_jagged j;
} slotbuf;

struct ember_trainer {
    ember_train_config cfg;
    ember_train_log_fn log;
    void *log_user;
    char *paths[MAXP], *eval_paths[MAXP];
    int npaths, neval;
    char synth_prefix[EMBER_TRAIN_PATH_MAX + 128];
    ember_gen *gen;
    double bayes;
    int64_t rows[NT];
    ember_dlrm *m;
    ember_loader *loader;
    slotbuf *ring;
    int nring;
    FILE *metrics;
    /* position */
    int64_t step;     /* steps trained in all (the sparse optimizer's count) */
    int epoch;
    int64_t pos;      /* batches consumed in this epoch */
    int64_t resumed_from;
    int64_t steps_per_epoch; /* 0: unknown */
    /* this run */
    int64_t run_steps, run_samples;
    double run_loss, run_seconds;
    int evaluated;
    ember_metrics last_eval;
    ember_memory *mm; /* device-mem: the manager whose device tier holds the budget (NULL: default) */
    ember_comm *comm; /* the ranks (self without mpirun) */
    int rank, world;
    int64_t lb;       /* this rank's rows per batch: batch / world */
    ember_plan_kind plan; /* cfg.plan with auto resolved (choose_plan) */
    ember_freq *counts;   /* the warmup counts while the model is built (load_counts), then NULL */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void say(ember_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(ember_trainer *t, const char *fmt, ...) {
    if (!t->log || t->rank != 0) return; /* N ranks: rank 0 speaks for all */
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    t->log(buf, t->log_user);
}

static ember_status split_paths(const char *list, char **out, int *n, const char *what) {
    *n = 0;
    const char *s = list;
    while (*s) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        if (len) {
            if (*n == MAXP) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: more than %d paths", what, MAXP);
            char *p = strndup(s, len);
            if (!p) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", what);
            out[(*n)++] = p; /* owned by the caller from here, even on error */
            char probe[EMBER_TRAIN_PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s_dense.npy", p);
            if (access(p, R_OK) != 0 && access(probe, R_OK) != 0)
                return ember__error(EMBER_ERR_NOT_FOUND, "%s: %s is neither a readable file nor an npy prefix (%s)",
                                    what, p, probe);
        }
        s += len + (c ? 1 : 0);
    }
    if (!*n) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: no paths", what);
    return EMBER_OK;
}

static ember_status mkdirs(const char *path) {
    char buf[EMBER_TRAIN_PATH_MAX + 64];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ember__error(EMBER_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ember__error(EMBER_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    return EMBER_OK;
}

/* Text to path through a temporary file, fsync and rename: the file is old or new. */
static ember_status write_atomic(const char *path, const char *text) {
    char tmp[EMBER_TRAIN_PATH_MAX + 96];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ember__error(EMBER_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return ember__error(EMBER_ERR_IO, "writing %s: %s", tmp, strerror(e));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return ember__error(EMBER_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return ember__error(EMBER_ERR_IO, "rename %s to %s: %s", tmp, path, strerror(errno));
    }
    char dir[EMBER_TRAIN_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return EMBER_OK;
}

static ember_status read_text(const char *path, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ember__error(EMBER_ERR_NOT_FOUND, "cannot read %s: %s", path, strerror(errno));
    /* train.conf and MANIFEST, which ember writes: a few KiB */
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    int whole = buf && feof(f);
    fclose(f);
    if (!buf) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", path);
    if (!whole) {
        free(buf);
        return ember__error(EMBER_ERR_FORMAT, "%s: not a checkpoint file of ember's (64 KiB or more)", path);
    }
    buf[n] = '\0';
    *out = buf;
    return EMBER_OK;
}

/* ---- the batch ring ---- */

static void ring_free(ember_trainer *t) {
    for (int i = 0; t->ring && i < t->nring; i++) {
        slotbuf *s = &t->ring[i];
        free(s->dense);
        free(s->labels);
        for (int k = 0; k < NT; k++) free(s->values[k]), free(s->offsets[k]);
    }
    free(t->ring);
    t->ring = NULL;
}

static ember_status ring_alloc(ember_trainer *t) {
    int64_t B = t->lb;
    t->nring = t->cfg.lookahead + 1;
    t->ring = calloc((size_t)t->nring, sizeof *t->ring);
    if (!t->ring) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "trainer: batch ring");
    for (int i = 0; i < t->nring; i++) {
        slotbuf *s = &t->ring[i];
        s->dense = malloc((size_t)B * ND * sizeof *s->dense);
        s->labels = malloc((size_t)B * sizeof *s->labels);
        if (!s->dense || !s->labels) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "trainer: batch ring");
        for (int k = 0; k < NT; k++) {
            s->offsets[k] = malloc((size_t)(B + 1) * sizeof(int64_t));
            s->values[k] = malloc((size_t)B * sizeof(int64_t));
            s->cap[k] = B;
            if (!s->offsets[k] || !s->values[k]) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "trainer: batch ring");
        }
    }
    return EMBER_OK;
}

/* Copy a loader batch of B rows into s (padding a short one with its last row; an empty
   one, a rank's share of a short last held-out batch, becomes B zero rows without ids). */
static ember_status ring_fill(ember_trainer *t, slotbuf *s, const ember_batch *b) {
    int64_t B = t->lb, n = b->size;
    if (n == 0) {
        memset(s->dense, 0, (size_t)B * ND * sizeof *s->dense);
        memset(s->labels, 0, (size_t)B * sizeof *s->labels);
        for (int k = 0; k < NT; k++) {
            memset(s->offsets[k], 0, (size_t)(B + 1) * sizeof(int64_t));
            s->f[k] = (ember_jagged_feature){.values = s->values[k], .offsets = s->offsets[k], .length = 0};
        }
        s->j = (ember_jagged){.batch = B, .num_features = NT, .features = s->f};
        return EMBER_OK;
    }
    memcpy(s->dense, b->dense, (size_t)n * ND * sizeof *s->dense);
    memcpy(s->labels, b->labels, (size_t)n * sizeof *s->labels);
    for (int64_t i = n; i < B; i++) {
        memcpy(s->dense + i * ND, b->dense + (n - 1) * ND, ND * sizeof *s->dense);
        s->labels[i] = b->labels[n - 1];
    }
    for (int k = 0; k < NT; k++) {
        const int64_t *o = b->offsets[k];
        int64_t len = o[n], last = o[n] - o[n - 1], need = len + (B - n) * last;
        if (need > s->cap[k]) {
            int64_t *v = realloc(s->values[k], (size_t)need * sizeof *v);
            if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "trainer: batch of %lld ids", (long long)need);
            s->values[k] = v;
            s->cap[k] = need;
        }
        memcpy(s->values[k], b->values[k], (size_t)len * sizeof(int64_t));
        memcpy(s->offsets[k], o, (size_t)(n + 1) * sizeof(int64_t));
        for (int64_t i = n; i < B; i++) {
            memcpy(s->values[k] + s->offsets[k][i], b->values[k] + o[n - 1], (size_t)last * sizeof(int64_t));
            s->offsets[k][i + 1] = s->offsets[k][i] + last;
        }
        s->f[k] = (ember_jagged_feature){.values = s->values[k], .offsets = s->offsets[k], .length = need};
    }
    s->j = (ember_jagged){.batch = B, .num_features = NT, .features = s->f};
    return EMBER_OK;
}

/* ---- data ---- */

static ember_status open_loader(ember_trainer *t, int eval, char *const *paths, int npaths, ember_loader **out) {
    const ember_train_config *c = &t->cfg;
    ember_loader_params p = {.paths = (const char *const *)paths, .num_paths = npaths, .batch_size = t->lb,
                             .drop_last = !eval, .shuffle_buffer = eval ? 0 : c->shuffle, .seed = c->seed,
                             .table_rows = t->rows, .workers = 1, .rank = t->rank, .world = t->world};
    const char *synth[1] = {t->synth_prefix};
    if (!paths) { /* the synthetic set: training rows, then the held-out ones */
        p.paths = synth;
        p.num_paths = 1;
        p.row_begin = eval ? c->rows : 0;
        p.row_end = eval ? c->rows + c->eval_rows : c->rows;
    } else if (paths == t->paths && c->eval_split > 0 && !c->eval_data[0]) {
        p.holdout = c->eval_split;
        p.holdout_part = eval;
        p.holdout_seed = c->seed ^ 0x5EEDull;
    }
    return ember_loader_create(&p, out);
}

static ember_status prepare_data(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    t->bayes = NAN;
    if (!c->data[0]) {
        EMBER_TRY(ember_gen_create(&(ember_gen_params){.seed = c->seed, .scale = c->scale}, &t->gen));
        EMBER_TRY(mkdirs(c->data_dir));
        int64_t total = c->rows + c->eval_rows;
        snprintf(t->synth_prefix, sizeof t->synth_prefix, "%s/synthetic-r%lld-s%g-seed%llu", c->data_dir,
                 (long long)total, c->scale, (unsigned long long)c->seed);
        char probe[sizeof t->synth_prefix + 32];
        snprintf(probe, sizeof probe, "%s_labels.npy", t->synth_prefix);
        if (access(probe, R_OK) != 0) {
            say(t, "generating %lld synthetic rows into %s_*.npy (once)", (long long)total, t->synth_prefix);
            EMBER_TRY(ember_gen_write(t->gen, &(ember_gen_write_params){.path = t->synth_prefix,
                                                                        .format = EMBER_GEN_NPY, .rows = total}));
        } else {
            say(t, "using synthetic data in %s_*.npy", t->synth_prefix);
        }
        for (int k = 0; k < NT; k++) t->rows[k] = ember_gen_cardinality(t->gen, k);
        EMBER_TRY(ember_gen_bayes_auc(t->gen, total, &t->bayes));
        t->steps_per_epoch = c->rows / c->batch;
    } else {
        EMBER_TRY(split_paths(c->data, t->paths, &t->npaths, "data"));
        if (c->eval_data[0]) EMBER_TRY(split_paths(c->eval_data, t->eval_paths, &t->neval, "eval-data"));
        for (int k = 0; k < NT; k++) {
            double r = ceil((double)ember_criteo_kaggle_cardinalities[k] * c->scale);
            t->rows[k] = r < 1 ? 1 : (int64_t)r;
        }
        int64_t n = 0;
        for (int i = 0; i < t->npaths; i++) {
            ember_npy_triplet *tr;
            char probe[EMBER_TRAIN_PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s_dense.npy", t->paths[i]);
            if (access(probe, R_OK) != 0 || ember_npy_triplet_open(t->paths[i], &tr) != EMBER_OK) {
                n = -1; /* TSV: length unknown until read */
                break;
            }
            n += ember_npy_triplet_rows(tr);
            ember_npy_triplet_close(tr);
        }
        double keep = c->eval_data[0] ? 1.0 : 1.0 - c->eval_split;
        t->steps_per_epoch = n > 0 ? (int64_t)((double)n * keep) / c->batch : 0;
    }
    for (int k = 0; k < NT; k++)
        if (c->table_cap > 0 && t->rows[k] > c->table_cap) t->rows[k] = c->table_cap;
    return EMBER_OK;
}

/* ---- model ---- */

/* The last error again, prefixed with what and path (the counts file behind a bad count). */
static ember_status rewrap(ember_status st, const char *what, const char *path) {
    char why[1024];
    const char *e = ember_last_error(), *colon = strstr(e, ": ");
    snprintf(why, sizeof why, "%s", colon && strncmp(e, "EMBER_", 6) == 0 ? colon + 2 : e);
    return ember__error(st, "%s %s: %s", what, path, why);
}

/* The warmup counts, read once (every rank reads the same file): they feed the plan on
   N ranks (plan auto and minimax), rank the rows into precision tiers and warm the cache. */
static ember_status load_counts(ember_trainer *t) {
    if (t->counts || !t->cfg.warmup[0]) return EMBER_OK;
    return ember_freq_load(t->cfg.warmup, NULL, &t->counts);
}

/* The model's config without its cache and memory: one place for choose_plan and build_model,
   so that the plans compared are the plan trained with. */
static ember_dlrm_config model_config(const ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    ember_dlrm_config mc = {.num_dense = ND, .num_tables = NT, .table_rows = t->rows, .emb_dim = c->emb_dim,
                            .batch = t->lb, .seed = c->seed, .interaction = c->interaction,
                            .dcn_layers = c->interaction == EMBER_DLRM_DCN ? c->dcn_layers : 0,
                            .dcn_rank = c->interaction == EMBER_DLRM_DCN ? c->dcn_rank : 0,
                            .comm = t->comm, .plan = t->plan, .freq = t->world > 1 ? t->counts : NULL};
    memcpy(mc.bottom, c->bottom, sizeof mc.bottom);
    memcpy(mc.top, c->top, sizeof mc.top);
    mc.sparse_lr = c->sparse_lr > 0 ? c->sparse_lr : c->lr;
    mc.dense_optim = ember_optimizer_defaults(c->optimizer);
    mc.dense_optim.lr = c->lr;
    static const ember_sparse_optim follow[EMBER_OPTIM_KIND_COUNT] = {
        [EMBER_OPTIM_SGD] = EMBER_SPARSE_OPTIM_SGD, [EMBER_OPTIM_ADAGRAD] = EMBER_SPARSE_OPTIM_ADAGRAD,
        [EMBER_OPTIM_ADAM] = EMBER_SPARSE_OPTIM_ADAM, [EMBER_OPTIM_ADAMW] = EMBER_SPARSE_OPTIM_ADAMW};
    mc.sparse_optim.type = c->sparse_optimizer >= 0 ? (ember_sparse_optim)c->sparse_optimizer : follow[c->optimizer];
    if (mc.sparse_optim.type == EMBER_SPARSE_OPTIM_ADAMW) mc.sparse_optim.weight_decay = mc.dense_optim.weight_decay;
    return mc;
}

static ember_status build_model(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    /* the counts: for the cache (one process), or for a minimax plan (N ranks; the cache is off) */
    if (c->cache_ratio > 0 || (t->world > 1 && t->plan == EMBER_PLAN_MINIMAX)) EMBER_TRY(load_counts(t));
    ember_dlrm_config mc = model_config(t);
    ember_cache_config cc = {.ratio = c->cache_ratio, .policy = c->cache_policy, .lookahead = c->lookahead,
                             /* every batch in flight must fit: small tables end up wholly cached */
                             .min_slots = c->batch * (c->lookahead + 1)};
    if (c->lmdb[0]) {
        cc.store = EMBER_CACHE_STORE_LMDB;
        cc.path = c->lmdb;
        cc.open = c->resume ? EMBER_CACHE_OPEN_EXISTING : EMBER_CACHE_OPEN_CREATE;
        cc.host_ratio = c->host_ratio;
        mc.keep_tables = c->resume; /* the store holds the checkpoint's rows */
    }
    if (c->cache_ratio > 0) mc.cache = &cc;
    ember_cache_tiers tiers = {.hot = c->tier_hot, .warm = c->tier_warm, .rounding = c->tier_rounding,
                               .seed = c->seed ^ 0x7135ull};
    ember_freq *freq = t->counts;
    if (mc.cache && (c->tier_hot > 0 || c->tier_warm > 0)) {
        tiers.counts = freq; /* validate made sure there are counts and the host store */
        cc.tiers = &tiers;
    }
    if (c->device_mem > 0) {
        /* one device budget for the cache's slots, the dense layers and the activations */
        EMBER_TRY(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU,
                                                             .budget = {[EMBER_TIER_DEVICE] = (size_t)c->device_mem}},
                                      &t->mm));
        mc.mm = cc.mm = t->mm;
        mc.tier = EMBER_TIER_DEVICE;
    }
    ember_status st = ember_dlrm_create(&mc, &t->m);
    if (st == EMBER_OK && freq && mc.cache) st = ember_cache_warmup_counts(ember_dlrm_cache(t->m), freq);
    if (st != EMBER_OK && freq) st = rewrap(st, "warmup counts", c->warmup);
    ember_freq_destroy(t->counts);
    t->counts = NULL;
    return st;
}

/* plan = auto on N ranks: table-wise, row-wise or minimax, whichever predicts the lowest
   maximum lookups per rank from the warmup counts (ember_dlrm_plan_choose builds the plans
   the model would build); without counts row-wise. Every rank reads the same counts and
   so makes the same choice. */
static ember_status choose_plan(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    t->plan = c->plan == EMBER_TRAIN_PLAN_AUTO ? EMBER_PLAN_TABLEWISE : (ember_plan_kind)c->plan;
    if (c->plan != EMBER_TRAIN_PLAN_AUTO || t->world < 2) return EMBER_OK;
    if (!c->warmup[0]) {
        t->plan = EMBER_PLAN_ROWWISE;
        say(t, "plan auto: rowwise (no warmup counts to predict the loads; uniform ids spread evenly over row ranges)");
        return EMBER_OK;
    }
    EMBER_TRY(load_counts(t));
    static const ember_plan_kind kinds[3] = {EMBER_PLAN_TABLEWISE, EMBER_PLAN_ROWWISE, EMBER_PLAN_MINIMAX};
    ember_plan_stats ps[3];
    ember_dlrm_config mc = model_config(t);
    ember_status st = ember_dlrm_plan_choose(&mc, t->world, kinds, 3, &t->plan, ps);
    if (st != EMBER_OK) return rewrap(st, "plan auto: warmup counts", c->warmup);
    say(t, "plan auto on %d ranks: max lookups per rank (imbalance) tablewise %.0f (%.2f), rowwise %.0f (%.2f), "
           "minimax %.0f (%.2f; %lld hot and %lld replicated rows), by the counts in %s: %s",
        t->world, ps[0].max_lookups, ps[0].imbalance, ps[1].max_lookups, ps[1].imbalance, ps[2].max_lookups,
        ps[2].imbalance, (long long)ps[2].hot_blocks, (long long)ps[2].replicated_blocks, c->warmup,
        ember_plan_kind_name(t->plan));
    return EMBER_OK;
}

/* ---- checkpoints ---- */

static ember_status dense_tensors(ember_trainer *t, ember_named_tensor **out, int *n) {
    ember_graph *g = ember_dlrm_graph(t->m);
    int count = ember_graph_node_count(g), k = 0;
    ember_named_tensor *v = calloc((size_t)count + 1, sizeof *v);
    if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "checkpoint");
    for (int i = 0; i < count; i++) {
        ember_node_info info;
        ember_node *node;
        ember_status st = ember_graph_node_info(g, i, &info);
        if (st == EMBER_OK && strcmp(info.op, "param") == 0) {
            st = ember_graph_find(g, info.name, &node);
            if (st == EMBER_OK) st = ember_node_value(node, &v[k].tensor);
            v[k++].name = info.name;
        }
        if (st != EMBER_OK) {
            free(v);
            return st;
        }
    }
    *out = v;
    *n = k;
    return EMBER_OK;
}

static ember_status table_file(ember_trainer *t, const char *dir, int k, int save) {
    char path[EMBER_TRAIN_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/table%02d.safetensors", dir, k);
    int64_t rows = ember_dlrm_table_rows(t->m, k), d = ember_dlrm_table_dim(t->m, k),
            sf = ember_dlrm_state_floats(t->m, k);
    float *w = malloc((size_t)(rows * d) * sizeof *w), *s = malloc((size_t)(rows * (sf ? sf : 1)) * sizeof *s);
    ember_tensor *tw = NULL, *ts = NULL;
    ember_status st = w && s ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "checkpoint: table %d", k);
    if (st == EMBER_OK) st = ember_tensor_wrap(w, EMBER_DTYPE_F32, 2, (int64_t[]){rows, d}, NULL, EMBER_CPU, &tw);
    if (st == EMBER_OK && sf) st = ember_tensor_wrap(s, EMBER_DTYPE_F32, 2, (int64_t[]){rows, sf}, NULL, EMBER_CPU, &ts);
    if (save) {
        /* collective on N ranks: every rank reads, rank 0 writes */
        if (st == EMBER_OK) st = ember_dlrm_read_table(t->m, k, 0, rows, w, sf ? s : NULL);
        ember_named_tensor nt[2] = {{"weight", tw}, {"state", ts}};
        if (st == EMBER_OK && t->rank == 0) st = ember_safetensors_write(path, nt, sf ? 2 : 1, NULL, 0);
    } else {
        ember_safetensors *f = NULL;
        if (st == EMBER_OK) st = ember_safetensors_open(path, &f);
        if (st == EMBER_OK) st = ember_safetensors_read(f, "weight", tw);
        if (st == EMBER_OK && sf) st = ember_safetensors_read(f, "state", ts);
        ember_safetensors_close(f);
        if (st == EMBER_OK) st = ember_dlrm_write_table(t->m, k, 0, rows, w, sf ? s : NULL);
    }
    ember_tensor_destroy(tw);
    ember_tensor_destroy(ts);
    free(w);
    free(s);
    return st;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[EMBER_TRAIN_PATH_MAX + 300];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* Newest ckpt-N with a MANIFEST (or exactly step want >= 0); -1 if none. */
static int64_t find_checkpoint(const char *root, int64_t want) {
    DIR *d = opendir(root);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "ckpt-%lld%c", &s, &tail) != 1) continue;
        char p[EMBER_TRAIN_PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s/MANIFEST", root, e->d_name);
        if (access(p, R_OK) != 0) continue;
        if (want >= 0 ? s == want : s > best) best = s;
    }
    closedir(d);
    return best;
}

static ember_status checkpoint_rest(ember_trainer *t, const char *dir);

ember_status ember_trainer_checkpoint(ember_trainer *t) {
    static const char fn[] = "ember_trainer_checkpoint";
    EMBER_CHECK_NULL(t, fn);
    const ember_train_config *c = &t->cfg;
    if (!c->checkpoint_dir[0]) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: no checkpoint-dir", fn);
    char dir[EMBER_TRAIN_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/ckpt-%lld", c->checkpoint_dir, (long long)t->step);
    if (t->world > 1) {
        /* the tables are read collectively; the files are rank 0's; nobody goes on before
           they are complete. A failure on rank 0 still reaches the barrier. */
        ember_status st = EMBER_OK;
        if (t->rank == 0) {
            remove_tree(dir);
            st = mkdirs(dir);
        }
        for (int k = 0; k < NT; k++) {
            ember_status ts = table_file(t, dir, k, 1);
            if (st == EMBER_OK) st = ts;
        }
        if (st == EMBER_OK && t->rank == 0) st = checkpoint_rest(t, dir);
        ember_status bs = ember_comm_barrier(t->comm, NULL);
        return st != EMBER_OK ? st : bs;
    }
    remove_tree(dir); /* an incomplete attempt at the same step */
    EMBER_TRY(mkdirs(dir));
    if (!c->lmdb[0])
        for (int k = 0; k < NT; k++) EMBER_TRY(table_file(t, dir, k, 1));
    return checkpoint_rest(t, dir);
}

/* After the tables: the dense half, the config, the MANIFEST, and old checkpoints removed. */
static ember_status checkpoint_rest(ember_trainer *t, const char *dir) {
    static const char fn[] = "ember_trainer_checkpoint";
    const ember_train_config *c = &t->cfg;
    char path[EMBER_TRAIN_PATH_MAX + 128];
    ember_named_tensor *nt;
    int n;
    EMBER_TRY(dense_tensors(t, &nt, &n));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ember_status st = ember_checkpoint_save(path, nt, n, ember_dlrm_optimizer(t->m));
    free(nt);
    EMBER_TRY(st);
    size_t len = ember_train_config_format(c, NULL, 0);
    char *text = malloc(len + 1);
    if (!text) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    ember_train_config_format(c, text, len + 1);
    snprintf(path, sizeof path, "%s/train.conf", dir);
    st = write_atomic(path, text);
    free(text);
    EMBER_TRY(st);
    char man[512];
    snprintf(man, sizeof man,
             "# ember training checkpoint\nformat = 1\nstep = %lld\nepoch = %d\nposition = %lld\nembeddings = %s\n",
             (long long)t->step, t->epoch, (long long)t->pos, c->lmdb[0] ? "lmdb" : "safetensors");
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    EMBER_TRY(write_atomic(path, man));
    if (c->lmdb[0]) EMBER_TRY(ember_cache_checkpoint(ember_dlrm_cache(t->m), t->step));
    /* the older checkpoints are superseded */
    DIR *d = opendir(c->checkpoint_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long long s;
        if (sscanf(e->d_name, "ckpt-%lld", &s) == 1 && s != t->step) {
            snprintf(path, sizeof path, "%.*s/%.64s", EMBER_TRAIN_PATH_MAX - 1, c->checkpoint_dir, e->d_name);
            remove_tree(path);
        }
    }
    if (d) closedir(d);
    return EMBER_OK;
}

static ember_status manifest_get(const char *text, const char *key, long long *v, const char *path) {
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s = ", key);
    const char *p = strstr(text, pat);
    if (!p || sscanf(p + strlen(pat), "%lld", v) != 1)
        return ember__error(EMBER_ERR_FORMAT, "checkpoint %s: no '%s' in the MANIFEST", path, key);
    return EMBER_OK;
}

ember_status ember_train_checkpoint_config(const char *root, ember_train_config *cfg) {
    EMBER_CHECK_NULL(root, "ember_train_checkpoint_config");
    EMBER_CHECK_NULL(cfg, "ember_train_checkpoint_config");
    int64_t s = find_checkpoint(root, -1);
    if (s < 0) return ember__error(EMBER_ERR_NOT_FOUND, "no complete checkpoint (ckpt-N/MANIFEST) in %s", root);
    char path[EMBER_TRAIN_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/ckpt-%lld/train.conf", root, (long long)s);
    ember_train_config_defaults(cfg);
    ember_status st = ember_train_config_load(cfg, path);
    if (st == EMBER_OK) snprintf(cfg->checkpoint_dir, sizeof cfg->checkpoint_dir, "%s", root);
    return st;
}

/* Keys that decide the trained weights: a resumed run must agree on all of them. */
static const char *const MODEL_KEYS[] = {"data", "eval-split", "rows", "scale", "table-cap", "shuffle", "seed",
                                         "emb-dim", "bottom", "top", "interaction", "dcn-layers", "dcn-rank",
                                         "batch", "lr", "sparse-lr", "optimizer", "sparse-optimizer"};

static const char *line_of(const char *text, const char *key, char *buf, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "%s = ", key);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, pat, strlen(pat)) == 0) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len >= n) len = n - 1;
            memcpy(buf, p, len);
            buf[len] = '\0';
            return buf;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return "";
}

static ember_status resume(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    int64_t want = -1;
    if (c->lmdb[0]) {
        want = ember_cache_checkpoint_step(ember_dlrm_cache(t->m));
        if (want < 0) return ember__error(EMBER_ERR_NOT_FOUND, "resume: the LMDB store %s has no checkpoint", c->lmdb);
    }
    int64_t s = find_checkpoint(c->checkpoint_dir, want);
    if (s < 0)
        return ember__error(EMBER_ERR_NOT_FOUND, "resume: no complete checkpoint%s in %s", want >= 0 ? " of the LMDB store's step" : "",
                            c->checkpoint_dir);
    char dir[EMBER_TRAIN_PATH_MAX + 64], path[EMBER_TRAIN_PATH_MAX + 128], *text = NULL, *man = NULL;
    snprintf(dir, sizeof dir, "%s/ckpt-%lld", c->checkpoint_dir, (long long)s);
    snprintf(path, sizeof path, "%s/train.conf", dir);
    EMBER_TRY(read_text(path, &text));
    size_t len = ember_train_config_format(c, NULL, 0);
    char *mine = malloc(len + 1);
    ember_status st = mine ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "resume");
    if (mine) ember_train_config_format(c, mine, len + 1);
    for (size_t i = 0; st == EMBER_OK && i < sizeof MODEL_KEYS / sizeof *MODEL_KEYS; i++) {
        char a[EMBER_TRAIN_PATH_MAX + 64], b[EMBER_TRAIN_PATH_MAX + 64];
        const char *x = line_of(text, MODEL_KEYS[i], a, sizeof a), *y = line_of(mine, MODEL_KEYS[i], b, sizeof b);
        if (strcmp(x, y) != 0)
            st = ember__error(EMBER_ERR_STATE, "resume: %s was trained with '%s'; this run has '%s'", dir, x, y);
    }
    free(mine);
    free(text);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    if (st == EMBER_OK) st = read_text(path, &man);
    long long step = 0, epoch = 0, pos = 0;
    if (st == EMBER_OK) st = manifest_get(man, "step", &step, dir);
    if (st == EMBER_OK) st = manifest_get(man, "epoch", &epoch, dir);
    if (st == EMBER_OK) st = manifest_get(man, "position", &pos, dir);
    free(man);
    EMBER_TRY(st);
    ember_named_tensor *nt;
    int n;
    EMBER_TRY(dense_tensors(t, &nt, &n));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st = ember_checkpoint_load(path, nt, n, ember_dlrm_optimizer(t->m));
    free(nt);
    EMBER_TRY(st);
    if (!c->lmdb[0])
        for (int k = 0; k < NT; k++) EMBER_TRY(table_file(t, dir, k, 0));
    EMBER_TRY(ember_dlrm_set_step(t->m, step));
    t->step = step;
    t->epoch = (int)epoch;
    t->pos = pos;
    t->resumed_from = step;
    say(t, "resumed from %s: step %lld, epoch %lld, batch %lld of the epoch", dir, step, epoch, pos);
    return EMBER_OK;
}

/* ---- create / destroy ---- */

ember_status ember_trainer_create(const ember_train_config *cfg, ember_train_log_fn log, void *log_user,
                                  ember_trainer **out) {
    static const char fn[] = "ember_trainer_create";
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_TRY(ember_train_config_validate(cfg));
    ember_trainer *t = calloc(1, sizeof *t);
    if (!t) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    t->cfg = *cfg;
    t->log = log;
    t->log_user = log_user;
    t->resumed_from = -1;
    if (cfg->threads > 0) ember_set_num_threads(cfg->threads);
    ember_status st = ember_comm_create_default(NULL, &t->comm);
    t->rank = ember_comm_rank(t->comm);
    t->world = ember_comm_size(t->comm);
    t->lb = cfg->batch;
    if (st == EMBER_OK && t->world > 1) {
        if (cfg->batch % t->world)
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT,
                              "%s: batch %lld is the global batch and must be a multiple of the %d ranks", fn,
                              (long long)cfg->batch, t->world);
        else if (cfg->cache_ratio > 0 &&
                 (cfg->lmdb[0] || cfg->tier_hot > 0 || cfg->tier_warm > 0 ||
                  (cfg->warmup[0] && cfg->plan != EMBER_TRAIN_PLAN_AUTO && cfg->plan != EMBER_PLAN_MINIMAX)))
            st = ember__error(EMBER_ERR_UNSUPPORTED,
                              "%s: %s needs the embedding cache, which is not supported on %d ranks yet (the "
                              "tables are sharded over the ranks, resident)",
                              fn, cfg->lmdb[0] ? "lmdb" : cfg->tier_hot > 0 ? "tier-hot"
                                                 : cfg->tier_warm > 0  ? "tier-warm" : "warmup",
                              t->world);
        else if (cfg->cache_ratio > 0) {
            /* Departure from DESIGN.md section 8 (each shard behind its own cache): not yet.
               The shards stay resident; training is the same either way (the cache never
               changes results), only the memory differs. */
            t->cfg.cache_ratio = 0;
            if (t->rank == 0)
                say(t, "cache-ratio %g ignored on %d ranks: each rank keeps its shard of the tables resident",
                    cfg->cache_ratio, t->world);
        }
        t->lb = cfg->batch / t->world;
    }
    if (st == EMBER_OK && cfg->checkpoint_dir[0] && !cfg->resume) st = mkdirs(cfg->checkpoint_dir);
    if (st == EMBER_OK && cfg->resume && find_checkpoint(cfg->checkpoint_dir, -1) < 0)
        st = ember__error(EMBER_ERR_NOT_FOUND, "resume: no complete checkpoint (ckpt-N/MANIFEST) in %s",
                          cfg->checkpoint_dir);
    if (st == EMBER_OK && cfg->metrics[0] && t->rank == 0) {
        t->metrics = fopen(cfg->metrics, cfg->resume ? "a" : "w");
        if (!t->metrics) st = ember__error(EMBER_ERR_IO, "metrics file %s: %s", cfg->metrics, strerror(errno));
    }
    if (t->world > 1) {
        /* rank 0 generates the synthetic set (once), the others then find it */
        if (st == EMBER_OK && t->rank == 0) st = prepare_data(t);
        ember_status bs = ember_comm_barrier(t->comm, NULL);
        if (st == EMBER_OK) st = bs;
        if (st == EMBER_OK && t->rank != 0) st = prepare_data(t);
    } else if (st == EMBER_OK) {
        st = prepare_data(t);
    }
    if (st == EMBER_OK) st = choose_plan(t);
    if (st == EMBER_OK) st = build_model(t);
    if (st == EMBER_OK && cfg->resume) st = resume(t);
    if (st == EMBER_OK) st = ring_alloc(t);
    if (st != EMBER_OK) {
        ember_trainer_destroy(t);
        return st;
    }
    *out = t;
    return EMBER_OK;
}

void ember_trainer_destroy(ember_trainer *t) {
    if (!t) return;
    ember_loader_destroy(t->loader);
    ember_dlrm_destroy(t->m);
    ember_freq_destroy(t->counts); /* still held only when creation failed before the model was built */
    ember_comm_destroy(t->comm); /* after the model, which uses it; finalizes MPI */
    ember_gen_destroy(t->gen);
    ring_free(t);
    ember_memory_destroy(t->mm);
    if (t->metrics) fclose(t->metrics);
    for (int i = 0; i < t->npaths; i++) free(t->paths[i]);
    for (int i = 0; i < t->neval; i++) free(t->eval_paths[i]);
    free(t);
}

ember_dlrm *ember_trainer_model(ember_trainer *t) { return t ? t->m : NULL; }
int ember_trainer_rank(const ember_trainer *t) { return t ? t->rank : 0; }
int ember_trainer_world(const ember_trainer *t) { return t && t->world > 1 ? t->world : 1; }
const ember_train_config *ember_trainer_config(const ember_trainer *t) { return t ? &t->cfg : NULL; }

/* ---- evaluation ---- */

typedef struct scored {
    float *probs, *labels;
    int64_t n, cap;
    FILE *out;
} scored;

static ember_status score(ember_trainer *t, const char *path, scored *sc) {
    char *pp[MAXP];
    int np = 0;
    char *const *paths = t->npaths ? t->paths : NULL; /* NULL: synthetic */
    int npaths = t->npaths;
    ember_status st = EMBER_OK;
    if (path) {
        st = split_paths(path, pp, &np, "eval");
        paths = pp;
        npaths = np;
    } else if (t->neval) {
        paths = t->eval_paths;
        npaths = t->neval;
    }
    ember_loader *l = NULL;
    /* the held-out split applies only to the training paths themselves (open_loader) */
    if (st == EMBER_OK) st = open_loader(t, 1, paths, npaths, &l);
    /* probs (B) and, on N ranks, the gathered batch: N slices of lb probs and labels */
    float *probs = malloc((size_t)t->cfg.batch * 2 * sizeof *probs);
    float *gath = t->world > 1 ? malloc((size_t)t->cfg.batch * 2 * sizeof *gath) : NULL;
    int64_t *counts = t->world > 1 ? malloc((size_t)t->world * sizeof *counts) : NULL;
    if ((!probs || (t->world > 1 && (!gath || !counts))) && st == EMBER_OK) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "eval");
    slotbuf *s = &t->ring[0];
    const ember_batch *b;
    while (st == EMBER_OK && (st = ember_loader_next(l, &b)) == EMBER_OK && b) {
        if (!b->size && t->world == 1) continue;
        st = ring_fill(t, s, b);
        if (st == EMBER_OK) st = ember_dlrm_predict(t->m, s->dense, &s->j, probs);
        if (st != EMBER_OK) break;
        ember_batch gb = {.size = b->size, .labels = b->labels};
        if (t->world > 1) {
            /* every rank's slice in rank order: the global batch's rows in file order */
            int64_t lb = t->lb, n = b->size;
            memcpy(probs + lb, s->labels, (size_t)lb * sizeof *probs);
            st = ember_comm_all_gather(t->comm, &n, counts, 1, EMBER_DTYPE_I64, NULL);
            if (st == EMBER_OK) st = ember_comm_all_gather(t->comm, probs, gath, 2 * lb, EMBER_DTYPE_F32, NULL);
            if (st != EMBER_OK) break;
            int64_t k = 0;
            for (int r = 0; r < t->world; r++) /* probs first, labels after them */
                for (int64_t i = 0; i < counts[r]; i++, k++) probs[k] = gath[r * 2 * lb + i];
            float *labels = probs + t->cfg.batch;
            k = 0;
            for (int r = 0; r < t->world; r++)
                for (int64_t i = 0; i < counts[r]; i++, k++) labels[k] = gath[r * 2 * lb + lb + i];
            gb = (ember_batch){.size = k, .labels = labels};
            b = &gb;
            if (sc->out && t->rank != 0) {
                sc->n += k;
                continue;
            }
        }
        if (sc->out) {
            for (int64_t i = 0; i < b->size; i++) fprintf(sc->out, "%.6f\n", probs[i]);
            sc->n += b->size;
            continue;
        }
        if (sc->n + b->size > sc->cap) {
            int64_t cap = (sc->cap ? sc->cap * 2 : 1 << 16) + b->size;
            float *p = realloc(sc->probs, (size_t)cap * sizeof *p), *q = p ? realloc(sc->labels, (size_t)cap * sizeof *q) : NULL;
            if (p) sc->probs = p;
            if (q) sc->labels = q;
            if (!p || !q) {
                st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "eval: %lld rows", (long long)cap);
                break;
            }
            sc->cap = cap;
        }
        memcpy(sc->probs + sc->n, probs, (size_t)b->size * sizeof *probs);
        memcpy(sc->labels + sc->n, b->labels, (size_t)b->size * sizeof *probs);
        sc->n += b->size;
    }
    free(probs);
    free(gath);
    free(counts);
    ember_loader_destroy(l);
    for (int i = 0; i < np; i++) free(pp[i]);
    return st;
}

ember_status ember_trainer_evaluate(ember_trainer *t, const char *path, ember_metrics *out) {
    static const char fn[] = "ember_trainer_evaluate";
    EMBER_CHECK_NULL(t, fn);
    EMBER_CHECK_NULL(out, fn);
    if (!path && !t->gen && !t->neval && !(t->cfg.eval_split > 0))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: no held-out rows (set eval-data or eval-split)", fn);
    scored sc = {0};
    ember_status st = score(t, path, &sc);
    if (st == EMBER_OK && !sc.n) st = ember__error(EMBER_ERR_NOT_FOUND, "%s: no held-out rows were read", fn);
    if (st == EMBER_OK) st = ember_metrics_compute(sc.probs, sc.labels, sc.n, out);
    free(sc.probs);
    free(sc.labels);
    if (st == EMBER_OK) {
        t->evaluated = 1;
        t->last_eval = *out;
    }
    return st;
}

ember_status ember_trainer_predict(ember_trainer *t, const char *path, FILE *out, int64_t *rows) {
    static const char fn[] = "ember_trainer_predict";
    EMBER_CHECK_NULL(t, fn);
    EMBER_CHECK_NULL(path, fn);
    EMBER_CHECK_NULL(out, fn);
    scored sc = {.out = out};
    ember_status st = score(t, path, &sc);
    if (rows) *rows = sc.n;
    if (st == EMBER_OK && ferror(out)) st = ember__error(EMBER_ERR_IO, "%s: writing the predictions failed", fn);
    return st;
}

/* ---- training ---- */

static double hit_rate(ember_trainer *t) {
    ember_cache *c = ember_dlrm_cache(t->m);
    ember_cache_stats s;
    if (!c || ember_cache_get_stats(c, &s) != EMBER_OK || !s.lookups) return NAN;
    return s.hit_rate;
}

static ember_status eval_point(ember_trainer *t) {
    ember_metrics m;
    EMBER_TRY(ember_trainer_evaluate(t, NULL, &m));
    if (t->metrics) {
        char auc[32] = "null"; /* NaN (one class only) is not JSON */
        if (!isnan(m.auc)) snprintf(auc, sizeof auc, "%.6f", m.auc);
        fprintf(t->metrics, "{\"step\":%lld,\"epoch\":%d,\"auc\":%s,\"logloss\":%.6f,\"accuracy\":%.6f,\"eval_rows\":%lld}\n",
                (long long)t->step, t->epoch, auc, m.logloss, m.accuracy, (long long)m.samples);
        fflush(t->metrics);
    }
    return EMBER_OK;
}

/* Train the oldest batch of the ring and count it. */
static ember_status train_oldest(ember_trainer *t, int64_t *head, int64_t *q, float *loss) {
    slotbuf *s = &t->ring[*head];
    ember_profiler_begin("train_step");
    ember_status st = ember_dlrm_train_step(t->m, s->dense, &s->j, s->labels, loss);
    ember_profiler_end();
    if (st != EMBER_OK) return st;
    *head = (*head + 1) % t->nring;
    (*q)--;
    t->step++;
    t->run_steps++;
    t->run_samples += t->cfg.batch;
    t->run_loss += *loss;
    return EMBER_OK;
}

static int64_t next_multiple(int64_t step, int64_t every) { return every > 0 ? (step / every + 1) * every : INT64_MAX; }

static ember_status run_steps(ember_trainer *t, ember_train_callback cb, void *user) {
    static const char fn[] = "ember_trainer_run";
    const ember_train_config *c = &t->cfg;
    int have_eval = t->gen || t->neval || c->eval_split > 0;
    if (!t->loader) {
        EMBER_TRY(open_loader(t, 0, t->npaths ? t->paths : NULL, t->npaths, &t->loader));
        if (t->epoch > 0) EMBER_TRY(ember_loader_start_epoch(t->loader, t->epoch));
        for (int64_t i = 0; i < t->pos; i++) { /* replay to the resumed position */
            const ember_batch *b;
            EMBER_TRY(ember_loader_next(t->loader, &b));
            if (!b) break;
        }
    }
    int64_t planned = t->steps_per_epoch * c->epochs;
    if (c->max_steps && (!planned || planned > c->max_steps)) planned = c->max_steps;
    double t0 = now_s(), window_loss = 0;
    int64_t window = 0, q = 0, head = 0, start_samples = t->run_samples;
    int epoch_done = 0, cancelled = 0;
    ember_status st = EMBER_OK;
    ember_cache *cache = ember_dlrm_cache(t->m);
    if (cache) ember_cache_reset_stats(cache);
    while (st == EMBER_OK && t->epoch < c->epochs) {
        int64_t sync = next_multiple(t->step, c->checkpoint_dir[0] ? c->checkpoint_every : 0);
        int64_t ev = have_eval ? next_multiple(t->step, c->eval_every) : INT64_MAX;
        if (ev < sync) sync = ev;
        if (c->max_steps && c->max_steps < sync) sync = c->max_steps;
        if (c->max_steps && t->step >= c->max_steps) break;
        /* fill the ring up to the next sync point */
        while (st == EMBER_OK && !epoch_done && !cancelled && q < t->nring && t->step + q < sync) {
            const ember_batch *b;
            st = ember_loader_next(t->loader, &b);
            if (st != EMBER_OK) break;
            if (!b) {
                epoch_done = 1;
                break;
            }
            t->pos++;
            if (b->size != t->lb) continue;
            slotbuf *s = &t->ring[(head + q) % t->nring];
            st = ring_fill(t, s, b);
            if (st == EMBER_OK) st = ember_dlrm_submit(t->m, &s->j);
            if (st == EMBER_OK) q++;
        }
        if (st != EMBER_OK) break;
        if (q == 0) {
            if (cancelled) break;
            if (epoch_done) {
                if (t->epoch + 1 >= c->epochs) break;
                t->epoch++;
                t->pos = 0;
                epoch_done = 0;
                st = ember_loader_start_epoch(t->loader, t->epoch);
                continue;
            }
            continue; /* at a sync point that was already handled: recompute it */
        }
        float loss = 0;
        st = train_oldest(t, &head, &q, &loss);
        if (st != EMBER_OK) break;
        window_loss += loss;
        window++;
        double el = now_s() - t0, rate = (double)(t->run_samples - start_samples) / (el > 0 ? el : 1e-9);
        if (t->metrics && (t->step % c->metrics_every == 0)) {
            double hr = hit_rate(t);
            fprintf(t->metrics, "{\"step\":%lld,\"epoch\":%d,\"loss\":%.6f,\"samples_per_s\":%.1f", (long long)t->step,
                    t->epoch, window_loss / (double)window, rate);
            if (!isnan(hr)) fprintf(t->metrics, ",\"hit_rate\":%.6f", hr);
            fprintf(t->metrics, "}\n");
            fflush(t->metrics); /* pipelines tail the file */
            window_loss = 0;
            window = 0;
        }
        if (cb) {
            int64_t left = planned ? planned - t->step : -1;
            ember_train_progress p = {.step = t->step, .steps = planned, .epoch = t->epoch,
                                      .samples = t->run_samples, .loss = loss, .samples_per_s = rate,
                                      .eta_s = left >= 0 ? (double)left * (double)c->batch / rate : NAN,
                                      .hit_rate = hit_rate(t)};
            if (cb(&p, user)) cancelled = 1; /* train what is already submitted, then stop */
        }
        if (q == 0 && t->step == sync) {
            if (c->checkpoint_dir[0] && c->checkpoint_every && t->step % c->checkpoint_every == 0)
                st = ember_trainer_checkpoint(t);
            if (st == EMBER_OK && have_eval && c->eval_every && t->step % c->eval_every == 0) st = eval_point(t);
        }
    }
    /* drain (an error or a cancel may leave batches submitted) */
    while (st == EMBER_OK && q > 0) {
        float loss;
        st = train_oldest(t, &head, &q, &loss);
    }
    t->run_seconds += now_s() - t0;
    if (t->metrics) fflush(t->metrics);
    if (st == EMBER_OK && c->checkpoint_dir[0]) st = ember_trainer_checkpoint(t);
    if (st == EMBER_OK && cancelled) return ember__error(EMBER_ERR_CANCELLED, "%s: stopped at step %lld", fn, (long long)t->step);
    if (st == EMBER_OK && have_eval && !(c->eval_every && t->step % c->eval_every == 0 && t->evaluated))
        st = eval_point(t);
    return st;
}

/* With `profile`: the run under the profiler, its trace and summary written even when
   the run fails or is cancelled (that is when they are wanted most). A path that cannot
   be written fails before any step. */
ember_status ember_trainer_run(ember_trainer *t, ember_train_callback cb, void *user) {
    static const char fn[] = "ember_trainer_run";
    EMBER_CHECK_NULL(t, fn);
    const char *trace = t->cfg.profile;
    if (!trace[0] || t->rank != 0) return run_steps(t, cb, user); /* N ranks: rank 0's trace */
    char summary[EMBER_TRAIN_PATH_MAX + 8];
    snprintf(summary, sizeof summary, "%s.txt", trace);
    for (int i = 0; i < 2; i++) {
        const char *p = i ? summary : trace;
        FILE *f = fopen(p, "w");
        if (!f) return ember__error(EMBER_ERR_IO, "%s: profile: cannot create %s: %s", fn, p, strerror(errno));
        fclose(f);
    }
    EMBER_TRY(ember_profiler_start(&(ember_profiler_config){.memory = {ember_memory_default(), t->mm},
                                                            .memory_interval_ms = 1,
                                                            .probes = EMBER_PROFILER_PROBE_MEMCPY}));
    ember_status st = run_steps(t, cb, user), pst = ember_profiler_stop();
    if (pst == EMBER_OK) pst = ember_profiler_write_trace(trace);
    if (pst == EMBER_OK) pst = ember_profiler_write_summary(summary);
    return st != EMBER_OK ? st : pst;
}

/* ---- report ---- */

ember_status ember_trainer_report(ember_trainer *t, ember_train_report *r) {
    EMBER_CHECK_NULL(t, "ember_trainer_report");
    EMBER_CHECK_NULL(r, "ember_trainer_report");
    memset(r, 0, sizeof *r);
    r->steps = t->run_steps;
    r->samples = t->run_samples;
    r->total_steps = t->step;
    r->resumed_from = t->resumed_from;
    r->train_seconds = t->run_seconds;
    r->samples_per_s = t->run_seconds > 0 ? (double)t->run_samples / t->run_seconds : 0;
    r->mean_loss = t->run_steps ? t->run_loss / (double)t->run_steps : NAN;
    r->evaluated = t->evaluated;
    r->eval = t->last_eval;
    r->bayes_auc = t->bayes;
    ember_cache *c = ember_dlrm_cache(t->m);
    r->cached = c != NULL;
    if (c) EMBER_TRY(ember_cache_get_stats(c, &r->cache));
    for (int k = 0; k < NT; k++) {
        r->table_rows += t->rows[k];
        r->table_bytes += t->rows[k] * (ember_dlrm_table_dim(t->m, k) + ember_dlrm_state_floats(t->m, k)) * 4;
    }
    ember_memory_get_stats(t->mm, &r->memory); /* NULL: the default manager */
    if (t->gen)
        snprintf(r->data_desc, sizeof r->data_desc, "synthetic Criteo-like data %.1000s_*.npy", t->synth_prefix);
    else
        snprintf(r->data_desc, sizeof r->data_desc, "%s", t->cfg.data);
    return EMBER_OK;
}

static double mib(size_t b) { return (double)b / 1048576.0; }

void ember_train_report_print(const ember_train_report *r, const ember_train_config *c, FILE *f) {
    static const char *const inter[] = {"dot", "dot-self", "dcn"};
    fprintf(f, "ember train: DLRM (%s interaction), 26 tables, %lld rows of dim %d (%.2f GB with optimizer state), batch %lld\n",
            inter[c->interaction], (long long)r->table_rows, c->emb_dim, (double)r->table_bytes / 1e9,
            (long long)c->batch);
    fprintf(f, "  data         %s\n", r->data_desc);
    if (r->resumed_from >= 0) fprintf(f, "  resumed      from step %lld\n", (long long)r->resumed_from);
    fprintf(f, "  trained      %lld steps (%lld in all), %lld samples in %.1f s: %.0f samples/s, mean loss %.4f\n",
            (long long)r->steps, (long long)r->total_steps, (long long)r->samples, r->train_seconds, r->samples_per_s,
            r->mean_loss);
    if (r->evaluated) {
        fprintf(f, "  eval         %lld held-out rows: AUC %.4f", (long long)r->eval.samples, r->eval.auc);
        if (!isnan(r->bayes_auc))
            fprintf(f, " (Bayes-optimal %.4f, gap %.4f)", r->bayes_auc, r->bayes_auc - r->eval.auc);
        fprintf(f, ", logloss %.4f, accuracy %.4f\n", r->eval.logloss, r->eval.accuracy);
    }
    if (r->cached) {
        const ember_cache_stats *s = &r->cache;
        double moved = 0;
        for (int l = 0; l < EMBER_CACHE_LINK_COUNT; l++) moved += (double)s->bytes[l];
        fprintf(f, "  cache        %lld slots for %lld rows (%.2f%%, %s, look-ahead %d%s): hit rate %.1f%% of lookups, "
                   "%.1f%% of unique rows; %.0f MB moved; %.0f%% of prepare time hidden\n",
                (long long)s->slots, (long long)r->table_rows, 100.0 * (double)s->slots / (double)r->table_rows,
                ember_cache_policy_name(c->cache_policy), c->lookahead, c->lmdb[0] ? ", LMDB store" : "",
                100 * s->hit_rate, 100 * s->unique_hit_rate, moved / 1e6, 100 * s->hidden_fraction);
        if (c->tier_hot > 0 || c->tier_warm > 0)
            fprintf(f, "  tiers        host store %.1f MB vs %.1f MB as f32 (%.1f%%): %lld hot (f32), %lld warm (f16), "
                       "%lld cold (int8) rows, %s rounding\n",
                    (double)s->store_bytes / 1e6, (double)s->store_f32_bytes / 1e6,
                    s->store_f32_bytes ? 100.0 * (double)s->store_bytes / (double)s->store_f32_bytes : 0.0,
                    (long long)s->tier_rows[EMBER_CACHE_TIER_HOT], (long long)s->tier_rows[EMBER_CACHE_TIER_WARM],
                    (long long)s->tier_rows[EMBER_CACHE_TIER_COLD],
                    c->tier_rounding == EMBER_CACHE_ROUNDING_NEAREST ? "nearest" : "stochastic");
    }
    const ember_memory_stats *m = &r->memory;
    fprintf(f, "  peak memory  host %.0f MiB (parameters %.0f, optimizer state %.0f, cache %.0f, activations %.0f, "
               "staging %.0f)",
            mib(m->peak_total[EMBER_TIER_HOST]), mib(m->peak[EMBER_TIER_HOST][EMBER_MEM_PARAMETER]),
            mib(m->peak[EMBER_TIER_HOST][EMBER_MEM_OPTIMIZER_STATE]), mib(m->peak[EMBER_TIER_HOST][EMBER_MEM_CACHE]),
            mib(m->peak[EMBER_TIER_HOST][EMBER_MEM_ACTIVATION]), mib(m->peak[EMBER_TIER_HOST][EMBER_MEM_STAGING]));
    if (m->peak_total[EMBER_TIER_DEVICE])
        fprintf(f, "; device %.0f MiB (cache %.0f)", mib(m->peak_total[EMBER_TIER_DEVICE]),
                mib(m->peak[EMBER_TIER_DEVICE][EMBER_MEM_CACHE]));
    if (m->peak_total[EMBER_TIER_PINNED]) fprintf(f, "; pinned %.0f MiB", mib(m->peak_total[EMBER_TIER_PINNED]));
    fprintf(f, "\n");
}
