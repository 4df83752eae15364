/*
 * ember/datasets.h: Criteo click logs in, model-ready arrays out.
 *
 * Four pieces, each usable alone (DESIGN.md section 6):
 *   - the Criteo TSV reader (Kaggle train/test, Terabyte day_N; plain, gzip or stdin),
 *     parsing in parallel over chunks split at line boundaries;
 *   - npy files (numpy's format, read by mmap) and TorchRec's preprocessed triplets
 *     PREFIX_dense.npy f32 (N, 13), PREFIX_sparse.npy i32 (N, 26), PREFIX_labels.npy
 *     i32 (N, 1), written from TSV by ember_criteo_convert;
 *   - the loader: batches of (dense, jagged ids per table, labels) from TSV or npy,
 *     with worker threads, a bounded prefetch queue, a shuffle buffer and rank sharding;
 *   - the synthetic generator (Criteo-shaped, Zipf-skewed, labels from a hidden
 *     logistic model) and frequency counts per (table, id).
 *
 *     ember_criteo_reader *r;
 *     ember_status st = ember_criteo_open(&(ember_criteo_params){
 *         .path = "train.txt.gz", .hash_cap = 40000000, .on_error = EMBER_ON_ERROR_SKIP}, &r);
 *     ember_criteo_rows rows;
 *     while (st == EMBER_OK && (st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0)
 *         use(rows.dense, rows.sparse, rows.labels, rows.n);   // (n, 13), (n, 26), (n)
 *     if (st != EMBER_OK) fprintf(stderr, "%s\n", ember_last_error());
 *     ember_criteo_close(r);
 *
 *     ember_loader *l;
 *     ember_loader_create(&(ember_loader_params){
 *         .paths = (const char *[]){"train"}, .num_paths = 1, .format = EMBER_LOADER_NPY,
 *         .batch_size = 2048, .shuffle_buffer = 1 << 20, .seed = 7}, &l);
 *     const ember_batch *b;
 *     while (ember_loader_next(l, &b) == EMBER_OK && b) train_step(b);
 *     ember_loader_destroy(l);
 *
 * Conventions of the Criteo arrays. Missing values: a missing integer feature is 0
 * before the dense transform; a missing categorical is id 0, and so is the hex id
 * 00000000 (both mean "no value"). Categorical ids are 32-bit: raw hex values, raw %
 * hash_cap, or vocabulary indices. In *_sparse.npy they are stored as int32 holding
 * the id's 32 bits (TorchRec's dtype); readers here take them back as uint32.
 *
 * Errors: a malformed line is reported with file, line number, field and reason
 * ("EMBER_ERR_PARSE: criteo train.txt line 4182 field 16 (C2): \"12x4\" is not a
 * 32-bit hex id"). With EMBER_ON_ERROR_SKIP bad lines are skipped and counted by kind
 * in ember_criteo_stats; nothing is dropped silently.
 *
 * Thread safety: one object (reader, loader, writer, counter) must not be
 * used from two threads at once; different objects are independent. Read-only
 * objects (ember_npy, ember_criteo_vocab, ember_freq after counting, ember_gen) may be
 * shared by any number of threads. Memory: large buffers come from the memory manager
 * given in the params (NULL = ember_memory_default()), tier HOST, kind STAGING.
 */
#ifndef EMBER_DATASETS_H
#define EMBER_DATASETS_H

#include <stddef.h>
#include <stdint.h>

#include "ember/memory.h"
#include "ember/status.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_CRITEO_NUM_DENSE 13
#define EMBER_CRITEO_NUM_SPARSE 26

/* ======================================================================== */
/* Criteo TSV reader                                                         */
/* ======================================================================== */

typedef enum ember_criteo_label {
    EMBER_CRITEO_LABEL_AUTO,    /* from line 1: 40 fields = label present, 39 = absent */
    EMBER_CRITEO_LABEL_PRESENT, /* train files, day_N files */
    EMBER_CRITEO_LABEL_ABSENT,  /* Kaggle test.txt; labels come back as 0 */
    EMBER_CRITEO_LABEL_COUNT
} ember_criteo_label;

typedef enum ember_dense_transform {
    EMBER_DENSE_LOG1P, /* log(1 + max(x, 0)), in double then rounded to f32 (default) */
    EMBER_DENSE_RAW,   /* x as f32 (negative values kept) */
    EMBER_DENSE_TRANSFORM_COUNT
} ember_dense_transform;

typedef enum ember_on_error {
    EMBER_ON_ERROR_STOP, /* the first malformed line fails the read with EMBER_ERR_PARSE */
    EMBER_ON_ERROR_SKIP, /* malformed lines are skipped, counted by kind and logged (first few) */
    EMBER_ON_ERROR_COUNT
} ember_on_error;

/** Why a line was rejected. */
typedef enum ember_criteo_fault {
    EMBER_CRITEO_FAULT_FIELD_COUNT, /* not 40 (39 without label) tab-separated fields */
    EMBER_CRITEO_FAULT_LABEL,       /* label not 0 or 1 */
    EMBER_CRITEO_FAULT_INT,         /* I field not an integer, or beyond 18 digits */
    EMBER_CRITEO_FAULT_HEX,         /* C field not 1 to 8 hex digits */
    EMBER_CRITEO_FAULT_LINE_TOO_LONG, /* longer than max_line_bytes */
    EMBER_CRITEO_FAULT_COUNT
} ember_criteo_fault;

/** "field_count", "label", "int", "hex", "line_too_long". */
const char *ember_criteo_fault_name(ember_criteo_fault f);

typedef struct ember_criteo_vocab ember_criteo_vocab;

typedef struct ember_criteo_params {
    /* Input: a file path ("-" = stdin), or an in-memory buffer when data is set (path
     * then only names it in messages). gzip is detected by its magic bytes. */
    const char *path;
    const void *data;
    size_t size;
    ember_criteo_label label;
    ember_dense_transform dense;
    /* Categorical ids: through vocab when set (not owned; must outlive the reader),
     * else raw % hash_cap when hash_cap > 0 (MLPerf: 40000000), else raw. */
    const ember_criteo_vocab *vocab;
    uint32_t hash_cap;
    ember_on_error on_error;
    int threads;           /* parse threads (the caller's included); 0 = ember_get_num_threads().
                            * One more thread reads the next block while a block is parsed. */
    size_t block_bytes;    /* bytes read per chunk; 0 = 16 MiB */
    size_t max_line_bytes; /* longer lines are malformed; 0 = 64 KiB */
    int max_logged;        /* bad lines logged at WARN in skip mode; 0 = 10, < 0 = none */
    ember_memory *mm;      /* NULL = ember_memory_default() */
} ember_criteo_params;

typedef struct ember_criteo_stats {
    int64_t lines;        /* lines consumed (good + bad) */
    int64_t rows;         /* good rows delivered */
    int64_t bad[EMBER_CRITEO_FAULT_COUNT]; /* skipped lines by kind */
    int64_t bad_total;
    uint64_t bytes;       /* input bytes consumed (after decompression) */
    uint64_t raw_bytes;   /* bytes read from the file (compressed size for gzip) */
    uint64_t file_bytes;  /* size of the input file; 0 when unknown (stdin, pipe) */
    int has_label;        /* -1 until the first line was seen */
    int gzip;
    char first_bad[512];  /* message of the first malformed line, "" if none */
} ember_criteo_stats;

/** Rows of one chunk, in file order. */
typedef struct ember_criteo_rows {
    int64_t n;               /* 0: end of input */
    int64_t first;           /* index of rows[0] among the good rows since open */
    const float *dense;      /* (n, 13) after the dense transform */
    const uint32_t *sparse;  /* (n, 26) mapped ids */
    const int32_t *labels;   /* (n) 0/1; all 0 when the file has no label */
} ember_criteo_rows;

typedef struct ember_criteo_reader ember_criteo_reader;

/**
 * Open a Criteo TSV input. Nothing is parsed yet.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (bad params); EMBER_ERR_IO (cannot open);
 *         EMBER_ERR_UNSUPPORTED (gzip input, ember built without zlib);
 *         EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_criteo_open(const ember_criteo_params *p, ember_criteo_reader **out);
/**
 * Parse the next chunk (about block_bytes of input). out->n == 0 means end of input.
 * The arrays are owned by the reader and valid until the next read or destroy.
 * @return EMBER_OK; EMBER_ERR_PARSE (malformed line in stop mode, or a label that
 *         cannot be detected); EMBER_ERR_IO; EMBER_ERR_FORMAT (corrupt gzip stream);
 *         EMBER_ERR_OUT_OF_MEMORY. After an error the reader only returns that error.
 */
ember_status ember_criteo_read(ember_criteo_reader *r, ember_criteo_rows *out);
/** Counters so far (lines, rows, skipped lines by kind, bytes). */
void ember_criteo_get_stats(const ember_criteo_reader *r, ember_criteo_stats *out);
/** Close the input and free everything. NULL is a no-op. */
void ember_criteo_close(ember_criteo_reader *r);

/**
 * Parse one line (without its '\n') into dense (13), sparse (26) and *label, with the
 * transform and id mapping of cfg (path, data, threads... ignored). For tools and
 * fuzzing; the reader does the same over whole chunks.
 * @return EMBER_OK or EMBER_ERR_PARSE naming the field and reason (*fault set to its
 *         kind when fault is not NULL).
 */
ember_status ember_criteo_parse_line(const ember_criteo_params *cfg, int has_label, const char *line,
                                     size_t len, float *dense, uint32_t *sparse, int32_t *label,
                                     ember_criteo_fault *fault);

/* ---- vocabulary with a frequency threshold ---- */

typedef struct ember_criteo_vocab_params {
    const char *const *paths; /* training files only: never count validation or test days */
    int num_paths;
    uint32_t min_count; /* ids seen fewer than min_count times map to 0; 0 or 1 keep all */
    /* Parse options (label, on_error, threads, block and line sizes, mm); path, data,
     * vocab, hash_cap and dense are ignored. NULL = defaults. */
    const ember_criteo_params *parse;
} ember_criteo_vocab_params;

/**
 * Count every (field, raw id) over the files, keep ids seen at least min_count times
 * and number them 1..K per field in increasing raw-id order (deterministic whatever
 * the thread count). Id 0 is missing or rare.
 * @return EMBER_OK, the reader's errors, EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_criteo_vocab_build(const ember_criteo_vocab_params *p, ember_criteo_vocab **out);
void ember_criteo_vocab_destroy(ember_criteo_vocab *v);
/** Ids of a field including 0 (K + 1): the embedding table's row count. */
int64_t ember_criteo_vocab_size(const ember_criteo_vocab *v, int field);
/** Mapped id of a raw id in a field (0 when rare, missing or unseen). */
uint32_t ember_criteo_vocab_map(const ember_criteo_vocab *v, int field, uint32_t raw);

/* ======================================================================== */
/* npy files and TorchRec triplets                                           */
/* ======================================================================== */

#define EMBER_NPY_MAX_DIMS 6

typedef struct ember_npy_info {
    ember_dtype dtype;  /* f32 '<f4', i32 '<i4', i64 '<i8', i8 '|i1', u8 '|u1', f16 '<f2' */
    int ndim;           /* 0 (scalar) .. EMBER_NPY_MAX_DIMS */
    int64_t shape[EMBER_NPY_MAX_DIMS];
    int version;        /* format major version: 1, 2 or 3 */
    size_t header_bytes; /* offset of the data */
    size_t data_bytes;   /* product of shape times element size */
} ember_npy_info;

/**
 * Parse an npy header from the first len bytes of a file. Little-endian C-order data
 * of the dtypes above is accepted.
 * @return EMBER_OK; EMBER_ERR_FORMAT (not npy, bad or truncated header, bad shape);
 *         EMBER_ERR_DTYPE (dtype not handled); EMBER_ERR_UNSUPPORTED (big-endian data,
 *         Fortran order); EMBER_ERR_OVERFLOW (sizes beyond 64 bits).
 */
ember_status ember_npy_parse_header(const void *buf, size_t len, ember_npy_info *out);

typedef struct ember_npy ember_npy;

/**
 * Map an npy file read-only. The header must parse and the file must hold exactly
 * header + data bytes (EMBER_ERR_FORMAT "truncated" otherwise).
 * @return EMBER_OK, EMBER_ERR_IO, the header's errors, EMBER_ERR_FORMAT.
 */
ember_status ember_npy_open(const char *path, ember_npy **out);
void ember_npy_close(ember_npy *f);
/** Header of an open file; valid while it is open. */
const ember_npy_info *ember_npy_get_info(const ember_npy *f);
/** The data, C order; valid while the file is open (NULL when it holds 0 bytes). */
const void *ember_npy_data(const ember_npy *f);

typedef struct ember_npy_writer_params {
    const char *path;
    ember_dtype dtype;
    int ndim;                           /* >= 1: dimension 0 grows as rows are appended */
    int64_t shape[EMBER_NPY_MAX_DIMS];  /* shape[0] ignored */
} ember_npy_writer_params;

typedef struct ember_npy_writer ember_npy_writer;

/**
 * Start an npy file whose first dimension grows with each append. Data goes to a
 * temporary name beside path, which ember_npy_writer_finish renames to path, so a
 * crash never leaves a half-written file under the final name.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_DTYPE, EMBER_ERR_IO.
 */
ember_status ember_npy_writer_create(const ember_npy_writer_params *p, ember_npy_writer **out);
/** Append rows (each of shape[1..] elements). @return EMBER_OK or EMBER_ERR_IO. */
ember_status ember_npy_writer_append(ember_npy_writer *w, const void *rows, int64_t n);
/** Write the final header and rename to the final path. @return EMBER_OK or EMBER_ERR_IO. */
ember_status ember_npy_writer_finish(ember_npy_writer *w);
/** Free the writer; an unfinished file is removed. NULL is a no-op. */
void ember_npy_writer_destroy(ember_npy_writer *w);

/** Write a whole array as an npy file (temporary name, then rename). */
ember_status ember_npy_save(const char *path, ember_dtype dtype, int ndim, const int64_t *shape,
                            const void *data);

/** TorchRec's preprocessed Criteo: PREFIX_dense.npy, PREFIX_sparse.npy, PREFIX_labels.npy. */
typedef struct ember_npy_triplet ember_npy_triplet;

/**
 * Open the three files of a prefix and check them: dense f32 (N, 13), sparse i32
 * (N, 26), labels i32 (N, 1) or (N), the same N.
 * @return EMBER_OK, the npy errors, EMBER_ERR_DTYPE (wrong dtype), EMBER_ERR_SHAPE.
 */
ember_status ember_npy_triplet_open(const char *prefix, ember_npy_triplet **out);
void ember_npy_triplet_close(ember_npy_triplet *t);
int64_t ember_npy_triplet_rows(const ember_npy_triplet *t);
const float *ember_npy_triplet_dense(const ember_npy_triplet *t);     /* (N, 13) */
const uint32_t *ember_npy_triplet_sparse(const ember_npy_triplet *t); /* (N, 26) */
const int32_t *ember_npy_triplet_labels(const ember_npy_triplet *t);  /* (N) */

/** Progress of a long job: done and total units (total 0 when unknown). */
typedef void (*ember_progress_fn)(uint64_t done, uint64_t total, int64_t rows, void *user);

typedef struct ember_convert_params {
    const char *const *inputs; /* TSV files, read in order into one triplet */
    int num_inputs;
    const char *out_prefix;    /* writes out_prefix_{dense,sparse,labels}.npy */
    /* Parse options; path and data are ignored. NULL = defaults. */
    const ember_criteo_params *parse;
    ember_progress_fn progress; /* called after each chunk with input bytes done/total */
    void *progress_user;
} ember_convert_params;

/**
 * TSV files to one TorchRec triplet. The files appear under their final names only
 * when every input was read (a failure leaves no triplet behind).
 * @param[out] stats totals over all inputs (may be NULL).
 * @return EMBER_OK or the reader's and writer's errors.
 */
ember_status ember_criteo_convert(const ember_convert_params *p, ember_criteo_stats *stats);

/* ======================================================================== */
/* Loader                                                                     */
/* ======================================================================== */

typedef enum ember_loader_format {
    EMBER_LOADER_AUTO, /* NPY when PATH_dense.npy exists, else TSV */
    EMBER_LOADER_TSV,
    EMBER_LOADER_NPY,  /* paths are triplet prefixes */
    EMBER_LOADER_FORMAT_COUNT
} ember_loader_format;

/**
 * One batch, jagged per table. For table t, the ids of sample i are
 * values[t][offsets[t][i] .. offsets[t][i+1]); offsets[t] has size + 1 entries and
 * offsets[t][0] == 0. Criteo is one-hot, so offsets[t][i] == i; the layout is that of
 * embedding bags (FBGEMM TBE, ember_jagged), which take values/offsets without a copy.
 * All arrays are owned by the loader and valid until the next ember_loader_next on
 * this loader (or its destroy).
 */
typedef struct ember_batch {
    int64_t index;     /* batch number in the epoch, from 0 */
    int64_t size;      /* B: rows; < batch_size only for a partial last batch (0 possible
                        * on a rank when the last global batch has fewer rows than ranks) */
    int num_tables;    /* 26 */
    const float *dense;  /* (B, 13) */
    const float *labels; /* (B) 0.0 or 1.0 */
    const int64_t *values[EMBER_CRITEO_NUM_SPARSE];  /* (offsets[t][B]) ids of table t */
    const int64_t *offsets[EMBER_CRITEO_NUM_SPARSE]; /* (B + 1) */
} ember_batch;

typedef struct ember_loader_params {
    const char *const *paths; /* TSV files or triplet prefixes, read in this order */
    int num_paths;
    ember_loader_format format;
    const ember_criteo_params *tsv; /* TSV parse options (path/data ignored); NULL = defaults */
    int64_t batch_size;             /* B per rank, > 0 */
    int drop_last;                  /* drop a partial last global batch */
    int64_t shuffle_buffer;         /* rows held for shuffling; 0 or 1 = file order */
    uint64_t seed;                  /* shuffle seed; the epoch is mixed in */
    /* Data parallel: global batch k holds batch_size * world rows of the (shuffled)
     * stream; rank r gets rows [R*r/world, R*(r+1)/world) of its R rows. So the world's
     * batches, concatenated by rank, equal a one-rank run with batch_size * world, and
     * every rank sees the same number of batches. world 0 = 1. */
    int rank, world;
    /* Ids of table t are reduced modulo table_rows[t] when table_rows is set (26
     * entries, each > 0): the row counts of the embedding tables. */
    const int64_t *table_rows;
    /* Which rows of the input stream (every path in order, before shuffling; row r is
     * the r-th row read) this loader delivers: rows [row_begin, row_end) (row_end 0:
     * to the end), and when holdout > 0 only the rows whose hash of (holdout_seed, r)
     * falls in the held-out fraction holdout (holdout_part 1) or outside it (0). Two
     * loaders with parts 0 and 1 split a stream into disjoint training and evaluation
     * rows without knowing its length. */
    int64_t row_begin, row_end;
    double holdout;
    int holdout_part;
    uint64_t holdout_seed;
    int workers;  /* batch-assembly threads; 0 = 1 */
    int prefetch; /* batches ready ahead; 0 = 4 */
    ember_memory *mm;
} ember_loader_params;

typedef struct ember_loader ember_loader;

/**
 * Open the inputs and start the workers for epoch 0.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, the reader's and npy errors.
 */
ember_status ember_loader_create(const ember_loader_params *p, ember_loader **out);
/**
 * Next batch, or *out = NULL at the end of the epoch. The previous batch is released.
 * @return EMBER_OK, or the error a worker met (EMBER_ERR_PARSE, EMBER_ERR_IO, ...):
 *         the epoch is then over.
 */
ember_status ember_loader_next(ember_loader *l, const ember_batch **out);
/** Restart from the first row with the shuffle of the given epoch. */
ember_status ember_loader_start_epoch(ember_loader *l, int64_t epoch);
/** Rows delivered to this rank in this epoch, and TSV counters summed over files. */
void ember_loader_get_stats(const ember_loader *l, int64_t *rows, ember_criteo_stats *tsv);
void ember_loader_destroy(ember_loader *l);

/* ======================================================================== */
/* Synthetic Criteo                                                           */
/* ======================================================================== */

/** The Kaggle cardinalities of C1..C26 (DESIGN.md section 6). */
extern const int64_t ember_criteo_kaggle_cardinalities[EMBER_CRITEO_NUM_SPARSE];

typedef struct ember_gen_params {
    uint64_t seed;
    double scale;                  /* cardinalities times scale (at least 1 each); 0 = 1.0 */
    const int64_t *cardinalities;  /* 26 values instead of Kaggle's (scale still applies) */
    /* Zipf exponent per field; NULL = each field's exponent is solved so that the top 1%
     * of its ids take hot_share of its lookups (fields under 100 ids: zipf_small). */
    const double *zipf;
    double hot_share;  /* 0 = 0.90 */
    double zipf_small; /* 0 = 1.1 */
    /* Multi-hot: mean ids per sample of each field (NULL or 1 = one-hot); a sample of
     * field t has 1 + Poisson(pooling[t] - 1) ids, as DLRM-DCNv2's synthetic sets. */
    const double *pooling;
    double signal;     /* logit scale of the hidden model; 0 = 1.0 */
    double missing;    /* probability that an integer feature is missing; 0 = 0.1, < 0 = none */
} ember_gen_params;

typedef struct ember_gen ember_gen;

/** @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_gen_create(const ember_gen_params *p, ember_gen **out);
void ember_gen_destroy(ember_gen *g);

/** Cardinality, Zipf exponent and expected share of lookups of the top 1% of ids of field t. */
int64_t ember_gen_cardinality(const ember_gen *g, int field);
double ember_gen_zipf(const ember_gen *g, int field);
/** Expected share of lookups that the top fraction of a field's ids take. */
double ember_gen_hot_share(const ember_gen *g, int field, double fraction);

/**
 * Rows [first, first + n) of the stream: a pure function of (seed, row), so any split
 * gives the same rows. Each output may be NULL: raw integer features ints (n, 13)
 * before the dense transform (a missing one is 0, with bit i of missing_mask[row]
 * set), one id per field sparse (n, 26) (the first of a multi-hot bag), labels (n) and
 * the hidden model's probabilities prob (n).
 */
ember_status ember_gen_rows(const ember_gen *g, int64_t first, int64_t n, int64_t *ints,
                            uint16_t *missing_mask, uint32_t *sparse, int32_t *labels, float *prob);

/**
 * Bags of one field for rows [first, first + n): offsets (n + 1) always, ids into
 * values when values_cap is large enough (offsets[n] tells how many). One-hot fields
 * give bags of one.
 * @return EMBER_OK, EMBER_ERR_SHAPE (values too small), EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_gen_bags(const ember_gen *g, int field, int64_t first, int64_t n, int64_t *offsets,
                            int64_t *values, int64_t values_cap);

/**
 * AUC of the Bayes-optimal classifier (the hidden model's own probability), over rows
 * [0, sample) of the stream: sum over positives/negatives weighted by p and 1 - p.
 */
ember_status ember_gen_bayes_auc(const ember_gen *g, int64_t sample, double *auc);

typedef enum ember_gen_format { EMBER_GEN_TSV, EMBER_GEN_NPY, EMBER_GEN_FORMAT_COUNT } ember_gen_format;

typedef struct ember_gen_write_params {
    const char *path;      /* TSV file, or triplet prefix for NPY */
    ember_gen_format format;
    int64_t rows;
    int threads;           /* 0 = ember_get_num_threads() */
    ember_progress_fn progress;
    void *progress_user;
} ember_gen_write_params;

/**
 * Write rows [0, rows) of the stream as Criteo TSV (label, I1..I13 with missing values
 * empty, C1..C26 as 8 hex digits) or an npy triplet (dense after log1p), through a
 * temporary name. Multi-hot generators cannot be written (one id per field in both
 * formats): EMBER_ERR_UNSUPPORTED.
 */
ember_status ember_gen_write(const ember_gen *g, const ember_gen_write_params *p);

/* ======================================================================== */
/* Frequency counts                                                           */
/* ======================================================================== */

typedef struct ember_freq_params {
    int num_tables;       /* > 0 */
    size_t memory_cap;    /* bytes for exact counters over all tables; 0 = 1 GiB */
    int64_t heavy_hitters; /* counters per table once over the cap (Space-Saving); 0 = 65536 */
    ember_memory *mm;
} ember_freq_params;

typedef struct ember_freq ember_freq;

/** One counted id: count is exact, or an over-estimate by at most error. */
typedef struct ember_freq_entry {
    int64_t id;
    uint64_t count;
    uint64_t error;
} ember_freq_entry;

typedef struct ember_freq_table_stats {
    uint64_t lookups;   /* ids added to this table */
    uint64_t distinct;  /* exact while exact, else a HyperLogLog estimate (about 1%) */
    int64_t entries;    /* counters held */
    int exact;          /* 1 while every id is counted exactly */
} ember_freq_table_stats;

ember_status ember_freq_create(const ember_freq_params *p, ember_freq **out);
void ember_freq_destroy(ember_freq *f);
/** Count n ids (>= 0) of a table. @return EMBER_OK, EMBER_ERR_INDEX, EMBER_ERR_OUT_OF_MEMORY. */
ember_status ember_freq_add(ember_freq *f, int table, const int64_t *ids, int64_t n);
/** Count n Criteo rows of 26 ids (a reader's rows.sparse); num_tables must be 26. */
ember_status ember_freq_add_rows(ember_freq *f, const uint32_t *sparse, int64_t n);
int ember_freq_num_tables(const ember_freq *f);
ember_status ember_freq_get_table_stats(const ember_freq *f, int table, ember_freq_table_stats *out);
/** Count of one id (0 when not held; an upper bound beyond the cap). */
uint64_t ember_freq_count(const ember_freq *f, int table, int64_t id);
/**
 * The k most frequent ids of a table, by count descending then id ascending.
 * @param[out] out at least k entries; *n gets how many were written (<= k).
 */
ember_status ember_freq_top(const ember_freq *f, int table, int64_t k, ember_freq_entry *out,
                            int64_t *n);
/**
 * Skew: for each fractions[k] (0..1), the share of the table's lookups taken by its top
 * ceil(fractions[k] * distinct) ids, into shares[k]. Exact while the table is exact;
 * beyond the cap it is measured on the heavy hitters' (over-estimated) counts.
 */
ember_status ember_freq_skew(const ember_freq *f, int table, int n, const double *fractions, double *shares);

/** File format: magic "EMBRFREQ", version 1, per-table records, FNV-1a 64 checksum. */
#define EMBER_FREQ_VERSION 1
/** Write to a temporary name, then rename. @return EMBER_OK or EMBER_ERR_IO. */
ember_status ember_freq_save(const ember_freq *f, const char *path);
/** @return EMBER_OK, EMBER_ERR_IO, EMBER_ERR_FORMAT (magic, version, size), EMBER_ERR_CHECKSUM. */
ember_status ember_freq_load(const char *path, ember_memory *mm, ember_freq **out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_DATASETS_H */
