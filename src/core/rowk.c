/* rowk.c: which form of the row kernels runs (robuq/fastmath.h). */
#include "robuq/fastmath.h"

static int avx512_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

static rq_rowk_isa g_isa = RQ_ROWK_AUTO; /* AUTO = not chosen yet */

rq_rowk_isa rq_rowk_set_isa(rq_rowk_isa isa) {
    if (isa != RQ_ROWK_GENERIC) isa = avx512_supported() ? RQ_ROWK_AVX512 : RQ_ROWK_GENERIC;
    g_isa = isa;
    return isa;
}

rq_rowk_isa rq_rowk_get_isa(void) {
    if (g_isa == RQ_ROWK_AUTO) rq_rowk_set_isa(RQ_ROWK_AUTO); /* benign race: same answer */
    return g_isa;
}

const char *rq_rowk_isa_name(rq_rowk_isa isa) {
    switch (isa) {
    case RQ_ROWK_AUTO: return "auto";
    case RQ_ROWK_GENERIC: return "generic";
    case RQ_ROWK_AVX512: return "avx512";
    }
    return "unknown";
}
