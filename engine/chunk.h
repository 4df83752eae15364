/*
 * engine/chunk.h: the parts of the heterogeneous memory manager that do not touch
 * memory (engine/chunk.c), shared with the manager itself (engine/offload.c): the
 * tensor-state table, chunk packing, the op trace and the eviction rule. Not installed.
 */
#ifndef EMBER_CHUNK_H
#define EMBER_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "ember/offload.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Distance of a chunk that is never needed again on the device (or dies first). */
#define EMBER__NEVER INT64_MAX

/* Pack n tensors of numel[i] (aligned to align) into chunks of chunk_elems, in order:
   chunk_of/offset_of may be NULL. Returns the number of chunks, or -1 when a tensor is
   larger than a chunk. */
int ember__chunk_pack(const int64_t *numel, int n, int64_t align, int64_t chunk_elems, int *chunk_of,
                      int64_t *offset_of);

/*
 * The trace of one iteration: for every chunk, the positions where an op needs it on
 * the device ("need") or leaves its device copy useless ("kill"), ascending, needs
 * before kills at one position; and the non-model device bytes before each op.
 */
typedef struct ember__trace {
    int nops, nchunks;
    int *start;          /* (nchunks + 1): chunk c's events are [start[c], start[c + 1]) */
    int *pos;            /* event positions */
    unsigned char *kill; /* 1: a kill, 0: a need */
    size_t *non_model;   /* (nops) */
} ember__trace;

ember_status ember__trace_build(ember__trace *t, const ember_offload_op *ops, int nops, int nchunks);
void ember__trace_free(ember__trace *t);
/*
 * Ops from pos until chunk c is next needed on the device, the trace repeating (1 =
 * the next op, nops = op pos of the next iteration); EMBER__NEVER when it is not
 * needed again or a kill comes first (a kill at pos itself included).
 */
int64_t ember__trace_next_use(const ember__trace *t, int c, int pos);
/* The largest non-model bytes of ops pos .. pos + n (wrapping). */
size_t ember__trace_non_model_max(const ember__trace *t, int pos, int n);

/* A chunk that may be evicted: its next use and whether evicting it costs a copy. */
typedef struct ember__cand {
    int id;
    int64_t next;
    int dirty;
} ember__cand;

/* The eviction rule: the candidate whose next use is furthest, clean before dirty at
   equal distance, then the lowest id; only candidates with next > after. Returns its
   index in c, or -1. */
int ember__pick_victim(const ember__cand *c, int n, int64_t after);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CHUNK_H */
