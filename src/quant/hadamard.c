/* hadamard.c: fast orthonormal Hadamard transforms of length 2^k, 12*2^k,
 * 36*2^k (see hadamard.h for the conventions). */
#include "robuq/hadamard.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Rows * n above which rq_hadamard_apply spreads rows over threads; below it
 * the fork/join costs more than the transform. */
#define RQ_HAD_PAR_WORK (1L << 15)

/* Quadratic character of x modulo the prime q: 0, +1 (residue), -1. */
static int legendre(int x, int q) {
    x %= q;
    if (x < 0) x += q;
    if (x == 0) return 0;
    for (int y = 1; y < q; y++)
        if ((y * y) % q == x) return 1;
    return -1;
}

/* Paley construction I, q = 3 mod 4: H = I + S of order q+1 with
 * S = [[0, 1^T], [-1, Q]], Q[i][j] = chi(j - i) (skew). H is skew-type, so we
 * turn it into an equivalent symmetric Hadamard matrix: permute columns
 * 1..q by j -> -j mod q (Q becomes the symmetric chi(-i-j)) and negate
 * column 0 (the border becomes +1 on both sides). Column permutations and
 * sign flips keep H H^T = (q+1) I. */
static void paley1(int q, signed char *H) {
    const int K = q + 1;
    signed char tmp[RQ_HADAMARD_MAX_K * RQ_HADAMARD_MAX_K];
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            int s;
            if (i == 0 && j == 0) s = 0;
            else if (i == 0) s = 1;
            else if (j == 0) s = -1;
            else s = legendre((j - 1) - (i - 1), q);
            tmp[i * K + j] = (signed char)(s + (i == j)); /* I + S */
        }
    for (int i = 0; i < K; i++) {
        H[i * K + 0] = (signed char)-tmp[i * K + 0];
        for (int j = 1; j < K; j++) {
            int src = 1 + ((q - (j - 1)) % q); /* column of -(j-1) mod q */
            H[i * K + j] = tmp[i * K + src];
        }
    }
}

/* Paley construction II, q = 1 mod 4: order 2(q+1). Conference matrix
 * C = [[0, 1^T], [1, Q]] (symmetric since chi(-1) = 1); replace each 0 by
 * [[1,-1],[-1,-1]] and each +-1 by +-[[1,1],[1,-1]]. Symmetric blocks of a
 * symmetric matrix: the result is symmetric. */
static void paley2(int q, signed char *H) {
    const int K = 2 * (q + 1), C = q + 1;
    static const signed char Z[2][2] = {{1, -1}, {-1, -1}};
    static const signed char A[2][2] = {{1, 1}, {1, -1}};
    for (int r = 0; r < C; r++)
        for (int c = 0; c < C; c++) {
            int cv;
            if (r == 0 && c == 0) cv = 0;
            else if (r == 0 || c == 0) cv = 1;
            else cv = legendre((c - 1) - (r - 1), q);
            for (int u = 0; u < 2; u++)
                for (int v = 0; v < 2; v++)
                    H[(2 * r + u) * K + 2 * c + v] = (signed char)(cv == 0 ? Z[u][v] : cv * A[u][v]);
        }
}

/* Splits n = K * 2^k; returns K (1, 12, 36) or 0 if n is unsupported. */
static int split_n(int n, int *log2m) {
    static const int bases[3] = {36, 12, 1};
    if (n < 1) return 0;
    for (int i = 0; i < 3; i++) {
        int K = bases[i];
        if (n % K) continue;
        int m = n / K;
        if (m & (m - 1)) continue; /* not a power of two */
        int l = 0;
        while ((1 << l) < m) l++;
        *log2m = l;
        return K;
    }
    return 0;
}

int rq_hadamard_supported(int n) {
    int l;
    return split_n(n, &l) != 0;
}

/* Paley I's H_12 as build_base makes it, for the multiply-free K-mix below. */
static const signed char H12_SIGNS[12][12] = {
    {-1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},    {1, 1, -1, 1, -1, -1, -1, 1, 1, 1, -1, 1},
    {1, -1, 1, -1, -1, -1, 1, 1, 1, -1, 1, 1},  {1, 1, -1, -1, -1, 1, 1, 1, -1, 1, 1, -1},
    {1, -1, -1, -1, 1, 1, 1, -1, 1, 1, -1, 1},  {1, -1, -1, 1, 1, 1, -1, 1, 1, -1, 1, -1},
    {1, -1, 1, 1, 1, -1, 1, 1, -1, 1, -1, -1},  {1, 1, 1, 1, -1, 1, 1, -1, 1, -1, -1, -1},
    {1, 1, 1, -1, 1, 1, -1, 1, -1, -1, -1, 1},  {1, 1, -1, 1, 1, -1, 1, -1, -1, -1, 1, 1},
    {1, -1, 1, 1, -1, 1, -1, -1, -1, 1, 1, 1},  {1, 1, 1, -1, 1, -1, -1, -1, 1, 1, 1, -1},
};

static void build_base(int K, signed char *H) {
    if (K == 12) paley1(11, H);
    else if (K == 36) paley2(17, H);
    else H[0] = 1;
}

rq_status rq_hadamard_plan_init(rq_hadamard *h, int n, rq_err *err) {
    if (!h) return rq_err_set(err, RQ_EINVAL, "hadamard: NULL plan");
    memset(h, 0, sizeof *h);
    int log2m = 0;
    int K = split_n(n, &log2m);
    if (!K)
        return rq_err_set(err, RQ_EINVAL,
                          "hadamard: unsupported size n=%d (supported: 2^k, 12*2^k, 36*2^k, "
                          "e.g. 384=12*32, 1024=2^10, 1152=36*32; zero-padding is not allowed)",
                          n);
    signed char base[RQ_HADAMARD_MAX_K * RQ_HADAMARD_MAX_K];
    build_base(K, base);
    h->n = n;
    h->k_base = K;
    h->m = 1 << log2m;
    h->log2m = log2m;
    h->scale = (float)(1.0 / sqrt((double)n));
    for (int i = 0; i < K * K; i++) h->hk[i] = (float)base[i] * h->scale;
    h->kmix12 = K == 12 && !memcmp(base, H12_SIGNS, sizeof H12_SIGNS);
    rq_hadamard_set_isa(h, RQ_HADAMARD_AVX512);
    return RQ_OK;
}

void rq_hadamard_free(rq_hadamard *h) {
    if (h) memset(h, 0, sizeof *h);
}

/* ------------------------------------------------------------------------
 * Row transform: one template (DEFINE_HADAMARD_ROW) plus two small pieces
 * per instruction set (a 16-float butterfly chunk and a K-mix tile), compiled
 * three times: portable (4-lane vectors, SSE2 on x86-64), AVX2 (8 lanes) and
 * AVX-512 (16 lanes), each with its own per-function target attribute as in
 * gemm.c; the plan stores the variant the CPU supports.
 *
 * Bit-identical variants: the build uses -std=c11 (-ffp-contract=off), and
 * every variant performs the same float operations in the same order on
 * each element: butterfly stages h = 16, 32, ..., m/2 on whole 16-float
 * chunks, then h = 1, 2, 4, 8 inside each chunk (lane shuffles below the
 * vector width, vector pairs above), then the scale; the K-mix sums
 * a = 0..K-1 in order. An in-lane butterfly computes swapped + (+-1) * v,
 * which is exactly a + b and a - b. The test compares the variants bitwise.
 * (Stage order only changes rounding, not the exact transform.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* clang fuses a*b+c by default; keep variants identical */
#endif
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

typedef float vf4 __attribute__((vector_size(16)));
typedef int32_t vi4 __attribute__((vector_size(16)));
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

/* m < 16 (and the reference order for one chunk): scalar butterflies. */
INLINE void fwht_small(float *x, long m, float s) {
    for (long h = 1; h < m; h <<= 1)
        for (long i = 0; i < m; i += 2 * h)
            for (long j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    for (long i = 0; i < m; i++) x[i] *= s;
}

/* In-lane butterfly at distance h (below the vector width): lane l pairs
 * with lane l^h (the index list); swapped + (+-1)*v is a+b in the lower and
 * a-b in the upper lane, exactly. GCC and clang spell shuffles differently. */
#if defined(__clang__)
#define LANE_BFLY(VI, v, SGN, ...) ((v) = __builtin_shufflevector((v), (v), __VA_ARGS__) + (SGN) * (v))
#else
#define LANE_BFLY(VI, v, SGN, ...) ((v) = __builtin_shuffle((v), (VI){__VA_ARGS__}) + (SGN) * (v))
#endif
/* Butterfly between two vectors (distance >= the vector width). */
#define VEC_BFLY(VT, a, b)       \
    do {                         \
        VT t_ = (a);             \
        (a) = t_ + (b);          \
        (b) = t_ - (b);          \
    } while (0)

/* One 16-float chunk, stages h = 1, 2, 4, 8, then the scale. */
INLINE void chunk16_avx512(float *x, float s) {
    const vf16 s1 = {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
    const vf16 s2 = {1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1};
    const vf16 s4 = {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1};
    const vf16 s8 = {1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};
    vf16 v;
    memcpy(&v, x, sizeof v);
    LANE_BFLY(vi16, v, s1, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    LANE_BFLY(vi16, v, s2, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    LANE_BFLY(vi16, v, s4, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    LANE_BFLY(vi16, v, s8, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v *= s;
    memcpy(x, &v, sizeof v);
}
INLINE void chunk16_avx2(float *x, float s) {
    const vf8 s1 = {1, -1, 1, -1, 1, -1, 1, -1}, s2 = {1, 1, -1, -1, 1, 1, -1, -1};
    const vf8 s4 = {1, 1, 1, 1, -1, -1, -1, -1};
    vf8 v0, v1;
    memcpy(&v0, x, sizeof v0);
    memcpy(&v1, x + 8, sizeof v1);
    LANE_BFLY(vi8, v0, s1, 1, 0, 3, 2, 5, 4, 7, 6);
    LANE_BFLY(vi8, v1, s1, 1, 0, 3, 2, 5, 4, 7, 6);
    LANE_BFLY(vi8, v0, s2, 2, 3, 0, 1, 6, 7, 4, 5);
    LANE_BFLY(vi8, v1, s2, 2, 3, 0, 1, 6, 7, 4, 5);
    LANE_BFLY(vi8, v0, s4, 4, 5, 6, 7, 0, 1, 2, 3);
    LANE_BFLY(vi8, v1, s4, 4, 5, 6, 7, 0, 1, 2, 3);
    VEC_BFLY(vf8, v0, v1);
    v0 *= s;
    v1 *= s;
    memcpy(x, &v0, sizeof v0);
    memcpy(x + 8, &v1, sizeof v1);
}
INLINE void chunk16_sse(float *x, float s) {
    const vf4 s1 = {1, -1, 1, -1}, s2 = {1, 1, -1, -1};
    vf4 v0, v1, v2, v3;
    memcpy(&v0, x, sizeof v0);
    memcpy(&v1, x + 4, sizeof v1);
    memcpy(&v2, x + 8, sizeof v2);
    memcpy(&v3, x + 12, sizeof v3);
    LANE_BFLY(vi4, v0, s1, 1, 0, 3, 2);
    LANE_BFLY(vi4, v1, s1, 1, 0, 3, 2);
    LANE_BFLY(vi4, v2, s1, 1, 0, 3, 2);
    LANE_BFLY(vi4, v3, s1, 1, 0, 3, 2);
    LANE_BFLY(vi4, v0, s2, 2, 3, 0, 1);
    LANE_BFLY(vi4, v1, s2, 2, 3, 0, 1);
    LANE_BFLY(vi4, v2, s2, 2, 3, 0, 1);
    LANE_BFLY(vi4, v3, s2, 2, 3, 0, 1);
    VEC_BFLY(vf4, v0, v1); /* h = 4 */
    VEC_BFLY(vf4, v2, v3);
    VEC_BFLY(vf4, v0, v2); /* h = 8 */
    VEC_BFLY(vf4, v1, v3);
    v0 *= s, v1 *= s, v2 *= s, v3 *= s;
    memcpy(x, &v0, sizeof v0);
    memcpy(x + 4, &v1, sizeof v1);
    memcpy(x + 8, &v2, sizeof v2);
    memcpy(x + 12, &v3, sizeof v3);
}

/* K-mix of one 16-column tile: out[a2][t] = sum_a hk[a2][a] x[a*m + t],
 * a in increasing order. Several output rows share each loaded vector;
 * accumulators are named variables so they stay in registers. K (12 or 36)
 * is a multiple of 4. The AVX-512 build uses the 8-lane version too: with
 * one zmm per row it needs more broadcasts per multiply and measured no
 * faster. */
INLINE void kmix16_avx2(const float *hk, int K, const float *x, long m, float *out) {
    for (int a2 = 0; a2 < K; a2 += 4) {
        const float *h0 = hk + a2 * K, *h1 = h0 + K, *h2 = h1 + K, *h3 = h2 + K;
        vf8 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, d0 = {0}, d1 = {0}, d2 = {0}, d3 = {0};
        for (int a = 0; a < K; a++) {
            vf8 v, w;
            memcpy(&v, x + a * m, sizeof v);
            memcpy(&w, x + a * m + 8, sizeof w);
            c0 += h0[a] * v, d0 += h0[a] * w;
            c1 += h1[a] * v, d1 += h1[a] * w;
            c2 += h2[a] * v, d2 += h2[a] * w;
            c3 += h3[a] * v, d3 += h3[a] * w;
        }
        float *o = out + a2 * 16;
        memcpy(o, &c0, 32), memcpy(o + 8, &d0, 32);
        memcpy(o + 16, &c1, 32), memcpy(o + 24, &d1, 32);
        memcpy(o + 32, &c2, 32), memcpy(o + 40, &d2, 32);
        memcpy(o + 48, &c3, 32), memcpy(o + 56, &d3, 32);
    }
}
INLINE void kmix16_sse(const float *hk, int K, const float *x, long m, float *out) {
    for (int a2 = 0; a2 < K; a2 += 2) {
        const float *h0 = hk + a2 * K, *h1 = h0 + K;
        vf4 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, d0 = {0}, d1 = {0}, d2 = {0}, d3 = {0};
        for (int a = 0; a < K; a++) {
            vf4 v0, v1, v2, v3;
            const float *xa = x + a * m;
            memcpy(&v0, xa, 16), memcpy(&v1, xa + 4, 16), memcpy(&v2, xa + 8, 16), memcpy(&v3, xa + 12, 16);
            c0 += h0[a] * v0, c1 += h0[a] * v1, c2 += h0[a] * v2, c3 += h0[a] * v3;
            d0 += h1[a] * v0, d1 += h1[a] * v1, d2 += h1[a] * v2, d3 += h1[a] * v3;
        }
        float *o = out + a2 * 16;
        memcpy(o, &c0, 16), memcpy(o + 4, &c1, 16), memcpy(o + 8, &c2, 16), memcpy(o + 12, &c3, 16);
        memcpy(o + 16, &d0, 16), memcpy(o + 20, &d1, 16), memcpy(o + 24, &d2, 16), memcpy(o + 28, &d3, 16);
    }
}

/* K = 12 (every DiT-S/B width): the same sums with the signs of H_12
 * known at compile time, so each term is one add or subtract of a
 * pre-scaled input (y_a = s x_a, then +-y_a added a = 0..11 from 0) instead
 * of a broadcast, a multiply and an add: (+-s) x == +-(s x) and
 * c + (-y) == c - y exactly, so the floats are the dense K-mix's. The table
 * is H12_SIGNS (above); plan_init checks that it is build_base's. */
#define DEFINE_KMIX12(SFX, VT, W)                                                               \
    /* one 16-column tile at x (rows a*m), in place: every input is read first */          \
    INLINE void kmix12_##SFX(float s, float *x, long m) {                                    \
        VT y[12][16 / W];                                                                    \
        _Pragma("GCC unroll 12") for (int a = 0; a < 12; a++)                                \
        _Pragma("GCC unroll 4") for (int q = 0; q < 16 / W; q++) {                           \
            memcpy(&y[a][q], x + a * m + q * W, sizeof(VT));                                 \
            y[a][q] *= s;                                                                    \
        }                                                                                    \
        _Pragma("GCC unroll 12") for (int a2 = 0; a2 < 12; a2++)                             \
        _Pragma("GCC unroll 4") for (int q = 0; q < 16 / W; q++) {                           \
            VT acc = {0};                                                                    \
            _Pragma("GCC unroll 12") for (int a = 0; a < 12; a++)                            \
                acc = H12_SIGNS[a2][a] > 0 ? acc + y[a][q] : acc - y[a][q];                  \
            memcpy(x + a2 * m + q * W, &acc, sizeof(VT));                                    \
        }                                                                                    \
    }
DEFINE_KMIX12(sse, vf4, 4)
DEFINE_KMIX12(avx2, vf8, 8)
DEFINE_KMIX12(avx512, vf16, 16)

/* The row transform for one ISA: SFX picks chunk16_/kmix16_, VT/W the
 * vector used between chunks. */
#define DEFINE_HADAMARD_ROW(SFX, VT, W, KMIX)                                                   \
    /* x <- s * x H_m (Sylvester, unnormalised), m a power of two */                        \
    INLINE void fwht_##SFX(float *x, long m, float s) {                                     \
        if (m < 16) {                                                                        \
            fwht_small(x, m, s);                                                             \
            return;                                                                          \
        }                                                                                    \
        for (long h = 16; h < m; h <<= 1) /* between 16-float chunks */                     \
            for (long i = 0; i < m; i += 2 * h)                                              \
                for (long j = i; j < i + h; j += W) {                                        \
                    VT a, b;                                                                 \
                    memcpy(&a, x + j, sizeof a);                                             \
                    memcpy(&b, x + j + h, sizeof b);                                         \
                    VEC_BFLY(VT, a, b);                                                      \
                    memcpy(x + j, &a, sizeof a);                                             \
                    memcpy(x + j + h, &b, sizeof b);                                         \
                }                                                                            \
        for (long c = 0; c < m; c += 16) chunk16_##SFX(x + c, s);                            \
    }                                                                                        \
    INLINE void apply_row_##SFX##_tmpl(const rq_hadamard *h, float *x) {                   \
        const int K = h->k_base;                                                             \
        const long m = h->m;                                                                 \
        if (K == 1) {                                                                        \
            fwht_##SFX(x, m, h->scale);                                                      \
            return;                                                                          \
        }                                                                                    \
        for (int a = 0; a < K; a++) fwht_##SFX(x + a * m, m, 1.0f);                          \
        /* x[a2*m + b] = sum_a H_K[a2][a] x[a*m + b] (hk carries 1/sqrt(n)); results        \
         * go through a K x 16 buffer since the transform is in place */                    \
        float out[RQ_HADAMARD_MAX_K * 16];                                                   \
        if (m % 16 == 0 && K == 12 && h->kmix12) {                                           \
            for (long b0 = 0; b0 < m; b0 += 16) kmix12_##SFX(h->scale, x + b0, m);           \
            return;                                                                          \
        }                                                                                    \
        if (m % 16 == 0) {                                                                   \
            for (long b0 = 0; b0 < m; b0 += 16) {                                            \
                KMIX(h->hk, K, x + b0, m, out);                                              \
                for (int a2 = 0; a2 < K; a2++)                                               \
                    memcpy(x + a2 * m + b0, out + a2 * 16, 16 * sizeof(float));              \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (long b = 0; b < m; b++) { /* m in {1,2,4,8}: n <= 288, plain loops */           \
            for (int a2 = 0; a2 < K; a2++) {                                                 \
                float acc = 0.0f;                                                            \
                for (int a = 0; a < K; a++) acc += h->hk[a2 * K + a] * x[a * m + b];         \
                out[a2] = acc;                                                               \
            }                                                                                \
            for (int a2 = 0; a2 < K; a2++) x[a2 * m + b] = out[a2];                          \
        }                                                                                    \
    }

DEFINE_HADAMARD_ROW(sse, vf4, 4, kmix16_sse)
DEFINE_HADAMARD_ROW(avx2, vf8, 8, kmix16_avx2)
DEFINE_HADAMARD_ROW(avx512, vf16, 16, kmix16_avx2)

static void apply_row_scalar(const rq_hadamard *h, float *x) { apply_row_sse_tmpl(h, x); }
AVX2_TARGET static void apply_row_avx2(const rq_hadamard *h, float *x) { apply_row_avx2_tmpl(h, x); }
AVX512_TARGET static void apply_row_avx512(const rq_hadamard *h, float *x) { apply_row_avx512_tmpl(h, x); }

static int isa_ok(int isa) {
    __builtin_cpu_init();
    if (isa == RQ_HADAMARD_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == RQ_HADAMARD_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
    return isa == RQ_HADAMARD_SCALAR;
}

int rq_hadamard_set_isa(rq_hadamard *h, int isa) {
    if (!h || h->n < 1) return -1;
    if (isa < RQ_HADAMARD_SCALAR || isa > RQ_HADAMARD_AVX512) isa = RQ_HADAMARD_AVX512;
    while (isa > RQ_HADAMARD_SCALAR && !isa_ok(isa)) isa--; /* best one not above the request */
    h->isa = isa;
    h->row_fn = isa == RQ_HADAMARD_AVX512 ? apply_row_avx512
              : isa == RQ_HADAMARD_AVX2   ? apply_row_avx2
                                          : apply_row_scalar;
    return isa;
}

static void apply_row(const rq_hadamard *h, float *x) { h->row_fn(h, x); }

rq_status rq_hadamard_apply_row(const rq_hadamard *h, float *x) {
    if (!h || h->n < 1 || !h->row_fn || !x) return RQ_EINVAL;
    apply_row(h, x);
    return RQ_OK;
}

rq_status rq_hadamard_apply(const rq_hadamard *h, float *x, long rows) {
    if (!h || h->n < 1 || !h->row_fn || rows < 0 || (!x && rows > 0)) return RQ_EINVAL;
    const long n = h->n;
    if (rows > 1 && rows * n >= RQ_HAD_PAR_WORK && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
        for (long r = 0; r < rows; r++) apply_row(h, x + r * n);
    } else { /* no nested one-thread region (it costs more than a short call) */
        for (long r = 0; r < rows; r++) apply_row(h, x + r * n);
    }
    return RQ_OK;
}

rq_status rq_hadamard_dense(int n, double *out, rq_err *err) {
    if (!out) return rq_err_set(err, RQ_EINVAL, "hadamard_dense: NULL output");
    int log2m = 0;
    int K = split_n(n, &log2m);
    if (!K)
        return rq_err_set(err, RQ_EINVAL,
                          "hadamard_dense: unsupported size n=%d (supported: 2^k, 12*2^k, 36*2^k)", n);
    signed char base[RQ_HADAMARD_MAX_K * RQ_HADAMARD_MAX_K];
    build_base(K, base);
    const int m = 1 << log2m;
    const double s = 1.0 / sqrt((double)n);
    for (long i = 0; i < n; i++) {
        const int ai = (int)(i / m), bi = (int)(i % m);
        for (long j = 0; j < n; j++) {
            const int aj = (int)(j / m), bj = (int)(j % m);
            /* Sylvester entry: (-1)^popcount(bi & bj) */
            const int sy = (__builtin_popcount((unsigned)(bi & bj)) & 1) ? -1 : 1;
            out[i * n + j] = (double)(base[ai * K + aj] * sy) * s;
        }
    }
    return RQ_OK;
}
