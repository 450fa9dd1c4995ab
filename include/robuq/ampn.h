/* ampn.h: AMPN, activation-only mixed precision (DESIGN.md section 4).
 *
 * Weights stay ternary everywhere; each searchable linear (the qkv, proj,
 * fc1 and fc2 of every block) gets its own activation bit-width b_i from a
 * candidate set so that the weighted average of the bits meets a budget:
 *
 *     minimize  sum_i sens[i][b_i]   subject to   sum_i w_i b_i <= budget * sum_i w_i
 *
 * with w_i = the layer's MACs (default) or 1 (layer mean). sens[i][b] is the
 * damage of lowering layer i alone to b bits while every other layer sits at
 * a high reference precision, measured on calibration batches spread over
 * the diffusion timesteps.
 *
 * The allocation is exact dynamic programming over an integer budget: the
 * weights are divided by their greatest common divisor (DiT layers have MACs
 * in the ratio qkv:proj:fc1:fc2 = 3:1:4:4, so the budget axis is tiny). If
 * the weights are not integers, or the integer budget would exceed
 * RQ_AMPN_MAX_UNITS cells, each weight is rounded UP to a grid of
 * sum(w)/RQ_AMPN_GRID, which keeps every returned map within the true
 * budget (it may then miss the optimum by at most that rounding). */
#ifndef ROBUQ_AMPN_H
#define ROBUQ_AMPN_H

#include "robuq/dataset.h"
#include "robuq/diffusion.h"
#include "robuq/dit.h"
#include "robuq/qlinear.h"

#define RQ_AMPN_MAX_CANDS 8
#define RQ_AMPN_MAX_UNITS 2000000L /* integer budget cells before falling back to the grid */
#define RQ_AMPN_GRID 4096L

typedef struct {
    int *bits;        /* [n] chosen bits per layer (caller's buffer) */
    double cost;      /* sum of sens over the chosen bits (the predicted damage) */
    double avg_bits;  /* weighted average bits actually reached (<= budget) */
    int exact;        /* 1: weights were integral, the optimum is exact */
} rq_ampn_result;

/* Exact allocation. sens[n * n_cands] (row i = layer i, column k = cands[k]),
 * weight[n] > 0, cands distinct in 1..8. Infeasible budgets (below the
 * average of the smallest candidate) give RQ_EINVAL with the smallest
 * reachable average in the message. res->bits must hold n ints. */
rq_status rq_ampn_allocate(int n, int n_cands, const int *cands, const double *sens, const double *weight,
                           double budget, rq_ampn_result *res, rq_err *err);

/* Makes each layer's row non-increasing in bits (sens[k] = max(sens[k],
 * sens[k+1]) from the top candidate down; cands ascending): more bits never
 * predict more damage. Measurement noise otherwise lets the DP "save" bits
 * by lowering a layer whose measured damage happened to be negative. */
void rq_ampn_monotone(int n, int n_cands, const int *cands, double *sens);

/* ---- sensitivity measurement ---- */

typedef enum { RQ_AMPN_METRIC_LOSS = 0, RQ_AMPN_METRIC_OUTPUT = 1 } rq_ampn_metric;

typedef struct {
    int n_cands, cands[RQ_AMPN_MAX_CANDS];
    int ref_bits;        /* bits of all other searchable layers while probing (0 = FP) */
    int metric;          /* rq_ampn_metric */
    int calib_batches, batch_size;
    uint64_t seed;       /* calibration noise */
    rq_quant_opts quant; /* method, hadamard, adaLN bits, ... of the QAT run */
} rq_ampn_opts;

/* The searchable linears of a model: block qkv/proj/fc1/fc2 in model order.
 * Fills layers/names (max entries) and the MACs of one sample per layer;
 * returns the count. */
int rq_ampn_layers(rq_dit *m, rq_dit_linear **layers, const char **names, double *macs, int max);

/* Called after each probe (done of total) so tools can draw a progress bar. */
typedef void (*rq_ampn_progress_fn)(int done, int total, void *arg);

/* Measures sens[n_layers * n_cands] on the first calib_batches*batch_size
 * samples of data (t spread evenly over [0, T), fixed noise). metric LOSS:
 * mean increase of the diffusion loss over the reference configuration;
 * OUTPUT: mean squared difference of the model output from the reference
 * configuration's output. The model's quantizers are replaced (the caller
 * re-quantizes it afterwards if it keeps using it); *base_loss receives the
 * reference configuration's loss. */
rq_status rq_ampn_sensitivity(rq_dit *m, const rq_diffusion *d, const rq_dataset *data, const rq_ampn_opts *o,
                              double *sens, double *base_loss, rq_ampn_progress_fn progress, void *progress_arg,
                              rq_err *err);

/* Writes "layer bits" lines (the format [quant] precision_map reads) atomically,
 * with a header comment (budget, weighting, average bits, predicted cost). */
rq_status rq_ampn_write_map(const char *path, int n, const char *const *names, const int *bits,
                            const char *header, rq_err *err);

#endif
