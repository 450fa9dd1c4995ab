/* fuzz_h5gen.c: structure-aware fuzzing of the HDF5 loaders.
 *
 * Byte-level mutation (fuzz_dataset.c, fuzz_ckpt.c) mostly breaks HDF5's own
 * metadata, which libhdf5 rejects before our code runs. This target instead
 * reads the fuzz input as a recipe for a structurally VALID HDF5 file (built
 * in memory with HDF5's core driver) whose contents are wrong in the ways our
 * validation must catch: missing / extra datasets and attributes, groups
 * where datasets belong, wrong ranks, zero and huge dimensions (huge ones
 * are declared, not written), every integer / float width and byte order,
 * half floats, fixed and variable strings, NaN / Inf / out-of-range values.
 *
 * Recipe byte 0 picks a dataset file (rq_dataset_load) or a checkpoint of
 * a tiny model (rq_ckpt_load etc., same checks as fuzz_ckpt.c). Each element
 * then takes one byte for "correct / missing / wrong type / wrong shape /
 * group" (correct is the most likely, so files get deep) and raw data
 * bytes from the rest of the input (zeros when it runs out). */
#include "fuzz_h5check.h"

#include <hdf5.h>

#define GEN_MAX_ELEMS 4096 /* elements actually written; larger shapes are only declared */

/* A file type for a "wrong" dataset or attribute (caller closes it). */
static hid_t gen_type(fz_bytes *b) {
    hid_t t;
    switch (fz_pick(b, 13)) {
    case 0: return H5Tcopy(H5T_STD_U8LE);
    case 1: return H5Tcopy(H5T_STD_I8LE);
    case 2: return H5Tcopy(H5T_STD_U16BE);
    case 3: return H5Tcopy(H5T_STD_I32LE);
    case 4: return H5Tcopy(H5T_STD_I64BE);
    case 5: return H5Tcopy(H5T_STD_U64LE);
    case 6: return H5Tcopy(H5T_IEEE_F32LE);
    case 7: return H5Tcopy(H5T_IEEE_F64BE);
    case 8: return H5Tcopy(H5T_IEEE_F32BE);
    case 9:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 1 + fz_pick(b, 16));
        return t;
    case 10: /* IEEE half: sign 15, exponent 10..14, mantissa 0..9, bias 15 */
        t = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(t, 15, 10, 5, 0, 10);
        H5Tset_size(t, 2);
        H5Tset_precision(t, 16);
        H5Tset_ebias(t, 15);
        return t;
    case 11: return H5Tcopy(H5T_STD_B8LE); /* bitfield */
    default:
        t = H5Tenum_create(H5T_NATIVE_INT);
        H5Tenum_insert(t, "a", (int[]){0});
        H5Tenum_insert(t, "b", (int[]){1});
        return t;
    }
}

/* Random rank (0..5) and dims; *big = 1 if the total is too large to write. */
static int gen_shape(fz_bytes *b, hsize_t *dims, int *big) {
    static const hsize_t choices[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 1u << 20, 1ull << 31, 1ull << 40};
    int nd = (int)fz_pick(b, 6);
    double total = 1;
    for (int i = 0; i < nd; i++) {
        dims[i] = choices[fz_pick(b, sizeof choices / sizeof choices[0])];
        total *= (double)dims[i];
    }
    *big = total > GEN_MAX_ELEMS;
    return nd;
}

/* Fill a buffer of n bytes from the input (zeros after its end). */
static void gen_fill(fz_bytes *b, void *buf, size_t n) {
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)fz_u8(b);
}

/* Dataset at path with file type t and memory type == file type (raw bytes,
 * no conversion). Variable-length strings are not supported here. Huge
 * shapes are declared only (late allocation: reads see the fill value). */
static void gen_dataset_raw(hid_t f, const char *path, hid_t t, int nd, const hsize_t *dims, int big, fz_bytes *b) {
    hid_t sp = nd ? H5Screate_simple(nd, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    unsigned layout = fz_pick(b, 3);
    int chunkable = nd > 0;
    for (int i = 0; i < nd; i++) chunkable &= dims[i] > 0 && dims[i] <= (1u << 20);
    if (layout == 1 && chunkable) {
        hsize_t c[8];
        for (int i = 0; i < nd; i++) c[i] = dims[i] < 4 ? dims[i] : 4;
        H5Pset_chunk(dcpl, nd, c);
        if (fz_u8(b) & 1) H5Pset_deflate(dcpl, 1);
    } else if (layout == 2 && !big) {
        H5Pset_layout(dcpl, H5D_COMPACT);
    }
    hid_t d = H5Dcreate2(f, path, t, sp, lcpl, dcpl, H5P_DEFAULT);
    if (d >= 0 && !big) {
        size_t n = (size_t)H5Sget_simple_extent_npoints(sp) * H5Tget_size(t);
        void *buf = calloc(n ? n : 1, 1);
        if (buf) {
            gen_fill(b, buf, n);
            if (n) H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            free(buf);
        }
    }
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(sp);
}

/* A wrong dataset at path: random type and shape, or a group. */
static void gen_wrong(hid_t f, const char *path, fz_bytes *b) {
    if (fz_pick(b, 8) == 0) {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t g = H5Gcreate2(f, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0) H5Gclose(g);
        H5Pclose(lcpl);
        return;
    }
    hsize_t dims[8];
    int big, nd = gen_shape(b, dims, &big);
    hid_t t = gen_type(b);
    gen_dataset_raw(f, path, t, nd, dims, big, b);
    H5Tclose(t);
}

/* A dataset of the right type, with the shape given or (one time in 4) a
 * random one. */
static void gen_typed(hid_t f, const char *path, hid_t t, int nd, const hsize_t *dims, fz_bytes *b) {
    if (fz_pick(b, 4) == 0) {
        hsize_t d2[8];
        int big, n2 = gen_shape(b, d2, &big);
        gen_dataset_raw(f, path, t, n2, d2, big, b);
    } else {
        gen_dataset_raw(f, path, t, nd, dims, 0, b);
    }
}

/* The right element, or (by one byte) missing / wrong. */
enum { GEN_OK, GEN_MISSING, GEN_WRONG };
static int gen_variant(fz_bytes *b) {
    unsigned v = fz_pick(b, 10);
    return v < 7 ? GEN_OK : v == 7 ? GEN_MISSING : GEN_WRONG;
}

/* ---- attributes on the root group ---- */

static void attr_write(hid_t f, const char *name, hid_t t, int n, const void *buf) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hsize_t dim = (hsize_t)n;
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (n != 0) H5Awrite(a, t, buf);
        H5Aclose(a);
    }
    H5Sclose(sp);
}
static void attr_str(hid_t f, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    attr_write(f, name, t, -1, &value);
    H5Tclose(t);
}
static void attr_i64(hid_t f, const char *name, int64_t v) { attr_write(f, name, H5T_NATIVE_INT64, -1, &v); }
static void attr_f64(hid_t f, const char *name, double v) { attr_write(f, name, H5T_NATIVE_DOUBLE, -1, &v); }

/* A wrong attribute: random type, scalar or 0..3 elements, raw bytes; or a
 * variable-length string from the input. */
static void attr_wrong(hid_t f, const char *name, fz_bytes *b) {
    if (fz_pick(b, 4) == 0) {
        char s[64];
        size_t n = fz_pick(b, sizeof s);
        for (size_t i = 0; i < n; i++) s[i] = (char)fz_u8(b);
        s[n] = '\0';
        attr_str(f, name, s);
        return;
    }
    hid_t t = gen_type(b);
    int n = (int)fz_pick(b, 5) - 1; /* -1 = scalar */
    size_t bytes = (size_t)(n < 0 ? 1 : n) * H5Tget_size(t);
    uint8_t buf[256] = {0};
    if (bytes <= sizeof buf) {
        gen_fill(b, buf, bytes);
        attr_write(f, name, t, n, buf);
    }
    H5Tclose(t);
}

/* ---- dataset files ---- */

static void gen_dataset_file(hid_t f, fz_bytes *b) {
    int latents = fz_u8(b) & 1;
    int64_t nc = 1 + fz_pick(b, 6);
    hsize_t n = 1 + fz_pick(b, 4), c = 1 + fz_pick(b, 3), h = 1 + fz_pick(b, 4), w = 1 + fz_pick(b, 4);
    /* attributes */
    switch (gen_variant(b)) {
    case GEN_OK: attr_str(f, "format", RQ_DATASET_FORMAT); break;
    case GEN_WRONG: attr_wrong(f, "format", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_i64(f, "version", RQ_DATASET_VERSION); break;
    case GEN_WRONG: attr_wrong(f, "version", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_str(f, "kind", latents ? "latents" : "images"); break;
    case GEN_WRONG: attr_wrong(f, "kind", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_i64(f, "num_classes", nc); break;
    case GEN_WRONG: attr_wrong(f, "num_classes", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_f64(f, "scale", latents ? 0.18215 : 1.0); break;
    case GEN_WRONG: attr_wrong(f, "scale", b); break;
    }
    /* data */
    const char *xname = latents ? "/latents" : "/images";
    switch (gen_variant(b)) {
    case GEN_OK:
        if (latents) gen_typed(f, xname, H5T_IEEE_F32LE, 4, (hsize_t[]){n, c, h, w}, b);
        else gen_typed(f, xname, H5T_STD_U8LE, 4, (hsize_t[]){n, h, w, c}, b);
        break;
    case GEN_WRONG: gen_wrong(f, xname, b); break;
    }
    if (fz_pick(b, 8) == 0) gen_wrong(f, latents ? "/images" : "/latents", b); /* both present */
    switch (gen_variant(b)) {
    case GEN_OK: {
        /* labels: mostly in range, by input bytes */
        int32_t lab[4];
        for (hsize_t i = 0; i < n; i++) lab[i] = (int32_t)(fz_pick(b, 8) == 0 ? fz_u32(b) : fz_pick(b, (unsigned)nc));
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t d = H5Dcreate2(f, "/labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (d >= 0) {
            H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab);
            H5Dclose(d);
        }
        H5Sclose(sp);
        break;
    }
    case GEN_WRONG: gen_wrong(f, "/labels", b); break;
    }
}

/* ---- checkpoints of the tiny model ---- */

static const char *GEN_TINY_CFG = "[model]\ninput_size = 4\nin_channels = 1\npatch_size = 2\nhidden_size = 8\n"
                                  "depth = 1\nnum_heads = 2\nnum_classes = 2\nmlp_ratio = 1\n";

static void gen_param_group(hid_t f, const char *group, const rq_dit *m, fz_bytes *b) {
    for (int i = 0; i < m->n_params; i++) {
        const rq_tensor *p = m->params[i];
        char path[256];
        snprintf(path, sizeof path, "%s/%s", group, p->name);
        hsize_t dims[8];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        unsigned v = fz_pick(b, 16);
        if (v < 13) gen_dataset_raw(f, path, H5T_IEEE_F32LE, p->ndim, dims, 0, b);
        else if (v == 13) continue; /* missing */
        else if (v == 14) gen_typed(f, path, H5T_IEEE_F64LE, p->ndim, dims, b);
        else gen_wrong(f, path, b);
    }
    if (fz_pick(b, 16) == 0) { /* an extra tensor */
        char path[256];
        snprintf(path, sizeof path, "%s/extra.weight", group);
        gen_wrong(f, path, b);
    }
}

static void gen_i64_dataset(hid_t f, const char *path, int n, fz_bytes *b) {
    switch (gen_variant(b)) {
    case GEN_OK: gen_typed(f, path, H5T_STD_I64LE, 1, (hsize_t[]){(hsize_t)n}, b); break;
    case GEN_WRONG: gen_wrong(f, path, b); break;
    }
}

static void gen_ckpt_file(hid_t f, fz_bytes *b) {
    static rq_dit model; /* the tiny model's names and shapes, built once */
    static int built = 0;
    static char *cfg_text = NULL;
    if (!built) {
        rq_config *cfg = rq_config_new();
        rq_dit_config mc;
        rq_err e = {0};
        if (rq_config_load_string(cfg, GEN_TINY_CFG, "tiny", &e) || rq_model_config_from(cfg, &mc, &e) ||
            rq_dit_init(&model, &mc, 0, &e))
            fz_fail("h5gen tiny model: %s", e.msg);
        cfg_text = rq_config_to_string(cfg);
        rq_config_free(cfg);
        built = 1;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_str(f, "format", RQ_CKPT_FORMAT); break;
    case GEN_WRONG: attr_wrong(f, "format", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_i64(f, "version", RQ_CKPT_VERSION); break;
    case GEN_WRONG: attr_wrong(f, "version", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: attr_i64(f, "step", (int64_t)fz_u64(b)); break;
    case GEN_WRONG: attr_wrong(f, "step", b); break;
    }
    switch (gen_variant(b)) {
    case GEN_OK: {
        /* the real config, sometimes with one small model key changed */
        char text[8192];
        snprintf(text, sizeof text, "%s", cfg_text);
        if (fz_pick(b, 4) == 0) {
            static const char *keys[] = {"hidden_size = ", "depth = ", "num_heads = ", "input_size = ", "patch_size = ",
                                         "num_classes = ", "in_channels = ", "learn_sigma = "};
            char *k = strstr(text, keys[fz_pick(b, 8)]);
            if (k) {
                k = strchr(k, '=') + 2;
                char *eol = strchr(k, '\n');
                char tail[8192];
                snprintf(tail, sizeof tail, "%s", eol ? eol : "");
                snprintf(k, sizeof text - (size_t)(k - text), "%u%s", fz_pick(b, 17), tail);
            }
        }
        attr_str(f, "config", text);
        break;
    }
    case GEN_WRONG: attr_wrong(f, "config", b); break;
    }
    gen_param_group(f, "/params", &model, b);
    if (fz_pick(b, 8)) gen_param_group(f, "/ema", &model, b);
    if (fz_pick(b, 8)) {
        gen_param_group(f, "/optim/m", &model, b);
        gen_param_group(f, "/optim/v", &model, b);
        gen_i64_dataset(f, "/optim/t", 1, b);
    }
    gen_i64_dataset(f, "/rng", 4, b);
    if (fz_pick(b, 4)) gen_i64_dataset(f, "/loader", RQ_LOADER_STATE_LEN, b);
    if (fz_pick(b, 4)) {
        hsize_t n = fz_pick(b, 5);
        switch (gen_variant(b)) {
        case GEN_OK: gen_typed(f, "/log/step", H5T_IEEE_F32LE, 1, &n, b); break;
        case GEN_WRONG: gen_wrong(f, "/log/step", b); break;
        }
        switch (gen_variant(b)) {
        case GEN_OK: gen_typed(f, "/log/loss", H5T_IEEE_F32LE, 1, &n, b); break;
        case GEN_WRONG: gen_wrong(f, "/log/loss", b); break;
        }
    }
}

FUZZ_TARGET(h5gen) {
    fz_quiet();
    fz_dir();
    fz_bytes b = {data, size, 0};
    int ckpt = fz_u8(&b) & 1;
    /* build the file in memory (core driver, no backing store) */
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    hid_t f = H5Fcreate("h5gen.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) fz_fail("h5gen: cannot create the in-memory file");
    if (ckpt) gen_ckpt_file(f, &b);
    else gen_dataset_file(f, &b);
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    uint8_t *img = n > 0 ? malloc((size_t)n) : NULL;
    if (img && H5Fget_file_image(f, img, (size_t)n) != n) n = -1;
    H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    if (!img || n <= 0) fz_fail("h5gen: no file image");
    char path[96];
    int bad = fz_tmpfile(img, (size_t)n, "h5gen.h5", path, sizeof path);
    free(img);
    if (bad) return 0;
    if (ckpt) fz_check_ckpt_file(path);
    else fz_check_dataset_file(path);
    return 0;
}
