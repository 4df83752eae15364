/*
 * The CPU update loops of the dense optimizers: one fused pass per parameter that
 * reads the parameter, its gradient and its state once and writes them back once,
 * which is all the memory traffic an element-wise update needs (an unfused version,
 * one tensor op per torch statement, moves 3-5x the bytes). The arithmetic is
 * engine/optim_kernels.h, shared with CUDA.
 *
 * Vectorisation: each loop is instantiated once per combination of switches (weight
 * decay, momentum, first step, Nesterov, AMSGrad) with the switches as literals, so
 * its body has no branch; every scalar is a local the OpenMP team copies (no load a
 * parameter store could alias). CMakeLists.txt compiles this file with
 * -fno-math-errno: sqrtf's argument is a sum of squares, never negative, but with
 * errno semantics GCC keeps a scalar libm call path beside every sqrtf, which blocks
 * vectorisation (per-function pragmas and attributes do not change that); the
 * results are the same IEEE square roots. Small parameters stay on the calling
 * thread: waking a thread team costs more than updating a bias vector.
 */
#include "ember/optim.h"
#include "engine/optim_kernels.h"

#define PAR_MIN 32768 /* elements below which the loop stays on one thread */

/* One SGD loop; WD, MOM, FIRST, NEST are literals. */
#define SGD_LOOP(WD, MOM, FIRST, NEST)                                                          \
    _Pragma("omp parallel for simd if (n >= PAR_MIN) schedule(static)")                        \
    for (int64_t i = 0; i < n; i++) {                                                           \
        float unused = 0.0f;                                                                    \
        param[i] = ember__sgd_elem(param[i], grad[i], (MOM) ? &buf[i] : &unused, WD, MOM, FIRST, \
                                   NEST, lr, wd, mom, omd);                                     \
    }

static void sgd(const ember__optim_hparams *h, float *param, const float *grad, float *buf, int64_t n) {
    const float lr = h->lr, wd = h->weight_decay, mom = h->momentum, omd = h->one_minus_dampening;
    const int has_wd = wd != 0.0f;
    if (mom == 0.0f) {
        if (has_wd) SGD_LOOP(1, 0, 0, 0) else SGD_LOOP(0, 0, 0, 0)
    } else if (h->first) {
        if (has_wd) {
            if (h->nesterov) SGD_LOOP(1, 1, 1, 1) else SGD_LOOP(1, 1, 1, 0)
        } else {
            if (h->nesterov) SGD_LOOP(0, 1, 1, 1) else SGD_LOOP(0, 1, 1, 0)
        }
    } else {
        if (has_wd) {
            if (h->nesterov) SGD_LOOP(1, 1, 0, 1) else SGD_LOOP(1, 1, 0, 0)
        } else {
            if (h->nesterov) SGD_LOOP(0, 1, 0, 1) else SGD_LOOP(0, 1, 0, 0)
        }
    }
}

#define ADAGRAD_LOOP(WD)                                                      \
    _Pragma("omp parallel for simd if (n >= PAR_MIN) schedule(static)")      \
    for (int64_t i = 0; i < n; i++)                                           \
        param[i] = ember__adagrad_elem(param[i], grad[i], &sum[i], WD, lr, wd, eps);

static void adagrad(const ember__optim_hparams *h, float *param, const float *grad, float *sum, int64_t n) {
    const float lr = h->lr, wd = h->weight_decay, eps = h->eps;
    if (wd != 0.0f) ADAGRAD_LOOP(1) else ADAGRAD_LOOP(0)
}

#define ADAM_LOOP(WD, AMS)                                                                         \
    _Pragma("omp parallel for simd if (n >= PAR_MIN) schedule(static)")                           \
    for (int64_t i = 0; i < n; i++) {                                                              \
        float unused = 0.0f;                                                                       \
        param[i] = ember__adam_elem(param[i], grad[i], &m[i], &v[i], (AMS) ? &vmax[i] : &unused,   \
                                    WD, AMS, decay, wd, b1, b2, omb1, omb2, eps, step_size, bc2); \
    }

static void adam(const ember__optim_hparams *h, float *param, const float *grad, float *m, float *v,
                 float *vmax, int64_t n) {
    const float decay = h->decay, wd = h->weight_decay, b1 = h->beta1, b2 = h->beta2;
    const float omb1 = h->one_minus_beta1, omb2 = h->one_minus_beta2, eps = h->eps;
    const float step_size = h->step_size, bc2 = h->bc2_sqrt;
    const int has_wd = wd != 0.0f;
    if (h->amsgrad) {
        if (has_wd) ADAM_LOOP(1, 1) else ADAM_LOOP(0, 1)
    } else {
        if (has_wd) ADAM_LOOP(1, 0) else ADAM_LOOP(0, 0)
    }
}

ember_status ember__optim_update_cpu(const ember__optim_hparams *h, float *param,
                                     const float *grad, float *s0, float *s1, float *s2,
                                     int64_t n) {
    switch (h->kind) {
    case EMBER_OPTIM_SGD: sgd(h, param, grad, s0, n); break;
    case EMBER_OPTIM_ADAGRAD: adagrad(h, param, grad, s0, n); break;
    default: adam(h, param, grad, s0, s1, s2, n); break; /* EMBER_OPTIM_ADAM, EMBER_OPTIM_ADAMW */
    }
    return EMBER_OK;
}
