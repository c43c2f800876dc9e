"""PQ/DQ/SQ, the GlaS object F1, object Dice and object Hausdorff: hand-worked cases, the contest's
per-object algorithm written out naively, pooled vs per-image summaries, and speed."""

from __future__ import annotations

import math
import time

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff

from napari_genselfdiff.core.metrics import (
    evaluate_dirs,
    format_table,
    glas_scores,
    instance_scores,
    object_dice,
    object_hausdorff,
    objects_f1,
    panoptic_quality,
)
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, summarize


def labels_of(shape, *boxes):
    """Instance map with object k+1 = the k-th (top, left, height, width) box."""
    out = np.zeros(shape, dtype=np.uint16)
    for k, (top, left, h, w) in enumerate(boxes, start=1):
        out[top:top + h, left:left + w] = k
    return out


# --- panoptic quality -------------------------------------------------------------------------


def test_pq_by_hand_tp_fp_fn_and_iou_exactly_half_is_not_a_match():
    # GT: three 4x4 squares. Pred: the first exactly; the second shifted one column (IoU 12/20 = 0.6);
    # a 2x2 false positive; the third GT square missed.
    gt = labels_of((12, 24), (0, 0, 4, 4), (0, 8, 4, 4), (8, 16, 4, 4))
    pred = labels_of((12, 24), (0, 0, 4, 4), (0, 9, 4, 4), (8, 0, 2, 2))
    # TP 2, FP 1, FN 1: DQ = 2 / (2 + 0.5 + 0.5); SQ = (1 + 0.6) / 2; PQ = DQ * SQ.
    assert panoptic_quality(pred, gt) == pytest.approx({"pq": 2 / 3 * 0.8, "dq": 2 / 3, "sq": 0.8})

    # A 4x4 square against a 4x2 half of it: IoU 8/16 = 0.5 exactly -> not a pair (IoU must exceed 0.5).
    half = labels_of((4, 4), (0, 0, 4, 2))
    whole = labels_of((4, 4), (0, 0, 4, 4))
    assert panoptic_quality(half, whole) == {"pq": 0.0, "dq": 0.0, "sq": 0.0}


def test_instance_scores_ids_need_not_be_sequential_and_empty_rules():
    gt = labels_of((8, 8), (0, 0, 4, 4))
    pred = np.where(gt > 0, 70000, 0).astype(np.int64)
    assert instance_scores(pred, gt) == {"aji": 1.0, "pq": 1.0, "dq": 1.0, "sq": 1.0, "f1_object": 1.0}
    empty = np.zeros_like(gt)
    assert instance_scores(empty, empty) == {"aji": 1.0, "pq": 1.0, "dq": 1.0, "sq": 1.0, "f1_object": 1.0}
    assert set(instance_scores(empty, gt).values()) == {0.0}
    assert set(instance_scores(gt, empty).values()) == {0.0}
    with pytest.raises(ValueError, match="shape"):
        instance_scores(gt, gt[:4])


# --- GlaS object F1 ---------------------------------------------------------------------------


def test_glas_object_f1_needs_more_than_half_of_the_ground_truth_object():
    gt = labels_of((8, 20), (0, 0, 4, 4), (0, 10, 4, 4))
    # Object 1 covers 3 of 4 columns of gt 1 (12/16 > 50 %): TP. Object 2 covers exactly half of
    # gt 2 (8/16): FP, and gt 2 is an FN. F1 = 2 * 1 / (2 * 1 + 1 + 1) = 0.5.
    pred = labels_of((8, 20), (0, 0, 4, 3), (0, 10, 4, 2))
    assert objects_f1(pred, gt) == pytest.approx(0.5)
    # One prediction over both ground-truth objects plus the gap: its partner (largest overlap,
    # a tie -> the smaller id, gt 1) is fully covered, so TP 1, FP 0, FN 1 -> F1 2/3.
    blob = labels_of((8, 20), (0, 0, 4, 14))
    assert objects_f1(blob, gt) == pytest.approx(2 / 3)
    # Two predictions splitting one object 12/4 columns: the larger is the TP, the smaller an FP.
    split = labels_of((8, 20), (0, 0, 4, 3), (0, 3, 4, 1), (0, 10, 4, 4))
    assert objects_f1(split, gt) == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))


# --- GlaS object Dice and Hausdorff -----------------------------------------------------------


def test_object_dice_by_hand():
    gt = labels_of((8, 20), (0, 0, 4, 4))
    shifted = labels_of((8, 20), (0, 1, 4, 4))
    assert object_dice(shifted, gt) == pytest.approx(24 / 32)
    # Add a 2x2 prediction touching nothing: prediction side 16/20 * 0.75 + 4/20 * 0 = 0.6; the
    # ground-truth side is still 0.75 -> (0.6 + 0.75) / 2.
    with_fp = labels_of((8, 20), (0, 1, 4, 4), (6, 10, 2, 2))
    assert object_dice(with_fp, gt) == pytest.approx((0.6 + 0.75) / 2)
    empty = np.zeros_like(gt)
    assert object_dice(empty, empty) == 1.0 and object_dice(empty, gt) == 0.0


def test_object_hausdorff_by_hand_unmatched_object_takes_the_nearest():
    gt = labels_of((6, 14), (0, 0, 4, 4))
    shifted = labels_of((6, 14), (0, 1, 4, 4))
    assert object_hausdorff(shifted, gt) == pytest.approx(1.0)
    # A one-pixel prediction at (0, 10) overlaps nothing: its distance is to the nearest ground-truth
    # object, max(10 - 3, |(3, 0) - (0, 10)|) = sqrt(109). Prediction side: (16 * 1 + 1 * sqrt(109)) / 17;
    # ground-truth side: 1.
    with_fp = shifted.copy()
    with_fp[0, 10] = 2
    expected = 0.5 * ((16 + math.sqrt(109)) / 17 + 1.0)
    assert object_hausdorff(with_fp, gt) == pytest.approx(expected)
    empty = np.zeros_like(gt)
    assert object_hausdorff(empty, empty) == 0.0 and math.isinf(object_hausdorff(empty, gt))


def _naive_glas(pred: np.ndarray, gt: np.ndarray) -> dict:
    """The contest's evaluation (evaluation_metrics_v6) object by object, masks and loops only."""
    s_ids, g_ids = [i for i in np.unique(pred) if i], [j for j in np.unique(gt) if j]

    def partner(obj, other):  # the other side's most-overlapping id (ties: smallest), 0 = none
        hits = other[obj]
        hits = hits[hits > 0]
        if not hits.size:
            return 0
        ids, counts = np.unique(hits, return_counts=True)
        return ids[np.argmax(counts)]

    def hd(a, b):
        pa, pb = np.argwhere(a), np.argwhere(b)
        return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])

    tp = 0
    for i in s_ids:
        j = partner(pred == i, gt)
        if j and np.sum((pred == i) & (gt == j)) / np.sum(gt == j) > 0.5:
            tp += 1
    f1 = 2 * tp / (2 * tp + (len(s_ids) - tp) + (len(g_ids) - tp))

    def side(a_map, a_ids, b_map, b_ids, metric):
        total = 0.0
        for i in a_ids:
            a = a_map == i
            j = partner(a, b_map)
            if metric == "dice":
                b = b_map == j if j else np.zeros_like(a)
                value = 2 * np.sum(a & b) / (a.sum() + b.sum())
            else:
                value = hd(a, b_map == j) if j else min(hd(a, b_map == k) for k in b_ids)
            total += a.sum() * value
        return total / (a_map > 0).sum()

    return {
        "f1_object": f1,
        "object_dice": 0.5 * (side(pred, s_ids, gt, g_ids, "dice") + side(gt, g_ids, pred, s_ids, "dice")),
        "object_hd": 0.5 * (side(pred, s_ids, gt, g_ids, "hd") + side(gt, g_ids, pred, s_ids, "hd")),
    }


def test_glas_scores_match_the_contest_algorithm_on_random_objects():
    rng = np.random.default_rng(3)
    for _ in range(6):
        gt = np.zeros((60, 80), np.uint16)
        pred = np.zeros_like(gt)
        for k in range(1, 8):  # overlapping random boxes; later ones overwrite earlier ones
            t, l, h, w = rng.integers(0, 50), rng.integers(0, 70), rng.integers(3, 20), rng.integers(3, 20)
            gt[t:t + h, l:l + w] = k
            t2, l2 = max(0, t + rng.integers(-4, 5)), max(0, l + rng.integers(-4, 5))
            pred[t2:t2 + h + rng.integers(-2, 3), l2:l2 + w] = 20 + k if rng.random() > 0.2 else 0
        pred[rng.integers(0, 55), rng.integers(0, 75)] = 99  # often a lone false positive
        got, want = glas_scores(pred, gt), _naive_glas(pred, gt)
        assert got == pytest.approx(want)


# --- summaries --------------------------------------------------------------------------------


def test_pooled_differs_from_the_per_image_mean_by_hand():
    gt = labels_of((8, 8), (0, 0, 4, 4))
    # Image x: perfect (PQ 1). Image y: gt has two objects, the prediction finds one exactly -> TP 1,
    # FN 1: DQ 1/1.5, PQ 2/3. Per-image mean PQ = (1 + 2/3) / 2; pooled: TP 2, FN 1 -> DQ 2/2.5 = 0.8.
    gt2 = labels_of((8, 8), (0, 0, 4, 4), (5, 5, 3, 3))
    per_image = {
        "testA_1": evaluate_pair(gt, gt, instances=True),
        "testB_1": evaluate_pair(gt, gt2, instances=True),
    }
    result = summarize(per_image, by_prefix=True)
    assert result["mean"]["pq"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["pooled"]["pq"] == pytest.approx(0.8) and result["pooled"]["dq"] == pytest.approx(0.8)
    # f1_object pooled: 2 TP, 0 FP, 1 FN -> 4/5. AJI pooled: C = 16 + 16, U = 16 + 16 + 9.
    assert result["pooled"]["f1_object"] == pytest.approx(0.8)
    assert result["pooled"]["aji"] == pytest.approx(32 / 41)
    assert result["groups"]["testA"]["mean"]["pq"] == 1.0 and result["groups"]["testB"]["n"] == 1
    assert result["groups"]["testB"]["mean"]["pq"] == pytest.approx(2 / 3)
    table = format_table(result)
    assert "testA mean (n=1)" in table and "pooled (n=2)" in table and "per-image mean" in table


def test_evaluate_dirs_glas_splits_testa_and_testb(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt = labels_of((16, 16), (0, 0, 4, 4), (8, 8, 4, 4))
    iio.imwrite(gt_dir / "testA_1.png", gt)
    iio.imwrite(pred_dir / "testA_1_instances.png", gt)
    iio.imwrite(gt_dir / "testB_1.png", gt)
    iio.imwrite(pred_dir / "testB_1_instances.png", labels_of((16, 16), (0, 1, 4, 4)))
    result = evaluate_dirs(pred_dir, gt_dir, instances=True, glas=True, by_prefix=True)
    assert not result["errors"]
    a, b = result["groups"]["testA"]["mean"], result["groups"]["testB"]["mean"]
    assert a["object_dice"] == 1.0 and a["object_hd"] == 0.0 and a["f1_object"] == 1.0
    # testB: one shifted square (12/16 of gt 1 covered: TP), gt 2 missed: F1 2/3. Object Dice:
    # prediction side 0.75; ground-truth side (16 * 0.75 + 16 * 0) / 32 -> (0.75 + 0.375) / 2.
    assert b["f1_object"] == pytest.approx(2 / 3)
    assert b["object_dice"] == pytest.approx((0.75 + 0.375) / 2)
    # Object Hausdorff: prediction side 1; gt 2 overlaps nothing -> nearest prediction: its farthest
    # pixel (11, 11) to the square's (0..3, 1..4) is |(8, 7)| = sqrt(113); its pixel (0, 1) to gt 2's
    # nearest (8, 8) is sqrt(113) too -> ground-truth side (16 * 1 + 16 * sqrt(113)) / 32.
    assert b["object_hd"] == pytest.approx(0.5 * (1 + (1 + math.sqrt(113)) / 2))
    assert "ObjDice" in format_table(result)


# --- speed ------------------------------------------------------------------------------------


def test_instance_scores_are_fast_on_700_nuclei():
    rng = np.random.default_rng(0)
    gt = np.zeros((1000, 1000), np.int32)
    centres = rng.integers(10, 990, size=(700, 2))
    yy, xx = np.mgrid[-7:8, -7:8]
    disc = yy ** 2 + xx ** 2 <= 49
    for k, (y, x) in enumerate(centres, start=1):
        gt[y - 7:y + 8, x - 7:x + 8][disc] = k
    pred = np.roll(gt, 2, axis=1)
    instance_scores(pred, gt)  # warm-up (imports)
    start = time.process_time()  # CPU time: a loaded machine delays the test but does not inflate it
    result = instance_scores(pred, gt)
    elapsed = time.process_time() - start
    assert 0.5 < result["pq"] < 1.0 and result["dq"] > 0.8
    assert elapsed < 0.5, f"instance_scores took {elapsed:.2f} s of CPU on 1000x1000 with 700 nuclei"
