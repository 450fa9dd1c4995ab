/* hadamard.h: orthonormal Hadamard rotations for the RobustQuantizer.
 *
 * Supported lengths: n = 2^k, 12*2^k and 36*2^k (k >= 0). Every DiT width
 * fits: 384=12*32, 768=12*64, 1024=2^10, 1152=36*32, 1536=12*128,
 * 3072=12*256, 4096=2^12, 4608=36*128. Other sizes are rejected, never
 * zero-padded (padding would break orthogonality).
 *
 *   H_n = H_K (x) H_m / sqrt(n),   n = K*m, K in {1, 12, 36}, m = 2^k
 *
 * H_m is Sylvester's matrix, applied with a fast Walsh-Hadamard butterfly;
 * H_12 comes from Paley construction I (q = 11) and H_36 from Paley
 * construction II (q = 17), both built when the plan is made and applied as
 * a small dense K x K mix. Cost O(n log n + n K) per row.
 *
 * Index convention (row vector x, transform x' = x H_n): element a*m + b of a
 * row belongs to K-block a and position b inside the block.
 *
 * Symmetry: Sylvester and Paley II matrices are symmetric; the Paley I
 * matrix is skew-type (I + S, S^T = -S), so we use an equivalent form
 * (columns 1..q permuted j -> -j mod q and column 0 negated) that is
 * symmetric and still Hadamard. Hence H_n is symmetric AND orthonormal:
 * H_n = H_n^T = H_n^{-1}. Consequences for callers:
 *   - the inverse rotation is the same call (apply twice == identity);
 *   - autograd: the backward of x' = x H is dx = dx' H^T = dx' H, i.e. the
 *     same rq_hadamard_apply on the incoming gradient;
 *   - rotated weights W' = W H satisfy x' W'^T = x H H^T W^T = x W^T.
 *
 * Plans are plain structs with no heap memory and no global cache: make one
 * per layer width (or share a const one between threads); copying a plan
 * struct is fine. */
#ifndef ROBUQ_HADAMARD_H
#define ROBUQ_HADAMARD_H

#include "robuq/common.h"

#define RQ_HADAMARD_MAX_K 36

/* Instruction-set variants of the row transform (bit-identical results). */
enum { RQ_HADAMARD_SCALAR = 0, RQ_HADAMARD_AVX2 = 1, RQ_HADAMARD_AVX512 = 2 };

typedef struct rq_hadamard {
    int n;       /* transform length n = k_base * m (0: not initialised) */
    int k_base;  /* K in {1, 12, 36} */
    int m;       /* power-of-two factor 2^log2m */
    int log2m;
    float scale; /* 1/sqrt(n), applied once per element */
    /* H_K (+-1 entries, row-major K x K, symmetric), pre-multiplied by
     * scale so the K-mix also normalises. Unused when k_base == 1. */
    float hk[RQ_HADAMARD_MAX_K * RQ_HADAMARD_MAX_K];
    int kmix12;  /* K == 12 with the compiled sign table (same floats, no multiplies) */
    int isa;     /* RQ_HADAMARD_*: variant picked at init (best the CPU runs) */
    void (*row_fn)(const struct rq_hadamard *h, float *x); /* that variant */
} rq_hadamard;

/* 1 if n is of the form 2^k, 12*2^k or 36*2^k (n >= 1), else 0. */
int rq_hadamard_supported(int n);

/* Build the plan for length n. RQ_EINVAL (message names n and the supported
 * forms; callers prefix the layer name) if n is unsupported. */
rq_status rq_hadamard_plan_init(rq_hadamard *h, int n, rq_err *err);

/* In place x[r*n .. r*n+n) <- x[r*n ..] H_n for r < rows (one token per
 * row). OpenMP over rows when the work is large. Thread-safe on a const
 * plan. RQ_EINVAL on NULL / uninitialised plan / rows < 0. */
rq_status rq_hadamard_apply(const rq_hadamard *h, float *x, long rows);

/* One row, on the calling thread only (use inside parallel regions). */
rq_status rq_hadamard_apply_row(const rq_hadamard *h, float *x);

/* Dense orthonormal H_n (n x n, row-major, double) for tests and reference
 * code: out[i*n + j] = H_n[i][j]. RQ_EINVAL if n is unsupported. */
rq_status rq_hadamard_dense(int n, double *out, rq_err *err);

/* Use instruction set isa (RQ_HADAMARD_*) or the best supported one below
 * it; returns the one in use (-1 for an uninitialised plan). For tests and
 * benchmarks: plan_init already picks the best. */
int rq_hadamard_set_isa(rq_hadamard *h, int isa);

/* Clears the plan (it owns no memory; provided for symmetry). */
void rq_hadamard_free(rq_hadamard *h);

#endif
