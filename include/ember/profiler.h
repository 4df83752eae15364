/*
 * ember/profiler.h: scoped timing, per-op times, memory over time and bytes moved per
 * link, written as a Chrome trace (opens in ui.perfetto.dev or chrome://tracing) and a
 * summary table (DESIGN.md section 9).
 *
 * One profiler per process. While it runs, ember_profiler_begin / _end mark nested
 * scopes on the calling thread; the graph executor opens one per node it runs (named
 * by the op: "matmul", "relu", "embedding_bag", "interaction_bwd", ...; category
 * "forward" or "backward"); the embedding cache records each block it moves with its
 * bytes and duration (links host_to_device, device_to_host, disk_to_host,
 * host_to_disk); and the watched memory managers' live bytes per tier and kind are
 * sampled at scope boundaries, at most once per memory_interval_ms, and become
 * counter tracks of the trace. While it is stopped, each hook costs one branch on a
 * global flag, so the hooks stay compiled in everywhere.
 *
 *     ember_profiler_start(&(ember_profiler_config){.memory_interval_ms = 1,
 *                                                   .probes = EMBER_PROFILER_PROBE_MEMCPY});
 *     for (int step = 0; step < 10; step++) {
 *         ember_profiler_begin("step");
 *         ember_graph_run(g);                        // one scope per node, nested in "step"
 *         ember_profiler_end();
 *     }
 *     ember_profiler_stop();
 *     ember_profiler_write_trace("trace.json");      // open it in ui.perfetto.dev
 *     ember_profiler_summary(stdout);                // per op, per link, peak memory
 *
 * Times are host wall-clock (CLOCK_MONOTONIC). On CUDA, kernels and copies are
 * asynchronous: without sync_device an op's scope measures the host side of its
 * launch, and a cache transfer the time until the copy was queued (or waited for).
 * With sync_device the executor synchronises the stream before it closes each op's
 * scope, and the cache its copy stream before it closes each upward transfer: device
 * time per op and true link bandwidth, at the cost of the overlap being measured.
 * An op's total is inclusive (a scope nested in another counts in both); "self"
 * excludes the time of its child scopes; "% wall" is total over the time from start
 * to stop.
 *
 * Links. For each link the summary gives bytes, transfers, time, achieved GB/s
 * (bytes / time of its transfers, 1 GB = 1e9 B) and the link's peak, measured once per
 * process at the first start that asks: EMBER_PROFILER_PROBE_MEMCPY times a 64 MiB
 * copy (pinned host to GPU and back when the first watched manager's device is a GPU;
 * otherwise a DRAM memcpy, which is what the host links are in a CPU-only run; about
 * 0.1 s), EMBER_PROFILER_PROBE_DISK writes (with fsync) and reads back a 32 MiB file
 * in $TMPDIR with its pages dropped from the page cache (about 0.1-1 s, by the disk).
 * An unmeasured peak shows as "-"; ember_profiler_set_link_peak supplies one (e.g. the
 * network peak from the communicator's own alpha-beta measurement).
 *
 * Memory. Each sample reads ember_memory_get_stats of every watched manager; the
 * trace holds one counter track per manager and tier ("memory host", args per kind),
 * the summary the peak live bytes seen per tier and kind. Other quantities over time
 * (bytes per tensor state, queue depths) go through ember_profiler_counter. Watched
 * managers must live until stop. The profiler's own buffers are plain heap memory,
 * outside the statistics it reports.
 *
 * Names. Scope names, categories, counter names and arg keys are not copied: they
 * must stay valid until the next start or reset (string literals and op names are).
 * At most max_events events are kept for the trace; later ones are counted as dropped
 * (the summary's totals still include them). Scopes deeper than 64 are not recorded.
 *
 * Thread safety: begin, end, arg, counter, transfer and set_thread_name may be called
 * from any thread at any time (each thread has its own scope stack and event buffer;
 * recording takes only that thread's uncontended lock). start, stop, reset,
 * set_link_peak, write_trace, summary and the queries must not run concurrently with
 * each other. A scope still open at stop is dropped; an end without a begin is ignored.
 */
#ifndef EMBER_PROFILER_H
#define EMBER_PROFILER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ember/memory.h"
#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ember_profiler_link {
    EMBER_PROFILER_LINK_HOST_TO_DEVICE,
    EMBER_PROFILER_LINK_DEVICE_TO_HOST,
    EMBER_PROFILER_LINK_DISK_TO_HOST,
    EMBER_PROFILER_LINK_HOST_TO_DISK,
    EMBER_PROFILER_LINK_NETWORK,
    EMBER_PROFILER_LINK_COUNT
} ember_profiler_link;

/** Link peaks measured at start (bits of ember_profiler_config.probes). */
enum {
    EMBER_PROFILER_PROBE_MEMCPY = 1u << 0, /* host_to_device, device_to_host */
    EMBER_PROFILER_PROBE_DISK = 1u << 1    /* disk_to_host, host_to_disk */
};

#define EMBER_PROFILER_MAX_MEMORY 4
#define EMBER_PROFILER_DEFAULT_MAX_EVENTS ((size_t)1 << 20)

typedef struct ember_profiler_config {
    /* Managers to sample; none given: ember_memory_default(). */
    ember_memory *memory[EMBER_PROFILER_MAX_MEMORY];
    double memory_interval_ms; /* least time between memory samples; 0: every scope boundary */
    unsigned probes;           /* EMBER_PROFILER_PROBE_* bits */
    int sync_device;           /* CUDA: synchronise before closing op scopes and transfers */
    size_t max_events;         /* events kept for the trace; 0: EMBER_PROFILER_DEFAULT_MAX_EVENTS */
} ember_profiler_config;

/**
 * Clear what an earlier run recorded and start recording.
 * @param[in] cfg NULL for: the default manager, samples every 1 ms, the memcpy probe.
 * @return EMBER_OK; EMBER_ERR_STATE (already running); EMBER_ERR_INVALID_ARGUMENT
 *         (negative interval, probe bits unknown).
 */
ember_status ember_profiler_start(const ember_profiler_config *cfg);
/** Stop recording (a last memory sample is taken). @return EMBER_OK; EMBER_ERR_STATE (not running). */
ember_status ember_profiler_stop(void);
/** Free everything recorded. @return EMBER_OK; EMBER_ERR_STATE (running). */
ember_status ember_profiler_reset(void);
/** Non-zero while running. */
int ember_profiler_enabled(void);
/** Non-zero while running with sync_device (for hooks around asynchronous work). */
int ember_profiler_sync_device(void);

/** Open a scope named name (category "scope") on this thread. */
void ember_profiler_begin(const char *name);
/** Open a scope with a category ("forward", "backward", ... ; NULL: "scope"). */
void ember_profiler_begin_cat(const char *name, const char *cat);
/** Attach a numeric argument to this thread's innermost open scope (up to 4; more are ignored). */
void ember_profiler_arg(const char *key, double value);
/** Close this thread's innermost open scope. */
void ember_profiler_end(void);
/** A counter track sample: name's value for key is value from now on ("ph":"C"). */
void ember_profiler_counter(const char *name, const char *key, double value);
/** The profiler's clock in seconds (monotonic), for ember_profiler_transfer's times. */
double ember_profiler_now(void);
/** Record bytes moved over a link between times t0 and t1 (ember_profiler_now). */
void ember_profiler_transfer(ember_profiler_link link, uint64_t bytes, double t0, double t1);
/** Name this thread in the trace (copied, at most 63 bytes). Default "thread N"; the
    thread that starts the profiler is "main" unless named. */
void ember_profiler_set_thread_name(const char *name);
/** Set a link's peak in bytes/s (0: unmeasured), replacing a measured one. */
void ember_profiler_set_link_peak(ember_profiler_link link, double bytes_per_s);

/**
 * Write the Chrome trace JSON of the last run (after stop): "traceEvents" with "X"
 * events (ts and dur in microseconds from start, pid, tid, cat, name, args), "C"
 * counter events (memory per manager and tier, bytes per link, user counters) and
 * thread names; "otherData" holds the link peaks and the dropped-event count.
 * @return EMBER_OK; EMBER_ERR_STATE (running, or never run); EMBER_ERR_IO (cannot
 *         create or write path: the message names it; a partial file is removed);
 *         EMBER_ERR_INVALID_ARGUMENT (NULL path).
 */
ember_status ember_profiler_write_trace(const char *path);
/**
 * The summary as text: scopes sorted by total time (name, category, calls, total ms,
 * self ms, mean us, % wall), then per link bytes, time, achieved and peak GB/s, then
 * the peak live memory per manager, tier and kind.
 * @return EMBER_OK; EMBER_ERR_STATE (running, or never run); EMBER_ERR_INVALID_ARGUMENT.
 */
ember_status ember_profiler_summary(FILE *f);
/** The summary into a file. @return as ember_profiler_summary; EMBER_ERR_IO naming path. */
ember_status ember_profiler_write_summary(const char *path);

/* ---- the summary as data (after stop; EMBER_ERR_STATE while running or before any run) ---- */

typedef struct ember_profiler_op {
    const char *name, *cat;  /* valid until the next start or reset */
    int64_t calls;
    double total_s, self_s, min_s, max_s;
} ember_profiler_op;

typedef struct ember_profiler_link_stats {
    uint64_t bytes;
    int64_t transfers;
    double seconds;      /* summed durations of its transfers */
    double achieved_bps; /* bytes / seconds; 0 when no time */
    double peak_bps;     /* measured or set; 0: unmeasured */
} ember_profiler_link_stats;

typedef struct ember_profiler_info {
    double wall_s;            /* start to stop */
    int threads;              /* that recorded anything */
    int64_t events, dropped;  /* kept for the trace, and dropped over max_events */
    int64_t memory_samples;
    int nmemory;              /* managers watched */
    size_t peak[EMBER_PROFILER_MAX_MEMORY][EMBER_TIER_COUNT][EMBER_MEM_KIND_COUNT];
    size_t peak_total[EMBER_PROFILER_MAX_MEMORY][EMBER_TIER_COUNT]; /* of the tier's sum */
} ember_profiler_info;

ember_status ember_profiler_get_info(ember_profiler_info *out);
/** Scopes (by name and category) of the last run; -1 while running or before any run. */
int ember_profiler_op_count(void);
/** The i-th by total time, largest first. @return EMBER_OK, EMBER_ERR_STATE, EMBER_ERR_INDEX. */
ember_status ember_profiler_get_op(int i, ember_profiler_op *out);
/** @return EMBER_OK, EMBER_ERR_STATE, EMBER_ERR_INVALID_ARGUMENT (bad link or NULL). */
ember_status ember_profiler_get_link(ember_profiler_link link, ember_profiler_link_stats *out);

const char *ember_profiler_link_name(ember_profiler_link link); /* "host_to_device", ... */

#ifdef __cplusplus
}
#endif
#endif /* EMBER_PROFILER_H */
