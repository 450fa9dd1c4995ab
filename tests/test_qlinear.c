/* test_qlinear.c: the fake-quantized linear used for QAT (Hadamard rotation,
 * per-token activation quantizer, ternary weights, STE gradients) and the
 * model-wide wiring ([quant] options, precision maps, error messages). */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "robuq/ops.h"
#include "robuq/qlinear.h"
#include "robuq/svd.h"
#include "robuq/tpack.h"
#include "robuq/train.h"
#include "testutil.h"

static rq_tensor *param(int ndim, const int *shape, uint64_t seed) {
    rq_tensor *t = rq_tensor_new(ndim, shape, 1, "p");
    tu_fill(&seed, t->data, t->n, -1, 1);
    return t;
}

/* Hadamard op: finite differences (it is linear, so FD is exact up to rounding). */
static void test_hadamard_op_gradient(void **state) {
    rq_hadamard h;
    rq_err e = {0};
    assert_int_equal(rq_hadamard_plan_init(&h, 12, &e), RQ_OK);
    rq_tensor *x = param(2, (int[]){3, 12}, 1);
    float R[36];
    uint64_t s = 2;
    tu_fill(&s, R, 36, -1, 1);
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    rq_tensor *y = rq_hadamard_op(&g, x, &h);
    rq_tensor *loss = rq_sum(&g, rq_mul(&g, rq_silu(&g, y), rq_tensor_wrap(&g, R, 2, (int[]){3, 12})));
    assert_int_equal(rq_backward(&g, loss), RQ_OK);
    for (long j = 0; j < x->n; j++) {
        float keep = x->data[j];
        double l[2];
        for (int k = 0; k < 2; k++) {
            x->data[j] = keep + (k ? -1e-2f : 1e-2f);
            rq_graph_reset(&g);
            g.grad_enabled = 0;
            rq_tensor *o = rq_silu(&g, rq_hadamard_op(&g, x, &h));
            l[k] = 0;
            for (int i = 0; i < 36; i++) l[k] += (double)o->data[i] * R[i];
        }
        x->data[j] = keep;
        assert_float_equal(x->grad[j], (l[0] - l[1]) / 2e-2, 2e-3);
    }
    rq_graph_free(&g);
    rq_tensor_free(x);
}

/* The fused rotate+quantize op equals the two ops it replaces bit for bit,
 * forward and backward: act quantizer (masked STE) and ternary (identity),
 * n = 384 (12 x 32: FWHT + K-mix), 45 rows (chunks of 21 plus a tail). */
static void test_rotate_ste_matches_unfused(void **state) {
    const int rows = 45, n = 384;
    rq_hadamard h;
    rq_err e = {0};
    assert_int_equal(rq_hadamard_plan_init(&h, n, &e), RQ_OK);
    rq_actq_cfg c = {2, RQ_ACTQ_ROBUST};
    for (int kind = 0; kind < 2; kind++) {
        rq_rowwise_fn f = kind ? rq_ternary_rowwise : rq_actq_rowwise;
        const void *arg = kind ? NULL : &c;
        rq_tensor *x = param(2, (int[]){rows, n}, 70 + kind);
        float *R = malloc((size_t)rows * n * sizeof(float)), *grad[2], *out[2];
        uint64_t s = 80;
        tu_fill(&s, R, (long)rows * n, -1, 1);
        for (int fused = 0; fused < 2; fused++) {
            rq_graph g;
            rq_graph_init(&g, 1 << 20);
            rq_tensor_zero_grad(x);
            rq_tensor *y = fused ? rq_rotate_ste(&g, x, &h, f, arg, !kind, "rot")
                                 : rq_ste(&g, rq_hadamard_op(&g, x, &h), f, arg, !kind, "q");
            assert_non_null(y);
            rq_tensor *loss = rq_sum(&g, rq_mul(&g, rq_silu(&g, y), rq_tensor_wrap(&g, R, 2, (int[]){rows, n})));
            assert_int_equal(rq_backward(&g, loss), RQ_OK);
            out[fused] = malloc((size_t)rows * n * sizeof(float));
            grad[fused] = malloc((size_t)rows * n * sizeof(float));
            memcpy(out[fused], y->data, (size_t)rows * n * sizeof(float));
            memcpy(grad[fused], x->grad, (size_t)rows * n * sizeof(float));
            rq_graph_free(&g);
        }
        for (long i = 0; i < (long)rows * n; i++) {
            assert_true(out[0][i] == out[1][i]);
            assert_true(grad[0][i] == grad[1][i]);
        }
        for (int k = 0; k < 2; k++) free(out[k]), free(grad[k]);
        free(R);
        rq_tensor_free(x);
    }
}

/* rq_linear_codes: the integer forward equals the float product of the
 * fake-quant values to float rounding, and its gradients are rq_linear's
 * bit for bit (same backward on the same xq, wq). */
static void test_linear_codes(void **state) {
    const int rows = 37, in = 64, out = 24;
    rq_tensor *x = param(2, (int[]){rows, in}, 90), *w = param(2, (int[]){out, in}, 91), *b = param(1, (int[]){out}, 92);
    float *xq = malloc(sizeof(float) * rows * in), *wq = malloc(sizeof(float) * out * in), unit[37], gamma[24];
    int8_t *xc = malloc((size_t)rows * in), *wc = malloc((size_t)out * in);
    uint8_t *wt2 = malloc(rq_t2_bytes(out, in));
    rq_actq_cfg c = {2, RQ_ACTQ_ROBUST};
    rq_actq_rows(&c, x->data, xq, NULL, xc, unit, rows, in);
    rq_ternary_rows(w->data, wq, wc, gamma, out, in);
    rq_err e = {0};
    assert_int_equal(rq_t2_pack(wc, out, in, wt2, &e), RQ_OK);
    float R[37 * 24];
    uint64_t s = 93;
    tu_fill(&s, R, rows * out, -1, 1);
    float *y[2], *gx[2], *gw[2], *gb[2];
    for (int k = 0; k < 2; k++) {
        rq_graph g;
        rq_graph_init(&g, 1 << 20);
        rq_tensor *a = rq_tensor_wrap(&g, xq, 2, (int[]){rows, in}), *v = rq_tensor_wrap(&g, wq, 2, (int[]){out, in});
        a->requires_grad = v->requires_grad = 1;
        rq_tensor_zero_grad(b);
        rq_tensor *o = k ? rq_linear_codes(&g, a, v, b, xc, unit, wt2, gamma) : rq_linear(&g, a, v, b);
        assert_non_null(o);
        assert_int_equal(rq_backward(&g, rq_sum(&g, rq_mul(&g, o, rq_tensor_wrap(&g, R, 2, (int[]){rows, out})))), RQ_OK);
        y[k] = malloc(sizeof(float) * rows * out), gx[k] = malloc(sizeof(float) * rows * in);
        gw[k] = malloc(sizeof(float) * out * in), gb[k] = malloc(sizeof(float) * out);
        memcpy(y[k], o->data, sizeof(float) * rows * out);
        memcpy(gx[k], a->grad, sizeof(float) * rows * in);
        memcpy(gw[k], v->grad, sizeof(float) * out * in);
        memcpy(gb[k], b->grad, sizeof(float) * out);
        rq_graph_free(&g);
    }
    for (int i = 0; i < rows * out; i++) assert_float_equal(y[1][i], y[0][i], 1e-5 * (1 + fabsf(y[0][i])));
    assert_memory_equal(gx[0], gx[1], sizeof(float) * rows * in);
    assert_memory_equal(gw[0], gw[1], sizeof(float) * out * in);
    assert_memory_equal(gb[0], gb[1], sizeof(float) * out);
    for (int k = 0; k < 2; k++) free(y[k]), free(gx[k]), free(gw[k]), free(gb[k]);
    free(xq), free(wq), free(xc), free(wc), free(wt2);
    rq_tensor_free(x), rq_tensor_free(w), rq_tensor_free(b);
}

static rq_dit_linear make_linear(int out, int in, uint64_t seed) {
    rq_dit_linear L = {0};
    L.w = param(2, (int[]){out, in}, seed);
    L.b = param(1, (int[]){out}, seed + 1);
    L.kind = "qkv";
    return L;
}

/* Rotation alone changes nothing: x H (W H)^T = x W^T. */
static void test_rotation_invariance(void **state) {
    rq_dit_linear L = make_linear(5, 24, 3);
    rq_tensor *x = param(3, (int[]){2, 3, 24}, 4);
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    g.grad_enabled = 0;
    rq_tensor *ref = rq_linear(&g, x, L.w, L.b);
    rq_qlinear q = {.hadamard = 1};
    rq_err e = {0};
    assert_int_equal(rq_qlinear_attach(&L, &q, "test", &e), RQ_OK);
    rq_tensor *y = rq_qlinear_forward(&g, &L, x);
    for (long i = 0; i < y->n; i++) assert_float_equal(y->data[i], ref->data[i], 1e-5);
    rq_qlinear_detach(&L);
    rq_graph_free(&g);
    rq_tensor_free(x), rq_tensor_free(L.w), rq_tensor_free(L.b);
}

/* Full fake-quant forward and its STE gradients against a by-hand version:
 *   y = Q(xH) T(WH)^T + b,  dx = ((dy T(WH)) * mask) H,  dW = (dy^T Q(xH)) H. */
static void test_fake_quant_forward_backward(void **state) {
    int N = 7, in = 16, out = 6;
    for (int bits = 1; bits <= 4; bits++) {
        rq_dit_linear L = make_linear(out, in, 10 + bits);
        rq_tensor *x = param(2, (int[]){N, in}, 20 + bits);
        rq_qlinear q = {.w_ternary = 1, .a_bits = bits, .a_method = RQ_ACTQ_ROBUST, .hadamard = 1};
        rq_err e = {0};
        assert_int_equal(rq_qlinear_attach(&L, &q, "test", &e), RQ_OK);
        rq_graph g;
        rq_graph_init(&g, 1 << 18);
        rq_tensor *y = rq_qlinear_forward(&g, &L, x);
        float R[7 * 6];
        uint64_t s = 30;
        tu_fill(&s, R, N * out, -1, 1);
        rq_tensor *loss = rq_sum(&g, rq_mul(&g, y, rq_tensor_wrap(&g, R, 2, (int[]){N, out})));
        rq_tensor_zero_grad(x), rq_tensor_zero_grad(L.w), rq_tensor_zero_grad(L.b);
        assert_int_equal(rq_backward(&g, loss), RQ_OK);

        /* by hand */
        float xr[7 * 16], xq[7 * 16], wr[6 * 16], wq[6 * 16];
        uint8_t mask[7 * 16];
        memcpy(xr, x->data, sizeof xr);
        memcpy(wr, L.w->data, sizeof wr);
        rq_hadamard_apply(&L.q->had, xr, N);
        rq_hadamard_apply(&L.q->had, wr, out);
        rq_actq_cfg c = {bits, RQ_ACTQ_ROBUST};
        rq_actq_rowwise(xr, xq, mask, N, in, &c);
        rq_ternary_rowwise(wr, wq, NULL, out, in, NULL);
        for (int i = 0; i < N; i++)
            for (int o = 0; o < out; o++) {
                double acc = L.b->data[o];
                for (int k = 0; k < in; k++) acc += (double)xq[i * in + k] * wq[o * in + k];
                assert_float_equal(y->data[i * out + o], acc, 1e-4);
            }
        float dx[7 * 16] = {0}, dw[6 * 16] = {0};
        for (int i = 0; i < N; i++)
            for (int k = 0; k < in; k++) {
                double a = 0;
                for (int o = 0; o < out; o++) a += (double)R[i * out + o] * wq[o * in + k];
                dx[i * in + k] = (float)a * mask[i * in + k];
            }
        for (int o = 0; o < out; o++)
            for (int k = 0; k < in; k++) {
                double a = 0;
                for (int i = 0; i < N; i++) a += (double)R[i * out + o] * xq[i * in + k];
                dw[o * in + k] = (float)a;
            }
        rq_hadamard_apply(&L.q->had, dx, N);
        rq_hadamard_apply(&L.q->had, dw, out);
        for (int i = 0; i < N * in; i++) assert_float_equal(x->grad[i], dx[i], 1e-4);
        for (int i = 0; i < out * in; i++) assert_float_equal(L.w->grad[i], dw[i], 1e-4);
        for (int o = 0; o < out; o++) {
            double a = 0;
            for (int i = 0; i < N; i++) a += R[i * out + o];
            assert_float_equal(L.b->grad[o], a, 1e-5);
        }
        /* at least one activation was clipped at low bits, so the mask matters */
        if (bits <= 2) {
            int clipped = 0;
            for (int i = 0; i < N * in; i++) clipped += !mask[i];
            assert_true(clipped > 0);
        }
        rq_graph_free(&g);
        rq_qlinear_detach(&L);
        rq_tensor_free(x), rq_tensor_free(L.w), rq_tensor_free(L.b);
    }
}

static rq_dit_config tiny_cfg(int hidden) {
    rq_dit_config c = {.input_size = 8, .in_channels = 1, .patch_size = 2, .hidden_size = hidden, .depth = 2,
                       .num_heads = 2, .num_classes = 3, .mlp_ratio = 4.0f, .learn_sigma = 1};
    return c;
}

/* Forward of a tiny_cfg model on two fixed 8x8 inputs (x: 128 floats, filled here). */
static rq_tensor *tiny_forward(rq_graph *g, rq_dit *m, float *x) {
    uint64_t s = 3;
    tu_fill(&s, x, 128, -1, 1);
    static float tv[2] = {10, 500}; /* wrapped by the graph: must outlive this call */
    static int y[2] = {0, 3};
    rq_tensor *out = rq_dit_forward(g, m, rq_tensor_wrap(g, x, 4, (int[]){2, 1, 8, 8}), rq_tensor_wrap(g, tv, 1, (int[]){2}), y);
    assert_non_null(out);
    return out;
}

static void test_model_wiring(void **state) {
    rq_dit m;
    rq_err e = {0};
    rq_dit_config c = tiny_cfg(32);
    assert_int_equal(rq_dit_init(&m, &c, 1, &e), RQ_OK);
    rq_quant_opts o = {.enabled = 1, .weight_ternary = 1, .act_bits = 2, .adaln_act_bits = 4,
                       .method = RQ_ACTQ_ROBUST, .hadamard = 1};
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_OK);
    rq_dit_linear *ls[64];
    const char *names[64];
    int n = rq_dit_linears(&m, ls, names, 64);
    int quantized = 0;
    for (int i = 0; i < n; i++) {
        const char *k = ls[i]->kind;
        int want = !strcmp(k, "qkv") || !strcmp(k, "proj") || !strcmp(k, "fc1") || !strcmp(k, "fc2") || !strcmp(k, "adaLN");
        assert_int_equal(ls[i]->q != NULL, want);
        if (ls[i]->q) {
            quantized++;
            assert_int_equal(ls[i]->q->a_bits, strcmp(k, "adaLN") ? 2 : 4);
            assert_true(ls[i]->q->hadamard && ls[i]->q->w_ternary);
        }
    }
    assert_int_equal(quantized, 10);

    /* a precision map overrides single layers; errors name file:line */
    char dir[] = "/tmp/rqmapXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/map.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# AMPN map\nblocks.0.attn.qkv 3\nblocks.1.mlp.fc2.weight 1\n");
    fclose(f);
    o.precision_map = path;
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_OK);
    assert_int_equal(m.blocks[0].qkv.q->a_bits, 3);
    assert_int_equal(m.blocks[1].fc2.q->a_bits, 1);
    assert_int_equal(m.blocks[1].qkv.q->a_bits, 2);
    f = fopen(path, "w");
    fprintf(f, "blocks.0.attn.qkv 3\nblocks.0.attn.qvk 2\n");
    fclose(f);
    rq_err_clear(&e);
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, ":2:"));
    assert_non_null(strstr(e.msg, "qvk"));
    f = fopen(path, "w");
    fprintf(f, "blocks.0.attn.qkv 9\n");
    fclose(f);
    rq_err_clear(&e);
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "outside 1..8"));
    unlink(path);
    rmdir(dir);

    /* one QAT step: finite loss and gradients on every parameter of a block */
    o.precision_map = NULL;
    rq_dit_quantize(&m, &o, &e);
    for (int i = 0; i < m.n_params; i++) {
        uint64_t s = 50 + i;
        tu_fill(&s, m.params[i]->data, m.params[i]->n, -0.2f, 0.2f);
    }
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    float x[2 * 64];
    rq_tensor *out = tiny_forward(&g, &m, x);
    assert_int_equal(rq_backward(&g, rq_mean(&g, rq_mul(&g, out, out))), RQ_OK);
    double gn = 0;
    for (long j = 0; j < m.blocks[0].qkv.w->n; j++) gn += fabs(m.blocks[0].qkv.w->grad[j]);
    assert_true(gn > 0 && isfinite(gn));
    rq_graph_free(&g);
    rq_dit_free(&m);
}

static void test_unsupported_hadamard_names_layer(void **state) {
    rq_dit m;
    rq_err e = {0};
    rq_dit_config c = tiny_cfg(20); /* 20 = 5 * 4: not 2^k, 12*2^k or 36*2^k */
    assert_int_equal(rq_dit_init(&m, &c, 1, &e), RQ_OK);
    rq_quant_opts o = {.enabled = 1, .weight_ternary = 1, .act_bits = 4, .adaln_act_bits = 4, .hadamard = 1};
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "blocks.0.attn.qkv"));
    assert_non_null(strstr(e.msg, "20"));
    rq_dit_free(&m);
}

/* Low-rank branch: the SVD init is the best rank-r fit of W' (Eckart-Young,
 * checked against the exact Jacobi singular values), the forward is
 * x_q ternary(W' - AB)^T + (x H) B^T A^T + b, and A, B get exactly the
 * gradient of their own branch (the residual's AB is stop-gradient). */
static void test_lowrank_branch(void **state) {
    rq_dit m;
    rq_err e = {0};
    rq_dit_config c = tiny_cfg(32);
    assert_int_equal(rq_dit_init(&m, &c, 3, &e), RQ_OK);
    int np = m.n_params, r = 4;
    rq_quant_opts o = {.enabled = 1, .weight_ternary = 1, .act_bits = 3, .adaln_act_bits = 4,
                       .method = RQ_ACTQ_ROBUST, .hadamard = 1, .lowrank_rank = r};
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_OK);
    assert_int_equal(rq_dit_add_lowrank(&m, &o, &e), RQ_OK);
    assert_int_equal(m.n_params, np + 2 * 2 * 5); /* 2 blocks x 5 ternary linears x (A, B) */
    assert_int_equal(rq_dit_add_lowrank(&m, &o, &e), RQ_OK); /* idempotent */
    assert_int_equal(m.n_params, np + 20);
    rq_dit_linear *L = &m.blocks[1].fc1;
    assert_non_null(rq_dit_param(&m, "blocks.1.mlp.fc1.lowrank_A"));
    assert_true(L->lr_a->shape[0] == 128 && L->lr_a->shape[1] == r && L->lr_b->shape[0] == r && L->lr_b->shape[1] == 32);
    assert_int_equal(rq_dit_lowrank_init(&m, &e), RQ_OK);

    /* init quality: ||W' - AB||_F vs the optimum from exact singular values */
    int out = 128, in = 32;
    double *wh = malloc(sizeof(double) * out * in), sv[32];
    float *tmp = malloc(sizeof(float) * out * in);
    memcpy(tmp, L->w->data, sizeof(float) * out * in);
    rq_hadamard_apply(&L->q->had, tmp, out);
    for (int i = 0; i < out * in; i++) wh[i] = tmp[i];
    assert_int_equal(rq_svd_jacobi(wh, out, in, NULL, sv, NULL, &e), RQ_OK);
    double opt = 0, got = 0;
    for (int i = r; i < in; i++) opt += sv[i] * sv[i];
    for (int i = 0; i < out; i++)
        for (int j = 0; j < in; j++) {
            double ab = 0;
            for (int k = 0; k < r; k++) ab += (double)L->lr_a->data[i * r + k] * L->lr_b->data[k * in + j];
            got += (wh[i * in + j] - ab) * (wh[i * in + j] - ab);
        }
    if (sqrt(got) > 1.02 * sqrt(opt)) fail_msg("low-rank init error %.5g vs optimum %.5g", sqrt(got), sqrt(opt));

    /* forward and branch gradients against the formula */
    rq_graph g;
    rq_graph_init(&g, 8 << 20);
    int T = 6;
    rq_tensor *x = rq_tensor_arena(&g, 2, (int[]){T, in});
    uint64_t sd = 5;
    tu_fill(&sd, x->data, x->n, -1, 1);
    rq_zero_grads(&m);
    rq_tensor *y = rq_qlinear_forward(&g, L, x);
    assert_non_null(y);
    rq_tensor *loss = rq_sum(&g, rq_mul(&g, y, y));
    assert_int_equal(rq_backward(&g, loss), RQ_OK);
    float *xh = malloc(sizeof(float) * T * in), *xq = malloc(sizeof(float) * T * in), *res = malloc(sizeof(float) * out * in);
    memcpy(xh, x->data, sizeof(float) * T * in);
    rq_hadamard_apply(&L->q->had, xh, T);
    rq_actq_cfg ac = {3, RQ_ACTQ_ROBUST};
    rq_actq_rowwise(xh, xq, NULL, T, in, &ac);
    for (int i = 0; i < out; i++)
        for (int j = 0; j < in; j++) {
            double ab = 0;
            for (int k = 0; k < r; k++) ab += (double)L->lr_a->data[i * r + k] * L->lr_b->data[k * in + j];
            res[i * in + j] = (float)(tmp[i * in + j] - ab);
        }
    rq_ternary_rowwise(res, res, NULL, out, in, NULL);
    double max_err = 0, ymax = 0, ga = 0, gb = 0, gmax = 0;
    double *u = malloc(sizeof(double) * T * r), *dy = malloc(sizeof(double) * T * out);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < r; k++) {
            double a = 0;
            for (int j = 0; j < in; j++) a += (double)xh[t * in + j] * L->lr_b->data[k * in + j];
            u[t * r + k] = a;
        }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < out; i++) {
            double v = L->b->data[i];
            for (int j = 0; j < in; j++) v += (double)xq[t * in + j] * res[i * in + j];
            for (int k = 0; k < r; k++) v += u[t * r + k] * L->lr_a->data[i * r + k];
            max_err = fmax(max_err, fabs(v - y->data[t * out + i]));
            ymax = fmax(ymax, fabs(v));
            dy[t * out + i] = 2 * y->data[t * out + i];
        }
    assert_true(max_err < 1e-4 * ymax);
    for (int i = 0; i < out; i++) /* dA = dY^T (x_H B^T) */
        for (int k = 0; k < r; k++) {
            double d = 0;
            for (int t = 0; t < T; t++) d += dy[t * out + i] * u[t * r + k];
            ga = fmax(ga, fabs(d - L->lr_a->grad[i * r + k]));
            gmax = fmax(gmax, fabs(d));
        }
    for (int k = 0; k < r; k++) /* dB = (dY A)^T x_H */
        for (int j = 0; j < in; j++) {
            double d = 0;
            for (int t = 0; t < T; t++) {
                double da = 0;
                for (int i = 0; i < out; i++) da += dy[t * out + i] * L->lr_a->data[i * r + k];
                d += da * xh[t * in + j];
            }
            gb = fmax(gb, fabs(d - L->lr_b->grad[k * in + j]));
            gmax = fmax(gmax, fabs(d));
        }
    if (ga > 1e-4 * gmax || gb > 1e-4 * gmax) fail_msg("low-rank grads off: dA %.3g dB %.3g (scale %.3g)", ga, gb, gmax);
    free(wh), free(tmp), free(xh), free(xq), free(res), free(u), free(dy);
    rq_graph_free(&g);
    /* a rank larger than a layer is refused, naming it */
    rq_dit m2;
    assert_int_equal(rq_dit_init(&m2, &c, 3, &e), RQ_OK);
    o.lowrank_rank = 33;
    assert_int_equal(rq_dit_add_lowrank(&m2, &o, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "lowrank_rank 33"));
    rq_dit_free(&m2);
    rq_dit_free(&m);
}

/* Activation recomputation: the same loss and gradients as the plain tape
 * (only the order in which a block's input gradient is summed differs), for
 * FP, and for QAT with 8-bit attention and a low-rank branch; the main tape
 * plus the scratch graph need less memory than the plain tape. */
static void grads_of(rq_dit *m, int recompute, float *loss, float *grads, size_t *arena_bytes) {
    m->recompute = recompute;
    rq_zero_grads(m);
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    float x[2 * 64];
    rq_tensor *out = tiny_forward(&g, m, x);
    rq_tensor *l = rq_mean(&g, rq_mul(&g, out, out));
    assert_int_equal(rq_backward(&g, l), RQ_OK);
    *loss = l->data[0];
    long k = 0;
    for (int i = 0; i < m->n_params; i++)
        for (long j = 0; j < m->params[i]->n; j++) grads[k++] = m->params[i]->grad[j];
    *arena_bytes = g.arena.high_water + (recompute && m->scratch ? m->scratch->arena.high_water : 0);
    rq_graph_free(&g);
}

static void test_recompute_same_gradients(void **state) {
    for (int mode = 0; mode < 2; mode++) {
        rq_dit m;
        rq_err e = {0};
        rq_dit_config c = tiny_cfg(32);
        c.depth = 4;
        assert_int_equal(rq_dit_init(&m, &c, 7, &e), RQ_OK);
        if (mode == 1) {
            rq_quant_opts o = {.enabled = 1, .weight_ternary = 1, .act_bits = 2, .adaln_act_bits = 4,
                               .method = RQ_ACTQ_ROBUST, .hadamard = 1, .attn_bits = 8, .lowrank_rank = 2};
            assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_OK);
            assert_int_equal(rq_dit_add_lowrank(&m, &o, &e), RQ_OK);
            assert_int_equal(rq_dit_lowrank_init(&m, &e), RQ_OK);
        }
        long n = 0;
        for (int i = 0; i < m.n_params; i++) {
            uint64_t s = 70 + i;
            tu_fill(&s, m.params[i]->data, m.params[i]->n, -0.2f, 0.2f);
            n += m.params[i]->n;
        }
        float *g0 = malloc(sizeof(float) * n), *g1 = malloc(sizeof(float) * n), l0, l1;
        size_t mem0, mem1;
        grads_of(&m, 0, &l0, g0, &mem0);
        grads_of(&m, 1, &l1, g1, &mem1);
        assert_float_equal(l0, l1, 0); /* the forward is the same floats */
        double gmax = 0, dmax = 0;
        for (long j = 0; j < n; j++) {
            gmax = fmax(gmax, fabs(g0[j]));
            dmax = fmax(dmax, fabs((double)g0[j] - g1[j]));
        }
        if (!(gmax > 0) || dmax > 1e-5 * gmax) fail_msg("mode %d: recompute gradients differ by %.3g (max |g| %.3g)", mode, dmax, gmax);
        if (mem1 >= mem0) fail_msg("mode %d: recompute used %zu bytes, the plain tape %zu", mode, mem1, mem0);
        free(g0), free(g1);
        rq_dit_free(&m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hadamard_op_gradient),
        cmocka_unit_test(test_rotation_invariance),
        cmocka_unit_test(test_rotate_ste_matches_unfused),
        cmocka_unit_test(test_linear_codes),
        cmocka_unit_test(test_fake_quant_forward_backward),
        cmocka_unit_test(test_model_wiring),
        cmocka_unit_test(test_unsupported_hadamard_names_layer),
        cmocka_unit_test(test_lowrank_branch),
        cmocka_unit_test(test_recompute_same_gradients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
