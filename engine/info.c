/* Version, compiled-in features with the versions of the libraries behind them, threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef EMBER_HAVE_LMDB
#include <lmdb.h>
#endif
#ifdef EMBER_HAVE_MPI
#include <mpi.h>
#endif
#ifdef EMBER_HAVE_NCCL
#include <nccl.h>
#endif

#include "engine/backend.h"
#include "engine/internal.h"
#include "ember/ember.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

#ifdef EMBER_HAVE_OPENBLAS
/* OpenBLAS extensions; declared here so any cblas.h flavour works. */
char *openblas_get_config(void);
void openblas_set_num_threads(int n);
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

const char *ember_version_string(void) {
    return STR(EMBER_VERSION_MAJOR) "." STR(EMBER_VERSION_MINOR) "." STR(EMBER_VERSION_PATCH);
}

void ember_get_features(ember_features *f) {
    if (!f) return;
    memset(f, 0, sizeof *f);
#ifdef EMBER_HAVE_CUDA
    f->cuda = f->cublas = 1;
    ember__cuda_versions(&f->cuda_runtime_version, &f->cuda_driver_version, &f->cublas_version);
#ifdef EMBER_CUDA_ARCHS
    snprintf(f->cuda_archs, sizeof f->cuda_archs, "%s", EMBER_CUDA_ARCHS);
#endif
#endif
#ifdef EMBER_HAVE_CUSPARSE
    f->cusparse = 1;
#endif
#ifdef EMBER_HAVE_NCCL
    f->nccl = 1;
    if (ncclGetVersion(&f->nccl_version) != ncclSuccess) f->nccl_version = 0;
#endif
#ifdef EMBER_HAVE_MPI
    f->mpi = 1;
    {
        char v[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        if (MPI_Get_library_version(v, &len) == MPI_SUCCESS) {
            v[strcspn(v, ",\n")] = '\0'; /* first clause: "Open MPI v4.1.4" */
            v[sizeof f->mpi_version - 1] = '\0';
            memcpy(f->mpi_version, v, strlen(v) + 1);
        }
    }
#endif
#ifdef EMBER_HAVE_LMDB
    f->lmdb = 1;
    snprintf(f->lmdb_version, sizeof f->lmdb_version, "%s", mdb_version(NULL, NULL, NULL));
#endif
#ifdef EMBER_HAVE_DNNL
    f->dnnl = 1;
#endif
    f->bf16_matmul = ember__matmul_bf16_supported();
#ifdef _OPENMP
    f->openmp = 1;
#endif
    f->openmp_threads = ember_get_num_threads();
#ifdef EMBER_HAVE_BLAS
    f->blas = 1;
#ifdef EMBER_HAVE_OPENBLAS
    snprintf(f->blas_version, sizeof f->blas_version, "%s", openblas_get_config());
#else
    snprintf(f->blas_version, sizeof f->blas_version, "generic cblas");
#endif
#endif
}

int ember_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void ember_set_num_threads(int n) {
    if (n < 1) return;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef EMBER_HAVE_OPENBLAS
    openblas_set_num_threads(n);
#endif
}
