/*
 * mlp suite: one training step of an MLP (forward, backward, Adam) through the graph
 * engine, f32, all cores. Peer: bench/peers/mlp.py (torch.nn.Linear + ReLU +
 * torch.optim.Adam, loss = mean of the output). GFLOP/s counts the GEMMs of the step
 * (meta-mode FLOPs of the matmul nodes), to be read against bench/limits' sgemm peak.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "engine/internal.h"

typedef struct {
    ember_graph *g;
    ember_optimizer *opt;
} mlp_arg;

static ember_status step(void *p) {
    mlp_arg *a = p;
    EMBER_TRY(ember_graph_run(a->g));
    return ember_optimizer_step(a->opt);
}

static ember_status run_case(const ember_bench_opts *o, int64_t batch, const int64_t *dims, int ndims) {
    mlp_arg a = {0};
    ember_rng rng = {.seed = 1};
    ember_node *x, *h, *loss;
    ember_tensor *xv;
    ember_status st = ember_graph_create(NULL, &a.g);
    if (st == EMBER_OK) st = ember_graph_input(a.g, "x", EMBER_DTYPE_F32, 2, (int64_t[]){batch, dims[0]}, &x);
    if (st == EMBER_OK)
        st = ember_mlp(a.g, x, &(ember_mlp_params){.dims = dims, .nlayers = ndims - 1, .act = EMBER_ACT_RELU,
                                                   .name = "mlp", .rng = &rng},
                       &h);
    if (st == EMBER_OK) st = ember_op_mean(a.g, h, 0, &loss);
    if (st == EMBER_OK) st = ember_graph_build_backward(a.g, loss);
    if (st == EMBER_OK) {
        ember_optimizer_config cfg = ember_optimizer_defaults(EMBER_OPTIM_ADAM);
        cfg.lr = 1e-3;
        st = ember_graph_optimizer_create(a.g, &cfg, &a.opt);
    }
    if (st == EMBER_OK) st = ember_node_value(x, &xv);
    if (st == EMBER_OK) st = ember_rng_uniform(&rng, xv, -1.0f, 1.0f);
    double gemm_flops = 0, sec = 0;
    for (int i = 0; st == EMBER_OK && i < ember_graph_node_count(a.g); i++) {
        ember_node_info in;
        st = ember_graph_node_info(a.g, i, &in);
        if (st == EMBER_OK && strcmp(in.op, "matmul") == 0) gemm_flops += in.flops;
    }
    if (st == EMBER_OK) st = ember_bench_time(o, step, &a, &sec);
    if (st == EMBER_OK) {
        char name[96], params[192], d[64] = "";
        size_t k = 0;
        for (int i = 0; i < ndims && k < sizeof d; i++)
            k += (size_t)snprintf(d + k, sizeof d - k, "%s%lld", i ? "-" : "", (long long)dims[i]);
        snprintf(name, sizeof name, "b%lld_%s", (long long)batch, d);
        snprintf(params, sizeof params, "\"batch\":%lld,\"dims\":\"%s\",\"optimizer\":\"adam\",\"threads\":%d",
                 (long long)batch, d, ember_get_num_threads());
        ember_bench_emit(o, "mlp", name, "samples", (double)batch / sec, "samples/s", params);
        ember_bench_emit(o, "mlp", name, "gflops", gemm_flops / sec / 1e9, "GFLOP/s", params);
    }
    ember_optimizer_destroy(a.opt);
    ember_graph_destroy(a.g);
    return st;
}

ember_status ember_bench_suite_mlp(const ember_bench_opts *o) {
    if (o->tiny) return run_case(o, 64, (int64_t[]){32, 16, 8}, 3);
    EMBER_TRY(run_case(o, 2048, (int64_t[]){512, 256, 128}, 3));
    return run_case(o, 2048, (int64_t[]){1024, 1024, 1024}, 3);
}
