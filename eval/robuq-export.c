/* robuq-export: pack a QAT checkpoint into a W1.58 export for integer inference.
 *
 *   robuq-export CKPT.h5 OUT.h5 [--packing trit5|2bit] [--weights ema|params]
 *
 * The checkpoint's stored config decides which linears are ternary and
 * their activation bits (including a [quant] precision_map); the export
 * holds everything robuq-sample needs (format in include/robuq/export.h).
 * Exit: 0 ok, 1 error (one line naming the file), 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "robuq/export.h"
#include "robuq/h5io.h"
#include "robuq/train.h"

#define PROG "robuq-export"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " CKPT.h5 OUT.h5 [options]\n"
            "Packs the ternary linears of a QAT checkpoint (W' = W H, per-channel scale) with their\n"
            "activation bits and Hadamard sizes; everything else is stored as fp32.\n"
            "  --packing trit5|2bit   5 trits per byte (1.6 bits/weight, default) or the 2-bit kernel layout\n"
            "  --weights ema|params   which weights of the checkpoint (default ema)\n"
            "Prints: layers, ternary weights, bits per weight, file size and the ratio to fp32.\n");
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *packing_s = "trit5", *weights = "ema";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--packing") || !strcmp(a, "--weights")) {
            if (i + 1 >= argc) {
                fprintf(stderr, PROG ": %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--packing")) packing_s = argv[++i];
            else weights = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, PROG ": unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!ckpt) {
            ckpt = a;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, PROG ": unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!ckpt || !out) {
        usage(stderr);
        return 2;
    }
    rq_err err = {0};
    rq_tpack_format packing;
    if (rq_tpack_format_parse(packing_s, &packing, &err)) {
        fprintf(stderr, PROG ": --packing must be trit5 or 2bit, got '%s'\n", packing_s);
        return 2;
    }
    if (strcmp(weights, "ema") && strcmp(weights, "params")) {
        fprintf(stderr, PROG ": --weights must be ema or params, got '%s'\n", weights);
        return 2;
    }

    rq_dit m = {0};
    char *text = NULL;
    rq_ckpt_meta meta = {0};
    if (rq_model_from_ckpt(ckpt, weights, &m, NULL, &err) || rq_ckpt_read_config(ckpt, &text, &err)) goto fail;
    {
        rq_h5_reader *r = rq_h5r_open(ckpt, &err);
        int64_t step = 0;
        if (r) {
            rq_err ignore = {0};
            rq_h5r_get_i64(r, "/", "step", &step, &ignore);
            rq_h5r_close(r);
        }
        meta.step = (long)step;
    }
    int ternary = 0;
    rq_dit_linear *ls[1024];
    int n = rq_dit_linears(&m, ls, NULL, 1024);
    for (int i = 0; i < n && i < 1024; i++) ternary += ls[i]->q && ls[i]->q->w_ternary;
    if (!ternary) {
        rq_err_set(&err, RQ_EINVAL, "%s: no ternary layers ([quant] enabled = off?): export a QAT checkpoint", ckpt);
        goto fail;
    }
    rq_export_opts o = {.packing = packing, .config_text = text, .source = ckpt, .weights = weights, .step = meta.step};
    rq_export_stats st;
    double t0 = rq_now();
    if (rq_export_write(out, &m, &o, &st, &err)) goto fail;
    struct stat sb;
    long ck_bytes = stat(ckpt, &sb) ? 0 : (long)sb.st_size;
    long fp32_bytes = 4 * rq_dit_num_params(&m);
    printf("wrote %s (%.1f s)\n", out, rq_now() - t0);
    printf("  ternary layers   %d (fp layers %d)\n", st.ternary_layers, st.fp_layers);
    printf("  ternary weights  %ld in %ld bytes (%s): %.3f bits/weight\n", st.ternary_weights, st.packed_bytes,
           rq_tpack_format_name(packing), st.bits_per_weight);
    printf("  fp32 values      %ld (embedders, final layer, scales, biases)\n", st.fp_params);
    printf("  file             %.2f MB; fp32 weights %.2f MB (%.1fx smaller); checkpoint %.2f MB\n",
           st.file_bytes / 1e6, fp32_bytes / 1e6, st.file_bytes ? (double)fp32_bytes / st.file_bytes : 0,
           ck_bytes / 1e6);
    free(text);
    rq_dit_free(&m);
    return 0;
fail:
    fprintf(stderr, PROG ": %s\n", err.msg);
    free(text);
    rq_dit_free(&m);
    return 1;
}
