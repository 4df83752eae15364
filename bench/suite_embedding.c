/*
 * embedding suites: table-batched embedding bags, forward and forward + backward +
 * fused update, on one table of 4M rows (dim 64, and 128 in the full set), batch 4096,
 * pooling factors 1 and 64, uniform and Zipf ids.
 *
 *   embedding         peer bench/peers/embedding.py: nn.EmbeddingBag(sparse=True) with
 *                     torch.optim.SGD / Adagrad.
 *   embedding-fbgemm  peer bench/peers/embedding-fbgemm.py: FBGEMM's CPU table-batched
 *                     embedding with its fused optimizer (EXACT_SGD, EXACT_ADAGRAD,
 *                     EXACT_ROWWISE_ADAGRAD); adds the rowwise Adagrad cases.
 *
 * Cases are "<mode>_d<dim>_L<pooling>_<ids>", mode fwd (forward only), sgd, adagrad,
 * rowwise_adagrad (forward + backward + update). Metrics per case: "rows", looked-up
 * ids per second, and "bandwidth", the bytes the operation must move at the least
 * divided by the time, to read against bench/limits' random-gather rate: forward
 * reads each looked-up row's weights (dim * 4 bytes); training adds reading and
 * writing back each unique row with its optimizer state ((dim + state) * 4 bytes,
 * twice). The peers compute both the same way.
 *
 * Zipf ids: rank r in [0, N) from the continuous inverse CDF of x^-1.15 on [1, N + 1)
 * (about 1% of rows take 90% of the lookups at N = 4M), scattered over the table as
 * id = r * 2654435761 mod N so hot rows are not neighbours. The peers draw the same
 * distribution with the same formula.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "embedding/ebc_internal.h"
#include "engine/internal.h"

#define ZIPF_S 1.15
#define SCATTER 2654435761ull

typedef struct {
    ember_ebc *ebc;
    ember_jagged *batch;
    ember_tensor *out, *grad;
    float lr;
    int gpu; /* wait for the device after each call, so the host clock times the work */
} emb_arg;

static ember_status fwd_op(void *p) {
    emb_arg *a = p;
    EMBER_TRY(ember_ebc_forward(a->ebc, a->batch, a->out, NULL));
    return a->gpu ? ember_device_synchronize(ember_ebc_device(a->ebc)) : EMBER_OK;
}

/* As a training step runs it: the forward validates the batch, the backward trusts it. */
static ember_status train_op(void *p) {
    emb_arg *a = p;
    EMBER_TRY(ember_ebc_forward(a->ebc, a->batch, a->out, NULL));
    EMBER_TRY(ember_ebc_backward(a->ebc, a->batch, a->grad, &(ember_ebc_call){.lr = a->lr, .trusted = 1}));
    return a->gpu ? ember_device_synchronize(ember_ebc_device(a->ebc)) : EMBER_OK;
}

/* Where a table lives: the CPU, or a GPU with one of its kernels. */
typedef struct {
    ember_memory *mm; /* NULL: the CPU */
    ember_ebc_cuda_kernel kernel;
    const char *prefix; /* "" or "cuda_warp_" / "cuda_cusparse_" */
} place;

/* A copy of host bytes in the DEVICE tier of mm (GPU places), through the tensor copy. */
static ember_status device_copy(ember_memory *mm, const void *src, size_t bytes, void **out) {
    EMBER_TRY(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, bytes, out));
    int64_t n = (int64_t)bytes;
    ember_tensor *h = NULL, *d = NULL;
    ember_status st = ember_tensor_wrap((void *)src, EMBER_DTYPE_U8, 1, &n, NULL, EMBER_CPU, &h);
    if (st == EMBER_OK) st = ember_tensor_wrap(*out, EMBER_DTYPE_U8, 1, &n, NULL, ember_memory_device(mm), &d);
    if (st == EMBER_OK) st = ember_tensor_copy(d, h);
    if (st == EMBER_OK) st = ember_device_synchronize(ember_memory_device(mm));
    ember_tensor_destroy(h);
    ember_tensor_destroy(d);
    if (st != EMBER_OK) {
        ember_memory_free(mm, *out);
        *out = NULL;
    }
    return st;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_ids(int64_t *ids, int64_t n, int64_t rows, int zipf, uint64_t seed) {
    uint64_t s = seed;
    const double a = 1.0 - ZIPF_S, top = pow((double)rows + 1.0, a) - 1.0;
    for (int64_t k = 0; k < n; k++) {
        double u = (double)(splitmix(&s) >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
        if (!zipf) {
            ids[k] = (int64_t)(u * (double)rows);
        } else {
            int64_t r = (int64_t)floor(pow(top * u + 1.0, 1.0 / a)) - 1;
            if (r < 0) r = 0;
            if (r >= rows) r = rows - 1;
            ids[k] = (int64_t)(((uint64_t)r * SCATTER) % (uint64_t)rows);
        }
        if (ids[k] >= rows) ids[k] = rows - 1;
    }
}

static int64_t count_unique(const int64_t *ids, int64_t n, int64_t rows, ember_status *st) {
    uint8_t *seen = NULL;
    *st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)(rows + 7) / 8, (void **)&seen);
    if (*st != EMBER_OK) return 0;
    memset(seen, 0, (size_t)(rows + 7) / 8);
    int64_t u = 0;
    for (int64_t k = 0; k < n; k++) {
        uint8_t bit = (uint8_t)(1u << (ids[k] & 7));
        if (!(seen[ids[k] >> 3] & bit)) {
            seen[ids[k] >> 3] |= bit;
            u++;
        }
    }
    ember_memory_free(NULL, seen);
    return u;
}

typedef struct {
    const char *name; /* case prefix */
    int train;
    ember_sparse_optim optim;
    int state_per_dim, state_fixed; /* state floats = state_per_dim * dim + state_fixed */
} mode;

static const mode MODES[] = {
    {"fwd", 0, EMBER_SPARSE_OPTIM_SGD, 0, 0},
    {"sgd", 1, EMBER_SPARSE_OPTIM_SGD, 0, 0},
    {"adagrad", 1, EMBER_SPARSE_OPTIM_ADAGRAD, 1, 0},
    {"rowwise_adagrad", 1, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD, 0, 1},
};

/* All cases of one (dim, optimizer) table: the table is made once and reused. */
static ember_status run_table(const ember_bench_opts *o, const char *suite, const place *pl, int64_t rows,
                              int dim, int64_t batch, const int *pools, int npools, const mode *const *modes,
                              int nmodes) {
    emb_arg a = {.lr = 0.01f, .gpu = pl->mm != NULL};
    ember_tier tier = pl->mm ? EMBER_TIER_DEVICE : EMBER_TIER_HOST;
    ember_status st = ember_ebc_create(
        &(ember_ebc_config){.num_tables = 1,
                            .tables = &(ember_ebc_table_config){.name = "t", .rows = rows, .dim = dim},
                            .optim = {.type = modes[0]->optim},
                            .mm = pl->mm,
                            .tier = tier,
                            .cuda_kernel = pl->kernel},
        &a.ebc);
    ember_rng rng = {.seed = 5};
    double scale = 1.0 / sqrt((double)rows); /* TorchRec's default init range */
    if (st == EMBER_OK) st = ember_ebc_init_uniform(a.ebc, &rng, (float)-scale, (float)scale);
    if (st == EMBER_OK)
        st = ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {batch, dim},
                                                        .tier = tier, .mm = pl->mm},
                                 &a.out);
    if (st == EMBER_OK)
        st = ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {batch, dim},
                                                        .tier = tier, .mm = pl->mm},
                                 &a.grad);
    if (st == EMBER_OK) st = ember_rng_uniform(&rng, a.grad, -1.0f, 1.0f);
    int64_t *offsets = NULL, *ids = NULL;
    int64_t nmax = batch * 64;
    if (st == EMBER_OK)
        st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)(batch + 1) * 8, (void **)&offsets);
    if (st == EMBER_OK)
        st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)nmax * 8, (void **)&ids);
    for (int pi = 0; pi < npools && st == EMBER_OK; pi++) {
        int pool = pools[pi];
        int64_t n = batch * pool;
        for (int64_t b = 0; b <= batch; b++) offsets[b] = b * pool;
        for (int zipf = 0; zipf < 2 && st == EMBER_OK; zipf++) {
            make_ids(ids, n, rows, zipf, 1000 + (uint64_t)(pool * 2 + zipf));
            int64_t unique = count_unique(ids, n, rows, &st);
            void *d_ids = NULL, *d_off = NULL;
            if (st == EMBER_OK && pl->mm) st = device_copy(pl->mm, ids, (size_t)n * 8, &d_ids);
            if (st == EMBER_OK && pl->mm) st = device_copy(pl->mm, offsets, (size_t)(batch + 1) * 8, &d_off);
            ember_jagged_feature f = {.values = pl->mm ? d_ids : ids, .offsets = pl->mm ? d_off : offsets,
                                      .length = n};
            ember_jagged j = {.batch = batch, .num_features = 1, .features = &f};
            a.batch = &j;
            for (int mi = 0; mi < nmodes && st == EMBER_OK; mi++) {
                const mode *m = modes[mi];
                double sec = 0;
                st = ember_bench_time(o, m->train ? train_op : fwd_op, &a, &sec);
                if (st != EMBER_OK) break;
                double wbytes = 4.0 * dim, state = 4.0 * (m->state_per_dim * dim + m->state_fixed);
                double bytes = (double)n * wbytes + (m->train ? 2.0 * (double)unique * (wbytes + state) : 0.0);
                char name[96], params[320];
                snprintf(name, sizeof name, "%s%s_d%d_L%d_%s", pl->prefix, m->name, dim, pool,
                         zipf ? "zipf" : "uniform");
                snprintf(params, sizeof params,
                         "\"rows\":%lld,\"dim\":%d,\"batch\":%lld,\"pooling\":%d,\"ids\":\"%s\",\"unique\":%lld,"
                         "\"mode\":\"%s\",\"optimizer\":\"%s\",\"kernels\":\"%s\",\"threads\":%d",
                         (long long)rows, dim, (long long)batch, pool, zipf ? "zipf" : "uniform", (long long)unique,
                         m->train ? "fwd+bwd+update" : "fwd", m->train ? ember_sparse_optim_name(m->optim) : "none",
                         pl->mm ? pl->prefix : ember__ebc_cpu_isa(), ember_get_num_threads());
                /* bench/compare's last line: training rows/s (the headline figure) */
                char rows_params[352];
                snprintf(rows_params, sizeof rows_params, "%s%s", params, m->train ? ",\"headline\":1" : "");
                ember_bench_emit(o, suite, name, "rows", (double)n / sec, "rows/s", rows_params);
                ember_bench_emit(o, suite, name, "bandwidth", bytes / sec / 1e9, "GB/s", params);
            }
            if (pl->mm) {
                ember_memory_free(pl->mm, d_ids);
                ember_memory_free(pl->mm, d_off);
            }
        }
    }
    ember_memory_free(NULL, ids);
    ember_memory_free(NULL, offsets);
    ember_tensor_destroy(a.out);
    ember_tensor_destroy(a.grad);
    ember_ebc_destroy(a.ebc);
    return st;
}

static ember_status run_place(const ember_bench_opts *o, const char *suite, const place *pl, int with_rowwise) {
    const int64_t rows = o->tiny ? 20000 : 4000000, batch = o->tiny ? 256 : 4096;
    static const int pools[] = {1, 64};
    static const int dims_full[] = {64, 128};
    int ndims = o->quick ? 1 : 2;
    for (int di = 0; di < ndims; di++) {
        int dim = o->tiny ? 16 : dims_full[di];
        /* forward and SGD share the SGD table (records are the weights alone) */
        const mode *sgd_modes[] = {&MODES[0], &MODES[1]};
        EMBER_TRY(run_table(o, suite, pl, rows, dim, batch, pools, 2, sgd_modes, 2));
        const mode *ada[] = {&MODES[2]};
        EMBER_TRY(run_table(o, suite, pl, rows, dim, batch, pools, 2, ada, 1));
        if (with_rowwise) {
            const mode *rw[] = {&MODES[3]};
            EMBER_TRY(run_table(o, suite, pl, rows, dim, batch, pools, 2, rw, 1));
        }
    }
    return EMBER_OK;
}

/* The CPU cases; then, when a GPU is present, the same cases on cuda:0 with each GPU
 * formulation (cases prefixed cuda_warp_ / cuda_cusparse_; no peer runs them), to pick
 * the faster per shape. */
static ember_status run_suite(const ember_bench_opts *o, const char *suite, int with_rowwise) {
    EMBER_TRY(run_place(o, suite, &(place){.prefix = ""}, with_rowwise));
    if (ember_cuda_device_count() == 0) return EMBER_OK;
    ember_memory *mm = NULL;
    EMBER_TRY(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &mm));
    ember_features f;
    ember_get_features(&f);
    ember_status st = run_place(o, suite, &(place){.mm = mm, .kernel = EMBER_EBC_CUDA_WARP, .prefix = "cuda_warp_"},
                                with_rowwise);
    if (st == EMBER_OK && f.cusparse)
        st = run_place(o, suite, &(place){.mm = mm, .kernel = EMBER_EBC_CUDA_CUSPARSE, .prefix = "cuda_cusparse_"},
                       with_rowwise);
    ember_memory_destroy(mm);
    return st;
}

ember_status ember_bench_suite_embedding(const ember_bench_opts *o) { return run_suite(o, "embedding", 0); }

ember_status ember_bench_suite_embedding_fbgemm(const ember_bench_opts *o) {
    return run_suite(o, "embedding-fbgemm", 1);
}
