"""Where the tissue is on a slide: a low-resolution mask (Otsu on saturation) so glass is skipped.

Glass is bright and grey (saturation near 0); H&E-stained tissue is pink and purple (saturation about
0.15-0.6). The mask is computed on a low-resolution picture of the slide (longest side about
``max_side`` pixels, 1024 by default: 10 um per mask pixel for a 40x slide of 40000 pixels), read from
the coarsest pyramid level that is fine enough and averaged down block by block, so nothing
slide-sized is read or held:

1. saturation S = (max - min) / max of each RGB pixel (HSV);
2. Otsu's threshold on S, kept within [``min_threshold``, ``max_threshold``] (a blank slide has no
   tissue to separate, and a slide that is all tissue must not be split in two);
3. very dark pixels (V < 0.08: scanner padding, pen, dust) are not tissue;
4. holes filled, specks smaller than ``min_area_um2`` removed, and the mask grown by ``margin_um`` so
   that tiles on the tissue border are segmented too.

``TissueMask.any_in(y0, y1, x0, x1)`` then says, in level-0 pixels, whether a window touches tissue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


@dataclass
class TissueMask:
    """A boolean tissue mask over the whole slide at low resolution.

    Attributes:
        mask: (h, w) bool, True = tissue.
        downsample: level-0 pixels per mask pixel (along both axes; the mask covers the slide).
        threshold: the saturation threshold used.
        slide_shape: (height, width) of level 0.
        notes: remarks (threshold clamped, ...).
    """

    mask: np.ndarray
    downsample: float
    threshold: float
    slide_shape: tuple[int, int]
    notes: list[str] = field(default_factory=list)
    _integral: np.ndarray | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        """Share of the slide covered by the (grown) mask."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def _sum(self) -> np.ndarray:
        if self._integral is None:
            self._integral = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return self._integral

    def any_in(self, y0: float, y1: float, x0: float, x1: float) -> bool:
        """Whether the level-0 window [y0, y1) x [x0, x1) touches tissue (O(1), via an integral image)."""
        h, w = self.mask.shape
        d = self.downsample
        r0, r1 = int(np.clip(np.floor(y0 / d), 0, h)), int(np.clip(np.ceil(y1 / d), 0, h))
        c0, c1 = int(np.clip(np.floor(x0 / d), 0, w)), int(np.clip(np.ceil(x1 / d), 0, w))
        if r1 <= r0 or c1 <= c0:
            return False
        s = self._sum()
        return bool(s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0] > 0)

    @classmethod
    def everywhere(cls, height: int, width: int) -> "TissueMask":
        """A mask saying 'tissue' everywhere (to segment glass too)."""
        return cls(np.ones((1, 1), bool), float(max(height, width)), 0.0, (height, width), ["tissue mask off"])


def saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, V) in [0, 1] of an (h, w, 3) RGB array of 0-255 values (float32)."""
    rgb = np.asarray(rgb, np.float32)
    hi = rgb.max(axis=-1)
    lo = rgb.min(axis=-1)
    s = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0).astype(np.float32)
    return s, hi / 255.0


def low_resolution(slide, max_side: int = 2048, band: int = 2048) -> tuple[np.ndarray, float]:
    """An (h, w, 3) float32 picture of the slide with the longest side about ``max_side``.

    Reads the coarsest level at least that fine, in bands of ``band`` rows, averaging blocks of
    ``k x k`` pixels (k chosen so the result fits), so memory stays at one band.

    Returns:
        (picture, downsample): the picture and level-0 pixels per picture pixel.
    """
    target = max(slide.height, slide.width) / max_side
    level = slide.best_level(max(target, 1.0))
    lv = slide.levels[level]
    k = max(1, int(np.ceil(max(lv.height, lv.width) / max_side)))
    array = slide.level_array(level)
    h, w = lv.height // k, lv.width // k
    if h == 0 or w == 0:
        k = 1
        h, w = lv.height, lv.width
    out = np.empty((h, w, 3), np.float32)
    rows = max(k, band // k * k)
    for r0 in range(0, h * k, rows):
        r1 = min(r0 + rows, h * k)
        block = np.asarray(array[r0:r1, : w * k, :3], np.float32)
        out[r0 // k : r1 // k] = block.reshape((r1 - r0) // k, k, w, k, 3).mean(axis=(1, 3))
    return out, float(lv.downsample * k)


def tissue_mask(
    slide,
    *,
    max_side: int = 1024,
    min_threshold: float = 0.05,
    max_threshold: float = 0.15,
    min_area_um2: float = 2000.0,
    margin_um: float = 20.0,
    mpp: float | None = None,
) -> TissueMask:
    """The tissue mask of a :class:`~.io.slide.Slide` (see the module docstring).

    Args:
        slide: an open slide (anything with ``height``, ``width``, ``levels``, ``best_level`` and
            ``level_array``).
        max_side: longest side of the mask in pixels.
        min_threshold, max_threshold: bounds of the saturation threshold.
        min_area_um2: tissue pieces smaller than this (square microns) are dropped.
        margin_um: the mask is grown by this many microns.
        mpp: level-0 microns per pixel; by default ``slide.mpp``, else 0.25 (a 40x scan) for the
            sizes above.
    """
    from skimage.filters import threshold_otsu

    picture, downsample = low_resolution(slide, max_side)
    s, v = saturation(picture)
    notes: list[str] = []
    try:
        otsu = float(threshold_otsu(s)) if np.ptp(s) > 0 else min_threshold
    except ValueError:
        otsu = min_threshold
    threshold = float(np.clip(otsu, min_threshold, max_threshold))
    if threshold != otsu:
        notes.append(f"Otsu threshold {otsu:.3f} clamped to {threshold:.3f}")
    mask = (s > threshold) & (v > 0.08)
    mpp0 = mpp or getattr(slide, "mpp", None) or 0.25
    um_per_px = mpp0 * downsample
    mask = ndimage.binary_fill_holes(mask)
    min_px = int(min_area_um2 / (um_per_px**2))
    if min_px > 1 and mask.any():
        labels, n = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())
        small = sizes < min_px
        small[0] = False
        mask[small[labels]] = False
    grow = int(np.ceil(margin_um / um_per_px))
    if grow > 0 and mask.any():
        # A square of side 2 * grow + 1, as two 1-D dilations (separable: O(grow) per pixel, not O(grow^2)).
        mask = ndimage.binary_dilation(mask, structure=np.ones((2 * grow + 1, 1), bool))
        mask = ndimage.binary_dilation(mask, structure=np.ones((1, 2 * grow + 1), bool))
    return TissueMask(mask, downsample, threshold, (slide.height, slide.width), notes)
