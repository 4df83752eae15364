/*
 * Synthetic Criteo: the shape, cardinalities and skew of the Kaggle data, labels from
 * a known model.
 *
 * Every value is a pure function of (seed, row, slot): a row key is mixed from the
 * seed and the row number, and each value takes one splitmix64 step from it. So any
 * range of rows can be made by any thread in any order (the writer splits rows over
 * threads and still writes the same bytes), and a test can regenerate one row alone.
 *
 * Ids: a rank r in [0, N) follows a bounded power law (density x^-s on [1, N+1),
 * r = floor(x) - 1, drawn by inverting its CDF), then a bijection r -> (r * P + c)
 * mod N scatters the hot ranks over the id space as hashing would. Each field's
 * exponent s is solved so that the top 1% of its ids take hot_share of its lookups,
 * about 90% as measured on Criteo. Since the CDF is known in closed form, the share
 * of any top fraction is reported exactly, and the tests compare it with counts.
 *
 * Labels: logit = bias + signal * (sum_i wd_i * log1p(x_i) + sum_t w_t(id)), with one
 * weight per (field, id) taken from a hash (so no table is stored) and per-field
 * scales. The probability is known for every row, so the Bayes-optimal AUC (the AUC of
 * the true probability) is computed and printed: it is the ceiling any model can reach.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/internal.h"
#include "ember/ember.h"

#define ND EMBER_CRITEO_NUM_DENSE
#define NS EMBER_CRITEO_NUM_SPARSE

const int64_t ember_criteo_kaggle_cardinalities[NS] = {
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27,   14992, 5461306, 10,      5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572};

struct ember_gen {
    uint64_t seed;
    int64_t card[NS];
    double s[NS];
    double a[NS];      /* (N+1)^(1-s) - 1, or log(N+1) when s == 1 */
    double inv[NS];    /* 1 / (1 - s), 0 when s == 1 */
    uint64_t wkey[NS]; /* hash key of the id weights */
    uint64_t mul[NS];  /* rank -> id bijection */
    uint64_t add[NS];
    double pool[NS];   /* mean bag size (1 = one-hot) */
    int multi_hot;
    double wscale[NS]; /* weight scale of each field */
    double wd[ND];     /* dense weights */
    double dscale[ND], dpow[ND];
    double bias, signal, missing;
};

/* ---- the id distribution ---- */

/* Share of lookups of ranks < k under exponent s over N ids. */
static double top_share(double s, int64_t N, double k) {
    if (k >= (double)N) return 1.0;
    if (k <= 0) return 0.0;
    if (fabs(s - 1.0) < 1e-9) return log(k + 1.0) / log((double)N + 1.0);
    return (pow(k + 1.0, 1.0 - s) - 1.0) / (pow((double)N + 1.0, 1.0 - s) - 1.0);
}

static double solve_exponent(int64_t N, double share) {
    double k = ceil(0.01 * (double)N);
    double lo = 0.0, hi = 8.0;
    if (top_share(hi, N, k) < share) return hi;
    if (top_share(lo, N, k) > share) return lo;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (top_share(mid, N, k) < share) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static inline int64_t zipf_rank(const ember_gen *g, int t, uint64_t h) {
    int64_t N = g->card[t];
    if (N <= 1) return 0;
    double u = ember__unit53(h);
    double x;
    /* log rather than log1p: 1 + u*a is never tiny, and log is the fast one */
    if (g->inv[t] == 0) x = exp(u * g->a[t]);
    else x = exp(log(1.0 + u * g->a[t]) * g->inv[t]);
    int64_t r = (int64_t)x - 1;
    return r < 0 ? 0 : r >= N ? N - 1 : r;
}

static inline uint32_t rank_to_id(const ember_gen *g, int t, int64_t r) {
    uint64_t N = (uint64_t)g->card[t]; /* r, mul < N <= 2^32: the product fits 64 bits */
    return (uint32_t)(((uint64_t)r * g->mul[t] % N + g->add[t]) % N);
}

/* Weight of an id in the hidden model: uniform with unit variance, scaled per field. */
static inline double id_weight(const ember_gen *g, int t, uint32_t id) {
    uint64_t h = ember__mix64(g->wkey[t] ^ (uint64_t)id);
    return g->wscale[t] * (ember__unit53(h) * 3.4641016151377544 - 1.7320508075688772);
}

/* ---- the per-row stream ---- */

typedef struct rowgen {
    uint64_t key, ctr;
} rowgen;

static inline void row_init(rowgen *r, const ember_gen *g, int64_t row) {
    r->key = ember__mix64(g->seed ^ ember__mix64((uint64_t)row + UINT64_C(0xC0FFEE)));
    r->ctr = 0;
}

static inline uint64_t row_next(rowgen *r) { return ember__mix64(r->key + ++r->ctr * UINT64_C(0x9E3779B97F4A7C15)); }

/* Poisson(lambda) for small lambda, by inversion. */
static int64_t poisson(rowgen *r, double lambda) {
    double u = ember__unit53(row_next(r)), p = exp(-lambda), c = p;
    int64_t k = 0;
    while (u > c && k < 1000) {
        k++;
        p *= lambda / (double)k;
        c += p;
    }
    return k;
}

/*
 * One row: raw integers (missing bit i set in *mask), the first id of each field,
 * the label and its probability. Bags of multi-hot fields go to bag_cb when given.
 */
typedef void (*bag_fn)(void *user, int field, const uint32_t *ids, int64_t n);

static void gen_row(const ember_gen *g, int64_t row, int64_t *ints, uint16_t *mask, uint32_t *ids, int32_t *label,
                    float *prob, bag_fn bag_cb, void *user) {
    rowgen r;
    row_init(&r, g, row);
    double logit = g->bias;
    uint16_t m = 0;
    for (int i = 0; i < ND; i++) {
        uint64_t h = row_next(&r);
        int64_t x = 0;
        /* low 16 bits decide missing, the top 48 give the value */
        if ((double)(h & 0xffff) * (1.0 / 65536.0) < g->missing) {
            m |= (uint16_t)(1u << i);
        } else {
            /* Pareto-tailed counts: u^-1 or u^-1/2, with no transcendental call */
            double u = (double)(h >> 16) * (1.0 / 281474976710656.0) * 0.999999 + 1e-6;
            double v = g->dpow[i] > 0.75 ? 1.0 / u : 1.0 / sqrt(u);
            x = (int64_t)(g->dscale[i] * (v - 1.0));
            if (x > 100000000) x = 100000000;
            logit += g->signal * g->wd[i] * (double)ember__dense_value(EMBER_DENSE_LOG1P, x);
        }
        ints[i] = x;
    }
    for (int t = 0; t < NS; t++) {
        if (!g->multi_hot || g->pool[t] <= 1.0) {
            uint32_t id = rank_to_id(g, t, zipf_rank(g, t, row_next(&r)));
            ids[t] = id;
            logit += g->signal * id_weight(g, t, id);
            if (bag_cb) bag_cb(user, t, &id, 1);
            continue;
        }
        int64_t n = 1 + poisson(&r, g->pool[t] - 1.0);
        uint32_t bag[256];
        if (n > 256) n = 256;
        double w = 0;
        for (int64_t k = 0; k < n; k++) {
            bag[k] = rank_to_id(g, t, zipf_rank(g, t, row_next(&r)));
            w += id_weight(g, t, bag[k]);
        }
        ids[t] = bag[0];
        logit += g->signal * w / (double)n;
        if (bag_cb) bag_cb(user, t, bag, n);
    }
    double p = 1.0 / (1.0 + exp(-logit));
    if (mask) *mask = m;
    if (prob) *prob = (float)p;
    if (label) *label = ember__unit53(row_next(&r)) < p;
}

/* ---- public API ---- */

ember_status ember_gen_create(const ember_gen_params *p, ember_gen **out) {
    EMBER_CHECK_NULL(p, "ember_gen_create");
    EMBER_CHECK_NULL(out, "ember_gen_create");
    *out = NULL;
    double scale = p->scale ? p->scale : 1.0;
    double share = p->hot_share ? p->hot_share : 0.90;
    double small = p->zipf_small ? p->zipf_small : 1.1;
    if (!(scale > 0 && scale <= 1e3) || !(share > 0.01 && share < 1.0) || !(small >= 0 && small <= 8))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_create: scale %g (0..1000], hot_share %g (0.01..1), zipf_small %g",
                            scale, share, small);
    if (p->signal < 0 || p->signal > 100 || p->missing >= 1)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_create: signal %g, missing %g", p->signal, p->missing);
    ember_gen *g = calloc(1, sizeof *g);
    if (!g) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_gen_create");
    g->seed = ember__mix64(p->seed ^ UINT64_C(0x6A09E667F3BCC909));
    g->signal = p->signal ? p->signal : 1.0;
    g->missing = p->missing == 0 ? 0.1 : p->missing < 0 ? 0.0 : p->missing;
    for (int t = 0; t < NS; t++) {
        int64_t base = p->cardinalities ? p->cardinalities[t] : ember_criteo_kaggle_cardinalities[t];
        if (base <= 0 || base > (INT64_C(1) << 32)) {
            free(g);
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_create: cardinality of C%d is %lld (1 .. 2^32)", t + 1,
                                (long long)base);
        }
        double c = floor((double)base * scale + 0.5);
        g->card[t] = c < 1 ? 1 : c > 4294967296.0 ? INT64_C(4294967296) : (int64_t)c;
        int64_t N = g->card[t];
        if (p->zipf) {
            if (!(p->zipf[t] >= 0 && p->zipf[t] <= 8)) {
                free(g);
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_create: zipf[%d] = %g (0..8)", t, p->zipf[t]);
            }
            g->s[t] = p->zipf[t];
        } else {
            g->s[t] = N >= 100 ? solve_exponent(N, share) : small;
        }
        g->a[t] = fabs(g->s[t] - 1.0) < 1e-9 ? log((double)N + 1.0) : pow((double)N + 1.0, 1.0 - g->s[t]) - 1.0;
        g->inv[t] = fabs(g->s[t] - 1.0) < 1e-9 ? 0.0 : 1.0 / (1.0 - g->s[t]);
        g->wkey[t] = ember__mix64(g->seed ^ ((uint64_t)t << 40) ^ UINT64_C(0x51ED27));
        uint64_t mul = UINT64_C(2654435761) % (uint64_t)N;
        if (mul == 0) mul = 1;
        while (gcd_u64(mul, (uint64_t)N) != 1) mul++;
        g->mul[t] = mul;
        g->add[t] = ember__mix64(g->seed + (uint64_t)t) % (uint64_t)N;
        g->pool[t] = 1.0;
        if (p->pooling) {
            if (!(p->pooling[t] >= 0 && p->pooling[t] <= 200)) {
                free(g);
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_create: pooling[%d] = %g (0..200)", t, p->pooling[t]);
            }
            if (p->pooling[t] > 1.0) {
                g->pool[t] = p->pooling[t];
                g->multi_hot = 1;
            }
        }
        /* Big fields carry more of the signal, as in real click data. */
        g->wscale[t] = 0.15 + 0.35 * log10((double)N + 1.0) / 7.0;
    }
    for (int i = 0; i < ND; i++) {
        uint64_t h = ember__mix64(g->seed + 1000 + (uint64_t)i);
        g->wd[i] = (i % 2 ? 0.12 : -0.08) * (0.5 + ember__unit53(h));
        g->dscale[i] = 1.0 + (double)(i % 5) * 3.0;
        g->dpow[i] = i % 3 == 1 ? 1.0 : 0.5;
    }
    g->bias = -1.0;
    *out = g;
    return EMBER_OK;
}

void ember_gen_destroy(ember_gen *g) { free(g); }

int64_t ember_gen_cardinality(const ember_gen *g, int field) {
    return g && (unsigned)field < NS ? g->card[field] : 0;
}

double ember_gen_zipf(const ember_gen *g, int field) { return g && (unsigned)field < NS ? g->s[field] : 0; }

double ember_gen_hot_share(const ember_gen *g, int field, double fraction) {
    if (!g || (unsigned)field >= NS) return 0;
    return top_share(g->s[field], g->card[field], ceil(fraction * (double)g->card[field]));
}

ember_status ember_gen_rows(const ember_gen *g, int64_t first, int64_t n, int64_t *ints, uint16_t *missing_mask,
                            uint32_t *sparse, int32_t *labels, float *prob) {
    EMBER_CHECK_NULL(g, "ember_gen_rows");
    if (first < 0 || n < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_rows: rows [%lld, +%lld)", (long long)first, (long long)n);
#pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        int64_t iv[ND];
        uint32_t ids[NS];
        int32_t lab;
        float pr;
        uint16_t m;
        gen_row(g, first + i, iv, &m, ids, &lab, &pr, NULL, NULL);
        if (ints) memcpy(ints + i * ND, iv, sizeof iv);
        if (missing_mask) missing_mask[i] = m;
        if (sparse) memcpy(sparse + i * NS, ids, sizeof ids);
        if (labels) labels[i] = lab;
        if (prob) prob[i] = pr;
    }
    return EMBER_OK;
}

typedef struct bag_sink {
    int field;
    int64_t *offsets, *values, cap, n;
} bag_sink;

static void bag_collect(void *user, int field, const uint32_t *ids, int64_t n) {
    bag_sink *b = user;
    if (field != b->field) return;
    for (int64_t k = 0; k < n; k++) {
        if (b->n < b->cap) b->values[b->n] = ids[k];
        b->n++;
    }
}

ember_status ember_gen_bags(const ember_gen *g, int field, int64_t first, int64_t n, int64_t *offsets, int64_t *values,
                            int64_t values_cap) {
    EMBER_CHECK_NULL(g, "ember_gen_bags");
    EMBER_CHECK_NULL(offsets, "ember_gen_bags");
    if ((unsigned)field >= NS || first < 0 || n < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_bags: field %d, rows [%lld, +%lld)", field,
                            (long long)first, (long long)n);
    bag_sink b = {.field = field, .offsets = offsets, .values = values, .cap = values ? values_cap : 0};
    int64_t iv[ND];
    uint32_t ids[NS];
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        gen_row(g, first + i, iv, NULL, ids, NULL, NULL, bag_collect, &b);
        offsets[i + 1] = b.n;
    }
    if (b.n > b.cap)
        return ember__error(EMBER_ERR_SHAPE, "ember_gen_bags: %lld ids need room, values holds %lld (offsets[n] has the size)",
                            (long long)b.n, (long long)b.cap);
    return EMBER_OK;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

ember_status ember_gen_bayes_auc(const ember_gen *g, int64_t sample, double *auc) {
    EMBER_CHECK_NULL(g, "ember_gen_bayes_auc");
    EMBER_CHECK_NULL(auc, "ember_gen_bayes_auc");
    if (sample < 2 || sample > (INT64_C(1) << 28))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_bayes_auc: sample %lld (2 .. 2^28)", (long long)sample);
    float *p;
    EMBER_TRY(ember__ds_alloc(NULL, (size_t)sample * sizeof *p, (void **)&p));
    ember_status st = ember_gen_rows(g, 0, sample, NULL, NULL, NULL, NULL, p);
    if (st != EMBER_OK) {
        ember__ds_free(NULL, p);
        return st;
    }
    qsort(p, (size_t)sample, sizeof *p, cmp_float);
    /* Population AUC of the score p with Y ~ Bernoulli(p): over ordered pairs (i, j),
     * i != j, weight p_i (1 - p_j) counts 1 when p_i > p_j and 1/2 on ties. */
    double neg_below = 0, num = 0, sum_p = 0, sum_q = 0, self = 0;
    for (int64_t i = 0; i < sample;) {
        int64_t j = i;
        double tp = 0, tq = 0, tself = 0;
        while (j < sample && p[j] == p[i]) {
            tp += p[j];
            tq += 1.0 - p[j];
            tself += (double)p[j] * (1.0 - p[j]);
            j++;
        }
        num += tp * neg_below + 0.5 * (tp * tq - tself);
        neg_below += tq;
        sum_p += tp;
        sum_q += tq;
        self += tself;
        i = j;
    }
    ember__ds_free(NULL, p);
    double den = sum_p * sum_q - self;
    *auc = den > 0 ? num / den : 0.5;
    return EMBER_OK;
}

/* ---- writing ---- */

static inline char *put_u64(char *o, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *o++ = tmp[--n];
    return o;
}

static inline char *put_hex8(char *o, uint32_t v) {
    static const char hx[] = "0123456789abcdef";
    for (int k = 7; k >= 0; k--) o[7 - k] = hx[(v >> (4 * k)) & 15];
    return o + 8;
}

typedef struct write_job {
    int fd, nbuf, err;
    char *buf;    /* (nbuf, cap) */
    size_t cap;
    size_t *used; /* (nbuf) bytes in each */
} write_job;

static void *write_main(void *arg) {
    write_job *w = arg;
    w->err = 0;
    for (int b = 0; b < w->nbuf && !w->err; b++) w->err = ember__write_all(w->fd, w->buf + (size_t)b * w->cap, w->used[b]);
    return NULL;
}

#define GEN_BLOCK 16384 /* rows per formatting task */
#define ROW_MAX 512     /* bytes of one TSV row at most */

ember_status ember_gen_write(const ember_gen *g, const ember_gen_write_params *p) {
    EMBER_CHECK_NULL(g, "ember_gen_write");
    EMBER_CHECK_NULL(p, "ember_gen_write");
    EMBER_CHECK_NULL(p->path, "ember_gen_write");
    if (p->rows < 0 || (unsigned)p->format >= EMBER_GEN_FORMAT_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_write: rows %lld, format %d", (long long)p->rows, (int)p->format);
    if (g->multi_hot)
        return ember__error(EMBER_ERR_UNSUPPORTED,
                            "ember_gen_write: multi-hot fields cannot be written as Criteo TSV or TorchRec npy (one id "
                            "per field); use ember_gen_bags in memory");
    int threads = ember__ds_threads(p->threads);
    int64_t per_round = (int64_t)threads * GEN_BLOCK;
    ember_status st = EMBER_OK;
    if (p->format == EMBER_GEN_TSV) {
        char tmp[600];
        if (strlen(p->path) > 500) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_write: path too long");
        ember__temp_path(tmp, sizeof tmp, p->path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return ember__error(EMBER_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        /* Two sets of buffers: a writer thread writes round k while round k + 1 is formatted. */
        size_t cap = (size_t)GEN_BLOCK * ROW_MAX;
        write_job job[2] = {{.fd = fd}, {.fd = fd}};
        pthread_t writer;
        int writing = 0, cur = 0;
        for (int k = 0; k < 2 && st == EMBER_OK; k++) {
            job[k].nbuf = threads;
            job[k].used = calloc((size_t)threads, sizeof *job[k].used);
            st = job[k].used ? ember__ds_alloc(NULL, cap * (size_t)threads, (void **)&job[k].buf)
                             : ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_gen_write");
            job[k].cap = cap;
        }
        for (int64_t r0 = 0; r0 < p->rows && st == EMBER_OK; r0 += per_round) {
            write_job *w = &job[cur];
#pragma omp parallel for num_threads(threads) schedule(static, 1)
            for (int b = 0; b < threads; b++) {
                int64_t lo = r0 + (int64_t)b * GEN_BLOCK, hi = lo + GEN_BLOCK;
                if (hi > p->rows) hi = p->rows;
                char *o0 = w->buf + (size_t)b * cap, *o = o0;
                for (int64_t row = lo; row < hi; row++) {
                    int64_t iv[ND];
                    uint32_t ids[NS];
                    int32_t lab;
                    uint16_t m;
                    gen_row(g, row, iv, &m, ids, &lab, NULL, NULL, NULL);
                    *o++ = (char)('0' + lab);
                    for (int i = 0; i < ND; i++) {
                        *o++ = '\t';
                        if (!(m >> i & 1)) o = put_u64(o, (uint64_t)iv[i]);
                    }
                    for (int t = 0; t < NS; t++) {
                        *o++ = '\t';
                        o = put_hex8(o, ids[t]);
                    }
                    *o++ = '\n';
                }
                w->used[b] = lo < hi ? (size_t)(o - o0) : 0;
            }
            if (writing) {
                pthread_join(writer, NULL);
                writing = 0;
                if (job[!cur].err) st = ember__error(EMBER_ERR_IO, "writing %s: %s", tmp, strerror(job[!cur].err));
            }
            if (st != EMBER_OK) break;
            if (pthread_create(&writer, NULL, write_main, w) == 0) {
                writing = 1;
            } else {
                write_main(w);
                if (w->err) st = ember__error(EMBER_ERR_IO, "writing %s: %s", tmp, strerror(w->err));
            }
            cur = !cur;
            if (p->progress) {
                int64_t done = r0 + per_round < p->rows ? r0 + per_round : p->rows;
                p->progress((uint64_t)done, (uint64_t)p->rows, done, p->progress_user);
            }
        }
        if (writing) {
            pthread_join(writer, NULL);
            if (job[!cur].err && st == EMBER_OK) st = ember__error(EMBER_ERR_IO, "writing %s: %s", tmp, strerror(job[!cur].err));
        }
        for (int k = 0; k < 2; k++) {
            ember__ds_free(NULL, job[k].buf);
            free(job[k].used);
        }
        if (st == EMBER_OK && fsync(fd) != 0) st = ember__error(EMBER_ERR_IO, "writing %s: %s", tmp, strerror(errno));
        if (close(fd) != 0 && st == EMBER_OK) st = ember__error(EMBER_ERR_IO, "closing %s: %s", tmp, strerror(errno));
        if (st == EMBER_OK && rename(tmp, p->path) != 0)
            st = ember__error(EMBER_ERR_IO, "renaming %s to %s: %s", tmp, p->path, strerror(errno));
        if (st != EMBER_OK) unlink(tmp);
        return st;
    }
    /* npy triplet */
    char path[3][560];
    if (strlen(p->path) > 500) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_gen_write: prefix too long");
    snprintf(path[0], sizeof path[0], "%s_dense.npy", p->path);
    snprintf(path[1], sizeof path[1], "%s_sparse.npy", p->path);
    snprintf(path[2], sizeof path[2], "%s_labels.npy", p->path);
    ember_npy_writer *w[3] = {0};
    st = ember_npy_writer_create(&(ember_npy_writer_params){.path = path[0], .dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {0, ND}}, &w[0]);
    if (st == EMBER_OK)
        st = ember_npy_writer_create(&(ember_npy_writer_params){.path = path[1], .dtype = EMBER_DTYPE_I32, .ndim = 2, .shape = {0, NS}}, &w[1]);
    if (st == EMBER_OK)
        st = ember_npy_writer_create(&(ember_npy_writer_params){.path = path[2], .dtype = EMBER_DTYPE_I32, .ndim = 2, .shape = {0, 1}}, &w[2]);
    float *dense = NULL;
    uint32_t *sparse = NULL;
    int32_t *labels = NULL;
    if (st == EMBER_OK) st = ember__ds_alloc(NULL, (size_t)per_round * ND * sizeof(float), (void **)&dense);
    if (st == EMBER_OK) st = ember__ds_alloc(NULL, (size_t)per_round * NS * sizeof(uint32_t), (void **)&sparse);
    if (st == EMBER_OK) st = ember__ds_alloc(NULL, (size_t)per_round * sizeof(int32_t), (void **)&labels);
    for (int64_t r0 = 0; r0 < p->rows && st == EMBER_OK; r0 += per_round) {
        int64_t n = p->rows - r0 < per_round ? p->rows - r0 : per_round;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            int64_t iv[ND];
            gen_row(g, r0 + i, iv, NULL, sparse + i * NS, labels + i, NULL, NULL, NULL);
            for (int k = 0; k < ND; k++) dense[i * ND + k] = ember__dense_value(EMBER_DENSE_LOG1P, iv[k]);
        }
        st = ember_npy_writer_append(w[0], dense, n);
        if (st == EMBER_OK) st = ember_npy_writer_append(w[1], sparse, n);
        if (st == EMBER_OK) st = ember_npy_writer_append(w[2], labels, n);
        if (p->progress) p->progress((uint64_t)(r0 + n), (uint64_t)p->rows, r0 + n, p->progress_user);
    }
    for (int k = 0; k < 3 && st == EMBER_OK; k++) st = ember_npy_writer_finish(w[k]);
    for (int k = 0; k < 3; k++) ember_npy_writer_destroy(w[k]);
    ember__ds_free(NULL, dense);
    ember__ds_free(NULL, sparse);
    ember__ds_free(NULL, labels);
    return st;
}
