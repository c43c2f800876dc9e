"""Cross-entropy plus soft Dice on segmentation logits: the common nucleus-segmentation objective.

``L = CE + dice_weight * (1 - mean_c Dice_c)`` where Dice_c is the soft Dice of class c's softmax
probability against its one-hot target, over the whole batch (one sum over all counted pixels, so a
patch without nuclei does not produce a 0/0), for every class except the background. Measured against
the paper's SS + focal loss in docs/results.md (the ablation table).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .structural_similarity import prepare_segmentation_inputs


class DiceCELoss(nn.Module):
    """Cross-entropy + soft Dice (foreground classes) on logits.

    Args:
        dice_weight: weight of the Dice term. By default, 1.0.
        smooth: added to the Dice numerator and denominator. By default, 1.0 pixel.

    Call ``loss_fn(logits, target, ignore_mask=None)`` like :class:`.combined.SSFocalLoss`; it returns
    ``(total, {"ce": ..., "dice": ...})``.
    """

    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        if not dice_weight >= 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight!r}")
        if not smooth > 0:
            raise ValueError(f"smooth must be > 0, got {smooth!r}")
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, ignore_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits32, target, valid = prepare_segmentation_inputs(logits, target, ignore_mask)
        with torch.autocast(device_type=logits32.device.type, enabled=False):
            log_prob = F.log_softmax(logits32, dim=1)
            count = valid.sum().clamp_min(1.0)
            ce = -(log_prob.gather(1, target.unsqueeze(1)).squeeze(1) * valid).sum() / count
            prob = log_prob.exp()[:, 1:]                                   # (B, C-1, H, W)
            onehot = F.one_hot(target, logits32.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
            weight = valid.unsqueeze(1)
            inter = (prob * onehot * weight).sum(dim=(0, 2, 3))
            total = ((prob + onehot) * weight).sum(dim=(0, 2, 3))
            dice = 1.0 - ((2 * inter + self.smooth) / (total + self.smooth)).mean()
            loss = ce + self.dice_weight * dice
        return loss, {"ce": ce.detach(), "dice": dice.detach()}

    def to_config(self) -> dict[str, Any]:
        return {"name": "dice_ce", "dice_weight": self.dice_weight, "smooth": self.smooth}
