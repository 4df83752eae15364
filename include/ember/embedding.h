/*
 * ember/embedding.h: jagged batches, table-batched embedding bags and fused sparse
 * optimizers (DESIGN.md section 4).
 *
 * An embedding-bag collection (ember_ebc) holds several tables, each with its own row
 * count, dim, storage format (f32, f16, bf16, int8-rowwise) and pooling (sum, mean),
 * and one sparse optimizer for all of them. A batch is jagged: per table, `values`
 * (int64 ids), `offsets` (B + 1) and optional per-sample weights. Forward pools the
 * rows of every bag into one output row per sample, the tables side by side:
 * out (B, sum of dims), table t in columns [out_offset(t), out_offset(t) + dim(t)).
 * Backward takes dL/d(out), coalesces the row gradients by id (sorted, so the order
 * of every sum is fixed and results do not depend on the thread count) and applies
 * the optimizer to each touched row in place. No dense gradient is ever built.
 *
 *     ember_ebc *ebc;
 *     ember_ebc_create(&(ember_ebc_config){
 *         .num_tables = 2,
 *         .tables = (ember_ebc_table_config[]){{.name = "user", .rows = 1000000, .dim = 64},
 *                                              {.name = "item", .rows = 50000, .dim = 64,
 *                                               .pooling = EMBER_POOLING_MEAN}},
 *         .optim = {.type = EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD}}, &ebc);
 *     ember_rng rng = {.seed = 1};
 *     ember_ebc_init_uniform(ebc, &rng, -0.01f, 0.01f);
 *
 *     ember_jagged batch = {.batch = B, .num_features = 2,
 *                           .features = (ember_jagged_feature[]){
 *                               {.values = user_ids, .offsets = user_off, .length = n_user},
 *                               {.values = item_ids, .offsets = item_off, .length = n_item}}};
 *     ember_ebc_forward(ebc, &batch, out, NULL);            // out: f32 (B, 128)
 *     ...                                                    // dout = dL/d(out)
 *     ember_ebc_backward(ebc, &batch, dout, &(ember_ebc_call){.lr = 0.01f, .trusted = 1});
 *     ember_ebc_destroy(ebc);
 *
 * Row records. Each row is stored as one record `[weights | optimizer state]` so the
 * state travels with the row through every cache tier: the weights in the table's
 * format at offset 0, then the state as f32 at state_offset (SGD: none; Adagrad: dim;
 * rowwise Adagrad: 1; Adam and AdamW: 2 * dim, first moments then second moments),
 * padded to row_align bytes. ember_ebc_get_table_info gives the layout; the kernels take a
 * base pointer and a record stride, so they run on a cache's slot array (ids
 * remapped to slots, see ember_ebc_rows) as well as on the whole table. int8-rowwise
 * weights are [scale f32 | bias f32 | q u8 x dim], value = q * scale + bias.
 *
 * Optimizer semantics (torch.optim with sparse gradients, lazily: only rows present
 * in the batch change). Per row, g is the coalesced gradient; if max_grad_norm > 0
 * and |g| > max_grad_norm, g *= max_grad_norm / (|g| + 1e-6) (torch's
 * clip_grad_norm_ applied to the row); then with wd = weight_decay:
 *   SGD:              g += wd * w;  w -= lr * g
 *   Adagrad:          g += wd * w;  s += g^2;  w -= lr * g / (sqrt(s) + eps)
 *   rowwise Adagrad:  g += wd * w;  s += mean(g^2);  w -= lr * g / (sqrt(s) + eps)
 *   Adam:             g += wd * w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *                     w -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 *   AdamW:            w *= 1 - lr * wd; then Adam without the L2 term
 * where t is the optimizer step (ember_ebc_call.step). Rows not in the batch keep
 * their state (as torch.optim.SparseAdam); int8, f16 and bf16 rows are updated in
 * f32 and stored back rounded to nearest (int8: re-quantised over the new range).
 * The learning rate comes with every backward call, so a schedule of the dense
 * optimizer can drive it.
 *
 * Devices. A collection lives in one tier of one memory manager (tables are
 * EMBER_MEM_PARAMETER allocations): HOST for the CPU kernels, DEVICE of a CUDA
 * manager for the GPU kernels. A batch's arrays and the output/gradient tensors
 * must be on the collection's device. On CUDA, calls are queued on the calling
 * thread's current stream; validation (unless trusted) waits for its own small
 * result.
 *
 * Thread safety: on the CPU, forward calls may run concurrently with each other (they
 * only read rows); backward, init and row writes, and every call on a GPU collection
 * (they share its workspace), need the collection to themselves. Errors leave the
 * collection usable and unchanged: the batch is checked before any row is written.
 */
#ifndef EMBER_EMBEDDING_H
#define EMBER_EMBEDDING_H

#include <stddef.h>
#include <stdint.h>

#include "ember/memory.h"
#include "ember/rng.h"
#include "ember/status.h"
#include "ember/tensor.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- jagged batches ---- */

/** One table's part of a batch: the ids of bag b are values[offsets[b] .. offsets[b+1]). */
typedef struct ember_jagged_feature {
    const int64_t *values;  /* (length,) row ids */
    const int64_t *offsets; /* (B + 1,) non-decreasing, offsets[0] >= 0, offsets[B] <= length */
    const float *weights;   /* (length,) per-sample weights, or NULL (all 1); sum pooling only */
    int64_t length;         /* elements in values (and weights) */
} ember_jagged_feature;

/**
 * A batch over several tables (feature t goes to table t). The struct only points at
 * the caller's arrays, which must stay valid and unchanged during each call that
 * reads them. The arrays live on the device of the collection they are used with
 * (host memory for the CPU).
 */
typedef struct ember_jagged {
    int64_t batch;                        /* B: bags per feature (samples), >= 0 */
    int num_features;                     /* = the collection's table count */
    const ember_jagged_feature *features; /* (num_features,) */
} ember_jagged;

/**
 * Check a batch on the host: offsets non-decreasing and within values, and every id
 * of table t in [0, rows[t]). rows NULL checks ids >= 0 only. On failure the message
 * names the table (feature), the sample and the position in values:
 *   "EMBER_ERR_INDEX: ember_jagged_validate: table 1, sample 17, position 1093:
 *    id 5000000 is outside [0, 4000000)"
 * @return EMBER_OK, EMBER_ERR_INDEX (bad offsets or ids), EMBER_ERR_INVALID_ARGUMENT
 *         (NULL arrays, negative batch or length).
 */
ember_status ember_jagged_validate(const ember_jagged *batch, const int64_t *rows);

/* ---- collections ---- */

typedef enum ember_row_format {
    EMBER_ROW_FORMAT_F32,
    EMBER_ROW_FORMAT_F16,
    EMBER_ROW_FORMAT_BF16,
    EMBER_ROW_FORMAT_INT8_ROWWISE, /* u8 codes with a per-row f32 scale and bias */
    EMBER_ROW_FORMAT_COUNT
} ember_row_format;

typedef enum ember_pooling {
    EMBER_POOLING_SUM,
    EMBER_POOLING_MEAN, /* an empty bag gives zeros */
    EMBER_POOLING_COUNT
} ember_pooling;

typedef enum ember_sparse_optim {
    EMBER_SPARSE_OPTIM_SGD,
    EMBER_SPARSE_OPTIM_ADAGRAD,
    EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD,
    EMBER_SPARSE_OPTIM_ADAM,
    EMBER_SPARSE_OPTIM_ADAMW,
    EMBER_SPARSE_OPTIM_COUNT
} ember_sparse_optim;

/** GPU kernels for a CUDA collection. */
typedef enum ember_ebc_cuda_kernel {
    EMBER_EBC_CUDA_AUTO,     /* the faster per shape (currently WARP everywhere) */
    EMBER_EBC_CUDA_WARP,     /* a warp or sub-warp per bag; sort-based fused backward */
    EMBER_EBC_CUDA_CUSPARSE, /* batch as a CSR matrix: SpMM forward and backward (f32 rows) */
    EMBER_EBC_CUDA_KERNEL_COUNT
} ember_ebc_cuda_kernel;

typedef struct ember_ebc_table_config {
    const char *name;        /* for messages (copied); NULL: "table <i>" */
    int64_t rows;            /* > 0 */
    int dim;                 /* > 0 */
    ember_row_format format; /* default F32 */
    ember_pooling pooling;   /* default SUM */
} ember_ebc_table_config;

/** Zero fields take the defaults named here (torch.optim's). */
typedef struct ember_sparse_optim_config {
    ember_sparse_optim type;   /* default SGD */
    float eps;                 /* 0: 1e-10 (Adagrad, rowwise Adagrad), 1e-8 (Adam, AdamW) */
    float beta1, beta2;        /* Adam, AdamW; 0: 0.9 and 0.999 (for a beta of 0, pass
                                  a denormal such as 1e-40f) */
    float weight_decay;        /* >= 0; L2 on the gradient (AdamW: decoupled) */
    float initial_accumulator; /* >= 0; Adagrad and rowwise Adagrad state at creation */
    float max_grad_norm;       /* > 0: clip each coalesced row gradient to this L2 norm */
} ember_sparse_optim_config;

typedef struct ember_ebc_config {
    int num_tables;                       /* >= 1 */
    const ember_ebc_table_config *tables; /* (num_tables,) */
    ember_sparse_optim_config optim;      /* one optimizer for all tables */
    ember_memory *mm;                     /* NULL: ember_memory_default() */
    ember_tier tier;                      /* HOST (default) or DEVICE (the mm's device) */
    size_t row_align;                     /* record alignment, power of two >= 4; 0: 16 */
    ember_ebc_cuda_kernel cuda_kernel;    /* GPU collections only */
} ember_ebc_config;

typedef struct ember_ebc ember_ebc;

/**
 * Create a collection: one EMBER_MEM_PARAMETER allocation per table in cfg->tier of
 * cfg->mm, every weight 0 and every state at its initial value (0, or
 * initial_accumulator for the Adagrads). The table names are copied.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (bad counts, dims, rows, formats,
 *         pooling, optimizer or hyper-parameters; message names the table and field);
 *         EMBER_ERR_OVERFLOW (a table's byte size does not fit);
 *         EMBER_ERR_OUT_OF_MEMORY (budget); EMBER_ERR_UNSUPPORTED (the DEVICE tier of a
 *         CUDA manager in a build without CUDA, or cuda_kernel CUSPARSE without cuSPARSE).
 */
ember_status ember_ebc_create(const ember_ebc_config *cfg, ember_ebc **out);
/** Free the tables, workspaces and the collection. NULL is a no-op. */
void ember_ebc_destroy(ember_ebc *ebc);

int ember_ebc_num_tables(const ember_ebc *ebc);
/** Sum of the tables' dims: the output's second dimension. */
int64_t ember_ebc_output_dim(const ember_ebc *ebc);
/** Where the rows live and the kernels run. */
ember_device ember_ebc_device(const ember_ebc *ebc);
/** The optimizer configuration with defaults filled in. */
ember_sparse_optim_config ember_ebc_optim(const ember_ebc *ebc);

/** One table's configuration and record layout. */
typedef struct ember_ebc_table_info {
    const char *name; /* valid for the life of the collection */
    int64_t rows;
    int dim;
    ember_row_format format;
    ember_pooling pooling;
    int64_t out_offset;  /* first output column of this table */
    size_t weight_bytes; /* bytes of the weights at the start of a record */
    size_t state_offset; /* byte offset of the f32 optimizer state in a record */
    int state_floats;    /* f32 state values per row (0 for SGD) */
    size_t record_bytes; /* bytes per row record: the stride of the table */
    void *data;          /* record of row 0 (device memory for a GPU collection); NULL from
                            ember_ebc_record_layout */
} ember_ebc_table_info;

/**
 * The layout a table would get, without creating anything (for planning caches).
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_ebc_record_layout(const ember_ebc_table_config *table,
                                     const ember_sparse_optim_config *optim, size_t row_align,
                                     ember_ebc_table_info *out);
/** @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT (NULL), EMBER_ERR_INDEX (table). */
ember_status ember_ebc_get_table_info(const ember_ebc *ebc, int table, ember_ebc_table_info *out);

/* ---- rows in f32, for initialisation, tests and checkpoints ---- */

/**
 * Weights of rows [first, first + count) of a table to/from host f32 arrays
 * (count, dim), converting from/to the table's format (int8-rowwise rows are
 * quantised per row on write). GPU collections copy through host staging memory
 * and wait. State is left alone by write_rows.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_INDEX (table or row range),
 *         EMBER_ERR_OUT_OF_MEMORY (staging), EMBER_ERR_CUDA.
 */
ember_status ember_ebc_write_rows(ember_ebc *ebc, int table, int64_t first, int64_t count,
                                  const float *src);
ember_status ember_ebc_read_rows(const ember_ebc *ebc, int table, int64_t first, int64_t count,
                                 float *dst);
/** Optimizer state of rows [first, first + count) as (count, state_floats) f32. */
ember_status ember_ebc_read_state(const ember_ebc *ebc, int table, int64_t first, int64_t count,
                                  float *dst);
ember_status ember_ebc_write_state(ember_ebc *ebc, int table, int64_t first, int64_t count,
                                   const float *src);

/**
 * Every weight of every table uniform in [lo, hi) from the Philox stream of rng
 * (table by table, row-major over (rows, dim); advances rng->offset by the total
 * count), and every state back to its initial value. The same seed gives the same
 * tables on every device.
 */
ember_status ember_ebc_init_uniform(ember_ebc *ebc, ember_rng *rng, float lo, float hi);

/* ---- forward and backward ---- */

/**
 * Where a table's row records live for one call, instead of the table's own storage:
 * the record of id i at base + i * stride (for a cache: slot i of its slot array,
 * with the batch's ids remapped to slots). The records have the table's layout.
 */
typedef struct ember_ebc_rows {
    void *base;    /* on the collection's device */
    int64_t count; /* ids must be in [0, count) */
    size_t stride; /* bytes between records; 0: the table's record_bytes */
} ember_ebc_rows;

/** Per-call options. NULL (forward) means all defaults. */
typedef struct ember_ebc_call {
    float lr;                   /* backward: learning rate of this step (>= 0) */
    int64_t step;               /* backward: 1-based step t for Adam's bias correction;
                                   0: the collection counts its backward calls */
    const ember_ebc_rows *rows; /* (num_tables,) or NULL: the tables' own storage */
    int trusted;                /* non-zero: the batch was validated (skip the id scan) */
} ember_ebc_call;

/**
 * out = pooled rows: f32 (B, output_dim) on the collection's device; its rows may be
 * strided (a column slice of a wider buffer) but each row must be contiguous.
 * Validates the batch first unless call->trusted (see ember_jagged_validate).
 * @return EMBER_OK; EMBER_ERR_INDEX (batch, naming table, sample, position);
 *         EMBER_ERR_SHAPE (out's shape, or the feature count);
 *         EMBER_ERR_DTYPE (out not f32); EMBER_ERR_DEVICE; EMBER_ERR_STATE (out's last
 *         dim strided); EMBER_ERR_INVALID_ARGUMENT (weights with mean pooling, NULLs);
 *         EMBER_ERR_CUDA / EMBER_ERR_CUSPARSE on a GPU.
 */
ember_status ember_ebc_forward(ember_ebc *ebc, const ember_jagged *batch, ember_tensor *out,
                               const ember_ebc_call *call);

/**
 * Apply the fused optimizer for grad_out = dL/d(out) of the forward over the same
 * batch: f32 (B, output_dim), rows may be strided. call is required (it carries lr).
 * Per-sample weights get no gradient. Deterministic: the same inputs give the same
 * bits whatever the thread count.
 * @return as ember_ebc_forward, plus EMBER_ERR_OUT_OF_MEMORY (workspace, which is
 *         kept for the next call and counted as EMBER_MEM_GRADIENT).
 */
ember_status ember_ebc_backward(ember_ebc *ebc, const ember_jagged *batch,
                                const ember_tensor *grad_out, const ember_ebc_call *call);

/** "f32", "f16", "bf16", "int8_rowwise"; "invalid" otherwise. */
const char *ember_row_format_name(ember_row_format f);
/** "sgd", "adagrad", "rowwise_adagrad", "adam", "adamw"; "invalid" otherwise. */
const char *ember_sparse_optim_name(ember_sparse_optim o);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_EMBEDDING_H */
