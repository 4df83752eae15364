/* Streams and events on the CPU: synchronous semantics, current-stream bookkeeping. */
#include <unistd.h>

#include "check.h"

int main(void) {
    ember_stream *s = NULL;
    CHECK_OK(ember_stream_create(EMBER_CPU, &s));
    CHECK(ember_stream_get_current(EMBER_CPU) == ember_stream_default(EMBER_CPU));
    ember_stream *prev = ember_stream_set_current(s);
    CHECK(prev == ember_stream_default(EMBER_CPU));
    CHECK(ember_stream_get_current(EMBER_CPU) == s);
    CHECK(ember_stream_set_current(NULL) == NULL);
    CHECK(ember_stream_get_current(EMBER_CPU) == s);

    ember_event *e0 = NULL, *e1 = NULL;
    CHECK_OK(ember_event_create(EMBER_CPU, &e0));
    CHECK_OK(ember_event_create(EMBER_CPU, &e1));
    float ms = -1;
    CHECK_STATUS(ember_event_elapsed_ms(e0, e1, &ms), EMBER_ERR_STATE);
    CHECK_OK(ember_event_record(e0, s));
    usleep(2000);
    CHECK_OK(ember_event_record(e1, NULL));
    CHECK_EQ_INT(ember_event_query(e1), 1);
    CHECK_OK(ember_event_synchronize(e1));
    CHECK_OK(ember_stream_wait_event(s, e1));
    CHECK_OK(ember_stream_synchronize(s));
    CHECK_OK(ember_event_elapsed_ms(e0, e1, &ms));
    CHECK(ms > 0.0f);

    /* destroying the current stream restores the default */
    ember_stream_destroy(s);
    CHECK(ember_stream_get_current(EMBER_CPU) == ember_stream_default(EMBER_CPU));
    ember_stream_destroy(ember_stream_default(EMBER_CPU)); /* ignored */
    CHECK_OK(ember_stream_synchronize(ember_stream_default(EMBER_CPU)));
    ember_event_destroy(e0);
    ember_event_destroy(e1);
    ember_stream_destroy(NULL);
    ember_event_destroy(NULL);

    /* bad arguments */
    CHECK_STATUS(ember_stream_create(EMBER_CPU, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_event_record(NULL, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(ember_event_query(NULL) < 0);
    if (ember_cuda_device_count() == 0) {
        ember_stream *g = NULL;
        ember_status st = ember_stream_create(EMBER_CUDA(0), &g);
        CHECK(st == EMBER_ERR_DEVICE || st == EMBER_ERR_UNSUPPORTED);
        CHECK(g == NULL);
    }
    CHECK_OK(ember_device_synchronize(EMBER_CPU));
    return check_summary();
}
