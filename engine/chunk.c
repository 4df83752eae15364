/*
 * Chunks without memory: the tensor-state table, the chunk-size search, the op trace
 * and the eviction rule of the heterogeneous memory manager (engine/offload.c).
 *
 * Design decisions:
 *  - Tensors are packed in first-use order and never split, so an op's parameters sit
 *    in one or two chunks and a chunk's tensors are used together. The only freedom
 *    left is the chunk size, chosen for the least padding: a chunk size that some run
 *    of consecutive tensors fills exactly is where waste drops, so those sums are the
 *    candidates (plus a grid), each scored by packing in O(n).
 *  - Eviction is Belady's rule on the warm-up trace, with one refinement: a chunk
 *    whose device copy dies before its next use (a parameter the host optimizer will
 *    overwrite, a gradient the optimizer consumes) is "never used again", so dead
 *    copies leave first; among equals, a clean copy (nothing to write back) goes
 *    before a dirty one.
 *  - This file is pure bookkeeping, so the rule the manager applies is the rule
 *    ember_offload_simulate runs and the tests check on hand-built traces.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/chunk.h"
#include "engine/internal.h"

/* ---- tensor states ---- */

static const char *state_names[EMBER_TENSOR_STATE_COUNT] = {"FREE", "COMPUTE", "HOLD", "HOLD_AFTER_BWD",
                                                            "READY_FOR_REDUCE"};

const char *ember_tensor_state_name(ember_tensor_state s) {
    return (unsigned)s < EMBER_TENSOR_STATE_COUNT ? state_names[s] : "INVALID";
}

const char *ember_chunk_kind_name(ember_chunk_kind k) {
    static const char *names[EMBER_CHUNK_KIND_COUNT] = {"param", "grad", "state"};
    return (unsigned)k < EMBER_CHUNK_KIND_COUNT ? names[k] : "invalid";
}

const char *ember_offload_policy_name(ember_offload_policy p) {
    static const char *names[EMBER_OFFLOAD_POLICY_COUNT] = {"auto", "static", "naive"};
    return (unsigned)p < EMBER_OFFLOAD_POLICY_COUNT ? names[p] : "invalid";
}

int ember_tensor_state_legal(ember_tensor_state from, ember_tensor_state to) {
    enum { F = EMBER_TENSOR_STATE_FREE, C = EMBER_TENSOR_STATE_COMPUTE, H = EMBER_TENSOR_STATE_HOLD,
           B = EMBER_TENSOR_STATE_HOLD_AFTER_BWD, R = EMBER_TENSOR_STATE_READY_FOR_REDUCE };
    /* legal[from] = bit set of the states it may go to (ember/offload.h has the table) */
    static const unsigned legal[EMBER_TENSOR_STATE_COUNT] = {
        [F] = 1u << H | 1u << C,
        [C] = 1u << H | 1u << B | 1u << R | 1u << F,
        [H] = 1u << C | 1u << F,
        [B] = 1u << C | 1u << H,
        [R] = 1u << C | 1u << F,
    };
    if ((unsigned)from >= EMBER_TENSOR_STATE_COUNT || (unsigned)to >= EMBER_TENSOR_STATE_COUNT) return 0;
    return (legal[from] >> to) & 1u;
}

/* ---- chunk-size search ---- */

static int64_t round_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

int ember__chunk_pack(const int64_t *numel, int n, int64_t align, int64_t chunk_elems, int *chunk_of,
                      int64_t *offset_of) {
    int chunk = 0;
    int64_t used = 0;
    for (int i = 0; i < n; i++) {
        int64_t s = round_up(numel[i], align);
        if (s > chunk_elems) return -1;
        if (used + s > chunk_elems) {
            chunk++;
            used = 0;
        }
        if (chunk_of) chunk_of[i] = chunk;
        if (offset_of) offset_of[i] = used;
        used += s;
    }
    return n ? chunk + 1 : 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

#define MAX_CANDIDATES (1 << 16)
#define GRID 64

ember_status ember_chunk_size_search(const int64_t *numel, int n, int64_t align, int *chunk_of,
                                     int64_t *offset_of, ember_chunk_layout *out) {
    static const char fn[] = "ember_chunk_size_search";
    EMBER_CHECK_NULL(out, fn);
    memset(out, 0, sizeof *out);
    if (n < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: n = %d < 0", fn, n);
    if (n > 0) EMBER_CHECK_NULL(numel, fn);
    if (align < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: align %lld < 0", fn, (long long)align);
    if (!align) align = 16;
    int64_t maxs = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (numel[i] < 0 || numel[i] > INT64_MAX / 8 - align)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tensor %d has %lld elements", fn, i,
                                (long long)numel[i]);
        int64_t s = round_up(numel[i], align);
        if (s > maxs) maxs = s;
        total += numel[i];
    }
    out->tensor_elems = total;
    if (n == 0) return EMBER_OK;
    if (maxs == 0) maxs = align; /* only empty tensors: one chunk of the least size */
    int64_t hi = 4 * maxs;
    int64_t *cand = malloc((size_t)(MAX_CANDIDATES + GRID + 2) * sizeof *cand);
    if (!cand) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: candidates", fn);
    int nc = 0;
    for (int k = 0; k <= GRID; k++) cand[nc++] = round_up(maxs + (hi - maxs) * k / GRID, align);
    /* sizes some chunk fills exactly: aligned sums of consecutive runs in [maxs, hi] */
    for (int i = 0; i < n && nc < MAX_CANDIDATES + GRID + 1; i++) {
        int64_t sum = 0;
        for (int j = i; j < n && nc < MAX_CANDIDATES + GRID + 1; j++) {
            sum += round_up(numel[j], align);
            if (sum > hi) break;
            if (sum >= maxs) cand[nc++] = sum;
        }
    }
    qsort(cand, (size_t)nc, sizeof *cand, cmp_i64);
    int64_t best = 0, best_waste = INT64_MAX;
    int best_chunks = 0;
    for (int k = 0; k < nc; k++) {
        if (k && cand[k] == cand[k - 1]) continue;
        int chunks = ember__chunk_pack(numel, n, align, cand[k], NULL, NULL);
        if (chunks < 0) continue;
        int64_t waste = (int64_t)chunks * cand[k] - total;
        if (waste < best_waste) { /* ascending sizes: a tie keeps the smaller */
            best_waste = waste;
            best = cand[k];
            best_chunks = chunks;
        }
    }
    free(cand);
    EMBER_ASSERT(best > 0);
    ember__chunk_pack(numel, n, align, best, chunk_of, offset_of);
    out->chunk_elems = best;
    out->nchunks = best_chunks;
    out->waste_elems = best_waste;
    return EMBER_OK;
}

/* ---- the trace ---- */

void ember__trace_free(ember__trace *t) {
    if (!t) return;
    free(t->start);
    free(t->pos);
    free(t->kill);
    free(t->non_model);
    memset(t, 0, sizeof *t);
}

ember_status ember__trace_build(ember__trace *t, const ember_offload_op *ops, int nops, int nchunks) {
    static const char fn[] = "offload trace";
    memset(t, 0, sizeof *t);
    size_t nev = 0;
    for (int i = 0; i < nops; i++) {
        if ((ops[i].nneed && !ops[i].need) || (ops[i].nkill && !ops[i].kill) || ops[i].nneed < 0 || ops[i].nkill < 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: op %d has a bad chunk list", fn, i);
        for (int k = 0; k < ops[i].nneed + ops[i].nkill; k++) {
            int c = k < ops[i].nneed ? ops[i].need[k] : ops[i].kill[k - ops[i].nneed];
            if (c < 0 || c >= nchunks)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: op %d names chunk %d of %d", fn, i, c, nchunks);
        }
        nev += (size_t)(ops[i].nneed + ops[i].nkill);
    }
    t->nops = nops;
    t->nchunks = nchunks;
    t->start = calloc((size_t)nchunks + 1, sizeof *t->start);
    t->pos = malloc((nev ? nev : 1) * sizeof *t->pos);
    t->kill = malloc(nev ? nev : 1);
    t->non_model = calloc(nops ? (size_t)nops : 1, sizeof *t->non_model);
    int *fill = calloc((size_t)nchunks + 1, sizeof *fill);
    if (!t->start || !t->pos || !t->kill || !t->non_model || !fill) {
        free(fill);
        ember__trace_free(t);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %zu events", fn, nev);
    }
    for (int i = 0; i < nops; i++) {
        t->non_model[i] = ops[i].non_model;
        for (int k = 0; k < ops[i].nneed + ops[i].nkill; k++)
            t->start[(k < ops[i].nneed ? ops[i].need[k] : ops[i].kill[k - ops[i].nneed]) + 1]++;
    }
    for (int c = 0; c < nchunks; c++) t->start[c + 1] += t->start[c];
    /* ops in order, needs before kills within an op: each chunk's events come out sorted */
    for (int i = 0; i < nops; i++)
        for (int k = 0; k < ops[i].nneed + ops[i].nkill; k++) {
            int is_kill = k >= ops[i].nneed;
            int c = is_kill ? ops[i].kill[k - ops[i].nneed] : ops[i].need[k];
            int at = t->start[c] + fill[c]++;
            t->pos[at] = i;
            t->kill[at] = (unsigned char)is_kill;
        }
    free(fill);
    return EMBER_OK;
}

int64_t ember__trace_next_use(const ember__trace *t, int c, int pos) {
    if (!t->nops || c < 0 || c >= t->nchunks) return EMBER__NEVER;
    int lo = t->start[c], hi = t->start[c + 1];
    if (lo == hi) return EMBER__NEVER;
    /* first event after pos; a kill at pos itself ends the copy's life now */
    int a = lo, b = hi;
    while (a < b) {
        int m = (a + b) / 2;
        if (t->pos[m] <= pos) a = m + 1;
        else b = m;
    }
    for (int k = a - 1; k >= lo && t->pos[k] == pos; k--)
        if (t->kill[k]) return EMBER__NEVER;
    int first = a < hi ? a : lo; /* else wrap into the next iteration */
    if (t->kill[first]) return EMBER__NEVER;
    int64_t q = t->pos[first];
    return q > pos ? q - pos : q + t->nops - pos;
}

size_t ember__trace_non_model_max(const ember__trace *t, int pos, int n) {
    size_t m = 0;
    for (int k = 0; k <= n && t->nops; k++) {
        size_t v = t->non_model[(pos + k) % t->nops];
        if (v > m) m = v;
    }
    return m;
}

int ember__pick_victim(const ember__cand *c, int n, int64_t after) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (c[i].next <= after) continue;
        if (best < 0) {
            best = i;
            continue;
        }
        const ember__cand *x = &c[i], *y = &c[best];
        int better = x->next != y->next ? x->next > y->next
                     : x->dirty != y->dirty ? !x->dirty
                                            : x->id < y->id;
        if (better) best = i;
    }
    return best;
}

/* ---- simulation ---- */

ember_status ember_offload_simulate(const ember_offload_op *ops, int nops, const size_t *chunk_bytes,
                                    int nchunks, size_t budget, int *evicted, int max, int *nevicted) {
    static const char fn[] = "ember_offload_simulate";
    EMBER_CHECK_NULL(nevicted, fn);
    *nevicted = 0;
    if (nops < 0 || nchunks < 0 || max < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: nops %d, nchunks %d, max %d", fn, nops, nchunks, max);
    if (nops) EMBER_CHECK_NULL(ops, fn);
    if (nchunks) EMBER_CHECK_NULL(chunk_bytes, fn);
    if (max) EMBER_CHECK_NULL(evicted, fn);
    ember__trace t;
    EMBER_TRY(ember__trace_build(&t, ops, nops, nchunks));
    unsigned char *resident = calloc((size_t)nchunks + 1, 1), *needed = calloc((size_t)nchunks + 1, 1);
    ember__cand *cand = malloc(((size_t)nchunks + 1) * sizeof *cand);
    ember_status st = resident && needed && cand ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    size_t used = 0;
    for (int i = 0; i < nops && st == EMBER_OK; i++) {
        for (int k = 0; k < ops[i].nneed; k++) needed[ops[i].need[k]] = 1;
        for (int k = 0; k < ops[i].nneed && st == EMBER_OK; k++) {
            int c = ops[i].need[k];
            if (resident[c]) continue;
            while (st == EMBER_OK && (ops[i].non_model > budget || used + chunk_bytes[c] > budget - ops[i].non_model)) {
                int n = 0;
                for (int j = 0; j < nchunks; j++)
                    if (resident[j] && !needed[j])
                        cand[n++] = (ember__cand){.id = j, .next = ember__trace_next_use(&t, j, i)};
                int v = ember__pick_victim(cand, n, -1);
                if (v < 0) {
                    st = ember__error(EMBER_ERR_OUT_OF_MEMORY,
                                      "%s: op %d: chunk %d (%zu bytes) does not fit in %zu bytes (%zu non-model)",
                                      fn, i, c, chunk_bytes[c], budget, ops[i].non_model);
                    break;
                }
                resident[cand[v].id] = 0;
                used -= chunk_bytes[cand[v].id];
                if (*nevicted < max) evicted[*nevicted] = cand[v].id;
                ++*nevicted;
            }
            if (st == EMBER_OK) {
                resident[c] = 1;
                used += chunk_bytes[c];
            }
        }
        for (int k = 0; k < ops[i].nneed; k++) needed[ops[i].need[k]] = 0;
        for (int k = 0; k < ops[i].nkill; k++)
            if (resident[ops[i].kill[k]]) {
                resident[ops[i].kill[k]] = 0;
                used -= chunk_bytes[ops[i].kill[k]];
            }
    }
    free(resident);
    free(needed);
    free(cand);
    ember__trace_free(&t);
    return st;
}
