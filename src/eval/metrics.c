/* metrics.c: FID statistics and Frechet distance, matrix square roots,
 * Inception-style score, k-NN precision / recall (metrics.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/gemm.h"
#include "robuq/metrics.h"

/* ------------------------------------------------------------ statistics */

rq_status rq_fstats_alloc(rq_fstats *s, int d, rq_err *err) {
    if (!s || d < 1) return rq_err_set(err, RQ_EINVAL, "fstats: bad dimension %d", d);
    memset(s, 0, sizeof *s);
    s->dim = d;
    s->mu = calloc((size_t)d, sizeof(double));
    s->cov = calloc((size_t)d * d, sizeof(double));
    if (!s->mu || !s->cov) {
        rq_fstats_free(s);
        return rq_err_set(err, RQ_ENOMEM, "fstats: out of memory for dimension %d", d);
    }
    return RQ_OK;
}

void rq_fstats_free(rq_fstats *s) {
    if (!s) return;
    free(s->mu), free(s->cov);
    memset(s, 0, sizeof *s);
}

#define STATS_CHUNK 256

rq_status rq_fstats_compute(const float *x, long n, int d, rq_fstats *s, rq_err *err) {
    if (!x || !s) return rq_err_set(err, RQ_EINVAL, "fstats: NULL argument");
    if (n < 2) return rq_err_set(err, RQ_EINVAL, "fstats: need at least 2 feature rows, got %ld", n);
    if (rq_fstats_alloc(s, d, err)) return err ? err->code : RQ_ENOMEM;
    s->n = n;
    for (long i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            if (!isfinite(x[i * d + j])) {
                rq_fstats_free(s);
                return rq_err_set(err, RQ_ENUM, "fstats: feature [%ld,%d] is not finite", i, j);
            }
            s->mu[j] += x[i * d + j];
        }
    for (int j = 0; j < d; j++) s->mu[j] /= (double)n;
    /* centred chunks, transposed so every covariance entry is a contiguous dot product */
    double *xt = malloc((size_t)d * STATS_CHUNK * sizeof(double));
    if (!xt) {
        rq_fstats_free(s);
        return rq_err_set(err, RQ_ENOMEM, "fstats: out of memory");
    }
    for (long r0 = 0; r0 < n; r0 += STATS_CHUNK) {
        int b = (int)(n - r0 < STATS_CHUNK ? n - r0 : STATS_CHUNK);
        for (int r = 0; r < b; r++)
            for (int j = 0; j < d; j++) xt[(long)j * STATS_CHUNK + r] = (double)x[(r0 + r) * d + j] - s->mu[j];
#pragma omp parallel for schedule(dynamic, 4)
        for (int i = 0; i < d; i++) {
            const double *a = xt + (long)i * STATS_CHUNK;
            for (int j = i; j < d; j++) {
                const double *c = xt + (long)j * STATS_CHUNK;
                double acc = 0;
                for (int r = 0; r < b; r++) acc += a[r] * c[r];
                s->cov[(long)i * d + j] += acc;
            }
        }
    }
    free(xt);
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            double v = s->cov[(long)i * d + j] / (double)(n - 1);
            s->cov[(long)i * d + j] = s->cov[(long)j * d + i] = v;
        }
    return RQ_OK;
}

/* ------------------------------------------------------------ linear algebra */

static int all_finite(const double *a, long n) {
    for (long i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* C = A B for n x n row-major matrices (i-k-j order: contiguous inner loop). */
static void matmul_nn(const double *A, const double *B, double *C, int n) {
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int i = 0; i < n; i++) {
        double *c = C + (long)i * n;
        for (int j = 0; j < n; j++) c[j] = 0;
        for (int k = 0; k < n; k++) {
            double a = A[(long)i * n + k];
            const double *b = B + (long)k * n;
            for (int j = 0; j < n; j++) c[j] += a * b[j];
        }
    }
}

rq_status rq_sym_eig(const double *A, int n, double *w, double *V, rq_err *err) {
    if (!A || !w || n < 1) return rq_err_set(err, RQ_EINVAL, "sym_eig: bad argument (n = %d)", n);
    long nn = (long)n * n;
    if (!all_finite(A, nn)) return rq_err_set(err, RQ_ENUM, "sym_eig: matrix has non-finite entries");
    double *a = malloc((size_t)nn * sizeof(double)), *v = malloc((size_t)nn * sizeof(double));
    int *order = malloc((size_t)n * sizeof(int));
    if (!a || !v || !order) {
        free(a), free(v), free(order);
        return rq_err_set(err, RQ_ENOMEM, "sym_eig: out of memory (n = %d)", n);
    }
    /* work on the symmetric part: callers' matrices are symmetric up to round-off */
    double norm2 = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            a[(long)i * n + j] = 0.5 * (A[(long)i * n + j] + A[(long)j * n + i]);
            v[(long)i * n + j] = i == j;
            norm2 += a[(long)i * n + j] * a[(long)i * n + j];
        }
    rq_status st = RQ_OK;
    for (int sweep = 0;; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[(long)p * n + q] * a[(long)p * n + q];
        if (off <= 1e-30 * norm2 || off == 0) break;
        if (sweep == 100) {
            st = rq_err_set(err, RQ_ENUM, "sym_eig: Jacobi did not converge in 100 sweeps (n = %d)", n);
            break;
        }
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[(long)p * n + q];
                if (apq == 0) continue;
                double app = a[(long)p * n + p], aqq = a[(long)q * n + q];
                /* rotation J(p,q) with tan t chosen so that (J^T A J)[p][q] = 0 (Golub-Van Loan 8.5) */
                double theta = (aqq - app) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < n; k++) { /* A J: columns p and q */
                    double akp = a[(long)k * n + p], akq = a[(long)k * n + q];
                    a[(long)k * n + p] = c * akp - s * akq;
                    a[(long)k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* J^T (A J): rows p and q */
                    double apk = a[(long)p * n + k], aqk = a[(long)q * n + k];
                    a[(long)p * n + k] = c * apk - s * aqk;
                    a[(long)q * n + k] = s * apk + c * aqk;
                }
                a[(long)p * n + q] = a[(long)q * n + p] = 0; /* exact by construction */
                for (int k = 0; k < n; k++) {
                    double vkp = v[(long)k * n + p], vkq = v[(long)k * n + q];
                    v[(long)k * n + p] = c * vkp - s * vkq;
                    v[(long)k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    if (st == RQ_OK) {
        /* ascending eigenvalues (insertion sort of the order: n is small) */
        for (int i = 0; i < n; i++) order[i] = i;
        for (int i = 1; i < n; i++) {
            int o = order[i], j = i;
            while (j > 0 && a[(long)order[j - 1] * n + order[j - 1]] > a[(long)o * n + o]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = o;
        }
        for (int i = 0; i < n; i++) w[i] = a[(long)order[i] * n + order[i]];
        if (V)
            for (int r = 0; r < n; r++)
                for (int i = 0; i < n; i++) V[(long)r * n + i] = v[(long)r * n + order[i]];
    }
    free(a), free(v), free(order);
    return st;
}

rq_status rq_sqrtm_psd(const double *A, int n, double *out, rq_err *err) {
    if (!A || !out || n < 1) return rq_err_set(err, RQ_EINVAL, "sqrtm_psd: bad argument (n = %d)", n);
    long nn = (long)n * n;
    double *w = malloc((size_t)n * sizeof(double)), *V = malloc((size_t)nn * sizeof(double)),
           *VS = malloc((size_t)nn * sizeof(double));
    rq_status st = RQ_OK;
    if (!w || !V || !VS) {
        st = rq_err_set(err, RQ_ENOMEM, "sqrtm_psd: out of memory (n = %d)", n);
        goto done;
    }
    if ((st = rq_sym_eig(A, n, w, V, err))) goto done;
    for (int i = 0; i < n; i++) w[i] = w[i] > 0 ? sqrt(w[i]) : 0; /* negative = round-off of a PSD matrix */
    for (int r = 0; r < n; r++)
        for (int i = 0; i < n; i++) VS[(long)r * n + i] = V[(long)r * n + i] * w[i];
    /* out = (V S) V^T */
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += VS[(long)r * n + i] * V[(long)c * n + i];
            out[(long)r * n + c] = acc;
        }
done:
    free(w), free(V), free(VS);
    return st;
}

static double frob(const double *a, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}

rq_status rq_sqrtm_newton_schulz(const double *A, int n, int iters, double *out, double *resid, rq_err *err) {
    if (!A || !out || n < 1) return rq_err_set(err, RQ_EINVAL, "sqrtm_newton_schulz: bad argument (n = %d)", n);
    long nn = (long)n * n;
    if (!all_finite(A, nn)) return rq_err_set(err, RQ_ENUM, "sqrtm_newton_schulz: matrix has non-finite entries");
    if (iters <= 0) iters = 100;
    double norm = frob(A, nn);
    if (norm == 0) {
        memset(out, 0, (size_t)nn * sizeof(double));
        if (resid) *resid = 0;
        return RQ_OK;
    }
    double *Y = malloc((size_t)nn * sizeof(double)), *Z = malloc((size_t)nn * sizeof(double)),
           *T = malloc((size_t)nn * sizeof(double)), *W = malloc((size_t)nn * sizeof(double));
    rq_status st = RQ_OK;
    if (!Y || !Z || !T || !W) {
        st = rq_err_set(err, RQ_ENOMEM, "sqrtm_newton_schulz: out of memory (n = %d)", n);
        goto done;
    }
    for (long i = 0; i < nn; i++) Y[i] = A[i] / norm, Z[i] = (i / n == i % n);
    for (int it = 0; it < iters; it++) {
        matmul_nn(Z, Y, T, n); /* T = (3I - Z Y) / 2 */
        for (long i = 0; i < nn; i++) T[i] = 0.5 * ((i / n == i % n) * 3.0 - T[i]);
        matmul_nn(Y, T, W, n);
        memcpy(Y, W, (size_t)nn * sizeof(double));
        matmul_nn(T, Z, W, n);
        memcpy(Z, W, (size_t)nn * sizeof(double));
        matmul_nn(Y, Y, W, n);
        for (long i = 0; i < nn; i++) W[i] -= A[i] / norm;
        double r = frob(W, nn);
        if (!isfinite(r)) {
            st = rq_err_set(err, RQ_ENUM, "sqrtm_newton_schulz: diverged at iteration %d (matrix not SPD?)", it);
            goto done;
        }
        if (r < 1e-14) break;
    }
    double sn = sqrt(norm);
    for (long i = 0; i < nn; i++) out[i] = Y[i] * sn;
    if (resid) {
        matmul_nn(out, out, W, n);
        for (long i = 0; i < nn; i++) W[i] -= A[i];
        *resid = frob(W, nn) / norm;
    }
done:
    free(Y), free(Z), free(T), free(W);
    return st;
}

/* ------------------------------------------------------------ Frechet distance */

rq_status rq_frechet_distance(const double *mu1, const double *c1, const double *mu2, const double *c2, int d,
                              double *out, rq_err *err) {
    if (!mu1 || !c1 || !mu2 || !c2 || !out || d < 1)
        return rq_err_set(err, RQ_EINVAL, "frechet distance: bad argument (d = %d)", d);
    long dd = (long)d * d;
    if (!all_finite(mu1, d) || !all_finite(mu2, d) || !all_finite(c1, dd) || !all_finite(c2, dd))
        return rq_err_set(err, RQ_ENUM, "frechet distance: non-finite mean or covariance");
    double *S = malloc((size_t)dd * sizeof(double)), *T = malloc((size_t)dd * sizeof(double)),
           *M = malloc((size_t)dd * sizeof(double)), *w = malloc((size_t)d * sizeof(double));
    rq_status st = RQ_OK;
    if (!S || !T || !M || !w) {
        st = rq_err_set(err, RQ_ENOMEM, "frechet distance: out of memory (d = %d)", d);
        goto done;
    }
    /* tr sqrt(C1 C2) = tr sqrt(S C2 S) with S = sqrt(C1): S C2 S is symmetric PSD */
    if ((st = rq_sqrtm_psd(c1, d, S, err))) goto done;
    matmul_nn(S, c2, T, d);
    matmul_nn(T, S, M, d);
    if ((st = rq_sym_eig(M, d, w, NULL, err))) goto done;
    double tr_sqrt = 0, tr1 = 0, tr2 = 0, diff = 0;
    for (int i = 0; i < d; i++) {
        tr_sqrt += w[i] > 0 ? sqrt(w[i]) : 0;
        tr1 += c1[(long)i * d + i];
        tr2 += c2[(long)i * d + i];
        diff += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    }
    double fid = diff + tr1 + tr2 - 2.0 * tr_sqrt;
    *out = fid > 0 ? fid : 0; /* a distance: only round-off takes it below 0 */
done:
    free(S), free(T), free(M), free(w);
    return st;
}

rq_status rq_fid_from_stats(const rq_fstats *a, const rq_fstats *b, double *out, rq_err *err) {
    if (!a || !b || !a->mu || !b->mu) return rq_err_set(err, RQ_EINVAL, "fid: NULL statistics");
    if (a->dim != b->dim)
        return rq_err_set(err, RQ_ESHAPE, "fid: feature dimensions differ (%d vs %d)", a->dim, b->dim);
    return rq_frechet_distance(a->mu, a->cov, b->mu, b->cov, a->dim, out, err);
}

/* ------------------------------------------------------------ Inception score */

rq_status rq_inception_score(const float *p, long n, int k, int splits, double *mean, double *std, rq_err *err) {
    if (!p || !mean || k < 1) return rq_err_set(err, RQ_EINVAL, "inception score: bad argument");
    if (splits < 1 || n < splits)
        return rq_err_set(err, RQ_EINVAL, "inception score: %ld samples cannot make %d splits", n, splits);
    for (long i = 0; i < n * k; i++)
        if (!(p[i] >= 0.0f && p[i] <= 1.0f + 1e-4f))
            return rq_err_set(err, RQ_ENUM, "inception score: probability [%ld,%ld] = %g not in [0,1]", i / k,
                              i % k, (double)p[i]);
    double *py = malloc((size_t)k * sizeof(double));
    if (!py) return rq_err_set(err, RQ_ENOMEM, "inception score: out of memory");
    double s1 = 0, s2 = 0;
    for (int sp = 0; sp < splits; sp++) {
        long a = sp * n / splits, b = (sp + 1) * n / splits; /* the reference's part boundaries */
        for (int j = 0; j < k; j++) py[j] = 0;
        for (long i = a; i < b; i++)
            for (int j = 0; j < k; j++) py[j] += p[i * k + j];
        for (int j = 0; j < k; j++) py[j] /= (double)(b - a);
        double kl = 0;
        for (long i = a; i < b; i++)
            for (int j = 0; j < k; j++) {
                double q = p[i * k + j];
                if (q > 0) kl += q * (log(q) - log(py[j]));
            }
        double score = exp(kl / (double)(b - a));
        s1 += score, s2 += score * score;
    }
    free(py);
    *mean = s1 / splits;
    if (std) {
        double var = s2 / splits - (*mean) * (*mean);
        *std = var > 0 ? sqrt(var) : 0;
    }
    return RQ_OK;
}

/* ------------------------------------------------------------ precision / recall */

#define KNN_BLOCK 256

/* Copy of x[n,d] minus mu[d] (distances are translation invariant; centring
 * keeps |a|^2 + |b|^2 - 2ab from cancelling in float) and row norms^2. */
static float *centred_copy(const float *x, long n, int d, const double *mu, float **norms) {
    float *c = malloc((size_t)n * d * sizeof(float)), *nr = malloc((size_t)n * sizeof(float));
    if (!c || !nr) {
        free(c), free(nr);
        return NULL;
    }
    for (long i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) {
            float v = (float)((double)x[i * d + j] - mu[j]);
            c[i * d + j] = v;
            s += (double)v * v;
        }
        nr[i] = (float)s;
    }
    *norms = nr;
    return c;
}

static int check_finite_f(const float *x, long n, rq_err *err, const char *what) {
    for (long i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            rq_err_set(err, RQ_ENUM, "%s: element %ld is not finite", what, i);
            return -1;
        }
    return 0;
}

static double *col_mean(const float *x, long n, int d) {
    double *mu = calloc((size_t)d, sizeof(double));
    if (!mu) return NULL;
    for (long i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += x[i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= (double)n;
    return mu;
}

/* Radii on centred data: G = Xb X^T by blocks; k smallest of the other rows. */
static rq_status knn_radii_c(const float *x, const float *nx, long n, int d, int k, float *r2, rq_err *err) {
    float *G = malloc((size_t)KNN_BLOCK * n * sizeof(float));
    if (!G) return rq_err_set(err, RQ_ENOMEM, "knn radii: out of memory for %ld points", n);
    for (long i0 = 0; i0 < n; i0 += KNN_BLOCK) {
        int b = (int)(n - i0 < KNN_BLOCK ? n - i0 : KNN_BLOCK);
        rq_sgemm(0, 1, b, (int)n, d, 1.0f, x + i0 * d, d, x, d, 0.0f, G, (int)n);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < b; r++) {
            float best[64]; /* k smallest so far, ascending */
            for (int t = 0; t < k; t++) best[t] = INFINITY;
            const float *g = G + (long)r * n;
            float ni = nx[i0 + r];
            for (long j = 0; j < n; j++) {
                if (j == i0 + r) continue;
                float dd = ni + nx[j] - 2.0f * g[j];
                dd = dd > 0 ? dd : 0;
                if (dd >= best[k - 1]) continue;
                int t = k - 1;
                while (t > 0 && best[t - 1] > dd) best[t] = best[t - 1], t--;
                best[t] = dd;
            }
            r2[i0 + r] = best[k - 1];
        }
    }
    free(G);
    return RQ_OK;
}

static rq_status coverage_c(const float *ref, const float *nref, const float *r2, long nr, const float *q,
                            const float *nq, long n_q, int d, double *frac, rq_err *err) {
    float *G = malloc((size_t)KNN_BLOCK * nr * sizeof(float));
    if (!G) return rq_err_set(err, RQ_ENOMEM, "manifold coverage: out of memory for %ld points", nr);
    long inside = 0;
    for (long i0 = 0; i0 < n_q; i0 += KNN_BLOCK) {
        int b = (int)(n_q - i0 < KNN_BLOCK ? n_q - i0 : KNN_BLOCK);
        rq_sgemm(0, 1, b, (int)nr, d, 1.0f, q + i0 * d, d, ref, d, 0.0f, G, (int)nr);
#pragma omp parallel for schedule(static) reduction(+ : inside)
        for (int r = 0; r < b; r++) {
            const float *g = G + (long)r * nr;
            float ni = nq[i0 + r];
            for (long j = 0; j < nr; j++)
                if (ni + nref[j] - 2.0f * g[j] <= r2[j]) {
                    inside++;
                    break;
                }
        }
    }
    free(G);
    *frac = (double)inside / (double)n_q;
    return RQ_OK;
}

static rq_status check_knn_args(long n, int d, int k, const char *what, rq_err *err) {
    if (d < 1) return rq_err_set(err, RQ_EINVAL, "%s: bad feature dimension %d", what, d);
    if (k < 1 || k > 64) return rq_err_set(err, RQ_EINVAL, "%s: k = %d, expected 1..64", what, k);
    if (n <= k) return rq_err_set(err, RQ_EINVAL, "%s: %ld points, need more than k = %d", what, n, k);
    if (n > 2000000000L) return rq_err_set(err, RQ_EINVAL, "%s: %ld points is too many", what, n);
    return RQ_OK;
}

rq_status rq_knn_radii2(const float *x, long n, int d, int k, float *r2, rq_err *err) {
    if (!x || !r2) return rq_err_set(err, RQ_EINVAL, "knn radii: NULL argument");
    if (check_knn_args(n, d, k, "knn radii", err) || check_finite_f(x, n * d, err, "knn radii: features"))
        return err ? err->code : RQ_EINVAL;
    float *nx = NULL, *xc = NULL;
    double *mu = col_mean(x, n, d);
    if (mu) xc = centred_copy(x, n, d, mu, &nx);
    free(mu);
    if (!xc) return rq_err_set(err, RQ_ENOMEM, "knn radii: out of memory for %ld points", n);
    rq_status st = knn_radii_c(xc, nx, n, d, k, r2, err);
    free(xc), free(nx);
    return st;
}

rq_status rq_manifold_coverage(const float *ref, const float *r2, long nr, const float *q, long nq, int d,
                               double *frac, rq_err *err) {
    if (!ref || !r2 || !q || !frac || nr < 1 || nq < 1 || d < 1 || nr > 2000000000L)
        return rq_err_set(err, RQ_EINVAL, "manifold coverage: bad argument");
    if (check_finite_f(ref, nr * d, err, "manifold coverage: reference") ||
        check_finite_f(q, nq * d, err, "manifold coverage: queries"))
        return RQ_ENUM;
    float *nref = NULL, *nq_ = NULL, *rc = NULL, *qc = NULL;
    double *mu = col_mean(ref, nr, d);
    if (mu) rc = centred_copy(ref, nr, d, mu, &nref);
    if (rc) qc = centred_copy(q, nq, d, mu, &nq_);
    free(mu);
    rq_status st = qc ? coverage_c(rc, nref, r2, nr, qc, nq_, nq, d, frac, err)
                      : rq_err_set(err, RQ_ENOMEM, "manifold coverage: out of memory");
    free(rc), free(nref), free(qc), free(nq_);
    return st;
}

rq_status rq_precision_recall(const float *real, long n_real, const float *fake, long n_fake, int d, int k,
                              double *precision, double *recall, rq_err *err) {
    if (!real || !fake || !precision || !recall) return rq_err_set(err, RQ_EINVAL, "precision/recall: NULL argument");
    if (check_knn_args(n_real, d, k, "precision/recall (real)", err) ||
        check_knn_args(n_fake, d, k, "precision/recall (generated)", err) ||
        check_finite_f(real, n_real * d, err, "precision/recall: real features") ||
        check_finite_f(fake, n_fake * d, err, "precision/recall: generated features"))
        return err ? err->code : RQ_EINVAL;
    float *nr = NULL, *nf = NULL, *rc = NULL, *fc = NULL, *rr = NULL, *rf = NULL;
    double *mu = col_mean(real, n_real, d);
    if (mu) rc = centred_copy(real, n_real, d, mu, &nr);
    if (rc) fc = centred_copy(fake, n_fake, d, mu, &nf);
    free(mu);
    rr = malloc((size_t)n_real * sizeof(float));
    rf = malloc((size_t)n_fake * sizeof(float));
    rq_status st = RQ_OK;
    if (!fc || !rr || !rf) st = rq_err_set(err, RQ_ENOMEM, "precision/recall: out of memory");
    if (!st) st = knn_radii_c(rc, nr, n_real, d, k, rr, err);
    if (!st) st = knn_radii_c(fc, nf, n_fake, d, k, rf, err);
    if (!st) st = coverage_c(rc, nr, rr, n_real, fc, nf, n_fake, d, precision, err);
    if (!st) st = coverage_c(fc, nf, rf, n_fake, rc, nr, n_real, d, recall, err);
    free(rc), free(nr), free(fc), free(nf), free(rr), free(rf);
    return st;
}
