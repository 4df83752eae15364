/*
 * DLRM on the graph engine. The embedding bags are one graph node whose backward is
 * the collection's fused sparse update, so one ember_graph_run does forward,
 * backward and the embedding update; the dense optimizer then steps the layers.
 * The cross layers start from [z | e_1 .. e_T] (B, d_z + sum d_t), which concat writes
 * with the vectors side by side. The dot interactions are one op over z and e
 * (ember_op_dot_interaction) whose output is the top MLP's input [z | pairs]: the
 * reference's two concatenations are never written, with the same bits.
 *
 * With offload the same graph runs under the heterogeneous memory manager's executor
 * hook: it adopts only the parameters (their gradients and optimizer state), so the
 * embedding-bag node, which holds no graph parameter, runs and updates its rows as it
 * would without it; the manager's per-chunk optimizers replace the dense optimizer.
 *
 * On N ranks the node's collection is an ember_sharded_ebc behind an ember_ebc_backend
 * (each rank's shard resident, or with config.cache behind the rank's own cache, which
 * the collection drives itself: the model's `cache` field and look-ahead queue are for
 * one process) and the dense half runs under ember_ddp. The sharded collection gets a
 * communicator of its own (a split of the model's): its blocking all-to-alls in backward
 * then never interleave with the ddp buckets' all-reduces in flight on the model's
 * communicator.
 */
#include <assert.h>
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
    ember_ebc *ebc;              /* resident tables, or the cache's compute collection */
    ember_cache *cache;          /* NULL: resident */
    const ember_jagged *queue[64]; /* submitted to the cache, oldest first */
    int qhead, qlen;
    int64_t *rows; /* owned copies of the config's arrays */
    int *dims;
    ember_optimizer *opt;        /* NULL with offload */
    ember_offload *off;          /* config.offload: the dense model data's manager */
    ember_ebc_binding bind;
    ember_node *dense, *labels, *logits, *loss;
    int64_t step;
    /* N ranks (world > 1) */
    int rank, world;
    ember_comm *ecomm;           /* the embeddings' communicator (owned) */
    ember_plan *plan;
    ember_sharded_ebc *sh;
    ember_ebc_backend be;
    ember_ddp *ddp;
    int *sf;                     /* (num_tables,) optimizer state floats per row */
};

static int count_layers(const int64_t *l) {
    int n = 0;
    while (n < EMBER_DLRM_MAX_LAYERS && l[n] > 0) n++;
    return n;
}

/* Embedding rows uniform in +-1/sqrt(rows), table by table, in chunks through host f32. */
static ember_status init_tables(ember_dlrm *m, ember_rng *rng) {
    enum { CHUNK = 1 << 14 };
    int dmax = 1;
    for (int t = 0; t < m->cfg.num_tables; t++) dmax = m->dims[t] > dmax ? m->dims[t] : dmax;
    float *buf;
    EMBER_TRY(ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)CHUNK * (size_t)dmax * sizeof *buf,
                                 (void **)&buf));
    ember_status st = EMBER_OK;
    for (int t = 0; t < m->cfg.num_tables && st == EMBER_OK; t++) {
        int64_t rows = m->cfg.table_rows[t], d = m->dims[t];
        float bound = 1.0f / sqrtf((float)rows);
        for (int64_t r = 0; r < rows && st == EMBER_OK; r += CHUNK) {
            int64_t n = rows - r < CHUNK ? rows - r : CHUNK;
            ember_tensor *v;
            st = ember_tensor_wrap(buf, EMBER_DTYPE_F32, 1, (int64_t[]){n * d}, NULL, EMBER_CPU, &v);
            if (st == EMBER_OK) st = ember_rng_uniform(rng, v, -bound, bound);
            ember_tensor_destroy(v);
            /* keep_tables: the stream still advances, so every later parameter draws as usual */
            if (st == EMBER_OK && !m->cfg.keep_tables) st = ember_dlrm_write_table(m, t, r, n, buf, NULL);
        }
    }
    ember_memory_free(NULL, buf);
    return st;
}

/* A cross-layer parameter, Xavier-normal (std sqrt(2 / (fan_in + fan_out))) or zero. */
static ember_status dcn_param(ember_graph *g, int layer, const char *what, int ndim, const int64_t *shape,
                              ember_rng *rng, ember_node **out) {
    char name[64];
    snprintf(name, sizeof name, "dcn.%d.%s", layer, what);
    EMBER_TRY(ember_graph_param(g, name, EMBER_DTYPE_F32, ndim, shape, out));
    if (ndim == 1) return EMBER_OK; /* bias: zero-filled already */
    return ember_rng_normal(rng, (*out)->value, 0.0f, sqrtf(2.0f / (float)(shape[0] + shape[1])));
}

/* x_{l+1} = x0 * (x_l W_l + b_l) + x_l, W_l = V_l U_l when low-rank; x0 (B, N). */
static ember_status build_dcn(ember_dlrm *m, ember_node *x0, ember_rng *rng, ember_node **out) {
    ember_graph *g = m->g;
    int64_t n = x0->shape[1], r = m->cfg.dcn_rank;
    ember_node *xl = x0;
    for (int l = 0; l < m->cfg.dcn_layers; l++) {
        ember_node *w, *u, *v, *b, *h, *hu, *hb, *x0h;
        if (r == 0) {
            EMBER_TRY(dcn_param(g, l, "weight", 2, (int64_t[]){n, n}, rng, &w));
            EMBER_TRY(dcn_param(g, l, "bias", 1, (int64_t[]){n}, rng, &b));
            EMBER_TRY(ember_op_cross(g, x0, xl, w, b, &xl));
            continue;
        }
        EMBER_TRY(dcn_param(g, l, "v", 2, (int64_t[]){n, r}, rng, &v));
        EMBER_TRY(dcn_param(g, l, "u", 2, (int64_t[]){r, n}, rng, &u));
        EMBER_TRY(dcn_param(g, l, "bias", 1, (int64_t[]){n}, rng, &b));
        EMBER_TRY(ember_op_matmul(g, xl, v, 0, 0, &h));  /* (B, r) */
        EMBER_TRY(ember_op_matmul(g, h, u, 0, 0, &hu));  /* (B, N) */
        EMBER_TRY(ember_op_add(g, hu, b, &hb));
        EMBER_TRY(ember_op_mul(g, x0, hb, &x0h));
        EMBER_TRY(ember_op_add(g, x0h, xl, &xl));
    }
    *out = xl;
    return EMBER_OK;
}

static ember_status build(ember_dlrm *m) {
    const ember_dlrm_config *c = &m->cfg;
    ember_graph *g = m->g;
    ember_rng rng = {.seed = c->seed};
    int64_t B = c->batch;
    ember_node *z, *e, *cat, *top_in, *h;
    EMBER_TRY(ember_graph_input(g, "dense", EMBER_DTYPE_F32, 2, (int64_t[]){B, c->num_dense}, &m->dense));
    EMBER_TRY(ember_graph_input(g, "labels", EMBER_DTYPE_F32, 2, (int64_t[]){B, 1}, &m->labels));
    int64_t bdims[EMBER_DLRM_MAX_LAYERS + 1] = {c->num_dense};
    memcpy(bdims + 1, m->bottom, (size_t)m->nbottom * sizeof *bdims);
    EMBER_TRY(ember_mlp(g, m->dense,
                        &(ember_mlp_params){.dims = bdims, .nlayers = m->nbottom, .act = EMBER_ACT_RELU,
                                            .last_act = EMBER_ACT_RELU, .name = "bottom", .rng = &rng},
                        &z));
    EMBER_TRY(init_tables(m, &rng));
    EMBER_TRY(ember_embedding_bag(g,
                                  &(ember_embedding_bag_params){.ebc = m->sh ? NULL : m->ebc, .batch = B,
                                                                .bind = &m->bind, .backend = m->sh ? &m->be : NULL},
                                  &e));
    if (c->interaction == EMBER_DLRM_DCN) {
        EMBER_TRY(ember_op_concat(g, (ember_node *[]){z, e}, 2, 1, &cat)); /* (B, d_z + sum d_t) */
        EMBER_TRY(build_dcn(m, cat, &rng, &top_in));                        /* (B, d_z + sum d_t) */
    } else {
        /* [z | pairs of z, e_1 .. e_T]: (B, d + (T + 1) T / 2), (T + 2) (T + 1) / 2 with the
           diagonal; neither concatenation is written */
        EMBER_TRY(ember_op_dot_interaction(g, z, e, c->interaction == EMBER_DLRM_DOT_SELF, &top_in));
    }
    int64_t tdims[EMBER_DLRM_MAX_LAYERS + 1] = {top_in->shape[1]};
    memcpy(tdims + 1, m->top, (size_t)m->ntop * sizeof *tdims);
    EMBER_TRY(ember_mlp(g, top_in,
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
    if (m->sh) {
        /* every rank drew the same parameters from the same seed: no broadcast needed */
        EMBER_TRY(ember_ddp_create(g, c->comm, &(ember_ddp_config){.no_broadcast = 1}, &m->ddp));
        return ember_ddp_optimizer_create(m->ddp, &oc, &m->opt);
    }
    if (c->offload) {
        /* the manager adopts the parameters and gradients and makes the optimizer state in
           its chunks (one optimizer per chunk); mm NULL is the graph's, the model's */
        ember_offload_config ofc = *c->offload;
        ofc.graph = g;
        ofc.optim = &oc;
        return ember_offload_create(&ofc, &m->off);
    }
    return ember_graph_optimizer_create(g, &oc, &m->opt);
}

/* ---- the sharded collection behind the embedding-bag node ---- */

static ember_status sh_forward(void *ctx, const ember_jagged *batch, ember_tensor *out, const ember_ebc_call *call) {
    (void)call; /* lr and step are for backward; trusted ids are not claimed here */
    return ember_sharded_ebc_forward(ctx, batch, out, NULL);
}

static ember_status sh_backward(void *ctx, const ember_jagged *batch, const ember_tensor *grad_out,
                                const ember_ebc_call *call) {
    (void)batch; /* the collection kept the exchange of its forward */
    return ember_sharded_ebc_backward(ctx, grad_out, &(ember_ebc_call){.lr = call->lr, .step = call->step});
}

/*
 * The plan of kind for the tables of c (defaults filled in; dims (num_tables)) on world
 * ranks: one function for ember_dlrm_create and ember_dlrm_plan_choose, so that a plan
 * compared before training is the plan trained with. Rows are charged their whole
 * record (weights + optimizer state); memory is reported, not enforced (the tables are
 * resident on each rank); minimax replicates hot rows when that lowers the maximum load.
 */
static ember_status plan_build(const ember_dlrm_config *c, const int *dims, int world, ember_plan_kind kind,
                               const char *fn, ember_plan **out) {
    *out = NULL;
    if ((unsigned)kind >= EMBER_PLAN_KIND_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: plan %d is not an ember_plan_kind (tablewise, rowwise, columnwise or minimax)", fn,
                            (int)kind);
    if (kind == EMBER_PLAN_MINIMAX && !c->freq)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: plan minimax on %d ranks needs lookup counts: set freq to an ember_freq of the "
                            "training data (`ember count -o FILE`, then ember_freq_load)",
                            fn, world);
    if (kind == EMBER_PLAN_COLUMNWISE) {
        /* each slice would keep its own row state, row norm or row scale */
        const char *whole = c->sparse_optim.type == EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD ? "rowwise Adagrad"
                            : c->sparse_optim.max_grad_norm > 0                        ? "max_grad_norm"
                            : c->row_format == EMBER_ROW_FORMAT_INT8_ROWWISE           ? "int8-rowwise rows"
                                                                                       : NULL;
        if (whole)
            return ember__error(EMBER_ERR_UNSUPPORTED,
                                "%s: plan columnwise: %s needs whole rows, which column slices do not hold (take "
                                "tablewise, rowwise or minimax)",
                                fn, whole);
    }
    ember_plan_table *pt = calloc((size_t)c->num_tables, sizeof *pt);
    if (!pt) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: plan of %d tables", fn, c->num_tables);
    ember_status st = EMBER_OK;
    for (int t = 0; t < c->num_tables && st == EMBER_OK; t++) {
        ember_ebc_table_info ti = {0};
        if (c->table_rows[t] > 0 && dims[t] > 0)
            st = ember_ebc_record_layout(&(ember_ebc_table_config){.rows = c->table_rows[t], .dim = dims[t],
                                                                   .format = c->row_format},
                                         &c->sparse_optim, 0, &ti);
        pt[t] = (ember_plan_table){.rows = c->table_rows[t], .dim = dims[t], .row_bytes = (int64_t)ti.record_bytes};
    }
    if (st == EMBER_OK)
        st = ember_plan_build(&(ember_plan_params){.kind = kind, .world = world, .num_tables = c->num_tables,
                                                   .tables = pt, .freq = c->freq, .mm = c->mm,
                                                   .budget = EMBER_PLAN_BUDGET_REPORT},
                              out);
    free(pt);
    return st;
}

ember_status ember_dlrm_plan_choose(const ember_dlrm_config *cfg, int world, const ember_plan_kind *kinds, int n,
                                    ember_plan_kind *out, ember_plan_stats *stats) {
    static const char fn[] = "ember_dlrm_plan_choose";
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(kinds, fn);
    EMBER_CHECK_NULL(out, fn);
    if (n < 1 || world < 2 || world > EMBER_PLAN_MAX_WORLD)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %d kinds on %d ranks (at least 1 kind, 2 .. %d ranks)",
                            fn, n, world, EMBER_PLAN_MAX_WORLD);
    if (cfg->num_tables < 1 || !cfg->table_rows)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: num_tables %d and table_rows must be set", fn,
                            cfg->num_tables);
    int *dims = malloc((size_t)cfg->num_tables * sizeof *dims);
    if (!dims) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d tables", fn, cfg->num_tables);
    for (int t = 0; t < cfg->num_tables; t++)
        dims[t] = cfg->table_dims ? cfg->table_dims[t] : cfg->emb_dim ? cfg->emb_dim : 64;
    ember_status st = EMBER_OK;
    double best = 0;
    for (int i = 0; i < n && st == EMBER_OK; i++) {
        ember_plan *plan = NULL;
        ember_plan_stats ps;
        st = plan_build(cfg, dims, world, kinds[i], fn, &plan);
        if (st == EMBER_OK) st = ember_plan_get_stats(plan, cfg->batch > 0 ? cfg->batch : 1, &ps, NULL);
        ember_plan_destroy(plan);
        if (st != EMBER_OK) break;
        if (stats) stats[i] = ps;
        if (i == 0 || ps.max_lookups < best) {
            best = ps.max_lookups;
            *out = kinds[i];
        }
    }
    free(dims);
    return st;
}

/* The sharded tables, each rank's shard resident or behind its own cache (cache: the
   caller's config, read here; ember_sharded_ebc's "Cached shards"). */
static ember_status create_sharded(ember_dlrm *m, const ember_ebc_table_config *tabs,
                                   const ember_cache_config *cache, const char *fn) {
    const ember_dlrm_config *c = &m->cfg;
    EMBER_TRY(plan_build(c, m->dims, m->world, c->plan, fn, &m->plan));
    EMBER_TRY(ember_comm_split(c->comm, 0, m->rank, &m->ecomm));
    EMBER_TRY(ember_sharded_ebc_create(m->ecomm, &(ember_sharded_ebc_config){.plan = m->plan,
                                                                            .num_tables = c->num_tables,
                                                                            .tables = tabs, .optim = c->sparse_optim,
                                                                            .mm = c->mm, .cache = cache},
                                       &m->sh));
    m->ebc = ember_sharded_ebc_local(m->sh);
    m->be = (ember_ebc_backend){.ctx = m->sh, .forward = sh_forward, .backward = sh_backward,
                                .output_dim = ember_sharded_ebc_output_dim(m->sh)};
    return EMBER_OK;
}

/* The layer sizes and dims against the interaction (after the defaults are filled in). */
static ember_status check_shapes(const ember_dlrm *m, const char *fn) {
    const ember_dlrm_config *c = &m->cfg;
    static const char *const names[] = {"EMBER_DLRM_DOT", "EMBER_DLRM_DOT_SELF", "EMBER_DLRM_DCN"};
    const char *inter = names[c->interaction];
    for (int t = 0; t < c->num_tables; t++) {
        if (m->dims[t] < 1)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table_dims[%d] is %d; dims must be >= 1", fn, t,
                                m->dims[t]);
        if (c->interaction != EMBER_DLRM_DCN && m->dims[t] != c->emb_dim)
            return ember__error(EMBER_ERR_SHAPE,
                                "%s: table_dims[%d] is %d but %s needs every table at emb_dim %d (per-table dims "
                                "need EMBER_DLRM_DCN)",
                                fn, t, m->dims[t], inter, c->emb_dim);
    }
    if (c->interaction != EMBER_DLRM_DCN && m->bottom[m->nbottom - 1] != c->emb_dim)
        return ember__error(EMBER_ERR_SHAPE, "%s: the bottom MLP ends with %lld but %s needs emb_dim %d", fn,
                            (long long)m->bottom[m->nbottom - 1], inter, c->emb_dim);
    if (m->top[m->ntop - 1] != 1)
        return ember__error(EMBER_ERR_SHAPE, "%s: the top MLP must end with 1 output, not %lld", fn,
                            (long long)m->top[m->ntop - 1]);
    return EMBER_OK;
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
    if ((unsigned)c.interaction >= EMBER_DLRM_INTERACTION_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: interaction %d is not an ember_dlrm_interaction", fn,
                            (int)c.interaction);
    if (c.interaction != EMBER_DLRM_DCN && (c.dcn_layers || c.dcn_rank))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "%s: dcn_layers %d and dcn_rank %d are for interaction EMBER_DLRM_DCN only", fn,
                            c.dcn_layers, c.dcn_rank);
    if (c.dcn_layers < 0 || c.dcn_rank < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: dcn_layers %d and dcn_rank %d must be >= 0", fn,
                            c.dcn_layers, c.dcn_rank);
    if (c.interaction == EMBER_DLRM_DCN && !c.dcn_layers) c.dcn_layers = 3;
    ember_dlrm *m = calloc(1, sizeof *m);
    if (!m) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    m->cfg = c;
    m->cfg.cache = NULL; /* used only here */
    m->rows = malloc((size_t)c.num_tables * sizeof *m->rows);
    m->dims = malloc((size_t)c.num_tables * sizeof *m->dims);
    if (!m->rows || !m->dims) {
        ember_dlrm_destroy(m);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d tables", fn, c.num_tables);
    }
    for (int t = 0; t < c.num_tables; t++) {
        m->rows[t] = c.table_rows[t];
        m->dims[t] = c.table_dims ? c.table_dims[t] : c.emb_dim;
    }
    m->cfg.table_rows = m->rows;
    m->cfg.table_dims = c.table_dims ? m->dims : NULL;
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
    ember_status st = check_shapes(m, fn);
    ember_ebc_table_config *tabs = st == EMBER_OK ? calloc((size_t)c.num_tables, sizeof *tabs) : NULL;
    if (st == EMBER_OK && !tabs) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tables", fn);
    for (int t = 0; st == EMBER_OK && t < c.num_tables; t++)
        tabs[t] = (ember_ebc_table_config){.rows = c.table_rows[t], .dim = m->dims[t], .format = c.row_format};
    ember_ebc_config ec = {.num_tables = c.num_tables, .tables = tabs, .optim = c.sparse_optim, .mm = c.mm,
                           .tier = c.tier};
    m->sf = st == EMBER_OK ? calloc((size_t)c.num_tables, sizeof *m->sf) : NULL;
    if (st == EMBER_OK && !m->sf) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tables", fn);
    for (int t = 0; st == EMBER_OK && t < c.num_tables; t++) {
        ember_ebc_table_info ti;
        st = ember_ebc_record_layout(&tabs[t], &c.sparse_optim, 0, &ti);
        m->sf[t] = ti.state_floats;
    }
    m->rank = ember_comm_rank(c.comm);
    m->world = ember_comm_size(c.comm);
    if (st == EMBER_OK && m->world > 1 && c.offload)
        st = ember__error(EMBER_ERR_UNSUPPORTED, "%s: offload of the dense layers on %d ranks is not supported yet "
                                                 "(offload must be NULL)", fn, m->world);
    if (st == EMBER_OK && m->world > 1) {
        st = create_sharded(m, tabs, c.cache, fn);
    } else if (st == EMBER_OK && c.cache) {
        ember_cache_config cc = *c.cache;
        cc.collection = ec;
        st = ember_cache_create(&cc, &m->cache);
        if (st == EMBER_OK) m->ebc = ember_cache_collection(m->cache);
    } else if (st == EMBER_OK) {
        st = ember_ebc_create(&ec, &m->ebc);
    }
    free(tabs);
    if (st == EMBER_OK) st = ember_graph_create(&(ember_graph_params){.mm = c.mm, .tier = c.tier, .seed = c.seed}, &m->g);
    if (st == EMBER_OK) st = build(m);
    m->cfg.offload = NULL; /* used only here */
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
    ember_offload_destroy(m->off); /* before the graph, whose tensors it gives back */
    ember_ddp_destroy(m->ddp);
    ember_graph_destroy(m->g);
    if (m->cache) ember_cache_destroy(m->cache);
    else if (m->sh) ember_sharded_ebc_destroy(m->sh); /* owns the local shard m->ebc */
    else ember_ebc_destroy(m->ebc);
    ember_comm_destroy(m->ecomm);
    ember_plan_destroy(m->plan);
    free(m->sf);
    free(m->rows);
    free(m->dims);
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
    ember_cache_batch *cb = NULL;
    if (m->cache) {
        if (m->qlen) {
            if (m->queue[m->qhead] != sparse)
                return ember__error(EMBER_ERR_STATE,
                                    "%s: batches were submitted ahead; train them in order (this is not the "
                                    "oldest of the %d pending)",
                                    fn, m->qlen);
            m->qhead = (m->qhead + 1) % (int)(sizeof m->queue / sizeof *m->queue);
            m->qlen--;
            EMBER_TRY(ember_cache_next(m->cache, &cb));
        } else {
            EMBER_TRY(ember_cache_prepare(m->cache, sparse, &cb));
        }
        m->bind.batch = &cb->jagged;
        m->bind.call.rows = cb->rows;
        m->bind.call.trusted = 1;
    } else {
        m->bind.batch = sparse;
    }
    m->bind.call.lr = m->cfg.sparse_lr;
    m->bind.call.step = ++m->step;
    ember_graph_set_training(m->g, 1);
    if (m->ddp) {
        /* forward, backward with the buckets all-reduced as they fill, the dense step */
        EMBER_TRY(ember_ddp_step(m->ddp, m->opt));
        if (!loss) return EMBER_OK;
        EMBER_TRY(read_scalar(m->loss, loss));
        return ember_comm_all_reduce(m->cfg.comm, loss, loss, 1, EMBER_DTYPE_F32, EMBER_REDUCE_MEAN, NULL);
    }
    /* with offload the manager places the dense model data around every node */
    ember_status st = m->off ? ember_offload_run(m->off) : ember_graph_run(m->g);
    if (cb) {
        /* the rows may have been updated even when a later node failed: keep them dirty */
        ember_status rs = ember_cache_release(m->cache, cb, 1);
        if (st == EMBER_OK) st = rs;
    }
    if (st == EMBER_OK) st = m->off ? ember_offload_optimizer_step(m->off) : ember_optimizer_step(m->opt);
    if (st != EMBER_OK) return st;
    return loss ? read_scalar(m->loss, loss) : EMBER_OK;
}

ember_status ember_dlrm_submit(ember_dlrm *m, const ember_jagged *sparse) {
    static const char fn[] = "ember_dlrm_submit";
    EMBER_CHECK_NULL(m, fn);
    EMBER_CHECK_NULL(sparse, fn);
    if (!m->cache) return EMBER_OK;
    int cap = (int)(sizeof m->queue / sizeof *m->queue);
    if (m->qlen == cap) return ember__error(EMBER_ERR_STATE, "%s: %d batches pending already", fn, cap);
    EMBER_TRY(ember_cache_submit(m->cache, sparse));
    m->queue[(m->qhead + m->qlen) % cap] = sparse;
    m->qlen++;
    return EMBER_OK;
}

int ember_dlrm_pending(const ember_dlrm *m) { return m ? m->qlen : 0; }

ember_status ember_dlrm_predict(ember_dlrm *m, const float *dense, const ember_jagged *sparse, float *probs) {
    static const char fn[] = "ember_dlrm_predict";
    EMBER_CHECK_NULL(m, fn);
    EMBER_CHECK_NULL(dense, fn);
    EMBER_CHECK_NULL(sparse, fn);
    EMBER_CHECK_NULL(probs, fn);
    if (m->qlen)
        return ember__error(EMBER_ERR_STATE, "%s: %d submitted batches are pending; train them first", fn, m->qlen);
    EMBER_TRY(feed(m->dense, dense));
    ember_cache_batch *cb = NULL;
    if (m->cache) {
        EMBER_TRY(ember_cache_prepare(m->cache, sparse, &cb));
        m->bind.batch = &cb->jagged;
        m->bind.call.rows = cb->rows;
        m->bind.call.trusted = 1;
    } else {
        m->bind.batch = sparse;
    }
    ember_graph_set_training(m->g, 0);
    ember_status st = ember_graph_forward(m->g);
    if (cb) {
        ember_status rs = ember_cache_release(m->cache, cb, 0);
        if (st == EMBER_OK) st = rs;
    }
    ember_tensor *v = NULL, *h = NULL;
    if (st == EMBER_OK) st = ember_node_value(m->logits, &v);
    if (st == EMBER_OK)
        st = ember_tensor_wrap(probs, EMBER_DTYPE_F32, 2, (int64_t[]){m->cfg.batch, 1}, NULL, EMBER_CPU, &h);
    if (st == EMBER_OK) st = ember_tensor_copy(h, v);
    ember_tensor_destroy(h);
    for (int64_t i = 0; st == EMBER_OK && i < m->cfg.batch; i++) probs[i] = 1.0f / (1.0f + expf(-probs[i]));
    return st;
}

ember_graph *ember_dlrm_graph(ember_dlrm *m) { return m ? m->g : NULL; }
ember_ebc *ember_dlrm_tables(ember_dlrm *m) { return m ? m->ebc : NULL; }
ember_sharded_ebc *ember_dlrm_sharded_tables(ember_dlrm *m) { return m ? m->sh : NULL; }
const ember_plan *ember_dlrm_plan(const ember_dlrm *m) { return m ? m->plan : NULL; }
int ember_dlrm_rank(const ember_dlrm *m) { return m ? m->rank : 0; }
int ember_dlrm_world(const ember_dlrm *m) { return m && m->world > 1 ? m->world : 1; }
ember_optimizer *ember_dlrm_optimizer(ember_dlrm *m) { return m ? m->opt : NULL; }
ember_offload *ember_dlrm_offload(ember_dlrm *m) { return m ? m->off : NULL; }
ember_cache *ember_dlrm_cache(ember_dlrm *m) {
    return !m ? NULL : m->cache ? m->cache : ember_sharded_ebc_cache(m->sh); /* N ranks: this rank's shard's */
}
int64_t ember_dlrm_step(const ember_dlrm *m) { return m ? m->step : 0; }

ember_status ember_dlrm_set_step(ember_dlrm *m, int64_t step) {
    EMBER_CHECK_NULL(m, "ember_dlrm_set_step");
    if (step < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_dlrm_set_step: step %lld", (long long)step);
    m->step = step;
    return EMBER_OK;
}

static ember_status table_check(const ember_dlrm *m, int t, const char *fn) {
    if (!m) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: NULL model", fn);
    if (t < 0 || t >= m->cfg.num_tables)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d of %d", fn, t, m->cfg.num_tables);
    if (m->qlen) return ember__error(EMBER_ERR_STATE, "%s: %d submitted batches are pending", fn, m->qlen);
    return EMBER_OK;
}

/*
 * Optimizer state of sharded rows: each rank handles the rows it holds, found with the
 * plan, in runs of consecutive local rows. read: the holders' values, zeros elsewhere,
 * summed over the ranks (one all-reduce; a replicated row is read on rank 0 only);
 * write: local. A column slice [cb, cb + w) of a row holds the same columns of each
 * per-column state array (Adagrad: 1 array, Adam: 2), so its (w * sf / dim) floats go
 * to and from those columns of the row's sf.
 */
static ember_status sharded_state(ember_dlrm *m, int t, int64_t first, int64_t count, float *state, int write) {
    const char *fn = write ? "ember_dlrm_write_table" : "ember_dlrm_read_table";
    int64_t sf = m->sf[t], dim = m->dims[t];
    if (first < 0 || count < 0 || first + count > m->cfg.table_rows[t])
        return ember__error(EMBER_ERR_INDEX, "%s: rows [%lld, %lld) of table %d (%lld rows)", fn, (long long)first,
                            (long long)(first + count), t, (long long)m->cfg.table_rows[t]);
    ember_plan_shard sh = {0};
    ember_status st = ember_plan_get_shard(m->plan, t, m->rank, &sh);
    const int64_t cb = sh.col_begin, w = sh.col_end - sh.col_begin;
    const int sliced = w > 0 && w < dim;
    const int64_t arrays = sliced ? sf / dim : 0, lsf = sliced ? arrays * w : sf; /* state floats of a local row */
    assert(!sliced || sf % dim == 0); /* plan_build refuses rowwise Adagrad for column slices */
    int *ranks = malloc((size_t)(count ? count : 1) * sizeof *ranks);
    int64_t *local = malloc((size_t)(count ? count : 1) * sizeof *local);
    float *slice = sliced ? malloc((size_t)(count ? count * lsf : 1) * sizeof *slice) : NULL;
    if (st == EMBER_OK && (!ranks || !local || (sliced && !slice)))
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %lld rows", fn, (long long)count);
    if (st == EMBER_OK && !write) memset(state, 0, (size_t)(count * sf) * sizeof *state);
    int64_t *ids = st == EMBER_OK ? malloc((size_t)(count ? count : 1) * sizeof *ids) : NULL;
    if (st == EMBER_OK && !ids) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    for (int64_t i = 0; st == EMBER_OK && i < count; i++) ids[i] = first + i;
    if (st == EMBER_OK && count) st = ember_plan_locate_many(m->plan, t, ids, count, ranks, local);
    free(ids);
    /* the shard's rows wherever they live: resident, or behind the rank's cache */
    ember_sharded_ebc *e = m->sh;
    int lt = ember_sharded_ebc_local_table(m->sh, t);
    for (int64_t i = 0; st == EMBER_OK && i < count;) {
        int mine = ranks[i] == m->rank || (ranks[i] == EMBER_PLAN_EVERY_RANK && (write || sliced || m->rank == 0));
        int64_t j = i + 1;
        while (j < count && ranks[j] == ranks[i] && local[j] == local[j - 1] + 1) j++;
        if (mine && lt >= 0 && !sliced) {
            st = write ? ember_sharded_ebc_write_local(e, t, local[i], j - i, NULL, state + i * sf)
                       : ember_sharded_ebc_read_local(e, t, local[i], j - i, NULL, state + i * sf);
        } else if (mine && lt >= 0) {
            /* (j - i, arrays, w) local <-> columns [cb, cb + w) of each array of (j - i, sf) */
            for (int64_t r = i; write && r < j; r++)
                for (int64_t a = 0; a < arrays; a++)
                    memcpy(slice + (r - i) * lsf + a * w, state + r * sf + a * dim + cb, (size_t)w * sizeof *slice);
            st = write ? ember_sharded_ebc_write_local(e, t, local[i], j - i, NULL, slice)
                       : ember_sharded_ebc_read_local(e, t, local[i], j - i, NULL, slice);
            for (int64_t r = i; st == EMBER_OK && !write && r < j; r++)
                for (int64_t a = 0; a < arrays; a++)
                    memcpy(state + r * sf + a * dim + cb, slice + (r - i) * lsf + a * w, (size_t)w * sizeof *slice);
        }
        i = j;
    }
    free(ranks);
    free(local);
    free(slice);
    /* every rank reaches the all-reduce, whatever happened locally, so none hangs */
    if (!write) {
        ember_status rs = ember_comm_all_reduce(m->ecomm, state, state, count * sf, EMBER_DTYPE_F32, EMBER_REDUCE_SUM,
                                                NULL);
        if (st == EMBER_OK) st = rs;
    }
    return st;
}

ember_status ember_dlrm_read_table(ember_dlrm *m, int t, int64_t first, int64_t count, float *weights,
                                   float *state) {
    EMBER_TRY(table_check(m, t, "ember_dlrm_read_table"));
    if (m->sh) {
        if (weights) EMBER_TRY(ember_sharded_ebc_read_rows(m->sh, t, first, count, weights));
        if (state && m->sf[t]) EMBER_TRY(sharded_state(m, t, first, count, state, 0));
        return EMBER_OK;
    }
    if (m->cache) {
        if (weights) EMBER_TRY(ember_cache_read_rows(m->cache, t, first, count, weights));
        if (state && m->sf[t]) EMBER_TRY(ember_cache_read_state(m->cache, t, first, count, state));
        return EMBER_OK;
    }
    if (weights) EMBER_TRY(ember_ebc_read_rows(m->ebc, t, first, count, weights));
    if (state && m->sf[t]) EMBER_TRY(ember_ebc_read_state(m->ebc, t, first, count, state));
    return EMBER_OK;
}

ember_status ember_dlrm_write_table(ember_dlrm *m, int t, int64_t first, int64_t count, const float *weights,
                                    const float *state) {
    EMBER_TRY(table_check(m, t, "ember_dlrm_write_table"));
    if (m->sh) {
        if (weights) EMBER_TRY(ember_sharded_ebc_write_rows(m->sh, t, first, count, weights));
        if (state && m->sf[t]) EMBER_TRY(sharded_state(m, t, first, count, (float *)state, 1));
        return EMBER_OK;
    }
    if (m->cache) {
        if (weights) EMBER_TRY(ember_cache_write_rows(m->cache, t, first, count, weights));
        if (state && m->sf[t])
            EMBER_TRY(ember_cache_write_state(m->cache, t, first, count, state));
        return EMBER_OK;
    }
    if (weights) EMBER_TRY(ember_ebc_write_rows(m->ebc, t, first, count, weights));
    if (state && m->sf[t]) EMBER_TRY(ember_ebc_write_state(m->ebc, t, first, count, state));
    return EMBER_OK;
}

int64_t ember_dlrm_state_floats(const ember_dlrm *m, int t) {
    if (!m || t < 0 || t >= m->cfg.num_tables) return 0;
    return m->sf[t];
}

int64_t ember_dlrm_table_rows(const ember_dlrm *m, int t) {
    return m && t >= 0 && t < m->cfg.num_tables ? m->cfg.table_rows[t] : 0;
}

int ember_dlrm_table_dim(const ember_dlrm *m, int t) {
    if (!m || t < 0 || t >= m->cfg.num_tables) return 0;
    return m->dims[t];
}
