/* train.h: what a training run is made of, and how it is saved.
 *
 * AdamW (decoupled weight decay, PyTorch's bias correction), EMA of the
 * weights, global-norm gradient clipping; checkpoints hold everything an
 * exact resume needs (params, EMA, Adam moments, step, RNG and data-loader
 * positions, the resolved config and the loss log). */
#ifndef ROBUQ_TRAIN_H
#define ROBUQ_TRAIN_H

#include "robuq/config.h"
#include "robuq/diffusion.h"
#include "robuq/dit.h"
#include "robuq/qlinear.h"
#include "robuq/rng.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    long t;           /* steps taken (for bias correction) */
    float **m, **v;   /* per parameter */
    int n;
} rq_adamw;

rq_status rq_adamw_init(rq_adamw *o, const rq_dit *m, float lr, float b1, float b2, float wd, rq_err *err);
void rq_adamw_free(rq_adamw *o);
void rq_adamw_step(rq_adamw *o, rq_dit *m, float lr);
/* Global L2 norm of all gradients; 0 if any is non-finite sets *finite = 0. */
double rq_grad_norm(const rq_dit *m, int *finite);
void rq_grad_scale(rq_dit *m, float s);
void rq_zero_grads(rq_dit *m);
/* First parameter (reference order) with a non-finite gradient, or NULL. */
const char *rq_first_nonfinite_grad(const rq_dit *m);

/* EMA buffers: one float array per parameter. */
typedef struct {
    float **w;
    int n;
} rq_ema;
rq_status rq_ema_init(rq_ema *e, const rq_dit *m, rq_err *err); /* copy of the weights */
void rq_ema_update(rq_ema *e, const rq_dit *m, float decay);
void rq_ema_free(rq_ema *e);
/* Swap EMA and live weights (call twice to swap back). */
void rq_ema_swap(rq_ema *e, rq_dit *m);

/* Model + quantization settings from a resolved config. */
rq_status rq_model_config_from(const rq_config *cfg, rq_dit_config *mc, rq_err *err);
rq_status rq_quant_opts_from(const rq_config *cfg, rq_quant_opts *q, rq_err *err);
/* [diffusion] schedule and loss kind, and [sample] sampler settings. */
rq_status rq_diffusion_from_cfg(const rq_config *cfg, rq_diffusion *d, rq_err *err);
void rq_sample_opts_from(const rq_config *cfg, rq_sample_opts *o);

#define RQ_CKPT_FORMAT "robuq-ckpt"
#define RQ_CKPT_VERSION 1

/* What a checkpoint holds besides the model. Arrays may be NULL on save
 * (then not written) and are allocated on load. */
typedef struct {
    long step;
    rq_rng rng;
    int64_t loader[8];
    int loader_len;
    char *config_text;        /* resolved config INI */
    float *log_step, *log_loss; /* loss history for the curve */
    long log_n;
} rq_ckpt_meta;

rq_status rq_ckpt_save(const char *path, const rq_dit *m, const rq_ema *ema, const rq_adamw *opt,
                       const rq_ckpt_meta *meta, rq_err *err);
/* Reads the resolved config text (to rebuild the model) without the weights. */
rq_status rq_ckpt_read_config(const char *path, char **config_text, rq_err *err);
/* Loads weights into an already built model (shapes must match). which:
 * "params" or "ema" (the EMA weights into the model). ema/opt/meta may be
 * NULL to skip those parts. */
rq_status rq_ckpt_load(const char *path, rq_dit *m, const char *which, rq_ema *ema, rq_adamw *opt,
                       rq_ckpt_meta *meta, rq_err *err);
void rq_ckpt_meta_free(rq_ckpt_meta *meta);

/* Builds a model from a checkpoint (config inside it) with the chosen
 * weights ("ema" or "params") and its quantization attached. cfg_out (may be
 * NULL) receives the config, caller frees with rq_config_free. */
rq_status rq_model_from_ckpt(const char *path, const char *which, rq_dit *m, rq_config **cfg_out, rq_err *err);

#endif
