/*
 * CUDA kernels of the graph ops (engine/graph_ops.c has the CPU ones and the
 * registry). Entries are filled op by op; the executor reports EMBER_ERR_UNSUPPORTED
 * naming the op for an entry that is still NULL.
 */
#include "engine/graph_internal.h"

extern "C" const ember__kernel ember__graph_cuda_kernels[EMBER__OP_COUNT] = {};
