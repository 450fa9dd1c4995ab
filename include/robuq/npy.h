/* npy.h: readers for NumPy .npy files (format versions 1, 2 and 3), .npz
 * archives (numpy.savez: stored, numpy.savez_compressed: deflated, ZIP64
 * included) and folders of per-sample .npy files (fast-DiT features).
 *
 * Supported dtypes: '<f2', '<f4', '<f8', '<i4', '<i8', '|u1' (also '<u1',
 * '|i1'), C order only ('fortran_order': False).
 *
 * .npz validation: end-of-central-directory record (with ZIP64 locator and
 * record when present), single disk, every central entry inside the central
 * directory, method stored or deflate, no encryption, local headers that
 * match the central names, member data inside the file, before the central
 * directory and not overlapping another member, stored sizes consistent,
 * inflated size exactly as declared (and at most 1032x the compressed size:
 * the deflate limit), CRC-32 checked. Errors name the archive and member. */
#ifndef ROBUQ_NPY_H
#define ROBUQ_NPY_H

#include <stddef.h>
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

/* The same on an .npy image in memory (len bytes; name is used in messages). */
rq_status rq_npy_parse(const uint8_t *buf, size_t len, const char *name, rq_npy_header *hdr, rq_err *err);
rq_status rq_npy_mem_read_f32(const uint8_t *buf, size_t len, const char *name, float **data, rq_npy_header *hdr,
                              rq_err *err);
rq_status rq_npy_mem_read_i32(const uint8_t *buf, size_t len, const char *name, int32_t **data,
                              rq_npy_header *hdr, rq_err *err);

/* ------------------------------------------------------------------ .npz */
typedef struct {
    char *name;            /* as stored, e.g. "latents.npy" */
    int method;            /* 0 stored, 8 deflate */
    uint32_t crc;
    uint64_t comp_size, size;
    uint64_t data_offset;  /* first byte of the member's (compressed) data in the file */
    uint64_t local_offset; /* its local header */
} rq_npz_member;

typedef struct {
    char *path;
    rq_npz_member *members; /* central directory order */
    int n;
    uint64_t file_size;
} rq_npz;

/* Read and validate the archive's directory. On error z is left empty. */
rq_status rq_npz_open(const char *path, rq_npz *z, rq_err *err);
void rq_npz_close(rq_npz *z);
/* Member by key: "latents" or "latents.npy"; NULL if absent. */
const rq_npz_member *rq_npz_find(const rq_npz *z, const char *key);
/* The member's bytes (inflated, CRC checked), malloc'd into *buf. */
rq_status rq_npz_read_member(const rq_npz *z, const rq_npz_member *m, uint8_t **buf, size_t *len, rq_err *err);
/* A member as an array (like rq_npy_read_*). Unknown keys list the members. */
rq_status rq_npz_read_f32(const rq_npz *z, const char *key, float **data, rq_npy_header *hdr, rq_err *err);
rq_status rq_npz_read_i32(const rq_npz *z, const char *key, int32_t **data, rq_npy_header *hdr, rq_err *err);

/* "FILE.npy", "ARCHIVE.npz:KEY", or "ARCHIVE.npz" holding a single member. */
rq_status rq_npy_load_f32(const char *spec, float **data, rq_npy_header *hdr, rq_err *err);
rq_status rq_npy_load_i32(const char *spec, int32_t **data, rq_npy_header *hdr, rq_err *err);

/* ------------------------------------------------------- per-sample folders */
/* A folder of .npy files named 0.npy, 1.npy, ..., N-1.npy (fast-DiT's
 * extract_features.py writes imagenet256_features/ with (1,4,32,32) latents,
 * already multiplied by 0.18215, and imagenet256_labels/ with (1,) labels),
 * concatenated in index order along a new or existing first axis: a file is
 * either one sample (sample_ndim dims) or k samples (sample_ndim + 1 dims,
 * first = k); every file has the same sample shape. Other file names are
 * ignored; a gap in the numbering is an error. hdr gets ndim = sample_ndim+1
 * with shape[0] = the total. */
rq_status rq_npy_dir_read_f32(const char *dir, int sample_ndim, float **data, rq_npy_header *hdr, rq_err *err);
rq_status rq_npy_dir_read_i32(const char *dir, int sample_ndim, int32_t **data, rq_npy_header *hdr, rq_err *err);

#endif
