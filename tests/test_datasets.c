/*
 * datasets: the Criteo TSV reader on the real Kaggle sample (tests/data), every kind
 * of malformed line, gzip and stdin input, npy files written by numpy and by ember,
 * TorchRec triplets, TSV -> npy conversion.
 */
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef EMBER_HAVE_ZLIB
#include <zlib.h>
#endif

#include "check.h"
#include "ember/datasets.h"

#define ND EMBER_CRITEO_NUM_DENSE
#define NS EMBER_CRITEO_NUM_SPARSE

static char tmpdir[256];

static const char *data_path(const char *name) {
    static char buf[4][1024];
    static int k;
    const char *dir = getenv("EMBER_TEST_DATA");
    if (!dir || !*dir) {
        fprintf(stderr, "FAIL: EMBER_TEST_DATA is not set; run this test through ctest, or set it to "
                        "the project's tests/data directory\n");
        exit(1);
    }
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    if (access(b, R_OK) != 0) {
        fprintf(stderr, "FAIL: test data file %s is missing (EMBER_TEST_DATA=%s); see tests/data/README.md\n", b, dir);
        exit(1);
    }
    return b;
}

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* ---- all rows of an input, collected ---- */

typedef struct {
    int64_t n;
    float *dense;
    uint32_t *sparse;
    int32_t *labels;
    ember_criteo_stats st;
    ember_status status;
    char msg[1024];
} table;

static void table_free(table *t) {
    free(t->dense);
    free(t->sparse);
    free(t->labels);
    memset(t, 0, sizeof *t);
}

static table read_all(const ember_criteo_params *p) {
    table t = {0};
    ember_criteo_reader *r = NULL;
    t.status = ember_criteo_open(p, &r);
    ember_criteo_rows rows;
    int64_t expect_first = 0;
    while (t.status == EMBER_OK && (t.status = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
        CHECK_EQ_INT(rows.first, expect_first);
        expect_first += rows.n;
        t.dense = realloc(t.dense, (size_t)(t.n + rows.n) * ND * sizeof(float));
        t.sparse = realloc(t.sparse, (size_t)(t.n + rows.n) * NS * sizeof(uint32_t));
        t.labels = realloc(t.labels, (size_t)(t.n + rows.n) * sizeof(int32_t));
        memcpy(t.dense + t.n * ND, rows.dense, (size_t)rows.n * ND * sizeof(float));
        memcpy(t.sparse + t.n * NS, rows.sparse, (size_t)rows.n * NS * sizeof(uint32_t));
        memcpy(t.labels + t.n, rows.labels, (size_t)rows.n * sizeof(int32_t));
        t.n += rows.n;
    }
    if (t.status != EMBER_OK) snprintf(t.msg, sizeof t.msg, "%s", ember_last_error());
    if (r) ember_criteo_get_stats(r, &t.st);
    ember_criteo_close(r);
    return t;
}

static int tables_equal(const table *a, const table *b) {
    return a->n == b->n && memcmp(a->dense, b->dense, (size_t)a->n * ND * sizeof(float)) == 0 &&
           memcmp(a->sparse, b->sparse, (size_t)a->n * NS * sizeof(uint32_t)) == 0 &&
           memcmp(a->labels, b->labels, (size_t)a->n * sizeof(int32_t)) == 0;
}

/* ---- an independent, slow reference parser (strtoll / strtoul per field) ---- */

typedef struct {
    int n;
    int label[1000];
    int64_t ints[1000][ND];
    int missing[1000][ND];
    uint32_t ids[1000][NS];
} reference;

static void reference_parse(const char *text, reference *ref) {
    ref->n = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        char line[4096];
        size_t len = (size_t)(eol - p);
        memcpy(line, p, len);
        line[len] = '\0';
        char *fields[64];
        int nf = 0;
        char *s = line;
        fields[nf++] = s;
        for (; *s; s++)
            if (*s == '\t') {
                *s = '\0';
                fields[nf++] = s + 1;
            }
        if (nf != 40) {
            fprintf(stderr, "reference: line %d has %d fields\n", ref->n + 1, nf);
            exit(1);
        }
        int r = ref->n++;
        ref->label[r] = atoi(fields[0]);
        for (int i = 0; i < ND; i++) {
            ref->missing[r][i] = fields[1 + i][0] == '\0';
            ref->ints[r][i] = ref->missing[r][i] ? 0 : strtoll(fields[1 + i], NULL, 10);
        }
        for (int j = 0; j < NS; j++)
            ref->ids[r][j] = fields[14 + j][0] ? (uint32_t)strtoul(fields[14 + j], NULL, 16) : 0;
        p = *eol ? eol + 1 : eol;
    }
}

static reference ref;
static char *sample;
static size_t sample_len;

/* ---- reader on the real sample ---- */

static void test_sample(void) {
    table t = read_all(&(ember_criteo_params){.path = data_path("criteo_kaggle_head900.tsv")});
    CHECK_OK(t.status);
    CHECK_EQ_INT(t.n, 900);
    CHECK_EQ_INT(t.st.lines, 900);
    CHECK_EQ_INT(t.st.rows, 900);
    CHECK_EQ_INT(t.st.bad_total, 0);
    CHECK_EQ_INT(t.st.has_label, 1);
    CHECK_EQ_INT(t.st.bytes, 216932);
    CHECK_EQ_INT(t.st.file_bytes, 216932);
    CHECK_EQ_INT(t.st.gzip, 0);
    int pos = 0;
    for (int64_t i = 0; i < t.n; i++) pos += t.labels[i];
    CHECK_EQ_INT(pos, 176);
    /* Row 1, by hand from the file: 0 1 1 5 0 1382 4 15 2 181 1 2 _ 2 68fd1e64 80e26c9b ... */
    CHECK_EQ_INT(t.labels[0], 0);
    CHECK_NEAR(t.dense[0], log1p(1.0), 1e-7);    /* I1 = 1 */
    CHECK_NEAR(t.dense[2], log1p(5.0), 1e-7);    /* I3 = 5 */
    CHECK_NEAR(t.dense[3], 0.0, 0);              /* I4 = 0 */
    CHECK_NEAR(t.dense[4], log1p(1382.0), 1e-6); /* I5 = 1382 */
    CHECK_NEAR(t.dense[11], 0.0, 0);             /* I12 missing */
    CHECK_NEAR(t.dense[12], log1p(2.0), 1e-7);   /* I13 = 2 */
    CHECK_EQ_INT(t.sparse[0], 0x68fd1e64u);      /* C1 */
    CHECK_EQ_INT(t.sparse[1], 0x80e26c9bu);      /* C2 */
    CHECK_EQ_INT(t.sparse[21], 0);               /* C22 missing */
    CHECK_EQ_INT(t.sparse[25], 0x9727dd16u);     /* C26 */
    /* Row 3 has I1=2, C19 and C20 missing; the last row ends without a newline. */
    CHECK_NEAR(t.dense[2 * ND + 0], log1p(2.0), 1e-7);
    CHECK_EQ_INT(t.sparse[2 * NS + 18], 0);
    CHECK_EQ_INT(t.sparse[2 * NS + 19], 0);
    CHECK_EQ_INT(t.sparse[899 * NS + 25], 0xc84c4aecu);

    /* Every value of every row against the reference parser. */
    int bad_rows = 0;
    for (int r = 0; r < ref.n && r < t.n; r++) {
        int ok = t.labels[r] == ref.label[r];
        for (int i = 0; i < ND; i++) {
            float want = ref.ints[r][i] > 0 ? (float)log1p((double)ref.ints[r][i]) : 0.0f;
            ok &= t.dense[r * ND + i] == want;
        }
        for (int j = 0; j < NS; j++) ok &= t.sparse[r * NS + j] == ref.ids[r][j];
        if (!ok && bad_rows++ < 3) fprintf(stderr, "FAIL: row %d differs from the reference parser\n", r + 1);
    }
    CHECK_EQ_INT(bad_rows, 0);
    CHECK_EQ_INT(ref.n, 900);

    /* Raw dense values (negatives kept) and ids modulo a cap. */
    table raw = read_all(&(ember_criteo_params){.path = data_path("criteo_kaggle_head900.tsv"),
                                                .dense = EMBER_DENSE_RAW, .hash_cap = 1000});
    CHECK_OK(raw.status);
    int bad_raw = 0, negatives = 0;
    for (int r = 0; r < ref.n && r < raw.n; r++) {
        for (int i = 0; i < ND; i++) {
            bad_raw += raw.dense[r * ND + i] != (float)ref.ints[r][i];
            negatives += ref.ints[r][i] < 0;
        }
        for (int j = 0; j < NS; j++) bad_raw += raw.sparse[r * NS + j] != ref.ids[r][j] % 1000;
    }
    CHECK_EQ_INT(bad_raw, 0);
    CHECK(negatives > 0); /* the sample has negative I2 values: the raw transform keeps them */

    /* Chunk size, line cap and thread count change nothing. */
    static const struct {
        size_t block;
        int threads;
    } splits[] = {{300, 1}, {4096, 2}, {5000, 3}, {65536, 7}, {0, 1}};
    for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
        table u = read_all(&(ember_criteo_params){.path = data_path("criteo_kaggle_head900.tsv"),
                                                  .block_bytes = splits[k].block, .max_line_bytes = 1024,
                                                  .threads = splits[k].threads});
        CHECK_OK(u.status);
        if (!tables_equal(&t, &u))
            fprintf(stderr, "FAIL: block %zu threads %d differs\n", splits[k].block, splits[k].threads);
        CHECK(tables_equal(&t, &u));
        CHECK_EQ_INT(u.st.lines, 900);
        table_free(&u);
    }

    /* The same bytes from memory. */
    table m = read_all(&(ember_criteo_params){.data = sample, .size = sample_len, .path = "sample"});
    CHECK_OK(m.status);
    CHECK(tables_equal(&t, &m));
    table_free(&m);

    /* From stdin. */
    fflush(stdin);
    int saved = dup(STDIN_FILENO);
    int fd = open(data_path("criteo_kaggle_head900.tsv"), O_RDONLY);
    dup2(fd, STDIN_FILENO);
    close(fd);
    table s = read_all(&(ember_criteo_params){.path = "-", .block_bytes = 8192});
    dup2(saved, STDIN_FILENO);
    close(saved);
    CHECK_OK(s.status);
    CHECK(tables_equal(&t, &s));
    CHECK_EQ_INT(s.st.file_bytes, 216932); /* stdin redirected from a file is a regular file */
    table_free(&s);

    /* A test file (no label column) is detected from its first line. */
    char *nolabel = malloc(sample_len + 1);
    size_t nl = 0;
    for (const char *p = sample; *p;) {
        const char *tab = strchr(p, '\t');
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        memcpy(nolabel + nl, tab + 1, (size_t)(eol - tab - 1));
        nl += (size_t)(eol - tab - 1);
        if (*eol) nolabel[nl++] = '\n';
        p = *eol ? eol + 1 : eol;
    }
    table tl = read_all(&(ember_criteo_params){.data = nolabel, .size = nl, .threads = 2, .block_bytes = 10000});
    CHECK_OK(tl.status);
    CHECK_EQ_INT(tl.st.has_label, 0);
    CHECK_EQ_INT(tl.n, 900);
    if (tl.n == 900) {
        CHECK(memcmp(tl.dense, t.dense, 900 * ND * sizeof(float)) == 0);
        CHECK(memcmp(tl.sparse, t.sparse, 900 * NS * sizeof(uint32_t)) == 0);
        int64_t sum = 0;
        for (int i = 0; i < 900; i++) sum += tl.labels[i];
        CHECK_EQ_INT(sum, 0);
    }
    /* Declared label on a label-less file: every line has 39 fields, all bad. */
    table wrong = read_all(&(ember_criteo_params){.data = nolabel, .size = nl, .label = EMBER_CRITEO_LABEL_PRESENT});
    CHECK_STATUS(wrong.status, EMBER_ERR_PARSE);
    CHECK(strstr(wrong.msg, "line 1: 39 tab-separated fields, expected 40") != NULL);
    table_free(&wrong);
    table_free(&tl);
    free(nolabel);

    /* CRLF line ends read the same. */
    char *crlf = malloc(sample_len * 2);
    size_t cn = 0;
    for (size_t i = 0; i < sample_len; i++) {
        if (sample[i] == '\n') crlf[cn++] = '\r';
        crlf[cn++] = sample[i];
    }
    table c = read_all(&(ember_criteo_params){.data = crlf, .size = cn});
    CHECK_OK(c.status);
    CHECK(tables_equal(&t, &c));
    table_free(&c);
    free(crlf);

    /* Empty input: no rows, no error. */
    table e = read_all(&(ember_criteo_params){.data = "", .size = 0});
    CHECK_OK(e.status);
    CHECK_EQ_INT(e.n, 0);
    table_free(&e);

    table_free(&raw);
    table_free(&t);
}

/* ---- gzip ---- */

static void test_gzip(void) {
    const char *gz = tmp_path("sample.tsv.gz");
#ifdef EMBER_HAVE_ZLIB
    gzFile f = gzopen(gz, "wb6");
    CHECK(f != NULL);
    CHECK_EQ_INT(gzwrite(f, sample, (unsigned)sample_len), (long long)sample_len);
    gzclose(f);
    table plain = read_all(&(ember_criteo_params){.path = data_path("criteo_kaggle_head900.tsv")});
    table z = read_all(&(ember_criteo_params){.path = gz, .block_bytes = 7000, .threads = 2});
    CHECK_OK(z.status);
    CHECK_EQ_INT(z.st.gzip, 1);
    CHECK(tables_equal(&plain, &z));
    CHECK_EQ_INT(z.st.bytes, 216932);
    struct stat stt;
    stat(gz, &stt);
    CHECK_EQ_INT(z.st.raw_bytes, stt.st_size);
    table_free(&z);

    /* Two concatenated members (as pigz or cat a.gz b.gz make): 1800 rows. */
    size_t zl;
    char *zb = read_file(gz, &zl);
    /* the sample ends without '\n': member one is "sample\n", member two the sample */
    gzFile f2 = gzopen(tmp_path("one.gz"), "wb");
    gzwrite(f2, sample, (unsigned)sample_len);
    gzwrite(f2, "\n", 1);
    gzclose(f2);
    size_t ol;
    char *one = read_file(tmp_path("one.gz"), &ol);
    char *two = malloc(ol + zl);
    memcpy(two, one, ol);
    memcpy(two + ol, zb, zl);
    write_file(tmp_path("two.gz"), two, ol + zl);
    table tw = read_all(&(ember_criteo_params){.path = tmp_path("two.gz")});
    CHECK_OK(tw.status);
    CHECK_EQ_INT(tw.n, 1800);
    if (tw.n == 1800) CHECK(memcmp(tw.sparse + 900 * NS, plain.sparse, 900 * NS * sizeof(uint32_t)) == 0);
    table_free(&tw);

    /* Truncated and corrupt streams are errors, not short reads. */
    write_file(tmp_path("trunc.gz"), zb, zl / 2);
    table tr = read_all(&(ember_criteo_params){.path = tmp_path("trunc.gz")});
    CHECK_STATUS(tr.status, EMBER_ERR_FORMAT);
    CHECK(strstr(tr.msg, "trunc.gz") != NULL && strstr(tr.msg, "truncated") != NULL);
    table_free(&tr);
    zb[zl / 2] ^= 0x55;
    zb[zl / 2 + 1] ^= 0x55;
    write_file(tmp_path("corrupt.gz"), zb, zl);
    table co = read_all(&(ember_criteo_params){.path = tmp_path("corrupt.gz")});
    CHECK(co.status == EMBER_ERR_FORMAT || co.status == EMBER_ERR_PARSE);
    table_free(&co);
    free(zb);
    free(one);
    free(two);
    table_free(&plain);
#else
    /* Built without zlib: gzip input is refused with a clear message. */
    write_file(gz, "\x1f\x8b\x08\x00\x00\x00\x00\x00", 8);
    table z = read_all(&(ember_criteo_params){.path = gz});
    CHECK_STATUS(z.status, EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(z.msg, "zlib") != NULL);
    table_free(&z);
#endif
}

/* ---- malformed lines ---- */

/* The first line of the sample with field k (0-based) replaced by text. */
static char *line_with(int k, const char *text) {
    static char buf[8192];
    const char *eol = strchr(sample, '\n');
    char line[4096];
    memcpy(line, sample, (size_t)(eol - sample));
    line[eol - sample] = '\0';
    char *fields[48];
    int nf = 0;
    char *s = line;
    fields[nf++] = s;
    for (; *s; s++)
        if (*s == '\t') {
            *s = '\0';
            fields[nf++] = s + 1;
        }
    buf[0] = '\0';
    for (int i = 0; i < nf; i++) {
        if (i) strcat(buf, "\t");
        strcat(buf, i == k ? text : fields[i]);
    }
    return buf;
}

typedef struct {
    const char *what;
    char line[8192];
    ember_criteo_fault fault;
    const char *msg; /* expected in the message (line 3) */
} bad_case;

static void test_malformed(void) {
    const char *good = line_with(-1, NULL);
    char good_line[4096];
    snprintf(good_line, sizeof good_line, "%s", good);
    static bad_case cases[16];
    int nc = 0;
#define ADD(w, l, f, m)                                               \
    do {                                                             \
        cases[nc].what = (w);                                        \
        snprintf(cases[nc].line, sizeof cases[nc].line, "%s", (l));  \
        cases[nc].fault = (f);                                       \
        cases[nc].msg = (m);                                         \
        nc++;                                                        \
    } while (0)
    char few[4096];
    snprintf(few, sizeof few, "%s", good_line);
    *strrchr(few, '\t') = '\0';
    ADD("too few fields", few, EMBER_CRITEO_FAULT_FIELD_COUNT, "line 3: 39 tab-separated fields, expected 40");
    char many[4200];
    snprintf(many, sizeof many, "%s\tabc", good_line);
    ADD("too many fields", many, EMBER_CRITEO_FAULT_FIELD_COUNT, "line 3: 41 tab-separated fields");
    ADD("empty line", "", EMBER_CRITEO_FAULT_FIELD_COUNT, "line 3: 1 tab-separated fields");
    ADD("label 2", line_with(0, "2"), EMBER_CRITEO_FAULT_LABEL, "line 3 field 1 (label): \"2\" is not a label");
    ADD("label empty", line_with(0, ""), EMBER_CRITEO_FAULT_LABEL, "field 1 (label)");
    ADD("int with a letter", line_with(3, "12x4"), EMBER_CRITEO_FAULT_INT, "line 3 field 4 (I3): \"12x4\" is not an integer");
    ADD("int 19 digits", line_with(1, "1234567890123456789"), EMBER_CRITEO_FAULT_INT, "field 2 (I1)");
    ADD("lone minus", line_with(13, "-"), EMBER_CRITEO_FAULT_INT, "field 14 (I13): \"-\"");
    ADD("int float", line_with(5, "1.5"), EMBER_CRITEO_FAULT_INT, "field 6 (I5): \"1.5\"");
    ADD("hex with a letter", line_with(15, "12x4abcd"), EMBER_CRITEO_FAULT_HEX, "line 3 field 16 (C2): \"12x4abcd\" is not a 32-bit hex id");
    ADD("hex 9 digits", line_with(14, "68fd1e640"), EMBER_CRITEO_FAULT_HEX, "field 15 (C1)");
    ADD("hex last field", line_with(39, "9727dd1z"), EMBER_CRITEO_FAULT_HEX, "field 40 (C26)");
    ADD("space in hex", line_with(20, " 7e0ccccf"), EMBER_CRITEO_FAULT_HEX, "field 21 (C7)");
    char longl[3000];
    memset(longl, '1', sizeof longl - 1);
    longl[sizeof longl - 1] = '\0';
    ADD("overlong", longl, EMBER_CRITEO_FAULT_LINE_TOO_LONG, "line 3: longer than 2048 bytes");

    for (int c = 0; c < nc; c++) {
        /* good, good, bad, good */
        size_t cap = 4 * 8192;
        char *text = malloc(cap);
        int n = snprintf(text, cap, "%s\n%s\n%s\n%s\n", good_line, good_line, cases[c].line, good_line);
        for (int mode = 0; mode < 2; mode++) {
            for (int threads = 1; threads <= 2; threads++) {
                table t = read_all(&(ember_criteo_params){
                    .data = text, .size = (size_t)n, .path = "bad.tsv", .max_line_bytes = 2048,
                    .on_error = mode ? EMBER_ON_ERROR_SKIP : EMBER_ON_ERROR_STOP, .threads = threads,
                    .block_bytes = threads == 2 ? 300 : 0, .max_logged = -1});
                if (mode == 0) {
                    CHECK_STATUS(t.status, EMBER_ERR_PARSE);
                    if (!strstr(t.msg, cases[c].msg) || !strstr(t.msg, "bad.tsv"))
                        fprintf(stderr, "FAIL: %s: message \"%s\" lacks \"%s\"\n", cases[c].what, t.msg, cases[c].msg);
                    CHECK(strstr(t.msg, cases[c].msg) != NULL);
                } else {
                    CHECK_OK(t.status);
                    CHECK_EQ_INT(t.n, 3);
                    CHECK_EQ_INT(t.st.lines, 4);
                    CHECK_EQ_INT(t.st.bad_total, 1);
                    CHECK_EQ_INT(t.st.bad[cases[c].fault], 1);
                    CHECK(strstr(t.st.first_bad, cases[c].msg) != NULL);
                    if (t.n == 3) CHECK_EQ_INT(t.sparse[2 * NS], 0x68fd1e64u);
                }
                table_free(&t);
            }
        }
        /* The one-line API says the same. */
        float dense[ND];
        uint32_t sparse[NS];
        int32_t label;
        ember_criteo_fault fault = EMBER_CRITEO_FAULT_COUNT;
        CHECK_STATUS(ember_criteo_parse_line(&(ember_criteo_params){.max_line_bytes = 2048}, 1, cases[c].line,
                                             strlen(cases[c].line), dense, sparse, &label, &fault),
                     EMBER_ERR_PARSE);
        CHECK_EQ_INT(fault, cases[c].fault);
        free(text);
    }
    float dense[ND];
    uint32_t sparse[NS];
    int32_t label = -1;
    CHECK_OK(ember_criteo_parse_line(&(ember_criteo_params){.hash_cap = 7}, 1, good_line, strlen(good_line), dense,
                                     sparse, &label, NULL));
    CHECK_EQ_INT(label, 0);
    CHECK_EQ_INT(sparse[0], 0x68fd1e64u % 7);
    /* Short hex ids and upper case are valid; negative integers too. */
    CHECK_OK(ember_criteo_parse_line(&(ember_criteo_params){.dense = EMBER_DENSE_RAW}, 1, line_with(15, "AbC"),
                                     strlen(line_with(15, "AbC")), dense, sparse, &label, NULL));
    CHECK_EQ_INT(sparse[1], 0xabc);
    CHECK_OK(ember_criteo_parse_line(&(ember_criteo_params){.dense = EMBER_DENSE_RAW}, 1, line_with(2, "-17"),
                                     strlen(line_with(2, "-17")), dense, sparse, &label, NULL));
    CHECK_NEAR(dense[1], -17.0, 0);

    /* Many bad lines of every kind, spread over chunks and threads: counts add up. */
    size_t cap = 400 * 8192;
    char *mix = malloc(cap);
    size_t len = 0;
    int64_t expect[EMBER_CRITEO_FAULT_COUNT] = {0}, good_n = 0;
    for (int i = 0; i < 400; i++) {
        const char *l = good_line;
        if (i % 3 == 1) {
            l = cases[i % nc].line;
            expect[cases[i % nc].fault]++;
        } else {
            good_n++;
        }
        len += (size_t)snprintf(mix + len, cap - len, "%s\n", l);
    }
    table base = {0};
    for (int threads = 1; threads <= 3; threads++) {
        table t = read_all(&(ember_criteo_params){.data = mix, .size = len, .max_line_bytes = 2048,
                                                  .on_error = EMBER_ON_ERROR_SKIP, .threads = threads,
                                                  .block_bytes = 20000, .max_logged = 2});
        CHECK_OK(t.status);
        CHECK_EQ_INT(t.n, good_n);
        CHECK_EQ_INT(t.st.lines, 400);
        for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) CHECK_EQ_INT(t.st.bad[k], expect[k]);
        CHECK(strstr(t.st.first_bad, "line 2") != NULL);
        if (threads == 1) base = t;
        else {
            CHECK(tables_equal(&base, &t));
            table_free(&t);
        }
    }
    table_free(&base);

    /* A line longer than the whole read buffer, with no '\n' in sight. */
    size_t hl = 50000;
    char *huge = malloc(hl + 3 * 4096);
    size_t at = (size_t)snprintf(huge, 4096, "%s\n", good_line);
    memset(huge + at, '7', hl);
    at += hl;
    at += (size_t)snprintf(huge + at, 4096, "\n%s\n%s", good_line, good_line);
    table h = read_all(&(ember_criteo_params){.data = huge, .size = at, .block_bytes = 4096, .max_line_bytes = 1024,
                                              .on_error = EMBER_ON_ERROR_SKIP, .max_logged = -1});
    CHECK_OK(h.status);
    CHECK_EQ_INT(h.n, 3);
    CHECK_EQ_INT(h.st.lines, 4);
    CHECK_EQ_INT(h.st.bad[EMBER_CRITEO_FAULT_LINE_TOO_LONG], 1);
    CHECK_EQ_INT(h.st.bytes, at);
    CHECK(strstr(h.st.first_bad, "line 2: longer than 1024 bytes") != NULL);
    table_free(&h);
    table hs = read_all(&(ember_criteo_params){.data = huge, .size = at, .block_bytes = 4096, .max_line_bytes = 1024});
    CHECK_STATUS(hs.status, EMBER_ERR_PARSE);
    CHECK(strstr(hs.msg, "line 2: longer than 1024 bytes") != NULL);
    table_free(&hs);
    /* ... and the same overlong line as the last one, without '\n'. */
    table he = read_all(&(ember_criteo_params){.data = huge, .size = (size_t)snprintf(huge, 4096, "%s\n", good_line) + hl,
                                               .block_bytes = 4096, .max_line_bytes = 1024,
                                               .on_error = EMBER_ON_ERROR_SKIP, .max_logged = -1});
    CHECK_OK(he.status);
    CHECK_EQ_INT(he.n, 1);
    CHECK_EQ_INT(he.st.bad[EMBER_CRITEO_FAULT_LINE_TOO_LONG], 1);
    table_free(&he);
    free(huge);
    free(mix);

    /* A first line that is neither 39 nor 40 fields: the label cannot be detected. */
    table d = read_all(&(ember_criteo_params){.data = "1\t2\t3\n", .size = 6, .path = "odd.tsv"});
    CHECK_STATUS(d.status, EMBER_ERR_PARSE);
    CHECK(strstr(d.msg, "odd.tsv line 1: 3 tab-separated fields") != NULL);
    CHECK(strstr(d.msg, "cannot be detected") != NULL);
    table_free(&d);
}

static void test_reader_args(void) {
    ember_criteo_reader *r = NULL;
    CHECK_STATUS(ember_criteo_open(NULL, &r), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_criteo_open(&(ember_criteo_params){0}, &r), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_criteo_open(&(ember_criteo_params){.path = "x", .on_error = 9}, &r), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_criteo_open(&(ember_criteo_params){.path = "x", .label = 7}, &r), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_criteo_open(&(ember_criteo_params){.path = "/nonexistent/day_0"}, &r), EMBER_ERR_IO);
    CHECK(strstr(ember_last_error(), "/nonexistent/day_0") != NULL);
    CHECK_STATUS(ember_criteo_open(&(ember_criteo_params){.path = "/"}, &r), EMBER_ERR_IO);
    CHECK(r == NULL);
    ember_criteo_close(NULL);
    CHECK_STR(ember_criteo_fault_name(EMBER_CRITEO_FAULT_HEX), "hex");
    /* After an error the reader keeps returning it. */
    CHECK_OK(ember_criteo_open(&(ember_criteo_params){.data = "x\n", .size = 2}, &r));
    ember_criteo_rows rows;
    CHECK_STATUS(ember_criteo_read(r, &rows), EMBER_ERR_PARSE);
    CHECK_STATUS(ember_criteo_read(r, &rows), EMBER_ERR_PARSE);
    ember_criteo_close(r);
}

/* ---- vocabulary ---- */

static void test_vocab(void) {
    const char *paths[] = {data_path("criteo_kaggle_head900.tsv")};
    ember_criteo_vocab *v = NULL;
    CHECK_OK(ember_criteo_vocab_build(&(ember_criteo_vocab_params){.paths = paths, .num_paths = 1, .min_count = 3}, &v));
    /* Reference: per field, ids seen >= 3 times, numbered by raw id. */
    for (int j = 0; j < NS; j++) {
        uint32_t ids[900];
        int n = 0;
        for (int r = 0; r < ref.n; r++)
            if (ref.ids[r][j]) ids[n++] = ref.ids[r][j];
        /* sort */
        for (int a = 1; a < n; a++)
            for (int b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
                uint32_t x = ids[b];
                ids[b] = ids[b - 1];
                ids[b - 1] = x;
            }
        int k = 0, bad = 0;
        for (int a = 0; a < n;) {
            int b = a;
            while (b < n && ids[b] == ids[a]) b++;
            uint32_t want = b - a >= 3 ? (uint32_t)++k : 0;
            bad += ember_criteo_vocab_map(v, j, ids[a]) != want;
            a = b;
        }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(ember_criteo_vocab_size(v, j), k + 1);
    }
    CHECK_EQ_INT(ember_criteo_vocab_map(v, 0, 0), 0);
    CHECK_EQ_INT(ember_criteo_vocab_map(v, 0, 0x12345678), 0);
    /* The reader maps through it. */
    table t = read_all(&(ember_criteo_params){.path = paths[0], .vocab = v, .threads = 2, .block_bytes = 9000});
    CHECK_OK(t.status);
    int bad = 0;
    for (int r = 0; r < t.n; r++)
        for (int j = 0; j < NS; j++) bad += t.sparse[r * NS + j] != ember_criteo_vocab_map(v, j, ref.ids[r][j]);
    CHECK_EQ_INT(bad, 0);
    /* C9 (field 8) has 3 values in Kaggle: all frequent here. */
    CHECK(ember_criteo_vocab_size(v, 8) >= 2);
    table_free(&t);
    ember_criteo_vocab_destroy(v);
    CHECK_STATUS(ember_criteo_vocab_build(&(ember_criteo_vocab_params){.num_paths = 0}, &v), EMBER_ERR_INVALID_ARGUMENT);
}

/* ---- npy ---- */

static void test_npy(void) {
    ember_npy *f = NULL;
    CHECK_OK(ember_npy_open(data_path("npy/f32_2x3.npy"), &f));
    if (f) {
        const ember_npy_info *i = ember_npy_get_info(f);
        CHECK_EQ_INT(i->dtype, EMBER_DTYPE_F32);
        CHECK_EQ_INT(i->ndim, 2);
        CHECK_EQ_INT(i->shape[0], 2);
        CHECK_EQ_INT(i->shape[1], 3);
        CHECK_EQ_INT(i->version, 1);
        CHECK_EQ_INT(i->data_bytes, 24);
        const float *d = ember_npy_data(f);
        CHECK_NEAR(d[5], 1.25, 0);
        ember_npy_close(f);
    }
    CHECK_OK(ember_npy_open(data_path("npy/i32_5.npy"), &f));
    if (f) {
        CHECK_EQ_INT(ember_npy_get_info(f)->ndim, 1);
        CHECK_EQ_INT(((const int32_t *)ember_npy_data(f))[4], 2147483647);
        CHECK_EQ_INT(((const int32_t *)ember_npy_data(f))[3], -4);
        ember_npy_close(f);
    }
    CHECK_OK(ember_npy_open(data_path("npy/i64_2x2x2.npy"), &f));
    if (f) {
        CHECK_EQ_INT(ember_npy_get_info(f)->ndim, 3);
        CHECK_EQ_INT(((const int64_t *)ember_npy_data(f))[7], 4);
        ember_npy_close(f);
    }
    CHECK_OK(ember_npy_open(data_path("npy/u1_scalar.npy"), &f));
    if (f) {
        CHECK_EQ_INT(ember_npy_get_info(f)->ndim, 0);
        CHECK_EQ_INT(((const uint8_t *)ember_npy_data(f))[0], 7);
        ember_npy_close(f);
    }
    CHECK_STATUS(ember_npy_open(data_path("npy/i32_be.npy"), &f), EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "big-endian") != NULL);
    CHECK_STATUS(ember_npy_open(data_path("npy/f64_3.npy"), &f), EMBER_ERR_DTYPE);
    CHECK(strstr(ember_last_error(), "f64_3.npy") != NULL);
    CHECK_STATUS(ember_npy_open(data_path("npy/f32_fortran.npy"), &f), EMBER_ERR_UNSUPPORTED);
    CHECK(strstr(ember_last_error(), "Fortran") != NULL);
    CHECK(f == NULL);

    /* ember writes what numpy wrote, byte for byte. */
    float vals[6] = {0, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f};
    CHECK_OK(ember_npy_save(tmp_path("w.npy"), EMBER_DTYPE_F32, 2, (int64_t[]){2, 3}, vals));
    size_t la, lb;
    char *a = read_file(tmp_path("w.npy"), &la), *b = read_file(data_path("npy/f32_2x3.npy"), &lb);
    CHECK_EQ_INT(la, lb);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    free(b);
    int32_t iv[5] = {1, -2, 3, -4, 2147483647};
    CHECK_OK(ember_npy_save(tmp_path("i.npy"), EMBER_DTYPE_I32, 1, (int64_t[]){5}, iv));
    b = read_file(data_path("npy/i32_5.npy"), &lb);
    free(a);
    a = read_file(tmp_path("i.npy"), &la);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    free(b);

    /* Truncated by one byte, or one byte too long. */
    write_file(tmp_path("t.npy"), a, la - 1);
    CHECK_STATUS(ember_npy_open(tmp_path("t.npy"), &f), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "truncated") != NULL);
    write_file(tmp_path("t.npy"), a, 60); /* inside the header */
    CHECK_STATUS(ember_npy_open(tmp_path("t.npy"), &f), EMBER_ERR_FORMAT);
    write_file(tmp_path("t.npy"), a, 5);
    CHECK_STATUS(ember_npy_open(tmp_path("t.npy"), &f), EMBER_ERR_FORMAT);
    char *longer = malloc(la + 1);
    memcpy(longer, a, la);
    longer[la] = 0;
    write_file(tmp_path("t.npy"), longer, la + 1);
    CHECK_STATUS(ember_npy_open(tmp_path("t.npy"), &f), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "trailing") != NULL);
    free(longer);
    free(a);
    CHECK_STATUS(ember_npy_open(tmp_path("absent.npy"), &f), EMBER_ERR_IO);

    /* Header parser on hand-made headers. */
    struct {
        const char *dict;
        ember_status st;
    } hs[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", EMBER_OK},
        {"{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (7,)}", EMBER_OK},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)", EMBER_ERR_FORMAT},
        {"{'descr': '<f4', 'shape': (3, 4), }", EMBER_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, x), }", EMBER_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'extra': 1, }", EMBER_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3, 4), }", EMBER_ERR_FORMAT},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3, 4), }", EMBER_ERR_DTYPE},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", EMBER_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", EMBER_ERR_OVERFLOW},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", EMBER_ERR_OVERFLOW},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1), }", EMBER_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } junk", EMBER_ERR_FORMAT},
    };
    for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++) {
        unsigned char h[256];
        size_t dl = strlen(hs[k].dict);
        memcpy(h, "\x93NUMPY\x01\x00", 8);
        h[8] = (unsigned char)(dl + 1);
        h[9] = 0;
        memcpy(h + 10, hs[k].dict, dl);
        h[10 + dl] = '\n';
        ember_npy_info info;
        ember_status st = ember_npy_parse_header(h, 11 + dl, &info);
        if (st != hs[k].st) fprintf(stderr, "FAIL: header %zu: %s\n", k, ember_last_error());
        CHECK_STATUS(st, hs[k].st);
        if (k == 0 && st == EMBER_OK) CHECK_EQ_INT(info.data_bytes, 48);
        /* every prefix of a good header is refused cleanly */
        if (hs[k].st == EMBER_OK)
            for (size_t cut = 0; cut < 11 + dl; cut++)
                CHECK(ember_npy_parse_header(h, cut, &info) != EMBER_OK);
    }
    unsigned char v9[16] = "\x93NUMPY\x09\x00";
    ember_npy_info info;
    CHECK_STATUS(ember_npy_parse_header(v9, sizeof v9, &info), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "version 9") != NULL);

    /* Streaming writer: rows appended in pieces; nothing under the final name until finish. */
    ember_npy_writer *w = NULL;
    CHECK_OK(ember_npy_writer_create(&(ember_npy_writer_params){.path = tmp_path("s.npy"), .dtype = EMBER_DTYPE_I64,
                                                                .ndim = 2, .shape = {0, 3}}, &w));
    int64_t rows[12];
    for (int k = 0; k < 12; k++) rows[k] = k * 1000000000000LL;
    CHECK_OK(ember_npy_writer_append(w, rows, 1));
    CHECK_OK(ember_npy_writer_append(w, rows + 3, 3));
    CHECK(access(tmp_path("s.npy"), F_OK) != 0);
    CHECK_OK(ember_npy_writer_finish(w));
    CHECK_STATUS(ember_npy_writer_append(w, rows, 1), EMBER_ERR_STATE);
    ember_npy_writer_destroy(w);
    CHECK_OK(ember_npy_open(tmp_path("s.npy"), &f));
    if (f) {
        CHECK_EQ_INT(ember_npy_get_info(f)->shape[0], 4);
        CHECK_EQ_INT(((const int64_t *)ember_npy_data(f))[11], 11000000000000LL);
        CHECK_EQ_INT(ember_npy_get_info(f)->header_bytes % 64, 0);
        ember_npy_close(f);
    }
    /* An unfinished writer leaves nothing behind. */
    CHECK_OK(ember_npy_writer_create(&(ember_npy_writer_params){.path = tmp_path("u.npy"), .dtype = EMBER_DTYPE_F32,
                                                                .ndim = 1}, &w));
    CHECK_OK(ember_npy_writer_append(w, vals, 6));
    ember_npy_writer_destroy(w);
    CHECK(access(tmp_path("u.npy"), F_OK) != 0);
    CHECK_STATUS(ember_npy_writer_create(&(ember_npy_writer_params){.path = tmp_path("x.npy"), .dtype = EMBER_DTYPE_BF16,
                                                                    .ndim = 1}, &w), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_npy_writer_create(&(ember_npy_writer_params){.path = "/nonexistent/x.npy", .dtype = EMBER_DTYPE_F32,
                                                                    .ndim = 1}, &w), EMBER_ERR_IO);
    /* Empty array: zero rows, opens with no data. */
    CHECK_OK(ember_npy_save(tmp_path("e.npy"), EMBER_DTYPE_F32, 2, (int64_t[]){0, 13}, NULL));
    CHECK_OK(ember_npy_open(tmp_path("e.npy"), &f));
    if (f) {
        CHECK(ember_npy_data(f) == NULL);
        ember_npy_close(f);
    }
}

/* ---- triplets and conversion ---- */

static void test_convert(void) {
    const char *in[] = {data_path("criteo_kaggle_head900.tsv")};
    ember_criteo_stats st;
    int calls = 0;
    CHECK_OK(ember_criteo_convert(&(ember_convert_params){.inputs = in, .num_inputs = 1, .out_prefix = tmp_path("kaggle"),
                                                          .parse = &(ember_criteo_params){.block_bytes = 50000, .threads = 2}},
                                  &st));
    (void)calls;
    CHECK_EQ_INT(st.rows, 900);
    CHECK_EQ_INT(st.bad_total, 0);
    ember_npy_triplet *t = NULL;
    CHECK_OK(ember_npy_triplet_open(tmp_path("kaggle"), &t));
    table direct = read_all(&(ember_criteo_params){.path = in[0]});
    if (t) {
        CHECK_EQ_INT(ember_npy_triplet_rows(t), 900);
        CHECK(memcmp(ember_npy_triplet_dense(t), direct.dense, 900 * ND * sizeof(float)) == 0);
        CHECK(memcmp(ember_npy_triplet_sparse(t), direct.sparse, 900 * NS * sizeof(uint32_t)) == 0);
        CHECK(memcmp(ember_npy_triplet_labels(t), direct.labels, 900 * sizeof(int32_t)) == 0);
        ember_npy_triplet_close(t);
    }
    /* Two inputs become one triplet; the sparse ids are raw 32-bit values held as i32. */
    const char *two[] = {in[0], in[0]};
    CHECK_OK(ember_criteo_convert(&(ember_convert_params){.inputs = two, .num_inputs = 2, .out_prefix = tmp_path("twice")}, &st));
    CHECK_EQ_INT(st.rows, 1800);
    CHECK_OK(ember_npy_triplet_open(tmp_path("twice"), &t));
    if (t) {
        CHECK_EQ_INT(ember_npy_triplet_rows(t), 1800);
        CHECK(memcmp(ember_npy_triplet_sparse(t) + 900 * NS, direct.sparse, 900 * NS * sizeof(uint32_t)) == 0);
        ember_npy_triplet_close(t);
    }
    ember_npy *f = NULL;
    CHECK_OK(ember_npy_open(tmp_path("twice_sparse.npy"), &f));
    if (f) {
        CHECK_EQ_INT(ember_npy_get_info(f)->dtype, EMBER_DTYPE_I32);
        CHECK_EQ_INT(((const int32_t *)ember_npy_data(f))[0], (int32_t)0x68fd1e64);
        CHECK_EQ_INT(((const int32_t *)ember_npy_data(f))[1], (int32_t)0x80e26c9bu); /* negative as i32 */
        ember_npy_close(f);
    }
    CHECK_OK(ember_npy_open(tmp_path("twice_labels.npy"), &f));
    if (f) {
        CHECK_EQ_INT(ember_npy_get_info(f)->ndim, 2);
        CHECK_EQ_INT(ember_npy_get_info(f)->shape[1], 1);
        ember_npy_close(f);
    }
    /* A malformed line: stop mode leaves no triplet; skip mode counts it. */
    size_t n = sample_len + 64;
    char *bad = malloc(n);
    int bl = snprintf(bad, n, "%s\n0\t1\t2\n", sample);
    write_file(tmp_path("bad.tsv"), bad, (size_t)bl);
    const char *badin[] = {tmp_path("bad.tsv")};
    CHECK_STATUS(ember_criteo_convert(&(ember_convert_params){.inputs = badin, .num_inputs = 1, .out_prefix = tmp_path("bad")}, &st),
                 EMBER_ERR_PARSE);
    CHECK(strstr(ember_last_error(), "bad.tsv line 901") != NULL);
    CHECK(access(tmp_path("bad_dense.npy"), F_OK) != 0);
    CHECK(access(tmp_path("bad_sparse.npy"), F_OK) != 0);
    CHECK_OK(ember_criteo_convert(&(ember_convert_params){.inputs = badin, .num_inputs = 1, .out_prefix = tmp_path("bad"),
                                                          .parse = &(ember_criteo_params){.on_error = EMBER_ON_ERROR_SKIP, .max_logged = -1}},
                                  &st));
    CHECK_EQ_INT(st.rows, 900);
    CHECK_EQ_INT(st.bad[EMBER_CRITEO_FAULT_FIELD_COUNT], 1);
    free(bad);

    /* Wrong dtype, wrong shape, different row counts. */
    CHECK_OK(ember_npy_save(tmp_path("w_dense.npy"), EMBER_DTYPE_I32, 2, (int64_t[]){900, 13}, direct.sparse));
    CHECK_OK(ember_npy_save(tmp_path("w_sparse.npy"), EMBER_DTYPE_I32, 2, (int64_t[]){900, 26}, direct.sparse));
    CHECK_OK(ember_npy_save(tmp_path("w_labels.npy"), EMBER_DTYPE_I32, 1, (int64_t[]){900}, direct.labels));
    CHECK_STATUS(ember_npy_triplet_open(tmp_path("w"), &t), EMBER_ERR_DTYPE);
    CHECK(strstr(ember_last_error(), "w_dense.npy: dtype i32, expected f32") != NULL);
    CHECK_OK(ember_npy_save(tmp_path("w_dense.npy"), EMBER_DTYPE_F32, 2, (int64_t[]){900, 13}, direct.dense));
    CHECK_OK(ember_npy_triplet_open(tmp_path("w"), &t)); /* labels of shape (N) are fine */
    ember_npy_triplet_close(t);
    CHECK_OK(ember_npy_save(tmp_path("w_dense.npy"), EMBER_DTYPE_F32, 2, (int64_t[]){900, 12}, direct.dense));
    CHECK_STATUS(ember_npy_triplet_open(tmp_path("w"), &t), EMBER_ERR_SHAPE);
    CHECK_OK(ember_npy_save(tmp_path("w_dense.npy"), EMBER_DTYPE_F32, 2, (int64_t[]){899, 13}, direct.dense));
    CHECK_STATUS(ember_npy_triplet_open(tmp_path("w"), &t), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "row counts differ") != NULL);
    CHECK_STATUS(ember_npy_triplet_open(tmp_path("nothing"), &t), EMBER_ERR_IO);
    table_free(&direct);
}

/* ---- loader ---- */

typedef struct {
    int64_t n;      /* rows */
    int64_t batches;
    int64_t sizes[64];
    float *dense;   /* (n, 13) */
    float *labels;  /* (n) */
    int64_t *ids;   /* (n, 26) row-major, from the jagged values */
    int jagged_ok;
    ember_status status;
    char msg[1024];
} epoch_rows;

static void epoch_free(epoch_rows *e) {
    free(e->dense);
    free(e->labels);
    free(e->ids);
    memset(e, 0, sizeof *e);
}

static epoch_rows drain(ember_loader *l) {
    epoch_rows e = {.jagged_ok = 1};
    const ember_batch *b;
    while ((e.status = ember_loader_next(l, &b)) == EMBER_OK && b) {
        if (b->index != e.batches) e.jagged_ok = 0;
        if (e.batches < 64) e.sizes[e.batches] = b->size;
        e.batches++;
        int64_t B = b->size;
        e.dense = realloc(e.dense, (size_t)(e.n + B + 1) * ND * sizeof(float));
        e.labels = realloc(e.labels, (size_t)(e.n + B + 1) * sizeof(float));
        e.ids = realloc(e.ids, (size_t)(e.n + B + 1) * NS * sizeof(int64_t));
        memcpy(e.dense + e.n * ND, b->dense, (size_t)B * ND * sizeof(float));
        memcpy(e.labels + e.n, b->labels, (size_t)B * sizeof(float));
        if (b->num_tables != NS) e.jagged_ok = 0;
        for (int t = 0; t < NS; t++) {
            if (b->offsets[t][0] != 0 || b->offsets[t][B] != B) e.jagged_ok = 0;
            for (int64_t i = 0; i < B; i++) {
                if (b->offsets[t][i + 1] - b->offsets[t][i] != 1) e.jagged_ok = 0;
                e.ids[(e.n + i) * NS + t] = b->values[t][b->offsets[t][i]];
            }
        }
        e.n += B;
    }
    if (e.status != EMBER_OK) snprintf(e.msg, sizeof e.msg, "%s", ember_last_error());
    return e;
}

static epoch_rows load_all(const ember_loader_params *p) {
    ember_loader *l = NULL;
    ember_status st = ember_loader_create(p, &l);
    if (st != EMBER_OK) {
        epoch_rows e = {.status = st};
        snprintf(e.msg, sizeof e.msg, "%s", ember_last_error());
        return e;
    }
    epoch_rows e = drain(l);
    ember_loader_destroy(l);
    return e;
}

static int epochs_equal(const epoch_rows *a, const epoch_rows *b) {
    return a->n == b->n && a->batches == b->batches &&
           memcmp(a->dense, b->dense, (size_t)a->n * ND * sizeof(float)) == 0 &&
           memcmp(a->labels, b->labels, (size_t)a->n * sizeof(float)) == 0 &&
           memcmp(a->ids, b->ids, (size_t)a->n * NS * sizeof(int64_t)) == 0;
}

/* Row i of an epoch as one comparable record, for multiset checks. */
static int cmp_rowkey(const void *a, const void *b) { return memcmp(a, b, 13 * 4 + 26 * 8 + 4); }

static char *row_keys(const epoch_rows *e) {
    size_t w = 13 * 4 + 26 * 8 + 4;
    char *k = malloc((size_t)e->n * w + 1);
    for (int64_t i = 0; i < e->n; i++) {
        memcpy(k + i * w, e->dense + i * ND, 52);
        memcpy(k + i * w + 52, e->ids + i * NS, 208);
        memcpy(k + i * w + 260, e->labels + i, 4);
    }
    qsort(k, (size_t)e->n, w, cmp_rowkey);
    return k;
}

static void test_loader(void) {
    const char *tsv = data_path("criteo_kaggle_head900.tsv");
    const char *npy = tmp_path("loader");
    CHECK_OK(ember_criteo_convert(&(ember_convert_params){.inputs = &tsv, .num_inputs = 1, .out_prefix = npy}, NULL));
    table direct = read_all(&(ember_criteo_params){.path = tsv});

    /* File order: TSV, npy and the reader agree; 900 = 7 * 128 + 4. */
    epoch_rows a = load_all(&(ember_loader_params){.paths = &tsv, .num_paths = 1, .batch_size = 128});
    epoch_rows b = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 128,
                                                   .format = EMBER_LOADER_NPY, .workers = 3, .prefetch = 1});
    epoch_rows c = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 128}); /* AUTO */
    CHECK_OK(a.status);
    CHECK_OK(b.status);
    CHECK_EQ_INT(a.n, 900);
    CHECK_EQ_INT(a.batches, 8);
    CHECK_EQ_INT(a.sizes[7], 4);
    CHECK(a.jagged_ok && b.jagged_ok);
    CHECK(epochs_equal(&a, &b));
    CHECK(epochs_equal(&a, &c));
    if (a.n == 900) {
        CHECK(memcmp(a.dense, direct.dense, 900 * ND * sizeof(float)) == 0);
        int bad = 0;
        for (int i = 0; i < 900; i++) {
            bad += a.labels[i] != (float)direct.labels[i];
            for (int t = 0; t < NS; t++) bad += a.ids[i * NS + t] != (int64_t)direct.sparse[i * NS + t];
        }
        CHECK_EQ_INT(bad, 0);
    }
    epoch_free(&c);
    epoch_rows d = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 128, .drop_last = 1});
    CHECK_EQ_INT(d.batches, 7);
    CHECK_EQ_INT(d.n, 896);
    epoch_free(&d);

    /* Shuffled: deterministic per seed, whatever the workers, the source or the chunking;
     * a permutation of the rows. */
    ember_criteo_params small_blocks = {.block_bytes = 7000, .threads = 2};
    epoch_rows s1 = load_all(&(ember_loader_params){.paths = &tsv, .num_paths = 1, .batch_size = 100,
                                                    .shuffle_buffer = 256, .seed = 7, .tsv = &small_blocks});
    epoch_rows s2 = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 100,
                                                    .shuffle_buffer = 256, .seed = 7, .workers = 4, .prefetch = 2});
    epoch_rows s3 = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 100,
                                                    .shuffle_buffer = 256, .seed = 8});
    CHECK_OK(s1.status);
    CHECK(epochs_equal(&s1, &s2));
    CHECK(!epochs_equal(&s1, &s3));
    CHECK(!epochs_equal(&s1, &a) && s1.n == 900);
    char *ka = row_keys(&a), *ks = row_keys(&s1);
    CHECK(memcmp(ka, ks, 900 * (13 * 4 + 26 * 8 + 4)) == 0);
    free(ka);
    free(ks);
    /* A buffer larger than the data is a full shuffle. */
    epoch_rows s4 = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 900,
                                                    .shuffle_buffer = 100000, .seed = 7});
    CHECK_EQ_INT(s4.n, 900);
    CHECK_EQ_INT(s4.batches, 1);
    epoch_free(&s4);

    /* Data parallel: ranks' batches, concatenated, equal one rank with batch * world;
     * every rank sees as many batches. 900 = 2 * 400 + 100. */
    epoch_rows one = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 400,
                                                     .shuffle_buffer = 300, .seed = 3});
    epoch_rows ranks[4];
    for (int r = 0; r < 4; r++) {
        ranks[r] = load_all(&(ember_loader_params){.paths = r % 2 ? &tsv : &npy, .num_paths = 1, .batch_size = 100,
                                                   .shuffle_buffer = 300, .seed = 3, .rank = r, .world = 4});
        CHECK_OK(ranks[r].status);
        CHECK_EQ_INT(ranks[r].batches, 3);
        CHECK_EQ_INT(ranks[r].sizes[2], 25);
    }
    int64_t off[4] = {0};
    int bad = 0;
    for (int64_t k = 0, row = 0; k < one.batches; k++) {
        for (int r = 0; r < 4; r++) {
            int64_t m = ranks[r].sizes[k];
            for (int64_t i = 0; i < m; i++, row++) {
                bad += memcmp(one.ids + row * NS, ranks[r].ids + (off[r] + i) * NS, NS * sizeof(int64_t)) != 0;
                bad += one.labels[row] != ranks[r].labels[off[r] + i];
            }
            off[r] += m;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(off[0] + off[1] + off[2] + off[3], 900);
    for (int r = 0; r < 4; r++) epoch_free(&ranks[r]);
    epoch_free(&one);
    /* Row range and held-out split: [100, 700) in file order is rows 100.. of the file;
     * parts 0 and 1 of a 20% split are disjoint, in order, and together the whole range. */
    epoch_rows rr = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 50,
                                                    .row_begin = 100, .row_end = 700});
    epoch_rows h0 = load_all(&(ember_loader_params){.paths = &tsv, .num_paths = 1, .batch_size = 7, .row_begin = 100,
                                                    .row_end = 700, .holdout = 0.2, .holdout_seed = 5});
    epoch_rows h1 = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 7, .row_begin = 100,
                                                    .row_end = 700, .holdout = 0.2, .holdout_seed = 5,
                                                    .holdout_part = 1});
    CHECK_EQ_INT(rr.n, 600);
    CHECK_EQ_INT(h0.n + h1.n, 600);
    CHECK(h1.n > 80 && h1.n < 160); /* 120 expected; the hash is fixed, so this cannot flake */
    if (rr.n == 600 && a.n == 900) CHECK(memcmp(rr.ids, a.ids + 100 * NS, 600 * NS * sizeof(int64_t)) == 0);
    if (rr.n == 600 && h0.n + h1.n == 600) {
        int64_t i0 = 0, i1 = 0, miss = 0;
        for (int64_t r = 0; r < 600; r++) {
            const int64_t *row = rr.ids + r * NS;
            if (i0 < h0.n && memcmp(row, h0.ids + i0 * NS, NS * sizeof(int64_t)) == 0) i0++;
            else if (i1 < h1.n && memcmp(row, h1.ids + i1 * NS, NS * sizeof(int64_t)) == 0) i1++;
            else miss++;
        }
        CHECK_EQ_INT(miss, 0);
    }
    epoch_free(&rr);
    epoch_free(&h0);
    epoch_free(&h1);
    ember_loader *lb = NULL;
    CHECK_STATUS(ember_loader_create(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 8,
                                                            .row_begin = 10, .row_end = 5},
                                     &lb),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_loader_create(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 8,
                                                            .holdout = 1.5},
                                     &lb),
                 EMBER_ERR_INVALID_ARGUMENT);
    /* More ranks than rows in the last batch: empty batches, same count everywhere. */
    epoch_rows tail = load_all(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 1, .rank = 0,
                                                      .world = 7});
    CHECK_EQ_INT(tail.batches, 129); /* 900 = 128 * 7 + 4 */
    CHECK_EQ_INT(tail.sizes[0], 1);
    epoch_free(&tail);

    /* Epochs: a new order each epoch, the same order again for the same epoch. */
    ember_loader *l = NULL;
    CHECK_OK(ember_loader_create(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 64,
                                                        .shuffle_buffer = 500, .seed = 11, .prefetch = 2},
                                 &l));
    if (l) {
        epoch_rows e0 = drain(l);
        CHECK_OK(ember_loader_start_epoch(l, 1));
        epoch_rows e1 = drain(l);
        CHECK_OK(ember_loader_start_epoch(l, 0));
        const ember_batch *first;
        CHECK_OK(ember_loader_next(l, &first)); /* restart in the middle of an epoch */
        CHECK_OK(ember_loader_start_epoch(l, 0));
        epoch_rows e0b = drain(l);
        CHECK(epochs_equal(&e0, &e0b));
        CHECK(!epochs_equal(&e0, &e1) && e1.n == 900);
        int64_t rows;
        ember_criteo_stats ts;
        ember_loader_get_stats(l, &rows, &ts);
        CHECK_EQ_INT(rows, 900);
        epoch_free(&e0);
        epoch_free(&e1);
        epoch_free(&e0b);
        ember_loader_destroy(l);
    }

    /* Table sizes reduce ids; several inputs of both formats are read in order. */
    int64_t rows_per_table[NS];
    for (int t = 0; t < NS; t++) rows_per_table[t] = 1000 + t;
    const char *mixed[] = {tsv, npy};
    epoch_rows m = load_all(&(ember_loader_params){.paths = mixed, .num_paths = 2, .batch_size = 256,
                                                   .table_rows = rows_per_table});
    CHECK_OK(m.status);
    CHECK_EQ_INT(m.n, 1800);
    bad = 0;
    for (int64_t i = 0; i < m.n; i++)
        for (int t = 0; t < NS; t++) bad += m.ids[i * NS + t] != (int64_t)(direct.sparse[(i % 900) * NS + t] % (uint32_t)(1000 + t));
    CHECK_EQ_INT(bad, 0);
    epoch_free(&m);

    /* A malformed line in stop mode: the batches before it, then the parse error. */
    size_t n = sample_len + 64;
    char *badtext = malloc(n);
    int bl = snprintf(badtext, n, "%s\n0\t1\t2\n", sample);
    write_file(tmp_path("loader_bad.tsv"), badtext, (size_t)bl);
    free(badtext);
    const char *badp = tmp_path("loader_bad.tsv");
    epoch_rows e = load_all(&(ember_loader_params){.paths = &badp, .num_paths = 1, .batch_size = 100,
                                                   .tsv = &(ember_criteo_params){.block_bytes = 100000}});
    CHECK_STATUS(e.status, EMBER_ERR_PARSE);
    CHECK(strstr(e.msg, "loader_bad.tsv line 901") != NULL);
    CHECK(e.n <= 900);
    epoch_free(&e);
    ember_criteo_params skip = {.on_error = EMBER_ON_ERROR_SKIP, .max_logged = -1};
    CHECK_OK(ember_loader_create(&(ember_loader_params){.paths = &badp, .num_paths = 1, .batch_size = 100, .tsv = &skip}, &l));
    e = drain(l);
    CHECK_OK(e.status);
    CHECK_EQ_INT(e.n, 900);
    ember_criteo_stats ts;
    ember_loader_get_stats(l, NULL, &ts);
    CHECK_EQ_INT(ts.bad_total, 1);
    CHECK_EQ_INT(ts.lines, 901);
    epoch_free(&e);
    ember_loader_destroy(l);

    /* Bad arguments and inputs fail at create. */
    CHECK_STATUS(ember_loader_create(&(ember_loader_params){.paths = &npy, .num_paths = 1}, &l), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_loader_create(&(ember_loader_params){.paths = &npy, .num_paths = 1, .batch_size = 8, .rank = 2, .world = 2}, &l),
                 EMBER_ERR_INVALID_ARGUMENT);
    const char *absent = tmp_path("absent");
    CHECK_STATUS(ember_loader_create(&(ember_loader_params){.paths = &absent, .num_paths = 1, .batch_size = 8}, &l), EMBER_ERR_IO);
    CHECK_STATUS(ember_loader_create(&(ember_loader_params){.paths = &absent, .num_paths = 1, .batch_size = 8,
                                                            .format = EMBER_LOADER_NPY}, &l), EMBER_ERR_IO);
    CHECK(l == NULL);
    /* Destroy with batches still in flight. */
    CHECK_OK(ember_loader_create(&(ember_loader_params){.paths = &tsv, .num_paths = 1, .batch_size = 10, .prefetch = 3}, &l));
    const ember_batch *bb;
    CHECK_OK(ember_loader_next(l, &bb));
    CHECK(bb && bb->size == 10);
    ember_loader_destroy(l);
    ember_loader_destroy(NULL);

    epoch_free(&a);
    epoch_free(&b);
    epoch_free(&s1);
    epoch_free(&s2);
    epoch_free(&s3);
    table_free(&direct);
}

/* ---- generator ---- */

/* Mann-Whitney AUC of scores against 0/1 labels (ties count half). */
typedef struct {
    float s;
    int32_t y;
} scored;

static int cmp_scored(const void *a, const void *b) {
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

static double empirical_auc(const float *score, const int32_t *label, int64_t n) {
    scored *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (scored){score[i], label[i]};
    qsort(v, (size_t)n, sizeof *v, cmp_scored);
    double negs = 0, num = 0, pos = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        double tp = 0, tn = 0;
        while (j < n && v[j].s == v[i].s) {
            tp += v[j].y;
            tn += !v[j].y;
            j++;
        }
        num += tp * negs + 0.5 * tp * tn;
        negs += tn;
        pos += tp;
        i = j;
    }
    free(v);
    return num / (pos * negs);
}

static int cmp_u64_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

static void test_gen(void) {
    ember_gen *g = NULL, *g2 = NULL, *g3 = NULL;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 5, .scale = 0.01}, &g));
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 5, .scale = 0.01}, &g2));
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 6, .scale = 0.01}, &g3));
    if (!g || !g2 || !g3) return;
    CHECK_EQ_INT(ember_gen_cardinality(g, 2), 101312); /* 10131227 * 0.01, rounded */
    CHECK_EQ_INT(ember_gen_cardinality(g, 8), 1);      /* 3 * 0.01 rounds to 0: at least 1 */

    /* Deterministic by seed, and any split of the rows gives the same rows. */
    int64_t n = 300000;
    int64_t *ints = malloc((size_t)n * ND * sizeof *ints);
    uint16_t *mask = malloc((size_t)n * sizeof *mask);
    uint32_t *ids = malloc((size_t)n * NS * sizeof *ids), *ids2 = malloc((size_t)n * NS * sizeof *ids2);
    int32_t *lab = malloc((size_t)n * sizeof *lab), *lab2 = malloc((size_t)n * sizeof *lab2);
    float *prob = malloc((size_t)n * sizeof *prob);
    CHECK_OK(ember_gen_rows(g, 0, n, ints, mask, ids, lab, prob));
    CHECK_OK(ember_gen_rows(g2, 0, 1000, NULL, NULL, ids2, lab2, NULL));
    CHECK_OK(ember_gen_rows(g2, 1000, n - 1000, NULL, NULL, ids2 + 1000 * NS, lab2 + 1000, NULL));
    CHECK(memcmp(ids, ids2, (size_t)n * NS * sizeof *ids) == 0);
    CHECK(memcmp(lab, lab2, (size_t)n * sizeof *lab) == 0);
    CHECK_OK(ember_gen_rows(g3, 0, 1000, NULL, NULL, ids2, NULL, NULL));
    CHECK(memcmp(ids, ids2, 1000 * NS * sizeof *ids) != 0);
    int oob = 0;
    for (int64_t i = 0; i < n; i++)
        for (int t = 0; t < NS; t++) oob += ids[i * NS + t] >= (uint64_t)ember_gen_cardinality(g, t);
    CHECK_EQ_INT(oob, 0);
    int64_t pos = 0, missing = 0;
    for (int64_t i = 0; i < n; i++) {
        pos += lab[i];
        missing += __builtin_popcount(mask[i]);
    }
    CHECK(pos > n / 10 && pos < n / 2);
    CHECK_NEAR((double)missing / (double)(n * ND), 0.1, 0.005);

    /* Skew: the measured share of the top 1% (and 10%) of ids matches the reported one. */
    int fields[] = {2, 9, 23};
    for (int k = 0; k < 3; k++) {
        int t = fields[k];
        int64_t N = ember_gen_cardinality(g, t);
        uint64_t *cnt = calloc((size_t)N, sizeof *cnt);
        for (int64_t i = 0; i < n; i++) cnt[ids[i * NS + t]]++;
        qsort(cnt, (size_t)N, sizeof *cnt, cmp_u64_desc);
        for (int f = 0; f < 2; f++) {
            double frac = f ? 0.10 : 0.01;
            int64_t top = (int64_t)ceil(frac * (double)N);
            uint64_t sum = 0;
            for (int64_t i = 0; i < top; i++) sum += cnt[i];
            double measured = (double)sum / (double)n, reported = ember_gen_hot_share(g, t, frac);
            if (fabs(measured - reported) > 0.02)
                fprintf(stderr, "FAIL: field %d top %.0f%%: measured %.4f, reported %.4f\n", t, 100 * frac, measured, reported);
            CHECK_NEAR(measured, reported, 0.02);
        }
        CHECK_NEAR(ember_gen_hot_share(g, t, 0.01), 0.90, 1e-6); /* the default: 1% of ids take 90% */
        free(cnt);
    }

    /* Bayes AUC: the AUC of the true probability on drawn labels matches the report. */
    double auc;
    CHECK_OK(ember_gen_bayes_auc(g, 200000, &auc));
    double emp = empirical_auc(prob, lab, n);
    CHECK_NEAR(emp, auc, 0.006);
    CHECK(auc > 0.65 && auc < 0.95);
    double auc2;
    CHECK_OK(ember_gen_bayes_auc(g2, 200000, &auc2));
    CHECK_NEAR(auc, auc2, 0);
    /* A weaker signal gives a lower ceiling. */
    ember_gen *weak;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 5, .scale = 0.01, .signal = 0.3}, &weak));
    double auc_weak;
    CHECK_OK(ember_gen_bayes_auc(weak, 100000, &auc_weak));
    CHECK(auc_weak < auc - 0.05);
    ember_gen_destroy(weak);

    /* Written TSV reads back as the same rows; npy likewise. */
    int64_t wn = 50000;
    const char *path = tmp_path("gen.tsv");
    CHECK_OK(ember_gen_write(g, &(ember_gen_write_params){.path = path, .format = EMBER_GEN_TSV, .rows = wn, .threads = 3}));
    table t = read_all(&(ember_criteo_params){.path = path});
    CHECK_OK(t.status);
    CHECK_EQ_INT(t.n, wn);
    int badr = 0;
    for (int64_t i = 0; i < t.n && i < wn; i++) {
        badr += t.labels[i] != lab[i];
        for (int j = 0; j < NS; j++) badr += t.sparse[i * NS + j] != ids[i * NS + j];
    }
    CHECK_EQ_INT(badr, 0);
    /* dense: log1p of the integers, missing as 0 */
    int badd = 0;
    for (int64_t i = 0; i < t.n && i < wn; i++)
        for (int j = 0; j < ND; j++) {
            float want = ints[i * ND + j] > 0 ? (float)log1p((double)ints[i * ND + j]) : 0.0f;
            badd += t.dense[i * ND + j] != want;
        }
    CHECK_EQ_INT(badd, 0);
    const char *gp = tmp_path("gen");
    CHECK_OK(ember_gen_write(g, &(ember_gen_write_params){.path = gp, .format = EMBER_GEN_NPY, .rows = wn}));
    ember_npy_triplet *tr = NULL;
    CHECK_OK(ember_npy_triplet_open(gp, &tr));
    if (tr) {
        CHECK_EQ_INT(ember_npy_triplet_rows(tr), wn);
        CHECK(memcmp(ember_npy_triplet_dense(tr), t.dense, (size_t)wn * ND * sizeof(float)) == 0);
        CHECK(memcmp(ember_npy_triplet_sparse(tr), t.sparse, (size_t)wn * NS * sizeof(uint32_t)) == 0);
        CHECK(memcmp(ember_npy_triplet_labels(tr), t.labels, (size_t)wn * sizeof(int32_t)) == 0);
        ember_npy_triplet_close(tr);
    }
    table_free(&t);

    /* Multi-hot: bag sizes average the pooling factor; files refuse it. */
    double pooling[NS];
    for (int j = 0; j < NS; j++) pooling[j] = j == 0 ? 30 : 1;
    ember_gen *mh;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 5, .scale = 0.01, .pooling = pooling}, &mh));
    int64_t bn = 20000;
    int64_t *offs = malloc((size_t)(bn + 1) * sizeof *offs);
    CHECK_STATUS(ember_gen_bags(mh, 0, 0, bn, offs, NULL, 0), EMBER_ERR_SHAPE);
    CHECK_NEAR((double)offs[bn] / (double)bn, 30.0, 0.3);
    int64_t *vals = malloc((size_t)offs[bn] * sizeof *vals);
    CHECK_OK(ember_gen_bags(mh, 0, 0, bn, offs, vals, offs[bn]));
    uint32_t first_ids[NS];
    CHECK_OK(ember_gen_rows(mh, 7, 1, NULL, NULL, first_ids, NULL, NULL));
    CHECK_EQ_INT(vals[offs[7]], first_ids[0]); /* rows' ids are the bags' first ids */
    CHECK_OK(ember_gen_bags(mh, 1, 0, 10, offs, vals, 10)); /* a one-hot field: bags of one */
    CHECK_EQ_INT(offs[10], 10);
    CHECK_STATUS(ember_gen_write(mh, &(ember_gen_write_params){.path = tmp_path("mh.tsv"), .rows = 10}), EMBER_ERR_UNSUPPORTED);
    free(offs);
    free(vals);
    ember_gen_destroy(mh);

    /* Explicit exponents; bad arguments. */
    double zipf[NS];
    for (int j = 0; j < NS; j++) zipf[j] = 1.0;
    ember_gen *gz;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 1, .zipf = zipf, .scale = 0.001}, &gz));
    CHECK_NEAR(ember_gen_zipf(gz, 3), 1.0, 0);
    CHECK_NEAR(ember_gen_hot_share(gz, 3, 1.0), 1.0, 1e-12);
    ember_gen_destroy(gz);
    CHECK_STATUS(ember_gen_create(&(ember_gen_params){.scale = -1}, &gz), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_gen_create(&(ember_gen_params){.hot_share = 1.5}, &gz), EMBER_ERR_INVALID_ARGUMENT);

    free(ints);
    free(mask);
    free(ids);
    free(ids2);
    free(lab);
    free(lab2);
    free(prob);
    ember_gen_destroy(g);
    ember_gen_destroy(g2);
    ember_gen_destroy(g3);
}

/* ---- frequency counts ---- */

static void test_freq(void) {
    /* Exact counts of the real sample against the reference parser. */
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NS}, &f));
    table t = read_all(&(ember_criteo_params){.path = data_path("criteo_kaggle_head900.tsv")});
    CHECK_OK(ember_freq_add_rows(f, t.sparse, 450));
    CHECK_OK(ember_freq_add_rows(f, t.sparse + 450 * NS, 450));
    int bad = 0;
    for (int j = 0; j < NS; j++) {
        for (int r = 0; r < 900; r++) {
            uint64_t want = 0;
            for (int q = 0; q < 900; q++) want += ref.ids[q][j] == ref.ids[r][j];
            bad += ember_freq_count(f, j, ref.ids[r][j]) != want;
        }
        ember_freq_table_stats ts;
        CHECK_OK(ember_freq_get_table_stats(f, j, &ts));
        bad += ts.lookups != 900 || !ts.exact;
    }
    CHECK_EQ_INT(bad, 0);
    /* C9 (table 8) is a 3-value field: its top entry, and top ordering. */
    ember_freq_entry top[5];
    int64_t nt;
    CHECK_OK(ember_freq_top(f, 8, 5, top, &nt));
    CHECK(nt >= 1 && nt <= 3);
    for (int64_t i = 1; i < nt; i++) CHECK(top[i - 1].count >= top[i].count);
    uint64_t c9 = 0;
    for (int64_t i = 0; i < nt; i++) c9 += top[i].count;
    CHECK_EQ_INT(c9, 900);
    /* Skew by hand for table 0. */
    double fr[3] = {0.001, 0.01, 0.1}, sh[3];
    CHECK_OK(ember_freq_skew(f, 0, 3, fr, sh));
    ember_freq_table_stats ts0;
    ember_freq_get_table_stats(f, 0, &ts0);
    ember_freq_entry *all = malloc((size_t)ts0.distinct * sizeof *all);
    CHECK_OK(ember_freq_top(f, 0, (int64_t)ts0.distinct, all, &nt));
    CHECK_EQ_INT(nt, ts0.distinct);
    for (int k = 0; k < 3; k++) {
        int64_t want = (int64_t)ceil(fr[k] * (double)ts0.distinct);
        uint64_t s = 0;
        for (int64_t i = 0; i < want; i++) s += all[i].count;
        CHECK_NEAR(sh[k], (double)s / 900.0, 1e-12);
    }
    free(all);

    /* Save and load: the same counts. */
    const char *path = tmp_path("counts.bin");
    CHECK_OK(ember_freq_save(f, path));
    ember_freq *g = NULL;
    CHECK_OK(ember_freq_load(path, NULL, &g));
    if (g) {
        bad = 0;
        for (int j = 0; j < NS; j++)
            for (int r = 0; r < 900; r++) bad += ember_freq_count(g, j, ref.ids[r][j]) != ember_freq_count(f, j, ref.ids[r][j]);
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(ember_freq_num_tables(g), NS);
        ember_freq_destroy(g);
    }
    /* Damaged files. */
    size_t len;
    char *bytes = read_file(path, &len);
    bytes[len / 2] ^= 1;
    write_file(tmp_path("c1.bin"), bytes, len);
    CHECK_STATUS(ember_freq_load(tmp_path("c1.bin"), NULL, &g), EMBER_ERR_CHECKSUM);
    bytes[len / 2] ^= 1;
    write_file(tmp_path("c1.bin"), bytes, len - 9);
    CHECK(ember_freq_load(tmp_path("c1.bin"), NULL, &g) != EMBER_OK);
    bytes[8] = 99;
    write_file(tmp_path("c1.bin"), bytes, len);
    CHECK_STATUS(ember_freq_load(tmp_path("c1.bin"), NULL, &g), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "version 99") != NULL);
    bytes[0] = 'X';
    write_file(tmp_path("c1.bin"), bytes, len);
    CHECK_STATUS(ember_freq_load(tmp_path("c1.bin"), NULL, &g), EMBER_ERR_FORMAT);
    CHECK_STATUS(ember_freq_load(tmp_path("none.bin"), NULL, &g), EMBER_ERR_IO);
    free(bytes);
    CHECK_STATUS(ember_freq_add(f, NS, (int64_t[]){1}, 1), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_freq_add(f, 0, (int64_t[]){-1}, 1), EMBER_ERR_INDEX);
    ember_freq_destroy(f);
    table_free(&t);

    /* Beyond the cap: Space-Saving keeps the heavy hitters of a skewed stream. */
    ember_gen *gen;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 9, .scale = 0.05}, &gen));
    int64_t n = 200000;
    uint32_t *ids = malloc((size_t)n * NS * sizeof *ids);
    CHECK_OK(ember_gen_rows(gen, 0, n, NULL, NULL, ids, NULL, NULL));
    ember_freq *exact = NULL, *capped = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NS}, &exact));
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = NS, .memory_cap = 1 << 20, .heavy_hitters = 1000}, &capped));
    CHECK_OK(ember_freq_add_rows(exact, ids, n));
    for (int64_t i = 0; i < n; i += 5000) CHECK_OK(ember_freq_add_rows(capped, ids + i * NS, 5000));
    ember_freq_table_stats se, sc;
    CHECK_OK(ember_freq_get_table_stats(exact, 2, &se));
    CHECK_OK(ember_freq_get_table_stats(capped, 2, &sc));
    CHECK(se.exact && !sc.exact);
    CHECK_EQ_INT(sc.lookups, n);
    CHECK_EQ_INT(sc.entries, 1000);
    CHECK(fabs((double)sc.distinct - (double)se.distinct) < 0.05 * (double)se.distinct);
    ember_freq_entry etop[50], ctop[1000];
    int64_t ne, nc;
    CHECK_OK(ember_freq_top(exact, 2, 50, etop, &ne));
    CHECK_OK(ember_freq_top(capped, 2, 1000, ctop, &nc));
    bad = 0;
    for (int64_t i = 0; i < ne; i++) {
        uint64_t c = ember_freq_count(capped, 2, etop[i].id);
        int found = 0;
        for (int64_t k = 0; k < nc; k++)
            if (ctop[k].id == etop[i].id) {
                found = 1;
                bad += ctop[k].count < etop[i].count || ctop[k].count - ctop[k].error > etop[i].count;
            }
        bad += !found || c < etop[i].count;
    }
    CHECK_EQ_INT(bad, 0);
    /* The skew of the heavy hitters is close to the exact one. */
    double fr1 = 0.01, s_exact, s_capped;
    CHECK_OK(ember_freq_skew(exact, 2, 1, &fr1, &s_exact));
    CHECK_OK(ember_freq_skew(capped, 2, 1, &fr1, &s_capped));
    CHECK_NEAR(s_capped, s_exact, 0.03);
    /* A capped counter saves and loads as well. */
    CHECK_OK(ember_freq_save(capped, tmp_path("capped.bin")));
    ember_freq *cl = NULL;
    CHECK_OK(ember_freq_load(tmp_path("capped.bin"), NULL, &cl));
    if (cl) {
        ember_freq_table_stats sl;
        CHECK_OK(ember_freq_get_table_stats(cl, 2, &sl));
        CHECK(!sl.exact);
        CHECK_EQ_INT(sl.lookups, n);
        CHECK_EQ_INT(ember_freq_count(cl, 2, etop[0].id), ember_freq_count(capped, 2, etop[0].id));
        ember_freq_destroy(cl);
    }
    free(ids);
    ember_freq_destroy(exact);
    ember_freq_destroy(capped);
    ember_gen_destroy(gen);
}

/* ---- main ---- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/ember-test-datasets-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FAIL: cannot make a temporary directory\n");
        return 1;
    }
    sample = read_file(data_path("criteo_kaggle_head900.tsv"), &sample_len);
    reference_parse(sample, &ref);
    test_sample();
    test_gzip();
    test_malformed();
    test_reader_args();
    test_vocab();
    test_npy();
    test_convert();
    test_loader();
    test_gen();
    test_freq();
    free(sample);
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return check_summary();
}
