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
 * removed only after the next commit), so the dense and sparse halves always match. On
 * N ranks the same order holds across ranks: every rank's rows (rank files, or nothing
 * yet with LMDB), rank 0's plan.bin, model, config and MANIFEST, then every rank's store
 * commit, then the pruning. A run stopped between the ranks' commits leaves stores at
 * two steps, which resume refuses by name (there is no commit across processes).
 *
 * N ranks (mpirun). The communicator comes from ember_comm_create_default; the model
 * shards its tables and runs its dense half data parallel (ember/dlrm.h), and the loader
 * gives this rank its batch / N rows of each global batch, so every rank trains the same
 * number of steps. Everything that talks to the model is then collective and runs on
 * every rank in the same order: steps, evaluation batches (a rank whose slice of the
 * last held-out batch is empty still runs it, on a dummy row). With cache-ratio > 0
 * each rank's shard is behind its own cache (its LMDB store in lmdb/rankRRRR), which
 * the sharded collection drives inside the step: nothing is submitted ahead on N ranks.
 * Metrics and predictions are rank 0's. A checkpoint is written per rank: each rank its
 * own rows (checkpoint_ranks), rank 0 the dense half and the MANIFEST naming the world
 * size, the plan and the rank files, the ranks agreeing after each part so none runs
 * ahead of a checkpoint that is not complete; a resume at any world size re-shards the
 * rows on load (load_tables).
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

/* The model does not fit device-mem: say which budget, and without offload the way out. */
static ember_status over_budget(const ember_trainer *t, ember_status st) {
    char why[1024];
    const char *e = ember_last_error(), *colon = strstr(e, ": ");
    snprintf(why, sizeof why, "%s", colon && strncmp(e, "EMBER_", 6) == 0 ? colon + 2 : e);
    return ember__error(st, "device-mem %lld B does not hold the model: %s%s", (long long)t->cfg.device_mem, why,
                        t->cfg.offload != EMBER_TRAIN_OFFLOAD_NONE
                            ? ""
                            : " (offload = auto or static keeps the dense parameters, gradients and optimizer "
                              "state in chunks that move between host and device under the budget)");
}

static ember_status build_model(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    /* the counts: for the cache's warm-up (one process, or each rank's shard's cache), or for a
       minimax plan (N ranks) */
    if (c->cache_ratio > 0 || (t->world > 1 && t->plan == EMBER_PLAN_MINIMAX)) EMBER_TRY(load_counts(t));
    ember_dlrm_config mc = model_config(t);
    /* every batch in flight must fit: small tables end up wholly cached. On N ranks a shard's
       cache takes one batch at a time (no look-ahead), of at most the global batch's ids. */
    ember_cache_config cc = {.ratio = c->cache_ratio, .policy = c->cache_policy, .lookahead = c->lookahead,
                             .min_slots = c->batch * (t->world > 1 ? 1 : c->lookahead + 1)};
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
    ember_offload_config oc = {.policy = c->offload == EMBER_TRAIN_OFFLOAD_STATIC ? EMBER_OFFLOAD_STATIC
                                                                                  : EMBER_OFFLOAD_AUTO,
                               .device_budget = (size_t)c->device_mem,
                               .param_host_fraction = c->offload_param_host,
                               .state_host_fraction = c->offload_state_host};
    if (c->device_mem > 0) {
        /* one device budget for the cache's slots, the dense layers and the activations; with
           offload the manager puts it on the tier once the dense model data is in its chunks */
        size_t budget = c->offload != EMBER_TRAIN_OFFLOAD_NONE ? 0 : (size_t)c->device_mem;
        EMBER_TRY(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU,
                                                             .budget = {[EMBER_TIER_DEVICE] = budget}},
                                      &t->mm));
        mc.mm = cc.mm = t->mm;
        mc.tier = EMBER_TIER_DEVICE;
    }
    if (c->offload != EMBER_TRAIN_OFFLOAD_NONE) mc.offload = &oc;
    ember_status st = ember_dlrm_create(&mc, &t->m);
    if (st == EMBER_ERR_OUT_OF_MEMORY && c->device_mem > 0) st = over_budget(t, st);
    if (st == EMBER_OK && freq && mc.cache)
        st = t->world > 1 ? ember_sharded_ebc_warmup_counts(ember_dlrm_sharded_tables(t->m), freq) /* its own rows */
                          : ember_cache_warmup_counts(ember_dlrm_cache(t->m), freq);
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

/*
 * The dense half of model.safetensors. Without offload: the parameters and the one dense
 * optimizer (ember_checkpoint_save / _load). With offload every chunk of the manager has
 * an optimizer of its own (ember_offload_get_optimizer); their state goes in the same file
 * under the same names ("optim." + parameter + "." + buffer) with the same metadata (the
 * kind and step ember/checkpoint.h documents) as one optimizer over all the parameters
 * would write, so a checkpoint resumes with offload on or off.
 */
#define CKPT_OPTIM_PREFIX "optim."
#define CKPT_OPTIM_KIND "ember.optim.kind"
#define CKPT_OPTIM_STEP "ember.optim.step"

/* nt[0 .. n), then the state of every chunk optimizer of off, into *all (*nall entries,
   their names in the one block *names); the caller frees both. */
static ember_status offload_named(ember_offload *off, const ember_named_tensor *nt, int n, ember_named_tensor **all,
                                  int *nall, char **names) {
    ember_offload_stats os;
    *all = NULL;
    *names = NULL;
    EMBER_TRY(ember_offload_get_stats(off, &os));
    int ns = 0;
    size_t bytes = 1;
    for (int pass = 0; pass < 2; pass++) {
        char *p = *names;
        int j = n;
        for (int c = 0; c < os.nchunks; c++) {
            ember_optimizer *o;
            int k;
            EMBER_TRY(ember_offload_get_optimizer(off, c, &o));
            EMBER_TRY(ember_optimizer_state_count(o, &k));
            for (int i = 0; i < k; i++) {
                const char *sn;
                ember_tensor *st;
                EMBER_TRY(ember_optimizer_state_get(o, i, &sn, &st));
                if (!pass) {
                    bytes += sizeof CKPT_OPTIM_PREFIX + strlen(sn);
                    ns++;
                    continue;
                }
                (*all)[j++] = (ember_named_tensor){p, st};
                p += sprintf(p, CKPT_OPTIM_PREFIX "%s", sn) + 1;
            }
        }
        if (pass) break;
        *all = calloc((size_t)(n + ns) + 1, sizeof **all);
        *names = malloc(bytes);
        if (!*all || !*names) {
            free(*all);
            free(*names);
            *all = NULL;
            *names = NULL;
            return ember__error(EMBER_ERR_OUT_OF_MEMORY, "checkpoint: %d optimizer states", ns);
        }
        memcpy(*all, nt, (size_t)n * sizeof *nt);
    }
    *nall = n + ns;
    return EMBER_OK;
}

static ember_status dense_save(ember_trainer *t, const char *path, const ember_named_tensor *nt, int n) {
    ember_offload *off = ember_dlrm_offload(t->m);
    if (!off) return ember_checkpoint_save(path, nt, n, ember_dlrm_optimizer(t->m));
    ember_named_tensor *all;
    char *names, step[32];
    int nall;
    ember_optimizer *o;
    int64_t s = 0;
    ember_optim_kind kind = EMBER_OPTIM_SGD;
    EMBER_TRY(ember_offload_get_optimizer(off, 0, &o)); /* every chunk's counts the same steps */
    EMBER_TRY(ember_optimizer_get_step(o, &s));
    EMBER_TRY(ember_optimizer_get_kind(o, &kind));
    snprintf(step, sizeof step, "%lld", (long long)s);
    EMBER_TRY(offload_named(off, nt, n, &all, &nall, &names));
    ember_metadata_entry meta[2] = {{CKPT_OPTIM_KIND, ember_optim_kind_name(kind)}, {CKPT_OPTIM_STEP, step}};
    ember_status st = ember_safetensors_write(path, all, nall, meta, 2);
    free(all);
    free(names);
    return st;
}

static ember_status dense_load(ember_trainer *t, const char *path, const ember_named_tensor *nt, int n) {
    ember_offload *off = ember_dlrm_offload(t->m);
    if (!off) return ember_checkpoint_load(path, nt, n, ember_dlrm_optimizer(t->m));
    /* the values go into the host copies: no device copy may outlive them */
    EMBER_TRY(ember_offload_flush(off));
    ember_optimizer *o;
    ember_optim_kind kind = EMBER_OPTIM_SGD;
    EMBER_TRY(ember_offload_get_optimizer(off, 0, &o));
    EMBER_TRY(ember_optimizer_get_kind(o, &kind));
    ember_safetensors *f;
    EMBER_TRY(ember_safetensors_open(path, &f));
    const char *fk = NULL, *fs = NULL;
    long long step = -1;
    char tail;
    ember_status st = EMBER_OK;
    if (ember_safetensors_metadata_get(f, CKPT_OPTIM_KIND, &fk) != EMBER_OK ||
        ember_safetensors_metadata_get(f, CKPT_OPTIM_STEP, &fs) != EMBER_OK)
        st = ember__error(EMBER_ERR_FORMAT, "checkpoint %s: no optimizer state (metadata " CKPT_OPTIM_KIND
                                            " / " CKPT_OPTIM_STEP ")", path);
    else if (strcmp(fk, ember_optim_kind_name(kind)) != 0)
        st = ember__error(EMBER_ERR_FORMAT, "checkpoint %s: it holds %s state, the optimizer is %s", path, fk,
                          ember_optim_kind_name(kind));
    else if (sscanf(fs, "%lld%c", &step, &tail) != 1 || step < 0)
        st = ember__error(EMBER_ERR_FORMAT, "checkpoint %s: " CKPT_OPTIM_STEP " \"%s\" is not a step count", path, fs);
    ember_safetensors_close(f);
    EMBER_TRY(st);
    ember_named_tensor *all;
    char *names;
    int nall;
    EMBER_TRY(offload_named(off, nt, n, &all, &nall, &names));
    st = ember_checkpoint_load(path, all, nall, NULL); /* every name and shape checked before any write */
    free(all);
    free(names);
    ember_offload_stats os;
    if (st == EMBER_OK) st = ember_offload_get_stats(off, &os);
    for (int c = 0; st == EMBER_OK && c < os.nchunks; c++) {
        st = ember_offload_get_optimizer(off, c, &o);
        if (st == EMBER_OK) st = ember_optimizer_set_step(o, step);
    }
    return st;
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

/* The checkpoints older than this step are superseded. */
static void prune_checkpoints(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    char path[EMBER_TRAIN_PATH_MAX + 128];
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
}

/* ---- checkpoints on N ranks ----
 *
 * Each rank writes the rows it holds, table by table, to tableTT.rankRRRR.safetensors:
 * "cols" (i64 [begin, end): the columns it holds of them) and, when it holds rows, "ids"
 * (i64 (n,), ascending), "weight" (f32 (n, end - begin)) and "state" (f32 (n, the state
 * floats of those columns)). A row every rank holds (minimax's replicated rows) is
 * written by rank 0 alone. With lmdb the rows stay in the ranks' stores instead, each
 * committed durably at the step. Rank 0 writes the plan (plan.bin), the dense half, the
 * config and last the MANIFEST, which names the world size, the plan and the rank files;
 * the ranks agree after every phase, so the MANIFEST exists only once every rank's rows
 * are on disk, and the stores are committed and the older checkpoints removed only after
 * it. Loading re-shards: each rank (or one process) collects the rows it holds under its
 * own plan from whichever rank files hold them, so a checkpoint of 4 ranks resumes on 2
 * ranks or in one process. The stores hold local rows of the plan they were made with:
 * an LMDB checkpoint resumes at the same world size and plan only.
 */

/* A failure on any rank fails every rank: with its own error, or one naming the lowest
   rank that failed. Collective on N ranks (so no rank goes on into collectives a failed
   one will not join); st itself in one process. */
static ember_status agree(ember_trainer *t, ember_status st, const char *fn) {
    if (t->world < 2) return st;
    char msg[1024] = "";
    if (st != EMBER_OK) snprintf(msg, sizeof msg, "%s", ember_last_error());
    int64_t mine = st != EMBER_OK ? t->world - t->rank : 0, first = 0;
    ember_status cs = ember_comm_all_reduce(t->comm, &mine, &first, 1, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL);
    if (st != EMBER_OK) {
        const char *p = strstr(msg, ": ");
        return ember__error(st, "%s", p && strncmp(msg, "EMBER_", 6) == 0 ? p + 2 : msg);
    }
    if (cs != EMBER_OK) return cs;
    if (first > 0)
        return ember__error(EMBER_ERR_STATE, "%s: rank %d of %d: rank %lld failed (its error says why)", fn, t->rank,
                            t->world, (long long)(t->world - first));
    return EMBER_OK;
}

/* The ids of table k whose rows this rank holds, ascending (every id in one process),
   and their local rows. save: a row every rank holds counts on rank 0 only (one copy in
   the files); a column slice counts everywhere. Chunked: no array of the table's size. */
static ember_status held_rows(ember_trainer *t, int k, int save, int64_t **ids, int64_t **local, int64_t *n) {
    const ember_plan *plan = ember_dlrm_plan(t->m);
    const int64_t rows = ember_dlrm_table_rows(t->m, k);
    enum { CHUNK = 1 << 16 };
    *ids = *local = NULL;
    *n = 0;
    int sliced = 0;
    if (plan) {
        if (ember_sharded_ebc_local_table(ember_dlrm_sharded_tables(t->m), k) < 0) return EMBER_OK;
        ember_plan_shard sh;
        EMBER_TRY(ember_plan_get_shard(plan, k, t->rank, &sh));
        sliced = sh.col_end - sh.col_begin < ember_dlrm_table_dim(t->m, k);
    }
    int64_t cap = plan ? 1024 : rows, m = 0;
    int64_t *id = malloc((size_t)(cap ? cap : 1) * sizeof *id), *lr = malloc((size_t)(cap ? cap : 1) * sizeof *lr);
    int64_t *cid = plan ? malloc(CHUNK * sizeof *cid) : NULL, *clr = plan ? malloc(CHUNK * sizeof *clr) : NULL;
    int *crk = plan ? malloc(CHUNK * sizeof *crk) : NULL;
    ember_status st = id && lr && (!plan || (cid && clr && crk))
                          ? EMBER_OK
                          : ember__error(EMBER_ERR_OUT_OF_MEMORY, "checkpoint: table %d: row lists", k);
    for (int64_t first = 0; st == EMBER_OK && first < rows; first += CHUNK) {
        int64_t cn = rows - first < CHUNK ? rows - first : CHUNK;
        if (!plan) {
            for (int64_t i = 0; i < cn; i++) id[first + i] = lr[first + i] = first + i;
            m += cn;
            continue;
        }
        for (int64_t i = 0; i < cn; i++) cid[i] = first + i;
        st = ember_plan_locate_many(plan, k, cid, cn, crk, clr);
        for (int64_t i = 0; st == EMBER_OK && i < cn; i++) {
            int r = crk[i];
            if (r != t->rank && !(r == EMBER_PLAN_EVERY_RANK && (!save || sliced || t->rank == 0))) continue;
            if (m == cap) {
                cap *= 2;
                int64_t *a = realloc(id, (size_t)cap * sizeof *a), *b = a ? realloc(lr, (size_t)cap * sizeof *b) : NULL;
                if (a) id = a;
                if (b) lr = b;
                if (!a || !b) {
                    st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "checkpoint: table %d: %lld rows", k, (long long)cap);
                    break;
                }
            }
            id[m] = cid[i];
            lr[m++] = clr[i];
        }
    }
    free(cid), free(clr), free(crk);
    if (st != EMBER_OK) {
        free(id), free(lr);
        return st;
    }
    *ids = id;
    *local = lr;
    *n = m;
    return EMBER_OK;
}

/* State floats of a slice of w of the dim columns: the per-column arrays' (sf / dim of
   them) columns, or the whole row's state. */
static int64_t slice_state(int64_t sf, int64_t dim, int64_t w) { return w == dim ? sf : sf / dim * w; }

/* This rank's rows of table k into dir/tableKK.rankRRRR.safetensors (see above). */
static ember_status shard_save(ember_trainer *t, const char *dir, int k) {
    char path[EMBER_TRAIN_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/table%02d.rank%04d.safetensors", dir, k, t->rank);
    ember_sharded_ebc *s = ember_dlrm_sharded_tables(t->m);
    const int64_t dim = ember_dlrm_table_dim(t->m, k), sf = ember_dlrm_state_floats(t->m, k);
    int64_t cols[2] = {0, 0}, *ids = NULL, *local = NULL, n = 0;
    if (ember_sharded_ebc_local_table(s, k) >= 0) {
        ember_plan_shard sh;
        EMBER_TRY(ember_plan_get_shard(ember_dlrm_plan(t->m), k, t->rank, &sh));
        cols[0] = sh.col_begin;
        cols[1] = sh.col_end;
        EMBER_TRY(held_rows(t, k, 1, &ids, &local, &n));
    }
    const int64_t w = cols[1] - cols[0], lsf = slice_state(sf, dim, w);
    float *wt = malloc((size_t)(n * w + 1) * sizeof *wt), *stt = malloc((size_t)(n * lsf + 1) * sizeof *stt);
    ember_status st = wt && stt ? EMBER_OK
                                : ember__error(EMBER_ERR_OUT_OF_MEMORY, "checkpoint: rank %d: table %d: %lld rows",
                                               t->rank, k, (long long)n);
    for (int64_t i = 0; st == EMBER_OK && i < n;) { /* runs of consecutive local rows */
        int64_t j = i + 1;
        while (j < n && local[j] == local[j - 1] + 1) j++;
        st = ember_sharded_ebc_read_local(s, k, local[i], j - i, wt + i * w, sf ? stt + i * lsf : NULL);
        i = j;
    }
    ember_tensor *tc = NULL, *ti = NULL, *tw = NULL, *ts = NULL;
    if (st == EMBER_OK) st = ember_tensor_wrap(cols, EMBER_DTYPE_I64, 1, (int64_t[]){2}, NULL, EMBER_CPU, &tc);
    if (st == EMBER_OK && n) st = ember_tensor_wrap(ids, EMBER_DTYPE_I64, 1, (int64_t[]){n}, NULL, EMBER_CPU, &ti);
    if (st == EMBER_OK && n) st = ember_tensor_wrap(wt, EMBER_DTYPE_F32, 2, (int64_t[]){n, w}, NULL, EMBER_CPU, &tw);
    if (st == EMBER_OK && n && sf)
        st = ember_tensor_wrap(stt, EMBER_DTYPE_F32, 2, (int64_t[]){n, lsf}, NULL, EMBER_CPU, &ts);
    ember_named_tensor nt[4] = {{"cols", tc}, {"ids", ti}, {"weight", tw}, {"state", ts}};
    if (st == EMBER_OK) st = ember_safetensors_write(path, nt, !n ? 1 : sf ? 4 : 3, NULL, 0);
    ember_tensor_destroy(tc);
    ember_tensor_destroy(ti);
    ember_tensor_destroy(tw);
    ember_tensor_destroy(ts);
    free(ids), free(local), free(wt), free(stt);
    return st;
}

/* Index of id in the ascending ids[0 .. n), or -1. */
static int64_t find_id(const int64_t *ids, int64_t n, int64_t id) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ids[lo] == id ? lo : -1;
}

/* One old rank's file of table k: the rows and columns of it that this rank holds
   (held[0 .. nh)) into w (nh, dim) and s (nh, sf); cov counts the columns each got. */
static ember_status shard_read(ember_trainer *t, const char *path, int k, const int64_t *held, int64_t nh, float *w,
                               float *s, int64_t *cov) {
    const int64_t dim = ember_dlrm_table_dim(t->m, k), sf = ember_dlrm_state_floats(t->m, k),
                  rows = ember_dlrm_table_rows(t->m, k);
    ember_safetensors *f = NULL;
    int64_t cols[2] = {0, 0}, n = 0, *ids = NULL;
    float *fw = NULL, *fs = NULL;
    ember_tensor *tc = NULL, *ti = NULL, *tw = NULL, *ts = NULL;
    ember_safetensors_info info;
    ember_status st = ember_safetensors_open(path, &f);
    if (st == EMBER_OK) st = ember_tensor_wrap(cols, EMBER_DTYPE_I64, 1, (int64_t[]){2}, NULL, EMBER_CPU, &tc);
    if (st == EMBER_OK) st = ember_safetensors_read(f, "cols", tc);
    if (st == EMBER_OK && !(cols[0] >= 0 && cols[0] <= cols[1] && cols[1] <= dim))
        st = ember__error(EMBER_ERR_FORMAT, "resume: %s: columns [%lld, %lld) of a table of dim %lld", path,
                          (long long)cols[0], (long long)cols[1], (long long)dim);
    if (st == EMBER_OK) { /* no "ids": the rank held no rows of the table */
        if (ember_safetensors_find(f, "ids", &info) == EMBER_OK) n = info.ndim == 1 ? info.shape[0] : -1;
        ember_clear_error();
    }
    const int64_t cw = cols[1] - cols[0], lsf = slice_state(sf, dim, cw);
    if (st == EMBER_OK && n > 0) {
        ids = malloc((size_t)n * sizeof *ids);
        fw = malloc((size_t)(n * cw + 1) * sizeof *fw);
        fs = malloc((size_t)(n * lsf + 1) * sizeof *fs);
        if (!ids || !fw || !fs) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "resume: %s: %lld rows", path, (long long)n);
        if (st == EMBER_OK) st = ember_tensor_wrap(ids, EMBER_DTYPE_I64, 1, (int64_t[]){n}, NULL, EMBER_CPU, &ti);
        if (st == EMBER_OK) st = ember_tensor_wrap(fw, EMBER_DTYPE_F32, 2, (int64_t[]){n, cw}, NULL, EMBER_CPU, &tw);
        if (st == EMBER_OK && sf)
            st = ember_tensor_wrap(fs, EMBER_DTYPE_F32, 2, (int64_t[]){n, lsf}, NULL, EMBER_CPU, &ts);
        if (st == EMBER_OK) st = ember_safetensors_read(f, "ids", ti);
        if (st == EMBER_OK) st = ember_safetensors_read(f, "weight", tw);
        if (st == EMBER_OK && sf) st = ember_safetensors_read(f, "state", ts);
    } else if (st == EMBER_OK && n < 0) {
        st = ember__error(EMBER_ERR_FORMAT, "resume: %s: 'ids' is not a vector", path);
    }
    const int64_t arrays = cw < dim && sf ? sf / dim : 0; /* per-column state arrays of a slice */
    for (int64_t i = 0; st == EMBER_OK && i < n; i++) {
        if (ids[i] < 0 || ids[i] >= rows) {
            st = ember__error(EMBER_ERR_FORMAT, "resume: %s: id %lld outside the table's %lld rows", path,
                              (long long)ids[i], (long long)rows);
            break;
        }
        int64_t h = find_id(held, nh, ids[i]);
        if (h < 0) continue; /* another rank's row */
        memcpy(w + h * dim + cols[0], fw + i * cw, (size_t)cw * sizeof *w);
        if (sf && cw == dim) memcpy(s + h * sf, fs + i * sf, (size_t)sf * sizeof *s);
        for (int64_t a = 0; a < arrays; a++)
            memcpy(s + h * sf + a * dim + cols[0], fs + i * lsf + a * cw, (size_t)cw * sizeof *s);
        cov[h] += cw;
    }
    ember_tensor_destroy(tc);
    ember_tensor_destroy(ti);
    ember_tensor_destroy(tw);
    ember_tensor_destroy(ts);
    ember_safetensors_close(f);
    free(ids), free(fw), free(fs);
    return st;
}

/* Table k from the rank files of a checkpoint of `world` ranks: the rows this rank holds
   now, gathered from whichever files hold them, then written where they live. */
static ember_status shard_load(ember_trainer *t, const char *dir, int k, int world) {
    const int64_t dim = ember_dlrm_table_dim(t->m, k), sf = ember_dlrm_state_floats(t->m, k);
    int64_t *held = NULL, *local = NULL, n = 0;
    EMBER_TRY(held_rows(t, k, 0, &held, &local, &n));
    free(local);
    if (!n) {
        free(held);
        return EMBER_OK;
    }
    float *w = calloc((size_t)(n * dim), sizeof *w), *s = calloc((size_t)(n * sf + 1), sizeof *s);
    int64_t *cov = calloc((size_t)n, sizeof *cov);
    ember_status st = w && s && cov ? EMBER_OK
                                    : ember__error(EMBER_ERR_OUT_OF_MEMORY, "resume: rank %d: table %d: %lld rows",
                                                   t->rank, k, (long long)n);
    char path[EMBER_TRAIN_PATH_MAX + 128];
    for (int r = 0; st == EMBER_OK && r < world; r++) {
        snprintf(path, sizeof path, "%s/table%02d.rank%04d.safetensors", dir, k, r);
        st = shard_read(t, path, k, held, n, w, s, cov);
    }
    for (int64_t i = 0; st == EMBER_OK && i < n; i++)
        if (cov[i] != dim)
            st = ember__error(EMBER_ERR_FORMAT, "resume: %s: table %d row %lld: %lld of its %lld columns are in the "
                              "rank files of %d ranks (tableTT.rankRRRR.safetensors)", dir, k, (long long)held[i],
                              (long long)cov[i], (long long)dim, world);
    for (int64_t i = 0; st == EMBER_OK && i < n;) { /* runs of consecutive ids */
        int64_t j = i + 1;
        while (j < n && held[j] == held[j - 1] + 1) j++;
        st = ember_dlrm_write_table(t->m, k, held[i], j - i, w + i * dim, sf ? s + i * sf : NULL);
        i = j;
    }
    free(held), free(w), free(s), free(cov);
    return st;
}

/* The MANIFEST: step, epoch and position, and how the embeddings are kept; on N ranks
   also the world size, the plan and the rank files or stores. The caller frees it. */
static char *manifest_text(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    size_t cap = 1024 + 3 * strlen(c->lmdb);
    char *m = malloc(cap);
    if (!m) return NULL;
    const char *emb = c->lmdb[0] ? "lmdb" : t->world > 1 ? "shards" : "safetensors";
    int n = snprintf(m, cap,
                     "# ember training checkpoint\nformat = %d\nstep = %lld\nepoch = %d\nposition = %lld\n"
                     "embeddings = %s\n",
                     t->world > 1 && !c->lmdb[0] ? 2 : 1, (long long)t->step, t->epoch, (long long)t->pos, emb);
    if (t->world < 2) return m;
    n += snprintf(m + n, cap - (size_t)n, "world = %d\nplan = %s\nplan-file = plan.bin\n", t->world,
                  ember_plan_kind_name(ember_plan_get_kind(ember_dlrm_plan(t->m))));
    if (c->lmdb[0])
        snprintf(m + n, cap - (size_t)n,
                 "stores = %s/rank0000 .. %s/rank%04d (rank r's store %s/rankRRRR, committed at this step)\n", c->lmdb,
                 c->lmdb, t->world - 1, c->lmdb);
    else
        snprintf(m + n, cap - (size_t)n,
                 "shard-files = table00.rank0000.safetensors .. table%02d.rank%04d.safetensors (tableTT.rankRRRR"
                 ".safetensors: the rows of table TT that rank RRRR held, for each of the %d tables and %d ranks)\n",
                 NT - 1, t->world - 1, NT, t->world);
    return m;
}

static ember_status checkpoint_rest(ember_trainer *t, const char *dir);

/* N ranks: each rank's rows (files or its store), then rank 0's plan, dense half, config
   and MANIFEST, then the stores' commits and the pruning, the ranks agreeing in between. */
static ember_status checkpoint_ranks(ember_trainer *t, const char *dir) {
    static const char fn[] = "ember_trainer_checkpoint";
    const ember_train_config *c = &t->cfg;
    ember_status st = EMBER_OK;
    if (t->rank == 0) {
        remove_tree(dir); /* an incomplete attempt at the same step */
        st = mkdirs(dir);
    }
    EMBER_TRY(agree(t, st, fn)); /* the directory exists for every rank */
    for (int k = 0; !c->lmdb[0] && st == EMBER_OK && k < NT; k++) st = shard_save(t, dir, k);
    EMBER_TRY(agree(t, st, fn)); /* every rank's rows are on disk */
    if (t->rank == 0) {
        char path[EMBER_TRAIN_PATH_MAX + 128];
        snprintf(path, sizeof path, "%s/plan.bin", dir);
        st = ember_plan_save(ember_dlrm_plan(t->m), path);
        if (st == EMBER_OK) st = checkpoint_rest(t, dir); /* the MANIFEST last */
    }
    EMBER_TRY(agree(t, st, fn));
    if (c->lmdb[0]) {
        st = ember_sharded_ebc_checkpoint(ember_dlrm_sharded_tables(t->m), t->step);
        EMBER_TRY(agree(t, st, fn)); /* every store committed at this step */
    }
    if (t->rank == 0) prune_checkpoints(t);
    return EMBER_OK;
}

/* The step every rank's LMDB store was committed at (ranks without rows have no store);
   collective on N ranks. Stores at different steps (a run stopped between the ranks'
   commits) cannot be resumed together. */
static ember_status lmdb_step(ember_trainer *t, int64_t *want) {
    const ember_train_config *c = &t->cfg;
    ember_cache *cache = ember_dlrm_cache(t->m);
    int64_t s = cache ? ember_cache_checkpoint_step(cache) : -1, lo = s, hi = s;
    if (t->world > 1) {
        int64_t v[2] = {cache ? s : INT64_MIN, cache ? -s : INT64_MIN}, mx[2];
        EMBER_TRY(ember_comm_all_reduce(t->comm, v, mx, 2, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
        hi = mx[0] == INT64_MIN ? -1 : mx[0];
        lo = mx[1] == INT64_MIN ? -1 : -mx[1];
    }
    if (lo != hi)
        return ember__error(EMBER_ERR_STATE,
                            "resume: rank %d of %d: the ranks' LMDB stores (%s/rankRRRR) were committed at different "
                            "steps (%lld and %lld): the run stopped between the ranks' commits of a checkpoint",
                            t->rank, t->world, c->lmdb, (long long)lo, (long long)hi);
    if (hi < 0)
        return ember__error(EMBER_ERR_NOT_FOUND, "resume: the LMDB store%s %s%s %s no checkpoint",
                            t->world > 1 ? "s" : "", c->lmdb, t->world > 1 ? "/rankRRRR" : "",
                            t->world > 1 ? "have" : "has");
    *want = hi;
    return EMBER_OK;
}

static ember_status manifest_get(const char *text, const char *key, long long *v, const char *path);

/* The value of a MANIFEST key as a word, or "" when absent. */
static void manifest_word(const char *text, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s = ", key);
    const char *p = strstr(text, pat);
    size_t len = 0;
    if (p) {
        p += strlen(pat);
        while (p[len] && p[len] != '\n' && p[len] != ' ' && len + 1 < n) len++;
        memcpy(out, p, len);
    }
    out[len] = '\0';
}

/* The embeddings of a checkpoint, whatever it was written by: the whole tables (one
   process, or N ranks before rank files), the rank files (re-sharded on load), or the
   LMDB store(s) the model opened (same world and plan only). Each rank loads what it
   holds; on N ranks the ranks agree on the outcome. */
static ember_status load_tables(ember_trainer *t, const char *dir, const char *man) {
    static const char fn[] = "resume";
    const ember_train_config *c = &t->cfg;
    char emb[32], path[EMBER_TRAIN_PATH_MAX + 128];
    manifest_word(man, "embeddings", emb, sizeof emb);
    long long world = 1, format = 1;
    if (strstr(man, "\nworld = ")) EMBER_TRY(manifest_get(man, "world", &world, dir));
    if (strstr(man, "\nformat = ")) EMBER_TRY(manifest_get(man, "format", &format, dir));
    if (format > 2 || world < 1)
        return ember__error(EMBER_ERR_FORMAT, "resume: %s: MANIFEST format %lld, world %lld: written by a newer ember?",
                            dir, format, world);
    if (strcmp(emb, "lmdb") == 0 || c->lmdb[0]) {
        if (strcmp(emb, "lmdb") != 0)
            return ember__error(EMBER_ERR_STATE, "resume: %s keeps its embeddings in files (%s), not in an LMDB "
                                "store: resume it without lmdb", dir, emb);
        if (!c->lmdb[0])
            return ember__error(EMBER_ERR_STATE, "resume: %s keeps its embeddings in an LMDB store: set lmdb to the "
                                "store's directory", dir);
        if (world != t->world)
            return ember__error(EMBER_ERR_UNSUPPORTED, "resume: %s was written by %lld rank%s with the rows in their "
                                "LMDB stores: it resumes on %lld rank%s only (this run has %d)", dir, world,
                                world > 1 ? "s" : "", world, world > 1 ? "s" : "", t->world);
        if (t->world < 2) return EMBER_OK;
        /* the stores hold local rows of the plan they were made with */
        ember_plan *old = NULL;
        snprintf(path, sizeof path, "%s/plan.bin", dir);
        ember_status st = ember_plan_load(path, NULL, &old);
        size_t a = 0, b = 0;
        void *ea = NULL, *eb = NULL;
        if (st == EMBER_OK) st = ember_plan_encode(old, NULL, 0, &a);
        if (st == EMBER_OK) st = ember_plan_encode(ember_dlrm_plan(t->m), NULL, 0, &b);
        if (st == EMBER_OK && a == b && (ea = malloc(a + 1)) && (eb = malloc(b + 1))) {
            st = ember_plan_encode(old, ea, a, &a);
            if (st == EMBER_OK) st = ember_plan_encode(ember_dlrm_plan(t->m), eb, b, &b);
        }
        if (st == EMBER_OK && (!ea || !eb || memcmp(ea, eb, a) != 0))
            st = ember__error(EMBER_ERR_STATE, "resume: %s: the ranks' LMDB stores hold the rows of plan %s in "
                              "plan.bin, and this run built another plan (%s): resume with the same plan and counts",
                              dir, ember_plan_kind_name(ember_plan_get_kind(old)),
                              ember_plan_kind_name(ember_plan_get_kind(ember_dlrm_plan(t->m))));
        free(ea), free(eb);
        ember_plan_destroy(old);
        return st;
    }
    if (strcmp(emb, "shards") != 0) { /* the whole tables, one file each */
        ember_status st = EMBER_OK;
        for (int k = 0; k < NT && st == EMBER_OK; k++) st = table_file(t, dir, k, 0);
        return agree(t, st, fn);
    }
    /* every file the MANIFEST names, before any is read: the same answer on every rank */
    for (int k = 0; k < NT; k++)
        for (int r = 0; r < world; r++) {
            snprintf(path, sizeof path, "%s/table%02d.rank%04d.safetensors", dir, k, r);
            if (access(path, R_OK) != 0)
                return ember__error(EMBER_ERR_NOT_FOUND, "resume: rank %d of %d: %s: table%02d.rank%04d.safetensors is "
                                    "missing: the MANIFEST names a file per table and rank of %lld ranks (%s)",
                                    t->rank, t->world, dir, k, r, world, strerror(errno));
        }
    ember_status st = EMBER_OK;
    for (int k = 0; k < NT && st == EMBER_OK; k++) st = shard_load(t, dir, k, (int)world);
    return agree(t, st, fn);
}

/* N ranks with the shards cached: the counters of every rank's cache summed (slots against
   all rows, lookups, hits, moves), rates recomputed; times stay this rank's. Collective. */
static ember_status cache_stats_ranks(ember_trainer *t, ember_cache_stats *s) {
    int64_t *f[] = {&s->lookups, &s->hits, &s->unique, &s->unique_hits, &s->evictions, &s->writebacks,
                    &s->protected_evictions, &s->generated, &s->host_hits, &s->host_misses, &s->slots,
                    &s->slots_used, &s->dirty, &s->slot_bytes, &s->meta_bytes, &s->store_bytes, &s->store_f32_bytes,
                    /* each rank's precision tiers, over its own rows */
                    &s->tier_rows[EMBER_CACHE_TIER_HOT], &s->tier_rows[EMBER_CACHE_TIER_WARM],
                    &s->tier_rows[EMBER_CACHE_TIER_COLD], &s->tier_bytes[EMBER_CACHE_TIER_HOT],
                    &s->tier_bytes[EMBER_CACHE_TIER_WARM], &s->tier_bytes[EMBER_CACHE_TIER_COLD]};
    enum { NF = sizeof f / sizeof *f, NL = EMBER_CACHE_LINK_COUNT };
    int64_t v[NF + 2 * NL];
    for (int i = 0; i < NF; i++) v[i] = *f[i];
    for (int l = 0; l < NL; l++) v[NF + l] = s->rows[l], v[NF + NL + l] = s->bytes[l];
    EMBER_TRY(ember_comm_all_reduce(t->comm, v, v, NF + 2 * NL, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
    for (int i = 0; i < NF; i++) *f[i] = v[i];
    for (int l = 0; l < NL; l++) s->rows[l] = v[NF + l], s->bytes[l] = v[NF + NL + l];
    s->hit_rate = s->lookups ? (double)s->hits / (double)s->lookups : 0.0;
    s->unique_hit_rate = s->unique ? (double)s->unique_hits / (double)s->unique : 0.0;
    return EMBER_OK;
}

/* Resuming with lmdb: the newest checkpoint's stores are of this world size (they open as
   path, or path/rankRRRR on N ranks), said before any store is opened. */
static ember_status lmdb_world_check(ember_trainer *t) {
    const ember_train_config *c = &t->cfg;
    int64_t s = find_checkpoint(c->checkpoint_dir, -1);
    if (s < 0) return EMBER_OK; /* resume says so */
    char path[EMBER_TRAIN_PATH_MAX + 128], emb[32], *man = NULL;
    snprintf(path, sizeof path, "%s/ckpt-%lld/MANIFEST", c->checkpoint_dir, (long long)s);
    EMBER_TRY(read_text(path, &man));
    long long world = 1;
    ember_status st = strstr(man, "\nworld = ") ? manifest_get(man, "world", &world, path) : EMBER_OK;
    manifest_word(man, "embeddings", emb, sizeof emb);
    free(man);
    EMBER_TRY(st);
    if (strcmp(emb, "lmdb") == 0 && world != t->world)
        return ember__error(EMBER_ERR_UNSUPPORTED, "resume: %s/ckpt-%lld was written by %lld rank%s with the rows in "
                            "their LMDB stores: it resumes on %lld rank%s only (this run has %d)", c->checkpoint_dir,
                            (long long)s, world, world > 1 ? "s" : "", world, world > 1 ? "s" : "", t->world);
    return EMBER_OK;
}

ember_status ember_trainer_checkpoint(ember_trainer *t) {
    static const char fn[] = "ember_trainer_checkpoint";
    EMBER_CHECK_NULL(t, fn);
    const ember_train_config *c = &t->cfg;
    if (!c->checkpoint_dir[0]) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: no checkpoint-dir", fn);
    char dir[EMBER_TRAIN_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/ckpt-%lld", c->checkpoint_dir, (long long)t->step);
    if (t->world > 1) return checkpoint_ranks(t, dir); /* each rank its own rows, rank 0 the rest */
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
    ember_status st = dense_save(t, path, nt, n);
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
    char *man = manifest_text(t);
    if (!man) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    st = write_atomic(path, man);
    free(man);
    EMBER_TRY(st);
    if (t->world > 1) return EMBER_OK; /* the stores' commits and the pruning wait for every rank */
    if (c->lmdb[0]) EMBER_TRY(ember_cache_checkpoint(ember_dlrm_cache(t->m), t->step));
    prune_checkpoints(t);
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
    if (c->lmdb[0]) EMBER_TRY(lmdb_step(t, &want)); /* N ranks: every rank's store, the same step */
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
    ember_named_tensor *nt = NULL;
    int n;
    if (st == EMBER_OK) st = dense_tensors(t, &nt, &n);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st == EMBER_OK) st = dense_load(t, path, nt, n);
    free(nt);
    /* the embeddings as the MANIFEST says they were kept, re-sharded when need be */
    if (st == EMBER_OK) st = load_tables(t, dir, man);
    free(man);
    EMBER_TRY(st);
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
    ember_status st = ember_set_matmul_precision(cfg->matmul_precision);
    if (st == EMBER_OK) st = ember_comm_create_default(NULL, &t->comm);
    t->rank = ember_comm_rank(t->comm);
    t->world = ember_comm_size(t->comm);
    t->lb = cfg->batch;
    if (st == EMBER_OK && t->world > 1) {
        if (cfg->batch % t->world)
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT,
                              "%s: batch %lld is the global batch and must be a multiple of the %d ranks", fn,
                              (long long)cfg->batch, t->world);
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
    if (st == EMBER_OK && cfg->resume && cfg->lmdb[0]) st = lmdb_world_check(t); /* before the stores open */
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
            ember_offload_stats os; /* bytes moved since the model was built */
            if (ember_dlrm_offload(t->m) && ember_offload_get_stats(ember_dlrm_offload(t->m), &os) == EMBER_OK)
                fprintf(t->metrics, ",\"offload_h2d_bytes\":%llu,\"offload_d2h_bytes\":%llu,\"offload_evictions\":%llu",
                        (unsigned long long)os.h2d_bytes, (unsigned long long)os.d2h_bytes,
                        (unsigned long long)os.evictions);
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
    if (t->world > 1 && t->cfg.cache_ratio > 0) { /* every rank's shard's cache (a rank may hold none) */
        r->cached = 1;
        EMBER_TRY(cache_stats_ranks(t, &r->cache));
    }
    for (int k = 0; k < NT; k++) {
        r->table_rows += t->rows[k];
        r->table_bytes += t->rows[k] * (ember_dlrm_table_dim(t->m, k) + ember_dlrm_state_floats(t->m, k)) * 4;
    }
    ember_memory_get_stats(t->mm, &r->memory); /* NULL: the default manager */
    r->world = t->world;
    ember_offload *off = ember_dlrm_offload(t->m);
    r->offloaded = off != NULL;
    if (off) EMBER_TRY(ember_offload_get_stats(off, &r->offload));
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
                ember_cache_policy_name(c->cache_policy), r->world > 1 ? 0 : c->lookahead,
                r->world > 1 ? (c->lmdb[0] ? ", a shard per rank, LMDB stores" : ", a shard per rank")
                : c->lmdb[0] ? ", LMDB store" : "",
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
    if (r->offloaded) {
        const ember_offload_stats *o = &r->offload;
        fprintf(f, "  offload      %s: dense parameters, gradients and optimizer state %.2f MiB in chunks (%d per "
                   "kind) under device-mem %.2f MiB (peak %.2f MiB of chunks there); %.1f MB host->device, %.1f MB "
                   "device->host, %llu evictions, %llu prefetches; %d of %d optimizer chunks stepped on the device\n",
                ember_offload_policy_name(o->policy), mib(o->model_bytes), o->nchunks, mib(o->device_budget),
                mib(o->peak_device_chunk_bytes), (double)o->h2d_bytes / 1e6,
                (double)o->d2h_bytes / 1e6, (unsigned long long)o->evictions, (unsigned long long)o->prefetches,
                o->state_chunks_on_device, o->nchunks);
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
