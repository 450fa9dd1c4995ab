/* bench_tlinear.c: integer ternary GEMM / linear vs fp32 on DiT shapes.
 *
 * For each linear of DiT-S (M = 196 tokens * 16 images by default), same
 * threads, best of reps:
 *   sgemm    rq_sgemm Y = X W^T                        (GFLOP/s)
 *   blas     OpenBLAS cblas_sgemm, same product         (GFLOP/s)
 *   tgemm    rq_tgemm int32 C = A W^T, A int8, W 2bit   (GOP/s, 2 ops per MAC)
 *   scaled   rq_tgemm_scaled (float out, dequantized)   (GOP/s)
 *   fp lin   rq_sgemm + bias: the fp32 linear           (ms)
 *   int lin  rq_tlinear_forward, A2 robust + Hadamard   (ms): rotate, quantize, GEMM
 * and the ratios tgemm/sgemm and fp lin / int lin. */
#include "robuq/common.h"
#include "robuq/gemm.h"
#include "robuq/tgemm.h"
#include "robuq/tlinear.h"
#include "robuq/tpack.h"

#include <cblas.h>
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
    {"S qkv", 1152, 384},   {"S proj", 384, 384},    {"S fc1", 1536, 384},   {"S fc2", 384, 1536},
    {"XL qkv", 3456, 1152}, {"XL proj", 1152, 1152}, {"XL fc1", 4608, 1152}, {"XL fc2", 1152, 4608},
};

static void usage(const char *prog) {
    printf("usage: %s [--threads N] [--reps N] [--tokens T] [--batch B] [--bits B] [--isa NAME] [--xl]\n"
           "  --threads N  OpenMP and OpenBLAS threads (default: omp_get_max_threads())\n"
           "  --reps N     timed repetitions per case, best is reported (default 5)\n"
           "  --tokens T   tokens per image (default 196); --batch B images (default 16)\n"
           "  --bits B     activation bits of the integer linear (default 2)\n"
           "  --isa NAME   force rq_tgemm's kernel: scalar | avx2 | avx512vnni | amx-int8\n"
           "  --xl         also the DiT-XL layers\n"
           "  --cputime    time = process CPU time / threads instead of the wall clock: on a\n"
           "               machine shared with other jobs this estimates the unloaded time\n"
           "               (threads waiting at a barrier spin, so it errs on the slow side)\n",
           prog);
}

static void fill(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

static int g_cpu = 0; /* > 0: process CPU time / g_cpu threads instead of wall time */
static double now(void) {
    if (!g_cpu) return rq_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ((double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec) / g_cpu;
}

static void settle(void) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

enum { K_SGEMM, K_BLAS, K_TGEMM, K_SCALED, K_FPLIN, K_INTLIN, K_N };

int main(int argc, char **argv) {
    int threads = omp_get_max_threads(), reps = 5, tokens = 196, batch = 16, bits = 2, xl = 0, cpu = 0;
    rq_tgemm_isa isa = RQ_TGEMM_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc) bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--xl")) xl = 1;
        else if (!strcmp(argv[i], "--cputime")) cpu = 1;
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *s = argv[++i];
            if (!strcmp(s, "scalar")) isa = RQ_TGEMM_SCALAR;
            else if (!strcmp(s, "avx2")) isa = RQ_TGEMM_AVX2;
            else if (!strcmp(s, "avx512vnni")) isa = RQ_TGEMM_VNNI;
            else if (!strcmp(s, "amx-int8")) isa = RQ_TGEMM_AMX;
            else {
                fprintf(stderr, "bench_tlinear: unknown isa '%s' (scalar, avx2, avx512vnni, amx-int8)\n", s);
                return 2;
            }
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(argv[0]);
            return 0;
        } else {
            fprintf(stderr, "bench_tlinear: unknown argument '%s' (--help lists the options)\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || tokens < 1 || batch < 1 || bits < 1 || bits > 8) {
        fprintf(stderr, "bench_tlinear: threads, reps, tokens, batch must be >= 1 and bits 1..8\n");
        return 2;
    }
    g_cpu = cpu ? threads : 0;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    isa = rq_tgemm_set_isa(isa);
    const int M = tokens * batch;
    printf("# M=%d threads=%d reps=%d tgemm=%s sgemm=%s A%d robust+hadamard, %s time\n", M, threads, reps,
           rq_tgemm_isa_name(isa), rq_gemm_isa_name(rq_gemm_get_isa()), bits, cpu ? "CPU" : "wall");
    printf("%-8s %5s %5s | %8s %8s %8s %8s | %7s %7s | %6s %6s\n", "layer", "K", "N", "sgemm", "blas", "tgemm",
           "scaled", "fp ms", "int ms", "tg/sg", "fp/int");
    const int nl = xl ? 8 : 4;
    for (int l = 0; l < nl; l++) {
        const int N = LAYERS[l].out, K = LAYERS[l].in;
        float *X = rq_malloc((size_t)M * K * sizeof(float)), *Wf = rq_malloc((size_t)N * K * sizeof(float));
        float *Y = rq_malloc((size_t)M * N * sizeof(float)), *b = rq_malloc((size_t)N * sizeof(float));
        int8_t *A = rq_malloc((size_t)M * K);
        int32_t *C = rq_malloc((size_t)M * N * sizeof(int32_t));
        float *rs = rq_malloc((size_t)M * sizeof(float));
        if (!X || !Wf || !Y || !b || !A || !C || !rs) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        fill(X, (size_t)M * K, 1);
        fill(Wf, (size_t)N * K, 2);
        fill(b, (size_t)N, 3);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (int8_t)(((i * 2654435761u) >> 13) % 7) - 3;
        for (int i = 0; i < M; i++) rs[i] = 0.01f;
        rq_tlinear L;
        rq_err e = {0};
        if (rq_tlinear_init_float(&L, Wf, b, N, K, bits, RQ_ACTQ_ROBUST, 1, &e) || rq_tlinear_reserve(&L, M, &e)) {
            fprintf(stderr, "tlinear: %s\n", e.msg);
            return 1;
        }
        /* reps outer, kernels inner: on a shared machine the load changes
         * slowly, so interleaving keeps the ratios fair; best of reps */
        double best[K_N];
        for (int k = 0; k < K_N; k++) best[k] = 1e30;
        for (int r = 0; r < reps + 1; r++) { /* round 0 warms up */
            for (int k = 0; k < K_N; k++) {
                double t0 = now();
                switch (k) {
                case K_SGEMM: rq_sgemm(0, 1, M, N, K, 1.0f, X, K, Wf, K, 0.0f, Y, N); break;
                case K_BLAS:
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, Wf, K, 0.0f, Y, N);
                    break;
                case K_TGEMM: rq_tgemm(M, N, K, A, K, L.w, C, N, NULL); break;
                case K_SCALED: rq_tgemm_scaled(M, N, K, A, K, L.w, rs, L.gamma, L.bias, Y, N, NULL); break;
                case K_FPLIN:
                    rq_sgemm(0, 1, M, N, K, 1.0f, X, K, Wf, K, 0.0f, Y, N);
#pragma omp parallel for schedule(static)
                    for (int m = 0; m < M; m++)
                        for (int n = 0; n < N; n++) Y[(size_t)m * N + n] += b[n];
                    break;
                case K_INTLIN: rq_tlinear_forward(&L, X, Y, M, NULL); break;
                }
                double t = now() - t0;
                if (k == K_BLAS) settle(); /* let OpenBLAS's spinning threads sleep */
                if (r > 0 && t < best[k]) best[k] = t;
            }
        }
        const double ops = 2.0 * M * N * K * 1e-9;
        printf("%-8s %5d %5d | %8.1f %8.1f %8.1f %8.1f | %7.2f %7.2f | %6.2f %6.2f\n", LAYERS[l].name, K, N,
               ops / best[K_SGEMM], ops / best[K_BLAS], ops / best[K_TGEMM], ops / best[K_SCALED],
               best[K_FPLIN] * 1e3, best[K_INTLIN] * 1e3, best[K_SGEMM] / best[K_TGEMM],
               best[K_FPLIN] / best[K_INTLIN]);
        fflush(stdout);
        rq_tlinear_free(&L);
        rq_free(X), rq_free(Wf), rq_free(Y), rq_free(b), rq_free(A), rq_free(C), rq_free(rs);
    }
    return 0;
}
