/* test_quant.c: ternary weights and the per-token activation quantizers.
 *
 * - hand-computed rows for ternary and for both activation methods (1,2,3,4,8 bits);
 * - the alpha table in quant.c is re-derived here from the exact Gaussian
 *   MSE (closed-form integrals of the N(0,1) pdf, scan + golden section),
 *   including the choice of grid per b;
 * - empirical MSE on N(0,1) samples matches the table; robust beats min-max;
 * - level counts, code ranges, mask semantics, encode/decode bit-exactness,
 *   rotate+quantize, edge cases (zero / non-finite rows, bad configs). */
#include <float.h>
#include <string.h>

#include "robuq/fastmath.h"
#include "robuq/hadamard.h"
#include "robuq/quant.h"
#include "testutil.h"

/* ---------------- helpers ---------------- */

/* Box-Muller on splitmix64 uniforms: deterministic N(0,1) samples. */
static double gauss(uint64_t *s) {
    double u1 = ((tu_next(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0); /* (0, 1] */
    double u2 = (tu_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
static void fill_gauss(uint64_t *s, float *x, long n, double sigma) {
    for (long i = 0; i < n; i++) x[i] = (float)(sigma * gauss(s));
}
static double mse_of(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / n;
}

/* ---------------- exact Gaussian MSE of a uniform grid ---------------- */
static double Phi(double x) { return 0.5 * erfc(-x / M_SQRT2); }
static double Qf(double x) { return 0.5 * erfc(x / M_SQRT2); }
static double pdf(double x) { return isinf(x) ? 0.0 : exp(-0.5 * x * x) / sqrt(2.0 * M_PI); }
/* P(a < X < c), using the tail that avoids cancellation. */
static double prob(double a, double c) {
    if (a >= 0) return Qf(a) - Qf(c);
    if (c <= 0) return Phi(c) - Phi(a);
    return 1.0 - Phi(a) - Qf(c);
}
/* int_a^c (x - L)^2 pdf(x) dx = [(1+L^2) Phi + (2L - x) pdf]_a^c */
static double cell(double a, double c, double L) {
    double ta = isinf(a) ? 0.0 : (2 * L - a) * pdf(a);
    double tc = isinf(c) ? 0.0 : (2 * L - c) * pdf(c);
    return (1 + L * L) * prob(a, c) + tc - ta;
}
/* Levels: code * step/stride for code in [lo, hi] with the given stride
 * (odd codes when stride 2). Nearest-level cells. */
static double grid_mse(int lo, int hi, int stride, double step) {
    const double unit = step / stride;
    double s = 0;
    for (int c = lo; c <= hi; c += stride) {
        double L = c * unit;
        double a = c == lo ? -INFINITY : L - step / 2, b = c + stride > hi ? INFINITY : L + step / 2;
        s += cell(a, b, L);
    }
    return s;
}
typedef struct {
    int lo, hi, stride;
} grid_def;
static grid_def grid_of(rq_grid g, int bits) {
    grid_def d;
    if (g == RQ_GRID_MIDRISE) d = (grid_def){-((1 << bits) - 1), (1 << bits) - 1, 2};
    else if (g == RQ_GRID_MIDTREAD_SYM) d = (grid_def){-((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1, 1};
    else d = (grid_def){-(1 << (bits - 1)), (1 << (bits - 1)) - 1, 1};
    return d;
}
/* argmin over step: log scan on [5e-3, 3] (also counts local minima), then
 * golden section around the best scan point. */
static double best_step(grid_def d, double *mse_out, int *n_local_min) {
    const int N = 1500;
    double best = INFINITY, bs = 0, p2 = 0, p1 = 0;
    int nmin = 0;
    for (int k = 0; k < N; k++) {
        double st = exp(log(5e-3) + (log(3.0) - log(5e-3)) * k / (N - 1));
        double m = grid_mse(d.lo, d.hi, d.stride, st);
        if (k >= 2 && p1 < p2 && p1 < m) nmin++;
        p2 = p1;
        p1 = m;
        if (m < best) best = m, bs = st;
    }
    const double gr = (sqrt(5.0) - 1) / 2;
    double lo = bs * 0.99, hi = bs * 1.01;
    for (int it = 0; it < 80; it++) {
        double c = hi - gr * (hi - lo), e = lo + gr * (hi - lo);
        if (grid_mse(d.lo, d.hi, d.stride, c) < grid_mse(d.lo, d.hi, d.stride, e)) hi = e;
        else lo = c;
    }
    double st = 0.5 * (lo + hi);
    *mse_out = grid_mse(d.lo, d.hi, d.stride, st);
    *n_local_min = nmin;
    return st;
}

/* ---------------- ternary ---------------- */

static void test_ternary_hand(void **state) {
    (void)state;
    /* row 0: gamma = 1 (+1e-8 vanishes in float); 0.5 -> rint 0 (half-to-even), 1.5 -> 2 -> 1
     * row 1: gamma = 0.45; 0.3/0.45 = 0.67 -> 1, -2 -> -1
     * row 2: gamma = 0.5; 2.5 -> 2 -> 1, -1.25 -> -1, 0.25 -> 0
     * row 3: gamma = 1; -0.5 -> -0, 1.5 -> 1, 0.5 -> 0, -1.5 -> -1
     * row 4: all zero -> gamma = 1e-8, zeros */
    const float w[5][4] = {{0.5f, -1.5f, 0.25f, 1.75f},
                           {0.3f, 0.3f, 0.3f, -0.9f},
                           {1.25f, -0.625f, 0.125f, 0.0f},
                           {-0.5f, 1.5f, 0.5f, -1.5f},
                           {0, 0, 0, 0}};
    const int8_t want_c[5][4] = {{0, -1, 0, 1}, {1, 1, 1, -1}, {1, -1, 0, 0}, {0, 1, 0, -1}, {0, 0, 0, 0}};
    const float want_g[5] = {1.0f, 0.45f, 0.5f, 1.0f, 1e-8f};
    float wq[20], dec[20], gamma[5];
    int8_t codes[20];
    uint8_t mask[20];
    memset(mask, 7, sizeof mask);
    rq_ternary_rowwise(&w[0][0], wq, mask, 5, 4, NULL);
    assert_int_equal(rq_ternary_encode(&w[0][0], codes, gamma, 5, 4, NULL), RQ_OK);
    for (int r = 0; r < 5; r++) {
        assert_float_equal(gamma[r], want_g[r], 1e-6 * want_g[r] + 1e-12);
        assert_float_equal(rq_ternary_gamma(w[r], 4), gamma[r], 0.0);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(codes[r * 4 + i], want_c[r][i]);
            assert_float_equal(wq[r * 4 + i], want_g[r] * want_c[r][i], 1e-6);
            assert_int_equal(mask[r * 4 + i], 1);
        }
    }
    assert_int_equal(rq_ternary_decode(codes, gamma, dec, 5, 4, NULL), RQ_OK);
    assert_memory_equal(dec, wq, sizeof wq);
}

static void test_ternary_random(void **state) {
    (void)state;
    enum { R = 96, C = 1152 };
    float *w = malloc(sizeof(float) * R * C), *wq = malloc(sizeof(float) * R * C);
    float *dec = malloc(sizeof(float) * R * C), gamma[R];
    int8_t *codes = malloc(R * C);
    uint64_t seed = 11;
    fill_gauss(&seed, w, (long)R * C, 0.02);
    /* row 0: exact ties for round-half-even (+-0.5 -> 0, +-1.5 -> +-2 -> +-1,
     * 2.5 -> 2 -> 1); the first 8 |w| sum to 8 and the rest are +-1, so
     * mean|w| = 1 exactly. */
    for (int i = 0; i < C; i++) w[i] = (i & 1) ? -1.0f : 1.0f;
    w[0] = 0.5f, w[1] = 1.5f, w[2] = -0.5f, w[3] = -1.5f, w[4] = 2.5f, w[5] = -0.75f, w[6] = 0.25f, w[7] = -0.5f;
    rq_ternary_rowwise(w, wq, NULL, R, C, NULL);
    assert_int_equal(rq_ternary_encode(w, codes, gamma, R, C, NULL), RQ_OK);
    assert_int_equal(rq_ternary_decode(codes, gamma, dec, R, C, NULL), RQ_OK);
    assert_memory_equal(dec, wq, sizeof(float) * R * C); /* bit-exact export */
    const int8_t tie_codes[8] = {0, 1, 0, -1, 1, -1, 0, 0};
    assert_float_equal(gamma[0], 1.0f, 0.0);
    assert_memory_equal(codes, tie_codes, 8);
    for (int r = 0; r < R; r++) {
        double s = 0;
        for (int i = 0; i < C; i++) s += fabs(w[r * C + i]);
        assert_float_equal(gamma[r], s / C + 1e-8, 1e-6 * gamma[r]);
        for (int i = 0; i < C; i++) {
            const float v = w[r * C + i], g = gamma[r];
            const int c = codes[r * C + i];
            assert_true(c >= -1 && c <= 1);
            /* the reference formula, with libm's rintf */
            const float ref = fminf(fmaxf(rintf(v / g), -1.0f), 1.0f);
            if ((float)c != ref) fail_msg("row %d col %d: code %d, clamp(rint(w/g)) = %g", r, i, c, ref);
            /* |w| > g/2 -> +-1, |w| < g/2 -> 0 */
            if (fabsf(v) > 0.5001f * g) assert_int_equal(c, v > 0 ? 1 : -1);
            if (fabsf(v) < 0.4999f * g) assert_int_equal(c, 0);
        }
    }
    /* errors */
    rq_err err = {0};
    w[5] = NAN;
    assert_int_equal(rq_ternary_encode(w, codes, gamma, R, C, &err), RQ_ENUM);
    rq_err_clear(&err);
    assert_int_equal(rq_ternary_encode(w, codes, gamma, R, 0, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_ternary_encode(NULL, codes, gamma, R, C, &err), RQ_EINVAL);
    free(w), free(wq), free(dec), free(codes);
}

/* ---------------- activation table ---------------- */

static void test_actq_table(void **state) {
    (void)state;
    const rq_grid grids[3] = {RQ_GRID_MIDRISE, RQ_GRID_MIDTREAD_SYM, RQ_GRID_MIDTREAD_ASYM};
    for (int b = 1; b <= 8; b++) {
        const rq_actq_grid_info *t = rq_actq_info(b);
        assert_non_null(t);
        assert_int_equal(t->bits, b);
        double best_mse = INFINITY;
        rq_grid best_g = RQ_GRID_MIDRISE;
        double best_st = 0;
        for (int gi = 0; gi < 3; gi++) {
            grid_def d = grid_of(grids[gi], b);
            if (d.hi < 1) continue;                  /* mid-tread sym at 1 bit: a single level */
            double m;
            int nmin;
            double st = best_step(d, &m, &nmin);
            assert_int_equal(nmin, 1);               /* unimodal: the scan found the optimum */
            const int fits = d.lo >= -128 && d.hi <= 127; /* the kernels' int8 codes */
            print_message("  b=%d %-14s step %.6f alpha %.6f mse %.6e%s\n", b, rq_grid_name(grids[gi]), st,
                          d.hi * st / d.stride, m, fits ? "" : "  (codes exceed int8)");
            if (fits && m < best_mse) best_mse = m, best_g = grids[gi], best_st = st;
        }
        assert_int_equal(t->grid, best_g);
        grid_def d = grid_of(t->grid, b);
        assert_int_equal(t->code_min, d.lo);
        assert_int_equal(t->code_max, d.hi);
        assert_int_equal(t->code_stride, d.stride);
        const double alpha = d.hi * best_st / d.stride;
        if (fabs(t->alpha / alpha - 1) > 1e-3) fail_msg("b=%d alpha table %g derived %g", b, t->alpha, alpha);
        if (fabs(t->step / best_st - 1) > 1e-3) fail_msg("b=%d step table %g derived %g", b, t->step, best_st);
        if (fabs(t->mse / best_mse - 1) > 1e-4) fail_msg("b=%d mse table %g derived %g", b, t->mse, best_mse);
        /* internal consistency: alpha = code_max * step / stride */
        assert_float_equal(t->alpha, t->code_max * t->step / t->code_stride, 1e-8);
    }
    /* design facts: 2-bit mid-rise beats the asymmetric mid-tread [-2, 1]; 1 bit = sign * sqrt(2/pi) */
    assert_int_equal(rq_actq_info(2)->grid, RQ_GRID_MIDRISE);
    assert_float_equal(rq_actq_info(1)->alpha, sqrt(2.0 / M_PI), 1e-8);
    assert_null(rq_actq_info(0));
    assert_null(rq_actq_info(9));
}

/* ---------------- activation hand examples ---------------- */

static void check_row(const rq_actq_cfg *cfg, const float *x, const float *want, const uint8_t *want_mask) {
    float y[4];
    uint8_t mask[4];
    assert_int_equal(rq_actq_quantize(cfg, x, y, mask, 1, 4, NULL), RQ_OK);
    for (int i = 0; i < 4; i++) {
        if (fabsf(y[i] - want[i]) > 1e-6f * (1 + fabsf(want[i])))
            fail_msg("bits=%d method=%d: y[%d]=%.9g want %.9g", cfg->bits, cfg->method, i, y[i], want[i]);
        if (mask[i] != want_mask[i]) fail_msg("bits=%d method=%d: mask[%d]=%d", cfg->bits, cfg->method, i, mask[i]);
    }
}

static void test_actq_hand(void **state) {
    (void)state;
    /* min-max, x = [1, -0.6, 0.25, -0.1], s = 1:
     *  1b: sign; 2b unit 1/3: |x|/u = 3, 1.8, .75, .3 -> odd codes 3,-1,1,-1;
     *  3b unit 1/7: 7, 4.2, 1.75, .7 -> 7,-5,1,-1; 4b unit 1/15: 15, 9, 3.75, 1.5 -> 15,-9,3,-1;
     *  8b mid-tread unit 1/127: 127, -76.2, 31.75, -12.7 -> 127,-76,32,-13 */
    const float x[4] = {1.0f, -0.6f, 0.25f, -0.1f};
    const uint8_t all1[4] = {1, 1, 1, 1};
    const float mm1[4] = {1, -1, 1, -1};
    const float mm2[4] = {1, -1.f / 3, 1.f / 3, -1.f / 3};
    const float mm3[4] = {1, -5.f / 7, 1.f / 7, -1.f / 7};
    const float mm4[4] = {1, -9.f / 15, 3.f / 15, -1.f / 15};
    const float mm8[4] = {1, -76.f / 127, 32.f / 127, -13.f / 127};
    check_row(&(rq_actq_cfg){1, RQ_ACTQ_MINMAX}, x, mm1, all1);
    check_row(&(rq_actq_cfg){2, RQ_ACTQ_MINMAX}, x, mm2, all1);
    check_row(&(rq_actq_cfg){3, RQ_ACTQ_MINMAX}, x, mm3, all1);
    check_row(&(rq_actq_cfg){4, RQ_ACTQ_MINMAX}, x, mm4, all1);
    check_row(&(rq_actq_cfg){8, RQ_ACTQ_MINMAX}, x, mm8, all1);

    /* robust, x = [2, -1, 0.5, 0.5], rms = sqrt(1.375) = 1.17260394, s = alpha_b * rms:
     *  1b s=0.935602594: sign * s, |2|,|-1| > s clipped
     *  2b s=1.75131919 u=s/3: 2 clipped -> 3u; 1/u=1.71 -> 1; 0.5/u=0.86 -> 1
     *  3b s=2.4050905 u=s/7: 5.82 -> 5, 2.91 -> 3, 1.46 -> 1
     *  4b s=2.94793165 u=s/15: 10.18 -> 11, 5.09 -> 5, 2.54 -> 3
     *  8b s=4.58163153 u=s/127 (mid-tread): 55.44 -> 55, -27.72 -> -28, 13.86 -> 14 */
    const float r[4] = {2.0f, -1.0f, 0.5f, 0.5f};
    const float rb1[4] = {0.935602594f, -0.935602594f, 0.935602594f, 0.935602594f};
    const float rb2[4] = {1.75131919f, -0.583773063f, 0.583773063f, 0.583773063f};
    const float rb3[4] = {1.71792178f, -1.03075307f, 0.343584357f, 0.343584357f};
    const float rb4[4] = {2.16181654f, -0.982643884f, 0.58958633f, 0.58958633f};
    const float rb8[4] = {1.98417113f, -1.01012349f, 0.505061743f, 0.505061743f};
    check_row(&(rq_actq_cfg){1, RQ_ACTQ_ROBUST}, r, rb1, (const uint8_t[4]){0, 0, 1, 1});
    check_row(&(rq_actq_cfg){2, RQ_ACTQ_ROBUST}, r, rb2, (const uint8_t[4]){0, 1, 1, 1});
    check_row(&(rq_actq_cfg){3, RQ_ACTQ_ROBUST}, r, rb3, all1);
    check_row(&(rq_actq_cfg){4, RQ_ACTQ_ROBUST}, r, rb4, all1);
    check_row(&(rq_actq_cfg){8, RQ_ACTQ_ROBUST}, r, rb8, all1);

    /* unit reported by the helper */
    assert_float_equal(rq_actq_row_unit(&(rq_actq_cfg){2, RQ_ACTQ_ROBUST}, r, 4), 0.583773063f, 1e-6);
    assert_float_equal(rq_actq_row_unit(&(rq_actq_cfg){8, RQ_ACTQ_MINMAX}, x, 4), 1.0 / 127, 1e-8);
}

/* ---------------- statistics on Gaussian data ---------------- */

/* 4M samples: at b >= 6 much of the MSE comes from the rare samples beyond
 * ~3.3 sigma; with 256k samples the estimate still wanders by +-8%. */
enum { SR = 4096, SN = 1024 };

static void test_actq_gaussian_mse(void **state) {
    (void)state;
    float *x = malloc(sizeof(float) * SR * SN), *y = malloc(sizeof(float) * SR * SN);
    uint64_t seed = 12345;
    const double sigma = 3.7; /* the quantizer must be scale-equivariant */
    fill_gauss(&seed, x, (long)SR * SN, sigma);
    double mse_rob[9], mse_mm[9];
    for (int b = 1; b <= 8; b++) {
        rq_actq_cfg rob = {b, RQ_ACTQ_ROBUST}, mm = {b, RQ_ACTQ_MINMAX};
        assert_int_equal(rq_actq_quantize(&rob, x, y, NULL, SR, SN, NULL), RQ_OK);
        mse_rob[b] = mse_of(x, y, (long)SR * SN) / (sigma * sigma);
        assert_int_equal(rq_actq_quantize(&mm, x, y, NULL, SR, SN, NULL), RQ_OK);
        mse_mm[b] = mse_of(x, y, (long)SR * SN) / (sigma * sigma);
        const double want = rq_actq_info(b)->mse;
        print_message("  b=%d robust mse %.5e (table %.5e, ratio %.4f)  minmax mse %.5e\n", b, mse_rob[b], want,
                      mse_rob[b] / want, mse_mm[b]);
        if (fabs(mse_rob[b] / want - 1) > 0.03) fail_msg("b=%d empirical mse %g vs table %g", b, mse_rob[b], want);
        /* Robust clipping wins at low bits; at >= 6 bits the max of a
         * 1024-sample row (~3.2 sigma) is already a good clip, so no claim. */
        if (b <= 4) assert_true(mse_rob[b] < mse_mm[b]);
        if (b > 1) assert_true(mse_rob[b] < mse_rob[b - 1]);
    }
    /* the design's point: at 2 bits the robust clip is far better than min-max */
    assert_true(mse_rob[2] < 0.6 * mse_mm[2]);
    free(x), free(y);
}

/* codes in range (odd for mid-rise), <= 2^b distinct levels per row (exactly
 * 2^b for b <= 4 on 4096 Gaussian samples), mask semantics. */
static void test_actq_levels_and_mask(void **state) {
    (void)state;
    enum { R = 8, N = 4096 };
    float *x = malloc(sizeof(float) * R * N), *y = malloc(sizeof(float) * R * N), unit[R];
    int8_t *codes = malloc(R * N);
    uint8_t *mask = malloc(R * N);
    uint64_t seed = 99;
    fill_gauss(&seed, x, (long)R * N, 1.0);
    x[3] = 40.0f;     /* outliers: clipped under robust, they set the scale under min-max */
    x[N + 7] = -25.0f;
    for (int method = 0; method < 2; method++)
        for (int b = 1; b <= 8; b++) {
            const rq_actq_cfg cfg = {b, method};
            const rq_actq_grid_info *t = rq_actq_info(b);
            assert_int_equal(rq_actq_quantize(&cfg, x, y, mask, R, N, NULL), RQ_OK);
            assert_int_equal(rq_actq_encode(&cfg, x, codes, unit, R, N, NULL), RQ_OK);
            for (int r = 0; r < R; r++) {
                int seen[256] = {0}, distinct = 0;
                const float u = unit[r];
                assert_true(u > 0);
                float maxabs = 0;
                for (int i = 0; i < N; i++) maxabs = fmaxf(maxabs, fabsf(x[r * N + i]));
                for (int i = 0; i < N; i++) {
                    const long k = (long)r * N + i;
                    const int c = codes[k];
                    assert_true(c >= t->code_min && c <= t->code_max);
                    /* the code from the reference formula (libm floor / rint) */
                    const float inv = 1.0f / u;
                    int ref;
                    if (t->grid == RQ_GRID_MIDRISE) {
                        ref = 2 * (int)floorf(fminf(fabsf(x[k]) * inv, (float)t->code_max) * 0.5f) + 1;
                        if (ref > t->code_max) ref = t->code_max;
                        if (x[k] < 0) ref = -ref;
                    } else {
                        ref = (int)rintf(fminf(fmaxf(x[k] * inv, (float)t->code_min), (float)t->code_max));
                    }
                    if (c != ref) fail_msg("b=%d m=%d: code %d, reference %d (x=%g u=%g)", b, method, c, ref, x[k], u);
                    if (t->code_stride == 2) assert_true(c & 1);
                    if (!seen[c + 128]++) distinct++;
                    const double lo = t->code_min * (double)u, hi = t->code_max * (double)u;
                    const double xi = x[k];
                    const int inside = xi >= lo * (1 + 1e-6) && xi <= hi * (1 + 1e-6);
                    const int strictly = xi >= lo * (1 - 1e-6) && xi <= hi * (1 - 1e-6);
                    if (strictly) assert_int_equal(mask[k], 1);
                    if (!inside) assert_int_equal(mask[k], 0);
                    if (mask[k]) { /* nearest level: within half a step */
                        if (fabs(y[k] - xi) > 0.5 * t->code_stride * u * (1 + 1e-5))
                            fail_msg("b=%d m=%d: |y-x| = %g > step/2", b, method, fabs(y[k] - xi));
                    } else { /* clipped to the end level */
                        assert_true(c == t->code_max || c == t->code_min);
                    }
                    /* min-max: the row maximum is never clipped and lands on +-code_max */
                    if (method == RQ_ACTQ_MINMAX && fabsf((float)xi) == maxabs) {
                        assert_int_equal(mask[k], 1);
                        assert_int_equal(abs(c), t->code_max);
                    }
                }
                assert_true(distinct <= (1 << b));
                if (b <= 4 && method == RQ_ACTQ_ROBUST) assert_int_equal(distinct, 1 << b);
            }
        }
    free(x), free(y), free(codes), free(mask);
}

/* encode -> decode reproduces the fake quantizer bit for bit (every b, both
 * methods), including a zero row and an outlier row. */
static void test_actq_encode_bitexact(void **state) {
    (void)state;
    enum { R = 12, N = 768 };
    float *x = malloc(sizeof(float) * R * N), *y = malloc(sizeof(float) * R * N);
    float *d = malloc(sizeof(float) * R * N), unit[R];
    int8_t *codes = malloc(R * N);
    uint64_t seed = 5;
    fill_gauss(&seed, x, (long)R * N, 0.7);
    memset(x + 2 * N, 0, sizeof(float) * N); /* zero row */
    x[5 * N + 10] = 1e3f;                    /* outlier row */
    tu_fill(&seed, x + 7 * N, N, -3.0f, 3.0f);
    for (int method = 0; method < 2; method++)
        for (int b = 1; b <= 8; b++) {
            const rq_actq_cfg cfg = {b, method};
            assert_int_equal(rq_actq_quantize(&cfg, x, y, NULL, R, N, NULL), RQ_OK);
            assert_int_equal(rq_actq_encode(&cfg, x, codes, unit, R, N, NULL), RQ_OK);
            assert_int_equal(rq_actq_decode(codes, unit, d, R, N, NULL), RQ_OK);
            if (memcmp(d, y, sizeof(float) * R * N)) fail_msg("b=%d method=%d: decode != fake quant", b, method);
            for (int r = 0; r < R; r++) assert_float_equal(unit[r], rq_actq_row_unit(&cfg, x + r * N, N), 0.0);
            assert_float_equal(unit[2], 0.0, 0.0);
            /* in place gives the same */
            memcpy(d, x, sizeof(float) * R * N);
            rq_actq_rowwise(d, d, NULL, R, N, &cfg);
            assert_memory_equal(d, y, sizeof(float) * R * N);
        }
    free(x), free(y), free(d), free(codes);
}

/* rotate + quantize == apply Hadamard then quantize; rotation spreads an
 * outlier so the rotated quantization error is much lower. */
/* The explicit AVX-512 row loops (statistics, mid-rise rounding) against
 * the generic ones: unit, fake-quant value, STE mask and code bit for bit,
 * for every b and method, on lengths around the vector widths and on rows
 * built to hit the edges: values exactly on cell boundaries and on the
 * clip (x = k * unit), -0, denormals, huge and tiny scales, zero rows and
 * non-finite rows. */
static void test_actq_isa_bitexact(void **state) {
    (void)state;
    const rq_rowk_isa keep = rq_rowk_get_isa();
    if (rq_rowk_set_isa(RQ_ROWK_AVX512) != RQ_ROWK_AVX512) {
        print_message("  no AVX-512 here: only the generic loops exist, nothing to compare\n");
        rq_rowk_set_isa(keep);
        return;
    }
    enum { R = 12, NMAX = 1600 };
    const int lens[] = {1, 3, 15, 16, 17, 31, 32, 33, 47, 100, 384, 1536, 1599};
    float *x = malloc(sizeof(float) * R * NMAX), *y[2];
    uint8_t *mask[2];
    int8_t *codes[2];
    float unit[2][R];
    for (int v = 0; v < 2; v++) {
        y[v] = malloc(sizeof(float) * R * NMAX);
        mask[v] = malloc(R * NMAX);
        codes[v] = malloc(R * NMAX);
    }
    uint64_t seed = 4242;
    long compared = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int n = lens[li];
        for (int b = 1; b <= 8; b++)
            for (int method = 0; method < 2; method++) {
                const rq_actq_cfg cfg = {b, method};
                for (int r = 0; r < R; r++) {
                    float *row = x + (long)r * n;
                    fill_gauss(&seed, row, n, r < 4 ? 1.0 : r < 6 ? 1e-30 : r < 8 ? 1e30 : 3.0);
                    if (r == 8) memset(row, 0, sizeof(float) * n);                  /* zero row */
                    if (r == 9) row[n / 2] = (n % 2) ? NAN : INFINITY;              /* non-finite */
                    if (r == 10) { /* multiples of the unit of the Gaussian row: cell edges, the clip */
                        const float u = rq_actq_row_unit(&cfg, row, n);
                        for (int i = 0; i < n; i++) row[i] = (float)((i % 9) - 4) * u;
                    }
                    if (r == 11)
                        for (int i = 0; i < n; i += 3) row[i] = i % 2 ? -0.0f : 1e-40f; /* -0, denormals */
                }
                for (int v = 0; v < 2; v++) {
                    rq_rowk_set_isa(v ? RQ_ROWK_AVX512 : RQ_ROWK_GENERIC);
                    rq_actq_rows(&cfg, x, y[v], mask[v], codes[v], unit[v], R, n);
                }
                if (memcmp(unit[0], unit[1], sizeof unit[0]) || memcmp(y[0], y[1], sizeof(float) * R * n) ||
                    memcmp(mask[0], mask[1], (size_t)R * n) || memcmp(codes[0], codes[1], (size_t)R * n))
                    fail_msg("avx512 differs from generic: n=%d bits=%d method=%s", n, b, rq_actq_method_name(method));
                compared += (long)R * n;
            }
    }
    print_message("  avx512 == generic on %ld values\n", compared);
    for (int v = 0; v < 2; v++) free(y[v]), free(mask[v]), free(codes[v]);
    free(x);
    rq_rowk_set_isa(keep);
}

static void test_actq_rotate(void **state) {
    (void)state;
    enum { R = 16, N = 1152 };
    float *x = malloc(sizeof(float) * R * N), *y = malloc(sizeof(float) * R * N);
    float *ref = malloc(sizeof(float) * R * N), *q = malloc(sizeof(float) * R * N);
    uint8_t *m1 = malloc(R * N), *m2 = malloc(R * N);
    uint64_t seed = 77;
    tu_fill(&seed, x, (long)R * N, -1.0f, 1.0f);
    for (int r = 0; r < R; r++) x[r * N + (r * 37) % N] = 30.0f; /* one outlier channel per token */
    rq_hadamard h;
    assert_int_equal(rq_hadamard_plan_init(&h, N, NULL), RQ_OK);
    const rq_actq_cfg cfg = {2, RQ_ACTQ_ROBUST};
    rq_err err = {0};
    assert_int_equal(rq_actq_rotate_quant(&h, x, y, m1, R, N, &cfg, &err), RQ_OK);
    memcpy(ref, x, sizeof(float) * R * N);
    assert_int_equal(rq_hadamard_apply(&h, ref, R), RQ_OK);
    assert_int_equal(rq_actq_quantize(&cfg, ref, q, m2, R, N, NULL), RQ_OK);
    assert_memory_equal(y, q, sizeof(float) * R * N);
    assert_memory_equal(m1, m2, R * N);
    /* in place */
    memcpy(q, x, sizeof(float) * R * N);
    assert_int_equal(rq_actq_rotate_quant(&h, q, q, NULL, R, N, &cfg, NULL), RQ_OK);
    assert_memory_equal(q, y, sizeof(float) * R * N);
    /* error measured in the original basis (H is its own inverse) */
    assert_int_equal(rq_hadamard_apply(&h, q, R), RQ_OK);
    const double err_rot = mse_of(q, x, (long)R * N);
    assert_int_equal(rq_actq_quantize(&cfg, x, q, NULL, R, N, NULL), RQ_OK);
    const double err_plain = mse_of(q, x, (long)R * N);
    print_message("  2-bit robust, outlier tokens: mse plain %.4g, rotated %.4g\n", err_plain, err_rot);
    assert_true(err_rot < 0.5 * err_plain);
    /* plan / width mismatch */
    assert_int_equal(rq_actq_rotate_quant(&h, x, y, NULL, R, 1024, &cfg, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "n=1152"));
    free(x), free(y), free(ref), free(q), free(m1), free(m2);
}

/* ---------------- edge cases ---------------- */

static void test_actq_edges(void **state) {
    (void)state;
    rq_err err = {0};
    const int badbits[] = {0, 9, -3, 16};
    for (int i = 0; i < 4; i++) {
        rq_err_clear(&err);
        assert_int_equal(rq_actq_cfg_check(&(rq_actq_cfg){badbits[i], RQ_ACTQ_ROBUST}, &err), RQ_EINVAL);
        char want[32];
        snprintf(want, sizeof want, "bits=%d", badbits[i]);
        assert_non_null(strstr(err.msg, want));
    }
    rq_err_clear(&err);
    assert_int_equal(rq_actq_cfg_check(&(rq_actq_cfg){2, 7}, &err), RQ_EINVAL);
    assert_int_equal(rq_actq_cfg_check(NULL, NULL), RQ_EINVAL);
    for (int b = 1; b <= 8; b++) assert_int_equal(rq_actq_cfg_check(&(rq_actq_cfg){b, RQ_ACTQ_MINMAX}, NULL), RQ_OK);
    int m = -1;
    assert_int_equal(rq_actq_method_parse("minmax", &m, NULL), RQ_OK);
    assert_int_equal(m, RQ_ACTQ_MINMAX);
    assert_int_equal(rq_actq_method_parse("robust", &m, NULL), RQ_OK);
    assert_int_equal(m, RQ_ACTQ_ROBUST);
    assert_int_equal(rq_actq_method_parse("mse", &m, NULL), RQ_EINVAL);

    /* all-zero and vanishing rows: zeros, no NaN; non-finite row: NaN, mask 0 */
    float x[3][8] = {{0}, {1e-40f, -1e-40f, 0, 0, 0, 0, 0, 0}, {1, 2, NAN, 0, 0, 0, 0, 0}};
    float y[24], unit[3];
    int8_t codes[24];
    uint8_t mask[24];
    for (int method = 0; method < 2; method++)
        for (int b = 1; b <= 8; b++) {
            const rq_actq_cfg cfg = {b, method};
            assert_int_equal(rq_actq_quantize(&cfg, &x[0][0], y, mask, 3, 8, NULL), RQ_OK);
            for (int i = 0; i < 16; i++) {
                assert_true(y[i] == 0.0f);
                assert_int_equal(mask[i], 1);
            }
            for (int i = 16; i < 24; i++) {
                assert_true(isnan(y[i]));
                assert_int_equal(mask[i], 0);
            }
            assert_int_equal(rq_actq_encode(&cfg, &x[0][0], codes, unit, 3, 8, NULL), RQ_OK);
            assert_true(unit[0] == 0.0f && unit[1] == 0.0f && isnan(unit[2]));
        }
    /* invalid cfg through the STE entry point: loud NaN, not silent garbage */
    rq_actq_rowwise(&x[0][0], y, mask, 1, 8, &(rq_actq_cfg){0, RQ_ACTQ_ROBUST});
    for (int i = 0; i < 8; i++) assert_true(isnan(y[i]) && mask[i] == 0);
    /* checked entry points reject bad shapes and buffers */
    rq_err_clear(&err);
    assert_int_equal(rq_actq_quantize(&(rq_actq_cfg){9, 0}, &x[0][0], y, NULL, 1, 8, &err), RQ_EINVAL);
    assert_int_equal(rq_actq_quantize(&(rq_actq_cfg){2, 0}, &x[0][0], y, NULL, 1, 0, NULL), RQ_EINVAL);
    assert_int_equal(rq_actq_quantize(&(rq_actq_cfg){2, 0}, NULL, y, NULL, 1, 8, NULL), RQ_EINVAL);
    assert_int_equal(rq_actq_encode(&(rq_actq_cfg){2, 0}, &x[0][0], NULL, unit, 1, 8, NULL), RQ_EINVAL);
    assert_int_equal(rq_actq_decode(codes, NULL, y, 1, 8, NULL), RQ_EINVAL);
    assert_true(isnan(rq_actq_row_unit(&(rq_actq_cfg){0, 0}, &x[0][0], 8)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ternary_hand),
        cmocka_unit_test(test_ternary_random),
        cmocka_unit_test(test_actq_table),
        cmocka_unit_test(test_actq_hand),
        cmocka_unit_test(test_actq_gaussian_mse),
        cmocka_unit_test(test_actq_levels_and_mask),
        cmocka_unit_test(test_actq_encode_bitexact),
        cmocka_unit_test(test_actq_isa_bitexact),
        cmocka_unit_test(test_actq_rotate),
        cmocka_unit_test(test_actq_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
