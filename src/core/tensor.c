/* tensor.c: tensors, the per-step arena and the autograd tape. */
#include "robuq/tensor.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

void rq_arena_init(rq_arena *a, size_t block_size) {
    memset(a, 0, sizeof *a);
    a->block_size = block_size ? block_size : ((size_t)64 << 20);
}

static rq_arena_block *arena_new_block(rq_arena *a, size_t min_bytes) {
    size_t cap = a->block_size > min_bytes ? a->block_size : min_bytes;
    rq_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->mem = rq_malloc(cap);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    b->used = 0;
    b->next = NULL;
    a->n_sys_allocs++;
    return b;
}

void *rq_arena_alloc(rq_arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0) need = 64;
    if (!a->cur) {
        if (!a->head && !(a->head = arena_new_block(a, need))) return NULL;
        a->cur = a->head;
    }
    /* Walk forward through blocks kept from earlier steps before asking the
     * system for more: after the first step the same blocks are reused. */
    while (a->cur->used + need > a->cur->cap) {
        if (!a->cur->next) {
            rq_arena_block *b = arena_new_block(a, need);
            if (!b) return NULL;
            a->cur->next = b;
        }
        a->cur = a->cur->next;
        a->cur->used = 0;
    }
    void *p = a->cur->mem + a->cur->used;
    a->cur->used += need;
    a->in_use += need;
    if (a->in_use > a->high_water) a->high_water = a->in_use;
    return p;
}

void rq_arena_reset(rq_arena *a) {
    if (a->head) a->head->used = 0;
    a->cur = a->head;
    a->in_use = 0;
}

rq_arena_mark rq_arena_get_mark(const rq_arena *a) {
    rq_arena_mark m = {a->cur, a->cur ? a->cur->used : 0, a->in_use};
    return m;
}

void rq_arena_rewind(rq_arena *a, rq_arena_mark mark) {
    if (!mark.cur) { /* nothing was allocated at the mark */
        rq_arena_reset(a);
        return;
    }
    a->cur = mark.cur;
    a->cur->used = mark.used;
    a->in_use = mark.in_use;
}

void rq_arena_free(rq_arena *a) {
    rq_arena_block *b = a->head;
    while (b) {
        rq_arena_block *next = b->next;
        rq_free(b->mem);
        free(b);
        b = next;
    }
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------ graph */

rq_status rq_graph_init(rq_graph *g, size_t arena_block_bytes) {
    if (!g) return RQ_EINVAL;
    memset(g, 0, sizeof *g);
    rq_arena_init(&g->arena, arena_block_bytes);
    g->cap_nodes = 256;
    g->nodes = malloc((size_t)g->cap_nodes * sizeof *g->nodes);
    if (!g->nodes) return RQ_ENOMEM;
    g->grad_enabled = 1;
    return RQ_OK;
}

void rq_graph_free(rq_graph *g) {
    if (!g) return;
    rq_arena_free(&g->arena);
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

void rq_graph_reset(rq_graph *g) {
    rq_arena_reset(&g->arena);
    g->n_nodes = 0;
    rq_err_clear(&g->err);
}

void *rq_graph_fail(rq_graph *g, rq_status code, const char *fmt, ...) {
    if (g && g->err.code == RQ_OK) {
        g->err.code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err.msg, sizeof g->err.msg, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

/* ---------------------------------------------------------------- profile */

static int profile_slot(rq_profile *p, const char *op) {
    for (int i = 0; i < p->n; i++)
        if (p->ops[i].op == op || !strcmp(p->ops[i].op, op)) return i;
    if (p->n == RQ_PROF_MAX_OPS) return -1; /* table full: the op goes uncounted */
    p->ops[p->n].op = op;
    p->ops[p->n].fwd_s = p->ops[p->n].bwd_s = 0;
    p->ops[p->n].calls = 0;
    return p->n++;
}

/* A forward op's time: since the previous push (the mark moves on). */
static void profile_forward(rq_profile *p, const char *op) {
    const double now = rq_now();
    const int i = profile_slot(p, op);
    if (i >= 0) p->ops[i].fwd_s += now - p->mark, p->ops[i].calls++;
    p->mark = now;
}

static void profile_backward(rq_profile *p, const char *op, double s) {
    const int i = profile_slot(p, op);
    if (i >= 0) p->ops[i].bwd_s += s;
}

void rq_profile_mark(rq_graph *g, const char *op) {
    if (g && g->prof && !g->grad_enabled && op) profile_forward(g->prof, op);
}

void rq_profile_start(rq_profile *p) {
    if (p) p->mark = rq_now();
}

void rq_profile_print(const rq_profile *p, FILE *f, int steps) {
    if (!p || !f) return;
    rq_profile s = *p;
    double total = 0;
    for (int i = 0; i < s.n; i++) total += s.ops[i].fwd_s + s.ops[i].bwd_s;
    /* insertion sort by total time, descending (a few dozen ops) */
    for (int i = 1; i < s.n; i++)
        for (int j = i; j > 0 && s.ops[j].fwd_s + s.ops[j].bwd_s > s.ops[j - 1].fwd_s + s.ops[j - 1].bwd_s; j--) {
            __typeof__(s.ops[0]) t = s.ops[j];
            s.ops[j] = s.ops[j - 1], s.ops[j - 1] = t;
        }
    double k = steps > 0 ? 1.0 / steps : 1.0;
    fprintf(f, "%-22s %8s %10s %10s %7s\n", "op", "calls", "fwd ms", "bwd ms", "share");
    for (int i = 0; i < s.n; i++)
        fprintf(f, "%-22s %8ld %10.2f %10.2f %6.1f%%\n", s.ops[i].op, (long)(s.ops[i].calls * k),
                1e3 * s.ops[i].fwd_s * k, 1e3 * s.ops[i].bwd_s * k,
                total > 0 ? 100 * (s.ops[i].fwd_s + s.ops[i].bwd_s) / total : 0.0);
    fprintf(f, "%-22s %8s %10s %10s %6.1f ms per step\n", "total", "", "", "", 1e3 * total * k);
}

rq_node *rq_graph_push(rq_graph *g, const char *op, rq_backward_fn bw, rq_tensor *out) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes * 2;
        rq_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return rq_graph_fail(g, RQ_ENOMEM, "%s: tape cannot grow to %d nodes", op, cap);
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    if (g->prof) profile_forward(g->prof, op);
    rq_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = bw;
    n->out = out;
    out->requires_grad = 1;
    return n;
}

int rq_needs_grad(const rq_graph *g, int n_in, rq_tensor *const *in) {
    if (!g->grad_enabled) return 0;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) return 1;
    return 0;
}

rq_status rq_backward(rq_graph *g, rq_tensor *loss) {
    if (!g || !loss) return RQ_EINVAL;
    if (!rq_graph_ok(g)) return g->err.code;
    if (loss->n != 1) {
        char s[64];
        rq_graph_fail(g, RQ_ESHAPE, "backward: loss must have 1 element, got %s",
                      rq_shape_str(loss, s, sizeof s));
        return g->err.code;
    }
    if (!loss->requires_grad) {
        rq_graph_fail(g, RQ_EINVAL, "backward: loss does not depend on any parameter");
        return g->err.code;
    }
    float *dl = rq_tensor_grad(g, loss);
    if (!dl) return g->err.code;
    dl[0] += 1.0f;
    return rq_backward_tape(g);
}

rq_status rq_backward_tape(rq_graph *g) {
    if (!g) return RQ_EINVAL;
    if (!rq_graph_ok(g)) return g->err.code;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        rq_node *n = &g->nodes[i];
        /* Nothing flowed into this node's output: its inputs get nothing. */
        if (!n->out->grad) continue;
        double t0 = g->prof ? rq_now() : 0;
        n->backward(g, n);
        if (g->prof) profile_backward(g->prof, n->op, rq_now() - t0);
        if (!rq_graph_ok(g)) return g->err.code;
    }
    return RQ_OK;
}

/* ---------------------------------------------------------------- tensors */

long rq_shape_numel(int ndim, const int *shape) {
    long n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int rq_same_shape(const rq_tensor *a, const rq_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *rq_shape_str(const rq_tensor *t, char *buf, size_t len) {
    if (!t) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ",%d" : "%d", t->shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}

static int shape_ok(int ndim, const int *shape) {
    if (ndim < 1 || ndim > RQ_MAX_DIMS || !shape) return 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return 0;
    return 1;
}

static void tensor_set_shape(rq_tensor *t, int ndim, const int *shape) {
    t->ndim = ndim;
    for (int i = 0; i < RQ_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->n = rq_shape_numel(ndim, shape);
}

rq_tensor *rq_tensor_new(int ndim, const int *shape, int requires_grad, const char *name) {
    if (!shape_ok(ndim, shape)) return NULL;
    rq_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    tensor_set_shape(t, ndim, shape);
    t->owns = 1;
    t->requires_grad = requires_grad;
    if (name) snprintf(t->name, sizeof t->name, "%s", name);
    t->data = rq_calloc((size_t)t->n * sizeof(float));
    if (requires_grad) t->grad = rq_calloc((size_t)t->n * sizeof(float));
    if (!t->data || (requires_grad && !t->grad)) {
        rq_tensor_free(t);
        return NULL;
    }
    return t;
}

void rq_tensor_free(rq_tensor *t) {
    if (!t) return;
    if (t->owns) {
        rq_free(t->data);
        rq_free(t->grad);
    }
    free(t);
}

rq_tensor *rq_tensor_arena(rq_graph *g, int ndim, const int *shape) {
    if (!rq_graph_ok(g)) return NULL;
    if (!shape_ok(ndim, shape)) return rq_graph_fail(g, RQ_EINVAL, "tensor: bad shape (ndim %d)", ndim);
    rq_tensor *t = rq_arena_alloc(&g->arena, sizeof *t);
    if (!t) return rq_graph_fail(g, RQ_ENOMEM, "tensor: arena out of memory");
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, ndim, shape);
    t->data = rq_arena_alloc(&g->arena, (size_t)t->n * sizeof(float));
    if (!t->data) return rq_graph_fail(g, RQ_ENOMEM, "tensor: arena out of memory (%ld floats)", t->n);
    return t;
}

rq_tensor *rq_tensor_wrap(rq_graph *g, float *data, int ndim, const int *shape) {
    if (!rq_graph_ok(g)) return NULL;
    if (!data || !shape_ok(ndim, shape)) return rq_graph_fail(g, RQ_EINVAL, "wrap: bad data or shape");
    rq_tensor *t = rq_arena_alloc(&g->arena, sizeof *t);
    if (!t) return rq_graph_fail(g, RQ_ENOMEM, "wrap: arena out of memory");
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, ndim, shape);
    t->data = data;
    return t;
}

/* Zeroes n floats; large buffers on all threads (a gradient buffer of a
 * large activation is tens of MB, and one thread's memset would be a
 * serial stretch of the backward pass). */
#define ZERO_PAR_FLOATS (1L << 18)
#define ZERO_CHUNK (1L << 14)
static void zero_floats(float *p, long n) {
    if (n < ZERO_PAR_FLOATS || omp_in_parallel()) {
        memset(p, 0, (size_t)n * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ZERO_CHUNK) memset(p + i, 0, (size_t)(n - i < ZERO_CHUNK ? n - i : ZERO_CHUNK) * sizeof(float));
}

float *rq_tensor_grad(rq_graph *g, rq_tensor *t) {
    if (t->grad) return t->grad;
    t->grad = rq_arena_alloc(&g->arena, (size_t)t->n * sizeof(float));
    if (!t->grad) return rq_graph_fail(g, RQ_ENOMEM, "grad: arena out of memory (%ld floats)", t->n);
    zero_floats(t->grad, t->n);
    return t->grad;
}

void rq_tensor_zero_grad(rq_tensor *t) {
    if (t && t->grad) zero_floats(t->grad, t->n);
}
