/* idx.c: reader for the IDX format of MNIST / Fashion-MNIST.
 *
 * Layout: magic 00 00 <type> <ndim>, then ndim big-endian uint32 sizes,
 * then the data. zlib's gzread reads .gz and plain files alike, so one code
 * path handles both; the exact decompressed length is checked so that a
 * truncated download is an error rather than a silently short dataset. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "robuq/dataset.h"

/* Read exactly n bytes (or fewer at EOF); -1 on a zlib error. */
static long gz_read_all(gzFile f, void *buf, long n) {
    long got = 0;
    while (got < n) {
        long want = n - got > (1L << 30) ? (1L << 30) : n - got;
        int r = gzread(f, (char *)buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += r;
    }
    return got;
}

static const char *gz_msg(gzFile f) {
    int code;
    const char *m = gzerror(f, &code);
    return (code == Z_ERRNO) ? strerror(errno) : (m && m[0] ? m : "read error");
}

rq_status rq_idx_read(const char *path, int *ndim, long dims[4], uint8_t **data, rq_err *err) {
    if (!path || !ndim || !dims || !data) return rq_err_set(err, RQ_EINVAL, "rq_idx_read: bad arguments");
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    gzbuffer(f, 1 << 17);
    rq_status s = RQ_OK;
    uint8_t *buf = NULL;
    unsigned char hdr[4 + 4 * 4];
    long got = gz_read_all(f, hdr, 4);
    if (got < 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: corrupt compressed data: %s", path, gz_msg(f));
        goto done;
    }
    if (got < 4) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated: %ld bytes, too short for an IDX header", path, got);
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)", path, hdr[0],
                       hdr[1], hdr[2], hdr[3]);
        goto done;
    }
    if (hdr[2] != 0x08) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: IDX element type 0x%02x not supported (only unsigned byte, 0x08)",
                       path, hdr[2]);
        goto done;
    }
    int nd = hdr[3];
    if (nd < 1 || nd > 4) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: IDX with %d dimensions not supported (1 to 4)", path, nd);
        goto done;
    }
    got = gz_read_all(f, hdr + 4, 4L * nd);
    if (got != 4L * nd) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated: header needs %d bytes, got %ld", path, 4 + 4 * nd,
                       4 + (got > 0 ? got : 0));
        goto done;
    }
    long total = 1;
    for (int i = 0; i < nd; i++) {
        const unsigned char *p = hdr + 4 + 4 * i;
        dims[i] = (long)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        if (dims[i] < 1 || dims[i] > (1L << 31)) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: bad IDX dimension %d: %ld", path, i, dims[i]);
            goto done;
        }
        if (dims[i] > (1L << 40) / total) { /* total * dims[i] > 2^40, tested without overflowing */
            s = rq_err_set(err, RQ_EFORMAT, "%s: IDX dimensions too large", path);
            goto done;
        }
        total *= dims[i];
    }
    /* The header is not trusted with the allocation: the buffer grows with
     * the data actually read (doubling, from 1 MiB), so a forged header on a
     * tiny file fails as "truncated" instead of reserving terabytes. */
    long cap = total < (1L << 20) ? total : (1L << 20);
    buf = malloc((size_t)cap);
    got = 0;
    while (buf) {
        long r = gz_read_all(f, buf + got, cap - got);
        if (r < 0) {
            got = -1;
            break;
        }
        got += r;
        if (got < cap || cap == total) break; /* EOF, or all there */
        long ncap = cap * 2 < total ? cap * 2 : total;
        uint8_t *nb = realloc(buf, (size_t)ncap);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap = ncap;
    }
    if (!buf) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for %ld bytes", path, total);
        goto done;
    }
    const long hsize = 4 + 4L * nd;
    if (got < 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: corrupt compressed data: %s", path, gz_msg(f));
        goto done;
    }
    if (got < total) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated: expected %ld bytes (header %ld + data %ld), got %ld",
                       path, hsize + total, hsize, total, hsize + got);
        goto done;
    }
    /* Trailing bytes mean the dims do not describe the file: refuse. */
    unsigned char extra;
    long more = gz_read_all(f, &extra, 1);
    if (more < 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: corrupt compressed data: %s", path, gz_msg(f));
        goto done;
    }
    if (more > 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: unexpected data after the expected %ld bytes", path,
                       hsize + total);
        goto done;
    }
    *ndim = nd;
    *data = buf;
    buf = NULL;
done:
    free(buf);
    gzclose(f);
    return s;
}

rq_status rq_idx_load_pair(const char *images_path, const char *labels_path, uint8_t **images,
                           int32_t **labels, long *n, int *h, int *w, rq_err *err) {
    if (!images_path || !labels_path || !images || !labels || !n || !h || !w)
        return rq_err_set(err, RQ_EINVAL, "rq_idx_load_pair: bad arguments");
    *images = NULL;
    *labels = NULL;
    int ndi, ndl;
    long di[4], dl[4];
    uint8_t *im = NULL, *lb = NULL;
    rq_status s = rq_idx_read(images_path, &ndi, di, &im, err);
    if (s != RQ_OK) return s;
    if (ndi != 3 && !(ndi == 4 && di[3] == 1)) {
        free(im);
        return rq_err_set(err, RQ_EFORMAT, "%s: expected an idx3 images file (N,H,W), got %d dims",
                          images_path, ndi);
    }
    if (di[1] > 65536 || di[2] > 65536) {
        free(im);
        return rq_err_set(err, RQ_EFORMAT, "%s: image size %ldx%ld too large", images_path, di[1], di[2]);
    }
    if ((s = rq_idx_read(labels_path, &ndl, dl, &lb, err)) != RQ_OK) {
        free(im);
        return s;
    }
    if (ndl != 1) {
        free(im);
        free(lb);
        return rq_err_set(err, RQ_EFORMAT, "%s: expected an idx1 labels file, got %d dims", labels_path, ndl);
    }
    if (dl[0] != di[0]) {
        free(im);
        free(lb);
        return rq_err_set(err, RQ_EFORMAT, "%s: %ld labels but %s has %ld images", labels_path, dl[0],
                          images_path, di[0]);
    }
    int32_t *y = malloc(sizeof *y * (size_t)dl[0]);
    if (!y) {
        free(im);
        free(lb);
        return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", labels_path);
    }
    for (long i = 0; i < dl[0]; i++) y[i] = lb[i];
    free(lb);
    *images = im;
    *labels = y;
    *n = di[0];
    *h = (int)di[1];
    *w = (int)di[2];
    return RQ_OK;
}
