/* optim.c: AdamW, gradient utilities and EMA. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/train.h"

rq_status rq_adamw_init(rq_adamw *o, const rq_dit *m, float lr, float b1, float b2, float wd, rq_err *err) {
    if (!o || !m) return rq_err_set(err, RQ_EINVAL, "adamw: NULL argument");
    memset(o, 0, sizeof *o);
    o->lr = lr, o->beta1 = b1, o->beta2 = b2, o->eps = 1e-8f, o->weight_decay = wd;
    o->n = m->n_params;
    o->m = calloc((size_t)o->n, sizeof *o->m);
    o->v = calloc((size_t)o->n, sizeof *o->v);
    if (!o->m || !o->v) goto oom;
    for (int i = 0; i < o->n; i++) {
        o->m[i] = rq_calloc((size_t)m->params[i]->n * sizeof(float));
        o->v[i] = rq_calloc((size_t)m->params[i]->n * sizeof(float));
        if (!o->m[i] || !o->v[i]) goto oom;
    }
    return RQ_OK;
oom:
    rq_adamw_free(o);
    return rq_err_set(err, RQ_ENOMEM, "adamw: out of memory");
}

void rq_adamw_free(rq_adamw *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        if (o->m) rq_free(o->m[i]);
        if (o->v) rq_free(o->v[i]);
    }
    free(o->m), free(o->v);
    memset(o, 0, sizeof *o);
}

void rq_adamw_step(rq_adamw *o, rq_dit *m, float lr) {
    o->t++;
    /* PyTorch AdamW: decay first, then the bias-corrected Adam update. */
    double bc1 = 1.0 - pow(o->beta1, (double)o->t), bc2 = 1.0 - pow(o->beta2, (double)o->t);
    float step = (float)(lr / bc1), bc2s = (float)sqrt(bc2), decay = 1.0f - lr * o->weight_decay;
    for (int i = 0; i < o->n; i++) {
        rq_tensor *p = m->params[i];
        float *mm = o->m[i], *vv = o->v[i];
#pragma omp parallel for schedule(static) if (p->n > 4096)
        for (long j = 0; j < p->n; j++) {
            float g = p->grad[j];
            mm[j] = o->beta1 * mm[j] + (1.0f - o->beta1) * g;
            vv[j] = o->beta2 * vv[j] + (1.0f - o->beta2) * g * g;
            p->data[j] = p->data[j] * decay - step * mm[j] / (sqrtf(vv[j]) / bc2s + o->eps);
        }
    }
}

double rq_grad_norm(const rq_dit *m, int *finite) {
    double s = 0.0;
    for (int i = 0; i < m->n_params; i++) {
        const rq_tensor *p = m->params[i];
        double ps = 0.0;
#pragma omp parallel for reduction(+ : ps) schedule(static) if (p->n > 4096)
        for (long j = 0; j < p->n; j++) ps += (double)p->grad[j] * p->grad[j];
        s += ps;
    }
    if (finite) *finite = isfinite(s);
    return sqrt(s);
}

const char *rq_first_nonfinite_grad(const rq_dit *m) {
    for (int i = 0; i < m->n_params; i++)
        for (long j = 0; j < m->params[i]->n; j++)
            if (!isfinite(m->params[i]->grad[j])) return m->params[i]->name;
    return NULL;
}

void rq_grad_scale(rq_dit *m, float s) {
    for (int i = 0; i < m->n_params; i++)
        for (long j = 0; j < m->params[i]->n; j++) m->params[i]->grad[j] *= s;
}

void rq_zero_grads(rq_dit *m) {
    for (int i = 0; i < m->n_params; i++) rq_tensor_zero_grad(m->params[i]);
}

rq_status rq_ema_init(rq_ema *e, const rq_dit *m, rq_err *err) {
    if (!e || !m) return rq_err_set(err, RQ_EINVAL, "ema: NULL argument");
    e->n = m->n_params;
    e->w = calloc((size_t)e->n, sizeof *e->w);
    if (!e->w) return rq_err_set(err, RQ_ENOMEM, "ema: out of memory");
    for (int i = 0; i < e->n; i++) {
        size_t bytes = (size_t)m->params[i]->n * sizeof(float);
        if (!(e->w[i] = rq_malloc(bytes))) {
            rq_ema_free(e);
            return rq_err_set(err, RQ_ENOMEM, "ema: out of memory");
        }
        memcpy(e->w[i], m->params[i]->data, bytes);
    }
    return RQ_OK;
}

void rq_ema_update(rq_ema *e, const rq_dit *m, float decay) {
    for (int i = 0; i < e->n; i++) {
        const rq_tensor *p = m->params[i];
#pragma omp parallel for schedule(static) if (p->n > 4096)
        for (long j = 0; j < p->n; j++) e->w[i][j] = decay * e->w[i][j] + (1.0f - decay) * p->data[j];
    }
}

void rq_ema_swap(rq_ema *e, rq_dit *m) {
    for (int i = 0; i < e->n; i++) {
        float *t = m->params[i]->data;
        m->params[i]->data = e->w[i];
        e->w[i] = t;
    }
}

void rq_ema_free(rq_ema *e) {
    if (!e) return;
    for (int i = 0; e->w && i < e->n; i++) rq_free(e->w[i]);
    free(e->w);
    memset(e, 0, sizeof *e);
}
