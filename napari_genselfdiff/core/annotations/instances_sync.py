"""Keep nucleus instances in agreement with corrected class labels.

The user corrects the *class labels* (brush and eraser on ``<image> labels``); the nucleus instances
(``<image> nuclei``, one id per nucleus) were split from the labels the model gave. Before the
instances are stored with a corrected pair or exported, they are brought back into agreement with
the corrected labels by one rule, :func:`sync_instances`. *Nucleus pixels* are those whose class
holds instances: every class above 0 (how the segmentation splits nuclei), or, when the old
instances cover only some classes (e.g. nuclei but not stroma), those classes.

- an instance keeps its id and every pixel that is still a nucleus pixel;
- pixels the user erased (or painted with a class without instances) leave their instance; an instance erased entirely disappears; an
  instance cut in two by an erased line (two touching nuclei separated by the user) becomes one
  instance per 4-connected piece, the largest piece keeping the id;
- foreground pixels that belong to no instance (painted by the user, or grown by a brush stroke) are
  split into nuclei by the same watershed the segmentation uses (:func:`..inference.instances.label_instances`)
  within their own connected regions; a piece smaller than the smallest nucleus (``min_size``) that
  touches an instance joins the instance it shares the longest border with (a brush stroke that widened
  a nucleus); a piece that small touching none is debris, left out as the segmentation leaves it out
  (its splitting drops objects under ``min_size``); any other piece becomes a new instance, numbered
  after the largest existing id;
- instances no pixel of which changed keep their ids and pixels exactly.

Afterwards every nucleus pixel belongs to exactly one instance, except debris smaller than a
nucleus, and no instance keeps a pixel where the labels were erased.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass
class SyncReport:
    """What :func:`sync_instances` changed (counts of instances)."""

    removed: int = 0
    trimmed: int = 0
    cut: int = 0
    grown: int = 0
    added: int = 0
    debris: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.trimmed or self.cut or self.grown or self.added)  # not debris

    def describe(self) -> str:
        """E.g. "1 removed, 2 added" (empty when nothing changed)."""
        parts = [(self.removed, "removed"), (self.trimmed, "trimmed"), (self.cut, "cut apart"),
                 (self.grown, "grown"), (self.added, "added")]
        return ", ".join(f"{n} {what}" for n, what in parts if n)


def _split_parameters(split: dict | None) -> dict:
    from ..inference.instances import instance_defaults

    known = instance_defaults()
    params = dict(known)
    params.update({k: v for k, v in (split or {}).items() if k in known})
    return params


def instance_classes(labels, instances) -> list[int]:
    """The classes whose pixels are nuclei: those (above 0) with any pixel under an instance; every class
    above 0 when there is no instance."""
    labels = np.asarray(labels)
    inside = labels[np.asarray(instances) > 0] if instances is not None else labels[:0]
    values = np.unique(inside if inside.size else labels)
    return [int(v) for v in values if v > 0]


def sync_instances(labels, instances, *, split: dict | None = None,
                   classes: list[int] | None = None) -> tuple[np.ndarray, SyncReport]:
    """Nucleus instances that agree with corrected ``labels`` (the rule of the module docstring).

    Args:
        labels: (H, W) corrected class labels.
        instances: (H, W) instance ids as they were before the correction, or None (all new).
        classes: the class ids that are nuclei; by default :func:`instance_classes`.
        split: splitting parameters for new foreground (those of ``label_instances``: split_touching,
            min_distance, min_size, h); by default its defaults. A model's come from
            :func:`..inference.instances.splitting_parameters`.

    Returns:
        ``(instances, report)``: (H, W) uint16 ids (uint32 above 65535), and what changed.

    Raises:
        ValueError: the arrays are not 2-D or their shapes differ.
    """
    from ..inference.instances import label_instances

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected 2-D (H, W) labels, got shape {labels.shape}.")
    if instances is None:
        old = np.zeros(labels.shape, np.int64)
    else:
        old = np.asarray(instances).astype(np.int64, copy=False)
        if old.shape != labels.shape:
            raise ValueError(f"the instances have shape {old.shape} but the labels {labels.shape}.")
    if classes is None:
        classes = instance_classes(labels, instances)
    foreground = np.isin(labels, np.asarray(list(classes), dtype=np.int64))
    report = SyncReport()
    out = np.where(foreground, old, 0)

    # 1. instances that lost pixels: removed entirely, trimmed, or cut into pieces
    erased = (old > 0) & ~foreground
    next_id = int(old.max(initial=0)) + 1
    if erased.any():
        touched = np.unique(old[erased])
        slices = ndimage.find_objects(np.where(np.isin(old, touched), old, 0))
        for k in touched:
            sl = slices[k - 1]
            inside = out[sl] == k
            if not inside.any():
                report.removed += 1
                continue
            pieces, n = ndimage.label(inside, structure=_FOUR)
            if n == 1:
                report.trimmed += 1
                continue
            report.cut += 1
            sizes = np.bincount(pieces.ravel())[1:]
            keep = int(np.argmax(sizes)) + 1
            view = out[sl]
            for piece in range(1, n + 1):
                if piece != keep:
                    view[pieces == piece] = next_id
                    next_id += 1

    # 2. foreground without an instance: split into nuclei; slivers join the instance they touch
    orphan = foreground & (out == 0)
    if orphan.any():
        params = _split_parameters(split)
        min_size = int(params.get("min_size", 0))
        rows, cols = np.nonzero(orphan)
        r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, labels.shape[0])
        c0, c1 = max(cols.min() - 1, 0), min(cols.max() + 2, labels.shape[1])
        box = out[r0:r1, c0:c1]
        pieces = label_instances(orphan[r0:r1, c0:c1], **{**params, "min_size": 0}).astype(np.int64)
        grown: set[int] = set()
        for piece, sl in enumerate(ndimage.find_objects(pieces), start=1):
            if sl is None:
                continue
            grow = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            mask = pieces[grow] == piece
            neighbour = 0
            if mask.sum() < min_size:
                ring = ndimage.binary_dilation(mask, structure=_FOUR) & ~mask
                ids = box[grow][ring]
                ids = ids[(ids > 0) & (pieces[grow][ring] == 0)]
                if ids.size:
                    values, counts = np.unique(ids, return_counts=True)
                    neighbour = int(values[np.argmax(counts)])
            if neighbour:
                box[grow][mask] = neighbour
                grown.add(neighbour)
            elif mask.sum() < min_size:
                report.debris += 1  # smaller than a nucleus, touching none: left out, as segmentation does
            else:
                box[grow][mask] = next_id
                next_id += 1
                report.added += 1
        report.grown = len(grown)

    top = int(out.max(initial=0))
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    return out.astype(dtype), report
