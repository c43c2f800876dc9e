"""Object-level scores of instance label maps: panoptic quality and the GlaS challenge's object metrics.

- Panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019; used for nuclei by Graham et
  al., HoVer-Net, MedIA 2019): a ground-truth and a predicted instance are a true-positive pair when
  their IoU is > 0.5 (such pairs are unique, so no assignment is needed). DQ = TP / (TP + FP/2 + FN/2)
  (the F1 of detection at IoU 0.5), SQ = the mean IoU of the TP pairs, PQ = DQ x SQ.
- Object F1, object Dice and object Hausdorff of the GlaS contest (Sirinukunwattana et al., "Gland
  segmentation in colon histology images: The GlaS challenge contest", MedIA 2017, section 3.1; the
  contest's evaluation code, evaluation_metrics_v6):
    * object F1: each predicted object's partner is the ground-truth object it overlaps most (ties
      to the smallest id); it is a TP when it covers MORE than 50 % of that partner's pixels, else a
      FP. Ground-truth objects without a TP are FN. F1 = 2 TP / (2 TP + FP + FN). (Two predictions
      cannot both cover more than half of one object, so each object has at most one TP.)
    * object Dice: 1/2 [sum_i w_i Dice(S_i, G*(S_i)) + sum_j w~_j Dice(G_j, S*(G_j))], w_i = |S_i| / sum
      |S|, w~_j = |G_j| / sum |G|, the partner * being the object of the other side overlapping most;
      an object overlapping nothing scores Dice 0.
    * object Hausdorff: the same weighted sum of Hausdorff distances between the objects' pixel sets
      (Euclidean, in pixels), where an object overlapping nothing takes the NEAREST object of the other
      side (the smallest Hausdorff distance), as the contest code does.
  ``objects_f1`` is also what ``genselfdiff evaluate`` reports as ``f1_object`` for nuclei.

Every function computes the sparse contingency table of the two maps once (aji.py's `_overlaps`: a
bincount over overlapping pixels, no per-instance image loop); only the object Hausdorff works per
object, on bounding-box crops. Empty maps: both empty -> scores 1.0 (Hausdorff 0.0); exactly one
empty -> 0.0 (Hausdorff inf, left out of folder means like HD). The contest code returns 0 for the
object Hausdorff of one empty side; inf is used here so that it cannot look like a perfect score.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .aji import _aji_sums, _Overlaps, _overlaps

PQ_IOU = 0.5
"""A ground-truth and a predicted instance are a panoptic-quality TP pair when their IoU exceeds this."""

GLAS_OVERLAP = 0.5
"""A predicted object is a GlaS object-F1 TP when it covers more than this fraction of its partner."""


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"prediction shape {np.shape(pred)} differs from ground truth shape {np.shape(gt)}.")


def _best_partner(rows: np.ndarray, cols: np.ndarray, inter: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row id 0..n_rows-1: the col id with the largest intersection (ties to the smallest col
    id; 0 = no overlap) and that intersection."""
    order = np.lexsort((cols, -inter, rows))
    first = np.ones(order.size, dtype=bool)
    first[1:] = rows[order][1:] != rows[order][:-1]
    best = order[first]
    partner = np.zeros(n_rows, dtype=np.int64)
    overlap = np.zeros(n_rows, dtype=np.int64)
    partner[rows[best]] = cols[best]
    overlap[rows[best]] = inter[best]
    return partner, overlap


def _counts(table: _Overlaps) -> dict[str, float]:
    """Per-image counts from which PQ, DQ, SQ, object F1 and AJI are computed (and pooled over images)."""
    n_gt, n_pred = table.gt_area.size - 1, table.pred_area.size - 1
    iou = table.inter / table.union
    tp_pairs = iou > PQ_IOU
    tp = int(tp_pairs.sum())
    # GlaS object F1: each prediction's most-overlapping ground-truth object, TP when > 50 % of it.
    partner, overlap = _best_partner(table.pred_id, table.gt_id, table.inter, n_pred + 1)
    covered = overlap[1:] > GLAS_OVERLAP * table.gt_area[partner[1:]]
    covered &= partner[1:] > 0
    obj_tp = int(covered.sum())
    aji_c, aji_u = _aji_sums(table)
    return {
        "tp": tp, "fp": n_pred - tp, "fn": n_gt - tp, "iou_sum": float(iou[tp_pairs].sum()),
        "obj_tp": obj_tp, "obj_fp": n_pred - obj_tp, "obj_fn": n_gt - obj_tp,
        "aji_c": int(aji_c), "aji_u": int(aji_u),
    }


def scores_from_counts(counts: dict[str, float]) -> dict[str, float]:
    """PQ, DQ, SQ, object F1 and AJI from (per-image or summed) `_counts`.

    Nothing to find and nothing found (all counts 0) scores 1.0, the agreement of two empty maps.
    """
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    if tp + fp + fn == 0:
        return {"aji": 1.0, "pq": 1.0, "dq": 1.0, "sq": 1.0, "f1_object": 1.0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = counts["iou_sum"] / tp if tp else 0.0
    obj = 2 * counts["obj_tp"] + counts["obj_fp"] + counts["obj_fn"]
    return {
        "aji": counts["aji_c"] / counts["aji_u"] if counts["aji_u"] else 0.0,
        "pq": dq * sq, "dq": dq, "sq": sq,
        "f1_object": 2 * counts["obj_tp"] / obj if obj else 1.0,
    }


def instance_counts(pred_instances: np.ndarray, gt_instances: np.ndarray) -> dict[str, float]:
    """The counts of one image that `scores_from_counts` turns into scores (summed over images: pooled).

    Keys: tp, fp, fn, iou_sum (panoptic quality at IoU > 0.5), obj_tp, obj_fp, obj_fn (GlaS object F1),
    aji_c, aji_u (AJI's intersection and union sums, Kumar et al. 2017).
    """
    _check(pred_instances, gt_instances)
    return _counts(_overlaps(pred_instances, gt_instances))


def instance_scores(pred_instances: np.ndarray, gt_instances: np.ndarray) -> dict[str, float]:
    """AJI, PQ, DQ, SQ and object F1 of one pair of instance label maps, from one contingency table.

    Args:
        pred_instances: (H, W) integer instance ids, 0 = background (ids need not be sequential; a
            bool mask is one instance).
        gt_instances: (H, W) integer ground-truth instance ids of the same shape.

    Returns:
        {"aji", "pq", "dq", "sq", "f1_object"} in [0, 1]: AJI as `aggregated_jaccard_index`; PQ/DQ/SQ
        at IoU > 0.5; f1_object by the GlaS rule (`objects_f1`). Both maps empty: all 1.0; exactly one
        empty: all 0.0.

    Raises:
        ValueError: the shapes differ, or labels are not non-negative integers (or bool).
    """
    return scores_from_counts(instance_counts(pred_instances, gt_instances))


def panoptic_quality(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """{"pq", "dq", "sq"} of two instance label maps (pairs matched at IoU > 0.5); see the module doc."""
    scores = instance_scores(pred, gt)
    return {key: scores[key] for key in ("pq", "dq", "sq")}


def objects_f1(pred: np.ndarray, gt: np.ndarray) -> float:
    """The GlaS object-detection F1 (Sirinukunwattana et al. 2017) of two instance label maps."""
    return instance_scores(pred, gt)["f1_object"]


def object_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """The GlaS object Dice of two instance label maps (see the module doc); both empty 1.0, one 0.0."""
    _check(pred, gt)
    table = _overlaps(pred, gt)
    n_gt, n_pred = table.gt_area.size - 1, table.pred_area.size - 1
    if n_gt == 0 or n_pred == 0:
        return 1.0 if n_gt == n_pred else 0.0

    def side(rows, cols, row_area, col_area) -> float:
        partner, overlap = _best_partner(rows, cols, table.inter, row_area.size)
        dice = 2 * overlap[1:] / (row_area[1:] + np.where(partner[1:] > 0, col_area[partner[1:]], 0))
        return float(np.sum(row_area[1:] * dice) / row_area[1:].sum())

    return 0.5 * (side(table.pred_id, table.gt_id, table.pred_area, table.gt_area)
                  + side(table.gt_id, table.pred_id, table.gt_area, table.pred_area))


def _sequential_labels(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    return relabel_sequential(labels)[0]


def _hausdorff(a_map, a_id, a_box, b_map, b_id, b_box) -> float:
    """Hausdorff distance between the pixel sets of object a_id of a_map and b_id of b_map (Euclidean
    distance transforms on the crop that holds both objects)."""
    crop = tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a_box, b_box))
    a, b = a_map[crop] == a_id, b_map[crop] == b_id
    to_b = ndimage.distance_transform_edt(~b)
    to_a = ndimage.distance_transform_edt(~a)
    return float(max(to_b[a].max(), to_a[b].max()))


def _nearest_hausdorff(a_map, a_id, a_box, b_map, b_boxes) -> float:
    """The smallest Hausdorff distance between object a_id of a_map and any object of b_map.

    One distance transform to object a gives, for every object b at once, max over b of the distance
    to a: a lower bound of HD(a, b). Candidates are tried in the order of that bound, and the search
    stops once the bound exceeds the best exact distance found (usually after one or two).
    """
    to_a = ndimage.distance_transform_edt(a_map != a_id)
    n_b = len(b_boxes)
    bounds = np.asarray(ndimage.maximum(to_a, labels=b_map, index=np.arange(1, n_b + 1)), dtype=float)
    best = math.inf
    for j in np.argsort(bounds, kind="stable") + 1:
        if bounds[j - 1] >= best:
            break
        best = min(best, _hausdorff(a_map, a_id, a_box, b_map, int(j), b_boxes[j - 1]))
    return best


def object_hausdorff(pred: np.ndarray, gt: np.ndarray) -> float:
    """The GlaS object Hausdorff distance of two instance label maps, in pixels (see the module doc).

    Both empty: 0.0; exactly one empty: inf.
    """
    _check(pred, gt)
    s, g = _sequential_labels(pred), _sequential_labels(gt)
    table = _overlaps(s, g)
    n_gt, n_pred = table.gt_area.size - 1, table.pred_area.size - 1
    if n_gt == 0 or n_pred == 0:
        return 0.0 if n_gt == n_pred else math.inf
    s_boxes, g_boxes = ndimage.find_objects(s), ndimage.find_objects(g)

    def side(rows, cols, row_area, row_map, row_boxes, col_map, col_boxes) -> float:
        partner, _ = _best_partner(rows, cols, table.inter, row_area.size)
        total = 0.0
        for i in range(1, row_area.size):
            if partner[i]:
                d = _hausdorff(row_map, i, row_boxes[i - 1], col_map, partner[i], col_boxes[partner[i] - 1])
            else:  # overlaps nothing: the nearest object of the other side
                d = _nearest_hausdorff(row_map, i, row_boxes[i - 1], col_map, col_boxes)
            total += row_area[i] * d
        return total / row_area[1:].sum()

    return 0.5 * (side(table.pred_id, table.gt_id, table.pred_area, s, s_boxes, g, g_boxes)
                  + side(table.gt_id, table.pred_id, table.gt_area, g, g_boxes, s, s_boxes))


def glas_scores(pred_instances: np.ndarray, gt_instances: np.ndarray) -> dict[str, float]:
    """{"f1_object", "object_dice", "object_hd"}: the three GlaS contest object metrics of one image."""
    return {
        "f1_object": objects_f1(pred_instances, gt_instances),
        "object_dice": object_dice(pred_instances, gt_instances),
        "object_hd": object_hausdorff(pred_instances, gt_instances),
    }
