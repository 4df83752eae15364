/*
 * The communicator front end and the self backend.
 *
 * Every collective is checked here once (dtype, op, counts, roots, overlapping
 * buffers), optionally validated across ranks, and then run as start + wait, so a
 * blocking call and an async one share one code path and one deadline loop. Blocking
 * calls use a request on the stack (no allocation per call).
 *
 * The deadline loop spins on the backend's test for a while, then yields the core
 * between tests: ranks of a job oversubscribed on few cores (CI runs 4 on 2) must let
 * each other run, and MPI only moves a non-blocking collective forward inside MPI
 * calls, so the polling is also what drives the transfer.
 */
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "parallel/comm_internal.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

static const char *const backend_names[EMBER_COMM_BACKEND_COUNT] = {"self", "mpi", "nccl"};

const char *ember_comm_backend_name(ember_comm_backend b) {
    return (int)b >= 0 && b < EMBER_COMM_BACKEND_COUNT ? backend_names[b] : "invalid";
}

double ember__comm_default_timeout(void) {
    const char *e = getenv("EMBER_COMM_TIMEOUT");
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (*end == '\0' && v > 0 && isfinite(v)) return v;
        ember_log(EMBER_LOG_WARN, "EMBER_COMM_TIMEOUT=\"%s\" is not a positive number of seconds; using %g",
                  e, EMBER_COMM_DEFAULT_TIMEOUT);
    }
    return EMBER_COMM_DEFAULT_TIMEOUT;
}

static int env_validate(void) {
    const char *e = getenv("EMBER_COMM_VALIDATE");
    return e && *e && strcmp(e, "0") != 0;
}

void ember__comm_init(ember_comm *c, const ember__comm_ops *ops, ember_comm_backend b,
                      const ember_comm_config *cfg) {
    c->ops = ops;
    c->backend = b;
    c->rank = 0;
    c->size = 1;
    c->device = EMBER_CPU;
    double t = cfg ? cfg->timeout_s : 0.0;
    c->timeout_s = t == 0.0 ? ember__comm_default_timeout() : t < 0 ? -1.0 : t;
    int v = cfg ? cfg->validate : 0;
    c->validate = v > 0 ? 1 : v < 0 ? 0 : env_validate();
}

ember_status ember__comm_error(const ember_comm *c, ember_status st, const char *fn,
                               const char *fmt, ...) {
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!c) return ember__error(st, "%s: %s", fn, text);
    return ember__error(st, "%s (rank %d of %d, %s): %s", fn, c->rank, c->size,
                        ember_comm_backend_name(c->backend), text);
}

void ember__comm_break(ember_comm *c) {
    if (c->broken) return;
    c->broken = 1;
    snprintf(c->broken_why, sizeof c->broken_why, "%s", ember_last_error());
}

/* ---- requests and the deadline loop ---- */

/* Failure text kept with a request, so a wait after a failing test reports it. */
typedef struct req_fail {
    ember_status st;
    char why[256];
} req_fail;
_Static_assert(sizeof(req_fail) <= 512, "req_fail is kept next to the request");

typedef struct heap_request {
    ember_comm_request r; /* first: the public handle points here */
    req_fail fail;
} heap_request;

static void poll_failed(ember_comm_request *r, req_fail *f, ember_status st) {
    r->comm->ops->abandon(r);
    ember__comm_break(r->comm);
    r->done = 1;
    f->st = st;
    snprintf(f->why, sizeof f->why, "%s", ember_last_error());
}

/* One test; on completion runs finish. Records failures in f. */
static ember_status poll_once(ember_comm_request *r, req_fail *f) {
    if (r->done) return f->st;
    int d = 0;
    ember_status st = r->comm->ops->test(r, &d);
    if (st != EMBER_OK) {
        poll_failed(r, f, st);
        return st;
    }
    if (d) {
        r->done = 1;
        f->st = r->comm->ops->finish(r);
        if (f->st != EMBER_OK) snprintf(f->why, sizeof f->why, "%s", ember_last_error());
    }
    return f->st;
}

static ember_status wait_loop(ember_comm_request *r, req_fail *f) {
    ember_comm *c = r->comm;
    double t0 = ember__now();
    for (unsigned spins = 0; !r->done; spins++) {
        ember_status st = poll_once(r, f);
        if (st != EMBER_OK || r->done) break;
        double el = ember__now() - t0;
        if (c->timeout_s >= 0 && el > c->timeout_s) {
            ember__comm_error(c, EMBER_ERR_TIMEOUT, r->fn,
                              "not complete after %g s (%lld x %s): a rank died, hangs, or skipped "
                              "this collective; the communicator is broken now",
                              c->timeout_s, (long long)r->count, ember_dtype_name(r->dt));
            poll_failed(r, f, EMBER_ERR_TIMEOUT);
            break;
        }
        if (spins >= 256) sched_yield();
    }
    if (f->st != EMBER_OK && ember_last_status() != f->st) {
        /* the message was overwritten since the failure: say it again */
        const char *w = f->why, *colon = strstr(w, ": ");
        ember__error(f->st, "%s", colon ? colon + 2 : w);
    }
    return f->st;
}

ember_status ember__comm_wait_request(ember_comm_request *r) {
    req_fail f = {EMBER_OK, ""};
    return wait_loop(r, &f);
}

static void request_init(ember_comm_request *r, ember_comm *c, const ember__coll *a) {
    memset(r, 0, offsetof(ember_comm_request, be));
    r->comm = c;
    r->fn = a->fn;
    r->kind = a->kind;
    r->count = a->count;
    r->dt = a->dt;
    if (a->kind == EMBER__COLL_ALL_TO_ALL_V) {
        r->count = 0;
        for (int j = 0; j < c->size; j++) r->count += a->send_counts[j];
    }
}

/* Start a (already checked) and complete it, or hand out a request. */
static ember_status start_op(ember_comm *c, const ember__coll *a, ember_comm_request **req) {
    if (!req) {
        ember_comm_request r;
        request_init(&r, c, a);
        ember_status st = c->ops->start(c, a, &r);
        if (st != EMBER_OK) return st;
        return ember__comm_wait_request(&r);
    }
    heap_request *h = malloc(sizeof *h);
    if (!h) return ember__comm_error(c, EMBER_ERR_OUT_OF_MEMORY, a->fn, "request");
    request_init(&h->r, c, a);
    h->r.heap = 1;
    h->fail.st = EMBER_OK;
    h->fail.why[0] = '\0';
    ember_status st = c->ops->start(c, a, &h->r);
    if (st != EMBER_OK) {
        free(h);
        return st;
    }
    c->pending++;
    *req = &h->r;
    return EMBER_OK;
}

ember_status ember__comm_run(ember_comm *c, const ember__coll *a) { return start_op(c, a, NULL); }

static void request_release(ember_comm_request *r) {
    for (int i = 0; i < 2; i++) ember_tensor_destroy(r->keep[i]);
    if (r->comm) r->comm->pending--;
    free(r); /* heap requests only reach here */
}

ember_status ember_comm_wait(ember_comm_request *r) {
    if (!r) return EMBER_OK;
    heap_request *h = (heap_request *)r;
    ember_status st = wait_loop(r, &h->fail);
    request_release(r);
    return st;
}

ember_status ember_comm_wait_all(int n, ember_comm_request **reqs) {
    if (n < 0 || (n > 0 && !reqs))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_comm_wait_all: %d requests at %p", n,
                            (void *)reqs);
    ember_status first = EMBER_OK;
    char why[1024] = "";
    for (int i = 0; i < n; i++) {
        ember_status st = ember_comm_wait(reqs[i]);
        reqs[i] = NULL;
        if (st != EMBER_OK && first == EMBER_OK) {
            first = st;
            snprintf(why, sizeof why, "%s", ember_last_error());
        }
    }
    if (first != EMBER_OK && ember_last_status() != first) {
        const char *colon = strstr(why, ": ");
        ember__error(first, "%s", colon ? colon + 2 : why);
    }
    return first;
}

ember_status ember_comm_test(ember_comm_request *r, int *done) {
    EMBER_CHECK_NULL(r, "ember_comm_test");
    EMBER_CHECK_NULL(done, "ember_comm_test");
    heap_request *h = (heap_request *)r;
    ember_status st = poll_once(r, &h->fail);
    *done = r->done;
    return st;
}

/* ---- argument checks ---- */

static int is_reduction(ember__coll_kind k) {
    return k == EMBER__COLL_ALL_REDUCE || k == EMBER__COLL_REDUCE_SCATTER;
}

/* [a, a + na) and [b, b + nb) share a byte. */
static int overlaps(const void *a, size_t na, const void *b, size_t nb) {
    if (!na || !nb) return 0;
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + nb && y < x + na;
}

/* bytes of n elements; 0 when n < 0 or the bytes do not fit a pointer difference. */
static int bytes_of(int64_t n, size_t es, size_t *out) {
    return n >= 0 && ember__mul_size((size_t)n, es, out) && *out <= (size_t)PTRDIFF_MAX;
}

static int64_t max_count_of(const ember_comm *c) {
    return c->backend == EMBER_COMM_BACKEND_MPI ? (int64_t)INT32_MAX : INT64_MAX;
}

static ember_status check_alltoallv(ember_comm *c, ember__coll *a, size_t es) {
    const char *fn = a->fn;
    if (!a->send_counts || !a->recv_counts)
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "send_counts and recv_counts are required");
    int64_t sext = 0, rext = 0, lim = max_count_of(c);
    for (int j = 0; j < c->size; j++) {
        int64_t sc = a->send_counts[j], rc = a->recv_counts[j], sd = a->send_displs[j],
                rd = a->recv_displs[j];
        if (sc < 0 || rc < 0 || sd < 0 || rd < 0)
            return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn,
                                     "negative count or displacement for rank %d (send %lld at %lld, "
                                     "recv %lld at %lld)",
                                     j, (long long)sc, (long long)sd, (long long)rc, (long long)rd);
        if (sc > lim || rc > lim || sd > lim || rd > lim)
            return ember__comm_error(c, EMBER_ERR_OVERFLOW, fn,
                                     "counts and displacements must be <= %lld for this backend (rank %d)",
                                     (long long)lim, j);
        if (sc && sd + sc > sext) sext = sd + sc;
        if (rc && rd + rc > rext) rext = rd + rc;
    }
    size_t sb, rb;
    if (!bytes_of(sext, es, &sb) || !bytes_of(rext, es, &rb))
        return ember__comm_error(c, EMBER_ERR_OVERFLOW, fn, "buffer extent overflows");
    if ((sb && !a->send) || (rb && !a->recv))
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "NULL buffer with non-zero counts");
    if (overlaps(a->send, sb, a->recv, rb))
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "send and recv buffers overlap");
    return EMBER_OK;
}

static ember_status check_args(ember_comm *c, ember__coll *a) {
    const char *fn = a->fn;
    if (a->kind == EMBER__COLL_BARRIER) return EMBER_OK;
    if (!ember_dtype_valid(a->dt))
        return ember__comm_error(c, EMBER_ERR_DTYPE, fn, "invalid dtype %d", (int)a->dt);
    size_t es = ember_dtype_size(a->dt);
    if (is_reduction(a->kind)) {
        if (a->op != EMBER_REDUCE_SUM && a->op != EMBER_REDUCE_MEAN && a->op != EMBER_REDUCE_MAX &&
            a->op != EMBER_REDUCE_MIN)
            return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn,
                                     "op %d is not a collective op (SUM, MEAN, MAX, MIN)", (int)a->op);
        if (a->op == EMBER_REDUCE_MEAN && !ember_dtype_is_float(a->dt))
            return ember__comm_error(c, EMBER_ERR_DTYPE, fn, "MEAN needs a float dtype, not %s",
                                     ember_dtype_name(a->dt));
    }
    if (a->kind == EMBER__COLL_ALL_TO_ALL_V) return check_alltoallv(c, a, es);
    if (a->count < 0)
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "negative count %lld",
                                 (long long)a->count);
    if (a->count > max_count_of(c))
        return ember__comm_error(c, EMBER_ERR_OVERFLOW, fn, "count %lld exceeds %lld, the most this backend takes",
                                 (long long)a->count, (long long)max_count_of(c));
    size_t one, all;
    if (!bytes_of(a->count, es, &one) || !ember__mul_size(one, (size_t)c->size, &all) ||
        all > (size_t)PTRDIFF_MAX)
        return ember__comm_error(c, EMBER_ERR_OVERFLOW, fn, "%lld x %s x %d ranks overflows",
                                 (long long)a->count, ember_dtype_name(a->dt), c->size);
    switch (a->kind) {
    case EMBER__COLL_BROADCAST:
    case EMBER__COLL_SEND:
    case EMBER__COLL_RECV: {
        const char *what = a->kind == EMBER__COLL_BROADCAST ? "root" : "peer";
        if (a->root < 0 || a->root >= c->size)
            return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "%s %d is not a rank (size %d)",
                                     what, a->root, c->size);
        if (a->kind != EMBER__COLL_BROADCAST && a->root == c->rank)
            return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn,
                                     "peer %d is this rank: send and recv need another rank", a->root);
        const void *buf = a->kind == EMBER__COLL_SEND ? a->send : a->recv;
        if (one && !buf) return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "buffer is NULL");
        return EMBER_OK;
    }
    default: break;
    }
    /* bytes of the send and recv buffers */
    size_t sb = one, rb = one;
    if (a->kind == EMBER__COLL_ALL_GATHER) rb = all;
    if (a->kind == EMBER__COLL_REDUCE_SCATTER) sb = all;
    if (a->kind == EMBER__COLL_ALL_TO_ALL) sb = rb = all;
    if ((sb && !a->send) || (rb && !a->recv))
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "%s buffer is NULL",
                                 sb && !a->send ? "send" : "recv");
    const char *s = a->send, *r = a->recv;
    size_t off = (size_t)c->rank * one;
    a->in_place = 0;
    if (a->kind == EMBER__COLL_ALL_REDUCE && s == r) a->in_place = 1;
    if (a->kind == EMBER__COLL_ALL_GATHER && one && s == r + off) a->in_place = 1;
    if (a->kind == EMBER__COLL_REDUCE_SCATTER && one && r == s + off) a->in_place = 1;
    if (!a->in_place && overlaps(s, sb, r, rb))
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn,
                                 "send and recv buffers overlap (in place is send == recv for "
                                 "all_reduce, send == recv + rank * count for all_gather, "
                                 "recv == send + rank * count for reduce_scatter)");
    return EMBER_OK;
}

/* Check, validate across ranks when on, run. */
static ember_status run_coll(ember_comm *c, ember__coll *a, ember_comm_request **req) {
    if (req) *req = NULL;
    if (c->broken)
        return ember__comm_error(c, EMBER_ERR_STATE, a->fn, "the communicator is broken (%s); destroy it",
                                 c->broken_why);
    ember_status local = check_args(c, a);
    if (c->validate && c->size > 1 && a->kind != EMBER__COLL_SEND && a->kind != EMBER__COLL_RECV) {
        ember_status v = c->ops->validate(c, a, local);
        if (v != EMBER_OK) return v;
    }
    if (local != EMBER_OK) return local;
    return start_op(c, a, req);
}

#define CHECK_COMM(c, fn)                                                                   \
    do {                                                                                    \
        if (req) *req = NULL;                                                               \
        if (!(c)) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: argument 'c' is NULL", (fn)); \
    } while (0)

ember_status ember_comm_all_reduce(ember_comm *c, const void *send, void *recv, int64_t count,
                                   ember_dtype dt, ember_reduce_op op, ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_all_reduce");
    ember__coll a = {.kind = EMBER__COLL_ALL_REDUCE, .fn = "ember_comm_all_reduce", .send = send,
                     .recv = recv, .count = count, .dt = dt, .op = op};
    return run_coll(c, &a, req);
}

ember_status ember_comm_all_gather(ember_comm *c, const void *send, void *recv, int64_t count,
                                   ember_dtype dt, ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_all_gather");
    ember__coll a = {.kind = EMBER__COLL_ALL_GATHER, .fn = "ember_comm_all_gather", .send = send,
                     .recv = recv, .count = count, .dt = dt};
    return run_coll(c, &a, req);
}

ember_status ember_comm_reduce_scatter(ember_comm *c, const void *send, void *recv,
                                       int64_t count, ember_dtype dt, ember_reduce_op op,
                                       ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_reduce_scatter");
    ember__coll a = {.kind = EMBER__COLL_REDUCE_SCATTER, .fn = "ember_comm_reduce_scatter",
                     .send = send, .recv = recv, .count = count, .dt = dt, .op = op};
    return run_coll(c, &a, req);
}

ember_status ember_comm_all_to_all(ember_comm *c, const void *send, void *recv, int64_t count,
                                   ember_dtype dt, ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_all_to_all");
    ember__coll a = {.kind = EMBER__COLL_ALL_TO_ALL, .fn = "ember_comm_all_to_all", .send = send,
                     .recv = recv, .count = count, .dt = dt};
    return run_coll(c, &a, req);
}

/* Packed displacements (prefix sums) into out; counts already non-NULL. */
static void packed(const int64_t *counts, int n, int64_t *out) {
    int64_t d = 0;
    for (int j = 0; j < n; j++) {
        out[j] = d;
        d += counts[j] > 0 ? counts[j] : 0;
    }
}

ember_status ember_comm_all_to_all_v(ember_comm *c, const void *send, const int64_t *send_counts,
                                     const int64_t *send_displs, void *recv,
                                     const int64_t *recv_counts, const int64_t *recv_displs,
                                     ember_dtype dt, ember_comm_request **req) {
    const char *fn = "ember_comm_all_to_all_v";
    CHECK_COMM(c, fn);
    int64_t stack[64], *tmp = NULL;
    int64_t *sd = (int64_t *)send_displs, *rd = (int64_t *)recv_displs;
    if ((!sd && send_counts) || (!rd && recv_counts)) {
        size_t n = 2 * (size_t)c->size;
        tmp = n <= 64 ? stack : malloc(n * sizeof *tmp);
        if (!tmp) return ember__comm_error(c, EMBER_ERR_OUT_OF_MEMORY, fn, "displacements");
        if (!sd && send_counts) packed(send_counts, c->size, sd = tmp);
        if (!rd && recv_counts) packed(recv_counts, c->size, rd = tmp + c->size);
    }
    ember__coll a = {.kind = EMBER__COLL_ALL_TO_ALL_V, .fn = fn, .send = send, .recv = recv,
                     .dt = dt, .send_counts = send_counts, .send_displs = sd,
                     .recv_counts = recv_counts, .recv_displs = rd};
    ember_status st;
    if (!send_counts || !recv_counts) {
        /* still join the validation (with zero counts), so the other ranks learn of it */
        st = ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "send_counts and recv_counts are required");
        if (!c->broken && c->validate && c->size > 1) {
            int64_t *z = calloc((size_t)c->size, sizeof *z);
            if (z) {
                a.send_counts = a.recv_counts = a.send_displs = a.recv_displs = z;
                ember_status v = c->ops->validate(c, &a, st);
                if (v != EMBER_OK) st = v;
                free(z);
            }
        }
    } else {
        st = run_coll(c, &a, req);
    }
    if (tmp != stack) free(tmp);
    return st;
}

ember_status ember_comm_broadcast(ember_comm *c, void *buf, int64_t count, ember_dtype dt,
                                  int root, ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_broadcast");
    ember__coll a = {.kind = EMBER__COLL_BROADCAST, .fn = "ember_comm_broadcast", .send = buf,
                     .recv = buf, .count = count, .dt = dt, .root = root};
    return run_coll(c, &a, req);
}

ember_status ember_comm_send(ember_comm *c, const void *buf, int64_t count, ember_dtype dt,
                             int peer, ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_send");
    ember__coll a = {.kind = EMBER__COLL_SEND, .fn = "ember_comm_send", .send = buf,
                     .count = count, .dt = dt, .root = peer};
    return run_coll(c, &a, req);
}

ember_status ember_comm_recv(ember_comm *c, void *buf, int64_t count, ember_dtype dt, int peer,
                             ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_recv");
    ember__coll a = {.kind = EMBER__COLL_RECV, .fn = "ember_comm_recv", .recv = buf,
                     .count = count, .dt = dt, .root = peer};
    return run_coll(c, &a, req);
}

ember_status ember_comm_barrier(ember_comm *c, ember_comm_request **req) {
    CHECK_COMM(c, "ember_comm_barrier");
    ember__coll a = {.kind = EMBER__COLL_BARRIER, .fn = "ember_comm_barrier", .dt = EMBER_DTYPE_U8};
    return run_coll(c, &a, req);
}

/* ---- tensors ---- */

static ember_status check_tensor(ember_comm *c, const ember_tensor *t, const char *fn,
                                 const char *name) {
    if (!t) return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn, "tensor '%s' is NULL", name);
    if (!ember_tensor_is_contiguous(t))
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, fn,
                                 "tensor '%s' is not contiguous (ember_tensor_contiguous makes one)", name);
    if (!ember_device_equal(ember_tensor_device(t), c->device)) {
        char a[32], b[32];
        return ember__comm_error(c, EMBER_ERR_DEVICE, fn, "tensor '%s' is on %s, the communicator moves %s memory",
                                 name, ember_device_format(ember_tensor_device(t), a, sizeof a),
                                 ember_device_format(c->device, b, sizeof b));
    }
    return EMBER_OK;
}

static ember_status check_pair(ember_comm *c, const ember_tensor *in, const ember_tensor *out,
                               const char *fn, int64_t out_per_in_num, int64_t out_per_in_den) {
    EMBER_TRY(check_tensor(c, in, fn, "in"));
    EMBER_TRY(check_tensor(c, out, fn, "out"));
    if (ember_tensor_dtype(in) != ember_tensor_dtype(out))
        return ember__comm_error(c, EMBER_ERR_DTYPE, fn, "in is %s, out is %s",
                                 ember_dtype_name(ember_tensor_dtype(in)),
                                 ember_dtype_name(ember_tensor_dtype(out)));
    int64_t ni = ember_tensor_numel(in), no = ember_tensor_numel(out);
    if (ni % out_per_in_den != 0 || no != ni / out_per_in_den * out_per_in_num) {
        char a[96], b[96];
        return ember__comm_error(c, EMBER_ERR_SHAPE, fn, "in %s and out %s: out needs %lld elements",
                                 ember_tensor_describe(in, a, sizeof a),
                                 ember_tensor_describe(out, b, sizeof b),
                                 ni % out_per_in_den ? -1LL : (long long)(ni / out_per_in_den * out_per_in_num));
    }
    return EMBER_OK;
}

/* Keep the tensors of an async call alive until its wait. */
static ember_status keep(ember_comm_request *r, const ember_tensor *a, const ember_tensor *b) {
    if (!r) return EMBER_OK;
    ember_status st = ember_tensor_retain(a, &r->keep[0]);
    if (st == EMBER_OK && b) st = ember_tensor_retain(b, &r->keep[1]);
    if (st != EMBER_OK) {
        /* cannot give the request back half-made: complete it here */
        char why[512];
        snprintf(why, sizeof why, "%s", ember_last_error());
        ember_comm_wait(r);
        const char *colon = strstr(why, ": ");
        return ember__error(st, "%s", colon ? colon + 2 : why);
    }
    return EMBER_OK;
}

static ember_status kept(ember_comm_request **req, const ember_tensor *a, const ember_tensor *b) {
    if (!req || !*req) return EMBER_OK;
    ember_status st = keep(*req, a, b);
    if (st != EMBER_OK) *req = NULL;
    return st;
}

ember_status ember_comm_all_reduce_tensor(ember_comm *c, ember_tensor *t, ember_reduce_op op,
                                          ember_comm_request **req) {
    const char *fn = "ember_comm_all_reduce_tensor";
    CHECK_COMM(c, fn);
    EMBER_TRY(check_tensor(c, t, fn, "t"));
    void *p = ember_tensor_data(t);
    EMBER_TRY(ember_comm_all_reduce(c, p, p, ember_tensor_numel(t), ember_tensor_dtype(t), op, req));
    return kept(req, t, NULL);
}

ember_status ember_comm_broadcast_tensor(ember_comm *c, ember_tensor *t, int root,
                                         ember_comm_request **req) {
    const char *fn = "ember_comm_broadcast_tensor";
    CHECK_COMM(c, fn);
    EMBER_TRY(check_tensor(c, t, fn, "t"));
    EMBER_TRY(ember_comm_broadcast(c, ember_tensor_data(t), ember_tensor_numel(t),
                                   ember_tensor_dtype(t), root, req));
    return kept(req, t, NULL);
}

ember_status ember_comm_all_gather_tensor(ember_comm *c, const ember_tensor *in, ember_tensor *out,
                                          ember_comm_request **req) {
    const char *fn = "ember_comm_all_gather_tensor";
    CHECK_COMM(c, fn);
    EMBER_TRY(check_pair(c, in, out, fn, c->size, 1));
    EMBER_TRY(ember_comm_all_gather(c, ember_tensor_data(in), ember_tensor_data(out),
                                    ember_tensor_numel(in), ember_tensor_dtype(in), req));
    return kept(req, in, out);
}

ember_status ember_comm_reduce_scatter_tensor(ember_comm *c, const ember_tensor *in,
                                              ember_tensor *out, ember_reduce_op op,
                                              ember_comm_request **req) {
    const char *fn = "ember_comm_reduce_scatter_tensor";
    CHECK_COMM(c, fn);
    EMBER_TRY(check_pair(c, in, out, fn, 1, c->size));
    EMBER_TRY(ember_comm_reduce_scatter(c, ember_tensor_data(in), ember_tensor_data(out),
                                        ember_tensor_numel(out), ember_tensor_dtype(in), op, req));
    return kept(req, in, out);
}

ember_status ember_comm_all_to_all_tensor(ember_comm *c, const ember_tensor *in, ember_tensor *out,
                                          ember_comm_request **req) {
    const char *fn = "ember_comm_all_to_all_tensor";
    CHECK_COMM(c, fn);
    EMBER_TRY(check_pair(c, in, out, fn, 1, 1));
    int64_t n = ember_tensor_numel(in);
    if (n % c->size != 0)
        return ember__comm_error(c, EMBER_ERR_SHAPE, fn, "%lld elements do not split into %d equal blocks",
                                 (long long)n, c->size);
    EMBER_TRY(ember_comm_all_to_all(c, ember_tensor_data(in), ember_tensor_data(out), n / c->size,
                                    ember_tensor_dtype(in), req));
    return kept(req, in, out);
}

/* ---- queries ---- */

int ember_comm_rank(const ember_comm *c) { return c ? c->rank : 0; }
int ember_comm_size(const ember_comm *c) { return c ? c->size : 1; }
ember_comm_backend ember_comm_get_backend(const ember_comm *c) {
    return c ? c->backend : EMBER_COMM_BACKEND_SELF;
}
ember_device ember_comm_device(const ember_comm *c) { return c ? c->device : EMBER_CPU; }
double ember_comm_timeout(const ember_comm *c) { return c ? c->timeout_s : EMBER_COMM_DEFAULT_TIMEOUT; }
int ember_comm_is_broken(const ember_comm *c) { return c ? c->broken : 0; }

ember_status ember_comm_set_timeout(ember_comm *c, double seconds) {
    EMBER_CHECK_NULL(c, "ember_comm_set_timeout");
    if (isnan(seconds))
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, "ember_comm_set_timeout", "timeout is NaN");
    c->timeout_s = seconds == 0.0 ? ember__comm_default_timeout() : seconds < 0 ? -1.0 : seconds;
    return EMBER_OK;
}

/* ---- self ---- */

static ember_status self_copy(ember_comm *c, const char *fn, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return EMBER_OK;
#ifdef EMBER_HAVE_CUDA
    if (c->device.type == EMBER_DEVICE_CUDA)
        return ember__cuda_memcpy(c->device.index, dst, src, bytes, EMBER__D2D, 1);
#endif
    (void)c;
    (void)fn;
    memmove(dst, src, bytes);
    return EMBER_OK;
}

static ember_status self_start(ember_comm *c, const ember__coll *a, ember_comm_request *r) {
    size_t es = ember_dtype_size(a->dt);
    r->done = 0;
    switch (a->kind) {
    case EMBER__COLL_ALL_REDUCE:
    case EMBER__COLL_ALL_GATHER:
    case EMBER__COLL_REDUCE_SCATTER:
    case EMBER__COLL_ALL_TO_ALL:
        EMBER_TRY(self_copy(c, a->fn, a->recv, a->send, (size_t)a->count * es));
        break;
    case EMBER__COLL_ALL_TO_ALL_V:
        if (a->send_counts[0] != a->recv_counts[0])
            return ember__comm_error(c, EMBER_ERR_SHAPE, a->fn,
                                     "rank 0 sends %lld elements to itself but expects %lld",
                                     (long long)a->send_counts[0], (long long)a->recv_counts[0]);
        EMBER_TRY(self_copy(c, a->fn, (char *)a->recv + (size_t)a->recv_displs[0] * es,
                            (const char *)a->send + (size_t)a->send_displs[0] * es,
                            (size_t)a->send_counts[0] * es));
        break;
    default: /* broadcast and barrier: nothing moves; send/recv cannot pass the checks */
        break;
    }
    return EMBER_OK;
}

static ember_status self_test(ember_comm_request *r, int *done) {
    (void)r;
    *done = 1;
    return EMBER_OK;
}

static ember_status self_finish(ember_comm_request *r) {
    (void)r;
    return EMBER_OK;
}

static void self_abandon(ember_comm_request *r) { (void)r; }

static ember_status self_validate(ember_comm *c, const ember__coll *a, ember_status local) {
    (void)c;
    (void)a;
    return local;
}

static ember_status self_split(ember_comm *c, int color, int key, ember_comm **out);

static void self_destroy(ember_comm *c) { free(c); }

static const ember__comm_ops self_ops = {self_start,    self_test,  self_finish, self_abandon,
                                         self_validate, self_split, self_destroy};

static ember_status self_make(const ember_comm_config *cfg, ember_device dev, ember_comm **out) {
    ember_comm *c = calloc(1, sizeof *c);
    if (!c) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_comm_create_self");
    ember__comm_init(c, &self_ops, EMBER_COMM_BACKEND_SELF, cfg);
    c->device = dev;
    *out = c;
    return EMBER_OK;
}

static ember_status self_split(ember_comm *c, int color, int key, ember_comm **out) {
    (void)key;
    if (color == EMBER_COMM_UNDEFINED) return EMBER_OK;
    EMBER_TRY(self_make(NULL, c->device, out));
    (*out)->timeout_s = c->timeout_s;
    (*out)->validate = c->validate;
    return EMBER_OK;
}

ember_status ember_comm_create_self(const ember_comm_config *cfg, ember_comm **out) {
    EMBER_CHECK_NULL(out, "ember_comm_create_self");
    *out = NULL;
    ember_device dev = cfg ? cfg->device : EMBER_CPU;
    if (dev.type != EMBER_DEVICE_CPU) EMBER_TRY(ember_device_check(dev));
    else dev = EMBER_CPU;
    if (cfg && isnan(cfg->timeout_s))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_comm_create_self: timeout_s is NaN");
    return self_make(cfg, dev, out);
}

/* ---- creation, split, destroy ---- */

ember_status ember_comm_create_mpi(const ember_comm_config *cfg, ember_comm **out) {
    EMBER_CHECK_NULL(out, "ember_comm_create_mpi");
    *out = NULL;
    if (cfg && isnan(cfg->timeout_s))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_comm_create_mpi: timeout_s is NaN");
    return ember__comm_create_mpi(cfg, out);
}

ember_status ember_comm_create_nccl(const ember_comm_config *cfg, ember_comm **out) {
    EMBER_CHECK_NULL(out, "ember_comm_create_nccl");
    *out = NULL;
    if (cfg && isnan(cfg->timeout_s))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_comm_create_nccl: timeout_s is NaN");
    return ember__comm_create_nccl(cfg, out);
}

ember_status ember_comm_create_default(const ember_comm_config *cfg, ember_comm **out) {
    EMBER_CHECK_NULL(out, "ember_comm_create_default");
    *out = NULL;
    if (ember__comm_mpi_launched() || ember__comm_mpi_initialized()) return ember_comm_create_mpi(cfg, out);
    return ember_comm_create_self(cfg, out);
}

ember_status ember_comm_split(ember_comm *c, int color, int key, ember_comm **out) {
    EMBER_CHECK_NULL(out, "ember_comm_split");
    *out = NULL;
    EMBER_CHECK_NULL(c, "ember_comm_split");
    if (c->broken)
        return ember__comm_error(c, EMBER_ERR_STATE, "ember_comm_split",
                                 "the communicator is broken (%s); destroy it", c->broken_why);
    if (color < EMBER_COMM_UNDEFINED)
        return ember__comm_error(c, EMBER_ERR_INVALID_ARGUMENT, "ember_comm_split",
                                 "color %d: use >= 0, or EMBER_COMM_UNDEFINED to join none", color);
    return c->ops->split(c, color, key, out);
}

void ember_comm_destroy(ember_comm *c) {
    if (!c) return;
    if (c->pending > 0)
        ember_log(EMBER_LOG_WARN, "ember_comm_destroy (rank %d of %d, %s): %d requests never waited; leaked",
                  c->rank, c->size, ember_comm_backend_name(c->backend), c->pending);
    c->ops->destroy(c);
}
