/* config_schema.c: every configuration key of the project, in one table.
 *
 * Defaults describe the embedded demo: a DiT-S/2-sized model on Fashion-MNIST
 * (28x28x1, 10 classes) with the DiT reference training recipe. Adding a key
 * here is all it takes for it to be parsed, validated, dumped and listed in
 * --help; the code that uses it reads it with rq_cfg_*("section.key"). */
#include "robuq/config.h"

#define I_MAX 2147483647.0
#define DIT_ARCHS "custom|DiT-S/2|DiT-S/4|DiT-S/8|DiT-B/2|DiT-B/4|DiT-B/8|DiT-L/2|DiT-L/4|DiT-L/8|" \
                  "DiT-XL/2|DiT-XL/4|DiT-XL/8"

/* Shorthands keep the table one row per key. */
#define INT(s, k, d, lo, hi, h) {s, k, RQ_CFG_INT, d, lo, hi, NULL, h}
#define FLT(s, k, d, lo, hi, h) {s, k, RQ_CFG_FLOAT, d, lo, hi, NULL, h}
#define BOOL(s, k, d, h) {s, k, RQ_CFG_BOOL, d, 0, 0, NULL, h}
#define PATH(s, k, d, h) {s, k, RQ_CFG_PATH, d, 0, 0, NULL, h}
#define ENUM(s, k, d, c, h) {s, k, RQ_CFG_ENUM, d, 0, 0, c, h}
#define INTS(s, k, d, lo, hi, h) {s, k, RQ_CFG_INTS, d, lo, hi, NULL, h}

static const rq_cfg_spec SCHEMA[] = {
    /* ---- model ---- */
    ENUM("model", "arch", "custom", DIT_ARCHS,
         "DiT preset; a preset fixes depth, hidden_size, num_heads and patch_size, custom uses the keys below"),
    INT("model", "input_size", "28", 1, 4096, "image (or latent) height = width in pixels"),
    INT("model", "in_channels", "1", 1, 64, "input channels (1 Fashion-MNIST, 3 RGB, 4 SD-VAE latents)"),
    INT("model", "patch_size", "2", 1, 64, "patch side p; tokens = (input_size/p)^2"),
    INT("model", "hidden_size", "384", 1, 65536, "transformer width D"),
    INT("model", "depth", "12", 1, 1024, "number of DiT blocks"),
    INT("model", "num_heads", "6", 1, 1024, "attention heads (must divide hidden_size)"),
    FLT("model", "mlp_ratio", "4.0", 0.25, 64, "MLP hidden width = mlp_ratio * hidden_size"),
    INT("model", "num_classes", "10", 1, 1000000, "class labels (an extra null class is added for CFG)"),
    BOOL("model", "learn_sigma", "on", "predict the variance too (output channels = 2 * in_channels)"),
    FLT("model", "class_dropout_prob", "0.1", 0, 1, "probability of replacing a label by the null class in training"),

    /* ---- data ---- */
    PATH("data", "path", "runs/fmnist_train.h5", "training set (HDF5 from robuq-data)"),
    PATH("data", "val_path", "runs/fmnist_test.h5", "validation set, \"\" = none"),
    BOOL("data", "hflip", "off",
         "random horizontal flips (off: Fashion-MNIST items have a handedness; the DiT ImageNet recipe uses on)"),

    /* ---- diffusion ---- */
    INT("diffusion", "steps", "1000", 1, 100000, "diffusion timesteps T"),
    FLT("diffusion", "beta_start", "1e-4", 1e-9, 1, "first beta of the schedule"),
    FLT("diffusion", "beta_end", "0.02", 1e-9, 1, "last beta of the schedule"),
    ENUM("diffusion", "schedule", "linear", "linear", "beta schedule"),
    ENUM("diffusion", "learn_sigma_loss", "hybrid", "hybrid|mse",
         "hybrid = MSE + VLB for the learned variance (DiT), mse = epsilon MSE only"),

    /* ---- train ---- */
    PATH("train", "out_dir", "runs/demo", "run directory: checkpoints, logs, samples, config.ini"),
    INT("train", "steps", "1000", 0, I_MAX, "total optimizer steps"),
    INT("train", "batch_size", "16", 1, 1000000, "images per step"),
    FLT("train", "lr", "1e-4", 0, 10, "AdamW learning rate (constant after warmup)"),
    INT("train", "warmup_steps", "0", 0, I_MAX, "linear LR warmup steps, 0 = none"),
    FLT("train", "weight_decay", "0", 0, 10, "AdamW decoupled weight decay"),
    FLT("train", "beta1", "0.9", 0, 0.999999, "AdamW beta1"),
    FLT("train", "beta2", "0.999", 0, 0.99999999, "AdamW beta2"),
    FLT("train", "grad_clip", "0", 0, 1e30, "clip the global gradient norm to this value, 0 = off"),
    FLT("train", "ema_decay", "0.9999", 0, 1, "EMA decay of the weights used for sampling, 0 = copy"),
    BOOL("train", "ema_warmup", "on",
         "EMA decay min(ema_decay, (1+step)/(10+step)) so short runs do not average in the initial weights; "
         "off = the DiT reference (constant decay)"),
    INT("train", "seed", "0", 0, I_MAX, "RNG seed (data order, noise, timesteps, dropout)"),
    INT("train", "log_every", "10", 1, I_MAX, "print/log the loss every N steps"),
    INT("train", "ckpt_every", "1000", 0, I_MAX, "save a checkpoint every N steps, 0 = only at the end"),
    INT("train", "sample_every", "0", 0, I_MAX, "write a sample grid every N steps, 0 = off"),
    INT("train", "val_every", "0", 0, I_MAX, "compute the validation loss every N steps, 0 = off"),
    INT("train", "threads", "0", 0, 4096, "OpenMP threads, 0 = all cores"),
    PATH("train", "init_from", "", "checkpoint to start from (e.g. the FP model for QAT), \"\" = from scratch"),
    BOOL("train", "resume", "on", "continue from the latest checkpoint in out_dir if there is one"),
    ENUM("train", "nan_policy", "stop", "stop|skip", "on a non-finite loss/gradient: stop with an error or skip the step"),
    BOOL("train", "recompute", "off",
         "activation recomputation: each block keeps only its input and runs again in backward "
         "(same gradients, far less memory, about 1/3 more compute; DiT-XL/2 needs it to train at batch 8 in 24 GiB)"),

    /* ---- quant ---- */
    BOOL("quant", "enabled", "off", "quantization-aware training (off = full precision)"),
    ENUM("quant", "weight_bits", "1.58", "fp|1.58", "weights of quantized linears: fp or ternary (W1.58)"),
    INT("quant", "act_bits", "4", 0, 8, "activation bits of the block linears, 0 = fp (W1.58 only); a precision_map overrides per layer"),
    BOOL("quant", "hadamard", "on", "rotate activations and weights by a Hadamard matrix before quantizing"),
    ENUM("quant", "quantizer", "robust", "robust|minmax",
         "per-token activation scale: robust = MSE-optimal Gaussian clipping of the rms, minmax = max |x|"),
    PATH("quant", "precision_map", "", "per-layer activation bits from robuq-search, \"\" = act_bits everywhere"),
    BOOL("quant", "quantize_embedder", "off", "also quantize the patch/timestep embedders"),
    BOOL("quant", "quantize_final", "off", "also quantize the final layer"),
    INT("quant", "adaln_act_bits", "4", 0, 8, "activation bits of the adaLN modulation linears, 0 = fp"),
    ENUM("quant", "adaln_weight_bits", "1.58", "fp|1.58",
         "weights of the adaLN modulation linears: ternary (as weight_bits) or kept fp"),
    INT("quant", "attn_bits", "8", 0, 8, "fake-quant bits of q, k, v (per token and head, min-max) and of the softmax output (unsigned static grid) in the attention matmuls, 0 = fp"),
    INT("quant", "lowrank_rank", "0", 0, 4096, "rank of the FP low-rank branch of every ternary linear (SVD init at QAT start, enhanced baseline), 0 = off"),
    ENUM("quant", "hadamard_layers", "all", "all|proj_fc2",
         "linears that get the Hadamard rotation: all, or only attn.proj and mlp.fc2 (ablation)"),
    FLT("quant", "distill_weight", "0", 0, 1e6, "weight of the MSE to the FP teacher's output (needs train.init_from, the teacher), 0 = off"),

    /* ---- sample ---- */
    INT("sample", "steps", "250", 1, 100000, "sampling steps (respaced from diffusion.steps)"),
    ENUM("sample", "sampler", "ddpm", "ddpm|ddim", "ddpm (learned variance) or ddim (eta 0)"),
    FLT("sample", "cfg_scale", "4.0", 0, 100, "classifier-free guidance scale, 1 = no guidance"),
    ENUM("sample", "cfg_channels", "all", "all|reference",
         "channels guided by CFG: all input channels, or the first 3 as in the DiT reference"),
    INTS("sample", "classes", "", 0, I_MAX, "class labels to sample, \"\" = all classes"),
    INT("sample", "per_class", "8", 1, 100000, "images per class"),
    INT("sample", "seed", "0", 0, I_MAX, "sampling RNG seed"),
    PATH("sample", "out", "samples.png", "output PNG grid"),

    /* ---- search (AMPN) ---- */
    FLT("search", "budget", "2.0", 1, 8, "average activation bits allowed (2.0 = A2, 3.0 = A3)"),
    INTS("search", "candidates", "1,2,3,4", 1, 8, "activation bits a layer may get"),
    ENUM("search", "weighting", "mac", "mac|mean", "average bits weighted by each layer's MACs, or plain layer mean"),
    INT("search", "calib_batches", "4", 1, 100000, "calibration batches (spread over timesteps)"),
    INT("search", "calib_batch_size", "16", 1, 100000, "images per calibration batch"),
    INT("search", "ref_bits", "8", 0, 8,
        "activation bits of the other layers while one is probed, 0 = fp; probing a QAT model, use the bits it was "
        "trained at (its operating point)"),
    ENUM("search", "metric", "loss", "loss|output",
         "sensitivity: increase of the diffusion loss, or output error against the reference model"),
    PATH("search", "checkpoint", "", "checkpoint to probe, \"\" = train.init_from (best: one after ~1000 QAT steps)"),
    ENUM("search", "weights", "ema", "ema|params", "which weights of the checkpoint to probe"),
    INT("search", "seed", "0", 0, I_MAX, "seed of the calibration noise"),
    PATH("search", "out", "", "precision map to write, \"\" = <checkpoint dir>/ampn_a<budget>.map (+ .png chart)"),

    /* ---- export ---- */
    ENUM("export", "packing", "trit5", "trit5|2bit", "ternary packing: 5 trits per byte (1.6 bit) or 2 bits (fast path)"),
};

const rq_cfg_spec *rq_config_schema(int *n) {
    if (n) *n = (int)(sizeof SCHEMA / sizeof SCHEMA[0]);
    return SCHEMA;
}
