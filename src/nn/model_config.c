/* model_config.c: [model] and [quant] config sections -> structs. */
#include <string.h>

#include "robuq/train.h"

rq_status rq_model_config_from(const rq_config *cfg, rq_dit_config *mc, rq_err *err) {
    if (!cfg || !mc) return rq_err_set(err, RQ_EINVAL, "model config: NULL argument");
    memset(mc, 0, sizeof *mc);
    mc->input_size = rq_cfg_int(cfg, "model.input_size");
    mc->in_channels = rq_cfg_int(cfg, "model.in_channels");
    mc->patch_size = rq_cfg_int(cfg, "model.patch_size");
    mc->hidden_size = rq_cfg_int(cfg, "model.hidden_size");
    mc->depth = rq_cfg_int(cfg, "model.depth");
    mc->num_heads = rq_cfg_int(cfg, "model.num_heads");
    mc->mlp_ratio = (float)rq_cfg_float(cfg, "model.mlp_ratio");
    mc->num_classes = rq_cfg_int(cfg, "model.num_classes");
    mc->learn_sigma = rq_cfg_bool(cfg, "model.learn_sigma");
    const char *arch = rq_cfg_str(cfg, "model.arch");
    if (arch && strcmp(arch, "custom")) {
        /* A preset fixes the transformer shape; a different explicit value
         * for one of those keys is a conflict (equal ones, as in a dumped
         * config, are fine). */
        if (rq_dit_preset(arch, mc, err)) return err->code;
        const char *fixed[] = {"model.depth", "model.hidden_size", "model.num_heads", "model.patch_size"};
        int want[] = {mc->depth, mc->hidden_size, mc->num_heads, mc->patch_size};
        for (int i = 0; i < 4; i++)
            if (rq_cfg_is_set(cfg, fixed[i]) && rq_cfg_int(cfg, fixed[i]) != want[i])
                return rq_err_set(err, RQ_EINVAL, "%s: [model] arch = %s has %s = %d, not %d; remove the key or use arch = custom",
                                  rq_cfg_origin(cfg, fixed[i]), arch, fixed[i] + 6, want[i], rq_cfg_int(cfg, fixed[i]));
    }
    return rq_dit_config_check(mc, err);
}

rq_status rq_quant_opts_from(const rq_config *cfg, rq_quant_opts *q, rq_err *err) {
    if (!cfg || !q) return rq_err_set(err, RQ_EINVAL, "quant config: NULL argument");
    memset(q, 0, sizeof *q);
    q->enabled = rq_cfg_bool(cfg, "quant.enabled");
    q->weight_ternary = !strcmp(rq_cfg_str(cfg, "quant.weight_bits"), "1.58");
    q->act_bits = rq_cfg_int(cfg, "quant.act_bits");
    q->adaln_act_bits = rq_cfg_int(cfg, "quant.adaln_act_bits");
    q->adaln_weight_fp = !strcmp(rq_cfg_str(cfg, "quant.adaln_weight_bits"), "fp");
    q->method = !strcmp(rq_cfg_str(cfg, "quant.quantizer"), "minmax") ? RQ_ACTQ_MINMAX : RQ_ACTQ_ROBUST;
    q->hadamard = rq_cfg_bool(cfg, "quant.hadamard");
    q->hadamard_proj_fc2_only = !strcmp(rq_cfg_str(cfg, "quant.hadamard_layers"), "proj_fc2");
    q->quantize_embedder = rq_cfg_bool(cfg, "quant.quantize_embedder");
    q->quantize_final = rq_cfg_bool(cfg, "quant.quantize_final");
    q->precision_map = rq_cfg_str(cfg, "quant.precision_map");
    q->lowrank_rank = rq_cfg_int(cfg, "quant.lowrank_rank");
    q->attn_bits = rq_cfg_int(cfg, "quant.attn_bits");
    return RQ_OK;
}

rq_status rq_diffusion_from_cfg(const rq_config *cfg, rq_diffusion *d, rq_err *err) {
    if (!cfg || !d) return rq_err_set(err, RQ_EINVAL, "rq_diffusion_from_cfg: NULL argument");
    rq_status s = rq_diffusion_init_linear(d, rq_cfg_int(cfg, "diffusion.steps"), rq_cfg_float(cfg, "diffusion.beta_start"),
                                           rq_cfg_float(cfg, "diffusion.beta_end"), err);
    if (!s) d->use_vlb = strcmp(rq_cfg_str(cfg, "diffusion.learn_sigma_loss"), "mse") != 0;
    return s;
}

void rq_sample_opts_from(const rq_config *cfg, rq_sample_opts *o) {
    if (!cfg || !o) return;
    o->steps = rq_cfg_int(cfg, "sample.steps");
    o->sampler = !strcmp(rq_cfg_str(cfg, "sample.sampler"), "ddim") ? RQ_SAMPLER_DDIM : RQ_SAMPLER_DDPM;
    o->cfg_scale = (float)rq_cfg_float(cfg, "sample.cfg_scale");
    o->cfg_ref_channels = !strcmp(rq_cfg_str(cfg, "sample.cfg_channels"), "reference");
    o->seed = (uint64_t)rq_cfg_int(cfg, "sample.seed");
}
