/*
 * ember/stream.h: streams and events, for overlapping transfers with compute.
 *
 * A stream is an ordered queue of work on one device; an event marks a point in a
 * stream that other streams or the host can wait for. On CUDA these are CUDA streams
 * and events. On the CPU, work runs synchronously when it is issued, so a CPU stream
 * is always idle and its events are always complete: code written for overlap runs
 * unchanged (and correctly) on a CPU-only machine.
 *
 * Each thread has a current stream per device (initially the device's default stream)
 * on which the kernels of ember/tensor.h are queued. Streams are limited to GPUs 0..63.
 *
 *     ember_stream *copy_s;
 *     ember_stream_create(EMBER_CUDA(0), &copy_s);
 *     ember_stream *prev = ember_stream_set_current(copy_s);
 *     ember_tensor_copy(dev_rows, pinned_rows);       // queued on copy_s
 *     ember_stream_set_current(prev);
 *     ember_event *ev; ember_event_create(EMBER_CUDA(0), &ev);
 *     ember_event_record(ev, copy_s);
 *     ember_stream_wait_event(NULL, ev);               // compute waits for the copy
 *
 * Thread safety: streams and events may be shared between threads; the current
 * stream is per thread.
 */
#ifndef EMBER_STREAM_H
#define EMBER_STREAM_H

#include "ember/status.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_stream ember_stream;
typedef struct ember_event ember_event;

ember_status ember_stream_create(ember_device dev, ember_stream **out);
void ember_stream_destroy(ember_stream *s);
/** Wait until all work queued on s has finished (CPU streams: returns at once). */
ember_status ember_stream_synchronize(ember_stream *s);
/** Make s wait (on the device, not the host) for ev. NULL = the current CUDA stream of ev's device. */
ember_status ember_stream_wait_event(ember_stream *s, ember_event *ev);
/**
 * Set this thread's current stream for s's device and return the previous one (hand it
 * back to restore). NULL is ignored and returns NULL.
 */
ember_stream *ember_stream_set_current(ember_stream *s);
/** This thread's current stream for dev (the default stream unless set). */
ember_stream *ember_stream_get_current(ember_device dev);
/** The default stream of dev (never destroy it); NULL for a GPU index above 63. */
ember_stream *ember_stream_default(ember_device dev);
ember_device ember_stream_device(const ember_stream *s);

ember_status ember_event_create(ember_device dev, ember_event **out);
void ember_event_destroy(ember_event *ev);
/** Record ev at the current end of s (NULL = current stream of ev's device). */
ember_status ember_event_record(ember_event *ev, ember_stream *s);
ember_status ember_event_synchronize(ember_event *ev);
/** 1 when complete, 0 when pending, or a negative status. */
int ember_event_query(ember_event *ev);
/** Milliseconds between two recorded events. */
ember_status ember_event_elapsed_ms(ember_event *start, ember_event *end, float *ms);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_STREAM_H */
