/* dataset.c: dataset HDF5 files <-> rq_dataset, and the batch loader. */
#include "robuq/dataset.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/h5io.h"
#include "robuq/image.h"

/* ------------------------------------------------------------------ load */

void rq_dataset_free(rq_dataset *ds) {
    if (!ds) return;
    rq_free(ds->x);
    rq_free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static rq_status check_labels(const char *what, const int32_t *labels, long n, int num_classes,
                              rq_err *err) {
    for (long i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= num_classes)
            return rq_err_set(err, RQ_EFORMAT, "%s: label %d at index %ld outside [0,%d)", what,
                              (int)labels[i], i, num_classes);
    return RQ_OK;
}

/* Read the root attributes and decide kind / scale / num_classes. */
static rq_status load_attrs(rq_h5_reader *r, const char *path, rq_dataset *ds, rq_err *err) {
    char buf[64], show[96];
    rq_status s;
    if (rq_h5r_has_attr(r, NULL, "format")) {
        if ((s = rq_h5r_get_str(r, NULL, "format", buf, sizeof buf, err)) != RQ_OK) return s;
        if (strcmp(buf, RQ_DATASET_FORMAT) != 0)
            return rq_err_set(err, RQ_EFORMAT, "%s: format is '%s', expected '%s'", path, rq_printable(buf, show, sizeof show),
                              RQ_DATASET_FORMAT);
    }
    if (rq_h5r_has_attr(r, NULL, "version")) {
        int64_t v;
        if ((s = rq_h5r_get_i64(r, NULL, "version", &v, err)) != RQ_OK) return s;
        if (v < 1 || v > RQ_DATASET_VERSION)
            return rq_err_set(err, RQ_EFORMAT, "%s: dataset version %lld not supported (max %d)",
                              path, (long long)v, RQ_DATASET_VERSION);
    }
    /* kind: from the attribute, else from which dataset is present (files
     * written by hand with h5py may omit it). */
    if (rq_h5r_has_attr(r, NULL, "kind")) {
        if ((s = rq_h5r_get_str(r, NULL, "kind", buf, sizeof buf, err)) != RQ_OK) return s;
        if (strcmp(buf, "images") == 0) ds->kind = RQ_DATA_IMAGES;
        else if (strcmp(buf, "latents") == 0) ds->kind = RQ_DATA_LATENTS;
        else
            return rq_err_set(err, RQ_EFORMAT, "%s: kind is '%s', expected 'images' or 'latents'",
                              path, rq_printable(buf, show, sizeof show));
    } else {
        int im = rq_h5r_exists(r, "/images") == 1, la = rq_h5r_exists(r, "/latents") == 1;
        if (im == la)
            return rq_err_set(err, RQ_EFORMAT,
                              "%s: no 'kind' attribute and %s of /images, /latents", path,
                              im ? "both" : "neither");
        ds->kind = im ? RQ_DATA_IMAGES : RQ_DATA_LATENTS;
    }
    int64_t nc;
    if ((s = rq_h5r_get_i64(r, NULL, "num_classes", &nc, err)) != RQ_OK) return s;
    if (nc < 1 || nc > (1 << 24))
        return rq_err_set(err, RQ_EFORMAT, "%s: num_classes %lld out of range", path, (long long)nc);
    ds->num_classes = (int)nc;
    ds->scale = 1.0;
    if (ds->kind == RQ_DATA_LATENTS) {
        /* The scale is what makes latents unit-variance: never guess it. */
        if ((s = rq_h5r_get_f64(r, NULL, "scale", &ds->scale, err)) != RQ_OK) return s;
        if (!isfinite(ds->scale) || ds->scale <= 0)
            return rq_err_set(err, RQ_EFORMAT, "%s: scale %g must be positive", path, ds->scale);
    }
    return RQ_OK;
}

/* uint8 NHWC rows -> float NCHW in [-1, 1], read in slabs so peak memory
 * stays close to the float array alone. */
static rq_status load_images(rq_h5_reader *r, rq_dataset *ds, long C, rq_err *err) {
    const long hw = (long)ds->h * ds->w, per = hw * C;
    const long slab = 1024;
    uint8_t *buf = malloc((size_t)(per * (ds->n < slab ? ds->n : slab)) + 1);
    if (!buf) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", rq_h5r_filename(r));
    rq_status s = RQ_OK;
    for (long i0 = 0; i0 < ds->n && s == RQ_OK; i0 += slab) {
        long m = ds->n - i0 < slab ? ds->n - i0 : slab;
        if ((s = rq_h5r_read_rows(r, "/images", RQ_H5_U8, i0, m, buf, err)) != RQ_OK) break;
        for (long i = 0; i < m; i++) {
            const uint8_t *src = buf + i * per;
            float *dst = ds->x + (i0 + i) * per;
            for (long p = 0; p < hw; p++)
                for (long c = 0; c < C; c++) dst[c * hw + p] = (float)src[p * C + c] / 127.5f - 1.0f;
        }
    }
    free(buf);
    return s;
}

rq_status rq_dataset_load_n(const char *path, long max_n, rq_dataset *ds, rq_err *err) {
    if (!path || !ds) return rq_err_set(err, RQ_EINVAL, "rq_dataset_load: bad arguments");
    memset(ds, 0, sizeof *ds);
    rq_h5_reader *r = rq_h5r_open(path, err);
    if (!r) return err ? err->code : RQ_EIO;
    rq_status s = load_attrs(r, path, ds, err);
    if (s != RQ_OK) goto fail;

    const char *xname = ds->kind == RQ_DATA_IMAGES ? "/images" : "/latents";
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    if ((s = rq_h5r_shape(r, xname, &nd, sh, err)) != RQ_OK) goto fail;
    if (nd != 4 || sh[1] < 1 || sh[2] < 1 || sh[3] < 1 || sh[1] > 65536 || sh[2] > 65536 ||
        sh[3] > 65536) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: %s must be 4-D %s with positive sizes", path, xname,
                       ds->kind == RQ_DATA_IMAGES ? "(N,H,W,C)" : "(N,C,H,W)");
        goto fail;
    }
    long n_file = sh[0];
    long C;
    if (ds->kind == RQ_DATA_IMAGES) {
        ds->h = (int)sh[1], ds->w = (int)sh[2], C = sh[3];
    } else {
        C = sh[1], ds->h = (int)sh[2], ds->w = (int)sh[3];
    }
    ds->c = (int)C;
    int lnd;
    long lsh[RQ_H5_MAX_DIMS];
    if ((s = rq_h5r_shape(r, "/labels", &lnd, lsh, err)) != RQ_OK) goto fail;
    if (lnd != 1 || lsh[0] != n_file) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: /labels must have shape [%ld] to match %s", path,
                       n_file, xname);
        goto fail;
    }
    ds->n = (max_n > 0 && max_n < n_file) ? max_n : n_file;
    const long per = rq_dataset_sample_size(ds);
    ds->x = rq_malloc(sizeof(float) * (size_t)(ds->n * per));
    ds->labels = rq_malloc(sizeof(int32_t) * (size_t)ds->n);
    if (!ds->x || !ds->labels) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for %ld samples", path, ds->n);
        goto fail;
    }
    if ((s = rq_h5r_read_rows(r, "/labels", RQ_H5_I32, 0, ds->n, ds->labels, err)) != RQ_OK) goto fail;
    if ((s = check_labels(path, ds->labels, ds->n, ds->num_classes, err)) != RQ_OK) goto fail;
    if (ds->kind == RQ_DATA_IMAGES) {
        if ((s = load_images(r, ds, C, err)) != RQ_OK) goto fail;
    } else {
        if ((s = rq_h5r_read_rows(r, "/latents", RQ_H5_F32, 0, ds->n, ds->x, err)) != RQ_OK) goto fail;
        const float sc = (float)ds->scale;
        const long total = ds->n * per;
        for (long i = 0; i < total; i++) {
            if (!isfinite(ds->x[i])) {
                s = rq_err_set(err, RQ_ENUM, "%s: non-finite latent value in sample %ld", path,
                               i / per);
                goto fail;
            }
            ds->x[i] *= sc;
        }
    }
    rq_h5r_close(r);
    return RQ_OK;
fail:
    rq_h5r_close(r);
    rq_dataset_free(ds);
    return s;
}

rq_status rq_dataset_load(const char *path, rq_dataset *ds, rq_err *err) {
    return rq_dataset_load_n(path, 0, ds, err);
}

/* ------------------------------------------------------------------ write */

rq_status rq_dataset_write(const char *path, const rq_dataset_src *src, rq_err *err) {
    if (!path || !src || !src->labels)
        return rq_err_set(err, RQ_EINVAL, "rq_dataset_write: bad arguments");
    const int images = src->kind == RQ_DATA_IMAGES;
    if (src->kind != RQ_DATA_IMAGES && src->kind != RQ_DATA_LATENTS)
        return rq_err_set(err, RQ_EINVAL, "%s: unknown dataset kind %d", path, (int)src->kind);
    if ((images && !src->images) || (!images && !src->latents))
        return rq_err_set(err, RQ_EINVAL, "%s: no %s data given", path, images ? "image" : "latent");
    if (src->n < 1 || src->c < 1 || src->h < 1 || src->w < 1)
        return rq_err_set(err, RQ_EINVAL, "%s: bad dataset shape n=%ld c=%d h=%d w=%d", path,
                          src->n, src->c, src->h, src->w);
    int nc = src->num_classes;
    if (nc <= 0) {
        for (long i = 0; i < src->n; i++)
            if (src->labels[i] + 1 > nc) nc = src->labels[i] + 1;
        if (nc < 1) nc = 1;
    }
    rq_status s = check_labels(path, src->labels, src->n, nc, err);
    if (s != RQ_OK) return s;
    const long per = (long)src->c * src->h * src->w;
    double scale = images ? 1.0 : src->scale;
    if (!images) {
        if (!isfinite(scale) || scale <= 0)
            return rq_err_set(err, RQ_EINVAL, "%s: latent scale %g must be positive", path, scale);
        for (long i = 0; i < src->n * per; i++)
            if (!isfinite(src->latents[i]))
                return rq_err_set(err, RQ_ENUM, "%s: non-finite latent value in sample %ld", path,
                                  i / per);
    }

    rq_h5_writer *w = rq_h5w_open(path, err);
    if (!w) return err ? err->code : RQ_EIO;
    int level = src->compression >= 0 ? src->compression : (images ? 4 : 0);
    if (level > 9) level = 9;
    s = rq_h5w_set_compression(w, level, err);
    if (s == RQ_OK) {
        if (images) {
            long shape[4] = {src->n, src->h, src->w, src->c};
            s = rq_h5w_write_u8(w, "/images", src->images, 4, shape, err);
        } else {
            long shape[4] = {src->n, src->c, src->h, src->w};
            s = rq_h5w_write_f32(w, "/latents", src->latents, 4, shape, err);
        }
    }
    if (s == RQ_OK) s = rq_h5w_set_compression(w, images ? level : 0, err);
    if (s == RQ_OK) s = rq_h5w_write_i32(w, "/labels", src->labels, 1, &src->n, err);
    if (s == RQ_OK) s = rq_h5w_attr_str(w, NULL, "format", RQ_DATASET_FORMAT, err);
    if (s == RQ_OK) s = rq_h5w_attr_i64(w, NULL, "version", RQ_DATASET_VERSION, err);
    if (s == RQ_OK) s = rq_h5w_attr_str(w, NULL, "kind", images ? "images" : "latents", err);
    if (s == RQ_OK) s = rq_h5w_attr_i64(w, NULL, "num_classes", nc, err);
    if (s == RQ_OK) s = rq_h5w_attr_f64(w, NULL, "scale", scale, err);
    if (s == RQ_OK) s = rq_h5w_attr_str(w, NULL, "source", src->source ? src->source : "", err);
    if (s != RQ_OK) {
        rq_h5w_abort(w);
        return s;
    }
    return rq_h5w_close_commit(w, err);
}

/* ------------------------------------------------------------------ loader */

#define LOADER_MAGIC 0x52514c44 /* "RQLD" */
#define LOADER_VERSION 1

/* splitmix64: tiny, stateless-friendly mixer (Steele et al.). */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
static uint64_t sm_next(uint64_t *s) {
    uint64_t z = mix64(*s);
    *s += 0x9e3779b97f4a7c15ULL;
    return z;
}

/* Unbiased draw in [0, n) by rejection. */
static uint64_t sm_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = sm_next(s);
    while (x >= lim);
    return x % n;
}

/* Permutation of epoch e depends only on (seed, e): this is what makes the
 * loader state just (epoch, pos). */
static void make_perm(rq_loader *l) {
    const long n = l->ds->n;
    for (long i = 0; i < n; i++) l->perm[i] = i;
    if (!l->shuffle) return;
    uint64_t s = mix64(l->seed ^ mix64((uint64_t)l->epoch + 0x5eedULL));
    for (long i = n - 1; i > 0; i--) {
        long j = (long)sm_below(&s, (uint64_t)i + 1);
        long t = l->perm[i];
        l->perm[i] = l->perm[j];
        l->perm[j] = t;
    }
}

/* Flip coin for the sample at (epoch, pos): a hash, no stream to save. */
static int flip_coin(const rq_loader *l, long epoch, long pos) {
    uint64_t h = mix64(mix64(mix64(l->seed ^ 0xf11bULL) ^ (uint64_t)epoch) ^ (uint64_t)pos);
    return (int)(h >> 63);
}

rq_status rq_loader_init(rq_loader *l, const rq_dataset *ds, uint64_t seed, int shuffle, int flip,
                         rq_err *err) {
    if (!l || !ds || !ds->x || !ds->labels || ds->n < 1)
        return rq_err_set(err, RQ_EINVAL, "rq_loader_init: empty or NULL dataset");
    memset(l, 0, sizeof *l);
    l->ds = ds;
    l->seed = seed;
    l->shuffle = shuffle != 0;
    l->flip = flip != 0;
    l->perm = malloc(sizeof(long) * (size_t)ds->n);
    if (!l->perm) return rq_err_set(err, RQ_ENOMEM, "rq_loader_init: out of memory");
    make_perm(l);
    return RQ_OK;
}

void rq_loader_free(rq_loader *l) {
    if (!l) return;
    free(l->perm);
    memset(l, 0, sizeof *l);
}

rq_status rq_loader_next(rq_loader *l, float *x_out, int32_t *y_out, int batch) {
    if (!l || !l->perm || !x_out || batch < 1) return RQ_EINVAL;
    const rq_dataset *ds = l->ds;
    const long per = rq_dataset_sample_size(ds);
    const int C = ds->c, H = ds->h, W = ds->w;
    for (int b = 0; b < batch; b++) {
        if (l->pos >= ds->n) { /* epoch boundary: next permutation */
            l->epoch++;
            l->pos = 0;
            make_perm(l);
        }
        long idx = l->perm[l->pos];
        const float *src = ds->x + idx * per;
        float *dst = x_out + (long)b * per;
        if (l->flip && flip_coin(l, l->epoch, l->pos)) {
            for (int c = 0; c < C; c++)
                for (int y = 0; y < H; y++) {
                    const float *s = src + ((long)c * H + y) * W;
                    float *d = dst + ((long)c * H + y) * W;
                    for (int x = 0; x < W; x++) d[x] = s[W - 1 - x];
                }
        } else {
            memcpy(dst, src, sizeof(float) * (size_t)per);
        }
        if (y_out) y_out[b] = ds->labels[idx];
        l->pos++;
    }
    return RQ_OK;
}

void rq_loader_get_state(const rq_loader *l, int64_t state[RQ_LOADER_STATE_LEN]) {
    if (!l || !state) return;
    state[0] = LOADER_MAGIC;
    state[1] = LOADER_VERSION | (int64_t)l->shuffle << 8 | (int64_t)l->flip << 9;
    state[2] = (int64_t)l->seed;
    state[3] = l->epoch;
    state[4] = l->pos;
    state[5] = l->ds ? l->ds->n : 0;
}

rq_status rq_loader_set_state(rq_loader *l, const int64_t state[RQ_LOADER_STATE_LEN], rq_err *err) {
    if (!l || !l->perm || !state) return rq_err_set(err, RQ_EINVAL, "rq_loader_set_state: bad arguments");
    if (state[0] != LOADER_MAGIC || (state[1] & 0xff) != LOADER_VERSION)
        return rq_err_set(err, RQ_EFORMAT, "loader state: bad magic or version");
    int shuffle = (int)(state[1] >> 8 & 1), flip = (int)(state[1] >> 9 & 1);
    if (shuffle != l->shuffle || flip != l->flip)
        return rq_err_set(err, RQ_EINVAL,
                          "loader state was saved with shuffle=%d flip=%d, loader has shuffle=%d flip=%d",
                          shuffle, flip, l->shuffle, l->flip);
    if (state[5] != l->ds->n)
        return rq_err_set(err, RQ_EINVAL, "loader state is for a dataset of %lld samples, this one has %ld",
                          (long long)state[5], l->ds->n);
    if (state[3] < 0 || state[4] < 0 || state[4] > l->ds->n)
        return rq_err_set(err, RQ_EFORMAT, "loader state: bad position epoch=%lld pos=%lld",
                          (long long)state[3], (long long)state[4]);
    l->seed = (uint64_t)state[2];
    l->epoch = (long)state[3];
    l->pos = (long)state[4];
    make_perm(l);
    return RQ_OK;
}

/* ------------------------------------------------------------------ PNG folder */

typedef struct {
    char *name;
    int label, line;
} png_entry;

static void entries_free(png_entry *e, long n) {
    for (long i = 0; i < n; i++) free(e[i].name);
    free(e);
}

/* Parse "filename label" lines; the label is the last token so file names
 * may contain spaces. */
static rq_status parse_labels(const char *path, png_entry **out, long *count, rq_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    png_entry *e = NULL;
    long n = 0, cap = 0;
    char line[4096];
    int lineno = 0;
    rq_status s = RQ_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            s = rq_err_set(err, RQ_EFORMAT, "%s:%d: line too long", path, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) *--end = '\0';
        if (!*p) continue;
        char *sp = end;
        while (sp > p && !isspace((unsigned char)sp[-1])) sp--;
        if (sp == p) {
            s = rq_err_set(err, RQ_EFORMAT, "%s:%d: expected 'filename label', got '%s'", path, lineno, p);
            break;
        }
        char *lab = sp, *stop;
        errno = 0;
        long v = strtol(lab, &stop, 10);
        if (*stop || errno || v < 0 || v > (1 << 24)) {
            s = rq_err_set(err, RQ_EFORMAT, "%s:%d: bad label '%s' (a non-negative integer)", path, lineno, lab);
            break;
        }
        while (sp > p && isspace((unsigned char)sp[-1])) sp--;
        *sp = '\0';
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            png_entry *ne = realloc(e, sizeof *ne * (size_t)cap);
            if (!ne) {
                s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
                break;
            }
            e = ne;
        }
        size_t nl = strlen(p) + 1;
        if (!(e[n].name = malloc(nl))) {
            s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
            break;
        }
        memcpy(e[n].name, p, nl);
        e[n].label = (int)v;
        e[n].line = lineno;
        n++;
    }
    if (s == RQ_OK && ferror(f)) s = rq_err_set(err, RQ_EIO, "%s: read error", path);
    if (s == RQ_OK && n == 0) s = rq_err_set(err, RQ_EFORMAT, "%s: no 'filename label' entries", path);
    fclose(f);
    if (s != RQ_OK) {
        entries_free(e, n);
        return s;
    }
    *out = e;
    *count = n;
    return RQ_OK;
}

rq_status rq_pngdir_load(const char *dir, const char *labels_path, uint8_t **images,
                         int32_t **labels, long *n, int *h, int *w, int *c, rq_err *err) {
    if (!dir || !labels_path || !images || !labels || !n || !h || !w || !c)
        return rq_err_set(err, RQ_EINVAL, "rq_pngdir_load: bad arguments");
    *images = NULL;
    *labels = NULL;
    png_entry *e = NULL;
    long count = 0;
    rq_status s = parse_labels(labels_path, &e, &count, err);
    if (s != RQ_OK) return s;
    uint8_t *im = NULL;
    int32_t *lb = malloc(sizeof *lb * (size_t)count);
    int H = 0, W = 0, C = 0;
    if (!lb) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", labels_path);
        goto done;
    }
    char path[8192];
    for (long i = 0; i < count; i++) {
        if (e[i].name[0] == '/') snprintf(path, sizeof path, "%s", e[i].name);
        else snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        uint8_t *px = NULL;
        int pw, ph, pc;
        rq_err perr = {0};
        if (rq_png_read(path, &px, &pw, &ph, &pc, &perr) != RQ_OK) {
            s = rq_err_set(err, perr.code ? perr.code : RQ_EIO, "%s:%d: %s", labels_path, e[i].line,
                           perr.msg[0] ? perr.msg : path);
            free(px);
            goto done;
        }
        int keep = (pc == 1 || pc == 2) ? 1 : 3; /* alpha is dropped */
        if (i == 0) {
            H = ph, W = pw, C = keep;
            im = malloc((size_t)count * (size_t)H * W * C);
            if (!im) {
                free(px);
                s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for %ld images", labels_path, count);
                goto done;
            }
        } else if (ph != H || pw != W || keep != C) {
            s = rq_err_set(err, RQ_EFORMAT, "%s:%d: %s is %dx%dx%d, expected %dx%dx%d like %s", labels_path,
                           e[i].line, path, pw, ph, keep, W, H, C, e[0].name);
            free(px);
            goto done;
        }
        uint8_t *dst = im + (size_t)i * H * W * C;
        for (long p = 0; p < (long)H * W; p++)
            for (int k = 0; k < C; k++) dst[p * C + k] = px[p * pc + k];
        free(px);
        lb[i] = e[i].label;
    }
    *images = im;
    *labels = lb;
    im = NULL;
    lb = NULL;
    *n = count;
    *h = H, *w = W, *c = C;
done:
    free(im);
    free(lb);
    entries_free(e, count);
    return s;
}
