/* robuq-train: full-precision pre-training or QAT of a DiT (resumable).
 *
 *   robuq-train CONFIG.ini [--set section.key=value ...]
 *
 * Writes into [train] out_dir: config.ini (the resolved config), train.log,
 * ckpt_last.h5 (atomic, every ckpt_every steps, at the end and on Ctrl-C),
 * loss.png (the loss curve), samples_stepN.png (if sample_every) and
 * samples_final.png. Restarting the same command resumes from ckpt_last.h5
 * and reproduces the losses of an uninterrupted run. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "robuq/config.h"
#include "robuq/dataset.h"
#include "robuq/diffusion.h"
#include "robuq/image.h"
#include "robuq/ops.h"
#include "robuq/train.h"

static volatile sig_atomic_t g_stop = 0; /* set by SIGINT / SIGTERM */
static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: robuq-train CONFIG.ini [--set section.key=value ...]\n"
            "       robuq-train --help | --help-config\n\n"
            "Trains a DiT (full precision, or QAT when [quant] enabled = on) with the\n"
            "DiT diffusion loss; resumes from OUT_DIR/ckpt_last.h5 when it exists.\n"
            "Ctrl-C saves a checkpoint and exits. --help-config lists every key.\n");
}

typedef struct {
    rq_config *cfg;
    const char *out_dir;
    rq_dit model;
    rq_dit teacher; /* FP model for distillation (init_from), if distill_weight > 0 */
    int has_teacher;
    rq_diffusion diff;
    rq_adamw opt;
    rq_ema ema;
    rq_dataset train, val;
    rq_loader loader;
    rq_ckpt_meta meta; /* step, rng, loss log */
    long log_cap;
} run;

static int mkdir_p(const char *dir) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return (mkdir(tmp, 0755) && errno != EEXIST) ? -1 : 0;
}

static void path_in(char *buf, size_t n, const char *dir, const char *file) { snprintf(buf, n, "%s/%s", dir, file); }

/* Outputs are written as "<name>.tmp.<pid>" and renamed (h5io.h, image.h);
 * a run killed with -9 leaves its temp file behind. Remove those of
 * processes that no longer exist, so they do not pile up across restarts. */
static void remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *tmp = strstr(e->d_name, ".tmp.");
        if (!tmp) continue;
        char *end;
        long pid = strtol(tmp + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[1200];
        path_in(p, sizeof p, dir, e->d_name);
        if (unlink(p) == 0) RQ_INFO("removed %s, left by an interrupted run (pid %ld)", p, pid);
    }
    closedir(d);
}

/* The resolved config, written atomically (temp + rename) and checked, so
 * a full disk or a read-only directory stops the run before any training. */
static rq_status write_config(run *r, rq_err *err) {
    char path[1200], tmp[1300];
    path_in(path, sizeof path, r->out_dir, "config.ini");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot write: %s", path, strerror(errno));
    int bad = rq_config_dump(r->cfg, f) != RQ_OK;
    bad |= fflush(f) != 0 || ferror(f);
    int e = errno;
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) == 0) return RQ_OK;
    if (!e) e = errno;
    unlink(tmp);
    return rq_err_set(err, RQ_EIO, "%s: cannot write: %s", path, strerror(e ? e : EIO));
}

static void run_free(run *r) {
    rq_loader_free(&r->loader);
    rq_dataset_free(&r->train), rq_dataset_free(&r->val);
    rq_adamw_free(&r->opt), rq_ema_free(&r->ema);
    rq_diffusion_free(&r->diff);
    rq_dit_free(&r->model);
    rq_dit_free(&r->teacher);
    rq_ckpt_meta_free(&r->meta);
    rq_config_free(r->cfg);
    r->cfg = NULL;
}

static rq_status save_ckpt(run *r, rq_err *err) {
    char path[1200];
    path_in(path, sizeof path, r->out_dir, "ckpt_last.h5");
    rq_loader_get_state(&r->loader, r->meta.loader);
    r->meta.loader_len = RQ_LOADER_STATE_LEN;
    free(r->meta.config_text);
    r->meta.config_text = rq_config_to_string(r->cfg);
    rq_status s = rq_ckpt_save(path, &r->model, &r->ema, &r->opt, &r->meta, err);
    if (!s) RQ_INFO("saved checkpoint %s (step %ld)", path, r->meta.step);
    return s;
}

static void log_loss(run *r, long step, float loss) {
    if (r->meta.log_n == r->log_cap) {
        r->log_cap = r->log_cap ? 2 * r->log_cap : 1024;
        r->meta.log_step = realloc(r->meta.log_step, (size_t)r->log_cap * sizeof(float));
        r->meta.log_loss = realloc(r->meta.log_loss, (size_t)r->log_cap * sizeof(float));
    }
    r->meta.log_step[r->meta.log_n] = (float)step;
    r->meta.log_loss[r->meta.log_n++] = loss;
}

/* Loss curve PNG, the raw log smoothed by a running mean for readability. */
static void plot_loss(run *r) {
    long n = r->meta.log_n;
    if (n < 2) return;
    float *sm = malloc((size_t)n * sizeof(float));
    int win = n > 50 ? (int)(n / 25) : 1;
    for (long i = 0; i < n; i++) {
        double s = 0;
        long lo = i - win + 1 < 0 ? 0 : i - win + 1;
        for (long j = lo; j <= i; j++) s += r->meta.log_loss[j];
        sm[i] = (float)(s / (i - lo + 1));
    }
    rq_series series[2] = {{r->meta.log_step, r->meta.log_loss, (int)n, "loss"},
                           {r->meta.log_step, sm, (int)n, "running mean"}};
    rq_plot_opts po = {800, 500, "training loss", "step", "loss", 1};
    char path[1200];
    path_in(path, sizeof path, r->out_dir, "loss.png");
    rq_err err = {0};
    if (rq_plot_lines(path, series, 2, &po, &err))
        RQ_WARN("loss plot: %s", err.msg);
    free(sm);
}

/* Sample grid with the EMA weights: one row per class ([sample] classes,
 * default the first 10), [sample] per_class columns. */
static void write_samples(run *r, const char *name) {
    const rq_dit_config *c = &r->model.cfg;
    int cls[64], classes = rq_cfg_ints(r->cfg, "sample.classes", cls, 64), per = rq_cfg_int(r->cfg, "sample.per_class");
    if (classes > 64) classes = 64;
    if (classes <= 0) {
        classes = c->num_classes > 10 ? 10 : c->num_classes;
        for (int i = 0; i < classes; i++) cls[i] = i;
    }
    int N = classes * per;
    int *y = malloc((size_t)N * sizeof(int));
    float *x = malloc((size_t)N * c->in_channels * c->input_size * c->input_size * sizeof(float));
    for (int i = 0; i < N; i++) y[i] = cls[i / per] < c->num_classes ? cls[i / per] : c->num_classes - 1;
    rq_sample_opts o;
    rq_sample_opts_from(r->cfg, &o);
    rq_err err = {0};
    rq_ema_swap(&r->ema, &r->model);
    rq_status s = rq_sample(&r->model, &r->diff, &o, y, N, x, 0, &err);
    rq_ema_swap(&r->ema, &r->model);
    char path[1200];
    path_in(path, sizeof path, r->out_dir, name);
    if (!s) s = rq_image_grid_save(path, x, N, c->in_channels, c->input_size, c->input_size, per, &err);
    if (s) RQ_WARN("samples: %s", err.msg);
    else RQ_INFO("wrote %s (%d classes x %d, %d steps, cfg %.1f)", path, classes, per, o.steps, (double)o.cfg_scale);
    free(y), free(x);
}

static rq_status adamw_from_cfg(run *r, rq_err *err) {
    return rq_adamw_init(&r->opt, &r->model, (float)rq_cfg_float(r->cfg, "train.lr"),
                         (float)rq_cfg_float(r->cfg, "train.beta1"), (float)rq_cfg_float(r->cfg, "train.beta2"),
                         (float)rq_cfg_float(r->cfg, "train.weight_decay"), err);
}

/* Validation loss on the first n_val samples with fixed t and noise, so
 * numbers are comparable across runs and steps. */

static double val_loss(run *r, rq_graph *g) {
    if (!r->val.n) return NAN;
    const rq_dit_config *c = &r->model.cfg;
    int B = rq_cfg_int(r->cfg, "train.batch_size");
    long per = rq_dataset_sample_size(&r->val), nval = r->val.n < 512 ? r->val.n : 512;
    rq_rng rng;
    rq_rng_seed(&rng, 12345);
    float *noise = malloc((size_t)B * per * sizeof(float));
    int *t = malloc((size_t)B * sizeof(int)), *y = malloc((size_t)B * sizeof(int));
    double sum = 0;
    long cnt = 0;
    int was = g->grad_enabled;
    g->grad_enabled = 0;
    for (long i0 = 0; i0 + B <= nval; i0 += B) {
        for (int i = 0; i < B; i++) {
            t[i] = (int)(((i0 + i) * 997 + 13) % r->diff.num_timesteps); /* spread over t */
            y[i] = r->val.labels[i0 + i];
        }
        rq_rng_fill_normal(&rng, noise, B * per, 1.0f);
        rq_graph_reset(g);
        rq_diffusion_loss_out lo;
        if (rq_diffusion_loss(g, &r->diff, &r->model, r->val.x + i0 * per, t, y, noise, B, &lo)) break;
        sum += lo.loss->data[0];
        cnt++;
    }
    g->grad_enabled = was;
    (void)c;
    free(noise), free(t), free(y);
    return cnt ? sum / cnt : NAN;
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long v = (long)s;
    if (v >= 3600) snprintf(buf, n, "%ldh%02ldm", v / 3600, (v % 3600) / 60);
    else snprintf(buf, n, "%ldm%02lds", v / 60, v % 60);
}

int main(int argc, char **argv) {
    const char *cfg_path = NULL;
    rq_err err = {0};
    run r;
    memset(&r, 0, sizeof r);
    int made_dir = 0; /* out_dir created by this run: removed again if setup fails */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--help-config")) {
            rq_config_print_help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "robuq-train: --set needs section.key=value\n");
                return 2;
            }
            i++; /* applied after the file, below */
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "robuq-train: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!cfg_path) {
            cfg_path = argv[i];
        } else {
            fprintf(stderr, "robuq-train: more than one config file ('%s')\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_path) {
        usage(stderr);
        return 2;
    }
    r.cfg = rq_config_new();
    if (!r.cfg) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory");
        goto fail;
    }
    if (rq_config_load(r.cfg, cfg_path, &err)) goto fail;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && rq_config_set(r.cfg, argv[++i], &err)) goto fail;

    int threads = rq_cfg_int(r.cfg, "train.threads");
    if (threads > 0) omp_set_num_threads(threads);
    r.out_dir = rq_cfg_str(r.cfg, "train.out_dir");
    made_dir = access(r.out_dir, F_OK) != 0;
    if (mkdir_p(r.out_dir)) {
        rq_err_set(&err, RQ_EIO, "%s: cannot create output directory: %s", r.out_dir, strerror(errno));
        goto fail;
    }
    char path[1200];
    path_in(path, sizeof path, r.out_dir, "train.log");
    if (rq_log_open_file(path)) {
        rq_err_set(&err, RQ_EIO, "%s: cannot write the log: %s", path, strerror(errno));
        goto fail;
    }
    remove_stale_temps(r.out_dir);

    /* ---- model, quantization, diffusion ---- */
    rq_dit_config mc;
    rq_quant_opts qo;
    uint64_t seed = (uint64_t)rq_cfg_int(r.cfg, "train.seed");
    if (rq_model_config_from(r.cfg, &mc, &err) || rq_quant_opts_from(r.cfg, &qo, &err) ||
        rq_dit_init(&r.model, &mc, seed, &err) ||
        rq_diffusion_from_cfg(r.cfg, &r.diff, &err))
        goto fail;

    /* ---- data ---- */
    const char *dpath = rq_cfg_str(r.cfg, "data.path");
    if (rq_dataset_load(dpath, &r.train, &err)) {
        if (access(dpath, F_OK))
            rq_err_set(&err, RQ_EIO, "%s: no such dataset; make it with: robuq-data fmnist", dpath);
        goto fail;
    }
    if (r.train.c != mc.in_channels || r.train.h != mc.input_size || r.train.w != mc.input_size) {
        err.code = RQ_OK;
        rq_err_set(&err, RQ_EINVAL, "%s: samples are %dx%dx%d but [model] wants in_channels=%d input_size=%d", dpath,
                   r.train.c, r.train.h, r.train.w, mc.in_channels, mc.input_size);
        goto fail;
    }
    if (r.train.num_classes > mc.num_classes) {
        rq_err_set(&err, RQ_EINVAL, "%s: %d classes, but [model] num_classes = %d", dpath, r.train.num_classes, mc.num_classes);
        goto fail;
    }
    const char *vpath = rq_cfg_str(r.cfg, "data.val_path");
    if (rq_cfg_int(r.cfg, "train.val_every") > 0 && vpath[0] && rq_dataset_load(vpath, &r.val, &err)) goto fail;
    if (rq_loader_init(&r.loader, &r.train, seed, 1, rq_cfg_bool(r.cfg, "data.hflip"), &err)) goto fail;

    /* ---- weights and optimizer state: fresh, from init_from, or resumed.
     * The parameter list is final (low-rank factors added) before the
     * optimizer, the EMA and a resumed checkpoint see it. ---- */
    rq_rng_seed(&r.meta.rng, seed ^ 0x5eedULL);
    char ckpt[1200];
    path_in(ckpt, sizeof ckpt, r.out_dir, "ckpt_last.h5");
    const char *init_from = rq_cfg_str(r.cfg, "train.init_from");
    int resumed = 0;
    if (rq_cfg_bool(r.cfg, "train.resume") && !access(ckpt, F_OK)) {
        if (rq_dit_quantize(&r.model, &qo, &err) || rq_dit_add_lowrank(&r.model, &qo, &err) ||
            adamw_from_cfg(&r, &err) || rq_ema_init(&r.ema, &r.model, &err) ||
            rq_ckpt_load(ckpt, &r.model, "params", &r.ema, &r.opt, &r.meta, &err))
            goto fail;
        if (r.meta.loader_len == RQ_LOADER_STATE_LEN && rq_loader_set_state(&r.loader, r.meta.loader, &err)) goto fail;
        r.log_cap = r.meta.log_n;
        resumed = 1;
        RQ_INFO("resumed from %s at step %ld", ckpt, r.meta.step);
    } else {
        if (init_from[0]) {
            if (rq_ckpt_load(init_from, &r.model, "ema", NULL, NULL, NULL, &err)) goto fail;
            RQ_INFO("initialised from the EMA weights of %s", init_from);
        }
        if (rq_dit_quantize(&r.model, &qo, &err) || rq_dit_add_lowrank(&r.model, &qo, &err) ||
            rq_dit_lowrank_init(&r.model, &err) || adamw_from_cfg(&r, &err) || rq_ema_init(&r.ema, &r.model, &err))
            goto fail;
        if (qo.lowrank_rank > 0) RQ_INFO("low-rank branch of rank %d on every ternary linear (SVD init)", qo.lowrank_rank);
    }
    float distill = (float)rq_cfg_float(r.cfg, "quant.distill_weight");
    if (distill > 0) {
        /* The teacher is the FP model QAT starts from: init_from's EMA weights. */
        if (!init_from[0]) {
            rq_err_set(&err, RQ_EINVAL, "%s: quant.distill_weight > 0 needs [train] init_from (the FP teacher)",
                       rq_cfg_origin(r.cfg, "quant.distill_weight"));
            goto fail;
        }
        if (rq_dit_init(&r.teacher, &mc, seed, &err) || rq_ckpt_load(init_from, &r.teacher, "ema", NULL, NULL, NULL, &err))
            goto fail;
        r.has_teacher = 1;
        RQ_INFO("distilling from the FP teacher %s (weight %g)", init_from, (double)distill);
    }
    if (write_config(&r, &err)) goto fail;
    made_dir = 0; /* the run has started: what it wrote stays */

    long steps = rq_cfg_int(r.cfg, "train.steps");
    int B = rq_cfg_int(r.cfg, "train.batch_size"), warmup = rq_cfg_int(r.cfg, "train.warmup_steps");
    int log_every = rq_cfg_int(r.cfg, "train.log_every"), ckpt_every = rq_cfg_int(r.cfg, "train.ckpt_every");
    int sample_every = rq_cfg_int(r.cfg, "train.sample_every"), val_every = rq_cfg_int(r.cfg, "train.val_every");
    float lr = (float)rq_cfg_float(r.cfg, "train.lr"), clip = (float)rq_cfg_float(r.cfg, "train.grad_clip");
    float ema_decay = (float)rq_cfg_float(r.cfg, "train.ema_decay"), pdrop = (float)rq_cfg_float(r.cfg, "model.class_dropout_prob");
    int ema_warmup = rq_cfg_bool(r.cfg, "train.ema_warmup");
    int skip_nan = !strcmp(rq_cfg_str(r.cfg, "train.nan_policy"), "skip");
    long per = rq_dataset_sample_size(&r.train);
    RQ_INFO("model: %ld parameters, %.2f GMACs/sample, %d tokens; %s; data: %ld samples from %s; %d threads",
            rq_dit_num_params(&r.model), rq_dit_macs(&r.model) / 1e9, rq_dit_tokens(&mc),
            qo.enabled ? "QAT" : "full precision", r.train.n, dpath, omp_get_max_threads());

    float *x0 = malloc((size_t)B * per * sizeof(float)), *noise = malloc((size_t)B * per * sizeof(float));
    int32_t *y = malloc((size_t)B * sizeof(int32_t));
    int *t = malloc((size_t)B * sizeof(int));
    rq_graph g;
    if (!x0 || !noise || !y || !t || rq_graph_init(&g, (size_t)64 << 20)) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory for batch %d", B);
        goto fail;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    double t_start = rq_now(), t_window = t_start, loss_acc = 0, mse_acc = 0, vb_acc = 0;
    long window = 0, start_step = r.meta.step;
    int rc = 0;
    while (r.meta.step < steps && !g_stop) {
        long step = r.meta.step;
        rq_loader_next(&r.loader, x0, y, B);
        for (int i = 0; i < B; i++) {
            if (rq_rng_uniform(&r.meta.rng) < pdrop) y[i] = mc.num_classes; /* CFG: null class */
            t[i] = rq_rng_int(&r.meta.rng, r.diff.num_timesteps);
        }
        rq_rng_fill_normal(&r.meta.rng, noise, B * per, 1.0f);

        rq_graph_reset(&g);
        rq_zero_grads(&r.model);
        rq_diffusion_loss_out lo;
        rq_status ls = rq_diffusion_loss(&g, &r.diff, &r.model, x0, t, y, noise, B, &lo);
        if (!ls && r.has_teacher) {
            /* + w * MSE(student output, FP teacher output) on the same x_t, t, y */
            g.grad_enabled = 0;
            rq_tensor *teach = rq_dit_forward(&g, &r.teacher, lo.xt, lo.t, y);
            g.grad_enabled = 1;
            rq_tensor *dl = rq_scale(&g, rq_mse(&g, lo.model_out, teach), distill);
            lo.loss = rq_add(&g, lo.loss, dl);
            if (!lo.loss) ls = g.err.code;
        }
        if (ls || rq_backward(&g, lo.loss)) {
            rq_err_set(&err, g.err.code, "step %ld: %s", step, g.err.msg);
            rc = 1;
            break;
        }
        float loss = lo.loss->data[0];
        int finite;
        double gnorm = rq_grad_norm(&r.model, &finite);
        if (!isfinite(loss) || !finite) {
            const char *bad = rq_first_nonfinite_grad(&r.model);
            /* steps are counted from 1 here, as in the progress lines */
            if (!skip_nan) {
                rq_err_set(&err, RQ_ENUM, "step %ld: non-finite %s (first layer with a non-finite gradient: %s); "
                           "set [train] nan_policy = skip to skip such batches", step + 1,
                           isfinite(loss) ? "gradient" : "loss", bad ? bad : "none");
                rc = 1;
                break;
            }
            RQ_WARN("step %ld: non-finite %s (first layer with a non-finite gradient: %s), batch skipped", step + 1,
                    isfinite(loss) ? "gradient" : "loss", bad ? bad : "none");
            r.meta.step++;
            continue;
        }
        if (clip > 0 && gnorm > clip) rq_grad_scale(&r.model, (float)(clip / gnorm));
        float cur_lr = warmup > 0 && step < warmup ? lr * (float)(step + 1) / warmup : lr;
        rq_adamw_step(&r.opt, &r.model, cur_lr);
        float decay = ema_decay;
        if (ema_warmup && (1.0f + r.meta.step) / (10.0f + r.meta.step) < decay)
            decay = (1.0f + r.meta.step) / (10.0f + r.meta.step);
        rq_ema_update(&r.ema, &r.model, decay);
        r.meta.step++;
        log_loss(&r, r.meta.step, loss);
        loss_acc += loss, mse_acc += lo.mse, vb_acc += lo.vb, window++;

        if (r.meta.step % log_every == 0 || r.meta.step == steps) {
            double now = rq_now(), its = window / (now - t_window);
            char eta[32];
            fmt_eta((steps - r.meta.step) / its, eta, sizeof eta);
            RQ_INFO("step %ld/%ld | loss %.4f (mse %.4f vb %.4f) | grad %.3f | lr %.2e | %.2f it/s | ETA %s",
                    r.meta.step, steps, loss_acc / window, mse_acc / window, vb_acc / window, gnorm,
                    (double)cur_lr, its, eta);
            loss_acc = mse_acc = vb_acc = 0, window = 0, t_window = now;
        }
        if (val_every > 0 && r.meta.step % val_every == 0) RQ_INFO("step %ld | val loss %.5f", r.meta.step, val_loss(&r, &g));
        if (ckpt_every > 0 && r.meta.step % ckpt_every == 0 && r.meta.step < steps) {
            if (save_ckpt(&r, &err)) {
                rc = 1;
                break;
            }
            plot_loss(&r);
        }
        if (sample_every > 0 && r.meta.step % sample_every == 0) {
            char name[64];
            snprintf(name, sizeof name, "samples_step%ld.png", r.meta.step);
            write_samples(&r, name);
        }
    }
    if (rc == 0 || err.code == RQ_ENUM) {
        rq_err keep = err;
        rq_err_clear(&err);
        if (save_ckpt(&r, &err)) rc = 1;
        else if (keep.code) err = keep;
        plot_loss(&r);
    }
    if (g_stop) {
        RQ_WARN("stopped by signal %d at step %ld; run the same command to resume", (int)g_stop, r.meta.step);
        rc = 130;
    } else if (rc == 0) {
        double el = rq_now() - t_start;
        RQ_INFO("done: %ld steps in %.1f s (%.2f it/s)%s", r.meta.step - start_step, el,
                (r.meta.step - start_step) / (el > 0 ? el : 1), resumed ? " after resume" : "");
        if (val_every > 0 && r.val.n) RQ_INFO("final val loss %.5f", val_loss(&r, &g));
        write_samples(&r, "samples_final.png");
    }
    if (rc && rc != 130) RQ_ERROR("%s", err.msg);
    rq_graph_free(&g);
    free(x0), free(noise), free(y), free(t);
    run_free(&r);
    rq_log_close_file();
    return rc;
fail:
    fprintf(stderr, "robuq-train: %s\n", err.msg[0] ? err.msg : rq_status_str(err.code));
    rq_log_close_file();
    if (made_dir) { /* nothing was trained: leave no empty run directory behind */
        char p[1200];
        path_in(p, sizeof p, r.out_dir, "train.log");
        unlink(p);
        rmdir(r.out_dir);
    }
    run_free(&r);
    return 1;
}
