"""The annotation set folder: add / list / remove / reload, snapshots, and what a crash leaves behind."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from napari_genselfdiff.core.annotations import INDEX_NAME, AnnotationSet, AnnotationSetError
from napari_genselfdiff.core.errors import MaskInputError
from napari_genselfdiff.core.model_files import default_classes

from conftest import random_pair

CLASSES = default_classes(["background", "nucleus"])


def test_add_list_load_remove_reload(tmp_path):
    aset = AnnotationSet(tmp_path / "set")
    assert len(aset) == 0 and (tmp_path / "set" / INDEX_NAME).is_file()
    image, labels = random_pair(0)
    inst = labels.astype(np.uint16) * 3
    first = aset.add(image, labels, name="slide A", classes=CLASSES, instances=inst, extra={"model": "m.safetensors"})
    second = aset.add(*random_pair(1), name="slide B")
    assert [p.id for p in aset.pairs] == ["0001", "0002"]
    assert second.classes == CLASSES  # the set's classes by default
    got_image, got_labels = aset.load(first.id)
    assert got_image.dtype == np.uint8 and np.array_equal(got_image, image)
    assert np.array_equal(got_labels, labels)
    assert np.array_equal(aset.load_instances(first.id), inst)
    assert aset.load_instances(second.id) is None

    reopened = AnnotationSet(tmp_path / "set")
    assert [(p.id, p.name, p.shape) for p in reopened.pairs] == [("0001", "slide A", (24, 32)), ("0002", "slide B", (24, 32))]
    assert reopened.pairs[0].extra["model"] == "m.safetensors" and reopened.classes == CLASSES
    assert reopened.repairs == []

    reopened.remove("0001")
    assert [p.id for p in reopened.pairs] == ["0002"]
    assert not (tmp_path / "set" / "pairs" / "0001").exists()
    third = reopened.add(*random_pair(2), name="slide C")
    assert third.id == "0003"  # ids are never reused
    assert [p.id for p in AnnotationSet(tmp_path / "set").pairs] == ["0002", "0003"]
    pairs = AnnotationSet(tmp_path / "set").training_pairs()
    assert len(pairs) == 2 and pairs[0][0].shape == (24, 32, 3)


def test_snapshot_is_a_copy(tmp_path):
    aset = AnnotationSet(tmp_path)
    image, labels = random_pair(0)
    pair = aset.add(image, labels, name="x")
    labels[:] = 9  # the user keeps editing the layer after marking it
    image[:] = 0
    stored_image, stored_labels = aset.load(pair.id)
    assert stored_labels.max() <= 1 and stored_image.max() > 0


def test_shape_mismatch_and_bad_labels_are_refused(tmp_path):
    aset = AnnotationSet(tmp_path)
    image, _ = random_pair(0, (24, 32))
    with pytest.raises(MaskInputError, match=r"shape \(20, 32\) but the image is \(24, 32\)"):
        aset.add(image, np.zeros((20, 32), np.uint8), name="x")
    with pytest.raises(MaskInputError, match="integer"):
        aset.add(image, np.zeros((24, 32), np.float32), name="x")
    with pytest.raises(MaskInputError, match="negative"):
        aset.add(image, np.full((24, 32), -1, np.int32), name="x")
    assert len(aset) == 0 and not list((tmp_path / "pairs").glob("*"))


def test_crash_between_pair_and_index_is_recovered(tmp_path):
    aset = AnnotationSet(tmp_path)
    aset.add(*random_pair(0), name="kept")
    aset.add(*random_pair(1), name="not yet indexed")
    # Simulate a crash after the pair folder was renamed into place but before the index was written.
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    index["pairs"] = index["pairs"][:1]
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    # ... and a half-written pair and a half-removed pair.
    (tmp_path / "pairs" / ".tmp-0003").mkdir()
    (tmp_path / "pairs" / ".tmp-0003" / "image.tif").write_bytes(b"partial")
    shutil.copytree(tmp_path / "pairs" / "0001", tmp_path / "pairs" / ".removed-0004")
    reopened = AnnotationSet(tmp_path)
    assert [p.name for p in reopened.pairs] == ["kept", "not yet indexed"]
    assert any("recovered" in r for r in reopened.repairs)
    assert not (tmp_path / "pairs" / ".tmp-0003").exists() and not (tmp_path / "pairs" / ".removed-0004").exists()
    assert len(json.loads((tmp_path / INDEX_NAME).read_text())["pairs"]) == 2  # the index is repaired on disk
    assert reopened.add(*random_pair(2), name="next").id == "0003"


def test_lost_or_corrupt_index_is_rebuilt(tmp_path):
    aset = AnnotationSet(tmp_path)
    aset.add(*random_pair(0), name="a")
    (tmp_path / INDEX_NAME).write_text("{ not json")
    assert [p.name for p in AnnotationSet(tmp_path).pairs] == ["a"]
    os.remove(tmp_path / INDEX_NAME)
    assert [p.name for p in AnnotationSet(tmp_path).pairs] == ["a"]
    shutil.rmtree(tmp_path / "pairs" / "0001")
    reopened = AnnotationSet(tmp_path)
    assert len(reopened) == 0


def test_unusable_folders(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(AnnotationSetError, match="is a file, not a folder"):
        AnnotationSet(blocker)
    with pytest.raises(AnnotationSetError, match="cannot create the annotation set folder"):
        AnnotationSet(blocker / "sub")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / INDEX_NAME).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(AnnotationSetError, match="not a napari-genselfdiff annotation set"):
        AnnotationSet(tmp_path / "other")
    with pytest.raises(AnnotationSetError, match="no pair"):
        AnnotationSet(tmp_path / "fresh").remove("0001")
