/*
 * The cache's device-side block moves: gather slot records into one contiguous
 * staging block (before the one D2H copy of dirty victims) and scatter a staging
 * block into slots (after the one H2D copy of missed rows). A warp per record, 4-byte
 * words (records are padded to at least 4 bytes), queued on the current stream of the
 * device, which for the cache's worker is its copy stream.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "cache/cache_internal.h"
#include "engine/internal.h"
#include "engine/cuda/cuda_runtime.h"

namespace {

__global__ void gather_kernel(uint32_t *dst, const char *base, size_t stride, size_t words,
                              const int32_t *slots, int64_t n) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= n) return;
    const uint32_t *src = (const uint32_t *)(base + (size_t)slots[row] * stride);
    uint32_t *d = dst + (size_t)row * words;
    for (size_t w = threadIdx.x % 32; w < words; w += 32) d[w] = src[w];
}

__global__ void scatter_kernel(char *base, size_t stride, size_t words, const uint32_t *src,
                               const int32_t *slots, int64_t n) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= n) return;
    uint32_t *d = (uint32_t *)(base + (size_t)slots[row] * stride);
    const uint32_t *s = src + (size_t)row * words;
    for (size_t w = threadIdx.x % 32; w < words; w += 32) d[w] = s[w];
}

ember_status launch_check(const char *what, int dev) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return ember__error(EMBER_ERR_CUDA, "%s on cuda:%d: %s", what, dev, cudaGetErrorString(e));
    return EMBER_OK;
}

const int kThreads = 256; /* 8 records per block */

/* Run on dev for the call, restoring the thread's device after (as engine/cuda does). */
struct DeviceGuard {
    int prev = -1;
    explicit DeviceGuard(int dev) {
        if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
        if (prev != dev) cudaSetDevice(dev);
    }
    ~DeviceGuard() {
        int cur = -1;
        if (prev >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != prev) cudaSetDevice(prev);
    }
};

} // namespace

extern "C" ember_status ember__cache_gather_cuda(int dev, void *dst, const void *base, size_t stride,
                                                 size_t rec_bytes, const int32_t *slots, int64_t n) {
    if (n <= 0) return EMBER_OK;
    if (rec_bytes % 4 != 0 || stride % 4 != 0)
        return ember__error(EMBER_ERR_INTERNAL, "ember__cache_gather_cuda: record of %zu B, stride %zu B",
                            rec_bytes, stride);
    DeviceGuard guard(dev);
    cudaStream_t s = (cudaStream_t)ember__cuda_current_stream(dev);
    int64_t blocks = (n + kThreads / 32 - 1) / (kThreads / 32);
    gather_kernel<<<(unsigned)blocks, kThreads, 0, s>>>((uint32_t *)dst, (const char *)base, stride,
                                                        rec_bytes / 4, slots, n);
    return launch_check("ember__cache_gather_cuda", dev);
}

extern "C" ember_status ember__cache_scatter_cuda(int dev, void *base, size_t stride, size_t rec_bytes,
                                                  const void *src, const int32_t *slots, int64_t n) {
    if (n <= 0) return EMBER_OK;
    if (rec_bytes % 4 != 0 || stride % 4 != 0)
        return ember__error(EMBER_ERR_INTERNAL, "ember__cache_scatter_cuda: record of %zu B, stride %zu B",
                            rec_bytes, stride);
    DeviceGuard guard(dev);
    cudaStream_t s = (cudaStream_t)ember__cuda_current_stream(dev);
    int64_t blocks = (n + kThreads / 32 - 1) / (kThreads / 32);
    scatter_kernel<<<(unsigned)blocks, kThreads, 0, s>>>((char *)base, stride, rec_bytes / 4,
                                                         (const uint32_t *)src, slots, n);
    return launch_check("ember__cache_scatter_cuda", dev);
}
