"""Tile layout and blending weights for seamless tiled inference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TilePlan:
    """Tile origins along each axis for an image padded to at least one tile.

    Attributes:
        tile_h, tile_w: tile size (multiples of the network's downsampling factor).
        ys, xs: tile origins; the last tile ends exactly at the (padded) image edge.
        padded_h, padded_w: image size after padding (>= the image, >= one tile).
        overlap: the overlap requested (tiles overlap by at least this much).
    """

    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    padded_h: int
    padded_w: int
    overlap: int

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def overhead(self) -> float:
        """Pixels computed / image pixels (1.0 = no tiling waste)."""
        return self.count * self.tile_h * self.tile_w / float(self.padded_h * self.padded_w)


def _axis(length: int, max_tile: int, overlap: int, multiple: int) -> tuple[int, tuple[int, ...], int]:
    def up(v: int) -> int:
        return int(math.ceil(v / multiple) * multiple)

    padded = max(up(length), multiple)
    if padded <= max_tile:
        return padded, (0,), padded
    n = int(math.ceil((padded - overlap) / (max_tile - overlap)))
    # Spread the overlap evenly: the smallest tile that covers the axis with n tiles.
    tile = min(up(int(math.ceil((padded + (n - 1) * overlap) / n))), max_tile)
    last = padded - tile
    origins = sorted({int(round(i * last / (n - 1))) for i in range(n)})
    return tile, tuple(origins), padded


def plan_tiles(height: int, width: int, *, max_tile: int, overlap: int, multiple: int) -> TilePlan:
    """Choose as few tiles as possible of side <= ``max_tile`` overlapping by >= ``overlap``.

    Tiles shrink to cover the image evenly (a 1000-pixel side with max_tile 1024 is one 1000-pixel
    tile, not a 1024 tile with 24 wasted pixels; with max_tile 512 it is three 368-pixel tiles, not
    three 512 tiles).
    """
    if max_tile % multiple or max_tile <= 0:
        raise ValueError(f"tile size {max_tile} must be a positive multiple of {multiple}.")
    if not 0 <= overlap < max_tile // 2:
        raise ValueError(f"overlap {overlap} must be >= 0 and less than half the tile ({max_tile}).")
    th, ys, ph = _axis(height, max_tile, overlap, multiple)
    tw, xs, pw = _axis(width, max_tile, overlap, multiple)
    return TilePlan(th, tw, ys, xs, ph, pw, overlap)


@dataclass(frozen=True)
class ColumnStrip:
    """A run of consecutive tile columns processed together, and the image columns it finalises.

    Attributes:
        first, last: tile-column indices (inclusive) into ``TilePlan.xs``.
        x0, x1: padded-image columns the strip's tiles cover (its blending band's extent).
        keep0, keep1: padded-image columns [keep0, keep1) whose labels this strip writes: exactly the
            columns that no tile outside the strip touches, so the blended result equals the
            whole-width one.
    """

    first: int
    last: int
    x0: int
    x1: int
    keep0: int
    keep1: int


def column_strips(plan: TilePlan, max_width: int | None) -> list[ColumnStrip]:
    """Split the tile columns into strips whose blending band is at most ``max_width`` pixels wide.

    Neighbouring strips share one tile column (computed twice), which makes the strips' results
    identical to one whole-width pass; the cost is about 1/(tile columns per strip - 1) more tiles.
    One strip when the image is narrow enough, ``max_width`` is None, or the tiles overlap too much
    for an exact split (an overlap above the tile step).
    """
    xs, tw, n = plan.xs, plan.tile_w, len(plan.xs)
    whole = [ColumnStrip(0, n - 1, 0, plan.padded_w, 0, plan.padded_w)]
    if max_width is None or plan.padded_w <= max_width or n < 3:
        return whole
    if any(xs[i - 1] + tw > xs[i + 1] for i in range(1, n - 1)):
        return whole
    step = max(1, xs[1] - xs[0])
    per = max(3, (max_width - tw) // step + 1)  # tile columns per strip (>= 3 so each strip advances)
    strips, first = [], 0
    while True:
        last = min(first + per - 1, n - 1)
        keep0 = 0 if first == 0 else xs[first + 1]
        keep1 = plan.padded_w if last == n - 1 else xs[last + 1]
        strips.append(ColumnStrip(first, last, xs[first], xs[last] + tw, keep0, keep1))
        if last == n - 1:
            return strips
        first = last


def blend_window(tile_h: int, tile_w: int, ramp: int) -> np.ndarray:
    """(tile_h, tile_w) float32 weights: 1 in the centre, a raised-cosine ramp of ``ramp`` pixels at edges.

    Weights never reach 0 (the outermost pixel keeps a small weight) so that image borders, which only
    one tile covers, stay defined.
    """

    def ramp1d(n: int) -> np.ndarray:
        w = np.ones(n, np.float32)
        r = min(ramp, n // 2)
        if r > 0:
            edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r, dtype=np.float32) + 1) / (r + 1))
            w[:r], w[n - r:] = edge, edge[::-1]
        return w

    return np.outer(ramp1d(tile_h), ramp1d(tile_w))
