/*
 * ember/graph.h: the graph IR, autodiff and executor shared by DLRM's dense towers,
 * the transformer models and every parallel module.
 *
 * A graph owns its nodes (an arena: nodes live until ember_graph_destroy). Leaves are
 * inputs (fed each step) and parameters (trainable, owned by the graph); every op
 * constructor adds a node whose shape and dtype are inferred at once, so a graph built
 * in meta mode (no data at all) already knows each node's shape, FLOPs, bytes moved
 * and the peak memory of the executor's plan. ember_graph_build_backward appends the
 * gradient nodes; the executor plans buffers by liveness (a buffer is reused once its
 * value is dead, element-wise ops run in place when their input dies there) and runs
 * each node on the backend of the graph's device. Nodes created between
 * ember_graph_checkpoint_begin/end form a segment whose inner activations are freed
 * after forward and recomputed during backward.
 *
 *     ember_graph *g;
 *     ember_graph_create(&(ember_graph_params){.seed = 1}, &g);
 *     ember_node *x, *w, *b, *y, *h, *loss, *labels;
 *     ember_graph_input(g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){B, 13}, &x);
 *     ember_graph_input(g, "labels", EMBER_DTYPE_F32, 2, (int64_t[]){B, 1}, &labels);
 *     ember_graph_param(g, "w", EMBER_DTYPE_F32, 2, (int64_t[]){13, 1}, &w);
 *     ember_graph_param(g, "b", EMBER_DTYPE_F32, 1, (int64_t[]){1}, &b);
 *     ember_op_matmul(g, x, w, 0, 0, &h);
 *     ember_op_add(g, h, b, &y);
 *     ember_op_bce_with_logits(g, y, labels, &loss);
 *     ember_graph_build_backward(g, loss);
 *     // fill inputs and parameters through ember_node_value(), then each step:
 *     ember_graph_run(g);            // forward + backward; grads via ember_node_grad()
 *
 * Activations are f32; index inputs (gather rows, cross-entropy labels) are i32 or i64.
 * Errors: constructors validate shapes and return EMBER_ERR_SHAPE / EMBER_ERR_DTYPE
 * naming the op and the operands; the graph stays usable after a refused node.
 * Thread safety: a graph is used by one thread at a time.
 */
#ifndef EMBER_GRAPH_H
#define EMBER_GRAPH_H

#include <stdint.h>
#include <stdio.h>

#include "ember/memory.h"
#include "ember/status.h"
#include "ember/tensor.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_graph ember_graph;
typedef struct ember_node ember_node;

typedef struct ember_graph_params {
    ember_memory *mm; /* NULL: ember_memory_default() */
    ember_tier tier;  /* where parameters and activations live (default HOST; DEVICE for a GPU) */
    int meta;         /* non-zero: shapes and plans only, nothing is ever allocated */
    uint64_t seed;    /* dropout stream */
} ember_graph_params;

/** @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_OUT_OF_MEMORY. */
ember_status ember_graph_create(const ember_graph_params *p, ember_graph **out);
/** Frees nodes, parameters, gradients and the activation arena. NULL is a no-op. */
void ember_graph_destroy(ember_graph *g);

/* ---- leaves ---- */

/** A value fed each step (its buffer is allocated with the plan; write it via ember_node_value). */
ember_status ember_graph_input(ember_graph *g, const char *name, ember_dtype dtype, int ndim,
                               const int64_t *shape, ember_node **out);
/** A trainable parameter (kind PARAMETER), zero-filled; its gradient is kind GRADIENT. */
ember_status ember_graph_param(ember_graph *g, const char *name, ember_dtype dtype, int ndim,
                               const int64_t *shape, ember_node **out);
/** Keep a node's value after a run (outputs such as logits and loss). */
ember_status ember_graph_mark_output(ember_graph *g, ember_node *n);
/** Training mode (dropout active) or evaluation mode; default training. */
void ember_graph_set_training(ember_graph *g, int training);

/* ---- activation checkpointing ---- */

/** Nodes created until _end form one segment, recomputed during backward. Not nestable. */
ember_status ember_graph_checkpoint_begin(ember_graph *g);
ember_status ember_graph_checkpoint_end(ember_graph *g);

/* ---- autodiff and execution ---- */

/**
 * Append the backward graph of a scalar loss: gradients for every parameter (and for
 * inputs marked with ember_node_set_requires_grad). Call once, after the forward graph.
 */
ember_status ember_graph_build_backward(ember_graph *g, ember_node *loss);
/** Ask for the gradient of an input (before build_backward). */
ember_status ember_node_set_requires_grad(ember_node *n);
/** The gradient node of a leaf or activation (NULL before build_backward or if none). */
ember_node *ember_node_grad(const ember_node *n);
/** The leaf (input or parameter) with this name. @return EMBER_OK or EMBER_ERR_NOT_FOUND. */
ember_status ember_graph_find(const ember_graph *g, const char *name, ember_node **out);

/** Plan the schedule and memory (done by the first run; needed explicitly in meta mode). */
ember_status ember_graph_plan(ember_graph *g);
/** Run the forward nodes. */
ember_status ember_graph_forward(ember_graph *g);
/** Run the backward nodes (after ember_graph_forward). Parameter gradients are overwritten. */
ember_status ember_graph_backward(ember_graph *g);
/** Forward, then backward if built. */
ember_status ember_graph_run(ember_graph *g);
/**
 * Training steps run so far (each forward advances it; dropout masks depend on it).
 * Setting it makes a resumed run draw the same masks as an uninterrupted one.
 */
uint64_t ember_graph_get_step(const ember_graph *g);
void ember_graph_set_step(ember_graph *g, uint64_t step);

/**
 * The node's value: leaves and parameters always (after create, unless meta); other
 * nodes after a run, while their buffer is live: outputs and gradients of leaves stay
 * valid until the next run. Owned by the graph.
 */
ember_status ember_node_value(const ember_node *n, ember_tensor **out);

/* ---- meta information ---- */

typedef struct ember_node_info {
    int id;
    const char *name; /* leaves: the given name; others: "" */
    const char *op;   /* "matmul", "input", "param", ... */
    ember_dtype dtype;
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    int nsrc;
    int src[4];          /* ids of the inputs */
    double flops;        /* floating-point operations to compute the node */
    double bytes_moved;  /* bytes read + written by its kernel */
    size_t out_bytes;    /* size of its value */
    int backward;        /* part of the backward graph */
    int segment;         /* checkpoint segment (0: none) */
} ember_node_info;

typedef struct ember_graph_stats {
    int nodes, forward_nodes, backward_nodes, recomputed_nodes;
    double forward_flops, backward_flops, recompute_flops;
    size_t param_bytes, grad_bytes, input_bytes;
    size_t peak_activation_bytes; /* the executor's arena under the current plan */
    size_t sum_activation_bytes;  /* what the arena would be without any reuse */
    double executed_flops;        /* FLOPs of the nodes the executor actually ran, all runs */
} ember_graph_stats;

int ember_graph_node_count(const ember_graph *g);
/** Information on node i (0 <= i < count), in creation order (a topological order). */
ember_status ember_graph_node_info(const ember_graph *g, int i, ember_node_info *out);
ember_status ember_node_get_info(const ember_node *n, ember_node_info *out);
/** Plans if needed, then fills the statistics. */
ember_status ember_graph_get_stats(ember_graph *g, ember_graph_stats *out);
/** A table of nodes (id, op, shape, FLOPs, bytes) and the plan's totals. */
ember_status ember_graph_print(ember_graph *g, FILE *f);
/** Number of times each op kind ran since creation, by op name (for tests). */
int64_t ember_graph_op_runs(const ember_graph *g, const char *op);
/** Names of all registered ops (NULL-terminated, static). */
const char *const *ember_graph_op_names(void);
/** Non-zero when an op exists only as part of another op's gradient. */
int ember_graph_op_is_grad_only(const char *op);

/* ---- ops: each returns the new node through *out ---- */

/** op(a) @ op(b); 2-D, or 3-D batched (batch, m, k) with a 2-D operand shared. */
ember_status ember_op_matmul(ember_graph *g, ember_node *a, ember_node *b, int trans_a, int trans_b,
                             ember_node **out);
/** a + b; b of a's shape, a trailing part of it (bias), or one element. */
ember_status ember_op_add(ember_graph *g, ember_node *a, ember_node *b, ember_node **out);
/** a * b element-wise, same broadcasting as add. */
ember_status ember_op_mul(ember_graph *g, ember_node *a, ember_node *b, ember_node **out);
ember_status ember_op_scale(ember_graph *g, ember_node *a, float alpha, ember_node **out);
ember_status ember_op_relu(ember_graph *g, ember_node *a, ember_node **out);
ember_status ember_op_sigmoid(ember_graph *g, ember_node *a, ember_node **out);
ember_status ember_op_tanh(ember_graph *g, ember_node *a, ember_node **out);
/** GELU, exact (erf) form as torch.nn.GELU(). */
ember_status ember_op_gelu(ember_graph *g, ember_node *a, ember_node **out);
/** Layer norm over the last dim with affine gamma, beta (shape (D)). */
ember_status ember_op_layernorm(ember_graph *g, ember_node *x, ember_node *gamma, ember_node *beta,
                                float eps, ember_node **out);
ember_status ember_op_softmax(ember_graph *g, ember_node *x, ember_node **out);     /* last dim */
ember_status ember_op_log_softmax(ember_graph *g, ember_node *x, ember_node **out); /* last dim */
/**
 * Causal self-attention on (batch, T, D) q, k, v (heads folded into batch):
 * softmax(q k^T / sqrt(D) + causal mask) v. Composed of matmul, scale, causal mask,
 * softmax and matmul nodes.
 */
ember_status ember_op_causal_attention(ember_graph *g, ember_node *q, ember_node *k, ember_node *v,
                                       ember_node **out);
/** Set the strict upper triangle of the last two dims to -inf (used by attention). */
ember_status ember_op_causal_mask(ember_graph *g, ember_node *x, ember_node **out);
/** Concatenate n nodes (2..4) along dim. */
ember_status ember_op_concat(ember_graph *g, ember_node *const *xs, int n, int dim, ember_node **out);
/** Elements start..start+len-1 along dim (a copy). */
ember_status ember_op_slice(ember_graph *g, ember_node *x, int dim, int64_t start, int64_t len,
                            ember_node **out);
ember_status ember_op_reshape(ember_graph *g, ember_node *x, int ndim, const int64_t *shape,
                              ember_node **out);
/** Reorder dims (materialised contiguous). */
ember_status ember_op_permute(ember_graph *g, ember_node *x, const int *perm, ember_node **out);
ember_status ember_op_transpose(ember_graph *g, ember_node *x, int d0, int d1, ember_node **out);
/** table (V, D) rows at idx (N) (i32 or i64): (N, D). The dense token embedding. */
ember_status ember_op_gather_rows(ember_graph *g, ember_node *table, ember_node *idx, ember_node **out);
/**
 * DLRM dot interaction: t (B, n, D) -> (B, n(n-1)/2), the dot products of every pair
 * (i > j) in the order (1,0), (2,0), (2,1), (3,0), ... (the strict lower triangle).
 */
ember_status ember_op_interaction(ember_graph *g, ember_node *t, ember_node **out);
/**
 * The same with the diagonal (each vector with itself, the reference DLRM's
 * arch_interaction_itself): (B, n(n+1)/2), pairs (i >= j) in the order (0,0), (1,0),
 * (1,1), (2,0), ... (the lower triangle). One op with ember_op_interaction ("interaction").
 */
ember_status ember_op_interaction_self(ember_graph *g, ember_node *t, ember_node **out);
/**
 * DLRM's dot interaction with its dense vector in front, as the reference DLRM feeds
 * its top MLP: z (B, D) and e (B, T D) (the T pooled embeddings side by side) ->
 * (B, D + pairs) = [z | the interaction of the T + 1 vectors z, e_1 .. e_T], pairs
 * (T + 1) T / 2 in ember_op_interaction's order (self non-zero: (T + 2)(T + 1) / 2 with
 * the diagonal, as ember_op_interaction_self). The same values, and gradients, as
 * concat(z, e) -> reshape (B, T + 1, D) -> interaction -> concat(z, .), without
 * writing either concatenation ("dot_interaction").
 */
ember_status ember_op_dot_interaction(ember_graph *g, ember_node *z, ember_node *e, int self, ember_node **out);
/** DCNv2 cross layer: x0 * (xl @ w + b) + xl, w (D, D), b (D). */
ember_status ember_op_cross(ember_graph *g, ember_node *x0, ember_node *xl, ember_node *w, ember_node *b,
                            ember_node **out);
/** Inverted dropout with probability p (Philox stream of the graph's seed; identity in eval). */
ember_status ember_op_dropout(ember_graph *g, ember_node *x, float p, ember_node **out);
/** Sum over all elements (axes = 0) or the last `axes` dims. */
ember_status ember_op_sum(ember_graph *g, ember_node *x, int axes, ember_node **out);
ember_status ember_op_mean(ember_graph *g, ember_node *x, int axes, ember_node **out);
/** Mean binary cross-entropy of logits against labels in [0, 1] (same shape): a scalar. */
ember_status ember_op_bce_with_logits(ember_graph *g, ember_node *logits, ember_node *labels,
                                      ember_node **out);
/** Mean softmax cross-entropy of logits (N, C) against class ids (N) (i32/i64): a scalar. */
ember_status ember_op_softmax_cross_entropy(ember_graph *g, ember_node *logits, ember_node *labels,
                                            ember_node **out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_GRAPH_H */
