/*
 * engine/memory_internal.h: the memory manager's hook for a component that holds
 * device memory it can give back on demand (the heterogeneous memory manager's chunk
 * copies). Not installed.
 *
 * Reclaim. An allocation on the DEVICE tier that would exceed the tier's budget does
 * not fail at once when a reclaim callback is registered: the manager calls it, outside
 * its lock, with the bytes missing (request - free under the budget), then checks the
 * budget again, and so on while the callback frees something. Only when the callback
 * frees nothing does the allocation fail, with the usual EMBER_ERR_OUT_OF_MEMORY (its
 * message then also says what the reclaim freed). Host and pinned tiers never reclaim.
 *
 * Re-entrancy: while a thread runs a reclaim callback, its own device allocations do
 * not reclaim again (they fail as if none were registered), so a callback that
 * allocates cannot recurse; callbacks free memory, they should not allocate. A
 * callback may run on any thread that allocates on the device tier, concurrently with
 * its owner's other work: it must serialise with its owner itself (offload.c takes
 * its lock with trylock, and frees nothing when its owner is busy inside it).
 */
#ifndef EMBER_MEMORY_INTERNAL_H
#define EMBER_MEMORY_INTERNAL_H

#include <stddef.h>

#include "ember/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Free device-tier memory of the manager, at least `bytes` if it can; return the bytes
   freed (0: nothing, which ends the allocation's retries). */
typedef size_t (*ember__reclaim_fn)(void *ctx, size_t bytes);

/*
 * Register fn (with ctx) as the manager's reclaim callback (one per manager), or with
 * fn NULL unregister ctx's callback (a no-op when ctx's is not the one registered).
 * Unregistering waits until no thread runs the callback any more, so ctx may be freed
 * afterwards; never unregister from inside the callback. mm NULL: the default manager.
 * @return EMBER_OK; EMBER_ERR_STATE (another callback is registered).
 */
ember_status ember__memory_set_reclaim(ember_memory *mm, ember__reclaim_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_MEMORY_INTERNAL_H */
