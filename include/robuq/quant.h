/* quant.h: RobuQ quantizers (numerics only; autograd wiring lives elsewhere).
 *
 * All quantizers work row by row. The *_rowwise functions have the
 * rq_rowwise_fn signature of ops.h so they plug into rq_ste() as STE forward
 * functions: y = fake-quantized x, mask[i] = 1 where the gradient passes
 * (mask may be NULL; x == y, in place, is allowed).
 *
 * ---- Ternary weights (W1.58, BitNet b1.58) ----
 * Per output channel (row): gamma = mean|W_row| + 1e-8 (eps keeps all-zero
 * rows finite), Wq = gamma * clamp(round(W / gamma), -1, 1). round is rint
 * (half-to-even, like torch.round), so |W| = gamma/2 exactly maps to 0.
 * Gradient: identity (mask all ones).
 *
 * ---- Activations, per token (row), b in 1..8 bits ----
 * Every grid is "value = code * unit" with integer codes in
 * [code_min, code_max] (int8 for all b) and one float unit per row:
 *   mid-rise   : odd codes -(2^b-1), ..., -1, 1, ..., 2^b-1; unit = step/2
 *                (2 bits: levels {-3,-1,1,3} * step/2; 1 bit: sign(x) * s)
 *   mid-tread  : codes [-2^(b-1), 2^(b-1)-1] (asym) or +-(2^(b-1)-1) (sym);
 *                unit = step
 * The clip s is the largest positive level, s = code_max * unit:
 *   RQ_ACTQ_ROBUST : s = alpha_b * rms(row). Rows are expected to be
 *                    Hadamard-rotated (near Gaussian); alpha_b is the
 *                    MSE-optimal clip for N(0,1) (table in quant.c).
 *   RQ_ACTQ_MINMAX : s = max|row| (the "no robust quantizer" ablation), on
 *                    the same grid as robust for that b.
 * Quantization = nearest level after clamping x to [code_min, code_max]*unit;
 * mask = 1 iff x lies inside that clamp range (STE; 0 where clipped; a
 * relative slack of 8 float ulps keeps the min-max row maximum inside).
 * Grid per b: the MSE-optimal one on N(0,1) among grids whose codes fit int8:
 * mid-rise for b = 1..7, asymmetric mid-tread for b = 8 (mid-rise would need
 * codes up to +-255; it is only 0.02% better in MSE there).
 * Special rows: all-zero (or rms below FLT_MIN) -> unit 0, codes 0, y = 0,
 * mask 1; a row containing NaN/Inf -> y = NaN, mask 0, unit NaN (so the
 * training loop's finiteness check trips instead of hiding it). */
#ifndef ROBUQ_QUANT_H
#define ROBUQ_QUANT_H

#include "robuq/common.h"
#include "robuq/hadamard.h"

/* ---------------- ternary weights ---------------- */
#define RQ_TERNARY_EPS 1e-8f

/* STE forward (rq_rowwise_fn): w[rows, cols] -> wq; mask (if given) = 1.
 * arg is unused (may be NULL). Bad arguments: nothing is written. */
void rq_ternary_rowwise(const float *w, float *wq, uint8_t *mask, long rows, int cols,
                        const void *arg);
/* gamma of one row: mean|w| (double accumulation) + RQ_TERNARY_EPS. */
float rq_ternary_gamma(const float *w, int cols);
/* Integer form for export: codes[rows*cols] in {-1,0,1}, gamma[rows];
 * gamma[r] * codes[i] equals rq_ternary_rowwise's output bit for bit. */
rq_status rq_ternary_encode(const float *w, int8_t *codes, float *gamma, long rows, int cols,
                            rq_err *err);
rq_status rq_ternary_decode(const int8_t *codes, const float *gamma, float *w, long rows, int cols,
                            rq_err *err);
/* Both forms in one pass (QAT's integer forward): any of wq, codes, gamma
 * may be NULL; the values are those of the two functions above. */
void rq_ternary_rows(const float *w, float *wq, int8_t *codes, float *gamma, long rows, int cols);

/* ---------------- activations ---------------- */
typedef enum { RQ_ACTQ_ROBUST = 0, RQ_ACTQ_MINMAX = 1 } rq_actq_method;
typedef enum { RQ_GRID_MIDRISE = 0, RQ_GRID_MIDTREAD_SYM = 1, RQ_GRID_MIDTREAD_ASYM = 2 } rq_grid;

#define RQ_ACTQ_MIN_BITS 1
#define RQ_ACTQ_MAX_BITS 8

/* Passed as `arg` to rq_actq_rowwise. */
typedef struct {
    int bits;   /* 1..8 */
    int method; /* rq_actq_method */
} rq_actq_cfg;

/* One row of the precomputed table (units of sigma of N(0,1)). */
typedef struct {
    int bits;
    rq_grid grid;
    int code_min, code_max; /* integer code range (int8) */
    int code_stride;        /* 2: odd codes only (mid-rise), 1: all integers */
    double alpha;           /* clip / sigma: s = alpha * rms (robust) */
    double step;            /* level spacing / sigma at that alpha */
    double mse;             /* E[(x - q(x))^2], x ~ N(0,1), at that alpha */
} rq_actq_grid_info;

/* Table entry for b bits, NULL if b is outside 1..8. */
const rq_actq_grid_info *rq_actq_info(int bits);
const char *rq_grid_name(rq_grid g);
const char *rq_actq_method_name(int method);
/* "robust" / "minmax" -> method; RQ_EINVAL otherwise. */
rq_status rq_actq_method_parse(const char *s, int *method, rq_err *err);
/* RQ_EINVAL (with a message) unless 1 <= bits <= 8 and method is known. */
rq_status rq_actq_cfg_check(const rq_actq_cfg *cfg, rq_err *err);

/* Per-row unit (value of code 1) for this cfg: robust alpha*rms/code_max,
 * minmax max|x|/code_max. 0 for all-zero rows, NaN for non-finite rows. */
float rq_actq_row_unit(const rq_actq_cfg *cfg, const float *x, int n);

/* STE forward (rq_rowwise_fn); arg = const rq_actq_cfg *. An invalid cfg
 * (check it once with rq_actq_cfg_check) fills y with NaN and mask with 0. */
void rq_actq_rowwise(const float *x, float *y, uint8_t *mask, long rows, int row_len,
                     const void *arg);
/* Checked form of the same. */
rq_status rq_actq_quantize(const rq_actq_cfg *cfg, const float *x, float *y, uint8_t *mask,
                           long rows, int n, rq_err *err);

/* Integer form for the inference kernels: codes[rows*n] (int8, see grids
 * above) and unit[rows] with (float)codes[i] * unit[r] == the fake-quant
 * output bit for bit. */
rq_status rq_actq_encode(const rq_actq_cfg *cfg, const float *x, int8_t *codes, float *unit,
                         long rows, int n, rq_err *err);
rq_status rq_actq_decode(const int8_t *codes, const float *unit, float *y, long rows, int n,
                         rq_err *err);
/* Fake-quant values, STE mask, codes and units in one pass (QAT's integer
 * forward); any output may be NULL. Same values as rq_actq_rowwise and
 * rq_actq_encode. */
void rq_actq_rows(const rq_actq_cfg *cfg, const float *x, float *y, uint8_t *mask, int8_t *codes, float *unit,
                  long rows, int n);

/* Rotate then fake-quantize: y = Q(x H) row by row; mask refers to the
 * rotated values (backward: dx = (dy * mask) H, H symmetric). The rms is
 * taken after the rotation (it is invariant, up to float rounding). x == y
 * is allowed, otherwise the buffers must not overlap. h->n must equal n. */
rq_status rq_actq_rotate_quant(const rq_hadamard *h, const float *x, float *y, uint8_t *mask,
                               long rows, int n, const rq_actq_cfg *cfg, rq_err *err);

#endif
