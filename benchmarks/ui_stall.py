"""The largest napari event-loop stall while the widget segments, as the plugin's own test measures it.

    python benchmarks/ui_stall.py [--out FILE.jsonl]

Runs ``tests/plugin/test_plugin_segment.py::test_gui_stall_while_segmenting`` with ``pytest -s`` in
a child process (the test is run, not imported) and reports its ``[stall] ... max GUI gap X ms``
line as one JSON figure. Needs the GUI extra and pytest-qt (Xvfb on a headless machine).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Emitter  # noqa: E402

UI_TEST = "tests/plugin/test_plugin_segment.py::test_gui_stall_while_segmenting"
STALL_LINE = re.compile(r"\[stall\] (.*?max GUI gap ([0-9.]+) ms.*)")


def measure(emit: Emitter) -> dict:
    cmd = [sys.executable, "-m", "pytest", UI_TEST, "-s", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        text = proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        text, proc = str(exc), None
    match = STALL_LINE.search(text)
    return emit("ui_stall", max_gap_ms=float(match.group(2)) if match else None,
                line=match.group(1).strip() if match else None, source=UI_TEST,
                command="python " + " ".join(cmd[1:]), passed=bool(proc and proc.returncode == 0),
                wall_s=time.perf_counter() - start,
                note=None if match else "the test printed no [stall] line (napari or pytest-qt missing?)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    measure(Emitter(p.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
