/*
 * safetensors files and checkpoints (ember/checkpoint.h), CRC32C, and the strict JSON
 * parser under them (engine/json.h).
 *
 *  - CRC32C against the published check values (RFC 3720 B.4 and the "123456789"
 *    check), the portable and the hardware path against each other.
 *  - JSON: what RFC 8259 allows is accepted, everything else rejected at the right
 *    byte (trailing commas, leading zeros, bad escapes, lone surrogates, bad UTF-8,
 *    control characters, excessive depth, trailing content).
 *  - Round trip of every dtype, 0-d and empty tensors, strided sources and
 *    destinations, odd names, metadata; the layout rules (header padded to 8, each
 *    tensor aligned to its element size, no gaps).
 *  - Every corruption: each truncation of a valid file, bad header lengths, invalid
 *    JSON, overlapping / out-of-range / inconsistent offsets, unknown dtypes,
 *    duplicate names, bad metadata, a flipped data byte (checksum) -- each a clear
 *    status naming the file, tensor and offset.
 *  - Atomic writes: a write that fails midway leaves the old file intact and no
 *    temporary file behind.
 *  - Interop: a file ember writes loads in Python's `safetensors` (if an interpreter
 *    has it; the script also recomputes the checksum), and is checked byte for byte
 *    against a hand-computed image in any case; a file written by torch's
 *    safetensors (tests/ref/torch_written.safetensors, from gen_optim.py) loads here.
 *  - Checkpoints: parameters + optimizer state saved mid-run and loaded into fresh
 *    objects continue exactly as the uninterrupted run (bit for bit); mismatches
 *    leave every tensor untouched.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "engine/checkpoint_internal.h"
#include "engine/crc32c.h"
#include "engine/json.h"

static char tmpdir[512];

static void path_in_tmp(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* ---- CRC32C ---- */

static void test_crc32c(void) {
    unsigned char buf[32];
    CHECK_EQ_INT(ember_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(ember__crc32c_sw(0, "123456789", 9), 0xE3069283u);
    /* RFC 3720, appendix B.4. */
    memset(buf, 0, 32);
    CHECK_EQ_INT(ember_crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, 32);
    CHECK_EQ_INT(ember_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)i;
    CHECK_EQ_INT(ember_crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)(31 - i);
    CHECK_EQ_INT(ember_crc32c(0, buf, 32), 0x113FDB5Cu);
    CHECK_EQ_INT(ember_crc32c(0x1234, buf, 0), 0x1234u);
    /* Chaining, and both implementations at every length and alignment. */
    CHECK_EQ_INT(ember_crc32c(ember_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    unsigned char big[1100];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof big; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        big[i] = (unsigned char)x;
    }
    int same = 1;
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len + off <= sizeof big; len += 37)
            same &= ember_crc32c(7, big + off, len) == ember__crc32c_sw(7, big + off, len);
    CHECK(same);
    printf("crc32c: %s path\n", ember__crc32c_hw() ? "hardware (SSE4.2)" : "portable");
}

/* ---- JSON ---- */

static void json_ok(const char *text, ember__json_type root) {
    ember__json_doc *doc = NULL;
    ember__json_error err;
    ember_status st = ember__json_parse(text, strlen(text), &doc, &err);
    if (st != EMBER_OK) fprintf(stderr, "  json %s: %s at %zu\n", text, err.reason, err.offset);
    CHECK_OK(st);
    if (doc) CHECK_EQ_INT(ember__json_type_of(ember__json_root(doc)), root);
    ember__json_free(doc);
}

static void json_bad(const char *text, size_t len, size_t at) {
    ember__json_doc *doc = NULL;
    ember__json_error err = {0};
    ember_status st = ember__json_parse(text, len, &doc, &err);
    CHECK_EQ_INT(st, EMBER_ERR_PARSE);
    CHECK(doc == NULL);
    CHECK(err.reason != NULL);
    if (at != (size_t)-1 && err.offset != at)
        fprintf(stderr, "  json '%.*s': error at %zu (%s), expected %zu\n", (int)len, text, err.offset,
                err.reason, at);
    if (at != (size_t)-1) CHECK_EQ_INT(err.offset, at);
}
#define JSON_BAD(lit, at) json_bad(lit, sizeof(lit) - 1, at)

static void test_json(void) {
    json_ok("{}", EMBER__JSON_OBJECT);
    json_ok(" \t\r\n[ ] \n", EMBER__JSON_ARRAY);
    json_ok("\"x\"", EMBER__JSON_STRING);
    json_ok("-0.5e+10", EMBER__JSON_NUMBER);
    json_ok("true", EMBER__JSON_TRUE);
    json_ok("null", EMBER__JSON_NULL);
    json_ok("{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\\ud83d\\ude00\\n\\/\"}", EMBER__JSON_OBJECT);

    /* Values, keys, escapes and surrogate pairs decode exactly. */
    const char *t = "{\"k\\\"ey\":\"\\u00e9\\ud83d\\ude00\\t\", \"n\": 18446744073709551615, "
                    "\"big\": 18446744073709551616, \"neg\": -1, \"f\": 1.0, \"e\": 1e2}";
    ember__json_doc *doc = NULL;
    ember__json_error err;
    CHECK_OK(ember__json_parse(t, strlen(t), &doc, &err));
    if (doc) {
        const ember__json *r = ember__json_root(doc), *m = ember__json_first(r);
        CHECK_EQ_INT(ember__json_count(r), 6);
        CHECK_STR(ember__json_key(m), "k\"ey");
        size_t len = 0;
        CHECK_STR(ember__json_string(m, &len), "\xc3\xa9\xf0\x9f\x98\x80\t");
        CHECK_EQ_INT(len, 7);
        uint64_t u = 0;
        CHECK(ember__json_uint(ember__json_get(r, "n"), &u) && u == UINT64_MAX);
        CHECK(!ember__json_uint(ember__json_get(r, "big"), &u)); /* beyond 2^64 */
        CHECK(!ember__json_uint(ember__json_get(r, "neg"), &u));
        CHECK(!ember__json_uint(ember__json_get(r, "f"), &u)); /* 1.0 is not an integer literal */
        CHECK(!ember__json_uint(ember__json_get(r, "e"), &u));
        CHECK_STR(ember__json_string(ember__json_get(r, "e"), NULL), "1e2");
        CHECK(ember__json_get(r, "missing") == NULL);
        CHECK_EQ_INT(ember__json_offset(ember__json_get(r, "neg")), (long long)(strstr(t, "-1") - t));
    }
    ember__json_free(doc);

    /* Rejections, each at the offending byte. */
    JSON_BAD("", 0);
    JSON_BAD("   ", 3);
    JSON_BAD("{", 0);
    JSON_BAD("{\"a\":1,}", 7);
    JSON_BAD("[1,]", 3);
    JSON_BAD("[1 2]", 3);
    JSON_BAD("{\"a\" 1}", 5);
    JSON_BAD("{a:1}", 1);
    JSON_BAD("[01]", 1);
    JSON_BAD("[-]", 1);
    JSON_BAD("[1.]", 3);
    JSON_BAD("[1e]", 3);
    JSON_BAD("[.5]", 1);
    JSON_BAD("[+1]", 1);
    JSON_BAD("[tru]", 1);
    JSON_BAD("[nul]", 1);
    JSON_BAD("{} x", 3);
    JSON_BAD("{}{}", 2);
    JSON_BAD("\"abc", 0);
    JSON_BAD("\"a\\x\"", 2);
    JSON_BAD("\"\\u12g4\"", 5);
    JSON_BAD("\"\\u123\"", 6);
    JSON_BAD("\"\\ud800\"", 1);         /* high surrogate alone */
    JSON_BAD("\"\\ud800\\u0041\"", 7);  /* followed by a non-low surrogate */
    JSON_BAD("\"\\udc00\"", 1);         /* low surrogate alone */
    JSON_BAD("\"\\u0000\"", 1);         /* NUL is refused */
    JSON_BAD("\"a\tb\"", 2);            /* raw control character */
    JSON_BAD("\"\xc3\"", 1);            /* truncated UTF-8 */
    JSON_BAD("\"\xc0\xaf\"", 1);        /* overlong */
    JSON_BAD("\"\xed\xa0\x80\"", 1);    /* encoded surrogate */
    JSON_BAD("\"\xf4\x90\x80\x80\"", 1); /* above U+10FFFF */
    JSON_BAD("\"\xff\"", 1);
    json_bad("[1]\0", 4, 3);            /* NUL after the value */
    json_bad("[\"a\0b\"]", 6, 3);       /* raw NUL inside a string */
    /* Reads stop at n: "[1]" cut to "[1". */
    json_bad("[1]", 2, 0);
    json_bad("\"\\u00", 5, 3);
    json_bad(NULL, 0, 0);
    /* Depth: 64 levels pass, 65 fail. */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    json_ok(deep, EMBER__JSON_ARRAY);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    json_bad(deep, 130, 64);
}

/* ---- test data ---- */

typedef struct pat_spec {
    const char *name;
    ember_dtype dtype;
    int ndim;
    int64_t shape[3];
} pat_spec;

/* The tensors of tests/ref/torch_written.safetensors (gen_optim.py), and of the
 * ember-written file the Python check reads. */
static const pat_spec pats[] = {
    {"f32", EMBER_DTYPE_F32, 2, {2, 3}},     {"f16", EMBER_DTYPE_F16, 1, {4}},
    {"bf16", EMBER_DTYPE_BF16, 2, {3, 2}},   {"i8", EMBER_DTYPE_I8, 1, {5}},
    {"u8", EMBER_DTYPE_U8, 3, {2, 2, 2}},    {"i32", EMBER_DTYPE_I32, 1, {3}},
    {"i64", EMBER_DTYPE_I64, 2, {2, 2}},     {"scalar_f32", EMBER_DTYPE_F32, 0, {0}},
    {"empty_i64", EMBER_DTYPE_I64, 2, {0, 3}},
};
#define NPATS ((int)(sizeof pats / sizeof pats[0]))

/* Value i of a pattern tensor (gen_optim.py's pattern()). */
static double pattern(ember_dtype dt, int64_t i) {
    switch (dt) {
    case EMBER_DTYPE_U8: return (double)(i * 37 % 256);
    case EMBER_DTYPE_I8: return (double)(i * 37 % 256 - 128);
    case EMBER_DTYPE_I32: return (double)(i * 1000003 - 7);
    case EMBER_DTYPE_I64: return (double)(i * 1000000007LL - 5000000000LL);
    default: return (double)(i % 11 - 5) * 0.5;
    }
}

static ember_tensor *new_tensor(ember_dtype dt, int ndim, const int64_t *shape) {
    ember_tensor_params p = {.dtype = dt, .ndim = ndim};
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    ember_tensor *t = NULL;
    CHECK_OK(ember_tensor_create(&p, &t));
    return t;
}

static ember_tensor *pattern_tensor(const pat_spec *s) {
    ember_tensor *t = new_tensor(s->dtype, s->ndim, s->shape);
    for (int64_t i = 0; t && i < ember_tensor_numel(t); i++) check_put_elem(ember_tensor_data(t), s->dtype, i, pattern(s->dtype, i));
    return t;
}

/* Checks a file's tensor against the pattern, reading it with read_new. */
static void check_pattern_in(ember_safetensors *f, const pat_spec *s) {
    ember_tensor *t = NULL;
    CHECK_OK(ember_safetensors_read_new(f, s->name, EMBER_TIER_HOST, NULL, EMBER_MEM_OTHER, &t));
    if (!t) return;
    CHECK_EQ_INT(ember_tensor_dtype(t), s->dtype);
    CHECK_EQ_INT(ember_tensor_ndim(t), s->ndim);
    for (int d = 0; d < s->ndim; d++) CHECK_EQ_INT(ember_tensor_dim(t, d), s->shape[d]);
    int64_t bad = -1;
    for (int64_t i = 0; i < ember_tensor_numel(t) && bad < 0; i++)
        if (check_elem(ember_tensor_data(t), s->dtype, i) != pattern(s->dtype, i)) bad = i;
    if (bad >= 0) fprintf(stderr, "  tensor %s differs at %lld\n", s->name, (long long)bad);
    CHECK(bad < 0);
    ember_tensor_destroy(t);
}

/* ---- round trip ---- */

static void test_round_trip(void) {
    char path[600];
    path_in_tmp(path, sizeof path, "all.safetensors");
    ember_named_tensor ts[NPATS + 3];
    ember_tensor *owned[NPATS + 3] = {0};
    for (int i = 0; i < NPATS; i++) {
        owned[i] = pattern_tensor(&pats[i]);
        ts[i] = (ember_named_tensor){pats[i].name, owned[i]};
    }
    /* A strided source (a transposed view) and names JSON must escape. */
    int64_t s23[2] = {2, 3};
    ember_tensor *base = new_tensor(EMBER_DTYPE_F32, 2, s23), *tr = NULL;
    for (int i = 0; i < 6; i++) ((float *)ember_tensor_data(base))[i] = (float)i;
    CHECK_OK(ember_tensor_transpose(base, 0, 1, &tr)); /* (3, 2): 0 3 1 4 2 5 */
    owned[NPATS] = tr;
    ts[NPATS] = (ember_named_tensor){"transposed", tr};
    int64_t s1[1] = {1};
    owned[NPATS + 1] = new_tensor(EMBER_DTYPE_I32, 1, s1);
    ((int32_t *)ember_tensor_data(owned[NPATS + 1]))[0] = 42;
    ts[NPATS + 1] = (ember_named_tensor){"we\"ird\\name\t\xc3\xa9/\x01", owned[NPATS + 1]};
    owned[NPATS + 2] = new_tensor(EMBER_DTYPE_U8, 1, s1);
    ((uint8_t *)ember_tensor_data(owned[NPATS + 2]))[0] = 7;
    ts[NPATS + 2] = (ember_named_tensor){"odd_u8", owned[NPATS + 2]};
    ember_metadata_entry meta[] = {{"user", "value \"quoted\" \\ \n"}, {"\xe2\x82\xac", ""}};
    CHECK_OK(ember_safetensors_write(path, ts, NPATS + 3, meta, 2));

    ember_safetensors *f = NULL;
    CHECK_OK(ember_safetensors_open(path, &f));
    if (f) {
        CHECK_EQ_INT(ember_safetensors_count(f), NPATS + 3);
        CHECK_EQ_INT(ember_safetensors_verified(f), 1);
        for (int i = 0; i < NPATS; i++) check_pattern_in(f, &pats[i]);
        ember_tensor *t = NULL;
        CHECK_OK(ember_safetensors_read_new(f, "transposed", EMBER_TIER_HOST, NULL, EMBER_MEM_PARAMETER, &t));
        if (t) {
            static const float want[6] = {0, 3, 1, 4, 2, 5};
            CHECK(memcmp(ember_tensor_data(t), want, sizeof want) == 0);
            CHECK_EQ_INT(ember_tensor_dim(t, 0), 3);
            /* Read into a strided destination: back through the transpose. */
            ember_tensor *dst = new_tensor(EMBER_DTYPE_F32, 2, s23), *dtr = NULL;
            CHECK_OK(ember_tensor_transpose(dst, 0, 1, &dtr));
            CHECK_OK(ember_safetensors_read(f, "transposed", dtr));
            CHECK(memcmp(ember_tensor_data(dst), ember_tensor_data(base), 6 * sizeof(float)) == 0);
            ember_tensor_destroy(dtr);
            ember_tensor_destroy(dst);
        }
        ember_tensor_destroy(t);
        ember_safetensors_info info;
        CHECK_OK(ember_safetensors_find(f, ts[NPATS + 1].name, &info));
        CHECK_STR(info.name, ts[NPATS + 1].name);
        CHECK_STR(info.dtype_name, "I32");
        CHECK_EQ_INT(info.nbytes, 4);
        const char *v = NULL;
        CHECK_OK(ember_safetensors_metadata_get(f, "user", &v));
        CHECK_STR(v, "value \"quoted\" \\ \n");
        CHECK_OK(ember_safetensors_metadata_get(f, "\xe2\x82\xac", &v));
        CHECK_STR(v, "");
        CHECK_OK(ember_safetensors_metadata_get(f, "ember.format", &v));
        CHECK_STR(v, "1");
        CHECK_STATUS(ember_safetensors_metadata_get(f, "nope", &v), EMBER_ERR_NOT_FOUND);
        CHECK_EQ_INT(ember_safetensors_metadata_count(f), 4);
        /* Layout: every tensor aligned to its element size, contiguous, ending at EOF. */
        uint64_t end = 0, data_start = UINT64_MAX, total = 0;
        for (int i = 0; i < ember_safetensors_count(f); i++) {
            CHECK_OK(ember_safetensors_info_at(f, i, &info));
            size_t es = ember_dtype_size(info.dtype);
            CHECK_EQ_INT(info.offset % es, 0);
            if (info.offset < data_start) data_start = info.offset;
            if (info.offset + info.nbytes > end) end = info.offset + info.nbytes;
            total += info.nbytes;
        }
        CHECK_EQ_INT(data_start % 8, 0);
        CHECK_EQ_INT(end - data_start, total);
        struct stat sb;
        CHECK(stat(path, &sb) == 0 && (uint64_t)sb.st_size == end);
        CHECK_STATUS(ember_safetensors_info_at(f, NPATS + 3, &info), EMBER_ERR_INDEX);
    }
    ember_safetensors_close(f);

    /* An empty file (no tensors) is valid too. */
    path_in_tmp(path, sizeof path, "none.safetensors");
    CHECK_OK(ember_safetensors_write(path, NULL, 0, NULL, 0));
    CHECK_OK(ember_safetensors_open(path, &f));
    CHECK_EQ_INT(ember_safetensors_count(f), 0);
    CHECK_EQ_INT(ember_safetensors_verified(f), 1);
    ember_safetensors_close(f);
    ember_safetensors_close(NULL);

    /* Bad arguments to the writer. */
    ember_named_tensor dup[2] = {{"a", owned[0]}, {"a", owned[1]}};
    CHECK_STATUS(ember_safetensors_write(path, dup, 2, NULL, 0), EMBER_ERR_INVALID_ARGUMENT);
    ember_named_tensor reserved[1] = {{"__metadata__", owned[0]}};
    CHECK_STATUS(ember_safetensors_write(path, reserved, 1, NULL, 0), EMBER_ERR_INVALID_ARGUMENT);
    ember_named_tensor empty_name[1] = {{"", owned[0]}};
    CHECK_STATUS(ember_safetensors_write(path, empty_name, 1, NULL, 0), EMBER_ERR_INVALID_ARGUMENT);
    ember_named_tensor bad_utf8[1] = {{"\xff", owned[0]}};
    CHECK_STATUS(ember_safetensors_write(path, bad_utf8, 1, NULL, 0), EMBER_ERR_INVALID_ARGUMENT);
    ember_named_tensor null_t[1] = {{"x", NULL}};
    CHECK_STATUS(ember_safetensors_write(path, null_t, 1, NULL, 0), EMBER_ERR_INVALID_ARGUMENT);
    ember_metadata_entry own[1] = {{"ember.checksum", "x"}};
    CHECK_STATUS(ember_safetensors_write(path, ts, 1, own, 1), EMBER_ERR_INVALID_ARGUMENT);
    ember_metadata_entry dupm[2] = {{"k", "1"}, {"k", "2"}};
    CHECK_STATUS(ember_safetensors_write(path, ts, 1, dupm, 2), EMBER_ERR_INVALID_ARGUMENT);
    char nodir[700];
    path_in_tmp(nodir, sizeof nodir, "no/such/dir/x.safetensors");
    CHECK_STATUS(ember_safetensors_write(nodir, ts, 1, NULL, 0), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), "no/such/dir") != NULL);

    for (int i = 0; i < NPATS + 3; i++) ember_tensor_destroy(owned[i]);
    ember_tensor_destroy(base);
}

/* ---- reading into existing tensors: mismatches ---- */

static void test_mismatch(void) {
    char path[600];
    path_in_tmp(path, sizeof path, "mm.safetensors");
    int64_t s34[2] = {3, 4}, s43[2] = {4, 3};
    ember_tensor *w = new_tensor(EMBER_DTYPE_F32, 2, s34);
    CHECK_OK(ember_tensor_fill(w, 1.5));
    ember_named_tensor ts[1] = {{"layer.weight", w}};
    CHECK_OK(ember_safetensors_write(path, ts, 1, NULL, 0));
    ember_safetensors *f = NULL;
    CHECK_OK(ember_safetensors_open(path, &f));
    if (!f) return;
    ember_tensor *wrong_shape = new_tensor(EMBER_DTYPE_F32, 2, s43);
    CHECK_STATUS(ember_safetensors_read(f, "layer.weight", wrong_shape), EMBER_ERR_SHAPE);
    const char *msg = ember_last_error();
    CHECK(strstr(msg, "layer.weight") && strstr(msg, "(4, 3)") && strstr(msg, "(3, 4)") && strstr(msg, path));
    ember_tensor *wrong_dtype = new_tensor(EMBER_DTYPE_F16, 2, s34);
    CHECK_STATUS(ember_safetensors_read(f, "layer.weight", wrong_dtype), EMBER_ERR_DTYPE);
    msg = ember_last_error();
    CHECK(strstr(msg, "layer.weight") && strstr(msg, "F16") && strstr(msg, "F32"));
    ember_tensor *wrong_rank = new_tensor(EMBER_DTYPE_F32, 1, s34);
    CHECK_STATUS(ember_safetensors_read(f, "layer.weight", wrong_rank), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_safetensors_read(f, "layer.bias", w), EMBER_ERR_NOT_FOUND);
    CHECK(strstr(ember_last_error(), "layer.bias") != NULL);
    ember_safetensors_info info;
    CHECK_STATUS(ember_safetensors_find(f, "nope", &info), EMBER_ERR_NOT_FOUND);
    ember_tensor *ok = new_tensor(EMBER_DTYPE_F32, 2, s34);
    CHECK_OK(ember_safetensors_read(f, "layer.weight", ok));
    CHECK_NEAR(((float *)ember_tensor_data(ok))[11], 1.5, 0);
    ember_safetensors_close(f);
    ember_tensor_destroy(ok);
    ember_tensor_destroy(wrong_rank);
    ember_tensor_destroy(wrong_dtype);
    ember_tensor_destroy(wrong_shape);
    ember_tensor_destroy(w);
}

/* ---- corruption ---- */

/* A file image: 8-byte length, header text, data bytes. */
static unsigned char *image(const char *header, const void *data, size_t ndata, size_t *n) {
    size_t h = strlen(header);
    *n = 8 + h + ndata;
    unsigned char *b = malloc(*n ? *n : 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (ndata) memcpy(b + 8 + h, data, ndata);
    return b;
}

/* Opens an image in memory; expects status `want` and each of the words in the message. */
static void expect_open(const char *what, const unsigned char *img, size_t n, ember_status want,
                        const char *w1, const char *w2) {
    ember_safetensors *f = NULL;
    ember_status st = ember_safetensors_open_memory(img, n, what, &f);
    if (st != want || (st != EMBER_OK && ((w1 && !strstr(ember_last_error(), w1)) ||
                                          (w2 && !strstr(ember_last_error(), w2)) ||
                                          !strstr(ember_last_error(), what))))
        fprintf(stderr, "  %s: got %s: %s (want %s, \"%s\", \"%s\")\n", what, ember_status_name(st),
                ember_last_error(), ember_status_name(want), w1 ? w1 : "", w2 ? w2 : "");
    CHECK_EQ_INT(st, want);
    if (st != EMBER_OK && want != EMBER_OK) {
        CHECK(strstr(ember_last_error(), what) != NULL); /* names the file */
        if (w1) CHECK(strstr(ember_last_error(), w1) != NULL);
        if (w2) CHECK(strstr(ember_last_error(), w2) != NULL);
    }
    CHECK((st == EMBER_OK) == (f != NULL));
    ember_safetensors_close(f);
}

static void expect_header(const char *what, const char *header, size_t ndata, ember_status want,
                          const char *w1, const char *w2) {
    unsigned char data[64] = {0};
    size_t n;
    unsigned char *img = image(header, data, ndata, &n);
    expect_open(what, img, n, want, w1, w2);
    free(img);
}

static void test_corruption(void) {
    /* A valid ember file to damage. */
    char path[600];
    path_in_tmp(path, sizeof path, "victim.safetensors");
    int64_t s4[1] = {4}, s3[1] = {3};
    ember_tensor *a = new_tensor(EMBER_DTYPE_F32, 1, s4), *b = new_tensor(EMBER_DTYPE_I64, 1, s3);
    for (int i = 0; i < 4; i++) ((float *)ember_tensor_data(a))[i] = (float)i + 0.25f;
    for (int i = 0; i < 3; i++) ((int64_t *)ember_tensor_data(b))[i] = -i;
    ember_named_tensor ts[2] = {{"a", a}, {"b", b}};
    CHECK_OK(ember_safetensors_write(path, ts, 2, NULL, 0));
    size_t n = 0;
    unsigned char *img = read_file(path, &n);
    CHECK(img && n > 48);
    if (!img) return;
    expect_open("intact", img, n, EMBER_OK, NULL, NULL);

    /* Every truncation fails, with a format error. */
    int all_fail = 1;
    for (size_t cut = 0; cut < n; cut++) {
        ember_safetensors *f = NULL;
        ember_status st = ember_safetensors_open_memory(img, cut, "cut", &f);
        if (st != EMBER_ERR_FORMAT) {
            fprintf(stderr, "  truncated to %zu of %zu bytes: %s\n", cut, n, ember_status_name(st));
            all_fail = 0;
        }
        ember_safetensors_close(f);
    }
    CHECK(all_fail);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | img[i];
    expect_open("cut-in-data", img, n - 1, EMBER_ERR_FORMAT, "truncated", "'a'"); /* f32 'a' is last: i64 first */
    expect_open("cut-in-header", img, 8 + hlen - 1, EMBER_ERR_FORMAT, "header length", NULL);
    expect_open("tiny", img, 5, EMBER_ERR_FORMAT, "too short", NULL);
    /* The same on disk: the message names the path. */
    char cutpath[700];
    path_in_tmp(cutpath, sizeof cutpath, "cut.safetensors");
    write_file(cutpath, img, n - 3);
    ember_safetensors *f = NULL;
    CHECK_STATUS(ember_safetensors_open(cutpath, &f), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), cutpath) != NULL);

    /* Header length fields. */
    unsigned char *m = malloc(n);
    memcpy(m, img, n);
    m[7] = 0x80; /* 2^63 + ... */
    expect_open("len-huge", m, n, EMBER_ERR_FORMAT, "header length", "file offset 0");
    memcpy(m, img, n);
    memset(m, 0, 8);
    expect_open("len-zero", m, n, EMBER_ERR_FORMAT, "header length", NULL);
    memcpy(m, img, n);
    m[0] = (unsigned char)(m[0] - 8); /* header shorter: JSON ends early */
    expect_open("len-short", m, n, EMBER_ERR_FORMAT, "invalid JSON", NULL);

    /* A flipped data byte: the checksum catches it, naming the data's offset. */
    memcpy(m, img, n);
    m[n - 5] ^= 0x10;
    expect_open("flipped", m, n, EMBER_ERR_CHECKSUM, "CRC32C", "corrupt");
    char off[32];
    snprintf(off, sizeof off, "file offset %llu", (unsigned long long)(8 + hlen));
    expect_open("flipped", m, n, EMBER_ERR_CHECKSUM, off, NULL);
    /* ... and a flipped checksum digit too. */
    memcpy(m, img, n);
    char *cs = memmem(m, n, "crc32c:", 7);
    CHECK(cs != NULL);
    if (cs) cs[7] = cs[7] == '0' ? '1' : '0';
    expect_open("flipped-sum", m, n, EMBER_ERR_CHECKSUM, NULL, NULL);
    /* Invalid JSON: a broken byte in the header, reported at its file offset. */
    memcpy(m, img, n);
    char *colon = memmem(m + 8, (size_t)hlen, "\"a\":", 4);
    CHECK(colon != NULL);
    if (colon) {
        colon[3] = ';';
        snprintf(off, sizeof off, "file offset %llu", (unsigned long long)((unsigned char *)colon + 3 - m));
        expect_open("bad-json", m, n, EMBER_ERR_FORMAT, "invalid JSON", off);
    }
    free(m);

    /* Handcrafted headers (no ember metadata: checked structurally, not by checksum). */
    expect_header("ok", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EMBER_OK, NULL, NULL);
    expect_header("ok-holes", "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", 8, EMBER_OK, NULL, NULL);
    expect_header("not-object", "[1,2]", 0, EMBER_ERR_FORMAT, "not an object", NULL);
    expect_header("overlap",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, EMBER_ERR_FORMAT, "overlap", "'y'");
    expect_header("range",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                  EMBER_ERR_FORMAT, "'x'", "past the end");
    expect_header("size",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                  EMBER_ERR_FORMAT, "'x'", "needs");
    expect_header("backwards",
                  "{\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                  EMBER_ERR_FORMAT, "'x'", "before");
    expect_header("huge-shape",
                  "{\"x\":{\"dtype\":\"I64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                  EMBER_ERR_FORMAT, "'x'", "too many");
    expect_header("offsets-huge",
                  "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,18446744073709551616]}}",
                  8, EMBER_ERR_FORMAT, "'x'", "data_offsets");
    expect_header("unknown-dtype",
                  "{\"x\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                  EMBER_ERR_FORMAT, "unknown dtype", "F99");
    expect_header("dtype-type", "{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                  EMBER_ERR_FORMAT, "dtype", NULL);
    expect_header("dup-name",
                  "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                  8, EMBER_ERR_FORMAT, "'x' appears twice", "file offsets");
    expect_header("dup-field", "{\"x\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                  8, EMBER_ERR_FORMAT, "twice", NULL);
    expect_header("unknown-field",
                  "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 8,
                  EMBER_ERR_FORMAT, "unknown field", "extra");
    expect_header("missing-field", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1]}}", 8, EMBER_ERR_FORMAT,
                  "missing field", "data_offsets");
    expect_header("entry-type", "{\"x\":[1]}", 8, EMBER_ERR_FORMAT, "'x'", "expected an object");
    expect_header("neg-dim", "{\"x\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 8,
                  EMBER_ERR_FORMAT, "shape", NULL);
    expect_header("float-dim", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 8,
                  EMBER_ERR_FORMAT, "shape", NULL);
    expect_header("seven-dims",
                  "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8,
                  EMBER_ERR_FORMAT, "7 dims", NULL);
    expect_header("offsets-3", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 8,
                  EMBER_ERR_FORMAT, "data_offsets", NULL);
    expect_header("meta-type", "{\"__metadata__\":[]}", 0, EMBER_ERR_FORMAT, "__metadata__", NULL);
    expect_header("meta-value", "{\"__metadata__\":{\"k\":1}}", 0, EMBER_ERR_FORMAT, "\"k\"", "strings");
    expect_header("meta-dup", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, EMBER_ERR_FORMAT, "twice", NULL);
    expect_header("meta-twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, EMBER_ERR_FORMAT, "twice", NULL);
    expect_header("version", "{\"__metadata__\":{\"ember.format\":\"2\",\"ember.checksum\":\"crc32c:00000000\"}}",
                  0, EMBER_ERR_FORMAT, "ember.format", "\"2\"");
    expect_header("no-sum", "{\"__metadata__\":{\"ember.format\":\"1\"}}", 0, EMBER_ERR_FORMAT,
                  "ember.checksum", NULL);
    expect_header("bad-sum", "{\"__metadata__\":{\"ember.format\":\"1\",\"ember.checksum\":\"md5:1234\"}}", 0,
                  EMBER_ERR_FORMAT, "ember.checksum", NULL);
    expect_header("empty-sum", "{\"__metadata__\":{\"ember.format\":\"1\",\"ember.checksum\":\"crc32c:00000000\"}}",
                  0, EMBER_OK, NULL, NULL); /* CRC of nothing is 0 */
    expect_header("deep", "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                          "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
                  0, EMBER_ERR_FORMAT, "too deep", NULL);
    /* A dtype safetensors has and ember lacks: listed, reading it is a dtype error. */
    unsigned char data8[8] = {0};
    size_t n64;
    unsigned char *i64img = image("{\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data8, 8, &n64);
    CHECK_OK(ember_safetensors_open_memory(i64img, n64, "f64", &f));
    if (f) {
        ember_safetensors_info info;
        CHECK_OK(ember_safetensors_info_at(f, 0, &info));
        CHECK_EQ_INT(info.dtype, EMBER_DTYPE_COUNT);
        CHECK_STR(info.dtype_name, "F64");
        ember_tensor *t = NULL;
        CHECK_STATUS(ember_safetensors_read_new(f, "d", EMBER_TIER_HOST, NULL, EMBER_MEM_OTHER, &t), EMBER_ERR_DTYPE);
        CHECK(strstr(ember_last_error(), "F64") != NULL);
        int64_t one[1] = {1};
        ember_tensor *dst = new_tensor(EMBER_DTYPE_I64, 1, one);
        CHECK_STATUS(ember_safetensors_read(f, "d", dst), EMBER_ERR_DTYPE);
        ember_tensor_destroy(dst);
        ember_safetensors_close(f);
    }
    free(i64img);
    /* A foreign file (no ember metadata) with a flipped byte still loads: nothing to verify. */
    size_t nf;
    unsigned char *fimg = image("{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", "\x01\x02", 2, &nf);
    fimg[nf - 1] ^= 0xFF;
    CHECK_OK(ember_safetensors_open_memory(fimg, nf, "foreign", &f));
    CHECK_EQ_INT(ember_safetensors_verified(f), 0);
    ember_safetensors_close(f);
    free(fimg);

    /* File-system errors. */
    char missing[700];
    path_in_tmp(missing, sizeof missing, "missing.safetensors");
    CHECK_STATUS(ember_safetensors_open(missing, &f), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), "missing.safetensors") != NULL);
    CHECK_STATUS(ember_safetensors_open(tmpdir, &f), EMBER_ERR_IO);
    CHECK_STATUS(ember_safetensors_open(NULL, &f), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_safetensors_open_memory(NULL, 0, NULL, &f), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "<memory>") != NULL);

    free(img);
    ember_tensor_destroy(a);
    ember_tensor_destroy(b);
}

/* ---- atomic writes ---- */

static int temp_files_left(void) {
    DIR *d = opendir(tmpdir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) found++;
    if (d) closedir(d);
    return found;
}

static void test_atomic(void) {
    char path[600];
    path_in_tmp(path, sizeof path, "atomic.safetensors");
    int64_t s[1] = {1000};
    ember_tensor *t = new_tensor(EMBER_DTYPE_F32, 1, s);
    CHECK_OK(ember_tensor_fill(t, 1.0));
    ember_named_tensor ts[1] = {{"w", t}};
    CHECK_OK(ember_safetensors_write(path, ts, 1, NULL, 0));
    size_t n1 = 0;
    unsigned char *v1 = read_file(path, &n1);
    /* A second version fails after 1000 of its 4000 data bytes, as a full disk would. */
    CHECK_OK(ember_tensor_fill(t, 2.0));
    ember__safetensors_fail_after = 1000;
    CHECK_STATUS(ember_safetensors_write(path, ts, 1, NULL, 0), EMBER_ERR_IO);
    ember__safetensors_fail_after = -1;
    CHECK(strstr(ember_last_error(), path) != NULL);
    size_t n2 = 0;
    unsigned char *now = read_file(path, &n2);
    CHECK(v1 && now && n1 == n2 && memcmp(v1, now, n1) == 0); /* the old file, untouched */
    CHECK_EQ_INT(temp_files_left(), 0);
    ember_safetensors *f = NULL;
    CHECK_OK(ember_safetensors_open(path, &f));
    ember_tensor *r = new_tensor(EMBER_DTYPE_F32, 1, s);
    CHECK_OK(ember_safetensors_read(f, "w", r));
    CHECK_NEAR(((float *)ember_tensor_data(r))[999], 1.0, 0);
    ember_safetensors_close(f);
    /* The retry succeeds and replaces it. */
    CHECK_OK(ember_safetensors_write(path, ts, 1, NULL, 0));
    CHECK_OK(ember_safetensors_open(path, &f));
    CHECK_OK(ember_safetensors_read(f, "w", r));
    CHECK_NEAR(((float *)ember_tensor_data(r))[0], 2.0, 0);
    ember_safetensors_close(f);
    CHECK_EQ_INT(temp_files_left(), 0);
    free(v1);
    free(now);
    ember_tensor_destroy(r);
    ember_tensor_destroy(t);
}

/* ---- byte-level format check against a hand-computed image ---- */

static void test_bytes(void) {
    char path[600];
    path_in_tmp(path, sizeof path, "bytes.safetensors");
    int64_t s1[1] = {1}, s2[1] = {2};
    ember_tensor *b = new_tensor(EMBER_DTYPE_U8, 1, s2), *a = new_tensor(EMBER_DTYPE_F32, 1, s1);
    ((uint8_t *)ember_tensor_data(b))[0] = 1;
    ((uint8_t *)ember_tensor_data(b))[1] = 2;
    ((float *)ember_tensor_data(a))[0] = 1.0f;
    /* Given u8 first: ember still puts the f32 first (larger elements first). */
    ember_named_tensor ts[2] = {{"b", b}, {"a", a}};
    ember_metadata_entry meta[1] = {{"k", "v"}};
    CHECK_OK(ember_safetensors_write(path, ts, 2, meta, 1));
    /* CRC32C of 00 00 80 3f 01 02, computed independently (bitwise, in Python). */
    const char *hdr = "{\"__metadata__\":{\"ember.checksum\":\"crc32c:2a548107\",\"ember.format\":\"1\",\"k\":\"v\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}";
    size_t h = strlen(hdr), padded = (h + 7) / 8 * 8;
    unsigned char want[512];
    for (int i = 0; i < 8; i++) want[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(want + 8, hdr, h);
    memset(want + 8 + h, ' ', padded - h);
    static const unsigned char data[6] = {0x00, 0x00, 0x80, 0x3f, 0x01, 0x02};
    memcpy(want + 8 + padded, data, 6);
    size_t wn = 8 + padded + 6, n = 0;
    unsigned char *got = read_file(path, &n);
    CHECK_EQ_INT(n, wn);
    CHECK(got && n == wn && memcmp(got, want, wn) == 0);
    if (got && (n != wn || memcmp(got, want, wn) != 0))
        fprintf(stderr, "  wrote: %.*s\n  want:  %.*s\n", (int)(n > 8 ? n - 8 : 0), got + 8, (int)(wn - 8), want + 8);
    free(got);
    ember_tensor_destroy(a);
    ember_tensor_destroy(b);
}

/* ---- interop with Python's safetensors ---- */

static const char py_check[] =
    "import struct, sys\n"
    "try:\n"
    "    from safetensors import safe_open\n"
    "except ImportError:\n"
    "    sys.exit(3)\n"
    "try:\n"
    "    import torch\n"
    "    fw = 'pt'\n"
    "except ImportError:\n"
    "    fw = 'numpy'\n"
    "shapes = {'f32': (2, 3), 'f16': (4,), 'bf16': (3, 2), 'i8': (5,), 'u8': (2, 2, 2),\n"
    "          'i32': (3,), 'i64': (2, 2), 'scalar_f32': (), 'empty_i64': (0, 3)}\n"
    "def pattern(k, n):\n"
    "    if k == 'u8': return [i * 37 % 256 for i in range(n)]\n"
    "    if k == 'i8': return [i * 37 % 256 - 128 for i in range(n)]\n"
    "    if k == 'i32': return [i * 1000003 - 7 for i in range(n)]\n"
    "    if k.endswith('i64'): return [i * 1000000007 - 5000000000 for i in range(n)]\n"
    "    return [(i % 11 - 5) * 0.5 for i in range(n)]\n"
    "def crc32c(b):\n"
    "    c = 0xffffffff\n"
    "    for x in b:\n"
    "        c ^= x\n"
    "        for _ in range(8):\n"
    "            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1\n"
    "    return c ^ 0xffffffff\n"
    "path = sys.argv[1]\n"
    "with safe_open(path, framework=fw) as f:\n"
    "    meta = f.metadata()\n"
    "    assert meta['ember.format'] == '1', meta\n"
    "    assert meta['note'] == 'written by ember', meta\n"
    "    assert set(f.keys()) == set(shapes), sorted(f.keys())\n"
    "    for k, shape in shapes.items():\n"
    "        if fw == 'numpy' and k == 'bf16':\n"
    "            continue\n"
    "        t = f.get_tensor(k)\n"
    "        assert tuple(t.shape) == shape, (k, t.shape)\n"
    "        want_dt = {'f32': 'float32', 'f16': 'float16', 'bf16': 'bfloat16', 'i8': 'int8',\n"
    "                   'u8': 'uint8', 'i32': 'int32', 'i64': 'int64'}[k.split('_')[-1]]\n"
    "        assert str(t.dtype).endswith(want_dt), (k, t.dtype)\n"
    "        n = 1\n"
    "        for d in shape:\n"
    "            n *= d\n"
    "        vals = (t.float() if fw == 'pt' and t.is_floating_point() else t).reshape(-1).tolist()\n"
    "        assert vals == pattern(k, n), (k, vals)\n"
    "data = open(path, 'rb').read()\n"
    "hlen = struct.unpack('<Q', data[:8])[0]\n"
    "assert hlen % 8 == 0, hlen\n"
    "assert meta['ember.checksum'] == 'crc32c:%08x' % crc32c(data[8 + hlen:]), meta\n"
    "print('safetensors read the file (framework %s)' % fw)\n";

static void test_python_reads_ember(void) {
    char path[600], script[600];
    path_in_tmp(path, sizeof path, "for_python.safetensors");
    path_in_tmp(script, sizeof script, "check.py");
    ember_named_tensor ts[NPATS];
    ember_tensor *owned[NPATS];
    for (int i = 0; i < NPATS; i++) {
        owned[i] = pattern_tensor(&pats[i]);
        ts[i] = (ember_named_tensor){pats[i].name, owned[i]};
    }
    ember_metadata_entry meta[1] = {{"note", "written by ember"}};
    CHECK_OK(ember_safetensors_write(path, ts, NPATS, meta, 1));
    for (int i = 0; i < NPATS; i++) ember_tensor_destroy(owned[i]);
    write_file(script, py_check, sizeof py_check - 1);

    const char *dir = getenv("EMBER_TEST_DIR");
    char venv[600];
    snprintf(venv, sizeof venv, "%s/../bench/peers/.venv/bin/python", dir ? dir : "tests");
    const char *pythons[2] = {venv, "/usr/bin/python3"};
    int checked = 0;
    for (int i = 0; i < 2 && !checked; i++) {
        if (access(pythons[i], X_OK) != 0) continue;
        char cmd[2048], out[4096] = "";
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' 2>&1", pythons[i], script, path);
        FILE *p = popen(cmd, "r");
        if (!p) continue;
        size_t len = fread(out, 1, sizeof out - 1, p);
        out[len] = 0;
        int rc = pclose(p);
        int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        if (code == 3) continue; /* no safetensors in this interpreter */
        checked = 1;
        if (code != 0) fprintf(stderr, "  %s:\n%s\n", pythons[i], out);
        else printf("python interop: %s: %s", pythons[i], out);
        CHECK_EQ_INT(code, 0);
    }
    if (!checked)
        printf("NOTE: no Python with the safetensors package (tried %s and %s): the file format is "
               "checked byte for byte instead (test_bytes)\n",
               pythons[0], pythons[1]);
}

/* ---- a file written by PyTorch's safetensors ---- */

static void test_torch_written(void) {
    const char *dir = getenv("EMBER_TEST_DIR");
    char path[600];
    snprintf(path, sizeof path, "%s/ref/torch_written.safetensors", dir ? dir : "tests");
    ember_safetensors *f = NULL;
    CHECK_OK(ember_safetensors_open(path, &f));
    if (!f) {
        fprintf(stderr, "  regenerate with: PYTHONPATH=<dir with safetensors> /usr/bin/python3 tests/ref/gen_optim.py\n");
        return;
    }
    CHECK_EQ_INT(ember_safetensors_verified(f), 0); /* not ember's: nothing to verify */
    const char *v = NULL;
    CHECK_OK(ember_safetensors_metadata_get(f, "format", &v));
    CHECK_STR(v, "pt");
    CHECK_EQ_INT(ember_safetensors_count(f), NPATS);
    for (int i = 0; i < NPATS; i++) check_pattern_in(f, &pats[i]);
    ember_safetensors_close(f);
}

/* ---- checkpoints with optimizer state ---- */

typedef struct model {
    ember_tensor *w, *b, *gw, *gb;
    ember_optimizer *opt;
} model;

static void model_init(model *m, ember_optim_kind kind) {
    int64_t sw[2] = {4, 5}, sb[1] = {5};
    m->w = new_tensor(EMBER_DTYPE_F32, 2, sw);
    m->b = new_tensor(EMBER_DTYPE_F32, 1, sb);
    m->gw = new_tensor(EMBER_DTYPE_F32, 2, sw);
    m->gb = new_tensor(EMBER_DTYPE_F32, 1, sb);
    for (int i = 0; i < 20; i++) ((float *)ember_tensor_data(m->w))[i] = (float)sin(i);
    for (int i = 0; i < 5; i++) ((float *)ember_tensor_data(m->b))[i] = (float)cos(i);
    ember_optimizer_config cfg = ember_optimizer_defaults(kind);
    cfg.momentum = kind == EMBER_OPTIM_SGD ? 0.9 : 0;
    cfg.schedule = (ember_lr_schedule){.kind = EMBER_LR_LINEAR, .base_lr = 0.05, .warmup_steps = 2, .total_steps = 10};
    ember_optimizer_param ps[2] = {{m->w, m->gw, "w"}, {m->b, m->gb, "b"}};
    m->opt = NULL;
    CHECK_OK(ember_optimizer_create(&cfg, ps, 2, &m->opt));
}

static void model_steps(model *m, int from, int to) {
    for (int k = from; k < to; k++) {
        for (int i = 0; i < 20; i++) ((float *)ember_tensor_data(m->gw))[i] = (float)sin(i * 0.7 + k);
        for (int i = 0; i < 5; i++) ((float *)ember_tensor_data(m->gb))[i] = (float)cos(i * 1.3 - k);
        double norm;
        CHECK_OK(ember_optimizer_clip_grad_norm(m->opt, 2.0, 2.0, &norm));
        CHECK_OK(ember_optimizer_step(m->opt));
    }
}

static void model_free(model *m) {
    ember_optimizer_destroy(m->opt);
    ember_tensor_destroy(m->w);
    ember_tensor_destroy(m->b);
    ember_tensor_destroy(m->gw);
    ember_tensor_destroy(m->gb);
}

static void test_checkpoint_resume(void) {
    static const ember_optim_kind kinds[] = {EMBER_OPTIM_SGD, EMBER_OPTIM_ADAGRAD, EMBER_OPTIM_ADAM, EMBER_OPTIM_ADAMW};
    char path[600];
    path_in_tmp(path, sizeof path, "ckpt.safetensors");
    for (int k = 0; k < 4; k++) {
        model full, first, resumed;
        model_init(&full, kinds[k]);
        model_steps(&full, 0, 7);
        model_init(&first, kinds[k]);
        model_steps(&first, 0, 4);
        ember_named_tensor ts[2] = {{"w", first.w}, {"b", first.b}};
        CHECK_OK(ember_checkpoint_save(path, ts, 2, first.opt));
        model_free(&first);
        model_init(&resumed, kinds[k]); /* fresh weights and zero state */
        ember_named_tensor rs[2] = {{"w", resumed.w}, {"b", resumed.b}};
        CHECK_OK(ember_checkpoint_load(path, rs, 2, resumed.opt));
        int64_t step = -1;
        CHECK_OK(ember_optimizer_get_step(resumed.opt, &step));
        CHECK_EQ_INT(step, 4);
        model_steps(&resumed, 4, 7);
        CHECK(memcmp(ember_tensor_data(full.w), ember_tensor_data(resumed.w), 20 * sizeof(float)) == 0);
        CHECK(memcmp(ember_tensor_data(full.b), ember_tensor_data(resumed.b), 5 * sizeof(float)) == 0);
        int ns = 0;
        CHECK_OK(ember_optimizer_state_count(full.opt, &ns));
        for (int i = 0; i < ns; i++) {
            ember_tensor *x, *y;
            CHECK_OK(ember_optimizer_state_get(full.opt, i, NULL, &x));
            CHECK_OK(ember_optimizer_state_get(resumed.opt, i, NULL, &y));
            CHECK(memcmp(ember_tensor_data(x), ember_tensor_data(y), ember_tensor_nbytes(x)) == 0);
        }
        /* The file names the state as "optim.<param>.<buffer>" and records kind and step. */
        ember_safetensors *f = NULL;
        CHECK_OK(ember_safetensors_open(path, &f));
        ember_safetensors_info info;
        const char *v;
        if (kinds[k] == EMBER_OPTIM_ADAM) CHECK_OK(ember_safetensors_find(f, "optim.w.exp_avg_sq", &info));
        CHECK_OK(ember_safetensors_metadata_get(f, "ember.optim.step", &v));
        CHECK_STR(v, "4");
        CHECK_OK(ember_safetensors_metadata_get(f, "ember.optim.kind", &v));
        CHECK_STR(v, ember_optim_kind_name(kinds[k]));
        ember_safetensors_close(f);
        model_free(&full);
        model_free(&resumed);
    }

    /* Mismatches leave everything untouched. */
    model src, other;
    model_init(&src, EMBER_OPTIM_ADAM);
    model_steps(&src, 0, 2);
    ember_named_tensor ts[2] = {{"w", src.w}, {"b", src.b}};
    CHECK_OK(ember_checkpoint_save(path, ts, 2, src.opt));
    model_init(&other, EMBER_OPTIM_SGD);
    float before[20];
    memcpy(before, ember_tensor_data(other.w), sizeof before);
    ember_named_tensor os[2] = {{"w", other.w}, {"b", other.b}};
    CHECK_STATUS(ember_checkpoint_load(path, os, 2, other.opt), EMBER_ERR_FORMAT); /* adam vs sgd */
    CHECK(strstr(ember_last_error(), "adam") && strstr(ember_last_error(), "sgd"));
    CHECK(memcmp(before, ember_tensor_data(other.w), sizeof before) == 0);
    int64_t s6[1] = {6};
    ember_tensor *wrong = new_tensor(EMBER_DTYPE_F32, 1, s6);
    ember_named_tensor bad[2] = {{"w", other.w}, {"b", wrong}};
    CHECK_STATUS(ember_checkpoint_load(path, bad, 2, NULL), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "'b'") != NULL);
    CHECK(memcmp(before, ember_tensor_data(other.w), sizeof before) == 0); /* w was not loaded either */
    ember_named_tensor missing[1] = {{"v", other.w}};
    CHECK_STATUS(ember_checkpoint_load(path, missing, 1, NULL), EMBER_ERR_NOT_FOUND);
    CHECK_OK(ember_checkpoint_load(path, os, 2, NULL)); /* parameters only */
    CHECK(memcmp(ember_tensor_data(src.w), ember_tensor_data(other.w), sizeof before) == 0);
    /* Without optimizer state in the file, an optimizer load fails. */
    CHECK_OK(ember_checkpoint_save(path, ts, 2, NULL));
    CHECK_STATUS(ember_checkpoint_load(path, os, 2, other.opt), EMBER_ERR_FORMAT);
    /* Names that would collide with optimizer state. */
    ember_named_tensor clash[1] = {{"optim.w.exp_avg", src.w}};
    CHECK_STATUS(ember_checkpoint_save(path, clash, 1, src.opt), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor_destroy(wrong);
    model_free(&src);
    model_free(&other);
}

static void cleanup_tmp(void) {
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ember-ckpt-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_crc32c();
    test_json();
    test_round_trip();
    test_mismatch();
    test_corruption();
    test_atomic();
    test_bytes();
    test_python_reads_ember();
    test_torch_written();
    test_checkpoint_resume();
    cleanup_tmp();
    return check_summary();
}
