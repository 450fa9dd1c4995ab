/* h5io.c: atomic HDF5 writer and validating reader (see robuq/h5io.h).
 *
 * Every public call silences HDF5's automatic error printing for its
 * duration (and restores whatever handler was installed before), so the
 * only thing a user ever sees is our one-line rq_err message. */
#include "robuq/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

typedef struct {
    H5E_auto2_t fn;
    void *data;
} quiet_t;

static void quiet_on(quiet_t *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void quiet_off(quiet_t *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

/* The innermost HDF5 error description, appended to our messages so that
 * e.g. "disk full" is not lost. Walking upward visits the deepest first. */
static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *ctx) {
    if (n != 0 || !e->desc) return 0;
    char *out = ctx;
    /* I/O failures read "file write failed: time = <ctime with a newline>,
     * filename = ..., errno = 28, error message = 'No space left on
     * device', ...": keep the head and the system's message. */
    const char *em = strstr(e->desc, "error message = '");
    const char *colon = strchr(e->desc, ':');
    if (em && colon) {
        em += strlen("error message = '");
        const char *q = strchr(em, '\'');
        snprintf(out, 160, "%.*s: %.*s", (int)(colon - e->desc), e->desc, (int)(q ? q - em : 80), em);
    } else {
        snprintf(out, 160, "%s", e->desc);
    }
    for (char *p = out; *p; p++) /* one line, whatever HDF5 put in it */
        if ((unsigned char)*p < 0x20) *p = ' ';
    return 0;
}
static const char *h5_detail(char buf[160]) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, buf);
    return buf[0] ? buf : "unknown HDF5 error";
}

/* libhdf5 1.10 closes the files still open at exit (H5_term_library). A
 * file whose H5Fclose failed (disk full, file size limit) stays half
 * closed, and that exit-time close then dereferences NULL: a write error
 * became a segfault at exit. Every file here is closed explicitly, so the
 * atexit handler is switched off; that is only possible before the library
 * initialises, hence this call at the top of both open functions (a
 * negative result, the library already being up, is harmless). */
static void h5_init(void) {
    static int done = 0;
    if (!done) {
        done = 1;
        H5dont_atexit();
    }
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static hid_t mem_type(rq_h5_type t) {
    switch (t) {
    case RQ_H5_F32: return H5T_NATIVE_FLOAT;
    case RQ_H5_F64: return H5T_NATIVE_DOUBLE;
    case RQ_H5_I32: return H5T_NATIVE_INT32;
    case RQ_H5_I64: return H5T_NATIVE_INT64;
    case RQ_H5_U8: return H5T_NATIVE_UINT8;
    }
    return -1;
}
/* Files are always little-endian, whatever the host. */
static hid_t file_type(rq_h5_type t) {
    switch (t) {
    case RQ_H5_F32: return H5T_IEEE_F32LE;
    case RQ_H5_F64: return H5T_IEEE_F64LE;
    case RQ_H5_I32: return H5T_STD_I32LE;
    case RQ_H5_I64: return H5T_STD_I64LE;
    case RQ_H5_U8: return H5T_STD_U8LE;
    }
    return -1;
}
static const char *type_str(rq_h5_type t) {
    static const char *names[] = {"float32", "float64", "int32", "int64", "uint8"};
    return (unsigned)t < 5 ? names[t] : "?";
}
static int type_valid(rq_h5_type t) { return (unsigned)t < 5; }
static int type_is_float(rq_h5_type t) { return t == RQ_H5_F32 || t == RQ_H5_F64; }

/* "int64", "uint8", "float16", "string", ... for a file datatype. */
static void h5type_name(hid_t t, char *buf, size_t cap) {
    H5T_class_t c = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    if (c == H5T_INTEGER)
        snprintf(buf, cap, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
    else if (c == H5T_FLOAT)
        snprintf(buf, cap, "float%zu", bits);
    else if (c == H5T_STRING)
        snprintf(buf, cap, "string");
    else if (c == H5T_ENUM)
        snprintf(buf, cap, "enum");
    else if (c == H5T_COMPOUND)
        snprintf(buf, cap, "compound");
    else
        snprintf(buf, cap, "class %d", (int)c);
}

static void shape_fmt(int ndim, const long *shape, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ",%ld" : "%ld", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static int path_ok(const char *p) { return p && p[0] != '\0'; }
static int is_root(const char *obj) { return !obj || !obj[0] || strcmp(obj, "/") == 0; }

/* H5Lexists fails (rather than returning 0) when a parent is missing, so
 * walk the path one component at a time. Returns 1/0. */
static int link_exists(hid_t file, const char *path) {
    if (is_root(path)) return 1;
    char buf[1024];
    size_t n = strlen(path);
    if (n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char save = buf[i];
            buf[i] = '\0';
            if (i > 1 || buf[0] != '/') {
                if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
            }
            buf[i] = save;
        }
    }
    return 1;
}

/* 1 dataset, 2 group, 0 missing or other. */
static int object_kind(hid_t file, const char *path) {
    if (!link_exists(file, path)) return 0;
    hid_t o = H5Oopen(file, is_root(path) ? "/" : path, H5P_DEFAULT);
    if (o < 0) return 0;
    H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    return t == H5I_DATASET ? 1 : t == H5I_GROUP ? 2 : 0;
}

/* Link-creation property list that creates missing parent groups. */
static hid_t lcpl_parents(void) {
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    if (l >= 0) H5Pset_create_intermediate_group(l, 1);
    return l;
}

/* ------------------------------------------------------------------ writer */

struct rq_h5_writer {
    hid_t file;
    char *final_path;
    char *tmp_path;
    int failed;      /* a write failed: commit must refuse */
    int compression; /* deflate level for new datasets */
};

char *rq_h5_temp_path(const char *final_path, char *buf, size_t cap) {
    if (!final_path || !buf) return NULL;
    int n = snprintf(buf, cap, "%s.tmp.%ld", final_path, (long)getpid());
    return (n < 0 || (size_t)n >= cap) ? NULL : buf;
}

rq_h5_writer *rq_h5w_open(const char *final_path, rq_err *err) {
    h5_init();
    if (!path_ok(final_path)) {
        rq_err_set(err, RQ_EINVAL, "rq_h5w_open: empty output path");
        return NULL;
    }
    rq_h5_writer *w = calloc(1, sizeof *w);
    char tmp[4096];
    if (!w) {
        rq_err_set(err, RQ_ENOMEM, "%s: out of memory", final_path);
        return NULL;
    }
    if (!rq_h5_temp_path(final_path, tmp, sizeof tmp)) {
        free(w);
        rq_err_set(err, RQ_EINVAL, "%s: path too long", final_path);
        return NULL;
    }
    w->final_path = dupstr(final_path);
    w->tmp_path = dupstr(tmp);
    if (!w->final_path || !w->tmp_path) {
        free(w->final_path);
        free(w->tmp_path);
        free(w);
        rq_err_set(err, RQ_ENOMEM, "%s: out of memory", final_path);
        return NULL;
    }
    /* Probe with open(2) first: HDF5's message for a missing directory or a
     * permission problem is far less clear than strerror. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rq_err_set(err, RQ_EIO, "%s: cannot create %s: %s", final_path, tmp, strerror(errno));
        rq_h5w_abort(w);
        return NULL;
    }
    close(fd);
    quiet_t q;
    quiet_on(&q);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG); /* closing the file closes everything */
    w->file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    char d[160];
    h5_detail(d); /* before H5Pclose, which clears the error stack */
    H5Pclose(fapl);
    if (w->file < 0) {
        rq_err_set(err, RQ_EIO, "%s: cannot create HDF5 file (%s)", tmp, d);
        quiet_off(&q);
        rq_h5w_abort(w);
        return NULL;
    }
    quiet_off(&q);
    return w;
}

static void writer_free(rq_h5_writer *w) {
    free(w->final_path);
    free(w->tmp_path);
    free(w);
}

void rq_h5w_abort(rq_h5_writer *w) {
    if (!w) return;
    quiet_t q;
    quiet_on(&q);
    if (w->file > 0) H5Fclose(w->file);
    quiet_off(&q);
    unlink(w->tmp_path);
    writer_free(w);
}

rq_status rq_h5w_close_commit(rq_h5_writer *w, rq_err *err) {
    if (!w) return rq_err_set(err, RQ_EINVAL, "rq_h5w_close_commit: NULL writer");
    if (w->failed) {
        rq_status s = rq_err_set(err, RQ_EIO, "%s: not written because an earlier write failed",
                                 w->final_path);
        rq_h5w_abort(w);
        return s;
    }
    quiet_t q;
    quiet_on(&q);
    char d[160];
    /* the detail is taken right after the failing call: any later HDF5
     * call clears the error stack */
    herr_t hs = H5Fflush(w->file, H5F_SCOPE_GLOBAL);
    if (hs < 0) {
        h5_detail(d);
        H5Fclose(w->file);
    } else if ((hs = H5Fclose(w->file)) < 0) {
        h5_detail(d);
    }
    w->file = -1;
    if (hs < 0) {
        rq_status s = rq_err_set(err, RQ_EIO, "%s: cannot finish writing (%s)", w->final_path, d);
        quiet_off(&q);
        rq_h5w_abort(w);
        return s;
    }
    quiet_off(&q);
    /* fsync before rename: after a crash we have either the old file or the
     * complete new one, never a renamed-but-empty one. */
    int fd = open(w->tmp_path, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        rq_status s = rq_err_set(err, RQ_EIO, "%s: fsync failed: %s", w->tmp_path, strerror(errno));
        if (fd >= 0) close(fd);
        rq_h5w_abort(w);
        return s;
    }
    close(fd);
    if (rename(w->tmp_path, w->final_path) != 0) {
        rq_status s = rq_err_set(err, RQ_EIO, "%s: cannot rename %s onto it: %s", w->final_path,
                                 w->tmp_path, strerror(errno));
        rq_h5w_abort(w);
        return s;
    }
    /* Persist the rename itself (best effort: some filesystems refuse). */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", w->final_path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    writer_free(w);
    return RQ_OK;
}

rq_status rq_h5w_set_compression(rq_h5_writer *w, int level, rq_err *err) {
    if (!w || level < 0 || level > 9)
        return rq_err_set(err, RQ_EINVAL, "rq_h5w_set_compression: bad writer or level %d", level);
    w->compression = level;
    return RQ_OK;
}

rq_status rq_h5w_group(rq_h5_writer *w, const char *path, rq_err *err) {
    if (!w || !path_ok(path)) return rq_err_set(err, RQ_EINVAL, "rq_h5w_group: bad arguments");
    if (is_root(path)) return RQ_OK;
    quiet_t q;
    quiet_on(&q);
    rq_status s = RQ_OK;
    int kind = object_kind(w->file, path);
    if (kind == 1) {
        s = rq_err_set(err, RQ_EINVAL, "%s: '%s' is a dataset, not a group", w->final_path, path);
    } else if (kind == 0) {
        hid_t l = lcpl_parents();
        hid_t g = H5Gcreate2(w->file, path, l, H5P_DEFAULT, H5P_DEFAULT);
        char d[160];
        if (g < 0) h5_detail(d); /* before H5Pclose clears the stack */
        H5Pclose(l);
        if (g < 0) {
            s = rq_err_set(err, RQ_EIO, "%s: cannot create group '%s' (%s)", w->final_path, path, d);
        } else {
            H5Gclose(g);
        }
    }
    quiet_off(&q);
    if (s != RQ_OK) w->failed = 1;
    return s;
}

rq_status rq_h5w_write(rq_h5_writer *w, const char *path, rq_h5_type type, const void *data,
                       int ndim, const long *shape, rq_err *err) {
    if (!w || !path_ok(path) || !type_valid(type) || ndim < 0 || ndim > RQ_H5_MAX_DIMS ||
        (ndim > 0 && !shape))
        return rq_err_set(err, RQ_EINVAL, "rq_h5w_write: bad arguments for '%s'", path ? path : "?");
    hsize_t dims[RQ_H5_MAX_DIMS];
    long numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            w->failed = 1;
            return rq_err_set(err, RQ_EINVAL, "%s: dataset '%s': negative dimension %ld",
                              w->final_path, path, shape[i]);
        }
        dims[i] = (hsize_t)shape[i];
        numel *= shape[i];
    }
    if (numel > 0 && !data) {
        w->failed = 1;
        return rq_err_set(err, RQ_EINVAL, "%s: dataset '%s': NULL data", w->final_path, path);
    }
    quiet_t q;
    quiet_on(&q);
    rq_status s = RQ_OK;
    char d[160];
    hid_t space = -1, dcpl = -1, lcpl = -1, ds = -1;
    if (link_exists(w->file, path)) {
        s = rq_err_set(err, RQ_EINVAL, "%s: '%s' already exists", w->final_path, path);
        goto done;
    }
    space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    lcpl = lcpl_parents();
    size_t esize = H5Tget_size(mem_type(type));
    if (w->compression > 0 && ndim >= 1 && numel > 0) {
        /* Chunks are slabs of whole rows, about 1 MiB each, so reading a
         * batch of rows touches few chunks. */
        long row = numel / shape[0];
        double row_bytes = (double)row * (double)esize;
        if (row_bytes < (double)(1u << 30)) {
            hsize_t cdims[RQ_H5_MAX_DIMS];
            long rows = (long)((1 << 20) / (row_bytes > 0 ? row_bytes : 1));
            if (rows < 1) rows = 1;
            if (rows > shape[0]) rows = shape[0];
            cdims[0] = (hsize_t)rows;
            for (int i = 1; i < ndim; i++) cdims[i] = dims[i];
            H5Pset_chunk(dcpl, ndim, cdims);
            H5Pset_shuffle(dcpl);
            H5Pset_deflate(dcpl, (unsigned)w->compression);
        }
    }
    ds = H5Dcreate2(w->file, path, file_type(type), space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        s = rq_err_set(err, RQ_EIO, "%s: cannot create dataset '%s' (%s)", w->final_path, path,
                       h5_detail(d));
        goto done;
    }
    if (numel > 0 && H5Dwrite(ds, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        s = rq_err_set(err, RQ_EIO, "%s: cannot write dataset '%s' (%s)", w->final_path, path,
                       h5_detail(d));
done:
    if (ds >= 0) H5Dclose(ds);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    quiet_off(&q);
    if (s != RQ_OK) w->failed = 1;
    return s;
}

rq_status rq_h5w_write_f32(rq_h5_writer *w, const char *path, const float *data, int ndim,
                           const long *shape, rq_err *err) {
    return rq_h5w_write(w, path, RQ_H5_F32, data, ndim, shape, err);
}
rq_status rq_h5w_write_i32(rq_h5_writer *w, const char *path, const int32_t *data, int ndim,
                           const long *shape, rq_err *err) {
    return rq_h5w_write(w, path, RQ_H5_I32, data, ndim, shape, err);
}
rq_status rq_h5w_write_i64(rq_h5_writer *w, const char *path, const int64_t *data, int ndim,
                           const long *shape, rq_err *err) {
    return rq_h5w_write(w, path, RQ_H5_I64, data, ndim, shape, err);
}
rq_status rq_h5w_write_u8(rq_h5_writer *w, const char *path, const uint8_t *data, int ndim,
                          const long *shape, rq_err *err) {
    return rq_h5w_write(w, path, RQ_H5_U8, data, ndim, shape, err);
}

/* Write one attribute: replaces an existing one; creates obj as a group if
 * missing. Called with errors silenced. */
static rq_status write_attr(rq_h5_writer *w, const char *obj, const char *name, hid_t ftype,
                            hid_t mtype, hid_t space, const void *buf, rq_err *err) {
    char d[160];
    const char *o = is_root(obj) ? "/" : obj;
    if (!is_root(obj) && !link_exists(w->file, obj)) {
        hid_t l = lcpl_parents();
        hid_t g = H5Gcreate2(w->file, obj, l, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) h5_detail(d); /* before H5Pclose clears the stack */
        H5Pclose(l);
        if (g < 0)
            return rq_err_set(err, RQ_EIO, "%s: cannot create group '%s' for attribute '%s' (%s)",
                              w->final_path, obj, name, d);
        H5Gclose(g);
    }
    hid_t ob = H5Oopen(w->file, o, H5P_DEFAULT);
    if (ob < 0)
        return rq_err_set(err, RQ_EIO, "%s: cannot open '%s' for attribute '%s'", w->final_path, o,
                          name);
    rq_status s = RQ_OK;
    if (H5Aexists(ob, name) > 0) H5Adelete(ob, name);
    hid_t a = H5Acreate2(ob, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mtype, buf) < 0)
        s = rq_err_set(err, RQ_EIO, "%s: cannot write attribute '%s' on '%s' (%s)", w->final_path,
                       name, o, h5_detail(d));
    if (a >= 0) H5Aclose(a);
    H5Oclose(ob);
    return s;
}

rq_status rq_h5w_attr_str(rq_h5_writer *w, const char *obj, const char *name, const char *value,
                          rq_err *err) {
    if (!w || !path_ok(name) || !value)
        return rq_err_set(err, RQ_EINVAL, "rq_h5w_attr_str: bad arguments");
    quiet_t q;
    quiet_on(&q);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    rq_status s = write_attr(w, obj, name, t, t, sp, &value, err);
    H5Sclose(sp);
    H5Tclose(t);
    quiet_off(&q);
    if (s != RQ_OK) w->failed = 1;
    return s;
}

rq_status rq_h5w_attr_i64(rq_h5_writer *w, const char *obj, const char *name, int64_t value,
                          rq_err *err) {
    if (!w || !path_ok(name)) return rq_err_set(err, RQ_EINVAL, "rq_h5w_attr_i64: bad arguments");
    quiet_t q;
    quiet_on(&q);
    hid_t sp = H5Screate(H5S_SCALAR);
    rq_status s = write_attr(w, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, sp, &value, err);
    H5Sclose(sp);
    quiet_off(&q);
    if (s != RQ_OK) w->failed = 1;
    return s;
}

rq_status rq_h5w_attr_f64(rq_h5_writer *w, const char *obj, const char *name, double value,
                          rq_err *err) {
    if (!w || !path_ok(name)) return rq_err_set(err, RQ_EINVAL, "rq_h5w_attr_f64: bad arguments");
    quiet_t q;
    quiet_on(&q);
    hid_t sp = H5Screate(H5S_SCALAR);
    rq_status s = write_attr(w, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sp, &value, err);
    H5Sclose(sp);
    quiet_off(&q);
    if (s != RQ_OK) w->failed = 1;
    return s;
}

rq_status rq_h5w_attr_ints(rq_h5_writer *w, const char *obj, const char *name, const int *values,
                           int n, rq_err *err) {
    if (!w || !path_ok(name) || n < 0 || (n > 0 && !values))
        return rq_err_set(err, RQ_EINVAL, "rq_h5w_attr_ints: bad arguments");
    quiet_t q;
    quiet_on(&q);
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    int dummy = 0;
    rq_status s = write_attr(w, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, sp, n ? values : &dummy,
                             err);
    H5Sclose(sp);
    quiet_off(&q);
    if (s != RQ_OK) w->failed = 1;
    return s;
}

/* ------------------------------------------------------------------ reader */

struct rq_h5_reader {
    hid_t file;
    char *path;
};

const char *rq_h5r_filename(const rq_h5_reader *r) { return r ? r->path : "(null)"; }

rq_h5_reader *rq_h5r_open(const char *path, rq_err *err) {
    h5_init();
    if (!path_ok(path)) {
        rq_err_set(err, RQ_EINVAL, "rq_h5r_open: empty path");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        rq_err_set(err, RQ_EIO, "%s: is a directory, not an HDF5 file", path);
        return NULL;
    }
    quiet_t q;
    quiet_on(&q);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        quiet_off(&q);
        if (is == 0)
            rq_err_set(err, RQ_EFORMAT, "%s: not an HDF5 file", path);
        else
            rq_err_set(err, RQ_EIO, "%s: cannot read file", path);
        return NULL;
    }
    rq_h5_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = dupstr(path))) {
        free(r);
        quiet_off(&q);
        rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    r->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    char d[160];
    h5_detail(d); /* before H5Pclose, which clears the error stack */
    H5Pclose(fapl);
    if (r->file < 0) {
        rq_err_set(err, RQ_EFORMAT, "%s: cannot open HDF5 file (%s)", path, d);
        quiet_off(&q);
        free(r->path);
        free(r);
        return NULL;
    }
    quiet_off(&q);
    return r;
}

void rq_h5r_close(rq_h5_reader *r) {
    if (!r) return;
    quiet_t q;
    quiet_on(&q);
    H5Fclose(r->file);
    quiet_off(&q);
    free(r->path);
    free(r);
}

int rq_h5r_exists(rq_h5_reader *r, const char *path) {
    if (!r || !path) return 0;
    quiet_t q;
    quiet_on(&q);
    int k = object_kind(r->file, path);
    quiet_off(&q);
    return k;
}

/* Open a dataset or explain why not (missing / a group). Silenced caller. */
static rq_status open_dataset(rq_h5_reader *r, const char *path, hid_t *ds, rq_err *err) {
    *ds = -1;
    int k = object_kind(r->file, path);
    if (k == 2) return rq_err_set(err, RQ_EFORMAT, "%s: '%s' is a group, not a dataset", r->path, path);
    if (k != 1) return rq_err_set(err, RQ_EFORMAT, "%s: missing dataset '%s'", r->path, path);
    *ds = H5Dopen2(r->file, path, H5P_DEFAULT);
    if (*ds < 0) return rq_err_set(err, RQ_EFORMAT, "%s: cannot open dataset '%s'", r->path, path);
    return RQ_OK;
}

static rq_status ds_shape(rq_h5_reader *r, hid_t ds, const char *path, int *ndim, long *shape,
                          rq_err *err) {
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || nd > RQ_H5_MAX_DIMS) {
        H5Sclose(sp);
        return rq_err_set(err, RQ_EFORMAT, "%s: dataset '%s' has %d dims (max %d)", r->path, path,
                          nd, RQ_H5_MAX_DIMS);
    }
    hsize_t dims[RQ_H5_MAX_DIMS];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    /* A file may declare any shape (unwritten data reads as the fill value).
     * Keep element counts below 2^56 so that every count * element size
     * computed by callers fits in 64 bits. */
    double total = 1;
    for (int i = 0; i < nd; i++) total *= (double)dims[i];
    if (total >= 72057594037927936.0) /* 2^56 */
        return rq_err_set(err, RQ_EFORMAT, "%s: dataset '%s' is too large (%.3g elements)", r->path, path, total);
    *ndim = nd;
    for (int i = 0; i < nd; i++) shape[i] = (long)dims[i];
    return RQ_OK;
}

rq_status rq_h5r_shape(rq_h5_reader *r, const char *path, int *ndim, long shape[RQ_H5_MAX_DIMS],
                       rq_err *err) {
    if (!r || !path_ok(path) || !ndim || !shape)
        return rq_err_set(err, RQ_EINVAL, "rq_h5r_shape: bad arguments");
    quiet_t q;
    quiet_on(&q);
    hid_t ds;
    rq_status s = open_dataset(r, path, &ds, err);
    if (s == RQ_OK) {
        s = ds_shape(r, ds, path, ndim, shape, err);
        H5Dclose(ds);
    }
    quiet_off(&q);
    return s;
}

rq_status rq_h5r_check_shape(rq_h5_reader *r, const char *path, int ndim, const long *shape,
                             rq_err *err) {
    if (!r || !path_ok(path) || ndim < 0 || ndim > RQ_H5_MAX_DIMS || (ndim && !shape))
        return rq_err_set(err, RQ_EINVAL, "rq_h5r_check_shape: bad arguments");
    int nd = 0;
    long sh[RQ_H5_MAX_DIMS] = {0};
    rq_status s = rq_h5r_shape(r, path, &nd, sh, err);
    if (s != RQ_OK) return s;
    int same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = sh[i] == shape[i];
    if (same) return RQ_OK;
    char a[128], b[128];
    shape_fmt(nd, sh, a, sizeof a);
    shape_fmt(ndim, shape, b, sizeof b);
    return rq_err_set(err, RQ_ESHAPE, "%s: dataset '%s' has shape %s, expected %s", r->path, path, a,
                      b);
}

/* Make integer conversions that overflow fail instead of silently clamp. */
static H5T_conv_ret_t range_cb(H5T_conv_except_t e, hid_t s, hid_t d, void *sb, void *db, void *ctx) {
    (void)s, (void)d, (void)sb, (void)db;
    if (e == H5T_CONV_EXCEPT_RANGE_HI || e == H5T_CONV_EXCEPT_RANGE_LOW) {
        *(int *)ctx = 1;
        return H5T_CONV_ABORT;
    }
    return H5T_CONV_UNHANDLED;
}

/* Shared by rq_h5r_read / rq_h5r_read_rows: row0 < 0 means whole dataset. */
static rq_status read_impl(rq_h5_reader *r, const char *path, rq_h5_type type, void *dst,
                           long expect_n, long row0, long nrows, rq_err *err) {
    if (!r || !path_ok(path) || !type_valid(type) || !dst)
        return rq_err_set(err, RQ_EINVAL, "rq_h5r_read: bad arguments for '%s'", path ? path : "?");
    quiet_t q;
    quiet_on(&q);
    hid_t ds, ft = -1, fsp = -1, msp = -1, dxpl = -1;
    rq_status s = open_dataset(r, path, &ds, err);
    if (s != RQ_OK) goto done;
    ft = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ft);
    char tn[32];
    h5type_name(ft, tn, sizeof tn);
    if (type_is_float(type) ? cls != H5T_FLOAT : cls != H5T_INTEGER) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: dataset '%s' has type %s, cannot read it as %s",
                       r->path, path, tn, type_str(type));
        goto done;
    }
    int nd = 0;
    long sh[RQ_H5_MAX_DIMS] = {0};
    if ((s = ds_shape(r, ds, path, &nd, sh, err)) != RQ_OK) goto done;
    long numel = 1;
    for (int i = 0; i < nd; i++) numel *= sh[i];
    long n_read = numel;
    if (row0 >= 0) {
        if (nd < 1 || nrows < 0 || row0 + nrows > sh[0]) {
            s = rq_err_set(err, RQ_ESHAPE, "%s: dataset '%s': rows [%ld,%ld) out of range (%ld rows)",
                           r->path, path, row0, row0 + nrows, nd ? sh[0] : 0L);
            goto done;
        }
        long row = sh[0] ? numel / sh[0] : 0;
        n_read = nrows * row;
        hsize_t start[RQ_H5_MAX_DIMS] = {0}, count[RQ_H5_MAX_DIMS];
        start[0] = (hsize_t)row0;
        count[0] = (hsize_t)nrows;
        for (int i = 1; i < nd; i++) count[i] = (hsize_t)sh[i];
        fsp = H5Dget_space(ds);
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
        hsize_t mn = (hsize_t)n_read;
        msp = H5Screate_simple(1, &mn, NULL);
    } else if (expect_n >= 0 && expect_n != numel) {
        char a[128];
        shape_fmt(nd, sh, a, sizeof a);
        s = rq_err_set(err, RQ_ESHAPE, "%s: dataset '%s' has shape %s (%ld elements), expected %ld",
                       r->path, path, a, numel, expect_n);
        goto done;
    }
    if (n_read == 0) goto done;
    int overflow = 0;
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_type_conv_cb(dxpl, range_cb, &overflow);
    if (H5Dread(ds, mem_type(type), msp >= 0 ? msp : H5S_ALL, fsp >= 0 ? fsp : H5S_ALL, dxpl, dst) < 0) {
        char d[160];
        if (overflow)
            s = rq_err_set(err, RQ_EFORMAT, "%s: dataset '%s' (%s) has values out of range for %s",
                           r->path, path, tn, type_str(type));
        else
            s = rq_err_set(err, RQ_EIO, "%s: cannot read dataset '%s' (%s)", r->path, path,
                           h5_detail(d));
    }
done:
    if (dxpl >= 0) H5Pclose(dxpl);
    if (msp >= 0) H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    if (ft >= 0) H5Tclose(ft);
    if (ds >= 0) H5Dclose(ds);
    quiet_off(&q);
    return s;
}

rq_status rq_h5r_read(rq_h5_reader *r, const char *path, rq_h5_type type, void *dst, long expect_n,
                      rq_err *err) {
    return read_impl(r, path, type, dst, expect_n, -1, 0, err);
}
rq_status rq_h5r_read_rows(rq_h5_reader *r, const char *path, rq_h5_type type, long row0,
                           long nrows, void *dst, rq_err *err) {
    if (row0 < 0 || nrows < 0)
        return rq_err_set(err, RQ_EINVAL, "rq_h5r_read_rows: negative row range");
    return read_impl(r, path, type, dst, -1, row0, nrows, err);
}
rq_status rq_h5r_read_f32(rq_h5_reader *r, const char *path, float *dst, long expect_n, rq_err *err) {
    return rq_h5r_read(r, path, RQ_H5_F32, dst, expect_n, err);
}
rq_status rq_h5r_read_i32(rq_h5_reader *r, const char *path, int32_t *dst, long expect_n,
                          rq_err *err) {
    return rq_h5r_read(r, path, RQ_H5_I32, dst, expect_n, err);
}
rq_status rq_h5r_read_i64(rq_h5_reader *r, const char *path, int64_t *dst, long expect_n,
                          rq_err *err) {
    return rq_h5r_read(r, path, RQ_H5_I64, dst, expect_n, err);
}
rq_status rq_h5r_read_u8(rq_h5_reader *r, const char *path, uint8_t *dst, long expect_n,
                         rq_err *err) {
    return rq_h5r_read(r, path, RQ_H5_U8, dst, expect_n, err);
}

/* ---- attributes ---- */

/* "missing attribute 'x' in f.h5" / "... on '/g' in f.h5". */
static rq_status attr_missing(rq_h5_reader *r, const char *obj, const char *name, rq_err *err) {
    if (is_root(obj)) return rq_err_set(err, RQ_EFORMAT, "missing attribute '%s' in %s", name, r->path);
    return rq_err_set(err, RQ_EFORMAT, "missing attribute '%s' on '%s' in %s", name, obj, r->path);
}

/* Open attribute name on obj (silenced caller); -1 with the error set. */
static hid_t open_attr(rq_h5_reader *r, const char *obj, const char *name, rq_err *err) {
    const char *o = is_root(obj) ? "/" : obj;
    if (!object_kind(r->file, o)) {
        rq_err_set(err, RQ_EFORMAT, "%s: missing object '%s' (looking for attribute '%s')", r->path,
                   o, name);
        return -1;
    }
    if (H5Aexists_by_name(r->file, o, name, H5P_DEFAULT) <= 0) {
        attr_missing(r, obj, name, err);
        return -1;
    }
    hid_t a = H5Aopen_by_name(r->file, o, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) rq_err_set(err, RQ_EFORMAT, "%s: cannot open attribute '%s' on '%s'", r->path, name, o);
    return a;
}

static long attr_npoints(hid_t a) {
    hid_t sp = H5Aget_space(a);
    long n = (long)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    return n;
}

int rq_h5r_has_attr(rq_h5_reader *r, const char *obj, const char *name) {
    if (!r || !path_ok(name)) return 0;
    quiet_t q;
    quiet_on(&q);
    const char *o = is_root(obj) ? "/" : obj;
    int has = object_kind(r->file, o) && H5Aexists_by_name(r->file, o, name, H5P_DEFAULT) > 0;
    quiet_off(&q);
    return has;
}

rq_status rq_h5r_get_str(rq_h5_reader *r, const char *obj, const char *name, char *buf, size_t cap,
                         rq_err *err) {
    if (!r || !path_ok(name) || !buf || cap == 0)
        return rq_err_set(err, RQ_EINVAL, "rq_h5r_get_str: bad arguments");
    quiet_t q;
    quiet_on(&q);
    rq_status s = RQ_OK;
    hid_t a = open_attr(r, obj, name, err), ft = -1, mt = -1;
    if (a < 0) {
        s = RQ_EFORMAT;
        goto done;
    }
    ft = H5Aget_type(a);
    if (H5Tget_class(ft) != H5T_STRING || attr_npoints(a) != 1) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s' is not a string", r->path, name);
        goto done;
    }
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(ft));
    if (H5Tis_variable_str(ft) > 0) {
        H5Tset_size(mt, H5T_VARIABLE);
        char *v = NULL;
        if (H5Aread(a, mt, &v) < 0 || !v) {
            s = rq_err_set(err, RQ_EIO, "%s: cannot read attribute '%s'", r->path, name);
            goto done;
        }
        if (strlen(v) >= cap)
            s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s' is longer than %zu bytes", r->path,
                           name, cap - 1);
        else
            memcpy(buf, v, strlen(v) + 1);
        H5free_memory(v);
    } else {
        size_t sz = H5Tget_size(ft);
        char *tmp = malloc(sz + 1);
        if (!tmp) {
            s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", r->path);
            goto done;
        }
        H5Tset_size(mt, sz);
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        if (H5Aread(a, mt, tmp) < 0) {
            s = rq_err_set(err, RQ_EIO, "%s: cannot read attribute '%s'", r->path, name);
        } else {
            tmp[sz] = '\0';
            size_t len = strlen(tmp);
            while (len > 0 && tmp[len - 1] == ' ') tmp[--len] = '\0'; /* space-padded strings */
            if (len >= cap)
                s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s' is longer than %zu bytes",
                               r->path, name, cap - 1);
            else
                memcpy(buf, tmp, len + 1);
        }
        free(tmp);
    }
done:
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    quiet_off(&q);
    return s;
}

/* Scalar numeric attribute read into mtype; allow_float: float class ok. */
static rq_status get_scalar(rq_h5_reader *r, const char *obj, const char *name, hid_t mtype,
                            int allow_float, void *out, rq_err *err) {
    quiet_t q;
    quiet_on(&q);
    rq_status s = RQ_OK;
    hid_t a = open_attr(r, obj, name, err), ft = -1;
    if (a < 0) {
        s = RQ_EFORMAT;
        goto done;
    }
    ft = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(ft);
    if (!(c == H5T_INTEGER || (allow_float && c == H5T_FLOAT))) {
        char tn[32];
        h5type_name(ft, tn, sizeof tn);
        s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s' has type %s, expected %s", r->path, name,
                       tn, allow_float ? "a number" : "an integer");
        goto done;
    }
    if (attr_npoints(a) != 1) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s' is not a single value", r->path, name);
        goto done;
    }
    if (H5Aread(a, mtype, out) < 0)
        s = rq_err_set(err, RQ_EIO, "%s: cannot read attribute '%s'", r->path, name);
done:
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    quiet_off(&q);
    return s;
}

rq_status rq_h5r_get_i64(rq_h5_reader *r, const char *obj, const char *name, int64_t *out,
                         rq_err *err) {
    if (!r || !path_ok(name) || !out) return rq_err_set(err, RQ_EINVAL, "rq_h5r_get_i64: bad arguments");
    return get_scalar(r, obj, name, H5T_NATIVE_INT64, 0, out, err);
}

rq_status rq_h5r_get_f64(rq_h5_reader *r, const char *obj, const char *name, double *out,
                         rq_err *err) {
    if (!r || !path_ok(name) || !out) return rq_err_set(err, RQ_EINVAL, "rq_h5r_get_f64: bad arguments");
    return get_scalar(r, obj, name, H5T_NATIVE_DOUBLE, 1, out, err);
}

rq_status rq_h5r_get_ints(rq_h5_reader *r, const char *obj, const char *name, int *out, int cap,
                          int *n, rq_err *err) {
    if (!r || !path_ok(name) || (cap > 0 && !out) || cap < 0 || !n)
        return rq_err_set(err, RQ_EINVAL, "rq_h5r_get_ints: bad arguments");
    quiet_t q;
    quiet_on(&q);
    rq_status s = RQ_OK;
    int64_t *tmp = NULL;
    hid_t a = open_attr(r, obj, name, err), ft = -1;
    if (a < 0) {
        s = RQ_EFORMAT;
        goto done;
    }
    ft = H5Aget_type(a);
    if (H5Tget_class(ft) != H5T_INTEGER) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s' is not an integer array", r->path, name);
        goto done;
    }
    long np = attr_npoints(a);
    *n = (int)np;
    if (np > cap) {
        s = rq_err_set(err, RQ_ESHAPE, "%s: attribute '%s' has %ld values, room for %d", r->path,
                       name, np, cap);
        goto done;
    }
    /* Read as int64 and range-check, so a huge value is an error, not a clamp. */
    tmp = malloc(sizeof *tmp * (size_t)(np ? np : 1));
    if (!tmp) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", r->path);
        goto done;
    }
    if (np > 0 && H5Aread(a, H5T_NATIVE_INT64, tmp) < 0) {
        s = rq_err_set(err, RQ_EIO, "%s: cannot read attribute '%s'", r->path, name);
        goto done;
    }
    for (long i = 0; i < np; i++) {
        if (tmp[i] < -2147483647L - 1 || tmp[i] > 2147483647L) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: attribute '%s'[%ld] does not fit in int", r->path,
                           name, i);
            goto done;
        }
        out[i] = (int)tmp[i];
    }
done:
    free(tmp);
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    quiet_off(&q);
    return s;
}

/* ---- listing ---- */

typedef struct {
    rq_h5_list_fn fn;
    void *ctx;
    int recursive;
    int stopped;
    char prefix[1024];
} list_ctx;

static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    (void)info;
    list_ctx *c = op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0; /* dangling soft link etc.: not ours, skip */
    H5I_type_t t = H5Iget_type(o);
    int is_group = t == H5I_GROUP;
    char full[1024];
    snprintf(full, sizeof full, "%s%s", c->prefix, name);
    herr_t ret = 0;
    if (t == H5I_GROUP || t == H5I_DATASET) {
        if (c->fn(c->ctx, full, is_group)) {
            c->stopped = 1;
            ret = 1;
        } else if (is_group && c->recursive) {
            size_t plen = strlen(c->prefix);
            char saved[1024];
            memcpy(saved, c->prefix, plen + 1);
            size_t fl = strlen(full);
            if (fl + 2 > sizeof c->prefix) fl = sizeof c->prefix - 2; /* absurdly deep: truncate */
            memcpy(c->prefix, full, fl);
            c->prefix[fl] = '/';
            c->prefix[fl + 1] = '\0';
            hsize_t idx = 0;
            herr_t h = H5Literate(o, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, c);
            memcpy(c->prefix, saved, plen + 1);
            ret = h < 0 ? -1 : h;
        }
    }
    H5Oclose(o);
    return ret;
}

rq_status rq_h5r_list(rq_h5_reader *r, const char *group, int recursive, rq_h5_list_fn fn,
                      void *ctx, rq_err *err) {
    if (!r || !fn) return rq_err_set(err, RQ_EINVAL, "rq_h5r_list: bad arguments");
    const char *gp = is_root(group) ? "/" : group;
    quiet_t q;
    quiet_on(&q);
    rq_status s = RQ_OK;
    if (object_kind(r->file, gp) != 2) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: missing group '%s'", r->path, gp);
    } else {
        hid_t g = H5Gopen2(r->file, gp, H5P_DEFAULT);
        list_ctx c = {.fn = fn, .ctx = ctx, .recursive = recursive};
        hsize_t idx = 0;
        if (g < 0 || H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &c) < 0)
            s = rq_err_set(err, RQ_EIO, "%s: cannot list group '%s'", r->path, gp);
        if (g >= 0) H5Gclose(g);
    }
    quiet_off(&q);
    return s;
}

typedef struct {
    char **names;
    int n, cap;
    int oom;
} names_ctx;

static int collect_cb(void *ctx, const char *name, int is_group) {
    names_ctx *c = ctx;
    if (is_group) return 0;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        char **nn = realloc(c->names, sizeof *nn * (size_t)cap);
        if (!nn) return c->oom = 1;
        c->names = nn;
        c->cap = cap;
    }
    if (!(c->names[c->n] = dupstr(name))) return c->oom = 1;
    c->n++;
    return 0;
}

rq_status rq_h5r_list_datasets(rq_h5_reader *r, const char *group, int recursive, char ***names,
                               int *count, rq_err *err) {
    if (!r || !names || !count) return rq_err_set(err, RQ_EINVAL, "rq_h5r_list_datasets: bad arguments");
    *names = NULL;
    *count = 0;
    names_ctx c = {0};
    rq_status s = rq_h5r_list(r, group, recursive, collect_cb, &c, err);
    if (s == RQ_OK && c.oom) s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory listing names", r->path);
    if (s != RQ_OK) {
        rq_h5_names_free(c.names, c.n);
        return s;
    }
    *names = c.names;
    *count = c.n;
    return RQ_OK;
}

void rq_h5_names_free(char **names, int count) {
    if (!names) return;
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}
