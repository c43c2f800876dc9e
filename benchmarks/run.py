"""The benchmarks users care about, in one command: one JSON line per figure on stdout (and in --out).

    python benchmarks/run.py [--threads N] [--model default] [--quick] [--out FIGURES.jsonl]
                             [--only PIECE ...]

By default (pieces ``peaks segment finetune``):

- ``machine``: the CPU (and whether it computes bf16 natively: the avx512_bf16 / amx_bf16 flags),
  torch, the load average;
- ``peaks``: fp32 and bf16 GEMM rates measured in this run, the denominators of the ratios below
  (benchmarks/common.py);
- ``segment``: a 1000x1000 H&E image (the first MoNuSeg test image, else the bundled sample mirrored)
  segmented with the bundled model, labels only and with nuclei split into instances, at the
  precision the CLI uses ("auto") (benchmarks/default_model.py);
- ``finetune``: fine-tuning steps of the bundled model through the real training loop
  (core.training.finetune, loss dice_ce, the model's patch side, batch 8) (benchmarks/finetune_step.py).

On request: ``large`` (memory-mapped and tiled-TIFF images up to 10000x10000 through a stand-in
network, each in a fresh process: time per megapixel and peak memory; benchmarks/large_image.py) and
``ui`` (the napari event-loop stall while segmenting; benchmarks/ui_stall.py). ``--quick`` shrinks
everything for a smoke run (256x256, one repeat, one batch-2 step of 64-pixel patches).

Every figure records the torch thread count and the load average. On a shared machine wall times are
upper bounds; the CPU seconds beside them and the ratios to the peaks of the same run are the numbers
to compare. docs/performance.md has the figures and the command that produced them.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import default_model  # noqa: E402
import finetune_step  # noqa: E402

DEFAULT_PIECES = ("peaks", "segment", "finetune")
PIECES = (*DEFAULT_PIECES, "large", "ui")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; 1 on a busy machine)")
    p.add_argument("--model", default="default", help="bundled model name or model file (default: default)")
    p.add_argument("--only", nargs="+", choices=PIECES, default=None,
                   help=f"pieces to run (default: {' '.join(DEFAULT_PIECES)})")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON lines to this file")
    p.add_argument("--size", type=int, default=None, help="side of the segmented image (1000; quick 256)")
    p.add_argument("--repeats", type=int, default=None, help="timed segmentations per job (3; quick 1)")
    p.add_argument("--steps", type=int, default=None, help="timed fine-tuning steps (3; quick 1)")
    p.add_argument("--batch", type=int, default=None, help="fine-tuning batch (8; quick 2)")
    p.add_argument("--patch", type=int, default=None, help="fine-tuning patch side (the model's; quick 64)")
    p.add_argument("--peak-seconds", type=float, default=None, help="how long each peak is measured (2; quick 0.3)")
    args = p.parse_args(argv)
    q = args.quick
    args.only = args.only or list(DEFAULT_PIECES)
    args.size = args.size or (256 if q else 1000)
    args.repeats = args.repeats or (1 if q else 3)
    args.steps = args.steps or (1 if q else 3)
    args.batch = args.batch or (2 if q else 8)
    args.patch = args.patch or (64 if q else None)
    args.peak_seconds = args.peak_seconds or (0.3 if q else 2.0)
    return args


def run(args: argparse.Namespace) -> list[dict]:
    """Run the pieces in ``args.only``; returns the figures (also printed as JSON lines)."""
    emit = common.Emitter(args.out)
    start = time.perf_counter()
    with common.torch_threads(args.threads):
        emit("machine", **common.machine(), pieces=list(args.only), quick=args.quick,
             date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             command="python benchmarks/run.py " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("run.py") else None)
        peaks = common.measure_peaks(emit, args.peak_seconds) if "peaks" in args.only else {}
        if "segment" in args.only:
            default_model.measure(emit, model=args.model, size=args.size, repeats=args.repeats, peaks=peaks)
        if "finetune" in args.only:
            finetune_step.measure(emit, model=args.model, steps=args.steps, batch=args.batch, patch=args.patch,
                                  peaks=peaks)
        if "large" in args.only:
            import large_image

            large_image.measure(emit, quick=args.quick, threads=args.threads)
        if "ui" in args.only:
            import ui_stall

            ui_stall.measure(emit)
        emit("total", wall_s=time.perf_counter() - start, figures=len(emit.figures))
    return emit.figures


def main(argv: list[str] | None = None) -> int:
    run(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
