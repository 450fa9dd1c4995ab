/* tgemm.c: int8 activations x ternary (2bit-packed) weights -> int32 / float.
 *
 * Structure (one thread's tile of C, rows r0..r1, weight panels pa..pb):
 *
 *   for m0 in rows step MB
 *     asum[i] = sum_k A[m0+i][k]                  (AVX2 / VNNI paths only)
 *     for n0 in panels step NB
 *       unpack W[n0:+NB, all K] into Wu (u = w+1 bytes, AMX: w; micro-panel order, L2)
 *       for each K block (about KC = 384)
 *         for g in NB step NR                      (Wu slice NR x KC: stays in L1)
 *           for i in MB step MR                    (A slice MR x KC from L2)
 *             micro-kernel: MR x NR int32 accumulators in registers; between
 *             K blocks they go to a partial-sum tile, after the last one
 *             asum is subtracted and int32 or the scaled float is stored
 *
 * Wu layout of one micro-panel of np 16-row panels: [k4][np][64 bytes],
 * 64 bytes = 16 rows x 4 consecutive k (the block layout of tpack.h after
 * one shift+AND), so a micro-kernel step loads np vectors and broadcasts
 * 4 bytes of each A row. Micro-panels follow each other (a full one is
 * 16*np*K bytes); the last one of a block may have fewer panels.
 *
 * Exactness: every product fits easily (u in {0,1,2}, a in [-128,127]);
 * vpdpbusd adds 4 of them into int32 without saturation; pmaddubsw adds 2
 * into int16 (|.| <= 512, no saturation), and 64 of those still fit int16. */
#include "robuq/tgemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define AVX2_TARGET __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

/* Cache budgets (bytes): unpacked weights of one NB block (L2), A rows of
 * one MB block (L2 / L3). */
#define TG_WU_BUDGET (160 * 1024)
#define TG_A_BUDGET (192 * 1024)
#define TG_MB_MAX 1024
/* K is cut into blocks of about TG_KC so that the slice of a weight
 * micro-panel (48 x KC bytes) stays in L1 while every A micro-panel of the
 * MB block streams past it; a full-K slice of 48 x 1536 would not (the
 * kernel ran at half speed from L2). */
#define TG_KC 384

/* Output of one call: int32 C, or float Y with the dequantization. */
typedef struct {
    int32_t *C;
    int ldc;
    float *Y;
    int ldy;
    const float *rs, *cs, *bias;
} tg_out;

/* Partial sums of one micro-tile between K blocks: part holds mr x np*16
 * int32 (row r, panel p at (r*np + p)*16; 64-byte aligned). first: start
 * from zero (else from part); last: finish into the output (else store the
 * sums back into part). A single K block passes part = NULL, first = last = 1. */
typedef struct {
    int32_t *part;
    int first, last;
} tg_kblk;

/* Micro-kernel: rows m..m+mr-1 of A (a = A + m*lda + first column of the K
 * block), the K-block slice Wu of a micro-panel of np panels (columns
 * n..n+16np-1, of which nvalid are real), k4n column quads. asum = row sums
 * of those rows over all of K (the scalar kernel ignores it). */
typedef void (*tg_kernel_fn)(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                             const int32_t *asum, int mr, int np, int nvalid, const tg_out *o, int m, int n);
/* Unpacks panels p0..p0+np-1 of W (Q = K/16 rounded up blocks per panel)
 * into one micro-panel at Wu. */
typedef void (*tg_unpack_fn)(const uint8_t *W, int Q, int k4n, int p0, int np, uint8_t *Wu);

/* Row sums of rows A[i*lda + 0..K) for i < rows. */
typedef void (*tg_rowsum_fn)(const int8_t *A, long lda, int rows, int K, int32_t *sum);

typedef struct {
    rq_tgemm_isa isa;
    int mr, np; /* micro-tile: mr rows x np 16-column panels */
    tg_kernel_fn kernel;
    tg_unpack_fn unpack;
    tg_rowsum_fn rowsum; /* NULL: the kernel does not need row sums */
    int kgran;           /* K blocks are whole multiples of this many quads */
} tg_impl;

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* ------------------------------------------------------------------------ */
/* Scalar */

static void unpack_scalar(const uint8_t *W, int Q, int k4n, int p0, int np, uint8_t *Wu) {
    for (int pp = 0; pp < np; pp++)
        for (int q = 0; q < Q; q++) {
            const uint8_t *blk = W + ((size_t)(p0 + pp) * Q + q) * 64;
            for (int j = 0; j < 4 && 4 * q + j < k4n; j++) {
                uint8_t *dst = Wu + ((size_t)(4 * q + j) * np + pp) * 64;
                for (int b = 0; b < 64; b++) dst[b] = (uint8_t)((blk[b] >> (2 * j)) & 3u);
            }
        }
}

/* Stores one int32 value at (m, n) the way every kernel does: the SIMD
 * epilogues do the same two multiplies and one add per element. Bit
 * equality across ISAs relies on no FMA contraction, which is the default
 * of the ISO C mode the project builds in (-std=c11: -ffp-contract=off). */
static inline void store_one(const tg_out *o, int m, int n, int32_t c) {
    if (o->C) {
        o->C[(size_t)m * o->ldc + n] = c;
    } else {
        float y = (float)c * o->rs[m];
        y = y * o->cs[n];
        if (o->bias) y = y + o->bias[n];
        o->Y[(size_t)m * o->ldy + n] = y;
    }
}

#define MR_S 4
static void kernel_scalar(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                          const int32_t *asum, int mr, int np, int nvalid, const tg_out *o, int m, int n) {
    (void)asum;
    for (int r = 0; r < mr; r++) {
        const int8_t *ar = a + (size_t)r * lda;
        int32_t acc[16 * 3] = {0};
        if (!kb->first) memcpy(acc, kb->part + (size_t)r * np * 16, (size_t)np * 16 * sizeof(int32_t));
        for (int k = 0; k < k4n; k++) {
            const uint8_t *w = Wu + (size_t)k * np * 64;
            for (int i = 0; i < 16 * np; i++)
                for (int kk = 0; kk < 4; kk++) acc[i] += ((int32_t)w[4 * i + kk] - 1) * ar[4 * k + kk];
        }
        if (!kb->last) memcpy(kb->part + (size_t)r * np * 16, acc, (size_t)np * 16 * sizeof(int32_t));
        else
            for (int i = 0; i < nvalid; i++) store_one(o, m + r, n + i, acc[i]);
    }
}

/* ------------------------------------------------------------------------ */
/* AVX2: pmaddubsw into int16, widened every 64 column quads. */

static AVX2_TARGET void unpack_avx2(const uint8_t *W, int Q, int k4n, int p0, int np, uint8_t *Wu) {
    const __m256i three = _mm256_set1_epi8(3);
    for (int pp = 0; pp < np; pp++)
        for (int q = 0; q < Q; q++) {
            const uint8_t *blk = W + ((size_t)(p0 + pp) * Q + q) * 64;
            __m256i lo = _mm256_loadu_si256((const __m256i *)blk);
            __m256i hi = _mm256_loadu_si256((const __m256i *)(blk + 32));
            for (int j = 0; j < 4 && 4 * q + j < k4n; j++) {
                uint8_t *dst = Wu + ((size_t)(4 * q + j) * np + pp) * 64;
                __m128i cnt = _mm_cvtsi32_si128(2 * j);
                _mm256_store_si256((__m256i *)dst, _mm256_and_si256(_mm256_srl_epi16(lo, cnt), three));
                _mm256_store_si256((__m256i *)(dst + 32), _mm256_and_si256(_mm256_srl_epi16(hi, cnt), three));
            }
        }
}

INLINE AVX2_TARGET __m256i bcast4_avx2(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Lane mask for columns [0, nvalid) of a half panel of 8 (AVX2 maskstore). */
INLINE AVX2_TARGET __m256i mask8_avx2(int nvalid) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nvalid), idx);
}

/* Epilogue of 8 int32 sums (columns n..n+7, nv of them valid) of row m. */
INLINE AVX2_TARGET void store8_avx2(const tg_out *o, int m, int n, int nv, __m256i v) {
    if (nv <= 0) return;
    __m256i msk = mask8_avx2(nv);
    if (o->C) {
        int32_t *dst = o->C + (size_t)m * o->ldc + n;
        if (nv >= 8) _mm256_storeu_si256((__m256i *)dst, v);
        else _mm256_maskstore_epi32((int *)dst, msk, v);
        return;
    }
    float *dst = o->Y + (size_t)m * o->ldy + n;
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(o->rs[m]));
    if (nv >= 8) {
        y = _mm256_mul_ps(y, _mm256_loadu_ps(o->cs + n));
        if (o->bias) y = _mm256_add_ps(y, _mm256_loadu_ps(o->bias + n));
        _mm256_storeu_ps(dst, y);
    } else {
        y = _mm256_mul_ps(y, _mm256_maskload_ps(o->cs + n, msk));
        if (o->bias) y = _mm256_add_ps(y, _mm256_maskload_ps(o->bias + n, msk));
        _mm256_maskstore_ps(dst, msk, y);
    }
}

/* sum a = sum (a ^ 0x80) - 128 K: psadbw adds unsigned bytes in groups of 8. */
static AVX2_TARGET void rowsum_avx2(const int8_t *A, long lda, int rows, int K, int32_t *sum) {
    const __m256i flip = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    for (int i = 0; i < rows; i++) {
        const int8_t *a = A + (size_t)i * lda;
        __m256i acc = zero;
        int k = 0;
        for (; k + 32 <= K; k += 32)
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + k)), flip), zero));
        __m128i h = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        int64_t s = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1) - 128 * (int64_t)k;
        for (; k < K; k++) s += a[k];
        sum[i] = (int32_t)s;
    }
}

#define MR_2 4
/* C tile (rows x 16 int32) minus the row sums, stored. */
static AVX2_TARGET __attribute__((noinline)) void epilogue_avx2(const int32_t *tile, int mr,
                                                               const int32_t *asum, int nvalid,
                                                               const tg_out *o, int m, int n) {
    for (int r = 0; r < mr; r++) {
        const __m256i s = _mm256_set1_epi32(asum[r]);
        store8_avx2(o, m + r, n, nvalid, _mm256_sub_epi32(_mm256_load_si256((const __m256i *)(tile + 16 * r)), s));
        store8_avx2(o, m + r, n + 8, nvalid - 8,
                    _mm256_sub_epi32(_mm256_load_si256((const __m256i *)(tile + 16 * r + 8)), s));
    }
}

/* int16 accumulators in registers (2 per row); every 64 quads they are
 * widened into the int32 tile, which lives in memory (16 ymm registers
 * cannot hold both): the caller's partial tile between K blocks. */
INLINE AVX2_TARGET void kernel_avx2_t(const int MR, int k4n, const int8_t *a, long lda, const uint8_t *Wu,
                                      const tg_kblk *kb, const int32_t *asum, int nvalid, const tg_out *o,
                                      int m, int n) {
    const __m256i ones = _mm256_set1_epi16(1);
    __attribute__((aligned(32))) int32_t local[MR_2 * 16];
    int32_t *tile = kb->part ? kb->part : local;
    if (kb->first) memset(tile, 0, (size_t)MR * 16 * sizeof(int32_t));
    for (int k0 = 0; k0 < k4n; k0 += 64) {
        const int k1 = imin(k4n, k0 + 64);
        __m256i c0[MR_2], c1[MR_2];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_si256();
        const int8_t *ak = a + 4 * k0;
        const uint8_t *w = Wu + (size_t)k0 * 64;
        for (int k = k0; k < k1; k++, ak += 4, w += 64) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)w);
            const __m256i w1 = _mm256_load_si256((const __m256i *)(w + 32));
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const __m256i av = bcast4_avx2(ak + r * lda);
                c0[r] = _mm256_add_epi16(c0[r], _mm256_maddubs_epi16(w0, av));
                c1[r] = _mm256_add_epi16(c1[r], _mm256_maddubs_epi16(w1, av));
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256i *t = (__m256i *)(tile + 16 * r);
            _mm256_store_si256(t, _mm256_add_epi32(_mm256_load_si256(t), _mm256_madd_epi16(c0[r], ones)));
            _mm256_store_si256(t + 1, _mm256_add_epi32(_mm256_load_si256(t + 1), _mm256_madd_epi16(c1[r], ones)));
        }
    }
    if (kb->last) epilogue_avx2(tile, MR, asum, nvalid, o, m, n);
}

#define KAVX2(MR)                                                                                      \
    static AVX2_TARGET void kernel_avx2_##MR(int k4n, const int8_t *a, long lda, const uint8_t *Wu,    \
                                             const tg_kblk *kb, const int32_t *asum, int nvalid,       \
                                             const tg_out *o, int m, int n) {                          \
        kernel_avx2_t(MR, k4n, a, lda, Wu, kb, asum, nvalid, o, m, n);                                 \
    }
KAVX2(1)
KAVX2(2)
KAVX2(3)
KAVX2(4)

static void kernel_avx2(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                        const int32_t *asum, int mr, int np, int nvalid, const tg_out *o, int m, int n) {
    (void)np; /* always 1 */
    typedef void (*fn)(int, const int8_t *, long, const uint8_t *, const tg_kblk *, const int32_t *, int,
                       const tg_out *, int, int);
    static const fn tab[MR_2 + 1] = {NULL, kernel_avx2_1, kernel_avx2_2, kernel_avx2_3, kernel_avx2_4};
    tab[mr](k4n, a, lda, Wu, kb, asum, nvalid, o, m, n);
}

/* ------------------------------------------------------------------------ */
/* AVX-512 VNNI: vpdpbusd, 8 rows x 3 panels (48 columns) = 24 accumulators. */

/* Weights as u = w + 1 in {0, 1, 2} (vpdpbusd wants an unsigned operand),
 * or as w itself (sub1: AMX multiplies signed bytes directly). */
INLINE VNNI_TARGET void unpack_vnni_t(const uint8_t *W, int Q, int k4n, int p0, int np, uint8_t *Wu, const int sub1) {
    const __m512i three = _mm512_set1_epi8(3), one = _mm512_set1_epi8(sub1 ? 1 : 0);
#define UNPACKED(x) _mm512_sub_epi8(_mm512_and_si512((x), three), one)
    for (int pp = 0; pp < np; pp++) {
        const uint8_t *blk = W + (size_t)(p0 + pp) * Q * 64;
        uint8_t *dst = Wu + (size_t)pp * 64;
        const size_t step = (size_t)np * 64; /* one k4 */
        int q = 0;
        for (; 4 * q + 4 <= k4n; q++, blk += 64) {
            const __m512i v = _mm512_loadu_si512(blk);
            _mm512_store_si512(dst, UNPACKED(v)), dst += step;
            _mm512_store_si512(dst, UNPACKED(_mm512_srli_epi16(v, 2))), dst += step;
            _mm512_store_si512(dst, UNPACKED(_mm512_srli_epi16(v, 4))), dst += step;
            _mm512_store_si512(dst, UNPACKED(_mm512_srli_epi16(v, 6))), dst += step;
        }
        if (4 * q < k4n) { /* K % 16 != 0: the last block holds 1..3 column quads */
            const __m512i v = _mm512_loadu_si512(blk);
            for (int j = 0; 4 * q + j < k4n; j++, dst += step)
                _mm512_store_si512(dst, UNPACKED(_mm512_srl_epi16(v, _mm_cvtsi32_si128(2 * j))));
        }
    }
#undef UNPACKED
}
static VNNI_TARGET void unpack_vnni(const uint8_t *W, int Q, int k4n, int p0, int np, uint8_t *Wu) {
    unpack_vnni_t(W, Q, k4n, p0, np, Wu, 0);
}

INLINE VNNI_TARGET void store16_vnni(const tg_out *o, int m, int n, int nv, __m512i v) {
    if (nv <= 0) return;
    const __mmask16 msk = nv >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nv) - 1);
    if (o->C) {
        _mm512_mask_storeu_epi32(o->C + (size_t)m * o->ldc + n, msk, v);
        return;
    }
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(o->rs[m]));
    y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(msk, o->cs + n));
    if (o->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(msk, o->bias + n));
    _mm512_mask_storeu_ps(o->Y + (size_t)m * o->ldy + n, msk, y);
}

static VNNI_TARGET void rowsum_vnni(const int8_t *A, long lda, int rows, int K, int32_t *sum) {
    const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    for (int i = 0; i < rows; i++) {
        const int8_t *a = A + (size_t)i * lda;
        __m512i acc = zero;
        int k = 0;
        for (; k + 64 <= K; k += 64)
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(a + k), flip), zero));
        int64_t s = _mm512_reduce_add_epi64(acc) - 128 * (int64_t)k;
        for (; k < K; k++) s += a[k];
        sum[i] = (int32_t)s;
    }
}

/* Prefetches (for writing) the output lines of rows m..m+mr-1, columns
 * n..n+nvalid-1 (4-byte elements either way). */
static inline void prefetch_out(const tg_out *o, int mr, int m, int n, int nvalid) {
    for (int r = 0; r < mr; r++) {
        const char *p = o->C ? (const char *)(o->C + (size_t)(m + r) * o->ldc + n)
                             : (const char *)(o->Y + (size_t)(m + r) * o->ldy + n);
        for (int b = 0; b < nvalid * 4; b += 64) __builtin_prefetch(p + b, 1, 3);
        __builtin_prefetch(p + nvalid * 4 - 1, 1, 3);
    }
}

#define MR_5 8
#define NP_5 3
/* C tile (rows x np*16 int32, row-major) minus the row sums (if any), stored. */
static VNNI_TARGET __attribute__((noinline)) void epilogue_vnni(const int32_t *tile, int mr, int np,
                                                               const int32_t *asum, int nvalid,
                                                               const tg_out *o, int m, int n) {
    for (int r = 0; r < mr; r++) {
        const __m512i s = _mm512_set1_epi32(asum ? asum[r] : 0);
        for (int p = 0; p < np; p++)
            store16_vnni(o, m + r, n + 16 * p, nvalid - 16 * p,
                         _mm512_sub_epi32(_mm512_load_si512(tile + (r * np + p) * 16), s));
    }
}

INLINE VNNI_TARGET void kernel_vnni_t(const int MR, const int NP, int k4n, const int8_t *a, long lda,
                                      const uint8_t *Wu, const tg_kblk *kb, const int32_t *asum, int nvalid,
                                      const tg_out *o, int m, int n) {
    /* one 1-D array per panel, loops over rows fully unrolled: GCC keeps
     * the accumulators in registers only then */
    __m512i c0[MR_5], c1[MR_5], c2[MR_5];
    if (kb->last) /* the output is written only after the k loop: fetch its lines now, so
                   * the stores do not stall on misses (it was ~1/4 of the time at K=384) */
        prefetch_out(o, MR, m, n, nvalid);
    if (kb->first) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) c0[r] = c1[r] = c2[r] = _mm512_setzero_si512();
    } else {
        const int32_t *t = kb->part;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            c0[r] = _mm512_load_si512(t + (r * NP + 0) * 16);
            c1[r] = NP > 1 ? _mm512_load_si512(t + (r * NP + 1) * 16) : c0[r];
            c2[r] = NP > 2 ? _mm512_load_si512(t + (r * NP + 2) * 16) : c0[r];
        }
    }
    const int8_t *ak = a;
    for (int k = 0; k < k4n; k++, ak += 4, Wu += NP * 64) {
        const __m512i w0 = _mm512_load_si512(Wu);
        const __m512i w1 = NP > 1 ? _mm512_load_si512(Wu + 64) : w0;
        const __m512i w2 = NP > 2 ? _mm512_load_si512(Wu + 128) : w0;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            int32_t a4;
            memcpy(&a4, ak + r * lda, 4);
            const __m512i av = _mm512_set1_epi32(a4);
            c0[r] = _mm512_dpbusd_epi32(c0[r], w0, av);
            if (NP > 1) c1[r] = _mm512_dpbusd_epi32(c1[r], w1, av);
            if (NP > 2) c2[r] = _mm512_dpbusd_epi32(c2[r], w2, av);
        }
    }
    /* plain stores first: a complex epilogue here makes GCC spill the
     * accumulators inside the k loop */
    __attribute__((aligned(64))) int32_t local[MR_5 * NP_5 * 16];
    int32_t *tile = kb->last ? local : kb->part;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        _mm512_store_si512(tile + (r * NP + 0) * 16, c0[r]);
        if (NP > 1) _mm512_store_si512(tile + (r * NP + 1) * 16, c1[r]);
        if (NP > 2) _mm512_store_si512(tile + (r * NP + 2) * 16, c2[r]);
    }
    if (kb->last) epilogue_vnni(local, MR, NP, asum, nvalid, o, m, n);
}

#define KVNNI(MR, NP)                                                                                  \
    static VNNI_TARGET void kernel_vnni_##MR##_##NP(int k4n, const int8_t *a, long lda,              \
                                                    const uint8_t *Wu, const tg_kblk *kb,             \
                                                    const int32_t *asum, int nvalid, const tg_out *o, \
                                                    int m, int n) {                                   \
        kernel_vnni_t(MR, NP, k4n, a, lda, Wu, kb, asum, nvalid, o, m, n);                             \
    }
#define KVNNI_ROW(MR) KVNNI(MR, 1) KVNNI(MR, 2) KVNNI(MR, 3)
KVNNI_ROW(1)
KVNNI_ROW(2)
KVNNI_ROW(3)
KVNNI_ROW(4)
KVNNI_ROW(5)
KVNNI_ROW(6)
KVNNI_ROW(7)
KVNNI_ROW(8)

static void kernel_vnni(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                        const int32_t *asum, int mr, int np, int nvalid, const tg_out *o, int m, int n) {
    typedef void (*fn)(int, const int8_t *, long, const uint8_t *, const tg_kblk *, const int32_t *, int,
                       const tg_out *, int, int);
#define ROW(MR) {kernel_vnni_##MR##_1, kernel_vnni_##MR##_2, kernel_vnni_##MR##_3}
    static const fn tab[MR_5][NP_5] = {ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6), ROW(7), ROW(8)};
#undef ROW
    tab[mr - 1][np - 1](k4n, a, lda, Wu, kb, asum, nvalid, o, m, n);
}


/* ------------------------------------------------------------------------ */
/* AMX (Sapphire Rapids and later): TDPBSSD multiplies a tile of 16 rows x
 * 64 signed bytes (16 activation rows, 64 k) with a tile of 16 rows x 64
 * signed bytes in the VNNI layout (16 column quads: for each k4 row, 16
 * columns x 4 consecutive k), i.e. exactly one k4 row range of a Wu panel,
 * into a 16 x 16 int32 tile. The weights are unpacked as w in {-1, 0, 1}
 * (not u = w+1 as for vpdpbusd), so there are no row sums to compute or
 * subtract (device, one thread, DiT-S shapes: 10-25% faster in one run,
 * within the VM's noise in another). Micro-tile 32 rows x 2 panels: C in
 * tiles 0..3, A in 4..5, B in 6..7. K blocks are whole multiples of 64 k
 * (kgran 16 quads), so the AMX path runs when K % 64 == 0 (every DiT
 * width); other K use the VNNI kernels. K blocks of 768 instead of 384, and
 * running each tile's epilogue during the next tile's multiplies, measured
 * no faster. Rows past M are copied into a zero-padded
 * buffer, so no tile load reads beyond A. Linux hands out the tile state
 * only after arch_prctl(ARCH_REQ_XCOMP_PERM): rq_tgemm_isa_supported asks
 * for it once. */
#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vnni")))
#define MR_X 32
#define NP_X 2
#define AMX_KQ_MAX 256 /* quads of one K block: TG_KC/4 rounded to 16, with room */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) amx_cfg;

static _Thread_local int tl_amx_ready;

static AMX_TARGET void amx_setup(void) {
    amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) c.colsb[t] = 64, c.rows[t] = 16;
    _tile_loadconfig(&c);
    tl_amx_ready = 1;
}

/* Gives the tile state back at the end of each thread's share of a call
 * (Intel's advice: a core that keeps AMX state in use may stay in a lower
 * power license for the vector code that follows). Device A/B, 16 threads:
 * the QAT step's fp32 backward GEMMs 4-5% faster in two rounds out of two;
 * the next call pays one tile config load per thread. */
static AMX_TARGET void amx_release(void) {
    if (tl_amx_ready) _tile_release();
    tl_amx_ready = 0;
}

INLINE AMX_TARGET void kernel_amx_t(const int NP, int k4n, const int8_t *a, long lda, const uint8_t *Wu,
                                     const tg_kblk *kb, const int32_t *asum, int mr, int nvalid, const tg_out *o,
                                     int m, int n) {
    if (!tl_amx_ready) amx_setup();
    __attribute__((aligned(64))) int8_t pad[MR_X * 4 * AMX_KQ_MAX];
    if (mr < MR_X) { /* the last rows of A: copy them, zero the rest */
        memset(pad, 0, (size_t)MR_X * 4 * k4n);
        for (int r = 0; r < mr; r++) memcpy(pad + (size_t)r * 4 * k4n, a + r * lda, (size_t)4 * k4n);
        a = pad, lda = 4 * k4n;
    }
    if (kb->last) prefetch_out(o, mr, m, n, nvalid); /* as in the VNNI kernel: stores would stall */
    const long ws = NP * 64, cs = NP * 64; /* bytes per k4 row of Wu / per row of a C tile in part */
    int32_t *part = kb->part;
    if (kb->first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, part, cs);
        _tile_loadd(2, part + 16 * NP * 16, cs);
        if (NP > 1) {
            _tile_loadd(1, part + 16, cs);
            _tile_loadd(3, part + 16 * NP * 16 + 16, cs);
        }
    }
    for (int k = 0; k < k4n; k += 16) {
        _tile_loadd(4, a + 4 * k, lda);
        _tile_loadd(5, a + 16 * lda + 4 * k, lda);
        _tile_loadd(6, Wu + (size_t)k * ws, ws);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(2, 5, 6);
        if (NP > 1) {
            _tile_loadd(7, Wu + (size_t)k * ws + 64, ws);
            _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(3, 5, 7);
        }
    }
    __attribute__((aligned(64))) int32_t local[MR_X * NP_X * 16];
    int32_t *t = kb->last ? local : part;
    _tile_stored(0, t, cs);
    _tile_stored(2, t + 16 * NP * 16, cs);
    if (NP > 1) {
        _tile_stored(1, t + 16, cs);
        _tile_stored(3, t + 16 * NP * 16 + 16, cs);
    }
    (void)asum; /* signed weights: nothing to subtract */
    if (kb->last) epilogue_vnni(local, mr, NP, NULL, nvalid, o, m, n);
}

static AMX_TARGET void kernel_amx_1(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                                    const int32_t *asum, int mr, int nvalid, const tg_out *o, int m, int n) {
    kernel_amx_t(1, k4n, a, lda, Wu, kb, asum, mr, nvalid, o, m, n);
}
static AMX_TARGET void kernel_amx_2(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                                    const int32_t *asum, int mr, int nvalid, const tg_out *o, int m, int n) {
    kernel_amx_t(2, k4n, a, lda, Wu, kb, asum, mr, nvalid, o, m, n);
}
static void kernel_amx(int k4n, const int8_t *a, long lda, const uint8_t *Wu, const tg_kblk *kb,
                       const int32_t *asum, int mr, int np, int nvalid, const tg_out *o, int m, int n) {
    (np == 1 ? kernel_amx_1 : kernel_amx_2)(k4n, a, lda, Wu, kb, asum, mr, nvalid, o, m, n);
}

static VNNI_TARGET void unpack_amx(const uint8_t *W, int Q, int k4n, int p0, int np, uint8_t *Wu) {
    unpack_vnni_t(W, Q, k4n, p0, np, Wu, 1);
}

/* CPUID.(7,0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8 (read directly: not
 * every compiler's __builtin_cpu_supports knows the AMX names). */
static int cpu_has_amx_int8(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (d >> 24 & 1) && (d >> 25 & 1);
}

/* Process-wide permission to use the AMX tile data (Linux >= 5.16); once. */
static int amx_permitted(void) {
    static int state = -1; /* benign race: every caller gets the same answer */
    if (state < 0) {
#ifdef SYS_arch_prctl
        state = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
        state = 0;
#endif
    }
    return state;
}

/* ------------------------------------------------------------------------ */
/* Dispatch */

static const tg_impl g_impls[] = {
    {RQ_TGEMM_SCALAR, MR_S, 1, kernel_scalar, unpack_scalar, NULL, 1},
    {RQ_TGEMM_AVX2, MR_2, 1, kernel_avx2, unpack_avx2, rowsum_avx2, 1},
    {RQ_TGEMM_VNNI, MR_5, NP_5, kernel_vnni, unpack_vnni, rowsum_vnni, 1},
    {RQ_TGEMM_AMX, MR_X, NP_X, kernel_amx, unpack_amx, NULL, 16},
};
static rq_tgemm_isa g_isa = RQ_TGEMM_AUTO; /* AUTO = not chosen yet */

int rq_tgemm_isa_supported(rq_tgemm_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case RQ_TGEMM_SCALAR: return 1;
    case RQ_TGEMM_AVX2: return __builtin_cpu_supports("avx2");
    case RQ_TGEMM_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    case RQ_TGEMM_AMX:
        return rq_tgemm_isa_supported(RQ_TGEMM_VNNI) && cpu_has_amx_int8() && amx_permitted();
    default: return 0;
    }
}

rq_tgemm_isa rq_tgemm_set_isa(rq_tgemm_isa isa) {
    if (isa == RQ_TGEMM_AUTO || !rq_tgemm_isa_supported(isa)) {
        rq_tgemm_isa want = isa == RQ_TGEMM_AUTO || isa > RQ_TGEMM_AMX ? RQ_TGEMM_AMX : isa;
        isa = RQ_TGEMM_SCALAR;
        for (rq_tgemm_isa c = RQ_TGEMM_AMX; c > RQ_TGEMM_SCALAR; c--)
            if (c <= want && rq_tgemm_isa_supported(c)) {
                isa = c;
                break;
            }
    }
    g_isa = isa;
    return isa;
}

rq_tgemm_isa rq_tgemm_get_isa(void) {
    if (g_isa == RQ_TGEMM_AUTO) rq_tgemm_set_isa(RQ_TGEMM_AUTO); /* benign race: same answer */
    return g_isa;
}

const char *rq_tgemm_isa_name(rq_tgemm_isa isa) {
    switch (isa) {
    case RQ_TGEMM_AUTO: return "auto";
    case RQ_TGEMM_SCALAR: return "scalar";
    case RQ_TGEMM_AVX2: return "avx2";
    case RQ_TGEMM_VNNI: return "avx512vnni";
    case RQ_TGEMM_AMX: return "amx-int8";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Per-thread work buffer (unpacked weights + row sums), grown on demand and
 * kept for later calls; a pthread key frees it when its thread exits. */
static _Thread_local uint8_t *tl_buf = NULL;
static _Thread_local size_t tl_cap = 0;
static pthread_key_t g_buf_key;
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;

static void buf_free(void *p) { rq_free(p); }
static void buf_key_init(void) { pthread_key_create(&g_buf_key, buf_free); }

static uint8_t *work_buffer(size_t bytes) {
    if (bytes > tl_cap) {
        pthread_once(&g_buf_once, buf_key_init);
        rq_free(tl_buf);
        tl_cap = bytes + bytes / 4;
        tl_buf = rq_malloc(tl_cap);
        if (!tl_buf) tl_cap = 0;
        pthread_setspecific(g_buf_key, tl_buf);
    }
    return tl_buf;
}

/* Blocking for a given K: panels per NB block (a multiple of np; its
 * unpacked weights over all of K fit TG_WU_BUDGET), K blocks (about TG_KC,
 * whole quads, sizes differing by at most one quad) and rows per MB block
 * (a multiple of mr; one K block of them fits TG_A_BUDGET). */
static int block_panels(const tg_impl *im, int K) {
    int p = TG_WU_BUDGET / (16 * K) / im->np * im->np;
    return imax(p, im->np);
}
static int k_blocks(int K) { return (K + TG_KC - 1) / TG_KC; }
static int block_rows(const tg_impl *im, int K) {
    int kc = imin(K, TG_KC);
    int r = imin(TG_A_BUDGET / kc, TG_MB_MAX) / im->mr * im->mr;
    return imax(r, im->mr);
}

typedef struct {
    int M, N, K;
    const int8_t *A;
    int lda;
    const uint8_t *W;
    tg_out out;
} tg_job;

/* One thread's share: rows r0..r1-1, panels pa..pb-1 (columns 16pa..), on
 * the calling thread. Returns 0, or -1 if the buffer could not be had. */
static int tile_run(const tg_impl *im, const tg_job *J, int r0, int r1, int pa, int pb) {
    if (r0 >= r1 || pa >= pb) return 0;
    const int K = J->K, k4n = K / 4, Q = (K + 15) / 16, MR = im->mr, NP = im->np;
    const int NBP = block_panels(im, K), MB = block_rows(im, K), nkb = k_blocks(K);
    const int ngroups = (NBP + NP - 1) / NP, tile_ints = MR * NP * 16;
    /* buffer: unpacked weights | partial sums (several K blocks) | row sums */
    const size_t wu_bytes = (size_t)NBP * 16 * K;
    const size_t part_bytes = nkb > 1 ? (size_t)(MB / MR) * ngroups * tile_ints * sizeof(int32_t) : 0;
    uint8_t *buf = work_buffer(wu_bytes + part_bytes + (size_t)MB * sizeof(int32_t));
    if (!buf) return -1;
    uint8_t *Wu = buf; /* 16*K is a multiple of 64: every part below stays 64-byte aligned */
    int32_t *part = (int32_t *)(buf + wu_bytes), *asum = (int32_t *)(buf + wu_bytes + part_bytes);
    for (int m0 = r0; m0 < r1; m0 += MB) {
        const int mb = imin(MB, r1 - m0);
        const int8_t *Ab = J->A + (size_t)m0 * J->lda;
        if (im->rowsum) im->rowsum(Ab, J->lda, mb, K, asum);
        for (int q0 = pa; q0 < pb; q0 += NBP) {
            const int nbp = imin(NBP, pb - q0);
            for (int g = 0; g < nbp; g += NP)
                im->unpack(J->W, Q, k4n, q0 + g, imin(NP, nbp - g), Wu + (size_t)g * 16 * K);
            for (int b = 0, kq0 = 0; b < nkb; b++) {
                const int kg = im->kgran, kgn = k4n / kg; /* quads in this K block: whole granules */
                const int kq = kg * (kgn / nkb + (b < kgn % nkb));
                for (int g = 0; g < nbp; g += NP) {         /* Wu slice: L1 across all rows */
                    const int np = imin(NP, nbp - g), n = 16 * (q0 + g);
                    const uint8_t *wu = Wu + (size_t)g * 16 * K + (size_t)kq0 * np * 64;
                    for (int i = 0; i < mb; i += MR) {
                        tg_kblk kb = {nkb > 1 ? part + ((size_t)(i / MR) * ngroups + g / NP) * tile_ints : NULL,
                                      b == 0, b == nkb - 1};
                        im->kernel(kq, Ab + (size_t)i * J->lda + 4 * kq0, J->lda, wu, &kb, asum + i,
                                   imin(MR, mb - i), np, imin(16 * np, J->N - n), &J->out, m0 + i, n);
                    }
                }
                kq0 += kq;
            }
        }
    }
    if (im->isa == RQ_TGEMM_AMX) amx_release();
    return 0;
}

/* Picks a tm x tn grid of C tiles for T threads that take tiles
 * dynamically (up to TG_TILES_PER_THREAD * T tiles; threads differ in
 * speed, see rq_sgemm in gemm.c). Cost of a tile: multiply-adds plus the
 * unpacking of its weights (once per MB block of its rows) and the row
 * sums, in multiply-add equivalents; estimated time: the total spread over
 * T threads plus one tile (the tail of the schedule). N is split in whole
 * micro-panels, M in whole micro-rows. */
#define TG_TILES_PER_THREAD 4
static void choose_grid(const tg_impl *im, int M, int N, int K, int T, int *tm_out, int *tn_out) {
    const int MR = im->mr, NR = 16 * im->np, MB = block_rows(im, K), max_tiles = TG_TILES_PER_THREAD * T;
    int pm = (M + MR - 1) / MR, pn = (N + NR - 1) / NR;
    double best = -1.0;
    *tm_out = *tn_out = 1;
    for (int tm = 1; tm <= imin(max_tiles, pm); tm++)
        for (int tn = 1; tn <= imin(max_tiles / tm, pn); tn++) {
            double mt = (double)((pm + tm - 1) / tm) * MR, nt = (double)((pn + tn - 1) / tn) * NR;
            double unpacks = (double)((int)mt + MB - 1) / MB;
            double tile = mt * nt * K + 16.0 * unpacks * nt * K + 4.0 * mt * K;
            double cost = tile * tm * tn / T + tile;
            if (best < 0 || cost < best * 0.999) {
                best = cost;
                *tm_out = tm;
                *tn_out = tn;
            }
        }
}

static rq_status run(const tg_job *J, rq_err *err) {
    const int M = J->M, N = J->N, K = J->K;
    const tg_impl *im = &g_impls[rq_tgemm_get_isa() - RQ_TGEMM_SCALAR];
    if (im->isa == RQ_TGEMM_AMX && K % 64) im = &g_impls[RQ_TGEMM_VNNI - RQ_TGEMM_SCALAR]; /* whole AMX tiles only */
    if (M == 0 || N == 0) return RQ_OK;
    const int P = (N + 15) / 16;
    int T = omp_in_parallel() ? 1 : omp_get_max_threads();
    int tm = 1, tn = 1;
    /* below ~1M multiply-adds a parallel region costs more than it saves */
    if (T > 1 && (double)M * N * K >= 1e6) choose_grid(im, M, N, K, T, &tm, &tn);
    int failed = 0;
    if (tm * tn == 1) {
        failed = tile_run(im, J, 0, M, 0, P);
    } else {
        const int MR = im->mr, np = im->np;
        const int pm = (M + MR - 1) / MR, pg = (P + np - 1) / np; /* micro-rows, micro-panels */
#pragma omp parallel for schedule(dynamic, 1) num_threads(imin(T, tm * tn)) reduction(| : failed)
        for (int tile = 0; tile < tm * tn; tile++) {
            int ti = tile / tn, tj = tile % tn;
            int r0 = (int)((long)pm * ti / tm) * MR, r1 = imin((int)((long)pm * (ti + 1) / tm) * MR, M);
            int c0 = (int)((long)pg * tj / tn) * np, c1 = imin((int)((long)pg * (tj + 1) / tn) * np, P);
            failed |= tile_run(im, J, r0, r1, c0, c1) != 0;
        }
    }
    if (failed)
        return rq_err_set(err, RQ_ENOMEM, "tgemm: out of memory for the unpack buffer (K=%d)", K);
    return RQ_OK;
}

static rq_status check_args(const char *fn, int M, int N, int K, const int8_t *A, int lda, const uint8_t *W,
                            const void *out, int ldo, rq_err *err) {
    if (M < 0 || N < 0 || K < 4 || K > RQ_TGEMM_MAX_K || K % 4)
        return rq_err_set(err, RQ_EINVAL, "%s: bad shape M=%d N=%d K=%d (K must be a multiple of 4 in 4..%d)",
                          fn, M, N, K, RQ_TGEMM_MAX_K);
    if (lda < K || ldo < N)
        return rq_err_set(err, RQ_EINVAL, "%s: stride too small (lda=%d for K=%d, ldc=%d for N=%d)", fn, lda, K,
                          ldo, N);
    if (M > 0 && N > 0 && (!A || !W || !out)) return rq_err_set(err, RQ_EINVAL, "%s: NULL buffer", fn);
    return RQ_OK;
}

rq_status rq_tgemm(int M, int N, int K, const int8_t *A, int lda, const uint8_t *W, int32_t *C, int ldc,
                   rq_err *err) {
    rq_status st = check_args("tgemm", M, N, K, A, lda, W, C, ldc, err);
    if (st) return st;
    tg_job J = {M, N, K, A, lda, W, {C, ldc, NULL, 0, NULL, NULL, NULL}};
    return run(&J, err);
}

rq_status rq_tgemm_scaled(int M, int N, int K, const int8_t *A, int lda, const uint8_t *W,
                          const float *row_scale, const float *col_scale, const float *bias, float *Y,
                          int ldy, rq_err *err) {
    rq_status st = check_args("tgemm_scaled", M, N, K, A, lda, W, Y, ldy, err);
    if (st) return st;
    if (M > 0 && N > 0 && (!row_scale || !col_scale))
        return rq_err_set(err, RQ_EINVAL, "tgemm_scaled: NULL row_scale or col_scale");
    tg_job J = {M, N, K, A, lda, W, {NULL, 0, Y, ldy, row_scale, col_scale, bias}};
    return run(&J, err);
}

rq_status rq_tgemm_ref(int M, int N, int K, const int8_t *A, int lda, const int8_t *W, int ldw, int32_t *C,
                       int ldc, rq_err *err) {
    if (M < 0 || N < 0 || K < 0 || lda < K || ldw < K || ldc < N)
        return rq_err_set(err, RQ_EINVAL, "tgemm_ref: bad shape M=%d N=%d K=%d lda=%d ldw=%d ldc=%d", M, N, K,
                          lda, ldw, ldc);
    if (M > 0 && N > 0 && (!C || (K > 0 && (!A || !W))))
        return rq_err_set(err, RQ_EINVAL, "tgemm_ref: NULL buffer");
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int32_t s = 0;
            for (int k = 0; k < K; k++) s += (int32_t)A[(size_t)m * lda + k] * W[(size_t)n * ldw + k];
            C[(size_t)m * ldc + n] = s;
        }
    return RQ_OK;
}
