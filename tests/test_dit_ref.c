/* test_dit_ref.c: the DiT and the Gaussian diffusion against the PyTorch
 * reference dumps in tests/ref (made by tests/ref/gen_dit_ref.py; see its
 * README). Tolerances (relative, ||a-b||/||b|| per tensor, against the
 * float64 copies): forward outputs and activations 1e-4, parameter
 * gradients 1e-3, schedule 1e-12, sampling steps and VLB terms 1e-4. */
#include <string.h>

#include "robuq/diffusion.h"
#include "robuq/dit.h"
#include "robuq/h5io.h"
#include "robuq/ops.h"
#include "testutil.h"

#define DIT_REF ROBUQ_TEST_DIR "/ref/dit_tiny.h5"
#define DIFF_REF ROBUQ_TEST_DIR "/ref/diffusion_ref.h5"

static float *read_f32(rq_h5_reader *r, const char *path, long n) {
    float *buf = malloc((size_t)n * sizeof(float));
    rq_err e = {0};
    if (rq_h5r_read_f32(r, path, buf, n, &e)) fail_msg("%s", e.msg);
    return buf;
}
static double *read_f64(rq_h5_reader *r, const char *path, long n) {
    double *buf = malloc((size_t)n * sizeof(double));
    rq_err e = {0};
    if (rq_h5r_read(r, path, RQ_H5_F64, buf, n, &e)) fail_msg("%s", e.msg);
    return buf;
}
static long numel(rq_h5_reader *r, const char *path) {
    int nd;
    long sh[RQ_H5_MAX_DIMS], n = 1;
    rq_err e = {0};
    if (rq_h5r_shape(r, path, &nd, sh, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < nd; i++) n *= sh[i];
    return n;
}
static void expect_close(const char *what, const float *got, rq_h5_reader *r, const char *path, long n,
                         double tol) {
    char p64[256];
    snprintf(p64, sizeof p64, "%s_f64", path);
    const char *use = rq_h5r_exists(r, p64) ? p64 : path;
    assert_int_equal(numel(r, use), n);
    float *want = read_f32(r, use, n);
    double err = tu_rel_err(got, want, n, 1e-12);
    if (!(err <= tol)) fail_msg("%s: relative error %g > %g", what, err, tol);
    free(want);
}
static int64_t attr_i(rq_h5_reader *r, const char *name) {
    int64_t v;
    rq_err e = {0};
    if (rq_h5r_get_i64(r, "/", name, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

typedef struct {
    rq_h5_reader *r;
    rq_dit m;
    rq_diffusion d;
    int N;
} ref_fixture;

static int setup(void **state) {
    ref_fixture *f = calloc(1, sizeof *f);
    rq_err e = {0};
    f->r = rq_h5r_open(DIT_REF, &e);
    if (!f->r) fail_msg("%s", e.msg);
    rq_dit_config c = {0};
    c.input_size = (int)attr_i(f->r, "input_size");
    c.patch_size = (int)attr_i(f->r, "patch_size");
    c.in_channels = (int)attr_i(f->r, "in_channels");
    c.hidden_size = (int)attr_i(f->r, "hidden_size");
    c.depth = (int)attr_i(f->r, "depth");
    c.num_heads = (int)attr_i(f->r, "num_heads");
    c.num_classes = (int)attr_i(f->r, "num_classes");
    c.learn_sigma = (int)attr_i(f->r, "learn_sigma");
    double ratio;
    rq_h5r_get_f64(f->r, "/", "mlp_ratio", &ratio, &e);
    c.mlp_ratio = (float)ratio;
    if (rq_dit_init(&f->m, &c, 0, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < f->m.n_params; i++) {
        rq_tensor *p = f->m.params[i];
        char path[160];
        snprintf(path, sizeof path, "/params/%s", p->name);
        if (rq_h5r_read_f32(f->r, path, p->data, p->n, &e)) fail_msg("%s", e.msg);
    }
    if (rq_diffusion_init_linear(&f->d, 1000, 1e-4, 0.02, &e)) fail_msg("%s", e.msg);
    f->N = 3;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    ref_fixture *f = *state;
    rq_h5r_close(f->r);
    rq_dit_free(&f->m);
    rq_diffusion_free(&f->d);
    free(f);
    return 0;
}

static void test_param_names(void **state) {
    ref_fixture *f = *state;
    char **names;
    int n;
    rq_err e = {0};
    assert_int_equal(rq_h5r_list_datasets(f->r, "/params", 0, &names, &n, &e), RQ_OK);
    assert_int_equal(n, f->m.n_params);
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(names[i], '/') ? strrchr(names[i], '/') + 1 : names[i];
        if (!rq_dit_param(&f->m, base)) fail_msg("reference parameter %s missing in the C model", base);
    }
    rq_h5_names_free(names, n);
}

static void test_pos_embed(void **state) {
    ref_fixture *f = *state;
    int T = rq_dit_tokens(&f->m.cfg), D = f->m.cfg.hidden_size;
    expect_close("pos_embed", f->m.pos_embed, f->r, "/buffers/pos_embed", (long)T * D, 1e-6);
}

static void test_forward_loss_grads(void **state) {
    ref_fixture *f = *state;
    const rq_dit_config *c = &f->m.cfg;
    int N = f->N;
    long per = (long)c->in_channels * c->input_size * c->input_size;
    float *x0 = read_f32(f->r, "/inputs/x0", N * per), *noise = read_f32(f->r, "/inputs/noise", N * per);
    int t[3], y[3];
    rq_err e = {0};
    rq_h5r_read_i32(f->r, "/inputs/t", t, N, &e);
    rq_h5r_read_i32(f->r, "/inputs/y", y, N, &e);

    rq_graph g;
    rq_graph_init(&g, 1 << 22);
    for (int i = 0; i < f->m.n_params; i++) rq_tensor_zero_grad(f->m.params[i]);
    rq_diffusion_loss_out lo;
    if (rq_diffusion_loss(&g, &f->d, &f->m, x0, t, y, noise, N, &lo)) fail_msg("%s", g.err.msg);
    assert_int_equal(rq_backward(&g, lo.loss), RQ_OK);

    /* x_t is the first arena tensor the loss made; recompute for the check */
    float *xt = malloc((size_t)(N * per) * sizeof(float));
    rq_q_sample(&f->d, x0, t, noise, xt, N, per);
    expect_close("x_t", xt, f->r, "/outputs/x_t", N * per, 1e-6);
    expect_close("loss", &lo.loss->data[0], f->r, "/outputs/loss", 1, 1e-4);
    float mse_mean = lo.mse, vb_mean = lo.vb;
    float *mse_ref = read_f32(f->r, "/outputs/mse_f64", N), *vb_ref = read_f32(f->r, "/outputs/vb_f64", N);
    double ms = 0, vs = 0;
    for (int i = 0; i < N; i++) ms += mse_ref[i], vs += vb_ref[i];
    assert_float_equal(mse_mean, ms / N, 1e-4 * fabs(ms / N));
    assert_float_equal(vb_mean, vs / N, 1e-4 * fabs(vs / N));

    /* model output from a fresh no-tape forward */
    rq_graph g2;
    rq_graph_init(&g2, 1 << 22);
    g2.grad_enabled = 0;
    rq_tensor *xtt = rq_tensor_wrap(&g2, xt, 4, (int[]){N, c->in_channels, c->input_size, c->input_size});
    rq_tensor *tt = rq_tensor_arena(&g2, 1, (int[]){N});
    for (int i = 0; i < N; i++) tt->data[i] = (float)t[i];
    rq_tensor *out = rq_dit_forward(&g2, &f->m, xtt, tt, y);
    assert_non_null(out);
    expect_close("model_out", out->data, f->r, "/outputs/model_out", out->n, 1e-4);

    for (int i = 0; i < f->m.n_params; i++) {
        rq_tensor *p = f->m.params[i];
        char path[160];
        snprintf(path, sizeof path, "/grads/%s", p->name);
        /* parameters with (near) zero reference gradient: absolute check */
        char p64[180];
        snprintf(p64, sizeof p64, "%s_f64", path);
        float *want = read_f32(f->r, p64, p->n);
        double nrm = 0;
        for (long j = 0; j < p->n; j++) nrm += (double)want[j] * want[j];
        if (sqrt(nrm) < 1e-8) {
            for (long j = 0; j < p->n; j++) assert_float_equal(p->grad[j], 0.0f, 1e-6);
        } else {
            expect_close(p->name, p->grad, f->r, path, p->n, 1e-3);
        }
        free(want);
    }
    rq_graph_free(&g), rq_graph_free(&g2);
    free(x0), free(noise), free(xt), free(mse_ref), free(vb_ref);
}

static void test_cfg(void **state) {
    ref_fixture *f = *state;
    const rq_dit_config *c = &f->m.cfg;
    int B = 4, Cout = rq_dit_out_channels(c);
    long hw = (long)c->input_size * c->input_size, per = c->in_channels * hw;
    float *x = read_f32(f->r, "/cfg/x", B * per);
    int t[4], y[4];
    rq_err e = {0};
    rq_h5r_read_i32(f->r, "/cfg/t", t, B, &e);
    rq_h5r_read_i32(f->r, "/cfg/y", y, B, &e);
    double scale;
    rq_h5r_get_f64(f->r, "/cfg", "scale", &scale, &e);
    rq_graph g;
    rq_graph_init(&g, 1 << 22);
    g.grad_enabled = 0;
    rq_tensor *tt = rq_tensor_arena(&g, 1, (int[]){B});
    for (int i = 0; i < B; i++) tt->data[i] = (float)t[i];
    rq_tensor *out = rq_dit_forward(&g, &f->m, rq_tensor_wrap(&g, x, 4, (int[]){B, c->in_channels, c->input_size, c->input_size}), tt, y);
    expect_close("cfg model_out", out->data, f->r, "/cfg/model_out", out->n, 1e-4);
    float *a = malloc((size_t)out->n * sizeof(float)), *b = malloc((size_t)out->n * sizeof(float));
    memcpy(a, out->data, (size_t)out->n * sizeof(float));
    memcpy(b, out->data, (size_t)out->n * sizeof(float));
    rq_cfg_combine(a, 2, Cout, 3, hw, (float)scale);
    expect_close("cfg reference (3 channels)", a, f->r, "/cfg/out_reference", out->n, 1e-4);
    rq_cfg_combine(b, 2, Cout, c->in_channels, hw, (float)scale);
    /* out_all: rows 0-1 guided over the eps channels, variance from cond */
    float *want = read_f32(f->r, "/cfg/out_all_f64", out->n);
    assert_true(tu_rel_err(b, want, 2 * Cout * hw, 1e-12) < 1e-4);
    free(want), free(a), free(b), free(x);
    rq_graph_free(&g);
}

/* ---- diffusion ---- */

static void test_schedule_and_respacing(void **state) {
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(DIFF_REF, &e);
    if (!r) fail_msg("%s", e.msg);
    rq_diffusion d;
    assert_int_equal(rq_diffusion_init_linear(&d, 1000, 1e-4, 0.02, &e), RQ_OK);
    struct { const char *name; double *arr; } arrs[] = {
        {"betas", d.betas}, {"alphas_cumprod", d.acp}, {"alphas_cumprod_prev", d.acp_prev},
        {"sqrt_alphas_cumprod", d.sqrt_acp}, {"sqrt_one_minus_alphas_cumprod", d.sqrt_1m_acp},
        {"log_one_minus_alphas_cumprod", d.log_1m_acp}, {"sqrt_recip_alphas_cumprod", d.sqrt_recip_acp},
        {"sqrt_recipm1_alphas_cumprod", d.sqrt_recipm1_acp}, {"posterior_variance", d.post_var},
        {"posterior_log_variance_clipped", d.post_logvar_clipped}, {"posterior_mean_coef1", d.post_c1},
        {"posterior_mean_coef2", d.post_c2}};
    for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
        char path[128];
        snprintf(path, sizeof path, "/schedule/%s", arrs[k].name);
        double *want = read_f64(r, path, 1000);
        for (int i = 0; i < 1000; i++)
            if (fabs(arrs[k].arr[i] - want[i]) > 1e-12 * fmax(1.0, fabs(want[i])))
                fail_msg("%s[%d]: %.17g vs %.17g", arrs[k].name, i, arrs[k].arr[i], want[i]);
        free(want);
    }
    const char *specs[] = {"1000", "250", "50", "25", "ddim50"};
    for (int k = 0; k < 5; k++) {
        char path[128];
        snprintf(path, sizeof path, "/respace/%s/timesteps", specs[k]);
        long n = numel(r, path);
        int64_t *want = malloc((size_t)n * sizeof(int64_t));
        rq_h5r_read_i64(r, path, want, n, &e);
        int got[1000], ng;
        assert_int_equal(rq_space_timesteps(1000, specs[k], got, 1000, &ng, &e), RQ_OK);
        assert_int_equal(ng, n);
        for (long i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
        rq_diffusion rd;
        assert_int_equal(rq_diffusion_respace(&d, got, ng, &rd, &e), RQ_OK);
        snprintf(path, sizeof path, "/respace/%s/betas", specs[k]);
        double *wb = read_f64(r, path, n);
        for (long i = 0; i < n; i++) assert_true(fabs(rd.betas[i] - wb[i]) <= 1e-12 * fmax(1e-3, wb[i]));
        free(wb), free(want);
        rq_diffusion_free(&rd);
    }
    rq_diffusion_free(&d);
    rq_h5r_close(r);
}

static void check_step(rq_h5_reader *r, const rq_diffusion *base, const char *grp, int ddim) {
    rq_err e = {0};
    char path[128];
    snprintf(path, sizeof path, "/pstep/%s/x_t", grp);
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    rq_h5r_shape(r, path, &nd, sh, &e);
    int N = (int)sh[0], C = (int)sh[1];
    long hw = sh[2] * sh[3], n = N * C * hw;
    float *xt = read_f32(r, path, n);
    snprintf(path, sizeof path, "/pstep/%s/model_out", grp);
    float *mo = read_f32(r, path, 2 * n);
    int ti[16];
    snprintf(path, sizeof path, "/pstep/%s/t_index", grp);
    rq_h5r_read_i32(r, path, ti, N, &e);
    int use[1000], nu;
    rq_space_timesteps(1000, ddim ? "ddim50" : "250", use, 1000, &nu, &e);
    rq_diffusion d;
    rq_diffusion_respace(base, use, nu, &d, &e);
    float *mean = malloc((size_t)n * sizeof(float)), *lv = malloc((size_t)n * sizeof(float)),
          *px0 = malloc((size_t)n * sizeof(float)), *xp = malloc((size_t)n * sizeof(float));
    rq_p_mean_variance(&d, mo, xt, ti, N, C, hw, mean, lv, px0);
    char full[160];
    snprintf(full, sizeof full, "/pstep/%s/pred_xstart", grp);
    expect_close(full, px0, r, full, n, 1e-4);
    if (!ddim) {
        snprintf(full, sizeof full, "/pstep/%s/mean", grp);
        expect_close(full, mean, r, full, n, 1e-4);
        snprintf(full, sizeof full, "/pstep/%s/log_variance", grp);
        expect_close(full, lv, r, full, n, 1e-4);
        snprintf(path, sizeof path, "/pstep/%s/noise", grp);
        float *noise = read_f32(r, path, n);
        rq_p_sample_step(&d, mo, xt, ti, noise, N, C, hw, xp);
        free(noise);
    } else {
        rq_ddim_step(&d, mo, xt, ti, N, C, hw, xp);
    }
    snprintf(full, sizeof full, "/pstep/%s/sample", grp);
    expect_close(full, xp, r, full, n, 1e-4);
    free(xt), free(mo), free(mean), free(lv), free(px0), free(xp);
    rq_diffusion_free(&d);
}

static void test_sampling_steps(void **state) {
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(DIFF_REF, &e);
    rq_diffusion d;
    rq_diffusion_init_linear(&d, 1000, 1e-4, 0.02, &e);
    check_step(r, &d, "ddpm250", 0);
    check_step(r, &d, "ddim50", 1);
    rq_diffusion_free(&d);
    rq_h5r_close(r);
}

static void test_vlb_terms(void **state) {
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(DIFF_REF, &e);
    rq_diffusion d;
    rq_diffusion_init_linear(&d, 1000, 1e-4, 0.02, &e);
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    rq_h5r_shape(r, "/vlb/x_start", &nd, sh, &e);
    int N = (int)sh[0], C = (int)sh[1], H = (int)sh[2], W = (int)sh[3];
    long n = (long)N * C * H * W;
    float *x0 = read_f32(r, "/vlb/x_start", n), *xt = read_f32(r, "/vlb/x_t", n), *mo = read_f32(r, "/vlb/model_out", 2 * n);
    int t[16];
    rq_h5r_read_i32(r, "/vlb/t", t, N, &e);
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    rq_tensor *all = rq_tensor_wrap(&g, mo, 4, (int[]){N, 2 * C, H, W});
    rq_tensor *eps = rq_slice(&g, all, 1, 0, C), *var = rq_slice(&g, all, 1, C, C);
    rq_tensor *vb = rq_vlb_terms(&g, &d, eps, var, x0, xt, t);
    assert_non_null(vb);
    expect_close("vlb output_bits", vb->data, r, "/vlb/output_bits", N, 1e-4);
    rq_graph_free(&g);
    rq_diffusion_free(&d);
    rq_h5r_close(r);
    free(x0), free(xt), free(mo);
}

/* Finite differences for the VLB op's gradient in the variance values,
 * covering both the KL (t > 0) and the decoder NLL (t = 0) branches. */
static void test_vlb_gradient(void **state) {
    rq_err e = {0};
    rq_diffusion d;
    rq_diffusion_init_linear(&d, 1000, 1e-4, 0.02, &e);
    int N = 3, C = 2, H = 3, W = 3;
    long n = (long)N * C * H * W;
    uint64_t s = 7;
    float x0[54], xt[54], eps[54];
    tu_fill(&s, x0, n, -1, 1);
    tu_fill(&s, xt, n, -1.5, 1.5);
    tu_fill(&s, eps, n, -1, 1);
    x0[0] = -1.0f, x0[5] = 1.0f; /* edge bins */
    int t[3] = {0, 3, 700};
    rq_tensor *v = rq_tensor_new(4, (int[]){N, C, H, W}, 1, "v");
    tu_fill(&s, v->data, n, -0.9f, 0.9f);
    float R[3] = {0.7f, -1.3f, 0.4f};
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    rq_tensor *et = rq_tensor_wrap(&g, eps, 4, (int[]){N, C, H, W});
    rq_tensor *out = rq_vlb_terms(&g, &d, et, v, x0, xt, t);
    rq_tensor *loss = rq_sum(&g, rq_mul(&g, out, rq_tensor_wrap(&g, R, 1, (int[]){3})));
    assert_int_equal(rq_backward(&g, loss), RQ_OK);
    float num[54];
    for (long j = 0; j < n; j++) {
        float keep = v->data[j];
        double l[2];
        for (int k = 0; k < 2; k++) {
            v->data[j] = keep + (k ? -1e-3f : 1e-3f);
            rq_graph_reset(&g);
            rq_tensor *o = rq_vlb_terms(&g, &d, rq_tensor_wrap(&g, eps, 4, (int[]){N, C, H, W}), v, x0, xt, t);
            l[k] = 0;
            for (int i = 0; i < N; i++) l[k] += (double)o->data[i] * R[i];
        }
        v->data[j] = keep;
        num[j] = (float)((l[0] - l[1]) / 2e-3);
    }
    double err = tu_rel_err(v->grad, num, n, 1e-6);
    if (!(err < 5e-3)) fail_msg("vlb gradient relative error %g", err);
    rq_graph_free(&g);
    rq_tensor_free(v);
    rq_diffusion_free(&d);
}

int main(void) {
    const struct CMUnitTest model[] = {
        cmocka_unit_test(test_param_names),
        cmocka_unit_test(test_pos_embed),
        cmocka_unit_test(test_forward_loss_grads),
        cmocka_unit_test(test_cfg),
    };
    const struct CMUnitTest diffusion[] = {
        cmocka_unit_test(test_schedule_and_respacing),
        cmocka_unit_test(test_sampling_steps),
        cmocka_unit_test(test_vlb_terms),
        cmocka_unit_test(test_vlb_gradient),
    };
    int fails = cmocka_run_group_tests_name("dit_reference", model, setup, teardown);
    fails += cmocka_run_group_tests_name("diffusion_reference", diffusion, NULL, NULL);
    return fails;
}
