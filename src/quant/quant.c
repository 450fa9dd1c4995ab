/* quant.c: ternary weight quantizer and per-token activation quantizers
 * (RobustQuantizer and min-max). Conventions in quant.h. */
#include "robuq/quant.h"
#include "robuq/fastmath.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Elements above which row loops are spread over OpenMP threads. */
#define RQ_QUANT_PAR_WORK (1L << 15)

/* The hot row loops (row_stats, quant_row, ternary_row) are compiled per ISA
 * with RQ_TARGET_CLONES (robuq/fastmath.h) and bit-identical on all of them:
 * row_stats keeps its fixed eight-lane partial sums on every ISA (each lane
 * adds its elements in index order, never reassociated), the quantize loops
 * are elementwise, and the library builds with -ffp-contract=off. */

/* ------------------------------------------------------------------------
 * MSE-optimal uniform grids for x ~ N(0,1), computed offline.
 *
 * For each b and each grid (mid-rise with 2^b levels, symmetric mid-tread
 * with 2^b - 1 levels, asymmetric mid-tread [-2^(b-1), 2^(b-1)-1]) the exact
 * MSE of nearest-level quantization,
 *   MSE(step) = sum_cells int_a^c (x - L)^2 phi(x) dx
 *             = sum_cells [(1 + L^2) Phi(x) + (2L - x) phi(x)]_a^c,
 * (cells bounded by level midpoints, outer cells to +-inf; Phi via erfc to
 * keep the tails accurate) was minimised over step by a 20000-point log scan
 * on [1e-3, 5] (one local minimum for every b and grid) followed by golden
 * section to 1e-12. Results (alpha = largest positive level / sigma):
 *
 *   b  mid-rise           mid-tread sym      mid-tread asym
 *      alpha    MSE       alpha    MSE       alpha    MSE
 *   1  0.79788  0.36338   (one level: 1.0)   0        0.59509
 *   2  1.49353  0.11885   1.22401  0.19017   1.04839  0.14943
 *   3  2.05107  0.037440  1.95231  0.046860  1.80547  0.040638
 *   4  2.51400  0.011543  2.47388  0.012889  2.37026  0.011864
 *   5  2.91615  3.4952e-3 2.89873  3.6932e-3 2.83188  3.5260e-3
 *   6  3.27798  1.0400e-3 3.27012  1.0693e-3 3.22956  1.0429e-3
 *   7  3.61110  3.0433e-4 3.60746  3.0862e-4 3.58390  3.0458e-4
 *   8  3.92221  8.7686e-5 3.92050  8.8308e-5 3.90723  8.7707e-5
 *
 * Mid-rise wins at every b (1 bit mid-rise == sign(x) * sqrt(2/pi) sigma;
 * 2 bits matches Max's uniform quantizer: step 0.9957, MSE 0.1188). At 8 bits
 * mid-rise needs odd codes up to +-255, which do not fit the int8 the kernels
 * use, so b = 8 takes the best int8 grid, asymmetric mid-tread (+0.02% MSE).
 * tests/test_quant.c re-derives every number here independently. */
static const rq_actq_grid_info k_actq_table[RQ_ACTQ_MAX_BITS] = {
    {1, RQ_GRID_MIDRISE, -1, 1, 2, 0.797884573, 1.595769146, 3.633802276e-01},
    {2, RQ_GRID_MIDRISE, -3, 3, 2, 1.493530022, 0.995686681, 1.188460504e-01},
    {3, RQ_GRID_MIDRISE, -7, 7, 2, 2.051068069, 0.586019448, 3.743965939e-02},
    {4, RQ_GRID_MIDRISE, -15, 15, 2, 2.514004559, 0.335200608, 1.154288443e-02},
    {5, RQ_GRID_MIDRISE, -31, 31, 2, 2.916151254, 0.188138791, 3.495211362e-03},
    {6, RQ_GRID_MIDRISE, -63, 63, 2, 3.277984911, 0.104063013, 1.040045409e-03},
    {7, RQ_GRID_MIDRISE, -127, 127, 2, 3.611097513, 0.056867677, 3.043327708e-04},
    {8, RQ_GRID_MIDTREAD_ASYM, -128, 127, 1, 3.907228493, 0.030765579, 8.770692197e-05},
};

const rq_actq_grid_info *rq_actq_info(int bits) {
    if (bits < RQ_ACTQ_MIN_BITS || bits > RQ_ACTQ_MAX_BITS) return NULL;
    return &k_actq_table[bits - 1];
}

const char *rq_grid_name(rq_grid g) {
    switch (g) {
    case RQ_GRID_MIDRISE: return "mid-rise";
    case RQ_GRID_MIDTREAD_SYM: return "mid-tread-sym";
    case RQ_GRID_MIDTREAD_ASYM: return "mid-tread-asym";
    }
    return "unknown";
}

const char *rq_actq_method_name(int method) {
    switch (method) {
    case RQ_ACTQ_ROBUST: return "robust";
    case RQ_ACTQ_MINMAX: return "minmax";
    }
    return "unknown";
}

rq_status rq_actq_method_parse(const char *s, int *method, rq_err *err) {
    if (!s || !method) return rq_err_set(err, RQ_EINVAL, "actq: NULL method string");
    if (!strcmp(s, "robust")) *method = RQ_ACTQ_ROBUST;
    else if (!strcmp(s, "minmax")) *method = RQ_ACTQ_MINMAX;
    else return rq_err_set(err, RQ_EINVAL, "actq: unknown method '%s' (expected robust or minmax)", s);
    return RQ_OK;
}

static int method_ok(int m) { return m == RQ_ACTQ_ROBUST || m == RQ_ACTQ_MINMAX; }

rq_status rq_actq_cfg_check(const rq_actq_cfg *cfg, rq_err *err) {
    if (!cfg) return rq_err_set(err, RQ_EINVAL, "actq: NULL config");
    if (cfg->bits < RQ_ACTQ_MIN_BITS || cfg->bits > RQ_ACTQ_MAX_BITS)
        return rq_err_set(err, RQ_EINVAL, "actq: bits=%d out of range [%d, %d]", cfg->bits,
                          RQ_ACTQ_MIN_BITS, RQ_ACTQ_MAX_BITS);
    if (!method_ok(cfg->method))
        return rq_err_set(err, RQ_EINVAL, "actq: unknown method %d (0 robust, 1 minmax)", cfg->method);
    return RQ_OK;
}

static int cfg_valid(const rq_actq_cfg *cfg) { return rq_actq_cfg_check(cfg, NULL) == RQ_OK; }

/* ---------------- activation rows ---------------- */

/* Round half to even for |v| <= 2^22 without SSE4.1's roundps: adding
 * 1.5*2^23 pushes the fraction out of the mantissa, the FPU rounds to
 * nearest-even, and subtracting restores the value. Exact (same result as
 * rintf) under the default rounding mode; it relies on the build not using
 * -ffast-math (it does not), which could fold the two operations. Keeps the
 * loops below vectorizable on baseline x86-64. */
static inline float rint_small(float v) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (v + magic) - magic;
}

/* Sum of squares (double) and max|x| of a row in 32 lanes: lane l takes
 * elements l, l+32, ... of the full 32-element blocks in order, the last
 * n % 32 elements go to lane 0 in order, then the lanes are added 0..31.
 * Four independent accumulators of eight lanes: with one, the double add's
 * latency set the pace (~0.6 cycles per element). Written with vector types
 * because GCC leaves the float->double mix scalar. */
typedef float qv_f8 __attribute__((vector_size(32)));
typedef int32_t qv_i8 __attribute__((vector_size(32)));
typedef double qv_d8 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) void stats8(const float *x, qv_d8 *ss, qv_f8 *mx) {
    const qv_i8 abs_mask = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff,
                            0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    qv_f8 v, a;
    memcpy(&v, x, sizeof v);
    a = (qv_f8)((qv_i8)v & abs_mask);
    const qv_d8 d = __builtin_convertvector(v, qv_d8);
    *ss += d * d;
    const qv_i8 gt = a > *mx; /* a NaN keeps the old maximum, as a > m ? a : m does */
    *mx = (qv_f8)((gt & (qv_i8)a) | (~gt & (qv_i8)*mx));
}

RQ_TARGET_CLONES static void row_stats_generic(const float *x, int n, double *ss_out, float *max_out) {
    qv_d8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    qv_f8 m0 = {0}, m1 = {0}, m2 = {0}, m3 = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        stats8(x + i, &s0, &m0);
        stats8(x + i + 8, &s1, &m1);
        stats8(x + i + 16, &s2, &m2);
        stats8(x + i + 24, &s3, &m3);
    }
    for (; i < n; i++) {
        const float v = x[i], a = fabsf(v);
        s0[0] += (double)v * v;
        m0[0] = a > m0[0] ? a : m0[0];
    }
    const qv_d8 *ss[4] = {&s0, &s1, &s2, &s3};
    const qv_f8 *mx[4] = {&m0, &m1, &m2, &m3};
    double t = 0.0;
    float m = 0.0f;
    for (int a = 0; a < 4; a++)
        for (int j = 0; j < 8; j++) {
            t += (*ss[a])[j];
            m = (*mx[a])[j] > m ? (*mx[a])[j] : m;
        }
    *ss_out = t;
    *max_out = m;
}

/* The same 32 lanes with AVX-512 (one conversion per 8 floats; GCC
 * splits the generic one in halves): lanes 16h..16h+15 are the two 8-lane
 * accumulators of 16 consecutive floats, added in the same order. The max
 * uses vmaxps, which differs from the generic loop only with NaN in the
 * row, where the unit is NaN whatever the max. */
RQ_ROWK_AVX512_TARGET static void row_stats_avx512(const float *x, int n, double *ss_out, float *max_out) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    __m512 m01 = _mm512_setzero_ps(), m23 = m01;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 v01 = _mm512_loadu_ps(x + i), v23 = _mm512_loadu_ps(x + i + 16);
        const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v01));
        const __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v01), 1)));
        const __m512d d2 = _mm512_cvtps_pd(_mm512_castps512_ps256(v23));
        const __m512d d3 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v23), 1)));
        s0 = _mm512_add_pd(s0, _mm512_mul_pd(d0, d0));
        s1 = _mm512_add_pd(s1, _mm512_mul_pd(d1, d1));
        s2 = _mm512_add_pd(s2, _mm512_mul_pd(d2, d2));
        s3 = _mm512_add_pd(s3, _mm512_mul_pd(d3, d3));
        m01 = _mm512_max_ps(m01, _mm512_abs_ps(v01));
        m23 = _mm512_max_ps(m23, _mm512_abs_ps(v23));
    }
    __attribute__((aligned(64))) double ss[32];
    __attribute__((aligned(64))) float mx[32];
    _mm512_store_pd(ss, s0), _mm512_store_pd(ss + 8, s1), _mm512_store_pd(ss + 16, s2), _mm512_store_pd(ss + 24, s3);
    _mm512_store_ps(mx, m01), _mm512_store_ps(mx + 16, m23);
    for (; i < n; i++) {
        const float v = x[i], a = fabsf(v);
        ss[0] += (double)v * v;
        mx[0] = a > mx[0] ? a : mx[0];
    }
    double t = 0.0;
    float m = 0.0f;
    for (int l = 0; l < 32; l++) {
        t += ss[l];
        m = mx[l] > m ? mx[l] : m;
    }
    *ss_out = t;
    *max_out = m;
}

static void row_stats(const float *x, int n, double *ss_out, float *max_out) {
    if (rq_rowk_get_isa() == RQ_ROWK_AVX512) row_stats_avx512(x, n, ss_out, max_out);
    else row_stats_generic(x, n, ss_out, max_out);
}

/* unit = clip / code_max (see quant.h for the clip of each method). */
static float row_unit(const rq_actq_grid_info *g, int method, const float *x, int n) {
    double ss;
    float mx;
    row_stats(x, n, &ss, &mx);
    if (!isfinite(ss)) return NAN; /* NaN or Inf somewhere in the row */
    const double s = method == RQ_ACTQ_ROBUST ? g->alpha * sqrt(ss / n) : (double)mx;
    const float u = (float)(s / g->code_max);
    /* Zero (or vanishing) rows: keep 1/u finite by treating them as zeros. */
    return u >= FLT_MIN ? u : 0.0f;
}

/* Quantize one row with a given unit. Any of y / codes / mask may be NULL;
 * y may alias x. Both the fake quantizer and the encoder go through here, so
 * code * unit is the same float in both. Work goes in blocks: a branch-free
 * loop computes the codes (as floats) and the mask into small buffers, then
 * plain loops write whichever outputs were asked for. */
#define QBLOCK 256
RQ_TARGET_CLONES static void quant_row_generic(const rq_actq_grid_info *g, float u, const float *x, float *y,
                                               int8_t *codes, uint8_t *mask, int n) {
    if (isnan(u) || u == 0.0f) {
        const int bad = isnan(u);
        for (int i = 0; i < n; i++) {
            if (y) y[i] = bad ? NAN : 0.0f;
            if (codes) codes[i] = 0;
            if (mask) mask[i] = (uint8_t)!bad;
        }
        return;
    }
    const float inv = 1.0f / u;
    const float qmax = (float)g->code_max, qmin = (float)g->code_min;
    /* Mask limits a few ulps outside the clip: u = fl(s/code_max) and
     * 1/u are rounded, so the min-max row maximum can land at code_max *
     * (1 + 1e-7); it must still count as inside and keep its gradient. */
    const float lim_hi = qmax * (1.0f + 8.0f * FLT_EPSILON);
    const float lim_lo = qmin * (1.0f + 8.0f * FLT_EPSILON);
    const int midrise = g->grid == RQ_GRID_MIDRISE;
    float cf[QBLOCK];
    uint8_t in[QBLOCK];
    for (int i0 = 0; i0 < n; i0 += QBLOCK) {
        const int len = n - i0 < QBLOCK ? n - i0 : QBLOCK;
        const float *xb = x + i0;
        if (midrise) {
            /* cell [k, k+1) * step -> level (k + 1/2) * step, i.e. odd code
             * 2k+1 in units of step/2; symmetric in the sign of x. */
            for (int i = 0; i < len; i++) {
                const float xi = xb[i];
                float m = fabsf(xi) * inv;
                in[i] = (uint8_t)(m <= lim_hi);
                m = m > qmax ? qmax : m;
                float c = 2.0f * (float)(int)(m * 0.5f) + 1.0f; /* m >= 0: truncation = floor */
                c = c > qmax ? qmax : c;
                cf[i] = xi < 0.0f ? -c : c;
            }
        } else {
            /* mid-tread: round-half-even of x/unit, clamped to the code range */
            for (int i = 0; i < len; i++) {
                float v = xb[i] * inv;
                in[i] = (uint8_t)((v >= lim_lo) & (v <= lim_hi));
                v = v < qmin ? qmin : v;
                v = v > qmax ? qmax : v;
                cf[i] = rint_small(v);
            }
        }
        if (y)
            for (int i = 0; i < len; i++) y[i0 + i] = cf[i] * u;
        if (codes)
            for (int i = 0; i < len; i++) codes[i0 + i] = (int8_t)(int)cf[i];
        if (mask) memcpy(mask + i0, in, (size_t)len);
    }
}

/* The mid-rise branch above on 16 lanes with AVX-512, for a finite
 * non-zero unit: the same float operations (|x| * inv, min, truncation,
 * 2t + 1 as an exact integer, sign) and one pass writing whichever outputs
 * were asked for. GCC's vectorization of the generic loop (buffers, 8-lane
 * pieces) ran at ~2.3 cycles per element on the 2-core machine. */
static inline RQ_ROWK_AVX512_TARGET __attribute__((always_inline)) void
quant_row_midrise_avx512_t(const rq_actq_grid_info *g, float u, const float *x, float *y, int8_t *codes,
                           uint8_t *mask, int n, const int want_y, const int want_codes, const int want_mask) {
    const float qmax = (float)g->code_max;
    const __m512 vinv = _mm512_set1_ps(1.0f / u), vu = _mm512_set1_ps(u), vq = _mm512_set1_ps(qmax);
    const __m512 lim_hi = _mm512_set1_ps(qmax * (1.0f + 8.0f * FLT_EPSILON)), half = _mm512_set1_ps(0.5f);
    const __m512i qi = _mm512_set1_epi32(g->code_max), one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    const __m128i ones8 = _mm_set1_epi8(1);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 m = _mm512_mul_ps(_mm512_abs_ps(v), vinv);
        const __mmask16 inside = _mm512_cmp_ps_mask(m, lim_hi, _CMP_LE_OQ);
        m = _mm512_min_ps(m, vq);
        __m512i c = _mm512_cvttps_epi32(_mm512_mul_ps(m, half));
        c = _mm512_min_epi32(_mm512_add_epi32(_mm512_add_epi32(c, c), one), qi);
        c = _mm512_mask_sub_epi32(c, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), zero, c);
        if (k == 0xFFFF) { /* masked stores are slow on some CPUs: plain ones where possible */
            if (want_y) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(c), vu));
            if (want_codes) _mm_storeu_si128((__m128i *)(codes + i), _mm512_cvtepi32_epi8(c));
            if (want_mask) _mm_storeu_si128((__m128i *)(mask + i), _mm_maskz_mov_epi8(inside, ones8));
        } else {
            if (want_y) _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_cvtepi32_ps(c), vu));
            if (want_codes) _mm_mask_storeu_epi8(codes + i, k, _mm512_cvtepi32_epi8(c));
            if (want_mask) _mm_mask_storeu_epi8(mask + i, k, _mm_maskz_mov_epi8(inside, ones8));
        }
    }
}

/* One instance per set of outputs, so each loop computes only what it stores. */
RQ_ROWK_AVX512_TARGET static void quant_row_midrise_avx512(const rq_actq_grid_info *g, float u, const float *x,
                                                           float *y, int8_t *codes, uint8_t *mask, int n) {
    if (!y && codes && !mask) quant_row_midrise_avx512_t(g, u, x, y, codes, mask, n, 0, 1, 0); /* encoder */
    else if (y && !codes && mask) quant_row_midrise_avx512_t(g, u, x, y, codes, mask, n, 1, 0, 1); /* QAT, float path */
    else if (y && codes && mask) quant_row_midrise_avx512_t(g, u, x, y, codes, mask, n, 1, 1, 1); /* QAT, int forward */
    else quant_row_midrise_avx512_t(g, u, x, y, codes, mask, n, y != NULL, codes != NULL, mask != NULL);
}

static void quant_row(const rq_actq_grid_info *g, float u, const float *x, float *y, int8_t *codes, uint8_t *mask,
                      int n) {
    if (g->grid == RQ_GRID_MIDRISE && !isnan(u) && u != 0.0f && rq_rowk_get_isa() == RQ_ROWK_AVX512)
        quant_row_midrise_avx512(g, u, x, y, codes, mask, n);
    else
        quant_row_generic(g, u, x, y, codes, mask, n);
}

float rq_actq_row_unit(const rq_actq_cfg *cfg, const float *x, int n) {
    if (!cfg_valid(cfg) || !x || n < 1) return NAN;
    return row_unit(rq_actq_info(cfg->bits), cfg->method, x, n);
}

/* Rows of x quantized with their own unit; any of y / mask / codes / unit
 * may be NULL. The fake quantizer, the encoder and QAT's integer forward
 * all come through here, so their values agree bit for bit. */
static void actq_row(const rq_actq_grid_info *g, int method, long r, const float *x, float *y, uint8_t *mask,
                     int8_t *codes, float *unit, int n) {
    const long o = r * n;
    const float u = row_unit(g, method, x + o, n);
    if (unit) unit[r] = u;
    quant_row(g, u, x + o, y ? y + o : NULL, codes ? codes + o : NULL, mask ? mask + o : NULL, n);
}

static void actq_rows(const rq_actq_cfg *cfg, const float *x, float *y, uint8_t *mask, int8_t *codes, float *unit,
                      long rows, int n) {
    const rq_actq_grid_info *g = rq_actq_info(cfg->bits);
    /* Not through an `omp parallel if (0)`: the encoders call this per row
     * chunk inside their own parallel loop, and entering even a one-thread
     * nested region cost ~15% of quantizing a chunk. */
    if (rows > 1 && rows * n >= RQ_QUANT_PAR_WORK && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
        for (long r = 0; r < rows; r++) actq_row(g, cfg->method, r, x, y, mask, codes, unit, n);
    } else {
        for (long r = 0; r < rows; r++) actq_row(g, cfg->method, r, x, y, mask, codes, unit, n);
    }
}

void rq_actq_rowwise(const float *x, float *y, uint8_t *mask, long rows, int row_len,
                     const void *arg) {
    if (!x || !y || rows < 0 || row_len < 1) return;
    const rq_actq_cfg *cfg = (const rq_actq_cfg *)arg;
    if (!cfg_valid(cfg)) { /* loud failure: the caller skipped rq_actq_cfg_check */
        for (long i = 0; i < rows * row_len; i++) {
            y[i] = NAN;
            if (mask) mask[i] = 0;
        }
        return;
    }
    actq_rows(cfg, x, y, mask, NULL, NULL, rows, row_len);
}

void rq_actq_rows(const rq_actq_cfg *cfg, const float *x, float *y, uint8_t *mask, int8_t *codes, float *unit,
                  long rows, int n) {
    if (!x || rows < 0 || n < 1) return;
    if (!cfg_valid(cfg)) {
        rq_actq_rowwise(x, y, mask, rows, n, cfg); /* NaN out, mask 0 */
        for (long i = 0; codes && i < rows * n; i++) codes[i] = 0;
        for (long r = 0; unit && r < rows; r++) unit[r] = NAN;
        return;
    }
    actq_rows(cfg, x, y, mask, codes, unit, rows, n);
}

static rq_status check_rows(const char *who, long rows, int n, rq_err *err) {
    if (rows < 0 || n < 1)
        return rq_err_set(err, RQ_EINVAL, "%s: bad shape rows=%ld n=%d", who, rows, n);
    return RQ_OK;
}

rq_status rq_actq_quantize(const rq_actq_cfg *cfg, const float *x, float *y, uint8_t *mask,
                           long rows, int n, rq_err *err) {
    rq_status st = rq_actq_cfg_check(cfg, err);
    if (st) return st;
    if ((st = check_rows("actq_quantize", rows, n, err))) return st;
    if (rows > 0 && (!x || !y)) return rq_err_set(err, RQ_EINVAL, "actq_quantize: NULL buffer");
    rq_actq_rowwise(x, y, mask, rows, n, cfg);
    return RQ_OK;
}

rq_status rq_actq_encode(const rq_actq_cfg *cfg, const float *x, int8_t *codes, float *unit,
                         long rows, int n, rq_err *err) {
    rq_status st = rq_actq_cfg_check(cfg, err);
    if (st) return st;
    if ((st = check_rows("actq_encode", rows, n, err))) return st;
    if (rows > 0 && (!x || !codes || !unit))
        return rq_err_set(err, RQ_EINVAL, "actq_encode: NULL buffer");
    actq_rows(cfg, x, NULL, NULL, codes, unit, rows, n);
    return RQ_OK;
}

rq_status rq_actq_decode(const int8_t *codes, const float *unit, float *y, long rows, int n,
                         rq_err *err) {
    rq_status st = check_rows("actq_decode", rows, n, err);
    if (st) return st;
    if (rows > 0 && (!codes || !unit || !y))
        return rq_err_set(err, RQ_EINVAL, "actq_decode: NULL buffer");
    for (long r = 0; r < rows; r++)
        for (long i = 0; i < n; i++) y[r * n + i] = (float)codes[r * n + i] * unit[r];
    return RQ_OK;
}

rq_status rq_actq_rotate_quant(const rq_hadamard *h, const float *x, float *y, uint8_t *mask,
                               long rows, int n, const rq_actq_cfg *cfg, rq_err *err) {
    rq_status st = rq_actq_cfg_check(cfg, err);
    if (st) return st;
    if ((st = check_rows("actq_rotate_quant", rows, n, err))) return st;
    if (!h || h->n != n)
        return rq_err_set(err, RQ_EINVAL, "actq_rotate_quant: Hadamard plan is for n=%d, rows have n=%d",
                          h ? h->n : 0, n);
    if (rows > 0 && (!x || !y)) return rq_err_set(err, RQ_EINVAL, "actq_rotate_quant: NULL buffer");
    if (y != x) memcpy(y, x, (size_t)rows * (size_t)n * sizeof(float));
    rq_hadamard_apply(h, y, rows);
    rq_actq_rowwise(y, y, mask, rows, n, cfg);
    return RQ_OK;
}

/* ---------------- ternary weights ---------------- */

float rq_ternary_gamma(const float *w, int cols) {
    if (!w || cols < 1) return NAN;
    double part[8] = {0}; /* independent partial sums: vectorizable */
    int i = 0;
    for (; i + 8 <= cols; i += 8)
        for (int j = 0; j < 8; j++) part[j] += fabsf(w[i + j]);
    for (; i < cols; i++) part[0] += fabsf(w[i]);
    double s = 0.0;
    for (int j = 0; j < 8; j++) s += part[j];
    return (float)(s / cols) + RQ_TERNARY_EPS;
}

/* One row: codes and/or dequantized values (either may be NULL). */
RQ_TARGET_CLONES static float ternary_row(const float *w, float *wq, int8_t *codes, int cols) {
    const float g = rq_ternary_gamma(w, cols);
    if (!isfinite(g)) { /* the row holds NaN / Inf: propagate loudly */
        for (int i = 0; i < cols; i++) {
            if (wq) wq[i] = NAN;
            if (codes) codes[i] = 0;
        }
        return g;
    }
    float cf[QBLOCK];
    for (int i0 = 0; i0 < cols; i0 += QBLOCK) {
        const int len = cols - i0 < QBLOCK ? cols - i0 : QBLOCK;
        /* |w| <= sum|w| = cols * mean|w|, so |w / gamma| <= cols (< 2^31): the
         * int conversion cannot overflow. rint_small is exact up to 2^22 and
         * beyond that still returns something of magnitude >= 2 with the
         * right sign, which the clamp maps to +-1 as it should. The clamp is
         * done on ints: float compares would block vectorization. */
        for (int i = 0; i < len; i++) {
            const float v = w[i0 + i] / g; /* divide, as torch does: w / gamma */
            int c = (int)rint_small(v);     /* half-to-even, like torch.round */
            c = c < -1 ? -1 : c;
            c = c > 1 ? 1 : c;
            cf[i] = (float)c;
        }
        if (wq)
            for (int i = 0; i < len; i++) wq[i0 + i] = g * cf[i];
        if (codes)
            for (int i = 0; i < len; i++) codes[i0 + i] = (int8_t)(int)cf[i];
    }
    return g;
}

void rq_ternary_rowwise(const float *w, float *wq, uint8_t *mask, long rows, int cols,
                        const void *arg) {
    (void)arg;
    if (!w || !wq || rows < 0 || cols < 1) return;
    rq_ternary_rows(w, wq, NULL, NULL, rows, cols);
    if (mask) memset(mask, 1, (size_t)rows * (size_t)cols); /* identity STE */
}

void rq_ternary_rows(const float *w, float *wq, int8_t *codes, float *gamma, long rows, int cols) {
    if (!w || rows < 0 || cols < 1) return;
    const long n = cols;
    if (rows > 1 && rows * n >= RQ_QUANT_PAR_WORK && !omp_in_parallel()) { /* see actq_rows */
#pragma omp parallel for schedule(static)
        for (long r = 0; r < rows; r++) {
            const float g = ternary_row(w + r * n, wq ? wq + r * n : NULL, codes ? codes + r * n : NULL, cols);
            if (gamma) gamma[r] = g;
        }
        return;
    }
    for (long r = 0; r < rows; r++) {
        const float g = ternary_row(w + r * n, wq ? wq + r * n : NULL, codes ? codes + r * n : NULL, cols);
        if (gamma) gamma[r] = g;
    }
}

rq_status rq_ternary_encode(const float *w, int8_t *codes, float *gamma, long rows, int cols,
                            rq_err *err) {
    if (rows < 0 || cols < 1)
        return rq_err_set(err, RQ_EINVAL, "ternary_encode: bad shape rows=%ld cols=%d", rows, cols);
    if (rows > 0 && (!w || !codes || !gamma))
        return rq_err_set(err, RQ_EINVAL, "ternary_encode: NULL buffer");
    rq_ternary_rows(w, NULL, codes, gamma, rows, cols);
    for (long r = 0; r < rows; r++)
        if (!isfinite(gamma[r]))
            return rq_err_set(err, RQ_ENUM, "ternary_encode: row %ld has a non-finite weight", r);
    return RQ_OK;
}

rq_status rq_ternary_decode(const int8_t *codes, const float *gamma, float *w, long rows, int cols,
                            rq_err *err) {
    if (rows < 0 || cols < 1)
        return rq_err_set(err, RQ_EINVAL, "ternary_decode: bad shape rows=%ld cols=%d", rows, cols);
    if (rows > 0 && (!codes || !gamma || !w))
        return rq_err_set(err, RQ_EINVAL, "ternary_decode: NULL buffer");
    for (long r = 0; r < rows; r++)
        for (long i = 0; i < cols; i++) w[r * cols + i] = gamma[r] * (float)codes[r * cols + i];
    return RQ_OK;
}
