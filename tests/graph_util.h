/*
 * tests/graph_util.h: small helpers shared by the graph-level training tests.
 */
#ifndef EMBER_TESTS_GRAPH_UTIL_H
#define EMBER_TESTS_GRAPH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/ember.h"

/* Every parameter's values, in node order, concatenated (malloc'd; *n floats); NULL when
   a parameter's value cannot be read. */
static inline float *graph_params_snapshot(ember_graph *g, size_t *n) {
    size_t total = 0;
    for (int i = 0; i < ember_graph_node_count(g); i++) {
        ember_node_info in;
        if (ember_graph_node_info(g, i, &in) == EMBER_OK && strcmp(in.op, "param") == 0) total += in.out_bytes / 4;
    }
    float *v = malloc(total * sizeof *v + 1);
    size_t k = 0;
    for (int i = 0; v && i < ember_graph_node_count(g); i++) {
        ember_node_info in;
        ember_node *p;
        ember_tensor *t;
        if (ember_graph_node_info(g, i, &in) != EMBER_OK || strcmp(in.op, "param") != 0) continue;
        if (ember_graph_find(g, in.name, &p) != EMBER_OK || ember_node_value(p, &t) != EMBER_OK) {
            free(v); /* a parameter without its value: no snapshot */
            return NULL;
        }
        memcpy(v + k, ember_tensor_data(t), in.out_bytes);
        k += in.out_bytes / 4;
    }
    *n = total;
    return v;
}

/* The reverse of graph_params_snapshot: every parameter set from src, in node order;
   0 when a parameter's value cannot be reached. */
static inline int graph_params_restore(ember_graph *g, const float *src) {
    size_t k = 0;
    for (int i = 0; i < ember_graph_node_count(g); i++) {
        ember_node_info in;
        ember_node *p;
        ember_tensor *t;
        if (ember_graph_node_info(g, i, &in) != EMBER_OK || strcmp(in.op, "param") != 0) continue;
        if (ember_graph_find(g, in.name, &p) != EMBER_OK || ember_node_value(p, &t) != EMBER_OK) return 0;
        memcpy(ember_tensor_data(t), src + k, in.out_bytes);
        k += in.out_bytes / 4;
    }
    return 1;
}

/* Deterministic data in [-1, 1]: feature j of global sample i at step s (the same on
   every rank, so a rank's slice of a global batch is the one-process batch's rows). */
static inline float graph_test_feature(int s, int i, int j) {
    uint32_t h = (uint32_t)(s * 7919 + i * 131 + j * 17 + 1) * 2654435761u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (float)(h % 2001) / 1000.0f - 1.0f;
}

#endif /* EMBER_TESTS_GRAPH_UTIL_H */
