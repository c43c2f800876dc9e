"""Whole-image segmentation metrics and the evaluation engine (no Qt, no napari).

- pixel: IoU and Dice/F1 of masks, per-class scores of class maps.
- aji: the Aggregated Jaccard Index of Kumar et al. 2017 (and AJI+, named as such).
- objects: panoptic quality (PQ, DQ, SQ at IoU > 0.5), the GlaS object F1, object Dice and object
  Hausdorff (Sirinukunwattana et al. 2017); instance_scores: AJI, PQ, DQ, SQ, object F1 of one pair.
- hausdorff: Hausdorff distance and HD95 between mask boundaries, in pixels.
- evaluation: score a pair of masks or two folders, and print the result as a table.

Masks read from files become labels by :func:`..io.masks.to_label_image` (re-exported here).

Nucleus instances from a semantic mask (the watershed split of touching nuclei) are made by
:mod:`..inference.instances`; files pair by :func:`..data.folders.match_key`.
"""

from ..io.masks import to_label_image
from .aji import aggregated_jaccard_index, aji_plus
from .evaluation import (
    CLASS_METRICS,
    METRICS,
    evaluate_dirs,
    evaluate_pair,
    format_table,
)
from .hausdorff import boundary, hausdorff_and_hd95, hausdorff_distance, hd95, surface_distances
from .objects import (
    glas_scores,
    instance_scores,
    object_dice,
    object_hausdorff,
    objects_f1,
    panoptic_quality,
)
from .pixel import confusion_matrix, dice, iou, per_class_scores

__all__ = [
    "CLASS_METRICS",
    "METRICS",
    "aggregated_jaccard_index",
    "aji_plus",
    "boundary",
    "confusion_matrix",
    "dice",
    "evaluate_dirs",
    "evaluate_pair",
    "format_table",
    "glas_scores",
    "instance_scores",
    "object_dice",
    "object_hausdorff",
    "objects_f1",
    "panoptic_quality",
    "hausdorff_and_hd95",
    "hausdorff_distance",
    "hd95",
    "iou",
    "per_class_scores",
    "surface_distances",
    "to_label_image",
]
