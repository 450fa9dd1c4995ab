/* test_metrics.c: FID matrix code against closed forms and known values,
 * Inception-style score, k-NN precision / recall against brute force. */
#include <string.h>

#include "robuq/metrics.h"
#include "testutil.h"

static double max_abs_diff(const double *a, const double *b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static void matmul(const double *A, const double *B, double *C, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += A[i * n + k] * B[k * n + j];
            C[i * n + j] = s;
        }
}

/* Random orthogonal Q (Gram-Schmidt of a random matrix). */
static void random_orthogonal(uint64_t seed, double *Q, int n) {
    for (int i = 0; i < n * n; i++) Q[i] = tu_uniform(&seed, -1, 1);
    for (int c = 0; c < n; c++) {
        for (int p = 0; p < c; p++) {
            double d = 0;
            for (int r = 0; r < n; r++) d += Q[r * n + c] * Q[r * n + p];
            for (int r = 0; r < n; r++) Q[r * n + c] -= d * Q[r * n + p];
        }
        double s = 0;
        for (int r = 0; r < n; r++) s += Q[r * n + c] * Q[r * n + c];
        for (int r = 0; r < n; r++) Q[r * n + c] /= sqrt(s);
    }
}

/* Q diag(w) Q^T */
static void from_eig(const double *Q, const double *w, double *A, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += Q[i * n + k] * w[k] * Q[j * n + k];
            A[i * n + j] = s;
        }
}

static void test_sym_eig(void **state) {
    rq_err err = {0};
    double A2[4] = {2, 1, 1, 2}, w2[2], V2[4];
    assert_int_equal(rq_sym_eig(A2, 2, w2, V2, &err), RQ_OK);
    assert_true(fabs(w2[0] - 1) < 1e-14 && fabs(w2[1] - 3) < 1e-14);
    assert_true(fabs(fabs(V2[0]) - sqrt(0.5)) < 1e-14); /* (1,-1)/sqrt2 */

    /* random symmetric 24x24 with known spectrum (including a repeated and a negative eigenvalue) */
    enum { N = 24 };
    static double Q[N * N], A[N * N], V[N * N], AV[N * N], w[N], want[N];
    random_orthogonal(5, Q, N);
    for (int i = 0; i < N; i++) want[i] = i < 3 ? 2.5 : -4.0 + 0.5 * i;
    from_eig(Q, want, A, N);
    assert_int_equal(rq_sym_eig(A, N, w, V, &err), RQ_OK);
    double sorted[N];
    memcpy(sorted, want, sizeof sorted);
    for (int i = 1; i < N; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1], sorted[j - 1] = t;
        }
    assert_true(max_abs_diff(w, sorted, N) < 1e-12);
    /* A V = V diag(w), V^T V = I */
    matmul(A, V, AV, N);
    for (int r = 0; r < N; r++)
        for (int c = 0; c < N; c++) assert_true(fabs(AV[r * N + c] - V[r * N + c] * w[c]) < 1e-12);
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++) {
            double s = 0;
            for (int r = 0; r < N; r++) s += V[r * N + a] * V[r * N + b];
            assert_true(fabs(s - (a == b)) < 1e-12);
        }
    /* errors */
    A2[1] = NAN;
    assert_int_equal(rq_sym_eig(A2, 2, w2, V2, &err), RQ_ENUM);
    assert_non_null(strstr(err.msg, "non-finite"));
    rq_err_clear(&err);
    assert_int_equal(rq_sym_eig(NULL, 2, w2, V2, &err), RQ_EINVAL);
}

static void test_sqrtm_known(void **state) {
    rq_err err = {0};
    /* sqrt([[5,4],[4,5]]) = [[2,1],[1,2]] */
    double A[4] = {5, 4, 4, 5}, want[4] = {2, 1, 1, 2}, S[4], resid;
    assert_int_equal(rq_sqrtm_psd(A, 2, S, &err), RQ_OK);
    assert_true(max_abs_diff(S, want, 4) < 1e-13);
    assert_int_equal(rq_sqrtm_newton_schulz(A, 2, 0, S, &resid, &err), RQ_OK);
    assert_true(max_abs_diff(S, want, 4) < 1e-12);
    assert_true(resid < 1e-12);
    /* diagonal */
    double D[9] = {4, 0, 0, 0, 9, 0, 0, 0, 16}, Dw[9] = {2, 0, 0, 0, 3, 0, 0, 0, 4}, DS[9];
    assert_int_equal(rq_sqrtm_psd(D, 3, DS, &err), RQ_OK);
    assert_true(max_abs_diff(DS, Dw, 9) < 1e-13);
    assert_int_equal(rq_sqrtm_newton_schulz(D, 3, 0, DS, NULL, &err), RQ_OK);
    assert_true(max_abs_diff(DS, Dw, 9) < 1e-12);
    /* rank one (PSD, singular): sqrt(v v^T) = v v^T / |v| */
    double v[3] = {1, 2, 2}, R[9], Rw[9], RS[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) R[i * 3 + j] = v[i] * v[j], Rw[i * 3 + j] = v[i] * v[j] / 3.0;
    assert_int_equal(rq_sqrtm_psd(R, 3, RS, &err), RQ_OK);
    assert_true(max_abs_diff(RS, Rw, 9) < 1e-7); /* zero eigenvalues: sqrt of round-off */
    /* zero matrix */
    double Z[4] = {0}, ZS[4];
    assert_int_equal(rq_sqrtm_newton_schulz(Z, 2, 0, ZS, &resid, &err), RQ_OK);
    assert_true(ZS[0] == 0 && ZS[3] == 0 && resid == 0);
}

static void test_sqrtm_random(void **state) {
    /* S SPD with known spectrum; sqrt(S S) must give S back (both methods) */
    enum { N = 40 };
    rq_err err = {0};
    static double Q[N * N], S[N * N], A[N * N], E[N * N], NS[N * N], w[N];
    random_orthogonal(11, Q, N);
    for (int i = 0; i < N; i++) w[i] = 0.1 + 0.05 * i;
    from_eig(Q, w, S, N);
    matmul(S, S, A, N);
    assert_int_equal(rq_sqrtm_psd(A, N, E, &err), RQ_OK);
    assert_true(max_abs_diff(E, S, N * N) < 1e-12);
    double resid = 1;
    assert_int_equal(rq_sqrtm_newton_schulz(A, N, 0, NS, &resid, &err), RQ_OK);
    assert_true(max_abs_diff(NS, S, N * N) < 1e-10);
    assert_true(resid < 1e-12);
    /* Newton-Schulz on an indefinite matrix must not pretend to converge */
    double I2[4] = {1, 0, 0, -1}, out[4];
    rq_status st = rq_sqrtm_newton_schulz(I2, 2, 50, out, &resid, &err);
    assert_true(st != RQ_OK || resid > 1e-3);
}

static void test_frechet_closed_form(void **state) {
    enum { N = 16 };
    rq_err err = {0};
    static double Q[N * N], C1[N * N], C2[N * N], a[N], b[N], mu1[N], mu2[N];
    /* commuting covariances Q diag(a) Q^T, Q diag(b) Q^T: FID = |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2 */
    random_orthogonal(3, Q, N);
    double want = 0;
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        a[i] = tu_uniform(&s, 0.1f, 3.0f), b[i] = tu_uniform(&s, 0.1f, 3.0f);
        mu1[i] = tu_uniform(&s, -1, 1), mu2[i] = tu_uniform(&s, -1, 1);
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    from_eig(Q, a, C1, N);
    from_eig(Q, b, C2, N);
    double fid = -1;
    assert_int_equal(rq_frechet_distance(mu1, C1, mu2, C2, N, &fid, &err), RQ_OK);
    assert_true(fabs(fid - want) < 1e-10 * fmax(1, want));
    /* symmetric in its arguments */
    double fid2;
    assert_int_equal(rq_frechet_distance(mu2, C2, mu1, C1, N, &fid2, &err), RQ_OK);
    assert_true(fabs(fid2 - want) < 1e-10 * fmax(1, want));
    /* identical Gaussians: 0 */
    assert_int_equal(rq_frechet_distance(mu1, C1, mu1, C1, N, &fid, &err), RQ_OK);
    assert_true(fid < 1e-10);

    /* non-commuting 2x2: tr sqrt(C1 C2) = sqrt(tr(C1 C2) + 2 sqrt(det(C1 C2))) */
    double P[4] = {2.0, 0.7, 0.7, 1.0}, R[4] = {0.5, -0.3, -0.3, 1.5}, m1[2] = {0.2, -1}, m2[2] = {1, 0.5}, PR[4];
    matmul(P, R, PR, 2);
    double tr = PR[0] + PR[3], det = (P[0] * P[3] - P[1] * P[2]) * (R[0] * R[3] - R[1] * R[2]);
    double want2 = (m1[0] - m2[0]) * (m1[0] - m2[0]) + (m1[1] - m2[1]) * (m1[1] - m2[1]) + P[0] + P[3] + R[0] +
                   R[3] - 2.0 * sqrt(tr + 2.0 * sqrt(det));
    assert_int_equal(rq_frechet_distance(m1, P, m2, R, 2, &fid, &err), RQ_OK);
    assert_true(fabs(fid - want2) < 1e-12);
    /* a singular covariance (rank 1) against a full one, same closed form */
    double Z[4] = {1, 1, 1, 1}, ZR[4];
    matmul(Z, R, ZR, 2);
    double want3 = Z[0] + Z[3] + R[0] + R[3] - 2.0 * sqrt(ZR[0] + ZR[3] + 0.0);
    assert_int_equal(rq_frechet_distance(m1, Z, m1, R, 2, &fid, &err), RQ_OK);
    assert_true(fabs(fid - want3) < 1e-7);

    /* errors: non-finite, dimension mismatch */
    P[0] = INFINITY;
    assert_int_equal(rq_frechet_distance(m1, P, m2, R, 2, &fid, &err), RQ_ENUM);
    rq_err_clear(&err);
    rq_fstats fa = {0}, fb = {0};
    assert_int_equal(rq_fstats_alloc(&fa, 3, &err), RQ_OK);
    assert_int_equal(rq_fstats_alloc(&fb, 4, &err), RQ_OK);
    assert_int_equal(rq_fid_from_stats(&fa, &fb, &fid, &err), RQ_ESHAPE);
    assert_non_null(strstr(err.msg, "3 vs 4"));
    rq_fstats_free(&fa), rq_fstats_free(&fb);
}

static void test_fstats(void **state) {
    rq_err err = {0};
    float x[6] = {1, 2, 3, 4, 5, 0};
    rq_fstats s;
    assert_int_equal(rq_fstats_compute(x, 3, 2, &s, &err), RQ_OK);
    assert_true(fabs(s.mu[0] - 3) < 1e-12 && fabs(s.mu[1] - 2) < 1e-12);
    double want[4] = {4, -2, -2, 4};
    assert_true(max_abs_diff(s.cov, want, 4) < 1e-12);
    rq_fstats_free(&s);
    assert_int_equal(rq_fstats_compute(x, 1, 2, &s, &err), RQ_EINVAL);
    rq_err_clear(&err);
    x[3] = NAN;
    assert_int_equal(rq_fstats_compute(x, 3, 2, &s, &err), RQ_ENUM);

    /* sampled Gaussians (more rows than a chunk): same distribution -> small FID,
     * mean shifted by delta in every dim -> FID ~ d delta^2 */
    enum { R = 3000, D = 8 };
    static float a[R * D], b[R * D], c[R * D];
    uint64_t sd = 1;
    for (int i = 0; i < R * D; i++) {
        double u1 = (tu_next(&sd) >> 11) * 0x1.0p-53 + 1e-300, u2 = (tu_next(&sd) >> 11) * 0x1.0p-53;
        double u3 = (tu_next(&sd) >> 11) * 0x1.0p-53 + 1e-300, u4 = (tu_next(&sd) >> 11) * 0x1.0p-53;
        a[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
        b[i] = (float)(sqrt(-2 * log(u3)) * cos(2 * M_PI * u4));
        c[i] = b[i] + 1.0f;
    }
    rq_fstats sa, sb, sc;
    assert_int_equal(rq_fstats_compute(a, R, D, &sa, &err), RQ_OK);
    assert_int_equal(rq_fstats_compute(b, R, D, &sb, &err), RQ_OK);
    assert_int_equal(rq_fstats_compute(c, R, D, &sc, &err), RQ_OK);
    double same, shifted, self;
    assert_int_equal(rq_fid_from_stats(&sa, &sa, &self, &err), RQ_OK);
    assert_int_equal(rq_fid_from_stats(&sa, &sb, &same, &err), RQ_OK);
    assert_int_equal(rq_fid_from_stats(&sa, &sc, &shifted, &err), RQ_OK);
    assert_true(self < 1e-9);
    assert_true(same < 0.05);
    assert_true(fabs(shifted - D) < 0.5);
    rq_fstats_free(&sa), rq_fstats_free(&sb), rq_fstats_free(&sc);
}

static void test_inception_score(void **state) {
    rq_err err = {0};
    double m, sd;
    float p[4] = {1, 0, 0.5f, 0.5f};
    assert_int_equal(rq_inception_score(p, 2, 2, 1, &m, &sd, &err), RQ_OK);
    /* KL = [log(4/3) + (0.5 log(2/3) + 0.5 log 2)] / 2 */
    double want = exp((log(4.0 / 3) + 0.5 * log(2.0 / 3) + 0.5 * log(2.0)) / 2);
    assert_true(fabs(m - want) < 1e-7 && sd == 0);
    /* uniform posteriors: 1; confident and balanced over K classes: K */
    enum { N = 100, K = 10 };
    static float u[N * K], h[N * K];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < K; j++) u[i * K + j] = 1.0f / K, h[i * K + j] = j == i % K;
    assert_int_equal(rq_inception_score(u, N, K, 10, &m, &sd, &err), RQ_OK);
    assert_true(fabs(m - 1) < 1e-6 && sd < 1e-6);
    assert_int_equal(rq_inception_score(h, N, K, 10, &m, &sd, &err), RQ_OK);
    assert_true(fabs(m - K) < 1e-9 && sd < 1e-9);
    /* one confident class per split: each split scores 1 */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < K; j++) h[i * K + j] = j == i / 10;
    assert_int_equal(rq_inception_score(h, N, K, 10, &m, &sd, &err), RQ_OK);
    assert_true(fabs(m - 1) < 1e-9);
    assert_int_equal(rq_inception_score(h, N, K, 1, &m, &sd, &err), RQ_OK);
    assert_true(fabs(m - K) < 1e-9);
    /* errors */
    assert_int_equal(rq_inception_score(h, 5, K, 10, &m, &sd, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "splits"));
    rq_err_clear(&err);
    h[3] = -0.5f;
    assert_int_equal(rq_inception_score(h, N, K, 1, &m, &sd, &err), RQ_ENUM);
}

static void test_knn_radii(void **state) {
    rq_err err = {0};
    float line[5] = {0, 1, 3, 6, 10}, r2[5];
    float k1[5] = {1, 1, 4, 9, 16}, k2[5] = {9, 4, 9, 16, 49};
    assert_int_equal(rq_knn_radii2(line, 5, 1, 1, r2, &err), RQ_OK);
    for (int i = 0; i < 5; i++) assert_true(fabs(r2[i] - k1[i]) < 1e-4);
    assert_int_equal(rq_knn_radii2(line, 5, 1, 2, r2, &err), RQ_OK);
    for (int i = 0; i < 5; i++) assert_true(fabs(r2[i] - k2[i]) < 1e-4);
    /* a duplicate is a neighbour at distance 0 */
    float dup[4] = {2, 2, 5, 9};
    assert_int_equal(rq_knn_radii2(dup, 4, 1, 1, r2, &err), RQ_OK);
    assert_true(r2[0] == 0 && r2[1] == 0 && fabs(r2[2] - 9) < 1e-4);
    /* errors */
    assert_int_equal(rq_knn_radii2(line, 3, 1, 3, r2, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "more than k"));
}

/* brute force in double: the reference for precision / recall */
static double coverage_ref(const float *ref, long nr, const float *q, long nq, int d, int k) {
    double *r2 = malloc((size_t)nr * sizeof(double));
    for (long i = 0; i < nr; i++) {
        double best[8];
        for (int t = 0; t < k; t++) best[t] = INFINITY;
        for (long j = 0; j < nr; j++) {
            if (j == i) continue;
            double s = 0;
            for (int c = 0; c < d; c++) s += ((double)ref[i * d + c] - ref[j * d + c]) * ((double)ref[i * d + c] - ref[j * d + c]);
            int t = k - 1;
            if (s >= best[t]) continue;
            while (t > 0 && best[t - 1] > s) best[t] = best[t - 1], t--;
            best[t] = s;
        }
        r2[i] = best[k - 1];
    }
    long in = 0;
    for (long i = 0; i < nq; i++)
        for (long j = 0; j < nr; j++) {
            double s = 0;
            for (int c = 0; c < d; c++) s += ((double)q[i * d + c] - ref[j * d + c]) * ((double)q[i * d + c] - ref[j * d + c]);
            if (s <= r2[j]) {
                in++;
                break;
            }
        }
    free(r2);
    return (double)in / nq;
}

static void test_precision_recall(void **state) {
    rq_err err = {0};
    enum { NR = 600, NF = 400, D = 6 };
    static float real[NR * D], fake[NF * D], far[NF * D];
    uint64_t s = 21;
    /* real: two clusters at +-5 in dim 0; fake: only the +5 cluster, wider, offset 50 in all dims */
    for (int i = 0; i < NR; i++)
        for (int c = 0; c < D; c++) real[i * D + c] = tu_uniform(&s, -1, 1) + (c == 0 ? (i % 2 ? 5.0f : -5.0f) : 0) + 50;
    for (int i = 0; i < NF; i++)
        for (int c = 0; c < D; c++) {
            fake[i * D + c] = 1.3f * tu_uniform(&s, -1, 1) + (c == 0 ? 5.0f : 0) + 50;
            far[i * D + c] = tu_uniform(&s, -1, 1) + 80.0f;
        }
    double p, r;
    assert_int_equal(rq_precision_recall(real, NR, fake, NF, D, 3, &p, &r, &err), RQ_OK);
    double pw = coverage_ref(real, NR, fake, NF, D, 3), rw = coverage_ref(fake, NF, real, NR, D, 3);
    assert_true(fabs(p - pw) <= 1.5 / NF && fabs(r - rw) <= 1.5 / NR);
    /* mode collapse: precision stays high, recall is at most the covered half */
    assert_true(p > 0.5 && r < 0.55 && r > 0.2);
    /* identical sets: every point lies in its own ball */
    assert_int_equal(rq_precision_recall(real, NR, real, NR, D, 3, &p, &r, &err), RQ_OK);
    assert_true(p == 1.0 && r == 1.0);
    /* disjoint sets */
    assert_int_equal(rq_precision_recall(real, NR, far, NF, D, 3, &p, &r, &err), RQ_OK);
    assert_true(p == 0.0 && r == 0.0);
    /* a coverage query equals the brute force too */
    float r2[NR];
    double cov;
    assert_int_equal(rq_knn_radii2(real, NR, D, 3, r2, &err), RQ_OK);
    assert_int_equal(rq_manifold_coverage(real, r2, NR, fake, NF, D, &cov, &err), RQ_OK);
    assert_true(fabs(cov - pw) <= 1.5 / NF);
    /* errors */
    assert_int_equal(rq_precision_recall(real, 3, fake, NF, D, 3, &p, &r, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "real"));
    rq_err_clear(&err);
    fake[7] = NAN;
    assert_int_equal(rq_precision_recall(real, NR, fake, NF, D, 3, &p, &r, &err), RQ_ENUM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sym_eig),           cmocka_unit_test(test_sqrtm_known),
        cmocka_unit_test(test_sqrtm_random),      cmocka_unit_test(test_frechet_closed_form),
        cmocka_unit_test(test_fstats),            cmocka_unit_test(test_inception_score),
        cmocka_unit_test(test_knn_radii),         cmocka_unit_test(test_precision_recall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
