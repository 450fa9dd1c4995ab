/* robuq-sample: class-conditional samples from a checkpoint or an export
 * (robuq-export: integer W1.58 inference) as a PNG grid.
 *
 *   robuq-sample CKPT.h5|EXPORT.h5 [--class 0,3,7] [--per-class 8] [--cfg 4.0]
 *                [--steps 250] [--sampler ddpm|ddim] [--seed 0]
 *                [--weights ema|params] [--out samples.png]
 *
 * One row per class. Defaults come from the [sample] section stored in the
 * checkpoint's config; options override them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/diffusion.h"
#include "robuq/export.h"
#include "robuq/image.h"
#include "robuq/train.h"
#include "robuq/vae.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: robuq-sample CKPT.h5|EXPORT.h5 [options]\n"
            "A robuq-export file runs the integer kernels (ternary x int8); a checkpoint runs fp32/fake-quant.\n"
            "  --class LIST      comma-separated class ids (default: all, at most 10 rows... or [sample] classes)\n"
            "  --per-class N     images per class / grid columns (default [sample] per_class)\n"
            "  --cfg S           classifier-free guidance scale, 1 = off (default [sample] cfg_scale)\n"
            "  --steps N         respaced sampling steps (default [sample] steps)\n"
            "  --sampler ddpm|ddim\n"
            "  --cfg-channels all|reference  guide all eps channels, or the first 3 as the DiT code\n"
            "  --seed N          noise seed\n"
            "  --weights ema|params  which weights of a checkpoint to use (default ema)\n"
            "  --out FILE.png    output grid (default [sample] out)\n"
            "  --vae FILE.safetensors  decode latents with a Stable Diffusion VAE (AutoencoderKL decoder,\n"
            "                    diffusers or ldm names; latents are divided by 0.18215) into RGB images\n"
            "  --vae-groups N    GroupNorm groups of that VAE (default 32, as Stable Diffusion)\n");
}

static int parse_int(const char *s, const char *opt, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < 0 || v > 1000000000) {
        fprintf(stderr, "robuq-sample: %s expects a non-negative integer, got '%s'\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The architecture comes from the tensor shapes; the group count cannot. */
static rq_status load_vae(const char *path, int groups, rq_vae **vae, rq_err *err) {
    rq_safetensors st;
    rq_vae_config vc;
    if (rq_st_open(path, &st, err)) return err->code;
    rq_status s = rq_vae_config_infer(&st, &vc, NULL, NULL, 0, err);
    vc.norm_groups = groups;
    if (!s) s = rq_vae_load_st(&st, &vc, vae, err);
    rq_st_close(&st);
    return s;
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *vae_path = NULL, *weights = "ema", *sampler = NULL, *classes_s = NULL, *cfgch = NULL;
    int per_class = -1, steps = -1, seed = -1, vae_groups = 32;
    float cfg_scale = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (ckpt) {
                fprintf(stderr, "robuq-sample: more than one checkpoint given ('%s')\n", a);
                return 2;
            }
            ckpt = a;
            continue;
        }
        if (!has) {
            fprintf(stderr, "robuq-sample: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--class")) classes_s = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--vae")) vae_path = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--sampler")) sampler = v;
        else if (!strcmp(a, "--cfg-channels")) cfgch = v;
        else if (!strcmp(a, "--per-class")) { if (parse_int(v, a, &per_class)) return 2; }
        else if (!strcmp(a, "--steps")) { if (parse_int(v, a, &steps)) return 2; }
        else if (!strcmp(a, "--seed")) { if (parse_int(v, a, &seed)) return 2; }
        else if (!strcmp(a, "--vae-groups")) { if (parse_int(v, a, &vae_groups) || vae_groups < 1) return 2; }
        else if (!strcmp(a, "--cfg")) {
            char *end;
            cfg_scale = strtof(v, &end);
            if (*end || !(cfg_scale >= 0)) {
                fprintf(stderr, "robuq-sample: --cfg expects a number >= 0, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "robuq-sample: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!ckpt) {
        usage(stderr);
        return 2;
    }
    if (strcmp(weights, "ema") && strcmp(weights, "params")) {
        fprintf(stderr, "robuq-sample: --weights must be ema or params, got '%s'\n", weights);
        return 2;
    }
    rq_err err = {0};
    rq_vae *vae = NULL;
    float *rgb = NULL;
    rq_dit m;
    rq_config *cfg = NULL;
    rq_diffusion d = {0};
    if (rq_model_load_any(ckpt, weights, &m, &cfg, &err)) {
        fprintf(stderr, "robuq-sample: %s\n", err.msg);
        return 1;
    }
    /* Options override the checkpoint's [sample] section (validated there). */
    char set[256];
    if (sampler) { snprintf(set, sizeof set, "sample.sampler=%s", sampler); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (cfgch) { snprintf(set, sizeof set, "sample.cfg_channels=%s", cfgch); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (classes_s) { snprintf(set, sizeof set, "sample.classes=%s", classes_s); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (steps >= 0) { snprintf(set, sizeof set, "sample.steps=%d", steps); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (per_class >= 0) { snprintf(set, sizeof set, "sample.per_class=%d", per_class); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (seed >= 0) { snprintf(set, sizeof set, "sample.seed=%d", seed); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (cfg_scale >= 0) { snprintf(set, sizeof set, "sample.cfg_scale=%g", (double)cfg_scale); if (rq_config_set(cfg, set, &err)) goto fail; }
    if (!out) out = rq_cfg_str(cfg, "sample.out");

    int classes[1024], nc = rq_cfg_ints(cfg, "sample.classes", classes, 1024);
    if (nc > 1024) {
        rq_err_set(&err, RQ_EINVAL, "--class: at most 1024 classes");
        goto fail;
    }
    if (nc <= 0) {
        nc = m.cfg.num_classes < 1024 ? m.cfg.num_classes : 1024;
        for (int i = 0; i < nc; i++) classes[i] = i;
    }
    for (int i = 0; i < nc; i++)
        if (classes[i] >= m.cfg.num_classes) {
            rq_err_set(&err, RQ_EINVAL, "class %d: the model has classes 0..%d", classes[i], m.cfg.num_classes - 1);
            goto fail;
        }
    int per = rq_cfg_int(cfg, "sample.per_class"), N = nc * per;
    rq_sample_opts o;
    rq_sample_opts_from(cfg, &o);
    if (rq_diffusion_from_cfg(cfg, &d, &err))
        goto fail;
    int *y = malloc((size_t)N * sizeof(int));
    float *x = malloc((size_t)N * m.cfg.in_channels * m.cfg.input_size * m.cfg.input_size * sizeof(float));
    if (!y || !x) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory for %d samples", N);
        goto fail;
    }
    for (int i = 0; i < N; i++) y[i] = classes[i / per];
    fprintf(stderr, "robuq-sample: %s (%s), %d classes x %d, %s %d steps, cfg %.2f\n", ckpt,
            rq_export_is(ckpt) ? "export, integer kernels" : !strcmp(weights, "ema") ? "ema weights" : "params", nc, per,
            o.sampler == RQ_SAMPLER_DDIM ? "ddim" : "ddpm", o.steps, (double)o.cfg_scale);
    /* the VAE is loaded before sampling so a bad file fails fast */
    if (vae_path && load_vae(vae_path, vae_groups, &vae, &err)) goto fail;
    double t0 = rq_now();
    if (rq_sample(&m, &d, &o, y, N, x, 1, &err)) goto fail;
    if (vae) {
        int S = m.cfg.input_size, up = rq_vae_upscale(vae);
        rgb = malloc((size_t)N * 3 * (S * up) * (S * up) * sizeof(float));
        if (!rgb) {
            rq_err_set(&err, RQ_ENOMEM, "out of memory for %d decoded images", N);
            goto fail;
        }
        fprintf(stderr, "robuq-sample: decoding %d latents with %s\n", N, vae_path);
        if (rq_vae_decode(vae, x, N, S, S, rgb, &err) || rq_image_grid_save(out, rgb, N, 3, S * up, S * up, per, &err))
            goto fail;
    } else if (rq_image_grid_save(out, x, N, m.cfg.in_channels, m.cfg.input_size, m.cfg.input_size, per, &err)) {
        goto fail;
    }
    printf("wrote %s (%d x %d images, %.1f s)\n", out, nc, per, rq_now() - t0);
    free(y), free(x), free(rgb);
    rq_vae_free(vae);
    rq_diffusion_free(&d);
    rq_dit_free(&m);
    rq_config_free(cfg);
    return 0;
fail:
    fprintf(stderr, "robuq-sample: %s\n", err.msg);
    rq_vae_free(vae);
    rq_diffusion_free(&d);
    rq_dit_free(&m);
    rq_config_free(cfg);
    return 1;
}
