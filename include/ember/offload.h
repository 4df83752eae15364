/*
 * ember/offload.h: the heterogeneous memory manager (DESIGN.md section 7). It trains a
 * graph whose parameters, gradients and optimizer state together exceed the device
 * budget, by keeping that model data in chunks that move between the host and the
 * device tier of one memory manager, the same manager (and budget) from which the
 * activations, the embedding cache's slots and everything else on the device draw.
 *
 *     ember_memory *mm;                      // device tier unlimited while building
 *     ember_memory_create(&(ember_memory_config){.device = EMBER_CPU}, &mm);
 *     ember_graph *g;                        // parameters and activations on the device tier
 *     ember_graph_create(&(ember_graph_params){.mm = mm, .tier = EMBER_TIER_DEVICE}, &g);
 *     ... build the model, ember_graph_build_backward(g, loss) ...
 *     ember_optimizer_config oc = ember_optimizer_defaults(EMBER_OPTIM_ADAM);
 *     ember_offload *off;
 *     ember_offload_create(&(ember_offload_config){.graph = g, .optim = &oc,
 *                                                  .device_budget = 256u << 20}, &off);
 *     for (...) {
 *         ... write the inputs ...
 *         ember_offload_step(off);           // forward, backward, optimizer step
 *     }
 *     ember_offload_destroy(off);            // parameters get their own memory back
 *     ember_graph_destroy(g);
 *
 * Chunks. ember_offload_create takes over ("adopts") every parameter of the graph, its
 * gradient and its optimizer state: the tensors keep their handles, but their bytes
 * now live in chunks, one list per kind (parameters, gradients, optimizer state).
 * Parameters are packed in first-use order (the executor's schedule), never split
 * across chunks; gradient and state chunks mirror the parameter chunks (state chunk c
 * holds the state of the tensors of parameter chunk c, the state of one tensor being
 * its optimizer's (buffers, numel) block), so one chunk index names everything one
 * optimizer step needs. The chunk size is searched (ember_chunk_size_search) between
 * the largest tensor and four times it for the least padding. Every chunk has a host
 * copy (the backing store: HOST tier, PINNED when the device is a GPU) and, while it
 * is placed there, a device copy; a tensor's storage points at the device copy when
 * that copy is valid, else at the host copy, so its value is readable at any time
 * between calls. Gradients of a FREE chunk hold no data, so placing or evicting one
 * copies nothing; parameters are only written by the optimizer, so evicting a clean
 * parameter chunk copies nothing either.
 *
 * Tensor states. Each adopted tensor (parameter, gradient, state) has a state; a chunk
 * whose tensors include one in COMPUTE is pinned where it is. The legal transitions
 * (anything else is EMBER_ERR_STATE naming the tensor, its kind, from and to):
 *
 *     FREE ------------> HOLD              data arrives (adoption, a restore)
 *     FREE ------------> COMPUTE           an op writes it (a gradient's producer)
 *     HOLD ------------> COMPUTE           an op reads or updates it
 *     HOLD ------------> FREE              released
 *     HOLD_AFTER_BWD --> COMPUTE           read again (backward, optimizer, next forward)
 *     HOLD_AFTER_BWD --> HOLD              the iteration ends without an update
 *     READY_FOR_REDUCE > COMPUTE           reduced or consumed (optimizer), or overwritten
 *     READY_FOR_REDUCE > FREE              discarded
 *     COMPUTE ---------> HOLD              a forward op or the optimizer is done with it
 *     COMPUTE ---------> HOLD_AFTER_BWD    a backward op is done reading it
 *     COMPUTE ---------> READY_FOR_REDUCE  a gradient is complete
 *     COMPUTE ---------> FREE              the optimizer consumed a gradient
 *
 * During a step: parameters HOLD -> COMPUTE -> HOLD (forward) -> COMPUTE ->
 * HOLD_AFTER_BWD (backward) -> COMPUTE -> HOLD (optimizer); gradients FREE -> COMPUTE
 * -> READY_FOR_REDUCE (backward) -> COMPUTE -> FREE (optimizer); state HOLD ->
 * COMPUTE -> HOLD (optimizer). An op that reads a FREE tensor is refused the same way.
 *
 * Statistics and placement. The manager installs an executor hook on the graph
 * (engine/graph_internal.h). The first iteration (forward, backward, optimizer step)
 * is a warm-up: before every op it records the device memory used by non-model data
 * (the manager's live device bytes minus the device copies of chunks) and the chunks
 * the op needs on the device; meanwhile chunks are placed on demand, evicting the
 * least recently used. Later iterations use that trace:
 *   - AUTO: before each op, room is made under the budget (less the non-model growth
 *     the trace predicts) by evicting the movable chunk whose next use is furthest
 *     away (Belady; a chunk whose device copy dies before its next use, like a
 *     parameter the host optimizer will overwrite, counts as never used again, and
 *     clean chunks go before dirty ones at equal distance). The chunks of the next
 *     `lookahead` ops that need any are prefetched on a side thread (a side CUDA
 *     stream on a GPU; on a CPU-only machine only when `sync` asks for one, see the
 *     config), evicting only clean chunks used later than the prefetched
 *     one; a prefetch the side thread has not started when its op comes is done by
 *     the calling thread. Finished gradients whose device copy is dead are written
 *     back on the side thread and released. After the warm-up, optimizer-state
 *     chunks are kept on the device only when every parameter and gradient chunk fits
 *     there too (with the non-model peak); otherwise the state stays on the host.
 *   - STATIC: the last param_host_fraction of the parameter chunks (with their
 *     gradients) and state_host_fraction of the state chunks live on the host: they
 *     visit the device for the ops that need them and leave when room is needed, least
 *     recently used first; the others are placed at creation and never leave
 *     (EMBER_ERR_OUT_OF_MEMORY at creation if they do not fit). No trace, no prefetch.
 *   - NAIVE: the baseline. Everything lives on the host; each op copies the tensors
 *     it uses to the device tier and back, the optimizer step copies a chunk's
 *     parameters, gradients and state in and out. No trace, no prefetch.
 * After the warm-up, every policy keeps released device buffers of a chunk's size for
 * the next placement (no page faults or cudaMalloc per fetch) unless the trace says
 * non-model data needs the room.
 * The optimizer step runs chunk by chunk where the chunk's state lives: on the host
 * (OpenMP) for host state, after the chunk's gradients were written back; on the
 * device (the GPU kernels) for device state. On a CPU-only machine both tiers are
 * DRAM: a transfer is a memcpy and "device" compute is the CPU kernels.
 *
 * Results do not depend on the policy or the budget: the same kernels run on the same
 * bits in the same order, so training under any budget equals training with
 * unlimited memory, bit for bit (tests/test_offload.c checks it).
 *
 * Budget. Building the graph allocates its parameters (and planning its gradients)
 * on the graph's tier before the manager exists, so build with the device tier's
 * budget unlimited (or large enough) and give the real budget as device_budget: the
 * manager applies it to the device tier once the model data lives in chunks (on the
 * host) and resets the tier's peaks. From then on the memory manager's peak device
 * bytes are the figure to check against the budget.
 *
 * Other allocations. The manager registers itself as the memory manager's reclaim
 * callback (one per memory manager; a second offload manager on the same one runs
 * without, stats.reclaim says which): a later allocation of other data on the device
 * tier (an embedding cache's staging buffer, a workspace) that would exceed the budget
 * first makes the manager drop device copies until it fits: idle buffers, then movable
 * chunks (not in use by an op, not fixed on the device by STATIC) by the eviction rule,
 * clean ones before dirty ones (which are written back). When even all of that would
 * not make the room, nothing moves and the allocation fails with EMBER_ERR_OUT_OF_MEMORY
 * as before. The allocation may come from any thread: while the manager is busy in one
 * of its calls (or the allocation comes from inside one) it gives nothing back, and on
 * a GPU a thread other than the manager's gets clean chunks only. Evicted chunks come
 * back when their ops need them; results do not change.
 *
 * ZeRO (config.comm with N > 1 ranks; DESIGN.md section 8). Every rank holds the same
 * model (rank 0's parameters are broadcast at creation) and trains on its own slice
 * of each global batch. Chunk c belongs to rank c mod N: only the owner has its
 * optimizer and its optimizer-state chunk (the others' are never allocated, so a
 * rank's state is about 1/N of the whole: stats.optim_state_bytes), and only the owner
 * steps it. ember_offload_optimizer_step then works in groups of N consecutive chunks
 * (one per rank): the gradient chunks of a group are reduce-scattered (MEAN, so each
 * owner receives the average of the ranks' gradients of its chunk; the others'
 * gradients are consumed), the owner steps its chunk where its state lives (host or
 * device, as without ZeRO), and the group's parameter chunks are all-gathered, every
 * rank receiving each chunk from its owner, so all ranks end the step with the same
 * parameter bits. The collectives run in place on the chunks' host copies: the host
 * copies of a group's parameter (and gradient) chunks are one block in rank order (the
 * last group padded to N chunks: up to N - 1 chunks of padding per kind), so no
 * staging buffer is needed; a gradient on the device is written back first and a
 * parameter chunk updated elsewhere loses its device copy. The communicator must have
 * its buffers on the CPU (mpi); all ranks create their managers in the same order over
 * the same graph and chunk_elems (checked at creation: EMBER_ERR_SHAPE on every rank),
 * and call the optimizer step together. Against one process training on the global
 * batch the parameters agree up to the order of the batch sums (each rank sums its
 * slice, the reduce-scatter adds the ranks' sums). Policy and budget may differ across
 * ranks. Forward and backward are not synchronised: they run on each rank's own data.
 * Without a communicator, or with a one-rank one, nothing of this happens.
 *
 * Profiler: every copy is an ember_profiler_transfer (host_to_device, device_to_host)
 * and, while the profiler runs, each op updates the counter track "offload" with the
 * bytes of tensors in each state and the bytes of chunks on the device.
 *
 * Thread safety: a manager, like its graph, is used from one thread at a time; it owns
 * one side thread for its transfers. Its reclaim callback (Other allocations) is the
 * exception: it may run on any thread, serialised with the manager's calls. Write
 * parameters (a checkpoint restore) only after ember_offload_flush. Stream rule (CUDA):
 * steps are queued on the calling thread's current stream; transfers that must overlap
 * run on the side stream.
 */
#ifndef EMBER_OFFLOAD_H
#define EMBER_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "ember/graph.h"
#include "ember/memory.h"
#include "ember/optim.h"
#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ember_tensor_state {
    EMBER_TENSOR_STATE_FREE,             /* no data (a gradient before its producer ran) */
    EMBER_TENSOR_STATE_COMPUTE,          /* in use by an op: its chunk may not move */
    EMBER_TENSOR_STATE_HOLD,             /* holds data, not in use: may move */
    EMBER_TENSOR_STATE_HOLD_AFTER_BWD,   /* a parameter after its backward use */
    EMBER_TENSOR_STATE_READY_FOR_REDUCE, /* a complete gradient, not yet consumed */
    EMBER_TENSOR_STATE_COUNT
} ember_tensor_state;

typedef enum ember_chunk_kind {
    EMBER_CHUNK_PARAM,
    EMBER_CHUNK_GRAD,
    EMBER_CHUNK_STATE, /* optimizer state */
    EMBER_CHUNK_KIND_COUNT
} ember_chunk_kind;

typedef enum ember_offload_policy {
    EMBER_OFFLOAD_AUTO,   /* Belady eviction from the warm-up trace, prefetch */
    EMBER_OFFLOAD_STATIC, /* fixed fractions on the host */
    EMBER_OFFLOAD_NAIVE,  /* everything on the host, copied in and out per op */
    EMBER_OFFLOAD_POLICY_COUNT
} ember_offload_policy;

const char *ember_tensor_state_name(ember_tensor_state s);  /* "FREE", "COMPUTE", ... */
const char *ember_chunk_kind_name(ember_chunk_kind k);      /* "param", "grad", "state" */
const char *ember_offload_policy_name(ember_offload_policy p); /* "auto", "static", "naive" */
/** Non-zero when from -> to is a legal transition (the table above). */
int ember_tensor_state_legal(ember_tensor_state from, ember_tensor_state to);

/* ---- chunk-size search ---- */

typedef struct ember_chunk_layout {
    int64_t chunk_elems;  /* elements per chunk */
    int nchunks;
    int64_t waste_elems;  /* nchunks * chunk_elems - sum of the tensors' elements */
    int64_t tensor_elems; /* sum of the tensors' elements */
} ember_chunk_layout;

/**
 * Pack n tensors of numel[i] elements, in this order, into chunks of one size: each
 * tensor starts at a multiple of align elements (0: 16) and never spans two chunks; a
 * tensor that does not fit in the current chunk opens the next. The size is searched
 * between the largest (aligned) tensor and four times it: every run of consecutive
 * tensors whose aligned sum lies in that range (a size some chunk fills exactly) and
 * an even grid; the least waste wins, the smaller size on a tie.
 * @param[out] chunk_of  (n) chunk of each tensor, or NULL
 * @param[out] offset_of (n) element offset of each tensor in its chunk, or NULL
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (n < 0, a negative numel, NULL numel
 *         with n > 0, align < 0); EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_chunk_size_search(const int64_t *numel, int n, int64_t align, int *chunk_of,
                                     int64_t *offset_of, ember_chunk_layout *out);

/* ---- the placement policy on a hand-built trace ---- */

/** One op of a trace: the chunks it needs on the device and those it kills there. */
typedef struct ember_offload_op {
    const int *need;  /* chunk ids needed on the device while the op runs */
    int nneed;
    const int *kill;  /* chunks whose device copy is useless after the op (may be NULL) */
    int nkill;
    size_t non_model; /* device bytes used by other data while the op runs */
} ember_offload_op;

/**
 * Run AUTO's eviction rule (the code the manager uses) on a trace taken as one
 * repeating iteration: before op i, chunks of op i not on the device are placed,
 * evicting until chunks + op i's non_model fit in budget; killed chunks leave after
 * their op. No prefetch. evicted receives the evicted chunk ids in order (up to max);
 * *nevicted their total count.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (a chunk id out of range, NULL);
 *         EMBER_ERR_OUT_OF_MEMORY (an op's chunks do not fit in the budget).
 */
ember_status ember_offload_simulate(const ember_offload_op *ops, int nops, const size_t *chunk_bytes,
                                    int nchunks, size_t budget, int *evicted, int max, int *nevicted);

/* ---- the manager ---- */

typedef struct ember_comm ember_comm; /* ember/parallel.h */

typedef struct ember_offload_config {
    ember_graph *graph;                  /* backward built; its parameters are adopted */
    ember_memory *mm;                    /* NULL: the graph's manager (chunks go in its tiers) */
    const ember_optimizer_config *optim; /* NULL: no optimizer (no state chunks) */
    ember_offload_policy policy;         /* default AUTO */
    size_t device_budget;                /* set on mm's device tier after adoption; 0: keep mm's */
    int64_t chunk_elems;                 /* 0: searched */
    double param_host_fraction;          /* STATIC: parameter (and gradient) chunks on the host */
    double state_host_fraction;          /* STATIC: optimizer-state chunks on the host */
    int lookahead;                       /* AUTO: ops (that need chunks) prefetched ahead; 0: 2; < 0: none */
    int sync;                            /* where transfers run. 0: on a side thread when the device
                                            tier is a GPU (its copy engine overlaps the kernels), on
                                            the calling thread with its OpenMP team when it is a DRAM
                                            budget (a copy there is CPU work on the cores and memory
                                            bus the compute uses: a side thread only competes with
                                            it); > 0: always the calling thread; < 0: always a side
                                            thread. Chunks under 256 KiB are always copied on the
                                            calling thread (too small to hand off). */
    ember_comm *comm;                    /* data-parallel ranks to shard the chunks over (ZeRO, above);
                                            NULL or one rank: none. Not owned: keep it alive */
} ember_offload_config;

typedef struct ember_offload_stats {
    ember_offload_policy policy;
    int nchunks;                         /* per kind (mirrored lists) */
    int ntensors;                        /* adopted parameters */
    int64_t chunk_elems;
    int64_t waste_elems;                 /* of the parameter list */
    size_t chunk_bytes[EMBER_CHUNK_KIND_COUNT]; /* bytes of one chunk of each kind */
    size_t model_bytes;                  /* parameters + gradients + state (ZeRO: the state of this
                                            rank's chunks; the groups' padding not counted) */
    size_t device_budget;                /* EMBER_BUDGET_UNLIMITED if none */
    size_t device_chunk_bytes;           /* chunk copies on the device now */
    size_t peak_device_chunk_bytes;
    size_t non_model_peak;               /* the trace's largest non-model device bytes */
    size_t state_bytes[EMBER_TENSOR_STATE_COUNT]; /* adopted tensors' bytes by state */
    int warmed_up;                       /* the trace is recorded */
    int64_t iterations;                  /* optimizer steps taken through the manager */
    uint64_t h2d_bytes, d2h_bytes;       /* moved since creation (adoption excluded) */
    uint64_t h2d_copies, d2h_copies;
    uint64_t evictions;                  /* device copies dropped to make room */
    uint64_t prefetches;                 /* transfers started ahead of their op */
    uint64_t waits;                      /* ops that waited for a transfer in flight */
    int state_chunks_on_device;          /* optimizer steps of the last iteration run on the device */
    int zero_ranks;                      /* ranks the chunks are sharded over (1: no ZeRO) */
    int owned_chunks;                    /* chunks whose optimizer state and step are on this rank */
    size_t optim_state_bytes;            /* optimizer-state chunk bytes this rank holds */
    int reclaim;                         /* 1: the memory manager's reclaim callback (other allocations evict) */
    uint64_t reclaim_evictions;          /* device copies dropped for other allocations (in evictions too) */
    uint64_t reclaimed_bytes;            /* device bytes given back to other allocations */
} ember_offload_stats;

typedef struct ember_offload ember_offload;

/**
 * Adopt the graph's parameters, gradients and (with optim) a fresh optimizer state
 * into chunks, install the executor hook, then apply device_budget.
 * The graph is planned first if needed. Parameters keep their values; gradients
 * start FREE; the optimizer state starts as ember_optimizer_create makes it.
 * With a communicator of N > 1 ranks this is collective (a layout check and the
 * broadcast of rank 0's parameters).
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULL graph, bad policy or fractions, a
 *         communicator without optim);
 *         EMBER_ERR_STATE (backward not built, a meta graph, another hook installed,
 *         a parameter that is not a whole contiguous f32 storage, a broken
 *         communicator); EMBER_ERR_DEVICE (a communicator whose buffers are not on the
 *         CPU); EMBER_ERR_SHAPE (the ranks' chunk layouts differ, on every rank);
 *         EMBER_ERR_OUT_OF_MEMORY (host chunks, or device_budget below the device
 *         bytes still live); the optimizer's errors; the communicator's failures,
 *         naming the collective.
 */
ember_status ember_offload_create(const ember_offload_config *cfg, ember_offload **out);
/**
 * Write back and release every chunk, give each adopted tensor its own allocation
 * again (its former tier, or the host tier when that does not fit) so the graph stays
 * usable, and remove the hook. NULL is a no-op.
 */
void ember_offload_destroy(ember_offload *off);

/** ember_graph_run under the manager (forward and backward). @return the graph's and placement's errors. */
ember_status ember_offload_run(ember_offload *off);
/**
 * One optimizer step, chunk by chunk, where each chunk's state lives; gradients are
 * consumed (FREE afterwards). With ZeRO: collective; gradients reduce-scattered, this
 * rank's chunks stepped, parameters all-gathered (above). A rank that fails locally
 * still runs every collective, so the ranks stay in step.
 * @return EMBER_OK; EMBER_ERR_STATE (no optimizer, or a gradient FREE: run backward
 *         first); EMBER_ERR_OUT_OF_MEMORY; the optimizer's errors; the communicator's
 *         failures (EMBER_ERR_TIMEOUT, EMBER_ERR_MPI, ...), the message naming the
 *         collective (reduce-scatter, all-gather), the chunks and the rank.
 */
ember_status ember_offload_optimizer_step(ember_offload *off);
/** ember_offload_run, then ember_offload_optimizer_step. */
ember_status ember_offload_step(ember_offload *off);
/** Wait for transfers, write dirty device copies back and drop every device copy. */
ember_status ember_offload_flush(ember_offload *off);

/** @return EMBER_OK or EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_offload_get_stats(ember_offload *off, ember_offload_stats *out);

/**
 * State of the adopted tensor of a parameter (by its graph name) and kind.
 * @return EMBER_OK; EMBER_ERR_NOT_FOUND (no such parameter; ZeRO: the optimizer state
 *         of another rank's chunk); EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_offload_tensor_state(const ember_offload *off, const char *name, ember_chunk_kind kind,
                                        ember_tensor_state *out);
/**
 * Move a tensor to another state, checked against the table (for callers that manage
 * model data around the manager, e.g. a gradient all-reduce).
 * @return EMBER_OK; EMBER_ERR_STATE (illegal: the message names tensor, kind, from
 *         and to; the state is unchanged); EMBER_ERR_NOT_FOUND; EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_offload_set_tensor_state(ember_offload *off, const char *name, ember_chunk_kind kind,
                                            ember_tensor_state to);
/** Chunk index and element offset of a parameter (the same in every kind's list). */
ember_status ember_offload_tensor_chunk(const ember_offload *off, const char *name, int *chunk,
                                        int64_t *offset);
/**
 * The optimizer of chunk c (0 <= c < ember_offload_stats.nchunks): over the parameters
 * of chunk c, named as in the graph, its state tensors (ember_optimizer_state_get:
 * "<parameter>.<buffer>") being the adopted state of chunk c. It is there to save and
 * restore a checkpoint (state, ember_optimizer_get_step / _set_step, _get_kind), not to
 * step: ember_offload_optimizer_step steps every chunk's. Its state is readable between
 * calls; write it (and the step) only after ember_offload_flush. Owned by the manager,
 * valid until ember_offload_destroy.
 * With ZeRO only the chunks this rank owns (c mod N == rank) have one here; a
 * checkpoint of a sharded manager saves each rank's own chunks.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULL); EMBER_ERR_STATE (the manager was
 *         created without an optimizer); EMBER_ERR_INDEX (c out of range);
 *         EMBER_ERR_NOT_FOUND (ZeRO: another rank's chunk).
 */
ember_status ember_offload_get_optimizer(ember_offload *off, int c, ember_optimizer **out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_OFFLOAD_H */
