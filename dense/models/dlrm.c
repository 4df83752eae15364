/*
 * DLRM on the graph engine. The embedding bags are one graph node whose backward is
 * the collection's fused sparse update, so one ember_graph_run does forward,
 * backward and the embedding update; the dense optimizer then steps the layers.
 * The interaction reshapes [z | e_1 .. e_T] (B, (T + 1) d) into (B, T + 1, d) without
 * a copy of its own: concat writes the vectors side by side, exactly that layout.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "ember/dlrm.h"

struct ember_dlrm {
    ember_dlrm_config cfg;
    int64_t bottom[EMBER_DLRM_MAX_LAYERS + 1], top[EMBER_DLRM_MAX_LAYERS + 1];
    int nbottom, ntop;
    ember_graph *g;
    ember_ebc *ebc;
    ember_optimizer *opt;
    ember_ebc_binding bind;
    ember_node *dense, *labels, *logits, *loss;
    int64_t step;
};

static int count_layers(const int64_t *l) {
    int n = 0;
    while (n < EMBER_DLRM_MAX_LAYERS && l[n] > 0) n++;
    return n;
}

/* Embedding rows uniform in +-1/sqrt(rows), table by table, in chunks through host f32. */
static ember_status init_tables(ember_dlrm *m, ember_rng *rng) {
    enum { CHUNK = 1 << 14 };
    int d = m->cfg.emb_dim;
    float *buf;
    EMBER_TRY(ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)CHUNK * (size_t)d * sizeof *buf,
                                 (void **)&buf));
    ember_status st = EMBER_OK;
    for (int t = 0; t < m->cfg.num_tables && st == EMBER_OK; t++) {
        int64_t rows = m->cfg.table_rows[t];
        float bound = 1.0f / sqrtf((float)rows);
        for (int64_t r = 0; r < rows && st == EMBER_OK; r += CHUNK) {
            int64_t n = rows - r < CHUNK ? rows - r : CHUNK;
            ember_tensor *v;
            st = ember_tensor_wrap(buf, EMBER_DTYPE_F32, 1, (int64_t[]){n * d}, NULL, EMBER_CPU, &v);
            if (st == EMBER_OK) st = ember_rng_uniform(rng, v, -bound, bound);
            ember_tensor_destroy(v);
            if (st == EMBER_OK) st = ember_ebc_write_rows(m->ebc, t, r, n, buf);
        }
    }
    ember_memory_free(NULL, buf);
    return st;
}

static ember_status build(ember_dlrm *m) {
    const ember_dlrm_config *c = &m->cfg;
    ember_graph *g = m->g;
    ember_rng rng = {.seed = c->seed};
    int64_t B = c->batch, d = c->emb_dim, T = c->num_tables;
    ember_node *z, *e, *cat, *t3, *inter, *cat2, *h;
    EMBER_TRY(ember_graph_input(g, "dense", EMBER_DTYPE_F32, 2, (int64_t[]){B, c->num_dense}, &m->dense));
    EMBER_TRY(ember_graph_input(g, "labels", EMBER_DTYPE_F32, 2, (int64_t[]){B, 1}, &m->labels));
    int64_t bdims[EMBER_DLRM_MAX_LAYERS + 1] = {c->num_dense};
    memcpy(bdims + 1, m->bottom, (size_t)m->nbottom * sizeof *bdims);
    EMBER_TRY(ember_mlp(g, m->dense,
                        &(ember_mlp_params){.dims = bdims, .nlayers = m->nbottom, .act = EMBER_ACT_RELU,
                                            .last_act = EMBER_ACT_RELU, .name = "bottom", .rng = &rng},
                        &z));
    EMBER_TRY(init_tables(m, &rng));
    EMBER_TRY(ember_embedding_bag(g, &(ember_embedding_bag_params){.ebc = m->ebc, .batch = B, .bind = &m->bind}, &e));
    EMBER_TRY(ember_op_concat(g, (ember_node *[]){z, e}, 2, 1, &cat));        /* (B, (T + 1) d) */
    EMBER_TRY(ember_op_reshape(g, cat, 3, (int64_t[]){B, T + 1, d}, &t3));     /* (B, T + 1, d) */
    EMBER_TRY(ember_op_interaction(g, t3, &inter));                           /* (B, (T + 1) T / 2) */
    EMBER_TRY(ember_op_concat(g, (ember_node *[]){z, inter}, 2, 1, &cat2));
    int64_t tdims[EMBER_DLRM_MAX_LAYERS + 1] = {d + (T + 1) * T / 2};
    memcpy(tdims + 1, m->top, (size_t)m->ntop * sizeof *tdims);
    EMBER_TRY(ember_mlp(g, cat2,
                        &(ember_mlp_params){.dims = tdims, .nlayers = m->ntop, .act = EMBER_ACT_RELU,
                                            .name = "top", .rng = &rng},
                        &h));
    m->logits = h;
    EMBER_TRY(ember_graph_mark_output(g, h));
    EMBER_TRY(ember_op_bce_with_logits(g, h, m->labels, &m->loss));
    EMBER_TRY(ember_graph_build_backward(g, m->loss));
    ember_optimizer_config oc = c->dense_optim;
    if (oc.lr == 0 && oc.schedule.base_lr == 0) {
        ember_optim_kind kind = oc.kind;
        oc = ember_optimizer_defaults(kind);
        oc.lr = c->sparse_lr;
    }
    return ember_graph_optimizer_create(g, &oc, &m->opt);
}

ember_status ember_dlrm_create(const ember_dlrm_config *cfg, ember_dlrm **out) {
    static const char fn[] = "ember_dlrm_create";
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    ember_dlrm_config c = *cfg;
    if (!c.num_dense) c.num_dense = 13;
    if (!c.emb_dim) c.emb_dim = 64;
    if (!c.sparse_lr) c.sparse_lr = 0.01f;
    if (c.num_dense < 1 || c.num_tables < 1 || c.emb_dim < 1 || c.batch < 1 || !c.table_rows)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: num_dense %d, num_tables %d, emb_dim %d, batch %lld and table_rows must be set", fn,
                            c.num_dense, c.num_tables, c.emb_dim, (long long)c.batch);
    ember_dlrm *m = calloc(1, sizeof *m);
    if (!m) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    m->cfg = c;
    m->nbottom = count_layers(c.bottom);
    if (!m->nbottom) {
        int64_t def[] = {512, 256, c.emb_dim};
        memcpy(m->bottom, def, sizeof def);
        m->nbottom = 3;
    } else {
        memcpy(m->bottom, c.bottom, (size_t)m->nbottom * sizeof *m->bottom);
    }
    m->ntop = count_layers(c.top);
    if (!m->ntop) {
        int64_t def[] = {1024, 1024, 512, 256, 1};
        memcpy(m->top, def, sizeof def);
        m->ntop = 5;
    } else {
        memcpy(m->top, c.top, (size_t)m->ntop * sizeof *m->top);
    }
    ember_status st = EMBER_OK;
    if (m->bottom[m->nbottom - 1] != c.emb_dim)
        st = ember__error(EMBER_ERR_SHAPE, "%s: the bottom MLP ends with %lld but the dot interaction needs emb_dim %d",
                          fn, (long long)m->bottom[m->nbottom - 1], c.emb_dim);
    else if (m->top[m->ntop - 1] != 1)
        st = ember__error(EMBER_ERR_SHAPE, "%s: the top MLP must end with 1 output, not %lld", fn,
                          (long long)m->top[m->ntop - 1]);
    ember_ebc_table_config *tabs = st == EMBER_OK ? calloc((size_t)c.num_tables, sizeof *tabs) : NULL;
    if (st == EMBER_OK && !tabs) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tables", fn);
    for (int t = 0; st == EMBER_OK && t < c.num_tables; t++)
        tabs[t] = (ember_ebc_table_config){.rows = c.table_rows[t], .dim = c.emb_dim, .format = c.row_format};
    if (st == EMBER_OK)
        st = ember_ebc_create(&(ember_ebc_config){.num_tables = c.num_tables, .tables = tabs, .optim = c.sparse_optim,
                                                  .mm = c.mm, .tier = c.tier},
                              &m->ebc);
    free(tabs);
    if (st == EMBER_OK) st = ember_graph_create(&(ember_graph_params){.mm = c.mm, .tier = c.tier, .seed = c.seed}, &m->g);
    if (st == EMBER_OK) st = build(m);
    if (st != EMBER_OK) {
        ember_dlrm_destroy(m);
        return st;
    }
    *out = m;
    return EMBER_OK;
}

void ember_dlrm_destroy(ember_dlrm *m) {
    if (!m) return;
    ember_optimizer_destroy(m->opt);
    ember_graph_destroy(m->g);
    ember_ebc_destroy(m->ebc);
    free(m);
}

/* Copy a host array into an input node's value (any device). */
static ember_status feed(ember_node *n, const float *host) {
    ember_tensor *dst, *src;
    EMBER_TRY(ember_node_value(n, &dst));
    EMBER_TRY(ember_tensor_wrap((void *)host, EMBER_DTYPE_F32, ember_tensor_ndim(dst), ember_tensor_shape(dst), NULL,
                                EMBER_CPU, &src));
    ember_status st = ember_tensor_copy(dst, src);
    ember_tensor_destroy(src);
    return st;
}

static ember_status read_scalar(ember_node *n, float *out) {
    ember_tensor *v, *h;
    EMBER_TRY(ember_node_value(n, &v));
    EMBER_TRY(ember_tensor_wrap(out, EMBER_DTYPE_F32, 0, NULL, NULL, EMBER_CPU, &h));
    ember_status st = ember_tensor_copy(h, v);
    ember_tensor_destroy(h);
    return st;
}

ember_status ember_dlrm_train_step(ember_dlrm *m, const float *dense, const ember_jagged *sparse,
                                   const float *labels, float *loss) {
    static const char fn[] = "ember_dlrm_train_step";
    EMBER_CHECK_NULL(m, fn);
    EMBER_CHECK_NULL(dense, fn);
    EMBER_CHECK_NULL(sparse, fn);
    EMBER_CHECK_NULL(labels, fn);
    if (sparse->batch != m->cfg.batch || sparse->num_features != m->cfg.num_tables)
        return ember__error(EMBER_ERR_SHAPE, "%s: the batch has %lld samples of %d features; the model takes %lld of %d",
                            fn, (long long)sparse->batch, sparse->num_features, (long long)m->cfg.batch,
                            m->cfg.num_tables);
    EMBER_TRY(feed(m->dense, dense));
    EMBER_TRY(feed(m->labels, labels));
    m->bind.batch = sparse;
    m->bind.call.lr = m->cfg.sparse_lr;
    m->bind.call.step = ++m->step;
    ember_graph_set_training(m->g, 1);
    EMBER_TRY(ember_graph_run(m->g));
    EMBER_TRY(ember_optimizer_step(m->opt));
    return loss ? read_scalar(m->loss, loss) : EMBER_OK;
}

ember_status ember_dlrm_predict(ember_dlrm *m, const float *dense, const ember_jagged *sparse, float *probs) {
    static const char fn[] = "ember_dlrm_predict";
    EMBER_CHECK_NULL(m, fn);
    EMBER_CHECK_NULL(dense, fn);
    EMBER_CHECK_NULL(sparse, fn);
    EMBER_CHECK_NULL(probs, fn);
    EMBER_TRY(feed(m->dense, dense));
    m->bind.batch = sparse;
    ember_graph_set_training(m->g, 0);
    EMBER_TRY(ember_graph_forward(m->g));
    ember_tensor *v, *h;
    EMBER_TRY(ember_node_value(m->logits, &v));
    EMBER_TRY(ember_tensor_wrap(probs, EMBER_DTYPE_F32, 2, (int64_t[]){m->cfg.batch, 1}, NULL, EMBER_CPU, &h));
    ember_status st = ember_tensor_copy(h, v);
    ember_tensor_destroy(h);
    for (int64_t i = 0; st == EMBER_OK && i < m->cfg.batch; i++) probs[i] = 1.0f / (1.0f + expf(-probs[i]));
    return st;
}

ember_graph *ember_dlrm_graph(ember_dlrm *m) { return m ? m->g : NULL; }
ember_ebc *ember_dlrm_tables(ember_dlrm *m) { return m ? m->ebc : NULL; }
ember_optimizer *ember_dlrm_optimizer(ember_dlrm *m) { return m ? m->opt : NULL; }
