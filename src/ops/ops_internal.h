/* ops_internal.h: argument checks shared by op implementations. */
#ifndef ROBUQ_OPS_INTERNAL_H
#define ROBUQ_OPS_INTERNAL_H

#include "robuq/ops.h"

/* Every op starts with this: bail out on a NULL graph, a sticky error, or a
 * NULL tensor argument (which usually means an earlier op failed). */
#define OP_BEGIN(g, opname, ...)                                                       \
    do {                                                                               \
        if (!(g) || !rq_graph_ok(g)) return NULL;                                      \
        rq_tensor *op_args_[] = {__VA_ARGS__};                                         \
        for (size_t i_ = 0; i_ < sizeof op_args_ / sizeof op_args_[0]; i_++)           \
            if (!op_args_[i_]) return rq_graph_fail(g, RQ_EINVAL, "%s: NULL input %zu", \
                                                    opname, i_);                       \
    } while (0)

#define SHAPE(t) rq_shape_str((t), (char[64]){0}, 64)

/* Output tensor with x's shape. */
static inline rq_tensor *out_like(rq_graph *g, const rq_tensor *x) {
    return rq_tensor_arena(g, x->ndim, x->shape);
}

/* Grad buffer of an input that wants one, or NULL if it does not. */
static inline float *in_grad(rq_graph *g, rq_tensor *t) {
    return (t && t->requires_grad) ? rq_tensor_grad(g, t) : NULL;
}

#endif
