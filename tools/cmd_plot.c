/*
 * ember plot: draw the JSON lines of `ember train --metrics FILE` as one PNG, four
 * panels against step: loss, AUC, throughput (samples/s) and cache hit rate.
 *
 * ember does not draw: gnuplot does. The metrics are parsed here with the engine's
 * strict JSON parser (a malformed line is an error naming file and line, so a broken
 * writer is noticed rather than half plotted), then written as inline data blocks
 * into a gnuplot script in a temporary file. The script runs from a file rather than
 * from a pipe because gnuplot reading stdin carries on past an error, while a script
 * file stops at the first one. gnuplot draws into a temporary name beside the output,
 * renamed when it succeeds, so a failed run never leaves a half-written PNG.
 *
 * stdout carries only the path written; everything else goes to stderr.
 */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/json.h"
#include "ember/ember.h"
#include "tools/cli.h"

extern char **environ;

/* The panels, in the order drawn (left to right, top to bottom). */
enum { P_LOSS, P_AUC, P_RATE, P_HIT, P_COUNT };
static const struct {
    const char *key, *title, *ylabel, *style;
} panels[P_COUNT] = {
    {"loss", "training loss", "BCE", "lines"},
    {"auc", "AUC", "AUC", "linespoints pt 7 ps 1"},
    {"samples_per_s", "throughput", "samples/s", "lines"},
    {"hit_rate", "cache hit rate", "% of lookups", "lines"},
};

typedef struct series {
    double *x, *y; /* (n) step, value */
    size_t n, cap;
} series;

static int series_push(series *s, double x, double y) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return -1;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x, s->y[s->n] = y, s->n++;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: ember plot METRICS.jsonl [-o OUT.png] [--title T]\n"
               "  draws loss, AUC, samples/s and cache hit rate against step (JSON lines of\n"
               "  `ember train --metrics FILE`) as a 2x2 PNG with gnuplot; default OUT: METRICS.png\n");
}

/* The whole file, NUL-terminated; NULL with errno set on failure. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f)) {
            free(buf);
            buf = NULL;
            errno = EIO;
            break;
        }
        if (feof(f)) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    fclose(f);
    if (buf) buf[n] = '\0', *len = n;
    return buf;
}

/* Value of a metric member: 1 and *out set, 0 when absent or null, -1 when not a number. */
static int metric_value(const ember__json *obj, const char *key, double *out) {
    const ember__json *v = ember__json_get(obj, key);
    if (!v || ember__json_type_of(v) == EMBER__JSON_NULL) return 0;
    if (ember__json_type_of(v) != EMBER__JSON_NUMBER) return -1;
    *out = strtod(ember__json_string(v, NULL), NULL);
    return isfinite(*out) ? 1 : -1;
}

/*
 * Parse the metrics file into one series per panel. Blank lines are allowed; every
 * other line must be a JSON object with a numeric "step". A last line without its
 * newline that does not parse is a run still writing: it is left out, with a warning.
 */
static int parse_metrics(const char *path, series *s, double *xmin, double *xmax) {
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) {
        fprintf(stderr, "ember plot: EMBER_ERR_IO: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = 0;
    size_t lines = 0, records = 0;
    *xmin = INFINITY, *xmax = -INFINITY;
    for (char *p = buf, *end = buf + len; p < end && rc == 0;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        size_t n = (size_t)(stop - p);
        lines++;
        if (n && p[n - 1] == '\r') n--;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t')) k++;
        if (k < n) {
            ember__json_doc *doc = NULL;
            ember__json_error err = {0};
            ember_status st = ember__json_parse(p, n, &doc, &err);
            if (st == EMBER_ERR_PARSE && !nl) {
                fprintf(stderr, "ember plot: warning: %s line %zu has no newline and does not parse (still being "
                                "written?): left out\n", path, lines);
            } else if (st != EMBER_OK) {
                fprintf(stderr, "ember plot: %s: %s line %zu column %zu: %s\n", ember_status_name(st), path, lines,
                        err.offset + 1, st == EMBER_ERR_PARSE ? err.reason : "out of memory");
                rc = 1;
            } else {
                const ember__json *root = ember__json_root(doc);
                double step = 0, v;
                if (ember__json_type_of(root) != EMBER__JSON_OBJECT) {
                    fprintf(stderr, "ember plot: EMBER_ERR_PARSE: %s line %zu: a JSON %s, not an object\n", path,
                            lines, ember__json_type_name(ember__json_type_of(root)));
                    rc = 1;
                } else if (metric_value(root, "step", &step) != 1) {
                    fprintf(stderr, "ember plot: EMBER_ERR_PARSE: %s line %zu: no numeric \"step\"\n", path, lines);
                    rc = 1;
                }
                for (int i = 0; i < P_COUNT && rc == 0; i++) {
                    int got = metric_value(root, panels[i].key, &v);
                    if (got < 0) {
                        const ember__json *bad = ember__json_get(root, panels[i].key);
                        ember__json_type t = ember__json_type_of(bad);
                        fprintf(stderr,
                                "ember plot: EMBER_ERR_PARSE: %s line %zu: \"%s\" must be a finite number, not %s\n",
                                path, lines, panels[i].key,
                                t == EMBER__JSON_NUMBER ? ember__json_string(bad, NULL) : ember__json_type_name(t));
                        rc = 1;
                    } else if (got && series_push(&s[i], step, v) != 0) {
                        fprintf(stderr, "ember plot: EMBER_ERR_OUT_OF_MEMORY: %s line %zu\n", path, lines);
                        rc = 1;
                    }
                }
                if (rc == 0) {
                    records++;
                    if (step < *xmin) *xmin = step;
                    if (step > *xmax) *xmax = step;
                }
            }
            ember__json_free(doc);
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
    if (rc == 0 && records == 0) {
        fprintf(stderr, "ember plot: EMBER_ERR_PARSE: %s holds no metrics lines\n", path);
        rc = 1;
    }
    return rc;
}

/* s inside gnuplot single quotes, where the only escape is '' for '. */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n' && *s != '\r') fputc(*s, f);
    }
    fputc('\'', f);
}

/* Largest value of a series. */
static double series_max(const series *s) {
    double m = -INFINITY;
    for (size_t k = 0; k < s->n; k++)
        if (s->y[k] > m) m = s->y[k];
    return m;
}

/* Range of a panel's y axis (values already scaled): 5% to spare, throughput from 0
   (so its dips look no larger than they are); never empty (gnuplot warns on one). */
static void value_range(const series *s, int i, double scale, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t k = 0; k < s->n; k++) {
        double y = s->y[k] * scale;
        if (y < *lo) *lo = y;
        if (y > *hi) *hi = y;
    }
    double pad = *hi - *lo > 1e-12 * fabs(*hi) ? 0.05 * (*hi - *lo) : *hi != 0 ? 0.05 * fabs(*hi) : 1.0;
    *lo = i == P_RATE && *lo >= 0 ? 0 : *lo - pad;
    *hi += pad;
}

static void write_script(FILE *f, const series *s, double xmin, double xmax, const char *out, const char *title) {
    if (xmax <= xmin) xmin -= 1, xmax += 1;
    fprintf(f, "if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {\n"
               "  set terminal pngcairo size 1400,1000 noenhanced font ',11'\n"
               "} else {\n"
               "  set terminal png size 1400,1000 noenhanced\n"
               "}\n"
               "set output ");
    put_quoted(f, out);
    fprintf(f, "\n");
    for (int i = 0; i < P_COUNT; i++) {
        if (!s[i].n) continue;
        fprintf(f, "$%s << EOD\n", panels[i].key);
        for (size_t k = 0; k < s[i].n; k++) fprintf(f, "%.17g %.9g\n", s[i].x[k], s[i].y[k]);
        fprintf(f, "EOD\n");
    }
    fprintf(f, "set multiplot layout 2,2 title ");
    put_quoted(f, title);
    fprintf(f, "\nset grid\nset xrange [%.17g:%.17g]\n", xmin, xmax);
    for (int i = 0; i < P_COUNT; i++) {
        fprintf(f, "set title '%s'\n", panels[i].title);
        if (s[i].n) {
            /* Hit rate in percent; throughput in thousands or millions when large. */
            double scale = 1, lo, hi, top = series_max(&s[i]);
            const char *unit = "";
            if (i == P_HIT) scale = 100;
            if (i == P_RATE && top >= 1e6) scale = 1e-6, unit = "million ";
            else if (i == P_RATE && top >= 1e4) scale = 1e-3, unit = "thousand ";
            value_range(&s[i], i, scale, &lo, &hi);
            fprintf(f, "set border; set tics; set xlabel 'step'; set ylabel '%s%s'\n", unit, panels[i].ylabel);
            fprintf(f, "set yrange [%.9g:%.9g]\n", lo, hi);
            /* Evaluations are few (often one, at the end): the last one is labelled. */
            if (i == P_AUC)
                fprintf(f, "set label 2 '%.4f' at %.17g, %.9g right offset -1, 1\n", s[i].y[s[i].n - 1],
                        s[i].x[s[i].n - 1], s[i].y[s[i].n - 1]);
            fprintf(f, "plot $%s using 1:($2*%.17g) with %s lw 1.5 notitle\n", panels[i].key, scale,
                    panels[i].style);
            if (i == P_AUC) fprintf(f, "unset label 2\n");
        } else {
            /* An empty frame keeps the 2x2 layout the same for every run. */
            fprintf(f, "unset border; unset tics; unset xlabel; unset ylabel; set yrange [0:1]\n"
                       "set label 1 'no data' at graph 0.5, graph 0.5 center\n"
                       "plot 2 notitle\n"
                       "unset label 1\n");
        }
    }
    fprintf(f, "unset multiplot\nset output\n");
}

/* Full path of an executable name on $PATH into buf; 0 when not found. */
static int find_on_path(const char *name, char *buf, size_t n) {
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;; p++) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        struct stat sb;
        int w = dl ? snprintf(buf, n, "%.*s/%s", (int)dl, p, name) : snprintf(buf, n, "./%s", name);
        if (w > 0 && (size_t)w < n && stat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && access(buf, X_OK) == 0)
            return 1;
        if (!colon) return 0;
        p = colon;
    }
}

/* Run gnuplot on a script file, its stdout sent to our stderr. 0 when it succeeded. */
static int run_gnuplot(const char *exe, const char *script) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) return -1;
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    char *args[] = {"gnuplot", (char *)script, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, exe, &fa, NULL, args, environ), status = 0;
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) {
        fprintf(stderr, "ember plot: cannot run %s: %s\n", exe, strerror(err));
        return -1;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "ember plot: waiting for gnuplot: %s\n", strerror(errno));
            return -1;
        }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status)) fprintf(stderr, "ember plot: gnuplot failed (exit status %d)\n", WEXITSTATUS(status));
    else fprintf(stderr, "ember plot: gnuplot killed by signal %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return -1;
}

/*
 * Write the script to a temporary file and have gnuplot draw into a temporary name
 * beside out, renamed to out when it succeeded. 0 on success.
 */
static int draw(const char *exe, const series *s, double xmin, double xmax, const char *out, const char *title) {
    char script[4096], tmp_out[4096];
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
    if (snprintf(script, sizeof script, "%s/ember-plot-XXXXXX", tmpdir) >= (int)sizeof script ||
        snprintf(tmp_out, sizeof tmp_out, "%s.XXXXXX", out) >= (int)sizeof tmp_out) {
        fprintf(stderr, "ember plot: path too long: %s\n", out);
        return 1;
    }
    int out_fd = mkstemp(tmp_out);
    if (out_fd < 0) {
        fprintf(stderr, "ember plot: EMBER_ERR_IO: cannot write beside %s: %s\n", out, strerror(errno));
        return 1;
    }
    /* mkstemp makes the file 0600; the PNG gets the mode any new file would. */
    mode_t mask = umask(0);
    umask(mask);
    int rc = fchmod(out_fd, 0666 & ~mask) != 0;
    close(out_fd);
    int script_fd = rc ? -1 : mkstemp(script);
    FILE *f = script_fd >= 0 ? fdopen(script_fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "ember plot: EMBER_ERR_IO: cannot create %s: %s\n", rc ? tmp_out : script, strerror(errno));
        if (script_fd >= 0) close(script_fd), unlink(script);
        unlink(tmp_out);
        return 1;
    }
    write_script(f, s, xmin, xmax, tmp_out, title);
    int werr = ferror(f);
    if (fclose(f) != 0 || werr) {
        fprintf(stderr, "ember plot: EMBER_ERR_IO: cannot write %s\n", script);
        rc = 1;
    }
    if (rc == 0) rc = run_gnuplot(exe, script) != 0;
    if (rc == 0 && rename(tmp_out, out) != 0) {
        fprintf(stderr, "ember plot: EMBER_ERR_IO: cannot rename %s to %s: %s\n", tmp_out, out, strerror(errno));
        rc = 1;
    }
    if (rc != 0) unlink(tmp_out);
    unlink(script);
    return rc;
}

int ember_cmd_plot(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *title = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && i + 1 < argc) out = argv[++i];
        else if (strcmp(a, "--title") == 0 && i + 1 < argc) title = argv[++i];
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ember plot: unknown option '%s' (or missing value)\n", a);
            usage(stderr);
            return 2;
        } else if (!in) in = a;
        else {
            fprintf(stderr, "ember plot: one metrics file at a time ('%s', '%s')\n", in, a);
            return 2;
        }
    }
    if (!in) {
        usage(stderr);
        return 2;
    }

    /* Default output: the input's name with its extension replaced by .png. */
    char def_out[4096];
    if (!out) {
        const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
        const char *dot = strrchr(base, '.');
        int stem = (int)(dot && dot != base ? (size_t)(dot - in) : strlen(in));
        if (snprintf(def_out, sizeof def_out, "%.*s.png", stem, in) >= (int)sizeof def_out) {
            fprintf(stderr, "ember plot: path too long: %s\n", in);
            return 2;
        }
        out = def_out;
    }
    if (strcmp(out, in) == 0) {
        fprintf(stderr, "ember plot: the output %s would overwrite the input (use -o)\n", out);
        return 2;
    }
    if (!title) title = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;

    series s[P_COUNT] = {{0}};
    double xmin, xmax;
    int rc = parse_metrics(in, s, &xmin, &xmax);
    char exe[4096];
    if (rc == 0 && !find_on_path("gnuplot", exe, sizeof exe)) {
        fprintf(stderr, "ember plot: gnuplot not found on PATH; install it with: apt-get install gnuplot-nox\n");
        rc = 1;
    }

    if (rc == 0) rc = draw(exe, s, xmin, xmax, out, title);
    for (int i = 0; i < P_COUNT; i++) free(s[i].x), free(s[i].y);
    if (rc == 0) printf("%s\n", out);
    return rc;
}
