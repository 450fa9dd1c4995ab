/* checkpoint.c: HDF5 checkpoints (format "robuq-ckpt"), written atomically.
 *
 *   attrs: format, version, step, config (resolved INI text), arch summary
 *   /params/<name>, /ema/<name>, /optim/m/<name>, /optim/v/<name>, /optim/t
 *   /rng (4 x uint64 as int64), /loader (int64 state), /log/{step,loss}
 *   /quant/a_bits (int32 per linear, -1 = FP) with names in attr "layers" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "robuq/h5io.h"
#include "robuq/train.h"

static rq_status write_param_set(rq_h5_writer *w, const char *group, const rq_dit *m, float *const *bufs,
                                 rq_err *err) {
    for (int i = 0; i < m->n_params; i++) {
        const rq_tensor *p = m->params[i];
        char path[192];
        snprintf(path, sizeof path, "%s/%s", group, p->name);
        long shape[RQ_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (rq_h5w_write_f32(w, path, bufs ? bufs[i] : p->data, p->ndim, shape, err)) return err->code;
    }
    return RQ_OK;
}

rq_status rq_ckpt_save(const char *path, const rq_dit *m, const rq_ema *ema, const rq_adamw *opt,
                       const rq_ckpt_meta *meta, rq_err *err) {
    if (!path || !m || !meta) return rq_err_set(err, RQ_EINVAL, "checkpoint save: NULL argument");
    rq_h5_writer *w = rq_h5w_open(path, err);
    if (!w) return err->code;
    const rq_dit_config *c = &m->cfg;
    int arch[9] = {c->input_size, c->in_channels, c->patch_size, c->hidden_size, c->depth,
                   c->num_heads, c->num_classes, c->learn_sigma, (int)(c->mlp_ratio * 1000)};
    int64_t rng[4];
    for (int i = 0; i < 4; i++) rng[i] = (int64_t)meta->rng.s[i];
    rq_dit_linear *ls[1024];
    int n_lin = rq_dit_linears((rq_dit *)m, ls, NULL, 1024);
    int32_t abits[1024];
    for (int i = 0; i < n_lin; i++) abits[i] = ls[i]->q ? ls[i]->q->a_bits : -1;
    if (rq_h5w_attr_str(w, "/", "format", RQ_CKPT_FORMAT, err) ||
        rq_h5w_attr_i64(w, "/", "version", RQ_CKPT_VERSION, err) ||
        rq_h5w_attr_i64(w, "/", "step", meta->step, err) ||
        rq_h5w_attr_str(w, "/", "config", meta->config_text ? meta->config_text : "", err) ||
        rq_h5w_attr_ints(w, "/", "arch", arch, 9, err) ||
        write_param_set(w, "/params", m, NULL, err) ||
        (ema && write_param_set(w, "/ema", m, ema->w, err)) ||
        (opt && (write_param_set(w, "/optim/m", m, opt->m, err) || write_param_set(w, "/optim/v", m, opt->v, err) ||
                 rq_h5w_write_i64(w, "/optim/t", (int64_t[]){opt->t}, 1, (long[]){1}, err))) ||
        rq_h5w_write_i64(w, "/rng", rng, 1, (long[]){4}, err) ||
        (meta->loader_len > 0 && rq_h5w_write_i64(w, "/loader", meta->loader, 1, (long[]){meta->loader_len}, err)) ||
        rq_h5w_write_i32(w, "/quant/a_bits", abits, 1, (long[]){n_lin}, err) ||
        (meta->log_n > 0 && (rq_h5w_write_f32(w, "/log/step", meta->log_step, 1, (long[]){meta->log_n}, err) ||
                             rq_h5w_write_f32(w, "/log/loss", meta->log_loss, 1, (long[]){meta->log_n}, err)))) {
        rq_h5w_abort(w);
        return err->code;
    }
    return rq_h5w_close_commit(w, err);
}

static rq_status check_format(rq_h5_reader *r, const char *path, rq_err *err) {
    char fmt[64];
    int64_t ver;
    if (rq_h5r_get_str(r, "/", "format", fmt, sizeof fmt, err)) return err->code;
    char show[96];
    if (strcmp(fmt, RQ_CKPT_FORMAT))
        return rq_err_set(err, RQ_EFORMAT, "%s: format is '%s', expected '%s'", path, rq_printable(fmt, show, sizeof show),
                          RQ_CKPT_FORMAT);
    if (rq_h5r_get_i64(r, "/", "version", &ver, err)) return err->code;
    if (ver != RQ_CKPT_VERSION)
        return rq_err_set(err, RQ_EFORMAT, "%s: checkpoint version %lld, this build reads %d", path,
                          (long long)ver, RQ_CKPT_VERSION);
    return RQ_OK;
}

rq_status rq_ckpt_read_config(const char *path, char **config_text, rq_err *err) {
    if (!path || !config_text) return rq_err_set(err, RQ_EINVAL, "checkpoint: NULL argument");
    rq_h5_reader *r = rq_h5r_open(path, err);
    if (!r) return err->code;
    rq_status s = check_format(r, path, err);
    size_t cap = 1 << 20;
    char *buf = s ? NULL : malloc(cap);
    if (!s && !buf) s = rq_err_set(err, RQ_ENOMEM, "checkpoint: out of memory");
    if (!s) s = rq_h5r_get_str(r, "/", "config", buf, cap, err);
    rq_h5r_close(r);
    if (s) {
        free(buf);
        return s;
    }
    *config_text = buf;
    return RQ_OK;
}

/* Reads one parameter set; every model parameter must be present with the
 * same shape, and the file may not hold extra ones. */
static rq_status read_param_set(rq_h5_reader *r, const char *path, const char *group, const rq_dit *m,
                                float **bufs, rq_err *err) {
    for (int i = 0; i < m->n_params; i++) {
        rq_tensor *p = m->params[i];
        char dpath[192];
        snprintf(dpath, sizeof dpath, "%s/%s", group, p->name);
        if (!rq_h5r_exists(r, dpath)) return rq_err_set(err, RQ_EFORMAT, "%s: missing %s", path, dpath);
        long shape[RQ_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (rq_h5r_check_shape(r, dpath, p->ndim, shape, err) ||
            rq_h5r_read_f32(r, dpath, bufs ? bufs[i] : p->data, p->n, err))
            return err->code;
    }
    char **names;
    int n;
    if (rq_h5r_list_datasets(r, group, 0, &names, &n, err)) return err->code;
    rq_status s = RQ_OK;
    for (int i = 0; i < n && !s; i++) {
        const char *base = strrchr(names[i], '/') ? strrchr(names[i], '/') + 1 : names[i];
        char show[128];
        if (!rq_dit_param(m, base))
            s = rq_err_set(err, RQ_EFORMAT, "%s: unexpected tensor %s/%s", path, group, rq_printable(base, show, sizeof show));
    }
    rq_h5_names_free(names, n);
    return s;
}

rq_status rq_ckpt_load(const char *path, rq_dit *m, const char *which, rq_ema *ema, rq_adamw *opt,
                       rq_ckpt_meta *meta, rq_err *err) {
    if (!path || !m || !which) return rq_err_set(err, RQ_EINVAL, "checkpoint load: NULL argument");
    if (strcmp(which, "params") && strcmp(which, "ema"))
        return rq_err_set(err, RQ_EINVAL, "checkpoint load: weights must be 'params' or 'ema', got '%s'", which);
    rq_h5_reader *r = rq_h5r_open(path, err);
    if (!r) return err->code;
    rq_status s = check_format(r, path, err);
    char group[16];
    snprintf(group, sizeof group, "/%s", which);
    if (!s) s = read_param_set(r, path, group, m, NULL, err);
    if (!s && ema) s = read_param_set(r, path, "/ema", m, ema->w, err);
    if (!s && opt) {
        int64_t t;
        s = read_param_set(r, path, "/optim/m", m, opt->m, err);
        if (!s) s = read_param_set(r, path, "/optim/v", m, opt->v, err);
        if (!s) s = rq_h5r_read_i64(r, "/optim/t", &t, 1, err);
        if (!s && t < 0) s = rq_err_set(err, RQ_EFORMAT, "%s: /optim/t = %lld is negative", path, (long long)t);
        if (!s) opt->t = (long)t;
    }
    if (!s && meta) {
        memset(meta, 0, sizeof *meta);
        int64_t step, rng[4];
        s = rq_h5r_get_i64(r, "/", "step", &step, err);
        if (!s) s = rq_h5r_read_i64(r, "/rng", rng, 4, err);
        if (!s && step < 0) s = rq_err_set(err, RQ_EFORMAT, "%s: step %lld is negative", path, (long long)step);
        if (!s) {
            meta->step = (long)step;
            for (int i = 0; i < 4; i++) meta->rng.s[i] = (uint64_t)rng[i];
        }
        if (!s && rq_h5r_exists(r, "/loader")) {
            int nd;
            long sh[RQ_H5_MAX_DIMS];
            s = rq_h5r_shape(r, "/loader", &nd, sh, err);
            if (!s && (nd != 1 || sh[0] > 8)) s = rq_err_set(err, RQ_EFORMAT, "%s: bad /loader shape", path);
            if (!s) s = rq_h5r_read_i64(r, "/loader", meta->loader, sh[0], err);
            if (!s) meta->loader_len = (int)sh[0];
        }
        if (!s && rq_h5r_exists(r, "/log/step")) {
            int nd;
            long sh[RQ_H5_MAX_DIMS];
            s = rq_h5r_shape(r, "/log/step", &nd, sh, err);
            /* one entry per step; /log/loss must match (checked by the read) */
            if (!s && (nd != 1 || sh[0] > (1L << 31)))
                s = rq_err_set(err, RQ_EFORMAT, "%s: /log/step must be 1-D with at most 2^31 entries", path);
            if (!s) {
                meta->log_n = sh[0];
                meta->log_step = malloc((size_t)(sh[0] + 1) * sizeof(float));
                meta->log_loss = malloc((size_t)(sh[0] + 1) * sizeof(float));
                if (!meta->log_step || !meta->log_loss) s = rq_err_set(err, RQ_ENOMEM, "checkpoint: out of memory");
            }
            if (!s) s = rq_h5r_read_f32(r, "/log/step", meta->log_step, sh[0], err);
            if (!s) s = rq_h5r_read_f32(r, "/log/loss", meta->log_loss, sh[0], err);
        }
    }
    rq_h5r_close(r);
    return s;
}

void rq_ckpt_meta_free(rq_ckpt_meta *meta) {
    if (!meta) return;
    free(meta->config_text);
    free(meta->log_step);
    free(meta->log_loss);
    memset(meta, 0, sizeof *meta);
}

rq_status rq_model_from_ckpt(const char *path, const char *which, rq_dit *m, rq_config **cfg_out, rq_err *err) {
    char *text = NULL;
    if (rq_ckpt_read_config(path, &text, err)) return err->code;
    rq_config *cfg = rq_config_new();
    rq_dit_config mc;
    rq_quant_opts qo;
    rq_status s = cfg ? rq_config_load_string(cfg, text, path, err) : rq_err_set(err, RQ_ENOMEM, "out of memory");
    free(text);
    if (!s) s = rq_model_config_from(cfg, &mc, err);
    if (!s) s = rq_quant_opts_from(cfg, &qo, err);
    if (!s) s = rq_dit_init(m, &mc, 0, err);
    if (!s) s = rq_dit_add_lowrank(m, &qo, err); /* so the factors load with the rest */
    if (!s) s = rq_ckpt_load(path, m, which, NULL, NULL, NULL, err);
    if (!s) s = rq_dit_quantize(m, &qo, err);
    if (s || !cfg_out) rq_config_free(cfg);
    else *cfg_out = cfg;
    return s;
}
