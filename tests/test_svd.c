/* test_svd.c: Jacobi SVD against known factorizations, randomized low-rank
 * SVD against the Eckart-Young optimum. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "robuq/svd.h"
#include "testutil.h"

/* A = U diag(s) V^T from random orthonormal U, V (QR by Gram-Schmidt). */
static void random_orthonormal(uint64_t *seed, double *Q, int rows, int cols) {
    for (int i = 0; i < rows * cols; i++) Q[i] = tu_uniform(seed, -1, 1);
    for (int j = 0; j < cols; j++) {
        for (int p = 0; p < j; p++) {
            double d = 0;
            for (int i = 0; i < rows; i++) d += Q[i * cols + p] * Q[i * cols + j];
            for (int i = 0; i < rows; i++) Q[i * cols + j] -= d * Q[i * cols + p];
        }
        double n = 0;
        for (int i = 0; i < rows; i++) n += Q[i * cols + j] * Q[i * cols + j];
        for (int i = 0; i < rows; i++) Q[i * cols + j] /= sqrt(n);
    }
}

static void compose(const double *U, const double *s, const double *V, int m, int n, int k, double *A) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double a = 0;
            for (int c = 0; c < k; c++) a += U[i * k + c] * s[c] * V[j * k + c];
            A[i * n + j] = a;
        }
}

static void test_jacobi_known(void **state) {
    uint64_t seed = 5;
    int m = 30, n = 12;
    double U[30 * 12], V[12 * 12], s[12], A[30 * 12];
    random_orthonormal(&seed, U, m, n);
    random_orthonormal(&seed, V, n, n);
    for (int i = 0; i < n; i++) s[i] = pow(0.6, i) * 10; /* distinct, descending */
    compose(U, s, V, m, n, n, A);
    double U2[30 * 12], V2[12 * 12], s2[12], B[30 * 12];
    assert_int_equal(rq_svd_jacobi(A, m, n, U2, s2, V2, NULL), RQ_OK);
    for (int i = 0; i < n; i++)
        if (fabs(s2[i] - s[i]) > 1e-12 * s[0]) fail_msg("s[%d] = %.15g, expected %.15g", i, s2[i], s[i]);
    compose(U2, s2, V2, m, n, n, B);
    for (int i = 0; i < m * n; i++) assert_true(fabs(A[i] - B[i]) < 1e-12 * s[0]);
    /* U^T U = I, V^T V = I */
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double du = 0, dv = 0;
            for (int i = 0; i < m; i++) du += U2[i * n + a] * U2[i * n + b];
            for (int i = 0; i < n; i++) dv += V2[i * n + a] * V2[i * n + b];
            assert_true(fabs(du - (a == b)) < 1e-12 && fabs(dv - (a == b)) < 1e-12);
        }
    /* a 2x2 by hand: [[3,0],[4,5]] has singular values sqrt(45), sqrt(5) */
    double H[4] = {3, 0, 4, 5}, hs[2];
    assert_int_equal(rq_svd_jacobi(H, 2, 2, NULL, hs, NULL, NULL), RQ_OK);
    assert_true(fabs(hs[0] - sqrt(45)) < 1e-14 && fabs(hs[1] - sqrt(5)) < 1e-14);
    /* rank-deficient: zero singular values, no NaN */
    double Z[6] = {1, 2, 2, 4, 3, 6}, zs[2];
    assert_int_equal(rq_svd_jacobi(Z, 3, 2, NULL, zs, NULL, NULL), RQ_OK);
    assert_true(fabs(zs[0] - sqrt(70)) < 1e-12 && fabs(zs[1]) < 1e-12);
    rq_err e = {0};
    assert_int_equal(rq_svd_jacobi(Z, 2, 3, NULL, zs, NULL, &e), RQ_EINVAL);
}

/* Randomized rank-r SVD of a weight-like matrix (decaying spectrum + noise):
 * Frobenius error within 1% of the optimum sqrt(sum_{i>r} s_i^2). */
static void test_lowrank_bound(void **state) {
    uint64_t seed = 9;
    int m = 192, n = 96, r = 8;
    double *U = malloc(sizeof(double) * m * n), *V = malloc(sizeof(double) * n * n), s[96];
    double *A = malloc(sizeof(double) * m * n);
    random_orthonormal(&seed, U, m, n);
    random_orthonormal(&seed, V, n, n);
    for (int i = 0; i < n; i++) s[i] = 1.0 / (1 + i) + 0.05;
    compose(U, s, V, m, n, n, A);
    float *W = malloc(sizeof(float) * m * n), *Ur = malloc(sizeof(float) * m * r), *Vt = malloc(sizeof(float) * r * n), S[8];
    for (int i = 0; i < m * n; i++) W[i] = (float)A[i];
    double opt = 0;
    for (int i = r; i < n; i++) opt += s[i] * s[i];
    opt = sqrt(opt);
    for (int iters = 0; iters <= 2; iters += 2) {
        assert_int_equal(rq_svd_lowrank(W, m, n, r, iters, 1, Ur, S, Vt, NULL), RQ_OK);
        double e2 = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double a = 0;
                for (int c = 0; c < r; c++) a += (double)Ur[i * r + c] * S[c] * Vt[c * n + j];
                e2 += (W[i * n + j] - a) * (W[i * n + j] - a);
            }
        print_message("  rank %d, %d power iterations: error %.6f, optimum %.6f (ratio %.4f)\n", r, iters, sqrt(e2), opt,
                      sqrt(e2) / opt);
        if (iters == 2 && sqrt(e2) > 1.01 * opt) fail_msg("error %.6g > 1.01 x optimum %.6g", sqrt(e2), opt);
        if (iters == 2)
            for (int c = 0; c < r; c++) assert_true(fabs(S[c] - s[c]) < 0.02 * s[c]); /* slow 1/i decay: close gaps */
    }
    rq_err e = {0};
    assert_int_equal(rq_svd_lowrank(W, m, n, 97, 2, 1, Ur, S, Vt, &e), RQ_EINVAL);
    free(U), free(V), free(A), free(W), free(Ur), free(Vt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jacobi_known),
        cmocka_unit_test(test_lowrank_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
