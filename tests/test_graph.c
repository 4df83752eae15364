/*
 * The graph engine: a finite-difference gradient check of every registered op (the
 * test fails when an op has no case), checkpointing, meta mode and the planner, and
 * bad inputs.
 *
 * Gradient check: loss = sum(op(params) * R) for a fixed random R, central
 * differences with h = 1e-2 in f32 against the analytic gradient. Tolerance: 2e-2
 * relative plus 2e-3 absolute: the truncation error is O(h^2) = 1e-4 relative, and f32
 * rounding of the loss contributes about eps * |loss| / h = 1e-5 * |loss|.
 */
#include "check.h"
#include "engine/graph_internal.h"
#include "engine/internal.h"

typedef struct gc_case {
    const char *name;
    const char *ops[4]; /* ops this case covers */
    /* Build the op under test over float leaves that need gradients; return its output. */
    ember_status (*build)(ember_graph *g, ember_node **out);
} gc_case;

static ember_rng rng_fill = {.seed = 77};

static ember_node *leaf(ember_graph *g, const char *name, int ndim, const int64_t *shape, int grad) {
    ember_node *n = NULL;
    if (grad) CHECK_OK(ember_graph_param(g, name, EMBER_DTYPE_F32, ndim, shape, &n));
    else CHECK_OK(ember_graph_input(g, name, EMBER_DTYPE_F32, ndim, shape, &n));
    ember_tensor *t;
    CHECK_OK(ember_node_value(n, &t));
    CHECK_OK(ember_rng_uniform(&rng_fill, t, -1.0f, 1.0f));
    return n;
}

/* Values kept away from 0 (relu's kink) and from each other's neighbourhoods. */
static ember_node *leaf_away(ember_graph *g, const char *name, int ndim, const int64_t *shape) {
    ember_node *n = leaf(g, name, ndim, shape, 1);
    ember_tensor *t;
    CHECK_OK(ember_node_value(n, &t));
    float *d = ember_tensor_data(t);
    for (int64_t i = 0; i < ember_tensor_numel(t); i++) d[i] = (d[i] >= 0 ? 0.1f : -0.1f) + d[i];
    return n;
}

static ember_node *index_input(ember_graph *g, int64_t n, int64_t hi, ember_dtype dt) {
    ember_node *x = NULL;
    CHECK_OK(ember_graph_input(g, "idx", dt, 1, (int64_t[]){n}, &x));
    ember_tensor *t;
    CHECK_OK(ember_node_value(x, &t));
    for (int64_t i = 0; i < n; i++) {
        int64_t v = (i * 7 + 3) % hi; /* repeats included */
        if (dt == EMBER_DTYPE_I32) ((int32_t *)ember_tensor_data(t))[i] = (int32_t)v;
        else ((int64_t *)ember_tensor_data(t))[i] = v;
    }
    return x;
}

#define S(...) ((int64_t[]){__VA_ARGS__})

static ember_status b_matmul_nn(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 2, S(3, 4), 1), leaf(g, "b", 2, S(4, 5), 1), 0, 0, o);
}
static ember_status b_matmul_tn(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 2, S(4, 3), 1), leaf(g, "b", 2, S(4, 5), 1), 1, 0, o);
}
static ember_status b_matmul_nt(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 2, S(3, 4), 1), leaf(g, "b", 2, S(5, 4), 1), 0, 1, o);
}
static ember_status b_matmul_tt(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 2, S(4, 3), 1), leaf(g, "b", 2, S(5, 4), 1), 1, 1, o);
}
static ember_status b_matmul_batched_shared(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 3, S(2, 3, 4), 1), leaf(g, "w", 2, S(4, 5), 1), 0, 0, o);
}
static ember_status b_matmul_batched_shared_t(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 3, S(2, 3, 4), 1), leaf(g, "w", 2, S(5, 4), 1), 0, 1, o);
}
static ember_status b_matmul_shared_batched(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 2, S(3, 4), 1), leaf(g, "b", 3, S(2, 4, 5), 1), 0, 0, o);
}
static ember_status b_matmul_batched(ember_graph *g, ember_node **o) {
    return ember_op_matmul(g, leaf(g, "a", 3, S(2, 4, 3), 1), leaf(g, "b", 3, S(2, 5, 4), 1), 1, 1, o);
}
static ember_status b_add(ember_graph *g, ember_node **o) {
    return ember_op_add(g, leaf(g, "a", 2, S(3, 4), 1), leaf(g, "b", 2, S(3, 4), 1), o);
}
static ember_status b_add_bias(ember_graph *g, ember_node **o) {
    return ember_op_add(g, leaf(g, "a", 3, S(2, 3, 4), 1), leaf(g, "bias", 1, S(4), 1), o);
}
static ember_status b_add_scalar(ember_graph *g, ember_node **o) {
    return ember_op_add(g, leaf(g, "a", 2, S(3, 4), 1), leaf(g, "s", 0, NULL, 1), o);
}
static ember_status b_mul(ember_graph *g, ember_node **o) {
    return ember_op_mul(g, leaf(g, "a", 2, S(3, 4), 1), leaf(g, "b", 1, S(4), 1), o);
}
static ember_status b_scale(ember_graph *g, ember_node **o) { return ember_op_scale(g, leaf(g, "a", 1, S(6), 1), -2.5f, o); }
static ember_status b_relu(ember_graph *g, ember_node **o) { return ember_op_relu(g, leaf_away(g, "a", 2, S(3, 5)), o); }
static ember_status b_sigmoid(ember_graph *g, ember_node **o) { return ember_op_sigmoid(g, leaf(g, "a", 2, S(3, 5), 1), o); }
static ember_status b_tanh(ember_graph *g, ember_node **o) { return ember_op_tanh(g, leaf(g, "a", 2, S(3, 5), 1), o); }
static ember_status b_gelu(ember_graph *g, ember_node **o) { return ember_op_gelu(g, leaf(g, "a", 2, S(3, 5), 1), o); }
static ember_status b_layernorm(ember_graph *g, ember_node **o) {
    return ember_op_layernorm(g, leaf(g, "x", 2, S(3, 6), 1), leaf(g, "gamma", 1, S(6), 1), leaf(g, "beta", 1, S(6), 1),
                              1e-5f, o);
}
static ember_status b_softmax(ember_graph *g, ember_node **o) { return ember_op_softmax(g, leaf(g, "x", 2, S(3, 5), 1), o); }
static ember_status b_log_softmax(ember_graph *g, ember_node **o) {
    return ember_op_log_softmax(g, leaf(g, "x", 2, S(3, 5), 1), o);
}
static ember_status b_attention(ember_graph *g, ember_node **o) {
    return ember_op_causal_attention(g, leaf(g, "q", 3, S(2, 4, 3), 1), leaf(g, "k", 3, S(2, 4, 3), 1),
                                     leaf(g, "v", 3, S(2, 4, 3), 1), o);
}
static ember_status b_concat(ember_graph *g, ember_node **o) {
    ember_node *xs[3] = {leaf(g, "a", 2, S(2, 3), 1), leaf(g, "b", 2, S(2, 1), 1), leaf(g, "c", 2, S(2, 2), 1)};
    return ember_op_concat(g, xs, 3, 1, o);
}
static ember_status b_slice(ember_graph *g, ember_node **o) { return ember_op_slice(g, leaf(g, "a", 3, S(2, 5, 3), 1), 1, 1, 3, o); }
static ember_status b_reshape(ember_graph *g, ember_node **o) {
    ember_node *a = leaf(g, "a", 2, S(3, 4), 1), *r, *s;
    EMBER_TRY(ember_op_reshape(g, a, 3, S(2, -1, 2), &r));
    EMBER_TRY(ember_op_sigmoid(g, r, &s)); /* sigmoid may take over r, which dies here */
    return ember_op_reshape(g, s, 1, S(12), o);
}
static ember_status b_permute(ember_graph *g, ember_node **o) {
    return ember_op_permute(g, leaf(g, "a", 3, S(2, 3, 4), 1), (int[]){2, 0, 1}, o);
}
static ember_status b_transpose(ember_graph *g, ember_node **o) { return ember_op_transpose(g, leaf(g, "a", 2, S(3, 4), 1), 0, 1, o); }
static ember_status b_gather(ember_graph *g, ember_node **o) {
    return ember_op_gather_rows(g, leaf(g, "table", 2, S(5, 3), 1), index_input(g, 7, 5, EMBER_DTYPE_I64), o);
}
static ember_status b_gather32(ember_graph *g, ember_node **o) {
    return ember_op_gather_rows(g, leaf(g, "table", 2, S(4, 2), 1), index_input(g, 6, 4, EMBER_DTYPE_I32), o);
}
static ember_status b_interaction(ember_graph *g, ember_node **o) { return ember_op_interaction(g, leaf(g, "t", 3, S(2, 4, 3), 1), o); }
static ember_status b_interaction_self(ember_graph *g, ember_node **o) {
    return ember_op_interaction_self(g, leaf(g, "t", 3, S(2, 4, 3), 1), o);
}
static ember_status b_dot_interaction(ember_graph *g, ember_node **o) {
    return ember_op_dot_interaction(g, leaf(g, "z", 2, S(2, 3), 1), leaf(g, "e", 2, S(2, 9), 1), 0, o);
}
static ember_status b_dot_interaction_self(ember_graph *g, ember_node **o) {
    return ember_op_dot_interaction(g, leaf(g, "z", 2, S(2, 3), 1), leaf(g, "e", 2, S(2, 6), 1), 1, o);
}
static ember_status b_cross(ember_graph *g, ember_node **o) {
    ember_node *x0 = leaf(g, "x0", 2, S(3, 4), 1);
    return ember_op_cross(g, x0, x0, leaf(g, "w", 2, S(4, 4), 1), leaf(g, "b", 1, S(4), 1), o);
}
static ember_status b_dropout(ember_graph *g, ember_node **o) { return ember_op_dropout(g, leaf(g, "a", 2, S(4, 6), 1), 0.4f, o); }
static ember_status b_sum_all(ember_graph *g, ember_node **o) { return ember_op_sum(g, leaf(g, "a", 2, S(3, 4), 1), 0, o); }
static ember_status b_sum_last(ember_graph *g, ember_node **o) { return ember_op_sum(g, leaf(g, "a", 3, S(2, 3, 4), 1), 1, o); }
static ember_status b_mean(ember_graph *g, ember_node **o) { return ember_op_mean(g, leaf(g, "a", 2, S(3, 4), 1), 1, o); }
static ember_status b_bce(ember_graph *g, ember_node **o) {
    ember_node *lb = leaf(g, "labels", 2, S(5, 1), 0);
    ember_tensor *t;
    CHECK_OK(ember_node_value(lb, &t));
    float *d = ember_tensor_data(t);
    for (int i = 0; i < 5; i++) d[i] = (float)(i % 2); /* hard labels */
    d[4] = 0.3f;                                       /* and a soft one */
    return ember_op_bce_with_logits(g, leaf(g, "logits", 2, S(5, 1), 1), lb, o);
}
static ember_status b_ce(ember_graph *g, ember_node **o) {
    return ember_op_softmax_cross_entropy(g, leaf(g, "logits", 2, S(6, 4), 1), index_input(g, 6, 4, EMBER_DTYPE_I32), o);
}
static ember_status b_reused(ember_graph *g, ember_node **o) {
    /* one value read by three consumers: gradients accumulate */
    ember_node *a = leaf(g, "a", 2, S(3, 3), 1), *m, *t;
    EMBER_TRY(ember_op_mul(g, a, a, &m));
    EMBER_TRY(ember_op_tanh(g, a, &t));
    return ember_op_add(g, m, t, o);
}

static const gc_case cases[] = {
    {"matmul", {"matmul"}, b_matmul_nn},
    {"matmul a^T", {"matmul"}, b_matmul_tn},
    {"matmul b^T", {"matmul"}, b_matmul_nt},
    {"matmul a^T b^T", {"matmul"}, b_matmul_tt},
    {"matmul batched @ shared", {"matmul", "reshape"}, b_matmul_batched_shared},
    {"matmul batched @ shared^T", {"matmul"}, b_matmul_batched_shared_t},
    {"matmul shared @ batched", {"matmul", "sum_to"}, b_matmul_shared_batched},
    {"matmul batched", {"matmul"}, b_matmul_batched},
    {"add", {"add"}, b_add},
    {"add bias", {"add", "sum_to"}, b_add_bias},
    {"add scalar", {"add"}, b_add_scalar},
    {"mul broadcast", {"mul"}, b_mul},
    {"scale", {"scale"}, b_scale},
    {"relu", {"relu", "relu_bwd"}, b_relu},
    {"sigmoid", {"sigmoid", "sigmoid_bwd"}, b_sigmoid},
    {"tanh", {"tanh", "tanh_bwd"}, b_tanh},
    {"gelu", {"gelu", "gelu_bwd"}, b_gelu},
    {"layernorm", {"layernorm", "layernorm_bwd_x", "layernorm_bwd_gamma"}, b_layernorm},
    {"softmax", {"softmax", "softmax_bwd"}, b_softmax},
    {"log_softmax", {"log_softmax", "log_softmax_bwd"}, b_log_softmax},
    {"causal attention", {"causal_mask", "softmax", "matmul", "scale"}, b_attention},
    {"concat", {"concat", "slice"}, b_concat},
    {"slice", {"slice", "pad"}, b_slice},
    {"reshape", {"reshape"}, b_reshape},
    {"permute", {"permute"}, b_permute},
    {"transpose", {"permute"}, b_transpose},
    {"gather rows i64", {"gather_rows", "scatter_rows"}, b_gather},
    {"gather rows i32", {"gather_rows", "scatter_rows"}, b_gather32},
    {"interaction", {"interaction", "interaction_bwd"}, b_interaction},
    {"interaction with the diagonal", {"interaction", "interaction_bwd"}, b_interaction_self},
    {"dot interaction over [z | e]", {"dot_interaction", "dot_interaction_bwd"}, b_dot_interaction},
    {"dot interaction over [z | e] with the diagonal", {"dot_interaction", "dot_interaction_bwd"},
     b_dot_interaction_self},
    {"dcn cross", {"matmul", "add", "mul"}, b_cross},
    {"dropout", {"dropout"}, b_dropout},
    {"sum all", {"sum", "expand"}, b_sum_all},
    {"sum last", {"sum", "expand"}, b_sum_last},
    {"mean", {"sum", "expand"}, b_mean},
    {"bce with logits", {"bce_with_logits", "bce_bwd"}, b_bce},
    {"softmax cross-entropy", {"softmax_cross_entropy", "softmax_cross_entropy_bwd"}, b_ce},
    {"reused value", {"mul", "tanh", "add"}, b_reused},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static int64_t runs_by_op[EMBER__OP_COUNT];

/* loss = sum(out * R): R random so every output element matters differently. */
static void run_case(const gc_case *c) {
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(&(ember_graph_params){.seed = 5}, &g));
    ember_node *out = NULL, *loss = NULL;
    ember_status st = c->build(g, &out);
    CHECK_OK(st);
    if (st != EMBER_OK) {
        ember_graph_destroy(g);
        return;
    }
    if (ember__node_numel(out) == 1 && out->ndim == 0) {
        loss = out;
    } else {
        ember_node *r = leaf(g, "R", out->ndim, out->shape, 0), *m;
        CHECK_OK(ember_op_mul(g, out, r, &m));
        CHECK_OK(ember_op_sum(g, m, 0, &loss));
    }
    CHECK_OK(ember_graph_build_backward(g, loss));
    ember_graph_set_step(g, 0);
    CHECK_OK(ember_graph_run(g));
    ember_tensor *lt;
    CHECK_OK(ember_node_value(loss, &lt));
    int bad = 0, checked = 0;
    for (int i = 0; i < g->n; i++) {
        ember_node *p = g->nodes[i];
        if (!(p->flags & EMBER__NODE_PARAM)) continue;
        ember_tensor *pv, *gv;
        CHECK_OK(ember_node_value(p, &pv));
        CHECK_OK(ember_node_value(ember_node_grad(p), &gv));
        float *pd = ember_tensor_data(pv);
        const float *gd = ember_tensor_data(gv);
        float *analytic = malloc((size_t)ember_tensor_numel(pv) * sizeof *analytic);
        memcpy(analytic, gd, (size_t)ember_tensor_numel(pv) * sizeof *analytic);
        for (int64_t j = 0; j < ember_tensor_numel(pv); j++) {
            const float h = 1e-2f;
            float keep = pd[j];
            double lp, lm;
            pd[j] = keep + h;
            ember_graph_set_step(g, 0); /* same dropout mask */
            CHECK_OK(ember_graph_forward(g));
            lp = ((float *)ember_tensor_data(lt))[0];
            pd[j] = keep - h;
            ember_graph_set_step(g, 0);
            CHECK_OK(ember_graph_forward(g));
            lm = ((float *)ember_tensor_data(lt))[0];
            pd[j] = keep;
            double num = (lp - lm) / (2.0 * h), an = analytic[j];
            double tol = 2e-2 * fmax(fabs(num), fabs(an)) + 2e-3;
            checked++;
            if (fabs(num - an) > tol) {
                if (bad < 3)
                    fprintf(stderr, "gradcheck %s: param %s[%lld]: analytic %.6g numeric %.6g\n", c->name, p->name,
                            (long long)j, an, num);
                bad++;
            }
        }
        free(analytic);
    }
    CHECK(checked > 0);
    CHECK_EQ_INT(bad, 0);
    for (int op = 0; op < EMBER__OP_COUNT; op++) runs_by_op[op] += g->runs[op];
    for (int k = 0; k < 4 && c->ops[k]; k++) CHECK(ember_graph_op_runs(g, c->ops[k]) > 0);
    ember_graph_destroy(g);
}

/*
 * The embedding bag's gradient is applied, not returned: with SGD at lr 1 the update
 * of a row is minus its gradient, which must match central differences of the loss
 * taken by perturbing the stored rows.
 */
static void test_embedding_bag_gradient(void) {
    ember_ebc *ebc = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){
                                  .num_tables = 2,
                                  .tables = (ember_ebc_table_config[]){{.rows = 6, .dim = 3},
                                                                       {.rows = 5, .dim = 2, .pooling = EMBER_POOLING_MEAN}},
                                  .optim = {.type = EMBER_SPARSE_OPTIM_SGD}},
                              &ebc));
    if (!ebc) return;
    ember_rng r = {.seed = 3};
    CHECK_OK(ember_ebc_init_uniform(ebc, &r, -1.0f, 1.0f));
    static const int64_t v0[] = {0, 2, 2, 5, 1, 3}, o0[] = {0, 2, 2, 5, 6}; /* an empty bag, a repeat */
    static const int64_t v1[] = {4, 0, 1, 1, 3, 2, 0}, o1[] = {0, 1, 3, 5, 7};
    ember_jagged batch = {.batch = 4, .num_features = 2,
                          .features = (ember_jagged_feature[]){{.values = v0, .offsets = o0, .length = 6},
                                                               {.values = v1, .offsets = o1, .length = 7}}};
    ember_ebc_binding bind = {.batch = &batch, .call = {.lr = 1.0f}};
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(NULL, &g));
    ember_node *eb, *w, *h, *loss, *rr, *m;
    CHECK_OK(ember_embedding_bag(g, &(ember_embedding_bag_params){.ebc = ebc, .batch = 4, .bind = &bind}, &eb));
    w = leaf(g, "w", 2, S(5, 2), 1);
    CHECK_OK(ember_op_matmul(g, eb, w, 0, 0, &h));
    rr = leaf(g, "R", 2, S(4, 2), 0);
    CHECK_OK(ember_op_mul(g, h, rr, &m));
    CHECK_OK(ember_op_sum(g, m, 0, &loss));
    CHECK_OK(ember_graph_build_backward(g, loss));
    float before[2][18], after[2][18];
    int64_t rows[2] = {6, 5}, dims[2] = {3, 2};
    for (int t = 0; t < 2; t++) CHECK_OK(ember_ebc_read_rows(ebc, t, 0, rows[t], before[t]));
    CHECK_OK(ember_graph_run(g)); /* applies w -= 1 * grad to the batch's rows */
    for (int t = 0; t < 2; t++) CHECK_OK(ember_ebc_read_rows(ebc, t, 0, rows[t], after[t]));
    ember_tensor *lt;
    CHECK_OK(ember_node_value(loss, &lt));
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        CHECK_OK(ember_ebc_write_rows(ebc, t, 0, rows[t], before[t]));
        for (int64_t j = 0; j < rows[t] * dims[t]; j++) {
            const float h_ = 1e-2f;
            float keep = before[t][j];
            double lp, lm;
            before[t][j] = keep + h_;
            CHECK_OK(ember_ebc_write_rows(ebc, t, 0, rows[t], before[t]));
            CHECK_OK(ember_graph_forward(g));
            lp = ((float *)ember_tensor_data(lt))[0];
            before[t][j] = keep - h_;
            CHECK_OK(ember_ebc_write_rows(ebc, t, 0, rows[t], before[t]));
            CHECK_OK(ember_graph_forward(g));
            lm = ((float *)ember_tensor_data(lt))[0];
            before[t][j] = keep;
            CHECK_OK(ember_ebc_write_rows(ebc, t, 0, rows[t], before[t]));
            double num = (lp - lm) / (2.0 * h_), an = (double)keep - after[t][j];
            if (fabs(num - an) > 2e-2 * fmax(fabs(num), fabs(an)) + 2e-3) {
                if (bad < 3) fprintf(stderr, "embedding_bag table %d element %lld: update %g numeric %g\n", t, (long long)j, an, num);
                bad++;
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    for (int op = 0; op < EMBER__OP_COUNT; op++) runs_by_op[op] += g->runs[op];
    CHECK(ember_graph_op_runs(g, "embedding_bag_update") == 1);
    /* no checkpointing of embedding bags: recomputing would read updated rows */
    ember_graph *g2 = NULL;
    CHECK_OK(ember_graph_create(NULL, &g2));
    CHECK_OK(ember_graph_checkpoint_begin(g2));
    CHECK_STATUS(ember_embedding_bag(g2, &(ember_embedding_bag_params){.ebc = ebc, .batch = 4, .bind = &bind}, &eb),
                 EMBER_ERR_STATE);
    ember_graph_destroy(g2);
    ember_graph_destroy(g);
    ember_ebc_destroy(ebc);
}

static void test_gradcheck_covers_registry(void) {
    for (int i = 0; i < NCASES; i++) run_case(&cases[i]);
    test_embedding_bag_gradient();
    const char *const *names = ember_graph_op_names();
    for (int op = 0; names[op]; op++) {
        if (strcmp(names[op], "input") == 0 || strcmp(names[op], "param") == 0) continue;
        int covered = strcmp(names[op], "embedding_bag") == 0; /* test_embedding_bag_gradient */
        for (int i = 0; i < NCASES; i++)
            for (int k = 0; k < 4 && cases[i].ops[k]; k++)
                if (strcmp(cases[i].ops[k], names[op]) == 0) covered = 1;
        /* every differentiable op has a case; every grad-only op ran inside one */
        if (!ember_graph_op_is_grad_only(names[op]) && !covered)
            fprintf(stderr, "op %s has no gradient-check case\n", names[op]);
        if (ember_graph_op_is_grad_only(names[op]) && runs_by_op[op] == 0)
            fprintf(stderr, "grad-only op %s never ran in a gradient check\n", names[op]);
        CHECK(ember_graph_op_is_grad_only(names[op]) ? runs_by_op[op] > 0 : covered);
    }
}

/* ---- checkpointing, meta mode, the planner ---- */

/* An 8-layer MLP over (B, D); with ckpt, layers (1, 2), (3, 4), (5, 6) form three
   checkpoint segments, so at most one segment's activations are live in backward. */
static ember_status build_mlp(ember_graph *g, int ckpt, ember_node **loss, ember_node **params, int *np) {
    int64_t B = 32, D = 24;
    ember_node *x, *y, *h;
    EMBER_TRY(ember_graph_input(g, "x", EMBER_DTYPE_F32, 2, S(B, D), &x));
    EMBER_TRY(ember_graph_input(g, "y", EMBER_DTYPE_F32, 2, S(B, 1), &y));
    h = x;
    *np = 0;
    for (int l = 0; l < 8; l++) {
        int64_t out_d = l == 7 ? 1 : D;
        ember_node *w, *b, *m, *a;
        char name[16];
        snprintf(name, sizeof name, "w%d", l);
        EMBER_TRY(ember_graph_param(g, name, EMBER_DTYPE_F32, 2, S(D, out_d), &w));
        snprintf(name, sizeof name, "b%d", l);
        EMBER_TRY(ember_graph_param(g, name, EMBER_DTYPE_F32, 1, S(out_d), &b));
        params[(*np)++] = w;
        params[(*np)++] = b;
        if (ckpt && l >= 1 && l <= 6 && l % 2 == 1) EMBER_TRY(ember_graph_checkpoint_begin(g));
        EMBER_TRY(ember_op_matmul(g, h, w, 0, 0, &m));
        EMBER_TRY(ember_op_add(g, m, b, &a));
        if (l < 7) EMBER_TRY(ember_op_gelu(g, a, &h));
        else h = a;
        if (ckpt && l >= 1 && l <= 6 && l % 2 == 0) EMBER_TRY(ember_graph_checkpoint_end(g));
    }
    EMBER_TRY(ember_op_bce_with_logits(g, h, y, loss));
    return ember_graph_build_backward(g, *loss);
}

static void fill_same(ember_graph *g, uint64_t seed) {
    ember_rng r = {.seed = seed};
    for (int i = 0; i < g->n; i++) {
        ember_node *n = g->nodes[i];
        if (!(n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM))) continue;
        ember_tensor *t;
        CHECK_OK(ember_node_value(n, &t));
        CHECK_OK(ember_rng_uniform(&r, t, strcmp(n->name, "y") == 0 ? 0.0f : -0.5f, 0.5f));
    }
}

static void test_checkpoint_and_meta(void) {
    ember_graph_stats meta_plain, meta_ckpt, real_plain, real_ckpt;
    ember_node *loss, *params[16], *params2[16];
    int np;
    for (int ck = 0; ck < 2; ck++) {
        ember_graph *m = NULL;
        CHECK_OK(ember_graph_create(&(ember_graph_params){.meta = 1}, &m));
        CHECK_OK(build_mlp(m, ck, &loss, params, &np));
        CHECK_OK(ember_graph_get_stats(m, ck ? &meta_ckpt : &meta_plain));
        ember_tensor *t;
        CHECK_STATUS(ember_node_value(params[0], &t), EMBER_ERR_STATE); /* nothing allocated */
        CHECK_STATUS(ember_graph_run(m), EMBER_ERR_STATE);
        ember_graph_destroy(m);
    }
    /* the segment's inner activations are no longer held through forward */
    CHECK(meta_ckpt.peak_activation_bytes < meta_plain.peak_activation_bytes);
    CHECK(meta_ckpt.recomputed_nodes > 0);
    CHECK_EQ_INT(meta_plain.recomputed_nodes, 0);
    CHECK(meta_ckpt.recompute_flops > 0);
    CHECK_NEAR(meta_ckpt.forward_flops, meta_plain.forward_flops, 0);

    /* real runs: the same plan, the memory manager sees exactly it, gradients identical */
    ember_memory *mm[2];
    ember_graph *g[2];
    for (int ck = 0; ck < 2; ck++) {
        CHECK_OK(ember_memory_create(NULL, &mm[ck]));
        CHECK_OK(ember_graph_create(&(ember_graph_params){.mm = mm[ck]}, &g[ck]));
        CHECK_OK(build_mlp(g[ck], ck, &loss, ck ? params2 : params, &np));
        fill_same(g[ck], 11);
        CHECK_OK(ember_graph_run(g[ck]));
        CHECK_OK(ember_graph_get_stats(g[ck], ck ? &real_ckpt : &real_plain));
        ember_graph_stats *meta = ck ? &meta_ckpt : &meta_plain;
        CHECK_EQ_INT((ck ? real_ckpt : real_plain).peak_activation_bytes, meta->peak_activation_bytes);
        ember_memory_stats ms;
        ember_memory_get_stats(mm[ck], &ms);
        /* activations = inputs + the arena + the loss output (4 bytes) */
        CHECK_EQ_INT(ms.peak[EMBER_TIER_HOST][EMBER_MEM_ACTIVATION], meta->input_bytes + meta->peak_activation_bytes + 4);
        CHECK_EQ_INT(ms.live[EMBER_TIER_HOST][EMBER_MEM_GRADIENT], meta->grad_bytes);
        CHECK_EQ_INT(ms.live[EMBER_TIER_HOST][EMBER_MEM_PARAMETER], meta->param_bytes);
        /* FLOPs the executor ran are those meta mode predicted */
        CHECK_NEAR((ck ? real_ckpt : real_plain).executed_flops,
                   meta->forward_flops + meta->backward_flops + meta->recompute_flops, 0);
    }
    for (int i = 0; i < np; i++) {
        ember_tensor *a, *b;
        CHECK_OK(ember_node_value(ember_node_grad(params[i]), &a));
        CHECK_OK(ember_node_value(ember_node_grad(params2[i]), &b));
        CHECK(memcmp(ember_tensor_data(a), ember_tensor_data(b), ember_tensor_nbytes(a)) == 0);
    }
    /* shapes of executed values are those meta mode reported */
    for (int i = 0; i < g[1]->n; i++) {
        ember_node_info in;
        CHECK_OK(ember_graph_node_info(g[1], i, &in));
        ember_tensor *v = g[1]->nodes[i]->value;
        if (!v) continue;
        CHECK_EQ_INT(ember_tensor_ndim(v), in.ndim);
        for (int d = 0; d < in.ndim; d++) CHECK_EQ_INT(ember_tensor_dim(v, d), in.shape[d]);
    }
    /* a second run gives the same gradients (buffers reused, nothing stale) */
    ember_tensor *g0;
    CHECK_OK(ember_node_value(ember_node_grad(params2[0]), &g0));
    float first = ((float *)ember_tensor_data(g0))[3];
    CHECK_OK(ember_graph_run(g[1]));
    CHECK(((float *)ember_tensor_data(g0))[3] == first);
    FILE *devnull = fopen("/dev/null", "w");
    CHECK_OK(ember_graph_print(g[1], devnull));
    fclose(devnull);
    for (int ck = 0; ck < 2; ck++) {
        ember_graph_destroy(g[ck]);
        ember_memory_stats ms;
        ember_memory_get_stats(mm[ck], &ms);
        CHECK_EQ_INT(ms.live_total[EMBER_TIER_HOST], 0);
        ember_memory_destroy(mm[ck]);
    }
    /* reuse: the arena is smaller than the sum of all activations */
    CHECK(meta_plain.peak_activation_bytes < meta_plain.sum_activation_bytes);
}

static void test_dropout_steps(void) {
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(&(ember_graph_params){.seed = 9}, &g));
    ember_node *x = leaf(g, "x", 1, S(1000), 0), *d;
    CHECK_OK(ember_op_dropout(g, x, 0.25f, &d));
    CHECK_OK(ember_graph_mark_output(g, d));
    CHECK_OK(ember_graph_forward(g));
    ember_tensor *dv, *xv;
    CHECK_OK(ember_node_value(d, &dv));
    CHECK_OK(ember_node_value(x, &xv));
    float first[1000];
    memcpy(first, ember_tensor_data(dv), sizeof first);
    int zeros = 0, scaled = 1;
    for (int i = 0; i < 1000; i++) {
        if (first[i] == 0.0f) zeros++;
        else if (fabsf(first[i] - ((float *)ember_tensor_data(xv))[i] / 0.75f) > 1e-6f) scaled = 0;
    }
    CHECK(zeros > 190 && zeros < 310); /* binomial(1000, 0.25): mean 250, sd 14 */
    CHECK(scaled);
    CHECK_OK(ember_graph_forward(g)); /* the next step draws another mask */
    CHECK(memcmp(first, ember_tensor_data(dv), sizeof first) != 0);
    ember_graph_set_step(g, 0); /* a resumed step draws the same one */
    CHECK_OK(ember_graph_forward(g));
    CHECK(memcmp(first, ember_tensor_data(dv), sizeof first) == 0);
    ember_graph_set_training(g, 0);
    CHECK_OK(ember_graph_forward(g));
    CHECK(memcmp(ember_tensor_data(xv), ember_tensor_data(dv), sizeof first) == 0);
    ember_graph_destroy(g);
}

static void test_bad_inputs(void) {
    ember_graph *g = NULL, *other = NULL;
    CHECK_OK(ember_graph_create(NULL, &g));
    CHECK_OK(ember_graph_create(NULL, &other));
    ember_node *a = leaf(g, "a", 2, S(3, 4), 1), *b = leaf(g, "b", 2, S(5, 6), 1), *o = (ember_node *)1;
    ember_node *z = leaf(other, "z", 2, S(3, 4), 1);
    CHECK_STATUS(ember_op_matmul(g, a, b, 0, 0, &o), EMBER_ERR_SHAPE);
    CHECK(o == NULL);
    CHECK(strstr(ember_last_error(), "inner dims differ") != NULL);
    CHECK_STATUS(ember_op_add(g, a, b, &o), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "does not broadcast") != NULL);
    CHECK_STATUS(ember_op_add(g, a, z, &o), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_op_add(g, a, NULL, &o), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_op_slice(g, a, 1, 3, 2, &o), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_op_reshape(g, a, 2, S(5, 5), &o), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_op_permute(g, a, (int[]){0, 0}, &o), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_op_dropout(g, a, 1.0f, &o), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_op_gather_rows(g, a, a, &o), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_op_layernorm(g, a, b, b, 1e-5f, &o), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_op_interaction(g, a, &o), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_op_interaction_self(g, a, &o), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_op_dot_interaction(g, a, b, 0, &o), EMBER_ERR_SHAPE); /* 6 is not a multiple of 4 */
    CHECK(strstr(ember_last_error(), "(B, T D)") != NULL);
    CHECK_STATUS(ember_op_dot_interaction(g, a, leaf(g, "a5", 2, S(5, 8), 1), 0, &o), EMBER_ERR_SHAPE); /* B */
    CHECK_STATUS(ember_graph_param(g, "p", EMBER_DTYPE_I32, 1, S(3), &o), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_graph_input(g, "x", EMBER_DTYPE_F32, 7, S(1, 1, 1, 1, 1, 1, 1), &o), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_graph_input(g, "x", EMBER_DTYPE_F32, 1, S(-1), &o), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_graph_build_backward(g, a), EMBER_ERR_SHAPE); /* not a scalar */
    CHECK_STATUS(ember_graph_checkpoint_end(g), EMBER_ERR_STATE);
    CHECK_OK(ember_graph_checkpoint_begin(g));
    CHECK_STATUS(ember_graph_checkpoint_begin(g), EMBER_ERR_STATE);
    CHECK_STATUS(ember_graph_plan(g), EMBER_ERR_STATE);
    CHECK_OK(ember_graph_checkpoint_end(g));
    /* an out-of-range index is reported at run time with its position */
    ember_node *idx = index_input(g, 4, 3, EMBER_DTYPE_I64), *gth, *s;
    CHECK_OK(ember_op_gather_rows(g, a, idx, &gth));
    ember_tensor *iv;
    CHECK_OK(ember_node_value(idx, &iv));
    ((int64_t *)ember_tensor_data(iv))[2] = 3;
    CHECK_OK(ember_op_sum(g, gth, 0, &s));
    CHECK_OK(ember_graph_build_backward(g, s));
    CHECK_STATUS(ember_graph_run(g), EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "index 3 at position 2") != NULL);
    CHECK_STATUS(ember_op_relu(g, a, &o), EMBER_ERR_STATE); /* forward nodes after backward */
    CHECK_STATUS(ember_graph_build_backward(g, s), EMBER_ERR_STATE);
    ember_graph_destroy(g);
    ember_graph_destroy(other);
    ember_graph_destroy(NULL);
}

/* Executor hooks: several on one graph, "before" in install order and "after" in reverse
   (they nest), each entry once; a failing "before" stops the run and the hooks already
   called get their "after". */
typedef struct hook_log {
    char seq[64];
    int n, fail_at;
} hook_log;

static ember_status log_hook_a(void *user, ember_graph *g, const ember__hook_event *ev) {
    (void)g;
    hook_log *l = user;
    if (ev->entry == 0 && l->n < 60) l->seq[l->n++] = ev->after ? 'a' : 'A';
    return EMBER_OK;
}

static ember_status log_hook_b(void *user, ember_graph *g, const ember__hook_event *ev) {
    (void)g;
    hook_log *l = user;
    if (ev->entry == 0 && l->n < 60) l->seq[l->n++] = ev->after ? 'b' : 'B';
    if (!ev->after && l->fail_at >= 0 && ev->entry == l->fail_at)
        return ember__error(EMBER_ERR_CANCELLED, "hook b stops entry %d", ev->entry);
    return EMBER_OK;
}

/* ember_op_dot_interaction gives the bits of the composition it replaces, values and
   gradients: concat(z, e) -> reshape -> interaction -> concat(z, .), on the DLRM's
   shape (26 vectors after z) at dims that take each column path of the kernels. */
static void run_interaction_graph(int fused, int self, int64_t B, int64_t T, int64_t d, float **out, float **dz,
                                  float **de) {
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(&(ember_graph_params){.seed = 3}, &g));
    ember_node *z = leaf(g, "z", 2, S(B, d), 1), *e = leaf(g, "e", 2, S(B, T * d), 1), *o, *r, *m, *loss;
    if (fused) {
        CHECK_OK(ember_op_dot_interaction(g, z, e, self, &o));
    } else {
        ember_node *cat, *t3, *inter;
        CHECK_OK(ember_op_concat(g, (ember_node *[]){z, e}, 2, 1, &cat));
        CHECK_OK(ember_op_reshape(g, cat, 3, S(B, T + 1, d), &t3));
        CHECK_OK(self ? ember_op_interaction_self(g, t3, &inter) : ember_op_interaction(g, t3, &inter));
        CHECK_OK(ember_op_concat(g, (ember_node *[]){z, inter}, 2, 1, &o));
    }
    r = leaf(g, "R", 2, o->shape, 0);
    CHECK_OK(ember_op_mul(g, o, r, &m));
    CHECK_OK(ember_op_sum(g, m, 0, &loss));
    CHECK_OK(ember_graph_mark_output(g, o));
    CHECK_OK(ember_graph_build_backward(g, loss));
    ember_rng rng = {.seed = 11};
    ember_node *ins[3] = {z, e, r};
    for (int i = 0; i < 3; i++) {
        ember_tensor *t;
        CHECK_OK(ember_node_value(ins[i], &t));
        CHECK_OK(ember_rng_uniform(&rng, t, -1.0f, 1.0f));
    }
    CHECK_OK(ember_graph_run(g));
    ember_tensor *ov, *zg, *eg;
    CHECK_OK(ember_node_value(o, &ov));
    CHECK_OK(ember_node_value(ember_node_grad(z), &zg));
    CHECK_OK(ember_node_value(ember_node_grad(e), &eg));
    ember_tensor *src[3] = {ov, zg, eg};
    float **dst[3] = {out, dz, de};
    for (int i = 0; i < 3; i++) {
        size_t bytes = (size_t)ember_tensor_numel(src[i]) * sizeof(float);
        *dst[i] = malloc(bytes);
        memcpy(*dst[i], ember_tensor_data(src[i]), bytes);
    }
    CHECK(ember_graph_op_runs(g, fused ? "dot_interaction" : "interaction") > 0);
    ember_graph_destroy(g);
}

static void test_dot_interaction_fused(void) {
    const int64_t B = 37, T = 26, dims[] = {64, 16, 5, 80};
    int nshapes = 0;
    for (int self = 0; self < 2; self++)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            int64_t d = dims[di], pairs = self ? (T + 2) * (T + 1) / 2 : (T + 1) * T / 2;
            float *o1, *z1, *e1, *o2, *z2, *e2;
            run_interaction_graph(1, self, B, T, d, &o1, &z1, &e1);
            run_interaction_graph(0, self, B, T, d, &o2, &z2, &e2);
            int same = memcmp(o1, o2, (size_t)(B * (d + pairs)) * sizeof(float)) == 0 &&
                       memcmp(z1, z2, (size_t)(B * d) * sizeof(float)) == 0 &&
                       memcmp(e1, e2, (size_t)(B * T * d) * sizeof(float)) == 0;
            if (!same) fprintf(stderr, "dot interaction self=%d d=%lld: bits differ from the composition\n", self, (long long)d);
            CHECK(same);
            float *all[] = {o1, z1, e1, o2, z2, e2};
            for (int i = 0; i < 6; i++) free(all[i]);
            nshapes++;
        }
    printf("dot interaction: %d shapes, values and gradients bit-identical to concat + interaction + concat\n", nshapes);
}

static void test_hooks(void) {
    ember_graph *g;
    ember_node *x, *w, *y;
    CHECK_OK(ember_graph_create(&(ember_graph_params){.seed = 1}, &g));
    CHECK_OK(ember_graph_input(g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){2, 3}, &x));
    CHECK_OK(ember_graph_param(g, "w", EMBER_DTYPE_F32, 2, (int64_t[]){3, 2}, &w));
    CHECK_OK(ember_op_matmul(g, x, w, 0, 0, &y));
    CHECK_OK(ember_graph_mark_output(g, y));
    CHECK_OK(ember_graph_plan(g));
    hook_log la = {.fail_at = -1};
    CHECK_OK(ember__graph_add_hook(g, log_hook_a, &la));
    CHECK_OK(ember__graph_add_hook(g, log_hook_b, &la));
    CHECK_STATUS(ember__graph_add_hook(g, log_hook_b, &la), EMBER_ERR_STATE); /* the same pair twice */
    CHECK_OK(ember_graph_forward(g));
    CHECK(strcmp(la.seq, "ABba") == 0);
    la = (hook_log){.fail_at = 0};
    CHECK_STATUS(ember_graph_forward(g), EMBER_ERR_CANCELLED);
    CHECK(strcmp(la.seq, "ABa") == 0); /* a gets its after; the kernel did not run */
    ember__graph_remove_hook(g, log_hook_a, &la);
    la = (hook_log){.fail_at = -1};
    CHECK_OK(ember_graph_forward(g));
    CHECK(strcmp(la.seq, "Bb") == 0);
    ember__graph_remove_hook(g, log_hook_b, &la);
    ember__graph_remove_hook(g, log_hook_b, &la); /* absent: a no-op */
    ember_graph_destroy(g);
}

int main(void) {
    test_hooks();
    test_gradcheck_covers_registry();
    test_dot_interaction_fused();
    test_checkpoint_and_meta();
    test_dropout_steps();
    test_bad_inputs();
    return check_summary();
}
