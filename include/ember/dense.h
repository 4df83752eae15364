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

#include "ember/embedding.h"
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
 * What an embedding-bag node reads when it runs: set `batch` before each forward and
 * `call` (learning rate, step, and the cache's slot rows if any) before each backward.
 * Owned by the caller; must outlive the graph's runs.
 */
typedef struct ember_ebc_binding {
    const ember_jagged *batch;
    ember_ebc_call call;
} ember_ebc_binding;

/**
 * Another collection behind an embedding-bag node (e.g. an ember_sharded_ebc, whose
 * forward and backward are collectives): forward pools the bound batch into out
 * (B, output_dim) f32 on the graph's device; backward applies the update for grad_out
 * = dL/d(out) of the last forward. Both get the binding's call. Owned by the caller;
 * must outlive the graph's runs. The node runs forward and backward exactly once per
 * graph forward and backward, in schedule order, so collectives stay in step when
 * every rank runs the same graph.
 */
typedef struct ember_ebc_backend {
    void *ctx;
    ember_status (*forward)(void *ctx, const ember_jagged *batch, ember_tensor *out, const ember_ebc_call *call);
    ember_status (*backward)(void *ctx, const ember_jagged *batch, const ember_tensor *grad_out,
                             const ember_ebc_call *call);
    int64_t output_dim;        /* the pooled width (>= 1) */
} ember_ebc_backend;

typedef struct ember_embedding_bag_params {
    ember_ebc *ebc;            /* the collection (NULL only in a meta graph or with backend) */
    int64_t batch;             /* B: samples per batch */
    int64_t output_dim;        /* meta graphs without a collection: the pooled width */
    ember_ebc_binding *bind;   /* required with a collection or a backend */
    const ember_ebc_backend *backend; /* instead of ebc (not both): see ember_ebc_backend */
} ember_embedding_bag_params;

/**
 * Pooled embeddings of every table, (B, output_dim), as a graph node. Its gradient is
 * not a tensor: the backward pass applies the collection's fused sparse optimizer to
 * the rows of the batch, in place (ember_ebc_backward), once the dense gradient of
 * its output is complete. Not allowed inside a checkpoint segment (a recomputation
 * would read rows already updated).
 */
ember_status ember_embedding_bag(ember_graph *g, const ember_embedding_bag_params *p, ember_node **out);

/** Quality of click predictions. */
typedef struct ember_metrics {
    int64_t samples;
    double auc;           /* exact ROC AUC, tied scores counted half; NaN with one class only */
    double logloss;       /* mean binary cross-entropy, probabilities clamped to [1e-7, 1 - 1e-7] */
    double accuracy;      /* threshold 0.5 */
    double positive_rate; /* mean label */
} ember_metrics;

/** Metrics of probabilities against labels in [0, 1] (n > 0). Sorts a copy: O(n log n). */
ember_status ember_metrics_compute(const float *probs, const float *labels, int64_t n, ember_metrics *out);

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
