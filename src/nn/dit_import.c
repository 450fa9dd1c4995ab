/* dit_import.c: pretrained DiT weights (safetensors, original or diffusers
 * names) -> rq_dit. See robuq/dit_import.h for the mapping and the checks.
 *
 * Three passes: (1) build the list of file tensors each model parameter is
 * made of ("sources"), (2) check presence, shape and dtype of every source
 * and collect the file tensors nothing uses, reporting all problems in one
 * message, (3) read. Nothing is read before everything checks out. */
#include "robuq/dit_import.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One file tensor that fills (part of) a model parameter, or a tensor that
 * is only checked (embedder copies, pos_embed). */
typedef enum { SRC_PARAM, SRC_TABLE, SRC_COPY, SRC_POS } src_kind;

typedef struct {
    src_kind kind;
    char name[160];          /* in the file, without the prefix */
    rq_tensor *dst;          /* parameter it fills (SRC_COPY: the one it must equal) */
    long offset;             /* first element of dst it fills */
    int ndim;
    int64_t shape[4];        /* expected shape */
    int table;               /* label table: num_classes rows (no null class) also fit */
    const rq_st_tensor *t;   /* found tensor, or NULL */
} src_t;

typedef struct {
    src_t *v;
    int n, cap;
} src_list;

const char *rq_dit_naming_name(rq_dit_naming n) {
    return n == RQ_DIT_NAMES_DIFFUSERS ? "diffusers" : n == RQ_DIT_NAMES_ORIGINAL ? "original DiT" : "auto";
}

static src_t *push(src_list *L, src_kind kind, rq_tensor *dst, long offset, int ndim, const int64_t *shape,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static src_t *push(src_list *L, src_kind kind, rq_tensor *dst, long offset, int ndim, const int64_t *shape,
                   const char *fmt, ...) {
    if (L->n == L->cap) {
        int nc = L->cap ? 2 * L->cap : 128;
        src_t *nv = realloc(L->v, sizeof *nv * (size_t)nc);
        if (!nv) return NULL;
        L->v = nv;
        L->cap = nc;
    }
    src_t *s = &L->v[L->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->dst = dst;
    s->offset = offset;
    s->ndim = ndim;
    for (int i = 0; i < ndim; i++) s->shape[i] = shape[i];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    return s;
}

/* A whole parameter from one file tensor of the same shape. */
static int push_param(src_list *L, rq_tensor *p, const char *name) {
    int64_t sh[4];
    for (int i = 0; i < p->ndim; i++) sh[i] = p->shape[i];
    return push(L, SRC_PARAM, p, 0, p->ndim, sh, "%s", name) ? 0 : -1;
}

/* weight + bias of a linear under a file prefix ("proj_out_2" -> .weight/.bias);
 * NULL: the parameters' own names. */
static int push_linear(src_list *L, rq_dit_linear *lin, const char *file_prefix) {
    char nm[160];
    if (!file_prefix) return push_param(L, lin->w, lin->w->name) || push_param(L, lin->b, lin->b->name) ? -1 : 0;
    snprintf(nm, sizeof nm, "%s.weight", file_prefix);
    if (push_param(L, lin->w, nm)) return -1;
    snprintf(nm, sizeof nm, "%s.bias", file_prefix);
    return push_param(L, lin->b, nm);
}

/* The reference parameters (not extras such as low-rank factors a quantizer
 * may have registered), under their own (= original DiT) names. */
static int build_original(src_list *L, rq_dit *m) {
    rq_dit_linear *pre[] = {&m->x_embed, &m->t_mlp0, &m->t_mlp2};
    for (int i = 0; i < 3; i++)
        if (push_linear(L, pre[i], NULL)) return -1;
    int64_t sh[2] = {m->y_table->shape[0], m->y_table->shape[1]};
    src_t *sc = push(L, SRC_TABLE, m->y_table, 0, 2, sh, "%s", m->y_table->name);
    if (!sc) return -1;
    sc->table = 1;
    for (int b = 0; b < m->cfg.depth; b++) {
        rq_dit_block *k = &m->blocks[b];
        rq_dit_linear *ls[] = {&k->qkv, &k->proj, &k->fc1, &k->fc2, &k->adaln};
        for (int i = 0; i < 5; i++)
            if (push_linear(L, ls[i], NULL)) return -1;
    }
    if (push_linear(L, &m->final_linear, NULL) || push_linear(L, &m->final_adaln, NULL)) return -1;
    int T = rq_dit_tokens(&m->cfg), D = m->cfg.hidden_size;
    return push(L, SRC_POS, NULL, 0, 3, (int64_t[]){1, T, D}, "pos_embed") ? 0 : -1;
}

static int build_diffusers(src_list *L, rq_dit *m) {
    const char *emb = "norm1.emb";
    int D = m->cfg.hidden_size, T = rq_dit_tokens(&m->cfg);
    if (push_linear(L, &m->x_embed, "pos_embed.proj")) return -1;
    /* The embedders, copied into every block by the conversion: block 0's
     * fill the model, the others are compared with it. */
    for (int b = 0; b < m->cfg.depth; b++) {
        struct { rq_tensor *p; const char *sub; } e[] = {
            {m->t_mlp0.w, "timestep_embedder.linear_1.weight"}, {m->t_mlp0.b, "timestep_embedder.linear_1.bias"},
            {m->t_mlp2.w, "timestep_embedder.linear_2.weight"}, {m->t_mlp2.b, "timestep_embedder.linear_2.bias"},
            {m->y_table, "class_embedder.embedding_table.weight"}};
        for (int k = 0; k < 5; k++) {
            rq_tensor *p = e[k].p;
            int64_t sh[2] = {p->shape[0], p->ndim > 1 ? p->shape[1] : 0};
            src_kind kind = b > 0 ? SRC_COPY : p == m->y_table ? SRC_TABLE : SRC_PARAM;
            src_t *sc = push(L, kind, p, 0, p->ndim, sh, "transformer_blocks.%d.%s.%s", b, emb, e[k].sub);
            if (!sc) return -1;
            sc->table = p == m->y_table;
        }
    }
    for (int b = 0; b < m->cfg.depth; b++) {
        rq_dit_block *blk = &m->blocks[b];
        char pre[96];
        /* qkv = rows of to_q | to_k | to_v */
        const char *qkv[3] = {"to_q", "to_k", "to_v"};
        for (int k = 0; k < 3; k++) {
            if (!push(L, SRC_PARAM, blk->qkv.w, (long)k * D * D, 2, (int64_t[]){D, D},
                      "transformer_blocks.%d.attn1.%s.weight", b, qkv[k]) ||
                !push(L, SRC_PARAM, blk->qkv.b, (long)k * D, 1, (int64_t[]){D},
                      "transformer_blocks.%d.attn1.%s.bias", b, qkv[k]))
                return -1;
        }
        snprintf(pre, sizeof pre, "transformer_blocks.%d.attn1.to_out.0", b);
        if (push_linear(L, &blk->proj, pre)) return -1;
        snprintf(pre, sizeof pre, "transformer_blocks.%d.ff.net.0.proj", b);
        if (push_linear(L, &blk->fc1, pre)) return -1;
        snprintf(pre, sizeof pre, "transformer_blocks.%d.ff.net.2", b);
        if (push_linear(L, &blk->fc2, pre)) return -1;
        snprintf(pre, sizeof pre, "transformer_blocks.%d.norm1.linear", b);
        if (push_linear(L, &blk->adaln, pre)) return -1;
    }
    if (push_linear(L, &m->final_adaln, "proj_out_1") || push_linear(L, &m->final_linear, "proj_out_2")) return -1;
    return push(L, SRC_POS, NULL, 0, 3, (int64_t[]){1, T, D}, "pos_embed.pos_embed") ? 0 : -1;
}

/* ---------------------------------------------------------------- checks */

static const char *strip(const char *name, const char *prefix) {
    size_t n = prefix ? strlen(prefix) : 0;
    if (n && strncmp(name, prefix, n)) return NULL;
    return name + n;
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *sh) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)sh[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Shape of t equals the expected one. SRC_TABLE also accepts num_classes
 * rows (no null class); SRC_POS also [T, D]. */
static int shape_ok(const src_t *s, const rq_st_tensor *t) {
    if (s->kind == SRC_POS && t->ndim == 2 && t->shape[0] == s->shape[1] && t->shape[1] == s->shape[2]) return 1;
    if (s->table && t->ndim == 2 && t->shape[0] == s->shape[0] - 1 && t->shape[1] == s->shape[1]) return 1;
    if (t->ndim != s->ndim) return 0;
    for (int i = 0; i < s->ndim; i++)
        if (t->shape[i] != s->shape[i]) return 0;
    return 1;
}

/* Which config key a mismatch most likely points at. */
static const char *shape_hint(const rq_dit *m, const src_t *s, const rq_st_tensor *t) {
    const rq_dit_config *c = &m->cfg;
    if (s->dst == m->final_linear.w || s->dst == m->final_linear.b) {
        int64_t rows = t->shape[0], pp = (int64_t)c->patch_size * c->patch_size;
        if (rows == pp * c->in_channels * 2 && !c->learn_sigma) return " (the file has learned sigma: set learn_sigma = on)";
        if (rows == pp * c->in_channels && c->learn_sigma) return " (the file has no learned sigma: set learn_sigma = off)";
    }
    if (s->dst == m->y_table) return " (check num_classes: the table has num_classes + 1 rows, the last one the null class)";
    if (s->dst == m->x_embed.w && t->ndim == 4) return " (x_embedder is [hidden_size, in_channels, patch, patch])";
    if (s->kind == SRC_POS) return " (check input_size / patch_size)";
    if (t->ndim >= 1 && s->ndim >= 1 && t->shape[t->ndim - 1] != s->shape[s->ndim - 1]) return " (check hidden_size / arch)";
    return "";
}

/* Bounded message builder. */
typedef struct {
    char s[2048];
    size_t n;
} msgbuf;

__attribute__((format(printf, 2, 3))) static void mb_add(msgbuf *b, const char *fmt, ...) {
    if (b->n >= sizeof b->s - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (k > 0) b->n += (size_t)k;
    if (b->n > sizeof b->s - 1) b->n = sizeof b->s - 1;
}

#define LIST_NAMES 4 /* names shown per problem class; the rest is counted */

static double rounding_tol(rq_st_dtype dt) {
    return dt == RQ_ST_F16 ? 1e-3 : dt == RQ_ST_BF16 ? 8e-3 : 1e-5;
}

static float round_to(rq_st_dtype dt, float x) {
    if (dt == RQ_ST_F16) return rq_f16_to_f32(rq_f32_to_f16(x));
    if (dt == RQ_ST_BF16) return rq_bf16_to_f32(rq_f32_to_bf16(x));
    return x;
}

static void add_dtype(rq_dit_import_report *r, const char *name) {
    char pat[16];
    snprintf(pat, sizeof pat, "%s", name);
    /* exact token match in "A+B+C" */
    const char *p = r->dtypes;
    size_t L = strlen(pat);
    while ((p = strstr(p, pat))) {
        if ((p == r->dtypes || p[-1] == '+') && (p[L] == '\0' || p[L] == '+')) return;
        p += L;
    }
    size_t n = strlen(r->dtypes);
    snprintf(r->dtypes + n, sizeof r->dtypes - n, "%s%s", n ? "+" : "", name);
}

rq_status rq_dit_import(rq_dit *m, const rq_safetensors *st, const rq_dit_import_opts *opts,
                        rq_dit_import_report *rep, rq_err *err) {
    if (!m || !st || !m->params) return rq_err_set(err, RQ_EINVAL, "rq_dit_import: NULL model or file");
    rq_dit_import_opts o = {0};
    if (opts) o = *opts;
    rq_dit_import_report r;
    memset(&r, 0, sizeof r);
    r.pos_embed_max_diff = -1;
    const char *file = st->path ? st->path : "<buffer>";
    const char *pfx = o.prefix && o.prefix[0] ? o.prefix : NULL;

    /* ---- naming: explicit, or from the names in the file */
    const char *orig_ex = NULL, *diff_ex = NULL;
    for (int i = 0; i < st->n; i++) {
        const char *nm = strip(st->tensors[i].name, pfx);
        if (!nm) continue;
        r.n_file_tensors++;
        if (!diff_ex && (starts(nm, "transformer_blocks.") || starts(nm, "proj_out_") || starts(nm, "pos_embed.proj.")))
            diff_ex = st->tensors[i].name;
        if (!orig_ex && (starts(nm, "blocks.") || starts(nm, "final_layer.") || starts(nm, "x_embedder.") ||
                         starts(nm, "t_embedder.") || starts(nm, "y_embedder.")))
            orig_ex = st->tensors[i].name;
    }
    r.naming = o.naming;
    if (r.naming == RQ_DIT_NAMES_AUTO) {
        if (orig_ex && diff_ex)
            return rq_err_set(err, RQ_EFORMAT, "%s: mixes original DiT names ('%.100s') and diffusers names ('%.100s')",
                              file, orig_ex, diff_ex);
        r.naming = diff_ex ? RQ_DIT_NAMES_DIFFUSERS : RQ_DIT_NAMES_ORIGINAL;
    }

    /* ---- sources */
    src_list L = {0};
    int bad = r.naming == RQ_DIT_NAMES_DIFFUSERS ? build_diffusers(&L, m) : build_original(&L, m);
    char *used = calloc((size_t)st->n + 1, 1);
    float *tmp = NULL;
    rq_status s = RQ_OK;
    if (bad || !used) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file);
        goto done;
    }

    /* ---- pass 2: presence, shape, dtype; then what nothing uses */
    msgbuf mb = {.n = 0};
    int n_missing = 0, n_shape = 0, n_dtype = 0, n_unexp = 0;
    msgbuf missing = {.n = 0}, shapes = {.n = 0}, dtypes = {.n = 0}, unexp = {.n = 0};
    char full[256];
    for (int i = 0; i < L.n; i++) {
        src_t *sc = &L.v[i];
        snprintf(full, sizeof full, "%s%s", pfx ? pfx : "", sc->name);
        sc->t = rq_st_find(st, full);
        if (!sc->t) {
            if (sc->kind == SRC_POS) continue; /* the buffer is optional */
            if (n_missing++ < LIST_NAMES) mb_add(&missing, "%s%s", n_missing > 1 ? ", " : "", full);
            continue;
        }
        used[sc->t - st->tensors] = 1;
        if (!shape_ok(sc, sc->t)) {
            if (n_shape++ == 0) {
                char want[96], got[96];
                shape_str(want, sizeof want, sc->ndim, sc->shape);
                shape_str(got, sizeof got, sc->t->ndim, sc->t->shape);
                mb_add(&shapes, "'%s': expected %s, found %s%s", full, want, got, shape_hint(m, sc, sc->t));
            }
            continue;
        }
        if (sc->t->dtype != RQ_ST_F32 && sc->t->dtype != RQ_ST_F16 && sc->t->dtype != RQ_ST_BF16 &&
            sc->t->dtype != RQ_ST_F64) {
            if (n_dtype++ == 0) mb_add(&dtypes, "'%s' has dtype %s (need F32, F16, BF16 or F64)", full, sc->t->dtype_name);
            continue;
        }
    }
    for (int i = 0; i < st->n; i++) {
        if (used[i]) continue;
        if (n_unexp++ < LIST_NAMES) mb_add(&unexp, "%s%s", n_unexp > 1 ? ", " : "", st->tensors[i].name);
    }
    r.n_unexpected = n_unexp;
    int unexp_err = n_unexp && !o.ignore_unexpected;
    if (n_missing || n_shape || n_dtype || unexp_err) {
        const rq_dit_config *c = &m->cfg;
        mb_add(&mb, "%s: does not fit the model (%s names; hidden %d, depth %d, patch %d, in_channels %d, input %d, "
               "classes %d, learn_sigma %d): ", file, rq_dit_naming_name(r.naming), c->hidden_size, c->depth,
               c->patch_size, c->in_channels, c->input_size, c->num_classes, c->learn_sigma);
        const char *sep = "";
        if (n_shape) {
            mb_add(&mb, "%sshape of %s", sep, shapes.s);
            if (n_shape > 1) mb_add(&mb, " (and %d more shape mismatches)", n_shape - 1);
            sep = "; ";
        }
        if (n_missing) {
            mb_add(&mb, "%smissing %d tensor%s: %s%s", sep, n_missing, n_missing > 1 ? "s" : "", missing.s,
                   n_missing > LIST_NAMES ? ", ..." : "");
            sep = "; ";
        }
        if (unexp_err) {
            mb_add(&mb, "%sunexpected %d tensor%s: %s%s", sep, n_unexp, n_unexp > 1 ? "s" : "", unexp.s,
                   n_unexp > LIST_NAMES ? ", ..." : "");
            sep = "; ";
        }
        if (n_dtype) mb_add(&mb, "%s%s%s", sep, dtypes.s, n_dtype > 1 ? " (and others)" : "");
        s = rq_err_set(err, n_shape ? RQ_ESHAPE : RQ_EFORMAT, "%s", mb.s);
        goto done;
    }
    if (n_unexp) {
        RQ_WARN("%s: ignoring %d tensor%s the model does not use: %s%s", file, n_unexp, n_unexp > 1 ? "s" : "",
                unexp.s, n_unexp > LIST_NAMES ? ", ..." : "");
        r.n_warnings++;
    }

    /* ---- pass 3: read */
    size_t tmp_n = 1;
    for (int i = 0; i < L.n; i++)
        if (L.v[i].t && (L.v[i].kind == SRC_COPY || L.v[i].kind == SRC_POS)) {
            size_t k = (size_t)rq_st_numel(L.v[i].t);
            if (k > tmp_n) tmp_n = k;
        }
    tmp = malloc(tmp_n * sizeof *tmp);
    if (!tmp) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file);
        goto done;
    }
    int n_copy_diff = 0;
    const char *first_copy_diff = NULL;
    for (int i = 0; i < L.n && !s; i++) {
        src_t *sc = &L.v[i];
        if (!sc->t) continue;
        add_dtype(&r, sc->t->dtype_name);
        long n = (long)rq_st_numel(sc->t);
        switch (sc->kind) {
        case SRC_PARAM:
            s = rq_st_read_f32(st, sc->t, sc->dst->data + sc->offset, err);
            if (!s && sc->offset == 0) r.n_loaded++;
            break;
        case SRC_TABLE:
            s = rq_st_read_f32(st, sc->t, sc->dst->data, err);
            if (!s) r.n_loaded++;
            if (!s && n < sc->dst->n) { /* no null-class row in the file */
                memset(sc->dst->data + n, 0, sizeof(float) * (size_t)(sc->dst->n - n));
                r.null_class_added = 1;
                r.n_warnings++;
                RQ_WARN("%s: '%s%s' has %lld rows = num_classes (no null class): added a zero null-class row; "
                        "unconditional sampling and CFG will not be meaningful", file, pfx ? pfx : "", sc->name,
                        (long long)sc->t->shape[0]);
            }
            break;
        case SRC_COPY:
            s = rq_st_read_f32(st, sc->t, tmp, err);
            if (!s) {
                long cmp_n = n < sc->dst->n ? n : sc->dst->n;
                if (memcmp(tmp, sc->dst->data, sizeof(float) * (size_t)cmp_n) != 0) {
                    if (!n_copy_diff++) first_copy_diff = sc->name;
                }
            }
            break;
        case SRC_POS: {
            s = rq_st_read_f32(st, sc->t, tmp, err);
            if (s) break;
            double md = 0;
            long at = 0;
            double tol = rounding_tol(sc->t->dtype);
            for (long k = 0; k < n; k++) {
                double d = fabs((double)tmp[k] - round_to(sc->t->dtype, m->pos_embed[k]));
                if (!(d <= md)) { /* also catches NaN */
                    md = isnan(d) ? INFINITY : d;
                    at = k;
                }
            }
            r.pos_embed_checked = 1;
            r.pos_embed_max_diff = md;
            if (md > tol) {
                int D = m->cfg.hidden_size;
                if (!o.pos_embed_warn_only) {
                    s = rq_err_set(err, RQ_EFORMAT,
                                   "%s: '%s%s' differs from the fixed 2-D sin-cos embedding by up to %.3g (token %ld, "
                                   "dim %ld): not a standard DiT (learned or differently laid out positions?)",
                                   file, pfx ? pfx : "", sc->name, md, at / D, at % D);
                } else {
                    r.n_warnings++;
                    RQ_WARN("%s: '%s%s' differs from our sin-cos embedding by up to %.3g (token %ld, dim %ld); "
                            "using ours", file, pfx ? pfx : "", sc->name, md, at / D, at % D);
                }
            }
            break;
        }
        }
    }
    if (!s && n_copy_diff) {
        r.n_warnings++;
        RQ_WARN("%s: %d per-block embedder %s from block 0's (first: '%s'); using block 0's, as diffusers does",
                file, n_copy_diff, n_copy_diff > 1 ? "copies differ" : "copy differs", first_copy_diff);
    }
done:
    free(tmp);
    free(used);
    free(L.v);
    if (rep) *rep = r;
    return s;
}

rq_status rq_dit_import_file(rq_dit *m, const char *path, const rq_dit_import_opts *opts,
                             rq_dit_import_report *rep, rq_err *err) {
    rq_safetensors st;
    rq_status s = rq_st_open(path, &st, err);
    if (s) return s;
    s = rq_dit_import(m, &st, opts, rep, err);
    rq_st_close(&st);
    return s;
}
