/* Linear layers and MLPs on the graph IR. */
#include <math.h>
#include <stdio.h>

#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "ember/dense.h"

ember_status ember_linear(ember_graph *g, ember_node *x, int64_t out_dim, const char *name, ember_rng *rng,
                          ember_node **out) {
    static const char fn[] = "ember_linear";
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(x, fn);
    EMBER_CHECK_NULL(rng, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (x->ndim < 1 || out_dim < 1)
        return ember__error(EMBER_ERR_SHAPE, "%s '%s': input needs a feature dim and out_dim (%lld) must be >= 1", fn,
                            name ? name : "", (long long)out_dim);
    int64_t in = x->shape[x->ndim - 1];
    char wn[128], bn[128];
    snprintf(wn, sizeof wn, "%s.weight", name ? name : "linear");
    snprintf(bn, sizeof bn, "%s.bias", name ? name : "linear");
    ember_node *w, *b, *m;
    EMBER_TRY(ember_graph_param(g, wn, EMBER_DTYPE_F32, 2, (int64_t[]){in, out_dim}, &w));
    EMBER_TRY(ember_graph_param(g, bn, EMBER_DTYPE_F32, 1, (int64_t[]){out_dim}, &b));
    if (!g->p.meta) {
        float bound = 1.0f / sqrtf((float)in);
        EMBER_TRY(ember_rng_uniform(rng, w->value, -bound, bound));
        EMBER_TRY(ember_rng_uniform(rng, b->value, -bound, bound));
    }
    EMBER_TRY(ember_op_matmul(g, x, w, 0, 0, &m));
    return ember_op_add(g, m, b, out);
}

ember_status ember_activation(ember_graph *g, ember_node *x, ember_act act, ember_node **out) {
    switch (act) {
    case EMBER_ACT_NONE:
        EMBER_CHECK_NULL(out, "ember_activation");
        *out = x;
        return EMBER_OK;
    case EMBER_ACT_RELU: return ember_op_relu(g, x, out);
    case EMBER_ACT_GELU: return ember_op_gelu(g, x, out);
    case EMBER_ACT_SIGMOID: return ember_op_sigmoid(g, x, out);
    case EMBER_ACT_TANH: return ember_op_tanh(g, x, out);
    default: return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_activation: activation %d invalid", (int)act);
    }
}

ember_status ember_mlp(ember_graph *g, ember_node *x, const ember_mlp_params *p, ember_node **out) {
    static const char fn[] = "ember_mlp";
    EMBER_CHECK_NULL(p, fn);
    EMBER_CHECK_NULL(p->dims, fn);
    EMBER_CHECK_NULL(x, fn);
    EMBER_CHECK_NULL(out, fn);
    if (p->nlayers < 1) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %d layers", fn, p->nlayers);
    if (x->shape[x->ndim - 1] != p->dims[0])
        return ember__error(EMBER_ERR_SHAPE, "%s '%s': input has %lld features, dims[0] is %lld", fn,
                            p->name ? p->name : "mlp", (long long)x->shape[x->ndim - 1], (long long)p->dims[0]);
    ember_node *h = x;
    for (int l = 0; l < p->nlayers; l++) {
        char name[128];
        snprintf(name, sizeof name, "%s.%d", p->name ? p->name : "mlp", l);
        int last = l == p->nlayers - 1;
        int seg = p->checkpoint && !last;
        if (seg) EMBER_TRY(ember_graph_checkpoint_begin(g));
        ember_node *y;
        ember_status st = ember_linear(g, h, p->dims[l + 1], name, p->rng, &y);
        if (st == EMBER_OK) st = ember_activation(g, y, last ? p->last_act : p->act, &h);
        if (seg) {
            ember_status st2 = ember_graph_checkpoint_end(g);
            if (st == EMBER_OK) st = st2;
        }
        EMBER_TRY(st);
    }
    *out = h;
    return EMBER_OK;
}
