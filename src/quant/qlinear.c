/* qlinear.c: fake-quantized linears for QAT and the model-wide wiring. */
#include "robuq/qlinear.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/fastmath.h"
#include "robuq/ops.h"
#include "robuq/svd.h"
#include "robuq/tgemm.h"
#include "robuq/tpack.h"
#include "robuq/tlinear.h"

/* ------------------------------------------------------- hadamard as an op */

/* Rows per chunk of the row-wise loops below: a chunk (<= 32 KiB of floats)
 * is rotated and then quantized while it is still in L1/L2. */
#define HAD_CHUNK_FLOATS 8192L

static long chunk_rows(int n) { return HAD_CHUNK_FLOATS / n > 0 ? HAD_CHUNK_FLOATS / n : 1; }

/* One scratch chunk per thread from the arena (backward passes). */
static float *thread_chunks(rq_graph *g, int n, const char *op) {
    float *t = rq_arena_alloc(&g->arena, (size_t)omp_get_max_threads() * chunk_rows(n) * n * sizeof(float));
    if (!t) rq_graph_fail(g, RQ_ENOMEM, "%s backward: arena out of memory", op);
    return t;
}

/* The quantizer after the rotation: a generic STE row function, or one of
 * QAT's two quantizers, which also hand out their integer codes and scales
 * (per row: the activation unit / the ternary gamma) for rq_linear_codes. */
typedef struct {
    rq_rowwise_fn f;         /* generic (rq_rotate_ste); NULL: see act / ternary */
    const void *arg;
    const rq_actq_cfg *act;  /* activation quantizer with codes */
    int ternary;             /* ternary weights with codes */
    int8_t *codes;           /* [rows * n] (act / ternary) */
    float *scale;            /* [rows] */
} rot_quant;

static void quant_chunk(const rot_quant *q, long r0, long nr, int n, float *y, uint8_t *mask) {
    if (q->f) q->f(y, y, mask, nr, n, q->arg);
    else if (q->act) rq_actq_rows(q->act, y, y, mask, q->codes + r0 * n, q->scale + r0, nr, n);
    else if (q->ternary) rq_ternary_rows(y, y, q->codes + r0 * n, q->scale + r0, nr, n);
}

/* t = mask ? dy : 0 as a bit select (a NaN gradient behind a 0 mask gives
 * 0, as the STE says), and dx += t: restrict loops that vectorize. */
RQ_TARGET_CLONES static void masked_copy(float *restrict t, const float *restrict dy, const uint8_t *restrict mask,
                                         long n) {
    for (long i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &dy[i], sizeof v);
        v &= 0u - (uint32_t)mask[i];
        memcpy(&t[i], &v, sizeof v);
    }
}
RQ_TARGET_CLONES static void add_to(float *restrict dx, const float *restrict t, long n) {
    for (long i = 0; i < n; i++) dx[i] += t[i];
}

/* dx += (dy [* mask]) [H], chunk by chunk: H is symmetric and orthonormal,
 * so this is the backward of y = f(x H) with an STE through f. */
typedef struct {
    const rq_hadamard *h; /* NULL: no rotation */
    const uint8_t *mask;  /* NULL: identity STE */
} rotate_saved;

static void rotate_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *y = n->out;
    const rotate_saved *sv = n->saved;
    const rq_hadamard *h = sv->h;
    const uint8_t *mask = sv->mask;
    const int dim = x->shape[x->ndim - 1];
    const long rows = y->n / dim, ch = chunk_rows(dim), nch = (rows + ch - 1) / ch;
    float *dx = rq_tensor_grad(g, x), *tmp = thread_chunks(g, dim, n->op);
    if (!dx || !tmp) return;
#pragma omp parallel for schedule(dynamic, 1) /* threads differ in speed */
    for (long c = 0; c < nch; c++) {
        float *t = tmp + (long)omp_get_thread_num() * ch * dim;
        const long i0 = c * ch * dim, len = ((c + 1) * ch < rows ? ch : rows - c * ch) * dim;
        const float *dy = y->grad + i0;
        if (mask) masked_copy(t, dy, mask + i0, len);
        else memcpy(t, dy, (size_t)len * sizeof(float));
        if (h)
            for (long r = 0; r < len; r += dim) rq_hadamard_apply_row(h, t + r);
        add_to(dx + i0, t, len);
    }
}

/* y = f(x [H]) row by row (h NULL: no rotation; q NULL: no quantizer), one
 * pass over chunks of rows. */
static rq_tensor *rotate_op(rq_graph *g, rq_tensor *x, const rq_hadamard *h, const rot_quant *q, int masked,
                            const char *op) {
    if (!g || !rq_graph_ok(g)) return NULL;
    if (!x) return rq_graph_fail(g, RQ_EINVAL, "%s: NULL argument", op);
    const int dim = x->shape[x->ndim - 1];
    if (h && dim != h->n) {
        char s[64];
        return rq_graph_fail(g, RQ_ESHAPE, "%s: input %s, plan size %d", op, rq_shape_str(x, s, 64), h->n);
    }
    const long rows = x->n / dim, ch = chunk_rows(dim), nch = (rows + ch - 1) / ch;
    rq_tensor *y = rq_tensor_arena(g, x->ndim, x->shape);
    uint8_t *mask = masked ? rq_arena_alloc(&g->arena, (size_t)x->n) : NULL;
    if (!y || (masked && !mask)) return rq_graph_fail(g, RQ_ENOMEM, "%s: arena out of memory", op);
#pragma omp parallel for schedule(dynamic, 1) if (nch > 1 && x->n >= (1L << 15)) /* threads differ in speed */
    for (long c = 0; c < nch; c++) {
        const long r0 = c * ch, nr = r0 + ch < rows ? ch : rows - r0;
        float *yc = y->data + r0 * dim;
        memcpy(yc, x->data + r0 * dim, (size_t)(nr * dim) * sizeof(float));
        if (h)
            for (long r = 0; r < nr; r++) rq_hadamard_apply_row(h, yc + r * dim);
        if (q) quant_chunk(q, r0, nr, dim, yc, mask ? mask + r0 * dim : NULL); /* serial inside this region */
    }
    if (rq_needs_grad(g, 1, &x)) {
        rotate_saved *sv = rq_arena_alloc(&g->arena, sizeof *sv);
        rq_node *n = sv ? rq_graph_push(g, op, rotate_backward, y) : rq_graph_fail(g, RQ_ENOMEM, "%s: arena out of memory", op);
        if (!n) return NULL;
        sv->h = h, sv->mask = mask;
        n->in[0] = x, n->saved = sv;
    }
    return y;
}

rq_tensor *rq_hadamard_op(rq_graph *g, rq_tensor *x, const rq_hadamard *h) {
    if (!h) return rq_graph_fail(g, RQ_EINVAL, "hadamard: NULL plan");
    return rotate_op(g, x, h, NULL, 0, "hadamard");
}

rq_tensor *rq_rotate_ste(rq_graph *g, rq_tensor *x, const rq_hadamard *h, rq_rowwise_fn f, const void *arg,
                         int masked, const char *op) {
    if (!f || !h) return rq_graph_fail(g, RQ_EINVAL, "rotate_ste: NULL quantizer or plan");
    rot_quant q = {.f = f, .arg = arg};
    return rotate_op(g, x, h, &q, masked, op ? op : "rotate_ste");
}

/* QAT forward of a ternary linear with quantized activations, without a
 * low-rank branch: x and W rotated (if hadamard) and quantized in one pass
 * each, their codes kept, and the product done by the integer kernel (the
 * exported model's arithmetic, exact int32 sums); the backward runs on the
 * float fake-quant values as rq_linear's does. */
static rq_tensor *qlinear_codes_forward(rq_graph *g, rq_dit_linear *L, rq_tensor *x, rq_tensor *w, int out, int in) {
    const rq_qlinear *q = L->q;
    const rq_hadamard *h = q->hadamard ? &q->had : NULL;
    const long rows = x->n / in;
    const rq_actq_cfg c = {q->a_bits, q->a_method};
    int8_t *xc = rq_arena_alloc(&g->arena, (size_t)x->n), *wc = rq_arena_alloc(&g->arena, (size_t)out * in);
    float *xu = rq_arena_alloc(&g->arena, (size_t)rows * sizeof(float));
    float *wg = rq_arena_alloc(&g->arena, (size_t)out * sizeof(float));
    uint8_t *wt2 = rq_arena_alloc(&g->arena, rq_t2_bytes(out, in));
    if (!xc || !wc || !xu || !wg || !wt2) return rq_graph_fail(g, RQ_ENOMEM, "%s: arena out of memory", L->w->name);
    rot_quant qa = {.act = &c, .codes = xc, .scale = xu}, qw = {.ternary = 1, .codes = wc, .scale = wg};
    rq_tensor *xq = rotate_op(g, x, h, &qa, 1, "rot_act_quant"), *wq = rotate_op(g, w, h, &qw, 0, "rot_ternary");
    if (!xq || !wq) return NULL;
    rq_err e = {0};
    if (rq_t2_pack(wc, out, in, wt2, &e)) return rq_graph_fail(g, e.code, "%s: %s", L->w->name, e.msg);
    return rq_linear_codes(g, xq, wq, L->b, xc, xu, wt2, wg);
}

/* --------------------------------------------------------------- qlinear */

rq_status rq_qlinear_attach(rq_dit_linear *L, const rq_qlinear *q, const char *layer, rq_err *err) {
    if (!L || !L->w || !q) return rq_err_set(err, RQ_EINVAL, "qlinear: NULL argument");
    int in = (int)(L->w->n / L->w->shape[0]);
    rq_qlinear *s = malloc(sizeof *s);
    if (!s) return rq_err_set(err, RQ_ENOMEM, "qlinear: out of memory");
    *s = *q;
    s->tl = NULL, s->wq = NULL; /* integer state is never shared */
    if (s->a_bits) {
        rq_actq_cfg c = {s->a_bits, s->a_method};
        if (rq_actq_cfg_check(&c, err)) {
            free(s);
            return rq_err_set(err, RQ_EINVAL, "layer %s: bad activation quantizer", layer);
        }
    }
    if (s->hadamard) {
        rq_err e = {0};
        if (rq_hadamard_plan_init(&s->had, in, &e)) {
            free(s);
            return rq_err_set(err, RQ_EINVAL, "layer %s: %s", layer ? layer : "?", e.msg);
        }
    }
    rq_qlinear_detach(L);
    L->q = s;
    return RQ_OK;
}

void rq_qlinear_detach(rq_dit_linear *L) {
    if (!L) return;
    if (L->q) {
        rq_tlinear_free(L->q->tl);
        free(L->q->tl);
        rq_free(L->q->wq);
        free(L->q);
    }
    L->q = NULL;
}

rq_status rq_qlinear_set_integer(rq_dit_linear *L, int fmt, const uint8_t *packed, size_t bytes,
                                 const float *gamma, const float *bias, const char *layer, rq_err *err) {
    if (!L || !L->w || !L->q || !packed || !gamma)
        return rq_err_set(err, RQ_EINVAL, "qlinear set_integer: NULL argument or no quantizer attached");
    rq_qlinear *q = L->q;
    int out = L->w->shape[0], in = (int)(L->w->n / out);
    if (!q->w_ternary) return rq_err_set(err, RQ_EINVAL, "layer %s: integer form needs ternary weights", layer);
    if (q->a_bits >= 1) {
        q->tl = calloc(1, sizeof *q->tl);
        if (!q->tl) return rq_err_set(err, RQ_ENOMEM, "layer %s: out of memory", layer);
        if (rq_tlinear_init_packed(q->tl, out, in, (rq_tpack_format)fmt, packed, bytes, gamma, bias, q->a_bits,
                                   q->a_method, q->hadamard, err)) {
            free(q->tl);
            q->tl = NULL;
            return err->code;
        }
        return RQ_OK;
    }
    /* fp activations: no integer GEMM, keep W' dequantized */
    int8_t *codes = malloc((size_t)out * in);
    q->wq = rq_malloc((size_t)out * in * sizeof(float));
    rq_status s = (!codes || !q->wq) ? rq_err_set(err, RQ_ENOMEM, "layer %s: out of memory", layer) : RQ_OK;
    size_t want = fmt == RQ_TPACK_TRIT5 ? rq_trit5_bytes(out, in) : rq_t2_bytes(out, in);
    if (!s && bytes != want)
        s = rq_err_set(err, RQ_EFORMAT, "layer %s: %zu packed bytes, expected %zu", layer, bytes, want);
    if (!s)
        s = fmt == RQ_TPACK_TRIT5 ? rq_trit5_unpack(packed, out, in, codes, err) : rq_t2_unpack(packed, out, in, codes, err);
    if (!s) s = rq_ternary_decode(codes, gamma, q->wq, out, in, err);
    free(codes);
    if (s) {
        rq_free(q->wq);
        q->wq = NULL;
    }
    return s;
}

/* A parameter used as-is on the tape (data and grad aliased). */
static rq_tensor *lowrank_view(rq_graph *g, rq_tensor *p) {
    rq_tensor *v = rq_tensor_wrap(g, p->data, 2, p->shape);
    if (v) v->grad = p->grad, v->requires_grad = p->requires_grad;
    return v;
}

/* Forward of an exported layer (no tape: integer layers have no backward). */
static rq_tensor *qlinear_integer_forward(rq_graph *g, rq_dit_linear *L, rq_tensor *x, int out, int in) {
    rq_qlinear *q = L->q;
    if (rq_needs_grad(g, 1, &x))
        return rq_graph_fail(g, RQ_EINVAL, "%s: exported (integer) layers run forward only", L->w->name);
    if (x->shape[x->ndim - 1] != in) {
        char sx[64];
        return rq_graph_fail(g, RQ_ESHAPE, "%s: input %s, expected last dim %d", L->w->name, rq_shape_str(x, sx, 64), in);
    }
    if (q->wq) { /* fp activations */
        rq_tensor *w = rq_tensor_wrap(g, q->wq, 2, (int[]){out, in});
        if (q->hadamard) x = rq_hadamard_op(g, x, &q->had);
        rq_tensor *y = rq_linear(g, x, w, L->b);
        if (L->lr_a) y = rq_add(g, y, rq_linear(g, rq_linear(g, x, lowrank_view(g, L->lr_b), NULL), lowrank_view(g, L->lr_a), NULL));
        return y;
    }
    int shape[4];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    rq_tensor *y = rq_tensor_arena(g, x->ndim, shape);
    if (!y) return NULL;
    rq_err e = {0};
    if (rq_tlinear_forward(q->tl, x->data, y->data, x->n / in, &e)) return rq_graph_fail(g, e.code, "%s: %s", L->w->name, e.msg);
    if (L->lr_a) { /* fp32 low-rank branch on the rotated, unquantized x */
        rq_tensor *xh = q->hadamard ? rq_hadamard_op(g, x, &q->had) : x;
        y = rq_add(g, y, rq_linear(g, rq_linear(g, xh, lowrank_view(g, L->lr_b), NULL), lowrank_view(g, L->lr_a), NULL));
    }
    return y;
}

rq_tensor *rq_qlinear_forward(rq_graph *g, rq_dit_linear *L, rq_tensor *x) {
    if (!g || !rq_graph_ok(g)) return NULL;
    if (!L || !L->w || !x) return rq_graph_fail(g, RQ_EINVAL, "qlinear: NULL argument");
    rq_qlinear *q = L->q;
    int out = L->w->shape[0], in = (int)(L->w->n / out);
    if (q && (q->tl || q->wq)) return qlinear_integer_forward(g, L, x, out, in);
    /* 2-D view aliasing the parameter (the embedder's weight is [D,C,p,p]) */
    rq_tensor *w = rq_tensor_wrap(g, L->w->data, 2, (int[]){out, in});
    if (!w) return NULL;
    w->grad = L->w->grad;
    w->requires_grad = L->w->requires_grad;
    if (!q) return rq_linear(g, x, w, L->b);
    /* Three forms, same values: the integer product (ternary weights and
     * quantized activations), the rotation fused with the STE quantizers
     * (any other Hadamard layer without low-rank), and op by op (low-rank). */
    rq_actq_cfg c = {q->a_bits, q->a_method};
    if (!L->lr_a && q->a_bits && q->w_ternary && in % 4 == 0 && in <= RQ_TGEMM_MAX_K)
        return qlinear_codes_forward(g, L, x, w, out, in);
    if (q->hadamard && !L->lr_a) { /* rotation fused with the quantizers: one pass, no x H copy */
        if (q->a_bits) x = rq_rotate_ste(g, x, &q->had, rq_actq_rowwise, &c, 1, "rot_act_quant");
        else x = rq_hadamard_op(g, x, &q->had);
        w = q->w_ternary ? rq_rotate_ste(g, w, &q->had, rq_ternary_rowwise, NULL, 0, "rot_ternary")
                         : rq_hadamard_op(g, w, &q->had);
        return rq_linear(g, x, w, L->b);
    }
    if (q->hadamard) {
        x = rq_hadamard_op(g, x, &q->had);
        w = rq_hadamard_op(g, w, &q->had);
    }
    rq_tensor *x_fp = x, *a = NULL, *b = NULL;
    if (L->lr_a) { /* ternary residual W' - sg(A B); see qlinear.h */
        a = lowrank_view(g, L->lr_a), b = lowrank_view(g, L->lr_b);
        w = rq_add(g, w, rq_scale(g, rq_matmul(g, rq_detach(g, a), rq_detach(g, b)), -1.0f));
    }
    if (q->a_bits) x = rq_ste(g, x, rq_actq_rowwise, &c, 1, "act_quant");
    if (q->w_ternary) w = rq_ste(g, w, rq_ternary_rowwise, NULL, 0, "ternary");
    rq_tensor *y = rq_linear(g, x, w, L->b);
    if (L->lr_a) y = rq_add(g, y, rq_linear(g, rq_linear(g, x_fp, b, NULL), a, NULL));
    return y;
}

/* ---------------------------------------------------------- model wiring */

rq_status rq_precision_map_read(const char *path, rq_dit *m, int *bits, rq_err *err) {
    if (!path || !m || !bits) return rq_err_set(err, RQ_EINVAL, "precision map: NULL argument");
    rq_dit_linear *ls[1024];
    const char *names[1024];
    int n = rq_dit_linears(m, ls, names, 1024);
    for (int i = 0; i < n; i++) bits[i] = -1;
    FILE *f = fopen(path, "r");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open precision map", path);
    char line[512];
    int lineno = 0;
    rq_status st = RQ_OK;
    while (!st && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char name[256], extra[8];
        int b;
        int k = sscanf(line, "%255s %d %7s", name, &b, extra);
        if (k <= 0) continue; /* blank or comment */
        if (k != 2) {
            st = rq_err_set(err, RQ_EFORMAT, "%s:%d: expected '<layer> <bits>'", path, lineno);
            break;
        }
        if (b < 1 || b > 8) {
            st = rq_err_set(err, RQ_EFORMAT, "%s:%d: bits %d for %s outside 1..8", path, lineno, b, name);
            break;
        }
        /* accept "blocks.0.attn.qkv" or its ".weight" parameter name */
        int found = -1;
        for (int i = 0; i < n; i++) {
            size_t len = strlen(name);
            if (!strncmp(names[i], name, len) && (!strcmp(names[i] + len, ".weight") || !names[i][len])) found = i;
        }
        if (found < 0) {
            st = rq_err_set(err, RQ_EFORMAT, "%s:%d: no linear layer named '%s' in this model", path, lineno, name);
            break;
        }
        bits[found] = b;
    }
    fclose(f);
    return st;
}

/* Which linears the options quantize (rq_dit_quantize and the low-rank
 * branch agree through this). */
static int layer_quantized(const char *k, const rq_quant_opts *o) {
    int in_block = !strcmp(k, "qkv") || !strcmp(k, "proj") || !strcmp(k, "fc1") || !strcmp(k, "fc2");
    return o->enabled && (in_block || !strcmp(k, "adaLN") || (o->quantize_embedder && !strcmp(k, "embed")) ||
                          (o->quantize_final && !strcmp(k, "final")));
}

rq_status rq_dit_add_lowrank(rq_dit *m, const rq_quant_opts *o, rq_err *err) {
    if (!m || !o) return rq_err_set(err, RQ_EINVAL, "add_lowrank: NULL argument");
    if (o->lowrank_rank <= 0 || !o->enabled || !o->weight_ternary) return RQ_OK;
    rq_dit_linear *ls[1024];
    const char *names[1024];
    int n = rq_dit_linears(m, ls, names, 1024), r = o->lowrank_rank;
    for (int i = 0; i < n && i < 1024; i++) {
        rq_dit_linear *L = ls[i];
        if (!layer_quantized(L->kind, o) || L->lr_a || (!strcmp(L->kind, "adaLN") && o->adaln_weight_fp)) continue;
        int out = L->w->shape[0], in = (int)(L->w->n / out);
        if (r > out || r > in)
            return rq_err_set(err, RQ_EINVAL, "quant.lowrank_rank %d exceeds %s's size %d x %d", r, names[i], out, in);
        char base[96], name[128];
        rq_dit_layer_name(names[i], base, sizeof base);
        snprintf(name, sizeof name, "%s.lowrank_A", base);
        rq_tensor *a = rq_tensor_new(2, (int[]){out, r}, 1, name);
        snprintf(name, sizeof name, "%s.lowrank_B", base);
        rq_tensor *b = rq_tensor_new(2, (int[]){r, in}, 1, name);
        if (!a || !b) {
            rq_tensor_free(a), rq_tensor_free(b);
            return rq_err_set(err, RQ_ENOMEM, "out of memory for the low-rank branch of %s", base);
        }
        if (rq_dit_add_param(m, a, err)) {
            rq_tensor_free(a), rq_tensor_free(b);
            return err->code;
        }
        if (rq_dit_add_param(m, b, err)) {
            rq_tensor_free(b);
            return err->code;
        }
        L->lr_a = a, L->lr_b = b;
    }
    return RQ_OK;
}

rq_status rq_dit_lowrank_init(rq_dit *m, rq_err *err) {
    if (!m) return rq_err_set(err, RQ_EINVAL, "lowrank_init: NULL model");
    rq_dit_linear *ls[1024];
    int n = rq_dit_linears(m, ls, NULL, 1024);
    for (int i = 0; i < n && i < 1024; i++) {
        rq_dit_linear *L = ls[i];
        if (!L->lr_a) continue;
        int out = L->w->shape[0], in = (int)(L->w->n / out), r = L->lr_a->shape[1];
        float *wh = rq_malloc((size_t)L->w->n * sizeof(float)), *s = malloc((size_t)r * sizeof(float));
        if (!wh || !s) {
            rq_free(wh), free(s);
            return rq_err_set(err, RQ_ENOMEM, "lowrank_init: out of memory");
        }
        memcpy(wh, L->w->data, (size_t)L->w->n * sizeof(float));
        if (L->q && L->q->hadamard) rq_hadamard_apply(&L->q->had, wh, out); /* W' = W H */
        rq_status st = rq_svd_lowrank(wh, out, in, r, 2, 0x5eed + (uint64_t)i, L->lr_a->data, s, L->lr_b->data, err);
        /* balanced split: A = U S^1/2, B = S^1/2 V^T */
        for (int c = 0; !st && c < r; c++) {
            float h = sqrtf(s[c]);
            for (int o = 0; o < out; o++) L->lr_a->data[(long)o * r + c] *= h;
            for (int k = 0; k < in; k++) L->lr_b->data[(long)c * in + k] *= h;
        }
        rq_free(wh), free(s);
        if (st) return st;
    }
    return RQ_OK;
}

rq_status rq_dit_quantize(rq_dit *m, const rq_quant_opts *o, rq_err *err) {
    if (!m || !o) return rq_err_set(err, RQ_EINVAL, "quantize: NULL argument");
    m->attn_bits = o->enabled ? o->attn_bits : 0, m->attn_method = RQ_ACTQ_MINMAX; /* ops.h: why min-max */
    rq_dit_linear *ls[1024];
    const char *names[1024];
    int n = rq_dit_linears(m, ls, names, 1024);
    int map[1024];
    if (o->enabled && o->precision_map && o->precision_map[0]) {
        if (rq_precision_map_read(o->precision_map, m, map, err)) return err->code;
    } else {
        for (int i = 0; i < n; i++) map[i] = -1;
    }
    for (int i = 0; i < n; i++) {
        rq_dit_linear *L = ls[i];
        const char *k = L->kind;
        int adaln = !strcmp(k, "adaLN");
        if (!layer_quantized(k, o)) {
            rq_qlinear_detach(L);
            continue;
        }
        rq_qlinear q = {0};
        q.w_ternary = o->weight_ternary && !(adaln && o->adaln_weight_fp);
        q.a_method = o->method;
        q.a_bits = adaln ? o->adaln_act_bits : o->act_bits;
        if (map[i] > 0) q.a_bits = map[i];
        if (!strcmp(k, "embed") || !strcmp(k, "final")) q.a_bits = map[i] > 0 ? map[i] : o->act_bits;
        q.hadamard = o->hadamard && q.a_bits > 0 &&
                     (!o->hadamard_proj_fc2_only || !strcmp(k, "proj") || !strcmp(k, "fc2"));
        if (rq_qlinear_attach(L, &q, names[i], err)) return err->code;
    }
    return RQ_OK;
}
