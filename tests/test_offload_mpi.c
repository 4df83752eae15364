/*
 * The heterogeneous memory manager with ZeRO over N ranks (ctest: mpiexec -n 2 and
 * -n 4, label mpi).
 *
 * The N-rank vs 1-rank check: an MLP (32 -> 64 -> 64 -> 64 -> 64 -> 16, loss the mean
 * of the squared outputs; also 256 wide, whose 257 KiB chunks bring the side thread's
 * prefetches and write-backs in) whose parameters pack into 5 chunks of one layer each (so
 * the groups of N chunks are uneven: {0,1} {2,3} {4,pad} on 2 ranks, {0..3} {4,pad,
 * pad,pad} on 4), trained S = 6 steps by the manager with a communicator, each rank on
 * its slice of the same global batches (rows [r B/N, (r+1) B/N)), against the same MLP
 * trained by one process on the global batch with a plain optimizer (every rank trains
 * that reference itself). With equal slices the mean of the ranks' mean losses is the
 * global mean loss, so the reduce-scattered gradients are the global batch's up to the
 * order of the batch sums (a matmul over B rows becomes N partial sums over B/N rows
 * added by the collective): a relative ~1e-7 in a gradient. After 6 steps of Adam
 * (lr 1e-2) or SGD with momentum the parameters (magnitude <= ~1) agree within TOL =
 * 2e-5 absolute (observed on 2 and 4 ranks: Adam <= 6e-7, SGD <= 1e-8; Adam's
 * m / sqrt(v) magnifies the last-bit difference of a gradient near zero, hence the
 * margin, and the wide model trains with SGD), and the mean of the ranks' losses
 * matches the global loss within TOL. Across ranks the parameters must be
 * bit-identical: every chunk comes from its owner in the all-gather.
 *
 * Also: each rank holds only its chunks' optimizer state (the manager's stats and the
 * memory manager's optimizer-state bytes: about 1/N of the unsharded state, summing to
 * it over the ranks); the result does not depend on policy or budget (AUTO unlimited,
 * AUTO under a device budget with evictions, NAIVE under the budget, STATIC with
 * fixed shares on the device: bit-identical); the others' chunks have no optimizer here;
 * ranks whose chunk layouts differ all get EMBER_ERR_SHAPE; a one-rank communicator
 * changes nothing (bit-identical to no communicator).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "graph_util.h"
#include "mpi_world.h"
#include "ember/offload.h"
#include "ember/parallel.h"

#define IN 32
#define BG 16 /* global batch, divisible by 1, 2 and 4 */
#define STEPS 6
#define TOL 2e-5
#define NLAYERS 5
/* one hidden layer (weight and bias) per chunk, 5 chunks: 64 wide, 16 KiB chunks, or
   256 wide, 257 KiB chunks (large enough for the side thread's prefetches) */
#define LAYER_CHUNK(width) ((width) * (width) + (width))

static int R, N;

/* deterministic data: feature j of global sample i at step s */
static float feat(int s, int i, int j) { return graph_test_feature(s, i, j); }

typedef struct model {
    ember_memory *mm;
    ember_graph *g;
    ember_node *x, *loss;
    ember_optimizer *opt; /* the reference's */
    ember_offload *off;
    int batch;
} model;

static ember_optimizer_config optim_config(ember_optim_kind kind) {
    ember_optimizer_config c = ember_optimizer_defaults(kind);
    if (kind == EMBER_OPTIM_SGD) c.lr = 0.05, c.momentum = 0.9;
    else c.lr = 1e-2;
    return c;
}

/* seed: of the initial parameters (ZeRO broadcasts rank 0's, so any seed works) */
static void model_build(model *m, int batch, uint64_t seed, int64_t width) {
    const int64_t dims[NLAYERS + 1] = {IN, width, width, width, width, 16};
    memset(m, 0, sizeof *m);
    m->batch = batch;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU}, &m->mm));
    CHECK_OK(ember_graph_create(&(ember_graph_params){.mm = m->mm, .tier = EMBER_TIER_DEVICE, .seed = 3}, &m->g));
    CHECK_OK(ember_graph_input(m->g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){batch, IN}, &m->x));
    ember_rng rng = {.seed = seed};
    ember_node *h = NULL, *sq = NULL;
    CHECK_OK(ember_mlp(m->g, m->x,
                       &(ember_mlp_params){.dims = dims, .nlayers = NLAYERS, .act = EMBER_ACT_RELU, .name = "mlp",
                                           .rng = &rng},
                       &h));
    CHECK_OK(ember_op_mul(m->g, h, h, &sq));
    CHECK_OK(ember_op_mean(m->g, sq, 0, &m->loss));
    CHECK_OK(ember_graph_build_backward(m->g, m->loss));
}

static void model_free(model *m) {
    ember_offload_destroy(m->off);
    ember_optimizer_destroy(m->opt);
    ember_graph_destroy(m->g);
    ember_memory_destroy(m->mm);
    memset(m, 0, sizeof *m);
}

/* rows [first, first + batch) of step s's global batch into the input */
static void model_feed(model *m, int s, int first) {
    ember_tensor *xt = NULL;
    CHECK_OK(ember_node_value(m->x, &xt));
    if (!xt) return;
    float *x = ember_tensor_data(xt);
    for (int i = 0; i < m->batch; i++)
        for (int j = 0; j < IN; j++) x[i * IN + j] = feat(s, first + i, j);
}

static float model_loss(model *m) {
    ember_tensor *t = NULL;
    if (ember_node_value(m->loss, &t) != EMBER_OK || !t) return NAN;
    return *(float *)ember_tensor_data(t);
}

/* The reference: one process, the global batch, a plain optimizer. */
typedef struct reference {
    float loss[STEPS];
    float *params;
    size_t n;
} reference;

static void train_reference(reference *ref, ember_optim_kind kind, int64_t width) {
    model m;
    model_build(&m, BG, 7, width);
    ember_optimizer_config oc = optim_config(kind);
    CHECK_OK(ember_graph_optimizer_create(m.g, &oc, &m.opt));
    for (int s = 0; s < STEPS && m.opt; s++) {
        model_feed(&m, s, 0);
        CHECK_OK(ember_graph_run(m.g));
        CHECK_OK(ember_optimizer_step(m.opt));
        ref->loss[s] = model_loss(&m);
    }
    ref->params = graph_params_snapshot(m.g, &ref->n);
    model_free(&m);
}

typedef struct variant {
    const char *name;
    ember_optim_kind kind;
    ember_offload_policy policy;
    int budgeted;         /* device budget: the non-model peak plus 5 chunks */
    double param_host, state_host; /* STATIC */
    int64_t width;
} variant;

typedef struct outcome {
    float *params;
    size_t n;
    ember_offload_stats st;
} outcome;

/* Max |a - b| over n floats. */
static double max_diff(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* The same bits on every rank: gather everyone's copy. */
static int same_on_all_ranks(ember_comm *w, const float *v, size_t n) {
    float *all = malloc(n * (size_t)N * sizeof *all + 1);
    int same = all != NULL;
    CHECK_OK(ember_comm_all_gather(w, v, all, (int64_t)n, EMBER_DTYPE_F32, NULL));
    for (int r = 0; same && r < N; r++) same &= memcmp(all + (size_t)r * n, v, n * 4) == 0;
    free(all);
    return same;
}

/* non_model_peak: of an earlier unlimited run on this many ranks (for the budget). */
static void run_variant(ember_comm *w, const variant *v, const reference *ref, size_t non_model_peak, outcome *out) {
    const int bl = BG / N;
    model m;
    model_build(&m, bl, R == 0 ? 7 : 100 + (uint64_t)R, v->width); /* rank 0's init (the reference's) wins */
    ember_optimizer_config oc = optim_config(v->kind);
    size_t chunk_bytes = (size_t)LAYER_CHUNK(v->width) * 4;
    size_t budget = v->budgeted ? non_model_peak + 5 * chunk_bytes : 0;
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .policy = v->policy,
                                                          .chunk_elems = LAYER_CHUNK(v->width), .device_budget = budget,
                                                          .param_host_fraction = v->param_host,
                                                          .state_host_fraction = v->state_host, .comm = w,
                                                          .sync = -1 /* the side thread, on a CPU too */},
                                  &m.off));
    if (!m.off) {
        model_free(&m);
        return;
    }
    double worst_loss = 0.0;
    for (int s = 0; s < STEPS; s++) {
        model_feed(&m, s, R * bl);
        CHECK_OK(ember_offload_step(m.off));
        /* the mean of the local losses is the global loss */
        float l = model_loss(&m), lm = 0.0f;
        CHECK_OK(ember_comm_all_reduce(w, &l, &lm, 1, EMBER_DTYPE_F32, EMBER_REDUCE_MEAN, NULL));
        double dl = fabs((double)lm - (double)ref->loss[s]);
        if (!(dl <= worst_loss)) worst_loss = dl;
    }
    CHECK(worst_loss <= TOL);
    ember_offload_stats st;
    CHECK_OK(ember_offload_get_stats(m.off, &st));
    out->st = st;
    CHECK_EQ_INT(st.iterations, STEPS);
    CHECK_EQ_INT(st.zero_ranks, N);
    CHECK_EQ_INT(st.nchunks, 5);
    ember_memory_stats ms;
    ember_memory_get_stats(m.mm, &ms);
    if (budget) {
        CHECK(ms.peak_total[EMBER_TIER_DEVICE] <= budget);
        if (v->policy == EMBER_OFFLOAD_AUTO) CHECK(st.evictions > 0);
    }

    /* the state: this rank's chunks (c mod N == rank) only, about 1/N of the whole */
    int owned = 0;
    for (int c = 0; c < st.nchunks; c++) owned += c % N == R;
    CHECK_EQ_INT(st.owned_chunks, owned);
    size_t whole = (size_t)st.nchunks * st.chunk_bytes[EMBER_CHUNK_STATE];
    CHECK_EQ_INT(st.optim_state_bytes, (size_t)owned * st.chunk_bytes[EMBER_CHUNK_STATE]);
    CHECK(st.optim_state_bytes <= whole / (size_t)N + st.chunk_bytes[EMBER_CHUNK_STATE]);
    int64_t mine = (int64_t)st.optim_state_bytes, sum = 0;
    CHECK_OK(ember_comm_all_reduce(w, &mine, &sum, 1, EMBER_DTYPE_I64, EMBER_REDUCE_SUM, NULL));
    CHECK_EQ_INT(sum, whole);
    /* what the memory manager holds: the host copies of those chunks, nothing more */
    CHECK_EQ_INT(ms.live[EMBER_TIER_HOST][EMBER_MEM_OPTIMIZER_STATE], st.optim_state_bytes);
    CHECK(ms.peak[EMBER_TIER_DEVICE][EMBER_MEM_OPTIMIZER_STATE] <= st.optim_state_bytes);
    CHECK(ms.peak[EMBER_TIER_HOST][EMBER_MEM_OPTIMIZER_STATE] <= st.optim_state_bytes + st.chunk_bytes[EMBER_CHUNK_STATE]);

    /* another rank's chunk has no optimizer (or state) here */
    ember_optimizer *o = NULL;
    for (int c = 0; c < st.nchunks; c++) {
        CHECK_STATUS(ember_offload_get_optimizer(m.off, c, &o), c % N == R ? EMBER_OK : EMBER_ERR_NOT_FOUND);
        if (c % N != R) CHECK(strstr(ember_last_error(), "belongs to rank") != NULL);
    }
    if (N > 1) {
        ember_tensor_state ts;
        const char *theirs = R == 0 ? "mlp.1.weight" : "mlp.0.weight"; /* chunks 1 and 0 */
        CHECK_STATUS(ember_offload_tensor_state(m.off, theirs, EMBER_CHUNK_STATE, &ts), EMBER_ERR_NOT_FOUND);
        CHECK_OK(ember_offload_tensor_state(m.off, theirs, EMBER_CHUNK_PARAM, &ts));
        CHECK_EQ_INT(ts, EMBER_TENSOR_STATE_HOLD);
        CHECK_OK(ember_offload_tensor_state(m.off, theirs, EMBER_CHUNK_GRAD, &ts));
        CHECK_EQ_INT(ts, EMBER_TENSOR_STATE_FREE);
    }

    out->params = graph_params_snapshot(m.g, &out->n);
    CHECK(out->n == ref->n);
    double worst = out->params && out->n == ref->n ? max_diff(out->params, ref->params, out->n) : 1e30;
    if (!(worst <= TOL)) fprintf(stderr, "rank %d of %d: %s: max |zero - reference| = %.3g > %.3g\n", R, N, v->name, worst, TOL);
    CHECK(worst <= TOL);
    int same = out->params && same_on_all_ranks(w, out->params, out->n);
    if (!same) fprintf(stderr, "rank %d: %s: parameters differ across ranks\n", R, v->name);
    CHECK(same);
    if (R == 0)
        printf("offload zero %-24s ranks %d: state %zu of %zu B here, evictions %llu: max |param diff| %.3g, "
               "|loss diff| %.3g\n",
               v->name, N, st.optim_state_bytes, whole, (unsigned long long)st.evictions, worst, worst_loss);
    /* destroy gives the parameters their own memory back, values unchanged */
    ember_offload_destroy(m.off);
    m.off = NULL;
    size_t n2;
    float *after = graph_params_snapshot(m.g, &n2);
    CHECK(after && n2 == out->n && out->params && memcmp(after, out->params, n2 * 4) == 0);
    free(after);
    model_free(&m);
}

/* Ranks whose chunk layouts differ: every rank refuses, none hangs; bad arguments. */
static void test_mismatch(ember_comm *w) {
    model m;
    model_build(&m, BG / N, 7, 64);
    ember_optimizer_config oc = optim_config(EMBER_OPTIM_ADAM);
    ember_offload *off = NULL;
    if (N > 1) {
        int64_t ce = R == N - 1 ? 2 * LAYER_CHUNK(64) : LAYER_CHUNK(64);
        CHECK_STATUS(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .chunk_elems = ce, .comm = w},
                                          &off),
                     EMBER_ERR_SHAPE);
        CHECK(strstr(ember_last_error(), "chunk layouts differ") != NULL);
        CHECK(off == NULL);
        CHECK(!ember_comm_is_broken(w));
        /* a communicator shards the optimizer step: without one it is refused */
        CHECK_STATUS(ember_offload_create(&(ember_offload_config){.graph = m.g, .comm = w}, &off),
                     EMBER_ERR_INVALID_ARGUMENT);
        CHECK(strstr(ember_last_error(), "optim is NULL") != NULL);
    }
    /* the graph is whole again: a plain run works */
    model_feed(&m, 0, R * (BG / N));
    CHECK_OK(ember_graph_run(m.g));
    model_free(&m);
}

/* A one-rank communicator changes nothing: the bits of a manager without one. */
static void test_self(void) {
    ember_comm *self = NULL;
    CHECK_OK(ember_comm_create_self(NULL, &self));
    model a, b;
    model_build(&a, BG, 7, 64);
    model_build(&b, BG, 7, 64);
    ember_optimizer_config oc = optim_config(EMBER_OPTIM_ADAM);
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = a.g, .optim = &oc, .chunk_elems = LAYER_CHUNK(64),
                                                          .comm = self},
                                  &a.off));
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = b.g, .optim = &oc, .chunk_elems = LAYER_CHUNK(64)},
                                  &b.off));
    for (int s = 0; s < 3 && a.off && b.off; s++) {
        model_feed(&a, s, 0);
        model_feed(&b, s, 0);
        CHECK_OK(ember_offload_step(a.off));
        CHECK_OK(ember_offload_step(b.off));
    }
    ember_offload_stats sa = {0}, sb = {0};
    if (a.off) CHECK_OK(ember_offload_get_stats(a.off, &sa));
    if (b.off) CHECK_OK(ember_offload_get_stats(b.off, &sb));
    CHECK_EQ_INT(sa.zero_ranks, 1);
    CHECK_EQ_INT(sa.owned_chunks, sa.nchunks);
    CHECK_EQ_INT(sa.optim_state_bytes, sb.optim_state_bytes);
    CHECK_EQ_INT(sa.model_bytes, sb.model_bytes);
    size_t na, nb;
    float *pa = graph_params_snapshot(a.g, &na), *pb = graph_params_snapshot(b.g, &nb);
    CHECK(pa && pb && na == nb && memcmp(pa, pb, na * 4) == 0);
    free(pa);
    free(pb);
    model_free(&a);
    model_free(&b);
    ember_comm_destroy(self);
}

int main(void) {
    ember_comm *w = mpi_world(&R, &N);
    if (!w) return 1;
    if (mpi_skip(w, R, BG % N != 0, "global batch %d is not divisible by %d ranks", BG, N)) return 77;
    reference adam = {0}, sgd = {0}, wide = {0};
    train_reference(&adam, EMBER_OPTIM_ADAM, 64);
    train_reference(&sgd, EMBER_OPTIM_SGD, 64);
    train_reference(&wide, EMBER_OPTIM_SGD, 256);
    CHECK(adam.loss[STEPS - 1] < adam.loss[0]); /* it learns */

    outcome un = {0}, au = {0}, nv = {0}, sa = {0}, sg = {0}, wu = {0}, wa = {0};
    run_variant(w, &(variant){"auto unlimited, adam", EMBER_OPTIM_ADAM, EMBER_OFFLOAD_AUTO, 0, 0, 0, 64}, &adam, 0, &un);
    CHECK_EQ_INT(un.st.state_chunks_on_device, un.st.owned_chunks); /* all resident after the warm-up */
    run_variant(w, &(variant){"auto budget, adam", EMBER_OPTIM_ADAM, EMBER_OFFLOAD_AUTO, 1, 0, 0, 64}, &adam,
                un.st.non_model_peak, &au);
    run_variant(w, &(variant){"naive budget, adam", EMBER_OPTIM_ADAM, EMBER_OFFLOAD_NAIVE, 1, 0, 0, 64}, &adam,
                un.st.non_model_peak, &nv);
    run_variant(w, &(variant){"static, adam", EMBER_OPTIM_ADAM, EMBER_OFFLOAD_STATIC, 0, 0.4, 0.5, 64}, &adam, 0, &sa);
    run_variant(w, &(variant){"auto budget, sgd", EMBER_OPTIM_SGD, EMBER_OFFLOAD_AUTO, 1, 0, 0, 64}, &sgd,
                un.st.non_model_peak, &sg);
    /* 257 KiB chunks: the side thread prefetches and writes back around the collectives */
    run_variant(w, &(variant){"wide auto unlimited, sgd", EMBER_OPTIM_SGD, EMBER_OFFLOAD_AUTO, 0, 0, 0, 256}, &wide,
                0, &wu);
    run_variant(w, &(variant){"wide auto budget, sgd", EMBER_OPTIM_SGD, EMBER_OFFLOAD_AUTO, 1, 0, 0, 256}, &wide,
                wu.st.non_model_peak, &wa);
    CHECK(wa.st.prefetches > 0);
    CHECK(wu.params && wa.params && wu.n == wa.n && memcmp(wu.params, wa.params, wu.n * 4) == 0);
    /* policy and budget change nothing: the same collectives over the same bits */
    const outcome *same[] = {&au, &nv, &sa};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        CHECK(un.params && same[i]->params && un.n == same[i]->n && memcmp(un.params, same[i]->params, un.n * 4) == 0);
    CHECK_EQ_INT(au.st.state_chunks_on_device, 0); /* under the budget the state stays on the host */
    test_mismatch(w);
    test_self();
    outcome *all[] = {&un, &au, &nv, &sa, &sg, &wu, &wa};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->params);
    free(adam.params);
    free(sgd.params);
    free(wide.params);
    ember_comm_destroy(w);
    return check_summary();
}
