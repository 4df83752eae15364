/*
 * npy files (numpy's NEP 1 format) and TorchRec's preprocessed Criteo triplets.
 *
 * Reading maps the file, so a 100 GB triplet costs no read time and no memory until
 * rows are touched. The header parser accepts only what numpy writes: a Python dict
 * literal with 'descr', 'fortran_order' and 'shape', nothing else; it never trusts a
 * length or a shape without checking it against the bytes present, because npy files
 * travel between machines and get truncated. Writing reserves a fixed-size header,
 * streams rows behind it, then rewrites the header with the final row count and
 * renames the file into place.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/internal.h"

#define NPY_MAGIC "\x93NUMPY"
#define MAX_HEADER ((size_t)1 << 20)

/* ---- header ---- */

typedef struct {
    const char *p, *e;
} scan;

static void skip_ws(scan *s) {
    while (s->p < s->e && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int eat(scan *s, char c) {
    skip_ws(s);
    if (s->p < s->e && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string ('...' or "...") without escapes, into buf. */
static int read_str(scan *s, char *buf, size_t n) {
    skip_ws(s);
    if (s->p >= s->e || (*s->p != '\'' && *s->p != '"')) return 0;
    char q = *s->p++;
    size_t j = 0;
    while (s->p < s->e && *s->p != q) {
        if (*s->p == '\\' || j + 1 >= n) return 0;
        buf[j++] = *s->p++;
    }
    if (s->p >= s->e) return 0;
    s->p++;
    buf[j] = '\0';
    return 1;
}

static int read_word(scan *s, const char *w) {
    skip_ws(s);
    size_t n = strlen(w);
    if ((size_t)(s->e - s->p) >= n && memcmp(s->p, w, n) == 0) {
        s->p += n;
        return 1;
    }
    return 0;
}

static ember_status bad_header(const char *why) {
    return ember__error(EMBER_ERR_FORMAT, "npy header: %s", why);
}

static ember_status parse_descr(const char *d, ember_npy_info *out) {
    char order = d[0];
    const char *t = d + 1;
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return ember__error(EMBER_ERR_DTYPE, "npy header: descr '%s' is not a simple numeric dtype", d);
    static const struct {
        const char *code;
        ember_dtype dt;
        int bytes;
    } map[] = {{"f4", EMBER_DTYPE_F32, 4}, {"i4", EMBER_DTYPE_I32, 4}, {"i8", EMBER_DTYPE_I64, 8},
               {"f2", EMBER_DTYPE_F16, 2}, {"i1", EMBER_DTYPE_I8, 1},  {"u1", EMBER_DTYPE_U8, 1}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(t, map[i].code) != 0) continue;
        if (order == '>' && map[i].bytes > 1)
            return ember__error(EMBER_ERR_UNSUPPORTED,
                                "npy header: descr '%s' is big-endian; convert it with "
                                "arr.astype(arr.dtype.newbyteorder('<'))",
                                d);
        out->dtype = map[i].dt;
        return EMBER_OK;
    }
    return ember__error(EMBER_ERR_DTYPE, "npy header: dtype '%s' not handled (f4, f2, i1, u1, i4, i8)", d);
}

ember_status ember_npy_parse_header(const void *buf, size_t len, ember_npy_info *out) {
    EMBER_CHECK_NULL(out, "ember_npy_parse_header");
    if (!buf && len) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_npy_parse_header: buf is NULL");
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    if (len < 10 || memcmp(b, NPY_MAGIC, 6) != 0) return bad_header("no \\x93NUMPY magic (not an npy file)");
    int major = b[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return bad_header("truncated before the header length");
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        start = 12;
    } else {
        return ember__error(EMBER_ERR_FORMAT, "npy header: format version %d.%d not known (1.0, 2.0, 3.0)",
                            major, b[7]);
    }
    if (hlen > MAX_HEADER) return bad_header("header longer than 1 MiB");
    if (len < start + hlen)
        return ember__error(EMBER_ERR_FORMAT, "npy header: truncated (header of %zu bytes, %zu present)",
                            hlen, len - start);
    out->version = major;
    out->header_bytes = start + hlen;
    scan s = {(const char *)b + start, (const char *)b + start + hlen};
    int have_descr = 0, have_order = 0, have_shape = 0;
    char key[32], descr[32];
    if (!eat(&s, '{')) return bad_header("does not start with '{'");
    while (!eat(&s, '}')) {
        if (!read_str(&s, key, sizeof key)) return bad_header("expected a quoted key");
        if (!eat(&s, ':')) return bad_header("expected ':' after a key");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (!read_str(&s, descr, sizeof descr) || !descr[0])
                return bad_header("'descr' is not a simple dtype string (structured arrays are not read)");
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (read_word(&s, "False")) {
            } else if (read_word(&s, "True")) {
                return ember__error(EMBER_ERR_UNSUPPORTED,
                                    "npy header: Fortran order; save with np.ascontiguousarray first");
            } else {
                return bad_header("'fortran_order' is neither True nor False");
            }
            have_order = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (!eat(&s, '(')) return bad_header("'shape' is not a tuple");
            int nd = 0;
            for (;;) {
                skip_ws(&s);
                if (eat(&s, ')')) break;
                if (s.p >= s.e || *s.p < '0' || *s.p > '9') return bad_header("'shape' holds a non-integer");
                uint64_t v = 0;
                while (s.p < s.e && *s.p >= '0' && *s.p <= '9') {
                    if (v > (uint64_t)INT64_MAX / 10)
                        return ember__error(EMBER_ERR_OVERFLOW, "npy header: a dimension beyond 64 bits");
                    v = v * 10 + (uint64_t)(*s.p++ - '0');
                    if (v > (uint64_t)INT64_MAX)
                        return ember__error(EMBER_ERR_OVERFLOW, "npy header: a dimension beyond 64 bits");
                }
                if (s.p < s.e && *s.p == 'L') s.p++; /* Python 2 long suffix */
                if (nd == EMBER_NPY_MAX_DIMS)
                    return ember__error(EMBER_ERR_FORMAT, "npy header: more than %d dimensions", EMBER_NPY_MAX_DIMS);
                out->shape[nd++] = (int64_t)v;
                if (eat(&s, ')')) break;
                if (!eat(&s, ',')) return bad_header("'shape' dimensions not separated by ','");
            }
            out->ndim = nd;
            have_shape = 1;
        } else {
            return ember__error(EMBER_ERR_FORMAT, "npy header: unexpected or repeated key '%s'", key);
        }
        if (eat(&s, '}')) break;
        if (!eat(&s, ',')) return bad_header("entries not separated by ','");
    }
    skip_ws(&s);
    while (s.p < s.e && *s.p == '\0') s.p++; /* some writers pad with NULs */
    if (s.p != s.e) return bad_header("bytes after the closing '}'");
    if (!have_descr || !have_order || !have_shape)
        return bad_header("missing one of 'descr', 'fortran_order', 'shape'");
    EMBER_TRY(parse_descr(descr, out));
    size_t total = ember_dtype_size(out->dtype);
    for (int i = 0; i < out->ndim; i++)
        if (!ember__mul_size(total, (size_t)out->shape[i], &total) || total > (size_t)INT64_MAX)
            return ember__error(EMBER_ERR_OVERFLOW, "npy header: data size beyond 64 bits");
    out->data_bytes = total;
    return EMBER_OK;
}

/* ---- reading ---- */

struct ember_npy {
    ember_npy_info info;
    void *map;
    size_t map_len;
    char path[512];
};

ember_status ember_npy_open(const char *path, ember_npy **out) {
    EMBER_CHECK_NULL(path, "ember_npy_open");
    EMBER_CHECK_NULL(out, "ember_npy_open");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ember__error(EMBER_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode)) {
        close(fd);
        return ember__error(EMBER_ERR_IO, "%s: not a regular file", path);
    }
    size_t fsize = (size_t)stt.st_size;
    unsigned char head[12];
    size_t hn = fsize < sizeof head ? fsize : sizeof head;
    if (pread(fd, head, hn, 0) != (ssize_t)hn) {
        close(fd);
        return ember__error(EMBER_ERR_IO, "reading %s: %s", path, strerror(errno));
    }
    ember_npy_info info;
    ember_status st = ember_npy_parse_header(head, hn, &info);
    /* The first bytes tell the header length; then parse the whole header. */
    if (st == EMBER_ERR_FORMAT && hn >= 10 && memcmp(head, NPY_MAGIC, 6) == 0) {
        size_t need = head[6] == 1 ? 10 + ((size_t)head[8] | (size_t)head[9] << 8)
                                   : 12 + ((size_t)head[8] | (size_t)head[9] << 8 | (size_t)head[10] << 16 |
                                           (size_t)head[11] << 24);
        if (need <= MAX_HEADER + 12) {
            size_t n = need < fsize ? need : fsize;
            char *h = malloc(n ? n : 1);
            if (!h) {
                close(fd);
                return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: header", path);
            }
            if (pread(fd, h, n, 0) != (ssize_t)n) {
                free(h);
                close(fd);
                return ember__error(EMBER_ERR_IO, "reading %s: %s", path, strerror(errno));
            }
            st = ember_npy_parse_header(h, n, &info);
            free(h);
        }
    }
    if (st != EMBER_OK) {
        close(fd);
        char msg[512];
        ember__copy_str(msg, sizeof msg, ember__error_text());
        return ember__error(st, "%s: %s", path, msg);
    }
    if (fsize != info.header_bytes + info.data_bytes) {
        close(fd);
        return ember__error(EMBER_ERR_FORMAT, "%s: %s: the header promises %zu data bytes, the file holds %lld",
                            path, fsize < info.header_bytes + info.data_bytes ? "truncated" : "trailing bytes",
                            info.data_bytes, (long long)fsize - (long long)info.header_bytes);
    }
    ember_npy *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_npy_open");
    }
    f->info = info;
    snprintf(f->path, sizeof f->path, "%s", path);
    if (info.data_bytes > 0) {
        f->map_len = fsize;
        f->map = mmap(NULL, fsize, PROT_READ, MAP_SHARED, fd, 0);
        if (f->map == MAP_FAILED) {
            int e = errno;
            free(f);
            close(fd);
            return ember__error(EMBER_ERR_IO, "cannot map %s (%zu bytes): %s", path, fsize, strerror(e));
        }
    }
    close(fd);
    *out = f;
    return EMBER_OK;
}

void ember_npy_close(ember_npy *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f);
}

const ember_npy_info *ember_npy_get_info(const ember_npy *f) { return f ? &f->info : NULL; }

const void *ember_npy_data(const ember_npy *f) {
    return f && f->map ? (const char *)f->map + f->info.header_bytes : NULL;
}

/* ---- writing ---- */

static const char *descr_of(ember_dtype dt) {
    switch (dt) {
    case EMBER_DTYPE_F32: return "<f4";
    case EMBER_DTYPE_F16: return "<f2";
    case EMBER_DTYPE_I8: return "|i1";
    case EMBER_DTYPE_U8: return "|u1";
    case EMBER_DTYPE_I32: return "<i4";
    case EMBER_DTYPE_I64: return "<i8";
    default: return NULL;
    }
}

/* Header text for a shape, padded to total bytes (a multiple of 64) ending in '\n'. */
static size_t header_text(char *buf, size_t total, ember_dtype dt, int ndim, const int64_t *shape) {
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr_of(dt));
    for (int i = 0; i < ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    if (ndim > 1) { /* numpy writes "(3, 4)" but "(3,)": drop the trailing comma of ndim > 1 */
        char *c = strstr(dict, ",), }");
        if (c) memmove(c, c + 1, strlen(c + 1) + 1);
        n = (int)strlen(dict);
    }
    size_t need = 10 + (size_t)n + 1;
    if (total == 0) total = (need + 63) / 64 * 64;
    if (need > total) return 0;
    memcpy(buf, NPY_MAGIC, 6);
    buf[6] = 1;
    buf[7] = 0;
    size_t hlen = total - 10;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
    buf[total - 1] = '\n';
    return total;
}

struct ember_npy_writer {
    ember_npy_writer_params p;
    int fd;
    size_t header_total;
    size_t row_bytes;
    int64_t rows;
    int finished;
    char path[512], tmp[560];
};

ember_status ember_npy_writer_create(const ember_npy_writer_params *p, ember_npy_writer **out) {
    EMBER_CHECK_NULL(p, "ember_npy_writer_create");
    EMBER_CHECK_NULL(out, "ember_npy_writer_create");
    EMBER_CHECK_NULL(p->path, "ember_npy_writer_create");
    *out = NULL;
    if (!descr_of(p->dtype)) return ember__error(EMBER_ERR_DTYPE, "ember_npy_writer_create: dtype %d not writable", (int)p->dtype);
    if (p->ndim < 1 || p->ndim > EMBER_NPY_MAX_DIMS)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_npy_writer_create: ndim %d (1..%d)", p->ndim, EMBER_NPY_MAX_DIMS);
    if (strlen(p->path) >= 500) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_npy_writer_create: path too long");
    size_t row = ember_dtype_size(p->dtype);
    for (int i = 1; i < p->ndim; i++) {
        if (p->shape[i] < 0 || !ember__mul_size(row, (size_t)p->shape[i], &row))
            return ember__error(EMBER_ERR_SHAPE, "ember_npy_writer_create: dimension %d is %lld", i, (long long)p->shape[i]);
    }
    ember_npy_writer *w = calloc(1, sizeof *w);
    if (!w) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_npy_writer_create");
    w->p = *p;
    w->row_bytes = row;
    snprintf(w->path, sizeof w->path, "%s", p->path);
    w->p.path = w->path;
    ember__temp_path(w->tmp, sizeof w->tmp, p->path);
    /* Room for the largest row count the header may ever hold. */
    int64_t big[EMBER_NPY_MAX_DIMS];
    memcpy(big, p->shape, sizeof big);
    big[0] = INT64_MAX;
    char hdr[640];
    w->header_total = header_text(hdr, 0, p->dtype, p->ndim, big);
    big[0] = 0;
    header_text(hdr, w->header_total, p->dtype, p->ndim, big);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        ember_status st = ember__error(EMBER_ERR_IO, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w);
        return st;
    }
    int e = ember__write_all(w->fd, hdr, w->header_total);
    if (e) {
        ember_npy_writer_destroy(w);
        return ember__error(EMBER_ERR_IO, "writing %s: %s", w->tmp, strerror(e));
    }
    *out = w;
    return EMBER_OK;
}

ember_status ember_npy_writer_append(ember_npy_writer *w, const void *rows, int64_t n) {
    EMBER_CHECK_NULL(w, "ember_npy_writer_append");
    if (w->finished) return ember__error(EMBER_ERR_STATE, "ember_npy_writer_append: %s already finished", w->path);
    if (n < 0 || (n > 0 && !rows)) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_npy_writer_append: %lld rows", (long long)n);
    size_t bytes;
    if (!ember__mul_size((size_t)n, w->row_bytes, &bytes))
        return ember__error(EMBER_ERR_OVERFLOW, "ember_npy_writer_append: %lld rows", (long long)n);
    int e = ember__write_all(w->fd, rows, bytes);
    if (e) return ember__error(EMBER_ERR_IO, "writing %s: %s", w->tmp, strerror(e));
    w->rows += n;
    return EMBER_OK;
}

ember_status ember_npy_writer_finish(ember_npy_writer *w) {
    EMBER_CHECK_NULL(w, "ember_npy_writer_finish");
    if (w->finished) return EMBER_OK;
    char hdr[640];
    int64_t shape[EMBER_NPY_MAX_DIMS];
    memcpy(shape, w->p.shape, sizeof shape);
    shape[0] = w->rows;
    header_text(hdr, w->header_total, w->p.dtype, w->p.ndim, shape);
    if (pwrite(w->fd, hdr, w->header_total, 0) != (ssize_t)w->header_total || fsync(w->fd) != 0)
        return ember__error(EMBER_ERR_IO, "writing the header of %s: %s", w->tmp, strerror(errno));
    if (close(w->fd) != 0) {
        w->fd = -1;
        return ember__error(EMBER_ERR_IO, "closing %s: %s", w->tmp, strerror(errno));
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0)
        return ember__error(EMBER_ERR_IO, "renaming %s to %s: %s", w->tmp, w->path, strerror(errno));
    w->finished = 1;
    return EMBER_OK;
}

void ember_npy_writer_destroy(ember_npy_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (!w->finished) unlink(w->tmp);
    free(w);
}

ember_status ember_npy_save(const char *path, ember_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    EMBER_CHECK_NULL(path, "ember_npy_save");
    EMBER_CHECK_NULL(shape, "ember_npy_save");
    if (ndim < 1 || ndim > EMBER_NPY_MAX_DIMS)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_npy_save: ndim %d (1..%d)", ndim, EMBER_NPY_MAX_DIMS);
    if (shape[0] < 0) return ember__error(EMBER_ERR_SHAPE, "ember_npy_save: shape[0] is %lld", (long long)shape[0]);
    ember_npy_writer_params wp = {.path = path, .dtype = dtype, .ndim = ndim};
    memcpy(wp.shape, shape, (size_t)ndim * sizeof *shape);
    ember_npy_writer *w;
    EMBER_TRY(ember_npy_writer_create(&wp, &w));
    ember_status st = ember_npy_writer_append(w, data, shape[0]);
    if (st == EMBER_OK) st = ember_npy_writer_finish(w);
    ember_npy_writer_destroy(w);
    return st;
}

/* ---- TorchRec triplets ---- */

struct ember_npy_triplet {
    ember_npy *dense, *sparse, *labels;
    int64_t rows;
};

void ember_npy_triplet_close(ember_npy_triplet *t) {
    if (!t) return;
    ember_npy_close(t->dense);
    ember_npy_close(t->sparse);
    ember_npy_close(t->labels);
    free(t);
}

static ember_status check_part(const char *path, const ember_npy *f, ember_dtype dt, int64_t cols, int allow_1d) {
    const ember_npy_info *i = ember_npy_get_info(f);
    if (i->dtype != dt)
        return ember__error(EMBER_ERR_DTYPE, "%s: dtype %s, expected %s (TorchRec's Criteo layout)", path,
                            ember_dtype_name(i->dtype), ember_dtype_name(dt));
    int ok = (i->ndim == 2 && i->shape[1] == cols) || (allow_1d && i->ndim == 1);
    if (!ok) {
        char shp[128] = "(";
        for (int k = 0; k < i->ndim; k++)
            snprintf(shp + strlen(shp), sizeof shp - strlen(shp), "%lld%s", (long long)i->shape[k],
                     k + 1 < i->ndim ? ", " : "");
        strcat(shp, ")");
        return ember__error(EMBER_ERR_SHAPE, "%s: shape %s, expected (N, %lld)", path, shp, (long long)cols);
    }
    return EMBER_OK;
}

ember_status ember_npy_triplet_open(const char *prefix, ember_npy_triplet **out) {
    EMBER_CHECK_NULL(prefix, "ember_npy_triplet_open");
    EMBER_CHECK_NULL(out, "ember_npy_triplet_open");
    *out = NULL;
    if (strlen(prefix) > 480) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_npy_triplet_open: prefix too long");
    ember_npy_triplet *t = calloc(1, sizeof *t);
    if (!t) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_npy_triplet_open");
    char path[3][512];
    snprintf(path[0], sizeof path[0], "%s_dense.npy", prefix);
    snprintf(path[1], sizeof path[1], "%s_sparse.npy", prefix);
    snprintf(path[2], sizeof path[2], "%s_labels.npy", prefix);
    ember_status st = ember_npy_open(path[0], &t->dense);
    if (st == EMBER_OK) st = ember_npy_open(path[1], &t->sparse);
    if (st == EMBER_OK) st = ember_npy_open(path[2], &t->labels);
    if (st == EMBER_OK) st = check_part(path[0], t->dense, EMBER_DTYPE_F32, EMBER_CRITEO_NUM_DENSE, 0);
    if (st == EMBER_OK) st = check_part(path[1], t->sparse, EMBER_DTYPE_I32, EMBER_CRITEO_NUM_SPARSE, 0);
    if (st == EMBER_OK) st = check_part(path[2], t->labels, EMBER_DTYPE_I32, 1, 1);
    if (st == EMBER_OK) {
        int64_t n0 = ember_npy_get_info(t->dense)->shape[0], n1 = ember_npy_get_info(t->sparse)->shape[0],
                n2 = ember_npy_get_info(t->labels)->shape[0];
        if (n0 != n1 || n0 != n2)
            st = ember__error(EMBER_ERR_SHAPE, "npy triplet %s: row counts differ (dense %lld, sparse %lld, labels %lld)",
                              prefix, (long long)n0, (long long)n1, (long long)n2);
        t->rows = n0;
    }
    if (st != EMBER_OK) {
        ember_npy_triplet_close(t);
        return st;
    }
    *out = t;
    return EMBER_OK;
}

int64_t ember_npy_triplet_rows(const ember_npy_triplet *t) { return t ? t->rows : 0; }
const float *ember_npy_triplet_dense(const ember_npy_triplet *t) { return t ? ember_npy_data(t->dense) : NULL; }
const uint32_t *ember_npy_triplet_sparse(const ember_npy_triplet *t) { return t ? ember_npy_data(t->sparse) : NULL; }
const int32_t *ember_npy_triplet_labels(const ember_npy_triplet *t) { return t ? ember_npy_data(t->labels) : NULL; }

/* ---- TSV to triplet ---- */

ember_status ember_criteo_convert(const ember_convert_params *p, ember_criteo_stats *stats) {
    EMBER_CHECK_NULL(p, "ember_criteo_convert");
    EMBER_CHECK_NULL(p->out_prefix, "ember_criteo_convert");
    if (stats) memset(stats, 0, sizeof *stats);
    if (p->num_inputs <= 0 || !p->inputs)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_criteo_convert: no input files");
    if (strlen(p->out_prefix) > 480)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_criteo_convert: output prefix too long");
    ember_criteo_params rp = p->parse ? *p->parse : (ember_criteo_params){0};
    rp.data = NULL;
    uint64_t total = 0;
    for (int i = 0; i < p->num_inputs; i++) {
        struct stat stt;
        if (strcmp(p->inputs[i], "-") != 0 && stat(p->inputs[i], &stt) == 0 && S_ISREG(stt.st_mode))
            total += (uint64_t)stt.st_size;
    }
    char path[3][512];
    snprintf(path[0], sizeof path[0], "%s_dense.npy", p->out_prefix);
    snprintf(path[1], sizeof path[1], "%s_sparse.npy", p->out_prefix);
    snprintf(path[2], sizeof path[2], "%s_labels.npy", p->out_prefix);
    ember_npy_writer *w[3] = {0};
    ember_status st = ember_npy_writer_create(
        &(ember_npy_writer_params){.path = path[0], .dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {0, EMBER_CRITEO_NUM_DENSE}}, &w[0]);
    if (st == EMBER_OK)
        st = ember_npy_writer_create(
            &(ember_npy_writer_params){.path = path[1], .dtype = EMBER_DTYPE_I32, .ndim = 2, .shape = {0, EMBER_CRITEO_NUM_SPARSE}}, &w[1]);
    if (st == EMBER_OK)
        st = ember_npy_writer_create(
            &(ember_npy_writer_params){.path = path[2], .dtype = EMBER_DTYPE_I32, .ndim = 2, .shape = {0, 1}}, &w[2]);
    ember_criteo_stats sum = {0};
    sum.has_label = -1;
    uint64_t done = 0;
    int64_t rows_total = 0;
    for (int i = 0; i < p->num_inputs && st == EMBER_OK; i++) {
        rp.path = p->inputs[i];
        ember_criteo_reader *r = NULL;
        st = ember_criteo_open(&rp, &r);
        ember_criteo_rows rows;
        while (st == EMBER_OK && (st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
            st = ember_npy_writer_append(w[0], rows.dense, rows.n);
            if (st == EMBER_OK) st = ember_npy_writer_append(w[1], rows.sparse, rows.n);
            if (st == EMBER_OK) st = ember_npy_writer_append(w[2], rows.labels, rows.n);
            rows_total += rows.n;
            if (p->progress) {
                ember_criteo_stats cs;
                ember_criteo_get_stats(r, &cs);
                p->progress(done + cs.raw_bytes, total, rows_total, p->progress_user);
            }
        }
        if (r) {
            ember_criteo_stats cs;
            ember_criteo_get_stats(r, &cs);
            sum.lines += cs.lines;
            sum.rows += cs.rows;
            for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) sum.bad[k] += cs.bad[k];
            sum.bad_total += cs.bad_total;
            sum.bytes += cs.bytes;
            sum.raw_bytes += cs.raw_bytes;
            sum.file_bytes += cs.file_bytes;
            sum.has_label = cs.has_label;
            sum.gzip |= cs.gzip;
            if (!sum.first_bad[0] && cs.first_bad[0]) memcpy(sum.first_bad, cs.first_bad, sizeof sum.first_bad);
            done += cs.raw_bytes;
        }
        ember_criteo_close(r);
    }
    int renamed[3] = {0};
    for (int k = 0; k < 3 && st == EMBER_OK; k++) {
        st = ember_npy_writer_finish(w[k]);
        renamed[k] = st == EMBER_OK;
    }
    for (int k = 0; k < 3; k++) ember_npy_writer_destroy(w[k]);
    if (st != EMBER_OK)
        for (int k = 0; k < 3; k++)
            if (renamed[k]) unlink(path[k]); /* never leave a partial triplet */
    if (stats) *stats = sum;
    return st;
}
