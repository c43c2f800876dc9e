"""Focal loss (sec. III-C.2, eq. 11; Lin et al. 2017) for multi-class segmentation.

``FL = -(1/N) sum_pixels sum_c alpha_c (1 - yhat_c)^gamma y_c log yhat_c``, where only the true
class contributes (y is one-hot). Normalisation: ``N`` is the number of counted PIXELS (batch x
H x W minus ignored pixels), i.e. the mean over pixels, as in the paper's reference code; the
paper's text calls ``N`` the batch size, which would only rescale the loss by H x W. With
per-class ``alpha`` the sum is still divided by the pixel count, not by the sum of the weights
(unlike ``F.cross_entropy(weight=...)``), so alpha changes the loss scale as it says.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .structural_similarity import prepare_segmentation_inputs

# Floor for (1 - p) before the power: for gamma < 1 the derivative of x**gamma is infinite at 0.
_TINY = torch.finfo(torch.float32).tiny


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_mask: torch.Tensor | None = None,
    *,
    gamma: float = 2.0,
    alpha: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """Focal loss L_FL (eq. 11), from logits via ``log_softmax``, mean over counted pixels.

    Args:
        logits: Raw scores (B, C, H, W); computed in float32 whatever their dtype.
        target: Class indices (B, H, W), integer, in ``[0, C)`` where not ignored.
        ignore_mask: Optional bool (B, H, W), True at pixels to skip.
        gamma: Focusing exponent, >= 0. By default, 2 (paper); 0 gives plain cross-entropy.
        alpha: Optional per-class weights, length C. By default, none (all 1).

    Returns:
        Scalar float32 loss; 0 (with a valid zero gradient) when every pixel is ignored.

    Raises:
        ValueError: For bad logits, gamma or alpha. MaskInputError: for targets/mask that do not fit.
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    logits32, target, valid = prepare_segmentation_inputs(logits, target, ignore_mask)
    num_classes = logits32.shape[1]
    with torch.autocast(device_type=logits32.device.type, enabled=False):
        log_prob = F.log_softmax(logits32, dim=1)
        log_pt = log_prob.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, H, W), log p of true class
        if gamma == 0:
            # Skip the power: d(x**0)/dx = 0 * x**-1 is NaN at x = 0 in autograd.
            per_pixel = -log_pt
        else:
            # 1 - p via expm1 stays accurate when p is close to 1.
            one_minus_pt = (-torch.expm1(log_pt)).clamp_min(_TINY)
            per_pixel = -one_minus_pt.pow(gamma) * log_pt
        if alpha is not None:
            alpha_t = torch.as_tensor(alpha, dtype=torch.float32, device=logits32.device)
            if alpha_t.shape != (num_classes,):
                raise ValueError(f"alpha must have one weight per class ({num_classes}), got {tuple(alpha_t.shape)}")
            per_pixel = per_pixel * alpha_t[target]
        return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)
