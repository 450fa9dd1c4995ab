#!/usr/bin/python3
"""PyTorch eager CPU peer of robuq-bench -- a developer benchmark, not part of the product.

Times one DiT training step in float32 on the CPU: t ~ U{0..999}, noise, q_sample,
forward, hybrid loss (eps MSE + VLB with frozen mean, learned-range variance,
LossType.MSE), backward, AdamW (lr 1e-4, wd 0), EMA 0.9999 (robuq-bench does it
too; --no-ema drops it), zero_grad. Model and diffusion are trimmed copies of
tests/ref/gen_dit_ref.py (faithful to facebookresearch/DiT). --mode qat_a2 makes
every Linear inside the DiT blocks a RobuQ fake-quant linear: dense orthonormal
Hadamard rotation of input and weight, per-token mid-rise activation quantizer
(2 bits; 4 for adaLN modulation), scale alpha*rms, clipped STE, and per-row
ternary weights (STE). One JSON line goes to stdout, progress to stderr.
"""
import argparse, functools, json, math, os, resource, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------ DiT model
def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

class DiTBlock(nn.Module):
    def __init__(self, D, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(D, heads)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(D, 4 * D)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c):
        sm, cm, gm, sp, cp, gp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, cm))
        return x + gp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sp, cp))

def sincos_2d(dim, g):
    """Fixed 2D sin-cos position embedding (first half: column, second half: row)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    out = [np.einsum("m,d->md", pos.reshape(-1), omega) for pos in np.meshgrid(np.arange(g), np.arange(g))]
    return np.concatenate([np.sin(out[0]), np.cos(out[0]), np.sin(out[1]), np.cos(out[1])], axis=1)

class DiT(nn.Module):
    def __init__(self, input_size, patch, in_ch, D, depth, heads, num_classes, drop=0.1):
        super().__init__()
        self.p, self.out_ch, self.num_classes, self.drop = patch, 2 * in_ch, num_classes, drop
        self.x_proj = nn.Conv2d(in_ch, D, kernel_size=patch, stride=patch)   # timm PatchEmbed
        self.t_mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        self.y_table = nn.Embedding(num_classes + 1, D)
        pe = torch.from_numpy(sincos_2d(D, input_size // patch)).float().unsqueeze(0)
        self.pos_embed = nn.Parameter(pe, requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(D, heads) for _ in range(depth)])
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_linear = nn.Linear(D, patch * patch * self.out_ch)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        for m in [m for m in self.modules() if isinstance(m, nn.Linear)]:   # DiT initialize_weights() ...
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.x_proj.weight.data.view(D, -1))
        nn.init.zeros_(self.x_proj.bias)
        for w in (self.y_table.weight, self.t_mlp[0].weight, self.t_mlp[2].weight):
            nn.init.normal_(w, std=0.02)
        # ... except adaLN-Zero / final layer: N(0, 0.02) instead of zero, so every path does real work
        for lin in [b.adaLN_modulation[1] for b in self.blocks] + [self.final_adaLN[1], self.final_linear]:
            nn.init.normal_(lin.weight, std=0.02)

    def forward(self, x, t, y):
        x = self.x_proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
        args = t[:, None].float() * freqs[None]
        c = self.t_mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))
        if self.training and self.drop > 0:   # class dropout -> null label
            y = torch.where(torch.rand(y.shape[0]) < self.drop, torch.full_like(y, self.num_classes), y)
        c = c + self.y_table(y)
        for blk in self.blocks:
            x = blk(x, c)
        shift, scale = self.final_adaLN(c).chunk(2, dim=1)
        x = self.final_linear(modulate(self.norm_final(x), shift, scale))
        N, h, p = x.shape[0], int(x.shape[1] ** 0.5), self.p   # unpatchify
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(N, h, h, p, p, self.out_ch))
        return x.reshape(N, self.out_ch, h * p, h * p)


# ------------------------------------------------------------------ RobuQ QAT
ACTQ = {2: (1.493530022, 3), 4: (2.514004559, 15)}   # bits -> (alpha = clip/sigma, max odd code)

@functools.lru_cache(maxsize=None)
def hadamard(n):
    """Orthonormal Hadamard, n = 2^k (Sylvester) or 12*2^k (Paley I, q=11, kron Sylvester)."""
    k, m = (12, n // 12) if n % 12 == 0 else (1, n)
    if m < 1 or m & (m - 1):
        raise ValueError("hadamard: unsupported size %d (need 2^k or 12*2^k)" % n)
    base, syl = np.ones((1, 1)), np.ones((1, 1))
    if k == 12:   # Paley I: H12 = I + [[0, 1^T], [-1, Q]], Q = Jacobsthal matrix of GF(11)
        res = {(i * i) % 11 for i in range(1, 11)}
        S = np.zeros((12, 12))
        S[0, 1:], S[1:, 0] = 1, -1
        S[1:, 1:] = [[0 if i == j else (1 if (j - i) % 11 in res else -1) for j in range(11)] for i in range(11)]
        base = S + np.eye(12)
    while syl.shape[0] < m:
        syl = np.block([[syl, syl], [syl, -syl]])
    H = np.kron(base, syl) / math.sqrt(n)
    assert np.allclose(H @ H.T, np.eye(n), atol=1e-9)
    return torch.from_numpy(H).float()

def actq(x, bits):
    """Per-token mid-rise fake quant, clip = alpha*rms, STE passing where |x| <= clip."""
    alpha, cmax = ACTQ[bits]
    with torch.no_grad():
        clip = alpha * x.pow(2).mean(-1, keepdim=True).sqrt()
        unit = (clip / cmax).clamp_min(1e-30)
        q = torch.clamp(2 * torch.floor(x / (2 * unit)) + 1, -cmax, cmax) * unit
        mask = (x.abs() <= clip).to(x.dtype)
    xm = x * mask
    return xm + (q - xm).detach()

def ternary(w):
    """Per-output-row ternary weights, gamma = mean|w| + 1e-8, identity STE."""
    with torch.no_grad():
        g = w.abs().mean(1, keepdim=True) + 1e-8
        q = g * torch.clamp(torch.round(w / g), -1, 1)
    return w + (q - w).detach()

class QLinear(nn.Module):
    """y = Q_a(x H) Q_w(W H)^T + b: fake-quant linear wrapping (sharing the parameters of) lin."""
    def __init__(self, lin, bits, H):
        super().__init__()
        self.weight, self.bias, self.bits = lin.weight, lin.bias, bits
        self.register_buffer("H", H, persistent=False)

    def forward(self, x):
        return F.linear(actq(x @ self.H, self.bits), ternary(self.weight @ self.H), self.bias)

def quantize_blocks(model, bits=2, adaln_bits=4):
    for b in model.blocks:
        for mod, name, nb in [(b.attn, "qkv", bits), (b.attn, "proj", bits), (b.mlp, "fc1", bits),
                              (b.mlp, "fc2", bits), (b.adaLN_modulation, "1", adaln_bits)]:
            lin = getattr(mod, name)
            setattr(mod, name, QLinear(lin, nb, hadamard(lin.in_features)))


# ------------------------------------------------------------------ diffusion
class Diffusion:
    """Gaussian diffusion, 1000 linear betas 1e-4..0.02, eps-pred, learned-range var, LossType.MSE."""

    def __init__(self, T=1000):
        betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
        acp = np.cumprod(1.0 - betas)
        acp_prev = np.append(1.0, acp[:-1])
        post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
        a = dict(sqrt_acp=np.sqrt(acp), sqrt_1m_acp=np.sqrt(1.0 - acp),
                 sqrt_recip_acp=np.sqrt(1.0 / acp), sqrt_recipm1_acp=np.sqrt(1.0 / acp - 1),
                 post_logvar=np.log(np.append(post_var[1], post_var[1:])), log_betas=np.log(betas),
                 coef1=betas * np.sqrt(acp_prev) / (1.0 - acp),
                 coef2=(1.0 - acp_prev) * np.sqrt(1.0 - betas) / (1.0 - acp))
        self.a = {k: torch.from_numpy(v).float() for k, v in a.items()}   # reference: .float()

    def ex(self, k, t):
        return self.a[k][t].view(-1, 1, 1, 1)

    def loss(self, model, x0, t, y, noise):
        x_t = self.ex("sqrt_acp", t) * x0 + self.ex("sqrt_1m_acp", t) * noise
        out = model(x_t, t, y)
        eps, v = torch.split(out, x0.shape[1], dim=1)
        # VLB with frozen mean: gradient reaches only the variance channels
        frac = (v + 1) / 2
        logvar = frac * self.ex("log_betas", t) + (1 - frac) * self.ex("post_logvar", t)
        pred_x0 = self.ex("sqrt_recip_acp", t) * x_t - self.ex("sqrt_recipm1_acp", t) * eps.detach()
        mean = self.ex("coef1", t) * pred_x0 + self.ex("coef2", t) * x_t
        true_mean, true_logvar = self.ex("coef1", t) * x0 + self.ex("coef2", t) * x_t, self.ex("post_logvar", t)
        kl = 0.5 * (-1.0 + logvar - true_logvar + torch.exp(true_logvar - logvar)
                    + (true_mean - mean) ** 2 * torch.exp(-logvar)).mean(dim=(1, 2, 3)) / math.log(2.0)
        cdf = lambda z: 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
        cx, inv = x0 - mean, torch.exp(-0.5 * logvar)
        cdf_plus, cdf_min = cdf(inv * (cx + 1.0 / 255.0)), cdf(inv * (cx - 1.0 / 255.0))
        logp = torch.where(x0 < -0.999, torch.log(cdf_plus.clamp(min=1e-12)),
                           torch.where(x0 > 0.999, torch.log((1.0 - cdf_min).clamp(min=1e-12)),
                                       torch.log((cdf_plus - cdf_min).clamp(min=1e-12))))
        nll = -logp.mean(dim=(1, 2, 3)) / math.log(2.0)
        mse = ((noise - eps) ** 2).mean(dim=(1, 2, 3))
        return (mse + torch.where(t == 0, nll, kl)).mean()


# ------------------------------------------------------------------ main
def infer(model, o):
    shape, times = (o.batch, o.channels, o.input, o.input), []
    x, y = torch.randn(shape), torch.randint(0, o.classes, (o.batch,))
    t = torch.arange(o.batch) * (1000 // o.batch)
    with torch.no_grad():
        for step in range(o.warmup + o.steps):
            t0 = time.perf_counter()
            model(x, t, y)
            times.append(time.perf_counter() - t0)
    times = times[o.warmup:]
    print(json.dumps({"impl": "pytorch", "mode": o.mode, "threads": torch.get_num_threads(), "batch": o.batch,
                      "forward_s_mean": round(sum(times) / len(times), 5), "forward_s_min": round(min(times), 5),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "torch": torch.__version__}), flush=True)


def main():
    ap = argparse.ArgumentParser(description="PyTorch eager CPU peer of robuq-bench: times DiT training steps.")
    ap.add_argument("--mode", choices=["fp", "qat_a2", "infer_fp"], required=True)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    for k, v in [("batch", 16), ("steps", 5), ("warmup", 1), ("depth", 12), ("hidden", 384), ("heads", 6),
                 ("patch", 2), ("input", 28), ("channels", 1), ("classes", 10), ("seed", 0)]:
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--no-ema", action="store_true", help="leave the EMA update out of the step")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler table of the last timed step, by self CPU time (to stderr)")
    o = ap.parse_args()

    torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)
    model = DiT(o.input, o.patch, o.channels, o.hidden, o.depth, o.heads, o.classes).train()
    if o.mode == "infer_fp":   # fp32 forward only (the peer of the exported integer forward)
        return infer(model.eval(), o)
    if o.mode == "qat_a2":
        quantize_blocks(model)
    params = [p for p in model.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    diff, shape, times = Diffusion(), (o.batch, o.channels, o.input, o.input), []
    for step in range(o.warmup + o.steps + o.profile):   # the profiled step comes last, untimed
        x0, y = torch.rand(shape) * 2 - 1, torch.randint(0, o.classes, (o.batch,))   # random data, no dataset
        prof = None
        if step == o.warmup + o.steps:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        t0 = time.perf_counter()
        t = torch.randint(0, 1000, (o.batch,))
        loss = diff.loss(model, x0, t, y, torch.randn(shape))
        loss.backward()
        opt.step()
        if not o.no_ema:
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.mul_(0.9999).add_(p, alpha=1 - 0.9999)
        opt.zero_grad(set_to_none=True)
        if prof is not None:
            prof.__exit__(None, None, None)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
            break
        times.append(time.perf_counter() - t0)
        print("bench_torch %s: step %d %.3f s (loss %.4f)" % (o.mode, step, times[-1], loss.item()), file=sys.stderr)
    times = times[o.warmup:]
    print(json.dumps({"impl": "pytorch", "mode": o.mode, "threads": torch.get_num_threads(), "batch": o.batch,
                      "step_s_mean": round(sum(times) / len(times), 4), "step_s_min": round(min(times), 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "params": sum(p.numel() for p in params), "torch": torch.__version__}), flush=True)

if __name__ == "__main__":
    main()
