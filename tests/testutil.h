/* testutil.h: small helpers shared by the cmocka tests. */
#ifndef ROBUQ_TESTUTIL_H
#define ROBUQ_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <ftw.h>
#include <sys/wait.h>

#include "robuq/dataset.h"

/* splitmix64: deterministic test data independent of libc rand(). */
static inline uint64_t tu_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline float tu_uniform(uint64_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)((tu_next(s) >> 40) * (1.0 / 16777216.0));
}
static inline void tu_fill(uint64_t *s, float *x, long n, float lo, float hi) {
    for (long i = 0; i < n; i++) x[i] = tu_uniform(s, lo, hi);
}
/* ||a-b|| / max(||b||, floor) */
static inline double tu_rel_err(const float *a, const float *b, long n, double floor) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    den = sqrt(den);
    return sqrt(num) / (den > floor ? den : floor);
}

/* Removes a test's temporary directory tree (depth first, no symlinks followed). */
static inline int tu_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static inline int tu_rmtree(const char *dir) { return nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* cmocka fixture: a fresh temporary directory per test, removed afterwards. */
typedef struct {
    char dir[256];
} tu_dir;
static inline int tu_dir_setup(void **state) {
    tu_dir *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/rq_test_XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}
static inline int tu_dir_teardown(void **state) {
    tu_dir *f = *state;
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

/* Runs a shell command built printf-style; returns its exit status (-1 if
 * it did not exit normally). */
static inline int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int tu_sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The [model] section that fits tu_write_tiny_images (8x8 gray, 3 classes):
 * a D=32, depth-2 DiT with 2x2 patches. Tests append their other sections. */
#define TU_TINY_MODEL_INI                                                                   \
    "[model]\ninput_size = 8\nin_channels = 1\npatch_size = 2\nhidden_size = 32\ndepth = 2\n" \
    "num_heads = 2\nnum_classes = 3\n"

/* A dataset file of n random 8x8 gray images, labels i % 3 (3 classes), for
 * tool tests that train a tiny model. */
static inline void tu_write_tiny_images(const char *path, int n, uint64_t seed) {
    uint8_t *img = malloc((size_t)n * 64);
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n * 64; i++) img[i] = (uint8_t)(tu_next(&seed) & 255);
    for (int i = 0; i < n; i++) lab[i] = i % 3;
    rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = n, .c = 1, .h = 8, .w = 8, .images = img, .labels = lab,
                          .num_classes = 3, .compression = -1};
    rq_err e = {0};
    if (rq_dataset_write(path, &src, &e)) fail_msg("%s", e.msg);
    free(img), free(lab);
}

#endif
