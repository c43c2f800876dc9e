"""The diffusion process of the paper's self-supervised pretraining (sec. III-B, eq. 1-8).

Timesteps are integer indices in ``[0, T - 1]``; index 0 is the first (least-noisy) noising step.
"""

from .gaussian import EpsModel, GaussianDiffusion
from .samplers import (
    ddim_sample,
    ddim_sample_progressive,
    ddim_timesteps,
    ddpm_sample,
    ddpm_sample_progressive,
)
from .schedules import SCHEDULES, make_betas

__all__ = [
    "SCHEDULES",
    "EpsModel",
    "GaussianDiffusion",
    "ddim_sample",
    "ddim_sample_progressive",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_sample_progressive",
    "make_betas",
]
