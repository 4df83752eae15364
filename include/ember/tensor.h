/*
 * ember/tensor.h: tensors, views, and the backend-dispatched kernels on them.
 *
 * A tensor is a dtype, up to EMBER_MAX_DIMS dims, strides (in elements) and an offset
 * into a refcounted storage. The storage is one memory-manager allocation in one tier;
 * the tensor's device is the device of that tier (the manager's device for DEVICE,
 * the CPU otherwise). Views (reshape, narrow, transpose, permute) share the storage
 * and keep it alive; destroying the last tensor on a storage frees it.
 *
 *     ember_tensor *x, *row;
 *     ember_tensor_create(&(ember_tensor_params){
 *         .dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {B, D}}, &x);   // (B, D) on host
 *     ember_tensor_fill(x, 0.0);
 *     ember_tensor_narrow(x, 0, 3, 1, &row);                            // (1, D) view
 *     ember_tensor_destroy(row);
 *     ember_tensor_destroy(x);
 *
 * Kernels (fill, copy, unary, binary, reduce, gemm) dispatch on the tensors' device:
 * OpenMP/OpenBLAS on the CPU, CUDA kernels and cuBLAS on a GPU. Arithmetic is done in
 * f32 for f32, f16 and bf16 tensors. Except for copy, kernels need contiguous
 * operands (ember_tensor_contiguous makes one). On CUDA, kernels are queued on the
 * calling thread's current stream (ember/stream.h) and return before they finish;
 * reads of results on the host go through ember_tensor_copy, which waits.
 *
 * Thread safety: distinct tensors may be used from different threads; a tensor that
 * is written must not be used concurrently. Retain/destroy are atomic on storages.
 */
#ifndef EMBER_TENSOR_H
#define EMBER_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "ember/memory.h"
#include "ember/status.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_MAX_DIMS 6

typedef struct ember_tensor ember_tensor;

typedef struct ember_tensor_params {
    ember_dtype dtype;
    int ndim;                        /* 0 (scalar) .. EMBER_MAX_DIMS */
    int64_t shape[EMBER_MAX_DIMS];   /* each >= 0 */
    ember_tier tier;                 /* default HOST */
    ember_mem_kind kind;             /* default OTHER */
    ember_memory *mm;                /* NULL: ember_memory_default() */
} ember_tensor_params;

/**
 * Create a contiguous tensor (contents uninitialised).
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULL, ndim out of range, negative dim,
 *         bad tier/kind); EMBER_ERR_DTYPE; EMBER_ERR_OVERFLOW (byte size does not fit);
 *         EMBER_ERR_OUT_OF_MEMORY (budget).
 */
ember_status ember_tensor_create(const ember_tensor_params *p, ember_tensor **out);

/**
 * Wrap memory the caller owns (not counted by a manager). data must stay valid for
 * the life of the tensor and its views; strides NULL means contiguous.
 */
ember_status ember_tensor_wrap(void *data, ember_dtype dtype, int ndim, const int64_t *shape,
                               const int64_t *strides, ember_device dev, ember_tensor **out);

/** Drop this tensor; its storage is freed when no tensor uses it. NULL is a no-op. */
void ember_tensor_destroy(ember_tensor *t);

/* ---- metadata ---- */
ember_dtype ember_tensor_dtype(const ember_tensor *t);
int ember_tensor_ndim(const ember_tensor *t);
int64_t ember_tensor_dim(const ember_tensor *t, int i);    /* negative i counts from the end */
int64_t ember_tensor_stride(const ember_tensor *t, int i); /* in elements */
const int64_t *ember_tensor_shape(const ember_tensor *t);
int64_t ember_tensor_numel(const ember_tensor *t);
size_t ember_tensor_nbytes(const ember_tensor *t); /* numel * dtype size */
ember_device ember_tensor_device(const ember_tensor *t);
ember_tier ember_tensor_tier(const ember_tensor *t);
int ember_tensor_is_contiguous(const ember_tensor *t);
/** Address of element 0 (storage base + offset). Device memory for GPU tensors. */
void *ember_tensor_data(const ember_tensor *t);
/** Number of tensors sharing this tensor's storage (for tests and diagnostics). */
int ember_tensor_storage_refs(const ember_tensor *t);
/** Print "f32(2, 3) cpu" style descriptions into buf; returns buf. */
const char *ember_tensor_describe(const ember_tensor *t, char *buf, size_t n);

/* ---- views: share storage, never copy ---- */

/** Same elements, new shape (one dim may be -1). Needs a contiguous tensor. */
ember_status ember_tensor_reshape(const ember_tensor *t, int ndim, const int64_t *shape,
                                  ember_tensor **out);
/** Elements start..start+len-1 along dim. */
ember_status ember_tensor_narrow(const ember_tensor *t, int dim, int64_t start, int64_t len,
                                 ember_tensor **out);
/** Swap two dims. */
ember_status ember_tensor_transpose(const ember_tensor *t, int d0, int d1, ember_tensor **out);
/** Reorder dims: out dim i is input dim perm[i]. */
ember_status ember_tensor_permute(const ember_tensor *t, const int *perm, ember_tensor **out);
/** A second handle on the same view (caller destroys both). */
ember_status ember_tensor_retain(const ember_tensor *t, ember_tensor **out);

/* ---- kernels ---- */

/** Set every element to value (converted to the dtype; integers truncate). */
ember_status ember_tensor_fill(ember_tensor *t, double value);
/**
 * Copy src into dst: same shape and dtype, any devices and tiers, any strides.
 * Waits for completion when dst is on the host.
 */
ember_status ember_tensor_copy(ember_tensor *dst, const ember_tensor *src);
/** A new contiguous tensor with the contents of t, in the given tier of manager mm (NULL = t's). */
ember_status ember_tensor_clone(const ember_tensor *t, ember_tier tier, ember_memory *mm,
                                ember_tensor **out);
/** t itself (retained) when contiguous, otherwise a contiguous copy in t's tier. */
ember_status ember_tensor_contiguous(const ember_tensor *t, ember_tensor **out);
/** Convert dtype element-wise (same shape, same device, contiguous). */
ember_status ember_tensor_convert(ember_tensor *dst, const ember_tensor *src);

typedef enum ember_unary_op {
    EMBER_UNARY_NEG,
    EMBER_UNARY_ABS,
    EMBER_UNARY_SQUARE,
    EMBER_UNARY_SQRT,
    EMBER_UNARY_EXP,
    EMBER_UNARY_LOG,
    EMBER_UNARY_RELU,
    EMBER_UNARY_SIGMOID,
    EMBER_UNARY_TANH,
    EMBER_UNARY_LOG1P_RELU, /* log(1 + max(x, 0)): Criteo's dense transform */
    EMBER_UNARY_OP_COUNT
} ember_unary_op;

typedef enum ember_binary_op {
    EMBER_BINARY_ADD,
    EMBER_BINARY_SUB,
    EMBER_BINARY_MUL,
    EMBER_BINARY_DIV,
    EMBER_BINARY_MAX,
    EMBER_BINARY_MIN,
    EMBER_BINARY_OP_COUNT
} ember_binary_op;

typedef enum ember_reduce_op {
    EMBER_REDUCE_SUM,
    EMBER_REDUCE_MEAN,
    EMBER_REDUCE_MAX,
    EMBER_REDUCE_MIN,
    EMBER_REDUCE_SUMSQ,
    EMBER_REDUCE_OP_COUNT
} ember_reduce_op;

/** out = op(x); out may be x (in place). Float dtypes, equal shapes, same device. */
ember_status ember_unary(ember_unary_op op, ember_tensor *out, const ember_tensor *x);
/**
 * out = a op b. b's shape equals a's, or equals a trailing part of it (broadcast over the
 * leading dims, e.g. a bias row), or b has one element. out may alias a.
 */
ember_status ember_binary(ember_binary_op op, ember_tensor *out, const ember_tensor *a,
                          const ember_tensor *b);
/** out = alpha * x + beta (out may be x). */
ember_status ember_scale(ember_tensor *out, const ember_tensor *x, double alpha, double beta);
/** y += alpha * x. */
ember_status ember_axpy(ember_tensor *y, double alpha, const ember_tensor *x);

/**
 * Reduce over the last `axes` dims (0 = all dims): x (outer..., inner...) -> out (outer...).
 * out holds the outer elements (any shape with that count). Sums accumulate in double
 * on the CPU and in a fixed tree order on CUDA, so results are deterministic.
 */
ember_status ember_reduce(ember_reduce_op op, ember_tensor *out, const ember_tensor *x, int axes);
/** Reduce everything to one double on the host (waits). */
ember_status ember_reduce_all(ember_reduce_op op, const ember_tensor *x, double *result);

/**
 * c = alpha * op(a) @ op(b) + beta * c, f32, row-major 2-D tensors, op = transpose when
 * trans_* is non-zero. 3-D tensors are batched: (batch, m, k) @ (batch, k, n); a 2-D
 * operand is shared across the batch. b's or a's leading dim may be a view's stride.
 * @return EMBER_ERR_SHAPE for inner-dim mismatch (message names m, n, k).
 */
ember_status ember_gemm(int trans_a, int trans_b, float alpha, const ember_tensor *a,
                        const ember_tensor *b, float beta, ember_tensor *c);

/**
 * Precision of the products inside f32 GEMMs (ember_gemm, and so every matmul and
 * linear layer of a graph), for the whole process:
 *   EMBER_MATMUL_F32 (default): f32 products, the CPU and CUDA kernels agree to the
 *     last bits the DESIGN's reduction order allows.
 *   EMBER_MATMUL_BF16: the operands are rounded to bfloat16 (8-bit mantissa) and
 *     multiplied with f32 accumulation and f32 results: on CPUs with AMX or
 *     AVX512-BF16 through oneDNN (several times the f32 GEMM rate), on GPUs through
 *     cuBLAS's 32F_FAST_16BF compute type. Small products (under 2^22 multiply-adds)
 *     and short ones (a sum over fewer than 32 terms, under one AMX tile) stay f32.
 *     Results differ from f32 at about 2^-8 relative per product; use it for
 *     training throughput and check the model's quality (AUC) against f32.
 * Tensors, parameters and optimizer state stay f32 either way.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (unknown precision);
 *         EMBER_ERR_UNSUPPORTED for BF16 when this build has no oneDNN or this CPU has
 *         neither AMX nor AVX512-BF16 (the message says which; nothing changes).
 */
typedef enum ember_matmul_precision {
    EMBER_MATMUL_F32,
    EMBER_MATMUL_BF16,
    EMBER_MATMUL_PRECISION_COUNT
} ember_matmul_precision;

ember_status ember_set_matmul_precision(ember_matmul_precision p);
ember_matmul_precision ember_get_matmul_precision(void);
/** "f32", "bf16"; "?" for an unknown value. */
const char *ember_matmul_precision_name(ember_matmul_precision p);
/** Parse "f32" or "bf16". @return EMBER_OK or EMBER_ERR_INVALID_ARGUMENT naming the choices. */
ember_status ember_matmul_precision_parse(const char *s, ember_matmul_precision *out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_TENSOR_H */
