/* metrics.h: sample-quality metrics on feature vectors (robuq-eval).
 *
 * - Feature statistics (mean, covariance) accumulated in double.
 * - Frechet distance between two Gaussians:
 *     ||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)),
 *   with tr((C1 C2)^(1/2)) = tr((S1 C2 S1)^(1/2)), S1 = C1^(1/2): both
 *   matrices are symmetric PSD, so two symmetric eigendecompositions give
 *   it without complex arithmetic (negative round-off eigenvalues -> 0).
 * - Matrix square roots: symmetric eigendecomposition (cyclic Jacobi) and
 *   the coupled Newton-Schulz iteration (for SPD matrices).
 * - Inception-style score exp(E_x KL(p(y|x) || p(y))) over splits.
 * - Improved precision / recall (Kynkaanniemi et al. 2019): the k-NN
 *   manifold of a set is the union of balls around its points whose radius
 *   is the distance to the k-th nearest other point of the same set.
 *   precision = fraction of generated points inside the real manifold,
 *   recall = fraction of real points inside the generated manifold.
 *
 * Matrices are row-major double [n, n]. No function aborts: bad arguments
 * give RQ_EINVAL, non-finite input RQ_ENUM, with a message in err. */
#ifndef ROBUQ_METRICS_H
#define ROBUQ_METRICS_H

#include "robuq/common.h"

typedef struct {
    int dim;
    long n;
    double *mu;   /* [dim] */
    double *cov;  /* [dim, dim], unbiased (divides by n-1, as numpy.cov) */
} rq_fstats;

/* Mean and covariance of n >= 2 feature rows x[n, d]. */
rq_status rq_fstats_compute(const float *x, long n, int d, rq_fstats *s, rq_err *err);
/* Allocate (zeroed) stats of dimension d (for loading cached ones). */
rq_status rq_fstats_alloc(rq_fstats *s, int d, rq_err *err);
void rq_fstats_free(rq_fstats *s);

/* Symmetric eigendecomposition by cyclic Jacobi rotations: A = V diag(w) V^T.
 * w ascending; V row-major with eigenvectors in columns (may be NULL when
 * only the eigenvalues are needed). A is not modified. Converges to double
 * round-off; RQ_ENUM if A is not finite. */
rq_status rq_sym_eig(const double *A, int n, double *w, double *V, rq_err *err);
/* Principal square root of a symmetric PSD matrix via rq_sym_eig
 * (eigenvalues below 0, i.e. round-off, are clamped to 0). */
rq_status rq_sqrtm_psd(const double *A, int n, double *out, rq_err *err);
/* Coupled Newton-Schulz iteration Y <- Y (3I - Z Y)/2, Z <- (3I - Z Y)/2 Z
 * on A / ||A||_F (converges for SPD A). iters <= 0: 100; stops early when
 * ||Y Y - A/||A|| ||_F < 1e-14. *resid (may be NULL) gets the final
 * ||out out - A||_F / ||A||_F. */
rq_status rq_sqrtm_newton_schulz(const double *A, int n, int iters, double *out, double *resid, rq_err *err);

/* Frechet distance between N(mu1, C1) and N(mu2, C2) of dimension d. */
rq_status rq_frechet_distance(const double *mu1, const double *c1, const double *mu2, const double *c2, int d,
                              double *out, rq_err *err);
rq_status rq_fid_from_stats(const rq_fstats *a, const rq_fstats *b, double *out, rq_err *err);

/* Inception-style score of class posteriors p[n, k] (rows sum to 1):
 * the n rows are cut into `splits` consecutive parts (as the reference
 * implementation); *mean / *std (population std, may be NULL) over parts. */
rq_status rq_inception_score(const float *p, long n, int k, int splits, double *mean, double *std, rq_err *err);

/* Squared distance of every row of x[n, d] to its k-th nearest other row
 * (self excluded; duplicates count as neighbours at distance 0). r2[n]. */
rq_status rq_knn_radii2(const float *x, long n, int d, int k, float *r2, rq_err *err);
/* Fraction of the rows of q[nq, d] that lie inside the manifold of
 * ref[nr, d] given its squared radii r2[nr] (distance <= radius). */
rq_status rq_manifold_coverage(const float *ref, const float *r2, long nr, const float *q, long nq, int d,
                               double *frac, rq_err *err);
/* precision = coverage of fake by the real manifold, recall = coverage of
 * real by the fake manifold, both with k-NN radii (k = 3 in the paper).
 * n_real, n_fake > k. */
rq_status rq_precision_recall(const float *real, long n_real, const float *fake, long n_fake, int d, int k,
                              double *precision, double *recall, rq_err *err);

#endif
