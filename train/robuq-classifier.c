/* robuq-classifier: trains the feature network of robuq-eval (classifier.h)
 * on a robuq image dataset and reports its test accuracy.
 *
 *   robuq-classifier [--train runs/fmnist_train.h5] [--test runs/fmnist_test.h5]
 *                    [--out runs/fmnist_classifier.h5] [--steps 3000] [--batch 128] ...
 *
 * AdamW (train.h) with linear warmup and cosine decay, cross-entropy loss,
 * optional random flips and shifts (off by default: at a few epochs they
 * cost more accuracy than they buy). The weights are written atomically
 * (temp file + rename) with the test accuracy as an attribute. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/classifier.h"
#include "robuq/dataset.h"
#include "robuq/ops.h"
#include "robuq/rng.h"
#include "robuq/train.h"

static void usage(FILE *f) {
    rq_classifier_config d;
    rq_classifier_default_config(&d);
    fprintf(f,
            "usage: robuq-classifier [options]\n"
            "Trains the robuq-eval feature network (classifier.h) and reports its test accuracy.\n"
            "  --train FILE.h5     training set (default runs/fmnist_train.h5)\n"
            "  --test FILE.h5      test set for the reported accuracy (default runs/fmnist_test.h5)\n"
            "  --out FILE.h5       weights (default runs/fmnist_classifier.h5; written atomically)\n"
            "  --steps N           optimizer steps (default 2000)\n"
            "  --batch N           batch size (default 128)\n"
            "  --lr X              peak learning rate (default 2e-3)\n"
            "  --wd X              AdamW weight decay (default 0.05)\n"
            "  --warmup N          linear warmup steps, then cosine decay to 0 (default 100)\n"
            "  --shift N           random translation of up to N pixels (default 0 = off)\n"
            "  --flip on|off       random horizontal flips (default off)\n"
            "  --dim N --depth N --heads N --patch N --mlp-ratio N\n"
            "                      model size (default %d, %d, %d, %d, %d)\n"
            "  --stem-width N      conv stem width (default %d); 0: linear patch embedding of\n"
            "  --kernel N          k x k windows at stride patch (default k = patch)\n"
            "  --feat-dim N        feature: 0 = mean over tokens (size dim), N > 0 = fc of the flattened\n"
            "                      tokens to N (default %d)\n"
            "  --max-train N       use only the first N training images (default all)\n"
            "  --max-test N        evaluate on the first N test images (default all)\n"
            "  --seed N            init / data order seed (default 0)\n"
            "  --threads N         OpenMP threads (default: OMP_NUM_THREADS)\n"
            "  --log-every N       progress line every N steps (default 100)\n",
            d.dim, d.depth, d.heads, d.patch_size, d.mlp_ratio, d.stem_width, d.feat_dim);
}

static int parse_long(const char *s, const char *opt, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < lo || v > hi) {
        fprintf(stderr, "robuq-classifier: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *s, const char *opt, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "robuq-classifier: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Shift each image by a random (dx, dy) in [-s, s]^2, filling with the
 * background value -1 (black after the dataset's x/127.5-1 mapping). */
static void random_shift(rq_rng *rng, float *x, float *tmp, int n, int c, int h, int w, int s) {
    if (s <= 0) return;
    long per = (long)c * h * w;
    for (int i = 0; i < n; i++) {
        int dx = rq_rng_int(rng, 2 * s + 1) - s, dy = rq_rng_int(rng, 2 * s + 1) - s;
        float *img = x + i * per;
        memcpy(tmp, img, (size_t)per * sizeof(float));
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++) {
                    int sy = y - dy, sx = xx - dx;
                    img[((long)ch * h + y) * w + xx] =
                        (sy >= 0 && sy < h && sx >= 0 && sx < w) ? tmp[((long)ch * h + sy) * w + sx] : -1.0f;
                }
    }
}

static float lr_at(long step, long steps, long warmup, double peak) {
    if (step < warmup) return (float)(peak * (double)(step + 1) / (double)warmup);
    double p = (double)(step - warmup) / (double)(steps - warmup > 0 ? steps - warmup : 1);
    return (float)(peak * 0.5 * (1.0 + cos(M_PI * (p > 1 ? 1 : p))));
}

int main(int argc, char **argv) {
    const char *train_path = "runs/fmnist_train.h5", *test_path = "runs/fmnist_test.h5",
               *out = "runs/fmnist_classifier.h5";
    long steps = 2000, batch = 128, warmup = 100, shift = 0, max_train = 0, max_test = 0, seed = 0, threads = 0,
         log_every = 100, flip = 0;
    double lr = 2e-3, wd = 0.05;
    rq_classifier_config mc;
    rq_classifier_default_config(&mc);
    mc.kernel_size = 0; /* 0: = patch unless --kernel */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc || a[0] != '-' || a[1] != '-') {
            fprintf(stderr, "robuq-classifier: %s '%s'\n", a[0] == '-' ? "missing value for" : "unexpected argument", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        long l;
        int bad = 0;
        if (!strcmp(a, "--train")) train_path = v;
        else if (!strcmp(a, "--test")) test_path = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--steps")) bad = parse_long(v, a, 1, 100000000, &steps);
        else if (!strcmp(a, "--batch")) bad = parse_long(v, a, 1, 65536, &batch);
        else if (!strcmp(a, "--warmup")) bad = parse_long(v, a, 0, 100000000, &warmup);
        else if (!strcmp(a, "--shift")) bad = parse_long(v, a, 0, 64, &shift);
        else if (!strcmp(a, "--max-train")) bad = parse_long(v, a, 0, 1L << 40, &max_train);
        else if (!strcmp(a, "--max-test")) bad = parse_long(v, a, 0, 1L << 40, &max_test);
        else if (!strcmp(a, "--seed")) bad = parse_long(v, a, 0, 1L << 40, &seed);
        else if (!strcmp(a, "--threads")) bad = parse_long(v, a, 0, 4096, &threads);
        else if (!strcmp(a, "--log-every")) bad = parse_long(v, a, 1, 100000000, &log_every);
        else if (!strcmp(a, "--lr")) bad = parse_float(v, a, 0, 10, &lr);
        else if (!strcmp(a, "--wd")) bad = parse_float(v, a, 0, 10, &wd);
        else if (!strcmp(a, "--flip")) {
            if (!strcmp(v, "on")) flip = 1;
            else if (!strcmp(v, "off")) flip = 0;
            else fprintf(stderr, "robuq-classifier: --flip expects on or off, got '%s'\n", v), bad = 1;
        }
#define INTOPT(name, field)                                          \
    else if (!strcmp(a, name)) {                                     \
        bad = parse_long(v, a, !strcmp(name, "--depth") ? 0 : 1, 4096, &l); \
        mc.field = (int)l;                                           \
    }
        INTOPT("--dim", dim) INTOPT("--depth", depth) INTOPT("--heads", heads) INTOPT("--patch", patch_size) INTOPT("--kernel", kernel_size)
        else if (!strcmp(a, "--feat-dim")) {
            bad = parse_long(v, a, 0, 65536, &l);
            mc.feat_dim = (int)l;
        }
        else if (!strcmp(a, "--stem-width")) {
            bad = parse_long(v, a, 0, 4096, &l);
            mc.stem_width = (int)l;
        }
        INTOPT("--mlp-ratio", mlp_ratio)
#undef INTOPT
        else {
            fprintf(stderr, "robuq-classifier: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) return 2;
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    if (mc.kernel_size == 0) mc.kernel_size = mc.patch_size;

    rq_err err = {0};
    rq_dataset train = {0}, test = {0};
    rq_classifier m = {0};
    rq_adamw opt = {0};
    rq_loader loader = {0};
    rq_graph g = {0};
    int graph_ok = 0;
    float *x = NULL, *tmp = NULL;
    int32_t *y32 = NULL;
    int *y = NULL;
    if (rq_dataset_load_n(train_path, max_train, &train, &err) || rq_dataset_load_n(test_path, max_test, &test, &err))
        goto fail;
    if (train.kind != RQ_DATA_IMAGES || train.h != train.w) {
        rq_err_set(&err, RQ_EINVAL, "%s: the classifier needs square images, got %s %dx%dx%d", train_path,
                   train.kind == RQ_DATA_IMAGES ? "images" : "latents", train.c, train.h, train.w);
        goto fail;
    }
    if (test.c != train.c || test.h != train.h || test.w != train.w || test.num_classes != train.num_classes ||
        test.kind != train.kind) {
        rq_err_set(&err, RQ_EINVAL, "%s: samples %dx%dx%d with %d classes do not match %s (%dx%dx%d, %d classes)",
                   test_path, test.c, test.h, test.w, test.num_classes, train_path, train.c, train.h, train.w,
                   train.num_classes);
        goto fail;
    }
    mc.image_size = train.h, mc.in_channels = train.c, mc.num_classes = train.num_classes;
    if (rq_classifier_init(&m, &mc, (uint64_t)seed, &err)) goto fail;
    rq_dit view;
    rq_classifier_param_view(&m, &view);
    if (rq_adamw_init(&opt, &view, (float)lr, 0.9f, 0.999f, (float)wd, &err) ||
        rq_loader_init(&loader, &train, (uint64_t)seed + 1, 1, (int)flip, &err))
        goto fail;
    if (rq_graph_init(&g, (size_t)64 << 20)) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory for the graph");
        goto fail;
    }
    graph_ok = 1;
    long per = rq_dataset_sample_size(&train);
    x = malloc((size_t)batch * per * sizeof(float));
    tmp = malloc((size_t)per * sizeof(float));
    y32 = malloc((size_t)batch * sizeof(int32_t));
    y = malloc((size_t)batch * sizeof(int));
    if (!x || !tmp || !y32 || !y) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory for a batch of %ld", batch);
        goto fail;
    }
    rq_rng rng;
    rq_rng_seed(&rng, (uint64_t)seed + 2);
    fprintf(stderr,
            "robuq-classifier: patch %d (%s %d), dim %d, %d transformer blocks, feature %d (%s); %ld parameters; "
            "%ld train / %ld test images; %ld steps of %ld; %d threads\n",
            mc.patch_size, mc.stem_width ? "conv stem width" : "window", mc.stem_width ? mc.stem_width : mc.kernel_size,
            mc.dim, mc.depth, rq_classifier_feat_dim(&mc), mc.feat_dim ? "flattened tokens" : "mean of tokens",
            rq_classifier_num_params(&m), train.n, test.n, steps, batch, omp_get_max_threads());

    double t0 = rq_now(), loss_acc = 0;
    long right = 0, seen = 0;
    for (long step = 0; step < steps; step++) {
        if (rq_loader_next(&loader, x, y32, (int)batch)) {
            rq_err_set(&err, RQ_EINVAL, "loader failed at step %ld", step);
            goto fail;
        }
        random_shift(&rng, x, tmp, (int)batch, train.c, train.h, train.w, (int)shift);
        for (long i = 0; i < batch; i++) y[i] = y32[i];
        rq_graph_reset(&g);
        rq_zero_grads(&view);
        rq_tensor *xt = rq_tensor_wrap(&g, x, 4, (int[]){(int)batch, train.c, train.h, train.w});
        rq_tensor *logits = rq_classifier_forward(&g, &m, xt, NULL);
        rq_tensor *loss = rq_cross_entropy(&g, logits, y, batch);
        if (!loss || rq_backward(&g, loss)) {
            rq_err_set(&err, g.err.code ? g.err.code : RQ_EINVAL, "step %ld: %s", step, g.err.msg);
            goto fail;
        }
        int finite;
        rq_grad_norm(&view, &finite);
        if (!finite) {
            rq_err_set(&err, RQ_ENUM, "step %ld: non-finite gradient in %s", step, rq_first_nonfinite_grad(&view));
            goto fail;
        }
        rq_adamw_step(&opt, &view, lr_at(step, steps, warmup, lr));
        loss_acc += loss->data[0];
        for (long i = 0; i < batch; i++) {
            const float *l = logits->data + i * mc.num_classes;
            int best = 0;
            for (int k = 1; k < mc.num_classes; k++) best = l[k] > l[best] ? k : best;
            right += best == y[i];
        }
        seen += batch;
        if ((step + 1) % log_every == 0 || step + 1 == steps) {
            double el = rq_now() - t0, ips = (step + 1) / el, eta = (steps - step - 1) / ips;
            fprintf(stderr, "step %ld/%ld | loss %.4f | train acc %.4f | lr %.2e | %.2f it/s | ETA %dm%02ds\n", step + 1,
                    steps, loss_acc / (seen / batch), (double)right / seen, (double)lr_at(step, steps, warmup, lr),
                    ips, (int)eta / 60, (int)eta % 60);
            loss_acc = 0, right = 0, seen = 0;
        }
    }
    double train_s = rq_now() - t0, acc;
    if (rq_classifier_accuracy(&m, test.x, test.labels, test.n, 256, &acc, &err)) goto fail;
    rq_classifier_meta meta = {.test_accuracy = acc, .train_steps = steps, .train_seconds = train_s, .seed = seed};
    snprintf(meta.train_data, sizeof meta.train_data, "%s", train_path);
    if (rq_classifier_save(out, &m, &meta, &err)) goto fail;
    printf("test accuracy %.4f on %ld images of %s; trained %ld steps in %.1f s; wrote %s\n", acc, test.n, test_path,
           steps, train_s, out);
    free(x), free(tmp), free(y32), free(y);
    rq_graph_free(&g);
    rq_loader_free(&loader);
    rq_adamw_free(&opt);
    rq_classifier_free(&m);
    rq_dataset_free(&train), rq_dataset_free(&test);
    return 0;
fail:
    fprintf(stderr, "robuq-classifier: %s\n", err.msg);
    free(x), free(tmp), free(y32), free(y);
    if (graph_ok) rq_graph_free(&g);
    rq_loader_free(&loader);
    rq_adamw_free(&opt);
    rq_classifier_free(&m);
    rq_dataset_free(&train), rq_dataset_free(&test);
    return 1;
}
