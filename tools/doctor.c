/*
 * ember doctor: what this build can do on this machine. Features are what was
 * compiled in (with the versions of the libraries found at run time); the machine
 * figures are measured now, the same way `ember bench limits` measures them.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "ember/ember.h"
#include "tools/cli.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

static const char *mark(int on) { return on ? "\xE2\x9C\x93" : "\xE2\x9C\x97"; } /* ✓ ✗ */

static void version3(char *buf, size_t n, int v, int major_div) {
    /* CUDA style 13000 -> "13.0"; NCCL style 22805 -> "2.28.5" */
    if (v <= 0) snprintf(buf, n, "unknown");
    else if (major_div == 1000) snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
    else snprintf(buf, n, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
}

int ember_cmd_doctor(int argc, char **argv) {
    ember_bench_opts o = {.quick = 1};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) o.tiny = 1;
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "ember doctor: unknown option '%s' (--quick, --json)\n", argv[i]);
            return 2;
        }
    }
    ember_features f;
    ember_get_features(&f);
    char cuda_rt[32], cuda_drv[32], nccl[32];
    version3(cuda_rt, sizeof cuda_rt, f.cuda_runtime_version, 1000);
    version3(cuda_drv, sizeof cuda_drv, f.cuda_driver_version, 1000);
    version3(nccl, sizeof nccl, f.nccl_version, 10000);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double mem_gib = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1u << 30);
    int ngpu = ember_cuda_device_count();

    ember_limits l;
    ember_status st = ember_bench_measure_limits(&o, &l);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember doctor: measuring this machine failed: %s\n", ember_last_error());
        return 1;
    }
    if (json) {
        printf("{\"version\":\"%s\",\"features\":{\"cuda\":%d,\"cublas\":%d,\"cusparse\":%d,\"nccl\":%d,"
               "\"mpi\":%d,\"lmdb\":%d,\"openmp\":%d,\"blas\":%d},\"threads\":%d,\"cores\":%ld,"
               "\"memory_gib\":%.1f,\"copy_gbs\":%.2f,\"gather_rows_s\":%.4g,\"sgemm_gflops\":%.2f,"
               "\"gpus\":%d}\n",
               ember_version_string(), f.cuda, f.cublas, f.cusparse, f.nccl, f.mpi, f.lmdb, f.openmp,
               f.blas, f.openmp_threads, cores, mem_gib, l.copy_gbs, l.gather_rows_s, l.sgemm_gflops, ngpu);
        return 0;
    }
    printf("ember %s doctor\n\nfeatures\n", ember_version_string());
    printf("  %s CUDA      %s%s%s%s%s\n", mark(f.cuda), f.cuda ? "runtime " : "not built",
           f.cuda ? cuda_rt : "", f.cuda ? ", driver " : "",
           f.cuda ? (f.cuda_driver_version ? cuda_drv : "none") : "", f.cuda ? "" : "");
    if (f.cuda) printf("               kernels for sm %s\n", f.cuda_archs);
    printf("  %s cuBLAS    %s\n", mark(f.cublas), f.cublas ? "built" : "not built");
    printf("  %s cuSPARSE  %s\n", mark(f.cusparse), f.cusparse ? "built" : "not built");
    printf("  %s NCCL      %s\n", mark(f.nccl), f.nccl ? nccl : "not built");
    printf("  %s MPI       %s\n", mark(f.mpi), f.mpi ? f.mpi_version : "not built");
    printf("  %s LMDB      %s\n", mark(f.lmdb), f.lmdb ? f.lmdb_version : "not built");
    printf("  %s OpenMP    %s\n", mark(f.openmp), f.openmp ? "built" : "not built (single thread)");
    printf("  %s BLAS      %s\n", mark(f.blas), f.blas ? f.blas_version : "not built (reference GEMM)");
    printf("  %s oneDNN    %s\n", mark(f.dnnl && f.bf16_matmul),
           !f.dnnl ? "not built (matmul-precision bf16 refused)"
           : f.bf16_matmul ? "built; bf16 matmuls native on this CPU (matmul-precision bf16)"
                           : "built; this CPU has neither AMX nor AVX512-BF16 (matmul-precision bf16 refused)");
    printf("\nmachine\n");
    printf("  threads      %d used by kernels, %ld cores online\n", f.openmp_threads, cores);
    printf("  memory       %.1f GiB\n", mem_gib);
    printf("  memcpy       %.2f GB/s (read + write, %lld MiB buffers)\n", l.copy_gbs,
           (long long)(l.copy_bytes >> 20));
    printf("  row gather   %.3g rows/s of 256 B = %.2f GB/s (%lld MiB table)\n", l.gather_rows_s,
           l.gather_gbs, (long long)(l.gather_table_bytes >> 20));
    printf("  sgemm        %.1f GFLOP/s (f32, n=%lld)\n", l.sgemm_gflops, (long long)l.sgemm_n);
    printf("\nGPUs\n");
    if (ngpu == 0) {
        printf("  none found%s\n", f.cuda ? " (GPU tests will be skipped)" : " (ember built without CUDA)");
    }
#ifdef EMBER_HAVE_CUDA
    for (int i = 0; i < ngpu; i++) {
        ember__cuda_device_info info;
        if (ember__cuda_get_device_info(i, &info) == EMBER_OK)
            printf("  cuda:%d  %s, sm_%d%d, %d SMs, %.1f GiB (%.1f GiB free)\n", i, info.name,
                   info.cc_major, info.cc_minor, info.sm_count, (double)info.total_mem / (1u << 30),
                   (double)info.free_mem / (1u << 30));
        else
            printf("  cuda:%d  %s\n", i, ember_last_error());
    }
#endif
    return 0;
}
