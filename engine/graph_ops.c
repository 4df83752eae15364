/*
 * The graph ops: for each, shape inference, the backward constructor, FLOPs and the
 * CPU kernel, gathered in one registry (ember__ops) at the end of the file.
 *
 * Backward constructors build gradients from other ops, so the backward graph is an
 * ordinary graph: planned, checkpointed and executed like the forward one. Ops that
 * appear only in gradients (relu_bwd, scatter_rows, ...) are flagged grad_only.
 * Kernels see contiguous f32 tensors (index inputs i32/i64) of the inferred shapes;
 * reductions over rows accumulate in double, so results do not depend on threads.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "engine/lanes.h"
#include "engine/philox.h"

#define F(t) ((float *)ember_tensor_data(t))
#define CF(t) ((const float *)ember_tensor_data(t))
#define PAR_ROWS 64 /* rows below which row loops stay on one thread */

static char *desc(const ember_node *n, char *buf, size_t len) {
    char s[96];
    snprintf(buf, len, "%s%s", ember_dtype_name(n->dtype), ember__shape_str(n->ndim, n->shape, s, sizeof s));
    return buf;
}

static ember_status need_f32(const char *op, const ember_node *n, const char *what) {
    if (n->dtype == EMBER_DTYPE_F32) return EMBER_OK;
    char d[128];
    return ember__error(EMBER_ERR_DTYPE, "%s: %s is %s; this op takes f32", op, what, desc(n, d, sizeof d));
}

static ember_status need_index(const char *op, const ember_node *n, const char *what) {
    if (n->dtype == EMBER_DTYPE_I32 || n->dtype == EMBER_DTYPE_I64) return EMBER_OK;
    char d[128];
    return ember__error(EMBER_ERR_DTYPE, "%s: %s is %s; indices are i32 or i64", op, what, desc(n, d, sizeof d));
}

static void set_shape(ember_node *n, ember_dtype dt, int ndim, const int64_t *shape) {
    n->dtype = dt;
    n->ndim = ndim;
    memset(n->shape, 0, sizeof n->shape);
    for (int i = 0; i < ndim; i++) n->shape[i] = shape[i];
}

static void copy_shape(ember_node *n, const ember_node *from) { set_shape(n, from->dtype, from->ndim, from->shape); }

static int same_shape(const ember_node *a, const ember_node *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* b broadcasts to a: same shape, a trailing part of a's shape, or one element. */
static int broadcasts(const ember_node *a, const ember_node *b) {
    if (same_shape(a, b) || ember__node_numel(b) == 1) return 1;
    if (b->ndim > a->ndim) return 0;
    for (int i = 0; i < b->ndim; i++)
        if (b->shape[b->ndim - 1 - i] != a->shape[a->ndim - 1 - i]) return 0;
    return 1;
}

static double numel_flops(const ember_node *n) { return (double)ember__node_numel(n); }

/* Shorthands for building nodes inside backward constructors. */
static ember_status mk(ember_graph *g, ember__op op, ember_node **out, int nsrc, ember_node *s0, ember_node *s1,
                       ember_node *s2) {
    ember_node *src[3] = {s0, s1, s2};
    return ember__node_new(g, op, src, nsrc, NULL, 0, NULL, 0, out);
}

static ember_status mkp(ember_graph *g, ember__op op, ember_node **out, int nsrc, ember_node *s0, ember_node *s1,
                        const int64_t *ip, int nip, const float *fp, int nfp) {
    ember_node *src[2] = {s0, s1};
    return ember__node_new(g, op, src, nsrc, ip, nip, fp, nfp, out);
}

/* Reduce a gradient of b-broadcast-to-a shape back to b's shape (identity when equal). */
static ember_status sum_to(ember_graph *g, ember_node *grad, const ember_node *like, ember_node **out) {
    if (same_shape(grad, like)) {
        *out = grad;
        return EMBER_OK;
    }
    int64_t ip[EMBER_MAX_DIMS + 2] = {like->ndim};
    for (int i = 0; i < like->ndim; i++) ip[1 + i] = like->shape[i];
    return mkp(g, EMBER__OP_SUM_TO, out, 1, grad, NULL, ip, 1 + like->ndim, NULL, 0);
}

/* ======================= element-wise ======================= */

static ember_status infer_binary(ember_node *n) {
    const char *op = ember__ops[n->op].name;
    ember_node *a = n->src[0], *b = n->src[1];
    EMBER_TRY(need_f32(op, a, "a"));
    EMBER_TRY(need_f32(op, b, "b"));
    if (!broadcasts(a, b)) {
        char x[128], y[128];
        return ember__error(EMBER_ERR_SHAPE, "%s: b %s does not broadcast to a %s", op, desc(b, y, sizeof y),
                            desc(a, x, sizeof x));
    }
    copy_shape(n, a);
    return EMBER_OK;
}

static ember_status k_add(const ember__exec *x) { return ember_binary(EMBER_BINARY_ADD, x->out, x->src[0], x->src[1]); }
static ember_status k_mul(const ember__exec *x) { return ember_binary(EMBER_BINARY_MUL, x->out, x->src[0], x->src[1]); }

static ember_status bwd_add(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    gin[0] = go;
    return sum_to(g, go, n->src[1], &gin[1]);
}

static ember_status bwd_mul(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    ember_node *a = n->src[0], *b = n->src[1], *gb;
    if (a->flags & EMBER__NODE_REQUIRES_GRAD) EMBER_TRY(mk(g, EMBER__OP_MUL, &gin[0], 2, go, b, NULL));
    if (!(b->flags & EMBER__NODE_REQUIRES_GRAD)) return EMBER_OK;
    EMBER_TRY(mk(g, EMBER__OP_MUL, &gb, 2, go, a, NULL));
    return sum_to(g, gb, b, &gin[1]);
}

static ember_status infer_same_f32(ember_node *n) {
    EMBER_TRY(need_f32(ember__ops[n->op].name, n->src[0], "input"));
    copy_shape(n, n->src[0]);
    return EMBER_OK;
}

/* Grad-only binary ops take (forward value, incoming gradient) of one shape. */
static ember_status infer_pair(ember_node *n) {
    const char *op = ember__ops[n->op].name;
    EMBER_TRY(need_f32(op, n->src[0], "value"));
    EMBER_TRY(need_f32(op, n->src[1], "gradient"));
    if (!same_shape(n->src[0], n->src[1])) {
        char x[128], y[128];
        return ember__error(EMBER_ERR_SHAPE, "%s: value %s and gradient %s differ", op,
                            desc(n->src[0], x, sizeof x), desc(n->src[1], y, sizeof y));
    }
    copy_shape(n, n->src[0]);
    return EMBER_OK;
}

static ember_status k_scale(const ember__exec *x) { return ember_scale(x->out, x->src[0], x->n->fp[0], 0.0); }
static ember_status bwd_scale(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mkp(g, EMBER__OP_SCALE, &gin[0], 1, go, NULL, NULL, 0, n->fp, 1);
}

static ember_status k_relu(const ember__exec *x) { return ember_unary(EMBER_UNARY_RELU, x->out, x->src[0]); }
static ember_status k_sigmoid(const ember__exec *x) { return ember_unary(EMBER_UNARY_SIGMOID, x->out, x->src[0]); }
static ember_status k_tanh(const ember__exec *x) { return ember_unary(EMBER_UNARY_TANH, x->out, x->src[0]); }

/* From the output (y > 0 exactly where x > 0), so relu may overwrite its input. */
static ember_status bwd_relu(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_RELU_BWD, &gin[0], 2, n, go, NULL);
}
/* sigmoid and tanh gradients are cheapest from the output y. */
static ember_status bwd_sigmoid(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_SIGMOID_BWD, &gin[0], 2, n, go, NULL);
}
static ember_status bwd_tanh(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_TANH_BWD, &gin[0], 2, n, go, NULL);
}
static ember_status bwd_gelu(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_GELU_BWD, &gin[0], 2, n->src[0], go, NULL);
}

/* out[i] = f(v[i], g[i]) for the grad-only element-wise ops. */
#define PAIR_KERNEL(name, expr)                                                \
    static ember_status name(const ember__exec *x) {                           \
        const float *v = CF(x->src[0]), *gr = CF(x->src[1]);                   \
        float *o = F(x->out);                                                  \
        int64_t n = ember_tensor_numel(x->out);                                \
        _Pragma("omp parallel for simd if (n > 32768) schedule(static)")       \
        for (int64_t i = 0; i < n; i++) {                                      \
            float a = v[i], d = gr[i];                                         \
            o[i] = (expr);                                                     \
        }                                                                      \
        return EMBER_OK;                                                       \
    }

PAIR_KERNEL(k_relu_bwd, a > 0.0f ? d : 0.0f)
PAIR_KERNEL(k_sigmoid_bwd, d *a *(1.0f - a))
PAIR_KERNEL(k_tanh_bwd, d *(1.0f - a * a))
/* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
PAIR_KERNEL(k_gelu_bwd, d *(0.5f * (1.0f + erff(a * 0.70710678118654752f)) +
                            a * 0.39894228040143268f * expf(-0.5f * a * a)))

static ember_status k_gelu(const ember__exec *x) {
    const float *v = CF(x->src[0]);
    float *o = F(x->out);
    int64_t n = ember_tensor_numel(x->out);
#pragma omp parallel for simd if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = 0.5f * v[i] * (1.0f + erff(v[i] * 0.70710678118654752f));
    return EMBER_OK;
}

static double flops_gelu(const ember_node *n) { return 10.0 * (double)ember__node_numel(n); }

/* ======================= matmul ======================= */

static ember_status infer_matmul(ember_node *n) {
    static const char op[] = "ember_op_matmul";
    ember_node *a = n->src[0], *b = n->src[1];
    EMBER_TRY(need_f32(op, a, "a"));
    EMBER_TRY(need_f32(op, b, "b"));
    int ta = (int)n->ip[0], tb = (int)n->ip[1];
    char x[128], y[128];
    if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3)
        return ember__error(EMBER_ERR_SHAPE, "%s: a %s and b %s must be 2-D or 3-D", op, desc(a, x, sizeof x),
                            desc(b, y, sizeof y));
    int64_t m = ta ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    int64_t k = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t kb = tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    int64_t nn = tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    if (k != kb)
        return ember__error(EMBER_ERR_SHAPE, "%s: inner dims differ: op(a) of %s is %lldx%lld, op(b) of %s is %lldx%lld",
                            op, desc(a, x, sizeof x), (long long)m, (long long)k, desc(b, y, sizeof y),
                            (long long)kb, (long long)nn);
    if (a->ndim == 3 && b->ndim == 3 && a->shape[0] != b->shape[0])
        return ember__error(EMBER_ERR_SHAPE, "%s: batch sizes differ: %s and %s", op, desc(a, x, sizeof x),
                            desc(b, y, sizeof y));
    if (a->ndim == 3 || b->ndim == 3)
        set_shape(n, EMBER_DTYPE_F32, 3, (int64_t[]){a->ndim == 3 ? a->shape[0] : b->shape[0], m, nn});
    else
        set_shape(n, EMBER_DTYPE_F32, 2, (int64_t[]){m, nn});
    n->ip[2] = k;
    return EMBER_OK;
}

static double flops_matmul(const ember_node *n) {
    return 2.0 * (double)ember__node_numel(n) * (double)n->ip[2];
}

static ember_status k_matmul(const ember__exec *x) {
    return ember_gemm((int)x->n->ip[0], (int)x->n->ip[1], 1.0f, x->src[0], x->src[1], 0.0f, x->out);
}

static ember_status matmul_node(ember_graph *g, ember_node *a, ember_node *b, int ta, int tb, ember_node **out) {
    return mkp(g, EMBER__OP_MATMUL, out, 2, a, b, (int64_t[]){ta, tb}, 2, NULL, 0);
}

/* (batch, r, c) viewed as (batch * r, c). */
static ember_status flatten3(ember_graph *g, ember_node *x, ember_node **out) {
    return mkp(g, EMBER__OP_RESHAPE, out, 1, x, NULL, (int64_t[]){2, x->shape[0] * x->shape[1], x->shape[2]}, 3,
               NULL, 0);
}

static ember_status bwd_matmul(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    ember_node *a = n->src[0], *b = n->src[1];
    int ta = (int)n->ip[0], tb = (int)n->ip[1];
    if (a->flags & EMBER__NODE_REQUIRES_GRAD) {
        /* C = op(A) op(B): dA = G op(B)^T, transposed back when A was used transposed. */
        ember_node *ga;
        if (!ta) EMBER_TRY(matmul_node(g, go, b, 0, !tb, &ga));
        else EMBER_TRY(matmul_node(g, b, go, tb, 1, &ga));
        EMBER_TRY(sum_to(g, ga, a, &gin[0]));
    }
    if (b->flags & EMBER__NODE_REQUIRES_GRAD) {
        ember_node *gb;
        if (a->ndim == 3 && b->ndim == 2 && !ta) {
            /* Shared weight of a batched input (a Linear over (B, T, D)): one GEMM over
               the flattened batch instead of a batch of GEMMs then a sum. */
            ember_node *a2, *g2;
            EMBER_TRY(flatten3(g, a, &a2));
            EMBER_TRY(flatten3(g, go, &g2));
            if (!tb) EMBER_TRY(matmul_node(g, a2, g2, 1, 0, &gb));
            else EMBER_TRY(matmul_node(g, g2, a2, 1, 0, &gb));
        } else if (!tb) {
            EMBER_TRY(matmul_node(g, a, go, !ta, 0, &gb));
        } else {
            EMBER_TRY(matmul_node(g, go, a, 1, ta, &gb));
        }
        EMBER_TRY(sum_to(g, gb, b, &gin[1]));
    }
    return EMBER_OK;
}

/* ======================= layernorm ======================= */

static ember_status infer_layernorm(ember_node *n) {
    static const char op[] = "ember_op_layernorm";
    ember_node *x = n->src[0], *gm = n->src[1], *bt = n->src[2];
    EMBER_TRY(need_f32(op, x, "x"));
    EMBER_TRY(need_f32(op, gm, "gamma"));
    EMBER_TRY(need_f32(op, bt, "beta"));
    if (x->ndim < 1 || gm->ndim != 1 || bt->ndim != 1 || gm->shape[0] != x->shape[x->ndim - 1] ||
        bt->shape[0] != x->shape[x->ndim - 1]) {
        char a[128], b[128], c[128];
        return ember__error(EMBER_ERR_SHAPE, "%s: gamma %s and beta %s must be (D) for x %s", op,
                            desc(gm, b, sizeof b), desc(bt, c, sizeof c), desc(x, a, sizeof a));
    }
    copy_shape(n, x);
    return EMBER_OK;
}

static ember_status infer_ln_bwd_x(ember_node *n) { /* (x, gamma, g) */
    copy_shape(n, n->src[0]);
    return EMBER_OK;
}
static ember_status infer_ln_bwd_gamma(ember_node *n) { /* (x, g) -> (D) */
    set_shape(n, EMBER_DTYPE_F32, 1, &n->src[0]->shape[n->src[0]->ndim - 1]);
    return EMBER_OK;
}

static void row_stats(const float *r, int64_t d, float eps, double *mean, double *rstd) {
    double s = 0, ss = 0;
    for (int64_t j = 0; j < d; j++) s += r[j];
    double m = s / (double)d;
    for (int64_t j = 0; j < d; j++) ss += ((double)r[j] - m) * ((double)r[j] - m);
    *mean = m;
    *rstd = 1.0 / sqrt(ss / (double)d + (double)eps);
}

static ember_status k_layernorm(const ember__exec *x) {
    const float *in = CF(x->src[0]), *gm = CF(x->src[1]), *bt = CF(x->src[2]);
    float *o = F(x->out);
    int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
    float eps = x->n->fp[0];
#pragma omp parallel for if (rows >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double m, rs;
        row_stats(in + r * d, d, eps, &m, &rs);
        for (int64_t j = 0; j < d; j++) o[r * d + j] = (float)(((double)in[r * d + j] - m) * rs) * gm[j] + bt[j];
    }
    return EMBER_OK;
}

/* dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * gamma */
static ember_status k_ln_bwd_x(const ember__exec *x) {
    const float *in = CF(x->src[0]), *gm = CF(x->src[1]), *gr = CF(x->src[2]);
    float *o = F(x->out);
    int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
    float eps = x->n->fp[0];
#pragma omp parallel for if (rows >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double m, rs, s1 = 0, s2 = 0;
        const float *xr = in + r * d, *gr_r = gr + r * d;
        row_stats(xr, d, eps, &m, &rs);
        for (int64_t j = 0; j < d; j++) {
            double dxh = (double)gr_r[j] * gm[j], xh = ((double)xr[j] - m) * rs;
            s1 += dxh;
            s2 += dxh * xh;
        }
        s1 /= (double)d;
        s2 /= (double)d;
        for (int64_t j = 0; j < d; j++) {
            double dxh = (double)gr_r[j] * gm[j], xh = ((double)xr[j] - m) * rs;
            o[r * d + j] = (float)(rs * (dxh - s1 - xh * s2));
        }
    }
    return EMBER_OK;
}

static ember_status k_ln_bwd_gamma(const ember__exec *x) {
    const ember_node *xn = x->n->src[0];
    const float *in = CF(x->src[0]), *gr = CF(x->src[1]);
    float *o = F(x->out);
    int64_t d = xn->shape[xn->ndim - 1], rows = ember__node_numel(xn) / (d ? d : 1);
    float eps = x->n->fp[0];
    /* Columns in parallel, rows in order: deterministic sums. */
    double *acc = calloc((size_t)d, sizeof *acc);
    if (!acc && d) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "layernorm_bwd_gamma");
    for (int64_t r = 0; r < rows; r++) {
        double m, rs;
        row_stats(in + r * d, d, eps, &m, &rs);
        for (int64_t j = 0; j < d; j++) acc[j] += (double)gr[r * d + j] * (((double)in[r * d + j] - m) * rs);
    }
    for (int64_t j = 0; j < d; j++) o[j] = (float)acc[j];
    free(acc);
    return EMBER_OK;
}

static ember_status bwd_layernorm(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    ember_node *x = n->src[0];
    if (x->flags & EMBER__NODE_REQUIRES_GRAD) {
        ember_node *src[3] = {x, n->src[1], go};
        EMBER_TRY(ember__node_new(g, EMBER__OP_LAYERNORM_BWD_X, src, 3, NULL, 0, n->fp, 1, &gin[0]));
    }
    if (n->src[1]->flags & EMBER__NODE_REQUIRES_GRAD)
        EMBER_TRY(mkp(g, EMBER__OP_LAYERNORM_BWD_GAMMA, &gin[1], 2, x, go, NULL, 0, n->fp, 1));
    if (n->src[2]->flags & EMBER__NODE_REQUIRES_GRAD) EMBER_TRY(sum_to(g, go, n->src[2], &gin[2]));
    return EMBER_OK;
}

static double flops_layernorm(const ember_node *n) { return 8.0 * (double)ember__node_numel(n); }

/* ======================= softmax family ======================= */

static ember_status infer_lastdim(ember_node *n) {
    const char *op = ember__ops[n->op].name;
    EMBER_TRY(need_f32(op, n->src[0], "x"));
    if (n->src[0]->ndim < 1) return ember__error(EMBER_ERR_SHAPE, "%s: x must have at least one dim", op);
    copy_shape(n, n->src[0]);
    return EMBER_OK;
}

static ember_status softmax_rows(const ember__exec *x, int take_log) {
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
    int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
#pragma omp parallel for if (rows >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = in + r * d;
        float *orow = o + r * d;
        float mx = -INFINITY;
        for (int64_t j = 0; j < d; j++) mx = xr[j] > mx ? xr[j] : mx;
        if (mx == -INFINITY) mx = 0; /* a fully masked row */
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += exp((double)xr[j] - mx);
        if (take_log) {
            double lse = mx + log(s);
            for (int64_t j = 0; j < d; j++) orow[j] = (float)((double)xr[j] - lse);
        } else {
            for (int64_t j = 0; j < d; j++) orow[j] = (float)(exp((double)xr[j] - mx) / s);
        }
    }
    return EMBER_OK;
}
static ember_status k_softmax(const ember__exec *x) { return softmax_rows(x, 0); }
static ember_status k_log_softmax(const ember__exec *x) { return softmax_rows(x, 1); }

/* softmax: dx = y * (g - sum(g * y)); log_softmax: dx = g - exp(y) * sum(g) */
static ember_status softmax_bwd_rows(const ember__exec *x, int take_log) {
    const float *y = CF(x->src[0]), *gr = CF(x->src[1]);
    float *o = F(x->out);
    int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
#pragma omp parallel for if (rows >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * d, *gr_r = gr + r * d;
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += take_log ? (double)gr_r[j] : (double)gr_r[j] * yr[j];
        for (int64_t j = 0; j < d; j++)
            o[r * d + j] = take_log ? (float)((double)gr_r[j] - exp((double)yr[j]) * s) : (float)((double)yr[j] * ((double)gr_r[j] - s));
    }
    return EMBER_OK;
}
static ember_status k_softmax_bwd(const ember__exec *x) { return softmax_bwd_rows(x, 0); }
static ember_status k_log_softmax_bwd(const ember__exec *x) { return softmax_bwd_rows(x, 1); }

static ember_status bwd_softmax(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_SOFTMAX_BWD, &gin[0], 2, n, go, NULL);
}
static ember_status bwd_log_softmax(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_LOG_SOFTMAX_BWD, &gin[0], 2, n, go, NULL);
}
static double flops_softmax(const ember_node *n) { return 5.0 * (double)ember__node_numel(n); }

/* causal mask: positions j > i of the last two dims (i, j) become fp[0] (-inf forward, 0 backward). */
static ember_status infer_causal_mask(ember_node *n) {
    EMBER_TRY(need_f32("ember_op_causal_mask", n->src[0], "x"));
    if (n->src[0]->ndim < 2) return ember__error(EMBER_ERR_SHAPE, "ember_op_causal_mask: x needs 2 dims or more");
    copy_shape(n, n->src[0]);
    return EMBER_OK;
}

static ember_status k_causal_mask(const ember__exec *x) {
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
    int64_t t1 = x->n->shape[x->n->ndim - 2], t2 = x->n->shape[x->n->ndim - 1];
    int64_t rows = ember__node_numel(x->n) / (t2 ? t2 : 1);
    float fill = x->n->fp[0];
#pragma omp parallel for if (rows >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = r % (t1 ? t1 : 1);
        for (int64_t j = 0; j < t2; j++) o[r * t2 + j] = j > i ? fill : in[r * t2 + j];
    }
    return EMBER_OK;
}

static ember_status bwd_causal_mask(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    (void)n;
    return mkp(g, EMBER__OP_CAUSAL_MASK, &gin[0], 1, go, NULL, NULL, 0, (float[]){0.0f}, 1);
}

/* ======================= shape ops ======================= */

/* concat of up to 4 sources along ip[0] */
static ember_status infer_concat(ember_node *n) {
    static const char op[] = "ember_op_concat";
    ember_node *a = n->src[0];
    int dim = (int)n->ip[0];
    if (dim < 0) dim += a->ndim;
    if (dim < 0 || dim >= a->ndim)
        return ember__error(EMBER_ERR_INDEX, "%s: dim %d of a %d-dim input", op, (int)n->ip[0], a->ndim);
    n->ip[0] = dim;
    int64_t total = 0;
    for (int s = 0; s < n->nsrc; s++) {
        ember_node *b = n->src[s];
        EMBER_TRY(need_f32(op, b, "input"));
        int ok = b->ndim == a->ndim;
        for (int i = 0; ok && i < a->ndim; i++)
            if (i != dim && b->shape[i] != a->shape[i]) ok = 0;
        if (!ok) {
            char x[128], y[128];
            return ember__error(EMBER_ERR_SHAPE, "%s: input %d %s does not match input 0 %s outside dim %d", op, s,
                                desc(b, y, sizeof y), desc(a, x, sizeof x), dim);
        }
        total += b->shape[dim];
    }
    copy_shape(n, a);
    n->shape[dim] = total;
    return EMBER_OK;
}

/* (outer, dim, inner) block copies: one source at a time into its column range. */
static ember_status k_concat(const ember__exec *x) {
    int dim = (int)x->n->ip[0];
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= x->n->shape[i];
    for (int i = dim + 1; i < x->n->ndim; i++) inner *= x->n->shape[i];
    int64_t od = x->n->shape[dim], at = 0;
    float *o = F(x->out);
    for (int s = 0; s < x->n->nsrc; s++) {
        int64_t sd = x->n->src[s]->shape[dim];
        const float *in = CF(x->src[s]);
#pragma omp parallel for if (outer >= PAR_ROWS) schedule(static)
        for (int64_t r = 0; r < outer; r++)
            memcpy(o + (r * od + at) * inner, in + r * sd * inner, (size_t)(sd * inner) * sizeof *o);
        at += sd;
    }
    return EMBER_OK;
}

static ember_status bwd_concat(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    int64_t at = 0, dim = n->ip[0];
    for (int s = 0; s < n->nsrc; s++) {
        int64_t len = n->src[s]->shape[dim];
        if (n->src[s]->flags & EMBER__NODE_REQUIRES_GRAD)
            EMBER_TRY(mkp(g, EMBER__OP_SLICE, &gin[s], 1, go, NULL, (int64_t[]){dim, at, len}, 3, NULL, 0));
        at += len;
    }
    return EMBER_OK;
}

/* slice: ip = (dim, start, len) */
static ember_status infer_slice(ember_node *n) {
    static const char op[] = "ember_op_slice";
    ember_node *a = n->src[0];
    EMBER_TRY(need_f32(op, a, "x"));
    int dim = (int)n->ip[0];
    if (dim < 0) dim += a->ndim;
    if (dim < 0 || dim >= a->ndim)
        return ember__error(EMBER_ERR_INDEX, "%s: dim %d of a %d-dim input", op, (int)n->ip[0], a->ndim);
    int64_t start = n->ip[1], len = n->ip[2];
    if (start < 0 || len < 0 || start > a->shape[dim] || len > a->shape[dim] - start) {
        char x[128];
        return ember__error(EMBER_ERR_INDEX, "%s: [%lld, %lld) outside dim %d of %s", op, (long long)start,
                            (long long)(start + len), dim, desc(a, x, sizeof x));
    }
    n->ip[0] = dim;
    copy_shape(n, a);
    n->shape[dim] = len;
    return EMBER_OK;
}

static void block_dims(const ember_node *big, int dim, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < dim; i++) *outer *= big->shape[i];
    for (int i = dim + 1; i < big->ndim; i++) *inner *= big->shape[i];
}

static ember_status k_slice(const ember__exec *x) {
    const ember_node *a = x->n->src[0];
    int dim = (int)x->n->ip[0];
    int64_t outer, inner, start = x->n->ip[1], len = x->n->ip[2], ad = a->shape[dim];
    block_dims(a, dim, &outer, &inner);
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
#pragma omp parallel for if (outer >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < outer; r++)
        memcpy(o + r * len * inner, in + (r * ad + start) * inner, (size_t)(len * inner) * sizeof *o);
    return EMBER_OK;
}

static ember_status bwd_slice(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mkp(g, EMBER__OP_PAD, &gin[0], 1, go, NULL,
               (int64_t[]){n->ip[0], n->ip[1], n->src[0]->shape[n->ip[0]]}, 3, NULL, 0);
}

/* pad: the inverse of slice, zeros around; ip = (dim, start, full length) */
static ember_status infer_pad(ember_node *n) {
    copy_shape(n, n->src[0]);
    n->shape[n->ip[0]] = n->ip[2];
    return EMBER_OK;
}

static ember_status k_pad(const ember__exec *x) {
    const ember_node *small = x->n->src[0];
    int dim = (int)x->n->ip[0];
    int64_t outer, inner, start = x->n->ip[1], len = small->shape[dim], full = x->n->ip[2];
    block_dims(x->n, dim, &outer, &inner);
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
    memset(o, 0, ember__node_bytes(x->n));
    for (int64_t r = 0; r < outer; r++)
        memcpy(o + (r * full + start) * inner, in + r * len * inner, (size_t)(len * inner) * sizeof *o);
    return EMBER_OK;
}

/* reshape: ip = (ndim, dims...) with one -1 allowed */
static ember_status infer_reshape(ember_node *n) {
    static const char op[] = "ember_op_reshape";
    ember_node *a = n->src[0];
    int nd = (int)n->ip[0];
    if (nd < 0 || nd > EMBER_MAX_DIMS) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: ndim %d", op, nd);
    int64_t s[EMBER_MAX_DIMS], known = 1, total = ember__node_numel(a);
    int infer = -1;
    for (int i = 0; i < nd; i++) {
        s[i] = n->ip[1 + i];
        if (s[i] == -1 && infer < 0) infer = i;
        else if (s[i] < 0) return ember__error(EMBER_ERR_SHAPE, "%s: dim %d is %lld", op, i, (long long)s[i]);
        else known *= s[i];
    }
    if (infer >= 0) {
        if (!known || total % known)
            return ember__error(EMBER_ERR_SHAPE, "%s: cannot infer dim %d of %lld elements", op, infer, (long long)total);
        s[infer] = total / known;
        known = total;
    }
    if (known != total) {
        char x[128], y[96];
        return ember__error(EMBER_ERR_SHAPE, "%s: %s to %s changes the element count", op, desc(a, x, sizeof x),
                            ember__shape_str(nd, s, y, sizeof y));
    }
    set_shape(n, a->dtype, nd, s);
    return EMBER_OK;
}

static ember_status k_reshape(const ember__exec *x) {
    void *o = ember_tensor_data(x->out);
    const void *in = ember_tensor_data(x->src[0]);
    if (o != in) memcpy(o, in, ember__node_bytes(x->n)); /* in place when the input died here */
    return EMBER_OK;
}

static ember_status bwd_reshape(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    ember_node *a = n->src[0];
    int64_t ip[EMBER_MAX_DIMS + 1] = {a->ndim};
    for (int i = 0; i < a->ndim; i++) ip[1 + i] = a->shape[i];
    return mkp(g, EMBER__OP_RESHAPE, &gin[0], 1, go, NULL, ip, 1 + a->ndim, NULL, 0);
}

/* permute: ip = perm */
static ember_status infer_permute(ember_node *n) {
    static const char op[] = "ember_op_permute";
    ember_node *a = n->src[0];
    int seen[EMBER_MAX_DIMS] = {0};
    int64_t s[EMBER_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        int64_t p = n->ip[i];
        if (p < 0 || p >= a->ndim || seen[p])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: entry %d (%lld) is not a permutation of 0..%d", op,
                                i, (long long)p, a->ndim - 1);
        seen[p] = 1;
        s[i] = a->shape[p];
    }
    set_shape(n, a->dtype, a->ndim, s);
    return EMBER_OK;
}

static ember_status k_permute(const ember__exec *x) {
    int perm[EMBER_MAX_DIMS];
    for (int i = 0; i < x->n->ndim; i++) perm[i] = (int)x->n->ip[i];
    ember_tensor *v;
    EMBER_TRY(ember_tensor_permute(x->src[0], perm, &v));
    ember_status st = ember_tensor_copy(x->out, v);
    ember_tensor_destroy(v);
    return st;
}

static ember_status bwd_permute(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    int64_t inv[EMBER_MAX_DIMS];
    for (int i = 0; i < n->ndim; i++) inv[n->ip[i]] = i;
    return mkp(g, EMBER__OP_PERMUTE, &gin[0], 1, go, NULL, inv, n->ndim, NULL, 0);
}

/* ======================= gather / scatter rows ======================= */

static ember_status infer_gather(ember_node *n) {
    static const char op[] = "ember_op_gather_rows";
    ember_node *t = n->src[0], *idx = n->src[1];
    EMBER_TRY(need_f32(op, t, "table"));
    EMBER_TRY(need_index(op, idx, "idx"));
    if (t->ndim != 2 || idx->ndim < 1) {
        char a[128], b[128];
        return ember__error(EMBER_ERR_SHAPE, "%s: table %s must be (V, D), idx %s at least 1-D", op,
                            desc(t, a, sizeof a), desc(idx, b, sizeof b));
    }
    int64_t s[EMBER_MAX_DIMS];
    if (idx->ndim + 1 > EMBER_MAX_DIMS) return ember__error(EMBER_ERR_SHAPE, "%s: idx has too many dims", op);
    for (int i = 0; i < idx->ndim; i++) s[i] = idx->shape[i];
    s[idx->ndim] = t->shape[1];
    set_shape(n, EMBER_DTYPE_F32, idx->ndim + 1, s);
    return EMBER_OK;
}

static int64_t index_at(const ember_tensor *t, int64_t i) {
    return ember_tensor_dtype(t) == EMBER_DTYPE_I32 ? ((const int32_t *)ember_tensor_data(t))[i]
                                                    : ((const int64_t *)ember_tensor_data(t))[i];
}

static ember_status check_indices(const char *op, const ember_tensor *idx, int64_t rows) {
    int64_t n = ember_tensor_numel(idx);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = index_at(idx, i);
        if (r < 0 || r >= rows)
            return ember__error(EMBER_ERR_INDEX, "%s: index %lld at position %lld outside table rows [0, %lld)", op,
                                (long long)r, (long long)i, (long long)rows);
    }
    return EMBER_OK;
}

static ember_status k_gather(const ember__exec *x) {
    const ember_node *t = x->n->src[0];
    int64_t v = t->shape[0], d = t->shape[1], n = ember_tensor_numel(x->src[1]);
    EMBER_TRY(check_indices("gather_rows", x->src[1], v));
    const float *tab = CF(x->src[0]);
    float *o = F(x->out);
#pragma omp parallel for if (n >= PAR_ROWS) schedule(static)
    for (int64_t i = 0; i < n; i++) memcpy(o + i * d, tab + index_at(x->src[1], i) * d, (size_t)d * sizeof *o);
    return EMBER_OK;
}

static ember_status bwd_gather(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mkp(g, EMBER__OP_SCATTER_ROWS, &gin[0], 2, n->src[1], go, (int64_t[]){n->src[0]->shape[0]}, 1, NULL, 0);
}

/* scatter_rows(idx, g): (V, D) zeros with g's rows added at idx, in index order. */
static ember_status infer_scatter(ember_node *n) {
    ember_node *go = n->src[1];
    set_shape(n, EMBER_DTYPE_F32, 2, (int64_t[]){n->ip[0], go->shape[go->ndim - 1]});
    return EMBER_OK;
}

static ember_status k_scatter(const ember__exec *x) {
    int64_t v = x->n->shape[0], d = x->n->shape[1], n = ember_tensor_numel(x->src[0]);
    EMBER_TRY(check_indices("scatter_rows", x->src[0], v));
    const float *gr = CF(x->src[1]);
    float *o = F(x->out);
    memset(o, 0, ember__node_bytes(x->n));
    /* Columns split across threads; each column sums rows in index order: deterministic. */
#pragma omp parallel if (n * d >= 32768)
    {
        int64_t c0 = 0, c1 = d;
#ifdef _OPENMP
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        c0 = d * t / nt;
        c1 = d * (t + 1) / nt;
#endif
        for (int64_t i = 0; i < n; i++) {
            float *row = o + index_at(x->src[0], i) * d;
            const float *gi = gr + i * d;
            for (int64_t c = c0; c < c1; c++) row[c] += gi[c];
        }
    }
    return EMBER_OK;
}

/* ======================= DLRM interaction ======================= */

/* ip[0] = 1: with the diagonal. Pairs (i, j), j < i (j <= i with the diagonal), row by
   row; pair (i, j) sits at i (i - 1) / 2 + j (i (i + 1) / 2 + j with the diagonal). */
static int64_t interaction_pairs(int64_t f, int64_t self) { return self ? f * (f + 1) / 2 : f * (f - 1) / 2; }

static ember_status infer_interaction(ember_node *n) {
    static const char op[] = "ember_op_interaction";
    ember_node *t = n->src[0];
    EMBER_TRY(need_f32(op, t, "t"));
    if (t->ndim != 3) {
        char a[128];
        return ember__error(EMBER_ERR_SHAPE, "%s: t %s must be (B, n, D)", op, desc(t, a, sizeof a));
    }
    set_shape(n, EMBER_DTYPE_F32, 2, (int64_t[]){t->shape[0], interaction_pairs(t->shape[1], n->ip[0])});
    return EMBER_OK;
}

/* A multiply and an add per pair and feature: forward once, backward twice (both rows). */
static double flops_interaction(const ember_node *n) {
    const ember_node *t = n->src[0];
    return 2.0 * (double)t->shape[0] * (double)interaction_pairs(t->shape[1], n->ip[0]) * (double)t->shape[2];
}

static double flops_interaction_bwd(const ember_node *n) { return 2.0 * flops_interaction(n); }

/* One sample's pairs, dot products in the lane order of engine/lanes.h (the CUDA kernel
   uses the same function). Compiled for the best vector unit the CPU has; the order,
   and so the result, is the same for every one of them. */
/* Four of row i's dot products at once, each in the lane order of ember__dot_lanes: the
   16 lanes of each are summed over d in the same order, and the four trees are folded
   together (lane l + lane l + 8 for all four in two vector adds, then + 4, + 2, + 1):
   the same additions on the same operands. d is a multiple of 16. */
__attribute__((always_inline)) static inline void dot4_lanes(float *out, const float *ti, const float *t0, int64_t d) {
    typedef float v16 __attribute__((vector_size(64)));
    typedef float v8 __attribute__((vector_size(32)));
    typedef float v4 __attribute__((vector_size(16)));
    v16 a = {0}, b = {0}, c = {0}, e = {0}, x, y0, y1, y2, y3;
    for (int64_t q = 0; q < d; q += 16) {
        memcpy(&x, ti + q, sizeof x);
        memcpy(&y0, t0 + q, sizeof x);
        memcpy(&y1, t0 + d + q, sizeof x);
        memcpy(&y2, t0 + 2 * d + q, sizeof x);
        memcpy(&y3, t0 + 3 * d + q, sizeof x);
        a = a + x * y0;
        b = b + x * y1;
        c = c + x * y2;
        e = e + x * y3;
    }
    v16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
             __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    v16 ce = __builtin_shufflevector(c, e, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
             __builtin_shufflevector(c, e, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    v16 qq = __builtin_shufflevector(ab, ce, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
             __builtin_shufflevector(ab, ce, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    v8 pp = __builtin_shufflevector(qq, qq, 0, 1, 4, 5, 8, 9, 12, 13) +
            __builtin_shufflevector(qq, qq, 2, 3, 6, 7, 10, 11, 14, 15);
    v4 r = __builtin_shufflevector(pp, pp, 0, 2, 4, 6) + __builtin_shufflevector(pp, pp, 1, 3, 5, 7);
    memcpy(out, &r, sizeof r);
}

EMBER_VECTOR_CLONES static void interaction_sample(float *os, const float *ts, int64_t f, int64_t d, int64_t self) {
    int64_t k = 0;
    for (int64_t i = 1 - self; i < f; i++) {
        int64_t j = 0;
        if (d % 16 == 0)
            for (; j + 4 <= i + self; j += 4, k += 4) dot4_lanes(os + k, ts + i * d, ts + j * d, d);
        for (; j < i + self; j++) os[k++] = ember__dot_lanes(ts + i * d, ts + j * d, d);
    }
}

static ember_status k_interaction(const ember__exec *x) {
    const ember_node *t = x->n->src[0];
    int64_t b = t->shape[0], f = t->shape[1], d = t->shape[2], p = x->n->shape[1], self = x->n->ip[0] != 0;
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
#pragma omp parallel for if (b >= PAR_ROWS) schedule(static)
    for (int64_t s = 0; s < b; s++) interaction_sample(o + s * p, in + s * f * d, f, d, self);
    return EMBER_OK;
}

/* dT_i = sum_{j<i} g_ij T_j + sum_{k>i} g_ki T_k (+ 2 g_ii T_i with the diagonal, added
   as two terms: the pair (i, i) feeds both of its rows, which are the same row). */
/* One sample, a row of dT at a time: row i's sum runs over j = 0 .. f-1 in order (the
   diagonal's two terms at j = i), in registers, 64 columns at a time. That is the order
   in which a loop over the pairs adds into row i, so the bits are those of the
   pairwise form (and of the CUDA kernel), at a third of the loads and stores. Products
   and sums are rounded separately (no contraction), element-wise over c: every vector
   width gives the same bits. */
/* Rows [r0, r1) of one sample's dT, row r at os + (r - r0) d. */
EMBER_VECTOR_CLONES static void interaction_bwd_rows(float *os, const float *ts, const float *gs, int64_t f, int64_t d,
                                                     int64_t self, float *gcol, int64_t r0, int64_t r1) {
    typedef float v16 __attribute__((vector_size(64)));
    for (int64_t i = r0; i < r1; i++) {
        /* row i's pair gradients in j order: pairs (i, j <= i) are contiguous in row i of
           the triangle, pairs (j > i, i) one per later row */
        int64_t base = self ? i * (i + 1) / 2 : i * (i - 1) / 2;
        for (int64_t j = 0; j < i + self; j++) gcol[j] = gs[base + j];
        base += i + self; /* the start of row i + 1 */
        for (int64_t j = i + 1; j < f; j++) {
            gcol[j] = gs[base + i];
            base += j + self;
        }
        float *o = os + (i - r0) * d;
        int64_t c0 = 0;
        for (; c0 + 64 <= d; c0 += 64) {
            v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, x0, x1, x2, x3;
            for (int64_t j = 0; j < f; j++) {
                if (j == i && !self) continue;
                const float *tj = ts + j * d + c0;
                float gv = gcol[j];
                memcpy(&x0, tj, sizeof x0);
                memcpy(&x1, tj + 16, sizeof x1);
                memcpy(&x2, tj + 32, sizeof x2);
                memcpy(&x3, tj + 48, sizeof x3);
                a0 = a0 + gv * x0;
                a1 = a1 + gv * x1;
                a2 = a2 + gv * x2;
                a3 = a3 + gv * x3;
                if (j == i) { /* the diagonal's second term */
                    a0 = a0 + gv * x0;
                    a1 = a1 + gv * x1;
                    a2 = a2 + gv * x2;
                    a3 = a3 + gv * x3;
                }
            }
            memcpy(o + c0, &a0, sizeof a0);
            memcpy(o + c0 + 16, &a1, sizeof a1);
            memcpy(o + c0 + 32, &a2, sizeof a2);
            memcpy(o + c0 + 48, &a3, sizeof a3);
        }
        for (; c0 + 16 <= d; c0 += 16) {
            v16 a0 = {0}, x0;
            for (int64_t j = 0; j < f; j++) {
                if (j == i && !self) continue;
                float gv = gcol[j];
                memcpy(&x0, ts + j * d + c0, sizeof x0);
                a0 = a0 + gv * x0;
                if (j == i) a0 = a0 + gv * x0;
            }
            memcpy(o + c0, &a0, sizeof a0);
        }
        /* the last columns (under 16): the same sums, in the output row */
        if (c0 < d) {
            for (int64_t c = c0; c < d; c++) o[c] = 0.0f;
            for (int64_t j = 0; j < f; j++) {
                if (j == i && !self) continue;
                const float *tj = ts + j * d;
                float gv = gcol[j];
                for (int rep = 0; rep < 1 + (j == i); rep++)
                    for (int64_t c = c0; c < d; c++) o[c] = o[c] + gv * tj[c];
            }
        }
    }
}

/* Per-thread scratch of `floats` each, on cache lines of their own: NULL and an error
   when it cannot be had. *nt: the threads the caller's parallel region must use. */
static float *thread_scratch(int64_t floats, int64_t rows, int *nt, int64_t *stride, const char *what) {
    *nt = 1;
#ifdef _OPENMP
    *nt = rows >= PAR_ROWS ? omp_get_max_threads() : 1;
#endif
    *stride = (floats + 15) / 16 * 16 + 16;
    float *p = malloc((size_t)(*stride * *nt) * sizeof *p);
    if (!p) ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %lld floats of scratch", what, (long long)(*stride * *nt));
    return p;
}

static float *my_scratch(float *base, int64_t stride) {
#ifdef _OPENMP
    return base + (int64_t)omp_get_thread_num() * stride;
#else
    (void)stride;
    return base;
#endif
}

static ember_status k_interaction_bwd(const ember__exec *x) {
    const ember_node *t = x->n->src[0];
    int64_t b = t->shape[0], f = t->shape[1], d = t->shape[2], self = x->n->ip[0] != 0;
    int64_t p = interaction_pairs(f, self), stride;
    const float *in = CF(x->src[0]), *gr = CF(x->src[1]);
    float *o = F(x->out);
    int nt;
    float *scratch = thread_scratch(f, b, &nt, &stride, "interaction backward"); /* a row of pair gradients */
    if (!scratch) return EMBER_ERR_OUT_OF_MEMORY;
#pragma omp parallel num_threads(nt)
    {
        float *gcol = my_scratch(scratch, stride);
#pragma omp for schedule(static)
        for (int64_t s = 0; s < b; s++)
            interaction_bwd_rows(o + s * f * d, in + s * f * d, gr + s * p, f, d, self, gcol, 0, f);
    }
    free(scratch);
    return EMBER_OK;
}

static ember_status infer_first(ember_node *n) {
    copy_shape(n, n->src[0]);
    return EMBER_OK;
}

static ember_status bwd_interaction(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mkp(g, EMBER__OP_INTERACTION_BWD, &gin[0], 2, n->src[0], go, n->ip, 1, NULL, 0);
}

/* ======================= DLRM dot interaction over [z | e] ======================= */

/*
 * ip[0] = self. z (B, d) and e (B, T d): a sample's vectors are z and e's T rows of d.
 * out (B, d + pairs(T + 1)) = [z | the interaction of those T + 1 vectors]: the
 * reference DLRM's two concatenations ([z, e] into the interaction, [z, pairs] out of
 * it) without writing either to memory. A sample's T + 1 vectors are gathered into a
 * per-thread scratch of (T + 1) d floats (L1) and go through the interaction's own
 * kernels, so the bits are those of concat + interaction + concat. The backward is two
 * nodes, one per input (ip[1] = 0: z, 1: e), each computing its rows of dT; z's adds
 * the gradient of its copy in the output: dz = g[:, :d] + dT_0, the same single add
 * the unfused graph makes of its two paths into z.
 */
static ember_status infer_interaction_cat(ember_node *n) {
    static const char op[] = "ember_op_dot_interaction";
    ember_node *z = n->src[0], *e = n->src[1];
    EMBER_TRY(need_f32(op, z, "z"));
    EMBER_TRY(need_f32(op, e, "e"));
    if (z->ndim != 2 || e->ndim != 2 || z->shape[0] != e->shape[0] || z->shape[1] < 1 || e->shape[1] < 1 ||
        e->shape[1] % z->shape[1]) {
        char a[128], b[128];
        return ember__error(EMBER_ERR_SHAPE, "%s: z %s must be (B, D) and e %s (B, T D)", op, desc(z, a, sizeof a),
                            desc(e, b, sizeof b));
    }
    int64_t d = z->shape[1], f = e->shape[1] / d + 1;
    set_shape(n, EMBER_DTYPE_F32, 2, (int64_t[]){z->shape[0], d + interaction_pairs(f, n->ip[0])});
    return EMBER_OK;
}

static double flops_interaction_cat(const ember_node *n) {
    const ember_node *z = n->src[0];
    int64_t d = z->shape[1], f = n->src[1]->shape[1] / d + 1;
    return 2.0 * (double)z->shape[0] * (double)interaction_pairs(f, n->ip[0]) * (double)d;
}

static double flops_interaction_cat_bwd(const ember_node *n) {
    const ember_node *z = n->src[0];
    int64_t d = z->shape[1], f = n->src[1]->shape[1] / d + 1;
    return 2.0 * (double)z->shape[0] * (double)f * (double)(n->ip[1] ? f - 1 : 1) * (double)d;
}

static ember_status infer_interaction_cat_bwd(ember_node *n) {
    copy_shape(n, n->src[n->ip[1] ? 1 : 0]);
    return EMBER_OK;
}

/* Sample s's T + 1 vectors, side by side. */
static void cat_rows(float *ts, const float *z, const float *e, int64_t s, int64_t f, int64_t d) {
    memcpy(ts, z + s * d, (size_t)d * sizeof *ts);
    memcpy(ts + d, e + s * (f - 1) * d, (size_t)((f - 1) * d) * sizeof *ts);
}

static ember_status k_interaction_cat(const ember__exec *x) {
    const ember_node *z = x->n->src[0];
    int64_t b = z->shape[0], d = z->shape[1], f = x->n->src[1]->shape[1] / d + 1, w = x->n->shape[1], stride;
    int64_t self = x->n->ip[0] != 0;
    const float *zp = CF(x->src[0]), *ep = CF(x->src[1]);
    float *o = F(x->out);
    int nt;
    float *scratch = thread_scratch(f * d, b, &nt, &stride, "dot interaction");
    if (!scratch) return EMBER_ERR_OUT_OF_MEMORY;
#pragma omp parallel num_threads(nt)
    {
        float *ts = my_scratch(scratch, stride);
#pragma omp for schedule(static)
        for (int64_t s = 0; s < b; s++) {
            cat_rows(ts, zp, ep, s, f, d);
            memcpy(o + s * w, ts, (size_t)d * sizeof *o);
            interaction_sample(o + s * w + d, ts, f, d, self);
        }
    }
    free(scratch);
    return EMBER_OK;
}

/* Row 0 of a sample's dT (z's), reading z and e in place: the terms in
   interaction_bwd_rows' order for row 0 (the diagonal's two, then pairs (j, 0), j >= 1),
   element-wise over c, so the same bits without gathering the sample. */
EMBER_VECTOR_CLONES static void interaction_bwd_row0(float *o, const float *zs, const float *es, const float *gs,
                                                     int64_t f, int64_t d, int64_t self) {
    for (int64_t c = 0; c < d; c++) o[c] = 0.0f;
    if (self)
        for (int rep = 0; rep < 2; rep++)
            for (int64_t c = 0; c < d; c++) o[c] = o[c] + gs[0] * zs[c];
    for (int64_t j = 1; j < f; j++) {
        float gv = gs[j * (j - 1 + 2 * self) / 2]; /* pair (j, 0): the first of row j */
        const float *ej = es + (j - 1) * d;
        for (int64_t c = 0; c < d; c++) o[c] = o[c] + gv * ej[c];
    }
}

static ember_status k_interaction_cat_bwd(const ember__exec *x) {
    const ember_node *z = x->n->src[0];
    int64_t b = z->shape[0], d = z->shape[1], f = x->n->src[1]->shape[1] / d + 1, stride;
    int64_t self = x->n->ip[0] != 0, w = d + interaction_pairs(f, self);
    int for_e = x->n->ip[1] != 0;
    const float *zp = CF(x->src[0]), *ep = CF(x->src[1]), *go = CF(x->src[2]);
    float *o = F(x->out);
    int nt;
    /* the sample's vectors, a row of pair gradients, and z's row of dT */
    int64_t fpad = (f + 15) / 16 * 16;
    float *scratch = thread_scratch(f * d + fpad + d, b, &nt, &stride, "dot interaction backward");
    if (!scratch) return EMBER_ERR_OUT_OF_MEMORY;
#pragma omp parallel num_threads(nt)
    {
        float *ts = my_scratch(scratch, stride), *gcol = ts + f * d, *row = gcol + fpad;
#pragma omp for schedule(static)
        for (int64_t s = 0; s < b; s++) {
            const float *gs = go + s * w;
            if (for_e) {
                cat_rows(ts, zp, ep, s, f, d);
                interaction_bwd_rows(o + s * (f - 1) * d, ts, gs + d, f, d, self, gcol, 1, f);
            } else {
                interaction_bwd_row0(row, zp + s * d, ep + s * (f - 1) * d, gs + d, f, d, self);
                for (int64_t c = 0; c < d; c++) o[s * d + c] = gs[c] + row[c];
            }
        }
    }
    free(scratch);
    return EMBER_OK;
}

static ember_status bwd_interaction_cat(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    for (int which = 0; which < 2; which++) {
        if (!(n->src[which]->flags & EMBER__NODE_REQUIRES_GRAD)) continue;
        ember_node *src[3] = {n->src[0], n->src[1], go};
        EMBER_TRY(ember__node_new(g, EMBER__OP_INTERACTION_CAT_BWD, src, 3, (int64_t[]){n->ip[0], which}, 2, NULL, 0,
                                  &gin[which]));
    }
    return EMBER_OK;
}

/* ======================= dropout ======================= */

/* ip[0]: first Philox word of this node's mask within a step; fp[0]: p. */
static ember_status k_dropout(const ember__exec *x) {
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
    int64_t n = ember_tensor_numel(x->out);
    float p = x->n->fp[0];
    if (!x->g->training || p == 0.0f) {
        if (o != in) memcpy(o, in, (size_t)n * sizeof *o);
        return EMBER_OK;
    }
    float keep_scale = 1.0f / (1.0f - p);
    uint64_t base = (x->g->step - 1) * x->g->rng_words + (uint64_t)x->n->ip[0];
    uint64_t seed = x->g->p.seed;
#pragma omp parallel for if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t w = base + (uint64_t)i;
        float u = ember__u32_to_unit(ember__philox_block(seed, w >> 2).v[w & 3]);
        o[i] = u >= p ? in[i] * keep_scale : 0.0f;
    }
    return EMBER_OK;
}

static ember_status bwd_dropout(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    /* The same mask: same word offset, same step. */
    return mkp(g, EMBER__OP_DROPOUT, &gin[0], 1, go, NULL, n->ip, 1, n->fp, 1);
}

/* ======================= reductions and losses ======================= */

/* sum over the last ip[0] dims (0: all), times fp[0] (1 for sum, 1/count for mean) */
static ember_status infer_sum(ember_node *n) {
    static const char op[] = "ember_op_sum";
    ember_node *a = n->src[0];
    EMBER_TRY(need_f32(op, a, "x"));
    int axes = (int)n->ip[0];
    if (axes < 0 || axes > a->ndim)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %d axes of a %d-dim input", op, axes, a->ndim);
    if (axes == 0) axes = a->ndim;
    n->ip[0] = axes;
    set_shape(n, EMBER_DTYPE_F32, a->ndim - axes, a->shape);
    return EMBER_OK;
}

static ember_status k_sum(const ember__exec *x) {
    EMBER_TRY(ember_reduce(EMBER_REDUCE_SUM, x->out, x->src[0], (int)x->n->ip[0]));
    if (x->n->fp[0] != 1.0f) EMBER_TRY(ember_scale(x->out, x->out, x->n->fp[0], 0.0));
    return EMBER_OK;
}

static ember_status bwd_sum(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    ember_node *a = n->src[0];
    int64_t ip[EMBER_MAX_DIMS + 1] = {a->ndim};
    for (int i = 0; i < a->ndim; i++) ip[1 + i] = a->shape[i];
    return mkp(g, EMBER__OP_EXPAND, &gin[0], 1, go, NULL, ip, 1 + a->ndim, n->fp, 1);
}

/* expand(g): g (outer...) broadcast over trailing dims to ip's shape, times fp[0] */
static ember_status infer_expand(ember_node *n) {
    int64_t s[EMBER_MAX_DIMS];
    for (int i = 0; i < n->ip[0]; i++) s[i] = n->ip[1 + i];
    set_shape(n, EMBER_DTYPE_F32, (int)n->ip[0], s);
    return EMBER_OK;
}

static ember_status k_expand(const ember__exec *x) {
    int64_t outer = ember_tensor_numel(x->src[0]), total = ember__node_numel(x->n);
    int64_t inner = outer ? total / outer : 0;
    const float *in = CF(x->src[0]);
    float *o = F(x->out), sc = x->n->fp[0];
#pragma omp parallel for if (outer >= PAR_ROWS) schedule(static)
    for (int64_t r = 0; r < outer; r++)
        for (int64_t j = 0; j < inner; j++) o[r * inner + j] = in[r] * sc;
    return EMBER_OK;
}

/* sum_to: reduce the leading dims of g down to ip's (trailing) shape; deterministic. */
static ember_status infer_sum_to(ember_node *n) {
    int64_t s[EMBER_MAX_DIMS];
    for (int i = 0; i < n->ip[0]; i++) s[i] = n->ip[1 + i];
    set_shape(n, EMBER_DTYPE_F32, (int)n->ip[0], s);
    return EMBER_OK;
}

/* Column sums over fixed blocks of rows (in parallel), then the blocks in order: a
   cache-friendly sweep whose result does not depend on the thread count. */
#define SUM_TO_ROWS 64
static ember_status k_sum_to(const ember__exec *x) {
    int64_t inner = ember__node_numel(x->n), total = ember_tensor_numel(x->src[0]);
    int64_t rows = inner ? total / inner : 0, nblk = (rows + SUM_TO_ROWS - 1) / SUM_TO_ROWS;
    const float *in = CF(x->src[0]);
    float *o = F(x->out);
    if (nblk <= 1) {
        for (int64_t c = 0; c < inner; c++) {
            double acc = 0;
            for (int64_t r = 0; r < rows; r++) acc += in[r * inner + c];
            o[c] = (float)acc;
        }
        return EMBER_OK;
    }
    double *part;
    EMBER_TRY(ember_memory_alloc(x->g->mm, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)(nblk * inner) * sizeof *part,
                                 (void **)&part));
#pragma omp parallel for if (total >= 32768) schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        double *pb = part + b * inner;
        int64_t r1 = (b + 1) * SUM_TO_ROWS < rows ? (b + 1) * SUM_TO_ROWS : rows;
        for (int64_t c = 0; c < inner; c++) pb[c] = 0;
        for (int64_t r = b * SUM_TO_ROWS; r < r1; r++) {
            const float *row = in + r * inner;
            for (int64_t c = 0; c < inner; c++) pb[c] += row[c];
        }
    }
    for (int64_t c = 0; c < inner; c++) {
        double acc = 0;
        for (int64_t b = 0; b < nblk; b++) acc += part[b * inner + c];
        o[c] = (float)acc;
    }
    ember_memory_free(x->g->mm, part);
    return EMBER_OK;
}

/* fill: a constant of the node's shape (gradient seeds, unused leaves) */
static ember_status infer_fill(ember_node *n) {
    set_shape(n, EMBER_DTYPE_F32, 0, NULL);
    return EMBER_OK;
}
static ember_status k_fill(const ember__exec *x) { return ember_tensor_fill(x->out, x->n->fp[0]); }

static ember_status infer_loss(ember_node *n) {
    const char *op = ember__ops[n->op].name;
    ember_node *lg = n->src[0], *lb = n->src[1];
    EMBER_TRY(need_f32(op, lg, "logits"));
    char a[128], b[128];
    if (n->op == EMBER__OP_BCE_WITH_LOGITS || n->op == EMBER__OP_BCE_BWD) {
        EMBER_TRY(need_f32(op, lb, "labels"));
        if (ember__node_numel(lg) != ember__node_numel(lb))
            return ember__error(EMBER_ERR_SHAPE, "%s: logits %s and labels %s differ in size", op,
                                desc(lg, a, sizeof a), desc(lb, b, sizeof b));
    } else {
        EMBER_TRY(need_index(op, lb, "labels"));
        if (lg->ndim != 2 || ember__node_numel(lb) != lg->shape[0])
            return ember__error(EMBER_ERR_SHAPE, "%s: logits %s must be (N, C) with labels (N), not %s", op,
                                desc(lg, a, sizeof a), desc(lb, b, sizeof b));
    }
    if (n->op == EMBER__OP_BCE_BWD || n->op == EMBER__OP_SOFTMAX_CE_BWD) copy_shape(n, lg);
    else set_shape(n, EMBER_DTYPE_F32, 0, NULL);
    return EMBER_OK;
}

/* mean of max(x, 0) - x y + log(1 + exp(-|x|)): the stable form torch uses */
static ember_status k_bce(const ember__exec *x) {
    const float *lg = CF(x->src[0]), *lb = CF(x->src[1]);
    int64_t n = ember_tensor_numel(x->src[0]);
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = lg[i];
        acc += (v > 0 ? v : 0) - v * lb[i] + log1p(exp(-fabs(v)));
    }
    F(x->out)[0] = (float)(n ? acc / (double)n : 0);
    return EMBER_OK;
}

static ember_status k_bce_bwd(const ember__exec *x) {
    const float *lg = CF(x->src[0]), *lb = CF(x->src[1]);
    float gsc = CF(x->src[2])[0];
    int64_t n = ember_tensor_numel(x->src[0]);
    float *o = F(x->out), inv = n ? gsc / (float)n : 0.0f;
    for (int64_t i = 0; i < n; i++) o[i] = (1.0f / (1.0f + expf(-lg[i])) - lb[i]) * inv;
    return EMBER_OK;
}

static ember_status bwd_bce(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_BCE_BWD, &gin[0], 3, n->src[0], n->src[1], go);
}

/* Every label in [0, C), checked before anything is written. */
static ember_status check_labels(const ember__exec *x, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; r++) {
        int64_t y = index_at(x->src[1], r);
        if (y < 0 || y >= c)
            return ember__error(EMBER_ERR_INDEX, "softmax_cross_entropy: label %lld of row %lld outside [0, %lld)",
                                (long long)y, (long long)r, (long long)c);
    }
    return EMBER_OK;
}

/* The row's max and sum of exp(x - max), in double. */
static void row_lse(const float *lr, int64_t c, double *mx, double *s) {
    double m = -INFINITY, acc = 0;
    for (int64_t j = 0; j < c; j++) m = lr[j] > m ? lr[j] : m;
    for (int64_t j = 0; j < c; j++) acc += exp(lr[j] - m);
    *mx = m;
    *s = acc;
}

static ember_status k_ce(const ember__exec *x) {
    const ember_node *lgn = x->n->src[0];
    int64_t rows = lgn->shape[0], c = lgn->shape[1];
    const float *lg = CF(x->src[0]);
    EMBER_TRY(check_labels(x, rows, c));
    double acc = 0;
    for (int64_t r = 0; r < rows; r++) {
        double mx, s;
        row_lse(lg + r * c, c, &mx, &s);
        acc += mx + log(s) - lg[r * c + index_at(x->src[1], r)];
    }
    F(x->out)[0] = (float)(rows ? acc / (double)rows : 0);
    return EMBER_OK;
}

static ember_status k_ce_bwd(const ember__exec *x) {
    const ember_node *lgn = x->n->src[0];
    int64_t rows = lgn->shape[0], c = lgn->shape[1];
    const float *lg = CF(x->src[0]);
    float gsc = CF(x->src[2])[0];
    float *o = F(x->out);
    EMBER_TRY(check_labels(x, rows, c));
    for (int64_t r = 0; r < rows; r++) {
        const float *lr = lg + r * c;
        int64_t y = index_at(x->src[1], r);
        double mx, s;
        row_lse(lr, c, &mx, &s);
        for (int64_t j = 0; j < c; j++)
            o[r * c + j] = (float)((exp(lr[j] - mx) / s - (j == y ? 1.0 : 0.0)) * gsc / (double)rows);
    }
    return EMBER_OK;
}

static ember_status bwd_ce(ember_graph *g, ember_node *n, ember_node *go, ember_node **gin) {
    return mk(g, EMBER__OP_SOFTMAX_CE_BWD, &gin[0], 3, n->src[0], n->src[1], go);
}

static double flops_loss(const ember_node *n) { return 6.0 * (double)ember__node_numel(n->src[0]); }

static ember_status infer_leaf(ember_node *n) {
    (void)n;
    return EMBER_OK;
}

/* ======================= registry ======================= */

#define CPU(k) {[EMBER_DEVICE_CPU] = (k)}

const ember__op_def ember__ops[EMBER__OP_COUNT] = {
    [EMBER__OP_INPUT] = {"input", 0, infer_leaf, NULL, NULL, -1, NULL, {0}},
    [EMBER__OP_PARAM] = {"param", 0, infer_leaf, NULL, NULL, -1, NULL, {0}},
    [EMBER__OP_MATMUL] = {"matmul", 0, infer_matmul, bwd_matmul, flops_matmul, -1, NULL, CPU(k_matmul)},
    [EMBER__OP_ADD] = {"add", 0, infer_binary, bwd_add, numel_flops, 0, NULL, CPU(k_add)},
    [EMBER__OP_MUL] = {"mul", 0, infer_binary, bwd_mul, numel_flops, 0, NULL, CPU(k_mul)},
    [EMBER__OP_SCALE] = {"scale", 0, infer_same_f32, bwd_scale, numel_flops, 0, NULL, CPU(k_scale)},
    [EMBER__OP_RELU] = {"relu", 0, infer_same_f32, bwd_relu, numel_flops, 0, NULL, CPU(k_relu)},
    [EMBER__OP_SIGMOID] = {"sigmoid", 0, infer_same_f32, bwd_sigmoid, flops_softmax, 0, NULL, CPU(k_sigmoid)},
    [EMBER__OP_TANH] = {"tanh", 0, infer_same_f32, bwd_tanh, flops_softmax, 0, NULL, CPU(k_tanh)},
    [EMBER__OP_GELU] = {"gelu", 0, infer_same_f32, bwd_gelu, flops_gelu, -1, NULL, CPU(k_gelu)},
    [EMBER__OP_LAYERNORM] = {"layernorm", 0, infer_layernorm, bwd_layernorm, flops_layernorm, -1, NULL,
                             CPU(k_layernorm)},
    [EMBER__OP_SOFTMAX] = {"softmax", 0, infer_lastdim, bwd_softmax, flops_softmax, 0, NULL, CPU(k_softmax)},
    [EMBER__OP_LOG_SOFTMAX] = {"log_softmax", 0, infer_lastdim, bwd_log_softmax, flops_softmax, 0, NULL,
                               CPU(k_log_softmax)},
    [EMBER__OP_CAUSAL_MASK] = {"causal_mask", 0, infer_causal_mask, bwd_causal_mask, numel_flops, 0, NULL,
                               CPU(k_causal_mask)},
    [EMBER__OP_CONCAT] = {"concat", 0, infer_concat, bwd_concat, NULL, -1, NULL, CPU(k_concat)},
    [EMBER__OP_SLICE] = {"slice", 0, infer_slice, bwd_slice, NULL, -1, NULL, CPU(k_slice)},
    [EMBER__OP_RESHAPE] = {"reshape", 0, infer_reshape, bwd_reshape, NULL, 0, NULL, CPU(k_reshape)},
    [EMBER__OP_PERMUTE] = {"permute", 0, infer_permute, bwd_permute, NULL, -1, NULL, CPU(k_permute)},
    [EMBER__OP_GATHER_ROWS] = {"gather_rows", 0, infer_gather, bwd_gather, NULL, -1, NULL, CPU(k_gather)},
    [EMBER__OP_INTERACTION] = {"interaction", 0, infer_interaction, bwd_interaction, flops_interaction, -1, NULL,
                               CPU(k_interaction)},
    [EMBER__OP_INTERACTION_CAT] = {"dot_interaction", 0, infer_interaction_cat, bwd_interaction_cat,
                                   flops_interaction_cat, -1, NULL, CPU(k_interaction_cat)},
    [EMBER__OP_DROPOUT] = {"dropout", 0, infer_same_f32, bwd_dropout, numel_flops, 0, NULL, CPU(k_dropout)},
    [EMBER__OP_SUM] = {"sum", 0, infer_sum, bwd_sum, NULL, -1, NULL, CPU(k_sum)},
    [EMBER__OP_BCE_WITH_LOGITS] = {"bce_with_logits", 0, infer_loss, bwd_bce, flops_loss, -1, NULL, CPU(k_bce)},
    [EMBER__OP_SOFTMAX_CE] = {"softmax_cross_entropy", 0, infer_loss, bwd_ce, flops_loss, -1, NULL, CPU(k_ce)},
    [EMBER__OP_EMBEDDING_BAG] = {"embedding_bag", 0, ember__ebc_infer, ember__ebc_backward, ember__ebc_flops, -1,
                                 NULL, CPU(ember__ebc_forward_kernel)},
    [EMBER__OP_EMBEDDING_BAG_UPDATE] = {"embedding_bag_update", 1, ember__ebc_update_infer, NULL, ember__ebc_flops,
                                        -1, NULL, CPU(ember__ebc_update_kernel)},
    [EMBER__OP_FILL] = {"fill", 1, infer_fill, NULL, NULL, -1, NULL, CPU(k_fill)},
    [EMBER__OP_EXPAND] = {"expand", 1, infer_expand, NULL, numel_flops, -1, NULL, CPU(k_expand)},
    [EMBER__OP_SUM_TO] = {"sum_to", 1, infer_sum_to, NULL, NULL, -1, NULL, CPU(k_sum_to)},
    [EMBER__OP_PAD] = {"pad", 1, infer_pad, NULL, NULL, -1, NULL, CPU(k_pad)},
    [EMBER__OP_RELU_BWD] = {"relu_bwd", 1, infer_pair, NULL, numel_flops, 1, NULL, CPU(k_relu_bwd)},
    [EMBER__OP_SIGMOID_BWD] = {"sigmoid_bwd", 1, infer_pair, NULL, numel_flops, 1, NULL, CPU(k_sigmoid_bwd)},
    [EMBER__OP_TANH_BWD] = {"tanh_bwd", 1, infer_pair, NULL, numel_flops, 1, NULL, CPU(k_tanh_bwd)},
    [EMBER__OP_GELU_BWD] = {"gelu_bwd", 1, infer_pair, NULL, flops_gelu, 1, NULL, CPU(k_gelu_bwd)},
    [EMBER__OP_LAYERNORM_BWD_X] = {"layernorm_bwd_x", 1, infer_ln_bwd_x, NULL, flops_layernorm, -1, NULL,
                                   CPU(k_ln_bwd_x)},
    [EMBER__OP_LAYERNORM_BWD_GAMMA] = {"layernorm_bwd_gamma", 1, infer_ln_bwd_gamma, NULL, flops_layernorm, -1,
                                       NULL, CPU(k_ln_bwd_gamma)},
    [EMBER__OP_SOFTMAX_BWD] = {"softmax_bwd", 1, infer_pair, NULL, flops_softmax, 1, NULL, CPU(k_softmax_bwd)},
    [EMBER__OP_LOG_SOFTMAX_BWD] = {"log_softmax_bwd", 1, infer_pair, NULL, flops_softmax, 1, NULL,
                                   CPU(k_log_softmax_bwd)},
    [EMBER__OP_SCATTER_ROWS] = {"scatter_rows", 1, infer_scatter, NULL, NULL, -1, NULL, CPU(k_scatter)},
    [EMBER__OP_INTERACTION_BWD] = {"interaction_bwd", 1, infer_first, NULL, flops_interaction_bwd, -1, NULL,
                                   CPU(k_interaction_bwd)},
    [EMBER__OP_INTERACTION_CAT_BWD] = {"dot_interaction_bwd", 1, infer_interaction_cat_bwd, NULL,
                                       flops_interaction_cat_bwd, -1, NULL, CPU(k_interaction_cat_bwd)},
    [EMBER__OP_BCE_BWD] = {"bce_bwd", 1, infer_loss, NULL, flops_loss, -1, NULL, CPU(k_bce_bwd)},
    [EMBER__OP_SOFTMAX_CE_BWD] = {"softmax_cross_entropy_bwd", 1, infer_loss, NULL, flops_loss, -1, NULL,
                                  CPU(k_ce_bwd)},
};

/* ======================= public constructors ======================= */

ember_status ember_op_matmul(ember_graph *g, ember_node *a, ember_node *b, int trans_a, int trans_b,
                             ember_node **out) {
    return matmul_node(g, a, b, trans_a != 0, trans_b != 0, out);
}
ember_status ember_op_add(ember_graph *g, ember_node *a, ember_node *b, ember_node **out) {
    return mk(g, EMBER__OP_ADD, out, 2, a, b, NULL);
}
ember_status ember_op_mul(ember_graph *g, ember_node *a, ember_node *b, ember_node **out) {
    return mk(g, EMBER__OP_MUL, out, 2, a, b, NULL);
}
ember_status ember_op_scale(ember_graph *g, ember_node *a, float alpha, ember_node **out) {
    return mkp(g, EMBER__OP_SCALE, out, 1, a, NULL, NULL, 0, &alpha, 1);
}
ember_status ember_op_relu(ember_graph *g, ember_node *a, ember_node **out) { return mk(g, EMBER__OP_RELU, out, 1, a, NULL, NULL); }
ember_status ember_op_sigmoid(ember_graph *g, ember_node *a, ember_node **out) {
    return mk(g, EMBER__OP_SIGMOID, out, 1, a, NULL, NULL);
}
ember_status ember_op_tanh(ember_graph *g, ember_node *a, ember_node **out) { return mk(g, EMBER__OP_TANH, out, 1, a, NULL, NULL); }
ember_status ember_op_gelu(ember_graph *g, ember_node *a, ember_node **out) { return mk(g, EMBER__OP_GELU, out, 1, a, NULL, NULL); }
ember_status ember_op_layernorm(ember_graph *g, ember_node *x, ember_node *gamma, ember_node *beta, float eps,
                                ember_node **out) {
    ember_node *src[3] = {x, gamma, beta};
    return ember__node_new(g, EMBER__OP_LAYERNORM, src, 3, NULL, 0, &eps, 1, out);
}
ember_status ember_op_softmax(ember_graph *g, ember_node *x, ember_node **out) {
    return mk(g, EMBER__OP_SOFTMAX, out, 1, x, NULL, NULL);
}
ember_status ember_op_log_softmax(ember_graph *g, ember_node *x, ember_node **out) {
    return mk(g, EMBER__OP_LOG_SOFTMAX, out, 1, x, NULL, NULL);
}
ember_status ember_op_causal_mask(ember_graph *g, ember_node *x, ember_node **out) {
    return mkp(g, EMBER__OP_CAUSAL_MASK, out, 1, x, NULL, NULL, 0, (float[]){-INFINITY}, 1);
}

ember_status ember_op_causal_attention(ember_graph *g, ember_node *q, ember_node *k, ember_node *v,
                                       ember_node **out) {
    EMBER_CHECK_NULL(q, "ember_op_causal_attention");
    EMBER_CHECK_NULL(k, "ember_op_causal_attention");
    EMBER_CHECK_NULL(v, "ember_op_causal_attention");
    EMBER_CHECK_NULL(out, "ember_op_causal_attention");
    if (q->ndim != 3 || !same_shape(q, k) || !same_shape(q, v)) {
        char a[128], b[128], c[128];
        return ember__error(EMBER_ERR_SHAPE, "ember_op_causal_attention: q %s, k %s, v %s must all be (batch, T, D)",
                            desc(q, a, sizeof a), desc(k, b, sizeof b), desc(v, c, sizeof c));
    }
    ember_node *s, *ss, *m, *p;
    EMBER_TRY(matmul_node(g, q, k, 0, 1, &s));                               /* (batch, T, T) */
    EMBER_TRY(ember_op_scale(g, s, 1.0f / sqrtf((float)q->shape[2]), &ss));
    EMBER_TRY(ember_op_causal_mask(g, ss, &m));
    EMBER_TRY(ember_op_softmax(g, m, &p));
    return matmul_node(g, p, v, 0, 0, out); /* (batch, T, D) */
}

ember_status ember_op_concat(ember_graph *g, ember_node *const *xs, int n, int dim, ember_node **out) {
    EMBER_CHECK_NULL(xs, "ember_op_concat");
    if (n < 1 || n > EMBER__MAX_SRC)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_op_concat: %d inputs (1..%d)", n, EMBER__MAX_SRC);
    return ember__node_new(g, EMBER__OP_CONCAT, xs, n, (int64_t[]){dim}, 1, NULL, 0, out);
}
ember_status ember_op_slice(ember_graph *g, ember_node *x, int dim, int64_t start, int64_t len, ember_node **out) {
    return mkp(g, EMBER__OP_SLICE, out, 1, x, NULL, (int64_t[]){dim, start, len}, 3, NULL, 0);
}
ember_status ember_op_reshape(ember_graph *g, ember_node *x, int ndim, const int64_t *shape, ember_node **out) {
    if (ndim < 0 || ndim > EMBER_MAX_DIMS || (ndim && !shape))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_op_reshape: ndim %d", ndim);
    int64_t ip[EMBER_MAX_DIMS + 1] = {ndim};
    for (int i = 0; i < ndim; i++) ip[1 + i] = shape[i];
    return mkp(g, EMBER__OP_RESHAPE, out, 1, x, NULL, ip, 1 + ndim, NULL, 0);
}
ember_status ember_op_permute(ember_graph *g, ember_node *x, const int *perm, ember_node **out) {
    EMBER_CHECK_NULL(x, "ember_op_permute");
    EMBER_CHECK_NULL(perm, "ember_op_permute");
    int64_t ip[EMBER_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ip[i] = perm[i];
    return mkp(g, EMBER__OP_PERMUTE, out, 1, x, NULL, ip, x->ndim, NULL, 0);
}
ember_status ember_op_transpose(ember_graph *g, ember_node *x, int d0, int d1, ember_node **out) {
    EMBER_CHECK_NULL(x, "ember_op_transpose");
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim)
        return ember__error(EMBER_ERR_INDEX, "ember_op_transpose: dims %d, %d of a %d-dim input", d0, d1, x->ndim);
    int perm[EMBER_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return ember_op_permute(g, x, perm, out);
}
ember_status ember_op_gather_rows(ember_graph *g, ember_node *table, ember_node *idx, ember_node **out) {
    return mk(g, EMBER__OP_GATHER_ROWS, out, 2, table, idx, NULL);
}
ember_status ember_op_interaction(ember_graph *g, ember_node *t, ember_node **out) {
    return mk(g, EMBER__OP_INTERACTION, out, 1, t, NULL, NULL);
}
ember_status ember_op_interaction_self(ember_graph *g, ember_node *t, ember_node **out) {
    return mkp(g, EMBER__OP_INTERACTION, out, 1, t, NULL, (int64_t[]){1}, 1, NULL, 0);
}
ember_status ember_op_dot_interaction(ember_graph *g, ember_node *z, ember_node *e, int self, ember_node **out) {
    return mkp(g, EMBER__OP_INTERACTION_CAT, out, 2, z, e, (int64_t[]){self != 0}, 1, NULL, 0);
}
ember_status ember_op_cross(ember_graph *g, ember_node *x0, ember_node *xl, ember_node *w, ember_node *b,
                            ember_node **out) {
    ember_node *h, *hb, *m;
    EMBER_TRY(matmul_node(g, xl, w, 0, 0, &h));
    EMBER_TRY(ember_op_add(g, h, b, &hb));
    EMBER_TRY(ember_op_mul(g, x0, hb, &m));
    return ember_op_add(g, m, xl, out);
}
ember_status ember_op_dropout(ember_graph *g, ember_node *x, float p, ember_node **out) {
    EMBER_CHECK_NULL(g, "ember_op_dropout");
    EMBER_CHECK_NULL(x, "ember_op_dropout");
    if (!(p >= 0.0f && p < 1.0f))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_op_dropout: p = %g outside [0, 1)", (double)p);
    /* Each dropout node owns a range of Philox words within a step. */
    int64_t words = (ember__node_numel(x) + 3) / 4 * 4;
    EMBER_TRY(mkp(g, EMBER__OP_DROPOUT, out, 1, x, NULL, (int64_t[]){(int64_t)g->rng_words}, 1, &p, 1));
    g->rng_words += (uint64_t)words;
    return EMBER_OK;
}
ember_status ember_op_sum(ember_graph *g, ember_node *x, int axes, ember_node **out) {
    return mkp(g, EMBER__OP_SUM, out, 1, x, NULL, (int64_t[]){axes}, 1, (float[]){1.0f}, 1);
}
ember_status ember_op_mean(ember_graph *g, ember_node *x, int axes, ember_node **out) {
    EMBER_CHECK_NULL(x, "ember_op_mean");
    int a = axes == 0 ? x->ndim : axes;
    int64_t count = 1;
    for (int i = x->ndim - a; i >= 0 && i < x->ndim; i++) count *= x->shape[i];
    return mkp(g, EMBER__OP_SUM, out, 1, x, NULL, (int64_t[]){axes}, 1, (float[]){count ? 1.0f / (float)count : 0.0f},
               1);
}
ember_status ember_op_bce_with_logits(ember_graph *g, ember_node *logits, ember_node *labels, ember_node **out) {
    return mk(g, EMBER__OP_BCE_WITH_LOGITS, out, 2, logits, labels, NULL);
}
ember_status ember_op_softmax_cross_entropy(ember_graph *g, ember_node *logits, ember_node *labels,
                                            ember_node **out) {
    return mk(g, EMBER__OP_SOFTMAX_CE, out, 2, logits, labels, NULL);
}
