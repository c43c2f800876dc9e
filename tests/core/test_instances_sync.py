"""Instances follow corrected labels: erased nuclei disappear, painted nuclei become
new instances, a nucleus cut by an erased line becomes two, untouched nuclei keep their ids; the
QuPath export of a pair stored with stale instances agrees with its corrected labels."""

from __future__ import annotations

import json

import numpy as np

from napari_genselfdiff.core.annotations import AnnotationSet, sync_instances
from napari_genselfdiff.core.export import export_annotation_set, rasterize_geometry
from napari_genselfdiff.core.model_files import default_classes

CLASSES = default_classes(["background", "nucleus"])


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _scene():
    """Three separate nuclei (ids 1, 2, 3) and their labels."""
    shape = (80, 120)
    instances = np.zeros(shape, np.uint16)
    for k, (cy, cx) in enumerate([(20, 20), (20, 60), (55, 30)], start=1):
        instances[_disc(shape, cy, cx, 8)] = k
    labels = (instances > 0).astype(np.uint8)
    return labels, instances


def test_unchanged_labels_keep_every_instance_exactly():
    labels, instances = _scene()
    out, report = sync_instances(labels, instances)
    assert np.array_equal(out, instances) and not report.changed


def test_erased_painted_and_cut_nuclei():
    labels, instances = _scene()
    labels = labels.copy()
    labels[instances == 2] = 0                       # a false nucleus erased entirely
    labels[10:31, 20] = 0                            # nucleus 1 cut in two by an erased line
    labels[_disc(labels.shape, 55, 95, 9)] = 1       # a missed nucleus painted
    labels[_disc(labels.shape, 55, 30, 8) & (np.mgrid[:80, :120][1] < 24)] = 0  # nucleus 3 trimmed
    labels[50:60, 38:40] = 1                         # nucleus 3 widened by a brush stroke (< 30 px)
    out, report = sync_instances(labels, instances)
    assert np.array_equal(out > 0, labels > 0)       # every nucleus pixel in exactly one object
    assert 2 not in out                              # the erased nucleus is gone
    assert report.removed == 1 and report.cut == 1 and report.trimmed == 1 and report.added == 1
    left, right = out[20, 15], out[20, 25]           # the two halves of nucleus 1
    assert sorted([int(left), int(right)]) == [1, 4]
    painted = out[_disc(labels.shape, 55, 95, 9)]
    assert len(np.unique(painted)) == 1 and painted[0] > 3  # one new instance, a new id
    assert np.all(out[50:60, 38:40] == 3)  # the stroke joined nucleus 3
    assert report.grown == 1


def test_painted_touching_nuclei_are_split_and_no_instances_means_all_new():
    shape = (60, 80)
    labels = (_disc(shape, 30, 25, 10) | _disc(shape, 30, 45, 10)).astype(np.uint8)  # two touching discs
    out, report = sync_instances(labels, np.zeros(shape, np.uint16))
    assert report.added == 2 and out[30, 25] != out[30, 45] and np.array_equal(out > 0, labels > 0)
    same, _ = sync_instances(labels, None)
    assert np.array_equal(same, out)


def test_specks_smaller_than_a_nucleus_touching_none_are_left_out_as_segmentation_does():
    labels, instances = _scene()
    labels = labels.copy()
    labels[70:73, 100:103] = 1                       # a 9-pixel speck (the model's debris, or a stray click)
    out, report = sync_instances(labels, instances)
    assert not out[70:73, 100:103].any() and report.debris == 1 and not report.changed
    assert np.array_equal(out, instances)


def test_classes_without_instances_stay_without():
    labels, instances = _scene()
    labels = labels.copy()
    labels[70:78, 100:118] = 2                       # "stroma": a class the instances never covered
    labels[_disc(labels.shape, 20, 100, 7)] = 1      # a painted nucleus
    out, report = sync_instances(labels, instances)
    assert not out[70:78, 100:118].any() and report.added == 1


def test_export_of_a_pair_with_stale_instances_agrees_with_its_labels(tmp_path):
    """A pair stored before instances followed the labels: its GeoJSON has no erased nucleus and
    holds the painted one."""
    labels, instances = _scene()
    corrected = labels.copy()
    corrected[instances == 1] = 0
    corrected[_disc(labels.shape, 60, 90, 8)] = 1
    aset = AnnotationSet(tmp_path / "set")
    image = np.zeros((*labels.shape, 3), np.uint8)
    aset.add(image, corrected, name="img", classes=CLASSES, instances=instances)
    report = export_annotation_set(aset, tmp_path / "out", formats=("geojson", "tif"))
    features = json.loads((tmp_path / "out" / "img.geojson").read_text())["features"]
    masks = [rasterize_geometry(f["geometry"], labels.shape) for f in features]
    assert len(masks) == 3
    assert not any(m[20, 20] for m in masks)         # the erased nucleus is not exported
    assert any(m[60, 90] for m in masks)             # the painted one is
    union = np.logical_or.reduce(masks)
    assert np.array_equal(union, corrected > 0)
    assert any("instances of img" in note and "1 removed" in note and "1 added" in note for note in report.notes)
