/* robuq-bench: time one DiT training step (forward + backward + AdamW + EMA)
 * in full precision and as W1.58A2 QAT (Hadamard + robust quantizer), the
 * C side of eval/bench.sh, which runs the PyTorch eager peer
 * (eval/bench_torch.py) with the same model, batch and threads and prints
 * the ratios. --mode infer times forward passes instead: the fp32 model, the
 * fake-quant W1.58A2 model and its export running the integer kernels,
 * whole model and per linear shape, in GFLOP/s-equivalent (2 x MACs / s).
 *
 *   robuq-bench [--mode fp|qat_a2|all|infer|memory|threads] [--threads N] [--batch 16] [--steps 5]
 *               [--warmup 1] [--depth 12 --hidden 384 --heads 6 --patch 2
 *                --input 28 --channels 1 --classes 10] [--recompute 0|1] [--profile 0|1]
 *               [--budget-gib 24]
 *
 * Prints one JSON line per mode: mean/min step seconds, peak RSS, and the
 * per-step activation arena high-water mark. Defaults: DiT-S/2 on 28x28x1
 * (196 tokens), batch 16. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "robuq/diffusion.h"
#include "robuq/export.h"
#include "robuq/gemm.h"
#include "robuq/tlinear.h"
#include "robuq/train.h"

typedef struct {
    rq_dit_config mc;
    int batch, steps, warmup, recompute, profile;
} bench_opts;

/* What one training-step run measured. */
typedef struct {
    double arena_bytes; /* per-step activation memory: main tape + recompute scratch */
    double state_bytes; /* params, grads, Adam m and v, EMA */
} step_mem;

static int run_mode(const bench_opts *o, const char *mode, step_mem *mem) {
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
    m.recompute = o->recompute;
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
    rq_profile prof = {0};
    double sum = 0, best = 1e30, opt_s = 0;
    for (int step = 0; step < o->warmup + o->steps; step++) {
        for (long i = 0; i < B * per; i++) x0[i] = (float)(2 * rq_rng_uniform(&rng) - 1);
        for (int i = 0; i < B; i++) t[i] = rq_rng_int(&rng, 1000), y[i] = rq_rng_int(&rng, o->mc.num_classes);
        rq_rng_fill_normal(&rng, noise, B * per, 1.0f);
        if (o->profile && step == o->warmup) g.prof = &prof; /* time the measured steps only */
        double t0 = rq_now();
        rq_graph_reset(&g);
        rq_zero_grads(&m);
        rq_profile_start(g.prof);
        rq_diffusion_loss_out lo;
        if (rq_diffusion_loss(&g, &d, &m, x0, t, y, noise, B, &lo) || rq_backward(&g, lo.loss)) {
            rq_err_set(&err, g.err.code, "%s", g.err.msg);
            goto fail;
        }
        double t1 = rq_now();
        rq_adamw_step(&opt, &m, 1e-4f);
        rq_ema_update(&ema, &m, 0.9999f);
        double dt = rq_now() - t0;
        if (g.prof) opt_s += rq_now() - t1;
        if (step >= o->warmup) {
            sum += dt;
            best = dt < best ? dt : best;
        }
        fprintf(stderr, "robuq-bench %s: step %d %.3f s (loss %.4f)\n", mode, step, dt, lo.loss->data[0]);
    }
    if (g.prof) {
        fprintf(stderr, "robuq-bench %s: per-op time per step (%d threads)\n", mode, omp_get_max_threads());
        rq_profile_print(&prof, stderr, o->steps);
        fprintf(stderr, "%-22s %8s %10.2f ms per step (AdamW + EMA, not in the total)\n", "optimizer", "",
                1e3 * opt_s / o->steps);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double arena = (double)g.arena.high_water + (m.scratch ? (double)m.scratch->arena.high_water : 0);
    printf("{\"impl\":\"robuq\",\"mode\":\"%s\",\"threads\":%d,\"batch\":%d,\"recompute\":%d,\"step_s_mean\":%.4f,"
           "\"step_s_min\":%.4f,\"peak_rss_mb\":%.0f,\"arena_mb\":%.1f,\"params\":%ld,\"gmacs_per_sample\":%.3f}\n",
           mode, omp_get_max_threads(), B, o->recompute, sum / o->steps, best, ru.ru_maxrss / 1024.0,
           arena / 1048576.0, rq_dit_num_params(&m), rq_dit_macs(&m) / 1e9);
    fflush(stdout);
    if (mem) {
        mem->arena_bytes = arena;
        mem->state_bytes = 5.0 * 4.0 * rq_dit_num_params(&m);
    }
    rq_graph_free(&g);
    free(x0), free(noise), free(t), free(y);
    rq_adamw_free(&opt), rq_ema_free(&ema), rq_diffusion_free(&d), rq_dit_free(&m);
    return 0;
fail:
    fprintf(stderr, "robuq-bench: %s\n", err.msg);
    return 1;
}


/* ------------------------------------------------------------ memory
 * Training memory of the model at hand, FP and QAT-A2, without and with
 * activation recomputation: one step at batch b and one at 2b give the
 * activation bytes per sample (the arena grows linearly in the batch; what
 * does not grow is the per-step part that does not depend on it, e.g. the
 * rotated and ternarized weight copies of QAT), the fixed model state (20
 * bytes per parameter: weights, gradients, Adam m and v, EMA), and the
 * largest batch that fits a memory budget. */
static int run_memory(const bench_opts *o, double budget_gib) {
    const char *modes[2] = {"fp", "qat_a2"};
    printf("%-7s %9s | %12s %13s %13s | %9s\n", "mode", "recompute", "state GiB", "fixed MiB", "MiB/sample",
           "max batch");
    for (int q = 0; q < 2; q++)
        for (int rc = o->recompute; rc < 2; rc++) { /* --recompute 1: only the recomputed rows */
            bench_opts b = *o;
            b.recompute = rc, b.steps = 1, b.warmup = 0;
            step_mem m1, m2;
            if (run_mode(&b, modes[q], &m1)) return 1;
            b.batch = 2 * o->batch;
            if (run_mode(&b, modes[q], &m2)) return 1;
            double per = (m2.arena_bytes - m1.arena_bytes) / o->batch, fixed = m1.arena_bytes - per * o->batch;
            double left = budget_gib * 1073741824.0 - m1.state_bytes - fixed;
            long maxb = per > 0 && left > 0 ? (long)(left / per) : 0;
            printf("%-7s %9d | %12.2f %13.1f %13.2f | %9ld\n", modes[q], rc, m1.state_bytes / 1073741824.0,
                   fixed / 1048576.0, per / 1048576.0, maxb);
            fflush(stdout);
        }
    printf("(max batch: largest batch whose state + activations fit %.0f GiB; %d tokens, D=%d, depth %d)\n", budget_gib,
           rq_dit_tokens(&o->mc), o->mc.hidden_size, o->mc.depth);
    return 0;
}

/* ------------------------------------------------------------ inference */

static const rq_quant_opts QAT_A2 = {.enabled = 1, .weight_ternary = 1, .act_bits = 2, .adaln_act_bits = 4,
                                     .method = RQ_ACTQ_ROBUST, .hadamard = 1};

static double param_mb(const rq_dit *m) {
    double b = 0;
    for (int i = 0; i < m->n_params; i++) b += m->params[i]->data ? 4.0 * m->params[i]->n : 0;
    return b / 1048576.0;
}

/* Mean/min seconds of `steps` forwards (after warmup) of m on a fixed batch;
 * with --profile the section times of the measured forwards (to stderr). */
static int time_forward(rq_dit *m, const char *mode, const bench_opts *o, double *mean, double *best,
                        double *arena_mb) {
    int B = o->batch, C = o->mc.in_channels, S = o->mc.input_size;
    rq_graph g;
    rq_graph_init(&g, (size_t)64 << 20);
    g.grad_enabled = 0;
    rq_rng rng;
    rq_rng_seed(&rng, 2);
    float *xd = malloc((size_t)B * C * S * S * sizeof(float)), tv[4096];
    int *y = malloc((size_t)B * sizeof(int));
    rq_rng_fill_normal(&rng, xd, (long)B * C * S * S, 1.0f);
    for (int i = 0; i < B; i++) tv[i % 4096] = (float)((i * 997) % 1000), y[i] = i % o->mc.num_classes;
    double sum = 0;
    *best = 1e30;
    int rc = 0;
    rq_profile prof = {0};
    for (int step = 0; step < o->warmup + o->steps; step++) {
        if (o->profile && step == o->warmup) g.prof = &prof;
        double t0 = rq_now();
        rq_profile_start(g.prof);
        rq_graph_reset(&g);
        rq_tensor *x = rq_tensor_wrap(&g, xd, 4, (int[]){B, C, S, S}), *t = rq_tensor_wrap(&g, tv, 1, (int[]){B});
        if (!rq_dit_forward(&g, m, x, t, y)) {
            fprintf(stderr, "robuq-bench: forward: %s\n", g.err.msg);
            rc = 1;
            break;
        }
        double dt = rq_now() - t0;
        if (step >= o->warmup) sum += dt, *best = dt < *best ? dt : *best;
    }
    *mean = sum / o->steps;
    if (o->profile && !rc) {
        fprintf(stderr, "%s: forward sections, per forward\n", mode);
        rq_profile_print(&prof, stderr, o->steps);
    }
    *arena_mb = g.arena.high_water / 1048576.0;
    rq_graph_free(&g);
    free(xd), free(y);
    return rc;
}

/* Whole-model forward: fp32, fake-quant W1.58A2, and the export of the
 * latter (integer kernels), one JSON line each. */
static int run_infer_models(const bench_opts *o) {
    rq_err err = {0};
    rq_dit fp, fq, ex;
    char path[64];
    snprintf(path, sizeof path, "/tmp/robuq-bench-%d.h5", (int)getpid());
    if (rq_dit_init(&fp, &o->mc, 0, &err) || rq_dit_init(&fq, &o->mc, 0, &err)) goto fail;
    rq_rng rng;
    rq_rng_seed(&rng, 1);
    for (int i = 0; i < fp.n_params; i++) {
        rq_rng_fill_normal(&rng, fp.params[i]->data, fp.params[i]->n, 0.02f);
        memcpy(fq.params[i]->data, fp.params[i]->data, (size_t)fp.params[i]->n * sizeof(float));
    }
    rq_export_opts eo = {.packing = RQ_TPACK_TRIT5, .config_text = "", .source = "robuq-bench"};
    char cfg_text[512];
    snprintf(cfg_text, sizeof cfg_text,
             "[model]\ninput_size=%d\nin_channels=%d\npatch_size=%d\nhidden_size=%d\ndepth=%d\nnum_heads=%d\n"
             "num_classes=%d\n",
             o->mc.input_size, o->mc.in_channels, o->mc.patch_size, o->mc.hidden_size, o->mc.depth, o->mc.num_heads,
             o->mc.num_classes);
    eo.config_text = cfg_text;
    if (rq_dit_quantize(&fq, &QAT_A2, &err) || rq_export_write(path, &fq, &eo, NULL, &err) ||
        rq_export_load(path, &ex, NULL, NULL, &err))
        goto fail;
    remove(path);
    struct { const char *mode; rq_dit *m; } rows[] = {{"infer_fp", &fp}, {"infer_fakequant_a2", &fq}, {"infer_w158a2", &ex}};
    double gflop = 2.0 * rq_dit_macs(&fp) * o->batch / 1e9;
    for (int r = 0; r < 3; r++) {
        double mean, best, arena;
        if (time_forward(rows[r].m, rows[r].mode, o, &mean, &best, &arena)) return 1;
        /* model bytes: fp32 params, or for the export its packed weights + fp parts */
        double model_mb = param_mb(rows[r].m);
        if (rows[r].m == &ex) {
            rq_dit_linear *ls[1024];
            int n = rq_dit_linears(&ex, ls, NULL, 1024);
            for (int i = 0; i < n; i++)
                if (ls[i]->q && ls[i]->q->tl) model_mb += rq_t2_bytes(ls[i]->q->tl->out, ls[i]->q->tl->in) / 1048576.0;
        }
        printf("{\"impl\":\"robuq\",\"mode\":\"%s\",\"threads\":%d,\"batch\":%d,\"forward_s_mean\":%.5f,"
               "\"forward_s_min\":%.5f,\"gflops_equiv\":%.1f,\"model_mb\":%.1f,\"arena_mb\":%.1f}\n",
               rows[r].mode, omp_get_max_threads(), o->batch, mean, best, gflop / best, model_mb, arena);
        fflush(stdout);
    }
    rq_dit_free(&fp), rq_dit_free(&fq), rq_dit_free(&ex);
    return 0;
fail:
    remove(path);
    fprintf(stderr, "robuq-bench: %s\n", err.msg);
    return 1;
}

/* Per linear shape of the model: fp32 sgemm (x W^T), the fake-quant linear
 * (rotate + quantize x, sgemm with the dequantized ternary W'), and the
 * integer tlinear, as GFLOP/s-equivalent. */
static double best_of(int reps, double (*fn)(void *), void *arg) {
    double b = 1e30;
    for (int i = 0; i < reps; i++) {
        double t = fn(arg);
        b = t < b ? t : b;
    }
    return b;
}

typedef struct {
    int M, K, N;
    float *x, *w, *y, *xq;
    rq_tlinear *tl;
    rq_hadamard *h;
} layer_case;

static double t_fp32(void *a) {
    layer_case *c = a;
    double t0 = rq_now();
    rq_sgemm(0, 1, c->M, c->N, c->K, 1.0f, c->x, c->K, c->w, c->K, 0.0f, c->y, c->N);
    return rq_now() - t0;
}
static double t_fakequant(void *a) {
    layer_case *c = a;
    double t0 = rq_now();
    memcpy(c->xq, c->x, (size_t)c->M * c->K * sizeof(float));
    rq_actq_cfg q = {2, RQ_ACTQ_ROBUST};
    rq_actq_rotate_quant(c->h, c->xq, c->xq, NULL, c->M, c->K, &q, NULL);
    rq_sgemm(0, 1, c->M, c->N, c->K, 1.0f, c->xq, c->K, c->w, c->K, 0.0f, c->y, c->N);
    return rq_now() - t0;
}
static double t_int(void *a) {
    layer_case *c = a;
    double t0 = rq_now();
    rq_tlinear_forward(c->tl, c->x, c->y, c->M, NULL);
    return rq_now() - t0;
}

static int run_infer_layers(const bench_opts *o) {
    int D = o->mc.hidden_size, H = (int)(D * o->mc.mlp_ratio), M = o->batch * rq_dit_tokens(&o->mc);
    struct { const char *name; int M, K, N; } shapes[] = {
        {"qkv", M, D, 3 * D}, {"proj", M, D, D}, {"fc1", M, D, H}, {"fc2", M, H, D}, {"adaLN", o->batch, D, 6 * D}};
    printf("%-6s %6s %5s %5s | %9s %9s %9s | %7s %7s\n", "layer", "M", "K", "N", "fp32", "fakequant", "w158a2",
           "int/fp", "int/fq");
    rq_rng rng;
    rq_rng_seed(&rng, 3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        layer_case c = {.M = shapes[s].M, .K = shapes[s].K, .N = shapes[s].N};
        rq_err err = {0};
        c.x = rq_malloc((size_t)c.M * c.K * sizeof(float));
        c.xq = rq_malloc((size_t)c.M * c.K * sizeof(float));
        c.w = rq_malloc((size_t)c.N * c.K * sizeof(float));
        c.y = rq_malloc((size_t)c.M * c.N * sizeof(float));
        rq_tlinear tl = {0};
        rq_hadamard h;
        rq_rng_fill_normal(&rng, c.x, (long)c.M * c.K, 1.0f);
        rq_rng_fill_normal(&rng, c.w, (long)c.N * c.K, 0.05f);
        if (rq_tlinear_init_float(&tl, c.w, NULL, c.N, c.K, 2, RQ_ACTQ_ROBUST, 1, &err) ||
            rq_hadamard_plan_init(&h, c.K, &err) || rq_tlinear_reserve(&tl, c.M, &err)) {
            fprintf(stderr, "robuq-bench: %s\n", err.msg);
            return 1;
        }
        c.tl = &tl, c.h = &h;
        int reps = o->steps + o->warmup + 2;
        double f = best_of(reps, t_fp32, &c), q = best_of(reps, t_fakequant, &c), i = best_of(reps, t_int, &c);
        double gf = 2.0 * c.M * c.K * c.N / 1e9;
        printf("%-6s %6d %5d %5d | %9.1f %9.1f %9.1f | %6.2fx %6.2fx\n", shapes[s].name, c.M, c.K, c.N, gf / f, gf / q,
               gf / i, f / i, q / i);
        rq_tlinear_free(&tl);
        rq_free(c.x), rq_free(c.xq), rq_free(c.w), rq_free(c.y);
    }
    printf("(GFLOP/s-equivalent, 2*M*K*N / best time; %d threads)\n", omp_get_max_threads());
    return 0;
}

/* ------------------------------------------------------------ threads */

/* Every thread runs its own single-threaded sgemm (private data, a
 * qkv-forward-sized tile of one of 16 threads) at the same time, timed per
 * thread: the spread is what a static split of a GEMM over the threads
 * loses to the slowest one (why rq_sgemm / rq_tgemm hand out tiles
 * dynamically). One JSON line: min / mean / max GFLOP/s per thread. */
static int run_thread_speed(void) {
    enum { M = 784, N = 288, K = 384, REPS = 20 };
    const int T = omp_get_max_threads();
    double *rate = calloc((size_t)T, sizeof(double));
    int failed = 0;
    if (!rate) return 1;
#pragma omp parallel num_threads(T) reduction(| : failed)
    {
        const int t = omp_get_thread_num();
        float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N);
        failed = !a || !b || !c;
        for (long i = 0; !failed && i < (long)M * K; i++) a[i] = (float)(i % 17) * 0.01f;
        for (long i = 0; !failed && i < (long)N * K; i++) b[i] = (float)(i % 13) * 0.01f;
        double best = 1e30;
        for (int r = 0; r < REPS; r++) {
#pragma omp barrier
            double t0 = rq_now();
            if (!failed) rq_sgemm_st(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            double dt = rq_now() - t0;
            best = dt < best ? dt : best;
        }
        rate[t] = 2.0 * M * N * K / best / 1e9;
        free(a), free(b), free(c);
    }
    if (failed) {
        fprintf(stderr, "robuq-bench: out of memory\n");
        free(rate);
        return 1;
    }
    double lo = rate[0], hi = rate[0], sum = 0;
    for (int t = 0; t < T; t++) lo = rate[t] < lo ? rate[t] : lo, hi = rate[t] > hi ? rate[t] : hi, sum += rate[t];
    printf("{\"impl\":\"robuq\",\"mode\":\"threads\",\"threads\":%d,\"sgemm_st\":\"%dx%dx%d\","
           "\"gflops_min\":%.1f,\"gflops_mean\":%.1f,\"gflops_max\":%.1f,\"static_split_gflops\":%.0f,"
           "\"sum_gflops\":%.0f}\n",
           T, M, N, K, lo, sum / T, hi, lo * T, sum);
    free(rate);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: robuq-bench [--mode fp|qat_a2|all|infer|memory|threads] [--threads N] [--batch N] [--steps N] [--warmup N]\n"
               "                   [--depth N] [--hidden N] [--heads N] [--patch N] [--input N] [--channels N] [--classes N]\n"
               "                   [--recompute 0|1] [--profile 0|1] [--budget-gib 24]\n"
               "Times DiT training steps (default DiT-S/2 on 28x28x1, batch 16); one JSON line per mode.\n"
               "--mode infer: forward of the fp32, fake-quant W1.58A2 and exported (integer) models, one JSON\n"
               "line each, then a per-linear-shape table (fp32 sgemm / fake-quant / integer, GFLOP/s-equiv).\n"
               "--mode memory: training memory of FP and QAT-A2, without and with activation recomputation\n"
               "(--recompute 1: only with it; in the other modes: use it): fixed state, activation MiB per\n"
               "sample, largest batch in --budget-gib. --mode threads: every thread runs a private one-thread\n"
               "sgemm at the same time; min/mean/max GFLOP/s per thread (a static split runs at T x min).\n"
               "--profile 1: per-op forward/backward time per step\n"
               "of the training modes, per-section time per forward of the infer models (to stderr). eval/bench.sh runs it next to the PyTorch peer and prints the ratios.\n");
}

int main(int argc, char **argv) {
    bench_opts o = {{.input_size = 28, .in_channels = 1, .patch_size = 2, .hidden_size = 384, .depth = 12,
                     .num_heads = 6, .num_classes = 10, .mlp_ratio = 4.0f, .learn_sigma = 1},
                    16, 5, 1, 0, 0};
    const char *mode = "all";
    int budget = 24;
    struct { const char *flag; int *dst; int min; } ints[] = {
        {"--batch", &o.batch, 1}, {"--steps", &o.steps, 1}, {"--warmup", &o.warmup, 0},
        {"--depth", &o.mc.depth, 1}, {"--hidden", &o.mc.hidden_size, 4}, {"--heads", &o.mc.num_heads, 1},
        {"--patch", &o.mc.patch_size, 1}, {"--input", &o.mc.input_size, 1}, {"--channels", &o.mc.in_channels, 1},
        {"--classes", &o.mc.num_classes, 1}, {"--recompute", &o.recompute, 0}, {"--profile", &o.profile, 0},
        {"--budget-gib", &budget, 1}};
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
            if (strcmp(mode, "fp") && strcmp(mode, "qat_a2") && strcmp(mode, "all") && strcmp(mode, "infer") &&
                strcmp(mode, "memory") && strcmp(mode, "threads")) {
                fprintf(stderr, "robuq-bench: --mode must be fp, qat_a2, all, infer, memory or threads, got '%s'\n",
                        mode);
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
    if (o.recompute > 1 || o.profile > 1) {
        fprintf(stderr, "robuq-bench: --recompute and --profile are 0 or 1, got %d and %d\n", o.recompute, o.profile);
        return 2;
    }
    if (!strcmp(mode, "fp") || !strcmp(mode, "all")) rc |= run_mode(&o, "fp", NULL);
    if (!strcmp(mode, "qat_a2") || !strcmp(mode, "all")) rc |= run_mode(&o, "qat_a2", NULL);
    if (!strcmp(mode, "memory")) rc |= run_memory(&o, budget);
    if (!strcmp(mode, "infer")) rc |= run_infer_models(&o) || run_infer_layers(&o);
    if (!strcmp(mode, "threads")) rc |= run_thread_speed();
    return rc;
}
