/* fuzz_idx.c: the IDX reader (src/data/idx.c), raw and gzip-compressed.
 *
 * Input: an IDX file (or a .gz of one). rq_idx_read must either fail with a
 * one-line message naming the file, or return dims whose product is exactly
 * the number of data bytes. Inputs starting with "PAIR" + a 2-byte split
 * offset are cut into an images file and a labels file for rq_idx_load_pair. */
#include "fuzz_common.h"

#include "robuq/dataset.h"

static void idx_one(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return;
    int nd = 0;
    long dims[4] = {0};
    uint8_t *buf = NULL;
    rq_err e = {0};
    if (rq_idx_read(path, &nd, dims, &buf, &e) == RQ_OK) {
        if (nd < 1 || nd > 4 || !buf) fz_fail("idx: ok with ndim %d, data %p", nd, (void *)buf);
        long total = 1;
        for (int i = 0; i < nd; i++) {
            if (dims[i] < 1) fz_fail("idx: ok with dim %d = %ld", i, dims[i]);
            total *= dims[i];
        }
        int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
        if (!gz && (size_t)total + 4 + 4 * (size_t)nd != size)
            fz_fail("idx: dims say %ld bytes, file has %zu", total, size);
        /* touch every byte: ASan checks the buffer really is that long */
        unsigned sum = 0;
        for (long i = 0; i < total; i++) sum += buf[i];
        (void)sum;
    } else {
        if (buf) fz_fail("idx: error but data not NULL");
        fz_check_msg(&e, path, "idx");
    }
    free(buf);
    close(fd);
}

FUZZ_TARGET(idx) {
    fz_quiet();
    if (size >= 6 && !memcmp(data, "PAIR", 4)) {
        size_t k = (size_t)(data[4] | data[5] << 8), rest = size - 6;
        if (k > rest) k = rest;
        char pi[64], pl[64];
        int fi = fz_memfile(data + 6, k, pi, sizeof pi), fl = fz_memfile(data + 6 + k, rest - k, pl, sizeof pl);
        if (fi >= 0 && fl >= 0) {
            uint8_t *im = NULL;
            int32_t *lb = NULL;
            long n = 0;
            int h = 0, w = 0;
            rq_err e = {0};
            if (rq_idx_load_pair(pi, pl, &im, &lb, &n, &h, &w, &e) == RQ_OK) {
                if (n < 1 || h < 1 || w < 1 || !im || !lb) fz_fail("idx pair: ok with n=%ld h=%d w=%d", n, h, w);
                unsigned sum = 0;
                for (long i = 0; i < n * h * w; i++) sum += im[i];
                for (long i = 0; i < n; i++)
                    if (lb[i] < 0 || lb[i] > 255) fz_fail("idx pair: label %d", (int)lb[i]);
                (void)sum;
            } else {
                if (im || lb) fz_fail("idx pair: error but outputs set");
                fz_check_msg(&e, NULL, "idx pair");
                if (!strstr(e.msg, pi) && !strstr(e.msg, pl)) fz_fail("idx pair: message names no file: %s", e.msg);
            }
            free(im), free(lb);
        }
        if (fi >= 0) close(fi);
        if (fl >= 0) close(fl);
        return 0;
    }
    idx_one(data, size);
    return 0;
}
