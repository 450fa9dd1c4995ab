/* dit_internal.h: what dit.c shares with the fused integer block
 * (dit_infer.c). Not part of the public API. */
#ifndef ROBUQ_DIT_INTERNAL_H
#define ROBUQ_DIT_INTERNAL_H
#include "robuq/dit.h"

#define RQ_DIT_LN_EPS 1e-6f

/* One linear: full precision, or through its quantizer when one is attached. */
rq_tensor *rq_dit_linear_forward(rq_graph *g, rq_dit_linear *L, rq_tensor *x);
/* The block's attention on qkv[N,T,3D]: rq_attention_int for exported
 * models, else rq_attention_q. */
rq_tensor *rq_dit_attention(rq_graph *g, const rq_dit *m, rq_tensor *qkv);

/* 1 if block b can run fused: forward only, and qkv, proj, fc1, fc2 are
 * integer layers (tlinear) without a low-rank branch. */
int rq_dit_block_fusable(const rq_graph *g, const rq_dit *m, const rq_dit_block *b);
/* The block as one pass per linear (dit_infer.c). Updates h in place and
 * returns it; its temporaries are released from the arena on return. */
rq_tensor *rq_dit_block_fused(rq_graph *g, const rq_dit *m, rq_dit_block *b, rq_tensor *h, rq_tensor *silu_c);
#endif
