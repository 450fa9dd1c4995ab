/* npy.c: NumPy .npy / .npz readers and per-sample folders (see robuq/npy.h).
 *
 * .npy: "\x93NUMPY", major, minor, header length (uint16 LE for v1, uint32
 * LE for v2/v3), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (10, 4, 32, 32), }
 * padded with spaces to a multiple of 64 bytes, then the raw data.
 *
 * .npz: a zip archive of NAME.npy members. Layout used here:
 *   local header  "PK\3\4" ... name, extra, data          (per member)
 *   central dir   "PK\1\2" ... name, extra, comment       (per member)
 *   [ZIP64 end record "PK\6\6" + locator "PK\6\7"]
 *   end record    "PK\5\6" ... comment (<= 65535 bytes)
 * Sizes and offsets come from the central directory (ZIP64 extra field 0x0001
 * when a 32-bit field is 0xFFFFFFFF); local headers only locate the data. */
#include "robuq/npy.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* ------------------------------------------------------------ .npy header */

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

/* Bytes of the fixed prefix and the dict length, from the first bytes of
 * an .npy image (at least 12 available, or fewer if the image is shorter).
 * Returns 0 and sets *need = prefix + dict length, or sets the error. */
static rq_status npy_prefix(const uint8_t *pre, size_t avail, const char *name, long *off, long *hlen,
                            rq_err *err) {
    if (avail < 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return rq_err_set(err, RQ_EFORMAT, "%s: not a .npy file (bad magic)%s", name,
                          (avail >= 2 && pre[0] == 'P' && pre[1] == 'K')
                              ? "; this is an .npz archive: give ARCHIVE.npz:NAME (robuq-data) or use rq_npz_read_*"
                              : "");
    int major = pre[6];
    if (major == 1) {
        *hlen = pre[8] | (long)pre[9] << 8;
        *off = 10;
    } else if (major == 2 || major == 3) {
        if (avail < 12) return rq_err_set(err, RQ_EFORMAT, "%s: truncated .npy header", name);
        *hlen = pre[8] | (long)pre[9] << 8 | (long)pre[10] << 16 | (long)pre[11] << 24;
        *off = 12;
    } else {
        return rq_err_set(err, RQ_EFORMAT, "%s: .npy format version %d not supported", name, major);
    }
    if (*hlen <= 0 || *hlen > (1L << 20)) return rq_err_set(err, RQ_EFORMAT, "%s: bad .npy header length %ld", name, *hlen);
    return RQ_OK;
}

/* Parse the dict of an .npy image whose first off + hlen bytes are in buf;
 * total = length of the whole image (the data must fill it exactly). */
static rq_status npy_parse_dict(const uint8_t *buf, long off, long hlen, uint64_t total, const char *name,
                                rq_npy_header *hdr, rq_err *err) {
    char *text = malloc((size_t)hlen + 1);
    if (!text) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", name);
    memcpy(text, buf + off, (size_t)hlen);
    text[hlen] = '\0';
    rq_status s = RQ_OK;
    const char *v = dict_value(text, "descr");
    if (!v || (*v != '\'' && *v != '"')) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: .npy header has no 'descr' string (structured dtypes are not supported)",
                       name);
        goto done;
    }
    char q = *v++;
    size_t k = 0;
    while (*v && *v != q && k < sizeof hdr->descr - 1) hdr->descr[k++] = *v++;
    hdr->descr[k] = '\0';
    const char *d = hdr->descr;
    if (d[0] == '>' && strcmp(d + 1, "u1") != 0 && strcmp(d + 1, "i1") != 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: big-endian dtype '%s' not supported (use '<' byte order)", name, d);
        goto done;
    }
    const char *t = (d[0] == '<' || d[0] == '|' || d[0] == '=' || d[0] == '>') ? d + 1 : d;
    if (!strcmp(t, "f2")) hdr->itemsize = 2;
    else if (!strcmp(t, "f4") || !strcmp(t, "i4")) hdr->itemsize = 4;
    else if (!strcmp(t, "f8") || !strcmp(t, "i8")) hdr->itemsize = 8;
    else if (!strcmp(t, "u1") || !strcmp(t, "i1")) hdr->itemsize = 1;
    else {
        s = rq_err_set(err, RQ_EFORMAT, "%s: dtype '%s' not supported (f2, f4, f8, i4, i8, u1, i1)", name, d);
        goto done;
    }
    v = dict_value(text, "fortran_order");
    if (!v || strncmp(v, "False", 5) != 0) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: %s; save the array in C order (numpy.ascontiguousarray)", name,
                       v ? "fortran_order arrays are not supported" : "no 'fortran_order' in header");
        goto done;
    }
    /* shape: "(a, b, c)" or "(a,)" or "()" */
    v = dict_value(text, "shape");
    if (!v || *v != '(') {
        s = rq_err_set(err, RQ_EFORMAT, "%s: .npy header has no 'shape' tuple", name);
        goto done;
    }
    v++;
    hdr->numel = 1;
    for (;;) {
        while (isspace((unsigned char)*v) || *v == ',') v++;
        if (*v == ')') break;
        if (!isdigit((unsigned char)*v) || hdr->ndim == RQ_NPY_MAX_DIMS) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: bad 'shape' in .npy header", name);
            goto done;
        }
        char *end;
        errno = 0;
        long dim = strtol(v, &end, 10);
        v = end;
        if (*v == 'L') v++; /* Python 2 longs */
        if (errno || (dim > 0 && hdr->numel > (1L << 40) / dim)) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: .npy array too large", name);
            goto done;
        }
        hdr->shape[hdr->ndim++] = dim;
        hdr->numel *= dim;
    }
    hdr->data_offset = off + hlen;
    /* The image must hold exactly the data the header promises. */
    long want = hdr->numel * hdr->itemsize, have = (long)total - hdr->data_offset;
    if (have < want)
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated: expected %ld bytes of data, file has %ld", name, want, have);
    else if (have > want)
        s = rq_err_set(err, RQ_EFORMAT, "%s: %ld unexpected bytes after the data", name, have - want);
done:
    free(text);
    return s;
}

rq_status rq_npy_parse(const uint8_t *buf, size_t len, const char *name, rq_npy_header *hdr, rq_err *err) {
    if (!buf || !hdr) return rq_err_set(err, RQ_EINVAL, "rq_npy_parse: bad arguments");
    if (!name) name = "<buffer>";
    memset(hdr, 0, sizeof *hdr);
    if (!is_little_endian_host()) return rq_err_set(err, RQ_EFORMAT, "%s: .npy reading needs a little-endian host", name);
    long off = 0, hlen = 0;
    rq_status s = npy_prefix(buf, len, name, &off, &hlen, err);
    if (s) return s;
    if ((size_t)(off + hlen) > len) return rq_err_set(err, RQ_EFORMAT, "%s: truncated .npy header", name);
    s = npy_parse_dict(buf, off, hlen, len, name, hdr, err);
    if (s) memset(hdr, 0, sizeof *hdr);
    return s;
}

rq_status rq_npy_header_read(const char *path, rq_npy_header *hdr, rq_err *err) {
    if (!path || !hdr) return rq_err_set(err, RQ_EINVAL, "rq_npy_header_read: bad arguments");
    memset(hdr, 0, sizeof *hdr);
    if (!is_little_endian_host()) return rq_err_set(err, RQ_EFORMAT, "%s: .npy reading needs a little-endian host", path);
    FILE *f = fopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    rq_status s = RQ_OK;
    uint8_t pre[12], *buf = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        s = rq_err_set(err, RQ_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    size_t got = fread(pre, 1, sizeof pre, f);
    long off = 0, hlen = 0;
    if ((s = npy_prefix(pre, got, path, &off, &hlen, err))) goto done;
    buf = malloc((size_t)(off + hlen));
    if (!buf) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fseek(f, 0, SEEK_SET) != 0 || fread(buf, 1, (size_t)(off + hlen), f) != (size_t)(off + hlen)) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    s = npy_parse_dict(buf, off, hlen, (uint64_t)st.st_size, path, hdr, err);
done:
    if (s) memset(hdr, 0, sizeof *hdr);
    free(buf);
    fclose(f);
    return s;
}

/* ------------------------------------------------------------ conversion */

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

/* IEEE half -> float (handles subnormals, inf, nan). */
static float half_to_float(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 0x400), e - 25);
    return sign ? -v : v;
}

static void to_f32(int dt, const uint8_t *b, long n, float *out) {
    for (long i = 0; i < n; i++) {
        switch (dt) {
        case DT_F2: { uint16_t v; memcpy(&v, b + 2 * i, 2); out[i] = half_to_float(v); break; }
        case DT_F4: memcpy(&out[i], b + 4 * i, 4); break;
        case DT_F8: { double v; memcpy(&v, b + 8 * i, 8); out[i] = (float)v; break; }
        case DT_I4: { int32_t v; memcpy(&v, b + 4 * i, 4); out[i] = (float)v; break; }
        case DT_I8: { int64_t v; memcpy(&v, b + 8 * i, 8); out[i] = (float)v; break; }
        case DT_U1: out[i] = (float)b[i]; break;
        default: out[i] = (float)(int8_t)b[i]; break;
        }
    }
}

/* Integer dtypes -> int32; returns the index of the first value that does
 * not fit (and its value in *bad), or -1. */
static long to_i32(int dt, const uint8_t *b, long n, int32_t *out, int64_t *bad) {
    for (long i = 0; i < n; i++) {
        int64_t v;
        if (dt == DT_I8) memcpy(&v, b + 8 * i, 8);
        else if (dt == DT_I4) { int32_t x; memcpy(&x, b + 4 * i, 4); v = x; }
        else if (dt == DT_U1) v = b[i];
        else v = (int8_t)b[i];
        if (v < INT32_MIN || v > INT32_MAX) {
            *bad = v;
            return i;
        }
        out[i] = (int32_t)v;
    }
    return -1;
}

static int is_int_dtype(int dt) { return dt == DT_I4 || dt == DT_I8 || dt == DT_U1 || dt == DT_I1; }

/* Convert the data of a validated image (raw = first data byte). */
static rq_status convert_f32(const rq_npy_header *h, const uint8_t *raw, const char *name, float **data, rq_err *err) {
    float *out = malloc(sizeof(float) * (size_t)(h->numel ? h->numel : 1));
    if (!out) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", name);
    to_f32(dtype_code(h), raw, h->numel, out);
    *data = out;
    return RQ_OK;
}

static rq_status convert_i32(const rq_npy_header *h, const uint8_t *raw, const char *name, int32_t **data,
                             rq_err *err) {
    int dt = dtype_code(h);
    if (!is_int_dtype(dt))
        return rq_err_set(err, RQ_EFORMAT, "%s: dtype '%s' is not an integer type (need i4, i8, u1 or i1)", name,
                          h->descr);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(h->numel ? h->numel : 1));
    if (!out) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", name);
    int64_t v;
    long at = to_i32(dt, raw, h->numel, out, &v);
    if (at >= 0) {
        free(out);
        return rq_err_set(err, RQ_EFORMAT, "%s: value %lld at index %ld does not fit in int32", name, (long long)v, at);
    }
    *data = out;
    return RQ_OK;
}

/* Read the raw data block (numel*itemsize bytes) after a good header. */
static rq_status read_raw(const char *path, const rq_npy_header *h, uint8_t **raw, rq_err *err) {
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

rq_status rq_npy_read_f32(const char *path, float **data, rq_npy_header *hdr, rq_err *err) {
    if (!path || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_read_f32: bad arguments");
    *data = NULL;
    rq_npy_header h;
    uint8_t *raw;
    rq_status s = rq_npy_header_read(path, &h, err);
    if (!s) s = read_raw(path, &h, &raw, err);
    if (s) return s;
    if (dtype_code(&h) == DT_F4) { /* already float32: hand the buffer over */
        *data = (float *)(void *)raw;
    } else {
        s = convert_f32(&h, raw, path, data, err);
        free(raw);
    }
    if (!s && hdr) *hdr = h;
    return s;
}

rq_status rq_npy_read_i32(const char *path, int32_t **data, rq_npy_header *hdr, rq_err *err) {
    if (!path || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_read_i32: bad arguments");
    *data = NULL;
    rq_npy_header h;
    rq_status s = rq_npy_header_read(path, &h, err);
    if (s) return s;
    if (!is_int_dtype(dtype_code(&h)))
        return rq_err_set(err, RQ_EFORMAT, "%s: dtype '%s' is not an integer type (need i4, i8, u1 or i1)", path,
                          h.descr);
    uint8_t *raw;
    if ((s = read_raw(path, &h, &raw, err))) return s;
    s = convert_i32(&h, raw, path, data, err);
    free(raw);
    if (!s && hdr) *hdr = h;
    return s;
}

rq_status rq_npy_mem_read_f32(const uint8_t *buf, size_t len, const char *name, float **data, rq_npy_header *hdr,
                              rq_err *err) {
    if (!buf || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_mem_read_f32: bad arguments");
    *data = NULL;
    rq_npy_header h;
    rq_status s = rq_npy_parse(buf, len, name, &h, err);
    if (!s) s = convert_f32(&h, buf + h.data_offset, name ? name : "<buffer>", data, err);
    if (!s && hdr) *hdr = h;
    return s;
}

rq_status rq_npy_mem_read_i32(const uint8_t *buf, size_t len, const char *name, int32_t **data,
                              rq_npy_header *hdr, rq_err *err) {
    if (!buf || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_mem_read_i32: bad arguments");
    *data = NULL;
    rq_npy_header h;
    rq_status s = rq_npy_parse(buf, len, name, &h, err);
    if (!s) s = convert_i32(&h, buf + h.data_offset, name ? name : "<buffer>", data, err);
    if (!s && hdr) *hdr = h;
    return s;
}

/* ------------------------------------------------------------------ .npz */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* n bytes at offset off of f into buf. */
static int read_at(FILE *f, uint64_t off, void *buf, size_t n) {
    if (fseeko(f, (off_t)off, SEEK_SET) != 0) return -1;
    return fread(buf, 1, n, f) == n ? 0 : -1;
}

void rq_npz_close(rq_npz *z) {
    if (!z) return;
    for (int i = 0; z->members && i < z->n; i++) free(z->members[i].name);
    free(z->members);
    free(z->path);
    memset(z, 0, sizeof *z);
}

static int cmp_offset(const void *a, const void *b) {
    const rq_npz_member *x = *(rq_npz_member *const *)a, *y = *(rq_npz_member *const *)b;
    return x->local_offset < y->local_offset ? -1 : x->local_offset > y->local_offset;
}

/* Find the end-of-central-directory record (and the ZIP64 one) and return
 * the central directory's offset, size, entry count and where it must end. */
static rq_status find_directory(FILE *f, const char *path, uint64_t size, uint64_t *cd_off, uint64_t *cd_size,
                                uint64_t *count, uint64_t *cd_end, rq_err *err) {
    size_t tail = size < 22 + 65535 ? (size_t)size : 22 + 65535;
    if (size < 22) return rq_err_set(err, RQ_EFORMAT, "%s: not a zip/.npz archive (shorter than 22 bytes)", path);
    uint8_t *b = malloc(tail);
    if (!b) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
    if (read_at(f, size - tail, b, tail)) {
        free(b);
        return rq_err_set(err, RQ_EIO, "%s: read error", path);
    }
    long at = -1;
    for (long i = (long)tail - 22; i >= 0; i--) /* the record whose comment ends the file */
        if (!memcmp(b + i, "PK\5\6", 4) && (size_t)i + 22 + rd16(b + i + 20) == tail) {
            at = i;
            break;
        }
    if (at < 0) {
        free(b);
        return rq_err_set(err, RQ_EFORMAT, "%s: no zip end-of-central-directory record: not an .npz archive, or truncated",
                          path);
    }
    const uint8_t *e = b + at;
    uint64_t eocd = size - tail + (uint64_t)at;
    uint32_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
    uint64_t n_disk = rd16(e + 8);
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    *cd_end = eocd;
    free(b);
    /* ZIP64: a locator right before the end record points at the ZIP64 end record. */
    uint8_t loc[20], z64[56];
    if (eocd >= 20 && !read_at(f, eocd - 20, loc, 20) && !memcmp(loc, "PK\6\7", 4)) {
        uint64_t z64_off = rd64(loc + 8);
        if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
            return rq_err_set(err, RQ_EFORMAT, "%s: multi-disk zip archives are not supported", path);
        if (z64_off + 56 > eocd - 20 || read_at(f, z64_off, z64, 56) || memcmp(z64, "PK\6\6", 4))
            return rq_err_set(err, RQ_EFORMAT, "%s: bad ZIP64 end-of-central-directory record at byte %llu", path,
                              (unsigned long long)z64_off);
        disk = rd32(z64 + 16);
        cd_disk = rd32(z64 + 20);
        n_disk = rd64(z64 + 24);
        *count = rd64(z64 + 32);
        *cd_size = rd64(z64 + 40);
        *cd_off = rd64(z64 + 48);
        *cd_end = z64_off;
    } else if (*count == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
        return rq_err_set(err, RQ_EFORMAT, "%s: ZIP64 archive without a ZIP64 locator", path);
    }
    if (disk != 0 || cd_disk != 0 || n_disk != *count)
        return rq_err_set(err, RQ_EFORMAT, "%s: multi-disk zip archives are not supported", path);
    if (*cd_off > *cd_end || *cd_size > *cd_end - *cd_off)
        return rq_err_set(err, RQ_EFORMAT, "%s: central directory [%llu, +%llu) runs past its end record at %llu", path,
                          (unsigned long long)*cd_off, (unsigned long long)*cd_size, (unsigned long long)*cd_end);
    /* each central entry takes at least 46 bytes */
    if (*count > *cd_size / 46)
        return rq_err_set(err, RQ_EFORMAT, "%s: %llu entries cannot fit a %llu-byte central directory", path,
                          (unsigned long long)*count, (unsigned long long)*cd_size);
    return RQ_OK;
}

/* One central directory entry at cd[pos] (pos advanced); fills m. */
static rq_status parse_entry(FILE *f, const char *path, const uint8_t *cd, uint64_t cd_size, uint64_t *pos,
                             uint64_t cd_off, rq_npz_member *m, rq_err *err) {
    uint64_t p = *pos;
    if (cd_size - p < 46 || memcmp(cd + p, "PK\1\2", 4))
        return rq_err_set(err, RQ_EFORMAT, "%s: bad central directory entry at byte %llu", path,
                          (unsigned long long)(cd_off + p));
    const uint8_t *e = cd + p;
    uint16_t flags = rd16(e + 8), method = rd16(e + 10), nlen = rd16(e + 28), xlen = rd16(e + 30), clen = rd16(e + 32);
    uint32_t disk = rd16(e + 34);
    uint64_t csize = rd32(e + 20), usize = rd32(e + 24), loff = rd32(e + 42);
    if (cd_size - p - 46 < (uint64_t)nlen + xlen + clen)
        return rq_err_set(err, RQ_EFORMAT, "%s: central directory entry at byte %llu runs past the directory", path,
                          (unsigned long long)(cd_off + p));
    m->name = malloc((size_t)nlen + 1);
    if (!m->name) return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
    memcpy(m->name, e + 46, nlen);
    m->name[nlen] = '\0';
    if (memchr(m->name, '\0', nlen)) return rq_err_set(err, RQ_EFORMAT, "%s: member name with a NUL byte", path);
    /* ZIP64 extra field: the 64-bit values of the fields set to all ones, in order */
    const uint8_t *x = e + 46 + nlen, *xend = x + xlen;
    while (xend - x >= 4) {
        uint16_t id = rd16(x), sz = rd16(x + 2);
        if (xend - x - 4 < sz) return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': bad extra field", path, m->name);
        if (id == 0x0001) {
            const uint8_t *q = x + 4, *qend = q + sz;
            uint64_t *fields[3] = {&usize, &csize, &loff};
            for (int k = 0; k < 3; k++) {
                if (*fields[k] != 0xffffffffu) continue;
                if (qend - q < 8) return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': short ZIP64 extra field", path, m->name);
                *fields[k] = rd64(q);
                q += 8;
            }
            if (disk == 0xffff && qend - q >= 4) disk = rd32(q);
        }
        x += 4 + sz;
    }
    if (flags & 1) return rq_err_set(err, RQ_EFORMAT, "%s: member '%s' is encrypted", path, m->name);
    if (method != 0 && method != 8)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': compression method %u not supported (stored or deflate)",
                          path, m->name, method);
    if (disk != 0) return rq_err_set(err, RQ_EFORMAT, "%s: multi-disk zip archives are not supported", path);
    if (method == 0 && csize != usize)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s' is stored but its sizes differ (%llu vs %llu)", path,
                          m->name, (unsigned long long)csize, (unsigned long long)usize);
    if (method == 8 && usize > csize * 1032 + 1024) /* deflate cannot expand more than ~1032:1 */
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s' claims %llu bytes from %llu compressed", path, m->name,
                          (unsigned long long)usize, (unsigned long long)csize);
    /* local header: same name; the data follows its name and extra field */
    uint8_t lh[30];
    if (loff > cd_off || cd_off - loff < 30 || read_at(f, loff, lh, 30) || memcmp(lh, "PK\3\4", 4))
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': no local header at byte %llu", path, m->name,
                          (unsigned long long)loff);
    uint16_t lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
    uint64_t data = loff + 30 + lnlen + lxlen;
    int name_ok = lnlen == nlen;
    if (name_ok && nlen) {
        char *ln = malloc(nlen);
        name_ok = ln && !read_at(f, loff + 30, ln, nlen) && !memcmp(ln, m->name, nlen);
        free(ln);
    }
    if (!name_ok)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': local header name differs from the central directory",
                          path, m->name);
    if (data > cd_off || csize > cd_off - data)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': data [%llu, +%llu) runs into the central directory at %llu",
                          path, m->name, (unsigned long long)data, (unsigned long long)csize,
                          (unsigned long long)cd_off);
    m->method = method;
    m->crc = rd32(e + 16);
    m->comp_size = csize;
    m->size = usize;
    m->data_offset = data;
    m->local_offset = loff;
    *pos = p + 46 + nlen + xlen + clen;
    return RQ_OK;
}

rq_status rq_npz_open(const char *path, rq_npz *z, rq_err *err) {
    if (!z) return rq_err_set(err, RQ_EINVAL, "rq_npz_open: NULL archive");
    memset(z, 0, sizeof *z);
    if (!path) return rq_err_set(err, RQ_EINVAL, "rq_npz_open: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    uint8_t *cd = NULL;
    rq_npz_member **order = NULL;
    uint64_t cd_off = 0, cd_size = 0, count = 0, cd_end = 0;
    rq_status s = RQ_OK;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = rq_err_set(err, RQ_EIO, "%s: not a regular file", path);
        goto done;
    }
    z->file_size = (uint64_t)sb.st_size;
    if ((s = find_directory(f, path, z->file_size, &cd_off, &cd_size, &count, &cd_end, err))) goto done;
    cd = malloc(cd_size ? (size_t)cd_size : 1);
    z->members = calloc(count ? (size_t)count : 1, sizeof *z->members);
    z->path = strdup(path);
    if (!cd || !z->members || !z->path) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (read_at(f, cd_off, cd, (size_t)cd_size)) {
        s = rq_err_set(err, RQ_EIO, "%s: read error in the central directory", path);
        goto done;
    }
    uint64_t pos = 0;
    for (uint64_t i = 0; i < count; i++) {
        s = parse_entry(f, path, cd, cd_size, &pos, cd_off, &z->members[i], err);
        z->n = (int)i + 1; /* so close() frees this name too */
        if (s) goto done;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(z->members[j].name, z->members[i].name)) {
                s = rq_err_set(err, RQ_EFORMAT, "%s: member '%s' appears twice", path, z->members[i].name);
                goto done;
            }
    }
    if (pos != cd_size) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: %llu stray bytes in the central directory", path,
                       (unsigned long long)(cd_size - pos));
        goto done;
    }
    /* members' data may not overlap (a zip-bomb trick) */
    order = malloc(sizeof *order * (size_t)(z->n ? z->n : 1));
    if (!order) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < z->n; i++) order[i] = &z->members[i];
    qsort(order, (size_t)z->n, sizeof *order, cmp_offset);
    for (int i = 1; i < z->n; i++)
        if (order[i - 1]->data_offset + order[i - 1]->comp_size > order[i]->local_offset) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: members '%s' and '%s' overlap", path, order[i - 1]->name,
                           order[i]->name);
            goto done;
        }
done:
    free(order);
    free(cd);
    fclose(f);
    if (s) rq_npz_close(z);
    return s;
}

const rq_npz_member *rq_npz_find(const rq_npz *z, const char *key) {
    if (!z || !key) return NULL;
    size_t k = strlen(key);
    for (int i = 0; i < z->n; i++) {
        const char *nm = z->members[i].name;
        if (!strcmp(nm, key) || (!strncmp(nm, key, k) && !strcmp(nm + k, ".npy"))) return &z->members[i];
    }
    return NULL;
}

/* Raw inflate of in[0..n) into out[0..size) with exact-size checks; zlib's
 * counters are 32-bit, so input and output are handed over in pieces. */
static rq_status inflate_all(const uint8_t *in, uint64_t n, uint8_t *out, uint64_t size, const char *path,
                             const char *member, rq_err *err) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) return rq_err_set(err, RQ_ENOMEM, "%s: zlib init failed", path);
    const uint64_t piece = 1u << 30;
    uint64_t in_given = 0, out_given = 0;
    uint8_t probe[1]; /* one byte beyond the declared size: must stay unused */
    int probing = 0, r;
    rq_status s = RQ_OK;
    for (;;) {
        if (zs.avail_in == 0 && in_given < n) {
            zs.next_in = (Bytef *)(uintptr_t)(in + in_given);
            zs.avail_in = (uInt)(n - in_given < piece ? n - in_given : piece);
            in_given += zs.avail_in;
        }
        if (zs.avail_out == 0) {
            if (out_given < size) {
                zs.next_out = out + out_given;
                zs.avail_out = (uInt)(size - out_given < piece ? size - out_given : piece);
                out_given += zs.avail_out;
            } else {
                zs.next_out = probe;
                zs.avail_out = 1;
                probing = 1;
            }
        }
        r = inflate(&zs, Z_NO_FLUSH);
        if (probing && zs.avail_out == 0) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: member '%s' inflates to more than its declared %llu bytes", path,
                           member, (unsigned long long)size);
            break;
        }
        if (r == Z_STREAM_END) break;
        if (r == Z_BUF_ERROR && zs.avail_in == 0 && in_given == n) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: member '%s': truncated deflate stream", path, member);
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: member '%s': corrupt deflate data (%s)", path, member,
                           zs.msg ? zs.msg : "zlib error");
            break;
        }
    }
    uint64_t produced = probing ? size : out_given - zs.avail_out, consumed = in_given - zs.avail_in;
    inflateEnd(&zs);
    if (s) return s;
    if (produced != size)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s' inflates to %llu bytes, declared %llu", path, member,
                          (unsigned long long)produced, (unsigned long long)size);
    if (consumed != n)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s': %llu bytes after the end of the deflate stream", path,
                          member, (unsigned long long)(n - consumed));
    return RQ_OK;
}

rq_status rq_npz_read_member(const rq_npz *z, const rq_npz_member *m, uint8_t **buf, size_t *len, rq_err *err) {
    if (!z || !m || !buf || !len) return rq_err_set(err, RQ_EINVAL, "rq_npz_read_member: NULL argument");
    *buf = NULL;
    *len = 0;
    if (m->size > (uint64_t)SIZE_MAX / 2 || m->comp_size > (uint64_t)SIZE_MAX / 2)
        return rq_err_set(err, RQ_EFORMAT, "%s: member '%s' too large", z->path, m->name);
    FILE *f = fopen(z->path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot open: %s", z->path, strerror(errno));
    rq_status s = RQ_OK;
    uint8_t *comp = malloc(m->comp_size ? (size_t)m->comp_size : 1);
    uint8_t *out = NULL;
    if (!comp) {
        s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for member '%s'", z->path, m->name);
        goto done;
    }
    if (read_at(f, m->data_offset, comp, (size_t)m->comp_size)) {
        s = rq_err_set(err, RQ_EIO, "%s: member '%s': read error (file changed?)", z->path, m->name);
        goto done;
    }
    if (m->method == 0) {
        out = comp;
        comp = NULL;
    } else {
        out = malloc(m->size ? (size_t)m->size : 1);
        if (!out) {
            s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory for member '%s' (%llu bytes)", z->path, m->name,
                           (unsigned long long)m->size);
            goto done;
        }
        if ((s = inflate_all(comp, m->comp_size, out, m->size, z->path, m->name, err))) goto done;
    }
    /* CRC-32 of the uncompressed bytes, in pieces (zlib takes uInt lengths) */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t at = 0; at < m->size;) {
        uInt k = (uInt)(m->size - at < (1u << 30) ? m->size - at : (1u << 30));
        crc = crc32(crc, out + at, k);
        at += k;
    }
    if ((uint32_t)crc != m->crc) {
        s = rq_err_set(err, RQ_EFORMAT, "%s: member '%s': CRC-32 mismatch (%08x, expected %08x): corrupt archive",
                       z->path, m->name, (unsigned)crc, (unsigned)m->crc);
        goto done;
    }
    *buf = out;
    *len = (size_t)m->size;
    out = NULL;
done:
    free(comp);
    free(out);
    fclose(f);
    return s;
}

/* The member for key, with a message listing the members if absent. */
static rq_status npz_member_bytes(const rq_npz *z, const char *key, uint8_t **buf, size_t *len, char *name,
                                  size_t name_cap, rq_err *err) {
    if (!z || !key) return rq_err_set(err, RQ_EINVAL, "npz read: NULL argument");
    const rq_npz_member *m = rq_npz_find(z, key);
    if (!m) {
        char list[256] = "";
        size_t k = 0;
        for (int i = 0; i < z->n && k < sizeof list - 1; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", z->members[i].name);
        return rq_err_set(err, RQ_EINVAL, "%s: no member '%s' (members: %s)", z->path, key, z->n ? list : "none");
    }
    snprintf(name, name_cap, "%s:%s", z->path, m->name);
    return rq_npz_read_member(z, m, buf, len, err);
}

rq_status rq_npz_read_f32(const rq_npz *z, const char *key, float **data, rq_npy_header *hdr, rq_err *err) {
    if (!data) return rq_err_set(err, RQ_EINVAL, "rq_npz_read_f32: NULL argument");
    *data = NULL;
    uint8_t *buf;
    size_t len;
    char name[1024];
    rq_status s = npz_member_bytes(z, key, &buf, &len, name, sizeof name, err);
    if (s) return s;
    s = rq_npy_mem_read_f32(buf, len, name, data, hdr, err);
    free(buf);
    return s;
}

rq_status rq_npz_read_i32(const rq_npz *z, const char *key, int32_t **data, rq_npy_header *hdr, rq_err *err) {
    if (!data) return rq_err_set(err, RQ_EINVAL, "rq_npz_read_i32: NULL argument");
    *data = NULL;
    uint8_t *buf;
    size_t len;
    char name[1024];
    rq_status s = npz_member_bytes(z, key, &buf, &len, name, sizeof name, err);
    if (s) return s;
    s = rq_npy_mem_read_i32(buf, len, name, data, hdr, err);
    free(buf);
    return s;
}

/* "A.npz:KEY" -> path "A.npz" and key; "A.npz" -> key NULL; else not npz. */
static int split_npz_spec(const char *spec, char *path, size_t cap, const char **key) {
    const char *p = strstr(spec, ".npz");
    while (p && p[4] != '\0' && p[4] != ':') p = strstr(p + 1, ".npz");
    if (!p || (size_t)(p + 4 - spec) >= cap) return 0;
    memcpy(path, spec, (size_t)(p + 4 - spec));
    path[p + 4 - spec] = '\0';
    *key = p[4] == ':' ? p + 5 : NULL;
    return 1;
}

static rq_status load_spec(const char *spec, int as_int, void **data, rq_npy_header *hdr, rq_err *err) {
    if (!spec || !data) return rq_err_set(err, RQ_EINVAL, "rq_npy_load: NULL argument");
    *data = NULL;
    char path[4096];
    const char *key;
    if (!split_npz_spec(spec, path, sizeof path, &key))
        return as_int ? rq_npy_read_i32(spec, (int32_t **)data, hdr, err) : rq_npy_read_f32(spec, (float **)data, hdr, err);
    rq_npz z;
    rq_status s = rq_npz_open(path, &z, err);
    if (s) return s;
    if (!key) {
        if (z.n != 1) {
            s = rq_err_set(err, RQ_EINVAL, "%s: %d members: say which one with %s:NAME", path, z.n, path);
            rq_npz_close(&z);
            return s;
        }
        key = z.members[0].name;
    }
    s = as_int ? rq_npz_read_i32(&z, key, (int32_t **)data, hdr, err) : rq_npz_read_f32(&z, key, (float **)data, hdr, err);
    rq_npz_close(&z);
    return s;
}

rq_status rq_npy_load_f32(const char *spec, float **data, rq_npy_header *hdr, rq_err *err) {
    return load_spec(spec, 0, (void **)data, hdr, err);
}

rq_status rq_npy_load_i32(const char *spec, int32_t **data, rq_npy_header *hdr, rq_err *err) {
    return load_spec(spec, 1, (void **)data, hdr, err);
}

/* ------------------------------------------------------- per-sample folders */

/* Index of "<digits>.npy" (no sign, no leading zeros except "0"), or -1. */
static long index_of(const char *name) {
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 4, ".npy")) return -1;
    if (n - 4 > 12 || (name[0] == '0' && n - 4 > 1)) return -1;
    long v = 0;
    for (size_t i = 0; i < n - 4; i++) {
        if (!isdigit((unsigned char)name[i])) return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static rq_status dir_read(const char *dir, int sample_ndim, int as_int, void **data, rq_npy_header *hdr,
                          rq_err *err) {
    if (!dir || !data || sample_ndim < 0 || sample_ndim >= RQ_NPY_MAX_DIMS)
        return rq_err_set(err, RQ_EINVAL, "rq_npy_dir_read: bad arguments");
    *data = NULL;
    DIR *d = opendir(dir);
    if (!d) return rq_err_set(err, RQ_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    /* the indices present */
    long n_files = 0, max_idx = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        long k = index_of(de->d_name);
        if (k < 0) continue;
        n_files++;
        if (k > max_idx) max_idx = k;
    }
    closedir(d);
    if (n_files == 0) return rq_err_set(err, RQ_EFORMAT, "%s: no files named 0.npy, 1.npy, ...", dir);
    if (max_idx + 1 != n_files) {
        /* find the first gap for the message */
        char *seen = calloc((size_t)max_idx + 1, 1);
        long gap = -1;
        if (seen && (d = opendir(dir))) {
            while ((de = readdir(d))) {
                long k = index_of(de->d_name);
                if (k >= 0) seen[k] = 1;
            }
            closedir(d);
            for (long k = 0; k <= max_idx && gap < 0; k++)
                if (!seen[k]) gap = k;
        }
        free(seen);
        return rq_err_set(err, RQ_EFORMAT, "%s: %ld files but the largest index is %ld: %ld.npy is missing", dir, n_files,
                          max_idx, gap);
    }
    size_t esz = as_int ? sizeof(int32_t) : sizeof(float);
    char *out = NULL;
    long total = 0, cap = 0, per = 0;
    rq_npy_header first = {0};
    rq_status s = RQ_OK;
    char path[4096];
    for (long k = 0; k < n_files && !s; k++) {
        snprintf(path, sizeof path, "%s/%ld.npy", dir, k);
        void *part = NULL;
        rq_npy_header h;
        s = as_int ? rq_npy_read_i32(path, (int32_t **)&part, &h, err) : rq_npy_read_f32(path, (float **)&part, &h, err);
        if (s) break;
        /* one sample, or k samples along a leading axis */
        int lead = h.ndim == sample_ndim + 1;
        if (h.ndim != sample_ndim && !lead) {
            s = rq_err_set(err, RQ_EFORMAT, "%s: %d dims, expected %d (one sample) or %d (samples along axis 0)", path,
                           h.ndim, sample_ndim, sample_ndim + 1);
        } else if (k == 0) {
            first = h;
            per = 1;
            for (int i = 0; i < sample_ndim; i++) per *= h.shape[i + lead];
            if (lead) memmove(first.shape, first.shape + 1, sizeof(long) * (size_t)sample_ndim);
        } else {
            for (int i = 0; i < sample_ndim && !s; i++)
                if (h.shape[i + lead] != first.shape[i])
                    s = rq_err_set(err, RQ_EFORMAT, "%s: sample dim %d is %ld, 0.npy has %ld", path, i, h.shape[i + lead],
                                   first.shape[i]);
        }
        long cnt = lead ? h.shape[0] : 1;
        if (!s && total + cnt > cap) {
            long ncap = cap ? cap : 1024;
            while (ncap < total + cnt) ncap *= 2;
            size_t bytes = (size_t)ncap * (size_t)per * esz;
            char *no = realloc(out, bytes ? bytes : 1);
            if (!no) s = rq_err_set(err, RQ_ENOMEM, "%s: out of memory after %ld samples", dir, total);
            else out = no, cap = ncap;
        }
        if (!s) {
            memcpy(out + (size_t)total * (size_t)per * esz, part, (size_t)cnt * (size_t)per * esz);
            total += cnt;
        }
        free(part);
    }
    if (s) {
        free(out);
        return s;
    }
    if (hdr) {
        *hdr = first;
        memmove(hdr->shape + 1, first.shape, sizeof(long) * (size_t)sample_ndim);
        hdr->shape[0] = total;
        hdr->ndim = sample_ndim + 1;
        hdr->numel = total * per;
        hdr->data_offset = 0;
    }
    *data = out ? out : malloc(1);
    return RQ_OK;
}

rq_status rq_npy_dir_read_f32(const char *dir, int sample_ndim, float **data, rq_npy_header *hdr, rq_err *err) {
    return dir_read(dir, sample_ndim, 0, (void **)data, hdr, err);
}

rq_status rq_npy_dir_read_i32(const char *dir, int sample_ndim, int32_t **data, rq_npy_header *hdr, rq_err *err) {
    return dir_read(dir, sample_ndim, 1, (void **)data, hdr, err);
}
