/*
 * engine/cuda/runtime.cu: the C glue between ember and the CUDA runtime (device
 * queries, allocation, copies, streams, events, the per-thread current stream).
 *
 * Design decisions:
 *  - Every call that acts "on device dev" switches to dev for the duration of the call
 *    and restores the thread's previous device afterwards (DeviceGuard), so allocating
 *    or recording on cuda:1 never silently moves a thread that was working on cuda:0.
 *    Only the backend's activate entry changes the current device on purpose.
 *  - A failed runtime call leaves its error as the runtime's "last error"; we read it
 *    back with cudaGetLastError() right away, so a later kernel-launch check does not
 *    report an old failure under a new name. (Sticky errors such as an illegal address
 *    cannot be cleared; they keep failing every call, which is the truth.)
 *  - Side streams are created non-blocking: they do not synchronise implicitly with
 *    the legacy default stream, which is what lets a copy stream overlap compute that
 *    runs on the default stream. Ordering between streams is expressed with events, as
 *    ember/stream.h shows.
 *  - The current stream is a thread_local table indexed by device (64 devices): a
 *    plain array, no locks, initially NULL (the legacy default stream).
 *
 * Status mapping: allocation failures (cudaErrorMemoryAllocation) become
 * EMBER_ERR_OUT_OF_MEMORY, as ember/memory.h promises for "the system refuses";
 * every other runtime failure becomes EMBER_ERR_CUDA. Messages name the call, its
 * size, the device and CUDA's error string:
 *     "EMBER_ERR_OUT_OF_MEMORY: cudaMalloc(1048576 B) on cuda:0: out of memory"
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <library_types.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/cuda/cuda_runtime.h" /* ember's header, not CUDA's cuda_runtime.h */
#include "engine/internal.h"

namespace {

constexpr int kMaxDevices = 64;

/* This thread's current stream per device; NULL = the legacy default stream. */
thread_local void *tls_current_stream[kMaxDevices];

/*
 * Record a failed runtime call. `what` is printf-style and names the call and its
 * arguments ("cudaMalloc(%zu B)"); dev < 0 means the call is not tied to a device.
 */
ember_status fail(cudaError_t err, int dev, const char *what, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

ember_status fail(cudaError_t err, int dev, const char *what, ...) {
    (void)cudaGetLastError(); /* consume it: later launch checks must not see it */
    char call[192];
    va_list ap;
    va_start(ap, what);
    vsnprintf(call, sizeof call, what, ap);
    va_end(ap);
    ember_status st = err == cudaErrorMemoryAllocation ? EMBER_ERR_OUT_OF_MEMORY : EMBER_ERR_CUDA;
    if (dev >= 0)
        return ember__error(st, "%s on cuda:%d: %s", call, dev, cudaGetErrorString(err));
    return ember__error(st, "%s: %s", call, cudaGetErrorString(err));
}

/* Makes dev current for the guard's lifetime, then restores the previous device. */
class DeviceGuard {
  public:
    DeviceGuard() = default;
    DeviceGuard(const DeviceGuard &) = delete;
    DeviceGuard &operator=(const DeviceGuard &) = delete;
    ~DeviceGuard() {
        if (switched_) (void)cudaSetDevice(prev_); /* best effort: nothing to report to */
    }

    /* `call` names the operation for the error message. */
    ember_status enter(int dev, const char *call) {
        if (dev < 0 || dev >= kMaxDevices)
            return ember__error(EMBER_ERR_DEVICE, "%s: cuda:%d is not a valid device index",
                                call, dev);
        cudaError_t err = cudaGetDevice(&prev_);
        if (err != cudaSuccess) return fail(err, dev, "%s: cudaGetDevice", call);
        if (prev_ != dev) {
            err = cudaSetDevice(dev);
            if (err != cudaSuccess) return fail(err, dev, "%s: cudaSetDevice", call);
            switched_ = true;
        }
        return EMBER_OK;
    }

  private:
    int prev_ = 0;
    bool switched_ = false;
};

const char *copy_kind_name(int kind) {
    switch (kind) {
    case EMBER__H2D: return "H2D";
    case EMBER__D2H: return "D2H";
    case EMBER__D2D: return "D2D";
    case EMBER__H2H: return "H2H";
    default: return "?";
    }
}

} // namespace

extern "C" {

/* ---- devices and versions ---- */

int ember__cuda_device_count(void) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        /* No driver, no device, or a driver older than the runtime: not an error here,
         * it simply means CUDA work is unavailable. */
        (void)cudaGetLastError();
        return 0;
    }
    return n < 0 ? 0 : n;
}

ember_status ember__cuda_get_device_info(int dev, ember__cuda_device_info *out) {
    EMBER_CHECK_NULL(out, "ember__cuda_get_device_info");
    memset(out, 0, sizeof *out);
    int count = ember__cuda_device_count();
    if (dev < 0 || dev >= count)
        return ember__error(EMBER_ERR_DEVICE, "ember__cuda_get_device_info: cuda:%d does not exist "
                            "(%d CUDA device%s)", dev, count, count == 1 ? "" : "s");

    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, dev);
    if (err != cudaSuccess) return fail(err, dev, "cudaGetDeviceProperties");
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->total_mem = prop.totalGlobalMem;
    out->cc_major = prop.major;
    out->cc_minor = prop.minor;
    out->sm_count = prop.multiProcessorCount;

    /* Free memory is only reported for the current device (and needs its context). */
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaMemGetInfo"));
    size_t free_b = 0, total_b = 0;
    err = cudaMemGetInfo(&free_b, &total_b);
    if (err != cudaSuccess) return fail(err, dev, "cudaMemGetInfo");
    out->free_mem = free_b;
    return EMBER_OK;
}

void ember__cuda_versions(int *runtime, int *driver, int *cublas) {
    if (runtime) {
        int v = 0;
        if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
            (void)cudaGetLastError();
            v = 0;
        }
        *runtime = v;
    }
    if (driver) {
        int v = 0; /* cudaDriverGetVersion reports 0 itself when no driver is installed */
        if (cudaDriverGetVersion(&v) != cudaSuccess) {
            (void)cudaGetLastError();
            v = 0;
        }
        *driver = v;
    }
    if (cublas) {
        /* cublasGetVersion needs a handle, hence a GPU; cublasGetProperty does not.
         * Encoded like CUBLAS_VERSION and cublasGetVersion: major*10000 + minor*100 + patch. */
        int major = 0, minor = 0, patch = 0;
        if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
            cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
            cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
            *cublas = major * 10000 + minor * 100 + patch;
        else
            *cublas = 0;
    }
}

/* ---- memory ---- */

ember_status ember__cuda_malloc(int dev, size_t bytes, void **out) {
    EMBER_CHECK_NULL(out, "ember__cuda_malloc");
    *out = NULL;
    if (bytes == 0) return EMBER_OK; /* nothing to allocate; NULL is a valid "no memory" */
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaMalloc"));
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes); /* 256-byte aligned, > EMBER_MEM_ALIGN */
    if (err != cudaSuccess) return fail(err, dev, "cudaMalloc(%zu B)", bytes);
    *out = p;
    return EMBER_OK;
}

ember_status ember__cuda_free(int dev, void *ptr) {
    if (ptr == NULL) return EMBER_OK;
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaFree"));
    cudaError_t err = cudaFree(ptr);
    if (err != cudaSuccess) return fail(err, dev, "cudaFree(%p)", ptr);
    return EMBER_OK;
}

ember_status ember__cuda_host_alloc(size_t bytes, void **out) {
    EMBER_CHECK_NULL(out, "ember__cuda_host_alloc");
    *out = NULL;
    if (bytes == 0) return EMBER_OK;
    void *p = NULL;
    /* Portable: the pinning is valid for every device's context, so one staging
     * buffer can feed any GPU. */
    cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (err != cudaSuccess) return fail(err, -1, "cudaHostAlloc(%zu B, portable)", bytes);
    *out = p;
    return EMBER_OK;
}

ember_status ember__cuda_host_free(void *ptr) {
    if (ptr == NULL) return EMBER_OK;
    cudaError_t err = cudaFreeHost(ptr);
    if (err != cudaSuccess) return fail(err, -1, "cudaFreeHost(%p)", ptr);
    return EMBER_OK;
}

ember_status ember__cuda_memcpy(int dev, void *dst, const void *src, size_t bytes, int kind,
                                int wait) {
    if (bytes == 0) return EMBER_OK;
    EMBER_CHECK_NULL(dst, "ember__cuda_memcpy");
    EMBER_CHECK_NULL(src, "ember__cuda_memcpy");
    cudaMemcpyKind ck;
    switch (kind) {
    case EMBER__H2D: ck = cudaMemcpyHostToDevice; break;
    case EMBER__D2H: ck = cudaMemcpyDeviceToHost; break;
    /* Default lets unified addressing route a copy between two GPUs as well. */
    case EMBER__D2D: ck = cudaMemcpyDefault; break;
    case EMBER__H2H: ck = cudaMemcpyHostToHost; break;
    default:
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember__cuda_memcpy: unknown copy kind %d",
                            kind);
    }
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaMemcpyAsync"));
    cudaStream_t s = (cudaStream_t)ember__cuda_current_stream(dev);
    cudaError_t err = cudaMemcpyAsync(dst, src, bytes, ck, s);
    if (err != cudaSuccess)
        return fail(err, dev, "cudaMemcpyAsync(%s, %zu B)", copy_kind_name(kind), bytes);
    if (wait) {
        err = cudaStreamSynchronize(s);
        if (err != cudaSuccess)
            return fail(err, dev, "cudaStreamSynchronize after cudaMemcpyAsync(%s, %zu B)",
                        copy_kind_name(kind), bytes);
    }
    return EMBER_OK;
}

/* ---- streams ---- */

ember_status ember__cuda_stream_create(int dev, void **out) {
    EMBER_CHECK_NULL(out, "ember__cuda_stream_create");
    *out = NULL;
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaStreamCreateWithFlags"));
    cudaStream_t s = NULL;
    cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (err != cudaSuccess) return fail(err, dev, "cudaStreamCreateWithFlags(non-blocking)");
    *out = (void *)s;
    return EMBER_OK;
}

ember_status ember__cuda_stream_destroy(int dev, void *s) {
    if (s == NULL) return EMBER_OK; /* the default stream is never destroyed */
    /* Do not leave this thread pointing at a dead stream. Other threads' tables cannot
     * be reached; destroying a stream another thread still uses is a caller bug. */
    if (dev >= 0 && dev < kMaxDevices && tls_current_stream[dev] == s)
        tls_current_stream[dev] = NULL;
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaStreamDestroy"));
    cudaError_t err = cudaStreamDestroy((cudaStream_t)s);
    if (err != cudaSuccess) return fail(err, dev, "cudaStreamDestroy");
    return EMBER_OK;
}

ember_status ember__cuda_stream_synchronize(int dev, void *s) {
    /* The guard matters for s == NULL: the legacy default stream is per device. */
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaStreamSynchronize"));
    cudaError_t err = cudaStreamSynchronize((cudaStream_t)s);
    if (err != cudaSuccess) return fail(err, dev, "cudaStreamSynchronize");
    return EMBER_OK;
}

ember_status ember__cuda_stream_wait_event(int dev, void *s, void *ev) {
    EMBER_CHECK_NULL(ev, "ember__cuda_stream_wait_event");
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaStreamWaitEvent"));
    cudaError_t err = cudaStreamWaitEvent((cudaStream_t)s, (cudaEvent_t)ev, 0);
    if (err != cudaSuccess) return fail(err, dev, "cudaStreamWaitEvent");
    return EMBER_OK;
}

void *ember__cuda_current_stream(int dev) {
    /* An index outside the table can only come from a caller bug; the default stream
     * is still a correct (if serialising) answer. */
    if (dev < 0 || dev >= kMaxDevices) return NULL;
    return tls_current_stream[dev];
}

void *ember__cuda_set_current_stream(int dev, void *s) {
    EMBER_ASSERT(dev >= 0 && dev < kMaxDevices);
    void *prev = tls_current_stream[dev];
    tls_current_stream[dev] = s;
    return prev;
}

/* ---- events ---- */

ember_status ember__cuda_event_create(int dev, void **out) {
    EMBER_CHECK_NULL(out, "ember__cuda_event_create");
    *out = NULL;
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaEventCreateWithFlags"));
    cudaEvent_t ev = NULL;
    /* cudaEventDefault keeps timing enabled, so ember_event_elapsed_ms works on any event. */
    cudaError_t err = cudaEventCreateWithFlags(&ev, cudaEventDefault);
    if (err != cudaSuccess) return fail(err, dev, "cudaEventCreateWithFlags(timing)");
    *out = (void *)ev;
    return EMBER_OK;
}

ember_status ember__cuda_event_destroy(int dev, void *ev) {
    if (ev == NULL) return EMBER_OK;
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaEventDestroy"));
    cudaError_t err = cudaEventDestroy((cudaEvent_t)ev);
    if (err != cudaSuccess) return fail(err, dev, "cudaEventDestroy");
    return EMBER_OK;
}

ember_status ember__cuda_event_record(int dev, void *ev, void *s) {
    EMBER_CHECK_NULL(ev, "ember__cuda_event_record");
    /* An event must be recorded on a stream of its own device; with the guard, s == NULL
     * names dev's default stream rather than whichever device the thread was on. */
    DeviceGuard guard;
    EMBER_TRY(guard.enter(dev, "cudaEventRecord"));
    cudaError_t err = cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)s);
    if (err != cudaSuccess) return fail(err, dev, "cudaEventRecord");
    return EMBER_OK;
}

ember_status ember__cuda_event_synchronize(int dev, void *ev) {
    EMBER_CHECK_NULL(ev, "ember__cuda_event_synchronize");
    cudaError_t err = cudaEventSynchronize((cudaEvent_t)ev);
    if (err != cudaSuccess) return fail(err, dev, "cudaEventSynchronize");
    return EMBER_OK;
}

int ember__cuda_event_query(int dev, void *ev) {
    if (ev == NULL)
        return (int)ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                 "ember__cuda_event_query: argument 'ev' is NULL");
    cudaError_t err = cudaEventQuery((cudaEvent_t)ev);
    if (err == cudaSuccess) return 1;
    if (err == cudaErrorNotReady) {
        /* "Not ready" is an answer, not a failure; make sure it is not left behind as
         * the last error for the next launch check to trip over. */
        (void)cudaGetLastError();
        return 0;
    }
    return (int)fail(err, dev, "cudaEventQuery");
}

ember_status ember__cuda_event_elapsed_ms(int dev, void *start, void *end, float *ms) {
    EMBER_CHECK_NULL(start, "ember__cuda_event_elapsed_ms");
    EMBER_CHECK_NULL(end, "ember__cuda_event_elapsed_ms");
    EMBER_CHECK_NULL(ms, "ember__cuda_event_elapsed_ms");
    *ms = 0.0f;
    /* cudaEventElapsedTime fails with "not ready" while end is pending; the caller asked
     * for a number, so wait for it (start precedes end on the timeline). */
    cudaError_t err = cudaEventSynchronize((cudaEvent_t)end);
    if (err != cudaSuccess) return fail(err, dev, "cudaEventSynchronize(end) for elapsed time");
    err = cudaEventElapsedTime(ms, (cudaEvent_t)start, (cudaEvent_t)end);
    if (err != cudaSuccess) return fail(err, dev, "cudaEventElapsedTime");
    return EMBER_OK;
}

} // extern "C"
