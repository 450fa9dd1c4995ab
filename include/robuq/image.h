/* image.h: PNG read/write (libpng), sample grids, and small PNG charts
 * (loss curves, metric-vs-bits, bits-per-layer bars).
 *
 * Pixels are interleaved uint8, row-major: pixel (x, y) channel k is at
 * p[(y * w + x) * channels + k]. Channels: 1 gray, 3 RGB, 4 RGBA.
 * No function aborts on a bad file: corrupt or truncated PNGs give RQ_EFORMAT,
 * files that cannot be opened RQ_EIO, both with the path in the message. */
#ifndef ROBUQ_IMAGE_H
#define ROBUQ_IMAGE_H

#include <stdint.h>
#include "robuq/common.h"

/* Write an 8-bit PNG atomically: "<path>.tmp.<pid>" then rename, so a reader
 * never sees a half-written file; the temp file is removed on failure. */
rq_status rq_png_write(const char *path, const uint8_t *pixels, int w, int h, int channels, rq_err *err);

/* Read any PNG as 8-bit gray (1), RGB (3) or RGBA (4): palette -> RGB(A),
 * 16-bit -> 8-bit, low-bit gray -> 8-bit, gray+alpha -> RGBA, tRNS -> alpha.
 * *pixels is malloc'd (caller frees with free()); NULL on error. */
rq_status rq_png_read(const char *path, uint8_t **pixels, int *w, int *h, int *channels, rq_err *err);

/* Tile n images (NCHW floats in [-1, 1], c = 1, 3 or 4) into a grid with
 * cols columns (0 = ceil(sqrt(n)); more than n is clamped to n) and
 * ceil(n/cols) rows, with a 2-pixel black border around and between tiles,
 * as torchvision's save_image (DiT sample.py) does. Pixel = round((x+1)*127.5)
 * clamped to [0, 255] (NaN -> 0). *out is malloc'd, *out_w x *out_h x c. */
#define RQ_GRID_PAD 2
rq_status rq_image_grid(const float *images, int n, int c, int h, int w, int cols, uint8_t **out,
                        int *out_w, int *out_h, rq_err *err);
/* rq_image_grid + rq_png_write. */
rq_status rq_image_grid_save(const char *path, const float *images, int n, int c, int h, int w, int cols,
                             rq_err *err);

/* ---- charts (RGB PNG, white background, built-in 5x7 bitmap font) ---- */
#define RQ_PLOT_MAX_SERIES 8

typedef struct {
    const float *x;    /* NULL: x = 0, 1, ..., n-1 */
    const float *y;
    int n;
    const char *label; /* legend text; NULL = not in the legend */
} rq_series;

typedef struct {
    int width, height;  /* 0 = 800 x 500 */
    const char *title;  /* NULL = none (same for the axis labels) */
    const char *xlabel;
    const char *ylabel;
    int log_y;          /* lines only: log10 y axis; points with y <= 0 are skipped */
} rq_plot_opts;

/* Line chart of up to RQ_PLOT_MAX_SERIES series: axes with "nice" ticks and
 * numbers, light grid, legend in the emptiest corner, markers when a series
 * has few points. Non-finite points are skipped (the line breaks there).
 * opts may be NULL. */
rq_status rq_plot_lines(const char *path, const rq_series *series, int nseries, const rq_plot_opts *opts,
                        rq_err *err);

/* Bar chart: one bar per value from 0, labels under the bars (vertical when
 * they do not fit, thinned when bars are too narrow), value on top of a bar
 * when it fits. labels may be NULL (bars are numbered). opts may be NULL. */
rq_status rq_plot_bars(const char *path, const float *values, const char *const *labels, int n,
                       const rq_plot_opts *opts, rq_err *err);

/* Colour of series i (bars use colour 0); i is taken modulo 8. */
void rq_plot_color(int i, uint8_t rgb[3]);

#endif
