/* test_hadamard.c: the fast Hadamard transform is an orthonormal, symmetric
 * involution for every supported size, equals the dense matrix, and rejects
 * unsupported sizes by name.
 *
 * For each size: dense H (double) must have entries +-1/sqrt(n) and be
 * symmetric; the fast transform applied to the identity must reproduce it;
 * H^T H is then computed by pushing the rows of H^T through the (verified)
 * fast transform, O(n^2 log n), and compared with I. Small sizes also get a
 * plain O(n^3) H H^T in double that does not involve the fast path. */
#include <string.h>

#include "robuq/hadamard.h"
#include "testutil.h"

/* DiT widths plus small ones that reach every code path (m = 2^k below,
 * at and above the 16-float chunk, for K = 1, 12, 36). */
static const int k_sizes[] = {1,   2,   4,   8,    16,   32,   12,   24,   48,   96,   192,  36,  72,
                              144, 288, 576, 64,   128,  256,  384,  512,  768,  1024, 1152, 1536,
                              2048, 3072, 4096, 4608};

static void check_size(int n) {
    rq_err err = {0};
    rq_hadamard h;
    if (rq_hadamard_plan_init(&h, n, &err) != RQ_OK) fail_msg("n=%d: %s", n, err.msg);
    assert_int_equal(h.n, n);
    assert_int_equal(h.k_base * h.m, n);

    const size_t nn = (size_t)n * (size_t)n;
    double *D = malloc(nn * sizeof(double));
    float *F = malloc(nn * sizeof(float));
    assert_non_null(D);
    assert_non_null(F);
    assert_int_equal(rq_hadamard_dense(n, D, &err), RQ_OK);

    /* entries +-1/sqrt(n), symmetric */
    const double e = 1.0 / sqrt((double)n);
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++) {
            const double v = D[i * n + j];
            if (fabs(fabs(v) - e) > 1e-15) fail_msg("n=%d: H[%ld][%ld]=%g not +-1/sqrt(n)", n, i, j, v);
            if (v != D[j * n + i]) fail_msg("n=%d: H not symmetric at (%ld,%ld)", n, i, j);
        }

    /* independent dense check H H^T = I for the small sizes */
    if (n <= 256) {
        for (long i = 0; i < n; i++)
            for (long j = 0; j < n; j++) {
                double s = 0.0;
                for (long k = 0; k < n; k++) s += D[i * n + k] * D[j * n + k];
                if (fabs(s - (i == j)) > 1e-12) fail_msg("n=%d: dense (H H^T)[%ld][%ld]=%g", n, i, j, s);
            }
    }

    /* fast transform of the identity == dense H (multi-row path, threads) */
    memset(F, 0, nn * sizeof(float));
    for (long i = 0; i < n; i++) F[i * n + i] = 1.0f;
    assert_int_equal(rq_hadamard_apply(&h, F, n), RQ_OK);
    double maxd = 0.0;
    for (size_t i = 0; i < nn; i++) {
        const double d = fabs(F[i] - D[i]);
        if (d > maxd) maxd = d;
    }
    if (maxd > 1e-6) fail_msg("n=%d: fast vs dense max abs diff %g", n, maxd);

    /* H^T H via the fast transform on the rows of H^T: must be I to 1e-5 */
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++) F[i * n + j] = (float)D[j * n + i];
    assert_int_equal(rq_hadamard_apply(&h, F, n), RQ_OK);
    double maxo = 0.0;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++) {
            const double d = fabs(F[i * n + j] - (i == j ? 1.0 : 0.0));
            if (d > maxo) maxo = d;
        }
    if (maxo > 1e-5) fail_msg("n=%d: max |H H^T - I| = %g", n, maxo);

    free(D);
    free(F);
    rq_hadamard_free(&h);
}

static void test_orthonormal_all_sizes(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_sizes / sizeof k_sizes[0]; i++) check_size(k_sizes[i]);
}

/* The Paley base blocks on their own: +-1 entries, symmetric, H H^T = K I
 * exactly in integers. */
static void test_paley_bases(void **state) {
    (void)state;
    const int ks[2] = {12, 36};
    for (int t = 0; t < 2; t++) {
        const int K = ks[t];
        double D[36 * 36];
        assert_int_equal(rq_hadamard_dense(K, D, NULL), RQ_OK);
        long Hi[36 * 36];
        for (int i = 0; i < K * K; i++) {
            Hi[i] = lround(D[i] * sqrt((double)K));
            assert_true(Hi[i] == 1 || Hi[i] == -1);
        }
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) {
                long s = 0;
                for (int k = 0; k < K; k++) s += Hi[i * K + k] * Hi[j * K + k];
                assert_int_equal(s, i == j ? K : 0);
                assert_int_equal(Hi[i * K + j], Hi[j * K + i]);
            }
    }
}

/* apply twice == identity, norms preserved, multi-row == row-by-row, on
 * random data for every size. */
static void test_involution_random(void **state) {
    (void)state;
    uint64_t seed = 7;
    for (size_t s = 0; s < sizeof k_sizes / sizeof k_sizes[0]; s++) {
        const int n = k_sizes[s];
        const long rows = 37;
        rq_hadamard h;
        assert_int_equal(rq_hadamard_plan_init(&h, n, NULL), RQ_OK);
        float *x = malloc((size_t)rows * n * sizeof(float));
        float *y = malloc((size_t)rows * n * sizeof(float));
        float *z = malloc((size_t)rows * n * sizeof(float));
        tu_fill(&seed, x, rows * n, -1.0f, 1.0f);
        memcpy(y, x, (size_t)rows * n * sizeof(float));
        memcpy(z, x, (size_t)rows * n * sizeof(float));
        assert_int_equal(rq_hadamard_apply(&h, y, rows), RQ_OK);
        for (long r = 0; r < rows; r++) assert_int_equal(rq_hadamard_apply_row(&h, z + r * n), RQ_OK);
        assert_memory_equal(y, z, (size_t)rows * n * sizeof(float));
        /* every instruction-set variant the CPU runs gives the same bits */
        const int best = h.isa;
        for (int isa = RQ_HADAMARD_SCALAR; isa <= best; isa++) {
            if (rq_hadamard_set_isa(&h, isa) != isa) continue;
            memcpy(z, x, (size_t)rows * n * sizeof(float));
            assert_int_equal(rq_hadamard_apply(&h, z, rows), RQ_OK);
            if (memcmp(y, z, (size_t)rows * n * sizeof(float)))
                fail_msg("n=%d: isa %d differs from isa %d", n, isa, best);
        }
        /* K = 12: the multiply-free K-mix gives the dense K-mix's bits */
        if (h.k_base == 12 && h.m % 16 == 0) {
            assert_true(h.kmix12);
            for (int isa = RQ_HADAMARD_SCALAR; isa <= best; isa++) {
                if (rq_hadamard_set_isa(&h, isa) != isa) continue;
                h.kmix12 = 0;
                memcpy(z, x, (size_t)rows * n * sizeof(float));
                assert_int_equal(rq_hadamard_apply(&h, z, rows), RQ_OK);
                h.kmix12 = 1;
                if (memcmp(y, z, (size_t)rows * n * sizeof(float)))
                    fail_msg("n=%d isa %d: dense K-mix differs from the sign K-mix", n, isa);
            }
        }
        assert_int_equal(rq_hadamard_set_isa(&h, best), best);
        for (long r = 0; r < rows; r++) {
            double a = 0, b = 0;
            for (int i = 0; i < n; i++) {
                a += (double)x[r * n + i] * x[r * n + i];
                b += (double)y[r * n + i] * y[r * n + i];
            }
            if (fabs(a - b) > 1e-5 * a) fail_msg("n=%d: norm %g -> %g", n, a, b);
        }
        assert_int_equal(rq_hadamard_apply(&h, y, rows), RQ_OK);
        const double err = tu_rel_err(y, x, rows * n, 1e-12);
        if (err > 1e-6) fail_msg("n=%d: apply twice rel err %g", n, err);
        free(x);
        free(y);
        free(z);
    }
}

static void test_unsupported(void **state) {
    (void)state;
    const int bad[] = {20, 100, 60, 3, 48 * 5, 0, -12};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rq_err err = {0};
        rq_hadamard h;
        assert_int_equal(rq_hadamard_plan_init(&h, bad[i], &err), RQ_EINVAL);
        assert_int_equal(err.code, RQ_EINVAL);
        char want[32];
        snprintf(want, sizeof want, "n=%d", bad[i]);
        if (!strstr(err.msg, want)) fail_msg("message '%s' does not name %s", err.msg, want);
        assert_non_null(strstr(err.msg, "12*2^k"));
        assert_int_equal(rq_hadamard_supported(bad[i]), 0);
        double d[4];
        assert_int_equal(rq_hadamard_dense(bad[i], d, NULL), RQ_EINVAL);
    }
    assert_int_equal(rq_hadamard_supported(1152), 1);
    assert_int_equal(rq_hadamard_supported(4608), 1);
    assert_int_equal(rq_hadamard_plan_init(NULL, 64, NULL), RQ_EINVAL);
    /* apply on a cleared plan / bad arguments */
    rq_hadamard h;
    assert_int_equal(rq_hadamard_plan_init(&h, 64, NULL), RQ_OK);
    float x[64] = {0};
    assert_int_equal(rq_hadamard_apply(&h, x, -1), RQ_EINVAL);
    assert_int_equal(rq_hadamard_apply(&h, NULL, 1), RQ_EINVAL);
    assert_int_equal(rq_hadamard_apply(&h, x, 0), RQ_OK);
    assert_int_equal(rq_hadamard_apply(NULL, x, 1), RQ_EINVAL);
    rq_hadamard_free(&h);
    assert_int_equal(rq_hadamard_apply(&h, x, 1), RQ_EINVAL);
    assert_int_equal(rq_hadamard_apply_row(&h, x), RQ_EINVAL);
}

/* A concrete value: H_2 = [[1,1],[1,-1]]/sqrt(2); H_4 row 3 = [1,-1,-1,1]/2. */
static void test_small_values(void **state) {
    (void)state;
    rq_hadamard h;
    assert_int_equal(rq_hadamard_plan_init(&h, 4, NULL), RQ_OK);
    float x[4] = {0, 0, 0, 1};
    assert_int_equal(rq_hadamard_apply_row(&h, x), RQ_OK);
    const float want[4] = {0.5f, -0.5f, -0.5f, 0.5f};
    for (int i = 0; i < 4; i++) assert_float_equal(x[i], want[i], 1e-7);
    assert_int_equal(rq_hadamard_plan_init(&h, 1, NULL), RQ_OK);
    float one = 3.0f;
    assert_int_equal(rq_hadamard_apply_row(&h, &one), RQ_OK);
    assert_float_equal(one, 3.0f, 0.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values),
        cmocka_unit_test(test_paley_bases),
        cmocka_unit_test(test_orthonormal_all_sizes),
        cmocka_unit_test(test_involution_random),
        cmocka_unit_test(test_unsupported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
