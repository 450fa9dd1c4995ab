#!/usr/bin/python3
"""Reference data for the C Stable Diffusion VAE decoder (tests/test_vae.c).

Run from anywhere with Debian's python (torch, numpy, h5py; diffusers is NOT
needed):

    /usr/bin/python3 tests/ref/gen_vae_ref.py

Writes, next to this file:
  vae_tiny.safetensors      post_quant_conv + decoder, diffusers AutoencoderKL
                            names (attention as to_q/to_k/to_v/to_out.0 linears),
                            plus two encoder-side tensors a decoder must ignore
  vae_tiny_ldm.safetensors  the same weights under the original CompVis/ldm
                            names ("first_stage_model.decoder.up.N.block.M...",
                            attention q/k/v/proj_out as 1x1 convs, 4-D weights)
  vae_tiny_ref.h5           inputs, outputs and intermediate activations

The decoder below is written with plain torch.nn layers and follows diffusers'
structure (models/autoencoders/vae.py Decoder, unet_2d_blocks.py
UNetMidBlock2D / UpDecoderBlock2D, resnet.py ResnetBlock2D and Upsample2D,
attention_processor.py Attention + AttnProcessor with
_from_deprecated_attn_block=True), so its state_dict keys are the diffusers
names.  Computation is in float64; every parameter and input is rounded to
float32 first, so a float32 C decoder reading the files starts from exactly the
same numbers.  The safetensors files are written by hand (8-byte header length,
JSON header padded with spaces to a multiple of 8, raw little-endian F32).
Deterministic: fixed seed, one thread, h5py writes no timestamps.
"""

import json
import math
import os
import struct

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))

# Tiny config: same shape of network as SD's (4 levels, 3 upsamplings, 3 resnets
# per up block, a channel change with a 1x1 shortcut), small channels, and
# norm_num_groups = 4 so that each group holds several channels.
CFG = dict(
    latent_channels=4,
    out_channels=3,
    block_out_channels=(8, 8, 16, 16),
    layers_per_block=2,
    norm_num_groups=4,
    scaling_factor=0.18215,
)
BATCH, LAT_H, LAT_W = 2, 4, 6  # non-square so that H/W mix-ups show
EPS = 1e-6


# ============================================================================
# diffusers' decoder, plain torch.nn
# ============================================================================

class ResnetBlock2D(nn.Module):
    """resnet.py ResnetBlock2D with temb_channels=None, pre_norm, output_scale_factor 1:
    x + conv2(silu(norm2(conv1(silu(norm1(x)))))), shortcut 1x1 conv when cin != cout."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=EPS, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=EPS, affine=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1, stride=1, padding=0) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout p=0
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class MidAttention(nn.Module):
    """attention_processor.py Attention(C, heads=1, dim_head=C, norm_num_groups=groups,
    eps=1e-6, residual_connection=True, bias=True, upcast_softmax=True) run by AttnProcessor:
    GroupNorm over (C, H*W), linear q/k/v over the H*W tokens, softmax(q k^T / sqrt(C)) v,
    to_out.0 linear, + residual, / rescale_output_factor (1)."""

    def __init__(self, c, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=EPS, affine=True)
        self.to_q = nn.Linear(c, c, bias=True)
        self.to_k = nn.Linear(c, c, bias=True)
        self.to_v = nn.Linear(c, c, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(c, c, bias=True), nn.Dropout(0.0)])
        self.scale = c ** -0.5

    def forward(self, x):
        n, c, h, w = x.shape
        residual = x
        hs = self.group_norm(x).view(n, c, h * w).transpose(1, 2)      # (N, T, C)
        q, k, v = self.to_q(hs), self.to_k(hs), self.to_v(hs)
        p = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * self.scale, dim=-1)
        o = self.to_out[0](torch.bmm(p, v))                              # (N, T, C)
        o = o.transpose(1, 2).reshape(n, c, h, w)
        return o + residual


class UNetMidBlock2D(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, groups), ResnetBlock2D(c, c, groups)])
        self.attentions = nn.ModuleList([MidAttention(c, groups)])

    def forward(self, x):
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)


class Upsample2D(nn.Module):
    """resnet.py Upsample2D(use_conv=True): nearest x2, then conv 3x3 pad 1."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpDecoderBlock2D(nn.Module):
    def __init__(self, cin, cout, num_layers, groups, add_upsample):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(num_layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = cfg["block_out_channels"]
        g = cfg["norm_num_groups"]
        self.conv_in = nn.Conv2d(cfg["latent_channels"], ch[-1], 3, stride=1, padding=1)
        self.mid_block = UNetMidBlock2D(ch[-1], g)
        rev = list(reversed(ch))
        blocks = []
        out_c = rev[0]
        for i in range(len(ch)):
            prev_c, out_c = out_c, rev[i]
            blocks.append(UpDecoderBlock2D(prev_c, out_c, cfg["layers_per_block"] + 1, g,
                                           add_upsample=(i != len(ch) - 1)))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=EPS)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z, acts):
        x = self.conv_in(z)
        acts["conv_in"] = x
        x = self.mid_block.resnets[0](x)
        acts["mid_res0"] = x
        x = self.mid_block.attentions[0](x)
        acts["mid_attn"] = x
        x = self.mid_block.resnets[1](x)
        acts["mid"] = x
        for i, b in enumerate(self.up_blocks):
            x = b(x)
            acts["up%d" % i] = x
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VAEDecode(nn.Module):
    """AutoencoderKL.decode: post_quant_conv (1x1) then the decoder."""

    def __init__(self, cfg):
        super().__init__()
        c = cfg["latent_channels"]
        self.post_quant_conv = nn.Conv2d(c, c, 1)
        self.decoder = Decoder(cfg)

    def forward(self, z, acts):
        x = self.post_quant_conv(z)
        acts["post_quant"] = x
        return self.decoder(x, acts)


# ============================================================================
# weights, names, files
# ============================================================================

def init_params(model, gen):
    """Random weights (not any real init): conv/linear ~ N(0, (s/sqrt(fan_in))^2), biases
    N(0, 0.1^2), GroupNorm gamma 1 + N(0, 0.2^2), beta N(0, 0.2^2); all float32-rounded."""
    for name, p in model.named_parameters():
        if "norm" in name:
            v = (1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=gen)
        elif name.endswith("bias"):
            v = 0.1 * torch.randn(p.shape, generator=gen)
        else:
            fan_in = p[0].numel()
            # q and k a bit larger so the softmax is far from uniform
            s = 2.0 if (".to_q." in name or ".to_k." in name) else 1.0
            v = s / math.sqrt(fan_in) * torch.randn(p.shape, generator=gen)
        p.data.copy_(v.float().double())


def ldm_name(name, nlevels):
    """diffusers AutoencoderKL key -> CompVis ldm AutoencoderKL key (first_stage_model.*).
    ldm's decoder.up list is indexed by resolution level, i.e. reversed w.r.t. up_blocks."""
    n = name
    n = n.replace("decoder.mid_block.resnets.0.", "decoder.mid.block_1.")
    n = n.replace("decoder.mid_block.resnets.1.", "decoder.mid.block_2.")
    n = n.replace("decoder.mid_block.attentions.0.group_norm.", "decoder.mid.attn_1.norm.")
    for a, b in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
        n = n.replace("decoder.mid_block.attentions.0.%s." % a, "decoder.mid.attn_1.%s." % b)
    if n.startswith("decoder.up_blocks."):
        parts = n.split(".")
        i = int(parts[2])
        rest = ".".join(parts[3:])
        rest = rest.replace("resnets.", "block.").replace("upsamplers.0.conv", "upsample.conv")
        rest = rest.replace("conv_shortcut", "nin_shortcut")
        n = "decoder.up.%d.%s" % (nlevels - 1 - i, rest)
    n = n.replace("decoder.conv_norm_out.", "decoder.norm_out.")
    return "first_stage_model." + n


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 numpy array), written in that order."""
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    blobs = []
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def put(g, name, t, f64=True):
    v = t.detach().numpy()
    g.create_dataset(name, data=v.astype(np.float32))
    if f64:
        g.create_dataset(name + "_f64", data=v.astype(np.float64))


def main():
    gen = torch.Generator().manual_seed(20240609)
    model = VAEDecode(CFG)
    init_params(model, gen)
    model.eval()

    c = CFG["latent_channels"]
    # latents as the DiT samples them (unit-ish variance, already * 0.18215)
    z = torch.randn((BATCH, c, LAT_H, LAT_W), generator=gen).float().double()
    acts = {}
    with torch.no_grad():
        raw = model(z / CFG["scaling_factor"], acts)
    img = raw.clamp(-1.0, 1.0)

    sd = model.state_dict()
    nl = len(CFG["block_out_channels"])
    names = list(sd.keys())
    tens = [(k, sd[k].numpy().astype(np.float32)) for k in names]
    # encoder-side tensors of a full AutoencoderKL file: a decoder must skip them
    extra = [("encoder.conv_in.weight", (0.1 * torch.randn((8, 3, 3, 3), generator=gen)).numpy()),
             ("quant_conv.weight", (0.1 * torch.randn((2 * c, 2 * c, 1, 1), generator=gen)).numpy())]
    write_safetensors(os.path.join(HERE, "vae_tiny.safetensors"), extra[:1] + tens + extra[1:])

    ldm = []
    for k, a in tens:
        if ".attentions.0.to_" in k and k.endswith("weight"):
            a = a.reshape(a.shape + (1, 1))  # ldm attention q/k/v/proj_out are 1x1 convs
        ldm.append((ldm_name(k, nl), a))
    ldm.sort(key=lambda kv: kv[0])  # real ldm files list keys sorted
    write_safetensors(os.path.join(HERE, "vae_tiny_ldm.safetensors"), ldm)

    path = os.path.join(HERE, "vae_tiny_ref.h5")
    with h5py.File(path, "w") as f:
        f.attrs["latent_channels"] = np.int32(c)
        f.attrs["out_channels"] = np.int32(CFG["out_channels"])
        f.attrs["block_out_channels"] = np.array(CFG["block_out_channels"], dtype=np.int32)
        f.attrs["layers_per_block"] = np.int32(CFG["layers_per_block"])
        f.attrs["norm_num_groups"] = np.int32(CFG["norm_num_groups"])
        f.attrs["scaling_factor"] = np.float64(CFG["scaling_factor"])
        f.attrs["norm_eps"] = np.float64(EPS)
        f.attrs["compute_dtype"] = "float64 (datasets stored float32; *_f64 = float64 copies)"
        gi = f.create_group("inputs")
        gi.create_dataset("latents", data=z.numpy().astype(np.float32))
        go = f.create_group("outputs")
        put(go, "image_raw", raw)   # decoder output, no clamp
        put(go, "image", img)       # clamped to [-1, 1]
        ga = f.create_group("acts")
        for k, v in acts.items():
            put(ga, k, v, f64=False)

    with h5py.File(path, "r") as f:
        def show(name, obj):
            if isinstance(obj, h5py.Dataset):
                print("%-28s %s %s" % (name, obj.shape, obj.dtype))
        f.visititems(show)
    nparam = sum(a.size for _, a in tens)
    print("params:", nparam, " |raw| max %.3f  frac clamped %.3f"
          % (raw.abs().max().item(), (raw.abs() > 1).double().mean().item()))


if __name__ == "__main__":
    main()
