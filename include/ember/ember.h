/*
 * ember/ember.h: the whole public API of libember, plus version and feature queries.
 *
 *     #include <ember/ember.h>
 *     printf("ember %s\n", ember_version_string());
 *     ember_features f; ember_get_features(&f);
 *     if (f.cuda && ember_cuda_device_count() > 0) ...
 *
 * Link with `pkg-config --libs ember` or CMake's `find_package(ember)` and
 * `target_link_libraries(app ember::ember)`.
 */
#ifndef EMBER_EMBER_H
#define EMBER_EMBER_H

#include "ember/cache.h"
#include "ember/checkpoint.h"
#include "ember/datasets.h"
#include "ember/dense.h"
#include "ember/dlrm.h"
#include "ember/embedding.h"
#include "ember/graph.h"
#include "ember/memory.h"
#include "ember/offload.h"
#include "ember/optim.h"
#include "ember/parallel.h"
#include "ember/partition.h"
#include "ember/profiler.h"
#include "ember/rng.h"
#include "ember/status.h"
#include "ember/stream.h"
#include "ember/tensor.h"
#include "ember/train.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_VERSION_MAJOR 0
#define EMBER_VERSION_MINOR 1
#define EMBER_VERSION_PATCH 0

/** "0.1.0" */
const char *ember_version_string(void);

/** What this build of ember was compiled with, and versions where known. */
typedef struct ember_features {
    int cuda, cublas, cusparse, nccl, mpi, lmdb, openmp, blas; /* compiled in: 0/1 */
    int dnnl;               /* oneDNN compiled in */
    int bf16_matmul;        /* ember_set_matmul_precision(EMBER_MATMUL_BF16) is available on this CPU */
    int cuda_runtime_version; /* e.g. 13000; 0 if unknown */
    int cuda_driver_version;  /* 0 when no driver */
    int cublas_version;
    int nccl_version; /* e.g. 22805 */
    char mpi_version[128];
    char lmdb_version[64];
    char blas_version[128]; /* OpenBLAS config string */
    int openmp_threads;     /* threads OpenMP will use */
    char cuda_archs[64];    /* "80;90" */
} ember_features;

void ember_get_features(ember_features *out);

/**
 * Number of CPU threads kernels use (OpenMP and BLAS). Default: $OMP_NUM_THREADS, else
 * the number of cores. Setting it changes both OpenMP and OpenBLAS.
 */
int ember_get_num_threads(void);
void ember_set_num_threads(int n);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_EMBER_H */
