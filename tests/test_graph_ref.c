/*
 * The graph engine against PyTorch: every op's output and input gradients
 * (tests/ref/graph_ops.bin), and a 3-layer MLP's loss and gradients, then five Adam
 * steps (losses and final weights) (tests/ref/graph_mlp.bin), both written by
 * tests/ref/gen_graph.py.
 *
 * Tolerance: |ember - torch| <= 1e-4 * |torch| + 2e-5. Both compute in f32 but sum in
 * different orders (OpenBLAS vs torch's GEMM, double accumulators in ember's row
 * reductions); with inner sizes below 100 and values of order 1 the differences are a
 * few f32 ulps of the larger partial sums, well inside this bound.
 */
#include "check.h"
#include "engine/internal.h"
#include "fixture.h"

static fixture fx;

static void compare(const char *what, const ember_tensor *t, const fixture_tensor *ref) {
    if (!ref) {
        CHECK(ref != NULL);
        return;
    }
    CHECK_EQ_INT(ember_tensor_numel(t), ref->numel);
    const float *a = ember_tensor_data(t), *b = ref->data;
    int64_t bad = -1;
    for (int64_t i = 0; i < ref->numel && bad < 0; i++)
        if (!(fabs(a[i] - b[i]) <= 1e-4 * fabs(b[i]) + 2e-5)) bad = i;
    if (bad >= 0) fprintf(stderr, "%s: index %lld: ember %.8g torch %.8g\n", what, (long long)bad, a[bad], b[bad]);
    CHECK(bad < 0);
}

/* A leaf holding the fixture tensor; float inputs become parameters (to get gradients). */
static ember_node *leaf_from(ember_graph *g, const char *name) {
    const fixture_tensor *r = fixture_get(&fx, name);
    if (!r) return NULL;
    ember_node *n = NULL;
    if (r->dtype == EMBER_DTYPE_F32)
        CHECK_OK(ember_graph_param(g, name, r->dtype, r->ndim, r->shape, &n));
    else
        CHECK_OK(ember_graph_input(g, name, r->dtype, r->ndim, r->shape, &n));
    ember_tensor *t;
    CHECK_OK(ember_node_value(n, &t));
    memcpy(ember_tensor_data(t), r->data, ember_tensor_nbytes(t));
    return n;
}

typedef ember_status (*build_fn)(ember_graph *g, ember_node **in, ember_node **out);

static ember_status f_matmul(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_matmul(g, in[0], in[1], 0, 0, o); }
static ember_status f_matmul_tn(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_matmul(g, in[0], in[1], 1, 0, o); }
static ember_status f_matmul_nt(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_matmul(g, in[0], in[1], 0, 1, o); }
static ember_status f_add(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_add(g, in[0], in[1], o); }
static ember_status f_mul(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_mul(g, in[0], in[1], o); }
static ember_status f_relu(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_relu(g, in[0], o); }
static ember_status f_sigmoid(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_sigmoid(g, in[0], o); }
static ember_status f_tanh(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_tanh(g, in[0], o); }
static ember_status f_gelu(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_gelu(g, in[0], o); }
static ember_status f_layernorm(ember_graph *g, ember_node **in, ember_node **o) {
    return ember_op_layernorm(g, in[0], in[1], in[2], 1e-5f, o);
}
static ember_status f_softmax(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_softmax(g, in[0], o); }
static ember_status f_log_softmax(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_log_softmax(g, in[0], o); }
static ember_status f_attention(ember_graph *g, ember_node **in, ember_node **o) {
    return ember_op_causal_attention(g, in[0], in[1], in[2], o);
}
static ember_status f_concat(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_concat(g, in, 2, 1, o); }
static ember_status f_slice(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_slice(g, in[0], 1, 1, 3, o); }
static ember_status f_permute(ember_graph *g, ember_node **in, ember_node **o) {
    return ember_op_permute(g, in[0], (int[]){2, 0, 1}, o);
}
static ember_status f_gather(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_gather_rows(g, in[0], in[1], o); }
static ember_status f_interaction(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_interaction(g, in[0], o); }
static ember_status f_interaction_self(ember_graph *g, ember_node **in, ember_node **o) {
    return ember_op_interaction_self(g, in[0], o);
}
static ember_status f_cross(ember_graph *g, ember_node **in, ember_node **o) {
    return ember_op_cross(g, in[0], in[0], in[1], in[2], o);
}
static ember_status f_sum(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_sum(g, in[0], 0, o); }
static ember_status f_mean_last(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_mean(g, in[0], 1, o); }
static ember_status f_bce(ember_graph *g, ember_node **in, ember_node **o) { return ember_op_bce_with_logits(g, in[0], in[1], o); }
static ember_status f_ce(ember_graph *g, ember_node **in, ember_node **o) {
    return ember_op_softmax_cross_entropy(g, in[0], in[1], o);
}

static const struct {
    const char *name;
    int nin;
    build_fn build;
    int no_grad_mask; /* inputs torch holds fixed (labels) */
} cases[] = {
    {"matmul", 2, f_matmul, 0},       {"matmul_tn", 2, f_matmul_tn, 0},
    {"matmul_nt", 2, f_matmul_nt, 0}, {"matmul_batched_shared", 2, f_matmul, 0},
    {"add_bias", 2, f_add, 0},        {"mul", 2, f_mul, 0},
    {"relu", 1, f_relu, 0},           {"sigmoid", 1, f_sigmoid, 0},
    {"tanh", 1, f_tanh, 0},           {"gelu", 1, f_gelu, 0},
    {"layernorm", 3, f_layernorm, 0}, {"softmax", 1, f_softmax, 0},
    {"log_softmax", 1, f_log_softmax, 0}, {"attention", 3, f_attention, 0},
    {"concat", 2, f_concat, 0},       {"slice", 1, f_slice, 0},
    {"permute", 1, f_permute, 0},     {"gather_rows", 2, f_gather, 0},
    {"interaction", 1, f_interaction, 0}, {"cross", 3, f_cross, 0},
    {"sum", 1, f_sum, 0},             {"mean_last", 1, f_mean_last, 0},
    {"bce", 2, f_bce, 2},             {"cross_entropy", 2, f_ce, 0},
    {"interaction_self", 1, f_interaction_self, 0},
};

static void run_case(int c) {
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(NULL, &g));
    ember_node *in[4] = {0}, *out = NULL, *loss = NULL, *m;
    char name[160];
    for (int i = 0; i < cases[c].nin; i++) {
        snprintf(name, sizeof name, "%s/in%d", cases[c].name, i);
        in[i] = leaf_from(g, name);
    }
    CHECK_OK(cases[c].build(g, in, &out));
    snprintf(name, sizeof name, "%s/R", cases[c].name);
    ember_node *r = leaf_from(g, name);
    if (!out || !r) {
        ember_graph_destroy(g);
        return;
    }
    CHECK_OK(ember_op_mul(g, out, r, &m));
    CHECK_OK(ember_op_sum(g, m, 0, &loss));
    CHECK_OK(ember_graph_mark_output(g, out));
    CHECK_OK(ember_graph_build_backward(g, loss));
    CHECK_OK(ember_graph_run(g));
    ember_tensor *t;
    CHECK_OK(ember_node_value(out, &t));
    snprintf(name, sizeof name, "%s/out", cases[c].name);
    compare(name, t, fixture_get(&fx, name));
    for (int i = 0; i < cases[c].nin; i++) {
        if (!in[i] || ember_node_grad(in[i]) == NULL || (cases[c].no_grad_mask >> i) & 1) continue;
        CHECK_OK(ember_node_value(ember_node_grad(in[i]), &t));
        snprintf(name, sizeof name, "%s/grad%d", cases[c].name, i);
        compare(name, t, fixture_get(&fx, name));
    }
    ember_graph_destroy(g);
}

static void test_mlp(void) {
    fixture mf;
    if (!fixture_load(&mf, "ref/graph_mlp.bin")) {
        CHECK(0);
        return;
    }
    fixture keep = fx;
    fx = mf;
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(NULL, &g));
    const fixture_tensor *xr = fixture_get(&fx, "x"), *yr = fixture_get(&fx, "y");
    ember_node *x, *y, *h, *w[3], *b[3], *loss;
    CHECK_OK(ember_graph_input(g, "x", EMBER_DTYPE_F32, 2, xr->shape, &x));
    CHECK_OK(ember_graph_input(g, "y", EMBER_DTYPE_F32, 2, yr->shape, &y));
    ember_tensor *t;
    CHECK_OK(ember_node_value(x, &t));
    memcpy(ember_tensor_data(t), xr->data, ember_tensor_nbytes(t));
    CHECK_OK(ember_node_value(y, &t));
    memcpy(ember_tensor_data(t), yr->data, ember_tensor_nbytes(t));
    h = x;
    for (int l = 0; l < 3; l++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", l);
        w[l] = leaf_from(g, name);
        snprintf(name, sizeof name, "b%d", l);
        b[l] = leaf_from(g, name);
        ember_node *mm, *a;
        CHECK_OK(ember_op_matmul(g, h, w[l], 0, 0, &mm));
        CHECK_OK(ember_op_add(g, mm, b[l], &a));
        if (l < 2) CHECK_OK(ember_op_relu(g, a, &h));
        else h = a;
    }
    CHECK_OK(ember_op_bce_with_logits(g, h, y, &loss));
    CHECK_OK(ember_graph_build_backward(g, loss));
    CHECK_OK(ember_graph_run(g));
    CHECK_OK(ember_node_value(loss, &t));
    compare("mlp loss0", t, fixture_get(&fx, "loss0"));
    for (int l = 0; l < 3; l++) {
        char name[16];
        snprintf(name, sizeof name, "grad_w%d", l);
        CHECK_OK(ember_node_value(ember_node_grad(w[l]), &t));
        compare(name, t, fixture_get(&fx, name));
        snprintf(name, sizeof name, "grad_b%d", l);
        CHECK_OK(ember_node_value(ember_node_grad(b[l]), &t));
        compare(name, t, fixture_get(&fx, name));
    }
    /* five Adam steps, as torch.optim.Adam(lr=1e-2) took them */
    ember_optimizer *opt = NULL;
    ember_optimizer_config cfg = ember_optimizer_defaults(EMBER_OPTIM_ADAM);
    cfg.lr = 1e-2;
    CHECK_OK(ember_graph_optimizer_create(g, &cfg, &opt));
    for (int s = 0; s < 5 && opt; s++) {
        if (s > 0) {
            CHECK_OK(ember_graph_run(g));
            char name[16];
            snprintf(name, sizeof name, "loss%d", s);
            CHECK_OK(ember_node_value(loss, &t));
            compare(name, t, fixture_get(&fx, name));
        }
        CHECK_OK(ember_optimizer_step(opt));
    }
    for (int l = 0; l < 3; l++) {
        char name[16];
        snprintf(name, sizeof name, "final_w%d", l);
        CHECK_OK(ember_node_value(w[l], &t));
        compare(name, t, fixture_get(&fx, name));
        snprintf(name, sizeof name, "final_b%d", l);
        CHECK_OK(ember_node_value(b[l], &t));
        compare(name, t, fixture_get(&fx, name));
    }
    ember_optimizer_destroy(opt);
    ember_graph_destroy(g);
    fixture_free(&fx);
    fx = keep;
}

int main(void) {
    if (!fixture_load(&fx, "ref/graph_ops.bin")) {
        CHECK(0);
        return check_summary();
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_case((int)c);
    test_mlp();
    fixture_free(&fx);
    return check_summary();
}
