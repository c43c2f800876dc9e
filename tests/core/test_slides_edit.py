"""Correcting slide labels: napari cannot paint a multiscale Labels layer, so a region of the
store is opened as an in-memory Labels layer at its slide offset, painted, and written back to the
store's level 0 with the coarser levels regenerated under it, as one transaction
(core/io/labels_store.py: write_labels_region).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.errors import GenSelfDiffError
from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide
from napari_genselfdiff.core.io import labels_store
from napari_genselfdiff.core.io.labels_store import (
    EDIT_DIR,
    build_pyramid,
    create_labels_store,
    open_labels_store,
    read_labels_region,
    write_labels_region,
)
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide
from napari_genselfdiff.core.model_files import default_classes

CLASSES = [{"id": 0, "name": "background"}, {"id": 1, "name": "nucleus"}]


def _store(tmp_path, height=2500, width=3100, seed=0):
    """A store of 3 levels and 3 x 4 chunks at level 0, with random labels; the last chunk column empty."""
    store = create_labels_store(tmp_path / "x_labels.zarr", height, width, mpp=0.25, info={"classes": CLASSES},
                                classes=default_classes(["background", "nucleus"]))
    full = (np.random.default_rng(seed).random((height, width)) > 0.7).astype(np.uint8)
    full[:, 3072:] = 0
    store.level0[:] = full
    build_pyramid(store)
    return store.path, full


def _check_levels(path, full):
    store = open_labels_store(path)
    np.testing.assert_array_equal(np.asarray(store.level0), full)
    expected = full
    for level in store.arrays[1:]:
        expected = expected[::2, ::2]
        np.testing.assert_array_equal(np.asarray(level), expected)


def test_a_correction_lands_at_its_level0_place_and_the_coarser_levels_follow(tmp_path):
    path, full = _store(tmp_path)
    x, y = 1000, 1010  # across the chunk border at 1024
    patch = read_labels_region(open_labels_store(path), x, y, 100, 90).copy()
    patch[10:50, 20:90] = 1  # paint
    patch[60:70] = 0  # erase
    result = write_labels_region(path, x, y, patch, note="test")
    full[y:y + 90, x:x + 100] = patch
    _check_levels(path, full)
    assert result["region_xywh"] == (x + 0, y + 10, 100, 60) and result["changed_pixels"] > 0
    assert not (path / EDIT_DIR).exists()
    edits = open_labels_store(path).attrs["genselfdiff"]["edits"]
    assert edits[-1]["region_xywh"] == [x, y + 10, 100, 60] and edits[-1]["note"] == "test"
    # Unchanged corrections write nothing.
    assert write_labels_region(path, x, y, patch)["chunks"] == 0


def test_erasing_a_whole_chunk_removes_its_file(tmp_path):
    path, full = _store(tmp_path)
    chunk = path / "0" / "1" / "1"
    assert chunk.exists()
    write_labels_region(path, 1020, 1020, np.zeros((1100, 1100), np.uint8))
    full[1020:2120, 1020:2120] = 0
    _check_levels(path, full)
    assert not chunk.exists()  # all background: no file, as for glass
    write_labels_region(path, 3072, 0, np.ones((8, 8), np.uint8))  # a new chunk where there was none
    full[0:8, 3072:3080] = 1
    _check_levels(path, full)
    assert (path / "0" / "0" / "3").exists()


def test_bad_corrections_are_refused_and_write_nothing(tmp_path):
    path, full = _store(tmp_path)
    with pytest.raises(GenSelfDiffError, match="lies outside the labels \\(width 3100, height 2500"):
        write_labels_region(path, 3000, 0, np.ones((10, 200), np.uint8))
    with pytest.raises(GenSelfDiffError, match="label 3 is not a class of this store \\(0 background, 1 nucleus\\)"):
        write_labels_region(path, 0, 0, np.full((10, 20), 3, np.uint8))
    with pytest.raises(GenSelfDiffError, match="integer class ids"):
        write_labels_region(path, 0, 0, np.zeros((4, 4), np.float32))
    _check_levels(path, full)


def test_a_crash_before_the_manifest_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path, full = _store(tmp_path)
    from napari_genselfdiff.core.io import atomic

    def crash(*_a, **_k):
        raise KeyboardInterrupt  # the process dies before the manifest exists

    monkeypatch.setattr(atomic, "write_text_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        write_labels_region(path, 100, 100, np.ones((1500, 1500), np.uint8))
    assert (path / EDIT_DIR).exists()  # staged chunks, no manifest
    monkeypatch.undo()
    _check_levels(path, full)  # opening drops the unfinished correction
    assert not (path / EDIT_DIR).exists()


def test_a_crash_while_renaming_is_completed_on_the_next_open(tmp_path, monkeypatch):
    path, full = _store(tmp_path)
    real = labels_store._replace
    calls = {"n": 0}

    def crash_after_two(src, dst):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(labels_store, "_replace", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_labels_region(path, 100, 100, np.ones((1500, 1500), np.uint8))
    monkeypatch.undo()
    full[100:1600, 100:1600] = 1
    _check_levels(path, full)  # the manifest was written: the rest of the renames are done on open
    assert not (path / EDIT_DIR).exists()


def test_a_correction_on_a_segmented_synthetic_slide(tmp_path, make_model):
    slide = write_synthetic_slide(tmp_path / "s.svs", 600, 800, mpp=0.25, tissue_fraction=0.6, tile=128,
                                  n_levels=2, seed=4).path
    net, info, _ = make_model()
    result = segment_slide(net, info, slide, tmp_path, SlideSettings(
        inference=InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16), tissue=False))
    store = open_labels_store(result.labels_store)
    before = np.asarray(store.level0).copy()
    patch = read_labels_region(store, 300, 200, 64, 48).copy()
    patch[:] = 0
    patch[8:24, 16:40] = 1
    write_labels_region(result.labels_store, 300, 200, patch)
    after = np.asarray(open_labels_store(result.labels_store).level0)
    before[200:248, 300:364] = patch
    np.testing.assert_array_equal(after, before)
    assert after[208:224, 316:340].all() and not after[200:208, 300:364].any()


