/* attention.c: fused multi-head self-attention, forward and backward.
 *
 * qkv[N,T,3D] holds, per token, q|k|v each split into heads of dh = D/heads
 * (the reference reshape (N,T,3,heads,dh)). Per (sample, head) we compute
 *   S = q k^T / sqrt(dh),  P = softmax(S),  O = P v
 * reading q, k, v in place through the GEMM's leading dimension (3D) and
 * writing O into out[N,T,D] at the head's column offset. Only the per-row
 * log-sum-exp (N*heads*T floats) is kept for backward, which recomputes P:
 *   dP = dO v^T,  dS = P * (dP - rowsum(dO * O)),
 *   dq = dS k / sqrt(dh),  dk = dS^T q / sqrt(dh),  dv = P^T dO.
 * The T x T scratch is per thread and lives only for the call.
 *
 * Quantized attention (rq_attention_q, bits b >= 1; semantics in ops.h):
 * every dh-row of q, k, v (one token, one head; contiguous in qkv) is
 * encoded once for the whole tensor (int8 codes + one unit per row), then
 * per (sample, head)
 *   S  = ((C * (uq_i / sqrt(dh))) * uk_j),  C = codes_q codes_k^T
 *   P  = softmax(S),  Pc = rint(P * L) (L = 2^b - 1),  O = (Pc v_hat) / L
 * (softmax and Pc: rq_iattn_softmax, vectorized, same bits on every ISA)
 * C is an exact integer (|C| <= 2^24 for dh <= 1024) whether a float GEMM
 * on the codes (training) or the int8 kernels of iattn.h (exports) compute
 * it, and S, P, Pc and O are then computed by the same code in both, so
 * the two forwards agree bit for bit. Backward keeps the codes and each
 * softmax row's max and 1/sum (not lse): it recomputes S, P and Pc exactly
 * as the forward did (rq_iattn_probs), re-runs the row
 * quantizer for v_hat / k_hat / q_hat and the STE masks, and uses
 *   dv = mask_v * (Pc^T dO / L),  dP = dO v_hat^T,
 *   dS = P * (dP - rowsum(P * dP))     (unquantized P: STE through Pc;
 *                                       rowsum(P dP) != rowsum(dO O) here)
 *   dq = mask_q * (dS k_hat / sqrt(dh)),  dk = mask_k * (dS^T q_hat / sqrt(dh)). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops_internal.h"
#include "robuq/fastmath.h"
#include "robuq/gemm.h"
#include "robuq/iattn.h"
#include "robuq/quant.h"

/* In place: rows of S (T x T) become softmax probabilities; the per-row
 * log-sum-exp is stored in lse if given (forward keeps it for backward). */
RQ_TARGET_CLONES static void softmax_scores(float *S, int T, float *lse) {
    for (int i = 0; i < T; i++) {
        float *row = S + (long)i * T;
        const float m = rq_row_maxf(row, T);
        for (int j = 0; j < T; j++) row[j] = rq_expf(row[j] - m); /* vectorizes */
        const float s = rq_row_sumf(row, T);                       /* so does this (16 partials) */
        float inv = 1.0f / s;
        for (int j = 0; j < T; j++) row[j] *= inv;
        if (lse) lse[i] = m + logf(s);
    }
}

/* The same softmax with AVX-512, R rows at once (R = 4, or 1 for the last
 * T % 4): rq_expf's operations on 16 lanes (exp16_avx512, ops_internal.h),
 * and the exp pass also adds up the 16 partial sums of rq_row_sumf in its
 * lane order (the n % 16 tail goes to partial 0 afterwards, as there), so
 * every float is the generic loop's. The generic form spent about as long
 * on each row's scalar tails and serial reductions (max, sum, 1/sum) as on
 * its vector part (T = 196); four rows overlap those reductions. */
static inline RQ_ROWK_AVX512_TARGET __attribute__((always_inline)) void softmax_rows_avx512(const int R, float *S,
                                                                                          int T, float *lse) {
    const int full = T / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (T - full)) - 1);
    __m512 v[4], acc[4];
    float m[4], sum[4] = {0}, part[4][16];
    for (int r = 0; r < R; r++) v[r] = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < full; j += 16)
        for (int r = 0; r < R; r++) v[r] = _mm512_max_ps(_mm512_loadu_ps(S + (long)r * T + j), v[r]); /* NaN: keeps v */
    for (int r = 0; r < R; r++) {
        if (tail) v[r] = _mm512_mask_max_ps(v[r], tail, _mm512_maskz_loadu_ps(tail, S + (long)r * T + full), v[r]);
        m[r] = _mm512_reduce_max_ps(v[r]);
        v[r] = _mm512_set1_ps(m[r]);
        acc[r] = _mm512_setzero_ps();
    }
    for (int j = 0; j < full; j += 16)
        for (int r = 0; r < R; r++) {
            float *p = S + (long)r * T + j;
            const __m512 e = exp16_avx512(_mm512_sub_ps(_mm512_loadu_ps(p), v[r]));
            _mm512_storeu_ps(p, e);
            acc[r] = _mm512_add_ps(acc[r], e);
        }
    for (int r = 0; r < R; r++) {
        float *row = S + (long)r * T;
        if (tail) _mm512_mask_storeu_ps(row + full, tail, exp16_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + full), v[r])));
        _mm512_storeu_ps(part[r], acc[r]);
        for (int j = full; j < T; j++) part[r][0] += row[j];
    }
    for (int j = 0; j < 16; j++)
        for (int r = 0; r < R; r++) sum[r] += part[r][j];
    for (int r = 0; r < R; r++) v[r] = _mm512_set1_ps(1.0f / sum[r]);
    for (int j = 0; j < full; j += 16)
        for (int r = 0; r < R; r++) {
            float *p = S + (long)r * T + j;
            _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), v[r]));
        }
    for (int r = 0; r < R; r++) {
        float *p = S + (long)r * T + full;
        if (tail) _mm512_mask_storeu_ps(p, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p), v[r]));
        if (lse) lse[r] = m[r] + logf(sum[r]);
    }
}

RQ_ROWK_AVX512_TARGET static void softmax_scores_avx512(float *S, int T, float *lse) {
    int i = 0;
    for (; i + 4 <= T; i += 4) softmax_rows_avx512(4, S + (long)i * T, T, lse ? lse + i : NULL);
    for (; i < T; i++) softmax_rows_avx512(1, S + (long)i * T, T, lse ? lse + i : NULL);
}

static void softmax_rows(float *S, int T, float *lse) {
    if (rq_rowk_get_isa() == RQ_ROWK_AVX512) softmax_scores_avx512(S, T, lse);
    else softmax_scores(S, T, lse);
}

/* sum_d a[d] * b[d] in 16 partial sums (fixed order, vectorizes). */
static inline float dot16(const float *a, const float *b, int n) {
    float part[16] = {0};
    int d = 0;
    for (; d + 16 <= n; d += 16)
        for (int j = 0; j < 16; j++) part[j] += a[d + j] * b[d + j];
    for (; d < n; d++) part[0] += a[d] * b[d];
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += part[j];
    return s;
}

/* Backward's recomputation: P = exp(S - lse) row by row. */
RQ_TARGET_CLONES static void probs_from_lse(float *S, int T, const float *lse) {
    for (int i = 0; i < T; i++) {
        float *row = S + (long)i * T;
        for (int j = 0; j < T; j++) row[j] = rq_expf(row[j] - lse[i]);
    }
}

static void attention_backward(rq_graph *g, rq_node *n) {
    rq_tensor *qkv = n->in[0], *out = n->out;
    int heads = n->iarg[0];
    int N = qkv->shape[0], T = qkv->shape[1], D3 = qkv->shape[2], D = D3 / 3, dh = D / heads;
    float scale = 1.0f / sqrtf((float)dh);
    const float *lse = n->saved;
    float *dqkv = in_grad(g, qkv);
    int nth = omp_get_max_threads();
    float *scratch = rq_arena_alloc(&g->arena, (size_t)nth * 2 * T * T * sizeof(float));
    if (!scratch) {
        rq_graph_fail(g, RQ_ENOMEM, "attention backward: arena out of memory");
        return;
    }
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < N; b++)
        for (int h = 0; h < heads; h++) {
            float *P = scratch + (size_t)omp_get_thread_num() * 2 * T * T, *dP = P + (size_t)T * T;
            const float *q = qkv->data + (long)b * T * D3 + h * dh, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + (long)b * T * D3 + h * dh, *dk = dq + D, *dv = dq + 2 * D;
            const float *o = out->data + (long)b * T * D + h * dh;
            const float *dO = out->grad + (long)b * T * D + h * dh;
            const float *l = lse + ((long)b * heads + h) * T;
            rq_sgemm_st(0, 1, T, T, dh, scale, q, D3, k, D3, 0.0f, P, T);
            probs_from_lse(P, T, l);
            rq_sgemm_st(0, 1, T, T, dh, 1.0f, dO, D, v, D3, 0.0f, dP, T);
            for (int i = 0; i < T; i++) {
                const float di = dot16(dO + (long)i * D, o + (long)i * D, dh);
                float *pr = P + (long)i * T, *dpr = dP + (long)i * T;
                for (int j = 0; j < T; j++) dpr[j] = pr[j] * (dpr[j] - di); /* dP -> dS */
            }
            rq_sgemm_st(1, 0, T, dh, T, 1.0f, P, T, dO, D, 1.0f, dv, D3);
            rq_sgemm_st(0, 0, T, dh, T, scale, dP, T, k, D3, 1.0f, dq, D3);
            rq_sgemm_st(1, 0, T, dh, T, scale, dP, T, q, D3, 1.0f, dk, D3);
        }
}

rq_tensor *rq_attention(rq_graph *g, rq_tensor *qkv, int heads) {
    OP_BEGIN(g, "attention", qkv);
    if (qkv->ndim != 3 || heads < 1 || qkv->shape[2] % (3 * heads))
        return rq_graph_fail(g, RQ_ESHAPE, "attention: qkv %s must be [N,T,3D] with D divisible by %d heads",
                             SHAPE(qkv), heads);
    int N = qkv->shape[0], T = qkv->shape[1], D3 = qkv->shape[2], D = D3 / 3, dh = D / heads;
    float scale = 1.0f / sqrtf((float)dh);
    rq_tensor *out = rq_tensor_arena(g, 3, (int[]){N, T, D});
    if (!out) return NULL;
    int need = rq_needs_grad(g, 1, &qkv);
    float *lse = need ? rq_arena_alloc(&g->arena, (size_t)N * heads * T * sizeof(float)) : NULL;
    int nth = omp_get_max_threads();
    float *scratch = rq_arena_alloc(&g->arena, (size_t)nth * T * T * sizeof(float));
    if (!scratch || (need && !lse)) return rq_graph_fail(g, RQ_ENOMEM, "attention: arena out of memory");
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < N; b++)
        for (int h = 0; h < heads; h++) {
            float *S = scratch + (size_t)omp_get_thread_num() * T * T;
            const float *q = qkv->data + (long)b * T * D3 + h * dh, *k = q + D, *v = q + 2 * D;
            float *o = out->data + (long)b * T * D + h * dh;
            rq_sgemm_st(0, 1, T, T, dh, scale, q, D3, k, D3, 0.0f, S, T);
            softmax_rows(S, T, lse ? lse + ((long)b * heads + h) * T : NULL);
            rq_sgemm_st(0, 0, T, dh, T, 1.0f, S, T, v, D3, 0.0f, o, D);
        }
    if (need) {
        rq_node *n = rq_graph_push(g, "attention", attention_backward, out);
        if (!n) return NULL;
        n->in[0] = qkv, n->iarg[0] = heads, n->saved = lse;
    }
    return out;
}

/* ---------------------------------------------------------------------- */
/* Quantized attention */

/* Per-row units and codes of the whole qkv (rows of dh), kept from the
 * forward for backward (arena). Row r = ((b*T + t)*3 + part)*heads + h. */
typedef struct {
    const float *unit;
    const int8_t *codes;    /* same layout as qkv->data */
    const float *mx, *inv;  /* softmax row max and 1/sum, [N, heads, T] */
} attnq_saved;

static inline long unit_row(int b, int t, int part, int h, int T, int heads) {
    return (((long)b * T + t) * 3 + part) * heads + h;
}

/* Row scales of one (sample, head): rs[i] = uq_i / sqrt(dh), cs[j] = uk_j.
 * The fake-quant and integer forwards both take them from here. */
static void head_scales(const float *unit, int b, int h, int T, int heads, float scale, float *rs,
                        float *cs) {
    for (int t = 0; t < T; t++) {
        rs[t] = unit[unit_row(b, t, 0, h, T, heads)] * scale;
        cs[t] = unit[unit_row(b, t, 1, h, T, heads)];
    }
}

/* Codes of one head's part (row stride D3) as floats [T, dh] (exact). */
static void head_codes_f(const int8_t *c, int T, int dh, int D3, float *out) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < dh; d++) out[(long)t * dh + d] = (float)c[(long)t * D3 + d];
}

/* v_hat of one head [T, dh]: code * unit, the fake-quant value bit for bit. */
static void head_vhat(const int8_t *c, const float *unit, int b, int h, int T, int dh, int D3, int heads,
                      float *out) {
    for (int t = 0; t < T; t++) {
        const float u = unit[unit_row(b, t, 2, h, T, heads)];
        for (int d = 0; d < dh; d++) out[(long)t * dh + d] = (float)c[(long)t * D3 + d] * u;
    }
}

/* S[i,j] = (C[i,j] * rs[i]) * cs[j], the order the iattn kernels use. */
static void scale_scores(float *S, int T, const float *rs, const float *cs) {
    for (int i = 0; i < T; i++) {
        float *row = S + (long)i * T;
        const float r = rs[i];
        for (int j = 0; j < T; j++) {
            const float s = row[j] * r;
            row[j] = s * cs[j];
        }
    }
}

static float probs_levels(int bits) { return (float)((1 << bits) - 1); }

/* dst[t, :] += mask[t, :] * src[t, :] for one head's [T, dh] block (dst and
 * mask with row stride ld). mask is 0/1: a multiply instead of a select
 * keeps the loop branch-free. */
static void add_masked(float *dst, const uint8_t *mask, long ld, const float *src, int T, int dh) {
    for (int t = 0; t < T; t++) {
        float *d = dst + t * ld;
        const uint8_t *m = mask + t * ld;
        const float *s = src + (long)t * dh;
        for (int i = 0; i < dh; i++) d[i] += (float)m[i] * s[i];
    }
}

/* dP -> dS in place: dS = P * (dP - rowsum(P * dP)); the row sums use 8
 * fixed partials so the loop vectorizes. */
static void softmax_grad_rows(const float *P, float *B, int T) {
    for (int i = 0; i < T; i++) {
        const float *pr = P + (long)i * T;
        float *br = B + (long)i * T, part[8] = {0}, di = 0.0f;
        int j = 0;
        for (; j + 8 <= T; j += 8)
            for (int l = 0; l < 8; l++) part[l] += pr[j + l] * br[j + l];
        for (; j < T; j++) part[0] += pr[j] * br[j];
        for (int l = 0; l < 8; l++) di += part[l];
        for (j = 0; j < T; j++) br[j] = pr[j] * (br[j] - di);
    }
}

static void attention_q_backward(rq_graph *g, rq_node *n) {
    rq_tensor *qkv = n->in[0], *out = n->out;
    const int heads = n->iarg[0], bits = n->iarg[1];
    const rq_actq_cfg cfg = {bits, n->iarg[2]};
    const int N = qkv->shape[0], T = qkv->shape[1], D3 = qkv->shape[2], D = D3 / 3, dh = D / heads;
    const float scale = 1.0f / sqrtf((float)dh), L = probs_levels(bits), invL = 1.0f / L;
    const attnq_saved *sv = n->saved;
    float *dqkv = in_grad(g, qkv);
    /* q_hat, k_hat, v_hat and the STE masks of the whole tensor */
    float *xhat = rq_arena_alloc(&g->arena, (size_t)qkv->n * sizeof(float));
    uint8_t *mask = rq_arena_alloc(&g->arena, (size_t)qkv->n);
    const int nth = omp_get_max_threads();
    const size_t per = 2 * (size_t)T * T + 3 * (size_t)T * dh + 2 * (size_t)T;
    float *scratch = rq_arena_alloc(&g->arena, (size_t)nth * per * sizeof(float));
    if (!dqkv || !xhat || !mask || !scratch) {
        rq_graph_fail(g, RQ_ENOMEM, "attention_q backward: arena out of memory");
        return;
    }
    rq_actq_rowwise(qkv->data, xhat, mask, qkv->n / dh, dh, &cfg);
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < N; b++)
        for (int h = 0; h < heads; h++) {
            float *P = scratch + (size_t)omp_get_thread_num() * per, *B = P + (size_t)T * T;
            float *qf = B + (size_t)T * T, *kf = qf + (size_t)T * dh, *tmp = kf + (size_t)T * dh;
            float *rs = tmp + (size_t)T * dh, *cs = rs + T;
            const long off = (long)b * T * D3 + h * dh;
            const float *qh = xhat + off, *kh = qh + D, *vh = qh + 2 * D;
            const uint8_t *mq = mask + off;
            float *dq = dqkv + off;
            const float *dO = out->grad + (long)b * T * D + h * dh;
            /* S, P, Pc exactly as in the forward */
            head_codes_f(sv->codes + off, T, dh, D3, qf);
            head_codes_f(sv->codes + off + D, T, dh, D3, kf);
            head_scales(sv->unit, b, h, T, heads, scale, rs, cs);
            rq_sgemm_st(0, 1, T, T, dh, 1.0f, qf, dh, kf, dh, 0.0f, P, T);
            scale_scores(P, T, rs, cs);
            rq_iattn_probs(T, T, P, T, sv->mx + ((long)b * heads + h) * T, sv->inv + ((long)b * heads + h) * T, B,
                           T, L);
            /* dv = mask_v * (Pc^T dO / L) */
            rq_sgemm_st(1, 0, T, dh, T, invL, B, T, dO, D, 0.0f, tmp, dh);
            add_masked(dq + 2 * D, mq + 2 * D, D3, tmp, T, dh);
            /* dP = dO v_hat^T, then dS = P (dP - rowsum(P dP)) in place */
            rq_sgemm_st(0, 1, T, T, dh, 1.0f, dO, D, vh, D3, 0.0f, B, T);
            softmax_grad_rows(P, B, T);
            /* dq = mask_q * (dS k_hat) / sqrt(dh), dk = mask_k * (dS^T q_hat) / sqrt(dh) */
            rq_sgemm_st(0, 0, T, dh, T, scale, B, T, kh, D3, 0.0f, tmp, dh);
            add_masked(dq, mq, D3, tmp, T, dh);
            rq_sgemm_st(1, 0, T, dh, T, scale, B, T, qh, D3, 0.0f, tmp, dh);
            add_masked(dq + D, mq + D, D3, tmp, T, dh);
        }
}

/* Forward of rq_attention_q (integer = 0: float GEMM on the codes; records
 * the backward) and of rq_attention_int (integer = 1: iattn kernels). */
static rq_tensor *attention_q_forward(rq_graph *g, rq_tensor *qkv, int heads, int bits, int method,
                                      int integer) {
    const char *op = integer ? "attention_int" : "attention_q";
    OP_BEGIN(g, op, qkv);
    if (qkv->ndim != 3 || heads < 1 || qkv->shape[2] % (3 * heads))
        return rq_graph_fail(g, RQ_ESHAPE, "%s: qkv %s must be [N,T,3D] with D divisible by %d heads", op,
                             SHAPE(qkv), heads);
    const rq_actq_cfg cfg = {bits, method};
    rq_err e = {0};
    if (rq_actq_cfg_check(&cfg, &e)) return rq_graph_fail(g, RQ_EINVAL, "%s: %s", op, e.msg);
    const int N = qkv->shape[0], T = qkv->shape[1], D3 = qkv->shape[2], D = D3 / 3, dh = D / heads;
    if (dh > RQ_IATTN_MAX_K)
        return rq_graph_fail(g, RQ_ESHAPE, "%s: head dim %d > %d (the integer scores would not be exact)", op,
                             dh, RQ_IATTN_MAX_K);
    const int need = rq_needs_grad(g, 1, &qkv);
    if (integer && need)
        return rq_graph_fail(g, RQ_EINVAL, "%s: forward only (an input of qkv %s needs a gradient)", op,
                             SHAPE(qkv));
    const float scale = 1.0f / sqrtf((float)dh), L = probs_levels(bits), invL = 1.0f / L;
    rq_tensor *out = rq_tensor_arena(g, 3, (int[]){N, T, D});
    if (!out) return NULL;
    const long rows = qkv->n / dh;
    attnq_saved *sv = rq_arena_alloc(&g->arena, sizeof *sv);
    float *unit = rq_arena_alloc(&g->arena, (size_t)rows * sizeof(float));
    int8_t *codes = rq_arena_alloc(&g->arena, (size_t)qkv->n);
    float *mx = rq_arena_alloc(&g->arena, 2 * (size_t)N * heads * T * sizeof(float)), *inv = mx + (size_t)N * heads * T;
    const int nth = omp_get_max_threads();
    const size_t work = integer ? (rq_iattn_work_bytes(T, T, dh) + sizeof(float) - 1) / sizeof(float) : 0;
    const size_t per = (size_t)T * T + 3 * (size_t)T * dh + 2 * (size_t)T + work;
    float *scratch = rq_arena_alloc(&g->arena, (size_t)nth * per * sizeof(float));
    if (!sv || !unit || !codes || !mx || !scratch) return rq_graph_fail(g, RQ_ENOMEM, "%s: arena out of memory", op);
    rq_actq_encode(&cfg, qkv->data, codes, unit, rows, dh, NULL); /* arguments checked above */
    int failed = 0;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) reduction(| : failed)
    for (int b = 0; b < N; b++)
        for (int h = 0; h < heads; h++) {
            float *S = scratch + (size_t)omp_get_thread_num() * per, *qf = S + (size_t)T * T;
            float *kf = qf + (size_t)T * dh, *vh = kf + (size_t)T * dh, *rs = vh + (size_t)T * dh, *cs = rs + T;
            const long off = (long)b * T * D3 + h * dh;
            float *o = out->data + (long)b * T * D + h * dh;
            head_scales(unit, b, h, T, heads, scale, rs, cs);
            if (integer) {
                failed |= rq_iattn_scores(T, T, dh, codes + off, D3, codes + off + D, D3, rs, cs, S, T, cs + T,
                                          NULL) != RQ_OK;
            } else {
                head_codes_f(codes + off, T, dh, D3, qf);
                head_codes_f(codes + off + D, T, dh, D3, kf);
                rq_sgemm_st(0, 1, T, T, dh, 1.0f, qf, dh, kf, dh, 0.0f, S, T);
                scale_scores(S, T, rs, cs);
            }
            rq_iattn_softmax(T, T, S, T, mx + ((long)b * heads + h) * T, inv + ((long)b * heads + h) * T, L);
            head_vhat(codes + off + 2 * D, unit, b, h, T, dh, D3, heads, vh);
            rq_sgemm_st(0, 0, T, dh, T, invL, S, T, vh, dh, 0.0f, o, D);
        }
    if (failed) return rq_graph_fail(g, RQ_EINVAL, "%s: integer score kernel failed (T=%d, dh=%d)", op, T, dh);
    if (need) {
        sv->unit = unit, sv->codes = codes, sv->mx = mx, sv->inv = inv;
        rq_node *n = rq_graph_push(g, "attention_q", attention_q_backward, out);
        if (!n) return NULL;
        n->in[0] = qkv, n->iarg[0] = heads, n->iarg[1] = bits, n->iarg[2] = method, n->saved = sv;
    }
    return out;
}

rq_tensor *rq_attention_q(rq_graph *g, rq_tensor *qkv, int heads, int bits, int method) {
    if (bits == 0) return rq_attention(g, qkv, heads);
    return attention_q_forward(g, qkv, heads, bits, method, 0);
}

rq_tensor *rq_attention_int(rq_graph *g, rq_tensor *qkv, int heads, int bits, int method) {
    if (bits == 0) return rq_attention(g, qkv, heads);
    return attention_q_forward(g, qkv, heads, bits, method, 1);
}
