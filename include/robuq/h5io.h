/* h5io.h: a small HDF5 wrapper used by checkpoints, exports, datasets and
 * reference dumps.
 *
 * - Writes are atomic: rq_h5w_open() writes "<final>.tmp.<pid>", and only
 *   rq_h5w_close_commit() (flush, close, fsync, rename) makes the final file
 *   appear. rq_h5w_abort() deletes the temp file. A writer whose write failed
 *   refuses to commit, so a half-written file can never take the final name.
 * - Dataset paths are absolute ("/params/blocks.0.attn.qkv.weight");
 *   intermediate groups are created on write. Dots in names are plain
 *   characters for HDF5.
 * - HDF5's own error-stack printing is silenced inside every call; failures
 *   become one-line rq_err messages of the form "<file>: <problem>" naming
 *   the dataset or attribute path.
 * - Shapes are `long` arrays of up to RQ_H5_MAX_DIMS dims; ndim 0 = scalar. */
#ifndef ROBUQ_H5IO_H
#define ROBUQ_H5IO_H

#include <stddef.h>
#include <stdint.h>

#include "robuq/common.h"

#define RQ_H5_MAX_DIMS 8

/* Element types of the in-memory buffers (the file type of a written
 * dataset is the same; reads convert within a class, see rq_h5r_read). */
typedef enum { RQ_H5_F32 = 0, RQ_H5_F64, RQ_H5_I32, RQ_H5_I64, RQ_H5_U8 } rq_h5_type;

typedef struct rq_h5_writer rq_h5_writer;
typedef struct rq_h5_reader rq_h5_reader;

/* Temp-file name used for final_path by this process ("<final>.tmp.<pid>"),
 * so a tool's signal handler can unlink it. Returns buf, or NULL if cap is
 * too small. */
char *rq_h5_temp_path(const char *final_path, char *buf, size_t cap);

/* ------------------------------------------------------------------ writer */
rq_h5_writer *rq_h5w_open(const char *final_path, rq_err *err);
/* Flush, close, fsync, rename onto final_path (replacing an older file) and
 * free w. On any failure (including an earlier failed write) the temp file
 * is deleted and the final path is left untouched. w is freed either way. */
rq_status rq_h5w_close_commit(rq_h5_writer *w, rq_err *err);
/* Close and delete the temp file, free w. NULL is a no-op. */
void rq_h5w_abort(rq_h5_writer *w);
/* Deflate level (0 = off, 1..9) for datasets written after this call; chunks
 * are slabs along the first dimension. Default 0. */
rq_status rq_h5w_set_compression(rq_h5_writer *w, int level, rq_err *err);
/* Create a group (and its parents); an existing group is fine. */
rq_status rq_h5w_group(rq_h5_writer *w, const char *path, rq_err *err);

/* Write a new dataset (error if it exists). data has prod(shape) elements. */
rq_status rq_h5w_write(rq_h5_writer *w, const char *path, rq_h5_type type, const void *data,
                       int ndim, const long *shape, rq_err *err);
rq_status rq_h5w_write_f32(rq_h5_writer *w, const char *path, const float *data, int ndim,
                           const long *shape, rq_err *err);
rq_status rq_h5w_write_i32(rq_h5_writer *w, const char *path, const int32_t *data, int ndim,
                           const long *shape, rq_err *err);
rq_status rq_h5w_write_i64(rq_h5_writer *w, const char *path, const int64_t *data, int ndim,
                           const long *shape, rq_err *err);
rq_status rq_h5w_write_u8(rq_h5_writer *w, const char *path, const uint8_t *data, int ndim,
                          const long *shape, rq_err *err);

/* Attributes on obj ("/" or NULL = root; a missing path is created as a
 * group). An existing attribute of the same name is replaced. Strings are
 * stored as variable-length UTF-8 (h5py reads them as str). */
rq_status rq_h5w_attr_str(rq_h5_writer *w, const char *obj, const char *name, const char *value,
                          rq_err *err);
rq_status rq_h5w_attr_i64(rq_h5_writer *w, const char *obj, const char *name, int64_t value,
                          rq_err *err);
rq_status rq_h5w_attr_f64(rq_h5_writer *w, const char *obj, const char *name, double value,
                          rq_err *err);
rq_status rq_h5w_attr_ints(rq_h5_writer *w, const char *obj, const char *name, const int *values,
                           int n, rq_err *err);

/* ------------------------------------------------------------------ reader */
/* Opens read-only; a missing file or a file that is not HDF5 is RQ_EIO /
 * RQ_EFORMAT with a message saying so. */
rq_h5_reader *rq_h5r_open(const char *path, rq_err *err);
void rq_h5r_close(rq_h5_reader *r);
const char *rq_h5r_filename(const rq_h5_reader *r);

/* 1 if path names a dataset, 2 if a group, 0 if nothing (never an error). */
int rq_h5r_exists(rq_h5_reader *r, const char *path);
rq_status rq_h5r_shape(rq_h5_reader *r, const char *path, int *ndim, long shape[RQ_H5_MAX_DIMS],
                       rq_err *err);
/* RQ_ESHAPE with "has shape [a,b], expected [c,d]" unless shapes agree. */
rq_status rq_h5r_check_shape(rq_h5_reader *r, const char *path, int ndim, const long *shape,
                             rq_err *err);

/* Read a whole dataset. expect_n >= 0: the element count must match
 * (RQ_ESHAPE otherwise); expect_n < 0: no check (caller sized dst from
 * rq_h5r_shape). Type rules: F32/F64 accept any float dataset (f16/f64 are
 * converted); integer types accept any integer dataset whose values fit
 * (out-of-range -> RQ_EFORMAT); float <-> integer is refused (RQ_EFORMAT). */
rq_status rq_h5r_read(rq_h5_reader *r, const char *path, rq_h5_type type, void *dst, long expect_n,
                      rq_err *err);
/* Rows [row0, row0+nrows) along the first dimension (a hyperslab). */
rq_status rq_h5r_read_rows(rq_h5_reader *r, const char *path, rq_h5_type type, long row0,
                           long nrows, void *dst, rq_err *err);
rq_status rq_h5r_read_f32(rq_h5_reader *r, const char *path, float *dst, long expect_n, rq_err *err);
rq_status rq_h5r_read_i32(rq_h5_reader *r, const char *path, int32_t *dst, long expect_n,
                          rq_err *err);
rq_status rq_h5r_read_i64(rq_h5_reader *r, const char *path, int64_t *dst, long expect_n,
                          rq_err *err);
rq_status rq_h5r_read_u8(rq_h5_reader *r, const char *path, uint8_t *dst, long expect_n,
                         rq_err *err);

/* Attributes (obj "/" or NULL = root). Missing -> RQ_EFORMAT "missing
 * attribute 'x' in file.h5" (with the object path when not the root). */
int rq_h5r_has_attr(rq_h5_reader *r, const char *obj, const char *name);
/* Fixed- or variable-length string into buf (NUL-terminated; RQ_EFORMAT if
 * it does not fit). */
rq_status rq_h5r_get_str(rq_h5_reader *r, const char *obj, const char *name, char *buf, size_t cap,
                         rq_err *err);
/* Integer attribute, scalar or 1 element. */
rq_status rq_h5r_get_i64(rq_h5_reader *r, const char *obj, const char *name, int64_t *out,
                         rq_err *err);
/* Float or integer attribute, scalar or 1 element. */
rq_status rq_h5r_get_f64(rq_h5_reader *r, const char *obj, const char *name, double *out,
                         rq_err *err);
/* Integer array attribute: *n = its length; RQ_ESHAPE if longer than cap. */
rq_status rq_h5r_get_ints(rq_h5_reader *r, const char *obj, const char *name, int *out, int cap,
                          int *n, rq_err *err);

/* Enumerate the members of group in name order. Returning nonzero from fn
 * stops the walk (rq_h5r_list then returns RQ_OK). With recursive=1, groups
 * are descended and names are relative paths ("sub/x"). */
typedef int (*rq_h5_list_fn)(void *ctx, const char *name, int is_group);
rq_status rq_h5r_list(rq_h5_reader *r, const char *group, int recursive, rq_h5_list_fn fn,
                      void *ctx, rq_err *err);
/* Convenience: the datasets only (recursive relative paths), as a malloc'd
 * array of malloc'd strings; free with rq_h5_names_free. */
rq_status rq_h5r_list_datasets(rq_h5_reader *r, const char *group, int recursive, char ***names,
                               int *count, rq_err *err);
void rq_h5_names_free(char **names, int count);

#endif
