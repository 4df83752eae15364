/* Small helpers of the datasets module: buffers through the memory manager, thread
 * counts, whole writes and temporary names for write-then-rename. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "datasets/internal.h"
#include "ember/ember.h"

static ember_memory *mm_or_default(ember_memory *mm) { return mm ? mm : ember_memory_default(); }

ember_status ember__ds_alloc(ember_memory *mm, size_t bytes, void **out) {
    return ember_memory_alloc(mm_or_default(mm), EMBER_TIER_HOST, EMBER_MEM_STAGING, bytes ? bytes : 1, out);
}

void ember__ds_free(ember_memory *mm, void *p) {
    if (p && ember_memory_free(mm_or_default(mm), p) != EMBER_OK)
        ember_log(EMBER_LOG_ERROR, "datasets: buffer %p not owned by its memory manager", p);
}

ember_status ember__ds_grow(ember_memory *mm, void **p, size_t old_bytes, size_t new_bytes) {
    void *n;
    EMBER_TRY(ember__ds_alloc(mm, new_bytes, &n));
    if (*p && old_bytes) memcpy(n, *p, old_bytes);
    ember__ds_free(mm, *p);
    *p = n;
    return EMBER_OK;
}

int ember__ds_threads(int requested) {
    int t = requested > 0 ? requested : ember_get_num_threads();
    return t < 1 ? 1 : t;
}

int ember__write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void ember__temp_path(char *buf, size_t n, const char *path) {
    static unsigned counter;
    unsigned c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(buf, n, "%s.tmp.%ld.%u", path, (long)getpid(), c);
}

const char *ember__error_text(void) {
    const char *m = ember_last_error();
    const char *c = strstr(m, ": ");
    return c && strncmp(m, "EMBER_", 6) == 0 ? c + 2 : m;
}
