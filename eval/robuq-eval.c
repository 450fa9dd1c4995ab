/* robuq-eval: sample quality of a generator (checkpoint or W1.58 export) or
 * of a set of images, measured with the robuq-classifier feature network.
 *
 *   robuq-eval SOURCE [--classifier runs/fmnist_classifier.h5] [--ref runs/fmnist_test.h5]
 *              [--per-class 100] [--name NAME] [--label W1.58A2] [--results runs/eval_results.jsonl] ...
 *
 * SOURCE is a robuq checkpoint ("robuq-ckpt") or export ("robuq-w158"):
 * N = per-class x classes samples are generated; or an HDF5 of samples
 * (/images uint8 (N,H,W,C), optional /labels int32 (N); robuq datasets and
 * --save-samples files are such); or a directory of PNGs (labels from
 * --labels FILE, "filename label" lines, or a leading number in each file
 * name such as 3_0007.png; otherwise unknown).
 *
 * Every source is evaluated as 8-bit images (generated samples are rounded
 * as a PNG would store them). Metrics against the reference set: FID and
 * k-NN precision / recall (k = 3) on the classifier's features, the
 * Inception-style score on its softmax, and its accuracy on the samples
 * (the conditioning class is the label). One JSON line is appended to the
 * results file and a row to its CSV twin (same name, .csv); the sample grid
 * and the metric-vs-bits plots over every row of the results file are
 * written as PNGs. Reference features are cached next to the classifier
 * (<classifier>.refstats.h5), keyed by a hash of the classifier and
 * reference files; a changed file recomputes them. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "robuq/classifier.h"
#include "robuq/dataset.h"
#include "robuq/diffusion.h"
#include "robuq/export.h"
#include "robuq/h5io.h"
#include "robuq/image.h"
#include "robuq/metrics.h"
#include "robuq/train.h"

#define TOOL "robuq-eval"

typedef struct {
    const char *source, *classifier, *ref, *results, *grid, *plot, *name, *label, *save_samples, *labels_file;
    const char *weights, *sampler;
    int per_class, steps, seed, batch, k, splits, no_cache;
    long max_samples, max_ref;
    float cfg_scale;
} opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " SOURCE [options]\n"
            "SOURCE: a checkpoint or robuq-export .h5 (samples are generated), an HDF5 of samples\n"
            "        (/images uint8 N,H,W,C + /labels), or a directory of PNGs.\n"
            "  --classifier F.h5   feature network from robuq-classifier (default runs/fmnist_classifier.h5)\n"
            "  --ref F.h5          reference images, a robuq dataset (default runs/fmnist_test.h5)\n"
            "  --max-ref N         use the first N reference images (default all)\n"
            "  --per-class N       generated samples per class (default 100)\n"
            "  --steps N --sampler ddpm|ddim --cfg S --seed N   sampling (default: the model's [sample]);\n"
            "                      batch b draws its noise from seed + b (so --batch changes the samples)\n"
            "  --weights ema|params  checkpoint weights (default ema)\n"
            "  --batch N           samples generated per batch (default 100)\n"
            "  --max-samples N     evaluate the first N images of a file / folder source (default all)\n"
            "  --labels FILE       PNG folder: 'filename label' lines\n"
            "  --name NAME         row name (default: the source's file name)\n"
            "  --label BITS        bits label of the row, e.g. W1.58A2 or FP (default '')\n"
            "  --results F.jsonl   JSON lines appended here, CSV twin next to it (default runs/eval_results.jsonl)\n"
            "  --grid F.png        sample grid (default: next to the results, <name>_<label>_grid.png)\n"
            "  --plot PREFIX       plots PREFIX_fid.png, PREFIX_acc.png, PREFIX_bars.png over all result rows\n"
            "                      (default: the results path without extension)\n"
            "  --save-samples F.h5 keep generated samples as a robuq dataset (re-evaluate without sampling)\n"
            "  --k N               neighbourhood size for precision/recall (default 3)\n"
            "  --splits N          Inception-style score splits (default 10)\n"
            "  --no-cache          recompute the reference features, do not write the cache\n"
            "  --threads N         OpenMP threads\n");
}

/* ------------------------------------------------------------------ samples */

typedef struct {
    long n;
    int c, h, w;
    uint8_t *img;    /* n*h*w*c (NHWC, as files store images) */
    int32_t *labels; /* n, -1 = unknown */
    int has_labels;
    double seconds;  /* generation time */
    int steps;       /* sampling steps, 0 for file sources */
} sample_set;

static void sample_set_free(sample_set *s) {
    free(s->img), free(s->labels);
    memset(s, 0, sizeof *s);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The one place that turns a model file into a generator: checkpoints and
 * robuq-w158 exports (rq_model_load_any picks by the format attribute). */
static rq_status load_generator(const char *path, const char *weights, rq_dit *m, rq_config **cfg, rq_err *err) {
    return rq_model_load_any(path, weights, m, cfg, err);
}

static int is_generator_file(const char *path) {
    if (rq_export_is(path)) return 1;
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(path, &e);
    if (!r) return 0;
    char fmt[64] = "";
    int yes = rq_h5r_has_attr(r, "/", "format") && !rq_h5r_get_str(r, "/", "format", fmt, sizeof fmt, &e) &&
              !strcmp(fmt, RQ_CKPT_FORMAT);
    rq_h5r_close(r);
    return yes;
}

static uint8_t to_u8(float v) {
    float p = rintf((v + 1.0f) * 127.5f);
    return (uint8_t)(p > 255 ? 255 : (p >= 0 ? p : 0)); /* NaN -> 0 */
}

static rq_status generate(const opts *o, const rq_classifier_config *cc, sample_set *s, rq_err *err) {
    rq_dit m;
    rq_config *cfg = NULL;
    rq_diffusion d = {0};
    float *x = NULL;
    int *y = NULL;
    if (load_generator(o->source, o->weights, &m, &cfg, err)) return err->code;
    char set[256];
    rq_status st = RQ_OK;
#define SET(cond, ...)                                                  \
    if (!st && (cond)) {                                                \
        snprintf(set, sizeof set, __VA_ARGS__);                         \
        st = rq_config_set(cfg, set, err);                              \
    }
    SET(o->sampler, "sample.sampler=%s", o->sampler)
    SET(o->steps > 0, "sample.steps=%d", o->steps)
    SET(o->seed >= 0, "sample.seed=%d", o->seed)
    SET(o->cfg_scale >= 0, "sample.cfg_scale=%g", (double)o->cfg_scale)
#undef SET
    if (st) goto done;
    const rq_dit_config *mc = &m.cfg;
    if (mc->num_classes != cc->num_classes || mc->in_channels != cc->in_channels || mc->input_size != cc->image_size) {
        st = rq_err_set(err, RQ_EINVAL, "%s: the model makes %dx%dx%d images of %d classes, the classifier takes %dx%dx%d of %d",
                        o->source, mc->input_size, mc->input_size, mc->in_channels, mc->num_classes, cc->image_size,
                        cc->image_size, cc->in_channels, cc->num_classes);
        goto done;
    }
    rq_sample_opts so;
    rq_sample_opts_from(cfg, &so);
    if ((st = rq_diffusion_from_cfg(cfg, &d, err))) goto done;
    int K = mc->num_classes, C = mc->in_channels, S = mc->input_size, B = o->batch;
    long N = (long)K * o->per_class, per = (long)C * S * S;
    s->n = N, s->c = C, s->h = S, s->w = S, s->has_labels = 1, s->steps = so.steps;
    s->img = malloc((size_t)N * per);
    s->labels = malloc((size_t)N * sizeof(int32_t));
    x = malloc((size_t)B * per * sizeof(float));
    y = malloc((size_t)B * sizeof(int));
    if (!s->img || !s->labels || !x || !y) {
        st = rq_err_set(err, RQ_ENOMEM, "out of memory for %ld samples", N);
        goto done;
    }
    fprintf(stderr, TOOL ": sampling %ld images (%d classes x %d) from %s: %s %d steps, cfg %.2f, batches of %d\n", N,
            K, o->per_class, o->source, so.sampler == RQ_SAMPLER_DDIM ? "ddim" : "ddpm", so.steps,
            (double)so.cfg_scale, B);
    double t0 = rq_now();
    uint64_t seed0 = so.seed;
    for (long i0 = 0; i0 < N; i0 += B) {
        int b = (int)(N - i0 < B ? N - i0 : B);
        for (int i = 0; i < b; i++) y[i] = (int)((i0 + i) / o->per_class);
        so.seed = seed0 + (uint64_t)(i0 / B); /* a different noise stream per batch */
        if ((st = rq_sample(&m, &d, &so, y, b, x, 0, err))) goto done;
        for (int i = 0; i < b; i++) {
            s->labels[i0 + i] = y[i];
            for (int ch = 0; ch < C; ch++)
                for (long p = 0; p < (long)S * S; p++)
                    s->img[(i0 + i) * per + p * C + ch] = to_u8(x[(long)i * per + (long)ch * S * S + p]);
        }
        double el = rq_now() - t0, eta = el / (i0 + b) * (N - i0 - b);
        fprintf(stderr, TOOL ": sampled %ld/%ld | %.1f s | %.2f img/s | ETA %dm%02ds\n", i0 + b, N, el, (i0 + b) / el,
                (int)eta / 60, (int)eta % 60);
    }
    s->seconds = rq_now() - t0;
done:
    free(x), free(y);
    rq_diffusion_free(&d);
    rq_dit_free(&m);
    rq_config_free(cfg);
    return st;
}

static rq_status read_h5_samples(const char *path, long max_n, sample_set *s, rq_err *err) {
    rq_h5_reader *r = rq_h5r_open(path, err);
    if (!r) return err->code;
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    rq_status st = RQ_OK;
    if (rq_h5r_exists(r, "/images") != 1) {
        st = rq_err_set(err, RQ_EFORMAT,
                        "%s: no /images dataset (expected a checkpoint, an export, or samples as /images uint8 N,H,W,C)",
                        path);
        goto done;
    }
    if ((st = rq_h5r_shape(r, "/images", &nd, sh, err))) goto done;
    if (nd != 4 || sh[0] < 1 || sh[1] < 1 || sh[2] < 1 || sh[3] < 1 || sh[3] > 4) {
        st = rq_err_set(err, RQ_ESHAPE, "%s: /images must be (N,H,W,C) with C <= 4, got %d dims", path, nd);
        goto done;
    }
    long n = sh[0], total = sh[0];
    if (max_n > 0 && n > max_n) n = max_n;
    s->n = n, s->h = (int)sh[1], s->w = (int)sh[2], s->c = (int)sh[3];
    long per = sh[1] * sh[2] * sh[3];
    s->img = malloc((size_t)n * per);
    s->labels = malloc((size_t)n * sizeof(int32_t));
    if (!s->img || !s->labels) {
        st = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for %ld images", path, n);
        goto done;
    }
    if ((st = rq_h5r_read_rows(r, "/images", RQ_H5_U8, 0, n, s->img, err))) goto done;
    if (rq_h5r_exists(r, "/labels") == 1) {
        if ((st = rq_h5r_check_shape(r, "/labels", 1, &total, err)) ||
            (st = rq_h5r_read_rows(r, "/labels", RQ_H5_I32, 0, n, s->labels, err)))
            goto done;
        s->has_labels = 1;
    } else {
        for (long i = 0; i < n; i++) s->labels[i] = -1;
    }
done:
    rq_h5r_close(r);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Label from a leading number in the file name ("3_0007.png", "3-x.png"), else -1. */
static int32_t label_from_name(const char *name) {
    if (!isdigit((unsigned char)name[0])) return -1;
    char *end;
    long v = strtol(name, &end, 10);
    return (*end == '_' || *end == '-') && v < 1000000 ? (int32_t)v : -1;
}

static rq_status read_png_dir(const char *dir, const char *labels_file, long max_n, sample_set *s, rq_err *err) {
    if (labels_file) {
        long n;
        int h, w, c;
        uint8_t *img;
        int32_t *lab;
        if (rq_pngdir_load(dir, labels_file, &img, &lab, &n, &h, &w, &c, err)) return err->code;
        s->img = img, s->labels = lab, s->n = max_n > 0 && n > max_n ? max_n : n, s->h = h, s->w = w, s->c = c;
        s->has_labels = 1;
        return RQ_OK;
    }
    DIR *d = opendir(dir);
    if (!d) return rq_err_set(err, RQ_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    char **names = NULL;
    long n = 0, cap = 0;
    rq_status st = RQ_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        if (L < 5 || strcasecmp(e->d_name + L - 4, ".png")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nn = realloc(names, (size_t)cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n == 0) {
        free(names);
        return rq_err_set(err, RQ_EFORMAT, "%s: no .png files", dir);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    long count = n; /* names to free */
    if (max_n > 0 && n > max_n) n = max_n;
    int all_labeled = 1;
    for (long i = 0; i < n && st == RQ_OK; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        uint8_t *px = NULL;
        int w, h, c;
        if ((st = rq_png_read(path, &px, &w, &h, &c, err))) break;
        if (c == 4) { /* drop alpha */
            for (long p = 0; p < (long)w * h; p++) memmove(px + p * 3, px + p * 4, 3);
            c = 3;
        }
        if (i == 0) {
            s->w = w, s->h = h, s->c = c;
            s->img = malloc((size_t)n * w * h * c);
            s->labels = malloc((size_t)n * sizeof(int32_t));
            if (!s->img || !s->labels) st = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for %ld images", dir, n);
        } else if (w != s->w || h != s->h || c != s->c) {
            st = rq_err_set(err, RQ_EFORMAT, "%s: %dx%dx%d, expected %dx%dx%d like %s", path, w, h, c, s->w, s->h, s->c,
                            names[0]);
        }
        if (!st) {
            memcpy(s->img + (long)i * w * h * c, px, (size_t)w * h * c);
            s->labels[i] = label_from_name(names[i]);
            all_labeled &= s->labels[i] >= 0;
            s->n = i + 1;
        }
        free(px);
    }
    for (long i = 0; i < count; i++) free(names[i]);
    free(names);
    s->has_labels = all_labeled;
    if (!all_labeled && s->labels)
        for (long i = 0; i < s->n; i++) s->labels[i] = -1;
    return st;
}

/* NHWC uint8 -> NCHW float in [-1, 1], the mapping of rq_dataset_load. */
static float *to_float(const sample_set *s) {
    long per = (long)s->c * s->h * s->w;
    float *x = malloc((size_t)s->n * per * sizeof(float));
    if (!x) return NULL;
    for (long i = 0; i < s->n; i++)
        for (int ch = 0; ch < s->c; ch++)
            for (long p = 0; p < (long)s->h * s->w; p++)
                x[i * per + (long)ch * s->h * s->w + p] = s->img[i * per + p * s->c + ch] / 127.5f - 1.0f;
    return x;
}

/* ------------------------------------------------------------------ reference features */

static uint64_t fnv_file(const char *path, uint64_t h, rq_err *err, int *ok) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
        *ok = 0;
        return h;
    }
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001b3ull;
    fclose(f);
    return h;
}

typedef struct {
    float *feat; /* n x D */
    long n;
    int d;
    rq_fstats stats;
} ref_set;

static void ref_free(ref_set *r) {
    free(r->feat);
    rq_fstats_free(&r->stats);
    memset(r, 0, sizeof *r);
}

static void cache_path(const char *clf, char *out, size_t cap) {
    size_t L = strlen(clf);
    if (L > 3 && !strcmp(clf + L - 3, ".h5")) L -= 3;
    snprintf(out, cap, "%.*s.refstats.h5", (int)L, clf);
}

static int cache_read(const char *path, const char *key, int D, ref_set *r) {
    rq_err e = {0};
    rq_h5_reader *h = rq_h5r_open(path, &e);
    if (!h) return 0;
    char k[64] = "";
    int64_t n = 0, d = 0;
    int ok = !rq_h5r_get_str(h, "/", "key", k, sizeof k, &e) && !strcmp(k, key) &&
             !rq_h5r_get_i64(h, "/", "n", &n, &e) && !rq_h5r_get_i64(h, "/", "dim", &d, &e) && d == D && n > 1;
    if (ok) {
        r->n = (long)n, r->d = D;
        ok = (r->feat = malloc((size_t)n * D * sizeof(float))) && !rq_fstats_alloc(&r->stats, D, &e) &&
             !rq_h5r_read_f32(h, "/features", r->feat, n * D, &e) &&
             !rq_h5r_read(h, "/mu", RQ_H5_F64, r->stats.mu, D, &e) &&
             !rq_h5r_read(h, "/cov", RQ_H5_F64, r->stats.cov, (long)D * D, &e);
        r->stats.n = (long)n;
    }
    rq_h5r_close(h);
    if (!ok) ref_free(r);
    return ok;
}

static void cache_write(const char *path, const char *key, const char *ref, const ref_set *r) {
    rq_err e = {0};
    rq_h5_writer *w = rq_h5w_open(path, &e);
    long D = r->d, shf[2] = {r->n, D}, shc[2] = {D, D};
    if (!w || rq_h5w_attr_str(w, "/", "format", "robuq-refstats", &e) || rq_h5w_attr_str(w, "/", "key", key, &e) ||
        rq_h5w_attr_str(w, "/", "ref", ref, &e) || rq_h5w_attr_i64(w, "/", "n", r->n, &e) ||
        rq_h5w_attr_i64(w, "/", "dim", D, &e) || rq_h5w_write_f32(w, "/features", r->feat, 2, shf, &e) ||
        rq_h5w_write(w, "/mu", RQ_H5_F64, r->stats.mu, 1, &D, &e) ||
        rq_h5w_write(w, "/cov", RQ_H5_F64, r->stats.cov, 2, shc, &e) || rq_h5w_close_commit(w, &e)) {
        if (w && e.code) rq_h5w_abort(w);
        fprintf(stderr, TOOL ": warning: reference cache not written: %s\n", e.msg);
        return;
    }
    fprintf(stderr, TOOL ": cached reference features in %s\n", path);
}

static rq_status ref_features(const opts *o, rq_classifier *clf, ref_set *r, rq_err *err) {
    int ok = 1;
    uint64_t h = fnv_file(o->classifier, 0xcbf29ce484222325ull, err, &ok);
    h = fnv_file(o->ref, h, err, &ok);
    if (!ok) return err->code;
    char key[64], cpath[4096];
    snprintf(key, sizeof key, "%016llx-%ld", (unsigned long long)h, o->max_ref);
    cache_path(o->classifier, cpath, sizeof cpath);
    if (!o->no_cache && cache_read(cpath, key, rq_classifier_feat_dim(&clf->cfg), r)) {
        fprintf(stderr, TOOL ": reference features from %s (%ld images)\n", cpath, r->n);
        return RQ_OK;
    }
    rq_dataset ds = {0};
    if (rq_dataset_load_n(o->ref, o->max_ref, &ds, err)) return err->code;
    rq_status st = RQ_OK;
    const rq_classifier_config *c = &clf->cfg;
    if (ds.kind != RQ_DATA_IMAGES || ds.c != c->in_channels || ds.h != c->image_size || ds.w != c->image_size) {
        st = rq_err_set(err, RQ_EINVAL, "%s: %dx%dx%d %s, the classifier takes %dx%dx%d images", o->ref, ds.c, ds.h,
                        ds.w, ds.kind == RQ_DATA_IMAGES ? "images" : "latents", c->in_channels, c->image_size,
                        c->image_size);
        goto done;
    }
    double t0 = rq_now();
    r->n = ds.n, r->d = rq_classifier_feat_dim(c);
    if (!(r->feat = malloc((size_t)ds.n * r->d * sizeof(float)))) {
        st = rq_err_set(err, RQ_ENOMEM, "out of memory for reference features");
        goto done;
    }
    if ((st = rq_classifier_embed(clf, ds.x, ds.n, 256, r->feat, NULL, NULL, err)) ||
        (st = rq_fstats_compute(r->feat, r->n, r->d, &r->stats, err)))
        goto done;
    fprintf(stderr, TOOL ": reference features of %ld images of %s in %.1f s\n", ds.n, o->ref, rq_now() - t0);
    if (!o->no_cache) cache_write(cpath, key, o->ref, r);
done:
    rq_dataset_free(&ds);
    if (st) ref_free(r);
    return st;
}

/* ------------------------------------------------------------------ results file */

typedef struct {
    double fid, is, is_std, precision, recall, accuracy, seconds, eval_seconds;
    long n;
    int steps;
} metrics;

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, ",\"%s\":%.6g", key, v);
    else fprintf(f, ",\"%s\":null", key);
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, ",%.6g", v);
    else fputc(',', f);
}

static void twin_path(const char *results, const char *ext, char *out, size_t cap) {
    const char *slash = strrchr(results, '/'), *dot = strrchr(results, '.');
    size_t L = dot && (!slash || dot > slash) ? (size_t)(dot - results) : strlen(results);
    snprintf(out, cap, "%.*s%s", (int)L, results, ext);
}

static rq_status append_rows(const opts *o, const char *name, const metrics *m, rq_err *err) {
    char when[32], csv[4096];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    FILE *f = fopen(o->results, "a");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot append: %s", o->results, strerror(errno));
    fputs("{\"name\":", f);
    json_str(f, name);
    fputs(",\"bits\":", f);
    json_str(f, o->label);
    json_num(f, "fid", m->fid);
    json_num(f, "is", m->is);
    json_num(f, "is_std", m->is_std);
    json_num(f, "precision", m->precision);
    json_num(f, "recall", m->recall);
    json_num(f, "accuracy", m->accuracy);
    fprintf(f, ",\"n\":%ld,\"steps\":%d", m->n, m->steps);
    json_num(f, "seconds", m->seconds);
    json_num(f, "eval_seconds", m->eval_seconds);
    fputs(",\"source\":", f);
    json_str(f, o->source);
    fputs(",\"ref\":", f);
    json_str(f, o->ref);
    fputs(",\"time\":", f);
    json_str(f, when);
    fputs("}\n", f);
    if (fclose(f)) return rq_err_set(err, RQ_EIO, "%s: write failed: %s", o->results, strerror(errno));

    twin_path(o->results, ".csv", csv, sizeof csv);
    struct stat st;
    int fresh = stat(csv, &st) != 0 || st.st_size == 0;
    if (!(f = fopen(csv, "a"))) return rq_err_set(err, RQ_EIO, "%s: cannot append: %s", csv, strerror(errno));
    if (fresh)
        fputs("name,bits,fid,is,is_std,precision,recall,accuracy,n,steps,seconds,eval_seconds,source,ref,time\n", f);
    csv_field(f, name);
    fputc(',', f);
    csv_field(f, o->label);
    csv_num(f, m->fid), csv_num(f, m->is), csv_num(f, m->is_std), csv_num(f, m->precision);
    csv_num(f, m->recall), csv_num(f, m->accuracy);
    fprintf(f, ",%ld,%d", m->n, m->steps);
    csv_num(f, m->seconds), csv_num(f, m->eval_seconds);
    fputc(',', f);
    csv_field(f, o->source);
    fputc(',', f);
    csv_field(f, o->ref);
    fprintf(f, ",%s\n", when);
    if (fclose(f)) return rq_err_set(err, RQ_EIO, "%s: write failed: %s", csv, strerror(errno));
    return RQ_OK;
}

/* ---- reading the rows back (only what this tool writes: flat objects) ---- */

typedef struct {
    char name[128], bits[64];
    double fid, accuracy, precision, recall;
} row;

/* Value of "key" in a flat JSON line: strings unescaped into sbuf, numbers
 * into *num (null -> NaN). Returns 1 if found. */
static int json_get(const char *line, const char *key, char *sbuf, size_t cap, double *num) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = line;
    while ((p = strstr(p, pat))) {
        /* a match must start a key: preceded by '{' or ',' */
        if (p > line && (p[-1] == '{' || p[-1] == ',')) break;
        p++;
    }
    if (!p) return 0;
    p += strlen(pat);
    if (*p == '"') {
        size_t j = 0;
        for (p++; *p && *p != '"'; p++) {
            char ch = *p;
            if (ch == '\\' && p[1]) ch = *++p;
            if (sbuf && j + 1 < cap) sbuf[j++] = ch;
        }
        if (sbuf) sbuf[j] = '\0';
        return 1;
    }
    if (num) *num = strncmp(p, "null", 4) ? strtod(p, NULL) : NAN;
    return 1;
}

static int read_rows(const char *path, row **out) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, cap = 0;
    row *rows = NULL;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        row r = {.fid = NAN, .accuracy = NAN, .precision = NAN, .recall = NAN};
        if (!json_get(line, "name", r.name, sizeof r.name, NULL)) continue;
        json_get(line, "bits", r.bits, sizeof r.bits, NULL);
        json_get(line, "fid", NULL, 0, &r.fid);
        json_get(line, "accuracy", NULL, 0, &r.accuracy);
        json_get(line, "precision", NULL, 0, &r.precision);
        json_get(line, "recall", NULL, 0, &r.recall);
        /* a later row with the same name and bits replaces the earlier one */
        int i;
        for (i = 0; i < n; i++)
            if (!strcmp(rows[i].name, r.name) && !strcmp(rows[i].bits, r.bits)) break;
        if (i == n) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                row *nr = realloc(rows, (size_t)cap * sizeof *rows);
                if (!nr) break;
                rows = nr;
            }
            n++;
        }
        rows[i] = r;
    }
    fclose(f);
    *out = rows;
    return n;
}

/* Activation bits from a label: the number after the last 'A' that is
 * followed by a digit ("W1.58A2" -> 2, "W1.58A2+AMPN" -> 2), or the label
 * itself if it is a number; NaN otherwise ("FP", "real"). */
static double bits_of(const char *label) {
    for (const char *p = label + strlen(label); p > label; p--)
        if ((p[-1] == 'A' || p[-1] == 'a') && isdigit((unsigned char)p[0])) return strtod(p, NULL);
    char *end;
    double v = strtod(label, &end);
    return end != label && *end == '\0' ? v : NAN;
}

static rq_status write_plots(const char *results, const char *prefix, rq_err *err) {
    row *rows = NULL;
    int n = read_rows(results, &rows);
    if (n == 0) {
        free(rows);
        return RQ_OK;
    }
    char path[4200];
    rq_status st = RQ_OK;
    /* bars: every row */
    float *vals = malloc((size_t)n * sizeof(float));
    char **labels = malloc((size_t)n * sizeof(char *));
    char (*lab)[200] = malloc((size_t)n * sizeof *lab);
    /* lines: one series per name over the numeric bits; rows without bits
     * (FP, real data) become flat reference lines */
    double xmin = INFINITY, xmax = -INFINITY;
    for (int i = 0; i < n; i++) {
        double b = bits_of(rows[i].bits);
        if (isfinite(b)) xmin = fmin(xmin, b), xmax = fmax(xmax, b);
    }
    if (!vals || !labels || !lab) {
        st = rq_err_set(err, RQ_ENOMEM, "plots: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        snprintf(lab[i], sizeof lab[i], "%s%s%s", rows[i].name, rows[i].bits[0] ? " " : "", rows[i].bits);
        labels[i] = lab[i];
        vals[i] = (float)rows[i].fid;
    }
    snprintf(path, sizeof path, "%s_bars.png", prefix);
    rq_plot_opts po = {.title = "FID per result row (lower is better)", .ylabel = "FID"};
    if ((st = rq_plot_bars(path, vals, (const char *const *)labels, n, &po, err))) goto done;
    if (!isfinite(xmin)) goto done; /* no row has numeric bits: no line plots */
    if (xmin == xmax) xmin -= 0.5, xmax += 0.5;
    for (int metric = 0; metric < 2; metric++) {
        rq_series ser[RQ_PLOT_MAX_SERIES];
        float xs[RQ_PLOT_MAX_SERIES][64], ys[RQ_PLOT_MAX_SERIES][64];
        char names[RQ_PLOT_MAX_SERIES][200];
        int ns = 0, is_ref[RQ_PLOT_MAX_SERIES] = {0};
        for (int i = 0; i < n && ns < RQ_PLOT_MAX_SERIES; i++) {
            double b = bits_of(rows[i].bits), v = metric == 0 ? rows[i].fid : rows[i].accuracy;
            if (!isfinite(b)) { /* reference line */
                snprintf(names[ns], sizeof names[ns], "%s", lab[i]);
                xs[ns][0] = (float)xmin, xs[ns][1] = (float)xmax, ys[ns][0] = ys[ns][1] = (float)v;
                ser[ns] = (rq_series){.x = xs[ns], .y = ys[ns], .n = 2, .label = names[ns]};
                is_ref[ns++] = 1;
                continue;
            }
            int s;
            for (s = 0; s < ns; s++)
                if (!is_ref[s] && !strcmp(names[s], rows[i].name)) break;
            if (s < ns && ser[s].n == 64) continue; /* a full series: drop the point */
            if (s == ns) {
                snprintf(names[ns], sizeof names[ns], "%s", rows[i].name);
                ser[ns] = (rq_series){.x = xs[ns], .y = ys[ns], .n = 0, .label = names[ns]};
                ns++;
            }
            /* keep x sorted within a series */
            int j = ser[s].n++;
            while (j > 0 && xs[s][j - 1] > b) xs[s][j] = xs[s][j - 1], ys[s][j] = ys[s][j - 1], j--;
            xs[s][j] = (float)b, ys[s][j] = (float)v;
        }
        snprintf(path, sizeof path, "%s_%s.png", prefix, metric == 0 ? "fid" : "acc");
        rq_plot_opts lo = {.title = metric == 0 ? "FID vs activation bits" : "classifier accuracy on samples vs bits",
                           .xlabel = "activation bits", .ylabel = metric == 0 ? "FID" : "accuracy"};
        if ((st = rq_plot_lines(path, ser, ns, &lo, err))) goto done;
    }
done:
    free(vals), free(labels), free(lab), free(rows);
    return st;
}

/* ------------------------------------------------------------------ grid */

/* Up to 10 images per class, one row per class (first 10 classes); without
 * labels the first 100 images. */
static rq_status save_grid(const char *path, const sample_set *s, const float *x, int num_classes, rq_err *err) {
    long per = (long)s->c * s->h * s->w;
    int cols = 10, rows = 0;
    float *g = calloc((size_t)100 * per, sizeof(float));
    if (!g) return rq_err_set(err, RQ_ENOMEM, "grid: out of memory");
    int n = 0;
    if (s->has_labels) {
        for (int k = 0; k < num_classes && rows < 10; k++) {
            int got = 0;
            for (long i = 0; i < s->n && got < cols; i++)
                if (s->labels[i] == k) memcpy(g + (long)(rows * cols + got++) * per, x + i * per, per * sizeof(float));
            if (!got) continue;
            for (; got < cols; got++) /* pad a short row with black */
                for (long p = 0; p < per; p++) g[(long)(rows * cols + got) * per + p] = -1.0f;
            rows++;
        }
        n = rows * cols;
    } else {
        n = (int)(s->n < 100 ? s->n : 100);
        memcpy(g, x, (size_t)n * per * sizeof(float));
    }
    rq_status st = n > 0 ? rq_image_grid_save(path, g, n, s->c, s->h, s->w, cols, err) : RQ_OK;
    free(g);
    return st;
}

/* ------------------------------------------------------------------ main */

static int parse_int(const char *s, const char *opt, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < lo || v > hi) {
        fprintf(stderr, TOOL ": %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* mkdir -p of the directory part of path (so outputs can go to a new run folder). */
static rq_status make_parent(const char *path, rq_err *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp) return RQ_OK;
    *slash = '\0';
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) && errno != EEXIST) return rq_err_set(err, RQ_EIO, "%s: cannot create: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) && errno != EEXIST) return rq_err_set(err, RQ_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    return RQ_OK;
}

static void safe_name(const char *in, char *out, size_t cap) {
    size_t j = 0;
    for (; *in && j + 1 < cap; in++) out[j++] = (isalnum((unsigned char)*in) || *in == '.' || *in == '-') ? *in : '_';
    out[j] = '\0';
}

int main(int argc, char **argv) {
    opts o = {.classifier = "runs/fmnist_classifier.h5", .ref = "runs/fmnist_test.h5",
              .results = "runs/eval_results.jsonl", .label = "", .weights = "ema", .per_class = 100, .seed = -1,
              .batch = 100, .k = 3, .splits = 10, .cfg_scale = -1};
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (o.source) {
                fprintf(stderr, TOOL ": more than one source given ('%s' and '%s')\n", o.source, a);
                return 2;
            }
            o.source = a;
            continue;
        }
        if (!strcmp(a, "--no-cache")) {
            o.no_cache = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, TOOL ": %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long l = 0;
        int bad = 0;
        if (!strcmp(a, "--classifier")) o.classifier = v;
        else if (!strcmp(a, "--ref")) o.ref = v;
        else if (!strcmp(a, "--results")) o.results = v;
        else if (!strcmp(a, "--grid")) o.grid = v;
        else if (!strcmp(a, "--plot")) o.plot = v;
        else if (!strcmp(a, "--name")) o.name = v;
        else if (!strcmp(a, "--label")) o.label = v;
        else if (!strcmp(a, "--save-samples")) o.save_samples = v;
        else if (!strcmp(a, "--labels")) o.labels_file = v;
        else if (!strcmp(a, "--weights")) {
            o.weights = v;
            if (strcmp(v, "ema") && strcmp(v, "params"))
                fprintf(stderr, TOOL ": --weights must be ema or params, got '%s'\n", v), bad = 1;
        } else if (!strcmp(a, "--sampler")) {
            o.sampler = v;
            if (strcmp(v, "ddpm") && strcmp(v, "ddim"))
                fprintf(stderr, TOOL ": --sampler must be ddpm or ddim, got '%s'\n", v), bad = 1;
        } else if (!strcmp(a, "--cfg")) {
            char *end;
            o.cfg_scale = strtof(v, &end);
            if (*v == '\0' || *end || !(o.cfg_scale >= 0 && o.cfg_scale <= 100))
                fprintf(stderr, TOOL ": --cfg expects a number in [0, 100], got '%s'\n", v), bad = 1;
        }
#define INT(name, lo, hi, dst) else if (!strcmp(a, name)) { bad = parse_int(v, a, lo, hi, &l); dst = l; }
        INT("--per-class", 1, 1000000, o.per_class)
        INT("--steps", 1, 100000, o.steps)
        INT("--seed", 0, 1L << 40, o.seed)
        INT("--batch", 1, 100000, o.batch)
        INT("--k", 1, 64, o.k)
        INT("--splits", 1, 1000, o.splits)
        INT("--max-samples", 1, 1L << 40, o.max_samples)
        INT("--max-ref", 1, 1L << 40, o.max_ref)
        INT("--threads", 1, 4096, threads)
#undef INT
        else {
            fprintf(stderr, TOOL ": unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) return 2;
    }
    if (!o.source) {
        fprintf(stderr, TOOL ": no source given\n");
        usage(stderr);
        return 2;
    }
    if (threads > 0) omp_set_num_threads((int)threads);

    rq_err err = {0};
    rq_classifier clf = {0};
    rq_classifier_meta meta;
    ref_set ref = {0};
    sample_set s = {0};
    float *x = NULL, *feat = NULL, *probs = NULL;
    int *pred = NULL;
    double t_start = rq_now();
    metrics mt = {.fid = NAN, .is = NAN, .is_std = NAN, .precision = NAN, .recall = NAN, .accuracy = NAN};
    char name[256], grid[4600], prefix[4096], tmp[512];

    /* outputs first: a missing folder should not cost a sampling run */
    if (make_parent(o.results, &err) || (o.grid && make_parent(o.grid, &err)) || (o.plot && make_parent(o.plot, &err)) ||
        (o.save_samples && make_parent(o.save_samples, &err)))
        goto fail;
    if (rq_classifier_load(o.classifier, &clf, &meta, &err)) goto fail;
    fprintf(stderr, TOOL ": classifier %s (%ld parameters, test accuracy %.4f)\n", o.classifier,
            rq_classifier_num_params(&clf), meta.test_accuracy);
    int K = clf.cfg.num_classes, D = rq_classifier_feat_dim(&clf.cfg);

    /* samples */
    int generator = !is_dir(o.source) && is_generator_file(o.source);
    if (generator) {
        if (generate(&o, &clf.cfg, &s, &err)) goto fail;
    } else if (is_dir(o.source)) {
        if (read_png_dir(o.source, o.labels_file, o.max_samples, &s, &err)) goto fail;
    } else if (read_h5_samples(o.source, o.max_samples, &s, &err)) {
        goto fail;
    }
    if (s.c != clf.cfg.in_channels || s.h != clf.cfg.image_size || s.w != clf.cfg.image_size) {
        rq_err_set(&err, RQ_EINVAL, "%s: images are %dx%dx%d (HxWxC), the classifier takes %dx%dx%d", o.source, s.h,
                   s.w, s.c, clf.cfg.image_size, clf.cfg.image_size, clf.cfg.in_channels);
        goto fail;
    }
    for (long i = 0; s.has_labels && i < s.n; i++)
        if (s.labels[i] < 0 || s.labels[i] >= K) {
            rq_err_set(&err, RQ_EINVAL, "%s: label %d of sample %ld outside [0,%d)", o.source, s.labels[i], i, K);
            goto fail;
        }
    if (s.n <= o.k || s.n < o.splits) {
        rq_err_set(&err, RQ_EINVAL, "%s: %ld samples; need more than --k %d and at least --splits %d", o.source, s.n,
                   o.k, o.splits);
        goto fail;
    }
    if (generator && o.save_samples) {
        rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = s.n, .c = s.c, .h = s.h, .w = s.w, .images = s.img,
                              .labels = s.labels, .num_classes = K, .source = o.source, .compression = -1};
        if (rq_dataset_write(o.save_samples, &src, &err)) goto fail;
        fprintf(stderr, TOOL ": saved samples to %s\n", o.save_samples);
    }

    /* features */
    double t_eval = rq_now();
    if (ref_features(&o, &clf, &ref, &err)) goto fail;
    x = to_float(&s);
    feat = malloc((size_t)s.n * D * sizeof(float));
    probs = malloc((size_t)s.n * K * sizeof(float));
    pred = malloc((size_t)s.n * sizeof(int));
    if (!x || !feat || !probs || !pred) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory for %ld samples", s.n);
        goto fail;
    }
    if (rq_classifier_embed(&clf, x, s.n, 256, feat, probs, pred, &err)) goto fail;

    /* metrics */
    rq_fstats fs;
    if (rq_fstats_compute(feat, s.n, D, &fs, &err)) goto fail;
    rq_status st = rq_fid_from_stats(&fs, &ref.stats, &mt.fid, &err);
    rq_fstats_free(&fs);
    if (st || rq_inception_score(probs, s.n, K, o.splits, &mt.is, &mt.is_std, &err) ||
        rq_precision_recall(ref.feat, ref.n, feat, s.n, D, o.k, &mt.precision, &mt.recall, &err))
        goto fail;
    if (s.has_labels) {
        long right = 0;
        for (long i = 0; i < s.n; i++) right += pred[i] == s.labels[i];
        mt.accuracy = (double)right / (double)s.n;
    }
    mt.n = s.n, mt.steps = s.steps, mt.seconds = s.seconds, mt.eval_seconds = rq_now() - t_eval;

    /* outputs */
    if (o.name) snprintf(name, sizeof name, "%s", o.name);
    else {
        const char *b = strrchr(o.source, '/');
        snprintf(name, sizeof name, "%s", b && b[1] ? b + 1 : o.source);
    }
    if (append_rows(&o, name, &mt, &err)) goto fail;
    if (o.grid) snprintf(grid, sizeof grid, "%s", o.grid);
    else {
        const char *slash = strrchr(o.results, '/');
        char sn[256], sl[128];
        safe_name(name, sn, sizeof sn), safe_name(o.label, sl, sizeof sl);
        snprintf(grid, sizeof grid, "%.*s%s%s%s_grid.png", slash ? (int)(slash - o.results + 1) : 0, o.results, sn,
                 sl[0] ? "_" : "", sl);
    }
    if (save_grid(grid, &s, x, K, &err)) goto fail;
    if (o.plot) snprintf(prefix, sizeof prefix, "%s", o.plot);
    else twin_path(o.results, "", prefix, sizeof prefix);
    if (write_plots(o.results, prefix, &err)) goto fail;

    snprintf(tmp, sizeof tmp, "%.4f", mt.accuracy);
    printf("%s %s: FID %.3f | IS %.3f +- %.3f | precision %.4f | recall %.4f | accuracy %s | n %ld | sampling %.1f s | "
           "eval %.1f s\n",
           name, o.label, mt.fid, mt.is, mt.is_std, mt.precision, mt.recall, s.has_labels ? tmp : "n/a", s.n,
           mt.seconds, mt.eval_seconds);
    printf("wrote %s (+ .csv), %s, %s_{bars,fid,acc}.png in %.1f s\n", o.results, grid, prefix, rq_now() - t_start);
    free(x), free(feat), free(probs), free(pred);
    ref_free(&ref);
    sample_set_free(&s);
    rq_classifier_free(&clf);
    return 0;
fail:
    fprintf(stderr, TOOL ": %s\n", err.msg);
    free(x), free(feat), free(probs), free(pred);
    ref_free(&ref);
    sample_set_free(&s);
    rq_classifier_free(&clf);
    return 1;
}
