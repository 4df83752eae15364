/*
 * The training job's configuration: one table of keys drives the command line, config
 * files, --help, validation and the copy a checkpoint keeps, so the four can never
 * disagree about a key's name, type or default.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/internal.h"
#include "ember/ember.h"
#include "ember/train.h"

/* K_SIZE: bytes, written as a number or with a unit (2GiB, 512MiB, 16G binary; 3GB decimal) */
typedef enum ktype { K_STR, K_I64, K_INT, K_U64, K_F64, K_F32, K_BOOL, K_LAYERS, K_ENUM, K_SIZE } ktype;

typedef struct key {
    const char *name;
    ktype type;
    size_t off;
    const char *const *names; /* K_ENUM: value names, index = value; "auto" first means -1 */
    int nnames;
    double lo, hi;            /* numeric range (inclusive) */
    const char *help;
} key;

static const char *const OPTIMS[] = {"sgd", "adagrad", "adam", "adamw"};
static const char *const SPARSE[] = {"auto", "sgd", "adagrad", "rowwise_adagrad", "adam", "adamw"};
static const char *const INTER[] = {"dot", "dot-self", "dcn"};
static const char *const POLICY[] = {"lfu", "lru", "static"};
/* -1 (auto), then the ember_plan_kind values in order: TABLEWISE, ROWWISE, COLUMNWISE, MINIMAX */
static const char *const PLANS[] = {"auto", "tablewise", "rowwise", "columnwise", "minimax"};
static const char *const ROUNDING[] = {"stochastic", "nearest"};     /* = EMBER_CACHE_ROUNDING_* */
static const char *const OFFLOADS[] = {"none", "auto", "static"};    /* = EMBER_TRAIN_OFFLOAD_* */
static const char *const MATMUL[] = {"f32", "bf16"};                 /* = EMBER_MATMUL_* */

#define F(field) offsetof(ember_train_config, field)
#define BIG 9.2e18
static const key KEYS[] = {
    {"data", K_STR, F(data), 0, 0, 0, 0, "Criteo TSV files (plain or gzip) or npy triplet prefixes, comma-separated; empty: synthetic"},
    {"eval-data", K_STR, F(eval_data), 0, 0, 0, 0, "held-out rows to evaluate on; empty: a split of the data"},
    {"eval-split", K_F64, F(eval_split), 0, 0, 0, 0.99, "held-out fraction of the data when there is no eval-data"},
    {"data-dir", K_STR, F(data_dir), 0, 0, 0, 0, "where the synthetic set is generated (default $EMBER_DATA_DIR or ./ember-data)"},
    {"rows", K_I64, F(rows), 0, 0, 1, BIG, "synthetic training rows"},
    {"eval-rows", K_I64, F(eval_rows), 0, 0, 1, BIG, "synthetic held-out rows"},
    {"scale", K_F64, F(scale), 0, 0, 1e-9, 1, "table rows: the Kaggle cardinalities times scale"},
    {"table-cap", K_I64, F(table_cap), 0, 0, 0, BIG, "rows per table at most (0: no cap)"},
    {"shuffle", K_I64, F(shuffle), 0, 0, 0, 1e9, "shuffle buffer in rows (0: file order)"},
    {"seed", K_U64, F(seed), 0, 0, 0, 0, "seed of the weights, the shuffle and the synthetic data"},
    {"emb-dim", K_INT, F(emb_dim), 0, 0, 1, 4096, "embedding dim"},
    {"bottom", K_LAYERS, F(bottom), 0, 0, 0, 0, "bottom MLP sizes after the 13 dense inputs (the last = emb-dim for dot)"},
    {"top", K_LAYERS, F(top), 0, 0, 0, 0, "top MLP sizes after the interaction (the last = 1)"},
    {"interaction", K_ENUM, F(interaction), INTER, 3, 0, 0, "dot | dot-self | dcn"},
    {"dcn-layers", K_INT, F(dcn_layers), 0, 0, 1, 64, "DCNv2 cross layers"},
    {"dcn-rank", K_INT, F(dcn_rank), 0, 0, 0, 65536, "DCNv2 low rank (0: full rank)"},
    {"batch", K_I64, F(batch), 0, 0, 1, 1 << 24, "samples per step"},
    {"epochs", K_INT, F(epochs), 0, 0, 1, 1e6, "passes over the training rows"},
    {"max-steps", K_I64, F(max_steps), 0, 0, 0, BIG, "stop after this many steps in all (0: no limit)"},
    {"lr", K_F32, F(lr), 0, 0, 1e-12, 1e6, "learning rate of the dense layers"},
    {"sparse-lr", K_F32, F(sparse_lr), 0, 0, 0, 1e6, "learning rate of the embedding rows (0: lr)"},
    {"optimizer", K_ENUM, F(optimizer), OPTIMS, 4, 0, 0, "dense optimizer: sgd | adagrad | adam | adamw"},
    {"sparse-optimizer", K_ENUM, F(sparse_optimizer), SPARSE, 6, 0, 0,
     "embedding optimizer: auto (as optimizer) | sgd | adagrad | rowwise_adagrad | adam | adamw"},
    {"threads", K_INT, F(threads), 0, 0, 0, 4096, "CPU threads (0: all cores or $OMP_NUM_THREADS)"},
    {"matmul-precision", K_ENUM, F(matmul_precision), MATMUL, 2, 0, 0,
     "products of the dense layers: f32 | bf16 (operands rounded to bfloat16, f32 accumulation: several times "
     "faster on CPUs with AMX or AVX512-BF16, refused elsewhere; check the AUC against f32)"},
    {"plan", K_ENUM, F(plan), PLANS, 5, 0, 0,
     "under mpirun: how the tables are sharded over the ranks, tablewise | rowwise | columnwise | minimax "
     "(frequency-aware, by the warmup counts) | auto (tablewise, rowwise or minimax, the lowest predicted max "
     "lookups per rank from the warmup counts; without counts rowwise) (one process: ignored)"},
    {"cache-ratio", K_F64, F(cache_ratio), 0, 0, 0, 1, "embedding cache: slots per table / rows (0: tables resident)"},
    {"cache-policy", K_ENUM, F(cache_policy), POLICY, 3, 0, 0, "lfu | lru | static"},
    {"lookahead", K_INT, F(lookahead), 0, 0, 0, 16, "batches the cache prepares ahead of the step"},
    {"lmdb", K_STR, F(lmdb), 0, 0, 0, 0, "LMDB store directory for the lowest tier (empty: rows in DRAM)"},
    {"host-ratio", K_F64, F(host_ratio), 0, 0, 0, 1, "with lmdb: DRAM cache in front of the disk, fraction of rows"},
    {"warmup", K_STR, F(warmup), 0, 0, 0, 0,
     "frequency counts (ember count -o FILE) to preload the hottest rows, and for plan minimax or auto"},
    {"tier-hot", K_F64, F(tier_hot), 0, 0, 0, 1,
     "precision tiers of the host store: fraction of each table's hottest rows (by the warmup counts) kept f32 "
     "(tier-hot and tier-warm 0: no tiers)"},
    {"tier-warm", K_F64, F(tier_warm), 0, 0, 0, 1,
     "precision tiers: fraction of the next hottest rows kept f16; the rest are int8-rowwise"},
    {"tier-rounding", K_ENUM, F(tier_rounding), ROUNDING, 2, 0, 0,
     "precision tiers: how rows are compressed, stochastic | nearest"},
    {"checkpoint-dir", K_STR, F(checkpoint_dir), 0, 0, 0, 0, "where checkpoints go (empty: none)"},
    {"checkpoint-every", K_I64, F(checkpoint_every), 0, 0, 0, BIG, "steps between checkpoints (0: only at the end)"},
    {"resume", K_BOOL, F(resume), 0, 0, 0, 0, "continue from the newest checkpoint in checkpoint-dir"},
    {"metrics", K_STR, F(metrics), 0, 0, 0, 0, "JSON lines of step, loss, samples/s, hit rate, AUC (empty: none)"},
    {"metrics-every", K_I64, F(metrics_every), 0, 0, 1, BIG, "steps between metrics lines"},
    {"eval-every", K_I64, F(eval_every), 0, 0, 0, BIG, "steps between evaluations (0: only at the end)"},
    {"profile", K_STR, F(profile), 0, 0, 0, 0, "Chrome trace of the run (opens in Perfetto) to PATH, a summary table to PATH.txt (empty: none)"},
    {"device-mem", K_SIZE, F(device_mem), 0, 0, 0, BIG, "device memory budget in bytes (or 2GiB, 512MiB, 3GB) for cache slots, dense layers and activations together (0: unlimited)"},
    {"offload", K_ENUM, F(offload), OFFLOADS, 3, 0, 0,
     "dense parameters, gradients and optimizer state: none (own tensors, which device-mem must hold) | auto | "
     "static (in chunks moved between host and device under device-mem, which it needs)"},
    {"offload-param-host", K_F64, F(offload_param_host), 0, 0, 0, 1,
     "offload static: fraction of the parameter (and gradient) chunks kept on the host"},
    {"offload-state-host", K_F64, F(offload_state_host), 0, 0, 0, 1,
     "offload static: fraction of the optimizer-state chunks kept on the host"},
};
#define NKEYS ((int)(sizeof KEYS / sizeof *KEYS))

void ember_train_config_defaults(ember_train_config *c) {
    memset(c, 0, sizeof *c);
    const char *dir = getenv("EMBER_DATA_DIR");
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dir && *dir ? dir : "ember-data");
    c->eval_split = 0.1;
    c->rows = 2000000;
    c->eval_rows = 200000;
    c->scale = 0.05;
    c->shuffle = 1 << 16;
    c->seed = 1;
    c->emb_dim = 64;
    const int64_t bottom[] = {512, 256, 64}, top[] = {1024, 1024, 512, 256, 1};
    memcpy(c->bottom, bottom, sizeof bottom);
    memcpy(c->top, top, sizeof top);
    c->interaction = EMBER_DLRM_DOT;
    c->dcn_layers = 3;
    c->batch = 2048;
    c->epochs = 1;
    c->lr = 0.002f;
    c->sparse_lr = 0.05f;
    c->optimizer = EMBER_OPTIM_ADAGRAD;
    c->sparse_optimizer = -1;
    c->cache_ratio = 0.015;
    c->cache_policy = EMBER_CACHE_POLICY_LFU;
    c->lookahead = 2;
    c->host_ratio = 0;
    c->metrics_every = 10;
    c->offload = EMBER_TRAIN_OFFLOAD_NONE;
    c->offload_param_host = 0.5;
    c->offload_state_host = 1;
}

static const key *find_key(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

int ember_train_config_is_flag(const char *name) {
    const key *k = name ? find_key(name) : NULL;
    return k && k->type == K_BOOL;
}

static ember_status bad_value(const key *k, const char *v, const char *why) {
    return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s = '%s': %s", k->name, v, why);
}

static ember_status parse_number(const key *k, const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    while (end && isspace((unsigned char)*end)) end++;
    if (end == v || *end || errno || !isfinite(x)) return bad_value(k, v, "not a number");
    if ((k->type == K_I64 || k->type == K_INT || k->type == K_U64) && x != floor(x))
        return bad_value(k, v, "not a whole number");
    if (k->type != K_U64 && (x < k->lo || x > k->hi)) {
        char why[128];
        snprintf(why, sizeof why, "out of range [%g, %g]", k->lo, k->hi);
        return bad_value(k, v, why);
    }
    *out = x;
    return EMBER_OK;
}

/* Bytes: a whole number, or a number with a unit K, M, G, T (binary, also KiB ...) or KB,
   MB, GB, TB (decimal), as `ember plan --device-mem` takes them; within [lo, hi]. */
static ember_status parse_size(const key *k, const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || !isfinite(x)) return bad_value(k, v, "not a size such as 3000000, 512MiB or 2GiB");
    const char *units = "KMGT", *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (*end && (!u || !*u)) return bad_value(k, v, "not a size such as 3000000, 512MiB or 2GiB");
    if (u) {
        const char *rest = end + 1;
        double base = !strcmp(rest, "") || !strcmp(rest, "i") || !strcmp(rest, "iB") ? 1024.0
                      : !strcmp(rest, "B")                                           ? 1000.0
                                                                                     : 0.0;
        if (base == 0) return bad_value(k, v, "not a size such as 3000000, 512MiB or 2GiB");
        for (const char *q = units; q <= u; q++) x *= base;
    }
    x = floor(x);
    if (x < k->lo || x > k->hi) {
        char why[128];
        snprintf(why, sizeof why, "out of range [%g, %g] bytes", k->lo, k->hi);
        return bad_value(k, v, why);
    }
    *out = x;
    return EMBER_OK;
}

ember_status ember_train_config_set(ember_train_config *c, const char *name, const char *v) {
    static const char fn[] = "ember_train_config_set";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(name, fn);
    EMBER_CHECK_NULL(v, fn);
    const key *k = find_key(name);
    if (!k) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "unknown key '%s' (ember train --help lists them)", name);
    char *p = (char *)c + k->off;
    double x = 0;
    switch (k->type) {
    case K_STR:
        if (strlen(v) >= EMBER_TRAIN_PATH_MAX) return bad_value(k, v, "longer than 1023 bytes");
        snprintf(p, EMBER_TRAIN_PATH_MAX, "%s", v);
        return EMBER_OK;
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *(int *)p = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *(int *)p = 0;
        else return bad_value(k, v, "not true or false");
        return EMBER_OK;
    case K_ENUM:
        for (int i = 0; i < k->nnames; i++)
            if (!strcmp(v, k->names[i])) {
                *(int *)p = !strcmp(k->names[0], "auto") ? i - 1 : i;
                return EMBER_OK;
            }
        return bad_value(k, v, k->help);
    case K_LAYERS: {
        int64_t l[EMBER_DLRM_MAX_LAYERS] = {0};
        int n = 0;
        const char *s = v;
        while (*s) {
            char *end;
            errno = 0;
            long long z = strtoll(s, &end, 10);
            if (end == s || z < 1 || z > (1 << 20) || errno) return bad_value(k, v, "not sizes like 512-256-64");
            if (n == EMBER_DLRM_MAX_LAYERS) return bad_value(k, v, "more than 16 layers");
            l[n++] = z;
            if (*end == '-' && end[1]) s = end + 1;
            else if (*end) return bad_value(k, v, "not sizes like 512-256-64");
            else s = end;
        }
        if (!n) return bad_value(k, v, "no sizes");
        memcpy(p, l, sizeof l);
        return EMBER_OK;
    }
    case K_SIZE:
        EMBER_TRY(parse_size(k, v, &x));
        *(int64_t *)p = (int64_t)x;
        return EMBER_OK;
    default:
        EMBER_TRY(parse_number(k, v, &x));
        break;
    }
    switch (k->type) {
    case K_I64: *(int64_t *)p = (int64_t)x; break;
    case K_INT: *(int *)p = (int)x; break;
    case K_F64: *(double *)p = x; break;
    case K_F32: *(float *)p = (float)x; break;
    case K_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (*v == '-' || *end || errno) return bad_value(k, v, "not a whole number >= 0");
        *(uint64_t *)p = u;
        break;
    }
    default: break;
    }
    return EMBER_OK;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

ember_status ember_train_config_parse(ember_train_config *c, const char *text, const char *label) {
    static const char fn[] = "ember_train_config_parse";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(text, fn);
    if (!label) label = "config";
    int line = 0;
    const char *s = text;
    char buf[4096];
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        line++;
        if (len >= sizeof buf)
            return ember__error(EMBER_ERR_PARSE, "%s:%d: line longer than %zu bytes", label, line, sizeof buf - 1);
        memcpy(buf, s, len);
        buf[len] = '\0';
        s += len + (nl ? 1 : 0);
        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        char *t = trim(buf);
        if (!*t) continue;
        char *eq = strchr(t, '=');
        if (!eq)
            return ember__error(EMBER_ERR_PARSE, "%s:%d: expected 'key = value', found '%s'", label, line, t);
        *eq = '\0';
        char *k = trim(t), *v = trim(eq + 1);
        if (ember_train_config_set(c, k, v) != EMBER_OK) {
            char why[1024];
            const char *e = ember_last_error(), *colon = strstr(e, ": ");
            snprintf(why, sizeof why, "%s", colon && strncmp(e, "EMBER_", 6) == 0 ? colon + 2 : e);
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s:%d: %s", label, line, why);
        }
    }
    return EMBER_OK;
}

ember_status ember_train_config_load(ember_train_config *c, const char *path) {
    static const char fn[] = "ember_train_config_load";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(path, fn);
    FILE *f = fopen(path, "rb");
    if (!f) return ember__error(EMBER_ERR_IO, "config file %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t n = 0, cap = 0;
    ember_status st = EMBER_OK;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > ((size_t)1 << 24)) {
                st = ember__error(EMBER_ERR_PARSE, "config file %s: larger than 16 MiB", path);
                break;
            }
            char *q = realloc(text, cap);
            if (!q) {
                st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "config file %s", path);
                break;
            }
            text = q;
        }
        size_t r = fread(text + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    if (st == EMBER_OK && ferror(f)) st = ember__error(EMBER_ERR_IO, "config file %s: read error", path);
    fclose(f);
    if (st == EMBER_OK) {
        text[n] = '\0';
        if (strlen(text) != n) st = ember__error(EMBER_ERR_PARSE, "config file %s: contains a NUL byte", path);
    }
    if (st == EMBER_OK) st = ember_train_config_parse(c, text, path);
    free(text);
    return st;
}

static size_t format_value(const key *k, const ember_train_config *c, char *buf, size_t n) {
    const char *p = (const char *)c + k->off;
    switch (k->type) {
    case K_STR: return (size_t)snprintf(buf, n, "%s", p);
    case K_BOOL: return (size_t)snprintf(buf, n, "%s", *(const int *)p ? "true" : "false");
    case K_ENUM: {
        int v = *(const int *)p + (!strcmp(k->names[0], "auto") ? 1 : 0);
        return (size_t)snprintf(buf, n, "%s", v >= 0 && v < k->nnames ? k->names[v] : "invalid");
    }
    case K_LAYERS: {
        const int64_t *l = (const int64_t *)p;
        size_t len = 0;
        for (int i = 0; i < EMBER_DLRM_MAX_LAYERS && l[i] > 0; i++)
            len += (size_t)snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s%lld", i ? "-" : "",
                                    (long long)l[i]);
        if (!len && n) buf[0] = '\0';
        return len;
    }
    case K_I64:
    case K_SIZE: return (size_t)snprintf(buf, n, "%lld", (long long)*(const int64_t *)p);
    case K_INT: return (size_t)snprintf(buf, n, "%d", *(const int *)p);
    case K_U64: return (size_t)snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p);
    case K_F64: return (size_t)snprintf(buf, n, "%.17g", *(const double *)p);
    case K_F32: return (size_t)snprintf(buf, n, "%.9g", (double)*(const float *)p);
    }
    return 0;
}

size_t ember_train_config_format(const ember_train_config *c, char *buf, size_t n) {
    size_t len = 0;
    char v[EMBER_TRAIN_PATH_MAX + 64];
    for (int i = 0; i < NKEYS; i++) {
        format_value(&KEYS[i], c, v, sizeof v);
        len += (size_t)snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s = %s\n", KEYS[i].name, v);
    }
    return len;
}

void ember_train_config_help(FILE *f) {
    ember_train_config d;
    ember_train_config_defaults(&d);
    char v[EMBER_TRAIN_PATH_MAX + 64];
    for (int i = 0; i < NKEYS; i++) {
        format_value(&KEYS[i], &d, v, sizeof v);
        const char *kind = KEYS[i].type == K_BOOL ? "" : KEYS[i].type == K_STR ? " PATH" : " X";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", KEYS[i].name, kind);
        fprintf(f, "  %-24s %s%s%s%s\n", left, KEYS[i].help, *v ? " [" : "", v, *v ? "]" : "");
    }
}

ember_status ember_train_config_validate(const ember_train_config *c) {
    EMBER_CHECK_NULL(c, "ember_train_config_validate");
    int nb = 0, nt = 0;
    while (nb < EMBER_DLRM_MAX_LAYERS && c->bottom[nb] > 0) nb++;
    while (nt < EMBER_DLRM_MAX_LAYERS && c->top[nt] > 0) nt++;
    if (!nb || !nt) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: bottom and top need at least one layer");
    if (c->interaction != EMBER_DLRM_DCN && c->bottom[nb - 1] != c->emb_dim)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "config: bottom ends with %lld but the dot interaction needs emb-dim %d there",
                            (long long)c->bottom[nb - 1], c->emb_dim);
    if (c->top[nt - 1] != 1)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: top must end with 1 output, not %lld",
                            (long long)c->top[nt - 1]);
    if (c->cache_ratio == 0 && c->lmdb[0])
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: lmdb needs the cache (cache-ratio > 0)");
    if (c->resume && !c->checkpoint_dir[0])
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: resume needs checkpoint-dir");
    if (c->eval_data[0] && !c->data[0])
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: eval-data needs data (synthetic data brings its own)");
    if (!c->data[0] && !c->data_dir[0])
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: synthetic data needs data-dir");
    const int plan_counts = c->plan == EMBER_TRAIN_PLAN_AUTO || c->plan == EMBER_PLAN_MINIMAX;
    if (c->warmup[0] && c->cache_ratio == 0 && !plan_counts)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "config: warmup needs the cache (cache-ratio > 0) or a plan that uses counts (minimax, "
                            "auto)");
    if (c->plan == EMBER_PLAN_MINIMAX && !c->warmup[0])
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "config: plan minimax needs warmup COUNTS (ember count -o FILE over the training data) "
                            "to place the hot rows");
    if (c->tier_hot > 0 || c->tier_warm > 0) {
        const char *k = c->tier_hot > 0 ? "tier-hot" : "tier-warm";
        if (c->tier_hot + c->tier_warm > 1)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: tier-hot %g + tier-warm %g is more than 1",
                                c->tier_hot, c->tier_warm);
        if (c->cache_ratio == 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "config: %s needs the cache's host store (cache-ratio > 0)", k);
        if (c->lmdb[0])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "config: %s needs the host store; the LMDB store (lmdb) takes no tiers", k);
        if (!c->warmup[0])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "config: %s needs warmup COUNTS (ember count -o FILE) to rank the rows", k);
    }
    if ((unsigned)c->offload >= EMBER_TRAIN_OFFLOAD_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: offload %d is not none, auto or static",
                            (int)c->offload);
    if (!(c->offload_param_host >= 0 && c->offload_param_host <= 1 && c->offload_state_host >= 0 &&
          c->offload_state_host <= 1))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "config: offload-param-host %g and offload-state-host %g must lie in [0, 1]",
                            c->offload_param_host, c->offload_state_host);
    if ((unsigned)c->matmul_precision >= EMBER_MATMUL_PRECISION_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "config: matmul-precision %d is not f32 or bf16",
                            (int)c->matmul_precision);
    const char *no_bf16 = c->matmul_precision == EMBER_MATMUL_BF16 ? ember__matmul_bf16_refusal() : NULL;
    if (no_bf16) return ember__error(EMBER_ERR_UNSUPPORTED, "config: matmul-precision bf16: %s", no_bf16);
    /* no default budget: the point of offload is the budget the user has */
    if (c->offload != EMBER_TRAIN_OFFLOAD_NONE && c->device_mem <= 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "config: offload = %s needs device-mem (the device budget in bytes that the dense "
                            "parameters, gradients and optimizer state are offloaded under)",
                            OFFLOADS[c->offload]);
    return EMBER_OK;
}
