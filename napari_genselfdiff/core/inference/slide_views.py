"""Lazy views of a slide run: a checked region of the slide, where the model's pixels lie on it
(:class:`SlideGeometry`: the pyramid level read, resampled or not, and the window at model resolution),
and :class:`WindowView`, a window of a lazy array read and written in place (tiles in, labels out)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.slide import Slide, SlideError
from .resolution import RESAMPLE_TOLERANCE, ResampledView, _span


class WindowView:
    """A rectangular window [y0, y0 + h) x [x0, x0 + w) of a 2-D or 3-D array, read and written lazily."""

    def __init__(self, base, y0: int, x0: int, height: int, width: int):
        self.base, self.y0, self.x0 = base, int(y0), int(x0)
        self.shape = (int(height), int(width)) + tuple(base.shape[2:])
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def _key(self, key):
        key = key if isinstance(key, tuple) else (key,)
        y0, y1 = _span(key[0], self.shape[0])
        x0, x1 = _span(key[1] if len(key) > 1 else slice(None), self.shape[1])
        return (slice(self.y0 + y0, self.y0 + y1), slice(self.x0 + x0, self.x0 + x1)) + tuple(key[2:])

    def __getitem__(self, key):
        return self.base[self._key(key)]

    def __setitem__(self, key, value):
        self.base[self._key(key)] = value


@dataclass
class SlideGeometry:
    """Where model pixels lie on the slide: model pixel (ym, xm) of the window is level-0
    ((ym + oy) / f, (xm + ox) / f); ``source`` is the lazy image at model resolution."""

    level: int
    f: float
    source: Any
    oy: int
    ox: int
    height: int
    width: int

    @property
    def resampled(self) -> bool:
        """Whether model pixels differ from level-0 pixels (labels are then mapped back to level 0)."""
        return abs(self.f - 1) > 1e-9

    def image(self) -> WindowView:
        """The region's image at model resolution, read lazily."""
        return WindowView(self.source, self.oy, self.ox, self.height, self.width)


def slide_geometry(slide: Slide, slide_mpp: float, net_mpp: float, region) -> SlideGeometry:
    """The geometry of ``region`` (level-0 x, y, w, h) at the model's resolution: the pyramid level nearest
    above it, read as it is when within ``RESAMPLE_TOLERANCE``, else through a :class:`ResampledView`."""
    f = slide_mpp / net_mpp  # model pixels per level-0 pixel
    if abs(f - 1) <= RESAMPLE_TOLERANCE:
        level, f_eff, source = 0, 1.0, slide.level_array(0)
    else:
        level = slide.best_level(1.0 / f) if f < 1 else 0
        ds = slide.levels[level].downsample
        g = f * ds  # model pixels per level pixel
        if abs(g - 1) <= RESAMPLE_TOLERANCE:
            source, f_eff = slide.level_array(level), 1.0 / ds
        else:
            source = ResampledView(slide.level_array(level), g)
            f_eff = g / ds
    x, y, w, h = region
    oy, ox = int(math.floor(y * f_eff)), int(math.floor(x * f_eff))
    y1 = min(int(math.ceil((y + h) * f_eff)), int(source.shape[0]))
    x1 = min(int(math.ceil((x + w) * f_eff)), int(source.shape[1]))
    return SlideGeometry(level, f_eff, source, oy, ox, max(1, y1 - oy), max(1, x1 - ox))


def check_region(slide: Slide, region) -> tuple[int, int, int, int]:
    """``region`` (x, y, width, height in level-0 pixels; None: the whole slide) as four ints inside the slide.

    Raises:
        SlideError: not four numbers, empty, or outside the slide.
    """
    if region is None:
        return (0, 0, slide.width, slide.height)
    try:
        x, y, w, h = (int(v) for v in region)
    except (TypeError, ValueError) as exc:
        raise SlideError(f"{slide.path}: a region is x, y, width, height in level-0 pixels, not {region!r}.") from exc
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > slide.width or y + h > slide.height:
        raise SlideError(
            f"{slide.path}: region x {x}..{x + w}, y {y}..{y + h} is empty or lies outside the slide "
            f"(width {slide.width}, height {slide.height} pixels at level 0)."
        )
    return x, y, w, h
