"""Where to correct next: a per-pixel uncertainty map and fields ranked by it (no Qt, no napari).

- :func:`entropy_map`: the entropy of the softmax class probabilities at each pixel, divided by
  ``log K`` so that it lies in [0, 1] for any number of classes K (0: the model is certain; 1: every
  class equally likely). Computed band by band, so a large image never holds a float64 copy.
- :func:`rank_fields`: the image cut into fields (by default 256x256, the last row/column smaller)
  ranked by their mean uncertainty, highest first; fields already corrected (a ``known`` mask) can
  be left out.
- :func:`segment_with_uncertainty`: a generator over :func:`.predict.segment_progressive` that also
  returns the uncertainty map (the blended logits go to a float32 array, then to the entropy).

The napari widget shows the map as an image layer and the ranking as a list; the active-learning
experiment (``src_train/experiments/active_learning.py``) picks fields from the same ranking.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

#: default field side in pixels
FIELD_SIZE = 256


@dataclass(frozen=True)
class Field:
    """One field of the ranking: rows ``y:y+h``, columns ``x:x+w``, and its mean uncertainty."""

    y: int
    x: int
    h: int
    w: int
    score: float

    @property
    def center(self) -> tuple[float, float]:
        return self.y + self.h / 2.0, self.x + self.w / 2.0

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)

    def label(self) -> str:
        return f"rows {self.y}-{self.y + self.h}, cols {self.x}-{self.x + self.w}: {self.score:.3f}"


def entropy_map(logits: np.ndarray, *, rows: int = 256) -> np.ndarray:
    """Normalised entropy (H, W) float32 in [0, 1] of (K, H, W) logits (K >= 2)."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[0] < 2:
        raise ValueError(f"logits must be (classes >= 2, H, W); got shape {logits.shape}.")
    k, h, w = logits.shape
    out = np.empty((h, w), np.float32)
    scale = np.float32(1.0 / np.log(k))
    for y in range(0, h, rows):
        z = logits[:, y : y + rows].astype(np.float32)
        z = z - z.max(axis=0, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=0, keepdims=True)
        ent = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=0)
        out[y : y + rows] = np.clip(ent * scale, 0.0, 1.0)
    return out


def rank_fields(uncertainty: np.ndarray, size: int = FIELD_SIZE, *, known: np.ndarray | None = None,
                skip_known: float = 0.5) -> list[Field]:
    """Fields of ``size`` x ``size`` pixels (the last row/column smaller) by mean uncertainty, highest first.

    Args:
        uncertainty: (H, W) map (e.g. :func:`entropy_map`).
        size: field side. By default, 256.
        known: optional (H, W) bool mask of pixels already corrected; a field with more than
            ``skip_known`` of its pixels corrected is left out.
        skip_known: see ``known``. By default, 0.5.

    Returns:
        The fields; ties keep reading order (top-left first).
    """
    u = np.asarray(uncertainty, dtype=np.float32)
    if u.ndim != 2:
        raise ValueError(f"the uncertainty map must be 2-D; got shape {u.shape}.")
    if size <= 0:
        raise ValueError(f"field size must be > 0, got {size}.")
    h, w = u.shape
    fields = []
    for y in range(0, h, size):
        for x in range(0, w, size):
            sl = (slice(y, min(y + size, h)), slice(x, min(x + size, w)))
            if known is not None and float(np.asarray(known[sl], bool).mean()) > skip_known:
                continue
            fields.append(Field(y, x, sl[0].stop - y, sl[1].stop - x, float(u[sl].mean())))
    order = sorted(range(len(fields)), key=lambda i: (-fields[i].score, i))
    return [fields[i] for i in order]


def segment_with_uncertainty(model, info, image, settings=None, *, name: str = "image"
                             ) -> Generator[dict, None, tuple[object, np.ndarray]]:
    """:func:`.predict.segment_progressive` that also returns the uncertainty map.

    Yields its progress events; returns ``(SegmentationResult, (H, W) float32 uncertainty)``.
    """
    from ..image_input import inspect_image
    from .predict import segment_progressive

    spec = inspect_image(image, allow_gray=True if settings is None else settings.allow_gray, name=name)
    logits = np.zeros((model.config.out_channels, spec.height, spec.width), np.float32)
    result = yield from segment_progressive(model, info, image, settings, logits_out=logits, name=name)
    return result, entropy_map(logits)
