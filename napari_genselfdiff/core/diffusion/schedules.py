"""Noise schedules beta_1..beta_T for the forward diffusion process (paper eq. 1).

All schedules are returned as float64 tensors: the cumulative product over 1000 steps loses
accuracy in float32, and the coefficients are only cast to the data's dtype when indexed.
"""

from __future__ import annotations

import math

import torch

#: Names accepted by :func:`make_betas`.
SCHEDULES: tuple[str, ...] = ("scaled_linear", "linear", "cosine")

# Ho et al. (2020) endpoints, used by the paper's code for both linear variants.
_BETA_START = 1e-4
_BETA_END = 0.02
# Nichol & Dhariwal (2021), sec. 3.2: offset s keeps beta_1 from being vanishingly small, and betas
# are clipped at 0.999 to avoid the singularity at t = T.
_COSINE_S = 0.008
_COSINE_MAX_BETA = 0.999


def make_betas(kind: str = "scaled_linear", T: int = 1000) -> torch.Tensor:
    """Build a noise schedule.

    Args:
        kind: One of :data:`SCHEDULES`:

            * ``"scaled_linear"``: ``linspace(sqrt(1e-4), sqrt(0.02), T) ** 2``, the schedule of the
              paper's reference code.
            * ``"linear"``: ``linspace(1e-4, 0.02, T)`` (Ho et al. 2020).
            * ``"cosine"``: ``abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)`` with ``s = 0.008``,
              ``beta_t = 1 - abar(t) / abar(t - 1)`` clipped at 0.999 (Nichol & Dhariwal 2021).
        T: Number of diffusion steps. By default, 1000 as in the paper.

    Returns:
        Tensor of shape ``(T,)``, dtype float64; element ``i`` is the paper's ``beta_{i+1}``.

    Raises:
        ValueError: If ``kind`` is unknown or ``T`` is not a positive integer.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer number of diffusion steps, got {T!r}")
    if kind == "scaled_linear":
        return torch.linspace(_BETA_START**0.5, _BETA_END**0.5, T, dtype=torch.float64) ** 2
    if kind == "linear":
        return torch.linspace(_BETA_START, _BETA_END, T, dtype=torch.float64)
    if kind == "cosine":
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + _COSINE_S) / (1 + _COSINE_S) * (math.pi / 2)) ** 2
        alphas_cumprod = f / f[0]
        betas = 1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1]
        return betas.clamp(min=0.0, max=_COSINE_MAX_BETA)
    raise ValueError(
        f"Unknown noise schedule {kind!r}; valid schedules are: {', '.join(SCHEDULES)}"
    )
