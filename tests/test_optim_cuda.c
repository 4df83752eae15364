/*
 * Dense optimizers and checkpoints on CUDA, against the CPU.
 *
 * The optimizer's element arithmetic is one source for both backends
 * (engine/optim_kernels.h) with every rounding explicit, so a CUDA step must give the
 * CPU's bits exactly: parameters and state are compared with memcmp after several
 * steps, for every kind and switch, on a parameter large enough for the grid-stride
 * loop to wrap, a small one, a 0-d one and an empty one. Gradient clipping reduces
 * on the GPU (double accumulation in a fixed tree, then one f32 rounding, like the
 * CPU's chunked double sums), so its norm agrees to 1e-6 relative and the scaled
 * gradients to the same. Checkpoints of GPU tensors go through host staging in
 * chunks; a tensor larger than one chunk and a strided one must round-trip exactly.
 * Without a GPU the binary exits 77, which ctest reports as skipped.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static ember_memory *gpu_mm;

static ember_tensor *host_f32(int ndim, const int64_t *shape) {
    ember_tensor_params p = {.dtype = EMBER_DTYPE_F32, .ndim = ndim};
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    ember_tensor *t = NULL;
    CHECK_OK(ember_tensor_create(&p, &t));
    return t;
}

static ember_tensor *to_dev(const ember_tensor *t) {
    ember_tensor *d = NULL;
    CHECK_OK(ember_tensor_clone(t, EMBER_TIER_DEVICE, gpu_mm, &d));
    return d;
}

static ember_tensor *to_host(const ember_tensor *t) {
    ember_tensor *h = NULL;
    CHECK_OK(ember_tensor_clone(t, EMBER_TIER_HOST, ember_memory_default(), &h));
    return h;
}

static void fill_det(ember_tensor *t, double phase) {
    float *p = ember_tensor_data(t);
    int64_t n = ember_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(sin(0.001 * (double)i + phase) * (1.0 + (double)(i % 7)));
}

static int same_bits(const char *what, const ember_tensor *cpu, const ember_tensor *gpu) {
    ember_tensor *g = to_host(gpu);
    int ok = g && ember_tensor_nbytes(g) == ember_tensor_nbytes(cpu) &&
             memcmp(ember_tensor_data(g), ember_tensor_data(cpu), ember_tensor_nbytes(cpu)) == 0;
    if (!ok && g) {
        const float *a = ember_tensor_data(cpu), *b = ember_tensor_data(g);
        for (int64_t i = 0; i < ember_tensor_numel(cpu); i++)
            if (memcmp(&a[i], &b[i], 4) != 0) {
                fprintf(stderr, "  %s: element %lld: cpu %.9g gpu %.9g\n", what, (long long)i, a[i], b[i]);
                break;
            }
    }
    ember_tensor_destroy(g);
    return ok;
}

#define NP 4
static const int64_t shapes[NP][1] = {{17000001}, {7}, {0}, {0}};
static const int ndims[NP] = {1, 1, 0, 1}; /* big (grid-stride wraps), small, 0-d, empty */

static void compare_kind(const char *what, ember_optimizer_config cfg) {
    ember_tensor *pc[NP], *gc[NP], *pd[NP], *gd[NP];
    ember_optimizer_param qc[NP], qd[NP];
    for (int j = 0; j < NP; j++) {
        pc[j] = host_f32(ndims[j], shapes[j]);
        gc[j] = host_f32(ndims[j], shapes[j]);
        fill_det(pc[j], j);
        pd[j] = to_dev(pc[j]);
        gd[j] = to_dev(gc[j]);
        qc[j] = (ember_optimizer_param){pc[j], gc[j], NULL};
        qd[j] = (ember_optimizer_param){pd[j], gd[j], NULL};
    }
    ember_optimizer *oc = NULL, *od = NULL;
    CHECK_OK(ember_optimizer_create(&cfg, qc, NP, &oc));
    CHECK_OK(ember_optimizer_create(&cfg, qd, NP, &od));
    if (!oc || !od) goto out;
    /* State lives on the GPU, tagged as optimizer state. */
    ember_memory_stats st;
    ember_memory_get_stats(gpu_mm, &st);
    int count = 0;
    CHECK_OK(ember_optimizer_state_count(od, &count));
    if (count) CHECK(st.live[EMBER_TIER_DEVICE][EMBER_MEM_OPTIMIZER_STATE] > 0);
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < NP; j++) {
            fill_det(gc[j], 10.0 * k + j);
            CHECK_OK(ember_tensor_copy(gd[j], gc[j]));
        }
        CHECK_OK(ember_optimizer_step(oc));
        CHECK_OK(ember_optimizer_step(od));
    }
    for (int j = 0; j < NP; j++) CHECK(same_bits(what, pc[j], pd[j]));
    for (int i = 0; i < count; i++) {
        ember_tensor *a, *b;
        const char *name;
        CHECK_OK(ember_optimizer_state_get(oc, i, &name, &a));
        CHECK_OK(ember_optimizer_state_get(od, i, NULL, &b));
        CHECK_EQ_INT(ember_tensor_device(b).type, EMBER_DEVICE_CUDA);
        CHECK(same_bits(name, a, b));
    }
out:
    ember_optimizer_destroy(oc);
    ember_optimizer_destroy(od);
    for (int j = 0; j < NP; j++) {
        ember_tensor_destroy(pc[j]);
        ember_tensor_destroy(gc[j]);
        ember_tensor_destroy(pd[j]);
        ember_tensor_destroy(gd[j]);
    }
}

static void test_steps(void) {
    ember_lr_schedule cosine = {.kind = EMBER_LR_COSINE, .base_lr = 0.01, .warmup_steps = 1, .total_steps = 4,
                                .min_lr = 0.001};
    ember_optimizer_config c;
    c = ember_optimizer_defaults(EMBER_OPTIM_SGD);
    compare_kind("sgd", c);
    c.momentum = 0.9, c.nesterov = 1, c.weight_decay = 0.01, c.schedule = cosine;
    compare_kind("sgd nesterov", c);
    c = ember_optimizer_defaults(EMBER_OPTIM_SGD);
    c.momentum = 0.8, c.dampening = 0.2;
    compare_kind("sgd dampening", c);
    c = ember_optimizer_defaults(EMBER_OPTIM_ADAGRAD);
    c.weight_decay = 0.02, c.lr_decay = 0.1, c.initial_accumulator_value = 0.1;
    compare_kind("adagrad", c);
    c = ember_optimizer_defaults(EMBER_OPTIM_ADAM);
    c.weight_decay = 0.05, c.schedule = cosine;
    compare_kind("adam", c);
    c.amsgrad = 1;
    compare_kind("adam amsgrad", c);
    c = ember_optimizer_defaults(EMBER_OPTIM_ADAMW);
    c.weight_decay = 0.1;
    compare_kind("adamw", c);
}

static void test_clip(void) {
    int64_t s1[1] = {3000001}, s2[1] = {5};
    ember_tensor *c[3] = {host_f32(1, s1), host_f32(1, s2), host_f32(1, s2)};
    for (int i = 0; i < 3; i++) fill_det(c[i], i);
    ember_tensor *d[3] = {to_dev(c[0]), to_dev(c[1]), c[2]}; /* mixed: two GPU, one CPU */
    ember_tensor *cc[3] = {c[0], c[1], NULL};
    CHECK_OK(ember_tensor_clone(c[2], EMBER_TIER_HOST, NULL, &cc[2]));
    double nc = 0, nd = 0;
    for (int pass = 0; pass < 2; pass++) {
        double norm_type = pass ? INFINITY : 2.0;
        CHECK_OK(ember_clip_grad_norm(cc, 3, 1.0, norm_type, &nc));
        CHECK_OK(ember_clip_grad_norm(d, 3, 1.0, norm_type, &nd));
        CHECK_NEAR(nd, nc, 1e-6 * nc);
        for (int i = 0; i < 2; i++) {
            ember_tensor *h = to_host(d[i]);
            const float *a = ember_tensor_data(cc[i]), *b = ember_tensor_data(h);
            CHECK_NEAR_ARRAY(b, a, ember_tensor_numel(h), 1e-6);
            ember_tensor_destroy(h);
        }
    }
    for (int i = 0; i < 2; i++) ember_tensor_destroy(d[i]);
    for (int i = 0; i < 3; i++) ember_tensor_destroy(c[i]);
    ember_tensor_destroy(cc[2]);
}

static void test_checkpoint(void) {
    char dir[] = "/tmp/ember-ckpt-cuda-XXXXXX", path[256];
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "%s/gpu.safetensors", dir);
    /* 5M floats = 20 MB: more than one 16 MiB staging chunk. */
    int64_t big[1] = {5000000}, m[2] = {300, 7};
    ember_tensor *hb = host_f32(1, big), *hm = host_f32(2, m);
    fill_det(hb, 1);
    fill_det(hm, 2);
    ember_tensor *db = to_dev(hb), *dm = to_dev(hm), *dmt = NULL, *hmt = NULL;
    CHECK_OK(ember_tensor_transpose(dm, 0, 1, &dmt)); /* strided GPU view, (7, 300) */
    CHECK_OK(ember_tensor_transpose(hm, 0, 1, &hmt));
    ember_named_tensor ts[2] = {{"big", db}, {"strided", dmt}};
    CHECK_OK(ember_safetensors_write(path, ts, 2, NULL, 0));
    ember_safetensors *f = NULL;
    CHECK_OK(ember_safetensors_open(path, &f));
    if (f) {
        ember_tensor *rb = NULL, *rs = NULL, *hs = NULL;
        CHECK_OK(ember_safetensors_read_new(f, "big", EMBER_TIER_DEVICE, gpu_mm, EMBER_MEM_PARAMETER, &rb));
        if (rb) CHECK(same_bits("big", hb, rb));
        /* Into an existing strided GPU destination. */
        ember_tensor *dst = NULL, *dstt = NULL;
        CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {300, 7},
                                                            .tier = EMBER_TIER_DEVICE, .mm = gpu_mm}, &dst));
        CHECK_OK(ember_tensor_transpose(dst, 0, 1, &dstt));
        CHECK_OK(ember_safetensors_read(f, "strided", dstt));
        CHECK(same_bits("strided", hm, dst));
        CHECK_OK(ember_safetensors_read_new(f, "strided", EMBER_TIER_HOST, NULL, EMBER_MEM_OTHER, &rs));
        CHECK_OK(ember_tensor_contiguous(hmt, &hs));
        if (rs && hs) CHECK(memcmp(ember_tensor_data(rs), ember_tensor_data(hs), ember_tensor_nbytes(hs)) == 0);
        ember_tensor_destroy(hs);
        ember_tensor_destroy(rs);
        ember_tensor_destroy(dstt);
        ember_tensor_destroy(dst);
        ember_tensor_destroy(rb);
        ember_safetensors_close(f);
    }
    /* Optimizer state on the GPU through a checkpoint: resume equals the full run. */
    ember_optimizer_config cfg = ember_optimizer_defaults(EMBER_OPTIM_ADAMW);
    int64_t s[1] = {1000};
    ember_tensor *p0 = host_f32(1, s), *g0 = host_f32(1, s);
    fill_det(p0, 3);
    ember_tensor *pa = to_dev(p0), *ga = to_dev(g0), *pb = to_dev(p0), *gb = to_dev(g0), *pc = to_dev(p0);
    ember_optimizer *a = NULL, *b = NULL, *c = NULL;
    ember_optimizer_param qa = {pa, ga, "p"}, qb = {pb, gb, "p"}, qc = {pc, gb, "p"};
    CHECK_OK(ember_optimizer_create(&cfg, &qa, 1, &a));
    CHECK_OK(ember_optimizer_create(&cfg, &qb, 1, &b));
    for (int k = 0; k < 5; k++) {
        fill_det(g0, k);
        CHECK_OK(ember_tensor_copy(ga, g0));
        CHECK_OK(ember_optimizer_step(a));
        if (k < 3) {
            CHECK_OK(ember_tensor_copy(gb, g0));
            CHECK_OK(ember_optimizer_step(b));
        }
        if (k == 2) {
            ember_named_tensor pts[1] = {{"p", pb}};
            CHECK_OK(ember_checkpoint_save(path, pts, 1, b));
            CHECK_OK(ember_optimizer_create(&cfg, &qc, 1, &c));
            ember_named_tensor cts[1] = {{"p", pc}};
            CHECK_OK(ember_checkpoint_load(path, cts, 1, c));
        }
        if (k > 2 && c) {
            CHECK_OK(ember_tensor_copy(gb, g0));
            CHECK_OK(ember_optimizer_step(c));
        }
    }
    ember_tensor *ha = to_host(pa);
    if (ha) CHECK(same_bits("resumed", ha, pc));
    ember_tensor_destroy(ha);
    ember_optimizer_destroy(a);
    ember_optimizer_destroy(b);
    ember_optimizer_destroy(c);
    ember_tensor *all[] = {p0, g0, pa, ga, pb, gb, pc, hb, hm, db, dm, dmt, hmt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    if (ember_cuda_device_count() == 0) CHECK_SKIP("no CUDA device (test_optim_cuda needs a GPU)");
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &gpu_mm));
    if (!gpu_mm) return check_summary();
    test_steps();
    test_clip();
    test_checkpoint();
    ember_memory_destroy(gpu_mm);
    return check_summary();
}
