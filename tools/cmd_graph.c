/*
 * ember graph-info: build a model's graph in meta mode (no data is allocated) and
 * print every node's shape, FLOPs and bytes moved, and the executor's planned peak
 * activation memory, with or without activation checkpointing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/ember.h"
#include "tools/cli.h"

/* "512-256-128" -> dims; returns the count or -1. */
static int parse_dims(const char *s, int64_t *dims, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 1) return -1;
        dims[n++] = v;
        if (*end == '-') s = end + 1;
        else if (*end == '\0') s = end;
        else return -1;
    }
    return *s ? -1 : n;
}

int ember_cmd_graph_info(int argc, char **argv) {
    int64_t batch = 2048, dims[33];
    int ndims = parse_dims("512-256-128", dims, 33), backward = 1, checkpoint = 0;
    ember_act act = EMBER_ACT_RELU;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--batch") == 0 && i + 1 < argc) {
            batch = atoll(argv[++i]);
            if (batch < 1) {
                fprintf(stderr, "ember graph-info: --batch takes a positive count\n");
                return 2;
            }
        } else if (strcmp(a, "--dims") == 0 && i + 1 < argc) {
            ndims = parse_dims(argv[++i], dims, 33);
            if (ndims < 2) {
                fprintf(stderr, "ember graph-info: --dims takes sizes like 512-256-128 (at least two)\n");
                return 2;
            }
        } else if (strcmp(a, "--act") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "relu") == 0) act = EMBER_ACT_RELU;
            else if (strcmp(v, "gelu") == 0) act = EMBER_ACT_GELU;
            else if (strcmp(v, "tanh") == 0) act = EMBER_ACT_TANH;
            else {
                fprintf(stderr, "ember graph-info: --act relu|gelu|tanh, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--checkpoint") == 0) {
            checkpoint = 1;
        } else if (strcmp(a, "--no-backward") == 0) {
            backward = 0;
        } else if (strcmp(a, "--model") == 0 && i + 1 < argc) {
            if (strcmp(argv[++i], "mlp") != 0) {
                fprintf(stderr, "ember graph-info: models: mlp\n");
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: ember graph-info [--model mlp] [--batch B] [--dims 512-256-128] [--act relu|gelu|tanh]\n"
                    "                        [--checkpoint] [--no-backward]\n");
            return 2;
        }
    }
    ember_graph *g = NULL;
    ember_rng rng = {.seed = 1};
    ember_node *x, *h, *loss;
    ember_status st = ember_graph_create(&(ember_graph_params){.meta = 1}, &g);
    if (st == EMBER_OK) st = ember_graph_input(g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){batch, dims[0]}, &x);
    if (st == EMBER_OK)
        st = ember_mlp(g, x,
                       &(ember_mlp_params){.dims = dims, .nlayers = ndims - 1, .act = act, .name = "mlp",
                                           .rng = &rng, .checkpoint = checkpoint},
                       &h);
    if (st == EMBER_OK && backward) {
        st = ember_op_mean(g, h, 0, &loss);
        if (st == EMBER_OK) st = ember_graph_build_backward(g, loss);
    } else if (st == EMBER_OK) {
        st = ember_graph_mark_output(g, h);
    }
    if (st == EMBER_OK) st = ember_graph_print(g, stdout);
    if (st != EMBER_OK) fprintf(stderr, "ember graph-info: %s\n", ember_last_error());
    ember_graph_destroy(g);
    return st == EMBER_OK ? 0 : 1;
}
