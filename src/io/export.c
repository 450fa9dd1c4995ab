/* export.c: write and load packed W1.58 exports (format in export.h). */
#include "robuq/export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "robuq/h5io.h"
#include "robuq/ops.h"
#include "robuq/qlinear.h"
#include "robuq/quant.h"
#include "robuq/tlinear.h"
#include "robuq/train.h"

#define MAXL 1024

static int is_ternary(const rq_dit_linear *L) { return L->q && L->q->w_ternary; }

/* ------------------------------------------------------------------ write */

/* Codes and gamma of W' = W H, minus A B with a low-rank branch: built
 * with the same ops as the fake-quant forward, so the floats are identical. */
static rq_status ternarize_layer(const rq_dit_linear *L, int8_t *codes, float *gamma, rq_err *err) {
    int out = L->w->shape[0], in = (int)(L->w->n / out);
    rq_graph g;
    if (rq_graph_init(&g, (size_t)L->w->n * sizeof(float) * 4 + (1 << 20)))
        return rq_err_set(err, RQ_ENOMEM, "export: out of memory for %s", L->w->name);
    g.grad_enabled = 0;
    rq_tensor *w = rq_tensor_wrap(&g, L->w->data, 2, (int[]){out, in});
    if (L->q->hadamard) w = rq_hadamard_op(&g, w, &L->q->had);
    if (L->lr_a) {
        rq_tensor *a = rq_tensor_wrap(&g, L->lr_a->data, 2, L->lr_a->shape);
        rq_tensor *b = rq_tensor_wrap(&g, L->lr_b->data, 2, L->lr_b->shape);
        w = rq_add(&g, w, rq_scale(&g, rq_matmul(&g, a, b), -1.0f));
    }
    rq_status s = w ? rq_ternary_encode(w->data, codes, gamma, out, in, err)
                    : rq_err_set(err, g.err.code, "export: %s: %s", L->w->name, g.err.msg);
    rq_graph_free(&g);
    return s;
}

static rq_status write_layer(rq_h5_writer *w, const rq_dit_linear *L, const char *name, rq_tpack_format packing,
                             rq_export_stats *st, rq_err *err) {
    int out = L->w->shape[0], in = (int)(L->w->n / out);
    size_t nbytes = packing == RQ_TPACK_TRIT5 ? rq_trit5_bytes(out, in) : rq_t2_bytes(out, in);
    int8_t *codes = malloc((size_t)L->w->n);
    float *gamma = malloc((size_t)out * sizeof(float));
    uint8_t *packed = malloc(nbytes ? nbytes : 1);
    rq_status s = RQ_OK;
    if (!codes || !gamma || !packed) s = rq_err_set(err, RQ_ENOMEM, "export: out of memory for %s", name);
    if (!s) s = ternarize_layer(L, codes, gamma, err);
    if (!s)
        s = packing == RQ_TPACK_TRIT5 ? rq_trit5_pack(codes, out, in, packed, err)
                                      : rq_t2_pack(codes, out, in, packed, err);
    char path[256];
    long nb = (long)nbytes, no = out;
    snprintf(path, sizeof path, "/layers/%s", name);
    if (!s) s = rq_h5w_group(w, path, err);
    snprintf(path, sizeof path, "/layers/%s/w_packed", name);
    if (!s) s = rq_h5w_write_u8(w, path, packed, 1, &nb, err);
    snprintf(path, sizeof path, "/layers/%s/w_scale", name);
    if (!s) s = rq_h5w_write_f32(w, path, gamma, 1, &no, err);
    snprintf(path, sizeof path, "/layers/%s/bias", name);
    if (!s) s = rq_h5w_write_f32(w, path, L->b->data, 1, &no, err);
    if (!s && L->lr_a) {
        long sa[2] = {L->lr_a->shape[0], L->lr_a->shape[1]}, sb[2] = {L->lr_b->shape[0], L->lr_b->shape[1]};
        snprintf(path, sizeof path, "/layers/%s/lowrank_A", name);
        s = rq_h5w_write_f32(w, path, L->lr_a->data, 2, sa, err);
        snprintf(path, sizeof path, "/layers/%s/lowrank_B", name);
        if (!s) s = rq_h5w_write_f32(w, path, L->lr_b->data, 2, sb, err);
        if (!s) st->fp_params += L->lr_a->n + L->lr_b->n;
    }
    snprintf(path, sizeof path, "/layers/%s", name);
    if (!s) s = rq_h5w_attr_i64(w, path, "out", out, err);
    if (!s) s = rq_h5w_attr_i64(w, path, "in", in, err);
    if (!s) s = rq_h5w_attr_i64(w, path, "a_bits", L->q->a_bits, err);
    if (!s) s = rq_h5w_attr_str(w, path, "a_method", rq_actq_method_name(L->q->a_method), err);
    if (!s) s = rq_h5w_attr_i64(w, path, "hadamard", L->q->hadamard ? L->q->had.n : 0, err);
    if (!s) s = rq_h5w_attr_str(w, path, "packing", rq_tpack_format_name(packing), err);
    if (!s) {
        st->ternary_weights += L->w->n;
        st->packed_bytes += nb;
        st->fp_params += 2L * out;
        st->ternary_layers++;
    }
    free(codes), free(gamma), free(packed);
    return s;
}

rq_status rq_export_write(const char *path, const rq_dit *m, const rq_export_opts *o, rq_export_stats *stats,
                          rq_err *err) {
    if (!path || !m || !o || !o->config_text) return rq_err_set(err, RQ_EINVAL, "export: NULL argument");
    if (o->packing != RQ_TPACK_TRIT5 && o->packing != RQ_TPACK_2BIT)
        return rq_err_set(err, RQ_EINVAL, "export: unknown packing %d", (int)o->packing);
    rq_export_stats st = {0};
    rq_dit_linear *ls[MAXL];
    const char *names[MAXL];
    int n = rq_dit_linears((rq_dit *)m, ls, names, MAXL);
    if (n > MAXL) return rq_err_set(err, RQ_EINVAL, "export: %d linears (max %d)", n, MAXL);
    rq_h5_writer *w = rq_h5w_open(path, err);
    if (!w) return err->code;
    rq_status s = RQ_OK;
    if (!s) s = rq_h5w_attr_str(w, "/", "format", RQ_EXPORT_FORMAT, err);
    if (!s) s = rq_h5w_attr_i64(w, "/", "version", RQ_EXPORT_VERSION, err);
    if (!s) s = rq_h5w_attr_str(w, "/", "packing", rq_tpack_format_name(o->packing), err);
    if (!s) s = rq_h5w_attr_str(w, "/", "config", o->config_text, err);
    if (!s) s = rq_h5w_attr_str(w, "/", "source", o->source ? o->source : "", err);
    if (!s) s = rq_h5w_attr_str(w, "/", "weights", o->weights ? o->weights : "", err);
    if (!s) s = rq_h5w_attr_i64(w, "/", "step", o->step, err);
    if (!s) s = rq_h5w_attr_i64(w, "/", "attn_bits", m->attn_bits, err);
    if (!s) s = rq_h5w_attr_str(w, "/", "attn_method", rq_actq_method_name(m->attn_method), err);
    /* fp weights with quantized activations: the quantizer settings, the
     * weight itself goes to /fp with the other fp parameters */
    for (int i = 0; !s && i < n; i++) {
        if (!ls[i]->q || ls[i]->q->w_ternary || !ls[i]->q->a_bits) continue;
        char ln[128], g[192];
        rq_dit_layer_name(names[i], ln, sizeof ln);
        snprintf(g, sizeof g, "/layers/%s", ln);
        s = rq_h5w_group(w, g, err);
        if (!s) s = rq_h5w_attr_str(w, g, "weights", "fp32", err);
        if (!s) s = rq_h5w_attr_i64(w, g, "a_bits", ls[i]->q->a_bits, err);
        if (!s) s = rq_h5w_attr_str(w, g, "a_method", rq_actq_method_name(ls[i]->q->a_method), err);
        if (!s) s = rq_h5w_attr_i64(w, g, "hadamard", ls[i]->q->hadamard ? ls[i]->q->had.n : 0, err);
    }
    for (int i = 0; !s && i < n; i++) {
        if (!is_ternary(ls[i])) continue;
        char ln[128];
        rq_dit_layer_name(names[i], ln, sizeof ln);
        s = write_layer(w, ls[i], ln, o->packing, &st, err);
    }
    /* every parameter that is not part of a ternary layer, as fp32 */
    for (int p = 0; !s && p < m->n_params; p++) {
        const rq_tensor *t = m->params[p];
        int owned = 0;
        for (int i = 0; i < n && !owned; i++)
            owned = is_ternary(ls[i]) && (ls[i]->w == t || ls[i]->b == t || ls[i]->lr_a == t || ls[i]->lr_b == t);
        if (owned) continue;
        long shape[4];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        char dp[160];
        snprintf(dp, sizeof dp, "/fp/%s", t->name);
        s = rq_h5w_write_f32(w, dp, t->data, t->ndim, shape, err);
        st.fp_params += t->n;
    }
    for (int i = 0; i < n; i++) st.fp_layers += !is_ternary(ls[i]);
    if (s) {
        rq_h5w_abort(w);
        return s;
    }
    if (rq_h5w_close_commit(w, err)) return err->code;
    st.bits_per_weight = st.ternary_weights ? 8.0 * (double)st.packed_bytes / (double)st.ternary_weights : 0;
    struct stat sb;
    if (!stat(path, &sb)) st.file_bytes = (long)sb.st_size;
    if (stats) *stats = st;
    return RQ_OK;
}

/* ------------------------------------------------------------------ load */

int rq_export_is(const char *path) {
    rq_err e = {0};
    rq_h5_reader *r = path ? rq_h5r_open(path, &e) : NULL;
    if (!r) return 0;
    char fmt[64] = "";
    int yes = !rq_h5r_get_str(r, "/", "format", fmt, sizeof fmt, &e) && !strcmp(fmt, RQ_EXPORT_FORMAT);
    rq_h5r_close(r);
    return yes;
}

static rq_status get_int_attr(rq_h5_reader *r, const char *obj, const char *name, long lo, long hi, long *out,
                              rq_err *err) {
    int64_t v;
    if (rq_h5r_get_i64(r, obj, name, &v, err)) return err->code;
    if (v < lo || v > hi)
        return rq_err_set(err, RQ_EFORMAT, "%s: %s attribute '%s' = %lld, expected %ld..%ld", rq_h5r_filename(r), obj,
                          name, (long long)v, lo, hi);
    *out = (long)v;
    return RQ_OK;
}

/* One ternary layer: validates the group against the model's linear and
 * builds its integer form. */
/* A layer with fp weights and quantized activations: only its quantizer. */
static rq_status load_actq_layer(rq_h5_reader *r, rq_dit_linear *L, const char *g, const char *name, rq_err *err) {
    const char *file = rq_h5r_filename(r);
    int out = L->w->shape[0], in = (int)(L->w->n / out);
    char wts[16], method[32];
    long bits = 0, had = 0;
    if (rq_h5r_get_str(r, g, "weights", wts, sizeof wts, err) || get_int_attr(r, g, "a_bits", 1, RQ_ACTQ_MAX_BITS, &bits, err) ||
        get_int_attr(r, g, "hadamard", 0, in, &had, err) || rq_h5r_get_str(r, g, "a_method", method, sizeof method, err))
        return err->code;
    int am;
    rq_err me = {0};
    if (strcmp(wts, "fp32")) return rq_err_set(err, RQ_EFORMAT, "%s: %s weights = '%s', expected fp32", file, g, wts);
    if (rq_actq_method_parse(method, &am, &me))
        return rq_err_set(err, RQ_EFORMAT, "%s: %s attribute a_method = '%s', expected robust or minmax", file, g, method);
    if (had != 0 && had != in)
        return rq_err_set(err, RQ_EFORMAT, "%s: %s attribute hadamard = %ld, expected 0 or %d", file, g, had, in);
    rq_qlinear q = {0};
    q.a_bits = (int)bits, q.a_method = am, q.hadamard = had != 0;
    return rq_qlinear_attach(L, &q, name, err);
}

/* The fp32 low-rank factors of a layer, registered as model parameters. */
static rq_status load_lowrank(rq_h5_reader *r, rq_dit *m, rq_dit_linear *L, const char *g, const char *name,
                              rq_export_stats *st, rq_err *err) {
    int out = L->w->shape[0], in = (int)(L->w->n / out), nd;
    char pa[256], pb[256], na[160], nb[160];
    long sh[RQ_H5_MAX_DIMS];
    snprintf(pa, sizeof pa, "%s/lowrank_A", g);
    snprintf(pb, sizeof pb, "%s/lowrank_B", g);
    if (rq_h5r_shape(r, pa, &nd, sh, err)) return err->code;
    if (nd != 2 || sh[0] != out || sh[1] < 1 || sh[1] > (out < in ? out : in))
        return rq_err_set(err, RQ_ESHAPE, "%s: %s must be [%d, r] with 1 <= r <= %d", rq_h5r_filename(r), pa, out,
                          out < in ? out : in);
    int rank = (int)sh[1];
    long shb[2] = {rank, in};
    if (rq_h5r_check_shape(r, pb, 2, shb, err)) return err->code;
    snprintf(na, sizeof na, "%s.lowrank_A", name);
    snprintf(nb, sizeof nb, "%s.lowrank_B", name);
    rq_tensor *a = rq_tensor_new(2, (int[]){out, rank}, 0, na), *b = rq_tensor_new(2, (int[]){rank, in}, 0, nb);
    if (!a || !b || rq_dit_add_param(m, a, err)) {
        rq_tensor_free(a), rq_tensor_free(b);
        return err->code ? err->code : rq_err_set(err, RQ_ENOMEM, "out of memory");
    }
    if (rq_dit_add_param(m, b, err)) {
        rq_tensor_free(b);
        return err->code;
    }
    L->lr_a = a, L->lr_b = b;
    if (rq_h5r_read_f32(r, pa, a->data, a->n, err) || rq_h5r_read_f32(r, pb, b->data, b->n, err)) return err->code;
    for (long i = 0; i < a->n; i++)
        if (!isfinite(a->data[i])) return rq_err_set(err, RQ_EFORMAT, "%s: %s holds a non-finite value", rq_h5r_filename(r), pa);
    for (long i = 0; i < b->n; i++)
        if (!isfinite(b->data[i])) return rq_err_set(err, RQ_EFORMAT, "%s: %s holds a non-finite value", rq_h5r_filename(r), pb);
    st->fp_params += a->n + b->n;
    return RQ_OK;
}

static rq_status load_layer(rq_h5_reader *r, rq_dit *m, rq_dit_linear *L, const char *name, rq_tpack_format packing,
                            rq_export_stats *st, rq_err *err) {
    const char *file = rq_h5r_filename(r);
    int out = L->w->shape[0], in = (int)(L->w->n / out);
    char g[192], p[256];
    snprintf(g, sizeof g, "/layers/%s", name);
    if (rq_h5r_exists(r, g) != 2)
        return rq_err_set(err, RQ_EFORMAT, "%s: missing group %s (the config quantizes this layer)", file, g);
    long fo = 0, fi = 0, bits = 0, had = 0;
    char method[32], pk[16];
    if (get_int_attr(r, g, "out", out, out, &fo, err) || get_int_attr(r, g, "in", in, in, &fi, err) ||
        get_int_attr(r, g, "a_bits", 0, RQ_ACTQ_MAX_BITS, &bits, err) ||
        get_int_attr(r, g, "hadamard", 0, in, &had, err) || rq_h5r_get_str(r, g, "a_method", method, sizeof method, err) ||
        rq_h5r_get_str(r, g, "packing", pk, sizeof pk, err))
        return err->code;
    int am;
    rq_err me = {0};
    if (rq_actq_method_parse(method, &am, &me))
        return rq_err_set(err, RQ_EFORMAT, "%s: %s attribute a_method = '%s', expected robust or minmax", file, g, method);
    if (had != 0 && had != in)
        return rq_err_set(err, RQ_EFORMAT, "%s: %s attribute hadamard = %ld, expected 0 or %d", file, g, had, in);
    if (strcmp(pk, rq_tpack_format_name(packing)))
        return rq_err_set(err, RQ_EFORMAT, "%s: %s packing '%s' differs from the file's '%s'", file, g, pk,
                          rq_tpack_format_name(packing));
    size_t nbytes = packing == RQ_TPACK_TRIT5 ? rq_trit5_bytes(out, in) : rq_t2_bytes(out, in);
    uint8_t *packed = malloc(nbytes);
    float *gamma = malloc((size_t)out * sizeof(float));
    rq_status s = (!packed || !gamma) ? rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file) : RQ_OK;
    snprintf(p, sizeof p, "%s/w_packed", g);
    if (!s) s = rq_h5r_read_u8(r, p, packed, (long)nbytes, err);
    snprintf(p, sizeof p, "%s/w_scale", g);
    if (!s) s = rq_h5r_read_f32(r, p, gamma, out, err);
    snprintf(p, sizeof p, "%s/bias", g);
    if (!s) s = rq_h5r_read_f32(r, p, L->b->data, out, err);
    for (int i = 0; !s && i < out; i++)
        if (!(gamma[i] > 0) || !isfinite(gamma[i]) || !isfinite(L->b->data[i]))
            s = rq_err_set(err, RQ_EFORMAT, "%s: %s row %d: w_scale %g, bias %g (both finite, scale > 0)", file, g, i,
                           (double)gamma[i], (double)L->b->data[i]);
    if (!s) {
        rq_qlinear q = {0};
        q.w_ternary = 1, q.a_bits = (int)bits, q.a_method = am, q.hadamard = had != 0;
        s = rq_qlinear_attach(L, &q, name, err);
    }
    rq_err pe = {0};
    if (!s && rq_qlinear_set_integer(L, packing, packed, nbytes, gamma, L->b->data, name, &pe))
        s = rq_err_set(err, pe.code, "%s: %s/w_packed: %s", file, g, pe.msg);
    snprintf(p, sizeof p, "%s/lowrank_A", g);
    if (!s && rq_h5r_exists(r, p) == 1) s = load_lowrank(r, m, L, g, name, st, err);
    if (!s) {
        st->ternary_weights += L->w->n;
        st->packed_bytes += (long)nbytes;
        st->fp_params += 2L * out; /* scale + bias */
        st->ternary_layers++;
    }
    free(packed), free(gamma);
    return s;
}

rq_status rq_export_load(const char *path, rq_dit *m, rq_config **cfg_out, rq_export_stats *stats, rq_err *err) {
    if (!path || !m) return rq_err_set(err, RQ_EINVAL, "export load: NULL argument");
    memset(m, 0, sizeof *m);
    rq_h5_reader *r = rq_h5r_open(path, err);
    if (!r) return err->code;
    rq_export_stats st = {0};
    rq_config *cfg = NULL;
    char fmt[64], pk[16];
    long version;
    char *text = NULL;
    rq_status s = rq_h5r_get_str(r, "/", "format", fmt, sizeof fmt, err);
    if (!s && strcmp(fmt, RQ_EXPORT_FORMAT))
        s = rq_err_set(err, RQ_EFORMAT, "%s: format '%s', expected '%s' (a robuq-export file)", path, fmt,
                       RQ_EXPORT_FORMAT);
    if (!s) s = get_int_attr(r, "/", "version", RQ_EXPORT_VERSION, RQ_EXPORT_VERSION, &version, err);
    if (!s) s = rq_h5r_get_str(r, "/", "packing", pk, sizeof pk, err);
    rq_tpack_format packing = RQ_TPACK_TRIT5;
    rq_err pe = {0};
    if (!s && rq_tpack_format_parse(pk, &packing, &pe))
        s = rq_err_set(err, RQ_EFORMAT, "%s: packing '%s', expected trit5 or 2bit", path, pk);
    /* the config text can be long: size the buffer generously */
    if (!s && !(text = malloc(1 << 20))) s = rq_err_set(err, RQ_ENOMEM, "out of memory");
    if (!s) s = rq_h5r_get_str(r, "/", "config", text, 1 << 20, err);
    if (!s && !(cfg = rq_config_new())) s = rq_err_set(err, RQ_ENOMEM, "out of memory");
    char cname[1200];
    snprintf(cname, sizeof cname, "%s:config", path);
    if (!s) s = rq_config_load_string(cfg, text, cname, err);
    free(text);
    rq_dit_config mc;
    if (!s) s = rq_model_config_from(cfg, &mc, err);
    if (!s) s = rq_dit_init(m, &mc, 0, err);
    /* attention matmuls: fake-quant bits -> the integer attention kernels */
    long abits = 0;
    char ameth[32] = "minmax";
    if (!s) s = get_int_attr(r, "/", "attn_bits", 0, RQ_ACTQ_MAX_BITS, &abits, err);
    if (!s) s = rq_h5r_get_str(r, "/", "attn_method", ameth, sizeof ameth, err);
    if (!s && rq_actq_method_parse(ameth, &m->attn_method, &pe))
        s = rq_err_set(err, RQ_EFORMAT, "%s: attn_method '%s', expected robust or minmax", path, ameth);
    if (!s) m->attn_bits = (int)abits, m->attn_integer = 1, m->fused_infer = 1;

    rq_dit_linear *ls[MAXL];
    const char *names[MAXL];
    int n = s ? 0 : rq_dit_linears(m, ls, names, MAXL);
    /* ternary layers: exactly those with a /layers group */
    for (int i = 0; !s && i < n; i++) {
        char ln[128], g[192];
        rq_dit_layer_name(names[i], ln, sizeof ln);
        snprintf(g, sizeof g, "/layers/%s", ln);
        if (rq_h5r_exists(r, g) == 2 && rq_h5r_has_attr(r, g, "weights")) {
            s = load_actq_layer(r, ls[i], g, ln, err); /* fp weight, read with /fp below */
        } else if (rq_h5r_exists(r, g) == 2) {
            s = load_layer(r, m, ls[i], ln, packing, &st, err);
            /* the latent fp32 weight is not needed any more */
            if (!s) {
                rq_free(ls[i]->w->data);
                ls[i]->w->data = NULL;
            }
        }
    }
    for (int p = 0; !s && p < m->n_params; p++) {
        rq_tensor *t = m->params[p];
        int owned = 0;
        for (int i = 0; i < n && !owned; i++)
            owned = is_ternary(ls[i]) && (ls[i]->w == t || ls[i]->b == t || ls[i]->lr_a == t || ls[i]->lr_b == t);
        if (owned) continue;
        char dp[160];
        snprintf(dp, sizeof dp, "/fp/%s", t->name);
        if (rq_h5r_exists(r, dp) != 1) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: missing dataset %s", path, dp);
            break;
        }
        long shape[4];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        s = rq_h5r_check_shape(r, dp, t->ndim, shape, err);
        if (!s) s = rq_h5r_read_f32(r, dp, t->data, t->n, err);
        st.fp_params += t->n;
    }
    for (int i = 0; i < n; i++) st.fp_layers += !is_ternary(ls[i]);
    rq_h5r_close(r);
    if (s) {
        rq_dit_free(m);
        rq_config_free(cfg);
        return s;
    }
    st.bits_per_weight = st.ternary_weights ? 8.0 * (double)st.packed_bytes / (double)st.ternary_weights : 0;
    struct stat sb;
    if (!stat(path, &sb)) st.file_bytes = (long)sb.st_size;
    if (stats) *stats = st;
    if (cfg_out) *cfg_out = cfg;
    else rq_config_free(cfg);
    return RQ_OK;
}

rq_status rq_model_load_any(const char *path, const char *which, rq_dit *m, rq_config **cfg_out, rq_err *err) {
    if (!path || !m) return rq_err_set(err, RQ_EINVAL, "model load: NULL argument");
    if (rq_export_is(path)) return rq_export_load(path, m, cfg_out, NULL, err);
    return rq_model_from_ckpt(path, which ? which : "ema", m, cfg_out, err);
}
