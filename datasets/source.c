/*
 * Byte sources for the readers: a file, stdin or a memory buffer, gzip or not.
 *
 * gzip is recognised by its magic bytes, not by the file name, so `zcat`-less
 * pipelines (curl ... | ember convert -) work, and a plain file named .gz is read as
 * it is. Inflation runs over our own input buffer with z_stream rather than gzdopen,
 * so the magic can be peeked on a pipe without losing bytes, and concatenated gzip
 * members (pigz, split archives) are read through.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/internal.h"
#ifdef EMBER_HAVE_ZLIB
#include <zlib.h>
#endif

#define ZIN_BYTES ((size_t)1 << 20)

static ember_status raw_read(ember__source *s, unsigned char *buf, size_t cap, size_t *got) {
    *got = 0;
    if (s->mem) {
        size_t n = s->mem_len - s->mem_pos;
        if (n > cap) n = cap;
        memcpy(buf, s->mem + s->mem_pos, n);
        s->mem_pos += n;
        *got = n;
        s->raw_bytes += n;
        if (s->mem_pos == s->mem_len) s->raw_eof = 1;
        return EMBER_OK;
    }
    while (*got < cap) {
        ssize_t r = read(s->fd, buf + *got, cap - *got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return ember__error(EMBER_ERR_IO, "reading %s at byte %llu: %s", s->name,
                                (unsigned long long)s->raw_bytes, strerror(errno));
        }
        if (r == 0) {
            s->raw_eof = 1;
            break;
        }
        *got += (size_t)r;
        s->raw_bytes += (uint64_t)r;
    }
    return EMBER_OK;
}

ember_status ember__source_open(ember__source *s, const char *path, const void *mem, size_t len,
                                ember_memory *mm) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->mm = mm;
    if (!path && !mem) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "datasets: no input path or data given");
    snprintf(s->name, sizeof s->name, "%s", mem ? (path ? path : "<memory>") : strcmp(path, "-") == 0 ? "<stdin>" : path);
    if (mem) {
        s->mem = mem;
        s->mem_len = len;
        s->raw_eof = len == 0;
        s->file_bytes = len;
    } else {
        if (strcmp(path, "-") == 0) {
            s->fd = STDIN_FILENO;
        } else {
            s->fd = open(path, O_RDONLY | O_CLOEXEC);
            if (s->fd < 0) return ember__error(EMBER_ERR_IO, "cannot open %s: %s", path, strerror(errno));
            s->own_fd = 1;
        }
        struct stat stt;
        if (fstat(s->fd, &stt) == 0 && S_ISREG(stt.st_mode)) { /* stdin may be a file too */
            s->file_bytes = (uint64_t)stt.st_size;
#ifdef POSIX_FADV_SEQUENTIAL
            posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
        } else if (fstat(s->fd, &stt) == 0 && S_ISDIR(stt.st_mode)) {
            ember__source_close(s);
            return ember__error(EMBER_ERR_IO, "cannot read %s: it is a directory", path);
        }
    }
    /* Peek at the first bytes for the gzip magic. */
    ember_status st = ember__ds_alloc(mm, ZIN_BYTES, (void **)&s->zin);
    if (st != EMBER_OK) {
        ember__source_close(s);
        return st;
    }
    size_t got = 0;
    while (got < 2 && !s->raw_eof) {
        size_t g;
        st = raw_read(s, s->zin + got, 2 - got, &g);
        if (st != EMBER_OK) {
            ember__source_close(s);
            return st;
        }
        got += g;
    }
    s->zin_len = got;
    if (got == 2 && s->zin[0] == 0x1f && s->zin[1] == 0x8b) {
#ifdef EMBER_HAVE_ZLIB
        z_stream *z = calloc(1, sizeof *z);
        if (!z || inflateInit2(z, 16 + MAX_WBITS) != Z_OK) {
            free(z);
            ember__source_close(s);
            return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: cannot start zlib inflate", s->name);
        }
        s->z = z;
        s->gzip = 1;
#else
        ember__source_close(s);
        return ember__error(EMBER_ERR_UNSUPPORTED,
                            "%s is gzip-compressed, but this ember was built without zlib "
                            "(install zlib1g-dev and rebuild, or decompress it first)",
                            s->name);
#endif
    }
    return EMBER_OK;
}

ember_status ember__source_read(ember__source *s, void *buf, size_t cap, size_t *got) {
    unsigned char *out = buf;
    *got = 0;
    if (s->eof || cap == 0) return EMBER_OK;
    if (!s->gzip) {
        /* Peeked bytes first, then straight into the caller's buffer. */
        size_t n = s->zin_len - s->zin_pos;
        if (n > cap) n = cap;
        memcpy(out, s->zin + s->zin_pos, n);
        s->zin_pos += n;
        size_t g = 0;
        if (n < cap && !s->raw_eof) EMBER_TRY(raw_read(s, out + n, cap - n, &g));
        *got = n + g;
        s->out_bytes += *got;
        if (*got < cap) s->eof = 1;
        return EMBER_OK;
    }
#ifdef EMBER_HAVE_ZLIB
    z_stream *z = s->z;
    z->next_out = out;
    z->avail_out = (uInt)(cap > UINT32_MAX ? UINT32_MAX : cap);
    while (z->avail_out > 0) {
        if (s->zin_pos == s->zin_len && !s->raw_eof) {
            size_t g;
            EMBER_TRY(raw_read(s, s->zin, ZIN_BYTES, &g));
            s->zin_len = g;
            s->zin_pos = 0;
        }
        size_t avail = s->zin_len - s->zin_pos;
        if (avail == 0 && s->raw_eof) {
            if (s->gzip == 2) break; /* between members: a clean end */
            return ember__error(EMBER_ERR_FORMAT, "%s: gzip stream truncated after %llu compressed bytes",
                                s->name, (unsigned long long)s->raw_bytes);
        }
        if (s->gzip == 2) { /* a new member starts (or trailing garbage) */
            if (inflateReset(z) != Z_OK)
                return ember__error(EMBER_ERR_INTERNAL, "%s: zlib inflateReset failed", s->name);
            s->gzip = 1;
        }
        z->next_in = s->zin + s->zin_pos;
        z->avail_in = (uInt)avail;
        int rc = inflate(z, Z_NO_FLUSH);
        s->zin_pos = s->zin_len - z->avail_in;
        if (rc == Z_STREAM_END) {
            s->gzip = 2;
        } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && z->avail_out > 0 && z->avail_in == 0)) {
            return ember__error(EMBER_ERR_FORMAT, "%s: corrupt gzip data near compressed byte %llu: %s",
                                s->name, (unsigned long long)(s->raw_bytes - (s->zin_len - s->zin_pos)),
                                z->msg ? z->msg : "inflate failed");
        }
    }
    *got = cap - z->avail_out;
    s->out_bytes += *got;
    if (*got < cap) s->eof = 1;
    return EMBER_OK;
#else
    return ember__error(EMBER_ERR_UNSUPPORTED, "%s: gzip support not built", s->name);
#endif
}

void ember__source_close(ember__source *s) {
#ifdef EMBER_HAVE_ZLIB
    if (s->z) {
        inflateEnd(s->z);
        free(s->z);
    }
#endif
    s->z = NULL;
    if (s->own_fd && s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->own_fd = 0;
    ember__ds_free(s->mm, s->zin);
    s->zin = NULL;
}
