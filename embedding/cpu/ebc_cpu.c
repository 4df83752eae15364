/*
 * CPU embedding-bag kernels: forward pooling and the fused sparse backward.
 *
 * An embedding lookup is a random gather from a table far larger than cache, so the
 * kernels are built around memory, not arithmetic:
 *  - Forward: a worker takes contiguous runs of bags (cut by ids + bags, so skewed bag
 *    lengths still balance; a few runs per worker, claimed one at a time), walks their
 *    ids in order, prefetches the row PF_ROWS ids ahead, keeping that many misses in
 *    flight per core; the bag's sum stays in vector registers.
 *  - Backward: the rows are split into partitions by a hash of the id; a partition's
 *    (id, bag, weight) entries are gathered in batch order, radix-sorted by id (stable,
 *    so entries stay in batch order inside an id), and each run's gradient is summed
 *    in that order and applied by the optimizer to the row while it is in cache, the
 *    record PF_RUNS entries ahead prefetched. One worker per row: no atomics, no
 *    merging, and sums that do not depend on the thread count.
 * Work is spread by embedding/cpu/ebc_pool.c, whose callers never wait for a thread
 * the OS has not scheduled (an OpenMP barrier would: on a busy machine that costs a
 * time slice per call).
 * The vector width is chosen at run time (AVX-512, AVX2, scalar) from one kernel source,
 * embedding/cpu/ebc_kernels.inc, compiled once per instruction set with gcc's target
 * pragmas: one binary runs at its best on every x86-64.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#define EMBER_EBC_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "embedding/ebc_internal.h"
#include "embedding/ebc_math.h"
#include "engine/internal.h"

#define MAXV 8                /* vectors of accumulators held in registers per block */
#define PF_ROWS 8             /* forward: ids of prefetch distance */
#define PF_RUNS 6             /* backward: sorted entries of prefetch distance */
#define PAR_MIN_WORK 4096     /* forward: ids + bags below which one thread works */
#define RUNS_PER_WORKER 4     /* runs of bags per worker and table, claimed one by one */
#define PARTS_PER_WORKER 8    /* backward: row partitions per worker, at most */
#define MIN_PART_IDS 1024     /* backward: ids per partition, at least (when there are enough) */
#define PAR_MIN_SORT 4096     /* backward: ids below which one thread does it all */
#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)

static inline void prefetch_read(const char *p, size_t bytes) {
    const char *end = p + bytes;
    for (const char *q = (const char *)((uintptr_t)p & ~(uintptr_t)63); q < end; q += 64)
        __builtin_prefetch(q, 0, 3);
}

static inline void prefetch_write(const char *p, size_t bytes) {
    const char *end = p + bytes;
    for (const char *q = (const char *)((uintptr_t)p & ~(uintptr_t)63); q < end; q += 64)
        __builtin_prefetch(q, 1, 3);
}

/* ---- the kernels, once per instruction set ---- */

#ifdef EMBER_EBC_X86

/* AVX-512 (F + BW + VL for the 8/16-bit masked loads) */
#if defined(__clang__) /* clang ignores GCC target pragmas */
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#endif
#define FN(name) name##_avx512
#define VW 16
typedef __m512 vf_avx512;
#define vf vf_avx512
typedef __mmask16 vmask;
#define V_HAS_MASK 1
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_DIV(a, b) _mm512_div_ps(a, b)
#define V_SQRT(a) _mm512_sqrt_ps(a)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_LD(p) _mm512_loadu_ps(p)
#define V_ST(p, v) _mm512_storeu_ps(p, v)
#define V_HSUM(v) _mm512_reduce_add_ps(v)
#define V_LDF16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define V_LDBF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define V_LDU8(p) _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define V_MASK(n) ((__mmask16)((1u << (n)) - 1u))
#define V_LDM(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_LDMF16(p, m) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p))
#define V_LDMBF16(p, m) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16))
#define V_LDMU8(p, m) _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)))
#define V_STM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#include "embedding/cpu/ebc_kernels.inc"
#undef FN
#undef VW
#undef vf
#undef V_HAS_MASK
#undef V_ZERO
#undef V_SET1
#undef V_ADD
#undef V_MUL
#undef V_DIV
#undef V_SQRT
#undef V_FMA
#undef V_LD
#undef V_ST
#undef V_HSUM
#undef V_LDF16
#undef V_LDBF16
#undef V_LDU8
#undef V_MASK
#undef V_LDM
#undef V_LDMF16
#undef V_LDMBF16
#undef V_LDMU8
#undef V_STM
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* AVX2 + FMA + F16C */
#if defined(__clang__) /* clang ignores GCC target pragmas */
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define FN(name) name##_avx2
#define VW 8
typedef __m256 vf_avx2;
#define vf vf_avx2
#define V_HAS_MASK 0
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_DIV(a, b) _mm256_div_ps(a, b)
#define V_SQRT(a) _mm256_sqrt_ps(a)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_LD(p) _mm256_loadu_ps(p)
#define V_ST(p, v) _mm256_storeu_ps(p, v)
#define V_HSUM(v) hsum_avx2(v)
#define V_LDF16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define V_LDBF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define V_LDU8(p) _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#include "embedding/cpu/ebc_kernels.inc"
#undef FN
#undef VW
#undef vf
#undef V_HAS_MASK
#undef V_ZERO
#undef V_SET1
#undef V_ADD
#undef V_MUL
#undef V_DIV
#undef V_SQRT
#undef V_FMA
#undef V_LD
#undef V_ST
#undef V_HSUM
#undef V_LDF16
#undef V_LDBF16
#undef V_LDU8
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* EMBER_EBC_X86 */

/* Scalar: any CPU; also the reference the vector paths are tested against. */
static inline float ld_f16_scalar(const uint16_t *p) { return ember__f16_to_f32(*p); }
static inline float ld_bf16_scalar(const uint16_t *p) { return ember__bf16_to_f32(*p); }
#define FN(name) name##_scalar
#define VW 1
#define vf float
#define V_HAS_MASK 0
#define V_ZERO() 0.0f
#define V_SET1(x) (x)
#define V_ADD(a, b) ((a) + (b))
#define V_MUL(a, b) ((a) * (b))
#define V_DIV(a, b) ((a) / (b))
#define V_SQRT(a) sqrtf(a)
#define V_FMA(a, b, c) ((a) * (b) + (c))
#define V_LD(p) (*(p))
#define V_ST(p, v) (*(p) = (v))
#define V_HSUM(v) (v)
#define V_LDF16(p) ld_f16_scalar(p)
#define V_LDBF16(p) ld_bf16_scalar(p)
#define V_LDU8(p) ((float)*(p))
#include "embedding/cpu/ebc_kernels.inc"
#undef FN
#undef VW
#undef vf
#undef V_HAS_MASK
#undef V_ZERO
#undef V_SET1
#undef V_ADD
#undef V_MUL
#undef V_DIV
#undef V_SQRT
#undef V_FMA
#undef V_LD
#undef V_ST
#undef V_HSUM
#undef V_LDF16
#undef V_LDBF16
#undef V_LDU8

/* ---- run-time selection ---- */

typedef void (*forward_fn)(const ember__ebc_tdesc *t, int64_t b0, int64_t b1, float *out,
                           int64_t ld);
typedef void (*backward_fn)(const ember__ebc_tdesc *t, const uint64_t *keys, int64_t n, int idx_bits,
                            const int32_t *bag, const float *coef, const float *grad, int64_t ld,
                            const ember__ebc_optim *o, float *g, float *wbuf);

typedef struct isa_impl {
    const char *name;
    forward_fn forward;
    backward_fn backward;
} isa_impl;

static const isa_impl impls[] = {
    {"scalar", forward_range_scalar, backward_runs_scalar},
#ifdef EMBER_EBC_X86
    {"avx2", forward_range_avx2, backward_runs_avx2},
    {"avx512", forward_range_avx512, backward_runs_avx512},
#endif
};

static const isa_impl *chosen;
static int detected; /* the best level this CPU runs */
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

#ifdef EMBER_EBC_X86
/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know it. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

static void choose(void) {
    int level = 0;
#ifdef EMBER_EBC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
        level = 1;
    if (level == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        level = 2;
#endif
    detected = level;
    const char *want = getenv("EMBER_CPU_ISA");
    if (want) {
        int cap = strcmp(want, "scalar") == 0 ? 0 : strcmp(want, "avx2") == 0 ? 1 : 2;
        if (cap < level) level = cap;
    }
    chosen = &impls[level];
}

static const isa_impl *isa(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

const char *ember__ebc_cpu_isa(void) { return isa()->name; }

int ember__ebc_cpu_set_isa(const char *name) {
    (void)isa();
    for (int level = 0; level <= detected; level++)
        if (strcmp(impls[level].name, name) == 0) {
            chosen = &impls[level];
            return 1;
        }
    return 0;
}

/* ---- forward ---- */

/* First bag b in [0, batch] with (offsets[b] - offsets[0]) + b >= target: thread runs
 * are cut by ids and bags together, so empty and long bags both count. */
static int64_t cut(const int64_t *off, int64_t batch, int64_t target) {
    int64_t lo = 0, hi = batch;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((off[mid] - off[0]) + mid >= target) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

typedef struct {
    const isa_impl *impl;
    const ember__ebc_tdesc *td;
    int64_t batch, runs, ld;
    float *out;
} fwd_job;

static void forward_chunk(void *p, int64_t c, int worker) {
    (void)worker;
    const fwd_job *j = p;
    const int i = (int)(c / j->runs);
    const int64_t r = c % j->runs, batch = j->batch;
    const int64_t *off = j->td[i].offsets;
    const int64_t total = off[batch] - off[0] + batch;
    const int64_t b0 = r == 0 ? 0 : cut(off, batch, total * r / j->runs);
    const int64_t b1 = r == j->runs - 1 ? batch : cut(off, batch, total * (r + 1) / j->runs);
    if (b1 > b0) j->impl->forward(&j->td[i], b0, b1, j->out, j->ld);
}

ember_status ember__ebc_forward_cpu(const ember__ebc_tdesc *td, int ntables, int64_t batch,
                                    float *out, int64_t ld) {
    int64_t work = 0;
    for (int i = 0; i < ntables; i++) work += td[i].offsets[batch] - td[i].offsets[0] + batch;
    const int workers = work >= PAR_MIN_WORK ? ember__ebc_pool_workers() : 1;
    /* RUNS_PER_WORKER runs of bags per worker and table, claimed one at a time */
    fwd_job j = {.impl = isa(), .td = td, .batch = batch, .ld = ld, .out = out,
                 .runs = workers == 1 ? 1 : (int64_t)workers * RUNS_PER_WORKER};
    ember__ebc_pool_run(workers, j.runs * ntables, forward_chunk, &j);
    return EMBER_OK;
}

/* ---- backward ---- */

static int bits_for(uint64_t x) { /* bits needed to hold values 0..x */
    int b = 0;
    while (b < 64 && (x >> b)) b++;
    return b;
}

/* The partition of row `id` among `parts`: a multiplicative hash, so the hot ids of a
 * skewed batch spread over the partitions. */
static inline int owner(int64_t id, int parts) {
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (int)(((h >> 32) * (uint64_t)parts) >> 32);
}

/* Stable LSD radix sort of a[0, n) on bits [lo, hi), one thread; returns the array that
 * holds the result (a or tmp). */
static uint64_t *radix_sort(uint64_t *a, uint64_t *tmp, int64_t n, int lo, int hi, uint32_t *hist) {
    /* small inputs: 8-bit digits, so clearing and scanning the histogram stays below n */
    const int digit = n < 4096 ? 8 : RADIX_BITS;
    for (int shift = lo; shift < hi; shift += digit) {
        const int bits = hi - shift < digit ? hi - shift : digit;
        const int nb = 1 << bits;
        const uint64_t mask = (uint64_t)nb - 1;
        memset(hist, 0, (size_t)nb * sizeof *hist);
        for (int64_t k = 0; k < n; k++) hist[(a[k] >> shift) & mask]++;
        uint32_t sum = 0;
        for (int d = 0; d < nb; d++) {
            uint32_t c = hist[d];
            hist[d] = sum;
            sum += c;
        }
        for (int64_t k = 0; k < n; k++) {
            uint64_t x = a[k];
            tmp[hist[(x >> shift) & mask]++] = x;
        }
        uint64_t *sw = a;
        a = tmp;
        tmp = sw;
    }
    return a;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Enough partitions to balance the workers (PARTS_PER_WORKER each), but about
 * MIN_PART_IDS ids or more in each, so a small batch is not cut into slivers whose
 * sorts cost more than their rows. */
static int partitions(int workers, int64_t ids) {
    if (workers <= 1) return 1;
    int64_t p = ids / MIN_PART_IDS;
    if (p > (int64_t)workers * PARTS_PER_WORKER) p = (int64_t)workers * PARTS_PER_WORKER;
    if (p < workers) p = workers;
    return (int)p;
}

/*
 * Rows are split into P = workers * PARTS_PER_WORKER partitions by a hash of the id
 * (owner()), so no row is ever touched by two workers and nothing is merged. Three pool
 * jobs (embedding/cpu/ebc_pool.c), each ending when all its chunks have run:
 *   A. count each run of bags' ids per partition;
 *   B. copy each run's entries (id, bag, per-sample weight / bag length) into the
 *      partitions' buckets, runs in bag order, so every bucket is in batch order;
 *   C. per partition: radix-sort the bucket by id (stable, so a row's entries stay in
 *      batch order), sum each run of equal ids, apply the optimizer.
 * A row's gradient is summed in batch order whatever the worker and partition counts,
 * so the result does not depend on them.
 */
typedef struct {
    const isa_impl *impl;
    const ember__ebc_tdesc *td;
    const ember__ebc_optim *o;
    const float *grad;
    int64_t batch, ld, runs;
    int ntables, parts;
    char *w0;
    size_t o_hist, o_g, o_w, dpad;
    int64_t *ids;
    uint64_t *keys, *tmp;
    int32_t *bags;
    float *coefs;
    int64_t *cnt;  /* [table][run][part]: counts, then write cursors */
    int64_t *part; /* [table * parts + part]: bucket starts, one past the end */
} bwd_job;

static void run_bounds(const bwd_job *j, int i, int64_t r, int64_t *b0, int64_t *b1) {
    const int64_t *off = j->td[i].offsets, batch = j->batch;
    const int64_t total = off[batch] - off[0] + batch;
    *b0 = r == 0 ? 0 : cut(off, batch, total * r / j->runs);
    *b1 = r == j->runs - 1 ? batch : cut(off, batch, total * (r + 1) / j->runs);
}

static void count_chunk(void *p, int64_t c, int worker) {
    (void)worker;
    const bwd_job *j = p;
    const int i = (int)(c / j->runs);
    int64_t b0, b1;
    run_bounds(j, i, c % j->runs, &b0, &b1);
    const ember__ebc_tdesc *t = &j->td[i];
    int64_t *cn = j->cnt + (size_t)c * j->parts;
    for (int q = 0; q < j->parts; q++) cn[q] = 0;
    if (j->parts == 1)
        cn[0] = t->offsets[b1] - t->offsets[b0];
    else
        for (int64_t k = t->offsets[b0]; k < t->offsets[b1]; k++) cn[owner(t->values[k], j->parts)]++;
}

static void scatter_chunk(void *p, int64_t c, int worker) {
    (void)worker;
    const bwd_job *j = p;
    const int i = (int)(c / j->runs);
    int64_t b0, b1;
    run_bounds(j, i, c % j->runs, &b0, &b1);
    const ember__ebc_tdesc *t = &j->td[i];
    int64_t *cur = j->cnt + (size_t)c * j->parts;
    const int64_t *off = t->offsets;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t s = off[b], e = off[b + 1];
        const float scale = t->pooling == EMBER_POOLING_MEAN && e > s ? 1.0f / (float)(e - s) : 1.0f;
        for (int64_t k = s; k < e; k++) {
            const int64_t id = t->values[k];
            const int64_t at = cur[j->parts == 1 ? 0 : owner(id, j->parts)]++;
            j->ids[at] = id;
            j->bags[at] = (int32_t)b;
            j->coefs[at] = t->weights ? t->weights[k] * scale : scale;
        }
    }
}

static void update_chunk(void *p, int64_t c, int worker) {
    const bwd_job *j = p;
    const ember__ebc_tdesc *t = &j->td[c / j->parts];
    const int64_t s = j->part[c], n = j->part[c + 1] - s;
    if (n == 0) return;
    uint32_t *hist = (uint32_t *)(j->w0 + j->o_hist) + (size_t)worker * RADIX_SIZE;
    float *g = (float *)(j->w0 + j->o_g + (size_t)worker * j->dpad);
    float *wb = (float *)(j->w0 + j->o_w + (size_t)worker * j->dpad);
    const int idx_bits = bits_for((uint64_t)(n - 1));
    const int id_bits = bits_for((uint64_t)(t->rows - 1));
    uint64_t *k0 = j->keys + s;
    for (int64_t k = 0; k < n; k++) k0[k] = ((uint64_t)j->ids[s + k] << idx_bits) | (uint64_t)k;
    const uint64_t *sorted = radix_sort(k0, j->tmp + s, n, idx_bits, idx_bits + id_bits, hist);
    j->impl->backward(t, sorted, n, idx_bits, j->bags + s, j->coefs + s, j->grad, j->ld, j->o, g, wb);
}

ember_status ember__ebc_backward_cpu(const ember__ebc_tdesc *td, int ntables, int64_t batch,
                                     const float *grad, int64_t ld, const ember__ebc_optim *o,
                                     ember__ebc_ws *ws) {
    static const char fn[] = "ember_ebc_backward";
    int64_t total = 0;
    int dmax = 1;
    for (int i = 0; i < ntables; i++) {
        int64_t n = td[i].offsets[batch] - td[i].offsets[0];
        total += n;
        if (td[i].dim > dmax) dmax = td[i].dim;
        /* entry indices live in the low bits of a 64-bit key next to the id */
        int idx_bits = bits_for(n > 0 ? (uint64_t)(n - 1) : 0);
        int id_bits = bits_for(td[i].rows > 0 ? (uint64_t)(td[i].rows - 1) : 0);
        if (n >= INT32_MAX || idx_bits + id_bits > 64)
            return ember__error(EMBER_ERR_UNSUPPORTED,
                                "%s: table %d: %lld ids over %lld rows do not fit the 64-bit sort "
                                "key (id bits + index bits > 64, or 2^31 ids); split the batch",
                                fn, i, (long long)n, (long long)td[i].rows);
    }
    if (total == 0) return EMBER_OK;
    const int workers = total >= PAR_MIN_SORT ? ember__ebc_pool_workers() : 1;
    bwd_job j = {.impl = isa(), .td = td, .o = o, .grad = grad, .batch = batch, .ld = ld,
                 .ntables = ntables, .runs = workers == 1 ? 1 : (int64_t)workers * RUNS_PER_WORKER,
                 .parts = partitions(workers, total),
                 .dpad = align64((size_t)dmax * 4)};
    const size_t ncnt = (size_t)ntables * (size_t)j.runs * (size_t)j.parts;
    size_t o_id = 0;
    size_t o_keys = o_id + align64((size_t)total * 8);
    size_t o_tmp = o_keys + align64((size_t)total * 8);
    size_t o_bag = o_tmp + align64((size_t)total * 8);
    size_t o_coef = o_bag + align64((size_t)total * 4);
    size_t o_cnt = o_coef + align64((size_t)total * 4);
    size_t o_part = o_cnt + align64(ncnt * 8);
    j.o_hist = o_part + align64(((size_t)ntables * (size_t)j.parts + 1) * 8);
    j.o_g = j.o_hist + align64((size_t)workers * RADIX_SIZE * 4);
    j.o_w = j.o_g + (size_t)workers * j.dpad;
    size_t bytes = j.o_w + (size_t)workers * j.dpad;
    EMBER_TRY(ember__ebc_ws_reserve(ws, bytes, fn));
    j.w0 = ws->ptr;
    j.ids = (int64_t *)(j.w0 + o_id);
    j.keys = (uint64_t *)(j.w0 + o_keys);
    j.tmp = (uint64_t *)(j.w0 + o_tmp);
    j.bags = (int32_t *)(j.w0 + o_bag);
    j.coefs = (float *)(j.w0 + o_coef);
    j.cnt = (int64_t *)(j.w0 + o_cnt);
    j.part = (int64_t *)(j.w0 + o_part);

    ember__ebc_pool_run(workers, j.runs * ntables, count_chunk, &j);
    /* buckets in (table, part) order; inside one, the runs in bag order */
    int64_t at = 0;
    for (int i = 0; i < ntables; i++)
        for (int q = 0; q < j.parts; q++) {
            j.part[(size_t)i * j.parts + q] = at;
            for (int64_t r = 0; r < j.runs; r++) {
                int64_t *c = &j.cnt[((size_t)i * j.runs + r) * j.parts + q];
                int64_t n = *c;
                *c = at;
                at += n;
            }
        }
    j.part[(size_t)ntables * j.parts] = at;
    ember__ebc_pool_run(workers, j.runs * ntables, scatter_chunk, &j);
    ember__ebc_pool_run(workers, (int64_t)ntables * j.parts, update_chunk, &j);
    return EMBER_OK;
}
