/*
 * The profiler: per-thread scope stacks and event buffers, memory samples, link
 * totals, the Chrome trace writer and the summary.
 *
 * The hooks sit in the executor's inner loop and in the cache worker, so the design
 * is about what they cost. Stopped: one relaxed load of a global flag. Running: a
 * scope's begin touches only its thread's stack (thread-local, no lock); its end
 * appends one event and updates an aggregate keyed by the name's pointer under the
 * thread's own mutex, which only stop and start ever contend for. The flag is checked
 * again under that mutex, so after stop has cleared it no event can slip into a
 * buffer that stop has already merged: the trace and the summary always agree.
 * Aggregates are kept beside the events, so when the trace is capped at max_events
 * the summary still counts everything.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/internal.h"
#include "ember/profiler.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

#define MAX_DEPTH 64
#define MAX_ARGS 4

enum { EV_SCOPE, EV_TRANSFER, EV_COUNTER };

typedef struct pevent {
    const char *name, *cat; /* transfers: link name, "transfer"; counters: name, NULL */
    double t0, dur;         /* seconds on ember__now's clock */
    const char *akey[MAX_ARGS];
    double aval[MAX_ARGS];
    unsigned char kind, nargs, link;
    uint64_t bytes; /* transfers */
} pevent;

typedef struct frame {
    const char *name, *cat;
    double t0, child; /* child: time of the scopes closed inside it */
    int nargs;
    const char *akey[MAX_ARGS];
    double aval[MAX_ARGS];
} frame;

typedef struct agg {
    const char *name, *cat; /* NULL name: empty entry */
    int64_t calls;
    double total, self, min, max;
} agg;

typedef struct tbuf {
    pthread_mutex_t mu; /* guards everything below except the scope stack */
    struct tbuf *next;
    int tid, orphan;
    char tname[64];
    /* scope stack: touched by its own thread only */
    unsigned session;
    frame stack[MAX_DEPTH];
    int depth, lost; /* lost: scopes opened beyond MAX_DEPTH and not yet closed */
    /* recorded */
    pevent *ev;
    size_t n, cap;
    agg *ag;
    size_t ag_n, ag_cap;
    uint64_t lbytes[EMBER_PROFILER_LINK_COUNT];
    int64_t lcount[EMBER_PROFILER_LINK_COUNT];
    double lsec[EMBER_PROFILER_LINK_COUNT];
    int64_t dropped;
    int used;
} tbuf;

typedef struct msample {
    double t;
    int m;
    size_t live[EMBER_TIER_COUNT][EMBER_MEM_KIND_COUNT];
} msample;

/* ---- global state ---- */

enum { ST_EMPTY, ST_RUNNING, ST_STOPPED };

static int g_on;            /* read by every hook (atomic) */
static unsigned g_session;  /* atomic; bumped by each start */
static int g_sync;
static int g_state;
static double g_interval, g_t0, g_t1;
static size_t g_max_events;
static int64_t g_kept; /* atomic: events kept over all threads */

static pthread_mutex_t g_list_mu = PTHREAD_MUTEX_INITIALIZER;
static tbuf *g_threads;
static int g_next_tid;
static pthread_key_t g_key;
static int g_key_ok; /* without the key, buffers of exited threads stay until exit */
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static _Thread_local tbuf *tls;

static ember_memory *g_mm[EMBER_PROFILER_MAX_MEMORY];
static int g_nmm;
static pthread_mutex_t g_samp_mu = PTHREAD_MUTEX_INITIALIZER;
static double g_last_sample;
static msample *g_samples;
static size_t g_nsamples, g_capsamples;
static int64_t g_samples_taken, g_samples_dropped;
static size_t g_mpeak[EMBER_PROFILER_MAX_MEMORY][EMBER_TIER_COUNT][EMBER_MEM_KIND_COUNT];
static size_t g_mpeak_total[EMBER_PROFILER_MAX_MEMORY][EMBER_TIER_COUNT];
static size_t g_mlast[EMBER_PROFILER_MAX_MEMORY][EMBER_TIER_COUNT][EMBER_MEM_KIND_COUNT];
static int g_mhave[EMBER_PROFILER_MAX_MEMORY];

/* link peaks: measured (cached per process) and set by the user */
static double g_probe_bps[EMBER_PROFILER_LINK_COUNT];
static int g_probed_memcpy = -1; /* device type the memcpy probe ran on; -1: never */
static int g_probed_disk;
static double g_user_bps[EMBER_PROFILER_LINK_COUNT];
static int g_user_set[EMBER_PROFILER_LINK_COUNT];

/* the last run's merged results */
static ember_profiler_op *g_ops;
static int g_nops;
static ember_profiler_link_stats g_links[EMBER_PROFILER_LINK_COUNT];
static ember_profiler_info g_info;

static const char *const link_names[EMBER_PROFILER_LINK_COUNT] = {
    "host_to_device", "device_to_host", "disk_to_host", "host_to_disk", "network"};

const char *ember_profiler_link_name(ember_profiler_link link) {
    return (unsigned)link < EMBER_PROFILER_LINK_COUNT ? link_names[link] : "invalid-link";
}

/* acquire: a hook that sees the flag set also sees the run's settings */
static int on(void) { return __atomic_load_n(&g_on, __ATOMIC_ACQUIRE); }
static unsigned session(void) { return __atomic_load_n(&g_session, __ATOMIC_ACQUIRE); }

int ember_profiler_enabled(void) { return on(); }
int ember_profiler_sync_device(void) { return on() && g_sync; }
double ember_profiler_now(void) { return ember__now(); }

/* ---- per-thread buffers ---- */

/* A thread that exits leaves its events behind: the buffer stays in the list, marked,
   and the next start or reset frees it. One that recorded nothing (a named worker of
   an unprofiled run) is freed now, so short-lived threads do not pile up. */
static void thread_exit(void *p) {
    tbuf *tb = p;
    tls = NULL;
    pthread_mutex_lock(&g_list_mu);
    pthread_mutex_lock(&tb->mu);
    int keep = tb->used || tb->n || tb->ag_n;
    tb->orphan = 1;
    pthread_mutex_unlock(&tb->mu);
    if (!keep) {
        for (tbuf **pp = &g_threads; *pp; pp = &(*pp)->next)
            if (*pp == tb) {
                *pp = tb->next;
                break;
            }
        pthread_mutex_destroy(&tb->mu);
        free(tb);
    }
    pthread_mutex_unlock(&g_list_mu);
}

static void key_init(void) { g_key_ok = pthread_key_create(&g_key, thread_exit) == 0; }

static tbuf *get_tbuf(void) {
    if (tls) return tls;
    pthread_once(&g_key_once, key_init);
    tbuf *tb = calloc(1, sizeof *tb);
    if (!tb) return NULL;
    pthread_mutex_init(&tb->mu, NULL);
    pthread_mutex_lock(&g_list_mu);
    tb->tid = ++g_next_tid;
    tb->next = g_threads;
    g_threads = tb;
    pthread_mutex_unlock(&g_list_mu);
    if (g_key_ok) (void)pthread_setspecific(g_key, tb);
    tls = tb;
    return tb;
}

/* Caller holds tb->mu. */
static void tbuf_clear(tbuf *tb) {
    free(tb->ev);
    free(tb->ag);
    tb->ev = NULL;
    tb->ag = NULL;
    tb->n = tb->cap = tb->ag_n = tb->ag_cap = 0;
    memset(tb->lbytes, 0, sizeof tb->lbytes);
    memset(tb->lcount, 0, sizeof tb->lcount);
    memset(tb->lsec, 0, sizeof tb->lsec);
    tb->dropped = 0;
    tb->used = 0;
}

/* Free every recorded event and sample (not running). */
static void clear_all(void) {
    pthread_mutex_lock(&g_list_mu);
    for (tbuf **pp = &g_threads; *pp;) {
        tbuf *tb = *pp;
        pthread_mutex_lock(&tb->mu);
        tbuf_clear(tb);
        int dead = tb->orphan;
        pthread_mutex_unlock(&tb->mu);
        if (dead) {
            *pp = tb->next;
            pthread_mutex_destroy(&tb->mu);
            free(tb);
        } else {
            pp = &tb->next;
        }
    }
    pthread_mutex_unlock(&g_list_mu);
    pthread_mutex_lock(&g_samp_mu);
    free(g_samples);
    g_samples = NULL;
    g_nsamples = g_capsamples = 0;
    g_samples_taken = g_samples_dropped = 0;
    memset(g_mpeak, 0, sizeof g_mpeak);
    memset(g_mpeak_total, 0, sizeof g_mpeak_total);
    memset(g_mhave, 0, sizeof g_mhave);
    pthread_mutex_unlock(&g_samp_mu);
    free(g_ops);
    g_ops = NULL;
    g_nops = 0;
    memset(g_links, 0, sizeof g_links);
    memset(&g_info, 0, sizeof g_info);
    __atomic_store_n(&g_kept, 0, __ATOMIC_RELAXED);
}

/* Room for one more event in tb (holding tb->mu), or NULL: over max_events or out of memory. */
static pevent *new_event(tbuf *tb) {
    if (__atomic_add_fetch(&g_kept, 1, __ATOMIC_RELAXED) > (int64_t)g_max_events) {
        __atomic_sub_fetch(&g_kept, 1, __ATOMIC_RELAXED);
        tb->dropped++;
        return NULL;
    }
    if (tb->n == tb->cap) {
        size_t ncap = tb->cap ? tb->cap * 2 : 1024;
        pevent *ne = realloc(tb->ev, ncap * sizeof *ne);
        if (!ne) {
            __atomic_sub_fetch(&g_kept, 1, __ATOMIC_RELAXED);
            tb->dropped++;
            return NULL;
        }
        tb->ev = ne;
        tb->cap = ncap;
    }
    pevent *e = &tb->ev[tb->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static size_t hash2(const void *a, const void *b) {
    uint64_t x = (uint64_t)(uintptr_t)a * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)b;
    x ^= x >> 31;
    x *= 0xff51afd7ed558ccdull;
    return (size_t)(x ^ (x >> 33));
}

/* The aggregate of (name, cat) by pointer, created if new (holding tb->mu); NULL if out of memory. */
static agg *agg_get(tbuf *tb, const char *name, const char *cat) {
    if ((tb->ag_n + 1) * 2 > tb->ag_cap) {
        size_t ncap = tb->ag_cap ? tb->ag_cap * 2 : 64;
        agg *na = calloc(ncap, sizeof *na);
        if (!na) return NULL;
        for (size_t i = 0; i < tb->ag_cap; i++) {
            if (!tb->ag[i].name) continue;
            size_t j = hash2(tb->ag[i].name, tb->ag[i].cat) & (ncap - 1);
            while (na[j].name) j = (j + 1) & (ncap - 1);
            na[j] = tb->ag[i];
        }
        free(tb->ag);
        tb->ag = na;
        tb->ag_cap = ncap;
    }
    size_t mask = tb->ag_cap - 1;
    for (size_t i = hash2(name, cat) & mask;; i = (i + 1) & mask) {
        agg *a = &tb->ag[i];
        if (a->name == name && a->cat == cat) return a;
        if (!a->name) {
            *a = (agg){.name = name, .cat = cat, .min = INFINITY};
            tb->ag_n++;
            return a;
        }
    }
}

/* ---- memory samples ---- */

/* Holding g_samp_mu. */
static void sample_locked(double now) {
    g_last_sample = now;
    for (int m = 0; m < g_nmm; m++) {
        ember_memory_stats st;
        ember_memory_get_stats(g_mm[m], &st);
        g_samples_taken++;
        for (int t = 0; t < EMBER_TIER_COUNT; t++) {
            size_t sum = 0;
            for (int k = 0; k < EMBER_MEM_KIND_COUNT; k++) {
                if (st.live[t][k] > g_mpeak[m][t][k]) g_mpeak[m][t][k] = st.live[t][k];
                sum += st.live[t][k];
            }
            if (sum > g_mpeak_total[m][t]) g_mpeak_total[m][t] = sum;
        }
        /* a counter holds its value until the next event: store changes only */
        if (g_mhave[m] && memcmp(g_mlast[m], st.live, sizeof st.live) == 0) continue;
        if (g_nsamples == g_capsamples) {
            size_t ncap = g_capsamples ? g_capsamples * 2 : 256;
            msample *ns = ncap <= g_max_events ? realloc(g_samples, ncap * sizeof *ns) : NULL;
            if (!ns) {
                g_samples_dropped++;
                continue;
            }
            g_samples = ns;
            g_capsamples = ncap;
        }
        msample *s = &g_samples[g_nsamples++];
        s->t = now;
        s->m = m;
        memcpy(s->live, st.live, sizeof s->live);
        memcpy(g_mlast[m], st.live, sizeof st.live);
        g_mhave[m] = 1;
    }
}

static void maybe_sample(double now) {
    if (pthread_mutex_trylock(&g_samp_mu) != 0) return; /* another thread is sampling now */
    if (on() && now - g_last_sample >= g_interval) sample_locked(now);
    pthread_mutex_unlock(&g_samp_mu);
}

/* ---- hooks ---- */

/* This thread's buffer with its stack belonging to the current run. */
static tbuf *cur_tbuf(void) {
    tbuf *tb = get_tbuf();
    if (!tb) return NULL;
    unsigned s = session();
    if (tb->session != s) {
        tb->session = s;
        tb->depth = tb->lost = 0;
    }
    return tb;
}

void ember_profiler_begin_cat(const char *name, const char *cat) {
    if (!on()) return;
    tbuf *tb = cur_tbuf();
    if (!tb) return;
    if (tb->depth >= MAX_DEPTH) {
        tb->lost++;
        return;
    }
    maybe_sample(ember__now());
    frame *f = &tb->stack[tb->depth++];
    f->name = name ? name : "(null)";
    f->cat = cat ? cat : "scope";
    f->child = 0;
    f->nargs = 0;
    f->t0 = ember__now();
}

void ember_profiler_begin(const char *name) { ember_profiler_begin_cat(name, NULL); }

void ember_profiler_arg(const char *key, double value) {
    if (!on()) return;
    tbuf *tb = tls;
    if (!tb || tb->session != session() || tb->lost || tb->depth == 0) return;
    frame *f = &tb->stack[tb->depth - 1];
    if (f->nargs < MAX_ARGS && key) {
        f->akey[f->nargs] = key;
        f->aval[f->nargs] = value;
        f->nargs++;
    }
}

void ember_profiler_end(void) {
    if (!on()) return;
    double now = ember__now();
    tbuf *tb = tls;
    if (!tb) return;
    unsigned s = session();
    if (tb->session != s) { /* opened in an earlier run */
        tb->session = s;
        tb->depth = tb->lost = 0;
        return;
    }
    if (tb->lost) {
        tb->lost--;
        return;
    }
    if (tb->depth == 0) return;
    frame *f = &tb->stack[--tb->depth];
    double dur = now - f->t0;
    if (dur < 0) dur = 0;
    if (tb->depth > 0) tb->stack[tb->depth - 1].child += dur;
    double self = dur - f->child;
    pthread_mutex_lock(&tb->mu);
    if (on() && session() == s) {
        tb->used = 1;
        agg *a = agg_get(tb, f->name, f->cat);
        if (a) {
            a->calls++;
            a->total += dur;
            a->self += self > 0 ? self : 0;
            if (dur < a->min) a->min = dur;
            if (dur > a->max) a->max = dur;
        }
        pevent *e = new_event(tb);
        if (e) {
            e->kind = EV_SCOPE;
            e->name = f->name;
            e->cat = f->cat;
            e->t0 = f->t0;
            e->dur = dur;
            e->nargs = (unsigned char)f->nargs;
            memcpy(e->akey, f->akey, sizeof e->akey);
            memcpy(e->aval, f->aval, sizeof e->aval);
        }
    }
    pthread_mutex_unlock(&tb->mu);
    maybe_sample(now);
}

void ember_profiler_counter(const char *name, const char *key, double value) {
    if (!on() || !name || !key) return;
    double now = ember__now();
    tbuf *tb = cur_tbuf();
    if (!tb) return;
    unsigned s = tb->session;
    pthread_mutex_lock(&tb->mu);
    if (on() && session() == s) {
        tb->used = 1;
        pevent *e = new_event(tb);
        if (e) {
            e->kind = EV_COUNTER;
            e->name = name;
            e->t0 = now;
            e->nargs = 1;
            e->akey[0] = key;
            e->aval[0] = value;
        }
    }
    pthread_mutex_unlock(&tb->mu);
}

void ember_profiler_transfer(ember_profiler_link link, uint64_t bytes, double t0, double t1) {
    if (!on() || (unsigned)link >= EMBER_PROFILER_LINK_COUNT || bytes == 0) return;
    tbuf *tb = cur_tbuf();
    if (!tb) return;
    unsigned s = tb->session;
    double dur = t1 > t0 ? t1 - t0 : 0;
    pthread_mutex_lock(&tb->mu);
    if (on() && session() == s) {
        tb->used = 1;
        tb->lbytes[link] += bytes;
        tb->lcount[link]++;
        tb->lsec[link] += dur;
        pevent *e = new_event(tb);
        if (e) {
            e->kind = EV_TRANSFER;
            e->name = link_names[link];
            e->cat = "transfer";
            e->t0 = t0;
            e->dur = dur;
            e->link = (unsigned char)link;
            e->bytes = bytes;
        }
    }
    pthread_mutex_unlock(&tb->mu);
}

void ember_profiler_set_thread_name(const char *name) {
    tbuf *tb = get_tbuf();
    if (!tb || !name) return;
    pthread_mutex_lock(&tb->mu);
    snprintf(tb->tname, sizeof tb->tname, "%s", name);
    pthread_mutex_unlock(&tb->mu);
}

void ember_profiler_set_link_peak(ember_profiler_link link, double bytes_per_s) {
    if ((unsigned)link >= EMBER_PROFILER_LINK_COUNT) return;
    g_user_bps[link] = bytes_per_s > 0 ? bytes_per_s : 0;
    g_user_set[link] = 1;
}

/* ---- link peaks ---- */

#define PROBE_BYTES ((size_t)64 << 20)

/* Best of three copies of 64 MiB: the source and destination are touched first so
   page faults are not timed. Plain heap memory, not the manager's: the probe must not
   show in the statistics the run reports. */
static void probe_memcpy_host(void) {
    char *a = malloc(PROBE_BYTES), *b = malloc(PROBE_BYTES);
    double best = INFINITY;
    if (a && b) {
        memset(a, 1, PROBE_BYTES);
        memset(b, 0, PROBE_BYTES);
        for (int r = 0; r < 3; r++) {
            double t = ember__now();
            memcpy(b, a, PROBE_BYTES);
            __asm__ volatile("" : : "r"(b) : "memory"); /* the copy is used */
            t = ember__now() - t;
            if (t < best) best = t;
        }
    }
    free(a);
    free(b);
    double bps = isfinite(best) && best > 0 ? (double)PROBE_BYTES / best : 0;
    g_probe_bps[EMBER_PROFILER_LINK_HOST_TO_DEVICE] = bps;
    g_probe_bps[EMBER_PROFILER_LINK_DEVICE_TO_HOST] = bps;
}

#ifdef EMBER_HAVE_CUDA
/* Pinned host memory to the GPU and back, synchronous copies, best of three each. */
static void probe_memcpy_cuda(int dev) {
    void *h = NULL, *d = NULL;
    double best[2] = {INFINITY, INFINITY};
    if (ember__cuda_host_alloc(PROBE_BYTES, &h) == EMBER_OK && ember__cuda_malloc(dev, PROBE_BYTES, &d) == EMBER_OK) {
        memset(h, 1, PROBE_BYTES);
        int ok = ember__cuda_memcpy(dev, d, h, PROBE_BYTES, EMBER__H2D, 1) == EMBER_OK; /* warm-up */
        for (int r = 0; r < 3 && ok; r++)
            for (int dir = 0; dir < 2 && ok; dir++) {
                double t = ember__now();
                ok = dir == 0 ? ember__cuda_memcpy(dev, d, h, PROBE_BYTES, EMBER__H2D, 1) == EMBER_OK
                              : ember__cuda_memcpy(dev, h, d, PROBE_BYTES, EMBER__D2H, 1) == EMBER_OK;
                t = ember__now() - t;
                if (ok && t < best[dir]) best[dir] = t;
            }
    }
    if (d) (void)ember__cuda_free(dev, d);
    if (h) (void)ember__cuda_host_free(h);
    for (int dir = 0; dir < 2; dir++)
        g_probe_bps[dir == 0 ? EMBER_PROFILER_LINK_HOST_TO_DEVICE : EMBER_PROFILER_LINK_DEVICE_TO_HOST] =
            isfinite(best[dir]) && best[dir] > 0 ? (double)PROBE_BYTES / best[dir] : 0;
}
#endif

#define DISK_PROBE_BYTES ((size_t)32 << 20)
#define DISK_CHUNK ((size_t)1 << 20)

/* Sequential write with fdatasync, then a read with the file's pages dropped from the
   page cache (on tmpfs they cannot be, and the figure is memory speed). */
static void probe_disk(void) {
    const char *dir = getenv("TMPDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/ember-profile-probe-XXXXXX", dir && *dir ? dir : "/tmp");
    char *buf = malloc(DISK_CHUNK);
    int fd = buf ? mkstemp(path) : -1;
    double wsec = 0, rsec = 0;
    int ok = fd >= 0;
    if (ok) {
        uint64_t x = 0x9E3779B97F4A7C15ull; /* incompressible, for file systems that compress */
        for (size_t i = 0; i + 8 <= DISK_CHUNK; i += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(buf + i, &x, 8);
        }
        double t = ember__now();
        for (size_t off = 0; off < DISK_PROBE_BYTES && ok; off += DISK_CHUNK)
            ok = write(fd, buf, DISK_CHUNK) == (ssize_t)DISK_CHUNK;
        ok = ok && fdatasync(fd) == 0;
        wsec = ember__now() - t;
#ifdef POSIX_FADV_DONTNEED
        if (ok) (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
        ok = ok && lseek(fd, 0, SEEK_SET) == 0;
        t = ember__now();
        for (size_t off = 0; off < DISK_PROBE_BYTES && ok; off += DISK_CHUNK)
            ok = read(fd, buf, DISK_CHUNK) == (ssize_t)DISK_CHUNK;
        rsec = ember__now() - t;
    }
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    free(buf);
    if (!ok) {
        ember_log(EMBER_LOG_DEBUG, "profiler: disk probe in %s failed; disk peaks unmeasured", path);
        return;
    }
    g_probe_bps[EMBER_PROFILER_LINK_HOST_TO_DISK] = wsec > 0 ? (double)DISK_PROBE_BYTES / wsec : 0;
    g_probe_bps[EMBER_PROFILER_LINK_DISK_TO_HOST] = rsec > 0 ? (double)DISK_PROBE_BYTES / rsec : 0;
    g_probed_disk = 1;
}

static void run_probes(unsigned probes) {
    if (probes & EMBER_PROFILER_PROBE_MEMCPY) {
        ember_device dev = ember_memory_device(g_mm[0]);
        int kind = dev.type == EMBER_DEVICE_CUDA ? 1000 + dev.index : 0;
        if (g_probed_memcpy != kind) {
#ifdef EMBER_HAVE_CUDA
            if (dev.type == EMBER_DEVICE_CUDA) probe_memcpy_cuda(dev.index);
            else
#endif
                probe_memcpy_host();
            g_probed_memcpy = kind;
        }
    }
    if ((probes & EMBER_PROFILER_PROBE_DISK) && !g_probed_disk) probe_disk();
}

static double peak_bps(int l) { return g_user_set[l] ? g_user_bps[l] : g_probe_bps[l]; }

/* ---- start / stop ---- */

ember_status ember_profiler_start(const ember_profiler_config *cfg) {
    static const char fn[] = "ember_profiler_start";
    if (g_state == ST_RUNNING) return ember__error(EMBER_ERR_STATE, "%s: the profiler is already running", fn);
    ember_profiler_config c = cfg ? *cfg
                                  : (ember_profiler_config){.memory_interval_ms = 1,
                                                            .probes = EMBER_PROFILER_PROBE_MEMCPY};
    if (!(c.memory_interval_ms >= 0) || !isfinite(c.memory_interval_ms))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: memory_interval_ms %g is not a time >= 0", fn,
                            c.memory_interval_ms);
    if (c.probes & ~(unsigned)(EMBER_PROFILER_PROBE_MEMCPY | EMBER_PROFILER_PROBE_DISK))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: unknown probe bits 0x%x", fn, c.probes);
    clear_all();
    g_nmm = 0;
    for (int m = 0; m < EMBER_PROFILER_MAX_MEMORY; m++)
        if (c.memory[m]) g_mm[g_nmm++] = c.memory[m];
    if (g_nmm == 0) g_mm[g_nmm++] = ember_memory_default();
    g_interval = c.memory_interval_ms * 1e-3;
    g_max_events = c.max_events ? c.max_events : EMBER_PROFILER_DEFAULT_MAX_EVENTS;
    g_sync = c.sync_device != 0;
    run_probes(c.probes);
    tbuf *me = get_tbuf();
    if (me) {
        pthread_mutex_lock(&me->mu);
        if (!me->tname[0]) snprintf(me->tname, sizeof me->tname, "main");
        pthread_mutex_unlock(&me->mu);
    }
    g_t0 = ember__now();
    pthread_mutex_lock(&g_samp_mu);
    sample_locked(g_t0);
    pthread_mutex_unlock(&g_samp_mu);
    __atomic_add_fetch(&g_session, 1, __ATOMIC_RELEASE);
    g_state = ST_RUNNING;
    __atomic_store_n(&g_on, 1, __ATOMIC_SEQ_CST); /* last: publishes the settings above */
    return EMBER_OK;
}

static int op_cmp(const void *pa, const void *pb) {
    const ember_profiler_op *a = pa, *b = pb;
    if (a->total_s != b->total_s) return a->total_s < b->total_s ? 1 : -1;
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->cat, b->cat);
}

/* Merge the threads' aggregates (same text under different pointers is one row). */
static void merge(void) {
    int cap = 0;
    pthread_mutex_lock(&g_list_mu);
    for (tbuf *tb = g_threads; tb; tb = tb->next) {
        pthread_mutex_lock(&tb->mu);
        if (tb->used) g_info.threads++;
        g_info.events += (int64_t)tb->n;
        g_info.dropped += tb->dropped;
        for (int l = 0; l < EMBER_PROFILER_LINK_COUNT; l++) {
            g_links[l].bytes += tb->lbytes[l];
            g_links[l].transfers += tb->lcount[l];
            g_links[l].seconds += tb->lsec[l];
        }
        for (size_t i = 0; i < tb->ag_cap; i++) {
            const agg *a = &tb->ag[i];
            if (!a->name) continue;
            int j = 0;
            while (j < g_nops && !(strcmp(g_ops[j].name, a->name) == 0 && strcmp(g_ops[j].cat, a->cat) == 0)) j++;
            if (j == g_nops) {
                if (g_nops == cap) {
                    int ncap = cap ? cap * 2 : 64;
                    ember_profiler_op *no = realloc(g_ops, (size_t)ncap * sizeof *no);
                    if (!no) continue; /* the row is missing from the summary; nothing else breaks */
                    g_ops = no;
                    cap = ncap;
                }
                g_ops[g_nops++] = (ember_profiler_op){.name = a->name, .cat = a->cat, .min_s = INFINITY};
            }
            ember_profiler_op *o = &g_ops[j];
            o->calls += a->calls;
            o->total_s += a->total;
            o->self_s += a->self;
            if (a->min < o->min_s) o->min_s = a->min;
            if (a->max > o->max_s) o->max_s = a->max;
        }
        pthread_mutex_unlock(&tb->mu);
    }
    pthread_mutex_unlock(&g_list_mu);
    if (g_nops) qsort(g_ops, (size_t)g_nops, sizeof *g_ops, op_cmp);
    for (int l = 0; l < EMBER_PROFILER_LINK_COUNT; l++) {
        g_links[l].achieved_bps = g_links[l].seconds > 0 ? (double)g_links[l].bytes / g_links[l].seconds : 0;
        g_links[l].peak_bps = peak_bps(l);
    }
    g_info.wall_s = g_t1 - g_t0;
    g_info.memory_samples = g_samples_taken;
    g_info.dropped += g_samples_dropped;
    g_info.nmemory = g_nmm;
    memcpy(g_info.peak, g_mpeak, sizeof g_info.peak);
    memcpy(g_info.peak_total, g_mpeak_total, sizeof g_info.peak_total);
}

ember_status ember_profiler_stop(void) {
    if (g_state != ST_RUNNING) return ember__error(EMBER_ERR_STATE, "ember_profiler_stop: the profiler is not running");
    __atomic_store_n(&g_on, 0, __ATOMIC_SEQ_CST);
    g_t1 = ember__now();
    pthread_mutex_lock(&g_samp_mu);
    sample_locked(g_t1);
    pthread_mutex_unlock(&g_samp_mu);
    merge();
    g_state = ST_STOPPED;
    return EMBER_OK;
}

ember_status ember_profiler_reset(void) {
    if (g_state == ST_RUNNING)
        return ember__error(EMBER_ERR_STATE, "ember_profiler_reset: stop the profiler first");
    clear_all();
    g_state = ST_EMPTY;
    return EMBER_OK;
}

static ember_status need_results(const char *fn) {
    if (g_state == ST_RUNNING) return ember__error(EMBER_ERR_STATE, "%s: stop the profiler first", fn);
    if (g_state == ST_EMPTY) return ember__error(EMBER_ERR_STATE, "%s: nothing recorded (start and stop the profiler first)", fn);
    return EMBER_OK;
}

/* ---- the trace ---- */

/* A JSON string; bytes that are not well-formed UTF-8 become U+FFFD. */
static void put_str(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
            p++;
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc((int)c, f);
            p++;
        } else {
            /* RFC 3629: lead byte, then the allowed range of the second byte */
            int n = 0;
            unsigned lo = 0x80, hi = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) n = 1;
            else if (c >= 0xE0 && c <= 0xEF) {
                n = 2;
                if (c == 0xE0) lo = 0xA0;
                if (c == 0xED) hi = 0x9F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                n = 3;
                if (c == 0xF0) lo = 0x90;
                if (c == 0xF4) hi = 0x8F;
            }
            int ok = n > 0 && p[1] >= lo && p[1] <= hi;
            for (int i = 2; ok && i <= n; i++) ok = p[i] >= 0x80 && p[i] <= 0xBF;
            if (ok) {
                fwrite(p, 1, (size_t)n + 1, f);
                p += n + 1;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

static void put_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
    else fputs("null", f);
}

static double us(double t) { return t > 0 ? t * 1e6 : 0; }

/* Remove what a failed write left, but only a regular file: the path may be a device
   or a pipe (/dev/full, /dev/stdout) that must stay. */
static void remove_partial(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) remove(path);
}

typedef struct xfer {
    double t;
    int link;
    uint64_t bytes;
} xfer;

static int xfer_cmp(const void *pa, const void *pb) {
    const xfer *a = pa, *b = pb;
    return a->t < b->t ? -1 : a->t > b->t ? 1 : 0;
}

static void write_events(FILE *f, int pid) {
    const char *sep = "\n";
    fprintf(f, "%s{\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"name\":\"process_name\",\"args\":{\"name\":\"ember\"}}", sep, pid);
    sep = ",\n";
    size_t ntransfers = 0;
    for (tbuf *tb = g_threads; tb; tb = tb->next) {
        pthread_mutex_lock(&tb->mu);
        if (tb->n) {
            char name[80];
            if (tb->tname[0]) snprintf(name, sizeof name, "%s", tb->tname);
            else snprintf(name, sizeof name, "thread %d", tb->tid);
            fprintf(f, "%s{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":", sep, pid,
                    tb->tid);
            put_str(f, name);
            fputs("}}", f);
        }
        for (size_t i = 0; i < tb->n; i++) {
            const pevent *e = &tb->ev[i];
            if (e->kind == EV_COUNTER) {
                fprintf(f, "%s{\"ph\":\"C\",\"pid\":%d,\"tid\":%d,\"name\":", sep, pid, tb->tid);
                put_str(f, e->name);
                fprintf(f, ",\"ts\":%.3f,\"args\":{", us(e->t0 - g_t0));
                put_str(f, e->akey[0]);
                fputc(':', f);
                put_num(f, e->aval[0]);
                fputs("}}", f);
                continue;
            }
            fprintf(f, "%s{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"cat\":", sep, pid, tb->tid);
            put_str(f, e->cat);
            fputs(",\"name\":", f);
            put_str(f, e->name);
            fprintf(f, ",\"ts\":%.3f,\"dur\":%.3f,\"args\":{", us(e->t0 - g_t0), us(e->dur));
            if (e->kind == EV_TRANSFER) {
                ntransfers++;
                fprintf(f, "\"bytes\":%llu,\"GB/s\":", (unsigned long long)e->bytes);
                put_num(f, e->dur > 0 ? (double)e->bytes / e->dur / 1e9 : 0);
            }
            for (int a = 0; a < e->nargs; a++) {
                if (a) fputc(',', f);
                put_str(f, e->akey[a]);
                fputc(':', f);
                put_num(f, e->aval[a]);
            }
            fputs("}}", f);
        }
        pthread_mutex_unlock(&tb->mu);
    }
    /* memory: one counter track per manager and tier, one series per kind */
    for (size_t i = 0; i < g_nsamples; i++) {
        const msample *s = &g_samples[i];
        for (int t = 0; t < EMBER_TIER_COUNT; t++) {
            char name[64];
            if (g_nmm > 1) snprintf(name, sizeof name, "memory[%d] %s", s->m, ember_tier_name((ember_tier)t));
            else snprintf(name, sizeof name, "memory %s", ember_tier_name((ember_tier)t));
            fprintf(f, "%s{\"ph\":\"C\",\"pid\":%d,\"tid\":0,\"name\":\"%s\",\"ts\":%.3f,\"args\":{", sep, pid, name,
                    us(s->t - g_t0));
            for (int k = 0; k < EMBER_MEM_KIND_COUNT; k++)
                fprintf(f, "%s\"%s\":%zu", k ? "," : "", ember_mem_kind_name((ember_mem_kind)k), s->live[t][k]);
            fputs("}}", f);
        }
    }
    /* links: cumulative bytes, in time order over all threads */
    xfer *xs = ntransfers ? malloc(ntransfers * sizeof *xs) : NULL;
    if (xs) {
        size_t k = 0;
        for (tbuf *tb = g_threads; tb; tb = tb->next) {
            pthread_mutex_lock(&tb->mu);
            for (size_t i = 0; i < tb->n && k < ntransfers; i++)
                if (tb->ev[i].kind == EV_TRANSFER)
                    xs[k++] = (xfer){tb->ev[i].t0 + tb->ev[i].dur, tb->ev[i].link, tb->ev[i].bytes};
            pthread_mutex_unlock(&tb->mu);
        }
        qsort(xs, k, sizeof *xs, xfer_cmp);
        uint64_t cum[EMBER_PROFILER_LINK_COUNT] = {0};
        for (size_t i = 0; i < k; i++) {
            cum[xs[i].link] += xs[i].bytes;
            fprintf(f, "%s{\"ph\":\"C\",\"pid\":%d,\"tid\":0,\"name\":\"link %s\",\"ts\":%.3f,\"args\":{\"bytes\":%llu}}",
                    sep, pid, link_names[xs[i].link], us(xs[i].t - g_t0), (unsigned long long)cum[xs[i].link]);
        }
        free(xs);
    }
}

ember_status ember_profiler_write_trace(const char *path) {
    static const char fn[] = "ember_profiler_write_trace";
    EMBER_CHECK_NULL(path, fn);
    EMBER_TRY(need_results(fn));
    FILE *f = fopen(path, "w");
    if (!f) return ember__error(EMBER_ERR_IO, "%s: cannot create %s: %s", fn, path, strerror(errno));
    fputs("{\"traceEvents\":[", f);
    pthread_mutex_lock(&g_list_mu);
    write_events(f, (int)getpid());
    pthread_mutex_unlock(&g_list_mu);
    fprintf(f, "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"ember profiler\",\"wall_ms\":%.3f,"
               "\"events\":%lld,\"dropped_events\":%lld,\"link_peak_GBps\":{",
            g_info.wall_s * 1e3, (long long)g_info.events, (long long)g_info.dropped);
    for (int l = 0; l < EMBER_PROFILER_LINK_COUNT; l++) {
        fprintf(f, "%s\"%s\":", l ? "," : "", link_names[l]);
        if (g_links[l].peak_bps > 0) put_num(f, g_links[l].peak_bps / 1e9);
        else fputs("null", f);
    }
    fputs("}}}\n", f);
    int bad = ferror(f);
    int err = bad ? EIO : 0;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        remove_partial(path);
        return ember__error(EMBER_ERR_IO, "%s: writing %s failed: %s", fn, path, strerror(err));
    }
    return EMBER_OK;
}

/* ---- the summary ---- */

static const char *fmt_bytes(double b, char *buf, size_t n) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, n, "%.2f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0) snprintf(buf, n, "%.1f KiB", b / 1024.0);
    else snprintf(buf, n, "%.0f B", b);
    return buf;
}

ember_status ember_profiler_summary(FILE *f) {
    static const char fn[] = "ember_profiler_summary";
    EMBER_CHECK_NULL(f, fn);
    EMBER_TRY(need_results(fn));
    const ember_profiler_info *in = &g_info;
    double wall = in->wall_s > 0 ? in->wall_s : 1e-12;
    fprintf(f, "ember profile: wall %.3f ms, %d thread%s, %lld events in the trace", in->wall_s * 1e3, in->threads,
            in->threads == 1 ? "" : "s", (long long)in->events);
    if (in->dropped) fprintf(f, " (%lld dropped: over max_events; the totals below include them)", (long long)in->dropped);
    fprintf(f, ", %lld memory samples\n\n", (long long)in->memory_samples);

    fprintf(f, "%-28s %-10s %10s %12s %12s %12s %7s\n", "scope", "category", "calls", "total ms", "self ms",
            "mean us", "% wall");
    for (int i = 0; i < g_nops; i++) {
        const ember_profiler_op *o = &g_ops[i];
        fprintf(f, "%-28.28s %-10.10s %10lld %12.3f %12.3f %12.2f %7.2f\n", o->name, o->cat, (long long)o->calls,
                o->total_s * 1e3, o->self_s * 1e3, o->calls ? o->total_s / (double)o->calls * 1e6 : 0,
                100.0 * o->total_s / wall);
    }
    if (g_nops == 0) fprintf(f, "(no scopes)\n");

    fprintf(f, "\n%-16s %12s %10s %12s %14s %12s %8s\n", "link", "bytes", "transfers", "time ms", "achieved GB/s",
            "peak GB/s", "% peak");
    for (int l = 0; l < EMBER_PROFILER_LINK_COUNT; l++) {
        const ember_profiler_link_stats *s = &g_links[l];
        char b[32], peak[32] = "-", pct[16] = "-", ach[32] = "-";
        if (s->seconds > 0) snprintf(ach, sizeof ach, "%.3f", s->achieved_bps / 1e9);
        if (s->peak_bps > 0) snprintf(peak, sizeof peak, "%.3f", s->peak_bps / 1e9);
        if (s->peak_bps > 0 && s->seconds > 0) snprintf(pct, sizeof pct, "%.1f", 100.0 * s->achieved_bps / s->peak_bps);
        fprintf(f, "%-16s %12s %10lld %12.3f %14s %12s %8s\n", link_names[l], fmt_bytes((double)s->bytes, b, sizeof b),
                (long long)s->transfers, s->seconds * 1e3, ach, peak, pct);
    }
    if (g_links[0].peak_bps > 0 && g_probed_memcpy == 0 && !g_user_set[0])
        fprintf(f, "(host link peaks: a timed DRAM memcpy, what the host links are on a CPU-only run)\n");

    fprintf(f, "\npeak live memory seen in %lld samples, MiB (per kind; total = peak of the tier's sum)\n",
            (long long)in->memory_samples);
    int w[EMBER_MEM_KIND_COUNT]; /* each column as wide as its kind's name */
    fprintf(f, "%-4s %-7s %10s", "mm", "tier", "total");
    for (int k = 0; k < EMBER_MEM_KIND_COUNT; k++) {
        const char *kn = ember_mem_kind_name((ember_mem_kind)k);
        w[k] = strlen(kn) > 10 ? (int)strlen(kn) : 10;
        fprintf(f, " %*s", w[k], kn);
    }
    fputc('\n', f);
    int rows = 0;
    for (int m = 0; m < in->nmemory; m++)
        for (int t = 0; t < EMBER_TIER_COUNT; t++) {
            if (!in->peak_total[m][t]) continue;
            rows++;
            fprintf(f, "%-4d %-7s %10.3f", m, ember_tier_name((ember_tier)t), in->peak_total[m][t] / 1048576.0);
            for (int k = 0; k < EMBER_MEM_KIND_COUNT; k++) fprintf(f, " %*.3f", w[k], in->peak[m][t][k] / 1048576.0);
            fputc('\n', f);
        }
    if (!rows) fprintf(f, "(nothing allocated in the watched managers)\n");
    return ferror(f) ? ember__error(EMBER_ERR_IO, "%s: writing the summary failed", fn) : EMBER_OK;
}

ember_status ember_profiler_write_summary(const char *path) {
    static const char fn[] = "ember_profiler_write_summary";
    EMBER_CHECK_NULL(path, fn);
    EMBER_TRY(need_results(fn));
    FILE *f = fopen(path, "w");
    if (!f) return ember__error(EMBER_ERR_IO, "%s: cannot create %s: %s", fn, path, strerror(errno));
    ember_status st = ember_profiler_summary(f);
    if (fclose(f) != 0 && st == EMBER_OK) st = ember__error(EMBER_ERR_IO, "%s: writing %s failed: %s", fn, path, strerror(errno));
    else if (st != EMBER_OK) st = ember__error(EMBER_ERR_IO, "%s: writing %s failed", fn, path);
    if (st != EMBER_OK) remove_partial(path);
    return st;
}

/* ---- queries ---- */

ember_status ember_profiler_get_info(ember_profiler_info *out) {
    EMBER_CHECK_NULL(out, "ember_profiler_get_info");
    EMBER_TRY(need_results("ember_profiler_get_info"));
    *out = g_info;
    return EMBER_OK;
}

int ember_profiler_op_count(void) { return g_state == ST_STOPPED ? g_nops : -1; }

ember_status ember_profiler_get_op(int i, ember_profiler_op *out) {
    EMBER_CHECK_NULL(out, "ember_profiler_get_op");
    EMBER_TRY(need_results("ember_profiler_get_op"));
    if (i < 0 || i >= g_nops) return ember__error(EMBER_ERR_INDEX, "ember_profiler_get_op: %d of %d", i, g_nops);
    *out = g_ops[i];
    return EMBER_OK;
}

ember_status ember_profiler_get_link(ember_profiler_link link, ember_profiler_link_stats *out) {
    EMBER_CHECK_NULL(out, "ember_profiler_get_link");
    if ((unsigned)link >= EMBER_PROFILER_LINK_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_profiler_get_link: link %d invalid", (int)link);
    EMBER_TRY(need_results("ember_profiler_get_link"));
    *out = g_links[link];
    return EMBER_OK;
}
