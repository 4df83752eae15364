/*
 * ember/parallel.h: communicators and device meshes (DESIGN.md section 8).
 *
 * A communicator is a group of ranks (processes) that run collectives together. One
 * interface, three backends:
 *   self  one process, world size 1: collectives are copies. Needs no MPI.
 *   mpi   processes started by mpirun; buffers in host memory. Blocking collectives
 *         are MPI's non-blocking ones (MPI_Iallreduce, ...) polled against a deadline,
 *         so a rank that died or skipped a collective makes the others fail with
 *         EMBER_ERR_TIMEOUT instead of hanging.
 *   nccl  one GPU per rank, buffers in GPU memory; the NCCL unique id is exchanged
 *         over MPI. Each communicator has its own CUDA stream: a collective first waits
 *         (on the device) for the work already queued on the caller's current stream,
 *         so it sees the values computed there.
 *
 *     ember_comm *world;
 *     ember_comm_create_default(NULL, &world);       // mpi under mpirun, else self
 *     float grad[N];
 *     ember_comm_all_reduce(world, grad, grad, N, EMBER_DTYPE_F32, EMBER_REDUCE_MEAN, NULL);
 *
 *     ember_comm_request *rq;                          // overlap with compute
 *     ember_comm_all_reduce(world, g1, g1, n1, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, &rq);
 *     ...                                              // compute; ember_comm_test(rq, &done)
 *     ember_comm_wait(rq);                             // g1 is reduced; rq is released
 *
 *     ember_mesh *mesh;                                // 2-D mesh: data x tensor parallel
 *     ember_mesh_create(world, &(ember_mesh_config){
 *         .ndim = 2, .shape = {-1, 2}, .names = {"dp", "tp"}}, &mesh);
 *     ember_comm *tp = ember_mesh_comm(mesh, ember_mesh_axis_index(mesh, "tp"));
 *     ember_comm_all_gather(tp, shard, full, n, EMBER_DTYPE_F32, NULL);
 *     ember_mesh_destroy(mesh);
 *     ember_comm_destroy(world);                       // finalizes MPI if it initialised it
 *
 * Collectives. Every rank of a communicator calls the same collectives in the same
 * order with matching arguments (counts, dtype, op, root). Buffers are raw pointers
 * with an element count and a dtype (f32, f16, bf16, i8, u8, i32, i64); the _tensor
 * forms take contiguous tensors. Reductions of f16 and bf16 compute in f32 and round
 * to nearest even; MEAN needs a float dtype; SUMSQ is not a collective op. Buffers may
 * be the same pointer (in place) for all_reduce; all_gather is in place when
 * send == recv + rank * count elements, reduce_scatter when recv == send + rank *
 * count elements (NCCL's convention); other overlapping buffers are refused. A count
 * of 0 is valid and moves nothing (every rank must still call).
 *
 * Completion. With req == NULL a call returns when its operation is complete (its
 * buffers may be reused; on NCCL the data is in place for every stream). With req
 * non-NULL it returns at once with a request; the buffers must stay untouched until
 * ember_comm_wait(req) returns, which completes and releases the request (exactly one
 * wait per request, whatever it returns). ember_comm_test says whether it would
 * return at once. MPI moves data of non-blocking collectives forward only inside MPI
 * calls: a long computation between start and wait overlaps best when it calls
 * ember_comm_test now and then. Async _tensor calls keep their tensors alive until
 * the wait.
 *
 * Timeouts and validation. A wait gives up after the communicator's timeout (default
 * 300 s, or $EMBER_COMM_TIMEOUT seconds) with EMBER_ERR_TIMEOUT naming the collective,
 * rank, size and count. The ranks then disagree about which collectives have run, so
 * the communicator is marked broken: every later call on it fails with
 * EMBER_ERR_STATE (destroy still works). Buffers of the timed-out operation may still
 * be written by MPI or NCCL: keep them allocated. With validation on (config
 * .validate = 1 or $EMBER_COMM_VALIDATE=1), each collective first exchanges a small
 * signature (collective, count, dtype, op, root; all-to-all-v counts against the
 * peers' counts), so ranks that disagree all get EMBER_ERR_SHAPE (EMBER_ERR_DTYPE,
 * EMBER_ERR_INVALID_ARGUMENT) before any data moves, and the communicator stays usable;
 * it costs one small all-reduce per collective (and an all-to-all of the counts for
 * all_to_all_v). Send and recv are not validated.
 *
 * Errors of MPI and NCCL become EMBER_ERR_MPI and EMBER_ERR_NCCL with their text:
 *   "EMBER_ERR_TIMEOUT: ember_comm_all_reduce (rank 0 of 2, mpi): not complete after
 *    2 s (1048576 x f32): a rank died, hangs, or skipped this collective; ..."
 *
 * Thread safety: a communicator is used by one thread at a time. MPI is initialised
 * with MPI_THREAD_SERIALIZED, so the mpi communicators of a process, and nccl ones
 * while they bootstrap, split or validate over MPI, are used by one thread at a time
 * all together; distinct self communicators may be used from different threads.
 */
#ifndef EMBER_PARALLEL_H
#define EMBER_PARALLEL_H

#include <stdint.h>

#include "ember/embedding.h"
#include "ember/graph.h"
#include "ember/optim.h"
#include "ember/partition.h"
#include "ember/status.h"
#include "ember/tensor.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_comm ember_comm;
typedef struct ember_comm_request ember_comm_request;
typedef struct ember_mesh ember_mesh;

typedef enum ember_comm_backend {
    EMBER_COMM_BACKEND_SELF,
    EMBER_COMM_BACKEND_MPI,
    EMBER_COMM_BACKEND_NCCL,
    EMBER_COMM_BACKEND_COUNT
} ember_comm_backend;

/** Default timeout of collectives and waits, in seconds. */
#define EMBER_COMM_DEFAULT_TIMEOUT 300.0
/** Color for ember_comm_split: this rank joins no new communicator. */
#define EMBER_COMM_UNDEFINED (-1)

typedef struct ember_comm_config {
    /* Seconds a wait may take; 0: $EMBER_COMM_TIMEOUT, else 300; < 0: wait forever. */
    double timeout_s;
    /* Exchange a signature before each collective: 0: $EMBER_COMM_VALIDATE (off when
       unset), 1: on, -1: off. */
    int validate;
    /* self: where buffers live (default CPU; a GPU makes the copies device copies).
       nccl: the rank's GPU; CPU (the default) picks local rank % number of GPUs. */
    ember_device device;
    /* mpi and nccl: a pointer to an MPI_Comm to duplicate; NULL: MPI_COMM_WORLD. */
    const void *mpi_comm;
} ember_comm_config;

/* ---- creation ---- */

/**
 * A one-rank communicator (no MPI needed). @param[in] cfg NULL for defaults.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT; EMBER_ERR_DEVICE / EMBER_ERR_UNSUPPORTED
 *         (a GPU that is absent or not built); EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_comm_create_self(const ember_comm_config *cfg, ember_comm **out);

/**
 * A communicator over MPI_COMM_WORLD (or cfg->mpi_comm), duplicated so ember's traffic
 * never matches the application's. Initialises MPI (MPI_Init_thread, SERIALIZED) when
 * nobody has; ember_comm_destroy of the last ember MPI communicator then finalizes it.
 * Without mpirun this is a one-rank MPI world (singleton init). Collective over the
 * ranks of the parent communicator.
 * @return EMBER_OK; EMBER_ERR_UNSUPPORTED (built without MPI); EMBER_ERR_STATE (MPI was
 *         already finalized: it cannot be initialised twice in a process); EMBER_ERR_MPI;
 *         EMBER_ERR_INVALID_ARGUMENT (a GPU device: use nccl); EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_comm_create_mpi(const ember_comm_config *cfg, ember_comm **out);

/**
 * A NCCL communicator over the ranks of MPI_COMM_WORLD (or cfg->mpi_comm): rank 0 makes
 * the unique id, MPI broadcasts it. Collective.
 * @return EMBER_OK; EMBER_ERR_UNSUPPORTED (built without NCCL, CUDA or MPI);
 *         EMBER_ERR_DEVICE (no GPU); EMBER_ERR_NCCL; EMBER_ERR_CUDA; EMBER_ERR_MPI;
 *         EMBER_ERR_TIMEOUT (a rank did not join).
 */
ember_status ember_comm_create_nccl(const ember_comm_config *cfg, ember_comm **out);

/**
 * mpi when launched by mpirun ($OMPI_COMM_WORLD_SIZE, $PMI_SIZE or $PMIX_RANK set) or
 * when the application has initialised MPI itself, self otherwise.
 * @return as ember_comm_create_mpi / ember_comm_create_self.
 */
ember_status ember_comm_create_default(const ember_comm_config *cfg, ember_comm **out);

/**
 * Split into sub-communicators: ranks with the same color form one, ordered by key
 * (then by rank). Collective. A rank with color EMBER_COMM_UNDEFINED joins none and
 * gets *out = NULL. The new communicator has its parent's backend, timeout and
 * validation; it is independent of the parent (destroy in any order).
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (color < -1); EMBER_ERR_STATE (broken);
 *         EMBER_ERR_MPI; EMBER_ERR_NCCL; EMBER_ERR_TIMEOUT.
 */
ember_status ember_comm_split(ember_comm *c, int color, int key, ember_comm **out);

/**
 * Release a communicator: local, no communication. Wait for its requests first; any
 * still pending are leaked, with a warning, and must not be waited afterwards. NULL is
 * a no-op.
 */
void ember_comm_destroy(ember_comm *c);

/* ---- queries (NULL-safe: rank 0, size 1) ---- */
int ember_comm_rank(const ember_comm *c);
int ember_comm_size(const ember_comm *c);
ember_comm_backend ember_comm_get_backend(const ember_comm *c);
/** "self", "mpi", "nccl"; "invalid" otherwise. */
const char *ember_comm_backend_name(ember_comm_backend b);
/** Where this communicator's buffers live (CPU for mpi). */
ember_device ember_comm_device(const ember_comm *c);
/** Seconds a wait may take (< 0: forever). */
double ember_comm_timeout(const ember_comm *c);
/**
 * Set the timeout: seconds > 0; 0 restores the default ($EMBER_COMM_TIMEOUT, else 300);
 * < 0 waits forever. Local to this rank.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT (NULL communicator, NaN).
 */
ember_status ember_comm_set_timeout(ember_comm *c, double seconds);
/** Non-zero after a timeout or a backend failure left the ranks out of step. */
int ember_comm_is_broken(const ember_comm *c);

/* ---- collectives on buffers ----
 * All take req: NULL to complete before returning, or a place for a request.
 * All return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULL buffer with count > 0, negative
 * count, bad root/peer, overlapping buffers, bad op); EMBER_ERR_DTYPE (bad dtype, MEAN
 * on integers); EMBER_ERR_OVERFLOW (count beyond what MPI can address); EMBER_ERR_STATE
 * (broken communicator); EMBER_ERR_SHAPE / EMBER_ERR_DTYPE (validation: ranks disagree);
 * EMBER_ERR_TIMEOUT; EMBER_ERR_MPI; EMBER_ERR_NCCL; EMBER_ERR_CUDA. */

/** recv[i] = op over ranks of send[i], i < count, on every rank. */
ember_status ember_comm_all_reduce(ember_comm *c, const void *send, void *recv, int64_t count,
                                   ember_dtype dt, ember_reduce_op op, ember_comm_request **req);
/** recv (size * count) = the send blocks (count each) of ranks 0, 1, ... in order. */
ember_status ember_comm_all_gather(ember_comm *c, const void *send, void *recv, int64_t count,
                                   ember_dtype dt, ember_comm_request **req);
/** recv (count) = op over ranks of block `rank` of send (size * count). */
ember_status ember_comm_reduce_scatter(ember_comm *c, const void *send, void *recv,
                                       int64_t count, ember_dtype dt, ember_reduce_op op,
                                       ember_comm_request **req);
/** Block j (count elements) of send goes to rank j, landing in block `rank` of its recv. */
ember_status ember_comm_all_to_all(ember_comm *c, const void *send, void *recv, int64_t count,
                                   ember_dtype dt, ember_comm_request **req);
/**
 * Uneven all-to-all: send_counts[j] elements from send + send_displs[j] go to rank j;
 * recv_counts[j] elements from rank j land at recv + recv_displs[j]. Arrays have size
 * entries (elements, not bytes); NULL displacements mean packed (prefix sums of the
 * counts). recv_counts[j] must equal rank j's send_counts[rank]: exchange the counts
 * first with ember_comm_all_to_all of i64 when they are not known.
 */
ember_status ember_comm_all_to_all_v(ember_comm *c, const void *send, const int64_t *send_counts,
                                     const int64_t *send_displs, void *recv,
                                     const int64_t *recv_counts, const int64_t *recv_displs,
                                     ember_dtype dt, ember_comm_request **req);
/** buf (count) of rank root is copied into buf of every rank. */
ember_status ember_comm_broadcast(ember_comm *c, void *buf, int64_t count, ember_dtype dt,
                                  int root, ember_comm_request **req);
/**
 * Point to point. Messages between two ranks arrive in the order they were sent; a
 * recv must name the sender and the exact count (EMBER_ERR_SHAPE otherwise, when the
 * backend can tell). peer must differ from this rank. Blocking sends of large messages
 * wait for the matching recv: pair them with async calls to avoid a deadlock.
 */
ember_status ember_comm_send(ember_comm *c, const void *buf, int64_t count, ember_dtype dt,
                             int peer, ember_comm_request **req);
ember_status ember_comm_recv(ember_comm *c, void *buf, int64_t count, ember_dtype dt, int peer,
                             ember_comm_request **req);
/** Returns (or completes its request) once every rank has entered the barrier. */
ember_status ember_comm_barrier(ember_comm *c, ember_comm_request **req);

/* ---- requests ---- */

/**
 * Complete the operation and release the request (always, whatever the result).
 * NULL is a no-op returning EMBER_OK.
 * @return EMBER_OK, or the operation's failure (EMBER_ERR_TIMEOUT, EMBER_ERR_MPI, ...).
 */
ember_status ember_comm_wait(ember_comm_request *req);
/** Wait for n requests in order (all are released; the first failure is returned). */
ember_status ember_comm_wait_all(int n, ember_comm_request **reqs);
/**
 * *done = 1 when the operation has completed (ember_comm_wait then returns at once),
 * else 0. Moves MPI's progress along. The request is not released.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, or a failure of the backend.
 */
ember_status ember_comm_test(ember_comm_request *req, int *done);

/* ---- collectives on tensors ----
 * Contiguous tensors on the communicator's device (the CPU for mpi), one dtype; the
 * shapes only have to have the right element counts. Besides the buffer forms'
 * statuses: EMBER_ERR_DEVICE (a tensor elsewhere), EMBER_ERR_SHAPE (element counts),
 * EMBER_ERR_DTYPE (in and out differ). */

/** In place: t = op over ranks of t. */
ember_status ember_comm_all_reduce_tensor(ember_comm *c, ember_tensor *t, ember_reduce_op op,
                                          ember_comm_request **req);
/** out has size * numel(in) elements, e.g. in (B, D) and out (size * B, D). */
ember_status ember_comm_all_gather_tensor(ember_comm *c, const ember_tensor *in, ember_tensor *out,
                                          ember_comm_request **req);
/** in has size * numel(out) elements. */
ember_status ember_comm_reduce_scatter_tensor(ember_comm *c, const ember_tensor *in,
                                              ember_tensor *out, ember_reduce_op op,
                                              ember_comm_request **req);
/** in and out have the same count, a multiple of size: block j goes to rank j. */
ember_status ember_comm_all_to_all_tensor(ember_comm *c, const ember_tensor *in, ember_tensor *out,
                                          ember_comm_request **req);
/** In place: t of root is copied into t of every rank. */
ember_status ember_comm_broadcast_tensor(ember_comm *c, ember_tensor *t, int root,
                                         ember_comm_request **req);

/* ---- device mesh ----
 * A logical N-d grid over the ranks of a communicator, row-major: rank = sum of
 * coords[i] * (product of shape[i+1..]), so the last axis varies fastest (ranks 0, 1
 * are neighbours on the last axis, e.g. the GPUs of one tensor-parallel group). Each
 * axis has a communicator over the ranks that differ only in that coordinate, ordered
 * by it: a rank's rank in the axis communicator is its coordinate on the axis. */

#define EMBER_MESH_MAX_DIMS 4

typedef struct ember_mesh_config {
    int ndim;                              /* 1 .. EMBER_MESH_MAX_DIMS */
    int shape[EMBER_MESH_MAX_DIMS];        /* each >= 1; one may be -1 (inferred) */
    const char *names[EMBER_MESH_MAX_DIMS]; /* optional axis names ("dp", "tp"); copied */
} ember_mesh_config;

/**
 * Build a mesh over the ranks of comm (not owned: keep it alive while the mesh is
 * used). Collective: splits comm once per axis.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (ndim, a dim < 1 other than one -1,
 *         duplicate or empty names); EMBER_ERR_SHAPE (product of shape != comm size);
 *         failures of ember_comm_split.
 */
ember_status ember_mesh_create(ember_comm *comm, const ember_mesh_config *cfg, ember_mesh **out);
/** Destroys the axis communicators. NULL is a no-op. */
void ember_mesh_destroy(ember_mesh *m);
int ember_mesh_ndim(const ember_mesh *m);
/** Size of an axis; 0 for a bad axis. */
int ember_mesh_dim(const ember_mesh *m, int axis);
/** Axis name ("" when unnamed; NULL for a bad axis). */
const char *ember_mesh_axis_name(const ember_mesh *m, int axis);
/** Index of the axis with this name, or -1. */
int ember_mesh_axis_index(const ember_mesh *m, const char *name);
/** This rank's coordinate on an axis (-1 for a bad axis). */
int ember_mesh_coord(const ember_mesh *m, int axis);
/** The communicator of an axis (owned by the mesh), or the mesh's whole communicator
    for axis -1; NULL for a bad axis. */
ember_comm *ember_mesh_comm(const ember_mesh *m, int axis);
/** Coordinates (ndim of them) of a rank. @return EMBER_OK, EMBER_ERR_INDEX, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_mesh_coords(const ember_mesh *m, int rank, int *coords);
/** Rank at coordinates. @return EMBER_OK, EMBER_ERR_INDEX, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_mesh_rank(const ember_mesh *m, const int *coords, int *rank);

/* ======================================================================== */
/* Data parallel (DESIGN.md section 8)                                      */
/* ======================================================================== */
/*
 * Every rank holds the whole model (the same graph, built the same way) and trains it
 * on its own slice of each global batch. After backward the parameter gradients are
 * averaged over the ranks (all-reduce MEAN), so every rank takes the same optimizer
 * step and the parameters stay identical, as if one process had trained on the
 * global batch with a loss that is the mean of the ranks' local mean losses (the
 * global mean when the local batches are equal).
 *
 *     ember_graph_build_backward(g, loss);
 *     ember_ddp *ddp;
 *     ember_ddp_create(g, world, NULL, &ddp);          // broadcasts rank 0's parameters
 *     ember_optimizer *opt;
 *     ember_ddp_optimizer_create(ddp, &cfg, &opt);     // = ember_graph_optimizer_create
 *     for (...) {
 *         ... write this rank's slice of the batch into the graph's inputs ...
 *         ember_ddp_step(ddp, opt);                     // forward, backward + all-reduce, step
 *     }
 *     ember_optimizer_destroy(opt);
 *     ember_ddp_destroy(ddp);                           // before the graph
 *
 * Buckets. Gradients are packed into flat buckets (one dtype each; the first bucket
 * is capped at first_bucket_bytes, the others at bucket_bytes, torch DDP's 1 MiB and
 * 25 MiB by default; a gradient larger than the cap gets a bucket of its own) in the
 * order they become ready in backward, read from the executor's schedule: the entry
 * that produces each parameter's gradient, which for a chain of layers is the reverse
 * of the parameters' first use. One all-reduce per bucket.
 *
 * Overlap. ember_ddp_create installs the graph's executor hook; during
 * ember_ddp_backward (and _run, _step), the hook sees each gradient node finish and,
 * once the last gradient of a bucket is written, packs the bucket and starts its
 * all-reduce (async) while backward goes on; between kernels it tests the requests in
 * flight so MPI moves them forward. Everything is waited and unpacked before
 * ember_ddp_backward returns, so the optimizer step always sees averaged gradients.
 * A graph run outside these calls (ember_graph_run) is not synchronised. When the
 * graph already has another hook (one per graph; e.g. the offload engine), or with
 * config.overlap = -1, the buckets are all-reduced after backward instead (still
 * bucketed and async, just not overlapped); ember_ddp_get_stats says which.
 *
 * Optimizer-state sharding (config.shard_optimizer, ZeRO stages 1-2): see
 * ember_ddp_optimizer_create.
 *
 * Requirements and guarantees: all ranks build the same graph (same parameters,
 * shapes, dtypes and order; checked at creation) and call the ember_ddp functions the
 * same number of times in the same order. The parameters are bit-identical on every
 * rank after each step when the all-reduce gives every rank the same bits (MPI does
 * not promise it for every algorithm; Open MPI's and NCCL's do, and the tests check
 * it) and the optimizer is deterministic (ember's are); with shard_optimizer always,
 * since each element is updated by one rank and gathered. Against one process training on the
 * global batch they agree up to reduction order (the batch's sum is split into
 * per-rank partial sums). When a rank's backward fails, it still runs every bucket's
 * all-reduce so the ranks stay in step, then returns the failure (the gradients are
 * then meaningless). Embedding-bag nodes in the graph are not data-parallel (their
 * sparse updates are applied locally in backward): use ember_sharded_ebc for them.
 *
 * Thread safety: as the graph and the communicator (one thread at a time).
 */

typedef struct ember_ddp ember_ddp;

/** torch DDP's bucket_cap_mb (25 MiB) and first bucket (1 MiB). */
#define EMBER_DDP_DEFAULT_BUCKET_BYTES ((size_t)25 << 20)
#define EMBER_DDP_DEFAULT_FIRST_BUCKET_BYTES ((size_t)1 << 20)

/** Zero fields take the defaults named here. */
typedef struct ember_ddp_config {
    size_t bucket_bytes;       /* 0: EMBER_DDP_DEFAULT_BUCKET_BYTES */
    size_t first_bucket_bytes; /* 0: EMBER_DDP_DEFAULT_FIRST_BUCKET_BYTES (never above bucket_bytes) */
    int overlap;               /* 0: overlap through the executor hook when it is free; -1: never */
    int no_broadcast;          /* non-zero: keep each rank's initial parameters (default:
                                  rank 0's are broadcast at creation, as torch DDP does) */
    int shard_optimizer;       /* non-zero: shard optimizer state and averaged gradients
                                  over the ranks (ZeRO stages 1-2; see below) */
} ember_ddp_config;

/**
 * Data parallelism over g's parameters (after ember_graph_build_backward; g is planned
 * here) and comm's ranks. Collective: checks that the ranks' parameter lists agree and
 * broadcasts rank 0's parameters (unless cfg->no_broadcast). Neither g nor comm is
 * owned: keep both alive, and destroy the ddp before the graph.
 * A bucket_bytes smaller than a gradient is not an error: that gradient gets a bucket
 * of its own.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULL); EMBER_ERR_STATE (backward not
 *         built, a meta graph, a broken communicator); EMBER_ERR_SHAPE
 *         (the ranks' parameter lists or buckets differ; on every rank);
 *         EMBER_ERR_DEVICE (parameters not on the communicator's device);
 *         EMBER_ERR_OUT_OF_MEMORY; the communicator's failures.
 */
ember_status ember_ddp_create(ember_graph *g, ember_comm *comm, const ember_ddp_config *cfg, ember_ddp **out);
/** Removes the hook and frees the buckets. NULL is a no-op. */
void ember_ddp_destroy(ember_ddp *d);

/**
 * The graph's backward (after ember_graph_forward), with each bucket all-reduced (MEAN)
 * as soon as its gradients are complete; returns once every gradient is averaged.
 * @return EMBER_OK; the graph's and the communicator's failures.
 */
ember_status ember_ddp_backward(ember_ddp *d);
/** ember_graph_forward, then ember_ddp_backward. */
ember_status ember_ddp_run(ember_ddp *d);
/**
 * ember_ddp_run, then ember_optimizer_step(opt) (opt NULL: no step); with
 * shard_optimizer, then the all-gather of the updated parameters (opt must be the
 * optimizer from ember_ddp_optimizer_create).
 */
ember_status ember_ddp_step(ember_ddp *d, ember_optimizer *opt);
/**
 * The optimizer to step with ember_ddp_step. Without shard_optimizer this is
 * ember_graph_optimizer_create. With it (ZeRO stages 1-2): each bucket, padded to a
 * multiple of the world size, is cut into one contiguous range per rank; backward
 * reduce-scatters the buckets (instead of all-reducing them), so a rank holds the
 * averaged gradients of its range only, and the optimizer is made over the parts of
 * the parameters in that range (named "<param>[begin:end]"), so its state takes
 * 1 / world of the memory. The element-wise update of a range is the update the whole
 * tensor would get. The graph's own gradients are then left unaveraged, and a global
 * norm over the optimizer's gradients (clip_grad_norm) would cover this rank's range
 * only. Destroy the optimizer before the ddp. Local (no communication).
 * @return EMBER_OK; EMBER_ERR_STATE (already made); ember_optimizer_create's failures.
 */
ember_status ember_ddp_optimizer_create(ember_ddp *d, const ember_optimizer_config *cfg, ember_optimizer **out);
/**
 * Average the gradients as they are now (after a backward run some other way), bucket
 * by bucket, not overlapped. Collective.
 */
ember_status ember_ddp_sync_grads(ember_ddp *d);
/** Copy rank root's parameters into every rank's (after loading a checkpoint on one rank). Collective. */
ember_status ember_ddp_broadcast_params(ember_ddp *d, int root);

typedef struct ember_ddp_stats {
    int params;            /* parameters with a gradient */
    int buckets;
    int64_t bytes;         /* gradient bytes all-reduced per step */
    int overlap;           /* 1: buckets start during backward (the hook is installed) */
    int64_t steps;         /* backward passes synchronised so far */
    int overlapped;        /* last step: buckets whose all-reduce started before backward ended */
    double backward_s;     /* last step: seconds in the graph's backward */
    double wait_s;         /* last step: seconds waiting for all-reduces after backward */
    int sharded;           /* 1: shard_optimizer */
    int64_t shard_numel;   /* sharded: parameter elements this rank's optimizer updates */
} ember_ddp_stats;

/** @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_ddp_get_stats(const ember_ddp *d, ember_ddp_stats *out);

typedef struct ember_ddp_bucket_info {
    int first;        /* its parameters are [first, first + count) of ember_ddp_param_name */
    int count;
    int64_t numel;
    size_t bytes;
    ember_dtype dtype;
} ember_ddp_bucket_info;

/** Bucket i, in launch order. @return EMBER_OK, EMBER_ERR_INDEX, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_ddp_get_bucket(const ember_ddp *d, int i, ember_ddp_bucket_info *out);
/** Name of parameter i in bucket order (the order gradients become ready); NULL if out of range. */
const char *ember_ddp_param_name(const ember_ddp *d, int i);

/* ======================================================================== */
/* Sharded embedding-bag collections (DESIGN.md sections 4 and 8)            */
/* ======================================================================== */
/*
 * The tables of an embedding-bag collection spread over the ranks of a communicator
 * by a sharding plan (ember/partition.h): each rank holds its shard, an ember_ebc of
 * the rows the plan gives it (its own rows, its own optimizer state), and takes a
 * batch of its own samples. Forward looks the samples' ids up on their owners and
 * returns pooled embeddings (B, output_dim) laid out exactly as one ember_ebc over the
 * whole tables would; backward sends dL/d(pooled) back to the owners, which apply the
 * fused sparse optimizer to their rows. No rank ever holds another rank's rows.
 *
 *     ember_plan *plan;                                  // the same plan on every rank
 *     ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_ROWWISE, .world = P, ...}, &plan);
 *     ember_sharded_ebc *emb;
 *     ember_sharded_ebc_create(world, &(ember_sharded_ebc_config){
 *         .plan = plan, .num_tables = 2, .tables = tables,
 *         .optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}}, &emb);
 *     ember_rng rng = {.seed = 1};
 *     ember_sharded_ebc_init_uniform(emb, &rng, -0.01f, 0.01f);  // = ember_ebc_init_uniform
 *     for (...) {
 *         ember_sharded_ebc_forward(emb, &my_batch, pooled, NULL);   // (B_rank, output_dim)
 *         ...                                                   // dpooled = dL_rank/d(pooled)
 *         ember_sharded_ebc_backward(emb, dpooled, &(ember_ebc_call){.lr = 0.01f});
 *     }
 *     ember_sharded_ebc_destroy(emb);
 *
 * How ids and rows move (per forward, three collectives; backward, one):
 *  1. Each rank splits every bag of its batch by owner: table-wise, the table's owner
 *     gets the whole bag; row-wise and minimax, each owner gets the sub-bag of its ids
 *     (ids remapped to the owner's local rows with ember_plan_locate_many); column-wise,
 *     every slice holder gets the whole bag. Empty (sub-)bags are not sent. Rows that
 *     a minimax plan replicates are served by the asking rank itself.
 *  2. An all-to-all of one count per rank pair, then one all-to-all-v carries, per
 *     destination and table, the sub-bags' lengths, local rows and weights.
 *  3. Each owner concatenates what it received (source rank order, then the sources'
 *     bag order) into one jagged batch over its shard and pools it with one
 *     ember_ebc_forward: pooling happens before communication, so one partial row per
 *     (bag, owner) travels back, not one row per id.
 *  4. An all-to-all-v returns the pooled rows; the asker places them: table-wise, the
 *     owner's row is the result (the same bits as one process); column-wise, each
 *     slice fills its columns; row-wise, the partial sums are added in rank order.
 *  Backward sends the rows of dL/d(pooled) for the same (bag, owner) pairs the other
 *  way (one all-to-all-v); each owner runs ember_ebc_backward over the batch it pooled,
 *  so a row's gradient is summed in global batch order (ranks in order), the order one
 *  process would use over the concatenated batches. Gradients of replicated rows are
 *  summed by an all-reduce and applied identically on every rank.
 *  Mean pooling: table-wise and column-wise owners pool whole bags with the table's
 *  own pooling; row-wise owners pool sums with per-id weights 1/n (n the whole bag's
 *  length), so the parts add up to the mean and the row gradients carry 1/n exactly
 *  as one process's do.
 *
 * Loss scaling (the convention): on rank r, grad_out is dL_r/d(out_r) for the rank's
 * own loss L_r (typically the mean over its local batch). The optimizer follows the
 * gradient of grad_scale * sum_r L_r, default grad_scale = 1 / world: the mean of the
 * ranks' losses, which is the global batch's mean loss when the local batches are
 * equal, the same objective ember_ddp's MEAN all-reduce gives the dense layers. With
 * a power-of-two world, scaling by 1 / world is exact.
 *
 * Equality with one process (ember_ebc over the whole tables, the global batch being
 * the ranks' batches concatenated in rank order, gradients scaled as above):
 *   table-wise   forward outputs and trained rows: the same bits;
 *   row-wise and minimax   the same dL/d(out) gives the same bits in every owned row;
 *                forward outputs differ by the reordering of each bag's sum into
 *                per-owner partial sums (a few ulp), and replicated rows by the
 *                all-reduce's order;
 *   column-wise  forward outputs: the same bits for the same rows; updates within an
 *                ulp or so (a slice moves columns between the CPU kernel's vector body,
 *                which fuses multiply-adds, and its scalar tail, which does not).
 *
 * Errors keep the ranks in step: a batch refused on one rank (bad id, shape) makes
 * every rank's call fail (the others with EMBER_ERR_INVALID_ARGUMENT naming the rank)
 * after the count exchange, before any row is touched. Tables live in host memory (MPI
 * and self communicators); all ranks call forward and backward the same number of
 * times, in the same order.
 *
 * Cached shards (config.cache; DESIGN.md sections 5 and 8). Each rank's shard may sit
 * behind its own block-wise cache (ember/cache.h) instead of being resident: the cache
 * is made over the shard's tables (its local rows and columns) with the caller's
 * ratio or slots, policy, store and budget, and the owner's batch of step 3 goes
 * through it (ember_cache_prepare: ids remapped to slots, misses loaded in blocks)
 * to the cache's slot collection; the prepared batch is held until backward, which
 * updates the slots and releases it dirty (replicated rows go through as a second,
 * small batch). Nothing else changes, and training through the caches equals training
 * with resident shards bit for bit, at any ratio and policy (tiers, below, round by
 * design). The caches get no
 * look-ahead (lookahead is set to 0): the ids of a batch reach their owner only in its
 * forward's exchange. With the LMDB store each rank's store is the directory
 * path/rankRRRR (path is created when missing, unless open is OPEN_EXISTING); the
 * stores hold local rows, so they reopen only under the same plan. A forward that no
 * backward follows (inference) leaves its batch held until the next forward or row
 * access, which gives it back.
 *
 * Precision tiers per rank (cache->tiers over the host store; DESIGN.md section 4, stage
 * 2 on each device). The tiers are given as for one process, over the whole tables, and
 * each rank tiers the rows it holds: with counts (lookups of the whole tables, table t =
 * table t) and the fractions hot and warm, the rank's rows are ranked by their own counts
 * (the mapping ember_sharded_ebc_warmup_counts uses: counted ids this rank holds, count
 * descending, ties in increasing id; then rows never counted, in increasing local row),
 * and the first ceil(hot x rows held) of each table are HOT, the next ceil(warm x rows
 * held) WARM, the rest COLD; with maps (of the whole tables' rows), each held row takes its
 * id's tier. Replicated rows (minimax) are always HOT: every rank steps its copy alike,
 * and only uncompressed copies stay equal. A row slot that no id of the rank maps to (a
 * hole of a minimax range) is COLD under maps. Rounding is the caller's; the stochastic
 * rounding of rank r is keyed by seed ^ r, distinct per rank and the same every run, so
 * a run is deterministic at a given world size (the caches have no look-ahead). With
 * every row HOT (hot = 1) training equals untiered cached shards bit for bit. A byte
 * budget (tiers->budget) is not supported on shards (EMBER_ERR_UNSUPPORTED).
 */

typedef struct ember_sharded_ebc ember_sharded_ebc;
struct ember_cache;        /* ember/cache.h */
struct ember_cache_config; /* ember/cache.h */
struct ember_freq;         /* ember/datasets.h */

typedef struct ember_sharded_ebc_config {
    const ember_plan *plan;               /* world = the communicator's size; not owned, keep it
                                             alive; its tables' rows and dims match `tables` */
    int num_tables;                       /* = the plan's */
    const ember_ebc_table_config *tables; /* the whole tables (rows, dim, format, pooling, name) */
    ember_sparse_optim_config optim;      /* as ember_ebc_config */
    ember_memory *mm;                     /* shard and buffers; NULL: ember_memory_default(); HOST tier */
    size_t row_align;                     /* as ember_ebc_config */
    double grad_scale;                    /* > 0, or 0: 1 / world (see "Loss scaling") */
    /* Each rank's shard behind its own cache (see "Cached shards"), or NULL: resident.
       Its collection field is replaced by the shard's tables and optim; slots and
       host_rows, when given, have one entry per table of the whole collection (capped
       at the rows a rank holds); mm NULL: the mm above; lookahead is taken as 0; path
       (LMDB) is the parent of the ranks' stores; tiers (counts or maps) are of the whole
       tables, each rank tiering its own rows (see "Precision tiers per rank"). Read at
       creation, not kept. */
    const struct ember_cache_config *cache;
} ember_sharded_ebc_config;

/**
 * Create this rank's shard (zero weights, initial state) from the plan, resident or
 * behind its cache. Collective: checks that every rank passes the same plan and tables,
 * and that every rank could make its shard (a rank whose shard or cache failed returns
 * its own error, the others EMBER_ERR_INVALID_ARGUMENT naming it).
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULLs, grad_scale, a world that is not
 *         the communicator's size, bad table configs as ember_ebc_create); EMBER_ERR_SHAPE
 *         (tables that do not match the plan, or ranks whose plans differ);
 *         EMBER_ERR_OUT_OF_MEMORY; the errors of ember_cache_create, naming the rank; the
 *         communicator's failures. Cache tiers (every rank alike): EMBER_ERR_UNSUPPORTED
 *         (a budget); EMBER_ERR_INVALID_ARGUMENT (none or both of maps and counts, hot or
 *         warm with maps, fractions outside [0, 1] or summing over 1, a bad rounding, a
 *         map of another length, with a bad tier, or not HOT in a table that is not f32);
 *         EMBER_ERR_SHAPE (counts of another number of tables); EMBER_ERR_INDEX (a
 *         counted id outside its table). A column-wise plan with rowwise Adagrad,
 *         max_grad_norm or int8-rowwise rows: EMBER_ERR_UNSUPPORTED (each slice would keep
 *         its own row state, norm or scale).
 */
ember_status ember_sharded_ebc_create(ember_comm *comm, const ember_sharded_ebc_config *cfg,
                                      ember_sharded_ebc **out);
/** Local. NULL is a no-op. */
void ember_sharded_ebc_destroy(ember_sharded_ebc *s);

int ember_sharded_ebc_num_tables(const ember_sharded_ebc *s);
/** Sum of the tables' dims: the output's width, as one ember_ebc over the whole tables. */
int64_t ember_sharded_ebc_output_dim(const ember_sharded_ebc *s);
/** This rank's resident shard (owned by s), or NULL when the plan gives it no rows or
    the shard is cached (ember_sharded_ebc_cache; ember_sharded_ebc_read_local). */
ember_ebc *ember_sharded_ebc_local(const ember_sharded_ebc *s);
/** Index of table t in the shard, or -1 when this rank holds none of it. */
int ember_sharded_ebc_local_table(const ember_sharded_ebc *s, int table);
/** The cache in front of this rank's shard (owned by s; its table l is shard table l),
    or NULL: resident, or no rows here. */
struct ember_cache *ember_sharded_ebc_cache(const ember_sharded_ebc *s);

/**
 * Rows [row, row + n) of this rank's part of a table, by local row (as
 * ember_plan_locate gives them), wherever they live (resident shard, cache slots,
 * store): weights (n, the columns held here) and optimizer state (n, the state floats
 * of those columns: the table's state floats, or for a column slice of w columns
 * state floats / dim * w); either may be NULL (state must be NULL without optimizer
 * state). Local. For checkpoints of the shard as it is.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT; EMBER_ERR_INDEX (a table this rank
 *         holds none of, rows outside its part); the store's errors.
 */
ember_status ember_sharded_ebc_read_local(ember_sharded_ebc *s, int table, int64_t row, int64_t n, float *weights,
                                          float *state);
ember_status ember_sharded_ebc_write_local(ember_sharded_ebc *s, int table, int64_t row, int64_t n,
                                           const float *weights, const float *state);
/**
 * Warm this rank's cache from lookup counts of the whole tables (ember/datasets.h
 * ember_freq, table t of the counts = table t): per table, the hottest counted ids
 * that this rank holds (among the table's 8 x world x slots hottest), as many as its
 * slots, as ember_cache_warmup. Local; a no-op for a resident shard.
 * @return EMBER_OK; EMBER_ERR_SHAPE (counts of another number of tables);
 *         EMBER_ERR_INDEX (a counted id outside its table); ember_cache_warmup's errors.
 */
ember_status ember_sharded_ebc_warmup_counts(ember_sharded_ebc *s, const struct ember_freq *counts);
/**
 * With a cache over the LMDB store: every dirty row written down and this rank's store
 * committed durably at step (ember_cache_checkpoint). Resident shards and the host
 * store keep their rows in memory: nothing to do (EMBER_OK). Local.
 * @return EMBER_OK; ember_cache_checkpoint's errors.
 */
ember_status ember_sharded_ebc_checkpoint(ember_sharded_ebc *s, int64_t step);

/**
 * Rows [first, first + count) of a whole table from a host f32 array (count, dim) that
 * every rank passes: each keeps the rows (and columns) it holds. Local. State is left alone.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_INDEX (table or rows).
 */
ember_status ember_sharded_ebc_write_rows(ember_sharded_ebc *s, int table, int64_t first, int64_t count,
                                          const float *src);
/**
 * Rows [first, first + count) of a whole table into every rank's dst (count, dim), each
 * value from the rank that holds it (a zero-filled all-reduce: a weight of -0 reads +0).
 * Collective. @return as write_rows, plus the communicator's failures.
 */
ember_status ember_sharded_ebc_read_rows(ember_sharded_ebc *s, int table, int64_t first, int64_t count,
                                         float *dst);
/**
 * The weights ember_ebc_init_uniform(rng, lo, hi) gives one collection over the whole
 * tables (same Philox words), each rank writing its rows; advances rng->offset by the
 * whole tables' element count. Local. State is left alone.
 */
ember_status ember_sharded_ebc_init_uniform(ember_sharded_ebc *s, ember_rng *rng, float lo, float hi);

/**
 * out (B, output_dim) f32 on the host (rows may be strided, each contiguous) = the
 * pooled embeddings of this rank's batch (B samples, one feature per table, global
 * ids). Collective; B may differ between ranks. The exchange is kept for the next
 * backward. call: NULL or {.trusted} only.
 * @return EMBER_OK; EMBER_ERR_INDEX (an id outside its table, naming table, sample and
 *         position); EMBER_ERR_SHAPE; EMBER_ERR_DTYPE; EMBER_ERR_DEVICE;
 *         EMBER_ERR_INVALID_ARGUMENT (weights with mean pooling, another rank's batch
 *         refused); EMBER_ERR_OUT_OF_MEMORY; the communicator's failures.
 */
ember_status ember_sharded_ebc_forward(ember_sharded_ebc *s, const ember_jagged *batch, ember_tensor *out,
                                       const ember_ebc_call *call);
/**
 * Apply the fused optimizer for grad_out = dL_r/d(out) (B, output_dim) of the last
 * forward (see "Loss scaling"). call is required: lr, and step (0: the collection counts
 * its backward calls); rows must be NULL. Collective.
 * @return EMBER_OK; EMBER_ERR_STATE (no forward since the last backward); EMBER_ERR_SHAPE;
 *         EMBER_ERR_DTYPE; EMBER_ERR_DEVICE; EMBER_ERR_UNSUPPORTED (call->rows);
 *         EMBER_ERR_INVALID_ARGUMENT (lr, another rank's failure); the communicator's failures.
 */
ember_status ember_sharded_ebc_backward(ember_sharded_ebc *s, const ember_tensor *grad_out,
                                        const ember_ebc_call *call);

typedef struct ember_sharded_ebc_stats {
    int local_tables;         /* tables of this rank's shard */
    int64_t local_rows;       /* rows of the shard, all tables */
    /* last forward + backward, this rank, other ranks only (its own share is not sent) */
    int64_t bags_sent, bags_received;   /* (sub-)bags asked of others / served for others */
    int64_t ids_sent, ids_received;
    int64_t bytes_sent, bytes_received; /* ids, pooled rows and their gradients */
    int64_t replicated_floats;          /* gradient floats of replicated rows all-reduced per step */
} ember_sharded_ebc_stats;

/** @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_sharded_ebc_get_stats(const ember_sharded_ebc *s, ember_sharded_ebc_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_PARALLEL_H */
