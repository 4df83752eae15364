/*
 * ember train / eval / predict: thin command-line users of ember/train.h. Options are
 * the config keys (`--batch 4096` sets key `batch`), a config file comes first with
 * --config FILE, and later options override it. Progress goes to stderr (a bar on a
 * terminal), the report to stdout, per-step metrics to --metrics as JSON lines.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/ember.h"
#include "ember/train.h"
#include "tools/cli.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void log_msg(const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "ember: %s\n", msg);
}

static int progress(const ember_train_progress *p, void *user) {
    int tty = *(const int *)user;
    if (tty && (p->step % 5 == 0 || p->step == p->steps)) {
        int width = 30, done = p->steps ? (int)(width * p->step / p->steps) : 0;
        char bar[64], eta[32] = "?", hr[32] = "";
        for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
        bar[width] = '\0';
        if (!isnan(p->eta_s)) snprintf(eta, sizeof eta, "%.0fs", p->eta_s);
        if (!isnan(p->hit_rate)) snprintf(hr, sizeof hr, "  hit %.1f%%", 100 * p->hit_rate);
        fprintf(stderr, "\r[%s] step %lld/%lld  %.0f samples/s  loss %.4f%s  ETA %s   ", bar, (long long)p->step,
                (long long)p->steps, p->samples_per_s, p->loss, hr, eta);
    }
    return interrupted;
}

static void usage(FILE *f) {
    fprintf(f, "usage: ember train [--config FILE] [--KEY VALUE ...]\n"
               "Train a DLRM. With no options: the embedded job (synthetic Criteo-like data with a known\n"
               "Bayes-optimal AUC, generated once; one epoch on CPU with a 1.5%% embedding cache; a report).\n"
               "A config file holds `key = value` lines with the same keys (# comments); options given\n"
               "after --config override it. Keys [defaults]:\n");
    ember_train_config_help(f);
    fprintf(f, "  --quiet                  no progress output\n"
               "Ctrl-C stops after the current step, writing a checkpoint when checkpoint-dir is set.\n");
}

/* Apply --config FILE, then --key value pairs, in order. Returns 0, 1 (help) or 2. */
static int parse(int argc, char **argv, ember_train_config *cfg, int *quiet, const char *cmd) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ember %s: --config needs a file\n", cmd);
                return 2;
            }
            if (ember_train_config_load(cfg, argv[i + 1]) != EMBER_OK) {
                fprintf(stderr, "ember %s: %s\n", cmd, ember_last_error());
                return 2;
            }
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        if (strcmp(a, "--quiet") == 0) {
            *quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "ember %s: unexpected argument '%s' (options are --KEY VALUE)\n", cmd, a);
            return 2;
        }
        const char *key = a + 2, *val;
        char kbuf[128];
        const char *eq = strchr(key, '=');
        if (eq) { /* --key=value */
            snprintf(kbuf, sizeof kbuf, "%.*s", (int)(eq - key), key);
            key = kbuf;
            val = eq + 1;
        } else if (ember_train_config_is_flag(key) && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            val = "true";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "ember %s: --%s needs a value\n", cmd, key);
            return 2;
        }
        if (ember_train_config_set(cfg, key, val) != EMBER_OK) {
            fprintf(stderr, "ember %s: %s\n", cmd, ember_last_error());
            return 2;
        }
    }
    return 0;
}

int ember_cmd_train(int argc, char **argv) {
    ember_train_config cfg;
    ember_train_config_defaults(&cfg);
    int quiet = 0;
    int rc = parse(argc, argv, &cfg, &quiet, "train");
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc) return rc;
    if (ember_train_config_validate(&cfg) != EMBER_OK) {
        fprintf(stderr, "ember train: %s\n", ember_last_error());
        return 2;
    }
    ember_trainer *t = NULL;
    ember_status st = ember_trainer_create(&cfg, quiet ? NULL : log_msg, NULL, &t);
    /* under mpirun every rank trains; rank 0 alone shows progress and the report */
    int rank = ember_trainer_rank(t);
    int tty = !quiet && isatty(STDERR_FILENO) && rank == 0;
    if (st == EMBER_OK) {
        signal(SIGINT, on_sigint);
        st = ember_trainer_run(t, progress, &tty);
        signal(SIGINT, SIG_DFL);
        if (tty) fprintf(stderr, "\n");
    }
    if (st == EMBER_OK || st == EMBER_ERR_CANCELLED) {
        ember_status err = st;
        if (st == EMBER_ERR_CANCELLED) fprintf(stderr, "ember train: %s\n", ember_last_error());
        ember_train_report r;
        if (ember_trainer_report(t, &r) == EMBER_OK && rank == 0) {
            ember_train_report_print(&r, &cfg, stdout);
            if (ember_trainer_world(t) > 1) /* the plan built, which auto chose */
                printf("  ranks        %d (tables sharded %s, dense layers data parallel)\n", ember_trainer_world(t),
                       ember_plan_kind_name(ember_plan_get_kind(ember_dlrm_plan(ember_trainer_model(t)))));
        }
        st = err;
    } else {
        fprintf(stderr, "ember train: %s\n", ember_last_error());
    }
    ember_trainer_destroy(t);
    return st == EMBER_OK ? 0 : st == EMBER_ERR_CANCELLED ? 130 : 1;
}

/* ember eval / predict: the model of a checkpoint directory, rebuilt from its config. */
static int from_checkpoint(int argc, char **argv, int predict) {
    const char *cmd = predict ? "predict" : "eval";
    const char *dir = NULL, *data = NULL, *out = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: ember %s --checkpoint DIR %s [--threads N]\n", cmd,
                   predict ? "--data PATH [-o OUT]" : "[--data PATH]");
            printf(predict ? "Click probabilities of every row of PATH (Criteo TSV or npy prefix), one per line, to OUT "
                             "(default stdout).\n"
                           : "AUC, logloss and accuracy of the newest checkpoint in DIR on PATH (default: the held-out "
                             "rows of its training config).\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "ember %s: %s needs a value\n", cmd, a);
            return 2;
        }
        if (strcmp(a, "--checkpoint") == 0) dir = v;
        else if (strcmp(a, "--data") == 0) data = v;
        else if (strcmp(a, "--threads") == 0) threads = atoi(v);
        else if (predict && (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0)) out = v;
        else {
            fprintf(stderr, "ember %s: unknown option '%s'\n", cmd, a);
            return 2;
        }
    }
    if (!dir || (predict && !data)) {
        fprintf(stderr, "ember %s: --checkpoint DIR%s is required\n", cmd, predict ? " and --data PATH are" : "");
        return 2;
    }
    ember_train_config cfg;
    if (ember_train_checkpoint_config(dir, &cfg) != EMBER_OK) {
        fprintf(stderr, "ember %s: %s\n", cmd, ember_last_error());
        return 1;
    }
    cfg.resume = 1;
    cfg.metrics[0] = '\0';
    cfg.warmup[0] = '\0';
    if (threads > 0) cfg.threads = threads;
    ember_trainer *t = NULL;
    ember_status st = ember_trainer_create(&cfg, log_msg, NULL, &t);
    FILE *f = NULL;
    int rank = ember_trainer_rank(t); /* under mpirun: rank 0 writes */
    if (st == EMBER_OK && predict) {
        f = rank != 0 ? fopen("/dev/null", "w") : out ? fopen(out, "w") : stdout;
        int64_t rows = 0;
        if (!f) {
            fprintf(stderr, "ember predict: cannot write %s\n", out);
            st = EMBER_ERR_IO;
        } else {
            st = ember_trainer_predict(t, data, f, &rows);
            if (st == EMBER_OK && rank == 0) fprintf(stderr, "ember predict: %lld rows scored\n", (long long)rows);
        }
        if (f && f != stdout && fclose(f) != 0 && st == EMBER_OK) st = EMBER_ERR_IO;
    } else if (st == EMBER_OK) {
        ember_metrics m;
        st = ember_trainer_evaluate(t, data, &m);
        if (st == EMBER_OK && rank == 0)
            printf("ember eval: %lld rows: AUC %.4f, logloss %.4f, accuracy %.4f, positive rate %.4f\n",
                   (long long)m.samples, m.auc, m.logloss, m.accuracy, m.positive_rate);
    }
    if (st != EMBER_OK && st != EMBER_ERR_IO) fprintf(stderr, "ember %s: %s\n", cmd, ember_last_error());
    ember_trainer_destroy(t);
    return st == EMBER_OK ? 0 : 1;
}

int ember_cmd_eval(int argc, char **argv) { return from_checkpoint(argc, argv, 0); }
int ember_cmd_predict(int argc, char **argv) { return from_checkpoint(argc, argv, 1); }
