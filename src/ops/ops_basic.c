/* ops_basic.c: linear algebra, elementwise, shape and reduction ops. */
#include <math.h>
#include <string.h>

#include "ops_internal.h"
#include "robuq/fastmath.h"
#include "robuq/gemm.h"
#include "robuq/tgemm.h"

/* ------------------------------------------------------------------ linear */

/* db[j] += sum_r dy[r, j], each column summed in row order. Blocks of 16
 * columns walk down the rows together (one vector per row), so dy is read
 * once, in cache lines, instead of once per column with a stride. */
#define DB_COLS 16
RQ_TARGET_CLONES static void bias_grad_block(const float *dy, long rows, int out, int j0, int nj, float *db) {
    float acc[DB_COLS] = {0};
    if (nj == DB_COLS) {
        for (long r = 0; r < rows; r++)
            for (int j = 0; j < DB_COLS; j++) acc[j] += dy[r * out + j0 + j];
    } else {
        for (long r = 0; r < rows; r++)
            for (int j = 0; j < nj; j++) acc[j] += dy[r * out + j0 + j];
    }
    for (int j = 0; j < nj; j++) db[j0 + j] += acc[j];
}

static void bias_grad(const float *dy, long rows, int out, float *db) {
    const int nb = (out + DB_COLS - 1) / DB_COLS;
#pragma omp parallel for schedule(static) if (rows * out >= (1L << 15))
    for (int b = 0; b < nb; b++)
        bias_grad_block(dy, rows, out, b * DB_COLS, out - b * DB_COLS < DB_COLS ? out - b * DB_COLS : DB_COLS, db);
}

static void linear_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    int in = w->shape[1], out = w->shape[0];
    long rows = x->n / in;
    const float *dy = y->grad;
    float *dx = in_grad(g, x), *dw = in_grad(g, w), *db = in_grad(g, b);
    if (dx) rq_sgemm(0, 0, (int)rows, in, out, 1.0f, dy, out, w->data, in, 1.0f, dx, in);
    if (dw) rq_sgemm(1, 0, out, in, (int)rows, 1.0f, dy, out, x->data, in, 1.0f, dw, in);
    if (db) bias_grad(dy, rows, out, db);
}

/* Shape check and output [..., out] of a linear; NULL (error set) if the
 * shapes do not agree. */
static rq_tensor *linear_out(rq_graph *g, const char *op, rq_tensor *x, rq_tensor *w, rq_tensor *b) {
    if (w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1] || (b && (b->n != w->shape[0])))
        return rq_graph_fail(g, RQ_ESHAPE, "%s: x %s, weight %s, bias %s do not agree", op, SHAPE(x), SHAPE(w),
                             b ? SHAPE(b) : "none");
    int shape[RQ_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    return rq_tensor_arena(g, x->ndim, shape);
}

/* Records the linear node (both forwards share the backward). */
static rq_tensor *linear_push(rq_graph *g, rq_tensor *x, rq_tensor *w, rq_tensor *b, rq_tensor *y) {
    rq_tensor *ins[] = {x, w, b};
    if (rq_needs_grad(g, 3, ins)) {
        rq_node *n = rq_graph_push(g, "linear", linear_backward, y);
        if (!n) return NULL;
        n->in[0] = x, n->in[1] = w, n->in[2] = b;
    }
    return y;
}

rq_tensor *rq_linear(rq_graph *g, rq_tensor *x, rq_tensor *w, rq_tensor *b) {
    OP_BEGIN(g, "linear", x, w);
    rq_tensor *y = linear_out(g, "linear", x, w, b);
    if (!y) return NULL;
    int in = w->shape[1], out = w->shape[0];
    long rows = x->n / in;
    rq_sgemm(0, 1, (int)rows, out, in, 1.0f, x->data, in, w->data, in, 0.0f, y->data, out);
    if (b) {
#pragma omp parallel for schedule(static)
        for (long r = 0; r < rows; r++)
            for (int j = 0; j < out; j++) y->data[r * out + j] += b->data[j];
    }
    return linear_push(g, x, w, b, y);
}

rq_tensor *rq_linear_codes(rq_graph *g, rq_tensor *xq, rq_tensor *wq, rq_tensor *b, const int8_t *x_codes,
                           const float *x_unit, const uint8_t *w_t2, const float *w_gamma) {
    OP_BEGIN(g, "linear", xq, wq);
    if (!x_codes || !x_unit || !w_t2 || !w_gamma) return rq_graph_fail(g, RQ_EINVAL, "linear_codes: NULL codes");
    rq_tensor *y = linear_out(g, "linear_codes", xq, wq, b);
    if (!y) return NULL;
    int in = wq->shape[1], out = wq->shape[0];
    rq_err e = {0};
    if (rq_tgemm_scaled((int)(xq->n / in), out, in, x_codes, in, w_t2, x_unit, w_gamma, b ? b->data : NULL, y->data,
                        out, &e))
        return rq_graph_fail(g, e.code, "linear_codes: %s", e.msg);
    return linear_push(g, xq, wq, b, y);
}

/* ------------------------------------------------------------------ matmul */

static void matmul_dims(const rq_tensor *a, const rq_tensor *b, int *B, int *M, int *K, int *N) {
    *B = a->ndim == 3 ? a->shape[0] : 1;
    *M = a->shape[a->ndim - 2];
    *K = a->shape[a->ndim - 1];
    *N = b->shape[b->ndim - 1];
}

static void matmul_backward(rq_graph *g, rq_node *n) {
    rq_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    int B, M, K, N;
    matmul_dims(a, b, &B, &M, &K, &N);
    float *da = in_grad(g, a), *db = in_grad(g, b);
    for (int i = 0; i < B; i++) {
        const float *dc = c->grad + (long)i * M * N;
        if (da) rq_sgemm(0, 1, M, K, N, 1.0f, dc, N, b->data + (long)i * K * N, N, 1.0f,
                         da + (long)i * M * K, K);
        if (db) rq_sgemm(1, 0, K, N, M, 1.0f, a->data + (long)i * M * K, K, dc, N, 1.0f,
                         db + (long)i * K * N, N);
    }
}

rq_tensor *rq_matmul(rq_graph *g, rq_tensor *a, rq_tensor *b) {
    OP_BEGIN(g, "matmul", a, b);
    int ok = (a->ndim == 2 && b->ndim == 2) ||
             (a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0]);
    if (!ok || a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return rq_graph_fail(g, RQ_ESHAPE, "matmul: %s @ %s do not agree", SHAPE(a), SHAPE(b));
    int B, M, K, N;
    matmul_dims(a, b, &B, &M, &K, &N);
    int shape3[3] = {B, M, N};
    rq_tensor *c = a->ndim == 3 ? rq_tensor_arena(g, 3, shape3) : rq_tensor_arena(g, 2, shape3 + 1);
    if (!c) return NULL;
    for (int i = 0; i < B; i++)
        rq_sgemm(0, 0, M, N, K, 1.0f, a->data + (long)i * M * K, K, b->data + (long)i * K * N, N,
                 0.0f, c->data + (long)i * M * N, N);
    rq_tensor *ins[] = {a, b};
    if (rq_needs_grad(g, 2, ins)) {
        rq_node *n = rq_graph_push(g, "matmul", matmul_backward, c);
        if (!n) return NULL;
        n->in[0] = a, n->in[1] = b;
    }
    return c;
}

/* ------------------------------------------------------ broadcast add / mul */

/* Right-aligned numpy broadcasting over at most 4 dims. For each input we
 * keep the element stride per output dim (0 where the input is broadcast). */
typedef struct {
    int shape[4];
    long sa[4], sb[4];
} bcast;

static int bcast_plan(const rq_tensor *a, const rq_tensor *b, int *ndim, bcast *p) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    long ra = 1, rb = 1;
    for (int i = 3; i >= 0; i--) {
        int od = i - (4 - nd); /* index into the nd-dim output */
        int ia = od - (nd - a->ndim), ib = od - (nd - b->ndim);
        int da = (od >= 0 && ia >= 0) ? a->shape[ia] : 1;
        int db = (od >= 0 && ib >= 0) ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) return 0;
        p->shape[i] = da > db ? da : db;
        if (da == 0 || db == 0) p->shape[i] = 0;
        p->sa[i] = (da == 1) ? 0 : ra;
        p->sb[i] = (db == 1) ? 0 : rb;
        ra *= da;
        rb *= db;
    }
    *ndim = nd;
    return 1;
}

typedef enum { EW_ADD, EW_MUL } ew_kind;

/* Below this many outputs the broadcast loop stays on one thread. */
#define EW_PAR_WORK (1L << 16)

static void ew_forward(const bcast *p, ew_kind k, const float *a, const float *b, float *c) {
    const long n = (long)p->shape[0] * p->shape[1] * p->shape[2] * p->shape[3];
#pragma omp parallel for collapse(3) schedule(static) if (n >= EW_PAR_WORK)
    for (int d0 = 0; d0 < p->shape[0]; d0++)
        for (int d1 = 0; d1 < p->shape[1]; d1++)
            for (int d2 = 0; d2 < p->shape[2]; d2++) {
                long oa = d0 * p->sa[0] + d1 * p->sa[1] + d2 * p->sa[2];
                long ob = d0 * p->sb[0] + d1 * p->sb[1] + d2 * p->sb[2];
                long i = (((long)d0 * p->shape[1] + d1) * p->shape[2] + d2) * p->shape[3];
                for (int d3 = 0; d3 < p->shape[3]; d3++, i++) {
                    float x = a[oa + d3 * p->sa[3]], y = b[ob + d3 * p->sb[3]];
                    c[i] = k == EW_ADD ? x + y : x * y;
                }
            }
}

/* dst (shape of one input) += dc * other, summed over broadcast dims. */
static void ew_backward(const bcast *p, const long *sdst, const long *soth, const float *dc,
                        const float *other, float *dst) {
    long i = 0;
    for (int d0 = 0; d0 < p->shape[0]; d0++)
        for (int d1 = 0; d1 < p->shape[1]; d1++)
            for (int d2 = 0; d2 < p->shape[2]; d2++) {
                long od = d0 * sdst[0] + d1 * sdst[1] + d2 * sdst[2];
                long oo = d0 * soth[0] + d1 * soth[1] + d2 * soth[2];
                for (int d3 = 0; d3 < p->shape[3]; d3++, i++)
                    dst[od + d3 * sdst[3]] += dc[i] * (other ? other[oo + d3 * soth[3]] : 1.0f);
            }
}

static void ew_backward_node(rq_graph *g, rq_node *n) {
    rq_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    ew_kind k = (ew_kind)n->iarg[0];
    float *da = in_grad(g, a), *db = in_grad(g, b);
    if (rq_same_shape(a, b)) { /* the common case: plain parallel loops */
#pragma omp parallel for schedule(static)
        for (long i = 0; i < c->n; i++) {
            if (da) da[i] += c->grad[i] * (k == EW_MUL ? b->data[i] : 1.0f);
            if (db) db[i] += c->grad[i] * (k == EW_MUL ? a->data[i] : 1.0f);
        }
        return;
    }
    bcast p;
    int nd;
    bcast_plan(a, b, &nd, &p);
    if (da) ew_backward(&p, p.sa, p.sb, c->grad, k == EW_MUL ? b->data : NULL, da);
    if (db) ew_backward(&p, p.sb, p.sa, c->grad, k == EW_MUL ? a->data : NULL, db);
}

static rq_tensor *elementwise(rq_graph *g, rq_tensor *a, rq_tensor *b, ew_kind k) {
    const char *op = k == EW_ADD ? "add" : "mul";
    OP_BEGIN(g, op, a, b);
    bcast p;
    int nd;
    if (!bcast_plan(a, b, &nd, &p))
        return rq_graph_fail(g, RQ_ESHAPE, "%s: shapes %s and %s do not broadcast", op, SHAPE(a),
                             SHAPE(b));
    rq_tensor *c = rq_tensor_arena(g, nd, p.shape + (4 - nd));
    if (!c) return NULL;
    if (rq_same_shape(a, b)) {
#pragma omp parallel for schedule(static)
        for (long i = 0; i < c->n; i++)
            c->data[i] = k == EW_ADD ? a->data[i] + b->data[i] : a->data[i] * b->data[i];
    } else {
        ew_forward(&p, k, a->data, b->data, c->data);
    }
    rq_tensor *ins[] = {a, b};
    if (rq_needs_grad(g, 2, ins)) {
        rq_node *n = rq_graph_push(g, op, ew_backward_node, c);
        if (!n) return NULL;
        n->in[0] = a, n->in[1] = b, n->iarg[0] = k;
    }
    return c;
}

rq_tensor *rq_add(rq_graph *g, rq_tensor *a, rq_tensor *b) { return elementwise(g, a, b, EW_ADD); }
rq_tensor *rq_mul(rq_graph *g, rq_tensor *a, rq_tensor *b) { return elementwise(g, a, b, EW_MUL); }

static void scale_backward(rq_graph *g, rq_node *n) {
    float *dx = in_grad(g, n->in[0]), s = n->farg[0];
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n->out->n; i++) dx[i] += s * n->out->grad[i];
}

rq_tensor *rq_scale(rq_graph *g, rq_tensor *x, float s) {
    OP_BEGIN(g, "scale", x);
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < x->n; i++) y->data[i] = s * x->data[i];
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "scale", scale_backward, y);
        if (!n) return NULL;
        n->in[0] = x, n->farg[0] = s;
    }
    return y;
}

/* ----------------------------------------------------------- shape / copy */

static void copy_backward(rq_graph *g, rq_node *n) {
    float *dx = in_grad(g, n->in[0]);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n->out->n; i++) dx[i] += n->out->grad[i];
}

rq_tensor *rq_reshape(rq_graph *g, rq_tensor *x, int ndim, const int *shape) {
    OP_BEGIN(g, "reshape", x);
    if (ndim < 1 || ndim > RQ_MAX_DIMS || !shape || rq_shape_numel(ndim, shape) != x->n)
        return rq_graph_fail(g, RQ_ESHAPE, "reshape: %s cannot become a %d-d shape of %ld elements",
                             SHAPE(x), ndim, shape ? rq_shape_numel(ndim, shape) : -1L);
    /* A view: shares data; the gradient is copied back in backward. */
    rq_tensor *y = rq_tensor_wrap(g, x->data, ndim, shape);
    if (!y) return NULL;
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "reshape", copy_backward, y);
        if (!n) return NULL;
        n->in[0] = x;
    }
    return y;
}

rq_tensor *rq_detach(rq_graph *g, rq_tensor *x) {
    OP_BEGIN(g, "detach", x);
    return rq_tensor_wrap(g, x->data, x->ndim, x->shape);
}

static void slice_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *y = n->out;
    float *dx = in_grad(g, x);
    long outer = n->iarg[0], len = n->iarg[1], start = n->iarg[2], dimlen = n->iarg[3];
    long inner = y->n / (outer * len);
#pragma omp parallel for schedule(static)
    for (long o = 0; o < outer; o++) {
        const float *src = y->grad + o * len * inner;
        float *dst = dx + (o * dimlen + start) * inner;
        for (long i = 0; i < len * inner; i++) dst[i] += src[i];
    }
}

rq_tensor *rq_slice(rq_graph *g, rq_tensor *x, int dim, int start, int len) {
    OP_BEGIN(g, "slice", x);
    if (dim < 0 || dim >= x->ndim || start < 0 || len < 0 || start + len > x->shape[dim])
        return rq_graph_fail(g, RQ_EINVAL, "slice: dim %d [%d, %d) out of range for %s", dim, start,
                             start + len, SHAPE(x));
    int shape[RQ_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    rq_tensor *y = rq_tensor_arena(g, x->ndim, shape);
    if (!y) return NULL;
    long outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    for (long o = 0; o < outer; o++)
        memcpy(y->data + o * len * inner, x->data + (o * x->shape[dim] + start) * inner,
               (size_t)(len * inner) * sizeof(float));
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "slice", slice_backward, y);
        if (!n) return NULL;
        n->in[0] = x;
        n->iarg[0] = (int)outer, n->iarg[1] = len, n->iarg[2] = start, n->iarg[3] = x->shape[dim];
    }
    return y;
}

/* patchify: img[N,C,H,W] -> tok[N,T,C*p*p], vector order (c, pi, pj) so that
 * a conv weight [D,C,p,p] flattens to the matching linear weight [D,C*p*p].
 * unpatchify: tok[N,T,p*p*C] in order (pi, pj, c) -> img[N,C,H,W] (DiT's
 * final layer layout). Both are pure permutations; 'dir' picks which way. */
static void patch_permute(const float *src, float *dst, int N, int C, int H, int W, int p,
                          int to_tokens, int c_fastest, int accumulate) {
    int gw = W / p, T = (H / p) * gw, P = C * p * p;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int tok = 0; tok < T; tok++) {
            int gi = tok / gw, gj = tok % gw;
            for (int c = 0; c < C; c++)
                for (int pi = 0; pi < p; pi++)
                    for (int pj = 0; pj < p; pj++) {
                        long img = (((long)n * C + c) * H + gi * p + pi) * W + gj * p + pj;
                        int v = c_fastest ? (pi * p + pj) * C + c : (c * p + pi) * p + pj;
                        long tk = ((long)n * T + tok) * P + v;
                        if (to_tokens) {
                            if (accumulate) dst[tk] += src[img]; else dst[tk] = src[img];
                        } else {
                            if (accumulate) dst[img] += src[tk]; else dst[img] = src[tk];
                        }
                    }
        }
}

static void patchify_backward(rq_graph *g, rq_node *n) {
    rq_tensor *img = n->in[0];
    float *dimg = in_grad(g, img);
    patch_permute(n->out->grad, dimg, img->shape[0], img->shape[1], img->shape[2], img->shape[3],
                  n->iarg[0], 0, 0, 1);
}

rq_tensor *rq_patchify(rq_graph *g, rq_tensor *img, int p) {
    OP_BEGIN(g, "patchify", img);
    if (img->ndim != 4 || p < 1 || img->shape[2] % p || img->shape[3] % p)
        return rq_graph_fail(g, RQ_ESHAPE, "patchify: image %s not divisible by patch %d", SHAPE(img), p);
    int N = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3];
    int shape[3] = {N, (H / p) * (W / p), C * p * p};
    rq_tensor *y = rq_tensor_arena(g, 3, shape);
    if (!y) return NULL;
    patch_permute(img->data, y->data, N, C, H, W, p, 1, 0, 0);
    if (rq_needs_grad(g, 1, &img)) {
        rq_node *n = rq_graph_push(g, "patchify", patchify_backward, y);
        if (!n) return NULL;
        n->in[0] = img, n->iarg[0] = p;
    }
    return y;
}

static void unpatchify_backward(rq_graph *g, rq_node *n) {
    rq_tensor *tok = n->in[0], *img = n->out;
    float *dtok = in_grad(g, tok);
    patch_permute(img->grad, dtok, img->shape[0], img->shape[1], img->shape[2], img->shape[3],
                  n->iarg[0], 1, 1, 1);
}

rq_tensor *rq_unpatchify(rq_graph *g, rq_tensor *tok, int p, int C, int H, int W) {
    OP_BEGIN(g, "unpatchify", tok);
    if (tok->ndim != 3 || p < 1 || H % p || W % p || tok->shape[1] != (H / p) * (W / p) ||
        tok->shape[2] != p * p * C)
        return rq_graph_fail(g, RQ_ESHAPE, "unpatchify: tokens %s do not make [%d,%d,%d] with patch %d",
                             SHAPE(tok), C, H, W, p);
    int shape[4] = {tok->shape[0], C, H, W};
    rq_tensor *y = rq_tensor_arena(g, 4, shape);
    if (!y) return NULL;
    patch_permute(tok->data, y->data, shape[0], C, H, W, p, 0, 1, 0);
    if (rq_needs_grad(g, 1, &tok)) {
        rq_node *n = rq_graph_push(g, "unpatchify", unpatchify_backward, y);
        if (!n) return NULL;
        n->in[0] = tok, n->iarg[0] = p;
    }
    return y;
}

/* -------------------------------------------------------------- embedding */

static void embedding_backward(rq_graph *g, rq_node *n) {
    rq_tensor *table = n->in[0], *y = n->out;
    float *dt = in_grad(g, table);
    const int *idx = n->saved;
    int D = table->shape[1];
    for (int i = 0; i < y->shape[0]; i++)
        for (int d = 0; d < D; d++) dt[(long)idx[i] * D + d] += y->grad[(long)i * D + d];
}

rq_tensor *rq_embedding(rq_graph *g, rq_tensor *table, const int *idx, int n) {
    OP_BEGIN(g, "embedding", table);
    if (table->ndim != 2 || !idx || n < 1)
        return rq_graph_fail(g, RQ_EINVAL, "embedding: table %s, %d indices", SHAPE(table), n);
    int V = table->shape[0], D = table->shape[1];
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= V)
            return rq_graph_fail(g, RQ_EINVAL, "embedding: index %d = %d outside table of %d rows", i,
                                 idx[i], V);
    int shape[2] = {n, D};
    rq_tensor *y = rq_tensor_arena(g, 2, shape);
    if (!y) return NULL;
    for (int i = 0; i < n; i++)
        memcpy(y->data + (long)i * D, table->data + (long)idx[i] * D, (size_t)D * sizeof(float));
    if (rq_needs_grad(g, 1, &table)) {
        int *saved = rq_arena_alloc(&g->arena, (size_t)n * sizeof(int));
        if (!saved) return rq_graph_fail(g, RQ_ENOMEM, "embedding: arena out of memory");
        memcpy(saved, idx, (size_t)n * sizeof(int));
        rq_node *nd = rq_graph_push(g, "embedding", embedding_backward, y);
        if (!nd) return NULL;
        nd->in[0] = table, nd->saved = saved;
    }
    return y;
}

/* Frequencies in double, as the reference's float64 dump; DiT computes them
 * in float32, which differs by float rounding only. */
static void timestep_backward(rq_graph *g, rq_node *n) {
    rq_tensor *t = n->in[0], *y = n->out;
    float *dt = in_grad(g, t);
    int dim = y->shape[1], half = dim / 2;
    double lmp = log((double)n->farg[0]);
    for (int i = 0; i < t->n; i++) {
        double s = 0.0;
        for (int k = 0; k < half; k++) {
            double f = exp(-lmp * k / half), a = (double)t->data[i] * f;
            s += -f * sin(a) * y->grad[(long)i * dim + k] + f * cos(a) * y->grad[(long)i * dim + half + k];
        }
        dt[i] += (float)s;
    }
}

rq_tensor *rq_timestep_embedding(rq_graph *g, rq_tensor *t, int dim, float max_period) {
    OP_BEGIN(g, "timestep_embedding", t);
    if (t->ndim != 1 || dim < 2 || !(max_period > 1.0f))
        return rq_graph_fail(g, RQ_EINVAL, "timestep_embedding: t %s, dim %d, max_period %g", SHAPE(t),
                             dim, (double)max_period);
    int shape[2] = {t->shape[0], dim}, half = dim / 2;
    rq_tensor *y = rq_tensor_arena(g, 2, shape);
    if (!y) return NULL;
    double lmp = log((double)max_period);
    for (int i = 0; i < t->shape[0]; i++) {
        float *row = y->data + (long)i * dim;
        for (int k = 0; k < half; k++) {
            double a = (double)t->data[i] * exp(-lmp * k / half);
            row[k] = (float)cos(a);
            row[half + k] = (float)sin(a);
        }
        if (dim % 2) row[dim - 1] = 0.0f; /* odd dim: zero pad, as the reference */
    }
    if (rq_needs_grad(g, 1, &t)) {
        rq_node *n = rq_graph_push(g, "timestep_embedding", timestep_backward, y);
        if (!n) return NULL;
        n->in[0] = t, n->farg[0] = max_period;
    }
    return y;
}

/* ------------------------------------------------------------- reductions */

static void mse_backward(rq_graph *g, rq_node *n) {
    rq_tensor *a = n->in[0], *b = n->in[1];
    float *da = in_grad(g, a), *db = in_grad(g, b);
    float k = 2.0f * n->out->grad[0] / (float)a->n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < a->n; i++) {
        float d = k * (a->data[i] - b->data[i]);
        if (da) da[i] += d;
        if (db) db[i] -= d;
    }
}

rq_tensor *rq_mse(rq_graph *g, rq_tensor *a, rq_tensor *b) {
    OP_BEGIN(g, "mse", a, b);
    if (!rq_same_shape(a, b))
        return rq_graph_fail(g, RQ_ESHAPE, "mse: %s vs %s", SHAPE(a), SHAPE(b));
    rq_tensor *y = rq_tensor_arena(g, 1, (int[]){1});
    if (!y) return NULL;
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (long i = 0; i < a->n; i++) {
        double d = (double)a->data[i] - b->data[i];
        s += d * d;
    }
    y->data[0] = (float)(s / (double)a->n);
    rq_tensor *ins[] = {a, b};
    if (rq_needs_grad(g, 2, ins)) {
        rq_node *n = rq_graph_push(g, "mse", mse_backward, y);
        if (!n) return NULL;
        n->in[0] = a, n->in[1] = b;
    }
    return y;
}

static void reduce_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0];
    float *dx = in_grad(g, x);
    float d = n->out->grad[0] * n->farg[0];
#pragma omp parallel for schedule(static)
    for (long i = 0; i < x->n; i++) dx[i] += d;
}

static rq_tensor *reduce_sum(rq_graph *g, rq_tensor *x, int mean) {
    const char *op = mean ? "mean" : "sum";
    OP_BEGIN(g, op, x);
    if (x->n < 1) return rq_graph_fail(g, RQ_EINVAL, "%s: empty tensor", op);
    rq_tensor *y = rq_tensor_arena(g, 1, (int[]){1});
    if (!y) return NULL;
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (long i = 0; i < x->n; i++) s += x->data[i];
    float k = mean ? 1.0f / (float)x->n : 1.0f;
    y->data[0] = (float)(s * k);
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, op, reduce_backward, y);
        if (!n) return NULL;
        n->in[0] = x, n->farg[0] = k;
    }
    return y;
}

rq_tensor *rq_mean(rq_graph *g, rq_tensor *x) { return reduce_sum(g, x, 1); }
rq_tensor *rq_sum(rq_graph *g, rq_tensor *x) { return reduce_sum(g, x, 0); }

/* -------------------------------------------------- straight-through (STE) */

static void ste_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0];
    float *dx = in_grad(g, x);
    const uint8_t *mask = n->saved;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < x->n; i++) dx[i] += mask ? (mask[i] ? n->out->grad[i] : 0.0f) : n->out->grad[i];
}

rq_tensor *rq_ste(rq_graph *g, rq_tensor *x, rq_rowwise_fn fn, const void *arg, int masked,
                  const char *opname) {
    const char *op = opname ? opname : "ste";
    OP_BEGIN(g, op, x);
    if (!fn) return rq_graph_fail(g, RQ_EINVAL, "%s: NULL quantizer", op);
    rq_tensor *y = out_like(g, x);
    if (!y) return NULL;
    uint8_t *mask = NULL;
    if (masked) {
        mask = rq_arena_alloc(&g->arena, (size_t)x->n);
        if (!mask) return rq_graph_fail(g, RQ_ENOMEM, "%s: arena out of memory", op);
    }
    int row_len = x->shape[x->ndim - 1];
    fn(x->data, y->data, mask, x->n / row_len, row_len, arg);
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, op, ste_backward, y);
        if (!n) return NULL;
        n->in[0] = x, n->saved = mask;
    }
    return y;
}
