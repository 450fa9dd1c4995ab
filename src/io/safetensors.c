/* safetensors.c: safetensors reader (strict JSON header parser + validation)
 * and writer. See robuq/safetensors.h for the format and the rules. */
#include "robuq/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ conversions */

float rq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else { /* subnormal: normalize the mantissa */
            int shift = 0;
            while (!(m & 0x400)) {
                m <<= 1;
                shift++;
            }
            x = sign | (uint32_t)(127 - 15 + 1 - shift) << 23 | (m & 0x3ff) << 13;
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | m << 13; /* inf, or nan keeping the payload */
    } else {
        x = sign | (e + 127 - 15) << 23 | m << 13;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

float rq_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t rq_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf stays inf; nan stays a (quiet) nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                  /* below 2^-14: half subnormal or zero */
        float a;
        memcpy(&a, &ax, 4);
        /* a * 2^24 is exact; rounding it to an integer (nearest even) gives
         * the subnormal mantissa (1024 = the smallest normal, also right). */
        return (uint16_t)(sign | (uint16_t)nearbyintf(a * 16777216.0f));
    }
    uint32_t h = ((ax >> 23) - 127 + 15) << 10 | (ax & 0x7fffff) >> 13;
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

uint16_t rq_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ------------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    rq_st_dtype dt;
    int size;
} dtypes[] = {
    {"F32", RQ_ST_F32, 4},     {"F16", RQ_ST_F16, 2},    {"BF16", RQ_ST_BF16, 2},  {"F64", RQ_ST_F64, 8},
    {"I64", RQ_ST_I64, 8},     {"I32", RQ_ST_I32, 4},    {"I16", RQ_ST_OTHER, 2},  {"I8", RQ_ST_OTHER, 1},
    {"U64", RQ_ST_OTHER, 8},   {"U32", RQ_ST_OTHER, 4},  {"U16", RQ_ST_OTHER, 2},  {"U8", RQ_ST_OTHER, 1},
    {"BOOL", RQ_ST_OTHER, 1},  {"F8_E4M3", RQ_ST_OTHER, 1}, {"F8_E5M2", RQ_ST_OTHER, 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char *rq_st_dtype_name(rq_st_dtype dt) {
    for (int i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dt == dt && dt != RQ_ST_OTHER) return dtypes[i].name;
    return "OTHER";
}

int64_t rq_st_numel(const rq_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; t && i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ------------------------------------------------------------- JSON parser
 * A recursive-descent parser over the header bytes. pos is relative to the
 * header text; messages report the file offset 8 + pos. */

typedef struct {
    const uint8_t *s;
    size_t n, pos;
    int depth;
    const char *file;
    const char *tensor; /* entry being parsed, for messages (NULL: none) */
    rq_err *err;
    int failed;
} jp;

__attribute__((format(printf, 2, 3))) static rq_status jp_fail(jp *p, const char *fmt, ...) {
    if (p->failed) return RQ_EFORMAT;
    p->failed = 1;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->tensor)
        return rq_err_set(p->err, RQ_EFORMAT, "%s: byte %zu: tensor '%.120s': %s", p->file, p->pos + 8, p->tensor, msg);
    return rq_err_set(p->err, RQ_EFORMAT, "%s: byte %zu: %s", p->file, p->pos + 8, msg);
}

static void skip_ws(jp *p) {
    while (p->pos < p->n) {
        uint8_t c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int peek(jp *p) { return p->pos < p->n ? p->s[p->pos] : -1; }

/* What is at the cursor, for "expected X, found Y" messages. */
static const char *found(jp *p, char *buf) {
    int c = peek(p);
    if (c < 0) return "end of header";
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 8, "'%c'", c);
    else snprintf(buf, 8, "0x%02x", (unsigned)(c & 0xff));
    return buf;
}

static rq_status expect(jp *p, char c) {
    skip_ws(p);
    if (peek(p) == c) {
        p->pos++;
        return RQ_OK;
    }
    char b[8];
    return jp_fail(p, "expected '%c', found %s", c, found(p, b));
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static rq_status read_hex4(jp *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = p->pos < p->n ? hexval(p->s[p->pos]) : -1;
        if (h < 0) return jp_fail(p, "bad \\u escape (need 4 hex digits)");
        *v = *v << 4 | (uint32_t)h;
        p->pos++;
    }
    return RQ_OK;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A JSON string at the cursor; decoded into a malloc'd *out unless out is
 * NULL. The decoded text never exceeds the raw length, so one allocation of
 * the raw length suffices. Escaped NULs are refused (names are C strings). */
static rq_status parse_string(jp *p, char **out) {
    skip_ws(p);
    char b[8];
    if (peek(p) != '"') return jp_fail(p, "expected a string, found %s", found(p, b));
    size_t start = ++p->pos, end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return jp_fail(p, "unterminated string");
    char *o = out ? malloc(end - start + 1) : NULL;
    if (out && !o) return rq_err_set(p->err, RQ_ENOMEM, "%s: out of memory", p->file);
    size_t k = 0;
    while (p->pos < end) {
        uint8_t c = p->s[p->pos];
        if (c < 0x20) {
            free(o);
            return jp_fail(p, "control character 0x%02x inside a string", c);
        }
        if (c != '\\') {
            if (o) o[k] = (char)c;
            k++;
            p->pos++;
            continue;
        }
        p->pos++;
        int e = p->s[p->pos++];
        uint32_t cp = 0;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (read_hex4(p, &cp)) break;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                jp_fail(p, "lone low surrogate \\u%04x", (unsigned)cp);
            } else if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->pos + 2 > end || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    jp_fail(p, "high surrogate \\u%04x not followed by a low one", (unsigned)cp);
                    break;
                }
                p->pos += 2;
                if (read_hex4(p, &lo)) break;
                if (lo < 0xdc00 || lo > 0xdfff) {
                    jp_fail(p, "high surrogate \\u%04x followed by \\u%04x", (unsigned)cp, (unsigned)lo);
                    break;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp == 0) {
                jp_fail(p, "\\u0000 inside a string");
            }
            break;
        default:
            p->pos--;
            jp_fail(p, "bad escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
        }
        if (p->failed) {
            free(o);
            return RQ_EFORMAT;
        }
        if (o) k += put_utf8(o + k, cp);
        else k += 4;
    }
    p->pos = end + 1;
    if (o) {
        o[k] = '\0';
        *out = o;
    }
    return RQ_OK;
}

/* A JSON number (strict grammar). If it is a plain non-negative integer that
 * fits in 63 bits, *is_uint = 1 and *u holds it. */
static rq_status parse_number(jp *p, int *is_uint, uint64_t *u) {
    skip_ws(p);
    size_t i = p->pos;
    int neg = 0, frac = 0, overflow = 0;
    uint64_t v = 0;
    if (i < p->n && p->s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') {
        p->pos = i;
        return jp_fail(p, "bad number");
    }
    if (p->s[i] == '0') {
        i++;
        if (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') {
            p->pos = i;
            return jp_fail(p, "bad number (leading zero)");
        }
    } else {
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') {
            uint64_t d = (uint64_t)(p->s[i] - '0');
            if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10) overflow = 1;
            else v = v * 10 + d;
            i++;
        }
    }
    if (i < p->n && p->s[i] == '.') {
        frac = 1;
        i++;
        if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') {
            p->pos = i;
            return jp_fail(p, "bad number (no digit after '.')");
        }
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        frac = 1;
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') {
            p->pos = i;
            return jp_fail(p, "bad number (no digit in the exponent)");
        }
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    *is_uint = !neg && !frac && !overflow;
    *u = v;
    p->pos = i;
    return RQ_OK;
}

static rq_status skip_value(jp *p);

static rq_status skip_container(jp *p, int obj) {
    if (++p->depth > RQ_ST_MAX_DEPTH) return jp_fail(p, "nesting deeper than %d", RQ_ST_MAX_DEPTH);
    p->pos++; /* '{' or '[' */
    skip_ws(p);
    char close = obj ? '}' : ']';
    if (peek(p) == close) {
        p->pos++;
        p->depth--;
        return RQ_OK;
    }
    for (;;) {
        if (obj && (parse_string(p, NULL) || expect(p, ':'))) return RQ_EFORMAT;
        if (skip_value(p)) return RQ_EFORMAT;
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == close) break;
        if (c != ',') {
            p->pos--;
            char b[8];
            return jp_fail(p, "expected ',' or '%c', found %s", close, found(p, b));
        }
    }
    p->depth--;
    return RQ_OK;
}

static rq_status skip_value(jp *p) {
    skip_ws(p);
    int c = peek(p);
    char b[8];
    if (c == '{' || c == '[') return skip_container(p, c == '{');
    if (c == '"') return parse_string(p, NULL);
    if (c == '-' || (c >= '0' && c <= '9')) {
        int isu;
        uint64_t u;
        return parse_number(p, &isu, &u);
    }
    static const char *lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t L = strlen(lits[i]);
        if (p->n - p->pos >= L && !memcmp(p->s + p->pos, lits[i], L)) {
            p->pos += L;
            return RQ_OK;
        }
    }
    return jp_fail(p, "expected a JSON value, found %s", found(p, b));
}

/* [u, u, ...] of non-negative integers; at most max entries. */
static rq_status parse_uint_array(jp *p, const char *what, uint64_t *vals, int max, int *count) {
    if (expect(p, '[')) return RQ_EFORMAT;
    *count = 0;
    skip_ws(p);
    if (peek(p) == ']') {
        p->pos++;
        return RQ_OK;
    }
    for (;;) {
        skip_ws(p);
        size_t at = p->pos;
        int isu;
        uint64_t u;
        if (parse_number(p, &isu, &u)) return RQ_EFORMAT;
        if (!isu) {
            p->pos = at;
            return jp_fail(p, "%s: entries must be non-negative integers below 2^63", what);
        }
        if (*count == max) {
            p->pos = at;
            return jp_fail(p, "%s: more than %d entries", what, max);
        }
        vals[(*count)++] = u;
        skip_ws(p);
        int c = peek(p);
        if (c == ']') {
            p->pos++;
            return RQ_OK;
        }
        if (c != ',') {
            char b[8];
            return jp_fail(p, "%s: expected ',' or ']', found %s", what, found(p, b));
        }
        p->pos++;
    }
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e]} */
static rq_status parse_tensor(jp *p, rq_st_tensor *t) {
    skip_ws(p);
    size_t entry = p->pos;
    if (expect(p, '{')) return RQ_EFORMAT;
    int have_dtype = 0, have_shape = 0, have_offs = 0;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            size_t key_at = p->pos;
            char *key = NULL;
            if (parse_string(p, &key) || expect(p, ':')) {
                free(key);
                return RQ_EFORMAT;
            }
            rq_status s = RQ_OK;
            int *seen = !strcmp(key, "dtype") ? &have_dtype : !strcmp(key, "shape") ? &have_shape
                      : !strcmp(key, "data_offsets") ? &have_offs : NULL;
            if (seen && *seen) {
                p->pos = key_at;
                s = jp_fail(p, "duplicate key '%s'", key);
            } else if (seen == &have_dtype) {
                skip_ws(p);
                size_t at = p->pos;
                char *dt = NULL;
                s = parse_string(p, &dt);
                if (!s) {
                    int k = 0;
                    while (k < N_DTYPES && strcmp(dt, dtypes[k].name)) k++;
                    if (k == N_DTYPES) {
                        p->pos = at;
                        s = jp_fail(p, "unknown dtype '%.32s'", dt);
                    } else {
                        t->dtype = dtypes[k].dt;
                        t->itemsize = dtypes[k].size;
                        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dtypes[k].name);
                    }
                }
                free(dt);
            } else if (seen == &have_shape) {
                uint64_t v[RQ_ST_MAX_DIMS];
                s = parse_uint_array(p, "shape", v, RQ_ST_MAX_DIMS, &t->ndim);
                for (int i = 0; !s && i < t->ndim; i++) t->shape[i] = (int64_t)v[i];
            } else if (seen == &have_offs) {
                uint64_t v[2] = {0, 0};
                int n;
                s = parse_uint_array(p, "data_offsets", v, 2, &n);
                if (!s && n != 2) s = jp_fail(p, "data_offsets must have 2 entries, found %d", n);
                t->begin = v[0];
                t->end = v[1];
            } else {
                s = skip_value(p); /* unknown keys are ignored, as the reference does */
            }
            if (seen && !s) *seen = 1;
            free(key);
            if (s) return s;
            skip_ws(p);
            int c = peek(p);
            if (c == '}') {
                p->pos++;
                break;
            }
            if (c != ',') {
                char b[8];
                return jp_fail(p, "expected ',' or '}', found %s", found(p, b));
            }
            p->pos++;
        }
    }
    size_t after = p->pos;
    p->pos = entry;
    if (!have_dtype || !have_shape || !have_offs)
        return jp_fail(p, "missing '%s'", !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    if (t->begin > t->end)
        return jp_fail(p, "data_offsets [%" PRIu64 ", %" PRIu64 "]: begin after end", t->begin, t->end);
    /* numel * itemsize without overflow */
    uint64_t bytes = (uint64_t)t->itemsize;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d && bytes > UINT64_MAX / d) overflow = 1;
        else bytes *= d;
    }
    if (overflow || bytes != t->end - t->begin) {
        char shp[160];
        size_t k = 0;
        shp[k++] = '[';
        shp[k] = '\0';
        for (int i = 0; i < t->ndim && k < sizeof shp - 24; i++)
            k += (size_t)snprintf(shp + k, sizeof shp - k, i ? ",%" PRId64 : "%" PRId64, t->shape[i]);
        snprintf(shp + k, sizeof shp - k, "]");
        if (overflow) return jp_fail(p, "shape %s is too large", shp);
        return jp_fail(p, "data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64 " bytes, %s %s needs %" PRIu64,
                       t->begin, t->end, t->end - t->begin, t->dtype_name, shp, bytes);
    }
    p->pos = after;
    return RQ_OK;
}

/* Whole header must be valid UTF-8 (as the reference requires). Returns the
 * offset of the first bad byte, or n. */
static size_t utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (i + (size_t)len > n) return i;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += (size_t)len;
    }
    return n;
}

/* qsort comparators over arrays of tensor pointers. */
static int cmp_name(const void *a, const void *b) {
    return strcmp((*(rq_st_tensor *const *)a)->name, (*(rq_st_tensor *const *)b)->name);
}
static int cmp_offset(const void *a, const void *b) {
    const rq_st_tensor *x = *(rq_st_tensor *const *)a, *y = *(rq_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

void rq_st_close(rq_safetensors *st) {
    if (!st) return;
    for (int i = 0; st->tensors && i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st->path);
    if (st->f) fclose(st->f);
    memset(st, 0, sizeof *st);
}

/* Duplicate names, and the tensors must tile [0, data_size) exactly. */
static rq_status check_layout(rq_safetensors *st, const char *file, rq_err *err) {
    uint64_t data_size = st->file_size - st->data_start;
    if (st->n == 0) {
        if (data_size) return rq_err_set(err, RQ_EFORMAT, "%s: %" PRIu64 " data bytes but no tensors", file, data_size);
        return RQ_OK;
    }
    rq_st_tensor **ts = malloc(sizeof *ts * (size_t)st->n);
    if (!ts) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file);
    for (int i = 0; i < st->n; i++) ts[i] = &st->tensors[i];
    rq_status s = RQ_OK;
    qsort(ts, (size_t)st->n, sizeof *ts, cmp_name);
    for (int i = 1; i < st->n && !s; i++)
        if (!strcmp(ts[i]->name, ts[i - 1]->name))
            s = rq_err_set(err, RQ_EFORMAT, "%s: tensor '%.200s' appears twice", file, ts[i]->name);
    if (!s) {
        qsort(ts, (size_t)st->n, sizeof *ts, cmp_offset);
        uint64_t at = 0;
        for (int i = 0; i < st->n && !s; i++) {
            const rq_st_tensor *t = ts[i];
            if (t->end > data_size)
                s = rq_err_set(err, RQ_EFORMAT,
                               "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64 "] beyond the data (%" PRIu64
                               " bytes after the header)", file, t->name, t->begin, t->end, data_size);
            else if (t->begin < at)
                s = rq_err_set(err, RQ_EFORMAT,
                               "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap tensor '%.200s'",
                               file, t->name, t->begin, t->end, ts[i - 1]->name);
            else if (t->begin > at)
                s = rq_err_set(err, RQ_EFORMAT,
                               "%s: tensor '%.200s': data_offsets start at %" PRIu64 ", leaving a hole of %" PRIu64
                               " bytes after %" PRIu64, file, t->name, t->begin, t->begin - at, at);
            at = t->end;
        }
        if (!s && at != data_size)
            s = rq_err_set(err, RQ_EFORMAT, "%s: %" PRIu64 " bytes after the last tensor's data", file, data_size - at);
    }
    free(ts);
    return s;
}

static rq_status parse_impl(const uint8_t *buf, size_t len, uint64_t file_size, const char *file,
                            rq_safetensors *st, rq_err *err) {
    memset(st, 0, sizeof *st);
    if (!buf) return rq_err_set(err, RQ_EINVAL, "%s: NULL buffer", file);
    if (len < 8 || file_size < 8)
        return rq_err_set(err, RQ_EFORMAT, "%s: %s than 8 bytes: not a safetensors file", file,
                          file_size < 8 ? "file is shorter" : "buffer holds fewer");
    if (len > file_size)
        return rq_err_set(err, RQ_EINVAL, "%s: buffer (%zu bytes) longer than the file (%" PRIu64 ")", file, len,
                          file_size);
    uint64_t N = 0;
    for (int i = 7; i >= 0; i--) N = N << 8 | buf[i];
    if (N > RQ_ST_MAX_HEADER)
        return rq_err_set(err, RQ_EFORMAT, "%s: header size %" PRIu64 " exceeds the limit of %u bytes", file, N,
                          RQ_ST_MAX_HEADER);
    if (N + 8 > file_size)
        return rq_err_set(err, RQ_EFORMAT, "%s: header size %" PRIu64 " exceeds the file (%" PRIu64 " bytes)", file, N,
                          file_size);
    if (N + 8 > len)
        return rq_err_set(err, RQ_EFORMAT, "%s: truncated header: %" PRIu64 " bytes announced, %zu available", file,
                          N, len - 8);
    size_t bad = utf8_check(buf + 8, (size_t)N);
    if (bad != N) return rq_err_set(err, RQ_EFORMAT, "%s: byte %zu: header is not valid UTF-8", file, bad + 8);

    jp p = {.s = buf + 8, .n = (size_t)N, .file = file, .err = err};
    st->data_start = 8 + N;
    st->file_size = file_size;
    int cap = 0, have_meta = 0;
    rq_status s = RQ_OK;
    skip_ws(&p);
    if (peek(&p) != '{') {
        char b[8];
        s = jp_fail(&p, "header must be a JSON object, found %s", found(&p, b));
        goto fail;
    }
    p.pos++;
    p.depth = 1;
    skip_ws(&p);
    if (peek(&p) == '}') {
        p.pos++;
    } else {
        for (;;) {
            skip_ws(&p);
            size_t key_at = p.pos;
            char *name = NULL;
            if ((s = parse_string(&p, &name)) || (s = expect(&p, ':'))) {
                free(name);
                goto fail;
            }
            if (!strcmp(name, "__metadata__")) {
                free(name);
                skip_ws(&p);
                if (have_meta) {
                    p.pos = key_at;
                    s = jp_fail(&p, "__metadata__ appears twice");
                    goto fail;
                }
                have_meta = 1;
                if (peek(&p) != '{') {
                    s = jp_fail(&p, "__metadata__ must be an object");
                    goto fail;
                }
                if ((s = skip_value(&p))) goto fail;
            } else {
                if (st->n == cap) {
                    int ncap = cap ? 2 * cap : 64;
                    rq_st_tensor *nt = realloc(st->tensors, sizeof *nt * (size_t)ncap);
                    if (!nt) {
                        free(name);
                        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file);
                        goto fail;
                    }
                    st->tensors = nt;
                    cap = ncap;
                }
                rq_st_tensor *t = &st->tensors[st->n++];
                memset(t, 0, sizeof *t);
                t->name = name;
                p.tensor = name;
                if ((s = parse_tensor(&p, t))) goto fail;
                p.tensor = NULL;
            }
            skip_ws(&p);
            int c = peek(&p);
            if (c == '}') {
                p.pos++;
                break;
            }
            if (c != ',') {
                char b[8];
                s = jp_fail(&p, "expected ',' or '}', found %s", found(&p, b));
                goto fail;
            }
            p.pos++;
        }
    }
    skip_ws(&p);
    if (p.pos != p.n) {
        s = jp_fail(&p, "unexpected data after the header object");
        goto fail;
    }
    if ((s = check_layout(st, file, err))) goto fail;
    st->path = strdup(file);
    if (!st->path) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file);
        goto fail;
    }
    if (len == file_size) st->mem = buf;
    return RQ_OK;
fail:
    rq_st_close(st);
    return s ? s : RQ_EFORMAT;
}

rq_status rq_st_parse_header(const uint8_t *buf, size_t len, uint64_t file_size, rq_safetensors *st, rq_err *err) {
    if (!st) return rq_err_set(err, RQ_EINVAL, "rq_st_parse_header: NULL table");
    return parse_impl(buf, len, file_size, "<buffer>", st, err);
}

rq_status rq_st_open(const char *path, rq_safetensors *st, rq_err *err) {
    if (!st) return rq_err_set(err, RQ_EINVAL, "rq_st_open: NULL table");
    memset(st, 0, sizeof *st);
    if (!path) return rq_err_set(err, RQ_EINVAL, "rq_st_open: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return rq_err_set(err, RQ_EIO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    uint8_t pre[8];
    if (size < 8 || fread(pre, 1, 8, f) != 8) {
        fclose(f);
        return rq_err_set(err, RQ_EFORMAT, "%s: file is shorter than 8 bytes: not a safetensors file", path);
    }
    uint64_t N = 0;
    for (int i = 7; i >= 0; i--) N = N << 8 | pre[i];
    /* Size checks before allocating N bytes (parse_impl repeats them). */
    if (N > RQ_ST_MAX_HEADER || N + 8 > size) {
        fclose(f);
        return parse_impl(pre, 8, size, path, st, err);
    }
    uint8_t *buf = malloc((size_t)N + 8);
    if (!buf) {
        fclose(f);
        return rq_err_set(err, RQ_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte header", path, N);
    }
    memcpy(buf, pre, 8);
    if (fread(buf + 8, 1, (size_t)N, f) != (size_t)N) {
        free(buf);
        fclose(f);
        return rq_err_set(err, RQ_EIO, "%s: read error in the header", path);
    }
    rq_status s = parse_impl(buf, (size_t)N + 8, size, path, st, err);
    st->mem = NULL; /* buf is freed here; reads go through the file */
    free(buf);
    if (s) {
        fclose(f);
        return s;
    }
    st->f = f;
    return RQ_OK;
}

const rq_st_tensor *rq_st_find(const rq_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

/* n elements of raw little-endian data of dtype dt -> float. */
static void convert(rq_st_dtype dt, const uint8_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case RQ_ST_F32: memcpy(&dst[i], src + 4 * i, 4); break;
        case RQ_ST_F16: dst[i] = rq_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8)); break;
        case RQ_ST_BF16: dst[i] = rq_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8)); break;
        case RQ_ST_F64: { double d; memcpy(&d, src + 8 * i, 8); dst[i] = (float)d; break; }
        case RQ_ST_I64: { int64_t v; memcpy(&v, src + 8 * i, 8); dst[i] = (float)v; break; }
        case RQ_ST_I32: { int32_t v; memcpy(&v, src + 4 * i, 4); dst[i] = (float)v; break; }
        default: dst[i] = 0; break;
        }
    }
}

static int little_endian_host(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

rq_status rq_st_read_f32(const rq_safetensors *st, const rq_st_tensor *t, float *out, rq_err *err) {
    if (!st || !t || !out) return rq_err_set(err, RQ_EINVAL, "rq_st_read_f32: NULL argument");
    const char *file = st->path ? st->path : "<buffer>";
    if (t->dtype == RQ_ST_OTHER || t->itemsize <= 0)
        return rq_err_set(err, RQ_EFORMAT, "%s: tensor '%.200s': dtype %s cannot be read as float32", file, t->name,
                          t->dtype_name[0] ? t->dtype_name : "?");
    if (!little_endian_host()) return rq_err_set(err, RQ_EFORMAT, "%s: reading needs a little-endian host", file);
    if (t->end < t->begin || t->end > st->file_size - st->data_start)
        return rq_err_set(err, RQ_EINVAL, "%s: tensor '%.200s': offsets outside the data", file, t->name);
    size_t n = (size_t)((t->end - t->begin) / (uint64_t)t->itemsize);
    if (st->mem) {
        convert(t->dtype, st->mem + st->data_start + t->begin, out, n);
        return RQ_OK;
    }
    if (!st->f) return rq_err_set(err, RQ_EINVAL, "%s: tensor '%.200s': no file or buffer to read from", file, t->name);
    if (fseeko(st->f, (off_t)(st->data_start + t->begin), SEEK_SET) != 0)
        return rq_err_set(err, RQ_EIO, "%s: tensor '%.200s': seek failed: %s", file, t->name, strerror(errno));
    if (t->dtype == RQ_ST_F32) { /* straight into the output */
        if (fread(out, 4, n, st->f) != n)
            return rq_err_set(err, RQ_EIO, "%s: tensor '%.200s': read error (file changed?)", file, t->name);
        return RQ_OK;
    }
    enum { CHUNK = 1 << 16 };
    uint8_t *tmp = malloc((size_t)CHUNK * 8);
    if (!tmp) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", file);
    rq_status s = RQ_OK;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        if (fread(tmp, (size_t)t->itemsize, k, st->f) != k) {
            s = rq_err_set(err, RQ_EIO, "%s: tensor '%.200s': read error (file changed?)", file, t->name);
            break;
        }
        convert(t->dtype, tmp, out + done, k);
        done += k;
    }
    free(tmp);
    return s;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static size_t put_converted(rq_st_dtype dt, const float *src, uint8_t *dst, size_t n) {
    if (dt == RQ_ST_F32) {
        memcpy(dst, src, n * 4);
        return n * 4;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = dt == RQ_ST_F16 ? rq_f32_to_f16(src[i]) : rq_f32_to_bf16(src[i]);
        dst[2 * i] = (uint8_t)(h & 0xff);
        dst[2 * i + 1] = (uint8_t)(h >> 8);
    }
    return n * 2;
}

rq_status rq_st_write(const char *path, int n, const char *const *names, const int *ndims,
                      const int64_t *const *shapes, const float *const *data, rq_st_dtype dtype, rq_err *err) {
    if (!path || n < 0 || (n > 0 && (!names || !ndims || !shapes || !data)))
        return rq_err_set(err, RQ_EINVAL, "rq_st_write: bad arguments");
    if (dtype != RQ_ST_F32 && dtype != RQ_ST_F16 && dtype != RQ_ST_BF16)
        return rq_err_set(err, RQ_EINVAL, "%s: can only write F32, F16 or BF16, not %s", path, rq_st_dtype_name(dtype));
    if (!little_endian_host()) return rq_err_set(err, RQ_EINVAL, "%s: writing needs a little-endian host", path);
    int isz = dtype == RQ_ST_F32 ? 4 : 2;

    /* Header JSON, tensors in the given order, contiguous. */
    sbuf h = {0};
    const char *meta = "{\"__metadata__\":{\"format\":\"pt\"}";
    sb_put(&h, meta, strlen(meta));
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i];
        if (!nm || !nm[0] || !strcmp(nm, "__metadata__") || utf8_check((const uint8_t *)nm, strlen(nm)) != strlen(nm)) {
            free(h.s);
            return rq_err_set(err, RQ_EINVAL, "%s: tensor %d: name must be non-empty UTF-8 and not __metadata__", path, i);
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(names[j], nm)) {
                free(h.s);
                return rq_err_set(err, RQ_EINVAL, "%s: tensor '%.200s' given twice", path, nm);
            }
        if (ndims[i] < 0 || ndims[i] > RQ_ST_MAX_DIMS || (ndims[i] > 0 && !shapes[i]) || !data[i]) {
            free(h.s);
            return rq_err_set(err, RQ_EINVAL, "%s: tensor '%.200s': bad ndim %d or NULL shape/data", path, nm, ndims[i]);
        }
        uint64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            if (shapes[i][d] < 0 || (shapes[i][d] && numel > (UINT64_C(1) << 60) / (uint64_t)shapes[i][d])) {
                free(h.s);
                return rq_err_set(err, RQ_EINVAL, "%s: tensor '%.200s': bad dim %d = %" PRId64, path, nm, d, shapes[i][d]);
            }
            numel *= (uint64_t)shapes[i][d];
        }
        sb_put(&h, ",", 1);
        sb_json_string(&h, nm);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", rq_st_dtype_name(dtype));
        for (int d = 0; d < ndims[i]; d++) sb_printf(&h, d ? ",%" PRId64 : "%" PRId64, shapes[i][d]);
        sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + numel * (uint64_t)isz);
        off += numel * (uint64_t)isz;
    }
    sb_put(&h, "}", 1);
    while ((8 + h.n) % 8) sb_put(&h, " ", 1); /* align the data (as the reference writer does) */
    if (h.oom) {
        free(h.s);
        return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
    }

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(h.s);
        return rq_err_set(err, RQ_EINVAL, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(h.s);
        return rq_err_set(err, RQ_EIO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    }
    rq_status s = RQ_OK;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(h.s, 1, h.n, f) != h.n) s = RQ_EIO;
    free(h.s);
    enum { CHUNK = 1 << 16 };
    uint8_t *buf = s ? NULL : malloc((size_t)CHUNK * 4);
    if (!s && !buf) s = RQ_ENOMEM;
    for (int i = 0; i < n && !s; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) numel *= (uint64_t)shapes[i][d];
        for (uint64_t done = 0; done < numel && !s;) {
            size_t k = numel - done < CHUNK ? (size_t)(numel - done) : CHUNK;
            size_t bytes = put_converted(dtype, data[i] + done, buf, k);
            if (fwrite(buf, 1, bytes, f) != bytes) s = RQ_EIO;
            done += k;
        }
    }
    free(buf);
    if (!s && (fflush(f) != 0 || fsync(fileno(f)) != 0)) s = RQ_EIO;
    if (fclose(f) != 0 && !s) s = RQ_EIO;
    if (!s && rename(tmp, path) != 0) s = RQ_EIO;
    if (s) {
        int e = errno;
        unlink(tmp);
        if (s == RQ_ENOMEM) return rq_err_set(err, s, "%s: out of memory", path);
        return rq_err_set(err, s, "%s: write failed: %s", path, strerror(e));
    }
    return RQ_OK;
}
