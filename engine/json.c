/*
 * A strict JSON parser for untrusted headers (see engine/json.h).
 *
 * Recursive descent with an explicit depth limit. Every read goes through
 * `p < end` checks: the input needs no terminator and nothing past its end is ever
 * touched. Nodes and decoded strings grow in two arrays addressed by index while
 * parsing (realloc may move them); once the whole input is accepted, one pass turns
 * indices into pointers so the accessors need no document handle.
 */
#include "engine/json.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

struct ember__json {
    uint8_t type;
    uint8_t has_uint;
    uint32_t count;
    size_t offset;
    uint64_t u;
    /* while parsing: indices (NONE = absent); afterwards the pointers below */
    uint32_t first_i, next_i, key_i, str_i;
    size_t len;
    const ember__json *first, *next;
    const char *key, *str;
};

struct ember__json_doc {
    ember__json *nodes;
    size_t n, cap;
    char *strings;
    size_t slen, scap;
};

typedef struct parser {
    const unsigned char *start, *p, *end;
    ember__json_doc *doc;
    ember__json_error *err;
    int oom;
} parser;

static int fail(parser *ps, const unsigned char *at, const char *reason) {
    if (!ps->err->reason) {
        ps->err->offset = (size_t)(at - ps->start);
        ps->err->reason = reason;
    }
    return 0;
}

static int oom(parser *ps) {
    ps->oom = 1;
    return fail(ps, ps->p, "out of memory");
}

static uint32_t new_node(parser *ps, int type, const unsigned char *at) {
    ember__json_doc *d = ps->doc;
    if (d->n >= EMBER__JSON_MAX_NODES) {
        fail(ps, at, "too many values (limit 4194304)");
        return NONE;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 64;
        ember__json *nn = realloc(d->nodes, nc * sizeof *nn);
        if (!nn) {
            oom(ps);
            return NONE;
        }
        d->nodes = nn;
        d->cap = nc;
    }
    ember__json *v = &d->nodes[d->n];
    memset(v, 0, sizeof *v);
    v->type = (uint8_t)type;
    v->offset = (size_t)(at - ps->start);
    v->first_i = v->next_i = v->key_i = v->str_i = NONE;
    return (uint32_t)d->n++;
}

static int put_bytes(parser *ps, const void *b, size_t n) {
    ember__json_doc *d = ps->doc;
    if (d->scap - d->slen < n) {
        size_t nc = d->scap ? d->scap : 256;
        while (nc - d->slen < n) {
            if (nc > SIZE_MAX / 2) return oom(ps);
            nc *= 2;
        }
        char *ns = realloc(d->strings, nc);
        if (!ns) return oom(ps);
        d->strings = ns;
        d->scap = nc;
    }
    memcpy(d->strings + d->slen, b, n);
    d->slen += n;
    return 1;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(parser *ps, const unsigned char *at, unsigned *out) {
    if (ps->end - at < 4) return fail(ps, at, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = at[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return fail(ps, at + i, "bad hex digit in \\u escape");
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid (RFC 3629 table). */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F; /* no encoded surrogates */
    else if (c >= 0xEE && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F; /* nothing above U+10FFFF */
    else return 0;
    if (end - p < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

static int put_utf8(parser *ps, unsigned cp) {
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) b[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800) b[0] = (unsigned char)(0xC0 | (cp >> 6)), b[1] = (unsigned char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        b[0] = (unsigned char)(0xE0 | (cp >> 12)), b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)),
        b[2] = (unsigned char)(0x80 | (cp & 0x3F)), n = 3;
    else
        b[0] = (unsigned char)(0xF0 | (cp >> 18)), b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)),
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (unsigned char)(0x80 | (cp & 0x3F)), n = 4;
    return put_bytes(ps, b, n);
}

/* Parses a string at ps->p (which is at '"'); appends its decoded text and a NUL to
 * the string arena; *at = arena offset, *len = decoded length. */
static int parse_string(parser *ps, uint32_t *at, size_t *len) {
    const unsigned char *q = ps->p + 1;
    size_t begin = ps->doc->slen;
    if (begin > UINT32_MAX - 1) return fail(ps, ps->p, "strings too long");
    for (;;) {
        if (q >= ps->end) return fail(ps, ps->p, "unterminated string");
        unsigned c = *q;
        if (c == '"') break;
        if (c < 0x20) return fail(ps, q, "control character in string (must be escaped)");
        if (c == '\\') {
            if (ps->end - q < 2) return fail(ps, q, "unterminated escape");
            unsigned e = q[1], ch;
            switch (e) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                unsigned cp;
                if (!hex4(ps, q + 2, &cp)) return 0;
                const unsigned char *esc = q;
                q += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, esc, "lone low surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (ps->end - q < 2 || q[0] != '\\' || q[1] != 'u')
                        return fail(ps, esc, "high surrogate not followed by a low surrogate");
                    if (!hex4(ps, q + 2, &lo)) return 0;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail(ps, q, "high surrogate not followed by a low surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    q += 6;
                }
                if (cp == 0) return fail(ps, esc, "\\u0000 (NUL) in string is not supported");
                if (!put_utf8(ps, cp)) return 0;
                continue;
            }
            default: return fail(ps, q, "invalid escape in string");
            }
            unsigned char b = (unsigned char)ch;
            if (!put_bytes(ps, &b, 1)) return 0;
            q += 2;
            continue;
        }
        /* Copy a run of plain bytes, validating UTF-8 as we go. */
        const unsigned char *run = q;
        while (q < ps->end && *q != '"' && *q != '\\' && *q >= 0x20) {
            int n = utf8_len(q, ps->end);
            if (!n) return fail(ps, q, "invalid UTF-8 in string");
            q += n;
        }
        if (!put_bytes(ps, run, (size_t)(q - run))) return 0;
    }
    size_t n = ps->doc->slen - begin;
    if (!put_bytes(ps, "", 1)) return 0;
    if (ps->doc->slen > UINT32_MAX) return fail(ps, ps->p, "strings too long");
    ps->p = q + 1;
    *at = (uint32_t)begin;
    *len = n;
    return 1;
}

static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *ps, uint32_t idx) {
    const unsigned char *q = ps->p, *s = q;
    int neg = 0, integer = 1;
    if (*q == '-') neg = 1, q++;
    if (q >= ps->end || !is_digit(*q)) return fail(ps, s, "invalid number");
    if (*q == '0') {
        q++;
        if (q < ps->end && is_digit(*q)) return fail(ps, s, "leading zero in number");
    } else {
        while (q < ps->end && is_digit(*q)) q++;
    }
    const unsigned char *int_end = q;
    if (q < ps->end && *q == '.') {
        integer = 0;
        q++;
        if (q >= ps->end || !is_digit(*q)) return fail(ps, q, "digit expected after '.'");
        while (q < ps->end && is_digit(*q)) q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integer = 0;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !is_digit(*q)) return fail(ps, q, "digit expected in exponent");
        while (q < ps->end && is_digit(*q)) q++;
    }
    /* Keep the text as the node's string. */
    uint32_t at;
    size_t begin = ps->doc->slen;
    if (!put_bytes(ps, s, (size_t)(q - s)) || !put_bytes(ps, "", 1)) return 0;
    if (ps->doc->slen > UINT32_MAX) return fail(ps, s, "strings too long");
    at = (uint32_t)begin;
    ember__json *v = &ps->doc->nodes[idx];
    v->str_i = at;
    v->len = (size_t)(q - s);
    if (integer && !neg) {
        uint64_t u = 0;
        int ok = 1;
        for (const unsigned char *d = s; d < int_end; d++) {
            unsigned dv = *d - '0';
            if (u > (UINT64_MAX - dv) / 10) {
                ok = 0;
                break;
            }
            u = u * 10 + dv;
        }
        if (ok) v->has_uint = 1, v->u = u;
    }
    ps->p = q;
    return 1;
}

static int literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, ps->p, "invalid literal (expected true, false or null)");
    ps->p += n;
    return 1;
}

static uint32_t parse_value(parser *ps, int depth);

/* Appends child to parent's list (tracking the last child in *last). */
static void link_child(parser *ps, uint32_t parent, uint32_t *last, uint32_t child) {
    ember__json *nodes = ps->doc->nodes;
    if (*last == NONE) nodes[parent].first_i = child;
    else nodes[*last].next_i = child;
    *last = child;
    nodes[parent].count++;
}

static uint32_t parse_container(parser *ps, int depth, int object) {
    const unsigned char *open = ps->p;
    if (depth >= EMBER__JSON_MAX_DEPTH) {
        fail(ps, open, "nesting too deep (limit 64)");
        return NONE;
    }
    uint32_t idx = new_node(ps, object ? EMBER__JSON_OBJECT : EMBER__JSON_ARRAY, open);
    if (idx == NONE) return NONE;
    ps->p++;
    skip_ws(ps);
    uint32_t last = NONE;
    unsigned char close = object ? '}' : ']';
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return idx;
    }
    for (;;) {
        uint32_t key = NONE;
        if (object) {
            if (ps->p >= ps->end) {
                fail(ps, open, "unterminated object");
                return NONE;
            }
            if (*ps->p != '"') {
                fail(ps, ps->p, "expected a string key in object");
                return NONE;
            }
            size_t klen;
            if (!parse_string(ps, &key, &klen)) return NONE;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                fail(ps, ps->p, "expected ':' after object key");
                return NONE;
            }
            ps->p++;
            skip_ws(ps);
        }
        uint32_t child = parse_value(ps, depth + 1);
        if (child == NONE) return NONE;
        ps->doc->nodes[child].key_i = key;
        link_child(ps, idx, &last, child);
        skip_ws(ps);
        if (ps->p >= ps->end) {
            fail(ps, open, object ? "unterminated object" : "unterminated array");
            return NONE;
        }
        if (*ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == close) {
                fail(ps, ps->p, "trailing comma");
                return NONE;
            }
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            return idx;
        }
        fail(ps, ps->p, object ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
        return NONE;
    }
}

static uint32_t parse_value(parser *ps, int depth) {
    if (ps->p >= ps->end) {
        fail(ps, ps->p, "unexpected end of input (value expected)");
        return NONE;
    }
    const unsigned char *at = ps->p;
    uint32_t idx;
    switch (*at) {
    case '{': return parse_container(ps, depth, 1);
    case '[': return parse_container(ps, depth, 0);
    case '"': {
        idx = new_node(ps, EMBER__JSON_STRING, at);
        if (idx == NONE) return NONE;
        uint32_t s;
        size_t len;
        if (!parse_string(ps, &s, &len)) return NONE;
        ps->doc->nodes[idx].str_i = s;
        ps->doc->nodes[idx].len = len;
        return idx;
    }
    case 't':
        idx = new_node(ps, EMBER__JSON_TRUE, at);
        return idx != NONE && literal(ps, "true") ? idx : NONE;
    case 'f':
        idx = new_node(ps, EMBER__JSON_FALSE, at);
        return idx != NONE && literal(ps, "false") ? idx : NONE;
    case 'n':
        idx = new_node(ps, EMBER__JSON_NULL, at);
        return idx != NONE && literal(ps, "null") ? idx : NONE;
    default:
        if (*at == '-' || is_digit(*at)) {
            idx = new_node(ps, EMBER__JSON_NUMBER, at);
            if (idx == NONE || !parse_number(ps, idx)) return NONE;
            return idx;
        }
        fail(ps, at, "unexpected character (value expected)");
        return NONE;
    }
}

void ember__json_free(ember__json_doc *doc) {
    if (!doc) return;
    free(doc->nodes);
    free(doc->strings);
    free(doc);
}

ember_status ember__json_parse(const void *buf, size_t n, ember__json_doc **out,
                               ember__json_error *err) {
    static const char empty[1] = "";
    *out = NULL;
    err->offset = 0;
    err->reason = NULL;
    ember__json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return EMBER_ERR_OUT_OF_MEMORY;
    parser ps = {.start = buf ? buf : (const void *)empty, .doc = doc, .err = err};
    ps.p = ps.start;
    ps.end = ps.start + (buf ? n : 0);
    skip_ws(&ps);
    uint32_t root = parse_value(&ps, 0);
    if (root != NONE) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            fail(&ps, ps.p, "unexpected content after the JSON value");
            root = NONE;
        }
    }
    if (root == NONE) {
        int was_oom = ps.oom;
        ember__json_free(doc);
        return was_oom ? EMBER_ERR_OUT_OF_MEMORY : EMBER_ERR_PARSE;
    }
    /* The arrays no longer move: turn indices into pointers. */
    for (size_t i = 0; i < doc->n; i++) {
        ember__json *v = &doc->nodes[i];
        v->first = v->first_i == NONE ? NULL : &doc->nodes[v->first_i];
        v->next = v->next_i == NONE ? NULL : &doc->nodes[v->next_i];
        v->key = v->key_i == NONE ? NULL : doc->strings + v->key_i;
        v->str = v->str_i == NONE ? NULL : doc->strings + v->str_i;
    }
    *out = doc;
    return EMBER_OK;
}

const ember__json *ember__json_root(const ember__json_doc *doc) {
    return doc && doc->n ? &doc->nodes[0] : NULL;
}
ember__json_type ember__json_type_of(const ember__json *v) { return (ember__json_type)v->type; }
size_t ember__json_offset(const ember__json *v) { return v->offset; }
size_t ember__json_count(const ember__json *v) { return v->count; }
const ember__json *ember__json_first(const ember__json *v) { return v->first; }
const ember__json *ember__json_next(const ember__json *v) { return v->next; }
const char *ember__json_key(const ember__json *v) { return v->key; }

const char *ember__json_string(const ember__json *v, size_t *len) {
    if (len) *len = v->len;
    return v->str;
}

int ember__json_uint(const ember__json *v, uint64_t *out) {
    if (v->type != EMBER__JSON_NUMBER || !v->has_uint) return 0;
    *out = v->u;
    return 1;
}

const ember__json *ember__json_get(const ember__json *obj, const char *key) {
    if (!obj || obj->type != EMBER__JSON_OBJECT) return NULL;
    for (const ember__json *m = obj->first; m; m = m->next)
        if (strcmp(m->key, key) == 0) return m;
    return NULL;
}

const char *ember__json_type_name(ember__json_type t) {
    static const char *names[] = {"null", "false", "true", "number", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "invalid";
}
