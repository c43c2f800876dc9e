"""Bad input for whole slides, where test_slides.py and test_slides_cli.py do not already
cover it: the napari readers on an unreadable slide or store, the slide widget without a resolution
or with shapes off the slide, and a full disk at the later stages of a run (the nuclei GeoJSON, the
pyramid) and while saving corrections. Each gives one clear sentence, and nothing written before is
lost.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from napari_genselfdiff.core.errors import GenSelfDiffError
from napari_genselfdiff.core.inference import InferenceSettings, slide_nuclei
from napari_genselfdiff.core.inference.slide import SlideSettings, SlideWriteError, segment_slide
from napari_genselfdiff.core.io import labels_store
from napari_genselfdiff.core.io.labels_store import EDIT_DIR, open_labels_store, read_resume, write_labels_region
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

FAST = InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16)


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    return write_synthetic_slide(root / "s.svs", 384, 512, mpp=0.25, tissue_fraction=0.6, tile=128, n_levels=2,
                                 seed=2).path


def _no_space(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["geojson", "pyramid"])
def test_a_full_disk_late_in_a_run_keeps_every_output_and_the_run_continues(small_slide, tmp_path, make_model,
                                                                            monkeypatch, where):
    net, info, _ = make_model()
    settings = SlideSettings(inference=FAST, tissue=False, instances=True, instance_block=128, instance_margin=48)
    out = tmp_path / "out"
    first = segment_slide(net, info, small_slide, out, settings)
    geojson_before = first.geojson.read_bytes()
    labels_before = np.asarray(open_labels_store(first.labels_store).level0)
    assert first.nuclei > 3

    if where == "geojson":  # the disk fills up after two nuclei were written to the new GeoJSON
        calls = {"n": 0}
        real = slide_nuclei._scale_geometry

        def fail_on_third(*a, **k):
            calls["n"] += 1
            if calls["n"] > 2:
                _no_space()
            return real(*a, **k)

        monkeypatch.setattr(slide_nuclei, "_scale_geometry", fail_on_third)
        stage = "writing the nuclei GeoJSON"
    else:
        monkeypatch.setattr(labels_store, "build_pyramid", _no_space)
        stage = "building the coarser levels of the store"
    with pytest.raises(SlideWriteError, match=f"the disk is full while {stage}. Every chunk written so far is kept "
                                              "in .*s_labels.zarr.partial .*existing outputs were not touched.*"
                                              "run the same command again: it continues"):
        segment_slide(net, info, small_slide, out, settings, overwrite=True)
    monkeypatch.undo()
    # The earlier outputs are intact, and no half-written file is left beside them.
    assert first.geojson.read_bytes() == geojson_before
    np.testing.assert_array_equal(np.asarray(open_labels_store(first.labels_store).level0), labels_before)
    names = {p.name for p in out.iterdir()}
    # (After the nuclei stage, the new GeoJSON waits as s_nuclei.geojson.partial, renamed only at the end.)
    assert names - {"s_nuclei.geojson.partial"} == {"s_labels.zarr", "s_labels.zarr.partial", "s_nuclei.geojson"}
    assert ("s_nuclei.geojson.partial" in names) == (where == "pyramid")
    partial = open_labels_store(out / "s_labels.zarr.partial")
    assert not partial.complete and "No space left" in partial.attrs["genselfdiff"]["failed"]
    assert sum(read_resume(partial.path)["bands"].values()) > 0

    # With space again, the same run continues: every tile was done, none is computed again.
    calls = {"n": 0}
    hook = net.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        again = segment_slide(net, info, small_slide, out, settings, overwrite=True)
    finally:
        hook.remove()
    assert calls["n"] == 0 and again.tiles_resumed == again.tiles
    assert again.geojson.read_bytes() == geojson_before
    np.testing.assert_array_equal(np.asarray(open_labels_store(again.labels_store).level0), labels_before)


def test_a_full_disk_when_a_run_starts_is_one_sentence(small_slide, tmp_path, make_model, monkeypatch):
    net, info, _ = make_model()
    monkeypatch.setattr(labels_store, "write_resume", _no_space)
    with pytest.raises(SlideWriteError, match="cannot write .*s_labels.zarr.partial: the disk is full"):
        segment_slide(net, info, small_slide, tmp_path, SlideSettings(inference=FAST, region=(0, 0, 64, 64)))


def test_a_full_disk_while_saving_corrections_leaves_the_store_unchanged(small_slide, tmp_path, make_model,
                                                                         monkeypatch):
    net, info, _ = make_model()
    result = segment_slide(net, info, small_slide, tmp_path, SlideSettings(inference=FAST, tissue=False))
    before = [np.asarray(a).copy() for a in open_labels_store(result.labels_store).arrays]
    from napari_genselfdiff.core.io import atomic

    monkeypatch.setattr(atomic, "write_text_atomic", _no_space)  # the manifest cannot be written
    with pytest.raises(GenSelfDiffError, match="the disk is full while saving the corrections; the store is "
                                               "unchanged. Free some space and save again."):
        write_labels_region(result.labels_store, 10, 10, np.ones((50, 60), np.uint8))
    monkeypatch.undo()
    assert not (result.labels_store / EDIT_DIR).exists()
    for old, new in zip(before, open_labels_store(result.labels_store).arrays):
        np.testing.assert_array_equal(np.asarray(new), old)


