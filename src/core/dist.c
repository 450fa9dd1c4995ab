/* dist.c: the MPI layer of data-parallel training (dist.h). The only file
 * that includes <mpi.h>, under ROBUQ_WITH_MPI; without it every function is
 * the single-process case (rank 0 of 1, collectives return at once). */
#include "robuq/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ROBUQ_WITH_MPI
#include <mpi.h>
#endif

/* Number of processes an MPI launcher started (its environment variables:
 * Open MPI, PMIx, MPICH / Hydra / Intel MPI, Slurm's PMI), 0 when none did. */
static long launcher_size(void) {
    static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof size_vars / sizeof size_vars[0]; i++) {
        const char *v = getenv(size_vars[i]);
        if (v && *v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end == '\0' && n > 0) return n;
        }
    }
    const char *r = getenv("PMIX_RANK");
    if (!r || !*r) r = getenv("PMI_RANK");
    return r && *r ? 1 : 0; /* a launcher, size unknown here: MPI will tell */
}

int rq_dist_available(void) {
#ifdef ROBUQ_WITH_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef ROBUQ_WITH_MPI
static rq_status mpi_fail(rq_err *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    return rq_err_set(err, RQ_EIO, "MPI: %s failed: %s", what, msg);
}
#define COMM(d) (*(MPI_Comm *)(d)->comm)
#endif

static rq_status check_dist(const rq_dist *d, rq_err *err, const char *fn) {
    if (!d) return rq_err_set(err, RQ_EINVAL, "%s: NULL rq_dist", fn);
    if (d->size < 1 || d->rank < 0 || d->rank >= d->size || (d->mpi && !d->comm))
        return rq_err_set(err, RQ_EINVAL, "%s: rq_dist not initialised (rq_dist_init)", fn);
    return RQ_OK;
}

rq_status rq_dist_init(rq_dist *d, int *argc, char ***argv, rq_err *err) {
    if (!d) return rq_err_set(err, RQ_EINVAL, "rq_dist_init: NULL rq_dist");
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
    d->bucket_max = RQ_DIST_BUCKET_FLOATS;
    long launched = launcher_size();
#ifndef ROBUQ_WITH_MPI
    (void)argc, (void)argv;
    if (launched > 1)
        return rq_err_set(err, RQ_EINVAL,
                          "started by an MPI launcher with %ld processes, but this build has no MPI "
                          "(rebuild with libopenmpi-dev installed, or cmake -DROBUQ_MPI=ON)", launched);
    return RQ_OK;
#else
    if (!launched) return RQ_OK; /* a plain process: MPI is never touched */
    int inited = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = MPI_THREAD_SINGLE;
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Init_thread");
        d->own_init = 1;
        /* OpenMP threads never call MPI; only the main thread does */
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_Finalize();
            d->own_init = 0;
            return rq_err_set(err, RQ_EINVAL, "MPI: the library offers no MPI_THREAD_FUNNELED support");
        }
    }
    MPI_Comm *c = malloc(sizeof *c);
    if (!c) {
        if (d->own_init) MPI_Finalize();
        d->own_init = 0;
        return rq_err_set(err, RQ_ENOMEM, "rq_dist_init: out of memory");
    }
    rc = MPI_Comm_dup(MPI_COMM_WORLD, c);
    if (rc != MPI_SUCCESS) {
        free(c);
        if (d->own_init) MPI_Finalize();
        d->own_init = 0;
        return mpi_fail(err, rc, "MPI_Comm_dup");
    }
    /* errors come back as codes, so callers can say which rank and step failed */
    MPI_Comm_set_errhandler(*c, MPI_ERRORS_RETURN);
    d->comm = c;
    d->mpi = 1;
    MPI_Comm_rank(*c, &d->rank);
    MPI_Comm_size(*c, &d->size);
    MPI_Comm local;
    if (MPI_Comm_split_type(*c, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &d->local_size);
        MPI_Comm_free(&local);
    }
    return RQ_OK;
#endif
}

void rq_dist_finalize(rq_dist *d) {
    if (!d) return;
#ifdef ROBUQ_WITH_MPI
    if (d->mpi && d->comm) {
        MPI_Barrier(COMM(d));
        MPI_Comm_free((MPI_Comm *)d->comm);
        free(d->comm);
        if (d->own_init) MPI_Finalize();
    }
#endif
    rq_free(d->bucket);
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
}

void rq_dist_abort(rq_dist *d, int code) {
    fflush(stdout), fflush(stderr);
#ifdef ROBUQ_WITH_MPI
    if (d && d->mpi) MPI_Abort(d->comm ? COMM(d) : MPI_COMM_WORLD, code);
#endif
    (void)d;
    exit(code);
}

#ifdef ROBUQ_WITH_MPI
/* Copies len floats between the arrays (from array *ai, offset *off on)
 * and buf; to_buf = 0 copies back, multiplied by scale. Advances *ai, *off. */
static void walk(float *const *xs, const long *ns, int count, int *ai, long *off, float *buf, long len,
                 int to_buf, float scale) {
    long done = 0;
    while (done < len && *ai < count) {
        long take = ns[*ai] - *off;
        if (take > len - done) take = len - done;
        float *x = xs[*ai] + *off;
        if (to_buf) {
            memcpy(buf + done, x, (size_t)take * sizeof(float));
        } else if (scale == 1.0f) {
            memcpy(x, buf + done, (size_t)take * sizeof(float));
        } else {
            for (long j = 0; j < take; j++) x[j] = buf[done + j] * scale;
        }
        done += take;
        *off += take;
        if (*off == ns[*ai]) (*ai)++, *off = 0;
    }
}

static long bucket_cap(const rq_dist *d) {
    long cap = d->bucket_max > 0 ? d->bucket_max : RQ_DIST_BUCKET_FLOATS;
    return cap > 0x40000000L ? 0x40000000L : cap; /* counts are ints */
}
#endif

/* Checks the arguments of the float all-reduces; *total = sum of ns. */
static rq_status check_arrays(const rq_dist *d, float *const *xs, const long *ns, int count, long *total,
                              rq_err *err, const char *fn) {
    if (check_dist(d, err, fn)) return RQ_EINVAL;
    if (count < 0 || (count > 0 && (!xs || !ns))) return rq_err_set(err, RQ_EINVAL, "%s: bad arguments", fn);
    *total = 0;
    for (int i = 0; i < count; i++) {
        if (ns[i] < 0 || (ns[i] > 0 && !xs[i]))
            return rq_err_set(err, RQ_EINVAL, "%s: array %d: NULL or negative length %ld", fn, i, ns[i]);
        *total += ns[i];
    }
    if (d->size > 1 && !d->mpi) return rq_err_set(err, RQ_EINVAL, "%s: %d ranks without MPI", fn, d->size);
    return RQ_OK;
}

rq_status rq_dist_allreduce_sum_f32(rq_dist *d, float *x, long n, rq_err *err) {
    long total = 0;
    rq_status s = check_arrays(d, &x, &n, 1, &total, err, "rq_dist_allreduce_sum_f32");
    if (s) return s;
    if (d->size == 1 || total == 0) return RQ_OK; /* the sum over one rank is the data itself */
#ifdef ROBUQ_WITH_MPI
    const long cap = bucket_cap(d);
    for (long done = 0; done < n; done += cap) { /* in place, a bucket at a time */
        int len = (int)(n - done < cap ? n - done : cap);
        int rc = MPI_Allreduce(MPI_IN_PLACE, x + done, len, MPI_FLOAT, MPI_SUM, COMM(d));
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Allreduce");
    }
#endif
    return RQ_OK;
}

rq_status rq_dist_allreduce_mean_f32v(rq_dist *d, float *const *xs, const long *ns, int count, rq_err *err) {
    long total = 0;
    rq_status s = check_arrays(d, xs, ns, count, &total, err, "rq_dist_allreduce_mean_f32v");
    if (s) return s;
    if (d->size == 1 || total == 0) return RQ_OK; /* the mean over one rank is the data itself */
#ifdef ROBUQ_WITH_MPI
    long cap = bucket_cap(d);
    if (cap > total) cap = total;
    if (d->bucket_len < cap) {
        rq_free(d->bucket);
        d->bucket = rq_malloc((size_t)cap * sizeof(float));
        d->bucket_len = d->bucket ? cap : 0;
        if (!d->bucket)
            return rq_err_set(err, RQ_ENOMEM, "rq_dist_allreduce_mean_f32v: out of memory for a bucket of %ld floats",
                              cap);
    }
    /* the arrays, packed back to back into buckets: one collective per
     * bucket, however many (small) arrays it holds */
    const float scale = 1.0f / (float)d->size;
    int ai = 0;
    long off = 0;
    for (long done = 0; done < total;) {
        long len = total - done < cap ? total - done : cap;
        int ai0 = ai;
        long off0 = off;
        walk(xs, ns, count, &ai, &off, d->bucket, len, 1, 1.0f);
        int rc = MPI_Allreduce(MPI_IN_PLACE, d->bucket, (int)len, MPI_FLOAT, MPI_SUM, COMM(d));
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Allreduce");
        walk(xs, ns, count, &ai0, &off0, d->bucket, len, 0, scale);
        done += len;
    }
#endif
    return RQ_OK;
}

rq_status rq_dist_same_u64(rq_dist *d, uint64_t v, int *same, rq_err *err) {
    if (check_dist(d, err, "rq_dist_same_u64")) return RQ_EINVAL;
    if (!same) return rq_err_set(err, RQ_EINVAL, "rq_dist_same_u64: NULL result");
    *same = 1;
    if (d->size == 1) return RQ_OK;
    uint64_t v0 = v;
    rq_status s = rq_dist_bcast(d, &v0, sizeof v0, 0, err);
    int diff = v0 != v;
    if (!s) s = rq_dist_allreduce_max_i32(d, &diff, 1, err);
    if (!s) *same = !diff;
    return s;
}

rq_status rq_dist_allreduce_max_i32(rq_dist *d, int *x, int n, rq_err *err) {
    if (check_dist(d, err, "rq_dist_allreduce_max_i32")) return RQ_EINVAL;
    if (n < 0 || (n > 0 && !x)) return rq_err_set(err, RQ_EINVAL, "rq_dist_allreduce_max_i32: bad arguments");
    if (d->size == 1 || n == 0) return RQ_OK;
#ifdef ROBUQ_WITH_MPI
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT, MPI_MAX, COMM(d));
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Allreduce");
    return RQ_OK;
#else
    return rq_err_set(err, RQ_EINVAL, "rq_dist_allreduce_max_i32: %d ranks in a build without MPI", d->size);
#endif
}

rq_status rq_dist_barrier(rq_dist *d, rq_err *err) {
    if (check_dist(d, err, "rq_dist_barrier")) return RQ_EINVAL;
    if (d->size == 1) return RQ_OK;
#ifdef ROBUQ_WITH_MPI
    int rc = MPI_Barrier(COMM(d));
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Barrier");
    return RQ_OK;
#else
    return rq_err_set(err, RQ_EINVAL, "rq_dist_barrier: %d ranks in a build without MPI", d->size);
#endif
}

rq_status rq_dist_bcast(rq_dist *d, void *buf, long bytes, int root, rq_err *err) {
    if (check_dist(d, err, "rq_dist_bcast")) return RQ_EINVAL;
    if (bytes < 0 || (bytes > 0 && !buf) || root < 0 || root >= d->size)
        return rq_err_set(err, RQ_EINVAL, "rq_dist_bcast: bad arguments (bytes %ld, root %d of %d)", bytes, root,
                          d->size);
    if (d->size == 1 || bytes == 0) return RQ_OK;
#ifdef ROBUQ_WITH_MPI
    for (long done = 0; done < bytes;) { /* counts are ints: 1 GiB pieces */
        long len = bytes - done < (1L << 30) ? bytes - done : (1L << 30);
        int rc = MPI_Bcast((char *)buf + done, (int)len, MPI_BYTE, root, COMM(d));
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Bcast");
        done += len;
    }
    return RQ_OK;
#else
    return rq_err_set(err, RQ_EINVAL, "rq_dist_bcast: %d ranks in a build without MPI", d->size);
#endif
}
