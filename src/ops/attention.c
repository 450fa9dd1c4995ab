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
 * The T x T scratch is per thread and lives only for the call. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops_internal.h"
#include "robuq/fastmath.h"
#include "robuq/gemm.h"

/* In place: rows of S (T x T) become softmax probabilities; the per-row
 * log-sum-exp is stored in lse if given (forward keeps it for backward). */
static void softmax_scores(float *S, int T, float *lse) {
    for (int i = 0; i < T; i++) {
        float *row = S + (long)i * T, m = -INFINITY, s = 0.0f;
        for (int j = 0; j < T; j++) m = row[j] > m ? row[j] : m;
        for (int j = 0; j < T; j++) s += (row[j] = rq_expf(row[j] - m));
        float inv = 1.0f / s;
        for (int j = 0; j < T; j++) row[j] *= inv;
        if (lse) lse[i] = m + logf(s);
    }
}

/* Backward's recomputation: P = exp(S - lse) row by row. */
static void probs_from_lse(float *S, int T, const float *lse) {
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
                float di = 0.0f;
                for (int d = 0; d < dh; d++) di += dO[(long)i * D + d] * o[(long)i * D + d];
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
            softmax_scores(S, T, lse ? lse + ((long)b * heads + h) * T : NULL);
            rq_sgemm_st(0, 0, T, dh, T, 1.0f, S, T, v, D3, 0.0f, o, D);
        }
    if (need) {
        rq_node *n = rq_graph_push(g, "attention", attention_backward, out);
        if (!n) return NULL;
        n->in[0] = qkv, n->iarg[0] = heads, n->saved = lse;
    }
    return out;
}
