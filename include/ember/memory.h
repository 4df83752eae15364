/*
 * ember/memory.h: the memory manager. Every byte the engine allocates goes through it.
 *
 * Memory lives in tiers: DEVICE (GPU memory, or a budgeted region of DRAM when the
 * manager's device is the CPU, so placement logic runs and is tested anywhere), HOST
 * (pageable DRAM) and PINNED (page-locked DRAM for fast transfers; plain DRAM when
 * CUDA is absent). Each tier has a byte budget; each allocation is tagged with a kind
 * (parameter, gradient, optimizer state, activation, cache, staging), and the manager
 * keeps live and peak bytes per tier and kind. An allocation that would exceed its
 * tier's budget fails with EMBER_ERR_OUT_OF_MEMORY naming tier, request and budget;
 * nothing is allocated in that case. (On the device tier, a heterogeneous memory
 * manager working over this manager first gives back chunk copies it can drop:
 * ember/offload.h, "Other allocations".)
 *
 *     ember_memory *mm;
 *     ember_memory_create(&(ember_memory_config){
 *         .device = EMBER_CPU, .budget = {[EMBER_TIER_DEVICE] = 1u << 30}}, &mm);
 *     void *p;
 *     ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_ACTIVATION, 4096, &p);
 *     ember_memory_free(mm, p);
 *     ember_memory_destroy(mm);
 *
 * Thread safety: a manager may be used from any number of threads at once.
 * Alignment: every allocation is aligned to EMBER_MEM_ALIGN bytes (GPU allocations to
 * at least that).
 */
#ifndef EMBER_MEMORY_H
#define EMBER_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "ember/status.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_MEM_ALIGN 64

typedef enum ember_tier {
    EMBER_TIER_HOST,
    EMBER_TIER_PINNED,
    EMBER_TIER_DEVICE,
    EMBER_TIER_COUNT
} ember_tier;

typedef enum ember_mem_kind {
    EMBER_MEM_OTHER,
    EMBER_MEM_PARAMETER,
    EMBER_MEM_GRADIENT,
    EMBER_MEM_OPTIMIZER_STATE,
    EMBER_MEM_ACTIVATION,
    EMBER_MEM_CACHE,
    EMBER_MEM_STAGING,
    EMBER_MEM_KIND_COUNT
} ember_mem_kind;

/** Budget value meaning "no limit". A budget of 0 in a config also means no limit. */
#define EMBER_BUDGET_UNLIMITED SIZE_MAX

typedef struct ember_memory_config {
    /* Device of the DEVICE tier: EMBER_CUDA(i), or EMBER_CPU for a DRAM stand-in. */
    ember_device device;
    /* Byte budget per tier; 0 = unlimited. */
    size_t budget[EMBER_TIER_COUNT];
} ember_memory_config;

typedef struct ember_memory_stats {
    size_t budget[EMBER_TIER_COUNT];                     /* EMBER_BUDGET_UNLIMITED if none */
    size_t live[EMBER_TIER_COUNT][EMBER_MEM_KIND_COUNT]; /* bytes now allocated */
    size_t peak[EMBER_TIER_COUNT][EMBER_MEM_KIND_COUNT]; /* high-water mark per kind */
    size_t live_total[EMBER_TIER_COUNT];
    size_t peak_total[EMBER_TIER_COUNT]; /* high-water mark of the tier's sum */
    uint64_t allocs;                     /* successful allocations */
    uint64_t frees;
    uint64_t failed; /* allocations refused (budget) or failed (system) */
} ember_memory_stats;

typedef struct ember_memory ember_memory;

/**
 * @param[in] cfg NULL for: device = CPU, all budgets unlimited.
 * @return EMBER_OK, EMBER_ERR_INVALID_ARGUMENT, EMBER_ERR_DEVICE / EMBER_ERR_UNSUPPORTED
 *         (a CUDA device that is absent or not built), EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_memory_create(const ember_memory_config *cfg, ember_memory **out);
/** Frees the manager. Allocations still live are released and reported as a warning. */
void ember_memory_destroy(ember_memory *mm);

/**
 * The process-wide default manager (CPU device tier, no budgets, created on first use),
 * used wherever an API takes a NULL manager. Never destroy it.
 */
ember_memory *ember_memory_default(void);

/**
 * Allocate bytes (> 0) in a tier, tagged with a kind.
 * @return EMBER_OK; EMBER_ERR_OUT_OF_MEMORY when over budget or the system refuses;
 *         EMBER_ERR_INVALID_ARGUMENT for bad tier/kind/NULL out/zero size.
 */
ember_status ember_memory_alloc(ember_memory *mm, ember_tier tier, ember_mem_kind kind,
                                size_t bytes, void **out);
/**
 * Release an allocation of this manager. NULL is a no-op.
 * @return EMBER_OK, or EMBER_ERR_INVALID_ARGUMENT for a pointer this manager does not own
 *         (double free included); the pointer is then left alone.
 */
ember_status ember_memory_free(ember_memory *mm, void *ptr);

/** Tier, kind and size of a live allocation. @return EMBER_OK or EMBER_ERR_NOT_FOUND. */
ember_status ember_memory_query(ember_memory *mm, const void *ptr, ember_tier *tier,
                                ember_mem_kind *kind, size_t *bytes);

/** Change a tier's budget (0 = unlimited). Fails with EMBER_ERR_OUT_OF_MEMORY if below live bytes. */
ember_status ember_memory_set_budget(ember_memory *mm, ember_tier tier, size_t bytes);
/** Device that backs the DEVICE tier. */
ember_device ember_memory_device(const ember_memory *mm);
/** Device on which memory of a tier is addressed (CPU for HOST/PINNED). */
ember_device ember_memory_tier_device(const ember_memory *mm, ember_tier tier);

/** Snapshot of the statistics (consistent: taken under the manager's lock). */
void ember_memory_get_stats(ember_memory *mm, ember_memory_stats *out);
/** Reset peaks to the current live values. */
void ember_memory_reset_peaks(ember_memory *mm);
/**
 * Write the statistics as one JSON object into buf (always NUL-terminated).
 * @return the length the full text needs (excluding NUL), like snprintf.
 */
size_t ember_memory_stats_json(const ember_memory_stats *st, char *buf, size_t n);

const char *ember_tier_name(ember_tier tier);         /* "host", "pinned", "device" */
const char *ember_mem_kind_name(ember_mem_kind kind); /* "parameter", ... */

#ifdef __cplusplus
}
#endif
#endif /* EMBER_MEMORY_H */
