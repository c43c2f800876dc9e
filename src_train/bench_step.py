"""Measure training step times (forward + backward + Adam) on this machine, for docs/training.md.

    python src_train/bench_step.py --arch tiny small --size 128 256 --batch 8 --steps 3 [--threads 1]

Each configuration runs ``--warmup`` untimed steps, then ``--steps`` timed ones; the median is
reported. Both stages are measured: pretraining (P2-weighted diffusion loss, noise head) and
fine-tuning (``--loss``: dice_ce, the bundled models' loss, by default; ss_focal, the paper's; 2-class
head at t = 0). Random tensors stand in for images: the step time does not depend on pixel values.

This is a hand-made step for comparing architectures and patch sizes (no data loading, augmentation,
gradient clipping or learning-rate schedule). The time of a real fine-tuning step of a bundled model,
through the training loop users run (core.training.finetune), is benchmarks/finetune_step.py's (and
``python benchmarks/run.py``'s "finetune_step" figure).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from napari_genselfdiff.core.diffusion import GaussianDiffusion  # noqa: E402
from napari_genselfdiff.core.inference.device import autocast, choose_device, choose_precision  # noqa: E402
from napari_genselfdiff.core.losses import LOSSES, SSFocalLoss  # noqa: E402
from napari_genselfdiff.core.network import PRESETS, AttentionUNet  # noqa: E402
from napari_genselfdiff.core.network.unet import count_parameters  # noqa: E402


def _time_steps(step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def make_train_step(stage: str, model, opt, x, y, *, diffusion, seg_loss, generator, device, precision):
    """One training step (forward, loss, backward, Adam) of the given stage, as a no-argument callable.

    Pretraining: the P2-weighted diffusion loss on ``x``; fine-tuning: ``seg_loss`` (a segmentation
    loss from core.losses: dice_ce or SS + focal) of ``model(x)`` against ``y``.
    """

    def step() -> None:
        with autocast(device, precision):
            if stage == "pretrain":
                loss = diffusion.training_loss(model, x, generator=generator)["loss"]
            else:
                loss = seg_loss(model(x).float(), y)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def _override(cfg, args):
    """The preset with the command line's architecture overrides."""
    values = cfg.to_dict()
    if args.widths:
        values["widths"] = args.widths
    if args.blocks:
        values["blocks_per_level"] = args.blocks
    if args.norm:
        values["norm"] = args.norm
    if args.level_attention:
        values["level_attention"] = args.level_attention == "on"
    return type(cfg)(**values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["tiny", "small"], choices=sorted(PRESETS))
    parser.add_argument("--size", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--stage", nargs="+", default=["pretrain", "finetune"], choices=["pretrain", "finetune"])
    parser.add_argument("--loss", default="dice_ce", choices=sorted(LOSSES),
                        help="fine-tuning loss (default dice_ce, the bundled models'; ss_focal: the paper's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="override the preset's widths")
    parser.add_argument("--blocks", type=int, default=None, help="override blocks_per_level")
    parser.add_argument("--norm", choices=["group", "batch"], default=None, help="override the normalisation")
    parser.add_argument("--level-attention", choices=["on", "off"], default=None, help="override level attention")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print torch.profiler's top N operators (self CPU time) of one timed step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = choose_device(args.device)
    precision = choose_precision(device, args.precision)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {device}, precision {precision.value}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("stage     arch   params  patch batch  s/step (median)  steps/s  samples/s  all steps")
    diffusion = GaussianDiffusion.from_config()
    seg_loss = SSFocalLoss() if args.loss == "ss_focal" else LOSSES[args.loss]()
    gen = torch.Generator(device=device).manual_seed(0)
    for stage in args.stage:
        for arch in args.arch:
            cfg = _override(PRESETS[arch], args)
            cfg = cfg if stage == "pretrain" else cfg.with_head("classes", 2)
            model = AttentionUNet(cfg).to(device).train()
            fmt = torch.channels_last if args.channels_last else torch.contiguous_format
            model = model.to(memory_format=fmt)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            for size in args.size:
                x = (torch.rand(args.batch, 3, size, size, device=device) * 2 - 1).to(memory_format=fmt)
                y = torch.randint(0, 2, (args.batch, size, size), device=device)

                step = make_train_step(stage, model, opt, x, y, diffusion=diffusion, seg_loss=seg_loss,
                                       generator=gen, device=device, precision=precision)
                times = _time_steps(step, args.warmup, args.steps)
                med = statistics.median(times)
                print(
                    f"{stage:<9} {arch:<6} {count_parameters(model) / 1e6:5.1f}M {size:6d} {args.batch:5d} "
                    f"{med:15.2f} {1 / med:8.3f} {args.batch / med:10.2f}  "
                    + " ".join(f"{t:.2f}" for t in times),
                    flush=True,
                )
                if args.profile:
                    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                        step()
                    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))


if __name__ == "__main__":
    main()
