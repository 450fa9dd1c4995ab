/* safetensors.h: reader and writer for the safetensors format
 * (https://github.com/huggingface/safetensors), with no dependency.
 *
 * File layout:
 *   [0, 8)          N: uint64 little-endian, size of the JSON header
 *   [8, 8+N)        UTF-8 JSON object, optionally padded with trailing spaces:
 *                     {"__metadata__": {"k": "v", ...},          (optional, ignored)
 *                      "name": {"dtype": "F32", "shape": [2, 3],
 *                               "data_offsets": [begin, end]}, ...}
 *   [8+N, EOF)      the data buffer; offsets are relative to its start.
 *
 * Validation (rq_st_parse_header / rq_st_open), as the reference library does:
 * - N <= RQ_ST_MAX_HEADER (100 MB) and 8 + N <= file size;
 * - strict JSON (RFC 8259 grammar: strings with all escapes incl. \uXXXX
 *   surrogate pairs, numbers, arrays, objects, literals), nesting depth
 *   <= RQ_ST_MAX_DEPTH, nothing but spaces after the top-level object;
 * - every tensor has a known dtype, 0..8 non-negative dims, two integer
 *   data_offsets with begin <= end and end - begin == numel * itemsize;
 * - duplicate tensor names are rejected; unknown keys inside a tensor entry
 *   are ignored (as the reference library does);
 * - the tensors tile the data buffer exactly: sorted by begin, they start at
 *   0, do not overlap, leave no holes, and end at the end of the file.
 * Errors name the file (or "<buffer>"), the byte offset in the file and the
 * tensor, e.g. "m.safetensors: byte 57: tensor 'w': data_offsets [0, 20]
 *   hold 20 bytes, F32 [2,3] needs 24".
 *
 * Reading converts F16 (subnormals, inf, nan), BF16, F64, I32, I64 to float32.
 * Writing converts float32 to F32, F16 or BF16 (round to nearest even;
 * overflow to inf, NaN stays NaN), tensors laid out in the given order, the
 * header padded to a multiple of 8 bytes, through a temp file + rename. */
#ifndef ROBUQ_SAFETENSORS_H
#define ROBUQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "robuq/common.h"

#define RQ_ST_MAX_HEADER (100u * 1024u * 1024u)
#define RQ_ST_MAX_DEPTH 64
#define RQ_ST_MAX_DIMS 8

/* F32/F16/BF16/F64/I64/I32 can be read as float32; every other safetensors
 * dtype (I8, U8, I16, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2) parses as
 * RQ_ST_OTHER (its name and item size are kept) and cannot be read. */
typedef enum { RQ_ST_F32, RQ_ST_F16, RQ_ST_BF16, RQ_ST_F64, RQ_ST_I64, RQ_ST_I32, RQ_ST_OTHER } rq_st_dtype;

typedef struct {
    char *name;
    rq_st_dtype dtype;
    int ndim;
    int64_t shape[RQ_ST_MAX_DIMS];
    uint64_t begin, end;   /* byte range in the data buffer */
    int itemsize;          /* bytes per element */
    char dtype_name[12];   /* as in the file: "F32", "BF16", "U8", ... */
} rq_st_tensor;

typedef struct {
    rq_st_tensor *tensors; /* in file (header) order */
    int n;
    char *path;            /* file name for messages; "<buffer>" after rq_st_parse_header */
    uint64_t data_start;   /* 8 + N */
    uint64_t file_size;
    FILE *f;               /* open file (rq_st_open), else NULL */
    const uint8_t *mem;    /* whole file in memory (rq_st_parse_header with len == file_size), else NULL */
} rq_safetensors;

/* Parse and validate the header. buf is the file prefix including the 8-byte
 * size (len bytes of it available); file_size is the full file length. When
 * len == file_size, st->mem points at buf so rq_st_read_f32 can read tensors
 * from it (buf must then outlive st). On error st is left empty (safe to
 * rq_st_close). */
rq_status rq_st_parse_header(const uint8_t *buf, size_t len, uint64_t file_size, rq_safetensors *st, rq_err *err);
/* Open a file and parse its header; the file stays open for reads. */
rq_status rq_st_open(const char *path, rq_safetensors *st, rq_err *err);
/* Tensor by exact name, or NULL. */
const rq_st_tensor *rq_st_find(const rq_safetensors *st, const char *name);
/* Number of elements of t (product of its shape; 1 for a scalar). */
int64_t rq_st_numel(const rq_st_tensor *t);
const char *rq_st_dtype_name(rq_st_dtype dt);
/* Read tensor t (numel floats into out) converting to float32. */
rq_status rq_st_read_f32(const rq_safetensors *st, const rq_st_tensor *t, float *out, rq_err *err);
/* Write n float32 tensors as dtype (F32, F16 or BF16) atomically. shapes[i]
 * has ndims[i] (0..8) entries; data[i] holds their product. Names must be
 * unique, non-empty and not "__metadata__". A metadata entry
 * {"format": "pt"} is written so PyTorch loaders accept the file. */
rq_status rq_st_write(const char *path, int n, const char *const *names, const int *ndims,
                      const int64_t *const *shapes, const float *const *data, rq_st_dtype dtype, rq_err *err);
/* Frees the table and closes the file; st is zeroed. NULL-safe. */
void rq_st_close(rq_safetensors *st);

/* Element conversions (exposed for tests and other loaders). */
float rq_f16_to_f32(uint16_t h);
float rq_bf16_to_f32(uint16_t h);
uint16_t rq_f32_to_f16(float f);  /* round to nearest even */
uint16_t rq_f32_to_bf16(float f); /* round to nearest even */

#endif
