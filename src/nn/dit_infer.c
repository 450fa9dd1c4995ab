/* dit_infer.c: the DiT block of exported (integer) models, fused.
 *
 * The graph form of a block (dit.c) writes every intermediate as an fp32
 * tensor: LN(h), its modulation, the Hadamard-rotated copy the encoder
 * reads, fc1's output, its GELU, the gated residuals. Here each linear's
 * input rows are built on the fly inside the encoder (rq_tlinear_encode),
 * one chunk of rows per thread while it is in L1:
 *
 *   qkv codes  <- rotate+quantize(modulate(LN(h), shift1, scale1))
 *   a          <- attention(qkv)                       (as in dit.c)
 *   proj out y <- the plain integer linear of a
 *   fc1 codes  <- h += gate1 * y (in place), then rotate+quantize(modulate(LN(h), shift2, scale2))
 *   fc2 codes  <- rotate+quantize(GELU(fc1 out))
 *   h         += gate2 * fc2 out
 *
 * Every row goes through the same row kernels as the graph ops
 * (rq_layernorm_stats/_row, rq_modulate_row, rq_gated_add_row,
 * rq_gelu_tanh_row) and the same encoder, so the output equals the graph
 * form bit for bit (tests/test_export.c checks it). The temporaries of a
 * block are taken from the arena after a mark and released at its end, so
 * every block reuses the same memory (about M*(3D + 4D + D) floats). */
#include <string.h>

#include "dit_internal.h"
#include "robuq/ops.h"
#include "robuq/qlinear.h"
#include "robuq/tlinear.h"

int rq_dit_block_fusable(const rq_graph *g, const rq_dit *m, const rq_dit_block *b) {
    if (g->grad_enabled || !m->fused_infer) return 0;
    const rq_dit_linear *ls[4] = {&b->qkv, &b->proj, &b->fc1, &b->fc2};
    for (int i = 0; i < 4; i++)
        if (!ls[i]->q || !ls[i]->q->tl || ls[i]->lr_a) return 0;
    /* shapes the fused code relies on (else the graph ops report the mismatch) */
    const int D = m->cfg.hidden_size;
    const rq_tlinear *qkv = b->qkv.q->tl, *proj = b->proj.q->tl, *fc1 = b->fc1.q->tl, *fc2 = b->fc2.q->tl;
    return qkv->in == D && qkv->out == 3 * D && proj->in == D && proj->out == D && fc1->in == D &&
           fc2->in == fc1->out && fc2->out == D;
}

/* Rows of h, optionally after the gated residual h += gate * y (written
 * back: each row belongs to one chunk), layer-normed and modulated. The
 * adaLN chunks are columns of mod[N, 6D] (row stride 6D). */
typedef struct {
    float *h;
    const float *y, *gate, *shift, *scale;
    int T, D, ld;
} ln_rows_ctx;

static void ln_rows(void *ctx, long r0, long n, float *buf) {
    const ln_rows_ctx *c = ctx;
    const int D = c->D;
    for (long i = 0; i < n; i++) {
        const long r = r0 + i, b = r / c->T;
        float *hr = c->h + r * D, *o = buf + i * D, mean, rstd;
        if (c->y) rq_gated_add_row(hr, c->gate + b * c->ld, c->y + r * D, hr, D);
        rq_layernorm_stats(hr, D, RQ_DIT_LN_EPS, &mean, &rstd);
        rq_layernorm_row(hr, o, D, mean, rstd);
        rq_modulate_row(o, c->shift + b * c->ld, c->scale + b * c->ld, o, D);
    }
}

typedef struct {
    const float *f;
    int H;
} gelu_rows_ctx;

static void gelu_rows(void *ctx, long r0, long n, float *buf) {
    const gelu_rows_ctx *c = ctx;
    rq_gelu_tanh_row(c->f + r0 * c->H, buf, (int)(n * c->H));
}

/* Records a failed call of layer L in g; 1 if st is RQ_OK. */
static int ok(rq_graph *g, const rq_dit_linear *L, rq_status st, const rq_err *e) {
    if (st) rq_graph_fail(g, st, "%s: %s", L->w->name, e->msg);
    return st == RQ_OK;
}

rq_tensor *rq_dit_block_fused(rq_graph *g, const rq_dit *m, rq_dit_block *b, rq_tensor *h, rq_tensor *silu_c) {
    if (!h || !rq_graph_ok(g)) return NULL;
    const int N = h->shape[0], T = h->shape[1], D = h->shape[2];
    const long M = (long)N * T;
    const rq_tlinear *qkv = b->qkv.q->tl, *proj = b->proj.q->tl, *fc1 = b->fc1.q->tl, *fc2 = b->fc2.q->tl;
    const int H = fc1->out;
    rq_err e = {0};
    rq_arena_mark mark = rq_arena_get_mark(&g->arena);
    rq_tensor *mod = rq_dit_linear_forward(g, &b->adaln, silu_c); /* [N, 6D] */
    /* one encoder workspace for all four linears: that of the widest input */
    const rq_tlinear *widest = fc2->in >= D ? fc2 : qkv;
    const size_t ws_bytes = rq_tlinear_ws_bytes(widest, M);
    void *ws = rq_arena_alloc(&g->arena, ws_bytes);
    float *y = rq_arena_alloc(&g->arena, (size_t)M * D * sizeof(float));
    float *f = rq_arena_alloc(&g->arena, (size_t)M * H * sizeof(float));
    rq_tensor *qkv_out = rq_tensor_arena(g, 3, (int[]){N, T, qkv->out});
    if (!mod || !ws || !y || !f || !qkv_out) {
        rq_graph_fail(g, RQ_ENOMEM, "fused block: arena out of memory");
        goto done;
    }
    int8_t *codes;
    float *unit;
    rq_tlinear_ws_parts(widest, M, ws, &codes, &unit);
    rq_profile_mark(g, "adaLN (int)");
    const float *md = mod->data;
    ln_rows_ctx attn_in = {h->data, NULL, NULL, md, md + D, T, D, 6 * D};
    if (!ok(g, &b->qkv, rq_tlinear_encode(qkv, ln_rows, &attn_in, M, codes, unit, &e), &e)) goto done;
    rq_profile_mark(g, "LN+mod+encode qkv");
    if (!ok(g, &b->qkv, rq_tlinear_forward_codes(qkv, codes, unit, qkv_out->data, M, &e), &e)) goto done;
    rq_profile_mark(g, "qkv int gemm");
    rq_tensor *a = rq_dit_attention(g, m, qkv_out);
    rq_profile_mark(g, "attention");
    if (!a || !ok(g, &b->proj, rq_tlinear_forward_ws(proj, a->data, y, M, ws, ws_bytes, &e), &e)) goto done;
    rq_profile_mark(g, "proj (encode+int gemm)");
    ln_rows_ctx mlp_in = {h->data, y, md + 2 * D, md + 3 * D, md + 4 * D, T, D, 6 * D};
    gelu_rows_ctx act = {f, H};
    if (!ok(g, &b->fc1, rq_tlinear_encode(fc1, ln_rows, &mlp_in, M, codes, unit, &e), &e)) goto done;
    rq_profile_mark(g, "gate+LN+mod+encode fc1");
    if (!ok(g, &b->fc1, rq_tlinear_forward_codes(fc1, codes, unit, f, M, &e), &e)) goto done;
    rq_profile_mark(g, "fc1 int gemm");
    if (!ok(g, &b->fc2, rq_tlinear_encode(fc2, gelu_rows, &act, M, codes, unit, &e), &e)) goto done;
    rq_profile_mark(g, "GELU+encode fc2");
    if (!ok(g, &b->fc2, rq_tlinear_forward_codes(fc2, codes, unit, y, M, &e), &e)) goto done;
    rq_profile_mark(g, "fc2 int gemm");
    const float *gate = md + 5 * D;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < M; r++) rq_gated_add_row(h->data + r * D, gate + (r / T) * 6 * D, y + r * D, h->data + r * D, D);
    rq_profile_mark(g, "gated add");
done:
    rq_arena_rewind(&g->arena, mark);
    return rq_graph_ok(g) ? h : NULL;
}
