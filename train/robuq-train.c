/* robuq-train: full-precision pre-training or QAT of a DiT (resumable).
 *
 *   robuq-train CONFIG.ini [--set section.key=value ...]
 *
 * Writes into [train] out_dir: config.ini (the resolved config), train.log,
 * ckpt_last.h5 (atomic, every ckpt_every steps, at the end and on Ctrl-C),
 * loss.png (the loss curve), samples_stepN.png (if sample_every) and
 * samples_final.png. Restarting the same command resumes from ckpt_last.h5
 * and reproduces the losses of an uninterrupted run.
 *
 * Data parallel (dist.h): mpirun -np P robuq-train CONFIG.ini. Every rank
 * draws the same global batch from the same seeded streams (loader, class
 * dropout, t, noise) and runs forward and backward on its contiguous slice
 * of batch_size / P samples; one bucketed all-reduce per step averages the
 * gradients and the loss terms, after which clipping, the NaN checks,
 * AdamW and the EMA run identically on every rank. Rank 0 alone writes the
 * output directory and logs, validates and samples; the ranks agree (one
 * small all-reduce) on setup failures, stop signals and checkpoint writes,
 * so they stop together, and a rank that fails mid-step ends the job. */
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
#include "robuq/dist.h"
#include "robuq/image.h"
#include "robuq/ops.h"
#include "robuq/train.h"

static volatile sig_atomic_t g_stop = 0; /* set by SIGINT / SIGTERM */
static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: robuq-train CONFIG.ini [--set section.key=value ...]\n"
            "       mpirun -np P robuq-train CONFIG.ini [...]   (data parallel over P processes)\n"
            "       robuq-train --help | --help-config\n\n"
            "Trains a DiT (full precision, or QAT when [quant] enabled = on) with the\n"
            "DiT diffusion loss; resumes from OUT_DIR/ckpt_last.h5 when it exists.\n"
            "Ctrl-C saves a checkpoint and exits. --help-config lists every key.\n"
            "Under mpirun every rank draws the same batch and computes batch_size / P of\n"
            "it; gradients are averaged, so P ranks give the weights of one process.\n");
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

/* One collective that every rank reaches at the same point of the run, in
 * the same order: it tells whether any rank failed (returns the lowest
 * failing rank, -1 when none) and max-reduces v[RQ_SYNC_N] along (stop
 * signals, rank 0's decisions; other ranks pass 0). One process: returns
 * at once. A communication failure ends the whole job, since the other ranks
 * could otherwise wait forever. */
#define RQ_SYNC_N 3
static int sync_ranks(rq_dist *d, int failed, int *v) {
    int all[1 + RQ_SYNC_N] = {failed ? d->size - d->rank : 0};
    if (v) memcpy(all + 1, v, sizeof(int) * RQ_SYNC_N);
    rq_err e = {0};
    if (rq_dist_allreduce_max_i32(d, all, 1 + RQ_SYNC_N, &e)) {
        fprintf(stderr, "robuq-train: rank %d: %s\n", d->rank, e.msg);
        rq_dist_abort(d, 1);
    }
    if (v) memcpy(v, all + 1, sizeof(int) * RQ_SYNC_N);
    return all[0] ? d->size - all[0] : -1;
}

/* Data parallel: every rank updates its own copy of the weights from the
 * same averaged gradients, so the copies must stay bitwise equal; compared
 * by a hash of the parameters (an O(parameters) pass, at log lines and
 * checkpoints). 0 and err set when they differ. */
static int weights_agree(rq_dist *d, const rq_dit *m, long step, rq_err *err) {
    if (d->size == 1) return 1;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over 32-bit words */
    for (int i = 0; i < m->n_params; i++) {
        const float *x = m->params[i]->data;
        for (long j = 0; j < m->params[i]->n; j++) {
            uint32_t w;
            memcpy(&w, x + j, sizeof w);
            h = (h ^ w) * 0x100000001b3ULL;
        }
    }
    int same = 0;
    if (rq_dist_same_u64(d, h, &same, err)) {
        RQ_ERROR("rank %d: step %ld: %s", d->rank, step, err->msg);
        rq_dist_abort(d, 1);
    }
    if (!same)
        rq_err_set(err, RQ_EIO, "step %ld: the weights of the %d MPI ranks differ (the all-reduce did not give every "
                   "rank the same sum); the last checkpoint is intact", step, d->size);
    return same;
}

int main(int argc, char **argv) {
    const char *cfg_path = NULL;
    rq_err err = {0};
    run r;
    memset(&r, 0, sizeof r);
    rq_dist d;
    if (rq_dist_init(&d, &argc, &argv, &err)) {
        fprintf(stderr, "robuq-train: %s\n", err.msg);
        return 1;
    }
    int quiet = d.rank > 0; /* ranks > 0 only speak about their own errors */
    if (quiet) rq_log_set_level(RQ_LOG_ERROR);
    int made_dir = 0;     /* out_dir created by this run: removed again if setup fails */
    int failed_rank = -1; /* setup: the lowest rank that failed */
    float *x0 = NULL, *noise = NULL, **gx = NULL, stats[3];
    int32_t *y = NULL;
    int *t = NULL;
    long *gn = NULL;
    rq_graph g;
    memset(&g, 0, sizeof g);
    for (int i = 1; i < argc; i++) {
        int code = -1;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            if (!quiet) usage(stdout);
            code = 0;
        } else if (!strcmp(argv[i], "--help-config")) {
            if (!quiet) rq_config_print_help(stdout);
            code = 0;
        } else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) {
                if (!quiet) fprintf(stderr, "robuq-train: --set needs section.key=value\n");
                code = 2;
            }
            i++; /* applied after the file, below */
        } else if (argv[i][0] == '-') {
            if (!quiet) fprintf(stderr, "robuq-train: unknown option '%s'\n", argv[i]), usage(stderr);
            code = 2;
        } else if (!cfg_path) {
            cfg_path = argv[i];
        } else {
            if (!quiet) fprintf(stderr, "robuq-train: more than one config file ('%s')\n", argv[i]);
            code = 2;
        }
        if (code >= 0) { /* the same arguments on every rank: all leave here */
            rq_dist_finalize(&d);
            return code;
        }
    }
    if (!cfg_path) {
        if (!quiet) usage(stderr);
        rq_dist_finalize(&d);
        return 2;
    }

    /* ---- setup, part 1: config; rank 0 prepares the output directory and
     * decides whether to resume; then all ranks agree (sync 1) ---- */
    r.cfg = rq_config_new();
    if (!r.cfg) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory");
        goto fail;
    }
    if (rq_config_load(r.cfg, cfg_path, &err)) goto fail;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && rq_config_set(r.cfg, argv[++i], &err)) goto fail;
    int B = rq_cfg_int(r.cfg, "train.batch_size");
    if (B % d.size) {
        /* every rank draws the whole batch and computes its own slice of it */
        rq_err_set(&err, RQ_EINVAL, "%s: train.batch_size = %d is not divisible by the %d MPI ranks "
                   "(each rank computes batch_size / ranks samples)", rq_cfg_origin(r.cfg, "train.batch_size"), B,
                   d.size);
        goto fail;
    }
    int threads = rq_cfg_int(r.cfg, "train.threads");
    if (threads > 0) {
        omp_set_num_threads(threads);
    } else if (d.local_size > 1 && !getenv("OMP_NUM_THREADS")) {
        /* ranks on one machine share its cores: at most cores / ranks threads
         * each (spinning OpenMP and MPI threads on shared cores crawl), and
         * no more than the cores this rank is bound to */
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        int share = online > 0 ? (int)(online / d.local_size) : 1, procs = omp_get_num_procs();
        omp_set_num_threads(share < 1 ? 1 : share < procs ? share : procs);
    }
    r.out_dir = rq_cfg_str(r.cfg, "train.out_dir");
    char path[1200], ckpt[1200];
    path_in(ckpt, sizeof ckpt, r.out_dir, "ckpt_last.h5");
    int decided[RQ_SYNC_N] = {0}; /* [0]: resume from ckpt_last.h5 (rank 0 decides) */
    if (d.rank == 0) { /* only rank 0 writes into the output directory */
        made_dir = access(r.out_dir, F_OK) != 0;
        if (mkdir_p(r.out_dir)) {
            rq_err_set(&err, RQ_EIO, "%s: cannot create output directory: %s", r.out_dir, strerror(errno));
            goto fail;
        }
        path_in(path, sizeof path, r.out_dir, "train.log");
        if (rq_log_open_file(path)) {
            rq_err_set(&err, RQ_EIO, "%s: cannot write the log: %s", path, strerror(errno));
            goto fail;
        }
        remove_stale_temps(r.out_dir);
        decided[0] = rq_cfg_bool(r.cfg, "train.resume") && !access(ckpt, F_OK);
    }
    failed_rank = sync_ranks(&d, 0, decided);
    if (failed_rank >= 0) goto failed_elsewhere;
    int resumed = decided[0];

    /* ---- setup, part 2 (every rank): model, quantization, diffusion ---- */
    rq_dit_config mc;
    rq_quant_opts qo;
    uint64_t seed = (uint64_t)rq_cfg_int(r.cfg, "train.seed");
    if (rq_model_config_from(r.cfg, &mc, &err) || rq_quant_opts_from(r.cfg, &qo, &err) ||
        rq_dit_init(&r.model, &mc, seed, &err) ||
        rq_diffusion_from_cfg(r.cfg, &r.diff, &err))
        goto fail;
    r.model.recompute = rq_cfg_bool(r.cfg, "train.recompute");

    /* ---- data (the whole dataset on every rank) ---- */
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
    /* validation runs on rank 0 alone */
    if (d.rank == 0 && rq_cfg_int(r.cfg, "train.val_every") > 0 && vpath[0] && rq_dataset_load(vpath, &r.val, &err))
        goto fail;
    if (rq_loader_init(&r.loader, &r.train, seed, 1, rq_cfg_bool(r.cfg, "data.hflip"), &err)) goto fail;

    /* ---- weights and optimizer state: fresh, from init_from, or resumed
     * (every rank reads the same files). The parameter list is final
     * (low-rank factors added) before the optimizer, the EMA and a resumed
     * checkpoint see it. ---- */
    rq_rng_seed(&r.meta.rng, seed ^ 0x5eedULL);
    const char *init_from = rq_cfg_str(r.cfg, "train.init_from");
    if (resumed) {
        if (rq_dit_quantize(&r.model, &qo, &err) || rq_dit_add_lowrank(&r.model, &qo, &err) ||
            adamw_from_cfg(&r, &err) || rq_ema_init(&r.ema, &r.model, &err) ||
            rq_ckpt_load(ckpt, &r.model, "params", &r.ema, &r.opt, &r.meta, &err))
            goto fail;
        if (r.meta.loader_len == RQ_LOADER_STATE_LEN && rq_loader_set_state(&r.loader, r.meta.loader, &err)) goto fail;
        r.log_cap = r.meta.log_n;
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
    long per = rq_dataset_sample_size(&r.train);
    /* the whole batch is drawn on every rank (same streams as one process) */
    x0 = malloc((size_t)B * per * sizeof(float)), noise = malloc((size_t)B * per * sizeof(float));
    y = malloc((size_t)B * sizeof(int32_t));
    t = malloc((size_t)B * sizeof(int));
    /* what one all-reduce per step averages: every gradient, then the loss terms */
    int n_red = r.model.n_params + 1;
    gx = malloc((size_t)n_red * sizeof *gx), gn = malloc((size_t)n_red * sizeof *gn);
    if (!x0 || !noise || !y || !t || !gx || !gn || rq_graph_init(&g, (size_t)64 << 20)) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory for batch %d", B);
        goto fail;
    }
    for (int i = 0; i < r.model.n_params; i++) gx[i] = r.model.params[i]->grad, gn[i] = r.model.params[i]->n;
    gx[n_red - 1] = stats, gn[n_red - 1] = 3;
    if (d.rank == 0 && write_config(&r, &err)) goto fail;
    failed_rank = sync_ranks(&d, 0, NULL); /* sync 2: every rank is ready */
    if (failed_rank >= 0) goto failed_elsewhere;
    made_dir = 0; /* the run has started: what it wrote stays */

    long steps = rq_cfg_int(r.cfg, "train.steps");
    int warmup = rq_cfg_int(r.cfg, "train.warmup_steps");
    int log_every = rq_cfg_int(r.cfg, "train.log_every"), ckpt_every = rq_cfg_int(r.cfg, "train.ckpt_every");
    int sample_every = rq_cfg_int(r.cfg, "train.sample_every"), val_every = rq_cfg_int(r.cfg, "train.val_every");
    float lr = (float)rq_cfg_float(r.cfg, "train.lr"), clip = (float)rq_cfg_float(r.cfg, "train.grad_clip");
    float ema_decay = (float)rq_cfg_float(r.cfg, "train.ema_decay"), pdrop = (float)rq_cfg_float(r.cfg, "model.class_dropout_prob");
    int ema_warmup = rq_cfg_bool(r.cfg, "train.ema_warmup");
    int skip_nan = !strcmp(rq_cfg_str(r.cfg, "train.nan_policy"), "skip");
    int Bl = B / d.size;             /* samples per rank */
    long s0 = (long)d.rank * Bl;     /* this rank's slice [s0, s0 + Bl) of the batch */
    char ranks[96] = "";
    if (d.size > 1) snprintf(ranks, sizeof ranks, " per rank; %d MPI ranks x %d samples of batch %d", d.size, Bl, B);
    RQ_INFO("model: %ld parameters, %.2f GMACs/sample, %d tokens; %s%s; data: %ld samples from %s; %d threads%s",
            rq_dit_num_params(&r.model), rq_dit_macs(&r.model) / 1e9, rq_dit_tokens(&mc),
            qo.enabled ? "QAT" : "full precision", r.model.recompute ? ", activation recomputation" : "", r.train.n,
            dpath, omp_get_max_threads(), ranks);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    double t_start = rq_now(), t_window = t_start, loss_acc = 0, mse_acc = 0, vb_acc = 0;
    long window = 0, start_step = r.meta.step;
    int rc = 0, stop = 0;
    while (r.meta.step < steps) {
        /* a signal reaches the ranks at different times: they agree on it
         * here, so all of them stop before the same step */
        int sig[RQ_SYNC_N] = {(int)g_stop};
        sync_ranks(&d, 0, sig);
        if ((stop = sig[0])) break;
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
        /* this rank's slice; the loss is a mean over its samples (MSE and VLB
         * are per-sample means), so the mean over ranks is the batch mean */
        rq_status ls = rq_diffusion_loss(&g, &r.diff, &r.model, x0 + s0 * per, t + s0, y + s0, noise + s0 * per, Bl, &lo);
        if (!ls && r.has_teacher) {
            /* + w * MSE(student output, FP teacher output) on the same x_t, t, y */
            g.grad_enabled = 0;
            rq_tensor *teach = rq_dit_forward(&g, &r.teacher, lo.xt, lo.t, y + s0);
            g.grad_enabled = 1;
            rq_tensor *dl = rq_scale(&g, rq_mse(&g, lo.model_out, teach), distill);
            lo.loss = rq_add(&g, lo.loss, dl);
            if (!lo.loss) ls = g.err.code;
        }
        if (ls || rq_backward(&g, lo.loss)) {
            rq_err_set(&err, g.err.code, "step %ld: %s", step, g.err.msg);
            if (d.size > 1) { /* the other ranks wait in the all-reduce: end the job */
                RQ_ERROR("rank %d: %s", d.rank, err.msg);
                rq_dist_abort(&d, 1);
            }
            rc = 1;
            break;
        }
        stats[0] = lo.loss->data[0], stats[1] = lo.mse, stats[2] = lo.vb;
        if (rq_dist_allreduce_mean_f32v(&d, gx, gn, n_red, &err)) { /* gradients and loss: mean over ranks */
            RQ_ERROR("rank %d: step %ld: %s", d.rank, step + 1, err.msg);
            rq_dist_abort(&d, 1);
        }
        float loss = stats[0];
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
        loss_acc += loss, mse_acc += stats[1], vb_acc += stats[2], window++;

        int at_ckpt = ckpt_every > 0 && r.meta.step % ckpt_every == 0 && r.meta.step < steps;
        if ((r.meta.step % log_every == 0 || r.meta.step == steps || at_ckpt) &&
            !weights_agree(&d, &r.model, r.meta.step, &err)) {
            rc = 1;
            break;
        }
        if (r.meta.step % log_every == 0 || r.meta.step == steps) {
            double now = rq_now(), its = window / (now - t_window);
            char eta[32];
            fmt_eta((steps - r.meta.step) / its, eta, sizeof eta);
            RQ_INFO("step %ld/%ld | loss %.4f (mse %.4f vb %.4f) | grad %.3f | lr %.2e | %.2f it/s | ETA %s",
                    r.meta.step, steps, loss_acc / window, mse_acc / window, vb_acc / window, gnorm,
                    (double)cur_lr, its, eta);
            loss_acc = mse_acc = vb_acc = 0, window = 0, t_window = now;
        }
        /* validation and samples: rank 0 alone (the others wait in the next collective) */
        if (d.rank == 0 && val_every > 0 && r.meta.step % val_every == 0)
            RQ_INFO("step %ld | val loss %.5f", r.meta.step, val_loss(&r, &g));
        if (at_ckpt) {
            int bad = 0;
            if (d.rank == 0) {
                bad = save_ckpt(&r, &err) != RQ_OK;
                if (!bad) plot_loss(&r);
            }
            if (sync_ranks(&d, bad, NULL) >= 0) { /* rank 0 could not save: every rank stops */
                rc = 1;
                break;
            }
        }
        if (d.rank == 0 && sample_every > 0 && r.meta.step % sample_every == 0) {
            char name[64];
            snprintf(name, sizeof name, "samples_step%ld.png", r.meta.step);
            write_samples(&r, name);
        }
    }
    if (!stop) { /* a signal during the last step */
        int sig[RQ_SYNC_N] = {(int)g_stop};
        sync_ranks(&d, 0, sig);
        stop = sig[0];
    }
    /* rc and err.code are the same on every rank here (the decisions above
     * were taken on all-reduced values or agreed on) */
    if (rc == 0 || err.code == RQ_ENUM) {
        rq_err keep = err;
        rq_err_clear(&err);
        int bad = 0;
        if (d.rank == 0) {
            bad = save_ckpt(&r, &err) != RQ_OK;
            plot_loss(&r);
        }
        if (sync_ranks(&d, bad, NULL) >= 0) rc = 1; /* every rank waits for the checkpoint */
        else if (keep.code) err = keep;
    }
    if (stop) {
        RQ_WARN("stopped by signal %d at step %ld; run the same command to resume", stop, r.meta.step);
        rc = 130;
    } else if (rc == 0 && d.rank == 0) {
        double el = rq_now() - t_start;
        RQ_INFO("done: %ld steps in %.1f s (%.2f it/s)%s", r.meta.step - start_step, el,
                (r.meta.step - start_step) / (el > 0 ? el : 1), resumed ? " after resume" : "");
        if (val_every > 0 && r.val.n) RQ_INFO("final val loss %.5f", val_loss(&r, &g));
        write_samples(&r, "samples_final.png");
    }
    if (rc && rc != 130 && d.rank == 0) RQ_ERROR("%s", err.msg); /* the same error on every rank: said once */
    rq_graph_free(&g);
    free(x0), free(noise), free(y), free(t), free(gx), free(gn);
    run_free(&r);
    rq_log_close_file();
    rq_dist_finalize(&d); /* waits for rank 0's last writes */
    return rc;
fail:
    /* this rank failed during setup: the lowest failing rank says why */
    failed_rank = sync_ranks(&d, 1, NULL);
    if (failed_rank == d.rank) {
        if (d.rank == 0) fprintf(stderr, "robuq-train: %s\n", err.msg[0] ? err.msg : rq_status_str(err.code));
        else fprintf(stderr, "robuq-train: rank %d: %s\n", d.rank, err.msg[0] ? err.msg : rq_status_str(err.code));
    }
failed_elsewhere:
    if (d.rank == 0 && failed_rank != 0) RQ_ERROR("rank %d failed during setup (see its message)", failed_rank);
    rq_log_close_file();
    if (made_dir) { /* nothing was trained: leave no empty run directory behind */
        char p[1200];
        path_in(p, sizeof p, r.out_dir, "train.log");
        unlink(p);
        path_in(p, sizeof p, r.out_dir, "config.ini");
        unlink(p);
        rmdir(r.out_dir);
    }
    rq_graph_free(&g);
    free(x0), free(noise), free(y), free(t), free(gx), free(gn);
    run_free(&r);
    rq_dist_finalize(&d);
    return 1;
}
