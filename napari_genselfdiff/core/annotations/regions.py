"""Corrected regions of a partial annotation: which pixels of a snapshot the user has checked.

A pathologist rarely corrects a whole image; they fix the places where the model is wrong and mark
those places as corrected. Pixels outside every marked region are *unknown*: fine-tuning leaves them
out of the loss, and the export sets them apart (:data:`UNKNOWN_LABEL` in the masks).

A region is a dict ``{"type": "rectangle" | "polygon", "points": [[y, x], ...]}`` in the image's
pixel coordinates (napari data coordinates: the centre of pixel ``(r, c)`` is at ``(r, c)``). A
rectangle's points are its corners (2 opposite or 4). Rasterising (:func:`regions_mask`): a pixel is
in a region when its centre is inside the polygon or on its outline, so a region smaller than a pixel
still marks the pixel it lies on. Regions are clipped to the image; one that misses the image
entirely is refused with a message.

A snapshot marked as a whole is one region covering the image (``regions`` None in the pair record,
which is also how sets written before regions existed load).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MaskInputError

#: the mask value of unknown (not corrected) pixels, in training masks and in exported masks.
UNKNOWN_LABEL = 255

REGION_TYPES = ("rectangle", "polygon")


def normalize_region(region: Any) -> dict[str, Any]:
    """A region as ``{"type", "points"}`` with float (y, x) points; accepts an (N, 2) array as a polygon.

    Raises:
        MaskInputError: not a region (too few points, other than 2 coordinates, not finite).
    """
    if isinstance(region, dict):
        kind = str(region.get("type", "polygon"))
        points = region.get("points")
    else:
        kind, points = "polygon", region
    if kind not in REGION_TYPES:
        raise MaskInputError(f"a corrected region must be a rectangle or a polygon, not {kind!r}.")
    try:
        pts = np.asarray(points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise MaskInputError(f"a corrected region's points are not numbers ({exc}).") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < (2 if kind == "rectangle" else 3):
        raise MaskInputError(
            f"a corrected {kind} needs (y, x) points ({'2 corners' if kind == 'rectangle' else 'at least 3'}); "
            f"got an array of shape {pts.shape}."
        )
    if not np.isfinite(pts).all():
        raise MaskInputError("a corrected region has points that are not finite numbers.")
    if kind == "rectangle":
        (y0, x0), (y1, x1) = pts.min(axis=0), pts.max(axis=0)
        pts = np.array([[y0, x0], [y1, x1]])
    return {"type": kind, "points": pts.round(3).tolist()}


def _polygon_points(region: dict[str, Any]) -> np.ndarray:
    pts = np.asarray(region["points"], dtype=float)
    if region["type"] == "rectangle":
        (y0, x0), (y1, x1) = pts.min(axis=0), pts.max(axis=0)
        return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    return pts


def region_mask(region: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool pixels of one region (clipped to the image; empty when it misses the image)."""
    from skimage.draw import line, polygon

    pts = _polygon_points(normalize_region(region))
    out = np.zeros(tuple(int(s) for s in shape), bool)
    # Pixel centres inside the polygon, plus those on its outline (a thin or tiny region still counts).
    rr, cc = polygon(pts[:, 0], pts[:, 1], out.shape)
    out[rr, cc] = True
    ring = np.round(np.concatenate([pts, pts[:1]])).astype(np.int64)
    for (r0, c0), (r1, c1) in zip(ring[:-1], ring[1:]):
        rr, cc = line(int(r0), int(c0), int(r1), int(c1))
        keep = (rr >= 0) & (rr < out.shape[0]) & (cc >= 0) & (cc < out.shape[1])
        out[rr[keep], cc[keep]] = True
    return out


def check_regions(regions: Sequence[Any], shape: tuple[int, int]) -> list[dict[str, Any]]:
    """Normalise regions and check that each one covers at least one pixel of the (H, W) image.

    Raises:
        MaskInputError: no region, a malformed region, or a region entirely outside the image
            (the message gives its extent and the image's size).
    """
    if not regions:
        raise MaskInputError("no corrected region given: draw a rectangle or polygon in a Shapes layer, "
                             "or mark the whole image.")
    out = []
    for k, region in enumerate(regions, start=1):
        region = normalize_region(region)
        if not region_mask(region, shape).any():
            pts = np.asarray(region["points"])
            (y0, x0), (y1, x1) = pts.min(axis=0), pts.max(axis=0)
            raise MaskInputError(
                f"corrected region {k} (rows {y0:.0f}..{y1:.0f}, columns {x0:.0f}..{x1:.0f}) lies outside the "
                f"image ({shape[0]}x{shape[1]} pixels); draw it over the image."
            )
        out.append(region)
    return out


def regions_mask(regions: Sequence[Any] | None, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of corrected pixels: the union of the regions; all True for None (whole image)."""
    shape = (int(shape[0]), int(shape[1]))
    if regions is None:
        return np.ones(shape, bool)
    out = np.zeros(shape, bool)
    for region in regions:
        out |= region_mask(region, shape)
    return out


def is_whole_image(regions: Sequence[Any] | None, shape: tuple[int, int]) -> bool:
    """True when the regions (None: the whole image) cover every pixel."""
    return regions is None or bool(regions_mask(regions, shape).all())
