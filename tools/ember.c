/*
 * ember: the command-line program. Each subcommand is a thin layer over libember;
 * whatever it does, a program embedding the library can do the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "ember/ember.h"
#include "ember/profiler.h"
#include "tools/cli.h"

static int cmd_bench(int argc, char **argv);
static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("ember %s\n", ember_version_string());
    return 0;
}

/* The subcommands. Each gets argv starting at its own name. */
static const struct {
    const char *name, *args, *what;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"version", "", "print the version", cmd_version},
    {"doctor", "[--quick] [--json]",
     "features, threads, measured memory bandwidth and GEMM speed, GPUs found", ember_cmd_doctor},
    {"bench", "SUITE [--quick] [--json] [--device cuda] [--profile FILE]", "run a benchmark suite (ember bench --list)", cmd_bench},
    {"convert", "TSV... -o PREFIX", "Criteo TSV (plain, gzip, stdin) to npy triplets", ember_cmd_convert},
    {"gen-data", "--rows N -o PATH", "synthetic Criteo (Zipf ids, known Bayes AUC) as TSV or npy", ember_cmd_gen_data},
    {"count", "INPUT... -o COUNTS", "per-(table, id) frequency counts and skew of training data", ember_cmd_count},
    {"plan", "INPUT... --world N", "sharding plans side by side: imbalance, memory, communication", ember_cmd_plan},
    {"train", "[--config FILE] [--KEY VALUE]", "train a DLRM (default: synthetic Criteo-like data) and report AUC",
     ember_cmd_train},
    {"eval", "--checkpoint DIR [--data PATH]", "AUC, logloss, accuracy of a trained checkpoint", ember_cmd_eval},
    {"predict", "--checkpoint DIR --data PATH", "click probabilities of every row, one per line", ember_cmd_predict},
    {"plot", "METRICS.jsonl [-o PNG]", "loss, AUC, samples/s, cache hit rate vs step as a PNG (gnuplot)", ember_cmd_plot},
    {"graph-info", "[--dims 512-256-128] ...", "shapes, FLOPs and planned memory of a model's graph (meta mode)",
     ember_cmd_graph_info},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ember [--threads N] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %-24s %s\n", commands[i].name, commands[i].args, commands[i].what);
    fprintf(f, "  %-8s %-24s %s\n", "help", "", "this text");
    fprintf(f,
            "\n"
            "options:\n"
            "  --threads N                  CPU threads for kernels (default: all cores or $OMP_NUM_THREADS)\n"
            "\n"
            "environment: EMBER_LOG=debug|info|warn|error sets the log level (default warn).\n");
}

static int cmd_bench(int argc, char **argv) {
    ember_bench_opts o = {0};
    const char *suite = NULL, *profile = NULL;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) o.quick = 1;
        else if (strcmp(argv[i], "--json") == 0) o.json = 1;
        else if (strcmp(argv[i], "--tiny") == 0) o.tiny = o.quick = 1;
        else if (strcmp(argv[i], "--list") == 0) list = 1;
        else if (strcmp(argv[i], "--profile") == 0 && i + 1 < argc) profile = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            const char *d = argv[++i];
            if (strcmp(d, "cuda") == 0 || strcmp(d, "cuda:0") == 0) o.cuda = 1;
            else if (strcmp(d, "cpu") != 0) {
                fprintf(stderr, "ember bench: --device takes cpu or cuda, not '%s'\n", d);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--ranks") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1024) {
                fprintf(stderr, "ember bench: --ranks takes a count from 1 to 1024, not '%s'\n", argv[i]);
                return 2;
            }
            o.ranks = (int)n;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "ember bench: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!suite) suite = argv[i];
        else {
            fprintf(stderr, "ember bench: more than one suite given ('%s', '%s')\n", suite, argv[i]);
            return 2;
        }
    }
    if (list || !suite) {
        FILE *f = list ? stdout : stderr;
        if (!list) fprintf(f, "ember bench: which suite? usage: ember bench SUITE [--quick] [--json]\n");
        for (const ember_bench_suite *s = ember_bench_suites; s->name; s++)
            fprintf(f, "  %-10s %s\n", s->name, s->what);
        return list ? 0 : 2;
    }
    if (o.ranks && strcmp(suite, "dlrm") != 0) {
        fprintf(stderr, "ember bench: --ranks is an option of the dlrm suite only\n");
        return 2;
    }
    if (o.cuda && strcmp(suite, "cache") != 0 && strcmp(suite, "offload") != 0) {
        fprintf(stderr, "ember bench: --device cuda is an option of the cache and offload suites (the embedding "
                        "suite adds its GPU cases by itself when there is a GPU)\n");
        return 2;
    }
    if (o.cuda && ember_cuda_device_count() == 0) {
        ember_features f;
        ember_get_features(&f);
        fprintf(stderr, "ember bench %s: --device cuda, but no CUDA device is visible%s\n", suite,
                f.cuda ? "" : " (this build has no CUDA)");
        return 1;
    }
    for (const ember_bench_suite *s = ember_bench_suites; s->name; s++) {
        if (strcmp(s->name, suite) != 0) continue;
        if (!o.json) printf("%-8s %-28s %-14s %12s %s\n", "suite", "case", "metric", "value", "unit");
        /* --profile FILE: the whole suite under the profiler (device work synchronised at
           each scope, so times are attributable but the figures are not the suite's own):
           a Chrome trace in FILE, the summary table in FILE.txt */
        ember_status st = profile ? ember_profiler_start(&(ember_profiler_config){.sync_device = 1,
                                                                                 .probes = EMBER_PROFILER_PROBE_MEMCPY})
                                  : EMBER_OK;
        if (st == EMBER_OK) st = s->run(&o);
        if (profile) {
            ember_status ps = ember_profiler_stop();
            char txt[4096];
            snprintf(txt, sizeof txt, "%s.txt", profile);
            if (ps == EMBER_OK) ps = ember_profiler_write_trace(profile);
            if (ps == EMBER_OK) ps = ember_profiler_write_summary(txt);
            if (st == EMBER_OK) st = ps;
        }
        if (st != EMBER_OK) {
            fprintf(stderr, "ember bench %s: %s\n", suite, ember_last_error());
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "ember bench: no suite named '%s' (ember bench --list)\n", suite);
    return 2;
}

int main(int argc, char **argv) {
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("ember %s\n", ember_version_string());
            return 0;
        }
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[i + 1], &end, 10);
            if (*end || n < 1 || n > 4096) {
                fprintf(stderr, "ember: --threads takes a count from 1 to 4096, not '%s'\n", argv[i + 1]);
                return 2;
            }
            ember_set_num_threads((int)n);
            i += 2;
            continue;
        }
        fprintf(stderr, "ember: unknown option '%s'\n\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(cmd, commands[k].name) == 0) return commands[k].run(sub_argc, sub_argv);
    fprintf(stderr, "ember: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
