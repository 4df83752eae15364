/*
 * parallel/ddp.c: data parallelism with bucketed gradient all-reduce overlapped with
 * backward (DESIGN.md section 8).
 *
 * The design decision: readiness comes from the executor, not from a guess. The
 * graph's schedule says which backward entry writes each parameter's gradient, so
 * buckets are filled in that order at creation, and the executor hook (one per graph,
 * engine/graph_internal.h) counts each bucket's outstanding gradients down as their
 * entries finish; the bucket whose count reaches zero is packed and its all-reduce
 * started right there, while the executor moves on to the next kernel. Because every
 * rank runs the same schedule, every rank starts the same collectives in the same
 * order, which MPI's non-blocking collectives require. Buckets are flat copies (one
 * dtype each) rather than one collective per tensor: a few large messages cost less
 * latency than many small ones (torch DDP's reasoning, and its default sizes).
 *
 * Optimizer-state sharding (ZeRO stages 1 and 2) reuses the buckets: each bucket is
 * padded to a multiple of the world size and cut into one contiguous range per rank;
 * the all-reduce becomes a reduce-scatter (so a rank receives only its range's mean
 * gradient), the optimizer is built over views of the parameters restricted to the
 * rank's ranges (element-wise optimizers update a range exactly as they would the
 * whole tensor), and after the step an in-place all-gather of each bucket brings
 * every rank's updated range to all. State and averaged gradients take 1 / world of
 * the memory; the parameters stay whole on every rank.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/dense.h"
#include "ember/parallel.h"
#include "engine/graph_internal.h"
#include "engine/internal.h"

typedef struct ddp_param {
    ember_node *node, *grad;
    int64_t numel;
    int64_t offset;     /* elements into its bucket */
    int bucket;
    int next_same_grad; /* next parameter whose gradient is the same node; -1 */
    int ready;
    int key;            /* backward entry that writes its gradient (-1: ready before backward) */
    ember_tensor *view; /* the bucket's slice, shaped like the parameter */
} ddp_param;

typedef struct ddp_bucket {
    int first, count;
    int64_t numel;
    size_t bytes;
    ember_dtype dtype;
    ember_tensor *buf; /* (padded,) flat: gradients, then (sharded) the gathered parameters */
    int64_t padded;    /* numel, or (sharded) rounded up to a multiple of the world size */
    int64_t shard;     /* sharded: padded / world, the range each rank owns */
    ember_tensor *gshard; /* sharded: (shard,) this rank's averaged gradients */
    int pending;       /* gradients not yet written this step */
    int started, done;
    ember_comm_request *req;
} ddp_bucket;

struct ember_ddp {
    ember_graph *g;
    ember_comm *comm;
    ember_ddp_config cfg;
    int np, nb;
    ddp_param *p; /* in bucket order */
    ddp_bucket *b;
    int map_n;          /* node ids below this are mapped */
    int *grad_first;    /* (map_n) node id -> first parameter with that gradient node; -1 */
    unsigned char *mark; /* (map_n) scratch: node scheduled in backward */
    int hooked, armed, in_backward;
    ember_status err; /* first failure seen inside the hook (reported after backward) */
    ember_ddp_stats stats;
    /* optimizer-state sharding */
    int sharded;
    ember_optimizer *opt; /* made by ember_ddp_optimizer_create */
    int npiece;
    struct piece {
        ember_tensor *param; /* (n,) view of a parameter inside this rank's range */
        ember_tensor *slot;  /* (n,) the same elements of the bucket buffer */
    } *pieces;
};

static const char *param_name(const ddp_param *p) { return p->node->name ? p->node->name : ""; }

/* ---- buckets ---- */

/* Pack bucket k's gradients and start its all-reduce. A failed copy still starts the
   collective: the other ranks are starting it too. */
static void bucket_start(ember_ddp *d, int k) {
    ddp_bucket *b = &d->b[k];
    if (b->started) return;
    b->started = 1;
    b->done = 0;
    if (d->in_backward) d->stats.overlapped++;
    for (int i = b->first; i < b->first + b->count; i++) {
        ember_tensor *gv = NULL;
        ember_status st = ember_node_value(d->p[i].grad, &gv);
        if (st == EMBER_OK) st = ember_tensor_copy(d->p[i].view, gv);
        if (st != EMBER_OK && d->err == EMBER_OK) d->err = st;
    }
    ember_status st =
        d->sharded ? ember_comm_reduce_scatter(d->comm, ember_tensor_data(b->buf), ember_tensor_data(b->gshard),
                                               b->shard, b->dtype, EMBER_REDUCE_MEAN, &b->req)
                   : ember_comm_all_reduce(d->comm, ember_tensor_data(b->buf), ember_tensor_data(b->buf), b->numel,
                                           b->dtype, EMBER_REDUCE_MEAN, &b->req);
    if (st != EMBER_OK) {
        b->req = NULL;
        b->done = 1;
        if (d->err == EMBER_OK) d->err = st;
    }
}

/* Wait every started bucket (exactly once each) and unpack the finished ones (sharded:
   the averaged range stays in gshard, where the optimizer reads it). */
static ember_status buckets_finish(ember_ddp *d) {
    ember_status first = EMBER_OK;
    for (int k = 0; k < d->nb; k++) {
        ddp_bucket *b = &d->b[k];
        if (!b->started) continue;
        ember_status st = ember_comm_wait(b->req);
        b->req = NULL;
        b->started = 0;
        b->done = 1;
        for (int i = b->first; i < b->first + b->count && st == EMBER_OK && !d->sharded; i++) {
            ember_tensor *gv = NULL;
            st = ember_node_value(d->p[i].grad, &gv);
            if (st == EMBER_OK) st = ember_tensor_copy(gv, d->p[i].view);
        }
        if (st != EMBER_OK && first == EMBER_OK) first = st;
    }
    return first;
}

/* MPI moves non-blocking collectives along only inside MPI calls: test what is in flight. */
static void buckets_progress(ember_ddp *d) {
    for (int k = 0; k < d->nb; k++) {
        ddp_bucket *b = &d->b[k];
        if (!b->started || b->done || !b->req) continue;
        int done = 0;
        ember_status st = ember_comm_test(b->req, &done);
        if (st != EMBER_OK) {
            if (d->err == EMBER_OK) d->err = st;
            b->done = 1; /* still waited (and released) by buckets_finish */
        } else if (done) {
            b->done = 1;
        }
    }
}

static void param_ready(ember_ddp *d, int i) {
    ddp_param *p = &d->p[i];
    if (p->ready) return;
    p->ready = 1;
    if (--d->b[p->bucket].pending == 0) bucket_start(d, p->bucket);
}

static ember_status ddp_hook(void *user, ember_graph *g, const ember__hook_event *ev) {
    ember_ddp *d = user;
    (void)g;
    if (!d->armed || !ev->after || !ev->backward) return EMBER_OK;
    if (ev->status == EMBER_OK && g->sched[ev->entry].recompute == 0) {
        int id = ev->node->id;
        if (id >= 0 && id < d->map_n)
            for (int i = d->grad_first[id]; i >= 0; i = d->p[i].next_same_grad) param_ready(d, i);
    }
    buckets_progress(d);
    return EMBER_OK; /* failures are reported after backward, once every bucket has run */
}

/* ---- creation ---- */

static int cmp_key(const void *a, const void *b) {
    const ddp_param *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    /* same entry (or ready before backward): later parameters first, as backward goes */
    return x->node->id > y->node->id ? -1 : x->node->id < y->node->id;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* All ranks agree on the parameters and buckets: the min and max of a hash match. */
static ember_status check_same(ember_ddp *d) {
    uint64_t h = 14695981039346656037ull;
    h = fnv(h, &d->np, sizeof d->np);
    h = fnv(h, &d->nb, sizeof d->nb);
    for (int i = 0; i < d->np; i++) {
        const ember_node *n = d->p[i].node;
        int meta[3] = {(int)n->dtype, n->ndim, d->p[i].bucket};
        h = fnv(h, meta, sizeof meta);
        h = fnv(h, n->shape, sizeof n->shape[0] * (size_t)n->ndim);
        h = fnv(h, param_name(&d->p[i]), strlen(param_name(&d->p[i])));
    }
    int64_t v[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)}, mx[2];
    EMBER_TRY(ember_comm_all_reduce(d->comm, v, mx, 2, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
    if (mx[0] != v[0] || mx[1] != v[1])
        return ember__error(EMBER_ERR_SHAPE,
                            "ember_ddp_create: rank %d of %d: the ranks' graphs differ (%d parameters in %d "
                            "buckets here): build the same model on every rank",
                            ember_comm_rank(d->comm), ember_comm_size(d->comm), d->np, d->nb);
    return EMBER_OK;
}

static ember_status build(ember_ddp *d) {
    static const char fn[] = "ember_ddp_create";
    ember_graph *g = d->g;
    int np = 0;
    for (int i = 0; i < g->n; i++) {
        ember_node *n = g->nodes[i];
        np += (n->flags & EMBER__NODE_PARAM) && n->grad;
    }
    d->map_n = g->n;
    d->p = calloc((size_t)(np ? np : 1), sizeof *d->p);
    d->grad_first = malloc((size_t)(g->n ? g->n : 1) * sizeof *d->grad_first);
    d->mark = calloc((size_t)(g->n ? g->n : 1), 1);
    int *entry = malloc((size_t)(g->n ? g->n : 1) * sizeof *entry);
    if (!d->p || !d->grad_first || !d->mark || !entry) {
        free(entry);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d parameters", fn, np);
    }
    /* backward entry of every node (the plan was made by the caller) */
    for (int i = 0; i < g->n; i++) entry[i] = -1;
    for (int e = g->nfwd; e < g->nsched; e++)
        if (!g->sched[e].recompute) entry[g->sched[e].node->id] = e;
    for (int i = 0; i < g->n; i++) {
        ember_node *n = g->nodes[i];
        if (!(n->flags & EMBER__NODE_PARAM) || !n->grad) continue;
        ddp_param *p = &d->p[d->np++];
        p->node = n;
        p->grad = n->grad;
        p->numel = ember__node_numel(n);
        p->key = n->grad->id < g->n ? entry[n->grad->id] : -1;
        if (!ember_device_equal(ember_comm_device(d->comm), g->dev)) {
            char a[32], b[32];
            free(entry);
            return ember__error(EMBER_ERR_DEVICE, "%s: parameter '%s' is on %s, the communicator's buffers on %s",
                                fn, param_name(p), ember_device_format(g->dev, a, sizeof a),
                                ember_device_format(ember_comm_device(d->comm), b, sizeof b));
        }
    }
    free(entry);
    qsort(d->p, (size_t)d->np, sizeof *d->p, cmp_key);
    for (int i = 0; i < g->n; i++) d->grad_first[i] = -1;
    for (int i = d->np - 1; i >= 0; i--) {
        int id = d->p[i].grad->id;
        d->p[i].next_same_grad = id < d->map_n ? d->grad_first[id] : -1;
        if (id < d->map_n) d->grad_first[id] = i;
    }
    /* cut into buckets */
    d->b = calloc((size_t)(d->np ? d->np : 1), sizeof *d->b);
    if (!d->b) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d buckets", fn, d->np);
    for (int i = 0; i < d->np; i++) {
        ddp_param *p = &d->p[i];
        size_t bytes = (size_t)p->numel * ember_dtype_size(p->node->dtype);
        ddp_bucket *cur = d->nb ? &d->b[d->nb - 1] : NULL;
        size_t cap = d->nb <= 1 ? d->cfg.first_bucket_bytes : d->cfg.bucket_bytes;
        if (!cur || cur->dtype != p->node->dtype || (cur->count > 0 && cur->bytes + bytes > cap)) {
            cur = &d->b[d->nb++];
            *cur = (ddp_bucket){.first = i, .dtype = p->node->dtype};
        }
        p->bucket = d->nb - 1;
        p->offset = cur->numel;
        cur->count++;
        cur->numel += p->numel;
        cur->bytes += bytes;
    }
    const int64_t P = ember_comm_size(d->comm);
    for (int k = 0; k < d->nb; k++) {
        ddp_bucket *b = &d->b[k];
        b->padded = d->sharded ? (b->numel + P - 1) / P * P : b->numel;
        b->shard = b->padded / P;
        ember_tensor_params tp = {.dtype = b->dtype, .ndim = 1, .shape = {b->padded}, .tier = g->p.tier,
                                  .kind = EMBER_MEM_GRADIENT, .mm = g->mm};
        EMBER_TRY(ember_tensor_create(&tp, &b->buf));
        EMBER_TRY(ember_tensor_fill(b->buf, 0.0)); /* the padding is reduced too */
        if (d->sharded) {
            tp.shape[0] = b->shard;
            EMBER_TRY(ember_tensor_create(&tp, &b->gshard));
        }
        for (int i = b->first; i < b->first + b->count; i++) {
            ddp_param *p = &d->p[i];
            ember_tensor *flat = NULL;
            EMBER_TRY(ember_tensor_narrow(b->buf, 0, p->offset, p->numel, &flat));
            ember_status st = ember_tensor_reshape(flat, p->node->ndim, p->node->shape, &p->view);
            ember_tensor_destroy(flat);
            EMBER_TRY(st);
        }
        d->stats.bytes += (int64_t)b->bytes;
    }
    d->stats.params = d->np;
    d->stats.buckets = d->nb;
    return EMBER_OK;
}

ember_status ember_ddp_create(ember_graph *g, ember_comm *comm, const ember_ddp_config *cfg, ember_ddp **out) {
    static const char fn[] = "ember_ddp_create";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(g, fn);
    EMBER_CHECK_NULL(comm, fn);
    if (!g->backward_built) return ember__error(EMBER_ERR_STATE, "%s: build the backward graph first", fn);
    if (g->p.meta) return ember__error(EMBER_ERR_STATE, "%s: a meta graph has no gradients", fn);
    if (ember_comm_is_broken(comm)) return ember__error(EMBER_ERR_STATE, "%s: the communicator is broken", fn);
    EMBER_TRY(ember_graph_plan(g));
    ember_ddp *d = calloc(1, sizeof *d);
    if (!d) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    d->g = g;
    d->comm = comm;
    d->cfg = cfg ? *cfg : (ember_ddp_config){0};
    d->sharded = d->cfg.shard_optimizer != 0;
    if (!d->cfg.bucket_bytes) d->cfg.bucket_bytes = EMBER_DDP_DEFAULT_BUCKET_BYTES;
    if (!d->cfg.first_bucket_bytes) d->cfg.first_bucket_bytes = EMBER_DDP_DEFAULT_FIRST_BUCKET_BYTES;
    if (d->cfg.first_bucket_bytes > d->cfg.bucket_bytes) d->cfg.first_bucket_bytes = d->cfg.bucket_bytes;
    ember_status st = build(d);
    if (st == EMBER_OK) st = check_same(d);
    if (st == EMBER_OK && !d->cfg.no_broadcast) st = ember_ddp_broadcast_params(d, 0);
    if (st == EMBER_OK && d->cfg.overlap >= 0) {
        /* when the graph's hook list is full, fall back to after-backward */
        if (ember__graph_add_hook(g, ddp_hook, d) == EMBER_OK) {
            d->hooked = 1;
        } else {
            ember_clear_error();
            ember_log(EMBER_LOG_INFO, "%s: the graph's executor hooks are taken: gradients are all-reduced "
                                      "after backward, not overlapped", fn);
        }
    }
    d->stats.overlap = d->hooked;
    d->stats.sharded = d->sharded;
    if (st != EMBER_OK) {
        ember_ddp_destroy(d);
        return st;
    }
    *out = d;
    return EMBER_OK;
}

void ember_ddp_destroy(ember_ddp *d) {
    if (!d) return;
    if (d->hooked) ember__graph_remove_hook(d->g, ddp_hook, d);
    for (int k = 0; k < d->nb; k++) {
        if (d->b[k].started) ember_comm_wait(d->b[k].req);
        ember_tensor_destroy(d->b[k].buf);
        ember_tensor_destroy(d->b[k].gshard);
    }
    for (int i = 0; i < d->npiece; i++) {
        ember_tensor_destroy(d->pieces[i].param);
        ember_tensor_destroy(d->pieces[i].slot);
    }
    free(d->pieces);
    for (int i = 0; i < d->np; i++) ember_tensor_destroy(d->p[i].view);
    free(d->p);
    free(d->b);
    free(d->grad_first);
    free(d->mark);
    free(d);
}

/* ---- steps ---- */

ember_status ember_ddp_backward(ember_ddp *d) {
    static const char fn[] = "ember_ddp_backward";
    EMBER_CHECK_NULL(d, fn);
    ember_graph *g = d->g;
    if (!g->planned) return ember__error(EMBER_ERR_STATE, "%s: run the forward pass first", fn);
    d->err = EMBER_OK;
    d->stats.overlapped = 0;
    /* gradients written by no backward entry (leaves, zero fills planned elsewhere)
       are ready now */
    memset(d->mark, 0, (size_t)d->map_n);
    for (int e = g->nfwd; e < g->nsched; e++) {
        int id = g->sched[e].node->id;
        if (!g->sched[e].recompute && id < d->map_n) d->mark[id] = 1;
    }
    for (int k = 0; k < d->nb; k++) d->b[k].pending = d->b[k].count;
    for (int i = 0; i < d->np; i++) d->p[i].ready = 0;
    d->in_backward = 0;
    if (d->hooked)
        for (int i = 0; i < d->np; i++) {
            int id = d->p[i].grad->id;
            if (id >= d->map_n || !d->mark[id]) param_ready(d, i);
        }
    double t0 = ember__now();
    d->armed = d->hooked;
    d->in_backward = 1;
    ember_status st = ember_graph_backward(g);
    d->armed = 0;
    d->in_backward = 0;
    double t1 = ember__now();
    /* the rest (no hook, a failed backward, or a gradient the hook never saw), in order */
    for (int k = 0; k < d->nb; k++) bucket_start(d, k);
    ember_status wst = buckets_finish(d);
    d->stats.backward_s = t1 - t0;
    d->stats.wait_s = ember__now() - t1;
    if (st != EMBER_OK) return st;
    if (d->err != EMBER_OK) return d->err;
    if (wst != EMBER_OK) return wst;
    d->stats.steps++;
    return EMBER_OK;
}

ember_status ember_ddp_run(ember_ddp *d) {
    EMBER_CHECK_NULL(d, "ember_ddp_run");
    ember_status st = ember_graph_forward(d->g);
    if (st != EMBER_OK) {
        /* the others are about to all-reduce: join them so the ranks stay in step */
        for (int k = 0; k < d->nb; k++) bucket_start(d, k);
        buckets_finish(d);
        return st;
    }
    return ember_ddp_backward(d);
}

/* Sharded: every rank's updated range into every rank's parameters (in-place
   all-gathers of the buckets, all in flight at once). A failed step still gathers. */
static ember_status gather_params(ember_ddp *d, ember_status step_st) {
    ember_status first = step_st;
    for (int i = 0; i < d->npiece && step_st == EMBER_OK; i++) {
        ember_status st = ember_tensor_copy(d->pieces[i].slot, d->pieces[i].param);
        if (st != EMBER_OK && first == EMBER_OK) first = st;
    }
    const int r = ember_comm_rank(d->comm);
    for (int k = 0; k < d->nb; k++) {
        ddp_bucket *b = &d->b[k];
        size_t es = ember_dtype_size(b->dtype);
        char *base = ember_tensor_data(b->buf);
        ember_status st = ember_comm_all_gather(d->comm, base + (size_t)(r * b->shard) * es, base, b->shard, b->dtype,
                                                &b->req);
        b->started = st == EMBER_OK;
        if (st != EMBER_OK && first == EMBER_OK) first = st;
    }
    for (int k = 0; k < d->nb; k++) {
        ddp_bucket *b = &d->b[k];
        if (!b->started) continue;
        b->started = 0;
        ember_status st = ember_comm_wait(b->req);
        b->req = NULL;
        for (int i = b->first; i < b->first + b->count && st == EMBER_OK && first == EMBER_OK; i++)
            st = ember_tensor_copy(d->p[i].node->value, d->p[i].view);
        if (st != EMBER_OK && first == EMBER_OK) first = st;
    }
    return first;
}

ember_status ember_ddp_step(ember_ddp *d, ember_optimizer *opt) {
    EMBER_CHECK_NULL(d, "ember_ddp_step");
    if (d->sharded && opt != d->opt)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_ddp_step: with shard_optimizer, step the optimizer "
                            "made by ember_ddp_optimizer_create");
    ember_status st = ember_ddp_run(d);
    if (!d->sharded) return st != EMBER_OK ? st : opt ? ember_optimizer_step(opt) : EMBER_OK;
    /* the gather runs whatever happened, so the ranks stay in step */
    return gather_params(d, st != EMBER_OK ? st : opt ? ember_optimizer_step(opt) : EMBER_OK);
}

ember_status ember_ddp_optimizer_create(ember_ddp *d, const ember_optimizer_config *cfg, ember_optimizer **out) {
    static const char fn[] = "ember_ddp_optimizer_create";
    EMBER_CHECK_NULL(d, fn);
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (!d->sharded) return ember_graph_optimizer_create(d->g, cfg, out);
    if (d->opt) return ember__error(EMBER_ERR_STATE, "%s: this ddp already has its optimizer", fn);
    /* the pieces: each parameter's part of this rank's range of its bucket */
    const int64_t r = ember_comm_rank(d->comm);
    int cap = d->np + d->nb;
    d->pieces = calloc((size_t)cap, sizeof *d->pieces);
    ember_optimizer_param *ps = calloc((size_t)cap, sizeof *ps);
    char (*names)[160] = calloc((size_t)cap, sizeof *names);
    ember_tensor **grads = calloc((size_t)cap, sizeof *grads);
    ember_status st = d->pieces && ps && names && grads ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    int n = 0;
    for (int i = 0; i < d->np && st == EMBER_OK; i++) {
        const ddp_param *p = &d->p[i];
        const ddp_bucket *b = &d->b[p->bucket];
        int64_t lo = r * b->shard, hi = lo + b->shard;
        int64_t a = p->offset > lo ? p->offset : lo, e = p->offset + p->numel < hi ? p->offset + p->numel : hi;
        if (a >= e) continue;
        ember_tensor *flat = NULL;
        st = ember_tensor_reshape(p->node->value, 1, (int64_t[]){p->numel}, &flat);
        if (st == EMBER_OK) st = ember_tensor_narrow(flat, 0, a - p->offset, e - a, &d->pieces[n].param);
        ember_tensor_destroy(flat);
        if (st == EMBER_OK) st = ember_tensor_narrow(b->buf, 0, a, e - a, &d->pieces[n].slot);
        if (st == EMBER_OK) st = ember_tensor_narrow(b->gshard, 0, a - lo, e - a, &grads[n]);
        if (st != EMBER_OK) break;
        snprintf(names[n], sizeof names[n], "%s[%lld:%lld]", param_name(p), (long long)(a - p->offset),
                 (long long)(e - p->offset));
        ps[n] = (ember_optimizer_param){.param = d->pieces[n].param, .grad = grads[n], .name = names[n]};
        n++;
        d->npiece = n;
        d->stats.shard_numel += e - a;
    }
    if (st == EMBER_OK) st = ember_optimizer_create(cfg, ps, n, out);
    for (int i = 0; i < n; i++) ember_tensor_destroy(grads[i]); /* the optimizer keeps its own handles */
    free(ps);
    free(names);
    free(grads);
    if (st == EMBER_OK) d->opt = *out;
    return st;
}

ember_status ember_ddp_sync_grads(ember_ddp *d) {
    EMBER_CHECK_NULL(d, "ember_ddp_sync_grads");
    d->err = EMBER_OK;
    for (int k = 0; k < d->nb; k++) bucket_start(d, k);
    ember_status st = buckets_finish(d);
    return d->err != EMBER_OK ? d->err : st;
}

ember_status ember_ddp_broadcast_params(ember_ddp *d, int root) {
    static const char fn[] = "ember_ddp_broadcast_params";
    EMBER_CHECK_NULL(d, fn);
    if (root < 0 || root >= ember_comm_size(d->comm))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: root %d is not a rank of %d", fn, root,
                            ember_comm_size(d->comm));
    /* in creation order, so every rank issues the same sequence */
    ember_graph *g = d->g;
    ember_status first = EMBER_OK;
    for (int i = 0; i < g->n; i++) {
        ember_node *n = g->nodes[i];
        if (!(n->flags & EMBER__NODE_PARAM) || !n->grad) continue;
        ember_status st = ember_comm_broadcast_tensor(d->comm, n->value, root, NULL);
        if (st != EMBER_OK && first == EMBER_OK) first = st;
    }
    return first;
}

/* ---- information ---- */

ember_status ember_ddp_get_stats(const ember_ddp *d, ember_ddp_stats *out) {
    EMBER_CHECK_NULL(d, "ember_ddp_get_stats");
    EMBER_CHECK_NULL(out, "ember_ddp_get_stats");
    *out = d->stats;
    return EMBER_OK;
}

ember_status ember_ddp_get_bucket(const ember_ddp *d, int i, ember_ddp_bucket_info *out) {
    EMBER_CHECK_NULL(d, "ember_ddp_get_bucket");
    EMBER_CHECK_NULL(out, "ember_ddp_get_bucket");
    if (i < 0 || i >= d->nb)
        return ember__error(EMBER_ERR_INDEX, "ember_ddp_get_bucket: bucket %d of %d", i, d->nb);
    const ddp_bucket *b = &d->b[i];
    *out = (ember_ddp_bucket_info){
        .first = b->first, .count = b->count, .numel = b->numel, .bytes = b->bytes, .dtype = b->dtype};
    return EMBER_OK;
}

const char *ember_ddp_param_name(const ember_ddp *d, int i) {
    if (!d || i < 0 || i >= d->np) return NULL;
    return param_name(&d->p[i]);
}
