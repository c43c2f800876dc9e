"""Training targets of the instance-aware outputs (:mod:`..inference.outputs`), from instance patches.

Targets are made per patch AFTER the geometric augmentation (flips, turns, rescaling move the
instance ids with the image), so direction maps (``hover``) never need their signs fixed.

- ``contour``: classes 0 background, 1 interior, 2 contour: the inner 1-pixel border of each nucleus
  (:func:`skimage.segmentation.find_boundaries`, ``mode="inner"``), so two touching nuclei are
  separated by two contour pixels.
- ``distance``: (1, h, w): each nucleus pixel's Euclidean distance to the nucleus's border divided by
  the nucleus's largest, so every nucleus is a dome from ~0 to 1 (0 outside nuclei).
- ``hover``: (2, h, w): horizontal and vertical offset of each nucleus pixel from the nucleus's
  centre of mass, negative and positive sides each scaled to [-1, 0] and [0, 1] (Graham et al.,
  HoVer-Net, MedIA 2019).

Where a nucleus has no instance (a class mask without instances), :func:`instances_from_mask`
splits it with the watershed of :mod:`..inference.instances`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def instances_from_mask(mask: np.ndarray, foreground_class: int = 1) -> np.ndarray:
    """Instance ids for a class mask's foreground (split by the watershed), 0 elsewhere."""
    from ..inference.instances import label_instances

    return label_instances(np.asarray(mask) == foreground_class, min_size=1).astype(np.int32)


def contour_classes(instances: np.ndarray) -> np.ndarray:
    """(h, w) int64: 0 background, 1 nucleus interior, 2 the inner 1-pixel border of each nucleus."""
    from skimage.segmentation import find_boundaries

    inst = np.asarray(instances)
    border = find_boundaries(inst, connectivity=1, mode="inner") & (inst > 0)
    out = (inst > 0).astype(np.int64)
    out[border] = 2
    return out


def distance_map(instances: np.ndarray) -> np.ndarray:
    """(1, h, w) float32: distance to the nucleus border / the nucleus's largest, 0 outside nuclei."""
    inst = np.asarray(instances)
    out = np.zeros(inst.shape, np.float32)
    for value, sl in enumerate(ndimage.find_objects(inst), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mine = inst[sl] == value
        d = ndimage.distance_transform_edt(mine)
        peak = d.max()
        if peak > 0:
            out[sl][mine] = (d[mine] / peak).astype(np.float32)
    return out[None]


def hover_maps(instances: np.ndarray) -> np.ndarray:
    """(2, h, w) float32: horizontal (x) and vertical (y) offsets from each nucleus's centre, in [-1, 1]."""
    inst = np.asarray(instances)
    out = np.zeros((2,) + inst.shape, np.float32)
    for value, sl in enumerate(ndimage.find_objects(inst), start=1):
        if sl is None:
            continue
        mine = inst[sl] == value
        rr, cc = np.nonzero(mine)
        for axis, coords in ((0, cc), (1, rr)):
            offset = coords - coords.mean()
            neg, pos = -offset.min(initial=0.0), offset.max(initial=0.0)
            scaled = np.where(offset < 0, offset / (neg if neg > 0 else 1.0), offset / (pos if pos > 0 else 1.0))
            view = out[axis][sl]
            view[rr, cc] = scaled.astype(np.float32)
    return out


def targets_for(kind: str, instances: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(class target (h, w) int64, regression target (E, h, w) float32 or None) for ``kind``.

    Args:
        kind: the output kind (``contour``, ``distance``, ``hover``).
        instances: (h, w) instance ids of the patch (0 = no nucleus).
        classes: (h, w) class ids of the patch (0/1), the class target of every kind but ``contour``.
    """
    if kind == "contour":
        target = contour_classes(instances)
        # foreground pixels that carry no instance (e.g. debris below the splitting's size) stay interior
        target[(classes > 0) & (target == 0)] = 1
        return target, None
    if kind == "distance":
        return classes.astype(np.int64), distance_map(instances)
    if kind == "hover":
        return classes.astype(np.int64), hover_maps(instances)
    raise ValueError(f"no instance targets for output kind {kind!r}.")
