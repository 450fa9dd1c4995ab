/* make_seeds.c: writes the seed corpora of the fuzz targets (developer tool;
 * the outputs are committed under tests/fuzz/corpus/, run_fuzz.sh seeds
 * rebuilds them). Every seed is a small VALID file of its format, so the
 * fuzzer starts from inputs that reach deep into the readers.
 *
 *   make_seeds OUT_DIR     (writes OUT_DIR/<target>/<name>) */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "robuq/config.h"
#include "robuq/dataset.h"
#include "robuq/h5io.h"
#include "robuq/image.h"
#include "robuq/safetensors.h"
#include "robuq/train.h"
#ifdef HAVE_EXPORT /* run_fuzz.sh defines it once src/io/export.c exists */
#include "robuq/export.h"
#endif

static const char *g_out;

static void die(const char *what, const rq_err *e) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

static void path_of(char *buf, size_t cap, const char *target, const char *name) {
    snprintf(buf, cap, "%s/%s", g_out, target);
    mkdir(buf, 0755);
    snprintf(buf, cap, "%s/%s/%s", g_out, target, name);
}

static void put(const char *target, const char *name, const void *data, size_t n) {
    char p[1024];
    path_of(p, sizeof p, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) die(p, NULL);
}

/* ------------------------------------------------------------------ idx */
static size_t idx_make(uint8_t *buf, int ndim, const long *dims, unsigned seed) {
    size_t k = 0, total = 1;
    buf[k++] = 0, buf[k++] = 0, buf[k++] = 0x08, buf[k++] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = (uint32_t)dims[i];
        buf[k++] = d >> 24, buf[k++] = d >> 16, buf[k++] = d >> 8, buf[k++] = d;
        total *= (size_t)dims[i];
    }
    for (size_t i = 0; i < total; i++) buf[k++] = (uint8_t)(i * 37 + seed);
    return k;
}

static void seeds_idx(void) {
    uint8_t img[256], lab[64], pair[512], gz[512];
    size_t ni = idx_make(img, 3, (long[]){3, 4, 4}, 1), nl = idx_make(lab, 1, (long[]){3}, 0);
    for (int i = 0; i < 3; i++) lab[8 + i] = (uint8_t)i;
    put("idx", "images_idx3", img, ni);
    put("idx", "labels_idx1", lab, nl);
    uint8_t four[256];
    put("idx", "images_idx4", four, idx_make(four, 4, (long[]){2, 3, 3, 1}, 5));
    uLongf gl = sizeof gz;
    /* gzip wrapper: deflateInit2 with windowBits 31 */
    z_stream z = {0};
    deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
    z.next_in = img, z.avail_in = (uInt)ni, z.next_out = gz, z.avail_out = (uInt)gl;
    deflate(&z, Z_FINISH);
    put("idx", "images_idx3.gz", gz, z.total_out);
    deflateEnd(&z);
    memcpy(pair, "PAIR", 4);
    pair[4] = (uint8_t)(ni & 255), pair[5] = (uint8_t)(ni >> 8);
    memcpy(pair + 6, img, ni);
    memcpy(pair + 6 + ni, lab, nl);
    put("idx", "pair", pair, 6 + ni + nl);
}

/* ------------------------------------------------------------------ png */
/* libpng directly, for the variants rq_png_write does not produce. */
static void png_variant(const char *name, int w, int h, int depth, int ctype, int interlace, int trns) {
    char p[1024];
    path_of(p, sizeof p, "png", name);
    FILE *f = fopen(p, "wb");
    if (!f) die(p, NULL);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) die(p, NULL);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
        png_set_PLTE(png, info, pal, 4);
    }
    if (trns) {
        png_byte alpha[2] = {0, 128};
        png_color_16 tc = {0, 0, 0, 0, 0};
        png_set_tRNS(png, info, ctype == PNG_COLOR_TYPE_PALETTE ? alpha : NULL,
                     ctype == PNG_COLOR_TYPE_PALETTE ? 2 : 0, ctype == PNG_COLOR_TYPE_PALETTE ? NULL : &tc);
    }
    png_text txt = {PNG_TEXT_COMPRESSION_NONE, "Comment", "seed", 4, 0, NULL, NULL};
    png_set_text(png, info, &txt, 1);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    size_t rb = png_get_rowbytes(png, info);
    uint8_t *row = malloc(rb);
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < h; y++) {
            for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)(i * 29 + (size_t)y * 7);
            if (ctype == PNG_COLOR_TYPE_PALETTE)
                for (size_t i = 0; i < rb; i++) row[i] &= depth == 8 ? 3 : 0x55;
            png_write_row(png, row);
        }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
}

static void seeds_png(void) {
    png_variant("gray8.png", 5, 3, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, 0);
    png_variant("gray1.png", 9, 2, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, 0);
    png_variant("gray16_trns.png", 3, 3, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, 1);
    png_variant("graya8.png", 4, 2, 8, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, 0);
    png_variant("rgb8_interlaced.png", 9, 9, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, 0);
    png_variant("rgba16.png", 2, 3, 16, PNG_COLOR_TYPE_RGB_ALPHA, PNG_INTERLACE_NONE, 0);
    png_variant("palette2_trns.png", 7, 3, 2, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, 1);
    png_variant("palette8.png", 4, 4, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, 0);
}

/* ------------------------------------------------------------------ npy */
static void npy_put(const char *name, const char *descr, const char *shape, const void *data, size_t n, int ver) {
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int pre = ver == 1 ? 10 : 12, total = pre + hl + 1;
    int pad = (64 - total % 64) % 64;
    uint8_t buf[1024];
    size_t k = 0;
    memcpy(buf, "\x93NUMPY", 6), k = 6;
    buf[k++] = (uint8_t)ver, buf[k++] = 0;
    int len = hl + pad + 1;
    buf[k++] = (uint8_t)(len & 255), buf[k++] = (uint8_t)(len >> 8);
    if (ver != 1) buf[k++] = 0, buf[k++] = 0;
    memcpy(buf + k, hdr, (size_t)hl), k += (size_t)hl;
    memset(buf + k, ' ', (size_t)pad), k += (size_t)pad;
    buf[k++] = '\n';
    memcpy(buf + k, data, n), k += n;
    put("npy", name, buf, k);
}

static void seeds_npy(void) {
    float f[8] = {0, 1, -1, 0.5f, 2, -2, 3, 1e-3f};
    int32_t i4[4] = {0, 1, 2, 9};
    int64_t i8[3] = {1, 2, 3};
    uint16_t f2[4] = {0x3c00, 0xbc00, 0x0001, 0x7bff};
    uint8_t u1[6] = {1, 2, 3, 4, 5, 6};
    npy_put("f4_4d.npy", "<f4", "(2, 1, 2, 2)", f, sizeof f, 1);
    npy_put("i4.npy", "<i4", "(4,)", i4, sizeof i4, 1);
    npy_put("i8_v2.npy", "<i8", "(3,)", i8, sizeof i8, 2);
    npy_put("f2.npy", "<f2", "(2, 2)", f2, sizeof f2, 1);
    npy_put("u1_v3.npy", "|u1", "(2, 3)", u1, sizeof u1, 3);
    npy_put("scalar.npy", "<f8", "()", (double[]){1.5}, 8, 1);
}

/* ------------------------------------------------------------------ safetensors */
static void seeds_safetensors(void) {
    char p[1024];
    const char *names[2] = {"a.weight", "b"};
    int nd[2] = {2, 0};
    int64_t s0[2] = {2, 3}, s1[1] = {0};
    const int64_t *shapes[2] = {s0, s1};
    float d0[6] = {1, -2, 3, 0.5f, 0, 65504}, d1[1] = {7};
    const float *data[2] = {d0, d1};
    rq_err e = {0};
    path_of(p, sizeof p, "safetensors", "f32.safetensors");
    if (rq_st_write(p, 2, names, nd, shapes, data, RQ_ST_F32, &e)) die(p, &e);
    path_of(p, sizeof p, "safetensors", "f16.safetensors");
    if (rq_st_write(p, 2, names, nd, shapes, data, RQ_ST_F16, &e)) die(p, &e);
    path_of(p, sizeof p, "safetensors", "bf16.safetensors");
    if (rq_st_write(p, 2, names, nd, shapes, data, RQ_ST_BF16, &e)) die(p, &e);
    /* by hand: metadata, escapes, an I64 and an unreadable U8 tensor */
    const char *json = "{\"__metadata__\":{\"k\":\"v\\u00e9\\n\"},\"i\\\"64\":{\"dtype\":\"I64\",\"shape\":[1],"
                       "\"data_offsets\":[0,8]},\"u\":{\"dtype\":\"U8\",\"shape\":[2,1],\"data_offsets\":[8,10]}}";
    uint8_t buf[512];
    uint64_t n = strlen(json);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, json, n);
    int64_t v = -5;
    memcpy(buf + 8 + n, &v, 8);
    buf[16 + n] = 1, buf[17 + n] = 2;
    put("safetensors", "handmade.safetensors", buf, 18 + n);
}

/* ------------------------------------------------------------------ config */
static void seeds_config(void) {
    const char *a = "# tiny\n[model]\ninput_size = 8\nhidden_size = 32 ; inline\ndepth = 2\nnum_heads = 2\n"
                    "[train]\nlr = 1e-3\nout_dir = \"runs/x # y\"\nsteps=6\n[quant]\nenabled = on\nact_bits = 2\n"
                    "a_bits_map = \n[sample]\nclasses = 0,3,7\n";
    const char *b = "\xEF\xBB\xBF[data]\npath = data.h5\nhflip = yes\n[diffusion]\n[train]\nema_decay=0.999\n"
                    "include = fuzz.ini\n";
    const char *c = "model.hidden_size=64\n[model]\narch = DiT-S/2\n";
    put("config", "tiny.ini", a, strlen(a));
    put("config", "bom_include.ini", b, strlen(b));
    put("config", "set_first_line.ini", c, strlen(c));
    /* the full default config, as dumped */
    rq_config *cfg = rq_config_new();
    char *s = rq_config_to_string(cfg);
    put("config", "defaults.ini", s, strlen(s));
    free(s);
    rq_config_free(cfg);
}

/* ------------------------------------------------------------------ HDF5 */
static void seeds_dataset(void) {
    char p[1024];
    rq_err e = {0};
    uint8_t img[4 * 4 * 4 * 1];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 13);
    int32_t lab[4] = {0, 1, 2, 1};
    rq_dataset_src s = {.kind = RQ_DATA_IMAGES, .n = 4, .c = 1, .h = 4, .w = 4, .images = img, .labels = lab,
                        .num_classes = 3, .compression = 0, .source = "seed"};
    path_of(p, sizeof p, "dataset", "images.h5");
    if (rq_dataset_write(p, &s, &e)) die(p, &e);
    s.compression = 4; /* chunked + shuffle + deflate */
    path_of(p, sizeof p, "dataset", "images_deflate.h5");
    if (rq_dataset_write(p, &s, &e)) die(p, &e);
    float lat[2 * 2 * 2 * 2];
    for (size_t i = 0; i < 16; i++) lat[i] = (float)i / 8 - 1;
    rq_dataset_src l = {.kind = RQ_DATA_LATENTS, .n = 2, .c = 2, .h = 2, .w = 2, .latents = lat, .labels = lab,
                        .num_classes = 2, .scale = 0.18215, .compression = 0};
    path_of(p, sizeof p, "dataset", "latents.h5");
    if (rq_dataset_write(p, &l, &e)) die(p, &e);
}

/* The smallest model the code accepts, trained for 0 steps: a checkpoint
 * with every group a real one has (params, ema, optim, rng, loader, log). */
static const char *TINY_CFG = "[model]\ninput_size = 4\nin_channels = 1\npatch_size = 2\nhidden_size = 8\n"
                              "depth = 1\nnum_heads = 2\nnum_classes = 2\nmlp_ratio = 1\n";

static void seeds_ckpt(void) {
    char p[1024];
    rq_err e = {0};
    rq_config *cfg = rq_config_new();
    rq_dit_config mc;
    rq_dit m;
    rq_ema ema;
    rq_adamw opt;
    if (rq_config_load_string(cfg, TINY_CFG, "tiny", &e) || rq_model_config_from(cfg, &mc, &e) ||
        rq_dit_init(&m, &mc, 1, &e) || rq_ema_init(&ema, &m, &e) || rq_adamw_init(&opt, &m, 1e-3f, 0.9f, 0.999f, 0, &e))
        die("tiny model", &e);
    rq_ckpt_meta meta = {0};
    meta.step = 3;
    rq_rng_seed(&meta.rng, 7);
    meta.loader_len = RQ_LOADER_STATE_LEN;
    for (int i = 0; i < RQ_LOADER_STATE_LEN; i++) meta.loader[i] = i;
    meta.config_text = rq_config_to_string(cfg);
    float st[3] = {1, 2, 3}, lo[3] = {0.9f, 0.8f, 0.7f};
    meta.log_step = st, meta.log_loss = lo, meta.log_n = 3;
    path_of(p, sizeof p, "ckpt", "tiny.h5");
    if (rq_ckpt_save(p, &m, &ema, &opt, &meta, &e)) die(p, &e);
    /* QAT variant: a-bits map, Hadamard-rotated layers */
    rq_config_set(cfg, "quant.enabled=on", &e);
    free(meta.config_text);
    meta.config_text = rq_config_to_string(cfg);
    meta.log_n = 0;
    rq_quant_opts qo;
    if (rq_quant_opts_from(cfg, &qo, &e) || rq_dit_quantize(&m, &qo, &e)) die("quantize", &e);
    path_of(p, sizeof p, "ckpt", "tiny_qat.h5");
    if (rq_ckpt_save(p, &m, NULL, NULL, &meta, &e)) die(p, &e);
#ifdef HAVE_EXPORT
    for (int k = 0; k < 2; k++) {
        rq_export_opts eo = {.packing = k ? RQ_TPACK_2BIT : RQ_TPACK_TRIT5, .config_text = meta.config_text,
                             .source = "seed", .weights = "ema", .step = 3};
        path_of(p, sizeof p, "export", k ? "tiny_2bit.h5" : "tiny_trit5.h5");
        if (rq_export_write(p, &m, &eo, NULL, &e)) die(p, &e);
    }
#endif
    free(meta.config_text);
    rq_adamw_free(&opt), rq_ema_free(&ema), rq_dit_free(&m);
    rq_config_free(cfg);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds OUT_DIR\n");
        return 2;
    }
    g_out = argv[1];
    mkdir(g_out, 0755);
    rq_log_set_level(RQ_LOG_WARN);
    seeds_idx();
    seeds_png();
    seeds_npy();
    seeds_safetensors();
    seeds_config();
    seeds_dataset();
    seeds_ckpt();
    return 0;
}
