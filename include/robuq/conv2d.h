/* conv2d.h: forward-only image kernels for the VAE decoder, NCHW, one image
 * at a time ([C, H, W] row-major planes), float32, OpenMP inside.
 *
 * - rq_conv2d: k x k convolution (k = 1 pad 0, or k = 3 pad 1), stride 1,
 *   optionally on the nearest-neighbour 2x upsampled input (up = 2), fused:
 *   the upsampled tensor is never stored. Computed as im2col over bands of
 *   output rows + rq_sgemm: Y[cout, band] = W[cout, cin*k*k] * col[cin*k*k, band],
 *   with the PyTorch weight layout [cout, cin, k, k] used as is. A 1x1
 *   convolution without upsampling multiplies x in place (no im2col).
 * - rq_group_norm: GroupNorm (biased variance, statistics in double over
 *   float partial sums), affine, optional fused SiLU; may run in place.
 * - rq_upsample_nearest2x: out[c, y, x] = in[c, y/2, x/2] (a test helper:
 *   the decoder fuses it into rq_conv2d).
 * Elementwise loops are compiled for AVX-512, AVX2 and baseline x86-64 and
 * follow the ISA chosen by rq_gemm_set_isa (tests force each one). Every
 * _ref function is a plain double-precision loop for tests. */
#ifndef ROBUQ_CONV2D_H
#define ROBUQ_CONV2D_H

#include <stddef.h>

#include "robuq/common.h"

/* Floats of im2col workspace rq_conv2d needs at the least (one output row):
 * cin*k*k*(up*w); 0 when it needs none (k == 1 and up == 1). */
size_t rq_conv2d_col_min(int cin, int k, int up, int w);

/* y[cout, up*h, up*w] = (accumulate ? y : 0) + bias + conv_k(up2x(x)).
 * x: [cin, h, w]; weight: [cout, cin, k, k]; bias: [cout] or NULL; up: 1 or 2.
 * col: workspace of col_cap floats, at least rq_conv2d_col_min(); more lets
 * the GEMM see wider bands (up to all output rows). y must not overlap x. */
rq_status rq_conv2d(const float *x, int cin, int h, int w, int up, const float *weight,
                    const float *bias, int cout, int k, float *y, int accumulate, float *col,
                    size_t col_cap, rq_err *err);
void rq_conv2d_ref(const float *x, int cin, int h, int w, int up, const float *weight,
                   const float *bias, int cout, int k, float *y, int accumulate);

/* y[c, hw] = silu?((x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]) with
 * groups of c/groups consecutive channels; c % groups must be 0. gamma/beta
 * may be NULL (1 / 0). y may equal x. */
rq_status rq_group_norm(const float *x, int c, long hw, int groups, float eps, const float *gamma,
                        const float *beta, int silu, float *y, rq_err *err);
void rq_group_norm_ref(const float *x, int c, long hw, int groups, float eps, const float *gamma,
                       const float *beta, int silu, float *y);

/* y[c, 2h, 2w] = x[c, h, w] repeated 2x2; y must not overlap x. */
rq_status rq_upsample_nearest2x(const float *x, int c, int h, int w, float *y, rq_err *err);

#endif
