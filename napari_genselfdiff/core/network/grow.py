"""Grow a trained U-Net wider or deeper while it computes what it computed (function-preserving growth).

A wider or deeper network trained from scratch needs the whole training again; grown from a trained one,
it starts where that one stands and only learns what the extra capacity adds (in the spirit of Net2Net,
Chen et al., ICLR 2016). Here:

- **wider** (``widths``): every old channel keeps its weights; a new channel gets the new network's
  random incoming weights, and every weight from a new channel INTO an old one is zero, so old channels
  compute exactly what they did, and new channels start to matter as soon as training moves those
  zeros (their gradients are not zero). Concatenations (skip + upsampled, stem + decoder, image +
  features) and the sinusoidal timestep embedding (sines, then cosines) are mapped part by part.
- **deeper** (``blocks_per_level``): each added residual block's last normalisation starts at weight 0
  and bias 0, so the block adds ``silu(0) = 0`` to its input: an identity until trained.

Exact for batch-normalised networks without attention at the widened levels (the shipped ones: attention
only at the bottleneck) whose deepest width is unchanged, at t = 0 (where segmentation calls the network:
every sine is 0 and every cosine 1 whatever the frequencies; a wider base width changes the frequencies
of the timestep embedding, so a noise model is exact only grown deeper). Attention normalises over ALL its
channels (``GroupNorm(1, C)``), so widening a level with attention shifts that normalisation's
statistics: close, not exact. :func:`grow` reports the largest change of the output it measured.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch

from .config import UNetConfig
from .unet import AttentionUNet

#: Weights whose input dimension is a concatenation: (pattern, function of the OLD/NEW config giving the
#: first part's width). The second part is what remains (a skip of the same width, or the image).
_CONCAT_INPUTS = (
    (re.compile(r"decoder\.(\d+)\.blocks\.0\.(conv1|skip)\.weight$"), lambda c, m: c.widths[len(c.widths) - 1 - int(m.group(1))]),
    (re.compile(r"final\.(conv1|skip)\.weight$"), lambda c, m: c.widths[0]),
    (re.compile(r"full_conv\.weight$"), lambda c, m: c.widths[0]),
)
_SINUSOID_INPUT = re.compile(r"time_embedding\.mlp\.0\.weight$")
_TRANSPOSED = re.compile(r"(up\.\d+|full_up)\.conv\.weight$")  # ConvTranspose2d: (in, out, kh, kw)
_BLOCK = re.compile(r"(encoder|decoder)\.(\d+)\.blocks\.(\d+)\.")


def _positions(name: str, dim: str, old: int, new: int, old_cfg: UNetConfig, new_cfg: UNetConfig) -> torch.Tensor:
    """Where the ``old`` entries of one dimension of ``name`` sit among its ``new`` entries."""
    if dim == "in":
        for pattern, first in _CONCAT_INPUTS:
            m = pattern.search(name)
            if m:
                a_old, a_new = first(old_cfg, m), first(new_cfg, m)
                return torch.cat([torch.arange(a_old), a_new + torch.arange(old - a_old)])
        if _SINUSOID_INPUT.search(name):  # sines, then cosines: each half keeps its place at its start
            return torch.cat([torch.arange(old // 2), new // 2 + torch.arange(old // 2)])
    return torch.arange(old)


def _grown_tensor(name: str, old: torch.Tensor, fresh: torch.Tensor, old_cfg: UNetConfig,
                  new_cfg: UNetConfig) -> torch.Tensor:
    """``fresh`` (the new network's initial tensor) with ``old`` in place and no path from new into old."""
    if old.shape == fresh.shape and old.dim() == 0:
        return old.clone()
    out = fresh.clone()
    if old.dim() == 1:
        out[_positions(name, "out", old.shape[0], fresh.shape[0], old_cfg, new_cfg)] = old
        return out
    o_dim, i_dim = (1, 0) if _TRANSPOSED.search(name) else (0, 1)
    rows = _positions(name, "out", old.shape[o_dim], fresh.shape[o_dim], old_cfg, new_cfg)
    cols = _positions(name, "in", old.shape[i_dim], fresh.shape[i_dim], old_cfg, new_cfg)
    out_view = out.movedim((o_dim, i_dim), (0, 1))
    old_view = old.movedim((o_dim, i_dim), (0, 1))
    out_view[rows] = 0  # old outputs: nothing from new inputs ...
    out_view[rows[:, None], cols[None, :]] = old_view  # ... and their old weights
    return out


def grow(model: AttentionUNet, widths: tuple[int, ...] | None = None, blocks_per_level: int | None = None,
         *, seed: int = 0, check: torch.Tensor | None = None) -> tuple[AttentionUNet, float | None]:
    """A wider and/or deeper copy of ``model`` that computes the same function (see the module docstring).

    Args:
        model: the trained network (not changed).
        widths: the new widths, each >= the old one at its level (same number of levels); None: unchanged.
        blocks_per_level: the new number of residual blocks per level (>= the old); None: unchanged.
        seed: seed of the new channels' random incoming weights.
        check: an input batch; when given, both networks run on it in eval mode and the largest absolute
            difference of their outputs is returned (0 up to rounding when the growth is exact).

    Returns:
        (the grown network, the measured largest difference or None).

    Raises:
        ValueError: widths of another depth, or smaller widths or fewer blocks than the model's.
    """
    old_cfg: UNetConfig = model.config
    new_widths = tuple(old_cfg.widths) if widths is None else tuple(int(w) for w in widths)
    new_blocks = old_cfg.blocks_per_level if blocks_per_level is None else int(blocks_per_level)
    if len(new_widths) != len(old_cfg.widths):
        raise ValueError(f"growing keeps the number of levels ({len(old_cfg.widths)}); got widths {new_widths}.")
    if any(n < o for n, o in zip(new_widths, old_cfg.widths)) or new_blocks < old_cfg.blocks_per_level:
        raise ValueError(f"growing cannot shrink: widths {tuple(old_cfg.widths)} -> {new_widths}, "
                         f"blocks per level {old_cfg.blocks_per_level} -> {new_blocks}.")
    new_cfg = replace(old_cfg, widths=new_widths, blocks_per_level=new_blocks)
    torch.manual_seed(seed)
    grown = AttentionUNet(new_cfg)
    old_state = model.state_dict()
    state = grown.state_dict()
    lost = sorted(set(old_state) - set(state))
    if lost:  # e.g. a level grown to its input's width: its 1x1 projection would become an identity
        raise ValueError(f"widths {new_widths} change the network's structure, not only its size (no place for "
                         f"{', '.join(lost[:3])}); keep each level wider than the one before it, as it was.")
    for name, fresh in state.items():
        if name in old_state:
            state[name] = _grown_tensor(name, old_state[name].to(fresh.dtype), fresh, old_cfg, new_cfg)
        else:
            m = _BLOCK.search(name)
            if m and int(m.group(3)) >= old_cfg.blocks_per_level and re.search(r"\.norm2\.(weight|bias)$", name):
                state[name] = torch.zeros_like(fresh)  # an added block starts as the identity
    grown.load_state_dict(state)
    grown.freeze_norm_statistics = model.freeze_norm_statistics
    difference = None
    if check is not None:
        was_training = model.training
        model.eval()
        grown.eval()
        with torch.no_grad():
            difference = float((grown(check) - model(check)).abs().max())
        model.train(was_training)
    return grown, difference
