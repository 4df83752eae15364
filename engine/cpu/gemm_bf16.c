/*
 * engine/cpu/gemm_bf16.c: the matmul precision setting (ember/tensor.h) and the CPU's
 * bf16 GEMM through oneDNN.
 *
 * A product C = alpha * op(A) @ op(B) + beta * C in bf16 is three oneDNN primitives:
 * a reorder of op(A) (f32, any strides) into a plain bf16 matrix, a reorder of op(B)
 * into the bf16 layout the matmul chose for its weights (blocked for AMX: packing B
 * once per call costs O(k n) against the product's O(m k n)), and the matmul itself
 * (f32 accumulation; alpha as its output scale, beta as a sum post-op on C). The
 * primitives and the two bf16 buffers of one shape (m, n, k, transposes, leading dims,
 * alpha, beta) are built once and kept; a training step reuses the same few shapes.
 * One mutex guards the cache and the calls: the products themselves run on the OpenMP
 * team (oneDNN's CPU runtime here is OpenMP, sized by ember_set_num_threads).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ember/tensor.h"
#include "engine/backend.h"
#include "engine/internal.h"

#ifdef EMBER_HAVE_DNNL
#include <dnnl.h>
#endif

static atomic_int precision = EMBER_MATMUL_F32;

static const char *const names[EMBER_MATMUL_PRECISION_COUNT] = {"f32", "bf16"};

const char *ember_matmul_precision_name(ember_matmul_precision p) {
    return (unsigned)p < EMBER_MATMUL_PRECISION_COUNT ? names[p] : "?";
}

ember_status ember_matmul_precision_parse(const char *s, ember_matmul_precision *out) {
    EMBER_CHECK_NULL(s, "ember_matmul_precision_parse");
    EMBER_CHECK_NULL(out, "ember_matmul_precision_parse");
    for (int i = 0; i < EMBER_MATMUL_PRECISION_COUNT; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (ember_matmul_precision)i;
            return EMBER_OK;
        }
    return ember__error(EMBER_ERR_INVALID_ARGUMENT, "matmul precision '%s': give f32 or bf16", s);
}

ember_matmul_precision ember_get_matmul_precision(void) { return (ember_matmul_precision)atomic_load(&precision); }

int ember__matmul_bf16(void) { return atomic_load_explicit(&precision, memory_order_relaxed) == EMBER_MATMUL_BF16; }

const char *ember__matmul_bf16_refusal(void) {
#ifdef EMBER_HAVE_DNNL
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    /* the ISA values are bit sets: each includes the ones below it */
    if (((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) != (unsigned)dnnl_cpu_isa_avx512_core_bf16)
        return "this CPU has neither AMX nor AVX512-BF16, so bf16 products would be slower than f32";
    return NULL;
#else
    return "this ember was built without oneDNN (install libdnnl-dev and rebuild)";
#endif
}

int ember__matmul_bf16_supported(void) { return ember__matmul_bf16_refusal() == NULL; }

ember_status ember_set_matmul_precision(ember_matmul_precision p) {
    if ((unsigned)p >= EMBER_MATMUL_PRECISION_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_set_matmul_precision: %d is not a precision", (int)p);
    if (p == EMBER_MATMUL_BF16) {
        const char *why = ember__matmul_bf16_refusal();
        if (why) return ember__error(EMBER_ERR_UNSUPPORTED, "ember_set_matmul_precision: bf16: %s", why);
    }
    atomic_store(&precision, (int)p);
    return EMBER_OK;
}

#ifdef EMBER_HAVE_DNNL

typedef struct plan {
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    dnnl_primitive_t mm, ra, rb;             /* matmul, reorders of A and B */
    dnnl_memory_t a32, b32, a16, b16, c32;   /* f32 views (handles set per call), bf16 buffers */
    struct plan *next;
} plan;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static plan *plans;
static int nplans;

enum { MAX_PLANS = 64 };

static ember_status dnnl_fail(dnnl_status_t s, const char *what) {
    return ember__error(EMBER_ERR_INTERNAL, "cpu gemm (bf16, oneDNN): %s failed (status %d)", what, (int)s);
}

#define DNNL_TRY(call)                                                                                 \
    do {                                                                                               \
        dnnl_status_t s_ = (call);                                                                     \
        if (s_ != dnnl_success) return dnnl_fail(s_, #call);                                           \
    } while (0)

static void plan_free(plan *p) {
    if (!p) return;
    if (p->mm) dnnl_primitive_destroy(p->mm);
    if (p->ra) dnnl_primitive_destroy(p->ra);
    if (p->rb) dnnl_primitive_destroy(p->rb);
    dnnl_memory_t mems[5] = {p->a32, p->b32, p->a16, p->b16, p->c32};
    for (int i = 0; i < 5; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(p);
}

/* f32 matrix (rows x cols) of op(X) for X stored row-major with leading dim ld. */
static dnnl_status_t f32_view(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int trans, int64_t ld) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_f32, strides);
}

static ember_status reorder(dnnl_primitive_t *out, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst) {
    dnnl_primitive_desc_t pd = NULL;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, src, engine, dst, engine, NULL));
    dnnl_status_t s = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return dnnl_fail(s, "dnnl_primitive_create (reorder)");
    return EMBER_OK;
}

static ember_status plan_build(plan *p) {
    dnnl_memory_desc_t a32, b32, a16, b16_any, c32;
    DNNL_TRY(f32_view(&a32, p->m, p->k, p->ta, p->lda));
    DNNL_TRY(f32_view(&b32, p->k, p->n, p->tb, p->ldb));
    DNNL_TRY(f32_view(&c32, p->m, p->n, 0, p->ldc));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&a16, 2, (dnnl_dims_t){p->m, p->k}, dnnl_bf16, dnnl_ab));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&b16_any, 2, (dnnl_dims_t){p->k, p->n}, dnnl_bf16, dnnl_format_tag_any));
    dnnl_matmul_desc_t md;
    DNNL_TRY(dnnl_matmul_desc_init(&md, &a16, &b16_any, NULL, &c32));
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    dnnl_status_t s = dnnl_success;
    if (p->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &p->alpha);
    if (s == dnnl_success && p->beta != 0.0f) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, p->beta);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return dnnl_fail(s, "matmul primitive descriptor");
    const dnnl_memory_desc_t *b16 = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    s = dnnl_primitive_create(&p->mm, pd);
    ember_status st = s == dnnl_success ? EMBER_OK : dnnl_fail(s, "dnnl_primitive_create (matmul)");
    if (st == EMBER_OK) st = reorder(&p->ra, &a32, &a16);
    if (st == EMBER_OK) st = reorder(&p->rb, &b32, b16);
    if (st == EMBER_OK) {
        s = dnnl_memory_create(&p->a32, &a32, engine, DNNL_MEMORY_NONE);
        if (s == dnnl_success) s = dnnl_memory_create(&p->b32, &b32, engine, DNNL_MEMORY_NONE);
        if (s == dnnl_success) s = dnnl_memory_create(&p->c32, &c32, engine, DNNL_MEMORY_NONE);
        if (s == dnnl_success) s = dnnl_memory_create(&p->a16, &a16, engine, DNNL_MEMORY_ALLOCATE);
        if (s == dnnl_success) s = dnnl_memory_create(&p->b16, b16, engine, DNNL_MEMORY_ALLOCATE);
        if (s != dnnl_success) st = dnnl_fail(s, "dnnl_memory_create");
    }
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static ember_status plan_get(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, int64_t lda,
                             int64_t ldb, float beta, int64_t ldc, plan **out) {
    if (!engine) {
        DNNL_TRY(dnnl_engine_create(&engine, dnnl_cpu, 0));
        dnnl_status_t s = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
        if (s != dnnl_success) {
            dnnl_engine_destroy(engine);
            engine = NULL;
            return dnnl_fail(s, "dnnl_stream_create");
        }
    }
    for (plan *p = plans; p; p = p->next)
        if (p->ta == ta && p->tb == tb && p->m == m && p->n == n && p->k == k && p->lda == lda && p->ldb == ldb &&
            p->ldc == ldc && p->alpha == alpha && p->beta == beta) {
            *out = p;
            return EMBER_OK;
        }
    if (nplans >= MAX_PLANS) { /* a model with this many shapes: start over */
        while (plans) {
            plan *next = plans->next;
            plan_free(plans);
            plans = next;
        }
        nplans = 0;
    }
    plan *p = calloc(1, sizeof *p);
    if (!p) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "cpu gemm (bf16): plan");
    *p = (plan){.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc,
                .alpha = alpha, .beta = beta};
    ember_status st = plan_build(p);
    if (st != EMBER_OK) {
        plan_free(p);
        return st;
    }
    p->next = plans;
    plans = p;
    nplans++;
    *out = p;
    return EMBER_OK;
}

static ember_status run(plan *p, const float *a, const float *b, float *c) {
    DNNL_TRY(dnnl_memory_set_data_handle(p->a32, (void *)a));
    DNNL_TRY(dnnl_memory_set_data_handle(p->b32, (void *)b));
    DNNL_TRY(dnnl_memory_set_data_handle(p->c32, c));
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, p->a32}, {DNNL_ARG_TO, p->a16}};
    dnnl_exec_arg_t rb[2] = {{DNNL_ARG_FROM, p->b32}, {DNNL_ARG_TO, p->b16}};
    dnnl_exec_arg_t mm[3] = {{DNNL_ARG_SRC, p->a16}, {DNNL_ARG_WEIGHTS, p->b16}, {DNNL_ARG_DST, p->c32}};
    DNNL_TRY(dnnl_primitive_execute(p->ra, stream, 2, ra));
    DNNL_TRY(dnnl_primitive_execute(p->rb, stream, 2, rb));
    DNNL_TRY(dnnl_primitive_execute(p->mm, stream, 3, mm));
    DNNL_TRY(dnnl_stream_wait(stream));
    return EMBER_OK;
}

ember_status ember__gemm_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    pthread_mutex_lock(&lock);
    plan *p = NULL;
    ember_status st = plan_get(ta, tb, m, n, k, alpha, lda, ldb, beta, ldc, &p);
    if (st == EMBER_OK) st = run(p, a, b, c);
    pthread_mutex_unlock(&lock);
    return st;
}

#else

ember_status ember__gemm_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    return ember__error(EMBER_ERR_UNSUPPORTED, "cpu gemm (bf16): this ember was built without oneDNN");
}

#endif
