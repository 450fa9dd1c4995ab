/* npy.h: reader for NumPy .npy files (format versions 1, 2 and 3).
 *
 * Supported dtypes: '<f2', '<f4', '<f8', '<i4', '<i8', '|u1' (also '<u1',
 * '|i1'), C order only ('fortran_order': False). .npz archives are not
 * supported: save the arrays separately with numpy.save. */
#ifndef ROBUQ_NPY_H
#define ROBUQ_NPY_H

#include <stdint.h>

#include "robuq/common.h"

#define RQ_NPY_MAX_DIMS 8

typedef struct {
    char descr[8];   /* e.g. "<f4" */
    int ndim;
    long shape[RQ_NPY_MAX_DIMS];
    long numel;
    int itemsize;
    long data_offset; /* bytes from the start of the file to the data */
} rq_npy_header;

/* Parse and validate the header only (also checks the file length). */
rq_status rq_npy_header_read(const char *path, rq_npy_header *hdr, rq_err *err);
/* Whole array as float32 (any supported dtype; i8 values beyond 2^24 lose
 * precision). *data malloc'd; hdr (may be NULL) receives the header. */
rq_status rq_npy_read_f32(const char *path, float **data, rq_npy_header *hdr, rq_err *err);
/* Whole array as int32: integer dtypes only, values must fit. */
rq_status rq_npy_read_i32(const char *path, int32_t **data, rq_npy_header *hdr, rq_err *err);

#endif
