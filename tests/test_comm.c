/*
 * Communicators without mpirun: the self backend (every collective is a copy), the
 * argument checks every backend shares, requests, tensors, meshes over one rank, and
 * the MPI backend as a one-rank world (singleton init) when ember has MPI.
 * The multi-rank behaviour is tests/test_comm_mpi.c (label mpi).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ember/parallel.h"

static const ember_dtype DTYPES[] = {EMBER_DTYPE_F32, EMBER_DTYPE_F16, EMBER_DTYPE_BF16, EMBER_DTYPE_I8,
                                     EMBER_DTYPE_U8,  EMBER_DTYPE_I32, EMBER_DTYPE_I64};
#define NDT ((int)(sizeof DTYPES / sizeof DTYPES[0]))

static void pattern(void *p, ember_dtype dt, int64_t n, int seed) {
    for (int64_t i = 0; i < n; i++) check_put_elem(p, dt, i, (double)((i * 7 + seed) % 23));
}

/* first index where a and b differ, or -1 */
static int64_t differ(const void *a, const void *b, ember_dtype dt, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (check_elem(a, dt, i) != check_elem(b, dt, i)) return i;
    return -1;
}

/* Every collective on one rank is a copy of the input, for every dtype and size. */
static void test_self_copies(ember_comm *c) {
    const int64_t sizes[] = {0, 1, 7, 1 << 20};
    for (int d = 0; d < NDT; d++)
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            ember_dtype dt = DTYPES[d];
            int64_t n = sizes[k];
            size_t bytes = (size_t)(n ? n : 1) * ember_dtype_size(dt);
            void *src = malloc(bytes), *dst = malloc(bytes), *ref = malloc(bytes);
            pattern(src, dt, n, 3);
            memcpy(ref, src, bytes);
            ember_reduce_op ops[] = {EMBER_REDUCE_SUM, EMBER_REDUCE_MAX, EMBER_REDUCE_MIN, EMBER_REDUCE_MEAN};
            for (int o = 0; o < 4; o++) {
                if (ops[o] == EMBER_REDUCE_MEAN && !ember_dtype_is_float(dt)) continue;
                memset(dst, 0xab, bytes);
                CHECK_OK(ember_comm_all_reduce(c, src, dst, n, dt, ops[o], NULL));
                CHECK_EQ_INT(differ(dst, ref, dt, n), -1);
                CHECK_OK(ember_comm_all_reduce(c, dst, dst, n, dt, ops[o], NULL)); /* in place */
                CHECK_EQ_INT(differ(dst, ref, dt, n), -1);
                memset(dst, 0xab, bytes);
                CHECK_OK(ember_comm_reduce_scatter(c, src, dst, n, dt, ops[o], NULL));
                CHECK_EQ_INT(differ(dst, ref, dt, n), -1);
            }
            memset(dst, 0xab, bytes);
            CHECK_OK(ember_comm_all_gather(c, src, dst, n, dt, NULL));
            CHECK_EQ_INT(differ(dst, ref, dt, n), -1);
            memset(dst, 0xab, bytes);
            CHECK_OK(ember_comm_all_to_all(c, src, dst, n, dt, NULL));
            CHECK_EQ_INT(differ(dst, ref, dt, n), -1);
            memset(dst, 0xab, bytes);
            int64_t cnt[1] = {n};
            CHECK_OK(ember_comm_all_to_all_v(c, src, cnt, NULL, dst, cnt, NULL, dt, NULL));
            CHECK_EQ_INT(differ(dst, ref, dt, n), -1);
            CHECK_OK(ember_comm_broadcast(c, src, n, dt, 0, NULL));
            CHECK_EQ_INT(differ(src, ref, dt, n), -1);
            free(src);
            free(dst);
            free(ref);
        }
    /* all_to_all_v with displacements: a gap before the data */
    float s[4] = {1, 2, 3, 4}, r[6] = {0};
    int64_t sc[1] = {3}, sd[1] = {1}, rc[1] = {3}, rd[1] = {2};
    CHECK_OK(ember_comm_all_to_all_v(c, s, sc, sd, r, rc, rd, EMBER_DTYPE_F32, NULL));
    CHECK(r[0] == 0 && r[1] == 0 && r[2] == 2 && r[3] == 3 && r[4] == 4 && r[5] == 0);
    CHECK_OK(ember_comm_barrier(c, NULL));
}

static void test_bad_arguments(ember_comm *c) {
    float a[8] = {0}, b[8] = {0};
    CHECK_STATUS(ember_comm_all_reduce(NULL, a, b, 8, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_all_reduce(c, a, b, -1, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "ember_comm_all_reduce (rank 0 of 1, self): negative count -1") != NULL);
    CHECK_STATUS(ember_comm_all_reduce(c, a, b, 8, (ember_dtype)99, EMBER_REDUCE_SUM, NULL), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_comm_all_reduce(c, a, b, 8, EMBER_DTYPE_I32, EMBER_REDUCE_MEAN, NULL), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_comm_all_reduce(c, a, b, 8, EMBER_DTYPE_F32, EMBER_REDUCE_SUMSQ, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_reduce_scatter(c, a, b, 8, EMBER_DTYPE_F32, (ember_reduce_op)42, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_all_reduce(c, NULL, b, 8, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_OK(ember_comm_all_reduce(c, NULL, NULL, 0, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL)); /* nothing moves */
    CHECK_STATUS(ember_comm_all_reduce(c, a, a + 1, 4, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "overlap") != NULL);
    CHECK_STATUS(ember_comm_all_to_all(c, a, a, 4, EMBER_DTYPE_F32, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_all_gather(c, a, b, INT64_MAX / 2, EMBER_DTYPE_F32, NULL), EMBER_ERR_OVERFLOW);
    CHECK_STATUS(ember_comm_broadcast(c, a, 8, EMBER_DTYPE_F32, 1, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "root 1 is not a rank (size 1)") != NULL);
    CHECK_STATUS(ember_comm_broadcast(c, a, 8, EMBER_DTYPE_F32, -1, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_send(c, a, 8, EMBER_DTYPE_F32, 0, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "peer 0 is this rank") != NULL);
    CHECK_STATUS(ember_comm_recv(c, a, 8, EMBER_DTYPE_F32, 1, NULL), EMBER_ERR_INVALID_ARGUMENT);
    int64_t cnt[1] = {4}, neg[1] = {-1}, big[1] = {3};
    CHECK_STATUS(ember_comm_all_to_all_v(c, a, NULL, NULL, b, cnt, NULL, EMBER_DTYPE_F32, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_all_to_all_v(c, a, neg, NULL, b, cnt, NULL, EMBER_DTYPE_F32, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_all_to_all_v(c, a, cnt, NULL, b, big, NULL, EMBER_DTYPE_F32, NULL), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_comm_all_to_all_v(c, a, cnt, NULL, a + 2, cnt, NULL, EMBER_DTYPE_F32, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    ember_comm_request *rq = (ember_comm_request *)&rq;
    CHECK_STATUS(ember_comm_all_reduce(c, a, b, -5, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, &rq),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(rq == NULL); /* a refused call hands out no request */
    int done = 0;
    CHECK_STATUS(ember_comm_test(NULL, &done), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_OK(ember_comm_wait(NULL));
    CHECK_STATUS(ember_comm_wait_all(-1, NULL), EMBER_ERR_INVALID_ARGUMENT);
}

static void test_requests(ember_comm *c) {
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {0};
    ember_comm_request *rq = NULL;
    CHECK_OK(ember_comm_all_reduce(c, a, b, 5, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, &rq));
    CHECK(rq != NULL);
    int done = 0;
    CHECK_OK(ember_comm_test(rq, &done));
    CHECK_EQ_INT(done, 1);
    CHECK_OK(ember_comm_wait(rq));
    CHECK_NEAR_ARRAY(b, a, 5, 0);
    ember_comm_request *rs[3];
    float c1[5] = {0}, c2[5] = {0};
    CHECK_OK(ember_comm_all_gather(c, a, c1, 5, EMBER_DTYPE_F32, &rs[0]));
    CHECK_OK(ember_comm_broadcast(c, a, 5, EMBER_DTYPE_F32, 0, &rs[1]));
    CHECK_OK(ember_comm_barrier(c, &rs[2]));
    CHECK_OK(ember_comm_wait_all(3, rs));
    CHECK(rs[0] == NULL && rs[2] == NULL);
    CHECK_NEAR_ARRAY(c1, a, 5, 0);
    (void)c2;
}

static void test_tensors(ember_comm *c) {
    ember_tensor *t = NULL, *o = NULL, *tr = NULL, *bad = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3, 4}}, &t));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {12}}, &o));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I32, .ndim = 1, .shape = {12}}, &bad));
    CHECK_OK(ember_tensor_fill(t, 2.5));
    CHECK_OK(ember_comm_all_reduce_tensor(c, t, EMBER_REDUCE_SUM, NULL));
    double sum = 0;
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, t, &sum));
    CHECK_NEAR(sum, 30.0, 0);
    CHECK_OK(ember_comm_all_gather_tensor(c, t, o, NULL));
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, o, &sum));
    CHECK_NEAR(sum, 30.0, 0);
    CHECK_OK(ember_comm_reduce_scatter_tensor(c, t, o, EMBER_REDUCE_MAX, NULL));
    CHECK_OK(ember_comm_all_to_all_tensor(c, t, o, NULL));
    CHECK_OK(ember_comm_broadcast_tensor(c, t, 0, NULL));
    CHECK_STATUS(ember_comm_all_gather_tensor(c, t, bad, NULL), EMBER_ERR_DTYPE);
    ember_tensor *small = NULL;
    CHECK_OK(ember_tensor_narrow(o, 0, 0, 5, &small));
    CHECK_STATUS(ember_comm_all_gather_tensor(c, t, small, NULL), EMBER_ERR_SHAPE);
    CHECK_OK(ember_tensor_transpose(t, 0, 1, &tr));
    CHECK_STATUS(ember_comm_all_reduce_tensor(c, tr, EMBER_REDUCE_SUM, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "not contiguous") != NULL);
    CHECK_STATUS(ember_comm_broadcast_tensor(c, NULL, 0, NULL), EMBER_ERR_INVALID_ARGUMENT);
    /* an async call keeps its tensor alive until the wait */
    ember_comm_request *rq = NULL;
    int refs = ember_tensor_storage_refs(o);
    CHECK_OK(ember_comm_all_reduce_tensor(c, o, EMBER_REDUCE_SUM, &rq));
    CHECK_EQ_INT(ember_tensor_storage_refs(o), refs + 1);
    ember_tensor_destroy(o);
    CHECK_OK(ember_comm_wait(rq));
    ember_tensor_destroy(small);
    ember_tensor_destroy(tr);
    ember_tensor_destroy(bad);
    ember_tensor_destroy(t);
}

static void test_split_and_mesh(ember_comm *c) {
    ember_comm *s = NULL;
    CHECK_OK(ember_comm_split(c, 0, 5, &s));
    CHECK(s != NULL);
    CHECK_EQ_INT(ember_comm_size(s), 1);
    CHECK_EQ_INT(ember_comm_get_backend(s), EMBER_COMM_BACKEND_SELF);
    ember_comm_destroy(s);
    s = (ember_comm *)&s;
    CHECK_OK(ember_comm_split(c, EMBER_COMM_UNDEFINED, 0, &s));
    CHECK(s == NULL);
    CHECK_STATUS(ember_comm_split(c, -2, 0, &s), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_split(NULL, 0, 0, &s), EMBER_ERR_INVALID_ARGUMENT);

    ember_mesh *m = NULL;
    CHECK_OK(ember_mesh_create(c, &(ember_mesh_config){.ndim = 2, .shape = {1, -1}, .names = {"dp", "tp"}}, &m));
    CHECK_EQ_INT(ember_mesh_ndim(m), 2);
    CHECK_EQ_INT(ember_mesh_dim(m, 1), 1);
    CHECK_EQ_INT(ember_mesh_dim(m, 2), 0);
    CHECK_EQ_INT(ember_mesh_axis_index(m, "tp"), 1);
    CHECK_EQ_INT(ember_mesh_axis_index(m, "pp"), -1);
    CHECK_STR(ember_mesh_axis_name(m, 0), "dp");
    CHECK(ember_mesh_axis_name(m, 3) == NULL);
    CHECK_EQ_INT(ember_mesh_coord(m, 0), 0);
    CHECK_EQ_INT(ember_mesh_coord(m, 5), -1);
    CHECK(ember_mesh_comm(m, -1) == c);
    CHECK(ember_mesh_comm(m, 2) == NULL);
    CHECK_EQ_INT(ember_comm_size(ember_mesh_comm(m, 0)), 1);
    int co[2] = {-1, -1}, r = -1;
    CHECK_OK(ember_mesh_coords(m, 0, co));
    CHECK(co[0] == 0 && co[1] == 0);
    CHECK_OK(ember_mesh_rank(m, co, &r));
    CHECK_EQ_INT(r, 0);
    CHECK_STATUS(ember_mesh_coords(m, 1, co), EMBER_ERR_INDEX);
    co[1] = 1;
    CHECK_STATUS(ember_mesh_rank(m, co, &r), EMBER_ERR_INDEX);
    ember_mesh_destroy(m);
    ember_mesh_destroy(NULL);
    m = NULL;
    CHECK_STATUS(ember_mesh_create(c, &(ember_mesh_config){.ndim = 0}, &m), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_mesh_create(c, &(ember_mesh_config){.ndim = 5}, &m), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_mesh_create(c, &(ember_mesh_config){.ndim = 1, .shape = {2}}, &m), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_mesh_create(c, &(ember_mesh_config){.ndim = 2, .shape = {-1, -1}}, &m),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_mesh_create(c, &(ember_mesh_config){.ndim = 2, .shape = {1, 0}}, &m),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_mesh_create(c, &(ember_mesh_config){.ndim = 2, .shape = {1, 1}, .names = {"x", "x"}}, &m),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_mesh_create(NULL, &(ember_mesh_config){.ndim = 1, .shape = {1}}, &m),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
}

static void test_config(void) {
    ember_comm *c = NULL;
    CHECK_STATUS(ember_comm_create_self(NULL, NULL), EMBER_ERR_INVALID_ARGUMENT);
    setenv("EMBER_COMM_TIMEOUT", "7.5", 1);
    CHECK_OK(ember_comm_create_self(NULL, &c));
    CHECK_NEAR(ember_comm_timeout(c), 7.5, 0);
    CHECK_OK(ember_comm_set_timeout(c, 2));
    CHECK_NEAR(ember_comm_timeout(c), 2, 0);
    CHECK_OK(ember_comm_set_timeout(c, -3));
    CHECK_NEAR(ember_comm_timeout(c), -1, 0);
    CHECK_OK(ember_comm_set_timeout(c, 0));
    CHECK_NEAR(ember_comm_timeout(c), 7.5, 0);
    CHECK_STATUS(ember_comm_set_timeout(c, NAN), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_comm_set_timeout(NULL, 1), EMBER_ERR_INVALID_ARGUMENT);
    ember_comm_destroy(c);
    setenv("EMBER_COMM_TIMEOUT", "soon", 1);
    ember_log_level lv = ember_log_get_level();
    ember_log_set_level(EMBER_LOG_ERROR); /* its warning is expected */
    CHECK_OK(ember_comm_create_self(&(ember_comm_config){.validate = 1}, &c));
    ember_log_set_level(lv);
    CHECK_NEAR(ember_comm_timeout(c), EMBER_COMM_DEFAULT_TIMEOUT, 0);
    ember_comm_destroy(c);
    unsetenv("EMBER_COMM_TIMEOUT");
    CHECK_STATUS(ember_comm_create_self(&(ember_comm_config){.timeout_s = NAN}, &c), EMBER_ERR_INVALID_ARGUMENT);
    if (ember_cuda_device_count() == 0) {
        ember_status st = ember_comm_create_self(&(ember_comm_config){.device = EMBER_CUDA(0)}, &c);
        CHECK(st == EMBER_ERR_DEVICE || st == EMBER_ERR_UNSUPPORTED);
        CHECK(c == NULL);
    }
    CHECK_STR(ember_comm_backend_name(EMBER_COMM_BACKEND_MPI), "mpi");
    CHECK_STR(ember_comm_backend_name(EMBER_COMM_BACKEND_NCCL), "nccl");
    CHECK_STR(ember_comm_backend_name((ember_comm_backend)7), "invalid");
    CHECK_EQ_INT(ember_comm_size(NULL), 1);
    CHECK_EQ_INT(ember_comm_rank(NULL), 0);
    ember_comm_destroy(NULL);
}

/* NCCL on one GPU (only where there is one): every collective through tensors in GPU
   memory, a split, the self backend's device copies, a host tensor refused. */
#ifdef EMBER_HAVE_NCCL
static void test_nccl_one_rank(void) {
    ember_comm *g = NULL, *sg = NULL, *self = NULL;
    CHECK_OK(ember_comm_create_nccl(NULL, &g));
    if (!g) return;
    CHECK_EQ_INT(ember_comm_get_backend(g), EMBER_COMM_BACKEND_NCCL);
    CHECK_EQ_INT(ember_comm_size(g), 1);
    CHECK_EQ_INT(ember_comm_device(g).type, EMBER_DEVICE_CUDA);
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = ember_comm_device(g)}, &mm));
    ember_tensor *t = NULL, *o = NULL, *h = NULL;
    ember_tensor_params dp = {.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3, 4}, .tier = EMBER_TIER_DEVICE, .mm = mm};
    CHECK_OK(ember_tensor_create(&dp, &t));
    CHECK_OK(ember_tensor_create(&dp, &o));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3, 4}}, &h));
    if (!t || !o || !h) goto out;
    CHECK_OK(ember_tensor_fill(t, 2.5));
    CHECK_OK(ember_comm_all_reduce_tensor(g, t, EMBER_REDUCE_SUM, NULL));
    ember_comm_request *rq = NULL;
    CHECK_OK(ember_comm_all_reduce_tensor(g, t, EMBER_REDUCE_MEAN, &rq));
    CHECK_OK(ember_comm_wait(rq));
    CHECK_OK(ember_comm_all_gather_tensor(g, t, o, NULL));
    CHECK_OK(ember_comm_reduce_scatter_tensor(g, o, t, EMBER_REDUCE_MAX, NULL));
    CHECK_OK(ember_comm_all_to_all_tensor(g, t, o, NULL));
    CHECK_OK(ember_comm_broadcast_tensor(g, o, 0, NULL));
    CHECK_OK(ember_comm_barrier(g, NULL));
    double sum = 0;
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, o, &sum));
    CHECK_NEAR(sum, 30.0, 0);
    CHECK_STATUS(ember_comm_all_reduce_tensor(g, h, EMBER_REDUCE_SUM, NULL), EMBER_ERR_DEVICE);
    CHECK_OK(ember_comm_split(g, 0, 0, &sg));
    CHECK_EQ_INT(ember_comm_size(sg), 1);
    CHECK_OK(ember_comm_all_reduce_tensor(sg, t, EMBER_REDUCE_SUM, NULL));
    CHECK_OK(ember_comm_create_self(&(ember_comm_config){.device = ember_comm_device(g)}, &self));
    CHECK_OK(ember_tensor_fill(t, 1.0));
    CHECK_OK(ember_comm_all_gather_tensor(self, t, o, NULL));
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, o, &sum));
    CHECK_NEAR(sum, 12.0, 0);
out:
    ember_tensor_destroy(t);
    ember_tensor_destroy(o);
    ember_tensor_destroy(h);
    ember_memory_destroy(mm);
    ember_comm_destroy(self);
    ember_comm_destroy(sg);
    ember_comm_destroy(g);
}
#endif

/* Without mpirun, MPI runs as a one-rank world; MPI cannot start twice in a process. */
static void test_mpi_singleton(void) {
#ifdef EMBER_HAVE_MPI
    ember_comm *c = NULL;
    CHECK_STATUS(ember_comm_create_mpi(&(ember_comm_config){.device = EMBER_CUDA(0)}, &c),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_OK(ember_comm_create_mpi(&(ember_comm_config){.validate = 1}, &c));
    if (!c) return;
    CHECK_EQ_INT(ember_comm_size(c), 1);
    CHECK_EQ_INT(ember_comm_get_backend(c), EMBER_COMM_BACKEND_MPI);
    test_self_copies(c);
    uint16_t h[3] = {ember_f32_to_f16(1.5f), ember_f32_to_f16(-2), ember_f32_to_f16(3)}, hr[3];
    CHECK_OK(ember_comm_all_reduce(c, h, hr, 3, EMBER_DTYPE_F16, EMBER_REDUCE_MEAN, NULL));
    CHECK_NEAR(ember_f16_to_f32(hr[0]), 1.5, 0);
    CHECK_STATUS(ember_comm_send(c, h, 3, EMBER_DTYPE_F16, 0, NULL), EMBER_ERR_INVALID_ARGUMENT);
    ember_comm *s = NULL;
    CHECK_OK(ember_comm_split(c, 3, 0, &s));
    CHECK_EQ_INT(ember_comm_size(s), 1);
#ifdef EMBER_HAVE_NCCL
    if (ember_cuda_device_count() > 0) test_nccl_one_rank();
#endif
    ember_comm_destroy(c); /* s keeps MPI up */
    CHECK_OK(ember_comm_barrier(s, NULL));
    ember_comm_destroy(s); /* the last one: MPI is finalized */
    CHECK_STATUS(ember_comm_create_mpi(NULL, &c), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "cannot start twice") != NULL);
#else
    ember_comm *c = NULL;
    CHECK_STATUS(ember_comm_create_mpi(NULL, &c), EMBER_ERR_UNSUPPORTED);
#endif
}

int main(void) {
    /* ctest starts this binary without mpirun; make sure of it for create_default */
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMIX_RANK");
    unsetenv("PMI_RANK");
    ember_comm *c = NULL;
    CHECK_OK(ember_comm_create_default(NULL, &c));
    CHECK_EQ_INT(ember_comm_get_backend(c), EMBER_COMM_BACKEND_SELF);
    CHECK_STR(ember_comm_backend_name(ember_comm_get_backend(c)), "self");
    CHECK_EQ_INT(ember_comm_rank(c), 0);
    CHECK_EQ_INT(ember_comm_size(c), 1);
    CHECK(ember_device_equal(ember_comm_device(c), EMBER_CPU));
    CHECK_EQ_INT(ember_comm_is_broken(c), 0);
    test_self_copies(c);
    test_bad_arguments(c);
    test_requests(c);
    test_tensors(c);
    test_split_and_mesh(c);
    ember_comm_destroy(c);
    test_config();
    test_mpi_singleton();
    /* NCCL: not built, no GPU, or (after the singleton test) MPI already finalized */
    ember_status st = ember_comm_create_nccl(NULL, &c);
    CHECK(st == EMBER_ERR_UNSUPPORTED || st == EMBER_ERR_DEVICE || st == EMBER_ERR_STATE);
    CHECK(c == NULL);
    return check_summary();
}
