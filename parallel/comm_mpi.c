/*
 * The MPI backend: host buffers, processes started by mpirun.
 *
 * Every operation, blocking or not, is MPI's non-blocking form (MPI_Iallreduce,
 * MPI_Ialltoallv, MPI_Isend, ...) completed by the front end's deadline loop through
 * MPI_Test. A blocking MPI call cannot be given up on: a rank that died or skipped a
 * collective would hang the others forever, and a library may not MPI_Abort the job.
 * After a timeout the request cannot be freed either (MPI forbids freeing or
 * cancelling a pending collective), so it is parked on the communicator with any
 * memory it still uses and tested once more when the communicator is destroyed.
 *
 * Each ember communicator is an MPI_Comm_dup (or split) of its parent with
 * MPI_ERRORS_RETURN, so ember's messages never match the application's and MPI
 * failures come back as codes (EMBER_ERR_MPI with MPI's text) instead of aborting.
 * f16 and bf16 travel as 16-bit words; their reductions are user-defined MPI ops that
 * compute in f32. MEAN is SUM followed by a division on each rank.
 *
 * MPI is initialised by the first ember MPI communicator when the application has not
 * done it, and finalized when the last ember MPI communicator is destroyed.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "parallel/comm_internal.h"

int ember__comm_mpi_launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *e = getenv(vars[i]);
        if (e && *e) return 1;
    }
    return 0;
}

#ifndef EMBER_HAVE_MPI

int ember__comm_mpi_initialized(void) { return 0; }

ember_status ember__comm_create_mpi(const ember_comm_config *cfg, ember_comm **out) {
    (void)cfg;
    (void)out;
    return ember__error(EMBER_ERR_UNSUPPORTED,
                        "ember_comm_create_mpi: ember was built without MPI (install libopenmpi-dev "
                        "openmpi-bin and reconfigure)");
}

ember_status ember__comm_mpi_local_rank(ember_comm *mpi, int *local_rank) {
    (void)mpi;
    *local_rank = 0;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember was built without MPI");
}

ember_status ember__comm_mpi_validate(ember_comm *mpi, ember_comm *named, const ember__coll *a,
                                      ember_status local) {
    (void)mpi;
    (void)named;
    (void)a;
    return local;
}

#else /* EMBER_HAVE_MPI */

#include <mpi.h>

#define P2P_TAG 7301

/* ---- process-wide MPI state ---- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_users;     /* live ember MPI communicators */
static int g_owned;     /* ember called MPI_Init_thread */
static int g_ops_made;
static MPI_Op g_half_ops[2][3]; /* [f16, bf16][sum, max, min] */

#define HALF_OP(name, to, from, expr)                                          \
    static void name(void *in, void *inout, int *len, MPI_Datatype *dt) {    \
        (void)dt;                                                              \
        const uint16_t *x = in;                                                \
        uint16_t *y = inout;                                                   \
        for (int i = 0; i < *len; i++) {                                       \
            float a = to(x[i]), b = to(y[i]);                                  \
            y[i] = from(expr);                                                 \
        }                                                                      \
    }
HALF_OP(f16_sum, ember_f16_to_f32, ember_f32_to_f16, a + b)
HALF_OP(f16_max, ember_f16_to_f32, ember_f32_to_f16, (a > b || isnan(a)) ? a : b)
HALF_OP(f16_min, ember_f16_to_f32, ember_f32_to_f16, (a < b || isnan(a)) ? a : b)
HALF_OP(bf16_sum, ember_bf16_to_f32, ember_f32_to_bf16, a + b)
HALF_OP(bf16_max, ember_bf16_to_f32, ember_f32_to_bf16, (a > b || isnan(a)) ? a : b)
HALF_OP(bf16_min, ember_bf16_to_f32, ember_f32_to_bf16, (a < b || isnan(a)) ? a : b)

static ember_status mpi_code(ember_status st, const char *fn, const char *call, int code) {
    char text[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
    text[len] = '\0';
    return ember__error(st, "%s: %s: %s (MPI error %d)", fn, call, text, code);
}

/* A failed MPI call on communicator c: truncation is a count mismatch, the rest MPI's. */
static ember_status mpi_fail(ember_comm *c, const char *fn, const char *call, int code) {
    char text[MPI_MAX_ERROR_STRING + 1];
    int len = 0, cls = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
    text[len] = '\0';
    MPI_Error_class(code, &cls);
    if (cls == MPI_ERR_TRUNCATE)
        return ember__comm_error(c, EMBER_ERR_SHAPE, fn, "%s: the message is longer than the count received (%s)",
                                 call, text);
    return ember__comm_error(c, EMBER_ERR_MPI, fn, "%s: %s (MPI error %d)", call, text, code);
}

static ember_status mpi_acquire(const char *fn) {
    pthread_mutex_lock(&g_lock);
    ember_status st = EMBER_OK;
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) {
        st = ember__error(EMBER_ERR_STATE,
                          "%s: MPI is already finalized (by the destroy of the last ember MPI "
                          "communicator, or by the application); MPI cannot start twice in one "
                          "process: keep a communicator alive",
                          fn);
        goto out;
    }
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) {
            st = mpi_code(EMBER_ERR_MPI, fn, "MPI_Init_thread", rc);
            goto out;
        }
        g_owned = 1;
        if (provided < MPI_THREAD_SERIALIZED)
            ember_log(EMBER_LOG_WARN, "%s: MPI provides thread level %d only: call ember's "
                      "communicators from the main thread", fn, provided);
    }
    if (!g_ops_made) {
        MPI_User_function *fns[2][3] = {{f16_sum, f16_max, f16_min}, {bf16_sum, bf16_max, bf16_min}};
        for (int d = 0; d < 2; d++)
            for (int o = 0; o < 3; o++) {
                int rc = MPI_Op_create(fns[d][o], 1, &g_half_ops[d][o]);
                if (rc != MPI_SUCCESS) {
                    st = mpi_code(EMBER_ERR_MPI, fn, "MPI_Op_create", rc);
                    goto out;
                }
            }
        g_ops_made = 1;
    }
    g_users++;
out:
    pthread_mutex_unlock(&g_lock);
    return st;
}

static void mpi_release(void) {
    pthread_mutex_lock(&g_lock);
    if (--g_users == 0 && g_owned) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) {
            for (int d = 0; d < 2 && g_ops_made; d++)
                for (int o = 0; o < 3; o++) MPI_Op_free(&g_half_ops[d][o]);
            g_ops_made = 0;
            MPI_Finalize();
        }
        g_owned = 0;
    }
    pthread_mutex_unlock(&g_lock);
}

int ember__comm_mpi_initialized(void) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    return inited && !fin;
}

/* ---- communicators ---- */

typedef struct orphan {
    MPI_Request req;
    void *mem; /* freed once req completes */
    struct orphan *next;
} orphan;

typedef struct mpi_impl {
    MPI_Comm comm;
    orphan *orphans;
} mpi_impl;

typedef struct mpi_req {
    MPI_Request req;
    int *iv; /* all_to_all_v: counts and displacements as int (4 * size) */
    void *mean_buf;
    int64_t mean_count;
    void *move_dst;
    const void *move_src;
    size_t move_bytes;
    int recv_check, peer, got, truncated;
    MPI_Datatype type;
} mpi_req;
_Static_assert(sizeof(mpi_req) <= sizeof(((ember_comm_request *)0)->be), "mpi_req fits the request");

static MPI_Datatype mpi_type(ember_dtype dt) {
    switch (dt) {
    case EMBER_DTYPE_F32: return MPI_FLOAT;
    case EMBER_DTYPE_F16:
    case EMBER_DTYPE_BF16: return MPI_UINT16_T;
    case EMBER_DTYPE_I8: return MPI_INT8_T;
    case EMBER_DTYPE_U8: return MPI_UINT8_T;
    case EMBER_DTYPE_I32: return MPI_INT32_T;
    case EMBER_DTYPE_I64: return MPI_INT64_T;
    default: return MPI_DATATYPE_NULL;
    }
}

static MPI_Op mpi_op(ember_reduce_op op, ember_dtype dt) {
    int o = op == EMBER_REDUCE_MAX ? 1 : op == EMBER_REDUCE_MIN ? 2 : 0;
    if (dt == EMBER_DTYPE_F16 || dt == EMBER_DTYPE_BF16) return g_half_ops[dt == EMBER_DTYPE_BF16][o];
    return o == 1 ? MPI_MAX : o == 2 ? MPI_MIN : MPI_SUM;
}

static ember_status mpi_start(ember_comm *c, const ember__coll *a, ember_comm_request *r) {
    mpi_impl *m = c->impl;
    mpi_req *q = (mpi_req *)r->be;
    memset(q, 0, sizeof *q);
    q->req = MPI_REQUEST_NULL;
    MPI_Datatype t = mpi_type(a->dt);
    q->type = t;
    int n = (int)a->count, rc = MPI_SUCCESS;
    void *rb = a->recv;
    const void *sb = a->send;
    const char *call = "?";
    switch (a->kind) {
    case EMBER__COLL_ALL_REDUCE:
        call = "MPI_Iallreduce";
        rc = MPI_Iallreduce(a->in_place ? MPI_IN_PLACE : sb, rb, n, t, mpi_op(a->op, a->dt), m->comm, &q->req);
        if (a->op == EMBER_REDUCE_MEAN) q->mean_buf = rb, q->mean_count = a->count;
        break;
    case EMBER__COLL_ALL_GATHER:
        call = "MPI_Iallgather";
        rc = MPI_Iallgather(a->in_place ? MPI_IN_PLACE : sb, n, t, rb, n, t, m->comm, &q->req);
        break;
    case EMBER__COLL_REDUCE_SCATTER:
        call = "MPI_Ireduce_scatter_block";
        if (a->in_place) {
            /* MPI's in place reads the whole input from the recv buffer and leaves the
               result at its start; ember's (NCCL's) wants it at block `rank`. */
            rc = MPI_Ireduce_scatter_block(MPI_IN_PLACE, (void *)sb, n, t, mpi_op(a->op, a->dt), m->comm,
                                           &q->req);
            q->move_dst = rb;
            q->move_src = sb;
            q->move_bytes = (size_t)a->count * ember_dtype_size(a->dt);
        } else {
            rc = MPI_Ireduce_scatter_block(sb, rb, n, t, mpi_op(a->op, a->dt), m->comm, &q->req);
        }
        if (a->op == EMBER_REDUCE_MEAN) q->mean_buf = rb, q->mean_count = a->count;
        break;
    case EMBER__COLL_ALL_TO_ALL:
        call = "MPI_Ialltoall";
        rc = MPI_Ialltoall(sb, n, t, rb, n, t, m->comm, &q->req);
        break;
    case EMBER__COLL_ALL_TO_ALL_V: {
        call = "MPI_Ialltoallv";
        int p = c->size;
        q->iv = malloc(4 * (size_t)p * sizeof *q->iv);
        if (!q->iv) return ember__comm_error(c, EMBER_ERR_OUT_OF_MEMORY, a->fn, "counts");
        for (int j = 0; j < p; j++) { /* the front end checked they fit an int */
            q->iv[j] = (int)a->send_counts[j];
            q->iv[p + j] = (int)a->send_displs[j];
            q->iv[2 * p + j] = (int)a->recv_counts[j];
            q->iv[3 * p + j] = (int)a->recv_displs[j];
        }
        rc = MPI_Ialltoallv(sb, q->iv, q->iv + p, t, rb, q->iv + 2 * p, q->iv + 3 * p, t, m->comm, &q->req);
        break;
    }
    case EMBER__COLL_BROADCAST:
        call = "MPI_Ibcast";
        rc = MPI_Ibcast(rb, n, t, a->root, m->comm, &q->req);
        break;
    case EMBER__COLL_SEND:
        call = "MPI_Isend";
        rc = MPI_Isend(sb, n, t, a->root, P2P_TAG, m->comm, &q->req);
        break;
    case EMBER__COLL_RECV:
        call = "MPI_Irecv";
        rc = MPI_Irecv(rb, n, t, a->root, P2P_TAG, m->comm, &q->req);
        q->recv_check = 1;
        q->peer = a->root;
        break;
    case EMBER__COLL_BARRIER:
        call = "MPI_Ibarrier";
        rc = MPI_Ibarrier(m->comm, &q->req);
        break;
    default: return ember__comm_error(c, EMBER_ERR_INTERNAL, a->fn, "collective kind %d", (int)a->kind);
    }
    if (rc != MPI_SUCCESS) {
        free(q->iv);
        q->iv = NULL;
        return mpi_fail(c, a->fn, call, rc);
    }
    return EMBER_OK;
}

/* A recv that completed with the wrong count is reported by finish: the message was
   consumed, the ranks are still in step, the communicator stays usable. */
static ember_status mpi_test(ember_comm_request *r, int *done) {
    mpi_req *q = (mpi_req *)r->be;
    MPI_Status status;
    int flag = 0;
    int rc = MPI_Test(&q->req, &flag, &status);
    if (rc != MPI_SUCCESS) {
        int cls = 0;
        MPI_Error_class(rc, &cls);
        if (q->recv_check && cls == MPI_ERR_TRUNCATE) {
            q->req = MPI_REQUEST_NULL;
            q->truncated = 1;
            *done = 1;
            return EMBER_OK;
        }
        return mpi_fail(r->comm, r->fn, "MPI_Test", rc);
    }
    *done = flag;
    if (flag && q->recv_check) MPI_Get_count(&status, q->type, &q->got);
    return EMBER_OK;
}

static void divide(void *buf, int64_t n, ember_dtype dt, int by) {
    float inv = (float)by;
    if (dt == EMBER_DTYPE_F32) {
        float *x = buf;
        for (int64_t i = 0; i < n; i++) x[i] /= inv;
    } else {
        uint16_t *x = buf;
        int bf = dt == EMBER_DTYPE_BF16;
        for (int64_t i = 0; i < n; i++)
            x[i] = bf ? ember_f32_to_bf16(ember_bf16_to_f32(x[i]) / inv)
                      : ember_f32_to_f16(ember_f16_to_f32(x[i]) / inv);
    }
}

static ember_status mpi_finish(ember_comm_request *r) {
    mpi_req *q = (mpi_req *)r->be;
    if (q->truncated)
        return ember__comm_error(r->comm, EMBER_ERR_SHAPE, r->fn,
                                 "the message from rank %d is longer than the %lld elements expected",
                                 q->peer, (long long)r->count);
    if (q->recv_check && (int64_t)q->got != r->count)
        return ember__comm_error(r->comm, EMBER_ERR_SHAPE, r->fn, "received %d elements from rank %d, expected %lld",
                                 q->got, q->peer, (long long)r->count);
    if (q->move_bytes && q->move_dst != q->move_src) memmove(q->move_dst, q->move_src, q->move_bytes);
    if (q->mean_buf && r->comm->size > 1) divide(q->mean_buf, q->mean_count, r->dt, r->comm->size);
    free(q->iv);
    q->iv = NULL;
    return EMBER_OK;
}

static void mpi_abandon(ember_comm_request *r) {
    mpi_req *q = (mpi_req *)r->be;
    mpi_impl *m = r->comm->impl;
    if (q->req == MPI_REQUEST_NULL) {
        free(q->iv);
        q->iv = NULL;
        return;
    }
    orphan *o = malloc(sizeof *o);
    if (!o) return; /* leak the request: it cannot be freed anyway */
    o->req = q->req;
    o->mem = q->iv;
    o->next = m->orphans;
    m->orphans = o;
    q->req = MPI_REQUEST_NULL;
    q->iv = NULL;
}

static ember_status mpi_validate(ember_comm *c, const ember__coll *a, ember_status local) {
    return ember__comm_mpi_validate(c, c, a, local);
}

static ember_status mpi_split(ember_comm *c, int color, int key, ember_comm **out);
static void mpi_destroy(ember_comm *c);

static const ember__comm_ops mpi_ops = {mpi_start,    mpi_test,  mpi_finish, mpi_abandon,
                                        mpi_validate, mpi_split, mpi_destroy};

/* Wrap comm (owned from now on) in an ember communicator; takes one MPI user. */
static ember_status wrap(MPI_Comm comm, const ember_comm_config *cfg, const char *fn, ember_comm **out) {
    ember_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        MPI_Comm_free(&comm);
        mpi_release();
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    }
    ember__comm_init(c, &mpi_ops, EMBER_COMM_BACKEND_MPI, cfg);
    m->comm = comm;
    c->impl = m;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    *out = c;
    return EMBER_OK;
}

/* Poll one raw request against a deadline (for MPI_Comm_idup, before a comm exists). */
static ember_status raw_wait(MPI_Request *rq, double timeout, const char *fn, const char *call) {
    double t0 = ember__now();
    for (unsigned spins = 0;; spins++) {
        int flag = 0;
        int rc = MPI_Test(rq, &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_code(EMBER_ERR_MPI, fn, call, rc);
        if (flag) return EMBER_OK;
        if (timeout >= 0 && ember__now() - t0 > timeout)
            return ember__error(EMBER_ERR_TIMEOUT, "%s: %s not complete after %g s: not every rank joined",
                                fn, call, timeout);
        if (spins >= 256) sched_yield();
    }
}

ember_status ember__comm_create_mpi(const ember_comm_config *cfg, ember_comm **out) {
    const char *fn = "ember_comm_create_mpi";
    if (cfg && cfg->device.type != EMBER_DEVICE_CPU)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: the MPI backend moves host memory; use ember_comm_create_nccl for GPU buffers", fn);
    EMBER_TRY(mpi_acquire(fn));
    MPI_Comm parent = cfg && cfg->mpi_comm ? *(const MPI_Comm *)cfg->mpi_comm : MPI_COMM_WORLD;
    MPI_Comm dup = MPI_COMM_NULL;
    MPI_Request rq = MPI_REQUEST_NULL;
    int rc = MPI_Comm_idup(parent, &dup, &rq);
    ember_status st = rc == MPI_SUCCESS ? EMBER_OK : mpi_code(EMBER_ERR_MPI, fn, "MPI_Comm_idup", rc);
    if (st == EMBER_OK) {
        double t = cfg ? cfg->timeout_s : 0.0;
        st = raw_wait(&rq, t == 0.0 ? ember__comm_default_timeout() : t, fn, "MPI_Comm_idup");
    }
    if (st != EMBER_OK) {
        /* a timed-out dup stays pending: it cannot be freed, nor MPI finalized under it */
        if (rq == MPI_REQUEST_NULL) mpi_release();
        return st;
    }
    return wrap(dup, cfg, fn, out);
}

static ember_status mpi_split(ember_comm *c, int color, int key, ember_comm **out) {
    const char *fn = "ember_comm_split";
    mpi_impl *m = c->impl;
    /* MPI_Comm_split blocks until every rank calls it: meet in a barrier first, which
       times out like any collective, so a missing rank cannot hang the split. */
    ember__coll b = {.kind = EMBER__COLL_BARRIER, .fn = fn, .dt = EMBER_DTYPE_U8};
    EMBER_TRY(ember__comm_run(c, &b));
    EMBER_TRY(mpi_acquire(fn));
    MPI_Comm nc = MPI_COMM_NULL;
    int rc = MPI_Comm_split(m->comm, color == EMBER_COMM_UNDEFINED ? MPI_UNDEFINED : color, key, &nc);
    if (rc != MPI_SUCCESS) {
        mpi_release();
        return mpi_fail(c, fn, "MPI_Comm_split", rc);
    }
    if (nc == MPI_COMM_NULL) {
        mpi_release();
        return EMBER_OK;
    }
    EMBER_TRY(wrap(nc, NULL, fn, out));
    (*out)->timeout_s = c->timeout_s;
    (*out)->validate = c->validate;
    return EMBER_OK;
}

static void mpi_destroy(ember_comm *c) {
    mpi_impl *m = c->impl;
    int fin = 0;
    MPI_Finalized(&fin);
    for (orphan *o = m->orphans, *next; o; o = next) {
        next = o->next;
        int flag = 0;
        if (!fin && MPI_Test(&o->req, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) free(o->mem);
        /* else: MPI may still write it; leak */
        free(o);
    }
    if (!fin) MPI_Comm_free(&m->comm);
    free(m);
    free(c);
    mpi_release();
}

ember_status ember__comm_mpi_local_rank(ember_comm *mpi, int *local_rank) {
    mpi_impl *m = mpi->impl;
    MPI_Comm node = MPI_COMM_NULL;
    int rc = MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, mpi->rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return mpi_fail(mpi, "ember_comm_create_nccl", "MPI_Comm_split_type", rc);
    MPI_Comm_rank(node, local_rank);
    MPI_Comm_free(&node);
    return EMBER_OK;
}

/* ---- validation ---- */

static const char *const kind_names[EMBER__COLL_KIND_COUNT] = {
    "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "all_to_all_v",
    "broadcast",  "send",       "recv",           "barrier"};

static const char *kind_name(int64_t k) {
    return k >= 0 && k < EMBER__COLL_KIND_COUNT ? kind_names[k] : "?";
}

static const char *op_name(int64_t op) {
    switch (op) {
    case EMBER_REDUCE_SUM: return "SUM";
    case EMBER_REDUCE_MEAN: return "MEAN";
    case EMBER_REDUCE_MAX: return "MAX";
    case EMBER_REDUCE_MIN: return "MIN";
    default: return "?";
    }
}

enum { SIG_KIND, SIG_COUNT, SIG_DTYPE, SIG_OP, SIG_ROOT, SIG_LOCAL_ERR, SIG_COUNTS_BAD, SIG_N };

/* The value on the other ranks that differs from mine (min or max). */
static int64_t other(const int64_t *mx, const int64_t *mn, const int64_t *mine, int i) {
    return mx[i] != mine[i] ? mx[i] : mn[i];
}

ember_status ember__comm_mpi_validate(ember_comm *mpi, ember_comm *named, const ember__coll *a,
                                      ember_status local) {
    char vfn[96];
    snprintf(vfn, sizeof vfn, "%s (validation)", a->fn);
    int p = mpi->size;
    int64_t counts_bad = 0, bad_peer = -1, bad_sent = 0;
    ember_status st = EMBER_OK;
    if (a->kind == EMBER__COLL_ALL_TO_ALL_V) {
        int64_t *sent = malloc((size_t)p * sizeof *sent);
        if (!sent) return ember__comm_error(named, EMBER_ERR_OUT_OF_MEMORY, a->fn, "validation");
        ember__coll x = {.kind = EMBER__COLL_ALL_TO_ALL, .fn = vfn, .send = a->send_counts, .recv = sent,
                         .count = 1, .dt = EMBER_DTYPE_I64};
        st = ember__comm_run(mpi, &x);
        for (int j = 0; st == EMBER_OK && j < p; j++)
            if (sent[j] != a->recv_counts[j]) {
                counts_bad = 1;
                bad_peer = j;
                bad_sent = sent[j];
                break;
            }
        free(sent);
    }
    int64_t sig[SIG_N] = {0}, both[2 * SIG_N], res[2 * SIG_N];
    if (st == EMBER_OK) {
        int reduction = a->kind == EMBER__COLL_ALL_REDUCE || a->kind == EMBER__COLL_REDUCE_SCATTER;
        sig[SIG_KIND] = a->kind;
        sig[SIG_COUNT] = a->kind == EMBER__COLL_ALL_TO_ALL_V || a->kind == EMBER__COLL_BARRIER ? 0 : a->count;
        sig[SIG_DTYPE] = a->kind == EMBER__COLL_BARRIER ? 0 : a->dt;
        sig[SIG_OP] = reduction ? a->op : 0;
        sig[SIG_ROOT] = a->kind == EMBER__COLL_BROADCAST ? a->root : 0;
        sig[SIG_LOCAL_ERR] = local != EMBER_OK;
        sig[SIG_COUNTS_BAD] = counts_bad;
        for (int i = 0; i < SIG_N; i++) both[i] = sig[i], both[SIG_N + i] = -sig[i];
        ember__coll y = {.kind = EMBER__COLL_ALL_REDUCE, .fn = vfn, .send = both, .recv = res,
                         .count = 2 * SIG_N, .dt = EMBER_DTYPE_I64, .op = EMBER_REDUCE_MAX};
        st = ember__comm_run(mpi, &y);
    }
    if (st != EMBER_OK) {
        if (mpi != named && mpi->broken) ember__comm_break(named);
        return st;
    }
    if (local != EMBER_OK) return local;
    int64_t mx[SIG_N], mn[SIG_N];
    for (int i = 0; i < SIG_N; i++) mx[i] = res[i], mn[i] = -res[SIG_N + i];
    const char *fn = a->fn;
    if (mx[SIG_LOCAL_ERR])
        return ember__comm_error(named, EMBER_ERR_INVALID_ARGUMENT, fn,
                                 "another rank refused its arguments (its error says why); nothing was moved");
    if (mn[SIG_KIND] != mx[SIG_KIND])
        return ember__comm_error(named, EMBER_ERR_INVALID_ARGUMENT, fn,
                                 "ranks called different collectives (this rank %s, another %s)",
                                 kind_name(sig[SIG_KIND]), kind_name(other(mx, mn, sig, SIG_KIND)));
    if (mn[SIG_DTYPE] != mx[SIG_DTYPE])
        return ember__comm_error(named, EMBER_ERR_DTYPE, fn, "dtype differs across ranks (this rank %s, another %s)",
                                 ember_dtype_name((ember_dtype)sig[SIG_DTYPE]),
                                 ember_dtype_name((ember_dtype)other(mx, mn, sig, SIG_DTYPE)));
    if (mn[SIG_COUNT] != mx[SIG_COUNT])
        return ember__comm_error(named, EMBER_ERR_SHAPE, fn,
                                 "element count differs across ranks (this rank %lld, another %lld)",
                                 (long long)sig[SIG_COUNT], (long long)other(mx, mn, sig, SIG_COUNT));
    if (mn[SIG_OP] != mx[SIG_OP])
        return ember__comm_error(named, EMBER_ERR_INVALID_ARGUMENT, fn,
                                 "reduction op differs across ranks (this rank %s, another %s)",
                                 op_name(sig[SIG_OP]), op_name(other(mx, mn, sig, SIG_OP)));
    if (mn[SIG_ROOT] != mx[SIG_ROOT])
        return ember__comm_error(named, EMBER_ERR_INVALID_ARGUMENT, fn,
                                 "root differs across ranks (this rank %lld, another %lld)",
                                 (long long)sig[SIG_ROOT], (long long)other(mx, mn, sig, SIG_ROOT));
    if (counts_bad)
        return ember__comm_error(named, EMBER_ERR_SHAPE, fn,
                                 "rank %lld sends %lld elements to this rank, but recv_counts[%lld] = %lld",
                                 (long long)bad_peer, (long long)bad_sent, (long long)bad_peer,
                                 (long long)a->recv_counts[bad_peer]);
    if (mx[SIG_COUNTS_BAD])
        return ember__comm_error(named, EMBER_ERR_SHAPE, fn,
                                 "another rank's recv_counts disagree with what is sent to it (its error "
                                 "names the rank)");
    return EMBER_OK;
}

#endif /* EMBER_HAVE_MPI */
