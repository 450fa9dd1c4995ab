/* test_config.c: INI config parsing, includes, overrides, errors, dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "robuq/config.h"
#include "testutil.h"

/* Each test gets a fresh temp dir for its fixture files. */
typedef struct {
    char dir[256];
    char path[32][512]; /* paths returned by put() */
    int npath;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/rq_test_config_XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    tu_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* Write name (may contain a subdir) under the temp dir; returns its path. */
static const char *put(fixture *fx, const char *name, const char *text) {
    char *p = fx->path[fx->npath++ % 32];
    char full[512];
    snprintf(full, sizeof full, "%s/%s", fx->dir, name);
    memcpy(p, full, sizeof full);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdir(p, 0755); /* subdir, if any (EEXIST is fine) */
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Load text from a file and expect failure with exactly this message,
 * where "%s" in expect is replaced by the file's path. */
static void expect_load_error(fixture *fx, const char *text, rq_status code, const char *expect) {
    const char *p = put(fx, "bad.ini", text);
    rq_config *cfg = rq_config_new();
    assert_non_null(cfg);
    rq_err err = {0};
    char want[1024];
    snprintf(want, sizeof want, expect, p);
    rq_status st = rq_config_load(cfg, p, &err);
    if (st != code || strcmp(err.msg, want) != 0)
        fail_msg("status %d msg\n  got:  %s\n  want: %s", st, err.msg, want);
    assert_int_equal(err.code, code);
    rq_config_free(cfg);
}

static void test_defaults(void **state) {
    (void)state;
    rq_config *cfg = rq_config_new();
    assert_non_null(cfg);
    assert_string_equal(rq_cfg_str(cfg, "model.arch"), "custom");
    assert_int_equal(rq_cfg_int(cfg, "model.input_size"), 28);
    assert_int_equal(rq_cfg_int(cfg, "model.hidden_size"), 384);
    assert_true(rq_cfg_bool(cfg, "model.learn_sigma"));
    assert_false(rq_cfg_bool(cfg, "data.hflip"));
    assert_false(rq_cfg_bool(cfg, "quant.enabled"));
    assert_int_equal(rq_cfg_int(cfg, "quant.act_bits"), 4);
    assert_string_equal(rq_cfg_str(cfg, "quant.weight_bits"), "1.58");
    assert_true(rq_cfg_float(cfg, "train.lr") == 1e-4);
    assert_true(rq_cfg_float(cfg, "train.ema_decay") == 0.9999);
    assert_true(rq_cfg_float(cfg, "model.input_size") == 28.0); /* float getter accepts ints */
    assert_string_equal(rq_cfg_str(cfg, "train.init_from"), "");
    assert_string_equal(rq_cfg_str(cfg, "data.path"), "runs/fmnist_train.h5");
    int c[8];
    assert_int_equal(rq_cfg_ints(cfg, "search.candidates", c, 8), 4);
    for (int i = 0; i < 4; i++) assert_int_equal(c[i], i + 1);
    assert_int_equal(rq_cfg_ints(cfg, "sample.classes", c, 8), 0);
    assert_false(rq_cfg_is_set(cfg, "train.lr"));
    assert_string_equal(rq_cfg_origin(cfg, "train.lr"), "default");
    assert_true(rq_cfg_has(cfg, "export.packing"));
    assert_false(rq_cfg_has(cfg, "export.nope"));

    /* every schema row: help text present, value readable */
    int n;
    const rq_cfg_spec *sc = rq_config_schema(&n);
    assert_true(n > 60);
    for (int i = 0; i < n; i++) {
        char k[128];
        snprintf(k, sizeof k, "%s.%s", sc[i].section, sc[i].key);
        assert_non_null(sc[i].help);
        assert_true(strlen(sc[i].help) > 5);
        assert_non_null(rq_cfg_str(cfg, k));
    }
    rq_config_free(cfg);
}

/* The syntax fixture; MLP is the mlp_ratio line (line 7). */
#define SYNTAX_INI(MLP)                                                                          \
    "\xEF\xBB\xBF# leading comment\n"                                                            \
    "; another comment\n"                                                                         \
    "\n"                                                                                          \
    "[model]\n"                                                                                   \
    "  arch = dit-xl/2      # case-insensitive enum, inline comment\n"                            \
    "learn_sigma=OFF\n" MLP "\n"                                                                  \
    "[ quant ]   ; header with spaces and a comment\n"                                           \
    "enabled = yes\n"                                                                             \
    "hadamard = 0\n"                                                                              \
    "quantize_final = True\n"                                                                     \
    "act_bits = 2\r\n"                                                                            \
    "[sample]\n"                                                                                  \
    "classes = 3, 1 ,4\n"                                                                         \
    "out = \"grid # 1.png\"  # quoted value keeps '#'\n"                                           \
    "[search]\n"                                                                                  \
    "candidates = 2\n"                                                                            \
    "[train]\n"                                                                                   \
    "lr = 3e-4\n"                                                                                 \
    "lr = 5e-4\n" /* duplicate in one file: last wins */                                          \
    "init_from = \"\"\n"

static void test_syntax_and_types(void **state) {
    fixture *fx = *state;
    /* ';' without whitespace before it is part of the value, so this is not a float */
    const char *p = put(fx, "a.ini", SYNTAX_INI("mlp_ratio = 2.5;not a comment"));
    rq_config *cfg = rq_config_new();
    rq_err err = {0};
    assert_int_equal(rq_config_load(cfg, p, &err), RQ_EFORMAT);
    char want[700];
    snprintf(want, sizeof want, "%s:7: [model] mlp_ratio: expected a float, got '2.5;not a comment'", p);
    assert_string_equal(err.msg, want);
    assert_string_equal(rq_cfg_str(cfg, "model.arch"), "custom"); /* unchanged after an error */

    put(fx, "a.ini", SYNTAX_INI("mlp_ratio = 2.5 ;an inline comment"));
    rq_err_clear(&err);
    assert_int_equal(rq_config_load(cfg, p, &err), RQ_OK);
    assert_string_equal(rq_cfg_str(cfg, "model.arch"), "DiT-XL/2");
    assert_false(rq_cfg_bool(cfg, "model.learn_sigma"));
    assert_true(rq_cfg_float(cfg, "model.mlp_ratio") == 2.5);
    assert_true(rq_cfg_bool(cfg, "quant.enabled"));
    assert_false(rq_cfg_bool(cfg, "quant.hadamard"));
    assert_true(rq_cfg_bool(cfg, "quant.quantize_final"));
    assert_int_equal(rq_cfg_int(cfg, "quant.act_bits"), 2);
    int c[8] = {0};
    assert_int_equal(rq_cfg_ints(cfg, "sample.classes", c, 8), 3);
    assert_int_equal(c[0], 3);
    assert_int_equal(c[1], 1);
    assert_int_equal(c[2], 4);
    assert_string_equal(rq_cfg_str(cfg, "sample.classes"), "3,1,4");
    assert_int_equal(rq_cfg_ints(cfg, "sample.classes", c, 2), 3); /* truncated copy, full count */
    assert_int_equal(rq_cfg_ints(cfg, "search.candidates", c, 8), 1);
    assert_int_equal(c[0], 2);
    assert_string_equal(rq_cfg_str(cfg, "sample.out"), "grid # 1.png");
    assert_true(rq_cfg_float(cfg, "train.lr") == 5e-4);
    assert_string_equal(rq_cfg_str(cfg, "train.init_from"), "");
    assert_true(rq_cfg_is_set(cfg, "train.init_from"));
    assert_true(rq_cfg_is_set(cfg, "quant.act_bits"));
    assert_false(rq_cfg_is_set(cfg, "quant.attn_bits"));
    snprintf(want, sizeof want, "%s:20", p);
    assert_string_equal(rq_cfg_origin(cfg, "train.lr"), want);
    rq_config_free(cfg);
}

static void test_include_and_order(void **state) {
    fixture *fx = *state;
    put(fx, "base.ini", "[train]\nlr = 2e-4\nsteps = 50\n[quant]\nact_bits = 3\n");
    put(fx, "maps/a2.ini", "# fragment: no section header, inherits [quant]\nattn_bits = 6\ninclude = ../sub/deep.ini\n");
    put(fx, "sub/deep.ini", "adaln_act_bits = 2\n[sample]\nsteps = 100\n");
    const char *main_ini = put(fx, "main.ini",
                               "include = base.ini\n"       /* top level */
                               "[train]\n"
                               "steps = 60\n"               /* overrides base */
                               "[quant]\n"
                               "include = maps/a2.ini\n"    /* inside a section */
                               "weight_bits = fp\n"         /* still in [quant] after the include */
                               "[train]\n"
                               "include = late.ini\n");     /* later include overrides earlier lines */
    put(fx, "late.ini", "[train]\nsteps = 70\n");
    rq_config *cfg = rq_config_new();
    rq_err err = {0};
    assert_int_equal(rq_config_load(cfg, main_ini, &err), RQ_OK);
    assert_true(rq_cfg_float(cfg, "train.lr") == 2e-4);
    assert_int_equal(rq_cfg_int(cfg, "train.steps"), 70);
    assert_int_equal(rq_cfg_int(cfg, "quant.act_bits"), 3);
    assert_int_equal(rq_cfg_int(cfg, "quant.attn_bits"), 6);
    assert_int_equal(rq_cfg_int(cfg, "quant.adaln_act_bits"), 2);
    assert_int_equal(rq_cfg_int(cfg, "sample.steps"), 100);
    assert_string_equal(rq_cfg_str(cfg, "quant.weight_bits"), "fp");

    /* --set after files wins; a file loaded after --set wins again */
    assert_int_equal(rq_config_set(cfg, "train.steps=80", &err), RQ_OK);
    assert_int_equal(rq_config_set(cfg, " quant.act_bits = 1 ", &err), RQ_OK);
    assert_int_equal(rq_config_set(cfg, "sample.out=\"a b.png\"", &err), RQ_OK);
    assert_int_equal(rq_cfg_int(cfg, "train.steps"), 80);
    assert_int_equal(rq_cfg_int(cfg, "quant.act_bits"), 1);
    assert_string_equal(rq_cfg_str(cfg, "sample.out"), "a b.png");
    assert_string_equal(rq_cfg_origin(cfg, "train.steps"), "--set");
    assert_int_equal(rq_config_load(cfg, main_ini, &err), RQ_OK);
    assert_int_equal(rq_cfg_int(cfg, "train.steps"), 70);
    assert_int_equal(err.code, RQ_OK);
    rq_config_free(cfg);
}

static void test_include_errors(void **state) {
    fixture *fx = *state;
    char want[1200];
    rq_err err = {0};
    rq_config *cfg = rq_config_new();

    /* cycle a -> b -> a: error at b's include line, chain named */
    const char *a = put(fx, "cyc/a.ini", "[train]\nsteps = 5\ninclude = b.ini\n");
    const char *b = put(fx, "cyc/b.ini", "# b\ninclude = a.ini\n");
    assert_int_equal(rq_config_load(cfg, a, &err), RQ_EFORMAT);
    snprintf(want, sizeof want, "%s:2: include cycle: %s -> %s -> %s/cyc/a.ini", b, a, b, fx->dir);
    assert_string_equal(err.msg, want);
    assert_int_equal(rq_cfg_int(cfg, "train.steps"), 1000); /* nothing applied */

    /* self include */
    rq_err_clear(&err);
    const char *s = put(fx, "self.ini", "include = self.ini\n");
    assert_int_equal(rq_config_load(cfg, s, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "include cycle"));
    snprintf(want, sizeof want, "%s:1: ", s);
    assert_true(strncmp(err.msg, want, strlen(want)) == 0);

    /* missing included file: RQ_EIO naming the including line */
    rq_err_clear(&err);
    const char *m = put(fx, "missing.ini", "[model]\ninclude = nothere.ini\n");
    assert_int_equal(rq_config_load(cfg, m, &err), RQ_EIO);
    snprintf(want, sizeof want, "%s:2: cannot open config '%s/nothere.ini'", m, fx->dir);
    assert_true(strncmp(err.msg, want, strlen(want)) == 0);

    /* missing top-level file */
    rq_err_clear(&err);
    assert_int_equal(rq_config_load(cfg, "/nonexistent/x.ini", &err), RQ_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/x.ini"));

    /* a chain deeper than the limit (not a cycle) */
    for (int i = 0; i <= RQ_CFG_MAX_INCLUDE + 1; i++) {
        char name[64], text[64];
        snprintf(name, sizeof name, "deep/d%d.ini", i);
        snprintf(text, sizeof text, "include = d%d.ini\n", i + 1);
        put(fx, name, text);
    }
    rq_err_clear(&err);
    char d0[600];
    snprintf(d0, sizeof d0, "%s/deep/d0.ini", fx->dir);
    assert_int_equal(rq_config_load(cfg, d0, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "includes nested deeper than 16"));

    /* an error inside an included file names that file and line */
    rq_err_clear(&err);
    const char *inner = put(fx, "inner.ini", "[train]\n\nlr = fast\n");
    const char *outer = put(fx, "outer.ini", "include = inner.ini\n");
    assert_int_equal(rq_config_load(cfg, outer, &err), RQ_EFORMAT);
    snprintf(want, sizeof want, "%s:3: [train] lr: expected a float, got 'fast'", inner);
    assert_string_equal(err.msg, want);
    rq_config_free(cfg);
}

static void test_error_messages(void **state) {
    fixture *fx = *state;
    expect_load_error(fx, "[train]\nsteps = 10\n\n[trian]\n", RQ_EFORMAT,
                      "%s:4: unknown section [trian] (did you mean [train]?)");
    expect_load_error(fx, "[zzzzzz]\n", RQ_EFORMAT, "%s:1: unknown section [zzzzzz]");
    expect_load_error(fx, "[train]\nlrr = 1\n", RQ_EFORMAT, "%s:2: [train] unknown key 'lrr' (did you mean 'lr'?)");
    expect_load_error(fx, "[train]\nstpes = 1\n", RQ_EFORMAT,
                      "%s:2: [train] unknown key 'stpes' (did you mean 'steps'?)");
    expect_load_error(fx, "[model]\ncfg_scale = 1\n", RQ_EFORMAT,
                      "%s:2: [model] unknown key 'cfg_scale' (did you mean [sample] cfg_scale?)");
    expect_load_error(fx, "[model]\nqwertyuiop = 1\n", RQ_EFORMAT, "%s:2: [model] unknown key 'qwertyuiop'");
    expect_load_error(fx, "# header\n[train]\n\n\n\n\n\n\n\n\n\nlr = abc\n", RQ_EFORMAT,
                      "%s:12: [train] lr: expected a float, got 'abc'");
    expect_load_error(fx, "[train]\nsteps = 1.5\n", RQ_EFORMAT, "%s:2: [train] steps: expected an integer, got '1.5'");
    expect_load_error(fx, "[train]\nsteps =\n", RQ_EFORMAT, "%s:2: [train] steps: expected an integer, got ''");
    expect_load_error(fx, "[train]\nlr = nan\n", RQ_EFORMAT, "%s:2: [train] lr: expected a finite float, got 'nan'");
    expect_load_error(fx, "[quant]\nact_bits = 9\n", RQ_EFORMAT,
                      "%s:2: [quant] act_bits: value 9 out of range [0, 8]");
    expect_load_error(fx, "[model]\nclass_dropout_prob = 1.5\n", RQ_EFORMAT,
                      "%s:2: [model] class_dropout_prob: value 1.5 out of range [0, 1]");
    expect_load_error(fx, "[quant]\nenabled = maybe\n", RQ_EFORMAT,
                      "%s:2: [quant] enabled: expected a boolean (on/off, true/false, yes/no, 1/0), got 'maybe'");
    expect_load_error(fx, "[sample]\nsampler = ddin\n", RQ_EFORMAT,
                      "%s:2: [sample] sampler: expected one of ddpm|ddim, got 'ddin' (did you mean 'ddim'?)");
    expect_load_error(fx, "[search]\ncandidates = 1,,2\n", RQ_EFORMAT,
                      "%s:2: [search] candidates: expected a comma separated list of integers, got '1,,2'");
    expect_load_error(fx, "[search]\ncandidates = 1,2,9\n", RQ_EFORMAT,
                      "%s:2: [search] candidates: element 3 (9) out of range [1, 8]");
    expect_load_error(fx, "[train]\nsteps 100\n", RQ_EFORMAT,
                      "%s:2: expected 'key = value', missing '=' in 'steps 100'");
    expect_load_error(fx, "[train\nsteps = 1\n", RQ_EFORMAT, "%s:1: missing ']' in section header '[train'");
    expect_load_error(fx, "[train] x\n", RQ_EFORMAT, "%s:1: unexpected text after ']': 'x'");
}

/* the "outside of any section" hint names the first section having the key */
static void test_error_outside_section(void **state) {
    fixture *fx = *state;
    expect_load_error(fx, "lr = 5\n", RQ_EFORMAT, "%s:1: key 'lr' outside of any [section] (did you mean [train] lr?)");
    expect_load_error(fx, "= 5\n", RQ_EFORMAT, "%s:1: missing key before '='");
    expect_load_error(fx, "[sample]\nout = \"abc\n", RQ_EFORMAT, "%s:2: [sample] out: missing closing '\"'");
}

static void test_set_errors(void **state) {
    (void)state;
    rq_config *cfg = rq_config_new();
    rq_err err = {0};
    assert_int_equal(rq_config_set(cfg, "train.lr", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set 'train.lr': expected section.key=value, missing '='");
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cfg, "lr=1", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set 'lr=1': key must be section.key");
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cfg, "train.lr=abc", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set train.lr: expected a float, got 'abc'");
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cfg, "train.ema=0.5", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set: [train] unknown key 'ema'");
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cfg, "train.ema_decy=0.5", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set: [train] unknown key 'ema_decy' (did you mean 'ema_decay'?)");
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cfg, "qaunt.act_bits=2", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set: unknown section [qaunt] (did you mean [quant]?)");
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cfg, "quant.act_bits=9", &err), RQ_EINVAL);
    assert_string_equal(err.msg, "--set quant.act_bits: value 9 out of range [0, 8]");
    assert_int_equal(rq_cfg_int(cfg, "quant.act_bits"), 4); /* unchanged */
    assert_int_equal(rq_config_set(NULL, "a.b=1", NULL), RQ_EINVAL);
    rq_config_free(cfg);
}

static void test_getter_misuse(void **state) {
    (void)state;
    rq_config *cfg = rq_config_new();
    rq_log_set_level(RQ_LOG_ERROR + 1); /* the misuse is logged; keep the test output quiet */
    assert_int_equal(rq_cfg_int(cfg, "train.nope"), 0);
    assert_int_equal(rq_cfg_int(cfg, "nodot"), 0);
    assert_true(rq_cfg_float(cfg, "nope.lr") == 0.0);
    assert_null(rq_cfg_str(cfg, "train.nope"));
    assert_int_equal(rq_cfg_bool(cfg, "train.lr"), 0);  /* wrong type */
    assert_int_equal(rq_cfg_int(cfg, "train.lr"), 0);   /* float key read as int */
    assert_int_equal(rq_cfg_ints(cfg, "train.steps", NULL, 0), -1);
    assert_int_equal(rq_cfg_int(NULL, "train.steps"), 0);
    assert_int_equal(rq_cfg_is_set(cfg, "x.y"), 0);
    rq_log_set_level(RQ_LOG_INFO);
    rq_config_free(cfg);
}

static void test_dump_roundtrip(void **state) {
    fixture *fx = *state;
    rq_config *cfg = rq_config_new();
    rq_err err = {0};
    const char *sets[] = {"model.arch=DiT-S/4", "train.lr=0.1", "train.ema_decay=0.99991",
                          "sample.out=a # b.png", "sample.classes=9,0,5", "search.candidates=",
                          "data.val_path=", "quant.enabled=on", "train.seed=123456789",
                          "model.mlp_ratio=2.6666666666666665", "train.out_dir= runs/x y "};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        rq_status st = rq_config_set(cfg, sets[i], &err);
        if (st != RQ_OK) fail_msg("%s: %s", sets[i], err.msg);
    }
    char dump_path[512];
    snprintf(dump_path, sizeof dump_path, "%s/dump.ini", fx->dir);
    FILE *f = fopen(dump_path, "w");
    assert_int_equal(rq_config_dump(cfg, f), RQ_OK);
    fclose(f);

    rq_config *back = rq_config_new();
    assert_int_equal(rq_config_load(back, dump_path, &err), RQ_OK);
    char *s1 = rq_config_to_string(cfg), *s2 = rq_config_to_string(back);
    assert_string_equal(s1, s2);
    assert_non_null(strstr(s1, "\n[export]\npacking = trit5\n"));
    assert_non_null(strstr(s1, "out = \"a # b.png\"\n"));
    assert_non_null(strstr(s1, "val_path = \"\"\n"));
    assert_true(rq_cfg_float(back, "train.ema_decay") == 0.99991);
    assert_true(rq_cfg_float(back, "model.mlp_ratio") == 2.6666666666666665);
    assert_string_equal(rq_cfg_str(back, "train.out_dir"), "runs/x y");
    assert_string_equal(rq_cfg_str(back, "sample.out"), "a # b.png");
    assert_int_equal(rq_cfg_ints(back, "search.candidates", NULL, 0), 0);

    /* the string form (checkpoint attribute) reloads too */
    rq_config *third = rq_config_new();
    assert_int_equal(rq_config_load_string(third, s1, "ckpt:config", &err), RQ_OK);
    char *s3 = rq_config_to_string(third);
    assert_string_equal(s1, s3);
    assert_int_equal(rq_config_load_string(third, "[train]\nlr = x\n", "ckpt:config", &err), RQ_EFORMAT);
    assert_string_equal(err.msg, "ckpt:config:2: [train] lr: expected a float, got 'x'");

    /* a value that needs quotes cannot hold a quote (no escapes in INI): rejected,
     * from a file and from --set, so every accepted config dumps and reloads */
    rq_err_clear(&err);
    assert_int_equal(rq_config_load_string(third, "[data]\npath =##\"#x\n", "q.ini", &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "q.ini:2: [data] path: value '##\"#x' contains '\"'"));
    assert_int_equal(rq_config_set(third, "sample.out=a #\"b", &err), RQ_EINVAL);
    assert_int_equal(rq_config_set(third, "sample.out=a\"b.png", &err), RQ_OK); /* no quotes needed: fine */

    /* clone is deep */
    rq_config *cl = rq_config_clone(cfg);
    rq_err_clear(&err);
    assert_int_equal(rq_config_set(cl, "sample.classes=1", &err), RQ_OK);
    assert_int_equal(rq_cfg_ints(cfg, "sample.classes", NULL, 0), 3);
    free(s1);
    free(s2);
    free(s3);
    rq_config_free(cl);
    rq_config_free(third);
    rq_config_free(back);
    rq_config_free(cfg);
}

static void test_help_and_schema(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    rq_config_print_help(f);
    long len = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    assert_non_null(strstr(buf, "[quant]"));
    assert_non_null(strstr(buf, "  act_bits"));
    assert_non_null(strstr(buf, "int in [0, 8]"));
    assert_non_null(strstr(buf, "one of ddpm|ddim"));
    assert_non_null(strstr(buf, "init_from          = \"\""));
    free(buf);

    /* a schema whose default does not parse is rejected (not a crash) */
    static const rq_cfg_spec bad[] = {{"s", "k", RQ_CFG_INT, "x", 0, 1, NULL, "h"}};
    rq_log_set_level(RQ_LOG_ERROR + 1);
    assert_null(rq_config_new_schema(bad, 1));
    static const rq_cfg_spec dup[] = {{"s", "k", RQ_CFG_BOOL, "on", 0, 0, NULL, "h"},
                                      {"s", "k", RQ_CFG_BOOL, "on", 0, 0, NULL, "h"}};
    assert_null(rq_config_new_schema(dup, 2));
    rq_log_set_level(RQ_LOG_INFO);
    static const rq_cfg_spec ok[] = {{"s", "name", RQ_CFG_STRING, "x y", 0, 0, NULL, "h"}};
    rq_config *c = rq_config_new_schema(ok, 1);
    assert_string_equal(rq_cfg_str(c, "s.name"), "x y");
    rq_config_free(c);

    assert_int_equal(rq_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(rq_edit_distance("", "abc"), 3);
    assert_int_equal(rq_edit_distance("same", "same"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test_setup_teardown(test_syntax_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_outside_section, setup, teardown),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_getter_misuse),
        cmocka_unit_test_setup_teardown(test_dump_roundtrip, setup, teardown),
        cmocka_unit_test(test_help_and_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
