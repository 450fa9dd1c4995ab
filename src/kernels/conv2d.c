/* conv2d.c: conv2d (im2col + rq_sgemm, with fused nearest 2x upsampling),
 * GroupNorm (+ SiLU) and nearest upsampling for the VAE decoder. NCHW, one
 * image per call; see conv2d.h.
 *
 * Convolution. For output rows [r0, r0+nr) the im2col band holds
 *   col[(ci*k + ky)*k + kx][(r - r0)*ow + ox] = up2x(x)[ci][r + ky - p][ox + kx - p]
 * (0 outside the image), and one GEMM gives the band of every output channel:
 *   Y[:, r0*ow : (r0+nr)*ow] (+)= W[cout, cin*k*k] * col   (ldc = oh*ow).
 * The band is as tall as the workspace allows, so the whole image is one
 * GEMM when the caller gives enough memory (the 256x256x128 layers of the
 * SD decoder need 300 MB for that; a 16 MB band keeps the GEMM efficient).
 * Bias (and accumulation) is folded in by pre-filling / keeping Y and
 * running the GEMM with beta = 1.
 *
 * The elementwise loops (im2col rows, GroupNorm statistics and affine+SiLU)
 * are always_inline templates instantiated for AVX-512, AVX2 and baseline
 * x86-64 with per-function target attributes; the instance follows
 * rq_gemm_get_isa(), so forcing the GEMM ISA in a test forces these too. */
#include "robuq/conv2d.h"
#include "robuq/fastmath.h"
#include "robuq/gemm.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* Float lanes of the partial sums in the GroupNorm statistics: independent
 * accumulators the compiler can keep in one vector register per 16. */
#define GN_LANES 16
/* Elements summed in float before the block total goes to double. */
#define GN_BLOCK 4096
/* Below these sizes a loop runs on the calling thread: a parallel region
 * costs more than it saves, and much more on a loaded machine (tiny models
 * make hundreds of calls). Elements for memory-bound loops, MACs for GEMMs. */
#define PAR_MIN_ELEMS (1L << 18)
#define PAR_MIN_MACS (1.0 * (1L << 22))

/* ------------------------------------------------------------------------ */
/* Templates */

/* One im2col row (fixed ci, ky, kx) for output rows [r0, r0+nr). */
INLINE void im2col_row_tmpl(const float *xc, int h, int w, int up, int k, int ky, int kx, int r0,
                            int nr, float *dst) {
    const int oh = h * up, ow = w * up, p = k / 2, dx = kx - p;
    /* output columns whose source column ox+dx lies inside [0, ow) */
    const int c_lo = dx < 0 ? -dx : 0, c_hi = dx > 0 ? ow - dx : ow;
    for (int r = 0; r < nr; r++, dst += ow) {
        int oy = r0 + r + ky - p;
        if (oy < 0 || oy >= oh) {
            memset(dst, 0, (size_t)ow * sizeof(float));
            continue;
        }
        const float *src = xc + (size_t)(oy / up) * w;
        for (int c = 0; c < c_lo; c++) dst[c] = 0.0f;
        if (up == 1) {
            for (int c = c_lo; c < c_hi; c++) dst[c] = src[c + dx];
        } else {
            for (int c = c_lo; c < c_hi; c++) dst[c] = src[(c + dx) >> 1];
        }
        for (int c = c_hi; c < ow; c++) dst[c] = 0.0f;
    }
}

/* Sums over x[0:n] of (x - m) (into *s1) and, when squares, of (x - m)^2
 * (into *s2): float lanes over blocks, block totals in double. */
INLINE void gn_sums_tmpl(const float *x, long n, float m, int squares, double *s1, double *s2) {
    double t1 = 0.0, t2 = 0.0;
    for (long b0 = 0; b0 < n; b0 += GN_BLOCK) {
        long nb = n - b0 < GN_BLOCK ? n - b0 : GN_BLOCK;
        const float *xb = x + b0;
        float a1[GN_LANES] = {0}, a2[GN_LANES] = {0};
        long i = 0;
        if (squares) {
            for (; i + GN_LANES <= nb; i += GN_LANES)
                for (int l = 0; l < GN_LANES; l++) {
                    float d = xb[i + l] - m;
                    a1[l] += d;
                    a2[l] += d * d;
                }
        } else {
            for (; i + GN_LANES <= nb; i += GN_LANES)
                for (int l = 0; l < GN_LANES; l++) a1[l] += xb[i + l] - m;
        }
        double b1 = 0.0, b2 = 0.0;
        for (int l = 0; l < GN_LANES; l++) b1 += a1[l], b2 += a2[l];
        for (; i < nb; i++) {
            double d = (double)xb[i] - m;
            b1 += d, b2 += d * d;
        }
        t1 += b1, t2 += b2;
    }
    *s1 = t1;
    *s2 = t2;
}

INLINE void gn_apply_tmpl(const float *x, long n, float scale, float shift, int silu, float *y) {
    if (silu) {
        for (long i = 0; i < n; i++) {
            float v = x[i] * scale + shift;
            y[i] = v / (1.0f + rq_expf(-v));
        }
    } else {
        for (long i = 0; i < n; i++) y[i] = x[i] * scale + shift;
    }
}

/* One group: cpg channels of hw elements, contiguous in NCHW. */
INLINE void gn_group_tmpl(const float *x, int cpg, long hw, float eps, const float *gamma,
                          const float *beta, int silu, float *y) {
    const long n = (long)cpg * hw;
    /* corrected two-pass: a rough mean m0, then sums of d = x - m0 and d^2;
     * mean = m0 + E[d], var = E[d^2] - E[d]^2 (no cancellation: E[d] is tiny) */
    double s1, s2;
    gn_sums_tmpl(x, n, 0.0f, 0, &s1, &s2);
    const float m0 = (float)(s1 / (double)n);
    gn_sums_tmpl(x, n, m0, 1, &s1, &s2);
    double e1 = s1 / (double)n, mean = m0 + e1;
    double var = s2 / (double)n - e1 * e1;
    double rstd = 1.0 / sqrt((var > 0.0 ? var : 0.0) + (double)eps);
    for (int c = 0; c < cpg; c++) {
        double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
        float scale = (float)(rstd * g), shift = (float)(b - mean * rstd * g);
        gn_apply_tmpl(x + (size_t)c * hw, hw, scale, shift, silu, y + (size_t)c * hw);
    }
}

/* ------------------------------------------------------------------------ */
/* ISA instances */

#define INSTANCES(SUFFIX, TARGET)                                                                   \
    TARGET static void im2col_row_##SUFFIX(const float *xc, int h, int w, int up, int k, int ky,     \
                                           int kx, int r0, int nr, float *dst) {                    \
        im2col_row_tmpl(xc, h, w, up, k, ky, kx, r0, nr, dst);                                      \
    }                                                                                               \
    TARGET static void gn_group_##SUFFIX(const float *x, int cpg, long hw, float eps,               \
                                         const float *gamma, const float *beta, int silu,           \
                                         float *y) {                                                \
        gn_group_tmpl(x, cpg, hw, eps, gamma, beta, silu, y);                                       \
    }

#define NO_TARGET
INSTANCES(base, NO_TARGET)
INSTANCES(avx2, AVX2_TARGET)
INSTANCES(avx512, AVX512_TARGET)

typedef void (*im2col_row_fn)(const float *, int, int, int, int, int, int, int, int, float *);
typedef void (*gn_group_fn)(const float *, int, long, float, const float *, const float *, int,
                            float *);

static im2col_row_fn pick_im2col(void) {
    switch (rq_gemm_get_isa()) {
    case RQ_GEMM_AVX512: return im2col_row_avx512;
    case RQ_GEMM_AVX2: return im2col_row_avx2;
    default: return im2col_row_base;
    }
}

static gn_group_fn pick_gn(void) {
    switch (rq_gemm_get_isa()) {
    case RQ_GEMM_AVX512: return gn_group_avx512;
    case RQ_GEMM_AVX2: return gn_group_avx2;
    default: return gn_group_base;
    }
}

/* ------------------------------------------------------------------------ */
/* Convolution */

size_t rq_conv2d_col_min(int cin, int k, int up, int w) {
    if (k == 1 && up == 1) return 0;
    return (size_t)cin * k * k * up * w;
}

static rq_status conv_check(const float *x, int cin, int h, int w, int up, const float *weight,
                            int cout, int k, const float *y, rq_err *err) {
    if (!x || !weight || !y) return rq_err_set(err, RQ_EINVAL, "rq_conv2d: NULL x, weight or y");
    if (cin <= 0 || cout <= 0 || h <= 0 || w <= 0)
        return rq_err_set(err, RQ_EINVAL, "rq_conv2d: bad shape cin=%d cout=%d h=%d w=%d", cin, cout, h, w);
    if (k != 1 && k != 3) return rq_err_set(err, RQ_EINVAL, "rq_conv2d: kernel size %d (only 1 and 3)", k);
    if (up != 1 && up != 2) return rq_err_set(err, RQ_EINVAL, "rq_conv2d: upsampling %d (only 1 and 2)", up);
    /* GEMM dimensions are int */
    if ((long long)cin * k * k > (1 << 30) || (long long)h * up * w * up > (1 << 30))
        return rq_err_set(err, RQ_EINVAL, "rq_conv2d: shape too large (cin=%d, %dx%d, up %d)", cin, h, w, up);
    return RQ_OK;
}

/* y[co, 0:n] = bias[co] (or += when accumulating) */
static void add_bias(float *y, int cout, long ld, long n, const float *bias, int accumulate) {
#pragma omp parallel for schedule(static) if ((long)cout * n > PAR_MIN_ELEMS)
    for (int co = 0; co < cout; co++) {
        float *yc = y + (size_t)co * ld;
        float b = bias ? bias[co] : 0.0f;
        if (accumulate) {
            if (b != 0.0f)
                for (long i = 0; i < n; i++) yc[i] += b;
        } else {
            for (long i = 0; i < n; i++) yc[i] = b;
        }
    }
}

/* C[M,N] += A[M,K] B[K,N], threaded when large enough */
static void gemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    if ((double)M * N * K < PAR_MIN_MACS) rq_sgemm_st(0, 0, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
    else rq_sgemm(0, 0, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

rq_status rq_conv2d(const float *x, int cin, int h, int w, int up, const float *weight,
                    const float *bias, int cout, int k, float *y, int accumulate, float *col,
                    size_t col_cap, rq_err *err) {
    rq_status s = conv_check(x, cin, h, w, up, weight, cout, k, y, err);
    if (s) return s;
    const int oh = h * up, ow = w * up, K = cin * k * k;
    const long ohw = (long)oh * ow;
    add_bias(y, cout, ohw, ohw, bias, accumulate);
    if (k == 1 && up == 1) { /* pointwise: Y = W X */
        gemm(cout, (int)ohw, cin, weight, cin, x, (int)ohw, y, (int)ohw);
        return RQ_OK;
    }
    size_t row_floats = (size_t)K * ow;
    if (!col || col_cap < row_floats)
        return rq_err_set(err, RQ_EINVAL,
                          "rq_conv2d: im2col workspace of %zu floats, needs at least %zu (cin=%d k=%d width %d)",
                          col ? col_cap : 0, row_floats, cin, k, ow);
    size_t band_max = col_cap / row_floats;
    const int band = band_max >= (size_t)oh ? oh : (int)band_max;
    im2col_row_fn im2col_row = pick_im2col();
    for (int r0 = 0; r0 < oh; r0 += band) {
        const int nr = oh - r0 < band ? oh - r0 : band;
        const long ncol = (long)nr * ow;
#pragma omp parallel for schedule(static) if ((long)K * ncol > PAR_MIN_ELEMS)
        for (int q = 0; q < K; q++) {
            int ci = q / (k * k), ky = q / k % k, kx = q % k;
            im2col_row(x + (size_t)ci * h * w, h, w, up, k, ky, kx, r0, nr, col + (size_t)q * ncol);
        }
        gemm(cout, (int)ncol, K, weight, K, col, (int)ncol, y + (size_t)r0 * ow, (int)ohw);
    }
    return RQ_OK;
}

void rq_conv2d_ref(const float *x, int cin, int h, int w, int up, const float *weight,
                   const float *bias, int cout, int k, float *y, int accumulate) {
    const int oh = h * up, ow = w * up, p = k / 2;
    for (int co = 0; co < cout; co++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                double s = bias ? bias[co] : 0.0;
                for (int ci = 0; ci < cin; ci++)
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy + ky - p, ix = ox + kx - p;
                            if (iy < 0 || iy >= oh || ix < 0 || ix >= ow) continue;
                            double xv = x[((size_t)ci * h + iy / up) * w + ix / up];
                            s += xv * weight[(((size_t)co * cin + ci) * k + ky) * k + kx];
                        }
                float *yo = y + ((size_t)co * oh + oy) * ow + ox;
                *yo = accumulate ? (float)(*yo + s) : (float)s;
            }
}

/* ------------------------------------------------------------------------ */
/* GroupNorm */

rq_status rq_group_norm(const float *x, int c, long hw, int groups, float eps, const float *gamma,
                        const float *beta, int silu, float *y, rq_err *err) {
    if (!x || !y) return rq_err_set(err, RQ_EINVAL, "rq_group_norm: NULL x or y");
    if (c <= 0 || hw <= 0 || groups <= 0 || c % groups)
        return rq_err_set(err, RQ_EINVAL, "rq_group_norm: %d channels in %d groups (hw=%ld): groups must divide channels",
                          c, groups, hw);
    if (!(eps >= 0.0f)) return rq_err_set(err, RQ_EINVAL, "rq_group_norm: eps %g", (double)eps);
    const int cpg = c / groups;
    gn_group_fn gn = pick_gn();
#pragma omp parallel for schedule(dynamic, 1) if ((long)c * hw > PAR_MIN_ELEMS)
    for (int g = 0; g < groups; g++) {
        size_t off = (size_t)g * cpg * hw;
        gn(x + off, cpg, hw, eps, gamma ? gamma + g * cpg : NULL, beta ? beta + g * cpg : NULL, silu,
           y + off);
    }
    return RQ_OK;
}

void rq_group_norm_ref(const float *x, int c, long hw, int groups, float eps, const float *gamma,
                       const float *beta, int silu, float *y) {
    const int cpg = c / groups;
    const long n = (long)cpg * hw;
    for (int g = 0; g < groups; g++) {
        const float *xg = x + (size_t)g * n;
        double m = 0, v = 0;
        for (long i = 0; i < n; i++) m += xg[i];
        m /= n;
        for (long i = 0; i < n; i++) v += (xg[i] - m) * (xg[i] - m);
        v /= n;
        double rstd = 1.0 / sqrt(v + eps);
        for (long i = 0; i < n; i++) {
            int ch = g * cpg + (int)(i / hw);
            double t = (xg[i] - m) * rstd * (gamma ? gamma[ch] : 1.0) + (beta ? beta[ch] : 0.0);
            if (silu) t = t / (1.0 + exp(-t));
            y[(size_t)g * n + i] = (float)t;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Nearest upsampling */

rq_status rq_upsample_nearest2x(const float *x, int c, int h, int w, float *y, rq_err *err) {
    if (!x || !y) return rq_err_set(err, RQ_EINVAL, "rq_upsample_nearest2x: NULL x or y");
    if (c <= 0 || h <= 0 || w <= 0)
        return rq_err_set(err, RQ_EINVAL, "rq_upsample_nearest2x: bad shape c=%d h=%d w=%d", c, h, w);
    const int ow = 2 * w;
#pragma omp parallel for schedule(static) if ((long)c * h * w > PAR_MIN_ELEMS)
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h; i++) {
            const float *src = x + ((size_t)ch * h + i) * w;
            float *d0 = y + ((size_t)ch * 2 * h + 2 * i) * ow;
            for (int j = 0; j < ow; j++) d0[j] = src[j >> 1];
            memcpy(d0 + ow, d0, (size_t)ow * sizeof(float));
        }
    return RQ_OK;
}
