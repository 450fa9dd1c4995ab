/* sample.c: the reverse process driver (respaced DDPM or DDIM, with CFG). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/diffusion.h"

rq_status rq_sample(rq_dit *m, const rq_diffusion *base, const rq_sample_opts *o, const int *y, int N,
                    float *x, int verbose, rq_err *err) {
    if (!m || !base || !o || !y || !x || N < 1) return rq_err_set(err, RQ_EINVAL, "sample: bad arguments");
    const rq_dit_config *c = &m->cfg;
    if (!c->learn_sigma) return rq_err_set(err, RQ_EINVAL, "sample: the model must have learn_sigma = on");
    int C = c->in_channels, S = c->input_size, Cout = rq_dit_out_channels(c);
    long hw = (long)S * S, per = C * hw;
    for (int i = 0; i < N; i++)
        if (y[i] < 0 || y[i] > c->num_classes)
            return rq_err_set(err, RQ_EINVAL, "sample: class %d outside [0, %d]", y[i], c->num_classes);

    int *use = malloc((size_t)base->num_timesteps * sizeof(int)), n_use = 0;
    if (!use) return rq_err_set(err, RQ_ENOMEM, "sample: out of memory");
    char spec[32];
    snprintf(spec, sizeof spec, o->sampler == RQ_SAMPLER_DDIM ? "ddim%d" : "%d", o->steps);
    rq_diffusion d;
    rq_status s = rq_space_timesteps(base->num_timesteps, spec, use, base->num_timesteps, &n_use, err);
    if (!s) s = rq_diffusion_respace(base, use, n_use, &d, err);
    free(use);
    if (s) return s;

    int guided = o->cfg_scale > 1.0f;
    int B = guided ? 2 * N : N; /* [cond; uncond] */
    int *yy = malloc((size_t)B * sizeof(int)), *ti = malloc((size_t)B * sizeof(int));
    float *xin = malloc((size_t)B * per * sizeof(float)), *noise = malloc((size_t)N * per * sizeof(float));
    float *mo = malloc((size_t)B * Cout * hw * sizeof(float));
    rq_graph g;
    if (!yy || !ti || !xin || !noise || !mo || rq_graph_init(&g, (size_t)16 << 20)) {
        free(yy), free(ti), free(xin), free(noise), free(mo);
        rq_diffusion_free(&d);
        return rq_err_set(err, RQ_ENOMEM, "sample: out of memory");
    }
    g.grad_enabled = 0;
    for (int i = 0; i < B; i++) yy[i] = i < N ? y[i] : c->num_classes;
    rq_rng rng;
    rq_rng_seed(&rng, o->seed);
    rq_rng_fill_normal(&rng, x, N * per, 1.0f);

    double t0 = rq_now();
    for (int step = d.num_timesteps - 1; step >= 0; step--) {
        rq_graph_reset(&g);
        for (int i = 0; i < B; i++) memcpy(xin + (long)i * per, x + (long)(i % N) * per, (size_t)per * sizeof(float));
        rq_tensor *xt = rq_tensor_wrap(&g, xin, 4, (int[]){B, C, S, S});
        rq_tensor *tt = rq_tensor_arena(&g, 1, (int[]){B});
        if (!tt) break;
        for (int i = 0; i < B; i++) tt->data[i] = (float)d.timestep_map[step];
        rq_tensor *out = rq_dit_forward(&g, m, xt, tt, yy);
        if (!out) break;
        memcpy(mo, out->data, (size_t)B * Cout * hw * sizeof(float));
        /* The reference guides the first 3 channels; ours, all eps channels. */
        if (guided) rq_cfg_combine(mo, N, Cout, o->cfg_ref_channels ? (Cout < 3 ? Cout : 3) : C, hw, o->cfg_scale);
        for (int i = 0; i < N; i++) ti[i] = step;
        if (o->sampler == RQ_SAMPLER_DDIM) {
            rq_ddim_step(&d, mo, x, ti, N, C, hw, x);
        } else {
            rq_rng_fill_normal(&rng, noise, N * per, 1.0f);
            rq_p_sample_step(&d, mo, x, ti, noise, N, C, hw, x);
        }
        if (verbose && (step % 10 == 0 || step == d.num_timesteps - 1)) {
            double el = rq_now() - t0;
            int done = d.num_timesteps - step;
            fprintf(stderr, "\rsampling: step %d/%d  %.1f s elapsed, ETA %.1f s   ", done, d.num_timesteps, el,
                    el / done * (d.num_timesteps - done));
        }
    }
    if (verbose) fprintf(stderr, "\n");
    if (!rq_graph_ok(&g)) rq_err_set(err, g.err.code, "sample: %s", g.err.msg);
    rq_status st = g.err.code;
    rq_graph_free(&g);
    free(yy), free(ti), free(xin), free(noise), free(mo);
    rq_diffusion_free(&d);
    return st;
}
