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

#ifdef __cplusplus
}
#endif
#endif /* EMBER_PARALLEL_H */
