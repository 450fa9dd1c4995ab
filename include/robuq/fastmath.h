/* fastmath.h: exp / tanh / sigmoid written so the compiler vectorizes the
 * loops that call them (libm's scalar expf/tanhf dominated the profile).
 * rq_expf: Cephes range reduction + degree-6 polynomial, relative error
 * below 2e-7 on [-87, 88]; inputs are clamped to that range. */
#ifndef ROBUQ_FASTMATH_H
#define ROBUQ_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Hot elementwise/row loops are compiled once per ISA (AVX-512F, AVX2,
 * baseline SSE2) and picked at load time through GCC's target_clones
 * (ifunc), so the portable build runs them at full vector width. All clones
 * return the same floats: without -ffast-math the vectorizer never
 * reassociates, and the library is built with -ffp-contract=off, so the AVX
 * clones do not fuse a*b+c into FMAs (CMakeLists.txt). Reductions that must
 * stay exact keep a fixed lane structure written out in the source (the same
 * on every ISA). Define RQ_NO_CLONES to get a single default version. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(RQ_NO_CLONES)
#define RQ_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RQ_TARGET_CLONES
#endif

/* x clamped to [lo, hi], NaN passed through: the value of
 * x < lo ? lo : (x > hi ? hi : x). Written as integer bit selects on the
 * compare results: a float ?: here is "control flow in loop" under
 * -ftrapping-math and blocks vectorization of the calling loop (AVX-512
 * if-converts it with masks, SSE2/AVX2 do not); the bit select vectorizes on
 * every ISA and gives exactly the same bits. */
static inline float rq_clampf(float x, float lo, float hi) {
    int32_t xi, lb, hb;
    memcpy(&xi, &x, sizeof xi);
    memcpy(&lb, &lo, sizeof lb);
    memcpy(&hb, &hi, sizeof hb);
    const int32_t below = -(int32_t)(x < lo), above = -(int32_t)(x > hi); /* all ones or 0 */
    xi = (xi & ~below) | (lb & below);
    xi = (xi & ~above) | (hb & above);
    memcpy(&x, &xi, sizeof x);
    return x;
}

/* Some row loops also have an explicit AVX-512 form (the activation
 * quantizer's statistics and mid-rise rounding, the attention softmax), for
 * what the vectorizer does poorly (float->double sums, per-row tails, a
 * buffer between passes). RQ_ROWK_AVX512 needs AVX-512 F/BW/VL/DQ;
 * RQ_ROWK_GENERIC runs the loops above. Both give the same bits (tests
 * compare them). AUTO picks the best; set_isa returns the one in effect
 * (an unsupported request falls back to GENERIC). */
typedef enum { RQ_ROWK_AUTO = 0, RQ_ROWK_GENERIC, RQ_ROWK_AVX512 } rq_rowk_isa;
rq_rowk_isa rq_rowk_set_isa(rq_rowk_isa isa);
rq_rowk_isa rq_rowk_get_isa(void);
const char *rq_rowk_isa_name(rq_rowk_isa isa);
#define RQ_ROWK_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

static inline float rq_expf(float x) {
    x = rq_clampf(x, -87.0f, 88.0f);
    /* n = round(x / ln2) via the 1.5 * 2^23 trick (no libm call) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* unsigned shift: a NaN x makes n NaN and the exponent garbage, but p is
     * NaN then and so is the result; no signed-shift UB on the way */
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float rq_tanhf(float x) { return 1.0f - 2.0f / (rq_expf(2.0f * x) + 1.0f); }

static inline float rq_sigmoidf(float x) { return 1.0f / (1.0f + rq_expf(-x)); }

/* max over x[0..n) of the elements that are not NaN (-INFINITY if none), the
 * value the sequential loop `m = x[i] > m ? x[i] : m` gives. Sixteen
 * independent running maxima so it vectorizes: max is exact (no rounding),
 * NaN is skipped in every lane as in the sequential loop, so the only
 * possible difference is the sign of a zero maximum (+0 vs -0 when both
 * occur), which the softmax callers cannot observe: they use m only as
 * x - m (x - (+0) and x - (-0) differ only for x = -0, giving -0 vs +0, and
 * rq_expf(-0) == rq_expf(+0) bit for bit) and as m + logf(s) with s >= 1
 * (logf(s) >= +0, and +-0 + +0 = +0). */
static inline float rq_row_maxf(const float *x, int n) {
    float mx[16];
    for (int j = 0; j < 16; j++) mx[j] = -INFINITY;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) mx[j] = x[i + j] > mx[j] ? x[i + j] : mx[j];
    for (; i < n; i++) mx[0] = x[i] > mx[0] ? x[i] : mx[0];
    float m = -INFINITY;
    for (int j = 0; j < 16; j++) m = mx[j] > m ? mx[j] : m;
    return m;
}

/* Sum of x[0..n) in 16 partial sums (partial l takes i = l mod 16 of the
 * full blocks of 16, partial 0 also the tail; then added l = 0..15 in
 * order): a fixed order that vectorizes, unlike one running sum. */
static inline float rq_row_sumf(const float *x, int n) {
    float part[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) part[j] += x[i + j];
    for (; i < n; i++) part[0] += x[i];
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += part[j];
    return s;
}

#endif
