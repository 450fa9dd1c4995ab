/* test_export.c: robuq-w158 exports. The exported (integer) model must give
 * the fake-quant model's output exactly (float rounding with a low-rank
 * branch) for A2, A3, A4, A8, a mixed map, min-max, Hadamard on proj/fc2
 * only and W1.58 with fp activations, fused blocks the same as op by op;
 * every field is validated on load. */
#include <hdf5.h>
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

#include "robuq/dataset.h"
#include "robuq/export.h"
#include "robuq/h5io.h"
#include "robuq/qlinear.h"
#include "robuq/rng.h"
#include "robuq/train.h"
#include "testutil.h"

/* D = 48 = 12 * 4 (Paley H_12 x H_4), MLP 192 = 12 * 16 */
static const char *CONFIG =
    "[model]\ninput_size = 8\nin_channels = 4\npatch_size = 2\nhidden_size = 48\ndepth = 2\n"
    "num_heads = 2\nnum_classes = 5\n";

static void make_model(rq_dit *m, uint64_t seed) {
    rq_config *cfg = rq_config_new();
    rq_err e = {0};
    rq_dit_config mc;
    if (rq_config_load_string(cfg, CONFIG, "test", &e) || rq_model_config_from(cfg, &mc, &e) ||
        rq_dit_init(m, &mc, seed, &e))
        fail_msg("%s", e.msg);
    rq_config_free(cfg);
    /* random weights everywhere (the reference init zeroes adaLN and final) */
    rq_rng r;
    rq_rng_seed(&r, seed);
    for (int i = 0; i < m->n_params; i++) rq_rng_fill_normal(&r, m->params[i]->data, m->params[i]->n, 0.15f);
}

/* Forward with no tape; returns a malloc'd copy of the output (and the
 * arena's high-water mark in *arena if given). */
static float *forward_arena(rq_dit *m, long *n_out, size_t *arena) {
    rq_graph g;
    rq_graph_init(&g, 16 << 20);
    g.grad_enabled = 0;
    int N = 3, C = m->cfg.in_channels, S = m->cfg.input_size;
    rq_tensor *x = rq_tensor_arena(&g, 4, (int[]){N, C, S, S}), *t = rq_tensor_arena(&g, 1, (int[]){N});
    rq_rng r;
    rq_rng_seed(&r, 77);
    rq_rng_fill_normal(&r, x->data, x->n, 1.0f);
    for (int i = 0; i < N; i++) t->data[i] = (float)(100 * i + 17);
    int y[3] = {0, 4, 5}; /* 5 = the null class */
    rq_tensor *out = rq_dit_forward(&g, m, x, t, y);
    if (!out) fail_msg("forward: %s", g.err.msg);
    float *copy = malloc((size_t)out->n * sizeof(float));
    memcpy(copy, out->data, (size_t)out->n * sizeof(float));
    *n_out = out->n;
    if (arena) *arena = g.arena.high_water;
    rq_graph_free(&g);
    return copy;
}

static float *forward(rq_dit *m, long *n_out) { return forward_arena(m, n_out, NULL); }

static double max_abs(const float *a, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

typedef struct {
    const char *name;
    int act_bits, adaln_bits, method, hadamard, proj_fc2_only;
    const char *map; /* precision map text or NULL */
    int lowrank;     /* rank of the low-rank branch, 0 = none */
    int attn_bits;   /* fake-quant attention matmuls, 0 = fp */
    int adaln_fp;    /* adaLN weights fp (activations still quantized) */
} variant;

static void check_variant(const char *dir, const variant *v, rq_tpack_format packing) {
    rq_dit m;
    make_model(&m, 11);
    char map_path[512] = "";
    if (v->map) {
        snprintf(map_path, sizeof map_path, "%s/%s.map", dir, v->name);
        FILE *f = fopen(map_path, "w");
        fputs(v->map, f);
        fclose(f);
    }
    rq_quant_opts q = {.enabled = 1, .weight_ternary = 1, .act_bits = v->act_bits, .adaln_act_bits = v->adaln_bits,
                       .method = v->method, .hadamard = v->hadamard, .hadamard_proj_fc2_only = v->proj_fc2_only,
                       .precision_map = map_path};
    q.lowrank_rank = v->lowrank;
    q.attn_bits = v->attn_bits;
    q.adaln_weight_fp = v->adaln_fp;
    rq_err e = {0};
    if (rq_dit_quantize(&m, &q, &e) || rq_dit_add_lowrank(&m, &q, &e) || rq_dit_lowrank_init(&m, &e))
        fail_msg("%s: %s", v->name, e.msg);
    long n1, n2;
    float *ref = forward(&m, &n1);

    char path[512];
    snprintf(path, sizeof path, "%s/%s_%s.h5", dir, v->name, rq_tpack_format_name(packing));
    rq_export_opts o = {.packing = packing, .config_text = CONFIG, .source = "test", .weights = "params"};
    rq_export_stats ws, rs;
    if (rq_export_write(path, &m, &o, &ws, &e)) fail_msg("%s: %s", v->name, e.msg);
    rq_dit x;
    if (rq_export_load(path, &x, NULL, &rs, &e)) fail_msg("%s: load: %s", v->name, e.msg);
    assert_int_equal(ws.ternary_weights, rs.ternary_weights);
    assert_int_equal(ws.packed_bytes, rs.packed_bytes);
    assert_int_equal(ws.fp_params, rs.fp_params);
    /* 2 blocks x 5 linears are ternary (4 with fp adaLN weights); embedders/final stay fp */
    assert_int_equal(rs.ternary_layers, v->adaln_fp ? 8 : 10);
    if (packing == RQ_TPACK_TRIT5) assert_true(rs.bits_per_weight <= 1.7);
    size_t arena_fused, arena_ops;
    long n3;
    float *out = forward_arena(&x, &n2, &arena_fused);
    assert_int_equal(n1, n2);
    /* the fused integer blocks (dit_infer.c) give the graph ops' floats exactly */
    assert_int_equal(x.fused_infer, 1);
    x.fused_infer = 0;
    float *ops = forward_arena(&x, &n3, &arena_ops);
    x.fused_infer = 1;
    for (long i = 0; i < n1; i++)
        if (memcmp(&out[i], &ops[i], sizeof(float))) fail_msg("%s: fused block output [%ld] %.9g, ops %.9g", v->name, i, out[i], ops[i]);
    /* every block is fused when all four block linears are integer ones
     * without a low-rank branch: its temporaries are then reused per block */
    if (v->act_bits > 0 && !v->lowrank) assert_true(arena_fused < arena_ops);
    else assert_true(arena_fused == arena_ops);
    free(ops);
    double err = 0, scale = max_abs(ref, n1);
    for (long i = 0; i < n1; i++) err = fmax(err, fabs((double)out[i] - ref[i]));
    print_message("  %-16s %-5s max|ref| %.3f  max abs diff %.3g (rel %.2g), %.3f bits/weight\n", v->name,
                  rq_tpack_format_name(packing), scale, err, err / scale, rs.bits_per_weight);
    assert_true(scale > 0.1);
    /* A1..A4: float rounding only. At 8 bits the 256-level grids are so fine
     * that a rounding-level difference in one layer can move a value across a
     * code boundary in a later one (one step = ~1% of the token rms), so the
     * bound there is one such step at the output. */
    double tol = (v->act_bits >= 8 ? 2e-3 : 1e-4) * scale;
    /* Without a low-rank branch QAT's forward already runs the integer
     * arithmetic of the export (rq_linear_codes; fp-activation layers the
     * same float GEMM), so the outputs are identical. */
    if (!v->lowrank) tol = 0;
    if (err > tol) fail_msg("%s: exported output differs by %.3g (max|ref| %.3g)", v->name, err, scale);
    free(ref), free(out);
    rq_dit_free(&x);
    rq_dit_free(&m);
}

static void test_parity(void **state) {
    const char *dir = ((tu_dir *)*state)->dir;
    const variant vs[] = {
        {"a2", 2, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 0, 0, 0},
        {"a3", 3, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 0, 0, 0},
        {"a4", 4, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 0, 0, 0},
        {"a8", 8, 8, RQ_ACTQ_ROBUST, 1, 0, NULL, 0, 0, 0},
        {"mixed", 2, 4, RQ_ACTQ_ROBUST, 1, 0,
         "blocks.0.attn.qkv 3\nblocks.0.attn.proj 1\nblocks.0.mlp.fc1 4\nblocks.1.mlp.fc2 2\nblocks.1.attn.qkv 1\n", 0, 0, 0},
        {"a2_minmax", 2, 4, RQ_ACTQ_MINMAX, 0, 0, NULL, 0, 0, 0},
        {"a4_projfc2", 4, 4, RQ_ACTQ_ROBUST, 1, 1, NULL, 0, 0, 0},
        {"w158_fp_act", 0, 0, RQ_ACTQ_ROBUST, 1, 0, NULL, 0, 0, 0},
        {"a4_lowrank8", 4, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 8, 0, 0},
        {"fp_act_lowrank4", 0, 0, RQ_ACTQ_ROBUST, 1, 0, NULL, 4, 0, 0},
        {"a2_attn8", 2, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 0, 8, 0},
        {"a4_attn4_lr4", 4, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 4, 4, 0},
        {"a2_adaln_fpw", 2, 4, RQ_ACTQ_ROBUST, 1, 0, NULL, 2, 8, 1},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        check_variant(dir, &vs[i], RQ_TPACK_TRIT5);
        check_variant(dir, &vs[i], RQ_TPACK_2BIT);
    }
}

/* ------------------------------------------------------------ validation */

static void write_export(const char *path) {
    rq_dit m;
    make_model(&m, 5);
    rq_quant_opts q = {.enabled = 1, .weight_ternary = 1, .act_bits = 2, .adaln_act_bits = 4, .hadamard = 1};
    rq_err e = {0};
    rq_export_opts o = {.packing = RQ_TPACK_TRIT5, .config_text = CONFIG};
    if (rq_dit_quantize(&m, &q, &e) || rq_export_write(path, &m, &o, NULL, &e)) fail_msg("%s", e.msg);
    rq_dit_free(&m);
}

/* Loads path and checks the error names what is wrong. */
static void expect_load_error(const char *path, const char *needle) {
    rq_dit m;
    rq_err e = {0};
    if (rq_export_load(path, &m, NULL, NULL, &e) == RQ_OK) fail_msg("loaded a broken export (%s)", needle);
    if (!strstr(e.msg, needle)) fail_msg("error '%s' does not mention '%s'", e.msg, needle);
}

static void h5_set_attr_i64(const char *file, const char *obj, const char *name, long long v) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT), o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    assert_true(f >= 0 && o >= 0 && a >= 0);
    H5Awrite(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a), H5Oclose(o), H5Fclose(f);
}

static void h5_poke_u8(const char *file, const char *dset, long index, unsigned char v) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT), d = H5Dopen(f, dset, H5P_DEFAULT);
    assert_true(f >= 0 && d >= 0);
    hid_t fs = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(fs, &n, NULL);
    unsigned char *buf = malloc(n);
    H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    buf[index] = v;
    H5Dwrite(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    free(buf);
    H5Sclose(fs), H5Dclose(d), H5Fclose(f);
}

static void h5_unlink(const char *file, const char *obj) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, obj, H5P_DEFAULT) >= 0);
    H5Fclose(f);
}

static void test_validation(void **state) {
    const char *dir = ((tu_dir *)*state)->dir;
    char p[512];
    snprintf(p, sizeof p, "%s/e.h5", dir);

    write_export(p);
    h5_set_attr_i64(p, "/", "version", 99);
    expect_load_error(p, "version");

    write_export(p);
    h5_poke_u8(p, "/layers/blocks.1.mlp.fc1/w_packed", 7, 250); /* > 242: not 5 trits */
    expect_load_error(p, "blocks.1.mlp.fc1");

    write_export(p);
    h5_set_attr_i64(p, "/layers/blocks.0.attn.proj", "a_bits", 9);
    expect_load_error(p, "a_bits");

    write_export(p);
    h5_set_attr_i64(p, "/layers/blocks.0.attn.proj", "hadamard", 20);
    expect_load_error(p, "hadamard");

    write_export(p);
    h5_unlink(p, "/layers/blocks.0.mlp.fc2/w_scale");
    expect_load_error(p, "w_scale");

    write_export(p);
    h5_unlink(p, "/fp/final_layer.linear.weight");
    expect_load_error(p, "/fp/final_layer.linear.weight");

    /* a checkpoint is not an export; a missing file names itself */
    expect_load_error("/nonexistent/x.h5", "/nonexistent/x.h5");
    assert_false(rq_export_is("/nonexistent/x.h5"));
    write_export(p);
    assert_true(rq_export_is(p));

    /* the model refuses backward through integer layers */
    rq_dit m;
    rq_err e = {0};
    assert_int_equal(rq_export_load(p, &m, NULL, NULL, &e), RQ_OK);
    rq_graph g;
    rq_graph_init(&g, 16 << 20);
    rq_tensor *x = rq_tensor_arena(&g, 4, (int[]){1, 4, 8, 8}), *t = rq_tensor_arena(&g, 1, (int[]){1});
    memset(x->data, 0, (size_t)x->n * sizeof(float));
    x->requires_grad = 1;
    t->data[0] = 3;
    int y = 1;
    assert_null(rq_dit_forward(&g, &m, x, t, &y));
    assert_non_null(strstr(g.err.msg, "forward only"));
    rq_graph_free(&g);
    rq_dit_free(&m);
}

/* ------------------------------------------------------------ tools */

static void test_tools(void **state) {
    const char *dir = ((tu_dir *)*state)->dir;
    char data[600], ini[600];
    snprintf(data, sizeof data, "%s/data.h5", dir);
    tu_write_tiny_images(data, 24, 3);
    rq_err e = {0};
    snprintf(ini, sizeof ini, "%s/tiny.ini", dir);
    FILE *f = fopen(ini, "w");
    fprintf(f,
            TU_TINY_MODEL_INI
            "[data]\npath = %s\n[train]\nbatch_size = 8\nsteps = 4\n"
            "log_every = 2\nckpt_every = 0\nout_dir = %s/run\n[sample]\nsteps = 4\nper_class = 2\n"
            "[quant]\nenabled = on\nact_bits = 2\n",
            data, dir);
    fclose(f);
    if (tu_sh("%s/robuq-train %s > %s/train.out 2>&1", ROBUQ_BIN_DIR, ini, dir)) {
        tu_sh("cat %s/train.out", dir);
        fail_msg("robuq-train failed");
    }
    if (tu_sh("%s/robuq-export %s/run/ckpt_last.h5 %s/x.h5 > %s/export.out 2>&1", ROBUQ_BIN_DIR, dir, dir, dir)) {
        tu_sh("cat %s/export.out", dir);
        fail_msg("robuq-export failed");
    }
    assert_int_equal(tu_sh("grep -q 'bits/weight' %s/export.out", dir), 0);
    if (tu_sh("%s/robuq-sample %s/x.h5 --out %s/x.png > %s/sample.out 2>&1", ROBUQ_BIN_DIR, dir, dir, dir)) {
        tu_sh("cat %s/sample.out", dir);
        fail_msg("robuq-sample on the export failed");
    }
    assert_int_equal(tu_sh("grep -q 'integer kernels' %s/sample.out", dir), 0);
    char png[700];
    snprintf(png, sizeof png, "%s/x.png", dir);
    assert_int_equal(access(png, F_OK), 0);
    /* errors: an fp checkpoint has nothing to pack; usage errors exit 2; no partial output */
    assert_int_equal(tu_sh("%s/robuq-train %s --set quant.enabled=off --set train.out_dir=%s/fp > /dev/null 2>&1",
                        ROBUQ_BIN_DIR, ini, dir), 0);
    assert_int_equal(tu_sh("%s/robuq-export %s/fp/ckpt_last.h5 %s/y.h5 2> %s/e.out", ROBUQ_BIN_DIR, dir, dir, dir), 1);
    assert_int_equal(tu_sh("grep -q 'no ternary layers' %s/e.out", dir), 0);
    snprintf(png, sizeof png, "%s/y.h5", dir);
    assert_int_equal(access(png, F_OK), -1);
    assert_int_equal(tu_sh("%s/robuq-export %s/x.h5 2> /dev/null", ROBUQ_BIN_DIR, dir), 2);

    /* low-rank branch: QAT from the fp run, 4 steps straight == 2 + resume 2 */
    const char *lr = "--set quant.lowrank_rank=4 --set train.steps=4";
    assert_int_equal(tu_sh("%s/robuq-train %s %s --set train.init_from=%s/fp/ckpt_last.h5 --set train.out_dir=%s/lr "
                        "> %s/lr.out 2>&1", ROBUQ_BIN_DIR, ini, lr, dir, dir, dir), 0);
    assert_int_equal(tu_sh("grep -q 'low-rank branch of rank 4' %s/lr/train.log", dir), 0);
    assert_int_equal(tu_sh("%s/robuq-train %s %s --set train.init_from=%s/fp/ckpt_last.h5 --set train.out_dir=%s/lr2 "
                        "--set train.steps=2 > /dev/null 2>&1", ROBUQ_BIN_DIR, ini, lr, dir, dir), 0);
    assert_int_equal(tu_sh("%s/robuq-train %s %s --set train.init_from=%s/fp/ckpt_last.h5 --set train.out_dir=%s/lr2 "
                        "> /dev/null 2>&1", ROBUQ_BIN_DIR, ini, lr, dir, dir), 0);
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/lr/ckpt_last.h5", dir);
    snprintf(b, sizeof b, "%s/lr2/ckpt_last.h5", dir);
    rq_h5_reader *ra = rq_h5r_open(a, &e), *rb = rq_h5r_open(b, &e);
    assert_non_null(ra);
    assert_non_null(rb);
    float la[4], lb[4], fa[32 * 4], fb[32 * 4];
    assert_int_equal(rq_h5r_read_f32(ra, "/log/loss", la, 4, &e), RQ_OK);
    assert_int_equal(rq_h5r_read_f32(rb, "/log/loss", lb, 4, &e), RQ_OK);
    assert_memory_equal(la, lb, sizeof la);
    /* the factors are trained parameters with Adam state and EMA */
    assert_int_equal(rq_h5r_read_f32(ra, "/params/blocks.1.mlp.fc2.lowrank_A", fa, 32 * 4, &e), RQ_OK);
    assert_int_equal(rq_h5r_read_f32(rb, "/params/blocks.1.mlp.fc2.lowrank_A", fb, 32 * 4, &e), RQ_OK);
    assert_memory_equal(fa, fb, sizeof fa);
    assert_int_equal(rq_h5r_exists(ra, "/optim/v/blocks.0.attn.qkv.lowrank_B"), 1);
    assert_int_equal(rq_h5r_exists(ra, "/ema/blocks.0.adaLN_modulation.1.lowrank_B"), 1);
    rq_h5r_close(ra), rq_h5r_close(rb);
    /* export carries the branch; sampling the export works */
    assert_int_equal(tu_sh("%s/robuq-export %s/lr/ckpt_last.h5 %s/lr.h5 > /dev/null 2>&1 && "
                        "%s/robuq-sample %s/lr.h5 --out %s/lr.png > /dev/null 2>&1",
                        ROBUQ_BIN_DIR, dir, dir, ROBUQ_BIN_DIR, dir, dir), 0);
    assert_int_equal(tu_sh("%s/robuq-export a b --packing 3bit 2> /dev/null", ROBUQ_BIN_DIR), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parity, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_validation, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_tools, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
