/* test_tgemm.c: ternary packing, the integer ternary x int8 GEMM kernels and
 * the integer linear layer.
 *
 * - trit5 / 2bit round trips for all 3^5 trit patterns and random matrices
 *   of odd sizes; conversions trit5 <-> 2bit; malformed bytes (trit5 > 242,
 *   non-zero padding, 2-bit code 3, bad padding) rejected with the position;
 * - every kernel the CPU runs (scalar, AVX2, AVX-512 VNNI) equals the plain
 *   int32 reference exactly, for many shapes including tails (M=1, N=1,
 *   K=4, K=1156, N%16, M%MR), strides, extreme codes (-128 / 127 with all
 *   +-1 weights, the int16 bound of the AVX2 path) and 1 or 2 threads; the
 *   float epilogue is bit-identical across ISAs and matches its formula;
 * - the integer linear equals (a) the fake-quant formula in double with the
 *   same codes, per element to a few float ulps, and (b) the qlinear
 *   semantics (rq_actq_rotate_quant + rq_ternary_rowwise of W H + float
 *   matmul) within 1e-5 relative, for a_bits 2,3,4,8 x robust/minmax x
 *   hadamard on/off on dims 384 and 1152; plus the packed constructor and
 *   argument errors. */
#include <float.h>
#include <string.h>

#include <omp.h>

#include "robuq/gemm.h"
#include "robuq/hadamard.h"
#include "robuq/quant.h"
#include "robuq/tgemm.h"
#include "robuq/tlinear.h"
#include "robuq/tpack.h"
#include "testutil.h"

static int rnd_int(uint64_t *s, int lo, int hi) { return lo + (int)(tu_next(s) % (uint64_t)(hi - lo + 1)); }
static void fill_ternary(uint64_t *s, int8_t *w, long n) {
    for (long i = 0; i < n; i++) w[i] = (int8_t)rnd_int(s, -1, 1);
}

/* ------------------------------------------------------------ packing */

static void test_trit5_all_patterns(void **state) {
    (void)state;
    /* 243 rows of 5 columns: row v is the pattern with byte value v */
    enum { R = 243, C = 5 };
    int8_t codes[R * C], back[R * C];
    uint8_t packed[R];
    for (int v = 0; v < R; v++) {
        int x = v;
        for (int i = 0; i < C; i++, x /= 3) codes[v * C + i] = (int8_t)(x % 3 - 1);
    }
    assert_int_equal(rq_trit5_row_bytes(C), 1);
    assert_int_equal(rq_trit5_bytes(R, C), R);
    assert_int_equal(rq_trit5_pack(codes, R, C, packed, NULL), RQ_OK);
    for (int v = 0; v < R; v++) assert_int_equal(packed[v], v);
    memset(back, 9, sizeof back);
    assert_int_equal(rq_trit5_unpack(packed, R, C, back, NULL), RQ_OK);
    assert_memory_equal(codes, back, sizeof codes);
    /* the same patterns through the 2bit layout */
    uint8_t t2[((R + 15) / 16) * 64];
    assert_int_equal(rq_t2_bytes(R, C), sizeof t2);
    assert_int_equal(rq_trit5_to_t2(packed, R, C, t2, NULL), RQ_OK);
    memset(back, 9, sizeof back);
    assert_int_equal(rq_t2_unpack(t2, R, C, back, NULL), RQ_OK);
    assert_memory_equal(codes, back, sizeof codes);
    uint8_t p2[R];
    assert_int_equal(rq_t2_to_trit5(t2, R, C, p2, NULL), RQ_OK);
    assert_memory_equal(packed, p2, R);
}

static void test_pack_random_roundtrip(void **state) {
    (void)state;
    uint64_t seed = 11;
    const int shapes[][2] = {{1, 1}, {1, 4}, {3, 7}, {16, 16}, {17, 33}, {5, 1156}, {33, 384}, {40, 81}, {2, 5}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int R = shapes[t][0], C = shapes[t][1];
        int8_t *codes = malloc((size_t)R * C), *back = malloc((size_t)R * C);
        uint8_t *t5 = malloc(rq_trit5_bytes(R, C)), *t5b = malloc(rq_trit5_bytes(R, C));
        uint8_t *t2 = malloc(rq_t2_bytes(R, C)), *t2b = malloc(rq_t2_bytes(R, C));
        assert_true(codes && back && t5 && t5b && t2 && t2b);
        fill_ternary(&seed, codes, (long)R * C);
        assert_int_equal(rq_trit5_pack(codes, R, C, t5, NULL), RQ_OK);
        assert_int_equal(rq_trit5_check(t5, R, C, NULL), RQ_OK);
        assert_int_equal(rq_trit5_unpack(t5, R, C, back, NULL), RQ_OK);
        assert_memory_equal(codes, back, (size_t)R * C);
        assert_int_equal(rq_t2_pack(codes, R, C, t2, NULL), RQ_OK);
        assert_int_equal(rq_t2_check(t2, R, C, NULL), RQ_OK);
        memset(back, 9, (size_t)R * C);
        assert_int_equal(rq_t2_unpack(t2, R, C, back, NULL), RQ_OK);
        assert_memory_equal(codes, back, (size_t)R * C);
        /* every element lands where the header says */
        const int Q = (C + 15) / 16;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                size_t at = ((size_t)(r / 16) * Q + c / 16) * 64 + 4 * (r % 16) + c % 4;
                int u = (t2[at] >> (2 * ((c % 16) / 4))) & 3;
                assert_int_equal(u, codes[(size_t)r * C + c] + 1);
            }
        /* conversions agree with packing the codes directly */
        assert_int_equal(rq_trit5_to_t2(t5, R, C, t2b, NULL), RQ_OK);
        assert_memory_equal(t2, t2b, rq_t2_bytes(R, C));
        assert_int_equal(rq_t2_to_trit5(t2, R, C, t5b, NULL), RQ_OK);
        assert_memory_equal(t5, t5b, rq_trit5_bytes(R, C));
        free(codes), free(back), free(t5), free(t5b), free(t2), free(t2b);
    }
}

static void test_pack_malformed(void **state) {
    (void)state;
    rq_err e = {0};
    int8_t codes[3 * 7] = {0}, out[3 * 7];
    uint8_t t5[3 * 2];
    assert_int_equal(rq_trit5_pack(codes, 3, 7, t5, NULL), RQ_OK);
    /* byte > 242 */
    t5[3] = 243;
    assert_int_equal(rq_trit5_unpack(t5, 3, 7, out, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "row 1 byte 1"));
    assert_non_null(strstr(e.msg, "243"));
    /* padding trit of the last byte (7 columns: byte 1 uses trits 0,1) not code 0 */
    assert_int_equal(rq_trit5_pack(codes, 3, 7, t5, NULL), RQ_OK);
    t5[5] = (uint8_t)(1 + 3 * 1 + 9 * 2 + 27 * 1 + 81 * 1); /* trit 2 = +1 */
    rq_err_clear(&e);
    assert_int_equal(rq_trit5_check(t5, 3, 7, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "row 2 byte 1"));
    uint8_t t2buf[64 * 8];
    assert_int_equal(rq_trit5_to_t2(t5, 3, 7, t2buf, NULL), RQ_EFORMAT);
    /* bad codes on the packing side */
    codes[4] = 2;
    rq_err_clear(&e);
    assert_int_equal(rq_trit5_pack(codes, 3, 7, t5, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "row 0 col 4"));
    assert_int_equal(rq_t2_pack(codes, 3, 7, t2buf, NULL), RQ_EINVAL);
    codes[4] = 0;
    /* 2bit: code 3 inside the matrix (row 20, col 37 of a 33 x 40 matrix) */
    enum { R = 33, C = 40 };
    int8_t big[R * C];
    uint64_t seed = 5;
    fill_ternary(&seed, big, R * C);
    uint8_t t2[rq_t2_bytes(R, C) > 0 ? 3 * 3 * 64 : 1];
    assert_int_equal(rq_t2_pack(big, R, C, t2, NULL), RQ_OK);
    size_t at = ((size_t)(20 / 16) * 3 + 37 / 16) * 64 + 4 * (20 % 16) + 37 % 4;
    int sh = 2 * ((37 % 16) / 4);
    uint8_t saved = t2[at];
    t2[at] |= (uint8_t)(3u << sh);
    rq_err_clear(&e);
    assert_int_equal(rq_t2_check(t2, R, C, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "row 20 col 37"));
    assert_non_null(strstr(e.msg, "code 3"));
    t2[at] = saved;
    assert_int_equal(rq_t2_check(t2, R, C, NULL), RQ_OK);
    /* 2bit: padding (row 40 > R, or col 45 > C) must be code 0 */
    at = ((size_t)(40 / 16) * 3 + 5 / 16) * 64 + 4 * (40 % 16) + 5 % 4;
    t2[at] ^= (uint8_t)(1u << 2 * ((5 % 16) / 4)); /* u = 1 -> 0 */
    rq_err_clear(&e);
    assert_int_equal(rq_t2_check(t2, R, C, &e), RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "padding at row 40 col 5"));
    int8_t back[R * C];
    assert_int_equal(rq_t2_unpack(t2, R, C, back, NULL), RQ_EFORMAT);
    uint8_t t5big[R * 8];
    assert_int_equal(rq_t2_to_trit5(t2, R, C, t5big, NULL), RQ_EFORMAT);
    /* shapes and NULLs */
    assert_int_equal(rq_t2_pack(big, 0, C, t2, NULL), RQ_EINVAL);
    assert_int_equal(rq_t2_pack(NULL, R, C, t2, NULL), RQ_EINVAL);
    assert_int_equal(rq_trit5_unpack(t5, 3, 0, out, NULL), RQ_EINVAL);
    assert_int_equal(rq_t2_bytes(0, 5), 0);
    rq_tpack_format f;
    assert_int_equal(rq_tpack_format_parse("trit5", &f, NULL), RQ_OK);
    assert_int_equal(f, RQ_TPACK_TRIT5);
    assert_int_equal(rq_tpack_format_parse("2bit", &f, NULL), RQ_OK);
    assert_int_equal(f, RQ_TPACK_2BIT);
    assert_int_equal(rq_tpack_format_parse("3bit", &f, NULL), RQ_EINVAL);
}

/* ------------------------------------------------------------ kernels */

static const rq_tgemm_isa ISAS[] = {RQ_TGEMM_SCALAR, RQ_TGEMM_AVX2, RQ_TGEMM_VNNI, RQ_TGEMM_AMX};

/* Runs one shape on every ISA the CPU has against rq_tgemm_ref, int32 and
 * float outputs. amode: 0 random codes, 1 all -128, 2 all 127, 3 random in
 * {-128,127}; wmode: 0 random ternary, 1 all +1, 2 all -1, 3 random +-1. */
static void check_shape(int M, int N, int K, int lda, int ldc, int amode, int wmode, uint64_t *seed) {
    int8_t *A = malloc((size_t)M * lda + 1), *W = malloc((size_t)N * K + 1);
    uint8_t *W2 = malloc(rq_t2_bytes(N, K));
    int32_t *R = malloc(((size_t)M * ldc + 1) * sizeof(int32_t)), *C = malloc(((size_t)M * ldc + 1) * sizeof(int32_t));
    float *rs = malloc((M + 1) * sizeof(float)), *cs = malloc((N + 1) * sizeof(float)), *b = malloc((N + 1) * sizeof(float));
    float *Y = malloc(((size_t)M * ldc + 1) * sizeof(float)), *Y0 = malloc(((size_t)M * ldc + 1) * sizeof(float));
    assert_true(A && W && W2 && R && C && rs && cs && b && Y && Y0);
    for (long i = 0; i < (long)M * lda; i++) {
        int v = amode == 0 ? rnd_int(seed, -128, 127) : amode == 1 ? -128 : amode == 2 ? 127
                                                                           : (tu_next(seed) & 1 ? 127 : -128);
        A[i] = (int8_t)v;
    }
    for (long i = 0; i < (long)N * K; i++)
        W[i] = (int8_t)(wmode == 0 ? rnd_int(seed, -1, 1) : wmode == 1 ? 1 : wmode == 2 ? -1 : (tu_next(seed) & 1 ? 1 : -1));
    for (int i = 0; i < M; i++) rs[i] = tu_uniform(seed, 0.001f, 0.1f);
    for (int i = 0; i < N; i++) cs[i] = tu_uniform(seed, 0.01f, 1.0f), b[i] = tu_uniform(seed, -1.0f, 1.0f);
    assert_int_equal(rq_t2_pack(W, N, K, W2, NULL), RQ_OK);
    assert_int_equal(rq_tgemm_ref(M, N, K, A, lda, W, K, R, ldc, NULL), RQ_OK);
    for (size_t t = 0; t < sizeof ISAS / sizeof ISAS[0]; t++) {
        if (!rq_tgemm_isa_supported(ISAS[t])) continue;
        assert_int_equal(rq_tgemm_set_isa(ISAS[t]), ISAS[t]);
        for (long i = 0; i < (long)M * ldc; i++) C[i] = 0x7EADBEEF;
        rq_err e = {0};
        assert_int_equal(rq_tgemm(M, N, K, A, lda, W2, C, ldc, &e), RQ_OK);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < ldc; n++) {
                int32_t want = n < N ? R[(size_t)m * ldc + n] : 0x7EADBEEF;
                if (C[(size_t)m * ldc + n] != want)
                    fail_msg("%s M=%d N=%d K=%d lda=%d ldc=%d modes %d/%d: C[%d][%d] = %d, expected %d",
                             rq_tgemm_isa_name(ISAS[t]), M, N, K, lda, ldc, amode, wmode, m, n,
                             C[(size_t)m * ldc + n], want);
            }
        /* float epilogue (with and without bias): the formula, bit for bit */
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            for (long i = 0; i < (long)M * ldc; i++) Y[i] = -777.0f;
            assert_int_equal(rq_tgemm_scaled(M, N, K, A, lda, W2, rs, cs, with_bias ? b : NULL, Y, ldc, NULL), RQ_OK);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < ldc; n++) {
                    float want = -777.0f;
                    if (n < N) {
                        volatile float y = (float)R[(size_t)m * ldc + n] * rs[m];
                        y = y * cs[n];
                        if (with_bias) y = y + b[n];
                        want = y;
                    }
                    if (memcmp(&Y[(size_t)m * ldc + n], &want, sizeof want))
                        fail_msg("%s scaled M=%d N=%d K=%d: Y[%d][%d] = %.9g, expected %.9g", rq_tgemm_isa_name(ISAS[t]),
                                 M, N, K, m, n, Y[(size_t)m * ldc + n], want);
                }
        }
    }
    rq_tgemm_set_isa(RQ_TGEMM_AUTO);
    free(A), free(W), free(W2), free(R), free(C), free(rs), free(cs), free(b), free(Y), free(Y0);
}

static void test_tgemm_shapes(void **state) {
    (void)state;
    uint64_t seed = 42;
    const int shapes[][3] = {
        {1, 1, 4},      {1, 1, 1156},  {1, 17, 4},    {3, 1, 8},     {7, 5, 12},     {8, 48, 16},
        {9, 49, 20},    {13, 95, 36},  {17, 33, 64},  {1, 300, 384}, {25, 7, 1156},  {6, 16, 1152},
        {31, 100, 68},  {64, 64, 256}, {2, 2304, 384}, {40, 130, 1540}, {5, 3, 8192}, {97, 211, 388},
        /* K % 64 == 0 (the AMX path): row / panel tails, several K blocks, granules per block uneven */
        {33, 17, 64},   {45, 48, 384}, {70, 100, 1024}, {100, 50, 1536}, {32, 32, 4608}, {20, 40, 832},
        {35, 64, 2368},
    };
    for (int th = 1; th <= 2; th++) {
        omp_set_num_threads(th);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            check_shape(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][2], shapes[s][1], 0, 0, &seed);
        /* strides larger than the matrix */
        check_shape(10, 21, 40, 45, 29, 0, 0, &seed);
        /* big enough to go parallel and cross MB / NB blocks */
        check_shape(300, 200, 1152, 1152, 200, 0, 0, &seed);
        check_shape(1200, 80, 384, 384, 80, 0, 0, &seed);
    }
    omp_set_num_threads(2);
}

static void test_tgemm_extremes(void **state) {
    (void)state;
    uint64_t seed = 7;
    /* |C| at its maximum: K*128 with all weights +-1; K = 256 and K = 260
     * hit the int16 pair-sum bound of the AVX2 path exactly (64 quads). */
    const int Ks[] = {4, 256, 260, 1156, 8192};
    for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++)
        for (int am = 1; am <= 3; am++)
            for (int wm = 1; wm <= 3; wm++) check_shape(9, 35, Ks[i], Ks[i], 35, am, wm, &seed);
    check_shape(20, 70, 1156, 1156, 70, 0, 3, &seed);
}

static void test_tgemm_errors(void **state) {
    (void)state;
    int8_t A[64] = {0};
    uint8_t W[64];
    int32_t C[64];
    memset(W, 0x55, sizeof W);
    rq_err e = {0};
    assert_int_equal(rq_tgemm(1, 1, 6, A, 6, W, C, 1, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "K=6"));
    assert_int_equal(rq_tgemm(1, 1, 0, A, 4, W, C, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tgemm(1, 1, 8196, A, 8196, W, C, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tgemm(-1, 1, 4, A, 4, W, C, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tgemm(1, 2, 4, A, 4, W, C, 1, NULL), RQ_EINVAL); /* ldc < N */
    assert_int_equal(rq_tgemm(1, 1, 8, A, 4, W, C, 1, NULL), RQ_EINVAL); /* lda < K */
    assert_int_equal(rq_tgemm(1, 1, 4, NULL, 4, W, C, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tgemm_scaled(1, 1, 4, A, 4, W, NULL, NULL, NULL, (float *)C, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tgemm(0, 5, 4, NULL, 4, NULL, NULL, 5, NULL), RQ_OK); /* empty */
    /* forcing an ISA never yields one the CPU lacks */
    for (size_t t = 0; t < sizeof ISAS / sizeof ISAS[0]; t++) {
        rq_tgemm_isa got = rq_tgemm_set_isa(ISAS[t]);
        assert_true(rq_tgemm_isa_supported(got));
        assert_true(got <= ISAS[t]);
    }
    rq_tgemm_set_isa(RQ_TGEMM_AUTO);
}

/* ------------------------------------------------------- integer linear */

/* Heavy-tailed-ish tokens: Gaussian-like values plus a few outlier channels,
 * the case the Hadamard rotation is for. */
static void fill_tokens(uint64_t *s, float *x, long M, int in) {
    for (long m = 0; m < M; m++)
        for (int k = 0; k < in; k++) {
            float v = tu_uniform(s, -1.0f, 1.0f) + tu_uniform(s, -1.0f, 1.0f) + tu_uniform(s, -1.0f, 1.0f);
            if (k % 97 == 5) v *= 20.0f;
            x[m * in + k] = v;
        }
}

/* One configuration: the integer linear against (a) the formula in double
 * with independently computed codes and (b) the fake-quant float path. */
static void check_linear(int out, int in, long M, int bits, int method, int had, uint64_t *seed) {
    const size_t nx = (size_t)M * in, nw = (size_t)out * in;
    float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float)), *b = malloc(out * sizeof(float));
    float *y = malloc((size_t)M * out * sizeof(float)), *yf = malloc((size_t)M * out * sizeof(float));
    float *xr = malloc(nx * sizeof(float)), *wr = malloc(nw * sizeof(float)), *unit = malloc(M * sizeof(float));
    float *gam = malloc(out * sizeof(float));
    int8_t *ac = malloc(nx), *wc = malloc(nw), *wc2 = malloc(nw);
    assert_true(x && w && b && y && yf && xr && wr && unit && gam && ac && wc && wc2);
    fill_tokens(seed, x, M, in);
    tu_fill(seed, w, (long)nw, -0.05f, 0.05f);
    tu_fill(seed, b, out, -0.5f, 0.5f);

    rq_tlinear L;
    rq_err e = {0};
    if (rq_tlinear_init_float(&L, w, b, out, in, bits, method, had, &e)) fail_msg("init: %s", e.msg);
    if (rq_tlinear_forward(&L, x, y, M, &e)) fail_msg("forward: %s", e.msg);

    /* independent codes: whole-matrix rotation, then the encoders */
    rq_hadamard h;
    if (had) assert_int_equal(rq_hadamard_plan_init(&h, in, NULL), RQ_OK);
    memcpy(xr, x, nx * sizeof(float));
    memcpy(wr, w, nw * sizeof(float));
    if (had) rq_hadamard_apply(&h, xr, M), rq_hadamard_apply(&h, wr, out);
    rq_actq_cfg cfg = {bits, method};
    assert_int_equal(rq_actq_encode(&cfg, xr, ac, unit, M, in, NULL), RQ_OK);
    assert_int_equal(rq_ternary_encode(wr, wc, gam, out, in, NULL), RQ_OK);
    assert_int_equal(rq_tlinear_codes(&L, wc2, NULL), RQ_OK);
    assert_memory_equal(wc, wc2, nw);
    assert_memory_equal(gam, L.gamma, out * sizeof(float));

    /* (a) the formula in double: |error| within 3 float roundings */
    for (long m = 0; m < M; m++)
        for (int n = 0; n < out; n++) {
            long c = 0;
            for (int k = 0; k < in; k++) c += (long)ac[m * in + k] * wc[(size_t)n * in + k];
            double cug = (double)c * unit[m] * gam[n], ref = cug + b[n];
            double tol = 2.0 * FLT_EPSILON * (fabs(cug) + fabs(b[n])) + 1e-30;
            double got = y[m * out + n];
            if (!(fabs(got - ref) <= tol))
                fail_msg("A%d %s had=%d in=%d: y[%ld][%d] = %.9g, double formula %.9g", bits,
                         rq_actq_method_name(method), had, in, m, n, got, ref);
        }

    /* (b) qlinear semantics: rq_actq_rotate_quant + ternary(W H) + float matmul */
    float *xq = xr, *wq = wr;
    if (had) assert_int_equal(rq_actq_rotate_quant(&h, x, xq, NULL, M, in, &cfg, NULL), RQ_OK);
    else assert_int_equal(rq_actq_quantize(&cfg, x, xq, NULL, M, in, NULL), RQ_OK);
    memcpy(wr, w, nw * sizeof(float));
    if (had) rq_hadamard_apply(&h, wr, out);
    rq_ternary_rowwise(wr, wq, NULL, out, in, NULL);
    /* codes * unit is the fake-quant activation bit for bit */
    for (size_t i = 0; i < nx; i++) assert_true((float)ac[i] * unit[i / in] == xq[i]);
    rq_sgemm(0, 1, (int)M, out, in, 1.0f, xq, in, wq, in, 0.0f, yf, out);
    for (long m = 0; m < M; m++)
        for (int n = 0; n < out; n++) yf[m * out + n] += b[n];
    double rel = tu_rel_err(y, yf, M * out, 1e-30);
    if (!(rel <= 1e-5))
        fail_msg("A%d %s had=%d in=%d: relative error %.3g vs the fake-quant linear", bits, rq_actq_method_name(method),
                 had, in, rel);

    rq_tlinear_free(&L);
    free(x), free(w), free(b), free(y), free(yf), free(xr), free(wr), free(unit), free(gam), free(ac), free(wc),
        free(wc2);
}

static void test_tlinear_matches_fakequant(void **state) {
    (void)state;
    uint64_t seed = 2024;
    const int ins[] = {384, 1152}, bitss[] = {2, 3, 4, 8};
    for (int d = 0; d < 2; d++)
        for (int bi = 0; bi < 4; bi++)
            for (int method = RQ_ACTQ_ROBUST; method <= RQ_ACTQ_MINMAX; method++)
                for (int had = 0; had < 2; had++) check_linear(50, ins[d], 19, bitss[bi], method, had, &seed);
    /* more tokens than one chunk per thread (parallel fused quantizer), M=1,
     * 1 bit, and a tiny layer */
    check_linear(40, 384, 301, 2, RQ_ACTQ_ROBUST, 1, &seed);
    check_linear(33, 1152, 1, 2, RQ_ACTQ_MINMAX, 1, &seed);
    check_linear(21, 1152, 7, 1, RQ_ACTQ_ROBUST, 1, &seed);
    check_linear(5, 16, 9, 4, RQ_ACTQ_ROBUST, 1, &seed);
}

static void test_tlinear_packed_and_isas(void **state) {
    (void)state;
    uint64_t seed = 99;
    const int out = 70, in = 384;
    const long M = 45;
    float *w = malloc((size_t)out * in * sizeof(float)), *b = malloc(out * sizeof(float));
    float *x = malloc((size_t)M * in * sizeof(float)), *y0 = malloc((size_t)M * out * sizeof(float));
    float *y1 = malloc((size_t)M * out * sizeof(float));
    uint8_t *t5 = malloc(rq_trit5_bytes(out, in));
    assert_true(w && b && x && y0 && y1 && t5);
    tu_fill(&seed, w, (long)out * in, -1.0f, 1.0f);
    tu_fill(&seed, b, out, -1.0f, 1.0f);
    fill_tokens(&seed, x, M, in);
    rq_tlinear L, P;
    rq_err e = {0};
    assert_int_equal(rq_tlinear_init_float(&L, w, b, out, in, 2, RQ_ACTQ_ROBUST, 1, &e), RQ_OK);
    assert_int_equal(rq_tlinear_forward(&L, x, y0, M, NULL), RQ_OK);
    /* every ISA: the same floats */
    for (size_t t = 0; t < sizeof ISAS / sizeof ISAS[0]; t++) {
        if (!rq_tgemm_isa_supported(ISAS[t])) continue;
        rq_tgemm_set_isa(ISAS[t]);
        assert_int_equal(rq_tlinear_forward(&L, x, y1, M, NULL), RQ_OK);
        assert_memory_equal(y0, y1, (size_t)M * out * sizeof(float));
    }
    rq_tgemm_set_isa(RQ_TGEMM_AUTO);
    /* caller workspace, const layer */
    size_t wsb = rq_tlinear_ws_bytes(&L, M);
    void *ws = rq_malloc(wsb);
    assert_int_equal(rq_tlinear_forward_ws(&L, x, y1, M, ws, wsb, NULL), RQ_OK);
    assert_memory_equal(y0, y1, (size_t)M * out * sizeof(float));
    assert_int_equal(rq_tlinear_forward_ws(&L, x, y1, M, ws, wsb - 1, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "workspace"));
    rq_free(ws);
    /* from trit5 and from 2bit bytes: identical outputs */
    assert_int_equal(rq_tlinear_trit5(&L, t5, NULL), RQ_OK);
    assert_int_equal(rq_tlinear_init_packed(&P, out, in, RQ_TPACK_TRIT5, t5, rq_trit5_bytes(out, in), L.gamma, L.bias,
                                            2, RQ_ACTQ_ROBUST, 1, &e),
                     RQ_OK);
    assert_int_equal(rq_tlinear_forward(&P, x, y1, M, NULL), RQ_OK);
    assert_memory_equal(y0, y1, (size_t)M * out * sizeof(float));
    rq_tlinear_free(&P);
    assert_int_equal(rq_tlinear_init_packed(&P, out, in, RQ_TPACK_2BIT, L.w, rq_t2_bytes(out, in), L.gamma, L.bias, 2,
                                            RQ_ACTQ_ROBUST, 1, &e),
                     RQ_OK);
    assert_int_equal(rq_tlinear_forward(&P, x, y1, M, NULL), RQ_OK);
    assert_memory_equal(y0, y1, (size_t)M * out * sizeof(float));
    rq_tlinear_free(&P);
    rq_tlinear_free(&P); /* twice is fine */
    /* special rows: all-zero token -> bias, NaN token -> NaN row */
    for (int k = 0; k < in; k++) x[k] = 0.0f, x[in + k] = 1.0f;
    x[in + 7] = NAN;
    assert_int_equal(rq_tlinear_forward(&L, x, y1, 2, NULL), RQ_OK);
    for (int n = 0; n < out; n++) {
        assert_true(y1[n] == b[n]);
        assert_true(isnan(y1[out + n]));
    }
    /* errors name what is wrong */
    rq_err_clear(&e);
    t5[3] = 250;
    assert_int_equal(rq_tlinear_init_packed(&P, out, in, RQ_TPACK_TRIT5, t5, rq_trit5_bytes(out, in), L.gamma, NULL, 2,
                                            RQ_ACTQ_ROBUST, 1, &e),
                     RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "row 0 byte 3"));
    assert_null(P.w);
    rq_err_clear(&e);
    assert_int_equal(rq_tlinear_init_packed(&P, out, in, RQ_TPACK_2BIT, L.w, rq_t2_bytes(out, in) - 1, L.gamma, NULL, 2,
                                            RQ_ACTQ_ROBUST, 1, &e),
                     RQ_EFORMAT);
    assert_non_null(strstr(e.msg, "bytes"));
    float g0 = L.gamma[5];
    L.gamma[5] = NAN;
    rq_err_clear(&e);
    assert_int_equal(rq_tlinear_init_packed(&P, out, in, RQ_TPACK_2BIT, L.w, rq_t2_bytes(out, in), L.gamma, NULL, 2,
                                            RQ_ACTQ_ROBUST, 1, &e),
                     RQ_EINVAL);
    assert_non_null(strstr(e.msg, "gamma[5]"));
    L.gamma[5] = g0;
    rq_err_clear(&e);
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, 20, 2, RQ_ACTQ_ROBUST, 1, &e), RQ_EINVAL); /* no H_20 */
    assert_non_null(strstr(e.msg, "in=20"));
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, 20, 2, RQ_ACTQ_ROBUST, 0, NULL), RQ_OK); /* fine without */
    rq_tlinear_free(&P);
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, 18, 2, RQ_ACTQ_ROBUST, 0, NULL), RQ_EINVAL); /* 18 % 4 */
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, in, 0, RQ_ACTQ_ROBUST, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, in, 9, RQ_ACTQ_ROBUST, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, in, 2, 7, 1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tlinear_init_float(&P, NULL, NULL, out, in, 2, RQ_ACTQ_ROBUST, 1, NULL), RQ_EINVAL);
    w[3] = INFINITY;
    rq_err_clear(&e);
    assert_int_equal(rq_tlinear_init_float(&P, w, NULL, out, in, 2, RQ_ACTQ_ROBUST, 1, &e), RQ_ENUM);
    assert_non_null(strstr(e.msg, "row 0"));
    assert_null(P.w);
    assert_int_equal(rq_tlinear_forward(&L, x, y1, -1, NULL), RQ_EINVAL);
    assert_int_equal(rq_tlinear_forward(&L, NULL, y1, 3, NULL), RQ_EINVAL);
    assert_int_equal(rq_tlinear_forward(&L, x, y1, 0, NULL), RQ_OK);
    assert_int_equal(rq_tlinear_forward(NULL, x, y1, 3, NULL), RQ_EINVAL);
    rq_tlinear_free(&L);
    free(w), free(b), free(x), free(y0), free(y1), free(t5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trit5_all_patterns), cmocka_unit_test(test_pack_random_roundtrip),
        cmocka_unit_test(test_pack_malformed),     cmocka_unit_test(test_tgemm_shapes),
        cmocka_unit_test(test_tgemm_extremes),     cmocka_unit_test(test_tgemm_errors),
        cmocka_unit_test(test_tlinear_matches_fakequant), cmocka_unit_test(test_tlinear_packed_and_isas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
