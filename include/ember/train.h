/*
 * ember/train.h: the DLRM training job behind `ember train`, `ember eval` and
 * `ember predict`, callable from C. The command-line program is a thin user of it.
 *
 *     ember_train_config cfg;
 *     ember_train_config_defaults(&cfg);
 *     ember_train_config_load(&cfg, "dlrm.conf");        // optional: a config file
 *     ember_train_config_set(&cfg, "batch", "4096");     // the same keys one at a time
 *     ember_trainer *t;
 *     ember_trainer_create(&cfg, &t);                   // data, model, cache; resumes
 *     ember_trainer_run(t, NULL, NULL);                 // epochs, checkpoints, metrics
 *     ember_train_report r;
 *     ember_trainer_report(t, &r);                      // loss, AUC, samples/s, cache, memory
 *     ember_trainer_destroy(t);
 *
 * Configuration. One format for files and for the command line: a config file holds
 * `key = value` lines (`#` starts a comment, blank lines are ignored, booleans are
 * true/false, lists are written 512-256-64), and `--key value` on the command line
 * sets the same key. Unknown keys, malformed values and out-of-range numbers are
 * errors naming the file, line and key. ember_train_config_help lists every key with
 * its default. ember_train_config_format writes a config back in the same format (a
 * checkpoint keeps the config it was trained with).
 *
 * Data. `data` names Criteo TSV files (plain or gzip) or npy triplet prefixes
 * (comma-separated, read in order). Empty: the built-in synthetic Criteo-like set
 * (Kaggle cardinalities times `scale`, Zipf-skewed ids, labels from a hidden logistic
 * model with a known Bayes-optimal AUC), generated once into `data-dir`. Held-out
 * rows: `eval-data` when given, else the rows a hash puts in the `eval-split`
 * fraction (never trained on), or for synthetic data `eval-rows` rows after the
 * training rows. Ids are reduced modulo each table's rows: Kaggle's cardinalities
 * times `scale`, at most `table-cap`.
 *
 * Checkpoints (checkpoint-dir): every checkpoint-every steps and at the end, a
 * directory ckpt-STEP holding the dense parameters with their optimizer state
 * (model.safetensors), the embedding rows with their state (one safetensors file per
 * table, or the LMDB store committed durably when `lmdb` is set), the config
 * (train.conf) and last a MANIFEST (step, epoch, position in the epoch, loss sums)
 * written atomically: a checkpoint without its MANIFEST does not exist. `resume`
 * continues from the newest complete checkpoint exactly: the same weights at the end
 * as an uninterrupted run, since training is deterministic given the seed and the
 * thread count.
 *
 * Under mpirun (N ranks; ember_comm_create_default picks MPI). `batch` stays the global
 * batch: each rank's loader reads its batch / N rows of every global batch (an error
 * when N does not divide batch), the tables are sharded over the ranks by `plan`
 * (tablewise, rowwise, columnwise, minimax or auto) and the dense layers run data
 * parallel (ember_dlrm's "On N ranks"): the same training as one process up to reduction
 * order. With cache-ratio > 0 each rank's shard sits behind its own cache (cache-ratio,
 * cache-policy and host-ratio apply to the rows the rank holds; ember/parallel.h "Cached
 * shards"), which changes the memory, never the results; the shards' caches prepare each
 * batch when its ids arrive in the step's exchange, so lookahead does not apply to them.
 * `lmdb` gives each rank a store of its own, lmdb/rankRRRR; `warmup` warms each rank's
 * cache with the hottest rows it holds (and feeds plan minimax or auto); tier-hot and
 * tier-warm split the rows each rank holds by that rank's own counts (below).
 * Evaluation: each rank scores its slice of every held-out batch, the probabilities and
 * labels are gathered in global order and every rank computes the same metrics. Rank 0
 * writes the metrics file and predictions.
 * A checkpoint is written per rank: every rank writes the rows it holds with their state
 * (tableTT.rankRRRR.safetensors, or with lmdb its store's durable commit), then rank 0 the
 * plan (plan.bin), model.safetensors, train.conf and last the MANIFEST, which names the
 * world size, the plan and the rank files; the ranks agree after each part, so a
 * checkpoint whose MANIFEST exists has every rank's rows. It resumes at any number of
 * ranks, one process included, and any plan: each rank reads the rows it holds under its
 * new plan from whichever rank files hold them (a missing rank file is an
 * EMBER_ERR_NOT_FOUND naming it); an LMDB checkpoint resumes at the same number of ranks
 * and plan only (its stores hold local rows). Checkpoints of one process, and those of N
 * ranks written before rank files (whole tables, tableTT.safetensors), load at any world
 * size as before. `profile` traces rank 0. Every trainer call is then collective.
 *
 * Precision tiers (tier-hot, tier-warm, tier-rounding; ember/cache.h "Precision tiers").
 * With tier-hot or tier-warm above 0, the cache's host store keeps the hottest tier-hot
 * of each table's rows as f32 records, the next tier-warm as f16 and the rest
 * int8-rowwise, ranked by the `warmup` counts (`ember count -o FILE`), which are then
 * required: without them ember_train_config_validate fails naming `warmup`. Tiers need
 * the cache over the host store (cache-ratio > 0, no lmdb). Under mpirun each rank's
 * shard is tiered on its own (ember/parallel.h "Precision tiers per rank"): the
 * fractions apply to the rows the rank holds, ranked by the `warmup` counts of those
 * rows, and each rank rounds with a seed of its own (seed ^ 0x7135 ^ rank), so a run is
 * deterministic at a given number of ranks but its rounding differs from one process
 * (training stays within rounding of f32, as in one process). The report gives the
 * store's bytes beside the same rows as f32 records (summed over the ranks). Compressed
 * rows are rounded, so a resume is exact only up to that rounding.
 *
 * Plans from counts (under mpirun). plan = minimax shards the tables frequency-aware
 * (ember/partition.h MINIMAX: hot rows one by one to the least loaded rank, the hottest
 * replicated on every rank, the cold rest in id ranges) by the `warmup` counts, which it
 * requires (ember_train_config_validate fails naming `warmup` without them); the counts
 * must be of the training rows with ids reduced to the table rows, as the loader reduces
 * them. plan = auto builds the table-wise, row-wise and minimax plans the model would
 * build over the `warmup` counts (ember_dlrm_plan_choose) and takes the one with the
 * lowest predicted maximum lookups per rank (ties: the earlier of that order); rank 0
 * logs all three and the choice. Every rank reads the same counts, so all choose alike;
 * the chosen plan is built from the same counts (table-wise then places the busiest
 * tables first). Without counts, auto takes row-wise: uniform ids spread evenly over row
 * ranges, while whole tables of different sizes cannot. Column-wise (plan = columnwise)
 * is never chosen by auto: it splits every lookup over all ranks, so it always predicts
 * a perfect balance while it moves the most bytes. With N > 1 ranks `warmup` feeds the
 * plan and, with cache-ratio > 0, warms each rank's cache. In one process plan is ignored.
 *
 * Device memory (device-mem, offload). device-mem is one budget on the device tier
 * (DRAM standing in for it on a CPU-only machine) for everything placed there: the
 * cache's slots (or resident tables), the activations and the dense model data. With
 * offload = none the dense parameters, gradients and optimizer state are tensors of
 * their own on that tier, so a dense tower that does not fit fails at creation with
 * EMBER_ERR_OUT_OF_MEMORY (the message suggests offload). With offload = auto or static
 * they live in the chunks of the heterogeneous memory manager (ember/offload.h, ember/
 * dlrm.h "Offload"), which moves them between the host and the device tier and keeps
 * the whole under device-mem; static keeps offload-param-host of the parameter chunks
 * and offload-state-host of the optimizer-state chunks on the host. The weights do not
 * depend on it (bit for bit the same as offload = none), so offload is not one of the
 * keys a resume must agree on, and checkpoints are the same files either way.
 * offload needs device-mem (ember_train_config_validate fails naming both) and one
 * process (EMBER_ERR_UNSUPPORTED under mpirun). The report and the metrics lines give
 * the bytes the manager moved (offload_h2d_bytes, offload_d2h_bytes) and its evictions.
 * Leave some slack: the manager fills the budget with chunks and makes room for other
 * data as its first step saw it before each op, so a buffer allocated later beside it
 * (the cache's ring of prepared batches fills over the first lookahead + 4 steps) can be
 * refused with EMBER_ERR_OUT_OF_MEMORY when the chunks leave less than that free.
 *
 * Thread safety: a trainer is used by one thread at a time.
 */
#ifndef EMBER_TRAIN_H
#define EMBER_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "ember/cache.h"
#include "ember/dense.h"
#include "ember/dlrm.h"
#include "ember/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_TRAIN_PATH_MAX 1024
/** ember_train_config.plan: pick table-wise, row-wise or minimax under mpirun (see "Plans from counts"). */
#define EMBER_TRAIN_PLAN_AUTO (-1)

/** ember_train_config.offload: where the dense model data lives (see "Device memory"). */
typedef enum ember_train_offload {
    EMBER_TRAIN_OFFLOAD_NONE,   /* the layers' own tensors, which device-mem must hold */
    EMBER_TRAIN_OFFLOAD_AUTO,   /* chunks under device-mem, EMBER_OFFLOAD_AUTO */
    EMBER_TRAIN_OFFLOAD_STATIC, /* chunks under device-mem, EMBER_OFFLOAD_STATIC with the fractions */
    EMBER_TRAIN_OFFLOAD_COUNT
} ember_train_offload;

/** Every field has a key of the same name with '-' for '_' (see ember_train_config_help). */
typedef struct ember_train_config {
    /* data */
    char data[EMBER_TRAIN_PATH_MAX];      /* TSV files / npy prefixes, comma-separated; "": synthetic */
    char eval_data[EMBER_TRAIN_PATH_MAX]; /* held-out file(s); "": a split of data */
    double eval_split;                    /* held-out fraction of data without eval_data */
    char data_dir[EMBER_TRAIN_PATH_MAX];  /* where synthetic data is generated */
    int64_t rows, eval_rows;              /* synthetic: training and held-out rows */
    double scale;                         /* table rows: Kaggle cardinalities times scale */
    int64_t table_cap;                    /* table rows at most (0: no cap) */
    int64_t shuffle;                      /* shuffle buffer in rows (0: file order) */
    uint64_t seed;
    /* model */
    int emb_dim;
    int64_t bottom[EMBER_DLRM_MAX_LAYERS], top[EMBER_DLRM_MAX_LAYERS]; /* 0-terminated */
    ember_dlrm_interaction interaction;
    int dcn_layers, dcn_rank;
    /* training */
    int64_t batch;
    int epochs;
    int64_t max_steps;                    /* stop after this many steps in all (0: no limit) */
    float lr, sparse_lr;                  /* sparse_lr 0: lr */
    ember_optim_kind optimizer;           /* dense layers */
    int sparse_optimizer;                 /* an ember_sparse_optim, or -1: as optimizer */
    int threads;                          /* 0: ember_get_num_threads() */
    ember_matmul_precision matmul_precision; /* of the dense layers' products: f32 (default) or bf16
                                             (ember_set_matmul_precision, process-wide from
                                             ember_trainer_create on; refused where the CPU cannot) */
    int plan;                             /* under mpirun: an ember_plan_kind (EMBER_PLAN_TABLEWISE by
                                             default; _MINIMAX needs warmup) or EMBER_TRAIN_PLAN_AUTO (see
                                             "Plans from counts" above) */
    /* cache */
    double cache_ratio;                   /* device slots per table / rows; 0: resident */
    ember_cache_policy cache_policy;
    int lookahead;                        /* batches prepared ahead */
    char lmdb[EMBER_TRAIN_PATH_MAX];      /* LMDB store directory ("": the host store) */
    double host_ratio;                    /* LMDB: DRAM cache in front of the disk */
    char warmup[EMBER_TRAIN_PATH_MAX];    /* frequency-count file to warm the cache and for plan minimax
                                             or auto ("": none) */
    double tier_hot, tier_warm;           /* precision tiers of the host store: fractions of each
                                             table's rows kept f32 / f16, the rest int8-rowwise
                                             (0 and 0: no tiers); need warmup counts */
    ember_cache_rounding tier_rounding;   /* how rows are compressed into the warm and cold tiers */
    /* checkpoints and outputs */
    char checkpoint_dir[EMBER_TRAIN_PATH_MAX];
    int64_t checkpoint_every;             /* steps (0: only at the end) */
    int resume;
    char metrics[EMBER_TRAIN_PATH_MAX];   /* JSON lines ("": none) */
    int64_t metrics_every;                /* steps between metrics lines */
    int64_t eval_every;                   /* steps between evaluations (0: only at the end) */
    char profile[EMBER_TRAIN_PATH_MAX];   /* Chrome trace of ember_trainer_run ("": none); summary in PATH.txt */
    int64_t device_mem;                   /* device-tier budget in bytes for the cache's slots, the dense
                                             layers and the activations together (0: unlimited) */
    ember_train_offload offload;          /* dense model data: own tensors (none) or offloaded chunks
                                             under device-mem (auto, static); needs device-mem */
    double offload_param_host;            /* static: fraction of the parameter (and gradient) chunks
                                             kept on the host */
    double offload_state_host;            /* static: fraction of the optimizer-state chunks on the host */
} ember_train_config;

/** The defaults: the embedded job (synthetic data, DLRM, 1.5% cache over the host store). */
void ember_train_config_defaults(ember_train_config *cfg);
/**
 * Set one key from its text value.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (unknown key, or a value that does not
 *         parse or is out of range: the message names the key and the accepted values).
 */
ember_status ember_train_config_set(ember_train_config *cfg, const char *key, const char *value);
/**
 * Apply a config file (keys as ember_train_config_set). Stops at the first error.
 * @return EMBER_OK; EMBER_ERR_IO (cannot read); EMBER_ERR_PARSE (not `key = value`,
 *         naming file and line); EMBER_ERR_INVALID_ARGUMENT (unknown key or bad value,
 *         naming file and line).
 */
ember_status ember_train_config_load(ember_train_config *cfg, const char *path);
/** The same from text in memory; label names it in messages. */
ember_status ember_train_config_parse(ember_train_config *cfg, const char *text, const char *label);
/** Write every key as `key = value` lines; like snprintf, returns the length needed. */
size_t ember_train_config_format(const ember_train_config *cfg, char *buf, size_t n);
/** Check the whole config (ranges, combinations) before any work starts. */
ember_status ember_train_config_validate(const ember_train_config *cfg);
/** Every key, its value type, default and meaning, one per line, for --help. */
void ember_train_config_help(FILE *f);
/** Whether key names a boolean (command-line flags without a value). */
int ember_train_config_is_flag(const char *key);

typedef struct ember_trainer ember_trainer;

/** What a progress callback sees after each step. */
typedef struct ember_train_progress {
    int64_t step, steps;   /* steps done, and planned (0 when unknown: TSV of unknown length) */
    int epoch;
    int64_t samples;
    float loss;            /* this step's mean loss */
    double samples_per_s;  /* since the start of this run */
    double eta_s;          /* NaN when unknown */
    double hit_rate;       /* cache hit rate by lookups so far (NaN: resident) */
} ember_train_progress;
/** Return non-zero to stop training (ember_trainer_run then returns EMBER_ERR_CANCELLED). */
typedef int (*ember_train_callback)(const ember_train_progress *p, void *user);

/** Messages of long set-up work (data generation, resume), for the caller to show. */
typedef void (*ember_train_log_fn)(const char *msg, void *user);

/**
 * Validate cfg, prepare the data (generating the synthetic set if needed), build the
 * model and its cache, warm the cache, and with cfg->resume load the newest complete
 * checkpoint of checkpoint-dir (EMBER_ERR_NOT_FOUND when there is none).
 * @return EMBER_OK; the errors of ember_train_config_validate; EMBER_ERR_IO and
 *         EMBER_ERR_NOT_FOUND (paths); data, model, cache and checkpoint errors;
 *         EMBER_ERR_STATE (resume with a config whose model differs from the checkpoint's).
 */
ember_status ember_trainer_create(const ember_train_config *cfg, ember_train_log_fn log, void *log_user,
                                  ember_trainer **out);
void ember_trainer_destroy(ember_trainer *t);

/**
 * Train the configured epochs (from where a resumed run stopped), writing metrics and
 * checkpoints; cb (may be NULL) after every step.
 * @return EMBER_OK; EMBER_ERR_CANCELLED (cb asked to stop; a checkpoint is written
 *         first when checkpoint-dir is set); data, model, cache and I/O errors.
 */
ember_status ember_trainer_run(ember_trainer *t, ember_train_callback cb, void *user);
/**
 * Metrics of the model on held-out rows: path (TSV / npy prefixes, comma-separated),
 * or NULL for the configured held-out rows.
 */
ember_status ember_trainer_evaluate(ember_trainer *t, const char *path, ember_metrics *out);
/** Click probabilities of every row of path, one per line ("%.6f\n"), to out. */
ember_status ember_trainer_predict(ember_trainer *t, const char *path, FILE *out, int64_t *rows);
/** Write a checkpoint now (needs checkpoint-dir). */
ember_status ember_trainer_checkpoint(ember_trainer *t);

typedef struct ember_train_report {
    int world;                       /* ranks that trained (1 without mpirun) */
    int64_t steps, samples;          /* this run */
    int64_t total_steps;             /* including steps before a resume */
    int64_t resumed_from;            /* step of the checkpoint resumed, -1 if none */
    double train_seconds, samples_per_s;
    double mean_loss;                /* over this run's steps */
    int evaluated;
    ember_metrics eval;              /* of the last evaluation */
    double bayes_auc;                /* synthetic data: the Bayes-optimal AUC; NaN otherwise */
    int cached;                      /* tables behind a cache */
    ember_cache_stats cache;
    int64_t table_rows, table_bytes; /* all tables: rows, bytes of weights + state */
    ember_memory_stats memory;
    int offloaded;                   /* dense model data in the offload manager's chunks */
    ember_offload_stats offload;     /* its chunks, transfers (since the model was built), evictions */
    char data_desc[EMBER_TRAIN_PATH_MAX + 64]; /* what was trained on */
} ember_train_report;

ember_status ember_trainer_report(ember_trainer *t, ember_train_report *out);
/** The report as text (the CLI's summary) to f. */
void ember_train_report_print(const ember_train_report *r, const ember_train_config *cfg, FILE *f);

ember_dlrm *ember_trainer_model(ember_trainer *t);
/** This process's rank and the number of ranks (0 and 1 without mpirun). */
int ember_trainer_rank(const ember_trainer *t);
int ember_trainer_world(const ember_trainer *t);
const ember_train_config *ember_trainer_config(const ember_trainer *t);

/**
 * The config a checkpoint directory's newest complete checkpoint was trained with
 * (for `ember eval` / `ember predict`, which rebuild the model from it).
 * @return EMBER_OK; EMBER_ERR_NOT_FOUND (no complete checkpoint); parse errors.
 */
ember_status ember_train_checkpoint_config(const char *dir, ember_train_config *cfg);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_TRAIN_H */
