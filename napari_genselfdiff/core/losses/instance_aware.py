"""The loss of an instance-aware output (:mod:`..inference.outputs`): the class loss plus the cue's.

- ``contour``: the class loss (e.g. Dice + CE) over the three channels background / interior /
  contour, straight on the network output.
- ``distance``: the class loss on the class channels + ``regression_weight`` x the mean squared
  error of the sigmoid distance map (all counted pixels).
- ``hover``: the class loss + ``regression_weight`` x (MSE of the tanh maps over all counted pixels
  + the mean squared error of their Sobel gradients inside nuclei), HoVer-Net's L_a + L_b.

Pixels in ``ignore_mask`` (outside the corrected regions of a partial annotation) count nowhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Weight of the cue's regression term against the class loss (HoVer-Net weighs its two regression terms
#: 1 and 1 against CE + Dice); ``FinetuneConfig.cue_weight`` / ``--cue-weight``.
CUE_WEIGHT = 1.0

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0


def _sobel(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x-gradient of channel 0 and y-gradient of channel 1 of (B, 2, h, w) maps."""
    kx = _SOBEL.to(maps)[None, None]
    gx = F.conv2d(maps[:, 0:1], kx, padding=1)
    gy = F.conv2d(maps[:, 1:2], kx.transpose(-1, -2), padding=1)
    return gx, gy


class InstanceAwareLoss(nn.Module):
    """Class loss + the cue's regression loss for output kind ``kind``.

    Args:
        kind: ``contour``, ``distance`` or ``hover``.
        class_loss: the loss on class logits (called ``class_loss(logits, target, ignore)``).
        regression_weight: weight of the cue's term (default :data:`CUE_WEIGHT`).
    """

    def __init__(self, kind: str, class_loss: nn.Module, regression_weight: float = CUE_WEIGHT) -> None:
        super().__init__()
        if kind not in ("contour", "distance", "hover"):
            raise ValueError(f"no instance-aware loss for output kind {kind!r}.")
        self.kind = kind
        self.class_loss = class_loss
        self.regression_weight = float(regression_weight)

    def forward(self, raw: torch.Tensor, target: torch.Tensor, regression: torch.Tensor,
                ignore_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = raw.float()
        if self.kind == "contour":
            return self.class_loss(raw, target, ignore_mask)
        n_extra = regression.shape[1]
        logits, extra = raw[:, : raw.shape[1] - n_extra], raw[:, raw.shape[1] - n_extra :]
        total, parts = self.class_loss(logits, target, ignore_mask)
        valid = torch.ones_like(target, dtype=torch.float32) if ignore_mask is None else (~ignore_mask).float()
        count = valid.sum().clamp_min(1.0)
        pred = torch.sigmoid(extra) if self.kind == "distance" else torch.tanh(extra)
        mse = (((pred - regression) ** 2).mean(1) * valid).sum() / count
        reg = mse
        if self.kind == "hover":
            inside = valid * (target > 0).float()
            px, py = _sobel(pred)
            tx, ty = _sobel(regression)
            msge = ((((px - tx) ** 2 + (py - ty) ** 2)[:, 0] * inside).sum() / inside.sum().clamp_min(1.0))
            reg = mse + msge
            parts = {**parts, "msge": msge.detach()}
        total = total + self.regression_weight * reg
        return total, {**parts, "mse": mse.detach()}

    def to_config(self) -> dict[str, Any]:
        inner = self.class_loss.to_config() if hasattr(self.class_loss, "to_config") else {}
        return {"name": f"{inner.get('name', 'classes')}+{self.kind}", "class_loss": inner,
                "regression_weight": self.regression_weight}
