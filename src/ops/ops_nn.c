/* ops_nn.c: normalisation, modulation and activation ops of the DiT block. */
#include <math.h>
#include <string.h>

#include "ops_internal.h"
#include "robuq/fastmath.h"

/* -------------------------------------------------------------- layernorm */

/* Eight-lane vectors for the row reductions below (GCC leaves the
 * float->double mix scalar when written as plain loops). */
typedef float ln_f8 __attribute__((vector_size(32)));
typedef double ln_d8 __attribute__((vector_size(64)));

/* A macro, not a function: a 64-byte vector passed by value to a function
 * compiled for another target (the clones) changes the ABI (-Wpsabi). */
#define LANES_SUM(p) (((p)[0] + (p)[1]) + ((p)[2] + (p)[3])) + (((p)[4] + (p)[5]) + ((p)[6] + (p)[7]))

/* One row of the layernorm backward: dx += rstd * (g - mean(g) - xh *
 * mean(g * xh)), xh = (x - mean) * rstd, with g = dy, or g = dy * (1 +
 * scale) when a modulate follows (fused op below; `mod` is a constant in
 * each caller, so the branch is compiled away). The two means in eight
 * double lanes (vector types, as in rq_layernorm_stats). */
static inline __attribute__((always_inline)) void ln_backward_row(const float *x, const float *dy, const float *scale,
                                                                  float *dx, int D, float mean, float rstd,
                                                                  const int mod) {
    ln_d8 p = {0}, q = {0};
    int i = 0;
    for (; i + 8 <= D; i += 8) {
        ln_f8 xv, gv, sv;
        memcpy(&xv, x + i, sizeof xv);
        memcpy(&gv, dy + i, sizeof gv);
        if (mod) {
            memcpy(&sv, scale + i, sizeof sv);
            gv = gv * (1.0f + sv);
        }
        const ln_f8 xh = (xv - mean) * rstd;
        p += __builtin_convertvector(gv, ln_d8);
        q += __builtin_convertvector(gv * xh, ln_d8);
    }
    for (; i < D; i++) {
        const float xh = (x[i] - mean) * rstd, gi = mod ? dy[i] * (1.0f + scale[i]) : dy[i];
        p[0] += gi;
        q[0] += gi * xh;
    }
    const float mg = (float)((LANES_SUM(p)) / D), mgx = (float)((LANES_SUM(q)) / D);
    for (i = 0; i < D; i++) {
        const float xh = (x[i] - mean) * rstd, gi = mod ? dy[i] * (1.0f + scale[i]) : dy[i];
        dx[i] += rstd * (gi - mg - xh * mgx);
    }
}
RQ_TARGET_CLONES static void layernorm_backward_row(const float *x, const float *dy, float *dx, int D, float mean,
                                                    float rstd) {
    ln_backward_row(x, dy, NULL, dx, D, mean, rstd, 0);
}
RQ_TARGET_CLONES static void layernorm_backward_row_mod(const float *x, const float *dy, const float *scale, float *dx,
                                                        int D, float mean, float rstd) {
    ln_backward_row(x, dy, scale, dx, D, mean, rstd, 1);
}

/* Saved per row: mean and 1/std, so backward needs no second pass over x. */
static void layernorm_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *y = n->out;
    float *dx = in_grad(g, x);
    const float *stats = n->saved;
    int D = x->shape[x->ndim - 1];
    long rows = x->n / D;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++)
        layernorm_backward_row(x->data + r * D, y->grad + r * D, dx + r * D, D, stats[2 * r], stats[2 * r + 1]);
}

/* Mean and 1/std of one row: two passes (mean, then centred squares), each
 * in eight double lanes (lane j takes elements j, j+8, ... in order; lanes
 * are added pairwise at the end). Vector types, since GCC leaves the
 * float->double mix scalar. */
RQ_TARGET_CLONES static void layernorm_stats_k(const float *x, int D, float eps, float *mean_out, float *rstd_out) {
    ln_d8 p = {0}, q = {0};
    int i = 0;
    for (; i + 8 <= D; i += 8) {
        ln_f8 v;
        memcpy(&v, x + i, sizeof v);
        p += __builtin_convertvector(v, ln_d8);
    }
    for (; i < D; i++) p[0] += x[i];
    const double mean = (LANES_SUM(p)) / D;
    for (i = 0; i + 8 <= D; i += 8) {
        ln_f8 v;
        memcpy(&v, x + i, sizeof v);
        const ln_d8 d = __builtin_convertvector(v, ln_d8) - mean;
        q += d * d;
    }
    for (; i < D; i++) q[0] += (x[i] - mean) * (x[i] - mean);
    *mean_out = (float)mean;
    *rstd_out = (float)(1.0 / sqrt((LANES_SUM(q)) / D + eps));
}
/* Exported through a plain function: clang mislinks extern target_clones. */
void rq_layernorm_stats(const float *x, int D, float eps, float *mean_out, float *rstd_out) { layernorm_stats_k(x, D, eps, mean_out, rstd_out); }

RQ_TARGET_CLONES static void layernorm_row_k(const float *x, float *y, int D, float mean, float rstd) {
    for (int i = 0; i < D; i++) y[i] = (x[i] - mean) * rstd;
}
void rq_layernorm_row(const float *x, float *y, int D, float mean, float rstd) { layernorm_row_k(x, y, D, mean, rstd); }

rq_tensor *rq_layernorm(rq_graph *g, rq_tensor *x, float eps) {
    OP_BEGIN(g, "layernorm", x);
    if (!(eps > 0.0f)) return rq_graph_fail(g, RQ_EINVAL, "layernorm: eps must be > 0, got %g", (double)eps);
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
    int D = x->shape[x->ndim - 1];
    long rows = x->n / D;
    float *stats = rq_arena_alloc(&g->arena, (size_t)rows * 2 * sizeof(float));
    if (!stats) return rq_graph_fail(g, RQ_ENOMEM, "layernorm: arena out of memory");
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        rq_layernorm_stats(x->data + r * D, D, eps, &stats[2 * r], &stats[2 * r + 1]);
        rq_layernorm_row(x->data + r * D, y->data + r * D, D, stats[2 * r], stats[2 * r + 1]);
    }
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "layernorm", layernorm_backward, y);
        if (!n) return NULL;
        n->in[0] = x, n->saved = stats;
    }
    return y;
}

/* --------------------------------------------------- modulate / gated add */

static int check_ntd_nd(rq_graph *g, const char *op, rq_tensor *x, rq_tensor *a, rq_tensor *b) {
    int ok = x->ndim == 3 && a->ndim == 2 && a->shape[0] == x->shape[0] && a->shape[1] == x->shape[2];
    if (ok && b) ok = rq_same_shape(a, b) || (b->ndim == 3 && rq_same_shape(x, b));
    if (!ok) rq_graph_fail(g, RQ_ESHAPE, "%s: x %s with %s and %s do not agree (want [N,T,D], [N,D])",
                           op, SHAPE(x), SHAPE(a), b ? SHAPE(b) : "none");
    return ok;
}

RQ_TARGET_CLONES static void modulate_row_k(const float *x, const float *shift, const float *scale, float *y, int D) {
    for (int d = 0; d < D; d++) y[d] = x[d] * (1.0f + scale[d]) + shift[d];
}
void rq_modulate_row(const float *x, const float *shift, const float *scale, float *y, int D) { modulate_row_k(x, shift, scale, y, D); }

RQ_TARGET_CLONES static void gated_add_row_k(const float *x, const float *gate, const float *y, float *out, int D) {
    for (int d = 0; d < D; d++) out[d] = x[d] + gate[d] * y[d];
}
void rq_gated_add_row(const float *x, const float *gate, const float *y, float *out, int D) { gated_add_row_k(x, gate, y, out, D); }

/* Row kernels of the two backwards below: restrict-qualified and one
 * output each, so they vectorize (the fused loop with three optional
 * outputs did not). Same float operations per element as written out. */
RQ_TARGET_CLONES static void row_add(float *restrict dst, const float *restrict a, int D) {
    for (int d = 0; d < D; d++) dst[d] += a[d];
}
RQ_TARGET_CLONES static void row_add_mul(float *restrict dst, const float *restrict a, const float *restrict b, int D) {
    for (int d = 0; d < D; d++) dst[d] += a[d] * b[d];
}

/* ------------------------------------------------ layernorm + modulate
 * y = LN(x) * (1 + scale) + shift in one op: the normalised rows are never
 * stored (backward recomputes xh = (x - mean) * rstd from the saved row
 * statistics), which saves an activation and its gradient per adaLN
 * layernorm. The forward uses the row kernels above in the order the
 * integer block (dit_infer.c) uses them, so both give the same floats. */

/* dscale += dy * xh for one row, xh recomputed as the forward made it. */
RQ_TARGET_CLONES static void row_add_mul_xh(float *restrict dsc, const float *restrict dy, const float *restrict x,
                                           int D, float mean, float rstd) {
    for (int d = 0; d < D; d++) dsc[d] += dy[d] * ((x[d] - mean) * rstd);
}

static void layernorm_modulate_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *shift = n->in[1], *scale = n->in[2], *y = n->out;
    float *dx = in_grad(g, x), *dsh = in_grad(g, shift), *dsc = in_grad(g, scale);
    const float *stats = n->saved;
    int N = x->shape[0], T = x->shape[1], D = x->shape[2];
    /* Over samples: dshift and dscale of sample b sum over its T rows. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < N; b++) {
        const float *sc = scale->data + (long)b * D;
        for (int t = 0; t < T; t++) {
            const long r = (long)b * T + t, o = r * D;
            const float *dy = y->grad + o, mean = stats[2 * r], rstd = stats[2 * r + 1];
            if (dx) layernorm_backward_row_mod(x->data + o, dy, sc, dx + o, D, mean, rstd);
            if (dsh) row_add(dsh + (long)b * D, dy, D);
            if (dsc) row_add_mul_xh(dsc + (long)b * D, dy, x->data + o, D, mean, rstd);
        }
    }
}

rq_tensor *rq_layernorm_modulate(rq_graph *g, rq_tensor *x, rq_tensor *shift, rq_tensor *scale, float eps) {
    OP_BEGIN(g, "layernorm_modulate", x, shift, scale);
    if (!(eps > 0.0f)) return rq_graph_fail(g, RQ_EINVAL, "layernorm_modulate: eps must be > 0, got %g", (double)eps);
    if (!check_ntd_nd(g, "layernorm_modulate", x, shift, scale) || !rq_same_shape(shift, scale)) {
        return rq_graph_fail(g, RQ_ESHAPE, "layernorm_modulate: shift %s and scale %s differ", SHAPE(shift),
                             SHAPE(scale));
    }
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
    int N = x->shape[0], T = x->shape[1], D = x->shape[2];
    float *stats = rq_arena_alloc(&g->arena, (size_t)N * T * 2 * sizeof(float));
    if (!stats) return rq_graph_fail(g, RQ_ENOMEM, "layernorm_modulate: arena out of memory");
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)N * T; r++) {
        const float *xr = x->data + r * D, *sh = shift->data + r / T * D, *sc = scale->data + r / T * D;
        float *yr = y->data + r * D;
        rq_layernorm_stats(xr, D, eps, &stats[2 * r], &stats[2 * r + 1]);
        rq_layernorm_row(xr, yr, D, stats[2 * r], stats[2 * r + 1]);
        rq_modulate_row(yr, sh, sc, yr, D);
    }
    rq_tensor *ins[] = {x, shift, scale};
    if (rq_needs_grad(g, 3, ins)) {
        rq_node *n = rq_graph_push(g, "layernorm_modulate", layernorm_modulate_backward, y);
        if (!n) return NULL;
        n->in[0] = x, n->in[1] = shift, n->in[2] = scale, n->saved = stats;
    }
    return y;
}

static void gated_add_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *gate = n->in[1], *yin = n->in[2], *out = n->out;
    float *dx = in_grad(g, x), *dg = in_grad(g, gate), *dy = in_grad(g, yin);
    int N = x->shape[0], T = x->shape[1], D = x->shape[2];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < N; b++) {
        const float *gt = gate->data + (long)b * D;
        for (int t = 0; t < T; t++) {
            const long o = ((long)b * T + t) * D;
            const float *dout = out->grad + o;
            if (dx) row_add(dx + o, dout, D);
            if (dy) row_add_mul(dy + o, dout, gt, D);
            if (dg) row_add_mul(dg + (long)b * D, dout, yin->data + o, D);
        }
    }
}

rq_tensor *rq_gated_add(rq_graph *g, rq_tensor *x, rq_tensor *gate, rq_tensor *y) {
    OP_BEGIN(g, "gated_add", x, gate, y);
    if (!check_ntd_nd(g, "gated_add", x, gate, y) || !rq_same_shape(x, y)) {
        return rq_graph_fail(g, RQ_ESHAPE, "gated_add: x %s and y %s differ", SHAPE(x), SHAPE(y));
    }
    rq_tensor *out = out_like(g, x);
    if (!out) return NULL;
    int N = x->shape[0], T = x->shape[1], D = x->shape[2];
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < N; b++)
        for (int t = 0; t < T; t++) {
            long o = ((long)b * T + t) * D;
            rq_gated_add_row(x->data + o, gate->data + (long)b * D, y->data + o, out->data + o, D);
        }
    rq_tensor *ins[] = {x, gate, y};
    if (rq_needs_grad(g, 3, ins)) {
        rq_node *n = rq_graph_push(g, "gated_add", gated_add_backward, out);
        if (!n) return NULL;
        n->in[0] = x, n->in[1] = gate, n->in[2] = y;
    }
    return out;
}

/* ------------------------------------------------------------ activations */


/* Elementwise activation kernels, cloned per ISA (RQ_TARGET_CLONES) and run
 * over blocks of ACT_BLOCK elements by the OpenMP loops; each element's value
 * does not depend on the blocking or the ISA. */
#define ACT_BLOCK 4096L
static inline int act_len(long n, long i0) { return (int)(n - i0 < ACT_BLOCK ? n - i0 : ACT_BLOCK); }

RQ_TARGET_CLONES static void silu_fwd_block(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = x[i] * rq_sigmoidf(x[i]);
}

RQ_TARGET_CLONES static void silu_bwd_block(const float *x, const float *dy, float *dx, int n) {
    for (int i = 0; i < n; i++) {
        float v = x[i], s = rq_sigmoidf(v);
        dx[i] += dy[i] * s * (1.0f + v * (1.0f - s));
    }
}

static void silu_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0];
    float *dx = in_grad(g, x);
#pragma omp parallel for schedule(static)
    for (long i0 = 0; i0 < x->n; i0 += ACT_BLOCK)
        silu_bwd_block(x->data + i0, n->out->grad + i0, dx + i0, act_len(x->n, i0));
}

rq_tensor *rq_silu(rq_graph *g, rq_tensor *x) {
    OP_BEGIN(g, "silu", x);
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
#pragma omp parallel for schedule(static)
    for (long i0 = 0; i0 < x->n; i0 += ACT_BLOCK)
        silu_fwd_block(x->data + i0, y->data + i0, act_len(x->n, i0));
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "silu", silu_backward, y);
        if (!n) return NULL;
        n->in[0] = x;
    }
    return y;
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

RQ_TARGET_CLONES static void gelu_tanh_row_k(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + rq_tanhf(GELU_K * (v + GELU_C * v * v * v)));
    }
}
RQ_TARGET_CLONES static void gelu_bwd_block_k(const float *x, const float *dy, float *dx, int n) {
    for (int i = 0; i < n; i++) {
        float v = x[i], th = rq_tanhf(GELU_K * (v + GELU_C * v * v * v));
        float d = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        dx[i] += dy[i] * d;
    }
}

/* The two loops above with AVX-512, the same operations per lane (bit for
 * bit, tests/test_ops.c), four vectors per step: each element is one long
 * dependency chain (exp, divide), and with one vector per step the
 * vectorized loop ran at about half the machine's throughput. */
static inline RQ_ROWK_AVX512_TARGET __m512 tanh_arg16(__m512 v) { /* GELU_K * (v + GELU_C * v^3) */
    const __m512 c3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_C), v), v), v);
    return _mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_add_ps(v, c3));
}
static inline RQ_ROWK_AVX512_TARGET __m512 tanh16(__m512 z) { /* rq_tanhf */
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 e = exp16_avx512(_mm512_mul_ps(_mm512_set1_ps(2.0f), z));
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}
static inline RQ_ROWK_AVX512_TARGET __m512 gelu16(__m512 v) {
    const __m512 th = tanh16(tanh_arg16(v));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.0f), th));
}
static inline RQ_ROWK_AVX512_TARGET __m512 gelu_grad16(__m512 v) { /* d gelu / dv */
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    const __m512 th = tanh16(tanh_arg16(v));
    const __m512 a = _mm512_mul_ps(half, _mm512_add_ps(one, th));
    const __m512 poly = _mm512_add_ps(one, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(3.0f * GELU_C), v), v));
    __m512 b = _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_sub_ps(one, _mm512_mul_ps(th, th)));
    b = _mm512_mul_ps(_mm512_mul_ps(b, _mm512_set1_ps(GELU_K)), poly);
    return _mm512_add_ps(a, b);
}
RQ_ROWK_AVX512_TARGET static void gelu_tanh_row_avx512(const float *x, float *y, int n) {
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 a = gelu16(_mm512_loadu_ps(x + i)), b = gelu16(_mm512_loadu_ps(x + i + 16));
        const __m512 c = gelu16(_mm512_loadu_ps(x + i + 32)), d = gelu16(_mm512_loadu_ps(x + i + 48));
        _mm512_storeu_ps(y + i, a), _mm512_storeu_ps(y + i + 16, b);
        _mm512_storeu_ps(y + i + 32, c), _mm512_storeu_ps(y + i + 48, d);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, gelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}
RQ_ROWK_AVX512_TARGET static void gelu_bwd_block_avx512(const float *x, const float *dy, float *dx, int n) {
    int i = 0;
    for (; i + 32 <= n; i += 32) { /* plain loads and stores: masked ones are slow on some CPUs */
        const __m512 g0 = gelu_grad16(_mm512_loadu_ps(x + i)), g1 = gelu_grad16(_mm512_loadu_ps(x + i + 16));
        _mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_loadu_ps(dx + i), _mm512_mul_ps(_mm512_loadu_ps(dy + i), g0)));
        _mm512_storeu_ps(dx + i + 16,
                         _mm512_add_ps(_mm512_loadu_ps(dx + i + 16), _mm512_mul_ps(_mm512_loadu_ps(dy + i + 16), g1)));
    }
    for (; i < n; i += 32) {
        const __mmask16 k0 = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __mmask16 k1 = n - i >= 32 ? (__mmask16)0xFFFF : n - i > 16 ? (__mmask16)((1u << (n - i - 16)) - 1) : 0;
        const __m512 g0 = gelu_grad16(_mm512_maskz_loadu_ps(k0, x + i));
        const __m512 g1 = gelu_grad16(_mm512_maskz_loadu_ps(k1, x + i + 16));
        _mm512_mask_storeu_ps(dx + i, k0, _mm512_add_ps(_mm512_maskz_loadu_ps(k0, dx + i),
                                                       _mm512_mul_ps(_mm512_maskz_loadu_ps(k0, dy + i), g0)));
        _mm512_mask_storeu_ps(dx + i + 16, k1, _mm512_add_ps(_mm512_maskz_loadu_ps(k1, dx + i + 16),
                                                            _mm512_mul_ps(_mm512_maskz_loadu_ps(k1, dy + i + 16), g1)));
    }
}

void rq_gelu_tanh_row(const float *x, float *y, int n) {
    if (rq_rowk_get_isa() == RQ_ROWK_AVX512) gelu_tanh_row_avx512(x, y, n);
    else gelu_tanh_row_k(x, y, n);
}

static void gelu_bwd_block(const float *x, const float *dy, float *dx, int n) {
    if (rq_rowk_get_isa() == RQ_ROWK_AVX512) gelu_bwd_block_avx512(x, dy, dx, n);
    else gelu_bwd_block_k(x, dy, dx, n);
}

static void gelu_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0];
    float *dx = in_grad(g, x);
#pragma omp parallel for schedule(static)
    for (long i0 = 0; i0 < x->n; i0 += ACT_BLOCK)
        gelu_bwd_block(x->data + i0, n->out->grad + i0, dx + i0, act_len(x->n, i0));
}

rq_tensor *rq_gelu_tanh(rq_graph *g, rq_tensor *x) {
    OP_BEGIN(g, "gelu_tanh", x);
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
#pragma omp parallel for schedule(static)
    for (long i0 = 0; i0 < x->n; i0 += ACT_BLOCK)
        rq_gelu_tanh_row(x->data + i0, y->data + i0, act_len(x->n, i0));
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "gelu_tanh", gelu_backward, y);
        if (!n) return NULL;
        n->in[0] = x;
    }
    return y;
}

/* ---------------------------------------------------------------- softmax */

static void softmax_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *y = n->out;
    float *dx = in_grad(g, x);
    int D = x->shape[x->ndim - 1];
    long rows = x->n / D;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *yr = y->data + r * D, *dy = y->grad + r * D;
        float s = 0.0f;
        for (int i = 0; i < D; i++) s += dy[i] * yr[i];
        for (int i = 0; i < D; i++) dx[r * D + i] += yr[i] * (dy[i] - s);
    }
}

/* One row. The exp loop vectorizes; the float sum stays a sequential loop
 * of its own (same order, same value as before). */
RQ_TARGET_CLONES static void softmax_row(const float *xr, float *yr, int D) {
    const float m = rq_row_maxf(xr, D);
    float s = 0.0f;
    for (int i = 0; i < D; i++) yr[i] = rq_expf(xr[i] - m);
    for (int i = 0; i < D; i++) s += yr[i];
    for (int i = 0; i < D; i++) yr[i] /= s;
}

void rq_softmax_rows(const float *x, float *y, long rows, int D) {
#pragma omp parallel for schedule(static) if (rows > 64)
    for (long r = 0; r < rows; r++) softmax_row(x + r * D, y + r * D, D);
}

rq_tensor *rq_softmax(rq_graph *g, rq_tensor *x) {
    OP_BEGIN(g, "softmax", x);
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
    int D = x->shape[x->ndim - 1];
    rq_softmax_rows(x->data, y->data, x->n / D, D);
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "softmax", softmax_backward, y);
        if (!n) return NULL;
        n->in[0] = x;
    }
    return y;
}
