"""Reverse-process samplers: DDPM ancestral sampling and DDIM (Song et al. 2021).

Each sampler is a generator (``*_progressive``) that yields one progress dict per denoising step,
``{"step": i, "total": n, "t": timestep index, "x": current sample, "x0": predicted clean image}``
with ``i`` counting 1..n, and then yields the final samples as a plain tensor, which is also its
return value. That shape suits both a headless loop and napari's ``thread_worker``
("yielded" drives a progress bar, "returned" receives the images). The thin wrappers
:func:`ddpm_sample` and :func:`ddim_sample` consume the generator and return the tensor.

The yielded tensors are the sampler's own; copy them before modifying them in place.

Gradients are disabled per step rather than around the whole generator, so that the consumer's
code between two steps runs with the caller's grad mode. The model's train/eval mode is left as
the caller set it (call ``model.eval()`` first for GroupNorm/Dropout-free inference behaviour).

Images are normalised to [-1, 1] in this project, so predicted clean images are clipped there.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterator, ParamSpec, Sequence

import torch

from .gaussian import EpsModel, GaussianDiffusion

P = ParamSpec("P")


def _initial_noise(
    shape: Sequence[int],
    x_T: torch.Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> torch.Tensor:
    if x_T is not None:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        # No copy needed: the samplers never modify x in place.
        return x_T.to(device=device) if device is not None else x_T
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float32)


def _predict_x0_eps(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    x: torch.Tensor,
    t: torch.Tensor,
    clip_denoised: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model and return (x0_hat, eps_hat); eps is re-derived after clipping x0 so both agree."""
    eps = model(x, t).to(x.dtype)
    if eps.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(eps.shape)}, expected {tuple(x.shape)}")
    x0 = diffusion.predict_x0_from_eps(x, t, eps)
    if clip_denoised:
        x0 = x0.clamp(-1.0, 1.0)
        eps = diffusion.predict_eps_from_x0(x, t, x0)
    return x0, eps


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """Evenly spaced timestep indices for DDIM, from the noisiest (T - 1) down to 0.

    Args:
        num_timesteps: T of the diffusion process.
        steps: Number of sampling steps, ``1 <= steps <= T``.

    Returns:
        ``steps`` distinct indices in decreasing order; with ``steps >= 2`` the first is ``T - 1``
        and the last is 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an integer in [1, {num_timesteps}], got {steps!r}")
    if steps == 1:
        return [num_timesteps - 1]
    # Rounding a linspace of `steps` points over [0, T-1] gives distinct integers when steps <= T.
    grid = torch.linspace(0, num_timesteps - 1, steps, dtype=torch.float64).round().long()
    return grid.flip(0).tolist()


def ddim_sample_progressive(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: torch.Tensor | None = None,
    clip_denoised: bool = True,
) -> Iterator[Any]:
    """DDIM sampling (Song et al. 2021, eq. 12) over ``steps`` evenly spaced timesteps.

    For consecutive indices ``t > s`` (``abar_s = 1`` after the last step)::

        x0  = clip((x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t))
        sig = eta * sqrt((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s))
        x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sig^2) eps + sig z

    ``eta = 0`` is deterministic; ``eta = 1`` matches DDPM's posterior variance.

    Args:
        model: ``model(x_t, t) -> eps`` with x_t (B, C, H, W) and int64 t (B,).
        diffusion: The process the model was trained with.
        shape: Output shape (B, C, H, W).
        steps: Number of denoising steps, ``<= T``. By default, 50.
        eta: Stochasticity, >= 0. By default, 0 (deterministic DDIM).
        generator: Random generator for the initial and per-step noise (on ``device``).
        device: Where to sample. By default, ``x_T``'s device or the CPU.
        x_T: Starting noise of ``shape``. By default, drawn from N(0, I).
        clip_denoised: Clip predicted clean images to [-1, 1]. By default, True.

    Yields:
        ``steps`` progress dicts ``{"step", "total", "t", "x", "x0"}``, then the samples
        (tensor of ``shape``, float32, in [-1, 1] when clipping).

    Returns:
        The samples, as also yielded last.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    timesteps = ddim_timesteps(diffusion.num_timesteps, steps)
    x = _initial_noise(shape, x_T, generator, device)
    batch = x.shape[0]
    abar = diffusion.alphas_cumprod
    total = len(timesteps)
    for i, t_idx in enumerate(timesteps):
        prev_idx = timesteps[i + 1] if i + 1 < total else -1
        with torch.no_grad():
            t = torch.full((batch,), t_idx, device=x.device, dtype=torch.long)
            x0, eps = _predict_x0_eps(model, diffusion, x, t, clip_denoised)
            # Scalar coefficients from the float64 table, computed in Python floats.
            a_t = float(abar[t_idx])
            a_s = float(abar[prev_idx]) if prev_idx >= 0 else 1.0
            sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)) ** 0.5
            dir_coef = max(1 - a_s - sigma**2, 0.0) ** 0.5
            x = a_s**0.5 * x0 + dir_coef * eps
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        yield {"step": i + 1, "total": total, "t": t_idx, "x": x, "x0": x0}
    yield x
    return x


def ddpm_sample_progressive(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: torch.Tensor | None = None,
    clip_denoised: bool = True,
) -> Iterator[Any]:
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) through all T steps.

    Each step draws ``x_{t-1} ~ N(mu_q(x_t, x0_hat), sigma_q^2(t))`` with the clipped prediction
    ``x0_hat``; the variance is the posterior one (paper, after eq. 3), and no noise is added at
    index 0.

    Args:
        model: ``model(x_t, t) -> eps`` with x_t (B, C, H, W) and int64 t (B,).
        diffusion: The process the model was trained with.
        shape: Output shape (B, C, H, W).
        generator: Random generator for the initial and per-step noise (on ``device``).
        device: Where to sample. By default, ``x_T``'s device or the CPU.
        x_T: Starting noise of ``shape``. By default, drawn from N(0, I).
        clip_denoised: Clip predicted clean images to [-1, 1]. By default, True.

    Yields:
        T progress dicts ``{"step", "total", "t", "x", "x0"}``, then the samples (tensor of ``shape``).

    Returns:
        The samples, as also yielded last.
    """
    x = _initial_noise(shape, x_T, generator, device)
    batch = x.shape[0]
    total = diffusion.num_timesteps
    for i, t_idx in enumerate(reversed(range(total))):
        with torch.no_grad():
            t = torch.full((batch,), t_idx, device=x.device, dtype=torch.long)
            x0, _ = _predict_x0_eps(model, diffusion, x, t, clip_denoised)
            mean, var = diffusion.q_posterior_mean_variance(x0, x, t)
            x = mean
            if t_idx > 0:
                x = x + var.sqrt() * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        yield {"step": i + 1, "total": total, "t": t_idx, "x": x, "x0": x0}
    yield x
    return x


def _run_to_end(progressive: Callable[P, Iterator[Any]]) -> Callable[P, torch.Tensor]:
    """The sampler that runs ``progressive`` to the end and returns its samples: same arguments."""

    @functools.wraps(progressive)
    def sample(*args: P.args, **kwargs: P.kwargs) -> torch.Tensor:
        result = None
        for result in progressive(*args, **kwargs):
            pass
        if not isinstance(result, torch.Tensor):  # the generators' contract: the last item is the samples
            raise RuntimeError("sampler ended without yielding its samples")
        return result

    name = progressive.__name__.removesuffix("_progressive")
    sample.__name__ = sample.__qualname__ = name
    sample.__doc__ = f"Run :func:`{progressive.__name__}` to the end and return the samples (shape ``shape``)."
    sample.__signature__ = inspect.signature(progressive).replace(return_annotation="torch.Tensor")
    return sample


ddim_sample = _run_to_end(ddim_sample_progressive)
ddpm_sample = _run_to_end(ddpm_sample_progressive)
