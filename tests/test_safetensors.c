/* test_safetensors.c: the safetensors parser, reader and writer: round trips
 * in F32/F16/BF16, exhaustive half/bfloat16 conversions, and malformed
 * headers rejected with messages that name the byte offset and tensor. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "robuq/safetensors.h"

static const char *tdir(void **state) { return ((tu_dir *)*state)->dir; }

/* 8-byte size + header text + data bytes, in a malloc'd buffer. */
static uint8_t *make_file(const char *json, const void *data, size_t dlen, size_t *len) {
    size_t n = strlen(json);
    uint8_t *b = malloc(8 + n + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    if (dlen) memcpy(b + 8 + n, data, dlen);
    *len = 8 + n + dlen;
    return b;
}

/* Parse json + dlen zero data bytes from memory; returns the status and
 * leaves the message in err. */
static rq_status parse_json(const char *json, size_t dlen, rq_err *err) {
    uint8_t zeros[256] = {0};
    size_t len;
    uint8_t *b = make_file(json, zeros, dlen, &len);
    rq_safetensors st;
    rq_err_clear(err);
    rq_status s = rq_st_parse_header(b, len, len, &st, err);
    if (!s) assert_non_null(st.path);
    rq_st_close(&st);
    free(b);
    return s;
}

static void expect_fail(const char *json, size_t dlen, const char *needle) {
    rq_err err;
    rq_status s = parse_json(json, dlen, &err);
    if (s != RQ_EFORMAT || !strstr(err.msg, needle)) {
        print_error("json %s\n  status %d, message '%s', wanted '%s'\n", json, s, err.msg, needle);
        fail();
    }
}

/* ---------------------------------------------------------- conversions */

static void test_f16_conversion(void **state) {
    (void)state;
    /* known values */
    assert_true(rq_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(rq_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(rq_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    assert_true(rq_f16_to_f32(0x3c00) == 1.0f);
    assert_true(rq_f16_to_f32(0xc000) == -2.0f);
    assert_true(rq_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(rq_f16_to_f32(0x7c00)) && rq_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(rq_f16_to_f32(0xfc00)) && rq_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(rq_f16_to_f32(0x7e00)) && isnan(rq_f16_to_f32(0xfc01)));
    assert_true(signbit(rq_f16_to_f32(0x8000)) && rq_f16_to_f32(0x8000) == 0.0f);

    /* every finite half survives f16 -> f32 -> f16; midpoints between
     * neighbours round to the even one, and just off the midpoint to the
     * nearer one (positive and negative). */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float v = rq_f16_to_f32((uint16_t)h);
        assert_int_equal(rq_f32_to_f16(v), h);
        assert_int_equal(rq_f32_to_f16(-v), h | 0x8000);
        float next = h + 1 < 0x7c00 ? rq_f16_to_f32((uint16_t)(h + 1)) : 65536.0f;
        float mid = (float)(((double)v + next) / 2); /* exact: 12 significant bits */
        uint32_t even = (h & 1) ? h + 1 : h;
        assert_int_equal(rq_f32_to_f16(mid), even);
        assert_int_equal(rq_f32_to_f16(-mid), even | 0x8000);
        assert_int_equal(rq_f32_to_f16(nextafterf(mid, 0.0f)), h);
        assert_int_equal(rq_f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
    }
    assert_int_equal(rq_f32_to_f16(1e6f), 0x7c00);
    assert_int_equal(rq_f32_to_f16(-INFINITY), 0xfc00);
    assert_true((rq_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (rq_f32_to_f16(NAN) & 0x3ff));
    assert_int_equal(rq_f32_to_f16(ldexpf(1.0f, -26)), 0);      /* below half the smallest subnormal */
    assert_int_equal(rq_f32_to_f16(ldexpf(1.0f, -25)), 0);      /* exactly half: ties to even (0) */
    assert_int_equal(rq_f32_to_f16(ldexpf(1.5f, -25)), 1);
    assert_int_equal(rq_f32_to_f16(1e-40f), 0);                 /* float subnormal */
}

static void test_bf16_conversion(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x7f80; h++) {
        float v = rq_bf16_to_f32((uint16_t)h);
        assert_int_equal(rq_f32_to_bf16(v), h);
        assert_int_equal(rq_f32_to_bf16(-v), h | 0x8000);
        uint32_t x;
        memcpy(&x, &v, 4);
        uint32_t mid_bits = x + 0x8000; /* exactly between h and h+1 */
        float mid;
        memcpy(&mid, &mid_bits, 4);
        uint32_t even = (h & 1) ? h + 1 : h;
        assert_int_equal(rq_f32_to_bf16(mid), even);
        mid_bits -= 1;
        memcpy(&mid, &mid_bits, 4);
        assert_int_equal(rq_f32_to_bf16(mid), h);
        mid_bits += 2;
        memcpy(&mid, &mid_bits, 4);
        assert_int_equal(rq_f32_to_bf16(mid), h + 1);
    }
    assert_true(rq_bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(rq_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(rq_f32_to_bf16(3.4e38f), 0x7f80); /* rounds up to inf */
    assert_true(isnan(rq_bf16_to_f32(rq_f32_to_bf16(NAN))));
}

/* ------------------------------------------------------------ round trip */

static void test_roundtrip(void **state) {
    char path[512];
    uint64_t seed = 7;
    float a[24], b[5], c[1] = {3.25f};
    tu_fill(&seed, a, 24, -3.0f, 3.0f);
    tu_fill(&seed, b, 5, -1e-5f, 1e-5f); /* f16 subnormal range */
    a[0] = 1e5f;                         /* beyond f16: becomes inf */
    const char *names[] = {"blocks.0.attn.qkv.weight", "we\"ird\\name\n\xc3\xa9", "scalar", "empty"};
    int ndims[] = {3, 1, 0, 2};
    int64_t sa[] = {2, 3, 4}, sb[] = {5}, se[] = {0, 7};
    const int64_t *shapes[] = {sa, sb, NULL, se};
    const float *data[] = {a, b, c, c};
    rq_st_dtype dts[] = {RQ_ST_F32, RQ_ST_F16, RQ_ST_BF16};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/m%d.safetensors", tdir(state), k);
        rq_err err = {0};
        assert_int_equal(rq_st_write(path, 4, names, ndims, shapes, data, dts[k], &err), RQ_OK);
        struct stat sb2;
        assert_int_equal(stat(path, &sb2), 0);
        assert_int_equal((sb2.st_size - 8 - 0) % 1, 0);
        rq_safetensors st;
        assert_int_equal(rq_st_open(path, &st, &err), RQ_OK);
        assert_int_equal(st.n, 4);
        assert_int_equal(st.data_start % 8, 0);
        assert_int_equal(st.file_size, (uint64_t)sb2.st_size);
        const rq_st_tensor *t = rq_st_find(&st, "blocks.0.attn.qkv.weight");
        assert_non_null(t);
        assert_int_equal(t->dtype, dts[k]);
        assert_int_equal(t->ndim, 3);
        assert_int_equal(t->shape[2], 4);
        assert_int_equal(rq_st_numel(t), 24);
        float out[24];
        assert_int_equal(rq_st_read_f32(&st, t, out, &err), RQ_OK);
        for (int i = 0; i < 24; i++) {
            float want = dts[k] == RQ_ST_F32 ? a[i] : dts[k] == RQ_ST_F16 ? rq_f16_to_f32(rq_f32_to_f16(a[i]))
                                                                            : rq_bf16_to_f32(rq_f32_to_bf16(a[i]));
            assert_true(out[i] == want);
        }
        if (dts[k] == RQ_ST_F16) assert_true(isinf(out[0]));
        if (dts[k] != RQ_ST_F32) assert_true(fabsf(out[1] - a[1]) <= fabsf(a[1]) * (dts[k] == RQ_ST_F16 ? 1e-3f : 8e-3f));
        t = rq_st_find(&st, names[1]); /* escaped name decoded back */
        assert_non_null(t);
        assert_int_equal(rq_st_read_f32(&st, t, out, &err), RQ_OK);
        if (dts[k] == RQ_ST_F16) /* subnormal halves: absolute error <= 2^-25 */
            for (int i = 0; i < 5; i++) assert_true(fabsf(out[i] - b[i]) <= ldexpf(1.0f, -25));
        t = rq_st_find(&st, "scalar");
        assert_int_equal(t->ndim, 0);
        assert_int_equal(rq_st_read_f32(&st, t, out, &err), RQ_OK);
        assert_true(out[0] == 3.25f);
        t = rq_st_find(&st, "empty");
        assert_int_equal(rq_st_numel(t), 0);
        assert_int_equal(t->begin, t->end);
        assert_null(rq_st_find(&st, "missing"));
        assert_null(rq_st_find(&st, "__metadata__"));
        rq_st_close(&st);
        rq_st_close(&st); /* idempotent */
    }
    /* no temp file left behind */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/m0.safetensors.tmp.%ld", tdir(state), (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
}

/* A file as another writer would produce it (metadata last, other dtypes,
 * unknown keys, whitespace, escapes), parsed from memory and read. */
static void test_foreign_layout(void **state) {
    (void)state;
    uint8_t data[4 + 8 + 8 + 4 + 3];
    uint16_t bf[2] = {0x3f80, 0xc040};   /* 1, -3 */
    double f64 = -0.5;
    int64_t i64 = 123456789;
    int32_t i32 = -7;
    uint8_t u8[3] = {1, 2, 3};
    memcpy(data, bf, 4);
    memcpy(data + 4, &f64, 8);
    memcpy(data + 12, &i64, 8);
    memcpy(data + 20, &i32, 4);
    memcpy(data + 24, u8, 3);
    const char *json =
        "{ \"a\\u00e9\\ud83d\\ude00\" : {\"dtype\":\"BF16\", \"shape\":[2], \"data_offsets\":[0,4], \"extra\": [1, {\"x\": null}]},\n"
        "  \"d\":{\"data_offsets\":[4,12],\"shape\":[],\"dtype\":\"F64\"},"
        "  \"i\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[12,20]},"
        "  \"j\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[20,24]},"
        "  \"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]},"
        "  \"__metadata__\":{\"format\":\"pt\", \"nested\": {\"ok\": [true, false, -1.5e-3]}}}    ";
    size_t len;
    uint8_t *b = make_file(json, data, sizeof data, &len);
    rq_safetensors st;
    rq_err err = {0};
    assert_int_equal(rq_st_parse_header(b, len, len, &st, &err), RQ_OK);
    assert_int_equal(st.n, 5);
    assert_ptr_equal(st.mem, b);
    const rq_st_tensor *t = rq_st_find(&st, "a\xc3\xa9\xf0\x9f\x98\x80");
    assert_non_null(t);
    float out[4];
    assert_int_equal(rq_st_read_f32(&st, t, out, &err), RQ_OK);
    assert_true(out[0] == 1.0f && out[1] == -3.0f);
    assert_int_equal(rq_st_read_f32(&st, rq_st_find(&st, "d"), out, &err), RQ_OK);
    assert_true(out[0] == -0.5f);
    assert_int_equal(rq_st_read_f32(&st, rq_st_find(&st, "i"), out, &err), RQ_OK);
    assert_true(out[0] == 123456789.0f);
    assert_int_equal(rq_st_read_f32(&st, rq_st_find(&st, "j"), out, &err), RQ_OK);
    assert_true(out[0] == -7.0f);
    t = rq_st_find(&st, "u");
    assert_int_equal(t->dtype, RQ_ST_OTHER);
    assert_string_equal(t->dtype_name, "U8");
    assert_int_equal(rq_st_read_f32(&st, t, out, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "dtype U8 cannot be read"));
    rq_st_close(&st);

    /* header only (len < file size): parses, no memory reads */
    assert_int_equal(rq_st_parse_header(b, 8 + strlen(json), len, &st, &err), RQ_OK);
    assert_null(st.mem);
    rq_st_close(&st);
    free(b);

    /* empty header and no data: fine */
    rq_err e2;
    assert_int_equal(parse_json("{}", 0, &e2), RQ_OK);
    assert_int_equal(parse_json(" {\"__metadata__\":{}} ", 0, &e2), RQ_OK);
}

/* ------------------------------------------------------------- malformed */

static void test_malformed_json(void **state) {
    (void)state;
    /* byte offsets are file offsets: 8 + position in the JSON */
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "byte 62: expected a string");
    expect_fail("{\"a\" {}}", 0, "byte 13: expected ':'");
    expect_fail("{'a':{}}", 0, "byte 9: expected a string, found '''");
    expect_fail("[]", 0, "header must be a JSON object");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected ',' or '}', found end");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "unexpected data after");
    expect_fail("{\"a\\q\":{}}", 0, "bad escape '\\q'");
    expect_fail("{\"a\\ud800\":{}}", 0, "not followed by a low one");
    expect_fail("{\"a\\udc00\":{}}", 0, "lone low surrogate");
    expect_fail("{\"a\\u12g4\":{}}", 0, "bad \\u escape");
    expect_fail("{\"a\\u0000\":{}}", 0, "\\u0000 inside a string");
    expect_fail("{\"a\tb\":{}}", 0, "control character 0x09");
    expect_fail("{\"ab", 0, "unterminated string");
    expect_fail("{\"\xff\":{}}", 0, "byte 10: header is not valid UTF-8");
    expect_fail("{\"\xc0\xaf\":{}}", 0, "not valid UTF-8"); /* overlong */
    expect_fail("{\"__metadata__\":{\"k\":tru}}", 0, "expected a JSON value");
    expect_fail("{\"__metadata__\":{\"k\":01}}", 0, "leading zero");
    expect_fail("{\"__metadata__\":{\"k\":1.}}", 0, "no digit after '.'");
    expect_fail("{\"__metadata__\":{\"k\":1e}}", 0, "no digit in the exponent");
    expect_fail("{\"__metadata__\":{\"k\":-}}", 0, "bad number");
    expect_fail("{\"__metadata__\":{\"k\":[1 2]}}", 0, "expected ',' or ']'");
    expect_fail("{\"__metadata__\":\"x\"}", 0, "__metadata__ must be an object");
    expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
    char deep[400];
    strcpy(deep, "{\"__metadata__\":{\"k\":");
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    for (int i = 0; i < 70; i++) strcat(deep, "]");
    strcat(deep, "}}");
    expect_fail(deep, 0, "nesting deeper than 64");
}

static void test_malformed_tensors(void **state) {
    (void)state;
    expect_fail("{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
                "tensor 'w': data_offsets [0, 24] hold 24 bytes, F16 [2,3] needs 12");
    expect_fail("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': unknown dtype 'F33'");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "byte 13: tensor 'w': missing 'shape'");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing 'data_offsets'");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate key 'dtype'");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape: entries must be non-negative");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape: entries must be");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "more than 8 entries");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets must have 2 entries");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "data_offsets: more than 2");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "begin after end");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, "entries must be");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "too large");
    expect_fail("{\"w\":[]}", 0, "tensor 'w': expected '{'");
    /* layout of the data buffer */
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12,
                "tensor 'b': data_offsets [8, 16] beyond the data (12 bytes after the header)");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "leaving a hole of 4 bytes");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "4 bytes after the last tensor");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "tensor 'a' appears twice");
    expect_fail("{}", 4, "4 data bytes but no tensors");
}

/* Size field and truncation, through files (messages name the path). */
static void test_malformed_files(void **state) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tdir(state));
    rq_safetensors st;
    rq_err err;
    const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    float d[4] = {1, 2, 3, 4};
    size_t len;
    uint8_t *b = make_file(json, d, sizeof d, &len);

    struct { size_t keep; uint64_t hsize; const char *msg; } cases[] = {
        {len - 4, 0, "beyond the data"},                     /* truncated data */
        {8 + 10, 0, "exceeds the file"},                     /* truncated header */
        {5, 0, "shorter than 8 bytes"},
        {len, (uint64_t)len, "header size"},                 /* size field > file */
        {len, 200000000ull, "exceeds the limit"},            /* > 100 MB */
        {len, UINT64_MAX, "exceeds the limit"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t *c = malloc(len);
        memcpy(c, b, len);
        if (cases[k].hsize)
            for (int i = 0; i < 8; i++) c[i] = (uint8_t)(cases[k].hsize >> (8 * i));
        FILE *f = fopen(path, "wb");
        fwrite(c, 1, cases[k].keep, f);
        fclose(f);
        rq_err_clear(&err);
        assert_int_equal(rq_st_open(path, &st, &err), RQ_EFORMAT);
        if (!strstr(err.msg, cases[k].msg) || !strstr(err.msg, path)) {
            print_error("case %zu: '%s'\n", k, err.msg);
            fail();
        }
        assert_int_equal(st.n, 0);
        rq_st_close(&st);
        /* the same bytes from memory */
        rq_err_clear(&err);
        assert_int_equal(rq_st_parse_header(c, cases[k].keep, cases[k].keep, &st, &err), RQ_EFORMAT);
        assert_non_null(strstr(err.msg, "<buffer>"));
        free(c);
    }
    /* header prefix shorter than the announced size */
    rq_err_clear(&err);
    assert_int_equal(rq_st_parse_header(b, 20, len, &st, &err), RQ_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated header"));
    free(b);
    rq_err_clear(&err);
    assert_int_equal(rq_st_open("/nonexistent/x.safetensors", &st, &err), RQ_EIO);
    assert_int_equal(rq_st_parse_header(NULL, 0, 0, &st, &err), RQ_EINVAL);
}

static void test_writer_errors(void **state) {
    char path[512];
    snprintf(path, sizeof path, "%s/w.safetensors", tdir(state));
    float x[2] = {1, 2};
    int64_t s2[] = {2};
    const int64_t *shapes[] = {s2, s2};
    const float *data[] = {x, x};
    int nd[] = {1, 1};
    rq_err err;
    rq_err_clear(&err);
    assert_int_equal(rq_st_write(path, 2, (const char *[]){"a", "a"}, nd, shapes, data, RQ_ST_F32, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "'a' given twice"));
    rq_err_clear(&err);
    assert_int_equal(rq_st_write(path, 1, (const char *[]){"__metadata__"}, nd, shapes, data, RQ_ST_F32, &err), RQ_EINVAL);
    rq_err_clear(&err);
    assert_int_equal(rq_st_write(path, 1, (const char *[]){"a"}, nd, shapes, data, RQ_ST_F64, &err), RQ_EINVAL);
    assert_non_null(strstr(err.msg, "F32, F16 or BF16"));
    assert_int_not_equal(access(path, F_OK), 0);
    rq_err_clear(&err);
    assert_int_equal(rq_st_write("/nonexistent/dir/w.safetensors", 1, (const char *[]){"a"}, nd, shapes, data,
                                 RQ_ST_F32, &err), RQ_EIO);
    /* zero tensors: a valid file */
    rq_err_clear(&err);
    assert_int_equal(rq_st_write(path, 0, NULL, NULL, NULL, NULL, RQ_ST_BF16, &err), RQ_OK);
    rq_safetensors st;
    assert_int_equal(rq_st_open(path, &st, &err), RQ_OK);
    assert_int_equal(st.n, 0);
    rq_st_close(&st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_conversion),
        cmocka_unit_test(test_bf16_conversion),
        cmocka_unit_test_setup_teardown(test_roundtrip, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_foreign_layout),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_tensors),
        cmocka_unit_test_setup_teardown(test_malformed_files, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_writer_errors, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
