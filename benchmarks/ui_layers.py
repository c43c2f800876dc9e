"""GUI stalls when the widget adds a segmentation's result layers, and when a fine-tune switches the model.

    xvfb-run -a python benchmarks/ui_layers.py [--repeats 5] [--size 4096] [--profile] [--out FILE.jsonl]

Drives the real dock widget in a shown napari viewer (Xvfb on a headless machine), with a 10 ms QTimer
on the main thread recording every tick; a stall is the largest gap between two ticks.

- ``sample``: the bundled 512x512 sample segmented by the Segment panel with the bundled model
  (labels, nuclei, uncertainty map), through its thread worker, as a click does. The figure is the
  largest gap from the result reaching the main thread until the layers have been drawn (the
  ``settle`` window); the largest gap of the whole run (segmentation included) is given beside it.
  The first result of the session is reported apart from the later ones (each later run adds new
  layers: the previous ones are removed first).
- ``large``: the same for a ``--size``-squared image (the sample mirrored): the Segment panel runs,
  but its core generator is replaced by one that yields a precomputed result of that size (labels,
  nuclei from ``scipy.ndimage.label``, an uncertainty map), so only the adding is measured, not
  minutes of inference.
- ``finetune``: the Fine-tune panel's Start (configuration from a 3-pair annotation set, the job
  launched) and the end of its run (the switch to the new model, and the re-segmentation of an open
  64x64 image it offers, accepted); the training child is replaced by a generator that returns a
  model file (a copy of the bundled model, a new file each time) at once.

With ``--profile`` each case's first repeat is also run under cProfile on the main thread (from
the result's arrival to the end of the settle window) and the top functions by cumulative time are
printed (waiting in the event loop left out). Medians over the repeats; nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Emitter, test_image  # noqa: E402

SETTLE_S = 1.0  # the event loop runs this long after the result (paints, thumbnails, deferred work)
PSTATS_DIR: Path | None = None  # --pstats: where each profiled case's cProfile file goes


class TickLog:
    """A 10 ms QTimer on the main thread recording the time of every tick."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks = []
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def max_gap_ms(self, lo: float = float("-inf"), hi: float = float("inf")) -> tuple[float, float]:
        """The largest gap between ticks that overlaps ``[lo, hi]``, in ms, and when it began (s after lo)."""
        best, at = 0.0, 0.0
        for a, b in zip(self.ticks, self.ticks[1:]):
            if b >= lo and a <= hi and (b - a) * 1000.0 > best:
                best, at = (b - a) * 1000.0, a - lo
        return best, at


def pump(seconds: float) -> None:
    from qtpy.QtTest import QTest

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QTest.qWait(5)


def wait_until(condition, timeout: float, what: str) -> None:
    from napari_genselfdiff.plugin._testing import wait_for

    wait_for(condition, timeout, what)


class Profiler:
    """cProfile on the main thread, switched on from inside a handler and off after the settle window."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.profile: cProfile.Profile | None = None

    def start(self) -> None:
        self.profile = cProfile.Profile()
        self.profile.enable()

    def stop(self) -> None:
        if self.profile is not None:
            self.profile.disable()

    def dump(self) -> None:
        if self.profile is not None and PSTATS_DIR is not None:
            PSTATS_DIR.mkdir(parents=True, exist_ok=True)
            self.profile.dump_stats(str(PSTATS_DIR / f"{self.name}.prof"))

    def top(self, n: int = 30) -> list[dict]:
        """Functions by cumulative time, the event-loop waits (and this script) left out."""
        if self.profile is None:
            return []
        self.dump()
        stats = pstats.Stats(self.profile)
        rows = []
        for (file, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{_short(file)}:{line}:{func}"
            if any(word in where for word in ("qWait", "ui_layers.py", "_testing.py", "disable' of", "~:0:<built-in method builtins.exec>")):
                continue
            rows.append({"function": where, "cum_ms": round(cumtime * 1000, 1), "own_ms": round(tottime * 1000, 1),
                         "calls": calls})
        rows.sort(key=lambda r: -r["cum_ms"])
        return rows[:n]


def _short(file: str) -> str:
    for marker in ("site-packages/", "napari_genselfdiff/"):
        if marker in file:
            return ("napari_genselfdiff/" if marker == "napari_genselfdiff/" else "") + file.split(marker, 1)[1]
    return file


def _viewer_and_widget(tmp: Path):
    os.environ["GENSELFDIFF_CONFIG_DIR"] = str(tmp / "config")
    os.environ["GENSELFDIFF_DATA_DIR"] = str(tmp / "data")
    os.environ.pop("GENSELFDIFF_NOTHREADS", None)
    import napari

    from napari_genselfdiff.core.model_files import bundled_model_path
    from napari_genselfdiff.plugin._testing import open_widget

    viewer = napari.Viewer(show=True)
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")
    widget.close_policy = "stop"
    assert widget.model_panel.load(bundled_model_path())
    widget.state.ask = lambda title, text: False  # no dialogs (re-segment offers declined)
    pump(0.5)
    return viewer, widget


def _remove_results(viewer) -> None:
    from napari_genselfdiff.plugin._layers import layer_meta

    for layer in [lay for lay in viewer.layers if layer_meta(lay).get("kind") in ("classes", "instances", "uncertainty")]:
        viewer.layers.remove(layer)
    pump(0.2)


def _segment_once(viewer, widget, image_layer, ticks: TickLog, profiler: Profiler | None) -> dict:
    """One Segment-panel run of ``image_layer``: gaps of the whole run and of the adding window."""
    panel = widget.segment_panel
    marks: dict[str, float] = {}
    original = panel._on_event

    def on_event(event):
        if event.get("kind") == "result":
            marks["result"] = time.perf_counter()
            if profiler is not None:
                profiler.start()
            original(event)
            marks["handled"] = time.perf_counter()
        else:
            original(event)

    panel._on_event = on_event
    steps: list[tuple[float, float]] = []
    stepper = getattr(panel, "_next_step", None)  # the panel's one-step-per-turn adding, where it has one
    if stepper is not None:
        def next_step():
            begin = time.perf_counter()
            try:
                stepper()
            finally:
                steps.append((begin, time.perf_counter()))

        panel._next_step = next_step
    try:
        ticks.start()
        start = time.perf_counter()
        assert panel.run([image_layer]) is not None
        wait_until(lambda: not widget.state.running("segment"), 900, "the segmentation")
        assert panel.outcome == "done", panel.status_text()
        pump(SETTLE_S - (time.perf_counter() - marks["result"]))
        end = time.perf_counter()
        if profiler is not None:
            profiler.stop()
        ticks.stop()
    finally:
        del panel._on_event
        if stepper is not None:
            del panel._next_step
    add_gap, add_at = ticks.max_gap_ms(marks["result"], end)
    long_gaps = [(round(a - marks["result"], 3), round((b - a) * 1000, 1)) for a, b in zip(ticks.ticks, ticks.ticks[1:])
                 if b >= marks["result"] and a <= end and (b - a) > 0.05]
    steps_ms = [(round(a - marks["result"], 3), round((b - a) * 1000, 1)) for a, b in steps]
    run_gap, _ = ticks.max_gap_ms(start, marks["result"])
    return {"add_gap_ms": add_gap, "add_gap_at_s": add_at, "handler_ms": 1000 * (marks["handled"] - marks["result"]),
            "run_gap_ms": run_gap, "run_s": marks["result"] - start,
            "gaps_over_50ms": long_gaps, "steps_ms": steps_ms}


def _summary(emit: Emitter, case: str, runs: list[dict], **extra) -> dict:
    later = runs[1:] or runs
    return emit(case, first_add_gap_ms=runs[0]["add_gap_ms"], first_handler_ms=runs[0]["handler_ms"],
                add_gap_ms_median=statistics.median(r["add_gap_ms"] for r in later),
                add_gap_ms_max=max(r["add_gap_ms"] for r in later),
                handler_ms_median=statistics.median(r["handler_ms"] for r in later),
                run_gap_ms_median=statistics.median(r["run_gap_ms"] for r in runs),
                repeats=len(runs), runs=[{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()} for r in runs], **extra)


def _repeat(viewer, widget, image, repeats: int, profile_name: str | None) -> tuple[list, object]:
    """``repeats`` segmentations of ``image`` from a clean slate (results removed before each), then one
    more under cProfile when ``profile_name`` is given: (the runs, the profile's top entries or None)."""
    ticks, runs = TickLog(), []
    for _ in range(repeats):
        _remove_results(viewer)
        runs.append(_segment_once(viewer, widget, image, ticks, None))
    if profile_name is None:
        return runs, None
    _remove_results(viewer)
    profiler = Profiler(profile_name)
    _segment_once(viewer, widget, image, ticks, profiler)
    return runs, profiler.top()


def case_sample(emit, viewer, widget, repeats: int, profile: bool) -> dict:
    from napari_genselfdiff.plugin._sample_data import he_nuclei_sample

    data, kwargs, _ = he_nuclei_sample()[0]
    image = viewer.add_image(data, **kwargs)
    widget.segment_panel._instances.setChecked(True)
    widget.segment_panel._uncertainty.setChecked(True)
    pump(0.3)
    runs, profiled = _repeat(viewer, widget, image, repeats, "sample" if profile else None)
    viewer.layers.clear()
    pump(0.3)
    return _summary(emit, "ui_layers_sample", runs, image="bundled sample 512x512, bundled model, labels + nuclei + "
                    "uncertainty", profile=profiled)


def _large_result(size: int):
    from scipy import ndimage

    from napari_genselfdiff.core.inference.predict import SegmentationResult

    image, source = test_image(size)
    labels = (image.mean(-1) < 150).astype(np.uint8)
    instances, _ = ndimage.label(labels)
    rng = np.random.default_rng(0)
    umap = ndimage.uniform_filter(rng.random((size, size), dtype=np.float32), 9)
    return image, source, SegmentationResult(labels=labels, instances=instances.astype(np.int32)), umap


def case_large(emit, viewer, widget, size: int, repeats: int, profile: bool) -> dict:
    from napari_genselfdiff.plugin.widgets import segment_panel as module

    image, source, result, umap = _large_result(size)
    layer = viewer.add_image(image, name=f"large {size}", rgb=True)
    pump(0.5)

    def fake_segment_images(network, info, items, settings, uncertainty=False, **kwargs):
        for index, item in enumerate(items):
            yield {"kind": "start", "index": index, "count": len(items), "name": item[0]}
            event = {"kind": "result", "index": index, "count": len(items), "name": item[0], "image": image,
                     "seconds": 0.0, "resolution": None,
                     "result": type(result)(labels=result.labels.copy(), instances=result.instances.copy())}
            if uncertainty:
                event["uncertainty"] = umap.copy()
            yield event
        return len(items)

    real = module.segment_images
    module.segment_images = fake_segment_images
    try:
        runs, profiled = _repeat(viewer, widget, layer, repeats, "large" if profile else None)
    finally:
        module.segment_images = real
    viewer.layers.clear()
    pump(0.3)
    return _summary(emit, "ui_layers_large", runs, image=f"{size}x{size} ({source}), precomputed labels uint8, "
                    f"nuclei int32 ({int(result.instances.max())} objects), uncertainty float32", profile=profiled)


def case_finetune(emit, viewer, widget, tmp: Path, repeats: int, profile: bool) -> dict:
    """Fine-tune Start and end, the training child replaced by a generator that returns a model file
    at once (a copy of the bundled model, a new file each time), so the panel's own work is measured:
    the gap around Start (configuration, the job launched) and around the end-of-run handler (the
    model switch, and the re-segmentation of an open image it offers, accepted)."""
    from napari_genselfdiff.core.model_files import bundled_model_path
    from napari_genselfdiff.plugin.widgets import _training_common

    ft, state = widget.finetune_panel, widget.state
    state.open_annotations(tmp / "annotations")
    rng = np.random.default_rng(0)
    for seed in range(3):
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        state.annotations.add(image, (image.mean(-1) < 128).astype(np.uint8), name=f"corrected {seed}")
    viewer.add_image(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), name="not yet corrected", rgb=True)
    ft.patch.setValue(32)
    ft.batch.setValue(1)
    bundled = bundled_model_path()
    models = []
    for k in range(repeats + 1):
        models.append(tmp / "models" / f"best{k}.safetensors")
        models[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(bundled, models[-1])
        if bundled.with_suffix(".json").is_file():
            shutil.copy(bundled.with_suffix(".json"), models[-1].with_suffix(".json"))

    def fake_training(job, cfg, control):
        yield from ()
        return str(models[len(marks_all)])

    marks_all: list[dict] = []
    original_returned = ft._on_returned
    real = _training_common.train_in_subprocess
    _training_common.train_in_subprocess = fake_training
    state.ask = lambda title, text: True  # yes to re-segmenting the open image
    ticks = TickLog()
    profiler = None
    try:
        for k in range(repeats + (1 if profile else 0)):
            marks: dict[str, float] = {}
            profiler = Profiler("finetune") if profile and k == repeats else None

            def on_returned(*args, marks=marks):
                marks["end0"] = time.perf_counter()
                original_returned(*args)
                marks["end1"] = time.perf_counter()

            ft._on_returned = on_returned
            ft.run_dir.setText(str(tmp / "runs" / f"ft{k}"))
            ticks.start()
            pump(0.1)
            if profiler is not None:
                profiler.start()
            marks["start0"] = time.perf_counter()
            assert ft.start() is not None, ft.status_text()
            marks["start1"] = time.perf_counter()
            wait_until(lambda: "end1" in marks, 120, "the fine-tune's end")
            pump(0.05)
            if profiler is not None:
                profiler.stop()
            ticks.stop()
            assert state.model_path == models[len(marks_all)], ft.status_text()
            marks["start_gap"] = ticks.max_gap_ms(marks["start0"], marks["start1"])[0]
            marks["end_gap"] = ticks.max_gap_ms(marks["end0"], marks["end1"])[0]
            wait_until(lambda: not state.running("segment") and not state.running("finetune"), 300, "the re-segmentation")
            state.set_model(bundled)
            pump(0.2)
            if profiler is None:
                marks_all.append(marks)
    finally:
        _training_common.train_in_subprocess = real
        del ft._on_returned
        state.ask = lambda title, text: False
    return emit("ui_finetune", start_gap_ms_median=statistics.median(m["start_gap"] for m in marks_all),
                start_ms_median=statistics.median(1000 * (m["start1"] - m["start0"]) for m in marks_all),
                end_gap_ms_median=statistics.median(m["end_gap"] for m in marks_all),
                end_gap_ms_max=max(m["end_gap"] for m in marks_all),
                end_ms_median=statistics.median(1000 * (m["end1"] - m["end0"]) for m in marks_all),
                repeats=len(marks_all),
                runs=[{"start_gap_ms": round(m["start_gap"], 1), "end_gap_ms": round(m["end_gap"], 1),
                       "end_ms": round(1000 * (m["end1"] - m["end0"]), 1)} for m in marks_all],
                profile=profiler.top() if profiler is not None else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=4096, help="side of the large image (0: skip it)")
    p.add_argument("--cases", default="sample,large,finetune")
    p.add_argument("--profile", action="store_true", help="cProfile one more repeat of each case (main thread)")
    p.add_argument("--pstats", type=Path, default=None, help="folder for the cProfile files of --profile")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    global PSTATS_DIR
    PSTATS_DIR = args.pstats
    emit = Emitter(args.out)
    cases = set(args.cases.split(","))
    with tempfile.TemporaryDirectory(prefix="ui_layers_") as folder:
        tmp = Path(folder)
        viewer, widget = _viewer_and_widget(tmp)
        try:
            if "sample" in cases:
                case_sample(emit, viewer, widget, args.repeats, args.profile)
            if "large" in cases and args.size:
                case_large(emit, viewer, widget, args.size, args.repeats, args.profile)
            if "finetune" in cases:
                case_finetune(emit, viewer, widget, tmp, args.repeats, args.profile)
        finally:
            for job in list(widget.state.jobs):
                stop = getattr({"segment": widget.segment_panel, "finetune": widget.finetune_panel,
                                "pretrain": widget.pretrain_panel}.get(job), "stop", None)
                if stop:
                    stop()
            viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
