/* vae.h: the Stable Diffusion VAE decoder (diffusers AutoencoderKL:
 * post_quant_conv + Decoder), forward only, float32, from safetensors.
 *
 * Network (block_out_channels ch[0..L-1], e.g. SD's (128, 256, 512, 512)):
 *   z / scaling_factor -> post_quant_conv (1x1) -> conv_in (3x3 -> ch[L-1])
 *   -> mid: resnet, attention (GroupNorm, single-head self-attention over the
 *      H*W tokens, + residual), resnet
 *   -> up_blocks i = 0..L-1 (channels ch[L-1-i]): layers_per_block+1 resnets,
 *      then (all but the last) nearest 2x + conv 3x3
 *   -> GroupNorm, SiLU, conv_out (3x3 -> out_channels) -> clamp to [-1, 1].
 * Resnet: x' = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))),
 * shortcut = 1x1 conv when the channel count changes. GroupNorm eps 1e-6.
 *
 * Tensor names (any of these layouts, optionally under "first_stage_model."
 * or "vae."; other tensors, e.g. the encoder, are ignored):
 * - diffusers: post_quant_conv.*, decoder.conv_in.*, decoder.mid_block.
 *   resnets.{0,1}.{norm1,conv1,norm2,conv2}.*, decoder.mid_block.attentions.0.
 *   {group_norm,to_q,to_k,to_v,to_out.0}.* (older files: query, key, value,
 *   proj_attn), decoder.up_blocks.I.resnets.J.{...,conv_shortcut}.*,
 *   decoder.up_blocks.I.upsamplers.0.conv.*, decoder.conv_norm_out.*,
 *   decoder.conv_out.*
 * - CompVis/ldm: decoder.mid.{block_1,block_2,attn_1.{norm,q,k,v,proj_out}},
 *   decoder.up.(L-1-I).block.J.{...,nin_shortcut}, decoder.up.(L-1-I).
 *   upsample.conv, decoder.norm_out, decoder.conv_out (ldm's "up" list is
 *   indexed by resolution level, the reverse of up_blocks).
 * Attention weights may be [C, C] (linear) or [C, C, 1, 1] (1x1 conv).
 * Tensors may be F32, F16 or BF16 (read as float32).
 *
 * Typical use (DiT samples at 256x256: latents [n, 4, 32, 32]):
 *   rq_vae *vae;
 *   if (rq_vae_load("sd-vae-ft-ema.safetensors", NULL, &vae, &err)) fail;
 *   float *img = malloc(n * 3 * 256 * 256 * sizeof(float));
 *   if (rq_vae_decode(vae, latents, n, 32, 32, img, &err)) fail;
 *   rq_image_grid_save("grid.png", img, n, 3, 256, 256, 0, &err);
 *   rq_vae_free(vae);
 * A decoder holds its activation buffers (sized on the first decode, grown
 * for larger latents): one rq_vae must not decode from two threads at once. */
#ifndef ROBUQ_VAE_H
#define ROBUQ_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "robuq/common.h"
#include "robuq/safetensors.h"

#define RQ_VAE_MAX_LEVELS 8
#define RQ_VAE_MAX_LAYERS 8 /* layers_per_block (the decoder has one more resnet per block) */

typedef enum { RQ_VAE_DIFFUSERS = 0, RQ_VAE_LDM = 1 } rq_vae_layout;

typedef struct {
    int latent_channels;   /* 4 */
    int out_channels;      /* 3 */
    int nlevels;           /* number of block_out_channels: 4 */
    int block_out_channels[RQ_VAE_MAX_LEVELS]; /* 128, 256, 512, 512 */
    int layers_per_block;  /* 2: up blocks have layers_per_block + 1 resnets */
    int norm_groups;       /* 32; must divide every channel count */
    float norm_eps;        /* 1e-6 */
    int mid_attention;     /* 1: the mid block has its attention layer */
    int post_quant_conv;   /* 1: post_quant_conv (1x1, latent -> latent) first */
    float scaling_factor;  /* 0.18215: decode feeds latents / scaling_factor */
    int clamp;             /* 1: clamp the images to [-1, 1] */
} rq_vae_config;

typedef struct rq_vae rq_vae;

/* SD's decoder: (128, 256, 512, 512), 2 layers, 32 groups, 4 latent channels. */
void rq_vae_config_sd(rq_vae_config *cfg);
/* Reads the architecture from tensor shapes (latent/out channels, levels,
 * channels, layers per block, attention, post_quant_conv); norm_groups,
 * norm_eps, scaling_factor and clamp get SD's values (adjust them after).
 * *layout and *prefix (cap bytes; either may be NULL) say how the file names
 * its tensors. RQ_EFORMAT with the file name if it holds no VAE decoder. */
rq_status rq_vae_config_infer(const rq_safetensors *st, rq_vae_config *cfg, rq_vae_layout *layout,
                              char *prefix, size_t cap, rq_err *err);

/* Loads the decoder from a safetensors file. cfg NULL: rq_vae_config_infer.
 * Every tensor is checked: a missing one is RQ_EFORMAT naming it, a wrong
 * shape RQ_ESHAPE naming the tensor, its shape and the expected one. */
rq_status rq_vae_load(const char *path, const rq_vae_config *cfg, rq_vae **out, rq_err *err);
rq_status rq_vae_load_st(const rq_safetensors *st, const rq_vae_config *cfg, rq_vae **out, rq_err *err);
/* Random weights for benchmarks (no checkpoint needed): convs and linears
 * U(+-sqrt(3/fan_in)), zero biases, GroupNorm gamma 1 / beta 0. */
rq_status rq_vae_init_random(const rq_vae_config *cfg, uint64_t seed, rq_vae **out, rq_err *err);
void rq_vae_free(rq_vae *vae);

const rq_vae_config *rq_vae_get_config(const rq_vae *vae);
size_t rq_vae_num_params(const rq_vae *vae);
/* Spatial factor of the decoder: 2^(nlevels-1) (8 for SD). */
int rq_vae_upscale(const rq_vae *vae);
/* Bytes of activation buffers a decode of h x w latents keeps (beyond the
 * weights, rq_vae_num_params() * 4). */
size_t rq_vae_workspace_bytes(const rq_vae_config *cfg, int h, int w);
/* Scaling factor and clamping of later decodes (defaults from the config). */
void rq_vae_set_output(rq_vae *vae, float scaling_factor, int clamp);

/* latents [n, latent_channels, h, w] (as the diffusion model samples them,
 * i.e. still multiplied by scaling_factor) -> images [n, out_channels, f*h,
 * f*w], f = rq_vae_upscale(), in [-1, 1] when clamping. One image at a time.
 * RQ_ENUM if an output is NaN/Inf (the image index is in the message). */
rq_status rq_vae_decode(rq_vae *vae, const float *latents, int n, int h, int w, float *images,
                        rq_err *err);

/* One CHW image in [-1, 1] (c = 1, 3 or 4) -> interleaved uint8 HWC for
 * rq_png_write: round((x + 1) * 127.5) clamped to [0, 255], NaN -> 0 (the
 * rq_image_grid formula). */
rq_status rq_vae_image_to_u8(const float *image, int c, int h, int w, uint8_t *out, rq_err *err);

#endif
