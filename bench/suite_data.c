/*
 * data suite: the datasets module at work on the real Criteo sample, repeated to a
 * file of a few hundred MB (tests/data/criteo_kaggle_head900.tsv, 900 rows, 1400
 * times: 304 MB, 1.26 M rows; --quick 460 times: 100 MB; --tiny 4 times).
 *
 *   tsv_to_arrays   TSV -> model-ready arrays: log1p dense f32 (N, 13), 32-bit ids
 *                   (N, 26), labels; metric "TSV rows/s". Peer: the faster of
 *                   pandas.read_csv and pyarrow.csv.read_csv + numpy producing the
 *                   same arrays (bench/peers/data.py).
 *   tsv_parse       raw parse to typed columns (integers as f32, ids as integers);
 *                   peer: pyarrow.csv.read_csv alone (ids left as strings).
 *   npy_loader      batches of 2048 (dense, jagged ids, labels) from the same rows as an
 *                   npy triplet, file order and through a 64K-row shuffle buffer.
 *   gen_rows        synthetic Criteo rows (Kaggle cardinalities) in memory.
 *
 * The repeated file is made once under $EMBER_BENCH_DIR (default $TMPDIR or /tmp,
 * subdirectory ember-bench-data) by both sides identically: the sample plus '\n',
 * repeated. The sample is found through $EMBER_TEST_DATA, else ./tests/data.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/internal.h"

#define SAMPLE "criteo_kaggle_head900.tsv"
#define SAMPLE_ROWS 900

static ember_status find_sample(char *buf, size_t n) {
    const char *env = getenv("EMBER_TEST_DATA");
    if (env && *env) {
        snprintf(buf, n, "%s/%s", env, SAMPLE);
        if (access(buf, R_OK) == 0) return EMBER_OK;
    }
    snprintf(buf, n, "tests/data/%s", SAMPLE);
    if (access(buf, R_OK) == 0) return EMBER_OK;
    return ember__error(EMBER_ERR_NOT_FOUND,
                        "bench data: cannot find %s: run from the source tree or set EMBER_TEST_DATA to its "
                        "tests/data directory",
                        SAMPLE);
}

static void bench_dir(char *buf, size_t n) {
    const char *d = getenv("EMBER_BENCH_DIR");
    if (d && *d) {
        snprintf(buf, n, "%s", d);
        return;
    }
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/ember-bench-data", t && *t ? t : "/tmp");
}

/* DIR/criteo_xREPS.tsv: the sample plus '\n', REPS times; made once. */
static ember_status repeated_file(int reps, char *path, size_t n) {
    char sample[1024], dir[900];
    EMBER_TRY(find_sample(sample, sizeof sample));
    bench_dir(dir, sizeof dir);
    snprintf(path, n, "%s/criteo_x%d.tsv", dir, reps);
    struct stat st;
    FILE *f = fopen(sample, "rb");
    if (!f) return ember__error(EMBER_ERR_IO, "bench data: cannot open %s: %s", sample, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(buf);
        return ember__error(EMBER_ERR_IO, "bench data: cannot read %s", sample);
    }
    fclose(f);
    buf[len] = '\n';
    size_t want = (size_t)(len + 1) * (size_t)reps;
    if (stat(path, &st) == 0 && (size_t)st.st_size == want) {
        free(buf);
        return EMBER_OK;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        free(buf);
        return ember__error(EMBER_ERR_IO, "bench data: cannot make %s: %s", dir, strerror(errno));
    }
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%.1200s.tmp.%ld", path, (long)getpid());
    FILE *o = fopen(tmp, "wb");
    int ok = o != NULL;
    for (int i = 0; ok && i < reps; i++) ok = fwrite(buf, 1, (size_t)len + 1, o) == (size_t)len + 1;
    if (o && fclose(o) != 0) ok = 0;
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ember__error(EMBER_ERR_IO, "bench data: cannot write %s", path);
    }
    return EMBER_OK;
}

/* ---- TSV ---- */

typedef struct {
    const char *path;
    ember_dense_transform dense;
    int64_t expect;
    double checksum;
} tsv_arg;

static ember_status tsv_op(void *p) {
    tsv_arg *a = p;
    ember_criteo_reader *r;
    EMBER_TRY(ember_criteo_open(&(ember_criteo_params){.path = a->path, .dense = a->dense}, &r));
    ember_criteo_rows rows;
    ember_status st;
    int64_t n = 0;
    while ((st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
        n += rows.n;
        a->checksum += rows.dense[0] + (double)rows.sparse[rows.n * EMBER_CRITEO_NUM_SPARSE - 1];
    }
    ember_criteo_close(r);
    if (st == EMBER_OK && n != a->expect)
        st = ember__error(EMBER_ERR_INTERNAL, "bench data: %s gave %lld rows, expected %lld", a->path, (long long)n,
                          (long long)a->expect);
    return st;
}

/* ---- loader ---- */

typedef struct {
    const char *prefix;
    int64_t shuffle, expect;
    int64_t batches;
} loader_arg;

static ember_status loader_op(void *p) {
    loader_arg *a = p;
    ember_loader *l;
    EMBER_TRY(ember_loader_create(&(ember_loader_params){.paths = &a->prefix, .num_paths = 1, .format = EMBER_LOADER_NPY,
                                                         .batch_size = 2048, .shuffle_buffer = a->shuffle, .seed = 1,
                                                         .workers = 1},
                                  &l));
    const ember_batch *b;
    ember_status st;
    int64_t rows = 0;
    a->batches = 0;
    while ((st = ember_loader_next(l, &b)) == EMBER_OK && b) {
        rows += b->size;
        a->batches++;
    }
    ember_loader_destroy(l);
    if (st == EMBER_OK && rows != a->expect)
        st = ember__error(EMBER_ERR_INTERNAL, "bench data: loader gave %lld rows, expected %lld", (long long)rows,
                          (long long)a->expect);
    return st;
}

/* ---- generator ---- */

typedef struct {
    ember_gen *g;
    int64_t n;
    uint32_t *ids;
    int32_t *labels;
    int64_t *ints;
} gen_arg;

static ember_status gen_op(void *p) {
    gen_arg *a = p;
    return ember_gen_rows(a->g, 0, a->n, a->ints, NULL, a->ids, a->labels, NULL);
}

ember_status ember_bench_suite_data(const ember_bench_opts *o) {
    int reps = o->tiny ? 4 : o->quick ? 460 : 1400;
    char path[1200], params[512];
    EMBER_TRY(repeated_file(reps, path, sizeof path));
    int64_t rows = (int64_t)reps * SAMPLE_ROWS;
    struct stat stt;
    double mb = stat(path, &stt) == 0 ? (double)stt.st_size / 1e6 : 0;
    int threads = ember_get_num_threads();

    static const struct {
        const char *name;
        ember_dense_transform dense;
        const char *what;
    } tsv_cases[] = {{"tsv_to_arrays", EMBER_DENSE_LOG1P, "log1p dense f32, u32 ids, labels"},
                     {"tsv_parse", EMBER_DENSE_RAW, "raw integers as f32, u32 ids, labels"}};
    for (int k = 0; k < 2; k++) {
        tsv_arg a = {.path = path, .dense = tsv_cases[k].dense, .expect = rows};
        double sec;
        EMBER_TRY(ember_bench_time(o, tsv_op, &a, &sec));
        snprintf(params, sizeof params, "\"rows\":%lld,\"mb\":%.1f,\"output\":\"%s\",\"threads\":%d,\"mb_per_s\":%.1f",
                 (long long)rows, mb, tsv_cases[k].what, threads, mb / sec);
        ember_bench_emit(o, "data", tsv_cases[k].name, "TSV rows/s", (double)rows / sec, "rows/s", params);
    }

    /* The same rows as a triplet, for the loader. */
    char prefix[1300];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(path) - 4), path); /* without ".tsv" */
    char probe[1400];
    snprintf(probe, sizeof probe, "%s_labels.npy", prefix);
    if (access(probe, R_OK) != 0) {
        const char *in = path;
        EMBER_TRY(ember_criteo_convert(&(ember_convert_params){.inputs = &in, .num_inputs = 1, .out_prefix = prefix}, NULL));
    }
    static const int64_t shuffles[2] = {0, 65536};
    for (int k = 0; k < 2; k++) {
        loader_arg a = {.prefix = prefix, .shuffle = shuffles[k], .expect = rows};
        double sec;
        EMBER_TRY(ember_bench_time(o, loader_op, &a, &sec));
        snprintf(params, sizeof params, "\"rows\":%lld,\"batch\":2048,\"shuffle_buffer\":%lld,\"rows_per_s\":%.4g,\"threads\":%d",
                 (long long)rows, (long long)shuffles[k], (double)rows / sec, threads);
        ember_bench_emit(o, "data", k ? "npy_loader_shuffled" : "npy_loader", "batches/s", (double)a.batches / sec,
                         "batches/s", params);
    }

    gen_arg g = {.n = o->tiny ? 20000 : 1000000};
    EMBER_TRY(ember_gen_create(&(ember_gen_params){.seed = 1}, &g.g));
    ember_status st = EMBER_OK;
    g.ids = malloc((size_t)g.n * EMBER_CRITEO_NUM_SPARSE * sizeof *g.ids);
    g.labels = malloc((size_t)g.n * sizeof *g.labels);
    g.ints = malloc((size_t)g.n * EMBER_CRITEO_NUM_DENSE * sizeof *g.ints);
    if (!g.ids || !g.labels || !g.ints) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench data: generator buffers");
    double sec = 0;
    if (st == EMBER_OK) st = ember_bench_time(o, gen_op, &g, &sec);
    if (st == EMBER_OK) {
        snprintf(params, sizeof params, "\"rows\":%lld,\"cardinalities\":\"kaggle\",\"threads\":%d", (long long)g.n, threads);
        ember_bench_emit(o, "data", "gen_rows", "rows/s", (double)g.n / sec, "rows/s", params);
    }
    free(g.ids);
    free(g.labels);
    free(g.ints);
    ember_gen_destroy(g.g);
    return st;
}
