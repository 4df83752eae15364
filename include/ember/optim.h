/*
 * ember/optim.h: dense optimizers, gradient clipping and learning-rate schedules.
 *
 * An optimizer is created once over a set of f32 parameter tensors, each registered
 * with its gradient tensor (and optionally a name), and updates the parameters in
 * place at every ember_optimizer_step. The arithmetic follows torch.optim (1.13 and
 * later, single-tensor path) term for term: SGD (momentum, dampening, Nesterov),
 * Adagrad (lr decay, initial accumulator), Adam (optionally AMSGrad) and AdamW, with
 * torch's bias correction, L2 weight decay added to the gradient for SGD, Adagrad
 * and Adam, and decoupled weight decay for AdamW. Each parameter is updated by one
 * fused pass that reads the parameter, its gradient and its state once (OpenMP on the
 * CPU, one kernel per parameter on CUDA); CPU and CUDA share the element arithmetic
 * and give the same bits.
 *
 *     ember_optimizer_param ps[] = {{.param = w, .grad = gw, .name = "fc.weight"},
 *                                   {.param = b, .grad = gb, .name = "fc.bias"}};
 *     ember_optimizer_config cfg = ember_optimizer_defaults(EMBER_OPTIM_ADAMW);
 *     cfg.weight_decay = 0.01;
 *     cfg.schedule = (ember_lr_schedule){.kind = EMBER_LR_COSINE, .base_lr = 1e-3,
 *                                        .warmup_steps = 100, .total_steps = 10000};
 *     ember_optimizer *opt;
 *     ember_optimizer_create(&cfg, ps, 2, &opt);
 *     for (...) {
 *         ... backward writes gw, gb ...
 *         double norm;
 *         ember_optimizer_clip_grad_norm(opt, 1.0, 2.0, &norm);
 *         ember_optimizer_step(opt);
 *     }
 *     ember_optimizer_destroy(opt);
 *
 * Gradients: registered once, with the parameters. The optimizer keeps its own handle
 * (a retained view) on every parameter and gradient, so their storage stays alive
 * for its lifetime; when gradients live elsewhere at each step (a fresh buffer from
 * an executor), pass them to ember_optimizer_step_grads instead.
 *
 * State: allocated at creation (zeros, or Adagrad's initial accumulator), in each
 * parameter's memory manager and tier with kind EMBER_MEM_OPTIMIZER_STATE. It is
 * exposed as named tensors ("<param name>.<buffer>", buffers named as in torch's
 * state_dict: momentum_buffer, sum, exp_avg, exp_avg_sq, max_exp_avg_sq) plus a step
 * counter, so checkpoints save and restore it (ember/checkpoint.h does both).
 *
 * Learning rate: the step with index k (k = number of steps already taken, starting
 * at 0) uses ember_lr_schedule_at(&cfg.schedule, k). A schedule of kind
 * EMBER_LR_CONSTANT whose base_lr is 0 means "use cfg.lr" (also settable later with
 * ember_optimizer_set_lr). This matches torch, where scheduler.step() follows
 * optimizer.step().
 *
 * Streams: on CUDA, steps are queued on the calling thread's current stream and
 * return before they finish, like every kernel; clip_grad_norm waits, because it
 * returns the norm.
 *
 * Thread safety: an optimizer is not thread-safe; use it from one thread at a time.
 */
#ifndef EMBER_OPTIM_H
#define EMBER_OPTIM_H

#include <stdint.h>

#include "ember/status.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- learning-rate schedules ---- */

typedef enum ember_lr_schedule_kind {
    EMBER_LR_CONSTANT, /* base_lr at every step */
    EMBER_LR_LINEAR,   /* linear warmup from 0, then linear decay to min_lr at total_steps */
    EMBER_LR_COSINE,   /* linear warmup from 0, then half a cosine down to min_lr */
    EMBER_LR_SCHEDULE_KIND_COUNT
} ember_lr_schedule_kind;

/**
 * A learning-rate schedule: a plain value, usable by any optimizer (dense or sparse).
 * For step k (0-based):
 *   k < warmup_steps:  lr = base_lr * k / warmup_steps
 *   otherwise:         p = min(1, (k - warmup) / (total_steps - warmup)), or 1 when
 *                      total_steps == warmup_steps (a decay of no length is over)
 *                      LINEAR: lr = min_lr + (base_lr - min_lr) * (1 - p)
 *                      COSINE: lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2
 * With min_lr = 0 these are get_linear_schedule_with_warmup and
 * get_cosine_schedule_with_warmup of Hugging Face transformers (LambdaLR in torch);
 * COSINE with warmup_steps = 0 is torch's CosineAnnealingLR(T_max = total_steps,
 * eta_min = min_lr) for steps up to total_steps. Steps from total_steps on give min_lr.
 */
typedef struct ember_lr_schedule {
    ember_lr_schedule_kind kind;
    double base_lr;       /* >= 0 */
    int64_t warmup_steps; /* >= 0 (LINEAR, COSINE) */
    int64_t total_steps;  /* >= warmup_steps (LINEAR, COSINE) */
    double min_lr;        /* 0 <= min_lr <= base_lr (LINEAR, COSINE) */
} ember_lr_schedule;

/**
 * Learning rate of step `step` (0-based, >= 0).
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT for an invalid schedule (message says
 *         which field) or a negative step.
 */
ember_status ember_lr_schedule_at(const ember_lr_schedule *s, int64_t step, double *lr);

/* ---- optimizers ---- */

typedef enum ember_optim_kind {
    EMBER_OPTIM_SGD,
    EMBER_OPTIM_ADAGRAD,
    EMBER_OPTIM_ADAM,
    EMBER_OPTIM_ADAMW,
    EMBER_OPTIM_KIND_COUNT
} ember_optim_kind;

/*
 * Start from ember_optimizer_defaults(kind) and change what differs: a zeroed struct
 * means betas and eps of 0, which are valid values, not "defaults".
 */
typedef struct ember_optimizer_config {
    ember_optim_kind kind;
    /*
     * Hyperparameters are doubles, as torch's Python floats are: per-step scalars (bias
     * corrections, schedules) are computed in double and rounded to f32 where torch
     * rounds them, so a value written as 0.9 here behaves as 0.9 does in torch.
     */
    double lr;           /* used when the schedule is constant with base_lr 0 */
    double weight_decay; /* L2 on the gradient (SGD, Adagrad, Adam); decoupled (AdamW) */
    /* SGD */
    double momentum;     /* 0 = plain SGD */
    double dampening;
    int nesterov;        /* needs momentum > 0 and dampening 0 */
    /* Adagrad */
    double lr_decay;     /* lr / (1 + (t - 1) * lr_decay) at step t (1-based) */
    double initial_accumulator_value;
    /* Adam, AdamW (eps also Adagrad) */
    double beta1, beta2, eps;
    int amsgrad;
    ember_lr_schedule schedule;
    /*
     * Manager for the state; NULL = each parameter's own manager (the default manager
     * for parameters that wrap caller memory on the CPU). The state goes in the
     * parameter's tier, which must be a tier of this manager on the parameter's device.
     */
    ember_memory *mm;
} ember_optimizer_config;

/** torch's defaults for a kind (lr: SGD 0.01 (torch has none), Adagrad 0.01, Adam(W)
 *  0.001; eps: Adagrad 1e-10, Adam 1e-8; betas 0.9, 0.999; AdamW weight_decay 0.01). */
ember_optimizer_config ember_optimizer_defaults(ember_optim_kind kind);

/** One parameter: f32, contiguous; grad has its shape, dtype and device. */
typedef struct ember_optimizer_param {
    ember_tensor *param;
    ember_tensor *grad;  /* may be NULL when every step passes gradients */
    const char *name;    /* copied; NULL = the parameter's index ("0", "1", ...) */
} ember_optimizer_param;

typedef struct ember_optimizer ember_optimizer;

/**
 * Create an optimizer over n parameters (n >= 0) and allocate its state.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (a hyperparameter out of range, NULL
 *         param, duplicate or empty name, a parameter listed twice, a gradient that
 *         aliases its parameter); EMBER_ERR_DTYPE (not f32); EMBER_ERR_SHAPE (grad
 *         shape differs); EMBER_ERR_DEVICE (grad on another device); EMBER_ERR_STATE
 *         (not contiguous); EMBER_ERR_OUT_OF_MEMORY (state over budget). Messages
 *         name the parameter.
 */
ember_status ember_optimizer_create(const ember_optimizer_config *cfg,
                                    const ember_optimizer_param *params, int n,
                                    ember_optimizer **out);
/** Frees the state and drops the optimizer's handles. NULL is a no-op. */
void ember_optimizer_destroy(ember_optimizer *opt);

/**
 * One update of every parameter with its registered gradient; then the step counter
 * advances.
 * @return EMBER_OK; EMBER_ERR_STATE (a parameter registered without a gradient);
 *         EMBER_ERR_CUDA. A failure found before any update (a missing or mismatched
 *         gradient) changes nothing and the counter does not advance; a CUDA launch
 *         failure midway leaves the parameters before it updated.
 */
ember_status ember_optimizer_step(ember_optimizer *opt);
/**
 * As ember_optimizer_step with grads[i] the gradient of parameter i (n entries, the
 * creation order). Checked like registered gradients.
 */
ember_status ember_optimizer_step_grads(ember_optimizer *opt, ember_tensor *const *grads);

/** Fill every registered gradient with 0. */
ember_status ember_optimizer_zero_grad(ember_optimizer *opt);

/**
 * Clip the registered gradients by their global norm, like
 * torch.nn.utils.clip_grad_norm_: total = (sum_i ||g_i||^p)^(1/p) (p = norm_type: 2,
 * or INFINITY for the max-abs norm; other p > 0 are rejected), and when total >
 * max_norm every gradient is scaled by max_norm / (total + 1e-6). *total_norm gets
 * the norm before clipping. A non-finite norm leaves the gradients untouched (torch
 * would fill them with NaN): the caller should skip the step.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (max_norm < 0, bad norm_type);
 *         EMBER_ERR_STATE (a parameter without a registered gradient).
 */
ember_status ember_optimizer_clip_grad_norm(ember_optimizer *opt, double max_norm,
                                            double norm_type, double *total_norm);
/** The same for any n f32 gradient tensors (contiguous; mixed devices allowed). */
ember_status ember_clip_grad_norm(ember_tensor *const *grads, int n, double max_norm,
                                  double norm_type, double *total_norm);

/** Learning rate the next step will use (the schedule's, or the fixed lr). */
ember_status ember_optimizer_get_lr(const ember_optimizer *opt, double *lr);
/**
 * Replace the fixed lr (>= 0).
 * @return EMBER_ERR_STATE when the optimizer follows a schedule.
 */
ember_status ember_optimizer_set_lr(ember_optimizer *opt, double lr);

/** Steps taken so far (0 after creation). */
ember_status ember_optimizer_get_step(const ember_optimizer *opt, int64_t *step);
/** Set the step counter (>= 0), e.g. after loading state from a checkpoint. */
ember_status ember_optimizer_set_step(ember_optimizer *opt, int64_t step);
/** The optimizer's kind (for checkpoint metadata). */
ember_status ember_optimizer_get_kind(const ember_optimizer *opt, ember_optim_kind *kind);
const char *ember_optim_kind_name(ember_optim_kind kind); /* "sgd", "adagrad", "adam", "adamw" */

/** Number of state tensors (SGD with momentum: n; Adam: 2n; AMSGrad: 3n; ...). */
ember_status ember_optimizer_state_count(const ember_optimizer *opt, int *count);
/**
 * State tensor i (0 <= i < count), grouped by parameter in creation order.
 * *name and *tensor stay valid until the optimizer is destroyed; the tensor is the
 * live state (write into it to restore a checkpoint), shaped like its parameter.
 * @return EMBER_OK or EMBER_ERR_INDEX.
 */
ember_status ember_optimizer_state_get(const ember_optimizer *opt, int i, const char **name,
                                       ember_tensor **tensor);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_OPTIM_H */
