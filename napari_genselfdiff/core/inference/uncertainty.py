"""Where to correct next: a per-pixel uncertainty map and fields ranked by it (no Qt, no napari).

- :func:`entropy_map`: the entropy of the softmax class probabilities at each pixel, divided by
  ``log K`` so that it lies in [0, 1] for any number of classes K (0: the model is certain; 1: every
  class equally likely). Computed band by band, so a large image never holds a float64 copy.
- :func:`rank_fields`: the image cut into fields (by default 256x256, the last row/column smaller)
  ranked by their mean uncertainty, highest first; fields already corrected (a ``known`` mask) can
  be left out.
- :func:`flip_uncertainty`: from the class probabilities of several passes over flipped copies of the
  image (flipped back), either their **disagreement** (``"flip_disagreement"``: the mutual information
  between the prediction and the flip, ``H(mean p) - mean H(p)``) or the entropy of their mean
  (``"flip_entropy"``: one pass's entropy and the disagreement together), both divided by ``log K``.
- :func:`segment_with_uncertainty`: a generator over :func:`.predict.segment_progressive` that also
  returns the uncertainty map of the chosen ``method`` (:data:`METHODS`; the blended logits of each
  pass go to a float32 array, then into the map). The labels are always those of the unflipped pass.

The napari widget shows the map as an image layer and the ranking as a list; the active-learning
experiment (``src_train/experiments/active_learning.py``) picks fields from the same ranking.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

#: default field side in pixels
FIELD_SIZE = 256

#: the uncertainty measures :func:`segment_with_uncertainty` can return: the normalised entropy of one
#: pass, the disagreement between flipped passes, the entropy of the flipped passes' mean probabilities
METHODS = ("entropy", "flip_disagreement", "flip_entropy")

#: the measure the widget's Correct-next ranking uses
DEFAULT_METHOD = "entropy"

#: the passes of the flip methods as (flip rows, flip columns); the first is the image as it is
FLIPS = ((False, False), (False, True), (True, False), (True, True))


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


def _entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (natural log) over axis 0 of class probabilities."""
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32)
    z = z - z.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    return p


class _FlipAccumulator:
    """Running sums over passes of the class probabilities and of each pass's entropy (band by band)."""

    def __init__(self, k: int, h: int, w: int, rows: int = 256) -> None:
        self.k, self.rows, self.passes = k, rows, 0
        self.sum_p = np.zeros((k, h, w), np.float32)
        self.sum_h = np.zeros((h, w), np.float32)

    def add(self, logits: np.ndarray) -> None:
        logits = np.asarray(logits)
        if logits.shape != self.sum_p.shape:
            raise ValueError(f"every pass must give logits of shape {self.sum_p.shape}; got {logits.shape}.")
        for y in range(0, logits.shape[1], self.rows):
            p = _softmax(logits[:, y : y + self.rows])
            self.sum_p[:, y : y + self.rows] += p
            self.sum_h[y : y + self.rows] += _entropy(p)
        self.passes += 1

    def result(self, method: str) -> np.ndarray:
        if self.passes < 1:
            raise ValueError("no pass was added.")
        scale = np.float32(1.0 / np.log(self.k))
        out = np.empty(self.sum_h.shape, np.float32)
        for y in range(0, out.shape[0], self.rows):
            total = _entropy(self.sum_p[:, y : y + self.rows] / np.float32(self.passes))
            if method == "flip_entropy":
                value = total
            else:  # mutual information: total minus the passes' mean entropy
                value = total - self.sum_h[y : y + self.rows] / np.float32(self.passes)
            out[y : y + self.rows] = np.clip(value * scale, 0.0, 1.0)
        return out


def flip_uncertainty(logits_passes, method: str = "flip_disagreement", *, rows: int = 256) -> np.ndarray:
    """Uncertainty (H, W) float32 in [0, 1] from the (K, H, W) logits of several passes (K >= 2).

    Each pass is the model's output for a flipped copy of the image, flipped back, so pixel (y, x) of
    every pass is the same image pixel.

    Args:
        logits_passes: a sequence of (K, H, W) logits, one per pass (at least one).
        method: ``"flip_disagreement"``: the mutual information between the passes' predictions,
            ``H(mean p) - mean H(p)`` (0 when every pass gives the same probabilities, whatever they are;
            1 when the passes are certain of different classes, equally often); ``"flip_entropy"``:
            ``H(mean p)``, the entropy of the mean probabilities (high when the passes agree on an
            uncertain pixel or disagree). Both divided by ``log K``.
        rows: band height (memory: a few (K, rows, W) float32 arrays besides the sums).
    """
    if method not in ("flip_disagreement", "flip_entropy"):
        raise ValueError(f"method must be 'flip_disagreement' or 'flip_entropy', got {method!r}.")
    passes = list(logits_passes)
    if not passes:
        raise ValueError("give the logits of at least one pass.")
    first = np.asarray(passes[0])
    if first.ndim != 3 or first.shape[0] < 2:
        raise ValueError(f"logits must be (classes >= 2, H, W); got shape {first.shape}.")
    acc = _FlipAccumulator(*first.shape, rows=rows)
    for logits in passes:
        acc.add(logits)
    return acc.result(method)


def _flipped(image, layout: str, flip_rows: bool, flip_cols: bool):
    """A view of ``image`` flipped along its rows and/or columns (numpy and dask stay views)."""
    if not (flip_rows or flip_cols):
        return image
    if not isinstance(image, np.ndarray) and not type(image).__module__.startswith("dask"):
        image = np.asarray(image)  # e.g. zarr: no negative steps
    row_axis = 1 if layout == "chw" else 0
    index = [slice(None)] * image.ndim
    if flip_rows:
        index[row_axis] = slice(None, None, -1)
    if flip_cols:
        index[row_axis + 1] = slice(None, None, -1)
    return image[tuple(index)]


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


def segment_with_uncertainty(model, info, image, settings=None, *, name: str = "image",
                             method: str | None = None, flips=FLIPS
                             ) -> Generator[dict, None, tuple[object, np.ndarray]]:
    """:func:`.predict.segment_progressive` that also returns the uncertainty map.

    Args:
        method: one of :data:`METHODS`; None: :data:`DEFAULT_METHOD`. ``"entropy"`` costs one pass;
            the flip methods one pass per entry of ``flips``.
        flips: the passes of the flip methods, as (flip rows, flip columns); the first should be
            ``(False, False)`` (the labels returned are always those of the unflipped image).

    Yields its progress events (for the flip methods ``done``/``total`` count the tiles of all passes);
    returns ``(SegmentationResult, (H, W) float32 uncertainty)``.
    """
    import dataclasses

    from ..image_input import inspect_image
    from ..progress import Returning
    from .predict import InferenceSettings, segment_progressive

    method = DEFAULT_METHOD if method is None else method
    if method not in METHODS:
        raise ValueError(f"uncertainty method must be one of {', '.join(METHODS)}; got {method!r}.")
    settings = settings or InferenceSettings()
    spec = inspect_image(image, allow_gray=settings.allow_gray, name=name)
    k = len(info.classes)
    logits = np.zeros((k, spec.height, spec.width), np.float32)
    if method == "entropy":
        result = yield from segment_progressive(model, info, image, settings, logits_out=logits, name=name)
        return result, entropy_map(logits)
    flips = [tuple(bool(v) for v in f) for f in flips]
    if not flips or flips[0] != (False, False):
        raise ValueError("the first flip pass must be the image as it is: (False, False).")
    acc = _FlipAccumulator(k, spec.height, spec.width)
    result = None
    for n, (flip_rows, flip_cols) in enumerate(flips):
        view = _flipped(image, spec.layout, flip_rows, flip_cols)
        target = logits[:, :: -1 if flip_rows else 1, :: -1 if flip_cols else 1]  # written back unflipped
        events = Returning(segment_progressive(
            model, info, view, settings if n == 0 else dataclasses.replace(settings, instances=False),
            logits_out=target, name=name))
        for event in events:
            if event.get("stage") == "tiles":
                event = {**event, "done": n * event["total"] + event["done"], "total": len(flips) * event["total"]}
            yield event
        if n == 0:
            result = events.value
        acc.add(logits)
    return result, acc.result(method)
