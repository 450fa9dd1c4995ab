/* iattn.h: kernels of quantized attention: int8 q k^T scores (exported
 * models, forward only) and the softmax / P-code rows shared with QAT.
 *
 * The kernel is the q k^T product of quantized attention: q and k are int8
 * codes (rq_actq_encode of the rows of one head, one float unit per row),
 *
 *   C[i,j] = sum_d q[i*ldq + d] * k[j*ldk + d]                    (exact int32)
 *   S[i,j] = ((float)C[i,j] * row_scale[i]) * col_scale[j]        (float)
 *
 * evaluated exactly in this order (two float multiplies, no FMA), so every
 * ISA returns bit-identical S. With row_scale = unit_q * 1/sqrt(dh) and
 * col_scale = unit_k this is the fake-quant score q_hat k_hat^T / sqrt(dh)
 * computed as rq_attention_q computes it (it multiplies exact integer
 * products of the codes in float: |C| <= 2^14 * K <= 2^24, so a float GEMM
 * on the codes is exact as well, which is why K is capped at
 * RQ_IATTN_MAX_K; the int32 accumulators themselves never overflow).
 *
 * Variants (runtime dispatch, tests compare every one to the scalar one):
 *   scalar : plain loops on the int8 codes (the reference);
 *   AVX2   : codes widened to int16, pmaddwd (pairs of d) into int32;
 *   VNNI   : AVX-512 vpdpbusd, q codes xor 0x80 (= q + 128 as u8) times
 *            k codes (s8), minus 128 * sum_d k[j,d] per column.
 * Any int8 codes are allowed (including -128). M, N >= 0, 1 <= K <= 1024.
 *
 * The calls are single-threaded (the attention op runs one (sample, head)
 * per OpenMP thread). They pack q and k into `work` (zero-padded to the
 * micro-tile): pass a buffer of rq_iattn_work_bytes(M, N, K) bytes (any
 * alignment), or NULL to let the call malloc and free its own.
 *
 * The graph-level integer attention op (the forward of rq_attention_q with
 * these kernels for q k^T) is rq_attention_int below; its semantics are in
 * ops.h next to rq_attention_q. Its P v is not an integer product: v is
 * quantized per (token, head) row, so its unit changes along the token
 * index that P v sums over, and an exact int32 sum of u8 P codes x s8 v
 * codes would need one unit per summed index. It computes O = (Pc v_hat)/L
 * in fp32 instead, v_hat = v code * row unit (the fake-quant value bit for
 * bit), with the same GEMM call as rq_attention_q, so the two outputs are
 * identical. (A v quantizer with one unit per (sample, head, channel) over
 * the tokens would make P v an exact u8 x s8 int32 product.) */
#ifndef ROBUQ_IATTN_H
#define ROBUQ_IATTN_H

#include "robuq/tensor.h"

#define RQ_IATTN_MAX_K 1024

typedef enum { RQ_IATTN_AUTO = 0, RQ_IATTN_SCALAR, RQ_IATTN_AVX2, RQ_IATTN_VNNI } rq_iattn_isa;

/* Bytes of work buffer needed for an M x N x K call (any ISA). */
size_t rq_iattn_work_bytes(int M, int N, int K);

/* C = q k^T in int32 (row stride ldc >= N); ldq, ldk >= K. */
rq_status rq_iattn_qk(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk, int32_t *C,
                      int ldc, void *work, rq_err *err);
/* S = (C * row_scale[i]) * col_scale[j] (row stride lds >= N). */
rq_status rq_iattn_scores(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk,
                          const float *row_scale, const float *col_scale, float *S, int lds, void *work,
                          rq_err *err);

/* Softmax rows of the quantized attention (rq_attention_q and
 * rq_attention_int both use these, so their P agree bit for bit), in place
 * on rows x n scores S (row stride ld):
 *   m = max_j S[i,j],  e_j = exp(S[i,j] - m) (rq_expf),
 *   inv = 1 / s, s = sum of 16 partial sums (partial l takes j = l mod 16
 *         of the full blocks of 16, partial 0 also the tail; then added
 *         l = 0..15 in order),
 *   P = e_j * inv,  and with L > 0 the codes rint(P * L) (half to even, as
 *   floats) replace P.
 * m and inv of each row go to mx[i], inv[i] (for rq_iattn_probs). The SIMD
 * paths do the same float operations in the same order (rq_expf
 * op for op, no FMA), so every ISA returns the same bits. */
void rq_iattn_softmax(int rows, int n, float *S, int ld, float *mx, float *inv, float L);
/* Recomputes P = exp(S - mx[i]) * inv[i] in place (bit for bit the P of
 * rq_iattn_softmax) and, if Pc != NULL, Pc = rint(P * L) (row stride ldp). */
void rq_iattn_probs(int rows, int n, float *S, int ld, const float *mx, const float *inv, float *Pc, int ldp,
                    float L);

/* Force an instruction set (tests compare every path to the scalar one).
 * Returns the ISA actually in use: a request the CPU cannot run falls back
 * to the best one below it. Process-wide; not meant to be changed while
 * another thread runs a kernel. */
rq_iattn_isa rq_iattn_set_isa(rq_iattn_isa isa);
rq_iattn_isa rq_iattn_get_isa(void);
const char *rq_iattn_isa_name(rq_iattn_isa isa);
int rq_iattn_isa_supported(rq_iattn_isa isa);

/* Integer-inference form of rq_attention_q (ops.h), forward only: q k^T by
 * the kernels above on the int8 codes, then the same softmax, u8 P codes
 * and P v as rq_attention_q, so the output equals rq_attention_q's forward
 * bit for bit. bits == 0 is rq_attention. With bits >= 1 it fails (graph
 * error) if an input needs a gradient. Used for exported models
 * (rq_dit.attn_integer). */
rq_tensor *rq_attention_int(rq_graph *g, rq_tensor *qkv, int heads, int bits, int method);

#endif
