/*
 * engine/optim_kernels.h: the element arithmetic of the dense optimizers, written once
 * for the CPU loop (engine/cpu/optim_cpu.c) and the CUDA kernel
 * (engine/cuda/optim_cuda.cu), and the entry points engine/optim.c dispatches to.
 * Not installed.
 *
 * Bits, not just values, agree between the backends: every product and sum is a
 * separate IEEE round-to-nearest operation (FMUL/FADD/FDIV below are __fmul_rn,
 * __fadd_rn, __fdiv_rn on the device, which nvcc never contracts into an FMA; the C
 * side is compiled as ISO C, where GCC does not contract either), and sqrtf is
 * correctly rounded on both (nvcc's default -prec-sqrt=true). Per-step scalars (bias
 * corrections, the scheduled lr) are computed once on the host in double, as torch
 * does with Python floats, and rounded to f32 once.
 *
 * Each update mirrors torch.optim's single-tensor code line by line; the comments give
 * the torch statement each line reproduces.
 */
#ifndef EMBER_OPTIM_KERNELS_H
#define EMBER_OPTIM_KERNELS_H

#include <math.h>
#include <stdint.h>

#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything one step needs, f32 scalars precomputed on the host. */
typedef struct ember__optim_hparams {
    int kind;           /* ember_optim_kind */
    int first;          /* 1 on the first step (SGD momentum buffer = gradient) */
    int nesterov;
    int amsgrad;
    float lr;           /* this step's lr; Adagrad: lr / (1 + (t - 1) * lr_decay) */
    float weight_decay; /* L2 coefficient added to the gradient; 0 for AdamW */
    float decay;        /* AdamW: 1 - lr * weight_decay; 1 otherwise */
    float momentum;
    float one_minus_dampening;
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
    float step_size;    /* Adam: lr / (1 - beta1^t) */
    float bc2_sqrt;     /* Adam: sqrt(1 - beta2^t) */
} ember__optim_hparams;

/*
 * Update n elements of one parameter in place. s0..s2 are the state buffers of the
 * kind (NULL where unused): SGD s0 = momentum buffer (when momentum != 0); Adagrad
 * s0 = sum; Adam(W) s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq (AMSGrad).
 * The CUDA entry queues on the current stream of the active device and does not wait.
 */
ember_status ember__optim_update_cpu(const ember__optim_hparams *h, float *param,
                                     const float *grad, float *s0, float *s1, float *s2,
                                     int64_t n);
#ifdef EMBER_HAVE_CUDA
ember_status ember__optim_update_cuda(const ember__optim_hparams *h, float *param,
                                      const float *grad, float *s0, float *s1, float *s2,
                                      int64_t n);
#endif

#ifdef __cplusplus
}
#endif

/* ---- element arithmetic ---- */

#ifdef __CUDACC__
#define EMBER_OPT_HD __host__ __device__ __forceinline__
#else
#define EMBER_OPT_HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define EMBER_FMUL(a, b) __fmul_rn((a), (b))
#define EMBER_FADD(a, b) __fadd_rn((a), (b))
#define EMBER_FDIV(a, b) __fdiv_rn((a), (b))
#define EMBER_FSQRT(a) __fsqrt_rn(a)
#else
#define EMBER_FMUL(a, b) ((float)((a) * (b)))
#define EMBER_FADD(a, b) ((float)((a) + (b)))
#define EMBER_FDIV(a, b) ((float)((a) / (b)))
#define EMBER_FSQRT(a) sqrtf(a)
#endif

/*
 * The element functions take every scalar by value, and every switch (weight decay
 * on or off, momentum, first step, Nesterov, AMSGrad) as an int the CPU loops pass as
 * a literal, one loop per combination: the loop body then has no branch and no load
 * a parameter store might alias, which is what lets the compiler vectorise it (a
 * runtime test such as `wd != 0` is unswitched, but GCC then leaves some versions
 * scalar). On CUDA the switches are uniform runtime values.
 */

/* SGD. buf is used only with momentum (read after the first step). */
EMBER_OPT_HD float ember__sgd_elem(float p, float g, float *buf, int has_wd, int has_momentum,
                                   int first, int nesterov, float lr, float wd, float momentum,
                                   float one_minus_dampening) {
    if (has_wd) g = EMBER_FADD(g, EMBER_FMUL(wd, p)); /* d_p.add(param, alpha=wd) */
    if (has_momentum) {
        float b = first ? g /* clone(d_p) */
                        : EMBER_FADD(EMBER_FMUL(*buf, momentum),
                                     EMBER_FMUL(one_minus_dampening, g)); /* buf.mul_(m).add_(d_p, alpha=1-damp) */
        *buf = b;
        g = nesterov ? EMBER_FADD(g, EMBER_FMUL(momentum, b)) : b; /* d_p.add(buf, alpha=m) */
    }
    return EMBER_FADD(p, EMBER_FMUL(-lr, g)); /* param.add_(d_p, alpha=-lr) */
}

/* Adagrad (lr is already torch's clr). */
EMBER_OPT_HD float ember__adagrad_elem(float p, float g, float *sum, int has_wd, float lr, float wd,
                                       float eps) {
    if (has_wd) g = EMBER_FADD(g, EMBER_FMUL(wd, p)); /* grad.add(param, alpha=wd) */
    float s = EMBER_FADD(*sum, EMBER_FMUL(g, g));         /* state_sum.addcmul_(grad, grad, value=1) */
    *sum = s;
    float std = EMBER_FADD(EMBER_FSQRT(s), eps);        /* state_sum.sqrt().add_(eps) */
    return EMBER_FADD(p, EMBER_FMUL(-lr, EMBER_FDIV(g, std))); /* param.addcdiv_(grad, std, value=-clr) */
}

/* Adam and AdamW (decay = 1 - lr * wd for AdamW, 1 for Adam; has_wd only for Adam's L2). */
EMBER_OPT_HD float ember__adam_elem(float p, float g, float *m, float *v, float *vmax, int has_wd,
                                    int amsgrad, float decay, float wd, float beta1, float beta2,
                                    float one_minus_beta1, float one_minus_beta2, float eps,
                                    float step_size, float bc2_sqrt) {
    p = EMBER_FMUL(p, decay);                         /* AdamW: param.mul_(1 - lr*wd); exact for 1 */
    if (has_wd) g = EMBER_FADD(g, EMBER_FMUL(wd, p)); /* Adam: grad.add(param, alpha=wd) */
    float mt = EMBER_FADD(EMBER_FMUL(*m, beta1), EMBER_FMUL(one_minus_beta1, g)); /* exp_avg.mul_(b1).add_(grad, alpha=1-b1) */
    float vt = EMBER_FADD(EMBER_FMUL(*v, beta2),
                          EMBER_FMUL(one_minus_beta2, EMBER_FMUL(g, g))); /* exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2) */
    *m = mt;
    *v = vt;
    float vd = vt;
    if (amsgrad) {
        float old = *vmax; /* torch.maximum(max_exp_avg_sq, exp_avg_sq, out=...), NaN propagating */
        float vm = (old > vt || old != old) ? old : vt;
        *vmax = vm;
        vd = vm;
    }
    float denom = EMBER_FADD(EMBER_FDIV(EMBER_FSQRT(vd), bc2_sqrt), eps); /* (v.sqrt() / bc2_sqrt).add_(eps) */
    return EMBER_FADD(p, EMBER_FMUL(-step_size, EMBER_FDIV(mt, denom))); /* param.addcdiv_(exp_avg, denom, value=-step_size) */
}

#endif /* EMBER_OPTIM_KERNELS_H */
