/*
 * ember/dense.h: layers built on the graph IR (ember/graph.h).
 *
 * A layer creates its parameters in the graph (named "<name>.weight", "<name>.bias")
 * and initialises them as torch.nn.Linear does: weight and bias uniform in
 * [-1/sqrt(in), 1/sqrt(in)], drawn from the given generator. Weights are stored
 * (in, out), so a layer is y = x @ W + b on inputs (..., in).
 *
 *     ember_rng rng = {.seed = 1};
 *     ember_node *h;
 *     ember_mlp(g, x, &(ember_mlp_params){.dims = (int64_t[]){13, 512, 256, 64}, .nlayers = 3,
 *                                         .act = EMBER_ACT_RELU, .name = "bottom", .rng = &rng}, &h);
 */
#ifndef EMBER_DENSE_H
#define EMBER_DENSE_H

#include "ember/graph.h"
#include "ember/optim.h"
#include "ember/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ember_act {
    EMBER_ACT_NONE,
    EMBER_ACT_RELU,
    EMBER_ACT_GELU,
    EMBER_ACT_SIGMOID,
    EMBER_ACT_TANH,
    EMBER_ACT_COUNT
} ember_act;

/** y = x @ W + b with W (in, out) and b (out) created as parameters "<name>.weight/.bias". */
ember_status ember_linear(ember_graph *g, ember_node *x, int64_t out_dim, const char *name, ember_rng *rng,
                          ember_node **out);
/** y = act(x); EMBER_ACT_NONE returns x. */
ember_status ember_activation(ember_graph *g, ember_node *x, ember_act act, ember_node **out);

typedef struct ember_mlp_params {
    const int64_t *dims; /* nlayers + 1 sizes: input, hidden..., output */
    int nlayers;
    ember_act act;       /* after every layer but the last */
    ember_act last_act;  /* after the last layer (default none) */
    const char *name;    /* parameter name prefix ("mlp" if NULL) */
    ember_rng *rng;      /* initialisation stream (required) */
    int checkpoint;      /* put each hidden layer in its own checkpoint segment */
} ember_mlp_params;

/** A stack of linear layers with activations. */
ember_status ember_mlp(ember_graph *g, ember_node *x, const ember_mlp_params *p, ember_node **out);

/**
 * A dense optimizer over every parameter of g with its gradient, named as the
 * parameters are. Plans g (after ember_graph_build_backward). Destroy it before g.
 */
ember_status ember_graph_optimizer_create(ember_graph *g, const ember_optimizer_config *cfg,
                                          ember_optimizer **out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_DENSE_H */
