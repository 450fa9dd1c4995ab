/* ops.h: differentiable ops on the tape. Each returns a new arena tensor, or
 * NULL with g->err set (message names the op and the shapes). Inputs whose
 * requires_grad is set receive gradients in rq_backward. */
#ifndef ROBUQ_OPS_H
#define ROBUQ_OPS_H

#include "robuq/tensor.h"

/* y[..., out] = x[..., in] W[out, in]^T + b[out] (b may be NULL). */
rq_tensor *rq_linear(rq_graph *g, rq_tensor *x, rq_tensor *w, rq_tensor *b);
/* The same product when xq and wq are quantized and their integer codes
 * are at hand (QAT's forward): y = ((x_codes w^T)[m,n] * x_unit[m]) *
 * w_gamma[n] + b[n] by the exact int8 x ternary kernel (tgemm.h; w_t2 is the
 * 2bit packing of wq's codes, in % 4 == 0), which is the exported model's
 * arithmetic; the backward is rq_linear's on the float xq and wq. */
rq_tensor *rq_linear_codes(rq_graph *g, rq_tensor *xq, rq_tensor *wq, rq_tensor *b, const int8_t *x_codes,
                           const float *x_unit, const uint8_t *w_t2, const float *w_gamma);
/* Batched matmul: a[B?,M,K] @ b[B?,K,N] -> [B?,M,N] (2-D or equal 3-D batch). */
rq_tensor *rq_matmul(rq_graph *g, rq_tensor *a, rq_tensor *b);
/* Elementwise with numpy broadcasting (shapes right-aligned). */
rq_tensor *rq_add(rq_graph *g, rq_tensor *a, rq_tensor *b);
rq_tensor *rq_mul(rq_graph *g, rq_tensor *a, rq_tensor *b);
rq_tensor *rq_scale(rq_graph *g, rq_tensor *x, float s);
/* LayerNorm over the last dim, no affine. */
rq_tensor *rq_layernorm(rq_graph *g, rq_tensor *x, float eps);
/* adaLN: LayerNorm(x[N,T,D]) * (1 + scale[N,D]) + shift[N,D] in one op
 * (the normalised x is recomputed in backward, not stored). */
rq_tensor *rq_layernorm_modulate(rq_graph *g, rq_tensor *x, rq_tensor *shift, rq_tensor *scale, float eps);
/* x[N,T,D] + gate[N,D] * y[N,T,D]  (adaLN-Zero gated residual). */
rq_tensor *rq_gated_add(rq_graph *g, rq_tensor *x, rq_tensor *gate, rq_tensor *y);
rq_tensor *rq_silu(rq_graph *g, rq_tensor *x);
rq_tensor *rq_gelu_tanh(rq_graph *g, rq_tensor *x);

/* Row kernels of the ops above (the ops call them; fused forward-only code,
 * e.g. the integer DiT block, calls them too and so gets the same floats):
 * layernorm statistics and normalisation of one row of D, modulate
 * y = x*(1+scale)+shift, gated residual out = x + gate*y, and GELU(tanh)
 * of n values. y may alias x in each. */
void rq_layernorm_stats(const float *x, int D, float eps, float *mean, float *rstd);
void rq_layernorm_row(const float *x, float *y, int D, float mean, float rstd);
void rq_modulate_row(const float *x, const float *shift, const float *scale, float *y, int D);
void rq_gated_add_row(const float *x, const float *gate, const float *y, float *out, int D);
void rq_gelu_tanh_row(const float *x, float *y, int n);
/* Softmax over the last dim. */
rq_tensor *rq_softmax(rq_graph *g, rq_tensor *x);
/* Plain (no tape) numerically stable softmax of rows of length D. */
void rq_softmax_rows(const float *x, float *y, long rows, int D);
/* Fused multi-head self-attention on a packed qkv[N,T,3D] (reference layout
 * (3, heads, dh) in the last dim) -> [N,T,D]. Keeps only the per-row
 * log-sum-exp for backward; probabilities are recomputed there. */
rq_tensor *rq_attention(rq_graph *g, rq_tensor *qkv, int heads);
/* Attention with fake-quantized matmul operands (QAT), bits 1..8; bits = 0
 * is rq_attention (same code, bit for bit). method: rq_actq_method (quant.h).
 *   q, k, v: every row of dh values (one token, one head) is quantized by
 *     the per-row activation quantizer at `bits` (8 bits: asymmetric
 *     mid-tread int8 codes [-128, 127]); STE with the quantizer's clip mask.
 *     The DiT uses min-max here (rq_dit_quantize): these rows are short
 *     (dh = 64: max|x| of 64 Gaussians is ~2.4 sigma, well inside the
 *     robust clip alpha_8 = 3.9 sigma, so min-max has the finer step) and
 *     not Hadamard-rotated, and min-max never clips (mask = 1).
 *   P = softmax(q_hat k_hat^T / sqrt(dh)) in [0, 1]: static unsigned grid
 *     P_hat = rint(P * L) / L, L = 2^bits - 1 (u8 codes at 8 bits), never
 *     clipped, STE identity. O = P_hat v_hat.
 *   Backward: dP = dO v_hat^T passes straight to the softmax backward with
 *     the unquantized P; dv = P_hat^T dO, dq / dk from dS with k_hat / q_hat,
 *     each times its STE mask.
 * Kept for backward (instead of the log-sum-exp): the int8 codes of qkv,
 * one float unit per dh-row and each softmax row's max and 1/sum. The
 * integer-inference form is rq_attention_int (iattn.h). */
rq_tensor *rq_attention_q(rq_graph *g, rq_tensor *qkv, int heads, int bits, int method);
/* out[i,:] = table[idx[i],:], out shape [n, D]. idx copied. */
rq_tensor *rq_embedding(rq_graph *g, rq_tensor *table, const int *idx, int n);
/* DiT timestep embedding [n, dim]: [cos(t f_i), sin(t f_i)], f_i =
 * exp(-ln(max_period) i / (dim/2)); differentiable in t (t: [n]). */
rq_tensor *rq_timestep_embedding(rq_graph *g, rq_tensor *t, int dim, float max_period);
/* View with a new shape (same numel). */
rq_tensor *rq_reshape(rq_graph *g, rq_tensor *x, int ndim, const int *shape);
/* Slice [start, start+len) of dimension dim. */
rq_tensor *rq_slice(rq_graph *g, rq_tensor *x, int dim, int start, int len);
/* img[N,C,H,W] -> tokens[N, (H/p)(W/p), C*p*p] (vector order c, pi, pj; token = row*(W/p)+col). */
rq_tensor *rq_patchify(rq_graph *g, rq_tensor *img, int p);
/* tokens[N,T,p*p*C] (vector order pi, pj, c) -> img[N,C,H,W]. */
rq_tensor *rq_unpatchify(rq_graph *g, rq_tensor *tok, int p, int C, int H, int W);
/* mean((a-b)^2) over all elements -> [1]. b is a constant target. */
rq_tensor *rq_mse(rq_graph *g, rq_tensor *a, rq_tensor *b);
/* mean of all elements -> [1]. */
rq_tensor *rq_mean(rq_graph *g, rq_tensor *x);
/* sum of all elements -> [1]. */
rq_tensor *rq_sum(rq_graph *g, rq_tensor *x);

/* Straight-through estimator: forward y = fn(x) row by row, backward dx = dy
 * (times the 0/1 mask fn writes, if masked). fn gets rows of length row_len. */
typedef void (*rq_rowwise_fn)(const float *x, float *y, uint8_t *mask, long rows, int row_len,
                              const void *arg);
rq_tensor *rq_ste(rq_graph *g, rq_tensor *x, rq_rowwise_fn fn, const void *arg, int masked,
                  const char *opname);

/* Stop gradient: a copy that does not require grad. */
rq_tensor *rq_detach(rq_graph *g, rq_tensor *x);

/* Softmax cross-entropy: mean over rows of -log softmax(logits[r])[labels[r]];
 * logits [..., K] with n rows (labels copied, each in [0, K)) -> [1]. */
rq_tensor *rq_cross_entropy(rq_graph *g, rq_tensor *logits, const int *labels, long n);

#endif
