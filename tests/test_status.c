/* Statuses, detail messages, logging and the abort hook. */
#include <pthread.h>
#include <setjmp.h>

#include "check.h"
#include "engine/internal.h"

static void *other_thread(void *arg) {
    (void)arg;
    /* A fresh thread starts with no error, whatever the main thread did. */
    int clean = ember_last_error()[0] == '\0' && ember_last_status() == EMBER_OK;
    ember__error(EMBER_ERR_IO, "thread-local %d", 2);
    return (void *)(intptr_t)clean;
}

static int log_calls;
static char log_last[256];
static void capture_log(ember_log_level level, const char *msg, void *user) {
    (void)level;
    (*(int *)user)++;
    snprintf(log_last, sizeof log_last, "%s", msg);
}

static jmp_buf abort_jmp;
static char abort_expr[128];
static void test_abort(const char *file, int line, const char *expr, void *user) {
    (void)file;
    (void)line;
    (void)user;
    snprintf(abort_expr, sizeof abort_expr, "%s", expr);
    longjmp(abort_jmp, 1);
}

int main(void) {
    /* every status has a distinct name and a message */
    for (int i = 0; i < EMBER_STATUS_COUNT; i++) {
        ember_status st = ember_status_at(i);
        const char *name = ember_status_name(st), *msg = ember_strerror(st);
        CHECK(strncmp(name, "EMBER_", 6) == 0);
        CHECK(strcmp(name, "EMBER_UNKNOWN") != 0);
        CHECK(strcmp(msg, "unknown status") != 0 && msg[0] != '\0');
        CHECK(st == EMBER_OK || st < 0);
        for (int j = 0; j < i; j++) {
            CHECK(ember_status_at(j) != st);
            CHECK(strcmp(ember_status_name(ember_status_at(j)), name) != 0);
        }
    }
    CHECK_STR(ember_status_name(EMBER_OK), "EMBER_OK");
    CHECK_STR(ember_status_name(EMBER_ERR_OUT_OF_MEMORY), "EMBER_ERR_OUT_OF_MEMORY");
    CHECK_STR(ember_status_name((ember_status)-999), "EMBER_UNKNOWN");
    CHECK_STR(ember_strerror((ember_status)12345), "unknown status");
    CHECK_EQ_INT(ember_status_at(EMBER_STATUS_COUNT), EMBER_ERR_INVALID_ARGUMENT);

    /* detail messages start with the status name */
    ember_clear_error();
    CHECK_STR(ember_last_error(), "");
    /* wrapping the last error in a new one keeps its text (formatted aside, not in place) */
    ember__error(EMBER_ERR_IO, "inner %d", 7);
    ember__error(EMBER_ERR_OUT_OF_MEMORY, "outer: workspace of %d B: %s", 64, ember_last_error());
    CHECK_STR(ember_last_error(), "EMBER_ERR_OUT_OF_MEMORY: outer: workspace of 64 B: EMBER_ERR_IO: inner 7");
    CHECK_EQ_INT(ember__error(EMBER_ERR_PARSE, "criteo line %d field %d", 4182, 15), EMBER_ERR_PARSE);
    CHECK_STR(ember_last_error(), "EMBER_ERR_PARSE: criteo line 4182 field 15");
    CHECK_EQ_INT(ember_last_status(), EMBER_ERR_PARSE);

    /* a long message is truncated, not overflowed */
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ember__error(EMBER_ERR_IO, "%s", big);
    CHECK(strlen(ember_last_error()) < 1024);

    /* thread-local */
    ember__error(EMBER_ERR_INDEX, "main");
    pthread_t th;
    void *clean = NULL;
    pthread_create(&th, NULL, other_thread, NULL);
    pthread_join(th, &clean);
    CHECK(clean != NULL);
    CHECK_STR(ember_last_error(), "EMBER_ERR_INDEX: main");

    /* public functions report bad arguments through the same channel */
    ember_device dev;
    CHECK_STATUS(ember_device_parse("gpu:0", &dev), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "\"gpu:0\"") != NULL);
    CHECK_STATUS(ember_device_parse(NULL, &dev), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ember_last_error(), "'s' is NULL") != NULL);

    /* log callback and level */
    ember_log_set_callback(capture_log, &log_calls);
    ember_log_set_level(EMBER_LOG_INFO);
    ember_log(EMBER_LOG_DEBUG, "hidden");
    CHECK_EQ_INT(log_calls, 0);
    ember_log(EMBER_LOG_WARN, "shown %d", 7);
    CHECK_EQ_INT(log_calls, 1);
    CHECK_STR(log_last, "shown 7");
    ember_log_set_level(EMBER_LOG_DEBUG);
    ember__error(EMBER_ERR_IO, "logged at debug");
    CHECK_EQ_INT(log_calls, 2);
    CHECK_STR(log_last, "EMBER_ERR_IO: logged at debug");
    ember_log_set_callback(NULL, NULL);
    ember_log_set_level(EMBER_LOG_WARN);
    CHECK_EQ_INT(ember_log_get_level(), EMBER_LOG_WARN);

    /* replaceable abort hook */
    ember_set_abort_hook(test_abort, NULL);
    volatile int reached = 0;
    if (setjmp(abort_jmp) == 0) {
        EMBER_ASSERT(1 + 1 == 3);
        reached = 1;
    }
    CHECK_EQ_INT(reached, 0);
    CHECK_STR(abort_expr, "1 + 1 == 3");
    EMBER_ASSERT(1 + 1 == 2); /* true invariants do nothing */
    ember_set_abort_hook(NULL, NULL);

    /* dtype and device names */
    for (int i = 0; i < EMBER_DTYPE_COUNT; i++) {
        ember_dtype dt;
        CHECK_OK(ember_dtype_parse(ember_dtype_name((ember_dtype)i), &dt));
        CHECK_EQ_INT(dt, i);
    }
    ember_dtype dt;
    CHECK_STATUS(ember_dtype_parse("f64", &dt), EMBER_ERR_DTYPE);
    CHECK_EQ_INT(ember_dtype_size(EMBER_DTYPE_BF16), 2);
    CHECK_EQ_INT(ember_dtype_size((ember_dtype)99), 0);
    CHECK_STR(ember_dtype_name((ember_dtype)-1), "invalid");
    char buf[32];
    CHECK_OK(ember_device_parse("cuda:3", &dev));
    CHECK_STR(ember_device_format(dev, buf, sizeof buf), "cuda:3");
    CHECK_OK(ember_device_parse("cuda", &dev));
    CHECK_EQ_INT(dev.index, 0);
    CHECK_OK(ember_device_parse("cpu", &dev));
    CHECK_STR(ember_device_format(dev, buf, sizeof buf), "cpu");
    CHECK_STATUS(ember_device_parse("cuda:", &dev), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_device_parse("cuda:1x", &dev), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_device_parse("cuda:-1", &dev), EMBER_ERR_INVALID_ARGUMENT);
    /* a GPU that is not there is a clear status, not a crash */
    ember_status st = ember_device_check(EMBER_CUDA(ember_cuda_device_count()));
    CHECK(st == EMBER_ERR_DEVICE || st == EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "cuda:") != NULL);

    /* version */
    CHECK_STR(ember_version_string(), "0.1.0");
    ember_features f;
    ember_get_features(&f);
    CHECK(f.openmp_threads >= 1);
    return check_summary();
}
