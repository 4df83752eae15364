/*
 * Streams and events. On CUDA they wrap cudaStream_t / cudaEvent_t; on the CPU work
 * is synchronous, so a CPU stream is always idle and a CPU event is complete as soon
 * as it is recorded (its time is taken then, so elapsed times still mean something).
 */
#include <stdlib.h>

#include "engine/internal.h"
#include "ember/stream.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

struct ember_stream {
    ember_device dev;
    void *handle; /* cudaStream_t */
};

struct ember_event {
    ember_device dev;
    void *handle; /* cudaEvent_t */
    double cpu_time;
    int recorded;
};

static int is_cuda(ember_device d) { return d.type == EMBER_DEVICE_CUDA; }

ember_status ember_stream_create(ember_device dev, ember_stream **out) {
    EMBER_CHECK_NULL(out, "ember_stream_create");
    *out = NULL;
    EMBER_TRY(ember_device_check(dev));
    ember_stream *s = calloc(1, sizeof *s);
    if (!s) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_stream_create");
    s->dev = dev;
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(dev)) {
        ember_status st = ember__cuda_stream_create(dev.index, &s->handle);
        if (st != EMBER_OK) {
            free(s);
            return st;
        }
    }
#endif
    *out = s;
    return EMBER_OK;
}

void ember_stream_destroy(ember_stream *s) {
    if (!s || s == ember_stream_default(s->dev)) return;
    /* A destroyed stream must not stay current on this thread. */
    if (ember_stream_get_current(s->dev) == s) ember_stream_set_current(ember_stream_default(s->dev));
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(s->dev)) ember__cuda_stream_destroy(s->dev.index, s->handle);
#endif
    free(s);
}

ember_status ember_stream_synchronize(ember_stream *s) {
    EMBER_CHECK_NULL(s, "ember_stream_synchronize");
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(s->dev)) return ember__cuda_stream_synchronize(s->dev.index, s->handle);
#endif
    return EMBER_OK;
}

ember_status ember_stream_wait_event(ember_stream *s, ember_event *ev) {
    EMBER_CHECK_NULL(ev, "ember_stream_wait_event");
    if (s && !ember_device_equal(s->dev, ev->dev) && is_cuda(s->dev) && !is_cuda(ev->dev))
        return EMBER_OK; /* a CPU event is complete once recorded */
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(ev->dev)) {
        int dev = s ? s->dev.index : ev->dev.index;
        void *h = s ? s->handle : ember__cuda_current_stream(dev);
        return ember__cuda_stream_wait_event(dev, h, ev->handle);
    }
#endif
    return EMBER_OK;
}

/* Default streams as objects, so the previous stream can always be handed back. */
#define MAX_GPUS 64
static ember_stream default_cpu = {{EMBER_DEVICE_CPU, 0}, NULL};
static ember_stream default_cuda[MAX_GPUS];
static _Thread_local ember_stream *current_cpu;
static _Thread_local ember_stream *current_cuda[MAX_GPUS];

ember_stream *ember_stream_default(ember_device dev) {
    if (!is_cuda(dev)) return &default_cpu;
    if (dev.index < 0 || dev.index >= MAX_GPUS) return NULL;
    ember_stream *s = &default_cuda[dev.index];
    s->dev = dev; /* idempotent: every thread writes the same values */
    return s;
}

ember_stream *ember_stream_get_current(ember_device dev) {
    if (!is_cuda(dev)) return current_cpu ? current_cpu : &default_cpu;
    if (dev.index < 0 || dev.index >= MAX_GPUS) return NULL;
    ember_stream *s = current_cuda[dev.index];
    return s ? s : ember_stream_default(dev);
}

ember_stream *ember_stream_set_current(ember_stream *s) {
    if (!s) return NULL;
    ember_stream *prev = ember_stream_get_current(s->dev);
    if (!is_cuda(s->dev)) {
        current_cpu = s;
        return prev;
    }
    if (s->dev.index < 0 || s->dev.index >= MAX_GPUS) return NULL;
    current_cuda[s->dev.index] = s;
#ifdef EMBER_HAVE_CUDA
    ember__cuda_set_current_stream(s->dev.index, s->handle);
#endif
    return prev;
}

ember_device ember_stream_device(const ember_stream *s) { return s ? s->dev : EMBER_CPU; }

ember_status ember_event_create(ember_device dev, ember_event **out) {
    EMBER_CHECK_NULL(out, "ember_event_create");
    *out = NULL;
    EMBER_TRY(ember_device_check(dev));
    ember_event *ev = calloc(1, sizeof *ev);
    if (!ev) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_event_create");
    ev->dev = dev;
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(dev)) {
        ember_status st = ember__cuda_event_create(dev.index, &ev->handle);
        if (st != EMBER_OK) {
            free(ev);
            return st;
        }
    }
#endif
    *out = ev;
    return EMBER_OK;
}

void ember_event_destroy(ember_event *ev) {
    if (!ev) return;
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(ev->dev)) ember__cuda_event_destroy(ev->dev.index, ev->handle);
#endif
    free(ev);
}

ember_status ember_event_record(ember_event *ev, ember_stream *s) {
    EMBER_CHECK_NULL(ev, "ember_event_record");
    if (s && !ember_device_equal(s->dev, ev->dev)) {
        char a[32], b[32];
        return ember__error(EMBER_ERR_DEVICE, "ember_event_record: event on %s, stream on %s",
                            ember_device_format(ev->dev, a, sizeof a),
                            ember_device_format(s->dev, b, sizeof b));
    }
    ev->recorded = 1;
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(ev->dev))
        return ember__cuda_event_record(ev->dev.index, ev->handle,
                                        s ? s->handle : ember__cuda_current_stream(ev->dev.index));
#endif
    ev->cpu_time = ember__now();
    return EMBER_OK;
}

ember_status ember_event_synchronize(ember_event *ev) {
    EMBER_CHECK_NULL(ev, "ember_event_synchronize");
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(ev->dev)) return ember__cuda_event_synchronize(ev->dev.index, ev->handle);
#endif
    return EMBER_OK;
}

int ember_event_query(ember_event *ev) {
    if (!ev) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_event_query: argument 'ev' is NULL");
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(ev->dev)) return ember__cuda_event_query(ev->dev.index, ev->handle);
#endif
    return 1;
}

ember_status ember_event_elapsed_ms(ember_event *start, ember_event *end, float *ms) {
    EMBER_CHECK_NULL(start, "ember_event_elapsed_ms");
    EMBER_CHECK_NULL(end, "ember_event_elapsed_ms");
    EMBER_CHECK_NULL(ms, "ember_event_elapsed_ms");
    if (!start->recorded || !end->recorded)
        return ember__error(EMBER_ERR_STATE, "ember_event_elapsed_ms: an event was never recorded");
    if (!ember_device_equal(start->dev, end->dev))
        return ember__error(EMBER_ERR_DEVICE, "ember_event_elapsed_ms: events on different devices");
#ifdef EMBER_HAVE_CUDA
    if (is_cuda(start->dev))
        return ember__cuda_event_elapsed_ms(start->dev.index, start->handle, end->handle, ms);
#endif
    *ms = (float)((end->cpu_time - start->cpu_time) * 1e3);
    return EMBER_OK;
}
