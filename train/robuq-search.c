/* robuq-search: AMPN activation-only mixed precision search.
 *
 *   robuq-search CONFIG.ini [--set section.key=value ...] [--ckpt CKPT.h5] [--force]
 *
 * 1. loads the checkpoint ([search] checkpoint, else [train] init_from),
 * 2. measures the sensitivity of every block linear (qkv/proj/fc1/fc2) to
 *    each candidate bit-width, one layer lowered at a time, the others at
 *    [search] ref_bits, on calibration batches spread over timesteps; the
 *    table is cached next to the checkpoint (<ckpt>.ampn.h5) and reused when
 *    the checkpoint and the calibration settings are unchanged,
 * 3. allocates bits by exact dynamic programming under [search] budget
 *    (on the table made non-increasing in bits, rq_ampn_monotone),
 * 4. prints the map, writes it for [quant] precision_map= and a bar chart.
 *
 * Exit: 0 ok, 1 error (one line naming the file or key), 2 usage error. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <omp.h>

#include "robuq/ampn.h"
#include "robuq/h5io.h"
#include "robuq/image.h"
#include "robuq/train.h"

#define PROG "robuq-search"
#define MAXL 1024

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " CONFIG.ini [options]\n"
            "AMPN: per-layer activation bits under an average budget (DESIGN.md section 4).\n"
            "  --set section.key=value  override a config key (repeatable), e.g. --set search.budget=3\n"
            "  --ckpt FILE.h5           checkpoint to probe (default [search] checkpoint, else [train] init_from)\n"
            "  --force                  re-measure the sensitivity even if a cached table matches\n"
            "  --help-config            list every config key\n"
            "Reads [search] budget, candidates, weighting (mac|mean), calib_batches, calib_batch_size,\n"
            "ref_bits, metric (loss|output), weights (ema|params), seed, out; [quant] for the quantizer\n"
            "settings; [data] path for calibration images; [diffusion] for the schedule.\n"
            "Writes: the precision map ([search] out, default <ckpt dir>/ampn_a<budget>.map), its bar\n"
            "chart (<map>.png) and the sensitivity cache <ckpt>.ampn.h5.\n");
}

/* --------------------------------------------------------- progress bar */

typedef struct {
    double t0;
} progress_state;

static void progress(int done, int total, void *arg) {
    progress_state *p = arg;
    double el = rq_now() - p->t0, eta = done ? el / done * (total - done) : 0;
    int w = 30, fill = total ? done * w / total : w;
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = '\0';
    fprintf(stderr, "\rsensitivity [%s] %d/%d probes  %.1fs elapsed  eta %.0fs ", bar, done, total, el, eta);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* --------------------------------------------------------- cache */

/* Everything the table depends on, as one string stored with it. */
static void cache_key(char *key, size_t cap, const char *ckpt, const char *weights, const rq_ampn_opts *o) {
    struct stat st;
    long long size = 0, mtime = 0;
    if (!stat(ckpt, &st)) size = (long long)st.st_size, mtime = (long long)st.st_mtime;
    int n = snprintf(key, cap,
                     "ckpt=%s size=%lld mtime=%lld weights=%s ref_bits=%d metric=%d batches=%d bs=%d seed=%llu "
                     "method=%d hadamard=%d proj_fc2_only=%d adaln=%d ternary=%d embed=%d final=%d cands=",
                     ckpt, size, mtime, weights, o->ref_bits, o->metric, o->calib_batches, o->batch_size,
                     (unsigned long long)o->seed, o->quant.method, o->quant.hadamard, o->quant.hadamard_proj_fc2_only,
                     o->quant.adaln_act_bits, o->quant.weight_ternary, o->quant.quantize_embedder,
                     o->quant.quantize_final);
    for (int k = 0; k < o->n_cands && n > 0 && (size_t)n < cap; k++)
        n += snprintf(key + n, cap - (size_t)n, "%s%d", k ? "," : "", o->cands[k]);
}

/* 1 if path holds a table for exactly this key and layer count. */
static int cache_read(const char *path, const char *key, int n, int nc, double *sens, double *base) {
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(path, &e);
    if (!r) return 0;
    char stored[2048];
    int ok = !rq_h5r_get_str(r, "/", "key", stored, sizeof stored, &e) && !strcmp(stored, key) &&
             !rq_h5r_read(r, "/sensitivity", RQ_H5_F64, sens, (long)n * nc, &e) &&
             !rq_h5r_get_f64(r, "/", "base_loss", base, &e);
    rq_h5r_close(r);
    return ok;
}

static rq_status cache_write(const char *path, const char *key, int n, int nc, const int *cands,
                             const char *const *names, const double *sens, double base, rq_err *err) {
    rq_h5_writer *w = rq_h5w_open(path, err);
    if (!w) return err->code;
    long shape[2] = {n, nc};
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    char *all = malloc(len + 1), *p = all;
    if (!all) {
        rq_h5w_abort(w);
        return rq_err_set(err, RQ_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) p += sprintf(p, "%s%s", names[i], i + 1 < n ? "\n" : "");
    *p = '\0';
    if (rq_h5w_attr_str(w, "/", "format", "robuq-ampn-sensitivity", err) ||
        rq_h5w_attr_str(w, "/", "key", key, err) || rq_h5w_attr_f64(w, "/", "base_loss", base, err) ||
        rq_h5w_attr_ints(w, "/", "candidates", cands, nc, err) || rq_h5w_attr_str(w, "/", "layers", all, err) ||
        rq_h5w_write(w, "/sensitivity", RQ_H5_F64, sens, 2, shape, err)) {
        free(all);
        rq_h5w_abort(w);
        return err->code;
    }
    free(all);
    return rq_h5w_close_commit(w, err);
}

/* --------------------------------------------------------- report */

static void print_table(int n, int nc, const int *cands, const char *const *names, const double *sens,
                        const int *bits, const double *macs) {
    printf("%-28s %10s", "layer", "GMACs");
    for (int k = 0; k < nc; k++) printf("   sens@%d", cands[k]);
    printf("  bits\n");
    for (int i = 0; i < n; i++) {
        char b[256];
        printf("%-28s %10.4f", rq_dit_layer_name(names[i], b, sizeof b), macs[i] / 1e9);
        for (int k = 0; k < nc; k++) printf(" %+8.2e", sens[(long)i * nc + k]);
        printf("  %4d\n", bits[i]);
    }
}

/* Mean bits per layer class (qkv/proj/fc1/fc2), as the paper reports them. */
static void print_class_means(int n, rq_dit_linear **layers, const int *bits) {
    const char *kinds[] = {"qkv", "proj", "fc1", "fc2"};
    printf("mean bits per class:");
    for (int k = 0; k < 4; k++) {
        double s = 0;
        int c = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(layers[i]->kind, kinds[k])) s += bits[i], c++;
        if (c) printf("  %s %.2f", kinds[k], s / c);
    }
    printf("\n");
}

/* --------------------------------------------------------- main */

int main(int argc, char **argv) {
    const char *cfg_path = NULL, *ckpt_opt = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--help-config")) {
            rq_config_print_help(stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--ckpt")) {
            if (i + 1 >= argc) {
                fprintf(stderr, PROG ": %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--ckpt")) ckpt_opt = argv[i + 1];
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, PROG ": unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!cfg_path) {
            cfg_path = a;
        } else {
            fprintf(stderr, PROG ": more than one config file ('%s')\n", a);
            return 2;
        }
    }
    if (!cfg_path) {
        usage(stderr);
        return 2;
    }

    rq_err err = {0};
    rq_config *cfg = rq_config_new();
    rq_dit m = {0};
    rq_diffusion d = {0};
    rq_dataset data = {0};
    double *sens = NULL;
    int *bits = NULL;
    if (!cfg) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    if (rq_config_load(cfg, cfg_path, &err)) goto fail;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && rq_config_set(cfg, argv[++i], &err)) goto fail;

    /* ---- settings ---- */
    int threads = rq_cfg_int(cfg, "train.threads");
    if (threads > 0) omp_set_num_threads(threads);
    const char *ckpt = ckpt_opt ? ckpt_opt : rq_cfg_str(cfg, "search.checkpoint");
    if (!ckpt[0]) ckpt = rq_cfg_str(cfg, "train.init_from");
    if (!ckpt[0]) {
        rq_err_set(&err, RQ_EINVAL, "%s: no checkpoint to probe: set [search] checkpoint or [train] init_from",
                   cfg_path);
        goto fail;
    }
    rq_ampn_opts o = {0};
    o.n_cands = rq_cfg_ints(cfg, "search.candidates", o.cands, RQ_AMPN_MAX_CANDS);
    if (o.n_cands <= 0 || o.n_cands > RQ_AMPN_MAX_CANDS) {
        rq_err_set(&err, RQ_EINVAL, "search.candidates: expected 1..%d bit-widths", RQ_AMPN_MAX_CANDS);
        goto fail;
    }
    for (int a = 0; a < o.n_cands; a++) /* sort ascending for the printout */
        for (int b = a + 1; b < o.n_cands; b++)
            if (o.cands[b] < o.cands[a]) {
                int t = o.cands[a];
                o.cands[a] = o.cands[b], o.cands[b] = t;
            }
    o.ref_bits = rq_cfg_int(cfg, "search.ref_bits");
    o.metric = !strcmp(rq_cfg_str(cfg, "search.metric"), "output") ? RQ_AMPN_METRIC_OUTPUT : RQ_AMPN_METRIC_LOSS;
    o.calib_batches = rq_cfg_int(cfg, "search.calib_batches");
    o.batch_size = rq_cfg_int(cfg, "search.calib_batch_size");
    o.seed = (uint64_t)rq_cfg_int(cfg, "search.seed");
    if (rq_quant_opts_from(cfg, &o.quant, &err)) goto fail;
    const char *weights = rq_cfg_str(cfg, "search.weights");
    double budget = rq_cfg_float(cfg, "search.budget");
    int mac_weighted = !strcmp(rq_cfg_str(cfg, "search.weighting"), "mac");

    /* ---- model, schedule, calibration data ---- */
    if (rq_model_from_ckpt(ckpt, weights, &m, NULL, &err) || rq_diffusion_from_cfg(cfg, &d, &err) ||
        rq_dataset_load(rq_cfg_str(cfg, "data.path"), &data, &err))
        goto fail;
    rq_dit_linear *layers[MAXL];
    const char *names[MAXL];
    double macs[MAXL], weight[MAXL];
    int n = rq_ampn_layers(&m, layers, names, macs, MAXL);
    if (n <= 0 || n > MAXL) {
        rq_err_set(&err, RQ_EINVAL, "%s: %d searchable layers", ckpt, n);
        goto fail;
    }
    for (int i = 0; i < n; i++) weight[i] = mac_weighted ? macs[i] : 1.0;
    sens = malloc((size_t)n * o.n_cands * sizeof *sens);
    bits = malloc((size_t)n * sizeof *bits);
    if (!sens || !bits) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory");
        goto fail;
    }
    printf(PROG ": %s (%s weights), %d layers x %d candidates, ref %d bits, metric %s, %d x %d calibration images\n",
           ckpt, weights, n, o.n_cands, o.ref_bits, rq_cfg_str(cfg, "search.metric"), o.calib_batches, o.batch_size);

    /* ---- sensitivity (cached next to the checkpoint) ---- */
    char cache[4200], key[2048];
    snprintf(cache, sizeof cache, "%s.ampn.h5", ckpt);
    cache_key(key, sizeof key, ckpt, weights, &o);
    double base = 0;
    if (!force && cache_read(cache, key, n, o.n_cands, sens, &base)) {
        printf("using cached sensitivity table %s (--force to re-measure)\n", cache);
    } else {
        progress_state ps = {rq_now()};
        if (rq_ampn_sensitivity(&m, &d, &data, &o, sens, &base, progress, &ps, &err)) goto fail;
        rq_err ce = {0};
        if (cache_write(cache, key, n, o.n_cands, o.cands, names, sens, base, &ce))
            fprintf(stderr, PROG ": warning: could not cache the table: %s\n", ce.msg);
        else printf("cached sensitivity table in %s\n", cache);
    }
    printf("reference loss (all searchable layers at %d bits): %.6f\n", o.ref_bits, base);

    /* ---- allocation (on the monotone envelope of the measured table) ---- */
    rq_ampn_monotone(n, o.n_cands, o.cands, sens);
    rq_ampn_result res = {.bits = bits};
    if (rq_ampn_allocate(n, o.n_cands, o.cands, sens, weight, budget, &res, &err)) goto fail;
    print_table(n, o.n_cands, o.cands, names, sens, bits, macs);
    double mean = 0, macw = 0, macs_sum = 0;
    for (int i = 0; i < n; i++) mean += bits[i], macw += bits[i] * macs[i], macs_sum += macs[i];
    mean /= n, macw /= macs_sum;
    printf("budget %.3f bits (%s-weighted): MAC-weighted average %.4f, layer mean %.4f, predicted cost %+.4e%s\n",
           budget, mac_weighted ? "MAC" : "layer-mean", macw, mean, res.cost, res.exact ? "" : " (weight grid)");
    print_class_means(n, layers, bits);

    /* ---- outputs ---- */
    char out[4200], png[4300], header[512];
    const char *out_cfg = rq_cfg_str(cfg, "search.out");
    if (out_cfg[0]) {
        snprintf(out, sizeof out, "%s", out_cfg);
    } else {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s", ckpt);
        snprintf(out, sizeof out, "%s/ampn_a%g.map", dirname(tmp), budget);
    }
    snprintf(header, sizeof header,
             "AMPN precision map from %s\nbudget %.3f (%s-weighted), MAC-weighted average %.4f, layer mean %.4f\n"
             "predicted cost %.6e, metric %s, ref %d bits",
             ckpt, budget, mac_weighted ? "MAC" : "layer-mean", macw, mean, res.cost, rq_cfg_str(cfg, "search.metric"),
             o.ref_bits);
    if (rq_ampn_write_map(out, n, names, bits, header, &err)) goto fail;
    printf("wrote %s (use: --set quant.precision_map=%s)\n", out, out);
    snprintf(png, sizeof png, "%s.png", out);
    float fb[MAXL];
    const char *labels[MAXL];
    char lab[MAXL][16];
    for (int i = 0; i < n; i++) {
        fb[i] = (float)bits[i];
        snprintf(lab[i], sizeof lab[i], "%d.%s", i / 4, layers[i]->kind);
        labels[i] = lab[i];
    }
    char title[128];
    snprintf(title, sizeof title, "AMPN bits per layer (budget %.2f, avg %.2f)", budget, mac_weighted ? macw : mean);
    rq_plot_opts po = {0, 0, title, "layer (block.kind)", "activation bits", 0};
    if (rq_plot_bars(png, fb, labels, n, &po, &err)) goto fail;
    printf("wrote %s\n", png);

    free(sens), free(bits);
    rq_dataset_free(&data);
    rq_diffusion_free(&d);
    rq_dit_free(&m);
    rq_config_free(cfg);
    return 0;
fail:
    fprintf(stderr, PROG ": %s\n", err.msg);
    free(sens), free(bits);
    rq_dataset_free(&data);
    rq_diffusion_free(&d);
    rq_dit_free(&m);
    rq_config_free(cfg);
    return 1;
}
