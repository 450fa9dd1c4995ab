/* robuq-bench: time one DiT training step (forward + backward + AdamW + EMA)
 * in full precision and as W1.58A2 QAT (Hadamard + robust quantizer), the
 * C side of eval/bench.sh, which runs the PyTorch eager peer
 * (eval/bench_torch.py) with the same model, batch and threads and prints
 * the ratios.
 *
 *   robuq-bench [--mode fp|qat_a2|all] [--threads N] [--batch 16] [--steps 5]
 *               [--warmup 1] [--depth 12 --hidden 384 --heads 6 --patch 2
 *                --input 28 --channels 1 --classes 10]
 *
 * Prints one JSON line per mode: mean/min step seconds, peak RSS, and the
 * per-step activation arena high-water mark. Defaults: DiT-S/2 on 28x28x1
 * (196 tokens), batch 16. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "robuq/diffusion.h"
#include "robuq/train.h"

typedef struct {
    rq_dit_config mc;
    int batch, steps, warmup;
} bench_opts;

static int run_mode(const bench_opts *o, const char *mode) {
    rq_err err = {0};
    rq_dit m;
    rq_diffusion d;
    rq_adamw opt;
    rq_ema ema;
    if (rq_dit_init(&m, &o->mc, 0, &err) || rq_diffusion_init_linear(&d, 1000, 1e-4, 0.02, &err)) goto fail;
    if (!strcmp(mode, "qat_a2")) {
        rq_quant_opts q = {.enabled = 1, .weight_ternary = 1, .act_bits = 2, .adaln_act_bits = 4,
                           .method = RQ_ACTQ_ROBUST, .hadamard = 1};
        if (rq_dit_quantize(&m, &q, &err)) goto fail;
    }
    if (rq_adamw_init(&opt, &m, 1e-4f, 0.9f, 0.999f, 0.0f, &err) || rq_ema_init(&ema, &m, &err)) goto fail;
    /* Non-zero adaLN / final weights, so every path does real work. */
    rq_rng rng;
    rq_rng_seed(&rng, 1);
    for (int i = 0; i < m.n_params; i++)
        if (!strstr(m.params[i]->name, "bias")) rq_rng_fill_normal(&rng, m.params[i]->data, m.params[i]->n, 0.02f);

    int B = o->batch, C = o->mc.in_channels, S = o->mc.input_size;
    long per = (long)C * S * S;
    float *x0 = malloc((size_t)B * per * sizeof(float)), *noise = malloc((size_t)B * per * sizeof(float));
    int *t = malloc((size_t)B * sizeof(int)), *y = malloc((size_t)B * sizeof(int));
    rq_graph g;
    rq_graph_init(&g, (size_t)256 << 20);
    double sum = 0, best = 1e30;
    for (int step = 0; step < o->warmup + o->steps; step++) {
        for (long i = 0; i < B * per; i++) x0[i] = (float)(2 * rq_rng_uniform(&rng) - 1);
        for (int i = 0; i < B; i++) t[i] = rq_rng_int(&rng, 1000), y[i] = rq_rng_int(&rng, o->mc.num_classes);
        rq_rng_fill_normal(&rng, noise, B * per, 1.0f);
        double t0 = rq_now();
        rq_graph_reset(&g);
        rq_zero_grads(&m);
        rq_diffusion_loss_out lo;
        if (rq_diffusion_loss(&g, &d, &m, x0, t, y, noise, B, &lo) || rq_backward(&g, lo.loss)) {
            rq_err_set(&err, g.err.code, "%s", g.err.msg);
            goto fail;
        }
        rq_adamw_step(&opt, &m, 1e-4f);
        rq_ema_update(&ema, &m, 0.9999f);
        double dt = rq_now() - t0;
        if (step >= o->warmup) {
            sum += dt;
            best = dt < best ? dt : best;
        }
        fprintf(stderr, "robuq-bench %s: step %d %.3f s (loss %.4f)\n", mode, step, dt, lo.loss->data[0]);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"robuq\",\"mode\":\"%s\",\"threads\":%d,\"batch\":%d,\"step_s_mean\":%.4f,\"step_s_min\":%.4f,"
           "\"peak_rss_mb\":%.0f,\"arena_mb\":%.1f,\"params\":%ld,\"gmacs_per_sample\":%.3f}\n",
           mode, omp_get_max_threads(), B, sum / o->steps, best, ru.ru_maxrss / 1024.0,
           g.arena.high_water / 1048576.0, rq_dit_num_params(&m), rq_dit_macs(&m) / 1e9);
    fflush(stdout);
    rq_graph_free(&g);
    free(x0), free(noise), free(t), free(y);
    rq_adamw_free(&opt), rq_ema_free(&ema), rq_diffusion_free(&d), rq_dit_free(&m);
    return 0;
fail:
    fprintf(stderr, "robuq-bench: %s\n", err.msg);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: robuq-bench [--mode fp|qat_a2|all] [--threads N] [--batch N] [--steps N] [--warmup N]\n"
               "                   [--depth N] [--hidden N] [--heads N] [--patch N] [--input N] [--channels N] [--classes N]\n"
               "Times DiT training steps (default DiT-S/2 on 28x28x1, batch 16); one JSON line per mode.\n"
               "eval/bench.sh runs it next to the PyTorch peer and prints the ratios.\n");
}

int main(int argc, char **argv) {
    bench_opts o = {{.input_size = 28, .in_channels = 1, .patch_size = 2, .hidden_size = 384, .depth = 12,
                     .num_heads = 6, .num_classes = 10, .mlp_ratio = 4.0f, .learn_sigma = 1},
                    16, 5, 1};
    const char *mode = "all";
    struct { const char *flag; int *dst; int min; } ints[] = {
        {"--batch", &o.batch, 1}, {"--steps", &o.steps, 1}, {"--warmup", &o.warmup, 0},
        {"--depth", &o.mc.depth, 1}, {"--hidden", &o.mc.hidden_size, 4}, {"--heads", &o.mc.num_heads, 1},
        {"--patch", &o.mc.patch_size, 1}, {"--input", &o.mc.input_size, 1}, {"--channels", &o.mc.in_channels, 1},
        {"--classes", &o.mc.num_classes, 1}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "robuq-bench: %s needs a value\n", argv[i]);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--mode")) {
            mode = v;
            if (strcmp(mode, "fp") && strcmp(mode, "qat_a2") && strcmp(mode, "all")) {
                fprintf(stderr, "robuq-bench: --mode must be fp, qat_a2 or all, got '%s'\n", mode);
                return 2;
            }
            continue;
        }
        if (!strcmp(argv[i - 1], "--threads")) {
            int n = atoi(v);
            if (n < 1) {
                fprintf(stderr, "robuq-bench: --threads must be >= 1, got '%s'\n", v);
                return 2;
            }
            omp_set_num_threads(n);
            continue;
        }
        size_t k = 0;
        for (; k < sizeof ints / sizeof ints[0]; k++)
            if (!strcmp(argv[i - 1], ints[k].flag)) break;
        char *end;
        long n = strtol(v, &end, 10);
        if (k == sizeof ints / sizeof ints[0] || *end || n < ints[k].min || n > 1 << 20) {
            fprintf(stderr, "robuq-bench: bad option %s %s\n", argv[i - 1], v);
            usage(stderr);
            return 2;
        }
        *ints[k].dst = (int)n;
    }
    rq_err err = {0};
    if (rq_dit_config_check(&o.mc, &err)) {
        fprintf(stderr, "robuq-bench: %s\n", err.msg);
        return 2;
    }
    int rc = 0;
    if (!strcmp(mode, "fp") || !strcmp(mode, "all")) rc |= run_mode(&o, "fp");
    if (!strcmp(mode, "qat_a2") || !strcmp(mode, "all")) rc |= run_mode(&o, "qat_a2");
    return rc;
}
