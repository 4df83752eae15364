/*
 * Data parallel over N ranks (ctest: mpiexec -n 2 and -n 4, label mpi).
 *
 * The N-rank vs 1-rank check: an MLP (16 -> 32 -> 32 -> 1, BCE) trained S steps with
 * ember_ddp, each rank on its slice of the same global batches (rows [r B/N, (r+1) B/N)),
 * against the same MLP trained by one process on the global batch (every rank trains
 * that reference itself). With equal slices the mean of the ranks' mean losses is the
 * global mean loss, so the averaged gradients are the global batch's gradients up to
 * the order of the batch sums: a matmul over B rows becomes N partial sums over B/N
 * rows added by the all-reduce. That reordering changes the last bits of a gradient
 * (relative ~1e-7); after S = 8 steps of SGD with momentum or Adam the parameters
 * (magnitude <= ~1) agree within TOL = 5e-6 absolute (observed <= 6e-8 on 2 and 4
 * ranks), and the mean of the ranks' losses matches the global loss within 5e-6. Across
 * ranks the parameters must be bit-identical: every rank receives the same all-reduced
 * sum and runs the same deterministic optimizer.
 * Variants: bucket sizes (one bucket, one bucket per gradient, in between), overlap
 * through the executor hook or after backward, checkpointed layers, Adam, and
 * optimizer-state sharding (ZeRO: reduce-scatter, a 1/N optimizer, all-gather; the
 * same tolerance, the shards' state adding up to one copy); bucket order
 * (last layer's gradients first); overlap statistics; graphs that differ across ranks
 * (EMBER_ERR_SHAPE on every rank); a self communicator (bit-identical to plain training).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "graph_util.h"
#include "mpi_world.h"
#include "ember/parallel.h"

#define IN 16
#define BG 32 /* global batch, divisible by 1, 2 and 4 */
#define STEPS 8
#define TOL 5e-6
#define PARAMS (IN * 32 + 32 + 32 * 32 + 32 + 32 + 1) /* MLP 16 -> 32 -> 32 -> 1 */

static int R, N;

/* deterministic data: feature j of global sample i at step s, and its label */
static float feat(int s, int i, int j) { return graph_test_feature(s, i, j); }
static float label(int s, int i) { return feat(s, i, 0) + 0.5f * feat(s, i, 3) > 0.0f ? 1.0f : 0.0f; }

typedef struct model {
    ember_graph *g;
    ember_node *x, *y, *loss;
    ember_optimizer *opt;
    int batch;
} model;

static ember_optimizer_config optim_config(ember_optim_kind kind) {
    ember_optimizer_config cfg = ember_optimizer_defaults(kind);
    if (kind == EMBER_OPTIM_SGD) cfg.lr = 0.1, cfg.momentum = 0.9;
    else cfg.lr = 1e-2;
    return cfg;
}

/* kind EMBER_OPTIM_KIND_COUNT: no optimizer (made later) */
static void model_build(model *m, int batch, int checkpoint, int extra_param, ember_optim_kind kind) {
    memset(m, 0, sizeof *m);
    m->batch = batch;
    CHECK_OK(ember_graph_create(&(ember_graph_params){.seed = 1}, &m->g));
    CHECK_OK(ember_graph_input(m->g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){batch, IN}, &m->x));
    CHECK_OK(ember_graph_input(m->g, "y", EMBER_DTYPE_F32, 2, (int64_t[]){batch, 1}, &m->y));
    ember_rng rng = {.seed = 42};
    ember_node *h = NULL;
    CHECK_OK(ember_mlp(m->g, m->x,
                       &(ember_mlp_params){.dims = (int64_t[]){IN, 32, 32, 1}, .nlayers = 3, .act = EMBER_ACT_RELU,
                                           .name = "mlp", .rng = &rng, .checkpoint = checkpoint},
                       &h));
    if (extra_param) {
        ember_node *b = NULL;
        CHECK_OK(ember_graph_param(m->g, "extra", EMBER_DTYPE_F32, 1, (int64_t[]){1}, &b));
        CHECK_OK(ember_op_add(m->g, h, b, &h));
    }
    CHECK_OK(ember_op_bce_with_logits(m->g, h, m->y, &m->loss));
    CHECK_OK(ember_graph_build_backward(m->g, m->loss));
    if (kind == EMBER_OPTIM_KIND_COUNT) return;
    ember_optimizer_config cfg = optim_config(kind);
    CHECK_OK(ember_graph_optimizer_create(m->g, &cfg, &m->opt));
}

static void model_free(model *m) {
    ember_optimizer_destroy(m->opt);
    ember_graph_destroy(m->g);
}

/* rows [first, first + batch) of step s's global batch into the inputs */
static void model_feed(model *m, int s, int first) {
    ember_tensor *xt = NULL, *yt = NULL;
    CHECK_OK(ember_node_value(m->x, &xt));
    CHECK_OK(ember_node_value(m->y, &yt));
    if (!xt || !yt) return;
    float *x = ember_tensor_data(xt), *y = ember_tensor_data(yt);
    for (int i = 0; i < m->batch; i++) {
        for (int j = 0; j < IN; j++) x[i * IN + j] = feat(s, first + i, j);
        y[i] = label(s, first + i);
    }
}

static float model_loss(model *m) {
    ember_tensor *t = NULL;
    if (ember_node_value(m->loss, &t) != EMBER_OK || !t) return NAN;
    return *(float *)ember_tensor_data(t);
}

/* Parameters of a against b within tol (max abs diff reported), and against rank 0's bits. */
static double compare_params(ember_comm *w, model *a, model *b, double tol, const char *what) {
    double worst = 0.0;
    int n = ember_graph_node_count(a->g);
    for (int i = 0; i < n; i++) {
        ember_node_info info;
        CHECK_OK(ember_graph_node_info(a->g, i, &info));
        if (strcmp(info.op, "param") != 0) continue;
        ember_node *pa = NULL, *pb = NULL;
        CHECK_OK(ember_graph_find(a->g, info.name, &pa));
        CHECK_OK(ember_graph_find(b->g, info.name, &pb));
        if (!pa || !pb) continue;
        ember_tensor *ta = NULL, *tb = NULL;
        CHECK_OK(ember_node_value(pa, &ta));
        CHECK_OK(ember_node_value(pb, &tb));
        const float *va = ember_tensor_data(ta), *vb = ember_tensor_data(tb);
        int64_t k = ember_tensor_numel(ta);
        for (int64_t j = 0; j < k; j++) {
            double dd = fabs((double)va[j] - (double)vb[j]);
            if (!(dd <= worst)) worst = dd;
        }
        int nw = ember_comm_size(w);
        if (nw > 1) {
            /* the same bits on every rank: gather everyone's copy */
            float *all = malloc((size_t)k * (size_t)nw * sizeof *all);
            CHECK_OK(ember_comm_all_gather(w, va, all, k, EMBER_DTYPE_F32, NULL));
            int same = 1;
            for (int r = 0; r < nw; r++) same &= memcmp(all + (size_t)r * (size_t)k, all, (size_t)k * 4) == 0;
            if (!same) fprintf(stderr, "rank %d: %s: parameter %s differs across ranks\n", R, what, info.name);
            CHECK(same);
            free(all);
        }
    }
    if (!(worst <= tol))
        fprintf(stderr, "rank %d of %d: %s: max |ddp - reference| = %.3g > %.3g\n", R, N, what, worst, tol);
    CHECK(worst <= tol);
    return worst;
}

typedef struct variant {
    const char *name;
    size_t bucket_bytes, first_bucket_bytes;
    int overlap, checkpoint;
    ember_optim_kind kind;
    int shard;
} variant;

static void run_variant(ember_comm *w, const variant *v) {
    int bl = BG / N;
    model loc, ref;
    model_build(&loc, bl, v->checkpoint, 0, v->shard ? EMBER_OPTIM_KIND_COUNT : v->kind);
    model_build(&ref, BG, 0, 0, v->kind);
    ember_ddp *ddp = NULL;
    CHECK_OK(ember_ddp_create(loc.g, w,
                              &(ember_ddp_config){.bucket_bytes = v->bucket_bytes,
                                                  .first_bucket_bytes = v->first_bucket_bytes,
                                                  .overlap = v->overlap,
                                                  .shard_optimizer = v->shard},
                              &ddp));
    if (ddp && v->shard) {
        ember_optimizer_config cfg = optim_config(v->kind);
        CHECK_OK(ember_ddp_optimizer_create(ddp, &cfg, &loc.opt));
        ember_optimizer *again = NULL;
        CHECK_STATUS(ember_ddp_optimizer_create(ddp, &cfg, &again), EMBER_ERR_STATE);
        /* the state is split: the ranks' shards add up to one whole copy */
        int64_t numel = 0, total = 0, state = 0, state_total = 0;
        ember_ddp_stats s0;
        CHECK_OK(ember_ddp_get_stats(ddp, &s0));
        numel = s0.shard_numel;
        int ns = 0;
        CHECK_OK(ember_optimizer_state_count(loc.opt, &ns));
        for (int i = 0; i < ns; i++) {
            const char *nm;
            ember_tensor *t;
            CHECK_OK(ember_optimizer_state_get(loc.opt, i, &nm, &t));
            state += ember_tensor_numel(t);
        }
        CHECK_OK(ember_comm_all_reduce(w, &numel, &total, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK_OK(ember_comm_all_reduce(w, &state, &state_total, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
        CHECK_EQ_INT(total, PARAMS);
        CHECK_EQ_INT(state_total, (v->kind == EMBER_OPTIM_ADAM ? 2 : 1) * PARAMS);
        CHECK(numel <= PARAMS / N + 64); /* about a 1/N share (bucket padding aside) */
        /* another optimizer is refused by step */
        ember_optimizer *other = NULL;
        CHECK_OK(ember_graph_optimizer_create(loc.g, &cfg, &other));
        CHECK_STATUS(ember_ddp_step(ddp, other), EMBER_ERR_INVALID_ARGUMENT);
        ember_optimizer_destroy(other);
    }
    if (!ddp) {
        model_free(&loc);
        model_free(&ref);
        return;
    }
    ember_ddp_stats st;
    CHECK_OK(ember_ddp_get_stats(ddp, &st));
    CHECK_EQ_INT(st.params, 6);
    CHECK_EQ_INT(st.overlap, v->overlap >= 0);
    /* buckets in backward order: the last layer's gradients come first */
    const char *first = ember_ddp_param_name(ddp, 0);
    CHECK(first && strncmp(first, "mlp.2.", 6) == 0);
    const char *last = ember_ddp_param_name(ddp, st.params - 1);
    CHECK(last && strncmp(last, "mlp.0.", 6) == 0);
    int64_t covered = 0;
    for (int k = 0; k < st.buckets; k++) {
        ember_ddp_bucket_info bi;
        CHECK_OK(ember_ddp_get_bucket(ddp, k, &bi));
        CHECK_EQ_INT(bi.first, covered);
        covered += bi.count;
        /* caps respected unless a single gradient is larger */
        size_t cap = k == 0 ? (v->first_bucket_bytes ? v->first_bucket_bytes : EMBER_DDP_DEFAULT_FIRST_BUCKET_BYTES)
                            : (v->bucket_bytes ? v->bucket_bytes : EMBER_DDP_DEFAULT_BUCKET_BYTES);
        if (cap > (v->bucket_bytes ? v->bucket_bytes : EMBER_DDP_DEFAULT_BUCKET_BYTES))
            cap = v->bucket_bytes ? v->bucket_bytes : EMBER_DDP_DEFAULT_BUCKET_BYTES;
        CHECK(bi.count == 1 || bi.bytes <= cap);
    }
    CHECK_EQ_INT(covered, st.params);
    CHECK_STATUS(ember_ddp_get_bucket(ddp, st.buckets, &(ember_ddp_bucket_info){0}), EMBER_ERR_INDEX);

    double worst_loss = 0.0;
    for (int s = 0; s < STEPS; s++) {
        model_feed(&loc, s, R * bl);
        CHECK_OK(ember_ddp_step(ddp, loc.opt));
        model_feed(&ref, s, 0);
        CHECK_OK(ember_graph_run(ref.g));
        CHECK_OK(ember_optimizer_step(ref.opt));
        /* the mean of the local losses is the global loss */
        float l = model_loss(&loc), lm = 0.0f;
        CHECK_OK(ember_comm_all_reduce(w, &l, &lm, 1, EMBER_DTYPE_F32, EMBER_REDUCE_MEAN, NULL));
        double dl = fabs((double)lm - (double)model_loss(&ref));
        if (dl > worst_loss) worst_loss = dl;
    }
    CHECK(worst_loss <= TOL);
    CHECK_OK(ember_ddp_get_stats(ddp, &st));
    CHECK_EQ_INT(st.steps, STEPS);
    if (v->overlap >= 0 && st.buckets > 1) CHECK(st.overlapped >= st.buckets - 1);
    if (v->overlap < 0) CHECK_EQ_INT(st.overlapped, 0);
    double worst = compare_params(w, &loc, &ref, TOL, v->name);
    if (R == 0)
        printf("ddp %-26s ranks %d buckets %d overlapped %d: max |param diff| %.3g, |loss diff| %.3g\n", v->name, N,
               st.buckets, st.overlapped, worst, worst_loss);
    ember_optimizer_destroy(loc.opt); /* before the ddp */
    loc.opt = NULL;
    ember_ddp_destroy(ddp);
    model_free(&loc);
    model_free(&ref);
}

/* sync_grads after a plain run gives the gradients ember_ddp_run gives */
static void test_sync_grads(ember_comm *w) {
    int bl = BG / N;
    model a, b;
    model_build(&a, bl, 0, 0, EMBER_OPTIM_SGD);
    model_build(&b, bl, 0, 0, EMBER_OPTIM_SGD);
    ember_ddp *da = NULL, *db = NULL;
    CHECK_OK(ember_ddp_create(a.g, w, &(ember_ddp_config){.bucket_bytes = 2048}, &da));
    CHECK_OK(ember_ddp_create(b.g, w, &(ember_ddp_config){.bucket_bytes = 2048, .overlap = -1}, &db));
    model_feed(&a, 0, R * bl);
    model_feed(&b, 0, R * bl);
    CHECK_OK(ember_ddp_run(da));
    CHECK_OK(ember_graph_run(b.g));
    CHECK_OK(ember_ddp_sync_grads(db));
    int n = ember_graph_node_count(a.g);
    int same = 1;
    for (int i = 0; i < n; i++) {
        ember_node_info info;
        CHECK_OK(ember_graph_node_info(a.g, i, &info));
        if (strcmp(info.op, "param") != 0) continue;
        ember_node *pa = NULL, *pb = NULL;
        ember_tensor *ga = NULL, *gb = NULL;
        CHECK_OK(ember_graph_find(a.g, info.name, &pa));
        CHECK_OK(ember_graph_find(b.g, info.name, &pb));
        CHECK_OK(ember_node_value(ember_node_grad(pa), &ga));
        CHECK_OK(ember_node_value(ember_node_grad(pb), &gb));
        same &= memcmp(ember_tensor_data(ga), ember_tensor_data(gb), ember_tensor_nbytes(ga)) == 0;
    }
    CHECK(same);
    ember_ddp_destroy(da);
    ember_ddp_destroy(db);
    model_free(&a);
    model_free(&b);
}

/* A rank whose graph differs: every rank refuses, none hangs. */
static void test_mismatch(ember_comm *w) {
    model m;
    ember_ddp *d = NULL;
    if (N > 1) {
        model_build(&m, BG / N, 0, R == N - 1, EMBER_OPTIM_SGD);
        CHECK_STATUS(ember_ddp_create(m.g, w, NULL, &d), EMBER_ERR_SHAPE);
        CHECK(d == NULL);
        CHECK(!ember_comm_is_broken(w));
        model_free(&m);
    }
    /* bad arguments */
    CHECK_STATUS(ember_ddp_create(NULL, w, NULL, &d), EMBER_ERR_INVALID_ARGUMENT);
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(NULL, &g));
    CHECK_STATUS(ember_ddp_create(g, w, NULL, &d), EMBER_ERR_STATE); /* no backward */
    ember_graph_destroy(g);
    ember_ddp_destroy(NULL);
}

/* One rank (self communicator): the same bits as training without ddp. */
static void test_self(void) {
    ember_comm *self = NULL;
    CHECK_OK(ember_comm_create_self(NULL, &self));
    model a, b;
    model_build(&a, BG, 0, 0, EMBER_OPTIM_ADAM);
    model_build(&b, BG, 0, 0, EMBER_OPTIM_ADAM);
    ember_ddp *d = NULL;
    CHECK_OK(ember_ddp_create(a.g, self, &(ember_ddp_config){.bucket_bytes = 1024}, &d));
    for (int s = 0; s < 3; s++) {
        model_feed(&a, s, 0);
        model_feed(&b, s, 0);
        CHECK_OK(ember_ddp_step(d, a.opt));
        CHECK_OK(ember_graph_run(b.g));
        CHECK_OK(ember_optimizer_step(b.opt));
    }
    compare_params(self, &a, &b, 0.0, "self");
    ember_ddp_destroy(d);
    model_free(&a);
    model_free(&b);
    ember_comm_destroy(self);
}

int main(void) {
    ember_comm *w = mpi_world(&R, &N);
    if (!w) return 1;
    if (mpi_skip(w, R, BG % N != 0, "global batch %d is not divisible by %d ranks", BG, N)) return 77;
    const variant vs[] = {
        {"one bucket, sgd", 0, 0, 0, 0, EMBER_OPTIM_SGD, 0},
        {"bucket per gradient, sgd", 64, 64, 0, 0, EMBER_OPTIM_SGD, 0},
        {"4 KiB buckets, sgd", 4096, 1024, 0, 0, EMBER_OPTIM_SGD, 0},
        {"4 KiB, after backward, sgd", 4096, 1024, -1, 0, EMBER_OPTIM_SGD, 0},
        {"4 KiB, checkpointed, adam", 4096, 1024, 0, 1, EMBER_OPTIM_ADAM, 0},
        {"bucket per gradient, adam", 64, 64, 0, 0, EMBER_OPTIM_ADAM, 0},
        {"zero, one bucket, adam", 0, 0, 0, 0, EMBER_OPTIM_ADAM, 1},
        {"zero, 4 KiB buckets, sgd", 4096, 1024, 0, 0, EMBER_OPTIM_SGD, 1},
        {"zero, per gradient, adam", 64, 64, 0, 0, EMBER_OPTIM_ADAM, 1},
        {"zero, after backward, adam", 4096, 1024, -1, 0, EMBER_OPTIM_ADAM, 1},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) run_variant(w, &vs[i]);
    test_sync_grads(w);
    test_mismatch(w);
    test_self();
    ember_comm_destroy(w);
    return check_summary();
}
