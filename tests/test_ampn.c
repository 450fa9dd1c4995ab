/* test_ampn.c: AMPN bit allocation (against brute force), sensitivity
 * measurement, and robuq-search end to end on a tiny trained model. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "robuq/ampn.h"
#include "robuq/dataset.h"
#include "robuq/rng.h"
#include "testutil.h"

/* ------------------------------------------------------------ allocation */

/* Enumerates every assignment; returns the least cost within the budget
 * (INFINITY if none). */
static double brute(int n, int nc, const int *cands, const double *sens, const double *w, double budget) {
    long total = 1;
    for (int i = 0; i < n; i++) total *= nc;
    double best = INFINITY, wsum = 0;
    for (int i = 0; i < n; i++) wsum += w[i];
    for (long code = 0; code < total; code++) {
        long c = code;
        double cost = 0, used = 0;
        for (int i = 0; i < n; i++, c /= nc) {
            int k = (int)(c % nc);
            cost += sens[i * nc + k];
            used += w[i] * cands[k];
        }
        if (used <= budget * wsum + 1e-9 && cost < best) best = cost;
    }
    return best;
}

static void check_feasible(int n, const int *bits, const double *w, double budget) {
    double used = 0, wsum = 0;
    for (int i = 0; i < n; i++) used += w[i] * bits[i], wsum += w[i];
    if (used > budget * wsum * (1 + 1e-12)) fail_msg("average %.6f exceeds budget %.6f", used / wsum, budget);
}

static void test_dp_matches_brute_force(void **state) {
    uint64_t s = 7;
    const int cands[4] = {1, 2, 3, 4};
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)(tu_next(&s) % 7), nc = 2 + (int)(tu_next(&s) % 3);
        double sens[7 * 4], w[7];
        for (int i = 0; i < n; i++) {
            w[i] = trial % 2 ? (double)(1 + tu_next(&s) % 6) : 1.0; /* MAC-like or layer mean */
            /* decreasing in bits, like real sensitivities, plus noise that can break it */
            for (int k = 0; k < nc; k++) sens[i * nc + k] = tu_uniform(&s, 0, 1) / (k + 1) + tu_uniform(&s, -0.05f, 0.05f);
        }
        double budget = 1.0 + (double)(tu_next(&s) % 1000) / 1000.0 * (cands[nc - 1] - 1);
        int bits[7];
        rq_ampn_result r = {.bits = bits};
        rq_err e = {0};
        if (rq_ampn_allocate(n, nc, cands, sens, w, budget, &r, &e)) fail_msg("trial %d: %s", trial, e.msg);
        assert_true(r.exact);
        check_feasible(n, bits, w, budget);
        double opt = brute(n, nc, cands, sens, w, budget);
        if (fabs(r.cost - opt) > 1e-12) fail_msg("trial %d (n=%d): dp cost %.15g, optimum %.15g", trial, n, r.cost, opt);
        /* the reported cost is the cost of the reported bits */
        double c = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < nc; k++)
                if (cands[k] == bits[i]) c += sens[i * nc + k];
        assert_true(fabs(c - r.cost) < 1e-12);
    }
}

static void test_budget_edges(void **state) {
    const int cands[4] = {1, 2, 3, 4};
    /* DiT-like MACs 3:1:4:4 per block, two blocks, sensitivity 1/bits^2 */
    double w[8] = {3, 1, 4, 4, 3, 1, 4, 4}, sens[32];
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 4; k++) sens[i * 4 + k] = (i + 1.0) / ((k + 1.0) * (k + 1.0));
    int bits[8];
    rq_ampn_result r = {.bits = bits};
    rq_err e = {0};
    /* budget exactly 2.0 is reachable and must be met exactly, not approximately */
    assert_int_equal(rq_ampn_allocate(8, 4, cands, sens, w, 2.0, &r, &e), RQ_OK);
    check_feasible(8, bits, w, 2.0);
    assert_true(r.avg_bits <= 2.0 + 1e-12 && r.avg_bits > 1.9);
    /* the top budget gives every layer the most bits */
    assert_int_equal(rq_ampn_allocate(8, 4, cands, sens, w, 8.0, &r, &e), RQ_OK);
    for (int i = 0; i < 8; i++) assert_int_equal(bits[i], 4);
    /* the floor gives every layer the fewest */
    assert_int_equal(rq_ampn_allocate(8, 4, cands, sens, w, 1.0, &r, &e), RQ_OK);
    for (int i = 0; i < 8; i++) assert_int_equal(bits[i], 1);
    /* infeasible: below the smallest candidate */
    const int c24[2] = {2, 4};
    double s2[16] = {0};
    assert_int_equal(rq_ampn_allocate(8, 2, c24, s2, w, 1.5, &r, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "infeasible"));
    assert_non_null(strstr(e.msg, "smallest reachable average is 2"));
    /* bad inputs */
    rq_err_clear(&e);
    const int dup[2] = {2, 2};
    assert_int_equal(rq_ampn_allocate(8, 2, dup, s2, w, 3, &r, &e), RQ_EINVAL);
    rq_err_clear(&e);
    double wbad[8] = {1, 1, 1, 0, 1, 1, 1, 1};
    assert_int_equal(rq_ampn_allocate(8, 2, c24, s2, wbad, 3, &r, &e), RQ_EINVAL);
    rq_err_clear(&e);
    s2[3] = NAN;
    assert_int_equal(rq_ampn_allocate(8, 2, c24, s2, w, 3, &r, &e), RQ_ENUM);
}

/* Non-integer weights use the rounded-up grid: always feasible, and within
 * a whisker of the optimum. */
static void test_fractional_weights(void **state) {
    uint64_t s = 99;
    const int cands[4] = {1, 2, 3, 4};
    for (int trial = 0; trial < 50; trial++) {
        int n = 6;
        double w[6], sens[24];
        for (int i = 0; i < n; i++) {
            w[i] = tu_uniform(&s, 0.1f, 5.0f);
            for (int k = 0; k < 4; k++) sens[i * 4 + k] = tu_uniform(&s, 0, 1) / (k + 1);
        }
        double budget = 1.5 + trial * 0.04;
        int bits[6];
        rq_ampn_result r = {.bits = bits};
        rq_err e = {0};
        assert_int_equal(rq_ampn_allocate(n, 4, cands, sens, w, budget, &r, &e), RQ_OK);
        assert_false(r.exact);
        check_feasible(n, bits, w, budget);
        assert_true(r.cost >= brute(n, 4, cands, sens, w, budget) - 1e-12);
    }
}

static void test_monotone(void **state) {
    const int c[4] = {1, 2, 3, 4};
    double s[8] = {0.5, -0.1, 0.2, 0.0, /* noisy: 2 bits "better" than 3 */ 1, 2, 3, 4};
    rq_ampn_monotone(2, 4, c, s);
    const double want[8] = {0.5, 0.2, 0.2, 0.0, 4, 4, 4, 4};
    for (int i = 0; i < 8; i++) assert_true(s[i] == want[i]);
}

/* ------------------------------------------------------------ sensitivity */

static void test_sensitivity(void **state) {
    rq_dit_config c = {.input_size = 8, .in_channels = 1, .patch_size = 2, .hidden_size = 32, .depth = 2,
                       .num_heads = 2, .num_classes = 3, .mlp_ratio = 4, .learn_sigma = 1};
    rq_dit m;
    rq_err e = {0};
    assert_int_equal(rq_dit_init(&m, &c, 1, &e), RQ_OK);
    /* random weights everywhere (the reference init zeroes adaLN and the
     * final layer, which would make every layer look harmless) */
    rq_rng rng;
    rq_rng_seed(&rng, 3);
    for (int i = 0; i < m.n_params; i++) rq_rng_fill_normal(&rng, m.params[i]->data, m.params[i]->n, 0.2f);
    rq_dataset ds = {0};
    ds.n = 16, ds.c = 1, ds.h = 8, ds.w = 8, ds.num_classes = 3;
    ds.x = malloc(16 * 64 * sizeof(float));
    ds.labels = malloc(16 * sizeof(int32_t));
    rq_rng_fill_normal(&rng, ds.x, 16 * 64, 1.0f);
    for (int i = 0; i < 16; i++) ds.labels[i] = i % 3;
    rq_diffusion d;
    assert_int_equal(rq_diffusion_init_linear(&d, 100, 1e-4, 0.02, &e), RQ_OK);
    d.use_vlb = 1;

    rq_ampn_opts o = {.n_cands = 3, .cands = {1, 2, 8}, .ref_bits = 8, .calib_batches = 2, .batch_size = 8};
    o.quant = (rq_quant_opts){.enabled = 1, .weight_ternary = 1, .act_bits = 4, .adaln_act_bits = 4,
                              .method = RQ_ACTQ_ROBUST, .hadamard = 1};
    int n = rq_ampn_layers(&m, NULL, NULL, NULL, 0);
    assert_int_equal(n, 8); /* 2 blocks x qkv, proj, fc1, fc2 */
    double sens[8 * 3], base;
    for (int metric = 0; metric < 2; metric++) {
        o.metric = metric;
        if (rq_ampn_sensitivity(&m, &d, &ds, &o, sens, &base, NULL, NULL, &e)) fail_msg("%s", e.msg);
        assert_true(isfinite(base) && base > 0);
        double lo = 0, hi = 0;
        for (int i = 0; i < n; i++) {
            /* probing at the reference precision changes nothing: exactly 0 */
            assert_true(sens[i * 3 + 2] == 0.0);
            if (metric == RQ_AMPN_METRIC_OUTPUT) assert_true(sens[i * 3 + 0] > 0);
            lo += sens[i * 3 + 0], hi += sens[i * 3 + 1];
        }
        /* 1 bit hurts more than 2 bits in total */
        if (!(lo > hi)) fail_msg("metric %d: sum sens@1 %.4g <= sum sens@2 %.4g", metric, lo, hi);
    }
    /* deterministic: same inputs, same table */
    double again[8 * 3];
    assert_int_equal(rq_ampn_sensitivity(&m, &d, &ds, &o, again, &base, NULL, NULL, &e), RQ_OK);
    assert_memory_equal(sens, again, sizeof sens);
    /* calibration batch larger than the dataset is a clear error */
    o.batch_size = 32;
    assert_int_equal(rq_ampn_sensitivity(&m, &d, &ds, &o, sens, &base, NULL, NULL, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "fewer than one calibration batch"));
    free(ds.x), free(ds.labels);
    rq_diffusion_free(&d);
    rq_dit_free(&m);
}

/* ------------------------------------------------------------ robuq-search */

static void test_search_tool(void **state) {
    const char *dir = ((tu_dir *)*state)->dir;
    /* tiny dataset + a 6-step FP run to probe */
    char path[1024];
    snprintf(path, sizeof path, "%s/data.h5", dir);
    tu_write_tiny_images(path, 48, 1);
    rq_err e = {0};
    char ini[512];
    snprintf(ini, sizeof ini, "%s/tiny.ini", dir);
    FILE *f = fopen(ini, "w");
    fprintf(f,
            TU_TINY_MODEL_INI
            "[data]\npath = %s\n"
            "[train]\nbatch_size = 8\nsteps = 6\nlr = 1e-3\nlog_every = 3\nckpt_every = 0\nval_every = 0\n"
            "out_dir = %s/fp\nsample_every = 0\n"
            "[sample]\nsteps = 5\nper_class = 2\n[quant]\nenabled = on\nact_bits = 2\n"
            "[search]\ncalib_batches = 2\ncalib_batch_size = 8\ncheckpoint = %s/fp/ckpt_last.h5\n",
            path, dir, dir);
    fclose(f);
    if (tu_sh("%s/robuq-train %s --set quant.enabled=off > %s/train.out 2>&1", ROBUQ_BIN_DIR, ini, dir)) {
        tu_sh("cat %s/train.out", dir);
        fail_msg("robuq-train failed");
    }
    /* search at budget 2.0 */
    if (tu_sh("%s/robuq-search %s > %s/s1.out 2>&1", ROBUQ_BIN_DIR, ini, dir)) {
        tu_sh("cat %s/s1.out", dir);
        fail_msg("robuq-search failed");
    }
    char map[512];
    snprintf(map, sizeof map, "%s/fp/ampn_a2.map", dir);
    assert_int_equal(access(map, F_OK), 0);
    snprintf(path, sizeof path, "%s.png", map);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/fp/ckpt_last.h5.ampn.h5", dir);
    assert_int_equal(access(path, F_OK), 0);
    /* the map reads back, covers all 8 searchable layers, and meets the budget */
    rq_dit_config c = {.input_size = 8, .in_channels = 1, .patch_size = 2, .hidden_size = 32, .depth = 2,
                       .num_heads = 2, .num_classes = 3, .mlp_ratio = 4, .learn_sigma = 1};
    rq_dit m;
    assert_int_equal(rq_dit_init(&m, &c, 1, &e), RQ_OK);
    int bits[64];
    if (rq_precision_map_read(map, &m, bits, &e)) fail_msg("%s", e.msg);
    rq_dit_linear *ls[64];
    double macs[64];
    rq_dit_linear *every[64];
    int nl = rq_ampn_layers(&m, ls, NULL, macs, 64), all = rq_dit_linears(&m, every, NULL, 64);
    double used = 0, tot = 0;
    int named = 0;
    for (int i = 0; i < all; i++)
        for (int j = 0; j < nl; j++)
            if (every[i] == ls[j]) {
                assert_true(bits[i] >= 1 && bits[i] <= 4);
                used += bits[i] * macs[j], tot += macs[j], named++;
            }
    assert_int_equal(named, nl);
    assert_true(used / tot <= 2.0 + 1e-12);
    rq_dit_free(&m);
    /* second run reuses the cached table; budget 3 writes another map */
    if (tu_sh("%s/robuq-search %s --set search.budget=3 > %s/s2.out 2>&1", ROBUQ_BIN_DIR, ini, dir)) fail_msg("rerun");
    assert_int_equal(tu_sh("grep -q 'using cached sensitivity' %s/s2.out", dir), 0);
    snprintf(path, sizeof path, "%s/fp/ampn_a3.map", dir);
    assert_int_equal(access(path, F_OK), 0);
    /* QAT consumes the map */
    if (tu_sh("%s/robuq-train %s --set train.init_from=%s/fp/ckpt_last.h5 --set train.out_dir=%s/qat "
           "--set train.steps=2 --set quant.precision_map=%s > %s/qat.out 2>&1",
           ROBUQ_BIN_DIR, ini, dir, dir, map, dir)) {
        tu_sh("cat %s/qat.out", dir);
        fail_msg("QAT with the map failed");
    }
    /* errors: infeasible budget, missing checkpoint, usage */
    assert_int_equal(tu_sh("%s/robuq-search %s --set search.budget=1 --set search.candidates=2,4 > %s/e1.out 2>&1",
                        ROBUQ_BIN_DIR, ini, dir), 1);
    assert_int_equal(tu_sh("grep -q 'infeasible' %s/e1.out", dir), 0);
    assert_int_equal(tu_sh("%s/robuq-search %s --ckpt %s/nope.h5 > %s/e2.out 2>&1", ROBUQ_BIN_DIR, ini, dir, dir), 1);
    assert_int_equal(tu_sh("grep -q 'nope.h5' %s/e2.out", dir), 0);
    assert_int_equal(tu_sh("%s/robuq-search --bogus > /dev/null 2>&1", ROBUQ_BIN_DIR), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dp_matches_brute_force),
        cmocka_unit_test(test_budget_edges),
        cmocka_unit_test(test_fractional_weights),
        cmocka_unit_test(test_monotone),
        cmocka_unit_test(test_sensitivity),
        cmocka_unit_test_setup_teardown(test_search_tool, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
