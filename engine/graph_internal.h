/*
 * engine/graph_internal.h: graph nodes, the op registry and the executor's plan.
 * Not installed.
 *
 * Every op is described once by an ember__op_def: shape/dtype inference, the
 * constructor of its backward nodes, FLOPs and bytes, an in-place hint, a sharding
 * slot, and one forward kernel per backend. Gradients are themselves nodes (ops that
 * exist only inside gradients are flagged grad_only), so a backward graph is planned,
 * executed, checkpointed and counted exactly like a forward one.
 */
#ifndef EMBER_GRAPH_INTERNAL_H
#define EMBER_GRAPH_INTERNAL_H

#include "ember/graph.h"
#include "engine/tensor_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER__MAX_SRC 4

typedef enum ember__op {
    EMBER__OP_INPUT,
    EMBER__OP_PARAM,
    EMBER__OP_MATMUL,
    EMBER__OP_ADD,
    EMBER__OP_MUL,
    EMBER__OP_SCALE,
    EMBER__OP_RELU,
    EMBER__OP_SIGMOID,
    EMBER__OP_TANH,
    EMBER__OP_GELU,
    EMBER__OP_LAYERNORM,
    EMBER__OP_SOFTMAX,
    EMBER__OP_LOG_SOFTMAX,
    EMBER__OP_CAUSAL_MASK,
    EMBER__OP_CONCAT,
    EMBER__OP_SLICE,
    EMBER__OP_RESHAPE,
    EMBER__OP_PERMUTE,
    EMBER__OP_GATHER_ROWS,
    EMBER__OP_INTERACTION,
    EMBER__OP_INTERACTION_CAT,
    EMBER__OP_DROPOUT,
    EMBER__OP_SUM,
    EMBER__OP_BCE_WITH_LOGITS,
    EMBER__OP_SOFTMAX_CE,
    EMBER__OP_EMBEDDING_BAG,
    /* grad-only ops */
    EMBER__OP_FILL,
    EMBER__OP_EXPAND,
    EMBER__OP_SUM_TO,
    EMBER__OP_PAD,
    EMBER__OP_RELU_BWD,
    EMBER__OP_SIGMOID_BWD,
    EMBER__OP_TANH_BWD,
    EMBER__OP_GELU_BWD,
    EMBER__OP_LAYERNORM_BWD_X,
    EMBER__OP_LAYERNORM_BWD_GAMMA,
    EMBER__OP_SOFTMAX_BWD,
    EMBER__OP_LOG_SOFTMAX_BWD,
    EMBER__OP_SCATTER_ROWS,
    EMBER__OP_INTERACTION_BWD,
    EMBER__OP_INTERACTION_CAT_BWD,
    EMBER__OP_BCE_BWD,
    EMBER__OP_SOFTMAX_CE_BWD,
    EMBER__OP_EMBEDDING_BAG_UPDATE,
    EMBER__OP_COUNT
} ember__op;

enum {
    EMBER__NODE_INPUT = 1u << 0,
    EMBER__NODE_PARAM = 1u << 1,
    EMBER__NODE_REQUIRES_GRAD = 1u << 2,
    EMBER__NODE_OUTPUT = 1u << 3,     /* value kept after a run */
    EMBER__NODE_BACKWARD = 1u << 4,   /* created by build_backward */
    EMBER__NODE_PERSISTENT = 1u << 5, /* own allocation, never reused (outputs, leaf grads) */
};

struct ember_node {
    int id;
    ember__op op;
    ember_dtype dtype;
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    int nsrc;
    ember_node *src[EMBER__MAX_SRC];
    int64_t ip[EMBER_MAX_DIMS + 2]; /* integer parameters (dims, perm, offsets) */
    float fp[4];                      /* float parameters (alpha, eps, p, fill) */
    void *opaque[2];                  /* op-owned handles (embedding bag: collection, binding) */
    char *name;
    unsigned flags;
    int segment; /* checkpoint segment, 0 = none */
    ember_graph *graph;
    ember_node *grad;
    ember_tensor *value;   /* leaves and persistent nodes: own tensor; others: arena view */
    ember_tensor *recomp;  /* arena view of the recomputed instance (checkpointed nodes) */
};

/*
 * Executor hooks: up to EMBER__MAX_HOOKS per graph (data parallel and the offload
 * manager can share one graph), called in install order before and in reverse order
 * after each entry. Each is called by the executor before (after = 0) and after
 * (after = 1) every schedule entry it runs, outside the node's profiler scope. It sees
 * the entry, its node and the node's parameter inputs (each listed once), so a user
 * can place or check model data around each kernel; the heterogeneous memory manager
 * (engine/offload.c) fetches and evicts chunks with it. A non-OK status from the
 * "before" call stops the run before the kernel; the "after" call is made whenever the
 * "before" call succeeded, with the kernel's status in `status` (so state taken before
 * the kernel can be released), and its own failure stops the run too.
 */
typedef struct ember__hook_event {
    int entry;    /* index in g->sched */
    int after;    /* 0: before the kernel, 1: after it */
    int backward; /* entry >= g->nfwd (backward and recompute entries) */
    ember_status status; /* after = 1: the kernel's status */
    ember_node *node;
    int nparams;
    ember_node *params[EMBER__MAX_SRC]; /* the node's parameter sources, each once */
} ember__hook_event;

typedef ember_status (*ember__graph_hook)(void *user, ember_graph *g, const ember__hook_event *ev);

#define EMBER__MAX_HOOKS 4
typedef struct ember__hook_slot {
    ember__graph_hook fn;
    void *user;
} ember__hook_slot;

/* Install a hook (EMBER_ERR_STATE when the same (fn, user) is installed or the list is
   full); remove one (a no-op when absent). */
ember_status ember__graph_add_hook(ember_graph *g, ember__graph_hook fn, void *user);
void ember__graph_remove_hook(ember_graph *g, ember__graph_hook fn, void *user);

typedef struct ember__sched {
    ember_node *node;
    int recompute; /* 1: re-running a checkpointed node during backward */
    int last_use;  /* index of the last entry reading this value */
    int owns;      /* 1: frees its arena block after last_use (0: handed to an in-place op) */
    size_t offset; /* in the arena; SIZE_MAX for persistent values */
} ember__sched;

struct ember_graph {
    ember_graph_params p;
    ember_memory *mm;
    ember_device dev;
    ember_node **nodes;
    int n, cap;
    int training;
    int cur_segment, nsegments;
    int backward_built, building_backward;
    ember_node *loss;
    uint64_t rng_words; /* Philox words handed out to dropout nodes so far (per step) */
    uint64_t step;      /* forward passes started; dropout masks differ per step */
    /* plan */
    int planned;
    ember__sched *sched;
    int nsched, nfwd;
    size_t arena_size, sum_bytes;
    void *arena;
    int64_t runs[EMBER__OP_COUNT];
    double executed_flops;
    ember__hook_slot hooks[EMBER__MAX_HOOKS]; /* executor hooks, in install order */
    int nhooks;
};

/* What a kernel sees: the node, its output and input values. */
typedef struct ember__exec {
    ember_graph *g;
    ember_node *n;
    ember_tensor *out;
    ember_tensor *src[EMBER__MAX_SRC];
} ember__exec;

typedef ember_status (*ember__kernel)(const ember__exec *x);

typedef struct ember__op_def {
    const char *name;
    int grad_only;
    /* Validate sources/params and set n->dtype, n->ndim, n->shape. */
    ember_status (*infer)(ember_node *n);
    /* Build gradient nodes: gin[i] receives dL/d src[i] (NULL: none needed). */
    ember_status (*backward)(ember_graph *g, ember_node *n, ember_node *gout, ember_node **gin);
    double (*flops)(const ember_node *n);
    /* Output may take over the buffer of src[inplace_src] when that value dies here (-1: never). */
    int inplace_src;
    /* Tensor-parallel sharding rules: filled in by parallel/ (NULL until then). */
    const void *sharding;
    ember__kernel forward[EMBER_DEVICE_TYPE_COUNT];
} ember__op_def;

extern const ember__op_def ember__ops[EMBER__OP_COUNT];
#ifdef EMBER_HAVE_CUDA
/* The CUDA kernel of an op (engine/cuda/graph_cuda.cu); NULL for leaves. */
ember__kernel ember__graph_cuda_kernel(int op);
#endif

/* The embedding-bag op's parts, in embedding/graph_op.c. Its kernels call the
   collection's own API, which runs on the collection's device, so they serve as both
   the CPU and the CUDA kernels. */
ember_status ember__ebc_infer(ember_node *n);
ember_status ember__ebc_backward(ember_graph *g, ember_node *n, ember_node *gout, ember_node **gin);
ember_status ember__ebc_update_infer(ember_node *n);
ember_status ember__ebc_forward_kernel(const ember__exec *x);
ember_status ember__ebc_update_kernel(const ember__exec *x);
double ember__ebc_flops(const ember_node *n);

/* Create a node of an op over sources with parameters; runs inference. Internal. */
ember_status ember__node_new(ember_graph *g, ember__op op, ember_node *const *src, int nsrc,
                             const int64_t *ip, int nip, const float *fp, int nfp, ember_node **out);

int64_t ember__node_numel(const ember_node *n);
size_t ember__node_bytes(const ember_node *n);
/* "(2, 3)" */
const char *ember__shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_GRAPH_INTERNAL_H */
