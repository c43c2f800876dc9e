"""Held-out validation during fine-tuning: WHOLE images, segmented exactly as the user will segment them.

Each held-out image goes through :func:`..inference.segment` (tiled, one forward pass per tile at
t = 0, blended logits), and the label map is scored against the whole mask, never per patch (the
paper's code averaged over 256-pixel patches). Scores are per class and then averaged over images:

- ``iou_<class>``, ``f1_<class>`` for every class (background included), from
  :func:`..metrics.per_class_scores` (a class absent from both maps of an image scores 1.0 there);
- ``mean_iou``, ``mean_f1``: the means over the foreground classes (1..K-1). ``mean_iou`` selects
  the best model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from ..annotations.regions import UNKNOWN_LABEL
from ..inference.predict import InferenceSettings, run_generator, segment_progressive
from ..metrics.pixel import per_class_scores
from ..model_files.schema import ModelInfo

SELECTION_METRIC = "mean_iou"


def metric_name(class_name: str) -> str:
    """A class name as a metric key suffix ("Tumour cell" -> "tumour_cell")."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", class_name).strip("_").lower() or "class"


def validate_images(
    model: torch.nn.Module,
    info: ModelInfo,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    device: str = "auto",
    precision: str = "auto",
    tile: int = 1024,
    channels_last: bool = False,
) -> dict[str, float]:
    """Segment whole held-out images and score them per class.

    Args:
        model: a class-head network (left in eval mode; the caller restores train mode).
        info: its metadata (classes, normalisation).
        images: (H, W, 3) uint8 images.
        masks: (H, W) class maps of the same sizes; in uint8 masks, ``UNKNOWN_LABEL`` (255) marks pixels
            outside the corrected regions of a partial annotation, which are not scored.
        device: where to run. By default, "auto".
        precision: "auto", "fp32", "bf16", "fp16". By default, "auto".
        tile: largest inference tile side. By default, 1024.
        channels_last: the memory format training uses (inference converts the model to it, so it
            must match, or the optimizer's tensors and the weights would end up in different formats).

    Returns:
        ``{"iou_<class>", "f1_<class>" for each class, "mean_iou", "mean_f1"}``, means over images.
    """
    k = len(info.classes)
    names = [metric_name(c.name) for c in info.classes]
    settings = InferenceSettings(tile=tile, overlap=32, device=device, precision=precision, channels_last=channels_last)
    sums = {f"{m}_{n}": 0.0 for n in names for m in ("iou", "f1")}
    for image, mask in zip(images, masks):
        result = run_generator(segment_progressive(model, info, image, settings, name="validation image"))
        pred, mask = np.asarray(result.labels), np.asarray(mask)
        if k < UNKNOWN_LABEL and mask.dtype == np.uint8 and (mask == UNKNOWN_LABEL).any():
            known = mask != UNKNOWN_LABEL  # a partial annotation: scored on its corrected pixels only
            pred, mask = pred[known], mask[known]
        scores = per_class_scores(pred, mask, k)
        for c, n in enumerate(names):
            sums[f"iou_{n}"] += scores[c]["iou"]
            sums[f"f1_{n}"] += scores[c]["f1"]
    count = max(1, len(images))
    metrics = {key: value / count for key, value in sums.items()}
    metrics["mean_iou"] = float(np.mean([metrics[f"iou_{n}"] for n in names[1:]]))
    metrics["mean_f1"] = float(np.mean([metrics[f"f1_{n}"] for n in names[1:]]))
    return metrics
