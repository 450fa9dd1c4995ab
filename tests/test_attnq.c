/* test_attnq.c: quantized attention (rq_attention_q), its integer inference
 * form (rq_attention_int) and the int8 score kernels (iattn.h).
 *
 *  - kernels: every ISA returns the scalar path's int32 / float bit for bit,
 *    and the scalar path equals a plain triple loop (codes incl. -128/127,
 *    K not a multiple of 4, strides > K, caller-given or NULL work buffer),
 *    and so do the softmax / P-code rows;
 *  - bits = 0 is rq_attention bit for bit (forward and gradient);
 *  - forward and STE backward equal a reference composed of taped ops
 *    (rq_ste with rq_actq_rowwise on the dh-rows, rq_linear for q k^T,
 *    rq_softmax, rq_ste with the P grid, rq_matmul), within 1e-4, for 8 and
 *    4 bits, min-max and robust (with outliers so that the robust clip
 *    masks some gradients);
 *  - the 8-bit gradient stays close to the FP gradient (the STE is sane);
 *  - the integer forward equals the fake-quant forward bit for bit on every
 *    ISA, for DiT head sizes and odd ones, and inside a whole tiny DiT;
 *  - the config default (attn_bits = 8) reaches the model; bad arguments fail
 *    with messages. */
#include <string.h>

#include "robuq/config.h"
#include "robuq/iattn.h"
#include "robuq/ops.h"
#include "robuq/qlinear.h"
#include "robuq/train.h"
#include "testutil.h"

static rq_tensor *param(int ndim, const int *shape, uint64_t seed, float lo, float hi) {
    rq_tensor *t = rq_tensor_new(ndim, shape, 1, "p");
    tu_fill(&seed, t->data, t->n, lo, hi);
    return t;
}

/* ------------------------------------------------------------- kernels */

static void fill_codes(uint64_t *s, int8_t *x, long n) {
    for (long i = 0; i < n; i++) x[i] = (int8_t)((int)(tu_next(s) % 256) - 128);
}

static void test_kernels_exact(void **state) {
    (void)state;
    const int shapes[][3] = {{1, 1, 1},   {3, 5, 7},   {8, 48, 64},   {9, 49, 64},  {17, 33, 5},
                             {40, 30, 72}, {196, 196, 64}, {5, 100, 130}, {2, 3, 1024}};
    const rq_iattn_isa isas[] = {RQ_IATTN_AVX2, RQ_IATTN_VNNI};
    const rq_iattn_isa keep = rq_iattn_get_isa();
    uint64_t s = 11;
    int simd_runs = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int M = shapes[c][0], N = shapes[c][1], K = shapes[c][2], ldq = K + 3, ldk = K + 1, ldc = N + 2;
        int8_t *q = malloc((size_t)M * ldq), *k = malloc((size_t)N * ldk);
        fill_codes(&s, q, (long)M * ldq);
        fill_codes(&s, k, (long)N * ldk);
        q[0] = -128, k[0] = -128, q[K - 1] = 127; /* extremes */
        float *rs = malloc(M * sizeof(float)), *cs = malloc(N * sizeof(float));
        tu_fill(&s, rs, M, 1e-3f, 1e-1f);
        tu_fill(&s, cs, N, 1e-3f, 1e-1f);
        int32_t *C0 = calloc((size_t)M * ldc, 4), *C1 = calloc((size_t)M * ldc, 4);
        float *S0 = calloc((size_t)M * ldc, 4), *S1 = calloc((size_t)M * ldc, 4);
        void *work = aligned_alloc(64, (rq_iattn_work_bytes(M, N, K) + 63) / 64 * 64);
        rq_err e = {0};
        rq_iattn_set_isa(RQ_IATTN_SCALAR);
        assert_int_equal(rq_iattn_qk(M, N, K, q, ldq, k, ldk, C0, ldc, NULL, &e), RQ_OK);
        assert_int_equal(rq_iattn_scores(M, N, K, q, ldq, k, ldk, rs, cs, S0, ldc, NULL, &e), RQ_OK);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                int32_t ref = 0;
                for (int d = 0; d < K; d++) ref += q[(long)i * ldq + d] * k[(long)j * ldk + d];
                assert_int_equal(C0[(long)i * ldc + j], ref);
                float sr = (float)ref * rs[i];
                sr = sr * cs[j];
                assert_true(S0[(long)i * ldc + j] == sr);
            }
        for (size_t v = 0; v < 2; v++) {
            if (!rq_iattn_isa_supported(isas[v])) continue;
            assert_int_equal(rq_iattn_set_isa(isas[v]), isas[v]);
            for (int w = 0; w < 2; w++) {
                memset(C1, 0x5a, (size_t)M * ldc * 4);
                memset(S1, 0x5a, (size_t)M * ldc * 4);
                assert_int_equal(rq_iattn_qk(M, N, K, q, ldq, k, ldk, C1, ldc, w ? work : NULL, &e), RQ_OK);
                assert_int_equal(rq_iattn_scores(M, N, K, q, ldq, k, ldk, rs, cs, S1, ldc, w ? work : NULL, &e),
                                 RQ_OK);
                for (int i = 0; i < M; i++) {
                    /* valid entries equal; the padding between rows is untouched */
                    if (memcmp(C0 + (long)i * ldc, C1 + (long)i * ldc, (size_t)N * 4) ||
                        memcmp(S0 + (long)i * ldc, S1 + (long)i * ldc, (size_t)N * 4))
                        fail_msg("%s differs from scalar at M=%d N=%d K=%d row %d", rq_iattn_isa_name(isas[v]), M,
                                 N, K, i);
                    for (int j = N; j < ldc; j++)
                        assert_int_equal(C1[(long)i * ldc + j], 0x5a5a5a5a);
                }
                simd_runs++;
            }
        }
        free(q), free(k), free(rs), free(cs), free(C0), free(C1), free(S0), free(S1), free(work);
    }
    print_message("iattn: %d SIMD runs compared (best ISA here: %s)\n", simd_runs,
                  rq_iattn_isa_name(rq_iattn_set_isa(RQ_IATTN_AUTO)));
    rq_iattn_set_isa(keep);
}

static void test_kernel_errors(void **state) {
    (void)state;
    int8_t q[8] = {0}, k[8] = {0};
    int32_t C[4];
    rq_err e = {0};
    assert_int_equal(rq_iattn_qk(1, 1, 0, q, 8, k, 8, C, 1, NULL, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "K=0"));
    rq_err_clear(&e);
    assert_int_equal(rq_iattn_qk(1, 1, 1025, q, 2000, k, 2000, C, 1, NULL, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "K=1025"));
    rq_err_clear(&e);
    assert_int_equal(rq_iattn_qk(1, 1, 8, q, 4, k, 8, C, 1, NULL, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "ldq=4"));
    rq_err_clear(&e);
    assert_int_equal(rq_iattn_qk(1, 1, 8, NULL, 8, k, 8, C, 1, NULL, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "NULL"));
    rq_err_clear(&e);
    assert_int_equal(rq_iattn_scores(1, 1, 8, q, 8, k, 8, NULL, NULL, (float *)C, 1, NULL, &e), RQ_EINVAL);
    rq_err_clear(&e);
    assert_int_equal(rq_iattn_qk(0, 0, 8, NULL, 8, NULL, 8, NULL, 0, NULL, &e), RQ_OK); /* empty */
}

/* Softmax rows: every ISA gives the scalar bits (P, codes, m, 1/sum), the
 * recompute gives the same P, and P is a softmax. Rows include ties,
 * -inf-free large ranges and lengths that are not multiples of 16. */
static void test_softmax_kernels_exact(void **state) {
    (void)state;
    const int ns[] = {1, 5, 16, 17, 33, 196, 200};
    const rq_iattn_isa isas[] = {RQ_IATTN_SCALAR, RQ_IATTN_AVX2, RQ_IATTN_VNNI};
    const rq_iattn_isa keep = rq_iattn_get_isa();
    uint64_t s = 13;
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const int n = ns[c], rows = 7, ld = n + 3;
        float *S = malloc((size_t)rows * ld * sizeof(float));
        tu_fill(&s, S, (long)rows * ld, -30, 30);
        for (int j = 0; j < n; j++) S[ld + j] = 0.5f; /* a constant row */
        S[2 * ld] = 120.0f;                            /* beyond the exp clamp */
        float *ref[2] = {0}, mref[7], iref[7];
        for (int lq = 0; lq < 2; lq++) {
            const float L = lq ? 255.0f : 0.0f;
            for (size_t v = 0; v < 3; v++) {
                if (!rq_iattn_isa_supported(isas[v])) continue;
                rq_iattn_set_isa(isas[v]);
                float *P = malloc((size_t)rows * ld * sizeof(float)), *P2 = malloc((size_t)rows * ld * sizeof(float));
                float *Pc = malloc((size_t)rows * ld * sizeof(float)), m[7], inv[7];
                memcpy(P, S, (size_t)rows * ld * sizeof(float));
                memcpy(P2, S, (size_t)rows * ld * sizeof(float));
                rq_iattn_softmax(rows, n, P, ld, m, inv, L);
                rq_iattn_probs(rows, n, P2, ld, m, inv, Pc, ld, 255.0f);
                for (int i = 0; i < rows; i++) {
                    double sum = 0;
                    for (int j = 0; j < n; j++) {
                        const float p = P2[(long)i * ld + j], code = Pc[(long)i * ld + j];
                        sum += p;
                        assert_true(code == rintf(p * 255.0f));
                        assert_true(L > 0 ? P[(long)i * ld + j] == code : P[(long)i * ld + j] == p);
                    }
                    assert_float_equal(sum, 1.0, 1e-5);
                    assert_true(P[(long)i * ld + n] == S[(long)i * ld + n]); /* padding untouched */
                }
                if (v == 0) {
                    ref[lq] = P, memcpy(mref, m, sizeof m), memcpy(iref, inv, sizeof inv);
                } else {
                    if (memcmp(P, ref[lq], (size_t)rows * ld * sizeof(float)) || memcmp(m, mref, sizeof m) ||
                        memcmp(inv, iref, sizeof inv))
                        fail_msg("softmax %s differs from scalar (n=%d, L=%g)", rq_iattn_isa_name(isas[v]), n, L);
                    free(P);
                }
                free(P2), free(Pc);
            }
        }
        free(ref[0]), free(ref[1]), free(S);
    }
    rq_iattn_set_isa(keep);
}

/* ----------------------------------------------------------- bits = 0 */

static void test_bits0_is_fp(void **state) {
    (void)state;
    const int N = 2, T = 9, heads = 3, dh = 4, D = heads * dh;
    rq_tensor *qkv = param(3, (int[]){N, T, 3 * D}, 5, -2, 2);
    float *R = malloc((size_t)N * T * D * sizeof(float)), *g0 = malloc((size_t)qkv->n * sizeof(float));
    uint64_t s = 6;
    tu_fill(&s, R, (long)N * T * D, -1, 1);
    float *o0 = NULL;
    for (int pass = 0; pass < 2; pass++) {
        rq_graph g;
        rq_graph_init(&g, 1 << 20);
        rq_tensor_zero_grad(qkv);
        rq_tensor *o = pass ? rq_attention_q(&g, qkv, heads, 0, RQ_ACTQ_MINMAX) : rq_attention(&g, qkv, heads);
        assert_non_null(o);
        rq_tensor *loss = rq_sum(&g, rq_mul(&g, o, rq_tensor_wrap(&g, R, 3, (int[]){N, T, D})));
        assert_int_equal(rq_backward(&g, loss), RQ_OK);
        if (!pass) {
            o0 = malloc((size_t)o->n * sizeof(float));
            memcpy(o0, o->data, (size_t)o->n * sizeof(float));
            memcpy(g0, qkv->grad, (size_t)qkv->n * sizeof(float));
        } else {
            assert_memory_equal(o0, o->data, (size_t)o->n * sizeof(float));
            assert_memory_equal(g0, qkv->grad, (size_t)qkv->n * sizeof(float));
        }
        rq_graph_free(&g);
    }
    free(o0), free(R), free(g0);
    rq_tensor_free(qkv);
}

/* ------------------------------------------- composed reference (STE) */

typedef struct {
    int heads, bits, method;
} attn_case;

/* P grid of the reference: rint(P L) / L, unmasked STE. */
static void probs_grid(const float *x, float *y, uint8_t *mask, long rows, int n, const void *arg) {
    const float L = *(const float *)arg;
    (void)mask;
    for (long i = 0; i < rows * n; i++) y[i] = rintf(x[i] * L) / L;
}

/* sum over (b, h) of <O_bh, R_bh>, O_bh = Q(softmax(q_hat k_hat^T / sqrt(dh))) v_hat, from taped ops. */
static rq_tensor *reference_loss(rq_graph *g, rq_tensor *qkv, const attn_case *c, const float *R, float *O) {
    const int N = qkv->shape[0], T = qkv->shape[1], D = qkv->shape[2] / 3, dh = D / c->heads;
    static rq_actq_cfg cfg;
    static float L;
    cfg = (rq_actq_cfg){c->bits, c->method};
    L = (float)((1 << c->bits) - 1);
    rq_tensor *x = rq_ste(g, rq_reshape(g, qkv, 2, (int[]){(int)(qkv->n / dh), dh}), rq_actq_rowwise, &cfg, 1,
                          "qkv_quant");
    x = rq_reshape(g, x, 3, (int[]){N, T, 3 * D});
    rq_tensor *loss = NULL;
    for (int b = 0; b < N; b++) {
        rq_tensor *xb = rq_reshape(g, rq_slice(g, x, 0, b, 1), 2, (int[]){T, 3 * D});
        for (int h = 0; h < c->heads; h++) {
            rq_tensor *q = rq_slice(g, xb, 1, h * dh, dh), *k = rq_slice(g, xb, 1, D + h * dh, dh),
                      *v = rq_slice(g, xb, 1, 2 * D + h * dh, dh);
            rq_tensor *P = rq_softmax(g, rq_scale(g, rq_linear(g, q, k, NULL), 1.0f / sqrtf((float)dh)));
            rq_tensor *o = rq_matmul(g, rq_ste(g, P, probs_grid, &L, 0, "p_quant"), v);
            rq_tensor *Rt = rq_tensor_arena(g, 2, (int[]){T, dh});
            if (!o || !Rt) return NULL;
            for (int t = 0; t < T; t++)
                for (int d = 0; d < dh; d++) {
                    const long at = ((long)b * T + t) * D + h * dh + d;
                    Rt->data[t * dh + d] = R[at];
                    O[at] = o->data[t * dh + d];
                }
            rq_tensor *l = rq_sum(g, rq_mul(g, o, Rt));
            loss = loss ? rq_add(g, loss, l) : l;
        }
    }
    return loss;
}

/* max |a - b| / (1 + max |b|) */
static double max_err(const float *a, const float *b, long n) {
    double m = 0, s = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
        s = fabs(b[i]) > s ? fabs(b[i]) : s;
    }
    return m / (1.0 + s);
}

static void check_vs_reference(const attn_case *c, int N, int T, int dh, uint64_t seed, int outliers) {
    const int D = c->heads * dh;
    rq_tensor *qkv = param(3, (int[]){N, T, 3 * D}, seed, -2, 2);
    uint64_t s = seed + 1;
    for (int i = 0; i < outliers; i++) qkv->data[tu_next(&s) % qkv->n] = 30.0f; /* > alpha * rms for dh >= 16 */
    const long no = (long)N * T * D;
    float *R = malloc(no * sizeof(float)), *Oref = malloc(no * sizeof(float));
    float *gref = malloc((size_t)qkv->n * sizeof(float));
    tu_fill(&s, R, no, -1, 1);
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    rq_tensor_zero_grad(qkv);
    rq_tensor *loss = reference_loss(&g, qkv, c, R, Oref);
    if (!loss) fail_msg("reference: %s", g.err.msg);
    assert_int_equal(rq_backward(&g, loss), RQ_OK);
    memcpy(gref, qkv->grad, (size_t)qkv->n * sizeof(float));
    rq_graph_reset(&g);
    rq_tensor_zero_grad(qkv);
    rq_tensor *o = rq_attention_q(&g, qkv, c->heads, c->bits, c->method);
    if (!o) fail_msg("attention_q: %s", g.err.msg);
    loss = rq_sum(&g, rq_mul(&g, o, rq_tensor_wrap(&g, R, 3, (int[]){N, T, D})));
    assert_int_equal(rq_backward(&g, loss), RQ_OK);
    const double ef = max_err(o->data, Oref, no), eg = max_err(qkv->grad, gref, qkv->n);
    /* how many gradients the STE masks zero (the reference's rq_ste mask) */
    uint8_t *mask = malloc((size_t)qkv->n);
    float *y = malloc((size_t)qkv->n * sizeof(float));
    rq_actq_cfg cfg = {c->bits, c->method};
    rq_actq_rowwise(qkv->data, y, mask, qkv->n / dh, dh, &cfg);
    long clipped = 0;
    for (long i = 0; i < qkv->n; i++) clipped += !mask[i];
    print_message("  bits %d %s heads %d dh %d: forward err %.2g, grad err %.2g, %ld masked\n", c->bits,
                  rq_actq_method_name(c->method), c->heads, dh, ef, eg, clipped);
    if (!(ef < 1e-4) || !(eg < 1e-4)) fail_msg("quantized attention differs from the composed reference");
    if (outliers && c->method == RQ_ACTQ_ROBUST) assert_true(clipped > 0);
    if (c->method == RQ_ACTQ_MINMAX) assert_int_equal(clipped, 0);
    free(mask), free(y), free(R), free(Oref), free(gref);
    rq_graph_free(&g);
    rq_tensor_free(qkv);
}

static void test_matches_composed_reference(void **state) {
    (void)state;
    const attn_case cases[] = {{2, 8, RQ_ACTQ_MINMAX}, {2, 8, RQ_ACTQ_ROBUST}, {3, 4, RQ_ACTQ_MINMAX},
                               {3, 4, RQ_ACTQ_ROBUST}, {1, 6, RQ_ACTQ_MINMAX}};
    check_vs_reference(&cases[0], 2, 7, 8, 21, 0);
    check_vs_reference(&cases[1], 2, 7, 16, 22, 8); /* the robust clip can bite only if dh > alpha^2 */
    check_vs_reference(&cases[2], 2, 6, 4, 23, 0);
    check_vs_reference(&cases[3], 2, 6, 16, 24, 8);
    check_vs_reference(&cases[4], 1, 11, 5, 25, 0);
}

/* At 8 bits the STE gradient is a small perturbation of the FP one. */
static void test_grad_close_to_fp(void **state) {
    (void)state;
    const int N = 2, T = 16, heads = 2, dh = 16, D = heads * dh;
    rq_tensor *qkv = param(3, (int[]){N, T, 3 * D}, 31, -1.5f, 1.5f);
    float *R = malloc((size_t)N * T * D * sizeof(float)), *gfp = malloc((size_t)qkv->n * sizeof(float));
    uint64_t s = 32;
    tu_fill(&s, R, (long)N * T * D, -1, 1);
    for (int bits = 0; bits <= 8; bits += 8) {
        rq_graph g;
        rq_graph_init(&g, 1 << 20);
        rq_tensor_zero_grad(qkv);
        rq_tensor *o = rq_attention_q(&g, qkv, heads, bits, RQ_ACTQ_MINMAX);
        rq_tensor *loss = rq_sum(&g, rq_mul(&g, o, rq_tensor_wrap(&g, R, 3, (int[]){N, T, D})));
        assert_int_equal(rq_backward(&g, loss), RQ_OK);
        if (!bits) {
            memcpy(gfp, qkv->grad, (size_t)qkv->n * sizeof(float));
        } else {
            double e = tu_rel_err(qkv->grad, gfp, qkv->n, 1e-6);
            print_message("  8-bit vs FP gradient: relative error %.3g\n", e);
            assert_true(e < 3e-2 && e > 0);
        }
        rq_graph_free(&g);
    }
    free(R), free(gfp);
    rq_tensor_free(qkv);
}

/* --------------------------------------------------------- integer path */

static void test_integer_matches_fake_quant(void **state) {
    (void)state;
    const int cases[][5] = {/* N, T, heads, dh, bits */
                            {2, 50, 3, 64, 8}, {1, 37, 2, 72, 8}, {2, 13, 2, 6, 8}, {1, 20, 4, 16, 4}};
    const rq_iattn_isa isas[] = {RQ_IATTN_SCALAR, RQ_IATTN_AVX2, RQ_IATTN_VNNI};
    const rq_iattn_isa keep = rq_iattn_get_isa();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int N = cases[c][0], T = cases[c][1], heads = cases[c][2], dh = cases[c][3], bits = cases[c][4];
        const int D = heads * dh;
        rq_tensor *qkv = param(3, (int[]){N, T, 3 * D}, 40 + c, -3, 3);
        for (int method = 0; method < 2; method++) {
            rq_graph g;
            rq_graph_init(&g, 1 << 20);
            g.grad_enabled = 0;
            rq_tensor *ref = rq_attention_q(&g, qkv, heads, bits, method);
            assert_non_null(ref);
            for (size_t v = 0; v < 3; v++) {
                if (!rq_iattn_isa_supported(isas[v])) continue;
                rq_iattn_set_isa(isas[v]);
                rq_tensor *o = rq_attention_int(&g, qkv, heads, bits, method);
                if (!o) fail_msg("attention_int: %s", g.err.msg);
                assert_true(tu_rel_err(o->data, ref->data, o->n, 1e-6) <= 1e-5);
                if (memcmp(o->data, ref->data, (size_t)o->n * sizeof(float)))
                    fail_msg("integer attention (%s) != fake-quant forward bit for bit (T=%d dh=%d %s)",
                             rq_iattn_isa_name(isas[v]), T, dh, rq_actq_method_name(method));
            }
            rq_graph_free(&g);
        }
        rq_tensor_free(qkv);
    }
    rq_iattn_set_isa(keep);
}

static rq_dit_config tiny_cfg(void) {
    rq_dit_config c = {.input_size = 8, .in_channels = 2, .patch_size = 2, .hidden_size = 48, .depth = 2,
                       .num_heads = 3, .num_classes = 3, .mlp_ratio = 2.0f, .learn_sigma = 1};
    return c;
}

/* The config default reaches the model, the quantized attention changes
 * the output a little, and attn_integer gives the same output bit for bit. */
static void test_dit_wiring(void **state) {
    (void)state;
    rq_config *cfg = rq_config_new();
    assert_non_null(cfg);
    rq_err e = {0};
    rq_quant_opts o;
    assert_int_equal(rq_config_set(cfg, "quant.enabled=on", &e), RQ_OK);
    assert_int_equal(rq_quant_opts_from(cfg, &o, &e), RQ_OK);
    assert_int_equal(o.attn_bits, 8);
    o.precision_map = NULL;
    rq_dit m;
    rq_dit_config c = tiny_cfg();
    assert_int_equal(rq_dit_init(&m, &c, 3, &e), RQ_OK);
    uint64_t s = 50;
    for (int i = 0; i < m.n_params; i++) /* the reference init zeroes adaLN: give every weight some signal */
        tu_fill(&s, m.params[i]->data, m.params[i]->n, -0.2f, 0.2f);
    const int N = 2;
    float xv[2 * 2 * 8 * 8], tv[2] = {10, 500};
    int yv[2] = {0, 3};
    tu_fill(&s, xv, 2 * 2 * 8 * 8, -1, 1);
    float *out[3];
    long n_out = 0;
    for (int pass = 0; pass < 3; pass++) {
        o.attn_bits = pass ? 8 : 0;
        assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_OK);
        assert_int_equal(m.attn_bits, o.attn_bits);
        m.attn_integer = pass == 2;
        rq_graph g;
        rq_graph_init(&g, 1 << 20);
        g.grad_enabled = 0;
        rq_tensor *x = rq_tensor_wrap(&g, xv, 4, (int[]){N, 2, 8, 8}), *t = rq_tensor_wrap(&g, tv, 1, (int[]){N});
        rq_tensor *y = rq_dit_forward(&g, &m, x, t, yv);
        if (!y) fail_msg("dit forward: %s", g.err.msg);
        n_out = y->n;
        out[pass] = malloc((size_t)y->n * sizeof(float));
        memcpy(out[pass], y->data, (size_t)y->n * sizeof(float));
        rq_graph_free(&g);
    }
    double d = tu_rel_err(out[1], out[0], n_out, 1e-6);
    print_message("  tiny DiT: 8-bit attention vs FP attention output: relative difference %.3g\n", d);
    assert_true(d > 0 && d < 5e-2);
    assert_memory_equal(out[1], out[2], (size_t)n_out * sizeof(float));
    /* an exported (integer) model runs forward only */
    rq_graph g;
    rq_graph_init(&g, 1 << 20);
    rq_tensor *qkv = param(3, (int[]){1, 4, 3 * 48}, 60, -1, 1);
    assert_null(rq_attention_int(&g, qkv, 3, 8, RQ_ACTQ_MINMAX));
    assert_non_null(strstr(g.err.msg, "forward only"));
    rq_graph_free(&g);
    rq_tensor_free(qkv);
    /* quant off -> FP attention whatever attn_bits says */
    o.enabled = 0;
    assert_int_equal(rq_dit_quantize(&m, &o, &e), RQ_OK);
    assert_int_equal(m.attn_bits, 0);
    for (int i = 0; i < 3; i++) free(out[i]);
    rq_dit_free(&m);
    rq_config_free(cfg);
}

static void test_errors(void **state) {
    (void)state;
    rq_tensor *qkv = param(3, (int[]){1, 4, 12}, 70, -1, 1);
    rq_graph g;
    rq_graph_init(&g, 1 << 16);
    assert_null(rq_attention_q(&g, qkv, 2, 9, RQ_ACTQ_MINMAX));
    assert_non_null(strstr(g.err.msg, "bits=9"));
    rq_graph_reset(&g);
    g.err.code = RQ_OK;
    assert_null(rq_attention_q(&g, qkv, 2, 8, 7));
    assert_non_null(strstr(g.err.msg, "method"));
    rq_graph_reset(&g);
    g.err.code = RQ_OK;
    assert_null(rq_attention_q(&g, qkv, 3, 8, RQ_ACTQ_MINMAX));
    assert_non_null(strstr(g.err.msg, "3 heads"));
    rq_graph_free(&g);
    rq_tensor_free(qkv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_exact),
        cmocka_unit_test(test_kernel_errors),
        cmocka_unit_test(test_softmax_kernels_exact),
        cmocka_unit_test(test_bits0_is_fp),
        cmocka_unit_test(test_matches_composed_reference),
        cmocka_unit_test(test_grad_close_to_fp),
        cmocka_unit_test(test_integer_matches_fake_quant),
        cmocka_unit_test(test_dit_wiring),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
