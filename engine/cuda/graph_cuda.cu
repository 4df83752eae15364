/*
 * engine/cuda/graph_cuda.cu: the CUDA kernel of every graph op, indexed by op like the
 * registry in engine/graph_ops.c, whose CPU kernels define what each op computes.
 *
 * Design decisions:
 *  - Ops that the CPU computes with tensor-level calls (matmul, add, mul, scale, relu,
 *    sigmoid, tanh, sum, permute, fill) make the very same calls here: engine/ops.c
 *    hands device tensors to the CUDA backend, so both sides share one definition.
 *  - Row-wise ops (layernorm, the softmax family, cross-entropy) run one block per row.
 *    Its threads fold a strided slice of the row and a fixed shared-memory tree combines
 *    the partials, in double wherever the CPU accumulates in double. The block size is a
 *    function of the row length alone, so a row's bits never depend on the grid, the
 *    stream or the call.
 *  - Sums over rows (sum_to, layernorm_bwd_gamma) and over a whole tensor (the losses)
 *    are two-staged with chunk sizes fixed by constants (kColChunk, kSumChunk), never
 *    by the grid: deterministic. Column sums follow the CPU's sum_to exactly: each
 *    block of kColChunk rows summed in order in double, then the blocks in order.
 *  - Where a product meets a sum, __fmul_rn/__fadd_rn (and the double versions) spell
 *    out the two roundings the CPU makes (C11 does not contract a*b+c); nvcc would
 *    otherwise fuse them into one FMA. These are IEEE round-to-nearest operations.
 *  - scatter_rows sorts (index, position) pairs with CUB's stable radix sort; each
 *    (table row, column) then adds its gradient rows in position order starting from
 *    0.0f, which are the additions of the CPU's loop in the CPU's order, hence its bits,
 *    with parallelism over distinct rows x columns instead of columns alone.
 *  - Index checks (gather/scatter rows, cross-entropy labels) run on the device before
 *    the op: a kernel records the first bad position (atomicMin), the host reads it back
 *    (one synchronisation of the current stream) and reports EMBER_ERR_INDEX with the
 *    CPU's message. The output is left untouched and no kernel reads out of bounds.
 *  - Scratch (partial sums, the index flag, sort buffers) is stream-ordered
 *    (cudaMallocAsync), like the backend's reduction scratch: transient, and outside
 *    the memory manager's statistics.
 *  - Every kernel makes the graph's device current (the backend's activate entry) and
 *    runs on this thread's current stream of it; element counts are int64 and every
 *    elementwise kernel is a grid-stride loop.
 *
 * Agreement with the CPU (tests/test_graph_cuda.c states the tolerances it checks):
 *   bits:      data movement (concat, slice, pad, reshape, permute, gather_rows,
 *              scatter_rows, causal_mask, expand), dropout (the same Philox words),
 *              relu and relu_bwd, add, mul, scale, interaction and dot_interaction
 *              (engine/lanes.h's order, shared with the CPU) and their backward (the CPU's
 *              f32 order, no FMA), sum_to (the CPU's blocks), fill.
 *   few ulp:   gelu, sigmoid, tanh and their gradients, bce_bwd (CUDA's erff/expf/tanhf
 *              are within 2 ulp of glibc's, not identical).
 *   rounding:  layernorm (and its gradients), the softmax family, the losses, sum:
 *              double sums in another order, so the double results differ in the last
 *              bits and the f32 results by at most an ulp or so.
 *   1e-4 rel:  matmul (cuBLAS vs the CPU BLAS summation order).
 * INPUT and PARAM have no kernel on either side: leaves are never scheduled.
 */
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/lanes.h"
#include "engine/cuda/cuda_runtime.h" /* ember's header, not CUDA's cuda_runtime.h */
#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "engine/philox.h"

namespace {

constexpr int kThreads = 256;         /* elementwise blocks; also the total-sum block size */
constexpr int64_t kMaxBlocks = 65536; /* grid-stride loops cover any n beyond this */
constexpr int kRowThreadsMax = 256;   /* row kernels: 32..256 threads, by row length */
constexpr int64_t kSumChunk = 16 * kThreads; /* elements per stage-1 block of a total sum */
constexpr int64_t kColChunk = 64; /* rows per stage-1 partial of a column sum: the CPU's SUM_TO_ROWS */

/* ------------------------------------------------------------------------------------ */
/* launch plumbing                                                                       */

struct Launch {
    const ember__exec *x;
    int dev;
    cudaStream_t stream;
};

const char *op_name(const ember__exec *x) { return ember__ops[x->n->op].name; }

/* Make the graph's device current and pick this thread's current stream on it. */
ember_status begin(const ember__exec *x, Launch *l) {
    l->x = x;
    l->dev = x->g->dev.index;
    EMBER_TRY(ember__backend_cuda.activate(l->dev));
    l->stream = (cudaStream_t)ember__cuda_current_stream(l->dev);
    return EMBER_OK;
}

ember_status cuda_fail(cudaError_t err, const Launch &l, const char *what) {
    (void)cudaGetLastError(); /* consume it: later launch checks must not see it */
    return ember__error(err == cudaErrorMemoryAllocation ? EMBER_ERR_OUT_OF_MEMORY : EMBER_ERR_CUDA,
                        "graph node %d (%s): %s on cuda:%d: %s", l.x->n->id, op_name(l.x), what, l.dev,
                        cudaGetErrorString(err));
}

/* Call right after a <<<>>> launch. */
ember_status check_launch(const Launch &l, const char *kernel) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return EMBER_OK;
    return ember__error(EMBER_ERR_CUDA, "graph node %d (%s): %s launch on cuda:%d: %s", l.x->n->id,
                        op_name(l.x), kernel, l.dev, cudaGetErrorString(err));
}

unsigned grid_for(int64_t n) {
    int64_t blocks = (n + kThreads - 1) / kThreads;
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    return (unsigned)blocks;
}

/* One block per row (blocks stride over rows beyond kMaxBlocks). */
unsigned row_grid(int64_t rows) { return (unsigned)(rows < 1 ? 1 : rows < kMaxBlocks ? rows : kMaxBlocks); }

/* A power of two in [32, kRowThreadsMax], from the row length only (part of the bits). */
int row_threads(int64_t d) {
    int t = 32;
    while (t < kRowThreadsMax && t < d) t *= 2;
    return t;
}

__device__ __forceinline__ int64_t global_tid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return (int64_t)gridDim.x * blockDim.x; }

float *fptr(const ember_tensor *t) { return (float *)ember__tensor_ptr(t); }

/* Stream-ordered scratch, freed in stream order (after the kernels that use it). */
class Scratch {
  public:
    explicit Scratch(const Launch &l) : l_(l) {}
    Scratch(const Scratch &) = delete;
    Scratch &operator=(const Scratch &) = delete;
    ~Scratch() { (void)release(); }

    ember_status alloc(size_t bytes, const char *what) {
        if (bytes == 0) bytes = 1;
        cudaError_t err = cudaMallocAsync(&p_, bytes, l_.stream);
        if (err == cudaErrorNotSupported) { /* no memory pools (rare): plain, synchronising */
            (void)cudaGetLastError();
            pooled_ = false;
            err = cudaMalloc(&p_, bytes);
        }
        if (err != cudaSuccess) {
            p_ = nullptr;
            char msg[160];
            snprintf(msg, sizeof msg, "scratch of %zu B for %s", bytes, what);
            return cuda_fail(err, l_, msg);
        }
        return EMBER_OK;
    }
    void *get() const { return p_; }
    ember_status release() {
        if (!p_) return EMBER_OK;
        cudaError_t err = pooled_ ? cudaFreeAsync(p_, l_.stream) : cudaFree(p_);
        p_ = nullptr;
        if (err != cudaSuccess) return cuda_fail(err, l_, "free scratch");
        return EMBER_OK;
    }

  private:
    Launch l_;
    void *p_ = nullptr;
    bool pooled_ = true;
};

/* Copy bytes from the device to the host and wait for them. */
ember_status read_back(const Launch &l, void *host, const void *dev, size_t bytes, const char *what) {
    cudaError_t err = cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, l.stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(l.stream);
    if (err != cudaSuccess) return cuda_fail(err, l, what);
    return EMBER_OK;
}

ember_status copy_d2d(const Launch &l, void *dst, const void *src, size_t bytes) {
    if (bytes == 0 || dst == src) return EMBER_OK;
    cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, l.stream);
    if (err != cudaSuccess) return cuda_fail(err, l, "cudaMemcpyAsync(D2D)");
    return EMBER_OK;
}

ember_status zero(const Launch &l, void *dst, size_t bytes) {
    if (bytes == 0) return EMBER_OK;
    cudaError_t err = cudaMemsetAsync(dst, 0, bytes, l.stream);
    if (err != cudaSuccess) return cuda_fail(err, l, "cudaMemsetAsync");
    return EMBER_OK;
}

/* ------------------------------------------------------------------------------------ */
/* block reductions                                                                      */

struct SumOp {
    template <class T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
/* The CPU's running max: a NaN never replaces the running value. */
struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return b > a ? b : a; }
};

/* Fixed tree over the block (blockDim.x a power of two); every thread gets the result.
 * All threads must call it; part holds blockDim.x values. It ends with a barrier, so
 * every read of the data before the call is done when it returns. */
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, T *part, Op op) {
    const int t = threadIdx.x;
    part[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) part[t] = op(part[t], part[t + s]);
        __syncthreads();
    }
    v = part[0];
    __syncthreads();
    return v;
}

/* Mean and 1 / sqrt(var + eps) of a row, in double (engine/graph_ops.c row_stats). */
__device__ __forceinline__ void row_stats(const float *xr, int64_t d, float eps, double *part, double *mean,
                                          double *rstd) {
    double s = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += (double)xr[j];
    s = block_reduce(s, part, SumOp());
    const double m = s / (double)d;
    double ss = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        const double c = (double)xr[j] - m;
        ss = __dadd_rn(ss, __dmul_rn(c, c));
    }
    ss = block_reduce(ss, part, SumOp());
    *mean = m;
    *rstd = 1.0 / sqrt(ss / (double)d + (double)eps);
}

/* ---- sum of f(i), i < n, in double: out[0] = (float)(n ? sum / divisor : 0) ---- */

template <class F>
__global__ void __launch_bounds__(kThreads) total_sum_kernel(double *partial, F f, int64_t n, int64_t nchunks) {
    __shared__ double part[kThreads];
    for (int64_t b = blockIdx.x; b < nchunks; b += gridDim.x) {
        const int64_t lo = b * kSumChunk, hi = lo + kSumChunk < n ? lo + kSumChunk : n;
        double acc = 0;
        for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) acc = __dadd_rn(acc, f(i));
        acc = block_reduce(acc, part, SumOp());
        if (threadIdx.x == 0) partial[b] = acc;
    }
}

__global__ void __launch_bounds__(kThreads)
    total_finish_kernel(float *out, const double *partial, int64_t nchunks, int64_t n, double divisor) {
    __shared__ double part[kThreads];
    double acc = 0;
    for (int64_t i = threadIdx.x; i < nchunks; i += kThreads) acc += partial[i];
    acc = block_reduce(acc, part, SumOp());
    if (threadIdx.x == 0) out[0] = (float)(n ? acc / divisor : 0.0);
}

template <class F>
ember_status total_sum(const Launch &l, float *out, F f, int64_t n, double divisor) {
    const int64_t nchunks = (n + kSumChunk - 1) / kSumChunk;
    Scratch s(l);
    EMBER_TRY(s.alloc((size_t)(nchunks > 0 ? nchunks : 1) * sizeof(double), "partial sums"));
    double *partial = (double *)s.get();
    if (nchunks > 0) {
        total_sum_kernel<F><<<row_grid(nchunks), kThreads, 0, l.stream>>>(partial, f, n, nchunks);
        EMBER_TRY(check_launch(l, "total_sum_kernel"));
    }
    total_finish_kernel<<<1, kThreads, 0, l.stream>>>(out, partial, nchunks, n, divisor);
    EMBER_TRY(check_launch(l, "total_finish_kernel"));
    return s.release();
}

/* ---- column sums: out[c] = (float) sum over r < rows of f(r, c), c < inner ---- */

/* Chunk ch of column c: rows [ch * kColChunk, ...) in order. One chunk: the final value. */
template <class F>
__global__ void col_sum_kernel(float *out, double *partial, F f, int64_t rows, int64_t inner, int64_t nchunks) {
    const int64_t total = nchunks * inner;
    for (int64_t e = global_tid(); e < total; e += grid_stride()) {
        const int64_t ch = e / inner, c = e - ch * inner;
        const int64_t r0 = ch * kColChunk, r1 = r0 + kColChunk < rows ? r0 + kColChunk : rows;
        double acc = 0;
        for (int64_t r = r0; r < r1; r++) acc = __dadd_rn(acc, f(r, c));
        if (nchunks == 1) out[c] = (float)acc;
        else partial[e] = acc;
    }
}

__global__ void col_finish_kernel(float *out, const double *partial, int64_t inner, int64_t nchunks) {
    for (int64_t c = global_tid(); c < inner; c += grid_stride()) {
        double acc = 0;
        for (int64_t ch = 0; ch < nchunks; ch++) acc += partial[ch * inner + c];
        out[c] = (float)acc;
    }
}

template <class F>
ember_status column_sum(const Launch &l, float *out, F f, int64_t rows, int64_t inner) {
    if (inner <= 0) return EMBER_OK;
    if (rows <= 0) return zero(l, out, (size_t)inner * sizeof(float));
    const int64_t nchunks = (rows + kColChunk - 1) / kColChunk;
    if (nchunks == 1) {
        col_sum_kernel<F><<<grid_for(inner), kThreads, 0, l.stream>>>(out, nullptr, f, rows, inner, 1);
        return check_launch(l, "col_sum_kernel");
    }
    Scratch s(l);
    EMBER_TRY(s.alloc((size_t)(nchunks * inner) * sizeof(double), "column partial sums"));
    double *partial = (double *)s.get();
    col_sum_kernel<F><<<grid_for(nchunks * inner), kThreads, 0, l.stream>>>(out, partial, f, rows, inner, nchunks);
    EMBER_TRY(check_launch(l, "col_sum_kernel"));
    col_finish_kernel<<<grid_for(inner), kThreads, 0, l.stream>>>(out, partial, inner, nchunks);
    EMBER_TRY(check_launch(l, "col_finish_kernel"));
    return s.release();
}

/* ------------------------------------------------------------------------------------ */
/* index checks                                                                          */

template <class I>
__global__ void first_bad_index_kernel(const I *idx, int64_t n, int64_t limit, unsigned long long *first) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        const int64_t v = (int64_t)idx[i];
        if (v < 0 || v >= limit) atomicMin(first, (unsigned long long)i);
    }
}

/* *pos: the first position of idx (i32/i64) outside [0, limit), -1 if none; *val: its value. */
ember_status first_bad_index(const Launch &l, const ember_tensor *idx, int64_t limit, int64_t *pos,
                             int64_t *val) {
    *pos = -1;
    *val = 0;
    const int64_t n = ember_tensor_numel(idx);
    if (n == 0) return EMBER_OK;
    Scratch s(l);
    EMBER_TRY(s.alloc(sizeof(unsigned long long), "the index check"));
    unsigned long long *first = (unsigned long long *)s.get();
    cudaError_t err = cudaMemsetAsync(first, 0xff, sizeof *first, l.stream); /* ULLONG_MAX: none */
    if (err != cudaSuccess) return cuda_fail(err, l, "index check: cudaMemsetAsync");
    const char *p = ember__tensor_ptr(idx);
    const bool i32 = idx->dtype == EMBER_DTYPE_I32;
    if (i32)
        first_bad_index_kernel<int32_t><<<grid_for(n), kThreads, 0, l.stream>>>((const int32_t *)p, n, limit, first);
    else
        first_bad_index_kernel<int64_t><<<grid_for(n), kThreads, 0, l.stream>>>((const int64_t *)p, n, limit, first);
    EMBER_TRY(check_launch(l, "first_bad_index_kernel"));
    unsigned long long h = 0;
    EMBER_TRY(read_back(l, &h, first, sizeof h, "index check: read back"));
    EMBER_TRY(s.release());
    if (h == ULLONG_MAX) return EMBER_OK;
    *pos = (int64_t)h;
    if (i32) {
        int32_t v = 0;
        EMBER_TRY(read_back(l, &v, p + h * sizeof v, sizeof v, "index check: read the bad index"));
        *val = v;
    } else {
        int64_t v = 0;
        EMBER_TRY(read_back(l, &v, p + h * sizeof v, sizeof v, "index check: read the bad index"));
        *val = v;
    }
    return EMBER_OK;
}

/* ------------------------------------------------------------------------------------ */
/* tensor-level ops: the CPU's calls, which dispatch to the CUDA backend                 */

ember_status k_matmul(const ember__exec *x) {
    return ember_gemm((int)x->n->ip[0], (int)x->n->ip[1], 1.0f, x->src[0], x->src[1], 0.0f, x->out);
}
ember_status k_add(const ember__exec *x) { return ember_binary(EMBER_BINARY_ADD, x->out, x->src[0], x->src[1]); }
ember_status k_mul(const ember__exec *x) { return ember_binary(EMBER_BINARY_MUL, x->out, x->src[0], x->src[1]); }
ember_status k_scale(const ember__exec *x) { return ember_scale(x->out, x->src[0], x->n->fp[0], 0.0); }
ember_status k_relu(const ember__exec *x) { return ember_unary(EMBER_UNARY_RELU, x->out, x->src[0]); }
ember_status k_sigmoid(const ember__exec *x) { return ember_unary(EMBER_UNARY_SIGMOID, x->out, x->src[0]); }
ember_status k_tanh(const ember__exec *x) { return ember_unary(EMBER_UNARY_TANH, x->out, x->src[0]); }
ember_status k_fill(const ember__exec *x) { return ember_tensor_fill(x->out, x->n->fp[0]); }

ember_status k_sum(const ember__exec *x) {
    EMBER_TRY(ember_reduce(EMBER_REDUCE_SUM, x->out, x->src[0], (int)x->n->ip[0]));
    if (x->n->fp[0] != 1.0f) EMBER_TRY(ember_scale(x->out, x->out, x->n->fp[0], 0.0));
    return EMBER_OK;
}

ember_status k_permute(const ember__exec *x) {
    int perm[EMBER_MAX_DIMS];
    for (int i = 0; i < x->n->ndim; i++) perm[i] = (int)x->n->ip[i];
    ember_tensor *v;
    EMBER_TRY(ember_tensor_permute(x->src[0], perm, &v));
    ember_status st = ember_tensor_copy(x->out, v);
    ember_tensor_destroy(v);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* element-wise                                                                          */

/* 0.5 x (1 + erf(x / sqrt 2)), rounded as the CPU's 0.5f * v * (1.0f + erff(...)) */
__global__ void gelu_kernel(float *o, const float *v, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        const float a = v[i];
        o[i] = __fmul_rn(__fmul_rn(0.5f, a), __fadd_rn(1.0f, erff(__fmul_rn(a, 0.70710678118654752f))));
    }
}

ember_status k_gelu(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t n = ember_tensor_numel(x->out);
    if (n == 0) return EMBER_OK;
    gelu_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]), n);
    return check_launch(l, "gelu_kernel");
}

/* Grad-only pairs out = f(value, gradient); out may alias the gradient (in place). */
struct ReluBwd {
    __device__ __forceinline__ float operator()(float a, float d) const { return a > 0.0f ? d : 0.0f; }
};
struct SigmoidBwd { /* d * a * (1 - a), a = sigmoid(x) */
    __device__ __forceinline__ float operator()(float a, float d) const {
        return __fmul_rn(__fmul_rn(d, a), __fsub_rn(1.0f, a));
    }
};
struct TanhBwd { /* d * (1 - a * a), a = tanh(x) */
    __device__ __forceinline__ float operator()(float a, float d) const {
        return __fmul_rn(d, __fsub_rn(1.0f, __fmul_rn(a, a)));
    }
};
struct GeluBwd { /* d * (Phi(x) + x phi(x)) */
    __device__ __forceinline__ float operator()(float a, float d) const {
        const float cdf = __fmul_rn(0.5f, __fadd_rn(1.0f, erff(__fmul_rn(a, 0.70710678118654752f))));
        const float pdf = __fmul_rn(__fmul_rn(a, 0.39894228040143268f), expf(__fmul_rn(__fmul_rn(-0.5f, a), a)));
        return __fmul_rn(d, __fadd_rn(cdf, pdf));
    }
};

template <class Op>
__global__ void pair_kernel(float *o, const float *v, const float *g, int64_t n, Op op) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) o[i] = op(v[i], g[i]);
}

template <class Op>
ember_status k_pair(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t n = ember_tensor_numel(x->out);
    if (n == 0) return EMBER_OK;
    pair_kernel<Op><<<grid_for(n), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]), fptr(x->src[1]), n, Op());
    return check_launch(l, "pair_kernel");
}

/* Positions j > i of the last two dims (i, j) become fill. */
__global__ void causal_mask_kernel(float *o, const float *in, int64_t n, int64_t t1, int64_t t2, float fill) {
    for (int64_t e = global_tid(); e < n; e += grid_stride()) {
        const int64_t r = e / t2, j = e - r * t2, i = r % t1;
        o[e] = j > i ? fill : in[e];
    }
}

ember_status k_causal_mask(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t t1 = x->n->shape[x->n->ndim - 2], t2 = x->n->shape[x->n->ndim - 1];
    const int64_t n = ember__node_numel(x->n);
    if (n == 0) return EMBER_OK;
    causal_mask_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]), n, t1, t2,
                                                               x->n->fp[0]);
    return check_launch(l, "causal_mask_kernel");
}

/* out[r * inner + j] = in[r] * sc */
__global__ void expand_kernel(float *o, const float *in, int64_t total, int64_t inner, float sc) {
    for (int64_t e = global_tid(); e < total; e += grid_stride()) o[e] = __fmul_rn(in[e / inner], sc);
}

ember_status k_expand(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t outer = ember_tensor_numel(x->src[0]), total = ember__node_numel(x->n);
    const int64_t inner = outer ? total / outer : 0;
    if (outer == 0 || inner == 0) return EMBER_OK;
    expand_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]), outer * inner, inner,
                                                              x->n->fp[0]);
    return check_launch(l, "expand_kernel");
}

/* ------------------------------------------------------------------------------------ */
/* dropout                                                                               */

/*
 * Element i keeps its value (times 1 / (1 - p)) when the unit float of Philox word
 * base + i is >= p: the CPU's mask, word for word. One thread computes one Philox block
 * and serves the (up to four) elements whose words fall in it.
 */
__global__ void dropout_kernel(float *o, const float *in, int64_t n, uint64_t seed, uint64_t base, float p,
                               float keep_scale) {
    const uint64_t first = base / 4, last = (base + (uint64_t)n - 1) / 4;
    const uint64_t nblocks = last - first + 1;
    for (uint64_t t = (uint64_t)global_tid(); t < nblocks; t += (uint64_t)grid_stride()) {
        const uint64_t blk = first + t;
        const ember__u32x4 r = ember__philox_block(seed, blk);
#pragma unroll
        for (int lane = 0; lane < 4; lane++) {
            const uint64_t w = blk * 4 + (uint64_t)lane;
            if (w < base || w - base >= (uint64_t)n) continue;
            const uint64_t i = w - base;
            o[i] = ember__u32_to_unit(r.v[lane]) >= p ? __fmul_rn(in[i], keep_scale) : 0.0f;
        }
    }
}

ember_status k_dropout(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    float *o = fptr(x->out);
    const float *in = fptr(x->src[0]);
    const int64_t n = ember_tensor_numel(x->out);
    const float p = x->n->fp[0];
    if (n == 0) return EMBER_OK;
    if (!x->g->training || p == 0.0f) return copy_d2d(l, o, in, (size_t)n * sizeof(float));
    const float keep_scale = 1.0f / (1.0f - p);
    const uint64_t base = (x->g->step - 1) * x->g->rng_words + (uint64_t)x->n->ip[0];
    const uint64_t nblocks = (base + (uint64_t)n - 1) / 4 - base / 4 + 1;
    dropout_kernel<<<grid_for((int64_t)nblocks), kThreads, 0, l.stream>>>(o, in, n, x->g->p.seed, base, p,
                                                                          keep_scale);
    return check_launch(l, "dropout_kernel");
}

/* ------------------------------------------------------------------------------------ */
/* layernorm                                                                             */

__global__ void layernorm_kernel(float *o, const float *in, const float *gm, const float *bt, int64_t rows,
                                 int64_t d, float eps) {
    __shared__ double part[kRowThreadsMax];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = in + r * d;
        float *orow = o + r * d;
        double m, rs;
        row_stats(xr, d, eps, part, &m, &rs);
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
            orow[j] = __fadd_rn(__fmul_rn((float)(((double)xr[j] - m) * rs), gm[j]), bt[j]);
    }
}

ember_status k_layernorm(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
    if (rows == 0 || d == 0) return EMBER_OK;
    layernorm_kernel<<<row_grid(rows), row_threads(d), 0, l.stream>>>(
        fptr(x->out), fptr(x->src[0]), fptr(x->src[1]), fptr(x->src[2]), rows, d, x->n->fp[0]);
    return check_launch(l, "layernorm_kernel");
}

/* dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * gamma */
__global__ void layernorm_bwd_x_kernel(float *o, const float *in, const float *gm, const float *gr, int64_t rows,
                                       int64_t d, float eps) {
    __shared__ double part[kRowThreadsMax];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = in + r * d, *grr = gr + r * d;
        double m, rs, s1 = 0, s2 = 0;
        row_stats(xr, d, eps, part, &m, &rs);
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            const double dxh = __dmul_rn((double)grr[j], (double)gm[j]);
            const double xh = __dmul_rn((double)xr[j] - m, rs);
            s1 += dxh;
            s2 = __dadd_rn(s2, __dmul_rn(dxh, xh));
        }
        s1 = block_reduce(s1, part, SumOp()) / (double)d;
        s2 = block_reduce(s2, part, SumOp()) / (double)d;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            const double dxh = __dmul_rn((double)grr[j], (double)gm[j]);
            const double xh = __dmul_rn((double)xr[j] - m, rs);
            o[r * d + j] = (float)__dmul_rn(rs, __dsub_rn(__dsub_rn(dxh, s1), __dmul_rn(xh, s2)));
        }
    }
}

ember_status k_layernorm_bwd_x(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
    if (rows == 0 || d == 0) return EMBER_OK;
    layernorm_bwd_x_kernel<<<row_grid(rows), row_threads(d), 0, l.stream>>>(
        fptr(x->out), fptr(x->src[0]), fptr(x->src[1]), fptr(x->src[2]), rows, d, x->n->fp[0]);
    return check_launch(l, "layernorm_bwd_x_kernel");
}

/* stats[2r] = mean, stats[2r + 1] = rstd of row r */
__global__ void row_stats_kernel(double *stats, const float *in, int64_t rows, int64_t d, float eps) {
    __shared__ double part[kRowThreadsMax];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        double m, rs;
        row_stats(in + r * d, d, eps, part, &m, &rs);
        if (threadIdx.x == 0) {
            stats[2 * r] = m;
            stats[2 * r + 1] = rs;
        }
    }
}

/* g * xhat at (r, c) */
struct GammaTerm {
    const float *x, *g;
    const double *stats;
    int64_t d;
    __device__ __forceinline__ double operator()(int64_t r, int64_t c) const {
        const double xh = __dmul_rn((double)x[r * d + c] - stats[2 * r], stats[2 * r + 1]);
        return __dmul_rn((double)g[r * d + c], xh);
    }
};

ember_status k_layernorm_bwd_gamma(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const ember_node *xn = x->n->src[0];
    const int64_t d = xn->shape[xn->ndim - 1], rows = ember__node_numel(xn) / (d ? d : 1);
    if (d == 0) return EMBER_OK;
    if (rows == 0) return zero(l, fptr(x->out), (size_t)d * sizeof(float));
    Scratch s(l);
    EMBER_TRY(s.alloc((size_t)(2 * rows) * sizeof(double), "row statistics"));
    double *stats = (double *)s.get();
    const float *in = fptr(x->src[0]);
    row_stats_kernel<<<row_grid(rows), row_threads(d), 0, l.stream>>>(stats, in, rows, d, x->n->fp[0]);
    EMBER_TRY(check_launch(l, "row_stats_kernel"));
    EMBER_TRY(column_sum(l, fptr(x->out), GammaTerm{in, fptr(x->src[1]), stats, d}, rows, d));
    return s.release();
}

/* ------------------------------------------------------------------------------------ */
/* softmax family                                                                        */

/* out may alias in (in place): every read of a row precedes the barrier of its sum. */
template <bool kLog>
__global__ void softmax_kernel(float *o, const float *in, int64_t rows, int64_t d) {
    __shared__ float partf[kRowThreadsMax];
    __shared__ double partd[kRowThreadsMax];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = in + r * d;
        float *orow = o + r * d;
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) mx = MaxOp()(mx, xr[j]);
        mx = block_reduce(mx, partf, MaxOp());
        if (mx == -INFINITY) mx = 0; /* a fully masked row */
        double s = 0;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += exp((double)xr[j] - mx);
        s = block_reduce(s, partd, SumOp());
        if (kLog) {
            const double lse = mx + log(s);
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) orow[j] = (float)((double)xr[j] - lse);
        } else {
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) orow[j] = (float)(exp((double)xr[j] - mx) / s);
        }
    }
}

template <bool kLog>
ember_status k_softmax(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
    if (rows == 0 || d == 0) return EMBER_OK;
    softmax_kernel<kLog><<<row_grid(rows), row_threads(d), 0, l.stream>>>(fptr(x->out), fptr(x->src[0]), rows, d);
    return check_launch(l, "softmax_kernel");
}

/* softmax: dx = y * (g - sum(g * y)); log_softmax: dx = g - exp(y) * sum(g).
 * out may alias g (in place): all reads of a row precede the barrier of its sum. */
template <bool kLog>
__global__ void softmax_bwd_kernel(float *o, const float *y, const float *g, int64_t rows, int64_t d) {
    __shared__ double part[kRowThreadsMax];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *yr = y + r * d, *gr = g + r * d;
        float *orow = o + r * d;
        double s = 0;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
            s = __dadd_rn(s, kLog ? (double)gr[j] : __dmul_rn((double)gr[j], (double)yr[j]));
        s = block_reduce(s, part, SumOp());
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            const double gv = gr[j], yv = yr[j];
            orow[j] = kLog ? (float)__dsub_rn(gv, __dmul_rn(exp(yv), s)) : (float)__dmul_rn(yv, gv - s);
        }
    }
}

template <bool kLog>
ember_status k_softmax_bwd(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t d = x->n->shape[x->n->ndim - 1], rows = ember__node_numel(x->n) / (d ? d : 1);
    if (rows == 0 || d == 0) return EMBER_OK;
    softmax_bwd_kernel<kLog><<<row_grid(rows), row_threads(d), 0, l.stream>>>(fptr(x->out), fptr(x->src[0]),
                                                                            fptr(x->src[1]), rows, d);
    return check_launch(l, "softmax_bwd_kernel");
}

/* ------------------------------------------------------------------------------------ */
/* shape ops                                                                             */

/* dst[r * dld + c] = src[r * sld + c] for r < rows, c < width (f32 elements). */
__global__ void block_copy_kernel(float *dst, int64_t dld, const float *src, int64_t sld, int64_t rows,
                                  int64_t width) {
    const int64_t total = rows * width;
    for (int64_t e = global_tid(); e < total; e += grid_stride()) {
        const int64_t r = e / width, c = e - r * width;
        dst[r * dld + c] = src[r * sld + c];
    }
}

ember_status block_copy(const Launch &l, float *dst, int64_t dld, const float *src, int64_t sld, int64_t rows,
                        int64_t width) {
    if (rows <= 0 || width <= 0) return EMBER_OK;
    block_copy_kernel<<<grid_for(rows * width), kThreads, 0, l.stream>>>(dst, dld, src, sld, rows, width);
    return check_launch(l, "block_copy_kernel");
}

/* Elements before, along and after dim of a node's shape. */
void block_dims(const ember_node *big, int dim, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < dim; i++) *outer *= big->shape[i];
    for (int i = dim + 1; i < big->ndim; i++) *inner *= big->shape[i];
}

ember_status k_concat(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int dim = (int)x->n->ip[0];
    int64_t outer, inner;
    block_dims(x->n, dim, &outer, &inner);
    const int64_t od = x->n->shape[dim];
    int64_t at = 0;
    float *o = fptr(x->out);
    for (int s = 0; s < x->n->nsrc; s++) {
        const int64_t sd = x->n->src[s]->shape[dim];
        EMBER_TRY(block_copy(l, o + at * inner, od * inner, fptr(x->src[s]), sd * inner, outer, sd * inner));
        at += sd;
    }
    return EMBER_OK;
}

ember_status k_slice(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const ember_node *a = x->n->src[0];
    const int dim = (int)x->n->ip[0];
    const int64_t start = x->n->ip[1], len = x->n->ip[2], ad = a->shape[dim];
    int64_t outer, inner;
    block_dims(a, dim, &outer, &inner);
    return block_copy(l, fptr(x->out), len * inner, fptr(x->src[0]) + start * inner, ad * inner, outer,
                      len * inner);
}

ember_status k_pad(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const ember_node *small = x->n->src[0];
    const int dim = (int)x->n->ip[0];
    const int64_t start = x->n->ip[1], len = small->shape[dim], full = x->n->ip[2];
    int64_t outer, inner;
    block_dims(x->n, dim, &outer, &inner);
    float *o = fptr(x->out);
    EMBER_TRY(zero(l, o, ember__node_bytes(x->n)));
    return block_copy(l, o + start * inner, full * inner, fptr(x->src[0]), len * inner, outer, len * inner);
}

ember_status k_reshape(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    /* in place when the input died here */
    return copy_d2d(l, ember__tensor_ptr(x->out), ember__tensor_ptr(x->src[0]), ember__node_bytes(x->n));
}

/* ------------------------------------------------------------------------------------ */
/* gather / scatter rows                                                                 */

template <class I>
__global__ void gather_rows_kernel(float *o, const float *tab, const I *idx, int64_t n, int64_t d) {
    const int64_t total = n * d;
    for (int64_t e = global_tid(); e < total; e += grid_stride()) {
        const int64_t i = e / d, c = e - i * d;
        o[e] = tab[(int64_t)idx[i] * d + c];
    }
}

ember_status k_gather_rows(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const ember_node *t = x->n->src[0];
    const int64_t v = t->shape[0], d = t->shape[1], n = ember_tensor_numel(x->src[1]);
    int64_t pos, val;
    EMBER_TRY(first_bad_index(l, x->src[1], v, &pos, &val));
    if (pos >= 0)
        return ember__error(EMBER_ERR_INDEX, "%s: index %lld at position %lld outside table rows [0, %lld)",
                            "gather_rows", (long long)val, (long long)pos, (long long)v);
    if (n == 0 || d == 0) return EMBER_OK;
    const void *idx = ember__tensor_ptr(x->src[1]);
    if (x->src[1]->dtype == EMBER_DTYPE_I32)
        gather_rows_kernel<int32_t><<<grid_for(n * d), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]),
                                                                                (const int32_t *)idx, n, d);
    else
        gather_rows_kernel<int64_t><<<grid_for(n * d), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]),
                                                                                (const int64_t *)idx, n, d);
    return check_launch(l, "gather_rows_kernel");
}

/* keys[i] = idx[i] (checked to lie in [0, V)), pos[i] = i */
template <class I, class K>
__global__ void scatter_keys_kernel(K *keys, K *pos, const I *idx, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        keys[i] = (K)idx[i];
        pos[i] = (K)i;
    }
}

/*
 * Sorted by key, positions ascending within a key (the sort is stable). The thread of
 * (p, c) where p starts a run of equal keys adds g[pos[q], c] over the run, from 0.0f, in
 * that order, exactly as the CPU adds rows in index order into a zeroed row.
 */
template <class K>
__global__ void scatter_runs_kernel(float *o, const float *g, const K *keys, const K *pos, int64_t n, int64_t d) {
    const int64_t total = n * d;
    for (int64_t e = global_tid(); e < total; e += grid_stride()) {
        const int64_t p = e / d, c = e - p * d;
        const K k = keys[p];
        if (p > 0 && keys[p - 1] == k) continue;
        float acc = 0.0f;
        for (int64_t q = p; q < n && keys[q] == k; q++) acc = __fadd_rn(acc, g[(int64_t)pos[q] * d + c]);
        o[(int64_t)k * d + c] = acc;
    }
}

size_t align_up(size_t b) { return (b + 255) / 256 * 256; }

template <class I, class K>
ember_status scatter_sorted(const Launch &l, float *o, const float *g, const I *idx, int64_t n, int64_t d,
                            int64_t v) {
    int bits = 1; /* radix bits covering 0..v-1 */
    while (bits < (int)(8 * sizeof(K)) && ((uint64_t)(v - 1) >> bits) != 0) bits++;
    size_t temp = 0;
    cudaError_t err = cub::DeviceRadixSort::SortPairs(nullptr, temp, (const K *)nullptr, (K *)nullptr,
                                                      (const K *)nullptr, (K *)nullptr, n, 0, bits, l.stream);
    if (err != cudaSuccess) return cuda_fail(err, l, "cub::DeviceRadixSort::SortPairs (size query)");
    const size_t arr = align_up((size_t)n * sizeof(K));
    Scratch s(l);
    EMBER_TRY(s.alloc(4 * arr + temp, "sorting the indices"));
    char *base = (char *)s.get();
    K *keys_in = (K *)base, *keys = (K *)(base + arr), *pos_in = (K *)(base + 2 * arr),
      *pos = (K *)(base + 3 * arr);
    scatter_keys_kernel<I, K><<<grid_for(n), kThreads, 0, l.stream>>>(keys_in, pos_in, idx, n);
    EMBER_TRY(check_launch(l, "scatter_keys_kernel"));
    err = cub::DeviceRadixSort::SortPairs(base + 4 * arr, temp, keys_in, keys, pos_in, pos, n, 0, bits, l.stream);
    if (err != cudaSuccess) return cuda_fail(err, l, "cub::DeviceRadixSort::SortPairs");
    scatter_runs_kernel<K><<<grid_for(n * d), kThreads, 0, l.stream>>>(o, g, keys, pos, n, d);
    EMBER_TRY(check_launch(l, "scatter_runs_kernel"));
    return s.release();
}

template <class I>
ember_status scatter_for(const Launch &l, float *o, const float *g, const I *idx, int64_t n, int64_t d, int64_t v) {
    if ((uint64_t)v <= (uint64_t)UINT32_MAX + 1 && (uint64_t)n <= (uint64_t)UINT32_MAX)
        return scatter_sorted<I, uint32_t>(l, o, g, idx, n, d, v);
    return scatter_sorted<I, uint64_t>(l, o, g, idx, n, d, v);
}

ember_status k_scatter_rows(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t v = x->n->shape[0], d = x->n->shape[1], n = ember_tensor_numel(x->src[0]);
    int64_t pos, val;
    EMBER_TRY(first_bad_index(l, x->src[0], v, &pos, &val));
    if (pos >= 0)
        return ember__error(EMBER_ERR_INDEX, "%s: index %lld at position %lld outside table rows [0, %lld)",
                            "scatter_rows", (long long)val, (long long)pos, (long long)v);
    float *o = fptr(x->out);
    EMBER_TRY(zero(l, o, ember__node_bytes(x->n)));
    if (n == 0 || d == 0) return EMBER_OK;
    const void *idx = ember__tensor_ptr(x->src[0]);
    if (x->src[0]->dtype == EMBER_DTYPE_I32) return scatter_for(l, o, fptr(x->src[1]), (const int32_t *)idx, n, d, v);
    return scatter_for(l, o, fptr(x->src[1]), (const int64_t *)idx, n, d, v);
}

/* ------------------------------------------------------------------------------------ */
/* DLRM interaction                                                                      */

/* Pair k of the strict lower triangle, in the order (1,0), (2,0), (2,1), (3,0), ...;
   with the diagonal (self = 1), of the lower triangle: (0,0), (1,0), (1,1), (2,0), ...
   Row i starts at pair i (i - 1 + 2 self) / 2 either way. */
__device__ __forceinline__ int64_t pair_row_start(int64_t i, int64_t self) { return i * (i - 1 + 2 * self) / 2; }

__device__ __forceinline__ void pair_of(int64_t k, int64_t self, int64_t *i, int64_t *j) {
    int64_t a = (int64_t)((1.0 - 2.0 * (double)self + sqrt(1.0 + 8.0 * (double)k)) * 0.5);
    if (a < 1 - self) a = 1 - self;
    while (a > 1 - self && pair_row_start(a, self) > k) a--;
    while (pair_row_start(a + 1, self) <= k) a++;
    *i = a;
    *j = k - pair_row_start(a, self);
}

/*
 * Both interaction ops read a sample's f vectors through one accessor: row 0 at z + s zs,
 * row r > 0 at e + s es + (r - 1) d. ember_op_interaction's t (B, f, d) is z = t,
 * e = t + d, zs = es = f d; ember_op_dot_interaction's z (B, d) and e (B, (f - 1) d)
 * are read in place. So one forward and one backward kernel serve both.
 */
struct Rows {
    const float *z, *e;
    int64_t zs, es, f, d;
    __device__ __forceinline__ const float *row(int64_t s, int64_t r) const {
        return r ? e + s * es + (r - 1) * d : z + s * zs;
    }
};

static Rows rows_of_t(const float *t, int64_t f, int64_t d) { return Rows{t, t + d, f * d, f * d, f, d}; }
static Rows rows_of_cat(const float *z, const float *e, int64_t f, int64_t d) {
    return Rows{z, e, d, (f - 1) * d, f, d};
}

/* out[s, lead + k] = <row i, row j> of pair k, in the lane order of engine/lanes.h like
   the CPU; out[s, c < lead] = z[s, c] (lead: 0, or d for [z | pairs]); w = lead + pairs. */
__global__ void interaction_kernel(float *o, Rows t, int64_t b, int64_t w, int64_t lead, int64_t self) {
    const int64_t total = b * w;
    for (int64_t x = global_tid(); x < total; x += grid_stride()) {
        const int64_t s = x / w, k = x - s * w;
        if (k < lead) {
            o[x] = t.row(s, 0)[k];
            continue;
        }
        int64_t i, j;
        pair_of(k - lead, self, &i, &j);
        o[x] = ember__dot_lanes(t.row(s, i), t.row(s, j), t.d); /* the CPU's function: the same bits */
    }
}

static ember_status launch_interaction(const ember__exec *x, Rows t, int64_t b, int64_t w, int64_t lead) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    if (b * w == 0) return EMBER_OK;
    interaction_kernel<<<grid_for(b * w), kThreads, 0, l.stream>>>(fptr(x->out), t, b, w, lead, x->n->ip[0] != 0);
    return check_launch(l, "interaction_kernel");
}

ember_status k_interaction(const ember__exec *x) {
    const ember_node *t = x->n->src[0];
    return launch_interaction(x, rows_of_t(fptr(x->src[0]), t->shape[1], t->shape[2]), t->shape[0], x->n->shape[1], 0);
}

ember_status k_interaction_cat(const ember__exec *x) {
    const ember_node *z = x->n->src[0];
    const int64_t d = z->shape[1], f = x->n->src[1]->shape[1] / d + 1;
    return launch_interaction(x, rows_of_cat(fptr(x->src[0]), fptr(x->src[1]), f, d), z->shape[0], x->n->shape[1], d);
}

/*
 * Rows [r0, r0 + nrows) of dT, row r at o + ((s nrows + r - r0) d):
 * dT_r = sum_{j<r} g_rj T_j (+ g_rr T_r + g_rr T_r with the diagonal) + sum_{i>r} g_ir T_i,
 * with sample s's pair gradients at gr + s gs. The CPU sums row r over j in exactly
 * this order (the pairs (r, j <= r) before the pairs (i > r, r), the pair (r, r)'s two
 * terms one after the other), so one thread per (s, r, c) reproduces its sums. add
 * (stride aw per sample, or NULL) is added last: z's own gradient in [z | pairs].
 */
__global__ void interaction_bwd_kernel(float *o, Rows t, const float *gr, int64_t gs, int64_t b, int64_t r0,
                                       int64_t nrows, int64_t self, const float *add, int64_t aw) {
    const int64_t d = t.d, f = t.f, total = b * nrows * d;
    for (int64_t x = global_tid(); x < total; x += grid_stride()) {
        const int64_t s = x / (nrows * d), rc = x - s * nrows * d, r = r0 + rc / d, c = rc - (r - r0) * d;
        const float *g = gr + s * gs;
        const int64_t row = pair_row_start(r, self);
        float acc = 0;
        for (int64_t j = 0; j < r; j++) acc = __fadd_rn(acc, __fmul_rn(g[row + j], t.row(s, j)[c]));
        if (self) {
            const float gt = __fmul_rn(g[row + r], t.row(s, r)[c]);
            acc = __fadd_rn(__fadd_rn(acc, gt), gt);
        }
        for (int64_t i = r + 1; i < f; i++)
            acc = __fadd_rn(acc, __fmul_rn(g[pair_row_start(i, self) + r], t.row(s, i)[c]));
        o[x] = add ? __fadd_rn(add[s * aw + c], acc) : acc;
    }
}

static ember_status launch_interaction_bwd(const ember__exec *x, Rows t, const float *gr, int64_t gs, int64_t b,
                                           int64_t r0, int64_t nrows, const float *add, int64_t aw) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    if (b * nrows * t.d == 0) return EMBER_OK;
    interaction_bwd_kernel<<<grid_for(b * nrows * t.d), kThreads, 0, l.stream>>>(
        fptr(x->out), t, gr, gs, b, r0, nrows, x->n->ip[0] != 0, add, aw);
    return check_launch(l, "interaction_bwd_kernel");
}

ember_status k_interaction_bwd(const ember__exec *x) {
    const ember_node *t = x->n->src[0];
    const int64_t b = t->shape[0], f = t->shape[1], d = t->shape[2], self = x->n->ip[0] != 0;
    return launch_interaction_bwd(x, rows_of_t(fptr(x->src[0]), f, d), fptr(x->src[1]), f * (f - 1 + 2 * self) / 2, b,
                                  0, f, nullptr, 0);
}

/* ember_op_dot_interaction's two gradients (ip[1] = 0: z's row 0 plus its copy's
   gradient; 1: e's rows) from the output gradient [g_z | g_pairs] (B, w). */
ember_status k_interaction_cat_bwd(const ember__exec *x) {
    const ember_node *z = x->n->src[0];
    const int64_t b = z->shape[0], d = z->shape[1], f = x->n->src[1]->shape[1] / d + 1, self = x->n->ip[0] != 0;
    const int64_t w = d + f * (f - 1 + 2 * self) / 2;
    const float *go = fptr(x->src[2]);
    Rows t = rows_of_cat(fptr(x->src[0]), fptr(x->src[1]), f, d);
    if (x->n->ip[1]) return launch_interaction_bwd(x, t, go + d, w, b, 1, f - 1, nullptr, 0);
    return launch_interaction_bwd(x, t, go + d, w, b, 0, 1, go, w);
}

/* ------------------------------------------------------------------------------------ */
/* reductions                                                                            */

struct Elem2 {
    const float *x;
    int64_t inner;
    __device__ __forceinline__ double operator()(int64_t r, int64_t c) const { return (double)x[r * inner + c]; }
};

/* Reduce the leading dims of g down to the node's (trailing) shape, in the CPU's order
 * (inner == 1, a scalar's gradient, included: one column). */
ember_status k_sum_to(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t inner = ember__node_numel(x->n), total = ember_tensor_numel(x->src[0]);
    const int64_t rows = inner ? total / inner : 0;
    return column_sum(l, fptr(x->out), Elem2{fptr(x->src[0]), inner}, rows, inner);
}

/* ------------------------------------------------------------------------------------ */
/* losses                                                                                */

/* max(x, 0) - x y + log(1 + exp(-|x|)), in double */
struct BceTerm {
    const float *lg, *lb;
    __device__ __forceinline__ double operator()(int64_t i) const {
        const double v = lg[i];
        return __dadd_rn(__dsub_rn(v > 0 ? v : 0.0, __dmul_rn(v, (double)lb[i])), log1p(exp(-fabs(v))));
    }
};

ember_status k_bce(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t n = ember_tensor_numel(x->src[0]);
    return total_sum(l, fptr(x->out), BceTerm{fptr(x->src[0]), fptr(x->src[1])}, n, (double)n);
}

/* (sigmoid(x) - y) * gsc / n; gsc, the incoming gradient, is read on the device. */
__global__ void bce_bwd_kernel(float *o, const float *lg, const float *lb, const float *gsc_p, int64_t n) {
    const float gsc = *gsc_p;
    const float inv = n ? gsc / (float)n : 0.0f;
    for (int64_t i = global_tid(); i < n; i += grid_stride())
        o[i] = __fmul_rn(__fsub_rn(1.0f / (1.0f + expf(-lg[i])), lb[i]), inv);
}

ember_status k_bce_bwd(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const int64_t n = ember_tensor_numel(x->src[0]);
    if (n == 0) return EMBER_OK;
    bce_bwd_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(fptr(x->out), fptr(x->src[0]), fptr(x->src[1]),
                                                           fptr(x->src[2]), n);
    return check_launch(l, "bce_bwd_kernel");
}

/* Row max (as the CPU's running max) and sum of exp(x - max) in double. */
__device__ __forceinline__ void ce_row(const float *lr, int64_t c, float *partf, double *partd, double *mx,
                                       double *s) {
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) m = MaxOp()(m, lr[j]);
    *mx = block_reduce(m, partf, MaxOp());
    double acc = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) acc += exp((double)lr[j] - *mx);
    *s = block_reduce(acc, partd, SumOp());
}

/* loss[r] = max + log(sum) - x[r, y_r] */
template <class I>
__global__ void ce_rows_kernel(double *loss, const float *lg, const I *lab, int64_t rows, int64_t c) {
    __shared__ float partf[kRowThreadsMax];
    __shared__ double partd[kRowThreadsMax];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *lr = lg + r * c;
        double mx, s;
        ce_row(lr, c, partf, partd, &mx, &s);
        if (threadIdx.x == 0) loss[r] = mx + log(s) - (double)lr[(int64_t)lab[r]];
    }
}

struct RowLoss {
    const double *loss;
    __device__ __forceinline__ double operator()(int64_t i) const { return loss[i]; }
};

ember_status check_labels(const Launch &l, const ember__exec *x, int64_t c) {
    int64_t pos, val;
    EMBER_TRY(first_bad_index(l, x->src[1], c, &pos, &val));
    if (pos >= 0)
        return ember__error(EMBER_ERR_INDEX, "softmax_cross_entropy: label %lld of row %lld outside [0, %lld)",
                            (long long)val, (long long)pos, (long long)c);
    return EMBER_OK;
}

ember_status k_ce(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const ember_node *lgn = x->n->src[0];
    const int64_t rows = lgn->shape[0], c = lgn->shape[1];
    EMBER_TRY(check_labels(l, x, c));
    Scratch s(l);
    EMBER_TRY(s.alloc((size_t)rows * sizeof(double), "row losses"));
    double *loss = (double *)s.get();
    if (rows > 0) {
        const void *lab = ember__tensor_ptr(x->src[1]);
        if (x->src[1]->dtype == EMBER_DTYPE_I32)
            ce_rows_kernel<int32_t><<<row_grid(rows), row_threads(c), 0, l.stream>>>(loss, fptr(x->src[0]),
                                                                                     (const int32_t *)lab, rows, c);
        else
            ce_rows_kernel<int64_t><<<row_grid(rows), row_threads(c), 0, l.stream>>>(loss, fptr(x->src[0]),
                                                                                     (const int64_t *)lab, rows, c);
        EMBER_TRY(check_launch(l, "ce_rows_kernel"));
    }
    EMBER_TRY(total_sum(l, fptr(x->out), RowLoss{loss}, rows, (double)rows));
    return s.release();
}

/* (softmax(x) - onehot(y)) * gsc / rows */
template <class I>
__global__ void ce_bwd_kernel(float *o, const float *lg, const I *lab, const float *gsc_p, int64_t rows, int64_t c) {
    __shared__ float partf[kRowThreadsMax];
    __shared__ double partd[kRowThreadsMax];
    const double gsc = *gsc_p;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *lr = lg + r * c;
        double mx, s;
        ce_row(lr, c, partf, partd, &mx, &s);
        const int64_t y = (int64_t)lab[r];
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x)
            o[r * c + j] = (float)((exp((double)lr[j] - mx) / s - (j == y ? 1.0 : 0.0)) * gsc / (double)rows);
    }
}

ember_status k_ce_bwd(const ember__exec *x) {
    Launch l;
    EMBER_TRY(begin(x, &l));
    const ember_node *lgn = x->n->src[0];
    const int64_t rows = lgn->shape[0], c = lgn->shape[1];
    EMBER_TRY(check_labels(l, x, c));
    if (rows == 0 || c == 0) return EMBER_OK;
    const void *lab = ember__tensor_ptr(x->src[1]);
    if (x->src[1]->dtype == EMBER_DTYPE_I32)
        ce_bwd_kernel<int32_t><<<row_grid(rows), row_threads(c), 0, l.stream>>>(
            fptr(x->out), fptr(x->src[0]), (const int32_t *)lab, fptr(x->src[2]), rows, c);
    else
        ce_bwd_kernel<int64_t><<<row_grid(rows), row_threads(c), 0, l.stream>>>(
            fptr(x->out), fptr(x->src[0]), (const int64_t *)lab, fptr(x->src[2]), rows, c);
    return check_launch(l, "ce_bwd_kernel");
}

/* ------------------------------------------------------------------------------------ */
/* the table                                                                             */

/* By op, whatever the enum's order; a NULL entry makes the executor report
 * EMBER_ERR_UNSUPPORTED naming the op. */
constexpr ember__kernel kernel_for(int op) {
    switch (op) {
    case EMBER__OP_MATMUL: return k_matmul;
    case EMBER__OP_ADD: return k_add;
    case EMBER__OP_MUL: return k_mul;
    case EMBER__OP_SCALE: return k_scale;
    case EMBER__OP_RELU: return k_relu;
    case EMBER__OP_SIGMOID: return k_sigmoid;
    case EMBER__OP_TANH: return k_tanh;
    case EMBER__OP_GELU: return k_gelu;
    case EMBER__OP_LAYERNORM: return k_layernorm;
    case EMBER__OP_SOFTMAX: return k_softmax<false>;
    case EMBER__OP_LOG_SOFTMAX: return k_softmax<true>;
    case EMBER__OP_CAUSAL_MASK: return k_causal_mask;
    case EMBER__OP_CONCAT: return k_concat;
    case EMBER__OP_SLICE: return k_slice;
    case EMBER__OP_RESHAPE: return k_reshape;
    case EMBER__OP_PERMUTE: return k_permute;
    case EMBER__OP_GATHER_ROWS: return k_gather_rows;
    case EMBER__OP_INTERACTION: return k_interaction;
    case EMBER__OP_INTERACTION_CAT: return k_interaction_cat;
    case EMBER__OP_DROPOUT: return k_dropout;
    case EMBER__OP_SUM: return k_sum;
    case EMBER__OP_BCE_WITH_LOGITS: return k_bce;
    case EMBER__OP_SOFTMAX_CE: return k_ce;
    case EMBER__OP_FILL: return k_fill;
    case EMBER__OP_EXPAND: return k_expand;
    case EMBER__OP_SUM_TO: return k_sum_to;
    case EMBER__OP_PAD: return k_pad;
    case EMBER__OP_RELU_BWD: return k_pair<ReluBwd>;
    case EMBER__OP_SIGMOID_BWD: return k_pair<SigmoidBwd>;
    case EMBER__OP_TANH_BWD: return k_pair<TanhBwd>;
    case EMBER__OP_GELU_BWD: return k_pair<GeluBwd>;
    case EMBER__OP_LAYERNORM_BWD_X: return k_layernorm_bwd_x;
    case EMBER__OP_LAYERNORM_BWD_GAMMA: return k_layernorm_bwd_gamma;
    case EMBER__OP_SOFTMAX_BWD: return k_softmax_bwd<false>;
    case EMBER__OP_LOG_SOFTMAX_BWD: return k_softmax_bwd<true>;
    case EMBER__OP_SCATTER_ROWS: return k_scatter_rows;
    case EMBER__OP_INTERACTION_BWD: return k_interaction_bwd;
    case EMBER__OP_INTERACTION_CAT_BWD: return k_interaction_cat_bwd;
    case EMBER__OP_BCE_BWD: return k_bce_bwd;
    case EMBER__OP_SOFTMAX_CE_BWD: return k_ce_bwd;
    /* the collection's API runs on the collection's device */
    case EMBER__OP_EMBEDDING_BAG: return ember__ebc_forward_kernel;
    case EMBER__OP_EMBEDDING_BAG_UPDATE: return ember__ebc_update_kernel;
    default: return nullptr; /* INPUT, PARAM: leaves are never scheduled */
    }
}

} // namespace

extern "C" ember__kernel ember__graph_cuda_kernel(int op) { return kernel_for(op); }
