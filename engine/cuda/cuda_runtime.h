/*
 * engine/cuda/cuda_runtime.h: C entry points into the CUDA runtime glue
 * (engine/cuda/runtime.cu). Not installed. Only compiled when EMBER_HAVE_CUDA.
 *
 * Every function maps CUDA/cuBLAS failures to EMBER_ERR_CUDA / EMBER_ERR_CUBLAS with a
 * message naming the call, the CUDA error string and the device.
 */
#ifndef EMBER_CUDA_RUNTIME_H
#define EMBER_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of devices; 0 when the driver is missing or reports none (never an error). */
int ember__cuda_device_count(void);
typedef struct ember__cuda_device_info {
    char name[256];
    size_t total_mem, free_mem;
    int cc_major, cc_minor, sm_count;
} ember__cuda_device_info;
ember_status ember__cuda_get_device_info(int dev, ember__cuda_device_info *out);
/* Versions as CUDA reports them (e.g. 13000 for 13.0); 0 when unavailable. */
void ember__cuda_versions(int *runtime, int *driver, int *cublas);

ember_status ember__cuda_malloc(int dev, size_t bytes, void **out);
ember_status ember__cuda_free(int dev, void *ptr);
ember_status ember__cuda_host_alloc(size_t bytes, void **out); /* pinned, portable */
ember_status ember__cuda_host_free(void *ptr);

enum { EMBER__H2D, EMBER__D2H, EMBER__D2D, EMBER__H2H };
/* Async copy on the current stream of dev; waits for it when wait != 0. */
ember_status ember__cuda_memcpy(int dev, void *dst, const void *src, size_t bytes, int kind,
                                int wait);

/* Streams: opaque cudaStream_t handles. NULL means the legacy default stream. */
ember_status ember__cuda_stream_create(int dev, void **out);
ember_status ember__cuda_stream_destroy(int dev, void *s);
ember_status ember__cuda_stream_synchronize(int dev, void *s);
ember_status ember__cuda_stream_wait_event(int dev, void *s, void *ev);
/* This thread's current stream for dev (NULL = default); set returns the previous. */
void *ember__cuda_current_stream(int dev);
void *ember__cuda_set_current_stream(int dev, void *s);

ember_status ember__cuda_event_create(int dev, void **out);
ember_status ember__cuda_event_destroy(int dev, void *ev);
ember_status ember__cuda_event_record(int dev, void *ev, void *s);
ember_status ember__cuda_event_synchronize(int dev, void *ev);
int ember__cuda_event_query(int dev, void *ev); /* 1 done, 0 pending, <0 status */
ember_status ember__cuda_event_elapsed_ms(int dev, void *start, void *end, float *ms);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CUDA_RUNTIME_H */
