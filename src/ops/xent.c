/* xent.c: softmax cross-entropy (log-softmax + NLL, mean over rows).
 *
 * Forward keeps only each row's log-sum-exp (and a copy of the labels);
 * backward recomputes softmax from the logits: dlogits = (p - onehot) / rows. */
#include <math.h>
#include <string.h>

#include "ops_internal.h"

typedef struct {
    int *labels;  /* rows */
    double *lse;  /* rows: log sum_j exp(x_j) */
} xent_saved;

static void xent_backward(rq_graph *g, rq_node *n) {
    rq_tensor *x = n->in[0];
    const xent_saved *s = n->saved;
    float *dx = in_grad(g, x);
    if (!dx) return;
    int K = x->shape[x->ndim - 1];
    long rows = x->n / K;
    float d = n->out->grad[0] / (float)rows;
#pragma omp parallel for schedule(static) if (rows * K > 16384)
    for (long r = 0; r < rows; r++) {
        const float *xr = x->data + r * K;
        float *dr = dx + r * K;
        for (int j = 0; j < K; j++) dr[j] += d * (float)exp((double)xr[j] - s->lse[r]);
        dr[s->labels[r]] -= d;
    }
}

rq_tensor *rq_cross_entropy(rq_graph *g, rq_tensor *logits, const int *labels, long n) {
    OP_BEGIN(g, "cross_entropy", logits);
    if (!labels) return rq_graph_fail(g, RQ_EINVAL, "cross_entropy: NULL labels");
    int K = logits->shape[logits->ndim - 1];
    long rows = K > 0 ? logits->n / K : 0;
    if (K < 1 || rows < 1 || rows != n)
        return rq_graph_fail(g, RQ_ESHAPE, "cross_entropy: logits %s need %ld rows of classes (got %ld labels)",
                             SHAPE(logits), rows, n);
    for (long r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= K)
            return rq_graph_fail(g, RQ_EINVAL, "cross_entropy: label %d at row %ld outside [0,%d)", labels[r],
                                 r, K);
    xent_saved *s = rq_arena_alloc(&g->arena, sizeof *s);
    if (s) s->labels = rq_arena_alloc(&g->arena, (size_t)rows * sizeof(int));
    if (s && s->labels) s->lse = rq_arena_alloc(&g->arena, (size_t)rows * sizeof(double));
    if (!s || !s->labels || !s->lse) return rq_graph_fail(g, RQ_ENOMEM, "cross_entropy: arena out of memory");
    memcpy(s->labels, labels, (size_t)rows * sizeof(int));
    rq_tensor *y = rq_tensor_arena(g, 1, (int[]){1});
    if (!y) return NULL;
    /* log-sum-exp in double: the loss is an average of small differences */
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (rows * K > 16384)
    for (long r = 0; r < rows; r++) {
        const float *xr = logits->data + r * K;
        double m = -INFINITY, acc = 0.0;
        for (int j = 0; j < K; j++) m = xr[j] > m ? xr[j] : m;
        for (int j = 0; j < K; j++) acc += exp((double)xr[j] - m);
        s->lse[r] = m + log(acc);
        total += s->lse[r] - xr[s->labels[r]];
    }
    y->data[0] = (float)(total / (double)rows);
    if (!isfinite(y->data[0]))
        return rq_graph_fail(g, RQ_ENUM, "cross_entropy: non-finite loss (logits %s)", SHAPE(logits));
    if (rq_needs_grad(g, 1, &logits)) {
        rq_node *nd = rq_graph_push(g, "cross_entropy", xent_backward, y);
        if (!nd) return NULL;
        nd->in[0] = logits, nd->saved = s;
    }
    return y;
}
