/*
 * ember convert / gen-data / count: the datasets module from the shell.
 *
 * Each command is a thin layer over include/ember/datasets.h. Results and the
 * counts of skipped lines go to stdout (always, even when zero: nothing is dropped
 * silently); the progress bar goes to stderr and only when stderr is a terminal.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"
#include "ember/ember.h"
#include "tools/cli.h"

/* ---- option helpers ---- */

static int parse_i64(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "ember %s: %s takes an integer from %lld to %lld, not '%s'\n", cmd, opt, (long long)lo,
                (long long)hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_f64(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "ember %s: %s takes a number from %g to %g, not '%s'\n", cmd, opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

/* Options every TSV-reading command shares. Returns 1 if argv[*i] was one (consuming
 * its value), 0 if not, -1 on a bad value. */
typedef struct tsv_opts {
    ember_criteo_params p;
    int64_t min_count;
    const char **vocab_from;
    int num_vocab_from;
} tsv_opts;

static int tsv_option(const char *cmd, int argc, char **argv, int *i, tsv_opts *o) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int64_t n;
    if (strcmp(a, "--label") == 0 || strcmp(a, "--on-error") == 0 || strcmp(a, "--dense") == 0 ||
        strcmp(a, "--hash-cap") == 0 || strcmp(a, "--min-count") == 0 || strcmp(a, "--vocab-from") == 0 ||
        strcmp(a, "--max-line") == 0 || strcmp(a, "--block-mb") == 0) {
        if (!v) {
            fprintf(stderr, "ember %s: %s needs a value\n", cmd, a);
            return -1;
        }
    } else {
        return 0;
    }
    (*i)++;
    if (strcmp(a, "--label") == 0) {
        if (strcmp(v, "auto") == 0) o->p.label = EMBER_CRITEO_LABEL_AUTO;
        else if (strcmp(v, "yes") == 0) o->p.label = EMBER_CRITEO_LABEL_PRESENT;
        else if (strcmp(v, "no") == 0) o->p.label = EMBER_CRITEO_LABEL_ABSENT;
        else {
            fprintf(stderr, "ember %s: --label takes auto, yes or no, not '%s'\n", cmd, v);
            return -1;
        }
    } else if (strcmp(a, "--on-error") == 0) {
        if (strcmp(v, "stop") == 0) o->p.on_error = EMBER_ON_ERROR_STOP;
        else if (strcmp(v, "skip") == 0) o->p.on_error = EMBER_ON_ERROR_SKIP;
        else {
            fprintf(stderr, "ember %s: --on-error takes skip or stop, not '%s'\n", cmd, v);
            return -1;
        }
    } else if (strcmp(a, "--dense") == 0) {
        if (strcmp(v, "log1p") == 0) o->p.dense = EMBER_DENSE_LOG1P;
        else if (strcmp(v, "raw") == 0) o->p.dense = EMBER_DENSE_RAW;
        else {
            fprintf(stderr, "ember %s: --dense takes log1p or raw, not '%s'\n", cmd, v);
            return -1;
        }
    } else if (strcmp(a, "--hash-cap") == 0) {
        if (!parse_i64(cmd, a, v, 0, UINT32_MAX, &n)) return -1;
        o->p.hash_cap = (uint32_t)n;
    } else if (strcmp(a, "--min-count") == 0) {
        if (!parse_i64(cmd, a, v, 1, UINT32_MAX, &o->min_count)) return -1;
    } else if (strcmp(a, "--vocab-from") == 0) {
        o->vocab_from = realloc(o->vocab_from, (size_t)(o->num_vocab_from + 1) * sizeof *o->vocab_from);
        o->vocab_from[o->num_vocab_from++] = v;
    } else if (strcmp(a, "--max-line") == 0) {
        if (!parse_i64(cmd, a, v, 64, 1 << 30, &n)) return -1;
        o->p.max_line_bytes = (size_t)n;
    } else if (strcmp(a, "--block-mb") == 0) {
        if (!parse_i64(cmd, a, v, 1, 16384, &n)) return -1;
        o->p.block_bytes = (size_t)n << 20;
    }
    return 1;
}

static const char *tsv_help =
    "  --label auto|yes|no     whether lines start with a label (default auto: 40 fields = yes)\n"
    "  --dense log1p|raw       dense transform (default log1p: log(1 + max(x, 0)))\n"
    "  --hash-cap N            categorical ids modulo N (MLPerf: 40000000; default raw 32-bit ids)\n"
    "  --min-count T           vocabulary: ids seen fewer than T times become 0 (a first pass)\n"
    "  --vocab-from FILE       count the vocabulary over FILE (repeatable; default the inputs);\n"
    "                          give the training days here when converting validation or test days\n"
    "  --on-error skip|stop    malformed lines: skip and count, or stop (default stop)\n"
    "  --max-line BYTES        longer lines are malformed (default 65536)\n"
    "  --block-mb MB           bytes read and parsed per chunk (default 16)\n";

/* Build the vocabulary when --min-count asks for one. */
static int tsv_vocab(const char *cmd, tsv_opts *o, const char *const *inputs, int ninputs, ember_criteo_vocab **v) {
    *v = NULL;
    if (!o->min_count) return 0;
    const char *const *from = o->num_vocab_from ? (const char *const *)o->vocab_from : inputs;
    int nfrom = o->num_vocab_from ? o->num_vocab_from : ninputs;
    for (int i = 0; i < nfrom; i++)
        if (strcmp(from[i], "-") == 0) {
            fprintf(stderr, "ember %s: --min-count needs two passes, so stdin cannot be counted; give files "
                            "with --vocab-from\n", cmd);
            return 2;
        }
    double t0 = ember__now();
    ember_status st = ember_criteo_vocab_build(
        &(ember_criteo_vocab_params){.paths = from, .num_paths = nfrom, .min_count = (uint32_t)o->min_count,
                                     .parse = &o->p},
        v);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember %s: building the vocabulary: %s\n", cmd, ember_last_error());
        return 1;
    }
    int64_t total = 0;
    for (int j = 0; j < EMBER_CRITEO_NUM_SPARSE; j++) total += ember_criteo_vocab_size(*v, j);
    printf("vocabulary: ids seen >= %lld times over %d file(s): %lld rows in 26 tables (%.1f s)\n",
           (long long)o->min_count, nfrom, (long long)total, ember__now() - t0);
    o->p.vocab = *v;
    return 0;
}

static void print_skipped(const ember_criteo_stats *s) {
    printf("skipped lines: %lld", (long long)s->bad_total);
    for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++)
        printf("%s%s %lld", k ? ", " : " (", ember_criteo_fault_name((ember_criteo_fault)k), (long long)s->bad[k]);
    printf(")\n");
    if (s->first_bad[0]) printf("first skipped: %s\n", s->first_bad);
}

/* ---- progress bar ---- */

typedef struct progress {
    int on;
    double t0, last;
    const char *what;
} progress;

static void fmt_bytes(char *buf, size_t n, double b) {
    if (b >= 1e9) snprintf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6) snprintf(buf, n, "%.1f MB", b / 1e6);
    else snprintf(buf, n, "%.0f kB", b / 1e3);
}

static void progress_cb(uint64_t done, uint64_t total, int64_t rows, void *user) {
    progress *p = user;
    if (!p->on) return;
    double now = ember__now();
    if (now - p->last < 0.2 && (total == 0 || done < total)) return;
    p->last = now;
    double el = now - p->t0;
    double rate = el > 0 ? (double)rows / el : 0;
    char d[32], t[32];
    fmt_bytes(d, sizeof d, (double)done);
    if (total > 0) {
        double frac = (double)done / (double)total;
        if (frac > 1) frac = 1;
        int w = 30, fill = (int)(frac * w);
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = '\0';
        double eta = frac > 0 ? el / frac - el : 0;
        fmt_bytes(t, sizeof t, (double)total);
        fprintf(stderr, "\r%s [%s] %5.1f%% %s/%s  %.2f M rows/s  ETA %d:%02d   ", p->what, bar, 100 * frac, d, t,
                rate / 1e6, (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "\r%s %s  %lld rows  %.2f M rows/s   ", p->what, d, (long long)rows, rate / 1e6);
    }
    fflush(stderr);
}

static void progress_end(progress *p) {
    if (p->on) fprintf(stderr, "\n");
}

/* ---- ember convert ---- */

static void convert_usage(FILE *f) {
    fprintf(f,
            "usage: ember convert [options] INPUT... -o PREFIX\n"
            "Criteo TSV files (plain, gzip or - for stdin) to one TorchRec triplet: PREFIX_dense.npy f32 (N, 13),\n"
            "PREFIX_sparse.npy i32 (N, 26), PREFIX_labels.npy i32 (N, 1).\n\n"
            "  -o, --out PREFIX        output prefix (required)\n"
            "%s"
            "  --quiet                 no progress bar\n",
            tsv_help);
}

int ember_cmd_convert(int argc, char **argv) {
    tsv_opts o = {0};
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int ninputs = 0, quiet = 0, rc = 0;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        int k = tsv_option("convert", argc, argv, &i, &o);
        if (k < 0) {
            rc = 2;
            goto done;
        }
        if (k) continue;
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--quiet") == 0) quiet = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            convert_usage(stdout);
            goto done;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "ember convert: unknown option '%s'\n", argv[i]);
            convert_usage(stderr);
            rc = 2;
            goto done;
        } else inputs[ninputs++] = argv[i];
    }
    if (!ninputs || !out) {
        fprintf(stderr, "ember convert: %s\n", !ninputs ? "no input files" : "no output prefix (-o PREFIX)");
        convert_usage(stderr);
        rc = 2;
        goto done;
    }
    ember_criteo_vocab *vocab = NULL;
    if ((rc = tsv_vocab("convert", &o, inputs, ninputs, &vocab)) != 0) goto done;
    progress pr = {.on = !quiet && isatty(STDERR_FILENO), .t0 = ember__now(), .what = "convert"};
    ember_criteo_stats s;
    double t0 = ember__now();
    ember_status st = ember_criteo_convert(&(ember_convert_params){.inputs = inputs, .num_inputs = ninputs, .out_prefix = out,
                                                                   .parse = &o.p, .progress = progress_cb, .progress_user = &pr},
                                           &s);
    progress_end(&pr);
    double el = ember__now() - t0;
    if (st == EMBER_OK) {
        char b[32];
        fmt_bytes(b, sizeof b, (double)s.bytes);
        printf("converted %lld rows from %d file(s) (%s%s) in %.2f s, %.2f M rows/s -> %s_{dense,sparse,labels}.npy\n",
               (long long)s.rows, ninputs, b, s.gzip ? " after gunzip" : "", el, el > 0 ? (double)s.rows / el / 1e6 : 0.0,
               out);
    } else {
        fprintf(stderr, "ember convert: %s\n", ember_last_error());
        if (st == EMBER_ERR_PARSE && o.p.on_error == EMBER_ON_ERROR_STOP)
            fprintf(stderr, "ember convert: stopped at the first malformed line; --on-error skip skips and counts them\n");
        rc = 1;
    }
    if (st == EMBER_OK || o.p.on_error == EMBER_ON_ERROR_SKIP) print_skipped(&s);
    ember_criteo_vocab_destroy(vocab);
done:
    free(inputs);
    free(o.vocab_from);
    return rc;
}

/* ---- ember gen-data ---- */

static void gen_usage(FILE *f) {
    fprintf(f,
            "usage: ember gen-data --rows N -o PATH [options]\n"
            "Synthetic Criteo: Kaggle cardinalities (or a scaled copy), Zipf-skewed ids, labels from a hidden\n"
            "logistic model whose Bayes-optimal AUC is printed. The same seed gives the same bytes.\n\n"
            "  --rows N                rows to write (required)\n"
            "  -o, --out PATH          TSV file, or triplet prefix with --format npy (required)\n"
            "  --format tsv|npy        Criteo TSV with label (default), or PATH_{dense,sparse,labels}.npy\n"
            "  --scale S               cardinalities times S (default 1: Kaggle's 33.8M ids)\n"
            "  --seed N                default 1\n"
            "  --hot-share F           share of lookups of each field's top 1%% of ids (default 0.90)\n"
            "  --zipf S                one Zipf exponent for every field instead\n"
            "  --signal X              logit scale of the hidden model (default 1)\n"
            "  --missing P             probability that an integer feature is missing (default 0.1)\n"
            "  --quiet                 no progress bar\n");
}

int ember_cmd_gen_data(int argc, char **argv) {
    int64_t rows = -1, seed = 1;
    double scale = 1, hot = 0, zipf = -1, signal = 0, missing = 0;
    const char *out = NULL;
    int quiet = 0, missing_set = 0;
    ember_gen_format fmt = EMBER_GEN_TSV;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            gen_usage(stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "ember gen-data: %s '%s'\n", a[0] == '-' ? "missing value for" : "unexpected argument", a);
            gen_usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--rows") == 0) ok = parse_i64("gen-data", a, v, 0, INT64_C(1) << 40, &rows);
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) out = v;
        else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "tsv") == 0) fmt = EMBER_GEN_TSV;
            else if (strcmp(v, "npy") == 0) fmt = EMBER_GEN_NPY;
            else {
                fprintf(stderr, "ember gen-data: --format takes tsv or npy, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--scale") == 0) ok = parse_f64("gen-data", a, v, 1e-9, 1000, &scale);
        else if (strcmp(a, "--seed") == 0) ok = parse_i64("gen-data", a, v, 0, INT64_MAX, &seed);
        else if (strcmp(a, "--hot-share") == 0) ok = parse_f64("gen-data", a, v, 0.011, 0.999, &hot);
        else if (strcmp(a, "--zipf") == 0) ok = parse_f64("gen-data", a, v, 0, 8, &zipf);
        else if (strcmp(a, "--signal") == 0) ok = parse_f64("gen-data", a, v, 1e-6, 100, &signal);
        else if (strcmp(a, "--missing") == 0) {
            ok = parse_f64("gen-data", a, v, 0, 0.99, &missing);
            missing_set = 1;
        } else {
            fprintf(stderr, "ember gen-data: unknown option '%s'\n", a);
            gen_usage(stderr);
            return 2;
        }
        if (!ok) return 2;
    }
    if (rows < 0 || !out) {
        fprintf(stderr, "ember gen-data: %s\n", rows < 0 ? "--rows N is required" : "-o PATH is required");
        gen_usage(stderr);
        return 2;
    }
    double zipfs[EMBER_CRITEO_NUM_SPARSE];
    for (int t = 0; t < EMBER_CRITEO_NUM_SPARSE; t++) zipfs[t] = zipf;
    ember_gen *g;
    ember_status st = ember_gen_create(&(ember_gen_params){.seed = (uint64_t)seed, .scale = scale, .hot_share = hot,
                                                           .zipf = zipf >= 0 ? zipfs : NULL, .signal = signal,
                                                           .missing = missing_set ? (missing > 0 ? missing : -1) : 0},
                                       &g);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember gen-data: %s\n", ember_last_error());
        return 2;
    }
    progress pr = {.on = !quiet && isatty(STDERR_FILENO), .t0 = ember__now(), .what = "gen-data"};
    double t0 = ember__now();
    st = ember_gen_write(g, &(ember_gen_write_params){.path = out, .format = fmt, .rows = rows, .progress = progress_cb,
                                                      .progress_user = &pr});
    progress_end(&pr);
    double el = ember__now() - t0;
    if (st != EMBER_OK) {
        fprintf(stderr, "ember gen-data: %s\n", ember_last_error());
        ember_gen_destroy(g);
        return 1;
    }
    printf("wrote %lld rows to %s%s in %.2f s (%.2f M rows/s), seed %lld\n", (long long)rows, out,
           fmt == EMBER_GEN_NPY ? "_{dense,sparse,labels}.npy" : "", el, el > 0 ? (double)rows / el / 1e6 : 0.0,
           (long long)seed);
    double auc;
    int64_t sample = rows < 1000000 ? (rows < 1000 ? 1000 : rows) : 1000000;
    if (ember_gen_bayes_auc(g, sample, &auc) == EMBER_OK)
        printf("Bayes-optimal AUC: %.4f (the hidden model's own probability, over %lld rows)\n", auc, (long long)sample);
    printf("%-5s %12s %8s %10s %10s\n", "field", "ids", "zipf s", "top 1%", "top 10%");
    for (int t = 0; t < EMBER_CRITEO_NUM_SPARSE; t++)
        printf("C%-4d %12lld %8.3f %9.1f%% %9.1f%%\n", t + 1, (long long)ember_gen_cardinality(g, t), ember_gen_zipf(g, t),
               100 * ember_gen_hot_share(g, t, 0.01), 100 * ember_gen_hot_share(g, t, 0.10));
    ember_gen_destroy(g);
    return 0;
}

/* ---- ember count ---- */

static void count_usage(FILE *f) {
    fprintf(f,
            "usage: ember count [options] INPUT... -o COUNTS\n"
            "Per (table, id) lookup counts over training files only (never validation or test days): exact under\n"
            "a memory cap, Space-Saving heavy hitters beyond it. INPUT is a Criteo TSV file or a triplet prefix.\n"
            "Writes a versioned binary file (ember_freq_load reads it) and prints each table's skew.\n\n"
            "  -o, --out COUNTS        output file (required)\n"
            "  --mem-mb MB             memory for exact counters over all tables (default 1024)\n"
            "  --heavy-hitters K       counters per table beyond the cap (default 65536)\n"
            "%s"
            "  --quiet                 no progress bar\n",
            tsv_help);
}

int ember_cmd_count(int argc, char **argv) {
    tsv_opts o = {0};
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int ninputs = 0, quiet = 0, rc = 0;
    int64_t mem_mb = 1024, hh = 65536;
    const char *out = NULL;
    ember_freq *f = NULL;
    ember_criteo_vocab *vocab = NULL;
    for (int i = 1; i < argc; i++) {
        int k = tsv_option("count", argc, argv, &i, &o);
        if (k < 0) {
            rc = 2;
            goto done;
        }
        if (k) continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) && v) out = argv[++i];
        else if (strcmp(a, "--mem-mb") == 0 && v) {
            if (!parse_i64("count", a, argv[++i], 1, INT64_C(1) << 24, &mem_mb)) {
                rc = 2;
                goto done;
            }
        } else if (strcmp(a, "--heavy-hitters") == 0 && v) {
            if (!parse_i64("count", a, argv[++i], 16, INT64_C(1) << 30, &hh)) {
                rc = 2;
                goto done;
            }
        } else if (strcmp(a, "--quiet") == 0) quiet = 1;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            count_usage(stdout);
            goto done;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ember count: unknown option or missing value '%s'\n", a);
            count_usage(stderr);
            rc = 2;
            goto done;
        } else inputs[ninputs++] = a;
    }
    if (!ninputs || !out) {
        fprintf(stderr, "ember count: %s\n", !ninputs ? "no input files" : "no output file (-o COUNTS)");
        count_usage(stderr);
        rc = 2;
        goto done;
    }
    if ((rc = tsv_vocab("count", &o, inputs, ninputs, &vocab)) != 0) goto done;
    ember_status st = ember_freq_create(&(ember_freq_params){.num_tables = EMBER_CRITEO_NUM_SPARSE,
                                                             .memory_cap = (size_t)mem_mb << 20, .heavy_hitters = hh},
                                        &f);
    progress pr = {.on = !quiet && isatty(STDERR_FILENO), .t0 = ember__now(), .what = "count"};
    ember_criteo_stats sum = {0};
    int64_t rows_total = 0;
    double t0 = ember__now();
    for (int i = 0; i < ninputs && st == EMBER_OK; i++) {
        char probe[1100];
        snprintf(probe, sizeof probe, "%s_dense.npy", inputs[i]);
        if (access(probe, R_OK) == 0) {
            ember_npy_triplet *t;
            st = ember_npy_triplet_open(inputs[i], &t);
            int64_t n = ember_npy_triplet_rows(t);
            for (int64_t r = 0; r < n && st == EMBER_OK; r += 1 << 20) {
                int64_t m = n - r < (1 << 20) ? n - r : (1 << 20);
                st = ember_freq_add_rows(f, ember_npy_triplet_sparse(t) + r * EMBER_CRITEO_NUM_SPARSE, m);
                rows_total += m;
                progress_cb(0, 0, rows_total, &pr);
            }
            ember_npy_triplet_close(t);
            continue;
        }
        ember_criteo_params p = o.p;
        p.path = inputs[i];
        ember_criteo_reader *r = NULL;
        st = ember_criteo_open(&p, &r);
        ember_criteo_rows rows;
        while (st == EMBER_OK && (st = ember_criteo_read(r, &rows)) == EMBER_OK && rows.n > 0) {
            st = ember_freq_add_rows(f, rows.sparse, rows.n);
            rows_total += rows.n;
            ember_criteo_stats cs;
            ember_criteo_get_stats(r, &cs);
            progress_cb(cs.raw_bytes, cs.file_bytes, rows_total, &pr);
        }
        if (r) {
            ember_criteo_stats cs;
            ember_criteo_get_stats(r, &cs);
            sum.lines += cs.lines;
            sum.bad_total += cs.bad_total;
            for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) sum.bad[k] += cs.bad[k];
            if (!sum.first_bad[0]) memcpy(sum.first_bad, cs.first_bad, sizeof sum.first_bad);
        }
        ember_criteo_close(r);
    }
    progress_end(&pr);
    if (st == EMBER_OK) st = ember_freq_save(f, out);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember count: %s\n", ember_last_error());
        if (o.p.on_error == EMBER_ON_ERROR_SKIP) print_skipped(&sum);
        rc = 1;
        goto done;
    }
    double el = ember__now() - t0;
    printf("counted %lld rows from %d input(s) in %.2f s (%.2f M rows/s) -> %s\n", (long long)rows_total, ninputs, el,
           el > 0 ? (double)rows_total / el / 1e6 : 0.0, out);
    print_skipped(&sum);
    printf("%-5s %12s %12s %6s %9s %9s %9s   (share of lookups taken by the top 0.1%%, 1%%, 10%% of ids)\n", "table",
           "lookups", "distinct", "exact", "top 0.1%", "top 1%", "top 10%");
    for (int t = 0; t < EMBER_CRITEO_NUM_SPARSE; t++) {
        ember_freq_table_stats ts;
        double fr[3] = {0.001, 0.01, 0.1}, sh[3] = {0};
        ember_freq_get_table_stats(f, t, &ts);
        ember_freq_skew(f, t, 3, fr, sh);
        printf("C%-4d %12llu %12llu %6s %8.1f%% %8.1f%% %8.1f%%\n", t + 1, (unsigned long long)ts.lookups,
               (unsigned long long)ts.distinct, ts.exact ? "yes" : "no", 100 * sh[0], 100 * sh[1], 100 * sh[2]);
    }
done:
    ember_freq_destroy(f);
    ember_criteo_vocab_destroy(vocab);
    free(inputs);
    free(o.vocab_from);
    return rc;
}
