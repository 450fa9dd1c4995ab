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

#endif
