/* iattn.c: int8 q k^T attention scores (scalar / AVX2 / AVX-512 VNNI).
 *
 * One call computes an M x N block of scores over K = head_dim, on the
 * calling thread. The SIMD paths pack both operands into the work buffer,
 * zero-padded so that every micro-tile is full (the stores are masked):
 *
 *   VNNI: qp[Mp][K4*4] u8 (= code ^ 0x80, i.e. code + 128), rows padded to
 *         MR_V; kp[panel of 16 columns][K4][16][4] s8 (4 consecutive d of
 *         16 columns = one zmm), columns padded to 16; ksum[j] = sum_d k.
 *         A micro-tile is MR_V rows x np (1..3) panels: per step of 4 d it
 *         loads np zmm of k and broadcasts 4 bytes of each q row.
 *         sum_d (q+128) k = C + 128 ksum, so C = acc - 128 * ksum.
 *   AVX2: qp[Mp][K2*2] int16, kp[panel of 8 columns][K2][8][2] int16;
 *         pmaddwd adds the products of 2 d into int32 (|.| <= 2^15).
 *
 * Exactness: |code| <= 128, so every product is <= 2^14 and every partial
 * sum fits int32 by far (K <= 1024); all paths return the same integers and,
 * with the scaling below done in the same order, the same floats. */
#include "robuq/iattn.h"

#include "robuq/fastmath.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define AVX2_TARGET __attribute__((target("avx2")))

#define MR_V 8  /* VNNI micro-tile rows */
#define NPMAX 3 /* panels per micro-tile (VNNI: 16 columns each, AVX2: 8) */
#define MR_A 4  /* AVX2 micro-tile rows */

/* Where a tile's results go: int32 C, or the scaled float S. */
typedef struct {
    int32_t *C;
    int ldc;
    float *S;
    int lds;
    const float *rs, *cs;
} ia_out;

static int imin(int a, int b) { return a < b ? a : b; }
static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* The one place a score is finished (scalar path and every SIMD tail use
 * it; the SIMD bodies do the same two multiplies in the same order). */
static inline void store_one(const ia_out *o, int i, int j, int32_t c) {
    if (o->C) {
        o->C[(size_t)i * o->ldc + j] = c;
    } else {
        float s = (float)c * o->rs[i];
        o->S[(size_t)i * o->lds + j] = s * o->cs[j];
    }
}

/* ------------------------------------------------------------------------ */
/* Scalar */

static void run_scalar(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk,
                       const ia_out *o) {
    for (int i = 0; i < M; i++) {
        const int8_t *qi = q + (size_t)i * ldq;
        for (int j = 0; j < N; j++) {
            const int8_t *kj = k + (size_t)j * ldk;
            int32_t acc = 0;
            for (int d = 0; d < K; d++) acc += (int32_t)qi[d] * kj[d];
            store_one(o, i, j, acc);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Work buffer layout (offsets 64-byte aligned). */

typedef struct {
    size_t q_off, k_off, s_off, total;
} ia_layout;

static ia_layout layout_vnni(int M, int N, int K) {
    size_t k4 = (size_t)(K + 3) / 4, mp = round_up((size_t)M, MR_V), np = round_up((size_t)N, 16);
    ia_layout L;
    L.q_off = 0;
    L.k_off = round_up(mp * k4 * 4, 64);
    L.s_off = L.k_off + round_up(np * k4 * 4, 64);
    L.total = L.s_off + round_up(np * sizeof(int32_t), 64);
    return L;
}

static ia_layout layout_avx2(int M, int N, int K) {
    size_t k2 = (size_t)(K + 1) / 2, mp = round_up((size_t)M, MR_A), np = round_up((size_t)N, 8);
    ia_layout L;
    L.q_off = 0;
    L.k_off = round_up(mp * k2 * 2 * sizeof(int16_t), 64);
    L.s_off = L.k_off + round_up(np * k2 * 2 * sizeof(int16_t), 64);
    L.total = L.s_off;
    return L;
}

size_t rq_iattn_work_bytes(int M, int N, int K) {
    if (M < 0 || N < 0 || K < 1) return 0;
    size_t a = layout_vnni(M, N, K).total, b = layout_avx2(M, N, K).total;
    return a > b ? a : b;
}

/* ------------------------------------------------------------------------ */
/* AVX-512 VNNI */

/* q rows -> u8 (code ^ 0x80), padded with 0x80 (code 0) to K4*4 bytes and
 * to a multiple of MR_V rows; k -> panels, zero-padded; ksum per column. */
static void pack_vnni(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk, uint8_t *w,
                      const ia_layout *L) {
    const int k4 = (K + 3) / 4, mp = (int)round_up((size_t)M, MR_V), np = (int)round_up((size_t)N, 16);
    uint8_t *qp = w + L->q_off;
    int8_t *kp = (int8_t *)(w + L->k_off);
    int32_t *ks = (int32_t *)(w + L->s_off);
    memset(qp, 0x80, (size_t)mp * k4 * 4);
    for (int i = 0; i < M; i++)
        for (int d = 0; d < K; d++) qp[(size_t)i * k4 * 4 + d] = (uint8_t)q[(size_t)i * ldq + d] ^ 0x80u;
    memset(kp, 0, (size_t)np * k4 * 4);
    for (int j = 0; j < np; j++) {
        int32_t s = 0;
        int8_t *panel = kp + (size_t)(j / 16) * k4 * 64 + (j % 16) * 4;
        if (j < N)
            for (int d = 0; d < K; d++) {
                int8_t v = k[(size_t)j * ldk + d];
                panel[(size_t)(d / 4) * 64 + d % 4] = v;
                s += v;
            }
        ks[j] = s;
    }
}

/* One MR_V x 16*NP micro-tile at rows i0.., panels p0.. (nv valid columns
 * from column j0 = 16*p0, mv valid rows). */
static inline VNNI_TARGET __attribute__((always_inline)) void tile_vnni_t(const int NP, int k4, const uint8_t *qp,
                                                              const int8_t *kp, const int32_t *ks,
                                                              const ia_out *o, int i0, int mv, int j0,
                                                              int nv) {
    __m512i c[MR_V][NPMAX];
    for (int r = 0; r < MR_V; r++)
        for (int p = 0; p < NP; p++) c[r][p] = _mm512_setzero_si512();
    const size_t lq = (size_t)k4 * 4;
    for (int t = 0; t < k4; t++) {
        __m512i b[NPMAX];
        for (int p = 0; p < NP; p++) b[p] = _mm512_loadu_si512(kp + ((size_t)p * k4 + t) * 64);
#pragma GCC unroll 8
        for (int r = 0; r < MR_V; r++) {
            int32_t a4;
            memcpy(&a4, qp + r * lq + 4 * (size_t)t, 4);
            const __m512i a = _mm512_set1_epi32(a4);
            for (int p = 0; p < NP; p++) c[r][p] = _mm512_dpbusd_epi32(c[r][p], a, b[p]);
        }
    }
    for (int p = 0; p < NP; p++) {
        const int j = j0 + 16 * p, left = nv - 16 * p;
        if (left <= 0) break;
        const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        const __m512i off = _mm512_slli_epi32(_mm512_loadu_si512(ks + j), 7); /* 128 * ksum */
        const __m512 cs = o->C ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, o->cs + j);
        for (int r = 0; r < mv; r++) {
            const __m512i v = _mm512_sub_epi32(c[r][p], off);
            if (o->C) {
                _mm512_mask_storeu_epi32(o->C + (size_t)(i0 + r) * o->ldc + j, m, v);
            } else {
                __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(o->rs[i0 + r]));
                s = _mm512_mul_ps(s, cs);
                _mm512_mask_storeu_ps(o->S + (size_t)(i0 + r) * o->lds + j, m, s);
            }
        }
    }
}

#define TILE_VNNI(NP)                                                                                    \
    static VNNI_TARGET void tile_vnni_##NP(int k4, const uint8_t *qp, const int8_t *kp, const int32_t *ks, \
                                           const ia_out *o, int i0, int mv, int j0, int nv) {             \
        tile_vnni_t(NP, k4, qp, kp, ks, o, i0, mv, j0, nv);                                              \
    }
TILE_VNNI(1)
TILE_VNNI(2)
TILE_VNNI(3)

static void run_vnni(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk, const ia_out *o,
                     uint8_t *w) {
    const ia_layout L = layout_vnni(M, N, K);
    pack_vnni(M, N, K, q, ldq, k, ldk, w, &L);
    const int k4 = (K + 3) / 4, panels = (N + 15) / 16;
    const uint8_t *qp = w + L.q_off;
    const int8_t *kp = (const int8_t *)(w + L.k_off);
    const int32_t *ks = (const int32_t *)(w + L.s_off);
    /* column groups outer: the k slice (np panels x K) stays in L1 while
     * every row tile of q streams past it */
    for (int p0 = 0; p0 < panels; p0 += NPMAX) {
        const int np = imin(NPMAX, panels - p0), j0 = 16 * p0, nv = imin(16 * np, N - j0);
        const int8_t *kg = kp + (size_t)p0 * k4 * 64;
        for (int i0 = 0; i0 < M; i0 += MR_V) {
            const uint8_t *qt = qp + (size_t)i0 * k4 * 4;
            const int mv = imin(MR_V, M - i0);
            if (np == 3) tile_vnni_3(k4, qt, kg, ks, o, i0, mv, j0, nv);
            else if (np == 2) tile_vnni_2(k4, qt, kg, ks, o, i0, mv, j0, nv);
            else tile_vnni_1(k4, qt, kg, ks, o, i0, mv, j0, nv);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* AVX2 */

static void pack_avx2(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk, uint8_t *w,
                      const ia_layout *L) {
    const int k2 = (K + 1) / 2, mp = (int)round_up((size_t)M, MR_A), np = (int)round_up((size_t)N, 8);
    int16_t *qp = (int16_t *)(w + L->q_off), *kp = (int16_t *)(w + L->k_off);
    memset(qp, 0, (size_t)mp * k2 * 2 * sizeof(int16_t));
    for (int i = 0; i < M; i++)
        for (int d = 0; d < K; d++) qp[(size_t)i * k2 * 2 + d] = q[(size_t)i * ldq + d];
    memset(kp, 0, (size_t)np * k2 * 2 * sizeof(int16_t));
    for (int j = 0; j < N; j++) {
        int16_t *panel = kp + (size_t)(j / 8) * k2 * 16 + (j % 8) * 2;
        for (int d = 0; d < K; d++) panel[(size_t)(d / 2) * 16 + d % 2] = k[(size_t)j * ldk + d];
    }
}

static inline AVX2_TARGET __attribute__((always_inline)) void tile_avx2_t(const int NP, int k2, const int16_t *qp,
                                                              const int16_t *kp, const ia_out *o, int i0,
                                                              int mv, int j0, int nv) {
    __m256i c[MR_A][NPMAX];
    for (int r = 0; r < MR_A; r++)
        for (int p = 0; p < NP; p++) c[r][p] = _mm256_setzero_si256();
    const size_t lq = (size_t)k2 * 2;
    for (int t = 0; t < k2; t++) {
        __m256i b[NPMAX];
        for (int p = 0; p < NP; p++) b[p] = _mm256_loadu_si256((const __m256i *)(kp + ((size_t)p * k2 + t) * 16));
        for (int r = 0; r < MR_A; r++) {
            int32_t a2;
            memcpy(&a2, qp + r * lq + 2 * (size_t)t, 4);
            const __m256i a = _mm256_set1_epi32(a2);
            for (int p = 0; p < NP; p++) c[r][p] = _mm256_add_epi32(c[r][p], _mm256_madd_epi16(a, b[p]));
        }
    }
    for (int p = 0; p < NP; p++) {
        const int j = j0 + 8 * p, left = nv - 8 * p;
        if (left <= 0) break;
        for (int r = 0; r < mv; r++) {
            if (left >= 8 && !o->C) {
                __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(c[r][p]), _mm256_set1_ps(o->rs[i0 + r]));
                s = _mm256_mul_ps(s, _mm256_loadu_ps(o->cs + j));
                _mm256_storeu_ps(o->S + (size_t)(i0 + r) * o->lds + j, s);
            } else if (left >= 8) {
                _mm256_storeu_si256((__m256i *)(o->C + (size_t)(i0 + r) * o->ldc + j), c[r][p]);
            } else {
                int32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, c[r][p]);
                for (int x = 0; x < left; x++) store_one(o, i0 + r, j + x, tmp[x]);
            }
        }
    }
}

#define TILE_AVX2(NP)                                                                                    \
    static AVX2_TARGET void tile_avx2_##NP(int k2, const int16_t *qp, const int16_t *kp, const ia_out *o, \
                                           int i0, int mv, int j0, int nv) {                             \
        tile_avx2_t(NP, k2, qp, kp, o, i0, mv, j0, nv);                                                  \
    }
TILE_AVX2(1)
TILE_AVX2(2)
TILE_AVX2(3)

static void run_avx2(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk, const ia_out *o,
                     uint8_t *w) {
    const ia_layout L = layout_avx2(M, N, K);
    pack_avx2(M, N, K, q, ldq, k, ldk, w, &L);
    const int k2 = (K + 1) / 2, panels = (N + 7) / 8;
    const int16_t *qp = (const int16_t *)(w + L.q_off), *kp = (const int16_t *)(w + L.k_off);
    for (int p0 = 0; p0 < panels; p0 += NPMAX) {
        const int np = imin(NPMAX, panels - p0), j0 = 8 * p0, nv = imin(8 * np, N - j0);
        const int16_t *kg = kp + (size_t)p0 * k2 * 16;
        for (int i0 = 0; i0 < M; i0 += MR_A) {
            const int16_t *qt = qp + (size_t)i0 * k2 * 2;
            const int mv = imin(MR_A, M - i0);
            if (np == 3) tile_avx2_3(k2, qt, kg, o, i0, mv, j0, nv);
            else if (np == 2) tile_avx2_2(k2, qt, kg, o, i0, mv, j0, nv);
            else tile_avx2_1(k2, qt, kg, o, i0, mv, j0, nv);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Softmax rows (exp of fastmath.h, vectorized by hand: the compiler keeps
 * rq_expf scalar because its clamps are float compares that may trap) */

#define SM_LANES 16
#define MAGIC 12582912.0f /* 1.5 * 2^23: (v + MAGIC) - MAGIC = rint(v) for |v| < 2^22 */

static inline float rint_small(float v) { return (v + MAGIC) - MAGIC; }

static void softmax_scalar(int rows, int n, float *S, int ld, float *mx, float *inv, float L) {
    for (int i = 0; i < rows; i++) {
        float *row = S + (size_t)i * ld, pm[SM_LANES], ps[SM_LANES];
        int j = 0;
        for (int l = 0; l < SM_LANES; l++) pm[l] = -INFINITY, ps[l] = 0.0f;
        for (; j + SM_LANES <= n; j += SM_LANES)
            for (int l = 0; l < SM_LANES; l++) pm[l] = row[j + l] > pm[l] ? row[j + l] : pm[l];
        for (; j < n; j++) pm[0] = row[j] > pm[0] ? row[j] : pm[0];
        float m = pm[0];
        for (int l = 1; l < SM_LANES; l++) m = pm[l] > m ? pm[l] : m;
        for (j = 0; j < n; j++) row[j] = rq_expf(row[j] - m);
        for (j = 0; j + SM_LANES <= n; j += SM_LANES)
            for (int l = 0; l < SM_LANES; l++) ps[l] += row[j + l];
        for (; j < n; j++) ps[0] += row[j];
        float s = 0.0f;
        for (int l = 0; l < SM_LANES; l++) s += ps[l];
        const float r = 1.0f / s;
        if (L > 0.0f)
            for (j = 0; j < n; j++) row[j] = rint_small((row[j] * r) * L);
        else
            for (j = 0; j < n; j++) row[j] *= r;
        mx[i] = m, inv[i] = r;
    }
}

static void probs_scalar(int rows, int n, float *S, int ld, const float *mx, const float *inv, float *Pc, int ldp,
                         float L) {
    for (int i = 0; i < rows; i++) {
        float *row = S + (size_t)i * ld, *pc = Pc ? Pc + (size_t)i * ldp : NULL;
        for (int j = 0; j < n; j++) {
            row[j] = rq_expf(row[j] - mx[i]) * inv[i];
            if (pc) pc[j] = rint_small(row[j] * L);
        }
    }
}

/* rq_expf, op for op. max(c, x) / min(c, x) return x when x is NaN, like
 * the scalar clamp; the truncating convert of the integer-valued n equals
 * the scalar (int32_t)n. */
#define EXP_BODY(P, SET1, ADD, SUB, MUL, MAX, MIN, CVTT, ADDI, SLLI, CAST)                      \
    x = MIN(SET1(88.0f), MAX(SET1(-87.0f), x));                                                 \
    P n = SUB(ADD(MUL(x, SET1(1.44269504088896341f)), SET1(MAGIC)), SET1(MAGIC));               \
    P r = ADD(SUB(x, MUL(n, SET1(0.693359375f))), MUL(n, SET1(2.12194440e-4f)));                 \
    P p = SET1(1.9875691500e-4f);                                                               \
    p = ADD(MUL(p, r), SET1(1.3981999507e-3f));                                                 \
    p = ADD(MUL(p, r), SET1(8.3334519073e-3f));                                                 \
    p = ADD(MUL(p, r), SET1(4.1665795894e-2f));                                                 \
    p = ADD(MUL(p, r), SET1(1.6666665459e-1f));                                                 \
    p = ADD(MUL(p, r), SET1(5.0000001201e-1f));                                                 \
    p = ADD(ADD(MUL(MUL(p, r), r), r), SET1(1.0f));                                             \
    return MUL(p, CAST(SLLI(ADDI(CVTT(n), SET1I(127)), 23)));

static inline VNNI_TARGET __m512 exp512(__m512 x) {
#define SET1I _mm512_set1_epi32
    EXP_BODY(__m512, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_max_ps, _mm512_min_ps,
             _mm512_cvttps_epi32, _mm512_add_epi32, _mm512_slli_epi32, _mm512_castsi512_ps)
#undef SET1I
}

static inline AVX2_TARGET __m256 exp256(__m256 x) {
#define SET1I _mm256_set1_epi32
    EXP_BODY(__m256, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_max_ps, _mm256_min_ps,
             _mm256_cvttps_epi32, _mm256_add_epi32, _mm256_slli_epi32, _mm256_castsi256_ps)
#undef SET1I
}

/* Row max and sum as the scalar path (lanes = its 16 partials; tails and
 * the final sums in scalar code), exp / scale / rounding vectorized. */
static VNNI_TARGET void softmax_vnni(int rows, int n, float *S, int ld, float *mx, float *inv, float L) {
    const int nf = n / SM_LANES * SM_LANES;
    for (int i = 0; i < rows; i++) {
        float *row = S + (size_t)i * ld, pm[SM_LANES], ps[SM_LANES];
        __m512 vm = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < nf; j += SM_LANES) vm = _mm512_max_ps(_mm512_loadu_ps(row + j), vm);
        _mm512_storeu_ps(pm, vm);
        for (int j = nf; j < n; j++) pm[0] = row[j] > pm[0] ? row[j] : pm[0];
        float m = pm[0];
        for (int l = 1; l < SM_LANES; l++) m = pm[l] > m ? pm[l] : m;
        const __m512 vmm = _mm512_set1_ps(m);
        __m512 vs = _mm512_setzero_ps();
        for (int j = 0; j < nf; j += SM_LANES) {
            const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), vmm));
            _mm512_storeu_ps(row + j, e);
            vs = _mm512_add_ps(vs, e);
        }
        _mm512_storeu_ps(ps, vs);
        for (int j = nf; j < n; j++) ps[0] += (row[j] = rq_expf(row[j] - m));
        float s = 0.0f;
        for (int l = 0; l < SM_LANES; l++) s += ps[l];
        const float r = 1.0f / s;
        const __m512 vr = _mm512_set1_ps(r), vl = _mm512_set1_ps(L), mg = _mm512_set1_ps(MAGIC);
        for (int j = 0; j < n; j += SM_LANES) {
            const __mmask16 k = n - j >= SM_LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
            __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), vr);
            if (L > 0.0f) p = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(p, vl), mg), mg);
            _mm512_mask_storeu_ps(row + j, k, p);
        }
        mx[i] = m, inv[i] = r;
    }
}

static VNNI_TARGET void probs_vnni(int rows, int n, float *S, int ld, const float *mx, const float *inv, float *Pc,
                                   int ldp, float L) {
    const __m512 vl = _mm512_set1_ps(L), mg = _mm512_set1_ps(MAGIC);
    for (int i = 0; i < rows; i++) {
        float *row = S + (size_t)i * ld, *pc = Pc ? Pc + (size_t)i * ldp : NULL;
        const __m512 vm = _mm512_set1_ps(mx[i]), vr = _mm512_set1_ps(inv[i]);
        for (int j = 0; j < n; j += SM_LANES) {
            const __mmask16 k = n - j >= SM_LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
            const __m512 p = _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), vm)), vr);
            _mm512_mask_storeu_ps(row + j, k, p);
            if (pc) _mm512_mask_storeu_ps(pc + j, k, _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(p, vl), mg), mg));
        }
    }
}

static AVX2_TARGET void softmax_avx2(int rows, int n, float *S, int ld, float *mx, float *inv, float L) {
    const int nf = n / SM_LANES * SM_LANES;
    for (int i = 0; i < rows; i++) {
        float *row = S + (size_t)i * ld, pm[SM_LANES], ps[SM_LANES];
        __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
        for (int j = 0; j < nf; j += SM_LANES) {
            m0 = _mm256_max_ps(_mm256_loadu_ps(row + j), m0);
            m1 = _mm256_max_ps(_mm256_loadu_ps(row + j + 8), m1);
        }
        _mm256_storeu_ps(pm, m0), _mm256_storeu_ps(pm + 8, m1);
        for (int j = nf; j < n; j++) pm[0] = row[j] > pm[0] ? row[j] : pm[0];
        float m = pm[0];
        for (int l = 1; l < SM_LANES; l++) m = pm[l] > m ? pm[l] : m;
        const __m256 vmm = _mm256_set1_ps(m);
        __m256 s0 = _mm256_setzero_ps(), s1 = s0;
        for (int j = 0; j < nf; j += SM_LANES) {
            const __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vmm));
            const __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j + 8), vmm));
            _mm256_storeu_ps(row + j, e0), _mm256_storeu_ps(row + j + 8, e1);
            s0 = _mm256_add_ps(s0, e0), s1 = _mm256_add_ps(s1, e1);
        }
        _mm256_storeu_ps(ps, s0), _mm256_storeu_ps(ps + 8, s1);
        for (int j = nf; j < n; j++) ps[0] += (row[j] = rq_expf(row[j] - m));
        float s = 0.0f;
        for (int l = 0; l < SM_LANES; l++) s += ps[l];
        const float r = 1.0f / s;
        const __m256 vr = _mm256_set1_ps(r), vl = _mm256_set1_ps(L), mg = _mm256_set1_ps(MAGIC);
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 p = _mm256_mul_ps(_mm256_loadu_ps(row + j), vr);
            if (L > 0.0f) p = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(p, vl), mg), mg);
            _mm256_storeu_ps(row + j, p);
        }
        for (; j < n; j++) row[j] = L > 0.0f ? rint_small((row[j] * r) * L) : row[j] * r;
        mx[i] = m, inv[i] = r;
    }
}

static AVX2_TARGET void probs_avx2(int rows, int n, float *S, int ld, const float *mx, const float *inv, float *Pc,
                                   int ldp, float L) {
    const __m256 vl = _mm256_set1_ps(L), mg = _mm256_set1_ps(MAGIC);
    for (int i = 0; i < rows; i++) {
        float *row = S + (size_t)i * ld, *pc = Pc ? Pc + (size_t)i * ldp : NULL;
        const __m256 vm = _mm256_set1_ps(mx[i]), vr = _mm256_set1_ps(inv[i]);
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            const __m256 p = _mm256_mul_ps(exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm)), vr);
            _mm256_storeu_ps(row + j, p);
            if (pc) _mm256_storeu_ps(pc + j, _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(p, vl), mg), mg));
        }
        for (; j < n; j++) {
            row[j] = rq_expf(row[j] - mx[i]) * inv[i];
            if (pc) pc[j] = rint_small(row[j] * L);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Dispatch */

static rq_iattn_isa g_isa = RQ_IATTN_AUTO; /* AUTO = not chosen yet */

int rq_iattn_isa_supported(rq_iattn_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case RQ_IATTN_SCALAR: return 1;
    case RQ_IATTN_AVX2: return __builtin_cpu_supports("avx2");
    case RQ_IATTN_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    default: return 0;
    }
}

rq_iattn_isa rq_iattn_set_isa(rq_iattn_isa isa) {
    if (isa == RQ_IATTN_AUTO || !rq_iattn_isa_supported(isa)) {
        rq_iattn_isa want = isa == RQ_IATTN_AUTO || isa > RQ_IATTN_VNNI ? RQ_IATTN_VNNI : isa;
        isa = RQ_IATTN_SCALAR;
        for (rq_iattn_isa c = RQ_IATTN_VNNI; c > RQ_IATTN_SCALAR; c--)
            if (c <= want && rq_iattn_isa_supported(c)) {
                isa = c;
                break;
            }
    }
    g_isa = isa;
    return isa;
}

rq_iattn_isa rq_iattn_get_isa(void) {
    if (g_isa == RQ_IATTN_AUTO) rq_iattn_set_isa(RQ_IATTN_AUTO); /* benign race: same answer */
    return g_isa;
}

const char *rq_iattn_isa_name(rq_iattn_isa isa) {
    switch (isa) {
    case RQ_IATTN_AUTO: return "auto";
    case RQ_IATTN_SCALAR: return "scalar";
    case RQ_IATTN_AVX2: return "avx2";
    case RQ_IATTN_VNNI: return "avx512vnni";
    }
    return "unknown";
}

static rq_status run(const char *fn, int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk,
                     const ia_out *o, void *work, rq_err *err) {
    if (M < 0 || N < 0 || K < 1 || K > RQ_IATTN_MAX_K)
        return rq_err_set(err, RQ_EINVAL, "%s: bad shape M=%d N=%d K=%d (K must be in 1..%d)", fn, M, N, K,
                          RQ_IATTN_MAX_K);
    const int ldo = o->C ? o->ldc : o->lds;
    if (ldq < K || ldk < K || ldo < N)
        return rq_err_set(err, RQ_EINVAL, "%s: stride too small (ldq=%d, ldk=%d for K=%d; ldo=%d for N=%d)", fn,
                          ldq, ldk, K, ldo, N);
    if (M == 0 || N == 0) return RQ_OK;
    if (!q || !k || (!o->C && (!o->S || !o->rs || !o->cs)))
        return rq_err_set(err, RQ_EINVAL, "%s: NULL buffer", fn);
    const rq_iattn_isa isa = rq_iattn_get_isa();
    if (isa == RQ_IATTN_SCALAR) {
        run_scalar(M, N, K, q, ldq, k, ldk, o);
        return RQ_OK;
    }
    uint8_t *w = work, *own = NULL;
    if (!w) {
        own = w = aligned_alloc(64, round_up(rq_iattn_work_bytes(M, N, K), 64));
        if (!w) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory for the %dx%dx%d work buffer", fn, M, N, K);
    }
    if (isa == RQ_IATTN_VNNI) run_vnni(M, N, K, q, ldq, k, ldk, o, w);
    else run_avx2(M, N, K, q, ldq, k, ldk, o, w);
    free(own);
    return RQ_OK;
}

rq_status rq_iattn_qk(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk, int32_t *C,
                      int ldc, void *work, rq_err *err) {
    if (!C && M > 0 && N > 0) return rq_err_set(err, RQ_EINVAL, "iattn_qk: NULL output");
    ia_out o = {C, ldc, NULL, 0, NULL, NULL};
    return run("iattn_qk", M, N, K, q, ldq, k, ldk, &o, work, err);
}

rq_status rq_iattn_scores(int M, int N, int K, const int8_t *q, int ldq, const int8_t *k, int ldk,
                          const float *row_scale, const float *col_scale, float *S, int lds, void *work,
                          rq_err *err) {
    ia_out o = {NULL, 0, S, lds, row_scale, col_scale};
    return run("iattn_scores", M, N, K, q, ldq, k, ldk, &o, work, err);
}

void rq_iattn_softmax(int rows, int n, float *S, int ld, float *mx, float *inv, float L) {
    if (rows < 1 || n < 1 || !S || ld < n || !mx || !inv) return;
    switch (rq_iattn_get_isa()) {
    case RQ_IATTN_VNNI: softmax_vnni(rows, n, S, ld, mx, inv, L); break;
    case RQ_IATTN_AVX2: softmax_avx2(rows, n, S, ld, mx, inv, L); break;
    default: softmax_scalar(rows, n, S, ld, mx, inv, L);
    }
}

void rq_iattn_probs(int rows, int n, float *S, int ld, const float *mx, const float *inv, float *Pc, int ldp,
                    float L) {
    if (rows < 1 || n < 1 || !S || ld < n || !mx || !inv || (Pc && ldp < n)) return;
    switch (rq_iattn_get_isa()) {
    case RQ_IATTN_VNNI: probs_vnni(rows, n, S, ld, mx, inv, Pc, ldp, L); break;
    case RQ_IATTN_AVX2: probs_avx2(rows, n, S, ld, mx, inv, Pc, ldp, L); break;
    default: probs_scalar(rows, n, S, ld, mx, inv, Pc, ldp, L);
    }
}
