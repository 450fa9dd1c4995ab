/* ampn.c: per-layer sensitivity and the exact bit allocation of AMPN. */
#include "robuq/ampn.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/rng.h"

/* ------------------------------------------------------------ allocation */

static long gcd_l(long a, long b) {
    while (b) {
        long t = a % b;
        a = b, b = t;
    }
    return a;
}

/* Integer cost units per layer. Exact when every weight is an integer and
 * the budget axis stays small; otherwise weights are rounded up on a grid
 * (conservative: a map within the unit budget is within the real budget). */
static int weight_units(int n, const double *w, int max_bits, long *u, long *cap, double budget) {
    double sum = 0;
    int integral = 1;
    for (int i = 0; i < n; i++) {
        sum += w[i];
        if (w[i] != floor(w[i]) || w[i] > 1e15) integral = 0;
    }
    if (integral) {
        long g = 0;
        for (int i = 0; i < n; i++) g = gcd_l((long)w[i], g);
        long total = 0;
        for (int i = 0; i < n; i++) total += (u[i] = (long)w[i] / g);
        if (total * (long)max_bits <= RQ_AMPN_MAX_UNITS) {
            /* sum u_i b_i is an integer, so <= budget*total <=> <= floor(...) */
            *cap = (long)floor(budget * (double)total + 1e-9);
            return 1;
        }
    }
    double q = sum / (double)RQ_AMPN_GRID;
    for (int i = 0; i < n; i++) u[i] = (long)ceil(w[i] / q - 1e-12);
    *cap = (long)floor(budget * sum / q + 1e-9);
    return 0;
}

rq_status rq_ampn_allocate(int n, int n_cands, const int *cands, const double *sens, const double *weight,
                           double budget, rq_ampn_result *res, rq_err *err) {
    if (n <= 0 || n_cands <= 0 || n_cands > RQ_AMPN_MAX_CANDS || !cands || !sens || !weight || !res || !res->bits)
        return rq_err_set(err, RQ_EINVAL, "ampn allocate: bad arguments (n=%d, candidates=%d)", n, n_cands);
    int bmin = 9, bmax = 0;
    for (int k = 0; k < n_cands; k++) {
        if (cands[k] < RQ_ACTQ_MIN_BITS || cands[k] > RQ_ACTQ_MAX_BITS)
            return rq_err_set(err, RQ_EINVAL, "ampn: candidate %d bits outside 1..8", cands[k]);
        for (int j = 0; j < k; j++)
            if (cands[j] == cands[k]) return rq_err_set(err, RQ_EINVAL, "ampn: candidate %d bits listed twice", cands[k]);
        bmin = cands[k] < bmin ? cands[k] : bmin;
        bmax = cands[k] > bmax ? cands[k] : bmax;
    }
    for (int i = 0; i < n; i++) {
        if (!(weight[i] > 0) || !isfinite(weight[i]))
            return rq_err_set(err, RQ_EINVAL, "ampn: layer %d has weight %g (must be > 0)", i, weight[i]);
        for (int k = 0; k < n_cands; k++)
            if (!isfinite(sens[(long)i * n_cands + k]))
                return rq_err_set(err, RQ_ENUM, "ampn: sensitivity of layer %d at %d bits is not finite", i,
                                  cands[k]);
    }
    if (!isfinite(budget) || budget < bmin - 1e-12)
        return rq_err_set(err, RQ_EINVAL,
                          "ampn: budget %.4g bits is infeasible: the smallest reachable average is %d "
                          "(every layer at the lowest candidate)",
                          budget, bmin);

    long *u = malloc((size_t)n * sizeof *u), cap;
    if (!u) return rq_err_set(err, RQ_ENOMEM, "ampn: out of memory");
    int exact = weight_units(n, weight, bmax, u, &cap, budget);
    long umax = 0;
    for (int i = 0; i < n; i++) umax += u[i] * bmax;
    if (cap > umax) cap = umax; /* more budget than the top candidate can use */
    long min_need = 0;
    for (int i = 0; i < n; i++) min_need += u[i] * bmin;
    if (min_need > cap) { /* only possible on the rounded grid, at a budget of ~bmin */
        free(u);
        return rq_err_set(err, RQ_EINVAL, "ampn: budget %.6g is too close to %d bits for the weight grid", budget,
                          bmin);
    }

    /* best[c] = least total sensitivity of layers 0..i using at most c units;
     * choice[i][c] = candidate index picked for layer i at capacity c. */
    long W = cap + 1;
    double *best = malloc((size_t)W * sizeof *best), *next = malloc((size_t)W * sizeof *next);
    unsigned char *choice = malloc((size_t)n * (size_t)W);
    if (!best || !next || !choice) {
        free(u), free(best), free(next), free(choice);
        return rq_err_set(err, RQ_ENOMEM, "ampn: out of memory for a %d x %ld table", n, W);
    }
    for (long c = 0; c < W; c++) best[c] = 0;
    for (int i = 0; i < n; i++) {
        const double *s = sens + (long)i * n_cands;
        unsigned char *ch = choice + (size_t)i * W;
        for (long c = 0; c < W; c++) {
            double v = INFINITY;
            int arg = 255;
            for (int k = 0; k < n_cands; k++) {
                long need = u[i] * cands[k];
                if (need > c || best[c - need] == INFINITY) continue;
                double t = best[c - need] + s[k];
                /* ties go to more bits: same predicted damage, less risk */
                if (t < v || (t == v && arg != 255 && cands[k] > cands[arg])) v = t, arg = k;
            }
            next[c] = v;
            ch[c] = (unsigned char)arg;
        }
        double *t = best;
        best = next, next = t;
    }
    /* walk back from the full capacity */
    long c = cap;
    double total_w = 0, used = 0;
    for (int i = n - 1; i >= 0; i--) {
        int k = choice[(size_t)i * W + c];
        res->bits[i] = cands[k];
        c -= u[i] * cands[k];
    }
    res->cost = 0;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < n_cands; k++)
            if (cands[k] == res->bits[i]) res->cost += sens[(long)i * n_cands + k];
        total_w += weight[i];
        used += weight[i] * res->bits[i];
    }
    res->avg_bits = used / total_w;
    res->exact = exact;
    free(u), free(best), free(next), free(choice);
    return RQ_OK;
}

void rq_ampn_monotone(int n, int n_cands, const int *cands, double *sens) {
    if (n <= 0 || n_cands <= 0 || !cands || !sens) return;
    for (int i = 0; i < n; i++) {
        double *s = sens + (long)i * n_cands;
        for (int k = n_cands - 2; k >= 0; k--)
            if (s[k] < s[k + 1]) s[k] = s[k + 1];
    }
}

/* ------------------------------------------------------------ sensitivity */

int rq_ampn_layers(rq_dit *m, rq_dit_linear **layers, const char **names, double *macs, int max) {
    if (!m) return 0;
    rq_dit_linear *ls[1024];
    const char *nm[1024];
    int total = rq_dit_linears(m, ls, nm, 1024), n = 0;
    double T = rq_dit_tokens(&m->cfg);
    for (int i = 0; i < total && i < 1024; i++) {
        const char *k = ls[i]->kind;
        if (strcmp(k, "qkv") && strcmp(k, "proj") && strcmp(k, "fc1") && strcmp(k, "fc2")) continue;
        if (n < max) {
            if (layers) layers[n] = ls[i];
            if (names) names[n] = nm[i];
            if (macs) macs[n] = T * (double)ls[i]->w->n; /* tokens x in x out */
        }
        n++;
    }
    return n;
}

static rq_status check_opts(const rq_ampn_opts *o, rq_err *err) {
    if (o->n_cands <= 0 || o->n_cands > RQ_AMPN_MAX_CANDS)
        return rq_err_set(err, RQ_EINVAL, "ampn: %d candidates (1..%d allowed)", o->n_cands, RQ_AMPN_MAX_CANDS);
    for (int k = 0; k < o->n_cands; k++)
        if (o->cands[k] < 1 || o->cands[k] > 8)
            return rq_err_set(err, RQ_EINVAL, "ampn: candidate %d bits outside 1..8", o->cands[k]);
    if (o->ref_bits < 0 || o->ref_bits > 8)
        return rq_err_set(err, RQ_EINVAL, "ampn: ref_bits %d outside 0..8", o->ref_bits);
    if (o->calib_batches <= 0 || o->batch_size <= 0)
        return rq_err_set(err, RQ_EINVAL, "ampn: calibration needs batches > 0 and batch size > 0");
    if (o->metric != RQ_AMPN_METRIC_LOSS && o->metric != RQ_AMPN_METRIC_OUTPUT)
        return rq_err_set(err, RQ_EINVAL, "ampn: unknown metric %d", o->metric);
    return RQ_OK;
}

/* The calibration set: samples strided over the dataset, timesteps spread
 * evenly over [0, T), one fixed noise draw. */
typedef struct {
    int B, nb;          /* batch size, batches */
    long per;           /* floats per sample */
    float *x0, *noise;  /* [nb*B*per] */
    int *t, *y;         /* [nb*B] */
    float *ref_out;     /* [nb * B * out_per] reference outputs (OUTPUT metric) */
    long out_per;
} calib_set;

static void calib_free(calib_set *c) {
    free(c->x0), free(c->noise), free(c->t), free(c->y), free(c->ref_out);
    memset(c, 0, sizeof *c);
}

static rq_status calib_init(calib_set *c, const rq_dit *m, const rq_diffusion *d, const rq_dataset *data,
                            const rq_ampn_opts *o, rq_err *err) {
    memset(c, 0, sizeof *c);
    long want = (long)o->calib_batches * o->batch_size;
    if (data->n < o->batch_size)
        return rq_err_set(err, RQ_EINVAL, "ampn: the dataset has %ld samples, fewer than one calibration batch (%d)",
                          data->n, o->batch_size);
    c->B = o->batch_size;
    c->nb = (int)((want <= data->n ? want : data->n) / c->B);
    long N = (long)c->nb * c->B;
    c->per = rq_dataset_sample_size(data);
    const rq_dit_config *mc = &m->cfg;
    if (c->per != (long)mc->in_channels * mc->input_size * mc->input_size)
        return rq_err_set(err, RQ_ESHAPE, "ampn: dataset samples have %ld values, the model expects %dx%dx%d", c->per,
                          mc->in_channels, mc->input_size, mc->input_size);
    c->out_per = (long)rq_dit_out_channels(mc) * mc->input_size * mc->input_size;
    c->x0 = malloc((size_t)(N * c->per) * sizeof(float));
    c->noise = malloc((size_t)(N * c->per) * sizeof(float));
    c->t = malloc((size_t)N * sizeof(int));
    c->y = malloc((size_t)N * sizeof(int));
    c->ref_out = malloc((size_t)(N * c->out_per) * sizeof(float));
    if (!c->x0 || !c->noise || !c->t || !c->y || !c->ref_out) {
        calib_free(c);
        return rq_err_set(err, RQ_ENOMEM, "ampn: out of memory for %ld calibration samples", N);
    }
    long stride = data->n / N;
    for (long j = 0; j < N; j++) {
        long src = j * stride;
        memcpy(c->x0 + j * c->per, data->x + src * c->per, (size_t)c->per * sizeof(float));
        c->y[j] = data->labels[src];
        c->t[j] = (int)(((double)j + 0.5) * d->num_timesteps / (double)N);
    }
    rq_rng rng;
    rq_rng_seed(&rng, o->seed);
    rq_rng_fill_normal(&rng, c->noise, N * c->per, 1.0f);
    return RQ_OK;
}

/* One pass over the calibration set with the model's current quantizers:
 * mean loss, and either the outputs stored as reference (store = 1) or the
 * mean squared difference from the stored reference. */
static rq_status calib_eval(rq_graph *g, rq_dit *m, const rq_diffusion *d, calib_set *c, int store, double *loss,
                            double *out_mse, rq_err *err) {
    double ls = 0, se = 0;
    for (int b = 0; b < c->nb; b++) {
        long off = (long)b * c->B;
        rq_graph_reset(g);
        rq_diffusion_loss_out lo;
        if (rq_diffusion_loss(g, d, m, c->x0 + off * c->per, c->t + off, c->y + off, c->noise + off * c->per, c->B,
                              &lo))
            return rq_err_set(err, g->err.code ? g->err.code : RQ_EINVAL, "ampn: forward failed: %s", g->err.msg);
        ls += lo.loss->data[0];
        float *ref = c->ref_out + off * c->out_per;
        long n = (long)c->B * c->out_per;
        if (store) {
            memcpy(ref, lo.model_out->data, (size_t)n * sizeof(float));
        } else {
            double s = 0;
            for (long i = 0; i < n; i++) {
                double e = (double)lo.model_out->data[i] - ref[i];
                s += e * e;
            }
            se += s / (double)n;
        }
    }
    *loss = ls / c->nb;
    *out_mse = se / c->nb;
    if (!isfinite(*loss)) return rq_err_set(err, RQ_ENUM, "ampn: calibration loss is not finite");
    return RQ_OK;
}

rq_status rq_ampn_sensitivity(rq_dit *m, const rq_diffusion *d, const rq_dataset *data, const rq_ampn_opts *o,
                              double *sens, double *base_loss, rq_ampn_progress_fn progress, void *progress_arg,
                              rq_err *err) {
    if (!m || !d || !data || !o || !sens) return rq_err_set(err, RQ_EINVAL, "ampn sensitivity: NULL argument");
    if (check_opts(o, err)) return err->code;

    /* everything but the searchable layers as in the QAT run (no map) */
    rq_quant_opts q = o->quant;
    q.enabled = 1;
    q.precision_map = NULL;
    if (rq_dit_quantize(m, &q, err)) return err->code;
    rq_dit_linear *layers[1024];
    const char *names[1024];
    int n = rq_ampn_layers(m, layers, names, NULL, 1024);
    if (n <= 0 || n > 1024) return rq_err_set(err, RQ_EINVAL, "ampn: the model has no searchable linears");
    /* searchable layers at the reference precision; the rotation does not
     * depend on the bits, so probing only changes a_bits */
    for (int i = 0; i < n; i++) {
        const char *k = layers[i]->kind;
        rq_qlinear ql = {0};
        ql.w_ternary = q.weight_ternary;
        ql.a_bits = o->ref_bits;
        ql.a_method = q.method;
        ql.hadamard = q.hadamard && (!q.hadamard_proj_fc2_only || !strcmp(k, "proj") || !strcmp(k, "fc2"));
        if (rq_qlinear_attach(layers[i], &ql, names[i], err)) return err->code;
    }

    calib_set c;
    if (calib_init(&c, m, d, data, o, err)) return err->code;
    rq_graph g;
    if (rq_graph_init(&g, (size_t)64 << 20)) {
        calib_free(&c);
        return rq_err_set(err, RQ_ENOMEM, "ampn: out of memory for the graph");
    }
    g.grad_enabled = 0;
    double base, unused;
    rq_status st = calib_eval(&g, m, d, &c, 1, &base, &unused, err);
    if (base_loss) *base_loss = base;
    int total = n * o->n_cands, done = 0;
    for (int i = 0; !st && i < n; i++) {
        for (int k = 0; !st && k < o->n_cands; k++) {
            double loss, mse;
            layers[i]->q->a_bits = o->cands[k];
            st = calib_eval(&g, m, d, &c, 0, &loss, &mse, err);
            sens[(long)i * o->n_cands + k] = o->metric == RQ_AMPN_METRIC_LOSS ? loss - base : mse;
            if (progress) progress(++done, total, progress_arg);
        }
        layers[i]->q->a_bits = o->ref_bits;
    }
    rq_graph_free(&g);
    calib_free(&c);
    return st;
}

/* ------------------------------------------------------------ map file */

rq_status rq_ampn_write_map(const char *path, int n, const char *const *names, const int *bits, const char *header,
                            rq_err *err) {
    if (!path || n <= 0 || !names || !bits) return rq_err_set(err, RQ_EINVAL, "ampn write map: bad arguments");
    size_t cap = 4096 + (header ? strlen(header) * 2 : 0);
    for (int i = 0; i < n; i++) cap += strlen(names[i]) + 16;
    char *buf = malloc(cap), *p = buf;
    if (!buf) return rq_err_set(err, RQ_ENOMEM, "ampn: out of memory");
    if (header) { /* every header line becomes a comment */
        const char *h = header;
        while (*h) {
            const char *e = strchr(h, '\n');
            size_t len = e ? (size_t)(e - h) : strlen(h);
            p += sprintf(p, "# %.*s\n", (int)len, h);
            h += len + (e ? 1 : 0);
        }
    }
    for (int i = 0; i < n; i++) {
        char ln[256];
        p += sprintf(p, "%s %d\n", rq_dit_layer_name(names[i], ln, sizeof ln), bits[i]); /* layer, not parameter */
    }
    rq_status st = rq_write_text_atomic(path, buf, err);
    free(buf);
    return st;
}
