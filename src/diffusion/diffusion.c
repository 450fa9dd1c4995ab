/* diffusion.c: Gaussian diffusion (DiT/ADM gaussian_diffusion.py + respace.py). */
#include "robuq/diffusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/ops.h"

#define LN2 0.69314718055994530942

/* --------------------------------------------------------------- schedule */

void rq_diffusion_free(rq_diffusion *d) {
    if (!d) return;
    double **arrs[] = {&d->betas, &d->acp, &d->acp_prev, &d->sqrt_acp, &d->sqrt_1m_acp, &d->log_1m_acp,
                       &d->sqrt_recip_acp, &d->sqrt_recipm1_acp, &d->post_var, &d->post_logvar_clipped,
                       &d->post_c1, &d->post_c2};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) free(*arrs[i]);
    free(d->timestep_map);
    memset(d, 0, sizeof *d);
}

rq_status rq_diffusion_init_betas(rq_diffusion *d, const double *betas, const int *tmap, int T, rq_err *err) {
    if (!d || !betas || T < 1) return rq_err_set(err, RQ_EINVAL, "diffusion: bad schedule (T = %d)", T);
    memset(d, 0, sizeof *d);
    for (int i = 0; i < T; i++)
        if (!(betas[i] > 0.0 && betas[i] <= 1.0))
            return rq_err_set(err, RQ_EINVAL, "diffusion: beta[%d] = %g outside (0, 1]", i, betas[i]);
    d->num_timesteps = T;
    d->use_vlb = 1;
    double **arrs[] = {&d->betas, &d->acp, &d->acp_prev, &d->sqrt_acp, &d->sqrt_1m_acp, &d->log_1m_acp,
                       &d->sqrt_recip_acp, &d->sqrt_recipm1_acp, &d->post_var, &d->post_logvar_clipped,
                       &d->post_c1, &d->post_c2};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++)
        if (!(*arrs[i] = malloc((size_t)T * sizeof(double)))) goto oom;
    if (!(d->timestep_map = malloc((size_t)T * sizeof(int)))) goto oom;
    double acp = 1.0;
    for (int i = 0; i < T; i++) {
        double b = betas[i];
        d->betas[i] = b;
        d->acp_prev[i] = acp;
        acp *= 1.0 - b;
        d->acp[i] = acp;
        d->sqrt_acp[i] = sqrt(acp);
        d->sqrt_1m_acp[i] = sqrt(1.0 - acp);
        d->log_1m_acp[i] = log(1.0 - acp);
        d->sqrt_recip_acp[i] = sqrt(1.0 / acp);
        d->sqrt_recipm1_acp[i] = sqrt(1.0 / acp - 1.0);
        d->post_var[i] = b * (1.0 - d->acp_prev[i]) / (1.0 - acp);
        d->post_c1[i] = b * sqrt(d->acp_prev[i]) / (1.0 - acp);
        d->post_c2[i] = (1.0 - d->acp_prev[i]) * sqrt(1.0 - b) / (1.0 - acp);
        d->timestep_map[i] = tmap ? tmap[i] : i;
    }
    /* The posterior variance is 0 at t = 0: clip its log with the t = 1 value. */
    for (int i = 0; i < T; i++) d->post_logvar_clipped[i] = log(d->post_var[i == 0 && T > 1 ? 1 : i]);
    return RQ_OK;
oom:
    rq_diffusion_free(d);
    return rq_err_set(err, RQ_ENOMEM, "diffusion: out of memory");
}

rq_status rq_diffusion_init_linear(rq_diffusion *d, int T, double beta_start, double beta_end, rq_err *err) {
    if (T < 1 || !(beta_start > 0) || !(beta_end >= beta_start) || beta_end > 1)
        return rq_err_set(err, RQ_EINVAL, "diffusion: linear schedule needs T >= 1, 0 < beta_start <= beta_end <= 1 "
                          "(got T=%d, %g, %g)", T, beta_start, beta_end);
    double *betas = malloc((size_t)T * sizeof(double));
    if (!betas) return rq_err_set(err, RQ_ENOMEM, "diffusion: out of memory");
    /* numpy.linspace: start + i * step, last value exactly beta_end */
    double step = T > 1 ? (beta_end - beta_start) / (T - 1) : 0.0;
    for (int i = 0; i < T; i++) betas[i] = beta_start + i * step;
    betas[T - 1] = beta_end;
    rq_status s = rq_diffusion_init_betas(d, betas, NULL, T, err);
    free(betas);
    return s;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

rq_status rq_space_timesteps(int T, const char *spec, int *out, int max, int *n_out, rq_err *err) {
    if (!spec || !out || !n_out || T < 1) return rq_err_set(err, RQ_EINVAL, "space_timesteps: bad arguments");
    int n = 0;
    if (!strncmp(spec, "ddim", 4)) {
        char *end;
        long want = strtol(spec + 4, &end, 10);
        if (*end || want < 1) return rq_err_set(err, RQ_EINVAL, "space_timesteps: bad spec '%s'", spec);
        for (int stride = 1; stride < T; stride++)
            if ((T + stride - 1) / stride == want) {
                for (int t = 0; t < T; t += stride) {
                    if (n >= max) return rq_err_set(err, RQ_EINVAL, "space_timesteps: more than %d steps", max);
                    out[n++] = t;
                }
                *n_out = n;
                return RQ_OK;
            }
        return rq_err_set(err, RQ_EINVAL, "space_timesteps: cannot make exactly %ld DDIM steps from %d", want, T);
    }
    /* Comma-separated section counts, each spread evenly over its section. */
    int counts[64], ns = 0;
    const char *p = spec;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || ns == 64 || (*end && *end != ','))
            return rq_err_set(err, RQ_EINVAL, "space_timesteps: bad spec '%s' (want e.g. 250 or ddim50)", spec);
        counts[ns++] = (int)v;
        p = *end ? end + 1 : end;
    }
    int size_per = T / ns, extra = T % ns, start = 0;
    for (int i = 0; i < ns; i++) {
        int size = size_per + (i < extra ? 1 : 0);
        if (size < counts[i])
            return rq_err_set(err, RQ_EINVAL, "space_timesteps: cannot take %d steps from a section of %d",
                              counts[i], size);
        double stride = counts[i] <= 1 ? 1.0 : (double)(size - 1) / (counts[i] - 1), cur = 0.0;
        for (int k = 0; k < counts[i]; k++) {
            if (n >= max) return rq_err_set(err, RQ_EINVAL, "space_timesteps: more than %d steps", max);
            out[n++] = start + (int)nearbyint(cur); /* Python round(): half to even */
            cur += stride;
        }
        start += size;
    }
    qsort(out, (size_t)n, sizeof(int), cmp_int);
    int u = 0; /* the reference returns a set */
    for (int i = 0; i < n; i++)
        if (u == 0 || out[i] != out[u - 1]) out[u++] = out[i];
    *n_out = u;
    return RQ_OK;
}

rq_status rq_diffusion_respace(const rq_diffusion *base, const int *use, int n, rq_diffusion *out, rq_err *err) {
    if (!base || !use || !out || n < 1 || n > base->num_timesteps)
        return rq_err_set(err, RQ_EINVAL, "respace: bad arguments (n = %d)", n);
    double *betas = malloc((size_t)n * sizeof(double));
    int *map = malloc((size_t)n * sizeof(int));
    if (!betas || !map) {
        free(betas), free(map);
        return rq_err_set(err, RQ_ENOMEM, "respace: out of memory");
    }
    double last = 1.0;
    for (int i = 0; i < n; i++) {
        if (use[i] < 0 || use[i] >= base->num_timesteps || (i && use[i] <= use[i - 1])) {
            free(betas), free(map);
            return rq_err_set(err, RQ_EINVAL, "respace: step list must be increasing within [0, %d)",
                              base->num_timesteps);
        }
        betas[i] = 1.0 - base->acp[use[i]] / last;
        last = base->acp[use[i]];
        map[i] = base->timestep_map[use[i]];
    }
    rq_status s = rq_diffusion_init_betas(out, betas, map, n, err);
    free(betas), free(map);
    return s;
}

void rq_q_sample(const rq_diffusion *d, const float *x0, const int *t, const float *noise, float *xt,
                 int N, long per) {
    for (int i = 0; i < N; i++) {
        float a = (float)d->sqrt_acp[t[i]], b = (float)d->sqrt_1m_acp[t[i]];
        for (long j = 0; j < per; j++) xt[i * per + j] = a * x0[i * per + j] + b * noise[i * per + j];
    }
}

/* ------------------------------------------------------------ VLB pieces */

static inline double approx_std_normal_cdf(double x) {
    return 0.5 * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
static inline double approx_std_normal_pdf(double x) { /* derivative of the above */
    double th = tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 - th * th) * sqrt(2.0 / M_PI) * (1.0 + 3.0 * 0.044715 * x * x);
}

/* log p(x | mean, log_scale) of the discretized Gaussian (bins of 2/255 on
 * [-1, 1]) and its derivative in log_scale. */
static double discretized_loglik(double x, double mean, double log_scale, double *dlog_scale) {
    double c = x - mean, inv = exp(-log_scale);
    double plus_in = inv * (c + 1.0 / 255.0), min_in = inv * (c - 1.0 / 255.0);
    double cdf_plus = approx_std_normal_cdf(plus_in), cdf_min = approx_std_normal_cdf(min_in);
    /* d(z)/d(log_scale) = -z for z = inv * (...) */
    double dplus = approx_std_normal_pdf(plus_in) * -plus_in, dmin = approx_std_normal_pdf(min_in) * -min_in;
    if (x < -0.999) {
        *dlog_scale = cdf_plus > 1e-12 ? dplus / cdf_plus : 0.0;
        return log(cdf_plus > 1e-12 ? cdf_plus : 1e-12);
    }
    if (x > 0.999) {
        double om = 1.0 - cdf_min;
        *dlog_scale = om > 1e-12 ? -dmin / om : 0.0;
        return log(om > 1e-12 ? om : 1e-12);
    }
    double delta = cdf_plus - cdf_min;
    *dlog_scale = delta > 1e-12 ? (dplus - dmin) / delta : 0.0;
    return log(delta > 1e-12 ? delta : 1e-12);
}

typedef struct {
    const rq_diffusion *d;
    float *dvar; /* d(term)/d(var_value) per element, kept for backward */
} vlb_saved;

static void vlb_backward(rq_graph *g, rq_node *n) {
    rq_tensor *v = n->in[0], *out = n->out;
    float *dv = rq_tensor_grad(g, v);
    const float *dvar = n->saved;
    int N = v->shape[0];
    long per = v->n / N;
    for (int i = 0; i < N; i++)
        for (long j = 0; j < per; j++) dv[i * per + j] += out->grad[i] * dvar[i * per + j];
}

rq_tensor *rq_vlb_terms(rq_graph *g, const rq_diffusion *d, rq_tensor *eps_pred, rq_tensor *var_values,
                        const float *x0, const float *xt, const int *t) {
    if (!g || !rq_graph_ok(g)) return NULL;
    if (!d || !eps_pred || !var_values || !x0 || !xt || !t)
        return rq_graph_fail(g, RQ_EINVAL, "vlb_terms: NULL argument");
    if (!rq_same_shape(eps_pred, var_values) || eps_pred->ndim != 4) {
        char a[64], b[64];
        return rq_graph_fail(g, RQ_ESHAPE, "vlb_terms: eps %s and var %s must be equal [N,C,H,W]",
                             rq_shape_str(eps_pred, a, 64), rq_shape_str(var_values, b, 64));
    }
    int N = eps_pred->shape[0];
    long per = eps_pred->n / N;
    for (int i = 0; i < N; i++)
        if (t[i] < 0 || t[i] >= d->num_timesteps)
            return rq_graph_fail(g, RQ_EINVAL, "vlb_terms: t[%d] = %d outside [0, %d)", i, t[i], d->num_timesteps);
    rq_tensor *out = rq_tensor_arena(g, 1, (int[]){N});
    float *dvar = rq_arena_alloc(&g->arena, (size_t)eps_pred->n * sizeof(float));
    if (!out || !dvar) return rq_graph_fail(g, RQ_ENOMEM, "vlb_terms: arena out of memory");
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        int ti = t[i];
        double min_log = d->post_logvar_clipped[ti], max_log = log(d->betas[ti]);
        double c1 = d->post_c1[ti], c2 = d->post_c2[ti];
        double acc = 0.0;
        for (long j = 0; j < per; j++) {
            long k = i * per + j;
            double v = var_values->data[k], frac = (v + 1.0) / 2.0;
            double lv = frac * max_log + (1.0 - frac) * min_log, dlv_dv = 0.5 * (max_log - min_log);
            /* frozen mean: eps_pred is a constant here */
            double px0 = d->sqrt_recip_acp[ti] * xt[k] - d->sqrt_recipm1_acp[ti] * eps_pred->data[k];
            double mean = c1 * px0 + c2 * xt[k];
            double term, dterm_dlv;
            if (ti == 0) {
                double dls;
                term = -discretized_loglik(x0[k], mean, 0.5 * lv, &dls) / LN2;
                dterm_dlv = -0.5 * dls / LN2;
            } else {
                /* KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) of two Gaussians */
                double tm = c1 * x0[k] + c2 * xt[k], tlv = min_log, dm = tm - mean;
                term = 0.5 * (-1.0 + lv - tlv + exp(tlv - lv) + dm * dm * exp(-lv)) / LN2;
                dterm_dlv = 0.5 * (1.0 - exp(tlv - lv) - dm * dm * exp(-lv)) / LN2;
            }
            acc += term;
            dvar[k] = (float)(dterm_dlv * dlv_dv / (double)per);
        }
        out->data[i] = (float)(acc / (double)per);
    }
    if (rq_needs_grad(g, 1, &var_values)) {
        rq_node *n = rq_graph_push(g, "vlb_terms", vlb_backward, out);
        if (!n) return NULL;
        n->in[0] = var_values, n->saved = dvar;
    }
    return out;
}

/* ------------------------------------------------------------------ loss */

rq_status rq_diffusion_loss(rq_graph *g, const rq_diffusion *d, rq_dit *m, const float *x0,
                            const int *t, const int *y, const float *noise, int N,
                            rq_diffusion_loss_out *out) {
    if (!g || !d || !m || !x0 || !t || !y || !noise || !out || N < 1)
        return g ? (rq_graph_fail(g, RQ_EINVAL, "diffusion_loss: bad arguments"), RQ_EINVAL) : RQ_EINVAL;
    const rq_dit_config *c = &m->cfg;
    int C = c->in_channels, S = c->input_size;
    long per = (long)C * S * S;
    for (int i = 0; i < N; i++)
        if (t[i] < 0 || t[i] >= d->num_timesteps) {
            rq_graph_fail(g, RQ_EINVAL, "diffusion_loss: t[%d] = %d outside [0, %d)", i, t[i], d->num_timesteps);
            return g->err.code;
        }
    int shape[4] = {N, C, S, S};
    rq_tensor *xt = rq_tensor_arena(g, 4, shape);
    rq_tensor *tt = rq_tensor_arena(g, 1, (int[]){N});
    if (!xt || !tt) return g->err.code;
    rq_q_sample(d, x0, t, noise, xt->data, N, per);
    for (int i = 0; i < N; i++) tt->data[i] = (float)t[i];
    rq_tensor *model_out = rq_dit_forward(g, m, xt, tt, y);
    rq_tensor *eps = rq_slice(g, model_out, 1, 0, C);
    rq_tensor *mse = rq_mse(g, eps, rq_tensor_wrap(g, (float *)noise, 4, shape));
    rq_tensor *loss = mse;
    out->vb = 0.0f;
    if (c->learn_sigma && d->use_vlb) {
        rq_tensor *var = rq_slice(g, model_out, 1, C, C);
        rq_tensor *vb = rq_mean(g, rq_vlb_terms(g, d, rq_detach(g, eps), var, x0, xt->data, t));
        loss = rq_add(g, mse, vb);
        if (vb) out->vb = vb->data[0];
    }
    if (!rq_graph_ok(g)) return g->err.code;
    out->mse = mse->data[0];
    out->loss = loss;
    out->model_out = model_out;
    out->xt = xt;
    out->t = tt;
    return RQ_OK;
}

/* -------------------------------------------------------------- sampling */

void rq_p_mean_variance(const rq_diffusion *d, const float *model_out, const float *xt, const int *ti,
                        int N, int C, long hw, float *mean, float *logvar, float *pred_x0) {
    for (int i = 0; i < N; i++) {
        int t = ti[i];
        double min_log = d->post_logvar_clipped[t], max_log = log(d->betas[t]);
        for (int ch = 0; ch < C; ch++)
            for (long j = 0; j < hw; j++) {
                long k = ((long)i * C + ch) * hw + j;
                const float *mo = model_out + (long)i * 2 * C * hw;
                double eps = mo[ch * hw + j], v = mo[(C + ch) * hw + j], frac = (v + 1.0) / 2.0;
                double px0 = d->sqrt_recip_acp[t] * xt[k] - d->sqrt_recipm1_acp[t] * eps;
                mean[k] = (float)(d->post_c1[t] * px0 + d->post_c2[t] * xt[k]);
                logvar[k] = (float)(frac * max_log + (1.0 - frac) * min_log);
                if (pred_x0) pred_x0[k] = (float)px0;
            }
    }
}

void rq_p_sample_step(const rq_diffusion *d, const float *model_out, const float *xt, const int *ti,
                      const float *noise, int N, int C, long hw, float *x_prev) {
    long per = (long)C * hw;
    float *mean = malloc((size_t)(N * per) * sizeof(float)), *lv = malloc((size_t)(N * per) * sizeof(float));
    if (!mean || !lv) {
        free(mean), free(lv);
        return;
    }
    rq_p_mean_variance(d, model_out, xt, ti, N, C, hw, mean, lv, NULL);
    for (int i = 0; i < N; i++)
        for (long j = 0; j < per; j++) {
            long k = i * per + j;
            x_prev[k] = mean[k] + (ti[i] != 0 ? expf(0.5f * lv[k]) * noise[k] : 0.0f);
        }
    free(mean), free(lv);
}

void rq_ddim_step(const rq_diffusion *d, const float *model_out, const float *xt, const int *ti, int N,
                  int C, long hw, float *x_prev) {
    for (int i = 0; i < N; i++) {
        int t = ti[i];
        double ap = d->acp_prev[t];
        for (int ch = 0; ch < C; ch++)
            for (long j = 0; j < hw; j++) {
                long k = ((long)i * C + ch) * hw + j;
                double e = model_out[(long)i * 2 * C * hw + ch * hw + j];
                double px0 = d->sqrt_recip_acp[t] * xt[k] - d->sqrt_recipm1_acp[t] * e;
                double eps = (d->sqrt_recip_acp[t] * xt[k] - px0) / d->sqrt_recipm1_acp[t];
                x_prev[k] = (float)(px0 * sqrt(ap) + sqrt(1.0 - ap) * eps);
            }
    }
}

void rq_cfg_combine(float *out, int N, int Cout, int guided, long hw, float scale) {
    for (int i = 0; i < N; i++)
        for (int ch = 0; ch < guided; ch++)
            for (long j = 0; j < hw; j++) {
                float *c = out + ((long)i * Cout + ch) * hw + j, *u = out + ((long)(i + N) * Cout + ch) * hw + j;
                float e = *u + scale * (*c - *u);
                *c = e;
                *u = e;
            }
}
