"""Aggregated Jaccard Index (AJI) of nucleus instance label maps.

AJI (Kumar et al., "A Dataset and a Technique for Generalized Nuclear Segmentation for Computational
Pathology", IEEE TMI 2017) scores instance segmentation: a prediction that merges two nuclei or splits
one scores lower than one that finds them separately, which pixel IoU cannot see. It is defined on
INSTANCE label maps; computed on a binary class map (as the paper's reference code did) it collapses
to foreground IoU.

Both functions build a sparse contingency table (the pixel count of every overlapping pair of ground-
truth and predicted instances) from the overlapping pixels only, so a 1000x1000 image with about a
thousand instances on each side takes a few tens of milliseconds; no per-instance image loop is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import relabel_sequential


@dataclass(frozen=True)
class _Overlaps:
    """Sparse contingency table of two label maps, ids relabelled to 1..n.

    Attributes:
        gt_area: (n_gt + 1,) pixel count per ground-truth id (index 0 = background).
        pred_area: (n_pred + 1,) pixel count per predicted id (index 0 = background).
        gt_id: (P,) ground-truth id of each overlapping pair.
        pred_id: (P,) predicted id of each overlapping pair.
        inter: (P,) intersection of each pair in pixels (all > 0).
        union: (P,) union of each pair in pixels.
    """

    gt_area: np.ndarray
    pred_area: np.ndarray
    gt_id: np.ndarray
    pred_id: np.ndarray
    inter: np.ndarray
    union: np.ndarray


def _sequential(labels: np.ndarray, name: str) -> np.ndarray:
    """Flattened labels renumbered 1..n in the order of their ids (bool masks are one instance).

    Ids need not be sequential (e.g. 16-bit ids after cropping); sequential ids keep bincount small.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} instance labels must be integers, got {labels.dtype}.")
    return relabel_sequential(labels)[0].ravel()


def _overlaps(pred: np.ndarray, gt: np.ndarray) -> _Overlaps:
    """Count every (ground truth, prediction) instance pair that shares pixels.

    Args:
        pred: (H, W) integer instance labels, 0 = background.
        gt: (H, W) integer instance labels, 0 = background.

    Returns:
        The sparse table, with ids renumbered 1..n (order kept) so the counts fit small bincounts.

    Raises:
        ValueError: labels are not integers (or bool), or are negative.
    """
    gt_seq, pred_seq = _sequential(gt, "ground-truth"), _sequential(pred, "predicted")
    n_gt, n_pred = int(gt_seq.max(initial=0)), int(pred_seq.max(initial=0))
    gt_area = np.bincount(gt_seq, minlength=n_gt + 1)
    pred_area = np.bincount(pred_seq, minlength=n_pred + 1)

    both = (gt_seq > 0) & (pred_seq > 0)
    # One int64 key per overlapping pixel: the pair (g, p) encoded as g * (n_pred + 1) + p.
    keys = gt_seq[both].astype(np.int64) * (n_pred + 1) + pred_seq[both]
    pair_keys, inter = np.unique(keys, return_counts=True)
    gt_id, pred_id = np.divmod(pair_keys, n_pred + 1)
    union = gt_area[gt_id] + pred_area[pred_id] - inter
    return _Overlaps(gt_area, pred_area, gt_id, pred_id, inter, union)


def _empty_score(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """Return the documented score when either map has no instance, else None.

    Raises:
        ValueError: the shapes differ.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}.")
    pred_empty, gt_empty = not np.any(pred), not np.any(gt)
    if pred_empty and gt_empty:
        return 1.0
    if pred_empty or gt_empty:
        return 0.0
    return None


def _aji_sums(table: _Overlaps) -> tuple[int, int]:
    """AJI's C and U (Kumar et al. 2017, Algorithm 1) from a contingency table; AJI = C / U.

    Summed over images they give a pooled AJI. An empty map on one side gives C = 0 and U = the other
    side's area; both empty give (0, 0).
    """
    if table.inter.size == 0:
        return 0, int(table.gt_area[1:].sum() + table.pred_area[1:].sum())
    iou = table.inter / table.union
    # Best prediction per ground-truth instance: sort by gt id, then IoU descending, then pred id
    # ascending (lexsort's last key is the primary one), and keep the first row of each gt id.
    order = np.lexsort((table.pred_id, -iou, table.gt_id))
    first = np.ones(order.size, dtype=bool)
    first[1:] = table.gt_id[order][1:] != table.gt_id[order][:-1]
    best = order[first]

    inter_sum = table.inter[best].sum()
    union_sum = table.union[best].sum()
    matched_gt = np.zeros(table.gt_area.size, dtype=bool)
    matched_gt[table.gt_id[best]] = True
    used_pred = np.zeros(table.pred_area.size, dtype=bool)
    used_pred[table.pred_id[best]] = True
    # Index 0 is the background count in both area tables and must never enter U.
    union_sum += table.gt_area[1:][~matched_gt[1:]].sum()
    union_sum += table.pred_area[1:][~used_pred[1:]].sum()
    return int(inter_sum), int(union_sum)


def aggregated_jaccard_index(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aggregated Jaccard Index of Kumar et al. 2017 (their Algorithm 1).

    For each ground-truth instance G_i, the predicted instance S_j with the largest IoU among those
    overlapping G_i is chosen (ties go to the smallest predicted id); |G_i & S_j| is added to C and
    |G_i | S_j| to U, and S_j is marked used. A G_i that no prediction touches adds |G_i| to U. Finally
    the area of every predicted instance never used is added to U. AJI = C / U.

    As in the original definition, a prediction chosen by several ground-truth instances (one blob
    over two nuclei) enters U once per pair, so its pixels can be counted more than once; it is
    "used" once and never added again as an unused instance. `aji_plus` avoids that over-penalty.

    Empty cases (explicit): both maps empty -> 1.0 (perfect agreement); ground truth empty but
    predictions present -> 0.0; predictions empty but ground truth present -> 0.0.

    Args:
        pred: (H, W) integer predicted instance labels, 0 = background; ids need not be sequential
            (a bool mask is one instance).
        gt: (H, W) integer ground-truth instance labels, 0 = background.

    Returns:
        AJI in [0, 1].

    Raises:
        ValueError: the shapes differ, or labels are not non-negative integers (or bool).
    """
    empty = _empty_score(pred, gt)
    if empty is not None:
        return empty
    inter_sum, union_sum = _aji_sums(_overlaps(pred, gt))
    return float(inter_sum / union_sum)


def aji_plus(pred: np.ndarray, gt: np.ndarray) -> float:
    """AJI+ (Graham et al., HoVer-Net, Medical Image Analysis 2019): AJI with one-to-one matching.

    Ground-truth and predicted instances are paired one-to-one so that the summed IoU is maximal
    (Hungarian assignment over overlapping pairs only); each pair adds its intersection to C and its
    union to U, and every unpaired instance, on either side, adds its area to U. Unlike the original
    AJI, no prediction is counted in U more than once. This is NOT the AJI of Kumar et al. 2017;
    report it under its own name.

    Empty cases: the same as `aggregated_jaccard_index` (both empty -> 1.0, one empty -> 0.0).

    Args:
        pred: (H, W) integer predicted instance labels, 0 = background.
        gt: (H, W) integer ground-truth instance labels, 0 = background.

    Returns:
        AJI+ in [0, 1].

    Raises:
        ValueError: the shapes differ, or labels are not non-negative integers (or bool).
    """
    empty = _empty_score(pred, gt)
    if empty is not None:
        return empty
    table = _overlaps(pred, gt)
    iou = table.inter / table.union
    # The overlap graph (instances as nodes, overlapping pairs as edges) falls apart into small
    # clusters of touching nuclei; an optimal one-to-one matching of the whole graph is the union of
    # optimal matchings of its clusters, so each cluster gets its own small dense assignment.
    n_gt = table.gt_area.size
    graph = coo_matrix(
        (np.ones(iou.size), (table.gt_id, n_gt + table.pred_id)),
        shape=(n_gt + table.pred_area.size,) * 2,
    )
    cluster = connected_components(graph, directed=False)[1][table.gt_id]
    order = np.argsort(cluster, kind="stable")
    inter_sum = 0
    for edges in np.split(order, np.flatnonzero(np.diff(cluster[order])) + 1):
        if edges.size == 1:
            inter_sum += int(table.inter[edges[0]])
            continue
        rows, gt_local = np.unique(table.gt_id[edges], return_inverse=True)
        cols, pred_local = np.unique(table.pred_id[edges], return_inverse=True)
        cluster_iou = np.zeros((rows.size, cols.size))
        cluster_iou[gt_local, pred_local] = iou[edges]
        cluster_inter = np.zeros((rows.size, cols.size), dtype=np.int64)
        cluster_inter[gt_local, pred_local] = table.inter[edges]
        gt_match, pred_match = linear_sum_assignment(cluster_iou, maximize=True)
        # Pairs with IoU 0 do not overlap and add 0 to the intersection, so they need no filter.
        inter_sum += int(cluster_inter[gt_match, pred_match].sum())
    # Each paired couple adds |G| + |S| - |G & S| to U and each unpaired instance its area, so U is the
    # total instance area of both maps minus the matched intersections.
    union_sum = int(table.gt_area[1:].sum() + table.pred_area[1:].sum()) - inter_sum
    return float(inter_sum / union_sum)
