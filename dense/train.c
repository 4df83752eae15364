/* Glue between a graph and the dense optimizer: every parameter with its gradient. */
#include <stdlib.h>

#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "ember/dense.h"

ember_status ember_graph_optimizer_create(ember_graph *g, const ember_optimizer_config *cfg,
                                          ember_optimizer **out) {
    static const char fn[] = "ember_graph_optimizer_create";
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (!g->backward_built)
        return ember__error(EMBER_ERR_STATE, "%s: build the backward graph first", fn);
    EMBER_TRY(ember_graph_plan(g)); /* gradients get their buffers here */
    int n = 0;
    for (int i = 0; i < g->n; i++) n += (g->nodes[i]->flags & EMBER__NODE_PARAM) != 0;
    ember_optimizer_param *ps = calloc((size_t)(n ? n : 1), sizeof *ps);
    if (!ps) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d parameters", fn, n);
    int k = 0;
    ember_status st = EMBER_OK;
    for (int i = 0; i < g->n && st == EMBER_OK; i++) {
        ember_node *p = g->nodes[i];
        if (!(p->flags & EMBER__NODE_PARAM)) continue;
        ps[k].param = p->value;
        ps[k].name = p->name;
        st = ember_node_value(p->grad, &ps[k].grad);
        k++;
    }
    if (st == EMBER_OK) st = ember_optimizer_create(cfg, ps, n, out);
    free(ps);
    return st;
}
