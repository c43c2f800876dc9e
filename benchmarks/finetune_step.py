"""Fine-tuning steps of a bundled model through the real training loop: ``core.training.finetune``
with the shipped loss (dice_ce), the model's network, patch side and output, batch 8.

    python benchmarks/finetune_step.py [--model default] [--threads 2] [--steps 3] [--batch 8]
                                       [--patch N] [--precision auto] [--out FILE.jsonl]

The data are the bundled sample (512x512 H&E) and its expert nucleus outlines, so the step includes
what a user's step includes: patch sampling, augmentation (flips, 90-degree turns, colour jitter,
blur, stain jitter: the bundled model's recipe), the targets of the model's output kind (e.g. a
distance map), forward, loss, backward, gradient clipping and the Adam update. The first step
(library warm-up) is not counted: the figure is the median time between the loop's "step" events
after it. No validation, one checkpoint at the end (written to a temporary folder, not timed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import Clock, Emitter, forward_flops, machine, measure_peaks, ratios  # noqa: E402
from default_model import model_fields  # noqa: E402

from napari_genselfdiff.core.defaults import SAMPLE_IMAGE, SAMPLE_INSTANCES  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune  # noqa: E402

LOSS = "dice_ce"  # the bundled models' loss (their cards' provenance.loss)


def measure(emit: Emitter, *, model: str = "default", steps: int = 3, batch: int = 8, patch: int | None = None,
            precision: str = "auto", peaks: dict | None = None, channels_last: bool | None = None) -> dict:
    """Run ``steps`` + 1 fine-tuning steps; one "finetune_step" figure (the first step not counted)."""
    net, info = load_model(model)
    patch = patch or info.patch_size or 128
    image = read_array(SAMPLE_IMAGE)[..., :3]
    instances = read_array(SAMPLE_INSTANCES)
    mask = (instances > 0).astype(np.uint8)
    with tempfile.TemporaryDirectory(prefix="gsd_bench_ft_") as tmp:
        cfg = FinetuneConfig(
            pairs=[("sample", image, mask)], instances={"sample": instances}, init=model, loss=LOSS,
            classes=[c.name for c in info.classes], out_dir=str(Path(tmp) / "run"), steps=steps + 1,
            batch=batch, patch_size=patch, stride=patch // 4, val_fraction=0.0, checkpoint_every=0,
            device="cpu", precision=precision, stain_jitter=True, grad_clip=1.0, seed=0,
            channels_last=channels_last)
        stamps, started, message = [], None, ""
        with Clock() as clock:
            start = time.perf_counter()
            for event in finetune(cfg):
                if event.kind == "start":
                    started, message = time.perf_counter(), event.message
                elif event.kind == "step":
                    stamps.append((time.perf_counter(), clock_cpu()))
    times = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
    cpus = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    med, cpu = statistics.median(times), statistics.median(cpus)
    # Model FLOPs of one step, estimated as 3x the forward pass (backward ~ 2x forward) over the batch.
    gflop = 3 * forward_flops(net.config, patch, patch) * batch / 1e9
    precision_used = message.split("precision ")[-1].split(";")[0].split(",")[0].strip() if "precision " in message else None
    return emit("finetune_step", **model_fields(info, net), loss=LOSS, patch=patch, batch=batch,
                precision=precision_used, asked_precision=precision, channels_last=channels_last, steps_timed=len(times),
                step_s_median=med, step_s=[round(t, 3) for t in times], cpu_s_per_step=cpu,
                patches_per_s=batch / med, first_step_s=stamps[0][0] - started if started else None,
                setup_s=(started - start) if started else None, total_wall_s=clock.wall,
                gflop_note="3 x forward FLOPs x batch (estimate)", **ratios(gflop, med, cpu, peaks or {}))


def clock_cpu() -> float:
    """Process CPU seconds so far (user + system, all threads)."""
    return time.process_time()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="a bundled model's name or a model file")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (one untimed step runs first)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=None, help="patch side (default: the model's)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--peaks", action="store_true", help="measure the GEMM peaks first and give ratios to them")
    p.add_argument("--memory-format", nargs="+", default=["default"], choices=["default", "contiguous", "channels-last"],
                   help="time each memory format in turn, in one run (default: the training options' default)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    emit = Emitter(args.out)
    emit("machine", **machine())
    peaks = measure_peaks(emit) if args.peaks else {}
    formats = {"default": None, "contiguous": False, "channels-last": True}
    for fmt in args.memory_format:
        measure(emit, model=args.model, steps=args.steps, batch=args.batch, patch=args.patch,
                precision=args.precision, peaks=peaks, channels_last=formats[fmt])
    return 0


if __name__ == "__main__":
    sys.exit(main())
