"""Gaussian diffusion (DDPM) maths: forward noising, P2-weighted training loss, posterior terms.

Timestep convention: a timestep is an integer INDEX ``i`` in ``[0, T - 1]``; index ``i`` is the
paper's step ``t = i + 1`` (eq. 1-2). Index 0 is therefore the first, least-noisy noising step
(``abar[0] = 1 - beta_1``) and index ``T - 1`` the noisiest. The network sees the same indices, so
the paper's fine-tuning call "at t = 0" (sec. III-B) means timestep index 0: the embedding of the
least-noisy step, the closest the network has seen to a clean image.

Every schedule-derived coefficient is kept in float64 and only cast to the input's dtype and device
after indexing, so bf16/fp16 training does not lose the tiny ``1 - abar`` values near index 0.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from .schedules import SCHEDULES, make_betas

#: A denoiser: ``model(x_t, t) -> eps`` with ``x_t`` (B, C, H, W) and integer ``t`` (B,).
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_CUSTOM = "custom"


class GaussianDiffusion:
    """Fixed forward process and the P2-weighted epsilon-prediction objective (paper eq. 1-8).

    It is not an ``nn.Module`` on purpose: ``module.to(torch.bfloat16)`` would cast float buffers
    down, and the schedule must stay float64. Device copies are made lazily and cached.

    Args:
        betas: Noise schedule, shape ``(T,)``, values in ``(0, 1)``; element ``i`` is ``beta_{i+1}``.
        p2_k: ``k`` in the P2 weight ``1 / (k + SNR(t)) ** gamma`` (eq. 8). By default, 1.
        p2_gamma: ``gamma`` in the P2 weight. By default, 1; 0 gives the unweighted L_simple (eq. 7).
        schedule: Name recorded by :meth:`to_config`. By default, ``"custom"``, in which case the
            betas themselves are stored in the config.

    Raises:
        ValueError: If the betas or P2 parameters are out of range.
    """

    def __init__(
        self,
        betas: torch.Tensor | Sequence[float],
        *,
        p2_k: float = 1.0,
        p2_gamma: float = 1.0,
        schedule: str = _CUSTOM,
    ) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().clone()
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
        if not bool(torch.isfinite(betas).all()) or bool((betas <= 0).any()) or bool((betas >= 1).any()):
            raise ValueError("betas must be finite and strictly between 0 and 1")
        if not math.isfinite(p2_k) or p2_k < 0:
            raise ValueError(f"p2_k must be a finite number >= 0, got {p2_k!r}")
        if not math.isfinite(p2_gamma) or p2_gamma < 0:
            raise ValueError(f"p2_gamma must be a finite number >= 0, got {p2_gamma!r}")
        self.schedule = str(schedule)
        self.p2_k = float(p2_k)
        self.p2_gamma = float(p2_gamma)
        self.num_timesteps = int(betas.numel())

        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        # abar_0 := 1 (no noise) so that the step from index 0 lands on the clean image.
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.betas = betas
        self.alphas = alphas
        self.alphas_cumprod = abar
        self.alphas_cumprod_prev = abar_prev
        self.sqrt_alphas_cumprod = abar.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - abar).sqrt()
        self.sqrt_recip_alphas_cumprod = abar.rsqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / abar - 1.0).sqrt()
        self.snr_table = abar / (1.0 - abar)
        self.p2_weight_table = 1.0 / (self.p2_k + self.snr_table) ** self.p2_gamma
        # Posterior q(x_{t-1} | x_t, x_0) (paper, after eq. 3).
        self.posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        self.posterior_mean_coef1 = betas * abar_prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar)
        self._device_cache: dict[tuple[torch.device, str], torch.Tensor] = {}

    # ------------------------------------------------------------------ construction / config
    @classmethod
    def from_config(
        cls,
        schedule: str = "scaled_linear",
        timesteps: int = 1000,
        p2_k: float = 1.0,
        p2_gamma: float = 1.0,
        betas: Sequence[float] | None = None,
    ) -> "GaussianDiffusion":
        """Build from named settings; ``GaussianDiffusion.from_config(**d.to_config())`` round-trips.

        Args:
            schedule: One of :data:`~.schedules.SCHEDULES`, or ``"custom"`` together with ``betas``.
                By default, ``"scaled_linear"`` (the paper's code).
            timesteps: Number of steps T. By default, 1000.
            p2_k: P2 ``k``. By default, 1.
            p2_gamma: P2 ``gamma``. By default, 1.
            betas: Explicit schedule, only with ``schedule="custom"``.

        Returns:
            The diffusion process.

        Raises:
            ValueError: For an unknown schedule, or betas that disagree with ``schedule``/``timesteps``.
        """
        if schedule == _CUSTOM:
            if betas is None:
                raise ValueError('schedule="custom" needs the betas themselves')
            if len(betas) != timesteps:
                raise ValueError(f"{len(betas)} betas given but timesteps={timesteps}")
            return cls(betas, p2_k=p2_k, p2_gamma=p2_gamma, schedule=_CUSTOM)
        if betas is not None:
            raise ValueError('betas may only be given with schedule="custom"')
        if schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown noise schedule {schedule!r}; valid schedules are: "
                f"{', '.join(SCHEDULES + (_CUSTOM,))}"
            )
        return cls(make_betas(schedule, timesteps), p2_k=p2_k, p2_gamma=p2_gamma, schedule=schedule)

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable settings for model-file metadata.

        Returns:
            ``{"schedule", "timesteps", "p2_k", "p2_gamma"}``, plus ``"betas"`` (a list of floats)
            for a custom schedule, which cannot be rebuilt from its name.
        """
        config: dict[str, Any] = {
            "schedule": self.schedule,
            "timesteps": self.num_timesteps,
            "p2_k": self.p2_k,
            "p2_gamma": self.p2_gamma,
        }
        if self.schedule == _CUSTOM:
            config["betas"] = [float(b) for b in self.betas]
        return config

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion(schedule={self.schedule!r}, timesteps={self.num_timesteps}, "
            f"p2_k={self.p2_k}, p2_gamma={self.p2_gamma})"
        )

    # ------------------------------------------------------------------ indexing helpers
    def _table(self, name: str, device: torch.device) -> torch.Tensor:
        """The float64 table ``name`` on ``device`` (cached); MPS has no float64, so it stays on CPU."""
        if device.type in ("cpu", "mps"):
            return getattr(self, name)
        key = (device, name)
        table = self._device_cache.get(key)
        if table is None:
            table = getattr(self, name).to(device)
            self._device_cache[key] = table
        return table

    def _lookup(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Float64 values of table ``name`` at integer timesteps ``t`` (any shape), on ``t``'s device."""
        table = self._table(name, t.device)
        if table.device != t.device:  # MPS: index on CPU, bring the (float32) result back.
            return table[t.cpu()].float().to(t.device)
        return table[t]

    def _extract(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Coefficient at ``t`` (B,), reshaped to (B, 1, ..., 1) to broadcast against ``like``."""
        values = self._lookup(name, t).to(device=like.device, dtype=like.dtype)
        return values.reshape(t.shape[0], *([1] * (like.ndim - 1)))

    def _timesteps(self, t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
        """Validate ``t`` and return it as an int64 tensor of shape ``(batch,)`` on ``device``."""
        t = torch.as_tensor(t, device=device)
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"timesteps must be integers in [0, {self.num_timesteps - 1}], got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"timesteps must have shape ({batch},) to match the batch, got {tuple(t.shape)}")
        # Checked here because an out-of-range index on a GPU is an unrecoverable device assert.
        if batch and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(
                f"timesteps must lie in [0, {self.num_timesteps - 1}], "
                f"got values in [{int(t.min())}, {int(t.max())}]"
            )
        return t.long()

    # ------------------------------------------------------------------ forward process
    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | int,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``x_t ~ q(x_t | x_0) = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (eq. 2).

        Args:
            x0: Clean images, shape (B, C, H, W), normalised to [-1, 1].
            t: Timestep indices, int tensor (B,) or a scalar for the whole batch.
            noise: ``eps`` with the shape of ``x0``. By default, drawn from N(0, I).
            generator: Random generator for ``noise`` (on ``x0``'s device). By default, global RNG.

        Returns:
            ``x_t``, shape and dtype of ``x0``.
        """
        t = self._timesteps(t, x0.shape[0], x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} differs from x0 shape {tuple(x0.shape)}")
        return (
            self._extract("sqrt_alphas_cumprod", t, x0) * x0
            + self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio ``SNR(t) = abar_t / (1 - abar_t)`` (after eq. 8).

        Args:
            t: Integer timestep indices, any shape.

        Returns:
            float64 tensor (float32 on MPS) of ``t``'s shape and device.
        """
        t = torch.as_tensor(t)
        self._check_range(t)
        return self._lookup("snr_table", t.long())

    def p2_weight(self, t: torch.Tensor | int) -> torch.Tensor:
        """Perception-prioritised weight ``1 / (k + SNR(t)) ** gamma`` (eq. 8, Choi et al. 2022).

        Args:
            t: Integer timestep indices, any shape.

        Returns:
            float64 tensor (float32 on MPS) of ``t``'s shape and device; all ones when gamma = 0.
        """
        t = torch.as_tensor(t)
        self._check_range(t)
        return self._lookup("p2_weight_table", t.long())

    def _check_range(self, t: torch.Tensor) -> None:
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"timesteps must be integers, got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps - 1}]")

    # ------------------------------------------------------------------ training objective
    def training_loss(
        self,
        model: EpsModel,
        x0: torch.Tensor,
        t: torch.Tensor | int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """P2-weighted epsilon-prediction loss (eq. 8); gamma = 0 gives L_simple (eq. 7).

        For each sample: ``w(t) * mean((eps - model(x_t, t)) ** 2)``, the squared error averaged
        over C, H, W (the paper writes a squared norm; the mean only rescales it by a constant and
        keeps the loss independent of patch size). The scalar loss is the mean over the batch, a
        Monte-Carlo estimate of the sum over t in eq. 8 up to the constant factor T.

        Args:
            model: Called as ``model(x_t, t)`` with ``x_t`` (B, C, H, W) and int64 ``t`` (B,) in
                ``[0, T - 1]``; returns the predicted noise, shape (B, C, H, W).
            x0: Clean images, shape (B, C, H, W), in [-1, 1].
            t: Timestep indices (B,) or a scalar. By default, uniform in ``[0, T)`` per sample.
            noise: ``eps``, shape of ``x0``. By default, drawn from N(0, I).
            generator: Random generator for ``t`` and ``noise`` (on ``x0``'s device).

        Returns:
            A dict with ``"loss"`` (scalar, float32, differentiable), ``"per_sample"`` (B,) weighted
            losses (differentiable), ``"mse"`` (B,) unweighted errors (detached), ``"weight"`` (B,)
            P2 weights and ``"t"`` (B,) the timesteps used.

        Raises:
            ValueError: If ``x0`` is not 4-D, ``t``/``noise`` do not fit, or the model's output
                has the wrong shape.
        """
        if x0.ndim != 4:
            raise ValueError(f"x0 must have shape (B, C, H, W), got {tuple(x0.shape)}")
        batch = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=x0.device)
        else:
            t = self._timesteps(t, batch, x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        eps = model(x_t, t)
        if eps.shape != x0.shape:
            raise ValueError(
                f"the model returned shape {tuple(eps.shape)}; epsilon prediction needs {tuple(x0.shape)}"
            )
        # float32 so that the loss is accurate under bf16/fp16 autocast.
        mse = (eps.float() - noise.float()).pow(2).flatten(1).mean(dim=1)
        weight = self._lookup("p2_weight_table", t).to(device=mse.device, dtype=torch.float32)
        per_sample = mse * weight
        return {
            "loss": per_sample.mean(),
            "per_sample": per_sample,
            "mse": mse.detach(),
            "weight": weight,
            "t": t,
        }

    # ------------------------------------------------------------------ reverse-process helpers
    def predict_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """Invert eq. 2: ``x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``.

        Args:
            x_t: Noisy images (B, C, H, W).
            t: Timestep indices (B,) or a scalar.
            eps: Predicted noise, shape of ``x_t``.

        Returns:
            Estimated clean images, shape and dtype of ``x_t`` (not clipped).
        """
        t = self._timesteps(t, x_t.shape[0], x_t.device)
        return (
            self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
        """The noise that takes ``x0`` to ``x_t`` at step ``t`` (eq. 2 solved for eps).

        Args:
            x_t: Noisy images (B, C, H, W).
            t: Timestep indices (B,) or a scalar.
            x0: Clean images, shape of ``x_t``.

        Returns:
            ``(x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)``, shape and dtype of ``x_t``.
        """
        t = self._timesteps(t, x_t.shape[0], x_t.device)
        return (x_t - self._extract("sqrt_alphas_cumprod", t, x_t) * x0) / self._extract(
            "sqrt_one_minus_alphas_cumprod", t, x_t
        )

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (mu_q and sigma_q^2 after eq. 3).

        Args:
            x0: (Predicted) clean images (B, C, H, W).
            x_t: Noisy images, shape of ``x0``.
            t: Timestep indices (B,) or a scalar.

        Returns:
            ``(mean, variance)``: mean of ``x0``'s shape; variance (B, 1, 1, 1), zero at index 0.
        """
        t = self._timesteps(t, x_t.shape[0], x_t.device)
        mean = (
            self._extract("posterior_mean_coef1", t, x_t) * x0
            + self._extract("posterior_mean_coef2", t, x_t) * x_t
        )
        return mean, self._extract("posterior_variance", t, x_t)
