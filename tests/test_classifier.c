/* test_classifier.c: cross-entropy op (values + finite-difference gradient),
 * the ViT feature network (gradient through the whole model, save / load
 * round trip, validation of every field on load), a short training run on
 * a Fashion-MNIST subset with the FID / precision / recall sanity checks,
 * and the robuq-classifier / robuq-eval command lines. */
#include <omp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "robuq/classifier.h"
#include "robuq/dataset.h"
#include "robuq/h5io.h"
#include "robuq/image.h"
#include "robuq/metrics.h"
#include "robuq/ops.h"
#include "robuq/train.h"
#include "testutil.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* ------------------------------------------------------------------ cross-entropy */

static void test_xent_values(void **state) {
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 1 << 16), RQ_OK);
    /* row 0: uniform over 3 -> log 3; row 1: logits (log 4, 0, 0), label 0 -> -log(4/6) */
    float l[6] = {0, 0, 0, logf(4), 0, 0};
    int y[2] = {2, 0};
    rq_tensor *t = rq_tensor_wrap(&g, l, 2, (int[]){2, 3});
    rq_tensor *loss = rq_cross_entropy(&g, t, y, 2);
    assert_non_null(loss);
    double want = (log(3.0) - log(4.0 / 6.0)) / 2;
    assert_true(fabs(loss->data[0] - want) < 1e-6);
    /* large logits stay finite (log-sum-exp) */
    float big[3] = {1000, -1000, 0};
    rq_tensor *tb = rq_tensor_wrap(&g, big, 2, (int[]){1, 3});
    rq_tensor *lb = rq_cross_entropy(&g, tb, (int[]){0}, 1);
    assert_non_null(lb);
    assert_true(fabs(lb->data[0]) < 1e-6);
    /* errors name the problem and are sticky */
    assert_null(rq_cross_entropy(&g, t, (int[]){0, 3}, 2));
    assert_non_null(strstr(g.err.msg, "label 3 at row 1 outside [0,3)"));
    rq_graph_free(&g);
    assert_int_equal(rq_graph_init(&g, 1 << 16), RQ_OK);
    t = rq_tensor_wrap(&g, l, 2, (int[]){2, 3});
    assert_null(rq_cross_entropy(&g, t, y, 3));
    assert_int_equal(g.err.code, RQ_ESHAPE);
    rq_graph_free(&g);
}

/* FD check of d(loss)/d(inputs) for a loss built by f (the test_ops.c pattern,
 * here on a scalar loss directly). */
typedef rq_tensor *(*loss_fn)(rq_graph *g, rq_tensor **p, const void *ctx);

static void gradcheck(const char *name, loss_fn f, const void *ctx, int n, rq_tensor **p, float eps, double tol,
                      long max_checks) {
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 1 << 20), RQ_OK);
    for (int i = 0; i < n; i++) rq_tensor_zero_grad(p[i]);
    rq_tensor *loss = f(&g, p, ctx);
    if (!loss) fail_msg("%s: forward failed: %s", name, g.err.msg);
    assert_int_equal(rq_backward(&g, loss), RQ_OK);
    g.grad_enabled = 0;
    for (int i = 0; i < n; i++) {
        rq_tensor *x = p[i];
        long stride = x->n > max_checks ? x->n / max_checks : 1, m = 0;
        float *num = calloc((size_t)x->n, sizeof(float)), *ana = calloc((size_t)x->n, sizeof(float));
        for (long j = 0; j < x->n; j += stride, m++) {
            float keep = x->data[j];
            x->data[j] = keep + eps;
            rq_graph_reset(&g);
            double lp = f(&g, p, ctx)->data[0];
            x->data[j] = keep - eps;
            rq_graph_reset(&g);
            double lm = f(&g, p, ctx)->data[0];
            x->data[j] = keep;
            num[m] = (float)((lp - lm) / (2.0 * eps));
            ana[m] = x->grad[j];
        }
        double e = tu_rel_err(ana, num, m, 1e-3);
        if (!(e < tol)) {
            for (long j = 0; j < m && j < 6; j++) print_message("  %s %s[%ld]: analytic %g numeric %g\n", name, x->name, j, ana[j], num[j]);
            fail_msg("%s: %s relative gradient error %g > %g", name, x->name, e, tol);
        }
        free(num), free(ana);
    }
    rq_graph_free(&g);
}

static rq_tensor *xent_loss(rq_graph *g, rq_tensor **p, const void *ctx) {
    static const int y[] = {1, 0, 4, 4, 2, 3};
    return rq_cross_entropy(g, p[0], y, 6);
}

static void test_xent_grad(void **state) {
    rq_tensor *x = rq_tensor_new(3, (int[]){2, 3, 5}, 1, "logits"); /* 6 rows of 5 classes */
    uint64_t s = 4;
    tu_fill(&s, x->data, x->n, -2, 2);
    gradcheck("cross_entropy", xent_loss, NULL, 1, &x, 1e-2f, 2e-3, 1000);
    /* the gradient of each row sums to zero and is (p - onehot)/rows */
    double sum = 0;
    for (long i = 0; i < 5; i++) sum += x->grad[i];
    assert_true(fabs(sum) < 1e-6);
    rq_tensor_free(x);
}

/* ------------------------------------------------------------------ the model */

static rq_classifier_config tiny_cfg(void) {
    return (rq_classifier_config){.image_size = 8, .in_channels = 2, .patch_size = 4, .kernel_size = 4,
                                  .stem_width = 3, .dim = 8, .depth = 2, .heads = 2, .num_classes = 3, .mlp_ratio = 2};
}

typedef struct {
    rq_classifier *m;
    float *x;
    int *y;
    int n;
} model_ctx;

static rq_tensor *model_loss(rq_graph *g, rq_tensor **p, const void *ctx) {
    const model_ctx *c = ctx;
    const rq_classifier_config *k = &c->m->cfg;
    rq_tensor *x = rq_tensor_wrap(g, c->x, 4, (int[]){c->n, k->in_channels, k->image_size, k->image_size});
    return rq_cross_entropy(g, rq_classifier_forward(g, c->m, x, NULL), c->y, c->n);
}

static void randomize(rq_classifier *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) tu_fill(&seed, m->params[i]->data, m->params[i]->n, -0.5f, 0.5f);
}

static void test_model_grad(void **state) {
    rq_classifier_config c = tiny_cfg();
    rq_classifier m;
    rq_err err = {0};
    int threads = omp_get_max_threads();
    omp_set_num_threads(1); /* thousands of tiny forwards: threads only add barrier time */
    assert_int_equal(rq_classifier_init(&m, &c, 1, &err), RQ_OK);
    assert_int_equal(m.n_params, 2 * 3 + 8 * c.depth + 2); /* 3 stem convs (3x3, then 2 stride-2 for patch 4) */
    assert_int_equal(rq_classifier_param(&m, "stem.0.weight")->shape[1], 9 * 2);
    assert_int_equal(rq_classifier_param(&m, "stem.1.weight")->shape[0], 6);
    assert_int_equal(rq_classifier_param(&m, "stem.2.weight")->shape[1], 9 * 6);
    assert_int_equal(rq_classifier_param(&m, "stem.2.weight")->shape[0], 8);
    assert_non_null(rq_classifier_param(&m, "blocks.1.fc2.bias"));
    /* head starts at zero: uniform posteriors */
    for (long i = 0; i < m.head_w->n; i++) assert_true(m.head_w->data[i] == 0);
    randomize(&m, 9); /* zero head would hide the body's gradient */
    float x[3 * 2 * 8 * 8];
    uint64_t s = 2;
    tu_fill(&s, x, 3 * 2 * 64, -1, 1);
    model_ctx ctx = {&m, x, (int[]){0, 2, 1}, 3};
    gradcheck("classifier", model_loss, &ctx, m.n_params, m.params, 1e-2f, 1e-2, 24);

    /* features and logits shapes; batch-independence of embed */
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 1 << 20), RQ_OK);
    rq_tensor *xt = rq_tensor_wrap(&g, x, 4, (int[]){3, 2, 8, 8}), *f;
    rq_tensor *logits = rq_classifier_forward(&g, &m, xt, &f);
    assert_non_null(logits);
    assert_int_equal(logits->shape[0], 3), assert_int_equal(logits->shape[1], 3);
    assert_int_equal(f->shape[0], 3), assert_int_equal(f->shape[1], 8);
    float feat[3 * 8], probs[3 * 3];
    int pred[3];
    assert_int_equal(rq_classifier_embed(&m, x, 3, 2, feat, probs, pred, &err), RQ_OK);
    for (int i = 0; i < 24; i++) assert_true(fabs(feat[i] - f->data[i]) < 1e-5);
    for (int r = 0; r < 3; r++) {
        double sum = 0;
        int best = 0;
        for (int k = 0; k < 3; k++) {
            sum += probs[r * 3 + k];
            if (logits->data[r * 3 + k] > logits->data[r * 3 + best]) best = k;
        }
        assert_true(fabs(sum - 1) < 1e-5);
        assert_int_equal(pred[r], best);
    }
    /* wrong input shape */
    rq_graph_reset(&g);
    rq_tensor *bad = rq_tensor_wrap(&g, x, 4, (int[]){3, 1, 8, 16});
    assert_null(rq_classifier_forward(&g, &m, bad, NULL));
    assert_non_null(strstr(g.err.msg, "expected [N,2,8,8]"));
    rq_graph_free(&g);
    rq_classifier_free(&m);

    /* the linear patch embedding with overlapping 4x4 windows at stride 2, and
     * the flattened-token feature (fc to 6) */
    c = tiny_cfg(), c.stem_width = 0, c.patch_size = 2, c.depth = 1, c.feat_dim = 6;
    assert_int_equal(rq_classifier_init(&m, &c, 1, &err), RQ_OK);
    assert_int_equal(m.n_params, 2 + 8 + 2 + 2);
    assert_int_equal(rq_classifier_param(&m, "patch_embed.weight")->shape[1], 2 * 4 * 4);
    assert_int_equal(rq_classifier_param(&m, "fc.weight")->shape[1], 16 * 8);
    assert_int_equal(rq_classifier_param(&m, "head.weight")->shape[1], 6);
    randomize(&m, 10);
    gradcheck("classifier-patch", model_loss, &ctx, m.n_params, m.params, 1e-2f, 1e-2, 24);
    rq_classifier_free(&m);
    omp_set_num_threads(threads);

    /* config errors */
    c = tiny_cfg(), c.stem_width = 0, c.kernel_size = 3;
    assert_int_equal(rq_classifier_init(&m, &c, 1, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "kernel_size"));
    rq_err_clear(&err);
    c = tiny_cfg(), c.image_size = 9;
    assert_int_equal(rq_classifier_config_check(&c, &err), RQ_EINVAL);
    rq_err_clear(&err);
    c = tiny_cfg(), c.dim = 12, c.heads = 5;
    assert_int_equal(rq_classifier_config_check(&c, &err), RQ_EINVAL);
    rq_err_clear(&err);
    c = tiny_cfg(), c.image_size = 6, c.patch_size = 3;
    assert_int_equal(rq_classifier_config_check(&c, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "power-of-2"));
}

/* ------------------------------------------------------------------ file format */

static const char *fpath(void **state, const char *name, char *buf) {
    snprintf(buf, 512, "%s/%s", ((tu_dir *)*state)->dir, name);
    return buf;
}

/* A weights file written by hand, with one thing broken. */
typedef enum { V_OK, V_FORMAT, V_VERSION, V_BADCFG, V_MISSING, V_SHAPE, V_NAN, V_EXTRA } variant;

static void write_variant(const char *path, const rq_classifier *m, variant v) {
    rq_err err = {0};
    rq_h5_writer *w = rq_h5w_open(path, &err);
    assert_non_null(w);
    const rq_classifier_config *c = &m->cfg;
    assert_int_equal(rq_h5w_attr_str(w, "/", "format", v == V_FORMAT ? "robuq-ckpt" : "robuq-classifier", &err), 0);
    assert_int_equal(rq_h5w_attr_i64(w, "/", "version", v == V_VERSION ? 7 : 1, &err), 0);
    const char *keys[] = {"image_size", "in_channels", "patch_size", "kernel_size", "stem_width", "dim",
                          "depth",      "heads",       "num_classes", "mlp_ratio",  "feat_dim"};
    int vals[] = {c->image_size, c->in_channels, c->patch_size, c->kernel_size, c->stem_width, c->dim,
                  c->depth,      c->heads,       c->num_classes, c->mlp_ratio,  c->feat_dim};
    if (v == V_BADCFG) vals[5] = 10; /* dim not a multiple of 4 */
    for (int i = 0; i < 11; i++) assert_int_equal(rq_h5w_attr_i64(w, "/", keys[i], vals[i], &err), 0);
    for (int i = 0; i < m->n_params; i++) {
        const rq_tensor *t = m->params[i];
        if (v == V_MISSING && i == 3) continue;
        char p[160];
        long shape[4];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (v == V_SHAPE && i == 2) shape[0]++;
        float *data = calloc((size_t)t->n + 64, sizeof(float));
        memcpy(data, t->data, (size_t)t->n * sizeof(float));
        if (v == V_NAN && i == 5) data[1] = NAN;
        snprintf(p, sizeof p, "/params/%s", t->name);
        assert_int_equal(rq_h5w_write_f32(w, p, data, t->ndim, shape, &err), 0);
        free(data);
    }
    if (v == V_EXTRA) assert_int_equal(rq_h5w_write_f32(w, "/params/blocks.9.qkv.weight", m->head_b->data, 1, (long[]){3}, &err), 0);
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
}

static void test_save_load(void **state) {
    rq_classifier_config c = tiny_cfg();
    rq_classifier m, r;
    rq_err err = {0};
    char p[512], q[512];
    assert_int_equal(rq_classifier_init(&m, &c, 3, &err), RQ_OK);
    randomize(&m, 5);
    rq_classifier_meta meta = {.test_accuracy = 0.875, .train_steps = 42, .train_seconds = 1.5, .seed = 7};
    snprintf(meta.train_data, sizeof meta.train_data, "x.h5");
    assert_int_equal(rq_classifier_save(fpath(state, "c.h5", p), &m, &meta, &err), RQ_OK);
    rq_classifier_meta back;
    assert_int_equal(rq_classifier_load(p, &r, &back, &err), RQ_OK);
    assert_memory_equal(&r.cfg, &m.cfg, sizeof m.cfg);
    assert_true(back.test_accuracy == 0.875 && back.train_steps == 42 && back.seed == 7);
    assert_string_equal(back.train_data, "x.h5");
    for (int i = 0; i < m.n_params; i++) {
        assert_string_equal(r.params[i]->name, m.params[i]->name);
        assert_memory_equal(r.params[i]->data, m.params[i]->data, (size_t)m.params[i]->n * sizeof(float));
    }
    rq_classifier_free(&r);
    /* no temp file left behind */
    char tmp[600];
    rq_h5_temp_path(p, tmp, sizeof tmp);
    assert_int_not_equal(access(tmp, F_OK), 0);

    /* hand-written files: the valid one loads, each broken one names its problem */
    write_variant(fpath(state, "v.h5", q), &m, V_OK);
    assert_int_equal(rq_classifier_load(q, &r, NULL, &err), RQ_OK);
    rq_classifier_free(&r);
    struct {
        variant v;
        rq_status code;
        const char *msg;
    } cases[] = {
        {V_FORMAT, RQ_EFORMAT, "format 'robuq-ckpt'"},
        {V_VERSION, RQ_EFORMAT, "version 7"},
        {V_BADCFG, RQ_EFORMAT, "dim 10"},
        {V_MISSING, RQ_EFORMAT, "missing parameter /params/stem.1.bias"},
        {V_SHAPE, RQ_ESHAPE, "stem.1.weight"},
        {V_NAN, RQ_ENUM, "stem.2.bias[1] is not finite"},
        {V_EXTRA, RQ_EFORMAT, "unexpected parameter /params/blocks.9.qkv.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_variant(q, &m, cases[i].v);
        rq_err_clear(&err);
        rq_status st = rq_classifier_load(q, &r, NULL, &err);
        if (st != cases[i].code || !strstr(err.msg, cases[i].msg))
            fail_msg("variant %d: status %d '%s', expected %d '%s'", cases[i].v, st, err.msg, cases[i].code, cases[i].msg);
        assert_null(r.params); /* nothing half-built is left */
    }
    rq_err_clear(&err);
    assert_int_equal(rq_classifier_load(fpath(state, "none.h5", q), &r, NULL, &err), RQ_EIO);
    rq_classifier_free(&m);
}

/* ------------------------------------------------------------------ training + FID sanity */

typedef struct {
    float *x; /* NCHW in [-1,1] */
    int32_t *y;
    long n;
} subset;

static int load_subset(const char *img, const char *lab, long n, subset *s) {
    rq_err err = {0};
    uint8_t *im;
    int32_t *lb;
    long total;
    int h, w;
    if (rq_idx_load_pair(img, lab, &im, &lb, &total, &h, &w, &err)) return -1;
    if (n > total) n = total;
    s->n = n;
    s->x = malloc((size_t)n * 784 * sizeof(float));
    s->y = lb;
    for (long i = 0; i < n * 784; i++) s->x[i] = im[i] / 127.5f - 1.0f;
    free(im);
    return 0;
}

static void test_train_fmnist(void **state) {
    subset tr, te;
    if (access(FMNIST "/train-images-idx3-ubyte.gz", R_OK) ||
        load_subset(FMNIST "/train-images-idx3-ubyte.gz", FMNIST "/train-labels-idx1-ubyte.gz", 8000, &tr) ||
        load_subset(FMNIST "/t10k-images-idx3-ubyte.gz", FMNIST "/t10k-labels-idx1-ubyte.gz", 1000, &te)) {
        print_message("Fashion-MNIST not found under " FMNIST ": skipped\n");
        skip();
    }
    /* a small model (about 1M MACs per image), cheap enough for a test */
    rq_classifier_config c = {.image_size = 28, .in_channels = 1, .patch_size = 4, .kernel_size = 4, .stem_width = 8,
                              .dim = 32, .depth = 1, .heads = 2, .num_classes = 10, .mlp_ratio = 2, .feat_dim = 64};
    rq_classifier m;
    rq_err err = {0};
    /* one thread: at this size OpenMP barriers cost more than the work, and a
     * loaded shared machine makes them far worse (the results are the same) */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(rq_classifier_init(&m, &c, 0, &err), RQ_OK);
    rq_dit view;
    rq_classifier_param_view(&m, &view);
    rq_adamw opt;
    assert_int_equal(rq_adamw_init(&opt, &view, 3e-3f, 0.9f, 0.999f, 0.0f, &err), RQ_OK);
    rq_graph g;
    assert_int_equal(rq_graph_init(&g, 8 << 20), RQ_OK);
    enum { B = 128, STEPS = 100 };
    int y[B];
    double t0 = rq_now(), first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        long o = ((long)step * B) % (tr.n - B);
        for (int i = 0; i < B; i++) y[i] = tr.y[o + i];
        rq_graph_reset(&g);
        rq_zero_grads(&view);
        rq_tensor *xt = rq_tensor_wrap(&g, tr.x + o * 784, 4, (int[]){B, 1, 28, 28});
        rq_tensor *loss = rq_cross_entropy(&g, rq_classifier_forward(&g, &m, xt, NULL), y, B);
        assert_non_null(loss);
        assert_int_equal(rq_backward(&g, loss), RQ_OK);
        rq_adamw_step(&opt, &view, step < 10 ? 3e-3f * (step + 1) / 10 : 3e-3f);
        if (step < 10) first += loss->data[0] / 10;
        if (step >= STEPS - 10) last += loss->data[0] / 10;
    }
    double acc;
    assert_int_equal(rq_classifier_accuracy(&m, te.x, te.y, te.n, 250, &acc, &err), RQ_OK);
    print_message("  %d steps in %.1f s: loss %.3f -> %.3f, test accuracy %.3f\n", STEPS, rq_now() - t0, first, last, acc);
    assert_true(last < 0.5 * first);
    assert_true(acc > 0.75); /* chance is 0.10; this run reaches 0.835 */

    /* features: the same images -> FID 0; train vs test small; noise large */
    int D = rq_classifier_feat_dim(&c);
    long n = te.n;
    float *ft = malloc((size_t)n * D * sizeof(float)), *fr = malloc((size_t)n * D * sizeof(float)),
          *fn = malloc((size_t)n * D * sizeof(float)), *noise = malloc((size_t)n * 784 * sizeof(float));
    uint64_t s = 17;
    tu_fill(&s, noise, n * 784, -1, 1);
    assert_int_equal(rq_classifier_embed(&m, te.x, n, 250, ft, NULL, NULL, &err), RQ_OK);
    assert_int_equal(rq_classifier_embed(&m, tr.x, n, 250, fr, NULL, NULL, &err), RQ_OK);
    assert_int_equal(rq_classifier_embed(&m, noise, n, 250, fn, NULL, NULL, &err), RQ_OK);
    rq_fstats st, sr, sn;
    assert_int_equal(rq_fstats_compute(ft, n, D, &st, &err), RQ_OK);
    assert_int_equal(rq_fstats_compute(fr, n, D, &sr, &err), RQ_OK);
    assert_int_equal(rq_fstats_compute(fn, n, D, &sn, &err), RQ_OK);
    double f_tt, f_rt, f_nt, p, r, pn, rn;
    assert_int_equal(rq_fid_from_stats(&st, &st, &f_tt, &err), RQ_OK);
    assert_int_equal(rq_fid_from_stats(&sr, &st, &f_rt, &err), RQ_OK);
    assert_int_equal(rq_fid_from_stats(&sn, &st, &f_nt, &err), RQ_OK);
    assert_int_equal(rq_precision_recall(ft, n, fr, n, D, 3, &p, &r, &err), RQ_OK);
    assert_int_equal(rq_precision_recall(ft, n, fn, n, D, 3, &pn, &rn, &err), RQ_OK);
    print_message("  FID test/test %.2e, train/test %.3f, noise/test %.3f; P/R train %.3f/%.3f, noise %.3f/%.3f\n",
                  f_tt, f_rt, f_nt, p, r, pn, rn);
    assert_true(f_tt < 1e-6);
    assert_true(f_rt < 0.1 * f_nt);
    assert_true(p > 0.6 && r > 0.6);
    assert_true(pn < 0.2 && rn < 0.2);
    rq_fstats_free(&st), rq_fstats_free(&sr), rq_fstats_free(&sn);
    free(ft), free(fr), free(fn), free(noise);
    rq_graph_free(&g);
    rq_adamw_free(&opt);
    rq_classifier_free(&m);
    free(tr.x), free(tr.y), free(te.x), free(te.y);
    omp_set_num_threads(threads);
}

/* ------------------------------------------------------------------ command lines */

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A tiny synthetic 8x8 dataset: class k is a bright k-th row band. */
static void write_bands(const char *path, long n, uint64_t seed) {
    uint8_t *im = malloc((size_t)n * 64);
    int32_t *lb = malloc((size_t)n * sizeof(int32_t));
    for (long i = 0; i < n; i++) {
        lb[i] = (int32_t)(i % 4);
        for (int p = 0; p < 64; p++)
            im[i * 64 + p] = (uint8_t)(p / 8 / 2 == lb[i] ? 200 + tu_next(&seed) % 56 : tu_next(&seed) % 60);
    }
    rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = n, .c = 1, .h = 8, .w = 8, .images = im, .labels = lb,
                          .num_classes = 4};
    rq_err err = {0};
    assert_int_equal(rq_dataset_write(path, &src, &err), RQ_OK);
    free(im), free(lb);
}

static void test_cli(void **state) {
    const char *clf = ROBUQ_BIN_DIR "/robuq-classifier", *ev = ROBUQ_BIN_DIR "/robuq-eval";
    if (access(clf, X_OK) || access(ev, X_OK)) skip(); /* separate targets: build them to run this */
    char cmd[4096], out[16384], tr[512], te[512], w[512], res[512], p[512];
    write_bands(fpath(state, "tr.h5", tr), 400, 1);
    write_bands(fpath(state, "te.h5", te), 200, 2);
    fpath(state, "clf.h5", w);
    fpath(state, "res.jsonl", res);

    snprintf(cmd, sizeof cmd, "%s --help", clf);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "--steps"));
    snprintf(cmd, sizeof cmd, "%s --bogus 1 2>&1", clf);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s --steps -3 2>&1", clf);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s --train %s/none.h5 --test %s --out %s 2>&1", clf, ((tu_dir *)*state)->dir, te, w);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "none.h5"));
    assert_int_not_equal(access(w, F_OK), 0);

    snprintf(cmd, sizeof cmd,
             "%s --train %s --test %s --out %s --steps 60 --batch 32 --dim 16 --depth 1 --heads 2 --patch 2 --lr 3e-3 "
             "--warmup 5 --shift 0 --flip off --threads 1 2>&1",
             clf, tr, te, w);
    int rc = run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("robuq-classifier failed (%d): %s", rc, out);
    double acc = -1;
    const char *a = strstr(out, "test accuracy ");
    assert_non_null(a);
    sscanf(a, "test accuracy %lf", &acc);
    assert_true(acc > 0.9); /* the bands are trivially separable */
    rq_classifier m;
    rq_classifier_meta meta;
    rq_err err = {0};
    assert_int_equal(rq_classifier_load(w, &m, &meta, &err), RQ_OK);
    assert_true(fabs(meta.test_accuracy - acc) < 1e-4);
    rq_classifier_free(&m);

    /* robuq-eval: the training split as "samples" against the test split */
    snprintf(cmd, sizeof cmd, "%s --help", ev);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s 2>&1", ev);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s %s --k 0 2>&1", ev, tr);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s %s --classifier %s --ref %s --results %s --name real --label FP --splits 4 --threads 1 2>&1", ev,
             tr, w, te, res);
    rc = run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("robuq-eval failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "cached reference features"));
    /* second run: cache hit, another row, with numeric bits */
    snprintf(cmd, sizeof cmd,
             "%s %s --classifier %s --ref %s --results %s --name real --label A4 --max-samples 100 --splits 4 --threads 1 2>&1", ev,
             te, w, te, res);
    rc = run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("robuq-eval (2) failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "reference features from"));
    /* the results: two JSON lines, a CSV with a header, a grid and plots */
    FILE *f = fopen(res, "r");
    assert_non_null(f);
    char line[2][4096];
    assert_non_null(fgets(line[0], sizeof line[0], f));
    assert_non_null(fgets(line[1], sizeof line[1], f));
    fclose(f);
    assert_non_null(strstr(line[0], "{\"name\":\"real\",\"bits\":\"FP\",\"fid\":"));
    assert_non_null(strstr(line[0], "\"n\":400"));
    assert_non_null(strstr(line[1], "\"n\":100"));
    double fid = -1, acc2 = -1;
    sscanf(strstr(line[0], "\"fid\":") + 6, "%lf", &fid);
    sscanf(strstr(line[1], "\"accuracy\":") + 11, "%lf", &acc2);
    assert_true(fid >= 0 && fid < 5);
    assert_true(acc2 > 0.9);
    f = fopen(fpath(state, "res.csv", p), "r");
    assert_non_null(f);
    assert_non_null(fgets(line[0], sizeof line[0], f));
    fclose(f);
    assert_non_null(strstr(line[0], "name,bits,fid,is,is_std,precision,recall,accuracy,n,steps,seconds"));
    const char *files[] = {"real_FP_grid.png", "real_A4_grid.png", "res_bars.png", "res_fid.png", "res_acc.png",
                           "clf.refstats.h5"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (access(fpath(state, files[i], p), R_OK)) fail_msg("missing output %s", files[i]);

    /* a generator: an (untrained) tiny DiT checkpoint; its samples saved and
     * re-read give the same metrics as the run that generated them */
    char ck[512], sv[512], res2[512];
    const char *ini = "[model]\ninput_size = 8\nin_channels = 1\npatch_size = 2\nhidden_size = 16\ndepth = 1\n"
                      "num_heads = 2\nnum_classes = 4\n[sample]\nsteps = 2\ncfg_scale = 1\n";
    rq_config *cfg = rq_config_new();
    assert_int_equal(rq_config_load_string(cfg, ini, "tiny", &err), RQ_OK);
    rq_dit_config dc;
    assert_int_equal(rq_model_config_from(cfg, &dc, &err), RQ_OK);
    rq_config_free(cfg);
    rq_dit dit;
    assert_int_equal(rq_dit_init(&dit, &dc, 5, &err), RQ_OK);
    for (int i = 0; i < dit.n_params; i++) { /* zero-init layers would give constant output */
        uint64_t sd = 100 + i;
        tu_fill(&sd, dit.params[i]->data, dit.params[i]->n, -0.2f, 0.2f);
    }
    rq_ckpt_meta cm = {.step = 1, .config_text = (char *)ini};
    assert_int_equal(rq_ckpt_save(fpath(state, "dit.h5", ck), &dit, NULL, NULL, &cm, &err), RQ_OK);
    rq_dit_free(&dit);
    fpath(state, "samples.h5", sv);
    fpath(state, "gen.jsonl", res2);
    snprintf(cmd, sizeof cmd,
             "%s %s --weights params --per-class 3 --batch 5 --classifier %s --ref %s --results %s --label A2 "
             "--save-samples %s --splits 2 --k 2 --threads 1 2>&1",
             ev, ck, w, te, res2, sv);
    rc = run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("robuq-eval on a checkpoint failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "sampled 12/12"));
    snprintf(cmd, sizeof cmd, "%s %s --classifier %s --ref %s --results %s --label A2 --splits 2 --k 2 --threads 1 2>&1",
             ev, sv, w, te, res2);
    rc = run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("robuq-eval on saved samples failed (%d): %s", rc, out);
    f = fopen(res2, "r");
    assert_non_null(f);
    assert_non_null(fgets(line[0], sizeof line[0], f));
    assert_non_null(fgets(line[1], sizeof line[1], f));
    fclose(f);
    assert_non_null(strstr(line[0], "\"n\":12,\"steps\":2"));
    const char *k0 = strstr(line[0], "\"fid\":"), *k1 = strstr(line[1], "\"fid\":");
    assert_non_null(k0), assert_non_null(k1);
    size_t len = (size_t)(strstr(k0, ",\"n\":") - k0); /* fid, is, is_std, precision, recall, accuracy */
    assert_int_equal(strstr(k1, ",\"n\":") - k1, len);
    assert_memory_equal(k0, k1, len);

    /* a folder of PNGs, labels from the file names ("2_0005.png") */
    char dir[512];
    fpath(state, "pngs", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    uint64_t sd = 3;
    for (int i = 0; i < 16; i++) {
        uint8_t im[64];
        for (int q = 0; q < 64; q++) im[q] = (uint8_t)(q / 8 / 2 == i % 4 ? 200 + tu_next(&sd) % 56 : tu_next(&sd) % 60);
        char pp[600];
        snprintf(pp, sizeof pp, "%s/%d_%04d.png", dir, i % 4, i);
        assert_int_equal(rq_png_write(pp, im, 8, 8, 1, &err), RQ_OK);
    }
    snprintf(cmd, sizeof cmd, "%s %s --classifier %s --ref %s --results %s --name pngs --splits 2 --threads 1 2>&1", ev,
             dir, w, te, res2);
    rc = run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("robuq-eval on a PNG folder failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "| n 16 |"));
    assert_null(strstr(out, "accuracy n/a")); /* labels were found */

    /* bad sources: a file that is neither, and mismatched image size */
    snprintf(cmd, sizeof cmd, "%s %s --classifier %s --ref %s --results %s 2>&1", ev, res, w, te, res);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "%s %s --classifier %s --ref %s --results %s 2>&1", ev, tr, te, te, res);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "format"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xent_values),
        cmocka_unit_test(test_xent_grad),
        cmocka_unit_test(test_model_grad),
        cmocka_unit_test_setup_teardown(test_save_load, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_train_fmnist),
        cmocka_unit_test_setup_teardown(test_cli, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
