/*
 * engine/cuda/backend_cuda.cu: the CUDA kernel table (engine/backend.h).
 *
 * The CPU backend is the reference, so these kernels are written to give its bits,
 * not merely close values:
 *  - f16/bf16 load and store go through engine/half.h, the very code the CPU runs.
 *  - nvcc contracts a*b+c into one fused multiply-add by default; the CPU (C11, no
 *    -ffp-contract=fast) rounds twice. Wherever a product meets a sum (scale, axpy,
 *    uniform and normal rng) we spell the two roundings out with __fmul_rn/__fadd_rn,
 *    which the compiler never fuses. These are IEEE round-to-nearest operations, not
 *    fast-math approximations; nothing here uses fast-math.
 *  - Philox words come from engine/philox.h; u8/i8 take the low byte, i64 is two words
 *    (lo, hi), so i32 and i64 bits are the word stream stored as uint32 in order.
 *  - Reductions are deterministic: one block of kReduceThreads threads per output row,
 *    a fixed per-thread stride and a fixed tree, so a row's bits never depend on the
 *    grid size, the stream or the call. Sums accumulate in double, like the CPU.
 * Transcendentals (expf, logf, tanhf, sinf, cosf, ...) are CUDA's accurate versions
 * (within 1-2 ulp), so unary ops and normals agree with glibc to a few ulp, not bits.
 *
 * Every entry runs on the calling thread's current stream of the current device, does
 * not wait, and checks its launch with cudaGetLastError(). Element counts are int64;
 * all elementwise kernels are grid-stride loops, so n may exceed 2^31.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <type_traits>

#include "engine/backend.h"
#include "engine/cuda/cuda_runtime.h" /* ember's header, not CUDA's cuda_runtime.h */
#include "engine/half.h"
#include "engine/internal.h"
#include "engine/philox.h"

namespace {

constexpr int kThreads = 256;          /* elementwise block size */
constexpr int64_t kMaxBlocks = 65536;  /* grid-stride loops cover any n beyond this */
constexpr int kReduceThreads = 256;    /* part of the reduction's bit pattern: do not vary */
constexpr int kMaxDevices = 64;        /* same table size as runtime.cu's current streams */

/* ------------------------------------------------------------------------------------ */
/* launch plumbing                                                                       */

struct Launch {
    int dev;
    cudaStream_t stream;
};

/* The active device (made current by the dispatcher through activate) and this
 * thread's current stream on it. */
ember_status current_launch(Launch *l, const char *fn) {
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return ember__error(EMBER_ERR_CUDA, "%s: cudaGetDevice: %s", fn, cudaGetErrorString(err));
    }
    l->dev = dev;
    l->stream = (cudaStream_t)ember__cuda_current_stream(dev);
    return EMBER_OK;
}

ember_status cuda_fail(cudaError_t err, const Launch &l, const char *what) {
    (void)cudaGetLastError();
    return ember__error(EMBER_ERR_CUDA, "%s on cuda:%d: %s", what, l.dev, cudaGetErrorString(err));
}

/* Call right after a <<<>>> launch: reports bad configurations and earlier sticky
 * faults under the kernel's name. */
ember_status check_launch(const Launch &l, const char *kernel, ember_dtype dt) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return EMBER_OK;
    return ember__error(EMBER_ERR_CUDA, "%s(%s) launch on cuda:%d: %s", kernel,
                        ember_dtype_name(dt), l.dev, cudaGetErrorString(err));
}

unsigned grid_for(int64_t n) {
    int64_t blocks = (n + kThreads - 1) / kThreads;
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    return (unsigned)blocks;
}

__device__ __forceinline__ int64_t global_tid() {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return (int64_t)gridDim.x * blockDim.x; }

/* ------------------------------------------------------------------------------------ */
/* element types                                                                         */

/*
 * Integer stores saturate exactly as the CPU's store_elem does: the value (a double)
 * is compared with the type's ends before truncating toward zero, and NaN gives 0, so
 * no input reaches an out-of-range cast (undefined behaviour in C and C++). The i64
 * top end is 2^63 - 1024, the largest double below 2^63, as on the CPU.
 */
__host__ __device__ __forceinline__ int64_t sat_int(double v, double lo, double hi) {
    if (!(v == v)) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v; /* truncates toward zero */
}

/* One struct per dtype: storage type, and loads/stores in f32 (floats) or double
 * (integers, as the CPU's load_elem gives them). */
struct F32 {
    using T = float;
    static constexpr bool is_float = true;
    static __device__ __forceinline__ float load(T v) { return v; }
    static __device__ __forceinline__ T store(float f) { return f; }
};
struct F16 {
    using T = uint16_t;
    static constexpr bool is_float = true;
    static __device__ __forceinline__ float load(T v) { return ember__f16_to_f32(v); }
    static __device__ __forceinline__ T store(float f) { return ember__f32_to_f16(f); }
};
struct BF16 {
    using T = uint16_t;
    static constexpr bool is_float = true;
    static __device__ __forceinline__ float load(T v) { return ember__bf16_to_f32(v); }
    static __device__ __forceinline__ T store(float f) { return ember__f32_to_bf16(f); }
};

/* Saturation range of each integer type, as doubles (see sat_int). */
template <class IntT> struct IntRange;
template <> struct IntRange<int8_t> { static constexpr double lo = -128.0, hi = 127.0; };
template <> struct IntRange<uint8_t> { static constexpr double lo = 0.0, hi = 255.0; };
template <> struct IntRange<int32_t> {
    static constexpr double lo = -2147483648.0, hi = 2147483647.0;
};
template <> struct IntRange<int64_t> {
    static constexpr double lo = -9223372036854775808.0, hi = 9223372036854774784.0;
};

template <class IntT>
struct Int {
    using T = IntT;
    static constexpr bool is_float = false;
    static __device__ __forceinline__ double load(T v) { return (double)v; }
    static __host__ __device__ __forceinline__ T store(double v) {
        return (T)sat_int(v, IntRange<IntT>::lo, IntRange<IntT>::hi);
    }
};
using I8 = Int<int8_t>;
using U8 = Int<uint8_t>;
using I32 = Int<int32_t>;
using I64 = Int<int64_t>;

/* ------------------------------------------------------------------------------------ */
/* fill                                                                                  */

template <class T>
__global__ void fill_kernel(T *dst, int64_t n, T v) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) dst[i] = v;
}

template <class T>
ember_status launch_fill(const Launch &l, void *dst, int64_t n, T v, ember_dtype dt) {
    /* A pattern whose bytes are all equal (0, -1, 0x3c3c...) is a memset: the copy
     * engine's fastest path and no kernel launch. */
    unsigned char bytes[sizeof(T)];
    memcpy(bytes, &v, sizeof(T));
    bool uniform = true;
    for (size_t i = 1; i < sizeof(T); i++) uniform = uniform && bytes[i] == bytes[0];
    if (uniform) {
        cudaError_t err = cudaMemsetAsync(dst, bytes[0], (size_t)n * sizeof(T), l.stream);
        if (err != cudaSuccess) return cuda_fail(err, l, "fill: cudaMemsetAsync");
        return EMBER_OK;
    }
    fill_kernel<T><<<grid_for(n), kThreads, 0, l.stream>>>((T *)dst, n, v);
    return check_launch(l, "fill_kernel", dt);
}

ember_status cuda_fill(void *dst, ember_dtype dt, int64_t n, double value) {
    if (n <= 0) return EMBER_OK;
    Launch l;
    EMBER_TRY(current_launch(&l, "fill"));
    /* The value is converted once, on the host, exactly as the CPU backend converts it:
     * floats through f32 (then half.h), integers saturated and truncated from the double. */
    switch (dt) {
    case EMBER_DTYPE_F32: return launch_fill<float>(l, dst, n, (float)value, dt);
    case EMBER_DTYPE_F16: return launch_fill<uint16_t>(l, dst, n, ember__f32_to_f16((float)value), dt);
    case EMBER_DTYPE_BF16:
        return launch_fill<uint16_t>(l, dst, n, ember__f32_to_bf16((float)value), dt);
    case EMBER_DTYPE_I8: return launch_fill<int8_t>(l, dst, n, I8::store(value), dt);
    case EMBER_DTYPE_U8: return launch_fill<uint8_t>(l, dst, n, U8::store(value), dt);
    case EMBER_DTYPE_I32: return launch_fill<int32_t>(l, dst, n, I32::store(value), dt);
    case EMBER_DTYPE_I64: return launch_fill<int64_t>(l, dst, n, I64::store(value), dt);
    default: return ember__error(EMBER_ERR_DTYPE, "fill (cuda): invalid dtype %d", (int)dt);
    }
}

/* ------------------------------------------------------------------------------------ */
/* convert                                                                               */

/*
 * The CPU converts every element through a double (load_elem, then store_elem); we do
 * the same wherever an integer is involved, so the bits agree:
 *   float -> float: through f32 (the double step is exact there, so it is skipped);
 *   float -> int:   saturate and truncate toward zero (sat_int);
 *   int -> float:   to double, then to f32 (i64 beyond 2^53 rounds twice, as on the
 *                   CPU), then the half.h store;
 *   int -> int:     saturating, e.g. i32 300 -> u8 255 (not a wrapping cast).
 */
template <class S, class D>
__global__ void convert_kernel(typename D::T *dst, const typename S::T *src, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        typename S::T v = src[i];
        if constexpr (S::is_float && D::is_float) {
            dst[i] = D::store(S::load(v));
        } else if constexpr (D::is_float) {
            dst[i] = D::store((float)S::load(v));
        } else {
            dst[i] = D::store((double)S::load(v));
        }
    }
}

template <class S, class D>
ember_status launch_convert(const Launch &l, void *dst, const void *src, int64_t n,
                            ember_dtype sdt, ember_dtype ddt) {
    convert_kernel<S, D><<<grid_for(n), kThreads, 0, l.stream>>>((typename D::T *)dst,
                                                                 (const typename S::T *)src, n);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return EMBER_OK;
    return ember__error(EMBER_ERR_CUDA, "convert_kernel(%s -> %s) launch on cuda:%d: %s",
                        ember_dtype_name(sdt), ember_dtype_name(ddt), l.dev,
                        cudaGetErrorString(err));
}

template <class S>
ember_status convert_to(const Launch &l, void *dst, ember_dtype ddt, const void *src, int64_t n,
                        ember_dtype sdt) {
    switch (ddt) {
    case EMBER_DTYPE_F32: return launch_convert<S, F32>(l, dst, src, n, sdt, ddt);
    case EMBER_DTYPE_F16: return launch_convert<S, F16>(l, dst, src, n, sdt, ddt);
    case EMBER_DTYPE_BF16: return launch_convert<S, BF16>(l, dst, src, n, sdt, ddt);
    case EMBER_DTYPE_I8: return launch_convert<S, I8>(l, dst, src, n, sdt, ddt);
    case EMBER_DTYPE_U8: return launch_convert<S, U8>(l, dst, src, n, sdt, ddt);
    case EMBER_DTYPE_I32: return launch_convert<S, I32>(l, dst, src, n, sdt, ddt);
    case EMBER_DTYPE_I64: return launch_convert<S, I64>(l, dst, src, n, sdt, ddt);
    default: return ember__error(EMBER_ERR_DTYPE, "convert (cuda): invalid dtype %d", (int)ddt);
    }
}

ember_status cuda_convert(void *dst, ember_dtype ddt, const void *src, ember_dtype sdt, int64_t n) {
    if (n <= 0) return EMBER_OK;
    if (!ember_dtype_valid(ddt) || !ember_dtype_valid(sdt))
        return ember__error(EMBER_ERR_DTYPE, "convert (cuda): invalid dtype pair %d -> %d",
                            (int)sdt, (int)ddt);
    Launch l;
    EMBER_TRY(current_launch(&l, "convert"));
    if (ddt == sdt) { /* same type: a plain device copy keeps every bit (NaN payloads too) */
        cudaError_t err = cudaMemcpyAsync(dst, src, (size_t)n * ember_dtype_size(ddt),
                                          cudaMemcpyDeviceToDevice, l.stream);
        if (err != cudaSuccess) return cuda_fail(err, l, "convert: cudaMemcpyAsync");
        return EMBER_OK;
    }
    switch (sdt) {
    case EMBER_DTYPE_F32: return convert_to<F32>(l, dst, ddt, src, n, sdt);
    case EMBER_DTYPE_F16: return convert_to<F16>(l, dst, ddt, src, n, sdt);
    case EMBER_DTYPE_BF16: return convert_to<BF16>(l, dst, ddt, src, n, sdt);
    case EMBER_DTYPE_I8: return convert_to<I8>(l, dst, ddt, src, n, sdt);
    case EMBER_DTYPE_U8: return convert_to<U8>(l, dst, ddt, src, n, sdt);
    case EMBER_DTYPE_I32: return convert_to<I32>(l, dst, ddt, src, n, sdt);
    case EMBER_DTYPE_I64: return convert_to<I64>(l, dst, ddt, src, n, sdt);
    default: return ember__error(EMBER_ERR_DTYPE, "convert (cuda): invalid dtype %d", (int)sdt);
    }
}

/* ------------------------------------------------------------------------------------ */
/* strided copy                                                                          */

/* Dims stored innermost first, after dropping size-1 dims and merging dims that are
 * contiguous in both tensors, so a transpose of a (B, T, C) tensor costs two div/mods
 * per element, not three. */
struct StridedLayout {
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    int64_t dst_stride[EMBER_MAX_DIMS];
    int64_t src_stride[EMBER_MAX_DIMS];
};

/* Idx is uint32_t when the element count fits (32-bit div/mod are several times
 * cheaper on the GPU than 64-bit ones), int64_t otherwise. Offsets stay int64. */
template <class T, class Idx>
__global__ void copy_strided_kernel(T *dst, const T *src, StridedLayout lay, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        Idx rem = (Idx)i;
        int64_t doff = 0, soff = 0;
#pragma unroll
        for (int d = 0; d < EMBER_MAX_DIMS; d++) {
            if (d < lay.ndim) {
                Idx extent = (Idx)lay.shape[d];
                Idx c = rem % extent;
                rem /= extent;
                doff += (int64_t)c * lay.dst_stride[d];
                soff += (int64_t)c * lay.src_stride[d];
            }
        }
        dst[doff] = src[soff];
    }
}

/* Element sizes that are not 1, 2, 4 or 8 bytes: copy esize bytes per element. */
__global__ void copy_strided_bytes_kernel(unsigned char *dst, const unsigned char *src,
                                          StridedLayout lay, int64_t n, size_t esize) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        int64_t rem = i, doff = 0, soff = 0;
        for (int d = 0; d < lay.ndim; d++) {
            int64_t c = rem % lay.shape[d];
            rem /= lay.shape[d];
            doff += c * lay.dst_stride[d];
            soff += c * lay.src_stride[d];
        }
        for (size_t b = 0; b < esize; b++)
            dst[doff * (int64_t)esize + (int64_t)b] = src[soff * (int64_t)esize + (int64_t)b];
    }
}

template <class T>
ember_status launch_copy_strided(const Launch &l, void *dst, const void *src,
                                 const StridedLayout &lay, int64_t n) {
    if (n <= (int64_t)UINT32_MAX)
        copy_strided_kernel<T, uint32_t>
            <<<grid_for(n), kThreads, 0, l.stream>>>((T *)dst, (const T *)src, lay, n);
    else
        copy_strided_kernel<T, int64_t>
            <<<grid_for(n), kThreads, 0, l.stream>>>((T *)dst, (const T *)src, lay, n);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return ember__error(EMBER_ERR_CUDA, "copy_strided_kernel(%zu-byte elements, %d dims) "
                            "launch on cuda:%d: %s", sizeof(T), lay.ndim, l.dev,
                            cudaGetErrorString(err));
    return EMBER_OK;
}

ember_status cuda_copy_strided(void *dst, const int64_t *dst_strides, const void *src,
                               const int64_t *src_strides, const int64_t *shape, int ndim,
                               size_t esize) {
    if (ndim < 0 || ndim > EMBER_MAX_DIMS)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "copy_strided (cuda): ndim %d outside 0..%d",
                            ndim, EMBER_MAX_DIMS);
    if (esize == 0) return EMBER_OK;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0) return EMBER_OK; /* empty */
        n *= shape[d];
    }

    /* Canonicalise: innermost first, size-1 dims dropped, mergeable neighbours merged
     * (outer dim o folds into inner dim i when stride[o] == stride[i] * shape[i] in
     * both tensors). */
    StridedLayout lay;
    lay.ndim = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] == 1) continue;
        if (lay.ndim > 0) {
            int k = lay.ndim - 1;
            if (dst_strides[d] == lay.dst_stride[k] * lay.shape[k] &&
                src_strides[d] == lay.src_stride[k] * lay.shape[k]) {
                lay.shape[k] *= shape[d];
                continue;
            }
        }
        lay.shape[lay.ndim] = shape[d];
        lay.dst_stride[lay.ndim] = dst_strides[d];
        lay.src_stride[lay.ndim] = src_strides[d];
        lay.ndim++;
    }

    Launch l;
    EMBER_TRY(current_launch(&l, "copy_strided"));
    /* Both sides dense in the same order (or a single element): one DMA copy. */
    if (lay.ndim == 0 || (lay.ndim == 1 && lay.dst_stride[0] == 1 && lay.src_stride[0] == 1)) {
        cudaError_t err = cudaMemcpyAsync(dst, src, (size_t)n * esize, cudaMemcpyDeviceToDevice,
                                          l.stream);
        if (err != cudaSuccess) return cuda_fail(err, l, "copy_strided: cudaMemcpyAsync");
        return EMBER_OK;
    }
    switch (esize) {
    case 1: return launch_copy_strided<uint8_t>(l, dst, src, lay, n);
    case 2: return launch_copy_strided<uint16_t>(l, dst, src, lay, n);
    case 4: return launch_copy_strided<uint32_t>(l, dst, src, lay, n);
    case 8: return launch_copy_strided<uint64_t>(l, dst, src, lay, n);
    default: {
        copy_strided_bytes_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(
            (unsigned char *)dst, (const unsigned char *)src, lay, n, esize);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return ember__error(EMBER_ERR_CUDA, "copy_strided_bytes_kernel(%zu-byte elements) "
                                "launch on cuda:%d: %s", esize, l.dev, cudaGetErrorString(err));
        return EMBER_OK;
    }
    }
}

/* ------------------------------------------------------------------------------------ */
/* unary, binary, scale, axpy                                                            */

/* The exact expressions of the CPU backend, in f32. */
template <int OP>
__device__ __forceinline__ float unary_op(float x) {
    switch (OP) {
    case EMBER_UNARY_NEG: return -x;
    case EMBER_UNARY_ABS: return fabsf(x);
    case EMBER_UNARY_SQUARE: return x * x;
    case EMBER_UNARY_SQRT: return sqrtf(x);
    case EMBER_UNARY_EXP: return expf(x);
    case EMBER_UNARY_LOG: return logf(x);
    case EMBER_UNARY_RELU: return x > 0.0f ? x : 0.0f; /* NaN -> 0, -0 -> +0 */
    case EMBER_UNARY_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case EMBER_UNARY_TANH: return tanhf(x);
    case EMBER_UNARY_LOG1P_RELU: return log1pf(x > 0.0f ? x : 0.0f);
    default: return x; /* unreachable: the host switch only instantiates valid ops */
    }
}

/* out may equal x: each element is read, then written, by the same thread. */
template <class IO, int OP>
__global__ void unary_kernel(typename IO::T *out, const typename IO::T *x, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride())
        out[i] = IO::store(unary_op<OP>(IO::load(x[i])));
}

template <class IO, int OP>
ember_status launch_unary(const Launch &l, void *out, const void *x, int64_t n, ember_dtype dt) {
    unary_kernel<IO, OP><<<grid_for(n), kThreads, 0, l.stream>>>((typename IO::T *)out,
                                                                 (const typename IO::T *)x, n);
    return check_launch(l, "unary_kernel", dt);
}

template <class IO>
ember_status unary_for(const Launch &l, ember_unary_op op, void *out, const void *x, int64_t n,
                       ember_dtype dt) {
    switch (op) {
    case EMBER_UNARY_NEG: return launch_unary<IO, EMBER_UNARY_NEG>(l, out, x, n, dt);
    case EMBER_UNARY_ABS: return launch_unary<IO, EMBER_UNARY_ABS>(l, out, x, n, dt);
    case EMBER_UNARY_SQUARE: return launch_unary<IO, EMBER_UNARY_SQUARE>(l, out, x, n, dt);
    case EMBER_UNARY_SQRT: return launch_unary<IO, EMBER_UNARY_SQRT>(l, out, x, n, dt);
    case EMBER_UNARY_EXP: return launch_unary<IO, EMBER_UNARY_EXP>(l, out, x, n, dt);
    case EMBER_UNARY_LOG: return launch_unary<IO, EMBER_UNARY_LOG>(l, out, x, n, dt);
    case EMBER_UNARY_RELU: return launch_unary<IO, EMBER_UNARY_RELU>(l, out, x, n, dt);
    case EMBER_UNARY_SIGMOID: return launch_unary<IO, EMBER_UNARY_SIGMOID>(l, out, x, n, dt);
    case EMBER_UNARY_TANH: return launch_unary<IO, EMBER_UNARY_TANH>(l, out, x, n, dt);
    case EMBER_UNARY_LOG1P_RELU: return launch_unary<IO, EMBER_UNARY_LOG1P_RELU>(l, out, x, n, dt);
    default:
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "unary (cuda): invalid op %d", (int)op);
    }
}

ember_status float_dtype_error(const char *fn, ember_dtype dt) {
    return ember__error(EMBER_ERR_DTYPE, "%s (cuda): dtype %s is not a float dtype (f32, f16, bf16)",
                        fn, ember_dtype_name(dt));
}

ember_status cuda_unary(ember_unary_op op, void *out, const void *x, ember_dtype dt, int64_t n) {
    if (n <= 0) return EMBER_OK;
    Launch l;
    EMBER_TRY(current_launch(&l, "unary"));
    switch (dt) {
    case EMBER_DTYPE_F32: return unary_for<F32>(l, op, out, x, n, dt);
    case EMBER_DTYPE_F16: return unary_for<F16>(l, op, out, x, n, dt);
    case EMBER_DTYPE_BF16: return unary_for<BF16>(l, op, out, x, n, dt);
    default: return float_dtype_error("unary", dt);
    }
}

template <int OP>
__device__ __forceinline__ float binary_op(float a, float b) {
    switch (OP) {
    case EMBER_BINARY_ADD: return a + b;
    case EMBER_BINARY_SUB: return a - b;
    case EMBER_BINARY_MUL: return a * b;
    case EMBER_BINARY_DIV: return a / b; /* IEEE division: nvcc's default -prec-div=true */
    case EMBER_BINARY_MAX: return fmaxf(a, b);
    case EMBER_BINARY_MIN: return fminf(a, b);
    default: return a; /* unreachable */
    }
}

/* How b is indexed: nb == n (same shape), nb == 1 (scalar), otherwise i % nb (b is a
 * trailing block, e.g. a bias row). The mode is uniform across the grid, so the branch
 * costs nothing and the modulo is paid only when it is needed. */
enum { BCAST_SAME, BCAST_SCALAR, BCAST_ROW };

template <class IO, int OP>
__global__ void binary_kernel(typename IO::T *out, const typename IO::T *a,
                              const typename IO::T *b, int64_t n, int64_t nb, int mode) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        int64_t j = mode == BCAST_SAME ? i : (mode == BCAST_SCALAR ? 0 : i % nb);
        out[i] = IO::store(binary_op<OP>(IO::load(a[i]), IO::load(b[j])));
    }
}

template <class IO, int OP>
ember_status launch_binary(const Launch &l, void *out, const void *a, const void *b, int64_t n,
                           int64_t nb, ember_dtype dt) {
    int mode = nb == n ? BCAST_SAME : (nb == 1 ? BCAST_SCALAR : BCAST_ROW);
    binary_kernel<IO, OP><<<grid_for(n), kThreads, 0, l.stream>>>(
        (typename IO::T *)out, (const typename IO::T *)a, (const typename IO::T *)b, n, nb, mode);
    return check_launch(l, "binary_kernel", dt);
}

template <class IO>
ember_status binary_for(const Launch &l, ember_binary_op op, void *out, const void *a,
                        const void *b, int64_t n, int64_t nb, ember_dtype dt) {
    switch (op) {
    case EMBER_BINARY_ADD: return launch_binary<IO, EMBER_BINARY_ADD>(l, out, a, b, n, nb, dt);
    case EMBER_BINARY_SUB: return launch_binary<IO, EMBER_BINARY_SUB>(l, out, a, b, n, nb, dt);
    case EMBER_BINARY_MUL: return launch_binary<IO, EMBER_BINARY_MUL>(l, out, a, b, n, nb, dt);
    case EMBER_BINARY_DIV: return launch_binary<IO, EMBER_BINARY_DIV>(l, out, a, b, n, nb, dt);
    case EMBER_BINARY_MAX: return launch_binary<IO, EMBER_BINARY_MAX>(l, out, a, b, n, nb, dt);
    case EMBER_BINARY_MIN: return launch_binary<IO, EMBER_BINARY_MIN>(l, out, a, b, n, nb, dt);
    default:
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "binary (cuda): invalid op %d", (int)op);
    }
}

ember_status cuda_binary(ember_binary_op op, void *out, const void *a, const void *b,
                         ember_dtype dt, int64_t n, int64_t nb) {
    if (n <= 0) return EMBER_OK;
    if (nb <= 0 || n % nb != 0)
        return ember__error(EMBER_ERR_SHAPE, "binary (cuda): b has %lld elements, which does not "
                            "divide a's %lld", (long long)nb, (long long)n);
    Launch l;
    EMBER_TRY(current_launch(&l, "binary"));
    switch (dt) {
    case EMBER_DTYPE_F32: return binary_for<F32>(l, op, out, a, b, n, nb, dt);
    case EMBER_DTYPE_F16: return binary_for<F16>(l, op, out, a, b, n, nb, dt);
    case EMBER_DTYPE_BF16: return binary_for<BF16>(l, op, out, a, b, n, nb, dt);
    default: return float_dtype_error("binary", dt);
    }
}

/* out = alpha * x + beta, rounded twice like the CPU (no fused multiply-add). */
template <class IO>
__global__ void scale_kernel(typename IO::T *out, const typename IO::T *x, int64_t n, float alpha,
                             float beta) {
    for (int64_t i = global_tid(); i < n; i += grid_stride())
        out[i] = IO::store(__fadd_rn(__fmul_rn(alpha, IO::load(x[i])), beta));
}

template <class IO>
ember_status launch_scale(const Launch &l, void *out, const void *x, int64_t n, float alpha,
                          float beta, ember_dtype dt) {
    scale_kernel<IO><<<grid_for(n), kThreads, 0, l.stream>>>(
        (typename IO::T *)out, (const typename IO::T *)x, n, alpha, beta);
    return check_launch(l, "scale_kernel", dt);
}

ember_status cuda_scale(void *out, const void *x, ember_dtype dt, int64_t n, float alpha,
                        float beta) {
    if (n <= 0) return EMBER_OK;
    Launch l;
    EMBER_TRY(current_launch(&l, "scale"));
    switch (dt) {
    case EMBER_DTYPE_F32: return launch_scale<F32>(l, out, x, n, alpha, beta, dt);
    case EMBER_DTYPE_F16: return launch_scale<F16>(l, out, x, n, alpha, beta, dt);
    case EMBER_DTYPE_BF16: return launch_scale<BF16>(l, out, x, n, alpha, beta, dt);
    default: return float_dtype_error("scale", dt);
    }
}

/* y += alpha * x, rounded twice like the CPU. */
template <class IO>
__global__ void axpy_kernel(typename IO::T *y, const typename IO::T *x, int64_t n, float alpha) {
    for (int64_t i = global_tid(); i < n; i += grid_stride())
        y[i] = IO::store(__fadd_rn(IO::load(y[i]), __fmul_rn(alpha, IO::load(x[i]))));
}

template <class IO>
ember_status launch_axpy(const Launch &l, void *y, const void *x, int64_t n, float alpha,
                         ember_dtype dt) {
    axpy_kernel<IO><<<grid_for(n), kThreads, 0, l.stream>>>((typename IO::T *)y,
                                                           (const typename IO::T *)x, n, alpha);
    return check_launch(l, "axpy_kernel", dt);
}

ember_status cuda_axpy(void *y, const void *x, ember_dtype dt, int64_t n, float alpha) {
    if (n <= 0) return EMBER_OK;
    Launch l;
    EMBER_TRY(current_launch(&l, "axpy"));
    switch (dt) {
    case EMBER_DTYPE_F32: return launch_axpy<F32>(l, y, x, n, alpha, dt);
    case EMBER_DTYPE_F16: return launch_axpy<F16>(l, y, x, n, alpha, dt);
    case EMBER_DTYPE_BF16: return launch_axpy<BF16>(l, y, x, n, alpha, dt);
    default: return float_dtype_error("axpy", dt);
    }
}

/* ------------------------------------------------------------------------------------ */
/* reduce                                                                                */

/*
 * Deterministic reductions: every partial sum is formed in an order fixed by the shape
 * alone (never by the grid size, the device or the stream), so the same input gives
 * the same bits on every call.
 *
 * A row of at most kReduceChunk elements is reduced by one block: thread t folds
 * elements t, t + kReduceThreads, ... in that order, then a fixed shared-memory tree
 * combines the kReduceThreads partials. A longer row would leave the GPU idle with one
 * block (one SM) per row, so it is cut into fixed chunks of kReduceChunk elements:
 * stage 1 reduces each (row, chunk) in one block, exactly as above, into a scratch
 * array; stage 2 reduces each row's chunk partials the same way.
 *
 * SUM, MEAN, SUMSQ: partials in double (squares of f32 are exact in double), rounded
 * to f32 once at the end; MEAN divides the double sum by inner. MAX, MIN: f32, NaN
 * propagating like the CPU. inner == 0: the identities 0, -inf, +inf (MEAN gives 0,
 * not 0/0).
 */
constexpr int64_t kReduceChunk = 16 * kReduceThreads; /* part of the bit pattern too */

template <int OP>
struct Reducer {
    static constexpr bool is_sum =
        OP == EMBER_REDUCE_SUM || OP == EMBER_REDUCE_MEAN || OP == EMBER_REDUCE_SUMSQ;
    using Acc = typename std::conditional<is_sum, double, float>::type;

    static __device__ __forceinline__ Acc identity() {
        if constexpr (OP == EMBER_REDUCE_MAX) return -INFINITY;
        else if constexpr (OP == EMBER_REDUCE_MIN) return INFINITY;
        else return 0.0;
    }
    /* One input element, as it enters the fold. */
    template <class IO>
    static __device__ __forceinline__ Acc lift(typename IO::T v) {
        if constexpr (OP == EMBER_REDUCE_SUMSQ) {
            double d = (double)IO::load(v);
            return d * d;
        } else {
            return (Acc)IO::load(v);
        }
    }
    /* Running value a with a new value b. max/min as the CPU computes them: NaN wins
     * (and stays), and on ties the earlier value is kept. */
    static __device__ __forceinline__ Acc combine(Acc a, Acc b) {
        if constexpr (is_sum) return a + b;
        else if constexpr (OP == EMBER_REDUCE_MAX) return b > a || b != b ? b : a;
        else return b < a || b != b ? b : a;
    }
    /* The stored result of a whole row of `inner` elements. */
    static __device__ __forceinline__ float finish(Acc a, int64_t inner) {
        if constexpr (OP == EMBER_REDUCE_MEAN) return inner > 0 ? (float)(a / (double)inner) : 0.0f;
        else return (float)a;
    }
};

/* Fixed-order tree over the block's partials; every thread gets the result. All
 * threads of the block must call it; part holds kReduceThreads values. */
template <int OP>
__device__ __forceinline__ typename Reducer<OP>::Acc block_combine(typename Reducer<OP>::Acc *part,
                                                                   typename Reducer<OP>::Acc acc) {
    const int t = threadIdx.x;
    part[t] = acc;
    __syncthreads();
#pragma unroll
    for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
        if (t < s) part[t] = Reducer<OP>::combine(part[t], part[t + s]);
        __syncthreads();
    }
    acc = part[0];
    __syncthreads(); /* everyone has read part[0] before part is reused */
    return acc;
}

/* Where stage 2 (or the single stage) reads its values: raw input elements, lifted, or
 * stage-1 partials. */
template <class IO, int OP>
struct RawSource {
    const typename IO::T *x;
    __device__ __forceinline__ typename Reducer<OP>::Acc operator[](int64_t i) const {
        return Reducer<OP>::template lift<IO>(x[i]);
    }
};
template <int OP>
struct PartialSource {
    const typename Reducer<OP>::Acc *p;
    __device__ __forceinline__ typename Reducer<OP>::Acc operator[](int64_t i) const { return p[i]; }
};

/* out[row] = reduction of src[row * len + j], j < len; blocks stride over rows.
 * inner is the original row length (for MEAN). */
template <int OP, class Src>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_rows_kernel(float *out, Src src, int64_t outer, int64_t len, int64_t inner) {
    using R = Reducer<OP>;
    __shared__ typename R::Acc part[kReduceThreads];
    for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
        typename R::Acc acc = R::identity();
        for (int64_t j = threadIdx.x; j < len; j += kReduceThreads)
            acc = R::combine(acc, src[row * len + j]);
        acc = block_combine<OP>(part, acc);
        if (threadIdx.x == 0) out[row] = R::finish(acc, inner);
    }
}

/* Stage 1: partial[row * nchunks + c] = reduction of chunk c of row `row` of x. */
template <class IO, int OP>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_chunks_kernel(typename Reducer<OP>::Acc *partial, const typename IO::T *x,
                         int64_t outer, int64_t inner, int64_t nchunks) {
    using R = Reducer<OP>;
    __shared__ typename R::Acc part[kReduceThreads];
    const int64_t total = outer * nchunks;
    for (int64_t pc = blockIdx.x; pc < total; pc += gridDim.x) {
        const int64_t row = pc / nchunks, c = pc % nchunks;
        const typename IO::T *xr = x + row * inner;
        const int64_t hi = (c + 1) * kReduceChunk < inner ? (c + 1) * kReduceChunk : inner;
        typename R::Acc acc = R::identity();
        for (int64_t j = c * kReduceChunk + threadIdx.x; j < hi; j += kReduceThreads)
            acc = R::combine(acc, R::template lift<IO>(xr[j]));
        acc = block_combine<OP>(part, acc);
        if (threadIdx.x == 0) partial[pc] = acc;
    }
}

unsigned row_grid(int64_t rows) { return (unsigned)(rows < kMaxBlocks ? rows : kMaxBlocks); }

template <class IO, int OP>
ember_status launch_reduce(const Launch &l, float *out, const void *x, int64_t outer,
                           int64_t inner, ember_dtype dt) {
    using R = Reducer<OP>;
    const typename IO::T *xt = (const typename IO::T *)x;
    if (inner <= kReduceChunk) {
        reduce_rows_kernel<OP, RawSource<IO, OP>><<<row_grid(outer), kReduceThreads, 0, l.stream>>>(
            out, RawSource<IO, OP>{xt}, outer, inner, inner);
        return check_launch(l, "reduce_rows_kernel", dt);
    }

    /* Scratch for the partials (outer * inner / kReduceChunk of them: 1/512 of the input
     * bytes or less). Stream-ordered, from the runtime's caching pool, so there is no
     * device-wide synchronisation; it is transient and not in the manager's statistics. */
    const int64_t nchunks = (inner + kReduceChunk - 1) / kReduceChunk;
    const size_t bytes = (size_t)(outer * nchunks) * sizeof(typename R::Acc);
    void *scratch = NULL;
    bool pooled = true;
    cudaError_t err = cudaMallocAsync(&scratch, bytes, l.stream);
    if (err == cudaErrorNotSupported) { /* no memory pools (rare): plain, synchronising */
        (void)cudaGetLastError();
        pooled = false;
        err = cudaMalloc(&scratch, bytes);
    }
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return ember__error(err == cudaErrorMemoryAllocation ? EMBER_ERR_OUT_OF_MEMORY : EMBER_ERR_CUDA,
                            "reduce (cuda): scratch of %zu B for %lld x %lld partials on cuda:%d: %s",
                            bytes, (long long)outer, (long long)nchunks, l.dev,
                            cudaGetErrorString(err));
    }
    typename R::Acc *partial = (typename R::Acc *)scratch;
    reduce_chunks_kernel<IO, OP><<<row_grid(outer * nchunks), kReduceThreads, 0, l.stream>>>(
        partial, xt, outer, inner, nchunks);
    ember_status st = check_launch(l, "reduce_chunks_kernel", dt);
    if (st == EMBER_OK) {
        reduce_rows_kernel<OP, PartialSource<OP>><<<row_grid(outer), kReduceThreads, 0, l.stream>>>(
            out, PartialSource<OP>{partial}, outer, nchunks, inner);
        st = check_launch(l, "reduce_rows_kernel", dt);
    }
    /* Freed in stream order, after the kernels above have read it. */
    err = pooled ? cudaFreeAsync(scratch, l.stream) : cudaFree(scratch);
    if (err != cudaSuccess && st == EMBER_OK) return cuda_fail(err, l, "reduce: free scratch");
    return st;
}

template <class IO>
ember_status reduce_for(const Launch &l, ember_reduce_op op, float *out, const void *x,
                        int64_t outer, int64_t inner, ember_dtype dt) {
    switch (op) {
    case EMBER_REDUCE_SUM: return launch_reduce<IO, EMBER_REDUCE_SUM>(l, out, x, outer, inner, dt);
    case EMBER_REDUCE_MEAN: return launch_reduce<IO, EMBER_REDUCE_MEAN>(l, out, x, outer, inner, dt);
    case EMBER_REDUCE_MAX: return launch_reduce<IO, EMBER_REDUCE_MAX>(l, out, x, outer, inner, dt);
    case EMBER_REDUCE_MIN: return launch_reduce<IO, EMBER_REDUCE_MIN>(l, out, x, outer, inner, dt);
    case EMBER_REDUCE_SUMSQ:
        return launch_reduce<IO, EMBER_REDUCE_SUMSQ>(l, out, x, outer, inner, dt);
    default:
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "reduce (cuda): invalid op %d", (int)op);
    }
}

ember_status cuda_reduce(ember_reduce_op op, float *out, const void *x, ember_dtype dt,
                         int64_t outer, int64_t inner) {
    if (outer <= 0) return EMBER_OK;
    if (inner < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "reduce (cuda): inner = %lld",
                            (long long)inner);
    Launch l;
    EMBER_TRY(current_launch(&l, "reduce"));
    switch (dt) {
    case EMBER_DTYPE_F32: return reduce_for<F32>(l, op, out, x, outer, inner, dt);
    case EMBER_DTYPE_F16: return reduce_for<F16>(l, op, out, x, outer, inner, dt);
    case EMBER_DTYPE_BF16: return reduce_for<BF16>(l, op, out, x, outer, inner, dt);
    default: return float_dtype_error("reduce", dt);
    }
}

/* ------------------------------------------------------------------------------------ */
/* gemm                                                                                  */

/*
 * cuBLAS handles are per thread and per device: a handle is not safe to share between
 * threads that set different streams, and it is bound to the device that was current
 * when it was created. The handle remembers the stream it was last bound to, so
 * cublasSetStream is called only when the thread's current stream changes.
 * Handles are destroyed when their thread exits (for the main thread, before the CUDA
 * runtime's own exit handlers run).
 */
struct BlasSlot {
    cublasHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
};

struct BlasHandles {
    BlasSlot slot[kMaxDevices];
    BlasHandles() = default;
    BlasHandles(const BlasHandles &) = delete;
    BlasHandles &operator=(const BlasHandles &) = delete;
    ~BlasHandles() {
        int prev = -1;
        if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
        for (int d = 0; d < kMaxDevices; d++) {
            if (slot[d].handle == nullptr) continue;
            /* Unbind first: the last stream it ran on may have been destroyed since. */
            if (cudaSetDevice(d) == cudaSuccess) {
                (void)cublasSetStream(slot[d].handle, nullptr);
                (void)cublasDestroy(slot[d].handle);
            }
            slot[d].handle = nullptr;
        }
        if (prev >= 0) (void)cudaSetDevice(prev);
        (void)cudaGetLastError();
    }
};

thread_local BlasHandles tls_blas;

/* `what` names the call and its arguments. */
ember_status blas_fail(cublasStatus_t st, const Launch &l, const char *what) {
    (void)cudaGetLastError();
    return ember__error(EMBER_ERR_CUBLAS, "%s on cuda:%d: %s (%s)", what, l.dev,
                        cublasGetStatusName(st), cublasGetStatusString(st));
}

ember_status blas_handle(const Launch &l, cublasHandle_t *out) {
    if (l.dev < 0 || l.dev >= kMaxDevices)
        return ember__error(EMBER_ERR_DEVICE, "gemm (cuda): device index %d beyond %d", l.dev,
                            kMaxDevices);
    BlasSlot &s = tls_blas.slot[l.dev];
    if (s.handle == nullptr) {
        cublasHandle_t h = nullptr;
        cublasStatus_t st = cublasCreate(&h);
        if (st != CUBLAS_STATUS_SUCCESS) return blas_fail(st, l, "cublasCreate");
        /* Default math: f32 GEMMs stay f32 (no TF32 tensor-core downconversion), so
         * results match the CPU's to f32 rounding. */
        st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
        if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(h, l.stream);
        if (st != CUBLAS_STATUS_SUCCESS) {
            (void)cublasDestroy(h);
            return blas_fail(st, l, "cublasSetMathMode/cublasSetStream");
        }
        s.handle = h;
        s.stream = l.stream;
    } else if (s.stream != l.stream) {
        cublasStatus_t st = cublasSetStream(s.handle, l.stream);
        if (st != CUBLAS_STATUS_SUCCESS) return blas_fail(st, l, "cublasSetStream");
        s.stream = l.stream;
    }
    *out = s.handle;
    return EMBER_OK;
}

/* k == 0: op(A) @ op(B) is an empty sum, so C = beta * C, and beta == 0 writes exact
 * zeros without reading C (BLAS semantics: NaNs in C do not survive). Handled here
 * because cuBLAS rejects the leading dimensions an empty operand may carry. */
__global__ void gemm_scale_c_kernel(float *c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                                    int64_t batch, float beta) {
    int64_t total = batch * m * n;
    for (int64_t i = global_tid(); i < total; i += grid_stride()) {
        int64_t col = i % n, r = (i / n) % m, b = i / (m * n);
        float *p = c + b * stride_c + r * ldc + col;
        *p = beta == 0.0f ? 0.0f : __fmul_rn(beta, *p);
    }
}

ember_status cuda_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                       int64_t stride_b, float beta, float *c, int64_t ldc, int64_t stride_c,
                       int64_t batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return EMBER_OK;
    Launch l;
    EMBER_TRY(current_launch(&l, "gemm"));
    if (k <= 0) {
        gemm_scale_c_kernel<<<grid_for(batch * m * n), kThreads, 0, l.stream>>>(
            c, m, n, ldc, stride_c, batch, beta);
        return check_launch(l, "gemm_scale_c_kernel", EMBER_DTYPE_F32);
    }
    cublasHandle_t h;
    EMBER_TRY(blas_handle(l, &h));

    /*
     * cuBLAS is column-major. A row-major matrix X (r x c, leading dim ld) is, read
     * column-major, X^T (c x r) with the same ld. So the row-major product
     *     C (m x n) = op(A) (m x k) @ op(B) (k x n)
     * is the column-major product
     *     C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m),
     * i.e. cuBLAS with the operands swapped, m and n swapped, and each operand's
     * transpose flag passed through unchanged (the column-major view of the stored B
     * is already B^T).
     */
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st;
    const bool bf16 = ember__matmul_bf16_for(m, n, k); /* ember/tensor.h */
    if (bf16 && batch == 1) {
        st = cublasGemmEx_64(h, op_b, op_a, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta, c,
                             CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT);
    } else if (bf16) {
        st = cublasGemmStridedBatchedEx_64(h, op_b, op_a, n, m, k, &alpha, b, CUDA_R_32F, ldb, (long long)stride_b,
                                           a, CUDA_R_32F, lda, (long long)stride_a, &beta, c, CUDA_R_32F, ldc,
                                           (long long)stride_c, batch, CUBLAS_COMPUTE_32F_FAST_16BF,
                                           CUBLAS_GEMM_DEFAULT);
    } else if (batch == 1) {
        st = cublasSgemm_64(h, op_b, op_a, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc);
    } else {
        /* Stride 0 on A or B shares one matrix across the batch, which cuBLAS allows. */
        st = cublasSgemmStridedBatched_64(h, op_b, op_a, n, m, k, &alpha, b, ldb,
                                          (long long)stride_b, a, lda, (long long)stride_a, &beta,
                                          c, ldc, (long long)stride_c, batch);
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
        /* Row-major names (the caller's), not the swapped ones cuBLAS saw. */
        char what[256];
        snprintf(what, sizeof what, "%s (row-major batch=%lld m=%lld n=%lld k=%lld trans_a=%d "
                 "trans_b=%d lda=%lld ldb=%lld ldc=%lld)",
                 bf16 ? (batch == 1 ? "cublasGemmEx_64 (32F_FAST_16BF)" : "cublasGemmStridedBatchedEx_64 (32F_FAST_16BF)")
                      : batch == 1 ? "cublasSgemm_64" : "cublasSgemmStridedBatched_64",
                 (long long)batch,
                 (long long)m, (long long)n, (long long)k, trans_a != 0, trans_b != 0,
                 (long long)lda, (long long)ldb, (long long)ldc);
        return blas_fail(st, l, what);
    }
    return EMBER_OK;
}

/* ------------------------------------------------------------------------------------ */
/* rng                                                                                   */

/*
 * Word w = offset + e of the stream (e = 0 .. nwords-1) is lane w % 4 of Philox block
 * w / 4. One thread computes one Philox block and hands each of its four words that
 * falls inside [offset, offset + nwords) to the sink with its index e, so every block
 * is computed once however the range is aligned.
 */
struct WordSink32 { /* i32, and i64 as (lo, hi) word pairs in little-endian order */
    uint32_t *dst;
    __device__ __forceinline__ void put(uint64_t e, uint32_t w) const { dst[e] = w; }
};
struct ByteSink { /* u8, i8: the low byte */
    uint8_t *dst;
    __device__ __forceinline__ void put(uint64_t e, uint32_t w) const { dst[e] = (uint8_t)w; }
};
template <class IO>
struct UniformSink { /* a + (b - a) * u, rounded like the CPU (no FMA) */
    typename IO::T *dst;
    float a, b;
    __device__ __forceinline__ void put(uint64_t e, uint32_t w) const {
        float u = ember__u32_to_unit(w);
        dst[e] = IO::store(__fadd_rn(a, __fmul_rn(__fsub_rn(b, a), u)));
    }
};

template <class Sink>
__global__ void rng_words_kernel(Sink sink, uint64_t seed, uint64_t offset, uint64_t nwords) {
    const uint64_t first = offset / 4, last = (offset + nwords - 1) / 4;
    const uint64_t nblocks = last - first + 1;
    for (uint64_t t = (uint64_t)global_tid(); t < nblocks; t += (uint64_t)grid_stride()) {
        const uint64_t blk = first + t;
        const ember__u32x4 r = ember__philox_block(seed, blk);
#pragma unroll
        for (int lane = 0; lane < 4; lane++) {
            const uint64_t w = blk * 4 + (uint64_t)lane;
            if (w < offset || w - offset >= nwords) continue;
            sink.put(w - offset, r.v[lane]);
        }
    }
}

/*
 * Box-Muller. offset is even, so the pair (w0, w0 + 1) = (offset + 2j, offset + 2j + 1)
 * is lanes (0, 1) or (2, 3) of one block: a thread's block yields two pairs.
 * The expressions are the CPU's, term for term; u1 is in (0, 1] so logf never sees 0.
 */
template <class IO>
__global__ void rng_normal_kernel(typename IO::T *dst, int64_t n, uint64_t seed, uint64_t offset,
                                  float mean, float std) {
    const uint64_t npairs = ((uint64_t)n + 1) / 2;
    const uint64_t first = offset / 4, last = (offset + 2 * npairs - 1) / 4;
    const uint64_t nblocks = last - first + 1;
    const float two_pi = 6.28318530717958647692f;
    for (uint64_t t = (uint64_t)global_tid(); t < nblocks; t += (uint64_t)grid_stride()) {
        const uint64_t blk = first + t;
        const ember__u32x4 r = ember__philox_block(seed, blk);
#pragma unroll
        for (int p = 0; p < 2; p++) {
            const uint64_t w0 = blk * 4 + 2 * (uint64_t)p;
            if (w0 < offset) continue;
            const uint64_t j = (w0 - offset) / 2;
            if (j >= npairs) continue;
            const float u1 = (float)((r.v[2 * p] >> 8) + 1u) * (1.0f / 16777216.0f);
            const float u2 = ember__u32_to_unit(r.v[2 * p + 1]);
            const float rad = sqrtf(-2.0f * logf(u1));
            const float theta = two_pi * u2;
            const float z0 = rad * cosf(theta);
            const float z1 = rad * sinf(theta);
            dst[2 * j] = IO::store(__fadd_rn(mean, __fmul_rn(std, z0)));
            if (2 * j + 1 < (uint64_t)n) dst[2 * j + 1] = IO::store(__fadd_rn(mean, __fmul_rn(std, z1)));
        }
    }
}

/* Enough threads for one block each, capped; the grid-stride loop does the rest. */
unsigned rng_grid(uint64_t nwords, uint64_t offset) {
    uint64_t nblocks = (offset + nwords - 1) / 4 - offset / 4 + 1;
    return grid_for((int64_t)(nblocks < (uint64_t)INT64_MAX ? nblocks : (uint64_t)INT64_MAX));
}

template <class Sink>
ember_status launch_rng_words(const Launch &l, Sink sink, uint64_t seed, uint64_t offset,
                              uint64_t nwords, ember_dtype dt, const char *name) {
    rng_words_kernel<Sink><<<rng_grid(nwords, offset), kThreads, 0, l.stream>>>(sink, seed, offset,
                                                                               nwords);
    return check_launch(l, name, dt);
}

template <class IO>
ember_status launch_rng_normal(const Launch &l, void *dst, int64_t n, uint64_t seed,
                               uint64_t offset, float mean, float std, ember_dtype dt) {
    uint64_t nwords = 2 * (((uint64_t)n + 1) / 2);
    rng_normal_kernel<IO><<<rng_grid(nwords, offset), kThreads, 0, l.stream>>>(
        (typename IO::T *)dst, n, seed, offset, mean, std);
    return check_launch(l, "rng_normal_kernel", dt);
}

ember_status cuda_rng(int kind, void *dst, ember_dtype dt, int64_t n, uint64_t seed,
                      uint64_t offset, float a, float b) {
    if (n <= 0) return EMBER_OK;
    Launch l;
    EMBER_TRY(current_launch(&l, "rng"));
    const uint64_t un = (uint64_t)n;
    switch (kind) {
    case EMBER__RNG_BITS:
        switch (dt) {
        case EMBER_DTYPE_I32:
            return launch_rng_words(l, WordSink32{(uint32_t *)dst}, seed, offset, un, dt,
                                    "rng_bits_kernel");
        case EMBER_DTYPE_I64: /* element i = words offset + 2i (lo), offset + 2i + 1 (hi) */
            return launch_rng_words(l, WordSink32{(uint32_t *)dst}, seed, offset, 2 * un, dt,
                                    "rng_bits_kernel");
        case EMBER_DTYPE_U8:
        case EMBER_DTYPE_I8:
            return launch_rng_words(l, ByteSink{(uint8_t *)dst}, seed, offset, un, dt,
                                    "rng_bits_kernel");
        default:
            return ember__error(EMBER_ERR_DTYPE, "rng bits (cuda): dtype %s is not an integer dtype",
                                ember_dtype_name(dt));
        }
    case EMBER__RNG_UNIFORM:
        switch (dt) {
        case EMBER_DTYPE_F32:
            return launch_rng_words(l, UniformSink<F32>{(float *)dst, a, b}, seed, offset, un, dt,
                                    "rng_uniform_kernel");
        case EMBER_DTYPE_F16:
            return launch_rng_words(l, UniformSink<F16>{(uint16_t *)dst, a, b}, seed, offset, un,
                                    dt, "rng_uniform_kernel");
        case EMBER_DTYPE_BF16:
            return launch_rng_words(l, UniformSink<BF16>{(uint16_t *)dst, a, b}, seed, offset, un,
                                    dt, "rng_uniform_kernel");
        default: return float_dtype_error("rng uniform", dt);
        }
    case EMBER__RNG_NORMAL:
        if (offset % 2 != 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "rng normal (cuda): word offset %llu "
                                "is odd; Box-Muller pairs start at even offsets",
                                (unsigned long long)offset);
        switch (dt) {
        case EMBER_DTYPE_F32: return launch_rng_normal<F32>(l, dst, n, seed, offset, a, b, dt);
        case EMBER_DTYPE_F16: return launch_rng_normal<F16>(l, dst, n, seed, offset, a, b, dt);
        case EMBER_DTYPE_BF16: return launch_rng_normal<BF16>(l, dst, n, seed, offset, a, b, dt);
        default: return float_dtype_error("rng normal", dt);
        }
    default:
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "rng (cuda): invalid kind %d", kind);
    }
}

/* ------------------------------------------------------------------------------------ */
/* device                                                                                */

ember_status cuda_activate(int device_index) {
    cudaError_t err = cudaSetDevice(device_index);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return ember__error(EMBER_ERR_CUDA, "cudaSetDevice on cuda:%d: %s", device_index,
                            cudaGetErrorString(err));
    }
    return EMBER_OK;
}

/* Waits for every stream of the device; the thread's current device is left as it was. */
ember_status cuda_synchronize(int device_index) {
    int prev = 0;
    bool switched = false;
    cudaError_t err = cudaGetDevice(&prev);
    if (err == cudaSuccess && prev != device_index) {
        err = cudaSetDevice(device_index);
        switched = err == cudaSuccess;
    }
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    if (switched) (void)cudaSetDevice(prev);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return ember__error(EMBER_ERR_CUDA, "cudaDeviceSynchronize on cuda:%d: %s", device_index,
                            cudaGetErrorString(err));
    }
    return EMBER_OK;
}

} // namespace

extern "C" const ember__backend ember__backend_cuda = {
    /* name */ "cuda",
    /* activate */ cuda_activate,
    /* synchronize */ cuda_synchronize,
    /* fill */ cuda_fill,
    /* convert */ cuda_convert,
    /* copy_strided */ cuda_copy_strided,
    /* unary */ cuda_unary,
    /* binary */ cuda_binary,
    /* scale */ cuda_scale,
    /* axpy */ cuda_axpy,
    /* reduce */ cuda_reduce,
    /* gemm */ cuda_gemm,
    /* rng */ cuda_rng,
};
