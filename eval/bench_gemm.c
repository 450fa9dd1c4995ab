/* bench_gemm.c: rq_sgemm vs OpenBLAS cblas_sgemm on DiT shapes, same threads.
 *
 * For each linear layer of DiT-S (D=384) and DiT-XL (D=1152) with
 * M = tokens*batch rows, times the three products of training:
 *   fwd  Y  = X W^T    (NT: M x out x in)
 *   dX   dX = dY W     (NN: M x in x out)
 *   dW   dW = dY^T X   (TN: out x in x M)
 * and prints best-of-reps GFLOP/s and the ratio ours/OpenBLAS. */
#include "robuq/common.h"
#include "robuq/gemm.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int num_threads); /* not in every cblas.h */

typedef struct {
    const char *name;
    int out, in;
} layer;

static const layer LAYERS[] = {
    {"S qkv", 1152, 384},  {"S proj", 384, 384},    {"S fc1", 1536, 384},  {"S fc2", 384, 1536},
    {"XL qkv", 3456, 1152}, {"XL proj", 1152, 1152}, {"XL fc1", 4608, 1152}, {"XL fc2", 1152, 4608},
};

static void usage(const char *prog) {
    printf("usage: %s [--threads N] [--reps N] [--tokens T] [--batch B] [--quick]\n"
           "       [--shape TA TB M N K] [--isa scalar|avx2|avx512]\n"
           "  --threads N  OpenMP and OpenBLAS threads (default: omp_get_max_threads())\n"
           "  --reps N     timed repetitions per case, best is reported (default 5)\n"
           "  --tokens T   tokens per image (default 196)\n"
           "  --batch B    images per batch, M = T*B (default 16)\n"
           "  --quick      DiT-S layers only, 2 reps\n"
           "  --shape ...  time one product op(A)[M,K] op(B)[K,N] only (TA/TB = 0 or 1)\n"
           "  --isa NAME   force rq_sgemm's kernel (default: best the CPU runs)\n",
           prog);
}

static void fill(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

/* Lets the other library's spinning worker threads go to sleep. */
static void settle(void) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* One timed call of either library. */
static double time_one(int ours, int ta, int tb, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc) {
    double t0 = rq_now();
    if (ours)
        rq_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    else
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                    N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    return rq_now() - t0;
}

/* Per-head attention products (T tokens, head dim 64, q/k/v rows strided
 * by 3D as in a fused qkv tensor): rq_sgemm_st on one thread, as the
 * training code calls it inside its loop over heads, vs single-threaded
 * OpenBLAS. Each timing covers `calls` back-to-back products. */
static void bench_attention(int reps) {
    const int T = 196, dh = 64, D3 = 3 * 384, calls = 50;
    float *qkv = rq_malloc((size_t)T * D3 * sizeof(float)), *P = rq_malloc((size_t)T * T * sizeof(float));
    float *O = rq_malloc((size_t)T * dh * sizeof(float)), *O2 = rq_malloc((size_t)T * T * sizeof(float));
    if (!qkv || !P || !O || !O2) return;
    fill(qkv, (size_t)T * D3, 4);
    fill(P, (size_t)T * T, 5);
    struct { const char *name; int ta, tb, m, n, k; const float *a; int lda; const float *b; int ldb; } cs[] = {
        {"S=QK^T", 0, 1, T, T, dh, qkv, D3, qkv + 384, D3},
        {"O=PV", 0, 0, T, dh, T, P, T, qkv + 768, D3},
        {"dV=P^TdO", 1, 0, T, dh, T, P, T, qkv, D3},
    };
    openblas_set_num_threads(1);
    printf("\nattention per head, 1 thread (rq_sgemm_st vs OpenBLAS), T=%d dh=%d, x%d calls\n", T, dh, calls);
    printf("%-10s %2s %6s %6s %6s %10s %10s %7s\n", "product", "tr", "M", "N", "K", "ours GF/s", "blas GF/s",
           "ratio");
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        double t_ours = 1e30, t_blas = 1e30;
        for (int r = -1; r < reps; r++) {
            settle();
            double t0 = rq_now();
            for (int i = 0; i < calls; i++)
                rq_sgemm_st(cs[c].ta, cs[c].tb, cs[c].m, cs[c].n, cs[c].k, 1.0f, cs[c].a, cs[c].lda, cs[c].b,
                            cs[c].ldb, 0.0f, O2, cs[c].n);
            double t1 = rq_now();
            for (int i = 0; i < calls; i++)
                cblas_sgemm(CblasRowMajor, cs[c].ta ? CblasTrans : CblasNoTrans,
                            cs[c].tb ? CblasTrans : CblasNoTrans, cs[c].m, cs[c].n, cs[c].k, 1.0f, cs[c].a,
                            cs[c].lda, cs[c].b, cs[c].ldb, 0.0f, O2, cs[c].n);
            double t2 = rq_now();
            if (r >= 0) {
                t_ours = fmin(t_ours, t1 - t0);
                t_blas = fmin(t_blas, t2 - t1);
            }
        }
        double flop = 2.0 * cs[c].m * cs[c].n * cs[c].k * calls;
        printf("%-10s %c%c %6d %6d %6d %10.1f %10.1f %6.2fx\n", cs[c].name, cs[c].ta ? 'T' : 'N',
               cs[c].tb ? 'T' : 'N', cs[c].m, cs[c].n, cs[c].k, flop / t_ours * 1e-9, flop / t_blas * 1e-9,
               t_blas / t_ours);
    }
    openblas_set_num_threads(omp_get_max_threads());
    rq_free(qkv);
    rq_free(P);
    rq_free(O);
    rq_free(O2);
}

typedef struct {
    char name[16];
    const char *op;
    int ta, tb, m, n, k;
} gcase;

int main(int argc, char **argv) {
    int threads = omp_get_max_threads(), reps = 5, tokens = 196, batch = 16, quick = 0;
    int shape[5], have_shape = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *name = argv[++i];
            rq_gemm_isa want = !strcmp(name, "scalar") ? RQ_GEMM_SCALAR
                               : !strcmp(name, "avx2") ? RQ_GEMM_AVX2
                               : !strcmp(name, "avx512") ? RQ_GEMM_AVX512 : RQ_GEMM_AUTO;
            if (want == RQ_GEMM_AUTO) {
                fprintf(stderr, "bench_gemm: unknown isa '%s' (scalar, avx2, avx512)\n", name);
                return 2;
            }
            if (rq_gemm_set_isa(want) != want) fprintf(stderr, "warning: %s not available here\n", name);
        }
        else if (!strcmp(argv[i], "--shape") && i + 5 < argc) {
            for (int j = 0; j < 5; j++) shape[j] = atoi(argv[++i]);
            have_shape = 1;
        } else {
            fprintf(stderr, "bench_gemm: unknown argument '%s' (--help lists the options)\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || tokens < 1 || batch < 1 ||
        (have_shape && (shape[2] < 1 || shape[3] < 1 || shape[4] < 1))) {
        fprintf(stderr, "bench_gemm: threads, reps, tokens, batch and shape sizes must be >= 1\n");
        return 2;
    }
    if (quick) reps = 2;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    int M = tokens * batch;

    /* the case list: one --shape, or three products per layer */
    gcase cases[3 * sizeof LAYERS / sizeof LAYERS[0]];
    int ncase = 0;
    if (have_shape) {
        cases[ncase++] = (gcase){"custom", "-", shape[0] != 0, shape[1] != 0, shape[2], shape[3], shape[4]};
    } else {
        int nlayers = quick ? 4 : (int)(sizeof LAYERS / sizeof LAYERS[0]);
        for (int l = 0; l < nlayers; l++) {
            int out = LAYERS[l].out, in = LAYERS[l].in;
            gcase *c = &cases[ncase];
            c[0] = (gcase){"", "fwd", 0, 1, M, out, in}; /* Y = X W^T */
            c[1] = (gcase){"", "dX", 0, 0, M, in, out};  /* dX = dY W */
            c[2] = (gcase){"", "dW", 1, 0, out, in, M};  /* dW = dY^T X */
            for (int j = 0; j < 3; j++) snprintf(c[j].name, sizeof c[j].name, "%s", LAYERS[l].name);
            ncase += 3;
        }
    }
    size_t maxe = 0;
    for (int c = 0; c < ncase; c++) {
        size_t m = cases[c].m, n = cases[c].n, k = cases[c].k;
        size_t e = m * k > k * n ? m * k : k * n;
        e = e > m * n ? e : m * n;
        maxe = e > maxe ? e : maxe;
    }
    float *A = rq_malloc(maxe * sizeof(float)), *B = rq_malloc(maxe * sizeof(float));
    float *C1 = rq_malloc(maxe * sizeof(float)), *C2 = rq_malloc(maxe * sizeof(float));
    if (!A || !B || !C1 || !C2) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    fill(A, maxe, 1);
    fill(B, maxe, 2);

    printf("rq_sgemm (%s) vs OpenBLAS cblas_sgemm, %d threads, best of %d", rq_gemm_isa_name(rq_gemm_get_isa()),
           threads, reps);
    if (!have_shape) printf(", M = %d tokens x %d = %d", tokens, batch, M);
    printf("\n%-8s %-4s %2s %6s %6s %6s %10s %10s %7s\n", "layer", "op", "tr", "M", "N", "K", "ours GF/s",
           "blas GF/s", "ratio");
    double log_ratio = 0.0, worst = 1e30;
    for (int c = 0; c < ncase; c++) {
        const gcase *g = &cases[c];
        int lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
        double flop = 2.0 * g->m * g->n * g->k;
        /* Each library runs its reps as a block after a pause: both thread
         * pools spin for a while after a call (OpenBLAS ~0.1 s), which would
         * steal cores from the other one. The two blocks alternate `rounds`
         * times so both see similar background load; best time wins. */
        double t_ours = 1e30, t_blas = 1e30;
        for (int round = 0; round < 2; round++) {
            for (int lib = 1; lib >= 0; lib--) {
                settle();
                for (int r = -1; r < reps; r++) {
                    double t = time_one(lib, g->ta, g->tb, g->m, g->n, g->k, A, lda, B, ldb, lib ? C1 : C2, g->n);
                    if (r >= 0 && lib) t_ours = fmin(t_ours, t);
                    if (r >= 0 && !lib) t_blas = fmin(t_blas, t);
                }
            }
        }
        /* sanity: both libraries must agree */
        double maxdiff = 0.0, maxref = 0.0;
        for (size_t i = 0; i < (size_t)g->m * g->n; i++) {
            maxdiff = fmax(maxdiff, fabs((double)C1[i] - C2[i]));
            maxref = fmax(maxref, fabs((double)C2[i]));
        }
        double ratio = t_blas / t_ours;
        printf("%-8s %-4s %c%c %6d %6d %6d %10.1f %10.1f %6.2fx%s\n", g->name, g->op, g->ta ? 'T' : 'N',
               g->tb ? 'T' : 'N', g->m, g->n, g->k, flop / t_ours * 1e-9, flop / t_blas * 1e-9, ratio,
               maxdiff > 1e-4 * (maxref + 1.0) ? "  MISMATCH" : "");
        fflush(stdout);
        log_ratio += log(ratio);
        worst = fmin(worst, ratio);
    }
    printf("geomean ratio %.2fx, worst %.2fx over %d cases\n", exp(log_ratio / ncase), worst, ncase);
    if (!have_shape) bench_attention(reps);
    rq_free(A);
    rq_free(B);
    rq_free(C1);
    rq_free(C2);
    return 0;
}
