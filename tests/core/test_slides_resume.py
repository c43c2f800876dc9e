"""Continuing an interrupted slide segmentation: a cancelled, killed or disk-full run leaves
``<stem>_labels.zarr.partial`` with a resume record; the same run again continues it and gives the
labels of an uninterrupted run; a run with other settings is refused; ``restart`` starts over.

Slides are synthetic (core/io/synthetic_slide.py), the network is the "micro" U-Net of conftest.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.slide import (
    ResumeError,
    SlideSettings,
    SlideWriteError,
    segment_slide,
    segment_slide_progressive,
)
from napari_genselfdiff.core.io.labels_store import RESUME_FILE, open_labels_store, read_resume

FAST = InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16)
ROOT = Path(__file__).resolve().parents[2]


def _forward_counter(net):
    calls = {"n": 0}

    def count(_m, args):
        calls["n"] += int(args[0].shape[0])

    return calls, net.register_forward_pre_hook(count)


def _cancel_after(gen, tiles: int) -> dict:
    """Run a slide generator until ``tiles`` tiles are done, then close it (what Cancel does)."""
    for event in gen:
        if event["stage"] == "tiles" and event["done"] >= tiles:
            gen.close()
            return event
    raise AssertionError("the run ended before it could be cancelled")


@pytest.mark.parametrize(
    "which, settings",
    [
        ("svs", SlideSettings(inference=FAST, tissue=False)),
        # Narrow bands: the columns are done in several strips; the tissue mask skips tiles.
        ("svs", SlideSettings(inference=InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16,
                                                          max_band_width=300))),
        ("half", SlideSettings(inference=FAST, tissue=False, region=(40, 20, 300, 250))),
    ],
    ids=["one-strip", "strips-and-tissue", "resampled-region"],
)
def test_a_cancelled_run_continues_to_the_labels_of_an_uninterrupted_one(slide_files, tmp_path, make_model,
                                                                         which, settings):
    net, info, _ = make_model()
    slide = slide_files[which]
    reference = segment_slide(net, info, slide, tmp_path / "ref", settings)
    expected = np.asarray(open_labels_store(reference.labels_store).level0)
    assert expected.any()

    out = tmp_path / "run"
    _cancel_after(segment_slide_progressive(net, info, slide, out, settings), reference.tiles // 2)
    partial = out / f"{slide_files[which].stem}_labels.zarr.partial"
    record = read_resume(partial)
    assert record is not None and sum(record["bands"].values()) > 0, record
    assert not (out / f"{slide.stem}_labels.zarr").exists()
    kept = np.asarray(open_labels_store(partial).level0).copy()

    calls, hook = _forward_counter(net)
    try:
        result = segment_slide(net, info, slide, out, settings)
    finally:
        hook.remove()
    assert 0 < result.tiles_resumed < result.tiles == reference.tiles
    assert any("continued an interrupted run" in n for n in result.notes)
    # Only what was left (plus the tile rows above it, for the blending) was computed.
    assert calls["n"] < reference.tiles
    labels = np.asarray(open_labels_store(result.labels_store).level0)
    np.testing.assert_array_equal(labels, expected)
    if which == "svs":  # (the resampled run writes level 0 only when mapping back, after the tiles)
        assert kept.any()
        written = kept > 0
        np.testing.assert_array_equal(labels[written], kept[written])  # nothing written before was lost
    store = open_labels_store(result.labels_store)
    assert store.complete and store.attrs["genselfdiff"]["tiles_resumed"] == result.tiles_resumed
    assert not (result.labels_store / RESUME_FILE).exists() and not partial.exists()
    assert not (result.labels_store / "model_resolution").exists()


def test_other_settings_are_refused_and_restart_starts_over(slide_files, tmp_path, make_model):
    net, info, _ = make_model()
    other_net, other_info, _ = make_model(name="other", seed=1)
    settings = SlideSettings(inference=FAST, tissue=False)
    slide = slide_files["svs"]
    _cancel_after(segment_slide_progressive(net, info, slide, tmp_path, settings), 10)
    partial = tmp_path / "s_labels.zarr.partial"
    before = (partial / RESUME_FILE).read_bytes()

    with pytest.raises(ResumeError, match=r"unfinished run with other settings \(model .*\).*--restart"):
        segment_slide(other_net, other_info, slide, tmp_path, settings)
    bigger = SlideSettings(inference=InferenceSettings(device="cpu", precision="fp32", tile=256, overlap=16),
                           tissue=False)
    with pytest.raises(ResumeError, match="tile: 128 there, 256 now"):
        segment_slide(net, info, slide, tmp_path, bigger)
    flipped = SlideSettings(inference=dataclasses.replace(FAST, flips=True), tissue=False)
    with pytest.raises(ResumeError, match=r"test-time flips \(--flips\): off there, on now"):
        segment_slide(net, info, slide, tmp_path, flipped)  # a half-averaged slide would mix two kinds of tiles
    assert segment_slide(net, info, slide, tmp_path / "f", flipped).flips  # and a finished one says what it did
    with pytest.raises(ResumeError, match=r"region \(x, y, w, h\): \[0, 0, 800, 600\] there, \[0, 0, 64, 64\] now"):
        segment_slide(net, info, slide, tmp_path, SlideSettings(inference=FAST, tissue=False, region=(0, 0, 64, 64)))
    # Refusing touched nothing.
    assert (partial / RESUME_FILE).read_bytes() == before

    # The same model loaded again from its file is the same run.
    from napari_genselfdiff.core.model_files import load_model

    again_net, again_info = load_model(info.path)
    result = segment_slide(again_net, again_info, slide, tmp_path, settings)
    assert result.tiles_resumed > 0

    # restart: the other model's run replaces an unfinished one from scratch.
    _cancel_after(segment_slide_progressive(net, info, slide, tmp_path / "b", settings), 10)
    fresh = segment_slide(other_net, other_info, slide, tmp_path / "b", settings, restart=True)
    assert fresh.tiles_resumed == 0 and any("discarded the unfinished" in n for n in fresh.notes)
    expected = np.asarray(open_labels_store(segment_slide(other_net, other_info, slide, tmp_path / "c",
                                                          settings).labels_store).level0)
    np.testing.assert_array_equal(np.asarray(open_labels_store(fresh.labels_store).level0), expected)


def test_a_full_disk_run_continues_once_there_is_space(slide_files, tmp_path, make_model, disk_full_after):
    net, info, _ = make_model()
    settings = SlideSettings(inference=FAST, tissue=False)
    expected = np.asarray(open_labels_store(segment_slide(net, info, slide_files["svs"], tmp_path / "ref",
                                                          settings).labels_store).level0)
    with disk_full_after(3), pytest.raises(SlideWriteError, match="disk is full.*run the same command again: it continues"):
        segment_slide(net, info, slide_files["svs"], tmp_path, settings)
    assert read_resume(tmp_path / "s_labels.zarr.partial")["bands"] == {"0": 3}
    result = segment_slide(net, info, slide_files["svs"], tmp_path, settings)
    assert result.tiles_resumed > 0
    np.testing.assert_array_equal(np.asarray(open_labels_store(result.labels_store).level0), expected)


CHILD = """
import sys, time
from napari_genselfdiff.core.io import labels_store
real = labels_store.write_resume
def slow(path, record):
    real(path, record)
    print("bands", sum(record["bands"].values()), flush=True)
    time.sleep(0.5)  # a window for the parent's kill, after the record was written
labels_store.write_resume = slow
from napari_genselfdiff.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_cli_run_is_continued_by_the_same_command(slide_files, tmp_path, make_model, capsys):
    from napari_genselfdiff.cli.main import main

    net, info, model = make_model()
    argv = ["segment", str(slide_files["svs"]), "--model", str(model), "--out", str(tmp_path / "out"),
            "--no-tissue-mask", "--tile", "128", "--overlap", "16", "--device", "cpu", "--precision", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("bands") and int(line.split()[1]) >= 2:
                child.send_signal(signal.SIGKILL)  # mid-run: 2 of 6 bands written
                break
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    partial = tmp_path / "out" / "s_labels.zarr.partial"
    assert read_resume(partial)["bands"] == {"0": 2}
    kept = np.asarray(open_labels_store(partial).level0).copy()
    assert kept.any() and not (tmp_path / "out" / "s_labels.zarr").exists()

    # Other settings: refused with what differs; nothing touched.
    code = main([*argv[:-8], "--tile", "256", "--overlap", "16", "--device", "cpu", "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 1 and "other settings (tile: 128 there, 256 now)" in err and "--restart" in err
    assert read_resume(partial)["bands"] == {"0": 2}

    # The same command continues where the killed run stopped.
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "continued an interrupted run" in out
    store = open_labels_store(tmp_path / "out" / "s_labels.zarr")
    labels = np.asarray(store.level0)
    written = kept > 0
    np.testing.assert_array_equal(labels[written], kept[written])
    reference = segment_slide(net, info, slide_files["svs"], tmp_path / "ref", SlideSettings(inference=FAST, tissue=False))
    np.testing.assert_array_equal(labels, np.asarray(open_labels_store(reference.labels_store).level0))
    assert json.loads(json.dumps(store.attrs["genselfdiff"]))["resumed_runs"] == 1


