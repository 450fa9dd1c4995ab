/* export.h: packed W1.58 checkpoints ("robuq-w158") for integer inference.
 *
 * File layout (HDF5, written atomically):
 *   /                      attrs format="robuq-w158", version, packing ("trit5" | "2bit"),
 *                          config (the full INI text of the run), source, weights, step,
 *                          attn_bits (q, k, v, P of the attention matmuls; 0 = fp), attn_method
 *   /layers/<layer>/       one group per ternary linear, <layer> = "blocks.3.mlp.fc1":
 *       w_packed  uint8    the ternary codes of W' = W H (H = Hadamard if used, else I),
 *                          packed per `packing` (tpack.h; trit5 = 1.6 bits per weight)
 *       w_scale   f32[out] per-output-channel gamma: W'q = gamma * codes
 *       bias      f32[out]
 *       lowrank_A f32[out, r], lowrank_B f32[r, in]   (only with a low-rank branch;
 *                          then w_packed holds ternary(W' - A B))
 *       attrs     out, in, a_bits (0 = fp activations, else 1..8), a_method ("robust" |
 *                 "minmax"), hadamard (the rotation size, 0 = none)
 *   /fp/<param>            every other parameter as plain fp32 under its DiT name
 *                          (embedders, label table, final layer, FP linears)
 *
 * Loading builds an rq_dit whose ternary linears run the integer path
 * (tlinear.h: FWHT, b-bit codes, ternary x int8 GEMM with int32
 * accumulation, rescale) plus the fp32 low-rank branch; their fp32 latent
 * weights are not kept. With attn_bits > 0 the attention runs the integer
 * kernels of iattn.h. The model runs forward only (no backward). */
#ifndef ROBUQ_EXPORT_H
#define ROBUQ_EXPORT_H

#include "robuq/config.h"
#include "robuq/dit.h"
#include "robuq/tpack.h"

#define RQ_EXPORT_FORMAT "robuq-w158"
#define RQ_EXPORT_VERSION 1

typedef struct {
    rq_tpack_format packing;
    const char *config_text; /* INI text stored in the file (required: it defines the model) */
    const char *source;      /* checkpoint path, for provenance (may be NULL) */
    const char *weights;     /* "ema" / "params" (may be NULL) */
    long step;
} rq_export_opts;

typedef struct {
    long ternary_weights;   /* weights stored as trits */
    long packed_bytes;      /* their w_packed bytes */
    long fp_params;         /* everything stored as fp32 (incl. scales and biases) */
    int ternary_layers, fp_layers;
    double bits_per_weight; /* 8 * packed_bytes / ternary_weights */
    long file_bytes;
} rq_export_stats;

/* Writes the export of m, whose ternary linears are those with a quantizer
 * attached and w_ternary set (as rq_dit_quantize leaves them). */
rq_status rq_export_write(const char *path, const rq_dit *m, const rq_export_opts *o, rq_export_stats *stats,
                          rq_err *err);

/* Loads an export into m (forward-only model); *cfg_out (may be NULL)
 * receives the stored config. Every field is validated: format, version,
 * config, each layer's shapes, attributes and packed bytes; errors name the
 * file and the dataset or attribute. */
rq_status rq_export_load(const char *path, rq_dit *m, rq_config **cfg_out, rq_export_stats *stats, rq_err *err);

/* 1 if path is an HDF5 file with format="robuq-w158" (no other checks). */
int rq_export_is(const char *path);

/* A checkpoint ("robuq-ckpt", with `which` = ema|params weights) or an
 * export, whichever path is: what robuq-sample and robuq-eval open. */
rq_status rq_model_load_any(const char *path, const char *which, rq_dit *m, rq_config **cfg_out, rq_err *err);

#endif
