/* test_ops.c: finite-difference gradient checks for every autograd op, plus
 * arena/tape reuse and error reporting.
 *
 * Each check builds loss = sum(op(inputs) * R) for a fixed random R, runs
 * backward, then perturbs every input element by +-eps and compares the
 * central difference of the loss (accumulated in double) with the analytic
 * gradient. A broken backward (wrong sign, missing term, wrong index) moves
 * the relative error far above the tolerance. */
#include <math.h>
#include <string.h>

#include "robuq/fastmath.h"
#include "robuq/ops.h"
#include "testutil.h"

typedef rq_tensor *(*build_fn)(rq_graph *g, rq_tensor **in, const void *ctx);

/* Loss for FD: double-accumulated sum(out * R). */
static double weighted_sum(const rq_tensor *out, const float *R) {
    double s = 0.0;
    for (long i = 0; i < out->n; i++) s += (double)out->data[i] * R[i];
    return s;
}

static void gradcheck(const char *name, build_fn f, const void *ctx, int n_in, rq_tensor **in,
                      float eps, double tol) {
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 1 << 20), RQ_OK);
    for (int i = 0; i < n_in; i++) rq_tensor_zero_grad(in[i]);

    rq_tensor *out = f(&g, in, ctx);
    if (!out) fail_msg("%s: forward failed: %s", name, g.err.msg);
    uint64_t seed = 99;
    float *R = malloc((size_t)out->n * sizeof(float));
    tu_fill(&seed, R, out->n, -1.0f, 1.0f);
    rq_tensor *Rt = rq_tensor_wrap(&g, R, out->ndim, out->shape);
    rq_tensor *loss = rq_sum(&g, rq_mul(&g, out, Rt));
    assert_non_null(loss);
    assert_int_equal(rq_backward(&g, loss), RQ_OK);

    for (int i = 0; i < n_in; i++) {
        rq_tensor *x = in[i];
        if (!x->requires_grad) continue;
        float *num = calloc((size_t)x->n, sizeof(float));
        for (long j = 0; j < x->n; j++) {
            float keep = x->data[j];
            double lp, lm;
            x->data[j] = keep + eps;
            rq_graph_reset(&g);
            g.grad_enabled = 0;
            lp = weighted_sum(f(&g, in, ctx), R);
            x->data[j] = keep - eps;
            rq_graph_reset(&g);
            lm = weighted_sum(f(&g, in, ctx), R);
            x->data[j] = keep;
            num[j] = (float)((lp - lm) / (2.0 * eps));
        }
        double err = tu_rel_err(x->grad, num, x->n, 1e-3);
        if (!(err < tol)) {
            for (long j = 0; j < x->n && j < 8; j++)
                print_message("  %s in%d[%ld]: analytic %g numeric %g\n", name, i, j, x->grad[j], num[j]);
            fail_msg("%s: input %d relative gradient error %g > %g", name, i, err, tol);
        }
        free(num);
        g.grad_enabled = 1;
    }
    free(R);
    rq_graph_free(&g);
}

static rq_tensor *param(int ndim, const int *shape, uint64_t seed, float lo, float hi) {
    rq_tensor *t = rq_tensor_new(ndim, shape, 1, "p");
    tu_fill(&seed, t->data, t->n, lo, hi);
    return t;
}

static void free_all(int n, rq_tensor **t) {
    for (int i = 0; i < n; i++) rq_tensor_free(t[i]);
}

#define EPS 1e-2f
#define TOL 2e-3

/* ---- builders ---- */
static rq_tensor *b_linear(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_linear(g, in[0], in[1], c ? in[2] : NULL);
}
static rq_tensor *b_matmul(rq_graph *g, rq_tensor **in, const void *c) { return rq_matmul(g, in[0], in[1]); }
static rq_tensor *b_add(rq_graph *g, rq_tensor **in, const void *c) { return rq_add(g, in[0], in[1]); }
static rq_tensor *b_mul(rq_graph *g, rq_tensor **in, const void *c) { return rq_mul(g, in[0], in[1]); }
static rq_tensor *b_scale(rq_graph *g, rq_tensor **in, const void *c) { return rq_scale(g, in[0], -1.7f); }
static rq_tensor *b_layernorm(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_layernorm(g, in[0], 1e-6f);
}
static rq_tensor *b_ln_modulate(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_layernorm_modulate(g, in[0], in[1], in[2], 1e-6f);
}
static rq_tensor *b_gated(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_gated_add(g, in[0], in[1], in[2]);
}
static rq_tensor *b_silu(rq_graph *g, rq_tensor **in, const void *c) { return rq_silu(g, in[0]); }
static rq_tensor *b_gelu(rq_graph *g, rq_tensor **in, const void *c) { return rq_gelu_tanh(g, in[0]); }
static rq_tensor *b_softmax(rq_graph *g, rq_tensor **in, const void *c) { return rq_softmax(g, in[0]); }
static rq_tensor *b_attention(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_attention(g, in[0], *(const int *)c);
}
static rq_tensor *b_embedding(rq_graph *g, rq_tensor **in, const void *c) {
    static const int idx[] = {2, 0, 4, 2, 1};
    return rq_embedding(g, in[0], idx, 5);
}
static rq_tensor *b_tembed(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_timestep_embedding(g, in[0], 9, 10000.0f);
}
static rq_tensor *b_reshape(rq_graph *g, rq_tensor **in, const void *c) {
    /* reshape then a nonlinear op, so the view's gradient path matters */
    return rq_silu(g, rq_reshape(g, in[0], 2, (int[]){5, 6}));
}
static rq_tensor *b_slice(rq_graph *g, rq_tensor **in, const void *c) {
    const int *a = c;
    return rq_slice(g, in[0], a[0], a[1], a[2]);
}
static rq_tensor *b_patchify(rq_graph *g, rq_tensor **in, const void *c) { return rq_patchify(g, in[0], 2); }
static rq_tensor *b_unpatchify(rq_graph *g, rq_tensor **in, const void *c) {
    return rq_unpatchify(g, in[0], 2, 3, 4, 6);
}
static rq_tensor *b_mse(rq_graph *g, rq_tensor **in, const void *c) { return rq_mse(g, in[0], in[1]); }
static rq_tensor *b_mean(rq_graph *g, rq_tensor **in, const void *c) { return rq_mean(g, in[0]); }
static rq_tensor *b_sum(rq_graph *g, rq_tensor **in, const void *c) { return rq_sum(g, in[0]); }

/* ---- tests ---- */
static void test_linear(void **state) {
    rq_tensor *in[3] = {param(3, (int[]){2, 3, 7}, 1, -1, 1), param(2, (int[]){5, 7}, 2, -1, 1),
                        param(1, (int[]){5}, 3, -1, 1)};
    gradcheck("linear+bias", b_linear, "b", 3, in, EPS, TOL);
    gradcheck("linear", b_linear, NULL, 2, in, EPS, TOL);
    free_all(3, in);
}

static void test_matmul(void **state) {
    rq_tensor *a2[2] = {param(2, (int[]){3, 5}, 4, -1, 1), param(2, (int[]){5, 4}, 5, -1, 1)};
    gradcheck("matmul2d", b_matmul, NULL, 2, a2, EPS, TOL);
    rq_tensor *a3[2] = {param(3, (int[]){2, 3, 5}, 6, -1, 1), param(3, (int[]){2, 5, 1}, 7, -1, 1)};
    gradcheck("matmul3d", b_matmul, NULL, 2, a3, EPS, TOL);
    free_all(2, a2);
    free_all(2, a3);
}

static void test_add_mul_broadcast(void **state) {
    rq_tensor *same[2] = {param(2, (int[]){3, 5}, 8, -1, 1), param(2, (int[]){3, 5}, 9, -1, 1)};
    rq_tensor *row[2] = {param(3, (int[]){2, 3, 4}, 10, -1, 1), param(2, (int[]){3, 4}, 11, -1, 1)};
    rq_tensor *both[2] = {param(3, (int[]){2, 1, 4}, 12, -1, 1), param(3, (int[]){2, 3, 1}, 13, -1, 1)};
    rq_tensor *lead[2] = {param(1, (int[]){5}, 14, -1, 1), param(4, (int[]){2, 1, 3, 5}, 15, -1, 1)};
    rq_tensor **cases[] = {same, row, both, lead};
    for (int i = 0; i < 4; i++) {
        gradcheck("add", b_add, NULL, 2, cases[i], EPS, TOL);
        gradcheck("mul", b_mul, NULL, 2, cases[i], EPS, TOL);
        free_all(2, cases[i]);
    }
}

static void test_scale(void **state) {
    rq_tensor *x = param(2, (int[]){3, 7}, 16, -1, 1);
    gradcheck("scale", b_scale, NULL, 1, &x, EPS, TOL);
    rq_tensor_free(x);
}

static void test_layernorm(void **state) {
    rq_tensor *x = param(3, (int[]){2, 3, 11}, 17, -2, 2);
    gradcheck("layernorm", b_layernorm, NULL, 1, &x, 1e-2f, 5e-3);
    rq_tensor_free(x);
}

static void test_modulate_gated(void **state) {
    /* D = 19: two eight-lane steps and a tail in the row kernels */
    rq_tensor *m[3] = {param(3, (int[]){2, 5, 19}, 18, -2, 2), param(2, (int[]){2, 19}, 19, -1, 1),
                       param(2, (int[]){2, 19}, 20, -1, 1)};
    gradcheck("layernorm_modulate", b_ln_modulate, NULL, 3, m, 1e-2f, 5e-3);
    /* forward against the formula in double */
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 1 << 20), RQ_OK);
    rq_tensor *y = rq_layernorm_modulate(&g, m[0], m[1], m[2], 1e-6f);
    assert_non_null(y);
    for (int r = 0; r < 10; r++) {
        const float *x = m[0]->data + r * 19, *sh = m[1]->data + r / 5 * 19, *sc = m[2]->data + r / 5 * 19;
        double mu = 0, var = 0;
        for (int d = 0; d < 19; d++) mu += x[d] / 19.0;
        for (int d = 0; d < 19; d++) var += (x[d] - mu) * (x[d] - mu) / 19.0;
        for (int d = 0; d < 19; d++) {
            double want = (x[d] - mu) / sqrt(var + 1e-6) * (1.0 + sc[d]) + sh[d];
            assert_true(fabs(y->data[r * 19 + d] - want) < 1e-5 * (1.0 + fabs(want)));
        }
    }
    rq_tensor *bad = rq_tensor_arena(&g, 2, (int[]){2, 18});
    assert_null(rq_layernorm_modulate(&g, m[0], bad, m[2], 1e-6f));
    assert_non_null(strstr(g.err.msg, "layernorm_modulate"));
    rq_graph_free(&g);
    rq_tensor *gt[3] = {param(3, (int[]){2, 5, 7}, 21, -1, 1), param(2, (int[]){2, 7}, 22, -1, 1),
                        param(3, (int[]){2, 5, 7}, 23, -1, 1)};
    gradcheck("gated_add", b_gated, NULL, 3, gt, EPS, TOL);
    free_all(3, m);
    free_all(3, gt);
}

static void test_activations(void **state) {
    rq_tensor *x = param(2, (int[]){3, 13}, 24, -4, 4);
    gradcheck("silu", b_silu, NULL, 1, &x, 1e-2f, TOL);
    gradcheck("gelu_tanh", b_gelu, NULL, 1, &x, 1e-2f, TOL);
    gradcheck("softmax", b_softmax, NULL, 1, &x, 1e-2f, TOL);
    rq_tensor_free(x);
}

static void test_attention(void **state) {
    int heads = 2;
    rq_tensor *qkv = param(3, (int[]){2, 7, 18}, 25, -1.5, 1.5); /* N=2, T=7 (odd), D=6, dh=3 */
    gradcheck("attention", b_attention, &heads, 1, &qkv, 1e-2f, 5e-3);
    rq_tensor_free(qkv);
    heads = 1;
    rq_tensor *one = param(3, (int[]){1, 5, 12}, 26, -1, 1);
    gradcheck("attention1h", b_attention, &heads, 1, &one, 1e-2f, 5e-3);
    rq_tensor_free(one);
}

static void test_attention_matches_unfused(void **state) {
    /* fused op == softmax(q k^T/sqrt(dh)) v built from basic ops, per head */
    int N = 2, T = 9, heads = 3, dh = 4, D = heads * dh;
    rq_tensor *qkv = param(3, (int[]){N, T, 3 * D}, 27, -2, 2);
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    g.grad_enabled = 0;
    rq_tensor *out = rq_attention(&g, qkv, heads);
    assert_non_null(out);
    for (int b = 0; b < N; b++)
        for (int h = 0; h < heads; h++) {
            rq_tensor *q = rq_tensor_arena(&g, 2, (int[]){T, dh}), *kt = rq_tensor_arena(&g, 2, (int[]){dh, T}),
                      *v = rq_tensor_arena(&g, 2, (int[]){T, dh});
            for (int t = 0; t < T; t++)
                for (int d = 0; d < dh; d++) {
                    const float *row = qkv->data + ((long)b * T + t) * 3 * D + h * dh + d;
                    q->data[t * dh + d] = row[0];
                    kt->data[d * T + t] = row[D];
                    v->data[t * dh + d] = row[2 * D];
                }
            rq_tensor *o = rq_matmul(&g, rq_softmax(&g, rq_scale(&g, rq_matmul(&g, q, kt), 0.5f)), v);
            for (int t = 0; t < T; t++)
                for (int d = 0; d < dh; d++)
                    assert_float_equal(o->data[t * dh + d], out->data[((long)b * T + t) * D + h * dh + d], 1e-5);
        }
    rq_graph_free(&g);
    rq_tensor_free(qkv);
}

/* Explicit AVX-512 row kernels (robuq/fastmath.h, RQ_ROWK_AVX512) against
 * the generic loops: y = op(x) and the gradient of sum(y^2) bit for bit.
 * Returns 0 (after saying so) where the CPU has no AVX-512. */
typedef rq_tensor *(*unary_op)(rq_graph *g, rq_tensor *x, int arg);
static rq_tensor *op_attention(rq_graph *g, rq_tensor *x, int heads) { return rq_attention(g, x, heads); }
static rq_tensor *op_gelu(rq_graph *g, rq_tensor *x, int unused) { return rq_gelu_tanh(g, x); }

static int rowk_isas_agree(unary_op op, int arg, int ndim, const int *shape, uint64_t seed, float lo, float hi,
                           float small_every3) {
    const rq_rowk_isa keep = rq_rowk_get_isa();
    if (rq_rowk_set_isa(RQ_ROWK_AVX512) != RQ_ROWK_AVX512) {
        print_message("  no AVX-512 here: only the generic loops exist\n");
        rq_rowk_set_isa(keep);
        return -1;
    }
    float *out[2], *grad[2];
    long n_out = 0, n_in = 0;
    for (int v = 0; v < 2; v++) {
        rq_rowk_set_isa(v ? RQ_ROWK_AVX512 : RQ_ROWK_GENERIC);
        rq_tensor *x = param(ndim, shape, seed, lo, hi);
        for (long i = 0; small_every3 != 0 && i < x->n; i += 3) x->data[i] *= small_every3;
        rq_graph g;
        rq_graph_init(&g, 1 << 20);
        rq_tensor *y = op(&g, x, arg);
        assert_non_null(y);
        assert_int_equal(rq_backward(&g, rq_sum(&g, rq_mul(&g, y, y))), RQ_OK);
        n_out = y->n, n_in = x->n;
        out[v] = malloc(sizeof(float) * n_out), grad[v] = malloc(sizeof(float) * n_in);
        memcpy(out[v], y->data, sizeof(float) * n_out);
        memcpy(grad[v], x->grad, sizeof(float) * n_in);
        rq_graph_free(&g);
        rq_tensor_free(x);
    }
    rq_rowk_set_isa(keep);
    const int same = !memcmp(out[0], out[1], sizeof(float) * n_out) && !memcmp(grad[0], grad[1], sizeof(float) * n_in);
    for (int v = 0; v < 2; v++) free(out[v]), free(grad[v]);
    return same;
}

/* The attention softmax, for T around the vector width and scores large
 * enough to hit exp's clamp. */
static void test_attention_isa_bitexact(void **state) {
    const int Ts[] = {1, 7, 16, 17, 33, 196};
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        const float r = ti % 2 ? 40 : 2;
        const int same = rowk_isas_agree(op_attention, 2, 3, (int[]){2, Ts[ti], 3 * 16}, 31 + ti, -r, r, 0);
        if (same < 0) return;
        if (!same) fail_msg("attention: avx512 softmax differs from generic at T=%d", Ts[ti]);
    }
}

/* GELU forward and backward, over lengths that leave every kind of tail
 * and inputs out to where exp clamps (and plenty near 0). */
static void test_gelu_isa_bitexact(void **state) {
    const int ns[] = {1, 15, 16, 17, 63, 64, 65, 100, 4096 + 37};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        const int same = rowk_isas_agree(op_gelu, 0, 1, (int[]){ns[ni]}, 41 + ni, -60, 60, 0.01f);
        if (same < 0) return;
        if (!same) fail_msg("gelu: avx512 differs from generic at n=%d", ns[ni]);
    }
}

static void test_embeddings(void **state) {
    rq_tensor *table = param(2, (int[]){5, 3}, 28, -1, 1);
    gradcheck("embedding", b_embedding, NULL, 1, &table, EPS, TOL);
    rq_tensor_free(table);
    rq_tensor *t = param(1, (int[]){3}, 29, 0, 5);
    gradcheck("timestep_embedding", b_tembed, NULL, 1, &t, 1e-3f, 5e-3);
    rq_tensor_free(t);
}

static void test_timestep_values(void **state) {
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    float tv[1] = {3.0f};
    rq_tensor *t = rq_tensor_wrap(&g, tv, 1, (int[]){1});
    rq_tensor *e = rq_timestep_embedding(&g, t, 8, 10000.0f);
    /* freqs = 10000^(-i/4): 1, 0.1, 0.01, 0.001 -> [cos(3f_i)..., sin(3f_i)...] */
    double f[4] = {1, 0.1, 0.01, 0.001};
    for (int i = 0; i < 4; i++) {
        assert_float_equal(e->data[i], cos(3 * f[i]), 1e-6);
        assert_float_equal(e->data[4 + i], sin(3 * f[i]), 1e-6);
    }
    rq_graph_free(&g);
}

static void test_shape_ops(void **state) {
    rq_tensor *x = param(3, (int[]){2, 3, 5}, 30, -2, 2);
    gradcheck("reshape", b_reshape, NULL, 1, &x, EPS, TOL);
    int s0[3] = {0, 1, 1}, s1[3] = {1, 1, 2}, s2[3] = {2, 2, 3};
    gradcheck("slice0", b_slice, s0, 1, &x, EPS, TOL);
    gradcheck("slice1", b_slice, s1, 1, &x, EPS, TOL);
    gradcheck("slice2", b_slice, s2, 1, &x, EPS, TOL);
    rq_tensor_free(x);
    rq_tensor *img = param(4, (int[]){2, 3, 4, 6}, 31, -1, 1);
    gradcheck("patchify", b_patchify, NULL, 1, &img, EPS, TOL);
    rq_tensor_free(img);
    rq_tensor *tok = param(3, (int[]){2, 6, 12}, 32, -1, 1);
    gradcheck("unpatchify", b_unpatchify, NULL, 1, &tok, EPS, TOL);
    rq_tensor_free(tok);
}

static void test_patch_layout(void **state) {
    /* token = row*(W/p)+col; patchify vector order (c,pi,pj); unpatchify (pi,pj,c) */
    int N = 1, C = 2, H = 4, W = 6, p = 2;
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    float img[48];
    for (int i = 0; i < 48; i++) img[i] = (float)i;
    rq_tensor *x = rq_tensor_wrap(&g, img, 4, (int[]){N, C, H, W});
    rq_tensor *tok = rq_patchify(&g, x, p);
    /* token 4 = grid row 1, col 1: pixel rows 2..3, cols 2..3 */
    int tk = 4;
    for (int c = 0; c < C; c++)
        for (int pi = 0; pi < p; pi++)
            for (int pj = 0; pj < p; pj++)
                assert_float_equal(tok->data[tk * 8 + (c * p + pi) * p + pj],
                                   img[(c * H + 2 + pi) * W + 2 + pj], 0);
    float tv[6 * 8];
    for (int t = 0; t < 6; t++)
        for (int v = 0; v < 8; v++) tv[t * 8 + v] = (float)(t * 100 + v);
    rq_tensor *tt = rq_tensor_wrap(&g, tv, 3, (int[]){1, 6, 8});
    rq_tensor *im = rq_unpatchify(&g, tt, p, C, H, W);
    /* pixel (c=1, y=3, x=5): token row 1 col 2 = 5, pi=1, pj=1 -> v = (1*2+1)*2+1 = 7 */
    assert_float_equal(im->data[(1 * H + 3) * W + 5], 507.0f, 0);
    rq_graph_free(&g);
}

static void test_losses(void **state) {
    rq_tensor *ab[2] = {param(3, (int[]){2, 3, 5}, 33, -1, 1), param(3, (int[]){2, 3, 5}, 34, -1, 1)};
    gradcheck("mse", b_mse, NULL, 2, ab, EPS, TOL);
    gradcheck("mean", b_mean, NULL, 1, ab, EPS, TOL);
    gradcheck("sum", b_sum, NULL, 1, ab, EPS, TOL);
    free_all(2, ab);
}

/* STE: the quantizer has zero derivative almost everywhere, so FD does not
 * apply; check the defined backward (identity, masked) directly. */
static void half_grid_clip(const float *x, float *y, uint8_t *mask, long rows, int len, const void *arg) {
    for (long i = 0; i < rows * len; i++) {
        float v = x[i] > 1.0f ? 1.0f : (x[i] < -1.0f ? -1.0f : x[i]);
        y[i] = roundf(v * 2.0f) / 2.0f;
        if (mask) mask[i] = fabsf(x[i]) <= 1.0f;
    }
}

static void test_ste(void **state) {
    rq_tensor *x = param(2, (int[]){4, 6}, 35, -2, 2);
    for (int masked = 0; masked < 2; masked++) {
        rq_graph g;
        rq_graph_init(&g, 1 << 16);
        rq_tensor_zero_grad(x);
        rq_tensor *y = rq_ste(&g, x, half_grid_clip, NULL, masked, "test_ste");
        for (long i = 0; i < x->n; i++) {
            float v = fmaxf(-1.0f, fminf(1.0f, x->data[i]));
            assert_float_equal(y->data[i], roundf(v * 2) / 2, 0);
        }
        float R[24];
        uint64_t s = 5;
        tu_fill(&s, R, 24, -1, 1);
        rq_tensor *loss = rq_sum(&g, rq_mul(&g, y, rq_tensor_wrap(&g, R, 2, (int[]){4, 6})));
        assert_int_equal(rq_backward(&g, loss), RQ_OK);
        for (long i = 0; i < x->n; i++) {
            float want = (!masked || fabsf(x->data[i]) <= 1.0f) ? R[i] : 0.0f;
            assert_float_equal(x->grad[i], want, 1e-7);
        }
        rq_graph_free(&g);
    }
    rq_tensor_free(x);
}

/* A small MLP step repeated many times: the arena and tape must stop growing
 * after the first step (same blocks, same high-water mark, same node count). */
static void test_arena_tape_reuse(void **state) {
    rq_tensor *w1 = param(2, (int[]){16, 8}, 40, -1, 1), *w2 = param(2, (int[]){4, 16}, 41, -1, 1);
    rq_tensor *x = rq_tensor_new(2, (int[]){5, 8}, 0, "x"), *tgt = rq_tensor_new(2, (int[]){5, 4}, 0, "t");
    rq_graph g;
    rq_graph_init(&g, 1 << 9); /* small blocks force several of them */
    long allocs = 0;
    size_t hw = 0;
    int nodes = 0;
    for (int step = 0; step < 200; step++) {
        rq_graph_reset(&g);
        rq_tensor *h = rq_gelu_tanh(&g, rq_linear(&g, x, w1, NULL));
        rq_tensor *loss = rq_mse(&g, rq_linear(&g, h, w2, NULL), tgt);
        assert_int_equal(rq_backward(&g, loss), RQ_OK);
        if (step == 0) {
            allocs = g.arena.n_sys_allocs;
            hw = g.arena.high_water;
            nodes = g.n_nodes;
            assert_true(allocs > 1);
        } else {
            assert_int_equal(g.arena.n_sys_allocs, allocs);
            assert_int_equal(g.arena.high_water, hw);
            assert_int_equal(g.n_nodes, nodes);
        }
    }
    rq_graph_free(&g);
    rq_tensor_free(w1), rq_tensor_free(w2), rq_tensor_free(x), rq_tensor_free(tgt);
}

/* Mark and rewind: memory taken after the mark is handed out again, across
 * block boundaries, and no new blocks are allocated the second time. */
static void test_arena_mark(void **state) {
    rq_arena a;
    rq_arena_init(&a, 4096);
    assert_non_null(rq_arena_alloc(&a, 100));
    rq_arena_mark m = rq_arena_get_mark(&a);
    size_t in_use = a.in_use;
    char *p1 = rq_arena_alloc(&a, 1000), *p2 = rq_arena_alloc(&a, 8000); /* p2 needs a new block */
    long blocks = a.n_sys_allocs;
    for (int round = 0; round < 3; round++) {
        rq_arena_rewind(&a, m);
        assert_int_equal(a.in_use, in_use);
        assert_ptr_equal(rq_arena_alloc(&a, 1000), p1);
        assert_ptr_equal(rq_arena_alloc(&a, 8000), p2);
        assert_int_equal(a.n_sys_allocs, blocks);
    }
    rq_arena_mark empty = {0};
    rq_arena_rewind(&a, empty); /* a mark taken before anything was allocated */
    assert_int_equal(a.in_use, 0);
    rq_arena_free(&a);
}

/* The per-op profile counts each recorded op once per call, forward and
 * backward, and prints one row per op. */
static void test_profile(void **state) {
    rq_tensor *w1 = param(2, (int[]){16, 8}, 42, -1, 1), *w2 = param(2, (int[]){4, 16}, 43, -1, 1);
    rq_tensor *x = rq_tensor_new(2, (int[]){5, 8}, 0, "x"), *tgt = rq_tensor_new(2, (int[]){5, 4}, 0, "t");
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    rq_profile prof = {0};
    g.prof = &prof;
    for (int step = 0; step < 3; step++) {
        rq_graph_reset(&g);
        rq_profile_start(g.prof);
        rq_tensor *h = rq_gelu_tanh(&g, rq_linear(&g, x, w1, NULL));
        rq_tensor *loss = rq_mse(&g, rq_linear(&g, h, w2, NULL), tgt);
        assert_int_equal(rq_backward(&g, loss), RQ_OK);
    }
    assert_int_equal(prof.n, 3); /* linear, gelu_tanh, mse */
    const char *want[] = {"linear", "gelu_tanh", "mse"};
    const long calls[] = {6, 3, 3};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(prof.ops[i].op, want[i]);
        assert_int_equal(prof.ops[i].calls, calls[i]);
        assert_true(prof.ops[i].fwd_s >= 0 && prof.ops[i].bwd_s > 0);
    }
    char buf[2048] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    assert_non_null(f);
    rq_profile_print(&prof, f, 3);
    fclose(f);
    assert_non_null(strstr(buf, "gelu_tanh"));
    assert_non_null(strstr(buf, "ms per step"));
    rq_graph_free(&g);
    rq_tensor_free(w1), rq_tensor_free(w2), rq_tensor_free(x), rq_tensor_free(tgt);
}

static void test_errors(void **state) {
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    rq_tensor *a = param(2, (int[]){3, 4}, 50, -1, 1), *w = param(2, (int[]){5, 6}, 51, -1, 1);
    assert_null(rq_linear(&g, a, w, NULL));
    assert_int_equal(g.err.code, RQ_ESHAPE);
    assert_non_null(strstr(g.err.msg, "linear"));
    assert_non_null(strstr(g.err.msg, "[3,4]"));
    assert_non_null(strstr(g.err.msg, "[5,6]"));
    /* sticky: later ops return NULL and keep the first message */
    assert_null(rq_silu(&g, a));
    assert_non_null(strstr(g.err.msg, "linear"));
    rq_graph_reset(&g);
    assert_true(rq_graph_ok(&g));
    assert_null(rq_add(&g, a, w));
    assert_non_null(strstr(g.err.msg, "broadcast"));
    rq_graph_reset(&g);
    assert_null(rq_slice(&g, a, 1, 3, 2));
    assert_int_equal(g.err.code, RQ_EINVAL);
    rq_graph_reset(&g);
    int idx[2] = {0, 7};
    assert_null(rq_embedding(&g, a, idx, 2));
    assert_non_null(strstr(g.err.msg, "index 1 = 7"));
    rq_graph_reset(&g);
    assert_null(rq_attention(&g, a, 2));
    rq_graph_reset(&g);
    assert_null(rq_silu(&g, NULL));
    assert_int_equal(g.err.code, RQ_EINVAL);
    rq_graph_reset(&g);
    rq_tensor *nl = rq_silu(&g, a);
    assert_int_equal(rq_backward(&g, nl), RQ_ESHAPE); /* loss must be a scalar */
    assert_null(rq_silu(NULL, a));
    rq_graph_free(&g);
    rq_tensor_free(a), rq_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),          cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_add_mul_broadcast), cmocka_unit_test(test_scale),
        cmocka_unit_test(test_layernorm),       cmocka_unit_test(test_modulate_gated),
        cmocka_unit_test(test_activations),     cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_matches_unfused), cmocka_unit_test(test_attention_isa_bitexact),
        cmocka_unit_test(test_gelu_isa_bitexact),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_timestep_values), cmocka_unit_test(test_shape_ops),
        cmocka_unit_test(test_patch_layout),    cmocka_unit_test(test_losses),
        cmocka_unit_test(test_ste),             cmocka_unit_test(test_arena_tape_reuse),
        cmocka_unit_test(test_arena_mark),      cmocka_unit_test(test_profile),         cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
