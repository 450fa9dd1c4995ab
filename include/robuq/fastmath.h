/* fastmath.h: exp / tanh / sigmoid written so the compiler vectorizes the
 * loops that call them (libm's scalar expf/tanhf dominated the profile).
 * rq_expf: Cephes range reduction + degree-6 polynomial, relative error
 * below 2e-7 on [-87, 88]; inputs are clamped to that range. */
#ifndef ROBUQ_FASTMATH_H
#define ROBUQ_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float rq_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
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
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float rq_tanhf(float x) { return 1.0f - 2.0f / (rq_expf(2.0f * x) + 1.0f); }

static inline float rq_sigmoidf(float x) { return 1.0f / (1.0f + rq_expf(-x)); }

#endif
