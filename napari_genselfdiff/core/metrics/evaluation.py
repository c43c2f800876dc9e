"""Evaluate predicted masks against ground truth on WHOLE images: one pair, or two folders.

Every image is scored as a whole (never as an average of patches, unlike the paper's code) with:
  - "iou", "f1": foreground-vs-background pixel IoU and Dice/F1 (foreground = label > 0);
  - "aji": the Aggregated Jaccard Index of Kumar et al. 2017 on nucleus INSTANCES, which differs
    from IoU whenever nuclei are merged or split;
  - "pq", "dq", "sq": panoptic quality, detection and segmentation quality (instances paired at
    IoU > 0.5), and "f1_object": object-detection F1 by the GlaS rule (objects.py);
  - with ``glas``: "object_dice" and "object_hd", the GlaS contest's object Dice and object Hausdorff;
  - "hd", "hd95": Hausdorff distance and its pooled 95th percentile between the foreground
    boundaries, in pixels.
Class maps with more than two classes (`num_classes` > 2) also get per-class IoU, F1, HD and HD95.

Folder results give two summaries: "mean", the PER-IMAGE MEAN (what the MoNuSeg challenge ranks and
the default everywhere), and "pooled" for the count-based scores (AJI, PQ, DQ, SQ, object F1: counts
summed over all images before the ratio, as if the images were one). With ``by_prefix`` the same two
are also given per name prefix ("testA_1" -> "testA"), so GlaS testA and testB are reported apart.

Empty masks follow the rules of each metric (pixel.py, aji.py, objects.py, hausdorff.py): two empty masks agree
perfectly (IoU, F1, AJI 1.0; HD 0.0), one empty mask scores 0.0 and an infinite HD. Folder means leave
infinite distances out and report how many images had them, so one empty prediction neither hides
nor swamps the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..data.folders import INSTANCE_SUFFIX, match_key
from ..defaults import GEOJSON_SUFFIXES
from ..errors import GenSelfDiffError, MaskInputError
from ..io.masks import to_label_image  # noqa: F401 - re-exported (metrics/__init__, src_train/)
from ..io.read import IMAGE_SUFFIXES, read_array
from .hausdorff import hausdorff_and_hd95
from .objects import glas_scores, instance_counts, scores_from_counts
from .pixel import dice, iou, per_class_scores

METRICS = ("iou", "f1", "aji", "pq", "dq", "sq", "f1_object", "hd", "hd95")
"""Keys of the foreground scores of `evaluate_pair`, in table order."""

GLAS_METRICS = ("object_dice", "object_hd")
"""Keys `evaluate_pair` adds with ``glas``: the GlaS contest's object Dice and object Hausdorff."""

POOLED_METRICS = ("aji", "pq", "dq", "sq", "f1_object")
"""Scores that are also pooled over images (from counts summed over the images)."""

CLASS_METRICS = ("iou", "f1", "hd", "hd95")
"""Keys of each per-class entry of `evaluate_pair` (AJI is defined for nucleus instances only)."""

_TITLES = {"iou": "IoU", "f1": "F1", "aji": "AJI", "pq": "PQ", "dq": "DQ", "sq": "SQ", "f1_object": "F1obj",
           "hd": "HD", "hd95": "HD95", "object_dice": "ObjDice", "object_hd": "ObjHD"}

# 4-connectivity, as in inference/instances.label_instances: nuclei touching only at a corner stay apart.
_CONNECTIVITY = ndimage.generate_binary_structure(2, 1)


def _foreground_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """IoU, F1, HD and HD95 of two boolean masks of one shape."""
    hd, hd95 = hausdorff_and_hd95(pred, gt)
    return {"iou": iou(pred, gt), "f1": dice(pred, gt), "hd": hd, "hd95": hd95}


def evaluate_pair(
    pred: np.ndarray, gt: np.ndarray, *, instances: bool, num_classes: int | None = None, glas: bool = False
) -> dict[str, Any]:
    """Score one predicted mask against its ground truth.

    Args:
        pred: (H, W) predicted mask or labels (see `to_label_image` for accepted forms).
        gt: (H, W) ground truth of the same shape. A binary mask may be 0/1 or 0/255.
        instances: True: the label values of both pred and gt are instance ids (0 = background) and
            AJI uses them as given. False: the masks are semantic, and each connected foreground
            region (4-connectivity) is one instance for AJI; touching nuclei merged in a prediction
            then lower its AJI, as they should, but touching nuclei of a binary ground truth are
            merged too, so score against instance ground truth (MoNuSeg's instance_masks) when
            there is one.
        num_classes: for semantic class maps (instances=False), the number of classes K including
            background 0; K > 2 adds per-class scores for classes 1..K-1 (class 0 is background,
            scored by the foreground numbers). None or 2: binary masks, foreground = label > 0.
        glas: also score "object_dice" and "object_hd" (GlaS, Sirinukunwattana et al. 2017) on the
            same instances as AJI.

    Returns:
        {"iou", "f1", "aji", "pq", "dq", "sq", "f1_object", "hd", "hd95"} (+ "object_dice",
        "object_hd" with glas): floats (HD in pixels, inf when exactly one mask is empty); "counts":
        the instance counts (objects.instance_counts) that pooled scores are summed from; plus, when
        K > 2, "per_class": {class_id: {"iou", "f1", "hd", "hd95"}}.

    Raises:
        MaskInputError: the shapes differ, a mask cannot be read as labels, a class value is not
            below `num_classes`, or `num_classes` is given together with instances=True.
    """
    if instances and num_classes is not None:
        raise MaskInputError("num_classes applies to class maps; instance labels have no classes.")
    pred, gt = to_label_image(pred, "prediction"), to_label_image(gt, "ground truth")
    if pred.shape != gt.shape:
        raise MaskInputError(
            f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}; "
            "the prediction must be made on the same (unscaled) image."
        )
    pred_fg, gt_fg = pred > 0, gt > 0
    result: dict[str, Any] = _foreground_scores(pred_fg, gt_fg)
    if instances:
        pred_inst, gt_inst = pred, gt
    else:
        pred_inst = ndimage.label(pred_fg, structure=_CONNECTIVITY)[0]
        gt_inst = ndimage.label(gt_fg, structure=_CONNECTIVITY)[0]
    counts = instance_counts(pred_inst, gt_inst)
    result.update(scores_from_counts(counts))
    if glas:
        result.update(glas_scores(pred_inst, gt_inst))
    result = {key: result[key] for key in METRICS + (GLAS_METRICS if glas else ())}
    result["counts"] = counts

    if num_classes is not None and num_classes > 2:
        for name, labels in (("prediction", pred), ("ground truth", gt)):
            if labels.max(initial=0) >= num_classes:
                raise MaskInputError(
                    f"{name} has label value {labels.max()}, but num_classes={num_classes} allows "
                    f"0..{num_classes - 1}. Is it a 0/255 binary mask or an instance map?"
                )
        overlap = per_class_scores(pred, gt, num_classes)
        per_class = {}
        for k in range(1, num_classes):
            hd, hd95 = hausdorff_and_hd95(pred == k, gt == k)
            per_class[k] = {"iou": overlap[k]["iou"], "f1": overlap[k]["f1"], "hd": hd, "hd95": hd95}
        result["per_class"] = per_class
    return result


def _files_by_key(folder: Path, errors: dict[str, str], instances: bool = False,
                  suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Image files of a folder by match key; keys shared by several files go to `errors`.

    ``genselfdiff segment --instances`` writes "X_labels.tif" and "X_instances.tif" side by side:
    both have the key "X", and the instance file is the one scored with ``instances``, the labels
    file the one scored without.
    """
    if not folder.is_dir():
        raise MaskInputError(f"{folder}: no such folder.")
    by_key: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            by_key.setdefault(match_key(path), []).append(path)
    for key, paths in by_key.items():
        if len(paths) > 1:
            wanted = [p for p in paths if p.stem.lower().endswith(INSTANCE_SUFFIX) == instances]
            if wanted:
                by_key[key] = wanted
    for key, paths in by_key.items():
        if len(paths) > 1:
            errors[key] = (
                f"several files in {folder} pair by the name '{key}': "
                f"{', '.join(p.name for p in paths)}. Keep one."
            )
    return {key: paths[0] for key, paths in by_key.items() if len(paths) == 1}


def read_ground_truth(path: Path, shape: tuple[int, int], *, instances: bool,
                      class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground truth of a file for a prediction of (H, W) ``shape``: (labels, complete pixels or None).

    A mask file is read as it is (None: all pixels count). A QuPath GeoJSON file
    (:mod:`..annotations.qupath`) is rasterised over the prediction's frame: its object ids with
    ``instances``, else class ids matched to ``class_names`` (without names: 1 for every object);
    the second value is the complete pixels (inside the region annotations; all when there is none).
    """
    if path.suffix.lower() not in GEOJSON_SUFFIXES:
        return to_label_image(read_array(path), str(path)), None
    from ..annotations.qupath import read_geojson, training_target

    qfile = read_geojson(path)
    names = list(class_names or ["background", "object"])
    if not class_names:  # binary: every detection and cell is foreground, whatever its class
        for obj in qfile.objects:
            if obj.kind != "annotation":
                obj.class_name = None
    target = training_target(qfile, shape, names)
    gt = target.instances if instances else np.where(target.known, target.labels, 0)
    return gt, None if target.known.all() else target.known


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN if there are none): infinite distances are counted apart."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _metric_keys(entries: list[dict[str, Any]]) -> tuple[str, ...]:
    """The score keys of per-image results, in table order (GlaS keys only when they were scored)."""
    glas = bool(entries) and all(key in entries[0] for key in GLAS_METRICS)
    return METRICS + (GLAS_METRICS if glas else ())


def _mean(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each score over the per-image results of `evaluate_pair` (same keys as one result)."""
    means: dict[str, Any] = {key: _finite_mean([e[key] for e in entries]) for key in _metric_keys(entries)}
    if entries and "per_class" in entries[0]:
        means["per_class"] = {
            k: {key: _finite_mean([e["per_class"][k][key] for e in entries]) for key in CLASS_METRICS}
            for k in entries[0]["per_class"]
        }
    return means


def evaluate_dirs(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    instances: bool = False,
    num_classes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    class_names: list[str] | None = None,
    glas: bool = False,
    by_prefix: bool = False,
) -> dict[str, Any]:
    """Score every prediction in a folder against the ground truth of the same name.

    Files (.tif/.tiff/.png/.jpg/.jpeg/.bmp) are paired by `match_key`, so "TCGA-XX_labels.tif" in
    `pred_dir` pairs with "TCGA-XX.png" in `gt_dir`. A pair that cannot be scored (unreadable file,
    shapes that differ, a colour mask) is reported under "errors" and the others are still scored.

    Args:
        pred_dir: folder of predicted masks or labels.
        gt_dir: folder of ground-truth masks or labels.
        instances: whether label values are instance ids; see `evaluate_pair`.
        num_classes: number of classes of class maps; see `evaluate_pair`.
        progress: called as progress(done, total) after each pair, e.g. to drive a progress bar.
        glas: also score the GlaS object Dice and object Hausdorff; see `evaluate_pair`.
        by_prefix: also summarise per name prefix (GlaS "testA_*" and "testB_*" apart); see `summarize`.
        class_names: names of the classes (background first) that the classifications of QuPath
            GeoJSON ground truth (``.geojson`` files in ``gt_dir``) are matched to; without them every
            GeoJSON object is foreground 1. Outside a GeoJSON's region annotations (where its outlines
            are not complete) prediction and ground truth are both set to background, so only the
            regions are scored.

    Returns:
        {
          "per_image": {key: result of evaluate_pair},
          "mean": METRICS (+ GLAS_METRICS, + "per_class"): PER-IMAGE means over "per_image"
              (NaN if it is empty); infinite HD/HD95/object HD values are left out of the means,
          "pooled": POOLED_METRICS from the counts summed over all images,
          ("groups": {prefix: {"n", "mean", "pooled"}} with by_prefix,)
          "n_infinite_hd": number of images whose HD (and HD95) is infinite (one mask empty),
          "unmatched": {"pred": [file names], "gt": [file names]} with no partner,
          "errors": {key: message} for pairs that could not be scored,
        }

    Raises:
        MaskInputError: a folder does not exist, or `num_classes` is given with instances=True.
    """
    if instances and num_classes is not None:
        raise MaskInputError("num_classes applies to class maps; instance labels have no classes.")
    errors: dict[str, str] = {}
    preds = _files_by_key(Path(pred_dir), errors, instances)
    gts = _files_by_key(Path(gt_dir), errors, instances, IMAGE_SUFFIXES + GEOJSON_SUFFIXES)
    keys = sorted(preds.keys() & gts.keys())
    per_image: dict[str, dict[str, Any]] = {}
    for done, key in enumerate(keys, start=1):
        try:
            pred = to_label_image(read_array(preds[key]), str(preds[key]))
            gt, known = read_ground_truth(gts[key], pred.shape, instances=instances, class_names=class_names)
            if known is not None:
                pred = np.where(known, pred, 0)
            per_image[key] = evaluate_pair(pred, gt, instances=instances, num_classes=num_classes, glas=glas)
        except GenSelfDiffError as exc:  # the message names the file and the fix; go on with the rest
            errors[key] = f"{preds[key].name} vs {gts[key].name}: {exc}"
        if progress is not None:
            progress(done, len(keys))
    unmatched = {
        "pred": sorted(preds[k].name for k in preds.keys() - gts.keys() if k not in errors),
        "gt": sorted(gts[k].name for k in gts.keys() - preds.keys() if k not in errors),
    }
    return summarize(per_image, unmatched=unmatched, errors=errors, by_prefix=by_prefix)


def _pooled(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Count-based scores with the counts summed over the images (NaN when no image has counts)."""
    with_counts = [e["counts"] for e in entries if "counts" in e]
    if not with_counts:
        return {key: float("nan") for key in POOLED_METRICS}
    total = {key: sum(c[key] for c in with_counts) for key in with_counts[0]}
    return {key: value for key, value in scores_from_counts(total).items() if key in POOLED_METRICS}


def name_prefix(name: str) -> str:
    """The group of an image name for ``by_prefix``: the part before the first "_" ("testA_12" ->
    "testA"; a name without "_" is its own group)."""
    return name.split("_", 1)[0]


def summarize(
    per_image: dict[str, dict[str, Any]],
    *,
    unmatched: dict[str, list[str]] | None = None,
    errors: dict[str, str] | None = None,
    by_prefix: bool = False,
) -> dict[str, Any]:
    """Build the result of `evaluate_dirs` from per-image results of `evaluate_pair`.

    Used directly by code that scores arrays in memory (experiments, validation) so that their
    numbers are averaged exactly as `genselfdiff evaluate` averages them. "mean" is the per-image
    mean, "pooled" the count-based scores over all images as one; with ``by_prefix``, "groups" gives
    {prefix: {"n", "mean", "pooled"}} per `name_prefix` (GlaS testA / testB apart).
    """
    entries = list(per_image.values())
    result = {
        "per_image": per_image,
        "mean": _mean(entries),
        "pooled": _pooled(entries),
        "n_infinite_hd": sum(1 for e in entries if math.isinf(e["hd"])),
        "unmatched": unmatched or {"pred": [], "gt": []},
        "errors": errors or {},
    }
    if by_prefix:
        groups: dict[str, list[dict[str, Any]]] = {}
        for name, entry in per_image.items():
            groups.setdefault(name_prefix(name), []).append(entry)
        result["groups"] = {
            prefix: {"n": len(group), "mean": _mean(group), "pooled": _pooled(group)}
            for prefix, group in sorted(groups.items())
        }
    return result


def _values(scores: dict[str, Any]) -> list[float]:
    """All numbers of one result of `evaluate_pair` (or of a mean), per-class ones included."""
    nested = [v for entry in scores.get("per_class", {}).values() for v in entry.values()]
    return [scores[m] for m in METRICS if m in scores] + nested


def _row(name: str, scores: dict[str, float], keys: tuple[str, ...], width: int) -> str:
    """One table row: the name left-aligned, then each score in 9 columns (inf and nan as words; a
    score the row does not have, e.g. HD in a pooled row, as "-")."""
    return f"{name:<{width}}" + "".join(f"{scores[k]:9.4f}" if k in scores else f"{'-':>9}" for k in keys)


def scores_json(result: Any) -> str:
    """Scores as strict JSON text (what ``genselfdiff evaluate --json`` and ``src_train/evaluate.py``
    write): JSON has no infinity, so infinite/NaN floats (an infinite HD, an undefined mean) become
    null, and numpy scalars become Python numbers."""
    import json

    return json.dumps(_finite(result), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of an `evaluate_dirs` result, for a terminal or a log.

    Args:
        result: the dictionary returned by `evaluate_dirs`.

    Returns:
        One row per image, the per-image mean row and the pooled row (per prefix group first, when
        the result has "groups"), columns METRICS (+ GLAS_METRICS when scored), the per-class means of
        class maps, and notes on infinite distances, errors and unmatched files. No trailing newline.
    """
    per_image, mean = result["per_image"], result["mean"]
    keys = _metric_keys(list(per_image.values()))
    mean_name = f"mean (n={len(per_image)})"
    groups = result.get("groups", {})
    names = [len(key) for key in per_image] + [len(f"{p} pooled (n={g['n']})") for p, g in groups.items()]
    width = max([len("class (mean)"), len(mean_name) + 7] + names) + 1
    header = f"{'image':<{width}}" + "".join(f"{_TITLES[m]:>9}" for m in keys)
    rule = "-" * len(header)
    lines = [header, rule]
    lines += [_row(key, scores, keys, width) for key, scores in per_image.items()]
    lines.append(rule)
    for prefix, group in groups.items():
        lines.append(_row(f"{prefix} mean (n={group['n']})", group["mean"], keys, width))
        lines.append(_row(f"{prefix} pooled (n={group['n']})", group["pooled"], keys, width))
    lines.append(_row(mean_name, mean, keys, width))
    if "pooled" in result:
        lines.append(_row(f"pooled (n={len(per_image)})", result["pooled"], keys, width))
    lines.append(
        "mean: per-image mean (the MoNuSeg challenge's way, the figure to quote); pooled: counts summed "
        "over the images first. PQ/DQ/SQ pair instances at IoU > 0.5; F1obj: GlaS object F1 "
        "(> 50 % of a ground-truth object covered)."
    )
    if "per_class" in mean:
        lines += ["", f"{'class (mean)':<{width}}" + "".join(f"{_TITLES[m]:>9}" for m in CLASS_METRICS)]
        for k, scores in mean["per_class"].items():
            lines.append(_row(f"class {k}", scores, CLASS_METRICS, width))
    if result["n_infinite_hd"]:
        lines.append(
            f"HD/HD95 infinite (exactly one mask empty) for {result['n_infinite_hd']} image(s); "
            "left out of the HD/HD95 means."
        )
    if not per_image:
        lines.append("No image pairs were scored.")
    elif any(math.isnan(v) for v in _values(mean)):
        lines.append("nan: no image has a finite value (e.g. a class missing from every prediction).")
    lines += [f"error: {key}: {message}" for key, message in result["errors"].items()]
    for side, label in (("pred", "prediction"), ("gt", "ground truth")):
        if result["unmatched"][side]:
            lines.append(f"no partner for {label} file(s): {', '.join(result['unmatched'][side])}")
    return "\n".join(lines)
