/* rng.h: a small deterministic generator (xoshiro256**) with uniform and
 * normal draws. Its state is four uint64 words, saved in checkpoints so a
 * resumed run draws the same numbers as an uninterrupted one. */
#ifndef ROBUQ_RNG_H
#define ROBUQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rq_rng;

void rq_rng_seed(rq_rng *r, uint64_t seed);
uint64_t rq_rng_u64(rq_rng *r);
double rq_rng_uniform(rq_rng *r);          /* [0, 1) with 53 bits */
int rq_rng_int(rq_rng *r, int n);          /* [0, n) */
double rq_rng_normal(rq_rng *r);           /* N(0,1), Box-Muller (no cached pair: state is just s) */
void rq_rng_fill_normal(rq_rng *r, float *x, long n, float std);

#endif
