/* image.c: PNG I/O via libpng, sample grids, and minimal line / bar charts
 * drawn with a built-in 5x7 bitmap font (no other dependency). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getpid */
#endif
#include "robuq/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* PNG                                                                 */

/* libpng reports errors through a callback that must not return; we save the
 * message and longjmp back to the setjmp in the caller. */
typedef struct {
    char msg[256];
} png_errbuf;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_errbuf *e = png_get_error_ptr(png);
    if (e) snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png; /* warnings (bad ancillary chunks, ...) do not stop a read */
    (void)msg;
}

rq_status rq_png_write(const char *path, const uint8_t *pixels, int w, int h, int channels, rq_err *err) {
    if (!path || !*path || !pixels) return rq_err_set(err, RQ_EINVAL, "rq_png_write: NULL path or pixels");
    if (w <= 0 || h <= 0 || w > (1 << 20) || h > (1 << 20))
        return rq_err_set(err, RQ_EINVAL, "rq_png_write '%s': bad size %dx%d", path, w, h);
    int type = channels == 1 ? PNG_COLOR_TYPE_GRAY
             : channels == 3 ? PNG_COLOR_TYPE_RGB
             : channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : -1;
    if (type < 0) return rq_err_set(err, RQ_EINVAL, "rq_png_write '%s': channels must be 1, 3 or 4, got %d", path, channels);

    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp) return rq_err_set(err, RQ_ENOMEM, "rq_png_write '%s': out of memory", path);
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rq_status st = rq_err_set(err, RQ_EIO, "cannot write PNG '%s': %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    png_errbuf eb = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &eb, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(tmp);
        free(tmp);
        return rq_err_set(err, RQ_ENOMEM, "rq_png_write '%s': out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(tmp);
        free(tmp);
        return rq_err_set(err, RQ_EIO, "cannot write PNG '%s': %s", path, eb.msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, pixels + (size_t)y * (size_t)w * (size_t)channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);

    /* a full disk may only show up at flush/close time */
    int bad = fflush(f) != 0 || ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        rq_status st = rq_err_set(err, RQ_EIO, "cannot write PNG '%s': %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return RQ_OK;
}

rq_status rq_png_read(const char *path, uint8_t **pixels, int *w, int *h, int *channels, rq_err *err) {
    if (pixels) *pixels = NULL;
    if (!path || !pixels || !w || !h || !channels) return rq_err_set(err, RQ_EINVAL, "rq_png_read: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "cannot open PNG '%s': %s", path, strerror(errno));
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(f);
        return rq_err_set(err, RQ_EFORMAT, "'%s' is not a PNG file", path);
    }
    png_errbuf eb = {{0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &eb, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return rq_err_set(err, RQ_ENOMEM, "rq_png_read '%s': out of memory", path);
    }
    /* assigned after setjmp, so volatile: their values must survive longjmp */
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(buf);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return rq_err_set(err, RQ_EFORMAT, "corrupt PNG '%s': %s", path, eb.msg);
    }
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    /* A forged header or chunk length must not make us allocate gigabytes:
     * at most 65536 x 65536 pixels, 1 GiB decoded (checked below), and 8 MiB
     * for any ancillary chunk (text, ICC profile, ...; libpng's own default
     * is unlimited in some builds: a 2 GB tEXt length was enough). */
    png_set_user_limits(png, 1 << 16, 1 << 16);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_set_chunk_cache_max(png, 1000);
    /* We only need the pixels: skip every ancillary chunk but tRNS without
     * reading it into memory. (libpng 1.6.39 allocated the declared length
     * of a tEXt chunk, 1.9 GB for a 117-byte fuzzed file, despite the
     * chunk_malloc_max limit.) Unknown chunks are discarded the same way. */
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf\0pCAL\0sCAL\0hIST\0tIME\0bKGD\0"
                                   "cHRM\0gAMA\0sRGB\0oFFs\0pHYs\0sBIT\0";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
    png_read_info(png, info);

    int ctype = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    int trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    int gray = !(ctype & PNG_COLOR_MASK_COLOR) && ctype != PNG_COLOR_TYPE_PALETTE;
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (gray && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (trns) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_scale_16(png);
    if (gray && ((ctype & PNG_COLOR_MASK_ALPHA) || trns)) png_set_gray_to_rgb(png); /* no 2-channel output */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int iw = (int)png_get_image_width(png, info), ih = (int)png_get_image_height(png, info);
    int c = png_get_channels(png, info);
    size_t row = (size_t)iw * (size_t)c;
    if ((c != 1 && c != 3 && c != 4) || png_get_rowbytes(png, info) != row)
        png_error(png, "unsupported pixel layout after conversion");
    if (row * (size_t)ih > ((size_t)1 << 30)) png_error(png, "image larger than 1 GiB decoded");
    buf = malloc(row * (size_t)ih);
    rows = malloc(sizeof(png_bytep) * (size_t)ih);
    if (!buf || !rows) png_error(png, "out of memory");
    for (int y = 0; y < ih; y++) rows[y] = buf + (size_t)y * row;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* also catches a file cut right after the pixel data */

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    *pixels = buf;
    *w = iw;
    *h = ih;
    *channels = c;
    return RQ_OK;
}

/* ------------------------------------------------------------------ */
/* sample grid                                                         */

static uint8_t to_u8(float v) {
    double t = ((double)v + 1.0) * 127.5;
    if (!(t > 0.0)) return 0; /* also NaN */
    if (t >= 255.0) return 255;
    return (uint8_t)(t + 0.5);
}

rq_status rq_image_grid(const float *images, int n, int c, int h, int w, int cols, uint8_t **out,
                        int *out_w, int *out_h, rq_err *err) {
    if (out) *out = NULL;
    if (!images || !out || !out_w || !out_h) return rq_err_set(err, RQ_EINVAL, "rq_image_grid: NULL argument");
    if (n <= 0 || h <= 0 || w <= 0 || (c != 1 && c != 3 && c != 4) || h > (1 << 14) || w > (1 << 14))
        return rq_err_set(err, RQ_EINVAL, "rq_image_grid: bad shape n=%d c=%d h=%d w=%d (c must be 1, 3 or 4)",
                          n, c, h, w);
    if (cols <= 0) {
        cols = (int)ceil(sqrt((double)n));
        while (cols * cols < n) cols++; /* guard against sqrt rounding */
    }
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    long gw = (long)cols * (w + RQ_GRID_PAD) + RQ_GRID_PAD, gh = (long)rows * (h + RQ_GRID_PAD) + RQ_GRID_PAD;
    if (gw > (1 << 20) || gh > (1 << 20))
        return rq_err_set(err, RQ_EINVAL, "rq_image_grid: grid %ldx%ld too large", gw, gh);
    uint8_t *g = calloc((size_t)gw * (size_t)gh * (size_t)c, 1); /* border = black */
    if (!g) return rq_err_set(err, RQ_ENOMEM, "rq_image_grid: out of memory");
    for (int i = 0; i < n; i++) {
        int ox = RQ_GRID_PAD + (i % cols) * (w + RQ_GRID_PAD);
        int oy = RQ_GRID_PAD + (i / cols) * (h + RQ_GRID_PAD);
        for (int k = 0; k < c; k++) {
            const float *plane = images + ((size_t)i * c + k) * (size_t)h * w;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    g[(((size_t)(oy + y) * gw) + ox + x) * c + k] = to_u8(plane[(size_t)y * w + x]);
        }
    }
    *out = g;
    *out_w = (int)gw;
    *out_h = (int)gh;
    return RQ_OK;
}

rq_status rq_image_grid_save(const char *path, const float *images, int n, int c, int h, int w, int cols,
                             rq_err *err) {
    if (!path) return rq_err_set(err, RQ_EINVAL, "rq_image_grid_save: NULL path");
    uint8_t *g;
    int gw, gh;
    rq_status st = rq_image_grid(images, n, c, h, w, cols, &g, &gw, &gh, err);
    if (st != RQ_OK) return st;
    st = rq_png_write(path, g, gw, gh, c, err);
    free(g);
    return st;
}

/* ------------------------------------------------------------------ */
/* 5x7 bitmap font for ASCII 32..126: 7 rows, bit 4 = leftmost column.    */

static const uint8_t FONT[95][7] = {
    {0x00,0x00,0x00,0x00,0x00,0x00,0x00}, /*   */
    {0x04,0x04,0x04,0x04,0x04,0x00,0x04}, /* ! */
    {0x0A,0x0A,0x0A,0x00,0x00,0x00,0x00}, /* " */
    {0x0A,0x0A,0x1F,0x0A,0x1F,0x0A,0x0A}, /* # */
    {0x04,0x0F,0x14,0x0E,0x05,0x1E,0x04}, /* $ */
    {0x18,0x19,0x02,0x04,0x08,0x13,0x03}, /* % */
    {0x0C,0x12,0x14,0x08,0x15,0x12,0x0D}, /* & */
    {0x04,0x04,0x08,0x00,0x00,0x00,0x00}, /* ' */
    {0x02,0x04,0x08,0x08,0x08,0x04,0x02}, /* ( */
    {0x08,0x04,0x02,0x02,0x02,0x04,0x08}, /* ) */
    {0x00,0x04,0x15,0x0E,0x15,0x04,0x00}, /* * */
    {0x00,0x04,0x04,0x1F,0x04,0x04,0x00}, /* + */
    {0x00,0x00,0x00,0x00,0x0C,0x04,0x08}, /* , */
    {0x00,0x00,0x00,0x1F,0x00,0x00,0x00}, /* - */
    {0x00,0x00,0x00,0x00,0x00,0x0C,0x0C}, /* . */
    {0x00,0x01,0x02,0x04,0x08,0x10,0x00}, /* / */
    {0x0E,0x11,0x13,0x15,0x19,0x11,0x0E}, /* 0 */
    {0x04,0x0C,0x04,0x04,0x04,0x04,0x0E}, /* 1 */
    {0x0E,0x11,0x01,0x02,0x04,0x08,0x1F}, /* 2 */
    {0x1F,0x02,0x04,0x02,0x01,0x11,0x0E}, /* 3 */
    {0x02,0x06,0x0A,0x12,0x1F,0x02,0x02}, /* 4 */
    {0x1F,0x10,0x1E,0x01,0x01,0x11,0x0E}, /* 5 */
    {0x06,0x08,0x10,0x1E,0x11,0x11,0x0E}, /* 6 */
    {0x1F,0x01,0x02,0x04,0x08,0x08,0x08}, /* 7 */
    {0x0E,0x11,0x11,0x0E,0x11,0x11,0x0E}, /* 8 */
    {0x0E,0x11,0x11,0x0F,0x01,0x02,0x0C}, /* 9 */
    {0x00,0x0C,0x0C,0x00,0x0C,0x0C,0x00}, /* : */
    {0x00,0x0C,0x0C,0x00,0x0C,0x04,0x08}, /* ; */
    {0x02,0x04,0x08,0x10,0x08,0x04,0x02}, /* < */
    {0x00,0x00,0x1F,0x00,0x1F,0x00,0x00}, /* = */
    {0x08,0x04,0x02,0x01,0x02,0x04,0x08}, /* > */
    {0x0E,0x11,0x01,0x02,0x04,0x00,0x04}, /* ? */
    {0x0E,0x11,0x01,0x0D,0x15,0x15,0x0E}, /* @ */
    {0x0E,0x11,0x11,0x1F,0x11,0x11,0x11}, /* A */
    {0x1E,0x11,0x11,0x1E,0x11,0x11,0x1E}, /* B */
    {0x0E,0x11,0x10,0x10,0x10,0x11,0x0E}, /* C */
    {0x1C,0x12,0x11,0x11,0x11,0x12,0x1C}, /* D */
    {0x1F,0x10,0x10,0x1E,0x10,0x10,0x1F}, /* E */
    {0x1F,0x10,0x10,0x1E,0x10,0x10,0x10}, /* F */
    {0x0E,0x11,0x10,0x17,0x11,0x11,0x0F}, /* G */
    {0x11,0x11,0x11,0x1F,0x11,0x11,0x11}, /* H */
    {0x0E,0x04,0x04,0x04,0x04,0x04,0x0E}, /* I */
    {0x07,0x02,0x02,0x02,0x02,0x12,0x0C}, /* J */
    {0x11,0x12,0x14,0x18,0x14,0x12,0x11}, /* K */
    {0x10,0x10,0x10,0x10,0x10,0x10,0x1F}, /* L */
    {0x11,0x1B,0x15,0x15,0x11,0x11,0x11}, /* M */
    {0x11,0x11,0x19,0x15,0x13,0x11,0x11}, /* N */
    {0x0E,0x11,0x11,0x11,0x11,0x11,0x0E}, /* O */
    {0x1E,0x11,0x11,0x1E,0x10,0x10,0x10}, /* P */
    {0x0E,0x11,0x11,0x11,0x15,0x12,0x0D}, /* Q */
    {0x1E,0x11,0x11,0x1E,0x14,0x12,0x11}, /* R */
    {0x0F,0x10,0x10,0x0E,0x01,0x01,0x1E}, /* S */
    {0x1F,0x04,0x04,0x04,0x04,0x04,0x04}, /* T */
    {0x11,0x11,0x11,0x11,0x11,0x11,0x0E}, /* U */
    {0x11,0x11,0x11,0x11,0x11,0x0A,0x04}, /* V */
    {0x11,0x11,0x11,0x15,0x15,0x15,0x0A}, /* W */
    {0x11,0x11,0x0A,0x04,0x0A,0x11,0x11}, /* X */
    {0x11,0x11,0x11,0x0A,0x04,0x04,0x04}, /* Y */
    {0x1F,0x01,0x02,0x04,0x08,0x10,0x1F}, /* Z */
    {0x0E,0x08,0x08,0x08,0x08,0x08,0x0E}, /* [ */
    {0x00,0x10,0x08,0x04,0x02,0x01,0x00}, /* backslash */
    {0x0E,0x02,0x02,0x02,0x02,0x02,0x0E}, /* ] */
    {0x04,0x0A,0x11,0x00,0x00,0x00,0x00}, /* ^ */
    {0x00,0x00,0x00,0x00,0x00,0x00,0x1F}, /* _ */
    {0x08,0x04,0x02,0x00,0x00,0x00,0x00}, /* ` */
    {0x00,0x00,0x0E,0x01,0x0F,0x11,0x0F}, /* a */
    {0x10,0x10,0x16,0x19,0x11,0x11,0x1E}, /* b */
    {0x00,0x00,0x0E,0x10,0x10,0x11,0x0E}, /* c */
    {0x01,0x01,0x0D,0x13,0x11,0x11,0x0F}, /* d */
    {0x00,0x00,0x0E,0x11,0x1F,0x10,0x0E}, /* e */
    {0x06,0x09,0x08,0x1C,0x08,0x08,0x08}, /* f */
    {0x00,0x00,0x0F,0x11,0x0F,0x01,0x0E}, /* g */
    {0x10,0x10,0x16,0x19,0x11,0x11,0x11}, /* h */
    {0x04,0x00,0x0C,0x04,0x04,0x04,0x0E}, /* i */
    {0x02,0x00,0x06,0x02,0x02,0x12,0x0C}, /* j */
    {0x10,0x10,0x12,0x14,0x18,0x14,0x12}, /* k */
    {0x0C,0x04,0x04,0x04,0x04,0x04,0x0E}, /* l */
    {0x00,0x00,0x1A,0x15,0x15,0x11,0x11}, /* m */
    {0x00,0x00,0x16,0x19,0x11,0x11,0x11}, /* n */
    {0x00,0x00,0x0E,0x11,0x11,0x11,0x0E}, /* o */
    {0x00,0x00,0x1E,0x11,0x1E,0x10,0x10}, /* p */
    {0x00,0x00,0x0D,0x13,0x0F,0x01,0x01}, /* q */
    {0x00,0x00,0x16,0x19,0x10,0x10,0x10}, /* r */
    {0x00,0x00,0x0E,0x10,0x0E,0x01,0x1E}, /* s */
    {0x08,0x08,0x1C,0x08,0x08,0x09,0x06}, /* t */
    {0x00,0x00,0x11,0x11,0x11,0x13,0x0D}, /* u */
    {0x00,0x00,0x11,0x11,0x11,0x0A,0x04}, /* v */
    {0x00,0x00,0x11,0x11,0x15,0x15,0x0A}, /* w */
    {0x00,0x00,0x11,0x0A,0x04,0x0A,0x11}, /* x */
    {0x00,0x00,0x11,0x11,0x0F,0x01,0x0E}, /* y */
    {0x00,0x00,0x1F,0x02,0x04,0x08,0x1F}, /* z */
    {0x02,0x04,0x04,0x08,0x04,0x04,0x02}, /* { */
    {0x04,0x04,0x04,0x04,0x04,0x04,0x04}, /* | */
    {0x08,0x04,0x04,0x02,0x04,0x04,0x08}, /* } */
    {0x00,0x00,0x08,0x15,0x02,0x00,0x00}, /* ~ */

};

/* ------------------------------------------------------------------ */
/* canvas: RGB pixels + drawing primitives (everything clips)           */

typedef struct {
    uint8_t *px;
    int w, h;
} canvas;

static const uint8_t BLACK[3] = {0, 0, 0}, WHITE[3] = {255, 255, 255}, GRID[3] = {225, 225, 225},
                     TEXT[3] = {40, 40, 40};

/* tab10-like palette: distinct hues, readable on white */
static const uint8_t PALETTE[8][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                      {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {23, 190, 207}};

void rq_plot_color(int i, uint8_t rgb[3]) {
    if (!rgb) return;
    i = ((i % 8) + 8) % 8;
    memcpy(rgb, PALETTE[i], 3);
}

static void put_px(canvas *cv, int x, int y, const uint8_t *c) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    memcpy(cv->px + ((size_t)y * cv->w + x) * 3, c, 3);
}

static void fill_rect(canvas *cv, int x, int y, int w, int h, const uint8_t *c) {
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) put_px(cv, i, j, c);
}

/* Bresenham, with a square pen of side thick. */
static void draw_line(canvas *cv, int x0, int y0, int x1, int y1, const uint8_t *c, int thick) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    int off = (thick - 1) / 2;
    for (;;) {
        fill_rect(cv, x0 - off, y0 - off, thick, thick, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

static int text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (6 * n - 1) * scale : 0;
}

/* Horizontal text with its top-left at (x, y); vertical text (reading bottom
 * to top, glyphs rotated 90 degrees counter-clockwise) with its bottom-left at
 * (x, y). */
static void draw_text(canvas *cv, int x, int y, const char *s, int scale, const uint8_t *c, int vertical) {
    for (; *s; s++) {
        unsigned ch = (unsigned char)*s;
        const uint8_t *gl = FONT[(ch >= 32 && ch < 127 ? ch : '?') - 32];
        for (int r = 0; r < 7; r++)
            for (int k = 0; k < 5; k++) {
                if (!(gl[r] & (0x10 >> k))) continue;
                if (vertical) fill_rect(cv, x + r * scale, y - (k + 1) * scale, scale, scale, c);
                else fill_rect(cv, x + k * scale, y + r * scale, scale, scale, c);
            }
        if (vertical) y -= 6 * scale;
        else x += 6 * scale;
    }
}

static rq_status canvas_new(canvas *cv, const rq_plot_opts *o, rq_err *err, const char *who) {
    cv->w = o && o->width > 0 ? o->width : 800;
    cv->h = o && o->height > 0 ? o->height : 500;
    if (cv->w < 160 || cv->h < 120 || cv->w > 8192 || cv->h > 8192)
        return rq_err_set(err, RQ_EINVAL, "%s: size %dx%d outside 160x120 .. 8192x8192", who, cv->w, cv->h);
    cv->px = malloc((size_t)cv->w * cv->h * 3);
    if (!cv->px) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", who);
    memset(cv->px, 255, (size_t)cv->w * cv->h * 3);
    return RQ_OK;
}

/* ------------------------------------------------------------------ */
/* axes: "nice" tick positions (1, 2, 5 x 10^k) and their labels        */

#define MAX_TICKS 40

typedef struct {
    double lo, hi;           /* axis range (log10 units for a log axis) */
    int n;                   /* ticks */
    double pos[MAX_TICKS];   /* tick positions, same units as lo/hi */
    char lab[MAX_TICKS][24];
} axis;

static double nice_num(double x, int round_it) {
    double e = floor(log10(x)), f = x / pow(10.0, e), nf;
    if (round_it) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10.0, e);
}

/* Label v for ticks spaced by step, with just enough decimals. */
static void fmt_tick(char *buf, size_t cap, double v, double step, double mag) {
    if (fabs(v) < step * 1e-6) v = 0.0; /* no "-0" or "1e-17" at the origin */
    if (mag >= 1e5 || mag < 1e-3) {
        snprintf(buf, cap, "%.3g", v);
    } else {
        int d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", d, v);
    }
}

/* Linear nice ticks that cover [lo, hi]; the axis is widened to tick
 * boundaries so lines never touch the frame by accident. */
static void axis_linear(axis *a, double lo, double hi, int maxticks, int widen) {
    if (!(hi - lo > 1e-12 * fmax(fabs(lo), fabs(hi)))) { /* constant data */
        double d = lo != 0.0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d;
        hi += d;
    }
    if (maxticks < 2) maxticks = 2;
    double step = nice_num(nice_num(hi - lo, 0) / (maxticks - 1), 1);
    if (widen) {
        lo = floor(lo / step) * step;
        hi = ceil(hi / step) * step;
    }
    a->lo = lo;
    a->hi = hi;
    a->n = 0;
    double mag = fmax(fabs(lo), fabs(hi));
    long k0 = (long)ceil(lo / step - 1e-9), k1 = (long)floor(hi / step + 1e-9);
    for (long k = k0; k <= k1 && a->n < MAX_TICKS; k++) {
        a->pos[a->n] = (double)k * step;
        fmt_tick(a->lab[a->n], sizeof a->lab[0], (double)k * step, step, mag);
        a->n++;
    }
}

/* Log10 axis over data range [lo, hi] (already in log10 units), 5% headroom. */
static void axis_log(axis *a, double lo, double hi, int maxticks) {
    double pad = hi - lo > 1e-9 ? 0.05 * (hi - lo) : 0.05;
    a->lo = lo - pad;
    a->hi = hi + pad;
    int k0 = (int)ceil(a->lo), k1 = (int)floor(a->hi);
    a->n = 0;
    if (k1 > k0) {
        /* two or more powers of ten inside: label those */
        if (maxticks < 2) maxticks = 2;
        int stride = (k1 - k0 + maxticks - 1) / maxticks;
        if (stride < 1) stride = 1;
        for (int k = k0; k <= k1 && a->n < MAX_TICKS; k += stride) {
            a->pos[a->n] = k;
            if (k >= -3 && k <= 4) snprintf(a->lab[a->n], sizeof a->lab[0], "%g", pow(10.0, k));
            else snprintf(a->lab[a->n], sizeof a->lab[0], "1e%d", k);
            a->n++;
        }
        return;
    }
    /* a short range: linear nice values placed at their log position */
    axis lin;
    axis_linear(&lin, pow(10.0, a->lo), pow(10.0, a->hi), maxticks, 0);
    for (int i = 0; i < lin.n; i++) {
        if (lin.pos[i] <= 0) continue;
        a->pos[a->n] = log10(lin.pos[i]);
        memcpy(a->lab[a->n], lin.lab[i], sizeof a->lab[0]);
        a->n++;
    }
}

static int axis_label_width(const axis *a) {
    int m = 0;
    for (int i = 0; i < a->n; i++) {
        int w = text_width(a->lab[i], 1);
        if (w > m) m = w;
    }
    return m;
}

/* Plot frame: pixel box of the data area plus the axes mapped into it. */
typedef struct {
    int x0, y0, x1, y1; /* inclusive pixel box, y0 = top */
    axis ax, ay;
} frame;

static int map_x(const frame *f, double x) {
    return f->x0 + (int)lround((x - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->x1 - f->x0));
}

static int map_y(const frame *f, double y) {
    return f->y1 - (int)lround((y - f->ay.lo) / (f->ay.hi - f->ay.lo) * (f->y1 - f->y0));
}

/* Margins from the labels, then title, grid, frame, ticks and axis labels.
 * draw_xticks = 0 lets the bar chart label its own categories. */
static void layout_and_axes(canvas *cv, frame *f, const rq_plot_opts *o, int bottom_extra, int draw_xticks) {
    const char *title = o ? o->title : NULL, *xl = o ? o->xlabel : NULL, *yl = o ? o->ylabel : NULL;
    f->x0 = 12 + (yl && *yl ? 14 : 0) + axis_label_width(&f->ay) + 8;
    f->x1 = cv->w - 20;
    f->y0 = title && *title ? 40 : 16;
    f->y1 = cv->h - 1 - (draw_xticks ? 22 : 0) - bottom_extra - (xl && *xl ? 16 : 0) - 6;
    if (f->y1 < f->y0 + 20) f->y1 = f->y0 + 20;

    for (int i = 0; i < f->ay.n; i++) {
        int y = map_y(f, f->ay.pos[i]);
        draw_line(cv, f->x0, y, f->x1, y, GRID, 1);
        draw_line(cv, f->x0 - 4, y, f->x0, y, BLACK, 1);
        draw_text(cv, f->x0 - 7 - text_width(f->ay.lab[i], 1), y - 3, f->ay.lab[i], 1, TEXT, 0);
    }
    if (draw_xticks) {
        for (int i = 0; i < f->ax.n; i++) {
            int x = map_x(f, f->ax.pos[i]);
            draw_line(cv, x, f->y0, x, f->y1, GRID, 1);
            draw_line(cv, x, f->y1, x, f->y1 + 4, BLACK, 1);
            draw_text(cv, x - text_width(f->ax.lab[i], 1) / 2, f->y1 + 8, f->ax.lab[i], 1, TEXT, 0);
        }
    }
    /* frame */
    draw_line(cv, f->x0, f->y0, f->x1, f->y0, BLACK, 1);
    draw_line(cv, f->x0, f->y1, f->x1, f->y1, BLACK, 1);
    draw_line(cv, f->x0, f->y0, f->x0, f->y1, BLACK, 1);
    draw_line(cv, f->x1, f->y0, f->x1, f->y1, BLACK, 1);

    if (title && *title) {
        int s = text_width(title, 2) <= cv->w - 20 ? 2 : 1;
        draw_text(cv, (cv->w - text_width(title, s)) / 2, 12, title, s, BLACK, 0);
    }
    if (xl && *xl) draw_text(cv, (f->x0 + f->x1 - text_width(xl, 1)) / 2, cv->h - 14, xl, 1, BLACK, 0);
    if (yl && *yl) draw_text(cv, 8, (f->y0 + f->y1 + text_width(yl, 1)) / 2, yl, 1, BLACK, 1);
}

/* ------------------------------------------------------------------ */
/* line chart                                                          */

/* A point is drawable if finite (and positive on a log axis). */
static int point_ok(const rq_series *s, int i, int log_y, double *x, double *y) {
    double xv = s->x ? s->x[i] : (double)i, yv = s->y[i];
    if (!isfinite(xv) || !isfinite(yv) || (log_y && yv <= 0)) return 0;
    *x = xv;
    *y = log_y ? log10(yv) : yv;
    return 1;
}

/* Count "data" pixels (not background, not grid) in a box. */
static long busy_pixels(const canvas *cv, int x, int y, int w, int h) {
    long n = 0;
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) {
            if (i < 0 || j < 0 || i >= cv->w || j >= cv->h) continue;
            const uint8_t *p = cv->px + ((size_t)j * cv->w + i) * 3;
            if (memcmp(p, WHITE, 3) != 0 && memcmp(p, GRID, 3) != 0) n++;
        }
    return n;
}

static void draw_legend(canvas *cv, const frame *f, const rq_series *s, int ns) {
    int rows = 0, tw = 0;
    for (int i = 0; i < ns; i++) {
        if (!s[i].label) continue;
        rows++;
        int w = text_width(s[i].label, 1);
        if (w > tw) tw = w;
    }
    if (!rows) return;
    int bw = tw + 36, bh = rows * 12 + 8;
    /* put it where it hides the fewest drawn pixels: corners first, then edge
     * middles (ties keep the earlier, more conventional spot) */
    int xs[3] = {f->x1 - 8 - bw, f->x0 + 8, (f->x0 + f->x1 - bw) / 2};
    int ys[3] = {f->y0 + 8, f->y1 - 8 - bh, (f->y0 + f->y1 - bh) / 2};
    static const int order[9][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}, {1, 2}, {2, 0}, {2, 1}, {2, 2}};
    int bx = xs[0], by = ys[0];
    long bn = -1;
    for (int k = 0; k < 9; k++) {
        int cx = xs[order[k][0]], cy = ys[order[k][1]];
        long n = busy_pixels(cv, cx, cy, bw, bh);
        if (bn < 0 || n < bn) { bn = n; bx = cx; by = cy; }
    }
    int x = bx, y = by;
    fill_rect(cv, x, y, bw, bh, WHITE);
    draw_line(cv, x, y, x + bw - 1, y, TEXT, 1);
    draw_line(cv, x, y + bh - 1, x + bw - 1, y + bh - 1, TEXT, 1);
    draw_line(cv, x, y, x, y + bh - 1, TEXT, 1);
    draw_line(cv, x + bw - 1, y, x + bw - 1, y + bh - 1, TEXT, 1);
    int row = 0;
    for (int i = 0; i < ns; i++) {
        if (!s[i].label) continue;
        int ly = y + 6 + row * 12;
        draw_line(cv, x + 6, ly + 3, x + 24, ly + 3, PALETTE[i % 8], 2);
        draw_text(cv, x + 30, ly, s[i].label, 1, BLACK, 0);
        row++;
    }
}

rq_status rq_plot_lines(const char *path, const rq_series *series, int nseries, const rq_plot_opts *opts,
                        rq_err *err) {
    if (!path || !series) return rq_err_set(err, RQ_EINVAL, "rq_plot_lines: NULL path or series");
    if (nseries < 1 || nseries > RQ_PLOT_MAX_SERIES)
        return rq_err_set(err, RQ_EINVAL, "rq_plot_lines '%s': %d series (1..%d allowed)", path, nseries,
                          RQ_PLOT_MAX_SERIES);
    int log_y = opts && opts->log_y;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < nseries; s++) {
        if (series[s].n < 0 || (series[s].n > 0 && !series[s].y))
            return rq_err_set(err, RQ_EINVAL, "rq_plot_lines '%s': series %d has no y data", path, s);
        for (int i = 0; i < series[s].n; i++) {
            double x, y;
            if (!point_ok(&series[s], i, log_y, &x, &y)) continue;
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
        }
    }
    if (!(xmin <= xmax))
        return rq_err_set(err, RQ_EINVAL, "rq_plot_lines '%s': no finite%s points to plot", path,
                          log_y ? " positive" : "");

    canvas cv;
    rq_status st = canvas_new(&cv, opts, err, "rq_plot_lines");
    if (st != RQ_OK) return st;
    frame f;
    axis_linear(&f.ax, xmin, xmax, cv.w / 90, 1);
    if (log_y) {
        axis_log(&f.ay, ymin, ymax, cv.h / 50);
    } else {
        /* 5% headroom so a line never hides under the frame */
        double pad = ymax > ymin ? 0.05 * (ymax - ymin) : (ymin != 0 ? 0.1 * fabs(ymin) : 1.0);
        axis_linear(&f.ay, ymin - pad, ymax + pad, cv.h / 60, 0);
    }
    layout_and_axes(&cv, &f, opts, 0, 1);

    for (int s = 0; s < nseries; s++) {
        const uint8_t *c = PALETTE[s % 8];
        int have = 0, px = 0, py = 0, markers = series[s].n <= 32;
        for (int i = 0; i < series[s].n; i++) {
            double x, y;
            if (!point_ok(&series[s], i, log_y, &x, &y)) {
                have = 0; /* break the line at a gap */
                continue;
            }
            int qx = map_x(&f, x), qy = map_y(&f, y);
            if (have) draw_line(&cv, px, py, qx, qy, c, 2);
            if (markers) fill_rect(&cv, qx - 2, qy - 2, 5, 5, c);
            px = qx;
            py = qy;
            have = 1;
        }
    }
    draw_legend(&cv, &f, series, nseries);
    st = rq_png_write(path, cv.px, cv.w, cv.h, 3, err);
    free(cv.px);
    return st;
}

/* ------------------------------------------------------------------ */
/* bar chart                                                           */

rq_status rq_plot_bars(const char *path, const float *values, const char *const *labels, int n,
                       const rq_plot_opts *opts, rq_err *err) {
    if (!path || !values) return rq_err_set(err, RQ_EINVAL, "rq_plot_bars: NULL path or values");
    if (n < 1 || n > 4096) return rq_err_set(err, RQ_EINVAL, "rq_plot_bars '%s': %d bars (1..4096 allowed)", path, n);
    double vmin = 0, vmax = 0; /* bars start at 0, so 0 is always on the axis */
    for (int i = 0; i < n; i++) {
        if (!isfinite(values[i])) continue;
        vmin = fmin(vmin, values[i]);
        vmax = fmax(vmax, values[i]);
    }
    canvas cv;
    rq_status st = canvas_new(&cv, opts, err, "rq_plot_bars");
    if (st != RQ_OK) return st;

    /* category labels: horizontal if they fit under a bar, else vertical */
    char num[16];
    int maxlab = 0;
    for (int i = 0; i < n; i++) {
        const char *l = labels && labels[i] ? labels[i] : (snprintf(num, sizeof num, "%d", i), num);
        int w = text_width(l, 1);
        if (w > maxlab) maxlab = w;
    }
    int approx_slot = (cv.w - 100) / n;
    int vertical = maxlab + 4 > approx_slot;
    int bottom = vertical ? maxlab + 10 : 16;
    if (bottom > cv.h / 3) bottom = cv.h / 3; /* long labels are cut by the canvas edge */

    frame f;
    f.ax.lo = 0;
    f.ax.hi = n;
    f.ax.n = 0;
    double head = vmax > vmin ? 0.06 * (vmax - vmin) : 1.0; /* room for the value labels */
    axis_linear(&f.ay, vmin < 0 ? vmin - head : 0.0, vmax > 0 ? vmax + head : 0.0, cv.h / 60, 1);
    layout_and_axes(&cv, &f, opts, bottom, 0);

    double slot = (double)(f.x1 - f.x0) / n;
    int every = 1; /* thin the labels when the slots are narrower than the text */
    int need = vertical ? 9 : maxlab + 4;
    while (slot * every < need) every++;
    int y_zero = map_y(&f, 0.0);
    for (int i = 0; i < n; i++) {
        int xa = f.x0 + (int)lround(i * slot + slot * 0.1), xb = f.x0 + (int)lround((i + 1) * slot - slot * 0.1);
        if (xb <= xa) xb = xa + 1;
        if (isfinite(values[i])) {
            int yv = map_y(&f, values[i]);
            int top = yv < y_zero ? yv : y_zero, bot = yv < y_zero ? y_zero : yv;
            fill_rect(&cv, xa, top, xb - xa, bot - top + 1, PALETTE[0]);
            /* value above the bar when it fits */
            char v[24];
            snprintf(v, sizeof v, "%.3g", values[i]);
            int tw = text_width(v, 1);
            if (tw <= xb - xa + 2 && top - 10 > f.y0)
                draw_text(&cv, (xa + xb - tw) / 2, values[i] >= 0 ? top - 10 : bot + 3, v, 1, TEXT, 0);
        }
        if (i % every) continue;
        const char *l = labels && labels[i] ? labels[i] : (snprintf(num, sizeof num, "%d", i), num);
        int cx = (xa + xb) / 2;
        draw_line(&cv, cx, f.y1, cx, f.y1 + 3, BLACK, 1);
        if (vertical) draw_text(&cv, cx - 3, f.y1 + 6 + text_width(l, 1), l, 1, TEXT, 1);
        else draw_text(&cv, cx - text_width(l, 1) / 2, f.y1 + 6, l, 1, TEXT, 0);
    }
    draw_line(&cv, f.x0, y_zero, f.x1, y_zero, BLACK, 1);
    st = rq_png_write(path, cv.px, cv.w, cv.h, 3, err);
    free(cv.px);
    return st;
}
