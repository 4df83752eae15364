/*
 * ember/dlrm.h: the DLRM model (Naumov et al. 2019) built on the graph engine and the
 * embedding-bag collection, with its training step.
 *
 *   dense (B, 13) -> bottom MLP (ReLU after every layer) -> z (B, d_z)
 *   sparse ids    -> one embedding bag per table (sum pooling) -> e_t (B, d_t)
 *   interaction, one of:
 *     EMBER_DLRM_DOT       the pairwise dot products of the T + 1 vectors [z, e_1..e_T]
 *                          (strict lower triangle, pairs (1,0), (2,0), (2,1), ...),
 *                          concatenated after z: width d + T (T + 1) / 2
 *     EMBER_DLRM_DOT_SELF  the same with the diagonal (pairs (0,0), (1,0), (1,1), ...,
 *                          the reference DLRM's arch_interaction_itself): width
 *                          d + (T + 1) (T + 2) / 2
 *     EMBER_DLRM_DCN       DCNv2 cross layers (Wang et al. 2020, torchrec's CrossNet and
 *                          LowRankCrossNet) over x0 = [z | e_1 .. e_T] (B, N),
 *                          N = d_z + sum_t d_t, for l = 0 .. dcn_layers - 1:
 *                            full rank:  x_{l+1} = x0 * (x_l W_l + b_l) + x_l
 *                            dcn_rank r: x_{l+1} = x0 * ((x_l V_l) U_l + b_l) + x_l
 *                          (* element-wise), and the top MLP reads x_L (B, N) alone
 *   top MLP (ReLU between layers, none after the last) -> logit (B, 1) -> BCE
 * The dot interactions need d_z = d_t = emb_dim for every table; DCN takes any bottom
 * MLP output and per-table dims (table_dims).
 *
 * Cross-layer parameters, stored (in, out) for row vectors like every ember layer:
 * "dcn.<l>.weight" W_l (N, N) = torchrec's kernels[l] transposed; low rank
 * "dcn.<l>.v" V_l (N, r) and "dcn.<l>.u" U_l (r, N) = torchrec's V_kernels[l] and
 * W_kernels[l] transposed (its x0 * (W (V x_l) + b) + x_l on column vectors); and
 * "dcn.<l>.bias" b_l (N).
 *
 * Initialisation, all from one Philox stream of the config's seed, in this order:
 * bottom MLP, tables, cross layers, top MLP. Dense layers as torch.nn.Linear does
 * (weight and bias uniform in +-1/sqrt(in)); embedding rows uniformly in
 * [-1/sqrt(rows), 1/sqrt(rows)] as the DLRM reference does; cross layers as torchrec
 * does: every W_l, V_l and U_l Xavier-normal, std sqrt(2 / (fan_in + fan_out)) (layer by
 * layer, V_l before U_l), biases zero. A training step runs forward, backward, the
 * fused sparse update of the embedding rows and the dense optimizer.
 *
 *     ember_dlrm *m;
 *     ember_dlrm_create(&(ember_dlrm_config){.num_tables = 26, .table_rows = rows,
 *                                             .emb_dim = 64, .batch = 2048, .seed = 1}, &m);
 *     float loss;
 *     ember_dlrm_train_step(m, dense, &jagged, labels, &loss);
 *
 * On N ranks (config.comm of size N > 1; DESIGN.md section 8). Every rank builds the
 * same model from the same config; config.batch is then this rank's batch (the global
 * batch is N times it). The tables become one ember_sharded_ebc spread over the ranks
 * by a plan of config.plan (ember/partition.h: table-wise, row-wise, column-wise or the
 * frequency-aware minimax), behind the graph's embedding-bag node (an
 * ember_ebc_backend), on a duplicate of the communicator; the dense layers are
 * replicated and trained under ember_ddp. A step on rank r: forward (the bottom
 * MLP on the rank's rows; the embedding node looks every id up on its owner: an
 * all-to-all of ids, pooled rows back); backward (dense gradients all-reduced MEAN in
 * buckets, overlapped with backward; the embedding node sends dL/d(pooled) to the
 * owners, which apply the fused sparse update to their rows); the dense optimizer
 * step (identical on every rank). This is the one-process step on the global batch
 * (the ranks' batches concatenated in rank order) up to reduction order: table-wise,
 * the embedding half is bit-exact; row-wise and minimax reorder each bag's sum into
 * per-owner partial sums (and all-reduce the gradients of replicated rows); column-wise
 * moves columns between the kernel's vector body and scalar tail (an ulp or so); the
 * dense gradients differ by the split of the batch's sum into per-rank sums. Column
 * slices keep their own optimizer state and norms, so column-wise refuses what needs a
 * whole row at once: rowwise Adagrad, max_grad_norm and int8-rowwise rows. train_step,
 * predict, read_table and create are collective: every rank calls them in the same
 * order; write_table is local (each rank keeps the rows it holds, so every rank passes
 * the whole rows). With config.cache, each rank's shard sits behind its own cache
 * (ember/parallel.h "Cached shards": the config over the shard's rows, an LMDB store
 * per rank in path/rankRRRR, no look-ahead, so ember_dlrm_submit is a no-op), and the
 * training equals the resident shards' bit for bit; ember_dlrm_cache is this rank's.
 * The cache's precision tiers tier each rank's own rows (ember/parallel.h "Precision
 * tiers per rank"): then training is within rounding of the untiered shards.
 *
 * The plan is built from config.freq, the tables' lookup counts (`ember count`,
 * ember_freq_load): minimax needs them (its hot rows go one by one to the least loaded
 * rank, the hottest replicated on every rank), table-wise places the busiest tables
 * first by them, row-wise and column-wise cut by ids and columns alone. Every rank must
 * pass the same counts (ember_sharded_ebc_create checks that the plans agree).
 * ember_dlrm_plan_choose compares kinds for a config before any model exists:
 *
 *     ember_freq *f;
 *     ember_freq_load("train.freq", NULL, &f);          // counts of the training days
 *     ember_dlrm_config c = {..., .comm = world, .freq = f};
 *     static const ember_plan_kind kinds[] = {EMBER_PLAN_TABLEWISE, EMBER_PLAN_ROWWISE,
 *                                             EMBER_PLAN_MINIMAX};
 *     ember_dlrm_plan_choose(&c, ember_comm_size(world), kinds, 3, &c.plan, NULL);
 *     ember_dlrm_create(&c, &m);                        // the counts are not kept
 *     ember_freq_destroy(f);
 *
 * Offload (config.offload; DESIGN.md section 7). A dense tower larger than the device
 * budget trains through the heterogeneous memory manager (ember/offload.h): once the
 * graph is built, the manager adopts every dense parameter, its gradient and the dense
 * optimizer's state into chunks of config.mm (NULL: the default manager) and then puts
 * device_budget on its device tier, the one budget that the chunks, the activations,
 * resident tables and the cache's slots on that tier share. Build on the device tier
 * with that tier unlimited (the budget comes from device_budget):
 *
 *     ember_memory *mm;                                  // device tier unlimited while building
 *     ember_memory_create(&(ember_memory_config){.device = EMBER_CPU}, &mm);
 *     ember_offload_config oc = {.policy = EMBER_OFFLOAD_AUTO, .device_budget = 256u << 20};
 *     ember_dlrm_config c = {..., .mm = mm, .tier = EMBER_TIER_DEVICE, .offload = &oc};
 *     ember_dlrm_create(&c, &m);                         // OUT_OF_MEMORY: what stays live on
 *                                                        // the device exceeds the budget
 * A training step is then ember_offload_run (forward, backward with the embedding node's
 * fused sparse update: the manager only places the adopted tensors, other nodes run as
 * they would) and ember_offload_optimizer_step; predict is the forward under the same
 * manager. The same kernels run on the same bits in the same order, so losses, weights
 * and predictions equal those of the model without offload, bit for bit, under any
 * budget. The dense optimizer is then one optimizer per chunk (ember_offload_get_optimizer
 * on ember_dlrm_offload(m)) and ember_dlrm_optimizer returns NULL. Parameters (the graph's
 * tensors) and the state are readable between steps; write them (a checkpoint restore)
 * only after ember_offload_flush. Not yet on N ranks (EMBER_ERR_UNSUPPORTED).
 *
 * Thread safety: a model is used by one thread at a time.
 */
#ifndef EMBER_DLRM_H
#define EMBER_DLRM_H

#include <stdint.h>

#include "ember/cache.h"
#include "ember/dense.h"
#include "ember/embedding.h"
#include "ember/graph.h"
#include "ember/offload.h"
#include "ember/optim.h"
#include "ember/parallel.h"
#include "ember/partition.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_DLRM_MAX_LAYERS 16

/** How the bottom MLP's output and the pooled embeddings meet. */
typedef enum ember_dlrm_interaction {
    EMBER_DLRM_DOT,      /* pairwise dot products, strict lower triangle (default) */
    EMBER_DLRM_DOT_SELF, /* the same with the diagonal (each vector with itself) */
    EMBER_DLRM_DCN,      /* DCNv2 cross layers over [z | e_1 .. e_T] */
    EMBER_DLRM_INTERACTION_COUNT
} ember_dlrm_interaction;

typedef struct ember_dlrm_config {
    int num_dense;               /* dense features; 0 = 13 */
    int num_tables;              /* categorical features, one table each (>= 1) */
    const int64_t *table_rows;   /* (num_tables,) rows per table */
    int emb_dim;                 /* embedding dim of every table unless table_dims, and the bottom
                                    MLP's output for the dot interactions; 0 = 64 */
    int64_t bottom[EMBER_DLRM_MAX_LAYERS]; /* bottom MLP sizes after the input, ending with
                                              emb_dim (dot interactions) or any size (DCN);
                                              all 0 = {512, 256, emb_dim} */
    int64_t top[EMBER_DLRM_MAX_LAYERS];    /* top MLP sizes after the interaction, ending with
                                              1; all 0 = {1024, 1024, 512, 256, 1} */
    int64_t batch;               /* samples per step (> 0) */
    ember_row_format row_format; /* embedding storage (default f32) */
    ember_sparse_optim_config sparse_optim; /* embedding rows (default SGD) */
    ember_optimizer_config dense_optim;     /* dense layers; kind and lr 0 = SGD, lr = sparse lr */
    float sparse_lr;             /* learning rate of the embedding rows; 0 = 0.01 */
    uint64_t seed;
    ember_memory *mm;            /* NULL: ember_memory_default() */
    ember_tier tier;             /* HOST (default) or DEVICE */
    /* Tables behind a block-wise cache (ember/cache.h) instead of resident: NULL =
       resident. Its collection field is replaced by the model's tables and sparse
       optimizer; ratio or slots, policy, lookahead, store and path are the caller's.
       mm and tier above are ignored for the tables (the cache places them). On N ranks
       each rank's shard gets a cache of its own from it (see "On N ranks"). */
    const ember_cache_config *cache;
    ember_dlrm_interaction interaction; /* default EMBER_DLRM_DOT */
    int dcn_layers;              /* DCN: cross layers; 0 = 3. Must be 0 for the dot interactions */
    int dcn_rank;                /* DCN: rank r of each layer's W_l = V_l U_l (0 = full rank N x N;
                                    any r >= 1 is taken). Must be 0 for the dot interactions */
    const int *table_dims;       /* (num_tables,) per-table dims (>= 1), copied; NULL: emb_dim for
                                    all. Dims other than emb_dim need EMBER_DLRM_DCN */
    int keep_tables;             /* non-zero: leave the rows as the cache's store holds them (an
                                    existing LMDB store being resumed) instead of initialising them */
    /* Ranks (see "On N ranks"): NULL or a communicator of size 1: one process. Not owned:
       keep it alive while the model is. */
    ember_comm *comm;
    ember_plan_kind plan;        /* with comm: EMBER_PLAN_TABLEWISE (default), _ROWWISE, _COLUMNWISE
                                    or _MINIMAX (needs freq) */
    /* With comm: lookup counts of the tables for the plan (table t of the counts is table t,
       its ids < table_rows[t]); NULL: none. Read by ember_dlrm_create, not kept. Ignored in
       one process. */
    const ember_freq *freq;
    /* Placement of the dense model data (see "Offload"): NULL = none, the layers' own
       tensors and one dense optimizer (the default). Else the heterogeneous memory manager
       takes them: its graph and optim fields are replaced by the model's graph and dense
       optimizer (dense_optim as completed above); policy (AUTO, or STATIC with
       param_host_fraction and state_host_fraction), device_budget, chunk_elems, lookahead
       and sync are the caller's; mm NULL = the model's. Read by ember_dlrm_create, not kept.
       One process only. */
    const ember_offload_config *offload;
} ember_dlrm_config;

typedef struct ember_dlrm ember_dlrm;

/**
 * Build the graph, the tables and the optimizers.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (naming the field): num_dense, num_tables,
 *         emb_dim, batch or table_rows unset or < 1, interaction out of range, dcn_layers
 *         or dcn_rank negative or set without EMBER_DLRM_DCN, table_dims[t] < 1; on N
 *         ranks a plan kind out of range, or MINIMAX without freq;
 *         EMBER_ERR_UNSUPPORTED: offload, or cache tiers by a budget, on N ranks (tiers by
 *         fractions or maps tier each rank's shard: ember/parallel.h); COLUMNWISE with rowwise
 *         Adagrad, max_grad_norm or int8-rowwise rows;
 *         EMBER_ERR_SHAPE: with a dot interaction, table_dims[t] or the bottom MLP's last
 *         size other than emb_dim; the top MLP not ending with 1; EMBER_ERR_OUT_OF_MEMORY;
 *         ember_plan_build's errors (EMBER_ERR_INDEX: a counted id outside its table);
 *         with offload, ember_offload_create's (a bad policy or fraction, a budget below
 *         what stays live on the device).
 */
ember_status ember_dlrm_create(const ember_dlrm_config *cfg, ember_dlrm **out);
void ember_dlrm_destroy(ember_dlrm *m);

/**
 * Choose among plan kinds for cfg on world ranks before creating the model: each of
 * kinds[0 .. n) is built as ember_dlrm_create would build it (cfg->freq's counts; the
 * plan's rows, dims and record bytes of cfg's tables), and *out gets the one with the
 * lowest predicted maximum lookups per rank (ember_plan_stats.max_lookups), ties going
 * to the earlier kind. Local: cfg->comm is not used, so every rank that passes the same
 * cfg and counts chooses alike. Without counts every load is 0 (the first kind wins) and
 * MINIMAX is refused.
 * Column-wise spreads every lookup over all ranks, so it always looks balanced by this
 * measure (its cost is communication): leave it out of kinds to compare the others.
 * @param[out] stats NULL or n entries: each plan's summary for cfg->batch samples per rank.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULLs, n < 1, world < 2 or beyond
 *         EMBER_PLAN_MAX_WORLD, num_tables or table_rows unset, and the plan errors of
 *         ember_dlrm_create, naming the kind); ember_plan_build's errors.
 */
ember_status ember_dlrm_plan_choose(const ember_dlrm_config *cfg, int world, const ember_plan_kind *kinds, int n,
                                    ember_plan_kind *out, ember_plan_stats *stats);

/**
 * One step on a batch of cfg->batch samples: dense (B, num_dense) f32, sparse one
 * feature per table (host arrays), labels (B) in [0, 1]. *loss gets the batch's mean
 * BCE before the update (may be NULL); on N ranks the mean over the ranks of their
 * batches' mean BCE (the global batch's), the same on every rank.
 */
ember_status ember_dlrm_train_step(ember_dlrm *m, const float *dense, const ember_jagged *sparse,
                                   const float *labels, float *loss);
/**
 * With a cache: queue the sparse part of a future batch so the cache prepares its rows
 * on its worker while earlier steps compute (up to the cache's lookahead). Batches
 * must then be trained in the order submitted, passing the same ember_jagged pointer;
 * its arrays must stay valid until that step. Without a cache, and on N ranks (whose
 * shards' caches see a batch's ids only in its forward), a no-op.
 * @return EMBER_OK; ember_cache_submit's errors.
 */
ember_status ember_dlrm_submit(ember_dlrm *m, const ember_jagged *sparse);
/** Batches submitted and not yet trained. */
int ember_dlrm_pending(const ember_dlrm *m);

/** Click probabilities (B) for a batch, without training (dropout-free, no update).
    With a cache, no submitted batch may be pending (EMBER_ERR_STATE). */
ember_status ember_dlrm_predict(ember_dlrm *m, const float *dense, const ember_jagged *sparse, float *probs);

/** The graph (parameters named "bottom.<i>.weight", "top.<i>.bias", "dcn.<i>.weight", ...)
    and the tables. */
ember_graph *ember_dlrm_graph(ember_dlrm *m);
/** The tables; on N ranks this rank's resident shard (NULL when it holds no rows or the
    shard is cached: ember_dlrm_sharded_tables, ember_sharded_ebc_read_local). */
ember_ebc *ember_dlrm_tables(ember_dlrm *m);
/** The sharded tables on N ranks, NULL in one process. */
ember_sharded_ebc *ember_dlrm_sharded_tables(ember_dlrm *m);
/** The plan of the tables on N ranks (owned by the model, valid while it lives; the same
    on every rank), NULL in one process. */
const ember_plan *ember_dlrm_plan(const ember_dlrm *m);
/** This rank and the number of ranks (0 and 1 in one process). */
int ember_dlrm_rank(const ember_dlrm *m);
int ember_dlrm_world(const ember_dlrm *m);
/** The dense optimizer; NULL with offload (the manager's per-chunk optimizers instead). */
ember_optimizer *ember_dlrm_optimizer(ember_dlrm *m);
/** The manager of the dense model data with config.offload, else NULL (see "Offload";
    owned by the model). */
ember_offload *ember_dlrm_offload(ember_dlrm *m);
/** The cache in front of the tables, or NULL when they are resident; on N ranks the cache
    of this rank's shard (its tables are the shard's; NULL when it holds no rows). */
ember_cache *ember_dlrm_cache(ember_dlrm *m);
/** Steps trained so far (the sparse optimizer's step count). */
int64_t ember_dlrm_step(const ember_dlrm *m);
/** Set the step count (restoring a checkpoint). */
ember_status ember_dlrm_set_step(ember_dlrm *m, int64_t step);

/**
 * Embedding rows of table t, wherever they live (resident table, cache slots, host
 * store, disk): weights f32 (count, dim) and optimizer state f32 (count, state
 * floats); either pointer may be NULL. Needs no submitted batch pending. On N ranks,
 * read_table is collective (every rank gets the whole rows, each value from its
 * holder) and write_table local (every rank passes the whole rows and keeps its own).
 * @return EMBER_OK, EMBER_ERR_INDEX, EMBER_ERR_STATE, store errors, the communicator's.
 */
ember_status ember_dlrm_read_table(ember_dlrm *m, int t, int64_t first, int64_t count, float *weights,
                                   float *state);
ember_status ember_dlrm_write_table(ember_dlrm *m, int t, int64_t first, int64_t count, const float *weights,
                                    const float *state);
/** Optimizer state floats per row of table t (0 for SGD). */
int64_t ember_dlrm_state_floats(const ember_dlrm *m, int t);
/** Rows and dim of table t. */
int64_t ember_dlrm_table_rows(const ember_dlrm *m, int t);
int ember_dlrm_table_dim(const ember_dlrm *m, int t);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_DLRM_H */
