"""Ten fine-tune cycles in one napari session: does napari's resident memory keep growing? (issue 13)

    xvfb-run -a .venv/bin/python benchmarks/finetune_cycles_memory.py [--cycles 10] [--steps 3] [--out FILE]

(Without a display the script restarts itself under ``xvfb-run -a``.) It opens a napari viewer, docks
the plugin widget through its manifest (as the Plugins menu does) with the bundled default model
chosen, and opens two fields of the bundled H&E sample (``samples/he_nuclei_512.png``): **field A**
(its left half) and **field B** (its right half). Both are segmented once. Then each cycle does what a
user does between two fine-tunings:

1. corrects the next 64x64 field of A's labels (the expert outlines painted into the labels layer),
   draws a rectangle around it in a Shapes layer and presses **Mark as corrected** (a partial pair);
2. presses **Start fine-tuning** in the Train tab (continuing the current model, --steps steps of
   64-pixel patches, batch 2; the run goes to a new run folder, as the panel does);
3. says yes to "Re-segment with the new model?": field B is segmented with the new model (labels and
   uncertainty layers replaced in place).

After each cycle it records the resident memory (RSS, psutil) of the napari process, of its training
child (a separate process, reused from cycle to cycle), Python's gc object count, and, with
``--tracemalloc``, the Python allocations by line that grew since the end of cycle 2. The headline is
``growth_after_cycle_2_pct``: (RSS after the last cycle - RSS after cycle 2) / RSS after cycle 2.
Printed as JSON on stdout and written to ``--out`` (atomically).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIELD = 64


def _rss_mb(process) -> float:
    return process.memory_info().rss / 2**20


def _children_rss_mb(process) -> float:
    total = 0.0
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss / 2**20
        except Exception:  # noqa: BLE001 - a child that just ended
            pass
    return total


def _renice_children(process, nice: int, wait_s: float = 10.0) -> None:
    """Set the training child's nice value (the panel starts it 10 above napari's), once it exists."""
    from napari_genselfdiff.plugin._testing import wait_for

    def found() -> bool:
        children = [c for c in process.children() if "_train_child" in " ".join(c.cmdline())]
        for child in children:
            if child.nice() != nice:
                child.nice(nice)
        return bool(children)

    try:
        wait_for(found, wait_s, "the training child")
    except AssertionError:
        pass


def run(args) -> dict:
    import numpy as np
    import psutil

    work = Path(tempfile.mkdtemp(prefix="gsd-cycles-"))
    os.environ["GENSELFDIFF_CONFIG_DIR"] = str(work / "config")
    os.environ["GENSELFDIFF_DATA_DIR"] = str(work / "data")
    os.environ.pop("GENSELFDIFF_NOTHREADS", None)
    import napari

    from napari_genselfdiff.core.defaults import SAMPLE_IMAGE, SAMPLE_INSTANCES
    from napari_genselfdiff.core.io.read import read_array
    from napari_genselfdiff.plugin._testing import open_widget, wait_for

    process = psutil.Process()
    viewer = napari.Viewer(show=True)
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")
    widget.close_policy = "stop"
    widget.state.ask = lambda title, text: title.startswith("Re-segment")  # yes to re-segmenting only
    model_start = str(widget.state.model_path)
    assert widget.annotation_panel.open_folder(work / "set")

    rgb = np.asarray(read_array(SAMPLE_IMAGE))[..., :3]
    truth = (np.asarray(read_array(SAMPLE_INSTANCES)) > 0).astype(np.uint8)
    half = rgb.shape[1] // 2
    field_a = viewer.add_image(np.ascontiguousarray(rgb[:, :half]), name="field A", rgb=True)
    field_b = viewer.add_image(np.ascontiguousarray(rgb[:, half:]), name="field B", rgb=True)
    truth_a = truth[:, :half]
    seg = widget.segment_panel
    seg.run([field_a, field_b])
    wait_for(lambda: not widget.state.running("segment"), args.timeout, "the first segmentation")
    labels_a = viewer.layers["field A labels"]
    shapes = viewer.add_shapes(name="corrected", shape_type="rectangle")
    ft = widget.finetune_panel
    ft.patch.setValue(64)
    ft.batch.setValue(2)
    ft.steps.setValue(args.steps)
    ft.run_dir.setText(str(work / "runs" / "finetune"))
    ann = widget.annotation_panel

    fields = [(y, x) for y in range(0, rgb.shape[0] - FIELD + 1, FIELD) for x in range(0, half - FIELD + 1, FIELD)]
    try:
        return _cycles(args, process, viewer, widget, labels_a, shapes, ft, ann, seg, truth_a, fields, model_start,
                       rgb.shape[0], half)
    finally:
        widget.stop_jobs(60)
        viewer.close()
        shutil.rmtree(work, ignore_errors=True)


def _cycles(args, process, viewer, widget, labels_a, shapes, ft, ann, seg, truth_a, fields, model_start,
            height, half) -> dict:
    import numpy as np

    from napari_genselfdiff.plugin._testing import wait_for

    records, snapshot2 = [], None
    start = time.perf_counter()
    for cycle in range(1, args.cycles + 1):
        t0, cpu0 = time.perf_counter(), process.cpu_times()
        # 1. correct a field and mark it as corrected (--fixed-set: three fields before the first cycle only)
        for k in ((cycle - 1,) if not args.fixed_set else ((0, 1, 2) if cycle == 1 else ())):
            y, x = fields[k % len(fields)]
            labels_a.data[y : y + FIELD, x : x + FIELD] = truth_a[y : y + FIELD, x : x + FIELD]
            labels_a.refresh()
            shapes.data = [np.array([[y, x], [y + FIELD - 1, x + FIELD - 1]], float)]
            shapes.shape_type = ["rectangle"]
            ann.select("field A labels", "field A", region="corrected")
            pair = ann.mark_corrected()
            if pair is None:
                raise RuntimeError(f"cycle {cycle}: Mark as corrected failed: {ann.status_text()}")
        # 2. fine-tune
        if ft.start() is None:
            raise RuntimeError(f"cycle {cycle}: fine-tuning did not start: {ft.status_text()}")
        if args.child_nice is not None:
            _renice_children(process, args.child_nice)
        wait_for(lambda: not widget.state.running("finetune"), args.timeout, f"fine-tuning of cycle {cycle}")
        if ft.outcome != "done":
            raise RuntimeError(f"cycle {cycle}: fine-tuning ended {ft.outcome}: {ft.status_text()}")
        # 3. the re-segmentation it offered (yes)
        wait_for(lambda: not widget.state.running("segment"), args.timeout, f"re-segmentation of cycle {cycle}")
        if seg.outcome != "done" or "field B labels" not in viewer.layers:
            raise RuntimeError(f"cycle {cycle}: re-segmentation ended {seg.outcome}: {seg.status_text()}")
        from qtpy.QtTest import QTest

        QTest.qWait(200)  # let queued events (progress bars, notifications) finish
        cpu1 = process.cpu_times()
        record = {
            "cycle": cycle,
            "rss_mb": round(_rss_mb(process), 1),
            "child_rss_mb": round(_children_rss_mb(process), 1),
            "gc_objects": len(gc.get_objects()),
            "layers": len(viewer.layers),
            "pairs": len(widget.state.annotations),
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 1),
        }
        records.append(record)
        print(json.dumps(record), file=sys.stderr, flush=True)
        if args.tracemalloc and cycle == 2:  # traced from here on: what is allocated later and kept
            import tracemalloc

            tracemalloc.start(args.tracemalloc)
            snapshot2 = tracemalloc.take_snapshot()
    result = {
        "benchmark": "finetune_cycles_memory",
        "cycles": args.cycles,
        "steps_per_finetune": args.steps,
        "annotation_set": "three pairs marked before cycle 1" if args.fixed_set else "one pair marked per cycle",
        "patch": 64,
        "batch": 2,
        "start_model": Path(model_start).name,
        "field_a_b_shape": [int(height), int(half)],
        "rss_mb": [r["rss_mb"] for r in records],
        "child_rss_mb": [r["child_rss_mb"] for r in records],
        "gc_objects": [r["gc_objects"] for r in records],
        "growth_after_cycle_2_pct": None,
        "child_growth_after_cycle_2_pct": None,
        "per_cycle": records,
        "seconds": round(time.perf_counter() - start, 1),
        "load1": round(os.getloadavg()[0], 2),
        "nice": os.nice(0),
        "child_nice": args.child_nice,
        "command": args.command,
    }
    if len(records) >= 3:
        r2, last = records[1], records[-1]
        result["growth_after_cycle_2_pct"] = round(100.0 * (last["rss_mb"] - r2["rss_mb"]) / r2["rss_mb"], 2)
        if r2["child_rss_mb"] > 0:
            result["child_growth_after_cycle_2_pct"] = round(
                100.0 * (last["child_rss_mb"] - r2["child_rss_mb"]) / r2["child_rss_mb"], 2)
    if snapshot2 is not None:
        import tracemalloc

        gc.collect()
        final = tracemalloc.take_snapshot()
        result["tracemalloc_top_growth"] = [str(stat) for stat in final.compare_to(snapshot2, "lineno")[:15]]
        result["tracemalloc_top_growth_traceback"] = [
            "\n".join(stat.traceback.format()) + f"\n  {stat.size_diff / 1024:.0f} KiB"
            for stat in final.compare_to(snapshot2, "traceback")[:5]]
        result["tracemalloc_traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--steps", type=int, default=3, help="fine-tuning steps per cycle")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for one job")
    p.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                   help="trace Python allocations from the end of cycle 2 (frames per trace) and list what grew")
    p.add_argument("--fixed-set", action="store_true",
                   help="mark three fields before the first cycle and none after (the annotation set does not grow)")
    p.add_argument("--child-nice", type=int, default=None,
                   help="run the training child at this nice value instead of napari's + 10 (on a machine whose "
                        "cores are taken by higher-priority jobs the child at +10 gets almost no CPU)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "finetune_cycles_memory.json")
    args = p.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and shutil.which("xvfb-run"):
        os.execvp("xvfb-run", ["xvfb-run", "-a", sys.executable, *sys.argv])
    args.command = "xvfb-run -a " + shlex.join([".venv/bin/python", os.path.relpath(__file__, ROOT),
                                               *(sys.argv[1:] if argv is None else argv)])
    if os.nice(0):
        args.command = f"nice -n {os.nice(0)} " + args.command
    result = run(args)
    text = json.dumps(result, indent=1)
    print(text)
    from napari_genselfdiff.core.io.atomic import write_text_atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
