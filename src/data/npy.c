/* npy.c: NumPy .npy reader (see robuq/npy.h).
 *
 * Format: "\x93NUMPY", major, minor, header length (uint16 LE for v1,
 * uint32 LE for v2/v3), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (10, 4, 32, 32), }
 * padded with spaces to a multiple of 64 bytes, then the raw data. */
#include "robuq/npy.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Find the value after 'key': in the dict text; NULL if absent. */
static const char *dict_value(const char *hdr, const char *key) {
    char pat[32];
    const char *quotes = "'\"";
    for (int q = 0; q < 2; q++) {
        snprintf(pat, sizeof pat, "%c%s%c", quotes[q], key, quotes[q]);
        const char *p = strstr(hdr, pat);
        if (!p) continue;
        p += strlen(pat);
        while (isspace((unsigned char)*p)) p++;
        if (*p != ':') return NULL;
        p++;
        while (isspace((unsigned char)*p)) p++;
        return p;
    }
    return NULL;
}

static int is_little_endian_host(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

rq_status rq_npy_header_read(const char *path, rq_npy_header *hdr, rq_err *err) {
    if (!path || !hdr) return rq_err_set(err, RQ_EINVAL, "rq_npy_header_read: bad arguments");
    memset(hdr, 0, sizeof *hdr);
    if (!is_little_endian_host())
        return rq_err_set(err, RQ_EFORMAT, "%s: .npy reading needs a little-endian host", path);
    FILE *f = fopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    rq_status s = RQ_OK;
    char *text = NULL;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: not a .npy file (bad magic)%s", path,
                       (got >= 2 && pre[0] == 'P' && pre[1] == 'K') ? "; .npz archives are not supported" : "");
        goto done;
    }
    int major = pre[6];
    long hlen, off;
    if (major == 1) {
        hlen = pre[8] | (long)pre[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: truncated .npy header", path);
            goto done;
        }
        hlen = pre[8] | (long)pre[9] << 8 | (long)pre[10] << 16 | (long)pre[11] << 24;
        off = 12;
    } else {
        s = rq_err_set(err, RQ_EFORMAT, "%s: .npy format version %d not supported", path, major);
        goto done;
    }
    if (hlen <= 0 || hlen > (1L << 20)) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: bad .npy header length %ld", path, hlen);
        goto done;
    }
    text = malloc((size_t)hlen + 1);
    if (!text) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((long)fread(text, 1, (size_t)hlen, f) != hlen) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    text[hlen] = '\0';

    /* descr */
    const char *v = dict_value(text, "descr");
    if (!v || (*v != '\'' && *v != '"')) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: .npy header has no 'descr' string (structured dtypes are not supported)",
                       path);
        goto done;
    }
    char q = *v++;
    size_t k = 0;
    while (*v && *v != q && k < sizeof hdr->descr - 1) hdr->descr[k++] = *v++;
    hdr->descr[k] = '\0';
    const char *d = hdr->descr;
    if (d[0] == '>' && strcmp(d + 1, "u1") != 0 && strcmp(d + 1, "i1") != 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: big-endian dtype '%s' not supported (use '<' byte order)", path, d);
        goto done;
    }
    const char *t = (d[0] == '<' || d[0] == '|' || d[0] == '=' || d[0] == '>') ? d + 1 : d;
    if (!strcmp(t, "f2")) hdr->itemsize = 2;
    else if (!strcmp(t, "f4") || !strcmp(t, "i4")) hdr->itemsize = 4;
    else if (!strcmp(t, "f8") || !strcmp(t, "i8")) hdr->itemsize = 8;
    else if (!strcmp(t, "u1") || !strcmp(t, "i1")) hdr->itemsize = 1;
    else {
        s = rq_err_set(err, RQ_EFORMAT, "%s: dtype '%s' not supported (f2, f4, f8, i4, i8, u1, i1)", path, d);
        goto done;
    }
    /* fortran_order */
    v = dict_value(text, "fortran_order");
    if (!v || strncmp(v, "False", 5) != 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: %s; save the array in C order (numpy.ascontiguousarray)",
                       path, v ? "fortran_order arrays are not supported" : "no 'fortran_order' in header");
        goto done;
    }
    /* shape: "(a, b, c)" or "(a,)" or "()" */
    v = dict_value(text, "shape");
    if (!v || *v != '(') {
        s = rq_err_set(err, RQ_EFORMAT, "%s: .npy header has no 'shape' tuple", path);
        goto done;
    }
    v++;
    hdr->numel = 1;
    for (;;) {
        while (isspace((unsigned char)*v) || *v == ',') v++;
        if (*v == ')') break;
        if (!isdigit((unsigned char)*v) || hdr->ndim == RQ_NPY_MAX_DIMS) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: bad 'shape' in .npy header", path);
            goto done;
        }
        char *end;
        long dim = strtol(v, &end, 10);
        v = end;
        if (*v == 'L') v++; /* Python 2 longs */
        hdr->shape[hdr->ndim++] = dim;
        if (dim > 0 && hdr->numel > (1L << 40) / dim) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: .npy array too large", path);
            goto done;
        }
        hdr->numel *= dim;
    }
    hdr->data_offset = off + hlen;

    /* The file must hold exactly the data the header promises. */
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        s = rq_err_set(err, RQ_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    long want = hdr->numel * hdr->itemsize, have = (long)st.st_size - hdr->data_offset;
    if (have < want)
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated: expected %ld bytes of data, file has %ld", path,
                       want, have);
    else if (have > want)
        s = rq_err_set(err, RQ_EFORMAT, "%s: %ld unexpected bytes after the data", path, have - want);
done:
    free(text);
    fclose(f);
    return s;
}

/* IEEE half -> float (handles subnormals, inf, nan). */
static float half_to_float(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 0x400), e - 25);
    return sign ? -v : v;
}

/* Read the raw data block (numel*itemsize bytes) after a good header. */
static rq_status read_raw(const char *path, const rq_npy_header *h, void **raw, rq_err *err) {
    size_t bytes = (size_t)(h->numel * h->itemsize);
    *raw = malloc(bytes ? bytes : 1);
    if (!*raw) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory for %zu bytes", path, bytes);
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(*raw);
        *raw = NULL;
        return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    rq_status s = RQ_OK;
    if (fseek(f, h->data_offset, SEEK_SET) != 0 || fread(*raw, 1, bytes, f) != bytes) {
        s = rq_err_set(err, RQ_EIO, "%s: read error", path);
        free(*raw);
        *raw = NULL;
    }
    fclose(f);
    return s;
}

enum { DT_F2, DT_F4, DT_F8, DT_I4, DT_I8, DT_U1, DT_I1 };

/* dtype code of a validated header (byte order already checked). */
static int dtype_code(const rq_npy_header *h) {
    const char *d = h->descr;
    const char *t = (d[0] == '<' || d[0] == '|' || d[0] == '=' || d[0] == '>') ? d + 1 : d;
    static const char *names[] = {"f2", "f4", "f8", "i4", "i8", "u1", "i1"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(t, names[i])) return i;
    return -1;
}

rq_status rq_npy_read_f32(const char *path, float **data, rq_npy_header *hdr, rq_err *err) {
    if (!path || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_read_f32: bad arguments");
    *data = NULL;
    rq_npy_header h;
    rq_status s = rq_npy_header_read(path, &h, err);
    if (s != RQ_OK) return s;
    void *raw;
    if ((s = read_raw(path, &h, &raw, err)) != RQ_OK) return s;
    const int dt = dtype_code(&h);
    if (dt == DT_F4) { /* already float32: hand the buffer over */
        *data = raw;
        if (hdr) *hdr = h;
        return RQ_OK;
    }
    float *out = malloc(sizeof(float) * (size_t)(h.numel ? h.numel : 1));
    if (!out) {
        free(raw);
        return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
    }
    const char *b = raw;
    for (long i = 0; i < h.numel; i++) {
        switch (dt) {
        case DT_F2: { uint16_t v; memcpy(&v, b + 2 * i, 2); out[i] = half_to_float(v); break; }
        case DT_F8: { double v; memcpy(&v, b + 8 * i, 8); out[i] = (float)v; break; }
        case DT_I4: { int32_t v; memcpy(&v, b + 4 * i, 4); out[i] = (float)v; break; }
        case DT_I8: { int64_t v; memcpy(&v, b + 8 * i, 8); out[i] = (float)v; break; }
        case DT_U1: out[i] = (float)(uint8_t)b[i]; break;
        default: out[i] = (float)(int8_t)b[i]; break;
        }
    }
    free(raw);
    *data = out;
    if (hdr) *hdr = h;
    return RQ_OK;
}

rq_status rq_npy_read_i32(const char *path, int32_t **data, rq_npy_header *hdr, rq_err *err) {
    if (!path || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_read_i32: bad arguments");
    *data = NULL;
    rq_npy_header h;
    rq_status s = rq_npy_header_read(path, &h, err);
    if (s != RQ_OK) return s;
    const int dt = dtype_code(&h);
    if (dt != DT_I4 && dt != DT_I8 && dt != DT_U1 && dt != DT_I1)
        return rq_err_set(err, RQ_EFORMAT, "%s: dtype '%s' is not an integer type (need i4, i8, u1 or i1)",
                          path, h.descr);
    void *raw;
    if ((s = read_raw(path, &h, &raw, err)) != RQ_OK) return s;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(h.numel ? h.numel : 1));
    if (!out) {
        free(raw);
        return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
    }
    const char *b = raw;
    for (long i = 0; i < h.numel; i++) {
        int64_t v;
        if (dt == DT_I8) memcpy(&v, b + 8 * i, 8);
        else if (dt == DT_I4) { int32_t x; memcpy(&x, b + 4 * i, 4); v = x; }
        else if (dt == DT_U1) v = (uint8_t)b[i];
        else v = (int8_t)b[i];
        if (v < INT32_MIN || v > INT32_MAX) {
            free(raw);
            free(out);
            return rq_err_set(err, RQ_EFORMAT, "%s: value %lld at index %ld does not fit in int32", path,
                              (long long)v, i);
        }
        out[i] = (int32_t)v;
    }
    free(raw);
    *data = out;
    if (hdr) *hdr = h;
    return RQ_OK;
}
