/* dit.c: DiT parameters, reference init, and the forward pass on the tape. */
#include "robuq/dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/iattn.h"
#include "robuq/ops.h"
#include "robuq/qlinear.h"
#include "robuq/rng.h"

#include "dit_internal.h"

#define FREQ_DIM 256

/* ---------------------------------------------------------------- config */

rq_status rq_dit_preset(const char *arch, rq_dit_config *cfg, rq_err *err) {
    static const struct { const char *name; int depth, hidden, heads; } sizes[] = {
        {"S", 12, 384, 6}, {"B", 12, 768, 12}, {"L", 24, 1024, 16}, {"XL", 28, 1152, 16}};
    if (!arch || !cfg) return rq_err_set(err, RQ_EINVAL, "dit preset: NULL argument");
    char size[8];
    int patch;
    if (sscanf(arch, "DiT-%7[A-Z]/%d", size, &patch) == 2 && (patch == 2 || patch == 4 || patch == 8)) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            if (!strcmp(size, sizes[i].name)) {
                cfg->depth = sizes[i].depth;
                cfg->hidden_size = sizes[i].hidden;
                cfg->num_heads = sizes[i].heads;
                cfg->patch_size = patch;
                cfg->mlp_ratio = 4.0f;
                return RQ_OK;
            }
    }
    return rq_err_set(err, RQ_EINVAL, "unknown DiT arch '%s' (expected DiT-{S,B,L,XL}/{2,4,8})", arch);
}

rq_status rq_dit_config_check(const rq_dit_config *c, rq_err *err) {
    if (!c) return rq_err_set(err, RQ_EINVAL, "dit config: NULL");
    if (c->input_size < 1 || c->in_channels < 1 || c->patch_size < 1 || c->input_size % c->patch_size)
        return rq_err_set(err, RQ_EINVAL, "dit config: input_size %d must be a positive multiple of patch_size %d",
                          c->input_size, c->patch_size);
    if (c->hidden_size < 4 || c->depth < 1 || c->num_heads < 1 || c->hidden_size % c->num_heads)
        return rq_err_set(err, RQ_EINVAL, "dit config: hidden_size %d must be divisible by num_heads %d",
                          c->hidden_size, c->num_heads);
    if (c->hidden_size % 4)
        return rq_err_set(err, RQ_EINVAL, "dit config: hidden_size %d must be divisible by 4 (sin-cos pos embed)",
                          c->hidden_size);
    if (c->num_classes < 1 || !(c->mlp_ratio > 0.0f) || (int)(c->hidden_size * c->mlp_ratio) < 1)
        return rq_err_set(err, RQ_EINVAL, "dit config: num_classes %d / mlp_ratio %g out of range",
                          c->num_classes, (double)c->mlp_ratio);
    return RQ_OK;
}

/* ------------------------------------------------------------- pos embed */

static void sincos_1d(float *out, int stride, int D, double pos) {
    int half = D / 2;
    for (int k = 0; k < half; k++) {
        double omega = 1.0 / pow(10000.0, (double)k / half);
        out[k * stride] = (float)sin(pos * omega);
        out[(half + k) * stride] = (float)cos(pos * omega);
    }
}

void rq_pos_embed_2d(float *out, int D, int grid) {
    for (int r = 0; r < grid; r++)
        for (int c = 0; c < grid; c++) {
            float *row = out + (long)(r * grid + c) * D;
            sincos_1d(row, 1, D / 2, c);         /* first half: column */
            sincos_1d(row + D / 2, 1, D / 2, r); /* second half: row */
        }
}

/* ------------------------------------------------------------------ init */

static rq_status add_param(rq_dit *m, rq_tensor **slot, int ndim, const int *shape, const char *name,
                           rq_err *err) {
    rq_tensor *t = rq_tensor_new(ndim, shape, 1, name);
    if (!t) return rq_err_set(err, RQ_ENOMEM, "dit: cannot allocate %s", name);
    *slot = t;
    m->params[m->n_params++] = t;
    return RQ_OK;
}

static rq_status add_linear(rq_dit *m, rq_dit_linear *L, const char *prefix, int out, int in,
                            const char *kind, rq_err *err) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (add_param(m, &L->w, 2, (int[]){out, in}, name, err)) return err->code;
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (add_param(m, &L->b, 1, (int[]){out}, name, err)) return err->code;
    L->kind = kind;
    return RQ_OK;
}

static void xavier_uniform(rq_rng *r, rq_tensor *w, int fan_out, int fan_in) {
    double a = sqrt(6.0 / (fan_in + fan_out));
    for (long i = 0; i < w->n; i++) w->data[i] = (float)((2.0 * rq_rng_uniform(r) - 1.0) * a);
}

rq_status rq_dit_init(rq_dit *m, const rq_dit_config *cfg, uint64_t seed, rq_err *err) {
    if (!m) return rq_err_set(err, RQ_EINVAL, "dit init: NULL model");
    memset(m, 0, sizeof *m);
    if (rq_dit_config_check(cfg, err)) return err->code;
    m->cfg = *cfg;
    int D = cfg->hidden_size, C = cfg->in_channels, p = cfg->patch_size, H = (int)(D * cfg->mlp_ratio);
    int T = rq_dit_tokens(cfg), Cout = rq_dit_out_channels(cfg);
    m->params = calloc((size_t)(12 + 10 * cfg->depth), sizeof *m->params);
    m->blocks = calloc((size_t)cfg->depth, sizeof *m->blocks);
    m->pos_embed = rq_malloc((size_t)T * D * sizeof(float));
    if (!m->params || !m->blocks || !m->pos_embed) return rq_err_set(err, RQ_ENOMEM, "dit: out of memory");
    rq_pos_embed_2d(m->pos_embed, D, cfg->input_size / p);

    /* Same order as the reference state dict. */
    if (add_param(m, &m->x_embed.w, 4, (int[]){D, C, p, p}, "x_embedder.proj.weight", err) ||
        add_param(m, &m->x_embed.b, 1, (int[]){D}, "x_embedder.proj.bias", err) ||
        add_linear(m, &m->t_mlp0, "t_embedder.mlp.0", D, FREQ_DIM, "t_mlp", err) ||
        add_linear(m, &m->t_mlp2, "t_embedder.mlp.2", D, D, "t_mlp", err) ||
        add_param(m, &m->y_table, 2, (int[]){cfg->num_classes + 1, D}, "y_embedder.embedding_table.weight", err))
        goto fail;
    m->x_embed.kind = "embed";
    for (int i = 0; i < cfg->depth; i++) {
        rq_dit_block *b = &m->blocks[i];
        char pre[64];
#define BLOCK_LINEAR(field, sub, out, in, kind)                 \
        snprintf(pre, sizeof pre, "blocks.%d.%s", i, sub);      \
        if (add_linear(m, &b->field, pre, out, in, kind, err)) goto fail;
        BLOCK_LINEAR(qkv, "attn.qkv", 3 * D, D, "qkv")
        BLOCK_LINEAR(proj, "attn.proj", D, D, "proj")
        BLOCK_LINEAR(fc1, "mlp.fc1", H, D, "fc1")
        BLOCK_LINEAR(fc2, "mlp.fc2", D, H, "fc2")
        BLOCK_LINEAR(adaln, "adaLN_modulation.1", 6 * D, D, "adaLN")
#undef BLOCK_LINEAR
    }
    if (add_linear(m, &m->final_linear, "final_layer.linear", p * p * Cout, D, "final", err) ||
        add_linear(m, &m->final_adaln, "final_layer.adaLN_modulation.1", 2 * D, D, "adaLN_final", err))
        goto fail;

    /* Reference init (models.py initialize_weights). Biases start at zero. */
    rq_rng rng;
    rq_rng_seed(&rng, seed);
    xavier_uniform(&rng, m->x_embed.w, D, C * p * p);
    rq_rng_fill_normal(&rng, m->y_table->data, m->y_table->n, 0.02f);
    rq_rng_fill_normal(&rng, m->t_mlp0.w->data, m->t_mlp0.w->n, 0.02f);
    rq_rng_fill_normal(&rng, m->t_mlp2.w->data, m->t_mlp2.w->n, 0.02f);
    for (int i = 0; i < cfg->depth; i++) {
        rq_dit_block *b = &m->blocks[i];
        rq_dit_linear *ls[] = {&b->qkv, &b->proj, &b->fc1, &b->fc2};
        for (int k = 0; k < 4; k++) xavier_uniform(&rng, ls[k]->w, ls[k]->w->shape[0], ls[k]->w->shape[1]);
        /* adaLN modulation stays zero: each block starts as the identity */
    }
    return RQ_OK;
fail:
    rq_dit_free(m);
    return err ? err->code : RQ_ENOMEM;
}

void rq_dit_free(rq_dit *m) {
    if (!m) return;
    rq_dit_linear *ls[256];
    int n = rq_dit_linears(m, ls, NULL, 256);
    for (int i = 0; i < n; i++) rq_qlinear_detach(ls[i]);
    for (int i = 0; i < m->n_params; i++) rq_tensor_free(m->params[i]);
    free(m->params);
    free(m->blocks);
    rq_free(m->pos_embed);
    if (m->scratch) rq_graph_free(m->scratch);
    free(m->scratch);
    memset(m, 0, sizeof *m);
}

rq_tensor *rq_dit_param(const rq_dit *m, const char *name) {
    if (!m || !name) return NULL;
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i]->name, name)) return m->params[i];
    return NULL;
}

rq_status rq_dit_add_param(rq_dit *m, rq_tensor *t, rq_err *err) {
    if (!m || !t) return rq_err_set(err, RQ_EINVAL, "dit add_param: NULL argument");
    if (rq_dit_param(m, t->name)) return rq_err_set(err, RQ_EINVAL, "dit: parameter %s exists already", t->name);
    rq_tensor **p = realloc(m->params, (size_t)(m->n_params + 1) * sizeof *p);
    if (!p) return rq_err_set(err, RQ_ENOMEM, "dit: out of memory for parameter %s", t->name);
    m->params = p;
    m->params[m->n_params++] = t;
    return RQ_OK;
}

long rq_dit_num_params(const rq_dit *m) {
    long n = 0;
    for (int i = 0; m && i < m->n_params; i++) n += m->params[i]->n;
    return n;
}

const char *rq_dit_layer_name(const char *param, char *out, size_t cap) {
    if (!out || cap == 0) return "";
    size_t len = param ? strlen(param) : 0;
    if (len > 7 && !strcmp(param + len - 7, ".weight")) len -= 7;
    snprintf(out, cap, "%.*s", (int)len, param ? param : "");
    return out;
}

int rq_dit_linears(rq_dit *m, rq_dit_linear **out, const char **names, int max) {
    int n = 0;
    if (!m || !m->blocks) return 0;
#define PUSH(L, nm)                             \
    do {                                        \
        if (n < max) {                          \
            out[n] = (L);                       \
            if (names) names[n] = (nm);         \
        }                                       \
        n++;                                    \
    } while (0)
    PUSH(&m->x_embed, m->x_embed.w ? m->x_embed.w->name : "");
    PUSH(&m->t_mlp0, m->t_mlp0.w ? m->t_mlp0.w->name : "");
    PUSH(&m->t_mlp2, m->t_mlp2.w ? m->t_mlp2.w->name : "");
    for (int i = 0; i < m->cfg.depth; i++) {
        rq_dit_block *b = &m->blocks[i];
        rq_dit_linear *ls[] = {&b->qkv, &b->proj, &b->fc1, &b->fc2, &b->adaln};
        for (int k = 0; k < 5; k++) PUSH(ls[k], ls[k]->w ? ls[k]->w->name : "");
    }
    PUSH(&m->final_adaln, m->final_adaln.w ? m->final_adaln.w->name : "");
    PUSH(&m->final_linear, m->final_linear.w ? m->final_linear.w->name : "");
#undef PUSH
    return n;
}

double rq_dit_macs(const rq_dit *m) {
    const rq_dit_config *c = &m->cfg;
    double D = c->hidden_size, T = rq_dit_tokens(c), H = (int)(D * c->mlp_ratio);
    double p2c = (double)c->patch_size * c->patch_size * c->in_channels;
    double block = T * (3 * D * D + D * D + 2 * D * H) + 2 * T * T * D + 6 * D * D;
    return T * p2c * D + FREQ_DIM * D + D * D + c->depth * block + 2 * D * D +
           T * D * c->patch_size * c->patch_size * rq_dit_out_channels(c);
}

/* --------------------------------------------------------------- forward */

rq_tensor *rq_dit_linear_forward(rq_graph *g, rq_dit_linear *L, rq_tensor *x) {
    if (L->q) return rq_qlinear_forward(g, L, x);
    return rq_linear(g, x, L->w, L->b);
}

rq_tensor *rq_dit_attention(rq_graph *g, const rq_dit *m, rq_tensor *qkv) {
    return m->attn_integer ? rq_attention_int(g, qkv, m->cfg.num_heads, m->attn_bits, m->attn_method)
                           : rq_attention_q(g, qkv, m->cfg.num_heads, m->attn_bits, m->attn_method);
}

/* The 6 (or 2) adaLN chunks of mod[N, k*D]. */
static void chunks(rq_graph *g, rq_tensor *mod, int k, int D, rq_tensor **out) {
    for (int i = 0; i < k; i++) out[i] = rq_slice(g, mod, 1, i * D, D);
}

static rq_tensor *dit_block(rq_graph *g, const rq_dit *m, rq_dit_block *b, rq_tensor *h, rq_tensor *silu_c) {
    if (!h || !rq_graph_ok(g)) return NULL; /* an earlier op failed: the error is in g */
    if (rq_dit_block_fusable(g, m, b)) return rq_dit_block_fused(g, m, b, h, silu_c);
    int D = h->shape[2];
    rq_tensor *mod[6]; /* shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
    chunks(g, rq_dit_linear_forward(g, &b->adaln, silu_c), 6, D, mod);
    /* rq_profile_mark: section times of forward-only runs (robuq-bench --profile) */
    rq_profile_mark(g, "adaLN");

    rq_tensor *a = rq_layernorm_modulate(g, h, mod[0], mod[1], RQ_DIT_LN_EPS);
    rq_profile_mark(g, "LN+modulate");
    a = rq_dit_linear_forward(g, &b->qkv, a);
    rq_profile_mark(g, "qkv");
    a = rq_dit_attention(g, m, a);
    rq_profile_mark(g, "attention");
    a = rq_dit_linear_forward(g, &b->proj, a);
    rq_profile_mark(g, "proj");
    h = rq_gated_add(g, h, mod[2], a);
    rq_profile_mark(g, "gated add");

    rq_tensor *f = rq_layernorm_modulate(g, h, mod[3], mod[4], RQ_DIT_LN_EPS);
    rq_profile_mark(g, "LN+modulate");
    f = rq_dit_linear_forward(g, &b->fc1, f);
    rq_profile_mark(g, "fc1");
    f = rq_gelu_tanh(g, f);
    rq_profile_mark(g, "GELU");
    f = rq_dit_linear_forward(g, &b->fc2, f);
    rq_profile_mark(g, "fc2");
    h = rq_gated_add(g, h, mod[5], f);
    rq_profile_mark(g, "gated add");
    return h;
}

/* ------------------------------------------------ activation recomputation
 * With m->recompute, a block keeps only its input on the main tape: its
 * forward runs in the model's scratch graph without a tape, and one node
 * ("block_recompute") stands for the whole block. That node's backward runs
 * the block forward again in the scratch graph, this time with a tape, seeds
 * the output gradient and walks the scratch tape, so parameter gradients
 * accumulate as usual and the input gradients are added to the main graph.
 * Peak activation memory: every block's input and output plus one block's
 * activations and gradients (which, under QAT, include the rotated and
 * ternarized copies of its weights). Every op is deterministic, so the
 * second forward gives the same floats as the first. */

static rq_graph *scratch_graph(rq_graph *g, rq_dit *m) {
    if (!m->scratch) {
        m->scratch = calloc(1, sizeof *m->scratch);
        if (!m->scratch || rq_graph_init(m->scratch, (size_t)64 << 20)) {
            free(m->scratch);
            m->scratch = NULL;
            return rq_graph_fail(g, RQ_ENOMEM, "recompute: out of memory for the scratch graph");
        }
    }
    rq_graph_reset(m->scratch);
    return m->scratch;
}

/* The block's inputs as leaves of the scratch graph (data aliased). */
static rq_tensor *scratch_leaf(rq_graph *s, rq_tensor *t, int requires_grad) {
    rq_tensor *v = rq_tensor_wrap(s, t->data, t->ndim, t->shape);
    if (v) v->requires_grad = requires_grad;
    return v;
}

/* Adds src (may be NULL: nothing flowed) into t's gradient in graph g. */
static void add_grad(rq_graph *g, rq_tensor *t, const float *src) {
    if (!src || !t->requires_grad) return;
    float *d = rq_tensor_grad(g, t);
    if (!d) return;
    for (long i = 0; i < t->n; i++) d[i] += src[i];
}

static void block_recompute_backward(rq_graph *g, rq_node *n) {
    rq_dit *m = n->saved;
    rq_tensor *h_in = n->in[0], *c_in = n->in[1];
    rq_graph *s = scratch_graph(g, m);
    if (!s) return;
    s->grad_enabled = 1;
    rq_tensor *h = scratch_leaf(s, h_in, h_in->requires_grad), *c = scratch_leaf(s, c_in, c_in->requires_grad);
    rq_tensor *o = h && c ? dit_block(s, m, &m->blocks[n->iarg[0]], h, c) : NULL;
    float *dout = o && o->requires_grad ? rq_tensor_grad(s, o) : NULL;
    if (dout) {
        memcpy(dout, n->out->grad, (size_t)o->n * sizeof(float));
        rq_backward_tape(s);
    }
    if (!rq_graph_ok(s)) {
        rq_graph_fail(g, s->err.code, "block %d (recomputed): %s", n->iarg[0], s->err.msg);
        return;
    }
    add_grad(g, h_in, h->grad);
    add_grad(g, c_in, c->grad);
}

static rq_tensor *dit_block_recompute(rq_graph *g, rq_dit *m, int i, rq_tensor *h, rq_tensor *silu_c) {
    if (!h || !rq_graph_ok(g)) return NULL;
    rq_graph *s = scratch_graph(g, m);
    if (!s) return NULL;
    s->grad_enabled = 0;
    rq_tensor *o = dit_block(s, m, &m->blocks[i], scratch_leaf(s, h, 0), scratch_leaf(s, silu_c, 0));
    if (!o) return rq_graph_fail(g, s->err.code, "block %d: %s", i, s->err.msg);
    rq_tensor *out = rq_tensor_arena(g, o->ndim, o->shape);
    if (!out) return NULL;
    memcpy(out->data, o->data, (size_t)o->n * sizeof(float));
    if (g->grad_enabled) {
        rq_node *n = rq_graph_push(g, "block_recompute", block_recompute_backward, out);
        if (!n) return NULL;
        n->in[0] = h, n->in[1] = silu_c, n->saved = m, n->iarg[0] = i;
    }
    return out;
}

/* A 2-D view of a parameter that aliases its data and grad (no copy). */
static rq_tensor *param_view2d(rq_graph *g, rq_tensor *p, int rows, int cols) {
    rq_tensor *v = rq_tensor_wrap(g, p->data, 2, (int[]){rows, cols});
    if (v) {
        v->grad = p->grad;
        v->requires_grad = p->requires_grad;
    }
    return v;
}

rq_tensor *rq_dit_forward(rq_graph *g, rq_dit *m, rq_tensor *x, rq_tensor *t, const int *y) {
    if (!g || !rq_graph_ok(g)) return NULL;
    if (!m || !x || !t || !y) return rq_graph_fail(g, RQ_EINVAL, "dit_forward: NULL argument");
    const rq_dit_config *c = &m->cfg;
    int N = x->shape[0], D = c->hidden_size, p = c->patch_size, T = rq_dit_tokens(c);
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] != c->input_size ||
        x->shape[3] != c->input_size || t->ndim != 1 || t->shape[0] != N) {
        char sx[64], st[64];
        return rq_graph_fail(g, RQ_ESHAPE, "dit_forward: x %s, t %s; model wants x [N,%d,%d,%d], t [N]",
                             rq_shape_str(x, sx, 64), rq_shape_str(t, st, 64), c->in_channels,
                             c->input_size, c->input_size);
    }
    for (int i = 0; i < N; i++)
        if (y[i] < 0 || y[i] > c->num_classes)
            return rq_graph_fail(g, RQ_EINVAL, "dit_forward: label y[%d] = %d outside [0, %d]", i, y[i],
                                 c->num_classes);

    /* x_embedder: conv k=p s=p == linear on (c, pi, pj)-ordered patches */
    rq_tensor *h;
    if (m->x_embed.q) {
        h = rq_dit_linear_forward(g, &m->x_embed, rq_patchify(g, x, p));
    } else {
        rq_tensor *w = param_view2d(g, m->x_embed.w, D, c->in_channels * p * p);
        h = rq_linear(g, rq_patchify(g, x, p), w, m->x_embed.b);
    }
    h = rq_add(g, h, rq_tensor_wrap(g, m->pos_embed, 2, (int[]){T, D}));

    rq_tensor *temb = rq_timestep_embedding(g, t, FREQ_DIM, 10000.0f);
    temb = rq_dit_linear_forward(g, &m->t_mlp2, rq_silu(g, rq_dit_linear_forward(g, &m->t_mlp0, temb)));
    rq_tensor *cvec = rq_add(g, temb, rq_embedding(g, m->y_table, y, N));
    /* Every adaLN_modulation starts with SiLU(c): compute it once. */
    rq_tensor *silu_c = rq_silu(g, cvec);
    rq_profile_mark(g, "embeddings");

    for (int i = 0; i < c->depth; i++)
        h = m->recompute && g->grad_enabled ? dit_block_recompute(g, m, i, h, silu_c)
                                            : dit_block(g, m, &m->blocks[i], h, silu_c);

    rq_tensor *mod[2]; /* shift, scale */
    chunks(g, rq_dit_linear_forward(g, &m->final_adaln, silu_c), 2, D, mod);
    h = rq_layernorm_modulate(g, h, mod[0], mod[1], RQ_DIT_LN_EPS);
    h = rq_dit_linear_forward(g, &m->final_linear, h);
    h = rq_unpatchify(g, h, p, rq_dit_out_channels(c), c->input_size, c->input_size);
    rq_profile_mark(g, "final layer");
    return h;
}
