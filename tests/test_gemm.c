/* test_gemm.c: every GEMM code path against the double-accumulating reference.
 *
 * For each instruction set the CPU can run (scalar, AVX2, AVX-512) and all
 * four transpose combinations: random odd sizes, strided lda/ldb/ldc,
 * alpha/beta variations, beta = 0 over NaN-filled C (must not be read), and
 * sizes that cross every cache block (MB/KC/NB). Each element must match
 * within 1e-5*sqrt(K) times sum_k |alpha a b| + |beta c|; the padding between
 * N and ldc must be left untouched. A dropped k step, a misplaced element or
 * a stale accumulator is orders of magnitude above that tolerance. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "robuq/common.h"
#include "robuq/gemm.h"

static const float SENTINEL = 12345.0f; /* marks C padding that must survive */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rng_int(uint64_t *s, int lo, int hi) { return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1)); }
static float rng_float(uint64_t *s) { return (float)((rng_next(s) >> 40) * (2.0 / 16777216.0) - 1.0); }

typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int, float,
                        float *, int);

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
} gcase;

/* Runs fn on one case with fresh random data and compares it element-wise
 * with rq_sgemm_ref. Returns the number of bad elements (the first one is
 * printed). */
static long check_case(gemm_fn fn, const gcase *c, uint64_t *seed) {
    int arows = c->ta ? c->K : c->M, brows = c->tb ? c->N : c->K;
    size_t na = (size_t)arows * c->lda + 1, nb = (size_t)brows * c->ldb + 1;
    size_t nc = (size_t)c->M * c->ldc + 1;
    float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float));
    float *C = malloc(nc * sizeof(float)), *R = malloc(nc * sizeof(float));
    assert_true(A && B && C && R);
    for (size_t i = 0; i < na; i++) A[i] = rng_float(seed);
    for (size_t i = 0; i < nb; i++) B[i] = rng_float(seed);
    for (int i = 0; i < c->M; i++)
        for (int j = 0; j < c->ldc; j++)
            C[(size_t)i * c->ldc + j] = j >= c->N ? SENTINEL : c->beta == 0.0f ? NAN : rng_float(seed);
    memcpy(R, C, nc * sizeof(float));

    rq_sgemm_ref(c->ta, c->tb, c->M, c->N, c->K, c->alpha, A, c->lda, B, c->ldb, c->beta, R, c->ldc);
    fn(c->ta, c->tb, c->M, c->N, c->K, c->alpha, A, c->lda, B, c->ldb, c->beta, C, c->ldc);

    long bad = 0;
    double tol = 1e-5 * sqrt((double)c->K + 1.0);
    for (int i = 0; i < c->M; i++) {
        for (int j = 0; j < c->ldc; j++) {
            size_t at = (size_t)i * c->ldc + j;
            double err, lim;
            if (j >= c->N) { /* padding between N and ldc must be untouched */
                err = C[at] == SENTINEL ? 0.0 : INFINITY;
                lim = 0.0;
            } else {
                /* error scale: sum_k |alpha a b| + |beta c_old| (|c_old| <= 1) */
                double mag = 0.0;
                for (int k = 0; k < c->K; k++) {
                    float a = c->ta ? A[(size_t)k * c->lda + i] : A[(size_t)i * c->lda + k];
                    float b = c->tb ? B[(size_t)j * c->ldb + k] : B[(size_t)k * c->ldb + j];
                    mag += fabs((double)a * b);
                }
                mag = fabs(c->alpha) * mag + fabs(c->beta) + 1e-30;
                err = fabs((double)C[at] - R[at]);
                lim = tol * mag;
            }
            if (!(err <= lim)) { /* also catches NaN */
                if (bad++ == 0)
                    print_message("mismatch at (%d,%d): got %g want %g (tol %g) isa=%s ta=%d tb=%d M=%d N=%d "
                                  "K=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g\n",
                                  i, j, C[at], j < c->N ? R[at] : SENTINEL, lim,
                                  rq_gemm_isa_name(rq_gemm_get_isa()), c->ta, c->tb, c->M, c->N, c->K,
                                  c->lda, c->ldb, c->ldc, c->alpha, c->beta);
            }
        }
    }
    free(A);
    free(B);
    free(C);
    free(R);
    return bad;
}

static void run_case(gemm_fn fn, const gcase *c, uint64_t *seed) { assert_int_equal(check_case(fn, c, seed), 0); }

static gcase make_case(uint64_t *s, int ta, int tb, int M, int N, int K) {
    static const float alphas[] = {1.0f, -0.5f, 2.25f, 1.0f};
    static const float betas[] = {0.0f, 1.0f, 0.0f, -0.75f};
    gcase c = {ta, tb, M, N, K, 0, 0, 0, alphas[rng_int(s, 0, 3)], betas[rng_int(s, 0, 3)]};
    int strided = rng_int(s, 0, 1); /* half the cases use padded rows */
    c.lda = (ta ? M : K) + (strided ? rng_int(s, 1, 7) : 0);
    c.ldb = (tb ? K : N) + (strided ? rng_int(s, 1, 7) : 0);
    c.ldc = N + (strided ? rng_int(s, 1, 7) : 0);
    return c;
}

/* Random cases for one entry point on whatever ISA is selected. */
static void random_cases(gemm_fn fn, uint64_t seed, int n_small, int n_mid) {
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        for (int r = 0; r < n_small; r++) {
            gcase c = make_case(&seed, ta, tb, rng_int(&seed, 1, 70), rng_int(&seed, 1, 70),
                                rng_int(&seed, 1, 70));
            run_case(fn, &c, &seed);
        }
        for (int r = 0; r < n_mid; r++) {
            gcase c = make_case(&seed, ta, tb, rng_int(&seed, 190, 300), rng_int(&seed, 190, 300),
                                rng_int(&seed, 190, 300));
            run_case(fn, &c, &seed);
        }
    }
}

/* Shapes around the micro-tile sizes (4x8, 6x16, 14x32) and degenerate ones. */
static void edge_cases(gemm_fn fn, uint64_t seed) {
    static const int sizes[] = {1, 2, 3, 5, 6, 7, 8, 13, 14, 15, 16, 17, 28, 31, 32, 33, 47, 48, 49};
    int ns = (int)(sizeof sizes / sizeof sizes[0]);
    for (int t = 0; t < 4; t++)
        for (int a = 0; a < ns; a += 2)
            for (int b = 0; b < ns; b += 3) {
                gcase c = make_case(&seed, t & 1, t >> 1, sizes[a], sizes[b], sizes[(a + b) % ns]);
                run_case(fn, &c, &seed);
            }
    for (int t = 0; t < 4; t++) { /* 1 x N, M x 1, K = 1 */
        gcase c1 = make_case(&seed, t & 1, t >> 1, 1, 77, 45);
        gcase c2 = make_case(&seed, t & 1, t >> 1, 77, 1, 45);
        gcase c3 = make_case(&seed, t & 1, t >> 1, 33, 35, 1);
        run_case(fn, &c1, &seed);
        run_case(fn, &c2, &seed);
        run_case(fn, &c3, &seed);
    }
}

/* Sets the ISA; returns 0 (and says so) if this CPU cannot run it. */
static int use_isa(rq_gemm_isa isa) {
    rq_gemm_isa got = rq_gemm_set_isa(isa);
    if (got != isa) {
        printf("  [ skip ] %s not supported on this CPU (got %s)\n", rq_gemm_isa_name(isa), rq_gemm_isa_name(got));
        return 0;
    }
    return 1;
}

static void run_isa(rq_gemm_isa isa) {
    if (!use_isa(isa)) {
        skip();
        return;
    }
    uint64_t seed = 1000 + (uint64_t)isa;
    random_cases(rq_sgemm_st, seed, 30, 1);
    random_cases(rq_sgemm, seed + 7, 30, 1);
    edge_cases(rq_sgemm_st, seed + 11);
    edge_cases(rq_sgemm, seed + 13);
    rq_gemm_set_isa(RQ_GEMM_AUTO);
}

static void test_scalar(void **state) { run_isa(RQ_GEMM_SCALAR); }
static void test_avx2(void **state) { run_isa(RQ_GEMM_AVX2); }
static void test_avx512(void **state) { run_isa(RQ_GEMM_AVX512); }

/* Sizes that cross every blocking boundary (K > KC, N > NB, M > MB) on each
 * ISA, threaded and not. */
static void test_large_blocks(void **state) {
    uint64_t seed = 77;
    static const rq_gemm_isa isas[] = {RQ_GEMM_AVX512, RQ_GEMM_AVX2, RQ_GEMM_SCALAR};
    for (int i = 0; i < 3; i++) {
        if (!use_isa(isas[i])) continue;
        gcase c1 = make_case(&seed, 0, 1, 1697, 70, 777);  /* M and K blocks */
        gcase c2 = make_case(&seed, 1, 0, 45, 1001, 401);  /* N and K blocks */
        c2.beta = 0.5f;
        run_case(rq_sgemm, &c1, &seed);
        run_case(rq_sgemm_st, &c2, &seed);
        gcase c3 = make_case(&seed, 1, 1, 301, 517, 389);
        run_case(rq_sgemm, &c3, &seed);
    }
    rq_gemm_set_isa(RQ_GEMM_AUTO);
}

/* Several K blocks, C cut into tiles: every element of rq_sgemm must equal
 * the one-thread result bit for bit (same kernels, same K blocks, whatever
 * the tiles), for all four transposes, several thread counts (tiles not
 * dividing them), beta != 0 and strided A, B and C. */
static void test_threads_bitexact(void **state) {
    uint64_t seed = 31;
    int saved = omp_get_max_threads();
    for (int t = 0; t < 4; t++) {
        const int M = 230, N = 100 + 37 * t, K = 1000 + 7 * t, ta = t & 1, tb = t >> 1;
        const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        float *A = malloc((size_t)(ta ? K : M) * lda * sizeof(float));
        float *B = malloc((size_t)(tb ? N : K) * ldb * sizeof(float));
        float *C0 = malloc((size_t)M * ldc * sizeof(float)), *C1 = malloc((size_t)M * ldc * sizeof(float));
        assert_true(A && B && C0 && C1);
        for (size_t i = 0; i < (size_t)(ta ? K : M) * lda; i++) A[i] = rng_float(&seed);
        for (size_t i = 0; i < (size_t)(tb ? N : K) * ldb; i++) B[i] = rng_float(&seed);
        for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = rng_float(&seed);
        memcpy(C1, C0, (size_t)M * ldc * sizeof(float));
        rq_sgemm_st(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C0, ldc);
        for (int nth = 2; nth <= 5; nth += 3) {
            float *C = malloc((size_t)M * ldc * sizeof(float));
            assert_non_null(C);
            memcpy(C, C1, (size_t)M * ldc * sizeof(float));
            omp_set_num_threads(nth);
            rq_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C, ldc);
            assert_memory_equal(C, C0, (size_t)M * ldc * sizeof(float));
            free(C);
        }
        free(A), free(B), free(C0), free(C1);
    }
    omp_set_num_threads(saved);
}

/* rq_sgemm with thread counts that do not divide the work; rq_sgemm_st and
 * rq_sgemm called from inside a parallel region (the attention pattern). */
static void test_threads(void **state) {
    uint64_t seed = 5;
    int saved = omp_get_max_threads();
    static const int nth[] = {1, 2, 3, 5, 7};
    for (int t = 0; t < 5; t++) {
        omp_set_num_threads(nth[t]);
        for (int r = 0; r < 4; r++) {
            gcase c = make_case(&seed, r & 1, r >> 1, rng_int(&seed, 50, 200), rng_int(&seed, 50, 200),
                                rng_int(&seed, 20, 100));
            run_case(rq_sgemm, &c, &seed);
        }
    }
    omp_set_num_threads(saved);
    int failures = 0;
#pragma omp parallel for num_threads(2) reduction(+ : failures) schedule(static, 1)
    for (int h = 0; h < 6; h++) {
        /* cmocka's fail_msg longjmps, which must not cross the parallel
         * region: compare by hand here */
        int T = 196, D = 64;
        uint64_t s = 100 + (uint64_t)h;
        float *q = malloc((size_t)T * D * 3 * sizeof(float)), *P = malloc((size_t)T * T * sizeof(float));
        float *R = malloc((size_t)T * T * sizeof(float));
        for (int i = 0; i < T * D * 3; i++) q[i] = rng_float(&s);
        for (int i = 0; i < T * T; i++) P[i] = NAN;
        /* S = Q K^T with row stride 3D, as in fused qkv attention */
        if (h & 1) rq_sgemm_st(0, 1, T, T, D, 0.125f, q, 3 * D, q + D, 3 * D, 0.0f, P, T);
        else rq_sgemm(0, 1, T, T, D, 0.125f, q, 3 * D, q + D, 3 * D, 0.0f, P, T);
        rq_sgemm_ref(0, 1, T, T, D, 0.125f, q, 3 * D, q + D, 3 * D, 0.0f, R, T);
        for (int i = 0; i < T * T; i++)
            if (!(fabsf(P[i] - R[i]) <= 1e-4f)) failures++;
        free(q);
        free(P);
        free(R);
    }
    assert_int_equal(failures, 0);
}

/* K == 0, alpha == 0, M or N == 0: C = beta*C, never reading A or B. */
static void test_degenerate(void **state) {
    float C[6], A[1] = {NAN}, B[1] = {NAN};
    for (int i = 0; i < 6; i++) C[i] = NAN;
    rq_sgemm(0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.0f, C, 3); /* beta 0: zeros over NaN */
    for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);
    for (int i = 0; i < 6; i++) C[i] = (float)i;
    rq_sgemm_st(1, 1, 2, 3, 0, 1.0f, NULL, 2, NULL, 1, 2.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 2.0f * i);
    rq_sgemm(0, 0, 2, 3, 1, 0.0f, A, 1, B, 3, 1.0f, C, 3); /* alpha 0: A, B not read */
    for (int i = 0; i < 6; i++) assert_true(C[i] == 2.0f * i);
    rq_sgemm(0, 0, 0, 3, 4, 1.0f, NULL, 4, B, 3, 0.0f, C, 3); /* M == 0: nothing */
    rq_sgemm(0, 0, 2, 0, 4, 1.0f, A, 4, NULL, 0, 0.0f, NULL, 0);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 2.0f * i);
}

/* Bad arguments are logged and leave C untouched. */
static void test_bad_args(void **state) {
    float A[64], B[64], C[64];
    for (int i = 0; i < 64; i++) A[i] = B[i] = 1.0f, C[i] = SENTINEL;
    gemm_fn fns[] = {rq_sgemm, rq_sgemm_st};
    for (int f = 0; f < 2; f++) {
        fns[f](0, 0, 4, 4, 4, 1.0f, NULL, 4, B, 4, 0.0f, C, 4); /* NULL A */
        fns[f](0, 0, 4, 4, 4, 1.0f, A, 4, NULL, 4, 0.0f, C, 4); /* NULL B */
        fns[f](0, 0, 4, 4, 4, 1.0f, A, 4, B, 4, 0.0f, NULL, 4); /* NULL C */
        fns[f](0, 0, -1, 4, 4, 1.0f, A, 4, B, 4, 0.0f, C, 4);   /* negative M */
        fns[f](0, 0, 4, 4, -2, 1.0f, A, 4, B, 4, 0.0f, C, 4);   /* negative K */
        fns[f](0, 0, 4, 4, 4, 1.0f, A, 3, B, 4, 0.0f, C, 4);    /* lda < K */
        fns[f](1, 0, 5, 4, 4, 1.0f, A, 4, B, 4, 0.0f, C, 4);    /* transA: lda < M */
        fns[f](0, 1, 4, 4, 5, 1.0f, A, 5, B, 4, 0.0f, C, 4);    /* transB: ldb < K */
        fns[f](0, 0, 4, 5, 4, 1.0f, A, 4, B, 5, 0.0f, C, 4);    /* ldc < N */
    }
    for (int i = 0; i < 64; i++) assert_true(C[i] == SENTINEL);
}

static void test_isa_selection(void **state) {
    rq_gemm_isa best = rq_gemm_set_isa(RQ_GEMM_AUTO);
    assert_true(best >= RQ_GEMM_SCALAR && best <= RQ_GEMM_AVX512);
    assert_int_equal(rq_gemm_get_isa(), best);
    assert_int_equal(rq_gemm_set_isa(RQ_GEMM_SCALAR), RQ_GEMM_SCALAR);
    /* a request never yields a wider ISA than asked for */
    assert_true(rq_gemm_set_isa(RQ_GEMM_AVX2) <= RQ_GEMM_AVX2);
    assert_true(rq_gemm_set_isa(RQ_GEMM_AVX512) <= RQ_GEMM_AVX512);
    assert_string_equal(rq_gemm_isa_name(RQ_GEMM_AVX512), "avx512");
    printf("  [ info ] best gemm ISA on this CPU: %s\n", rq_gemm_isa_name(best));
    rq_gemm_set_isa(RQ_GEMM_AUTO);
}

/* The checker itself must reject a wrong result (guards against a vacuous test). */
static void wrong_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    rq_sgemm(ta, tb, M, N, K - 1, alpha, A, lda, B, ldb, beta, C, ldc); /* drops the last k */
}
static void test_checker_detects_error(void **state) {
    uint64_t seed = 3;
    gcase c = make_case(&seed, 0, 0, 20, 20, 30);
    print_message("(one mismatch message expected)\n");
    assert_true(check_case(wrong_gemm, &c, &seed) > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_selection), cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_avx2),          cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_large_blocks),  cmocka_unit_test(test_threads), cmocka_unit_test(test_threads_bitexact),
        cmocka_unit_test(test_degenerate),    cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_checker_detects_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
