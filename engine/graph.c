/*
 * The graph: node arena, autodiff, the memory planner and the executor.
 *
 * Planning turns the nodes into a schedule of entries (a node, or a node recomputed
 * for a checkpointed segment), finds each entry's last reader, and assigns arena
 * offsets first-fit in schedule order, freeing a block after its last reader and
 * letting element-wise ops take over a dying input's block. Planning never touches
 * data, so meta mode (no allocation at all) gives exactly the arena size the
 * executor will allocate: the meta-information graph and the executor cannot disagree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "ember/profiler.h"
#include "ember/stream.h"

#define ARENA_ALIGN 64

const char *ember__shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

int64_t ember__node_numel(const ember_node *n) {
    int64_t e = 1;
    for (int i = 0; i < n->ndim; i++) e *= n->shape[i];
    return e;
}

size_t ember__node_bytes(const ember_node *n) {
    return (size_t)ember__node_numel(n) * ember_dtype_size(n->dtype);
}

static int is_leaf(const ember_node *n) { return (n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM)) != 0; }

/* ---- creation ---- */

ember_status ember_graph_create(const ember_graph_params *p, ember_graph **out) {
    EMBER_CHECK_NULL(out, "ember_graph_create");
    *out = NULL;
    ember_graph_params params = p ? *p : (ember_graph_params){0};
    if ((unsigned)params.tier >= EMBER_TIER_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_graph_create: tier %d invalid",
                            (int)params.tier);
    ember_graph *g = calloc(1, sizeof *g);
    if (!g) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_graph_create");
    g->p = params;
    g->mm = params.mm ? params.mm : ember_memory_default();
    g->dev = ember_memory_tier_device(g->mm, params.tier);
    g->training = 1;
    *out = g;
    return EMBER_OK;
}

static void drop_plan(ember_graph *g) {
    for (int i = 0; i < g->n; i++) {
        ember_node *n = g->nodes[i];
        if (!(n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM | EMBER__NODE_PERSISTENT))) {
            ember_tensor_destroy(n->value);
            n->value = NULL;
        }
        ember_tensor_destroy(n->recomp);
        n->recomp = NULL;
    }
    if (g->arena) ember_memory_free(g->mm, g->arena);
    g->arena = NULL;
    free(g->sched);
    g->sched = NULL;
    g->nsched = g->nfwd = 0;
    g->planned = 0;
}

void ember_graph_destroy(ember_graph *g) {
    if (!g) return;
    drop_plan(g);
    for (int i = 0; i < g->n; i++) {
        ember_tensor_destroy(g->nodes[i]->value);
        free(g->nodes[i]->name);
        free(g->nodes[i]);
    }
    free(g->nodes);
    free(g);
}

static ember_status add_node(ember_graph *g, ember_node *n) {
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 64;
        ember_node **nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "graph: %d nodes", cap);
        g->nodes = nn;
        g->cap = cap;
    }
    n->id = g->n;
    g->nodes[g->n++] = n;
    return EMBER_OK;
}

ember_status ember__node_new(ember_graph *g, ember__op op, ember_node *const *src, int nsrc,
                             const int64_t *ip, int nip, const float *fp, int nfp, ember_node **out) {
    const char *fn = ember__ops[op].name;
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (g->backward_built && !g->building_backward)
        return ember__error(EMBER_ERR_STATE, "%s: the backward graph is already built; add forward "
                                             "nodes before ember_graph_build_backward", fn);
    ember_node *n = calloc(1, sizeof *n);
    if (!n) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: node", fn);
    n->op = op;
    n->graph = g;
    n->nsrc = nsrc;
    for (int i = 0; i < nsrc; i++) {
        if (!src[i]) {
            free(n);
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: input %d is NULL", fn, i);
        }
        if (src[i]->graph != g) {
            free(n);
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: input %d belongs to another graph", fn, i);
        }
        n->src[i] = src[i];
        if (src[i]->flags & EMBER__NODE_REQUIRES_GRAD) n->flags |= EMBER__NODE_REQUIRES_GRAD;
    }
    for (int i = 0; i < nip; i++) n->ip[i] = ip[i];
    for (int i = 0; i < nfp; i++) n->fp[i] = fp[i];
    ember_status st = ember__ops[op].infer(n);
    if (st != EMBER_OK) {
        free(n);
        return st;
    }
    if (g->building_backward) {
        n->flags |= EMBER__NODE_BACKWARD;
        n->flags &= ~(unsigned)EMBER__NODE_REQUIRES_GRAD;
    } else {
        n->segment = g->cur_segment;
    }
    st = add_node(g, n);
    if (st != EMBER_OK) {
        free(n);
        return st;
    }
    if (g->planned) drop_plan(g);
    *out = n;
    return EMBER_OK;
}

static ember_status new_leaf(ember_graph *g, const char *fn, ember__op op, const char *name,
                             ember_dtype dtype, int ndim, const int64_t *shape, ember_node **out) {
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (g->backward_built)
        return ember__error(EMBER_ERR_STATE, "%s: backward already built", fn);
    if (!ember_dtype_valid(dtype))
        return ember__error(EMBER_ERR_DTYPE, "%s '%s': dtype %d invalid", fn, name ? name : "", (int)dtype);
    if (ndim < 0 || ndim > EMBER_MAX_DIMS || (ndim && !shape))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s '%s': ndim %d invalid", fn, name ? name : "", ndim);
    ember_node *n = calloc(1, sizeof *n);
    if (!n) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    n->op = op;
    n->graph = g;
    n->dtype = dtype;
    n->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            free(n);
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s '%s': dim %d is %lld", fn, name ? name : "", i,
                                (long long)shape[i]);
        }
        n->shape[i] = shape[i];
    }
    n->name = strdup(name ? name : "");
    n->flags = op == EMBER__OP_PARAM ? (EMBER__NODE_PARAM | EMBER__NODE_REQUIRES_GRAD) : EMBER__NODE_INPUT;
    n->segment = g->cur_segment;
    ember_status st = EMBER_OK;
    if (!n->name) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: name", fn);
    if (st == EMBER_OK && !g->p.meta) {
        ember_tensor_params tp = {.dtype = dtype, .ndim = ndim, .tier = g->p.tier, .mm = g->mm,
                                  .kind = op == EMBER__OP_PARAM ? EMBER_MEM_PARAMETER : EMBER_MEM_ACTIVATION};
        memcpy(tp.shape, n->shape, sizeof tp.shape);
        st = ember_tensor_create(&tp, &n->value);
        if (st == EMBER_OK) st = ember_tensor_fill(n->value, 0.0);
    }
    if (st == EMBER_OK) st = add_node(g, n);
    if (st != EMBER_OK) {
        ember_tensor_destroy(n->value);
        free(n->name);
        free(n);
        return st;
    }
    if (g->planned) drop_plan(g);
    *out = n;
    return EMBER_OK;
}

ember_status ember_graph_input(ember_graph *g, const char *name, ember_dtype dtype, int ndim,
                               const int64_t *shape, ember_node **out) {
    return new_leaf(g, "ember_graph_input", EMBER__OP_INPUT, name, dtype, ndim, shape, out);
}

ember_status ember_graph_param(ember_graph *g, const char *name, ember_dtype dtype, int ndim,
                               const int64_t *shape, ember_node **out) {
    if (dtype != EMBER_DTYPE_F32)
        return ember__error(EMBER_ERR_DTYPE, "ember_graph_param '%s': parameters are f32, not %s",
                            name ? name : "", ember_dtype_name(dtype));
    return new_leaf(g, "ember_graph_param", EMBER__OP_PARAM, name, dtype, ndim, shape, out);
}

ember_status ember_graph_mark_output(ember_graph *g, ember_node *n) {
    EMBER_CHECK_NULL(g, "ember_graph_mark_output");
    EMBER_CHECK_NULL(n, "ember_graph_mark_output");
    if (n->graph != g)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_graph_mark_output: node of another graph");
    n->flags |= EMBER__NODE_OUTPUT;
    if (g->planned) drop_plan(g);
    return EMBER_OK;
}

void ember_graph_set_training(ember_graph *g, int training) {
    if (g) g->training = training != 0;
}

ember_status ember_node_set_requires_grad(ember_node *n) {
    EMBER_CHECK_NULL(n, "ember_node_set_requires_grad");
    if (!(n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM)))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "ember_node_set_requires_grad: node %d is not a leaf", n->id);
    if (n->graph->n > n->id + 1)
        return ember__error(EMBER_ERR_STATE,
                            "ember_node_set_requires_grad: set it before using the input (node %d)", n->id);
    if (!ember_dtype_is_float(n->dtype))
        return ember__error(EMBER_ERR_DTYPE, "ember_node_set_requires_grad: %s input has no gradient",
                            ember_dtype_name(n->dtype));
    n->flags |= EMBER__NODE_REQUIRES_GRAD;
    return EMBER_OK;
}

ember_node *ember_node_grad(const ember_node *n) { return n ? n->grad : NULL; }

ember_status ember_graph_find(const ember_graph *g, const char *name, ember_node **out) {
    EMBER_CHECK_NULL(g, "ember_graph_find");
    EMBER_CHECK_NULL(name, "ember_graph_find");
    EMBER_CHECK_NULL(out, "ember_graph_find");
    *out = NULL;
    for (int i = 0; i < g->n; i++)
        if (is_leaf(g->nodes[i]) && strcmp(g->nodes[i]->name, name) == 0) {
            *out = g->nodes[i];
            return EMBER_OK;
        }
    return ember__error(EMBER_ERR_NOT_FOUND, "ember_graph_find: no input or parameter named \"%s\"", name);
}

ember_status ember_graph_checkpoint_begin(ember_graph *g) {
    EMBER_CHECK_NULL(g, "ember_graph_checkpoint_begin");
    if (g->cur_segment)
        return ember__error(EMBER_ERR_STATE, "ember_graph_checkpoint_begin: segment %d is still open",
                            g->cur_segment);
    if (g->backward_built)
        return ember__error(EMBER_ERR_STATE, "ember_graph_checkpoint_begin: backward already built");
    g->cur_segment = ++g->nsegments;
    return EMBER_OK;
}

ember_status ember_graph_checkpoint_end(ember_graph *g) {
    EMBER_CHECK_NULL(g, "ember_graph_checkpoint_end");
    if (!g->cur_segment)
        return ember__error(EMBER_ERR_STATE, "ember_graph_checkpoint_end: no open segment");
    g->cur_segment = 0;
    return EMBER_OK;
}

/* ---- autodiff ---- */

static ember_status accumulate(ember_graph *g, ember_node **slot, ember_node *contrib) {
    if (!contrib) return EMBER_OK;
    if (!*slot) {
        *slot = contrib;
        return EMBER_OK;
    }
    return ember__node_new(g, EMBER__OP_ADD, (ember_node *[]){*slot, contrib}, 2, NULL, 0, NULL, 0, slot);
}

ember_status ember_graph_build_backward(ember_graph *g, ember_node *loss) {
    static const char fn[] = "ember_graph_build_backward";
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(loss, fn);
    if (g->backward_built) return ember__error(EMBER_ERR_STATE, "%s: already built", fn);
    if (g->cur_segment) return ember__error(EMBER_ERR_STATE, "%s: checkpoint segment %d still open", fn, g->cur_segment);
    if (loss->graph != g) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: loss of another graph", fn);
    if (ember__node_numel(loss) != 1 || loss->dtype != EMBER_DTYPE_F32) {
        char s[96];
        return ember__error(EMBER_ERR_SHAPE, "%s: the loss must be one f32 element, not %s%s", fn,
                            ember_dtype_name(loss->dtype), ember__shape_str(loss->ndim, loss->shape, s, sizeof s));
    }
    int nfwd = loss->id + 1;
    ember_node **grads = calloc((size_t)nfwd, sizeof *grads);
    if (!grads) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    g->backward_built = 1;
    g->building_backward = 1;
    ember_status st = ember__node_new(g, EMBER__OP_FILL, NULL, 0, (int64_t[]){0}, 1, (float[]){1.0f}, 1,
                                      &grads[loss->id]);
    /* a scalar seed shaped like the loss */
    if (st == EMBER_OK) {
        ember_node *seed = grads[loss->id];
        seed->ndim = loss->ndim;
        memcpy(seed->shape, loss->shape, sizeof seed->shape);
    }
    for (int i = nfwd - 1; i >= 0 && st == EMBER_OK; i--) {
        ember_node *n = g->nodes[i];
        if (!grads[i] || !(n->flags & EMBER__NODE_REQUIRES_GRAD)) continue;
        n->grad = grads[i];
        if (n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM)) continue;
        const ember__op_def *d = &ember__ops[n->op];
        if (!d->backward) {
            st = ember__error(EMBER_ERR_UNSUPPORTED, "%s: op %s has no gradient", fn, d->name);
            break;
        }
        ember_node *gin[EMBER__MAX_SRC] = {0};
        st = d->backward(g, n, grads[i], gin);
        for (int s = 0; s < n->nsrc && st == EMBER_OK; s++)
            if (gin[s] && (n->src[s]->flags & EMBER__NODE_REQUIRES_GRAD))
                st = accumulate(g, &grads[n->src[s]->id], gin[s]);
    }
    /* Leaves that need a gradient but got none (unused) get explicit zeros. */
    for (int i = 0; i < nfwd && st == EMBER_OK; i++) {
        ember_node *n = g->nodes[i];
        if (!(n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM)) || !(n->flags & EMBER__NODE_REQUIRES_GRAD))
            continue;
        if (!grads[i]) {
            st = ember__node_new(g, EMBER__OP_FILL, NULL, 0, (int64_t[]){0}, 1, (float[]){0.0f}, 1, &grads[i]);
            if (st == EMBER_OK) {
                grads[i]->ndim = n->ndim;
                memcpy(grads[i]->shape, n->shape, sizeof n->shape);
            }
        }
        if (st == EMBER_OK) {
            n->grad = grads[i];
            if (grads[i]->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM)) continue;
            grads[i]->flags |= EMBER__NODE_PERSISTENT | EMBER__NODE_OUTPUT;
        }
    }
    g->building_backward = 0;
    free(grads);
    if (st != EMBER_OK) return st;
    g->loss = loss;
    loss->flags |= EMBER__NODE_OUTPUT;
    if (g->planned) drop_plan(g);
    return EMBER_OK;
}

/* ---- planning ---- */

/* A checkpointed node is recomputed in backward: inside a segment, not a leaf, and
   neither read by a forward node outside its segment nor kept as an output. */
static int is_recomputed(const ember_graph *g, const ember_node *n, const unsigned char *escapes) {
    (void)g;
    return n->segment && !(n->flags & (EMBER__NODE_INPUT | EMBER__NODE_PARAM | EMBER__NODE_OUTPUT |
                                       EMBER__NODE_BACKWARD | EMBER__NODE_PERSISTENT)) &&
           !escapes[n->id];
}

typedef struct block {
    size_t off, size;
} block;

typedef struct freelist {
    block *b;
    int n, cap;
    size_t end; /* arena high-water mark */
} freelist;

static size_t align_up(size_t x) { return (x + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; }

static int fl_alloc(freelist *fl, size_t size, size_t *off) {
    size = align_up(size ? size : 1);
    for (int i = 0; i < fl->n; i++)
        if (fl->b[i].size >= size) {
            *off = fl->b[i].off;
            fl->b[i].off += size;
            fl->b[i].size -= size;
            if (fl->b[i].size == 0) {
                memmove(&fl->b[i], &fl->b[i + 1], (size_t)(fl->n - i - 1) * sizeof *fl->b);
                fl->n--;
            }
            return 1;
        }
    /* Grow the arena; a free block at its end is extended rather than wasted. */
    if (fl->n && fl->b[fl->n - 1].off + fl->b[fl->n - 1].size == fl->end) {
        *off = fl->b[fl->n - 1].off;
        fl->end = *off + size;
        fl->n--;
        return 1;
    }
    *off = fl->end;
    fl->end += size;
    return 1;
}

static int fl_free(freelist *fl, size_t off, size_t size) {
    size = align_up(size ? size : 1);
    int i = 0;
    while (i < fl->n && fl->b[i].off < off) i++;
    if (fl->n == fl->cap) {
        int cap = fl->cap ? fl->cap * 2 : 32;
        block *nb = realloc(fl->b, (size_t)cap * sizeof *nb);
        if (!nb) return 0;
        fl->b = nb;
        fl->cap = cap;
    }
    memmove(&fl->b[i + 1], &fl->b[i], (size_t)(fl->n - i) * sizeof *fl->b);
    fl->b[i] = (block){off, size};
    fl->n++;
    /* coalesce with neighbours */
    if (i + 1 < fl->n && fl->b[i].off + fl->b[i].size == fl->b[i + 1].off) {
        fl->b[i].size += fl->b[i + 1].size;
        memmove(&fl->b[i + 1], &fl->b[i + 2], (size_t)(fl->n - i - 2) * sizeof *fl->b);
        fl->n--;
    }
    if (i > 0 && fl->b[i - 1].off + fl->b[i - 1].size == fl->b[i].off) {
        fl->b[i - 1].size += fl->b[i].size;
        memmove(&fl->b[i], &fl->b[i + 1], (size_t)(fl->n - i - 1) * sizeof *fl->b);
        fl->n--;
    }
    return 1;
}


ember_status ember_graph_plan(ember_graph *g) {
    static const char fn[] = "ember_graph_plan";
    EMBER_CHECK_NULL(g, fn);
    if (g->planned) return EMBER_OK;
    if (g->cur_segment) return ember__error(EMBER_ERR_STATE, "%s: checkpoint segment %d still open", fn, g->cur_segment);
    drop_plan(g);
    int n = g->n;
    ember_status st = EMBER_OK;
    unsigned char *needed = calloc((size_t)n + 1, 1), *escapes = calloc((size_t)n + 1, 1);
    int *fwd_entry = malloc(((size_t)n + 1) * sizeof *fwd_entry), *rec_entry = malloc(((size_t)n + 1) * sizeof *rec_entry);
    int *seg_done = calloc((size_t)g->nsegments + 2, sizeof *seg_done);
    ember__sched *sched = calloc(2 * (size_t)n + 1, sizeof *sched);
    freelist fl = {0};
    if (!needed || !escapes || !fwd_entry || !rec_entry || !seg_done || !sched) {
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d nodes", fn, n);
        goto done;
    }
    /* Roots: outputs, the loss, leaf gradients; with none marked, every node. */
    int any_root = 0;
    for (int i = 0; i < n; i++)
        if (g->nodes[i]->flags & (EMBER__NODE_OUTPUT | EMBER__NODE_PERSISTENT)) needed[i] = 1, any_root = 1;
    for (int i = n - 1; i >= 0; i--) {
        if (!any_root) needed[i] = 1;
        if (!needed[i]) continue;
        ember_node *x = g->nodes[i];
        for (int s = 0; s < x->nsrc; s++) needed[x->src[s]->id] = 1;
    }
    /* A segment node read by a forward node of another segment (or none) escapes. */
    for (int i = 0; i < n; i++) {
        ember_node *x = g->nodes[i];
        if (!needed[i] || (x->flags & EMBER__NODE_BACKWARD)) continue;
        for (int s = 0; s < x->nsrc; s++)
            if (x->src[s]->segment && x->src[s]->segment != x->segment) escapes[x->src[s]->id] = 1;
    }
    for (int i = 0; i < n; i++) fwd_entry[i] = rec_entry[i] = -1;
    int ns = 0;
    for (int i = 0; i < n; i++) {
        ember_node *x = g->nodes[i];
        if (!needed[i] || is_leaf(x) || (x->flags & EMBER__NODE_BACKWARD)) continue;
        sched[ns] = (ember__sched){.node = x, .last_use = -1, .owns = 1};
        fwd_entry[i] = ns++;
    }
    g->nfwd = ns;
    for (int i = 0; i < n; i++) {
        ember_node *x = g->nodes[i];
        if (!needed[i] || !(x->flags & EMBER__NODE_BACKWARD)) continue;
        /* Recompute a segment right before the first backward node that reads it. */
        for (int s = 0; s < x->nsrc; s++) {
            ember_node *src = x->src[s];
            if (!is_recomputed(g, src, escapes) || seg_done[src->segment]) continue;
            seg_done[src->segment] = 1;
            for (int j = 0; j < n; j++) {
                ember_node *y = g->nodes[j];
                if (y->segment != src->segment || !needed[j] || !is_recomputed(g, y, escapes)) continue;
                sched[ns] = (ember__sched){.node = y, .recompute = 1, .last_use = -1, .owns = 1};
                rec_entry[j] = ns++;
            }
        }
        sched[ns] = (ember__sched){.node = x, .last_use = -1, .owns = 1};
        fwd_entry[i] = ns++;
    }
    g->nsched = ns;
    /* Last reader of each entry: backward readers and recomputed nodes read the
       recomputed instance of checkpointed values. */
    for (int e = 0; e < ns; e++) {
        ember_node *x = sched[e].node;
        int in_bwd = e >= g->nfwd;
        for (int s = 0; s < x->nsrc; s++) {
            ember_node *src = x->src[s];
            if (is_leaf(src)) continue;
            int se = (in_bwd && is_recomputed(g, src, escapes)) ? rec_entry[src->id] : fwd_entry[src->id];
            EMBER_ASSERT(se >= 0 && se < e);
            if (sched[se].last_use < e) sched[se].last_use = e;
        }
    }
    /* Arena offsets. */
    size_t sum = 0;
    for (int e = 0; e < ns && st == EMBER_OK; e++) {
        ember_node *x = sched[e].node;
        size_t bytes = ember__node_bytes(x);
        int own_alloc = (x->flags & (EMBER__NODE_PERSISTENT | EMBER__NODE_OUTPUT)) != 0;
        int ip = ember__ops[x->op].inplace_src, took = 0;
        if (own_alloc) {
            sched[e].offset = SIZE_MAX; /* allocated on its own, outside the arena */
            sched[e].owns = 0;
            took = 1;
        } else {
            sum += align_up(bytes ? bytes : 1);
        }
        if (!took && ip >= 0 && ip < x->nsrc && !is_leaf(x->src[ip])) {
            ember_node *src = x->src[ip];
            int in_bwd = e >= g->nfwd;
            int se = (in_bwd && is_recomputed(g, src, escapes)) ? rec_entry[src->id] : fwd_entry[src->id];
            if (sched[se].last_use == e && sched[se].owns && sched[se].offset != SIZE_MAX &&
                ember__node_bytes(src) == bytes) {
                sched[e].offset = sched[se].offset;
                sched[se].owns = 0;
                took = 1;
            }
        }
        if (!took) fl_alloc(&fl, bytes, &sched[e].offset);
        /* Free what dies here (after the node ran), and values nobody reads. */
        for (int s = 0; s <= x->nsrc; s++) {
            int se;
            if (s < x->nsrc) {
                ember_node *src = x->src[s];
                if (is_leaf(src)) continue;
                int in_bwd = e >= g->nfwd;
                se = (in_bwd && is_recomputed(g, src, escapes)) ? rec_entry[src->id] : fwd_entry[src->id];
                if (sched[se].last_use != e) continue;
            } else {
                se = e;
                if (sched[se].last_use >= 0) continue;
            }
            if (sched[se].owns && sched[se].offset != SIZE_MAX) {
                sched[se].owns = 0;
                if (!fl_free(&fl, sched[se].offset, ember__node_bytes(sched[se].node)))
                    st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: free list", fn);
            }
        }
    }
    if (st != EMBER_OK) goto done;
    g->arena_size = fl.end;
    g->sum_bytes = sum;
    g->sched = sched;
    sched = NULL;
    if (!g->p.meta) {
        if (g->arena_size)
            st = ember_memory_alloc(g->mm, g->p.tier, EMBER_MEM_ACTIVATION, g->arena_size, &g->arena);
        for (int e = 0; e < g->nsched && st == EMBER_OK; e++) {
            ember__sched *en = &g->sched[e];
            ember_node *x = en->node;
            ember_tensor **slot = en->recompute ? &x->recomp : &x->value;
            if (en->offset == SIZE_MAX) {
                if (*slot) continue;
                ember_tensor_params tp = {.dtype = x->dtype, .ndim = x->ndim, .tier = g->p.tier, .mm = g->mm,
                                          .kind = (x->flags & EMBER__NODE_PERSISTENT) ? EMBER_MEM_GRADIENT
                                                                                      : EMBER_MEM_ACTIVATION};
                memcpy(tp.shape, x->shape, sizeof tp.shape);
                st = ember_tensor_create(&tp, slot);
            } else {
                st = ember_tensor_wrap((char *)g->arena + en->offset, x->dtype, x->ndim, x->shape, NULL, g->dev, slot);
            }
        }
    }
    if (st == EMBER_OK) g->planned = 1;
done:
    free(needed);
    free(escapes);
    free(fwd_entry);
    free(rec_entry);
    free(seg_done);
    free(sched);
    free(fl.b);
    if (st != EMBER_OK) drop_plan(g);
    return st;
}

/* ---- execution ---- */

ember_status ember__graph_add_hook(ember_graph *g, ember__graph_hook fn, void *user) {
    EMBER_CHECK_NULL(g, "ember__graph_add_hook");
    EMBER_CHECK_NULL(fn, "ember__graph_add_hook");
    for (int i = 0; i < g->nhooks; i++)
        if (g->hooks[i].fn == fn && g->hooks[i].user == user)
            return ember__error(EMBER_ERR_STATE, "graph: this executor hook is already installed");
    if (g->nhooks == EMBER__MAX_HOOKS)
        return ember__error(EMBER_ERR_STATE, "graph: %d executor hooks are installed already", EMBER__MAX_HOOKS);
    g->hooks[g->nhooks++] = (ember__hook_slot){fn, user};
    return EMBER_OK;
}

void ember__graph_remove_hook(ember_graph *g, ember__graph_hook fn, void *user) {
    if (!g) return;
    for (int i = 0; i < g->nhooks; i++)
        if (g->hooks[i].fn == fn && g->hooks[i].user == user) {
            memmove(g->hooks + i, g->hooks + i + 1, (size_t)(g->nhooks - i - 1) * sizeof *g->hooks);
            g->nhooks--;
            return;
        }
}

/* The "after" calls of hooks [0, n), last installed first (they nest like scopes); the
   kernel's status wins over theirs. */
static ember_status hooks_after(ember_graph *g, ember__hook_event *ev, int n, ember_status kernel) {
    ev->after = 1;
    ev->status = kernel;
    ember_status first = EMBER_OK;
    for (int i = n - 1; i >= 0; i--) {
        ember_status st = g->hooks[i].fn(g->hooks[i].user, g, ev);
        if (first == EMBER_OK) first = st;
    }
    return kernel != EMBER_OK ? kernel : first;
}

/* The "before" calls for entry e, in install order: the node and its parameter sources,
   each once. A hook that fails stops the run; the ones before it get their "after". */
static ember_status hooks_before(ember_graph *g, int e, ember__hook_event *ev) {
    ember_node *x = g->sched[e].node;
    *ev = (ember__hook_event){.entry = e, .backward = e >= g->nfwd, .node = x};
    for (int s = 0; s < x->nsrc; s++) {
        ember_node *src = x->src[s];
        int seen = !(src->flags & EMBER__NODE_PARAM);
        for (int k = 0; k < ev->nparams && !seen; k++) seen = ev->params[k] == src;
        if (!seen) ev->params[ev->nparams++] = src;
    }
    for (int i = 0; i < g->nhooks; i++) {
        ember_status st = g->hooks[i].fn(g->hooks[i].user, g, ev);
        if (st != EMBER_OK) {
            hooks_after(g, ev, i, st);
            return st;
        }
    }
    return EMBER_OK;
}

static ember_status run_entries(ember_graph *g, int from, int to) {
    for (int e = from; e < to; e++) {
        ember__sched *en = &g->sched[e];
        ember_node *x = en->node;
        ember__hook_event hev = {.entry = e};
        int nh = g->nhooks;
        if (nh) EMBER_TRY(hooks_before(g, e, &hev));
        ember__exec ex = {.g = g, .n = x, .out = en->recompute ? x->recomp : x->value};
        int in_bwd = e >= g->nfwd;
        for (int s = 0; s < x->nsrc; s++) {
            ember_node *src = x->src[s];
            /* Backward and recompute entries read recomputed values where they exist. */
            ex.src[s] = ((in_bwd) && src->recomp) ? src->recomp : src->value;
        }
        const ember__op_def *d = &ember__ops[x->op];
        ember__kernel k = d->forward[g->dev.type];
#ifdef EMBER_HAVE_CUDA
        if (g->dev.type == EMBER_DEVICE_CUDA) k = ember__graph_cuda_kernel(x->op);
#endif
        if (!k) {
            ember_status st = ember__error(EMBER_ERR_UNSUPPORTED, "graph node %d (%s): no kernel for this device",
                                           x->id, d->name);
            return nh ? hooks_after(g, &hev, nh, st) : st;
        }
        /* one profiler scope per node, named by its op; on CUDA the launch is timed
           unless the profiler asks for a sync (then the kernel is) */
        int prof = ember_profiler_enabled();
        if (prof) {
            ember_profiler_begin_cat(d->name, in_bwd ? "backward" : "forward");
            ember_profiler_arg("node", x->id);
            if (en->recompute) ember_profiler_arg("recompute", 1);
        }
        ember_status st = k(&ex);
#ifdef EMBER_HAVE_CUDA
        if (prof && st == EMBER_OK && g->dev.type == EMBER_DEVICE_CUDA && ember_profiler_sync_device())
            st = ember_stream_synchronize(ember_stream_get_current(g->dev));
#endif
        if (prof) ember_profiler_end();
        if (nh) st = hooks_after(g, &hev, nh, st);
        if (st != EMBER_OK) return st;
        g->runs[x->op]++;
        if (d->flops) g->executed_flops += d->flops(x);
    }
    return EMBER_OK;
}

static ember_status ready(ember_graph *g, const char *fn) {
    EMBER_CHECK_NULL(g, fn);
    if (g->p.meta)
        return ember__error(EMBER_ERR_STATE, "%s: a meta graph has no data to run (plan it instead)", fn);
    return ember_graph_plan(g);
}

ember_status ember_graph_forward(ember_graph *g) {
    EMBER_TRY(ready(g, "ember_graph_forward"));
    g->step++;
    return run_entries(g, 0, g->nfwd);
}

ember_status ember_graph_backward(ember_graph *g) {
    EMBER_TRY(ready(g, "ember_graph_backward"));
    if (!g->backward_built)
        return ember__error(EMBER_ERR_STATE, "ember_graph_backward: call ember_graph_build_backward first");
    return run_entries(g, g->nfwd, g->nsched);
}

ember_status ember_graph_run(ember_graph *g) {
    EMBER_TRY(ready(g, "ember_graph_run"));
    g->step++;
    return run_entries(g, 0, g->nsched);
}

uint64_t ember_graph_get_step(const ember_graph *g) { return g ? g->step : 0; }
void ember_graph_set_step(ember_graph *g, uint64_t step) {
    if (g) g->step = step;
}

ember_status ember_node_value(const ember_node *n, ember_tensor **out) {
    EMBER_CHECK_NULL(n, "ember_node_value");
    EMBER_CHECK_NULL(out, "ember_node_value");
    *out = n->value;
    if (!n->value)
        return ember__error(EMBER_ERR_STATE, "ember_node_value: node %d (%s) has no value%s", n->id,
                            ember__ops[n->op].name, n->graph->p.meta ? " in a meta graph" : " before the graph is planned");
    return EMBER_OK;
}

/* ---- information ---- */

int ember_graph_node_count(const ember_graph *g) { return g ? g->n : 0; }

ember_status ember_node_get_info(const ember_node *x, ember_node_info *o) {
    EMBER_CHECK_NULL(x, "ember_node_get_info");
    EMBER_CHECK_NULL(o, "ember_node_get_info");
    memset(o, 0, sizeof *o);
    o->id = x->id;
    o->name = x->name ? x->name : "";
    o->op = ember__ops[x->op].name;
    o->dtype = x->dtype;
    o->ndim = x->ndim;
    memcpy(o->shape, x->shape, sizeof o->shape);
    o->nsrc = x->nsrc;
    for (int s = 0; s < x->nsrc; s++) o->src[s] = x->src[s]->id;
    o->out_bytes = ember__node_bytes(x);
    o->flops = ember__ops[x->op].flops ? ember__ops[x->op].flops(x) : 0;
    double bytes = (double)o->out_bytes;
    if (!is_leaf(x))
        for (int s = 0; s < x->nsrc; s++) bytes += (double)ember__node_bytes(x->src[s]);
    o->bytes_moved = is_leaf(x) ? 0 : bytes;
    o->backward = (x->flags & EMBER__NODE_BACKWARD) != 0;
    o->segment = x->segment;
    return EMBER_OK;
}

ember_status ember_graph_node_info(const ember_graph *g, int i, ember_node_info *out) {
    EMBER_CHECK_NULL(g, "ember_graph_node_info");
    if (i < 0 || i >= g->n)
        return ember__error(EMBER_ERR_INDEX, "ember_graph_node_info: node %d of %d", i, g->n);
    return ember_node_get_info(g->nodes[i], out);
}

ember_status ember_graph_get_stats(ember_graph *g, ember_graph_stats *o) {
    EMBER_CHECK_NULL(g, "ember_graph_get_stats");
    EMBER_CHECK_NULL(o, "ember_graph_get_stats");
    EMBER_TRY(ember_graph_plan(g));
    memset(o, 0, sizeof *o);
    o->nodes = g->n;
    for (int i = 0; i < g->n; i++) {
        ember_node *x = g->nodes[i];
        if (x->flags & EMBER__NODE_PARAM) o->param_bytes += ember__node_bytes(x);
        if (x->flags & EMBER__NODE_INPUT) o->input_bytes += ember__node_bytes(x);
        if (x->flags & EMBER__NODE_PERSISTENT) o->grad_bytes += ember__node_bytes(x);
    }
    for (int e = 0; e < g->nsched; e++) {
        ember_node *x = g->sched[e].node;
        double f = ember__ops[x->op].flops ? ember__ops[x->op].flops(x) : 0;
        if (g->sched[e].recompute) {
            o->recomputed_nodes++;
            o->recompute_flops += f;
        } else if (e < g->nfwd) {
            o->forward_nodes++;
            o->forward_flops += f;
        } else {
            o->backward_nodes++;
            o->backward_flops += f;
        }
    }
    o->peak_activation_bytes = g->arena_size;
    o->sum_activation_bytes = g->sum_bytes;
    o->executed_flops = g->executed_flops;
    return EMBER_OK;
}

ember_status ember_graph_print(ember_graph *g, FILE *f) {
    EMBER_CHECK_NULL(g, "ember_graph_print");
    EMBER_CHECK_NULL(f, "ember_graph_print");
    ember_graph_stats st;
    EMBER_TRY(ember_graph_get_stats(g, &st));
    fprintf(f, "%4s  %-20s %-14s %-22s %12s %12s %4s %s\n", "id", "op", "name", "shape", "MFLOP", "KiB moved",
            "seg", "inputs");
    for (int i = 0; i < g->n; i++) {
        ember_node_info in;
        EMBER_TRY(ember_node_get_info(g->nodes[i], &in));
        char shape[64], srcs[48] = "";
        ember__shape_str(in.ndim, in.shape, shape, sizeof shape);
        size_t k = 0;
        for (int s = 0; s < in.nsrc && k < sizeof srcs; s++)
            k += (size_t)snprintf(srcs + k, sizeof srcs - k, "%s%d", s ? "," : "", in.src[s]);
        fprintf(f, "%4d%c %-20s %-14.14s %-22s %12.3f %12.1f %4d %s\n", in.id, in.backward ? '*' : ' ', in.op,
                in.name, shape, in.flops / 1e6, in.bytes_moved / 1024.0, in.segment, srcs);
    }
    fprintf(f,
            "\n%d nodes (* = backward): %d forward, %d backward, %d recomputed\n"
            "FLOPs: forward %.4g, backward %.4g, recompute %.4g\n"
            "memory: parameters %.3f MiB, gradients %.3f MiB, inputs %.3f MiB, activations peak %.3f MiB "
            "(%.3f MiB without reuse)\n",
            st.nodes, st.forward_nodes, st.backward_nodes, st.recomputed_nodes, st.forward_flops, st.backward_flops,
            st.recompute_flops, st.param_bytes / 1048576.0, st.grad_bytes / 1048576.0, st.input_bytes / 1048576.0,
            st.peak_activation_bytes / 1048576.0, st.sum_activation_bytes / 1048576.0);
    return EMBER_OK;
}

int64_t ember_graph_op_runs(const ember_graph *g, const char *op) {
    if (!g || !op) return 0;
    for (int i = 0; i < EMBER__OP_COUNT; i++)
        if (strcmp(ember__ops[i].name, op) == 0) return g->runs[i];
    return 0;
}

const char *const *ember_graph_op_names(void) {
    static const char *names[EMBER__OP_COUNT + 1];
    if (!names[0])
        for (int i = 0; i < EMBER__OP_COUNT; i++) names[i] = ember__ops[i].name;
    return names;
}

int ember_graph_op_is_grad_only(const char *op) {
    for (int i = 0; op && i < EMBER__OP_COUNT; i++)
        if (strcmp(ember__ops[i].name, op) == 0) return ember__ops[i].grad_only;
    return 0;
}
