/* test_data.c: IDX / npy / PNG-folder importers, dataset files, the batch
 * loader, the robuq-data tool, and (when installed) real Fashion-MNIST. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "robuq/dataset.h"
#include "robuq/h5io.h"
#include "robuq/image.h"
#include "robuq/npy.h"
#include "testutil.h"

#ifndef ROBUQ_BIN_DIR
#define ROBUQ_BIN_DIR "."
#endif
#define FMNIST "/usr/share/datasets/fashion-mnist"

/* ------------------------------------------------------------------ helpers */
typedef tu_dir fixture;
static char *fpath(void **state, const char *name, char *buf) {
    snprintf(buf, 512, "%s/%s", ((fixture *)*state)->dir, name);
    return buf;
}
static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}
/* IDX bytes: header + data; gz != 0 writes gzip. Returns total length. */
static long write_idx(const char *path, int ndim, const long *dims, const uint8_t *data, int gz) {
    unsigned char hdr[20] = {0, 0, 0x08, (unsigned char)ndim};
    long total = 1;
    for (int i = 0; i < ndim; i++) {
        put_be32(hdr + 4 + 4 * i, (uint32_t)dims[i]);
        total *= dims[i];
    }
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, hdr, 4 + 4 * ndim);
        gzwrite(f, data, (unsigned)total);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(hdr, 1, 4 + 4 * ndim, f);
        fwrite(data, 1, (size_t)total, f);
        fclose(f);
    }
    return 4 + 4 * ndim + total;
}
static void truncate_file(const char *path, long drop) {
    struct stat st;
    stat(path, &st);
    assert_int_equal(truncate(path, st.st_size - drop), 0);
}
/* .npy v1 (or v2) file with the given header fields. */
static void write_npy(const char *path, const char *descr, const char *fortran, const char *shape,
                      const void *data, size_t bytes, int version) {
    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                      fortran, shape);
    int pre = version == 1 ? 10 : 12;
    int total = ((pre + dl + 1 + 63) / 64) * 64;
    int hlen = total - pre;
    FILE *f = fopen(path, "wb");
    fwrite("\x93NUMPY", 1, 6, f);
    unsigned char v[6] = {(unsigned char)version, 0, (unsigned char)hlen, (unsigned char)(hlen >> 8), 0, 0};
    fwrite(v, 1, version == 1 ? 4 : 6, f);
    fwrite(dict, 1, (size_t)dl, f);
    for (int i = dl; i < hlen - 1; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, bytes, f);
    fclose(f);
}
static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Synthetic images: pixel value encodes (sample, y, x). */
enum { NI = 7, IH = 5, IW = 4 };
static void make_images(uint8_t *im, int32_t *lb, uint8_t *lb8) {
    for (int i = 0; i < NI; i++) {
        for (int p = 0; p < IH * IW; p++) im[i * IH * IW + p] = (uint8_t)(i * 31 + p * 3);
        lb[i] = i % 3;
        if (lb8) lb8[i] = (uint8_t)(i % 3);
    }
}

/* ------------------------------------------------------------------ IDX */
static void test_idx_roundtrip(void **state) {
    uint8_t im[NI * IH * IW], lb8[NI];
    int32_t lb[NI];
    make_images(im, lb, lb8);
    long di[3] = {NI, IH, IW}, dl[1] = {NI};
    char pi[512], pl[512], pig[512], plg[512], out[512];
    write_idx(fpath(state, "img.idx3", pi), 3, di, im, 0);
    write_idx(fpath(state, "lab.idx1", pl), 1, dl, lb8, 0);
    write_idx(fpath(state, "img.idx3.gz", pig), 3, di, im, 1);
    write_idx(fpath(state, "lab.idx1.gz", plg), 1, dl, lb8, 1);
    for (int gz = 0; gz < 2; gz++) {
        rq_err err = {0};
        uint8_t *x;
        int32_t *y;
        long n;
        int h, w;
        assert_int_equal(rq_idx_load_pair(gz ? pig : pi, gz ? plg : pl, &x, &y, &n, &h, &w, &err), RQ_OK);
        assert_int_equal(n, NI);
        assert_int_equal(h, IH);
        assert_int_equal(w, IW);
        assert_memory_equal(x, im, sizeof im);
        assert_memory_equal(y, lb, sizeof lb);
        /* convert and load back: normalisation x/127.5 - 1 */
        rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = n, .c = 1, .h = h, .w = w, .images = x,
                              .labels = y, .num_classes = 0, .source = "test", .compression = -1};
        assert_int_equal(rq_dataset_write(fpath(state, "ds.h5", out), &src, &err), RQ_OK);
        free(x);
        free(y);
        rq_dataset ds;
        assert_int_equal(rq_dataset_load(out, &ds, &err), RQ_OK);
        assert_int_equal(ds.kind, RQ_DATA_IMAGES);
        assert_true(ds.n == NI && ds.c == 1 && ds.h == IH && ds.w == IW);
        assert_int_equal(ds.num_classes, 3); /* max label + 1 */
        assert_true(ds.scale == 1.0);
        for (int i = 0; i < NI * IH * IW; i++) assert_true(fabsf(ds.x[i] - (im[i] / 127.5f - 1.0f)) < 1e-6f);
        assert_memory_equal(ds.labels, lb, sizeof lb);
        rq_dataset_free(&ds);
        assert_null(ds.x);
    }
    /* the written file has the documented attributes */
    rq_err err = {0};
    rq_h5_reader *r = rq_h5r_open(out, &err);
    char s[64];
    int64_t v;
    assert_int_equal(rq_h5r_get_str(r, NULL, "format", s, sizeof s, &err), RQ_OK);
    assert_string_equal(s, "robuq-dataset");
    assert_int_equal(rq_h5r_get_str(r, NULL, "kind", s, sizeof s, &err), RQ_OK);
    assert_string_equal(s, "images");
    assert_int_equal(rq_h5r_get_i64(r, NULL, "version", &v, &err), RQ_OK);
    assert_int_equal(v, 1);
    long shape[4] = {NI, IH, IW, 1};
    assert_int_equal(rq_h5r_check_shape(r, "/images", 4, shape, &err), RQ_OK);
    rq_h5r_close(r);
}

static void test_idx_errors(void **state) {
    uint8_t im[NI * IH * IW], lb8[NI];
    int32_t lb[NI];
    make_images(im, lb, lb8);
    long di[3] = {NI, IH, IW}, dl[1] = {NI}, dl6[1] = {NI - 1};
    char p[512], q[512];
    rq_err err = {0};
    int nd;
    long dims[4];
    uint8_t *data;

    /* truncated raw file: names the file, expected vs actual size */
    long len = write_idx(fpath(state, "trunc.idx3", p), 3, di, im, 0);
    truncate_file(p, 5);
    assert_int_equal(rq_idx_read(p, &nd, dims, &data, &err), RQ_EFORMAT);
    char want[256];
    snprintf(want, sizeof want, "truncated: expected %ld bytes", len);
    assert_true(contains(err.msg, p));
    assert_true(contains(err.msg, want));
    snprintf(want, sizeof want, "got %ld", len - 5);
    assert_true(contains(err.msg, want));
    assert_null(data);

    /* truncated gzip: an error naming the file (zlib may call it either) */
    rq_err_clear(&err);
    write_idx(fpath(state, "trunc.idx3.gz", p), 3, di, im, 1);
    truncate_file(p, 12);
    assert_int_equal(rq_idx_read(p, &nd, dims, &data, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, p));

    /* trailing bytes */
    rq_err_clear(&err);
    write_idx(fpath(state, "long.idx3", p), 3, di, im, 0);
    FILE *f = fopen(p, "ab");
    fputc(0, f);
    fclose(f);
    assert_int_equal(rq_idx_read(p, &nd, dims, &data, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "unexpected data"));

    /* bad magic, unsupported type */
    rq_err_clear(&err);
    f = fopen(fpath(state, "magic.idx", p), "wb");
    fputs("hello world, not idx", f);
    fclose(f);
    assert_int_equal(rq_idx_read(p, &nd, dims, &data, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "not an IDX file"));
    rq_err_clear(&err);
    f = fopen(fpath(state, "float.idx", p), "wb");
    fwrite("\0\0\x0d\x01\0\0\0\x01\0\0\0\0", 1, 12, f);
    fclose(f);
    assert_int_equal(rq_idx_read(p, &nd, dims, &data, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "0x0d not supported"));

    /* label count mismatch, missing file */
    rq_err_clear(&err);
    write_idx(fpath(state, "i.idx3", p), 3, di, im, 0);
    write_idx(fpath(state, "l6.idx1", q), 1, dl6, lb8, 0);
    uint8_t *x;
    int32_t *y;
    long n;
    int h, w;
    assert_int_equal(rq_idx_load_pair(p, q, &x, &y, &n, &h, &w, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "6 labels but"));
    assert_null(x);
    rq_err_clear(&err);
    write_idx(fpath(state, "l.idx1", q), 1, dl, lb8, 0);
    assert_int_equal(rq_idx_load_pair(q, q, &x, &y, &n, &h, &w, &err), RQ_EFORMAT); /* labels as images */
    assert_true(contains(err.msg, "idx3"));
    rq_err_clear(&err);
    assert_int_equal(rq_idx_read(fpath(state, "nope.idx", p), &nd, dims, &data, &err), RQ_EIO);
    assert_true(contains(err.msg, p));
}

/* ------------------------------------------------------------------ npy */
static void test_npy(void **state) {
    char p[512], q[512], out[512];
    rq_err err = {0};
    enum { N = 3, C = 2, H = 3, W = 4, T = N * C * H * W };
    float lat[T];
    for (int i = 0; i < T; i++) lat[i] = (float)i * 0.25f - 5.0f;
    int64_t lab[N] = {2, 0, 4};
    write_npy(fpath(state, "lat.npy", p), "<f4", "False", "(3, 2, 3, 4)", lat, sizeof lat, 1);
    write_npy(fpath(state, "lab.npy", q), "<i8", "False", "(3,)", lab, sizeof lab, 2);

    float *x;
    int32_t *y;
    rq_npy_header h;
    assert_int_equal(rq_npy_read_f32(p, &x, &h, &err), RQ_OK);
    assert_int_equal(h.ndim, 4);
    assert_true(h.shape[0] == N && h.shape[1] == C && h.shape[2] == H && h.shape[3] == W);
    assert_memory_equal(x, lat, sizeof lat);
    assert_int_equal(rq_npy_read_i32(q, &y, &h, &err), RQ_OK);
    assert_int_equal(h.ndim, 1);
    assert_true(y[0] == 2 && y[1] == 0 && y[2] == 4);

    /* latents dataset: stored unscaled, loaded * scale */
    rq_dataset_src src = {.kind = RQ_DATA_LATENTS, .n = N, .c = C, .h = H, .w = W, .latents = x,
                          .labels = y, .num_classes = 5, .scale = 0.5, .compression = -1};
    assert_int_equal(rq_dataset_write(fpath(state, "lat.h5", out), &src, &err), RQ_OK);
    rq_dataset ds;
    assert_int_equal(rq_dataset_load(out, &ds, &err), RQ_OK);
    assert_int_equal(ds.kind, RQ_DATA_LATENTS);
    assert_true(ds.n == N && ds.c == C && ds.h == H && ds.w == W && ds.num_classes == 5);
    for (int i = 0; i < T; i++) assert_true(ds.x[i] == lat[i] * 0.5f);
    rq_dataset_free(&ds);
    /* first-k subset */
    assert_int_equal(rq_dataset_load_n(out, 2, &ds, &err), RQ_OK);
    assert_int_equal(ds.n, 2);
    assert_true(ds.labels[1] == 0 && ds.x[C * H * W] == lat[C * H * W] * 0.5f);
    rq_dataset_free(&ds);
    free(x);
    free(y);

    /* other dtypes convert */
    double d[3] = {1.5, -2.25, 1e10};
    write_npy(p, "<f8", "False", "(3,)", d, sizeof d, 1);
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_OK);
    assert_true(x[0] == 1.5f && x[1] == -2.25f && x[2] == 1e10f);
    free(x);
    uint16_t hf[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00};
    write_npy(p, "<f2", "False", "(2, 3)", hf, sizeof hf, 1);
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_OK);
    assert_true(x[0] == 1.0f && x[1] == -2.0f && x[2] == 0.5f && x[3] == 65504.0f);
    assert_true(x[4] == ldexpf(1.0f, -24) && isinf(x[5]));
    free(x);
    uint8_t u[4] = {0, 9, 200, 255};
    write_npy(p, "|u1", "False", "(4,)", u, sizeof u, 1);
    assert_int_equal(rq_npy_read_i32(p, &y, NULL, &err), RQ_OK);
    assert_true(y[2] == 200 && y[3] == 255);
    free(y);
    assert_int_equal(err.code, RQ_OK);

    /* errors */
    int64_t huge[1] = {(int64_t)1 << 40};
    write_npy(p, "<i8", "False", "(1,)", huge, sizeof huge, 1);
    assert_int_equal(rq_npy_read_i32(p, &y, NULL, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "does not fit"));
    rq_err_clear(&err);
    write_npy(p, "<f4", "False", "(3,)", lat, sizeof(float) * 3, 1);
    assert_int_equal(rq_npy_read_i32(p, &y, NULL, &err), RQ_EFORMAT); /* float as labels */
    assert_true(contains(err.msg, "not an integer"));
    rq_err_clear(&err);
    write_npy(p, "<f4", "True", "(3, 2)", lat, sizeof(float) * 6, 1);
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "fortran_order"));
    rq_err_clear(&err);
    write_npy(p, "<c8", "False", "(3,)", lat, sizeof(float) * 6, 1);
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "'<c8' not supported"));
    rq_err_clear(&err);
    write_npy(p, ">f4", "False", "(3,)", lat, sizeof(float) * 3, 1);
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "big-endian"));
    rq_err_clear(&err);
    write_npy(p, "<f4", "False", "(2, 3)", lat, sizeof(float) * 5, 1); /* one float short */
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, p));
    assert_true(contains(err.msg, "truncated: expected 24 bytes of data, file has 20"));
    assert_null(x);
    rq_err_clear(&err);
    FILE *f = fopen(p, "wb");
    fwrite("PK\x03\x04zipzipzip", 1, 13, f);
    fclose(f);
    assert_int_equal(rq_npy_read_f32(p, &x, NULL, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "this is an .npz archive: give ARCHIVE.npz:NAME"));
}

/* ------------------------------------------------------------------ dataset file */
static void test_dataset_validation(void **state) {
    char p[512];
    rq_err err = {0};
    uint8_t im[2 * 2 * 2 * 3];
    for (int i = 0; i < 24; i++) im[i] = (uint8_t)(i * 10);
    int32_t lb[2] = {0, 3};
    /* label outside [0, num_classes): refused at write, nothing written */
    rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = 2, .c = 3, .h = 2, .w = 2, .images = im,
                          .labels = lb, .num_classes = 3, .compression = 0};
    assert_int_equal(rq_dataset_write(fpath(state, "bad.h5", p), &src, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "label 3 at index 1 outside [0,3)"));
    assert_false(file_exists(p));

    /* RGB: NHWC file -> NCHW memory */
    rq_err_clear(&err);
    src.num_classes = 4;
    assert_int_equal(rq_dataset_write(fpath(state, "rgb.h5", p), &src, &err), RQ_OK);
    rq_dataset ds;
    assert_int_equal(rq_dataset_load(p, &ds, &err), RQ_OK);
    assert_int_equal(ds.c, 3);
    for (int i = 0; i < 2; i++)
        for (int px = 0; px < 4; px++)
            for (int c = 0; c < 3; c++)
                assert_true(ds.x[i * 12 + c * 4 + px] == im[i * 12 + px * 3 + c] / 127.5f - 1.0f);
    rq_dataset_free(&ds);

    /* hand-made files with problems the loader must catch */
    struct {
        const char *name, *expect;
        int bad_label, no_nc, latents_no_scale, bad_kind, short_labels;
    } cases[] = {
        {"label.h5", "label 7 at index 1 outside [0,4)", 1, 0, 0, 0, 0},
        {"nc.h5", "missing attribute 'num_classes' in", 0, 1, 0, 0, 0},
        {"scale.h5", "missing attribute 'scale' in", 0, 0, 1, 0, 0},
        {"kind.h5", "kind is 'pictures'", 0, 0, 0, 1, 0},
        {"short.h5", "/labels must have shape [2]", 0, 0, 0, 0, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rq_err_clear(&err);
        fpath(state, cases[k].name, p);
        rq_h5_writer *w = rq_h5w_open(p, &err);
        float lat[2 * 3 * 4];
        for (int i = 0; i < 24; i++) lat[i] = (float)i;
        int32_t l2[2] = {1, cases[k].bad_label ? 7 : 2};
        long sh4[4] = {2, 3, 2, 2}, sh1 = cases[k].short_labels ? 1 : 2;
        if (cases[k].latents_no_scale) {
            rq_h5w_write_f32(w, "/latents", lat, 4, sh4, &err);
            rq_h5w_attr_str(w, NULL, "kind", "latents", &err);
        } else {
            long shi[4] = {2, 2, 2, 3};
            rq_h5w_write_u8(w, "/images", im, 4, shi, &err);
            rq_h5w_attr_str(w, NULL, "kind", cases[k].bad_kind ? "pictures" : "images", &err);
        }
        rq_h5w_write_i32(w, "/labels", l2, 1, &sh1, &err);
        if (!cases[k].no_nc) rq_h5w_attr_i64(w, NULL, "num_classes", 4, &err);
        assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
        assert_int_not_equal(rq_dataset_load(p, &ds, &err), RQ_OK);
        if (!contains(err.msg, cases[k].expect)) fail_msg("'%s' lacks '%s'", err.msg, cases[k].expect);
        assert_true(contains(err.msg, p));
        assert_null(ds.x);
    }
    /* without kind/format attributes, the kind is inferred from /images */
    rq_err_clear(&err);
    rq_h5_writer *w = rq_h5w_open(fpath(state, "plain.h5", p), &err);
    long shi[4] = {2, 2, 2, 3}, sh1 = 2;
    int32_t l2[2] = {0, 1};
    rq_h5w_write_u8(w, "/images", im, 4, shi, &err);
    rq_h5w_write_i32(w, "/labels", l2, 1, &sh1, &err);
    rq_h5w_attr_i64(w, NULL, "num_classes", 2, &err);
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
    assert_int_equal(rq_dataset_load(p, &ds, &err), RQ_OK);
    assert_int_equal(ds.kind, RQ_DATA_IMAGES);
    rq_dataset_free(&ds);
    /* not HDF5 at all */
    FILE *f = fopen(fpath(state, "x.h5", p), "w");
    fputs("nope", f);
    fclose(f);
    assert_int_equal(rq_dataset_load(p, &ds, &err), RQ_EFORMAT);
}

/* ------------------------------------------------------------------ loader */
/* Sample i has all pixels = i + 0.01*x (x = column), label i % 4, so a
 * batch reveals which samples it holds and whether they were flipped. */
static void make_seq_dataset(rq_dataset *ds, long n) {
    memset(ds, 0, sizeof *ds);
    ds->kind = RQ_DATA_IMAGES;
    ds->n = n, ds->c = 2, ds->h = 2, ds->w = 3, ds->num_classes = 4, ds->scale = 1.0;
    ds->x = rq_malloc(sizeof(float) * (size_t)(n * 12));
    ds->labels = rq_malloc(sizeof(int32_t) * (size_t)n);
    for (long i = 0; i < n; i++) {
        for (int p = 0; p < 12; p++) ds->x[i * 12 + p] = (float)i + 0.01f * (float)(p % 3);
        ds->labels[i] = (int32_t)(i % 4);
    }
}

static void test_loader(void **state) {
    (void)state;
    rq_dataset ds;
    const long N = 10;
    make_seq_dataset(&ds, N);
    rq_err err = {0};
    rq_loader a, b;
    assert_int_equal(rq_loader_init(&a, &ds, 1234, 1, 0, &err), RQ_OK);
    assert_int_equal(rq_loader_init(&b, &ds, 1234, 1, 0, &err), RQ_OK);
    float xa[5 * 12], xb[5 * 12];
    int32_t ya[5], yb[5];
    /* each epoch is a permutation; same seed -> same stream */
    int seen[2][10] = {{0}}, order[2][10];
    int identity = 1;
    for (int k = 0; k < 4; k++) {
        assert_int_equal(rq_loader_next(&a, xa, ya, 5), RQ_OK);
        assert_int_equal(rq_loader_next(&b, xb, yb, 5), RQ_OK);
        assert_memory_equal(xa, xb, sizeof xa);
        assert_memory_equal(ya, yb, sizeof ya);
        for (int j = 0; j < 5; j++) {
            int idx = (int)xa[j * 12];
            assert_int_equal(ya[j], idx % 4);
            seen[k / 2][idx]++;
            order[k / 2][(k % 2) * 5 + j] = idx;
            identity &= idx == (k % 2) * 5 + j;
        }
    }
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 10; i++) assert_int_equal(seen[e][i], 1);
    assert_false(identity);
    assert_memory_not_equal(order[0], order[1], sizeof order[0]); /* reshuffled each epoch */
    assert_int_equal(a.epoch, 1);
    /* a different seed gives a different order */
    rq_loader c;
    assert_int_equal(rq_loader_init(&c, &ds, 99, 1, 0, &err), RQ_OK);
    float xc[10 * 12], xa10[10 * 12];
    rq_loader_free(&b);
    assert_int_equal(rq_loader_init(&b, &ds, 1234, 1, 0, &err), RQ_OK);
    rq_loader_next(&c, xc, NULL, 10);
    rq_loader_next(&b, xa10, NULL, 10);
    assert_memory_not_equal(xc, xa10, sizeof xc);
    rq_loader_free(&c);
    /* no shuffle: dataset order, batches straddling epochs */
    assert_int_equal(rq_loader_init(&c, &ds, 5, 0, 0, &err), RQ_OK);
    float xs[7 * 12];
    rq_loader_next(&c, xs, NULL, 7);
    rq_loader_next(&c, xs, NULL, 7);
    int expect[7] = {7, 8, 9, 0, 1, 2, 3};
    for (int j = 0; j < 7; j++) assert_int_equal((int)xs[j * 12], expect[j]);
    rq_loader_free(&c);

    /* save after 3 odd-sized batches, restore into a fresh loader, continue */
    rq_loader_free(&a);
    rq_loader_free(&b);
    assert_int_equal(rq_loader_init(&a, &ds, 777, 1, 1, &err), RQ_OK);
    float big[7 * 12], big2[7 * 12];
    int32_t yy[7], yy2[7];
    for (int k = 0; k < 3; k++) rq_loader_next(&a, big, yy, 7);
    int64_t st[RQ_LOADER_STATE_LEN];
    rq_loader_get_state(&a, st);
    assert_int_equal(rq_loader_init(&b, &ds, 1, 1, 1, &err), RQ_OK); /* seed comes from the state */
    assert_int_equal(rq_loader_set_state(&b, st, &err), RQ_OK);
    for (int k = 0; k < 6; k++) {
        rq_loader_next(&a, big, yy, 7);
        rq_loader_next(&b, big2, yy2, 7);
        assert_memory_equal(big, big2, sizeof big);
        assert_memory_equal(yy, yy2, sizeof yy);
    }
    /* mismatched state is refused */
    rq_loader c2;
    assert_int_equal(rq_loader_init(&c2, &ds, 777, 1, 0, &err), RQ_OK);
    assert_int_equal(rq_loader_set_state(&c2, st, &err), RQ_EINVAL);
    assert_true(contains(err.msg, "flip"));
    rq_loader_free(&c2);
    rq_dataset small;
    make_seq_dataset(&small, 9);
    rq_err_clear(&err);
    assert_int_equal(rq_loader_init(&c2, &small, 777, 1, 1, &err), RQ_OK);
    assert_int_equal(rq_loader_set_state(&c2, st, &err), RQ_EINVAL);
    assert_true(contains(err.msg, "10 samples"));
    st[0] = 0;
    rq_err_clear(&err);
    assert_int_equal(rq_loader_set_state(&c2, st, &err), RQ_EFORMAT);
    rq_loader_free(&c2);
    rq_dataset_free(&small);
    assert_int_equal(rq_loader_next(&a, big, yy, 0), RQ_EINVAL);
    assert_int_equal(rq_loader_next(NULL, big, yy, 1), RQ_EINVAL);
    rq_loader_free(&a);
    rq_loader_free(&b);
    rq_dataset_free(&ds);
}

static void test_loader_flip(void **state) {
    (void)state;
    rq_dataset ds;
    make_seq_dataset(&ds, 50);
    rq_err err = {0};
    rq_loader l, nf;
    assert_int_equal(rq_loader_init(&l, &ds, 42, 1, 1, &err), RQ_OK);
    assert_int_equal(rq_loader_init(&nf, &ds, 42, 1, 0, &err), RQ_OK);
    float x[100 * 12], y[100 * 12];
    rq_loader_next(&l, x, NULL, 100);
    rq_loader_next(&nf, y, NULL, 100);
    int flipped = 0;
    for (int j = 0; j < 100; j++) {
        const float *s = x + j * 12, *o = y + j * 12;
        assert_true(floorf(s[0]) == floorf(o[0])); /* flip does not change the order */
        int f = s[0] > s[2];                         /* columns reversed */
        for (int c = 0; c < 2; c++)
            for (int r = 0; r < 2; r++)
                for (int col = 0; col < 3; col++)
                    assert_true(s[c * 6 + r * 3 + col] == o[c * 6 + r * 3 + (f ? 2 - col : col)]);
        flipped += f;
    }
    assert_in_range(flipped, 25, 75); /* p = 0.5 */
    rq_loader_free(&l);
    rq_loader_free(&nf);
    rq_dataset_free(&ds);
}

/* ------------------------------------------------------------------ PNG folder */
static void test_pngdir(void **state) {
    char dir[512], lab[512], p[600];
    rq_err err = {0};
    snprintf(dir, sizeof dir, "%s", ((fixture *)*state)->dir);
    uint8_t px[3][6 * 4];
    const char *names[3] = {"a.png", "b b.png", "c.png"};
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 24; k++) px[i][k] = (uint8_t)(i * 50 + k * 7);
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        assert_int_equal(rq_png_write(p, px[i], 6, 4, 1, &err), RQ_OK);
    }
    FILE *f = fopen(fpath(state, "labels.txt", lab), "w");
    fputs("# name label\n\na.png 2\n  b b.png   0  # spaces in the name\nc.png 1\n", f);
    fclose(f);
    uint8_t *im;
    int32_t *y;
    long n;
    int h, w, c;
    assert_int_equal(rq_pngdir_load(dir, lab, &im, &y, &n, &h, &w, &c, &err), RQ_OK);
    assert_true(n == 3 && h == 4 && w == 6 && c == 1);
    for (int i = 0; i < 3; i++) assert_memory_equal(im + i * 24, px[i], 24);
    assert_true(y[0] == 2 && y[1] == 0 && y[2] == 1);
    free(im);
    free(y);

    /* bad label line, missing PNG, size mismatch: file and line named */
    f = fopen(lab, "w");
    fputs("a.png 2\nc.png x1\n", f);
    fclose(f);
    assert_int_equal(rq_pngdir_load(dir, lab, &im, &y, &n, &h, &w, &c, &err), RQ_EFORMAT);
    snprintf(p, sizeof p, "%s:2: bad label 'x1'", lab);
    assert_true(contains(err.msg, p));
    rq_err_clear(&err);
    f = fopen(lab, "w");
    fputs("a.png 2\n\nmissing.png 1\n", f);
    fclose(f);
    assert_int_not_equal(rq_pngdir_load(dir, lab, &im, &y, &n, &h, &w, &c, &err), RQ_OK);
    snprintf(p, sizeof p, "%s:3:", lab);
    assert_true(contains(err.msg, p));
    assert_true(contains(err.msg, "missing.png"));
    rq_err_clear(&err);
    uint8_t rgb[5 * 4 * 3] = {0};
    snprintf(p, sizeof p, "%s/rgb.png", dir);
    assert_int_equal(rq_png_write(p, rgb, 5, 4, 3, &err), RQ_OK);
    f = fopen(lab, "w");
    fputs("a.png 2\nrgb.png 1\n", f);
    fclose(f);
    assert_int_equal(rq_pngdir_load(dir, lab, &im, &y, &n, &h, &w, &c, &err), RQ_EFORMAT);
    assert_true(contains(err.msg, "is 5x4x3, expected 6x4x1 like a.png"));
    assert_null(im);
}

/* ------------------------------------------------------------------ robuq-data CLI */
/* Run a shell command; returns the exit status, output (stdout+stderr) in out. */
static int run(const char *cmd, char *out, size_t cap) {
    char full[2100];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state) {
    const char *bin = ROBUQ_BIN_DIR "/robuq-data";
    if (access(bin, X_OK) != 0) {
        /* The tool is a separate target; build it to run this test. */
        skip();
    }
    char cmd[2048], out[8192], pi[512], pl[512], ph[512], bad[512];
    uint8_t im[NI * IH * IW], lb8[NI];
    int32_t lb[NI];
    make_images(im, lb, lb8);
    long di[3] = {NI, IH, IW}, dl[1] = {NI};
    write_idx(fpath(state, "i.idx3.gz", pi), 3, di, im, 1);
    write_idx(fpath(state, "l.idx1", pl), 1, dl, lb8, 0);

    assert_int_equal(run(bin, out, sizeof out), 2);
    assert_true(contains(out, "missing command"));
    snprintf(cmd, sizeof cmd, "%s idx --help", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_true(contains(out, "usage: robuq-data idx"));
    snprintf(cmd, sizeof cmd, "%s npy --help", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_true(contains(out, ".npz"));
    snprintf(cmd, sizeof cmd, "%s idx %s %s", bin, pi, pl);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s npy a b c --scale -1", bin);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s frobnicate", bin);
    assert_int_equal(run(cmd, out, sizeof out), 2);

    /* conversion into a new sub-directory + info */
    snprintf(cmd, sizeof cmd, "%s idx %s %s %s --num-classes 3", bin, pi, pl, fpath(state, "sub/d.h5", ph));
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_true(contains(out, "wrote 7 images (1x5x4), 3 classes"));
    snprintf(cmd, sizeof cmd, "%s info %s", bin, ph);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_true(contains(out, "samples:     7"));
    assert_true(contains(out, "labels:      0:3 1:2 2:2"));

    /* label beyond --num-classes: exit 1, one line naming the labels file */
    snprintf(cmd, sizeof cmd, "%s idx %s %s %s --num-classes 2", bin, pi, pl, fpath(state, "x.h5", bad));
    assert_int_equal(run(cmd, out, sizeof out), 1);
    char want[700];
    snprintf(want, sizeof want, "robuq-data: %s: label 2 at index 2 outside [0,2)", pl);
    assert_true(contains(out, want));
    assert_false(file_exists(bad));

    /* truncated input: exit 1, "robuq-data: <file>: ...", no output, no temp */
    truncate_file(pl, 2);
    snprintf(cmd, sizeof cmd, "%s idx %s %s %s", bin, pi, pl, bad);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    snprintf(want, sizeof want, "robuq-data: %s: truncated", pl);
    assert_true(contains(out, want));
    assert_int_equal((int)(strchr(out, '\n') - out + 1), (int)strlen(out)); /* one line */
    assert_false(file_exists(bad));
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", ((fixture *)*state)->dir);
    run(cmd, out, sizeof out);
    assert_int_equal(atoi(out), 0);

    /* fmnist from a directory without the files */
    snprintf(cmd, sizeof cmd, "%s fmnist --dir %s/none --out-train %s --out-test %s", bin,
             ((fixture *)*state)->dir, bad, bad);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    assert_true(contains(out, "install it with: apt-get install dataset-fashion-mnist"));
}

/* ------------------------------------------------------------------ real data */
static void test_fashion_mnist(void **state) {
    const char *im = FMNIST "/t10k-images-idx3-ubyte.gz", *lb = FMNIST "/t10k-labels-idx1-ubyte.gz";
    if (access(im, R_OK) != 0 || access(lb, R_OK) != 0) {
        /* apt-get install dataset-fashion-mnist to run this test */
        skip();
    }
    rq_err err = {0};
    uint8_t *x;
    int32_t *y;
    long n;
    int h, w;
    assert_int_equal(rq_idx_load_pair(im, lb, &x, &y, &n, &h, &w, &err), RQ_OK);
    assert_int_equal(n, 10000);
    assert_int_equal(h, 28);
    assert_int_equal(w, 28);
    int hist[10] = {0};
    for (long i = 0; i < n; i++) {
        assert_in_range(y[i], 0, 9);
        hist[y[i]]++;
    }
    for (int k = 0; k < 10; k++) assert_int_equal(hist[k], 1000);
    char p[512];
    rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = n, .c = 1, .h = h, .w = w, .images = x,
                          .labels = y, .num_classes = 10, .source = "t10k", .compression = -1};
    assert_int_equal(rq_dataset_write(fpath(state, "t10k.h5", p), &src, &err), RQ_OK);
    rq_dataset ds;
    assert_int_equal(rq_dataset_load(p, &ds, &err), RQ_OK);
    assert_true(ds.n == 10000 && ds.c == 1 && ds.h == 28 && ds.w == 28 && ds.num_classes == 10);
    double mean = 0;
    for (long i = 0; i < ds.n * 784; i++) {
        assert_true(ds.x[i] >= -1.0f && ds.x[i] <= 1.0f);
        mean += ds.x[i];
    }
    mean /= (double)(ds.n * 784);
    assert_true(mean > -0.6 && mean < -0.3); /* mostly dark background (~ -0.43) */
    assert_true(ds.x[0] == x[0] / 127.5f - 1.0f && ds.x[784 * 9999 + 400] == x[784 * 9999 + 400] / 127.5f - 1.0f);
    free(x);
    free(y);
    rq_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idx_roundtrip, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_idx_errors, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_npy, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_dataset_validation, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_loader),
        cmocka_unit_test(test_loader_flip),
        cmocka_unit_test_setup_teardown(test_pngdir, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_cli, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_fashion_mnist, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
