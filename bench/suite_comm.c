/*
 * comm suite: bus bandwidth of each collective against message size, as nccl-tests
 * reports it, and an alpha-beta fit per collective.
 *
 *   mpiexec -n 2 --allow-run-as-root --oversubscribe ember bench comm --quick --json
 *
 * The communicator is ember_comm_create_default: MPI under mpirun, the self backend
 * (copies) in a single process, which the suite says on stderr. Only rank 0 prints.
 * Data is f32; SUM for the reductions. A size is the bytes of the whole buffer the
 * way nccl-tests counts them: all_reduce and broadcast the buffer, all_gather the
 * gathered output, reduce_scatter the input, all_to_all one rank's input, sendrecv
 * (every rank sends to the next and receives from the previous) the message. With
 * t the time of one call, algbw = size / t and busbw = algbw * factor, the factor
 * being 2(n-1)/n for all_reduce, (n-1)/n for all_gather, reduce_scatter and
 * all_to_all, and 1 for broadcast and sendrecv: busbw is what each rank's link
 * carries, comparable across collectives and rank counts. On one rank only algbw
 * is reported (the factors are 0).
 *
 * Timing: every rank must run the same number of calls, so the harness's per-process
 * loop (ember_bench_time) cannot be used. After 2 warm-up calls one timed call sets
 * the iteration count (its slowest rank's time, so all ranks agree) for about 0.05 s
 * (--quick) or 0.25 s per repeat; each repeat starts at a barrier, and its time per
 * call is the slowest rank's; the best of 5 repeats (2 with --tiny) is kept.
 *
 * Fit: t(bytes) = alpha + beta * bytes by least squares on relative error (weights
 * 1/t^2), so the small sizes pin alpha (latency) and the large ones beta (inverse
 * bandwidth) instead of the largest message deciding both. Lines "<coll>_fit":
 * metric alpha (us) and inv_beta (GB/s of algorithmic bandwidth), with the largest
 * relative residual in params.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "ember/parallel.h"
#include "engine/internal.h"

enum { C_ALL_REDUCE, C_ALL_GATHER, C_REDUCE_SCATTER, C_ALL_TO_ALL, C_BROADCAST, C_SENDRECV, C_BARRIER, C_COUNT };
static const char *const coll_names[C_COUNT] = {"allreduce", "allgather", "reducescatter", "alltoall",
                                                "broadcast", "sendrecv",  "barrier"};

typedef struct run {
    ember_comm *c;
    int kind, n, rank;
    int64_t count; /* elements per call argument (per rank block for gather/scatter/alltoall) */
    float *send, *recv;
} run;

static ember_status one_call(run *r) {
    ember_comm *c = r->c;
    switch (r->kind) {
    case C_ALL_REDUCE:
        return ember_comm_all_reduce(c, r->send, r->recv, r->count, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL);
    case C_ALL_GATHER: return ember_comm_all_gather(c, r->send, r->recv, r->count, EMBER_DTYPE_F32, NULL);
    case C_REDUCE_SCATTER:
        return ember_comm_reduce_scatter(c, r->send, r->recv, r->count, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL);
    case C_ALL_TO_ALL: return ember_comm_all_to_all(c, r->send, r->recv, r->count, EMBER_DTYPE_F32, NULL);
    case C_BROADCAST: return ember_comm_broadcast(c, r->send, r->count, EMBER_DTYPE_F32, 0, NULL);
    case C_BARRIER: return ember_comm_barrier(c, NULL);
    default: {
        ember_comm_request *q[2] = {NULL, NULL};
        EMBER_TRY(ember_comm_recv(c, r->recv, r->count, EMBER_DTYPE_F32, (r->rank + r->n - 1) % r->n, &q[0]));
        ember_status st = ember_comm_send(c, r->send, r->count, EMBER_DTYPE_F32, (r->rank + 1) % r->n, &q[1]);
        ember_status ws = ember_comm_wait_all(2, q);
        return st != EMBER_OK ? st : ws;
    }
    }
}

/* Seconds per call: best over repeats of the slowest rank's mean. */
static ember_status time_calls(const ember_bench_opts *o, run *r, double *sec) {
    for (int w = 0; w < 2; w++) EMBER_TRY(one_call(r));
    EMBER_TRY(ember_comm_barrier(r->c, NULL));
    double t0 = ember__now();
    EMBER_TRY(one_call(r));
    /* times as integer nanoseconds, so MAX works on i64 whatever the backend */
    int64_t ns = (int64_t)((ember__now() - t0) * 1e9) + 1;
    EMBER_TRY(ember_comm_all_reduce(r->c, &ns, &ns, 1, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
    double min_time = o->tiny ? 0.002 : o->quick ? 0.05 : 0.25;
    int64_t iters = (int64_t)(min_time / ((double)ns * 1e-9));
    if (iters < 1) iters = 1;
    if (iters > 100000) iters = 100000;
    double best = 1e30;
    for (int rep = 0; rep < (o->tiny ? 2 : 5); rep++) {
        EMBER_TRY(ember_comm_barrier(r->c, NULL));
        t0 = ember__now();
        for (int64_t k = 0; k < iters; k++) EMBER_TRY(one_call(r));
        ns = (int64_t)((ember__now() - t0) / (double)iters * 1e9);
        EMBER_TRY(ember_comm_all_reduce(r->c, &ns, &ns, 1, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
        double per = (double)ns * 1e-9;
        if (per < best) best = per;
    }
    *sec = best;
    return EMBER_OK;
}

static double factor(int kind, int n) {
    switch (kind) {
    case C_ALL_REDUCE: return 2.0 * (n - 1) / n;
    case C_ALL_GATHER:
    case C_REDUCE_SCATTER:
    case C_ALL_TO_ALL: return (double)(n - 1) / n;
    default: return 1.0;
    }
}

static void size_label(int64_t bytes, char *buf, size_t n) {
    if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) snprintf(buf, n, "%lldMiB", (long long)(bytes >> 20));
    else if (bytes >= 1024 && bytes % 1024 == 0) snprintf(buf, n, "%lldKiB", (long long)(bytes >> 10));
    else snprintf(buf, n, "%lldB", (long long)bytes);
}

/* Weighted least squares of t = alpha + beta * b, weights 1/t^2. */
static void fit(const double *b, const double *t, int k, double *alpha, double *beta, double *max_rel) {
    double s0 = 0, s1 = 0, s2 = 0, t0 = 0, t1 = 0;
    for (int i = 0; i < k; i++) {
        double w = 1.0 / (t[i] * t[i]);
        s0 += w, s1 += w * b[i], s2 += w * b[i] * b[i], t0 += w * t[i], t1 += w * b[i] * t[i];
    }
    double det = s0 * s2 - s1 * s1;
    *alpha = det != 0 ? (t0 * s2 - s1 * t1) / det : t[0];
    *beta = det != 0 ? (s0 * t1 - s1 * t0) / det : 0;
    *max_rel = 0;
    for (int i = 0; i < k; i++) {
        double e = fabs(*alpha + *beta * b[i] - t[i]) / t[i];
        if (e > *max_rel) *max_rel = e;
    }
}

ember_status ember_bench_suite_comm(const ember_bench_opts *o) {
    static const int64_t tiny[] = {1 << 10, 4 << 10, 16 << 10};
    static const int64_t quick[] = {4 << 10, 32 << 10, 256 << 10, 2 << 20, 16 << 20, 64 << 20};
    static const int64_t full[] = {4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
    const int64_t *sizes = o->tiny ? tiny : o->quick ? quick : full;
    int ns = o->tiny ? 3 : o->quick ? 6 : 8;

    ember_comm *c = NULL;
    EMBER_TRY(ember_comm_create_default(&(ember_comm_config){.validate = -1}, &c));
    run r = {.c = c, .n = ember_comm_size(c), .rank = ember_comm_rank(c)};
    const char *backend = ember_comm_backend_name(ember_comm_get_backend(c));
    if (r.rank == 0 && r.n == 1)
        fprintf(stderr, "ember bench comm: one process: the %s backend, whose collectives are copies; "
                        "run under mpirun -n N to measure the links (algbw only)\n", backend);
    ember_features f;
    ember_get_features(&f);
    char mpi[sizeof f.mpi_version] = "none"; /* "Open MPI v4.1.4" */
    if (f.mpi) {
        memcpy(mpi, f.mpi_version, sizeof mpi);
        mpi[sizeof mpi - 1] = '\0';
        char *comma = strchr(mpi, ',');
        if (comma) *comma = '\0';
    }
    size_t cap = (size_t)sizes[ns - 1];
    r.send = malloc(cap);
    r.recv = malloc(cap);
    ember_status st = r.send && r.recv ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench comm: 2 x %zu B", cap);
    if (st == EMBER_OK)
        for (size_t i = 0; i < cap / sizeof(float); i++) r.send[i] = 1.0f, r.recv[i] = 0.0f;
    double xb[16], yt[16];
    for (int k = 0; k < C_BARRIER && st == EMBER_OK; k++) {
        if (k == C_SENDRECV && r.n < 2) continue; /* no peer */
        r.kind = k;
        int pts = 0;
        for (int s = 0; s < ns && st == EMBER_OK; s++) {
            int blocks = (k == C_ALL_GATHER || k == C_REDUCE_SCATTER || k == C_ALL_TO_ALL) ? r.n : 1;
            r.count = sizes[s] / (int64_t)sizeof(float) / blocks;
            int64_t bytes = r.count * (int64_t)sizeof(float) * blocks;
            double sec = 0;
            st = time_calls(o, &r, &sec);
            if (st != EMBER_OK || r.rank != 0) continue;
            xb[pts] = (double)bytes, yt[pts] = sec, pts++;
            double algbw = (double)bytes / sec / 1e9, busbw = algbw * factor(k, r.n);
            char name[64], label[32], params[384];
            size_label(bytes, label, sizeof label);
            snprintf(name, sizeof name, "%s_%s", coll_names[k], label);
            snprintf(params, sizeof params,
                     "\"collective\":\"%s\",\"bytes\":%lld,\"ranks\":%d,\"backend\":\"%s\",\"dtype\":\"f32\","
                     "\"time_us\":%.3f,\"algbw\":%.4g,\"busbw\":%.4g,\"mpi\":\"%s\"",
                     coll_names[k], (long long)bytes, r.n, backend, sec * 1e6, algbw, busbw, mpi);
            if (r.n > 1) ember_bench_emit(o, "comm", name, "busbw", busbw, "GB/s", params);
            else ember_bench_emit(o, "comm", name, "algbw", algbw, "GB/s", params);
        }
        if (st == EMBER_OK && r.rank == 0 && pts >= 2) {
            double alpha, beta, rel;
            fit(xb, yt, pts, &alpha, &beta, &rel);
            char name[64], params[384];
            snprintf(name, sizeof name, "%s_fit", coll_names[k]);
            snprintf(params, sizeof params,
                     "\"collective\":\"%s\",\"ranks\":%d,\"backend\":\"%s\",\"alpha_us\":%.4g,"
                     "\"beta_s_per_byte\":%.4g,\"points\":%d,\"max_rel_residual\":%.3f,"
                     "\"fit\":\"least squares on relative error\",\"mpi\":\"%s\"",
                     coll_names[k], r.n, backend, alpha * 1e6, beta, pts, rel, mpi);
            ember_bench_emit(o, "comm", name, "alpha", alpha * 1e6, "us", params);
            if (beta > 0) /* (a broadcast on one rank moves nothing: no slope) */
                ember_bench_emit(o, "comm", name, "inv_beta", 1.0 / beta / 1e9, "GB/s", params);
        }
    }
    if (st == EMBER_OK) { /* barrier latency */
        double sec = 0;
        r.kind = C_BARRIER;
        st = time_calls(o, &r, &sec);
        if (st == EMBER_OK && r.rank == 0) {
            char params[256];
            snprintf(params, sizeof params, "\"ranks\":%d,\"backend\":\"%s\",\"mpi\":\"%s\"", r.n, backend, mpi);
            ember_bench_emit(o, "comm", "barrier", "latency", sec * 1e6, "us", params);
        }
    }
    free(r.send);
    free(r.recv);
    ember_comm_destroy(c);
    return st;
}
