/*
 * embedding/ebc_internal.h: what the dispatcher (embedding/ebc.c) hands the CPU and
 * CUDA kernels. Not installed.
 *
 * The dispatcher validates everything (shapes, devices, ids) and resolves per-call
 * options, so a kernel sees one ember__ebc_tdesc per table: raw pointers, the record
 * layout and the batch's arrays, and never re-validates. Both backends implement the
 * same arithmetic (embedding/ebc_math.h): f32 accumulation, coalesced gradients summed
 * in sorted-id order with positions ascending inside an id, the optimizer formulas of
 * ember/embedding.h.
 */
#ifndef EMBER_EBC_INTERNAL_H
#define EMBER_EBC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ember/embedding.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One table in one call. */
typedef struct ember__ebc_tdesc {
    char *base;           /* record of id i at base + i * stride */
    int64_t rows;         /* valid ids: [0, rows) */
    int64_t stride;       /* bytes between records */
    int dim;
    int format;           /* ember_row_format */
    int pooling;          /* ember_pooling */
    int state_floats;
    int64_t state_offset; /* bytes */
    int64_t out_col;      /* first column of this table in out / grad_out */
    /* the batch's part for this table (device pointers on a GPU) */
    const int64_t *values;
    const int64_t *offsets; /* (B + 1,) */
    const float *weights;   /* or NULL */
    int64_t length;         /* elements in values */
} ember__ebc_tdesc;

/* The optimizer with defaults resolved and the step's scalars precomputed on the host
 * (in double, rounded once), so CPU and CUDA use the very same constants. */
typedef struct ember__ebc_optim {
    int type; /* ember_sparse_optim */
    float lr, eps, beta1, beta2, weight_decay, max_grad_norm;
    float one_minus_beta1, one_minus_beta2;
    float step_size;       /* Adam: lr / (1 - beta1^t) */
    float sqrt_bc2;        /* Adam: sqrt(1 - beta2^t) */
    float decay;           /* AdamW: 1 - lr * weight_decay */
} ember__ebc_optim;

/* A workspace owned by the collection, grown on demand through the memory manager
 * (EMBER_MEM_GRADIENT). Backends keep their scratch here between calls. */
typedef struct ember__ebc_ws {
    ember_memory *mm;
    ember_tier tier;
    void *ptr;
    size_t bytes;
} ember__ebc_ws;

/* Host check of one table's part of a batch (arrays in host memory): offsets
 * non-decreasing and within [0, length], ids of the used range in [0, rows) (rows < 0:
 * ids >= 0 only). Fails with EMBER_ERR_INDEX naming fn, the table (and its name when
 * given), the sample and the position in values. */
ember_status ember__jagged_check_feature(const char *fn, int table, const char *name,
                                         const ember_jagged_feature *f, int64_t batch,
                                         int64_t rows);
/* The structural checks every call makes, trusted or not: NULLs, counts, lengths. */
ember_status ember__jagged_check_shape(const char *fn, const ember_jagged *b, int ntables);

/* Make ws at least `bytes` long (contents not kept). */
ember_status ember__ebc_ws_reserve(ember__ebc_ws *ws, size_t bytes, const char *fn);
void ember__ebc_ws_release(ember__ebc_ws *ws);

/* ---- CPU thread pool (embedding/cpu/ebc_pool.c) ---- */

/* One chunk of a pool job; worker is 0 for the calling thread, 1.. for pool threads. */
typedef void (*ember__ebc_pool_fn)(void *arg, int64_t chunk, int worker);
/* Run fn(arg, c, w) for every c in [0, chunks) on the calling thread and up to
 * workers - 1 pool threads, claiming chunks one at a time; returns when all have run.
 * Pool threads that are not running do not hold the caller up (it runs what they do
 * not claim). A call made while another thread's job runs executes on the caller. */
void ember__ebc_pool_run(int workers, int64_t chunks, ember__ebc_pool_fn fn, void *arg);
/* Workers for the embedding kernels: ember_get_num_threads(). */
int ember__ebc_pool_workers(void);

/* ---- CPU (embedding/cpu/ebc_cpu.c) ---- */

/* out (B, ld_out floats per row): pooled rows of every table. */
ember_status ember__ebc_forward_cpu(const ember__ebc_tdesc *t, int ntables, int64_t batch,
                                    float *out, int64_t ld_out);
/* Coalesce by id and apply the optimizer in place; ws is host scratch. */
ember_status ember__ebc_backward_cpu(const ember__ebc_tdesc *t, int ntables, int64_t batch,
                                     const float *grad, int64_t ld_grad,
                                     const ember__ebc_optim *opt, ember__ebc_ws *ws);
/* Vector width the CPU kernels picked at run time: "avx512", "avx2" or "scalar".
   $EMBER_CPU_ISA (avx512|avx2|scalar) lowers it, for tests and comparisons. */
const char *ember__ebc_cpu_isa(void);
/* Switch the CPU kernels to "avx512", "avx2" or "scalar" (tests and benchmarks; not while
   kernels run). Returns 0 when this CPU lacks that instruction set. */
int ember__ebc_cpu_set_isa(const char *name);

#ifdef EMBER_HAVE_CUDA
/* ---- CUDA (embedding/cuda/ebc_cuda.cu); queued on the current stream of `dev` ---- */

/* The first table whose offsets or ids are bad (-1: the batch is fine); waits for the
 * answer. The dispatcher then copies that table's arrays to the host and runs the CPU
 * check on them, so GPU and CPU report the very same message. */
ember_status ember__ebc_validate_cuda(int dev, const ember__ebc_tdesc *t, int ntables,
                                      int64_t batch, ember__ebc_ws *ws, int *bad_table);
ember_status ember__ebc_forward_cuda(int dev, int kernel, const ember__ebc_tdesc *t, int ntables,
                                     int64_t batch, float *out, int64_t ld_out,
                                     void **sparse_handle, ember__ebc_ws *ws);
ember_status ember__ebc_backward_cuda(int dev, int kernel, const ember__ebc_tdesc *t,
                                      int ntables, int64_t batch, const float *grad,
                                      int64_t ld_grad, const ember__ebc_optim *opt,
                                      void **sparse_handle, ember__ebc_ws *ws);
/* Destroy the cuSPARSE handle a collection made (NULL is a no-op). */
void ember__ebc_cuda_release(int dev, void *sparse_handle);
#endif

#ifdef __cplusplus
}
#endif
#endif /* EMBER_EBC_INTERNAL_H */
