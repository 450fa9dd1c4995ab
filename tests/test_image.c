/* test_image.c: PNG round trips and failure modes, sample grids, charts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "robuq/image.h"
#include "testutil.h"

typedef struct {
    char dir[256];
    char path[512];
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/rq_test_image_XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    tu_rmtree(fx->dir);
    free(fx);
    return 0;
}

static const char *tmp_path(fixture *fx, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s/%s", fx->dir, name);
    memcpy(fx->path, full, sizeof full);
    return fx->path;
}

/* No "<x>.tmp.<pid>" file may be left behind by an atomic write. */
static void assert_no_temp_files(fixture *fx) {
    DIR *d = opendir(fx->dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temp file left: %s", e->d_name);
    closedir(d);
}

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *slurp(const char *p, long *n) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    long len = file_size(p);
    if (len <= 0) {
        fclose(f);
        fail_msg("cannot stat %s", p);
        return NULL;
    }
    *n = len;
    unsigned char *b = malloc((size_t)len);
    assert_int_equal(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

static void spit(const char *p, const unsigned char *b, long n) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

/* ------------------------------------------------------------------ */

static void test_png_roundtrip(void **state) {
    fixture *fx = *state;
    const int sizes[][2] = {{1, 1}, {7, 5}, {33, 17}, {2, 64}};
    const int chans[] = {1, 3, 4};
    uint32_t seed = 42;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (size_t k = 0; k < 3; k++) {
            int w = sizes[s][0], h = sizes[s][1], c = chans[k];
            size_t n = (size_t)w * h * c;
            uint8_t *px = malloc(n);
            for (size_t i = 0; i < n; i++) px[i] = (uint8_t)lcg(&seed);
            const char *p = tmp_path(fx, "rt.png");
            rq_err err = {0};
            assert_int_equal(rq_png_write(p, px, w, h, c, &err), RQ_OK);
            uint8_t *back = NULL;
            int bw, bh, bc;
            assert_int_equal(rq_png_read(p, &back, &bw, &bh, &bc, &err), RQ_OK);
            assert_int_equal(bw, w);
            assert_int_equal(bh, h);
            assert_int_equal(bc, c);
            assert_memory_equal(back, px, n);
            free(back);
            free(px);
        }
    }
    assert_no_temp_files(fx);
}

static void test_png_write_errors(void **state) {
    fixture *fx = *state;
    uint8_t px[12] = {0};
    rq_err err = {0};
    assert_int_equal(rq_png_write(tmp_path(fx, "x.png"), px, 2, 2, 2, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_png_write(tmp_path(fx, "x.png"), px, 0, 2, 1, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_png_write(NULL, px, 2, 2, 1, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_png_write(tmp_path(fx, "x.png"), NULL, 2, 2, 1, &err), RQ_EINVAL);
    rq_err_clear(&err);
    const char *bad = tmp_path(fx, "no/such/dir/x.png");
    assert_int_equal(rq_png_write(bad, px, 2, 2, 3, &err), RQ_EIO);
    assert_non_null(strstr(err.msg, bad));
    assert_no_temp_files(fx);
}

static void test_png_read_errors(void **state) {
    fixture *fx = *state;
    rq_err err = {0};
    uint8_t *px = (uint8_t *)1;
    int w, h, c;

    /* missing file */
    const char *missing = tmp_path(fx, "missing.png");
    assert_int_equal(rq_png_read(missing, &px, &w, &h, &c, &err), RQ_EIO);
    assert_null(px);
    assert_non_null(strstr(err.msg, missing));
    assert_int_equal(rq_png_read(missing, NULL, &w, &h, &c, NULL), RQ_EINVAL);

    /* not a PNG at all */
    rq_err_clear(&err);
    const char *txt = tmp_path(fx, "text.png");
    spit(txt, (const unsigned char *)"hello, this is not an image\n", 28);
    assert_int_equal(rq_png_read(txt, &px, &w, &h, &c, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, txt));
    rq_err_clear(&err);
    spit(txt, (const unsigned char *)"", 0); /* empty file */
    assert_int_equal(rq_png_read(txt, &px, &w, &h, &c, &err), RQ_EFORMAT);

    /* a valid image, then every truncation of it */
    enum { W = 40, H = 30 };
    uint8_t img[W * H * 3];
    uint32_t seed = 7;
    for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)lcg(&seed); /* incompressible: IDAT is large */
    char good[512];
    snprintf(good, sizeof good, "%s", tmp_path(fx, "good.png"));
    rq_err_clear(&err);
    assert_int_equal(rq_png_write(good, img, W, H, 3, &err), RQ_OK);
    long n = 0;
    unsigned char *bytes = slurp(good, &n);
    assert_true(n > 3000);
    char cut[512];
    snprintf(cut, sizeof cut, "%s", tmp_path(fx, "cut.png"));
    for (long len = 0; len < n; len += (len < 64 ? 1 : 97)) {
        spit(cut, bytes, len);
        rq_err_clear(&err);
        px = NULL;
        rq_status st = rq_png_read(cut, &px, &w, &h, &c, &err);
        if (st != RQ_EFORMAT) fail_msg("truncated to %ld of %ld bytes: status %d (%s)", len, n, st, err.msg);
        assert_null(px);
        assert_non_null(strstr(err.msg, cut));
    }
    spit(cut, bytes, n - 1); /* only the last CRC byte missing */
    rq_err_clear(&err);
    assert_int_equal(rq_png_read(cut, &px, &w, &h, &c, &err), RQ_EFORMAT);

    /* flipped bytes: in IHDR (CRC error) and in the middle of IDAT */
    long spots[] = {18, n / 2, n - 20};
    for (size_t i = 0; i < sizeof spots / sizeof *spots; i++) {
        unsigned char *bad = malloc((size_t)n);
        memcpy(bad, bytes, (size_t)n);
        bad[spots[i]] ^= 0x5A;
        spit(cut, bad, n);
        free(bad);
        rq_err_clear(&err);
        px = NULL;
        rq_status st = rq_png_read(cut, &px, &w, &h, &c, &err);
        if (st != RQ_EFORMAT) fail_msg("byte %ld flipped: status %d", spots[i], st);
        assert_null(px);
    }
    free(bytes);

    /* the good file still reads */
    rq_err_clear(&err);
    assert_int_equal(rq_png_read(good, &px, &w, &h, &c, &err), RQ_OK);
    assert_memory_equal(px, img, sizeof img);
    free(px);
}

/* Write a PNG of an arbitrary libpng format (for the conversion test). */
static void write_raw_png(const char *path, int w, int h, int depth, int ctype, const uint8_t *rows,
                          size_t rowbytes, const png_color *pal, int npal, const uint8_t *trns, int ntrns) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng error writing fixture");
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, rows + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void test_png_conversions(void **state) {
    fixture *fx = *state;
    rq_err err = {0};
    uint8_t *px;
    int w, h, c;
    const char *p = tmp_path(fx, "conv.png");

    /* palette with transparency -> RGBA */
    png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    uint8_t trns[3] = {255, 128, 0};
    uint8_t idx[2 * 3] = {0, 1, 2, 2, 1, 0};
    write_raw_png(p, 3, 2, 8, PNG_COLOR_TYPE_PALETTE, idx, 3, pal, 3, trns, 3);
    assert_int_equal(rq_png_read(p, &px, &w, &h, &c, &err), RQ_OK);
    assert_int_equal(c, 4);
    assert_int_equal(w, 3);
    assert_int_equal(h, 2);
    const uint8_t want_pal[4 * 3] = {255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 0};
    assert_memory_equal(px, want_pal, 12);
    free(px);

    /* palette without transparency -> RGB */
    write_raw_png(p, 3, 2, 8, PNG_COLOR_TYPE_PALETTE, idx, 3, pal, 3, NULL, 0);
    assert_int_equal(rq_png_read(p, &px, &w, &h, &c, &err), RQ_OK);
    assert_int_equal(c, 3);
    assert_int_equal(px[3 * 5 + 0], 255); /* pixel (2,1) = index 0 = red */
    free(px);

    /* 16-bit RGB -> 8-bit (big-endian samples, scaled) */
    uint8_t rgb16[2 * 6] = {0xFF, 0xFF, 0x00, 0x00, 0x80, 0x80, 0x12, 0x34, 0xAB, 0xCD, 0x00, 0xFF};
    write_raw_png(p, 2, 1, 16, PNG_COLOR_TYPE_RGB, rgb16, 12, NULL, 0, NULL, 0);
    assert_int_equal(rq_png_read(p, &px, &w, &h, &c, &err), RQ_OK);
    assert_int_equal(c, 3);
    const uint8_t want16[6] = {255, 0, 128, 0x12, 0xAB, 1};
    for (int i = 0; i < 6; i++) assert_true(abs(px[i] - want16[i]) <= 1);
    free(px);

    /* gray + alpha -> RGBA */
    uint8_t ga[2 * 2] = {10, 200, 250, 0};
    write_raw_png(p, 2, 1, 8, PNG_COLOR_TYPE_GRAY_ALPHA, ga, 4, NULL, 0, NULL, 0);
    assert_int_equal(rq_png_read(p, &px, &w, &h, &c, &err), RQ_OK);
    assert_int_equal(c, 4);
    const uint8_t want_ga[8] = {10, 10, 10, 200, 250, 250, 250, 0};
    assert_memory_equal(px, want_ga, 8);
    free(px);

    /* 1-bit gray -> 0 / 255 */
    uint8_t bits[1] = {0xA0}; /* 1 0 1 0 */
    write_raw_png(p, 4, 1, 1, PNG_COLOR_TYPE_GRAY, bits, 1, NULL, 0, NULL, 0);
    assert_int_equal(rq_png_read(p, &px, &w, &h, &c, &err), RQ_OK);
    assert_int_equal(c, 1);
    assert_int_equal(w, 4);
    const uint8_t want_bits[4] = {255, 0, 255, 0};
    assert_memory_equal(px, want_bits, 4);
    free(px);
}

/* ------------------------------------------------------------------ */

static void test_grid_layout(void **state) {
    fixture *fx = *state;
    enum { N = 5, C = 1, H = 3, W = 4 };
    float img[N * C * H * W];
    /* image i: pixel (x, y) = -1 + 0.1*i + 0.05*(x + y); a few special values */
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) img[(i * H + y) * W + x] = -1.0f + 0.1f * i + 0.05f * (x + y);
    img[0] = -3.0f;      /* clamps to 0 */
    img[1] = 5.0f;       /* clamps to 255 */
    img[2] = NAN;        /* -> 0 */
    img[3] = 0.0f;       /* 127.5 rounds to 128 */
    uint8_t *g;
    int gw, gh;
    rq_err err = {0};
    assert_int_equal(rq_image_grid(img, N, C, H, W, 3, &g, &gw, &gh, &err), RQ_OK);
    assert_int_equal(gw, 3 * (W + 2) + 2); /* 20 */
    assert_int_equal(gh, 2 * (H + 2) + 2); /* 12 */
    for (int i = 0; i < N; i++) {
        int ox = 2 + (i % 3) * (W + 2), oy = 2 + (i / 3) * (H + 2);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float v = img[(i * H + y) * W + x];
                int want = isnan(v) ? 0 : (int)fmin(255, fmax(0, floor((v + 1) * 127.5 + 0.5)));
                assert_int_equal(g[(oy + y) * gw + ox + x], want);
            }
    }
    assert_int_equal(g[0], 0);
    assert_int_equal(g[2 * gw + 2], 0);
    assert_int_equal(g[2 * gw + 3], 255);
    assert_int_equal(g[2 * gw + 5], 128);
    /* padding rows/cols and the empty 6th cell are black */
    for (int x = 0; x < gw; x++) {
        assert_int_equal(g[0 * gw + x], 0);
        assert_int_equal(g[1 * gw + x], 0);
        assert_int_equal(g[(2 + H) * gw + x], 0);
        assert_int_equal(g[(gh - 1) * gw + x], 0);
    }
    for (int y = 0; y < gh; y++) assert_int_equal(g[y * gw + 2 + W], 0);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) assert_int_equal(g[(2 + (H + 2) + y) * gw + 2 + 2 * (W + 2) + x], 0);
    free(g);

    /* RGB, cols = 0 -> square-ish; channel order interleaved */
    float rgb[2 * 3 * 1 * 1] = {-1, 0, 1, 1, 1, -1};
    assert_int_equal(rq_image_grid(rgb, 2, 3, 1, 1, 0, &g, &gw, &gh, &err), RQ_OK);
    assert_int_equal(gw, 2 * 3 + 2);
    assert_int_equal(gh, 1 * 3 + 2);
    const uint8_t p0[3] = {0, 128, 255}, p1[3] = {255, 255, 0};
    assert_memory_equal(&g[(2 * gw + 2) * 3], p0, 3);
    assert_memory_equal(&g[(2 * gw + 5) * 3], p1, 3);
    free(g);

    /* argument checks */
    assert_int_equal(rq_image_grid(rgb, 2, 2, 1, 1, 0, &g, &gw, &gh, &err), RQ_EINVAL);
    assert_null(g);
    rq_err_clear(&err);
    assert_int_equal(rq_image_grid(rgb, 0, 3, 1, 1, 0, &g, &gw, &gh, &err), RQ_EINVAL);

    /* save = grid + png */
    rq_err_clear(&err);
    const char *p = tmp_path(fx, "grid.png");
    assert_int_equal(rq_image_grid_save(p, img, N, C, H, W, 2, &err), RQ_OK);
    uint8_t *px;
    int w, h, c;
    assert_int_equal(rq_png_read(p, &px, &w, &h, &c, &err), RQ_OK);
    assert_int_equal(w, 2 * (W + 2) + 2);
    assert_int_equal(h, 3 * (H + 2) + 2);
    assert_int_equal(c, 1);
    assert_int_equal(px[2 * w + 3], 255);
    free(px);
}

/* ------------------------------------------------------------------ */
/* charts: read the PNG back and look for the series colours             */

typedef struct {
    uint8_t *px;
    int w, h;
} rgb_img;

static rgb_img load_rgb(const char *p, int want_w, int want_h) {
    rgb_img im;
    int c;
    rq_err err = {0};
    assert_int_equal(rq_png_read(p, &im.px, &im.w, &im.h, &c, &err), RQ_OK);
    assert_int_equal(c, 3);
    assert_int_equal(im.w, want_w);
    assert_int_equal(im.h, want_h);
    return im;
}

static int is_color(const rgb_img *im, int x, int y, const uint8_t *rgb) {
    return memcmp(im->px + ((size_t)y * im->w + x) * 3, rgb, 3) == 0;
}

/* Mean row of pixels of colour rgb in column x within rows [y0, y1); -1 if none.
 * *count receives how many were found. */
static double color_row(const rgb_img *im, int x, int y0, int y1, const uint8_t *rgb, int *count) {
    double s = 0;
    int n = 0;
    for (int y = y0; y < y1; y++)
        if (is_color(im, x, y, rgb)) { s += y; n++; }
    if (count) *count = n;
    return n ? s / n : -1;
}

static void test_plot_lines(void **state) {
    fixture *fx = *state;
    uint8_t c0[3], c1[3];
    rq_plot_color(0, c0);
    rq_plot_color(1, c1);
    /* 50 points: no markers, so a constant series is a plain 2-pixel line */
    float x[50], lo[50], hi[50];
    for (int i = 0; i < 50; i++) {
        x[i] = (float)i;
        lo[i] = 1.0f;
        hi[i] = 2.0f;
    }
    rq_series s[2] = {{x, lo, 50, "loss one"}, {x, hi, 50, "loss two"}};
    rq_plot_opts o = {0};
    o.title = "Training loss";
    o.xlabel = "step";
    o.ylabel = "loss";
    const char *p = tmp_path(fx, "lines.png");
    rq_err err = {0};
    assert_int_equal(rq_plot_lines(p, s, 2, &o, &err), RQ_OK);
    rgb_img im = load_rgb(p, 800, 500);
    /* both constant lines are horizontal, and series 1 (y=2) is well above series 0 */
    double r0 = -1, r1 = -1;
    for (int k = 0; k < 3; k++) {
        int n0, n1, col = im.w * (4 + 3 * k) / 20; /* 0.2w, 0.35w, 0.5w: clear of the legend */
        double a = color_row(&im, col, 0, im.h, c0, &n0);
        double b = color_row(&im, col, 0, im.h, c1, &n1);
        if (n0 < 1 || n0 > 3 || n1 < 1 || n1 > 3) fail_msg("column %d: %d / %d line pixels", col, n0, n1);
        if (k > 0) {
            assert_true(fabs(a - r0) < 0.01);
            assert_true(fabs(b - r1) < 0.01);
        }
        r0 = a;
        r1 = b;
    }
    assert_true(r1 < r0 - im.h / 2);
    /* the title is drawn: dark pixels near the top centre */
    int dark = 0;
    for (int y = 8; y < 30; y++)
        for (int xx = im.w / 2 - 100; xx < im.w / 2 + 100; xx++) dark += is_color(&im, xx, y, (const uint8_t[3]){0, 0, 0});
    assert_true(dark > 50);
    /* a legend swatch of each colour exists off the lines */
    int sw0 = 0, sw1 = 0;
    for (int y = 0; y < im.h; y++)
        for (int xx = 0; xx < im.w; xx++) {
            if (fabs(y - r0) > 3 && is_color(&im, xx, y, c0)) sw0++;
            if (fabs(y - r1) > 3 && is_color(&im, xx, y, c1)) sw1++;
        }
    assert_true(sw0 > 10 && sw1 > 10);
    /* the legend box must not hide either line anywhere */
    for (int xx = im.w / 10; xx < im.w * 9 / 10; xx++) {
        int hit0 = 0, hit1 = 0;
        for (int d = -1; d <= 1; d++) {
            hit0 |= is_color(&im, xx, (int)r0 + d, c0);
            hit1 |= is_color(&im, xx, (int)r1 + d, c1);
        }
        if (!hit0 || !hit1) fail_msg("line hidden at column %d", xx);
    }
    free(im.px);

    rq_series one = {NULL, lo, 50, NULL};
    assert_int_equal(rq_plot_lines(p, &one, 1, NULL, &err), RQ_OK);
    im = load_rgb(p, 800, 500);
    int n;
    double r = color_row(&im, im.w / 2, 0, im.h, c0, &n);
    assert_true(n >= 1 && n <= 3);
    assert_true(r > im.h * 0.3 && r < im.h * 0.7);
    free(im.px);

    /* a straight line y = x: equally spaced columns give equally spaced rows */
    rq_series diag = {x, x, 50, "y = x"};
    o.width = 640;
    o.height = 480;
    assert_int_equal(rq_plot_lines(p, &diag, 1, &o, &err), RQ_OK);
    im = load_rgb(p, 640, 480);
    double ra = color_row(&im, 280, 60, 420, c0, NULL), rb = color_row(&im, 320, 60, 420, c0, NULL),
           rc = color_row(&im, 360, 60, 420, c0, NULL);
    assert_true(ra > rb && rb > rc && rc > 0);
    assert_true(fabs((ra - rb) - (rb - rc)) <= 2.0);
    free(im.px);

    /* log y: y = 10^(x/4) is a straight line; a zero and a NaN are skipped */
    float ly[50];
    for (int i = 0; i < 50; i++) ly[i] = powf(10.0f, x[i] / 20.0f);
    ly[0] = 0.0f;
    ly[49] = NAN;
    rq_series lg = {x, ly, 50, "exp"};
    o.log_y = 1;
    assert_int_equal(rq_plot_lines(p, &lg, 1, &o, &err), RQ_OK);
    im = load_rgb(p, 640, 480);
    ra = color_row(&im, 280, 60, 420, c0, NULL);
    rb = color_row(&im, 320, 60, 420, c0, NULL);
    rc = color_row(&im, 360, 60, 420, c0, NULL);
    assert_true(ra > rb && rb > rc && rc > 0);
    assert_true(fabs((ra - rb) - (rb - rc)) <= 2.0);
    free(im.px);

    /* errors */
    rq_err_clear(&err);
    assert_int_equal(rq_plot_lines(p, s, 0, &o, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_plot_lines(p, s, RQ_PLOT_MAX_SERIES + 1, &o, &err), RQ_EINVAL);
    float nan3[3] = {NAN, NAN, NAN};
    rq_series bad = {NULL, nan3, 3, "nan"};
    rq_err_clear(&err);
    assert_int_equal(rq_plot_lines(p, &bad, 1, NULL, &err), RQ_EINVAL);
    rq_plot_opts tiny = {0};
    tiny.width = 10;
    tiny.height = 10;
    rq_err_clear(&err);
    assert_int_equal(rq_plot_lines(p, &one, 1, &tiny, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_plot_lines(tmp_path(fx, "nodir/x.png"), &one, 1, NULL, &err), RQ_EIO);
    assert_no_temp_files(fx);
}

/* Runs of consecutive columns that contain colour rgb in row y. */
static int bar_runs(const rgb_img *im, int y, const uint8_t *rgb, int *mid, int max) {
    int n = 0, start = -1;
    for (int x = 0; x <= im->w; x++) {
        int on = x < im->w && is_color(im, x, y, rgb);
        if (on && start < 0) start = x;
        if (!on && start >= 0) {
            if (n < max) mid[n] = (start + x - 1) / 2;
            n++;
            start = -1;
        }
    }
    return n;
}

static void test_plot_bars(void **state) {
    fixture *fx = *state;
    uint8_t c0[3];
    rq_plot_color(0, c0);
    float v[4] = {1, 2, 3, 4};
    const char *labels[4] = {"qkv", "proj", "fc1", "fc2"};
    rq_plot_opts o = {0};
    o.title = "bits per layer";
    o.ylabel = "bits";
    const char *p = tmp_path(fx, "bars.png");
    rq_err err = {0};
    assert_int_equal(rq_plot_bars(p, v, labels, 4, &o, &err), RQ_OK);
    rgb_img im = load_rgb(p, 800, 500);
    /* find the bottom row of the bars: lowest row with bar colour */
    int base = -1;
    for (int y = im.h - 1; y >= 0 && base < 0; y--)
        for (int x = 0; x < im.w; x++)
            if (is_color(&im, x, y, c0)) { base = y; break; }
    assert_true(base > im.h / 2);
    int mid[8];
    assert_int_equal(bar_runs(&im, base, c0, mid, 8), 4);
    int hgt[4];
    for (int i = 0; i < 4; i++) {
        int n;
        color_row(&im, mid[i], 0, im.h, c0, &n);
        hgt[i] = n;
    }
    for (int i = 1; i < 4; i++) assert_true(abs(hgt[i] - (i + 1) * hgt[0]) <= 3);
    assert_true(hgt[3] > im.h / 3);
    free(im.px);

    /* many bars with long labels and a negative value: no crash, right size */
    enum { NB = 120 };
    float many[NB];
    const char *names[NB];
    char buf[NB][32];
    for (int i = 0; i < NB; i++) {
        many[i] = (float)(i % 4) + 1.0f;
        snprintf(buf[i], sizeof buf[i], "blocks.%d.mlp.fc2", i);
        names[i] = buf[i];
    }
    many[5] = -2.0f;
    many[6] = NAN;
    assert_int_equal(rq_plot_bars(p, many, names, NB, NULL, &err), RQ_OK);
    im = load_rgb(p, 800, 500);
    int runs = 0;
    int mids[NB + 8];
    for (int y = 0; y < im.h && runs < NB - 2; y++) {
        int r = bar_runs(&im, y, c0, mids, NB + 8);
        if (r > runs) runs = r;
    }
    assert_true(runs >= NB - 2); /* every finite positive bar is visible in some row */
    free(im.px);

    assert_int_equal(rq_plot_bars(p, v, NULL, 4, NULL, &err), RQ_OK); /* numbered bars */
    rq_err_clear(&err);
    assert_int_equal(rq_plot_bars(p, v, labels, 0, NULL, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_plot_bars(p, NULL, labels, 4, NULL, &err), RQ_EINVAL);
    assert_no_temp_files(fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_png_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_png_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_png_read_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_png_conversions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grid_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plot_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plot_bars, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
