"""The paper's structural-similarity (SS) loss (sec. III-C.1, eq. 9-10).

Per sample ``n`` and class ``c``, the ground-truth map ``y_nc`` (one-hot) and the predicted map
``yhat_nc`` (softmax) are each standardised over the pixels; ``e_nc`` is the per-pixel absolute
difference of the standardised maps, ``f_nc`` keeps the "hard" pixels with
``e_nc > beta * e_max``, and the loss averages ``CE * f * e`` over the ``M = sum f`` hard pixels.

Choices the paper leaves open, and what this implementation does:

* **Cross-entropy.** ``CE_nc = -y_nc log yhat_nc`` per pixel and class, from ``log_softmax`` of
  the logits (never ``log`` of a softmax, so a saturated prediction gives a finite value). The
  paper's text says CE "adds weighting to those pixels", i.e. it is per pixel. (The reference
  code multiplies by the scalar batch-mean CE instead, which turns the loss into
  ``mean CE x mean hard-pixel error``.)
* **Gradient through e.** Eq. 9 is a plain product with no stop-gradient, and the paper calls the
  loss "the weighted absolute error ... with the weights being the CE loss": ``e`` is the error
  being minimised, so by default gradient flows through BOTH ``e`` and ``CE`` (as in the reference
  code). ``detach_error=True`` gives the alternative reading of Zhao et al. (2019), where ``e`` is
  only a per-pixel weight on the cross-entropy. ``e_max`` and ``f`` are always detached: they only
  select pixels (``f`` is an indicator and has no gradient anyway).
* **e_max.** The paper defines it as "the maximum value of e_nc": by default one maximum over the
  whole batch (``emax="global"``). The reference code takes one maximum per (n, c) map
  (``emax="per_map"``).
* **Standard deviation.** Population std (divide by the pixel count), computed over the pixels
  that are not ignored; the reference code uses Bessel's correction, a factor
  ``sqrt(P / (P - 1))`` that is negligible for 256 x 256 patches. A constant map has
  ``sigma = 0``; ``C1`` keeps the division finite, and the variance is floored at 1e-12 before the
  square root so that its gradient stays finite (the floor changes sigma by at most 1e-6).
* **Empty cases.** With no hard pixel (``M = 0``: a perfect prediction, or every pixel ignored) the
  loss is 0, still connected to the logits so that ``backward()`` works (all-zero gradients).
* **Ignored pixels** (``ignore_mask`` True) are left out of the means and stds, of ``e_max``, of
  ``f`` and of ``M``; their targets may hold any value (e.g. 255 for "unannotated").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import MaskInputError

#: Values for the ``emax`` argument.
EMAX_SCOPES: tuple[str, ...] = ("global", "per_map")

# Floor for variances before sqrt: keeps d(sqrt)/d(var) finite for constant maps.
_VAR_FLOOR = 1e-12


def prepare_segmentation_inputs(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate loss inputs and bring them to a common form.

    Args:
        logits: Raw scores, shape (B, C, H, W) with C >= 2, any float dtype.
        target: Class indices, integer tensor (B, H, W), values in ``[0, C)`` where not ignored.
        ignore_mask: Optional bool tensor (B, H, W), True at pixels to skip.

    Returns:
        ``(logits32, target, valid)``: the logits in float32; the targets as int64 with ignored
        pixels set to class 0 (so one-hot encoding is defined; they are masked out later); and
        the float32 mask (B, H, W) of pixels that count (1) or not (0).

    Raises:
        ValueError: If the logits are not 4-D floating point with at least two classes.
        MaskInputError: If the targets or the mask do not fit the logits.
    """
    if logits.ndim != 4 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a float tensor (B, C, H, W), got {tuple(logits.shape)} {logits.dtype}")
    batch, num_classes, height, width = logits.shape
    if num_classes < 2:
        raise ValueError("logits need at least 2 classes (use two channels for a binary task)")
    if target.shape != (batch, height, width):
        raise MaskInputError(
            f"target must have shape {(batch, height, width)} to fit the logits, got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise MaskInputError(f"target must hold integer class indices, got dtype {target.dtype}")
    target = target.to(logits.device)
    if ignore_mask is None:
        valid_bool = torch.ones_like(target, dtype=torch.bool)
    else:
        if ignore_mask.shape != target.shape or ignore_mask.dtype != torch.bool:
            raise MaskInputError(
                f"ignore_mask must be a bool tensor of shape {tuple(target.shape)}, "
                f"got {tuple(ignore_mask.shape)} {ignore_mask.dtype}"
            )
        valid_bool = ~ignore_mask.to(logits.device)
    target = target.long().masked_fill(~valid_bool, 0)
    # Checked explicitly: an out-of-range class on a GPU is an unrecoverable device-side assert.
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise MaskInputError(
            f"target classes must lie in [0, {num_classes - 1}] (mark unannotated pixels in "
            f"ignore_mask), got values in [{int(target.min())}, {int(target.max())}]"
        )
    return logits.float(), target, valid_bool.float()


def _masked_mean_std(
    z: torch.Tensor, valid: torch.Tensor, count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of each (n, c) map of ``z`` (B, C, H, W) over valid pixels.

    ``valid`` is (B, 1, H, W) in {0, 1}; ``count`` (B, 1, 1, 1) >= 1. Returns two (B, C, 1, 1).
    """
    mean = (z * valid).sum(dim=(2, 3), keepdim=True) / count
    var = ((z - mean).pow(2) * valid).sum(dim=(2, 3), keepdim=True) / count
    return mean, var.clamp_min(_VAR_FLOOR).sqrt()


def structural_similarity_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_mask: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    c1: float = 0.01,
    emax: str = "global",
    detach_error: bool = False,
) -> torch.Tensor:
    """Structural-similarity loss L_SS (eq. 9-10); see the module docstring for the choices made.

    Args:
        logits: Raw scores (B, C, H, W); computed in float32 whatever their dtype.
        target: Class indices (B, H, W), integer, in ``[0, C)`` where not ignored.
        ignore_mask: Optional bool (B, H, W), True at pixels to skip (e.g. unannotated).
        beta: Hard-pixel threshold factor in ``f = 1[e > beta * e_max]``, in [0, 1]. By default,
            0.1 (paper).
        c1: Stability constant C1. By default, 0.01 (paper).
        emax: ``"global"`` (one e_max for the batch, the paper's wording; default) or
            ``"per_map"`` (one per sample and class, as the reference code).
        detach_error: Treat ``e`` as a constant weight on the cross-entropy. By default, False:
            gradient flows through ``e`` as in eq. 9.

    Returns:
        Scalar float32 loss, ``sum(CE * f * e) / M`` with ``M = sum f`` (0 when ``M = 0``).

    Raises:
        ValueError: For bad logits or settings. MaskInputError: for targets/mask that do not fit.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
    if not c1 > 0:
        raise ValueError(f"c1 must be > 0, got {c1!r}")
    if emax not in EMAX_SCOPES:
        raise ValueError(f"emax must be one of {', '.join(EMAX_SCOPES)}, got {emax!r}")
    logits32, target, valid = prepare_segmentation_inputs(logits, target, ignore_mask)
    num_classes = logits32.shape[1]
    # Under bf16/fp16 autocast keep every op here in float32: std and log-probs need the range.
    with torch.autocast(device_type=logits32.device.type, enabled=False):
        log_prob = F.log_softmax(logits32, dim=1)
        # exp(log_softmax) is the softmax; taking it from log_prob keeps yhat and CE consistent.
        prob = log_prob.exp()
        onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(torch.float32)
        valid4 = valid.unsqueeze(1)  # (B, 1, H, W)
        count = valid4.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)

        mu_y, sigma_y = _masked_mean_std(onehot, valid4, count)
        mu_p, sigma_p = _masked_mean_std(prob, valid4, count)
        error = (
            (onehot - mu_y + c1) / (sigma_y + c1) - (prob - mu_p + c1) / (sigma_p + c1)
        ).abs() * valid4  # (B, C, H, W); 0 at ignored pixels, so they never count as hard

        error_const = error.detach()
        if emax == "global":
            e_max = error_const.amax()
        else:
            e_max = error_const.amax(dim=(2, 3), keepdim=True)
        hard = (error_const > beta * e_max).to(torch.float32) * valid4  # f_nc
        num_hard = hard.sum()  # M

        cross_entropy = -(onehot * log_prob)  # per pixel and class; 0 where y = 0
        weight = error_const if detach_error else error
        # With M = 0 the numerator is an exact 0 that still depends on the logits, so clamping M
        # at 1 returns 0 with a valid (all-zero) gradient instead of 0/0.
        return (cross_entropy * hard * weight).sum() / num_hard.clamp_min(1.0)
