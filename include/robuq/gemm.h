/* gemm.h: fp32 matrix multiply, row-major.
 *
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 *
 * op(X) is X or X^T (trans flag). lda/ldb/ldc are row strides in elements
 * of the matrices as stored. Cache-blocked with a SIMD micro-kernel chosen at
 * run time (AVX-512, AVX2+FMA, scalar); rq_sgemm splits work over OpenMP
 * threads, rq_sgemm_st runs on the calling thread only (for use inside an
 * already-parallel region, e.g. per attention head). */
#ifndef ROBUQ_GEMM_H
#define ROBUQ_GEMM_H

typedef enum { RQ_GEMM_AUTO = 0, RQ_GEMM_SCALAR, RQ_GEMM_AVX2, RQ_GEMM_AVX512 } rq_gemm_isa;

void rq_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
void rq_sgemm_st(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* Force an instruction set (tests compare every path to the scalar one).
 * Returns the ISA actually in use (a request the CPU cannot run falls back). */
rq_gemm_isa rq_gemm_set_isa(rq_gemm_isa isa);
rq_gemm_isa rq_gemm_get_isa(void);
const char *rq_gemm_isa_name(rq_gemm_isa isa);

/* Plain triple loop in double accumulation: the reference for tests. */
void rq_sgemm_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

#endif
