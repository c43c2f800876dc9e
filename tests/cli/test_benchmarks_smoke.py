"""Smoke test of benchmarks/: run.py's default pieces run on tiny sizes and report sane figures; the
other benchmark files run their smallest case; no benchmark imports tests/ or decodes TIFFs itself.

Only completeness and sanity are asserted (positive times, finite ratios to the peaks of the same run),
never a time limit: the machine may be shared. docs/performance.md has the real figures and the
commands that produced them.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """benchmarks/ on sys.path (as it is for a script run from there); the modules by name."""
    sys.path.insert(0, str(BENCH))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def _positive(record: dict, *keys: str) -> None:
    for key in keys:
        value = record[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, record)


def test_run_default_pieces_quick(bench, tmp_path):
    run = bench("run")
    out = tmp_path / "figures.jsonl"
    args = run.parse(["--quick", "--threads", "1", "--out", str(out), "--size", "128", "--peak-seconds", "0.1"])
    assert args.only == list(run.DEFAULT_PIECES) == ["peaks", "segment", "finetune"]
    figures = run.run(args)
    assert [json.loads(line) for line in out.read_text().splitlines()] == figures
    by: dict[str, list[dict]] = {}
    for f in figures:
        by.setdefault(f["figure"], []).append(f)
        assert "load1" in f and "threads" in f

    (machine,) = by["machine"]
    assert machine["cores"] >= 1 and machine["torch"] and isinstance(machine["native_bf16"], bool)
    peaks = {f["dtype"]: f for f in by["gemm_peak"]}
    assert set(peaks) == {"fp32", "bf16"}
    for f in peaks.values():
        _positive(f, "gflops", "gflops_per_cpu_s", "wall_s")

    labels, with_instances = by["segment"]
    assert labels["job"] == "labels" and with_instances["job"] == "labels+instances"
    for f in (labels, with_instances):
        assert f["image"] == [128, 128] and f["model_file"].endswith(".safetensors") and f["model_name"]
        assert f["precision"] in ("fp32", "bf16")
        _positive(f, "wall_s", "cpu_s", "forward_s", "gflop", "gflops", "network_gflops", "ratio_fp32_peak")
        assert f["forward_s"] <= f["wall_s"]
    _positive(with_instances, "ratio_to_labels_only", "cpu_ratio_to_labels_only")
    assert math.isfinite(with_instances["instances_extra_s"])
    assert with_instances["nuclei"] is not None

    (step,) = by["finetune_step"]
    assert step["loss"] == "dice_ce" and step["batch"] == 2 and step["patch"] == 64 and step["steps_timed"] == 1
    assert step["widths"] == labels["widths"]  # the bundled model's network, not a preset
    _positive(step, "step_s_median", "patches_per_s", "gflop", "ratio_fp32_peak")
    assert by["total"][0]["figures"] == len(figures) - 1


def test_large_image_child(bench, tmp_path):
    large = bench("large_image")
    path = tmp_path / "image_300.npy"
    large.make_image(path, 300)
    for net in ("pipeline", "nano"):
        values = large.child(path, net, tmp_path)
        assert values["image"] == "300x300" and values["network"] == net
        _positive(values, "wall_s", "s_per_megapixel", "image_mb", "peak_rss_mb")
        assert math.isfinite(values["peak_extra_anon_mb"])


def test_ui_stall_is_read_from_the_plugin_test(bench, monkeypatch):
    ui = bench("ui_stall")
    common = bench("common")
    line = ("\n[stall] segment (tiny preset, 512x512, 9 tiles of 256, 7.8 s): max GUI gap 44.7 ms over 666 ticks "
            "(click handler 26 ms)\n.\n1 passed")

    def fake_run(cmd, **kw):
        assert ui.UI_TEST in cmd
        return subprocess.CompletedProcess(cmd, 0, stdout=line, stderr="")

    monkeypatch.setattr(ui.subprocess, "run", fake_run)
    emit = common.Emitter()
    stall = ui.measure(emit)
    assert stall["figure"] == "ui_stall" and stall["max_gap_ms"] == pytest.approx(44.7) and stall["passed"]


def test_benchmarks_import_no_tests_and_decode_no_tiff():
    for path in BENCH.glob("*.py"):
        text = path.read_text()
        assert "conftest" not in text and not re.search(r"""/ ["']tests["']""", text), path
        assert "dataoffsets" not in text and "databytecounts" not in text, path  # no TIFF tile decoder of our own
