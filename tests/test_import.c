/* test_import.c: pretrained DiT import from safetensors files the test
 * writes (tiny DiT: D=64, depth 2, patch 2, 8x8x4 input, 5 classes, learned
 * sigma), in the original and the diffusers naming, in F32/F16/BF16: the
 * weights land where they belong (the imported model's forward equals that
 * of a model whose parameters were set directly), and missing, unexpected,
 * mis-shaped or inconsistent tensors give the expected errors/warnings. Also
 * runs the robuq-import tool. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "robuq/dit_import.h"
#include "robuq/ops.h"
#include "robuq/train.h"

#define IMPORT ROBUQ_BIN_DIR "/robuq-import"

static const char *tdir(void **state) { return ((tu_dir *)*state)->dir; }

static rq_dit_config tiny_cfg(void) {
    rq_dit_config c = {.input_size = 8, .in_channels = 4, .patch_size = 2, .hidden_size = 64, .depth = 2,
                       .num_heads = 4, .num_classes = 5, .mlp_ratio = 4.0f, .learn_sigma = 1};
    return c;
}

/* A model with every parameter random (the reference init leaves adaLN and
 * the final layer at zero, which would hide misplaced weights). */
static void random_model(rq_dit *m, const rq_dit_config *c, uint64_t seed) {
    rq_err e = {0};
    assert_int_equal(rq_dit_init(m, c, seed, &e), RQ_OK);
    for (int i = 0; i < m->n_params; i++) tu_fill(&seed, m->params[i]->data, m->params[i]->n, -0.15f, 0.15f);
}

/* ------------------------------------------------------- named tensor list */

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[4];
    float *data;
    int owned;
} ntensor;

typedef struct {
    ntensor v[256];
    int n;
} nlist;

static ntensor *nl_add(nlist *L, const char *name, int ndim, const int64_t *shape, float *data, int owned) {
    assert_true(L->n < 256);
    ntensor *t = &L->v[L->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->owned = owned;
    return t;
}

static ntensor *nl_find(nlist *L, const char *name) {
    for (int i = 0; i < L->n; i++)
        if (!strcmp(L->v[i].name, name)) return &L->v[i];
    return NULL;
}

static void nl_remove(nlist *L, const char *name) {
    ntensor *t = nl_find(L, name);
    assert_non_null(t);
    if (t->owned) free(t->data);
    *t = L->v[--L->n];
}

/* Owned copy of a tensor's data (so it can be perturbed). */
static float *nl_own(ntensor *t) {
    long n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    if (!t->owned) {
        float *c = malloc(sizeof(float) * (size_t)(n ? n : 1));
        memcpy(c, t->data, sizeof(float) * (size_t)n);
        t->data = c;
        t->owned = 1;
    }
    return t->data;
}

static void nl_free(nlist *L) {
    for (int i = 0; i < L->n; i++)
        if (L->v[i].owned) free(L->v[i].data);
    L->n = 0;
}

static void add_param(nlist *L, const char *name, rq_tensor *p) {
    int64_t sh[4];
    for (int i = 0; i < p->ndim; i++) sh[i] = p->shape[i];
    nl_add(L, name, p->ndim, sh, p->data, 0);
}

static void add_pos(nlist *L, rq_dit *m, const char *name) {
    int64_t sh[3] = {1, rq_dit_tokens(&m->cfg), m->cfg.hidden_size};
    nl_add(L, name, 3, sh, m->pos_embed, 0);
}

static void nl_original(nlist *L, rq_dit *m) {
    L->n = 0;
    for (int i = 0; i < m->n_params; i++) add_param(L, m->params[i]->name, m->params[i]);
    add_pos(L, m, "pos_embed");
}

/* The layout scripts/convert_dit_to_diffusers.py produces. */
static void nl_diffusers(nlist *L, rq_dit *m) {
    L->n = 0;
    char nm[160];
    int D = m->cfg.hidden_size;
    add_param(L, "pos_embed.proj.weight", m->x_embed.w);
    add_param(L, "pos_embed.proj.bias", m->x_embed.b);
    for (int b = 0; b < m->cfg.depth; b++) {
        rq_dit_block *k = &m->blocks[b];
#define P(sub, t)                                                   \
        snprintf(nm, sizeof nm, "transformer_blocks.%d.%s", b, sub); \
        add_param(L, nm, t);
        P("norm1.emb.timestep_embedder.linear_1.weight", m->t_mlp0.w)
        P("norm1.emb.timestep_embedder.linear_1.bias", m->t_mlp0.b)
        P("norm1.emb.timestep_embedder.linear_2.weight", m->t_mlp2.w)
        P("norm1.emb.timestep_embedder.linear_2.bias", m->t_mlp2.b)
        P("norm1.emb.class_embedder.embedding_table.weight", m->y_table)
        P("norm1.linear.weight", k->adaln.w)
        P("norm1.linear.bias", k->adaln.b)
        P("attn1.to_out.0.weight", k->proj.w)
        P("attn1.to_out.0.bias", k->proj.b)
        P("ff.net.0.proj.weight", k->fc1.w)
        P("ff.net.0.proj.bias", k->fc1.b)
        P("ff.net.2.weight", k->fc2.w)
        P("ff.net.2.bias", k->fc2.b)
#undef P
        const char *qkv[3] = {"to_q", "to_k", "to_v"};
        for (int j = 0; j < 3; j++) {
            snprintf(nm, sizeof nm, "transformer_blocks.%d.attn1.%s.weight", b, qkv[j]);
            nl_add(L, nm, 2, (int64_t[]){D, D}, k->qkv.w->data + (long)j * D * D, 0);
            snprintf(nm, sizeof nm, "transformer_blocks.%d.attn1.%s.bias", b, qkv[j]);
            nl_add(L, nm, 1, (int64_t[]){D}, k->qkv.b->data + (long)j * D, 0);
        }
    }
    add_param(L, "proj_out_1.weight", m->final_adaln.w);
    add_param(L, "proj_out_1.bias", m->final_adaln.b);
    add_param(L, "proj_out_2.weight", m->final_linear.w);
    add_param(L, "proj_out_2.bias", m->final_linear.b);
}

static void nl_write(nlist *L, const char *path, rq_st_dtype dt) {
    const char *names[256];
    int nd[256];
    const int64_t *sh[256];
    const float *data[256];
    for (int i = 0; i < L->n; i++) {
        names[i] = L->v[i].name;
        nd[i] = L->v[i].ndim;
        sh[i] = L->v[i].shape;
        data[i] = L->v[i].data;
    }
    rq_err e = {0};
    if (rq_st_write(path, L->n, names, nd, sh, data, dt, &e)) fail_msg("%s", e.msg);
}

/* ------------------------------------------------------------ helpers */

/* Forward of 3 samples (one of them the null class) into out[3*8*8*8]. */
static void forward(rq_dit *m, float *out) {
    const rq_dit_config *c = &m->cfg;
    int N = 3, C = c->in_channels, S = c->input_size;
    float x[3 * 4 * 8 * 8], t[3] = {1.0f, 500.0f, 999.0f};
    int y[3] = {0, 4, c->num_classes};
    uint64_t s = 99;
    tu_fill(&s, x, N * C * S * S, -1.5f, 1.5f);
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 1 << 22), RQ_OK);
    g.grad_enabled = 0;
    rq_tensor *o = rq_dit_forward(&g, m, rq_tensor_wrap(&g, x, 4, (int[]){N, C, S, S}),
                                  rq_tensor_wrap(&g, t, 1, (int[]){N}), y);
    if (!rq_graph_ok(&g)) fail_msg("%s", g.err.msg);
    memcpy(out, o->data, sizeof(float) * (size_t)o->n);
    rq_graph_free(&g);
}

static float round_dt(rq_st_dtype dt, float x) {
    if (dt == RQ_ST_F16) return rq_f16_to_f32(rq_f32_to_f16(x));
    if (dt == RQ_ST_BF16) return rq_bf16_to_f32(rq_f32_to_bf16(x));
    return x;
}

static void assert_same_params(const rq_dit *a, const rq_dit *b) {
    assert_int_equal(a->n_params, b->n_params);
    for (int i = 0; i < a->n_params; i++)
        if (memcmp(a->params[i]->data, b->params[i]->data, sizeof(float) * (size_t)a->params[i]->n)) {
            print_error("parameter %s differs\n", a->params[i]->name);
            fail();
        }
}

static rq_status import(rq_dit *m, const char *path, const rq_dit_import_opts *o, rq_dit_import_report *r,
                        rq_err *e) {
    rq_err_clear(e);
    rq_dit_free(m);
    rq_dit_config c = tiny_cfg();
    rq_err e2 = {0};
    assert_int_equal(rq_dit_init(m, &c, 12345, &e2), RQ_OK);
    return rq_dit_import_file(m, path, o, r, e);
}

static void expect_msg(const rq_err *e, const char *needle) {
    if (!strstr(e->msg, needle)) fail_msg("message '%s' lacks '%s'", e->msg, needle);
}

/* ---------------------------------------------------------------- tests */

/* Both namings x F32/F16/BF16: parameters equal the source rounded to the
 * file dtype, and the forward equals the forward of a model whose
 * parameters were set directly to those values. */
static void test_import_namings_dtypes(void **state) {
    rq_dit_config c = tiny_cfg();
    rq_dit a, b = {0}, ref;
    random_model(&a, &c, 1);
    random_model(&ref, &c, 3);
    float out_b[3 * 8 * 8 * 8], out_ref[3 * 8 * 8 * 8], out_a[3 * 8 * 8 * 8];
    forward(&a, out_a);
    char path[512];
    rq_st_dtype dts[3] = {RQ_ST_F32, RQ_ST_F16, RQ_ST_BF16};
    for (int naming = 0; naming < 2; naming++)
        for (int k = 0; k < 3; k++) {
            nlist L = {.n = 0};
            if (naming) nl_diffusers(&L, &a);
            else nl_original(&L, &a);
            snprintf(path, sizeof path, "%s/dit_%d_%d.safetensors", tdir(state), naming, k);
            nl_write(&L, path, dts[k]);
            nl_free(&L);
            rq_dit_import_report r;
            rq_err e;
            if (import(&b, path, NULL, &r, &e)) fail_msg("%s", e.msg);
            assert_int_equal(r.naming, naming ? RQ_DIT_NAMES_DIFFUSERS : RQ_DIT_NAMES_ORIGINAL);
            assert_int_equal(r.n_loaded, a.n_params);
            assert_int_equal(r.n_unexpected, 0);
            assert_int_equal(r.n_warnings, 0);
            assert_string_equal(r.dtypes, rq_st_dtype_name(dts[k]));
            assert_int_equal(r.pos_embed_checked, !naming);
            if (!naming) assert_true(r.pos_embed_max_diff <= (k ? 1e-3 : 0.0));
            /* reference: a's parameters rounded to the dtype, set directly */
            for (int i = 0; i < a.n_params; i++)
                for (long j = 0; j < a.params[i]->n; j++) ref.params[i]->data[j] = round_dt(dts[k], a.params[i]->data[j]);
            assert_same_params(&ref, &b);
            forward(&b, out_b);
            forward(&ref, out_ref);
            assert_memory_equal(out_b, out_ref, sizeof out_b);
            if (k == 0) assert_memory_equal(out_b, out_a, sizeof out_b);
            else assert_true(tu_rel_err(out_b, out_a, 3 * 8 * 8 * 8, 1e-6) < (k == 1 ? 2e-3 : 2e-2));
        }
    rq_dit_free(&a);
    rq_dit_free(&b);
    rq_dit_free(&ref);
}

static void test_missing_unexpected_shapes(void **state) {
    rq_dit_config c = tiny_cfg();
    rq_dit a, b = {0};
    random_model(&a, &c, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", tdir(state));
    nlist L = {.n = 0};
    rq_dit_import_report r;
    rq_err e;

    /* one missing */
    nl_original(&L, &a);
    nl_remove(&L, "blocks.1.mlp.fc2.bias");
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_EFORMAT);
    expect_msg(&e, "missing 1 tensor: blocks.1.mlp.fc2.bias");
    expect_msg(&e, "original DiT names");
    /* six missing: four named, then "..." */
    const char *drop[] = {"t_embedder.mlp.0.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
                          "final_layer.linear.bias", "x_embedder.proj.bias"};
    for (int i = 0; i < 5; i++) nl_remove(&L, drop[i]);
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_EFORMAT);
    expect_msg(&e, "missing 6 tensors: ");
    expect_msg(&e, ", ...");
    nl_free(&L);

    /* unexpected: an extra block and a stray tensor */
    nl_original(&L, &a);
    add_param(&L, "blocks.2.attn.qkv.weight", a.blocks[0].qkv.w);
    add_param(&L, "ema_step", a.blocks[0].qkv.b);
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_EFORMAT);
    expect_msg(&e, "unexpected 2 tensors: ");
    expect_msg(&e, "blocks.2.attn.qkv.weight");
    expect_msg(&e, "ema_step");
    rq_dit_import_opts o = {.ignore_unexpected = 1};
    assert_int_equal(import(&b, path, &o, &r, &e), RQ_OK);
    assert_int_equal(r.n_unexpected, 2);
    assert_int_equal(r.n_warnings, 1);
    assert_same_params(&a, &b);
    nl_free(&L);

    /* learned sigma in the file, not in the config: names tensor and shapes */
    nl_original(&L, &a);
    nl_write(&L, path, RQ_ST_F32);
    nl_free(&L);
    rq_dit_config c2 = c;
    c2.learn_sigma = 0;
    rq_dit_free(&b);
    assert_int_equal(rq_dit_init(&b, &c2, 0, &e), RQ_OK);
    rq_err_clear(&e);
    assert_int_equal(rq_dit_import_file(&b, path, NULL, &r, &e), RQ_ESHAPE);
    expect_msg(&e, "shape of 'final_layer.linear.weight': expected [16,64], found [32,64]");
    expect_msg(&e, "set learn_sigma = on");
    expect_msg(&e, "and 1 more shape mismatches");
    /* the same in diffusers names */
    nl_diffusers(&L, &a);
    nl_write(&L, path, RQ_ST_F16);
    nl_free(&L);
    rq_err_clear(&e);
    assert_int_equal(rq_dit_import_file(&b, path, NULL, &r, &e), RQ_ESHAPE);
    expect_msg(&e, "shape of 'proj_out_2.weight': expected [16,64], found [32,64]");
    expect_msg(&e, "diffusers names");
    /* num_classes too small for the file's table */
    rq_dit_config c3 = c;
    c3.num_classes = 3;
    rq_dit_free(&b);
    assert_int_equal(rq_dit_init(&b, &c3, 0, &e), RQ_OK);
    rq_err_clear(&e);
    assert_int_equal(rq_dit_import_file(&b, path, NULL, &r, &e), RQ_ESHAPE);
    expect_msg(&e, "'transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight': expected [4,64], found [6,64]");
    expect_msg(&e, "check num_classes");
    rq_dit_free(&b);

    /* names of both kinds in one file */
    nl_original(&L, &a);
    add_param(&L, "proj_out_1.weight", a.final_adaln.w);
    nl_write(&L, path, RQ_ST_F32);
    nl_free(&L);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_EFORMAT);
    expect_msg(&e, "mixes original DiT names");
    /* forcing the naming: everything is missing/unexpected, reported in one line */
    rq_dit_import_opts od = {.naming = RQ_DIT_NAMES_DIFFUSERS};
    nl_original(&L, &a);
    nl_write(&L, path, RQ_ST_F32);
    nl_free(&L);
    assert_int_equal(import(&b, path, &od, &r, &e), RQ_EFORMAT);
    expect_msg(&e, "missing ");
    expect_msg(&e, "unexpected ");
    rq_dit_free(&a);
    rq_dit_free(&b);
}

/* An integer weight: refused with the tensor's name (file built by hand). */
static void test_bad_dtype(void **state) {
    (void)state;
    rq_dit_config c = tiny_cfg();
    rq_dit b;
    rq_err e = {0};
    assert_int_equal(rq_dit_init(&b, &c, 0, &e), RQ_OK);
    const char *json = "{\"x_embedder.proj.bias\":{\"dtype\":\"U8\",\"shape\":[64],\"data_offsets\":[0,64]}}";
    size_t n = strlen(json), len = 8 + n + 64;
    uint8_t *buf = calloc(1, len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    rq_safetensors st;
    assert_int_equal(rq_st_parse_header(buf, len, len, &st, &e), RQ_OK);
    assert_int_equal(rq_dit_import(&b, &st, NULL, NULL, &e), RQ_EFORMAT);
    expect_msg(&e, "'x_embedder.proj.bias' has dtype U8");
    rq_st_close(&st);
    free(buf);
    rq_dit_free(&b);
}

static void test_pos_embed_copies_null_class(void **state) {
    rq_dit_config c = tiny_cfg();
    rq_dit a, b = {0};
    random_model(&a, &c, 5);
    int D = c.hidden_size, T = rq_dit_tokens(&c);
    char path[512];
    snprintf(path, sizeof path, "%s/p.safetensors", tdir(state));
    nlist L = {.n = 0};
    rq_dit_import_report r;
    rq_err e;

    /* pos_embed as [T, D] is accepted; a perturbed one is refused */
    nl_original(&L, &a);
    ntensor *pe = nl_find(&L, "pos_embed");
    pe->ndim = 2;
    pe->shape[0] = T;
    pe->shape[1] = D;
    nl_write(&L, path, RQ_ST_BF16);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_OK);
    assert_true(r.pos_embed_checked && r.pos_embed_max_diff == 0.0);
    nl_own(pe)[3 * D + 5] += 0.25f;
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_EFORMAT);
    expect_msg(&e, "'pos_embed' differs from the fixed 2-D sin-cos embedding by up to 0.25 (token 3, dim 5)");
    rq_dit_import_opts ow = {.pos_embed_warn_only = 1};
    assert_int_equal(import(&b, path, &ow, &r, &e), RQ_OK);
    assert_int_equal(r.n_warnings, 1);
    assert_true(fabs(r.pos_embed_max_diff - 0.25) < 1e-6);
    /* wrong token count (another input size) */
    pe->ndim = 3;
    pe->shape[0] = 1;
    pe->shape[1] = T / 2;
    pe->shape[2] = D;
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_ESHAPE);
    expect_msg(&e, "shape of 'pos_embed': expected [1,16,64], found [1,8,64] (check input_size / patch_size)");
    nl_free(&L);

    /* diffusers: block 1's embedder copy differs -> warning, block 0's used;
     * the diffusers pos_embed buffer name is checked too */
    nl_diffusers(&L, &a);
    add_pos(&L, &a, "pos_embed.pos_embed");
    ntensor *cp = nl_find(&L, "transformer_blocks.1.norm1.emb.timestep_embedder.linear_2.bias");
    nl_own(cp)[7] += 1.0f;
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_OK);
    assert_int_equal(r.n_warnings, 1);
    assert_true(r.pos_embed_checked);
    assert_same_params(&a, &b);
    nl_free(&L);

    /* a label table without the null-class row: loads, null row zero */
    nl_diffusers(&L, &a);
    for (int blk = 0; blk < 2; blk++) {
        char nm[160];
        snprintf(nm, sizeof nm, "transformer_blocks.%d.norm1.emb.class_embedder.embedding_table.weight", blk);
        nl_find(&L, nm)->shape[0] = c.num_classes;
    }
    nl_write(&L, path, RQ_ST_F32);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_OK);
    assert_true(r.null_class_added);
    assert_int_equal(r.n_warnings, 1);
    assert_memory_equal(b.y_table->data, a.y_table->data, sizeof(float) * (size_t)(c.num_classes * D));
    for (int j = 0; j < D; j++) assert_true(b.y_table->data[c.num_classes * D + j] == 0.0f);
    nl_free(&L);

    /* a prefix ("module." from DDP) is stripped on request */
    nl_original(&L, &a);
    for (int i = 0; i < L.n; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "module.%.152s", L.v[i].name);
        strcpy(L.v[i].name, nm);
    }
    nl_write(&L, path, RQ_ST_F32);
    nl_free(&L);
    assert_int_equal(import(&b, path, NULL, &r, &e), RQ_EFORMAT); /* not without it */
    rq_dit_import_opts op = {.prefix = "module."};
    assert_int_equal(import(&b, path, &op, &r, &e), RQ_OK);
    assert_same_params(&a, &b);
    rq_dit_free(&a);
    rq_dit_free(&b);
}

/* ------------------------------------------------------------------ tool */

static int run(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_tool(void **state) {
    const char *d = tdir(state);
    rq_dit_config c = tiny_cfg();
    rq_dit a, b;
    random_model(&a, &c, 8);
    char st_path[300], ini[300], out[300], log[300], cmd[2048];
    snprintf(st_path, sizeof st_path, "%s/tiny.safetensors", d);
    snprintf(ini, sizeof ini, "%s/tiny.ini", d);
    snprintf(out, sizeof out, "%s/ckpt.h5", d);
    snprintf(log, sizeof log, "%s/log.txt", d);
    nlist L = {.n = 0};
    nl_diffusers(&L, &a);
    nl_write(&L, st_path, RQ_ST_BF16);
    nl_free(&L);
    FILE *f = fopen(ini, "w");
    fprintf(f, "[model]\ninput_size = 8\nin_channels = 4\npatch_size = 2\nhidden_size = 64\ndepth = 2\n"
               "num_heads = 4\nnum_classes = 5\nlearn_sigma = on\n");
    fclose(f);

    snprintf(cmd, sizeof cmd, "%s %s %s --config %s > %s 2>&1", IMPORT, st_path, out, ini, log);
    assert_int_equal(run(cmd), 0);
    rq_err e = {0};
    const char *which[2] = {"ema", "params"};
    for (int w = 0; w < 2; w++) {
        assert_int_equal(rq_model_from_ckpt(out, which[w], &b, NULL, &e), RQ_OK);
        for (int i = 0; i < a.n_params; i++)
            for (long j = 0; j < a.params[i]->n; j++)
                assert_true(b.params[i]->data[j] == round_dt(RQ_ST_BF16, a.params[i]->data[j]));
        rq_dit_free(&b);
    }

    /* usage errors: exit 2 */
    const char *usage[] = {"", "--config", "A B", "A B --config x.ini --preset DiT-S/2", "A B --preset DiT-S/2 --names x",
                           "A B C --preset DiT-S/2", "A B --bogus", "A B --preset DiT-Q/2",
                           "A B --preset DiT-S/2 --set model.nokey=1"};
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s %s > /dev/null 2>&1", IMPORT, usage[i]);
        if (run(cmd) != 2) fail_msg("'%s' did not exit 2", usage[i]);
    }
    snprintf(cmd, sizeof cmd, "%s --help > /dev/null 2>&1", IMPORT);
    assert_int_equal(run(cmd), 0);

    /* data errors: exit 1, one line naming the problem, no output file */
    unlink(out);
    snprintf(cmd, sizeof cmd, "%s %s %s --preset DiT-S/2 > %s 2>&1", IMPORT, st_path, out, log);
    assert_int_equal(run(cmd), 1);
    f = fopen(log, "r");
    char line[1024], line2[16];
    assert_non_null(fgets(line, sizeof line, f));
    assert_null(fgets(line2, sizeof line2, f));
    fclose(f);
    assert_non_null(strstr(line, "robuq-import: "));
    assert_non_null(strstr(line, "does not fit the model"));
    assert_int_not_equal(access(out, F_OK), 0);
    snprintf(cmd, sizeof cmd, "%s %s/none.safetensors %s --config %s > /dev/null 2>&1", IMPORT, d, out, ini);
    assert_int_equal(run(cmd), 1);
    rq_dit_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_import_namings_dtypes, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_missing_unexpected_shapes, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_bad_dtype),
        cmocka_unit_test_setup_teardown(test_pos_embed_copies_null_class, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_tool, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
