/*
 * A small thread pool for the parsers: run jobs 0..n-1 on the pool's threads and the
 * caller, return when all are done.
 *
 * Why not OpenMP here: its barriers spin before they sleep, and on a machine shared
 * with other work (the normal case for a data loader next to a training loop) a
 * spinning thread burns the core its descheduled teammate needs; two threads then
 * parse slower than one. Idle workers here sleep on a condition variable, jobs are
 * claimed one at a time, and the caller works too, so a preempted worker delays only
 * the one job it holds.
 */
#include <pthread.h>
#include <stdlib.h>

#include "datasets/internal.h"

struct ember__pool {
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    pthread_t *threads;
    int nthreads;
    uint64_t gen; /* run number: a worker takes jobs of its own run only */
    int stop;
    int njobs, next, done;
    ember__pool_fn fn;
    void *arg;
};

/* Claim and run jobs of run `gen` until none is left. */
static void work(ember__pool *p, uint64_t gen) {
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->gen != gen || p->next >= p->njobs) {
            pthread_mutex_unlock(&p->mu);
            return;
        }
        int j = p->next++;
        ember__pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, j);
        pthread_mutex_lock(&p->mu);
        if (++p->done == p->njobs) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *worker(void *arg) {
    ember__pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        work(p, seen);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ember_status ember__pool_create(int threads, ember__pool **out) {
    *out = NULL;
    ember__pool *p = calloc(1, sizeof *p);
    if (!p) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "thread pool");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    int want = threads > 1 ? threads - 1 : 0;
    p->threads = want ? calloc((size_t)want, sizeof *p->threads) : NULL;
    for (int i = 0; i < want && p->threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) break;
        p->nthreads++;
    }
    *out = p; /* with fewer workers than asked, the caller does more of the jobs */
    return EMBER_OK;
}

void ember__pool_destroy(ember__pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}

void ember__pool_run(ember__pool *p, int njobs, ember__pool_fn fn, void *arg) {
    if (njobs <= 0) return;
    if (!p || p->nthreads == 0 || njobs == 1) {
        for (int j = 0; j < njobs; j++) fn(arg, j);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->njobs = njobs;
    p->next = 0;
    p->done = 0;
    uint64_t gen = ++p->gen;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    work(p, gen);
    pthread_mutex_lock(&p->mu);
    while (p->done < p->njobs) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
