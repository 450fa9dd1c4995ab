/* dit.h: the Diffusion Transformer (Peebles & Xie 2023), adaLN-Zero blocks,
 * with the reference parameter names so real DiT weights load by name.
 *
 *   x[N,C,H,W] -> patchify -> x_embedder (linear) + pos_embed      h[N,T,D]
 *   t[N] -> sin-cos(256) -> t_embedder.mlp (Linear-SiLU-Linear)   \
 *   y[N] -> y_embedder.embedding_table (num_classes+1 rows)         > c = t_emb + y_emb
 *   depth x block(h, c):  mod = adaLN_modulation(SiLU(c)) -> 6 chunks
 *       h += gate_msa * proj(attn(qkv(modulate(LN(h), shift_msa, scale_msa))))
 *       h += gate_mlp * fc2(GELU(fc1(modulate(LN(h), shift_mlp, scale_mlp))))
 *   final_layer: modulate(LN(h), adaLN(SiLU(c))) -> linear -> unpatchify
 *   out[N, C_out, H, W], C_out = 2C with learned sigma (eps | variance values).
 *
 * Every linear is an rq_dit_linear so the quantizer (quant.h) can wrap it. */
#ifndef ROBUQ_DIT_H
#define ROBUQ_DIT_H

#include "robuq/tensor.h"

typedef struct {
    int input_size, in_channels, patch_size;
    int hidden_size, depth, num_heads, num_classes;
    float mlp_ratio;
    int learn_sigma;
} rq_dit_config;

/* Named presets (DiT-S/2 ... DiT-XL/8): sets depth, hidden, heads, patch. */
rq_status rq_dit_preset(const char *arch, rq_dit_config *cfg, rq_err *err);
rq_status rq_dit_config_check(const rq_dit_config *cfg, rq_err *err);
static inline int rq_dit_out_channels(const rq_dit_config *c) {
    return c->learn_sigma ? 2 * c->in_channels : c->in_channels;
}
static inline int rq_dit_tokens(const rq_dit_config *c) {
    return (c->input_size / c->patch_size) * (c->input_size / c->patch_size);
}

struct rq_qlinear; /* quantization state of one linear (quant.h), NULL = FP */

typedef struct {
    rq_tensor *w, *b;       /* weight [out, in] (x_embedder: [D,C,p,p]), bias [out] */
    struct rq_qlinear *q;   /* attached by the quantizer; NULL runs full precision */
    const char *kind;       /* layer class: qkv, proj, fc1, fc2, adaLN, embed, final, t_mlp */
    rq_tensor *lr_a, *lr_b; /* FP low-rank branch W_H ~ lr_a[out,r] lr_b[r,in] (qlinear.h), or NULL */
} rq_dit_linear;

typedef struct {
    rq_dit_linear qkv, proj, fc1, fc2, adaln;
} rq_dit_block;

typedef struct {
    rq_dit_config cfg;
    rq_dit_linear x_embed, t_mlp0, t_mlp2, final_adaln, final_linear;
    rq_tensor *y_table;
    rq_dit_block *blocks;
    float *pos_embed;       /* fixed [T, D] buffer, not a parameter */
    rq_tensor **params;     /* all parameters in reference state-dict order */
    int n_params;
    /* attention matmuls (rq_attention_q): bits of q, k, v and P (0 = FP) and
     * the row quantizer of q, k, v (set by rq_dit_quantize); attn_integer = 1
     * (exported models, forward only) runs them on the int8 kernels
     * (rq_attention_int). */
    int attn_bits, attn_method, attn_integer;
    /* Exported models: forward-only blocks run fused (dit_infer.c: layernorm,
     * modulation, GELU and residuals built inside the integer linears'
     * encoders, block temporaries reused), same floats as op by op. Set by
     * rq_export_load; 0 runs the graph ops (tests compare the two). */
    int fused_infer;
    /* Activation recomputation (train.recompute): blocks keep only their
     * input on the tape and run again in backward, inside `scratch` (owned,
     * made on first use). Same gradients, less memory, ~1/3 more compute. */
    int recompute;
    rq_graph *scratch;
} rq_dit;

/* Allocates the parameters and applies the reference init (xavier-uniform
 * linears, zero biases, N(0, 0.02) label table and t-MLP, zero adaLN and final). */
rq_status rq_dit_init(rq_dit *m, const rq_dit_config *cfg, uint64_t seed, rq_err *err);
void rq_dit_free(rq_dit *m);
rq_tensor *rq_dit_param(const rq_dit *m, const char *name);
/* Registers an extra parameter (the model takes ownership; e.g. the
 * low-rank factors), after the reference ones. Names must be unique. */
rq_status rq_dit_add_param(rq_dit *m, rq_tensor *t, rq_err *err);
long rq_dit_num_params(const rq_dit *m);
/* Multiply-accumulates of one forward for one sample (linears + attention). */
double rq_dit_macs(const rq_dit *m);
/* Layer name of a linear from its weight's parameter name:
 * "blocks.0.attn.qkv.weight" -> "blocks.0.attn.qkv" (other names unchanged).
 * Returns out. */
const char *rq_dit_layer_name(const char *param, char *out, size_t cap);
/* Every linear of the model, in order (for quantizers, search and export). */
int rq_dit_linears(rq_dit *m, rq_dit_linear **out, const char **names, int max);

/* Forward: x[N,C,H,W], t[N] (float timesteps), y[N] class ids in
 * [0, num_classes] (num_classes = the null / unconditional class). */
rq_tensor *rq_dit_forward(rq_graph *g, rq_dit *m, rq_tensor *x, rq_tensor *t, const int *y);

/* 2-D sin-cos positional embedding [grid*grid, D] (first D/2 dims encode the
 * column, last D/2 the row), computed in double as the reference does. */
void rq_pos_embed_2d(float *out, int D, int grid);

#endif
