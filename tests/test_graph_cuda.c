/*
 * Graph ops on CUDA against the CPU, op by op, through the public API.
 *
 * Every case builds the same small graph twice, on the CPU (default parameters) and on
 * cuda:0 (a manager on EMBER_CUDA(0), tier DEVICE), as loss = sum(op(leaves) * R) with a
 * random probe R, so every output element reaches the gradients with its own weight. The
 * same leaf values go into both (ember_node_value + ember_tensor_copy); each side runs
 * forward + backward twice (the second step draws new dropout masks) and the op's output,
 * the loss and every leaf gradient are compared. Tolerances, |cpu - cuda| <= atol +
 * rtol |cpu|, by what the kernels share (engine/cuda/graph_cuda.cu says why):
 *   EXACT (0):          data movement, gather/scatter rows, dropout, relu, add, mul,
 *                       scale, interaction, dot_interaction, sum_to: the same f32 operations in the same
 *                       order, so the same bits.
 *   ULP (1e-6 + 1e-5):  transcendentals (CUDA's erff/expf/tanhf within 2 ulp of glibc's)
 *                       and double sums in another order, rounded once to f32.
 *   GEMM (1e-5 + 1e-4): cuBLAS and the CPU BLAS sum products in different orders.
 *   TRAIN (1e-5 + 1e-3): several SGD steps of a model, where GEMM differences compound.
 * The loss, a double sum, is compared with ULP at least. Then: out-of-range indices and
 * labels fail with the CPU's message (and the graph runs again once they are fixed), a
 * small MLP and a small attention language model train alike, and every registered op
 * must have run on the GPU. Without a GPU the binary exits 77 (skipped).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#define S(...) ((int64_t[]){__VA_ARGS__})
/* Propagate a failing status (builders). */
#define TRY(expr)                                  \
    do {                                           \
        ember_status try__st = (expr);             \
        if (try__st != EMBER_OK) return try__st;   \
    } while (0)
#define MAX_LEAF 16
#define MAX_OPS 128

typedef struct tol {
    double atol, rtol;
} tol;

/* Initialisers (for the static case table, where clang wants constant expressions)
   and values of the tolerances. */
#define EXACT_INIT {0, 0}
#define ULP_INIT {1e-6, 1e-5}
#define GEMM_INIT {1e-5, 1e-4}
static const tol EXACT = EXACT_INIT;
static const tol ULP = ULP_INIT;

static const tol TRAIN = {1e-5, 1e-3};

static ember_memory *gpu_mm; /* DEVICE tier on cuda:0 */
static int64_t gpu_runs[MAX_OPS]; /* by position in ember_graph_op_names() */

/* ---- one side of a comparison: a graph and its leaves, in creation order ---- */

typedef struct side {
    ember_graph *g;
    int nleaf;
    ember_node *leaf[MAX_LEAF];
    double lo[MAX_LEAF], hi[MAX_LEAF]; /* f32: uniform in [lo, hi); indices: [0, hi) */
} side;

static ember_node *record(side *s, ember_node *n, double lo, double hi) {
    if (!n) return NULL;
    if (s->nleaf == MAX_LEAF) {
        CHECK(!"too many leaves in one case");
        return n;
    }
    s->leaf[s->nleaf] = n;
    s->lo[s->nleaf] = lo;
    s->hi[s->nleaf] = hi;
    s->nleaf++;
    return n;
}

static ember_node *param(side *s, const char *name, int ndim, const int64_t *shape) {
    ember_node *n = NULL;
    CHECK_OK(ember_graph_param(s->g, name, EMBER_DTYPE_F32, ndim, shape, &n));
    return record(s, n, -1.0, 1.0);
}

static ember_node *param_range(side *s, const char *name, int ndim, const int64_t *shape, double lo, double hi) {
    ember_node *n = param(s, name, ndim, shape);
    if (n) {
        s->lo[s->nleaf - 1] = lo;
        s->hi[s->nleaf - 1] = hi;
    }
    return n;
}

/* An f32 input; grad: ask for its gradient too. */
static ember_node *input(side *s, const char *name, int ndim, const int64_t *shape, double lo, double hi, int grad) {
    ember_node *n = NULL;
    CHECK_OK(ember_graph_input(s->g, name, EMBER_DTYPE_F32, ndim, shape, &n));
    if (n && grad) CHECK_OK(ember_node_set_requires_grad(n));
    return record(s, n, lo, hi);
}

static ember_node *indices(side *s, const char *name, ember_dtype dt, int ndim, const int64_t *shape, int64_t hi) {
    ember_node *n = NULL;
    CHECK_OK(ember_graph_input(s->g, name, dt, ndim, shape, &n));
    return record(s, n, 0, (double)hi);
}

/* Deterministic test data (xorshift64*), independent of the library's RNG. */
static uint64_t rng_state;
static double rand_unit(void) { /* [0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* Fill leaf i of the CPU side, then copy it to the GPU side. */
static void fill_leaf(side *c, side *d, int i) {
    ember_tensor *tc = NULL, *td = NULL;
    CHECK_OK(ember_node_value(c->leaf[i], &tc));
    CHECK_OK(ember_node_value(d->leaf[i], &td));
    if (!tc || !td) return;
    int64_t n = ember_tensor_numel(tc);
    void *p = ember_tensor_data(tc);
    switch (ember_tensor_dtype(tc)) {
    case EMBER_DTYPE_F32:
        for (int64_t j = 0; j < n; j++)
            ((float *)p)[j] = (float)(c->lo[i] + (c->hi[i] - c->lo[i]) * rand_unit());
        break;
    case EMBER_DTYPE_I32:
        for (int64_t j = 0; j < n; j++) ((int32_t *)p)[j] = (int32_t)(rand_unit() * c->hi[i]);
        break;
    case EMBER_DTYPE_I64:
        for (int64_t j = 0; j < n; j++) ((int64_t *)p)[j] = (int64_t)(rand_unit() * c->hi[i]);
        break;
    default: CHECK(!"leaf dtype"); return;
    }
    CHECK_OK(ember_tensor_copy(td, tc));
}

/* Overwrite element j of index leaf i on both sides. */
static void set_index(side *c, side *d, int i, int64_t j, int64_t v) {
    ember_tensor *tc = NULL, *td = NULL;
    CHECK_OK(ember_node_value(c->leaf[i], &tc));
    CHECK_OK(ember_node_value(d->leaf[i], &td));
    if (!tc || !td) return;
    if (ember_tensor_dtype(tc) == EMBER_DTYPE_I32) ((int32_t *)ember_tensor_data(tc))[j] = (int32_t)v;
    else ((int64_t *)ember_tensor_data(tc))[j] = v;
    CHECK_OK(ember_tensor_copy(td, tc));
}

static ember_status make_side(side *s, int gpu, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (gpu)
        return ember_graph_create(&(ember_graph_params){.mm = gpu_mm, .tier = EMBER_TIER_DEVICE, .seed = seed}, &s->g);
    return ember_graph_create(&(ember_graph_params){.seed = seed}, &s->g);
}

static void count_runs(const side *d) {
    const char *const *names = ember_graph_op_names();
    for (int op = 0; names[op] && op < MAX_OPS; op++) gpu_runs[op] += ember_graph_op_runs(d->g, names[op]);
}

/* ---- comparing ---- */

static tol at_least(tol t, tol floor) {
    return (tol){t.atol > floor.atol ? t.atol : floor.atol, t.rtol > floor.rtol ? t.rtol : floor.rtol};
}

/* One check: every element of the GPU tensor against the CPU one; prints the first
 * element outside the tolerance with both values and its index. */
static void compare(const char *cname, const char *what, const ember_tensor *ct, const ember_tensor *gt, tol t) {
    ember_tensor *h = NULL;
    CHECK_OK(ember_tensor_clone(gt, EMBER_TIER_HOST, ember_memory_default(), &h));
    if (!h) return;
    int64_t n = ember_tensor_numel(ct), bad = -1;
    if (n != ember_tensor_numel(h)) {
        check__failed++;
        fprintf(stderr, "FAIL %s: %s: %lld CPU elements vs %lld CUDA elements\n", cname, what, (long long)n,
                (long long)ember_tensor_numel(h));
        ember_tensor_destroy(h);
        return;
    }
    const float *a = ember_tensor_data(ct), *b = ember_tensor_data(h);
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double x = a[i], y = b[i];
        if (x == y || (isnan(x) && isnan(y))) continue;
        if (!(fabs(x - y) <= t.atol + t.rtol * fabs(x))) bad = i;
    }
    if (bad < 0) {
        check__passed++;
    } else {
        check__failed++;
        fprintf(stderr, "FAIL %s: %s at index %lld: cpu %.9g vs cuda %.9g (atol %.3g, rtol %.3g)\n", cname, what,
                (long long)bad, (double)a[bad], (double)b[bad], t.atol, t.rtol);
    }
    ember_tensor_destroy(h);
}

static void compare_nodes(const char *cname, const char *what, const ember_node *c, const ember_node *d, tol t) {
    ember_tensor *tc = NULL, *td = NULL;
    CHECK_OK(ember_node_value(c, &tc));
    CHECK_OK(ember_node_value(d, &td));
    if (tc && td) compare(cname, what, tc, td, t);
}

/* Gradients of every leaf that has one. */
static void compare_grads(const char *cname, const side *c, const side *d, tol t) {
    for (int i = 0; i < c->nleaf; i++) {
        const ember_node *gc = ember_node_grad(c->leaf[i]), *gd = ember_node_grad(d->leaf[i]);
        CHECK((gc == NULL) == (gd == NULL));
        if (!gc || !gd) continue;
        ember_node_info info;
        CHECK_OK(ember_node_get_info(c->leaf[i], &info));
        char what[96];
        snprintf(what, sizeof what, "gradient of %s", info.name);
        compare_nodes(cname, what, gc, gd, t);
    }
}

/* ---- the op cases ---- */

typedef ember_status (*builder)(side *s, ember_node **out);

typedef struct op_case {
    const char *name;
    builder build;
    tol t;
} op_case;

static ember_status b_matmul_nn(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 2, S(3, 4)), param(s, "b", 2, S(4, 5)), 0, 0, o);
}
static ember_status b_matmul_tn(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 2, S(4, 3)), param(s, "b", 2, S(4, 5)), 1, 0, o);
}
static ember_status b_matmul_nt(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 2, S(3, 4)), param(s, "b", 2, S(5, 4)), 0, 1, o);
}
static ember_status b_matmul_tt(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 2, S(4, 3)), param(s, "b", 2, S(5, 4)), 1, 1, o);
}
static ember_status b_matmul_batched_shared(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 3, S(2, 3, 4)), param(s, "w", 2, S(4, 5)), 0, 0, o);
}
static ember_status b_matmul_batched_shared_t(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 3, S(2, 3, 4)), param(s, "w", 2, S(5, 4)), 0, 1, o);
}
static ember_status b_matmul_shared_batched(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 2, S(3, 4)), param(s, "b", 3, S(2, 4, 5)), 0, 0, o);
}
static ember_status b_matmul_batched(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 3, S(2, 4, 3)), param(s, "b", 3, S(2, 5, 4)), 1, 1, o);
}
static ember_status b_matmul_large(side *s, ember_node **o) {
    return ember_op_matmul(s->g, param(s, "a", 2, S(70, 130)), param(s, "b", 2, S(130, 90)), 0, 0, o);
}
static ember_status b_add(side *s, ember_node **o) {
    return ember_op_add(s->g, param(s, "a", 2, S(3, 4)), param(s, "b", 2, S(3, 4)), o);
}
static ember_status b_add_bias(side *s, ember_node **o) {
    return ember_op_add(s->g, param(s, "a", 3, S(2, 3, 4)), param(s, "bias", 1, S(4)), o);
}
/* 700 rows: sum_to in 11 blocks of rows */
static ember_status b_add_bias_long(side *s, ember_node **o) {
    return ember_op_add(s->g, param(s, "a", 2, S(700, 9)), param(s, "bias", 1, S(9)), o);
}
static ember_status b_add_scalar(side *s, ember_node **o) {
    return ember_op_add(s->g, param(s, "a", 2, S(3, 4)), param(s, "s", 0, NULL), o);
}
static ember_status b_add_scalar_long(side *s, ember_node **o) {
    return ember_op_add(s->g, param(s, "a", 2, S(100, 50)), param(s, "s", 1, S(1)), o);
}
static ember_status b_mul(side *s, ember_node **o) {
    return ember_op_mul(s->g, param(s, "a", 2, S(3, 4)), param(s, "b", 1, S(4)), o);
}
static ember_status b_scale(side *s, ember_node **o) { return ember_op_scale(s->g, param(s, "a", 1, S(6)), -2.5f, o); }
static ember_status b_relu(side *s, ember_node **o) { return ember_op_relu(s->g, param(s, "a", 2, S(3, 5)), o); }
/* relu over a dying value: in place, its gradient from the output */
static ember_status b_relu_inplace(side *s, ember_node **o) {
    ember_node *h;
    TRY(ember_op_scale(s->g, param(s, "a", 2, S(40, 33)), 3.0f, &h));
    return ember_op_relu(s->g, h, o);
}
static ember_status b_sigmoid(side *s, ember_node **o) {
    ember_node *h;
    TRY(ember_op_scale(s->g, param(s, "a", 2, S(3, 5)), 2.0f, &h)); /* in place over h */
    return ember_op_sigmoid(s->g, h, o);
}
static ember_status b_tanh(side *s, ember_node **o) { return ember_op_tanh(s->g, param(s, "a", 2, S(3, 5)), o); }
static ember_status b_gelu(side *s, ember_node **o) {
    return ember_op_gelu(s->g, param_range(s, "a", 2, S(30, 50), -4.0, 4.0), o);
}
static ember_status b_layernorm(side *s, ember_node **o) {
    return ember_op_layernorm(s->g, param(s, "x", 2, S(3, 6)), param(s, "gamma", 1, S(6)), param(s, "beta", 1, S(6)),
                              1e-5f, o);
}
/* rows of 1000: 256 threads, each over several elements */
static ember_status b_layernorm_wide(side *s, ember_node **o) {
    return ember_op_layernorm(s->g, param_range(s, "x", 3, S(2, 3, 1000), -3.0, 5.0), param(s, "gamma", 1, S(1000)),
                              param(s, "beta", 1, S(1000)), 1e-5f, o);
}
/* more rows than blocks in a grid (65536), and gamma's gradient over many row blocks */
static ember_status b_layernorm_many_rows(side *s, ember_node **o) {
    return ember_op_layernorm(s->g, param(s, "x", 2, S(70000, 4)), param(s, "gamma", 1, S(4)),
                              param(s, "beta", 1, S(4)), 1e-3f, o);
}
static ember_status b_softmax(side *s, ember_node **o) { return ember_op_softmax(s->g, param(s, "x", 2, S(3, 5)), o); }
static ember_status b_softmax_inplace(side *s, ember_node **o) {
    ember_node *h;
    TRY(ember_op_scale(s->g, param(s, "x", 3, S(2, 3, 7)), 4.0f, &h));
    return ember_op_softmax(s->g, h, o);
}
static ember_status b_softmax_wide(side *s, ember_node **o) {
    return ember_op_softmax(s->g, param_range(s, "x", 2, S(4, 3000), -8.0, 8.0), o);
}
static ember_status b_softmax_many_rows(side *s, ember_node **o) {
    return ember_op_softmax(s->g, param(s, "x", 2, S(70000, 5)), o);
}
static ember_status b_log_softmax(side *s, ember_node **o) {
    return ember_op_log_softmax(s->g, param(s, "x", 2, S(3, 5)), o);
}
static ember_status b_log_softmax_wide(side *s, ember_node **o) {
    ember_node *h;
    TRY(ember_op_scale(s->g, param(s, "x", 2, S(5, 2049)), 6.0f, &h));
    return ember_op_log_softmax(s->g, h, o);
}
static ember_status b_masked_softmax(side *s, ember_node **o) {
    ember_node *m;
    TRY(ember_op_causal_mask(s->g, param(s, "x", 3, S(2, 5, 6)), &m)); /* not square */
    return ember_op_softmax(s->g, m, o);
}
static ember_status b_attention(side *s, ember_node **o) {
    return ember_op_causal_attention(s->g, param(s, "q", 3, S(2, 4, 3)), param(s, "k", 3, S(2, 4, 3)),
                                     param(s, "v", 3, S(2, 4, 3)), o);
}
static ember_status b_attention_long(side *s, ember_node **o) {
    return ember_op_causal_attention(s->g, param(s, "q", 3, S(3, 40, 8)), param(s, "k", 3, S(3, 40, 8)),
                                     param(s, "v", 3, S(3, 40, 8)), o);
}
static ember_status b_concat(side *s, ember_node **o) {
    ember_node *xs[3] = {param(s, "a", 2, S(2, 3)), param(s, "b", 2, S(2, 1)), param(s, "c", 2, S(2, 2))};
    return ember_op_concat(s->g, xs, 3, 1, o);
}
static ember_status b_concat4(side *s, ember_node **o) {
    ember_node *xs[4] = {param(s, "a", 3, S(1, 3, 5)), param(s, "b", 3, S(4, 3, 5)), param(s, "c", 3, S(2, 3, 5)),
                         param(s, "d", 3, S(3, 3, 5))};
    return ember_op_concat(s->g, xs, 4, 0, o);
}
static ember_status b_slice(side *s, ember_node **o) {
    return ember_op_slice(s->g, param(s, "a", 3, S(2, 5, 3)), 1, 1, 3, o);
}
static ember_status b_slice_last(side *s, ember_node **o) {
    return ember_op_slice(s->g, param(s, "a", 2, S(6, 9)), -1, 4, 5, o);
}
static ember_status b_reshape(side *s, ember_node **o) {
    ember_node *r, *h;
    TRY(ember_op_reshape(s->g, param(s, "a", 2, S(3, 4)), 3, S(2, -1, 2), &r));
    TRY(ember_op_relu(s->g, r, &h)); /* a reshape of a dying value runs in place */
    return ember_op_reshape(s->g, h, 1, S(12), o);
}
static ember_status b_permute(side *s, ember_node **o) {
    return ember_op_permute(s->g, param(s, "a", 3, S(2, 3, 4)), (int[]){2, 0, 1}, o);
}
static ember_status b_transpose(side *s, ember_node **o) {
    return ember_op_transpose(s->g, param(s, "a", 2, S(3, 4)), 0, 1, o);
}
static ember_status b_gather(side *s, ember_node **o) {
    return ember_op_gather_rows(s->g, param(s, "table", 2, S(5, 3)), indices(s, "idx", EMBER_DTYPE_I64, 1, S(7), 5), o);
}
static ember_status b_gather32(side *s, ember_node **o) {
    return ember_op_gather_rows(s->g, param(s, "table", 2, S(4, 2)), indices(s, "idx", EMBER_DTYPE_I32, 1, S(6), 4), o);
}
static ember_status b_gather_2d(side *s, ember_node **o) {
    return ember_op_gather_rows(s->g, param(s, "table", 2, S(10, 33)),
                                indices(s, "idx", EMBER_DTYPE_I32, 2, S(4, 6), 10), o);
}
/* 5000 lookups into 50 rows: long runs of repeated rows in the gradient */
static ember_status b_gather_many(side *s, ember_node **o) {
    return ember_op_gather_rows(s->g, param(s, "table", 2, S(50, 64)),
                                indices(s, "idx", EMBER_DTYPE_I64, 1, S(5000), 50), o);
}
static ember_status b_interaction(side *s, ember_node **o) {
    return ember_op_interaction(s->g, param(s, "t", 3, S(2, 4, 3)), o);
}
static ember_status b_interaction_dlrm(side *s, ember_node **o) {
    return ember_op_interaction(s->g, param(s, "t", 3, S(5, 27, 16)), o);
}
static ember_status b_dot_interaction(side *s, ember_node **o) {
    return ember_op_dot_interaction(s->g, param(s, "z", 2, S(5, 64)), param(s, "e", 2, S(5, 26 * 64)), 0, o);
}
static ember_status b_dot_interaction_self(side *s, ember_node **o) {
    return ember_op_dot_interaction(s->g, param(s, "z", 2, S(3, 5)), param(s, "e", 2, S(3, 20)), 1, o);
}
static ember_status b_interaction_self(side *s, ember_node **o) {
    return ember_op_interaction_self(s->g, param(s, "t", 3, S(2, 4, 3)), o);
}
static ember_status b_interaction_self_dlrm(side *s, ember_node **o) {
    return ember_op_interaction_self(s->g, param(s, "t", 3, S(5, 27, 16)), o);
}
static ember_status b_cross(side *s, ember_node **o) {
    ember_node *x0 = param(s, "x0", 2, S(3, 4));
    return ember_op_cross(s->g, x0, x0, param(s, "w", 2, S(4, 4)), param(s, "b", 1, S(4)), o);
}
static ember_status b_dropout(side *s, ember_node **o) {
    return ember_op_dropout(s->g, param(s, "a", 2, S(4, 6)), 0.4f, o);
}
/* two dropout nodes: each owns its range of Philox words; odd sizes misalign them */
static ember_status b_dropout_twice(side *s, ember_node **o) {
    ember_node *h, *r;
    TRY(ember_op_dropout(s->g, param(s, "a", 2, S(37, 29)), 0.3f, &h));
    TRY(ember_op_relu(s->g, h, &r));
    return ember_op_dropout(s->g, r, 0.5f, o);
}
static ember_status b_sum_all(side *s, ember_node **o) { return ember_op_sum(s->g, param(s, "a", 2, S(3, 4)), 0, o); }
static ember_status b_sum_last(side *s, ember_node **o) {
    return ember_op_sum(s->g, param(s, "a", 3, S(2, 3, 4)), 1, o);
}
static ember_status b_mean(side *s, ember_node **o) { return ember_op_mean(s->g, param(s, "a", 2, S(3, 4)), 1, o); }
static ember_status b_bce(side *s, ember_node **o) {
    ember_node *lb = input(s, "labels", 2, S(5, 1), 0.0, 1.0, 0);
    return ember_op_bce_with_logits(s->g, param_range(s, "logits", 2, S(5, 1), -4.0, 4.0), lb, o);
}
/* more elements than one block of the loss's sum */
static ember_status b_bce_large(side *s, ember_node **o) {
    ember_node *lb = input(s, "labels", 1, S(10000), 0.0, 1.0, 0);
    return ember_op_bce_with_logits(s->g, param_range(s, "logits", 1, S(10000), -6.0, 6.0), lb, o);
}
static ember_status b_ce(side *s, ember_node **o) {
    return ember_op_softmax_cross_entropy(s->g, param(s, "logits", 2, S(6, 4)),
                                          indices(s, "labels", EMBER_DTYPE_I32, 1, S(6), 4), o);
}
static ember_status b_ce64_wide(side *s, ember_node **o) {
    return ember_op_softmax_cross_entropy(s->g, param_range(s, "logits", 2, S(6, 3000), -5.0, 5.0),
                                          indices(s, "labels", EMBER_DTYPE_I64, 1, S(6), 3000), o);
}
static ember_status b_ce_many_rows(side *s, ember_node **o) {
    return ember_op_softmax_cross_entropy(s->g, param(s, "logits", 2, S(9000, 7)),
                                          indices(s, "labels", EMBER_DTYPE_I32, 1, S(9000), 7), o);
}
static ember_status b_reused(side *s, ember_node **o) {
    /* one value read by three consumers: gradients accumulate */
    ember_node *a = param(s, "a", 2, S(3, 3)), *m, *t;
    TRY(ember_op_mul(s->g, a, a, &m));
    TRY(ember_op_tanh(s->g, a, &t));
    return ember_op_add(s->g, m, t, o);
}
/* an input with a gradient, and a parameter nothing uses (its gradient: zeros) */
static ember_status b_input_grad(side *s, ember_node **o) {
    ember_node *x = input(s, "x", 2, S(4, 3), -1.0, 1.0, 1);
    (void)param(s, "unused", 1, S(5));
    return ember_op_mul(s->g, x, param(s, "w", 1, S(3)), o);
}

static const op_case cases[] = {
    {"matmul", b_matmul_nn, GEMM_INIT},
    {"matmul a^T", b_matmul_tn, GEMM_INIT},
    {"matmul b^T", b_matmul_nt, GEMM_INIT},
    {"matmul a^T b^T", b_matmul_tt, GEMM_INIT},
    {"matmul batched @ shared", b_matmul_batched_shared, GEMM_INIT},
    {"matmul batched @ shared^T", b_matmul_batched_shared_t, GEMM_INIT},
    {"matmul shared @ batched", b_matmul_shared_batched, GEMM_INIT},
    {"matmul batched", b_matmul_batched, GEMM_INIT},
    {"matmul 70x130x90", b_matmul_large, GEMM_INIT},
    {"add", b_add, EXACT_INIT},
    {"add bias", b_add_bias, EXACT_INIT},
    {"add bias, 700 rows", b_add_bias_long, EXACT_INIT},
    {"add scalar", b_add_scalar, EXACT_INIT},
    {"add scalar, 5000 elements", b_add_scalar_long, EXACT_INIT},
    {"mul broadcast", b_mul, EXACT_INIT},
    {"scale", b_scale, EXACT_INIT},
    {"relu", b_relu, EXACT_INIT},
    {"relu in place", b_relu_inplace, EXACT_INIT},
    {"sigmoid in place", b_sigmoid, ULP_INIT},
    {"tanh", b_tanh, ULP_INIT},
    {"gelu", b_gelu, ULP_INIT},
    {"layernorm", b_layernorm, ULP_INIT},
    {"layernorm, rows of 1000", b_layernorm_wide, ULP_INIT},
    {"layernorm, 70000 rows", b_layernorm_many_rows, ULP_INIT},
    {"softmax", b_softmax, ULP_INIT},
    {"softmax in place", b_softmax_inplace, ULP_INIT},
    {"softmax, rows of 3000", b_softmax_wide, ULP_INIT},
    {"softmax, 70000 rows", b_softmax_many_rows, ULP_INIT},
    {"log_softmax", b_log_softmax, ULP_INIT},
    {"log_softmax in place, rows of 2049", b_log_softmax_wide, ULP_INIT},
    {"causal mask + softmax", b_masked_softmax, ULP_INIT},
    {"causal attention", b_attention, GEMM_INIT},
    {"causal attention T=40", b_attention_long, GEMM_INIT},
    {"concat", b_concat, EXACT_INIT},
    {"concat 4 along dim 0", b_concat4, EXACT_INIT},
    {"slice", b_slice, EXACT_INIT},
    {"slice last dim", b_slice_last, EXACT_INIT},
    {"reshape", b_reshape, EXACT_INIT},
    {"permute", b_permute, EXACT_INIT},
    {"transpose", b_transpose, EXACT_INIT},
    {"gather rows i64", b_gather, EXACT_INIT},
    {"gather rows i32", b_gather32, EXACT_INIT},
    {"gather rows 2-D idx", b_gather_2d, EXACT_INIT},
    {"gather rows 5000 of 50", b_gather_many, EXACT_INIT},
    {"interaction", b_interaction, EXACT_INIT},
    {"interaction 27 features", b_interaction_dlrm, EXACT_INIT},
    {"interaction with the diagonal", b_interaction_self, EXACT_INIT},
    {"interaction with the diagonal, 27 features", b_interaction_self_dlrm, EXACT_INIT},
    {"dot interaction over [z | e], DLRM shape", b_dot_interaction, EXACT_INIT},
    {"dot interaction over [z | e] with the diagonal, dim 5", b_dot_interaction_self, EXACT_INIT},
    {"dcn cross", b_cross, GEMM_INIT},
    {"dropout", b_dropout, EXACT_INIT},
    {"dropout twice", b_dropout_twice, EXACT_INIT},
    {"sum all", b_sum_all, ULP_INIT},
    {"sum last", b_sum_last, ULP_INIT},
    {"mean", b_mean, ULP_INIT},
    {"bce with logits", b_bce, ULP_INIT},
    {"bce with logits, 10000", b_bce_large, ULP_INIT},
    {"softmax cross-entropy", b_ce, ULP_INIT},
    {"softmax cross-entropy i64, 3000 classes", b_ce64_wide, ULP_INIT},
    {"softmax cross-entropy, 9000 rows", b_ce_many_rows, ULP_INIT},
    {"reused value", b_reused, ULP_INIT},
    {"input gradient, unused parameter", b_input_grad, EXACT_INIT},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* Build a case on one side: loss = sum(out * R). */
static ember_status build_case(const op_case *k, side *s, ember_node **out, ember_node **loss) {
    TRY(k->build(s, out));
    ember_node_info info;
    TRY(ember_node_get_info(*out, &info));
    ember_node *r = input(s, "R", info.ndim, info.shape, -1.0, 1.0, 0), *m;
    TRY(ember_op_mul(s->g, *out, r, &m));
    TRY(ember_op_sum(s->g, m, 0, loss));
    TRY(ember_graph_mark_output(s->g, *out));
    return ember_graph_build_backward(s->g, *loss);
}

static void run_case(const op_case *k, int training, uint64_t seed) {
    side c, d;
    ember_node *oc = NULL, *od = NULL, *lc = NULL, *ld = NULL;
    CHECK_OK(make_side(&c, 0, seed));
    CHECK_OK(make_side(&d, 1, seed));
    ember_status sc = c.g ? build_case(k, &c, &oc, &lc) : EMBER_ERR_STATE;
    CHECK_OK(sc);
    ember_status sd = d.g ? build_case(k, &d, &od, &ld) : EMBER_ERR_STATE;
    CHECK_OK(sd);
    if (sc == EMBER_OK && sd == EMBER_OK && c.nleaf == d.nleaf) {
        ember_graph_set_training(c.g, training);
        ember_graph_set_training(d.g, training);
        rng_state = 0x9E3779B97F4A7C15ull ^ seed;
        for (int i = 0; i < c.nleaf; i++) fill_leaf(&c, &d, i);
        for (int step = 0; step < 2; step++) {
            CHECK_OK(ember_graph_run(c.g));
            CHECK_OK(ember_graph_run(d.g));
        }
        compare_nodes(k->name, "output", oc, od, k->t);
        compare_nodes(k->name, "loss", lc, ld, at_least(k->t, ULP));
        compare_grads(k->name, &c, &d, k->t);
        count_runs(&d);
    }
    ember_graph_destroy(c.g);
    ember_graph_destroy(d.g);
}

static void test_ops(void) {
    for (int i = 0; i < NCASES; i++) run_case(&cases[i], 1, 100 + (uint64_t)i);
    /* evaluation mode: dropout is the identity on both sides */
    run_case(&(op_case){"dropout in eval mode", b_dropout_twice, EXACT}, 0, 7);
}

/* ---- index checks: the CPU's status and message, and the graph runs again after ---- */

static void expect_same_failure(const char *what, ember_status st_cpu, const char *msg_cpu, ember_status st_gpu,
                                const char *msg_gpu, const char *needle) {
    CHECK_EQ_INT(st_cpu, EMBER_ERR_INDEX);
    CHECK_EQ_INT(st_gpu, EMBER_ERR_INDEX);
    CHECK_STR(msg_gpu, msg_cpu);
    if (!strstr(msg_gpu, needle)) {
        check__failed++;
        fprintf(stderr, "FAIL %s: \"%s\" does not mention \"%s\"\n", what, msg_gpu, needle);
    } else {
        check__passed++;
    }
}

/* Run fn on both graphs; keep each status and message. */
#define BOTH(fn, c, d, stc, msgc, std, msgd)                        \
    do {                                                            \
        stc = fn((c).g);                                            \
        snprintf(msgc, sizeof msgc, "%s", ember_last_error());      \
        std = fn((d).g);                                            \
        snprintf(msgd, sizeof msgd, "%s", ember_last_error());      \
    } while (0)

/* The case's index leaf (indices or labels) gets `bad` at `pos` (and -1 after it, which
 * must not be the one reported); in_backward: only after a good forward pass. */
static void index_case(const char *name, builder b, int64_t pos, int64_t bad, int in_backward, const char *needle) {
    const op_case k = {name, b, EXACT};
    side c, d;
    ember_node *oc = NULL, *od = NULL, *lc = NULL, *ld = NULL;
    CHECK_OK(make_side(&c, 0, 3));
    CHECK_OK(make_side(&d, 1, 3));
    ember_status sc = c.g ? build_case(&k, &c, &oc, &lc) : EMBER_ERR_STATE;
    ember_status sd = d.g ? build_case(&k, &d, &od, &ld) : EMBER_ERR_STATE;
    CHECK_OK(sc);
    CHECK_OK(sd);
    if (sc == EMBER_OK && sd == EMBER_OK) {
        rng_state = 0x51ED27A4C0FFEEull;
        int idx_leaf = -1;
        for (int i = 0; i < c.nleaf; i++) {
            fill_leaf(&c, &d, i);
            ember_node_info info;
            CHECK_OK(ember_node_get_info(c.leaf[i], &info));
            if (idx_leaf < 0 && (info.dtype == EMBER_DTYPE_I32 || info.dtype == EMBER_DTYPE_I64)) idx_leaf = i;
        }
        CHECK(idx_leaf >= 0);
        if (idx_leaf < 0) idx_leaf = 0;
        ember_tensor *iv;
        CHECK_OK(ember_node_value(c.leaf[idx_leaf], &iv));
        int64_t keep = ember_tensor_dtype(iv) == EMBER_DTYPE_I32 ? ((int32_t *)ember_tensor_data(iv))[pos]
                                                                 : ((int64_t *)ember_tensor_data(iv))[pos];
        ember_status stc, std;
        char msgc[512], msgd[512];
        if (in_backward) {
            CHECK_OK(ember_graph_forward(c.g));
            CHECK_OK(ember_graph_forward(d.g));
        }
        set_index(&c, &d, idx_leaf, pos, bad);
        if (pos + 1 < ember_tensor_numel(iv)) set_index(&c, &d, idx_leaf, pos + 1, -1); /* later: not reported */
        if (in_backward) BOTH(ember_graph_backward, c, d, stc, msgc, std, msgd);
        else BOTH(ember_graph_run, c, d, stc, msgc, std, msgd);
        expect_same_failure(name, stc, msgc, std, msgd, needle);
        /* fixed indices: both graphs run and agree again */
        set_index(&c, &d, idx_leaf, pos, keep);
        if (pos + 1 < ember_tensor_numel(iv)) set_index(&c, &d, idx_leaf, pos + 1, 0);
        CHECK_OK(ember_graph_run(c.g));
        CHECK_OK(ember_graph_run(d.g));
        compare_nodes(name, "loss after fixing the index", lc, ld, ULP);
        compare_grads(name, &c, &d, ULP);
    }
    ember_graph_destroy(c.g);
    ember_graph_destroy(d.g);
}

static void test_index_errors(void) {
    index_case("gather_rows i64: index too large", b_gather, 3, 5, 0, "gather_rows: index 5 at position 3");
    index_case("gather_rows i32: negative index", b_gather32, 2, -7, 0, "gather_rows: index -7 at position 2");
    index_case("scatter_rows: index changed after forward", b_gather, 4, 9, 1, "scatter_rows: index 9 at position 4");
    index_case("cross-entropy: label too large", b_ce, 2, 4, 0, "softmax_cross_entropy: label 4 of row 2");
    index_case("cross-entropy backward: negative label", b_ce64_wide, 5, -1, 1,
               "softmax_cross_entropy: label -1 of row 5");
}

/* ---- models end to end: several SGD steps on both sides ---- */

typedef ember_status (*model_builder)(side *s, int ckpt, ember_node **loss);

/* x (64, 13) -> linear 32 -> layernorm -> relu -> dropout -> linear 16 -> gelu -> linear 1 -> bce */
static ember_status build_mlp(side *s, int ckpt, ember_node **loss) {
    const int64_t B = 64;
    ember_node *x = input(s, "x", 2, S(B, 13), -1.0, 1.0, 0);
    ember_node *y = input(s, "y", 2, S(B, 1), 0.0, 1.0, 0);
    ember_node *w1 = param_range(s, "w1", 2, S(13, 32), -0.4, 0.4), *b1 = param_range(s, "b1", 1, S(32), -0.1, 0.1);
    ember_node *gm = param_range(s, "gamma", 1, S(32), 0.8, 1.2), *bt = param_range(s, "beta", 1, S(32), -0.1, 0.1);
    ember_node *w2 = param_range(s, "w2", 2, S(32, 16), -0.3, 0.3), *b2 = param_range(s, "b2", 1, S(16), -0.1, 0.1);
    ember_node *w3 = param_range(s, "w3", 2, S(16, 1), -0.3, 0.3), *b3 = param_range(s, "b3", 1, S(1), -0.1, 0.1);
    ember_node *h, *a, *n, *r, *d, *h2, *a2, *g2, *h3, *lg;
    if (ckpt) TRY(ember_graph_checkpoint_begin(s->g));
    TRY(ember_op_matmul(s->g, x, w1, 0, 0, &h));
    TRY(ember_op_add(s->g, h, b1, &a));
    TRY(ember_op_layernorm(s->g, a, gm, bt, 1e-5f, &n));
    TRY(ember_op_relu(s->g, n, &r));
    TRY(ember_op_dropout(s->g, r, 0.1f, &d));
    if (ckpt) TRY(ember_graph_checkpoint_end(s->g));
    TRY(ember_op_matmul(s->g, d, w2, 0, 0, &h2));
    TRY(ember_op_add(s->g, h2, b2, &a2));
    TRY(ember_op_gelu(s->g, a2, &g2));
    TRY(ember_op_matmul(s->g, g2, w3, 0, 0, &h3));
    TRY(ember_op_add(s->g, h3, b3, &lg));
    TRY(ember_op_bce_with_logits(s->g, lg, y, loss));
    return ember_graph_build_backward(s->g, *loss);
}

/* tokens (4 x 12) -> embedding (11, 16) -> causal attention over (q, k, v) projections ->
 * layernorm -> logits (11) -> cross-entropy against the next tokens */
static ember_status build_lm(side *s, int ckpt, ember_node **loss) {
    const int64_t B = 4, T = 12, V = 11, D = 16;
    ember_node *tok = indices(s, "tokens", EMBER_DTYPE_I32, 1, S(B * T), V);
    ember_node *next = indices(s, "next", EMBER_DTYPE_I64, 1, S(B * T), V);
    ember_node *emb = param_range(s, "emb", 2, S(V, D), -0.5, 0.5);
    ember_node *wq = param_range(s, "wq", 2, S(D, D), -0.3, 0.3), *wk = param_range(s, "wk", 2, S(D, D), -0.3, 0.3);
    ember_node *wv = param_range(s, "wv", 2, S(D, D), -0.3, 0.3), *wo = param_range(s, "wo", 2, S(D, V), -0.3, 0.3);
    ember_node *gm = param_range(s, "gamma", 1, S(D), 0.8, 1.2), *bt = param_range(s, "beta", 1, S(D), -0.1, 0.1);
    ember_node *e, *x, *q, *k, *v, *att, *res, *n, *flat, *lg;
    TRY(ember_op_gather_rows(s->g, emb, tok, &e));
    TRY(ember_op_reshape(s->g, e, 3, S(B, T, D), &x));
    if (ckpt) TRY(ember_graph_checkpoint_begin(s->g));
    TRY(ember_op_matmul(s->g, x, wq, 0, 0, &q));
    TRY(ember_op_matmul(s->g, x, wk, 0, 0, &k));
    TRY(ember_op_matmul(s->g, x, wv, 0, 0, &v));
    TRY(ember_op_causal_attention(s->g, q, k, v, &att));
    TRY(ember_op_add(s->g, att, x, &res));
    TRY(ember_op_layernorm(s->g, res, gm, bt, 1e-5f, &n));
    if (ckpt) TRY(ember_graph_checkpoint_end(s->g));
    TRY(ember_op_reshape(s->g, n, 2, S(B * T, D), &flat));
    TRY(ember_op_matmul(s->g, flat, wo, 0, 0, &lg));
    TRY(ember_op_softmax_cross_entropy(s->g, lg, next, loss));
    return ember_graph_build_backward(s->g, *loss);
}

/* p -= lr * grad for every parameter (ember_axpy runs on each side's device). */
static void sgd(side *s, float lr) {
    for (int i = 0; i < s->nleaf; i++) {
        const ember_node *gn = ember_node_grad(s->leaf[i]);
        if (!gn) continue;
        ember_tensor *p = NULL, *g = NULL;
        CHECK_OK(ember_node_value(s->leaf[i], &p));
        CHECK_OK(ember_node_value(gn, &g));
        if (p && g) CHECK_OK(ember_axpy(p, -lr, g));
    }
}

static void train_model(const char *name, model_builder b, int ckpt) {
    side c, d;
    ember_node *lc = NULL, *ld = NULL;
    CHECK_OK(make_side(&c, 0, 11));
    CHECK_OK(make_side(&d, 1, 11));
    ember_status sc = c.g ? b(&c, ckpt, &lc) : EMBER_ERR_STATE;
    ember_status sd = d.g ? b(&d, ckpt, &ld) : EMBER_ERR_STATE;
    CHECK_OK(sc);
    CHECK_OK(sd);
    if (sc == EMBER_OK && sd == EMBER_OK) {
        rng_state = 0xD1B54A32D192ED03ull;
        for (int i = 0; i < c.nleaf; i++) fill_leaf(&c, &d, i);
        for (int step = 0; step < 8; step++) {
            CHECK_OK(ember_graph_run(c.g));
            CHECK_OK(ember_graph_run(d.g));
            char what[64];
            snprintf(what, sizeof what, "loss at step %d", step);
            compare_nodes(name, what, lc, ld, TRAIN);
            sgd(&c, 0.1f);
            sgd(&d, 0.1f);
        }
        compare_grads(name, &c, &d, TRAIN);
        for (int i = 0; i < c.nleaf; i++) {
            if (!ember_node_grad(c.leaf[i])) continue;
            ember_node_info info;
            CHECK_OK(ember_node_get_info(c.leaf[i], &info));
            char what[96];
            snprintf(what, sizeof what, "parameter %s after training", info.name);
            compare_nodes(name, what, c.leaf[i], d.leaf[i], TRAIN);
        }
        count_runs(&d);
    }
    ember_graph_destroy(c.g);
    ember_graph_destroy(d.g);
}

static void test_models(void) {
    train_model("mlp", build_mlp, 0);
    train_model("mlp, checkpointed layer", build_mlp, 1);
    train_model("attention lm", build_lm, 0);
    train_model("attention lm, checkpointed block", build_lm, 1);
}

/* The embedding bag on a CUDA collection against a CPU one: output, then the rows
   after the fused SGD update its backward applies. */
static void test_embedding_bag(void) {
    ember_ebc *ce = NULL, *ge = NULL;
    ember_ebc_table_config tabs[2] = {{.rows = 50, .dim = 8}, {.rows = 30, .dim = 4, .pooling = EMBER_POOLING_MEAN}};
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = tabs}, &ce));
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = tabs, .mm = gpu_mm,
                                                  .tier = EMBER_TIER_DEVICE},
                              &ge));
    if (!ce || !ge) {
        ember_ebc_destroy(ce);
        ember_ebc_destroy(ge);
        return;
    }
    ember_rng r1 = {.seed = 4}, r2 = {.seed = 4};
    CHECK_OK(ember_ebc_init_uniform(ce, &r1, -1, 1));
    CHECK_OK(ember_ebc_init_uniform(ge, &r2, -1, 1));
    enum { B = 16 };
    int64_t v0[40], o0[B + 1], v1[40], o1[B + 1];
    o0[0] = o1[0] = 0;
    for (int b = 0; b < B; b++) {
        o0[b + 1] = o0[b] + b % 3;
        o1[b + 1] = o1[b] + 1 + b % 2;
    }
    for (int i = 0; i < 40; i++) {
        v0[i] = (i * 7) % 50;
        v1[i] = (i * 5) % 30;
    }
    /* device copies of the batch arrays */
    ember_tensor *hv[4], *dv[4];
    const int64_t *src[4] = {v0, o0, v1, o1};
    int64_t len[4] = {o0[B], B + 1, o1[B], B + 1};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(ember_tensor_wrap((void *)src[i], EMBER_DTYPE_I64, 1, &len[i], NULL, EMBER_CPU, &hv[i]));
        CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I64, .ndim = 1, .shape = {len[i]},
                                                            .tier = EMBER_TIER_DEVICE, .mm = gpu_mm},
                                     &dv[i]));
        CHECK_OK(ember_tensor_copy(dv[i], hv[i]));
    }
    ember_jagged_feature cf[2] = {{.values = v0, .offsets = o0, .length = o0[B]},
                                  {.values = v1, .offsets = o1, .length = o1[B]}};
    ember_jagged_feature gf[2] = {{.values = ember_tensor_data(dv[0]), .offsets = ember_tensor_data(dv[1]), .length = o0[B]},
                                  {.values = ember_tensor_data(dv[2]), .offsets = ember_tensor_data(dv[3]), .length = o1[B]}};
    ember_jagged cb = {.batch = B, .num_features = 2, .features = cf}, gb = {.batch = B, .num_features = 2, .features = gf};
    ember_ebc_binding cbind = {.batch = &cb, .call = {.lr = 0.5f}}, gbind = {.batch = &gb, .call = {.lr = 0.5f}};
    ember_graph *g[2] = {NULL, NULL};
    ember_node *eb[2], *w[2], *h[2], *loss[2];
    for (int k = 0; k < 2; k++) {
        CHECK_OK(ember_graph_create(k ? &(ember_graph_params){.mm = gpu_mm, .tier = EMBER_TIER_DEVICE} : NULL, &g[k]));
        CHECK_OK(ember_embedding_bag(g[k], &(ember_embedding_bag_params){.ebc = k ? ge : ce, .batch = B,
                                                                             .bind = k ? &gbind : &cbind},
                                     &eb[k]));
        CHECK_OK(ember_graph_param(g[k], "w", EMBER_DTYPE_F32, 2, (int64_t[]){12, 3}, &w[k]));
        ember_tensor *wt, *wh;
        CHECK_OK(ember_node_value(w[k], &wt));
        CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {12, 3}}, &wh));
        ember_rng r3 = {.seed = 9};
        CHECK_OK(ember_rng_uniform(&r3, wh, -1, 1));
        CHECK_OK(ember_tensor_copy(wt, wh));
        ember_tensor_destroy(wh);
        CHECK_OK(ember_op_matmul(g[k], eb[k], w[k], 0, 0, &h[k]));
        CHECK_OK(ember_op_sum(g[k], h[k], 0, &loss[k]));
        CHECK_OK(ember_graph_mark_output(g[k], eb[k]));
        CHECK_OK(ember_graph_build_backward(g[k], loss[k]));
        CHECK_OK(ember_graph_run(g[k]));
    }
    compare_nodes("embedding_bag", "out", eb[0], eb[1], (tol){1e-6, 1e-6});
    for (int t = 0; t < 2; t++) {
        float a[50 * 8], b[50 * 8];
        CHECK_OK(ember_ebc_read_rows(ce, t, 0, tabs[t].rows, a));
        CHECK_OK(ember_ebc_read_rows(ge, t, 0, tabs[t].rows, b));
        CHECK_NEAR_ARRAY(a, b, tabs[t].rows * tabs[t].dim, 1e-5);
    }
    side d = {.g = g[1]};
    count_runs(&d);
    for (int i = 0; i < 4; i++) {
        ember_tensor_destroy(hv[i]);
        ember_tensor_destroy(dv[i]);
    }
    ember_graph_destroy(g[0]);
    ember_graph_destroy(g[1]);
    ember_ebc_destroy(ce);
    ember_ebc_destroy(ge);
}

/* Every op of the registry ran on the GPU somewhere above (leaves have no kernel). */
static void test_registry_covered(void) {
    const char *const *names = ember_graph_op_names();
    for (int op = 0; names[op]; op++) {
        if (strcmp(names[op], "input") == 0 || strcmp(names[op], "param") == 0) continue;
        if (op < MAX_OPS && gpu_runs[op] > 0) {
            check__passed++;
        } else {
            check__failed++;
            fprintf(stderr, "FAIL op %s never ran on CUDA in this test (add a case)\n", names[op]);
        }
    }
}

int main(void) {
    if (ember_cuda_device_count() == 0) CHECK_SKIP("no CUDA device (test_graph_cuda needs a GPU)");
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &gpu_mm));
    if (!gpu_mm) return check_summary();
    test_ops();
    test_index_errors();
    test_embedding_bag();
    test_models();
    test_registry_covered();
    ember_memory_destroy(gpu_mm);
    return check_summary();
}
