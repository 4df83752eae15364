/*
 * The NCCL backend: one GPU per rank, buffers in GPU memory.
 *
 * A NCCL communicator rides on an MPI one over the same ranks (the host
 * communicator): rank 0's unique id is broadcast over it, validation signatures and
 * splits go through it, and every bootstrap step is one of its timed collectives, so
 * a missing rank fails the others with EMBER_ERR_TIMEOUT instead of hanging in
 * ncclCommInitRank.
 *
 * Streams. Each communicator owns a non-blocking CUDA stream. An operation first makes
 * that stream wait (on the device) for an event recorded on the caller's current
 * stream, so it reads what the caller's kernels wrote, then records a completion
 * event. Waiting polls that event against the deadline (and NCCL's asynchronous
 * error); on a timeout the NCCL communicator is aborted (ncclCommAbort ends its
 * kernels) and the ember communicator is broken. After a wait the results are in
 * memory for every stream.
 *
 * This file is C over NCCL's and the CUDA runtime's C APIs: no kernels of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "parallel/comm_internal.h"

#if !defined(EMBER_HAVE_NCCL) || !defined(EMBER_HAVE_MPI) || !defined(EMBER_HAVE_CUDA)

ember_status ember__comm_create_nccl(const ember_comm_config *cfg, ember_comm **out) {
    (void)cfg;
    (void)out;
    return ember__error(EMBER_ERR_UNSUPPORTED,
                        "ember_comm_create_nccl: ember was built without %s",
#if !defined(EMBER_HAVE_CUDA)
                        "CUDA (the NCCL backend needs CUDA, NCCL and MPI)"
#elif !defined(EMBER_HAVE_NCCL)
                        "NCCL (install libnccl-dev and reconfigure)"
#else
                        "MPI, which the NCCL backend needs to exchange its unique id"
#endif
    );
}

ember_status ember__comm_nccl_from_host(ember_comm *host, const ember_comm_config *cfg,
                                        ember_comm **out) {
    ember_comm_destroy(host);
    return ember__comm_create_nccl(cfg, out);
}

#else

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "engine/cuda/cuda_runtime.h"

typedef struct nccl_impl {
    ember_comm *host; /* MPI over the same ranks: bootstrap, validation, split */
    ncclComm_t nc;    /* NULL after an abort */
    cudaStream_t stream;
    cudaEvent_t ready; /* recorded on the caller's stream before each operation */
    int dev;
    void *scratch; /* the barrier's one-int all-reduce */
} nccl_impl;

typedef struct nccl_req {
    cudaEvent_t done;
} nccl_req;
_Static_assert(sizeof(nccl_req) <= sizeof(((ember_comm_request *)0)->be), "nccl_req fits the request");

/* Switch to dev for a call and back (the engine's rule: never move a thread's device). */
typedef struct dev_guard {
    int prev, dev;
} dev_guard;

static cudaError_t guard_enter(dev_guard *g, int dev) {
    g->dev = dev;
    g->prev = dev;
    cudaError_t e = cudaGetDevice(&g->prev);
    if (e != cudaSuccess) return e;
    return g->prev == dev ? cudaSuccess : cudaSetDevice(dev);
}

static void guard_leave(const dev_guard *g) {
    if (g->prev != g->dev) (void)cudaSetDevice(g->prev);
}

static ember_status cuda_fail(ember_comm *c, int dev, const char *fn, const char *call, cudaError_t e) {
    (void)cudaGetLastError();
    return ember__comm_error(c, e == cudaErrorMemoryAllocation ? EMBER_ERR_OUT_OF_MEMORY : EMBER_ERR_CUDA, fn,
                             "%s on cuda:%d: %s", call, dev, cudaGetErrorString(e));
}

static ember_status nccl_fail(ember_comm *c, ncclComm_t nc, const char *fn, const char *call, ncclResult_t r) {
    const char *last = nc ? ncclGetLastError(nc) : NULL;
    return ember__comm_error(c, EMBER_ERR_NCCL, fn, "%s: %s%s%s", call, ncclGetErrorString(r),
                             last && *last ? ": " : "", last ? last : "");
}

static ncclDataType_t nccl_type(ember_dtype dt) {
    switch (dt) {
    case EMBER_DTYPE_F32: return ncclFloat32;
    case EMBER_DTYPE_F16: return ncclFloat16;
    case EMBER_DTYPE_BF16: return ncclBfloat16;
    case EMBER_DTYPE_I8: return ncclInt8;
    case EMBER_DTYPE_U8: return ncclUint8;
    case EMBER_DTYPE_I32: return ncclInt32;
    default: return ncclInt64;
    }
}

static ncclRedOp_t nccl_op(ember_reduce_op op) {
    switch (op) {
    case EMBER_REDUCE_MEAN: return ncclAvg;
    case EMBER_REDUCE_MAX: return ncclMax;
    case EMBER_REDUCE_MIN: return ncclMin;
    default: return ncclSum;
    }
}

/* Enqueue a on the communicator's stream (inside the device guard). */
static ncclResult_t enqueue(ember_comm *c, const ember__coll *a, const char **call) {
    nccl_impl *m = c->impl;
    ncclDataType_t t = nccl_type(a->dt);
    size_t es = ember_dtype_size(a->dt), n = (size_t)a->count;
    const char *s = a->send;
    char *r = a->recv;
    ncclResult_t res = ncclSuccess, end;
    switch (a->kind) {
    case EMBER__COLL_ALL_REDUCE:
        *call = "ncclAllReduce";
        return ncclAllReduce(s, r, n, t, nccl_op(a->op), m->nc, m->stream);
    case EMBER__COLL_ALL_GATHER:
        *call = "ncclAllGather";
        return ncclAllGather(s, r, n, t, m->nc, m->stream);
    case EMBER__COLL_REDUCE_SCATTER:
        *call = "ncclReduceScatter";
        return ncclReduceScatter(s, r, n, t, nccl_op(a->op), m->nc, m->stream);
    case EMBER__COLL_BROADCAST:
        *call = "ncclBroadcast";
        return ncclBroadcast(r, r, n, t, a->root, m->nc, m->stream);
    case EMBER__COLL_SEND:
        *call = "ncclSend";
        return ncclSend(s, n, t, a->root, m->nc, m->stream);
    case EMBER__COLL_RECV:
        *call = "ncclRecv";
        return ncclRecv(r, n, t, a->root, m->nc, m->stream);
    case EMBER__COLL_BARRIER:
        *call = "ncclAllReduce (barrier)";
        return ncclAllReduce(m->scratch, m->scratch, 1, ncclInt32, ncclSum, m->nc, m->stream);
    case EMBER__COLL_ALL_TO_ALL:
    case EMBER__COLL_ALL_TO_ALL_V:
        *call = "ncclSend/ncclRecv group";
        res = ncclGroupStart();
        if (res != ncclSuccess) return res;
        for (int j = 0; j < c->size && res == ncclSuccess; j++) {
            int v = a->kind == EMBER__COLL_ALL_TO_ALL_V;
            size_t sc = v ? (size_t)a->send_counts[j] : n, rc = v ? (size_t)a->recv_counts[j] : n;
            size_t sd = v ? (size_t)a->send_displs[j] : (size_t)j * n;
            size_t rd = v ? (size_t)a->recv_displs[j] : (size_t)j * n;
            if (sc) res = ncclSend(s + sd * es, sc, t, j, m->nc, m->stream);
            if (rc && res == ncclSuccess) res = ncclRecv(r + rd * es, rc, t, j, m->nc, m->stream);
        }
        end = ncclGroupEnd();
        return res != ncclSuccess ? res : end;
    default: *call = "?"; return ncclInvalidUsage;
    }
}

static ember_status nccl_start(ember_comm *c, const ember__coll *a, ember_comm_request *r) {
    nccl_impl *m = c->impl;
    nccl_req *q = (nccl_req *)r->be;
    q->done = NULL;
    dev_guard g;
    cudaError_t e = guard_enter(&g, m->dev);
    if (e != cudaSuccess) return cuda_fail(c, m->dev, a->fn, "cudaSetDevice", e);
    ember_status st = EMBER_OK;
    const char *call = "cudaEventRecord";
    cudaStream_t cur = (cudaStream_t)ember__cuda_current_stream(m->dev);
    e = cudaEventRecord(m->ready, cur);
    if (e == cudaSuccess) call = "cudaStreamWaitEvent", e = cudaStreamWaitEvent(m->stream, m->ready, 0);
    if (e == cudaSuccess) call = "cudaEventCreate", e = cudaEventCreateWithFlags(&q->done, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        st = cuda_fail(c, m->dev, a->fn, call, e);
    } else {
        ncclResult_t res = enqueue(c, a, &call);
        if (res != ncclSuccess) st = nccl_fail(c, m->nc, a->fn, call, res);
        else if ((e = cudaEventRecord(q->done, m->stream)) != cudaSuccess)
            st = cuda_fail(c, m->dev, a->fn, "cudaEventRecord", e);
    }
    if (st != EMBER_OK && q->done) {
        cudaEventDestroy(q->done);
        q->done = NULL;
    }
    guard_leave(&g);
    return st;
}

static ember_status nccl_test(ember_comm_request *r, int *done) {
    ember_comm *c = r->comm;
    nccl_impl *m = c->impl;
    nccl_req *q = (nccl_req *)r->be;
    *done = 0;
    cudaError_t e = cudaEventQuery(q->done);
    if (e == cudaSuccess) {
        *done = 1;
        return EMBER_OK;
    }
    if (e != cudaErrorNotReady) return cuda_fail(c, m->dev, r->fn, "cudaEventQuery", e);
    ncclResult_t ae = ncclSuccess;
    ncclResult_t res = ncclCommGetAsyncError(m->nc, &ae);
    if (res != ncclSuccess) return nccl_fail(c, m->nc, r->fn, "ncclCommGetAsyncError", res);
    if (ae != ncclSuccess && ae != ncclInProgress) return nccl_fail(c, m->nc, r->fn, "NCCL (asynchronous)", ae);
    return EMBER_OK;
}

static ember_status nccl_finish(ember_comm_request *r) {
    nccl_req *q = (nccl_req *)r->be;
    if (q->done) cudaEventDestroy(q->done);
    q->done = NULL;
    return EMBER_OK;
}

static void nccl_abandon(ember_comm_request *r) {
    nccl_impl *m = r->comm->impl;
    nccl_req *q = (nccl_req *)r->be;
    if (m->nc) {
        dev_guard g;
        if (guard_enter(&g, m->dev) == cudaSuccess) {
            ncclCommAbort(m->nc); /* ends the kernels still waiting for absent peers */
            guard_leave(&g);
        }
        m->nc = NULL;
    }
    if (q->done) cudaEventDestroy(q->done);
    q->done = NULL;
}

static ember_status nccl_validate(ember_comm *c, const ember__coll *a, ember_status local) {
    nccl_impl *m = c->impl;
    m->host->timeout_s = c->timeout_s;
    return ember__comm_mpi_validate(m->host, c, a, local);
}

static ember_status nccl_split(ember_comm *c, int color, int key, ember_comm **out) {
    nccl_impl *m = c->impl;
    m->host->timeout_s = c->timeout_s;
    ember_comm *hsub = NULL;
    ember_status st = ember_comm_split(m->host, color, key, &hsub);
    if (st != EMBER_OK) {
        if (m->host->broken) ember__comm_break(c);
        return st;
    }
    if (!hsub) return EMBER_OK;
    ember_comm_config cfg = {.timeout_s = c->timeout_s, .validate = c->validate ? 1 : -1,
                             .device = EMBER_CUDA(m->dev)};
    return ember__comm_nccl_from_host(hsub, &cfg, out);
}

static void nccl_destroy(ember_comm *c) {
    nccl_impl *m = c->impl;
    dev_guard g;
    int entered = guard_enter(&g, m->dev) == cudaSuccess;
    if (m->nc) ncclCommDestroy(m->nc);
    if (m->ready) cudaEventDestroy(m->ready);
    if (m->stream) cudaStreamDestroy(m->stream);
    if (m->scratch) cudaFree(m->scratch);
    if (entered) guard_leave(&g);
    ember_comm_destroy(m->host);
    free(m);
    free(c);
}

static const ember__comm_ops nccl_ops = {nccl_start,    nccl_test,  nccl_finish, nccl_abandon,
                                         nccl_validate, nccl_split, nccl_destroy};

/* Every rank's local setup succeeded? (a timed collective, so no rank is left behind) */
static ember_status all_ok(ember_comm *host, const char *fn, int ok, int *all) {
    int32_t v = ok, minv = 0;
    ember__coll a = {.kind = EMBER__COLL_ALL_REDUCE, .fn = fn, .send = &v, .recv = &minv, .count = 1,
                     .dt = EMBER_DTYPE_I32, .op = EMBER_REDUCE_MIN};
    EMBER_TRY(ember__comm_run(host, &a));
    *all = minv;
    return EMBER_OK;
}

ember_status ember__comm_nccl_from_host(ember_comm *host, const ember_comm_config *cfg,
                                        ember_comm **out) {
    const char *fn = "ember_comm_create_nccl";
    ember_comm *c = calloc(1, sizeof *c);
    nccl_impl *m = calloc(1, sizeof *m);
    ember_status st = EMBER_OK;
    int ok = 1, all = 0;
    if (!c || !m) {
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
        ok = 0;
    } else {
        ember__comm_init(c, &nccl_ops, EMBER_COMM_BACKEND_NCCL, cfg);
        c->rank = host->rank;
        c->size = host->size;
        c->impl = m;
        m->host = host;
        host->timeout_s = c->timeout_s;
        int ndev = ember_cuda_device_count();
        if (cfg && cfg->device.type == EMBER_DEVICE_CUDA) {
            m->dev = cfg->device.index;
        } else if (ndev > 0) {
            int local = 0;
            st = ember__comm_mpi_local_rank(host, &local);
            m->dev = local % ndev;
        }
        if (st == EMBER_OK && ndev == 0)
            st = ember__comm_error(c, EMBER_ERR_DEVICE, fn, "no CUDA device on this rank");
        if (st == EMBER_OK) st = ember_device_check(EMBER_CUDA(m->dev));
        c->device = EMBER_CUDA(m->dev);
        if (st == EMBER_OK) {
            dev_guard g;
            cudaError_t e = guard_enter(&g, m->dev);
            const char *call = "cudaSetDevice";
            if (e == cudaSuccess) call = "cudaStreamCreate", e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking);
            if (e == cudaSuccess) call = "cudaEventCreate", e = cudaEventCreateWithFlags(&m->ready, cudaEventDisableTiming);
            if (e == cudaSuccess) call = "cudaMalloc", e = cudaMalloc(&m->scratch, 16);
            if (e != cudaSuccess) st = cuda_fail(c, m->dev, fn, call, e);
            guard_leave(&g);
        }
        ok = st == EMBER_OK;
    }
    /* Every rank learns whether all set up (a local failure keeps its own message),
       then rank 0's unique id, or news of its failure, reaches every rank. */
    struct {
        int32_t ok;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof msg);
    ember_status xs = all_ok(host, fn, ok, &all);
    if (xs != EMBER_OK) {
        st = xs;
    } else if (!all) {
        if (st == EMBER_OK)
            st = ember__comm_error(c, EMBER_ERR_DEVICE, fn, "another rank failed to set up its GPU (its error says why)");
    } else {
        if (host->rank == 0) {
            ncclResult_t r = ncclGetUniqueId(&msg.id);
            msg.ok = r == ncclSuccess;
            if (!msg.ok) st = nccl_fail(c, NULL, fn, "ncclGetUniqueId", r);
        }
        ember__coll b = {.kind = EMBER__COLL_BROADCAST, .fn = fn, .send = &msg, .recv = &msg,
                         .count = (int64_t)sizeof msg, .dt = EMBER_DTYPE_U8, .root = 0};
        xs = ember__comm_run(host, &b);
        if (xs != EMBER_OK) st = xs;
        else if (!msg.ok && st == EMBER_OK)
            st = ember__comm_error(c, EMBER_ERR_NCCL, fn, "rank 0 could not make the NCCL unique id");
    }
    if (st == EMBER_OK) {
        dev_guard g;
        cudaError_t e = guard_enter(&g, m->dev);
        if (e != cudaSuccess) {
            st = cuda_fail(c, m->dev, fn, "cudaSetDevice", e);
        } else {
            /* blocking, but every rank has the id by now (the broadcast above was timed) */
            ncclResult_t r = ncclCommInitRank(&m->nc, c->size, msg.id, c->rank);
            if (r != ncclSuccess) {
                m->nc = NULL;
                st = nccl_fail(c, NULL, fn, "ncclCommInitRank", r);
            }
        }
        guard_leave(&g);
    }
    if (st != EMBER_OK) {
        if (c && m) nccl_destroy(c); /* destroys host too */
        else {
            free(c);
            free(m);
            ember_comm_destroy(host);
        }
        return st;
    }
    *out = c;
    return EMBER_OK;
}

ember_status ember__comm_create_nccl(const ember_comm_config *cfg, ember_comm **out) {
    ember_comm_config hc = cfg ? *cfg : (ember_comm_config){0};
    hc.device = EMBER_CPU;
    ember_comm *host = NULL;
    EMBER_TRY(ember__comm_create_mpi(&hc, &host));
    return ember__comm_nccl_from_host(host, cfg, out);
}

#endif
