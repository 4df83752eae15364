/*
 * The heterogeneous memory manager: tensor-state table and its errors, chunk-size
 * search on known tensor lists, the eviction rule on hand-built traces, and training
 * an MLP whose model data is several times the device budget: it runs, the device
 * tier's peak never passes the budget, and every policy gives the bits of a plain
 * run with unlimited memory. Allocations of other data over the budget make the
 * manager give device copies back (reclaim), without changing a bit of training.
 * (ZeRO over several ranks: tests/test_offload_mpi.c.)
 */
#include <pthread.h>
#include <unistd.h>

#include "check.h"
#include "graph_util.h"
#include "ember/offload.h"
#include "ember/train.h"
#include "engine/chunk.h"
#include "engine/internal.h"

/* ---- tensor states ---- */

static void test_state_table(void) {
    enum { F = EMBER_TENSOR_STATE_FREE, C = EMBER_TENSOR_STATE_COMPUTE, H = EMBER_TENSOR_STATE_HOLD,
           B = EMBER_TENSOR_STATE_HOLD_AFTER_BWD, R = EMBER_TENSOR_STATE_READY_FOR_REDUCE };
    static const int legal[][2] = {{F, H}, {F, C}, {H, C}, {H, F}, {B, C}, {B, H}, {R, C},
                                   {R, F}, {C, H}, {C, B}, {C, R}, {C, F}};
    int n = 0;
    for (int a = 0; a < EMBER_TENSOR_STATE_COUNT; a++)
        for (int b = 0; b < EMBER_TENSOR_STATE_COUNT; b++) {
            int want = 0;
            for (size_t k = 0; k < sizeof legal / sizeof *legal; k++) want |= legal[k][0] == a && legal[k][1] == b;
            n += want;
            CHECK_EQ_INT(ember_tensor_state_legal((ember_tensor_state)a, (ember_tensor_state)b), want);
        }
    CHECK_EQ_INT(n, 12);
    CHECK(!ember_tensor_state_legal(EMBER_TENSOR_STATE_COUNT, EMBER_TENSOR_STATE_FREE));
    CHECK_STR(ember_tensor_state_name(EMBER_TENSOR_STATE_HOLD_AFTER_BWD), "HOLD_AFTER_BWD");
    CHECK_STR(ember_tensor_state_name(EMBER_TENSOR_STATE_READY_FOR_REDUCE), "READY_FOR_REDUCE");
    CHECK_STR(ember_chunk_kind_name(EMBER_CHUNK_STATE), "state");
    CHECK_STR(ember_offload_policy_name(EMBER_OFFLOAD_NAIVE), "naive");
}

/* ---- chunk-size search ---- */

static void test_chunk_search(void) {
    ember_chunk_layout l;
    int co[32];
    int64_t of[32];
    /* equal tensors: one per chunk, no waste (smallest size on a tie) */
    CHECK_OK(ember_chunk_size_search((int64_t[]){100, 100, 100}, 3, 1, co, of, &l));
    CHECK_EQ_INT(l.chunk_elems, 100);
    CHECK_EQ_INT(l.nchunks, 3);
    CHECK_EQ_INT(l.waste_elems, 0);
    CHECK_EQ_INT(co[2], 2);
    /* 60 50 40 30: 110 wastes 40, 60 wastes 60; all four in 180 waste nothing */
    CHECK_OK(ember_chunk_size_search((int64_t[]){60, 50, 40, 30}, 4, 1, co, of, &l));
    CHECK_EQ_INT(l.chunk_elems, 180);
    CHECK_EQ_INT(l.nchunks, 1);
    CHECK_EQ_INT(l.waste_elems, 0);
    CHECK_EQ_INT(of[3], 150);
    /* weight + bias pairs: a chunk per layer */
    int64_t pairs[10];
    for (int i = 0; i < 10; i++) pairs[i] = i % 2 ? 48 : 64;
    CHECK_OK(ember_chunk_size_search(pairs, 10, 16, co, of, &l));
    CHECK_EQ_INT(l.chunk_elems, 112);
    CHECK_EQ_INT(l.nchunks, 5);
    CHECK_EQ_INT(l.waste_elems, 0);
    CHECK_EQ_INT(co[7], 3);
    CHECK_EQ_INT(of[7], 64);
    CHECK_EQ_INT(of[8], 0);
    /* alignment: 10 and 20 elements take 16 and 32; together 48 wastes 18 of 30 */
    CHECK_OK(ember_chunk_size_search((int64_t[]){10, 20}, 2, 16, co, of, &l));
    CHECK_EQ_INT(l.chunk_elems, 48);
    CHECK_EQ_INT(l.nchunks, 1);
    CHECK_EQ_INT(l.waste_elems, 18);
    CHECK_EQ_INT(of[1], 16);
    /* an MLP: eight (4096, 64) layers plus a small head: a layer and its bias per chunk
       would waste the head's remainder; 2 layers per chunk put the head with two */
    int64_t mlp[18];
    for (int i = 0; i < 16; i++) mlp[i] = i % 2 ? 64 : 4096;
    mlp[16] = 512, mlp[17] = 16;
    CHECK_OK(ember_chunk_size_search(mlp, 18, 16, co, of, &l));
    int64_t total = 8 * 4160 + 528;
    CHECK_EQ_INT(l.tensor_elems, total);
    CHECK_EQ_INT(l.waste_elems, (int64_t)l.nchunks * l.chunk_elems - total);
    /* exhaustive check: no size in [max, 4 max] (aligned) wastes less */
    int64_t best = INT64_MAX;
    for (int64_t c = 4096; c <= 4 * 4096; c += 16) {
        int k = ember__chunk_pack(mlp, 18, 16, c, NULL, NULL);
        if (k > 0 && (int64_t)k * c - total < best) best = (int64_t)k * c - total;
    }
    CHECK_EQ_INT(l.waste_elems, best);
    for (int i = 1; i < 18; i++) CHECK(co[i] >= co[i - 1]); /* first-use order kept */
    /* bad input */
    CHECK_STATUS(ember_chunk_size_search((int64_t[]){-1}, 1, 16, NULL, NULL, &l), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_chunk_size_search(NULL, -1, 16, NULL, NULL, &l), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_OK(ember_chunk_size_search(NULL, 0, 16, NULL, NULL, &l));
    CHECK_EQ_INT(l.nchunks, 0);
}

/* ---- the eviction rule ---- */

/* An independent reference: evict the resident chunk (not needed now) whose next need
   in the repeating trace is furthest, lowest id on a tie; no kills. */
static int reference_belady(const int *need, int nops, int nchunks, int cap, int *out) {
    int resident[16] = {0}, used = 0, n = 0;
    for (int i = 0; i < nops; i++) {
        int c = need[i];
        if (resident[c]) continue;
        if (used == cap) {
            int victim = -1, far = -1;
            for (int j = 0; j < nchunks; j++) {
                if (!resident[j] || j == c) continue;
                int d = 1;
                while (d <= nops && need[(i + d) % nops] != j) d++;
                if (d > far) far = d, victim = j;
            }
            resident[victim] = 0;
            used--;
            out[n++] = victim;
        }
        resident[c] = 1;
        used++;
    }
    return n;
}

static void test_belady(void) {
    static const int seq[12] = {0, 1, 2, 3, 0, 1, 4, 0, 1, 2, 3, 4};
    ember_offload_op ops[12];
    for (int i = 0; i < 12; i++) ops[i] = (ember_offload_op){.need = &seq[i], .nneed = 1};
    size_t bytes[5] = {100, 100, 100, 100, 100};
    int ev[16], n = 0;
    CHECK_OK(ember_offload_simulate(ops, 12, bytes, 5, 300, ev, 16, &n));
    /* by hand: op 3 evicts 2 (next use op 9), op 6 evicts 3 (op 10), op 9 evicts 1
       (next iteration's op 1, furthest), op 10 evicts 2 (next iteration's op 2) */
    CHECK_EQ_INT(n, 4);
    int want[4] = {2, 3, 1, 2};
    for (int i = 0; i < 4 && i < n; i++) CHECK_EQ_INT(ev[i], want[i]);
    int ref[16];
    CHECK_EQ_INT(reference_belady(seq, 12, 5, 3, ref), n);
    for (int i = 0; i < n; i++) CHECK_EQ_INT(ev[i], ref[i]);

    /* a longer pseudo-random trace against the reference */
    int rs[64];
    uint32_t x = 12345;
    for (int i = 0; i < 64; i++) {
        x = x * 1664525u + 1013904223u;
        rs[i] = (int)((x >> 16) % 7);
    }
    ember_offload_op rops[64];
    for (int i = 0; i < 64; i++) rops[i] = (ember_offload_op){.need = &rs[i], .nneed = 1};
    size_t rb[7] = {8, 8, 8, 8, 8, 8, 8};
    int rev[64], rn = 0, rref[64];
    CHECK_OK(ember_offload_simulate(rops, 64, rb, 7, 24, rev, 64, &rn));
    CHECK_EQ_INT(reference_belady(rs, 64, 7, 3, rref), rn);
    for (int i = 0; i < rn; i++) CHECK_EQ_INT(rev[i], rref[i]);

    /* a kill makes a copy dead: chunk 0 is needed again at op 3, nearer than chunk 1
       (op 4), but op 2 overwrites it first, so op 2 evicts 0, not 1 */
    static const int n0[] = {0}, n1[] = {1}, n2[] = {2};
    ember_offload_op kops[5] = {{.need = n0, .nneed = 1}, {.need = n1, .nneed = 1},
                                {.need = n2, .nneed = 1, .kill = n0, .nkill = 1}, {.need = n0, .nneed = 1},
                                {.need = n1, .nneed = 1}};
    CHECK_OK(ember_offload_simulate(kops, 5, bytes, 3, 200, ev, 16, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ev[0], 0);
    CHECK_EQ_INT(ev[1], 2);
    kops[2].nkill = 0; /* without it, plain Belady keeps 0 */
    CHECK_OK(ember_offload_simulate(kops, 5, bytes, 3, 200, ev, 16, &n));
    CHECK_EQ_INT(ev[0], 1);
    /* non-model bytes count against the budget */
    for (int i = 0; i < 12; i++) ops[i].non_model = 100;
    CHECK_OK(ember_offload_simulate(ops, 12, bytes, 5, 300, ev, 16, &n));
    CHECK_EQ_INT(reference_belady(seq, 12, 5, 2, ref), n);
    /* an op that cannot fit */
    ops[0].non_model = 250;
    CHECK_STATUS(ember_offload_simulate(ops, 12, bytes, 5, 300, ev, 16, &n), EMBER_ERR_OUT_OF_MEMORY);
    static const int bad[] = {9};
    ember_offload_op bop = {.need = bad, .nneed = 1};
    CHECK_STATUS(ember_offload_simulate(&bop, 1, bytes, 5, 300, ev, 16, &n), EMBER_ERR_INVALID_ARGUMENT);

    /* ties: clean before dirty, then the lowest id; "after" filters */
    ember__cand c[3] = {{.id = 4, .next = 10, .dirty = 1}, {.id = 7, .next = 10, .dirty = 0}, {.id = 2, .next = 10, .dirty = 0}};
    CHECK_EQ_INT(ember__pick_victim(c, 3, -1), 2);
    c[2].next = 3;
    CHECK_EQ_INT(ember__pick_victim(c, 3, -1), 1);
    CHECK_EQ_INT(ember__pick_victim(c, 3, 10), -1);
    c[0].next = EMBER__NEVER;
    CHECK_EQ_INT(ember__pick_victim(c, 3, 10), 0);
}

/* ---- training an MLP under a budget ---- */

#define BATCH 8
#define STEPS 5
static const int64_t DIMS[] = {32, 256, 256, 256, 256, 256, 16};
#define NLAYERS 6
/* one hidden layer (weight and bias) per chunk; the searched size would pack more,
   leaving too few chunks to place under a small budget */
#define LAYER_CHUNK (256 * 256 + 256) /* 257 KiB: large enough for the side thread */

typedef struct model {
    ember_memory *mm;
    ember_graph *g;
    ember_node *x, *loss;
    ember_optimizer *opt; /* the plain run's */
    ember_offload *off;
} model;

static ember_optimizer_config adam(void) {
    ember_optimizer_config c = ember_optimizer_defaults(EMBER_OPTIM_ADAMW);
    c.lr = 1e-3;
    return c;
}

static ember_status build_model(model *m, int checkpoint) {
    EMBER_TRY(ember_memory_create(&(ember_memory_config){.device = EMBER_CPU}, &m->mm));
    EMBER_TRY(ember_graph_create(&(ember_graph_params){.mm = m->mm, .tier = EMBER_TIER_DEVICE, .seed = 3}, &m->g));
    EMBER_TRY(ember_graph_input(m->g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){BATCH, DIMS[0]}, &m->x));
    ember_rng rng = {.seed = 7};
    ember_node *h, *sq;
    EMBER_TRY(ember_mlp(m->g, m->x,
                        &(ember_mlp_params){.dims = DIMS, .nlayers = NLAYERS, .act = EMBER_ACT_RELU, .name = "mlp",
                                            .rng = &rng, .checkpoint = checkpoint},
                        &h));
    EMBER_TRY(ember_op_mul(m->g, h, h, &sq));
    EMBER_TRY(ember_op_mean(m->g, sq, 0, &m->loss));
    return ember_graph_build_backward(m->g, m->loss);
}

static void free_model(model *m) {
    ember_offload_destroy(m->off);
    ember_optimizer_destroy(m->opt);
    ember_graph_destroy(m->g);
    ember_memory_destroy(m->mm);
    memset(m, 0, sizeof *m);
}

static ember_status feed(model *m, int step) {
    ember_tensor *xv;
    EMBER_TRY(ember_node_value(m->x, &xv));
    ember_rng r = {.seed = 100 + (uint64_t)step};
    return ember_rng_uniform(&r, xv, -1.0f, 1.0f);
}

static float loss_of(model *m) {
    ember_tensor *t;
    if (ember_node_value(m->loss, &t) != EMBER_OK) return NAN;
    return *(const float *)ember_tensor_data(t);
}

typedef struct run_result {
    float loss[STEPS];
    float *params;
    size_t nparams;
    size_t model_bytes, peak_device, budget;
    ember_offload_stats st;
} run_result;

/* The reference: plain graph + optimizer, unlimited memory. */
static void run_plain(run_result *r, int checkpoint) {
    model m = {0};
    CHECK_OK(build_model(&m, checkpoint));
    ember_optimizer_config oc = adam();
    CHECK_OK(ember_graph_optimizer_create(m.g, &oc, &m.opt));
    for (int s = 0; s < STEPS; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_graph_run(m.g));
        CHECK_OK(ember_optimizer_step(m.opt));
        r->loss[s] = loss_of(&m);
    }
    r->params = graph_params_snapshot(m.g, &r->nparams);
    free_model(&m);
}

/* The same under the manager; budget 0 = unlimited, else model bytes / divisor. */
static void run_offload(run_result *r, ember_offload_config cfg, int divisor, int checkpoint) {
    model m = {0};
    CHECK_OK(build_model(&m, checkpoint));
    ember_optimizer_config oc = adam();
    cfg.graph = m.g;
    cfg.optim = &oc;
    cfg.chunk_elems = LAYER_CHUNK;
    /* the model bytes, from a probe manager over the same graph: the chunks tell */
    ember_offload *probe = NULL;
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .sync = 1,
                                                          .chunk_elems = LAYER_CHUNK},
                                  &probe));
    ember_offload_stats ps;
    CHECK_OK(ember_offload_get_stats(probe, &ps));
    ember_offload_destroy(probe);
    r->model_bytes = ps.model_bytes;
    cfg.device_budget = divisor ? ps.model_bytes / (size_t)divisor : 0;
    r->budget = cfg.device_budget;
    CHECK_OK(ember_offload_create(&cfg, &m.off));
    for (int s = 0; s < STEPS && m.off; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_offload_step(m.off));
        r->loss[s] = loss_of(&m);
    }
    if (m.off) CHECK_OK(ember_offload_get_stats(m.off, &r->st));
    ember_memory_stats ms;
    ember_memory_get_stats(m.mm, &ms);
    r->peak_device = ms.peak_total[EMBER_TIER_DEVICE];
    r->params = graph_params_snapshot(m.g, &r->nparams);
    /* destroy gives the parameters their own memory back, values unchanged */
    ember_offload_destroy(m.off);
    m.off = NULL;
    size_t n2;
    float *after = graph_params_snapshot(m.g, &n2);
    CHECK(n2 == r->nparams && memcmp(after, r->params, n2 * 4) == 0);
    free(after);
    CHECK_OK(feed(&m, 0));
    CHECK_OK(ember_graph_run(m.g)); /* the graph still runs on its own */
    free_model(&m);
}

static void check_same(const run_result *ref, const run_result *r, const char *what) {
    int same = r->nparams == ref->nparams && r->params && memcmp(r->params, ref->params, r->nparams * 4) == 0;
    if (!same) fprintf(stderr, "policy %s: parameters differ from the plain run\n", what);
    CHECK(same);
    CHECK(memcmp(r->loss, ref->loss, sizeof r->loss) == 0);
}

static void test_training(int checkpoint) {
    run_result ref = {0};
    run_plain(&ref, checkpoint);
    CHECK(ref.loss[STEPS - 1] < ref.loss[0]); /* it learns */

    /* unlimited: everything ends up resident, the optimizer runs on the device */
    run_result un = {0};
    run_offload(&un, (ember_offload_config){.policy = EMBER_OFFLOAD_AUTO}, 0, checkpoint);
    check_same(&ref, &un, "auto unlimited");
    CHECK(un.st.warmed_up);
    CHECK_EQ_INT(un.st.evictions, 0);
    CHECK_EQ_INT(un.st.state_chunks_on_device, un.st.nchunks);

    /* a budget of a fifth of the model data: placement works for its living */
    run_result au = {0};
    run_offload(&au, (ember_offload_config){.policy = EMBER_OFFLOAD_AUTO, .sync = -1}, 5, checkpoint);
    check_same(&ref, &au, "auto");
    CHECK(au.peak_device <= au.budget);
    CHECK(au.st.evictions > 0);
    CHECK(au.st.h2d_bytes > 0 && au.st.d2h_bytes > 0);
    CHECK_EQ_INT(au.st.state_chunks_on_device, 0); /* states stay on the host */
    CHECK(au.st.prefetches > 0);                   /* the side thread worked */
    CHECK(au.st.nchunks >= 4);

    run_result sy = {0};
    run_offload(&sy, (ember_offload_config){.policy = EMBER_OFFLOAD_AUTO, .sync = 1}, 5, checkpoint);
    check_same(&ref, &sy, "auto sync");
    CHECK(sy.peak_device <= sy.budget);
    CHECK_EQ_INT(sy.st.prefetches, 0);

    /* the default on a CPU-only device tier: no side thread either */
    run_result df = {0};
    run_offload(&df, (ember_offload_config){.policy = EMBER_OFFLOAD_AUTO}, 5, checkpoint);
    check_same(&ref, &df, "auto default");
    CHECK(df.peak_device <= df.budget);
    CHECK_EQ_INT(df.st.prefetches, 0);
    CHECK(df.st.h2d_bytes == sy.st.h2d_bytes && df.st.d2h_bytes == sy.st.d2h_bytes);

    run_result nv = {0};
    run_offload(&nv, (ember_offload_config){.policy = EMBER_OFFLOAD_NAIVE}, 5, checkpoint);
    check_same(&ref, &nv, "naive");
    CHECK(nv.peak_device <= nv.budget);
    CHECK(nv.st.h2d_bytes > au.st.h2d_bytes); /* the baseline moves more */

    run_result sa = {0};
    run_offload(&sa, (ember_offload_config){.policy = EMBER_OFFLOAD_STATIC, .param_host_fraction = 0.75,
                                            .state_host_fraction = 1},
                4, checkpoint);
    check_same(&ref, &sa, "static");
    CHECK(sa.peak_device <= sa.budget);

    /* static with the state on the device too (a budget that holds it) */
    run_result sd = {0};
    run_offload(&sd, (ember_offload_config){.policy = EMBER_OFFLOAD_STATIC, .param_host_fraction = 0.5,
                                            .state_host_fraction = 0.5},
                1, checkpoint);
    check_same(&ref, &sd, "static, state on device");
    CHECK(sd.st.state_chunks_on_device > 0);
    run_result *all[] = {&ref, &un, &au, &sy, &df, &nv, &sa, &sd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->params);
}

/* Non-model device memory (here a stand-in for an embedding cache's slots) shares the
   budget: the warm-up trace sees it and placement works around it. */
static void test_shared_budget(void) {
    run_result ref = {0};
    run_plain(&ref, 0);
    model m = {0};
    CHECK_OK(build_model(&m, 0));
    void *slots = NULL;
    const size_t slot_bytes = 300000;
    CHECK_OK(ember_memory_alloc(m.mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, slot_bytes, &slots));
    ember_optimizer_config oc = adam();
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .chunk_elems = LAYER_CHUNK,
                                                          .device_budget = 1200000},
                                  &m.off));
    for (int s = 0; s < STEPS && m.off; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_offload_step(m.off));
        CHECK(loss_of(&m) == ref.loss[s]);
    }
    ember_offload_stats st;
    CHECK_OK(ember_offload_get_stats(m.off, &st));
    CHECK(st.non_model_peak >= slot_bytes);
    ember_memory_stats ms;
    ember_memory_get_stats(m.mm, &ms);
    CHECK(ms.peak_total[EMBER_TIER_DEVICE] <= 1200000);
    CHECK(ms.peak[EMBER_TIER_DEVICE][EMBER_MEM_CACHE] == slot_bytes);
    CHECK(ms.peak[EMBER_TIER_DEVICE][EMBER_MEM_PARAMETER] > 0);
    CHECK(ms.peak[EMBER_TIER_DEVICE][EMBER_MEM_ACTIVATION] > 0);
    size_t n;
    float *p = graph_params_snapshot(m.g, &n);
    CHECK(n == ref.nparams && memcmp(p, ref.params, n * 4) == 0);
    free(p);
    free(ref.params);
    ember_offload_destroy(m.off);
    m.off = NULL;
    ember_memory_free(m.mm, slots);
    free_model(&m);
}

/* An allocation of other data on the device from another thread (the reclaim is
   serialised with the manager's calls). */
typedef struct alloc_job {
    ember_memory *mm;
    size_t bytes;
    void *p;
    ember_status st;
} alloc_job;

static void *alloc_thread(void *arg) {
    alloc_job *j = arg;
    j->st = ember_memory_alloc(j->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, j->bytes, &j->p);
    return NULL;
}

/* The manager fills a budget that holds all the model data with chunk copies; a later
   allocation of other data (a stand-in for an embedding cache's staging buffer) that
   only fits once chunks leave makes the manager evict them (clean ones first, dirty
   ones written back), and training goes on with the bits of a plain run. An allocation
   that even every evictable byte would not make room for fails by name, moving
   nothing. */
static void test_reclaim(void) {
    run_result ref = {0};
    run_plain(&ref, 0);
    ember_optimizer_config oc = adam();
    /* the non-model peak (activations, workspaces) from one step of a probe model */
    model probe = {0};
    CHECK_OK(build_model(&probe, 0));
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = probe.g, .optim = &oc, .chunk_elems = LAYER_CHUNK},
                                  &probe.off));
    CHECK_OK(feed(&probe, 0));
    if (probe.off) CHECK_OK(ember_offload_step(probe.off));
    ember_offload_stats ps = {0};
    if (probe.off) CHECK_OK(ember_offload_get_stats(probe.off, &ps));
    free_model(&probe);
    const size_t chunk = ps.chunk_bytes[EMBER_CHUNK_PARAM];
    const size_t budget = ps.model_bytes + ps.non_model_peak + chunk;

    model m = {0};
    CHECK_OK(build_model(&m, 0));
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .chunk_elems = LAYER_CHUNK,
                                                          .device_budget = budget},
                                  &m.off));
    if (!m.off) {
        free(ref.params);
        free_model(&m);
        return;
    }
    int s = 0;
    for (; s < 2; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_offload_step(m.off));
        CHECK(loss_of(&m) == ref.loss[s]);
    }
    ember_offload_stats st0, st1, st2;
    CHECK_OK(ember_offload_get_stats(m.off, &st0));
    CHECK(st0.reclaim);
    CHECK_EQ_INT(st0.state_chunks_on_device, st0.nchunks); /* everything lives on the device */
    CHECK(st0.device_chunk_bytes >= ps.model_bytes - chunk);
    ember_memory_stats ms;
    ember_memory_get_stats(m.mm, &ms);
    const size_t free0 = budget - ms.live_total[EMBER_TIER_DEVICE];
    CHECK(free0 < st0.device_chunk_bytes / 2);

    /* half the chunk bytes must go: more than the clean (consumed) gradient chunks */
    void *staging = NULL;
    const size_t big = free0 + st0.device_chunk_bytes / 2;
    CHECK_OK(ember_memory_alloc(m.mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, big, &staging));
    CHECK_OK(ember_offload_get_stats(m.off, &st1));
    CHECK(st1.reclaim_evictions > 0);
    CHECK(st1.reclaimed_bytes >= big - free0);
    CHECK(st1.evictions - st0.evictions == st1.reclaim_evictions);
    CHECK(st1.d2h_bytes > st0.d2h_bytes); /* dirty chunks were written back */
    CHECK(st1.device_chunk_bytes <= st0.device_chunk_bytes - (big - free0));
    ember_memory_get_stats(m.mm, &ms);
    CHECK(ms.peak_total[EMBER_TIER_DEVICE] <= budget);
    memset(staging, 0x5a, big); /* the memory is ours */

    /* training goes on beside it, bit for bit */
    for (; s < 4; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_offload_step(m.off));
        CHECK(loss_of(&m) == ref.loss[s]);
    }
    /* more than everything evictable (the staging buffer stays): refused, nothing moves */
    CHECK_OK(ember_offload_get_stats(m.off, &st1));
    void *huge = (void *)1;
    CHECK_STATUS(ember_memory_alloc(m.mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, budget - big + 1, &huge),
                 EMBER_ERR_OUT_OF_MEMORY);
    CHECK(huge == NULL);
    CHECK(strstr(ember_last_error(), "EMBER_ERR_OUT_OF_MEMORY: device tier") == ember_last_error());
    CHECK(strstr(ember_last_error(), "after a reclaim freed 0 B") != NULL);
    CHECK_OK(ember_offload_get_stats(m.off, &st2));
    CHECK_EQ_INT(st2.device_chunk_bytes, st1.device_chunk_bytes);
    CHECK_EQ_INT(st2.reclaim_evictions, st1.reclaim_evictions);

    /* from another thread while the manager is idle: it gives back too */
    ember_memory_free(m.mm, staging);
    ember_memory_get_stats(m.mm, &ms);
    alloc_job job = {.mm = m.mm, .bytes = budget - ms.live_total[EMBER_TIER_DEVICE] + chunk};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, alloc_thread, &job) == 0);
    pthread_join(th, NULL);
    CHECK_OK(job.st);
    CHECK_OK(ember_offload_get_stats(m.off, &st2));
    CHECK(st2.reclaim_evictions > st1.reclaim_evictions);
    for (; s < STEPS; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_offload_step(m.off));
        CHECK(loss_of(&m) == ref.loss[s]);
    }
    ember_memory_get_stats(m.mm, &ms);
    CHECK(ms.peak_total[EMBER_TIER_DEVICE] <= budget);
    size_t n;
    float *p = graph_params_snapshot(m.g, &n);
    CHECK(n == ref.nparams && p && memcmp(p, ref.params, n * 4) == 0);
    free(p);
    ember_memory_free(m.mm, job.p);

    /* one reclaim callback per memory manager: a second offload manager runs without */
    CHECK_OK(ember_memory_set_budget(m.mm, EMBER_TIER_DEVICE, 0));
    ember_graph *g2 = NULL;
    ember_node *x2, *h2, *l2;
    ember_offload *off2 = NULL;
    ember_rng rng = {.seed = 9};
    CHECK_OK(ember_graph_create(&(ember_graph_params){.mm = m.mm, .tier = EMBER_TIER_DEVICE}, &g2));
    CHECK_OK(ember_graph_input(g2, "x", EMBER_DTYPE_F32, 2, (int64_t[]){2, 4}, &x2));
    CHECK_OK(ember_mlp(g2, x2, &(ember_mlp_params){.dims = (int64_t[]){4, 4}, .nlayers = 1, .name = "m2", .rng = &rng},
                       &h2));
    CHECK_OK(ember_op_mean(g2, h2, 0, &l2));
    CHECK_OK(ember_graph_build_backward(g2, l2));
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = g2}, &off2));
    ember_offload_stats s2;
    if (off2) CHECK_OK(ember_offload_get_stats(off2, &s2));
    CHECK_EQ_INT(off2 ? s2.reclaim : -1, 0);
    ember_offload_destroy(off2);
    ember_graph_destroy(g2);
    free(ref.params);
    free_model(&m);
}

static void test_static_too_small(void) {
    model m = {0};
    CHECK_OK(build_model(&m, 0));
    ember_optimizer_config oc = adam();
    ember_offload *off = NULL;
    /* everything on the device in a budget of a tenth: refused at creation, by name */
    CHECK_STATUS(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .policy = EMBER_OFFLOAD_STATIC,
                                                              .device_budget = 200000},
                                      &off),
                 EMBER_ERR_OUT_OF_MEMORY);
    CHECK(strstr(ember_last_error(), "EMBER_ERR_OUT_OF_MEMORY: offload: placing the static share: ") == ember_last_error());
    CHECK(strstr(ember_last_error(), "do not fit in the device budget of 200000 bytes") != NULL);
    CHECK(off == NULL);
    /* the graph is whole again, its budget as before: a plain run works */
    ember_memory_stats ms;
    ember_memory_get_stats(m.mm, &ms);
    CHECK(ms.budget[EMBER_TIER_DEVICE] == EMBER_BUDGET_UNLIMITED);
    CHECK_OK(feed(&m, 0));
    CHECK_OK(ember_graph_run(m.g));
    free_model(&m);
}

static void test_states(void) {
    model m = {0};
    CHECK_OK(build_model(&m, 0));
    ember_optimizer_config oc = adam();
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc}, &m.off));
    ember_offload *other = NULL;
    CHECK_STATUS(ember_offload_create(&(ember_offload_config){.graph = m.g}, &other), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "executor hook") != NULL);

    ember_tensor_state s;
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_PARAM, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_HOLD);
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_GRAD, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_FREE);
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.3.bias", EMBER_CHUNK_STATE, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_HOLD);
    CHECK_STATUS(ember_offload_tensor_state(m.off, "nope", EMBER_CHUNK_PARAM, &s), EMBER_ERR_NOT_FOUND);
    int c0, c1;
    int64_t o0, o1;
    CHECK_OK(ember_offload_tensor_chunk(m.off, "mlp.1.weight", &c0, &o0));
    CHECK_OK(ember_offload_tensor_chunk(m.off, "mlp.1.bias", &c1, &o1));
    CHECK(c1 == c0 && o1 > o0); /* first-use order: a layer's bias follows its weight */

    /* illegal transitions are errors naming tensor, kind, from and to; nothing changes */
    CHECK_STATUS(ember_offload_set_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_GRAD,
                                                EMBER_TENSOR_STATE_HOLD_AFTER_BWD),
                 EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "EMBER_ERR_STATE") == ember_last_error());
    CHECK(strstr(ember_last_error(), "'mlp.0.weight' (grad): FREE -> HOLD_AFTER_BWD") != NULL);
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_GRAD, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_FREE);
    CHECK_STATUS(ember_offload_set_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_PARAM,
                                                EMBER_TENSOR_STATE_READY_FOR_REDUCE),
                 EMBER_ERR_STATE);
    /* the optimizer before any backward: gradients are FREE */
    CHECK_STATUS(ember_offload_optimizer_step(m.off), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "run backward first") != NULL);

    /* a parameter held in COMPUTE by someone else: the op that needs it is refused */
    CHECK_OK(ember_offload_set_tensor_state(m.off, "mlp.2.weight", EMBER_CHUNK_PARAM, EMBER_TENSOR_STATE_COMPUTE));
    CHECK_STATUS(ember_offload_set_tensor_state(m.off, "mlp.2.weight", EMBER_CHUNK_PARAM, EMBER_TENSOR_STATE_COMPUTE),
                 EMBER_ERR_STATE);
    CHECK_OK(feed(&m, 0));
    CHECK_STATUS(ember_offload_run(m.off), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "'mlp.2.weight' (param): COMPUTE -> COMPUTE") != NULL);
    CHECK_OK(ember_offload_set_tensor_state(m.off, "mlp.2.weight", EMBER_CHUNK_PARAM, EMBER_TENSOR_STATE_HOLD));

    /* a step's states */
    CHECK_OK(ember_offload_run(m.off));
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.1.weight", EMBER_CHUNK_PARAM, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_HOLD_AFTER_BWD);
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_PARAM, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_HOLD); /* the first layer's weight is not read by backward */
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.5.bias", EMBER_CHUNK_GRAD, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_READY_FOR_REDUCE);
    ember_offload_stats st;
    CHECK_OK(ember_offload_get_stats(m.off, &st));
    CHECK_EQ_INT(st.state_bytes[EMBER_TENSOR_STATE_COMPUTE], 0);
    CHECK_EQ_INT(st.state_bytes[EMBER_TENSOR_STATE_FREE], 0);
    CHECK(!st.warmed_up);
    CHECK_OK(ember_offload_optimizer_step(m.off));
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.0.weight", EMBER_CHUNK_PARAM, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_HOLD);
    CHECK_OK(ember_offload_tensor_state(m.off, "mlp.5.bias", EMBER_CHUNK_GRAD, &s));
    CHECK_EQ_INT(s, EMBER_TENSOR_STATE_FREE);
    CHECK_OK(ember_offload_get_stats(m.off, &st));
    CHECK(st.warmed_up);
    CHECK_EQ_INT(st.iterations, 1);
    CHECK_EQ_INT(st.state_bytes[EMBER_TENSOR_STATE_READY_FOR_REDUCE], 0);
    CHECK(st.state_bytes[EMBER_TENSOR_STATE_HOLD] > 0);
    CHECK_OK(ember_offload_flush(m.off));
    CHECK_OK(ember_offload_get_stats(m.off, &st));
    CHECK_EQ_INT(st.device_chunk_bytes, 0);
    free_model(&m);
}

/* Transfers show up in the profiler as links and counters. */
static void test_profiler(void) {
    model m = {0};
    CHECK_OK(build_model(&m, 0));
    ember_optimizer_config oc = adam();
    CHECK_OK(ember_offload_create(&(ember_offload_config){.graph = m.g, .optim = &oc, .device_budget = 800000,
                                                          .chunk_elems = LAYER_CHUNK},
                                  &m.off));
    CHECK_OK(ember_profiler_start(&(ember_profiler_config){.memory = {m.mm}}));
    for (int s = 0; s < 3 && m.off; s++) {
        CHECK_OK(feed(&m, s));
        CHECK_OK(ember_offload_step(m.off));
    }
    CHECK_OK(ember_profiler_stop());
    ember_profiler_link_stats h2d, d2h;
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_HOST_TO_DEVICE, &h2d));
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_DEVICE_TO_HOST, &d2h));
    ember_offload_stats st;
    CHECK_OK(ember_offload_get_stats(m.off, &st));
    CHECK_EQ_INT(h2d.bytes, st.h2d_bytes);
    CHECK_EQ_INT(d2h.bytes, st.d2h_bytes);
    CHECK(h2d.bytes > 0);
    ember_profiler_info info;
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK(info.peak_total[0][EMBER_TIER_DEVICE] <= 800000);
    CHECK_OK(ember_profiler_reset());
    free_model(&m);
}

/* `ember train --device-mem`: one budget for the cache's slots, the dense layers and
   the activations. */
static void test_train_device_mem(void) {
    char root[256];
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(root, sizeof root, "%s/ember-test-offload-XXXXXX", base);
    if (!mkdtemp(root)) {
        CHECK(0);
        return;
    }
    ember_train_config c;
    ember_train_config_defaults(&c);
    CHECK_EQ_INT(c.device_mem, 0);
    CHECK_OK(ember_train_config_set(&c, "device-mem", "8000000"));
    CHECK_EQ_INT(c.device_mem, 8000000);
    CHECK_STATUS(ember_train_config_set(&c, "device-mem", "-1"), EMBER_ERR_INVALID_ARGUMENT);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/data", root);
    c.rows = 4096;
    c.eval_rows = 1024;
    c.scale = 0.0005;
    c.emb_dim = 8;
    memcpy(c.bottom, (int64_t[EMBER_DLRM_MAX_LAYERS]){16, 8}, sizeof c.bottom);
    memcpy(c.top, (int64_t[EMBER_DLRM_MAX_LAYERS]){16, 1}, sizeof c.top);
    c.batch = 128;
    c.cache_ratio = 0.05;
    c.max_steps = 10;
    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (t) {
        CHECK_OK(ember_trainer_run(t, NULL, NULL));
        ember_train_report r;
        CHECK_OK(ember_trainer_report(t, &r));
        CHECK(r.memory.budget[EMBER_TIER_DEVICE] == 8000000);
        CHECK(r.memory.peak_total[EMBER_TIER_DEVICE] <= 8000000);
        CHECK(r.memory.peak[EMBER_TIER_DEVICE][EMBER_MEM_CACHE] > 0);      /* the cache's slots, */
        CHECK(r.memory.peak[EMBER_TIER_DEVICE][EMBER_MEM_PARAMETER] > 0);  /* the dense layers */
        CHECK(r.memory.peak[EMBER_TIER_DEVICE][EMBER_MEM_ACTIVATION] > 0); /* and activations share it */
        ember_trainer_destroy(t);
    }
    /* too small for the cache's slots: refused at creation, by name */
    c.device_mem = 100000;
    t = NULL;
    CHECK_STATUS(ember_trainer_create(&c, NULL, NULL, &t), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(strstr(ember_last_error(), "device tier") != NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

int main(void) {
    test_state_table();
    test_chunk_search();
    test_belady();
    test_states();
    test_static_too_small();
    test_shared_budget();
    test_reclaim();
    test_training(0);
    test_training(1); /* checkpointed layers: recompute entries under the manager */
    test_profiler();
    test_train_device_mem();
    return check_summary();
}
