/*
 * ember/partition.h: sharding plans for embedding tables across devices (DESIGN.md
 * section 4, "Frequency-aware sharding", stage 1).
 *
 * A plan says, for every (table, id), which rank holds the row and at which local row
 * of that rank's shard of the table, and predicts what the split costs: lookups served
 * per device (the load), memory per device and bytes communicated per step. Four kinds:
 *
 *   TABLEWISE   whole tables, greedily (largest lookup count first) to the least
 *               loaded device that has room;
 *   ROWWISE     each table's ids cut into world equal ranges, range d on rank d;
 *   COLUMNWISE  each table's dimension cut into min(world, dim) slices, one per rank;
 *   MINIMAX     frequency-aware: the hot head (rows, or blocks of block_rows rows, in
 *               decreasing count) goes one block at a time to the device with the
 *               lowest summed count that still has memory (greedy LPT); hot blocks of
 *               small tables are replicated on every rank when that lowers the maximum
 *               (a replicated row's lookups are served by the rank that asks, so its
 *               count splits evenly, and its bytes are charged to every rank); the rest
 *               of each table (the cold tail: rows never counted or too rare to matter)
 *               is cut into contiguous id ranges that balance memory. The head grows
 *               (4x a round) until max/mean load <= target_imbalance or max_hot_blocks.
 *
 *     ember_plan *plan;
 *     ember_status st = ember_plan_build(&(ember_plan_params){
 *         .kind = EMBER_PLAN_MINIMAX, .world = 8, .device_mem = (size_t)2 << 30,
 *         .num_tables = 26, .tables = tables,       // rows, dim, row_bytes per table
 *         .freq = counts},                         // ember_freq of the training days
 *         &plan);
 *     int rank; int64_t row;
 *     ember_plan_locate(plan, 3, id, &rank, &row);  // O(1): hash probe, else a range
 *     ember_plan_stats s;
 *     ember_plan_get_stats(plan, 2048, &s, NULL);  // s.imbalance = max/mean lookups
 *     ember_plan_save(plan, "ckpt/plan.bin");
 *     ember_plan_destroy(plan);
 *
 * The id -> (rank, local row) map. MINIMAX and ROWWISE tables: an open-addressing hash
 * (linear probing, load <= 1/2, 16 bytes a slot) of the hot and replicated blocks, and
 * world + 1 range bounds for the rest; a lookup is one hash probe (expected O(1)) and,
 * on a miss, a binary search over the world + 1 bounds. Rank r's shard of table t is laid
 * out as [replicated blocks | hot blocks owned by r, hottest first | cold range of r].
 * The cold range covers its ids contiguously, so a hot block whose ids fall inside some
 * rank's cold range leaves an unused slot there (a "hole", counted in hole_rows); the
 * head is kept small (it only grows while it improves the balance), so holes are a
 * small share of the rows. TABLEWISE: the owner, local row = id. COLUMNWISE: every
 * rank with a slice, local row = id, columns [col_begin, col_end) of the row.
 *
 * Load. The lookups of a device are the counted lookups of the rows it owns plus
 * count / world of every replicated row; a column slice of width w serves its table's
 * lookups times w / dim (it moves that share of each row). Imbalance = max / mean load.
 * Tables without counts carry no load (give counts: ember_freq or ids/counts arrays).
 *
 * Communication model (ember_plan_get_stats; bytes sent + received by a device in one
 * training step, forward and backward, for a per-rank batch of B samples). Embedding
 * bags are pooled on the owner before communication (DESIGN.md section 4). For table t
 * with dim D, pooling L (mean ids per sample), world P, let s_d be the share of t's
 * lookups that rank d serves from rows it owns, r the replicated share and
 * q_d = 1 - (1 - s_d)^L the chance that a bag touches rank d's rows. Then rank d:
 *   ids (int64)    sends B L (1 - r - s_d) 8 (its samples' ids owned elsewhere),
 *                  receives (P - 1) B L s_d 8 (the other ranks' ids that it owns);
 *   pooled (f32)   sends (P - 1) B q_d D 4 partial sums, receives B sum_{e != d} q_e D 4,
 *                  and the backward pass moves the same gradients the other way (x2);
 *   replicated     ring all-reduce of the replicated rows' gradients:
 *                  4 (P - 1) / P * rows D 4 (sent + received);
 * a column slice of width w: ids sent to every other slice holder, received from every
 * other rank if it holds a slice; pooled: sends (P - 1) B w 4, receives B (D - w) 4,
 * x2 for backward. When a table has no counts, s_d is its share of the table's rows.
 * Dense-layer all-reduce is the same for every plan and left out.
 *
 * File format (ember_plan_save / ember_plan_encode): little-endian binary, magic
 * "EMBRPLAN", version EMBER_PLAN_VERSION, the plan's structure (tables, ranges, hot
 * block lists; the hash is rebuilt on load) and the per-(table, device) loads, then an
 * FNV-1a 64 checksum of everything before it. Loading checks every field (ranges,
 * ranks, duplicate blocks, sizes against the input length) before it trusts it.
 *
 * Memory: plans and their working arrays come from the memory manager given (NULL =
 * ember_memory_default()), tier HOST, kind OTHER. Thread safety: a built plan is
 * read-only; any number of threads may locate and get stats at once.
 */
#ifndef EMBER_PARTITION_H
#define EMBER_PARTITION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ember/datasets.h"
#include "ember/embedding.h"
#include "ember/memory.h"
#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Rank value of a row that every rank holds (replicated row, or column slices). */
#define EMBER_PLAN_EVERY_RANK (-1)
/** Most ranks a plan can have. */
#define EMBER_PLAN_MAX_WORLD 32768
/** File format version written by ember_plan_save / ember_plan_encode. */
#define EMBER_PLAN_VERSION 1

typedef enum ember_plan_kind {
    EMBER_PLAN_TABLEWISE,
    EMBER_PLAN_ROWWISE,
    EMBER_PLAN_COLUMNWISE,
    EMBER_PLAN_MINIMAX,
    EMBER_PLAN_KIND_COUNT
} ember_plan_kind;

/** "tablewise", "rowwise", "columnwise", "minimax"; "unknown" otherwise. */
const char *ember_plan_kind_name(ember_plan_kind k);
/** The kind of a name above. @return EMBER_OK or EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_plan_kind_parse(const char *name, ember_plan_kind *out);

typedef enum ember_plan_replicate {
    EMBER_PLAN_REPLICATE_AUTO,  /* replicate hot blocks when that lowers the maximum load */
    EMBER_PLAN_REPLICATE_NEVER,
    EMBER_PLAN_REPLICATE_COUNT
} ember_plan_replicate;

typedef enum ember_plan_budget {
    EMBER_PLAN_BUDGET_STRICT, /* a plan over a device's budget fails: EMBER_ERR_OUT_OF_MEMORY */
    EMBER_PLAN_BUDGET_REPORT, /* build it anyway (greedy steps take the least loaded device
                                 when none has room) and report it: stats.fits = 0 */
    EMBER_PLAN_BUDGET_COUNT
} ember_plan_budget;

/** One embedding table to place. */
typedef struct ember_plan_table {
    const char *name;   /* for messages and text output (copied, 31 bytes kept); NULL: "t<i>" */
    int64_t rows;       /* ids 0 .. rows - 1; 1 .. 2^48 */
    int dim;            /* 1 .. 2^20 */
    int64_t row_bytes;  /* bytes of one row on a device, weights + optimizer state
                           (ember_ebc_record_layout's record_bytes); 0 = dim * 4 */
    double pooling;     /* mean ids per sample, for the communication model; 0 = 1 */
    /* Lookup counts: num_counted (id, count) pairs, ids in [0, rows) (repeats are
     * summed). NULL ids: taken from params.freq (table i) when set, else no counts. */
    const int64_t *ids;
    const uint64_t *counts;
    int64_t num_counted;
} ember_plan_table;

typedef struct ember_plan_params {
    ember_plan_kind kind;
    int world;                  /* ranks, 1 .. EMBER_PLAN_MAX_WORLD */
    size_t device_mem;          /* bytes per device for the tables; 0 = unlimited */
    const size_t *device_bytes; /* (world) per-device budgets instead (0 = unlimited); may be NULL */
    int num_tables;             /* >= 1 */
    const ember_plan_table *tables;
    const ember_freq *freq;     /* counts of the tables whose ids are NULL (its table i = table i) */
    int64_t block_rows;         /* MINIMAX: rows per block placed as one (1 .. 2^20); 0 = 1 */
    ember_plan_replicate replicate;
    size_t replicate_max_bytes; /* replicated bytes per device at most; 0 = 1/16 of the smallest
                                   budget (64 MiB when unlimited). Only blocks of tables that fit
                                   in it whole, or blocks whose count alone exceeds a device's
                                   mean load, are replicated. */
    int64_t max_hot_blocks;     /* MINIMAX: hash entries at most (the head); 0 = 1 << 22 */
    double target_imbalance;    /* MINIMAX: stop growing the head at this max/mean; 0 = 1.01 */
    ember_plan_budget budget;
    ember_memory *mm;           /* NULL = ember_memory_default() */
} ember_plan_params;

typedef struct ember_plan ember_plan;

/**
 * Build a plan. Counts are read, not kept: the plan stores only the loads they imply.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (bad params; the message names the table
 *         and field); EMBER_ERR_INDEX (a counted id outside its table's rows);
 *         EMBER_ERR_OUT_OF_MEMORY (STRICT budgets that the plan cannot meet, naming the
 *         device and bytes; or the memory manager refused); EMBER_ERR_OVERFLOW.
 */
ember_status ember_plan_build(const ember_plan_params *p, ember_plan **out);
/** Free a plan. NULL is a no-op. */
void ember_plan_destroy(ember_plan *plan);

ember_plan_kind ember_plan_get_kind(const ember_plan *plan);
int ember_plan_world(const ember_plan *plan);
int ember_plan_num_tables(const ember_plan *plan);

/**
 * Where row id of a table lives: *rank (or EMBER_PLAN_EVERY_RANK for a replicated row
 * or a column-sliced table) and the row's index in that rank's shard of the table.
 * @return EMBER_OK; EMBER_ERR_INDEX (table or id out of range); EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_plan_locate(const ember_plan *plan, int table, int64_t id, int *rank, int64_t *local_row);
/** The same for n ids (no per-id status: the first bad id fails the call, naming its position). */
ember_status ember_plan_locate_many(const ember_plan *plan, int table, const int64_t *ids, int64_t n, int *ranks,
                                    int64_t *local_rows);

/** What a rank holds of a table. */
typedef struct ember_plan_shard {
    int64_t local_rows;      /* row slots of the shard (holes included); 0: nothing held */
    int col_begin, col_end;  /* columns held, [col_begin, col_end); the whole row except COLUMNWISE */
    int64_t replicated_rows; /* local rows [0, replicated_rows) are the replicated rows */
    int64_t hot_rows;        /* then the owned hot rows */
    int64_t cold_begin, cold_end; /* then ids [cold_begin, cold_end) (MINIMAX and ROWWISE) */
    int64_t hole_rows;       /* slots of the cold range whose ids are hot elsewhere */
    int64_t bytes;           /* memory of the shard */
    double lookups;          /* load the shard serves (see the header) */
} ember_plan_shard;

/** @return EMBER_OK, EMBER_ERR_INDEX, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_plan_get_shard(const ember_plan *plan, int table, int rank, ember_plan_shard *out);

/** Per device, over all tables. */
typedef struct ember_plan_device_stats {
    double lookups;          /* load served (see the header) */
    int64_t rows;            /* row slots held, all tables (holes included) */
    int64_t bytes;           /* memory of those rows */
    size_t budget;           /* 0 = unlimited */
    int64_t replicated_rows, hot_rows, hole_rows;
    double comm_bytes;       /* predicted bytes sent + received per step (see the header) */
} ember_plan_device_stats;

typedef struct ember_plan_stats {
    ember_plan_kind kind;
    int world, num_tables;
    int64_t block_rows;
    double total_lookups;    /* counted lookups over all tables */
    double max_lookups, mean_lookups, imbalance; /* imbalance = max / mean (1 without lookups) */
    int64_t max_bytes, total_bytes;
    double max_comm_bytes, mean_comm_bytes;
    int64_t hot_blocks, replicated_blocks, hole_rows;
    size_t map_bytes;        /* bytes of the id -> owner map (hashes and bounds), held by every rank */
    int fits;                /* 1 when every device is within its budget */
    int over_budget;         /* devices over their budget */
} ember_plan_stats;

/**
 * Summary of a plan; with devices (world entries) also per device.
 * @param batch_size per-rank samples per step for the communication model (> 0).
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_plan_get_stats(const ember_plan *plan, int64_t batch_size, ember_plan_stats *out,
                                  ember_plan_device_stats *devices);

/**
 * A readable description: the summary, one line per device and one per table (owner,
 * column slice or ranges and hot/replicated counts). For logs and `ember plan`.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_IO (write failed).
 */
ember_status ember_plan_write_text(const ember_plan *plan, int64_t batch_size, FILE *f);

/**
 * Serialise into buf (cap bytes). *size gets the bytes needed; with buf NULL only the
 * size is computed. @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT (cap < *size).
 */
ember_status ember_plan_encode(const ember_plan *plan, void *buf, size_t cap, size_t *size);
/**
 * Read a plan back from size bytes (nothing is kept of buf).
 * @return EMBER_OK; EMBER_ERR_FORMAT (magic, version, truncated, a field out of range,
 *         naming the field and byte offset); EMBER_ERR_CHECKSUM; EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_plan_decode(const void *buf, size_t size, ember_memory *mm, ember_plan **out);
/** Write to a temporary name beside path, then rename. @return EMBER_OK, EMBER_ERR_IO. */
ember_status ember_plan_save(const ember_plan *plan, const char *path);
/** @return EMBER_OK, EMBER_ERR_IO, the errors of ember_plan_decode. */
ember_status ember_plan_load(const char *path, ember_memory *mm, ember_plan **out);

/* ======================================================================== */
/* Stage 2: precision tiers on one device                                    */
/* ======================================================================== */
/*
 * A device's rows, ordered by decreasing count, are split into a hot prefix kept in
 * f32, a warm middle stored f16 and a cold rest stored int8-rowwise (the formats and
 * layouts of ember_row_format: int8 rows are [scale f32 | bias f32 | q u8 x dim],
 * value = q * scale + bias); the optimizer state stays f32 in every tier. The split
 * minimises the expected rounding error per lookup under the byte budget: a lookup of
 * an f16 row errs by about 2^-11 of its value, of an int8 row by about 1/510 of the
 * row's range, so upgrading int8 -> f16 buys ~6x more accuracy per byte than f16 -> f32
 * at the same count; the greedy takes the better upgrade per byte, row by row. (When
 * the state is compressed with its row, state_bytes_f16 and state_bytes_int8 give its
 * size in those tiers.)
 *
 * Compression rounds to nearest (even) or stochastically: x goes to its upper
 * neighbour with probability (x - lo) / (hi - lo), so E[compressed] = x and small
 * updates are not lost when a row is recompressed after every write-back. The random
 * numbers are Philox words (include/ember/rng.h): element j of row r uses word
 * offset + r * dim + j of seed, so any thread split, rank or a GPU gives the same bits.
 *
 *     ember_tier_split s;
 *     ember_tiers_split(&(ember_tier_params){.rows = n, .counts = sorted_counts, .dim = 128,
 *                                            .state_bytes = 4, .budget = 1 << 30}, &s);
 *     ember_rows_compress(&(ember_compress_params){.format = EMBER_ROW_FORMAT_F16, .dim = 128,
 *                                                  .stochastic = 1, .seed = 7, .offset = step * n * 128},
 *                         w + s.hot_rows * 128, s.warm_rows, warm_store);
 */

typedef struct ember_tier_params {
    int64_t rows;            /* rows of the shard, > 0 */
    const uint64_t *counts;  /* (rows) lookup counts in non-increasing order; NULL = all equal */
    int dim;                 /* 1 .. 2^20 */
    int64_t state_bytes;     /* optimizer state bytes per row (f32 in every tier), >= 0 */
    size_t budget;           /* bytes for the rows (weights + state), unpadded */
    /* State bytes of an f16 and of an int8 row when the state is compressed with the
       weights (the cache's tiered store); 0: state_bytes (the state stays f32). */
    int64_t state_bytes_f16, state_bytes_int8;
} ember_tier_params;

typedef struct ember_tier_split {
    int64_t hot_rows;        /* rows [0, hot_rows): f32 */
    int64_t warm_rows;       /* rows [hot_rows, hot_rows + warm_rows): f16 */
    int64_t cold_rows;       /* the rest: int8-rowwise */
    int64_t bytes;           /* bytes of this split, <= budget */
    double error;            /* expected relative rounding error per lookup (the model above) */
} ember_tier_split;

/**
 * Choose the tiers of a device's rows under a byte budget.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (bad params, counts not sorted);
 *         EMBER_ERR_OUT_OF_MEMORY (the budget holds fewer bytes than every row int8).
 */
ember_status ember_tiers_split(const ember_tier_params *p, ember_tier_split *out);

/** Bytes of one row's weights in a format: dim * 4, dim * 2 (f16, bf16), 8 + dim (int8). */
size_t ember_row_format_bytes(ember_row_format format, int dim);

typedef struct ember_compress_params {
    ember_row_format format; /* F32 (a copy), F16, BF16, INT8_ROWWISE */
    int dim;                 /* 1 .. 2^20 */
    int stochastic;          /* 0: round to nearest even; 1: unbiased stochastic rounding */
    uint64_t seed;           /* Philox key */
    uint64_t offset;         /* word of row 0, element 0 */
} ember_compress_params;

/**
 * Compress rows of f32 weights (rows, dim) into dst (rows * ember_row_format_bytes).
 * Finite values beyond the largest finite f16 (+-65504) or bf16 saturate there, with
 * either rounding; NaN stays NaN.
 * Error bounds, per element: f16/bf16 nearest <= half a unit in the last place of the
 * result, stochastic < one unit; int8 nearest <= scale / 2, stochastic < scale, where
 * scale = (row max - row min) / 255 (a constant row is exact).
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_rows_compress(const ember_compress_params *p, const float *src, int64_t rows, void *dst);
/** Back to f32 (rows, dim). @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_rows_decompress(const ember_compress_params *p, const void *src, int64_t rows, float *dst);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_PARTITION_H */
