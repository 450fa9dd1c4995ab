/* fuzz_h5check.h: what a loaded dataset / checkpoint file must satisfy;
 * shared by fuzz_dataset.c, fuzz_ckpt.c (byte-level mutations of valid
 * files) and fuzz_h5gen.c (structurally valid HDF5 with wrong contents). */
#ifndef ROBUQ_FUZZ_H5CHECK_H
#define ROBUQ_FUZZ_H5CHECK_H

#include <math.h>

#include "fuzz_common.h"
#include "robuq/config.h"
#include "robuq/dataset.h"
#include "robuq/train.h"

/* rq_dataset_load: a loaded dataset is consistent (n >= 1, positive sizes,
 * labels in [0, num_classes), finite values, pixels in [-1, 1]) and the
 * batch loader runs over it; an error is one line naming the file. */
static void fz_check_dataset_file(const char *path) {
    rq_dataset ds;
    rq_err e = {0};
    if (rq_dataset_load(path, &ds, &e) == RQ_OK) {
        long per = rq_dataset_sample_size(&ds);
        if (ds.n < 1 || ds.c < 1 || ds.h < 1 || ds.w < 1 || ds.num_classes < 1 || !ds.x || !ds.labels)
            fz_fail("dataset: ok with n=%ld c=%d h=%d w=%d classes=%d", ds.n, ds.c, ds.h, ds.w, ds.num_classes);
        for (long i = 0; i < ds.n; i++)
            if (ds.labels[i] < 0 || ds.labels[i] >= ds.num_classes) fz_fail("dataset: label %d", (int)ds.labels[i]);
        for (long i = 0; i < ds.n * per; i++) {
            if (!isfinite(ds.x[i])) fz_fail("dataset: non-finite value at %ld", i);
            if (ds.kind == RQ_DATA_IMAGES && (ds.x[i] < -1.0f || ds.x[i] > 1.0f)) fz_fail("dataset: pixel %g", ds.x[i]);
        }
        rq_loader l;
        rq_err el = {0};
        if (rq_loader_init(&l, &ds, 1, 1, 1, &el) != RQ_OK) fz_fail("loader init: %s", el.msg);
        int B = 3;
        float *x = malloc(sizeof(float) * (size_t)(B * per));
        int32_t y[3];
        if (x && rq_loader_next(&l, x, y, B) != RQ_OK) fz_fail("loader next failed");
        free(x);
        rq_loader_free(&l);
        rq_dataset_free(&ds);
    } else {
        fz_check_msg(&e, path, "dataset");
    }
}

/* A model small enough to build on every input. */
static int ckpt_model_small(const rq_dit_config *c) {
    return c->hidden_size <= 64 && c->depth <= 4 && c->input_size <= 32 && c->in_channels <= 4 &&
           c->num_classes <= 100 && c->mlp_ratio <= 8;
}

/* The path robuq-train (resume) and robuq-sample take: read the stored
 * config, build the model it describes (skipped when large: the fuzzer is
 * after parsing bugs, not allocation limits), load params + EMA + optimizer
 * + meta, then the EMA weights alone. Errors: one line naming the file. */
static void fz_check_ckpt_file(const char *path) {
    char *text = NULL;
    rq_err e = {0};
    if (rq_ckpt_read_config(path, &text, &e) != RQ_OK) {
        fz_check_msg(&e, path, "read_config");
        return;
    }
    rq_config *cfg = rq_config_new();
    rq_dit_config mc;
    rq_quant_opts qo;
    rq_err ec = {0};
    if (rq_config_load_string(cfg, text, path, &ec) || rq_model_config_from(cfg, &mc, &ec) ||
        rq_quant_opts_from(cfg, &qo, &ec) || !ckpt_model_small(&mc)) {
        free(text);
        rq_config_free(cfg);
        return;
    }
    free(text);
    rq_dit m;
    rq_ema ema;
    rq_adamw opt;
    rq_err em = {0};
    if (rq_dit_init(&m, &mc, 0, &em) || rq_ema_init(&ema, &m, &em) || rq_adamw_init(&opt, &m, 1e-3f, 0.9f, 0.999f, 0, &em))
        fz_fail("tiny model init: %s", em.msg);
    rq_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    rq_err el = {0};
    if (rq_ckpt_load(path, &m, "params", &ema, &opt, &meta, &el) == RQ_OK) {
        if (meta.loader_len < 0 || meta.loader_len > 8) fz_fail("ckpt: loader_len %d", meta.loader_len);
        if (meta.log_n < 0 || (meta.log_n > 0 && (!meta.log_step || !meta.log_loss))) fz_fail("ckpt: log_n %ld", meta.log_n);
        double s = 0;
        for (long i = 0; i < meta.log_n; i++) s += meta.log_step[i] + meta.log_loss[i];
        (void)s;
        rq_err eq = {0};
        if (rq_dit_quantize(&m, &qo, &eq) != RQ_OK) fz_check_msg(&eq, NULL, "quantize");
    } else {
        fz_check_msg(&el, path, "ckpt load");
    }
    rq_ckpt_meta_free(&meta);
    rq_err ee = {0};
    if (rq_ckpt_load(path, &m, "ema", NULL, NULL, NULL, &ee) != RQ_OK) fz_check_msg(&ee, path, "ckpt load ema");
    rq_adamw_free(&opt);
    rq_ema_free(&ema);
    rq_dit_free(&m);
    rq_config_free(cfg);
}

#endif
