/* The memory manager: budgets, statistics by tier and kind, ownership, threads, and the
   reclaim callback of the device tier. */
#include <pthread.h>

#include "check.h"
#include "engine/memory_internal.h"

typedef struct {
    ember_memory *mm;
    int ok;
} worker_arg;

static void *worker(void *p) {
    worker_arg *w = p;
    void *ptrs[64];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 64; i++)
            if (ember_memory_alloc(w->mm, EMBER_TIER_DEVICE, EMBER_MEM_ACTIVATION, 1000 + (size_t)i, &ptrs[i]) !=
                EMBER_OK)
                ptrs[i] = NULL;
        for (int i = 0; i < 64; i++)
            if (ptrs[i]) {
                memset(ptrs[i], 0xab, 1000);
                w->ok += ember_memory_free(w->mm, ptrs[i]) == EMBER_OK;
            }
    }
    return NULL;
}

/* A holder of device memory it gives back on demand, buffer by buffer. */
typedef struct holder {
    ember_memory *mm;
    void *buf[4];
    size_t bytes;
    int calls;
    size_t last_need;
    int nested;            /* allocate on the device inside the callback */
    ember_status nested_st;
    int nested_calls;      /* calls seen while nested (must stay 0: no recursion) */
    int inside;
} holder;

static size_t give_back(void *ctx, size_t need) {
    holder *h = ctx;
    if (h->inside) h->nested_calls++;
    h->inside = 1;
    h->calls++;
    h->last_need = need;
    if (h->nested) {
        void *p = NULL;
        h->nested_st = ember_memory_alloc(h->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, 40000, &p);
        ember_memory_free(h->mm, p);
    }
    size_t freed = 0;
    for (int i = 0; i < 4 && freed < need; i++)
        if (h->buf[i]) {
            ember_memory_free(h->mm, h->buf[i]);
            h->buf[i] = NULL;
            freed += h->bytes;
        }
    h->inside = 0;
    return freed;
}

static size_t give_nothing(void *ctx, size_t need) {
    (void)need;
    ((holder *)ctx)->calls++;
    return 0;
}

static void test_reclaim(void) {
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU, .budget = {[EMBER_TIER_DEVICE] = 100000}},
                                 &mm));
    holder h = {.mm = mm, .bytes = 20000};
    for (int i = 0; i < 4; i++)
        CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_PARAMETER, 20000, &h.buf[i]));
    CHECK_OK(ember__memory_set_reclaim(mm, give_back, &h));
    CHECK_OK(ember__memory_set_reclaim(mm, give_back, &h)); /* the same again: fine */
    holder other = {.mm = mm};
    CHECK_STATUS(ember__memory_set_reclaim(mm, give_nothing, &other), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "already has a reclaim callback") != NULL);
    /* 20000 B free; 50000 B fit once 30000 B more are given back: two buffers go */
    void *p = NULL;
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, 50000, &p));
    CHECK_EQ_INT(h.calls, 1);
    CHECK_EQ_INT(h.last_need, 30000);
    CHECK(h.buf[0] == NULL && h.buf[1] == NULL && h.buf[2] != NULL);
    ember_memory_stats st;
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 90000);
    CHECK(st.peak_total[EMBER_TIER_DEVICE] <= 100000);
    /* host tiers never reclaim; a request larger than the budget does not ask */
    void *q = NULL;
    CHECK_OK(ember_memory_set_budget(mm, EMBER_TIER_HOST, 1000));
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_HOST, EMBER_MEM_OTHER, 2000, &q), EMBER_ERR_OUT_OF_MEMORY);
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_OTHER, 200000, &q), EMBER_ERR_OUT_OF_MEMORY);
    CHECK_EQ_INT(h.calls, 1);
    /* more than it can give: it gives what it has, then the allocation fails by name */
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, 60000, &q), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(q == NULL);
    const char *msg = ember_last_error();
    CHECK(strstr(msg, "EMBER_ERR_OUT_OF_MEMORY: device tier") == msg);
    CHECK(strstr(msg, "request 60000 B (staging)") != NULL);
    CHECK(strstr(msg, "after a reclaim freed 40000 B") != NULL);
    CHECK_EQ_INT(h.calls, 3); /* 40000 B freed, then a call that frees nothing ends it */
    /* a callback's own device allocation does not reclaim again */
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_PARAMETER, 20000, &h.buf[0]));
    h.nested = 1;
    h.calls = 0;
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, 40000, &q));
    CHECK_EQ_INT(h.calls, 1);
    CHECK_EQ_INT(h.nested_st, EMBER_ERR_OUT_OF_MEMORY);
    CHECK_EQ_INT(h.nested_calls, 0);
    /* unregistering: by another context, nothing; by its own, allocations fail at once */
    CHECK_OK(ember__memory_set_reclaim(mm, NULL, &other));
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_PARAMETER, 10000, &h.buf[1]));
    CHECK_OK(ember__memory_set_reclaim(mm, NULL, &h));
    h.calls = 0;
    void *r = NULL;
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, 20000, &r), EMBER_ERR_OUT_OF_MEMORY);
    CHECK_EQ_INT(h.calls, 0);
    CHECK(strstr(ember_last_error(), "reclaim") == NULL);
    /* another context may register now; a callback that frees nothing is asked once */
    CHECK_OK(ember__memory_set_reclaim(mm, give_nothing, &other));
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, 20000, &r), EMBER_ERR_OUT_OF_MEMORY);
    CHECK_EQ_INT(other.calls, 1);
    CHECK(strstr(ember_last_error(), "after a reclaim freed 0 B") != NULL);
    CHECK_OK(ember__memory_set_reclaim(mm, NULL, &other));
    ember_memory_free(mm, p);
    ember_memory_free(mm, q);
    for (int i = 0; i < 4; i++) ember_memory_free(mm, h.buf[i]);
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 0);
    ember_memory_destroy(mm);
}

int main(void) {
    test_reclaim();
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(
        &(ember_memory_config){.device = EMBER_CPU,
                               .budget = {[EMBER_TIER_DEVICE] = 1 << 20, [EMBER_TIER_PINNED] = 4096}},
        &mm));
    CHECK(ember_device_equal(ember_memory_device(mm), EMBER_CPU));

    /* live and peak by tier and kind */
    void *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_PARAMETER, 600000, &a));
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_OPTIMIZER_STATE, 300000, &b));
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, 10u << 20, &c));
    CHECK_EQ_INT((uintptr_t)a % EMBER_MEM_ALIGN, 0);
    memset(a, 1, 600000);
    ember_memory_stats st;
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_PARAMETER], 600000);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_OPTIMIZER_STATE], 300000);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 900000);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_HOST], 10 << 20);
    CHECK_EQ_INT(st.budget[EMBER_TIER_DEVICE], 1 << 20);
    CHECK(st.budget[EMBER_TIER_HOST] == EMBER_BUDGET_UNLIMITED);
    CHECK_EQ_INT(st.allocs, 3);

    /* over budget: refused, nothing allocated, message names tier, request, budget */
    void *d = (void *)1;
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_ACTIVATION, 200000, &d),
                 EMBER_ERR_OUT_OF_MEMORY);
    CHECK(d == NULL);
    const char *msg = ember_last_error();
    CHECK(strstr(msg, "EMBER_ERR_OUT_OF_MEMORY: device tier") == msg);
    CHECK(strstr(msg, "request 200000 B (activation)") != NULL);
    CHECK(strstr(msg, "900000 B live of 1048576 B budget") != NULL);
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 900000);
    CHECK_EQ_INT(st.failed, 1);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_ACTIVATION], 0);
    /* a request larger than the whole budget */
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_PINNED, EMBER_MEM_STAGING, 8192, &d),
                 EMBER_ERR_OUT_OF_MEMORY);
    CHECK(strstr(ember_last_error(), "pinned tier") != NULL);

    /* query */
    ember_tier tier;
    ember_mem_kind kind;
    size_t bytes;
    CHECK_OK(ember_memory_query(mm, b, &tier, &kind, &bytes));
    CHECK_EQ_INT(tier, EMBER_TIER_DEVICE);
    CHECK_EQ_INT(kind, EMBER_MEM_OPTIMIZER_STATE);
    CHECK_EQ_INT(bytes, 300000);
    CHECK_STATUS(ember_memory_query(mm, (char *)b + 1, &tier, &kind, &bytes), EMBER_ERR_NOT_FOUND);

    /* free: peaks stay, live drops; double free and foreign pointers are refused */
    CHECK_OK(ember_memory_free(mm, a));
    CHECK_STATUS(ember_memory_free(mm, a), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "double free") != NULL);
    int local;
    CHECK_STATUS(ember_memory_free(mm, &local), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_OK(ember_memory_free(mm, NULL));
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_PARAMETER], 0);
    CHECK_EQ_INT(st.peak[EMBER_TIER_DEVICE][EMBER_MEM_PARAMETER], 600000);
    CHECK_EQ_INT(st.peak_total[EMBER_TIER_DEVICE], 900000);
    CHECK_EQ_INT(st.frees, 1);
    ember_memory_reset_peaks(mm);
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.peak_total[EMBER_TIER_DEVICE], 300000);

    /* budgets can change, but not below what is live */
    CHECK_STATUS(ember_memory_set_budget(mm, EMBER_TIER_DEVICE, 1000), EMBER_ERR_OUT_OF_MEMORY);
    CHECK_OK(ember_memory_set_budget(mm, EMBER_TIER_DEVICE, 0)); /* unlimited */
    void *big = NULL;
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_ACTIVATION, 4u << 20, &big));
    CHECK_OK(ember_memory_free(mm, big));
    CHECK_OK(ember_memory_set_budget(mm, EMBER_TIER_DEVICE, 1 << 20));

    /* tensors draw from the manager, tagged with their kind */
    ember_tensor *t = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {100, 100},
                                                        .tier = EMBER_TIER_DEVICE, .kind = EMBER_MEM_GRADIENT,
                                                        .mm = mm},
                                 &t));
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_GRADIENT], 40000);
    ember_tensor *t2 = NULL;
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2,
                                                            .shape = {1000, 1000}, .tier = EMBER_TIER_DEVICE,
                                                            .mm = mm},
                                     &t2),
                 EMBER_ERR_OUT_OF_MEMORY);
    CHECK(t2 == NULL);
    ember_tensor_destroy(t);
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_GRADIENT], 0);

    /* JSON statistics */
    char json[4096];
    size_t need = ember_memory_stats_json(&st, json, sizeof json);
    CHECK(need < sizeof json);
    CHECK(strstr(json, "\"device\":{\"budget\":1048576,\"live\":300000") != NULL);
    CHECK(strstr(json, "\"optimizer_state\":{\"live\":300000") != NULL);
    char small[16];
    CHECK_EQ_INT(ember_memory_stats_json(&st, small, sizeof small), need);
    CHECK_EQ_INT(strlen(small), sizeof small - 1);

    /* bad arguments */
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_HOST, EMBER_MEM_OTHER, 0, &d), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_memory_alloc(mm, (ember_tier)7, EMBER_MEM_OTHER, 8, &d), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_HOST, (ember_mem_kind)70, 8, &d), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_HOST, EMBER_MEM_OTHER, 8, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_HOST, EMBER_MEM_OTHER, SIZE_MAX - 8, &d), EMBER_ERR_OVERFLOW);
    CHECK_STATUS(ember_memory_create(NULL, NULL), EMBER_ERR_INVALID_ARGUMENT);
    ember_memory *gpu_mm = NULL;
    if (ember_cuda_device_count() == 0) {
        ember_status s2 = ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &gpu_mm);
        CHECK(s2 == EMBER_ERR_DEVICE || s2 == EMBER_ERR_UNSUPPORTED);
        CHECK(gpu_mm == NULL);
    }

    /* many threads allocating and freeing at once keep the books straight */
    ember_memory_reset_peaks(mm);
    uint64_t allocs_before = st.allocs;
    pthread_t th[4];
    worker_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (worker_arg){mm, 0};
        pthread_create(&th[i], NULL, worker, &wa[i]);
    }
    int freed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        freed += wa[i].ok;
    }
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live[EMBER_TIER_DEVICE][EMBER_MEM_ACTIVATION], 0);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 300000);
    CHECK(st.peak_total[EMBER_TIER_DEVICE] <= 1 << 20); /* the budget held under contention */
    CHECK_EQ_INT(st.allocs - allocs_before, freed); /* every success was freed */
    CHECK(freed > 0);

    CHECK_OK(ember_memory_free(mm, b));
    CHECK_OK(ember_memory_free(mm, c));
    ember_memory_destroy(mm);
    ember_memory_destroy(NULL);
    ember_memory_destroy(ember_memory_default()); /* refused: the default lives forever */
    CHECK(ember_memory_default() != NULL);
    return check_summary();
}
