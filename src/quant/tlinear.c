/* tlinear.c: the integer linear layer of exported models (see tlinear.h). */
#include "robuq/tlinear.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "robuq/tgemm.h"

/* Checks everything but the weights; on success L holds the settings and
 * the Hadamard plan (no memory yet). */
static rq_status setup(rq_tlinear *L, int out, int in, int a_bits, int a_method, int hadamard, rq_err *err) {
    memset(L, 0, sizeof *L);
    if (out < 1 || in < 4 || in > RQ_TGEMM_MAX_K || in % 4)
        return rq_err_set(err, RQ_EINVAL,
                          "tlinear: shape out=%d in=%d not supported (in must be a multiple of 4 in 4..%d)", out,
                          in, RQ_TGEMM_MAX_K);
    rq_actq_cfg cfg = {a_bits, a_method};
    rq_err e = {0};
    if (rq_actq_cfg_check(&cfg, &e)) return rq_err_set(err, RQ_EINVAL, "tlinear (in=%d): %s", in, e.msg);
    if (hadamard && rq_hadamard_plan_init(&L->had, in, &e))
        return rq_err_set(err, RQ_EINVAL, "tlinear (in=%d): %s", in, e.msg);
    L->out = out, L->in = in, L->a_bits = a_bits, L->a_method = a_method, L->hadamard = hadamard != 0;
    return RQ_OK;
}

/* Allocates w / gamma / bias of L (bias only if wanted). */
static rq_status alloc_params(rq_tlinear *L, int with_bias, rq_err *err) {
    L->w = rq_malloc(rq_t2_bytes(L->out, L->in));
    L->gamma = rq_malloc((size_t)L->out * sizeof(float));
    L->bias = with_bias ? rq_malloc((size_t)L->out * sizeof(float)) : NULL;
    if (!L->w || !L->gamma || (with_bias && !L->bias)) {
        rq_tlinear_free(L);
        return rq_err_set(err, RQ_ENOMEM, "tlinear: out of memory (out=%d in=%d)", L->out, L->in);
    }
    return RQ_OK;
}

static rq_status check_vec(const char *what, const float *v, int n, int positive, rq_err *err) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]) || (positive && !(v[i] > 0.0f)))
            return rq_err_set(err, RQ_EINVAL, "tlinear: %s[%d] = %g (expected %s)", what, i, v[i],
                              positive ? "finite and > 0" : "finite");
    return RQ_OK;
}

rq_status rq_tlinear_init_float(rq_tlinear *L, const float *w, const float *bias, int out, int in,
                                int a_bits, int a_method, int hadamard, rq_err *err) {
    if (!L || !w) return rq_err_set(err, RQ_EINVAL, "tlinear_init_float: NULL argument");
    rq_status st = setup(L, out, in, a_bits, a_method, hadamard, err);
    if (st) return st;
    if (bias && (st = check_vec("bias", bias, out, 0, err))) return st;
    const size_t n = (size_t)out * in;
    float *wr = rq_malloc(n * sizeof(float));
    int8_t *codes = rq_malloc(n);
    if (!wr || !codes || alloc_params(L, bias != NULL, err)) {
        rq_free(wr), rq_free(codes);
        memset(L, 0, sizeof *L);
        return rq_err_set(err, RQ_ENOMEM, "tlinear: out of memory (out=%d in=%d)", out, in);
    }
    memcpy(wr, w, n * sizeof(float));
    if (L->hadamard) rq_hadamard_apply(&L->had, wr, out); /* W' = W H, row by row */
    st = rq_ternary_encode(wr, codes, L->gamma, out, in, err);
    if (!st) st = check_vec("gamma", L->gamma, out, 1, err); /* NaN/Inf in W */
    if (!st) st = rq_t2_pack(codes, out, in, L->w, err);
    if (!st && bias) memcpy(L->bias, bias, (size_t)out * sizeof(float));
    rq_free(wr), rq_free(codes);
    if (st) rq_tlinear_free(L);
    return st;
}

rq_status rq_tlinear_init_packed(rq_tlinear *L, int out, int in, rq_tpack_format fmt,
                                 const uint8_t *w_packed, size_t w_bytes, const float *gamma,
                                 const float *bias, int a_bits, int a_method, int hadamard,
                                 rq_err *err) {
    if (!L || !w_packed || !gamma) return rq_err_set(err, RQ_EINVAL, "tlinear_init_packed: NULL argument");
    rq_status st = setup(L, out, in, a_bits, a_method, hadamard, err);
    if (st) return st;
    size_t want = fmt == RQ_TPACK_TRIT5 ? rq_trit5_bytes(out, in) : fmt == RQ_TPACK_2BIT ? rq_t2_bytes(out, in) : 0;
    if (!want)
        return rq_err_set(err, RQ_EINVAL, "tlinear_init_packed: unknown packing format %d", (int)fmt);
    if (w_bytes != want)
        return rq_err_set(err, RQ_EFORMAT, "tlinear: packed weights (%s) of %d x %d need %zu bytes, got %zu",
                          rq_tpack_format_name(fmt), out, in, want, w_bytes);
    if ((st = check_vec("gamma", gamma, out, 1, err))) return st;
    if (bias && (st = check_vec("bias", bias, out, 0, err))) return st;
    if ((st = alloc_params(L, bias != NULL, err))) return st;
    if (fmt == RQ_TPACK_TRIT5) {
        st = rq_trit5_to_t2(w_packed, out, in, L->w, err);
    } else {
        st = rq_t2_check(w_packed, out, in, err);
        if (!st) memcpy(L->w, w_packed, want);
    }
    if (st) {
        rq_tlinear_free(L);
        return st;
    }
    memcpy(L->gamma, gamma, (size_t)out * sizeof(float));
    if (bias) memcpy(L->bias, bias, (size_t)out * sizeof(float));
    return RQ_OK;
}

/* Workspace layout: codes [M*in] | unit [M], each part starting on a
 * 64-byte boundary. The rotation needs no workspace: it runs on small
 * per-thread chunks of rows on the stack (see quant_rows). */
static size_t up64(size_t x) { return (x + 63) / 64 * 64; }

size_t rq_tlinear_ws_bytes(const rq_tlinear *L, long M) {
    if (!L || !L->w || M <= 0) return 0;
    return up64((size_t)M * L->in) + up64((size_t)M * sizeof(float));
}

void rq_tlinear_ws_parts(const rq_tlinear *L, long M, void *ws, int8_t **codes, float **unit) {
    *codes = ws;
    *unit = (float *)((char *)ws + up64((size_t)M * L->in));
}

rq_status rq_tlinear_reserve(rq_tlinear *L, long M, rq_err *err) {
    if (!L || !L->w) return rq_err_set(err, RQ_EINVAL, "tlinear_reserve: NULL or empty layer");
    size_t need = rq_tlinear_ws_bytes(L, M);
    if (need <= L->ws_bytes) return RQ_OK;
    rq_free(L->ws);
    L->ws = rq_malloc(need);
    L->ws_bytes = L->ws ? need : 0;
    if (!L->ws) return rq_err_set(err, RQ_ENOMEM, "tlinear: out of memory for the workspace (M=%ld)", M);
    return RQ_OK;
}

/* Rows per chunk of the fused rotate + quantize: the chunk (<= 32 KiB of
 * floats) stays in L1/L2 between the two steps, and x is read only once. */
#define TL_CHUNK_FLOATS 8192
/* Below this many elements the rows are done on one thread. */
#define TL_PAR_WORK (1L << 15)

/* Input rows straight from x[M, in] (the plain forward). */
typedef struct {
    const float *x;
    int in;
} copy_ctx;

static void copy_rows(void *ctx, long r0, long n, float *buf) {
    const copy_ctx *c = ctx;
    memcpy(buf, c->x + r0 * c->in, (size_t)(n * c->in) * sizeof(float));
}

/* Rows built by fn chunk by chunk into a stack buffer, rotated (if
 * hadamard) and encoded there: exactly the operations of
 * rq_actq_rotate_quant (same row transform, same encoder), so codes * unit
 * equals the fake-quant output bit for bit, and each row is touched once. */
rq_status rq_tlinear_encode(const rq_tlinear *L, rq_tl_rows_fn fn, void *ctx, long M, int8_t *codes, float *unit,
                            rq_err *err) {
    if (!L || !L->w || !fn) return rq_err_set(err, RQ_EINVAL, "tlinear_encode: NULL or empty layer / row function");
    if (M < 0 || M > INT_MAX) return rq_err_set(err, RQ_EINVAL, "tlinear_encode: bad token count M=%ld", M);
    if (M > 0 && (!codes || !unit)) return rq_err_set(err, RQ_EINVAL, "tlinear_encode: NULL codes or unit");
    const rq_actq_cfg cfg = {L->a_bits, L->a_method};
    const int in = L->in;
    const long ch = TL_CHUNK_FLOATS / in > 0 ? TL_CHUNK_FLOATS / in : 1; /* in <= 8192 */
    const long nch = (M + ch - 1) / ch;
#pragma omp parallel for schedule(dynamic, 1) if (nch > 1 && M * in >= TL_PAR_WORK) /* threads differ in speed */
    for (long c = 0; c < nch; c++) {
        __attribute__((aligned(64))) float buf[TL_CHUNK_FLOATS];
        const long r0 = c * ch, n = M - r0 < ch ? M - r0 : ch;
        fn(ctx, r0, n, buf);
        if (L->hadamard)
            for (long i = 0; i < n; i++) rq_hadamard_apply_row(&L->had, buf + i * in);
        rq_actq_encode(&cfg, buf, codes + r0 * in, unit + r0, n, in, NULL); /* serial: n*in small */
    }
    return RQ_OK;
}

rq_status rq_tlinear_forward_codes(const rq_tlinear *L, const int8_t *codes, const float *unit, float *y, long M,
                                   rq_err *err) {
    if (!L || !L->w) return rq_err_set(err, RQ_EINVAL, "tlinear_forward_codes: NULL or empty layer");
    if (M < 0 || M > INT_MAX) return rq_err_set(err, RQ_EINVAL, "tlinear_forward_codes: bad token count M=%ld", M);
    return rq_tgemm_scaled((int)M, L->out, L->in, codes, L->in, L->w, unit, L->gamma, L->bias, y, L->out, err);
}

rq_status rq_tlinear_forward_ws(const rq_tlinear *L, const float *x, float *y, long M, void *ws,
                                size_t ws_bytes, rq_err *err) {
    if (!L || !L->w) return rq_err_set(err, RQ_EINVAL, "tlinear_forward: NULL or empty layer");
    if (M < 0 || M > INT_MAX)
        return rq_err_set(err, RQ_EINVAL, "tlinear_forward: bad token count M=%ld", M);
    if (M == 0) return RQ_OK;
    if (!x || !y) return rq_err_set(err, RQ_EINVAL, "tlinear_forward: NULL x or y");
    const size_t need = rq_tlinear_ws_bytes(L, M);
    if (!ws || ws_bytes < need)
        return rq_err_set(err, RQ_EINVAL, "tlinear_forward: workspace of %zu bytes, %zu needed for M=%ld", ws_bytes,
                          need, M);
    int8_t *codes;
    float *unit;
    rq_tlinear_ws_parts(L, M, ws, &codes, &unit);
    copy_ctx c = {x, L->in};
    rq_status st = rq_tlinear_encode(L, copy_rows, &c, M, codes, unit, err);
    return st ? st : rq_tlinear_forward_codes(L, codes, unit, y, M, err);
}

rq_status rq_tlinear_forward(rq_tlinear *L, const float *x, float *y, long M, rq_err *err) {
    if (!L || !L->w) return rq_err_set(err, RQ_EINVAL, "tlinear_forward: NULL or empty layer");
    if (M <= 0) return rq_tlinear_forward_ws(L, x, y, M, NULL, 0, err);
    rq_status st = rq_tlinear_reserve(L, M, err);
    if (st) return st;
    return rq_tlinear_forward_ws(L, x, y, M, L->ws, L->ws_bytes, err);
}

rq_status rq_tlinear_codes(const rq_tlinear *L, int8_t *codes, rq_err *err) {
    if (!L || !L->w || !codes) return rq_err_set(err, RQ_EINVAL, "tlinear_codes: NULL argument");
    return rq_t2_unpack(L->w, L->out, L->in, codes, err);
}

rq_status rq_tlinear_trit5(const rq_tlinear *L, uint8_t *t5, rq_err *err) {
    if (!L || !L->w || !t5) return rq_err_set(err, RQ_EINVAL, "tlinear_trit5: NULL argument");
    return rq_t2_to_trit5(L->w, L->out, L->in, t5, err);
}

void rq_tlinear_free(rq_tlinear *L) {
    if (!L) return;
    rq_free(L->w), rq_free(L->gamma), rq_free(L->bias), rq_free(L->ws);
    memset(L, 0, sizeof *L);
}
