/* qlinear.h: a DiT linear under RobuQ quantization (fake-quant for QAT).
 *
 *   x' = x H            (Hadamard rotation of each token, if hadamard)
 *   xq = Q_b(x')        (per-token b-bit activation quantizer, STE with clip mask)
 *   W' = W H            (the weight in the same rotated basis: x' W'^T = x W^T)
 *   Wq = ternary(W')    (per-output-channel absmean, STE)
 *   y  = xq Wq^T + b
 *
 * Low-rank branch (quant.lowrank_rank = r > 0, the enhanced baseline): FP
 * factors A[out,r], B[r,in], initialised at QAT start from the SVD of W'
 * (A = U_r S_r^1/2, B = S_r^1/2 V_r^T), and only the residual is ternary:
 *   y = xq ternary(W' - sg(A B))^T + (x H) B^T A^T + b
 * The branch sees the rotated but unquantized x (it is the FP part). sg()
 * stops the gradient: with the ternary STE, A and B would otherwise get the
 * branch's gradient and nearly its negative through the residual, and
 * barely move; so they learn only through their own branch.
 *
 * The latent parameter W stays in the original basis, so FP and QAT
 * checkpoints share one layout; export computes W' and ternarizes it. */
#ifndef ROBUQ_QLINEAR_H
#define ROBUQ_QLINEAR_H

#include "robuq/dit.h"
#include "robuq/hadamard.h"
#include "robuq/ops.h"
#include "robuq/quant.h"

typedef struct rq_qlinear {
    int w_ternary;   /* 1: ternary weights */
    int a_bits;      /* 0: full-precision activations, else 1..8 */
    int a_method;    /* RQ_ACTQ_ROBUST / RQ_ACTQ_MINMAX */
    int hadamard;    /* rotate inputs and weights */
    rq_hadamard had; /* plan for in_features */
    /* integer inference of exported models (rq_qlinear_set_integer), forward only */
    struct rq_tlinear *tl; /* a_bits >= 1: FWHT, b-bit codes, ternary x int8 GEMM */
    float *wq;             /* a_bits == 0: dequantized W' = gamma * codes (rotated basis) */
} rq_qlinear;

/* Layer-wide quantization settings, from the [quant] config section. */
typedef struct {
    int enabled;
    int weight_ternary;      /* weight_bits = 1.58 */
    int act_bits;            /* default activation bits of qkv/proj/fc1/fc2 */
    int adaln_act_bits;      /* adaLN modulation linears (0 = FP) */
    int adaln_weight_fp;     /* 1: adaLN weights stay fp (activations still quantized) */
    int method;              /* robust / minmax */
    int hadamard;            /* on / off */
    int hadamard_proj_fc2_only;
    int quantize_embedder, quantize_final;
    int lowrank_rank;        /* FP low-rank branch of every ternary linear, 0 = off */
    int attn_bits;           /* q, k, v and P of the attention matmuls (rq_attention_q), 0 = FP */
    const char *precision_map; /* file "layer_name bits" per line, or NULL/"" */
} rq_quant_opts;

/* Attaches (or replaces) quantization on one linear; the layer name is used
 * in errors (e.g. an unsupported Hadamard size). */
rq_status rq_qlinear_attach(rq_dit_linear *L, const rq_qlinear *q, const char *layer, rq_err *err);
void rq_qlinear_detach(rq_dit_linear *L);
/* Switches an attached ternary linear to its exported integer form: packed
 * codes of W' = W H (tpack.h format fmt; validated), gamma[out], bias[out].
 * Uses the attached a_bits / a_method / hadamard. From then on the layer
 * runs forward only and never reads L->w->data. */
rq_status rq_qlinear_set_integer(rq_dit_linear *L, int fmt, const uint8_t *packed, size_t bytes,
                                 const float *gamma, const float *bias, const char *layer, rq_err *err);
rq_tensor *rq_qlinear_forward(rq_graph *g, rq_dit_linear *L, rq_tensor *x);

/* Applies the options to every linear of the model (blocks: qkv, proj, fc1,
 * fc2, adaLN; optionally the embedder and the final layer). */
rq_status rq_dit_quantize(rq_dit *m, const rq_quant_opts *o, rq_err *err);

/* Low-rank branch: creates zero factors "<layer>.lowrank_A" [out,r] and
 * "<layer>.lowrank_B" [r,in] as model parameters for every linear that
 * rq_dit_quantize(o) makes ternary (layers that have them are kept). Call
 * before the optimizer / EMA / checkpoint loading see the parameter list. */
rq_status rq_dit_add_lowrank(rq_dit *m, const rq_quant_opts *o, rq_err *err);
/* SVD initialisation of every low-rank branch from its layer's W' (call
 * after rq_dit_quantize, which sets the rotation). */
rq_status rq_dit_lowrank_init(rq_dit *m, rq_err *err);

/* Precision map: reads "layer bits" lines ('#' comments) into a[n_linears]
 * indexed like rq_dit_linears(); entries not named stay -1. Errors name
 * file:line. */
rq_status rq_precision_map_read(const char *path, rq_dit *m, int *bits, rq_err *err);

/* Hadamard rotation of the last dimension as an autograd op. */
rq_tensor *rq_hadamard_op(rq_graph *g, rq_tensor *x, const rq_hadamard *h);
/* The same rotation fused with a straight-through quantizer:
 * y = f(x H) row by row, backward dx += (dy [* mask]) H, in one pass over
 * chunks of rows (no x H tensor). Equals rq_ste(rq_hadamard_op(x)) bit for
 * bit. op names the node (profile, errors). */
rq_tensor *rq_rotate_ste(rq_graph *g, rq_tensor *x, const rq_hadamard *h, rq_rowwise_fn f, const void *arg,
                         int masked, const char *op);

#endif
