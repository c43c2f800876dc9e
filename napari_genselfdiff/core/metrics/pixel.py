"""Pixel overlap scores of whole label images: IoU (Jaccard) and Dice (= pixel F1).

Empty masks are defined explicitly rather than left to a 0/0: when neither the prediction nor the
ground truth contains a pixel of the class, both agree perfectly and the score is 1.0; when exactly
one of them is empty, nothing overlaps and the score is 0.0.
"""

from __future__ import annotations

import numpy as np


def _counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """Intersection and the two areas of two boolean masks of one shape."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}.")
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred)), int(np.count_nonzero(gt))


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, with the empty-mask rule for a zero denominator."""
    # The denominator is 0 only when both masks are empty: perfect agreement by definition.
    return 1.0 if denominator == 0 else numerator / denominator


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union |P & G| / |P | G| of two masks.

    Args:
        pred: (H, W) boolean (or 0/nonzero) predicted mask.
        gt: (H, W) ground-truth mask of the same shape.

    Returns:
        IoU in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Raises:
        ValueError: the shapes differ.
    """
    inter, area_pred, area_gt = _counts(pred, gt)
    return _ratio(inter, area_pred + area_gt - inter)


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient 2 |P & G| / (|P| + |G|), equal to the pixel F1 score.

    Args:
        pred: (H, W) boolean (or 0/nonzero) predicted mask.
        gt: (H, W) ground-truth mask of the same shape.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Raises:
        ValueError: the shapes differ.
    """
    inter, area_pred, area_gt = _counts(pred, gt)
    return _ratio(2 * inter, area_pred + area_gt)


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel confusion matrix of two class maps.

    Args:
        pred: (H, W) integer predicted class map with values in [0, num_classes).
        gt: (H, W) integer ground-truth class map with values in [0, num_classes).
        num_classes: number of classes K.

    Returns:
        (K, K) int64 counts, rows = ground-truth class, columns = predicted class.

    Raises:
        ValueError: the shapes differ or a value lies outside [0, num_classes).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}.")
    for name, array in (("prediction", pred), ("ground truth", gt)):
        if array.size and (array.min() < 0 or array.max() >= num_classes):
            raise ValueError(
                f"{name} has class values {array.min()}..{array.max()}, outside 0..{num_classes - 1}."
            )
    # One bincount over gt * K + pred gives every cell of the matrix in a single pass.
    flat = gt.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[int, dict[str, float]]:
    """IoU and Dice/F1 of every class of two class maps (one-vs-rest per class).

    Args:
        pred: (H, W) integer predicted class map with values in [0, num_classes).
        gt: (H, W) integer ground-truth class map with values in [0, num_classes).
        num_classes: number of classes K (class 0 included).

    Returns:
        {class_id: {"iou": float, "f1": float}} for class_id 0..K-1, with the empty rules of `iou`
        and `dice` per class (a class absent from both maps scores 1.0).

    Raises:
        ValueError: the shapes differ or a value lies outside [0, num_classes).
    """
    matrix = confusion_matrix(pred, gt, num_classes)
    inter = np.diag(matrix)
    area_gt, area_pred = matrix.sum(axis=1), matrix.sum(axis=0)
    return {
        k: {
            "iou": _ratio(int(inter[k]), int(area_gt[k] + area_pred[k] - inter[k])),
            "f1": _ratio(int(2 * inter[k]), int(area_gt[k] + area_pred[k])),
        }
        for k in range(num_classes)
    }
