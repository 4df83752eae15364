/*
 * safetensors files and checkpoints (ember/checkpoint.h).
 *
 * Reading treats the file as hostile: the header length is bounded by the file size
 * and a fixed cap before anything is allocated, the header goes through the strict
 * JSON parser (engine/json.c), and every tensor's dtype, shape and byte range is
 * checked (size arithmetic in uint64 with overflow checks, ranges inside the data
 * section, no two ranges overlapping, no name twice) before a single data byte is
 * read. A file that carries ember's metadata has its data checksum verified at open.
 *
 * Writing computes the whole layout first, writes the header with a placeholder for
 * the checksum, streams the data (GPU tensors through a bounded host staging buffer)
 * while updating the CRC, patches the checksum in, then fsync + rename + directory
 * fsync: the only moment the target changes is the rename, which is atomic.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/checkpoint.h"
#include "engine/checkpoint_internal.h"
#include "engine/internal.h"
#include "engine/json.h"
#include "engine/tensor_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ember's safetensors I/O assumes a little-endian host"
#endif

#define MAX_HEADER (100u << 20) /* the safetensors reference implementation's cap */
#define CHUNK (16u << 20)       /* staging and checksum block */
#define FORMAT_VERSION "1"
#define KEY_FORMAT "ember.format"
#define KEY_CHECKSUM "ember.checksum"
#define CRC_PREFIX "crc32c:"

int64_t ember__safetensors_fail_after = -1;

/* ---- dtypes ---- */

typedef struct st_dtype {
    const char *name;
    unsigned size;
    ember_dtype dtype; /* EMBER_DTYPE_COUNT: valid safetensors dtype ember lacks */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, EMBER_DTYPE_F32},       {"F16", 2, EMBER_DTYPE_F16},
    {"BF16", 2, EMBER_DTYPE_BF16},     {"I8", 1, EMBER_DTYPE_I8},
    {"U8", 1, EMBER_DTYPE_U8},         {"I32", 4, EMBER_DTYPE_I32},
    {"I64", 8, EMBER_DTYPE_I64},       {"F64", 8, EMBER_DTYPE_COUNT},
    {"BOOL", 1, EMBER_DTYPE_COUNT},    {"I16", 2, EMBER_DTYPE_COUNT},
    {"U16", 2, EMBER_DTYPE_COUNT},     {"U32", 4, EMBER_DTYPE_COUNT},
    {"U64", 8, EMBER_DTYPE_COUNT},     {"F8_E4M3", 1, EMBER_DTYPE_COUNT},
    {"F8_E5M2", 1, EMBER_DTYPE_COUNT},
};
#define N_ST_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static const st_dtype *st_dtype_by_name(const char *s) {
    for (int i = 0; i < N_ST_DTYPES; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}

static const char *st_dtype_name(ember_dtype dt) {
    for (int i = 0; i < N_ST_DTYPES; i++)
        if (st_dtypes[i].dtype == dt) return st_dtypes[i].name;
    return "?";
}

/* "(2, 3)" */
static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

/* ---- the reader ---- */

typedef struct entry {
    const char *name;
    const st_dtype *dt;
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    uint64_t begin, end; /* relative to the data section */
    size_t hoff;         /* header byte where the entry starts */
} entry;

struct ember_safetensors {
    char *label;
    int fd; /* -1 for memory images */
    const unsigned char *mem;
    uint64_t size, header_len, data_start;
    ember__json_doc *doc;
    entry *e;
    int count;
    const entry **by_name; /* sorted by name */
    const char **mkey, **mval;
    int nmeta;
    int verified;
};

/* Read n bytes at absolute offset off (bounds already checked against size). */
static ember_status src_read(const ember_safetensors *f, uint64_t off, void *buf, size_t n,
                             const char *fn) {
    if (f->fd < 0) {
        memcpy(buf, f->mem + off, n);
        return EMBER_OK;
    }
    unsigned char *p = buf;
    while (n) {
        size_t want = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = pread(f->fd, p, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return ember__error(EMBER_ERR_IO, "%s: %s: read of %zu bytes at file offset %llu: %s", fn,
                                f->label, want, (unsigned long long)off, strerror(errno));
        if (r == 0)
            return ember__error(EMBER_ERR_IO,
                                "%s: %s: file ends at offset %llu while reading (was it truncated "
                                "while open?)",
                                fn, f->label, (unsigned long long)off);
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return EMBER_OK;
}

void ember_safetensors_close(ember_safetensors *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    ember__json_free(f->doc);
    free(f->e);
    free(f->by_name);
    free(f->mkey);
    free(f->mval);
    free(f->label);
    free(f);
}

static int by_name_cmp(const void *a, const void *b) {
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}
static int by_begin_cmp(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

#define FMT_ERR(...) ember__error(EMBER_ERR_FORMAT, __VA_ARGS__)

/* File offset of a header byte, for messages. */
static unsigned long long hpos(size_t hoff) { return 8ull + (unsigned long long)hoff; }

static ember_status parse_entry(ember_safetensors *f, const char *fn, const ember__json *v, entry *e) {
    const char *name = ember__json_key(v);
    e->name = name;
    e->hoff = ember__json_offset(v);
    if (ember__json_type_of(v) != EMBER__JSON_OBJECT)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): expected an object, found %s", fn,
                       f->label, name, hpos(e->hoff), ember__json_type_name(ember__json_type_of(v)));
    const ember__json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const ember__json *m = ember__json_first(v); m; m = ember__json_next(m)) {
        const char *k = ember__json_key(m);
        const ember__json **slot = strcmp(k, "dtype") == 0          ? &dtype
                                   : strcmp(k, "shape") == 0        ? &shape
                                   : strcmp(k, "data_offsets") == 0 ? &offs
                                                                    : NULL;
        if (!slot)
            return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): unknown field \"%s\"", fn, f->label,
                           name, hpos(ember__json_offset(m)), k);
        if (*slot)
            return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): field \"%s\" appears twice", fn,
                           f->label, name, hpos(ember__json_offset(m)), k);
        *slot = m;
    }
    if (!dtype || !shape || !offs)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): missing field \"%s\"", fn, f->label,
                       name, hpos(e->hoff), !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    /* dtype */
    if (ember__json_type_of(dtype) != EMBER__JSON_STRING)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): dtype must be a string", fn, f->label,
                       name, hpos(ember__json_offset(dtype)));
    const char *ds = ember__json_string(dtype, NULL);
    e->dt = st_dtype_by_name(ds);
    if (!e->dt)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): unknown dtype \"%s\"", fn, f->label,
                       name, hpos(ember__json_offset(dtype)), ds);
    /* shape */
    if (ember__json_type_of(shape) != EMBER__JSON_ARRAY)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): shape must be an array", fn, f->label,
                       name, hpos(ember__json_offset(shape)));
    if (ember__json_count(shape) > EMBER_MAX_DIMS)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): %zu dims; ember supports up to %d", fn,
                       f->label, name, hpos(ember__json_offset(shape)), ember__json_count(shape),
                       EMBER_MAX_DIMS);
    uint64_t numel = 1;
    int overflow = 0;
    e->ndim = 0;
    for (const ember__json *d = ember__json_first(shape); d; d = ember__json_next(d)) {
        uint64_t x;
        if (!ember__json_uint(d, &x) || x > (uint64_t)INT64_MAX)
            return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): shape entries must be integers "
                           "in [0, 2^63)",
                           fn, f->label, name, hpos(ember__json_offset(d)));
        e->shape[e->ndim++] = (int64_t)x;
        if (x && numel > UINT64_MAX / x) overflow = 1;
        else numel *= x;
    }
    /* data_offsets */
    uint64_t b = 0, en = 0;
    const ember__json *o0 = ember__json_first(offs), *o1 = o0 ? ember__json_next(o0) : NULL;
    if (ember__json_type_of(offs) != EMBER__JSON_ARRAY || ember__json_count(offs) != 2 ||
        !ember__json_uint(o0, &b) || !ember__json_uint(o1, &en))
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): data_offsets must be [begin, end], "
                       "two integers >= 0",
                       fn, f->label, name, hpos(ember__json_offset(offs)));
    e->begin = b;
    e->end = en;
    uint64_t data_size = f->size - f->data_start;
    if (b > en)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): data_offsets [%llu, %llu] end before "
                       "they begin",
                       fn, f->label, name, hpos(ember__json_offset(offs)), (unsigned long long)b,
                       (unsigned long long)en);
    char sh[160];
    if (overflow || numel > UINT64_MAX / e->dt->size || numel * e->dt->size != en - b)
        return FMT_ERR("%s: %s: tensor '%s' (file offset %llu): %s %s needs %s bytes but "
                       "data_offsets [%llu, %llu] hold %llu",
                       fn, f->label, name, hpos(ember__json_offset(offs)), e->dt->name,
                       shape_str(sh, sizeof sh, e->ndim, e->shape), overflow ? "too many" : "more",
                       (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b));
    if (en > data_size)
        return FMT_ERR("%s: %s: tensor '%s': data [%llu, %llu) ends at file offset %llu, past the end "
                       "of the file (%llu bytes): truncated file?",
                       fn, f->label, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(f->data_start + en), (unsigned long long)f->size);
    return EMBER_OK;
}

static ember_status parse_metadata(ember_safetensors *f, const char *fn, const ember__json *v) {
    if (ember__json_type_of(v) != EMBER__JSON_OBJECT)
        return FMT_ERR("%s: %s: __metadata__ (file offset %llu) must be an object of strings", fn,
                       f->label, hpos(ember__json_offset(v)));
    size_t n = ember__json_count(v);
    f->mkey = calloc(n ? n : 1, sizeof *f->mkey);
    f->mval = calloc(n ? n : 1, sizeof *f->mval);
    if (!f->mkey || !f->mval) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: metadata", fn);
    for (const ember__json *m = ember__json_first(v); m; m = ember__json_next(m)) {
        const char *k = ember__json_key(m);
        if (ember__json_type_of(m) != EMBER__JSON_STRING)
            return FMT_ERR("%s: %s: __metadata__ entry \"%s\" (file offset %llu) is a %s; values must "
                           "be strings",
                           fn, f->label, k, hpos(ember__json_offset(m)),
                           ember__json_type_name(ember__json_type_of(m)));
        for (int j = 0; j < f->nmeta; j++)
            if (strcmp(f->mkey[j], k) == 0)
                return FMT_ERR("%s: %s: __metadata__ key \"%s\" appears twice (file offset %llu)", fn,
                               f->label, k, hpos(ember__json_offset(m)));
        f->mkey[f->nmeta] = k;
        f->mval[f->nmeta++] = ember__json_string(m, NULL);
    }
    return EMBER_OK;
}

/* Value of a metadata key, or NULL (sets no error). */
static const char *meta_find(const ember_safetensors *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->mkey[i], key) == 0) return f->mval[i];
    return NULL;
}

/* Checks the ember metadata and, when present, the data checksum. */
static ember_status verify(ember_safetensors *f, const char *fn) {
    const char *ver = meta_find(f, KEY_FORMAT), *sum = meta_find(f, KEY_CHECKSUM);
    if (!ver) return EMBER_OK; /* not written by ember: nothing to verify */
    if (strcmp(ver, FORMAT_VERSION) != 0)
        return FMT_ERR("%s: %s: ember.format \"%s\" is not supported (this ember reads \"%s\")", fn,
                       f->label, ver, FORMAT_VERSION);
    if (!sum)
        return FMT_ERR("%s: %s: ember.format is set but ember.checksum is missing", fn, f->label);
    uint32_t want = 0;
    size_t plen = strlen(CRC_PREFIX);
    int ok = strncmp(sum, CRC_PREFIX, plen) == 0 && strlen(sum) == plen + 8;
    for (size_t i = plen; ok && i < plen + 8; i++) {
        char c = sum[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
        if (d > 15) ok = 0;
        want = want << 4 | d;
    }
    if (!ok)
        return FMT_ERR("%s: %s: ember.checksum \"%s\" is not of the form crc32c:<8 lowercase hex digits>",
                       fn, f->label, sum);
    uint64_t n = f->size - f->data_start;
    uint32_t crc = 0;
    if (f->fd < 0) {
        crc = ember_crc32c(0, f->mem + f->data_start, (size_t)n);
    } else if (n > 0) {
        void *buf = NULL;
        size_t cap = n < CHUNK ? (size_t)n : CHUNK;
        EMBER_TRY(ember_memory_alloc(ember_memory_default(), EMBER_TIER_HOST, EMBER_MEM_STAGING, cap, &buf));
        ember_status st = EMBER_OK;
        for (uint64_t off = 0; off < n && st == EMBER_OK; off += cap) {
            size_t k = n - off < cap ? (size_t)(n - off) : cap;
            st = src_read(f, f->data_start + off, buf, k, fn);
            if (st == EMBER_OK) crc = ember_crc32c(crc, buf, k);
        }
        ember_memory_free(ember_memory_default(), buf);
        EMBER_TRY(st);
    }
    if (crc != want)
        return ember__error(EMBER_ERR_CHECKSUM,
                            "%s: %s: data section (%llu bytes from file offset %llu) has CRC32C %08x, "
                            "the header says %08x: the file is corrupt",
                            fn, f->label, (unsigned long long)n, (unsigned long long)f->data_start, crc,
                            want);
    f->verified = 1;
    return EMBER_OK;
}

/* Parses and validates the header (f->fd or f->mem and f->size set). */
static ember_status load_header(ember_safetensors *f, const char *fn) {
    if (f->size < 8)
        return FMT_ERR("%s: %s: %llu bytes is too short for a safetensors file (8-byte header length "
                       "missing): truncated?",
                       fn, f->label, (unsigned long long)f->size);
    unsigned char lb[8];
    EMBER_TRY(src_read(f, 0, lb, 8, fn));
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | lb[i];
    if (n > f->size - 8)
        return FMT_ERR("%s: %s: header length %llu (file offset 0) exceeds the %llu bytes after it: "
                       "truncated file or not a safetensors file",
                       fn, f->label, (unsigned long long)n, (unsigned long long)(f->size - 8));
    if (n > MAX_HEADER)
        return FMT_ERR("%s: %s: header length %llu (file offset 0) exceeds the limit of %u bytes", fn,
                       f->label, (unsigned long long)n, MAX_HEADER);
    if (n < 2)
        return FMT_ERR("%s: %s: header length %llu (file offset 0) is too small for a JSON object", fn,
                       f->label, (unsigned long long)n);
    f->header_len = n;
    f->data_start = 8 + n;
    unsigned char *h = NULL;
    const unsigned char *hdr;
    if (f->fd < 0) {
        hdr = f->mem + 8;
    } else {
        h = malloc((size_t)n);
        if (!h) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %s: header of %llu bytes", fn, f->label,
                                    (unsigned long long)n);
        ember_status st = src_read(f, 8, h, (size_t)n, fn);
        if (st != EMBER_OK) {
            free(h);
            return st;
        }
        hdr = h;
    }
    ember__json_error jerr;
    ember_status st = ember__json_parse(hdr, (size_t)n, &f->doc, &jerr);
    free(h);
    if (st == EMBER_ERR_OUT_OF_MEMORY)
        return ember__error(st, "%s: %s: parsing the %llu-byte header", fn, f->label, (unsigned long long)n);
    if (st != EMBER_OK)
        return FMT_ERR("%s: %s: invalid JSON header at file offset %llu: %s", fn, f->label,
                       hpos(jerr.offset), jerr.reason);
    const ember__json *root = ember__json_root(f->doc);
    if (ember__json_type_of(root) != EMBER__JSON_OBJECT)
        return FMT_ERR("%s: %s: header (file offset 8) is a JSON %s, not an object", fn, f->label,
                       ember__json_type_name(ember__json_type_of(root)));
    size_t members = ember__json_count(root);
    f->e = calloc(members ? members : 1, sizeof *f->e);
    f->by_name = calloc(members ? members : 1, sizeof *f->by_name);
    if (!f->e || !f->by_name) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %s: index", fn, f->label);
    const ember__json *meta = NULL;
    for (const ember__json *m = ember__json_first(root); m; m = ember__json_next(m)) {
        if (strcmp(ember__json_key(m), "__metadata__") == 0) {
            if (meta)
                return FMT_ERR("%s: %s: \"__metadata__\" appears twice (file offset %llu)", fn, f->label,
                               hpos(ember__json_offset(m)));
            meta = m;
            continue;
        }
        EMBER_TRY(parse_entry(f, fn, m, &f->e[f->count]));
        f->by_name[f->count] = &f->e[f->count];
        f->count++;
    }
    if (meta) EMBER_TRY(parse_metadata(f, fn, meta));
    else if (!(f->mkey = calloc(1, sizeof *f->mkey)) || !(f->mval = calloc(1, sizeof *f->mval)))
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: metadata", fn);
    /* Names unique; byte ranges disjoint. */
    qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, by_name_cmp);
    for (int i = 1; i < f->count; i++) {
        const entry *a = f->by_name[i - 1], *b = f->by_name[i];
        if (strcmp(a->name, b->name) == 0)
            return FMT_ERR("%s: %s: tensor name '%s' appears twice (file offsets %llu and %llu)", fn,
                           f->label, a->name, hpos(a->hoff < b->hoff ? a->hoff : b->hoff),
                           hpos(a->hoff < b->hoff ? b->hoff : a->hoff));
    }
    const entry **ord = malloc((f->count ? (size_t)f->count : 1) * sizeof *ord);
    if (!ord) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: index", fn);
    int m = 0;
    for (int i = 0; i < f->count; i++)
        if (f->e[i].end > f->e[i].begin) ord[m++] = &f->e[i];
    qsort(ord, (size_t)m, sizeof *ord, by_begin_cmp);
    st = EMBER_OK;
    for (int i = 1; i < m && st == EMBER_OK; i++) {
        const entry *a = ord[i - 1], *b = ord[i];
        if (b->begin < a->end)
            st = FMT_ERR("%s: %s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap (data bytes "
                         "from file offset %llu)",
                         fn, f->label, a->name, (unsigned long long)a->begin, (unsigned long long)a->end,
                         b->name, (unsigned long long)b->begin, (unsigned long long)b->end,
                         (unsigned long long)(f->data_start + b->begin));
    }
    free(ord);
    EMBER_TRY(st);
    return verify(f, fn);
}

static ember_status open_common(ember_safetensors *f, const char *fn, ember_safetensors **out) {
    ember_status st = load_header(f, fn);
    if (st != EMBER_OK) {
        ember_safetensors_close(f);
        return st;
    }
    *out = f;
    return EMBER_OK;
}

ember_status ember_safetensors_open(const char *path, ember_safetensors **out) {
    static const char fn[] = "ember_safetensors_open";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(path, fn);
    ember_safetensors *f = calloc(1, sizeof *f);
    if (!f || !(f->label = strdup(path))) {
        free(f);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %s", fn, path);
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        ember_status st = ember__error(EMBER_ERR_IO, "%s: %s: cannot open: %s", fn, path, strerror(errno));
        ember_safetensors_close(f);
        return st;
    }
    struct stat sb;
    ember_status st = EMBER_OK;
    if (fstat(f->fd, &sb) != 0)
        st = ember__error(EMBER_ERR_IO, "%s: %s: fstat: %s", fn, path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = ember__error(EMBER_ERR_IO, "%s: %s: not a regular file", fn, path);
    if (st != EMBER_OK) {
        ember_safetensors_close(f);
        return st;
    }
    f->size = (uint64_t)sb.st_size;
    return open_common(f, fn, out);
}

ember_status ember_safetensors_open_memory(const void *data, size_t size, const char *label,
                                           ember_safetensors **out) {
    static const char fn[] = "ember_safetensors_open_memory";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    if (size > 0) EMBER_CHECK_NULL(data, fn);
    static const unsigned char none[1] = {0};
    ember_safetensors *f = calloc(1, sizeof *f);
    if (!f || !(f->label = strdup(label ? label : "<memory>"))) {
        free(f);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: file header", fn);
    }
    f->fd = -1;
    f->mem = size ? data : none;
    f->size = size;
    return open_common(f, fn, out);
}

int ember_safetensors_count(const ember_safetensors *f) { return f ? f->count : 0; }
int ember_safetensors_verified(const ember_safetensors *f) { return f ? f->verified : 0; }

static void fill_info(const ember_safetensors *f, const entry *e, ember_safetensors_info *out) {
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = e->dt->dtype;
    out->dtype_name = e->dt->name;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof e->shape);
    out->offset = f->data_start + e->begin;
    out->nbytes = e->end - e->begin;
}

ember_status ember_safetensors_info_at(const ember_safetensors *f, int i, ember_safetensors_info *out) {
    static const char fn[] = "ember_safetensors_info_at";
    EMBER_CHECK_NULL(f, fn);
    EMBER_CHECK_NULL(out, fn);
    if (i < 0 || i >= f->count)
        return ember__error(EMBER_ERR_INDEX, "%s: %s: tensor %d of %d", fn, f->label, i, f->count);
    fill_info(f, &f->e[i], out);
    return EMBER_OK;
}

static const entry *find(const ember_safetensors *f, const char *name) {
    int lo = 0, hi = f->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static ember_status find_or_fail(const ember_safetensors *f, const char *name, const char *fn,
                                 const entry **out) {
    *out = find(f, name);
    if (*out) return EMBER_OK;
    return ember__error(EMBER_ERR_NOT_FOUND, "%s: %s: no tensor named '%s' (the file has %d)", fn,
                        f->label, name, f->count);
}

ember_status ember_safetensors_find(const ember_safetensors *f, const char *name,
                                    ember_safetensors_info *out) {
    static const char fn[] = "ember_safetensors_find";
    EMBER_CHECK_NULL(f, fn);
    EMBER_CHECK_NULL(name, fn);
    EMBER_CHECK_NULL(out, fn);
    const entry *e;
    EMBER_TRY(find_or_fail(f, name, fn, &e));
    fill_info(f, e, out);
    return EMBER_OK;
}

int ember_safetensors_metadata_count(const ember_safetensors *f) { return f ? f->nmeta : 0; }

ember_status ember_safetensors_metadata_at(const ember_safetensors *f, int i, const char **key,
                                           const char **value) {
    static const char fn[] = "ember_safetensors_metadata_at";
    EMBER_CHECK_NULL(f, fn);
    if (i < 0 || i >= f->nmeta)
        return ember__error(EMBER_ERR_INDEX, "%s: %s: metadata entry %d of %d", fn, f->label, i, f->nmeta);
    if (key) *key = f->mkey[i];
    if (value) *value = f->mval[i];
    return EMBER_OK;
}

ember_status ember_safetensors_metadata_get(const ember_safetensors *f, const char *key,
                                            const char **value) {
    static const char fn[] = "ember_safetensors_metadata_get";
    EMBER_CHECK_NULL(f, fn);
    EMBER_CHECK_NULL(key, fn);
    const char *v = meta_find(f, key);
    if (value) *value = v;
    if (v) return EMBER_OK;
    return ember__error(EMBER_ERR_NOT_FOUND, "%s: %s: no metadata key \"%s\"", fn, f->label, key);
}

/* dst's dtype and shape against the file's entry. */
static ember_status check_match(const ember_safetensors *f, const entry *e, const ember_tensor *dst,
                                const char *fn) {
    char want[160], got[160];
    shape_str(want, sizeof want, dst->ndim, dst->shape);
    shape_str(got, sizeof got, e->ndim, e->shape);
    if (e->dt->dtype == EMBER_DTYPE_COUNT)
        return ember__error(EMBER_ERR_DTYPE, "%s: %s: tensor '%s' is %s %s, a dtype ember does not "
                            "support (expected %s %s)",
                            fn, f->label, e->name, e->dt->name, got, st_dtype_name(dst->dtype), want);
    int same = e->ndim == dst->ndim;
    for (int i = 0; same && i < e->ndim; i++) same = e->shape[i] == dst->shape[i];
    if (e->dt->dtype != dst->dtype || !same)
        return ember__error(e->dt->dtype != dst->dtype ? EMBER_ERR_DTYPE : EMBER_ERR_SHAPE,
                            "%s: %s: tensor '%s': expected %s %s, the file has %s %s", fn, f->label,
                            e->name, st_dtype_name(dst->dtype), want, e->dt->name, got);
    return EMBER_OK;
}

/* A host staging buffer of the default manager (pinned where CUDA is built). */
static ember_status staging_alloc(size_t bytes, void **out) {
    return ember_memory_alloc(ember_memory_default(), EMBER_TIER_PINNED, EMBER_MEM_STAGING,
                              bytes ? bytes : 1, out);
}

/* Elements per staging chunk for element size es (a whole number of elements). */
static int64_t chunk_elems(size_t es, int64_t numel) {
    int64_t k = (int64_t)(CHUNK / es);
    return numel < k ? numel : k;
}

/* Copies bytes of an entry into dst (dtype and shape already checked). */
static ember_status read_into(ember_safetensors *f, const entry *e, ember_tensor *dst, const char *fn) {
    size_t nbytes = (size_t)(e->end - e->begin);
    if (nbytes == 0) return EMBER_OK;
    uint64_t off = f->data_start + e->begin;
    int on_cpu = dst->storage->device.type == EMBER_DEVICE_CPU;
    if (on_cpu && ember_tensor_is_contiguous(dst))
        return src_read(f, off, ember__tensor_ptr(dst), nbytes, fn);
    ember_status st = EMBER_OK;
    if (!ember_tensor_is_contiguous(dst)) {
        /* Rare: read the whole tensor on the host, then one strided copy. */
        ember_tensor *tmp = NULL;
        ember_tensor_params p = {.dtype = dst->dtype, .ndim = dst->ndim, .tier = EMBER_TIER_HOST,
                                 .kind = EMBER_MEM_STAGING};
        memcpy(p.shape, dst->shape, sizeof p.shape);
        st = ember_tensor_create(&p, &tmp);
        if (st == EMBER_OK) st = src_read(f, off, ember__tensor_ptr(tmp), nbytes, fn);
        if (st == EMBER_OK) st = ember_tensor_copy(dst, tmp);
        if (st == EMBER_OK && !on_cpu) st = ember_device_synchronize(dst->storage->device);
        ember_tensor_destroy(tmp);
        return st;
    }
    /* Contiguous on a GPU: chunks through one staging buffer, each copy finished
       before the buffer is refilled. */
    size_t es = ember_dtype_size(dst->dtype);
    int64_t numel = ember_tensor_numel(dst), per = chunk_elems(es, numel);
    void *buf = NULL;
    EMBER_TRY(staging_alloc((size_t)per * es, &buf));
    ember_tensor *flat = NULL;
    st = ember_tensor_reshape(dst, 1, &numel, &flat);
    for (int64_t i = 0; i < numel && st == EMBER_OK; i += per) {
        int64_t k = numel - i < per ? numel - i : per;
        ember_tensor *part = NULL, *host = NULL;
        st = src_read(f, off + (uint64_t)i * es, buf, (size_t)k * es, fn);
        if (st == EMBER_OK) st = ember_tensor_narrow(flat, 0, i, k, &part);
        if (st == EMBER_OK) st = ember_tensor_wrap(buf, dst->dtype, 1, &k, NULL, EMBER_CPU, &host);
        if (st == EMBER_OK) st = ember_tensor_copy(part, host);
        if (st == EMBER_OK) st = ember_device_synchronize(dst->storage->device);
        ember_tensor_destroy(part);
        ember_tensor_destroy(host);
    }
    ember_tensor_destroy(flat);
    ember_memory_free(ember_memory_default(), buf);
    return st;
}

ember_status ember_safetensors_read(ember_safetensors *f, const char *name, ember_tensor *dst) {
    static const char fn[] = "ember_safetensors_read";
    EMBER_CHECK_NULL(f, fn);
    EMBER_CHECK_NULL(name, fn);
    EMBER_CHECK_NULL(dst, fn);
    const entry *e;
    EMBER_TRY(find_or_fail(f, name, fn, &e));
    EMBER_TRY(check_match(f, e, dst, fn));
    return read_into(f, e, dst, fn);
}

ember_status ember_safetensors_read_new(ember_safetensors *f, const char *name, ember_tier tier,
                                        ember_memory *mm, ember_mem_kind kind, ember_tensor **out) {
    static const char fn[] = "ember_safetensors_read_new";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(f, fn);
    EMBER_CHECK_NULL(name, fn);
    const entry *e;
    EMBER_TRY(find_or_fail(f, name, fn, &e));
    if (e->dt->dtype == EMBER_DTYPE_COUNT)
        return ember__error(EMBER_ERR_DTYPE, "%s: %s: tensor '%s' is %s, a dtype ember does not support",
                            fn, f->label, e->name, e->dt->name);
    ember_tensor_params p = {.dtype = e->dt->dtype, .ndim = e->ndim, .tier = tier, .kind = kind, .mm = mm};
    memcpy(p.shape, e->shape, sizeof p.shape);
    ember_tensor *t;
    EMBER_TRY(ember_tensor_create(&p, &t));
    ember_status st = read_into(f, e, t, fn);
    if (st != EMBER_OK) {
        ember_tensor_destroy(t);
        return st;
    }
    *out = t;
    return EMBER_OK;
}

/* ---- the writer ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->cap - b->n < n + 1) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc - b->n < n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal of UTF-8 text s (already validated). */
static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        if (*p == '"' || *p == '\\') {
            e[0] = '\\', e[1] = (char)*p;
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", *p);
            sb_put(b, e, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* 1 when s is valid UTF-8 (RFC 3629: no overlongs, surrogates or values past U+10FFFF). */
static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c == 0xE0) n = 3, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
        else if (c == 0xED) n = 3, hi = 0x9F;
        else if (c == 0xF0) n = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) n = 4;
        else if (c == 0xF4) n = 4, hi = 0x8F;
        else return 0;
        if (p[1] < lo || p[1] > hi) return 0; /* also stops at the NUL */
        for (int i = 2; i < n; i++)
            if (p[i] < 0x80 || p[i] > 0xBF) return 0;
        p += n;
    }
    return 1;
}

typedef struct wfile {
    int fd;
    const char *path, *tmp;
    uint32_t crc;
    uint64_t data_written;
} wfile;

static ember_status write_all(wfile *w, const void *data, size_t n, const char *fn) {
    const unsigned char *p = data;
    while (n) {
        size_t want = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = write(w->fd, p, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return ember__error(EMBER_ERR_IO, "%s: %s: write: %s", fn, w->path, strerror(errno));
        p += r;
        n -= (size_t)r;
    }
    return EMBER_OK;
}

static ember_status write_data(wfile *w, const void *data, size_t n, const char *fn) {
    if (ember__safetensors_fail_after >= 0 &&
        w->data_written + n > (uint64_t)ember__safetensors_fail_after) {
        size_t part = (size_t)((uint64_t)ember__safetensors_fail_after - w->data_written);
        if (part) EMBER_TRY(write_all(w, data, part, fn));
        return ember__error(EMBER_ERR_IO, "%s: %s: write: injected failure after %lld data bytes", fn,
                            w->path, (long long)ember__safetensors_fail_after);
    }
    w->crc = ember_crc32c(w->crc, data, n);
    w->data_written += n;
    return write_all(w, data, n, fn);
}

/* Streams one tensor's bytes, in element order, into the file. */
static ember_status write_tensor(wfile *w, const ember_tensor *t, void **stage, const char *fn) {
    size_t nbytes = ember_tensor_nbytes(t);
    if (nbytes == 0) return EMBER_OK;
    ember_tensor *c = NULL;
    EMBER_TRY(ember_tensor_contiguous(t, &c)); /* on t's device */
    ember_status st = EMBER_OK;
    if (c->storage->device.type == EMBER_DEVICE_CPU) {
        st = write_data(w, ember__tensor_ptr(c), nbytes, fn);
    } else {
        size_t es = ember_dtype_size(c->dtype);
        int64_t numel = ember_tensor_numel(c), per = chunk_elems(es, numel);
        if (!*stage) st = staging_alloc(CHUNK, stage);
        ember_tensor *flat = NULL;
        if (st == EMBER_OK) st = ember_tensor_reshape(c, 1, &numel, &flat);
        for (int64_t i = 0; i < numel && st == EMBER_OK; i += per) {
            int64_t k = numel - i < per ? numel - i : per;
            ember_tensor *part = NULL, *host = NULL;
            st = ember_tensor_narrow(flat, 0, i, k, &part);
            if (st == EMBER_OK) st = ember_tensor_wrap(*stage, c->dtype, 1, &k, NULL, EMBER_CPU, &host);
            if (st == EMBER_OK) st = ember_tensor_copy(host, part); /* waits: dst on the host */
            if (st == EMBER_OK) st = write_data(w, *stage, (size_t)k * es, fn);
            ember_tensor_destroy(part);
            ember_tensor_destroy(host);
        }
        ember_tensor_destroy(flat);
    }
    ember_tensor_destroy(c);
    return st;
}

static ember_status fsync_dir(const char *path, const char *fn) {
    char *d = strdup(path);
    if (!d) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %s", fn, path);
    char *slash = strrchr(d, '/');
    const char *dir = ".";
    if (slash) {
        if (slash == d) slash[1] = 0;
        else *slash = 0;
        dir = d;
    }
    ember_status st = EMBER_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        st = ember__error(EMBER_ERR_IO, "%s: %s: open directory %s to fsync: %s", fn, path, dir,
                          strerror(errno));
    } else {
        /* Some file systems cannot fsync a directory (EINVAL): nothing more to do there. */
        if (fsync(fd) != 0 && errno != EINVAL)
            st = ember__error(EMBER_ERR_IO, "%s: %s: fsync directory %s: %s", fn, path, dir, strerror(errno));
        close(fd);
    }
    free(d);
    return st;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names and keys: present, valid UTF-8, not reserved, unique. */
static ember_status check_names(const char *fn, const ember_named_tensor *ts, int n,
                                const ember_metadata_entry *meta, int nmeta) {
    ember_status st = EMBER_OK;
    for (int i = 0; i < n; i++) {
        const char *nm = ts[i].name;
        if (!nm || !nm[0])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tensors[%d] has %s name", fn, i,
                                nm ? "an empty" : "a NULL");
        if (!ts[i].tensor)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tensor '%s' is NULL", fn, nm);
        if (!utf8_valid(nm))
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tensors[%d]: name is not valid UTF-8", fn, i);
        if (strcmp(nm, "__metadata__") == 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: '__metadata__' is reserved", fn);
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: meta[%d] has a NULL key or value", fn, i);
        if (!utf8_valid(meta[i].key) || !utf8_valid(meta[i].value))
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: meta[%d] (\"%s\") is not valid UTF-8", fn,
                                i, meta[i].key);
        if (strcmp(meta[i].key, KEY_FORMAT) == 0 || strcmp(meta[i].key, KEY_CHECKSUM) == 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: metadata key \"%s\" is ember's own", fn,
                                meta[i].key);
    }
    int total = n > nmeta ? n : nmeta;
    const char **names = malloc((total ? (size_t)total : 1) * sizeof *names);
    if (!names) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: names", fn);
    for (int pass = 0; pass < 2 && st == EMBER_OK; pass++) {
        int m = pass ? nmeta : n;
        for (int i = 0; i < m; i++) names[i] = pass ? meta[i].key : ts[i].name;
        qsort(names, (size_t)m, sizeof *names, cmp_str_ptr);
        for (int i = 1; i < m && st == EMBER_OK; i++)
            if (strcmp(names[i], names[i - 1]) == 0)
                st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s \"%s\" is used twice", fn,
                                  pass ? "metadata key" : "tensor name", names[i]);
    }
    free(names);
    return st;
}

ember_status ember_safetensors_write(const char *path, const ember_named_tensor *ts, int n,
                                     const ember_metadata_entry *meta, int nmeta) {
    static const char fn[] = "ember_safetensors_write";
    EMBER_CHECK_NULL(path, fn);
    if (n < 0 || nmeta < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: n = %d, nmeta = %d", fn, n, nmeta);
    if (n > 0) EMBER_CHECK_NULL(ts, fn);
    if (nmeta > 0) EMBER_CHECK_NULL(meta, fn);
    EMBER_TRY(check_names(fn, ts, n, meta, nmeta));
    for (int i = 0; i < n; i++)
        if (!ember_dtype_valid(ember_tensor_dtype(ts[i].tensor)))
            return ember__error(EMBER_ERR_DTYPE, "%s: tensor '%s' has an invalid dtype", fn, ts[i].name);

    /* Layout: by decreasing element size (stable), so each tensor is aligned to its
       element size given an 8-aligned data section. */
    int *ord = malloc((n ? (size_t)n : 1) * sizeof *ord);
    if (!ord) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d tensors", fn, n);
    int m = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < n; i++)
            if (ember_dtype_size(ember_tensor_dtype(ts[i].tensor)) == es) ord[m++] = i;

    sbuf h = {0};
    sb_str(&h, "{\"__metadata__\":{\"" KEY_CHECKSUM "\":\"" CRC_PREFIX);
    size_t crc_at = h.n;
    sb_str(&h, "00000000\",\"" KEY_FORMAT "\":\"" FORMAT_VERSION "\"");
    for (int i = 0; i < nmeta; i++) {
        sb_str(&h, ",");
        sb_json(&h, meta[i].key);
        sb_str(&h, ":");
        sb_json(&h, meta[i].value);
    }
    sb_str(&h, "}");
    uint64_t off = 0;
    for (int j = 0; j < m; j++) {
        const ember_tensor *t = ts[ord[j]].tensor;
        char num[64];
        sb_str(&h, ",");
        sb_json(&h, ts[ord[j]].name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, st_dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&h, num);
        }
        uint64_t nb = ember_tensor_nbytes(t);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nb));
        sb_str(&h, num);
        off += nb;
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_str(&h, " ");
    if (h.oom) {
        free(h.p);
        free(ord);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %s: header", fn, path);
    }

    /* Temporary file beside the target, so the rename stays within one file system. */
    static unsigned long seq;
    unsigned long my = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    size_t tlen = strlen(path) + 64;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(h.p);
        free(ord);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %s", fn, path);
    }
    snprintf(tmp, tlen, "%.*s.%s.tmp-%ld-%lu", dirlen, path, path + dirlen, (long)getpid(), my);
    wfile w = {.path = path, .tmp = tmp};
    ember_status st = EMBER_OK;
    void *stage = NULL;
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        st = ember__error(EMBER_ERR_IO, "%s: %s: cannot create temporary file %s: %s", fn, path, tmp,
                          strerror(errno));
    } else {
        unsigned char lb[8];
        for (int i = 0; i < 8; i++) lb[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
        st = write_all(&w, lb, 8, fn);
        if (st == EMBER_OK) st = write_all(&w, h.p, h.n, fn);
        for (int j = 0; j < m && st == EMBER_OK; j++) st = write_tensor(&w, ts[ord[j]].tensor, &stage, fn);
        if (st == EMBER_OK) {
            char hex[9];
            snprintf(hex, sizeof hex, "%08x", w.crc);
            ssize_t r = pwrite(w.fd, hex, 8, (off_t)(8 + crc_at));
            if (r != 8)
                st = ember__error(EMBER_ERR_IO, "%s: %s: writing the checksum: %s", fn, path,
                                  r < 0 ? strerror(errno) : "short write");
        }
        if (st == EMBER_OK && fsync(w.fd) != 0)
            st = ember__error(EMBER_ERR_IO, "%s: %s: fsync: %s", fn, path, strerror(errno));
        if (close(w.fd) != 0 && st == EMBER_OK)
            st = ember__error(EMBER_ERR_IO, "%s: %s: close: %s", fn, path, strerror(errno));
        if (st == EMBER_OK && rename(tmp, path) != 0)
            st = ember__error(EMBER_ERR_IO, "%s: %s: rename from %s: %s", fn, path, tmp, strerror(errno));
        if (st != EMBER_OK) unlink(tmp);
        else st = fsync_dir(path, fn);
    }
    if (stage) ember_memory_free(ember_memory_default(), stage);
    free(tmp);
    free(h.p);
    free(ord);
    return st;
}

/* ---- checkpoints ---- */

#define OPTIM_PREFIX "optim."
#define KEY_OPT_KIND "ember.optim.kind"
#define KEY_OPT_STEP "ember.optim.step"

ember_status ember_checkpoint_save(const char *path, const ember_named_tensor *tensors, int n,
                                   const ember_optimizer *opt) {
    static const char fn[] = "ember_checkpoint_save";
    EMBER_CHECK_NULL(path, fn);
    if (n < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: n = %d", fn, n);
    if (n > 0) EMBER_CHECK_NULL(tensors, fn);
    int ns = 0;
    if (opt) {
        EMBER_TRY(ember_optimizer_state_count(opt, &ns));
        for (int i = 0; i < n; i++)
            if (tensors[i].name && strncmp(tensors[i].name, OPTIM_PREFIX, strlen(OPTIM_PREFIX)) == 0)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                    "%s: tensor name '%s' starts with \"" OPTIM_PREFIX
                                    "\", which names optimizer state",
                                    fn, tensors[i].name);
    }
    ember_named_tensor *all = calloc((size_t)n + (size_t)ns + 1, sizeof *all);
    char **names = calloc((size_t)ns + 1, sizeof *names);
    ember_status st = EMBER_OK;
    if (!all || !names) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d tensors", fn, n + ns);
    for (int i = 0; i < n && st == EMBER_OK; i++) all[i] = tensors[i];
    for (int i = 0; i < ns && st == EMBER_OK; i++) {
        const char *sn;
        ember_tensor *t;
        st = ember_optimizer_state_get(opt, i, &sn, &t);
        if (st != EMBER_OK) break;
        size_t len = strlen(OPTIM_PREFIX) + strlen(sn) + 1;
        names[i] = malloc(len);
        if (!names[i]) {
            st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: names", fn);
            break;
        }
        snprintf(names[i], len, "%s%s", OPTIM_PREFIX, sn);
        all[n + i] = (ember_named_tensor){names[i], t};
    }
    char step[32] = "", kind[32] = "";
    ember_metadata_entry meta[2] = {{KEY_OPT_KIND, kind}, {KEY_OPT_STEP, step}};
    if (st == EMBER_OK && opt) {
        int64_t s = 0;
        ember_optim_kind k = EMBER_OPTIM_SGD;
        st = ember_optimizer_get_step(opt, &s);
        if (st == EMBER_OK) st = ember_optimizer_get_kind(opt, &k);
        snprintf(step, sizeof step, "%lld", (long long)s);
        snprintf(kind, sizeof kind, "%s", ember_optim_kind_name(k));
    }
    if (st == EMBER_OK) st = ember_safetensors_write(path, all, n + ns, meta, opt ? 2 : 0);
    if (names)
        for (int i = 0; i < ns; i++) free(names[i]);
    free(names);
    free(all);
    return st;
}

ember_status ember_checkpoint_load(const char *path, const ember_named_tensor *tensors, int n,
                                   ember_optimizer *opt) {
    static const char fn[] = "ember_checkpoint_load";
    EMBER_CHECK_NULL(path, fn);
    if (n < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: n = %d", fn, n);
    if (n > 0) EMBER_CHECK_NULL(tensors, fn);
    for (int i = 0; i < n; i++)
        if (!tensors[i].name || !tensors[i].tensor)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tensors[%d] has a NULL name or tensor", fn, i);
    ember_safetensors *f;
    EMBER_TRY(ember_safetensors_open(path, &f));
    ember_status st = EMBER_OK;
    int ns = 0;
    int64_t step = 0;
    if (opt) {
        const char *kind = meta_find(f, KEY_OPT_KIND), *sstep = meta_find(f, KEY_OPT_STEP);
        ember_optim_kind k = EMBER_OPTIM_SGD;
        st = ember_optimizer_get_kind(opt, &k);
        if (st == EMBER_OK) st = ember_optimizer_state_count(opt, &ns);
        if (st == EMBER_OK && (!kind || !sstep))
            st = FMT_ERR("%s: %s: no optimizer state (metadata " KEY_OPT_KIND " / " KEY_OPT_STEP ")", fn, path);
        if (st == EMBER_OK && strcmp(kind, ember_optim_kind_name(k)) != 0)
            st = FMT_ERR("%s: %s: the checkpoint holds %s state, the optimizer is %s", fn, path, kind,
                         ember_optim_kind_name(k));
        if (st == EMBER_OK) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(sstep, &end, 10);
            if (errno || end == sstep || *end || v < 0)
                st = FMT_ERR("%s: %s: " KEY_OPT_STEP " \"%s\" is not a step count", fn, path, sstep);
            step = v;
        }
    }
    /* Check every name, dtype and shape before writing anything. */
    char name[1024];
    for (int pass = 0; pass < 2 && st == EMBER_OK; pass++) {
        for (int i = 0; i < n && st == EMBER_OK; i++) {
            const entry *e;
            st = find_or_fail(f, tensors[i].name, fn, &e);
            if (st == EMBER_OK)
                st = pass ? read_into(f, e, tensors[i].tensor, fn) : check_match(f, e, tensors[i].tensor, fn);
        }
        for (int i = 0; i < ns && st == EMBER_OK; i++) {
            const char *sn;
            ember_tensor *t;
            const entry *e;
            st = ember_optimizer_state_get(opt, i, &sn, &t);
            if (st == EMBER_OK && (size_t)snprintf(name, sizeof name, OPTIM_PREFIX "%s", sn) >= sizeof name)
                st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: state name '%s' is too long", fn, sn);
            if (st == EMBER_OK) st = find_or_fail(f, name, fn, &e);
            if (st == EMBER_OK) st = pass ? read_into(f, e, t, fn) : check_match(f, e, t, fn);
        }
    }
    if (st == EMBER_OK && opt) st = ember_optimizer_set_step(opt, step);
    ember_safetensors_close(f);
    return st;
}
