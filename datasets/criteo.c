/*
 * The Criteo TSV reader.
 *
 * Speed comes from three choices. (1) Big reads: a chunk of block_bytes is read at
 * once, the partial last line carried to the next chunk. (2) A hand-written field
 * parser: one pass over the bytes with table lookups for hex digits, no sscanf or
 * strtol, and log1p of small integers from a table (the dense transform is otherwise
 * the most expensive part of a row). (3) Parallel parsing of each chunk: it is cut into
 * one piece per thread at line boundaries; a first parallel pass counts the lines of
 * each piece, so every piece knows its first line number and its output rows, and a
 * second pass parses straight into the output arrays (both passes on a small thread
 * pool, datasets/pool.c). Malformed lines leave gaps that
 * are closed by moving whole pieces, which costs nothing when no line is bad. The
 * output order is the file order whatever the thread count.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "datasets/internal.h"
#include "ember/ember.h"

#define ND EMBER_CRITEO_NUM_DENSE
#define NS EMBER_CRITEO_NUM_SPARSE
#define NF (1 + ND + NS)
#define MIN_PIECE ((size_t)64 << 10)
#define MAX_RECORDED 64 /* faults remembered per piece for the log */

static const char *fault_names[EMBER_CRITEO_FAULT_COUNT] = {"field_count", "label", "int", "hex",
                                                             "line_too_long"};

const char *ember_criteo_fault_name(ember_criteo_fault f) {
    return (unsigned)f < EMBER_CRITEO_FAULT_COUNT ? fault_names[f] : "invalid-fault";
}

/* ---- the dense transform ---- */

#define LOG_TABLE 65536
static float log_table[LOG_TABLE];
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) {
    for (int i = 0; i < LOG_TABLE; i++) log_table[i] = (float)log1p((double)i);
}

static inline float dense_value(ember_dense_transform t, int64_t x) {
    if (t == EMBER_DENSE_RAW) return (float)x;
    if (x <= 0) return 0.0f;
    if (x < LOG_TABLE) return log_table[x];
    return (float)log1p((double)x);
}

float ember__dense_value(ember_dense_transform t, int64_t x) {
    pthread_once(&log_once, log_init);
    return dense_value(t, x);
}

/* ---- the line parser ---- */

/* Hex digit value + 1; 0 for anything else (so '\t', '\n', '\r', NUL stop a field). */
static const unsigned char hexv[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/*
 * Eight hex digits at p to a 32-bit value, eight bytes at a time (SWAR): 1 if all eight
 * are hex digits, else 0. For bytes below 0x80, ((b | 0x80) - n) keeps its high bit
 * exactly when b >= n, with no borrow into the next byte; OR-ing 0x20 folds 'A'-'F'
 * onto 'a'-'f' and leaves digits alone (but would also fold control bytes 0x10-0x19
 * onto digits, so digits are checked before folding).
 */
static inline int hex8(const unsigned char *p, uint32_t *out) {
    const uint64_t H = UINT64_C(0x8080808080808080), ONE = UINT64_C(0x0101010101010101);
    uint64_t w;
    memcpy(&w, p, 8);
    if (w & H) return 0;
    uint64_t l = w | (ONE * 0x20);
#define GE(x, n) ((((x) | H) - ONE * (n)) & H)
    /* Digits are tested on the raw bytes: folding would turn 0x10-0x19 into '0'-'9'.
       Letters on the folded bytes: l in 'a'..'f' exactly when w is in 'A'..'F' or 'a'..'f'. */
    uint64_t digit = GE(w, 0x30) & ~GE(w, 0x3a), alpha = GE(l, 0x61) & ~GE(l, 0x67);
#undef GE
    if ((digit | alpha) != H) return 0;
    uint64_t v = (l & (ONE * 0x0f)) + (alpha >> 7) * 9; /* nibble per byte, first char in byte 0 */
    v = ((v & UINT64_C(0x000f000f000f000f)) << 4) | ((v >> 8) & UINT64_C(0x000f000f000f000f));
    v = ((v & UINT64_C(0x000000ff000000ff)) << 8) | ((v >> 16) & UINT64_C(0x000000ff000000ff));
    *out = (uint32_t)(((v & 0xffff) << 16) | ((v >> 32) & 0xffff));
    return 1;
}

void ember__criteo_cfg_init(ember__criteo_cfg *c, const ember_criteo_params *p, int has_label) {
    pthread_once(&log_once, log_init);
    memset(c, 0, sizeof *c);
    c->has_label = has_label;
    c->dense = p->dense;
    c->vocab = p->vocab;
    c->hash_cap = p->vocab ? 0 : p->hash_cap;
    c->hash_m = c->hash_cap ? ember__fastmod_m(c->hash_cap) : 0;
    c->max_line = p->max_line_bytes ? p->max_line_bytes : (size_t)64 << 10;
}

static int count_fields(const unsigned char *p, const unsigned char *e) {
    int n = 1;
    for (; p < e; p++) n += *p == '\t';
    return n;
}

/* A value fault, unless the line has the wrong number of fields: that is the real
 * cause when fields are shifted, so it is reported first. */
static int fault_at(const ember__criteo_cfg *c, const unsigned char *line, const unsigned char *e,
                    int fault, int f, int *field) {
    int n = count_fields(line, e);
    if (n != NF - !c->has_label) {
        *field = n;
        return EMBER_CRITEO_FAULT_FIELD_COUNT;
    }
    *field = f;
    return fault;
}

int ember__criteo_parse(const ember__criteo_cfg *c, const unsigned char *p, const unsigned char *e,
                        float *dense, uint32_t *sparse, int32_t *label, int *field) {
    const unsigned char *line = p;
    if ((size_t)(e - p) > c->max_line) {
        *field = 0;
        return EMBER_CRITEO_FAULT_LINE_TOO_LONG;
    }
    int f = 0;
    if (c->has_label) {
        unsigned d = (unsigned)*p - '0';
        if (d > 1 || p[1] != '\t') return fault_at(c, line, e, EMBER_CRITEO_FAULT_LABEL, 0, field);
        *label = (int32_t)d;
        p += 2;
        f = 1;
    } else {
        *label = 0;
    }
    for (int i = 0; i < ND; i++, f++) {
        if (*p == '\t') { /* missing */
            dense[i] = 0.0f;
            p++;
            continue;
        }
        if (p >= e) return fault_at(c, line, e, EMBER_CRITEO_FAULT_FIELD_COUNT, f, field);
        int neg = *p == '-';
        p += neg;
        const unsigned char *s = p;
        uint64_t v = 0;
        unsigned d;
        while ((d = (unsigned)*p - '0') < 10) {
            v = v * 10 + d;
            p++;
        }
        if (p == s || p - s > 18 || *p != '\t') return fault_at(c, line, e, EMBER_CRITEO_FAULT_INT, f, field);
        p++;
        dense[i] = dense_value(c->dense, neg ? -(int64_t)v : (int64_t)v);
    }
    for (int j = 0; j < NS; j++, f++) {
        uint32_t v = 0;
        if (hexv[p[0]] && hexv[p[1]] && hexv[p[2]] && hexv[p[3]] && hexv[p[4]] && hexv[p[5]] &&
            hexv[p[6]] && hexv[p[7]]) { /* the common case: 8 digits */
            v = (uint32_t)(hexv[p[0]] - 1) << 28 | (uint32_t)(hexv[p[1]] - 1) << 24 |
                (uint32_t)(hexv[p[2]] - 1) << 20 | (uint32_t)(hexv[p[3]] - 1) << 16 |
                (uint32_t)(hexv[p[4]] - 1) << 12 | (uint32_t)(hexv[p[5]] - 1) << 8 |
                (uint32_t)(hexv[p[6]] - 1) << 4 | (uint32_t)(hexv[p[7]] - 1);
            p += 8;
        } else {
            unsigned h;
            while ((h = hexv[*p]) != 0) {
                v = v << 4 | (h - 1);
                p++;
            }
        }
        if (hexv[*p]) return fault_at(c, line, e, EMBER_CRITEO_FAULT_HEX, f, field); /* > 8 digits */
        if (j < NS - 1) {
            if (*p != '\t') {
                if (p >= e) return fault_at(c, line, e, EMBER_CRITEO_FAULT_FIELD_COUNT, f, field);
                return fault_at(c, line, e, EMBER_CRITEO_FAULT_HEX, f, field);
            }
            p++;
        } else if (p != e) {
            return fault_at(c, line, e, EMBER_CRITEO_FAULT_HEX, f, field);
        }
        sparse[j] = v;
    }
    if (c->vocab) {
        for (int j = 0; j < NS; j++) sparse[j] = ember_criteo_vocab_map(c->vocab, j, sparse[j]);
    } else if (c->hash_cap) {
        for (int j = 0; j < NS; j++) sparse[j] = ember__fastmod(sparse[j], c->hash_m, c->hash_cap);
    }
    return -1;
}

/*
 * The common path: a well-formed line starting at p. It finds the line's end itself
 * (no separate scan for '\n') and returns the start of the next line, or NULL when
 * anything is off; the full parser above then names the fault. It never reads past
 * the line's '\n': every step stops at the first byte that is not a digit, hex digit
 * or tab, except for whole 8-byte loads, which stay below lim.
 */
static inline const unsigned char *parse_fast(const ember__criteo_cfg *c, const unsigned char *p,
                                              const unsigned char *lim, float *dense, uint32_t *sparse,
                                              int32_t *label) {
    const unsigned char *line = p;
    if (c->has_label) {
        unsigned d = (unsigned)*p - '0';
        if (d > 1 || p[1] != '\t') return NULL;
        *label = (int32_t)d;
        p += 2;
    } else {
        *label = 0;
    }
    for (int i = 0; i < ND; i++) {
        if (*p == '\t') {
            dense[i] = 0.0f;
            p++;
            continue;
        }
        int neg = *p == '-';
        p += neg;
        const unsigned char *s = p;
        uint64_t v = 0;
        unsigned d;
        while ((d = (unsigned)*p - '0') < 10) {
            v = v * 10 + d;
            p++;
        }
        if (p == s || p - s > 18 || *p != '\t') return NULL;
        p++;
        dense[i] = dense_value(c->dense, neg ? -(int64_t)v : (int64_t)v);
    }
    for (int j = 0; j < NS; j++) {
        uint32_t v = 0;
        if (p + 8 <= lim && hex8(p, &v)) {
            p += 8;
        } else {
            unsigned h;
            while ((h = hexv[*p]) != 0) {
                v = v << 4 | (h - 1);
                p++;
            }
        }
        if (hexv[*p]) return NULL;
        if (j < NS - 1) {
            if (*p != '\t') return NULL;
            p++;
        }
        sparse[j] = v;
    }
    const unsigned char *e = p;
    if (*p == '\r' && p[1] == '\n') p++;
    if (*p != '\n' || (size_t)(e - line) > c->max_line) return NULL;
    if (c->vocab) {
        for (int j = 0; j < NS; j++) sparse[j] = ember_criteo_vocab_map(c->vocab, j, sparse[j]);
    } else if (c->hash_cap) {
        for (int j = 0; j < NS; j++) sparse[j] = ember__fastmod(sparse[j], c->hash_m, c->hash_cap);
    }
    return p + 1;
}

static void field_name(char *buf, size_t n, int field, int has_label) {
    int k = field - !!has_label; /* 0..38 over I1..I13, C1..C26 */
    if (has_label && field == 0) snprintf(buf, n, "label");
    else if (k < ND) snprintf(buf, n, "I%d", k + 1);
    else snprintf(buf, n, "C%d", k - ND + 1);
}

/* The field's text, printable, at most 24 bytes. */
static void field_text(char *buf, size_t n, const unsigned char *line, const unsigned char *e, int field) {
    const unsigned char *p = line;
    for (int k = 0; k < field && p < e; p++)
        if (*p == '\t') k++;
    size_t j = 0;
    for (; p < e && *p != '\t' && j + 4 < n; p++) {
        if (j >= 24) {
            buf[j++] = '.';
            buf[j++] = '.';
            buf[j++] = '.';
            break;
        }
        buf[j++] = (*p >= 0x20 && *p < 0x7f && *p != '"') ? (char)*p : '?';
    }
    buf[j] = '\0';
}

void ember__criteo_fault_text(char *buf, size_t n, const char *name, int64_t line, int fault,
                              int field, int has_label, const unsigned char *p,
                              const unsigned char *e, size_t max_line) {
    char fname[16], text[32];
    switch (fault) {
    case EMBER_CRITEO_FAULT_FIELD_COUNT:
        snprintf(buf, n, "criteo %s line %lld: %d tab-separated fields, expected %d (%s)", name,
                 (long long)line, field, NF - !has_label,
                 has_label ? "label, I1..I13, C1..C26" : "I1..I13, C1..C26 without label");
        return;
    case EMBER_CRITEO_FAULT_LINE_TOO_LONG:
        snprintf(buf, n, "criteo %s line %lld: longer than %zu bytes (max_line_bytes)", name,
                 (long long)line, max_line);
        return;
    default:
        break;
    }
    field_name(fname, sizeof fname, field, has_label);
    field_text(text, sizeof text, p, e, field);
    const char *why = fault == EMBER_CRITEO_FAULT_LABEL ? "is not a label (0 or 1)"
                      : fault == EMBER_CRITEO_FAULT_INT ? "is not an integer (up to 18 digits)"
                                                        : "is not a 32-bit hex id";
    snprintf(buf, n, "criteo %s line %lld field %d (%s): \"%s\" %s", name, (long long)line, field + 1,
             fname, text, why);
}

ember_status ember_criteo_parse_line(const ember_criteo_params *cfg, int has_label, const char *line,
                                     size_t len, float *dense, uint32_t *sparse, int32_t *label,
                                     ember_criteo_fault *fault) {
    EMBER_CHECK_NULL(cfg, "ember_criteo_parse_line");
    EMBER_CHECK_NULL(dense, "ember_criteo_parse_line");
    EMBER_CHECK_NULL(sparse, "ember_criteo_parse_line");
    EMBER_CHECK_NULL(label, "ember_criteo_parse_line");
    if (!line && len) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_criteo_parse_line: line is NULL");
    ember__criteo_cfg c;
    ember__criteo_cfg_init(&c, cfg, has_label);
    if (len > c.max_line) {
        if (fault) *fault = EMBER_CRITEO_FAULT_LINE_TOO_LONG;
        return ember__error(EMBER_ERR_PARSE, "criteo line: longer than %zu bytes (max_line_bytes)", c.max_line);
    }
    /* The parser reads one byte past the end: give it a terminated copy. */
    unsigned char stackbuf[1024], *buf = stackbuf;
    if (len + 1 > sizeof stackbuf && !(buf = malloc(len + 1)))
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_criteo_parse_line: %zu B line", len);
    if (len) memcpy(buf, line, len);
    buf[len] = '\n';
    const unsigned char *e = buf + len;
    if (e > buf && e[-1] == '\r') e--;
    int field = 0;
    int k = ember__criteo_parse(&c, buf, e, dense, sparse, label, &field);
    ember_status st = EMBER_OK;
    if (k >= 0) {
        char msg[400];
        ember__criteo_fault_text(msg, sizeof msg, cfg->path ? cfg->path : "<line>", 1, k, field, has_label,
                                 buf, e, c.max_line);
        if (fault) *fault = (ember_criteo_fault)k;
        st = ember__error(EMBER_ERR_PARSE, "%s", msg);
    }
    if (buf != stackbuf) free(buf);
    return st;
}

/* ---- the reader ---- */

typedef struct fault_rec {
    int64_t line; /* 1-based */
    int fault, field;
    size_t off, end; /* the line in buf */
} fault_rec;

typedef struct piece {
    size_t begin, end;
    int64_t lines, line0, row0, good;
    int64_t bad[EMBER_CRITEO_FAULT_COUNT];
    int nrec;
    fault_rec rec[MAX_RECORDED];
} piece;

struct ember_criteo_reader {
    ember_criteo_params p;
    ember_memory *mm;
    ember__source src;
    ember__criteo_cfg cfg;
    int threads, max_logged, logged;
    size_t block, max_line;
    unsigned char *buf; /* (cap) input bytes, partial last line carried at the front */
    size_t cap, len;
    /* Read-ahead: while a chunk is parsed, a thread moves its partial last line to the
     * front of alt and reads the next block behind it. */
    unsigned char *alt; /* (cap) */
    pthread_t ahead;
    int ahead_active;
    size_t ahead_carry, ahead_len;
    ember_status ahead_st;
    char ahead_msg[512];
    uint64_t raw_bytes; /* the source's count, copied while no read-ahead runs */
    int skipping; /* discarding the rest of an overlong line */
    int64_t line_no;   /* lines consumed */
    int64_t rows_out;  /* good rows delivered */
    float *dense;      /* (out_cap, 13) */
    uint32_t *sparse;  /* (out_cap, 26) */
    int32_t *labels;   /* (out_cap) */
    int64_t out_cap;
    piece *pieces;
    int npieces_cap;
    ember__pool *pool; /* threads - 1 parse workers */
    int stop_at_first;
    ember_status failed;
    char fail_msg[512];
    ember_criteo_stats st;
};

static ember_status check_params(const ember_criteo_params *p, const char *fn) {
    if ((unsigned)p->label >= EMBER_CRITEO_LABEL_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: label mode %d invalid", fn, (int)p->label);
    if ((unsigned)p->dense >= EMBER_DENSE_TRANSFORM_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: dense transform %d invalid", fn, (int)p->dense);
    if ((unsigned)p->on_error >= EMBER_ON_ERROR_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: on_error %d invalid", fn, (int)p->on_error);
    if (p->max_line_bytes > ((size_t)1 << 30))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: max_line_bytes %zu above 1 GiB", fn, p->max_line_bytes);
    if (p->block_bytes > ((size_t)1 << 34))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: block_bytes %zu above 16 GiB", fn, p->block_bytes);
    return EMBER_OK;
}

ember_status ember_criteo_open(const ember_criteo_params *p, ember_criteo_reader **out) {
    EMBER_CHECK_NULL(p, "ember_criteo_open");
    EMBER_CHECK_NULL(out, "ember_criteo_open");
    *out = NULL;
    EMBER_TRY(check_params(p, "ember_criteo_open"));
    if (!p->path && !p->data)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_criteo_open: neither path nor data given");
    ember_criteo_reader *r = calloc(1, sizeof *r);
    if (!r) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_criteo_open: reader");
    r->p = *p;
    r->p.path = NULL; /* not kept: the source holds the name */
    r->p.data = NULL;
    r->mm = p->mm;
    r->threads = ember__ds_threads(p->threads);
    r->max_logged = p->max_logged == 0 ? 10 : p->max_logged < 0 ? 0 : p->max_logged;
    r->block = p->block_bytes ? p->block_bytes : (size_t)16 << 20;
    r->max_line = p->max_line_bytes ? p->max_line_bytes : (size_t)64 << 10;
    r->cap = r->block + r->max_line + 2;
    r->st.has_label = p->label == EMBER_CRITEO_LABEL_PRESENT ? 1 : p->label == EMBER_CRITEO_LABEL_ABSENT ? 0 : -1;
    ember_status st = ember__source_open(&r->src, p->path, p->data, p->size, p->mm);
    if (st == EMBER_OK) st = ember__ds_alloc(r->mm, r->cap, (void **)&r->buf);
    if (st == EMBER_OK) st = ember__ds_alloc(r->mm, r->cap, (void **)&r->alt);
    if (st == EMBER_OK) st = ember__pool_create(r->threads, &r->pool);
    if (st != EMBER_OK) {
        if (r->src.zin || r->src.fd >= 0) ember__source_close(&r->src);
        ember__ds_free(r->mm, r->buf);
        ember__ds_free(r->mm, r->alt);
        free(r);
        return st;
    }
    r->st.gzip = r->src.gzip != 0;
    r->st.file_bytes = r->src.file_bytes;
    if (r->st.has_label >= 0) ember__criteo_cfg_init(&r->cfg, p, r->st.has_label);
    *out = r;
    return EMBER_OK;
}

static void ahead_join(ember_criteo_reader *r);

void ember_criteo_close(ember_criteo_reader *r) {
    if (!r) return;
    ahead_join(r);
    ember__pool_destroy(r->pool);
    ember__source_close(&r->src);
    ember__ds_free(r->mm, r->buf);
    ember__ds_free(r->mm, r->alt);
    ember__ds_free(r->mm, r->dense);
    ember__ds_free(r->mm, r->sparse);
    ember__ds_free(r->mm, r->labels);
    free(r->pieces);
    free(r);
}

void ember_criteo_get_stats(const ember_criteo_reader *r, ember_criteo_stats *out) {
    if (!r || !out) return;
    *out = r->st;
    out->raw_bytes = r->raw_bytes;
}

static ember_status fail(ember_criteo_reader *r, ember_status st, const char *msg) {
    r->failed = st;
    ember__copy_str(r->fail_msg, sizeof r->fail_msg, msg);
    return ember__error(st, "%s", msg);
}

/* A bad line in skip mode: count, and log the first few. */
static void note_bad(ember_criteo_reader *r, int fault, const char *msg) {
    r->st.bad[fault]++;
    r->st.bad_total++;
    if (!r->st.first_bad[0]) ember__copy_str(r->st.first_bad, sizeof r->st.first_bad, msg);
    if (r->logged < r->max_logged) {
        ember_log(EMBER_LOG_WARN, "skipped %s", msg);
        if (++r->logged == r->max_logged)
            ember_log(EMBER_LOG_WARN, "criteo %s: further malformed lines are counted, not logged", r->src.name);
    }
}

static ember_status ensure_out(ember_criteo_reader *r, int64_t rows) {
    if (rows <= r->out_cap) return EMBER_OK;
    int64_t cap = r->out_cap ? r->out_cap : 1024;
    while (cap < rows) cap *= 2;
    ember__ds_free(r->mm, r->dense);
    ember__ds_free(r->mm, r->sparse);
    ember__ds_free(r->mm, r->labels);
    r->dense = NULL;
    r->sparse = NULL;
    r->labels = NULL;
    r->out_cap = 0;
    EMBER_TRY(ember__ds_alloc(r->mm, (size_t)cap * ND * sizeof(float), (void **)&r->dense));
    EMBER_TRY(ember__ds_alloc(r->mm, (size_t)cap * NS * sizeof(uint32_t), (void **)&r->sparse));
    EMBER_TRY(ember__ds_alloc(r->mm, (size_t)cap * sizeof(int32_t), (void **)&r->labels));
    r->out_cap = cap;
    return EMBER_OK;
}

/* '\n' bytes in [p, e): 16 at a time with SSE2 (every x86-64 has it), byte counters
 * summed every 255 blocks; 8 at a time with plain 64-bit words elsewhere. */
static int64_t count_lines(const unsigned char *p, const unsigned char *e) {
    int64_t n = 0;
#ifdef __SSE2__
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (p + 16 <= e) {
        __m128i acc = zero;
        for (int k = 0; k < 255 && p + 16 <= e; k++, p += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), nl));
        __m128i sums = _mm_sad_epu8(acc, zero); /* two 64-bit sums of eight bytes */
        n += _mm_cvtsi128_si64(sums) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
    }
#else
    const uint64_t lo7 = UINT64_C(0x7f7f7f7f7f7f7f7f), nl = UINT64_C(0x0a0a0a0a0a0a0a0a);
    const uint64_t m8 = UINT64_C(0x00ff00ff00ff00ff);
    while (p + 8 <= e) {
        uint64_t acc = 0;
        for (int k = 0; k < 255 && p + 8 <= e; k++, p += 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t x = w ^ nl;                /* zero bytes where '\n' */
            uint64_t t = ((x & lo7) + lo7) | x; /* high bit set where the byte is not zero */
            acc += (~t & ~lo7) >> 7;            /* 1 in each byte that was '\n' */
        }
        acc = (acc & m8) + ((acc >> 8) & m8);
        n += (int64_t)((acc * UINT64_C(0x0001000100010001)) >> 48);
    }
#endif
    for (; p < e; p++) n += *p == '\n';
    return n;
}

static void parse_piece(ember_criteo_reader *r, piece *pc, int stop_at_first) {
    const unsigned char *p = r->buf + pc->begin, *end = r->buf + pc->end;
    /* Bytes readable for the 8-byte loads: the buffer's bytes up to its capacity. */
    const unsigned char *lim = r->buf + r->cap;
    int64_t line = pc->line0, slot = pc->row0;
    float *dense = r->dense;
    uint32_t *sparse = r->sparse;
    int32_t *labels = r->labels;
    while (p < end) {
        line++;
        const unsigned char *next = parse_fast(&r->cfg, p, lim, dense + slot * ND, sparse + slot * NS, labels + slot);
        if (next) {
            slot++;
            p = next;
            continue;
        }
        /* Something is off: find the line's end and let the full parser say what. */
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end; /* last line at end of input: the byte at end is a '\n' sentinel */
        const unsigned char *e = nl;
        if (e > p && e[-1] == '\r') e--;
        int field = 0;
        int k = ember__criteo_parse(&r->cfg, p, e, dense + slot * ND, sparse + slot * NS, labels + slot, &field);
        if (k < 0) {
            slot++;
        } else {
            pc->bad[k]++;
            if (pc->nrec < MAX_RECORDED) {
                fault_rec *fr = &pc->rec[pc->nrec++];
                fr->line = line;
                fr->fault = k;
                fr->field = field;
                fr->off = (size_t)(p - r->buf);
                fr->end = (size_t)(e - r->buf);
            }
            if (stop_at_first) break;
        }
        p = nl + 1;
    }
    pc->good = slot - pc->row0;
}

static void count_job(void *arg, int i) {
    ember_criteo_reader *r = arg;
    r->pieces[i].lines = count_lines(r->buf + r->pieces[i].begin, r->buf + r->pieces[i].end);
}

static void parse_job(void *arg, int i) {
    ember_criteo_reader *r = arg;
    parse_piece(r, &r->pieces[i], r->stop_at_first);
}

/* Decide whether lines have a label from the first line. */
static ember_status detect_label(ember_criteo_reader *r, size_t region) {
    const unsigned char *p = r->buf, *e = memchr(p, '\n', region);
    if (!e) e = p + region;
    if (e > p && e[-1] == '\r') e--;
    int n = count_fields(p, e);
    if ((size_t)(e - p) > r->max_line) {
        char msg[640];
        snprintf(msg, sizeof msg,
                 "criteo %s line 1: longer than %zu bytes, so whether the lines have a label cannot be "
                 "detected; declare it with label=PRESENT or ABSENT",
                 r->src.name, r->max_line);
        return fail(r, EMBER_ERR_PARSE, msg);
    }
    if (n != NF && n != NF - 1) {
        char msg[640];
        snprintf(msg, sizeof msg,
                 "criteo %s line 1: %d tab-separated fields, so whether the lines have a label cannot "
                 "be detected (40 with label, 39 without); declare it with label=PRESENT or ABSENT",
                 r->src.name, n);
        return fail(r, EMBER_ERR_PARSE, msg);
    }
    r->st.has_label = n == NF;
    ember__criteo_cfg_init(&r->cfg, &r->p, r->st.has_label);
    return EMBER_OK;
}

/* Parse buf[0, region) (whole lines; at end of input the last may lack its '\n'). */
static ember_status parse_region(ember_criteo_reader *r, size_t region, int64_t *rows) {
    *rows = 0;
    if (r->st.has_label < 0) EMBER_TRY(detect_label(r, region));
    /* Four pieces per thread, taken one at a time: a thread the OS preempts on a busy
     * machine holds up one small piece, not a share of the chunk. */
    int np = 4 * r->threads;
    if (region / (size_t)np < MIN_PIECE) np = (int)(region / MIN_PIECE) + 1;
    if (np > 4 * r->threads) np = 4 * r->threads;
    size_t per = region / (size_t)np;
    if (np > r->npieces_cap) {
        piece *pcs = realloc(r->pieces, (size_t)np * sizeof *pcs);
        if (!pcs) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "criteo reader: %d pieces", np);
        r->pieces = pcs;
        r->npieces_cap = np;
    }
    piece *pcs = r->pieces;
    size_t at = 0;
    for (int i = 0; i < np; i++) {
        memset(&pcs[i], 0, sizeof pcs[i]);
        pcs[i].begin = at;
        size_t want = i == np - 1 ? region : (size_t)(i + 1) * per;
        if (want < at) want = at;
        if (want < region && i < np - 1) {
            const unsigned char *nl = memchr(r->buf + want, '\n', region - want);
            want = nl ? (size_t)(nl - r->buf) + 1 : region;
        }
        pcs[i].end = want;
        at = want;
    }
    int ends_nl = region > 0 && r->buf[region - 1] == '\n';
    if (!ends_nl) r->buf[region] = '\n'; /* sentinel after a last line without '\n' */
    ember__pool_run(r->pool, np, count_job, r);
    for (int i = np - 1; i >= 0; i--)
        if (pcs[i].end > pcs[i].begin) {
            if (!ends_nl) pcs[i].lines++;
            break;
        }
    int64_t total = 0;
    for (int i = 0; i < np; i++) {
        pcs[i].line0 = r->line_no + total;
        pcs[i].row0 = total;
        total += pcs[i].lines;
    }
    EMBER_TRY(ensure_out(r, total));
    int stop = r->p.on_error == EMBER_ON_ERROR_STOP;
    r->stop_at_first = stop;
    ember__pool_run(r->pool, np, parse_job, r);

    char msg[512];
    for (int i = 0; i < np; i++) {
        for (int k = 0; k < pcs[i].nrec; k++) {
            fault_rec *fr = &pcs[i].rec[k];
            ember__criteo_fault_text(msg, sizeof msg, r->src.name, fr->line, fr->fault, fr->field,
                                     r->st.has_label, r->buf + fr->off, r->buf + fr->end, r->max_line);
            if (stop) {
                r->st.bad[fr->fault]++;
                r->st.bad_total++;
                if (!r->st.first_bad[0]) ember__copy_str(r->st.first_bad, sizeof r->st.first_bad, msg);
                return fail(r, EMBER_ERR_PARSE, msg);
            }
            note_bad(r, fr->fault, msg);
        }
        /* Faults beyond the recorded ones: counted only. */
        int64_t recorded[EMBER_CRITEO_FAULT_COUNT] = {0};
        for (int k = 0; k < pcs[i].nrec; k++) recorded[pcs[i].rec[k].fault]++;
        for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) {
            r->st.bad[k] += pcs[i].bad[k] - recorded[k];
            r->st.bad_total += pcs[i].bad[k] - recorded[k];
        }
    }
    /* Close the gaps left by bad lines. */
    int64_t dst = 0;
    for (int i = 0; i < np; i++) {
        if (pcs[i].row0 != dst && pcs[i].good > 0) {
            memmove(r->dense + dst * ND, r->dense + pcs[i].row0 * ND, (size_t)pcs[i].good * ND * sizeof(float));
            memmove(r->sparse + dst * NS, r->sparse + pcs[i].row0 * NS, (size_t)pcs[i].good * NS * sizeof(uint32_t));
            memmove(r->labels + dst, r->labels + pcs[i].row0, (size_t)pcs[i].good * sizeof(int32_t));
        }
        dst += pcs[i].good;
    }
    r->line_no += total;
    r->st.lines += total;
    r->st.rows += dst;
    r->st.bytes += region;
    *rows = dst;
    return EMBER_OK;
}

/* An overlong line with no '\n' in sight: count it and drop bytes up to its end. */
static ember_status overlong(ember_criteo_reader *r) {
    char msg[640];
    if (r->st.has_label < 0) {
        snprintf(msg, sizeof msg,
                 "criteo %s line 1: longer than %zu bytes, so whether the lines have a label cannot be "
                 "detected; declare it with label=PRESENT or ABSENT",
                 r->src.name, r->max_line);
        return fail(r, EMBER_ERR_PARSE, msg);
    }
    r->line_no++;
    r->st.lines++;
    ember__criteo_fault_text(msg, sizeof msg, r->src.name, r->line_no, EMBER_CRITEO_FAULT_LINE_TOO_LONG, 0,
                             r->st.has_label > 0, NULL, NULL, r->max_line);
    if (r->p.on_error == EMBER_ON_ERROR_STOP) {
        r->st.bad[EMBER_CRITEO_FAULT_LINE_TOO_LONG]++;
        r->st.bad_total++;
        return fail(r, EMBER_ERR_PARSE, msg);
    }
    note_bad(r, EMBER_CRITEO_FAULT_LINE_TOO_LONG, msg);
    r->st.bytes += r->len;
    r->len = 0;
    r->skipping = 1;
    return EMBER_OK;
}

static void *ahead_main(void *arg) {
    ember_criteo_reader *r = arg;
    memcpy(r->alt, r->buf + r->len - r->ahead_carry, r->ahead_carry);
    size_t got = 0;
    r->ahead_st = ember__source_read(&r->src, r->alt + r->ahead_carry, r->cap - 1 - r->ahead_carry, &got);
    if (r->ahead_st != EMBER_OK) ember__copy_str(r->ahead_msg, sizeof r->ahead_msg, ember__error_text());
    r->ahead_len = r->ahead_carry + got;
    return NULL;
}

/* Wait for the read-ahead and make its buffer the current one. */
static void ahead_join(ember_criteo_reader *r) {
    if (!r->ahead_active) return;
    pthread_join(r->ahead, NULL);
    r->ahead_active = 0;
    unsigned char *t = r->buf;
    r->buf = r->alt;
    r->alt = t;
    r->len = r->ahead_len;
    r->raw_bytes = r->src.raw_bytes;
}

ember_status ember_criteo_read(ember_criteo_reader *r, ember_criteo_rows *out) {
    EMBER_CHECK_NULL(r, "ember_criteo_read");
    EMBER_CHECK_NULL(out, "ember_criteo_read");
    memset(out, 0, sizeof *out);
    if (r->failed) return ember__error(r->failed, "%s", r->fail_msg);
    for (;;) {
        if (r->ahead_active) {
            ahead_join(r);
            if (r->ahead_st != EMBER_OK) return fail(r, r->ahead_st, r->ahead_msg);
        } else if (!r->src.eof && r->len < r->cap - 1) {
            /* Fill the buffer up to its capacity (minus the sentinel byte). */
            size_t got;
            ember_status st = ember__source_read(&r->src, r->buf + r->len, r->cap - 1 - r->len, &got);
            r->raw_bytes = r->src.raw_bytes;
            if (st != EMBER_OK) {
                char msg[512];
                ember__copy_str(msg, sizeof msg, ember__error_text());
                return fail(r, st, msg);
            }
            r->len += got;
        }
        int eof = r->src.eof;
        if (r->skipping) {
            const unsigned char *nl = memchr(r->buf, '\n', r->len);
            size_t drop = nl ? (size_t)(nl - r->buf) + 1 : r->len;
            memmove(r->buf, r->buf + drop, r->len - drop);
            r->len -= drop;
            r->st.bytes += drop;
            if (nl) r->skipping = 0;
            else if (eof) r->skipping = 0;
            continue;
        }
        if (r->len == 0) {
            if (eof) return EMBER_OK; /* n == 0: end */
            continue;
        }
        size_t region;
        if (eof) {
            region = r->len;
        } else {
            const unsigned char *nl = memrchr(r->buf, '\n', r->len);
            if (!nl) {
                EMBER_TRY(overlong(r)); /* the buffer is full: len > max_line */
                continue;
            }
            region = (size_t)(nl - r->buf) + 1;
        }
        /* Read the next block while this one is parsed. The thread only reads
         * buf[region, len), which the parse never touches. */
        if (!eof) {
            r->ahead_carry = r->len - region;
            r->ahead_active = pthread_create(&r->ahead, NULL, ahead_main, r) == 0;
        }
        int64_t rows;
        ember_status st = parse_region(r, region, &rows);
        if (st != EMBER_OK) {
            ahead_join(r);
            return st;
        }
        if (!r->ahead_active) {
            memmove(r->buf, r->buf + region, r->len - region);
            r->len -= region;
        }
        if (rows > 0) {
            out->n = rows;
            out->first = r->rows_out;
            out->dense = r->dense;
            out->sparse = r->sparse;
            out->labels = r->labels;
            r->rows_out += rows;
            return EMBER_OK;
        }
    }
}

/* ---- vocabulary ---- */

typedef struct u32map {
    uint32_t *keys, *vals; /* key 0 = empty */
    uint64_t cap, used;
} u32map;

static inline uint64_t hash32(uint32_t x) {
    uint64_t h = (uint64_t)x * UINT64_C(0x9E3779B97F4A7C15);
    return h ^ (h >> 29);
}

static ember_status u32map_init(ember_memory *mm, u32map *m, uint64_t cap) {
    m->cap = cap;
    m->used = 0;
    m->keys = m->vals = NULL;
    EMBER_TRY(ember__ds_alloc(mm, cap * sizeof(uint32_t), (void **)&m->keys));
    EMBER_TRY(ember__ds_alloc(mm, cap * sizeof(uint32_t), (void **)&m->vals));
    memset(m->keys, 0, cap * sizeof(uint32_t));
    return EMBER_OK;
}

static void u32map_free(ember_memory *mm, u32map *m) {
    ember__ds_free(mm, m->keys);
    ember__ds_free(mm, m->vals);
    m->keys = m->vals = NULL;
}

static ember_status u32map_add(ember_memory *mm, u32map *m, uint32_t key) {
    if ((m->used + 1) * 2 > m->cap) {
        u32map n;
        ember_status st = u32map_init(mm, &n, m->cap * 2);
        if (st != EMBER_OK) {
            u32map_free(mm, &n);
            return st;
        }
        for (uint64_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            uint64_t j = hash32(m->keys[i]) & (n.cap - 1);
            while (n.keys[j]) j = (j + 1) & (n.cap - 1);
            n.keys[j] = m->keys[i];
            n.vals[j] = m->vals[i];
        }
        n.used = m->used;
        u32map_free(mm, m);
        *m = n;
    }
    uint64_t j = hash32(key) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (!m->keys[j]) {
        m->keys[j] = key;
        m->vals[j] = 0;
        m->used++;
    }
    if (m->vals[j] != UINT32_MAX) m->vals[j]++;
    return EMBER_OK;
}

struct ember_criteo_vocab {
    ember_memory *mm;
    u32map f[NS];
    int64_t size[NS];
};

uint32_t ember_criteo_vocab_map(const ember_criteo_vocab *v, int field, uint32_t raw) {
    if (!v || (unsigned)field >= NS || raw == 0) return 0;
    const u32map *m = &v->f[field];
    uint64_t j = hash32(raw) & (m->cap - 1);
    for (;;) {
        uint32_t k = m->keys[j];
        if (k == raw) return m->vals[j];
        if (k == 0) return 0;
        j = (j + 1) & (m->cap - 1);
    }
}

int64_t ember_criteo_vocab_size(const ember_criteo_vocab *v, int field) {
    return v && (unsigned)field < NS ? v->size[field] : 0;
}

void ember_criteo_vocab_destroy(ember_criteo_vocab *v) {
    if (!v) return;
    for (int j = 0; j < NS; j++) u32map_free(v->mm, &v->f[j]);
    free(v);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

ember_status ember_criteo_vocab_build(const ember_criteo_vocab_params *p, ember_criteo_vocab **out) {
    EMBER_CHECK_NULL(p, "ember_criteo_vocab_build");
    EMBER_CHECK_NULL(out, "ember_criteo_vocab_build");
    *out = NULL;
    if (p->num_paths <= 0 || !p->paths)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_criteo_vocab_build: no input files");
    ember_criteo_params rp = p->parse ? *p->parse : (ember_criteo_params){0};
    rp.vocab = NULL;
    rp.hash_cap = 0;
    rp.data = NULL;
    rp.dense = EMBER_DENSE_RAW;
    ember_criteo_vocab *v = calloc(1, sizeof *v);
    if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_criteo_vocab_build");
    v->mm = rp.mm;
    ember_status st = EMBER_OK;
    for (int j = 0; j < NS && st == EMBER_OK; j++) st = u32map_init(v->mm, &v->f[j], 1024);
    for (int i = 0; i < p->num_paths && st == EMBER_OK; i++) {
        rp.path = p->paths[i];
        ember_criteo_reader *r = NULL;
        st = ember_criteo_open(&rp, &r);
        ember_criteo_rows rows;
        while (st == EMBER_OK && (st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
            /* One field per thread: the tables are independent. */
            ember_status fst[NS];
#pragma omp parallel for num_threads(ember__ds_threads(rp.threads)) schedule(dynamic, 1)
            for (int j = 0; j < NS; j++) {
                fst[j] = EMBER_OK;
                for (int64_t k = 0; k < rows.n && fst[j] == EMBER_OK; k++) {
                    uint32_t id = rows.sparse[k * NS + j];
                    if (id) fst[j] = u32map_add(v->mm, &v->f[j], id);
                }
            }
            for (int j = 0; j < NS; j++)
                if (fst[j] != EMBER_OK) st = ember__error(fst[j], "ember_criteo_vocab_build: counting ids of C%d", j + 1);
        }
        ember_criteo_close(r);
    }
    /* Keep ids seen at least min_count times, numbered 1..K by raw id. */
    for (int j = 0; j < NS && st == EMBER_OK; j++) {
        u32map *c = &v->f[j];
        uint32_t *keep = NULL;
        uint64_t nk = 0;
        st = ember__ds_alloc(v->mm, (c->used + 1) * sizeof(uint32_t), (void **)&keep);
        if (st != EMBER_OK) break;
        for (uint64_t k = 0; k < c->cap; k++)
            if (c->keys[k] && c->vals[k] >= (p->min_count ? p->min_count : 1)) keep[nk++] = c->keys[k];
        qsort(keep, nk, sizeof *keep, cmp_u32);
        uint64_t cap = 16;
        while (cap < 2 * nk + 2) cap *= 2;
        u32map m;
        st = u32map_init(v->mm, &m, cap);
        if (st == EMBER_OK) {
            for (uint64_t k = 0; k < nk; k++) {
                uint64_t h = hash32(keep[k]) & (cap - 1);
                while (m.keys[h]) h = (h + 1) & (cap - 1);
                m.keys[h] = keep[k];
                m.vals[h] = (uint32_t)(k + 1);
            }
            m.used = nk;
            u32map_free(v->mm, c);
            *c = m;
            v->size[j] = (int64_t)nk + 1;
        } else {
            u32map_free(v->mm, &m);
        }
        ember__ds_free(v->mm, keep);
    }
    if (st != EMBER_OK) {
        ember_criteo_vocab_destroy(v);
        return st;
    }
    *out = v;
    return EMBER_OK;
}
