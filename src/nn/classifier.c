/* classifier.c: the small ViT feature network of robuq-eval (classifier.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/classifier.h"
#include "robuq/h5io.h"
#include "robuq/ops.h"
#include "robuq/rng.h"

void rq_classifier_default_config(rq_classifier_config *c) {
    if (!c) return;
    *c = (rq_classifier_config){.image_size = 28, .in_channels = 1, .patch_size = 4, .kernel_size = 4,
                                .stem_width = 16, .dim = 64, .depth = 0, .heads = 4, .num_classes = 10,
                                .mlp_ratio = 2, .feat_dim = 128};
}

rq_status rq_classifier_config_check(const rq_classifier_config *c, rq_err *err) {
    if (!c) return rq_err_set(err, RQ_EINVAL, "classifier config: NULL");
#define RANGE(f, lo, hi)                                                                              \
    if (c->f < (lo) || c->f > (hi))                                                                   \
        return rq_err_set(err, RQ_EINVAL, "classifier config: %s = %d, expected %d..%d", #f, c->f, lo, hi);
    RANGE(image_size, 1, 4096)
    RANGE(in_channels, 1, 4)
    RANGE(patch_size, 1, 64)
    RANGE(kernel_size, 1, 128)
    RANGE(stem_width, 0, 4096)
    RANGE(feat_dim, 0, 65536)
    RANGE(dim, 4, 4096)
    RANGE(depth, 0, 64)
    RANGE(heads, 1, 64)
    RANGE(num_classes, 2, 100000)
    RANGE(mlp_ratio, 1, 16)
#undef RANGE
    if (c->image_size % c->patch_size)
        return rq_err_set(err, RQ_EINVAL, "classifier config: image_size %d not divisible by patch_size %d",
                          c->image_size, c->patch_size);
    if (c->stem_width > 0 && (c->patch_size & (c->patch_size - 1)))
        return rq_err_set(err, RQ_EINVAL, "classifier config: the conv stem needs a power-of-2 patch_size, got %d",
                          c->patch_size);
    if (c->stem_width > 0 && (c->patch_size > 64 || (long)c->stem_width << 6 > 1 << 20))
        return rq_err_set(err, RQ_EINVAL, "classifier config: conv stem too large (patch %d, width %d)",
                          c->patch_size, c->stem_width);
    if (c->stem_width == 0 && (c->kernel_size < c->patch_size || (c->kernel_size - c->patch_size) % 2))
        return rq_err_set(err, RQ_EINVAL,
                          "classifier config: kernel_size %d must be >= patch_size %d with an even difference",
                          c->kernel_size, c->patch_size);
    if (c->dim % 4)
        return rq_err_set(err, RQ_EINVAL, "classifier config: dim %d must be a multiple of 4 (sin-cos positions)",
                          c->dim);
    if (c->dim % c->heads)
        return rq_err_set(err, RQ_EINVAL, "classifier config: dim %d not divisible by heads %d", c->dim, c->heads);
    return RQ_OK;
}

static int clf_tokens(const rq_classifier_config *c) {
    int g = c->image_size / c->patch_size;
    return g * g;
}

/* ------------------------------------------------------------------ init */

static rq_status add_param(rq_classifier *m, rq_tensor **slot, int ndim, const int *shape, const char *name,
                           rq_err *err) {
    rq_tensor *t = rq_tensor_new(ndim, shape, 1, name);
    if (!t) return rq_err_set(err, RQ_ENOMEM, "classifier: out of memory for %s", name);
    *slot = t;
    m->params[m->n_params++] = t;
    return RQ_OK;
}

static rq_status add_linear(rq_classifier *m, rq_tensor **w, rq_tensor **b, const char *pre, int out, int in,
                            rq_err *err) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", pre);
    if (add_param(m, w, 2, (int[]){out, in}, name, err)) return err ? err->code : RQ_ENOMEM;
    snprintf(name, sizeof name, "%s.bias", pre);
    return add_param(m, b, 1, (int[]){out}, name, err);
}

static void xavier_uniform(rq_rng *r, rq_tensor *w) {
    double a = sqrt(6.0 / (w->shape[0] + w->shape[1]));
    for (long i = 0; i < w->n; i++) w->data[i] = (float)((2.0 * rq_rng_uniform(r) - 1.0) * a);
}

rq_status rq_classifier_init(rq_classifier *m, const rq_classifier_config *cfg, uint64_t seed, rq_err *err) {
    if (!m) return rq_err_set(err, RQ_EINVAL, "classifier init: NULL model");
    memset(m, 0, sizeof *m);
    if (rq_classifier_config_check(cfg, err)) return err ? err->code : RQ_EINVAL;
    m->cfg = *cfg;
    int D = cfg->dim, C = cfg->in_channels, p = cfg->patch_size, k = cfg->kernel_size, K = cfg->num_classes,
        T = clf_tokens(cfg);
    m->params = calloc((size_t)(6 + 2 * 8 + 8 * cfg->depth), sizeof *m->params);
    m->blocks = calloc((size_t)(cfg->depth > 0 ? cfg->depth : 1), sizeof *m->blocks);
    m->pos = rq_malloc((size_t)T * D * sizeof(float));
    if (!m->params || !m->blocks || !m->pos) {
        rq_err_set(err, RQ_ENOMEM, "classifier: out of memory");
        goto fail;
    }
    rq_pos_embed_2d(m->pos, D, cfg->image_size / p);
    if (cfg->stem_width > 0) {
        /* 3x3 C->w, then log2(p) stride-2 convs doubling the width, the last to D */
        int in = C, out = cfg->stem_width, n_down = 0;
        while ((1 << n_down) < p) n_down++;
        for (int i = 0; i <= n_down; i++) {
            if (i == n_down) out = D;
            char pre[32];
            snprintf(pre, sizeof pre, "stem.%d", i);
            if (add_linear(m, &m->stem_w[i], &m->stem_b[i], pre, out, 9 * in, err)) goto fail;
            m->n_stem = i + 1;
            in = out, out *= 2;
        }
    } else {
        if (add_linear(m, &m->stem_w[0], &m->stem_b[0], "patch_embed", D, C * k * k, err)) goto fail;
        m->n_stem = 1;
    }
    for (int i = 0; i < cfg->depth; i++) {
        rq_classifier_block *b = &m->blocks[i];
        char pre[64];
#define LIN(field, out, in)                                                         \
    snprintf(pre, sizeof pre, "blocks.%d.%s", i, #field);                          \
    if (add_linear(m, &b->field##_w, &b->field##_b, pre, out, in, err)) goto fail;
        LIN(qkv, 3 * D, D)
        LIN(proj, D, D)
        LIN(fc1, D * cfg->mlp_ratio, D)
        LIN(fc2, D, D * cfg->mlp_ratio)
#undef LIN
    }
    int F = D;
    if (cfg->feat_dim > 0) {
        F = cfg->feat_dim;
        if (add_linear(m, &m->fc_w, &m->fc_b, "fc", F, T * D, err)) goto fail;
    }
    if (add_linear(m, &m->head_w, &m->head_b, "head", K, F, err)) goto fail;

    rq_rng rng;
    rq_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_stem; i++) xavier_uniform(&rng, m->stem_w[i]);
    for (int i = 0; i < cfg->depth; i++) {
        rq_classifier_block *b = &m->blocks[i];
        xavier_uniform(&rng, b->qkv_w);
        xavier_uniform(&rng, b->proj_w);
        xavier_uniform(&rng, b->fc1_w);
        xavier_uniform(&rng, b->fc2_w);
    }
    if (m->fc_w) xavier_uniform(&rng, m->fc_w);
    /* head stays zero: every class starts at the same logit (uniform softmax) */
    return RQ_OK;
fail:
    rq_classifier_free(m);
    return err && err->code ? err->code : RQ_ENOMEM;
}

void rq_classifier_free(rq_classifier *m) {
    if (!m) return;
    for (int i = 0; m->params && i < m->n_params; i++) rq_tensor_free(m->params[i]);
    free(m->params);
    free(m->blocks);
    rq_free(m->pos);
    memset(m, 0, sizeof *m);
}

long rq_classifier_num_params(const rq_classifier *m) {
    long n = 0;
    for (int i = 0; m && i < m->n_params; i++) n += m->params[i]->n;
    return n;
}

rq_tensor *rq_classifier_param(const rq_classifier *m, const char *name) {
    for (int i = 0; m && name && i < m->n_params; i++)
        if (!strcmp(m->params[i]->name, name)) return m->params[i];
    return NULL;
}

void rq_classifier_param_view(const rq_classifier *m, rq_dit *view) {
    if (!view) return;
    memset(view, 0, sizeof *view);
    if (!m) return;
    view->params = m->params;
    view->n_params = m->n_params;
}

/* ------------------------------------------------------------------ forward */

static rq_tensor *block_forward(rq_graph *g, const rq_classifier *m, const rq_classifier_block *b, rq_tensor *h) {
    rq_tensor *a = rq_linear(g, rq_layernorm(g, h, 1e-6f), b->qkv_w, b->qkv_b);
    a = rq_linear(g, rq_attention(g, a, m->cfg.heads), b->proj_w, b->proj_b);
    h = rq_add(g, h, a);
    rq_tensor *f = rq_gelu_tanh(g, rq_linear(g, rq_layernorm(g, h, 1e-6f), b->fc1_w, b->fc1_b));
    return rq_add(g, h, rq_linear(g, f, b->fc2_w, b->fc2_b));
}

/* Mean over tokens as a batched matmul with a constant [N,1,T] of 1/T. */
static rq_tensor *mean_tokens(rq_graph *g, rq_tensor *h) {
    if (!h || !rq_graph_ok(g)) return NULL;
    int N = h->shape[0], T = h->shape[1], D = h->shape[2];
    float *w = rq_arena_alloc(&g->arena, (size_t)N * T * sizeof(float));
    if (!w) return rq_graph_fail(g, RQ_ENOMEM, "classifier: arena out of memory");
    for (long i = 0; i < (long)N * T; i++) w[i] = 1.0f / (float)T;
    rq_tensor *P = rq_tensor_wrap(g, w, 3, (int[]){N, 1, T});
    return rq_reshape(g, rq_matmul(g, P, h), 2, (int[]){N, D});
}

/* im2col on channels-last maps: x[N, S*S, C] -> [N, G*G, k*k*C] windows
 * at `stride` with `pad` cells of value padv around, G = (S+2pad-k)/stride+1.
 * Differentiable in x: backward scatter-adds each window back (images are
 * split over threads, so no two threads touch the same dx). */
static void im2col_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0], *y = n->out;
    float *dx = rq_tensor_grad(g, x);
    if (!dx) return;
    int S = n->iarg[0], k = n->iarg[1], st = n->iarg[2], pad = n->iarg[3], G = n->iarg[4];
    int N = x->shape[0], C = x->shape[2], V = k * k * C;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < N; b++)
        for (int t = 0; t < G * G; t++) {
            int y0 = (t / G) * st - pad, x0 = (t % G) * st - pad;
            const float *dy = y->grad + ((long)b * G * G + t) * V;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++, dy += C) {
                    int yy = y0 + i, xx = x0 + j;
                    if (yy < 0 || yy >= S || xx < 0 || xx >= S) continue;
                    float *d = dx + ((long)b * S * S + (long)yy * S + xx) * C;
                    for (int c = 0; c < C; c++) d[c] += dy[c];
                }
        }
}

static rq_tensor *im2col(rq_graph *g, rq_tensor *x, int S, int k, int stride, int pad, float padv) {
    if (!g || !rq_graph_ok(g) || !x) return NULL;
    if (x->ndim != 3 || x->shape[1] != S * S)
        return rq_graph_fail(g, RQ_ESHAPE, "classifier im2col: input %s is not [N,%d,C]",
                             rq_shape_str(x, (char[64]){0}, 64), S * S);
    int N = x->shape[0], C = x->shape[2], G = (S + 2 * pad - k) / stride + 1, V = k * k * C;
    rq_tensor *y = rq_tensor_arena(g, 3, (int[]){N, G * G, V});
    if (!y) return NULL;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < N; b++)
        for (int t = 0; t < G * G; t++) {
            int y0 = (t / G) * stride - pad, x0 = (t % G) * stride - pad;
            float *out = y->data + ((long)b * G * G + t) * V;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++, out += C) {
                    int yy = y0 + i, xx = x0 + j;
                    if (yy < 0 || yy >= S || xx < 0 || xx >= S) {
                        for (int c = 0; c < C; c++) out[c] = padv;
                    } else {
                        memcpy(out, x->data + ((long)b * S * S + (long)yy * S + xx) * C, (size_t)C * sizeof(float));
                    }
                }
        }
    if (rq_needs_grad(g, 1, &x)) {
        rq_node *n = rq_graph_push(g, "im2col", im2col_backward, y);
        if (!n) return NULL;
        n->in[0] = x;
        n->iarg[0] = S, n->iarg[1] = k, n->iarg[2] = stride, n->iarg[3] = pad, n->iarg[4] = G;
    }
    return y;
}

/* image [N,C,S,S] -> tokens [N,T,D] (no gradient to the image itself) */
static rq_tensor *stem_forward(rq_graph *g, const rq_classifier *m, rq_tensor *x) {
    const rq_classifier_config *c = &m->cfg;
    int N = x->shape[0], C = c->in_channels, S = c->image_size;
    rq_tensor *h = rq_tensor_arena(g, 3, (int[]){N, S * S, C}); /* channels-last copy of the image */
    if (!h) return NULL;
    for (int b = 0; b < N; b++)
        for (int ch = 0; ch < C; ch++)
            for (int p = 0; p < S * S; p++) h->data[((long)b * S * S + p) * C + ch] = x->data[((long)b * C + ch) * S * S + p];
    if (c->stem_width == 0) {
        int k = c->kernel_size, p = c->patch_size;
        return rq_linear(g, im2col(g, h, S, k, p, (k - p) / 2, -1.0f), m->stem_w[0], m->stem_b[0]);
    }
    for (int i = 0; i < m->n_stem; i++) {
        int stride = i == 0 ? 1 : 2;
        h = rq_linear(g, im2col(g, h, S, 3, stride, 1, i == 0 ? -1.0f : 0.0f), m->stem_w[i], m->stem_b[i]);
        S = (S + 2 - 3) / stride + 1;
        if (i + 1 < m->n_stem) h = rq_gelu_tanh(g, h);
    }
    return h;
}

rq_tensor *rq_classifier_forward(rq_graph *g, rq_classifier *m, rq_tensor *x, rq_tensor **feat) {
    if (feat) *feat = NULL;
    if (!g || !rq_graph_ok(g)) return NULL;
    if (!m || !x) return rq_graph_fail(g, RQ_EINVAL, "classifier forward: NULL argument");
    const rq_classifier_config *c = &m->cfg;
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] != c->image_size ||
        x->shape[3] != c->image_size)
        return rq_graph_fail(g, RQ_ESHAPE, "classifier forward: input %s, expected [N,%d,%d,%d]",
                             rq_shape_str(x, (char[64]){0}, 64), c->in_channels, c->image_size, c->image_size);
    int T = clf_tokens(c), D = c->dim;
    rq_tensor *h = stem_forward(g, m, x);
    h = rq_add(g, h, rq_tensor_wrap(g, m->pos, 2, (int[]){T, D}));
    for (int i = 0; i < c->depth; i++) h = block_forward(g, m, &m->blocks[i], h);
    rq_tensor *f;
    if (c->feat_dim > 0) /* flatten: the feature sees where things are, not only what */
        f = rq_layernorm(g,
                         rq_gelu_tanh(g, rq_linear(g, rq_reshape(g, h, 2, (int[]){x->shape[0], T * D}), m->fc_w,
                                                   m->fc_b)),
                         1e-6f);
    else
        f = rq_layernorm(g, mean_tokens(g, h), 1e-6f);
    rq_tensor *logits = rq_linear(g, f, m->head_w, m->head_b);
    if (!logits) return NULL;
    if (feat) *feat = f;
    return logits;
}

rq_status rq_classifier_embed(rq_classifier *m, const float *x, long n, int batch, float *feat, float *probs,
                              int *pred, rq_err *err) {
    if (!m || !x || n < 0) return rq_err_set(err, RQ_EINVAL, "classifier embed: bad argument");
    if (batch <= 0) batch = 256;
    const rq_classifier_config *c = &m->cfg;
    long per = (long)c->in_channels * c->image_size * c->image_size;
    int D = rq_classifier_feat_dim(c), K = c->num_classes;
    rq_graph g;
    if (rq_graph_init(&g, (size_t)16 << 20) != RQ_OK) return rq_err_set(err, RQ_ENOMEM, "classifier embed: no memory");
    g.grad_enabled = 0;
    rq_status st = RQ_OK;
    for (long i0 = 0; i0 < n; i0 += batch) {
        int b = (int)(n - i0 < batch ? n - i0 : batch);
        rq_graph_reset(&g);
        rq_tensor *xt = rq_tensor_wrap(&g, (float *)x + i0 * per, 4,
                                       (int[]){b, c->in_channels, c->image_size, c->image_size});
        rq_tensor *f = NULL, *logits = rq_classifier_forward(&g, m, xt, &f);
        if (!logits) {
            st = rq_err_set(err, g.err.code ? g.err.code : RQ_EINVAL, "classifier embed: %s", g.err.msg);
            break;
        }
        if (feat) memcpy(feat + i0 * D, f->data, (size_t)b * D * sizeof(float));
        if (probs) rq_softmax_rows(logits->data, probs + i0 * K, b, K);
        if (pred)
            for (int r = 0; r < b; r++) {
                const float *l = logits->data + (long)r * K;
                int best = 0;
                for (int k = 1; k < K; k++) best = l[k] > l[best] ? k : best;
                pred[i0 + r] = best;
            }
    }
    rq_graph_free(&g);
    return st;
}

rq_status rq_classifier_accuracy(rq_classifier *m, const float *x, const int32_t *labels, long n, int batch,
                                 double *acc, rq_err *err) {
    if (!m || !x || !labels || !acc || n < 1) return rq_err_set(err, RQ_EINVAL, "classifier accuracy: bad argument");
    int *pred = malloc((size_t)n * sizeof(int));
    if (!pred) return rq_err_set(err, RQ_ENOMEM, "classifier accuracy: out of memory");
    rq_status st = rq_classifier_embed(m, x, n, batch, NULL, NULL, pred, err);
    if (st == RQ_OK) {
        long right = 0;
        for (long i = 0; i < n; i++) right += pred[i] == labels[i];
        *acc = (double)right / (double)n;
    }
    free(pred);
    return st;
}

/* ------------------------------------------------------------------ file I/O */

static const char *const CFG_KEYS[] = {"image_size", "in_channels", "patch_size",  "kernel_size", "stem_width",
                                       "dim",        "depth",       "heads",       "num_classes", "mlp_ratio",
                                       "feat_dim"};
#define N_CFG_KEYS 11

static int *cfg_field(rq_classifier_config *c, int i) {
    int *f[N_CFG_KEYS] = {&c->image_size, &c->in_channels, &c->patch_size,  &c->kernel_size, &c->stem_width,
                          &c->dim,        &c->depth,       &c->heads,       &c->num_classes, &c->mlp_ratio,
                          &c->feat_dim};
    return f[i];
}

rq_status rq_classifier_save(const char *path, const rq_classifier *m, const rq_classifier_meta *meta, rq_err *err) {
    if (!path || !m || !m->params) return rq_err_set(err, RQ_EINVAL, "classifier save: NULL argument");
    rq_h5_writer *w = rq_h5w_open(path, err);
    if (!w) return err ? err->code : RQ_EIO;
    rq_classifier_config c = m->cfg;
    if (rq_h5w_attr_str(w, "/", "format", RQ_CLASSIFIER_FORMAT, err) ||
        rq_h5w_attr_i64(w, "/", "version", RQ_CLASSIFIER_VERSION, err))
        goto fail;
    for (int i = 0; i < N_CFG_KEYS; i++)
        if (rq_h5w_attr_i64(w, "/", CFG_KEYS[i], *cfg_field(&c, i), err)) goto fail;
    if (meta && (rq_h5w_attr_f64(w, "/", "test_accuracy", meta->test_accuracy, err) ||
                 rq_h5w_attr_i64(w, "/", "train_steps", meta->train_steps, err) ||
                 rq_h5w_attr_f64(w, "/", "train_seconds", meta->train_seconds, err) ||
                 rq_h5w_attr_i64(w, "/", "seed", meta->seed, err) ||
                 rq_h5w_attr_str(w, "/", "train_data", meta->train_data, err)))
        goto fail;
    for (int i = 0; i < m->n_params; i++) {
        const rq_tensor *t = m->params[i];
        char p[160];
        long shape[RQ_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        snprintf(p, sizeof p, "/params/%s", t->name);
        if (rq_h5w_write_f32(w, p, t->data, t->ndim, shape, err)) goto fail;
    }
    return rq_h5w_close_commit(w, err);
fail:
    rq_h5w_abort(w);
    return err && err->code ? err->code : RQ_EIO;
}

rq_status rq_classifier_load(const char *path, rq_classifier *m, rq_classifier_meta *meta, rq_err *err) {
    if (!path || !m) return rq_err_set(err, RQ_EINVAL, "classifier load: NULL argument");
    memset(m, 0, sizeof *m);
    if (meta) memset(meta, 0, sizeof *meta), meta->test_accuracy = -1;
    rq_h5_reader *r = rq_h5r_open(path, err);
    if (!r) return err ? err->code : RQ_EIO;
    char **names = NULL;
    int n_names = 0;
    char fmt[64];
    int64_t v;
    rq_classifier_config c;
    if (rq_h5r_get_str(r, "/", "format", fmt, sizeof fmt, err)) goto fail;
    if (strcmp(fmt, RQ_CLASSIFIER_FORMAT)) {
        rq_err_set(err, RQ_EFORMAT, "%s: format '%s', expected '%s' (a robuq-classifier weights file)", path, fmt,
                   RQ_CLASSIFIER_FORMAT);
        goto fail;
    }
    if (rq_h5r_get_i64(r, "/", "version", &v, err)) goto fail;
    if (v != RQ_CLASSIFIER_VERSION) {
        rq_err_set(err, RQ_EFORMAT, "%s: version %lld, this build reads version %d", path, (long long)v,
                   RQ_CLASSIFIER_VERSION);
        goto fail;
    }
    for (int i = 0; i < N_CFG_KEYS; i++) {
        if (rq_h5r_get_i64(r, "/", CFG_KEYS[i], &v, err)) goto fail;
        if (v < -1000000 || v > 1000000) {
            rq_err_set(err, RQ_EFORMAT, "%s: attribute %s = %lld out of range", path, CFG_KEYS[i], (long long)v);
            goto fail;
        }
        *cfg_field(&c, i) = (int)v;
    }
    rq_err cerr = {0};
    if (rq_classifier_config_check(&c, &cerr)) {
        rq_err_set(err, RQ_EFORMAT, "%s: %s", path, cerr.msg);
        goto fail;
    }
    if (rq_classifier_init(m, &c, 0, err)) goto fail;
    /* every stored parameter must be one of ours: a file from another model fails loudly */
    if (rq_h5r_list_datasets(r, "/params", 1, &names, &n_names, err)) goto fail;
    for (int i = 0; i < n_names; i++)
        if (!rq_classifier_param(m, names[i])) {
            rq_err_set(err, RQ_EFORMAT, "%s: unexpected parameter /params/%s for this config", path, names[i]);
            goto fail;
        }
    for (int i = 0; i < m->n_params; i++) {
        rq_tensor *t = m->params[i];
        char p[160];
        long shape[RQ_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        snprintf(p, sizeof p, "/params/%s", t->name);
        if (rq_h5r_exists(r, p) != 1) {
            rq_err_set(err, RQ_EFORMAT, "%s: missing parameter %s", path, p);
            goto fail;
        }
        if (rq_h5r_check_shape(r, p, t->ndim, shape, err) || rq_h5r_read_f32(r, p, t->data, t->n, err)) goto fail;
        for (long j = 0; j < t->n; j++)
            if (!isfinite(t->data[j])) {
                rq_err_set(err, RQ_ENUM, "%s: %s[%ld] is not finite", path, p, j);
                goto fail;
            }
    }
    if (meta) {
        rq_err ignore = {0};
        double d;
        int64_t i64;
        if (rq_h5r_has_attr(r, "/", "test_accuracy") && !rq_h5r_get_f64(r, "/", "test_accuracy", &d, &ignore))
            meta->test_accuracy = d;
        if (rq_h5r_has_attr(r, "/", "train_steps") && !rq_h5r_get_i64(r, "/", "train_steps", &i64, &ignore))
            meta->train_steps = (long)i64;
        if (rq_h5r_has_attr(r, "/", "train_seconds") && !rq_h5r_get_f64(r, "/", "train_seconds", &d, &ignore))
            meta->train_seconds = d;
        if (rq_h5r_has_attr(r, "/", "seed") && !rq_h5r_get_i64(r, "/", "seed", &i64, &ignore)) meta->seed = (long)i64;
        if (rq_h5r_has_attr(r, "/", "train_data"))
            rq_h5r_get_str(r, "/", "train_data", meta->train_data, sizeof meta->train_data, &ignore);
    }
    rq_h5_names_free(names, n_names);
    rq_h5r_close(r);
    return RQ_OK;
fail:
    rq_h5_names_free(names, n_names);
    rq_h5r_close(r);
    rq_classifier_free(m);
    return err && err->code ? err->code : RQ_EFORMAT;
}
