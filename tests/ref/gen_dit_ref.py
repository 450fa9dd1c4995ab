#!/usr/bin/python3
"""Generate the PyTorch reference dumps used by the C tests of RobuQ-C.

Run from anywhere with Debian's python (torch, numpy, h5py; no timm needed):

    /usr/bin/python3 tests/ref/gen_dit_ref.py

Writes tests/ref/dit_tiny.h5 and tests/ref/diffusion_ref.h5 next to this file.
The model and diffusion code below are faithful copies of facebookresearch/DiT
(models.py, diffusion/gaussian_diffusion.py, diffusion/respace.py,
diffusion/diffusion_utils.py) with timm's PatchEmbed / Attention / Mlp
written inline.  Everything is computed in float64; every input and every
parameter is first rounded to float32 so that a float32 C implementation
reading the file sees exactly the same inputs.  See README.md.
"""

import enum
import math
import os

import h5py
import numpy as np
import torch
import torch.nn as nn

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))


# ============================================================================
# timm pieces (timm.models.vision_transformer / timm.layers), inline
# ============================================================================

class PatchEmbed(nn.Module):
    """timm PatchEmbed(img_size, patch_size, in_chans, embed_dim, bias=True),
    flatten=True, norm=Identity."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, bias=True):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size,
                              stride=patch_size, bias=bias)

    def forward(self, x):
        x = self.proj(x)                       # (N, D, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)       # (N, T, D), T = row*(W/p)+col
        return x


class Attention(nn.Module):
    """timm Attention(dim, num_heads, qkv_bias=True), no q/k norm, no dropout."""

    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x


class Mlp(nn.Module):
    """timm Mlp: fc1 -> act -> fc2 (dropout 0)."""

    def __init__(self, in_features, hidden_features, act_layer):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ============================================================================
# DiT models.py
# ============================================================================

def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        # Reference computes freqs in float32 and t.float(); here float64
        # (default dtype) for a clean reference.  See README.
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float64) / half
        )
        args = t[:, None].to(torch.float64) * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(t_freq)


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels, force_drop_ids=None):
        if force_drop_ids is None:
            drop_ids = torch.rand(labels.shape[0]) < self.dropout_prob
        else:
            drop_ids = force_drop_ids == 1
        return torch.where(drop_ids, self.num_classes, labels)

    def forward(self, labels, train, force_drop_ids=None):
        use_dropout = self.dropout_prob > 0
        if (train and use_dropout) or (force_drop_ids is not None):
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


class DiTBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_hidden_dim = int(hidden_size * mlp_ratio)
        approx_gelu = lambda: nn.GELU(approximate="tanh")
        self.mlp = Mlp(in_features=hidden_size, hidden_features=mlp_hidden_dim, act_layer=approx_gelu)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = modulate(self.norm_final(x), shift, scale)
        return self.linear(x)


class DiT(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                 num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000,
                 learn_sigma=True):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        # pos_embed as in initialize_weights(): float64 numpy -> float32
        pe = get_2d_sincos_pos_embed(hidden_size, int(num_patches ** 0.5))
        self.pos_embed.data.copy_(torch.from_numpy(pe).float().double().unsqueeze(0))
        self.acts = None  # optional activation recorder (dict)

    def unpatchify(self, x):
        c = self.out_channels
        p = self.x_embedder.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        assert h * w == x.shape[1]
        x = x.reshape(shape=(x.shape[0], h, w, p, p, c))
        x = torch.einsum('nhwpqc->nchpwq', x)
        return x.reshape(shape=(x.shape[0], c, h * p, h * p))

    def _rec(self, name, v):
        if self.acts is not None:
            self.acts[name] = v

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        self._rec("x_embed", x)
        self._rec("t_freq", self.t_embedder.timestep_embedding(t, self.t_embedder.frequency_embedding_size))
        t = self.t_embedder(t)
        self._rec("t_emb", t)
        y = self.y_embedder(y, self.training)
        self._rec("y_emb", y)
        c = t + y
        self._rec("c", c)
        for i, block in enumerate(self.blocks):
            if i == 0:
                self._rec("block0_mod", block.adaLN_modulation(c))
            x = block(x, c)
            self._rec("block%d_out" % i, x)
        x = self.final_layer(x, c)
        self._rec("final_out", x)
        return self.unpatchify(x)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        # upstream DiT main: guidance on the first 3 channels only
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y)
        eps, rest = model_out[:, :3], model_out[:, 3:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0)
    grid = grid.reshape([2, 1, grid_size, grid_size])
    return get_2d_sincos_pos_embed_from_grid(embed_dim, grid)


def get_2d_sincos_pos_embed_from_grid(embed_dim, grid):
    assert embed_dim % 2 == 0
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])  # (H*W, D/2) -- column (w)
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])  # (H*W, D/2) -- row (h)
    return np.concatenate([emb_h, emb_w], axis=1)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.
    omega = 1. / 10000 ** omega
    pos = pos.reshape(-1)
    out = np.einsum('m,d->md', pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


# ============================================================================
# diffusion_utils.py
# ============================================================================

def normal_kl(mean1, logvar1, mean2, logvar2):
    tensor = None
    for obj in (mean1, logvar1, mean2, logvar2):
        if isinstance(obj, torch.Tensor):
            tensor = obj
            break
    assert tensor is not None
    logvar1, logvar2 = [x if isinstance(x, torch.Tensor) else torch.tensor(x).to(tensor)
                        for x in (logvar1, logvar2)]
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, *, means, log_scales):
    assert x.shape == means.shape == log_scales.shape
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    log_probs = torch.where(
        x < -0.999, log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))
    assert log_probs.shape == x.shape
    return log_probs


# ============================================================================
# gaussian_diffusion.py (subset: everything the C code reimplements)
# ============================================================================

def mean_flat(tensor):
    return tensor.mean(dim=list(range(1, len(tensor.shape))))


class ModelMeanType(enum.Enum):
    PREVIOUS_X = enum.auto()
    START_X = enum.auto()
    EPSILON = enum.auto()


class ModelVarType(enum.Enum):
    LEARNED = enum.auto()
    FIXED_SMALL = enum.auto()
    FIXED_LARGE = enum.auto()
    LEARNED_RANGE = enum.auto()


class LossType(enum.Enum):
    MSE = enum.auto()
    RESCALED_MSE = enum.auto()
    KL = enum.auto()
    RESCALED_KL = enum.auto()


def get_named_beta_schedule(schedule_name, num_diffusion_timesteps):
    assert schedule_name == "linear"
    scale = 1000 / num_diffusion_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)


def _extract_into_tensor(arr, timesteps, broadcast_shape):
    # Reference does .float() here (float32 coefficients); we stay in float64.
    res = torch.from_numpy(arr)[timesteps].to(torch.get_default_dtype())
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res + torch.zeros(broadcast_shape)


class GaussianDiffusion:
    def __init__(self, *, betas, model_mean_type, model_var_type, loss_type):
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        betas = np.array(betas, dtype=np.float64)
        self.betas = betas
        assert len(betas.shape) == 1
        assert (betas > 0).all() and (betas <= 1).all()
        self.num_timesteps = int(betas.shape[0])
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        ) if len(self.posterior_variance) > 1 else np.array([])
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    def q_sample(self, x_start, t, noise):
        return (_extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        posterior_mean = (_extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
                          + _extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        posterior_variance = _extract_into_tensor(self.posterior_variance, t, x_t.shape)
        posterior_log_variance_clipped = _extract_into_tensor(self.posterior_log_variance_clipped, t, x_t.shape)
        return posterior_mean, posterior_variance, posterior_log_variance_clipped

    def p_mean_variance(self, model, x, t, clip_denoised=True, model_kwargs=None):
        if model_kwargs is None:
            model_kwargs = {}
        B, C = x.shape[:2]
        assert t.shape == (B,)
        model_output = model(x, t, **model_kwargs)
        assert self.model_var_type == ModelVarType.LEARNED_RANGE
        assert model_output.shape == (B, C * 2, *x.shape[2:])
        model_output, model_var_values = torch.split(model_output, C, dim=1)
        min_log = _extract_into_tensor(self.posterior_log_variance_clipped, t, x.shape)
        max_log = _extract_into_tensor(np.log(self.betas), t, x.shape)
        frac = (model_var_values + 1) / 2
        model_log_variance = frac * max_log + (1 - frac) * min_log
        model_variance = torch.exp(model_log_variance)

        def process_xstart(x):
            return x.clamp(-1, 1) if clip_denoised else x

        assert self.model_mean_type == ModelMeanType.EPSILON
        pred_xstart = process_xstart(self._predict_xstart_from_eps(x_t=x, t=t, eps=model_output))
        model_mean, _, _ = self.q_posterior_mean_variance(x_start=pred_xstart, x_t=x, t=t)
        return {"mean": model_mean, "variance": model_variance,
                "log_variance": model_log_variance, "pred_xstart": pred_xstart}

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (_extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                - _extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps)

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return ((_extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart)
                / _extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape))

    def p_sample(self, model, x, t, noise, clip_denoised=True, model_kwargs=None):
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        nonzero_mask = (t != 0).to(x.dtype).view(-1, *([1] * (len(x.shape) - 1)))
        sample = out["mean"] + nonzero_mask * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"], "out": out}

    def ddim_sample(self, model, x, t, noise, clip_denoised=True, model_kwargs=None, eta=0.0):
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar = _extract_into_tensor(self.alphas_cumprod, t, x.shape)
        alpha_bar_prev = _extract_into_tensor(self.alphas_cumprod_prev, t, x.shape)
        sigma = (eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar))
                 * torch.sqrt(1 - alpha_bar / alpha_bar_prev))
        mean_pred = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps
        nonzero_mask = (t != 0).to(x.dtype).view(-1, *([1] * (len(x.shape) - 1)))
        sample = mean_pred + nonzero_mask * sigma * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"], "eps": eps}

    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        true_mean, _, true_log_variance_clipped = self.q_posterior_mean_variance(x_start=x_start, x_t=x_t, t=t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = normal_kl(true_mean, true_log_variance_clipped, out["mean"], out["log_variance"])
        kl = mean_flat(kl) / np.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        decoder_nll = mean_flat(decoder_nll) / np.log(2.0)
        output = torch.where((t == 0), decoder_nll, kl)
        return {"output": output, "pred_xstart": out["pred_xstart"], "kl": kl, "decoder_nll": decoder_nll}

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        if model_kwargs is None:
            model_kwargs = {}
        x_t = self.q_sample(x_start, t, noise=noise)
        terms = {"x_t": x_t}
        assert self.loss_type in (LossType.MSE, LossType.RESCALED_MSE)
        model_output = model(x_t, t, **model_kwargs)
        terms["model_out"] = model_output
        B, C = x_t.shape[:2]
        assert model_output.shape == (B, C * 2, *x_t.shape[2:])
        model_output, model_var_values = torch.split(model_output, C, dim=1)
        frozen_out = torch.cat([model_output.detach(), model_var_values], dim=1)
        terms["vb"] = self._vb_terms_bpd(model=lambda *args, r=frozen_out: r, x_start=x_start,
                                         x_t=x_t, t=t, clip_denoised=False)["output"]
        if self.loss_type == LossType.RESCALED_MSE:
            terms["vb"] *= self.num_timesteps / 1000.0
        target = noise  # ModelMeanType.EPSILON
        terms["mse"] = mean_flat((target - model_output) ** 2)
        terms["loss"] = terms["mse"] + terms["vb"]
        return terms


# ============================================================================
# respace.py
# ============================================================================

def space_timesteps(num_timesteps, section_counts):
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired_count = int(section_counts[len("ddim"):])
            for i in range(1, num_timesteps):
                if len(range(0, num_timesteps, i)) == desired_count:
                    return set(range(0, num_timesteps, i))
            raise ValueError("cannot create exactly %d steps with an integer stride" % num_timesteps)
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx = 0
    all_steps = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < section_count:
            raise ValueError("cannot divide section of %d steps into %d" % (size, section_count))
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        taken_steps = []
        for _ in range(section_count):
            taken_steps.append(start_idx + round(cur_idx))  # Python round: half-to-even
            cur_idx += frac_stride
        all_steps += taken_steps
        start_idx += size
    return set(all_steps)


class _WrappedModel:
    def __init__(self, model, timestep_map, original_num_steps):
        self.model = model
        self.timestep_map = timestep_map
        self.original_num_steps = original_num_steps

    def __call__(self, x, ts, **kwargs):
        map_tensor = torch.tensor(self.timestep_map, dtype=ts.dtype)
        return self.model(x, map_tensor[ts], **kwargs)


class SpacedDiffusion(GaussianDiffusion):
    def __init__(self, use_timesteps, **kwargs):
        self.use_timesteps = set(use_timesteps)
        self.timestep_map = []
        self.original_num_steps = len(kwargs["betas"])
        base_diffusion = GaussianDiffusion(**kwargs)
        last_alpha_cumprod = 1.0
        new_betas = []
        for i, alpha_cumprod in enumerate(base_diffusion.alphas_cumprod):
            if i in self.use_timesteps:
                new_betas.append(1 - alpha_cumprod / last_alpha_cumprod)
                last_alpha_cumprod = alpha_cumprod
                self.timestep_map.append(i)
        kwargs["betas"] = np.array(new_betas)
        super().__init__(**kwargs)

    def _wrap_model(self, model):
        if isinstance(model, _WrappedModel):
            return model
        return _WrappedModel(model, self.timestep_map, self.original_num_steps)

    def p_mean_variance(self, model, *args, **kwargs):
        return super().p_mean_variance(self._wrap_model(model), *args, **kwargs)

    def training_losses(self, model, *args, **kwargs):
        return super().training_losses(self._wrap_model(model), *args, **kwargs)


def create_diffusion(timestep_respacing, diffusion_steps=1000):
    """DiT diffusion/__init__.py defaults: linear, eps-pred, learned range, LossType.MSE."""
    betas = get_named_beta_schedule("linear", diffusion_steps)
    if timestep_respacing is None or timestep_respacing == "":
        timestep_respacing = [diffusion_steps]
    return SpacedDiffusion(use_timesteps=space_timesteps(diffusion_steps, timestep_respacing),
                           betas=betas, model_mean_type=ModelMeanType.EPSILON,
                           model_var_type=ModelVarType.LEARNED_RANGE, loss_type=LossType.MSE)


# ============================================================================
# dump helpers
# ============================================================================

def f32(a):
    """Round to float32 and come back as float64 (numpy or torch)."""
    if isinstance(a, torch.Tensor):
        return a.float().double()
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def put(g, name, v, with_f64=False):
    """Store v as float32 (and, optionally, float64 under name + '_f64')."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if v.dtype.kind == "f":
        g.create_dataset(name, data=v.astype(np.float32))
        if with_f64:
            g.create_dataset(name + "_f64", data=v.astype(np.float64))
    else:
        g.create_dataset(name, data=v)


def put64(g, name, v):
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    g.create_dataset(name, data=np.asarray(v, dtype=np.float64))


# ============================================================================
# File 1: dit_tiny.h5
# ============================================================================

def gen_dit_tiny(path):
    cfg = dict(input_size=8, patch_size=2, in_channels=2, hidden_size=32, depth=2,
               num_heads=4, mlp_ratio=4.0, num_classes=5, learn_sigma=True)
    torch.manual_seed(1234)
    model = DiT(class_dropout_prob=0.1, **cfg)
    model.eval()  # train=False path of LabelEmbedder: no random label dropout

    # every parameter ~ N(0, 0.2^2), float32-rounded, in named_parameters order
    gen = torch.Generator().manual_seed(20240601)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "pos_embed":
                continue
            p.copy_(f32(torch.randn(p.shape, generator=gen) * 0.2))

    N, C, H = 3, cfg["in_channels"], cfg["input_size"]
    rs = np.random.RandomState(777)
    x0 = f32(torch.from_numpy(rs.uniform(-1.0, 1.0, size=(N, C, H, H))))
    noise = f32(torch.from_numpy(rs.standard_normal(size=(N, C, H, H))))
    t = torch.tensor([0, 1, 537], dtype=torch.int64)
    y = torch.tensor([1, 4, cfg["num_classes"]], dtype=torch.int64)  # 5 == null class

    diffusion = create_diffusion("")  # training diffusion of DiT train.py
    acts = {}
    model.acts = acts
    model.zero_grad()
    terms = diffusion.training_losses(model, x0, t, model_kwargs=dict(y=y), noise=noise)
    model.acts = None
    loss = terms["loss"].mean()
    loss.backward()

    # CFG forward (reference forward_with_cfg, batch of 2 halves)
    scale = 4.0
    x_t = terms["x_t"].detach()
    cx = torch.cat([x_t[0:2], x_t[0:2]], dim=0)
    ct = torch.cat([t[0:2], t[0:2]], dim=0)
    cy = torch.tensor([int(y[0]), int(y[1]), cfg["num_classes"], cfg["num_classes"]], dtype=torch.int64)
    with torch.no_grad():
        cfg_model_out = model.forward(cx, ct, cy)
        out_ref = model.forward_with_cfg(cx, ct, cy, scale)
        # "all input channels" variant: guide channels [0, C), pass the
        # variance channels [C, 2C) through from the conditional half
        cond, uncond = torch.split(cfg_model_out, 2, dim=0)
        g_eps = uncond[:, :C] + scale * (cond[:, :C] - uncond[:, :C])
        half = torch.cat([g_eps, cond[:, C:]], dim=1)
        out_all = torch.cat([half, half], dim=0)

    with h5py.File(path, "w") as f:
        for k, v in cfg.items():
            if k == "mlp_ratio":
                f.attrs[k] = np.float64(v)
            else:
                f.attrs[k] = np.int32(int(v))
        f.attrs["out_channels"] = np.int32(2 * C)
        f.attrs["batch"] = np.int32(N)
        f.attrs["class_dropout_prob"] = np.float64(0.1)
        f.attrs["frequency_embedding_size"] = np.int32(256)
        f.attrs["num_timesteps"] = np.int32(1000)
        f.attrs["param_init"] = "every parameter ~ N(0, 0.2^2) then float32-rounded (not the DiT init)"
        f.attrs["compute_dtype"] = "float64 (datasets stored float32; *_f64 = float64 copies)"
        gp = f.create_group("params")
        gg = f.create_group("grads")
        for name, p in model.named_parameters():
            if name == "pos_embed":
                continue
            put(gp, name, p)
            put(gg, name, p.grad, with_f64=True)
        gb = f.create_group("buffers")
        put(gb, "pos_embed", model.pos_embed[0])
        gi = f.create_group("inputs")
        put(gi, "x0", x0)
        put(gi, "noise", noise)
        gi.create_dataset("t", data=t.numpy().astype(np.int32))
        gi.create_dataset("y", data=y.numpy().astype(np.int32))
        go = f.create_group("outputs")
        put(go, "x_t", terms["x_t"], with_f64=True)
        put(go, "model_out", terms["model_out"], with_f64=True)
        put(go, "mse", terms["mse"], with_f64=True)
        put(go, "vb", terms["vb"], with_f64=True)
        put(go, "loss", loss, with_f64=True)
        ga = f.create_group("acts")
        for k in ["t_freq", "t_emb", "y_emb", "c", "x_embed", "block0_mod",
                  "block0_out", "block1_out", "final_out"]:
            put(ga, k, acts[k], with_f64=True)
        gc = f.create_group("cfg")
        gc.attrs["scale"] = np.float64(scale)
        put(gc, "x", cx)
        gc.create_dataset("t", data=ct.numpy().astype(np.int32))
        gc.create_dataset("y", data=cy.numpy().astype(np.int32))
        put(gc, "model_out", cfg_model_out, with_f64=True)
        put(gc, "out_reference", out_ref, with_f64=True)
        put(gc, "out_all", out_all, with_f64=True)
    for k in ["mse", "vb"]:
        print("  %s =" % k, terms[k].detach().numpy())
    print("  loss =", float(loss))


# ============================================================================
# File 2: diffusion_ref.h5
# ============================================================================

def gen_diffusion(path):
    base = GaussianDiffusion(betas=get_named_beta_schedule("linear", 1000),
                             model_mean_type=ModelMeanType.EPSILON,
                             model_var_type=ModelVarType.LEARNED_RANGE,
                             loss_type=LossType.MSE)
    rs = np.random.RandomState(4242)
    N, C, H = 3, 2, 8

    with h5py.File(path, "w") as f:
        f.attrs["num_timesteps"] = np.int32(1000)
        f.attrs["beta_start"] = np.float64(1e-4)
        f.attrs["beta_end"] = np.float64(0.02)
        gs = f.create_group("schedule")
        for k in ["betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next",
                  "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                  "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                  "sqrt_recipm1_alphas_cumprod", "posterior_variance",
                  "posterior_log_variance_clipped", "posterior_mean_coef1",
                  "posterior_mean_coef2"]:
            put64(gs, k, getattr(base, k))

        gr = f.create_group("respace")
        spaced = {}
        for spec in ["1000", "250", "50", "25", "ddim50"]:
            sd = create_diffusion(spec)
            spaced[spec] = sd
            g = gr.create_group(spec)
            g.create_dataset("timesteps", data=np.array(sd.timestep_map, dtype=np.int64))
            put64(g, "betas", sd.betas)
            put64(g, "alphas_cumprod", sd.alphas_cumprod)

        # ---- one sampling step each -------------------------------------
        gp = f.create_group("pstep")
        for key, spec, idx, kind in [("ddpm250", "250", [100, 0, 249], "ddpm"),
                                     ("ddim50", "ddim50", [20, 0, 49], "ddim")]:
            sd = spaced[spec]
            x_t = f32(torch.from_numpy(rs.standard_normal((N, C, H, H))))
            eps = rs.standard_normal((N, C, H, H))
            var = rs.uniform(-1.0, 1.0, (N, C, H, H))
            model_out = f32(torch.from_numpy(np.concatenate([eps, var], axis=1)))
            noise = f32(torch.from_numpy(rs.standard_normal((N, C, H, H))))
            t_index = torch.tensor(idx, dtype=torch.int64)
            t_seen = []

            def fixed_model(x, ts, r=model_out):
                t_seen.append(ts.clone())
                return r

            g = gp.create_group(key)
            put(g, "x_t", x_t)
            put(g, "model_out", model_out)
            put(g, "noise", noise)
            g.create_dataset("t_index", data=t_index.numpy().astype(np.int32))
            with torch.no_grad():
                if kind == "ddpm":
                    r = sd.p_sample(fixed_model, x_t, t_index, noise, clip_denoised=False)
                    out = r["out"]
                    put(g, "mean", out["mean"], with_f64=True)
                    put(g, "log_variance", out["log_variance"], with_f64=True)
                    put(g, "pred_xstart", out["pred_xstart"], with_f64=True)
                    put(g, "sample", r["sample"], with_f64=True)
                else:
                    out = sd.p_mean_variance(fixed_model, x_t, t_index, clip_denoised=False)
                    put(g, "mean", out["mean"], with_f64=True)
                    put(g, "log_variance", out["log_variance"], with_f64=True)
                    r0 = sd.ddim_sample(fixed_model, x_t, t_index, noise, clip_denoised=False, eta=0.0)
                    r1 = sd.ddim_sample(fixed_model, x_t, t_index, noise, clip_denoised=False, eta=1.0)
                    put(g, "pred_xstart", r0["pred_xstart"], with_f64=True)
                    put(g, "eps", r0["eps"], with_f64=True)
                    put(g, "sample", r0["sample"], with_f64=True)
                    put(g, "sample_eta1", r1["sample"], with_f64=True)
            g.create_dataset("t_orig", data=t_seen[0].numpy().astype(np.int32))

        # ---- VLB pieces on the base 1000-step diffusion ------------------
        Nv = 4
        k = rs.randint(0, 256, size=(Nv, C, H, H))
        k[:, 0, 0, 0] = 0      # exactly -1  (x < -0.999 branch)
        k[:, 0, 0, 1] = 255    # exactly +1  (x >  0.999 branch)
        x_start = f32(torch.from_numpy(k / 127.5 - 1.0))
        t = torch.tensor([0, 0, 1, 500], dtype=torch.int64)
        noise = f32(torch.from_numpy(rs.standard_normal((Nv, C, H, H))))
        with torch.no_grad():
            x_t = f32(base.q_sample(x_start, t, noise))  # stored/used as float32
        eps = rs.standard_normal((Nv, C, H, H)) * 0.5 + noise.numpy() * 0.5
        var = rs.uniform(-1.0, 1.0, (Nv, C, H, H))
        model_out = f32(torch.from_numpy(np.concatenate([eps, var], axis=1)))
        with torch.no_grad():
            r = base._vb_terms_bpd(lambda *a, rr=model_out: rr, x_start, x_t, t, clip_denoised=False)
        gv = f.create_group("vlb")
        put(gv, "x_start", x_start)
        put(gv, "noise", noise)
        put(gv, "x_t", x_t)
        gv.create_dataset("t", data=t.numpy().astype(np.int32))
        put(gv, "model_out", model_out)
        put(gv, "kl_bits", r["kl"], with_f64=True)
        put(gv, "decoder_nll_bits", r["decoder_nll"], with_f64=True)
        put(gv, "output_bits", r["output"], with_f64=True)
    print("  vlb kl_bits =", r["kl"].numpy(), " decoder_nll_bits =", r["decoder_nll"].numpy())


def describe(path):
    print("==", os.path.relpath(path, os.path.dirname(HERE)), os.path.getsize(path), "bytes")
    with h5py.File(path, "r") as f:
        print("  attrs:", {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()})

        def vis(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                ok = np.all(np.isfinite(a)) if a.dtype.kind == "f" else True
                print("  /%-50s %-14s %-8s%s" % (name, str(obj.shape), obj.dtype, "" if ok else "  NONFINITE!"))
        f.visititems(vis)


def main():
    p1 = os.path.join(HERE, "dit_tiny.h5")
    p2 = os.path.join(HERE, "diffusion_ref.h5")
    print("generating", p1)
    gen_dit_tiny(p1)
    print("generating", p2)
    gen_diffusion(p2)
    describe(p1)
    describe(p2)


if __name__ == "__main__":
    main()
