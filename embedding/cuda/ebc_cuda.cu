/*
 * embedding/cuda/ebc_cuda.cu: GPU embedding-bag kernels behind embedding/ebc_internal.h.
 *
 * Two formulations of the same arithmetic (ember/embedding.h):
 *  - WARP: forward gives each bag a sub-warp of the smallest power of two >= dim lanes
 *    (at most 32), lanes striding over columns so a row read is one coalesced
 *    transaction, sums in registers. Backward sorts (id, position) pairs with CUB's
 *    radix sort (stable: positions stay ascending inside an id), run-length encodes the
 *    ids, and gives each unique id one warp that sums its run's gradient in that order
 *    and applies the optimizer to the row in place: deterministic, no atomics, no
 *    dense gradient. Rows wider than 32 * kMaxC columns take the same path through a
 *    (unique ids, dim) gradient buffer.
 *  - CUSPARSE: a batch is a CSR matrix A (bags x rows, values = per-sample weight /
 *    bag length). Forward is out = A @ table (SpMM on the records as a row-major matrix
 *    with the record stride as leading dimension; f32 rows only, other formats use
 *    WARP). Backward builds A^T restricted to the batch's unique ids as CSR (it is the
 *    sorted run structure) and computes the coalesced gradients G = A^T @ dY with SpMM
 *    (non-transposed, hence deterministic), then the same per-row optimizer kernel.
 * Every entry runs on the calling thread's current stream and does not wait, except
 * validation (one small copy back) and the cuSPARSE backward (the unique-id count
 * sizes its matrices).
 */
#include <cuda_runtime.h>
#ifdef EMBER_HAVE_CUSPARSE
#include <cusparse.h>
#endif

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>

#include <stdint.h>
#include <string.h>

#include "embedding/ebc_internal.h"
#include "embedding/ebc_math.h"
#include "engine/cuda/cuda_runtime.h" /* ember's header, not CUDA's cuda_runtime.h */
#include "engine/internal.h"

namespace {

constexpr int kBlock = 256;
constexpr int kMaxC = 8; /* columns per lane held in registers */
constexpr int kWarp = 32;

struct Ctx {
    int dev = -1;
    cudaStream_t stream = nullptr;
};

ember_status enter(int dev, const char *fn, Ctx *c) {
    cudaError_t err = cudaSetDevice(dev);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return ember__error(EMBER_ERR_CUDA, "%s: cudaSetDevice(%d): %s", fn, dev, cudaGetErrorString(err));
    }
    c->dev = dev;
    c->stream = (cudaStream_t)ember__cuda_current_stream(dev);
    return EMBER_OK;
}

ember_status check(cudaError_t err, const Ctx &c, const char *what) {
    if (err == cudaSuccess) err = cudaGetLastError();
    if (err == cudaSuccess) return EMBER_OK;
    (void)cudaGetLastError();
    return ember__error(EMBER_ERR_CUDA, "%s on cuda:%d: %s", what, c.dev, cudaGetErrorString(err));
}

unsigned blocks_for(int64_t threads) {
    int64_t b = (threads + kBlock - 1) / kBlock;
    if (b < 1) b = 1;
    if (b > 2147483647) b = 2147483647;
    return (unsigned)b;
}

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

int bits_for(uint64_t x) {
    int b = 0;
    while (b < 64 && (x >> b)) b++;
    return b;
}

/* ---- warp reductions: a fixed butterfly, so every lane gets the same bits ---- */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_min(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- row access: typed loads and stores (records are 4-byte aligned, so f32 values,
 * 16-bit halves and the int8 header are naturally aligned; a memcpy through char would
 * compile to byte loads) ---- */

__device__ __forceinline__ void dheader(const char *rec, float *sc, float *bi) {
    *sc = reinterpret_cast<const float *>(rec)[0];
    *bi = reinterpret_cast<const float *>(rec)[1];
}

template <int FMT>
__device__ __forceinline__ float dload(const char *rec, int j, float sc, float bi) {
    if (FMT == EMBER_ROW_FORMAT_F32) return reinterpret_cast<const float *>(rec)[j];
    if (FMT == EMBER_ROW_FORMAT_F16) return ember__f16_to_f32(reinterpret_cast<const uint16_t *>(rec)[j]);
    if (FMT == EMBER_ROW_FORMAT_BF16) return ember__bf16_to_f32(reinterpret_cast<const uint16_t *>(rec)[j]);
    return (float)reinterpret_cast<const uint8_t *>(rec)[EMBER__Q8_HEADER + j] * sc + bi;
}

__device__ __forceinline__ void dstore_header(char *rec, float sc, float bi) {
    reinterpret_cast<float *>(rec)[0] = sc;
    reinterpret_cast<float *>(rec)[1] = bi;
}

/* ---- validation ---- */

__global__ void validate_kernel(const ember__ebc_tdesc t, int64_t batch, int *flag) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t *off = t.offsets;
    int bad = 0;
    for (int64_t b = tid; b < batch; b += stride)
        if (off[b + 1] < off[b]) bad = 1;
    if (tid == 0 && (off[0] < 0 || off[batch] > t.length)) bad = 1;
    /* ids of the used range, clamped so bad offsets cannot send us out of the arrays */
    int64_t lo = off[0] < 0 ? 0 : off[0];
    int64_t hi = off[batch] > t.length ? t.length : off[batch];
    for (int64_t k = lo + tid; k < hi; k += stride)
        if (t.values[k] < 0 || t.values[k] >= t.rows) bad = 1;
    if (bad) atomicOr(flag, 1);
}

/* ---- forward (WARP) ---- */

template <int FMT>
__global__ void forward_kernel(const ember__ebc_tdesc t, int64_t batch, float *out, int64_t ld,
                               int lanes_log2) {
    const int lanes = 1 << lanes_log2;
    const int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t b = g >> lanes_log2;
    const int lane = (int)(g & (lanes - 1));
    if (b >= batch) return;
    const int64_t s = t.offsets[b], e = t.offsets[b + 1];
    const float scale = t.pooling == EMBER_POOLING_MEAN && e > s ? 1.0f / (float)(e - s) : 1.0f;
    float *dst = out + b * ld + t.out_col;
    for (int c0 = 0; c0 < t.dim; c0 += lanes * kMaxC) {
        float acc[kMaxC];
#pragma unroll
        for (int i = 0; i < kMaxC; i++) acc[i] = 0.0f;
        for (int64_t k = s; k < e; k++) {
            const char *rec = t.base + t.values[k] * t.stride;
            const float w = t.weights ? t.weights[k] : 1.0f;
            float sc = 0.0f, bi = 0.0f;
            if (FMT == EMBER_ROW_FORMAT_INT8_ROWWISE) dheader(rec, &sc, &bi);
#pragma unroll
            for (int i = 0; i < kMaxC; i++) {
                const int c = c0 + lane + i * lanes;
                if (c < t.dim) acc[i] += w * dload<FMT>(rec, c, sc, bi);
            }
        }
#pragma unroll
        for (int i = 0; i < kMaxC; i++) {
            const int c = c0 + lane + i * lanes;
            if (c < t.dim) dst[c] = acc[i] * scale;
        }
    }
}

/* ---- backward ---- */

/*
 * Sort keys over all of values (so the host never needs the offsets): positions outside
 * [offsets[0], offsets[B]) get the key `rows`, which no valid id has, and sort into a
 * last run that every kernel skips.
 */
__global__ void keys_kernel(const ember__ebc_tdesc t, int64_t batch, uint64_t *keys, int32_t *pos) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t lo = t.offsets[0], hi = t.offsets[batch];
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < t.length; k += stride) {
        keys[k] = k >= lo && k < hi ? (uint64_t)t.values[k] : (uint64_t)t.rows;
        pos[k] = (int32_t)k;
    }
}

/* For every position k of a bag b: bag_of[k] = b, coef[k] = weight * (mean ? 1 / len : 1). */
__global__ void bags_kernel(const ember__ebc_tdesc t, int64_t batch, int32_t *bag_of, float *coef) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < batch; b += stride) {
        const int64_t s = t.offsets[b], e = t.offsets[b + 1];
        const float scale = t.pooling == EMBER_POOLING_MEAN && e > s ? 1.0f / (float)(e - s) : 1.0f;
        for (int64_t k = s; k < e; k++) {
            bag_of[k] = (int32_t)b;
            coef[k] = t.weights ? t.weights[k] * scale : scale;
        }
    }
}

/* run_start[num_runs] = n, so run r is [run_start[r], run_start[r + 1]) */
__global__ void close_runs_kernel(int32_t *run_start, const int32_t *num_runs, int64_t n) {
    run_start[*num_runs] = (int32_t)n;
}

/* Per-row state pointer and loads/stores of the weights, for lane-strided columns. */
struct Row {
    char *rec;
    float *state;
    float sc, bi;
};

template <int FMT>
__device__ __forceinline__ Row open_row(const ember__ebc_tdesc &t, uint64_t id) {
    Row r;
    r.rec = t.base + (int64_t)id * t.stride;
    r.state = (float *)(r.rec + t.state_offset);
    r.sc = r.bi = 0.0f;
    if (FMT == EMBER_ROW_FORMAT_INT8_ROWWISE) dheader(r.rec, &r.sc, &r.bi);
    return r;
}

template <int FMT>
__device__ __forceinline__ void store_elem(char *rec, int j, float v) {
    if (FMT == EMBER_ROW_FORMAT_F32)
        reinterpret_cast<float *>(rec)[j] = v;
    else
        reinterpret_cast<uint16_t *>(rec)[j] = FMT == EMBER_ROW_FORMAT_F16 ? ember__f32_to_f16(v)
                                                                          : ember__f32_to_bf16(v);
}

/* One element's optimizer step (rowwise Adagrad: mul precomputed for the row). */
__device__ __forceinline__ float step_elem(const ember__ebc_optim &o, float w, float g, float *st,
                                           int j, int dim, float mul) {
    switch (o.type) {
    case EMBER_SPARSE_OPTIM_SGD: return ember__opt_sgd(w, g, o.lr);
    case EMBER_SPARSE_OPTIM_ADAGRAD: return ember__opt_adagrad(w, g, &st[j], o.lr, o.eps);
    case EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD: return ember__opt_rowwise(w, g, mul);
    case EMBER_SPARSE_OPTIM_ADAMW:
        if (o.weight_decay > 0.0f) w = w * o.decay;
        return ember__opt_adam(w, g, &st[j], &st[dim + j], &o);
    default: return ember__opt_adam(w, g, &st[j], &st[dim + j], &o);
    }
}

/* The row-wide scalars: rowwise Adagrad's multiplier (state updated by lane 0). */
__device__ __forceinline__ float row_multiplier(const ember__ebc_optim &o, float *state, float ss,
                                                int dim, int lane) {
    if (o.type != EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD) return 0.0f;
    float ns = state[0] + ss / (float)dim;
    __syncwarp();
    if (lane == 0) state[0] = ns;
    return o.lr / (sqrtf(ns) + o.eps);
}

/*
 * A run's positions base .. base + 31 (below k1), one per lane: its bag and coefficient.
 * The run's sum then takes them from lane e in turn (a shuffle), so a hot id's long run
 * costs one round of dependent loads (pos -> bag, coef) per 32 positions instead of one
 * per position; the order of the sum, and so every bit of it, is unchanged.
 */
struct RunMeta {
    int32_t bag;
    float c;
};

__device__ __forceinline__ RunMeta run_meta(const int32_t *pos, const int32_t *bag_of, const float *coef,
                                            int32_t base, int32_t k1, int lane) {
    RunMeta m = {0, 0.0f};
    if (base + lane < k1) {
        const int32_t p = pos[base + lane];
        m.bag = bag_of[p];
        m.c = coef[p];
    }
    return m;
}

/* g[i] (lane's columns lane + 32 i) += the run's gradient over sorted positions [a, b), in order. */
__device__ __forceinline__ void sum_positions(const int32_t *pos, const int32_t *bag_of, const float *coef,
                                              const float *grad, int64_t ld, int64_t out_col, int dim,
                                              int32_t a, int32_t b, int lane, float *g) {
    for (int32_t base = a; base < b; base += kWarp) {
        const RunMeta m = run_meta(pos, bag_of, coef, base, b, lane);
        const int cnt = b - base < kWarp ? b - base : kWarp;
#pragma unroll 4
        for (int e = 0; e < cnt; e++) {
            const float c = __shfl_sync(0xffffffffu, m.c, e);
            const float *dy = grad + (int64_t)__shfl_sync(0xffffffffu, m.bag, e) * ld + out_col;
#pragma unroll
            for (int i = 0; i < kMaxC; i++) {
                const int j = lane + i * kWarp;
                if (j < dim) g[i] += c * dy[j];
            }
        }
    }
}

/*
 * Runs longer than kLongRun (a hot id of a skewed batch holds thousands of positions)
 * are summed by a block instead of one warp: warp w sums the w-th of kLongWarps
 * contiguous pieces in order, then warp 0 adds the pieces in order into G[run] (the
 * fused kernel takes it from there). Deterministic; the grid strides over the runs,
 * so no count comes back to the host.
 */
constexpr int kLongRun = 128;
constexpr int kLongWarps = 16;

__global__ void __launch_bounds__(kLongWarps * kWarp)
long_runs_kernel(const ember__ebc_tdesc t, const uint64_t *ids, const int32_t *pos, const int32_t *run_start,
                 const int32_t *num_runs, const int32_t *bag_of, const float *coef, const float *grad,
                 int64_t ld, float *G) {
    __shared__ float part[kLongWarps][kWarp * kMaxC];
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x & (kWarp - 1);
    const int dim = t.dim;
    const int64_t nr = *num_runs;
    for (int64_t run = blockIdx.x; run < nr; run += gridDim.x) {
        const int32_t k0 = run_start[run], k1 = run_start[run + 1];
        if (k1 - k0 <= kLongRun || ids[k0] >= (uint64_t)t.rows) continue; /* the same for the block */
        const int32_t piece = (k1 - k0 + kLongWarps - 1) / kLongWarps;
        const int32_t a = k0 + warp * piece < k1 ? k0 + warp * piece : k1;
        const int32_t b = a + piece < k1 ? a + piece : k1;
        float g[kMaxC];
#pragma unroll
        for (int i = 0; i < kMaxC; i++) g[i] = 0.0f;
        sum_positions(pos, bag_of, coef, grad, ld, t.out_col, dim, a, b, lane, g);
#pragma unroll
        for (int i = 0; i < kMaxC; i++) part[warp][lane + i * kWarp] = g[i];
        __syncthreads();
        if (warp == 0)
            for (int j = lane; j < dim; j += kWarp) {
                float acc = 0.0f;
                for (int w = 0; w < kLongWarps; w++) acc += part[w][j];
                G[run * (int64_t)dim + j] = acc;
            }
        __syncthreads();
    }
}

/*
 * Fused: one warp per unique id, lane l holds columns l + 32 i (i < kMaxC). The run's
 * gradient is summed in sorted order (positions ascending), then clipped, L2-decayed
 * and applied; int8 rows are re-quantised over the warp's min/max.
 */
template <int FMT>
__global__ void update_fused_kernel(const ember__ebc_tdesc t, const uint64_t *ids,
                                    const int32_t *pos, const int32_t *run_start,
                                    const int32_t *num_runs, const int32_t *bag_of,
                                    const float *coef, const float *grad, int64_t ld,
                                    const float *G, const ember__ebc_optim o) {
    const int64_t run = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / kWarp;
    const int lane = threadIdx.x & (kWarp - 1);
    if (run >= *num_runs) return;
    const int dim = t.dim;
    const int32_t k0 = run_start[run], k1 = run_start[run + 1];
    if (ids[k0] >= (uint64_t)t.rows) return; /* positions outside the bags */
    float g[kMaxC];
#pragma unroll
    for (int i = 0; i < kMaxC; i++) g[i] = 0.0f;
    if (k1 - k0 > kLongRun) { /* summed by long_runs_kernel */
#pragma unroll
        for (int i = 0; i < kMaxC; i++) {
            const int j = lane + i * kWarp;
            if (j < dim) g[i] = G[run * (int64_t)dim + j];
        }
    } else {
        sum_positions(pos, bag_of, coef, grad, ld, t.out_col, dim, k0, k1, lane, g);
    }
    Row r = open_row<FMT>(t, ids[k0]);
    float w[kMaxC];
#pragma unroll
    for (int i = 0; i < kMaxC; i++) {
        const int j = lane + i * kWarp;
        w[i] = j < dim ? dload<FMT>(r.rec, j, r.sc, r.bi) : 0.0f;
    }
    if (o.max_grad_norm > 0.0f) {
        float ss = 0.0f;
#pragma unroll
        for (int i = 0; i < kMaxC; i++) ss += g[i] * g[i];
        const float cc = ember__clip_coef(warp_sum(ss), o.max_grad_norm);
        if (cc < 1.0f)
#pragma unroll
            for (int i = 0; i < kMaxC; i++) g[i] *= cc;
    }
    if (o.weight_decay > 0.0f && o.type != EMBER_SPARSE_OPTIM_ADAMW)
#pragma unroll
        for (int i = 0; i < kMaxC; i++) g[i] = g[i] + o.weight_decay * w[i];
    float mul = 0.0f;
    if (o.type == EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD) {
        float ss = 0.0f;
#pragma unroll
        for (int i = 0; i < kMaxC; i++) ss += g[i] * g[i];
        mul = row_multiplier(o, r.state, warp_sum(ss), dim, lane);
    }
    float mn = 3.0e38f, mx = -3.0e38f;
#pragma unroll
    for (int i = 0; i < kMaxC; i++) {
        const int j = lane + i * kWarp;
        if (j < dim) {
            w[i] = step_elem(o, w[i], g[i], r.state, j, dim, mul);
            mn = fminf(mn, w[i]);
            mx = fmaxf(mx, w[i]);
        }
    }
    if (FMT != EMBER_ROW_FORMAT_INT8_ROWWISE) {
#pragma unroll
        for (int i = 0; i < kMaxC; i++) {
            const int j = lane + i * kWarp;
            if (j < dim) store_elem<FMT>(r.rec, j, w[i]);
        }
    } else {
        float sc, bi;
        ember__q8_params(warp_min(mn), warp_max(mx), &sc, &bi);
        if (lane == 0) dstore_header(r.rec, sc, bi);
#pragma unroll
        for (int i = 0; i < kMaxC; i++) {
            const int j = lane + i * kWarp;
            if (j < dim) r.rec[EMBER__Q8_HEADER + j] = (char)ember__q8_code(w[i], sc, bi);
        }
    }
}

/* Wide rows (WARP path): G[run] = the run's coalesced gradient, columns strided by lane. */
__global__ void coalesce_kernel(const ember__ebc_tdesc t, const uint64_t *ids, const int32_t *pos,
                                const int32_t *run_start, const int32_t *num_runs,
                                const int32_t *bag_of, const float *coef, const float *grad,
                                int64_t ld, float *G) {
    const int64_t run = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / kWarp;
    const int lane = threadIdx.x & (kWarp - 1);
    if (run >= *num_runs) return;
    const int32_t k0 = run_start[run], k1 = run_start[run + 1];
    if (ids[k0] >= (uint64_t)t.rows) return;
    float *gr = G + run * (int64_t)t.dim;
    for (int j = lane; j < t.dim; j += kWarp) gr[j] = 0.0f;
    for (int32_t base = k0; base < k1; base += kWarp) {
        const RunMeta m = run_meta(pos, bag_of, coef, base, k1, lane);
        const int cnt = k1 - base < kWarp ? k1 - base : kWarp;
        for (int e = 0; e < cnt; e++) {
            const float c = __shfl_sync(0xffffffffu, m.c, e);
            const float *dy = grad + (int64_t)__shfl_sync(0xffffffffu, m.bag, e) * ld + t.out_col;
            for (int j = lane; j < t.dim; j += kWarp) gr[j] += c * dy[j];
        }
    }
}

/*
 * Apply G (unique ids x dim, row stride ldg) to the rows: a warp per row, columns
 * strided by lane, in passes (clip norm, then L2 and the rowwise sum, then the step;
 * int8 rows keep their new f32 values in G until the range is known).
 */
template <int FMT>
__global__ void apply_kernel(const ember__ebc_tdesc t, const uint64_t *ids,
                             const int32_t *run_start, const int32_t *num_runs, float *G,
                             int64_t ldg, const ember__ebc_optim o) {
    const int64_t run = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / kWarp;
    const int lane = threadIdx.x & (kWarp - 1);
    if (run >= *num_runs) return;
    const int dim = t.dim;
    const uint64_t id = ids[run_start[run]];
    if (id >= (uint64_t)t.rows) return;
    float *g = G + run * ldg;
    Row r = open_row<FMT>(t, id);
    if (o.max_grad_norm > 0.0f) {
        float ss = 0.0f;
        for (int j = lane; j < dim; j += kWarp) ss += g[j] * g[j];
        const float cc = ember__clip_coef(warp_sum(ss), o.max_grad_norm);
        if (cc < 1.0f)
            for (int j = lane; j < dim; j += kWarp) g[j] *= cc;
    }
    float ss = 0.0f;
    for (int j = lane; j < dim; j += kWarp) {
        float gj = g[j];
        if (o.weight_decay > 0.0f && o.type != EMBER_SPARSE_OPTIM_ADAMW)
            gj = gj + o.weight_decay * dload<FMT>(r.rec, j, r.sc, r.bi);
        g[j] = gj;
        ss += gj * gj;
    }
    __syncwarp();
    const float mul = row_multiplier(o, r.state, warp_sum(ss), dim, lane);
    float mn = 3.0e38f, mx = -3.0e38f;
    for (int j = lane; j < dim; j += kWarp) {
        float w = dload<FMT>(r.rec, j, r.sc, r.bi);
        w = step_elem(o, w, g[j], r.state, j, dim, mul);
        if (FMT == EMBER_ROW_FORMAT_INT8_ROWWISE) {
            g[j] = w;
            mn = fminf(mn, w);
            mx = fmaxf(mx, w);
        } else {
            store_elem<FMT>(r.rec, j, w);
        }
    }
    if (FMT == EMBER_ROW_FORMAT_INT8_ROWWISE) {
        __syncwarp();
        float sc, bi;
        ember__q8_params(warp_min(mn), warp_max(mx), &sc, &bi);
        __syncwarp(); /* every lane has read the old header */
        if (lane == 0) dstore_header(r.rec, sc, bi);
        for (int j = lane; j < dim; j += kWarp) r.rec[EMBER__Q8_HEADER + j] = (char)ember__q8_code(g[j], sc, bi);
    }
}

/* ---- launch helpers ---- */

ember_status launch_forward(const Ctx &c, const ember__ebc_tdesc &t, int64_t batch, float *out,
                            int64_t ld) {
    int lanes_log2 = 0;
    while ((1 << lanes_log2) < t.dim && lanes_log2 < 5) lanes_log2++;
    const unsigned grid = blocks_for(batch << lanes_log2);
    switch (t.format) {
    case EMBER_ROW_FORMAT_F32:
        forward_kernel<EMBER_ROW_FORMAT_F32><<<grid, kBlock, 0, c.stream>>>(t, batch, out, ld, lanes_log2);
        break;
    case EMBER_ROW_FORMAT_F16:
        forward_kernel<EMBER_ROW_FORMAT_F16><<<grid, kBlock, 0, c.stream>>>(t, batch, out, ld, lanes_log2);
        break;
    case EMBER_ROW_FORMAT_BF16:
        forward_kernel<EMBER_ROW_FORMAT_BF16><<<grid, kBlock, 0, c.stream>>>(t, batch, out, ld, lanes_log2);
        break;
    default:
        forward_kernel<EMBER_ROW_FORMAT_INT8_ROWWISE><<<grid, kBlock, 0, c.stream>>>(t, batch, out, ld,
                                                                                    lanes_log2);
        break;
    }
    return check(cudaSuccess, c, "ember_ebc_forward: forward_kernel");
}

template <int FMT>
void launch_update_fmt(const Ctx &c, unsigned grid, const ember__ebc_tdesc &t, const uint64_t *ids,
                       const int32_t *pos, const int32_t *run_start, const int32_t *num_runs,
                       const int32_t *bag_of, const float *coef, const float *grad, int64_t ld,
                       float *G, const ember__ebc_optim &o) {
    if (t.length > kLongRun) {
        /* a block per long run, the grid striding over every run (capped: most are short) */
        int64_t blocks = t.length / kLongRun + 1;
        long_runs_kernel<<<(unsigned)(blocks < 1024 ? blocks : 1024), kLongWarps * kWarp, 0, c.stream>>>(
            t, ids, pos, run_start, num_runs, bag_of, coef, grad, ld, G);
    }
    update_fused_kernel<FMT><<<grid, kBlock, 0, c.stream>>>(t, ids, pos, run_start, num_runs, bag_of,
                                                            coef, grad, ld, G, o);
}

template <int FMT>
void launch_apply_fmt(const Ctx &c, unsigned grid, const ember__ebc_tdesc &t, const uint64_t *ids,
                      const int32_t *run_start, const int32_t *num_runs, float *G, int64_t ldg,
                      const ember__ebc_optim &o) {
    apply_kernel<FMT><<<grid, kBlock, 0, c.stream>>>(t, ids, run_start, num_runs, G, ldg, o);
}

#ifdef EMBER_HAVE_CUSPARSE
ember_status sp_check(cusparseStatus_t s, const Ctx &c, const char *what) {
    if (s == CUSPARSE_STATUS_SUCCESS) return EMBER_OK;
    return ember__error(EMBER_ERR_CUSPARSE, "%s on cuda:%d: %s", what, c.dev, cusparseGetErrorString(s));
}

ember_status sparse_handle(const Ctx &c, void **handle) {
    if (!*handle) {
        cusparseHandle_t h = NULL;
        EMBER_TRY(sp_check(cusparseCreate(&h), c, "cusparseCreate"));
        *handle = (void *)h;
    }
    return sp_check(cusparseSetStream((cusparseHandle_t)*handle, c.stream), c, "cusparseSetStream");
}

__global__ void offsets_kernel(const int64_t *off, int64_t batch, int64_t *norm) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b <= batch; b += stride)
        norm[b] = off[b] - off[0];
}

__global__ void columns_kernel(const int32_t *pos, const int32_t *bag_of, const float *coef, int64_t n,
                               int32_t *col, float *val) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        col[k] = bag_of[pos[k]];
        val[k] = coef[pos[k]];
    }
}

/* C (m x k) = A (CSR m x ka) @ B (ka x k, row-major, ld ldb); C row-major with ld ldc. */
ember_status spmm(const Ctx &c, void **handle, int64_t m, int64_t ka, int64_t nnz,
                  const void *rowoff, const void *colind, const float *vals, cusparseIndexType_t it,
                  const float *B, int64_t k, int64_t ldb, float *C, int64_t ldc, ember__ebc_ws *ws,
                  size_t ws_used, const char *what) {
    EMBER_TRY(sparse_handle(c, handle));
    cusparseHandle_t h = (cusparseHandle_t)*handle;
    cusparseConstSpMatDescr_t A = NULL;
    cusparseConstDnMatDescr_t Bd = NULL;
    cusparseDnMatDescr_t Cd = NULL;
    ember_status st = sp_check(cusparseCreateConstCsr(&A, m, ka, nnz, rowoff, colind, vals, it, it,
                                                      CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F),
                               c, what);
    if (st == EMBER_OK)
        st = sp_check(cusparseCreateConstDnMat(&Bd, ka, k, ldb, B, CUDA_R_32F, CUSPARSE_ORDER_ROW), c, what);
    if (st == EMBER_OK)
        st = sp_check(cusparseCreateDnMat(&Cd, m, k, ldc, C, CUDA_R_32F, CUSPARSE_ORDER_ROW), c, what);
    const float one = 1.0f, zero = 0.0f;
    size_t need = 0;
    if (st == EMBER_OK)
        st = sp_check(cusparseSpMM_bufferSize(h, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                              CUSPARSE_OPERATION_NON_TRANSPOSE, &one, A, Bd, &zero, Cd,
                                              CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, &need),
                      c, what);
    /* The buffer goes after what the caller uses of ws; growing ws would free that. */
    if (st == EMBER_OK && ws_used + align256(need) > ws->bytes)
        st = ember__error(EMBER_ERR_INTERNAL, "%s: cuSPARSE wants %zu B more workspace than reserved",
                          what, need);
    if (st == EMBER_OK)
        st = sp_check(cusparseSpMM(h, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                   &one, A, Bd, &zero, Cd, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT,
                                   need ? (char *)ws->ptr + ws_used : NULL),
                      c, what);
    if (A) cusparseDestroySpMat(A);
    if (Bd) cusparseDestroyDnMat(Bd);
    if (Cd) cusparseDestroyDnMat(Cd);
    return st;
}

/* Headroom reserved for cuSPARSE's SpMM buffer (it asks for little or nothing for CSR). */
constexpr size_t kSpmmReserve = (size_t)16 << 20;
#endif

} // namespace

extern "C" {

ember_status ember__ebc_validate_cuda(int dev, const ember__ebc_tdesc *t, int ntables, int64_t batch,
                                      ember__ebc_ws *ws, int *bad_table) {
    static const char fn[] = "ember_ebc (validate, cuda)";
    *bad_table = -1;
    Ctx c;
    EMBER_TRY(enter(dev, fn, &c));
    EMBER_TRY(ember__ebc_ws_reserve(ws, align256((size_t)ntables * sizeof(int)), fn));
    int *flags = (int *)ws->ptr;
    EMBER_TRY(check(cudaMemsetAsync(flags, 0, (size_t)ntables * sizeof(int), c.stream), c,
                    "validate: cudaMemsetAsync"));
    for (int i = 0; i < ntables; i++) {
        int64_t work = batch > t[i].length ? batch : t[i].length;
        unsigned grid = blocks_for(work);
        if (grid > 4096) grid = 4096;
        validate_kernel<<<grid, kBlock, 0, c.stream>>>(t[i], batch, flags + i);
        EMBER_TRY(check(cudaSuccess, c, "validate_kernel"));
    }
    int host[64];
    for (int i0 = 0; i0 < ntables; i0 += 64) {
        int cnt = ntables - i0 < 64 ? ntables - i0 : 64;
        EMBER_TRY(ember__cuda_memcpy(dev, host, flags + i0, (size_t)cnt * sizeof(int), EMBER__D2H, 1));
        for (int i = 0; i < cnt; i++)
            if (host[i]) {
                *bad_table = i0 + i;
                return EMBER_OK;
            }
    }
    return EMBER_OK;
}

ember_status ember__ebc_forward_cuda(int dev, int kernel, const ember__ebc_tdesc *t, int ntables,
                                     int64_t batch, float *out, int64_t ld, void **sparse_handle,
                                     ember__ebc_ws *ws) {
    static const char fn[] = "ember_ebc_forward (cuda)";
    Ctx c;
    EMBER_TRY(enter(dev, fn, &c));
#ifndef EMBER_HAVE_CUSPARSE
    (void)sparse_handle;
    (void)ws;
    (void)kernel;
#endif
    for (int i = 0; i < ntables; i++) {
        const ember__ebc_tdesc &d = t[i];
#ifdef EMBER_HAVE_CUSPARSE
        if (kernel == EMBER_EBC_CUDA_CUSPARSE && d.format == EMBER_ROW_FORMAT_F32) {
            /* A (batch x rows): row offsets normalised to start at 0, ids as columns,
             * per-sample weight / bag length as values. */
            int64_t off0 = 0, offB = 0;
            EMBER_TRY(ember__cuda_memcpy(dev, &off0, d.offsets, 8, EMBER__D2H, 1));
            EMBER_TRY(ember__cuda_memcpy(dev, &offB, d.offsets + batch, 8, EMBER__D2H, 1));
            const int64_t nnz = offB - off0;
            /* bags_kernel writes bag_of and coef at value positions, [off0, offB) */
            size_t o_off = 0, o_bag = align256((size_t)(batch + 1) * 8);
            size_t o_coef = o_bag + align256((size_t)offB * 4 + 4);
            size_t used = o_coef + align256((size_t)offB * 4 + 4);
            EMBER_TRY(ember__ebc_ws_reserve(ws, used + kSpmmReserve, fn));
            char *w = (char *)ws->ptr;
            int64_t *norm = (int64_t *)(w + o_off);
            int32_t *bag_of = (int32_t *)(w + o_bag);
            float *coef = (float *)(w + o_coef);
            offsets_kernel<<<blocks_for(batch + 1), kBlock, 0, c.stream>>>(d.offsets, batch, norm);
            bags_kernel<<<blocks_for(batch), kBlock, 0, c.stream>>>(d, batch, bag_of, coef);
            EMBER_TRY(check(cudaSuccess, c, "ember_ebc_forward: offsets/bags kernels"));
            EMBER_TRY(spmm(c, sparse_handle, batch, d.rows, nnz, norm, d.values + off0, coef + off0,
                           CUSPARSE_INDEX_64I, (const float *)d.base, d.dim, d.stride / 4,
                           out + d.out_col, ld, ws, used, "ember_ebc_forward: cusparseSpMM"));
            continue;
        }
#endif
        EMBER_TRY(launch_forward(c, d, batch, out, ld));
    }
    return EMBER_OK;
}

ember_status ember__ebc_backward_cuda(int dev, int kernel, const ember__ebc_tdesc *t, int ntables,
                                      int64_t batch, const float *grad, int64_t ld,
                                      const ember__ebc_optim *opt, void **sparse_handle,
                                      ember__ebc_ws *ws) {
    static const char fn[] = "ember_ebc_backward (cuda)";
    Ctx c;
    EMBER_TRY(enter(dev, fn, &c));
#ifndef EMBER_HAVE_CUSPARSE
    (void)sparse_handle;
    (void)kernel;
#endif
    const ember__ebc_optim o = *opt;
    for (int i = 0; i < ntables; i++) {
        const ember__ebc_tdesc &d = t[i];
        const int64_t n = d.length; /* every position of values; see keys_kernel */
        if (n == 0) continue;
        if (n >= INT32_MAX)
            return ember__error(EMBER_ERR_UNSUPPORTED, "%s: table %d: %lld values in one batch exceed 2^31",
                                fn, i, (long long)n);
        const int end_bit = bits_for((uint64_t)d.rows); /* room for the key `rows` */
        const bool sparse = kernel == EMBER_EBC_CUDA_CUSPARSE && d.format == EMBER_ROW_FORMAT_F32;
        const bool wide = d.dim > kWarp * kMaxC;

        /* temporary storage of the three CUB passes */
        size_t sort_b = 0, rle_b = 0, scan_b = 0;
        EMBER_TRY(check(cub::DeviceRadixSort::SortPairs(NULL, sort_b, (const uint64_t *)NULL, (uint64_t *)NULL,
                                                        (const int32_t *)NULL, (int32_t *)NULL, (int)n, 0,
                                                        end_bit, c.stream),
                        c, "cub::DeviceRadixSort::SortPairs (size)"));
        EMBER_TRY(check(cub::DeviceRunLengthEncode::Encode(NULL, rle_b, (const uint64_t *)NULL, (uint64_t *)NULL,
                                                           (int32_t *)NULL, (int32_t *)NULL, (int)n, c.stream),
                        c, "cub::DeviceRunLengthEncode::Encode (size)"));
        EMBER_TRY(check(cub::DeviceScan::ExclusiveSum(NULL, scan_b, (const int32_t *)NULL, (int32_t *)NULL,
                                                      (int)n, c.stream),
                        c, "cub::DeviceScan::ExclusiveSum (size)"));
        size_t temp_b = sort_b > rle_b ? sort_b : rle_b;
        if (scan_b > temp_b) temp_b = scan_b;

        size_t sz = 0;
        auto carve = [&](size_t bytes) {
            size_t at = sz;
            sz += align256(bytes);
            return at;
        };
        const size_t o_kin = carve((size_t)n * 8), o_kout = carve((size_t)n * 8);
        const size_t o_pin = carve((size_t)n * 4), o_pout = carve((size_t)n * 4);
        const size_t o_uniq = carve((size_t)n * 8), o_cnt = carve((size_t)n * 4);
        const size_t o_start = carve((size_t)(n + 1) * 4), o_nruns = carve(4);
        const size_t o_bag = carve((size_t)n * 4), o_coef = carve((size_t)n * 4);
        const size_t o_temp = carve(temp_b);
        /* G: the wide and cuSPARSE paths' gradients, or the fused path's long-run sums */
        const size_t o_G = carve((size_t)n * (size_t)d.dim * 4);
        const size_t o_col = sparse ? carve((size_t)n * 4) : sz;
        const size_t o_val = sparse ? carve((size_t)n * 4) : sz;
        size_t reserve = sz;
#ifdef EMBER_HAVE_CUSPARSE
        if (sparse) reserve += kSpmmReserve;
#endif
        EMBER_TRY(ember__ebc_ws_reserve(ws, reserve, fn));
        char *w = (char *)ws->ptr;
        uint64_t *kin = (uint64_t *)(w + o_kin), *kout = (uint64_t *)(w + o_kout);
        int32_t *pin = (int32_t *)(w + o_pin), *pout = (int32_t *)(w + o_pout);
        uint64_t *uniq = (uint64_t *)(w + o_uniq);
        int32_t *cnt = (int32_t *)(w + o_cnt), *start = (int32_t *)(w + o_start);
        int32_t *nruns = (int32_t *)(w + o_nruns), *bag_of = (int32_t *)(w + o_bag);
        float *coef = (float *)(w + o_coef);
        void *temp = w + o_temp;

        const unsigned gn = blocks_for(n);
        keys_kernel<<<gn, kBlock, 0, c.stream>>>(d, batch, kin, pin);
        bags_kernel<<<blocks_for(batch), kBlock, 0, c.stream>>>(d, batch, bag_of, coef);
        EMBER_TRY(check(cudaMemsetAsync(cnt, 0, (size_t)n * 4, c.stream), c, "cudaMemsetAsync"));
        EMBER_TRY(check(cudaSuccess, c, "keys/bags kernels"));
        size_t tb = temp_b;
        EMBER_TRY(check(cub::DeviceRadixSort::SortPairs(temp, tb, kin, kout, pin, pout, (int)n, 0, end_bit,
                                                        c.stream),
                        c, "cub::DeviceRadixSort::SortPairs"));
        tb = temp_b;
        EMBER_TRY(check(cub::DeviceRunLengthEncode::Encode(temp, tb, kout, uniq, cnt, nruns, (int)n, c.stream),
                        c, "cub::DeviceRunLengthEncode::Encode"));
        tb = temp_b;
        EMBER_TRY(check(cub::DeviceScan::ExclusiveSum(temp, tb, cnt, start, (int)n, c.stream), c,
                        "cub::DeviceScan::ExclusiveSum"));
        close_runs_kernel<<<1, 1, 0, c.stream>>>(start, nruns, n);
        EMBER_TRY(check(cudaSuccess, c, "close_runs_kernel"));

        const unsigned gw = blocks_for(n * kWarp); /* a warp per run, at most n runs */
        float *G = (float *)(w + o_G);
        if (!sparse && !wide) {
            switch (d.format) {
            case EMBER_ROW_FORMAT_F32:
                launch_update_fmt<EMBER_ROW_FORMAT_F32>(c, gw, d, kout, pout, start, nruns, bag_of, coef, grad, ld, G, o);
                break;
            case EMBER_ROW_FORMAT_F16:
                launch_update_fmt<EMBER_ROW_FORMAT_F16>(c, gw, d, kout, pout, start, nruns, bag_of, coef, grad, ld, G, o);
                break;
            case EMBER_ROW_FORMAT_BF16:
                launch_update_fmt<EMBER_ROW_FORMAT_BF16>(c, gw, d, kout, pout, start, nruns, bag_of, coef, grad, ld, G, o);
                break;
            default:
                launch_update_fmt<EMBER_ROW_FORMAT_INT8_ROWWISE>(c, gw, d, kout, pout, start, nruns, bag_of, coef,
                                                                 grad, ld, G, o);
                break;
            }
            EMBER_TRY(check(cudaSuccess, c, "update_fused_kernel"));
            continue;
        }
        if (!sparse) {
            coalesce_kernel<<<gw, kBlock, 0, c.stream>>>(d, kout, pout, start, nruns, bag_of, coef, grad, ld, G);
            EMBER_TRY(check(cudaSuccess, c, "coalesce_kernel"));
        } else {
#ifdef EMBER_HAVE_CUSPARSE
            /* The sizes of A^T come back to the host: this path waits for the sort. */
            int32_t runs = 0;
            int64_t off0 = 0, offB = 0;
            EMBER_TRY(ember__cuda_memcpy(dev, &runs, nruns, 4, EMBER__D2H, 1));
            EMBER_TRY(ember__cuda_memcpy(dev, &off0, d.offsets, 8, EMBER__D2H, 1));
            EMBER_TRY(ember__cuda_memcpy(dev, &offB, d.offsets + batch, 8, EMBER__D2H, 1));
            const int64_t nnz = offB - off0;
            if (nnz < n) runs--; /* the positions outside the bags form the last run */
            int32_t *col = (int32_t *)(w + o_col);
            float *val = (float *)(w + o_val);
            columns_kernel<<<gn, kBlock, 0, c.stream>>>(pout, bag_of, coef, nnz, col, val);
            EMBER_TRY(check(cudaSuccess, c, "columns_kernel"));
            /* G (runs x dim) = A^T restricted to the batch's ids (runs x batch) @ dY */
            if (runs > 0)
                EMBER_TRY(spmm(c, sparse_handle, runs, batch, nnz, start, col, val, CUSPARSE_INDEX_32I,
                               grad + d.out_col, d.dim, ld, G, d.dim, ws, sz,
                               "ember_ebc_backward: cusparseSpMM"));
#else
            (void)o_col;
            (void)o_val;
#endif
        }
        switch (d.format) {
        case EMBER_ROW_FORMAT_F32:
            launch_apply_fmt<EMBER_ROW_FORMAT_F32>(c, gw, d, kout, start, nruns, G, d.dim, o);
            break;
        case EMBER_ROW_FORMAT_F16:
            launch_apply_fmt<EMBER_ROW_FORMAT_F16>(c, gw, d, kout, start, nruns, G, d.dim, o);
            break;
        case EMBER_ROW_FORMAT_BF16:
            launch_apply_fmt<EMBER_ROW_FORMAT_BF16>(c, gw, d, kout, start, nruns, G, d.dim, o);
            break;
        default:
            launch_apply_fmt<EMBER_ROW_FORMAT_INT8_ROWWISE>(c, gw, d, kout, start, nruns, G, d.dim, o);
            break;
        }
        EMBER_TRY(check(cudaSuccess, c, "apply_kernel"));
    }
    return EMBER_OK;
}

void ember__ebc_cuda_release(int dev, void *sparse_handle) {
#ifdef EMBER_HAVE_CUSPARSE
    if (!sparse_handle) return;
    if (cudaSetDevice(dev) != cudaSuccess) (void)cudaGetLastError();
    cusparseDestroy((cusparseHandle_t)sparse_handle);
#else
    (void)dev;
    (void)sparse_handle;
#endif
}

} // extern "C"
