/* diffusion.h: Gaussian diffusion as in the DiT / ADM code: linear betas,
 * q_sample, the hybrid loss (MSE on eps + VLB on the learned-range variance
 * with a frozen mean), respaced DDPM and DDIM (eta = 0) sampling, CFG.
 * All schedule arrays are double. */
#ifndef ROBUQ_DIFFUSION_H
#define ROBUQ_DIFFUSION_H

#include "robuq/dit.h"
#include "robuq/rng.h"
#include "robuq/tensor.h"

typedef struct {
    int num_timesteps;
    double *betas, *acp, *acp_prev, *sqrt_acp, *sqrt_1m_acp, *log_1m_acp;
    double *sqrt_recip_acp, *sqrt_recipm1_acp;
    double *post_var, *post_logvar_clipped, *post_c1, *post_c2;
    int *timestep_map; /* respaced index -> original t the model sees */
    int use_vlb;       /* hybrid loss (default 1); 0: eps MSE only */
} rq_diffusion;

/* Linear schedule over T steps from beta_start to beta_end. */
rq_status rq_diffusion_init_linear(rq_diffusion *d, int T, double beta_start, double beta_end, rq_err *err);
/* From an explicit beta array (copied); timestep_map = identity unless given. */
rq_status rq_diffusion_init_betas(rq_diffusion *d, const double *betas, const int *tmap, int T, rq_err *err);
void rq_diffusion_free(rq_diffusion *d);

/* Which original steps to keep: "250" (even spacing, DiT's space_timesteps)
 * or "ddimN" (stride T/N). Writes up to max sorted indices into out. */
rq_status rq_space_timesteps(int T, const char *spec, int *out, int max, int *n_out, rq_err *err);
/* Respaced process over the kept steps: betas_i = 1 - acp[t_i]/acp[t_{i-1}]. */
rq_status rq_diffusion_respace(const rq_diffusion *base, const int *use, int n, rq_diffusion *out,
                               rq_err *err);

/* x_t = sqrt(acp[t]) x0 + sqrt(1-acp[t]) noise, per sample (per = C*H*W). */
void rq_q_sample(const rq_diffusion *d, const float *x0, const int *t, const float *noise, float *xt,
                 int N, long per);

/* Learned-sigma VLB term on the tape: gradient reaches only var_values.
 * eps_pred (frozen), var_values [N,C,H,W]; returns per-sample bits [N]
 * (KL for t > 0, discretized-Gaussian decoder NLL for t == 0). */
rq_tensor *rq_vlb_terms(rq_graph *g, const rq_diffusion *d, rq_tensor *eps_pred, rq_tensor *var_values,
                        const float *x0, const float *xt, const int *t);

typedef struct {
    rq_tensor *loss;      /* scalar: mean over batch of (mse + vb) */
    rq_tensor *model_out; /* [N, C_out, H, W] on the tape (for distillation) */
    rq_tensor *xt, *t;    /* the noised input and timesteps the model saw */
    float mse, vb;        /* batch means, for logging */
} rq_diffusion_loss_out;

/* Training loss of one batch: q_sample with the given noise, model forward
 * at t, hybrid loss (MSE only when the model has no learned sigma). */
rq_status rq_diffusion_loss(rq_graph *g, const rq_diffusion *d, rq_dit *m, const float *x0,
                            const int *t, const int *y, const float *noise, int N,
                            rq_diffusion_loss_out *out);

/* Model mean / log variance for one reverse step (learned range, no clip). */
void rq_p_mean_variance(const rq_diffusion *d, const float *model_out, const float *xt, const int *ti,
                        int N, int C, long hw, float *mean, float *logvar, float *pred_x0);
/* One DDPM step x_{t-1} = mean + [t>0] exp(logvar/2) noise. */
void rq_p_sample_step(const rq_diffusion *d, const float *model_out, const float *xt, const int *ti,
                      const float *noise, int N, int C, long hw, float *x_prev);
/* One DDIM step with eta = 0. */
void rq_ddim_step(const rq_diffusion *d, const float *model_out, const float *xt, const int *ti, int N,
                  int C, long hw, float *x_prev);

typedef enum { RQ_SAMPLER_DDPM = 0, RQ_SAMPLER_DDIM = 1 } rq_sampler;

typedef struct {
    int steps;            /* respaced steps, e.g. 250 */
    rq_sampler sampler;
    float cfg_scale;      /* <= 1: no guidance */
    int cfg_ref_channels; /* 1: guide the first 3 output channels as the reference code */
    uint64_t seed;
} rq_sample_opts;

/* Generates N samples for classes y[N] into x[N,C,H,W]; progress to stderr
 * if verbose. Uses a private graph without tape. */
rq_status rq_sample(rq_dit *m, const rq_diffusion *base, const rq_sample_opts *o, const int *y, int N,
                    float *x, int verbose, rq_err *err);

/* Classifier-free guidance on a doubled batch out[2N, Cout, H, W]
 * ([cond; uncond]): eps rows become uncond + s (cond - uncond) in both halves
 * for the guided channels; variance channels are kept. */
void rq_cfg_combine(float *out, int N, int Cout, int guided_channels, long hw, float scale);

#endif
