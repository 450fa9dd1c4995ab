/* vae.c: Stable Diffusion VAE decoder (diffusers AutoencoderKL decode path),
 * forward only. See vae.h for the network and the accepted tensor names.
 *
 * Weights live in one float array; layers point into it. Loading runs the
 * same layer walk twice: once counting floats, once finding, checking and
 * reading every tensor, so the two can never disagree.
 *
 * Activations: three buffers of the largest activation (C*H*W over all
 * layers), reused layer after layer; the nearest 2x upsampling is fused into
 * the following conv (rq_conv2d with up = 2), so the 4x larger upsampled
 * tensor is never stored. Images are decoded one at a time. For SD at
 * 32x32 latents the largest activation is 256 x 256 x 256 floats (67 MB). */
#include "robuq/vae.h"
#include "robuq/conv2d.h"
#include "robuq/fastmath.h"
#include "robuq/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* im2col band target (floats): wide enough for GEMM efficiency, small enough
 * to stay out of the way (16 MB). */
#define VAE_COL_TARGET ((size_t)4 << 20)
/* attention score block target (floats): queries are processed in blocks of
 * rows so large latents do not need a T x T matrix. */
#define VAE_SCORE_TARGET ((size_t)4 << 20)
/* tensor name buffers: a base ("decoder.up_blocks.1.resnets.2"), a layer
 * under it ("...resnets.2.conv_shortcut"), a full name ("....weight") */
#define VAE_BASE_MAX 128
#define VAE_MID_MAX 160
#define VAE_NAME_MAX 192

typedef struct {
    const float *w, *b; /* w: [cout, cin, k, k]; b: [cout] */
    int cout, cin, k;
} vae_conv;

typedef struct {
    const float *g, *b; /* gamma, beta: [c] */
    int c;
} vae_norm;

typedef struct {
    vae_norm norm1, norm2;
    vae_conv conv1, conv2, shortcut; /* shortcut only when cin != cout */
    int cin, cout;
} vae_resnet;

typedef struct {
    vae_norm norm;
    vae_conv q, k, v, out; /* 1x1 convs == per-token linears in NCHW */
} vae_attn;

typedef struct {
    vae_resnet res[RQ_VAE_MAX_LAYERS + 1];
    int nres;
    int has_up;
    vae_conv up; /* nearest 2x, then this 3x3 conv */
} vae_upblock;

struct rq_vae {
    rq_vae_config cfg;
    float *params;
    size_t nparams;
    vae_conv post_quant, conv_in, conv_out;
    vae_resnet mid_res[2];
    vae_attn attn;
    vae_norm norm_out;
    vae_upblock up[RQ_VAE_MAX_LEVELS];
    /* activation buffers, sized for ws_h x ws_w latents */
    int ws_h, ws_w;
    float *act[3];
    size_t act_cap;
    float *col;
    size_t col_cap;
    float *qkv;    /* 3 * C * T */
    float *scores; /* score_rows * T */
    int score_rows;
};

/* ------------------------------------------------------------------------ */
/* Config */

void rq_vae_config_sd(rq_vae_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->latent_channels = 4;
    cfg->out_channels = 3;
    cfg->nlevels = 4;
    cfg->block_out_channels[0] = 128;
    cfg->block_out_channels[1] = 256;
    cfg->block_out_channels[2] = 512;
    cfg->block_out_channels[3] = 512;
    cfg->layers_per_block = 2;
    cfg->norm_groups = 32;
    cfg->norm_eps = 1e-6f;
    cfg->mid_attention = 1;
    cfg->post_quant_conv = 1;
    cfg->scaling_factor = 0.18215f;
    cfg->clamp = 1;
}

static rq_status config_check(const rq_vae_config *c, rq_err *err) {
    if (c->latent_channels <= 0 || c->latent_channels > 4096 || c->out_channels <= 0 || c->out_channels > 4096)
        return rq_err_set(err, RQ_EINVAL, "vae config: latent_channels %d / out_channels %d out of range",
                          c->latent_channels, c->out_channels);
    if (c->nlevels < 1 || c->nlevels > RQ_VAE_MAX_LEVELS)
        return rq_err_set(err, RQ_EINVAL, "vae config: %d levels (1..%d)", c->nlevels, RQ_VAE_MAX_LEVELS);
    if (c->layers_per_block < 0 || c->layers_per_block > RQ_VAE_MAX_LAYERS)
        return rq_err_set(err, RQ_EINVAL, "vae config: layers_per_block %d (0..%d)", c->layers_per_block,
                          RQ_VAE_MAX_LAYERS);
    if (c->norm_groups <= 0) return rq_err_set(err, RQ_EINVAL, "vae config: norm_groups %d", c->norm_groups);
    for (int i = 0; i < c->nlevels; i++) {
        int ch = c->block_out_channels[i];
        if (ch <= 0 || ch > 65536)
            return rq_err_set(err, RQ_EINVAL, "vae config: block_out_channels[%d] = %d", i, ch);
        if (ch % c->norm_groups)
            return rq_err_set(err, RQ_EINVAL,
                              "vae config: norm_groups %d does not divide block_out_channels[%d] = %d",
                              c->norm_groups, i, ch);
    }
    if (!(c->norm_eps >= 0.0f) || !(c->scaling_factor > 0.0f) || !isfinite(c->scaling_factor))
        return rq_err_set(err, RQ_EINVAL, "vae config: norm_eps %g / scaling_factor %g", (double)c->norm_eps,
                          (double)c->scaling_factor);
    return RQ_OK;
}

/* Tensor prefix + name lookup. */
static const rq_st_tensor *find_p(const rq_safetensors *st, const char *prefix, const char *name) {
    char full[VAE_NAME_MAX + 32];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return rq_st_find(st, full);
}

static const char *const k_prefixes[] = {"", "first_stage_model.", "vae."};

static const char *st_name(const rq_safetensors *st) { return st->path ? st->path : "<safetensors>"; }

/* Name of up block i (diffusers order), resnet j or the upsampler (j < 0). */
static void up_name(char *buf, size_t cap, rq_vae_layout layout, int nlevels, int i, int j) {
    if (layout == RQ_VAE_LDM) {
        if (j >= 0) snprintf(buf, cap, "decoder.up.%d.block.%d", nlevels - 1 - i, j);
        else snprintf(buf, cap, "decoder.up.%d.upsample.conv", nlevels - 1 - i);
    } else {
        if (j >= 0) snprintf(buf, cap, "decoder.up_blocks.%d.resnets.%d", i, j);
        else snprintf(buf, cap, "decoder.up_blocks.%d.upsamplers.0.conv", i);
    }
}

/* shape[dim] of a 4-D tensor as int, or -1 */
static int dim4(const rq_st_tensor *t, int dim) {
    if (!t || t->ndim != 4 || t->shape[dim] <= 0 || t->shape[dim] > 65536) return -1;
    return (int)t->shape[dim];
}

rq_status rq_vae_config_infer(const rq_safetensors *st, rq_vae_config *cfg, rq_vae_layout *layout_out,
                              char *prefix_out, size_t cap, rq_err *err) {
    if (!st || !cfg) return rq_err_set(err, RQ_EINVAL, "rq_vae_config_infer: NULL argument");
    const char *fn = st_name(st);
    const char *prefix = NULL;
    for (size_t i = 0; i < sizeof k_prefixes / sizeof *k_prefixes && !prefix; i++)
        if (find_p(st, k_prefixes[i], "decoder.conv_in.weight")) prefix = k_prefixes[i];
    if (!prefix)
        return rq_err_set(err, RQ_EFORMAT,
                          "%s: no VAE decoder: none of 'decoder.conv_in.weight', "
                          "'first_stage_model.decoder.conv_in.weight', 'vae.decoder.conv_in.weight'",
                          fn);
    rq_vae_layout layout;
    if (find_p(st, prefix, "decoder.mid_block.resnets.0.conv1.weight")) layout = RQ_VAE_DIFFUSERS;
    else if (find_p(st, prefix, "decoder.mid.block_1.conv1.weight")) layout = RQ_VAE_LDM;
    else
        return rq_err_set(err, RQ_EFORMAT,
                          "%s: has '%sdecoder.conv_in.weight' but neither '%sdecoder.mid_block.resnets.0.conv1.weight' "
                          "(diffusers) nor '%sdecoder.mid.block_1.conv1.weight' (ldm)",
                          fn, prefix, prefix, prefix);
    rq_vae_config c;
    rq_vae_config_sd(&c);
    const rq_st_tensor *tin = find_p(st, prefix, "decoder.conv_in.weight");
    const rq_st_tensor *tout = find_p(st, prefix, "decoder.conv_out.weight");
    int c_last = dim4(tin, 0);
    c.latent_channels = dim4(tin, 1);
    c.out_channels = dim4(tout, 0);
    if (c_last < 0 || c.latent_channels < 0)
        return rq_err_set(err, RQ_EFORMAT, "%s: '%sdecoder.conv_in.weight' is not a 4-D conv weight", fn, prefix);
    if (c.out_channels < 0)
        return rq_err_set(err, RQ_EFORMAT, "%s: missing or non-4-D '%sdecoder.conv_out.weight'", fn, prefix);
    char name[VAE_NAME_MAX], full[VAE_NAME_MAX + 16];
    /* levels: up blocks with a first resnet */
    int nl = 0;
    for (; nl <= RQ_VAE_MAX_LEVELS; nl++) {
        /* the ldm index depends on the level count, so probe by position */
        if (layout == RQ_VAE_LDM) snprintf(name, sizeof name, "decoder.up.%d.block.0", nl);
        else snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.0", nl);
        snprintf(full, sizeof full, "%s.conv1.weight", name);
        if (!find_p(st, prefix, full)) break;
    }
    if (nl < 1 || nl > RQ_VAE_MAX_LEVELS)
        return rq_err_set(err, RQ_EFORMAT, "%s: %d decoder up blocks found (1..%d supported)", fn, nl,
                          RQ_VAE_MAX_LEVELS);
    c.nlevels = nl;
    for (int i = 0; i < nl; i++) {
        up_name(name, sizeof name, layout, nl, i, 0);
        snprintf(full, sizeof full, "%s.conv1.weight", name);
        const rq_st_tensor *t = find_p(st, prefix, full);
        int ch = dim4(t, 0);
        if (ch < 0) return rq_err_set(err, RQ_EFORMAT, "%s: '%s%s' is not a 4-D conv weight", fn, prefix, full);
        c.block_out_channels[nl - 1 - i] = ch;
    }
    int nres = 0;
    for (; nres <= RQ_VAE_MAX_LAYERS + 1; nres++) {
        up_name(name, sizeof name, layout, nl, 0, nres);
        snprintf(full, sizeof full, "%s.conv1.weight", name);
        if (!find_p(st, prefix, full)) break;
    }
    if (nres < 1 || nres > RQ_VAE_MAX_LAYERS + 1)
        return rq_err_set(err, RQ_EFORMAT, "%s: %d resnets in the first up block (1..%d supported)", fn, nres,
                          RQ_VAE_MAX_LAYERS + 1);
    c.layers_per_block = nres - 1;
    c.mid_attention = find_p(st, prefix,
                             layout == RQ_VAE_LDM ? "decoder.mid.attn_1.norm.weight"
                                                  : "decoder.mid_block.attentions.0.group_norm.weight") != NULL;
    c.post_quant_conv = find_p(st, prefix, "post_quant_conv.weight") != NULL;
    if (c.block_out_channels[0] != dim4(tout, 1) || c.block_out_channels[nl - 1] != c_last)
        return rq_err_set(err, RQ_EFORMAT,
                          "%s: up blocks give %d..%d channels but conv_in makes %d and conv_out takes %d "
                          "(up block tensors missing?)",
                          fn, c.block_out_channels[nl - 1], c.block_out_channels[0], c_last, dim4(tout, 1));
    /* norm_groups cannot be read from shapes: SD's 32 stays */
    *cfg = c;
    if (layout_out) *layout_out = layout;
    if (prefix_out && cap) snprintf(prefix_out, cap, "%s", prefix);
    return RQ_OK;
}

/* ------------------------------------------------------------------------ */
/* Loading */

typedef struct {
    const rq_safetensors *st; /* NULL (with base): random weights instead of a file */
    rq_vae_layout layout;
    const char *prefix;
    float *base;  /* NULL: counting pass */
    size_t used;  /* floats taken */
    rq_err *err;
    uint64_t rng; /* random weights */
} loader;

/* How a tensor is filled by rq_vae_init_random. */
enum { INIT_FANIN = 0, INIT_ONES = 1, INIT_ZEROS = 2 };

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* U(-a, a) with a = sqrt(3 / fan_in): unit variance through each layer */
static void fill_random(loader *L, float *out, int ndim, const int64_t *shape, int64_t numel, int init) {
    if (init != INIT_FANIN) {
        for (int64_t i = 0; i < numel; i++) out[i] = init == INIT_ONES ? 1.0f : 0.0f;
        return;
    }
    double fan_in = ndim > 1 ? (double)numel / shape[0] : 1.0;
    double a = sqrt(3.0 / fan_in);
    for (int64_t i = 0; i < numel; i++)
        out[i] = (float)(a * ((double)(splitmix(&L->rng) >> 11) * (2.0 / 9007199254740992.0) - 1.0));
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Tensor `name` (alternates alt[0..nalt) tried after it) of the given shape;
 * when squeeze_ok, a trailing [.., 1, 1] is also accepted (1x1 conv vs linear). */
static rq_status ld_tensor(loader *L, const char *name, const char *const *alt, int nalt, int ndim,
                           const int64_t *shape, int squeeze_ok, int init, const float **dst) {
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (!L->base) { /* counting pass */
        L->used += (size_t)numel;
        return RQ_OK;
    }
    if (!L->st) { /* random weights */
        float *out = L->base + L->used;
        fill_random(L, out, ndim, shape, numel, init);
        L->used += (size_t)numel;
        *dst = out;
        return RQ_OK;
    }
    const char *fn = st_name(L->st);
    const rq_st_tensor *t = find_p(L->st, L->prefix, name);
    const char *found = name;
    for (int i = 0; i < nalt && !t; i++) t = find_p(L->st, L->prefix, found = alt[i]);
    if (!t) {
        if (nalt)
            return rq_err_set(L->err, RQ_EFORMAT, "%s: missing tensor '%s%s' (or '%s%s'; %s layout)", fn, L->prefix,
                              name, L->prefix, alt[0], L->layout == RQ_VAE_LDM ? "ldm" : "diffusers");
        return rq_err_set(L->err, RQ_EFORMAT, "%s: missing tensor '%s%s' (%s layout)", fn, L->prefix, name,
                          L->layout == RQ_VAE_LDM ? "ldm" : "diffusers");
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok && squeeze_ok && t->ndim == ndim + 2 && t->shape[ndim] == 1 && t->shape[ndim + 1] == 1) {
        ok = 1;
        for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    }
    if (!ok) {
        char have[128], want[128];
        shape_str(have, sizeof have, t->ndim, t->shape);
        shape_str(want, sizeof want, ndim, shape);
        return rq_err_set(L->err, RQ_ESHAPE, "%s: tensor '%s%s' has shape %s, expected %s%s", fn, L->prefix, found,
                          have, want, squeeze_ok ? " (or with trailing 1x1)" : "");
    }
    float *out = L->base + L->used;
    rq_status s = rq_st_read_f32(L->st, t, out, L->err);
    if (s) return s;
    for (int64_t i = 0; i < numel; i++)
        if (!isfinite(out[i]))
            return rq_err_set(L->err, RQ_ENUM, "%s: tensor '%s%s' has a non-finite value at index %lld", fn, L->prefix,
                              found, (long long)i);
    L->used += (size_t)numel;
    *dst = out;
    return RQ_OK;
}

/* base.weight [cout, cin, k, k] and base.bias [cout] */
static rq_status ld_conv(loader *L, vae_conv *c, const char *base, int cout, int cin, int k) {
    char name[VAE_NAME_MAX];
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    c->cout = cout, c->cin = cin, c->k = k;
    snprintf(name, sizeof name, "%s.weight", base);
    rq_status s = ld_tensor(L, name, NULL, 0, 4, ws, 0, INIT_FANIN, &c->w);
    if (s) return s;
    snprintf(name, sizeof name, "%s.bias", base);
    return ld_tensor(L, name, NULL, 0, 1, bs, 0, INIT_ZEROS, &c->b);
}

static rq_status ld_norm(loader *L, vae_norm *n, const char *base, int c) {
    char name[VAE_NAME_MAX];
    int64_t s1[1] = {c};
    n->c = c;
    snprintf(name, sizeof name, "%s.weight", base);
    rq_status s = ld_tensor(L, name, NULL, 0, 1, s1, 0, INIT_ONES, &n->g);
    if (s) return s;
    snprintf(name, sizeof name, "%s.bias", base);
    return ld_tensor(L, name, NULL, 0, 1, s1, 0, INIT_ZEROS, &n->b);
}

/* attention projection: [c, c] or [c, c, 1, 1]; alt_base = older diffusers name */
static rq_status ld_linear(loader *L, vae_conv *l, const char *base, const char *alt_base, int c) {
    char name[VAE_NAME_MAX], alt[VAE_NAME_MAX];
    const char *alts[1] = {alt};
    int64_t ws[2] = {c, c}, bs[1] = {c};
    l->cout = c, l->cin = c, l->k = 1;
    snprintf(name, sizeof name, "%s.weight", base);
    snprintf(alt, sizeof alt, "%s.weight", alt_base ? alt_base : "");
    rq_status s = ld_tensor(L, name, alts, alt_base ? 1 : 0, 2, ws, 1, INIT_FANIN, &l->w);
    if (s) return s;
    snprintf(name, sizeof name, "%s.bias", base);
    snprintf(alt, sizeof alt, "%s.bias", alt_base ? alt_base : "");
    return ld_tensor(L, name, alts, alt_base ? 1 : 0, 1, bs, 0, INIT_ZEROS, &l->b);
}

static rq_status ld_resnet(loader *L, vae_resnet *r, const char *base, int cin, int cout) {
    char name[VAE_MID_MAX];
    rq_status s;
    r->cin = cin, r->cout = cout;
    snprintf(name, sizeof name, "%s.norm1", base);
    if ((s = ld_norm(L, &r->norm1, name, cin))) return s;
    snprintf(name, sizeof name, "%s.conv1", base);
    if ((s = ld_conv(L, &r->conv1, name, cout, cin, 3))) return s;
    snprintf(name, sizeof name, "%s.norm2", base);
    if ((s = ld_norm(L, &r->norm2, name, cout))) return s;
    snprintf(name, sizeof name, "%s.conv2", base);
    if ((s = ld_conv(L, &r->conv2, name, cout, cout, 3))) return s;
    if (cin != cout) {
        snprintf(name, sizeof name, "%s.%s", base, L->layout == RQ_VAE_LDM ? "nin_shortcut" : "conv_shortcut");
        if ((s = ld_conv(L, &r->shortcut, name, cout, cin, 1))) return s;
    }
    return RQ_OK;
}

static rq_status ld_attention(loader *L, vae_attn *a, int c) {
    rq_status s;
    if (L->layout == RQ_VAE_LDM) {
        if ((s = ld_norm(L, &a->norm, "decoder.mid.attn_1.norm", c))) return s;
        if ((s = ld_linear(L, &a->q, "decoder.mid.attn_1.q", NULL, c))) return s;
        if ((s = ld_linear(L, &a->k, "decoder.mid.attn_1.k", NULL, c))) return s;
        if ((s = ld_linear(L, &a->v, "decoder.mid.attn_1.v", NULL, c))) return s;
        return ld_linear(L, &a->out, "decoder.mid.attn_1.proj_out", NULL, c);
    }
#define ATT "decoder.mid_block.attentions.0."
    if ((s = ld_norm(L, &a->norm, ATT "group_norm", c))) return s;
    if ((s = ld_linear(L, &a->q, ATT "to_q", ATT "query", c))) return s;
    if ((s = ld_linear(L, &a->k, ATT "to_k", ATT "key", c))) return s;
    if ((s = ld_linear(L, &a->v, ATT "to_v", ATT "value", c))) return s;
    return ld_linear(L, &a->out, ATT "to_out.0", ATT "proj_attn", c);
#undef ATT
}

/* The whole decoder, in forward order. */
static rq_status ld_all(loader *L, rq_vae *v) {
    const rq_vae_config *c = &v->cfg;
    const int nl = c->nlevels, lat = c->latent_channels, ctop = c->block_out_channels[nl - 1];
    const int ldm = L->layout == RQ_VAE_LDM;
    char name[VAE_BASE_MAX];
    rq_status s;
    if (c->post_quant_conv && (s = ld_conv(L, &v->post_quant, "post_quant_conv", lat, lat, 1))) return s;
    if ((s = ld_conv(L, &v->conv_in, "decoder.conv_in", ctop, lat, 3))) return s;
    if ((s = ld_resnet(L, &v->mid_res[0], ldm ? "decoder.mid.block_1" : "decoder.mid_block.resnets.0", ctop, ctop)))
        return s;
    if (c->mid_attention && (s = ld_attention(L, &v->attn, ctop))) return s;
    if ((s = ld_resnet(L, &v->mid_res[1], ldm ? "decoder.mid.block_2" : "decoder.mid_block.resnets.1", ctop, ctop)))
        return s;
    int prev = ctop;
    for (int i = 0; i < nl; i++) {
        vae_upblock *u = &v->up[i];
        const int cout = c->block_out_channels[nl - 1 - i];
        u->nres = c->layers_per_block + 1;
        for (int j = 0; j < u->nres; j++) {
            up_name(name, sizeof name, L->layout, nl, i, j);
            if ((s = ld_resnet(L, &u->res[j], name, j == 0 ? prev : cout, cout))) return s;
        }
        u->has_up = i != nl - 1;
        if (u->has_up) {
            up_name(name, sizeof name, L->layout, nl, i, -1);
            if ((s = ld_conv(L, &u->up, name, cout, cout, 3))) return s;
        }
        prev = cout;
    }
    if ((s = ld_norm(L, &v->norm_out, ldm ? "decoder.norm_out" : "decoder.conv_norm_out", c->block_out_channels[0])))
        return s;
    return ld_conv(L, &v->conv_out, "decoder.conv_out", c->out_channels, c->block_out_channels[0], 3);
}

/* Both passes of ld_all: count, allocate, fill (from st, or random when st is NULL). */
static rq_status build(const rq_safetensors *st, rq_vae_layout layout, const char *prefix, const rq_vae_config *cfg,
                       uint64_t seed, rq_vae **out, rq_err *err) {
    rq_status s = config_check(cfg, err);
    if (s) return s;
    rq_vae *v = calloc(1, sizeof *v);
    if (!v) return rq_err_set(err, RQ_ENOMEM, "rq_vae_load: out of memory");
    v->cfg = *cfg;
    loader L = {st, layout, prefix, NULL, 0, err, seed};
    ld_all(&L, v); /* counting pass: cannot fail */
    v->nparams = L.used;
    v->params = rq_malloc(v->nparams * sizeof(float));
    if (!v->params) {
        rq_vae_free(v);
        return rq_err_set(err, RQ_ENOMEM, "rq_vae_load: out of memory for %zu parameters", L.used);
    }
    L.base = v->params;
    L.used = 0;
    if ((s = ld_all(&L, v))) {
        rq_vae_free(v);
        return s;
    }
    *out = v;
    return RQ_OK;
}

rq_status rq_vae_load_st(const rq_safetensors *st, const rq_vae_config *cfg, rq_vae **out, rq_err *err) {
    if (out) *out = NULL;
    if (!st || !out) return rq_err_set(err, RQ_EINVAL, "rq_vae_load_st: NULL argument");
    rq_vae_config inferred;
    rq_vae_layout layout;
    char prefix[32];
    rq_status s = rq_vae_config_infer(st, &inferred, &layout, prefix, sizeof prefix, err);
    if (s) return s;
    return build(st, layout, prefix, cfg ? cfg : &inferred, 0, out, err);
}

rq_status rq_vae_init_random(const rq_vae_config *cfg, uint64_t seed, rq_vae **out, rq_err *err) {
    if (out) *out = NULL;
    if (!cfg || !out) return rq_err_set(err, RQ_EINVAL, "rq_vae_init_random: NULL argument");
    return build(NULL, RQ_VAE_DIFFUSERS, "", cfg, seed, out, err);
}

rq_status rq_vae_load(const char *path, const rq_vae_config *cfg, rq_vae **out, rq_err *err) {
    if (out) *out = NULL;
    if (!path || !out) return rq_err_set(err, RQ_EINVAL, "rq_vae_load: NULL argument");
    rq_safetensors st;
    rq_status s = rq_st_open(path, &st, err);
    if (s) return s;
    s = rq_vae_load_st(&st, cfg, out, err);
    rq_st_close(&st);
    if (!s)
        RQ_INFO("vae: %s: %zu parameters, %d levels, %d groups, %s", path, (*out)->nparams, (*out)->cfg.nlevels,
                (*out)->cfg.norm_groups, (*out)->cfg.mid_attention ? "mid attention" : "no mid attention");
    return s;
}

static void ws_free(rq_vae *v) {
    for (int i = 0; i < 3; i++) rq_free(v->act[i]), v->act[i] = NULL;
    rq_free(v->col);
    rq_free(v->qkv);
    rq_free(v->scores);
    v->col = v->qkv = v->scores = NULL;
    v->ws_h = v->ws_w = 0;
}

void rq_vae_free(rq_vae *vae) {
    if (!vae) return;
    ws_free(vae);
    rq_free(vae->params);
    free(vae);
}

const rq_vae_config *rq_vae_get_config(const rq_vae *vae) { return vae ? &vae->cfg : NULL; }
size_t rq_vae_num_params(const rq_vae *vae) { return vae ? vae->nparams : 0; }
int rq_vae_upscale(const rq_vae *vae) { return vae ? 1 << (vae->cfg.nlevels - 1) : 0; }

void rq_vae_set_output(rq_vae *vae, float scaling_factor, int clamp) {
    if (!vae) return;
    if (scaling_factor > 0.0f && isfinite(scaling_factor)) vae->cfg.scaling_factor = scaling_factor;
    vae->cfg.clamp = clamp != 0;
}

/* ------------------------------------------------------------------------ */
/* Workspace */

typedef struct {
    size_t act, col, qkv, scores;
    int score_rows;
} ws_sizes;

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* im2col floats for a 3x3 conv from cin channels at h x w (output up x larger) */
static size_t col_need(int cin, int up, int h, int w) {
    size_t row = rq_conv2d_col_min(cin, 3, up, w);
    size_t rows = VAE_COL_TARGET / row;
    if (rows < 1) rows = 1;
    if (rows > (size_t)h * up) rows = (size_t)h * up;
    return row * rows;
}

static ws_sizes ws_plan(const rq_vae_config *c, int h, int w) {
    ws_sizes z = {0};
    const int nl = c->nlevels, ctop = c->block_out_channels[nl - 1];
    size_t hw = (size_t)h * w;
    z.act = zmax((size_t)c->latent_channels * hw, (size_t)ctop * hw);
    z.col = col_need(c->latent_channels, 1, h, w);
    z.col = zmax(z.col, col_need(ctop, 1, h, w));
    int prev = ctop, hh = h, ww = w;
    for (int i = 0; i < nl; i++) {
        int cout = c->block_out_channels[nl - 1 - i];
        size_t s = (size_t)hh * ww;
        z.act = zmax(z.act, (size_t)(prev > cout ? prev : cout) * s);
        z.col = zmax(z.col, col_need(prev, 1, hh, ww));
        z.col = zmax(z.col, col_need(cout, 1, hh, ww));
        if (i != nl - 1) {
            z.act = zmax(z.act, (size_t)cout * 4 * s);
            z.col = zmax(z.col, col_need(cout, 2, hh, ww));
            hh *= 2, ww *= 2;
        }
        prev = cout;
    }
    if (c->mid_attention) {
        size_t T = hw;
        size_t rows = VAE_SCORE_TARGET / T;
        if (rows < 1) rows = 1;
        if (rows > T) rows = T;
        z.score_rows = (int)rows;
        z.qkv = 3 * (size_t)ctop * T;
        z.scores = rows * T;
    }
    return z;
}

size_t rq_vae_workspace_bytes(const rq_vae_config *cfg, int h, int w) {
    if (!cfg || h <= 0 || w <= 0 || cfg->nlevels < 1 || cfg->nlevels > RQ_VAE_MAX_LEVELS) return 0;
    ws_sizes z = ws_plan(cfg, h, w);
    return (3 * z.act + z.col + z.qkv + z.scores) * sizeof(float);
}

static rq_status ws_ensure(rq_vae *v, int h, int w, rq_err *err) {
    if (v->act[0] && h <= v->ws_h && w <= v->ws_w) return RQ_OK;
    int nh = h > v->ws_h ? h : v->ws_h, nw = w > v->ws_w ? w : v->ws_w;
    ws_free(v);
    ws_sizes z = ws_plan(&v->cfg, nh, nw);
    for (int i = 0; i < 3; i++) v->act[i] = rq_malloc(z.act * sizeof(float));
    v->col = rq_malloc(zmax(z.col, 1) * sizeof(float));
    v->qkv = rq_malloc(zmax(z.qkv, 1) * sizeof(float));
    v->scores = rq_malloc(zmax(z.scores, 1) * sizeof(float));
    if (!v->act[0] || !v->act[1] || !v->act[2] || !v->col || !v->qkv || !v->scores) {
        ws_free(v);
        return rq_err_set(err, RQ_ENOMEM, "rq_vae_decode: out of memory for %.1f MB of activations (%dx%d latents)",
                          (3 * z.act + z.col + z.qkv + z.scores) * 4.0 / 1e6, nh, nw);
    }
    v->act_cap = z.act, v->col_cap = z.col, v->score_rows = z.score_rows;
    v->ws_h = nh, v->ws_w = nw;
    return RQ_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward */

static rq_status conv_fwd(rq_vae *v, const vae_conv *c, const float *x, int h, int w, int up, float *y,
                          int accumulate, rq_err *err) {
    return rq_conv2d(x, c->cin, h, w, up, c->w, c->b, c->cout, c->k, y, accumulate, v->col, v->col_cap, err);
}

static rq_status norm_fwd(rq_vae *v, const vae_norm *n, const float *x, long hw, int silu, float *y, rq_err *err) {
    return rq_group_norm(x, n->c, hw, v->cfg.norm_groups, v->cfg.norm_eps, n->g, n->b, silu, y, err);
}

/* ResnetBlock2D: x [cin, h, w] -> *out [cout, h, w]; *out is x or t1. */
static rq_status resnet_fwd(rq_vae *v, const vae_resnet *r, float *x, float *t1, float *t2, int h, int w,
                            float **out, rq_err *err) {
    const long hw = (long)h * w;
    rq_status s;
    if ((s = norm_fwd(v, &r->norm1, x, hw, 1, t1, err))) return s;
    if ((s = conv_fwd(v, &r->conv1, t1, h, w, 1, t2, 0, err))) return s;
    if ((s = norm_fwd(v, &r->norm2, t2, hw, 1, t2, err))) return s;
    float *y = x;
    if (r->cin != r->cout) { /* y = shortcut(x), then y += conv2(...) */
        if ((s = conv_fwd(v, &r->shortcut, x, h, w, 1, t1, 0, err))) return s;
        y = t1;
    }
    if ((s = conv_fwd(v, &r->conv2, t2, h, w, 1, y, 1, err))) return s;
    *out = y;
    return RQ_OK;
}

/* softmax over each of the rows of s[rows, n] */
static void softmax_rows(float *s, int rows, int n) {
#pragma omp parallel for schedule(static) if ((long)rows * n > (1L << 18))
    for (int i = 0; i < rows; i++) {
        float *r = s + (size_t)i * n;
        float m = r[0];
        for (int j = 1; j < n; j++) m = r[j] > m ? r[j] : m;
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            r[j] = rq_expf(r[j] - m);
            sum += r[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) r[j] *= inv;
    }
}

/* Mid-block attention, in place on x [C, T]: x += out(attn(norm(x))).
 * In NCHW the per-token linears are 1x1 convs: Q = Wq Xn + bq is [C, T].
 * Scores for queries [t0, t0+nq): S = scale * Q[:, t0:]^T K   ([nq, T]),
 * O[:, t0:] = V S^T                                          ([C, nq]). */
static rq_status attn_fwd(rq_vae *v, const vae_attn *a, float *x, float *t1, int h, int w, rq_err *err) {
    const int C = a->q.cout, T = h * w;
    float *q = v->qkv, *k = q + (size_t)C * T, *val = k + (size_t)C * T;
    rq_status s;
    if ((s = norm_fwd(v, &a->norm, x, T, 0, t1, err))) return s;
    if ((s = conv_fwd(v, &a->q, t1, h, w, 1, q, 0, err))) return s;
    if ((s = conv_fwd(v, &a->k, t1, h, w, 1, k, 0, err))) return s;
    if ((s = conv_fwd(v, &a->v, t1, h, w, 1, val, 0, err))) return s;
    const float scale = (float)(1.0 / sqrt((double)C));
    for (int t0 = 0; t0 < T; t0 += v->score_rows) {
        int nq = T - t0 < v->score_rows ? T - t0 : v->score_rows;
        /* small problems stay on this thread (see conv2d.c) */
        void (*mm)(int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int) =
            (double)nq * T * C < (1 << 22) ? rq_sgemm_st : rq_sgemm;
        mm(1, 0, nq, T, C, scale, q + t0, T, k, T, 0.0f, v->scores, T);
        softmax_rows(v->scores, nq, T);
        mm(0, 1, C, nq, T, 1.0f, val, T, v->scores, T, 0.0f, t1 + t0, T);
    }
    return conv_fwd(v, &a->out, t1, h, w, 1, x, 1, err);
}

/* The first activation buffer that is neither a nor b. */
static float *other(rq_vae *v, const float *a, const float *b) {
    for (int i = 0; i < 3; i++)
        if (v->act[i] != a && v->act[i] != b) return v->act[i];
    return NULL;
}

static rq_status decode_one(rq_vae *v, const float *z, int h, int w, float *img, rq_err *err) {
    const rq_vae_config *c = &v->cfg;
    const int lat = c->latent_channels;
    const size_t hw = (size_t)h * w;
    rq_status s;
    float *x = v->act[0];
    const float sf = c->scaling_factor;
    for (size_t i = 0; i < (size_t)lat * hw; i++) x[i] = z[i] / sf;
    if (c->post_quant_conv) {
        float *y = v->act[1];
        if ((s = conv_fwd(v, &v->post_quant, x, h, w, 1, y, 0, err))) return s;
        x = y;
    }
    float *y = other(v, x, NULL);
    if ((s = conv_fwd(v, &v->conv_in, x, h, w, 1, y, 0, err))) return s;
    x = y;
    float *out, *t1, *t2;
    /* mid block */
    t1 = other(v, x, NULL), t2 = other(v, x, t1);
    if ((s = resnet_fwd(v, &v->mid_res[0], x, t1, t2, h, w, &out, err))) return s;
    x = out;
    if (c->mid_attention && (s = attn_fwd(v, &v->attn, x, other(v, x, NULL), h, w, err))) return s;
    t1 = other(v, x, NULL), t2 = other(v, x, t1);
    if ((s = resnet_fwd(v, &v->mid_res[1], x, t1, t2, h, w, &out, err))) return s;
    x = out;
    /* up blocks */
    int hh = h, ww = w;
    for (int i = 0; i < c->nlevels; i++) {
        const vae_upblock *u = &v->up[i];
        for (int j = 0; j < u->nres; j++) {
            t1 = other(v, x, NULL), t2 = other(v, x, t1);
            if ((s = resnet_fwd(v, &u->res[j], x, t1, t2, hh, ww, &out, err))) return s;
            x = out;
        }
        if (u->has_up) {
            y = other(v, x, NULL);
            if ((s = conv_fwd(v, &u->up, x, hh, ww, 2, y, 0, err))) return s;
            x = y, hh *= 2, ww *= 2;
        }
    }
    y = other(v, x, NULL);
    if ((s = norm_fwd(v, &v->norm_out, x, (long)hh * ww, 1, y, err))) return s;
    return conv_fwd(v, &v->conv_out, y, hh, ww, 1, img, 0, err);
}

rq_status rq_vae_decode(rq_vae *vae, const float *latents, int n, int h, int w, float *images, rq_err *err) {
    if (!vae || !latents || !images) return rq_err_set(err, RQ_EINVAL, "rq_vae_decode: NULL argument");
    const int f = rq_vae_upscale(vae);
    if (n <= 0 || h <= 0 || w <= 0 || (long)h * f > 16384 || (long)w * f > 16384)
        return rq_err_set(err, RQ_EINVAL, "rq_vae_decode: bad latent shape n=%d h=%d w=%d (upscale %d)", n, h, w, f);
    rq_status s = ws_ensure(vae, h, w, err);
    if (s) return s;
    const int lat = vae->cfg.latent_channels, oc = vae->cfg.out_channels;
    const size_t in_sz = (size_t)lat * h * w, out_sz = (size_t)oc * h * f * w * f;
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < in_sz; j++)
            if (!isfinite(latents[i * in_sz + j]))
                return rq_err_set(err, RQ_ENUM, "rq_vae_decode: latent %d has a non-finite value at index %zu", i, j);
        float *img = images + i * out_sz;
        if ((s = decode_one(vae, latents + i * in_sz, h, w, img, err))) return s;
        for (size_t j = 0; j < out_sz; j++) {
            if (!isfinite(img[j]))
                return rq_err_set(err, RQ_ENUM, "rq_vae_decode: image %d has a non-finite value at index %zu", i, j);
            if (vae->cfg.clamp) img[j] = img[j] < -1.0f ? -1.0f : (img[j] > 1.0f ? 1.0f : img[j]);
        }
    }
    return RQ_OK;
}

rq_status rq_vae_image_to_u8(const float *image, int c, int h, int w, uint8_t *out, rq_err *err) {
    if (!image || !out) return rq_err_set(err, RQ_EINVAL, "rq_vae_image_to_u8: NULL argument");
    if ((c != 1 && c != 3 && c != 4) || h <= 0 || w <= 0)
        return rq_err_set(err, RQ_EINVAL, "rq_vae_image_to_u8: bad shape c=%d h=%d w=%d (c must be 1, 3 or 4)", c, h, w);
    const size_t hw = (size_t)h * w;
    for (int ch = 0; ch < c; ch++)
        for (size_t p = 0; p < hw; p++) {
            double t = ((double)image[ch * hw + p] + 1.0) * 127.5;
            out[p * c + ch] = !(t > 0.0) ? 0 : t >= 255.0 ? 255 : (uint8_t)(t + 0.5);
        }
    return RQ_OK;
}
