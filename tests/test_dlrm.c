/*
 * DLRM against PyTorch (tests/ref/dlrm.bin, written by tests/ref/gen_dlrm.py): the same
 * small model from the same weights on the same 20 batches, with SGD and with Adagrad
 * for dense layers and embedding rows alike; every step's loss and the final tables.
 * Four models: the dot interaction, the dot interaction with the diagonal, DCNv2 with
 * full-rank cross layers and with low-rank ones (per-table dims 2, 4, 3 for both).
 *
 * Tolerance 1e-4 relative on losses (the bound): both sides compute in f32,
 * with summation orders that differ (BLAS, double accumulators in ember's reductions),
 * and 20 steps of training let those ulp-level differences compound.
 *
 * Also the choice among sharding plans before a model exists (ember_dlrm_plan_choose,
 * what the training job's plan = auto runs on every rank): minimax on one Zipf-skewed
 * table beside uniform ones, table-wise on a tie, and the named errors.
 */
#include "check.h"
#include "fixture.h"

static fixture fx;

static const fixture_tensor *get(const char *fmt, const char *prefix, int a) {
    char name[96];
    snprintf(name, sizeof name, fmt, prefix, a);
    const fixture_tensor *t = fixture_get(&fx, name);
    if (!t) fprintf(stderr, "fixture has no %s\n", name);
    CHECK(t != NULL);
    return t;
}

/* Every parameter of the graph from "<prefix><name>" in the fixture. */
static void load_params(ember_graph *g, const char *prefix) {
    int loaded = 0;
    for (int i = 0; i < ember_graph_node_count(g); i++) {
        ember_node_info info;
        CHECK_OK(ember_graph_node_info(g, i, &info));
        if (strcmp(info.op, "param") != 0) continue;
        char name[96];
        snprintf(name, sizeof name, "%s%s", prefix, info.name);
        const fixture_tensor *r = fixture_get(&fx, name);
        ember_node *n = NULL;
        ember_tensor *v;
        CHECK_OK(ember_graph_find(g, info.name, &n));
        if (!r) fprintf(stderr, "fixture has no %s\n", name);
        CHECK(r != NULL);
        if (!r || !n) continue;
        CHECK_OK(ember_node_value(n, &v));
        CHECK_EQ_INT(ember_tensor_numel(v), r->numel);
        if (ember_tensor_numel(v) != r->numel) continue;
        memcpy(ember_tensor_data(v), r->data, ember_tensor_nbytes(v));
        loaded++;
    }
    CHECK(loaded >= 4);
}

/* The fixture's model: 3 tables of 10, 7, 5 rows, 4 dense features, top MLP {8, 1}.
   cfg gives the interaction, dims and bottom MLP; prefix names its fixture entries. */
static void run(const char *prefix, ember_dlrm_config cfg, const char *optname, ember_optim_kind dense_kind,
                ember_sparse_optim sparse_kind) {
    static const int64_t rows[3] = {10, 7, 5};
    cfg.num_dense = 4;
    cfg.num_tables = 3;
    cfg.table_rows = rows;
    cfg.top[0] = 8;
    cfg.top[1] = 1;
    cfg.batch = 8;
    cfg.sparse_lr = 0.1f;
    cfg.seed = 1;
    cfg.sparse_optim = (ember_sparse_optim_config){.type = sparse_kind};
    cfg.dense_optim = ember_optimizer_defaults(dense_kind);
    cfg.dense_optim.lr = 0.1;
    ember_dlrm *m = NULL;
    CHECK_OK(ember_dlrm_create(&cfg, &m));
    if (!m) return;
    load_params(ember_dlrm_graph(m), prefix);
    for (int t = 0; t < 3; t++) {
        const fixture_tensor *tab = get("%stable%d", prefix, t);
        if (tab) CHECK_EQ_INT(tab->numel, rows[t] * ember_dlrm_table_dim(m, t));
        if (tab && tab->numel == rows[t] * ember_dlrm_table_dim(m, t))
            CHECK_OK(ember_dlrm_write_table(m, t, 0, rows[t], tab->data, NULL));
    }
    char name[96];
    snprintf(name, sizeof name, "%s%s.losses", prefix, optname);
    const fixture_tensor *losses = fixture_get(&fx, name);
    CHECK(losses != NULL);
    int bad = 0;
    for (int s = 0; s < 20 && losses; s++) {
        char key[32];
        snprintf(key, sizeof key, "b%d.dense", s);
        const fixture_tensor *dense = fixture_get(&fx, key);
        snprintf(key, sizeof key, "b%d.labels", s);
        const fixture_tensor *labels = fixture_get(&fx, key);
        ember_jagged_feature f[3];
        for (int t = 0; t < 3; t++) {
            snprintf(key, sizeof key, "b%d.ids%d", s, t);
            const fixture_tensor *ids = fixture_get(&fx, key);
            snprintf(key, sizeof key, "b%d.offsets%d", s, t);
            const fixture_tensor *offs = fixture_get(&fx, key);
            f[t] = (ember_jagged_feature){.values = ids->data, .offsets = offs->data, .length = ids->numel};
        }
        ember_jagged batch = {.batch = 8, .num_features = 3, .features = f};
        float loss = 0;
        CHECK_OK(ember_dlrm_train_step(m, dense->data, &batch, labels->data, &loss));
        double want = ((const float *)losses->data)[s];
        if (!(fabs(loss - want) <= 1e-4 * fabs(want))) {
            fprintf(stderr, "%s%s step %d: loss %.8g torch %.8g\n", prefix, optname, s, loss, want);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    for (int t = 0; t < 3; t++) {
        float w[10 * 8];
        snprintf(name, sizeof name, "%%s%s.final_table%%d", optname);
        const fixture_tensor *ref = get(name, prefix, t);
        CHECK_OK(ember_dlrm_read_table(m, t, 0, rows[t], w, NULL));
        if (ref && ref->numel == rows[t] * ember_dlrm_table_dim(m, t))
            CHECK_NEAR_ARRAY(w, (const float *)ref->data, ref->numel, 2e-5);
    }
    ember_dlrm_destroy(m);
}

static const int dcn_dims[3] = {2, 4, 3};

static void test_parity(void) {
    const ember_dlrm_config dot = {.emb_dim = 4, .bottom = {8, 4}};
    ember_dlrm_config self = dot, dcn = {.emb_dim = 4, .bottom = {8, 3}, .interaction = EMBER_DLRM_DCN,
                                         .table_dims = dcn_dims}; /* dcn_layers 0: 3 */
    self.interaction = EMBER_DLRM_DOT_SELF;
    ember_dlrm_config dcn_lr = dcn;
    dcn_lr.dcn_layers = 2;
    dcn_lr.dcn_rank = 3;
    run("", dot, "sgd", EMBER_OPTIM_SGD, EMBER_SPARSE_OPTIM_SGD);
    run("", dot, "adagrad", EMBER_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ADAGRAD);
    run("dot_self/", self, "sgd", EMBER_OPTIM_SGD, EMBER_SPARSE_OPTIM_SGD);
    run("dot_self/", self, "adagrad", EMBER_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ADAGRAD);
    run("dcn/", dcn, "adagrad", EMBER_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ADAGRAD);
    run("dcn_lr/", dcn_lr, "sgd", EMBER_OPTIM_SGD, EMBER_SPARSE_OPTIM_SGD);
}

/* A refused config: the status, *out NULL, and the message naming the field. */
static void refused(const ember_dlrm_config *cfg, ember_status want, const char *field) {
    ember_dlrm *m = (ember_dlrm *)1;
    CHECK_STATUS(ember_dlrm_create(cfg, &m), want);
    CHECK(m == NULL);
    if (field && !strstr(ember_last_error(), field))
        fprintf(stderr, "error \"%s\" does not name %s\n", ember_last_error(), field);
    if (field) CHECK(strstr(ember_last_error(), field) != NULL);
}

static void test_bad_config(void) {
    static const int64_t rows[2] = {10, 10};
    static const int dims44[2] = {4, 4}, dims48[2] = {4, 8}, dims40[2] = {4, 0};
    const ember_dlrm_config ok = {.num_tables = 2, .table_rows = rows, .emb_dim = 4, .bottom = {4}, .top = {4, 1},
                                  .batch = 4};
    ember_dlrm_config c;
    refused(&(ember_dlrm_config){.num_tables = 0, .batch = 4}, EMBER_ERR_INVALID_ARGUMENT, "num_tables");
    c = ok, c.emb_dim = 8, c.bottom[0] = 16, c.bottom[1] = 4;
    refused(&c, EMBER_ERR_SHAPE, "emb_dim 8");
    c = ok, c.top[1] = 2;
    refused(&c, EMBER_ERR_SHAPE, "top MLP");
    c = ok, c.interaction = EMBER_DLRM_INTERACTION_COUNT;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "interaction 3");
    c = ok, c.interaction = (ember_dlrm_interaction)-1;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "interaction -1");
    /* the cross-layer fields belong to DCN */
    c = ok, c.dcn_layers = 2;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "dcn_layers 2");
    c = ok, c.interaction = EMBER_DLRM_DOT_SELF, c.dcn_rank = 2;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "dcn_rank 2");
    c = ok, c.interaction = EMBER_DLRM_DCN, c.dcn_layers = -1;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "dcn_layers -1");
    c = ok, c.interaction = EMBER_DLRM_DCN, c.dcn_rank = -2;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "dcn_rank -2");
    /* dims: >= 1 always, all emb_dim (and the bottom MLP's output) for the dot interactions */
    c = ok, c.interaction = EMBER_DLRM_DCN, c.table_dims = dims40;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "table_dims[1] is 0");
    c = ok, c.table_dims = dims48;
    refused(&c, EMBER_ERR_SHAPE, "table_dims[1] is 8");
    c = ok, c.interaction = EMBER_DLRM_DOT_SELF, c.table_dims = dims48;
    refused(&c, EMBER_ERR_SHAPE, "table_dims[1] is 8");
    c = ok, c.interaction = EMBER_DLRM_DOT_SELF, c.bottom[0] = 3;
    refused(&c, EMBER_ERR_SHAPE, "emb_dim 4");
    c = ok, c.interaction = EMBER_DLRM_DCN, c.top[1] = 3;
    refused(&c, EMBER_ERR_SHAPE, "top MLP");
    /* and what is allowed: equal table_dims with a dot interaction, any dims with DCN */
    ember_dlrm *m = NULL;
    c = ok, c.table_dims = dims44;
    CHECK_OK(ember_dlrm_create(&c, &m));
    ember_dlrm_destroy(m);
    m = NULL;
    c = ok, c.interaction = EMBER_DLRM_DCN, c.table_dims = dims48, c.bottom[0] = 3;
    CHECK_OK(ember_dlrm_create(&c, &m));
    ember_dlrm_destroy(m);
}

static void param_shape(ember_graph *g, const char *name, int64_t d0, int64_t d1) {
    ember_node *n = NULL;
    ember_node_info info;
    CHECK_OK(ember_graph_find(g, name, &n));
    if (!n) return;
    CHECK_OK(ember_node_get_info(n, &info));
    CHECK_EQ_INT(info.ndim, d1 ? 2 : 1);
    CHECK_EQ_INT(info.shape[0], d0);
    if (d1) CHECK_EQ_INT(info.shape[1], d1);
}

static const float *param_data(ember_graph *g, const char *name) {
    ember_node *n = NULL;
    ember_tensor *v = NULL;
    CHECK_OK(ember_graph_find(g, name, &n));
    if (n) CHECK_OK(ember_node_value(n, &v));
    return v ? ember_tensor_data(v) : NULL;
}

/* The graph of each interaction: parameter names and shapes, the default layer count,
   the cross layers' initialisation (Xavier normal, zero bias, from the seed), and a
   forward pass of a model with per-table dims. */
static void test_structure(void) {
    static const int64_t rows[3] = {20, 30, 40};
    static const int dims[3] = {5, 2, 3};
    ember_dlrm_config c = {.num_dense = 3, .num_tables = 3, .table_rows = rows, .emb_dim = 4, .bottom = {6, 4},
                           .top = {5, 1}, .batch = 6, .seed = 11};
    ember_dlrm *m = NULL, *m2 = NULL;
    /* dot with the diagonal: z and 10 pairs of 4 vectors into the top MLP */
    c.interaction = EMBER_DLRM_DOT_SELF;
    CHECK_OK(ember_dlrm_create(&c, &m));
    if (m) param_shape(ember_dlrm_graph(m), "top.0.weight", 4 + 10, 5);
    ember_dlrm_destroy(m);
    c.interaction = EMBER_DLRM_DOT;
    CHECK_OK(ember_dlrm_create(&c, &m));
    if (m) param_shape(ember_dlrm_graph(m), "top.0.weight", 4 + 6, 5);
    ember_dlrm_destroy(m);
    /* DCN, full rank, default 3 layers over N = 7 + 5 + 2 + 3 = 17 */
    c.interaction = EMBER_DLRM_DCN;
    c.table_dims = dims;
    c.bottom[1] = 7;
    CHECK_OK(ember_dlrm_create(&c, &m));
    CHECK_OK(ember_dlrm_create(&c, &m2));
    if (m && m2) {
        ember_graph *g = ember_dlrm_graph(m);
        ember_node *n;
        for (int t = 0; t < 3; t++) CHECK_EQ_INT(ember_dlrm_table_dim(m, t), dims[t]);
        CHECK_EQ_INT(ember_ebc_output_dim(ember_dlrm_tables(m)), 10);
        param_shape(g, "dcn.0.weight", 17, 17);
        param_shape(g, "dcn.2.bias", 17, 0);
        param_shape(g, "top.0.weight", 17, 5);
        CHECK_STATUS(ember_graph_find(g, "dcn.3.weight", &n), EMBER_ERR_NOT_FOUND);
        CHECK_STATUS(ember_graph_find(g, "dcn.0.u", &n), EMBER_ERR_NOT_FOUND);
        /* Xavier normal, std sqrt(2 / (17 + 17)): 867 draws, the sample std within 15% */
        double ss = 0, sum = 0;
        int same = 1, zero_bias = 1;
        for (int l = 0; l < 3; l++) {
            char wn[32], bn[32];
            snprintf(wn, sizeof wn, "dcn.%d.weight", l);
            snprintf(bn, sizeof bn, "dcn.%d.bias", l);
            const float *w = param_data(g, wn), *w2 = param_data(ember_dlrm_graph(m2), wn), *b = param_data(g, bn);
            if (!w || !w2 || !b) continue;
            same &= memcmp(w, w2, 17 * 17 * sizeof *w) == 0;
            for (int i = 0; i < 17 * 17; i++) ss += (double)w[i] * w[i], sum += w[i];
            for (int i = 0; i < 17; i++) zero_bias &= b[i] == 0.0f;
        }
        CHECK(same);
        CHECK(zero_bias);
        double sd = sqrt(ss / (3 * 17 * 17)), want = sqrt(2.0 / 34);
        if (fabs(sd - want) > 0.15 * want) fprintf(stderr, "dcn init std %g, want %g\n", sd, want);
        CHECK(fabs(sd - want) <= 0.15 * want);
        CHECK(fabs(sum / (3 * 17 * 17)) < 0.05);
        /* a forward pass and a training step with the mixed dims */
        int64_t ids[6] = {0, 19, 3, 7, 11, 2}, offs[7] = {0, 2, 2, 3, 5, 6, 6}; /* empty bags too */
        ember_jagged_feature f[3];
        for (int t = 0; t < 3; t++) f[t] = (ember_jagged_feature){.values = ids, .offsets = offs, .length = 6};
        ember_jagged batch = {.batch = 6, .num_features = 3, .features = f};
        float dense[18], labels[6], probs[6], loss = 0;
        for (int i = 0; i < 18; i++) dense[i] = (float)(i % 5) / 5.0f;
        for (int i = 0; i < 6; i++) labels[i] = (float)(i % 2);
        CHECK_OK(ember_dlrm_predict(m, dense, &batch, probs));
        for (int i = 0; i < 6; i++) CHECK(probs[i] > 0.0f && probs[i] < 1.0f);
        CHECK_OK(ember_dlrm_train_step(m, dense, &batch, labels, &loss));
        CHECK(loss > 0 && isfinite(loss));
    }
    ember_dlrm_destroy(m);
    ember_dlrm_destroy(m2);
    /* low rank 2, 2 layers: v (17, 2), u (2, 17), no full weight */
    c.dcn_layers = 2;
    c.dcn_rank = 2;
    CHECK_OK(ember_dlrm_create(&c, &m));
    if (m) {
        ember_graph *g = ember_dlrm_graph(m);
        ember_node *n;
        param_shape(g, "dcn.0.v", 17, 2);
        param_shape(g, "dcn.1.u", 2, 17);
        param_shape(g, "dcn.1.bias", 17, 0);
        CHECK_STATUS(ember_graph_find(g, "dcn.0.weight", &n), EMBER_ERR_NOT_FOUND);
        CHECK_STATUS(ember_graph_find(g, "dcn.2.v", &n), EMBER_ERR_NOT_FOUND);
    }
    ember_dlrm_destroy(m);
}

/* The same model with its tables behind a small cache (look-ahead 2, batches submitted
   ahead) trains bit for bit as the resident one, through many evictions. */
/* Every row and state float of tables [0, nt) of a and b: the same bits. */
static void same_tables(ember_dlrm *a, ember_dlrm *b, int nt, const int64_t *rows) {
    for (int t = 0; t < nt; t++) {
        int64_t d = ember_dlrm_table_dim(a, t), sf = ember_dlrm_state_floats(a, t);
        CHECK_EQ_INT(ember_dlrm_table_dim(b, t), d);
        CHECK_EQ_INT(ember_dlrm_state_floats(b, t), sf);
        float *w0 = malloc((size_t)(rows[t] * d) * 4), *w1 = malloc((size_t)(rows[t] * d) * 4);
        float *s0 = malloc((size_t)(rows[t] * sf) * 4 + 4), *s1 = malloc((size_t)(rows[t] * sf) * 4 + 4);
        CHECK_OK(ember_dlrm_read_table(a, t, 0, rows[t], w0, s0));
        CHECK_OK(ember_dlrm_read_table(b, t, 0, rows[t], w1, s1));
        CHECK(memcmp(w0, w1, (size_t)(rows[t] * d) * sizeof *w0) == 0);
        CHECK(memcmp(s0, s1, (size_t)(rows[t] * sf) * sizeof *s0) == 0);
        free(w0), free(w1), free(s0), free(s1);
    }
}

static void test_cached(ember_sparse_optim sparse_kind, ember_cache_policy policy) {
    enum { B = 16, T = 3, STEPS = 60, AHEAD = 2 };
    static const int64_t rows[T] = {400, 300, 240};
    ember_cache_config cc = {.ratio = 0.15, .min_slots = 56, .policy = policy, .lookahead = AHEAD};
    ember_dlrm_config cfg = {.num_dense = 4, .num_tables = T, .table_rows = rows, .emb_dim = 4,
                             .bottom = {8, 4}, .top = {8, 1}, .batch = B, .sparse_lr = 0.05f, .seed = 3,
                             .sparse_optim = {.type = sparse_kind}};
    cfg.dense_optim = ember_optimizer_defaults(EMBER_OPTIM_ADAGRAD);
    cfg.dense_optim.lr = 0.05;
    ember_dlrm *ref = NULL, *m = NULL;
    CHECK_OK(ember_dlrm_create(&cfg, &ref));
    cfg.cache = &cc;
    CHECK_OK(ember_dlrm_create(&cfg, &m));
    if (!ref || !m) goto done;
    CHECK(ember_dlrm_cache(m) != NULL && ember_dlrm_cache(ref) == NULL);
    static int64_t ids[STEPS][T][B], offs[B + 1];
    static float dense[STEPS][B * 4], labels[STEPS][B];
    static ember_jagged_feature f[STEPS][T];
    static ember_jagged jb[STEPS];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i <= B; i++) offs[i] = i;
    for (int s = 0; s < STEPS; s++) {
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < B; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                ids[s][t][i] = (int64_t)(x % (uint64_t)rows[t]);
            }
            f[s][t] = (ember_jagged_feature){.values = ids[s][t], .offsets = offs, .length = B};
        }
        for (int i = 0; i < B * 4; i++) dense[s][i] = (float)((i * 7 + s) % 11) / 11.0f;
        for (int i = 0; i < B; i++) labels[s][i] = (float)((i + s) % 3 == 0);
        jb[s] = (ember_jagged){.batch = B, .num_features = T, .features = f[s]};
    }
    int submitted = 0, diff = 0;
    for (int s = 0; s < STEPS; s++) {
        while (submitted < STEPS && submitted <= s + AHEAD) CHECK_OK(ember_dlrm_submit(m, &jb[submitted++]));
        float l0 = 0, l1 = 0;
        CHECK_OK(ember_dlrm_train_step(ref, dense[s], &jb[s], labels[s], &l0));
        CHECK_OK(ember_dlrm_train_step(m, dense[s], &jb[s], labels[s], &l1));
        diff += memcmp(&l0, &l1, sizeof l0) != 0;
    }
    CHECK_EQ_INT(diff, 0);
    CHECK_EQ_INT(ember_dlrm_pending(m), 0);
    same_tables(ref, m, T, rows);
    ember_cache_stats cs;
    CHECK_OK(ember_cache_get_stats(ember_dlrm_cache(m), &cs));
    CHECK(cs.evictions > 0);
    /* a batch out of order, and predict while batches are pending, are refused */
    CHECK_OK(ember_dlrm_submit(m, &jb[0]));
    float l;
    CHECK_STATUS(ember_dlrm_train_step(m, dense[1], &jb[1], labels[1], &l), EMBER_ERR_STATE);
    CHECK_STATUS(ember_dlrm_predict(m, dense[1], &jb[1], labels[1]), EMBER_ERR_STATE);
    CHECK_OK(ember_dlrm_train_step(m, dense[0], &jb[0], labels[0], &l));
done:
    ember_dlrm_destroy(ref);
    ember_dlrm_destroy(m);
}

/*
 * Offload (config.offload). The model: 13 dense features, 3 tables of dim 16, bottom MLP
 * {128, 16}, top MLP {128 x 5, 1}: 73 K dense parameters, four weights of 128 x 128.
 * Chunks of 16512 elements hold one such weight with its bias (66 KiB a chunk, 6 chunks),
 * so an op needs at most a parameter and a gradient chunk on the device; the budget of
 * 320 KiB is then several times below parameters + gradients + optimizer state (Adagrad:
 * 3 x 396 KiB, Adam 4 x), and every step must evict.
 */
enum { OFF_B = 8, OFF_T = 3, OFF_STEPS = 12, OFF_CHUNK = 16512 };
#define OFF_BUDGET ((size_t)320 << 10)
static const int64_t off_rows[OFF_T] = {60, 50, 40};

static ember_dlrm_config offload_model(ember_optim_kind kind) {
    ember_dlrm_config c = {.num_dense = 13, .num_tables = OFF_T, .table_rows = off_rows, .emb_dim = 16,
                           .bottom = {128, 16}, .top = {128, 128, 128, 128, 128, 1}, .batch = OFF_B,
                           .sparse_lr = 0.05f, .seed = 5, .sparse_optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}};
    c.dense_optim = ember_optimizer_defaults(kind);
    c.dense_optim.lr = 0.01;
    return c;
}

/* Batch s of the offload tests: ids, dense features and labels from s alone. */
typedef struct off_batch {
    int64_t ids[OFF_T][OFF_B], offs[OFF_B + 1];
    float dense[OFF_B * 13], labels[OFF_B];
    ember_jagged_feature f[OFF_T];
    ember_jagged j;
} off_batch;

static void offload_batch(int s, off_batch *b) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(s + 1);
    for (int i = 0; i <= OFF_B; i++) b->offs[i] = i;
    for (int t = 0; t < OFF_T; t++) {
        for (int i = 0; i < OFF_B; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b->ids[t][i] = (int64_t)(x % (uint64_t)off_rows[t]);
        }
        b->f[t] = (ember_jagged_feature){.values = b->ids[t], .offsets = b->offs, .length = OFF_B};
    }
    for (int i = 0; i < OFF_B * 13; i++) b->dense[i] = (float)((i * 7 + s) % 11) / 11.0f;
    for (int i = 0; i < OFF_B; i++) b->labels[i] = (float)((i + s) % 3 == 0);
    b->j = (ember_jagged){.batch = OFF_B, .num_features = OFF_T, .features = b->f};
}

/* Every dense parameter of a and b, bit for bit; returns how many differ. */
static int params_differ(ember_dlrm *a, ember_dlrm *b) {
    ember_graph *ga = ember_dlrm_graph(a), *gb = ember_dlrm_graph(b);
    int diff = 0, n = 0;
    for (int i = 0; i < ember_graph_node_count(ga); i++) {
        ember_node_info info;
        ember_node *na = NULL, *nb = NULL;
        ember_tensor *va = NULL, *vb = NULL;
        CHECK_OK(ember_graph_node_info(ga, i, &info));
        if (strcmp(info.op, "param") != 0) continue;
        CHECK_OK(ember_graph_find(ga, info.name, &na));
        CHECK_OK(ember_graph_find(gb, info.name, &nb));
        if (na) CHECK_OK(ember_node_value(na, &va));
        if (nb) CHECK_OK(ember_node_value(nb, &vb));
        n++;
        if (!va || !vb || memcmp(ember_tensor_data(va), ember_tensor_data(vb), ember_tensor_nbytes(va)) != 0) {
            fprintf(stderr, "offload: parameter %s differs\n", info.name);
            diff++;
        }
    }
    CHECK(n >= 16);
    return diff;
}

/* The dense optimizer state of ref (one optimizer) against the per-chunk optimizers of
   off, matched by name, bit for bit, and their step counters. */
static void state_matches(ember_dlrm *ref, ember_offload *off) {
    ember_optimizer *ro = ember_dlrm_optimizer(ref);
    ember_offload_stats os;
    int nref = 0, seen = 0, diff = 0;
    int64_t rstep = -1;
    CHECK_OK(ember_optimizer_state_count(ro, &nref));
    CHECK_OK(ember_optimizer_get_step(ro, &rstep));
    CHECK_OK(ember_offload_get_stats(off, &os));
    for (int c = 0; c < os.nchunks; c++) {
        ember_optimizer *o = NULL;
        int ns = 0;
        int64_t step = -1;
        CHECK_OK(ember_offload_get_optimizer(off, c, &o));
        if (!o) continue;
        CHECK_OK(ember_optimizer_get_step(o, &step));
        CHECK_EQ_INT(step, rstep);
        CHECK_OK(ember_optimizer_state_count(o, &ns));
        for (int i = 0; i < ns; i++) {
            const char *name;
            ember_tensor *t;
            CHECK_OK(ember_optimizer_state_get(o, i, &name, &t));
            int found = 0;
            for (int k = 0; k < nref && !found; k++) {
                const char *rn;
                ember_tensor *rt;
                CHECK_OK(ember_optimizer_state_get(ro, k, &rn, &rt));
                if (strcmp(rn, name) != 0) continue;
                found = 1;
                diff += memcmp(ember_tensor_data(rt), ember_tensor_data(t), ember_tensor_nbytes(t)) != 0;
            }
            if (!found) fprintf(stderr, "offload: no state %s in the reference optimizer\n", name);
            CHECK(found);
            seen++;
        }
    }
    CHECK_EQ_INT(seen, nref);
    CHECK_EQ_INT(diff, 0);
}

/* The offloaded model under the budget against the same model without offload or budget. */
static void test_offload(ember_offload_policy policy, ember_optim_kind kind, int cached) {
    ember_dlrm_config c = offload_model(kind);
    ember_dlrm *ref = NULL, *m = NULL;
    ember_memory *mm = NULL;
    CHECK_OK(ember_dlrm_create(&c, &ref));
    CHECK(ember_dlrm_offload(ref) == NULL && ember_dlrm_optimizer(ref) != NULL);
    /* built with the device tier unlimited; the manager applies the budget */
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU}, &mm));
    ember_cache_config cc = {.ratio = 0.5, .min_slots = 2 * OFF_B, .mm = mm};
    ember_offload_config oc = {.policy = policy, .device_budget = OFF_BUDGET, .chunk_elems = OFF_CHUNK,
                               .param_host_fraction = 0.8, .state_host_fraction = 1};
    c.mm = mm;
    c.tier = EMBER_TIER_DEVICE;
    c.offload = &oc;
    if (cached) c.cache = &cc;
    CHECK_OK(ember_dlrm_create(&c, &m));
    if (!ref || !m) goto done;
    ember_offload *off = ember_dlrm_offload(m);
    CHECK(off != NULL && ember_dlrm_optimizer(m) == NULL);
    CHECK((ember_dlrm_cache(m) != NULL) == cached);
    ember_offload_stats os;
    CHECK_OK(ember_offload_get_stats(off, &os));
    CHECK_EQ_INT(os.nchunks, 6);
    CHECK(os.model_bytes >= 3 * OFF_BUDGET); /* parameters + gradients + state vs the budget */
    CHECK_EQ_INT(os.device_budget, OFF_BUDGET);
    int diff = 0;
    for (int s = 0; s < OFF_STEPS; s++) {
        off_batch b;
        offload_batch(s, &b);
        float l0 = -1, l1 = -2;
        CHECK_OK(ember_dlrm_train_step(ref, b.dense, &b.j, b.labels, &l0));
        CHECK_OK(ember_dlrm_train_step(m, b.dense, &b.j, b.labels, &l1));
        diff += memcmp(&l0, &l1, sizeof l0) != 0;
    }
    CHECK_EQ_INT(diff, 0);
    /* predictions under the manager (the forward alone) */
    off_batch b;
    offload_batch(OFF_STEPS, &b);
    float p0[OFF_B], p1[OFF_B];
    CHECK_OK(ember_dlrm_predict(ref, b.dense, &b.j, p0));
    CHECK_OK(ember_dlrm_predict(m, b.dense, &b.j, p1));
    CHECK(memcmp(p0, p1, sizeof p0) == 0);
    CHECK_EQ_INT(params_differ(ref, m), 0);
    state_matches(ref, off);
    same_tables(ref, m, OFF_T, off_rows);
    /* within the budget all along (the manager reset the peaks when it applied it) */
    ember_memory_stats ms;
    ember_memory_get_stats(mm, &ms);
    CHECK_OK(ember_offload_get_stats(off, &os));
    fprintf(stderr, "offload %s, %s%s: model data %zu B, budget %zu B, device peak %zu B (chunks %zu B), "
                    "%llu B in, %llu B out, %llu evictions\n",
            ember_offload_policy_name(policy), ember_optim_kind_name(kind), cached ? ", cached tables" : "",
            os.model_bytes, OFF_BUDGET, ms.peak_total[EMBER_TIER_DEVICE], os.peak_device_chunk_bytes,
            (unsigned long long)os.h2d_bytes, (unsigned long long)os.d2h_bytes,
            (unsigned long long)os.evictions);
    CHECK(ms.peak_total[EMBER_TIER_DEVICE] <= OFF_BUDGET);
    CHECK(ms.peak_total[EMBER_TIER_DEVICE] > 0);
    CHECK_EQ_INT(os.iterations, OFF_STEPS);
    CHECK(os.evictions > 0 && os.h2d_bytes > 0);
done:
    ember_dlrm_destroy(ref);
    ember_dlrm_destroy(m);
    ember_memory_destroy(mm);
}

/* Without offload the budget that offload trains under cannot even hold the dense layers;
   and offload's own refusals, named. */
static void test_offload_errors(void) {
    ember_dlrm_config c = offload_model(EMBER_OPTIM_ADAM);
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU, .budget = {[EMBER_TIER_DEVICE] = OFF_BUDGET}},
                                 &mm));
    c.mm = mm;
    c.tier = EMBER_TIER_DEVICE;
    refused(&c, EMBER_ERR_OUT_OF_MEMORY, "device tier");
    ember_memory_destroy(mm);
    mm = NULL;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU}, &mm));
    c.mm = mm;
    ember_offload_config oc = {.policy = EMBER_OFFLOAD_POLICY_COUNT, .device_budget = OFF_BUDGET,
                               .chunk_elems = OFF_CHUNK};
    c.offload = &oc;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "policy 3");
    oc.policy = EMBER_OFFLOAD_STATIC;
    oc.param_host_fraction = 1.5;
    refused(&c, EMBER_ERR_INVALID_ARGUMENT, "host fractions 1.5");
    /* STATIC with every chunk on the device does not fit: at creation */
    oc.param_host_fraction = 0;
    refused(&c, EMBER_ERR_OUT_OF_MEMORY, "placing the static share");
    /* a budget below what stays on the device (tables, activations) */
    oc.policy = EMBER_OFFLOAD_AUTO;
    oc.device_budget = 4096;
    refused(&c, EMBER_ERR_OUT_OF_MEMORY, "below");
    ember_memory_stats ms;
    ember_memory_get_stats(mm, &ms);
    CHECK(ms.budget[EMBER_TIER_DEVICE] == EMBER_BUDGET_UNLIMITED); /* a failed create puts it back */
    /* the optimizer accessor */
    oc.device_budget = 0;
    ember_dlrm *m = NULL;
    CHECK_OK(ember_dlrm_create(&c, &m));
    ember_optimizer *o = (ember_optimizer *)1;
    ember_offload_stats os;
    if (m) {
        ember_offload *off = ember_dlrm_offload(m);
        CHECK_OK(ember_offload_get_stats(off, &os));
        CHECK_STATUS(ember_offload_get_optimizer(off, os.nchunks, &o), EMBER_ERR_INDEX);
        CHECK(o == NULL);
        CHECK_STATUS(ember_offload_get_optimizer(off, -1, &o), EMBER_ERR_INDEX);
        CHECK_STATUS(ember_offload_get_optimizer(NULL, 0, &o), EMBER_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ember_offload_get_optimizer(off, 0, NULL), EMBER_ERR_INVALID_ARGUMENT);
        CHECK_OK(ember_offload_get_optimizer(off, os.nchunks - 1, &o));
        ember_optim_kind k = EMBER_OPTIM_KIND_COUNT;
        if (o) CHECK_OK(ember_optimizer_get_kind(o, &k));
        CHECK_EQ_INT(k, EMBER_OPTIM_ADAM);
    }
    ember_dlrm_destroy(m);
    /* a manager without an optimizer has none to give */
    c.offload = NULL;
    m = NULL;
    CHECK_OK(ember_dlrm_create(&c, &m));
    ember_offload *bare = NULL;
    if (m) CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = ember_dlrm_graph(m)}, &bare));
    if (bare) CHECK_STATUS(ember_offload_get_optimizer(bare, 0, &o), EMBER_ERR_STATE);
    ember_offload_destroy(bare);
    ember_dlrm_destroy(m);
    ember_memory_destroy(mm);
}

/* Four tables on 4 ranks: table 0 (1000 rows) Zipf-skewed, id k counted 10000 / (k + 1)
   times (75% of all lookups, its ids 0 .. 249 most of them); tables 1 .. 3 uniform. Whole
   tables leave table 0's lookups on one rank, row ranges its hot head on rank 0; minimax
   spreads the hot rows and balances. */
static void test_plan_choose(void) {
    static const int64_t rows[4] = {1000, 100, 100, 100}, equal[4] = {100, 100, 100, 100};
    static const ember_plan_kind kinds[3] = {EMBER_PLAN_TABLEWISE, EMBER_PLAN_ROWWISE, EMBER_PLAN_MINIMAX};
    ember_freq *f = NULL, *u = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 4}, &f));
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 4}, &u));
    if (!f || !u) return;
    int64_t *ids = malloc(10000 * sizeof *ids);
    for (int64_t k = 0; k < 1000; k++) {
        int64_t n = 10000 / (k + 1);
        for (int64_t i = 0; i < n; i++) ids[i] = k;
        CHECK_OK(ember_freq_add(f, 0, ids, n));
    }
    for (int64_t i = 0; i < 1000; i++) ids[i] = i % 100;
    for (int t = 0; t < 4; t++) {
        if (t > 0) CHECK_OK(ember_freq_add(f, t, ids, 1000));
        CHECK_OK(ember_freq_add(u, t, ids, 1000));
    }
    free(ids);
    ember_dlrm_config c = {.num_tables = 4, .table_rows = rows, .emb_dim = 8, .batch = 64, .freq = f,
                           .sparse_optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}};
    ember_plan_kind got = EMBER_PLAN_KIND_COUNT;
    ember_plan_stats ps[3];
    CHECK_OK(ember_dlrm_plan_choose(&c, 4, kinds, 3, &got, ps));
    CHECK_EQ_INT(got, EMBER_PLAN_MINIMAX);
    CHECK(ps[2].max_lookups < ps[1].max_lookups && ps[2].max_lookups < ps[0].max_lookups);
    CHECK(ps[2].imbalance < 1.05 && ps[0].imbalance > 2 && ps[1].imbalance > 1.5);
    CHECK(ps[2].hot_blocks > 0);
    CHECK_EQ_INT(ps[2].kind, EMBER_PLAN_MINIMAX);
    /* the record bytes of the model's rows (weights + Adagrad state, dim 8 each), as trained */
    CHECK_EQ_INT(ps[0].total_bytes, 1300 * 64);
    fprintf(stderr, "plan choice on 4 ranks: max lookups tablewise %.0f, rowwise %.0f, minimax %.0f\n",
            ps[0].max_lookups, ps[1].max_lookups, ps[2].max_lookups);
    /* the same load everywhere: a tie, the earlier kind */
    c.table_rows = equal, c.freq = u;
    CHECK_OK(ember_dlrm_plan_choose(&c, 4, kinds, 3, &got, NULL));
    CHECK_EQ_INT(got, EMBER_PLAN_TABLEWISE);
    /* without counts: every load 0, the first kind; minimax refused, naming what to give */
    c.freq = NULL;
    got = EMBER_PLAN_KIND_COUNT;
    CHECK_OK(ember_dlrm_plan_choose(&c, 2, kinds + 1, 1, &got, NULL));
    CHECK_EQ_INT(got, EMBER_PLAN_ROWWISE);
    CHECK_STATUS(ember_dlrm_plan_choose(&c, 2, kinds, 3, &got, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "ember_dlrm_plan_choose: plan minimax on 2 ranks needs lookup counts: set freq") !=
          NULL);
    CHECK_STATUS(ember_dlrm_plan_choose(&c, 1, kinds, 2, &got, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_dlrm_plan_choose(&c, 2, kinds, 0, &got, NULL), EMBER_ERR_INVALID_ARGUMENT);
    c.sparse_optim.type = EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD;
    CHECK_STATUS(ember_dlrm_plan_choose(&c, 2, (ember_plan_kind[]){EMBER_PLAN_COLUMNWISE}, 1, &got, NULL),
                 EMBER_ERR_UNSUPPORTED);
    /* counts of ids beyond a table: the plan's error, naming the table */
    c.sparse_optim.type = EMBER_SPARSE_OPTIM_SGD;
    c.table_rows = (const int64_t[4]){1000, 100, 100, 50}, c.freq = f;
    CHECK_STATUS(ember_dlrm_plan_choose(&c, 2, kinds, 3, &got, NULL), EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "table 3") != NULL);
    ember_freq_destroy(f);
    ember_freq_destroy(u);
}

int main(void) {
    test_plan_choose();
    if (!fixture_load(&fx, "ref/dlrm.bin")) {
        CHECK(0);
        return check_summary();
    }
    test_parity();
    test_bad_config();
    test_structure();
    test_cached(EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_CACHE_POLICY_LFU);
    test_cached(EMBER_SPARSE_OPTIM_ADAM, EMBER_CACHE_POLICY_LRU);
    test_cached(EMBER_SPARSE_OPTIM_SGD, EMBER_CACHE_POLICY_LFU);
    test_offload(EMBER_OFFLOAD_AUTO, EMBER_OPTIM_ADAM, 0);
    test_offload(EMBER_OFFLOAD_AUTO, EMBER_OPTIM_ADAGRAD, 1);
    test_offload(EMBER_OFFLOAD_STATIC, EMBER_OPTIM_ADAGRAD, 0);
    test_offload(EMBER_OFFLOAD_STATIC, EMBER_OPTIM_ADAM, 1);
    test_offload_errors();
    fixture_free(&fx);
    return check_summary();
}
