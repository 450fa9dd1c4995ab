/* dist.h: data-parallel training across processes (MPI, optional at build time).
 *
 * One rq_dist per process, owned by the caller (no global state). Built with
 * ROBUQ_WITH_MPI (CMake: MPI found, -DROBUQ_MPI=AUTO|ON) and started by an
 * MPI launcher (mpirun / mpiexec / srun, recognised from its environment),
 * rq_dist_init joins the job; otherwise the process is rank 0 of 1 and every
 * collective below returns at once, leaving its data as it is. A program
 * built with MPI but started without a launcher never initialises MPI.
 *
 * The float all-reduces are MPI_Allreduce (sum) over buckets of at most
 * bucket_max floats. Data parallel training updates the weights on every
 * rank independently, so it needs bitwise the same sum on every rank. The
 * MPI standard only recommends that, but Open MPI's algorithms (commutative pairs,
 * ring, reduce-scatter + all-gather) give it; rq_dist_same_u64 lets the
 * caller check it (robuq-train compares a hash of the weights at every
 * log line and checkpoint; a reduce-scatter + all-gather that would make it
 * true by construction measured 5x slower here with Open MPI 4.1).
 * Functions must be called from one thread per process, in
 * the same order on every rank. */
#ifndef ROBUQ_DIST_H
#define ROBUQ_DIST_H

#include "robuq/common.h"

/* Default staging bucket of the float all-reduces: 4 Mi floats (16 MiB). */
#define RQ_DIST_BUCKET_FLOATS (1L << 22)

typedef struct {
    int rank, size;   /* this process, of size (0 of 1 without MPI) */
    int local_size;   /* ranks on this machine (shared memory), this one included */
    int mpi;          /* 1: in an MPI job (collectives communicate) */
    int own_init;     /* 1: rq_dist_init initialised MPI (and finalizes it) */
    void *comm;       /* MPI_Comm * (a duplicate of MPI_COMM_WORLD), NULL without MPI */
    float *bucket;    /* staging buffer, allocated on first use */
    long bucket_len;  /* its length in floats */
    long bucket_max;  /* upper bound for bucket_len (RQ_DIST_BUCKET_FLOATS unless set after init) */
} rq_dist;

/* 1 if this build can run over MPI, 0 if not (then rq_dist is always one process). */
int rq_dist_available(void);
/* Joins the MPI job when an MPI launcher started this process (argc/argv may
 * be NULL). A build without MPI started by a launcher with more than one
 * process is an error (each process would otherwise train alone). */
rq_status rq_dist_init(rq_dist *d, int *argc, char ***argv, rq_err *err);
/* Barrier, then leaves MPI (if rq_dist_init entered it); frees the bucket. */
void rq_dist_finalize(rq_dist *d);
/* Ends every process of the job with code (MPI_Abort); exit(code) alone. */
void rq_dist_abort(rq_dist *d, int code) __attribute__((noreturn));

/* x[n] <- sum over ranks, in place, identical on every rank. */
rq_status rq_dist_allreduce_sum_f32(rq_dist *d, float *x, long n, rq_err *err);
/* The arrays xs[i][ns[i]] (i < count) <- their mean over ranks, packed into
 * bucket-sized all-reduces (one collective per bucket, not per array). */
rq_status rq_dist_allreduce_mean_f32v(rq_dist *d, float *const *xs, const long *ns, int count, rq_err *err);
/* x[n] <- element-wise maximum over ranks, in place (flags, counters). */
rq_status rq_dist_allreduce_max_i32(rq_dist *d, int *x, int n, rq_err *err);
/* *same = 1 on every rank if v is the same on all ranks, else 0 on every rank. */
rq_status rq_dist_same_u64(rq_dist *d, uint64_t v, int *same, rq_err *err);
rq_status rq_dist_barrier(rq_dist *d, rq_err *err);
/* bytes of buf from rank root to every rank. */
rq_status rq_dist_bcast(rq_dist *d, void *buf, long bytes, int root, rq_err *err);

#endif
