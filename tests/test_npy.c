/* test_npy.c: .npz archives (stored, deflated, ZIP64; built here with zlib),
 * their validation, per-sample .npy folders (fast-DiT features), and the
 * robuq-data npy subcommand on all of them. (.npy itself: test_data.c.) */
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

#include "robuq/dataset.h"
#include "robuq/npy.h"

#define DATA_TOOL ROBUQ_BIN_DIR "/robuq-data"

static const char *tdir(void **state) { return ((tu_dir *)*state)->dir; }

/* ------------------------------------------------------- building blocks */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put16(buf_t *b, unsigned v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}
static void put32(buf_t *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put64(buf_t *b, uint64_t v) {
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}
static void set32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* An .npy v1 image in memory. */
static buf_t npy_image(const char *descr, const char *shape, const void *data, size_t bytes) {
    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int total = ((10 + dl + 1 + 63) / 64) * 64, hlen = total - 10;
    buf_t b = {0};
    put(&b, "\x93NUMPY\x01\x00", 8);
    put16(&b, (unsigned)hlen);
    put(&b, dict, (size_t)dl);
    for (int i = dl; i < hlen - 1; i++) put(&b, " ", 1);
    put(&b, "\n", 1);
    put(&b, data, bytes);
    return b;
}

typedef struct {
    const char *name;
    buf_t data;   /* uncompressed bytes */
    int deflate;
} zmember;

/* Zip layouts the test can produce. */
typedef struct {
    int local_zip64;   /* numpy's force_zip64: local sizes 0xFFFFFFFF + ZIP64 extra */
    int full_zip64;    /* ZIP64 central extra + ZIP64 end record and locator */
} zopts;

/* A zip archive of the members, like Python's zipfile writes it. */
static buf_t make_zip(const zmember *m, int n, zopts o) {
    buf_t z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        const buf_t *d = &m[i].data;
        uLong crc = crc32(crc32(0L, Z_NULL, 0), d->b, (uInt)d->n);
        buf_t comp = {0};
        if (m[i].deflate) {
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
            comp.cap = deflateBound(&zs, d->n) + 16;
            comp.b = malloc(comp.cap);
            zs.next_in = d->b;
            zs.avail_in = (uInt)d->n;
            zs.next_out = comp.b;
            zs.avail_out = (uInt)comp.cap;
            assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
            comp.n = zs.total_out;
            deflateEnd(&zs);
        } else {
            put(&comp, d->b, d->n);
        }
        uint32_t off = (uint32_t)z.n;
        size_t nlen = strlen(m[i].name);
        put32(&z, 0x04034b50);
        put16(&z, o.local_zip64 ? 45 : 20);
        put16(&z, 0);
        put16(&z, m[i].deflate ? 8 : 0);
        put16(&z, 0), put16(&z, 0x21);
        put32(&z, (uint32_t)crc);
        put32(&z, o.local_zip64 ? 0xffffffffu : (uint32_t)comp.n);
        put32(&z, o.local_zip64 ? 0xffffffffu : (uint32_t)d->n);
        put16(&z, (unsigned)nlen);
        put16(&z, o.local_zip64 ? 20 : 0);
        put(&z, m[i].name, nlen);
        if (o.local_zip64) {
            put16(&z, 1), put16(&z, 16);
            put64(&z, d->n), put64(&z, comp.n);
        }
        put(&z, comp.b, comp.n);
        /* central entry */
        put32(&cd, 0x02014b50);
        put16(&cd, 20), put16(&cd, o.full_zip64 ? 45 : 20), put16(&cd, 0);
        put16(&cd, m[i].deflate ? 8 : 0);
        put16(&cd, 0), put16(&cd, 0x21);
        put32(&cd, (uint32_t)crc);
        put32(&cd, o.full_zip64 ? 0xffffffffu : (uint32_t)comp.n);
        put32(&cd, o.full_zip64 ? 0xffffffffu : (uint32_t)d->n);
        put16(&cd, (unsigned)nlen);
        put16(&cd, o.full_zip64 ? 28 : 0);
        put16(&cd, 0), put16(&cd, 0), put16(&cd, 0), put32(&cd, 0);
        put32(&cd, o.full_zip64 ? 0xffffffffu : off);
        put(&cd, m[i].name, nlen);
        if (o.full_zip64) {
            put16(&cd, 1), put16(&cd, 24);
            put64(&cd, d->n), put64(&cd, comp.n), put64(&cd, off);
        }
        free(comp.b);
    }
    uint64_t cd_off = z.n;
    put(&z, cd.b, cd.n);
    if (o.full_zip64) {
        uint64_t z64 = z.n;
        put32(&z, 0x06064b50);
        put64(&z, 44);
        put16(&z, 45), put16(&z, 45), put32(&z, 0), put32(&z, 0);
        put64(&z, (uint64_t)n), put64(&z, (uint64_t)n), put64(&z, cd.n), put64(&z, cd_off);
        put32(&z, 0x07064b50);
        put32(&z, 0), put64(&z, z64), put32(&z, 1);
    }
    put32(&z, 0x06054b50);
    put16(&z, 0), put16(&z, 0);
    put16(&z, o.full_zip64 ? 0xffff : (unsigned)n), put16(&z, o.full_zip64 ? 0xffff : (unsigned)n);
    put32(&z, o.full_zip64 ? 0xffffffffu : (uint32_t)cd.n);
    put32(&z, o.full_zip64 ? 0xffffffffu : (uint32_t)cd_off);
    put16(&z, 0);
    free(cd.b);
    return z;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Test arrays: latents (3,2,3,4) f4 and labels (3,) i8. */
enum { N = 3, C = 2, H = 3, W = 4, T = N * C * H * W };
static float g_lat[T];
static int64_t g_lab[N] = {2, 0, 4};
static void init_arrays(void) {
    for (int i = 0; i < T; i++) g_lat[i] = (float)((i * 37) % 23) * 0.15f - 1.6f;
}

/* ------------------------------------------------------------------ tests */

static void test_npz_read(void **state) {
    init_arrays();
    char path[512];
    zopts layouts[3] = {{0, 0}, {1, 0}, {1, 1}};
    for (int lay = 0; lay < 3; lay++)
        for (int mode = 0; mode < 3; mode++) { /* stored, deflated, mixed */
            zmember m[2] = {{"latents.npy", npy_image("<f4", "(3, 2, 3, 4)", g_lat, sizeof g_lat), mode != 0},
                            {"labels.npy", npy_image("<i8", "(3,)", g_lab, sizeof g_lab), mode == 1}};
            buf_t z = make_zip(m, 2, layouts[lay]);
            snprintf(path, sizeof path, "%s/a%d%d.npz", tdir(state), lay, mode);
            write_file(path, z.b, z.n);
            free(z.b), free(m[0].data.b), free(m[1].data.b);

            rq_npz a;
            rq_err e = {0};
            if (rq_npz_open(path, &a, &e)) fail_msg("layout %d mode %d: %s", lay, mode, e.msg);
            assert_int_equal(a.n, 2);
            assert_int_equal(a.members[0].method, mode != 0 ? 8 : 0);
            assert_non_null(rq_npz_find(&a, "latents"));
            assert_non_null(rq_npz_find(&a, "labels.npy"));
            assert_null(rq_npz_find(&a, "label"));
            float *x;
            int32_t *y;
            rq_npy_header h;
            assert_int_equal(rq_npz_read_f32(&a, "latents", &x, &h, &e), RQ_OK);
            assert_int_equal(h.ndim, 4);
            assert_true(h.shape[0] == N && h.shape[3] == W);
            assert_memory_equal(x, g_lat, sizeof g_lat);
            free(x);
            assert_int_equal(rq_npz_read_i32(&a, "labels", &y, &h, &e), RQ_OK);
            assert_true(y[0] == 2 && y[1] == 0 && y[2] == 4);
            free(y);
            /* unknown member: the message lists what there is */
            assert_int_equal(rq_npz_read_f32(&a, "z", &x, NULL, &e), RQ_EINVAL);
            assert_non_null(strstr(e.msg, "no member 'z' (members: latents.npy, labels.npy)"));
            rq_err_clear(&e);
            /* labels are not floats-only: i32 of the latents is refused with the member named */
            assert_int_equal(rq_npz_read_i32(&a, "latents", &y, NULL, &e), RQ_EFORMAT);
            assert_non_null(strstr(e.msg, ":latents.npy: dtype '<f4' is not an integer type"));
            rq_npz_close(&a);
            rq_err_clear(&e);

            /* spec strings */
            char spec[600];
            snprintf(spec, sizeof spec, "%s:latents", path);
            assert_int_equal(rq_npy_load_f32(spec, &x, &h, &e), RQ_OK);
            assert_memory_equal(x, g_lat, sizeof g_lat);
            free(x);
            snprintf(spec, sizeof spec, "%s:labels.npy", path);
            assert_int_equal(rq_npy_load_i32(spec, &y, &h, &e), RQ_OK);
            assert_int_equal(y[2], 4);
            free(y);
            assert_int_equal(rq_npy_load_f32(path, &x, &h, &e), RQ_EINVAL); /* two members: which? */
            assert_non_null(strstr(e.msg, "2 members"));
        }
    /* one member: no key needed; an .npz given to the .npy reader says what to do */
    zmember one = {"arr_0.npy", npy_image("<f4", "(3, 2, 3, 4)", g_lat, sizeof g_lat), 1};
    buf_t z = make_zip(&one, 1, (zopts){0, 0});
    snprintf(path, sizeof path, "%s/one.npz", tdir(state));
    write_file(path, z.b, z.n);
    free(z.b), free(one.data.b);
    float *x;
    rq_err e = {0};
    assert_int_equal(rq_npy_load_f32(path, &x, NULL, &e), RQ_OK);
    assert_memory_equal(x, g_lat, sizeof g_lat);
    free(x);
    assert_int_equal(rq_npy_read_f32(path, &x, NULL, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "this is an .npz archive"));
}

/* Archive with one stored and one deflated member, then corrupted in
 * different ways; each must be refused with its message. */
static void test_npz_malformed(void **state) {
    init_arrays();
    zmember m[2] = {{"latents.npy", npy_image("<f4", "(3, 2, 3, 4)", g_lat, sizeof g_lat), 0},
                    {"labels.npy", npy_image("<i8", "(3,)", g_lab, sizeof g_lab), 1}};
    buf_t good = make_zip(m, 2, (zopts){0, 0});
    /* offsets in the good archive */
    size_t l0 = 0, d0 = 30 + 11, n0 = m[0].data.n, l1 = d0 + n0, d1 = l1 + 30 + 10;
    size_t eocd = good.n - 22;
    size_t cd_off = good.b[eocd + 16] | good.b[eocd + 17] << 8 | good.b[eocd + 18] << 16 | (size_t)good.b[eocd + 19] << 24;
    size_t c0 = cd_off, c1 = cd_off + 46 + 11;
    assert_true(good.b[l1] == 'P' && good.b[l1 + 1] == 'K' && good.b[c1] == 'P');
    size_t comp1 = good.b[c1 + 20] | good.b[c1 + 21] << 8;
    (void)l0;

    struct {
        const char *what, *msg;
        rq_status code;
    } cases[] = {
        {"truncated", "no zip end-of-central-directory record", RQ_EFORMAT},
        {"crc", "member 'latents.npy': CRC-32 mismatch", RQ_EFORMAT},
        {"garbage deflate", "member 'labels.npy': corrupt deflate data", RQ_EFORMAT},
        {"size too large", "inflates to", RQ_EFORMAT},
        {"size too small", "inflates to more than its declared", RQ_EFORMAT},
        {"bomb", "claims 100000000 bytes", RQ_EFORMAT},
        {"method", "compression method 12 not supported", RQ_EFORMAT},
        {"encrypted", "member 'labels.npy' is encrypted", RQ_EFORMAT},
        {"local name", "local header name differs", RQ_EFORMAT},
        {"local offset", "no local header at byte", RQ_EFORMAT},
        {"cd offset", "central directory", RQ_EFORMAT},
        {"overlap", "overlap", RQ_EFORMAT},
        {"stored sizes", "is stored but its sizes differ", RQ_EFORMAT},
        {"multi-disk", "multi-disk", RQ_EFORMAT},
        {"trailing", "no zip end-of-central-directory record", RQ_EFORMAT},
        {"not npy", "latents.npy: not a .npy file (bad magic)", RQ_EFORMAT},
        {"entry count", "entries cannot fit", RQ_EFORMAT},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/bad.npz", tdir(state));
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        buf_t b = {0};
        put(&b, good.b, good.n);
        const char *w = cases[k].what;
        int read_member = -1; /* which member to read after opening */
        if (!strcmp(w, "truncated")) b.n -= 10;
        else if (!strcmp(w, "crc")) { b.b[d0 + 100] ^= 1; read_member = 0; }
        else if (!strcmp(w, "garbage deflate")) { memset(b.b + d1, 0xff, comp1); read_member = 1; }
        else if (!strcmp(w, "size too large")) { set32(b.b + c1 + 24, (uint32_t)m[1].data.n + 8); read_member = 1; }
        else if (!strcmp(w, "size too small")) { set32(b.b + c1 + 24, (uint32_t)m[1].data.n - 8); read_member = 1; }
        else if (!strcmp(w, "bomb")) set32(b.b + c1 + 24, 100000000u);
        else if (!strcmp(w, "method")) b.b[c1 + 10] = 12;
        else if (!strcmp(w, "encrypted")) b.b[c1 + 8] |= 1;
        else if (!strcmp(w, "local name")) b.b[l1 + 30] = 'X';
        else if (!strcmp(w, "local offset")) set32(b.b + c1 + 42, (uint32_t)(l1 + 3));
        else if (!strcmp(w, "cd offset")) set32(b.b + eocd + 16, (uint32_t)(cd_off + 40));
        else if (!strcmp(w, "overlap")) { set32(b.b + c0 + 20, (uint32_t)n0 + 8); set32(b.b + c0 + 24, (uint32_t)n0 + 8); }
        else if (!strcmp(w, "stored sizes")) set32(b.b + c0 + 24, (uint32_t)n0 + 1);
        else if (!strcmp(w, "multi-disk")) b.b[eocd + 4] = 1;
        else if (!strcmp(w, "trailing")) put(&b, "junk", 4);
        else if (!strcmp(w, "not npy")) { b.b[d0] = 'Z'; set32(b.b + c0 + 16, 0); read_member = 0; }
        else if (!strcmp(w, "entry count")) { b.b[eocd + 8] = 200; b.b[eocd + 10] = 200; }
        if (!strcmp(w, "not npy")) { /* keep the CRC right so the .npy parser sees the bytes */
            uLong crc = crc32(crc32(0L, Z_NULL, 0), b.b + d0, (uInt)n0);
            set32(b.b + c0 + 16, (uint32_t)crc);
        }
        write_file(path, b.b, b.n);
        free(b.b);
        rq_npz a;
        rq_err e = {0};
        rq_status s = rq_npz_open(path, &a, &e);
        if (!s && read_member >= 0) {
            float *x = NULL;
            int32_t *y = NULL;
            s = read_member == 0 ? rq_npz_read_f32(&a, "latents", &x, NULL, &e) : rq_npz_read_i32(&a, "labels", &y, NULL, &e);
            free(x), free(y);
            rq_npz_close(&a);
        } else if (!s) {
            rq_npz_close(&a);
        }
        if (s != cases[k].code || !strstr(e.msg, cases[k].msg) || !strstr(e.msg, path))
            fail_msg("case '%s': status %d, message '%s', wanted '%s'", w, s, e.msg, cases[k].msg);
    }
    /* duplicate names */
    zmember d[2] = {{"labels.npy", npy_image("<i8", "(3,)", g_lab, sizeof g_lab), 0},
                    {"labels.npy", npy_image("<i8", "(3,)", g_lab, sizeof g_lab), 1}};
    buf_t dz = make_zip(d, 2, (zopts){0, 0});
    write_file(path, dz.b, dz.n);
    free(dz.b), free(d[0].data.b), free(d[1].data.b);
    rq_npz a;
    rq_err e = {0};
    assert_int_equal(rq_npz_open(path, &a, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "member 'labels.npy' appears twice"));
    assert_int_equal(a.n, 0);
    rq_npz_close(&a);
    free(good.b), free(m[0].data.b), free(m[1].data.b);
    assert_int_equal(rq_npz_open("/nonexistent.npz", &a, &e), RQ_EIO);
}

/* Per-sample folders, fast-DiT style. */
static void test_npy_dir(void **state) {
    init_arrays();
    char fdir[512], ldir[512], p[600];
    snprintf(fdir, sizeof fdir, "%s/feat", tdir(state));
    snprintf(ldir, sizeof ldir, "%s/lab", tdir(state));
    mkdir(fdir, 0755);
    mkdir(ldir, 0755);
    int S = C * H * W;
    /* samples 0, 1 as (1,C,H,W), sample 2 as (C,H,W); labels (1,), (), (1,) */
    for (int i = 0; i < 3; i++) {
        buf_t f = npy_image("<f4", i == 2 ? "(2, 3, 4)" : "(1, 2, 3, 4)", g_lat + i * S, sizeof(float) * S);
        snprintf(p, sizeof p, "%s/%d.npy", fdir, i);
        write_file(p, f.b, f.n);
        free(f.b);
        buf_t l = npy_image("<i8", i == 1 ? "()" : "(1,)", &g_lab[i], 8);
        snprintf(p, sizeof p, "%s/%d.npy", ldir, i);
        write_file(p, l.b, l.n);
        free(l.b);
    }
    snprintf(p, sizeof p, "%s/README.txt", fdir); /* other names are ignored */
    write_file(p, "x", 1);
    float *x;
    int32_t *y;
    rq_npy_header h;
    rq_err e = {0};
    assert_int_equal(rq_npy_dir_read_f32(fdir, 3, &x, &h, &e), RQ_OK);
    assert_int_equal(h.ndim, 4);
    assert_true(h.shape[0] == 3 && h.shape[1] == C && h.shape[2] == H && h.shape[3] == W && h.numel == T);
    assert_memory_equal(x, g_lat, sizeof g_lat);
    free(x);
    assert_int_equal(rq_npy_dir_read_i32(ldir, 0, &y, &h, &e), RQ_OK);
    assert_true(h.ndim == 1 && h.shape[0] == 3 && y[0] == 2 && y[1] == 0 && y[2] == 4);
    free(y);

    /* a different sample shape */
    buf_t f = npy_image("<f4", "(1, 2, 4, 3)", g_lat, sizeof(float) * S);
    snprintf(p, sizeof p, "%s/3.npy", fdir);
    write_file(p, f.b, f.n);
    free(f.b);
    assert_int_equal(rq_npy_dir_read_f32(fdir, 3, &x, &h, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "3.npy: sample dim 1 is 4, 0.npy has 3"));
    /* a gap */
    rq_err_clear(&e);
    snprintf(p, sizeof p, "%s/5.npy", fdir);
    char p3[600];
    snprintf(p3, sizeof p3, "%s/3.npy", fdir);
    assert_int_equal(rename(p3, p), 0);
    assert_int_equal(rq_npy_dir_read_f32(fdir, 3, &x, &h, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "4 files but the largest index is 5: 3.npy is missing"));
    rq_err_clear(&e);
    assert_int_equal(rq_npy_dir_read_f32(tdir(state), 3, &x, &h, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "no files named 0.npy"));
    unlink(p);
}

/* ------------------------------------------------------------------ tool */

static int run(const char *cmd, char *out, size_t cap) {
    char full[2600];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *pp = popen(full, "r");
    if (!pp) return -1;
    size_t n = fread(out, 1, cap - 1, pp);
    out[n] = '\0';
    int st = pclose(pp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_dataset(const char *path, double scale) {
    rq_dataset ds;
    rq_err e = {0};
    if (rq_dataset_load(path, &ds, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ds.kind, RQ_DATA_LATENTS);
    assert_true(ds.n == N && ds.c == C && ds.h == H && ds.w == W && ds.num_classes == 5);
    assert_true(fabs(ds.scale - scale) < 1e-12);
    for (int i = 0; i < T; i++) assert_true(ds.x[i] == (float)(g_lat[i] * scale) || ds.x[i] == g_lat[i] * (float)scale);
    assert_true(ds.labels[0] == 2 && ds.labels[1] == 0 && ds.labels[2] == 4);
    rq_dataset_free(&ds);
}

static void test_cli_npy(void **state) {
    init_arrays();
    const char *d = tdir(state);
    char az[512], out[512], cmd[2400], log[8192], p[600];
    snprintf(az, sizeof az, "%s/feat.npz", d);
    snprintf(out, sizeof out, "%s/lat.h5", d);
    zmember m[2] = {{"features.npy", npy_image("<f4", "(3, 2, 3, 4)", g_lat, sizeof g_lat), 1},
                    {"y.npy", npy_image("<i8", "(3,)", g_lab, sizeof g_lab), 1}};
    buf_t z = make_zip(m, 2, (zopts){1, 0});
    write_file(az, z.b, z.n);
    free(z.b);

    /* one archive: keys found by name, default scale 0.18215, warning about std */
    snprintf(cmd, sizeof cmd, "%s npy %s %s --num-classes 5", DATA_TOOL, az, out);
    assert_int_equal(run(cmd, log, sizeof log), 0);
    assert_non_null(strstr(log, "wrote 3 latents (2x3x4), 5 classes"));
    assert_non_null(strstr(log, "latent scale 0.18215"));
    assert_non_null(strstr(log, "warning: latents * 0.18215 have std"));
    check_dataset(out, 0.18215);
    /* members named explicitly, separate arguments, --scale */
    snprintf(cmd, sizeof cmd, "%s npy %s:features %s:y.npy %s --scale 0.5 --num-classes 5", DATA_TOOL, az, az, out);
    assert_int_equal(run(cmd, log, sizeof log), 0);
    check_dataset(out, 0.5);
    /* fast-DiT folders: scale 1 by default, no warning */
    char fdir[512], ldir[512];
    snprintf(fdir, sizeof fdir, "%s/imagenet256_features", d);
    snprintf(ldir, sizeof ldir, "%s/imagenet256_labels", d);
    mkdir(fdir, 0755), mkdir(ldir, 0755);
    for (int i = 0; i < N; i++) {
        buf_t f = npy_image("<f4", "(1, 2, 3, 4)", g_lat + i * C * H * W, sizeof(float) * C * H * W);
        snprintf(p, sizeof p, "%s/%d.npy", fdir, i);
        write_file(p, f.b, f.n);
        free(f.b);
        buf_t l = npy_image("<i8", "(1,)", &g_lab[i], 8);
        snprintf(p, sizeof p, "%s/%d.npy", ldir, i);
        write_file(p, l.b, l.n);
        free(l.b);
    }
    snprintf(cmd, sizeof cmd, "%s npy %s %s %s --num-classes 5", DATA_TOOL, fdir, ldir, out);
    assert_int_equal(run(cmd, log, sizeof log), 0);
    assert_non_null(strstr(log, "latent scale 1 "));
    assert_null(strstr(log, "warning"));
    check_dataset(out, 1.0);

    /* errors */
    snprintf(cmd, sizeof cmd, "%s npy %s %s --labels-key nope", DATA_TOOL, az, out);
    assert_int_equal(run(cmd, log, sizeof log), 1);
    assert_non_null(strstr(log, "no member 'nope' (members: features.npy, y.npy)"));
    zmember only = {"stuff.npy", npy_image("<i8", "(3,)", g_lab, sizeof g_lab), 0};
    z = make_zip(&only, 1, (zopts){0, 0});
    snprintf(p, sizeof p, "%s/only.npz", d);
    write_file(p, z.b, z.n);
    free(z.b), free(only.data.b);
    snprintf(cmd, sizeof cmd, "%s npy %s %s", DATA_TOOL, p, out);
    assert_int_equal(run(cmd, log, sizeof log), 1);
    assert_non_null(strstr(log, "give --latents-key"));
    snprintf(cmd, sizeof cmd, "%s npy %s %s %s --latents-key x", DATA_TOOL, fdir, ldir, out);
    assert_int_equal(run(cmd, log, sizeof log), 2);
    snprintf(cmd, sizeof cmd, "%s npy %s %s", DATA_TOOL, fdir, out);
    assert_int_equal(run(cmd, log, sizeof log), 2);
    /* labels count differs from latents: one line, exit 1 */
    snprintf(p, sizeof p, "%s/2.npy", ldir);
    unlink(p);
    snprintf(cmd, sizeof cmd, "%s npy %s %s %s", DATA_TOOL, fdir, ldir, out);
    assert_int_equal(run(cmd, log, sizeof log), 1);
    assert_non_null(strstr(log, "labels must have shape (3,)"));
    free(m[0].data.b), free(m[1].data.b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_npz_read, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_npz_malformed, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_npy_dir, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_cli_npy, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
