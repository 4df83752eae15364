/*
 * The heterogeneous memory manager (ember/offload.h): chunks with a host copy and an
 * optional device copy, the executor hook that places them around every op, the
 * warm-up trace, a side thread for transfers, and the optimizer step chunk by chunk.
 *
 * Design decisions:
 *  - Model data is adopted, not copied around behind the graph's back: each
 *    parameter, gradient and optimizer-state storage is re-pointed into chunk memory
 *    (tensor handles, views and the optimizer's references all stay valid) and
 *    re-pointed again whenever its chunk's valid copy changes. The kernels never know.
 *  - The host copy is the backing store and is never freed; the device copy is a
 *    cache with a valid bit, and the host copy's valid bit says whether the device
 *    copy is dirty. So evicting a parameter chunk (only the optimizer writes it) and
 *    placing a gradient chunk whose tensors are FREE copy nothing.
 *  - The optimizer is the library's own (ember_optimizer, one per chunk): the step
 *    runs the same code on the same bits whatever the placement, which is why any
 *    budget trains exactly like unlimited memory. Where it runs is where the
 *    tensors' storages point when it is called: host copies (OpenMP kernels) or
 *    device copies (the GPU kernels).
 *  - Only the calling thread changes chunk metadata and storage pointers; the side
 *    thread just moves bytes between buffers the main thread allocated, and the main
 *    thread reaps finished transfers at every hook. So the lock covers the job queue
 *    and the done flags only. The one exception is the memory manager's reclaim
 *    callback, which may run on whichever thread allocates on the device: the
 *    manager's own entry points hold `mu`, and the callback only trylocks it, so it
 *    either runs alone or frees nothing (and never recurses into a placement).
 *  - ZeRO reuses the chunks as the unit of sharding: chunk c belongs to rank c mod N,
 *    so every N consecutive chunks (a group) hold one chunk of each rank. The host
 *    copies of a group's parameter chunks are one block, and those of its gradient
 *    chunks another, laid out in rank order: the group's gradient reduce-scatter and
 *    parameter all-gather then run in place on the backing store, with no staging
 *    buffer and no packing copies, and the owner's chunk is the collective's block.
 *    Only the owned chunks get an optimizer and state chunks.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chunk.h"
#include "engine/graph_internal.h"
#include "engine/internal.h"
#include "engine/memory_internal.h"
#include "engine/tensor_internal.h"
#include "ember/offload.h"
#include "ember/parallel.h"
#include "ember/profiler.h"
#include "ember/stream.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

#define NK EMBER_CHUNK_KIND_COUNT
#define MAX_ACCESS (EMBER__MAX_SRC * 2 + 1)
#define F32 4
#define ASYNC_MIN_BYTES ((size_t)256 << 10) /* smaller chunks are copied on the calling thread */

typedef struct chunk chunk;

/* One adopted storage: a parameter, its gradient, or its optimizer-state block. */
typedef struct adopted {
    ember_tensor *t;  /* our handle (a retained view), keeps the storage alive */
    ember_storage *s;
    chunk *ch;
    int param;        /* index of its parameter (first-use order) */
    ember_chunk_kind kind;
    int64_t off;      /* element offset in the chunk */
    size_t bytes;     /* bytes it covers in the chunk */
    ember_tensor_state state;
    /* where it lived before adoption (restored by destroy) */
    ember_memory *orig_mm; /* NULL: caller memory at orig_base */
    void *orig_base;
    ember_tier orig_tier;
    ember_device orig_dev;
    void *tmp; /* NAIVE: its device copy during an op */
} adopted;

struct chunk {
    ember_chunk_kind kind;
    int index, id;     /* id = kind * nchunks + index */
    size_t bytes;
    void *host, *dev;  /* host: always; dev: while placed */
    int host_valid, dev_valid;
    int home_device;   /* STATIC: lives on the device; AUTO: its optimizer step runs there */
    int absent;        /* ZeRO: the state chunk of another rank's chunk (never allocated here) */
    int first, count;  /* its tensors: tens[kind][first .. first + count) */
    int pins, nfree;   /* tensors in COMPUTE, in FREE */
    int want;          /* needed by the op being placed */
    int64_t last_use;  /* op clock of its last use (LRU during the warm-up) */
    /* the transfer in flight */
    int busy, job_h2d, job_release, job_done;
    ember_status job_status;
    void *job_dst;
    const void *job_src;
    ember_event *ev; /* CUDA: compute-stream point a write-back waits for */
};

typedef struct access {
    adopted *a;
    int write;
    ember_tensor_state prev;
} access;

struct ember_offload {
    ember_offload_config cfg;
    ember_optimizer_config ocfg;
    ember_graph *g;
    ember_memory *mm;
    ember_tier host_tier;
    ember_device dev; /* of the device tier */
    int n;            /* parameters */
    ember_node **pnode;
    int *chunk_of;
    int64_t *offset_of;
    ember_chunk_layout layout;
    int nstate, nkinds, nchunks;
    adopted *tens[NK];
    chunk *chunks;
    ember_optimizer **opt;
    int *opt_dev;            /* (nchunks) AUTO: step chunk c on the device */
    int *param_of, *grad_of; /* node id -> parameter index, or -1 */
    int nnodes;
    int hooked;
    /* the trace */
    int nsched, nops;
    int recording, recorded_graph, warm;
    int *rec_need, *rec_nneed; /* (nsched * MAX_ACCESS), (nsched) */
    size_t *rec_nm;            /* (nops) */
    ember_offload_op *ops;
    int *opbuf;
    ember__trace trace;
    int64_t clock;
    /* the op being run */
    int nacc;
    access acc[MAX_ACCESS];
    /* device bytes of our copies, the idle buffers of the pool included */
    size_t dev_bytes, pool_bytes;
    /* idle device buffers of one chunk of each kind, kept for the next placement after
       the warm-up (a fresh buffer costs page faults or a cudaMalloc; the trace says
       how much non-model memory will want the room back) */
    void **pool[NK];
    int npool[NK];
    /* the side thread */
    int thread_on, stop;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    int *queue, qhead, qtail, qcap;
    int sync_init; /* lock and conditions initialised */
    ember__cand *cand;
    ember_offload_stats st;
    /* ZeRO over zn ranks (zn 1: none): chunk c belongs to rank c % zn; group j is chunks
       [j zn, (j + 1) zn), whose parameter (gradient) host copies are gblock[0 (1)][j],
       chunk c at slot c % zn (slots past the last chunk are padding) */
    ember_comm *comm;
    int zn, zr, ngroups;
    void **gblock[2];
    ember_comm_request **rq; /* (ngroups) the collectives in flight */
    /* the entry points hold mu; the reclaim callback trylocks it */
    pthread_mutex_t mu;
    int mu_init;
    int reclaim_on;        /* registered as the memory manager's reclaim callback */
    pthread_t owner;       /* the thread that last ran the manager */
    int pos_now;           /* the op placed last (the reclaim's point in the trace) */
};

static ember_mem_kind mem_kind(ember_chunk_kind k) {
    return k == EMBER_CHUNK_PARAM ? EMBER_MEM_PARAMETER
           : k == EMBER_CHUNK_GRAD ? EMBER_MEM_GRADIENT
                                   : EMBER_MEM_OPTIMIZER_STATE;
}

static chunk *chunk_at(ember_offload *off, ember_chunk_kind k, int c) {
    return (int)k < off->nkinds ? &off->chunks[(int)k * off->nchunks + c] : NULL;
}

static const char *tname(const ember_offload *off, const adopted *a) { return off->pnode[a->param]->name; }

/* ZeRO: this rank keeps chunk c's optimizer state and steps it (every chunk without ZeRO). */
static int owns(const ember_offload *off, int c) { return off->zn <= 1 || c % off->zn == off->zr; }

static int empty(const chunk *ch) { return ch->nfree == ch->count; }
/* The device copy holds data the host copy lacks. */
static int dirty(const chunk *ch) { return ch->dev && ch->dev_valid && !ch->host_valid && !empty(ch); }

/* ---- states ---- */

static ember_status set_state(ember_offload *off, adopted *a, ember_tensor_state to) {
    if (!ember_tensor_state_legal(a->state, to))
        return ember__error(EMBER_ERR_STATE, "offload: tensor '%s' (%s): %s -> %s is not a legal transition",
                            tname(off, a), ember_chunk_kind_name(a->kind), ember_tensor_state_name(a->state),
                            ember_tensor_state_name(to));
    chunk *ch = a->ch;
    ch->pins += (to == EMBER_TENSOR_STATE_COMPUTE) - (a->state == EMBER_TENSOR_STATE_COMPUTE);
    ch->nfree += (to == EMBER_TENSOR_STATE_FREE) - (a->state == EMBER_TENSOR_STATE_FREE);
    off->st.state_bytes[a->state] -= a->bytes;
    off->st.state_bytes[to] += a->bytes;
    a->state = to;
    return EMBER_OK;
}

/* ---- copies ---- */

/* DRAM to DRAM. On the calling thread a large copy is split over the OpenMP team
   (memory bandwidth, not one core, is the limit); the side thread copies alone. */
static void copy_cpu(void *dst, const void *src, size_t n, int parallel) {
    const size_t block = (size_t)256 << 10;
    if (!parallel || n < 2 * block) {
        memcpy(dst, src, n);
        return;
    }
    int64_t nb = (int64_t)((n + block - 1) / block);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        size_t o = (size_t)b * block, len = n - o < block ? n - o : block;
        memcpy((char *)dst + o, (const char *)src + o, len);
    }
}

/* Bytes between the host and the device tier (h2d: host to device). */
static ember_status copy_bytes(ember_offload *off, void *dst, const void *src, size_t n, int h2d, int main_thread) {
    if (!n) return EMBER_OK;
    double t0 = ember__now();
    ember_status st = EMBER_OK;
#ifdef EMBER_HAVE_CUDA
    if (off->dev.type == EMBER_DEVICE_CUDA)
        st = ember__cuda_memcpy(off->dev.index, dst, src, n, h2d ? EMBER__H2D : EMBER__D2H, 1);
    else
#endif
        copy_cpu(dst, src, n, main_thread);
    (void)off;
    if (st == EMBER_OK && ember_profiler_enabled())
        ember_profiler_transfer(h2d ? EMBER_PROFILER_LINK_HOST_TO_DEVICE : EMBER_PROFILER_LINK_DEVICE_TO_HOST, n,
                                t0, ember__now());
    return st;
}

static void count_copy(ember_offload *off, size_t n, int h2d) {
    if (h2d) {
        off->st.h2d_bytes += n;
        off->st.h2d_copies++;
    } else {
        off->st.d2h_bytes += n;
        off->st.d2h_copies++;
    }
}

/* Point the chunk's tensors at its device copy or its host copy. */
static void point(ember_offload *off, chunk *ch, int on_device) {
    char *base = on_device ? ch->dev : ch->host;
    for (int i = ch->first; i < ch->first + ch->count; i++) {
        adopted *a = &off->tens[ch->kind][i];
        a->s->base = base + a->off * F32;
        a->s->tier = on_device ? EMBER_TIER_DEVICE : off->host_tier;
        a->s->device = on_device ? off->dev : EMBER_CPU;
    }
}

/* ---- the side thread ---- */

static void *side_main(void *arg) {
    ember_offload *off = arg;
    ember_profiler_set_thread_name("offload");
    ember_stream *side = NULL, *prev = NULL;
    if (off->dev.type != EMBER_DEVICE_CPU && ember_stream_create(off->dev, &side) == EMBER_OK)
        prev = ember_stream_set_current(side);
    pthread_mutex_lock(&off->lock);
    for (;;) {
        while (!off->stop && off->qhead == off->qtail) pthread_cond_wait(&off->work, &off->lock);
        if (off->qhead == off->qtail) break; /* stopping, queue drained */
        int id = off->queue[off->qhead % off->qcap];
        off->qhead++;
        if (id < 0) continue; /* taken back by the main thread */
        chunk *ch = &off->chunks[id];
        pthread_mutex_unlock(&off->lock);
        ember_status st = EMBER_OK;
        if (ch->ev && !ch->job_h2d) st = ember_event_synchronize(ch->ev); /* the producer's kernels */
        if (st == EMBER_OK) st = copy_bytes(off, ch->job_dst, ch->job_src, ch->bytes, ch->job_h2d, 0);
        pthread_mutex_lock(&off->lock);
        ch->job_status = st;
        ch->job_done = 1;
        pthread_cond_broadcast(&off->done);
    }
    pthread_mutex_unlock(&off->lock);
    if (side) {
        ember_stream_set_current(prev);
        ember_stream_destroy(side);
    }
    return NULL;
}

static ember_status enqueue(ember_offload *off, chunk *ch, int h2d, int release) {
    ch->busy = 1;
    ch->job_done = 0;
    ch->job_status = EMBER_OK;
    ch->job_h2d = h2d;
    ch->job_release = release;
    ch->job_dst = h2d ? ch->dev : ch->host;
    ch->job_src = h2d ? ch->host : ch->dev;
    if (!h2d && off->dev.type != EMBER_DEVICE_CPU) {
        if (!ch->ev) EMBER_TRY(ember_event_create(off->dev, &ch->ev));
        EMBER_TRY(ember_event_record(ch->ev, NULL));
    }
    count_copy(off, ch->bytes, h2d);
    pthread_mutex_lock(&off->lock);
    off->queue[off->qtail % off->qcap] = ch->id;
    off->qtail++;
    pthread_cond_signal(&off->work);
    pthread_mutex_unlock(&off->lock);
    return EMBER_OK;
}

static size_t pool_size(ember_offload *off, ember_chunk_kind k) {
    chunk *ch = chunk_at(off, k, 0);
    return ch ? ch->bytes : 0;
}

/* Hand back device memory: into the pool when it is a chunk's size, else freed. */
static void dev_put(ember_offload *off, ember_chunk_kind k, size_t bytes, void *p) {
    if (off->warm && off->pool[k] && bytes == pool_size(off, k) && off->npool[k] < off->nchunks) {
        off->pool[k][off->npool[k]++] = p;
        off->pool_bytes += bytes;
        return;
    }
    ember_memory_free(off->mm, p);
    off->dev_bytes -= bytes;
}

/* Free one idle pool buffer (all: every one). Returns whether any was freed. */
static int pool_release(ember_offload *off, int all) {
    int freed = 0;
    for (int k = 0; k < NK; k++)
        while (off->npool[k] > 0) {
            ember_memory_free(off->mm, off->pool[k][--off->npool[k]]);
            off->pool_bytes -= pool_size(off, (ember_chunk_kind)k);
            off->dev_bytes -= pool_size(off, (ember_chunk_kind)k);
            freed = 1;
            if (!all) return 1;
        }
    return freed;
}

static void dev_free(ember_offload *off, chunk *ch) {
    dev_put(off, ch->kind, ch->bytes, ch->dev);
    ch->dev = NULL;
    ch->dev_valid = 0;
}

/* A finished transfer: the main thread takes the chunk back. */
static ember_status reap(ember_offload *off, chunk *ch) {
    ch->busy = 0;
    if (ch->job_status != EMBER_OK) return ch->job_status;
    if (ch->job_h2d) {
        ch->dev_valid = 1;
        point(off, ch, 1);
    } else {
        ch->host_valid = 1;
        if (ch->job_release) {
            point(off, ch, 0);
            dev_free(off, ch);
        }
    }
    return EMBER_OK;
}

static ember_status reap_all(ember_offload *off) {
    if (!off->thread_on) return EMBER_OK;
    ember_status st = EMBER_OK;
    int total = off->nkinds * off->nchunks;
    for (int i = 0; i < total; i++) {
        chunk *ch = &off->chunks[i];
        if (!ch->busy) continue;
        pthread_mutex_lock(&off->lock);
        int done = ch->job_done;
        pthread_mutex_unlock(&off->lock);
        if (done) {
            ember_status s = reap(off, ch);
            if (st == EMBER_OK) st = s;
        }
    }
    return st;
}

/* The chunk's transfer, finished: one still queued is taken back and done here (with
   the whole OpenMP team), one running is waited for. */
static ember_status wait_chunk(ember_offload *off, chunk *ch) {
    if (!ch->busy) return EMBER_OK;
    int prof = ember_profiler_enabled();
    if (prof) ember_profiler_begin_cat("offload_wait", "offload");
    pthread_mutex_lock(&off->lock);
    int queued = -1;
    for (int j = off->qhead; j < off->qtail && queued < 0 && !ch->job_done; j++)
        if (off->queue[j % off->qcap] == ch->id) queued = j % off->qcap;
    if (queued >= 0) off->queue[queued] = -1;
    else if (!ch->job_done) off->st.waits++;
    while (queued < 0 && !ch->job_done) pthread_cond_wait(&off->done, &off->lock);
    pthread_mutex_unlock(&off->lock);
    if (queued >= 0) {
        ch->job_status = EMBER_OK;
        if (ch->ev && !ch->job_h2d) ch->job_status = ember_event_synchronize(ch->ev);
        if (ch->job_status == EMBER_OK) ch->job_status = copy_bytes(off, ch->job_dst, ch->job_src, ch->bytes, ch->job_h2d, 1);
        ch->job_done = 1; /* the side thread no longer knows this job */
    }
    if (prof) ember_profiler_end();
    return reap(off, ch);
}

static int any_busy(ember_offload *off) {
    for (int i = 0; i < off->nkinds * off->nchunks; i++)
        if (off->chunks[i].busy) return 1;
    return 0;
}

static ember_status wait_any(ember_offload *off) {
    pthread_mutex_lock(&off->lock);
    for (;;) {
        int done = 0;
        for (int i = 0; i < off->nkinds * off->nchunks && !done; i++) done = off->chunks[i].busy && off->chunks[i].job_done;
        if (done) break;
        pthread_cond_wait(&off->done, &off->lock);
    }
    pthread_mutex_unlock(&off->lock);
    return reap_all(off);
}

static ember_status wait_all(ember_offload *off) {
    ember_status st = EMBER_OK;
    for (int i = 0; i < off->nkinds * off->nchunks; i++) {
        ember_status s = wait_chunk(off, &off->chunks[i]);
        if (st == EMBER_OK) st = s;
    }
    return st;
}

/* ---- placement ---- */

/* Device bytes free under the budget, less the non-model growth the trace predicts
   for ops pos .. pos + window. */
static size_t room(ember_offload *off, int pos, int window) {
    ember_memory_stats ms;
    ember_memory_get_stats(off->mm, &ms);
    size_t b = ms.budget[EMBER_TIER_DEVICE], live = ms.live_total[EMBER_TIER_DEVICE];
    if (b == EMBER_BUDGET_UNLIMITED) return SIZE_MAX;
    size_t reserve = 0;
    if (off->warm && pos >= 0) {
        size_t now = live > off->dev_bytes ? live - off->dev_bytes : 0;
        size_t nm = ember__trace_non_model_max(&off->trace, pos, window);
        if (nm > now) reserve = nm - now;
    }
    return live + reserve >= b ? 0 : b - live - reserve;
}

/* Whether the non-model growth the trace expects at op pos would not fit beside the
   pool's idle buffers. */
static int pool_blocks(ember_offload *off, int pos) {
    ember_memory_stats ms;
    ember_memory_get_stats(off->mm, &ms);
    size_t b = ms.budget[EMBER_TIER_DEVICE], live = ms.live_total[EMBER_TIER_DEVICE];
    if (b == EMBER_BUDGET_UNLIMITED || !off->warm) return 0;
    size_t now = live > off->dev_bytes ? live - off->dev_bytes : 0;
    size_t nm = ember__trace_non_model_max(&off->trace, pos, 1);
    return nm > now && live + (nm - now) > b;
}

static int64_t next_use(ember_offload *off, const chunk *ch, int pos) {
    if (off->warm && off->cfg.policy == EMBER_OFFLOAD_AUTO && pos >= 0) return ember__trace_next_use(&off->trace, ch->id, pos);
    return off->clock - ch->last_use; /* least recently used first */
}

/* A device copy that may leave now: not in transfer, not in use, not fixed there. */
static int movable(const ember_offload *off, const chunk *ch) {
    return ch->dev && !ch->busy && !ch->pins && !ch->want &&
           !(off->cfg.policy == EMBER_OFFLOAD_STATIC && ch->home_device);
}

/* The chunk to evict: Belady on the trace (LRU before it exists). after: only chunks
   used later than that; clean_only: only chunks that need no write-back. */
static chunk *choose_victim(ember_offload *off, int pos, int64_t after, int clean_only) {
    int n = 0;
    for (int i = 0; i < off->nkinds * off->nchunks; i++) {
        chunk *ch = &off->chunks[i];
        if (!movable(off, ch)) continue;
        if (clean_only && dirty(ch)) continue;
        off->cand[n++] = (ember__cand){.id = ch->id, .next = next_use(off, ch, pos), .dirty = dirty(ch)};
    }
    int v = ember__pick_victim(off->cand, n, after);
    return v < 0 ? NULL : &off->chunks[off->cand[v].id];
}

/* Drop the device copy, writing it back first when dirty. */
static ember_status evict(ember_offload *off, chunk *ch) {
    EMBER_TRY(wait_chunk(off, ch));
    if (!ch->dev) return EMBER_OK;
    if (dirty(ch)) {
        EMBER_TRY(copy_bytes(off, ch->host, ch->dev, ch->bytes, 0, 1));
        count_copy(off, ch->bytes, 0);
    }
    ch->host_valid = 1;
    point(off, ch, 0);
    dev_free(off, ch);
    return EMBER_OK;
}

static void note_alloc(ember_offload *off, size_t bytes) {
    off->dev_bytes += bytes;
    if (off->dev_bytes - off->pool_bytes > off->st.peak_device_chunk_bytes)
        off->st.peak_device_chunk_bytes = off->dev_bytes - off->pool_bytes;
}

/* Device memory without evicting anything: a pooled buffer of this size, or a new one
   when it fits under the budget (less the non-model growth of the next window ops). */
static int dev_try(ember_offload *off, ember_chunk_kind k, size_t bytes, int pos, int window, void **out) {
    if (off->npool[k] && bytes == pool_size(off, k)) {
        *out = off->pool[k][--off->npool[k]];
        off->pool_bytes -= bytes;
        if (off->dev_bytes - off->pool_bytes > off->st.peak_device_chunk_bytes)
            off->st.peak_device_chunk_bytes = off->dev_bytes - off->pool_bytes;
        return 1;
    }
    if (room(off, pos, window) >= bytes &&
        ember_memory_alloc(off->mm, EMBER_TIER_DEVICE, mem_kind(k), bytes, out) == EMBER_OK) {
        note_alloc(off, bytes);
        return 1;
    }
    ember_clear_error();
    return 0;
}

/* Device memory of `bytes` for a chunk of kind k: idle pool buffers go first, then
   chunks by the eviction rule; transfers in flight are waited for last. */
static ember_status dev_alloc(ember_offload *off, ember_chunk_kind k, size_t bytes, int pos, void **out) {
    for (;;) {
        if (dev_try(off, k, bytes, pos, 1, out)) return EMBER_OK;
        if (pool_release(off, 0)) continue;
        chunk *v = choose_victim(off, pos, -1, 0);
        if (v) {
            EMBER_TRY(evict(off, v));
            off->st.evictions++;
            continue;
        }
        if (any_busy(off)) {
            EMBER_TRY(wait_any(off));
            continue;
        }
        ember_memory_stats ms;
        ember_memory_get_stats(off->mm, &ms);
        char where[48];
        if (pos < 0) snprintf(where, sizeof where, "placing the static share");
        else snprintf(where, sizeof where, "op %d", pos);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY,
                            "offload: %s: %zu bytes of %s chunks do not fit in the device budget of %zu bytes "
                            "(%zu in use, %zu of them chunks that this op or the policy keeps there)",
                            where, bytes, ember_chunk_kind_name(k), ms.budget[EMBER_TIER_DEVICE],
                            ms.live_total[EMBER_TIER_DEVICE], off->dev_bytes - off->pool_bytes);
    }
}

/* A valid device copy of ch (write: the op will write it, so the host copy goes stale). */
static ember_status ensure_device(ember_offload *off, chunk *ch, int write, int pos) {
    EMBER_TRY(wait_chunk(off, ch));
    ch->last_use = off->clock;
    if (!ch->dev) {
        int was = ch->want;
        ch->want = 1;
        ember_status st = dev_alloc(off, ch->kind, ch->bytes, pos, &ch->dev);
        ch->want = was;
        EMBER_TRY(st);
        ch->dev_valid = 0;
    }
    if (!ch->dev_valid) {
        if (!empty(ch)) {
            EMBER_TRY(copy_bytes(off, ch->dev, ch->host, ch->bytes, 1, 1));
            count_copy(off, ch->bytes, 1);
        }
        ch->dev_valid = 1;
        point(off, ch, 1);
    }
    if (write) ch->host_valid = 0;
    return EMBER_OK;
}

/* ---- reclaim: device memory for allocations of other data ---- */

/*
 * The memory manager's reclaim callback (engine/memory_internal.h): an allocation of
 * other data on the device tier is `need` bytes short. Idle pool buffers go first, then
 * movable chunks by the eviction rule (furthest next use first), the clean ones before
 * any dirty one, since a dirty one costs a write-back; nothing moves when all of that
 * would not make the room. It frees nothing while the manager is busy, on another
 * thread or inside a placement on this one (mu is held). On a GPU, a call from a thread
 * other than the manager's evicts clean chunks only: a write-back there would not be
 * ordered after the kernels that wrote the chunk on the manager's stream.
 */
static size_t reclaim(void *ctx, size_t need) {
    ember_offload *off = ctx;
    if (pthread_mutex_trylock(&off->mu) != 0) return 0;
    if (reap_all(off) != EMBER_OK)
        ember_log(EMBER_LOG_WARN, "offload: reclaim: a finished transfer failed: %s", ember_last_error());
    int clean_only = off->dev.type != EMBER_DEVICE_CPU && !pthread_equal(pthread_self(), off->owner);
    size_t can = off->pool_bytes;
    for (int i = 0; i < off->nkinds * off->nchunks; i++) {
        const chunk *ch = &off->chunks[i];
        if (movable(off, ch) && !(clean_only && dirty(ch))) can += ch->bytes;
    }
    if (can < need) {
        pthread_mutex_unlock(&off->mu);
        return 0;
    }
    size_t before = off->dev_bytes;
    pool_release(off, 1);
    for (int pass = 0; pass < 2 && before - off->dev_bytes < need; pass++) {
        chunk *v;
        while (before - off->dev_bytes < need && (v = choose_victim(off, off->pos_now, -1, pass == 0 || clean_only))) {
            if (evict(off, v) != EMBER_OK) {
                ember_log(EMBER_LOG_WARN, "offload: reclaim: evicting %s chunk %d failed: %s",
                          ember_chunk_kind_name(v->kind), v->index, ember_last_error());
                pass = 2;
                break;
            }
            off->st.evictions++;
            off->st.reclaim_evictions++;
            pool_release(off, 1); /* after the warm-up the copy's buffer went to the pool */
        }
    }
    size_t freed = before - off->dev_bytes;
    off->st.reclaimed_bytes += freed;
    pthread_mutex_unlock(&off->mu);
    return freed;
}

/* ---- the trace ---- */

static size_t non_model_now(ember_offload *off) {
    ember_memory_stats ms;
    ember_memory_get_stats(off->mm, &ms);
    size_t live = ms.live_total[EMBER_TIER_DEVICE];
    return live > off->dev_bytes ? live - off->dev_bytes : 0;
}

/* After the warm-up: where each optimizer step runs, and the trace. */
static ember_status finish_warmup(ember_offload *off) {
    off->recording = 0;
    size_t nm_peak = 0;
    for (int p = 0; p < off->nops; p++)
        if (off->rec_nm[p] > nm_peak) nm_peak = off->rec_nm[p];
    off->st.non_model_peak = nm_peak;
    if (off->cfg.policy == EMBER_OFFLOAD_AUTO && off->opt) {
        ember_memory_stats ms;
        ember_memory_get_stats(off->mm, &ms);
        size_t b = ms.budget[EMBER_TIER_DEVICE], need = nm_peak;
        for (int c = 0; c < off->nchunks; c++)
            need += chunk_at(off, EMBER_CHUNK_PARAM, c)->bytes + chunk_at(off, EMBER_CHUNK_GRAD, c)->bytes;
        /* the state goes to the device only into room parameters and gradients never need
           (ZeRO: the state of this rank's chunks; the others have none here) */
        for (int c = 0; c < off->nchunks; c++) {
            if (!owns(off, c)) continue;
            chunk *s = off->nstate ? chunk_at(off, EMBER_CHUNK_STATE, c) : NULL;
            size_t sb = s ? s->bytes : 0;
            off->opt_dev[c] = b == EMBER_BUDGET_UNLIMITED || (need <= b && sb <= b - need);
            if (off->opt_dev[c]) need += sb;
            if (s) s->home_device = off->opt_dev[c];
        }
    }
    /* the trace: graph ops as recorded, optimizer steps as decided */
    int nneed = 0;
    for (int p = 0; p < off->nsched; p++) nneed += off->rec_nneed[p];
    free(off->opbuf);
    off->opbuf = malloc(((size_t)nneed + 4 * (size_t)off->nchunks + 1) * sizeof *off->opbuf);
    if (!off->opbuf) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "offload: trace");
    int *w = off->opbuf;
    for (int p = 0; p < off->nops; p++) {
        ember_offload_op *op = &off->ops[p];
        *op = (ember_offload_op){.need = w, .non_model = off->rec_nm[p]};
        if (p < off->nsched) {
            for (int k = 0; k < off->rec_nneed[p]; k++) *w++ = off->rec_need[p * MAX_ACCESS + k];
            op->nneed = off->rec_nneed[p];
            continue;
        }
        int c = p - off->nsched;
        int ids[NK];
        for (int k = 0; k < off->nkinds; k++) ids[k] = chunk_at(off, (ember_chunk_kind)k, c)->id;
        /* ZeRO: another rank steps chunk c; its gradients are consumed by the
           reduce-scatter and its parameters overwritten by the all-gather */
        int on_dev = owns(off, c) &&
                     (off->cfg.policy == EMBER_OFFLOAD_NAIVE ||
                      (off->cfg.policy == EMBER_OFFLOAD_AUTO ? off->opt_dev[c]
                       : off->nstate ? chunk_at(off, EMBER_CHUNK_STATE, c)->home_device
                                     : chunk_at(off, EMBER_CHUNK_PARAM, c)->home_device));
        if (on_dev) {
            for (int k = 0; k < off->nkinds; k++) *w++ = ids[k];
            op->nneed = off->nkinds;
            op->kill = w;
            *w++ = ids[EMBER_CHUNK_GRAD]; /* consumed */
            op->nkill = 1;
        } else {
            op->nneed = 0;
            op->kill = w;
            for (int k = 0; k < off->nkinds; k++) /* the host copies are updated */
                if (!chunk_at(off, (ember_chunk_kind)k, c)->absent) *w++ = ids[k];
            op->nkill = (int)(w - op->kill);
        }
    }
    ember__trace_free(&off->trace);
    EMBER_TRY(ember__trace_build(&off->trace, off->ops, off->nops, off->nkinds * off->nchunks));
    off->warm = 1;
    off->st.warmed_up = 1;
    return EMBER_OK;
}

/* ---- AUTO after the warm-up: prefetch and early release ---- */

/* Start the transfers of the chunks the next ops need, while op pos runs. */
static ember_status prefetch(ember_offload *off, int pos) {
    int L = off->cfg.lookahead, seen = 0;
    for (int k = 1; k < off->nops && seen < L; k++) {
        const ember_offload_op *op = &off->ops[(pos + k) % off->nops];
        if (!op->nneed) continue; /* the window counts the ops that need chunks */
        seen++;
        for (int j = 0; j < op->nneed; j++) {
            chunk *ch = &off->chunks[op->need[j]];
            if (ch->busy || (ch->dev && ch->dev_valid) || empty(ch) || !ch->host_valid) continue;
            if (ember__trace_next_use(&off->trace, ch->id, pos) != k) continue; /* dies first, or sooner */
            if (!ch->dev) {
                /* room without hurting: idle buffers, then clean chunks used later than this one */
                while (!dev_try(off, ch->kind, ch->bytes, pos, k, &ch->dev)) {
                    if (pool_release(off, 0)) continue;
                    chunk *v = choose_victim(off, pos, k, 1);
                    if (!v) {
                        ch->dev = NULL;
                        return EMBER_OK;
                    }
                    EMBER_TRY(evict(off, v));
                    off->st.evictions++;
                }
                ch->dev_valid = 0;
            }
            ch->last_use = off->clock;
            EMBER_TRY(enqueue(off, ch, 1, 0));
            off->st.prefetches++;
        }
    }
    return EMBER_OK;
}

/* After op pos: device copies that are dead (not needed again before they are
   overwritten or consumed) leave now, the dirty ones through the side thread. */
static ember_status release_dead(ember_offload *off, chunk *ch, int pos) {
    if (!ch->dev || ch->busy || ch->pins || ember__trace_next_use(&off->trace, ch->id, pos) != EMBER__NEVER)
        return EMBER_OK;
    if (!dirty(ch)) return evict(off, ch);
    if (off->thread_on && ch->nfree == 0) return enqueue(off, ch, 0, 1);
    return EMBER_OK;
}

/* ---- NAIVE: per-op copies of each tensor ---- */

static ember_status naive_in(ember_offload *off, adopted *a, int pos) {
    EMBER_TRY(dev_alloc(off, a->kind, a->bytes, pos, &a->tmp));
    ember_status st = copy_bytes(off, a->tmp, (char *)a->ch->host + a->off * F32, a->bytes, 1, 1);
    if (st != EMBER_OK) {
        dev_put(off, a->kind, a->bytes, a->tmp);
        a->tmp = NULL;
        return st;
    }
    count_copy(off, a->bytes, 1);
    a->s->base = a->tmp;
    a->s->tier = EMBER_TIER_DEVICE;
    a->s->device = off->dev;
    return EMBER_OK;
}

static ember_status naive_out(ember_offload *off, adopted *a) {
    if (!a->tmp) return EMBER_OK;
    ember_status st = copy_bytes(off, (char *)a->ch->host + a->off * F32, a->tmp, a->bytes, 0, 1);
    if (st == EMBER_OK) count_copy(off, a->bytes, 0);
    a->s->base = (char *)a->ch->host + a->off * F32;
    a->s->tier = off->host_tier;
    a->s->device = EMBER_CPU;
    dev_put(off, a->kind, a->bytes, a->tmp);
    a->tmp = NULL;
    return st;
}

/* ---- the executor hook ---- */

static void add_access(ember_offload *off, adopted *a, int write) {
    for (int i = 0; i < off->nacc; i++)
        if (off->acc[i].a == a) {
            off->acc[i].write |= write;
            return;
        }
    if (off->nacc < MAX_ACCESS) off->acc[off->nacc++] = (access){.a = a, .write = write, .prev = a->state};
}

static void profile_counters(ember_offload *off) {
    if (!ember_profiler_enabled()) return;
    ember_profiler_counter("offload", "device_chunk_bytes", (double)(off->dev_bytes - off->pool_bytes));
    for (int s = 0; s < EMBER_TENSOR_STATE_COUNT; s++)
        ember_profiler_counter("offload", ember_tensor_state_name((ember_tensor_state)s), (double)off->st.state_bytes[s]);
}

static ember_status op_before(ember_offload *off, const ember__hook_event *ev) {
    int pos = ev->entry;
    off->pos_now = pos;
    EMBER_TRY(reap_all(off));
    off->clock++;
    off->nacc = 0;
    for (int k = 0; k < ev->nparams; k++) {
        int p = off->param_of[ev->params[k]->id];
        if (p >= 0) add_access(off, &off->tens[EMBER_CHUNK_PARAM][p], 0);
    }
    ember_node *x = ev->node;
    if (x->id < off->nnodes && off->grad_of[x->id] >= 0) add_access(off, &off->tens[EMBER_CHUNK_GRAD][off->grad_of[x->id]], 1);
    for (int s = 0; s < x->nsrc; s++)
        if (off->grad_of[x->src[s]->id] >= 0) add_access(off, &off->tens[EMBER_CHUNK_GRAD][off->grad_of[x->src[s]->id]], 0);
    /* check every transition before anything moves */
    for (int i = 0; i < off->nacc; i++) {
        adopted *a = off->acc[i].a;
        if (!off->acc[i].write && a->state == EMBER_TENSOR_STATE_FREE)
            return ember__error(EMBER_ERR_STATE, "offload: node %d (%s) reads tensor '%s' (%s), which is FREE (no data)",
                                x->id, ember__ops[x->op].name, tname(off, a), ember_chunk_kind_name(a->kind));
        if (!ember_tensor_state_legal(a->state, EMBER_TENSOR_STATE_COMPUTE))
            return set_state(off, a, EMBER_TENSOR_STATE_COMPUTE); /* the error, naming it */
    }
    if (off->recording && pos < off->nsched) {
        off->rec_nm[pos] = non_model_now(off);
        int n = 0;
        for (int i = 0; i < off->nacc; i++) {
            int id = off->acc[i].a->ch->id, seen = 0;
            for (int j = 0; j < n; j++) seen |= off->rec_need[pos * MAX_ACCESS + j] == id;
            if (!seen) off->rec_need[pos * MAX_ACCESS + n++] = id;
        }
        off->rec_nneed[pos] = n;
    }
    int prof = ember_profiler_enabled();
    if (prof) ember_profiler_begin_cat("offload_place", "offload");
    ember_status st = EMBER_OK;
    if (off->cfg.policy == EMBER_OFFLOAD_NAIVE) {
        for (int i = 0; i < off->nacc && st == EMBER_OK; i++) st = naive_in(off, off->acc[i].a, pos);
        for (int i = 0; st != EMBER_OK && i < off->nacc; i++) naive_out(off, off->acc[i].a);
    } else {
        for (int i = 0; i < off->nacc; i++) off->acc[i].a->ch->want = 1;
        for (int i = 0; i < off->nacc && st == EMBER_OK; i++) st = ensure_device(off, off->acc[i].a->ch, off->acc[i].write, pos);
        for (int i = 0; i < off->nacc; i++) off->acc[i].a->ch->want = 0;
    }
    for (int i = 0; i < off->nacc && st == EMBER_OK; i++) {
        off->acc[i].prev = off->acc[i].a->state;
        st = set_state(off, off->acc[i].a, EMBER_TENSOR_STATE_COMPUTE);
    }
    if (st == EMBER_OK && off->warm && off->thread_on && off->cfg.policy == EMBER_OFFLOAD_AUTO) st = prefetch(off, pos);
    if (prof) ember_profiler_end();
    return st;
}

static ember_status op_after(ember_offload *off, const ember__hook_event *ev) {
    int pos = ev->entry, ok = ev->status == EMBER_OK;
    ember_status st = EMBER_OK;
    for (int i = 0; i < off->nacc; i++) {
        access *ac = &off->acc[i];
        ember_tensor_state to = ac->prev;
        if (ok && ac->a->kind == EMBER_CHUNK_PARAM)
            to = ev->backward ? EMBER_TENSOR_STATE_HOLD_AFTER_BWD : EMBER_TENSOR_STATE_HOLD;
        else if (ok && ac->write)
            to = EMBER_TENSOR_STATE_READY_FOR_REDUCE;
        if (ac->a->state == EMBER_TENSOR_STATE_COMPUTE) {
            ember_status s = set_state(off, ac->a, to);
            if (st == EMBER_OK) st = s;
        }
    }
    int prof = ember_profiler_enabled();
    if (prof) ember_profiler_begin_cat("offload_release", "offload");
    if (off->cfg.policy == EMBER_OFFLOAD_NAIVE) {
        for (int i = 0; i < off->nacc; i++) {
            ember_status s = naive_out(off, off->acc[i].a);
            if (st == EMBER_OK) st = s;
        }
    } else {
        for (int i = 0; i < off->nacc; i++) {
            chunk *ch = off->acc[i].a->ch;
            ember_status s = EMBER_OK;
            if (off->cfg.policy == EMBER_OFFLOAD_AUTO && off->warm) s = release_dead(off, ch, pos);
            if (st == EMBER_OK) st = s;
        }
    }
    off->nacc = 0;
    /* idle buffers make way for the non-model memory the trace expects next */
    while (off->warm && off->pool_bytes && pool_blocks(off, pos + 1) && pool_release(off, 0)) {
    }
    if (prof) ember_profiler_end();
    if (off->recording && pos == off->nsched - 1 && ok) {
        off->recorded_graph = 1;
        if (!off->opt && st == EMBER_OK) st = finish_warmup(off);
    }
    profile_counters(off);
    return st;
}

static ember_status hook(void *user, ember_graph *g, const ember__hook_event *ev) {
    (void)g;
    ember_offload *off = user;
    pthread_mutex_lock(&off->mu);
    off->owner = pthread_self();
    ember_status st = ev->after ? op_after(off, ev) : op_before(off, ev);
    pthread_mutex_unlock(&off->mu);
    return st;
}

/* ---- the optimizer step ---- */

static ember_status step_chunk(ember_offload *off, int c) {
    int pos = off->nsched + c;
    chunk *ch[NK] = {NULL, NULL, NULL};
    for (int k = 0; k < off->nkinds; k++) ch[k] = chunk_at(off, (ember_chunk_kind)k, c);
    off->clock++;
    off->pos_now = pos;
    if (off->recording) off->rec_nm[pos] = non_model_now(off);
    ember_offload_policy pol = off->cfg.policy;
    int on_dev = pol == EMBER_OFFLOAD_NAIVE ||
                 (pol == EMBER_OFFLOAD_AUTO ? off->warm && off->opt_dev[c]
                  : off->nstate ? ch[EMBER_CHUNK_STATE]->home_device
                                : ch[EMBER_CHUNK_PARAM]->home_device);
    int prof = ember_profiler_enabled();
    if (prof) ember_profiler_begin_cat(on_dev ? "optim_device" : "optim_host", "offload");
    ember_status st = EMBER_OK;
    if (on_dev) {
        for (int k = 0; k < off->nkinds; k++) ch[k]->want = 1;
        for (int k = 0; k < off->nkinds && st == EMBER_OK; k++) st = ensure_device(off, ch[k], k != EMBER_CHUNK_GRAD, pos);
        for (int k = 0; k < off->nkinds; k++) ch[k]->want = 0;
    } else {
        /* the host copies must be current: dirty device copies come back first */
        for (int k = 0; k < off->nkinds && st == EMBER_OK; k++) {
            st = wait_chunk(off, ch[k]);
            if (st == EMBER_OK && dirty(ch[k])) {
                st = copy_bytes(off, ch[k]->host, ch[k]->dev, ch[k]->bytes, 0, 1);
                if (st == EMBER_OK) count_copy(off, ch[k]->bytes, 0);
            }
            if (st == EMBER_OK) {
                ch[k]->host_valid = 1;
                ch[k]->dev_valid = 0; /* the step writes the host copies */
                point(off, ch[k], 0);
            }
        }
    }
    /* states: the parameters and state are updated, the gradients consumed */
    int first = ch[0]->first, count = ch[0]->count;
    for (int i = first; i < first + count && st == EMBER_OK; i++)
        for (int k = 0; k < off->nkinds && st == EMBER_OK; k++) st = set_state(off, &off->tens[k][i], EMBER_TENSOR_STATE_COMPUTE);
    if (st == EMBER_OK) st = ember_optimizer_step(off->opt[c]);
    ember_status s2 = EMBER_OK;
    for (int i = first; i < first + count; i++)
        for (int k = 0; k < off->nkinds; k++) {
            adopted *a = &off->tens[k][i];
            if (a->state != EMBER_TENSOR_STATE_COMPUTE) continue;
            ember_status s = set_state(off, a, k == EMBER_CHUNK_GRAD ? EMBER_TENSOR_STATE_FREE : EMBER_TENSOR_STATE_HOLD);
            if (s2 == EMBER_OK) s2 = s;
        }
    if (st == EMBER_OK) st = s2;
    if (st == EMBER_OK && on_dev) {
        ch[EMBER_CHUNK_PARAM]->host_valid = 0;
        if (off->nstate) ch[EMBER_CHUNK_STATE]->host_valid = 0;
        for (int k = 0; k < off->nkinds && st == EMBER_OK; k++) {
            if (pol == EMBER_OFFLOAD_NAIVE) {
                /* no dirty tracking: everything goes back */
                st = copy_bytes(off, ch[k]->host, ch[k]->dev, ch[k]->bytes, 0, 1);
                if (st == EMBER_OK) {
                    count_copy(off, ch[k]->bytes, 0);
                    ch[k]->host_valid = 1;
                    point(off, ch[k], 0);
                    dev_free(off, ch[k]);
                }
            }
        }
    } else if (st == EMBER_OK) {
        /* device copies of updated chunks are stale: AUTO frees them, STATIC keeps the room */
        for (int k = 0; k < off->nkinds; k++)
            if (ch[k]->dev && !(pol == EMBER_OFFLOAD_STATIC && ch[k]->home_device)) dev_free(off, ch[k]);
    }
    if (prof) ember_profiler_end();
    if (on_dev) off->st.state_chunks_on_device++;
    return st;
}

/* ---- ZeRO: the step sharded over data-parallel ranks ---- */

/* The message of the failure just recorded, without its "<STATUS>: " prefix. */
static const char *prior_why(ember_status st, char *buf, size_t n) {
    snprintf(buf, n, "%s", ember_last_error());
    size_t nl = strlen(ember_status_name(st));
    return strncmp(buf, ember_status_name(st), nl) == 0 && buf[nl] == ':' ? buf + nl + 2 : buf;
}

/* The ranks' chunk layouts agree (the min and max of a hash match): EMBER_ERR_SHAPE on
   every rank otherwise, before any collective over the chunks could mismatch. */
static ember_status zero_check(ember_offload *off, uint64_t h) {
    static const char fn[] = "ember_offload_create";
    int64_t v[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)}, mx[2];
    ember_status st = ember_comm_all_reduce(off->comm, v, mx, 2, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL);
    if (st != EMBER_OK) {
        char buf[512];
        const char *why = prior_why(st, buf, sizeof buf);
        return ember__error(st, "%s: all-reduce checking the ranks' chunk layouts (rank %d of %d): %s", fn, off->zr,
                            off->zn, why);
    }
    if (mx[0] != v[0] || mx[1] != v[1])
        return ember__error(EMBER_ERR_SHAPE,
                            "%s: rank %d of %d: the ranks' chunk layouts differ (%d parameters in %d chunks of %lld "
                            "elements here): build the same model, with the same chunk_elems and optimizer, on "
                            "every rank",
                            fn, off->zr, off->zn, off->n, off->nchunks, (long long)off->layout.chunk_elems);
    return EMBER_OK;
}

/* A collective's failure, naming it, its chunks and this rank (the communicator's words kept). */
static ember_status coll_error(ember_offload *off, ember_status st, const char *fn, const char *coll,
                               ember_chunk_kind k, int j) {
    char buf[512];
    const char *why = prior_why(st, buf, sizeof buf);
    int lo = j * off->zn, hi = lo + off->zn < off->nchunks ? lo + off->zn - 1 : off->nchunks - 1;
    return ember__error(st, "%s: %s of %s chunks %d..%d (group %d; rank %d of %d): %s", fn, coll,
                        ember_chunk_kind_name(k), lo, hi, j, off->zr, off->zn, why);
}

/* The chunk's host copy made current (the collectives run on host copies); unless
   keep, its device copy is dropped, since they overwrite the host copy (STATIC keeps
   the room of a chunk that lives on the device). */
static ember_status to_host(ember_offload *off, chunk *ch, int keep) {
    EMBER_TRY(wait_chunk(off, ch));
    if (dirty(ch)) {
        EMBER_TRY(copy_bytes(off, ch->host, ch->dev, ch->bytes, 0, 1));
        count_copy(off, ch->bytes, 0);
    }
    ch->host_valid = 1;
    if (keep || !ch->dev) return EMBER_OK;
    point(off, ch, 0);
    if (off->cfg.policy == EMBER_OFFLOAD_STATIC && ch->home_device) ch->dev_valid = 0;
    else dev_free(off, ch);
    return EMBER_OK;
}

/* Every tensor of chunk c of kind k to state `to` (the transitions are legal from the
   states a step leaves them in); the first failure is kept in *first. */
static void chunk_states(ember_offload *off, ember_chunk_kind k, int c, ember_tensor_state to, ember_status *first) {
    chunk *ch = chunk_at(off, k, c);
    for (int i = ch->first; i < ch->first + ch->count; i++) {
        adopted *a = &off->tens[k][i];
        if (a->state == to) continue;
        ember_status s = set_state(off, a, to);
        if (*first == EMBER_OK) *first = s;
    }
}

/*
 * The sharded step: every gradient chunk's host copy current, then one reduce-scatter
 * (MEAN, in place) per group, all in flight at once; group by group, once its
 * reduce-scatter is done, this rank steps the chunk it owns (where its state lives,
 * as step_chunk does without ZeRO) and starts the group's in-place all-gather of the
 * parameter chunks, every rank receiving each chunk from its owner. Every rank issues
 * the same collectives in the same order whatever fails locally, so the ranks stay in
 * step; the first failure is returned.
 */
static ember_status zero_step(ember_offload *off) {
    static const char fn[] = "ember_offload_optimizer_step";
    const int N = off->zn, r = off->zr;
    const size_t slot = (size_t)off->layout.chunk_elems * F32;
    ember_status first = EMBER_OK, s;
    for (int c = 0; c < off->nchunks; c++) {
        s = to_host(off, chunk_at(off, EMBER_CHUNK_GRAD, c), 0);
        if (first == EMBER_OK) first = s;
        chunk_states(off, EMBER_CHUNK_GRAD, c, EMBER_TENSOR_STATE_COMPUTE, &first);
    }
    for (int j = 0; j < off->ngroups; j++) {
        char *b = off->gblock[EMBER_CHUNK_GRAD][j];
        s = ember_comm_reduce_scatter(off->comm, b, b + r * slot, off->layout.chunk_elems, EMBER_DTYPE_F32,
                                      EMBER_REDUCE_MEAN, &off->rq[j]);
        if (s != EMBER_OK) {
            off->rq[j] = NULL;
            if (first == EMBER_OK) first = coll_error(off, s, fn, "reduce-scatter", EMBER_CHUNK_GRAD, j);
        }
    }
    for (int j = 0; j < off->ngroups; j++) {
        s = ember_comm_wait(off->rq[j]);
        off->rq[j] = NULL;
        if (s != EMBER_OK && first == EMBER_OK) first = coll_error(off, s, fn, "reduce-scatter", EMBER_CHUNK_GRAD, j);
        int lo = j * N, hi = lo + N < off->nchunks ? lo + N : off->nchunks, mine = lo + r;
        /* the gradients of the others' chunks are consumed; ours are the mean now */
        for (int c = lo; c < hi; c++) {
            ember_tensor_state to = c == mine ? EMBER_TENSOR_STATE_READY_FOR_REDUCE : EMBER_TENSOR_STATE_FREE;
            chunk_states(off, EMBER_CHUNK_GRAD, c, to, &first);
            if (c == mine) continue;
            off->clock++;
            if (off->recording) off->rec_nm[off->nsched + c] = non_model_now(off);
        }
        if (mine < hi && first == EMBER_OK) {
            first = step_chunk(off, mine);
            if (first == EMBER_OK) first = to_host(off, chunk_at(off, EMBER_CHUNK_PARAM, mine), 1);
        }
        /* the others' parameter chunks are about to be overwritten */
        for (int c = lo; c < hi; c++) {
            if (c == mine) continue;
            s = to_host(off, chunk_at(off, EMBER_CHUNK_PARAM, c), 0);
            if (first == EMBER_OK) first = s;
            chunk_states(off, EMBER_CHUNK_PARAM, c, EMBER_TENSOR_STATE_COMPUTE, &first);
        }
        char *b = off->gblock[EMBER_CHUNK_PARAM][j];
        s = ember_comm_all_gather(off->comm, b + r * slot, b, off->layout.chunk_elems, EMBER_DTYPE_F32, &off->rq[j]);
        if (s != EMBER_OK) {
            off->rq[j] = NULL;
            if (first == EMBER_OK) first = coll_error(off, s, fn, "all-gather", EMBER_CHUNK_PARAM, j);
        }
    }
    for (int j = 0; j < off->ngroups; j++) {
        s = ember_comm_wait(off->rq[j]);
        off->rq[j] = NULL;
        if (s != EMBER_OK && first == EMBER_OK) first = coll_error(off, s, fn, "all-gather", EMBER_CHUNK_PARAM, j);
        int lo = j * N, hi = lo + N < off->nchunks ? lo + N : off->nchunks;
        for (int c = lo; c < hi; c++)
            if (c != lo + r) chunk_states(off, EMBER_CHUNK_PARAM, c, EMBER_TENSOR_STATE_HOLD, &first);
    }
    return first;
}

ember_status ember_offload_optimizer_step(ember_offload *off) {
    static const char fn[] = "ember_offload_optimizer_step";
    EMBER_CHECK_NULL(off, fn);
    if (!off->opt) return ember__error(EMBER_ERR_STATE, "%s: the manager was created without an optimizer", fn);
    for (int i = 0; i < off->n; i++)
        if (off->tens[EMBER_CHUNK_GRAD][i].state != EMBER_TENSOR_STATE_READY_FOR_REDUCE)
            return ember__error(EMBER_ERR_STATE, "%s: the gradient of '%s' is %s, not READY_FOR_REDUCE (run backward first)",
                                fn, off->pnode[i]->name, ember_tensor_state_name(off->tens[EMBER_CHUNK_GRAD][i].state));
    pthread_mutex_lock(&off->mu);
    off->owner = pthread_self();
    ember_status st = reap_all(off);
    off->st.state_chunks_on_device = 0;
    if (st == EMBER_OK && off->zn > 1) st = zero_step(off);
    for (int c = 0; st == EMBER_OK && off->zn <= 1 && c < off->nchunks; c++) st = step_chunk(off, c);
    if (st == EMBER_OK) {
        off->st.iterations++;
        if (off->recording && off->recorded_graph) st = finish_warmup(off);
        profile_counters(off);
    }
    off->pos_now = off->nops - 1;
    pthread_mutex_unlock(&off->mu);
    return st;
}

ember_status ember_offload_run(ember_offload *off) {
    EMBER_CHECK_NULL(off, "ember_offload_run");
    return ember_graph_run(off->g);
}

ember_status ember_offload_step(ember_offload *off) {
    EMBER_CHECK_NULL(off, "ember_offload_step");
    EMBER_TRY(ember_graph_run(off->g));
    return off->opt ? ember_offload_optimizer_step(off) : EMBER_OK;
}

ember_status ember_offload_flush(ember_offload *off) {
    EMBER_CHECK_NULL(off, "ember_offload_flush");
    pthread_mutex_lock(&off->mu);
    ember_status st = wait_all(off);
    for (int i = 0; st == EMBER_OK && i < off->nkinds * off->nchunks; i++) st = evict(off, &off->chunks[i]);
    pool_release(off, 1);
    pthread_mutex_unlock(&off->mu);
    return st;
}

/* ---- creation and destruction ---- */

/* Copy between any two places (adoption and restore). */
static ember_status copy_any(ember_offload *off, void *dst, ember_device dd, const void *src, ember_device sd, size_t n) {
    if (dd.type == EMBER_DEVICE_CPU && sd.type == EMBER_DEVICE_CPU) {
        copy_cpu(dst, src, n, 1);
        return EMBER_OK;
    }
    return copy_bytes(off, dst, src, n, sd.type == EMBER_DEVICE_CPU, 1);
}

/* Re-point a's storage into its chunk's host copy, moving its bytes (copy) and
   releasing its former memory. */
static ember_status adopt(ember_offload *off, adopted *a, ember_tensor *t, int copy) {
    ember_storage *s = t->storage;
    char d[96];
    if (t->dtype != EMBER_DTYPE_F32 || !ember_tensor_is_contiguous(t) || t->offset != 0 || s->bytes < a->bytes)
        return ember__error(EMBER_ERR_STATE, "offload: %s of '%s' is not a whole contiguous f32 storage (%s)",
                            ember_chunk_kind_name(a->kind), tname(off, a), ember_tensor_describe(t, d, sizeof d));
    EMBER_TRY(ember_tensor_retain(t, &a->t));
    a->s = s;
    a->orig_mm = s->mm;
    a->orig_base = s->mm ? NULL : s->base;
    a->orig_tier = s->tier;
    a->orig_dev = s->device;
    char *dst = (char *)a->ch->host + a->off * F32;
    if (copy) EMBER_TRY(copy_any(off, dst, EMBER_CPU, s->base, s->device, a->bytes));
    if (s->mm) ember_memory_free(s->mm, s->base);
    s->base = dst;
    s->mm = NULL;
    s->tier = off->host_tier;
    s->device = EMBER_CPU;
    return EMBER_OK;
}

/* Give a its own memory again (its former tier, else the host tier). */
static int restore(ember_offload *off, adopted *a) {
    ember_storage *s = a->s;
    void *p = a->orig_base;
    ember_memory *m = a->orig_mm;
    ember_tier tier = a->orig_tier;
    ember_device dev = a->orig_dev;
    if (m && ember_memory_alloc(m, tier, mem_kind(a->kind), s->bytes, &p) != EMBER_OK) {
        tier = EMBER_TIER_HOST;
        dev = EMBER_CPU;
        if (ember_memory_alloc(m, tier, mem_kind(a->kind), s->bytes, &p) != EMBER_OK) {
            ember_log(EMBER_LOG_WARN, "offload: no memory to give '%s' (%s) back; it stays in chunk memory",
                      tname(off, a), ember_chunk_kind_name(a->kind));
            return 0;
        }
        ember_clear_error();
    }
    if (copy_any(off, p, dev, s->base, EMBER_CPU, a->bytes) != EMBER_OK)
        ember_log(EMBER_LOG_WARN, "offload: copying '%s' back failed", tname(off, a));
    s->base = p;
    s->mm = m;
    s->tier = tier;
    s->device = dev;
    return 1;
}

void ember_offload_destroy(ember_offload *off) {
    if (!off) return;
    /* first, so that no allocation elsewhere reclaims from a manager going away */
    if (off->reclaim_on) ember__memory_set_reclaim(off->mm, NULL, off);
    if (off->thread_on) {
        pthread_mutex_lock(&off->lock);
        off->stop = 1;
        pthread_cond_signal(&off->work);
        pthread_mutex_unlock(&off->lock);
        pthread_join(off->thread, NULL);
    }
    if (off->chunks) {
        for (int i = 0; i < off->nkinds * off->nchunks; i++) {
            chunk *ch = &off->chunks[i];
            if (ch->busy) reap(off, ch);
            for (int k = ch->first; k < ch->first + ch->count && off->tens[ch->kind]; k++) naive_out(off, &off->tens[ch->kind][k]);
            if (ch->dev && evict(off, ch) != EMBER_OK) ember_log(EMBER_LOG_WARN, "offload: writing chunk %d back failed", i);
        }
    }
    pool_release(off, 1);
    if (off->hooked) ember__graph_remove_hook(off->g, hook, off);
    for (int c = 0; off->opt && c < off->nchunks; c++) ember_optimizer_destroy(off->opt[c]);
    int *keep = off->chunks ? calloc((size_t)(off->nkinds * off->nchunks) + 1, sizeof *keep) : NULL;
    for (int k = 0; k < NK; k++) {
        for (int i = 0; off->tens[k] && i < off->n; i++) {
            adopted *a = &off->tens[k][i];
            if (!a->t) continue;
            /* the state's only users were the optimizers: its storage goes with our handle */
            if (k != EMBER_CHUNK_STATE && !restore(off, a) && keep) keep[a->ch->id] = 1;
            ember_tensor_destroy(a->t);
        }
        free(off->tens[k]);
    }
    for (int i = 0; off->chunks && i < off->nkinds * off->nchunks; i++) {
        chunk *ch = &off->chunks[i];
        if (off->zn > 1 && ch->kind != EMBER_CHUNK_STATE) {
            /* ZeRO: one block per group, kept whole when a tensor still lives in it */
            if (keep && keep[i]) off->gblock[ch->kind][ch->index / off->zn] = NULL;
        } else if (!(keep && keep[i])) {
            ember_memory_free(off->mm, ch->host);
        }
        ember_event_destroy(ch->ev);
    }
    free(keep);
    for (int k = 0; k < 2; k++) {
        for (int j = 0; off->gblock[k] && j < off->ngroups; j++) ember_memory_free(off->mm, off->gblock[k][j]);
        free(off->gblock[k]);
    }
    for (int j = 0; off->rq && j < off->ngroups; j++) ember_comm_wait(off->rq[j]);
    free(off->rq);
    if (off->mu_init) pthread_mutex_destroy(&off->mu);
    if (off->sync_init) {
        pthread_mutex_destroy(&off->lock);
        pthread_cond_destroy(&off->work);
        pthread_cond_destroy(&off->done);
    }
    ember__trace_free(&off->trace);
    free(off->queue);
    free(off->cand);
    for (int k = 0; k < NK; k++) free(off->pool[k]);
    free(off->chunks);
    free(off->opt);
    free(off->opt_dev);
    free(off->pnode);
    free(off->chunk_of);
    free(off->offset_of);
    free(off->param_of);
    free(off->grad_of);
    free(off->rec_need);
    free(off->rec_nneed);
    free(off->rec_nm);
    free(off->ops);
    free(off->opbuf);
    free(off);
}

static ember_status build(ember_offload *off) {
    static const char fn[] = "ember_offload_create";
    ember_graph *g = off->g;
    EMBER_TRY(ember_graph_plan(g));
    off->nsched = g->nsched;
    off->nnodes = g->n;
    /* parameters in first-use order; unused ones last */
    off->pnode = calloc((size_t)g->n + 1, sizeof *off->pnode);
    off->param_of = malloc(((size_t)g->n + 1) * sizeof *off->param_of);
    off->grad_of = malloc(((size_t)g->n + 1) * sizeof *off->grad_of);
    if (!off->pnode || !off->param_of || !off->grad_of) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    for (int i = 0; i < g->n; i++) off->param_of[i] = off->grad_of[i] = -1;
    for (int e = 0; e <= g->nsched; e++) {
        ember_node *x = e < g->nsched ? g->sched[e].node : NULL;
        int ns = x ? x->nsrc : g->n;
        for (int s = 0; s < ns; s++) {
            ember_node *p = x ? x->src[s] : g->nodes[s];
            if (!(p->flags & EMBER__NODE_PARAM) || off->param_of[p->id] >= 0) continue;
            off->param_of[p->id] = off->n;
            off->pnode[off->n++] = p;
        }
    }
    int64_t *numel = malloc(((size_t)off->n + 1) * sizeof *numel);
    off->chunk_of = malloc(((size_t)off->n + 1) * sizeof *off->chunk_of);
    off->offset_of = malloc(((size_t)off->n + 1) * sizeof *off->offset_of);
    if (!numel || !off->chunk_of || !off->offset_of) {
        free(numel);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    }
    for (int i = 0; i < off->n; i++) {
        ember_node *p = off->pnode[i];
        numel[i] = ember__node_numel(p);
        if (!p->grad || !p->grad->value || !(p->grad->flags & EMBER__NODE_PERSISTENT) || p->grad->id >= g->n) {
            free(numel);
            return ember__error(EMBER_ERR_STATE, "%s: parameter '%s' has no gradient of its own", fn, p->name);
        }
        off->grad_of[p->grad->id] = i;
    }
    ember_status st;
    if (off->cfg.chunk_elems > 0) {
        int n = ember__chunk_pack(numel, off->n, 16, (off->cfg.chunk_elems + 15) / 16 * 16, off->chunk_of, off->offset_of);
        st = n < 0 ? ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: chunk_elems %lld is smaller than a parameter", fn,
                                  (long long)off->cfg.chunk_elems)
                   : EMBER_OK;
        off->layout.chunk_elems = (off->cfg.chunk_elems + 15) / 16 * 16;
        off->layout.nchunks = n;
        for (int i = 0; i < off->n; i++) off->layout.tensor_elems += numel[i];
        off->layout.waste_elems = (int64_t)n * off->layout.chunk_elems - off->layout.tensor_elems;
    } else {
        st = ember_chunk_size_search(numel, off->n, 16, off->chunk_of, off->offset_of, &off->layout);
    }
    /* ZeRO: what the ranks must agree on (the collectives run over the chunks) */
    uint64_t lh = ember__fnv1a(EMBER__FNV_INIT, &off->n, sizeof off->n);
    lh = ember__fnv1a(lh, numel, (size_t)off->n * sizeof *numel);
    free(numel);
    EMBER_TRY(st);
    off->nchunks = off->layout.nchunks;
    /* optimizer state per parameter: known once an optimizer exists */
    if (off->cfg.optim) {
        ember_optimizer *probe;
        ember_tensor *pt, *gt;
        ember_optimizer_config oc = off->ocfg;
        oc.mm = NULL;
        EMBER_TRY(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {1}}, &pt));
        st = ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {1}}, &gt);
        if (st == EMBER_OK) st = ember_optimizer_create(&oc, &(ember_optimizer_param){.param = pt, .grad = gt}, 1, &probe);
        if (st == EMBER_OK) st = ember_optimizer_state_count(probe, &off->nstate);
        if (st == EMBER_OK) ember_optimizer_destroy(probe);
        ember_tensor_destroy(pt);
        ember_tensor_destroy(gt);
        EMBER_TRY(st);
    }
    if (off->zn > 1) {
        int64_t meta[3] = {off->layout.chunk_elems, off->nchunks, off->nstate};
        lh = ember__fnv1a(lh, meta, sizeof meta);
        EMBER_TRY(zero_check(off, lh));
        off->ngroups = (off->nchunks + off->zn - 1) / off->zn;
    }
    off->nkinds = off->nstate ? 3 : 2;
    off->nops = off->nsched + (off->cfg.optim ? off->nchunks : 0);
    int total = off->nkinds * off->nchunks;
    off->chunks = calloc((size_t)total + 1, sizeof *off->chunks);
    off->queue = malloc(((size_t)total + 1) * sizeof *off->queue);
    off->cand = malloc(((size_t)total + 1) * sizeof *off->cand);
    off->qcap = total + 1;
    off->opt_dev = calloc((size_t)off->nchunks + 1, sizeof *off->opt_dev);
    off->rec_need = calloc((size_t)off->nsched * MAX_ACCESS + 1, sizeof *off->rec_need);
    off->rec_nneed = calloc((size_t)off->nsched + 1, sizeof *off->rec_nneed);
    off->rec_nm = calloc((size_t)off->nops + 1, sizeof *off->rec_nm);
    off->ops = calloc((size_t)off->nops + 1, sizeof *off->ops);
    for (int k = 0; k < off->nkinds; k++) off->tens[k] = calloc((size_t)off->n + 1, sizeof *off->tens[k]);
    for (int k = 0; k < off->nkinds; k++) off->pool[k] = calloc((size_t)off->nchunks + 1, sizeof *off->pool[k]);
    for (int k = 0; k < 2 && off->zn > 1; k++)
        off->gblock[k] = calloc((size_t)off->ngroups + 1, sizeof *off->gblock[k]);
    if (off->zn > 1) off->rq = calloc((size_t)off->ngroups + 1, sizeof *off->rq);
    if (!off->chunks || !off->queue || !off->cand || !off->opt_dev || !off->rec_need || !off->rec_nneed || !off->rec_nm || !off->ops ||
        !off->tens[0] || !off->tens[1] || (off->nstate && !off->tens[2]) || !off->pool[0] || !off->pool[1] ||
        (off->nstate && !off->pool[2]) || (off->zn > 1 && (!off->gblock[0] || !off->gblock[1] || !off->rq)))
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d chunks", fn, off->nchunks);
    if (pthread_mutex_init(&off->lock, NULL) || pthread_cond_init(&off->work, NULL) || pthread_cond_init(&off->done, NULL))
        return ember__error(EMBER_ERR_INTERNAL, "%s: pthread objects", fn);
    off->sync_init = 1;
    for (int k = 0; k < off->nkinds; k++)
        for (int c = 0; c < off->nchunks; c++) {
            chunk *ch = chunk_at(off, (ember_chunk_kind)k, c);
            ch->kind = (ember_chunk_kind)k;
            ch->index = c;
            ch->id = k * off->nchunks + c;
            ch->bytes = (size_t)off->layout.chunk_elems * F32 * (k == EMBER_CHUNK_STATE ? (size_t)off->nstate : 1);
            ch->host_valid = 1;
            ch->first = -1;
            if (off->zn > 1 && k != EMBER_CHUNK_STATE) {
                /* a group's parameter (gradient) chunks: one block, chunk c at slot c % zn;
                   the padding slots of the last group join its collectives as zeros */
                void **blk = &off->gblock[k][c / off->zn];
                if (!*blk) {
                    size_t gb = ch->bytes * (size_t)off->zn;
                    EMBER_TRY(ember_memory_alloc(off->mm, off->host_tier, mem_kind(ch->kind), gb, blk));
                    memset(*blk, 0, gb);
                }
                ch->host = (char *)*blk + (size_t)(c % off->zn) * ch->bytes;
            } else if (!owns(off, c)) {
                ch->absent = 1; /* the optimizer state of another rank's chunk */
                continue;
            } else {
                EMBER_TRY(ember_memory_alloc(off->mm, off->host_tier, mem_kind(ch->kind), ch->bytes, &ch->host));
            }
            off->st.model_bytes += ch->bytes;
        }
    /* tensors start FREE; data arrives with adoption */
    for (int k = 0; k < off->nkinds; k++)
        for (int i = 0; i < off->n; i++) {
            adopted *a = &off->tens[k][i];
            chunk *ch = chunk_at(off, (ember_chunk_kind)k, off->chunk_of[i]);
            int64_t ne = ember__node_numel(off->pnode[i]);
            int mult = k == EMBER_CHUNK_STATE ? off->nstate : 1;
            *a = (adopted){.ch = ch, .param = i, .kind = (ember_chunk_kind)k, .off = off->offset_of[i] * mult,
                           .bytes = ch->absent ? 0 : (size_t)(ne * mult) * F32, .state = EMBER_TENSOR_STATE_FREE};
            if (ch->first < 0) ch->first = i;
            ch->count++;
            ch->nfree++;
            off->st.state_bytes[EMBER_TENSOR_STATE_FREE] += a->bytes;
        }
    for (int i = 0; i < off->n; i++) {
        EMBER_TRY(adopt(off, &off->tens[EMBER_CHUNK_PARAM][i], off->pnode[i]->value, 1));
        EMBER_TRY(set_state(off, &off->tens[EMBER_CHUNK_PARAM][i], EMBER_TENSOR_STATE_HOLD));
        EMBER_TRY(adopt(off, &off->tens[EMBER_CHUNK_GRAD][i], off->pnode[i]->grad->value, 0));
    }
    /* ZeRO: every rank starts from rank 0's parameters (as ember_ddp does) */
    for (int j = 0; j < off->ngroups; j++) {
        st = ember_comm_broadcast(off->comm, off->gblock[EMBER_CHUNK_PARAM][j], off->layout.chunk_elems * off->zn,
                                  EMBER_DTYPE_F32, 0, NULL);
        if (st != EMBER_OK) return coll_error(off, st, fn, "broadcast", EMBER_CHUNK_PARAM, j);
    }
    /* one optimizer per chunk over the adopted tensors: its state is born in the host
       tier (where the parameters now are) and adopted in turn */
    if (off->cfg.optim) {
        off->opt = calloc((size_t)off->nchunks + 1, sizeof *off->opt);
        ember_optimizer_param *ps = calloc((size_t)off->n + 1, sizeof *ps);
        if (!off->opt || !ps) {
            free(ps);
            return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: optimizers", fn);
        }
        st = EMBER_OK;
        for (int c = 0; c < off->nchunks && st == EMBER_OK; c++) {
            if (!owns(off, c)) continue; /* ZeRO: another rank's optimizer */
            chunk *pc = chunk_at(off, EMBER_CHUNK_PARAM, c);
            for (int j = 0; j < pc->count; j++)
                ps[j] = (ember_optimizer_param){.param = off->tens[EMBER_CHUNK_PARAM][pc->first + j].t,
                                                .grad = off->tens[EMBER_CHUNK_GRAD][pc->first + j].t,
                                                .name = off->pnode[pc->first + j]->name};
            ember_optimizer_config oc = off->ocfg;
            oc.mm = off->mm;
            st = ember_optimizer_create(&oc, ps, pc->count, &off->opt[c]);
            for (int j = 0; j < pc->count && st == EMBER_OK && off->nstate; j++) {
                ember_tensor *s0;
                st = ember_optimizer_state_get(off->opt[c], j * off->nstate, NULL, &s0);
                adopted *a = &off->tens[EMBER_CHUNK_STATE][pc->first + j];
                if (st == EMBER_OK) st = adopt(off, a, s0, 1);
                if (st == EMBER_OK) st = set_state(off, a, EMBER_TENSOR_STATE_HOLD);
            }
        }
        free(ps);
        EMBER_TRY(st);
    }
    EMBER_TRY(ember__graph_add_hook(g, hook, off));
    off->hooked = 1;
    if (off->cfg.device_budget) EMBER_TRY(ember_memory_set_budget(off->mm, EMBER_TIER_DEVICE, off->cfg.device_budget));
    ember_memory_reset_peaks(off->mm);
    off->recording = 1;
    /* STATIC: the device share is placed now, so a budget it does not fit fails here */
    if (off->cfg.policy == EMBER_OFFLOAD_STATIC) {
        int hp = (int)(off->cfg.param_host_fraction * off->nchunks + 0.5), hs = (int)(off->cfg.state_host_fraction * off->nchunks + 0.5);
        for (int c = 0; c < off->nchunks; c++) {
            int pd = c < off->nchunks - hp, sd = c < off->nchunks - hs;
            chunk_at(off, EMBER_CHUNK_PARAM, c)->home_device = pd;
            chunk_at(off, EMBER_CHUNK_GRAD, c)->home_device = pd;
            if (off->nstate) chunk_at(off, EMBER_CHUNK_STATE, c)->home_device = sd && owns(off, c);
        }
        for (int i = 0; i < total; i++)
            if (off->chunks[i].home_device) EMBER_TRY(ensure_device(off, &off->chunks[i], 0, -1));
    }
    /* A side thread pays off when a chunk's copy outlasts a thread hand-off (tens of us)
       and when something other than the cores does the copy: a GPU's copy engine. On a
       CPU-only machine the device tier is DRAM and a copy is a memcpy on the same cores
       and memory bus as the compute, so by default the calling thread copies with the
       whole OpenMP team instead (measured: 1.6x the naive policy's steps/s against 1.2x
       with a side thread competing for 2 cores; bench/RESULTS.md, offload). */
    int side = off->cfg.sync < 0 || (off->cfg.sync == 0 && off->dev.type != EMBER_DEVICE_CPU);
    if (off->cfg.policy == EMBER_OFFLOAD_AUTO && side && off->cfg.lookahead >= 0 &&
        off->nchunks && chunk_at(off, EMBER_CHUNK_PARAM, 0)->bytes >= ASYNC_MIN_BYTES) {
        if (pthread_create(&off->thread, NULL, side_main, off))
            return ember__error(EMBER_ERR_INTERNAL, "%s: cannot start the transfer thread", fn);
        off->thread_on = 1;
    }
    /* allocations of other data over the budget may take our device copies' room */
    if (ember__memory_set_reclaim(off->mm, reclaim, off) == EMBER_OK) {
        off->reclaim_on = 1;
    } else {
        ember_clear_error();
        ember_log(EMBER_LOG_INFO, "%s: the memory manager already has a reclaim callback (another offload "
                                  "manager): other allocations will not evict this one's chunks", fn);
    }
    off->st.reclaim = off->reclaim_on;
    return EMBER_OK;
}

ember_status ember_offload_create(const ember_offload_config *cfg, ember_offload **out) {
    static const char fn[] = "ember_offload_create";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(cfg->graph, fn);
    ember_graph *g = cfg->graph;
    if ((unsigned)cfg->policy >= EMBER_OFFLOAD_POLICY_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: policy %d is not valid", fn, (int)cfg->policy);
    if (!(cfg->param_host_fraction >= 0 && cfg->param_host_fraction <= 1) ||
        !(cfg->state_host_fraction >= 0 && cfg->state_host_fraction <= 1))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: host fractions %g, %g must lie in [0, 1]", fn,
                            cfg->param_host_fraction, cfg->state_host_fraction);
    if (cfg->chunk_elems < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: chunk_elems %lld < 0", fn, (long long)cfg->chunk_elems);
    if (!g->backward_built) return ember__error(EMBER_ERR_STATE, "%s: build the backward graph first", fn);
    if (g->p.meta) return ember__error(EMBER_ERR_STATE, "%s: a meta graph has no data to place", fn);
    for (int i = 0; i < g->nhooks; i++)
        if (g->hooks[i].fn == hook)
            return ember__error(EMBER_ERR_STATE, "%s: the graph already has an offload manager (its executor hook)", fn);
    int zn = cfg->comm ? ember_comm_size(cfg->comm) : 1;
    if (zn > 1) {
        if (ember_comm_is_broken(cfg->comm)) return ember__error(EMBER_ERR_STATE, "%s: the communicator is broken", fn);
        if (!cfg->optim)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "%s: a communicator of %d ranks shards the optimizer step, but optim is NULL", fn, zn);
        char d[32];
        if (ember_comm_device(cfg->comm).type != EMBER_DEVICE_CPU)
            return ember__error(EMBER_ERR_DEVICE,
                                "%s: the communicator's buffers are on %s; the sharded step's collectives run on the "
                                "chunks' host copies: use an mpi communicator",
                                fn, ember_device_format(ember_comm_device(cfg->comm), d, sizeof d));
    }
    ember_offload *off = calloc(1, sizeof *off);
    if (!off) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    if (pthread_mutex_init(&off->mu, NULL)) {
        free(off);
        return ember__error(EMBER_ERR_INTERNAL, "%s: pthread objects", fn);
    }
    off->mu_init = 1;
    off->owner = pthread_self();
    off->zn = zn > 1 ? zn : 1;
    off->zr = zn > 1 ? ember_comm_rank(cfg->comm) : 0;
    off->comm = zn > 1 ? cfg->comm : NULL;
    off->cfg = *cfg;
    if (!off->cfg.lookahead) off->cfg.lookahead = 2;
    if (cfg->optim) off->ocfg = *cfg->optim;
    off->g = g;
    off->mm = cfg->mm ? cfg->mm : g->mm;
    off->dev = ember_memory_tier_device(off->mm, EMBER_TIER_DEVICE);
    off->host_tier = off->dev.type == EMBER_DEVICE_CPU ? EMBER_TIER_HOST : EMBER_TIER_PINNED;
    off->st.policy = cfg->policy;
    ember_memory_stats ms;
    ember_memory_get_stats(off->mm, &ms);
    size_t old_budget = ms.budget[EMBER_TIER_DEVICE];
    ember_status st = build(off);
    if (st != EMBER_OK) {
        /* undo: the old budget, the tensors back in their own memory; keep the message */
        char msg[512];
        const char *why = prior_why(st, msg, sizeof msg);
        if (off->cfg.device_budget)
            ember_memory_set_budget(off->mm, EMBER_TIER_DEVICE, old_budget == EMBER_BUDGET_UNLIMITED ? 0 : old_budget);
        ember_offload_destroy(off);
        return ember__error(st, "%s", why);
    }
    *out = off;
    return EMBER_OK;
}

/* ---- queries ---- */

ember_status ember_offload_get_stats(ember_offload *off, ember_offload_stats *out) {
    EMBER_CHECK_NULL(off, "ember_offload_get_stats");
    EMBER_CHECK_NULL(out, "ember_offload_get_stats");
    ember_memory_stats ms;
    ember_memory_get_stats(off->mm, &ms);
    pthread_mutex_lock(&off->mu);
    *out = off->st;
    out->device_chunk_bytes = off->dev_bytes - off->pool_bytes;
    pthread_mutex_unlock(&off->mu);
    out->zero_ranks = off->zn;
    out->owned_chunks = 0;
    out->optim_state_bytes = 0;
    for (int c = 0; c < off->nchunks; c++) {
        if (!owns(off, c)) continue;
        out->owned_chunks++;
        if (off->nstate) out->optim_state_bytes += chunk_at(off, EMBER_CHUNK_STATE, c)->bytes;
    }
    out->nchunks = off->nchunks;
    out->ntensors = off->n;
    out->chunk_elems = off->layout.chunk_elems;
    out->waste_elems = off->layout.waste_elems;
    for (int k = 0; k < off->nkinds; k++) out->chunk_bytes[k] = chunk_at(off, (ember_chunk_kind)k, 0) ? chunk_at(off, (ember_chunk_kind)k, 0)->bytes : 0;
    out->device_budget = ms.budget[EMBER_TIER_DEVICE];
    return EMBER_OK;
}

static ember_status find(const ember_offload *off, const char *name, const char *fn, int *idx) {
    EMBER_CHECK_NULL(off, fn);
    EMBER_CHECK_NULL(name, fn);
    for (int i = 0; i < off->n; i++)
        if (strcmp(off->pnode[i]->name, name) == 0) {
            *idx = i;
            return EMBER_OK;
        }
    return ember__error(EMBER_ERR_NOT_FOUND, "%s: no adopted parameter named \"%s\"", fn, name);
}

static ember_status find_tensor(const ember_offload *off, const char *name, ember_chunk_kind kind, const char *fn,
                                adopted **out) {
    int i;
    EMBER_TRY(find(off, name, fn, &i));
    if ((unsigned)kind >= (unsigned)off->nkinds)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: kind %d (%s) has no tensors here", fn, (int)kind,
                            ember_chunk_kind_name(kind));
    if (kind == EMBER_CHUNK_STATE && off->tens[kind][i].ch->absent)
        return ember__error(EMBER_ERR_NOT_FOUND, "%s: the optimizer state of \"%s\" (chunk %d) lives on rank %d",
                            fn, name, off->chunk_of[i], off->chunk_of[i] % off->zn);
    *out = &off->tens[kind][i];
    return EMBER_OK;
}

ember_status ember_offload_tensor_state(const ember_offload *off, const char *name, ember_chunk_kind kind,
                                        ember_tensor_state *out) {
    static const char fn[] = "ember_offload_tensor_state";
    EMBER_CHECK_NULL(out, fn);
    adopted *a = NULL;
    EMBER_TRY(find_tensor(off, name, kind, fn, &a));
    *out = a->state;
    return EMBER_OK;
}

ember_status ember_offload_set_tensor_state(ember_offload *off, const char *name, ember_chunk_kind kind,
                                            ember_tensor_state to) {
    static const char fn[] = "ember_offload_set_tensor_state";
    adopted *a = NULL;
    EMBER_TRY(find_tensor(off, name, kind, fn, &a));
    if ((unsigned)to >= EMBER_TENSOR_STATE_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: state %d is not valid", fn, (int)to);
    pthread_mutex_lock(&off->mu); /* pins decide what the reclaim may move */
    ember_status st = set_state(off, a, to);
    pthread_mutex_unlock(&off->mu);
    return st;
}

ember_status ember_offload_tensor_chunk(const ember_offload *off, const char *name, int *chunk_index,
                                        int64_t *offset) {
    static const char fn[] = "ember_offload_tensor_chunk";
    int i;
    EMBER_TRY(find(off, name, fn, &i));
    if (chunk_index) *chunk_index = off->chunk_of[i];
    if (offset) *offset = off->offset_of[i];
    return EMBER_OK;
}

ember_status ember_offload_get_optimizer(ember_offload *off, int c, ember_optimizer **out) {
    static const char fn[] = "ember_offload_get_optimizer";
    EMBER_CHECK_NULL(off, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (!off->opt) return ember__error(EMBER_ERR_STATE, "%s: the manager was created without an optimizer", fn);
    if (c < 0 || c >= off->nchunks)
        return ember__error(EMBER_ERR_INDEX, "%s: chunk %d of %d", fn, c, off->nchunks);
    if (!owns(off, c))
        return ember__error(EMBER_ERR_NOT_FOUND, "%s: chunk %d belongs to rank %d of %d (ZeRO): its optimizer is there",
                            fn, c, c % off->zn, off->zn);
    *out = off->opt[c];
    return EMBER_OK;
}
