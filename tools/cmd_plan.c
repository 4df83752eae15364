/*
 * ember plan: sharding plans for the 26 Criteo tables, side by side.
 *
 * Counts come from the data (Criteo TSV files or npy triplet prefixes, counted here
 * with ember_freq) or from a counts file of `ember count -o FILE`. Every plan kind is
 * built with the same tables and budgets (budgets are reported, not enforced, so a
 * plan that does not fit still shows how far off it is) and printed as one column:
 * imbalance (max / mean lookups per device), memory and predicted bytes moved per step.
 * A thin layer over include/ember/partition.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/ember.h"
#include "ember/partition.h"
#include "engine/internal.h"
#include "tools/cli.h"

#define NT EMBER_CRITEO_NUM_SPARSE

static void plan_usage(FILE *f) {
    fprintf(f,
            "usage: ember plan [options] INPUT...      (or --counts FILE, or --load PLAN)\n"
            "Sharding plans of the 26 Criteo embedding tables over --world devices: table-wise, row-wise (id\n"
            "ranges), column-wise and frequency-aware minimax, side by side. INPUT: Criteo TSV files or npy triplet\n"
            "prefixes (training days only), counted here.\n\n"
            "  --counts FILE           lookup counts from `ember count -o FILE` instead of INPUTs\n"
            "  --world N               devices (default 8)\n"
            "  --device-mem SIZE       memory per device for the tables: 2GiB, 512MiB, 16G, 3e9 (default unlimited)\n"
            "  --dim D                 embedding dim (default 128)\n"
            "  --optim NAME            sgd, adagrad, rowwise-adagrad (default), adam, adamw: optimizer state per row\n"
            "  --rows kaggle|auto|N,N,...  table rows (default auto: the largest counted id + 1, or --hash-cap)\n"
            "  --hash-cap N            TSV ids modulo N (default: a vocabulary of the ids seen, numbered 1..K)\n"
            "  --block-rows N          minimax: rows placed as one block (default 1)\n"
            "  --batch N               samples per device per step, for the communication model (default 2048)\n"
            "  --plans LIST            comma-separated kinds (default tablewise,rowwise,columnwise,minimax)\n"
            "  --no-replicate          minimax: never replicate hot rows\n"
            "  --target X              minimax: grow the hot head until max/mean <= X (default 1.01)\n"
            "  --save FILE             write the minimax plan (else the first plan) for a checkpoint\n"
            "  --load FILE             print a saved plan and exit\n"
            "  --devices               per-device tables (default when --world <= 16)\n"
            "  --json                  one JSON object per plan instead of tables\n"
            "  --mem-mb MB             memory for exact counters (default 1024)\n");
}

/* "2GiB", "512MiB", "16G" (binary), "3GB" (decimal), "3e9". */
static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return 0;
    double mul = 1;
    if (*end) {
        const char *u = "KMGTP";
        const char *k = strchr(u, end[0] >= 'a' ? end[0] - 32 : end[0]);
        if (!k || !end[0]) return 0;
        int binary = 1;
        if (strcmp(end + 1, "") == 0 || strcmp(end + 1, "iB") == 0 || strcmp(end + 1, "i") == 0) binary = 1;
        else if (strcmp(end + 1, "B") == 0) binary = 0;
        else return 0;
        for (const char *q = u; q <= k; q++) mul *= binary ? 1024.0 : 1000.0;
    }
    v *= mul;
    if (v >= 1.8e19) return 0;
    *out = (size_t)v;
    return 1;
}

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "ember plan: %s takes an integer from %lld to %lld, not '%s'\n", opt, (long long)lo,
                (long long)hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static void fmt_bytes(char *buf, size_t n, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int k = 0;
    while (b >= 1024 && k < 5) {
        b /= 1024;
        k++;
    }
    snprintf(buf, n, k ? "%.2f %s" : "%.0f %s", b, u[k]);
}

/* Count the inputs into f (26 tables): npy triplets directly, TSV through the reader. */
static ember_status count_inputs(const char *const *inputs, int n, const ember_criteo_params *tsv, ember_freq *f,
                                 int64_t *rows) {
    *rows = 0;
    for (int i = 0; i < n; i++) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s_dense.npy", inputs[i]);
        if (access(probe, R_OK) == 0) {
            ember_npy_triplet *t;
            EMBER_TRY(ember_npy_triplet_open(inputs[i], &t));
            ember_status st = ember_freq_add_rows(f, ember_npy_triplet_sparse(t), ember_npy_triplet_rows(t));
            *rows += ember_npy_triplet_rows(t);
            ember_npy_triplet_close(t);
            EMBER_TRY(st);
            continue;
        }
        ember_criteo_params p = *tsv;
        p.path = inputs[i];
        ember_criteo_reader *r = NULL;
        EMBER_TRY(ember_criteo_open(&p, &r));
        ember_criteo_rows cr;
        ember_status st;
        while ((st = ember_criteo_read(r, &cr)) == EMBER_OK && cr.n > 0) {
            if ((st = ember_freq_add_rows(f, cr.sparse, cr.n)) != EMBER_OK) break;
            *rows += cr.n;
        }
        ember_criteo_close(r);
        EMBER_TRY(st);
    }
    return EMBER_OK;
}

static int print_saved(const char *path, int64_t batch) {
    ember_plan *p = NULL;
    if (ember_plan_load(path, NULL, &p) != EMBER_OK) {
        fprintf(stderr, "ember plan: %s\n", ember_last_error());
        return 1;
    }
    ember_status st = ember_plan_write_text(p, batch, stdout);
    ember_plan_destroy(p);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember plan: %s\n", ember_last_error());
        return 1;
    }
    return 0;
}

/* s as the inside of a JSON string (quotes, backslashes and control bytes escaped). */
static void json_str(char *out, size_t n, const char *s) {
    size_t k = 0;
    for (; *s && k + 7 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[k++] = '\\';
            out[k++] = (char)ch;
        } else if (ch < 0x20) {
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", ch);
        } else {
            out[k++] = (char)ch;
        }
    }
    out[k] = '\0';
}

static void print_json(const ember_plan_stats *s, const ember_plan_device_stats *ds, const char *source, int64_t dim,
                       size_t mem, int64_t batch, double build_s) {
    char src[1024];
    json_str(src, sizeof src, source);
    printf("{\"plan\":\"%s\",\"source\":\"%s\",\"world\":%d,\"dim\":%lld,\"device_mem\":%zu,\"batch\":%lld,"
           "\"fits\":%s,\"over_budget\":%d,\"imbalance\":%.6f,\"max_lookups\":%.6g,\"mean_lookups\":%.6g,"
           "\"max_bytes\":%lld,\"mean_bytes\":%.6g,\"max_comm_bytes\":%.6g,\"mean_comm_bytes\":%.6g,"
           "\"hot_blocks\":%lld,\"replicated_blocks\":%lld,\"hole_rows\":%lld,\"map_bytes\":%zu,\"build_seconds\":%.4f,"
           "\"devices\":[",
           ember_plan_kind_name(s->kind), src, s->world, (long long)dim, mem, (long long)batch,
           s->fits ? "true" : "false", s->over_budget, s->imbalance, s->max_lookups, s->mean_lookups,
           (long long)s->max_bytes, (double)s->total_bytes / s->world, s->max_comm_bytes, s->mean_comm_bytes,
           (long long)s->hot_blocks, (long long)s->replicated_blocks, (long long)s->hole_rows, s->map_bytes, build_s);
    for (int d = 0; d < s->world; d++)
        printf("%s{\"rank\":%d,\"lookups\":%.6g,\"rows\":%lld,\"bytes\":%lld,\"comm_bytes\":%.6g}", d ? "," : "", d,
               ds[d].lookups, (long long)ds[d].rows, (long long)ds[d].bytes, ds[d].comm_bytes);
    printf("]}\n");
}

int ember_cmd_plan(int argc, char **argv) {
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int ninputs = 0, rc = 0, json = 0, devices = -1, no_rep = 0;
    int64_t world = 8, dim = 128, block_rows = 1, batch = 2048, hash_cap = 0, mem_mb = 1024;
    size_t mem = 0;
    double target = 0;
    const char *counts = NULL, *save = NULL, *load = NULL, *rows_spec = "auto", *plans = NULL;
    static const char *optim_names[] = {"sgd", "adagrad", "rowwise-adagrad", "adam", "adamw"};
    ember_sparse_optim optim = EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD;
    ember_freq *f = NULL;
    ember_criteo_vocab *vocab = NULL;
    ember_plan *plan[EMBER_PLAN_KIND_COUNT] = {0};
    ember_plan_device_stats *ds[EMBER_PLAN_KIND_COUNT] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, takes = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            plan_usage(stdout);
            goto done;
        } else if (strcmp(a, "--json") == 0) json = 1, takes = 0;
        else if (strcmp(a, "--devices") == 0) devices = 1, takes = 0;
        else if (strcmp(a, "--no-replicate") == 0) no_rep = 1, takes = 0;
        else if (a[0] == '-' && a[1] && !v) {
            fprintf(stderr, "ember plan: %s needs a value (or is unknown)\n", a);
            rc = 2;
            goto done;
        } else if (strcmp(a, "--counts") == 0) counts = v;
        else if (strcmp(a, "--save") == 0) save = v;
        else if (strcmp(a, "--load") == 0) load = v;
        else if (strcmp(a, "--rows") == 0) rows_spec = v;
        else if (strcmp(a, "--plans") == 0) plans = v;
        else if (strcmp(a, "--world") == 0) ok = parse_i64(a, v, 1, EMBER_PLAN_MAX_WORLD, &world);
        else if (strcmp(a, "--dim") == 0) ok = parse_i64(a, v, 1, 1 << 20, &dim);
        else if (strcmp(a, "--block-rows") == 0) ok = parse_i64(a, v, 1, 1 << 20, &block_rows);
        else if (strcmp(a, "--batch") == 0) ok = parse_i64(a, v, 1, INT64_C(1) << 40, &batch);
        else if (strcmp(a, "--hash-cap") == 0) ok = parse_i64(a, v, 1, UINT32_MAX, &hash_cap);
        else if (strcmp(a, "--mem-mb") == 0) ok = parse_i64(a, v, 1, INT64_C(1) << 24, &mem_mb);
        else if (strcmp(a, "--device-mem") == 0) {
            if (!parse_size(v, &mem)) {
                fprintf(stderr, "ember plan: --device-mem takes a size such as 2GiB, 512MiB or 3e9, not '%s'\n", v);
                ok = 0;
            }
        } else if (strcmp(a, "--target") == 0) {
            char *end;
            target = strtod(v, &end);
            if (*end || !(target >= 1 && target < 100)) {
                fprintf(stderr, "ember plan: --target takes a ratio >= 1, not '%s'\n", v);
                ok = 0;
            }
        } else if (strcmp(a, "--optim") == 0) {
            int k = 0;
            while (k < 5 && strcmp(v, optim_names[k]) != 0) k++;
            if (k == 5) {
                fprintf(stderr, "ember plan: --optim takes sgd, adagrad, rowwise-adagrad, adam or adamw, not '%s'\n", v);
                ok = 0;
            }
            optim = (ember_sparse_optim)k;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ember plan: unknown option '%s'\n", a);
            plan_usage(stderr);
            rc = 2;
            goto done;
        } else {
            inputs[ninputs++] = a;
            takes = 0;
        }
        if (!ok) {
            rc = 2;
            goto done;
        }
        i += takes;
    }
    if (load) {
        rc = print_saved(load, batch);
        goto done;
    }
    if (!ninputs == !counts) {
        fprintf(stderr, "ember plan: %s\n", ninputs ? "give INPUT files or --counts FILE, not both"
                                                    : "no input: give Criteo TSV files, triplet prefixes or --counts FILE");
        plan_usage(stderr);
        rc = 2;
        goto done;
    }
    int want[EMBER_PLAN_KIND_COUNT] = {0}, nwant = 0;
    if (!plans) {
        for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++) want[k] = 1;
        nwant = EMBER_PLAN_KIND_COUNT;
    } else {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", plans);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            ember_plan_kind k;
            if (ember_plan_kind_parse(tok, &k) != EMBER_OK) {
                fprintf(stderr, "ember plan: --plans: '%s' is not tablewise, rowwise, columnwise or minimax\n", tok);
                rc = 2;
                goto done;
            }
            nwant += !want[k];
            want[k] = 1;
        }
    }

    /* counts */
    ember_status st;
    int64_t counted_rows = 0;
    double t0 = ember__now();
    if (counts) {
        st = ember_freq_load(counts, NULL, &f);
        if (st == EMBER_OK && ember_freq_num_tables(f) != NT)
            st = ember__error(EMBER_ERR_SHAPE, "%s holds %d tables, Criteo has 26", counts, ember_freq_num_tables(f));
    } else {
        ember_criteo_params tsv = {.hash_cap = (uint32_t)hash_cap};
        int stdin_used = 0;
        for (int i = 0; i < ninputs; i++) stdin_used |= strcmp(inputs[i], "-") == 0;
        st = EMBER_OK;
        int any_tsv = 0;
        for (int i = 0; i < ninputs; i++) {
            char probe[4200];
            snprintf(probe, sizeof probe, "%s_dense.npy", inputs[i]);
            any_tsv |= access(probe, R_OK) != 0;
        }
        if (!hash_cap && any_tsv && !stdin_used) {
            /* raw 32-bit ids would make 2^32-row tables: number the ids seen instead */
            st = ember_criteo_vocab_build(&(ember_criteo_vocab_params){.paths = inputs, .num_paths = ninputs,
                                                                       .min_count = 1},
                                          &vocab);
            tsv.vocab = vocab;
        }
        if (st == EMBER_OK)
            st = ember_freq_create(&(ember_freq_params){.num_tables = NT, .memory_cap = (size_t)mem_mb << 20}, &f);
        if (st == EMBER_OK) st = count_inputs(inputs, ninputs, &tsv, f, &counted_rows);
    }
    if (st != EMBER_OK) {
        fprintf(stderr, "ember plan: %s\n", ember_last_error());
        rc = 1;
        goto done;
    }
    double count_s = ember__now() - t0;

    /* tables */
    ember_plan_table tabs[NT];
    ember_ebc_table_info info;
    st = ember_ebc_record_layout(&(ember_ebc_table_config){.rows = 1, .dim = (int)dim},
                                 &(ember_sparse_optim_config){.type = optim}, 0, &info);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember plan: %s\n", ember_last_error());
        rc = 1;
        goto done;
    }
    int64_t rows[NT];
    if (strcmp(rows_spec, "kaggle") == 0) {
        for (int t = 0; t < NT; t++) rows[t] = ember_criteo_kaggle_cardinalities[t];
    } else if (strcmp(rows_spec, "auto") == 0) {
        for (int t = 0; t < NT; t++) {
            if (vocab) {
                rows[t] = ember_criteo_vocab_size(vocab, t);
            } else if (hash_cap) {
                rows[t] = hash_cap;
            } else {
                ember_freq_table_stats fs;
                ember_freq_get_table_stats(f, t, &fs);
                ember_freq_entry *e = malloc((size_t)(fs.entries ? fs.entries : 1) * sizeof *e);
                int64_t n = 0, mx = 0;
                if (e && ember_freq_top(f, t, fs.entries, e, &n) == EMBER_OK)
                    for (int64_t k = 0; k < n; k++) mx = e[k].id > mx ? e[k].id : mx;
                free(e);
                rows[t] = mx + 1;
            }
        }
    } else {
        const char *s = rows_spec;
        for (int t = 0; t < NT; t++) {
            char *end;
            errno = 0;
            long long v = strtoll(s, &end, 10);
            if (errno || end == s || v < 1 || (*end != ',' && *end != '\0') || (t < NT - 1 && *end != ',') ||
                (t == NT - 1 && *end)) {
                fprintf(stderr, "ember plan: --rows takes kaggle, auto or 26 comma-separated counts, not '%s'\n",
                        rows_spec);
                rc = 2;
                goto done;
            }
            rows[t] = v;
            s = end + 1;
        }
    }
    static char names[NT][8];
    for (int t = 0; t < NT; t++) {
        snprintf(names[t], sizeof names[t], "C%d", t + 1);
        tabs[t] = (ember_plan_table){.name = names[t], .rows = rows[t], .dim = (int)dim,
                                     .row_bytes = (int64_t)info.record_bytes};
    }
    int64_t total_rows = 0;
    uint64_t lookups = 0;
    for (int t = 0; t < NT; t++) {
        ember_freq_table_stats fs;
        ember_freq_get_table_stats(f, t, &fs);
        total_rows += rows[t];
        lookups += fs.lookups;
    }
    const char *source = counts ? counts : inputs[0];
    char mb[32], tb[32];
    fmt_bytes(mb, sizeof mb, (double)mem);
    fmt_bytes(tb, sizeof tb, (double)total_rows * (double)info.record_bytes);
    if (!json) {
        if (counts) printf("ember plan: counts of %s: %llu lookups\n", counts, (unsigned long long)lookups);
        else
            printf("ember plan: counted %lld rows of %d input(s) in %.2f s: %llu lookups\n", (long long)counted_rows,
                   ninputs, count_s, (unsigned long long)lookups);
        printf("26 tables, %lld rows, dim %lld, %zu bytes a row (%s state): %s in all; world %lld, %s per device, "
               "batch %lld per device\n\n",
               (long long)total_rows, (long long)dim, info.record_bytes, optim_names[optim], tb,
               (long long)world, mem ? mb : "no budget", (long long)batch);
    }

    /* plans */
    ember_plan_stats ps[EMBER_PLAN_KIND_COUNT];
    double build_s[EMBER_PLAN_KIND_COUNT] = {0};
    for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++) {
        if (!want[k]) continue;
        double b0 = ember__now();
        st = ember_plan_build(&(ember_plan_params){.kind = (ember_plan_kind)k, .world = (int)world, .device_mem = mem,
                                                   .num_tables = NT, .tables = tabs, .freq = f, .block_rows = block_rows,
                                                   .replicate = no_rep ? EMBER_PLAN_REPLICATE_NEVER : EMBER_PLAN_REPLICATE_AUTO,
                                                   .target_imbalance = target, .budget = EMBER_PLAN_BUDGET_REPORT},
                              &plan[k]);
        build_s[k] = ember__now() - b0;
        ds[k] = calloc((size_t)world, sizeof *ds[k]);
        if (st == EMBER_OK) st = ds[k] ? ember_plan_get_stats(plan[k], batch, &ps[k], ds[k]) : EMBER_ERR_OUT_OF_MEMORY;
        if (st != EMBER_OK) {
            fprintf(stderr, "ember plan: %s: %s\n", ember_plan_kind_name((ember_plan_kind)k), ember_last_error());
            rc = 1;
            goto done;
        }
        if (json) print_json(&ps[k], ds[k], source, dim, mem, batch, build_s[k]);
    }
    if (!json) {
        char cell[64];
        printf("%-26s", "");
        for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++)
            if (want[k]) printf(" %14s", ember_plan_kind_name((ember_plan_kind)k));
        printf("\n");
#define ROW(label, ...)                                                  \
    do {                                                                 \
        printf("%-26s", label);                                          \
        for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++) {                \
            if (!want[k]) continue;                                      \
            const ember_plan_stats *s = &ps[k];                          \
            (void)s;                                                     \
            __VA_ARGS__;                                                 \
            printf(" %14s", cell);                                       \
        }                                                                \
        printf("\n");                                                    \
    } while (0)
        ROW("fits the budget", snprintf(cell, sizeof cell, "%s", s->fits ? "yes" : "NO"));
        ROW("imbalance (max/mean)", snprintf(cell, sizeof cell, "%.4f", s->imbalance));
        ROW("max lookups per device", snprintf(cell, sizeof cell, "%.6g", s->max_lookups));
        ROW("mean lookups per device", snprintf(cell, sizeof cell, "%.6g", s->mean_lookups));
        ROW("max memory per device", fmt_bytes(cell, sizeof cell, (double)s->max_bytes));
        ROW("mean memory per device", fmt_bytes(cell, sizeof cell, (double)s->total_bytes / s->world));
        ROW("max comm per step", fmt_bytes(cell, sizeof cell, s->max_comm_bytes));
        ROW("mean comm per step", fmt_bytes(cell, sizeof cell, s->mean_comm_bytes));
        ROW("hot / replicated blocks", snprintf(cell, sizeof cell, "%lld/%lld", (long long)s->hot_blocks,
                                                (long long)s->replicated_blocks));
        ROW("id map per device", fmt_bytes(cell, sizeof cell, (double)s->map_bytes));
        ROW("build time", snprintf(cell, sizeof cell, "%.3f s", build_s[k]));
        if (devices == 1 || (devices < 0 && world <= 16)) {
            static const char *what[3] = {"lookups per device (share of the mean)", "memory per device",
                                          "comm per step per device (bytes sent + received)"};
            for (int m = 0; m < 3; m++) {
                printf("\n%s\n%-6s", what[m], "rank");
                for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++)
                    if (want[k]) printf(" %18s", ember_plan_kind_name((ember_plan_kind)k));
                printf("\n");
                for (int d = 0; d < world; d++) {
                    printf("%-6d", d);
                    for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++) {
                        if (!want[k]) continue;
                        const ember_plan_device_stats *x = &ds[k][d];
                        if (m == 0)
                            snprintf(cell, sizeof cell, "%.6g (%.3f)", x->lookups,
                                     ps[k].mean_lookups > 0 ? x->lookups / ps[k].mean_lookups : 1.0);
                        else if (m == 1) {
                            fmt_bytes(cell, sizeof cell, (double)x->bytes);
                            if (x->budget && (size_t)x->bytes > x->budget) strcat(cell, " !");
                        } else
                            fmt_bytes(cell, sizeof cell, x->comm_bytes);
                        printf(" %18s", cell);
                    }
                    printf("\n");
                }
            }
        }
        printf("\ncomm model: ids to their owners, pooled partial sums back and their gradients, replicated rows'\n"
               "gradients all-reduced (include/ember/partition.h); '!' marks a device over its budget\n");
    }
    if (save) {
        int k = want[EMBER_PLAN_MINIMAX] ? EMBER_PLAN_MINIMAX : 0;
        while (!want[k]) k++;
        st = ember_plan_save(plan[k], save);
        if (st != EMBER_OK) {
            fprintf(stderr, "ember plan: %s\n", ember_last_error());
            rc = 1;
            goto done;
        }
        if (!json) printf("saved the %s plan to %s\n", ember_plan_kind_name((ember_plan_kind)k), save);
    }
    (void)nwant;
done:
    for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++) {
        ember_plan_destroy(plan[k]);
        free(ds[k]);
    }
    ember_freq_destroy(f);
    ember_criteo_vocab_destroy(vocab);
    free(inputs);
    return rc;
}
