/* tgemm.h: integer GEMM of int8 activation codes with ternary weights.
 *
 *   C[M,N] = A[M,K] * W[N,K]^T        (exact int32)
 *
 * A: int8 codes, row-major with row stride lda (one row per token; any value
 *    in [-128, 127]). W: ternary codes in the "2bit" layout of tpack.h for an
 *    N x K matrix (rq_t2_pack / rq_trit5_to_t2); the kernels trust it, so
 *    validate data from files once with rq_t2_check. K must be a multiple of
 *    4, 4 <= K <= 8192; M, N >= 0 arbitrary.
 *
 * Every variant returns exactly the same integers (int32 accumulation,
 * |C| <= 128*K < 2^21, no overflow anywhere):
 *   scalar : plain loops (the reference the tests compare to);
 *   AVX2   : pmaddubsw (u8 weight+1 in {0,1,2} x s8 activation), pair sums
 *            accumulated in int16 for up to 64 column quads (|sum| <= 32768
 *            by the bound 2*2*128 per pair), widened with pmaddwd;
 *   VNNI   : AVX-512 vpdpbusd (u8 weight+1 x s8 activation) into int32;
 *   AMX    : AMX-INT8 tdpbsud on 16x64 tiles (s8 activation x u8 weight+1),
 *            32 x 32 micro-tiles, for K % 64 == 0 (else the VNNI kernels).
 * The SIMD paths multiply with w+1 and subtract the row sum of A (sum (w+1)a
 * = sum w a + sum a), so activations need no offset and the unpack of the
 * 2bit layout is a shift and an AND.
 *
 * Blocking (per thread): rows of A in blocks of MB (their row sums in a
 * small buffer), columns in blocks of NB whose packed weights are unpacked
 * once per (MB, NB) block into an int8 buffer sized for L2, K in blocks of
 * about 384 so that the weight slice of a micro-panel stays in L1 while
 * all MB rows stream past it. The micro-kernel keeps an MR x NR tile (VNNI
 * 8 x 48, AVX2 4 x 16, scalar 4 x 16) in registers over one K block
 * (partial sums between K blocks go to a small per-thread buffer).
 * OpenMP: C is cut into a grid of tiles, up to four per thread, taken
 * dynamically (threads differ in speed; no barriers);
 * inside an OpenMP parallel region the call runs on the calling thread
 * only. The per-thread buffer (unpacked weights, partial sums, row sums,
 * < 0.6 MiB) is thread-local, allocated on first use and grown when a
 * larger K arrives (freed when the thread exits), so steady-state calls
 * do not allocate.
 *
 * rq_tgemm_scaled fuses the dequantization into the store:
 *   Y[m,n] = ((float)C[m,n] * row_scale[m]) * col_scale[n] + bias[n]
 * evaluated exactly in this order in float (no FMA; no bias add when bias is
 * NULL), so every ISA gives bit-identical floats as well. */
#ifndef ROBUQ_TGEMM_H
#define ROBUQ_TGEMM_H

#include "robuq/common.h"

#define RQ_TGEMM_MAX_K 8192

typedef enum { RQ_TGEMM_AUTO = 0, RQ_TGEMM_SCALAR, RQ_TGEMM_AVX2, RQ_TGEMM_VNNI, RQ_TGEMM_AMX } rq_tgemm_isa;

/* C = A W^T (int32, row stride ldc >= N). RQ_EINVAL on bad sizes / NULLs,
 * RQ_ENOMEM if the unpack buffer cannot be allocated. */
rq_status rq_tgemm(int M, int N, int K, const int8_t *A, int lda, const uint8_t *W, int32_t *C,
                   int ldc, rq_err *err);

/* Y = (C * row_scale[m]) * col_scale[n] + bias[n]; bias may be NULL.
 * row_scale[M] and col_scale[N] are required. Y has row stride ldy >= N. */
rq_status rq_tgemm_scaled(int M, int N, int K, const int8_t *A, int lda, const uint8_t *W,
                          const float *row_scale, const float *col_scale, const float *bias,
                          float *Y, int ldy, rq_err *err);

/* Reference on plain codes: W[n*ldw + k] in {-1,0,1} (not packed), any K >= 0.
 * Triple loop, for tests. */
rq_status rq_tgemm_ref(int M, int N, int K, const int8_t *A, int lda, const int8_t *W, int ldw,
                       int32_t *C, int ldc, rq_err *err);

/* Force an instruction set (tests compare every path to the scalar one).
 * Returns the ISA actually in use: a request the CPU cannot run falls back
 * to the best one below it. Process-wide; not meant to be changed while
 * another thread runs a tgemm. */
rq_tgemm_isa rq_tgemm_set_isa(rq_tgemm_isa isa);
rq_tgemm_isa rq_tgemm_get_isa(void);
const char *rq_tgemm_isa_name(rq_tgemm_isa isa);
/* 1 if this CPU can run isa. */
int rq_tgemm_isa_supported(rq_tgemm_isa isa);

#endif
