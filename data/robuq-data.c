/* robuq-data: convert IDX / PNG folders / .npy latents into RobuQ dataset
 * HDF5 files, and describe existing ones.
 *
 * Exit codes: 0 ok, 1 file/data error (one line "robuq-data: <file>:
 * <problem>"), 2 usage error. Outputs are written atomically (temp file +
 * rename), and a signal handler removes the temp file on Ctrl-C, so a
 * partial output never exists under the final name. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "robuq/dataset.h"
#include "robuq/h5io.h"
#include "robuq/npy.h"

#define PROG "robuq-data"
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* ------------------------------------------------------------------ plumbing */

/* Temp file being written, for the signal handler (tool-level state). */
static char g_tmp[4096];
static volatile sig_atomic_t g_have_tmp = 0;

static void on_signal(int sig) {
    if (g_have_tmp) unlink(g_tmp); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROG " %s--help'.\n", cmd ? cmd : "");
    exit(2);
}

static int fail(const rq_err *e) {
    fprintf(stderr, PROG ": %s\n", e->msg[0] ? e->msg : rq_status_str(e->code));
    return 1;
}

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* "--name value" or "--name=value". Returns the value (advancing *i) or NULL
 * if argv[*i] is not this option. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, const char *cmd) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) usage_error(cmd, "option %s needs a value", name);
    return argv[++*i];
}

static long parse_long(const char *s, const char *what, const char *cmd, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        usage_error(cmd, "%s must be an integer in [%ld, %ld], got '%s'", what, lo, hi, s);
    return v;
}

static double parse_double(const char *s, const char *what, const char *cmd) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v <= 0)
        usage_error(cmd, "%s must be a positive number, got '%s'", what, s);
    return v;
}

/* mkdir -p of the directory part of path. */
static int make_parent_dirs(const char *path, rq_err *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return 0;
    *slash = '\0';
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                rq_err_set(err, RQ_EIO, "%s: cannot create directory %s: %s", path, buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

/* Write src to out atomically and print the summary line. */
static int write_dataset(const char *out, rq_dataset_src *src, double t0) {
    rq_err err = {0};
    if (make_parent_dirs(out, &err) != 0) return fail(&err);
    if (rq_h5_temp_path(out, g_tmp, sizeof g_tmp)) g_have_tmp = 1;
    rq_status s = rq_dataset_write(out, src, &err);
    g_have_tmp = 0;
    if (s != RQ_OK) return fail(&err);
    struct stat st;
    double mb = stat(out, &st) == 0 ? (double)st.st_size / 1e6 : 0.0;
    int nc = src->num_classes;
    if (nc <= 0)
        for (long i = 0; i < src->n; i++)
            if (src->labels[i] + 1 > nc) nc = src->labels[i] + 1;
    printf("%s: wrote %ld %s (%dx%dx%d), %d classes, %.*f MB, %.2f s\n", out, src->n,
           src->kind == RQ_DATA_IMAGES ? "images" : "latents", src->c, src->h, src->w, nc,
           mb < 1 ? 3 : 1, mb, rq_now() - t0);
    fflush(stdout);
    return 0;
}

/* Labels against --num-classes, naming the labels file (clearer than the
 * output name the library would use). */
static int check_labels(const char *file, const int32_t *y, long n, int num_classes) {
    for (long i = 0; i < n; i++) {
        if (y[i] < 0 || (num_classes > 0 && y[i] >= num_classes)) {
            if (num_classes > 0)
                fprintf(stderr, PROG ": %s: label %d at index %ld outside [0,%d) (--num-classes %d)\n",
                        file, (int)y[i], i, num_classes, num_classes);
            else
                fprintf(stderr, PROG ": %s: negative label %d at index %ld\n", file, (int)y[i], i);
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ fmnist */

static const char *FMNIST_HELP =
    "usage: " PROG " fmnist [--dir DIR] [--out-train FILE] [--out-test FILE]\n"
    "\n"
    "Convert Fashion-MNIST (IDX files, .gz or plain) into two dataset files.\n"
    "  --dir DIR         where the IDX files are (default " FMNIST_DIR ")\n"
    "  --out-train FILE  default runs/fmnist_train.h5 (60000 images)\n"
    "  --out-test FILE   default runs/fmnist_test.h5 (10000 images)\n"
    "The files come with: apt-get install dataset-fashion-mnist\n";

/* dir/name.gz, else dir/name; returns 0 and fills buf if one exists. */
static int find_idx(const char *dir, const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s.gz", dir, name);
    if (access(buf, R_OK) == 0) return 0;
    snprintf(buf, cap, "%s/%s", dir, name);
    if (access(buf, R_OK) == 0) return 0;
    snprintf(buf, cap, "%s/%s.gz", dir, name);
    return -1;
}

static int convert_idx(const char *images, const char *labels, const char *out, int num_classes,
                       const char *source) {
    double t0 = rq_now();
    rq_err err = {0};
    uint8_t *im;
    int32_t *y;
    long n;
    int h, w;
    if (rq_idx_load_pair(images, labels, &im, &y, &n, &h, &w, &err) != RQ_OK) return fail(&err);
    int rc = check_labels(labels, y, n, num_classes);
    if (!rc) {
        rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = n, .c = 1, .h = h, .w = w, .images = im,
                              .labels = y, .num_classes = num_classes, .scale = 1.0,
                              .source = source, .compression = -1};
        rc = write_dataset(out, &src, t0);
    }
    free(im);
    free(y);
    return rc;
}

static int cmd_fmnist(int argc, char **argv) {
    const char *dir = FMNIST_DIR, *out_train = "runs/fmnist_train.h5", *out_test = "runs/fmnist_test.h5";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (is_help(argv[i])) {
            fputs(FMNIST_HELP, stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--dir", "fmnist "))) {
            dir = v;
        } else if ((v = opt_value(argc, argv, &i, "--out-train", "fmnist "))) {
            out_train = v;
        } else if ((v = opt_value(argc, argv, &i, "--out-test", "fmnist "))) {
            out_test = v;
        } else {
            usage_error("fmnist ", "unexpected argument '%s'", argv[i]);
        }
    }
    static const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char paths[4][4096];
    for (int k = 0; k < 4; k++) {
        if (find_idx(dir, names[k], paths[k], sizeof paths[k]) != 0) {
            fprintf(stderr, PROG ": %s: not found; install it with: apt-get install dataset-fashion-mnist\n",
                    paths[k]);
            return 1;
        }
    }
    char src[8192 + 64];
    snprintf(src, sizeof src, "fashion-mnist train: %s, %s", paths[0], paths[1]);
    int rc = convert_idx(paths[0], paths[1], out_train, 10, src);
    if (rc) return rc;
    snprintf(src, sizeof src, "fashion-mnist test: %s, %s", paths[2], paths[3]);
    return convert_idx(paths[2], paths[3], out_test, 10, src);
}

/* ------------------------------------------------------------------ idx */

static const char *IDX_HELP =
    "usage: " PROG " idx IMAGES LABELS OUT.h5 [--num-classes N]\n"
    "\n"
    "Convert an idx3 unsigned-byte images file (N,H,W) and an idx1 labels file\n"
    "(.gz or plain) into a grayscale images dataset.\n"
    "  --num-classes N  number of classes (default: largest label + 1);\n"
    "                   labels must lie in [0, N)\n";

static int cmd_idx(int argc, char **argv) {
    const char *pos[3];
    int npos = 0, nc = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (is_help(argv[i])) {
            fputs(IDX_HELP, stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--num-classes", "idx "))) {
            nc = (int)parse_long(v, "--num-classes", "idx ", 1, 1 << 24);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usage_error("idx ", "unknown option '%s'", argv[i]);
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            usage_error("idx ", "too many arguments ('%s')", argv[i]);
        }
    }
    if (npos != 3) usage_error("idx ", "expected IMAGES LABELS OUT.h5");
    char src[8192 + 16];
    snprintf(src, sizeof src, "idx: %s, %s", pos[0], pos[1]);
    return convert_idx(pos[0], pos[1], pos[2], nc, src);
}

/* ------------------------------------------------------------------ pngdir */

static const char *PNGDIR_HELP =
    "usage: " PROG " pngdir DIR LABELS.txt OUT.h5 [--num-classes N]\n"
    "\n"
    "Convert a folder of PNG images into an images dataset. LABELS.txt has one\n"
    "'filename label' per line (filename relative to DIR; '#' starts a comment).\n"
    "All images must have the same size; gray stays 1 channel, RGB(A) becomes 3\n"
    "(alpha dropped).\n"
    "  --num-classes N  number of classes (default: largest label + 1)\n";

static int cmd_pngdir(int argc, char **argv) {
    const char *pos[3];
    int npos = 0, nc = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (is_help(argv[i])) {
            fputs(PNGDIR_HELP, stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--num-classes", "pngdir "))) {
            nc = (int)parse_long(v, "--num-classes", "pngdir ", 1, 1 << 24);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usage_error("pngdir ", "unknown option '%s'", argv[i]);
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            usage_error("pngdir ", "too many arguments ('%s')", argv[i]);
        }
    }
    if (npos != 3) usage_error("pngdir ", "expected DIR LABELS.txt OUT.h5");
    double t0 = rq_now();
    rq_err err = {0};
    uint8_t *im;
    int32_t *y;
    long n;
    int h, w, c;
    if (rq_pngdir_load(pos[0], pos[1], &im, &y, &n, &h, &w, &c, &err) != RQ_OK) return fail(&err);
    int rc = check_labels(pos[1], y, n, nc);
    if (!rc) {
        char src[8192 + 16];
        snprintf(src, sizeof src, "pngdir: %s, %s", pos[0], pos[1]);
        rq_dataset_src s = {.kind = RQ_DATA_IMAGES, .n = n, .c = c, .h = h, .w = w, .images = im,
                            .labels = y, .num_classes = nc, .scale = 1.0, .source = src,
                            .compression = -1};
        rc = write_dataset(pos[2], &s, t0);
    }
    free(im);
    free(y);
    return rc;
}

/* ------------------------------------------------------------------ npy */

static const char *NPY_HELP =
    "usage: " PROG " npy LATENTS LABELS OUT.h5 [--scale S] [--num-classes N]\n"
    "       " PROG " npy ARCHIVE.npz OUT.h5 [--latents-key K] [--labels-key K] [--scale S] [--num-classes N]\n"
    "\n"
    "Convert VAE latents (N,C,H,W; dtype f2/f4/f8) and integer labels (N) into a\n"
    "latents dataset. LATENTS and LABELS are each\n"
    "  FILE.npy           one array (numpy.save)\n"
    "  ARCHIVE.npz:NAME   a member of an .npz archive (numpy.savez, stored, or\n"
    "                     numpy.savez_compressed, deflated)\n"
    "  DIR                a folder of per-sample files 0.npy, 1.npy, ... concatenated\n"
    "                     in index order, each (C,H,W) / (k,C,H,W) resp. () / (k,):\n"
    "                     fast-DiT's extract_features.py writes imagenet256_features/\n"
    "                     (1,4,32,32) and imagenet256_labels/ (1,)\n"
    "With a single ARCHIVE.npz both arrays come from it: latents from the member\n"
    "--latents-key (default: the first of latents, features, x, arr_0), labels\n"
    "from --labels-key (default: labels, y, arr_1).\n"
    "The latents are stored as given; the loader multiplies them by S.\n"
    "  --scale S        latent scale factor. Default 0.18215 (the SD VAE) for files;\n"
    "                   1 for folders, because fast-DiT saves its features already\n"
    "                   multiplied by 0.18215. A warning is printed when the scaled\n"
    "                   latents' std is far from 1.\n"
    "  --num-classes N  number of classes (default: largest label + 1)\n";

/* latents (N,C,H,W) as float, or labels (N) as int, from a file, archive member
 * or per-sample folder. */
static rq_status load_array(const char *spec, int labels, void **data, rq_npy_header *h, rq_err *err) {
    struct stat sb;
    if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode))
        return labels ? rq_npy_dir_read_i32(spec, 0, (int32_t **)data, h, err)
                      : rq_npy_dir_read_f32(spec, 3, (float **)data, h, err);
    return labels ? rq_npy_load_i32(spec, (int32_t **)data, h, err) : rq_npy_load_f32(spec, (float **)data, h, err);
}

/* "ARCHIVE.npz" -> "ARCHIVE.npz:KEY" with KEY the given one or the first
 * default name the archive has. */
static int npz_spec(const char *archive, const char *key, const char *const *defaults, int nd, char *out,
                    size_t cap, rq_err *err) {
    if (key) {
        snprintf(out, cap, "%s:%s", archive, key);
        return 0;
    }
    rq_npz z;
    if (rq_npz_open(archive, &z, err) != RQ_OK) return -1;
    for (int i = 0; i < nd; i++)
        if (rq_npz_find(&z, defaults[i])) {
            snprintf(out, cap, "%s:%s", archive, defaults[i]);
            rq_npz_close(&z);
            return 0;
        }
    char list[256] = "";
    size_t k = 0;
    for (int i = 0; i < z.n && k < sizeof list - 1; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", z.members[i].name);
    rq_err_set(err, RQ_EFORMAT, "%s: none of the members (%s) is named %s or %s...: give --%s-key", archive,
               z.n ? list : "none", defaults[0], defaults[1], nd == 4 ? "latents" : "labels");
    rq_npz_close(&z);
    return -1;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int cmd_npy(int argc, char **argv) {
    const char *pos[3], *lat_key = NULL, *lab_key = NULL;
    int npos = 0, nc = 0, scale_given = 0;
    double scale = 0.18215;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (is_help(argv[i])) {
            fputs(NPY_HELP, stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--num-classes", "npy "))) {
            nc = (int)parse_long(v, "--num-classes", "npy ", 1, 1 << 24);
        } else if ((v = opt_value(argc, argv, &i, "--scale", "npy "))) {
            scale = parse_double(v, "--scale", "npy ");
            scale_given = 1;
        } else if ((v = opt_value(argc, argv, &i, "--latents-key", "npy "))) {
            lat_key = v;
        } else if ((v = opt_value(argc, argv, &i, "--labels-key", "npy "))) {
            lab_key = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usage_error("npy ", "unknown option '%s'", argv[i]);
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            usage_error("npy ", "too many arguments ('%s')", argv[i]);
        }
    }
    char lat_spec[4200], lab_spec[4200];
    const char *out;
    rq_err err = {0};
    if (npos == 2 && ends_with(pos[0], ".npz")) {
        static const char *lat_def[] = {"latents", "features", "x", "arr_0"}, *lab_def[] = {"labels", "y", "arr_1"};
        if (npz_spec(pos[0], lat_key, lat_def, 4, lat_spec, sizeof lat_spec, &err) ||
            npz_spec(pos[0], lab_key, lab_def, 3, lab_spec, sizeof lab_spec, &err))
            return fail(&err);
        out = pos[1];
    } else if (npos == 3) {
        if (lat_key || lab_key) usage_error("npy ", "--latents-key / --labels-key go with a single ARCHIVE.npz");
        snprintf(lat_spec, sizeof lat_spec, "%s", pos[0]);
        snprintf(lab_spec, sizeof lab_spec, "%s", pos[1]);
        out = pos[2];
    } else {
        usage_error("npy ", "expected LATENTS LABELS OUT.h5 or ARCHIVE.npz OUT.h5");
    }
    struct stat sb;
    int from_dir = stat(lat_spec, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (from_dir && !scale_given) scale = 1.0; /* fast-DiT features are pre-scaled */
    double t0 = rq_now();
    float *x = NULL;
    int32_t *y = NULL;
    rq_npy_header hx, hy;
    int rc = 1;
    if (load_array(lat_spec, 0, (void **)&x, &hx, &err) != RQ_OK) return fail(&err);
    if (hx.ndim != 4 || hx.shape[0] < 1 || hx.shape[1] < 1 || hx.shape[2] < 1 || hx.shape[3] < 1) {
        fprintf(stderr, PROG ": %s: latents must have shape (N,C,H,W), got %d dims\n", lat_spec, hx.ndim);
        goto done;
    }
    if (load_array(lab_spec, 1, (void **)&y, &hy, &err) != RQ_OK) {
        rc = fail(&err);
        goto done;
    }
    if (hy.ndim != 1 || hy.shape[0] != hx.shape[0]) {
        fprintf(stderr, PROG ": %s: labels must have shape (%ld,) to match %s\n", lab_spec, hx.shape[0], lat_spec);
        goto done;
    }
    if (check_labels(lab_spec, y, hy.shape[0], nc)) goto done;
    double sum = 0, sum2 = 0;
    for (long i = 0; i < hx.numel; i++) {
        if (!isfinite(x[i])) {
            fprintf(stderr, PROG ": %s: non-finite value at flat index %ld\n", lat_spec, i);
            goto done;
        }
        sum += x[i];
        sum2 += (double)x[i] * x[i];
    }
    double mean = sum / (double)hx.numel, sd = sqrt(fmax(sum2 / (double)hx.numel - mean * mean, 0.0)) * scale;
    if (hx.numel > 1 && (sd < 0.3 || sd > 3.0))
        fprintf(stderr, PROG ": warning: latents * %g have std %.3g (about 1 expected): %s\n", scale, sd,
                sd < 0.3 ? "already-scaled latents (fast-DiT features) need --scale 1"
                         : "raw SD-VAE latents need --scale 0.18215");
    char src[8500];
    snprintf(src, sizeof src, "npy: %s, %s", lat_spec, lab_spec);
    rq_dataset_src s = {.kind = RQ_DATA_LATENTS, .n = hx.shape[0], .c = (int)hx.shape[1],
                        .h = (int)hx.shape[2], .w = (int)hx.shape[3], .latents = x, .labels = y,
                        .num_classes = nc, .scale = scale, .source = src, .compression = -1};
    rc = write_dataset(out, &s, t0);
    if (!rc) printf("%s: latent scale %g (std of scaled latents %.3g)\n", out, scale, sd);
done:
    free(x);
    free(y);
    return rc;
}

/* ------------------------------------------------------------------ info */

static const char *INFO_HELP =
    "usage: " PROG " info FILE.h5\n"
    "\n"
    "Describe a dataset file: kind, sample count, shape, classes, label\n"
    "histogram, and the mean/std of the stored values and of the normalised\n"
    "values the model sees.\n";

static int cmd_info(int argc, char **argv) {
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(INFO_HELP, stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usage_error("info ", "unknown option '%s'", argv[i]);
        } else if (!file) {
            file = argv[i];
        } else {
            usage_error("info ", "too many arguments ('%s')", argv[i]);
        }
    }
    if (!file) usage_error("info ", "expected FILE.h5");
    rq_err err = {0};
    rq_dataset ds;
    if (rq_dataset_load(file, &ds, &err) != RQ_OK) return fail(&err);
    char source[1024] = "", format[64] = "";
    int64_t version = 0;
    rq_h5_reader *r = rq_h5r_open(file, &err);
    if (r) {
        rq_err ig = {0};
        if (rq_h5r_get_str(r, NULL, "source", source, sizeof source, &ig) != RQ_OK) source[0] = '\0';
        if (rq_h5r_get_str(r, NULL, "format", format, sizeof format, &ig) != RQ_OK) format[0] = '\0';
        if (rq_h5r_get_i64(r, NULL, "version", &version, &ig) != RQ_OK) version = 0;
        rq_h5r_close(r);
    }
    const long per = rq_dataset_sample_size(&ds), total = ds.n * per;
    double sum = 0, sq = 0;
    for (long i = 0; i < total; i++) {
        sum += ds.x[i];
        sq += (double)ds.x[i] * ds.x[i];
    }
    double mean = sum / (double)total, var = sq / (double)total - mean * mean;
    double sd = sqrt(var > 0 ? var : 0);
    const int images = ds.kind == RQ_DATA_IMAGES;
    /* Undo the normalisation to report the stored values too. */
    double raw_mean = images ? (mean + 1.0) * 127.5 : mean / ds.scale;
    double raw_sd = images ? sd * 127.5 : sd / ds.scale;

    printf("file:        %s\n", file);
    printf("format:      %s v%lld\n", format[0] ? format : "(none)", (long long)version);
    if (source[0]) printf("source:      %s\n", source);
    printf("kind:        %s\n", images ? "images (uint8 N,H,W,C)" : "latents (float32 N,C,H,W)");
    printf("samples:     %ld\n", ds.n);
    printf("shape:       %d x %d x %d (C x H x W)\n", ds.c, ds.h, ds.w);
    printf("classes:     %d\n", ds.num_classes);
    printf("scale:       %g\n", ds.scale);
    printf("stored:      mean %.4f  std %.4f\n", raw_mean, raw_sd);
    printf("normalised:  mean %.4f  std %.4f  (%s)\n", mean, sd, images ? "x/127.5 - 1" : "x * scale");
    long *hist = calloc((size_t)ds.num_classes, sizeof *hist);
    if (!hist) {
        rq_dataset_free(&ds);
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    for (long i = 0; i < ds.n; i++) hist[ds.labels[i]]++;
    if (ds.num_classes <= 32) {
        printf("labels:     ");
        for (int k = 0; k < ds.num_classes; k++) printf(" %d:%ld", k, hist[k]);
        printf("\n");
    } else {
        long lo = hist[0], hi = hist[0];
        int empty = 0;
        for (int k = 0; k < ds.num_classes; k++) {
            if (hist[k] < lo) lo = hist[k];
            if (hist[k] > hi) hi = hist[k];
            empty += hist[k] == 0;
        }
        printf("labels:      per class min %ld max %ld, %d empty classes\n", lo, hi, empty);
    }
    free(hist);
    rq_dataset_free(&ds);
    return 0;
}

/* ------------------------------------------------------------------ main */

static const char *MAIN_HELP =
    "usage: " PROG " COMMAND [ARGS] (each command has --help)\n"
    "\n"
    "Build RobuQ dataset files (HDF5: /images uint8 N,H,W,C or /latents float32\n"
    "N,C,H,W, /labels int32 N, attributes kind, num_classes, scale).\n"
    "\n"
    "commands:\n"
    "  fmnist [--dir D] [--out-train F] [--out-test F]   Fashion-MNIST (Debian\n"
    "                                                     package dataset-fashion-mnist)\n"
    "  idx IMAGES LABELS OUT.h5 [--num-classes N]         IDX files (.gz or plain)\n"
    "  pngdir DIR LABELS.txt OUT.h5 [--num-classes N]     folder of PNGs + labels list\n"
    "  npy LATENTS LABELS OUT.h5 [--scale S] [--num-classes N]\n"
    "                                                     latents + labels from .npy files,\n"
    "                                                     .npz members or fast-DiT folders\n"
    "  npy ARCHIVE.npz OUT.h5 [--latents-key K] [--labels-key K]   both from one .npz\n"
    "  info FILE.h5                                       describe a dataset file\n"
    "\n"
    "Exit status: 0 ok, 1 file or data error, 2 usage error.\n";

int main(int argc, char **argv) {
    if (argc < 2) usage_error(NULL, "missing command");
    if (is_help(argv[1])) {
        fputs(MAIN_HELP, stdout);
        return 0;
    }
    install_signals();
    rq_log_set_level(RQ_LOG_WARN);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "fmnist")) return cmd_fmnist(argc - 1, argv + 1);
    if (!strcmp(cmd, "idx")) return cmd_idx(argc - 1, argv + 1);
    if (!strcmp(cmd, "pngdir")) return cmd_pngdir(argc - 1, argv + 1);
    if (!strcmp(cmd, "npy")) return cmd_npy(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    usage_error(NULL, "unknown command '%s'", cmd);
    return 2;
}
