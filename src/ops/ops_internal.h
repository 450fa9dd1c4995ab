/* ops_internal.h: argument checks shared by op implementations. */
#ifndef ROBUQ_OPS_INTERNAL_H
#define ROBUQ_OPS_INTERNAL_H

#include <immintrin.h>

#include "robuq/fastmath.h"
#include "robuq/ops.h"

/* Every op starts with this: bail out on a NULL graph, a sticky error, or a
 * NULL tensor argument (which usually means an earlier op failed). */
#define OP_BEGIN(g, opname, ...)                                                       \
    do {                                                                               \
        if (!(g) || !rq_graph_ok(g)) return NULL;                                      \
        rq_tensor *op_args_[] = {__VA_ARGS__};                                         \
        for (size_t i_ = 0; i_ < sizeof op_args_ / sizeof op_args_[0]; i_++)           \
            if (!op_args_[i_]) return rq_graph_fail(g, RQ_EINVAL, "%s: NULL input %zu", \
                                                    opname, i_);                       \
    } while (0)

#define SHAPE(t) rq_shape_str((t), (char[64]){0}, 64)

/* Output tensor with x's shape. */
static inline rq_tensor *out_like(rq_graph *g, const rq_tensor *x) {
    return rq_tensor_arena(g, x->ndim, x->shape);
}

/* Grad buffer of an input that wants one, or NULL if it does not. */
static inline float *in_grad(rq_graph *g, rq_tensor *t) {
    return (t && t->requires_grad) ? rq_tensor_grad(g, t) : NULL;
}

/* rq_expf on 16 lanes, the same operations in the same order (the clamp as
 * max/min, which pass NaN through like rq_clampf), for the explicit AVX-512
 * row kernels (RQ_ROWK_AVX512): bit for bit the generic loops' values. */
static inline RQ_ROWK_AVX512_TARGET __m512 exp16_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), magic), magic);
    const __m512 r = _mm512_add_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                                   _mm512_mul_ps(n, _mm512_set1_ps(2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

#endif
