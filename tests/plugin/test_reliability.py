"""Nothing lost under faults: kill -9 while the annotation set is written, kill -9 of the
training child in mid-run and a resume from its last checkpoint. The GUI-side checks (edits never
overwritten, messages for bad input) are in tests/plugin/test_plugin_partial.py. See docs/reliability.md."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_genselfdiff.core.annotations import AnnotationSet

#: the child: adds pairs with content derived from their number, prints each id once it is stored
WRITER = r"""
import sys, numpy as np
from napari_genselfdiff.core.annotations import AnnotationSet
aset = AnnotationSet(sys.argv[1])
k = int(sys.argv[2])
while True:
    rng = np.random.default_rng(k)
    image = rng.integers(0, 255, (384, 384, 3), dtype=np.uint8)
    labels = (image[..., 0] > 128).astype(np.uint8)
    regions = [[[5, 5], [5, 60], [40, 60]]] if k % 2 else None
    pair = aset.add(image, labels, name=f"img{k}", regions=regions)
    print(pair.id, k, flush=True)
    k += 1
"""


def _expected(k: int):
    image = np.random.default_rng(k).integers(0, 255, (384, 384, 3), dtype=np.uint8)
    return image, (image[..., 0] > 128).astype(np.uint8)


def test_kill_9_while_the_annotation_set_is_written_leaves_every_complete_pair_and_no_half_pair(tmp_path):
    folder = tmp_path / "set"
    confirmed: dict[str, int] = {}
    rng = np.random.default_rng(0)
    k = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(k)], stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(2):  # two pairs confirmed, then a kill at a random moment of the next writes
                line = proc.stdout.readline()
                assert line, "the writer died before storing a pair"
                pid, number = line.split()
                confirmed[pid] = int(number)
            time.sleep(float(rng.uniform(0.0, 0.25)))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for line in proc.stdout.read().split("\n"):  # pairs it confirmed before the kill
            if line.strip():
                pid, number = line.split()
                confirmed[pid] = int(number)
        proc.stdout.close()
        aset = AnnotationSet(folder)  # "restart": reload, repairing what the kill left
        ids = [p.id for p in aset.pairs]
        assert set(confirmed) <= set(ids), (round_, confirmed, ids, aset.repairs)
        for pair in aset.pairs:  # every listed pair is whole and right; at most the pair in flight is added
            number = int(pair.name[3:])
            image, labels = aset.load(pair.id)
            want_image, want_labels = _expected(number)
            assert np.array_equal(image, want_image) and np.array_equal(labels, want_labels)
            assert (pair.regions is not None) == bool(number % 2)
        assert len(ids) <= len(confirmed) + round_ + 1
        assert not [p for p in aset.pairs_dir.iterdir() if p.name.startswith(".")]  # no half pair left behind
        k = max(int(p.name[3:]) for p in aset.pairs) + 1


@pytest.mark.slow
def test_kill_9_of_the_training_child_is_reported_and_resume_continues_from_the_last_checkpoint(tmp_path, monkeypatch):
    from napari_genselfdiff.core.training import FinetuneConfig, finetune, read_metrics
    from napari_genselfdiff.plugin import _subprocess

    from conftest import micro_config

    spawned = []
    real_spawn = _subprocess._spawn
    monkeypatch.setattr(_subprocess, "_spawn", lambda: spawned.append(real_spawn()) or spawned[-1])
    monkeypatch.setattr(_subprocess, "_idle", [])
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    labels = (image[..., 0] > 128).astype(np.uint8)
    run_dir = tmp_path / "run"

    def config(**kw):
        return FinetuneConfig(pairs=[("a", image, labels)], out_dir=str(run_dir), arch=micro_config(), steps=400,
                              batch=2, patch_size=32, stride=16, val_fraction=0, checkpoint_every=2, validate_every=0,
                              device="cpu", precision="fp32", **kw)

    gen = _subprocess.train_in_subprocess("finetune", config(), None)
    steps = []
    with pytest.raises(RuntimeError) as error:
        for event in gen:
            if event.kind == "step":
                steps.append(event.step)
            if event.kind == "checkpoint" and event.step >= 4 and spawned[0].poll() is None:
                os.kill(spawned[0].pid, signal.SIGKILL)  # mid-run: the next steps are under way
    message = str(error.value)
    assert "SIGKILL" in message and "last checkpoint (step" in message, message
    saved = int(message.split("last checkpoint (step ")[1].split(")")[0])
    assert saved >= 4 and saved % 2 == 0 and saved <= max(steps) + 1

    # Resume: the run folder's latest checkpoint, the step counter and the loss log pick up there.
    events = []
    gen = finetune(config(resume=True))
    gen_steps = saved + 3
    for event in gen:
        events.append(event)
        if event.kind == "step" and event.step >= gen_steps:
            break
    gen.close()
    start = next(e for e in events if e.kind == "start")
    assert f"resumed after step {saved}" in start.message
    first = next(e for e in events if e.kind == "step")
    assert first.step == saved + 1 and first.loss is not None and np.isfinite(first.loss)
    logged = [row["step"] for row in read_metrics(run_dir) if row.get("kind") == "step"]
    assert logged == sorted(set(logged)) and logged[-1] >= saved + 1  # one record per step, no repeats
