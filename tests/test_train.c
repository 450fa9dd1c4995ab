/* test_train.c: end-to-end runs of the tools on a tiny synthetic dataset:
 * robuq-train (FP and QAT from an FP checkpoint), exact resume (a run stopped
 * half way and restarted gives bit-identical losses and weights), robuq-sample,
 * and the tools' error handling (exit codes, one-line messages). */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "robuq/dataset.h"
#include "robuq/h5io.h"
#include "robuq/image.h"
#include "robuq/train.h"
#include "testutil.h"

#define TRAIN ROBUQ_BIN_DIR "/robuq-train"
#define SAMPLE ROBUQ_BIN_DIR "/robuq-sample"

static char g_dir[64];


static int setup(void **state) {
    strcpy(g_dir, "/tmp/rqtrainXXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char path[128], cfg[160];
    snprintf(path, sizeof path, "%s/data.h5", g_dir);
    tu_write_tiny_images(path, 48, 1); /* 48 random 8x8 gray images in 3 classes */
    snprintf(cfg, sizeof cfg, "%s/tiny.ini", g_dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            TU_TINY_MODEL_INI
            "[data]\npath = %s\nval_path = %s\n"
            "[train]\nbatch_size = 8\nsteps = 6\nlr = 1e-3\nlog_every = 1\nckpt_every = 0\nema_decay = 0.9\n"
            "val_every = 3\n[sample]\nsteps = 5\nper_class = 2\n",
            path, path);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    return tu_rmtree(g_dir) == 0 ? 0 : -1;
}

static float *read_arr(const char *file, const char *path, long *n) {
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(file, &e);
    if (!r) fail_msg("%s", e.msg);
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    if (rq_h5r_shape(r, path, &nd, sh, &e)) fail_msg("%s", e.msg);
    *n = 1;
    for (int i = 0; i < nd; i++) *n *= sh[i];
    float *buf = malloc((size_t)*n * sizeof(float));
    if (rq_h5r_read_f32(r, path, buf, *n, &e)) fail_msg("%s", e.msg);
    rq_h5r_close(r);
    return buf;
}

static void train(const char *out, const char *extra, int expect_rc) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/tiny.ini --set train.out_dir=%s/%s %s > %s/%s.out 2>&1", TRAIN, g_dir, g_dir,
             out, extra, g_dir, out);
    int rc = tu_sh("%s", cmd);
    if (rc != expect_rc) {
        snprintf(cmd, sizeof cmd, "cat %s/%s.out", g_dir, out);
        tu_sh("%s", cmd);
        fail_msg("robuq-train %s exited %d, expected %d", extra, rc, expect_rc);
    }
}

static void test_resume_is_exact(void **state) {
    train("full", "", 0);
    train("half", "--set train.steps=3", 0);
    train("half", "", 0); /* resumes from step 3 to 6 */
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/full/ckpt_last.h5", g_dir);
    snprintf(b, sizeof b, "%s/half/ckpt_last.h5", g_dir);
    long na, nb;
    float *la = read_arr(a, "/log/loss", &na), *lb = read_arr(b, "/log/loss", &nb);
    assert_int_equal(na, 6);
    assert_int_equal(nb, 6);
    for (int i = 0; i < 6; i++) {
        assert_true(isfinite(la[i]));
        if (la[i] != lb[i]) fail_msg("step %d: loss %.9g uninterrupted vs %.9g resumed", i + 1, la[i], lb[i]);
    }
    const char *names[] = {"/params/blocks.1.mlp.fc2.weight", "/ema/final_layer.linear.weight",
                           "/optim/v/blocks.0.attn.qkv.weight"};
    for (int k = 0; k < 3; k++) {
        float *pa = read_arr(a, names[k], &na), *pb = read_arr(b, names[k], &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(pa, pb, (size_t)na * sizeof(float));
        free(pa), free(pb);
    }
    free(la), free(lb);
    /* the run directory has what the README promises */
    const char *files[] = {"config.ini", "train.log", "loss.png", "samples_final.png"};
    for (int k = 0; k < 4; k++) {
        char p[256];
        snprintf(p, sizeof p, "%s/full/%s", g_dir, files[k]);
        if (access(p, F_OK)) fail_msg("missing %s", p);
    }
}

/* train.recompute = on: the same run (losses and weights) as the plain tape,
 * up to the order in which each block's input gradient is summed. */
static void test_recompute_matches(void **state) {
    train("full_rc", "--set train.recompute=on", 0);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/full/ckpt_last.h5", g_dir);
    snprintf(b, sizeof b, "%s/full_rc/ckpt_last.h5", g_dir);
    long na, nb;
    float *la = read_arr(a, "/log/loss", &na), *lb = read_arr(b, "/log/loss", &nb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++)
        if (fabsf(la[i] - lb[i]) > 1e-5f * fabsf(la[i])) fail_msg("step %d: loss %.9g vs %.9g with recompute", i + 1, la[i], lb[i]);
    float *pa = read_arr(a, "/params/blocks.0.attn.qkv.weight", &na), *pb = read_arr(b, "/params/blocks.0.attn.qkv.weight", &nb);
    float mx = 0, d = 0;
    for (long i = 0; i < na; i++) mx = fmaxf(mx, fabsf(pa[i])), d = fmaxf(d, fabsf(pa[i] - pb[i]));
    if (d > 1e-4f * mx) fail_msg("qkv weight differs by %.3g (max %.3g) with recompute", d, mx);
    free(la), free(lb), free(pa), free(pb);
    char log[256];
    snprintf(log, sizeof log, "grep -q 'activation recomputation' %s/full_rc/train.log", g_dir);
    assert_int_equal(tu_sh("%s", log), 0);
}

static void test_qat_from_fp(void **state) {
    char extra[512];
    snprintf(extra, sizeof extra,
             "--set train.init_from=%s/full/ckpt_last.h5 --set quant.enabled=on --set quant.act_bits=2 "
             "--set train.steps=2", g_dir);
    train("qat", extra, 0);
    char p[256];
    snprintf(p, sizeof p, "%s/qat/ckpt_last.h5", g_dir);
    long n;
    float *l = read_arr(p, "/log/loss", &n);
    assert_int_equal(n, 2);
    assert_true(isfinite(l[0]) && isfinite(l[1]));
    free(l);
    /* with the FP teacher: runs, and the extra term changes the loss */
    snprintf(extra, sizeof extra,
             "--set train.init_from=%s/full/ckpt_last.h5 --set quant.enabled=on --set quant.act_bits=2 "
             "--set train.steps=2 --set quant.distill_weight=10", g_dir);
    train("qat_kd", extra, 0);
    snprintf(p, sizeof p, "%s/qat_kd/ckpt_last.h5", g_dir);
    float *lk = read_arr(p, "/log/loss", &n);
    snprintf(p, sizeof p, "%s/qat/ckpt_last.h5", g_dir);
    float *l0 = read_arr(p, "/log/loss", &n);
    assert_true(isfinite(lk[0]) && lk[0] > l0[0]); /* same batch, plus a positive distillation term */
    free(lk), free(l0);
    /* distillation without a teacher is a config error */
    train("kd_err", "--set quant.distill_weight=1", 1);
}

static void test_sample_png(void **state) {
    char cmd[512], png[256];
    snprintf(png, sizeof png, "%s/grid.png", g_dir);
    snprintf(cmd, sizeof cmd, "%s %s/full/ckpt_last.h5 --class 0,2 --per-class 3 --steps 4 --out %s 2>/dev/null",
             SAMPLE, g_dir, png);
    assert_int_equal(tu_sh("%s", cmd), 0);
    uint8_t *px;
    int w, h, c;
    rq_err e = {0};
    assert_int_equal(rq_png_read(png, &px, &w, &h, &c, &e), RQ_OK);
    /* 3 columns x 2 rows of 8x8 tiles with 2-pixel padding */
    assert_int_equal(w, 3 * 8 + 4 * RQ_GRID_PAD);
    assert_int_equal(h, 2 * 8 + 3 * RQ_GRID_PAD);
    free(px);
    snprintf(cmd, sizeof cmd, "%s %s/full/ckpt_last.h5 --class 7 --steps 2 --out %s 2>/dev/null", SAMPLE, g_dir, png);
    assert_int_equal(tu_sh("%s", cmd), 1); /* class outside the model */
    snprintf(cmd, sizeof cmd, "%s %s/full/ckpt_last.h5 --steps x 2>/dev/null", SAMPLE, g_dir);
    assert_int_equal(tu_sh("%s", cmd), 2);
    snprintf(cmd, sizeof cmd, "%s %s/tiny.ini 2>/dev/null", SAMPLE, g_dir); /* not a checkpoint */
    assert_int_equal(tu_sh("%s", cmd), 1);
}

static void test_train_errors(void **state) {
    train("e1", "--set train.lrr=1", 1);
    train("e2", "--bogus", 2);
    train("e3", "--set data.path=/nonexistent.h5", 1);
    char p[256], line[512];
    snprintf(p, sizeof p, "%s/e1.out", g_dir);
    FILE *f = fopen(p, "r");
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(strstr(line, "unknown key 'lrr'"));
    assert_non_null(strstr(line, "did you mean 'lr'"));
    snprintf(p, sizeof p, "%s/e3.out", g_dir);
    f = fopen(p, "r");
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(strstr(line, "/nonexistent.h5"));
}

/* Every shipped config parses and yields a valid model and quantizer setup;
 * the presets have the reference sizes (DiT-XL/2: 675M parameters, 118.6
 * GMACs per 32x32x4 forward; checked without allocating it). */
static void test_shipped_configs(void **state) {
    const char *names[] = {"fmnist_demo", "fmnist_qat_a4", "fmnist_qat_a3", "fmnist_qat_a2", "dit_s2",
                           "dit_b2", "dit_l2", "dit_xl2", "dit_xl2_a4", "dit_xl2_a3", "dit_xl2_a2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/configs/%s.ini", ROBUQ_SOURCE_DIR, names[i]);
        rq_config *cfg = rq_config_new();
        rq_err e = {0};
        rq_dit_config mc;
        rq_quant_opts qo;
        if (rq_config_load(cfg, path, &e) || rq_model_config_from(cfg, &mc, &e) || rq_quant_opts_from(cfg, &qo, &e))
            fail_msg("%s: %s", names[i], e.msg);
        if (!strcmp(names[i], "dit_xl2")) {
            /* parameter count by formula: embedders, blocks, final layer */
            double D = mc.hidden_size, p2c = mc.patch_size * mc.patch_size * mc.in_channels, H = 4 * D;
            double params = p2c * D + D + 256 * D + D + D * D + D + (mc.num_classes + 1) * D +
                            mc.depth * (3 * D * D + 3 * D + D * D + D + D * H + H + H * D + D + 6 * D * D + 6 * D) +
                            2 * D * D + 2 * D + D * mc.patch_size * mc.patch_size * 2 * mc.in_channels +
                            mc.patch_size * mc.patch_size * 2 * mc.in_channels;
            assert_true(fabs(params - 675e6) < 1e6);
        }
        if (!strncmp(names[i], "dit_xl2_a", 9)) assert_true(qo.enabled && qo.weight_ternary && qo.hadamard);
        rq_config_free(cfg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_recompute_matches),
        cmocka_unit_test(test_qat_from_fp),
        cmocka_unit_test(test_sample_png),
        cmocka_unit_test(test_train_errors),
        cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
