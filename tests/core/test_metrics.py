"""Tests of napari_genselfdiff.core.metrics: every expected value is worked out by hand in a comment."""

from __future__ import annotations

import math
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from skimage.segmentation import find_boundaries

from napari_genselfdiff.core.data.folders import match_key
from napari_genselfdiff.core.errors import MaskInputError
from napari_genselfdiff.core.inference.instances import instance_defaults, label_instances
from napari_genselfdiff.core.metrics import (
    aggregated_jaccard_index,
    aji_plus,
    dice,
    evaluate_dirs,
    evaluate_pair,
    format_table,
    hausdorff_and_hd95,
    hausdorff_distance,
    hd95,
    iou,
    per_class_scores,
)

PERFECT = {"iou": 1.0, "f1": 1.0, "aji": 1.0, "pq": 1.0, "dq": 1.0, "sq": 1.0, "f1_object": 1.0, "hd": 0.0, "hd95": 0.0}


def scores(result: dict) -> dict:
    """A result of evaluate_pair without its "counts" (the numbers pooled scores are summed from)."""
    return {key: value for key, value in result.items() if key != "counts"}
MONUSEG_TEST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "monuseg" / "test"


def square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    """A bool mask with one size x size square whose top-left pixel is (top, left)."""
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """A bool mask with one filled disc."""
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


# --- pixel IoU / Dice -------------------------------------------------------------------------


def test_iou_and_dice_of_squares_offset_by_one_pixel():
    a = square((6, 6), 0, 0, 4)
    b = square((6, 6), 0, 1, 4)
    # |A & B| = 4 rows x 3 columns = 12; |A | B| = 16 + 16 - 12 = 20.
    assert iou(a, b) == pytest.approx(12 / 20)
    # Dice = 2 * 12 / (16 + 16) = 24 / 32.
    assert dice(a, b) == pytest.approx(24 / 32)


def test_pixel_empty_mask_rules():
    empty = np.zeros((4, 4), dtype=bool)
    full = np.ones((4, 4), dtype=bool)
    # Both empty: perfect agreement by definition (not 0/0).
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0
    # Exactly one empty: nothing overlaps.
    assert iou(empty, full) == 0.0 and dice(full, empty) == 0.0


def test_per_class_scores_by_hand():
    gt = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[1, 1, 2], [2, 2, 2]])
    scores = per_class_scores(pred, gt, num_classes=4)
    # class 0: gt {(0,0), (1,2)}, pred {} -> IoU 0/2 = 0, F1 0/(2+0) = 0.
    assert scores[0] == {"iou": 0.0, "f1": 0.0}
    # class 1: gt {(0,1), (0,2)}, pred {(0,0), (0,1)} -> inter 1, union 3; F1 2*1/(2+2).
    assert scores[1]["iou"] == pytest.approx(1 / 3) and scores[1]["f1"] == pytest.approx(0.5)
    # class 2: gt {(1,0), (1,1)}, pred {(0,2), (1,0), (1,1), (1,2)} -> inter 2, union 4; F1 4/6.
    assert scores[2]["iou"] == pytest.approx(0.5) and scores[2]["f1"] == pytest.approx(4 / 6)
    # class 3 is in neither map: both empty -> 1.0.
    assert scores[3] == {"iou": 1.0, "f1": 1.0}
    with pytest.raises(ValueError, match="outside 0..1"):
        per_class_scores(pred, gt, num_classes=2)


# --- AJI --------------------------------------------------------------------------------------


def naive_aji(pred: np.ndarray, gt: np.ndarray) -> float:
    """Kumar et al. 2017, Algorithm 1, written with one full-image loop per instance."""
    inter_sum = union_sum = 0
    used = set()
    pred_ids = [p for p in np.unique(pred) if p]
    for g in (g for g in np.unique(gt) if g):
        gmask = gt == g
        ious = [((gmask & (pred == p)).sum() / (gmask | (pred == p)).sum(), -p) for p in pred_ids]
        best_iou, neg_p = max(ious, default=(0.0, 0))
        if best_iou == 0:
            union_sum += gmask.sum()
            continue
        pmask = pred == -neg_p
        inter_sum += (gmask & pmask).sum()
        union_sum += (gmask | pmask).sum()
        used.add(-neg_p)
    union_sum += sum((pred == p).sum() for p in pred_ids if p not in used)
    return inter_sum / union_sum


def naive_aji_plus(pred: np.ndarray, gt: np.ndarray) -> float:
    """AJI+ with one dense Hungarian assignment over all instance pairs."""
    gt_ids, pred_ids = [g for g in np.unique(gt) if g], [p for p in np.unique(pred) if p]
    inter = np.array([[((gt == g) & (pred == p)).sum() for p in pred_ids] for g in gt_ids])
    union = np.array([[((gt == g) | (pred == p)).sum() for p in pred_ids] for g in gt_ids])
    rows, cols = linear_sum_assignment(inter / union, maximize=True)
    matched = inter[rows, cols].sum()
    return matched / ((gt > 0).sum() + (pred > 0).sum() - matched)


def test_aji_one_nucleus_split_into_two_predictions():
    gt = square((6, 6), 0, 0, 4).astype(np.uint16)  # one 16-pixel nucleus, id 1
    pred = np.zeros((6, 6), dtype=np.uint16)
    pred[0:4, 0:3] = 1  # 12 pixels
    pred[0:4, 3] = 2  # 4 pixels
    # GT 1 picks pred 1 (IoU 12/16 > 4/16): C = 12, U = |G | P1| = 16. Pred 2 unused: U += 4.
    # AJI = 12 / 20, while pixel IoU is 1.0 (the split is invisible to it).
    assert aggregated_jaccard_index(pred, gt) == pytest.approx(12 / 20)
    assert iou(pred > 0, gt > 0) == 1.0


def test_aji_false_positive_instance_is_added_to_union():
    gt = square((8, 8), 0, 0, 4).astype(np.uint16)
    pred = gt.copy()
    pred[6:8, 6:8] = 2  # a 4-pixel false positive
    # C = 16, U = 16 from the matched pair + 4 for the unused pred 2 -> 16 / 20.
    assert aggregated_jaccard_index(pred, gt) == pytest.approx(16 / 20)


def test_aji_missed_nucleus_and_merged_nuclei():
    gt = np.zeros((4, 8), dtype=np.uint16)
    gt[0:2, 0:2] = 1
    gt[0:2, 2:4] = 2  # touches nucleus 1
    missed = np.zeros_like(gt)
    missed[0:2, 0:2] = 1
    # GT 1: C = 4, U = 4. GT 2 is touched by no prediction: U += 4. AJI = 4 / 8.
    assert aggregated_jaccard_index(missed, gt) == pytest.approx(0.5)

    merged = np.zeros_like(gt)
    merged[0:2, 0:4] = 7  # one 8-pixel blob over both nuclei
    # Both GT instances pick the blob (IoU 4/8 each): C = 4 + 4, U = 8 + 8 (the blob enters U twice,
    # as in the original definition) -> 8 / 16.
    assert aggregated_jaccard_index(merged, gt) == pytest.approx(0.5)
    # AJI+ pairs the blob with one nucleus only: C = 4, U = |G| + |S| - C = 8 + 8 - 4 = 12 -> 4 / 12.
    assert aji_plus(merged, gt) == pytest.approx(4 / 12)
    # Split case for AJI+ (see the split test): pred 1 pairs with GT 1, C = 12, U = 16 + 16 - 12 = 20.
    split = np.zeros((6, 6), dtype=np.uint16)
    split[0:4, 0:3], split[0:4, 3] = 1, 2
    assert aji_plus(split, square((6, 6), 0, 0, 4).astype(np.uint16)) == pytest.approx(12 / 20)


def test_aji_empty_rules_and_identity():
    empty = np.zeros((5, 5), dtype=np.uint16)
    one = empty.copy()
    one[1:3, 1:3] = 4
    assert aggregated_jaccard_index(empty, empty) == 1.0  # both empty: perfect agreement
    assert aggregated_jaccard_index(one, empty) == 0.0  # predictions, no ground truth
    assert aggregated_jaccard_index(empty, one) == 0.0  # ground truth, no predictions
    assert aji_plus(empty, empty) == 1.0 and aji_plus(one, empty) == 0.0
    assert aggregated_jaccard_index(one, one) == 1.0


def test_aji_and_aji_plus_match_naive_algorithms_on_random_instances():
    rng = np.random.default_rng(0)
    for _ in range(5):
        # Random blocky instance maps with non-sequential ids and many partial overlaps.
        gt = np.kron(rng.integers(0, 6, (8, 8)), np.ones((4, 4), dtype=np.int64)) * 37
        pred = np.roll(np.kron(rng.integers(0, 6, (16, 16)), np.ones((2, 2), dtype=np.int64)), 1, axis=1)
        assert aggregated_jaccard_index(pred, gt) == pytest.approx(naive_aji(pred, gt))
        assert aji_plus(pred, gt) == pytest.approx(naive_aji_plus(pred, gt))


def test_aji_is_fast_on_a_thousand_instances():
    # 32 x 32 grid of 28-pixel squares on a 1024 x 1024 image: 1024 instances on each side.
    gt = np.zeros((1024, 1024), dtype=np.uint16)
    for i in range(32):
        for j in range(32):
            gt[32 * i : 32 * i + 28, 32 * j : 32 * j + 28] = 32 * i + j + 1
    pred = np.roll(gt, 1, axis=1)
    start = time.process_time()  # CPU time: a loaded machine delays the test but does not inflate it
    value = aggregated_jaccard_index(pred, gt)
    elapsed = time.process_time() - start
    # Each pair: inter 28 x 27 = 756, union 784 + 784 - 756 = 812; all pairs alike -> 756 / 812.
    assert value == pytest.approx(756 / 812)
    assert elapsed < 2.0, f"AJI of 1024 instances took {elapsed:.2f} s of CPU (a quadratic pairing takes minutes)"


# --- Hausdorff / HD95 -------------------------------------------------------------------------


def test_hausdorff_between_single_pixels_is_euclidean():
    a = np.zeros((10, 10), dtype=bool)
    b = np.zeros((10, 10), dtype=bool)
    a[1, 1] = True
    b[4, 5] = True
    # Offset (3, 4): sqrt(9 + 16) = 5; both directed distances are 5, so HD95 is 5 too.
    assert hausdorff_distance(a, b) == pytest.approx(5.0)
    assert hd95(a, b) == pytest.approx(5.0)


def test_hausdorff_square_and_shifted_square():
    a = square((12, 12), 2, 2, 4)
    b = square((12, 12), 2, 5, 4)
    # The boundaries are the 12-pixel rings. A's left column (col 2) is 3 from B's left column
    # (col 5) on the same rows, and no A ring pixel is farther; by symmetry B -> A is 3 too.
    assert hausdorff_distance(a, b) == pytest.approx(3.0)
    # Not the paper's row-as-point directed_hausdorff: that would compare 12-dimensional rows.


def test_hd95_with_countable_distances():
    gt = np.zeros((10, 10), dtype=bool)
    gt[0, :] = True  # a 1-pixel line: all 10 pixels are boundary
    pred = gt.copy()
    pred[3, 0] = True  # 3 from gt pixel (0, 0)
    pred[6, 0] = True  # 6 from gt pixel (0, 0)
    # Pooled distances: pred -> gt: ten 0s, 3, 6; gt -> pred: ten 0s. 22 values sorted:
    # indices 0..19 are 0, index 20 is 3, index 21 is 6.
    # 95th percentile (linear): position 0.95 * 21 = 19.95 -> 0 + 0.95 * (3 - 0) = 2.85.
    hd, hd95_value = hausdorff_and_hd95(pred, gt)
    assert hd == pytest.approx(6.0)
    assert hd95_value == pytest.approx(2.85)


def test_hausdorff_image_edge_counts_as_background():
    full = np.ones((5, 5), dtype=bool)
    centre = square((5, 5), 1, 1, 3)
    # Full mask: its boundary is the 16-pixel frame. Centre: the 8-pixel ring around (2, 2).
    # Frame corner (0, 0) -> ring corner (1, 1) = sqrt(2), the farthest; ring -> frame = 1.
    assert hausdorff_distance(full, centre) == pytest.approx(math.sqrt(2))


def test_hausdorff_empty_rules():
    empty = np.zeros((6, 6), dtype=bool)
    one = square((6, 6), 1, 1, 2)
    assert hausdorff_and_hd95(empty, empty) == (0.0, 0.0)
    assert hausdorff_and_hd95(one, empty) == (math.inf, math.inf)
    assert hausdorff_and_hd95(empty, one) == (math.inf, math.inf)
    with pytest.raises(ValueError, match="differs"):
        hausdorff_distance(one, np.zeros((5, 6), dtype=bool))


def test_hausdorff_matches_brute_force_on_inner_boundaries():
    rng = np.random.default_rng(1)
    for _ in range(3):
        a = np.zeros((40, 40), dtype=bool)
        b = np.zeros((40, 40), dtype=bool)
        # Random blobs away from the image edge, where the boundary is find_boundaries(mode="inner").
        a[5:35, 5:35] = np.kron(rng.random((6, 6)) > 0.4, np.ones((5, 5), dtype=bool))
        b[5:35, 5:35] = np.kron(rng.random((10, 10)) > 0.5, np.ones((3, 3), dtype=bool))
        pa = np.argwhere(find_boundaries(a, mode="inner"))
        pb = np.argwhere(find_boundaries(b, mode="inner"))
        d = cdist(pa, pb)
        pooled = np.concatenate([d.min(axis=1), d.min(axis=0)])
        hd, hd95_value = hausdorff_and_hd95(a, b)
        assert hd == pytest.approx(pooled.max())
        assert hd95_value == pytest.approx(np.percentile(pooled, 95))


# --- instances --------------------------------------------------------------------------------


def test_watershed_splits_two_touching_discs():
    # Radius-8 discs with centres 14 apart overlap in a neck: one connected component.
    mask = disc((40, 56), (20, 20), 8) | disc((40, 56), (20, 34), 8)
    components = label_instances(mask, split_touching=False)
    assert components.max() == 1
    labels = label_instances(mask)
    assert labels.dtype == np.uint16
    assert labels.max() == 2
    assert labels[20, 20] != labels[20, 34] and labels[20, 20] > 0 and labels[20, 34] > 0
    assert np.array_equal(labels > 0, mask)  # splitting loses no pixel
    # Each half is a disc (pi * 64 ~ 201 px) minus half the shared lens: similar sizes.
    sizes = np.bincount(labels.ravel())[1:]
    assert abs(int(sizes[0]) - int(sizes[1])) <= 10


def test_label_instances_keeps_elongated_nucleus_and_thin_objects_whole():
    rows, cols = np.indices((40, 60))
    ellipse = ((rows - 20) / 6) ** 2 + ((cols - 30) / 20) ** 2 <= 1  # 40 x 12 px nucleus
    assert label_instances(ellipse).max() == 1
    line = np.zeros((10, 50), dtype=bool)
    line[5, 2:42] = True  # 40 pixels, too thin for a distance dome: kept as its own seed
    assert label_instances(line).max() == 1


def test_label_instances_keeps_corner_touching_nuclei_apart():
    mask = square((14, 14), 1, 1, 6) | square((14, 14), 7, 7, 6)  # touch only at one corner
    # The grown seeds of the two squares meet diagonally at the corner; they must stay two seeds.
    labels = label_instances(mask, min_size=5)
    assert labels.max() == 2 and labels[3, 3] != labels[10, 10]


def test_label_instances_removes_small_objects_and_numbers_sequentially():
    mask = disc((40, 40), (12, 12), 6) | square((40, 40), 30, 30, 3)  # 3 x 3 = 9 px < min_size 30
    labels = label_instances(mask)
    assert labels.max() == 1 and not labels[30:33, 30:33].any()
    assert np.array_equal(np.unique(label_instances(mask, min_size=5)), [0, 1, 2])


# --- evaluation -------------------------------------------------------------------------------


def test_evaluate_pair_binary_0_255_against_0_1():
    gt = square((6, 6), 0, 0, 4).astype(np.uint8) * 255
    pred = square((6, 6), 0, 1, 4).astype(np.uint8)
    result = evaluate_pair(pred, gt, instances=False)
    # One connected instance on each side, so AJI = IoU = 12/20 (see the IoU test); F1 = 24/32.
    # HD: the rings are shifted by one column -> 1.
    # PQ: the one pair has IoU 0.6 > 0.5, so DQ 1, SQ 0.6; the prediction covers 12/16 > 50 % of the
    # ground-truth square, so the GlaS object F1 is 1.
    assert scores(result) == pytest.approx({"iou": 0.6, "f1": 0.75, "aji": 0.6, "pq": 0.6, "dq": 1.0, "sq": 0.6,
                                            "f1_object": 1.0, "hd": 1.0, "hd95": 1.0})
    assert scores(evaluate_pair(gt, gt, instances=False)) == PERFECT


def test_evaluate_pair_instances_flag_decides_what_aji_sees():
    gt = np.zeros((4, 8), dtype=np.uint16)
    gt[0:2, 0:2], gt[0:2, 2:4] = 1, 2  # two touching nuclei
    pred = np.zeros_like(gt)
    pred[0:2, 0:4] = 1  # one blob over both
    # As instances: the merge costs AJI 8/16 (see the merge test). As semantic masks, both sides are
    # one connected region, so AJI equals IoU = 1.
    assert evaluate_pair(pred, gt, instances=True)["aji"] == pytest.approx(0.5)
    assert evaluate_pair(pred, gt, instances=False)["aji"] == 1.0


def test_evaluate_pair_per_class_and_input_errors():
    gt = np.zeros((6, 6), dtype=np.uint8)
    gt[0:2, 0:2], gt[4:6, 4:6] = 1, 2
    pred = gt.copy()
    pred[4:6, 4:6] = 1  # class 2 predicted as class 1
    result = evaluate_pair(pred, gt, instances=False, num_classes=3)
    # Foreground is unchanged (both have the same 8 pixels > 0).
    assert result["iou"] == 1.0 and set(result["per_class"]) == {1, 2}
    # class 1: gt 4 px, pred 8 px, inter 4 -> IoU 4/8; class 2: pred empty -> 0 and HD inf.
    assert result["per_class"][1]["iou"] == pytest.approx(0.5)
    assert result["per_class"][2] == {"iou": 0.0, "f1": 0.0, "hd": math.inf, "hd95": math.inf}

    with pytest.raises(MaskInputError, match="num_classes=3"):
        evaluate_pair(gt * 100, gt, instances=False, num_classes=3)
    with pytest.raises(MaskInputError, match="instance labels have no classes"):
        evaluate_pair(gt, gt, instances=True, num_classes=3)
    with pytest.raises(MaskInputError, match="differs"):
        evaluate_pair(gt[:5], gt, instances=False)
    rgb = np.stack([gt * 255] * 3, axis=-1)
    assert evaluate_pair(rgb, gt, instances=False)["iou"] == 1.0  # equal channels: one is taken
    rgb[0, 0, 1] = 3
    with pytest.raises(MaskInputError, match="different R, G and B"):
        evaluate_pair(rgb, gt, instances=False)


def test_match_key_strips_one_suffix():
    assert match_key(Path("TCGA-XX_labels.tif")) == "TCGA-XX"
    assert match_key(Path("TCGA-XX_mask.png")) == "TCGA-XX"
    assert match_key(Path("TCGA-XX.png")) == "TCGA-XX"
    assert match_key(Path("TCGA-XX_instances.tif")) == "TCGA-XX"


def test_segment_output_folder_scores_labels_or_instances(tmp_path):
    """`genselfdiff segment --instances` writes X_labels.tif and X_instances.tif side by side: without
    --instances the labels are scored, with it the instance ids (two touching nuclei kept apart)."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt = np.zeros((16, 16), np.uint16)
    gt[2:8, 2:5], gt[2:8, 5:8] = 1, 2  # two touching nuclei
    iio.imwrite(gt_dir / "x.png", gt)
    tifffile.imwrite(pred_dir / "x_labels.tif", (gt > 0).astype(np.uint8))  # one merged blob
    tifffile.imwrite(pred_dir / "x_instances.tif", gt)  # split correctly
    semantic = evaluate_dirs(pred_dir, gt_dir)
    split = evaluate_dirs(pred_dir, gt_dir, instances=True)
    assert set(semantic["per_image"]) == set(split["per_image"]) == {"x"} and not semantic["errors"]
    assert split["per_image"]["x"]["aji"] == pytest.approx(1.0)
    assert semantic["per_image"]["x"]["iou"] == pytest.approx(1.0)


def test_evaluate_dirs_pairs_files_and_reports_problems(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    a = square((16, 16), 2, 2, 6)
    b = square((16, 16), 8, 8, 4)
    # a: PNG 0/255 ground truth vs a uint16 TIFF prediction (two instance ids) -> perfect overlap.
    iio.imwrite(gt_dir / "a.png", a.astype(np.uint8) * 255)
    a_labels = a.astype(np.uint16)
    a_labels[:, 5:] *= 2  # columns 2-4 are id 1, columns 5-7 id 2 (18 pixels each)
    tifffile.imwrite(pred_dir / "a_labels.tif", a_labels)
    # b: the prediction is empty -> IoU 0, AJI 0, HD inf.
    iio.imwrite(gt_dir / "b.png", b.astype(np.uint8) * 255)
    iio.imwrite(pred_dir / "b_mask.png", np.zeros((16, 16), dtype=np.uint8))
    # c: shapes differ -> an error for c only.
    iio.imwrite(gt_dir / "c.png", b.astype(np.uint8) * 255)
    tifffile.imwrite(pred_dir / "c_labels.tif", np.zeros((8, 8), dtype=np.uint16))
    # Partners missing on either side, and a non-image file that is ignored.
    iio.imwrite(pred_dir / "orphan_labels.png", np.zeros((16, 16), dtype=np.uint8))
    iio.imwrite(gt_dir / "lonely.png", np.zeros((16, 16), dtype=np.uint8))
    (gt_dir / "notes.txt").write_text("not an image")

    calls = []
    result = evaluate_dirs(pred_dir, gt_dir, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert set(result["per_image"]) == {"a", "b"}
    assert scores(result["per_image"]["a"]) == PERFECT
    assert result["per_image"]["b"]["iou"] == 0.0 and math.isinf(result["per_image"]["b"]["hd"])
    # Means: IoU (1 + 0) / 2; HD leaves out b's inf -> a's 0.0, and b is counted.
    assert result["mean"]["iou"] == pytest.approx(0.5)
    assert result["mean"]["hd"] == 0.0 and result["n_infinite_hd"] == 1
    assert set(result["errors"]) == {"c"} and "(8, 8)" in result["errors"]["c"]
    assert result["unmatched"] == {"pred": ["orphan_labels.png"], "gt": ["lonely.png"]}

    table = format_table(result)
    assert "mean (n=2)" in table and "inf" in table and "error: c:" in table
    assert "orphan_labels.png" in table and "lonely.png" in table

    # With instances=True the TIFF's two ids split nucleus a, which the 0/255 ground truth holds as
    # one 36-pixel instance: it picks id 1 (IoU 18/36, a tie with id 2 broken by the smaller id),
    # C = 18, U = 36; id 2 is unused, U += 18 -> AJI = 18 / 54, while IoU stays 1.
    as_instances = evaluate_dirs(pred_dir, gt_dir, instances=True)["per_image"]["a"]
    assert as_instances["iou"] == 1.0 and as_instances["aji"] == pytest.approx(18 / 54)


def test_evaluate_dirs_class_maps_average_per_class(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt = np.zeros((6, 6), dtype=np.uint8)
    gt[0:2, 0:2], gt[4:6, 4:6] = 1, 2
    iio.imwrite(gt_dir / "x.png", gt)
    iio.imwrite(pred_dir / "x_mask.png", gt)  # perfect
    wrong = gt.copy()
    wrong[4:6, 4:6] = 1
    iio.imwrite(gt_dir / "y.png", gt)
    iio.imwrite(pred_dir / "y_mask.png", wrong)  # class 2 predicted as class 1
    result = evaluate_dirs(pred_dir, gt_dir, num_classes=3)
    # Class 1 IoU: x 1.0, y 4/8 -> mean 0.75. Class 2: x 1.0, y 0.0 -> 0.5; its HD: x 0.0, y inf
    # (left out) -> 0.0.
    assert result["mean"]["per_class"][1]["iou"] == pytest.approx(0.75)
    assert result["mean"]["per_class"][2]["iou"] == pytest.approx(0.5)
    assert result["mean"]["per_class"][2]["hd"] == 0.0
    assert "class 2" in format_table(result)


# --- real data --------------------------------------------------------------------------------


@pytest.mark.data
def test_monuseg_instance_mask_against_itself_and_timing():
    folder = MONUSEG_TEST / "instance_masks"
    if not folder.is_dir():
        pytest.skip(f"MoNuSeg test instance masks not found at {folder} (../shared/data is absent)")
    from napari_genselfdiff.core.io.read import read_array

    gt = read_array(sorted(folder.glob("*.png"))[0])
    assert gt.shape == (1000, 1000)
    assert scores(evaluate_pair(gt, gt, instances=True)) == PERFECT

    # Erode every nucleus by one pixel: drop pixels that touch another label or the background.
    eroded = np.where(find_boundaries(gt, mode="inner"), 0, gt)
    start = time.process_time()  # CPU time: a loaded machine delays the test but does not inflate it
    result = evaluate_pair(eroded, gt, instances=True)
    elapsed = time.process_time() - start
    assert 0.5 < result["aji"] < 1.0 and 0.5 < result["iou"] < 1.0 and result["hd"] >= 1.0
    assert elapsed < 4.0, f"evaluate_pair took {elapsed:.2f} s of CPU on a 1000x1000 pair"


def test_instance_defaults_are_the_splitting_defaults_written_once():
    """bundle_model.py writes these into the bundled model's card; they are label_instances' own."""
    from napari_genselfdiff.core.defaults import SAMPLE_INSTANCES
    from napari_genselfdiff.core.io.read import read_array

    assert instance_defaults() == {"split_touching": True, "min_distance": 8.0, "min_size": 30, "h": 1.0}
    foreground = np.asarray(read_array(SAMPLE_INSTANCES)) > 0  # real expert nucleus outlines
    np.testing.assert_array_equal(label_instances(foreground, **instance_defaults()), label_instances(foreground))
