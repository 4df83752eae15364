/*
 * DLRM against PyTorch (tests/ref/dlrm.bin, written by tests/ref/gen_dlrm.py): the same
 * small model from the same weights on the same 20 batches, with SGD and with Adagrad
 * for dense layers and embedding rows alike; every step's loss and the final tables.
 *
 * Tolerance 1e-4 relative on losses (the bound): both sides compute in f32,
 * with summation orders that differ (BLAS, double accumulators in ember's reductions),
 * and 20 steps of training let those ulp-level differences compound.
 */
#include "check.h"
#include "fixture.h"

static fixture fx;

static const fixture_tensor *get(const char *fmt, int a) {
    char name[64];
    snprintf(name, sizeof name, fmt, a);
    const fixture_tensor *t = fixture_get(&fx, name);
    CHECK(t != NULL);
    return t;
}

static void load_param(ember_graph *g, const char *name) {
    ember_node *n;
    ember_tensor *v;
    const fixture_tensor *r = fixture_get(&fx, name);
    CHECK_OK(ember_graph_find(g, name, &n));
    if (!r || !n) return;
    CHECK_OK(ember_node_value(n, &v));
    CHECK_EQ_INT(ember_tensor_numel(v), r->numel);
    memcpy(ember_tensor_data(v), r->data, ember_tensor_nbytes(v));
}

static void run(const char *optname, ember_optim_kind dense_kind, ember_sparse_optim sparse_kind) {
    static const int64_t rows[3] = {10, 7, 5};
    ember_dlrm_config cfg = {.num_dense = 4, .num_tables = 3, .table_rows = rows, .emb_dim = 4,
                             .bottom = {8, 4}, .top = {8, 1}, .batch = 8, .sparse_lr = 0.1f, .seed = 1,
                             .sparse_optim = {.type = sparse_kind}};
    cfg.dense_optim = ember_optimizer_defaults(dense_kind);
    cfg.dense_optim.lr = 0.1;
    ember_dlrm *m = NULL;
    CHECK_OK(ember_dlrm_create(&cfg, &m));
    if (!m) return;
    ember_graph *g = ember_dlrm_graph(m);
    const char *params[] = {"bottom.0.weight", "bottom.0.bias", "bottom.1.weight", "bottom.1.bias",
                            "top.0.weight",    "top.0.bias",    "top.1.weight",    "top.1.bias"};
    for (int i = 0; i < 8; i++) load_param(g, params[i]);
    for (int t = 0; t < 3; t++) {
        const fixture_tensor *tab = get("table%d", t);
        if (tab) CHECK_OK(ember_ebc_write_rows(ember_dlrm_tables(m), t, 0, rows[t], tab->data));
    }
    char name[64];
    snprintf(name, sizeof name, "%s.losses", optname);
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
            fprintf(stderr, "%s step %d: loss %.8g torch %.8g\n", optname, s, loss, want);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    for (int t = 0; t < 3; t++) {
        float w[40];
        snprintf(name, sizeof name, "%s.final_table%%d", optname);
        const fixture_tensor *ref = get(name, t);
        CHECK_OK(ember_ebc_read_rows(ember_dlrm_tables(m), t, 0, rows[t], w));
        if (ref) CHECK_NEAR_ARRAY(w, (const float *)ref->data, ref->numel, 2e-5);
    }
    ember_dlrm_destroy(m);
}

static void test_bad_config(void) {
    ember_dlrm *m = (ember_dlrm *)1;
    static const int64_t rows[2] = {10, 10};
    CHECK_STATUS(ember_dlrm_create(&(ember_dlrm_config){.num_tables = 0, .batch = 4}, &m), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
    CHECK_STATUS(ember_dlrm_create(&(ember_dlrm_config){.num_tables = 2, .table_rows = rows, .emb_dim = 8,
                                                        .bottom = {16, 4}, .batch = 4},
                                   &m),
                 EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "emb_dim 8") != NULL);
    CHECK_STATUS(ember_dlrm_create(&(ember_dlrm_config){.num_tables = 2, .table_rows = rows, .emb_dim = 4,
                                                        .bottom = {4}, .top = {8, 2}, .batch = 4},
                                   &m),
                 EMBER_ERR_SHAPE);
}

/* The same model with its tables behind a small cache (look-ahead 2, batches submitted
   ahead) trains bit for bit as the resident one, through many evictions. */
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
    for (int t = 0; t < T; t++) {
        static float w0[400 * 4], w1[400 * 4], s0[400 * 8], s1[400 * 8];
        int64_t sf = ember_dlrm_state_floats(m, t);
        CHECK_OK(ember_dlrm_read_table(ref, t, 0, rows[t], w0, s0));
        CHECK_OK(ember_dlrm_read_table(m, t, 0, rows[t], w1, s1));
        CHECK(memcmp(w0, w1, (size_t)rows[t] * 4 * sizeof *w0) == 0);
        CHECK(memcmp(s0, s1, (size_t)(rows[t] * sf) * sizeof *s0) == 0);
    }
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

int main(void) {
    if (!fixture_load(&fx, "ref/dlrm.bin")) {
        CHECK(0);
        return check_summary();
    }
    run("sgd", EMBER_OPTIM_SGD, EMBER_SPARSE_OPTIM_SGD);
    run("adagrad", EMBER_OPTIM_ADAGRAD, EMBER_SPARSE_OPTIM_ADAGRAD);
    test_bad_config();
    test_cached(EMBER_SPARSE_OPTIM_ADAGRAD, EMBER_CACHE_POLICY_LFU);
    test_cached(EMBER_SPARSE_OPTIM_ADAM, EMBER_CACHE_POLICY_LRU);
    test_cached(EMBER_SPARSE_OPTIM_SGD, EMBER_CACHE_POLICY_LFU);
    fixture_free(&fx);
    return check_summary();
}
