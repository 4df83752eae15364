/*
 * tests/test_partition.c: sharding plans (include/ember/partition.h).
 *
 * The bound tested against brute force. With memory budgets off, replication off and
 * every counted row in the head (small cases: the head starts at 64 blocks), minimax is
 * Graham's LPT on identical machines, so
 *     max load <= (4/3 - 1/(3m)) * OPT                                  (Graham 1969)
 * Why: let j be the job that finishes last, on the most loaded machine. When LPT placed
 * it, every machine was at least at its start S, so S <= (sum - p_j) / m and
 * max = S + p_j <= sum/m + p_j (1 - 1/m) <= OPT + p_j (1 - 1/m). If p_j <= OPT/3 that
 * is <= OPT (4/3 - 1/(3m)). Otherwise every job up to j (LPT sorts by size) is over
 * OPT/3, at most two share a machine in any schedule within OPT, and LPT is optimal on
 * such instances (dropping the jobs after j changes neither S nor p_j). The weaker
 * max <= OPT + max job follows from the same first inequality and is checked too.
 * With replication AUTO the partitioner keeps a replicated variant only if its maximum
 * is lower, so the bound still holds; with budgets on, LPT may be pushed off the least
 * loaded machine and the bound does not hold: there the test checks the budgets.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ember/partition.h"

/* ---- helpers ---- */

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct tcase {
    int ntab;
    ember_plan_table tab[8];
    int64_t *ids[8];
    uint64_t *cnt[8];
} tcase;

static void tcase_free(tcase *c) {
    for (int i = 0; i < c->ntab; i++) {
        free(c->ids[i]);
        free(c->cnt[i]);
    }
}

/* A table of rows ids where a random subset of `counted` ids get Zipf-like counts. */
static void add_table(tcase *c, int64_t rows, int dim, int64_t counted, double skew) {
    int i = c->ntab++;
    c->ids[i] = malloc((size_t)(counted ? counted : 1) * sizeof(int64_t));
    c->cnt[i] = malloc((size_t)(counted ? counted : 1) * sizeof(uint64_t));
    /* distinct ids: a random stride walk */
    int64_t start = (int64_t)(rnd() % (uint64_t)rows), stride = 1;
    while (1) {
        stride = 1 + (int64_t)(rnd() % (uint64_t)rows);
        int64_t a = stride, b = rows; /* gcd(stride, rows) == 1 */
        while (b) {
            int64_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1) break;
    }
    for (int64_t k = 0; k < counted; k++) {
        c->ids[i][k] = (start + k * stride) % rows;
        c->cnt[i][k] = (uint64_t)(1 + 100000.0 / pow((double)(k + 1), skew));
    }
    c->tab[i] = (ember_plan_table){.rows = rows, .dim = dim, .ids = c->ids[i], .counts = c->cnt[i],
                                   .num_counted = counted};
}

static ember_plan *build(const tcase *c, ember_plan_kind kind, int world, size_t mem, ember_plan_replicate rep,
                         int64_t block_rows, ember_status *st_out) {
    ember_plan *p = NULL;
    ember_status st = ember_plan_build(&(ember_plan_params){.kind = kind, .world = world, .device_mem = mem,
                                                            .num_tables = c->ntab, .tables = c->tab,
                                                            .replicate = rep, .block_rows = block_rows},
                                       &p);
    if (st_out) *st_out = st;
    else CHECK_OK(st);
    return p;
}

/* Every id maps to a valid (rank, local row); owned slots are hit at most once; the
 * unused slots of each shard are its holes; loads recomputed from the counts match. */
static void check_map(const ember_plan *p, const tcase *c) {
    int P = ember_plan_world(p);
    int bad_rank = 0, bad_row = 0, dup = 0, bad_holes = 0, bad_many = 0;
    double load_err = 0;
    for (int t = 0; t < c->ntab; t++) {
        int64_t rows = c->tab[t].rows;
        ember_plan_shard sh[16];
        int64_t total_slots = 0;
        for (int d = 0; d < P; d++) {
            CHECK_OK(ember_plan_get_shard(p, t, d, &sh[d]));
            total_slots += sh[d].local_rows;
        }
        unsigned char **seen = calloc((size_t)P, sizeof *seen);
        for (int d = 0; d < P; d++) seen[d] = calloc((size_t)sh[d].local_rows + 1, 1);
        int64_t *ids = malloc((size_t)rows * sizeof *ids);
        int *ranks = malloc((size_t)rows * sizeof *ranks);
        int64_t *locs = malloc((size_t)rows * sizeof *locs);
        for (int64_t id = 0; id < rows; id++) ids[id] = id;
        CHECK_OK(ember_plan_locate_many(p, t, ids, rows, ranks, locs));
        int64_t every = 0;
        for (int64_t id = 0; id < rows; id++) {
            int r;
            int64_t l;
            ember_plan_locate(p, t, id, &r, &l);
            if (r != ranks[id] || l != locs[id]) bad_many++;
            if (r == EMBER_PLAN_EVERY_RANK) {
                every++;
                for (int d = 0; d < P; d++)
                    if (sh[d].local_rows > 0) {
                        if (l < 0 || l >= sh[d].local_rows) bad_row++;
                        else if (ember_plan_get_kind(p) != EMBER_PLAN_COLUMNWISE) {
                            if (l >= sh[d].replicated_rows) bad_row++;
                            if (seen[d][l]++) dup++;
                        }
                    }
                continue;
            }
            if (r < 0 || r >= P) {
                bad_rank++;
                continue;
            }
            if (l < 0 || l >= sh[r].local_rows) {
                bad_row++;
                continue;
            }
            if (seen[r][l]++) dup++;
        }
        if (ember_plan_get_kind(p) == EMBER_PLAN_MINIMAX || ember_plan_get_kind(p) == EMBER_PLAN_ROWWISE) {
            for (int d = 0; d < P; d++) {
                int64_t unused = 0;
                for (int64_t l = 0; l < sh[d].local_rows; l++) unused += !seen[d][l];
                if (unused != sh[d].hole_rows) bad_holes++;
            }
        }
        /* loads from the counts through the map */
        double *ld = calloc((size_t)P, sizeof *ld);
        for (int64_t k = 0; k < c->tab[t].num_counted; k++) {
            int64_t id = c->tab[t].ids[k];
            double w = (double)c->tab[t].counts[k];
            if (ember_plan_get_kind(p) == EMBER_PLAN_COLUMNWISE) {
                for (int d = 0; d < P; d++) ld[d] += w * (sh[d].col_end - sh[d].col_begin) / c->tab[t].dim;
            } else if (ranks[id] == EMBER_PLAN_EVERY_RANK) {
                for (int d = 0; d < P; d++) ld[d] += w / P;
            } else {
                ld[ranks[id]] += w;
            }
        }
        for (int d = 0; d < P; d++) {
            double e = fabs(ld[d] - sh[d].lookups) / (1 + fabs(ld[d]));
            if (e > load_err) load_err = e;
        }
        (void)every;
        (void)total_slots;
        free(ld);
        for (int d = 0; d < P; d++) free(seen[d]);
        free(seen);
        free(ids);
        free(ranks);
        free(locs);
    }
    CHECK_EQ_INT(bad_rank, 0);
    CHECK_EQ_INT(bad_row, 0);
    CHECK_EQ_INT(dup, 0);
    CHECK_EQ_INT(bad_holes, 0);
    CHECK_EQ_INT(bad_many, 0);
    CHECK_NEAR(load_err, 0, 1e-9);
}

static double max_load(const ember_plan *p) {
    ember_plan_stats s;
    CHECK_OK(ember_plan_get_stats(p, 1, &s, NULL));
    return s.max_lookups;
}

/* ---- LPT bound against brute force ---- */

static double brute_opt(const uint64_t *w, int n, int m) {
    int64_t total = 1;
    for (int i = 1; i < n; i++) total *= m; /* item 0 on machine 0 (symmetry) */
    double best = INFINITY;
    double load[8];
    for (int64_t code = 0; code < total; code++) {
        memset(load, 0, sizeof load);
        load[0] = (double)w[0];
        int64_t x = code;
        for (int i = 1; i < n; i++) {
            load[x % m] += (double)w[i];
            x /= m;
        }
        double mx = 0;
        for (int k = 0; k < m; k++) mx = load[k] > mx ? load[k] : mx;
        if (mx < best) best = mx;
    }
    return best;
}

static void test_lpt_bound(void) {
    int cases = 0, viol = 0, viol_weak = 0;
    double worst = 0;
    for (int it = 0; it < 300; it++) {
        int m = 2 + (int)(rnd() % 3);  /* 2..4 machines */
        int n = 1 + (int)(rnd() % (m == 4 ? 8 : 10));
        uint64_t w[10];
        int64_t ids[10];
        for (int i = 0; i < n; i++) {
            w[i] = 1 + rnd() % (it % 3 == 0 ? 10 : 1000); /* ties matter: small ranges too */
            ids[i] = i;
        }
        ember_plan_table tab = {.rows = n, .dim = 4, .ids = ids, .counts = w, .num_counted = n};
        double opt = brute_opt(w, n, m);
        uint64_t wmax = 0;
        for (int i = 0; i < n; i++) wmax = w[i] > wmax ? w[i] : wmax;
        for (int rep = 0; rep < 2; rep++) {
            ember_plan *p = NULL;
            CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = m, .num_tables = 1,
                                                           .tables = &tab,
                                                           .replicate = rep ? EMBER_PLAN_REPLICATE_AUTO
                                                                            : EMBER_PLAN_REPLICATE_NEVER},
                                     &p));
            if (!p) continue;
            double mx = max_load(p);
            double bound = (4.0 / 3 - 1.0 / (3 * m)) * opt;
            if (mx > bound * (1 + 1e-12)) {
                viol++;
                fprintf(stderr, "LPT bound: m %d n %d max %g opt %g bound %g\n", m, n, mx, opt, bound);
            }
            if (mx > opt + (double)wmax) viol_weak++;
            if (mx / opt > worst) worst = mx / opt;
            cases++;
            ember_plan_destroy(p);
        }
    }
    CHECK_EQ_INT(viol, 0);
    CHECK_EQ_INT(viol_weak, 0);
    CHECK(cases == 600);
    printf("LPT bound: %d cases, worst max/OPT %.4f (bound <= 4/3 - 1/(3m))\n", cases, worst);

    /* The classic tight case: {3,3,2,2,2} on 2 machines. LPT gives 7, OPT 6 (7/6 = the
     * bound); replication AUTO may split the rows and reach 6. */
    uint64_t w[5] = {3, 3, 2, 2, 2};
    int64_t ids[5] = {0, 1, 2, 3, 4};
    ember_plan_table tab = {.rows = 5, .dim = 4, .ids = ids, .counts = w, .num_counted = 5};
    ember_plan *p = NULL;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 2, .num_tables = 1,
                                                   .tables = &tab, .replicate = EMBER_PLAN_REPLICATE_NEVER},
                              &p));
    CHECK_NEAR(max_load(p), 7, 0);
    ember_plan_destroy(p);
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 2, .num_tables = 1,
                                                   .tables = &tab},
                              &p));
    CHECK(max_load(p) <= 7);
    CHECK_NEAR(max_load(p), 6, 1e-9);
    ember_plan_stats s;
    CHECK_OK(ember_plan_get_stats(p, 16, &s, NULL));
    CHECK(s.replicated_blocks > 0);
    ember_plan_destroy(p);
}

/* ---- maps, loads, budgets ---- */

static void make_mixed(tcase *c) {
    memset(c, 0, sizeof *c);
    add_table(c, 3, 8, 3, 1.0);          /* tiny, every id counted */
    add_table(c, 1000, 16, 300, 1.2);    /* head + uncounted tail */
    add_table(c, 5000, 4, 2000, 0.9);
    add_table(c, 777, 12, 0, 1.0);       /* no counts */
    add_table(c, 20000, 8, 5000, 1.1);
}

static void test_maps_all_kinds(void) {
    tcase c;
    make_mixed(&c);
    for (int kind = 0; kind < EMBER_PLAN_KIND_COUNT; kind++)
        for (int P = 1; P <= 8; P *= 2)
            for (int64_t br = 1; br <= 16; br *= 4) {
                if (kind != EMBER_PLAN_MINIMAX && br > 1) continue;
                ember_plan *p = build(&c, (ember_plan_kind)kind, P, 0, EMBER_PLAN_REPLICATE_AUTO, br, NULL);
                if (!p) continue;
                check_map(p, &c);
                ember_plan_stats s;
                CHECK_OK(ember_plan_get_stats(p, 512, &s, NULL));
                double total = 0;
                for (int t = 0; t < c.ntab; t++)
                    for (int64_t k = 0; k < c.tab[t].num_counted; k++) total += (double)c.tab[t].counts[k];
                CHECK_NEAR(s.total_lookups, total, 1e-6 * total);
                CHECK_NEAR(s.mean_lookups * P, total, 1e-6 * total);
                CHECK(s.fits);
                if (P == 1) CHECK_NEAR(s.max_comm_bytes, 0, 0);
                if (kind == EMBER_PLAN_MINIMAX && P > 1) {
                    ember_plan *rw = build(&c, EMBER_PLAN_ROWWISE, P, 0, EMBER_PLAN_REPLICATE_AUTO, 1, NULL);
                    ember_plan_stats r;
                    CHECK_OK(ember_plan_get_stats(rw, 512, &r, NULL));
                    CHECK(s.imbalance <= r.imbalance + 1e-12);
                    if (br == 1) CHECK(s.imbalance <= 1.05);
                    ember_plan_destroy(rw);
                }
                ember_plan_destroy(p);
            }
    tcase_free(&c);
}

static void test_classic_shapes(void) {
    tcase c;
    make_mixed(&c);
    ember_plan *p = build(&c, EMBER_PLAN_TABLEWISE, 3, 0, 0, 0, NULL);
    for (int t = 0; t < c.ntab; t++) {
        int holders = 0;
        for (int d = 0; d < 3; d++) {
            ember_plan_shard s;
            CHECK_OK(ember_plan_get_shard(p, t, d, &s));
            if (s.local_rows) {
                holders++;
                CHECK_EQ_INT(s.local_rows, c.tab[t].rows);
                CHECK_EQ_INT(s.bytes, c.tab[t].rows * c.tab[t].dim * 4);
            }
        }
        CHECK_EQ_INT(holders, 1);
    }
    ember_plan_destroy(p);
    p = build(&c, EMBER_PLAN_ROWWISE, 4, 0, 0, 0, NULL);
    ember_plan_shard s;
    CHECK_OK(ember_plan_get_shard(p, 4, 1, &s));
    CHECK_EQ_INT(s.cold_begin, 5000);
    CHECK_EQ_INT(s.cold_end, 10000);
    CHECK_EQ_INT(s.hot_rows, 0);
    ember_plan_destroy(p);
    p = build(&c, EMBER_PLAN_COLUMNWISE, 3, 0, 0, 0, NULL);
    for (int t = 0; t < c.ntab; t++) {
        int covered = 0;
        for (int d = 0; d < 3; d++) {
            CHECK_OK(ember_plan_get_shard(p, t, d, &s));
            covered += s.col_end - s.col_begin;
        }
        CHECK_EQ_INT(covered, c.tab[t].dim);
    }
    ember_plan_stats st;
    CHECK_OK(ember_plan_get_stats(p, 64, &st, NULL));
    CHECK(st.imbalance < 1.2);
    ember_plan_destroy(p);
    tcase_free(&c);
}

/* The communication model on a case worked by hand: two one-hot tables of dim 4,
 * tablewise on 2 ranks, one each. Rank 0 owns A: receives rank 1's B ids of A
 * (8 B bytes), sends its pooled A rows (16 B) and gets their gradients back (16 B);
 * for B it sends its ids (8 B) and receives pooled rows and sends gradients (32 B).
 * 80 B bytes in all. */
/* Table-wise without counts: the tables spread over the ranks (largest first), not all on
 * the first rank (every table weighs its pooling when nothing was counted). */
static void test_tablewise_uncounted(void) {
    ember_plan_table tabs[8];
    for (int i = 0; i < 8; i++) tabs[i] = (ember_plan_table){.rows = 1000 * (i + 1), .dim = 8};
    ember_plan *p = NULL;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_TABLEWISE, .world = 4, .num_tables = 8,
                                                   .tables = tabs},
                              &p));
    int per[4] = {0, 0, 0, 0};
    for (int t = 0; t < 8 && p; t++) {
        int r = -1;
        int64_t local = -1;
        CHECK_OK(ember_plan_locate(p, t, 0, &r, &local));
        if (r >= 0 && r < 4) per[r]++;
    }
    for (int d = 0; d < 4; d++) CHECK_EQ_INT(per[d], 2);
    ember_plan_destroy(p);
}

static void test_comm_model(void) {
    int64_t ids[1] = {0};
    uint64_t cnt_a[1] = {10}, cnt_b[1] = {9};
    ember_plan_table tabs[2] = {{.name = "A", .rows = 10, .dim = 4, .ids = ids, .counts = cnt_a, .num_counted = 1},
                                {.name = "B", .rows = 10, .dim = 4, .ids = ids, .counts = cnt_b, .num_counted = 1}};
    ember_plan *p = NULL;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_TABLEWISE, .world = 2, .num_tables = 2, .tables = tabs},
                              &p));
    ember_plan_device_stats ds[2];
    ember_plan_stats s;
    CHECK_OK(ember_plan_get_stats(p, 10, &s, ds));
    CHECK_NEAR(ds[0].comm_bytes, 800, 1e-9);
    CHECK_NEAR(ds[1].comm_bytes, 800, 1e-9);
    CHECK_NEAR(s.imbalance, 10.0 / 9.5, 1e-12);
    CHECK_STATUS(ember_plan_get_stats(p, 0, &s, NULL), EMBER_ERR_INVALID_ARGUMENT);
    ember_plan_destroy(p);
    /* columnwise, dim 4 on 2 ranks, widths 2: ids both ways (8 B + 8 B per table), pooled
     * 2 B 4 sent and 2 B 4 received, x2: 48 B per table */
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_COLUMNWISE, .world = 2, .num_tables = 2, .tables = tabs},
                              &p));
    CHECK_OK(ember_plan_get_stats(p, 10, &s, ds));
    CHECK_NEAR(ds[0].comm_bytes, 2 * 480, 1e-9);
    ember_plan_destroy(p);
}

static void test_budgets(void) {
    tcase c;
    make_mixed(&c);
    int64_t total = 0;
    for (int t = 0; t < c.ntab; t++) total += c.tab[t].rows * c.tab[t].dim * 4;
    for (int P = 2; P <= 8; P *= 2) {
        /* generous: 1.25 x the mean; every plan that succeeds is within budget */
        size_t mem = (size_t)(1.25 * (double)total / P);
        for (int kind = 0; kind < EMBER_PLAN_KIND_COUNT; kind++) {
            ember_status st;
            ember_plan *p = build(&c, (ember_plan_kind)kind, P, mem, EMBER_PLAN_REPLICATE_AUTO, 1, &st);
            if (kind == EMBER_PLAN_MINIMAX || kind == EMBER_PLAN_ROWWISE || kind == EMBER_PLAN_COLUMNWISE)
                CHECK_OK(st);
            if (!p) {
                CHECK_STATUS(st, EMBER_ERR_OUT_OF_MEMORY);
                continue;
            }
            ember_plan_device_stats ds[8];
            ember_plan_stats s;
            CHECK_OK(ember_plan_get_stats(p, 128, &s, ds));
            for (int d = 0; d < P; d++) CHECK((size_t)ds[d].bytes <= mem);
            CHECK(s.fits);
            check_map(p, &c);
            ember_plan_destroy(p);
        }
        /* too small in all: every kind fails strictly, and REPORT builds and says so */
        size_t tiny = (size_t)(0.5 * (double)total / P);
        for (int kind = 0; kind < EMBER_PLAN_KIND_COUNT; kind++) {
            ember_status st;
            ember_plan *p = build(&c, (ember_plan_kind)kind, P, tiny, EMBER_PLAN_REPLICATE_AUTO, 1, &st);
            CHECK_STATUS(st, EMBER_ERR_OUT_OF_MEMORY);
            CHECK(p == NULL);
            CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = (ember_plan_kind)kind, .world = P, .device_mem = tiny,
                                                           .num_tables = c.ntab, .tables = c.tab,
                                                           .budget = EMBER_PLAN_BUDGET_REPORT},
                                      &p));
            ember_plan_stats s;
            CHECK_OK(ember_plan_get_stats(p, 128, &s, NULL));
            CHECK(!s.fits);
            CHECK(s.over_budget > 0);
            ember_plan_destroy(p);
        }
    }
    /* per-device budgets: a small rank gets less */
    size_t b[4] = {(size_t)total / 8, (size_t)total / 2, (size_t)total / 2, (size_t)total / 2};
    ember_plan *p = NULL;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 4, .device_bytes = b,
                                                   .num_tables = c.ntab, .tables = c.tab},
                              &p));
    ember_plan_device_stats ds[4];
    ember_plan_stats s;
    CHECK_OK(ember_plan_get_stats(p, 128, &s, ds));
    for (int d = 0; d < 4; d++) CHECK((size_t)ds[d].bytes <= b[d]);
    CHECK(ds[0].bytes < ds[1].bytes);
    check_map(p, &c);
    ember_plan_destroy(p);
    tcase_free(&c);
}

/* Random instances with tight (but feasible) budgets: budgets always hold. */
static void test_budget_random(void) {
    int fails = 0, built = 0;
    for (int it = 0; it < 60; it++) {
        tcase c;
        memset(&c, 0, sizeof c);
        int nt = 1 + (int)(rnd() % 5);
        for (int t = 0; t < nt; t++) {
            int64_t rows = 1 + (int64_t)(rnd() % 3000);
            add_table(&c, rows, 1 + (int)(rnd() % 32), (int64_t)(rnd() % (uint64_t)(rows + 1)), 0.6 + 0.1 * (double)(rnd() % 8));
        }
        int P = 1 + (int)(rnd() % 6);
        int64_t total = 0;
        for (int t = 0; t < nt; t++) total += c.tab[t].rows * c.tab[t].dim * 4;
        size_t mem = (size_t)((1.05 + 0.1 * (double)(rnd() % 5)) * (double)total / P) + 4096;
        ember_status st;
        ember_plan *p = build(&c, EMBER_PLAN_MINIMAX, P, mem, EMBER_PLAN_REPLICATE_AUTO,
                              1 + (int64_t)(rnd() % 3), &st);
        if (!p) {
            CHECK_STATUS(st, EMBER_ERR_OUT_OF_MEMORY);
            fails++;
        } else {
            built++;
            ember_plan_device_stats ds[8];
            ember_plan_stats s;
            CHECK_OK(ember_plan_get_stats(p, 128, &s, ds));
            for (int d = 0; d < P; d++) CHECK((size_t)ds[d].bytes <= mem);
            check_map(p, &c);
            ember_plan_destroy(p);
        }
        tcase_free(&c);
    }
    CHECK(built >= 50);
    printf("tight budgets: %d built within budget, %d refused\n", built, fails);
}

/* ---- serialisation ---- */

static void same_plan(const ember_plan *a, const ember_plan *b, const tcase *c) {
    size_t na, nb;
    CHECK_OK(ember_plan_encode(a, NULL, 0, &na));
    CHECK_OK(ember_plan_encode(b, NULL, 0, &nb));
    CHECK_EQ_INT(na, nb);
    unsigned char *x = malloc(na), *y = malloc(nb);
    CHECK_OK(ember_plan_encode(a, x, na, &na));
    CHECK_OK(ember_plan_encode(b, y, nb, &nb));
    CHECK(na == nb && memcmp(x, y, na) == 0);
    free(x);
    free(y);
    int diff = 0;
    for (int t = 0; t < c->ntab; t++)
        for (int64_t id = 0; id < c->tab[t].rows; id++) {
            int ra, rb;
            int64_t la, lb;
            ember_plan_locate(a, t, id, &ra, &la);
            ember_plan_locate(b, t, id, &rb, &lb);
            diff += ra != rb || la != lb;
        }
    CHECK_EQ_INT(diff, 0);
    ember_plan_stats sa, sb;
    CHECK_OK(ember_plan_get_stats(a, 100, &sa, NULL));
    CHECK_OK(ember_plan_get_stats(b, 100, &sb, NULL));
    CHECK_NEAR(sa.max_lookups, sb.max_lookups, 0);
    CHECK_NEAR(sa.max_comm_bytes, sb.max_comm_bytes, 0);
    CHECK_EQ_INT(sa.max_bytes, sb.max_bytes);
    CHECK_EQ_INT(sa.hole_rows, sb.hole_rows);
}

static void put_checksum(unsigned char *b, size_t n) {
    uint64_t h = UINT64_C(0xCBF29CE484222325);
    for (size_t i = 0; i < n - 8; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001B3);
    }
    for (int i = 0; i < 8; i++) b[n - 8 + i] = (unsigned char)(h >> (8 * i));
}

static void test_save_load(void) {
    tcase c;
    make_mixed(&c);
    const char *tmpdir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/ember_test_plan_%ld.bin", tmpdir && *tmpdir ? tmpdir : "/tmp", (long)getpid());
    for (int kind = 0; kind < EMBER_PLAN_KIND_COUNT; kind++) {
        ember_plan *p = build(&c, (ember_plan_kind)kind, 4, 0, EMBER_PLAN_REPLICATE_AUTO,
                              kind == EMBER_PLAN_MINIMAX ? 4 : 1, NULL);
        CHECK_OK(ember_plan_save(p, path));
        ember_plan *q = NULL;
        CHECK_OK(ember_plan_load(path, NULL, &q));
        if (q) {
            same_plan(p, q, &c);
            check_map(q, &c);
            CHECK_EQ_INT(ember_plan_get_kind(q), kind);
        }
        ember_plan_destroy(q);
        ember_plan_destroy(p);
    }
    remove(path);
    CHECK_STATUS(ember_plan_load("/nonexistent/plan.bin", NULL, &(ember_plan *){NULL}), EMBER_ERR_IO);
    tcase_free(&c);
}

static void test_bad_inputs(void) {
    tcase c;
    make_mixed(&c);
    ember_plan *p = build(&c, EMBER_PLAN_MINIMAX, 3, 0, EMBER_PLAN_REPLICATE_AUTO, 1, NULL);
    size_t n;
    CHECK_OK(ember_plan_encode(p, NULL, 0, &n));
    unsigned char *buf = malloc(n), *m = malloc(n);
    CHECK_OK(ember_plan_encode(p, buf, n, &n));
    CHECK_STATUS(ember_plan_encode(p, buf, n - 1, &n), EMBER_ERR_INVALID_ARGUMENT);
    ember_plan *q = NULL;
    CHECK_OK(ember_plan_decode(buf, n, NULL, &q));
    ember_plan_destroy(q);

    /* every truncation fails with a status */
    int trunc_ok = 0;
    for (size_t k = 0; k < n; k++) {
        ember_status st = ember_plan_decode(buf, k, NULL, &q);
        trunc_ok += st == EMBER_ERR_FORMAT || st == EMBER_ERR_CHECKSUM;
        CHECK(q == NULL);
    }
    CHECK_EQ_INT(trunc_ok, (long long)n);
    /* magic, version, checksum */
    memcpy(m, buf, n);
    m[0] = 'X';
    CHECK_STATUS(ember_plan_decode(m, n, NULL, &q), EMBER_ERR_FORMAT);
    memcpy(m, buf, n);
    m[8] = 2;
    put_checksum(m, n);
    CHECK_STATUS(ember_plan_decode(m, n, NULL, &q), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "version 2") != NULL);
    memcpy(m, buf, n);
    m[n / 2] ^= 1;
    CHECK_STATUS(ember_plan_decode(m, n, NULL, &q), EMBER_ERR_CHECKSUM);
    /* header fields: world 0, unknown kind */
    memcpy(m, buf, n);
    memset(m + 16, 0, 4);
    put_checksum(m, n);
    CHECK_STATUS(ember_plan_decode(m, n, NULL, &q), EMBER_ERR_FORMAT);
    memcpy(m, buf, n);
    m[12] = 9;
    put_checksum(m, n);
    CHECK_STATUS(ember_plan_decode(m, n, NULL, &q), EMBER_ERR_FORMAT);
    /* trailing bytes */
    unsigned char *big = malloc(n + 4);
    memcpy(big, buf, n - 8);
    memset(big + n - 8, 0, 4);
    put_checksum(big, n + 4);
    CHECK_STATUS(ember_plan_decode(big, n + 4, NULL, &q), EMBER_ERR_FORMAT);
    free(big);
    /* every byte set to each of a few values, checksum fixed: a status or a plan whose
     * map is consistent, never a crash */
    static const unsigned char vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    int decoded = 0, rejected = 0, other = 0;
    for (size_t i = 0; i + 8 < n; i++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(m, buf, n);
            if (m[i] == vals[v]) continue;
            m[i] = vals[v];
            put_checksum(m, n);
            ember_status st = ember_plan_decode(m, n, NULL, &q);
            if (st == EMBER_OK) {
                decoded++;
                ember_plan_stats s;
                CHECK_OK(ember_plan_get_stats(q, 10, &s, NULL));
                int P = ember_plan_world(q), bad = 0;
                for (int t = 0; t < ember_plan_num_tables(q); t++) {
                    ember_plan_shard sh;
                    ember_plan_get_shard(q, t, 0, &sh);
                    for (int64_t id = 0; id < 64; id++) {
                        int r;
                        int64_t l;
                        if (ember_plan_locate(q, t, id, &r, &l) != EMBER_OK) continue;
                        if (r < EMBER_PLAN_EVERY_RANK || r >= P || l < 0) bad++;
                    }
                }
                CHECK_EQ_INT(bad, 0);
                ember_plan_destroy(q);
            } else if (st == EMBER_ERR_FORMAT) {
                rejected++;
            } else {
                other++;
            }
        }
    CHECK_EQ_INT(other, 0);
    printf("mutations: %d decoded, %d rejected\n", decoded, rejected);
    /* a duplicate hot block */
    ember_plan_stats s;
    CHECK_OK(ember_plan_get_stats(p, 1, &s, NULL));
    CHECK(s.hot_blocks + s.replicated_blocks >= 2);
    free(m);
    free(buf);
    ember_plan_destroy(p);

    /* one table, 2 ranks, two hot blocks: make the second equal the first */
    int64_t ids[4] = {0, 1, 2, 3};
    uint64_t cnt[4] = {100, 90, 80, 70};
    ember_plan_table tab = {.name = "x", .rows = 100, .dim = 4, .ids = ids, .counts = cnt, .num_counted = 4};
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 2, .num_tables = 1,
                                                   .tables = &tab, .replicate = EMBER_PLAN_REPLICATE_NEVER},
                              &p));
    CHECK_OK(ember_plan_encode(p, NULL, 0, &n));
    buf = malloc(n);
    CHECK_OK(ember_plan_encode(p, buf, n, &n));
    /* header 32, budgets 16, name 1 + 1, rows..replicated 44, loads 16, bounds 24, count 8 */
    size_t list = 32 + 16 + 2 + 44 + 16 + 24;
    uint64_t cnt_hot = 0;
    for (int i = 0; i < 8; i++) cnt_hot |= (uint64_t)buf[list + i] << (8 * i);
    CHECK_EQ_INT(cnt_hot, 4);
    memcpy(buf + list + 8 + 12, buf + list + 8, 8);
    put_checksum(buf, n);
    CHECK_STATUS(ember_plan_decode(buf, n, NULL, &q), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "listed twice") != NULL);
    /* a rank out of range */
    CHECK_OK(ember_plan_encode(p, buf, n, &n));
    buf[list + 8 + 8] = 5;
    put_checksum(buf, n);
    CHECK_STATUS(ember_plan_decode(buf, n, NULL, &q), EMBER_ERR_FORMAT);
    /* a range bound out of order */
    CHECK_OK(ember_plan_encode(p, buf, n, &n));
    buf[list - 16] = 0xff;
    put_checksum(buf, n);
    CHECK_STATUS(ember_plan_decode(buf, n, NULL, &q), EMBER_ERR_FORMAT);
    free(buf);
    ember_plan_destroy(p);

    /* column slices [0,2) [2,4) rewritten to [0,2) [0,2): the widths still sum to the
     * dim, but the slices overlap */
    tab.dim = 4;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_COLUMNWISE, .world = 2, .num_tables = 1,
                                                   .tables = &tab},
                              &p));
    CHECK_OK(ember_plan_encode(p, NULL, 0, &n));
    buf = malloc(n);
    CHECK_OK(ember_plan_encode(p, buf, n, &n));
    size_t cols = 32 + 16 + 2 + 44 + 16;
    CHECK_OK(ember_plan_decode(buf, n, NULL, &q));
    ember_plan_destroy(q);
    unsigned char zero2[8] = {0, 0, 0, 0, 2, 0, 0, 0};
    int r0_first = buf[cols] == 0 && buf[cols + 4] == 2;
    memcpy(buf + cols + (r0_first ? 8 : 0), zero2, 8);
    put_checksum(buf, n);
    CHECK_STATUS(ember_plan_decode(buf, n, NULL, &q), EMBER_ERR_FORMAT);
    CHECK(strstr(ember_last_error(), "overlap") != NULL);
    free(buf);
    ember_plan_destroy(p);
    tcase_free(&c);
}

static void test_params(void) {
    int64_t ids[2] = {0, 10};
    uint64_t cnt[2] = {1, 1};
    ember_plan_table tab = {.rows = 10, .dim = 4, .ids = ids, .counts = cnt, .num_counted = 2};
    ember_plan *p = NULL;
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 2, .num_tables = 1, .tables = &tab}, &p),
                 EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "counted id 10 outside") != NULL);
    tab.num_counted = 1;
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 0, .num_tables = 1, .tables = &tab}, &p),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 2, .num_tables = 0, .tables = &tab}, &p),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_KIND_COUNT, .world = 2, .num_tables = 1, .tables = &tab}, &p),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_plan_build(NULL, &p), EMBER_ERR_INVALID_ARGUMENT);
    ember_plan_table bad = {.rows = 0, .dim = 4};
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_ROWWISE, .world = 2, .num_tables = 1, .tables = &bad}, &p),
                 EMBER_ERR_INVALID_ARGUMENT);
    bad = (ember_plan_table){.rows = 5, .dim = 0};
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_ROWWISE, .world = 2, .num_tables = 1, .tables = &bad}, &p),
                 EMBER_ERR_INVALID_ARGUMENT);
    bad = (ember_plan_table){.rows = 5, .dim = 4, .num_counted = 3};
    CHECK_STATUS(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_ROWWISE, .world = 2, .num_tables = 1, .tables = &bad}, &p),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK(p == NULL);
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 2, .num_tables = 1, .tables = &tab}, &p));
    int r;
    int64_t l;
    CHECK_STATUS(ember_plan_locate(p, 0, 10, &r, &l), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_plan_locate(p, 0, -1, &r, &l), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_plan_locate(p, 1, 0, &r, &l), EMBER_ERR_INDEX);
    int64_t many[3] = {0, 5, 12};
    int rs[3];
    int64_t ls[3];
    CHECK_STATUS(ember_plan_locate_many(p, 0, many, 3, rs, ls), EMBER_ERR_INDEX);
    CHECK(strstr(ember_last_error(), "position 2") != NULL);
    ember_plan_shard sh;
    CHECK_STATUS(ember_plan_get_shard(p, 0, 2, &sh), EMBER_ERR_INDEX);
    ember_plan_destroy(p);
    ember_plan_destroy(NULL);
    ember_plan_kind k;
    CHECK_OK(ember_plan_kind_parse("columnwise", &k));
    CHECK_EQ_INT(k, EMBER_PLAN_COLUMNWISE);
    CHECK_STATUS(ember_plan_kind_parse("diagonal", &k), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STR(ember_plan_kind_name(EMBER_PLAN_MINIMAX), "minimax");
}

/* ---- counts from ember_freq and from the synthetic generator ---- */

static void test_freq_and_gen(void) {
    /* arrays and an ember_freq holding the same counts give the same plan */
    tcase c;
    make_mixed(&c);
    ember_freq *f = NULL;
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = c.ntab}, &f));
    for (int t = 0; t < c.ntab; t++)
        for (int64_t k = 0; k < c.tab[t].num_counted; k++)
            for (uint64_t r = 0; r < c.tab[t].counts[k] % 50 + 1; r++) CHECK_OK(ember_freq_add(f, t, &c.tab[t].ids[k], 1));
    ember_plan_table tabs[8];
    tcase c2 = c;
    for (int t = 0; t < c.ntab; t++) {
        tabs[t] = c.tab[t];
        tabs[t].ids = NULL;
        tabs[t].counts = NULL;
        tabs[t].num_counted = 0;
        for (int64_t k = 0; k < c.tab[t].num_counted; k++) c2.cnt[t][k] = c.tab[t].counts[k] % 50 + 1;
    }
    ember_plan *a = NULL, *b = NULL;
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 4, .num_tables = c.ntab,
                                                   .tables = tabs, .freq = f},
                              &a));
    CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = EMBER_PLAN_MINIMAX, .world = 4, .num_tables = c2.ntab,
                                                   .tables = c2.tab},
                              &b));
    if (a && b) same_plan(a, b, &c2);
    ember_plan_destroy(a);
    ember_plan_destroy(b);
    ember_freq_destroy(f);
    tcase_free(&c);

    /* Criteo-shaped synthetic data, scaled down: minimax within 5% of the mean */
    ember_gen *g = NULL;
    CHECK_OK(ember_gen_create(&(ember_gen_params){.seed = 3, .scale = 0.002}, &g));
    CHECK_OK(ember_freq_create(&(ember_freq_params){.num_tables = 26}, &f));
    int64_t n = 100000;
    uint32_t *sp = malloc((size_t)n * 26 * sizeof *sp);
    CHECK_OK(ember_gen_rows(g, 0, n, NULL, NULL, sp, NULL, NULL));
    CHECK_OK(ember_freq_add_rows(f, sp, n));
    free(sp);
    ember_plan_table gt[26];
    for (int t = 0; t < 26; t++) gt[t] = (ember_plan_table){.rows = ember_gen_cardinality(g, t), .dim = 64};
    for (int P = 2; P <= 8; P *= 2) {
        double imb[EMBER_PLAN_KIND_COUNT];
        for (int kind = 0; kind < EMBER_PLAN_KIND_COUNT; kind++) {
            ember_plan *p = NULL;
            CHECK_OK(ember_plan_build(&(ember_plan_params){.kind = (ember_plan_kind)kind, .world = P, .num_tables = 26,
                                                           .tables = gt, .freq = f},
                                      &p));
            ember_plan_stats s;
            CHECK_OK(ember_plan_get_stats(p, 2048, &s, NULL));
            imb[kind] = s.imbalance;
            if (kind == EMBER_PLAN_MINIMAX && P == 8) {
                FILE *tf = tmpfile();
                CHECK_OK(ember_plan_write_text(p, 2048, tf));
                CHECK(ftell(tf) > 100);
                fclose(tf);
            }
            ember_plan_destroy(p);
        }
        printf("gen world %d: imbalance tablewise %.3f rowwise %.3f columnwise %.3f minimax %.4f\n", P,
               imb[EMBER_PLAN_TABLEWISE], imb[EMBER_PLAN_ROWWISE], imb[EMBER_PLAN_COLUMNWISE], imb[EMBER_PLAN_MINIMAX]);
        CHECK(imb[EMBER_PLAN_MINIMAX] <= 1.05);
        CHECK(imb[EMBER_PLAN_MINIMAX] <= imb[EMBER_PLAN_ROWWISE]);
    }
    ember_freq_destroy(f);
    ember_gen_destroy(g);
}

/* ---- stage 2: tiers and compression ---- */

static void test_tiers(void) {
    enum { R = 1000 };
    uint64_t cnt[R];
    for (int i = 0; i < R; i++) cnt[i] = (uint64_t)(1e6 / pow(i + 1.0, 1.1));
    int dim = 64;
    int64_t st = 4; /* rowwise Adagrad */
    double b8 = 8 + dim + st, b16 = 2 * dim + st, b32 = 4 * dim + st;
    ember_tier_split s;
    ember_tier_params tp = {.rows = R, .counts = cnt, .dim = dim, .state_bytes = st, .budget = (size_t)(b8 * R)};
    CHECK_OK(ember_tiers_split(&tp, &s));
    CHECK_EQ_INT(s.hot_rows + s.warm_rows, 0);
    CHECK_EQ_INT(s.cold_rows, R);
    CHECK_NEAR(s.error, 1.0 / 510, 1e-12);
    tp.budget = (size_t)(b32 * R);
    CHECK_OK(ember_tiers_split(&tp, &s));
    CHECK_EQ_INT(s.hot_rows, R);
    CHECK_NEAR(s.error, 0, 0);
    tp.budget = (size_t)(b8 * R) - 1;
    CHECK_STATUS(ember_tiers_split(&tp, &s), EMBER_ERR_OUT_OF_MEMORY);
    /* a sweep of budgets: within budget, error never grows with more bytes, hot rows are
     * the most counted (a prefix by construction) and precede the warm ones */
    double prev = INFINITY;
    int bad_budget = 0, bad_mono = 0;
    for (int k = 0; k <= 40; k++) {
        tp.budget = (size_t)(b8 * R + (b32 - b8) * R * k / 40.0);
        CHECK_OK(ember_tiers_split(&tp, &s));
        bad_budget += (size_t)s.bytes > tp.budget;
        bad_mono += s.error > prev + 1e-15;
        prev = s.error;
        CHECK_EQ_INT(s.hot_rows + s.warm_rows + s.cold_rows, R);
    }
    CHECK_EQ_INT(bad_budget, 0);
    CHECK_EQ_INT(bad_mono, 0);
    /* 90% f16 worth of bytes and a little more: the skewed head goes f32, a middle f16,
     * the tail int8 */
    tp.budget = (size_t)(b16 * R * 0.9 + b8 * R * 0.1 + (b32 - b16) * 20);
    CHECK_OK(ember_tiers_split(&tp, &s));
    CHECK(s.hot_rows > 0 && s.warm_rows > 0 && s.cold_rows > 0);
    printf("tiers (1000 Zipf rows, dim 64): %lld f32, %lld f16, %lld int8, error %.2e per lookup\n",
           (long long)s.hot_rows, (long long)s.warm_rows, (long long)s.cold_rows, s.error);
    /* uniform counts: f16 first (6x more accuracy per byte), f32 only after */
    tp.counts = NULL;
    tp.budget = (size_t)(b16 * R);
    CHECK_OK(ember_tiers_split(&tp, &s));
    CHECK_EQ_INT(s.warm_rows, R);
    CHECK_EQ_INT(s.hot_rows, 0);
    /* dim <= 8: f16 is no larger than int8, so nothing is int8 */
    tp = (ember_tier_params){.rows = 10, .dim = 8, .budget = 1000};
    CHECK_OK(ember_tiers_split(&tp, &s));
    CHECK_EQ_INT(s.cold_rows, 0);
    uint64_t unsorted[3] = {1, 5, 2};
    tp = (ember_tier_params){.rows = 3, .counts = unsorted, .dim = 8, .budget = 1000};
    CHECK_STATUS(ember_tiers_split(&tp, &s), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_tiers_split(&(ember_tier_params){.rows = 0, .dim = 8}, &s), EMBER_ERR_INVALID_ARGUMENT);
}

static float frand(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0); }

/* Unit in the last place of an f16 (bf16) value v: the gap to its upper neighbour. */
static double half_ulp(float v, int bf) {
    float a = fabsf(v);
    if (bf) {
        uint16_t h = ember_f32_to_bf16(a);
        return (double)ember_bf16_to_f32((uint16_t)(h + 1)) - ember_bf16_to_f32(h);
    }
    uint16_t h = ember_f32_to_f16(a);
    return (double)ember_f16_to_f32((uint16_t)(h + 1)) - ember_f16_to_f32(h);
}

static void test_compress(void) {
    enum { ROWS = 50, DIM = 37 };
    float *x = malloc(ROWS * DIM * sizeof *x), *y = malloc(ROWS * DIM * sizeof *y);
    for (int i = 0; i < ROWS * DIM; i++) {
        float m = i % 7 == 0 ? 100.0f : i % 5 == 0 ? 1e-6f : 0.05f; /* normals, subnormal f16s, large */
        x[i] = (2 * frand() - 1) * m;
    }
    size_t cap = ROWS * ember_row_format_bytes(EMBER_ROW_FORMAT_INT8_ROWWISE, DIM) + ROWS * DIM * 4;
    unsigned char *buf = malloc(cap), *buf2 = malloc(cap);
    CHECK_EQ_INT(ember_row_format_bytes(EMBER_ROW_FORMAT_INT8_ROWWISE, DIM), 8 + DIM);
    CHECK_EQ_INT(ember_row_format_bytes(EMBER_ROW_FORMAT_F16, DIM), 2 * DIM);
    for (int fmt = 0; fmt < EMBER_ROW_FORMAT_COUNT; fmt++)
        for (int sr = 0; sr < 2; sr++) {
            ember_compress_params cp = {.format = (ember_row_format)fmt, .dim = DIM, .stochastic = sr, .seed = 11,
                                        .offset = 1000};
            CHECK_OK(ember_rows_compress(&cp, x, ROWS, buf));
            CHECK_OK(ember_rows_decompress(&cp, buf, ROWS, y));
            int bad = 0;
            double worst = 0;
            for (int r = 0; r < ROWS; r++) {
                float mn = x[r * DIM], mx = x[r * DIM];
                for (int j = 0; j < DIM; j++) {
                    mn = fminf(mn, x[r * DIM + j]);
                    mx = fmaxf(mx, x[r * DIM + j]);
                }
                double scale = ((double)mx - mn) / 255.0;
                for (int j = 0; j < DIM; j++) {
                    double a = x[r * DIM + j], b = y[r * DIM + j], e = fabs(a - b), bound;
                    switch (fmt) {
                    case EMBER_ROW_FORMAT_F32: bound = 0; break;
                    case EMBER_ROW_FORMAT_INT8_ROWWISE: bound = (sr ? 1.0 : 0.5) * scale * (1 + 1e-4) + 1e-6 * fabs(mx - mn); break;
                    default: {
                        int bf = fmt == EMBER_ROW_FORMAT_BF16;
                        /* the gap between the two neighbours around x */
                        float lo = (float)fmin(fabs(a), fabs(b));
                        bound = (sr ? 1.0 : 0.5) * half_ulp(lo, bf) * (1 + 1e-6);
                        break;
                    }
                    }
                    if (e > bound) bad++;
                    if (bound > 0 && e / bound > worst) worst = e / bound;
                }
            }
            if (bad) fprintf(stderr, "format %d stochastic %d: %d elements beyond the bound\n", fmt, sr, bad);
            CHECK_EQ_INT(bad, 0);
            /* determinism, and rows compressed alone with their offset give the same bits */
            size_t rb = ember_row_format_bytes((ember_row_format)fmt, DIM);
            CHECK_OK(ember_rows_compress(&cp, x, ROWS, buf2));
            CHECK(memcmp(buf, buf2, ROWS * rb) == 0);
            ember_compress_params part = cp;
            part.offset = cp.offset + 10 * DIM;
            CHECK_OK(ember_rows_compress(&part, x + 10 * DIM, ROWS - 10, buf2));
            CHECK(memcmp(buf + 10 * rb, buf2, (ROWS - 10) * rb) == 0);
            if (sr && fmt != EMBER_ROW_FORMAT_F32) {
                part = cp;
                part.seed = 12;
                CHECK_OK(ember_rows_compress(&part, x, ROWS, buf2));
                CHECK(memcmp(buf, buf2, ROWS * rb) != 0);
            }
        }
    /* unbiased: a value a third of a step above a code. Round to nearest is off by a third
     * of a step every time; the mean of stochastic roundings over 4000 offsets is within
     * 5 standard errors (one rounding's error is at most one step, so sd <= step / 2) */
    for (int fmt = EMBER_ROW_FORMAT_F16; fmt < EMBER_ROW_FORMAT_COUNT; fmt++) {
        float row[4];
        double step;
        if (fmt == EMBER_ROW_FORMAT_INT8_ROWWISE) {
            row[0] = 0, row[1] = 2.55f, row[2] = 1.0f + 0.01f / 3, row[3] = 1.3f;
            step = 0.01;
        } else {
            int bf = fmt == EMBER_ROW_FORMAT_BF16;
            step = half_ulp(1.0f, bf);
            row[0] = row[1] = row[3] = 0.5f;
            row[2] = (float)(1.0 + step / 3);
        }
        const int N = 4000;
        double sum = 0, near;
        unsigned char rec[64];
        float back[4];
        ember_compress_params cp = {.format = (ember_row_format)fmt, .dim = 4, .stochastic = 0};
        CHECK_OK(ember_rows_compress(&cp, row, 1, rec));
        CHECK_OK(ember_rows_decompress(&cp, rec, 1, back));
        near = back[2];
        cp.stochastic = 1;
        cp.seed = 99;
        for (int k = 0; k < N; k++) {
            cp.offset = (uint64_t)k * 4;
            CHECK_OK(ember_rows_compress(&cp, row, 1, rec));
            CHECK_OK(ember_rows_decompress(&cp, rec, 1, back));
            sum += back[2];
        }
        double mean = sum / N, tol = 5 * (step / 2) / sqrt((double)N);
        CHECK_NEAR(mean, row[2], tol);
        CHECK(fabs(near - row[2]) > step / 4); /* round to nearest is biased here */
    }
    /* saturation and NaN */
    float odd[4] = {1e6f, -1e6f, NAN, -0.0f};
    unsigned char rec[16];
    float back[4];
    ember_compress_params cp = {.format = EMBER_ROW_FORMAT_F16, .dim = 4, .stochastic = 1, .seed = 1};
    CHECK_OK(ember_rows_compress(&cp, odd, 1, rec));
    CHECK_OK(ember_rows_decompress(&cp, rec, 1, back));
    CHECK_NEAR(back[0], 65504, 0);
    CHECK_NEAR(back[1], -65504, 0);
    CHECK(isnan(back[2]));
    CHECK(back[3] == 0 && signbit(back[3]));
    /* a constant int8 row is exact */
    float flat[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    cp.format = EMBER_ROW_FORMAT_INT8_ROWWISE;
    CHECK_OK(ember_rows_compress(&cp, flat, 1, rec));
    CHECK_OK(ember_rows_decompress(&cp, rec, 1, back));
    CHECK_NEAR_ARRAY(back, flat, 4, 0);
    /* bad params */
    CHECK_STATUS(ember_rows_compress(&(ember_compress_params){.format = EMBER_ROW_FORMAT_COUNT, .dim = 4}, flat, 1, rec),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_rows_compress(&(ember_compress_params){.dim = 0}, flat, 1, rec), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_rows_decompress(&(ember_compress_params){.dim = 4}, NULL, 1, back), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_rows_compress(NULL, flat, 1, rec), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ember_row_format_bytes(EMBER_ROW_FORMAT_F32, 0), 0);
    free(x);
    free(y);
    free(buf);
    free(buf2);
}

int main(void) {
    test_tiers();
    test_compress();
    test_params();
    test_lpt_bound();
    test_maps_all_kinds();
    test_classic_shapes();
    test_comm_model();
    test_tablewise_uncounted();
    test_budgets();
    test_budget_random();
    test_save_load();
    test_bad_inputs();
    test_freq_and_gen();
    return check_summary();
}
