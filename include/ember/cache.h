/*
 * ember/cache.h: the block-wise embedding cache (DESIGN.md section 5). Train tables
 * far larger than device memory, and with the LMDB store larger than host memory, at
 * close to the speed of a fully resident table.
 *
 * Tiers, fastest first:
 *   device cache  slots in the DEVICE tier of a memory manager (GPU memory, or a DRAM
 *                 budget when the manager's device is the CPU);
 *   host store    the whole table in DRAM (EMBER_CACHE_STORE_HOST), or a DRAM cache of
 *                 host_ratio of the rows in front of disk (EMBER_CACHE_STORE_LMDB);
 *   LMDB store    one LMDB environment per model; key (table, row) as 4 + 8 bytes
 *                 big-endian, value the row record.
 * A row moves between tiers as its record `[weights | optimizer state]` (see
 * ember/embedding.h), so every sparse optimizer trains through the cache exactly as
 * on a resident table: bit for bit on the CPU, at any cache size and policy (a store
 * with precision tiers, below, rounds its compressed rows by design).
 *
 * A training step hands the cache a batch; ember_cache_next returns it prepared: its
 * unique ids were looked up (hits, misses), victims chosen by the policy (never rows
 * of the batches in flight or submitted ahead), dirty victims gathered into one
 * staging block and written down in one transfer (one LMDB transaction), the missing
 * rows read up in one block and copied in one transfer, and the ids remapped to slots.
 * The embedding kernels then run on the slot array:
 *
 *     ember_cache *c;
 *     ember_cache_create(&(ember_cache_config){
 *         .collection = {.num_tables = 2, .tables = tables,
 *                        .optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}},
 *         .mm = mm, .ratio = 0.02, .lookahead = 1}, &c);
 *     ember_rng rng = {.seed = 1};
 *     ember_cache_init_uniform(c, &rng, -0.01f, 0.01f);
 *     ember_cache_submit(c, &batch[0]);               // prime the look-ahead
 *     for (int k = 0; k < steps; k++) {
 *         if (k + 1 < steps) ember_cache_submit(c, &batch[k + 1]); // prepared while k runs
 *         ember_cache_batch *b;
 *         ember_cache_next(c, &b);                     // batch k, ids remapped to slots
 *         ember_cache_forward(c, b, out);
 *         ...                                          // dout = dL/d(out)
 *         ember_cache_backward(c, b, dout, &(ember_ebc_call){.lr = 0.01f});
 *         ember_cache_release(c, b, 1);                // its rows are now dirty
 *     }
 *     ember_cache_checkpoint(c, steps);                // LMDB: durable, records the step
 *     ember_cache_destroy(c);
 *
 * Pipelining. A background thread prepares up to `lookahead` batches beyond the one
 * being computed (LMDB reads, writes and the host-to-device copies included), so the
 * step never waits for a transfer that could have started one batch earlier. Every
 * store operation runs on that thread, in submission order. With lookahead 0 the
 * batch is prepared when ember_cache_next asks for it. On CUDA the copies go on the
 * cache's own stream: ember_cache_next makes the caller's current stream wait for the
 * batch's copies, and ember_cache_release records the caller's stream so no slot is
 * overwritten before the kernels that read it have finished. Staging blocks in the
 * PINNED tier are double-buffered.
 *
 * Capacity. A table's slots must hold the unique ids of one batch; with look-ahead,
 * the batches in flight (the one computing and those prepared ahead) are resident
 * together, and a prepare that does not fit waits for the earlier ones to be
 * released. A batch that cannot fit even alone fails with EMBER_ERR_OUT_OF_MEMORY
 * naming the table and the number of slots it needs. A table whose slots hold all its
 * rows (slots == rows: small tables, or ratio 1) is mapped 1:1, row i in slot i: it
 * loads each row once, never evicts, and costs a byte of state per lookup.
 *
 * Durability (LMDB store). Everything written to the store between two checkpoints
 * stays in one open LMDB write transaction; ember_cache_checkpoint writes every dirty
 * row down, records the step and commits with a durable sync. A process killed at
 * any moment (kill -9) leaves the store at its last checkpoint, intact. Destroying a
 * cache without a checkpoint discards the updates since the last one, as a crash
 * would. Rows never written are generated on first read from the initialiser
 * (ember_cache_init_uniform: the same values ember_ebc_init_uniform gives), so a new
 * store of any size opens in constant time.
 *
 * Precision tiers (host store only; DESIGN.md section 4, stage 2). With .tiers set, the
 * host store keeps each row of an f32 table in one of three tiers: HOT rows as f32
 * records, WARM rows with f16 weights, COLD rows with int8-rowwise weights ([scale f32 |
 * bias f32 | q u8 x dim]; f16 when dim <= 8, where int8 would be no smaller). The
 * optimizer state goes with its row: Adagrad's accumulators f16 (WARM) and int8-rowwise,
 * one scale and bias per vector (COLD; f16 for 8 floats or fewer, as rowwise Adagrad's
 * one value), which is safe because an Adagrad step is at most lr whatever the stored
 * accumulator; Adam's m and v bf16 in both (a v rounded to 0 by int8 or f16 underflow
 * would make m / eps a step of thousands; bf16 keeps f32's range). Which rows go where
 * is given per row (maps), or chosen from frequency counts:
 * the hottest fractions of each table's rows (hot, warm), or the split that
 * ember_tiers_split (ember/partition.h) makes under a byte budget. The device slots
 * always hold f32 records: a row is expanded when it is loaded and recompressed when
 * a dirty row is written back, by stochastic rounding (unbiased: small updates are not
 * lost) or round to nearest. The random numbers are Philox words of tiers.seed at an
 * offset hashed from (table, row, the record's bits), so the store's contents are a
 * function of what is written, never of when or how often: runs with the same seed
 * and the same schedule give the same bits. (The schedule of evictions is fixed with
 * lookahead 0; with look-ahead, whether a row is evicted between two uses may depend
 * on thread timing, and a compressed row that makes the round trip is rounded.)
 * Hot rows are exact; to keep them in the device cache, warm it with their counts and
 * use the STATIC policy (ember_cache_warmup_counts). Tables in another format (f16,
 * bf16, int8) are left as they are (all hot). ember_cache_stats reports the store's
 * bytes per tier beside what the same rows take as f32 records:
 *
 *     ember_cache_create(&(ember_cache_config){
 *         .collection = ..., .ratio = 0.05, .policy = EMBER_CACHE_POLICY_STATIC,
 *         .tiers = &(ember_cache_tiers){.counts = freq, .hot = 0.02, .warm = 0.10,
 *                                       .seed = 7}}, &c);
 *
 * Threads. One thread drives a cache (submit, next, release and the other calls);
 * the cache's own worker thread does the rest. Calls that read or write rows, flush
 * or checkpoint need no batch handed out (call them between release and next);
 * ember_cache_init_uniform and ember_cache_warmup need no batch outstanding at all.
 * Statistics may be read from any thread.
 */
#ifndef EMBER_CACHE_H
#define EMBER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "ember/embedding.h"
#include "ember/memory.h"
#include "ember/rng.h"
#include "ember/status.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ember_cache_policy {
    EMBER_CACHE_POLICY_LFU,    /* lookups counted per row, halved every aging_interval
                                  batches; ties go to the least recently used (default) */
    EMBER_CACHE_POLICY_LRU,    /* least recently used */
    EMBER_CACHE_POLICY_STATIC, /* static frequency ranking from ember_cache_warmup counts
                                  (rows without a count rank 0); ties: LRU */
    EMBER_CACHE_POLICY_COUNT
} ember_cache_policy;

typedef enum ember_cache_store {
    EMBER_CACHE_STORE_HOST, /* the whole table in DRAM (default) */
    EMBER_CACHE_STORE_LMDB, /* an LMDB environment on disk, optionally a DRAM cache in front */
    EMBER_CACHE_STORE_COUNT
} ember_cache_store;

/** How an LMDB store is opened. */
typedef enum ember_cache_open {
    EMBER_CACHE_OPEN_OR_CREATE, /* open the store at path, or create it (default) */
    EMBER_CACHE_OPEN_CREATE,    /* a new store; EMBER_ERR_STATE if path already holds one */
    EMBER_CACHE_OPEN_EXISTING,  /* an existing store; EMBER_ERR_NOT_FOUND if path holds none */
    EMBER_CACHE_OPEN_COUNT
} ember_cache_open;

/** Storage tier of a row of the host store (see "Precision tiers" above). */
typedef enum ember_cache_tier {
    EMBER_CACHE_TIER_HOT,  /* f32 weights and state, exact */
    EMBER_CACHE_TIER_WARM, /* f16 weights and state (Adam's: bf16) */
    EMBER_CACHE_TIER_COLD, /* int8-rowwise weights and state (vectors of <= 8 floats: f16; Adam's
                              state: bf16) */
    EMBER_CACHE_TIER_COUNT
} ember_cache_tier;

/** How rows are rounded when they are compressed into the WARM and COLD tiers. */
typedef enum ember_cache_rounding {
    EMBER_CACHE_ROUNDING_STOCHASTIC, /* up with probability (x - lo) / (hi - lo): unbiased (default) */
    EMBER_CACHE_ROUNDING_NEAREST,    /* to nearest, ties to even */
    EMBER_CACHE_ROUNDING_COUNT
} ember_cache_rounding;

/** One table's tiers, row by row. */
typedef struct ember_cache_tier_map {
    const uint8_t *tier; /* (rows,) an ember_cache_tier per row; NULL: the table is all HOT */
    int64_t rows;        /* length of tier: must be the table's rows */
} ember_cache_tier_map;

/**
 * Precision tiers of the host store. Give one of: maps; counts with the fractions hot
 * and warm; counts with a budget. The description is read by ember_cache_create and
 * not kept. Only f32 tables are tiered: maps must leave other tables all HOT, and
 * counts leave them so.
 */
typedef struct ember_cache_tiers {
    const ember_cache_tier_map *maps; /* (num_tables,) explicit tiers */
    /* Frequency counts of the training data (ember_freq of ember/datasets.h, its table t
       for table t). Rows are ranked by count, highest first, ties and rows never
       counted after them in increasing id. */
    const struct ember_freq *counts;
    double hot, warm;     /* fractions of each table's rows, in [0, 1], hot + warm <= 1: the
                             first ceil(hot * rows) of the ranking HOT, the next
                             ceil(warm * rows) WARM, the rest COLD */
    size_t budget;        /* > 0 instead of the fractions: bytes of the store's rows (tier
                             maps not included) over the f32 tables; tables of the same dim
                             and optimizer are ranked together and split by
                             ember_tiers_split, tables of other shapes get shares of the
                             budget in proportion to their f32 bytes */
    ember_cache_rounding rounding;
    uint64_t seed;        /* Philox key of stochastic rounding */
} ember_cache_tiers;

/** Zero fields take the defaults named here. */
typedef struct ember_cache_config {
    /* The tables at full size and their optimizer, exactly as for a resident
       collection (rows, dim, format, pooling, optim, row_align, cuda_kernel). Its mm
       and tier are ignored: the cache places everything itself (see mm). */
    ember_ebc_config collection;
    /* DEVICE tier: the slot arrays (EMBER_MEM_CACHE) and the remapped batches; PINNED:
       staging blocks; HOST: the host store (EMBER_MEM_PARAMETER or EMBER_MEM_CACHE) and
       the metadata. NULL: ember_memory_default(). */
    ember_memory *mm;
    /* Device slots of table t: slots[t] when slots is given, else ceil(ratio * rows),
       raised to min_slots; never more than the table's rows. One of the two is needed. */
    double ratio;
    const int64_t *slots; /* (num_tables,) each > 0, or NULL */
    int64_t min_slots;
    ember_cache_policy policy;
    int64_t aging_interval; /* LFU: batches between halvings of the counts; 0: 100 */
    int lookahead;          /* batches prepared ahead on the worker thread, 0..16 */
    /* Host threads of the prepare's per-table passes (lookups, pins, counters, remap).
       0 (default): every kernel thread when the device is a GPU (the host cores idle
       while the kernels run), 1 on a CPU (the prepare overlaps the step on the same
       cores). Any count gives the same rows, bit for bit. */
    int prepare_threads;

    ember_cache_store store;
    const char *path;       /* LMDB: the environment's directory, one per model */
    ember_cache_open open;  /* LMDB: create or open */
    size_t map_size;        /* LMDB: the largest the store may grow, bytes; 0: 64 GiB */
    /* LMDB: DRAM cache in front of the disk, host_rows[t] rows of table t, else
       ceil(host_ratio * rows); 0 (default): none, rows go straight to the device cache. */
    double host_ratio;
    const int64_t *host_rows; /* (num_tables,) each >= 0, or NULL */
    /* Host store: precision tiers of the rows (see above), or NULL (every row f32). The
       LMDB store does not take tiers (EMBER_ERR_UNSUPPORTED). */
    const ember_cache_tiers *tiers;
} ember_cache_config;

typedef struct ember_cache ember_cache;

/**
 * Create a cache: slot arrays, metadata, the compute collection and the store.
 * A new store starts with every weight 0 and every state at its initial value, as
 * ember_ebc_create; ember_cache_init_uniform or ember_cache_write_rows fill it. An
 * existing LMDB store must hold the same tables (rows, dim, format) and optimizer.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (config: message names the field and
 *         table); EMBER_ERR_OUT_OF_MEMORY (a tier's budget); EMBER_ERR_UNSUPPORTED
 *         (LMDB or CUDA not built); EMBER_ERR_NOT_FOUND (OPEN_EXISTING and no store);
 *         EMBER_ERR_STATE (OPEN_CREATE and a store exists); EMBER_ERR_IO (path not a
 *         usable directory); EMBER_ERR_FORMAT (not an ember store, corrupt, or other
 *         tables); EMBER_ERR_LMDB. Tiers: EMBER_ERR_INVALID_ARGUMENT (none or several
 *         ways given, a map of another length or with a bad tier, WARM or COLD rows in a
 *         table that is not f32, fractions outside [0, 1]); EMBER_ERR_SHAPE (counts of
 *         another number of tables); EMBER_ERR_INDEX (a counted id outside its table);
 *         EMBER_ERR_OUT_OF_MEMORY (a budget below every row COLD);
 *         EMBER_ERR_UNSUPPORTED (tiers with the LMDB store).
 */
ember_status ember_cache_create(const ember_cache_config *cfg, ember_cache **out);
/**
 * Stop the worker, free everything. An LMDB store keeps its last checkpoint (updates
 * since are discarded). NULL is a no-op.
 */
void ember_cache_destroy(ember_cache *c);

int ember_cache_num_tables(const ember_cache *c);
/** Device slots of a table (0 for a bad table). */
int64_t ember_cache_slots(const ember_cache *c, int table);
/** The collection whose kernels run on the slots (rows = 1 per table: it holds no
    rows of its own; pass ember_cache_batch.rows with every call). Owned by the cache. */
ember_ebc *ember_cache_collection(ember_cache *c);
/** The host store's resident collection (EMBER_CACHE_STORE_HOST without tiers), else
    NULL. Up to date after ember_cache_flush; owned by the cache. */
ember_ebc *ember_cache_host_collection(ember_cache *c);
/**
 * The store tier of a row (EMBER_CACHE_TIER_HOT for every row of a cache without tiers).
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT (NULLs), EMBER_ERR_INDEX (table or id).
 */
ember_status ember_cache_get_row_tier(const ember_cache *c, int table, int64_t id, ember_cache_tier *out);

/* ---- batches ---- */

/** A prepared batch. Valid until ember_cache_release; owned by the cache. */
typedef struct ember_cache_batch {
    ember_jagged jagged;        /* the batch with ids remapped to slots; arrays on the
                                   cache's device */
    const ember_ebc_rows *rows; /* (num_tables,) the slot arrays: ember_ebc_call.rows */
    int64_t seq;                /* 0-based number of the batch since create */
    int64_t lookups, hits;      /* ids in the batch, and those whose row was cached */
    int64_t unique, unique_hits;
} ember_cache_batch;

/**
 * Queue a batch (host arrays, one feature per table). The cache reads the arrays
 * until ember_cache_next has returned this batch; they must stay valid and unchanged
 * until then. Ids are checked when the batch is prepared (errors come back from
 * ember_cache_next).
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULLs, feature count, negative
 *         sizes); EMBER_ERR_STATE (more than lookahead + 4 batches outstanding, or the
 *         cache is unusable after a failed commit).
 */
ember_status ember_cache_submit(ember_cache *c, const ember_jagged *batch);
/**
 * The oldest submitted batch, prepared (waits for it). On CUDA, the calling thread's
 * current stream is made to wait for the batch's copies.
 * @return EMBER_OK; EMBER_ERR_STATE (nothing submitted); EMBER_ERR_INDEX (a bad id
 *         or offset: table, sample and position named); EMBER_ERR_OUT_OF_MEMORY (the
 *         batch's unique ids of a table do not fit: the message says how many slots
 *         it needs); EMBER_ERR_STORE_FULL (LMDB map full); EMBER_ERR_LMDB,
 *         EMBER_ERR_FORMAT (a row of the store has the wrong size), EMBER_ERR_CUDA.
 *         A failed batch is consumed and leaves the cache as it was.
 */
ember_status ember_cache_next(ember_cache *c, ember_cache_batch **out);
/**
 * Give a batch back. updated != 0: its rows were changed (backward ran) and are
 * dirty. On CUDA, records the caller's current stream first.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (not a batch handed out by this cache).
 */
ember_status ember_cache_release(ember_cache *c, ember_cache_batch *b, int updated);
/** Submit + next: the batch prepared at once (outstanding batches are served first). */
ember_status ember_cache_prepare(ember_cache *c, const ember_jagged *batch, ember_cache_batch **out);

/** ember_ebc_forward of the compute collection on the slots (call may be NULL). */
ember_status ember_cache_forward(ember_cache *c, const ember_cache_batch *b, ember_tensor *out);
/** ember_ebc_backward on the slots; call gives lr and step (its rows and trusted are set here). */
ember_status ember_cache_backward(ember_cache *c, const ember_cache_batch *b,
                                  const ember_tensor *grad_out, const ember_ebc_call *call);

/* ---- rows, initialisation, warm-up ---- */

/**
 * Every weight uniform in [lo, hi) from rng's stream exactly as ember_ebc_init_uniform
 * (advances rng->offset by the same count), every state initial. Drops whatever the
 * caches held. The LMDB store records the initialiser and generates rows lazily.
 * Needs no batch outstanding.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_STATE, EMBER_ERR_LMDB.
 */
ember_status ember_cache_init_uniform(ember_cache *c, ember_rng *rng, float lo, float hi);
/**
 * Weights (f32, (count, dim)) or optimizer state (f32, (count, state_floats)) of rows
 * [first, first + count), wherever each row lives (device slot, host store, disk).
 * write_rows leaves the state alone and write_state the weights. With tiers, a row that
 * is not in a device slot is compressed into its tier as it is written (it reads back
 * rounded); a cached row is compressed when it is written back.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_INDEX (table or range),
 *         EMBER_ERR_STATE (a batch is handed out), store errors.
 */
ember_status ember_cache_read_rows(ember_cache *c, int table, int64_t first, int64_t count, float *dst);
ember_status ember_cache_write_rows(ember_cache *c, int table, int64_t first, int64_t count,
                                    const float *src);
ember_status ember_cache_read_state(ember_cache *c, int table, int64_t first, int64_t count, float *dst);
ember_status ember_cache_write_state(ember_cache *c, int table, int64_t first, int64_t count,
                                     const float *src);
/**
 * Preload the hottest rows of a table, hottest first: the first min(n, slots) ids are
 * loaded in blocks, their LFU frequency (or STATIC rank) set to counts[i] (NULL: 1).
 * Rows already cached keep their place and take the count. Needs no batch outstanding.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_INDEX (table or an id),
 *         EMBER_ERR_STATE, store errors.
 */
ember_status ember_cache_warmup(ember_cache *c, int table, const int64_t *ids,
                                const uint64_t *counts, int64_t n);

struct ember_freq; /* ember/datasets.h */
/**
 * Warm every table from frequency counts (ember_freq of ember/datasets.h): its hottest
 * min(slots, counted) ids with their counts, as ember_cache_warmup.
 * @return as ember_cache_warmup; EMBER_ERR_SHAPE (the counts cover another number of
 *         tables); EMBER_ERR_INDEX (a counted id outside its table).
 */
ember_status ember_cache_warmup_counts(ember_cache *c, const struct ember_freq *counts);
/** The same from a count file (ember_freq_save, `ember count -o FILE`).
    @return as above; EMBER_ERR_IO, EMBER_ERR_FORMAT, EMBER_ERR_CHECKSUM (the file). */
ember_status ember_cache_warmup_file(ember_cache *c, const char *path);

/* ---- durability ---- */

/**
 * Write every dirty row down to the lowest tier (host store, or LMDB inside the open
 * transaction: not yet durable). Rows stay cached, clean.
 * @return EMBER_OK, EMBER_ERR_STATE (a batch is handed out), EMBER_ERR_STORE_FULL,
 *         EMBER_ERR_LMDB, EMBER_ERR_CUDA.
 */
ember_status ember_cache_flush(ember_cache *c);
/**
 * Flush, record `step`, and commit the store with a durable sync. After a crash the
 * store reopens at the last checkpoint. A failure of the commit itself leaves the
 * cache unusable (EMBER_ERR_STATE afterwards): reopen the store to resume.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT (step < 0), EMBER_ERR_UNSUPPORTED
 *         (the host store is not durable), EMBER_ERR_STATE, EMBER_ERR_STORE_FULL,
 *         EMBER_ERR_LMDB, EMBER_ERR_IO.
 */
ember_status ember_cache_checkpoint(ember_cache *c, int64_t step);
/** Step of the last checkpoint (of the store opened, or made since); -1 if none. */
int64_t ember_cache_checkpoint_step(const ember_cache *c);

/* ---- statistics ---- */

/** Links rows move over. */
typedef enum ember_cache_link {
    EMBER_CACHE_LINK_HOST_TO_DEVICE, /* missed rows loaded into slots */
    EMBER_CACHE_LINK_DEVICE_TO_HOST, /* dirty rows written down from slots */
    EMBER_CACHE_LINK_DISK_TO_HOST,   /* rows read from LMDB */
    EMBER_CACHE_LINK_HOST_TO_DISK,   /* rows written to LMDB */
    EMBER_CACHE_LINK_COUNT
} ember_cache_link;

/**
 * Where the time goes (seconds; all on the worker thread but WAIT). On the CPU with
 * the host store, slots and store are both DRAM and rows move straight between them
 * (WRITEBACK writes them down, READ copies them up); otherwise WRITEBACK gathers the
 * dirty victims into the staging block (one device-to-host copy), READ is the
 * exchange with the lower tiers (the dirty block written and the missed rows read:
 * one LMDB transaction) and LOAD copies the block into the slots (one host-to-device
 * copy and a scatter).
 */
typedef enum ember_cache_phase {
    EMBER_CACHE_PHASE_ANALYZE,   /* id checks, unique ids, inverse map */
    EMBER_CACHE_PHASE_PLAN,      /* lookups, room, victims */
    EMBER_CACHE_PHASE_WRITEBACK, /* dirty victims out of the slots */
    EMBER_CACHE_PHASE_READ,      /* the lower tiers */
    EMBER_CACHE_PHASE_LOAD,      /* rows into the slots, ids bound */
    EMBER_CACHE_PHASE_REMAP,     /* ids to slots, batch arrays to the device */
    EMBER_CACHE_PHASE_WAIT,      /* the caller blocked in ember_cache_next */
    EMBER_CACHE_PHASE_FLUSH,     /* flush, checkpoint commit and sync */
    EMBER_CACHE_PHASE_COUNT
} ember_cache_phase;

typedef struct ember_cache_stats {
    int64_t batches;                 /* prepared */
    int64_t lookups, hits;           /* ids, and ids whose row was cached */
    int64_t unique, unique_hits;     /* the same over each batch's distinct rows */
    double hit_rate;                 /* hits / lookups */
    double unique_hit_rate;          /* unique_hits / unique */
    int64_t evictions, writebacks;   /* rows evicted; of those, dirty ones written down */
    int64_t protected_evictions;     /* evictions of ids of a batch submitted ahead (only
                                        when nothing else was left) */
    int64_t generated;               /* rows made from the initialiser (never stored) */
    int64_t host_hits, host_misses;  /* DRAM cache in front of LMDB */
    int64_t rows[EMBER_CACHE_LINK_COUNT];
    int64_t bytes[EMBER_CACHE_LINK_COUNT];
    double seconds[EMBER_CACHE_PHASE_COUNT];
    double prepare_seconds;          /* worker time spent preparing batches */
    double transfer_seconds;         /* of which WRITEBACK + READ + LOAD */
    double hidden_seconds;           /* prepare time that overlapped the caller's work */
    double hidden_fraction;          /* hidden_seconds / prepare_seconds (0 if none) */
    int64_t slots, slots_used, dirty;/* over all tables, now */
    int64_t checkpoints;
    /* Memory, bytes, now. slot_bytes: the device slots' records (slots x record bytes);
       meta_bytes: the device cache's metadata (id maps, per-slot records, heaps, the
       1:1 tables' row states); store_bytes: DRAM of the host store's rows (tiered: the
       compressed records of each tier plus the tier maps; LMDB: the DRAM cache in front
       of the disk); store_f32_bytes: every row of every table as the record the table
       has resident (rows x record bytes), what an untiered host store or a resident
       collection holds. Saving of the tiers: 1 - (store + slot bytes) / store_f32. */
    int64_t slot_bytes, meta_bytes, store_bytes, store_f32_bytes;
    int64_t tier_rows[EMBER_CACHE_TIER_COUNT];  /* rows of the host store per tier */
    int64_t tier_bytes[EMBER_CACHE_TIER_COUNT]; /* of store_bytes, the records of each tier */
} ember_cache_stats;

/** A consistent snapshot. @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_cache_get_stats(ember_cache *c, ember_cache_stats *out);
/** Zero the counters and times (slots_used and dirty are current values). */
void ember_cache_reset_stats(ember_cache *c);
/** The statistics as one JSON object; like snprintf, returns the length needed. */
size_t ember_cache_stats_json(const ember_cache_stats *s, char *buf, size_t n);

const char *ember_cache_policy_name(ember_cache_policy p); /* "lfu", "lru", "static" */
const char *ember_cache_store_name(ember_cache_store s);   /* "host", "lmdb" */
const char *ember_cache_link_name(ember_cache_link l);     /* "host_to_device", ... */
const char *ember_cache_phase_name(ember_cache_phase p);   /* "analyze", ... */
const char *ember_cache_tier_name(ember_cache_tier t);     /* "hot", "warm", "cold" */
/** Parse "lfu" / "lru" / "static". @return EMBER_OK or EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_cache_policy_parse(const char *s, ember_cache_policy *out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CACHE_H */
