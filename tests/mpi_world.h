/*
 * tests/mpi_world.h: the set-up every *_mpi test starts with (ctest runs them under mpirun).
 *
 *     ember_comm *w = mpi_world(&R, &N);
 *     if (!w) return 1;
 *     if (mpi_skip(w, R, BG % N != 0, "global batch %d is not divisible by %d ranks", BG, N)) return 77;
 */
#ifndef EMBER_TESTS_MPI_WORLD_H
#define EMBER_TESTS_MPI_WORLD_H

#include <stdarg.h>
#include <stdio.h>

#include "ember/parallel.h"
#include "ember/partition.h"

/* The world over MPI, every collective validated and timed out after 120 s (a rank
   that dies makes the others fail instead of hang); NULL, said on stderr, on failure. */
static inline ember_comm *mpi_world(int *rank, int *size) {
    ember_comm *w = NULL;
    if (ember_comm_create_mpi(&(ember_comm_config){.validate = 1, .timeout_s = 120}, &w) != EMBER_OK) {
        fprintf(stderr, "%s\n", ember_last_error());
        return NULL;
    }
    *rank = ember_comm_rank(w);
    *size = ember_comm_size(w);
    return w;
}

/* When skip: rank 0 says why ("...: skipped"), the world is destroyed, and the caller
   returns 77 (ctest's SKIP_RETURN_CODE). */
static inline int mpi_skip(ember_comm *w, int rank, int skip, const char *why, ...) {
    if (!skip) return 0;
    if (rank == 0) {
        va_list ap;
        va_start(ap, why);
        vfprintf(stderr, why, ap);
        va_end(ap);
        fprintf(stderr, ": skipped\n");
    }
    ember_comm_destroy(w);
    return 1;
}

/* Distinct ids among a table's n lookups that `rank` serves under the plan (rows it owns,
   or rows every rank holds); the tests' ids are below 64. -1 when an id cannot be located. */
static inline int64_t plan_rank_unique(const ember_plan *plan, int table, const int64_t *ids, int64_t n, int rank) {
    char seen[64] = {0};
    int64_t u = 0;
    for (int64_t k = 0; k < n; k++) {
        int rk;
        int64_t lr;
        if (ids[k] < 0 || ids[k] >= 64 || ember_plan_locate(plan, table, ids[k], &rk, &lr) != EMBER_OK) return -1;
        if (rk == rank || rk == EMBER_PLAN_EVERY_RANK) u += !seen[ids[k]]++;
    }
    return u;
}

#endif /* EMBER_TESTS_MPI_WORLD_H */
