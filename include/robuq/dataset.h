/* dataset.h: the RobuQ dataset file, the in-memory dataset, the batch loader
 * and the importers used by robuq-data (IDX, PNG folder; .npy is in npy.h).
 *
 * File format (HDF5, DESIGN section 5):
 *   /images  uint8   (N,H,W,C)  kind = "images",  scale = 1.0
 *   /latents float32 (N,C,H,W)  kind = "latents", scale e.g. 0.18215
 *   /labels  int32   (N)        values in [0, num_classes)
 *   root attributes: format = "robuq-dataset", version = 1, kind, scale,
 *   num_classes, source (free text: where the data came from).
 *
 * In memory everything is float32 NCHW, normalised the way the model sees
 * it: images -> x/127.5 - 1 in [-1, 1]; latents -> value * scale. */
#ifndef ROBUQ_DATASET_H
#define ROBUQ_DATASET_H

#include <stdint.h>

#include "robuq/common.h"

#define RQ_DATASET_FORMAT "robuq-dataset"
#define RQ_DATASET_VERSION 1

typedef enum { RQ_DATA_IMAGES = 0, RQ_DATA_LATENTS = 1 } rq_data_kind;

typedef struct {
    rq_data_kind kind;
    long n;           /* number of samples */
    int c, h, w;      /* per-sample shape, NCHW */
    int num_classes;
    double scale;     /* from the file (1.0 for images) */
    float *x;         /* n*c*h*w, rq_malloc'd */
    int32_t *labels;  /* n, rq_malloc'd */
} rq_dataset;

/* Load a whole dataset file, validating format/version/kind attributes,
 * shapes and label range ("label 12 at index 345 outside [0,10)").
 * On error ds is left zeroed. */
rq_status rq_dataset_load(const char *path, rq_dataset *ds, rq_err *err);
/* Same, only the first max_n samples (max_n <= 0: all). */
rq_status rq_dataset_load_n(const char *path, long max_n, rq_dataset *ds, rq_err *err);
void rq_dataset_free(rq_dataset *ds);
/* Floats per sample (c*h*w). */
static inline long rq_dataset_sample_size(const rq_dataset *ds) {
    return (long)ds->c * ds->h * ds->w;
}

/* What rq_dataset_write stores: raw data in file layout. */
typedef struct {
    rq_data_kind kind;
    long n;
    int c, h, w;
    const uint8_t *images;   /* RQ_DATA_IMAGES: N,H,W,C */
    const float *latents;    /* RQ_DATA_LATENTS: N,C,H,W (unscaled) */
    const int32_t *labels;   /* N */
    int num_classes;         /* <= 0: max label + 1 */
    double scale;            /* latents only; images always 1.0 */
    const char *source;      /* may be NULL */
    int compression;         /* deflate level 0..9; < 0: default (4 images, 0 latents) */
} rq_dataset_src;

/* Validate (labels in range, sizes positive, finite latents) and write
 * atomically: path appears complete or not at all. */
rq_status rq_dataset_write(const char *path, const rq_dataset_src *src, rq_err *err);

/* ------------------------------------------------------------------ loader */
/* Deterministic batch loader. Epoch e visits the samples in a permutation
 * derived only from (seed, e), so the position (epoch, pos) is all the state
 * there is: saving it and restoring it continues the exact same stream.
 * Batches run across epoch boundaries (the tail of epoch e, then the head of
 * e+1). Random flips are drawn from a counter-based hash of (seed, epoch,
 * pos), again with no hidden state. */
typedef struct {
    const rq_dataset *ds;  /* borrowed; must outlive the loader */
    uint64_t seed;
    int shuffle;           /* 0: dataset order every epoch */
    int flip;              /* 1: horizontal flip with p = 0.5 per sample */
    long epoch, pos;       /* next sample = perm[pos] of epoch `epoch` */
    long *perm;            /* permutation of the current epoch */
} rq_loader;

#define RQ_LOADER_STATE_LEN 6

rq_status rq_loader_init(rq_loader *l, const rq_dataset *ds, uint64_t seed, int shuffle, int flip,
                         rq_err *err);
void rq_loader_free(rq_loader *l);
/* Copy the next `batch` samples: x_out gets batch*c*h*w floats, y_out (may
 * be NULL) batch labels. RQ_EINVAL on bad arguments. */
rq_status rq_loader_next(rq_loader *l, float *x_out, int32_t *y_out, int batch);
/* Save / restore the position: {magic, version|shuffle<<8|flip<<9, seed,
 * epoch, pos, n}. set_state checks the magic, that the flags match the
 * loader's and that n matches the dataset. */
void rq_loader_get_state(const rq_loader *l, int64_t state[RQ_LOADER_STATE_LEN]);
rq_status rq_loader_set_state(rq_loader *l, const int64_t state[RQ_LOADER_STATE_LEN], rq_err *err);

/* ------------------------------------------------------------------ importers */
/* IDX file (.gz or raw; gz is detected by content): unsigned-byte data
 * only. dims gets up to 4 dims. *data is malloc'd. Validates the magic, the
 * dims and the exact length ("truncated: expected N bytes of data, got M"). */
rq_status rq_idx_read(const char *path, int *ndim, long dims[4], uint8_t **data, rq_err *err);
/* An idx3 images file (N,H,W) and an idx1 labels file (N) of equal N.
 * images: N*H*W malloc'd; labels: N int32 malloc'd. */
rq_status rq_idx_load_pair(const char *images_path, const char *labels_path, uint8_t **images,
                           int32_t **labels, long *n, int *h, int *w, rq_err *err);

/* A folder of PNGs plus a labels file: one "filename label" per line,
 * '#' starts a comment, blank lines ignored; filenames are relative to dir.
 * All images must have the same size and channel count (gray -> C=1,
 * RGB -> 3; alpha is dropped). images: N*H*W*C (NHWC) malloc'd. Errors name
 * the labels file and line, or the PNG file. */
rq_status rq_pngdir_load(const char *dir, const char *labels_path, uint8_t **images,
                         int32_t **labels, long *n, int *h, int *w, int *c, rq_err *err);

#endif
