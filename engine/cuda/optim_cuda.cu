/*
 * engine/cuda/optim_cuda.cu: the dense optimizers' update kernels.
 *
 * One grid-stride kernel per parameter and kind, specialised at compile time on the
 * branches that vary between configurations (momentum, AMSGrad), so each element is
 * one fused read-modify-write of parameter, gradient and state, as on the CPU. The
 * element arithmetic is engine/optim_kernels.h, the same code the CPU loop runs, with
 * every rounding spelled out (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn), so CPU and
 * CUDA steps give the same bits. The hyperparameter struct goes by value as a kernel
 * argument (constant bank): no per-step allocation or copy.
 *
 * Launches go on the calling thread's current stream of the active device (the
 * dispatcher in engine/optim.c activates the parameter's device) and do not wait.
 */
#include <cuda_runtime.h>

#include <stdint.h>

#include "ember/optim.h"
#include "engine/cuda/cuda_runtime.h" /* ember's header, not CUDA's cuda_runtime.h */
#include "engine/internal.h"
#include "engine/optim_kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

unsigned grid_for(int64_t n) {
    int64_t blocks = (n + kThreads - 1) / kThreads;
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    return (unsigned)blocks;
}

template <bool kMomentum>
__global__ void sgd_kernel(ember__optim_hparams h, float *__restrict__ param,
                           const float *__restrict__ grad, float *__restrict__ buf, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float unused = 0.0f;
        param[i] = ember__sgd_elem(param[i], grad[i], kMomentum ? &buf[i] : &unused,
                                   h.weight_decay != 0.0f, kMomentum, h.first, h.nesterov, h.lr,
                                   h.weight_decay, h.momentum, h.one_minus_dampening);
    }
}

__global__ void adagrad_kernel(ember__optim_hparams h, float *__restrict__ param,
                               const float *__restrict__ grad, float *__restrict__ sum, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        param[i] = ember__adagrad_elem(param[i], grad[i], &sum[i], h.weight_decay != 0.0f, h.lr,
                                       h.weight_decay, h.eps);
}

template <bool kAmsgrad>
__global__ void adam_kernel(ember__optim_hparams h, float *__restrict__ param,
                            const float *__restrict__ grad, float *__restrict__ m,
                            float *__restrict__ v, float *__restrict__ vmax, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float unused = 0.0f;
        param[i] = ember__adam_elem(param[i], grad[i], &m[i], &v[i], kAmsgrad ? &vmax[i] : &unused,
                                    h.weight_decay != 0.0f, kAmsgrad, h.decay, h.weight_decay, h.beta1, h.beta2,
                                    h.one_minus_beta1, h.one_minus_beta2, h.eps, h.step_size,
                                    h.bc2_sqrt);
    }
}

}  // namespace

extern "C" ember_status ember__optim_update_cuda(const ember__optim_hparams *h, float *param,
                                                 const float *grad, float *s0, float *s1,
                                                 float *s2, int64_t n) {
    if (n <= 0) return EMBER_OK;
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return ember__error(EMBER_ERR_CUDA, "optimizer step (cuda): cudaGetDevice: %s",
                            cudaGetErrorString(err));
    }
    cudaStream_t s = (cudaStream_t)ember__cuda_current_stream(dev);
    unsigned grid = grid_for(n);
    const char *kernel = "";
    switch (h->kind) {
    case EMBER_OPTIM_SGD:
        kernel = "sgd_kernel";
        if (h->momentum != 0.0f) sgd_kernel<true><<<grid, kThreads, 0, s>>>(*h, param, grad, s0, n);
        else sgd_kernel<false><<<grid, kThreads, 0, s>>>(*h, param, grad, s0, n);
        break;
    case EMBER_OPTIM_ADAGRAD:
        kernel = "adagrad_kernel";
        adagrad_kernel<<<grid, kThreads, 0, s>>>(*h, param, grad, s0, n);
        break;
    default:
        kernel = "adam_kernel";
        if (h->amsgrad) adam_kernel<true><<<grid, kThreads, 0, s>>>(*h, param, grad, s0, s1, s2, n);
        else adam_kernel<false><<<grid, kThreads, 0, s>>>(*h, param, grad, s0, s1, s2, n);
        break;
    }
    err = cudaGetLastError();
    if (err != cudaSuccess)
        return ember__error(EMBER_ERR_CUDA, "%s launch on cuda:%d (%lld elements): %s", kernel, dev,
                            (long long)n, cudaGetErrorString(err));
    return EMBER_OK;
}
