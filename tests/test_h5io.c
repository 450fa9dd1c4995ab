/* test_h5io.c: round trips, atomic commit/abort, and the error messages of
 * the HDF5 wrapper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "robuq/h5io.h"
#include "testutil.h"

/* ---- scratch directory per test ---- */
typedef tu_dir fixture;
static const char *fpath(void **state, const char *name, char *buf) {
    snprintf(buf, 512, "%s/%s", ((fixture *)*state)->dir, name);
    return buf;
}
static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* Number of entries in the scratch dir (catches stray temp files). */
static int dir_count(void **state) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", ((fixture *)*state)->dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* ---- list callback ---- */
typedef struct {
    char names[16][128];
    int groups[16];
    int n, stop_after;
} list_rec;
static int rec_cb(void *ctx, const char *name, int is_group) {
    list_rec *r = ctx;
    if (r->n < 16) {
        snprintf(r->names[r->n], 128, "%s", name);
        r->groups[r->n] = is_group;
    }
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

/* Write one file holding every type, nested groups, dotted names, attrs. */
static void write_sample(const char *path) {
    rq_err err = {0};
    rq_h5_writer *w = rq_h5w_open(path, &err);
    assert_non_null(w);
    float f[24];
    for (int i = 0; i < 24; i++) f[i] = 0.5f * (float)i - 3.25f;
    long s3[3] = {2, 3, 4};
    assert_int_equal(rq_h5w_write_f32(w, "/params/blocks.0.attn.qkv.weight", f, 3, s3, &err), RQ_OK);
    int32_t iv[5] = {-7, 0, 1, 2147483647, -2147483647 - 1};
    long s1 = 5;
    assert_int_equal(rq_h5w_write_i32(w, "/a/b/c/ints", iv, 1, &s1, &err), RQ_OK);
    uint8_t u[6] = {0, 1, 127, 128, 254, 255};
    long s2[2] = {2, 3};
    assert_int_equal(rq_h5w_write_u8(w, "/bytes", u, 2, s2, &err), RQ_OK);
    int64_t big[2] = {(int64_t)1 << 40, -5};
    long sb = 2;
    assert_int_equal(rq_h5w_write_i64(w, "/params/step.count", big, 1, &sb, &err), RQ_OK);
    int64_t scalar = 42;
    assert_int_equal(rq_h5w_write_i64(w, "/scalar", &scalar, 0, NULL, &err), RQ_OK);
    double d[3] = {1.0 / 3.0, -2.5, 1e-30};
    long sd = 3;
    assert_int_equal(rq_h5w_write(w, "/f64", RQ_H5_F64, d, 1, &sd, &err), RQ_OK);
    assert_int_equal(rq_h5w_group(w, "/empty/group", &err), RQ_OK);
    assert_int_equal(rq_h5w_attr_str(w, NULL, "format", "robuq-test", &err), RQ_OK);
    assert_int_equal(rq_h5w_attr_i64(w, "/", "version", 3, &err), RQ_OK);
    assert_int_equal(rq_h5w_attr_i64(w, NULL, "version", 7, &err), RQ_OK); /* replaced */
    assert_int_equal(rq_h5w_attr_f64(w, NULL, "lr", 1e-4, &err), RQ_OK);
    int bits[4] = {1, 2, 3, 4};
    assert_int_equal(rq_h5w_attr_ints(w, "/params", "a_bits", bits, 4, &err), RQ_OK);
    assert_int_equal(rq_h5w_attr_str(w, "/params/blocks.0.attn.qkv.weight", "note", "dots ok", &err),
                     RQ_OK);
    assert_int_equal(rq_h5w_attr_i64(w, "/quant", "made", 1, &err), RQ_OK); /* creates /quant */
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
    assert_int_equal(err.code, RQ_OK);
}

static void test_roundtrip(void **state) {
    char p[512];
    fpath(state, "rt.h5", p);
    write_sample(p);
    rq_err err = {0};
    rq_h5_reader *r = rq_h5r_open(p, &err);
    assert_non_null(r);
    assert_string_equal(rq_h5r_filename(r), p);

    assert_int_equal(rq_h5r_exists(r, "/params/blocks.0.attn.qkv.weight"), 1);
    assert_int_equal(rq_h5r_exists(r, "/params"), 2);
    assert_int_equal(rq_h5r_exists(r, "/a/b/c"), 2);
    assert_int_equal(rq_h5r_exists(r, "/empty/group"), 2);
    assert_int_equal(rq_h5r_exists(r, "/quant"), 2);
    assert_int_equal(rq_h5r_exists(r, "/params/blocks"), 0);
    assert_int_equal(rq_h5r_exists(r, "/nope/deeper/x"), 0);
    assert_int_equal(rq_h5r_exists(r, "/bytes/under_a_dataset"), 0);

    int nd;
    long sh[RQ_H5_MAX_DIMS];
    assert_int_equal(rq_h5r_shape(r, "/params/blocks.0.attn.qkv.weight", &nd, sh, &err), RQ_OK);
    assert_int_equal(nd, 3);
    assert_true(sh[0] == 2 && sh[1] == 3 && sh[2] == 4);
    long want[3] = {2, 3, 4};
    assert_int_equal(rq_h5r_check_shape(r, "/params/blocks.0.attn.qkv.weight", 3, want, &err), RQ_OK);
    assert_int_equal(rq_h5r_shape(r, "/scalar", &nd, sh, &err), RQ_OK);
    assert_int_equal(nd, 0);

    float f[24];
    assert_int_equal(rq_h5r_read_f32(r, "/params/blocks.0.attn.qkv.weight", f, 24, &err), RQ_OK);
    for (int i = 0; i < 24; i++) assert_true(f[i] == 0.5f * (float)i - 3.25f);
    int32_t iv[5];
    assert_int_equal(rq_h5r_read_i32(r, "/a/b/c/ints", iv, 5, &err), RQ_OK);
    assert_int_equal(iv[0], -7);
    assert_int_equal(iv[3], 2147483647);
    assert_int_equal(iv[4], -2147483647 - 1);
    uint8_t u[6];
    assert_int_equal(rq_h5r_read_u8(r, "/bytes", u, 6, &err), RQ_OK);
    assert_int_equal(u[3], 128);
    assert_int_equal(u[5], 255);
    int64_t big[2];
    assert_int_equal(rq_h5r_read_i64(r, "/params/step.count", big, 2, &err), RQ_OK);
    assert_true(big[0] == (int64_t)1 << 40 && big[1] == -5);
    int64_t sc = 0;
    assert_int_equal(rq_h5r_read_i64(r, "/scalar", &sc, 1, &err), RQ_OK);
    assert_int_equal(sc, 42);
    /* float64 -> float32 conversion and float32 -> float64 are allowed. */
    float df[3];
    assert_int_equal(rq_h5r_read_f32(r, "/f64", df, 3, &err), RQ_OK);
    assert_true(df[0] == (float)(1.0 / 3.0) && df[1] == -2.5f && df[2] == 1e-30f);
    double dd[24];
    assert_int_equal(rq_h5r_read(r, "/params/blocks.0.attn.qkv.weight", RQ_H5_F64, dd, 24, &err), RQ_OK);
    assert_true(dd[23] == 0.5 * 23 - 3.25);
    /* integer widening / narrowing within range */
    int64_t i64[6];
    assert_int_equal(rq_h5r_read_i64(r, "/bytes", i64, 6, &err), RQ_OK);
    assert_int_equal(i64[5], 255);
    /* rows */
    uint8_t row[3];
    assert_int_equal(rq_h5r_read_rows(r, "/bytes", RQ_H5_U8, 1, 1, row, &err), RQ_OK);
    assert_true(row[0] == 128 && row[1] == 254 && row[2] == 255);

    /* attributes */
    char s[64];
    assert_int_equal(rq_h5r_get_str(r, NULL, "format", s, sizeof s, &err), RQ_OK);
    assert_string_equal(s, "robuq-test");
    assert_int_equal(rq_h5r_get_str(r, "/params/blocks.0.attn.qkv.weight", "note", s, sizeof s, &err), RQ_OK);
    assert_string_equal(s, "dots ok");
    int64_t v;
    assert_int_equal(rq_h5r_get_i64(r, "/", "version", &v, &err), RQ_OK);
    assert_int_equal(v, 7);
    double lr;
    assert_int_equal(rq_h5r_get_f64(r, NULL, "lr", &lr, &err), RQ_OK);
    assert_true(lr == 1e-4);
    assert_int_equal(rq_h5r_get_f64(r, NULL, "version", &lr, &err), RQ_OK); /* int -> double ok */
    assert_true(lr == 7.0);
    int bits[8], nb = 0;
    assert_int_equal(rq_h5r_get_ints(r, "/params", "a_bits", bits, 8, &nb, &err), RQ_OK);
    assert_int_equal(nb, 4);
    assert_true(bits[0] == 1 && bits[3] == 4);
    assert_true(rq_h5r_has_attr(r, "/quant", "made"));
    assert_false(rq_h5r_has_attr(r, NULL, "made"));
    assert_false(rq_h5r_has_attr(r, "/missing", "made"));

    /* listing: direct members of /params in name order, then recursive */
    list_rec lr1 = {0};
    assert_int_equal(rq_h5r_list(r, "/params", 0, rec_cb, &lr1, &err), RQ_OK);
    assert_int_equal(lr1.n, 2);
    assert_string_equal(lr1.names[0], "blocks.0.attn.qkv.weight");
    assert_string_equal(lr1.names[1], "step.count");
    list_rec lr2 = {.stop_after = 1};
    assert_int_equal(rq_h5r_list(r, "/", 1, rec_cb, &lr2, &err), RQ_OK);
    assert_int_equal(lr2.n, 1); /* stopped by the callback */
    char **names;
    int count;
    assert_int_equal(rq_h5r_list_datasets(r, "/", 1, &names, &count, &err), RQ_OK);
    const char *expect[] = {"a/b/c/ints", "bytes", "f64", "params/blocks.0.attn.qkv.weight",
                            "params/step.count", "scalar"};
    assert_int_equal(count, 6);
    for (int i = 0; i < 6; i++) assert_string_equal(names[i], expect[i]);
    rq_h5_names_free(names, count);
    assert_int_equal(err.code, RQ_OK);
    rq_h5r_close(r);
}

static void test_atomic(void **state) {
    char p[512], tmp[600];
    fpath(state, "atomic.h5", p);
    assert_non_null(rq_h5_temp_path(p, tmp, sizeof tmp));
    rq_err err = {0};
    float x[4] = {1, 2, 3, 4};
    long n = 4;

    /* commit: nothing under the final name until commit, no temp after */
    rq_h5_writer *w = rq_h5w_open(p, &err);
    assert_non_null(w);
    assert_int_equal(rq_h5w_write_f32(w, "/x", x, 1, &n, &err), RQ_OK);
    assert_false(file_exists(p));
    assert_true(file_exists(tmp));
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
    assert_true(file_exists(p));
    assert_false(file_exists(tmp));

    /* abort: the old file survives untouched, the temp is gone */
    w = rq_h5w_open(p, &err);
    assert_non_null(w);
    float y[2] = {9, 9};
    long m = 2;
    assert_int_equal(rq_h5w_write_f32(w, "/x", y, 1, &m, &err), RQ_OK);
    rq_h5w_abort(w);
    assert_false(file_exists(tmp));
    rq_h5_reader *r = rq_h5r_open(p, &err);
    assert_non_null(r);
    float back[4];
    assert_int_equal(rq_h5r_read_f32(r, "/x", back, 4, &err), RQ_OK);
    assert_true(back[3] == 4.0f);
    rq_h5r_close(r);

    /* abort of a new file leaves nothing at all */
    char q[512];
    fpath(state, "never.h5", q);
    w = rq_h5w_open(q, &err);
    assert_non_null(w);
    rq_h5w_abort(w);
    assert_false(file_exists(q));

    /* a failed write poisons the writer: commit refuses, nothing appears */
    w = rq_h5w_open(q, &err);
    assert_int_equal(rq_h5w_write_f32(w, "/x", x, 1, &n, &err), RQ_OK);
    assert_int_equal(rq_h5w_write_f32(w, "/x", x, 1, &n, &err), RQ_EINVAL); /* exists */
    assert_non_null(strstr(err.msg, "'/x' already exists"));
    rq_err_clear(&err);
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_EIO);
    assert_non_null(strstr(err.msg, "earlier write failed"));
    assert_false(file_exists(q));

    /* commit replaces an existing file atomically */
    rq_err_clear(&err);
    w = rq_h5w_open(p, &err);
    assert_int_equal(rq_h5w_write_f32(w, "/x", y, 1, &m, &err), RQ_OK);
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
    r = rq_h5r_open(p, &err);
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    assert_int_equal(rq_h5r_shape(r, "/x", &nd, sh, &err), RQ_OK);
    assert_int_equal(sh[0], 2);
    rq_h5r_close(r);

    /* unwritable location: clear error, nothing created */
    rq_err_clear(&err);
    assert_null(rq_h5w_open("/nonexistent_dir_rq/x.h5", &err));
    assert_int_equal(err.code, RQ_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent_dir_rq/x.h5"));
    assert_int_equal(dir_count(state), 1); /* only atomic.h5 */
}

static void test_compression_rows(void **state) {
    char p[512];
    fpath(state, "comp.h5", p);
    rq_err err = {0};
    enum { N = 3000, R = 17 };
    uint8_t *u = malloc(N * R);
    for (int i = 0; i < N * R; i++) u[i] = (uint8_t)(i * 7 + i / 13);
    rq_h5_writer *w = rq_h5w_open(p, &err);
    assert_int_equal(rq_h5w_set_compression(w, 4, &err), RQ_OK);
    long sh[2] = {N, R};
    assert_int_equal(rq_h5w_write_u8(w, "/u", u, 2, sh, &err), RQ_OK);
    assert_int_equal(rq_h5w_set_compression(w, 12, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_h5w_close_commit(w, &err), RQ_OK);
    rq_h5_reader *r = rq_h5r_open(p, &err);
    uint8_t *back = malloc(N * R);
    assert_int_equal(rq_h5r_read_u8(r, "/u", back, N * R, &err), RQ_OK);
    assert_memory_equal(back, u, N * R);
    assert_int_equal(rq_h5r_read_rows(r, "/u", RQ_H5_U8, 1234, 100, back, &err), RQ_OK);
    assert_memory_equal(back, u + 1234 * R, 100 * R);
    assert_int_equal(rq_h5r_read_rows(r, "/u", RQ_H5_U8, 2950, 100, back, &err), RQ_ESHAPE);
    assert_non_null(strstr(err.msg, "out of range"));
    rq_h5r_close(r);
    free(u);
    free(back);
}

/* All failures: right code, message naming file and path, and nothing
 * printed by HDF5 itself (stderr is captured and must stay empty). */
static void test_errors(void **state) {
    char p[512], bad[512], cap[512];
    fpath(state, "rt.h5", p);
    write_sample(p);
    fpath(state, "text.h5", bad);
    FILE *f = fopen(bad, "w");
    fputs("this is not an HDF5 file, just text\n", f);
    fclose(f);

    fflush(stderr);
    int saved = dup(2);
    int fd = open(fpath(state, "stderr.txt", cap), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);

    rq_err err = {0};
    assert_null(rq_h5r_open(bad, &err));
    assert_int_equal(err.code, RQ_EFORMAT);
    assert_non_null(strstr(err.msg, bad));
    assert_non_null(strstr(err.msg, "not an HDF5 file"));

    rq_err_clear(&err);
    char missing[512];
    assert_null(rq_h5r_open(fpath(state, "missing.h5", missing), &err));
    assert_int_equal(err.code, RQ_EIO);
    assert_non_null(strstr(err.msg, missing));

    rq_err_clear(&err);
    rq_h5_reader *r = rq_h5r_open(p, &err);
    assert_non_null(r);
    float buf[64];
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_read_f32(r, "/params/nope.weight", buf, 1, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "/params/nope.weight"));
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "missing dataset"));

    rq_err_clear(&err);
    assert_int_equal(rq_h5r_read_f32(r, "/params", buf, 1, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "is a group"));

    rq_err_clear(&err);
    assert_int_equal(rq_h5r_read_f32(r, "/params/blocks.0.attn.qkv.weight", buf, 23, &err), RQ_ESHAPE);
    assert_non_null(strstr(err.msg, "/params/blocks.0.attn.qkv.weight"));
    assert_non_null(strstr(err.msg, "[2,3,4]"));
    assert_non_null(strstr(err.msg, p));

    rq_err_clear(&err);
    long wrong[3] = {3, 2, 4};
    assert_int_equal(rq_h5r_check_shape(r, "/params/blocks.0.attn.qkv.weight", 3, wrong, &err), RQ_ESHAPE);
    assert_non_null(strstr(err.msg, "has shape [2,3,4], expected [3,2,4]"));

    /* integer dataset into float: refused */
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_read_f32(r, "/a/b/c/ints", buf, 5, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "/a/b/c/ints"));
    assert_non_null(strstr(err.msg, "int32"));
    assert_non_null(strstr(err.msg, "float32"));
    /* float dataset into integer: refused */
    rq_err_clear(&err);
    int32_t ib[24];
    assert_int_equal(rq_h5r_read_i32(r, "/params/blocks.0.attn.qkv.weight", ib, 24, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "float32"));
    /* out-of-range narrowing: refused, not clamped */
    rq_err_clear(&err);
    int32_t i2[2];
    assert_int_equal(rq_h5r_read_i32(r, "/params/step.count", i2, 2, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "out of range"));
    rq_err_clear(&err);
    uint8_t u5[5];
    assert_int_equal(rq_h5r_read_u8(r, "/a/b/c/ints", u5, 5, &err), RQ_EFORMAT);

    /* attributes */
    rq_err_clear(&err);
    int64_t v;
    assert_int_equal(rq_h5r_get_i64(r, NULL, "num_classes", &v, &err), RQ_EFORMAT);
    char expect[700];
    snprintf(expect, sizeof expect, "missing attribute 'num_classes' in %s", p);
    assert_string_equal(err.msg, expect);
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_get_i64(r, "/params", "nope", &v, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "missing attribute 'nope' on '/params'"));
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_get_i64(r, NULL, "format", &v, &err), RQ_EFORMAT); /* a string */
    assert_non_null(strstr(err.msg, "'format'"));
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_get_i64(r, NULL, "lr", &v, &err), RQ_EFORMAT); /* a float */
    rq_err_clear(&err);
    char tiny[4];
    assert_int_equal(rq_h5r_get_str(r, NULL, "format", tiny, sizeof tiny, &err), RQ_EFORMAT);
    rq_err_clear(&err);
    int bits[2], nb;
    assert_int_equal(rq_h5r_get_ints(r, "/params", "a_bits", bits, 2, &nb, &err), RQ_ESHAPE);
    assert_int_equal(nb, 4);
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_list(r, "/bytes", 0, rec_cb, &(list_rec){0}, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "missing group '/bytes'"));
    /* NULL arguments are errors, not crashes */
    rq_err_clear(&err);
    assert_int_equal(rq_h5r_read_f32(NULL, "/x", buf, 1, &err), RQ_EINVAL);
    assert_int_equal(rq_h5w_write_f32(NULL, "/x", buf, 1, (long[]){1}, NULL), RQ_EINVAL);
    assert_int_equal(rq_h5r_exists(NULL, "/x"), 0);
    rq_h5r_close(r);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    struct stat st;
    assert_int_equal(stat(cap, &st), 0);
    assert_int_equal(st.st_size, 0); /* HDF5 printed nothing */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_atomic, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_compression_rows, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_errors, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
