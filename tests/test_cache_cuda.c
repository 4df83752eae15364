/*
 * tests/test_cache_cuda.c: the embedding cache on a GPU (slots in the DEVICE tier of a
 * manager on cuda:0, copies and gather/scatter kernels on the cache's copy stream,
 * events between it and the caller's stream) against a resident collection on the same
 * GPU, bit for bit: outputs at every step, weights and optimizer state at the end.
 * The same GPU kernels run on both sides with the same per-row order of sums (the
 * remapping to slots does not change it), so no tolerance is needed.
 * Without a GPU the binary exits 77, which ctest reports as skipped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ember/cache.h"

#define NT 2
#define BATCH 16
#define MAXBAG 4

static const ember_ebc_table_config TABLES[NT] = {
    {.name = "big", .rows = 5000, .dim = 16, .format = EMBER_ROW_FORMAT_F32},
    {.name = "small", .rows = 800, .dim = 8, .format = EMBER_ROW_FORMAT_F16, .pooling = EMBER_POOLING_MEAN},
};

static ember_memory *gpu_mm;

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static double unit(uint64_t h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }

typedef struct batch {
    int64_t ids[NT][BATCH * MAXBAG], off[NT][BATCH + 1];
    ember_jagged_feature f[NT];
    ember_jagged j;
} batch;

static void make_batch(batch *b, int64_t step) {
    for (int t = 0; t < NT; t++) {
        int64_t n = 0;
        b->off[t][0] = 0;
        for (int s = 0; s < BATCH; s++) {
            uint64_t h = mix((uint64_t)step * 1009 + (uint64_t)t * 31 + (uint64_t)s);
            for (int k = 0; k < (int)(h % (MAXBAG + 1)); k++) {
                double u = unit(mix(h + (uint64_t)k));
                b->ids[t][n++] = (int64_t)((double)TABLES[t].rows * u * u * u);
            }
            b->off[t][s + 1] = n;
        }
        b->f[t] = (ember_jagged_feature){.values = b->ids[t], .offsets = b->off[t], .length = n};
    }
    b->j = (ember_jagged){.batch = BATCH, .num_features = NT, .features = b->f};
}

static ember_tensor *tensor(ember_tier tier, ember_dtype dt, int64_t d0, int64_t d1, int ndim) {
    ember_tensor *t = NULL;
    ember_status st = ember_tensor_create(
        &(ember_tensor_params){.dtype = dt, .ndim = ndim, .shape = {d0, d1}, .tier = tier,
                               .mm = tier == EMBER_TIER_DEVICE ? gpu_mm : NULL},
        &t);
    if (st != EMBER_OK) {
        fprintf(stderr, "tensor: %s\n", ember_last_error());
        exit(1);
    }
    return t;
}

/* The batch in GPU memory for the resident collection. */
typedef struct dev_batch {
    ember_tensor *val[NT], *off[NT];
    ember_jagged_feature f[NT];
    ember_jagged j;
} dev_batch;

static void upload(const batch *b, dev_batch *d) {
    for (int t = 0; t < NT; t++) {
        int64_t n = b->f[t].length;
        ember_tensor *hv = tensor(EMBER_TIER_HOST, EMBER_DTYPE_I64, n > 0 ? n : 1, 0, 1);
        ember_tensor *ho = tensor(EMBER_TIER_HOST, EMBER_DTYPE_I64, BATCH + 1, 0, 1);
        memcpy(ember_tensor_data(hv), b->ids[t], sizeof(int64_t) * (size_t)n);
        memcpy(ember_tensor_data(ho), b->off[t], sizeof b->off[t]);
        CHECK_OK(ember_tensor_clone(hv, EMBER_TIER_DEVICE, gpu_mm, &d->val[t]));
        CHECK_OK(ember_tensor_clone(ho, EMBER_TIER_DEVICE, gpu_mm, &d->off[t]));
        ember_tensor_destroy(hv);
        ember_tensor_destroy(ho);
        d->f[t] = (ember_jagged_feature){.values = ember_tensor_data(d->val[t]),
                                         .offsets = ember_tensor_data(d->off[t]),
                                         .length = n};
    }
    d->j = (ember_jagged){.batch = BATCH, .num_features = NT, .features = d->f};
}

static void dev_batch_free(dev_batch *d) {
    for (int t = 0; t < NT; t++) {
        ember_tensor_destroy(d->val[t]);
        ember_tensor_destroy(d->off[t]);
    }
}

static float *download(const ember_tensor *d) {
    ember_tensor *h = NULL;
    CHECK_OK(ember_tensor_clone(d, EMBER_TIER_HOST, NULL, &h));
    size_t n = (size_t)(ember_tensor_dim(d, 0) * ember_tensor_dim(d, 1));
    float *p = malloc(n * sizeof(float));
    if (h) memcpy(p, ember_tensor_data(h), n * sizeof(float));
    ember_tensor_destroy(h);
    return p;
}

static int same_rows(ember_cache *c, ember_ebc *e) {
    int ok = 1;
    for (int t = 0; t < NT && ok; t++) {
        ember_ebc_table_info info;
        CHECK_OK(ember_ebc_get_table_info(e, t, &info));
        size_t n = (size_t)(info.rows * info.dim), ns = (size_t)(info.rows * info.state_floats) + 1;
        float *a = malloc(n * 4), *b = malloc(n * 4), *sa = malloc(ns * 4), *sb = malloc(ns * 4);
        CHECK_OK(ember_ebc_read_rows(e, t, 0, info.rows, a));
        CHECK_OK(ember_cache_read_rows(c, t, 0, info.rows, b));
        ok = memcmp(a, b, n * 4) == 0;
        if (ok && info.state_floats) {
            CHECK_OK(ember_ebc_read_state(e, t, 0, info.rows, sa));
            CHECK_OK(ember_cache_read_state(c, t, 0, info.rows, sb));
            ok = memcmp(sa, sb, (ns - 1) * 4) == 0;
        }
        free(a);
        free(b);
        free(sa);
        free(sb);
    }
    return ok;
}

static int run(ember_sparse_optim o, double ratio, ember_cache_policy p, int look, int lmdb) {
    char what[128], path[256];
    snprintf(what, sizeof what, "%s ratio %.2f %s look %d %s", ember_sparse_optim_name(o), ratio,
             ember_cache_policy_name(p), look, lmdb ? "lmdb" : "host");
    snprintf(path, sizeof path, "/tmp/ember-cache-cuda-%d", (int)getpid());
    ember_sparse_optim_config oc = {.type = o};
    ember_ebc *res = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = NT, .tables = TABLES, .optim = oc, .mm = gpu_mm,
                                                  .tier = EMBER_TIER_DEVICE},
                              &res));
    ember_cache *c = NULL;
    CHECK_OK(ember_cache_create(&(ember_cache_config){.collection = {.num_tables = NT, .tables = TABLES, .optim = oc},
                                                      .mm = gpu_mm,
                                                      .ratio = ratio,
                                                      .min_slots = 3 * BATCH * MAXBAG,
                                                      .policy = p,
                                                      .lookahead = look,
                                                      .store = lmdb ? EMBER_CACHE_STORE_LMDB : EMBER_CACHE_STORE_HOST,
                                                      .path = lmdb ? path : NULL,
                                                      .open = EMBER_CACHE_OPEN_CREATE},
                                &c));
    if (!res || !c) {
        ember_ebc_destroy(res);
        ember_cache_destroy(c);
        return 0;
    }
    ember_rng r1 = {.seed = 3}, r2 = {.seed = 3};
    CHECK_OK(ember_ebc_init_uniform(res, &r1, -0.1f, 0.1f));
    CHECK_OK(ember_cache_init_uniform(c, &r2, -0.1f, 0.1f));
    const int64_t D = 24, steps = 120;
    ember_tensor *out1 = tensor(EMBER_TIER_DEVICE, EMBER_DTYPE_F32, BATCH, D, 2);
    ember_tensor *out2 = tensor(EMBER_TIER_DEVICE, EMBER_DTYPE_F32, BATCH, D, 2);
    ember_tensor *gh = tensor(EMBER_TIER_HOST, EMBER_DTYPE_F32, BATCH, D, 2);
    batch *ring = calloc(4, sizeof *ring);
    int ok = 1;
    int64_t sub = 0;
    for (int64_t k = 0; k < steps && ok; k++) {
        while (sub < steps && sub <= k + look) {
            make_batch(&ring[sub % 4], sub);
            CHECK_OK(ember_cache_submit(c, &ring[sub % 4].j));
            sub++;
        }
        dev_batch d;
        upload(&ring[k % 4], &d);
        CHECK_OK(ember_ebc_forward(res, &d.j, out1, NULL));
        ember_cache_batch *b = NULL;
        ember_status st = ember_cache_next(c, &b);
        CHECK_OK(st);
        if (st != EMBER_OK) {
            ok = 0;
            dev_batch_free(&d);
            break;
        }
        CHECK_OK(ember_cache_forward(c, b, out2));
        float *o1 = download(out1), *o2 = download(out2);
        if (memcmp(o1, o2, sizeof(float) * BATCH * (size_t)D) != 0) {
            fprintf(stderr, "FAIL %s: step %lld: outputs differ\n", what, (long long)k);
            ok = 0;
        }
        float *g = ember_tensor_data(gh);
        for (int64_t i = 0; i < BATCH * D; i++) g[i] = 0.25f * o1[i] + (float)(unit(mix((uint64_t)(k * 977 + i))) - 0.5) * 0.1f;
        ember_tensor *gd = NULL;
        CHECK_OK(ember_tensor_clone(gh, EMBER_TIER_DEVICE, gpu_mm, &gd));
        ember_ebc_call call = {.lr = 0.05f, .step = k + 1};
        CHECK_OK(ember_ebc_backward(res, &d.j, gd, &call));
        CHECK_OK(ember_cache_backward(c, b, gd, &call));
        CHECK_OK(ember_cache_release(c, b, 1));
        ember_tensor_destroy(gd);
        free(o1);
        free(o2);
        dev_batch_free(&d);
    }
    if (ok && !same_rows(c, res)) {
        fprintf(stderr, "FAIL %s: rows or state differ at the end\n", what);
        ok = 0;
    }
    if (ok && lmdb) CHECK_OK(ember_cache_checkpoint(c, steps));
    CHECK(ok);
    free(ring);
    ember_tensor_destroy(out1);
    ember_tensor_destroy(out2);
    ember_tensor_destroy(gh);
    ember_cache_destroy(c);
    ember_ebc_destroy(res);
    if (lmdb) {
        char f[300];
        snprintf(f, sizeof f, "%s/data.mdb", path);
        remove(f);
        snprintf(f, sizeof f, "%s/lock.mdb", path);
        remove(f);
        remove(path);
    }
    return ok;
}

int main(void) {
    if (ember_cuda_device_count() == 0) CHECK_SKIP("no CUDA device");
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &gpu_mm));
    if (!gpu_mm) return check_summary();
    static const ember_sparse_optim optims[] = {EMBER_SPARSE_OPTIM_SGD, EMBER_SPARSE_OPTIM_ADAGRAD,
                                                EMBER_SPARSE_OPTIM_ADAM};
    int runs = 0, good = 0;
    for (int o = 0; o < 3; o++)
        for (int r = 0; r < 2; r++)
            for (int p = 0; p < 2; p++)
                for (int look = 0; look <= 2; look++) {
                    runs++;
                    good += run(optims[o], r ? 0.5 : 0.02, p ? EMBER_CACHE_POLICY_LRU : EMBER_CACHE_POLICY_LFU,
                                look, 0);
                }
#ifdef EMBER_HAVE_LMDB
    for (int look = 0; look <= 1; look++) {
        runs++;
        good += run(EMBER_SPARSE_OPTIM_ADAGRAD, 0.02, EMBER_CACHE_POLICY_LFU, look, 1);
    }
#endif
    printf("cache on the GPU: %d of %d runs bit-identical to the resident GPU collection\n", good, runs);
    ember_memory_destroy(gpu_mm);
    return check_summary();
}
