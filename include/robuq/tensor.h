/* tensor.h: float32 tensors (up to 4-D, contiguous), the per-step arena, and
 * the tape-based reverse-mode autograd graph.
 *
 * Parameters live outside the arena (rq_tensor_new) and own their data and
 * grad. Activations are allocated from the graph's arena during a step; the
 * tape records one node per op with its backward function. rq_backward()
 * walks the tape in reverse; rq_graph_reset() rewinds arena and tape so the
 * next step reuses the same memory (no allocation in steady state).
 *
 * Errors are sticky: the first failing op stores a code + message in
 * g->err and every later op returns NULL at once, so model code can chain ops
 * and check rq_graph_ok(g) once. */
#ifndef ROBUQ_TENSOR_H
#define ROBUQ_TENSOR_H

#include <stdio.h>

#include "robuq/common.h"

#define RQ_MAX_DIMS 4

typedef struct rq_tensor {
    float *data;
    float *grad;            /* NULL until needed; same shape as data */
    int ndim;
    int shape[RQ_MAX_DIMS];
    long n;                 /* number of elements */
    int requires_grad;      /* parameter or depends on one */
    int owns;               /* data/grad were malloc'd (parameters), not arena */
    char name[96];          /* parameter name (reference state-dict key) */
} rq_tensor;

/* ---- arena: bump allocator made of blocks that are kept across resets ---- */
typedef struct rq_arena_block {
    struct rq_arena_block *next;
    size_t cap, used;
    char *mem;
} rq_arena_block;

typedef struct {
    rq_arena_block *head;     /* first block */
    rq_arena_block *cur;      /* block being filled */
    size_t block_size;        /* default size of a new block */
    size_t in_use, high_water;
    long n_sys_allocs;        /* blocks ever malloc'd: stays flat in steady state */
} rq_arena;

void rq_arena_init(rq_arena *a, size_t block_size);
void *rq_arena_alloc(rq_arena *a, size_t bytes);  /* 64-byte aligned, NULL on OOM */
void rq_arena_reset(rq_arena *a);
/* A point in the arena to come back to: everything allocated after the mark
 * is released by rq_arena_rewind (forward-only code that reuses the same
 * memory for each block's temporaries). */
typedef struct {
    rq_arena_block *cur;
    size_t used, in_use;
} rq_arena_mark;
rq_arena_mark rq_arena_get_mark(const rq_arena *a);
void rq_arena_rewind(rq_arena *a, rq_arena_mark mark);
void rq_arena_free(rq_arena *a);

/* ---- graph / tape ---- */
struct rq_graph;
struct rq_node;
typedef void (*rq_backward_fn)(struct rq_graph *g, struct rq_node *n);

#define RQ_NODE_MAX_IN 4
typedef struct rq_node {
    const char *op;
    rq_backward_fn backward;
    rq_tensor *out;
    rq_tensor *in[RQ_NODE_MAX_IN];
    void *saved;            /* op-specific buffers, arena-allocated */
    int iarg[6];
    float farg[4];
} rq_node;

/* Per-op timing (robuq-bench --profile). Ops run eagerly and push their tape
 * node when done, so an op's forward time is taken as the time since the
 * previous push (the first op after rq_profile_start also gets whatever ran
 * before it); backward times are exact per node. Only recorded ops count:
 * with grad disabled nothing is pushed and nothing is timed. */
#define RQ_PROF_MAX_OPS 64
typedef struct {
    struct { const char *op; double fwd_s, bwd_s; long calls; } ops[RQ_PROF_MAX_OPS];
    int n;
    double mark; /* time of the last push */
} rq_profile;

typedef struct rq_graph {
    rq_arena arena;
    rq_node *nodes;
    int n_nodes, cap_nodes;
    int grad_enabled;       /* 0: no tape (inference / no_grad) */
    rq_profile *prof;       /* NULL: no timing */
    rq_err err;
} rq_graph;

rq_status rq_graph_init(rq_graph *g, size_t arena_block_bytes);
void rq_graph_free(rq_graph *g);
/* Rewind arena + tape; activations from the previous step become invalid. */
void rq_graph_reset(rq_graph *g);
static inline int rq_graph_ok(const rq_graph *g) { return g->err.code == RQ_OK; }
/* Record an error in the graph (first one wins); returns NULL for chaining. */
void *rq_graph_fail(rq_graph *g, rq_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Marks the start of a timed forward (call right before it). */
void rq_profile_start(rq_profile *p);
/* Forward-only code (grad disabled, so nothing is pushed) ends a timed
 * section here: the time since the previous mark, push or
 * rq_profile_start goes to op. No-op without a profile, or with grad
 * enabled (the pushes time the ops then). op must outlive the profile. */
void rq_profile_mark(rq_graph *g, const char *op);
/* Table of ops by total time, per step (divides by steps), to f. */
void rq_profile_print(const rq_profile *p, FILE *f, int steps);

/* Reverse pass: seeds d(loss)=1 (loss must be a 1-element tensor). Gradients
 * accumulate into parameter grads (+=). */
rq_status rq_backward(rq_graph *g, rq_tensor *loss);
/* The same walk over the tape, with the output gradients already seeded by
 * the caller (activation recomputation re-runs a block in a scratch graph
 * and pushes the block output's gradient through it). */
rq_status rq_backward_tape(rq_graph *g);

/* ---- tensors ---- */
/* Parameter / persistent tensor with its own memory (data zeroed, grad
 * allocated iff requires_grad). Free with rq_tensor_free. */
rq_tensor *rq_tensor_new(int ndim, const int *shape, int requires_grad, const char *name);
void rq_tensor_free(rq_tensor *t);
/* Activation in the arena (data uninitialised, grad NULL). */
rq_tensor *rq_tensor_arena(rq_graph *g, int ndim, const int *shape);
/* Arena tensor that wraps caller memory as a constant (no grad). */
rq_tensor *rq_tensor_wrap(rq_graph *g, float *data, int ndim, const int *shape);
/* Grad buffer of t, allocated (zeroed) in the arena on first use. */
float *rq_tensor_grad(rq_graph *g, rq_tensor *t);
void rq_tensor_zero_grad(rq_tensor *t);
long rq_shape_numel(int ndim, const int *shape);
int rq_same_shape(const rq_tensor *a, const rq_tensor *b);
/* "[2,3,4]" into buf, for error messages. */
const char *rq_shape_str(const rq_tensor *t, char *buf, size_t len);

/* Append a node to the tape (used by op implementations). Returns NULL (and
 * sets the error) if the tape cannot grow. */
rq_node *rq_graph_push(rq_graph *g, const char *op, rq_backward_fn bw, rq_tensor *out);
/* 1 if any input requires grad and the graph records (the op must push). */
int rq_needs_grad(const rq_graph *g, int n_in, rq_tensor *const *in);

#endif
