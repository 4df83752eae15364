/*
 * Embedding-bag collections: configuration, row records, and the one dispatch point
 * of the forward and backward kernels.
 *
 * Everything a user can get wrong is checked here, before a kernel runs or a row is
 * written: the collection is never left half-updated by bad input. The kernels get
 * one flat descriptor per table (embedding/ebc_internal.h) with the row storage as a
 * base pointer and a record stride, which is what lets a cache hand in its slot
 * array instead of the table (ember_ebc_rows).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "embedding/ebc_internal.h"
#include "embedding/ebc_math.h"
#include "engine/internal.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

#define DEFAULT_ROW_ALIGN 16
#define STAGING_BYTES ((size_t)32 << 20) /* host staging per chunk for GPU row I/O */
#define PAR_MIN_ROWS 4096

typedef struct ebc_table {
    char *name;
    int64_t rows;
    int dim;
    ember_row_format format;
    ember_pooling pooling;
    int64_t out_offset;
    size_t weight_bytes, state_offset, record_bytes;
    int state_floats;
    char *data; /* rows * record_bytes, EMBER_MEM_PARAMETER */
} ebc_table;

struct ember_ebc {
    int ntables;
    ebc_table *tables;
    ember_sparse_optim_config optim; /* defaults resolved */
    ember_memory *mm;
    ember_tier tier;
    ember_device device;
    int64_t out_dim;
    int64_t steps; /* backward calls (or the last step given) */
    ember_ebc_cuda_kernel cuda_kernel;
    ember__ebc_ws ws; /* kernels' scratch, EMBER_MEM_GRADIENT in the tables' tier */
    void *sparse_handle;
};

static const char *format_names[EMBER_ROW_FORMAT_COUNT] = {"f32", "f16", "bf16", "int8_rowwise"};
static const char *optim_names[EMBER_SPARSE_OPTIM_COUNT] = {"sgd", "adagrad", "rowwise_adagrad",
                                                            "adam", "adamw"};

const char *ember_row_format_name(ember_row_format f) {
    return (unsigned)f < EMBER_ROW_FORMAT_COUNT ? format_names[f] : "invalid";
}
const char *ember_sparse_optim_name(ember_sparse_optim o) {
    return (unsigned)o < EMBER_SPARSE_OPTIM_COUNT ? optim_names[o] : "invalid";
}

/* ---- workspace ---- */

ember_status ember__ebc_ws_reserve(ember__ebc_ws *ws, size_t bytes, const char *fn) {
    if (bytes <= ws->bytes) return EMBER_OK;
    ember__ebc_ws_release(ws);
    /* grow by half again, so a slowly growing batch does not reallocate every call */
    size_t want = bytes + bytes / 2;
    if (want < bytes) want = bytes;
    void *p = NULL;
    ember_status st = ember_memory_alloc(ws->mm, ws->tier, EMBER_MEM_GRADIENT, want, &p);
    if (st != EMBER_OK) st = ember_memory_alloc(ws->mm, ws->tier, EMBER_MEM_GRADIENT, want = bytes, &p);
    if (st != EMBER_OK)
        return ember__error(st, "%s: workspace of %zu B: %s", fn, bytes, ember_last_error());
    ws->ptr = p;
    ws->bytes = want;
    return EMBER_OK;
}

void ember__ebc_ws_release(ember__ebc_ws *ws) {
    if (ws->ptr) ember_memory_free(ws->mm, ws->ptr);
    ws->ptr = NULL;
    ws->bytes = 0;
}

/* ---- configuration ---- */

static int finite_nonneg(float x) { return isfinite(x) && x >= 0.0f; }

static ember_status resolve_optim(const char *fn, const ember_sparse_optim_config *in,
                                  ember_sparse_optim_config *out) {
    ember_sparse_optim_config o = in ? *in : (ember_sparse_optim_config){0};
    if ((unsigned)o.type >= EMBER_SPARSE_OPTIM_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: optimizer type %d is not valid", fn,
                            (int)o.type);
    int adam = o.type == EMBER_SPARSE_OPTIM_ADAM || o.type == EMBER_SPARSE_OPTIM_ADAMW;
    if (o.eps == 0.0f) o.eps = adam ? 1e-8f : 1e-10f;
    if (o.beta1 == 0.0f) o.beta1 = 0.9f;
    if (o.beta2 == 0.0f) o.beta2 = 0.999f;
    if (!finite_nonneg(o.eps))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s eps %g must be finite and >= 0", fn,
                            optim_names[o.type], (double)o.eps);
    if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f) || !(o.beta2 >= 0.0f && o.beta2 < 1.0f))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s betas (%g, %g) must be in [0, 1)",
                            fn, optim_names[o.type], (double)o.beta1, (double)o.beta2);
    if (!finite_nonneg(o.weight_decay))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: %s weight_decay %g must be finite and >= 0", fn,
                            optim_names[o.type], (double)o.weight_decay);
    if (!finite_nonneg(o.initial_accumulator))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: %s initial_accumulator %g must be finite and >= 0", fn,
                            optim_names[o.type], (double)o.initial_accumulator);
    if (!finite_nonneg(o.max_grad_norm))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: %s max_grad_norm %g must be finite and >= 0 (0: no clipping)", fn,
                            optim_names[o.type], (double)o.max_grad_norm);
    *out = o;
    return EMBER_OK;
}

static int state_floats_of(ember_sparse_optim type, int dim) {
    switch (type) {
    case EMBER_SPARSE_OPTIM_ADAGRAD: return dim;
    case EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD: return 1;
    case EMBER_SPARSE_OPTIM_ADAM:
    case EMBER_SPARSE_OPTIM_ADAMW: return 2 * dim;
    default: return 0;
    }
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static ember_status layout(const char *fn, int index, const ember_ebc_table_config *tc,
                           const ember_sparse_optim_config *o, size_t align,
                           ember_ebc_table_info *info) {
    char label[160];
    if (tc->name && *tc->name)
        snprintf(label, sizeof label, "table %d (\"%s\")", index, tc->name);
    else
        snprintf(label, sizeof label, "table %d", index);
    if (tc->rows <= 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s: rows %lld must be > 0", fn, label,
                            (long long)tc->rows);
    /* 2^28 columns keeps every per-row byte count far inside int32 and size_t */
    if (tc->dim <= 0 || tc->dim > (1 << 28))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s: dim %d must be in 1..2^28", fn,
                            label, tc->dim);
    if ((unsigned)tc->format >= EMBER_ROW_FORMAT_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s: row format %d is not valid", fn,
                            label, (int)tc->format);
    if ((unsigned)tc->pooling >= EMBER_POOLING_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s: pooling %d is not valid", fn, label,
                            (int)tc->pooling);
    memset(info, 0, sizeof *info);
    info->name = tc->name;
    info->rows = tc->rows;
    info->dim = tc->dim;
    info->format = tc->format;
    info->pooling = tc->pooling;
    info->weight_bytes = ember__row_weight_bytes(tc->format, tc->dim);
    info->state_offset = round_up(info->weight_bytes, 4);
    info->state_floats = state_floats_of(o->type, tc->dim);
    info->record_bytes = round_up(info->state_offset + 4 * (size_t)info->state_floats, align);
    size_t total;
    if (!ember__mul_size((size_t)tc->rows, info->record_bytes, &total) || total > (size_t)INT64_MAX)
        return ember__error(EMBER_ERR_OVERFLOW, "%s: %s: %lld rows of %zu B do not fit in memory",
                            fn, label, (long long)tc->rows, info->record_bytes);
    return EMBER_OK;
}

static ember_status check_align(const char *fn, size_t *align) {
    if (*align == 0) *align = DEFAULT_ROW_ALIGN;
    if (*align < 4 || *align > 4096 || (*align & (*align - 1)))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: row_align %zu must be a power of two in 4..4096", fn, *align);
    return EMBER_OK;
}

ember_status ember_ebc_record_layout(const ember_ebc_table_config *table,
                                     const ember_sparse_optim_config *optim, size_t row_align,
                                     ember_ebc_table_info *out) {
    static const char fn[] = "ember_ebc_record_layout";
    EMBER_CHECK_NULL(table, fn);
    EMBER_CHECK_NULL(out, fn);
    ember_sparse_optim_config o;
    EMBER_TRY(resolve_optim(fn, optim, &o));
    EMBER_TRY(check_align(fn, &row_align));
    return layout(fn, 0, table, &o, row_align, out);
}

/* ---- record access on any device ---- */

/* Run fn on records [first, first + count) of table t, in host memory: the table itself
 * on the CPU, host staging chunks on a GPU (read from the device first when `read`,
 * written back when `write`). */
typedef void (*record_fn)(const ember_ebc *e, const ebc_table *t, char *recs, int64_t first,
                          int64_t n, void *arg);

static ember_status with_records(const ember_ebc *e, const ebc_table *t, int64_t first,
                                 int64_t count, int read, int write, record_fn fn, void *arg) {
    if (count == 0) return EMBER_OK;
    if (e->device.type == EMBER_DEVICE_CPU) {
        fn(e, t, t->data + (size_t)first * t->record_bytes, first, count, arg);
        return EMBER_OK;
    }
#ifndef EMBER_HAVE_CUDA
    (void)read;
    (void)write;
    return ember__error(EMBER_ERR_UNSUPPORTED, "embedding rows on a GPU without CUDA");
#else
    int64_t chunk = (int64_t)(STAGING_BYTES / t->record_bytes);
    if (chunk < 1) chunk = 1;
    if (chunk > count) chunk = count;
    char *stage = NULL;
    EMBER_TRY(ember_memory_alloc(e->mm, EMBER_TIER_HOST, EMBER_MEM_STAGING,
                                 (size_t)chunk * t->record_bytes, (void **)&stage));
    ember_status st = EMBER_OK;
    for (int64_t r = first; r < first + count && st == EMBER_OK; r += chunk) {
        int64_t n = first + count - r < chunk ? first + count - r : chunk;
        char *dev = t->data + (size_t)r * t->record_bytes;
        size_t bytes = (size_t)n * t->record_bytes;
        if (read) st = ember__cuda_memcpy(e->device.index, stage, dev, bytes, EMBER__D2H, 1);
        if (st != EMBER_OK) break;
        fn(e, t, stage, r, n, arg);
        if (write) st = ember__cuda_memcpy(e->device.index, dev, stage, bytes, EMBER__H2D, 1);
    }
    ember_memory_free(e->mm, stage);
    return st;
#endif
}

static float initial_state(const ember_ebc *e) {
    return e->optim.type == EMBER_SPARSE_OPTIM_ADAGRAD ||
                   e->optim.type == EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD
               ? e->optim.initial_accumulator
               : 0.0f;
}

/* Whole records: weights from src (NULL: zeros), state initial, padding zero. */
typedef struct {
    const float *src; /* (n, dim) for the chunk starting at `first0`, or NULL */
    int64_t first0;
} init_arg;

static void init_records(const ember_ebc *e, const ebc_table *t, char *recs, int64_t first,
                         int64_t n, void *arg) {
    const init_arg *a = arg;
    float s0 = initial_state(e);
#pragma omp parallel for if (n >= PAR_MIN_ROWS) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        char *rec = recs + (size_t)i * t->record_bytes;
        memset(rec, 0, t->record_bytes);
        if (a->src) ember__row_store(rec, t->format, t->dim, a->src + (size_t)(first + i - a->first0) * t->dim);
        float *s = (float *)(rec + t->state_offset);
        for (int j = 0; j < t->state_floats; j++) s[j] = s0;
    }
}

typedef struct {
    float *dst;
    const float *src;
    int64_t first0;
} rows_arg;

static void read_rows_fn(const ember_ebc *e, const ebc_table *t, char *recs, int64_t first,
                         int64_t n, void *arg) {
    (void)e;
    rows_arg *a = arg;
#pragma omp parallel for if (n >= PAR_MIN_ROWS) schedule(static)
    for (int64_t i = 0; i < n; i++)
        ember__row_load(recs + (size_t)i * t->record_bytes, t->format, t->dim,
                        a->dst + (size_t)(first + i - a->first0) * t->dim);
}

static void write_rows_fn(const ember_ebc *e, const ebc_table *t, char *recs, int64_t first,
                          int64_t n, void *arg) {
    (void)e;
    rows_arg *a = arg;
#pragma omp parallel for if (n >= PAR_MIN_ROWS) schedule(static)
    for (int64_t i = 0; i < n; i++)
        ember__row_store(recs + (size_t)i * t->record_bytes, t->format, t->dim,
                         a->src + (size_t)(first + i - a->first0) * t->dim);
}

static void read_state_fn(const ember_ebc *e, const ebc_table *t, char *recs, int64_t first,
                          int64_t n, void *arg) {
    (void)e;
    rows_arg *a = arg;
    size_t sb = 4 * (size_t)t->state_floats;
    for (int64_t i = 0; i < n; i++)
        memcpy(a->dst + (size_t)(first + i - a->first0) * t->state_floats,
               recs + (size_t)i * t->record_bytes + t->state_offset, sb);
}

static void write_state_fn(const ember_ebc *e, const ebc_table *t, char *recs, int64_t first,
                           int64_t n, void *arg) {
    (void)e;
    rows_arg *a = arg;
    size_t sb = 4 * (size_t)t->state_floats;
    for (int64_t i = 0; i < n; i++)
        memcpy(recs + (size_t)i * t->record_bytes + t->state_offset,
               a->src + (size_t)(first + i - a->first0) * t->state_floats, sb);
}

/* ---- create / destroy ---- */

void ember_ebc_destroy(ember_ebc *e) {
    if (!e) return;
#ifdef EMBER_HAVE_CUDA
    if (e->sparse_handle) ember__ebc_cuda_release(e->device.index, e->sparse_handle);
#endif
    ember__ebc_ws_release(&e->ws);
    for (int t = 0; t < e->ntables && e->tables; t++) {
        if (e->tables[t].data) ember_memory_free(e->mm, e->tables[t].data);
        free(e->tables[t].name);
    }
    free(e->tables);
    free(e);
}

ember_status ember_ebc_create(const ember_ebc_config *cfg, ember_ebc **out) {
    static const char fn[] = "ember_ebc_create";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(cfg, fn);
    if (cfg->num_tables < 1)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: num_tables %d must be >= 1", fn,
                            cfg->num_tables);
    if (!cfg->tables)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tables is NULL for %d tables", fn,
                            cfg->num_tables);
    if ((unsigned)cfg->tier >= EMBER_TIER_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tier %d is not valid", fn, (int)cfg->tier);
    if ((unsigned)cfg->cuda_kernel >= EMBER_EBC_CUDA_KERNEL_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: cuda_kernel %d is not valid", fn,
                            (int)cfg->cuda_kernel);
    ember_sparse_optim_config optim;
    EMBER_TRY(resolve_optim(fn, &cfg->optim, &optim));
    size_t align = cfg->row_align;
    EMBER_TRY(check_align(fn, &align));
    ember_memory *mm = cfg->mm ? cfg->mm : ember_memory_default();
    ember_device dev = ember_memory_tier_device(mm, cfg->tier);
#ifndef EMBER_HAVE_CUDA
    if (dev.type == EMBER_DEVICE_CUDA)
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: tables on cuda:%d but this ember was built "
                            "without CUDA", fn, dev.index);
#endif
#ifndef EMBER_HAVE_CUSPARSE
    if (dev.type == EMBER_DEVICE_CUDA && cfg->cuda_kernel == EMBER_EBC_CUDA_CUSPARSE)
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: cuda_kernel CUSPARSE but this ember was "
                            "built without cuSPARSE", fn);
#endif

    ember_ebc *e = calloc(1, sizeof *e);
    if (!e) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: collection header", fn);
    e->tables = calloc((size_t)cfg->num_tables, sizeof *e->tables);
    if (!e->tables) {
        free(e);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d table headers", fn, cfg->num_tables);
    }
    e->optim = optim;
    e->mm = mm;
    e->tier = cfg->tier;
    e->device = dev;
    e->cuda_kernel = cfg->cuda_kernel;
    e->ws = (ember__ebc_ws){.mm = mm, .tier = cfg->tier};

    ember_status st = EMBER_OK;
    for (int i = 0; i < cfg->num_tables && st == EMBER_OK; i++) {
        ember_ebc_table_info info;
        st = layout(fn, i, &cfg->tables[i], &optim, align, &info);
        if (st != EMBER_OK) break;
        ebc_table *t = &e->tables[i];
        e->ntables = i + 1; /* so destroy frees what exists */
        char generated[32];
        snprintf(generated, sizeof generated, "table %d", i);
        const char *name = cfg->tables[i].name && *cfg->tables[i].name ? cfg->tables[i].name : generated;
        t->name = malloc(strlen(name) + 1);
        if (!t->name) {
            st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: table name", fn);
            break;
        }
        strcpy(t->name, name);
        t->rows = info.rows;
        t->dim = info.dim;
        t->format = info.format;
        t->pooling = info.pooling;
        t->out_offset = e->out_dim;
        t->weight_bytes = info.weight_bytes;
        t->state_offset = info.state_offset;
        t->state_floats = info.state_floats;
        t->record_bytes = info.record_bytes;
        e->out_dim += t->dim;
        size_t bytes = (size_t)t->rows * t->record_bytes;
        st = ember_memory_alloc(mm, cfg->tier, EMBER_MEM_PARAMETER, bytes, (void **)&t->data);
        if (st != EMBER_OK) {
            st = ember__error(st, "%s: table %d (\"%s\"): %s", fn, i, t->name, ember_last_error());
            break;
        }
        init_arg a = {0};
        st = with_records(e, t, 0, t->rows, 0, 1, init_records, &a);
    }
    if (st != EMBER_OK) {
        ember_ebc_destroy(e);
        return st;
    }
    *out = e;
    return EMBER_OK;
}

/* ---- queries ---- */

int ember_ebc_num_tables(const ember_ebc *e) { return e ? e->ntables : 0; }
int64_t ember_ebc_output_dim(const ember_ebc *e) { return e ? e->out_dim : 0; }
ember_device ember_ebc_device(const ember_ebc *e) { return e ? e->device : EMBER_CPU; }
ember_sparse_optim_config ember_ebc_optim(const ember_ebc *e) {
    return e ? e->optim : (ember_sparse_optim_config){0};
}

static ember_status check_table(const char *fn, const ember_ebc *e, int table) {
    EMBER_CHECK_NULL(e, fn);
    if (table < 0 || table >= e->ntables)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d is outside [0, %d)", fn, table, e->ntables);
    return EMBER_OK;
}

ember_status ember_ebc_get_table_info(const ember_ebc *e, int table, ember_ebc_table_info *out) {
    static const char fn[] = "ember_ebc_get_table_info";
    EMBER_CHECK_NULL(out, fn);
    EMBER_TRY(check_table(fn, e, table));
    const ebc_table *t = &e->tables[table];
    *out = (ember_ebc_table_info){.name = t->name,
                                  .rows = t->rows,
                                  .dim = t->dim,
                                  .format = t->format,
                                  .pooling = t->pooling,
                                  .out_offset = t->out_offset,
                                  .weight_bytes = t->weight_bytes,
                                  .state_offset = t->state_offset,
                                  .state_floats = t->state_floats,
                                  .record_bytes = t->record_bytes,
                                  .data = t->data};
    return EMBER_OK;
}

/* ---- row I/O ---- */

static ember_status check_range(const char *fn, const ember_ebc *e, int table, int64_t first,
                                int64_t count, const void *buf) {
    EMBER_TRY(check_table(fn, e, table));
    const ebc_table *t = &e->tables[table];
    if (first < 0 || count < 0 || first > t->rows || count > t->rows - first)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d (\"%s\"): rows [%lld, %lld + %lld) are "
                            "outside [0, %lld)", fn, table, t->name, (long long)first,
                            (long long)first, (long long)count, (long long)t->rows);
    if (count > 0 && !buf)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: buffer is NULL for %lld rows", fn,
                            (long long)count);
    return EMBER_OK;
}

ember_status ember_ebc_write_rows(ember_ebc *e, int table, int64_t first, int64_t count,
                                  const float *src) {
    EMBER_TRY(check_range("ember_ebc_write_rows", e, table, first, count, src));
    rows_arg a = {.src = src, .first0 = first};
    return with_records(e, &e->tables[table], first, count, 1, 1, write_rows_fn, &a);
}

ember_status ember_ebc_read_rows(const ember_ebc *e, int table, int64_t first, int64_t count,
                                 float *dst) {
    EMBER_TRY(check_range("ember_ebc_read_rows", e, table, first, count, dst));
    rows_arg a = {.dst = dst, .first0 = first};
    return with_records(e, &e->tables[table], first, count, 1, 0, read_rows_fn, &a);
}

ember_status ember_ebc_read_state(const ember_ebc *e, int table, int64_t first, int64_t count,
                                  float *dst) {
    EMBER_TRY(check_range("ember_ebc_read_state", e, table, first, count, dst));
    if (e->tables[table].state_floats == 0) return EMBER_OK;
    rows_arg a = {.dst = dst, .first0 = first};
    return with_records(e, &e->tables[table], first, count, 1, 0, read_state_fn, &a);
}

ember_status ember_ebc_write_state(ember_ebc *e, int table, int64_t first, int64_t count,
                                   const float *src) {
    EMBER_TRY(check_range("ember_ebc_write_state", e, table, first, count, src));
    if (e->tables[table].state_floats == 0) return EMBER_OK;
    rows_arg a = {.src = src, .first0 = first};
    return with_records(e, &e->tables[table], first, count, 1, 1, write_state_fn, &a);
}

ember_status ember_ebc_init_uniform(ember_ebc *e, ember_rng *rng, float lo, float hi) {
    static const char fn[] = "ember_ebc_init_uniform";
    EMBER_CHECK_NULL(e, fn);
    EMBER_CHECK_NULL(rng, fn);
    if (!isfinite(lo) || !isfinite(hi) || hi < lo)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: range [%g, %g) is not valid", fn,
                            (double)lo, (double)hi);
    for (int ti = 0; ti < e->ntables; ti++) {
        ebc_table *t = &e->tables[ti];
        int64_t chunk = (int64_t)(STAGING_BYTES / (4 * (size_t)t->dim));
        if (chunk < 1) chunk = 1;
        if (chunk > t->rows) chunk = t->rows;
        ember_tensor *buf = NULL;
        EMBER_TRY(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32,
                                                             .ndim = 2,
                                                             .shape = {chunk, t->dim},
                                                             .kind = EMBER_MEM_STAGING,
                                                             .mm = e->mm},
                                      &buf));
        ember_status st = EMBER_OK;
        for (int64_t r = 0; r < t->rows && st == EMBER_OK; r += chunk) {
            int64_t n = t->rows - r < chunk ? t->rows - r : chunk;
            ember_tensor *view = NULL;
            st = ember_tensor_narrow(buf, 0, 0, n, &view);
            if (st == EMBER_OK) st = ember_rng_uniform(rng, view, lo, hi);
            ember_tensor_destroy(view);
            init_arg a = {.src = ember_tensor_data(buf), .first0 = r};
            if (st == EMBER_OK) st = with_records(e, t, r, n, 0, 1, init_records, &a);
        }
        ember_tensor_destroy(buf);
        EMBER_TRY(st);
    }
    return EMBER_OK;
}

/* ---- forward / backward ---- */

static ember_status check_io(const char *fn, const char *what, const ember_ebc *e,
                             const ember_jagged *b, const ember_tensor *x) {
    char d[96];
    if (ember_tensor_dtype(x) != EMBER_DTYPE_F32)
        return ember__error(EMBER_ERR_DTYPE, "%s: %s is %s; it must be f32", fn, what,
                            ember_dtype_name(ember_tensor_dtype(x)));
    if (ember_tensor_ndim(x) != 2 || ember_tensor_dim(x, 0) != b->batch ||
        ember_tensor_dim(x, 1) != e->out_dim)
        return ember__error(EMBER_ERR_SHAPE, "%s: %s is %s; it must be (%lld, %lld) = (batch, sum of dims)",
                            fn, what, ember_tensor_describe(x, d, sizeof d), (long long)b->batch,
                            (long long)e->out_dim);
    if (!ember_device_equal(ember_tensor_device(x), e->device)) {
        char dv[32];
        return ember__error(EMBER_ERR_DEVICE, "%s: %s is %s but the collection is on %s", fn, what,
                            ember_tensor_describe(x, d, sizeof d),
                            ember_device_format(e->device, dv, sizeof dv));
    }
    if (e->out_dim > 1 && ember_tensor_stride(x, 1) != 1)
        return ember__error(EMBER_ERR_STATE, "%s: %s %s has a strided last dim (stride %lld); each "
                            "row must be contiguous", fn, what, ember_tensor_describe(x, d, sizeof d),
                            (long long)ember_tensor_stride(x, 1));
    if (b->batch > 1 && ember_tensor_stride(x, 0) < e->out_dim)
        return ember__error(EMBER_ERR_STATE, "%s: %s %s has overlapping rows (row stride %lld < %lld)",
                            fn, what, ember_tensor_describe(x, d, sizeof d),
                            (long long)ember_tensor_stride(x, 0), (long long)e->out_dim);
    return EMBER_OK;
}

/* The per-table descriptors of one call; validates the batch unless trusted. */
static ember_status prepare(const char *fn, ember_ebc *e, const ember_jagged *b,
                            const ember_ebc_call *call, ember__ebc_tdesc **out) {
    *out = NULL;
    ember__ebc_tdesc *td = calloc((size_t)e->ntables, sizeof *td);
    if (!td) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d table descriptors", fn, e->ntables);
    ember_status st = EMBER_OK;
    for (int i = 0; i < e->ntables && st == EMBER_OK; i++) {
        const ebc_table *t = &e->tables[i];
        const ember_jagged_feature *f = &b->features[i];
        ember__ebc_tdesc *d = &td[i];
        if (f->weights && t->pooling == EMBER_POOLING_MEAN) {
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d (\"%s\"): per-sample weights "
                              "need sum pooling (this table pools by mean)", fn, i, t->name);
            break;
        }
        d->base = t->data;
        d->rows = t->rows;
        d->stride = (int64_t)t->record_bytes;
        if (call && call->rows) {
            const ember_ebc_rows *r = &call->rows[i];
            size_t stride = r->stride ? r->stride : t->record_bytes;
            if (!r->base || r->count < 0) {
                st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d (\"%s\"): rows override "
                                  "has base %p and count %lld", fn, i, t->name, r->base,
                                  (long long)r->count);
                break;
            }
            if (stride < t->record_bytes || stride % 4 != 0 || ((uintptr_t)r->base & 3u) ||
                stride > (size_t)INT64_MAX) {
                st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d (\"%s\"): rows override "
                                  "stride %zu must be a multiple of 4 and >= the record size %zu, on "
                                  "a 4-byte aligned base", fn, i, t->name, stride, t->record_bytes);
                break;
            }
            d->base = r->base;
            d->rows = r->count;
            d->stride = (int64_t)stride;
        }
        d->dim = t->dim;
        d->format = t->format;
        d->pooling = t->pooling;
        d->state_floats = t->state_floats;
        d->state_offset = (int64_t)t->state_offset;
        d->out_col = t->out_offset;
        d->values = f->values;
        d->offsets = f->offsets;
        d->weights = f->weights;
        d->length = f->length;
    }
    if (st == EMBER_OK && !(call && call->trusted)) {
        if (e->device.type == EMBER_DEVICE_CPU) {
            for (int i = 0; i < e->ntables && st == EMBER_OK; i++)
                st = ember__jagged_check_feature(fn, i, e->tables[i].name, &b->features[i], b->batch,
                                                 td[i].rows);
        } else {
#ifdef EMBER_HAVE_CUDA
            int bad = -1;
            st = ember__ebc_validate_cuda(e->device.index, td, e->ntables, b->batch, &e->ws, &bad);
            if (st == EMBER_OK && bad >= 0) {
                /* Bring the bad table's arrays to the host and let the CPU check word it. */
                const ember_jagged_feature *f = &b->features[bad];
                size_t ob = (size_t)(b->batch + 1) * 8, vb = (size_t)f->length * 8;
                char *h = NULL;
                st = ember_memory_alloc(e->mm, EMBER_TIER_HOST, EMBER_MEM_STAGING, ob + vb + 8, (void **)&h);
                if (st == EMBER_OK)
                    st = ember__cuda_memcpy(e->device.index, h, f->offsets, ob, EMBER__D2H, 1);
                if (st == EMBER_OK && vb)
                    st = ember__cuda_memcpy(e->device.index, h + ob, f->values, vb, EMBER__D2H, 1);
                if (st == EMBER_OK) {
                    ember_jagged_feature hf = {.values = (const int64_t *)(h + ob),
                                               .offsets = (const int64_t *)h,
                                               .length = f->length};
                    st = ember__jagged_check_feature(fn, bad, e->tables[bad].name, &hf, b->batch,
                                                     td[bad].rows);
                    if (st == EMBER_OK)
                        st = ember__error(EMBER_ERR_INTERNAL, "%s: table %d: the GPU check found a "
                                          "bad id the host check does not", fn, bad);
                }
                ember_memory_free(e->mm, h);
            }
#endif
        }
    }
    if (st != EMBER_OK) {
        free(td);
        return st;
    }
    *out = td;
    return EMBER_OK;
}

ember_status ember_ebc_forward(ember_ebc *e, const ember_jagged *b, ember_tensor *out,
                               const ember_ebc_call *call) {
    static const char fn[] = "ember_ebc_forward";
    EMBER_CHECK_NULL(e, fn);
    EMBER_CHECK_NULL(b, fn);
    EMBER_CHECK_NULL(out, fn);
    EMBER_TRY(ember__jagged_check_shape(fn, b, e->ntables));
    EMBER_TRY(check_io(fn, "out", e, b, out));
    ember__ebc_tdesc *td;
    EMBER_TRY(prepare(fn, e, b, call, &td));
    float *o = ember_tensor_data(out);
    int64_t ld = b->batch > 1 ? ember_tensor_stride(out, 0) : e->out_dim;
    ember_status st = EMBER_OK;
    if (b->batch > 0) {
        if (e->device.type == EMBER_DEVICE_CPU) {
            st = ember__ebc_forward_cpu(td, e->ntables, b->batch, o, ld);
        } else {
#ifdef EMBER_HAVE_CUDA
            st = ember__ebc_forward_cuda(e->device.index, (int)e->cuda_kernel, td, e->ntables,
                                         b->batch, o, ld, &e->sparse_handle, &e->ws);
#endif
        }
    }
    free(td);
    return st;
}

ember_status ember_ebc_backward(ember_ebc *e, const ember_jagged *b, const ember_tensor *grad_out,
                                const ember_ebc_call *call) {
    static const char fn[] = "ember_ebc_backward";
    EMBER_CHECK_NULL(e, fn);
    EMBER_CHECK_NULL(b, fn);
    EMBER_CHECK_NULL(grad_out, fn);
    EMBER_CHECK_NULL(call, fn);
    if (!finite_nonneg(call->lr))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: learning rate %g must be finite and >= 0",
                            fn, (double)call->lr);
    if (call->step < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: step %lld is negative", fn,
                            (long long)call->step);
    EMBER_TRY(ember__jagged_check_shape(fn, b, e->ntables));
    EMBER_TRY(check_io(fn, "grad_out", e, b, grad_out));
    ember__ebc_tdesc *td;
    EMBER_TRY(prepare(fn, e, b, call, &td));

    int64_t step = call->step > 0 ? call->step : e->steps + 1;
    const ember_sparse_optim_config *c = &e->optim;
    ember__ebc_optim o = {.type = c->type,
                          .lr = call->lr,
                          .eps = c->eps,
                          .beta1 = c->beta1,
                          .beta2 = c->beta2,
                          .weight_decay = c->weight_decay,
                          .max_grad_norm = c->max_grad_norm};
    /* Scalars in double from the f32 settings, rounded once, like torch's Python floats. */
    o.one_minus_beta1 = (float)(1.0 - (double)c->beta1);
    o.one_minus_beta2 = (float)(1.0 - (double)c->beta2);
    double bc1 = 1.0 - pow((double)c->beta1, (double)step);
    double bc2 = 1.0 - pow((double)c->beta2, (double)step);
    o.step_size = (float)((double)call->lr / bc1);
    o.sqrt_bc2 = (float)sqrt(bc2);
    o.decay = (float)(1.0 - (double)call->lr * (double)c->weight_decay);

    const float *g = ember_tensor_data(grad_out);
    int64_t ld = b->batch > 1 ? ember_tensor_stride(grad_out, 0) : e->out_dim;
    ember_status st = EMBER_OK;
    if (b->batch > 0) {
        if (e->device.type == EMBER_DEVICE_CPU) {
            st = ember__ebc_backward_cpu(td, e->ntables, b->batch, g, ld, &o, &e->ws);
        } else {
#ifdef EMBER_HAVE_CUDA
            st = ember__ebc_backward_cuda(e->device.index, (int)e->cuda_kernel, td, e->ntables,
                                          b->batch, g, ld, &o, &e->sparse_handle, &e->ws);
#endif
        }
    }
    free(td);
    if (st == EMBER_OK) e->steps = step;
    return st;
}
