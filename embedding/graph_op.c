/*
 * The embedding bag as a graph op: forward pools through ember_ebc_forward; the
 * backward "gradient" is a side effect, the fused sparse update of ember_ebc_backward,
 * so its node is kept as a root of the plan (it has no reader) and produces only a
 * scalar placeholder. The batch, learning rate and cache rows come from a binding the
 * training loop updates every step, so one graph serves every batch. A backend
 * (ember_ebc_backend) stands in for the collection the same way: the node keeps the
 * backend in opaque[0] and marks it with ip[2] = 1.
 */
#include <string.h>

#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "ember/dense.h"

ember_status ember_embedding_bag(ember_graph *g, const ember_embedding_bag_params *p, ember_node **out) {
    static const char fn[] = "ember_embedding_bag";
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(p, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    int64_t dim = p->output_dim;
    if (p->backend) {
        EMBER_CHECK_NULL(p->bind, fn);
        if (p->ebc)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: both a collection and a backend given", fn);
        if (!p->backend->forward || !p->backend->backward)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: the backend needs forward and backward", fn);
        dim = p->backend->output_dim;
    } else if (p->ebc) {
        EMBER_CHECK_NULL(p->bind, fn);
        dim = ember_ebc_output_dim(p->ebc);
        char a[32], b[32];
        if (!g->p.meta && !ember_device_equal(ember_ebc_device(p->ebc), g->dev))
            return ember__error(EMBER_ERR_DEVICE, "%s: the collection is on %s, the graph on %s", fn,
                                ember_device_format(ember_ebc_device(p->ebc), a, sizeof a),
                                ember_device_format(g->dev, b, sizeof b));
    } else if (!g->p.meta) {
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: no collection (only a meta graph may omit it)", fn);
    }
    if (g->cur_segment)
        return ember__error(EMBER_ERR_STATE,
                            "%s: an embedding bag cannot be recomputed (its backward updates the rows it "
                            "read); create it outside checkpoint segment %d",
                            fn, g->cur_segment);
    if (p->batch < 0 || dim < 1)
        return ember__error(EMBER_ERR_SHAPE, "%s: batch %lld and output dim %lld", fn, (long long)p->batch,
                            (long long)dim);
    ember_node *n;
    EMBER_TRY(ember__node_new(g, EMBER__OP_EMBEDDING_BAG, NULL, 0, (int64_t[]){p->batch, dim}, 2, NULL, 0, &n));
    n->opaque[0] = p->backend ? (void *)p->backend : (void *)p->ebc;
    n->opaque[1] = p->bind;
    n->ip[2] = p->backend != NULL;
    n->flags |= EMBER__NODE_REQUIRES_GRAD; /* the tables are trained */
    *out = n;
    return EMBER_OK;
}

ember_status ember__ebc_infer(ember_node *n) {
    n->dtype = EMBER_DTYPE_F32;
    n->ndim = 2;
    n->shape[0] = n->ip[0];
    n->shape[1] = n->ip[1];
    return EMBER_OK;
}

ember_status ember__ebc_update_infer(ember_node *n) {
    n->dtype = EMBER_DTYPE_F32;
    n->ndim = 0;
    return EMBER_OK;
}

/* Pooling reads every looked-up element once and adds it: about one FLOP per element;
   the batch's ids are only known at run time, so this counts one id per bag. */
double ember__ebc_flops(const ember_node *n) {
    const ember_node *x = n->op == EMBER__OP_EMBEDDING_BAG ? n : n->src[0];
    return (double)x->shape[0] * (double)x->shape[1];
}

ember_status ember__ebc_backward(ember_graph *g, ember_node *n, ember_node *gout, ember_node **gin) {
    (void)gin;
    ember_node *u;
    EMBER_TRY(ember__node_new(g, EMBER__OP_EMBEDDING_BAG_UPDATE, &gout, 1, NULL, 0, NULL, 0, &u));
    u->opaque[0] = n->opaque[0];
    u->opaque[1] = n->opaque[1];
    u->ip[2] = n->ip[2];
    u->flags |= EMBER__NODE_OUTPUT; /* a root: nothing reads it, but it must run */
    return EMBER_OK;
}

ember_status ember__ebc_forward_kernel(const ember__exec *x) {
    ember_ebc *ebc = x->n->opaque[0];
    ember_ebc_binding *b = x->n->opaque[1];
    if (!b->batch)
        return ember__error(EMBER_ERR_STATE, "embedding_bag node %d: no batch bound (set ember_ebc_binding.batch)",
                            x->n->id);
    if (b->batch->batch != x->n->shape[0])
        return ember__error(EMBER_ERR_SHAPE, "embedding_bag node %d: the bound batch has %lld samples, the graph %lld",
                            x->n->id, (long long)b->batch->batch, (long long)x->n->shape[0]);
    if (x->n->ip[2]) {
        const ember_ebc_backend *be = x->n->opaque[0];
        return be->forward(be->ctx, b->batch, x->out, &b->call);
    }
    return ember_ebc_forward(ebc, b->batch, x->out, &b->call);
}

ember_status ember__ebc_update_kernel(const ember__exec *x) {
    ember_ebc *ebc = x->n->opaque[0];
    ember_ebc_binding *b = x->n->opaque[1];
    if (!b->batch)
        return ember__error(EMBER_ERR_STATE, "embedding_bag_update node %d: no batch bound", x->n->id);
    if (x->n->ip[2]) {
        const ember_ebc_backend *be = x->n->opaque[0];
        EMBER_TRY(be->backward(be->ctx, b->batch, x->src[0], &b->call));
    } else {
        EMBER_TRY(ember_ebc_backward(ebc, b->batch, x->src[0], &b->call));
    }
    return ember_tensor_fill(x->out, 0.0);
}
