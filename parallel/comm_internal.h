/*
 * parallel/comm_internal.h: what the communicator front end (parallel/comm.c) and its
 * backends (self in comm.c, parallel/comm_mpi.c, parallel/comm_nccl.c) share. Not
 * installed.
 *
 * The front end checks arguments, runs the optional cross-rank validation, and turns
 * every call into start + wait: a blocking call waits on a request that lives on its
 * stack, an async call hands out a heap request. Backends only start operations, test
 * them, finish them (post-processing such as MEAN's division) and abandon them on a
 * timeout; the deadline loop, the broken flag and the messages live in one place.
 */
#ifndef EMBER_PARALLEL_COMM_INTERNAL_H
#define EMBER_PARALLEL_COMM_INTERNAL_H

#include <stdint.h>

#include "ember/parallel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ember__coll_kind {
    EMBER__COLL_ALL_REDUCE,
    EMBER__COLL_ALL_GATHER,
    EMBER__COLL_REDUCE_SCATTER,
    EMBER__COLL_ALL_TO_ALL,
    EMBER__COLL_ALL_TO_ALL_V,
    EMBER__COLL_BROADCAST,
    EMBER__COLL_SEND,
    EMBER__COLL_RECV,
    EMBER__COLL_BARRIER,
    EMBER__COLL_KIND_COUNT
} ember__coll_kind;

/* One operation, as the front end checked it. Counts are in elements. */
typedef struct ember__coll {
    ember__coll_kind kind;
    const char *fn; /* public function name, for messages */
    const void *send;
    void *recv; /* broadcast, recv: the one buffer */
    int64_t count;
    ember_dtype dt;
    ember_reduce_op op;
    int root;     /* broadcast root, send/recv peer */
    int in_place; /* all_reduce send == recv; all_gather / reduce_scatter NCCL-style */
    /* all_to_all_v: size entries each, displacements resolved (never NULL). Valid only
       during start: a backend that needs them later copies them. */
    const int64_t *send_counts, *send_displs, *recv_counts, *recv_displs;
} ember__coll;

typedef struct ember__comm_ops {
    /* Start a; may complete at once (then test reports done). r->be is the backend's. */
    ember_status (*start)(ember_comm *c, const ember__coll *a, ember_comm_request *r);
    /* *done = 1 when complete. A failure here breaks the communicator. */
    ember_status (*test)(ember_comm_request *r, int *done);
    /* After done: post-processing; releases backend state. */
    ember_status (*finish)(ember_comm_request *r);
    /* The wait timed out: park whatever the operation still uses (never freed while
       MPI/NCCL may touch it). */
    void (*abandon)(ember_comm_request *r);
    /* Cross-rank signature check (size > 1). local: this rank's own argument check. */
    ember_status (*validate)(ember_comm *c, const ember__coll *a, ember_status local);
    ember_status (*split)(ember_comm *c, int color, int key, ember_comm **out);
    void (*destroy)(ember_comm *c);
} ember__comm_ops;

struct ember_comm {
    const ember__comm_ops *ops;
    ember_comm_backend backend;
    int rank, size;
    ember_device device;
    double timeout_s; /* < 0: forever */
    int validate;
    int broken;
    char broken_why[192];
    int pending; /* heap requests not yet waited */
    void *impl;  /* the backend's */
};

struct ember_comm_request {
    ember_comm *comm;
    const char *fn;
    ember__coll_kind kind;
    int64_t count; /* elements, for messages (all_to_all_v: elements sent) */
    ember_dtype dt;
    int heap; /* ember_comm_wait frees it */
    int done;
    ember_tensor *keep[2]; /* async tensor calls: alive until the wait */
    _Alignas(16) unsigned char be[128]; /* backend state */
};

/* Shared by the backends. */

/* The comm's default timeout: $EMBER_COMM_TIMEOUT if set and valid, else 300 s. */
double ember__comm_default_timeout(void);
/* Fill the fields every backend sets the same way from a config. */
void ember__comm_init(ember_comm *c, const ember__comm_ops *ops, ember_comm_backend b,
                      const ember_comm_config *cfg);
/* Record st with the message "<fn> (rank r of n, backend): <text>". */
ember_status ember__comm_error(const ember_comm *c, ember_status st, const char *fn,
                               const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Mark c broken, remembering why (the text of the current error). */
void ember__comm_break(ember_comm *c);
/* Poll test(r) until done, the deadline, or a failure; the front end's wait loop, for
   backends that run internal operations (validation, bootstrap). Does not release r. */
ember_status ember__comm_wait_request(ember_comm_request *r);
/* Start an internal operation on c and wait for it (no validation). */
ember_status ember__comm_run(ember_comm *c, const ember__coll *a);

/* MPI backend, used by the NCCL one for bootstrap and validation. */
int ember__comm_mpi_launched(void);
int ember__comm_mpi_initialized(void);
ember_status ember__comm_mpi_local_rank(ember_comm *mpi, int *local_rank);
/* Signature check of a on the MPI communicator mpi, errors named after `named`. */
ember_status ember__comm_mpi_validate(ember_comm *mpi, ember_comm *named, const ember__coll *a,
                                      ember_status local);

/* Backend constructors. */
ember_status ember__comm_create_mpi(const ember_comm_config *cfg, ember_comm **out);
ember_status ember__comm_create_nccl(const ember_comm_config *cfg, ember_comm **out);
/* A NCCL communicator over the ranks of the MPI communicator host (taken over). */
ember_status ember__comm_nccl_from_host(ember_comm *host, const ember_comm_config *cfg,
                                        ember_comm **out);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_PARALLEL_COMM_INTERNAL_H */
