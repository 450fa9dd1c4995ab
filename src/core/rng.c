/* rng.c: xoshiro256** seeded through splitmix64. */
#include "robuq/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rq_rng_seed(rq_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rq_rng_u64(rq_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rq_rng_uniform(rq_rng *r) { return (double)(rq_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

int rq_rng_int(rq_rng *r, int n) {
    if (n <= 1) return 0;
    return (int)(rq_rng_uniform(r) * n);
}

double rq_rng_normal(rq_rng *r) {
    double u1 = rq_rng_uniform(r), u2 = rq_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rq_rng_fill_normal(rq_rng *r, float *x, long n, float std) {
    for (long i = 0; i < n; i++) x[i] = (float)(std * rq_rng_normal(r));
}
