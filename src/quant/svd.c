/* svd.c: one-sided Jacobi SVD and randomized low-rank SVD (see svd.h). */
#include "robuq/svd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/rng.h"

#define JACOBI_MAX_SWEEPS 60
#define JACOBI_TOL 1e-15

rq_status rq_svd_jacobi(const double *A, int m, int n, double *U, double *S, double *V, rq_err *err) {
    if (!A || m < 1 || n < 1 || m < n)
        return rq_err_set(err, RQ_EINVAL, "svd_jacobi: need m >= n >= 1 (got %d x %d)", m, n);
    /* Work on columns: X = A^T copied as n columns of length m (contiguous). */
    double *X = malloc((size_t)n * m * sizeof(double)), *J = malloc((size_t)n * n * sizeof(double));
    double *s = malloc((size_t)n * sizeof(double));
    int *order = malloc((size_t)n * sizeof(int));
    if (!X || !J || !s || !order) {
        free(X), free(J), free(s), free(order);
        return rq_err_set(err, RQ_ENOMEM, "svd_jacobi: out of memory for %d x %d", m, n);
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) X[(long)j * m + i] = A[(long)i * n + j];
    for (int i = 0; i < n * n; i++) J[i] = 0;
    for (int i = 0; i < n; i++) J[(long)i * n + i] = 1; /* J[col j] stored as row j */

    for (int sweep = 0; sweep < JACOBI_MAX_SWEEPS; sweep++) {
        double off = 0;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double *xp = X + (long)p * m, *xq = X + (long)q * m;
                double a = 0, b = 0, c = 0;
                for (int i = 0; i < m; i++) a += xp[i] * xp[i], b += xq[i] * xq[i], c += xp[i] * xq[i];
                if (fabs(c) <= JACOBI_TOL * sqrt(a * b) || c == 0) continue;
                off = fmax(off, fabs(c) / sqrt(a * b));
                /* rotation that zeroes the (p,q) inner product */
                double zeta = (b - a) / (2 * c);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double cs = 1 / sqrt(1 + t * t), sn = cs * t;
                for (int i = 0; i < m; i++) {
                    double u = xp[i], v = xq[i];
                    xp[i] = cs * u - sn * v, xq[i] = sn * u + cs * v;
                }
                double *jp = J + (long)p * n, *jq = J + (long)q * n;
                for (int i = 0; i < n; i++) {
                    double u = jp[i], v = jq[i];
                    jp[i] = cs * u - sn * v, jq[i] = sn * u + cs * v;
                }
            }
        if (off <= JACOBI_TOL) break;
    }
    for (int j = 0; j < n; j++) {
        double nn = 0;
        for (int i = 0; i < m; i++) nn += X[(long)j * m + i] * X[(long)j * m + i];
        s[j] = sqrt(nn);
        order[j] = j;
    }
    for (int a = 1; a < n; a++) { /* insertion sort, descending */
        int k = order[a], b = a - 1;
        while (b >= 0 && s[order[b]] < s[k]) order[b + 1] = order[b], b--;
        order[b + 1] = k;
    }
    for (int jj = 0; jj < n; jj++) {
        int j = order[jj];
        if (S) S[jj] = s[j];
        if (U)
            for (int i = 0; i < m; i++) U[(long)i * n + jj] = s[j] > 0 ? X[(long)j * m + i] / s[j] : 0;
        if (V)
            for (int i = 0; i < n; i++) V[(long)i * n + jj] = J[(long)j * n + i];
    }
    free(X), free(J), free(s), free(order);
    return RQ_OK;
}

/* Modified Gram-Schmidt, twice ("twice is enough"), on the k columns of
 * Y[rows x k] (row-major). Columns that vanish are left zero. */
static void orthonormalize(double *Y, int rows, int k) {
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < k; j++) {
            for (int p = 0; p < j; p++) {
                double d = 0;
                for (int i = 0; i < rows; i++) d += Y[(long)i * k + p] * Y[(long)i * k + j];
                for (int i = 0; i < rows; i++) Y[(long)i * k + j] -= d * Y[(long)i * k + p];
            }
            double nn = 0;
            for (int i = 0; i < rows; i++) nn += Y[(long)i * k + j] * Y[(long)i * k + j];
            double inv = nn > 1e-300 ? 1 / sqrt(nn) : 0;
            for (int i = 0; i < rows; i++) Y[(long)i * k + j] *= inv;
        }
}

/* out[m x k] = W[m x n] X[n x k] */
static void mul_w(const float *W, int m, int n, const double *X, int k, double *out) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
        double *o = out + (long)i * k;
        for (int c = 0; c < k; c++) o[c] = 0;
        for (int j = 0; j < n; j++) {
            double w = W[(long)i * n + j];
            const double *x = X + (long)j * k;
            for (int c = 0; c < k; c++) o[c] += w * x[c];
        }
    }
}

/* out[n x k] = W^T[n x m] Y[m x k] */
static void mul_wt(const float *W, int m, int n, const double *Y, int k, double *out) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n; j++) {
        double *o = out + (long)j * k;
        for (int c = 0; c < k; c++) o[c] = 0;
        for (int i = 0; i < m; i++) {
            double w = W[(long)i * n + j];
            const double *y = Y + (long)i * k;
            for (int c = 0; c < k; c++) o[c] += w * y[c];
        }
    }
}

rq_status rq_svd_lowrank(const float *W, int m, int n, int r, int iters, uint64_t seed, float *U, float *S,
                         float *Vt, rq_err *err) {
    int mn = m < n ? m : n;
    if (!W || !U || !S || !Vt || m < 1 || n < 1 || r < 1 || r > mn || iters < 0)
        return rq_err_set(err, RQ_EINVAL, "svd_lowrank: bad arguments (%d x %d, rank %d)", m, n, r);
    int l = r + 8 < mn ? r + 8 : mn; /* oversampling */
    double *G = malloc((size_t)n * l * sizeof(double)), *Q = malloc((size_t)m * l * sizeof(double));
    double *Z = malloc((size_t)n * l * sizeof(double));
    double *Ub = malloc((size_t)n * l * sizeof(double)), *Sb = malloc((size_t)l * sizeof(double));
    double *Vb = malloc((size_t)l * l * sizeof(double));
    rq_status st = RQ_OK;
    if (!G || !Q || !Z || !Ub || !Sb || !Vb) {
        st = rq_err_set(err, RQ_ENOMEM, "svd_lowrank: out of memory for %d x %d", m, n);
        goto done;
    }
    rq_rng rng;
    rq_rng_seed(&rng, seed);
    float *g = (float *)Z; /* Z is free until the first power iteration */
    rq_rng_fill_normal(&rng, g, (long)n * l, 1.0f);
    for (long i = (long)n * l - 1; i >= 0; i--) G[i] = g[i];
    mul_w(W, m, n, G, l, Q);
    orthonormalize(Q, m, l);
    for (int it = 0; it < iters; it++) {
        mul_wt(W, m, n, Q, l, Z);
        orthonormalize(Z, n, l);
        mul_w(W, m, n, Z, l, Q);
        orthonormalize(Q, m, l);
    }
    /* B = Q^T W is l x n; its transpose Z = W^T Q is n x l with n >= l, so
     * Jacobi on Z: Z = Ub Sb Vb^T  =>  B = Vb Sb Ub^T and W ~ (Q Vb) Sb Ub^T. */
    mul_wt(W, m, n, Q, l, Z);
    if ((st = rq_svd_jacobi(Z, n, l, Ub, Sb, Vb, err))) goto done;
    for (int c = 0; c < r; c++) S[c] = (float)Sb[c];
    for (int i = 0; i < m; i++)
        for (int c = 0; c < r; c++) {
            double acc = 0;
            for (int k = 0; k < l; k++) acc += Q[(long)i * l + k] * Vb[(long)k * l + c];
            U[(long)i * r + c] = (float)acc;
        }
    for (int c = 0; c < r; c++)
        for (int j = 0; j < n; j++) Vt[(long)c * n + j] = (float)Ub[(long)j * l + c];
done:
    free(G), free(Q), free(Z), free(Ub), free(Sb), free(Vb);
    return st;
}
