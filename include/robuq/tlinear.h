/* tlinear.h: integer (exported) form of a RobuQ linear layer.
 *
 * Forward on fp32 x[M, in] -> y[M, out], one token per row:
 *   x' = x H                      (per-token FWHT, if hadamard)
 *   codes, unit = rq_actq_encode(x')   (int8 codes, one float unit per token;
 *                                  codes*unit == the fake-quant value bit for bit)
 *   C = codes * W'^T              (rq_tgemm: ternary W' = codes of W H, exact int32)
 *   y[m,n] = (C[m,n] * unit[m]) * gamma[n] + bias[n]   (float, in this order)
 * which is the fake-quant linear of qlinear.c, y = Q_b(x H) ternary(W H)^T + b,
 * up to float rounding: the integer sum is exact, so the only differences
 * are the rounding of code*unit products and of the float accumulation on
 * the fake-quant side (relative ~1e-7 per term).
 *
 * Memory: the layer owns its packed weights (2bit layout of tpack.h),
 * gamma and bias. Workspace for M tokens (rq_tlinear_ws_bytes: M*in int8
 * codes + M float units, about M*in bytes) either
 *   - belongs to the layer: rq_tlinear_forward grows it on demand (the first
 *     call with a larger M allocates; later calls do not). One caller thread
 *     at a time per layer; the work inside is OpenMP-parallel.
 *   - or is passed by the caller: rq_tlinear_forward_ws on a const layer,
 *     safe from several threads at once with one workspace each (share one
 *     workspace of the largest layer between the layers of a model).
 * Nothing else is allocated per call: the rotation runs on chunks of rows
 * in a 32 KiB stack buffer per thread (fused with the quantizer, so x is
 * read once), and rq_tgemm keeps a per-thread unpack buffer, allocated once. */
#ifndef ROBUQ_TLINEAR_H
#define ROBUQ_TLINEAR_H

#include "robuq/common.h"
#include "robuq/hadamard.h"
#include "robuq/quant.h"
#include "robuq/tpack.h"

typedef struct rq_tlinear {
    int out, in;     /* y = x W^T: W is out x in */
    int a_bits;      /* 1..8 */
    int a_method;    /* RQ_ACTQ_ROBUST / RQ_ACTQ_MINMAX */
    int hadamard;    /* 1: rotate tokens (and W was rotated before ternarizing) */
    rq_hadamard had; /* plan for `in` when hadamard */
    uint8_t *w;      /* ternary codes of W', 2bit layout, rq_t2_bytes(out, in) bytes */
    float *gamma;    /* [out] per-channel scale */
    float *bias;     /* [out] or NULL */
    void *ws;        /* layer-owned workspace (rq_tlinear_forward) */
    size_t ws_bytes;
} rq_tlinear;

/* From a latent FP weight w[out, in] (the QAT parameter, original basis):
 * W' = W H if hadamard, then rq_ternary_encode (codes + gamma) and pack.
 * bias[out] may be NULL. Requires in % 4 == 0, 4 <= in <= RQ_TGEMM_MAX_K,
 * out >= 1, a valid (a_bits, a_method) and, with hadamard, a supported in
 * (rq_hadamard_supported). L is overwritten (call rq_tlinear_free on a
 * used one first); on error L is left empty. */
rq_status rq_tlinear_init_float(rq_tlinear *L, const float *w, const float *bias, int out, int in,
                                int a_bits, int a_method, int hadamard, rq_err *err);

/* From exported data: packed codes of W' (already rotated) in format fmt
 * (w_bytes must be rq_trit5_bytes(out, in) or rq_t2_bytes(out, in); the
 * bytes are validated: RQ_EFORMAT names the row/byte), gamma[out] (finite,
 * > 0), bias[out] (finite) or NULL. Everything is copied. */
rq_status rq_tlinear_init_packed(rq_tlinear *L, int out, int in, rq_tpack_format fmt,
                                 const uint8_t *w_packed, size_t w_bytes, const float *gamma,
                                 const float *bias, int a_bits, int a_method, int hadamard,
                                 rq_err *err);

/* Workspace bytes for M tokens (0 for M <= 0 or an empty layer). */
size_t rq_tlinear_ws_bytes(const rq_tlinear *L, long M);
/* Where a workspace of rq_tlinear_ws_bytes(L, M) bytes keeps the codes
 * [M*in] and the units [M] (for callers of rq_tlinear_encode). */
void rq_tlinear_ws_parts(const rq_tlinear *L, long M, void *ws, int8_t **codes, float **unit);
/* Grows the layer-owned workspace to M tokens now (optional). */
rq_status rq_tlinear_reserve(rq_tlinear *L, long M, rq_err *err);

/* y[M, out] from x[M, in] (row-major, not overlapping). NaN/Inf in a token
 * gives NaN in that output row (unit NaN, see quant.h). */
rq_status rq_tlinear_forward(rq_tlinear *L, const float *x, float *y, long M, rq_err *err);
rq_status rq_tlinear_forward_ws(const rq_tlinear *L, const float *x, float *y, long M, void *ws,
                                size_t ws_bytes, rq_err *err);

/* The two halves of the forward, for callers that build the input rows on
 * the fly (the fused integer DiT block: layernorm + modulate, or GELU, go
 * straight into the encoder without an fp32 tensor in between).
 * rq_tlinear_encode: fn writes rows r0..r0+n-1 of the layer input (n*in
 * floats, n <= 8192/in) into buf; they are rotated (if hadamard) and
 * encoded into codes[M*in] and unit[M]. fn runs on OpenMP threads, one
 * chunk of rows each, so it must only read shared data or write rows of its
 * own chunk. rq_tlinear_forward_codes: y[M, out] from those codes. The
 * forward above is exactly these two calls with fn copying rows of x. */
typedef void (*rq_tl_rows_fn)(void *ctx, long r0, long n, float *buf);
rq_status rq_tlinear_encode(const rq_tlinear *L, rq_tl_rows_fn fn, void *ctx, long M, int8_t *codes, float *unit,
                            rq_err *err);
rq_status rq_tlinear_forward_codes(const rq_tlinear *L, const int8_t *codes, const float *unit, float *y, long M,
                                   rq_err *err);
/* Ternary codes of W' (out x in, {-1,0,1}) and trit5 bytes of them, for the
 * exporter and tests. */
rq_status rq_tlinear_codes(const rq_tlinear *L, int8_t *codes, rq_err *err);
rq_status rq_tlinear_trit5(const rq_tlinear *L, uint8_t *t5, rq_err *err);

/* Frees what the layer owns and zeroes it (NULL and zeroed layers are fine). */
void rq_tlinear_free(rq_tlinear *L);

#endif
