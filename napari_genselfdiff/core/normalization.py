"""The ONE normalisation used in pretraining, fine-tuning and inference, and stored in model files.

An RGB image in [0, 1] (see :mod:`.image_input` for how uint8/uint16/float images get there) is mapped
to [-1, 1] with ``(x - 0.5) / 0.5`` per channel. Diffusion pretraining needs [-1, 1] (the Gaussian
forward process assumes centred data); the paper's code fed [-1, 1] in pretraining but [0, 1] in
fine-tuning and testing, a mismatch we avoid by storing this record in every model file and applying it
everywhere through :meth:`Normalization.apply` (tensors) and :meth:`Normalization.apply_numpy` (arrays).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import ModelFileError


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine map from [0, 1] RGB: (x - mean) / std. By default to [-1, 1]."""

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    scheme: str = "rgb01_to_pm1"

    def to_dict(self) -> dict:
        values = asdict(self)
        values["mean"], values["std"] = list(self.mean), list(self.std)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Normalization":
        try:
            norm = cls(
                mean=tuple(float(v) for v in values["mean"]),
                std=tuple(float(v) for v in values["std"]),
                scheme=str(values.get("scheme", "custom")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"the normalisation record of this model file is invalid: {exc}") from exc
        if len(norm.mean) != 3 or len(norm.std) != 3 or min(norm.std) <= 0:
            raise ModelFileError("the normalisation record needs 3 means and 3 positive stds.")
        return norm

    def apply(self, rgb01: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> normalised tensor (same dtype and device)."""
        mean = torch.tensor(self.mean, dtype=rgb01.dtype, device=rgb01.device)[:, None, None]
        std = torch.tensor(self.std, dtype=rgb01.dtype, device=rgb01.device)[:, None, None]
        return (rgb01 - mean) / std

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised [B, 3, H, W] -> [0, 1] (clipped), e.g. to show diffusion samples."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x * std + mean).clamp(0, 1)

    def apply_numpy(self, rgb01: np.ndarray) -> np.ndarray:
        """(H, W, 3) float in [0, 1] -> (3, H, W) float32, normalised."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return np.ascontiguousarray(((rgb01.astype(np.float32) - mean) / std).transpose(2, 0, 1))


DEFAULT_NORMALIZATION = Normalization()
