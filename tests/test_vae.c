/* test_vae.c: the conv2d / GroupNorm / upsampling kernels against plain
 * double loops (every ISA), and the VAE decoder against the PyTorch dump
 * written by tests/ref/gen_vae_ref.py: a tiny AutoencoderKL-shaped decoder
 * (block_out_channels 8,8,16,16, 3 resnets per up block, 4 groups) on
 * 2 x 4 x 4 x 6 latents, under diffusers names (new and old attention names)
 * and ldm names. Also the loader's messages for missing and mis-shaped
 * tensors. */
#include <omp.h>
#include <string.h>

#include "testutil.h"

#include "robuq/conv2d.h"
#include "robuq/dataset.h"
#include "robuq/image.h"
#include "robuq/gemm.h"
#include "robuq/h5io.h"
#include "robuq/safetensors.h"
#include "robuq/vae.h"

#define REF_DIR ROBUQ_TEST_DIR "/ref/"
#define REF_H5 REF_DIR "vae_tiny_ref.h5"
#define REF_ST REF_DIR "vae_tiny.safetensors"
#define REF_LDM REF_DIR "vae_tiny_ldm.safetensors"

/* Documented tolerance: max |c - ref| <= 1e-4 * max |ref| (float32 vs the float64 reference) */
#define VAE_TOL 1e-4

static const rq_gemm_isa k_isas[] = {RQ_GEMM_SCALAR, RQ_GEMM_AVX2, RQ_GEMM_AVX512};

static double max_abs_diff(const float *a, const double *b, long n, double *bmax) {
    double d = 0, m = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN propagates as a failure */
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    if (bmax) *bmax = m;
    return d;
}

static double max_abs_diff_f(const float *a, const float *b, long n) {
    double d = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

static double max_abs(const float *a, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* ------------------------------------------------------------------ kernels */

static void check_conv(int cin, int cout, int h, int w, int up, int k, int accumulate, int with_bias,
                       size_t col_cap, uint64_t seed) {
    int oh = h * up, ow = w * up;
    long nx = (long)cin * h * w, ny = (long)cout * oh * ow, nw = (long)cout * cin * k * k;
    float *x = malloc(nx * sizeof(float)), *wt = malloc(nw * sizeof(float)), *b = malloc(cout * sizeof(float));
    float *y = malloc(ny * sizeof(float)), *yr = malloc(ny * sizeof(float));
    size_t cap = col_cap ? col_cap : rq_conv2d_col_min(cin, k, up, w) * oh;
    float *col = malloc((cap ? cap : 1) * sizeof(float));
    uint64_t s = seed;
    tu_fill(&s, x, nx, -1, 1);
    tu_fill(&s, wt, nw, -1, 1);
    tu_fill(&s, b, cout, -1, 1);
    tu_fill(&s, yr, ny, -1, 1);
    float *ref = malloc(ny * sizeof(float));
    memcpy(ref, yr, ny * sizeof(float));
    rq_conv2d_ref(x, cin, h, w, up, wt, with_bias ? b : NULL, cout, k, ref, accumulate);
    for (size_t ii = 0; ii < sizeof k_isas / sizeof *k_isas; ii++) {
        rq_gemm_isa got = rq_gemm_set_isa(k_isas[ii]);
        if (got != k_isas[ii]) continue; /* CPU lacks it */
        memcpy(y, yr, ny * sizeof(float));
        rq_err err = {0};
        assert_int_equal(rq_conv2d(x, cin, h, w, up, wt, with_bias ? b : NULL, cout, k, y, accumulate, col, cap,
                                   &err),
                         RQ_OK);
        double d = max_abs_diff_f(y, ref, ny), m = max_abs(ref, ny);
        if (!(d <= 1e-5 * (m > 1 ? m : 1))) {
            print_error("conv cin=%d cout=%d %dx%d up=%d k=%d acc=%d bias=%d cap=%zu isa=%s: diff %g (max %g)\n", cin,
                        cout, h, w, up, k, accumulate, with_bias, cap, rq_gemm_isa_name(got), d, m);
            fail();
        }
    }
    rq_gemm_set_isa(RQ_GEMM_AUTO);
    free(x), free(wt), free(b), free(y), free(yr), free(col), free(ref);
}

static void test_conv2d(void **state) {
    (void)state;
    /* odd sizes (tails of every SIMD loop), both kernels, upsampling, bias, accumulation,
     * one-row bands (smallest workspace) and whole-image bands */
    check_conv(5, 7, 6, 9, 1, 3, 0, 1, 0, 1);
    check_conv(5, 7, 6, 9, 2, 3, 0, 1, 0, 2);
    check_conv(5, 7, 6, 9, 1, 1, 0, 1, 0, 3);
    check_conv(5, 7, 6, 9, 2, 1, 1, 1, 0, 4);
    check_conv(3, 17, 5, 33, 1, 3, 1, 0, 0, 5);
    check_conv(6, 4, 7, 5, 1, 3, 0, 1, rq_conv2d_col_min(6, 3, 1, 5), 6);     /* 1-row bands */
    check_conv(6, 4, 7, 5, 2, 3, 1, 1, rq_conv2d_col_min(6, 3, 2, 5) * 3, 7); /* 3-row bands, ragged end */
    check_conv(40, 36, 12, 10, 1, 3, 0, 1, 0, 8);
    /* large enough for the threaded im2col / GEMM / bias paths */
    check_conv(48, 40, 24, 30, 1, 3, 1, 1, 0, 10);
    check_conv(32, 24, 16, 20, 2, 3, 0, 1, rq_conv2d_col_min(32, 3, 2, 20) * 7, 11);
    check_conv(256, 96, 40, 50, 1, 1, 0, 1, 0, 12);
    check_conv(1, 1, 1, 1, 2, 3, 0, 1, 0, 9);
}

static void test_conv2d_errors(void **state) {
    (void)state;
    float x[16] = {0}, w[9 * 4] = {0}, y[64], col[8];
    rq_err err = {0};
    assert_int_equal(rq_conv2d(x, 1, 2, 2, 1, w, NULL, 1, 5, y, 0, col, 8, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "kernel size 5"));
    rq_err_clear(&err);
    assert_int_equal(rq_conv2d(x, 1, 2, 2, 3, w, NULL, 1, 3, y, 0, col, 8, &err), RQ_EINVAL);
    rq_err_clear(&err);
    /* 2 channels x 9 x width 4 = 72 floats needed for one row, 8 given */
    assert_int_equal(rq_conv2d(x, 2, 2, 2, 2, w, NULL, 1, 3, y, 0, col, 8, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "needs at least 72"));
    rq_err_clear(&err);
    assert_int_equal(rq_conv2d(NULL, 1, 2, 2, 1, w, NULL, 1, 3, y, 0, col, 8, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_group_norm(x, 6, 2, 4, 1e-6f, NULL, NULL, 0, y, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "groups must divide"));
    rq_err_clear(&err);
    assert_int_equal(rq_upsample_nearest2x(x, 0, 2, 2, y, &err), RQ_EINVAL);
}

static void check_gn_off(int c, long hw, int groups, int silu, int inplace, uint64_t seed, float offset) {
    long n = c * hw;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *r = malloc(n * sizeof(float));
    float *g = malloc(c * sizeof(float)), *b = malloc(c * sizeof(float));
    uint64_t s = seed;
    tu_fill(&s, x, n, -3 + offset, 5 + offset); /* nonzero mean */
    tu_fill(&s, g, c, 0.5f, 1.5f);
    tu_fill(&s, b, c, -0.5f, 0.5f);
    rq_group_norm_ref(x, c, hw, groups, 1e-6f, g, b, silu, r);
    for (size_t ii = 0; ii < sizeof k_isas / sizeof *k_isas; ii++) {
        rq_gemm_isa got = rq_gemm_set_isa(k_isas[ii]);
        if (got != k_isas[ii]) continue;
        rq_err err = {0};
        float *out = y;
        if (inplace) memcpy(y, x, n * sizeof(float));
        assert_int_equal(rq_group_norm(inplace ? y : x, c, hw, groups, 1e-6f, g, b, silu, out, &err), RQ_OK);
        double d = max_abs_diff_f(out, r, n);
        if (!(d <= 2e-5)) {
            print_error("groupnorm c=%d hw=%ld groups=%d silu=%d isa=%s: diff %g\n", c, hw, groups, silu,
                        rq_gemm_isa_name(got), d);
            fail();
        }
    }
    rq_gemm_set_isa(RQ_GEMM_AUTO);
    free(x), free(y), free(r), free(g), free(b);
}

static void check_gn(int c, long hw, int groups, int silu, int inplace, uint64_t seed) {
    check_gn_off(c, hw, groups, silu, inplace, seed, 0.0f);
}

static void test_group_norm(void **state) {
    (void)state;
    check_gn(12, 37, 4, 0, 0, 11);
    check_gn(12, 37, 3, 1, 1, 12);
    check_gn(12, 37, 12, 1, 0, 13);
    check_gn(8, 5000, 2, 1, 0, 14); /* several float blocks per group */
    check_gn(64, 300, 32, 1, 1, 15);
    check_gn(64, 4500, 32, 1, 0, 16); /* threaded */
    check_gn_off(4, 20000, 2, 0, 0, 17, 300.0f); /* mean 300 x the spread: no cancellation */
}

static void test_upsample(void **state) {
    (void)state;
    /* nearest 2x by hand, and the fused conv equals conv(upsample(x)) */
    const int c = 3, h = 4, w = 5, cout = 4;
    float x[60], up[240], wt[4 * 3 * 9], b[4], y1[4 * 80], y2[4 * 80], col[3 * 9 * 80];
    uint64_t s = 21;
    tu_fill(&s, x, 60, -1, 1);
    tu_fill(&s, wt, 108, -1, 1);
    tu_fill(&s, b, 4, -1, 1);
    rq_err err = {0};
    assert_int_equal(rq_upsample_nearest2x(x, c, h, w, up, &err), RQ_OK);
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < 2 * h; i++)
            for (int j = 0; j < 2 * w; j++)
                assert_true(up[(ch * 2 * h + i) * 2 * w + j] == x[(ch * h + i / 2) * w + j / 2]);
    assert_int_equal(rq_conv2d(x, c, h, w, 2, wt, b, cout, 3, y1, 0, col, sizeof col / sizeof *col, &err), RQ_OK);
    assert_int_equal(rq_conv2d(up, c, 2 * h, 2 * w, 1, wt, b, cout, 3, y2, 0, col, sizeof col / sizeof *col, &err),
                     RQ_OK);
    assert_true(max_abs_diff_f(y1, y2, cout * 80) <= 1e-6);
}

/* ------------------------------------------------------------------ decoder */

typedef struct {
    int n, c, h, w, oc, oh, ow;
    float *lat;
    double *raw, *img; /* float64 reference outputs */
    int groups;
    int ch[8], nch, layers;
} ref_data;

static void ref_load(ref_data *r) {
    rq_err err = {0};
    rq_h5_reader *h = rq_h5r_open(REF_H5, &err);
    if (!h) {
        print_error("%s\n", err.msg);
        fail();
    }
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    assert_int_equal(rq_h5r_shape(h, "/inputs/latents", &nd, sh, &err), RQ_OK);
    r->n = sh[0], r->c = sh[1], r->h = sh[2], r->w = sh[3];
    assert_int_equal(rq_h5r_shape(h, "/outputs/image_raw_f64", &nd, sh, &err), RQ_OK);
    r->oc = sh[1], r->oh = sh[2], r->ow = sh[3];
    long nl = (long)r->n * r->c * r->h * r->w, no = (long)r->n * r->oc * r->oh * r->ow;
    r->lat = malloc(nl * sizeof(float));
    r->raw = malloc(no * sizeof(double));
    r->img = malloc(no * sizeof(double));
    assert_int_equal(rq_h5r_read_f32(h, "/inputs/latents", r->lat, nl, &err), RQ_OK);
    assert_int_equal(rq_h5r_read(h, "/outputs/image_raw_f64", RQ_H5_F64, r->raw, no, &err), RQ_OK);
    assert_int_equal(rq_h5r_read(h, "/outputs/image_f64", RQ_H5_F64, r->img, no, &err), RQ_OK);
    int64_t v;
    assert_int_equal(rq_h5r_get_i64(h, NULL, "norm_num_groups", &v, &err), RQ_OK);
    r->groups = (int)v;
    assert_int_equal(rq_h5r_get_i64(h, NULL, "layers_per_block", &v, &err), RQ_OK);
    r->layers = (int)v;
    assert_int_equal(rq_h5r_get_ints(h, NULL, "block_out_channels", r->ch, 8, &r->nch, &err), RQ_OK);
    rq_h5r_close(h);
}

static void ref_free(ref_data *r) { free(r->lat), free(r->raw), free(r->img); }

/* Loads path with the inferred config (+ the reference's group count), checks
 * the inferred architecture, decodes raw and clamped, compares. */
static void check_decode_file(const char *path, const ref_data *r, int all_isas) {
    rq_err err = {0};
    rq_safetensors st;
    assert_int_equal(rq_st_open(path, &st, &err), RQ_OK);
    rq_vae_config cfg;
    rq_vae_layout layout;
    char prefix[32];
    if (rq_vae_config_infer(&st, &cfg, &layout, prefix, sizeof prefix, &err)) {
        print_error("%s\n", err.msg);
        fail();
    }
    assert_int_equal(cfg.latent_channels, r->c);
    assert_int_equal(cfg.out_channels, r->oc);
    assert_int_equal(cfg.nlevels, r->nch);
    for (int i = 0; i < r->nch; i++) assert_int_equal(cfg.block_out_channels[i], r->ch[i]);
    assert_int_equal(cfg.layers_per_block, r->layers);
    assert_int_equal(cfg.mid_attention, 1);
    assert_int_equal(cfg.post_quant_conv, 1);
    assert_int_equal(cfg.norm_groups, 32); /* not in the file: SD's default */
    cfg.norm_groups = r->groups;
    rq_vae *vae = NULL;
    if (rq_vae_load_st(&st, &cfg, &vae, &err)) {
        print_error("%s: %s\n", path, err.msg);
        fail();
    }
    rq_st_close(&st);
    assert_int_equal(rq_vae_upscale(vae), r->oh / r->h);
    long no = (long)r->n * r->oc * r->oh * r->ow;
    float *out = malloc(no * sizeof(float));
    for (size_t ii = 0; ii < sizeof k_isas / sizeof *k_isas; ii++) {
        rq_gemm_isa got = rq_gemm_set_isa(all_isas ? k_isas[ii] : RQ_GEMM_AUTO);
        if (all_isas && got != k_isas[ii]) continue;
        if (!all_isas && ii) break;
        for (int clamp = 0; clamp <= 1; clamp++) {
            rq_vae_set_output(vae, 0.18215f, clamp);
            if (rq_vae_decode(vae, r->lat, r->n, r->h, r->w, out, &err)) {
                print_error("%s\n", err.msg);
                fail();
            }
            double m, d = max_abs_diff(out, clamp ? r->img : r->raw, no, &m);
            print_message("  %s [%s, %s] clamp=%d: max|ref| %.3f, max abs err %.2e (rel %.2e)\n",
                          strrchr(path, '/') + 1, layout == RQ_VAE_LDM ? "ldm" : "diffusers",
                          rq_gemm_isa_name(got), clamp, m, d, d / m);
            assert_true(clamp ? m == 1.0 : m > 2.0); /* the reference is not degenerate */
            assert_true(d <= VAE_TOL * m);
        }
    }
    rq_gemm_set_isa(RQ_GEMM_AUTO);
    rq_vae_free(vae);
    /* the comparison can fail: 8 groups instead of 4 (also valid) is far off */
    cfg.norm_groups = 2 * r->groups;
    assert_int_equal(rq_vae_load(path, &cfg, &vae, &err), RQ_OK);
    rq_vae_set_output(vae, 0.18215f, 0);
    assert_int_equal(rq_vae_decode(vae, r->lat, r->n, r->h, r->w, out, &err), RQ_OK);
    double m, d = max_abs_diff(out, r->raw, no, &m);
    assert_true(d > 100 * VAE_TOL * m);
    free(out);
    rq_vae_free(vae);
}

static void test_decode_diffusers(void **state) {
    (void)state;
    ref_data r;
    ref_load(&r);
    check_decode_file(REF_ST, &r, 1);
    ref_free(&r);
}

static void test_decode_ldm(void **state) {
    (void)state;
    ref_data r;
    ref_load(&r);
    check_decode_file(REF_LDM, &r, 0);
    ref_free(&r);
}

/* Copy of the reference file with a name map / one tensor dropped / one
 * reshaped (same data), written with rq_st_write. */
typedef struct {
    const char *from, *to;
} rename_rule;

static void rewrite(const char *dst, const rename_rule *rules, int nrules, const char *drop, const char *reshape,
                    const int64_t *new_shape, int new_ndim) {
    rq_err err = {0};
    rq_safetensors st;
    assert_int_equal(rq_st_open(REF_ST, &st, &err), RQ_OK);
    int n = 0;
    char **names = calloc(st.n, sizeof *names);
    int *ndims = calloc(st.n, sizeof *ndims);
    const int64_t **shapes = calloc(st.n, sizeof *shapes);
    float **data = calloc(st.n, sizeof *data);
    for (int i = 0; i < st.n; i++) {
        const rq_st_tensor *t = &st.tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", t->name);
        for (int k = 0; k < nrules; k++) {
            char *p = strstr(buf, rules[k].from);
            if (p) {
                char tail[256];
                snprintf(tail, sizeof tail, "%s", p + strlen(rules[k].from));
                snprintf(p, sizeof buf - (p - buf), "%s%s", rules[k].to, tail);
            }
        }
        names[n] = strdup(buf);
        ndims[n] = t->ndim;
        shapes[n] = t->shape;
        if (reshape && !strcmp(t->name, reshape)) ndims[n] = new_ndim, shapes[n] = new_shape;
        data[n] = malloc((rq_st_numel(t) + 1) * sizeof(float));
        assert_int_equal(rq_st_read_f32(&st, t, data[n], &err), RQ_OK);
        n++;
    }
    assert_int_equal(rq_st_write(dst, n, (const char *const *)names, ndims, shapes, (const float *const *)data,
                                 RQ_ST_F32, &err),
                     RQ_OK);
    for (int i = 0; i < n; i++) free(names[i]), free(data[i]);
    free(names), free(ndims), free(shapes), free(data);
    rq_st_close(&st);
}

static void test_decode_old_attention_names(void **state) {
    /* diffusers checkpoints converted before the Attention refactor name the
     * mid-block projections query/key/value/proj_attn */
    const char *dir = ((tu_dir *)*state)->dir;
    char path[512];
    snprintf(path, sizeof path, "%s/old.safetensors", dir);
    static const rename_rule rules[] = {{"attentions.0.to_q.", "attentions.0.query."},
                                        {"attentions.0.to_k.", "attentions.0.key."},
                                        {"attentions.0.to_v.", "attentions.0.value."},
                                        {"attentions.0.to_out.0.", "attentions.0.proj_attn."}};
    rewrite(path, rules, 4, NULL, NULL, NULL, 0);
    ref_data r;
    ref_load(&r);
    check_decode_file(path, &r, 0);
    ref_free(&r);
}

static rq_status load_tiny(const char *path, rq_err *err) {
    rq_safetensors st;
    rq_status s = rq_st_open(path, &st, err);
    if (s) return s;
    rq_vae_config cfg;
    s = rq_vae_config_infer(&st, &cfg, NULL, NULL, 0, err);
    rq_vae *vae = NULL;
    if (!s) {
        cfg.norm_groups = 4;
        s = rq_vae_load_st(&st, &cfg, &vae, err);
    }
    if (!s) assert_non_null(vae);
    else assert_null(vae);
    rq_vae_free(vae);
    rq_st_close(&st);
    return s;
}

static void expect_msg(rq_status got, rq_status want, const rq_err *err, const char *needle) {
    if (got != want || !strstr(err->msg, needle)) {
        print_error("status %d (want %d), message '%s', wanted '%s'\n", got, want, err->msg, needle);
        fail();
    }
}

static void test_load_errors(void **state) {
    const char *dir = ((tu_dir *)*state)->dir;
    char path[512];
    rq_err err = {0};
    /* a missing tensor is named */
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    rewrite(path, NULL, 0, "decoder.up_blocks.1.resnets.2.conv2.bias", NULL, NULL, 0);
    expect_msg(load_tiny(path, &err), RQ_EFORMAT, &err, "missing tensor 'decoder.up_blocks.1.resnets.2.conv2.bias'");
    assert_non_null(strstr(err.msg, "missing.safetensors"));
    /* a missing attention projection names both accepted names */
    rq_err_clear(&err);
    rewrite(path, NULL, 0, "decoder.mid_block.attentions.0.to_v.weight", NULL, NULL, 0);
    expect_msg(load_tiny(path, &err), RQ_EFORMAT, &err,
               "'decoder.mid_block.attentions.0.to_v.weight' (or 'decoder.mid_block.attentions.0.value.weight'");
    /* a wrong shape names the tensor, its shape and the expected one */
    rq_err_clear(&err);
    snprintf(path, sizeof path, "%s/shape.safetensors", dir);
    static const int64_t transposed[4] = {16, 8, 1, 1};
    rewrite(path, NULL, 0, NULL, "decoder.up_blocks.2.resnets.0.conv_shortcut.weight", transposed, 4);
    expect_msg(load_tiny(path, &err), RQ_ESHAPE, &err,
               "tensor 'decoder.up_blocks.2.resnets.0.conv_shortcut.weight' has shape [16,8,1,1], expected [8,16,1,1]");
    rq_err_clear(&err);
    static const int64_t flat[1] = {16 * 16};
    rewrite(path, NULL, 0, NULL, "decoder.mid_block.attentions.0.to_q.weight", flat, 1);
    expect_msg(load_tiny(path, &err), RQ_ESHAPE, &err, "has shape [256], expected [16,16] (or with trailing 1x1)");
    /* groups that do not divide the channels: SD's default 32 on the tiny model */
    rq_err_clear(&err);
    rq_vae *vae = NULL;
    expect_msg(rq_vae_load(REF_ST, NULL, &vae, &err), RQ_EINVAL, &err,
               "norm_groups 32 does not divide block_out_channels[0] = 8");
    assert_null(vae);
    /* not a VAE at all */
    rq_err_clear(&err);
    snprintf(path, sizeof path, "%s/other.safetensors", dir);
    static const rename_rule not_vae[] = {{"decoder.", "unet."}};
    rewrite(path, not_vae, 1, NULL, NULL, NULL, 0);
    expect_msg(rq_vae_load(path, NULL, &vae, &err), RQ_EFORMAT, &err, "no VAE decoder");
    /* missing file */
    rq_err_clear(&err);
    snprintf(path, sizeof path, "%s/nope.safetensors", dir);
    assert_int_not_equal(rq_vae_load(path, NULL, &vae, &err), RQ_OK);
    assert_non_null(strstr(err.msg, "nope.safetensors"));
    assert_null(vae);
}

static void test_decode_args(void **state) {
    (void)state;
    rq_err err = {0};
    rq_vae_config cfg;
    rq_vae *vae = NULL;
    rq_safetensors st;
    assert_int_equal(rq_st_open(REF_ST, &st, &err), RQ_OK);
    assert_int_equal(rq_vae_config_infer(&st, &cfg, NULL, NULL, 0, &err), RQ_OK);
    cfg.norm_groups = 4;
    assert_int_equal(rq_vae_load_st(&st, &cfg, &vae, &err), RQ_OK);
    rq_st_close(&st);
    float lat[4 * 5 * 7], img[3 * 40 * 56], img2[3 * 40 * 56];
    uint64_t s = 31;
    tu_fill(&s, lat, 4 * 5 * 7, -1, 1);
    assert_int_equal(rq_vae_decode(vae, lat, 0, 5, 7, img, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_vae_decode(vae, NULL, 1, 5, 7, img, &err), RQ_EINVAL);
    rq_err_clear(&err);
    /* decode, grow the workspace with a larger latent, decode again: same image */
    assert_int_equal(rq_vae_decode(vae, lat, 1, 5, 7, img, &err), RQ_OK);
    float big[4 * 9 * 9], bigimg[3 * 72 * 72];
    tu_fill(&s, big, 4 * 81, -1, 1);
    assert_int_equal(rq_vae_decode(vae, big, 1, 9, 9, bigimg, &err), RQ_OK);
    assert_int_equal(rq_vae_decode(vae, lat, 1, 5, 7, img2, &err), RQ_OK);
    assert_memory_equal(img, img2, sizeof img);
    for (int i = 0; i < 3 * 40 * 56; i++) assert_true(img[i] >= -1.0f && img[i] <= 1.0f);
    /* NaN latents are refused */
    lat[17] = NAN;
    expect_msg(rq_vae_decode(vae, lat, 1, 5, 7, img, &err), RQ_ENUM, &err, "latent 0 has a non-finite value");
    rq_vae_free(vae);
}

static void test_to_u8(void **state) {
    (void)state;
    /* 2 channels would be refused; 3-channel 1x2 image */
    const float img[6] = {-1.0f, 1.0f, 0.0f, -2.0f, 0.5f, NAN};
    uint8_t px[6];
    rq_err err = {0};
    assert_int_equal(rq_vae_image_to_u8(img, 3, 1, 2, px, &err), RQ_OK);
    /* pixel 0 = (R, G, B) = (img[0], img[2], img[4]); pixel 1 = (img[1], img[3], img[5]) */
    assert_int_equal(px[0], 0);
    assert_int_equal(px[1], 128); /* 127.5 rounds half up */
    assert_int_equal(px[2], 191); /* 1.5 * 127.5 = 191.25 */
    assert_int_equal(px[3], 255);
    assert_int_equal(px[4], 0);
    assert_int_equal(px[5], 0); /* NaN */
    assert_int_equal(rq_vae_image_to_u8(img, 2, 1, 2, px, &err), RQ_EINVAL);
}

/* Full-size timing (SD config, random weights, one 32x32x4 latent -> 256x256):
 * runs only with ROBUQ_VAE_BENCH=1 (seconds per decode on 2 cores);
 * ROBUQ_VAE_BENCH_REPS=n decodes (default 2), ROBUQ_VAE_BENCH_SIZE=HxW latents. */
static void test_bench_full(void **state) {
    (void)state;
    if (!getenv("ROBUQ_VAE_BENCH")) {
        print_message("  (set ROBUQ_VAE_BENCH=1 for the full-size decode timing)\n");
        skip();
    }
    rq_vae_config cfg;
    rq_vae_config_sd(&cfg);
    rq_vae *vae = NULL;
    rq_err err = {0};
    double t0 = rq_now();
    assert_int_equal(rq_vae_init_random(&cfg, 7, &vae, &err), RQ_OK);
    double t_init = rq_now() - t0;
    int lh = 32, lw = 32; /* ROBUQ_VAE_BENCH_SIZE=HxW for other latent sizes */
    if (getenv("ROBUQ_VAE_BENCH_SIZE")) assert_int_equal(sscanf(getenv("ROBUQ_VAE_BENCH_SIZE"), "%dx%d", &lh, &lw), 2);
    float *lat = malloc(4 * lh * lw * sizeof(float)), *img = malloc(3 * 64 * lh * lw * sizeof(float));
    uint64_t s = 5;
    tu_fill(&s, lat, 4 * lh * lw, -1, 1);
    int reps = getenv("ROBUQ_VAE_BENCH_REPS") ? atoi(getenv("ROBUQ_VAE_BENCH_REPS")) : 2;
    double best = 1e30;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        t0 = rq_now();
        assert_int_equal(rq_vae_decode(vae, lat, 1, lh, lw, img, &err), RQ_OK);
        double t = rq_now() - t0;
        best = t < best ? t : best;
        print_message("  decode %d: %.3f s\n", r, t);
    }
    /* 2 * MACs of the SD decoder at 256x256 */
    double lo = 2.0, hi = -2.0;
    for (long i = 0; i < 3L * 64 * lh * lw; i++) lo = img[i] < lo ? img[i] : lo, hi = img[i] > hi ? img[i] : hi;
    assert_true(lo >= -1.0 && hi <= 1.0 && hi > lo);
    print_message("  SD VAE decode %dx%dx4 -> %dx%d, %d threads, %s: %.3f s/image (best), %zu params (%.0f MB), "
                  "workspace %.0f MB, init %.2f s\n",
                  lh, lw, 8 * lh, 8 * lw, omp_get_max_threads(), rq_gemm_isa_name(rq_gemm_get_isa()), best, rq_vae_num_params(vae),
                  rq_vae_num_params(vae) * 4.0 / 1e6, rq_vae_workspace_bytes(&cfg, lh, lw) / 1e6, t_init);
    free(lat), free(img);
    rq_vae_free(vae);
}

/* robuq-sample --vae: a tiny latent DiT (4x4x4 latents) trained for two
 * steps, sampled, and decoded by the tiny reference VAE into 32x32 RGB. */
static void test_sample_with_vae(void **state) {
    const char *dir = ((tu_dir *)*state)->dir;
    int n = 16;
    float *lat = malloc((size_t)n * 64 * sizeof(float));
    int32_t lab[16];
    uint64_t s = 4;
    for (int i = 0; i < n * 64; i++) lat[i] = tu_uniform(&s, -1, 1);
    for (int i = 0; i < n; i++) lab[i] = i % 2;
    rq_dataset_src src = {.kind = RQ_DATA_LATENTS, .n = n, .c = 4, .h = 4, .w = 4, .latents = lat, .labels = lab,
                          .num_classes = 2, .scale = 0.18215, .compression = -1};
    char path[512], ini[512], cmd[2048];
    snprintf(path, sizeof path, "%s/lat.h5", dir);
    rq_err e = {0};
    if (rq_dataset_write(path, &src, &e)) fail_msg("%s", e.msg);
    free(lat);
    snprintf(ini, sizeof ini, "%s/lat.ini", dir);
    FILE *f = fopen(ini, "w");
    fprintf(f, "[model]\ninput_size = 4\nin_channels = 4\npatch_size = 2\nhidden_size = 32\ndepth = 1\nnum_heads = 2\n"
               "num_classes = 2\n[data]\npath = %s\n[train]\nbatch_size = 4\nsteps = 2\nckpt_every = 0\nout_dir = %s/run\n"
               "[sample]\nsteps = 3\nper_class = 2\n", path, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s/robuq-train %s > %s/train.out 2>&1", ROBUQ_BIN_DIR, ini, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/robuq-sample %s/run/ckpt_last.h5 --vae %svae_tiny.safetensors --vae-groups 4 --out %s/rgb.png > %s/s.out 2>&1",
             ROBUQ_BIN_DIR, dir, REF_DIR, dir, dir);
    if (system(cmd)) {
        snprintf(cmd, sizeof cmd, "cat %s/s.out", dir);
        (void)system(cmd);
        fail_msg("robuq-sample --vae failed");
    }
    uint8_t *px;
    int w, h, c;
    snprintf(path, sizeof path, "%s/rgb.png", dir);
    if (rq_png_read(path, &px, &w, &h, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c, 3);
    assert_true(w >= 2 * 32 && h >= 2 * 32); /* a 2 x 2 grid of 32x32 RGB images (plus borders) */
    free(px);
    /* a bad VAE file fails before sampling, naming the file */
    snprintf(cmd, sizeof cmd, "%s/robuq-sample %s/run/ckpt_last.h5 --vae %s/lat.h5 --out %s/x.png 2> %s/e.out",
             ROBUQ_BIN_DIR, dir, dir, dir, dir);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'lat.h5' %s/e.out", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_errors),
        cmocka_unit_test(test_group_norm),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_decode_diffusers),
        cmocka_unit_test(test_decode_ldm),
        cmocka_unit_test_setup_teardown(test_decode_old_attention_names, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_load_errors, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_decode_args),
        cmocka_unit_test(test_to_u8),
        cmocka_unit_test(test_bench_full),
        cmocka_unit_test_setup_teardown(test_sample_with_vae, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
