/*
 * Dense optimizers: validation, state, schedules and the per-step scalars; the element
 * loops are in engine/cpu/optim_cpu.c and engine/cuda/optim_cuda.cu.
 *
 * Design decisions:
 *  - The optimizer is a dispatcher like engine/ops.c: every user-facing check happens
 *    here (at creation for registered gradients, at each step for passed ones), then
 *    one backend entry per parameter gets raw pointers.
 *  - The state of one parameter is one allocation, (buffers, numel), handed out as
 *    views shaped like the parameter: few allocations, and each buffer a plain
 *    contiguous tensor that checkpoints save by name.
 *  - Everything that depends on the step number (lr schedule, bias corrections,
 *    Adagrad's lr decay) is computed in double on the host, then rounded to f32
 *    exactly where torch rounds its Python floats, so the kernels see torch's scalars.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/optim.h"
#include "engine/backend.h"
#include "engine/internal.h"
#include "engine/optim_kernels.h"
#include "engine/tensor_internal.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

#define MAX_STATE 3

/* ---- learning-rate schedules ---- */

static ember_status check_schedule(const char *fn, const ember_lr_schedule *s) {
    if ((unsigned)s->kind >= EMBER_LR_SCHEDULE_KIND_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: schedule kind %d is not valid", fn,
                            (int)s->kind);
    if (!(s->base_lr >= 0) || !isfinite(s->base_lr))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: schedule base_lr %g must be finite and >= 0",
                            fn, s->base_lr);
    if (s->kind == EMBER_LR_CONSTANT) return EMBER_OK;
    if (s->warmup_steps < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: schedule warmup_steps %lld < 0", fn,
                            (long long)s->warmup_steps);
    if (s->total_steps < s->warmup_steps)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: schedule total_steps %lld < warmup_steps %lld", fn,
                            (long long)s->total_steps, (long long)s->warmup_steps);
    if (!(s->min_lr >= 0) || !(s->min_lr <= s->base_lr))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: schedule min_lr %g outside [0, base_lr = %g]", fn, s->min_lr,
                            s->base_lr);
    return EMBER_OK;
}

/* The schedule's value at step k (schedule already checked). */
static double schedule_value(const ember_lr_schedule *s, int64_t k) {
    if (s->kind == EMBER_LR_CONSTANT) return s->base_lr;
    if (k < s->warmup_steps) return s->base_lr * (double)k / (double)s->warmup_steps;
    /* Progress through the decay; a decay of no length (total == warmup) is over. */
    int64_t span = s->total_steps - s->warmup_steps;
    double p = span > 0 ? (double)(k - s->warmup_steps) / (double)span : 1.0;
    if (p > 1) p = 1;
    double f = s->kind == EMBER_LR_LINEAR ? 1.0 - p : 0.5 * (1.0 + cos(M_PI * p));
    return s->min_lr + (s->base_lr - s->min_lr) * f;
}

ember_status ember_lr_schedule_at(const ember_lr_schedule *s, int64_t step, double *lr) {
    static const char fn[] = "ember_lr_schedule_at";
    EMBER_CHECK_NULL(s, fn);
    EMBER_CHECK_NULL(lr, fn);
    EMBER_TRY(check_schedule(fn, s));
    if (step < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: step %lld < 0", fn, (long long)step);
    *lr = schedule_value(s, step);
    return EMBER_OK;
}

/* ---- the optimizer object ---- */

typedef struct opt_param {
    ember_tensor *param; /* retained handle */
    ember_tensor *grad;  /* retained handle, or NULL */
    ember_tensor *block; /* (nstate, numel) state allocation, or NULL */
    ember_tensor *state[MAX_STATE];
    char *name;
} opt_param;

struct ember_optimizer {
    ember_optimizer_config cfg;
    int n;
    opt_param *p;
    int nstate;                          /* buffers per parameter */
    const char *suffix[MAX_STATE];       /* buffer names */
    char **state_names;                  /* n * nstate */
    int64_t step;
    int use_schedule;
};

static const char *kind_names[EMBER_OPTIM_KIND_COUNT] = {"sgd", "adagrad", "adam", "adamw"};

const char *ember_optim_kind_name(ember_optim_kind kind) {
    return (unsigned)kind < EMBER_OPTIM_KIND_COUNT ? kind_names[kind] : "invalid";
}

ember_optimizer_config ember_optimizer_defaults(ember_optim_kind kind) {
    ember_optimizer_config c = {.kind = kind, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    switch (kind) {
    case EMBER_OPTIM_SGD: c.lr = 0.01; break;
    case EMBER_OPTIM_ADAGRAD: c.lr = 0.01, c.eps = 1e-10; break;
    case EMBER_OPTIM_ADAM: c.lr = 0.001; break;
    case EMBER_OPTIM_ADAMW: c.lr = 0.001, c.weight_decay = 0.01; break;
    default: break;
    }
    return c;
}

static ember_status check_config(const ember_optimizer_config *c) {
    static const char fn[] = "ember_optimizer_create";
#define NEED(cond, ...) \
    if (!(cond)) return ember__error(EMBER_ERR_INVALID_ARGUMENT, __VA_ARGS__)
    NEED((unsigned)c->kind < EMBER_OPTIM_KIND_COUNT, "%s: optimizer kind %d is not valid", fn, (int)c->kind);
    const char *k = kind_names[c->kind];
    NEED(c->lr >= 0 && isfinite(c->lr), "%s: %s lr %g must be finite and >= 0", fn, k, c->lr);
    NEED(c->weight_decay >= 0 && isfinite(c->weight_decay), "%s: %s weight_decay %g must be >= 0", fn,
         k, c->weight_decay);
    switch (c->kind) {
    case EMBER_OPTIM_SGD:
        NEED(c->momentum >= 0 && isfinite(c->momentum), "%s: sgd momentum %g must be >= 0", fn, c->momentum);
        NEED(c->dampening >= 0 && isfinite(c->dampening), "%s: sgd dampening %g must be >= 0", fn,
             c->dampening);
        NEED(!c->nesterov || (c->momentum > 0 && c->dampening == 0),
             "%s: sgd nesterov needs momentum > 0 and dampening 0 (momentum %g, dampening %g)", fn,
             c->momentum, c->dampening);
        break;
    case EMBER_OPTIM_ADAGRAD:
        NEED(c->lr_decay >= 0 && isfinite(c->lr_decay), "%s: adagrad lr_decay %g must be >= 0", fn,
             c->lr_decay);
        NEED(c->initial_accumulator_value >= 0 && isfinite(c->initial_accumulator_value),
             "%s: adagrad initial_accumulator_value %g must be >= 0", fn, c->initial_accumulator_value);
        NEED(c->eps >= 0 && isfinite(c->eps), "%s: adagrad eps %g must be >= 0", fn, c->eps);
        break;
    default:
        NEED(c->beta1 >= 0 && c->beta1 < 1, "%s: %s beta1 %g outside [0, 1)", fn, k, c->beta1);
        NEED(c->beta2 >= 0 && c->beta2 < 1, "%s: %s beta2 %g outside [0, 1)", fn, k, c->beta2);
        NEED(c->eps >= 0 && isfinite(c->eps), "%s: %s eps %g must be >= 0", fn, k, c->eps);
        break;
    }
#undef NEED
    return check_schedule(fn, &c->schedule);
}

/* Parameter i's name for messages. */
static const char *pname(const ember_optimizer *o, int i) { return o->p[i].name; }

/* Checks a gradient against its parameter (both already non-NULL). */
static ember_status check_grad(const char *fn, const char *name, const ember_tensor *p,
                               const ember_tensor *g) {
    char a[96], b[96];
    if (g->dtype != EMBER_DTYPE_F32)
        return ember__error(EMBER_ERR_DTYPE, "%s: gradient of '%s' is %s; optimizers take f32", fn,
                            name, ember_dtype_name(g->dtype));
    if (!ember_device_equal(p->storage->device, g->storage->device))
        return ember__error(EMBER_ERR_DEVICE, "%s: gradient of '%s' is %s, the parameter %s", fn, name,
                            ember_tensor_describe(g, b, sizeof b), ember_tensor_describe(p, a, sizeof a));
    int same = p->ndim == g->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = p->shape[d] == g->shape[d];
    if (!same)
        return ember__error(EMBER_ERR_SHAPE, "%s: gradient of '%s' is %s, the parameter %s", fn, name,
                            ember_tensor_describe(g, b, sizeof b), ember_tensor_describe(p, a, sizeof a));
    if (!ember_tensor_is_contiguous(g))
        return ember__error(EMBER_ERR_STATE, "%s: gradient of '%s' is not contiguous (%s)", fn, name,
                            ember_tensor_describe(g, b, sizeof b));
    if (g->storage == p->storage) {
        int64_t n = ember_tensor_numel(p);
        if (n > 0 && g->offset < p->offset + n && p->offset < g->offset + n)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "%s: gradient of '%s' overlaps the parameter's memory", fn, name);
    }
    return EMBER_OK;
}

typedef struct span {
    const ember_storage *s;
    int64_t begin, end;
    int index;
} span;

static int span_cmp(const void *x, const void *y) {
    const span *a = x, *b = y;
    if (a->s != b->s) return (uintptr_t)a->s < (uintptr_t)b->s ? -1 : 1;
    return a->begin < b->begin ? -1 : a->begin > b->begin;
}

static int name_cmp(const void *x, const void *y) {
    const opt_param *a = *(const opt_param *const *)x, *b = *(const opt_param *const *)y;
    return strcmp(a->name, b->name);
}

/* No parameter listed twice (overlapping memory), no name used twice. */
static ember_status check_distinct(ember_optimizer *o) {
    static const char fn[] = "ember_optimizer_create";
    if (o->n < 2) return EMBER_OK;
    ember_status st = EMBER_OK;
    span *sp = malloc((size_t)o->n * sizeof *sp);
    const opt_param **by_name = malloc((size_t)o->n * sizeof *by_name);
    if (!sp || !by_name) {
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d parameters", fn, o->n);
        goto done;
    }
    int m = 0;
    for (int i = 0; i < o->n; i++) {
        const ember_tensor *t = o->p[i].param;
        int64_t n = ember_tensor_numel(t);
        if (n > 0) sp[m++] = (span){t->storage, t->offset, t->offset + n, i};
        by_name[i] = &o->p[i];
    }
    qsort(sp, (size_t)m, sizeof *sp, span_cmp);
    for (int i = 1; i < m && st == EMBER_OK; i++)
        if (sp[i].s == sp[i - 1].s && sp[i].begin < sp[i - 1].end)
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT,
                              "%s: parameters '%s' and '%s' share memory (a parameter listed twice?)",
                              fn, pname(o, sp[i - 1].index), pname(o, sp[i].index));
    qsort(by_name, (size_t)o->n, sizeof *by_name, name_cmp);
    for (int i = 1; i < o->n && st == EMBER_OK; i++)
        if (strcmp(by_name[i]->name, by_name[i - 1]->name) == 0)
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: parameter name '%s' is used twice", fn,
                              by_name[i]->name);
done:
    free(sp);
    free(by_name);
    return st;
}

/* Allocates parameter i's state block and its views. */
static ember_status alloc_state(ember_optimizer *o, int i) {
    static const char fn[] = "ember_optimizer_create";
    opt_param *op = &o->p[i];
    if (o->nstate == 0) return EMBER_OK;
    const ember_tensor *t = op->param;
    ember_memory *mm = o->cfg.mm ? o->cfg.mm : t->storage->mm;
    ember_tier tier = t->storage->tier;
    if (!mm) {
        if (t->storage->device.type != EMBER_DEVICE_CPU)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "%s: parameter '%s' wraps GPU memory; pass cfg.mm, a manager whose "
                                "DEVICE tier is that GPU, for its state",
                                fn, op->name);
        mm = ember_memory_default();
        tier = EMBER_TIER_HOST;
    }
    ember_device sd = ember_memory_tier_device(mm, tier);
    if (!ember_device_equal(sd, t->storage->device)) {
        char a[32], b[32];
        return ember__error(EMBER_ERR_DEVICE,
                            "%s: parameter '%s' is on %s but the state manager's %s tier is on %s", fn,
                            op->name, ember_device_format(t->storage->device, a, sizeof a),
                            ember_tier_name(tier), ember_device_format(sd, b, sizeof b));
    }
    int64_t numel = ember_tensor_numel(t);
    EMBER_TRY(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2,
                                                         .shape = {o->nstate, numel}, .tier = tier,
                                                         .kind = EMBER_MEM_OPTIMIZER_STATE, .mm = mm},
                                  &op->block));
    double init = o->cfg.kind == EMBER_OPTIM_ADAGRAD ? o->cfg.initial_accumulator_value : 0.0;
    EMBER_TRY(ember_tensor_fill(op->block, init));
    for (int s = 0; s < o->nstate; s++) {
        ember_tensor *row;
        EMBER_TRY(ember_tensor_narrow(op->block, 0, s, 1, &row));
        ember_status st = ember_tensor_reshape(row, t->ndim, t->shape, &op->state[s]);
        ember_tensor_destroy(row);
        EMBER_TRY(st);
    }
    return EMBER_OK;
}

void ember_optimizer_destroy(ember_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        opt_param *op = &o->p[i];
        for (int s = 0; s < MAX_STATE; s++) ember_tensor_destroy(op->state[s]);
        ember_tensor_destroy(op->block);
        ember_tensor_destroy(op->param);
        ember_tensor_destroy(op->grad);
        free(op->name);
    }
    if (o->state_names)
        for (int i = 0; i < o->n * o->nstate; i++) free(o->state_names[i]);
    free(o->state_names);
    free(o->p);
    free(o);
}

static char *dup_printf(const char *fmt, const char *a, const char *b) {
    int len = snprintf(NULL, 0, fmt, a, b);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (s) snprintf(s, (size_t)len + 1, fmt, a, b);
    return s;
}

static ember_status build(ember_optimizer *o, const ember_optimizer_param *params) {
    static const char fn[] = "ember_optimizer_create";
    const ember_optimizer_config *c = &o->cfg;
    switch (c->kind) {
    case EMBER_OPTIM_SGD:
        if (c->momentum != 0) o->suffix[o->nstate++] = "momentum_buffer";
        break;
    case EMBER_OPTIM_ADAGRAD: o->suffix[o->nstate++] = "sum"; break;
    default:
        o->suffix[o->nstate++] = "exp_avg";
        o->suffix[o->nstate++] = "exp_avg_sq";
        if (c->amsgrad) o->suffix[o->nstate++] = "max_exp_avg_sq";
        break;
    }
    for (int i = 0; i < o->n; i++) {
        const ember_optimizer_param *pp = &params[i];
        opt_param *op = &o->p[i];
        char idx[24];
        snprintf(idx, sizeof idx, "%d", i);
        const char *name = pp->name ? pp->name : idx;
        if (!name[0])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: parameter %d has an empty name", fn, i);
        op->name = strdup(name);
        if (!op->name) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: names", fn);
        if (!pp->param)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: parameter %d ('%s') is NULL", fn, i, name);
        const ember_tensor *t = pp->param;
        char d[96];
        if (t->dtype != EMBER_DTYPE_F32)
            return ember__error(EMBER_ERR_DTYPE, "%s: parameter '%s' is %s; optimizers take f32", fn,
                                name, ember_tensor_describe(t, d, sizeof d));
        if (!ember_tensor_is_contiguous(t))
            return ember__error(EMBER_ERR_STATE, "%s: parameter '%s' is not contiguous (%s)", fn, name,
                                ember_tensor_describe(t, d, sizeof d));
        if (!ember__backend_for(t->storage->device.type))
            return ember__error(EMBER_ERR_UNSUPPORTED, "%s: parameter '%s' is on %s, not built in", fn,
                                name, ember_tensor_describe(t, d, sizeof d));
        if (pp->grad) EMBER_TRY(check_grad(fn, name, t, pp->grad));
        EMBER_TRY(ember_tensor_retain(t, &op->param));
        if (pp->grad) EMBER_TRY(ember_tensor_retain(pp->grad, &op->grad));
    }
    EMBER_TRY(check_distinct(o));
    for (int i = 0; i < o->n; i++) EMBER_TRY(alloc_state(o, i));
    if (o->nstate && o->n) {
        o->state_names = calloc((size_t)o->n * (size_t)o->nstate, sizeof *o->state_names);
        if (!o->state_names) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: state names", fn);
        for (int i = 0; i < o->n; i++)
            for (int s = 0; s < o->nstate; s++) {
                char **nm = &o->state_names[i * o->nstate + s];
                *nm = dup_printf("%s.%s", o->p[i].name, o->suffix[s]);
                if (!*nm) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: state names", fn);
            }
    }
    return EMBER_OK;
}

ember_status ember_optimizer_create(const ember_optimizer_config *cfg,
                                    const ember_optimizer_param *params, int n,
                                    ember_optimizer **out) {
    static const char fn[] = "ember_optimizer_create";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(cfg, fn);
    if (n < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: n = %d < 0", fn, n);
    if (n > 0) EMBER_CHECK_NULL(params, fn);
    EMBER_TRY(check_config(cfg));
    ember_optimizer *o = calloc(1, sizeof *o);
    if (!o) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: optimizer", fn);
    o->cfg = *cfg;
    o->n = n;
    o->use_schedule = !(cfg->schedule.kind == EMBER_LR_CONSTANT && cfg->schedule.base_lr == 0);
    o->p = calloc(n ? (size_t)n : 1, sizeof *o->p);
    ember_status st = o->p ? build(o, params)
                           : ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d parameters", fn, n);
    if (st != EMBER_OK) {
        ember_optimizer_destroy(o);
        return st;
    }
    *out = o;
    return EMBER_OK;
}

/* ---- stepping ---- */

static double lr_at(const ember_optimizer *o, int64_t k) {
    return o->use_schedule ? schedule_value(&o->cfg.schedule, k) : o->cfg.lr;
}

/* The f32 scalars of step k (0-based), rounded where torch rounds them. */
static void step_hparams(const ember_optimizer *o, int64_t k, ember__optim_hparams *h) {
    const ember_optimizer_config *c = &o->cfg;
    double lr = lr_at(o, k), t = (double)(k + 1);
    memset(h, 0, sizeof *h);
    h->kind = c->kind;
    h->first = k == 0;
    h->nesterov = c->nesterov;
    h->amsgrad = c->amsgrad;
    h->lr = (float)lr;
    h->weight_decay = c->kind == EMBER_OPTIM_ADAMW ? 0.0f : (float)c->weight_decay;
    h->decay = c->kind == EMBER_OPTIM_ADAMW ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
    h->momentum = (float)c->momentum;
    h->one_minus_dampening = (float)(1.0 - c->dampening);
    h->beta1 = (float)c->beta1;
    h->beta2 = (float)c->beta2;
    h->one_minus_beta1 = (float)(1.0 - c->beta1);
    h->one_minus_beta2 = (float)(1.0 - c->beta2);
    h->eps = (float)c->eps;
    if (c->kind == EMBER_OPTIM_ADAGRAD) h->lr = (float)(lr / (1.0 + (t - 1.0) * c->lr_decay));
    if (c->kind == EMBER_OPTIM_ADAM || c->kind == EMBER_OPTIM_ADAMW) {
        double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
        h->step_size = (float)(lr / bc1);
        h->bc2_sqrt = (float)sqrt(bc2);
    }
}

static ember_status update_one(const ember__optim_hparams *h, opt_param *op, ember_tensor *grad) {
    int64_t n = ember_tensor_numel(op->param);
    if (n == 0) return EMBER_OK;
    float *p = (float *)ember__tensor_ptr(op->param);
    const float *g = (const float *)ember__tensor_ptr(grad);
    float *s[MAX_STATE] = {NULL, NULL, NULL};
    for (int i = 0; i < MAX_STATE; i++)
        if (op->state[i]) s[i] = (float *)ember__tensor_ptr(op->state[i]);
    ember_device dev = op->param->storage->device;
    if (dev.type == EMBER_DEVICE_CPU) return ember__optim_update_cpu(h, p, g, s[0], s[1], s[2], n);
#ifdef EMBER_HAVE_CUDA
    const ember__backend *be = ember__backend_for(dev.type);
    if (!be) return ember__error(EMBER_ERR_UNSUPPORTED, "ember_optimizer_step: device not built");
    EMBER_TRY(be->activate(dev.index));
    return ember__optim_update_cuda(h, p, g, s[0], s[1], s[2], n);
#else
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_optimizer_step: '%s' is on a GPU but this ember "
                        "was built without CUDA", op->name);
#endif
}

static ember_status step_with(ember_optimizer *o, ember_tensor *const *grads, const char *fn) {
    EMBER_CHECK_NULL(o, fn);
    for (int i = 0; i < o->n; i++) {
        ember_tensor *g = grads ? grads[i] : o->p[i].grad;
        if (!g)
            return grads ? ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: grads[%d] ('%s') is NULL", fn,
                                        i, pname(o, i))
                         : ember__error(EMBER_ERR_STATE,
                                        "%s: parameter '%s' was registered without a gradient "
                                        "(pass gradients to ember_optimizer_step_grads)",
                                        fn, pname(o, i));
        if (grads) EMBER_TRY(check_grad(fn, pname(o, i), o->p[i].param, g));
    }
    ember__optim_hparams h;
    step_hparams(o, o->step, &h);
    for (int i = 0; i < o->n; i++)
        EMBER_TRY(update_one(&h, &o->p[i], grads ? grads[i] : o->p[i].grad));
    o->step++;
    return EMBER_OK;
}

ember_status ember_optimizer_step(ember_optimizer *o) {
    return step_with(o, NULL, "ember_optimizer_step");
}

ember_status ember_optimizer_step_grads(ember_optimizer *o, ember_tensor *const *grads) {
    static const char fn[] = "ember_optimizer_step_grads";
    if (o && o->n > 0) EMBER_CHECK_NULL(grads, fn);
    return step_with(o, grads, fn);
}

/* Registered gradients, or EMBER_ERR_STATE naming the first parameter without one. */
static ember_status registered_grads(const ember_optimizer *o, const char *fn) {
    for (int i = 0; i < o->n; i++)
        if (!o->p[i].grad)
            return ember__error(EMBER_ERR_STATE, "%s: parameter '%s' was registered without a gradient",
                                fn, pname(o, i));
    return EMBER_OK;
}

ember_status ember_optimizer_zero_grad(ember_optimizer *o) {
    static const char fn[] = "ember_optimizer_zero_grad";
    EMBER_CHECK_NULL(o, fn);
    EMBER_TRY(registered_grads(o, fn));
    for (int i = 0; i < o->n; i++) EMBER_TRY(ember_tensor_fill(o->p[i].grad, 0.0));
    return EMBER_OK;
}

/* ---- gradient clipping ---- */

#define MAX_GPUS 64

ember_status ember_clip_grad_norm(ember_tensor *const *grads, int n, double max_norm,
                                  double norm_type, double *total_norm) {
    static const char fn[] = "ember_clip_grad_norm";
    EMBER_CHECK_NULL(total_norm, fn);
    if (n < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: n = %d < 0", fn, n);
    if (n > 0) EMBER_CHECK_NULL(grads, fn);
    if (!(max_norm >= 0))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: max_norm %g must be >= 0", fn, max_norm);
    int inf = isinf(norm_type) && norm_type > 0;
    if (!inf && norm_type != 2.0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: norm_type %g is not supported (2 or INFINITY)", fn, norm_type);
    for (int i = 0; i < n; i++) {
        const ember_tensor *g = grads[i];
        char d[96];
        if (!g) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: grads[%d] is NULL", fn, i);
        if (g->dtype != EMBER_DTYPE_F32 || !ember_tensor_is_contiguous(g))
            return ember__error(g->dtype != EMBER_DTYPE_F32 ? EMBER_ERR_DTYPE : EMBER_ERR_STATE,
                                "%s: grads[%d] is %s; f32 and contiguous needed", fn, i,
                                ember_tensor_describe(g, d, sizeof d));
        if (g->storage->device.type != EMBER_DEVICE_CPU &&
            (g->storage->device.index < 0 || g->storage->device.index >= MAX_GPUS))
            return ember__error(EMBER_ERR_DEVICE, "%s: grads[%d] is %s (GPUs 0..%d supported)", fn, i,
                                ember_tensor_describe(g, d, sizeof d), MAX_GPUS - 1);
    }
    *total_norm = 0;
    if (n == 0) return EMBER_OK;

    /* One partial (sum of squares, or max and min) per gradient, reduced on the
       gradient's device into a results vector of that device, so a GPU is synchronised
       once, not once per gradient. */
    int per = inf ? 2 : 1;
    ember_status st = EMBER_OK;
    float *host = calloc((size_t)n * (size_t)per, sizeof *host);
    ember_tensor *host_t = NULL;
    ember_tensor *dev_res[MAX_GPUS] = {NULL};
    if (!host) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d partial norms", fn, n);
    int64_t len = (int64_t)n * per;
    st = ember_tensor_wrap(host, EMBER_DTYPE_F32, 1, &len, NULL, EMBER_CPU, &host_t);
    for (int i = 0; i < n && st == EMBER_OK; i++) {
        const ember_tensor *g = grads[i];
        if (ember_tensor_numel(g) == 0) continue; /* partials stay 0 */
        ember_tensor *res = host_t;
        if (g->storage->device.type != EMBER_DEVICE_CPU) {
            int d = g->storage->device.index;
            if (!dev_res[d]) {
                if (!g->storage->mm) {
                    st = ember__error(EMBER_ERR_UNSUPPORTED,
                                      "%s: grads[%d] wraps GPU memory; clip needs a managed tensor", fn, i);
                    break;
                }
                st = ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1,
                                                                .shape = {len}, .tier = g->storage->tier,
                                                                .kind = EMBER_MEM_STAGING,
                                                                .mm = g->storage->mm},
                                         &dev_res[d]);
                if (st == EMBER_OK) st = ember_tensor_fill(dev_res[d], 0.0);
                if (st != EMBER_OK) break;
            }
            res = dev_res[d];
        }
        for (int k = 0; k < per && st == EMBER_OK; k++) {
            ember_tensor *slot = NULL;
            st = ember_tensor_narrow(res, 0, (int64_t)i * per + k, 1, &slot);
            if (st == EMBER_OK)
                st = ember_reduce(inf ? (k ? EMBER_REDUCE_MIN : EMBER_REDUCE_MAX) : EMBER_REDUCE_SUMSQ,
                                  slot, g, 0);
            ember_tensor_destroy(slot);
        }
    }
    /* Gather each device's partials (the slots it did not write hold 0). */
    for (int d = 0; d < MAX_GPUS && st == EMBER_OK; d++) {
        if (!dev_res[d]) continue;
        float *tmp = malloc((size_t)len * sizeof *tmp);
        ember_tensor *tmp_t = NULL;
        if (!tmp) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: partial norms", fn);
        if (st == EMBER_OK) st = ember_tensor_wrap(tmp, EMBER_DTYPE_F32, 1, &len, NULL, EMBER_CPU, &tmp_t);
        if (st == EMBER_OK) st = ember_tensor_copy(tmp_t, dev_res[d]);
        if (st == EMBER_OK)
            for (int i = 0; i < n; i++)
                if (grads[i]->storage->device.type != EMBER_DEVICE_CPU &&
                    grads[i]->storage->device.index == d)
                    for (int k = 0; k < per; k++) host[i * per + k] = tmp[i * per + k];
        ember_tensor_destroy(tmp_t);
        free(tmp);
    }
    double total = 0;
    if (st == EMBER_OK) {
        for (int i = 0; i < n; i++) {
            if (inf) {
                double a = fabs((double)host[i * 2]), b = fabs((double)host[i * 2 + 1]);
                double m = a > b ? a : b;
                if (m != m || a != a || b != b) total = NAN;
                else if (m > total) total = m;
            } else {
                total += (double)host[i]; /* each partial is ||g_i||^2, rounded to f32 once */
            }
        }
        if (!inf) total = sqrt(total);
        *total_norm = total;
    }
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), in f32 (total_norm is an f32
       tensor); gradients are scaled only when the coefficient is below 1. */
    if (st == EMBER_OK && isfinite(total)) {
        float coef = (float)max_norm / ((float)total + 1e-6f);
        if (coef < 1.0f)
            for (int i = 0; i < n && st == EMBER_OK; i++)
                if (ember_tensor_numel(grads[i]) > 0) st = ember_scale(grads[i], grads[i], coef, 0.0);
    }
    for (int d = 0; d < MAX_GPUS; d++) ember_tensor_destroy(dev_res[d]);
    ember_tensor_destroy(host_t);
    free(host);
    return st;
}

ember_status ember_optimizer_clip_grad_norm(ember_optimizer *o, double max_norm, double norm_type,
                                            double *total_norm) {
    static const char fn[] = "ember_optimizer_clip_grad_norm";
    EMBER_CHECK_NULL(o, fn);
    EMBER_TRY(registered_grads(o, fn));
    ember_tensor **g = malloc((o->n ? (size_t)o->n : 1) * sizeof *g);
    if (!g) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d gradients", fn, o->n);
    for (int i = 0; i < o->n; i++) g[i] = o->p[i].grad;
    ember_status st = ember_clip_grad_norm(g, o->n, max_norm, norm_type, total_norm);
    free(g);
    return st;
}

/* ---- accessors ---- */

ember_status ember_optimizer_get_lr(const ember_optimizer *o, double *lr) {
    EMBER_CHECK_NULL(o, "ember_optimizer_get_lr");
    EMBER_CHECK_NULL(lr, "ember_optimizer_get_lr");
    *lr = lr_at(o, o->step);
    return EMBER_OK;
}

ember_status ember_optimizer_set_lr(ember_optimizer *o, double lr) {
    static const char fn[] = "ember_optimizer_set_lr";
    EMBER_CHECK_NULL(o, fn);
    if (o->use_schedule)
        return ember__error(EMBER_ERR_STATE, "%s: the optimizer follows a schedule (kind %d)", fn,
                            (int)o->cfg.schedule.kind);
    if (!(lr >= 0) || !isfinite(lr))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: lr %g must be finite and >= 0", fn, lr);
    o->cfg.lr = lr;
    return EMBER_OK;
}

ember_status ember_optimizer_get_step(const ember_optimizer *o, int64_t *step) {
    EMBER_CHECK_NULL(o, "ember_optimizer_get_step");
    EMBER_CHECK_NULL(step, "ember_optimizer_get_step");
    *step = o->step;
    return EMBER_OK;
}

ember_status ember_optimizer_set_step(ember_optimizer *o, int64_t step) {
    EMBER_CHECK_NULL(o, "ember_optimizer_set_step");
    if (step < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_optimizer_set_step: step %lld < 0",
                            (long long)step);
    o->step = step;
    return EMBER_OK;
}

ember_status ember_optimizer_get_kind(const ember_optimizer *o, ember_optim_kind *kind) {
    EMBER_CHECK_NULL(o, "ember_optimizer_get_kind");
    EMBER_CHECK_NULL(kind, "ember_optimizer_get_kind");
    *kind = o->cfg.kind;
    return EMBER_OK;
}

ember_status ember_optimizer_state_count(const ember_optimizer *o, int *count) {
    EMBER_CHECK_NULL(o, "ember_optimizer_state_count");
    EMBER_CHECK_NULL(count, "ember_optimizer_state_count");
    *count = o->n * o->nstate;
    return EMBER_OK;
}

ember_status ember_optimizer_state_get(const ember_optimizer *o, int i, const char **name,
                                       ember_tensor **tensor) {
    static const char fn[] = "ember_optimizer_state_get";
    EMBER_CHECK_NULL(o, fn);
    if (i < 0 || i >= o->n * o->nstate)
        return ember__error(EMBER_ERR_INDEX, "%s: state %d of %d", fn, i, o->n * o->nstate);
    if (name) *name = o->state_names[i];
    if (tensor) *tensor = o->p[i / o->nstate].state[i % o->nstate];
    return EMBER_OK;
}
