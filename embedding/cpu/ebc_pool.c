/*
 * A small thread pool for the embedding kernels, in which the caller never waits for a
 * thread that has not started working.
 *
 * Why not OpenMP here: an OpenMP parallel region ends in a barrier that every team
 * thread must reach, so when the OS has preempted one of them (a shared machine, a
 * data loader or another process on the same cores) the whole call waits for it to be
 * scheduled again, a time slice of milliseconds, even though the work itself takes
 * tens of microseconds (a batch of 4096 row lookups). Here a call publishes a job of
 * numbered chunks; the caller and whichever pool threads are running claim chunks one
 * at a time with a compare-and-swap, and the caller returns once every chunk has run:
 * a pool thread that wakes late finds nothing left and goes back to sleep. Results are
 * the same whoever runs a chunk, so this changes timing only.
 *
 * Publication is a sequence lock: the caller makes `seq` odd, writes the job, and makes
 * it even again; a pool thread reads the job between two equal even readings. The
 * claim word packs (generation, next chunk), so a claim can only succeed on the job
 * that was read, and the caller does not publish the next job (or let the current one's
 * memory go) before every claimed chunk has finished.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#include "ember/ember.h"
#include "embedding/ebc_internal.h"
#include "engine/internal.h"

#define MAX_WORKERS 256
#define SPIN_ROUNDS 4000  /* pauses (about 100 us) a pool thread waits before sleeping */
#define YIELD_AFTER 20000 /* the caller's pauses before it yields to a preempted helper */

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cv = PTHREAD_COND_INITIALIZER;
static int started; /* pool threads running, under start_lock */
static int sleepers; /* under sleep_lock */

static _Atomic uint64_t seq;   /* even: a job is readable; seq / 2 is its generation */
static _Atomic uint64_t claim; /* generation << 32 | next chunk */
static _Atomic int64_t done;   /* chunks finished in the current job */
/* the job: written only while seq is odd, read between two equal even readings */
static _Atomic(ember__ebc_pool_fn) job_fn;
static _Atomic(void *) job_arg;
static _Atomic int64_t job_chunks;
static _Atomic int job_workers;

static void run_chunks(uint32_t gen, ember__ebc_pool_fn fn, void *arg, int64_t chunks, int worker) {
    for (;;) {
        uint64_t w = atomic_load_explicit(&claim, memory_order_acquire);
        if ((uint32_t)(w >> 32) != gen) return;
        int64_t c = (int64_t)(w & 0xffffffffu);
        if (c >= chunks) return;
        if (!atomic_compare_exchange_weak_explicit(&claim, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(arg, c, worker);
        atomic_fetch_add_explicit(&done, 1, memory_order_release);
    }
}

static void *pool_main(void *p) {
    const int worker = (int)(intptr_t)p;
    uint64_t seen = atomic_load_explicit(&seq, memory_order_acquire);
    for (;;) {
        uint64_t s;
        int spins = 0;
        while ((s = atomic_load_explicit(&seq, memory_order_acquire)) == seen || (s & 1)) {
            if (++spins < SPIN_ROUNDS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&sleep_lock);
            sleepers++;
            while (atomic_load_explicit(&seq, memory_order_acquire) == seen)
                pthread_cond_wait(&sleep_cv, &sleep_lock);
            sleepers--;
            pthread_mutex_unlock(&sleep_lock);
            spins = 0;
        }
        ember__ebc_pool_fn fn = atomic_load_explicit(&job_fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&job_arg, memory_order_relaxed);
        int64_t chunks = atomic_load_explicit(&job_chunks, memory_order_relaxed);
        int workers = atomic_load_explicit(&job_workers, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&seq, memory_order_relaxed) != s) continue; /* torn: read again */
        seen = s;
        if (worker < workers) run_chunks((uint32_t)(s / 2), fn, arg, chunks, worker);
    }
    return NULL;
}

/* Start pool threads up to `workers - 1` (once each; they live as long as the process). */
static int ensure_threads(int workers) {
    pthread_mutex_lock(&start_lock);
    while (started < workers - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, pool_main, (void *)(intptr_t)(started + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* fewer helpers: the caller does more */
        started++;
    }
    int have = started + 1;
    pthread_mutex_unlock(&start_lock);
    return have;
}

void ember__ebc_pool_run(int workers, int64_t chunks, ember__ebc_pool_fn fn, void *arg) {
    if (chunks <= 0) return;
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    if (chunks > 0xffffffffLL) workers = 1; /* the claim word holds 32-bit chunk numbers */
    /* one worker, one chunk, or the pool busy with another caller's job: run here */
    if (workers <= 1 || chunks == 1 || pthread_mutex_trylock(&job_lock) != 0) {
        for (int64_t c = 0; c < chunks; c++) fn(arg, c, 0);
        return;
    }
    int have = ensure_threads(workers); /* never more workers than asked: callers size scratch by it */
    if (have < workers) workers = have;
    uint64_t s = atomic_load_explicit(&seq, memory_order_relaxed);
    atomic_store_explicit(&seq, s + 1, memory_order_relaxed); /* odd: writing */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&job_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&job_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&job_chunks, chunks, memory_order_relaxed);
    atomic_store_explicit(&job_workers, workers, memory_order_relaxed);
    uint32_t gen = (uint32_t)((s + 2) / 2);
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    atomic_store_explicit(&claim, (uint64_t)gen << 32, memory_order_release);
    atomic_store_explicit(&seq, s + 2, memory_order_release); /* even: readable */
    pthread_mutex_lock(&sleep_lock);
    if (sleepers) pthread_cond_broadcast(&sleep_cv);
    pthread_mutex_unlock(&sleep_lock);
    run_chunks(gen, fn, arg, chunks, 0);
    /* chunks still running on pool threads; yield in case one shares our core */
    for (long spins = 0; atomic_load_explicit(&done, memory_order_acquire) < chunks; spins++) {
        if (spins < YIELD_AFTER)
            CPU_RELAX();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&job_lock);
}

int ember__ebc_pool_workers(void) {
    int n = ember_get_num_threads();
    return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
}
