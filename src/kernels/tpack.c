/* tpack.c: ternary matrix packing (trit5 storage, 2bit compute layout).
 * The layouts are specified in tpack.h. These run once per model load or
 * export, so they favour plain, obviously-correct loops over speed. */
#include "robuq/tpack.h"

#include <stdlib.h>
#include <string.h>

const char *rq_tpack_format_name(rq_tpack_format f) {
    switch (f) {
    case RQ_TPACK_TRIT5: return RQ_TPACK_TRIT5_NAME;
    case RQ_TPACK_2BIT: return RQ_TPACK_2BIT_NAME;
    }
    return "unknown";
}

rq_status rq_tpack_format_parse(const char *s, rq_tpack_format *f, rq_err *err) {
    if (!s || !f) return rq_err_set(err, RQ_EINVAL, "tpack: NULL argument");
    if (!strcmp(s, RQ_TPACK_TRIT5_NAME)) *f = RQ_TPACK_TRIT5;
    else if (!strcmp(s, RQ_TPACK_2BIT_NAME)) *f = RQ_TPACK_2BIT;
    else
        return rq_err_set(err, RQ_EINVAL, "unknown ternary packing '%s' (expected '%s' or '%s')", s,
                          RQ_TPACK_TRIT5_NAME, RQ_TPACK_2BIT_NAME);
    return RQ_OK;
}

/* Codes must be -1, 0 or 1: reports the first offender. */
static rq_status check_codes(const char *who, const int8_t *codes, long rows, int cols, rq_err *err) {
    for (long r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int v = codes[r * cols + c];
            if (v < -1 || v > 1)
                return rq_err_set(err, RQ_EINVAL, "%s: code %d at row %ld col %d is not in {-1,0,1}", who,
                                  v, r, c);
        }
    return RQ_OK;
}

/* ------------------------------------------------------------------ trit5 */

size_t rq_trit5_row_bytes(int cols) { return cols < 1 ? 0 : (size_t)(cols + 4) / 5; }

size_t rq_trit5_bytes(long rows, int cols) {
    if (rows < 0 || cols < 1) return 0;
    return (size_t)rows * rq_trit5_row_bytes(cols);
}

static rq_status check_sizes_t5(const char *who, const void *a, const void *b, long rows, int cols,
                                rq_err *err) {
    if (rows < 0 || cols < 1)
        return rq_err_set(err, RQ_EINVAL, "%s: bad shape rows=%ld cols=%d", who, rows, cols);
    if (rows > 0 && (!a || !b)) return rq_err_set(err, RQ_EINVAL, "%s: NULL buffer", who);
    return RQ_OK;
}

rq_status rq_trit5_pack(const int8_t *codes, long rows, int cols, uint8_t *out, rq_err *err) {
    rq_status st = check_sizes_t5("trit5_pack", codes, out, rows, cols, err);
    if (st || (st = check_codes("trit5_pack", codes, rows, cols, err))) return st;
    const size_t rb = rq_trit5_row_bytes(cols);
    for (long r = 0; r < rows; r++) {
        const int8_t *cr = codes + r * cols;
        uint8_t *o = out + (size_t)r * rb;
        for (size_t j = 0; j < rb; j++) {
            int v = 0, p = 1;
            for (int i = 0; i < 5; i++, p *= 3) {
                long c = (long)j * 5 + i;
                v += p * (c < cols ? cr[c] + 1 : 1); /* padding: code 0 */
            }
            o[j] = (uint8_t)v;
        }
    }
    return RQ_OK;
}

rq_status rq_trit5_check(const uint8_t *in, long rows, int cols, rq_err *err) {
    rq_status st = check_sizes_t5("trit5", in, in, rows, cols, err);
    if (st) return st;
    const size_t rb = rq_trit5_row_bytes(cols);
    const int tail = cols - (int)(rb - 1) * 5; /* columns used in the last byte: 1..5 */
    for (long r = 0; r < rows; r++) {
        const uint8_t *b = in + (size_t)r * rb;
        for (size_t j = 0; j < rb; j++)
            if (b[j] > 242)
                return rq_err_set(err, RQ_EFORMAT, "trit5: row %ld byte %zu: value %d > 242", r, j, b[j]);
        int v = b[rb - 1];
        for (int i = 0; i < 5; i++, v /= 3)
            if (i >= tail && v % 3 != 1)
                return rq_err_set(err, RQ_EFORMAT,
                                  "trit5: row %ld byte %zu (last of the row): padding trit %d is %d, expected 0",
                                  r, rb - 1, i, v % 3 - 1);
    }
    return RQ_OK;
}

rq_status rq_trit5_unpack(const uint8_t *in, long rows, int cols, int8_t *codes, rq_err *err) {
    rq_status st = check_sizes_t5("trit5_unpack", in, codes, rows, cols, err);
    if (st || (st = rq_trit5_check(in, rows, cols, err))) return st;
    const size_t rb = rq_trit5_row_bytes(cols);
    for (long r = 0; r < rows; r++) {
        const uint8_t *b = in + (size_t)r * rb;
        int8_t *cr = codes + r * cols;
        for (size_t j = 0; j < rb; j++) {
            int v = b[j];
            for (int i = 0; i < 5; i++, v /= 3) {
                long c = (long)j * 5 + i;
                if (c < cols) cr[c] = (int8_t)(v % 3 - 1);
            }
        }
    }
    return RQ_OK;
}

/* ------------------------------------------------------------------- 2bit */

size_t rq_t2_bytes(int rows, int cols) {
    if (rows < 1 || cols < 1) return 0;
    return (size_t)((rows + 15) / 16) * (size_t)((cols + 15) / 16) * 64;
}

static rq_status check_sizes_t2(const char *who, const void *a, const void *b, int rows, int cols,
                                rq_err *err) {
    if (rows < 1 || cols < 1)
        return rq_err_set(err, RQ_EINVAL, "%s: bad shape rows=%d cols=%d", who, rows, cols);
    if (!a || !b) return rq_err_set(err, RQ_EINVAL, "%s: NULL buffer", who);
    return RQ_OK;
}

/* Byte offset and bit shift of element (r, c) in the 2bit layout. */
static inline size_t t2_at(int Q, int r, int c, int *shift) {
    const int p = r >> 4, i = r & 15, q = c >> 4, j = (c & 15) >> 2, kk = c & 3;
    *shift = 2 * j;
    return ((size_t)p * Q + q) * 64 + 4 * i + kk;
}

rq_status rq_t2_pack(const int8_t *codes, int rows, int cols, uint8_t *out, rq_err *err) {
    rq_status st = check_sizes_t2("t2_pack", codes, out, rows, cols, err);
    if (st || (st = check_codes("t2_pack", codes, rows, cols, err))) return st;
    const int P = (rows + 15) / 16, Q = (cols + 15) / 16;
    for (int p = 0; p < P; p++)
        for (int q = 0; q < Q; q++) {
            uint8_t *blk = out + ((size_t)p * Q + q) * 64;
            for (int i = 0; i < 16; i++) {
                const int r = 16 * p + i;
                for (int kk = 0; kk < 4; kk++) {
                    unsigned b = 0;
                    for (int j = 0; j < 4; j++) {
                        const int c = 16 * q + 4 * j + kk;
                        unsigned u = r < rows && c < cols ? (unsigned)(codes[(size_t)r * cols + c] + 1) : 1u;
                        b |= u << (2 * j);
                    }
                    blk[4 * i + kk] = (uint8_t)b;
                }
            }
        }
    return RQ_OK;
}

/* Slow path of rq_t2_check: the first bad field in row-major order. */
static rq_status t2_find_bad(const uint8_t *in, int rows, int cols, rq_err *err) {
    const int P = (rows + 15) / 16, Q = (cols + 15) / 16;
    for (int r = 0; r < P * 16; r++)
        for (int c = 0; c < Q * 16; c++) {
            int sh;
            size_t at = t2_at(Q, r, c, &sh);
            unsigned u = (in[at] >> sh) & 3u;
            if (r < rows && c < cols) {
                if (u == 3)
                    return rq_err_set(err, RQ_EFORMAT, "2bit: row %d col %d (byte %zu bits %d-%d): invalid code 3",
                                      r, c, at, sh, sh + 1);
            } else if (u != 1) {
                return rq_err_set(err, RQ_EFORMAT,
                                  "2bit: padding at row %d col %d (byte %zu bits %d-%d) holds %u, expected 1 (code 0)",
                                  r, c, at, sh, sh + 1, u);
            }
        }
    return RQ_OK;
}

rq_status rq_t2_check(const uint8_t *in, int rows, int cols, rq_err *err) {
    rq_status st = check_sizes_t2("t2", in, in, rows, cols, err);
    if (st) return st;
    /* Fast scan: a field is 3 iff both of its bits are set. */
    const size_t n = rq_t2_bytes(rows, cols);
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) bad |= in[i] & (in[i] >> 1) & 0x55u;
    /* Padding lives only in the last band of rows and the last column chunk. */
    const int P = (rows + 15) / 16, Q = (cols + 15) / 16;
    for (int p = 0; p < P && !bad; p++)
        for (int q = 0; q < Q && !bad; q++) {
            if (16 * (p + 1) <= rows && 16 * (q + 1) <= cols) continue;
            for (int r = 16 * p; r < 16 * p + 16; r++)
                for (int c = 16 * q; c < 16 * q + 16; c++) {
                    if (r < rows && c < cols) continue;
                    int sh;
                    size_t at = t2_at(Q, r, c, &sh); /* sets sh: must be sequenced before the shift */
                    if (((in[at] >> sh) & 3u) != 1) bad = 1;
                }
        }
    return bad ? t2_find_bad(in, rows, cols, err) : RQ_OK;
}

rq_status rq_t2_unpack(const uint8_t *in, int rows, int cols, int8_t *codes, rq_err *err) {
    rq_status st = check_sizes_t2("t2_unpack", in, codes, rows, cols, err);
    if (st || (st = rq_t2_check(in, rows, cols, err))) return st;
    const int Q = (cols + 15) / 16;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int sh;
            size_t at = t2_at(Q, r, c, &sh);
            codes[(size_t)r * cols + c] = (int8_t)((int)((in[at] >> sh) & 3u) - 1);
        }
    return RQ_OK;
}

/* --------------------------------------------------------- conversions */

/* Both conversions go one 16-row band at a time: a band's 2bit blocks are
 * contiguous, so each band is a complete 2bit matrix of <= 16 rows. */
rq_status rq_trit5_to_t2(const uint8_t *t5, int rows, int cols, uint8_t *t2, rq_err *err) {
    rq_status st = check_sizes_t2("trit5_to_t2", t5, t2, rows, cols, err);
    if (st || (st = rq_trit5_check(t5, rows, cols, err))) return st;
    int8_t *band = malloc((size_t)16 * cols);
    if (!band) return rq_err_set(err, RQ_ENOMEM, "trit5_to_t2: out of memory (%d cols)", cols);
    const size_t rb = rq_trit5_row_bytes(cols), band_bytes = rq_t2_bytes(16, cols);
    for (int r0 = 0; r0 < rows && !st; r0 += 16) {
        int n = rows - r0 < 16 ? rows - r0 : 16;
        st = rq_trit5_unpack(t5 + (size_t)r0 * rb, n, cols, band, err);
        if (!st) st = rq_t2_pack(band, n, cols, t2 + (size_t)(r0 / 16) * band_bytes, err);
    }
    free(band);
    return st;
}

rq_status rq_t2_to_trit5(const uint8_t *t2, int rows, int cols, uint8_t *t5, rq_err *err) {
    rq_status st = check_sizes_t2("t2_to_trit5", t2, t5, rows, cols, err);
    if (st || (st = rq_t2_check(t2, rows, cols, err))) return st;
    int8_t *band = malloc((size_t)16 * cols);
    if (!band) return rq_err_set(err, RQ_ENOMEM, "t2_to_trit5: out of memory (%d cols)", cols);
    const size_t rb = rq_trit5_row_bytes(cols), band_bytes = rq_t2_bytes(16, cols);
    for (int r0 = 0; r0 < rows && !st; r0 += 16) {
        int n = rows - r0 < 16 ? rows - r0 : 16;
        st = rq_t2_unpack(t2 + (size_t)(r0 / 16) * band_bytes, n, cols, band, err);
        if (!st) st = rq_trit5_pack(band, n, cols, t5 + (size_t)r0 * rb, err);
    }
    free(band);
    return st;
}
