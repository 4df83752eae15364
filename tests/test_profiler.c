/*
 * tests/test_profiler.c: the profiler (ember/profiler.h).
 *
 * Scopes nest and are per thread; a stopped profiler records nothing; the graph
 * executor gives exactly one event per node it runs (checkpoint recomputes included),
 * named by the op; the Chrome trace parses with the strict JSON parser and its
 * per-op totals equal the summary's; memory samples and link transfers reach both;
 * the training job's `profile` key writes the trace and the summary, and its link
 * bytes equal the cache's own counters; bad paths are EMBER_ERR_IO naming the path.
 * Nothing here asserts on a time beyond its sign and ordering.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "engine/json.h"
#include "ember/profiler.h"
#include "ember/train.h"

static char root[256];

static ember_profiler_config quiet_cfg(void) {
    /* every scope boundary sampled, no bandwidth probes (fast) */
    return (ember_profiler_config){.memory_interval_ms = 0};
}

/* The op (name, cat) of the last run's summary, or calls = -1. */
static ember_profiler_op find_op(const char *name, const char *cat) {
    int n = ember_profiler_op_count();
    for (int i = 0; i < n; i++) {
        ember_profiler_op o;
        if (ember_profiler_get_op(i, &o) != EMBER_OK) break;
        if (strcmp(o.name, name) == 0 && (!cat || strcmp(o.cat, cat) == 0)) return o;
    }
    return (ember_profiler_op){.calls = -1};
}

/* ---- the trace, read back ---- */

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    *n = (size_t)len;
    return buf;
}

static double num(const ember__json *v) {
    if (!v || ember__json_type_of(v) != EMBER__JSON_NUMBER) return NAN;
    return strtod(ember__json_string(v, NULL), NULL);
}

static const char *str(const ember__json *v) {
    return v && ember__json_type_of(v) == EMBER__JSON_STRING ? ember__json_string(v, NULL) : NULL;
}

#define MAX_KEYS 128
typedef struct trace_sum {
    int ok;
    int n;
    char name[MAX_KEYS][64], cat[MAX_KEYS][32];
    int64_t calls[MAX_KEYS];
    double total_us[MAX_KEYS];
    int64_t x_events, counters, bad_times, missing_node, tids[16], ntids;
    double last_value; /* of the counter named by want_counter / want_key, the last seen */
    double max_value;
} trace_sum;

/* Parse a trace with the strict parser and total its "X" events by (cat, name). */
static trace_sum read_trace(const char *path, const char *want_counter, const char *want_key) {
    trace_sum s;
    memset(&s, 0, sizeof s);
    s.last_value = s.max_value = -1;
    size_t n = 0;
    char *buf = slurp(path, &n);
    if (!buf) return s;
    ember__json_doc *doc = NULL;
    ember__json_error err;
    if (ember__json_parse(buf, n, &doc, &err) != EMBER_OK) {
        fprintf(stderr, "trace %s: JSON error at %zu: %s\n", path, err.offset, err.reason);
        free(buf);
        return s;
    }
    const ember__json *ev = ember__json_get(ember__json_root(doc), "traceEvents");
    s.ok = ev && ember__json_type_of(ev) == EMBER__JSON_ARRAY;
    for (const ember__json *e = ev ? ember__json_first(ev) : NULL; e; e = ember__json_next(e)) {
        const char *ph = str(ember__json_get(e, "ph")), *name = str(ember__json_get(e, "name"));
        const char *cat = str(ember__json_get(e, "cat"));
        if (!ph || !name) {
            s.ok = 0;
            continue;
        }
        if (strcmp(ph, "C") == 0) {
            s.counters++;
            const ember__json *args = ember__json_get(e, "args");
            if (want_counter && strcmp(name, want_counter) == 0 && args) {
                double v = num(ember__json_get(args, want_key));
                if (!isnan(v)) {
                    s.last_value = v;
                    if (v > s.max_value) s.max_value = v;
                }
            }
            continue;
        }
        if (strcmp(ph, "X") != 0) continue;
        s.x_events++;
        double ts = num(ember__json_get(e, "ts")), dur = num(ember__json_get(e, "dur"));
        if (!(ts >= 0) || !(dur >= 0)) s.bad_times++;
        double tid = num(ember__json_get(e, "tid"));
        int seen = 0;
        for (int i = 0; i < s.ntids; i++) seen |= s.tids[i] == (int64_t)tid;
        if (!seen && s.ntids < 16) s.tids[s.ntids++] = (int64_t)tid;
        if (!cat) {
            s.ok = 0;
            continue;
        }
        if ((!strcmp(cat, "forward") || !strcmp(cat, "backward")) &&
            isnan(num(ember__json_get(ember__json_get(e, "args"), "node"))))
            s.missing_node++;
        int k = 0;
        while (k < s.n && !(strcmp(s.name[k], name) == 0 && strcmp(s.cat[k], cat) == 0)) k++;
        if (k == s.n && s.n < MAX_KEYS) {
            snprintf(s.name[k], sizeof s.name[k], "%s", name);
            snprintf(s.cat[k], sizeof s.cat[k], "%s", cat);
            s.n++;
        }
        if (k < MAX_KEYS) {
            s.calls[k]++;
            s.total_us[k] += dur;
        }
    }
    ember__json_free(doc);
    free(buf);
    return s;
}

/* Every scope of the summary against the trace: calls equal, totals equal up to the
   trace's rounding of each event to the nanosecond. */
static void check_trace_matches_summary(const trace_sum *s) {
    int n = ember_profiler_op_count();
    CHECK(n > 0);
    int matched = 0;
    for (int i = 0; i < n; i++) {
        ember_profiler_op o;
        CHECK_OK(ember_profiler_get_op(i, &o));
        CHECK(o.self_s <= o.total_s + 1e-12 && o.min_s <= o.max_s && o.self_s >= 0);
        for (int k = 0; k < s->n; k++)
            if (!strcmp(s->name[k], o.name) && !strcmp(s->cat[k], o.cat)) {
                matched++;
                CHECK_EQ_INT(s->calls[k], o.calls);
                CHECK_NEAR(s->total_us[k], o.total_s * 1e6, 1e-3 * (double)o.calls + 1e-6);
            }
        if (i > 0) { /* sorted by total time */
            ember_profiler_op prev;
            CHECK_OK(ember_profiler_get_op(i - 1, &prev));
            CHECK(prev.total_s >= o.total_s);
        }
    }
    CHECK_EQ_INT(matched, n);
}

/* ---- tests ---- */

static void test_disabled(void) {
    CHECK_OK(ember_profiler_reset());
    CHECK(!ember_profiler_enabled());
    ember_profiler_begin("never");
    ember_profiler_arg("k", 1);
    ember_profiler_counter("c", "v", 1);
    ember_profiler_transfer(EMBER_PROFILER_LINK_HOST_TO_DEVICE, 100, 0, 1);
    ember_profiler_end();
    ember_profiler_end(); /* unbalanced: ignored */
    CHECK_EQ_INT(ember_profiler_op_count(), -1);
    ember_profiler_info info;
    CHECK_STATUS(ember_profiler_get_info(&info), EMBER_ERR_STATE);
    char path[512];
    snprintf(path, sizeof path, "%s/never.json", root);
    CHECK_STATUS(ember_profiler_write_trace(path), EMBER_ERR_STATE);
    CHECK_STATUS(ember_profiler_summary(stderr), EMBER_ERR_STATE);

    /* a run with nothing in it, then hooks after stop: still nothing */
    ember_profiler_config c = quiet_cfg();
    CHECK_OK(ember_profiler_start(&c));
    CHECK(ember_profiler_enabled());
    CHECK_OK(ember_profiler_stop());
    ember_profiler_begin("after");
    ember_profiler_end();
    ember_profiler_transfer(EMBER_PROFILER_LINK_HOST_TO_DEVICE, 100, 0, 1);
    CHECK_EQ_INT(ember_profiler_op_count(), 0);
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK_EQ_INT(info.events, 0);
    CHECK(info.wall_s >= 0);
    ember_profiler_link_stats ls;
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_HOST_TO_DEVICE, &ls));
    CHECK_EQ_INT(ls.bytes, 0);
    CHECK_OK(ember_profiler_write_trace(path));
    trace_sum s = read_trace(path, NULL, NULL);
    CHECK(s.ok);
    CHECK_EQ_INT(s.x_events, 0);
}

static void test_nested(void) {
    ember_profiler_config c = quiet_cfg();
    CHECK_OK(ember_profiler_start(&c));
    ember_profiler_end(); /* nothing open: ignored */
    ember_profiler_begin("outer");
    ember_profiler_begin_cat("inner", "work");
    ember_profiler_arg("k", 3);
    ember_profiler_end();
    ember_profiler_begin_cat("inner", "work");
    usleep(1000);
    ember_profiler_end();
    ember_profiler_end();
    /* deeper than the stack: the first 64 levels are recorded, the rest ignored */
    for (int i = 0; i < 70; i++) ember_profiler_begin("deep");
    for (int i = 0; i < 70; i++) ember_profiler_end();
    ember_profiler_begin("left open"); /* dropped at stop */
    CHECK_STATUS(ember_profiler_start(&c), EMBER_ERR_STATE);
    CHECK_STATUS(ember_profiler_write_trace("unused.json"), EMBER_ERR_STATE);
    CHECK_STATUS(ember_profiler_reset(), EMBER_ERR_STATE);
    CHECK_EQ_INT(ember_profiler_op_count(), -1);
    CHECK_OK(ember_profiler_stop());
    CHECK_STATUS(ember_profiler_stop(), EMBER_ERR_STATE);
    ember_profiler_end(); /* closes "left open" after stop: ignored */

    ember_profiler_op outer = find_op("outer", "scope"), inner = find_op("inner", "work");
    ember_profiler_op deep = find_op("deep", NULL), open = find_op("left open", NULL);
    CHECK_EQ_INT(outer.calls, 1);
    CHECK_EQ_INT(inner.calls, 2);
    CHECK_EQ_INT(deep.calls, 64);
    CHECK_EQ_INT(open.calls, -1);
    CHECK(outer.total_s >= inner.total_s);
    CHECK_NEAR(outer.self_s, outer.total_s - inner.total_s, 1e-9);
    CHECK_NEAR(inner.self_s, inner.total_s, 1e-12);
    CHECK(inner.min_s <= inner.max_s && inner.min_s >= 0);
    ember_profiler_info info;
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK_EQ_INT(info.events, 1 + 2 + 64);
    CHECK_EQ_INT(info.threads, 1);

    char path[512];
    snprintf(path, sizeof path, "%s/nested.json", root);
    CHECK_OK(ember_profiler_write_trace(path));
    trace_sum s = read_trace(path, NULL, NULL);
    CHECK(s.ok);
    CHECK_EQ_INT(s.x_events, 67);
    CHECK_EQ_INT(s.bad_times, 0);
    check_trace_matches_summary(&s);

    /* a second run starts empty, and a scope opened before it does not leak into it */
    ember_profiler_begin("before");
    CHECK_OK(ember_profiler_start(&c));
    ember_profiler_end(); /* closes "before" of no run */
    ember_profiler_begin("x");
    ember_profiler_end();
    CHECK_OK(ember_profiler_stop());
    CHECK_EQ_INT(ember_profiler_op_count(), 1);
    CHECK_EQ_INT(find_op("x", "scope").calls, 1);
}

#define NTHREADS 4
#define PER_THREAD 200

static void *worker(void *arg) {
    static const char *const names[NTHREADS] = {"worker 0", "worker 1", "worker 2", "worker 3"};
    const char *name = names[(intptr_t)arg]; /* a counter key is not copied: static */
    ember_profiler_set_thread_name(name);
    for (int i = 0; i < PER_THREAD; i++) {
        ember_profiler_begin("work");
        ember_profiler_begin("leaf");
        ember_profiler_counter("progress", name, i);
        ember_profiler_end();
        ember_profiler_end();
    }
    return NULL;
}

static void test_threads(void) {
    ember_profiler_config c = quiet_cfg();
    CHECK_OK(ember_profiler_start(&c));
    ember_profiler_begin("main scope");
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    ember_profiler_end();
    CHECK_OK(ember_profiler_stop());
    CHECK_EQ_INT(find_op("work", NULL).calls, NTHREADS * PER_THREAD);
    CHECK_EQ_INT(find_op("leaf", NULL).calls, NTHREADS * PER_THREAD);
    CHECK_EQ_INT(find_op("main scope", NULL).calls, 1);
    ember_profiler_info info;
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK_EQ_INT(info.threads, NTHREADS + 1);
    CHECK_EQ_INT(info.events, 1 + NTHREADS * PER_THREAD * 3);
    char path[512];
    snprintf(path, sizeof path, "%s/threads.json", root);
    CHECK_OK(ember_profiler_write_trace(path));
    trace_sum s = read_trace(path, "progress", "worker 2");
    CHECK(s.ok);
    CHECK_EQ_INT(s.ntids, NTHREADS + 1);
    CHECK_EQ_INT(s.last_value, PER_THREAD - 1);
    check_trace_matches_summary(&s);

    /* the exited threads' buffers are freed by the next run; a cap drops events but
       not the totals */
    c.max_events = 100;
    CHECK_OK(ember_profiler_start(&c));
    for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    CHECK_OK(ember_profiler_stop());
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK_EQ_INT(info.events, 100);
    CHECK(info.dropped >= NTHREADS * PER_THREAD * 3 - 100);
    CHECK_EQ_INT(find_op("work", NULL).calls, NTHREADS * PER_THREAD);
    CHECK_OK(ember_profiler_write_trace(path));
    s = read_trace(path, NULL, NULL);
    CHECK(s.ok);
    CHECK(s.x_events <= 100);
}

/* A small MLP, checkpointed up to its last bias: every node it runs, forward, backward
   and recomputed, is one event named by its op. */
static void test_graph(void) {
    enum { B = 16 };
    ember_graph *g = NULL;
    CHECK_OK(ember_graph_create(&(ember_graph_params){.seed = 1}, &g));
    if (!g) return;
    ember_node *x, *y, *w1, *b1, *w2, *b2, *h, *a, *o, *loss;
    CHECK_OK(ember_graph_input(g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){B, 13}, &x));
    CHECK_OK(ember_graph_input(g, "labels", EMBER_DTYPE_F32, 2, (int64_t[]){B, 1}, &y));
    CHECK_OK(ember_graph_param(g, "w1", EMBER_DTYPE_F32, 2, (int64_t[]){13, 16}, &w1));
    CHECK_OK(ember_graph_param(g, "b1", EMBER_DTYPE_F32, 1, (int64_t[]){16}, &b1));
    CHECK_OK(ember_graph_param(g, "w2", EMBER_DTYPE_F32, 2, (int64_t[]){16, 1}, &w2));
    CHECK_OK(ember_graph_param(g, "b2", EMBER_DTYPE_F32, 1, (int64_t[]){1}, &b2));
    CHECK_OK(ember_graph_checkpoint_begin(g));
    CHECK_OK(ember_op_matmul(g, x, w1, 0, 0, &h));
    CHECK_OK(ember_op_add(g, h, b1, &a));
    CHECK_OK(ember_op_relu(g, a, &h));
    CHECK_OK(ember_op_matmul(g, h, w2, 0, 0, &a)); /* reads h in backward: h is recomputed */
    CHECK_OK(ember_graph_checkpoint_end(g));
    CHECK_OK(ember_op_add(g, a, b2, &o));
    CHECK_OK(ember_op_bce_with_logits(g, o, y, &loss));
    CHECK_OK(ember_graph_build_backward(g, loss));
    CHECK_OK(ember_graph_plan(g));
    ember_tensor *tx, *tw;
    CHECK_OK(ember_node_value(x, &tx));
    CHECK_OK(ember_node_value(w1, &tw));
    for (int i = 0; i < B * 13; i++) ((float *)ember_tensor_data(tx))[i] = (float)((i % 7) - 3) * 0.1f;
    for (int i = 0; i < 13 * 16; i++) ((float *)ember_tensor_data(tw))[i] = (float)((i % 5) - 2) * 0.05f;

    const char *const *ops = ember_graph_op_names();
    int nops = 0;
    while (ops[nops]) nops++;
    int64_t *before = calloc((size_t)nops, sizeof *before);
    CHECK_OK(ember_graph_run(g)); /* unprofiled: not counted */
    for (int i = 0; i < nops; i++) before[i] = ember_graph_op_runs(g, ops[i]);

    ember_profiler_config c = quiet_cfg();
    CHECK_OK(ember_profiler_start(&c));
    for (int r = 0; r < 3; r++) {
        ember_profiler_begin("step");
        CHECK_OK(ember_graph_run(g));
        ember_profiler_end();
    }
    CHECK_OK(ember_graph_forward(g)); /* forward alone: forward events only */
    CHECK_OK(ember_profiler_stop());
    int64_t *mid = calloc((size_t)nops, sizeof *mid);
    for (int i = 0; i < nops; i++) mid[i] = ember_graph_op_runs(g, ops[i]);
    CHECK_OK(ember_graph_run(g)); /* after stop: not recorded */

    char path[512];
    snprintf(path, sizeof path, "%s/graph.json", root);
    CHECK_OK(ember_profiler_write_trace(path));
    trace_sum s = read_trace(path, "memory host", "activation");
    CHECK(s.ok);
    CHECK_EQ_INT(s.bad_times, 0);
    CHECK_EQ_INT(s.missing_node, 0);
    check_trace_matches_summary(&s);
    /* per op: events (forward + backward) = the executor's runs while profiling */
    int64_t events = 0;
    for (int i = 0; i < nops; i++) {
        int64_t seen = 0;
        for (int k = 0; k < s.n; k++)
            if (!strcmp(s.name[k], ops[i]) && (!strcmp(s.cat[k], "forward") || !strcmp(s.cat[k], "backward")))
                seen += s.calls[k];
        if (seen != mid[i] - before[i]) fprintf(stderr, "op %s: %lld events\n", ops[i], (long long)seen);
        CHECK_EQ_INT(seen, mid[i] - before[i]);
        events += seen;
    }
    ember_graph_stats gs;
    CHECK_OK(ember_graph_get_stats(g, &gs));
    CHECK(gs.recomputed_nodes > 0);
    CHECK_EQ_INT(events, 3 * (gs.forward_nodes + gs.backward_nodes + gs.recomputed_nodes) + gs.forward_nodes);
    CHECK(find_op("matmul", "forward").calls == 4 * 2);
    CHECK(find_op("relu", "forward").calls == 4);
    CHECK(find_op("relu", "backward").calls == 3); /* recomputed in backward */
    CHECK(find_op("relu_bwd", "backward").calls == 3);
    CHECK_EQ_INT(find_op("step", "scope").calls, 3);
    /* memory: the activation arena was live and sampled */
    ember_profiler_info info;
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK_EQ_INT(info.nmemory, 1);
    CHECK(info.memory_samples > 0);
    CHECK(info.peak[0][EMBER_TIER_HOST][EMBER_MEM_PARAMETER] >= (13 * 16 + 16 + 16 + 1) * sizeof(float));
    CHECK(info.peak[0][EMBER_TIER_HOST][EMBER_MEM_ACTIVATION] > 0);
    CHECK(s.max_value >= (double)info.peak[0][EMBER_TIER_HOST][EMBER_MEM_ACTIVATION]);
    free(before);
    free(mid);
    ember_graph_destroy(g);

    /* the summary, to a file */
    snprintf(path, sizeof path, "%s/graph.txt", root);
    CHECK_OK(ember_profiler_write_summary(path));
    size_t n = 0;
    char *txt = slurp(path, &n);
    CHECK(txt && strncmp(txt, "ember profile: wall ", 20) == 0);
    CHECK(txt && strstr(txt, "matmul") && strstr(txt, "host_to_device") && strstr(txt, "activation"));
    free(txt);
}

/* Memory of a private manager allocated inside a scope, and the links. */
static void test_memory_and_links(void) {
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(NULL, &mm));
    if (!mm) return;
    ember_profiler_config c = quiet_cfg();
    c.memory[0] = mm;
    c.probes = EMBER_PROFILER_PROBE_MEMCPY | EMBER_PROFILER_PROBE_DISK;
    CHECK_OK(ember_profiler_start(&c));
    void *p = NULL;
    ember_profiler_begin("alloc");
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_PINNED, EMBER_MEM_STAGING, 3u << 20, &p));
    ember_profiler_end();
    ember_profiler_begin("free");
    CHECK_OK(ember_memory_free(mm, p));
    ember_profiler_end();
    double t = ember_profiler_now();
    ember_profiler_transfer(EMBER_PROFILER_LINK_HOST_TO_DEVICE, 1000, t, t + 1e-3);
    ember_profiler_transfer(EMBER_PROFILER_LINK_HOST_TO_DEVICE, 3000, t + 2e-3, t + 3e-3);
    ember_profiler_transfer(EMBER_PROFILER_LINK_DISK_TO_HOST, 0, t, t + 1); /* nothing moved: ignored */
    ember_profiler_transfer(EMBER_PROFILER_LINK_COUNT, 10, t, t + 1);      /* bad link: ignored */
    ember_profiler_set_link_peak(EMBER_PROFILER_LINK_NETWORK, 12.5e9);
    CHECK_OK(ember_profiler_stop());

    ember_profiler_info info;
    CHECK_OK(ember_profiler_get_info(&info));
    CHECK_EQ_INT(info.nmemory, 1);
    CHECK_EQ_INT(info.peak[0][EMBER_TIER_PINNED][EMBER_MEM_STAGING], 3u << 20);
    CHECK_EQ_INT(info.peak_total[0][EMBER_TIER_PINNED], 3u << 20);
    CHECK_EQ_INT(info.peak[0][EMBER_TIER_HOST][EMBER_MEM_STAGING], 0);
    ember_profiler_link_stats h2d, disk, net;
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_HOST_TO_DEVICE, &h2d));
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_DISK_TO_HOST, &disk));
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_NETWORK, &net));
    CHECK_STATUS(ember_profiler_get_link(EMBER_PROFILER_LINK_COUNT, &net), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(h2d.bytes, 4000);
    CHECK_EQ_INT(h2d.transfers, 2);
    CHECK_NEAR(h2d.seconds, 2e-3, 1e-9);
    /* the timestamps are clock readings (t + 1e-3 rounds at t's magnitude), so the rate
       is exact only to about 1e-9 relative */
    CHECK_NEAR(h2d.achieved_bps, 2e6, 2e6 * 1e-6);
    CHECK(h2d.peak_bps > 0); /* the memcpy probe ran */
    CHECK_EQ_INT(disk.transfers, 0);
    CHECK(disk.peak_bps >= 0); /* 0 where $TMPDIR cannot take the probe file */
    CHECK_NEAR(net.peak_bps, 12.5e9, 1);
    CHECK_STR(ember_profiler_link_name(EMBER_PROFILER_LINK_DISK_TO_HOST), "disk_to_host");

    char path[512];
    snprintf(path, sizeof path, "%s/mem.json", root);
    CHECK_OK(ember_profiler_write_trace(path));
    trace_sum s = read_trace(path, "memory pinned", "staging");
    CHECK(s.ok);
    CHECK_NEAR(s.max_value, 3u << 20, 0);
    CHECK_NEAR(s.last_value, 0, 0);
    int k = 0;
    while (k < s.n && strcmp(s.name[k], "host_to_device")) k++;
    CHECK(k < s.n && !strcmp(s.cat[k], "transfer") && s.calls[k] == 2);
    trace_sum l = read_trace(path, "link host_to_device", "bytes");
    CHECK_NEAR(l.last_value, 4000, 0);
    ember_memory_destroy(mm);

    /* bad arguments and paths */
    c.memory_interval_ms = -1;
    CHECK_STATUS(ember_profiler_start(&c), EMBER_ERR_INVALID_ARGUMENT);
    c.memory_interval_ms = 0;
    c.probes = 1u << 7;
    CHECK_STATUS(ember_profiler_start(&c), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(!ember_profiler_enabled());
    const char *bad = "/nonexistent-ember-dir/trace.json";
    CHECK_STATUS(ember_profiler_write_trace(bad), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), bad) != NULL);
    CHECK_STATUS(ember_profiler_write_summary(bad), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), bad) != NULL);
    CHECK_STATUS(ember_profiler_write_trace(NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_profiler_write_trace(root), EMBER_ERR_IO); /* a directory */
    CHECK(strstr(ember_last_error(), root) != NULL);
    if (access("/dev/full", W_OK) == 0) { /* a full disk: the write fails, the device stays */
        CHECK_STATUS(ember_profiler_write_trace("/dev/full"), EMBER_ERR_IO);
        CHECK(strstr(ember_last_error(), "/dev/full") != NULL);
        CHECK_STATUS(ember_profiler_write_summary("/dev/full"), EMBER_ERR_IO);
        CHECK(access("/dev/full", F_OK) == 0);
    }
    CHECK_OK(ember_profiler_reset());
    CHECK_EQ_INT(ember_profiler_op_count(), -1);
}

/* Names that need escaping come out as valid JSON. */
static void test_escaping(void) {
    ember_profiler_config c = quiet_cfg();
    CHECK_OK(ember_profiler_start(&c));
    ember_profiler_begin("quote \" backslash \\ tab \t newline \n");
    ember_profiler_end();
    ember_profiler_begin("bad utf-8 \xff\xc3 and good \xc3\xa9");
    ember_profiler_end();
    ember_profiler_begin_cat("nan arg", "weird");
    ember_profiler_arg("nan", NAN);
    ember_profiler_end();
    CHECK_OK(ember_profiler_stop());
    char path[512];
    snprintf(path, sizeof path, "%s/escape.json", root);
    CHECK_OK(ember_profiler_write_trace(path));
    trace_sum s = read_trace(path, NULL, NULL);
    CHECK(s.ok);
    CHECK_EQ_INT(s.x_events, 3);
}

/* `ember train --profile FILE`: the trace and FILE.txt, and the cache's transfers in
   the link table equal to the cache's own byte counters. */
static void test_trainer(void) {
    const char *dir = getenv("EMBER_TEST_DATA");
    ember_train_config c;
    ember_train_config_defaults(&c);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/data", root);
    snprintf(c.data, sizeof c.data, "%s/criteo_kaggle_head900.tsv", dir ? dir : "tests/data");
    c.scale = 0.001;
    c.emb_dim = 8;
    memcpy(c.bottom, (int64_t[EMBER_DLRM_MAX_LAYERS]){16, 8}, sizeof c.bottom);
    memcpy(c.top, (int64_t[EMBER_DLRM_MAX_LAYERS]){16, 1}, sizeof c.top);
    c.batch = 32;
    c.cache_ratio = 0.05;
    c.threads = 2;
    char trace[512], summary[520];
    snprintf(trace, sizeof trace, "%s/train.json", root);
    snprintf(summary, sizeof summary, "%s.txt", trace);
    CHECK_OK(ember_train_config_set(&c, "profile", trace));
    char text[16384];
    ember_train_config_format(&c, text, sizeof text);
    CHECK(strstr(text, "profile = ") != NULL);

    ember_trainer *t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (!t) return;
    CHECK_OK(ember_trainer_run(t, NULL, NULL));
    ember_train_report r;
    CHECK_OK(ember_trainer_report(t, &r));
    trace_sum s = read_trace(trace, "memory host", "parameter");
    CHECK(s.ok);
    CHECK_EQ_INT(s.bad_times, 0);
    CHECK(s.max_value > 0);
    check_trace_matches_summary(&s);
    CHECK_EQ_INT(find_op("train_step", "scope").calls, r.steps);
    CHECK(find_op("embedding_bag", "forward").calls >= r.steps);
    CHECK(find_op("embedding_bag_update", "backward").calls == r.steps);
    CHECK(r.cached);
    ember_profiler_link_stats h2d, d2h;
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_HOST_TO_DEVICE, &h2d));
    CHECK_OK(ember_profiler_get_link(EMBER_PROFILER_LINK_DEVICE_TO_HOST, &d2h));
    CHECK(h2d.bytes > 0);
    CHECK_EQ_INT(h2d.bytes, r.cache.bytes[EMBER_CACHE_LINK_HOST_TO_DEVICE]);
    CHECK_EQ_INT(d2h.bytes, r.cache.bytes[EMBER_CACHE_LINK_DEVICE_TO_HOST]);
    size_t n = 0;
    char *txt = slurp(summary, &n);
    CHECK(txt && strncmp(txt, "ember profile: wall ", 20) == 0 && strstr(txt, "train_step"));
    free(txt);
    ember_trainer_destroy(t);

    /* a path that cannot be written fails before any step, naming it */
    snprintf(c.profile, sizeof c.profile, "/nonexistent-ember-dir/p.json");
    t = NULL;
    CHECK_OK(ember_trainer_create(&c, NULL, NULL, &t));
    if (!t) return;
    CHECK_STATUS(ember_trainer_run(t, NULL, NULL), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), "/nonexistent-ember-dir/p.json") != NULL);
    CHECK_OK(ember_trainer_report(t, &r));
    CHECK_EQ_INT(r.steps, 0);
    CHECK(!ember_profiler_enabled());
    ember_trainer_destroy(t);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/ember-test-profiler-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_disabled();
    test_nested();
    test_threads();
    test_graph();
    test_memory_and_links();
    test_escaping();
    test_trainer();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return check_summary();
}
