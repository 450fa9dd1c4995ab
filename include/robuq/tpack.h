/* tpack.h: storage and compute layouts of ternary weight matrices.
 *
 * A ternary matrix is rows x cols int8 codes in {-1, 0, 1} (row = output
 * channel, col = input feature), as produced by rq_ternary_encode. Two packed
 * forms exist:
 *
 * ---- "trit5" (storage, export files; 1.6 bits per weight) ----
 *   Each row is packed on its own into rb = ceil(cols/5) bytes; row r starts
 *   at byte r*rb (total rows*rb bytes). Byte j of a row holds the columns
 *   c = 5j+i, i = 0..4, as base-3 digits d_i = code + 1 in {0,1,2}:
 *       byte = d_0 + 3 d_1 + 9 d_2 + 27 d_3 + 81 d_4      (0..242)
 *   Columns past the end of the row (c >= cols in the last byte) are padding
 *   and hold code 0 (digit 1). A byte above 242 or non-zero padding is a
 *   format error (the message names the row and the byte).
 *
 * ---- "2bit" (compute layout read by the tgemm kernels) ----
 *   The matrix is cut into blocks of 16 rows x 16 columns; block (p, q)
 *   covers rows 16p..16p+15 and columns 16q..16q+15 and is 64 bytes at
 *       offset (p * Q + q) * 64,   P = ceil(rows/16), Q = ceil(cols/16)
 *   (total P*Q*64 bytes; 2 bits per weight for multiples of 16). Inside a
 *   block, byte b = 4*i + kk (i = row in the block 0..15, kk = 0..3) holds
 *   four 2-bit fields; field j (bits 2j, 2j+1) is
 *       u = code + 1 in {0, 1, 2}  of  W[16p + i][16q + 4j + kk].
 *   So (byte >> 2j) & 3 over the 64 bytes of a block is, for the column
 *   quad k4 = 4q + j, a [16 rows][4 consecutive columns] tile of unsigned
 *   weights: exactly the operand order of vpdpbusd (one 32-bit lane per row,
 *   4 columns per lane) and of pmaddubsw (two ymm halves of 8 rows). One
 *   64-byte load, three shifts and four ANDs unpack 16 columns of 16 rows.
 *   Rows >= rows and columns >= cols are padding with u = 1 (code 0).
 *   u = 3 is a format error (the message names the row, column and byte).
 *
 * All functions check their arguments and return RQ_EINVAL (bad sizes or
 * pointers, codes outside {-1,0,1}) or RQ_EFORMAT (malformed packed bytes,
 * which come from files) with a message in err. Nothing is written to the
 * output on error for the checked conversions of packed input (validation
 * runs before decoding). */
#ifndef ROBUQ_TPACK_H
#define ROBUQ_TPACK_H

#include "robuq/common.h"

/* Names used for the `packing` attribute of exported layers. */
#define RQ_TPACK_TRIT5_NAME "trit5"
#define RQ_TPACK_2BIT_NAME "2bit"
typedef enum { RQ_TPACK_TRIT5 = 0, RQ_TPACK_2BIT = 1 } rq_tpack_format;
const char *rq_tpack_format_name(rq_tpack_format f);
/* "trit5" / "2bit" -> format; RQ_EINVAL otherwise. */
rq_status rq_tpack_format_parse(const char *s, rq_tpack_format *f, rq_err *err);

/* ---------------- trit5 ---------------- */
size_t rq_trit5_row_bytes(int cols);          /* ceil(cols/5); 0 if cols < 1 */
size_t rq_trit5_bytes(long rows, int cols);   /* rows * row_bytes; 0 on bad sizes */
rq_status rq_trit5_pack(const int8_t *codes, long rows, int cols, uint8_t *out, rq_err *err);
rq_status rq_trit5_unpack(const uint8_t *in, long rows, int cols, int8_t *codes, rq_err *err);
/* Validates bytes and padding only. */
rq_status rq_trit5_check(const uint8_t *in, long rows, int cols, rq_err *err);

/* ---------------- 2bit ---------------- */
size_t rq_t2_bytes(int rows, int cols);       /* ceil(rows/16)*ceil(cols/16)*64; 0 on bad sizes */
rq_status rq_t2_pack(const int8_t *codes, int rows, int cols, uint8_t *out, rq_err *err);
rq_status rq_t2_unpack(const uint8_t *in, int rows, int cols, int8_t *codes, rq_err *err);
/* Validates fields (no u = 3) and padding (u = 1). */
rq_status rq_t2_check(const uint8_t *in, int rows, int cols, rq_err *err);

/* Direct conversions between the two packed forms (through a 16-row code
 * buffer that is allocated and freed inside: RQ_ENOMEM possible). The input
 * is validated first; nothing is written on error. */
rq_status rq_trit5_to_t2(const uint8_t *t5, int rows, int cols, uint8_t *t2, rq_err *err);
rq_status rq_t2_to_trit5(const uint8_t *t2, int rows, int cols, uint8_t *t5, rq_err *err);

#endif
