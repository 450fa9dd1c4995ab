/* svd.h: singular value decompositions for the low-rank branch.
 *
 * rq_svd_jacobi: exact thin SVD of a small dense matrix by one-sided
 * Jacobi (Hestenes): rotate column pairs of A until all are orthogonal;
 * the column norms are then the singular values, the normalized columns
 * the left vectors and the accumulated rotations the right vectors. Double
 * precision; converges quadratically; cost O(sweeps * m n^2).
 *
 * rq_svd_lowrank: rank-r approximation of a large matrix by randomized
 * subspace iteration (Halko, Martinsson & Tropp 2011, alg. 4.4):
 *   Q = orth(W G), G Gaussian n x (r+p);  q times: Q = orth(W orth(W^T Q));
 *   B = Q^T W (small), B = Ub S Vt by Jacobi;  U = Q Ub.
 * With a few power iterations the error is within a small factor of the
 * optimum sqrt(sum_{i>r} s_i^2) (Eckart-Young); the test checks it. */
#ifndef ROBUQ_SVD_H
#define ROBUQ_SVD_H

#include <stdint.h>

#include "robuq/common.h"

/* A[m x n] row-major, m >= n >= 1. Outputs (any may be NULL): U[m x n],
 * S[n] (descending), V[n x n] with A = U diag(S) V^T. */
rq_status rq_svd_jacobi(const double *A, int m, int n, double *U, double *S, double *V, rq_err *err);

/* W[m x n] row-major (float), 1 <= r <= min(m, n). Outputs U[m x r],
 * S[r] (descending), Vt[r x n]; W ~ U diag(S) Vt. iters power iterations
 * (2 is plenty for weight matrices), seed for the Gaussian test matrix. */
rq_status rq_svd_lowrank(const float *W, int m, int n, int r, int iters, uint64_t seed, float *U, float *S,
                         float *Vt, rq_err *err);

#endif
