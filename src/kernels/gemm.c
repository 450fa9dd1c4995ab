/* gemm.c: fp32 GEMM, row-major, C = alpha*op(A)*op(B) + beta*C.
 *
 * Structure (after BLIS / Goto), seen from row-major C:
 *
 *   for m0 in M step MB            (rows of C handled by this thread)
 *     for k0 in K step KC
 *       pack op(A)[m0:+MB, k0:+KC] into MR-row panels   (Ap, k-major inside)
 *       for n0 in N step NB
 *         pack op(B)[k0:+KC, n0:+NB] into NR-col panels (Bp, L2 resident)
 *         for i in MB step MR        (one A micro-panel ...)
 *           for j in NB step NR      (... meets every B micro-panel)
 *             micro-kernel: C[i:+MR, j:+NR] (+)= Ap_i * Bp_j
 *
 * The micro-kernel keeps the MR x NR tile of C in registers, vectors run
 * along N (contiguous in row-major C), elements of A are broadcast. Kernels:
 * AVX-512 14x32 (28 zmm accumulators), AVX2+FMA 6x16 (12 ymm), scalar 4x8.
 * Edge tiles use exact-size instances (no wasted FMAs on padding rows).
 * When N is small (attention heads: N = 64) an A panel meets only a couple
 * of B panels, so the kernel reads A in place instead of packing it.
 * SIMD code is compiled with per-function target attributes, so the default
 * build stays portable; the ISA is chosen once at run time.
 *
 * Threads: rq_sgemm cuts C into a tm x tn grid of tiles (up to four per
 * OpenMP thread, handed out dynamically: threads differ in speed); each
 * tile's panels are packed into its thread's local buffer, so there are no
 * barriers inside the computation. rq_sgemm_st does the same
 * on the calling thread only. */
#include "robuq/gemm.h"
#include "robuq/common.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* Cache blocking (elements). KC*NB*4 bytes of packed B sit in the 1 MiB L2;
 * an MR x KC micro-panel of A sits in the 32 KiB L1. MB bounds the packed A
 * block (re-read once per NB block, so it may live in L3). */
#define GEMM_KC 384
#define GEMM_NB 480
#define GEMM_MB 1680
/* Tiles of C per thread in rq_sgemm (at most; choose_grid weighs the extra
 * packing of smaller tiles). */
#define GEMM_TILES_PER_THREAD 4
/* Up to this many B panels per tile, kernels read A in place (unpacked). */
#define GEMM_DIRECT_A_PANELS 4
/* Also for op(A) = A (rows contiguous) with K up to this: an MR x K slice
 * of A stays in L1 across all B panels, so packing it only costs (attention
 * heads, K = dh: q k^T and dO v^T 4-8% faster; with op(A) = A^T or larger K
 * reading in place was slower). */
#define GEMM_DIRECT_A_MAX_K 128

/* Micro-kernel: C[0:mr, 0:nr] = alpha * sum_k a(i,k) Bp(k,j) + beta * C, where
 * beta == 0 means C is not read. a(i,k) = Ap[i*a_is + k*a_ks]: a packed panel
 * has (a_is, a_ks) = (1, MR); A read in place has (1, lda) for op(A) = A^T or
 * (lda, 1) for op(A) = A. Bp is a packed panel (k-major, NR wide, 64-byte
 * aligned). */
typedef void (*kernel_fn)(int kc, const float *Ap, long a_is, long a_ks, const float *Bp, float *C,
                          int ldc, float alpha, float beta, int mr, int nr);
typedef void (*pack_fn)(int trans, const float *X, int ldx, int k0, int kc, int x0, int nx, float *P);

typedef struct {
    rq_gemm_isa isa;
    int mr, nr;
    kernel_fn kernel;
    pack_fn pack_a, pack_b;
} gemm_impl;

/* ------------------------------------------------------------------------ */
/* Packing. Templates are always_inline so each ISA wrapper below gets a copy
 * compiled (and auto-vectorised) for its own target.
 *
 * pack_a: rows x0..x0+nx of op(A), columns k0..k0+kc, into ceil(nx/MR)
 * panels; panel p holds P[p*MR*kc + k*MR + i] = op(A)[x0+p*MR+i][k0+k],
 * zero-padded to MR rows. pack_b likewise with columns of op(B) and NR. */

INLINE void pack_a_tmpl(const int MR, int trans, const float *A, int lda, int k0, int kc, int x0,
                        int nx, float *P) {
    for (int p = 0; p < nx; p += MR, P += (size_t)MR * kc) {
        int mr = nx - p < MR ? nx - p : MR;
        if (trans) { /* op(A)[i][k] = A[k][i]: rows of the panel are contiguous */
            const float *src = A + (size_t)k0 * lda + x0 + p;
            if (mr == MR) {
                for (int k = 0; k < kc; k++)
                    for (int i = 0; i < MR; i++) P[k * MR + i] = src[(size_t)k * lda + i];
            } else {
                for (int k = 0; k < kc; k++)
                    for (int i = 0; i < MR; i++) P[k * MR + i] = i < mr ? src[(size_t)k * lda + i] : 0.0f;
            }
        } else { /* op(A)[i][k] = A[i][k]: gather MR rows, k-major */
            const float *src = A + (size_t)(x0 + p) * lda + k0;
            for (int i = 0; i < mr; i++) {
                const float *row = src + (size_t)i * lda;
                for (int k = 0; k < kc; k++) P[k * MR + i] = row[k];
            }
            if (mr < MR) /* zero rows, k-major like the panel */
                for (int k = 0; k < kc; k++)
                    for (int i = mr; i < MR; i++) P[k * MR + i] = 0.0f;
        }
    }
}

INLINE void pack_b_tmpl(const int NR, int trans, const float *B, int ldb, int k0, int kc, int x0,
                        int nx, float *P) {
    for (int p = 0; p < nx; p += NR, P += (size_t)NR * kc) {
        int nr = nx - p < NR ? nx - p : NR;
        if (!trans) { /* op(B)[k][j] = B[k][j]: rows of the panel are contiguous */
            const float *src = B + (size_t)k0 * ldb + x0 + p;
            if (nr == NR) {
                for (int k = 0; k < kc; k++)
                    for (int j = 0; j < NR; j++) P[k * NR + j] = src[(size_t)k * ldb + j];
            } else {
                for (int k = 0; k < kc; k++)
                    for (int j = 0; j < NR; j++) P[k * NR + j] = j < nr ? src[(size_t)k * ldb + j] : 0.0f;
            }
        } else { /* op(B)[k][j] = B[j][k]: gather NR rows of B */
            const float *src = B + (size_t)(x0 + p) * ldb + k0;
            if (nr < NR) /* zero the panel in one contiguous pass, not column by column */
                memset(P, 0, (size_t)NR * kc * sizeof(float));
            for (int j = 0; j < nr; j++) {
                const float *row = src + (size_t)j * ldb;
                for (int k = 0; k < kc; k++) P[k * NR + j] = row[k];
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Scalar fallback: 4x8 tile, plain C. */
enum { MR_S = 4, NR_S = 8 };

static void kernel_scalar(int kc, const float *Ap, long a_is, long a_ks, const float *Bp, float *C,
                          int ldc, float alpha, float beta, int mr, int nr) {
    float acc[MR_S][NR_S] = {{0}};
    for (int k = 0; k < kc; k++, Ap += a_ks, Bp += NR_S)
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < NR_S; j++) acc[i][j] += Ap[i * a_is] * Bp[j];
    for (int i = 0; i < mr; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < nr; j++)
            c[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[j];
    }
}
static void pack_a_scalar(int t, const float *X, int ld, int k0, int kc, int x0, int nx, float *P) {
    pack_a_tmpl(MR_S, t, X, ld, k0, kc, x0, nx, P);
}
static void pack_b_scalar(int t, const float *X, int ld, int k0, int kc, int x0, int nx, float *P) {
    pack_b_tmpl(NR_S, t, X, ld, k0, kc, x0, nx, P);
}

/* ------------------------------------------------------------------------ */
/* AVX2 + FMA: 6x16 tile = 12 ymm accumulators + 2 for B + 1 broadcast. */
enum { MR_2 = 6, NR_2 = 16 };

/* MRV rows and NV vectors of 8 are compile-time constants after inlining, so
 * the accumulator arrays live in registers and edge tiles cost no extra work. */
INLINE AVX2_TARGET void k_avx2(const int MRV, const int NV, const int ROWA, int kc, const float *Ap,
                                long a_s, const float *Bp, float *C, int ldc, float alpha, float beta,
                                int nr) {
    __m256 c0[MR_2], c1[MR_2];
#pragma GCC unroll 6
    for (int i = 0; i < MRV; i++) {
        _mm_prefetch((const char *)(C + (size_t)i * ldc), _MM_HINT_T0); /* see k_avx512 */
        _mm_prefetch((const char *)(C + (size_t)i * ldc + 15), _MM_HINT_T0);
        c0[i] = c1[i] = _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++, Ap += ROWA ? 1 : a_s, Bp += NR_2) {
        __m256 b0 = _mm256_load_ps(Bp);
        __m256 b1 = NV > 1 ? _mm256_load_ps(Bp + 8) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < MRV; i++) {
            __m256 a = _mm256_broadcast_ss(ROWA ? Ap + i * a_s : Ap + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            if (NV > 1) c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (nr == NV * 8) {
#pragma GCC unroll 6
        for (int i = 0; i < MRV; i++) {
            float *c = C + (size_t)i * ldc;
            __m256 r0 = _mm256_mul_ps(c0[i], va);
            if (beta != 0.0f) r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), r0);
            _mm256_storeu_ps(c, r0);
            if (NV > 1) {
                __m256 r1 = _mm256_mul_ps(c1[i], va);
                if (beta != 0.0f) r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), r1);
                _mm256_storeu_ps(c + 8, r1);
            }
        }
    } else { /* partial width: go through a small buffer, copy nr columns */
        float tmp[NR_2];
        /* fully unrolled like the loops above, or c0/c1 would live in memory */
#pragma GCC unroll 6
        for (int i = 0; i < MRV; i++) {
            float *c = C + (size_t)i * ldc;
            _mm256_storeu_ps(tmp, _mm256_mul_ps(c0[i], va));
            if (NV > 1) _mm256_storeu_ps(tmp + 8, _mm256_mul_ps(c1[i], va));
            for (int j = 0; j < nr; j++) c[j] = beta == 0.0f ? tmp[j] : tmp[j] + beta * c[j];
        }
    }
}

/* One instance per (rows, vectors, A layout): the A layout flag picks a
 * k-major (a_is == 1) or row-major (a_ks == 1) walk with constant offsets. */
#define K2(m)                                                                                      \
    case m:                                                                                        \
        if (a_is == 1) {                                                                           \
            if (nr > 8) k_avx2(m, 2, 0, kc, Ap, a_ks, Bp, C, ldc, alpha, beta, nr);                \
            else k_avx2(m, 1, 0, kc, Ap, a_ks, Bp, C, ldc, alpha, beta, nr);                       \
        } else {                                                                                   \
            if (nr > 8) k_avx2(m, 2, 1, kc, Ap, a_is, Bp, C, ldc, alpha, beta, nr);                \
            else k_avx2(m, 1, 1, kc, Ap, a_is, Bp, C, ldc, alpha, beta, nr);                       \
        }                                                                                          \
        break;
static AVX2_TARGET void kernel_avx2(int kc, const float *Ap, long a_is, long a_ks, const float *Bp,
                                    float *C, int ldc, float alpha, float beta, int mr, int nr) {
    switch (mr) { K2(1) K2(2) K2(3) K2(4) K2(5) K2(6) }
}
#undef K2
static AVX2_TARGET void pack_a_avx2(int t, const float *X, int ld, int k0, int kc, int x0, int nx,
                                    float *P) {
    pack_a_tmpl(MR_2, t, X, ld, k0, kc, x0, nx, P);
}
static AVX2_TARGET void pack_b_avx2(int t, const float *X, int ld, int k0, int kc, int x0, int nx,
                                    float *P) {
    pack_b_tmpl(NR_2, t, X, ld, k0, kc, x0, nx, P);
}

/* ------------------------------------------------------------------------ */
/* AVX-512: 14x32 tile = 28 zmm accumulators + 2 for B + 1 broadcast (of 32).
 * Per k: 2 loads of B, 14 broadcasts of A, 28 FMAs: 16 loads per 28 FMAs
 * keeps the FMA units, not the load ports, the bottleneck. */
enum { MR_5 = 14, NR_5 = 32 };

INLINE AVX512_TARGET void k_avx512(const int MRV, const int NV, const int ROWA, int kc,
                                    const float *Ap, long a_s, const float *Bp, float *C, int ldc,
                                    float alpha, float beta, int nr) {
    __m512 c0[MR_5], c1[MR_5];
#pragma GCC unroll 14
    for (int i = 0; i < MRV; i++) {
        /* C is touched only after the k loop: fetch its lines now so the
         * write-back does not stall on misses */
        _mm_prefetch((const char *)(C + (size_t)i * ldc), _MM_HINT_T0);
        if (NV > 1) _mm_prefetch((const char *)(C + (size_t)i * ldc + 31), _MM_HINT_T0);
        else _mm_prefetch((const char *)(C + (size_t)i * ldc + 15), _MM_HINT_T0);
        c0[i] = c1[i] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++, Ap += ROWA ? 1 : a_s, Bp += NR_5) {
        __m512 b0 = _mm512_load_ps(Bp);
        __m512 b1 = NV > 1 ? _mm512_load_ps(Bp + 16) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < MRV; i++) {
            __m512 a = _mm512_set1_ps(ROWA ? Ap[i * a_s] : Ap[i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            if (NV > 1) c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    /* masks cover the valid columns of a partial tile (all ones when full) */
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
#pragma GCC unroll 14
    for (int i = 0; i < MRV; i++) {
        float *c = C + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(c0[i], va);
        if (beta != 0.0f) r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), r0);
        _mm512_mask_storeu_ps(c, m0, r0);
        if (NV > 1) {
            __m512 r1 = _mm512_mul_ps(c1[i], va);
            if (beta != 0.0f) r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), r1);
            _mm512_mask_storeu_ps(c + 16, m1, r1);
        }
    }
}

#define K5(m)                                                                                      \
    case m:                                                                                        \
        if (a_is == 1) {                                                                           \
            if (nr > 16) k_avx512(m, 2, 0, kc, Ap, a_ks, Bp, C, ldc, alpha, beta, nr);             \
            else k_avx512(m, 1, 0, kc, Ap, a_ks, Bp, C, ldc, alpha, beta, nr);                     \
        } else {                                                                                   \
            if (nr > 16) k_avx512(m, 2, 1, kc, Ap, a_is, Bp, C, ldc, alpha, beta, nr);             \
            else k_avx512(m, 1, 1, kc, Ap, a_is, Bp, C, ldc, alpha, beta, nr);                     \
        }                                                                                          \
        break;
static AVX512_TARGET void kernel_avx512(int kc, const float *Ap, long a_is, long a_ks, const float *Bp,
                                        float *C, int ldc, float alpha, float beta, int mr, int nr) {
    switch (mr) { K5(1) K5(2) K5(3) K5(4) K5(5) K5(6) K5(7) K5(8) K5(9) K5(10) K5(11) K5(12) K5(13) K5(14) }
}
#undef K5

/* In-register 16x16 transpose: r[i] holds row i; afterwards r[j] holds column j.
 * Three rounds of 2x2-block swaps at widths 1, 2 and 4 floats, then 128-bit
 * lanes are regrouped (64 shuffles for 256 elements). */
INLINE AVX512_TARGET void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4q+j], 128-bit lane L = column 4L+j of rows 4q..4q+3 */
    for (int q = 0; q < 4; q++) {
        __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 2]);
        __m512d c = _mm512_castps_pd(t[4 * q + 1]), d = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* column 4L+j = lane L of u[j], u[4+j], u[8+j], u[12+j] */
    for (int j = 0; j < 4; j++) {
        __m512 v02 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);  /* lanes 0,2 | 0,2 */
        __m512 v13 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);  /* lanes 1,3 | 1,3 */
        __m512 w02 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 w13 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(v02, w02, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v02, w02, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(v13, w13, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(v13, w13, 0xDD);
    }
}

/* Gathering packs (A as stored, B transposed) are the slow ones: move 16 k at
 * a time through a register transpose instead of element by element. */
static AVX512_TARGET void pack_a_avx512(int t, const float *X, int ld, int k0, int kc, int x0,
                                        int nx, float *P) {
    if (t) { /* contiguous rows: one masked load/store per k (zeros pad the edge) */
        for (int p = 0; p < nx; p += MR_5, P += (size_t)MR_5 * kc) {
            int mr = nx - p < MR_5 ? nx - p : MR_5;
            __mmask16 m = (__mmask16)((1u << mr) - 1);
            const float *src = X + (size_t)k0 * ld + x0 + p;
            for (int k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(P + (size_t)k * MR_5, 0x3FFF, _mm512_maskz_loadu_ps(m, src + (size_t)k * ld));
        }
        return;
    }
    int full = nx / MR_5 * MR_5;
    for (int p = 0; p < full; p += MR_5, P += (size_t)MR_5 * kc) {
        const float *src = X + (size_t)(x0 + p) * ld + k0;
        int k = 0;
        for (; k + 16 <= kc; k += 16) {
            __m512 r[16];
            for (int i = 0; i < MR_5; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * ld + k);
            r[14] = r[15] = _mm512_setzero_ps();
            transpose16(r);
            for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(P + (size_t)(k + j) * MR_5, 0x3FFF, r[j]);
        }
        for (; k < kc; k++)
            for (int i = 0; i < MR_5; i++) P[(size_t)k * MR_5 + i] = src[(size_t)i * ld + k];
    }
    if (full < nx) pack_a_tmpl(MR_5, t, X, ld, k0, kc, x0 + full, nx - full, P);
}

static AVX512_TARGET void pack_b_avx512(int t, const float *X, int ld, int k0, int kc, int x0,
                                        int nx, float *P) {
    if (!t) { /* contiguous rows: two (masked at the edge) loads and aligned stores per k */
        for (int p = 0; p < nx; p += NR_5, P += (size_t)NR_5 * kc) {
            int nr = nx - p < NR_5 ? nx - p : NR_5;
            __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
            __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
            const float *src = X + (size_t)k0 * ld + x0 + p;
            for (int k = 0; k < kc; k++) {
                _mm512_store_ps(P + (size_t)k * NR_5, _mm512_maskz_loadu_ps(m0, src + (size_t)k * ld));
                _mm512_store_ps(P + (size_t)k * NR_5 + 16, _mm512_maskz_loadu_ps(m1, src + (size_t)k * ld + 16));
            }
        }
        return;
    }
    int full = nx / NR_5 * NR_5;
    for (int p = 0; p < full; p += NR_5, P += (size_t)NR_5 * kc) {
        const float *src = X + (size_t)(x0 + p) * ld + k0;
        int k = 0;
        for (; k + 16 <= kc; k += 16) {
            for (int h = 0; h < 2; h++) { /* columns 16h..16h+15 of the panel */
                __m512 r[16];
                for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(src + (size_t)(16 * h + j) * ld + k);
                transpose16(r);
                for (int j = 0; j < 16; j++) _mm512_store_ps(P + (size_t)(k + j) * NR_5 + 16 * h, r[j]);
            }
        }
        for (; k < kc; k++)
            for (int j = 0; j < NR_5; j++) P[(size_t)k * NR_5 + j] = src[(size_t)j * ld + k];
    }
    if (full < nx) pack_b_tmpl(NR_5, t, X, ld, k0, kc, x0 + full, nx - full, P);
}

/* ------------------------------------------------------------------------ */
/* Dispatch: one static, set on first use or by rq_gemm_set_isa. */

static const gemm_impl g_impls[] = {
    {RQ_GEMM_SCALAR, MR_S, NR_S, kernel_scalar, pack_a_scalar, pack_b_scalar},
    {RQ_GEMM_AVX2, MR_2, NR_2, kernel_avx2, pack_a_avx2, pack_b_avx2},
    {RQ_GEMM_AVX512, MR_5, NR_5, kernel_avx512, pack_a_avx512, pack_b_avx512},
};
static rq_gemm_isa g_isa = RQ_GEMM_AUTO; /* AUTO = not chosen yet */

static int isa_supported(rq_gemm_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case RQ_GEMM_SCALAR: return 1;
    case RQ_GEMM_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case RQ_GEMM_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
    default: return 0;
    }
}

rq_gemm_isa rq_gemm_set_isa(rq_gemm_isa isa) {
    if (isa == RQ_GEMM_AUTO || !isa_supported(isa)) {
        /* best available, but never above what was asked for */
        rq_gemm_isa want = isa == RQ_GEMM_AUTO ? RQ_GEMM_AVX512 : isa;
        isa = RQ_GEMM_SCALAR;
        for (rq_gemm_isa c = RQ_GEMM_AVX512; c > RQ_GEMM_SCALAR; c--)
            if (c <= want && isa_supported(c)) { isa = c; break; }
    }
    g_isa = isa;
    return isa;
}

rq_gemm_isa rq_gemm_get_isa(void) {
    if (g_isa == RQ_GEMM_AUTO) rq_gemm_set_isa(RQ_GEMM_AUTO); /* benign race: same answer */
    return g_isa;
}

const char *rq_gemm_isa_name(rq_gemm_isa isa) {
    switch (isa) {
    case RQ_GEMM_AUTO: return "auto";
    case RQ_GEMM_SCALAR: return "scalar";
    case RQ_GEMM_AVX2: return "avx2";
    case RQ_GEMM_AVX512: return "avx512";
    }
    return "unknown";
}

static const gemm_impl *impl_get(void) { return &g_impls[rq_gemm_get_isa() - RQ_GEMM_SCALAR]; }

/* ------------------------------------------------------------------------ */
/* Per-thread packing buffer, grown on demand and reused by later calls (one
 * per OpenMP thread). A pthread key frees it when its thread exits (OpenMP
 * pools shrink when the thread count changes); _Thread_local keeps the
 * lookup cheap. */
static _Thread_local float *tl_buf = NULL;
static _Thread_local size_t tl_cap = 0; /* floats */
static pthread_key_t g_buf_key;
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;

static void buf_free(void *p) { rq_free(p); }
static void buf_key_init(void) { pthread_key_create(&g_buf_key, buf_free); }

static float *pack_buffer(size_t floats) {
    if (floats > tl_cap) {
        pthread_once(&g_buf_once, buf_key_init);
        rq_free(tl_buf);
        tl_cap = floats + floats / 4;
        tl_buf = rq_malloc(tl_cap * sizeof(float));
        if (!tl_buf) tl_cap = 0;
        pthread_setspecific(g_buf_key, tl_buf);
    }
    return tl_buf;
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }
static int imin(int a, int b) { return a < b ? a : b; }

/* C = beta*C (beta == 0 writes zeros without reading C). */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* One thread's share: C[i0:+M, j0:+N] over the full K, on the calling thread. */
static void gemm_tile(const gemm_impl *im, int transA, int transB, int i0, int j0, int M, int N,
                      int K, float alpha, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    const int MR = im->mr, NR = im->nr;
    int mb_max = imin(round_up(M, MR), round_up(GEMM_MB, MR));
    int nb_max = imin(round_up(N, NR), round_up(GEMM_NB, NR));
    int kc_max = imin(K, GEMM_KC);
    /* With few B panels per A panel, packing A costs more than reading it
     * in place (each A panel serves only a couple of kernel calls). */
    int direct_a = (N + NR - 1) / NR <= GEMM_DIRECT_A_PANELS || (!transA && K <= GEMM_DIRECT_A_MAX_K);
    /* Bp starts on a 64-byte boundary: kernels use aligned loads */
    size_t a_floats = direct_a ? 0 : ((size_t)mb_max * kc_max + 15) / 16 * 16;
    float *Ap = pack_buffer(a_floats + (size_t)nb_max * kc_max);
    if (!Ap) {
        rq_log(RQ_LOG_ERROR, "rq_sgemm: out of memory for packing buffers (M=%d N=%d K=%d)", M, N, K);
        return;
    }
    float *Bp = Ap + a_floats;
    for (int m0 = 0; m0 < M; m0 += mb_max) {
        int mb = imin(mb_max, M - m0);
        for (int k0 = 0; k0 < K; k0 += kc_max) {
            int kc = imin(kc_max, K - k0);
            float bk = k0 == 0 ? beta : 1.0f; /* later K blocks accumulate */
            if (!direct_a) im->pack_a(transA, A, lda, k0, kc, i0 + m0, mb, Ap);
            for (int n0 = 0; n0 < N; n0 += nb_max) {
                int nb = imin(nb_max, N - n0);
                im->pack_b(transB, B, ldb, k0, kc, j0 + n0, nb, Bp);
                for (int i = 0; i < mb; i += MR) {
                    int row = i0 + m0 + i;
                    const float *ap = Ap + (size_t)i * kc;
                    long a_is = 1, a_ks = MR;
                    if (direct_a && transA) ap = A + (size_t)k0 * lda + row, a_ks = lda;
                    else if (direct_a) ap = A + (size_t)row * lda + k0, a_is = lda, a_ks = 1;
                    float *crow = C + (size_t)row * ldc + j0 + n0;
                    for (int j = 0; j < nb; j += NR)
                        im->kernel(kc, ap, a_is, a_ks, Bp + (size_t)j * kc, crow + j, ldc, alpha, bk,
                                   imin(MR, mb - i), imin(NR, nb - j));
                }
            }
        }
    }
}

/* Validates arguments; 0 if the call must not proceed (error logged). */
static int check_args(const char *fn, int transA, int transB, int M, int N, int K, const float *A,
                      int lda, const float *B, int ldb, const float *C, int ldc) {
    int a_cols = transA ? M : K, b_cols = transB ? K : N;
    const char *why = NULL;
    if (M < 0 || N < 0 || K < 0) why = "negative size";
    else if (M > 0 && N > 0 && K > 0 && (!A || !B)) why = "NULL A or B";
    else if (M > 0 && N > 0 && !C) why = "NULL C";
    else if (lda < a_cols) why = "lda too small";
    else if (ldb < b_cols) why = "ldb too small";
    else if (ldc < N) why = "ldc too small";
    if (!why) return 1;
    rq_log(RQ_LOG_ERROR, "%s: %s (transA=%d transB=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d)", fn, why,
           transA, transB, M, N, K, lda, ldb, ldc);
    return 0;
}

/* Handles the cases with nothing to multiply. Returns 1 if C is done. As in
 * BLAS, alpha == 0 scales C without reading A or B (NaNs there do not spread). */
static int trivial_case(int M, int N, int K, float alpha, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return 1;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return 1;
    }
    return 0;
}

void rq_sgemm_st(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    if (!check_args("rq_sgemm_st", transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return;
    if (trivial_case(M, N, K, alpha, beta, C, ldc)) return;
    gemm_tile(impl_get(), transA != 0, transB != 0, 0, 0, M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

/* Picks a tm x tn grid of C tiles for T threads that take tiles
 * dynamically (up to GEMM_TILES_PER_THREAD * T tiles). Cost of a tile: its
 * multiply-adds plus the packing of its A rows and B columns (each tile
 * packs its own), in multiply-add equivalents; the call's estimated time is
 * the total cost spread over T threads plus one tile (the tail of the
 * dynamic schedule, which also absorbs threads that run slower). Tiles stay
 * wider than the direct-A threshold where N allows: below it the kernel
 * reads A in place once per B panel, which costs more than the model says
 * (measured: dW with K = 3136 ran 10-20% slower). */
static void choose_grid(int M, int N, int K, int MR, int NR, int T, int *tm_out, int *tn_out) {
    const double pack_cost = 8.0; /* madds per packed element (packing is memory bound) */
    const int pm = (M + MR - 1) / MR, pn = (N + NR - 1) / NR; /* micro-panels */
    const int min_pn = imin(pn, GEMM_DIRECT_A_PANELS + 1);   /* micro-panels per tile column */
    const int max_tiles = GEMM_TILES_PER_THREAD * T;
    double best = -1.0;
    *tm_out = *tn_out = 1;
    for (int tm = 1; tm <= imin(max_tiles, pm); tm++) {
        for (int tn = 1; tn <= imin(max_tiles / tm, pn); tn++) {
            int pnt = (pn + tn - 1) / tn;
            if (tn > 1 && pnt < min_pn) break;
            double mt = (double)((pm + tm - 1) / tm) * MR, nt = (double)pnt * NR;
            double tile = mt * nt * K + pack_cost * (mt + nt) * K;
            double cost = tile * tm * tn / T + tile;
            if (best < 0 || cost < best * 0.999) {
                best = cost;
                *tm_out = tm;
                *tn_out = tn;
            }
        }
    }
}

void rq_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (!check_args("rq_sgemm", transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return;
    if (trivial_case(M, N, K, alpha, beta, C, ldc)) return;
    const gemm_impl *im = impl_get();
    transA = transA != 0;
    transB = transB != 0;
    int T = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* below ~100k multiply-adds a parallel region costs more than it saves */
    if (T <= 1 || (double)M * N * K < 1e5) {
        gemm_tile(im, transA, transB, 0, 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Tiles are handed out dynamically, several per thread: the threads do
     * not run at the same speed (measured on the 16-vCPU device: private
     * single-thread sgemms at once run at 66..127 GFLOP/s), and with one
     * tile each the slowest thread set the pace of the whole call. */
    int tm, tn;
    choose_grid(M, N, K, im->mr, im->nr, T, &tm, &tn);
    if (tm * tn == 1) {
        gemm_tile(im, transA, transB, 0, 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int pm = (M + im->mr - 1) / im->mr, pn = (N + im->nr - 1) / im->nr;
#pragma omp parallel for schedule(dynamic, 1) num_threads(imin(T, tm * tn))
    for (int tile = 0; tile < tm * tn; tile++) {
        int ti = tile / tn, tj = tile % tn;
        /* contiguous ranges of micro-panels, split as evenly as possible */
        int r0 = (int)((long)pm * ti / tm) * im->mr, r1 = (int)((long)pm * (ti + 1) / tm) * im->mr;
        int c0 = (int)((long)pn * tj / tn) * im->nr, c1 = (int)((long)pn * (tj + 1) / tn) * im->nr;
        r1 = imin(r1, M);
        c1 = imin(c1, N);
        gemm_tile(im, transA, transB, r0, c0, r1 - r0, c1 - c0, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}

/* ------------------------------------------------------------------------ */
void rq_sgemm_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    if (!check_args("rq_sgemm_ref", transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * b;
            }
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? (float)(alpha * acc) : (float)(alpha * acc + (double)beta * *c);
        }
    }
}
