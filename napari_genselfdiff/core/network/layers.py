"""Building blocks of the attention U-Net: timestep embedding, residual block, attention, resampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of integer timesteps: (B,) -> (B, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError("the embedding dimension must be even.")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)
        )
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal -> Linear -> GELU -> Linear, as in the paper's code (output 4 * base width)."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.sinusoidal = SinusoidalEmbedding(base)
        self.mlp = nn.Sequential(nn.Linear(base, 4 * base), nn.GELU(), nn.Linear(4 * base, 4 * base))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoidal(t))


def make_norm(kind: str, channels: int, groups: int) -> nn.Module:
    """The normalisation layer of a residual block: GroupNorm(groups) or BatchNorm."""
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown normalisation {kind!r}; use 'group' or 'batch'.")


class ResBlock(nn.Module):
    """Two 3x3 conv + norm + SiLU; the projected timestep embedding is added after the first."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, norm: str = "group") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = make_norm(norm, cout, groups)
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(temb, cout))
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = make_norm(norm, cout, groups)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = h + self.time(temb)[:, :, None, None].to(h.dtype)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class LinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al. / Shen et al.), O(pixels): used at every level.

    Pre-norm and residual are included: x -> x + attn(norm(x)).
    """

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        hidden = heads * dim_head
        self.norm = nn.GroupNorm(1, dim)
        self.qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.out = nn.Sequential(nn.Conv2d(hidden, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, -1, h * w).unbind(1)
        # Softmax over features for q and over positions for k, then the (d x d) context: linear in h*w.
        q = q.float().softmax(dim=-2) * self.scale
        k = k.float().softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v.float())
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, -1, h, w)
        return x + self.out(out.to(x.dtype))


class FullAttention(nn.Module):
    """Softmax self-attention over all positions (only at the bottleneck, where positions are few)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        hidden = heads * dim_head
        self.norm = nn.GroupNorm(1, dim)
        self.qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        # (b, heads, n, d) with a contiguous last dimension: the fused (flash) CPU and GPU kernels need
        # it; without it PyTorch falls back to the math path, which materialises the n x n matrix.
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, -1, h * w).transpose(-1, -2).contiguous().unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, -1, h, w)
        return x + self.out(out)


class Downsample(nn.Module):
    """4x4 stride-2 convolution (halves H and W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """4x4 stride-2 transposed convolution (doubles H and W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
