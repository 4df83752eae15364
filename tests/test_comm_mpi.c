/*
 * Communicators over N ranks (ctest: mpiexec -n 2 and -n 4, label mpi).
 *
 * Rank r's input at index i is val(r, i), small integers that are exact in every dtype
 * and in sums over up to a dozen ranks, so each rank computes the one-process
 * reference of every collective itself and the comparison is exact. Covered: every
 * collective for sizes 0, 1, odd and 1 << 20 and every dtype, in place and not, with
 * and without validation; uneven all-to-all-v (zero counts, gaps); send/recv and
 * count mismatches; cross-rank validation errors; async overlap; tensors; splits;
 * meshes; and timeouts: rank 0 runs a collective the others skip, gets
 * EMBER_ERR_TIMEOUT, and the others then join the orphaned collective late so every
 * rank finishes cleanly on a still-usable world.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ember/parallel.h"

static int R, N; /* this rank, world size */

static double val(int r, int64_t i) { return (double)((i * 7 + r * 3 + 1) % 11); }

static double red(ember_reduce_op op, int64_t i) {
    double acc = val(0, i);
    for (int r = 1; r < N; r++) {
        double v = val(r, i);
        if (op == EMBER_REDUCE_MAX) acc = v > acc ? v : acc;
        else if (op == EMBER_REDUCE_MIN) acc = v < acc ? v : acc;
        else acc += v;
    }
    return op == EMBER_REDUCE_MEAN ? acc / N : acc;
}

/* got (n elements of dt) against ref, exact up to a relative tol (MEAN with N not a
   power of two rounds); one check, the first mismatch printed */
static void check_array_tol(const char *what, const void *got, ember_dtype dt, const double *ref, int64_t n,
                            double tol, int line) {
    for (int64_t i = 0; i < n; i++) {
        double g = check_elem(got, dt, i);
        if (!(fabs(g - ref[i]) <= tol * fabs(ref[i]))) {
            check__failed++;
            fprintf(stderr, "FAIL %s:%d: rank %d of %d: %s %s n=%lld: index %lld: %g vs %g\n", __FILE__, line,
                    R, N, what, ember_dtype_name(dt), (long long)n, (long long)i, g, ref[i]);
            return;
        }
    }
    check__passed++;
}
#define CHECK_ARRAY(what, got, dt, ref, n) check_array_tol(what, got, dt, ref, n, 0.0, __LINE__)
/* tolerance of op's result in dt */
static double tol_of(ember_reduce_op op, ember_dtype dt) {
    if (op != EMBER_REDUCE_MEAN) return 0.0;
    return dt == EMBER_DTYPE_F32 ? 1e-6 : 1e-2;
}

static const ember_dtype DTYPES[] = {EMBER_DTYPE_F32, EMBER_DTYPE_F16, EMBER_DTYPE_BF16, EMBER_DTYPE_I8,
                                     EMBER_DTYPE_U8,  EMBER_DTYPE_I32, EMBER_DTYPE_I64};

static void test_collectives(ember_comm *c, ember_dtype dt, int64_t n) {
    size_t es = ember_dtype_size(dt), cap = (size_t)(n ? n : 1) * (size_t)N;
    char *s = malloc(cap * es), *r = malloc(cap * es);
    double *ref = malloc(cap * sizeof *ref);
    ember_reduce_op ops[] = {EMBER_REDUCE_SUM, EMBER_REDUCE_MAX, EMBER_REDUCE_MIN, EMBER_REDUCE_MEAN};
    for (int o = 0; o < 4; o++) {
        if (ops[o] == EMBER_REDUCE_MEAN && !ember_dtype_is_float(dt)) continue;
        for (int64_t i = 0; i < n; i++) check_put_elem(s, dt, i, val(R, i)), check_put_elem(r, dt, i, -1), ref[i] = red(ops[o], i);
        CHECK_OK(ember_comm_all_reduce(c, s, r, n, dt, ops[o], NULL));
        check_array_tol("all_reduce", r, dt, ref, n, tol_of(ops[o], dt), __LINE__);
        if (o == 0) { /* in place, async */
            ember_comm_request *rq = NULL;
            CHECK_OK(ember_comm_all_reduce(c, s, s, n, dt, ops[o], &rq));
            CHECK_OK(ember_comm_wait(rq));
            CHECK_ARRAY("all_reduce in place", s, dt, ref, n);
        }
    }
    /* all_gather: block r of recv is rank r's input */
    for (int64_t i = 0; i < n; i++) check_put_elem(s, dt, i, val(R, i));
    for (int q = 0; q < N; q++)
        for (int64_t i = 0; i < n; i++) ref[q * n + i] = val(q, i);
    CHECK_OK(ember_comm_all_gather(c, s, r, n, dt, NULL));
    CHECK_ARRAY("all_gather", r, dt, ref, n * N);
    memset(r, 0, cap * es);
    memcpy(r + (size_t)R * (size_t)n * es, s, (size_t)n * es);
    CHECK_OK(ember_comm_all_gather(c, r + (size_t)R * (size_t)n * es, r, n, dt, NULL));
    CHECK_ARRAY("all_gather in place", r, dt, ref, n * N);
    /* reduce_scatter: recv = op over ranks of block `rank` */
    for (int o = 0; o < 4; o++) {
        if (ops[o] == EMBER_REDUCE_MEAN && !ember_dtype_is_float(dt)) continue;
        for (int64_t k = 0; k < n * N; k++) check_put_elem(s, dt, k, val(R, k));
        for (int64_t i = 0; i < n; i++) ref[i] = red(ops[o], R * n + i);
        CHECK_OK(ember_comm_reduce_scatter(c, s, r, n, dt, ops[o], NULL));
        check_array_tol("reduce_scatter", r, dt, ref, n, tol_of(ops[o], dt), __LINE__);
        if (o == 0) {
            CHECK_OK(ember_comm_reduce_scatter(c, s, s + (size_t)R * (size_t)n * es, n, dt, ops[o], NULL));
            CHECK_ARRAY("reduce_scatter in place", s + (size_t)R * (size_t)n * es, dt, ref, n);
        }
    }
    /* all_to_all: block j of recv is block `rank` of rank j's input */
    for (int64_t k = 0; k < n * N; k++) check_put_elem(s, dt, k, val(R, k));
    for (int j = 0; j < N; j++)
        for (int64_t i = 0; i < n; i++) ref[j * n + i] = val(j, R * n + i);
    CHECK_OK(ember_comm_all_to_all(c, s, r, n, dt, NULL));
    CHECK_ARRAY("all_to_all", r, dt, ref, n * N);
    /* broadcast from the last rank */
    int root = N - 1;
    for (int64_t i = 0; i < n; i++) check_put_elem(r, dt, i, R == root ? val(root, i) : 0), ref[i] = val(root, i);
    CHECK_OK(ember_comm_broadcast(c, r, n, dt, root, NULL));
    CHECK_ARRAY("broadcast", r, dt, ref, n);
    free(s);
    free(r);
    free(ref);
}

/* rank r sends cnt(r, j) elements to rank j: uneven, zeros included */
static int64_t cnt(int r, int j, int64_t base) { return (r * 3 + j * 5 + base) % 7 + (base > 100 ? base : 0); }

static void test_all_to_all_v(ember_comm *c, ember_dtype dt, int64_t base, int gaps) {
    size_t es = ember_dtype_size(dt);
    int64_t *sc = malloc(4 * (size_t)N * sizeof *sc), *rc = sc + N, *rd = sc + 2 * N, *sd = sc + 3 * N;
    int64_t stot = 0, rtot = 0;
    for (int j = 0; j < N; j++) {
        sc[j] = cnt(R, j, base);
        rc[j] = cnt(j, R, base);
        sd[j] = stot;
        rd[j] = rtot + (gaps ? 2 * j + 1 : 0);
        stot += sc[j];
        rtot = rd[j] + rc[j];
    }
    char *s = malloc((size_t)(stot + 1) * es), *r = malloc((size_t)(rtot + 1) * es);
    double *ref = malloc((size_t)(rtot + 1) * sizeof *ref);
    for (int j = 0; j < N; j++)
        for (int64_t k = 0; k < sc[j]; k++) check_put_elem(s, dt, sd[j] + k, val(R, j * 1000 + k));
    for (int64_t k = 0; k < rtot; k++) check_put_elem(r, dt, k, 99), ref[k] = 99;
    for (int j = 0; j < N; j++)
        for (int64_t k = 0; k < rc[j]; k++) ref[rd[j] + k] = val(j, R * 1000 + k);
    CHECK_OK(ember_comm_all_to_all_v(c, s, sc, gaps ? sd : NULL, r, rc, gaps ? rd : NULL, dt, NULL));
    CHECK_ARRAY(gaps ? "all_to_all_v with gaps" : "all_to_all_v", r, dt, ref, rtot);
    free(s);
    free(r);
    free(ref);
    free(sc);
}

static void test_send_recv(ember_comm *c) {
    if (N < 2) return;
    int next = (R + 1) % N, prev = (R + N - 1) % N;
    float out[1001], in[1001];
    double ref[1001];
    for (int i = 0; i < 1001; i++) out[i] = (float)val(R, i), in[i] = -1, ref[i] = val(prev, i);
    ember_comm_request *rq[2];
    CHECK_OK(ember_comm_recv(c, in, 1001, EMBER_DTYPE_F32, prev, &rq[0]));
    CHECK_OK(ember_comm_send(c, out, 1001, EMBER_DTYPE_F32, next, &rq[1]));
    CHECK_OK(ember_comm_wait_all(2, rq));
    CHECK_ARRAY("ring send/recv", in, EMBER_DTYPE_F32, ref, 1001);
    /* blocking ping-pong, then counts that do not match: the communicator stays usable */
    int64_t a[7] = {1, 2, 3, 4, 5, 6, 7}, b[7] = {0};
    if (R == 0) {
        CHECK_OK(ember_comm_send(c, a, 5, EMBER_DTYPE_I64, 1, NULL));
        CHECK_OK(ember_comm_recv(c, b, 5, EMBER_DTYPE_I64, 1, NULL));
        CHECK(b[0] == 2 && b[4] == 10);
        CHECK_OK(ember_comm_send(c, a, 5, EMBER_DTYPE_I64, 1, NULL));
        CHECK_OK(ember_comm_send(c, a, 7, EMBER_DTYPE_I64, 1, NULL));
    } else if (R == 1) {
        CHECK_OK(ember_comm_recv(c, b, 5, EMBER_DTYPE_I64, 0, NULL));
        for (int i = 0; i < 5; i++) b[i] *= 2;
        CHECK_OK(ember_comm_send(c, b, 5, EMBER_DTYPE_I64, 0, NULL));
        CHECK_STATUS(ember_comm_recv(c, b, 6, EMBER_DTYPE_I64, 0, NULL), EMBER_ERR_SHAPE);
        CHECK(strstr(ember_last_error(), "received 5 elements from rank 0, expected 6") != NULL);
        CHECK_STATUS(ember_comm_recv(c, b, 6, EMBER_DTYPE_I64, 0, NULL), EMBER_ERR_SHAPE);
        CHECK(strstr(ember_last_error(), "longer than the 6 elements") != NULL);
    }
    CHECK_EQ_INT(ember_comm_is_broken(c), 0);
    CHECK_OK(ember_comm_barrier(c, NULL));
}

/* With validation, ranks that disagree all fail before any data moves. */
static void test_validation(ember_comm *w) {
    if (N < 2) return;
    float a[16] = {0}, b[16] = {0};
    CHECK_STATUS(ember_comm_all_reduce(w, a, b, 4 + R, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "element count differs across ranks") != NULL);
    CHECK_STATUS(ember_comm_all_gather(w, a, b, 4, R == 0 ? EMBER_DTYPE_F32 : EMBER_DTYPE_I32, NULL),
                 EMBER_ERR_DTYPE);
    CHECK(strstr(ember_last_error(), "dtype differs across ranks") != NULL);
    ember_status st = R == 0 ? ember_comm_all_gather(w, a, b, 2, EMBER_DTYPE_F32, NULL)
                             : ember_comm_all_reduce(w, a, b, 2, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL);
    CHECK_EQ_INT(st, EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "ranks called different collectives") != NULL);
    CHECK_STATUS(ember_comm_broadcast(w, a, 4, EMBER_DTYPE_F32, R % 2, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "root differs") != NULL);
    CHECK_STATUS(ember_comm_all_reduce(w, a, b, 4, EMBER_DTYPE_F32, R ? EMBER_REDUCE_SUM : EMBER_REDUCE_MAX, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "reduction op differs") != NULL);
    /* one rank's own argument error reaches the others */
    CHECK_STATUS(ember_comm_all_reduce(w, a, b, R == N - 1 ? -1 : 4, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), R == N - 1 ? "negative count" : "another rank refused") != NULL);
    /* all-to-all-v counts that disagree with what the peers send */
    int64_t sc[16], rc[16];
    for (int j = 0; j < N; j++) sc[j] = rc[j] = 1;
    if (R == 0) rc[1] = 2;
    CHECK_STATUS(ember_comm_all_to_all_v(w, a, sc, NULL, b, rc, NULL, EMBER_DTYPE_F32, NULL), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), R == 0 ? "rank 1 sends 1 elements to this rank, but recv_counts[1] = 2"
                                            : "another rank's recv_counts disagree") != NULL);
    CHECK_STATUS(ember_comm_all_to_all_v(w, a, R == N - 1 ? NULL : sc, NULL, b, rc, NULL, EMBER_DTYPE_F32, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    /* still usable */
    for (int i = 0; i < 4; i++) a[i] = (float)val(R, i);
    double ref[4];
    for (int i = 0; i < 4; i++) ref[i] = red(EMBER_REDUCE_SUM, i);
    CHECK_OK(ember_comm_all_reduce(w, a, b, 4, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL));
    CHECK_ARRAY("all_reduce after validation errors", b, EMBER_DTYPE_F32, ref, 4);
    CHECK_EQ_INT(ember_comm_is_broken(w), 0);
}

/* Start an all-reduce, compute, then wait: the result is the same. */
static void test_async_overlap(ember_comm *c) {
    int64_t n = 1 << 20;
    float *g = malloc((size_t)n * sizeof *g), *h = malloc((size_t)n * sizeof *h);
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++) g[i] = (float)val(R, i), h[i] = (float)val(R, i + 1), ref[i] = red(EMBER_REDUCE_SUM, i);
    ember_tensor *a = NULL, *b = NULL, *p = NULL;
    int64_t sh[2] = {192, 192};
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {192, 192}}, &a));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {192, 192}}, &b));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {192, 192}}, &p));
    (void)sh;
    CHECK_OK(ember_tensor_fill(a, 0.5));
    CHECK_OK(ember_tensor_fill(b, 2.0));
    ember_comm_request *rq[3] = {NULL, NULL, NULL};
    CHECK_OK(ember_comm_all_reduce(c, g, g, n, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, &rq[0]));
    CHECK_OK(ember_comm_all_reduce(c, h, h, n, EMBER_DTYPE_F32, EMBER_REDUCE_MAX, &rq[1]));
    CHECK_OK(ember_comm_barrier(c, &rq[2]));
    int done = 0;
    for (int k = 0; k < 8; k++) {
        CHECK_OK(ember_gemm(0, 0, 1.0f, a, b, 0.0f, p)); /* the compute the transfer hides behind */
        CHECK_OK(ember_comm_test(rq[0], &done));
    }
    double sum = 0;
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, p, &sum));
    CHECK_NEAR(sum, 192.0 * 192.0 * 192.0, 0);
    CHECK_OK(ember_comm_wait_all(3, rq));
    CHECK_ARRAY("async all_reduce", g, EMBER_DTYPE_F32, ref, n);
    for (int64_t i = 0; i < n; i++) ref[i] = red(EMBER_REDUCE_MAX, i + 1);
    CHECK_ARRAY("async all_reduce max", h, EMBER_DTYPE_F32, ref, n);
    /* test until done, then the wait returns at once */
    CHECK_OK(ember_comm_all_gather(c, g, h, n / N, EMBER_DTYPE_F32, &rq[0]));
    done = 0;
    ember_status ts = EMBER_OK;
    for (long spins = 0; !done && ts == EMBER_OK && spins < 100000000L; spins++) ts = ember_comm_test(rq[0], &done);
    CHECK_OK(ts);
    CHECK_EQ_INT(done, 1);
    CHECK_OK(ember_comm_wait(rq[0]));
    ember_tensor_destroy(a);
    ember_tensor_destroy(b);
    ember_tensor_destroy(p);
    free(g);
    free(h);
    free(ref);
}

static void test_tensors(ember_comm *c) {
    ember_tensor *t = NULL, *big = NULL, *o = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3, 5}}, &t));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3 * N, 5}}, &big));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3 * N, 5}}, &o));
    float *tp = ember_tensor_data(t), *bp = ember_tensor_data(big), *op = ember_tensor_data(o);
    double ref[4096];
    for (int i = 0; i < 15; i++) tp[i] = (float)val(R, i), ref[i] = red(EMBER_REDUCE_SUM, i);
    ember_comm_request *rq = NULL;
    CHECK_OK(ember_comm_all_reduce_tensor(c, t, EMBER_REDUCE_SUM, &rq));
    CHECK_OK(ember_comm_wait(rq));
    CHECK_ARRAY("all_reduce_tensor", tp, EMBER_DTYPE_F32, ref, 15);
    for (int i = 0; i < 15; i++) tp[i] = (float)val(R, i);
    for (int q = 0; q < N; q++)
        for (int i = 0; i < 15; i++) ref[q * 15 + i] = val(q, i);
    CHECK_OK(ember_comm_all_gather_tensor(c, t, big, NULL));
    CHECK_ARRAY("all_gather_tensor", bp, EMBER_DTYPE_F32, ref, 15 * N);
    for (int k = 0; k < 15 * N; k++) bp[k] = (float)val(R, k);
    for (int i = 0; i < 15; i++) ref[i] = red(EMBER_REDUCE_MIN, R * 15 + i);
    CHECK_OK(ember_comm_reduce_scatter_tensor(c, big, t, EMBER_REDUCE_MIN, NULL));
    CHECK_ARRAY("reduce_scatter_tensor", tp, EMBER_DTYPE_F32, ref, 15);
    for (int j = 0; j < N; j++)
        for (int i = 0; i < 15; i++) ref[j * 15 + i] = val(j, R * 15 + i);
    CHECK_OK(ember_comm_all_to_all_tensor(c, big, o, NULL));
    CHECK_ARRAY("all_to_all_tensor", op, EMBER_DTYPE_F32, ref, 15 * N);
    for (int i = 0; i < 15; i++) tp[i] = (float)(R == 0 ? val(0, i) : -1), ref[i] = val(0, i);
    CHECK_OK(ember_comm_broadcast_tensor(c, t, 0, NULL));
    CHECK_ARRAY("broadcast_tensor", tp, EMBER_DTYPE_F32, ref, 15);
    CHECK_STATUS(ember_comm_all_gather_tensor(c, t, t, NULL), N > 1 ? EMBER_ERR_SHAPE : EMBER_OK);
    ember_tensor_destroy(t);
    ember_tensor_destroy(big);
    ember_tensor_destroy(o);
}

static void test_split(ember_comm *w) {
    /* by parity, ordered by descending world rank */
    ember_comm *s = NULL;
    CHECK_OK(ember_comm_split(w, R % 2, -R, &s));
    int same = 0, above = 0;
    for (int q = 0; q < N; q++)
        if (q % 2 == R % 2) same++, above += q > R;
    CHECK_EQ_INT(ember_comm_size(s), same);
    CHECK_EQ_INT(ember_comm_rank(s), above);
    int64_t x = R, sum = -1, ref = 0;
    for (int q = R % 2; q < N; q += 2) ref += q;
    CHECK_OK(ember_comm_all_reduce(s, &x, &sum, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
    CHECK_EQ_INT(sum, ref);
    /* a split of a split */
    ember_comm *ss = NULL;
    CHECK_OK(ember_comm_split(s, 0, 0, &ss));
    CHECK_EQ_INT(ember_comm_size(ss), same);
    ember_comm_destroy(ss);
    ember_comm_destroy(s);
    /* rank 0 joins none */
    s = NULL;
    CHECK_OK(ember_comm_split(w, R == 0 ? EMBER_COMM_UNDEFINED : 1, 0, &s));
    if (R == 0) {
        CHECK(s == NULL);
    } else {
        CHECK_EQ_INT(ember_comm_size(s), N - 1);
        CHECK_EQ_INT(ember_comm_rank(s), R - 1);
        CHECK_OK(ember_comm_barrier(s, NULL));
    }
    ember_comm_destroy(s);
}

static void test_mesh(ember_comm *w) {
    if (N % 2) return;
    ember_mesh *m = NULL;
    CHECK_OK(ember_mesh_create(w, &(ember_mesh_config){.ndim = 2, .shape = {-1, 2}, .names = {"dp", "tp"}}, &m));
    if (!m) return;
    int dp = ember_mesh_axis_index(m, "dp"), tp = ember_mesh_axis_index(m, "tp");
    CHECK_EQ_INT(ember_mesh_dim(m, dp), N / 2);
    CHECK_EQ_INT(ember_mesh_dim(m, tp), 2);
    CHECK_EQ_INT(ember_mesh_coord(m, dp), R / 2);
    CHECK_EQ_INT(ember_mesh_coord(m, tp), R % 2);
    ember_comm *ct = ember_mesh_comm(m, tp), *cd = ember_mesh_comm(m, dp);
    CHECK_EQ_INT(ember_comm_size(ct), 2);
    CHECK_EQ_INT(ember_comm_rank(ct), R % 2);
    CHECK_EQ_INT(ember_comm_size(cd), N / 2);
    CHECK_EQ_INT(ember_comm_rank(cd), R / 2);
    int64_t x = R, st = -1, sd = -1, rt = 2 * (R - R % 2) + 1, rd = 0;
    for (int d = 0; d < N / 2; d++) rd += d * 2 + R % 2;
    CHECK_OK(ember_comm_all_reduce(ct, &x, &st, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
    CHECK_OK(ember_comm_all_reduce(cd, &x, &sd, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
    CHECK_EQ_INT(st, rt);
    CHECK_EQ_INT(sd, rd);
    for (int q = 0; q < N; q++) {
        int co[2], back = -1;
        CHECK_OK(ember_mesh_coords(m, q, co));
        CHECK(co[0] == q / 2 && co[1] == q % 2);
        CHECK_OK(ember_mesh_rank(m, co, &back));
        CHECK_EQ_INT(back, q);
    }
    ember_mesh_destroy(m);
    /* 3-d, inferred middle axis */
    CHECK_OK(ember_mesh_create(w, &(ember_mesh_config){.ndim = 3, .shape = {2, -1, 1}}, &m));
    CHECK_EQ_INT(ember_mesh_dim(m, 1), N / 2);
    CHECK_EQ_INT(ember_comm_size(ember_mesh_comm(m, 0)), 2);
    CHECK_EQ_INT(ember_comm_rank(ember_mesh_comm(m, 0)), R / (N / 2));
    CHECK_EQ_INT(ember_comm_size(ember_mesh_comm(m, 2)), 1);
    CHECK_OK(ember_comm_barrier(ember_mesh_comm(m, 1), NULL));
    ember_mesh_destroy(m);
}

/*
 * Rank 0 runs a collective the others skip and times out; the others then run it
 * late, which completes rank 0's orphaned operation, and everyone goes on with the
 * world communicator. Blocking and async waits.
 */
static void test_timeout(ember_comm *w) {
    if (N < 2) return;
    ember_comm *t = NULL, *t2 = NULL;
    /* short timeouts on rank 0 only: the late joiners must not time out on a loaded machine */
    CHECK_OK(ember_comm_create_mpi(&(ember_comm_config){.timeout_s = R == 0 ? 1.0 : 60, .validate = -1}, &t));
    CHECK_OK(ember_comm_create_mpi(&(ember_comm_config){.timeout_s = R == 0 ? 0.5 : 60, .validate = -1}, &t2));
    float x[16], y[16];
    double ref[16];
    for (int i = 0; i < 16; i++) x[i] = (float)val(R, i), y[i] = -1, ref[i] = red(EMBER_REDUCE_SUM, i);
    if (R == 0) {
        CHECK_STATUS(ember_comm_all_reduce(t, x, y, 16, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL), EMBER_ERR_TIMEOUT);
        char want[128];
        snprintf(want, sizeof want, "ember_comm_all_reduce (rank 0 of %d, mpi): not complete after 1 s", N);
        CHECK(strstr(ember_last_error(), want) != NULL);
        if (!strstr(ember_last_error(), want)) fprintf(stderr, "  got: %s\n", ember_last_error());
        CHECK_EQ_INT(ember_comm_is_broken(t), 1);
        CHECK_STATUS(ember_comm_barrier(t, NULL), EMBER_ERR_STATE);
        CHECK(strstr(ember_last_error(), "broken") != NULL);
        ember_comm *s = NULL;
        CHECK_STATUS(ember_comm_split(t, 0, 0, &s), EMBER_ERR_STATE);
        ember_comm_request *rq = NULL;
        int done = 1;
        CHECK_OK(ember_comm_barrier(t2, &rq));
        CHECK_OK(ember_comm_test(rq, &done));
        CHECK_EQ_INT(done, 0);
        CHECK_STATUS(ember_comm_wait(rq), EMBER_ERR_TIMEOUT);
        CHECK(strstr(ember_last_error(), "ember_comm_barrier") != NULL);
    }
    CHECK_OK(ember_comm_barrier(w, NULL));
    if (R != 0) {
        /* late: these complete rank 0's orphaned operations, which rank 0's MPI calls
           in the barrier below move along; rank 0's input is in the sum */
        CHECK_OK(ember_comm_all_reduce(t, x, y, 16, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL));
        CHECK_ARRAY("all_reduce joining a timed-out one", y, EMBER_DTYPE_F32, ref, 16);
        CHECK_OK(ember_comm_barrier(t2, NULL));
    }
    CHECK_OK(ember_comm_barrier(w, NULL));
    ember_comm_destroy(t);
    ember_comm_destroy(t2);
    CHECK_OK(ember_comm_all_reduce(w, x, y, 16, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL));
    CHECK_ARRAY("world after a timeout", y, EMBER_DTYPE_F32, ref, 16);
}

int main(void) {
    ember_comm *w = NULL, *fast = NULL;
    ember_status st = ember_comm_create_mpi(&(ember_comm_config){.validate = 1, .timeout_s = 120}, &w);
    if (st != EMBER_OK) {
        fprintf(stderr, "%s\n", ember_last_error());
        return 1;
    }
    R = ember_comm_rank(w);
    N = ember_comm_size(w);
    CHECK_EQ_INT(ember_comm_get_backend(w), EMBER_COMM_BACKEND_MPI);
    CHECK_OK(ember_comm_create_mpi(&(ember_comm_config){.validate = -1, .timeout_s = 120}, &fast));
    /* under mpirun the default is the MPI backend */
    ember_comm *d = NULL;
    CHECK_OK(ember_comm_create_default(NULL, &d));
    CHECK_EQ_INT(ember_comm_get_backend(d), EMBER_COMM_BACKEND_MPI);
    CHECK_EQ_INT(ember_comm_size(d), N);
    ember_comm_destroy(d);

    const int64_t sizes[] = {0, 1, 3, 1001};
    for (size_t k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++)
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            test_collectives(w, DTYPES[k], sizes[z]);
            test_collectives(fast, DTYPES[k], sizes[z]);
        }
    test_collectives(fast, EMBER_DTYPE_F32, 1 << 20);
    test_collectives(w, EMBER_DTYPE_BF16, (1 << 20) + 1);
    test_collectives(fast, EMBER_DTYPE_I64, 1 << 20);
    const ember_dtype vdt[] = {EMBER_DTYPE_F32, EMBER_DTYPE_BF16, EMBER_DTYPE_I64, EMBER_DTYPE_U8};
    for (int k = 0; k < 4; k++)
        for (int base = 0; base < 8; base += 4) {
            test_all_to_all_v(w, vdt[k], base, 0);
            test_all_to_all_v(fast, vdt[k], base, 1);
        }
    test_all_to_all_v(fast, EMBER_DTYPE_F32, 100003, 1);
    test_send_recv(fast);
    test_send_recv(w);
    test_validation(w);
    test_async_overlap(fast);
    test_tensors(w);
    test_split(w);
    test_mesh(w);
    /* NCCL: not built, no GPU, or fewer GPUs than ranks (NCCL refuses two ranks on one
       GPU): every rank fails, none hangs. With a GPU per rank: one all-reduce. */
    ember_comm *nc = NULL;
    st = ember_comm_create_nccl(NULL, &nc);
    CHECK(st == EMBER_OK || st == EMBER_ERR_UNSUPPORTED || st == EMBER_ERR_DEVICE || st == EMBER_ERR_NCCL);
    CHECK((st == EMBER_OK) == (nc != NULL));
    if (nc) {
        ember_memory *mm = NULL;
        ember_tensor *t = NULL;
        CHECK_OK(ember_memory_create(&(ember_memory_config){.device = ember_comm_device(nc)}, &mm));
        CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {1000},
                                                            .tier = EMBER_TIER_DEVICE, .mm = mm}, &t));
        CHECK_OK(ember_tensor_fill(t, R + 1));
        CHECK_OK(ember_comm_all_reduce_tensor(nc, t, EMBER_REDUCE_SUM, NULL));
        double sum = 0;
        CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, t, &sum));
        CHECK_NEAR(sum, 1000.0 * N * (N + 1) / 2, 0);
        ember_tensor_destroy(t);
        ember_memory_destroy(mm);
        ember_comm_destroy(nc);
    }
    test_timeout(w);

    int64_t mine[2] = {check__passed, check__failed}, tot[2] = {0, 0};
    CHECK_OK(ember_comm_all_reduce(w, mine, tot, 2, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
    ember_comm_destroy(fast);
    ember_comm_destroy(w); /* the last ember MPI communicator: MPI is finalized */
    if (tot[0] == 0 && tot[1] == 0) tot[1] = 1; /* the reduction itself failed */
    if (R == 0) {
        printf("%d ranks\n", N);
        printf("%lld passed, %lld failed\n", (long long)tot[0], (long long)tot[1]);
    }
    return tot[1] || check__failed ? 1 : 0;
}
