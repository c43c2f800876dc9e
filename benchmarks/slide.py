"""Whole-slide segmentation benchmark: one JSON line per slide on stdout (and appended to --out).

    python benchmarks/slide.py [--size 40000] [--tissue 0.3] [--net micro|tiny|MODEL.safetensors]
                               [--tile 512] [--instances] [--threads N] [--out FIGURES.jsonl]

For each (size, tissue) pair it writes a synthetic pyramidal, tiled, JPEG TIFF (Aperio layout, 0.25
um/px, ``core/io/synthetic_slide.py``) of size x size pixels with that share of tissue, then, in a
fresh child process (so the peak memory is the run's own), segments it with
``core.inference.slide.segment_slide`` (tissue mask, tiles over tissue only, labels to the OME-Zarr
store, pyramid; nuclei to GeoJSON with --instances) and prints:

- ``peak_rss_mb`` and ``rss_before_mb``: peak resident memory of the child, and its memory after
  imports and loading the model, before the slide is opened; ``peak_above_start_mb`` is the
  difference (the slide must not show up in it);
- ``seconds``, ``seconds_network`` (inside the network's forward calls) and
  ``share_outside_network`` (reading, resampling, blending, writing, tissue mask, pyramid);
- ``cpu_seconds``: CPU time of the process (all threads) during the run: on a shared machine wall
  times are upper bounds, CPU seconds are steadier;
- ``tissue_megapixels`` (level-0 pixels under the tissue mask) and ``seconds_per_tissue_megapixel``;
- tiles computed against tiles of the whole slide, the timings of each stage, the store's size.

Several sizes and tissue shares (``--size 8192 11585 --tissue 0.3 0.15``: the same tissue area on
twice the slide area) show whether time follows the tissue or the slide. The network is by default
the 0.15 M-parameter "micro" U-Net of the tests with random weights (labels meaningless): the figure
of interest is the time outside the network, which does not depend on it; ``--net tiny`` or a model
file gives the time with a real network size, and ``--net pipeline`` (a 1x1 convolution standing in
for the network) measures everything else on slides too large for a real network on a small CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _model(net: str):
    import torch

    from napari_genselfdiff.core.model_files import ModelInfo, default_classes, load_model
    from napari_genselfdiff.core.network import PRESETS, AttentionUNet, UNetConfig

    if net.endswith(".safetensors"):
        return load_model(Path(net))
    if net == "pipeline":
        # A 1x1-convolution stand-in (as benchmarks/run.py's "pipeline"): everything but the network.
        from types import SimpleNamespace

        class Pipeline(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 2, 1)
                self.config = SimpleNamespace(downsample_factor=8, out_channels=2)

            def forward(self, x):
                return self.conv(x)

        config = UNetConfig(widths=(8, 16, 16, 32), groups=4, head="classes", out_channels=2)
        return Pipeline().eval(), ModelInfo(architecture=config, classes=default_classes(["background", "nucleus"]))
    if net == "micro":
        config = UNetConfig(widths=(8, 16, 16, 32), blocks_per_level=1, groups=4, attention_heads=2,
                            attention_dim_head=8, head="classes", out_channels=2)
    else:
        config = PRESETS[net].with_head("classes", 2)
    torch.manual_seed(0)
    return AttentionUNet(config).eval(), ModelInfo(architecture=config, classes=default_classes(["background", "nucleus"]))


def child(args: argparse.Namespace) -> None:
    """Segment one slide and print its JSON figures (run in a fresh process)."""
    import torch

    from napari_genselfdiff.core.allocator import keep_freed_memory
    from napari_genselfdiff.core.inference import InferenceSettings
    from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    network, info = _model(args.net)
    rss_before = _rss_mb()
    settings = SlideSettings(
        inference=InferenceSettings(device="cpu", precision=args.precision, tile=args.tile),
        instances=args.instances,
    )
    start, cpu0 = time.perf_counter(), time.process_time()
    result = segment_slide(network, info, args.child, args.workdir, settings, overwrite=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tissue_mp = result.tissue_fraction * result.width * result.height / 1e6
    store_bytes = sum(p.stat().st_size for p in Path(result.labels_store).rglob("*") if p.is_file())
    print(json.dumps({
        "benchmark": "slide",
        "size": [result.height, result.width],
        "slide_megapixels": round(result.width * result.height / 1e6, 1),
        "tissue_requested": args.tissue_requested,
        "tissue_fraction_mask": round(result.tissue_fraction, 4),
        "tissue_megapixels": round(tissue_mp, 1),
        "net": args.net, "tile": args.tile, "threads": torch.get_num_threads(), "precision": args.precision,
        "instances": args.instances, "nuclei": result.nuclei,
        "tiles": result.tiles, "tiles_whole_slide": result.tiles_all,
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "seconds_network": round(result.seconds_network, 1),
        "share_outside_network": round(1 - result.seconds_network / wall, 3),
        "seconds_per_tissue_megapixel": round(wall / tissue_mp, 3) if tissue_mp else None,
        "timings": {k: round(v, 1) for k, v in result.timings.items()},
        "rss_before_mb": round(rss_before), "peak_rss_mb": round(peak), "peak_above_start_mb": round(peak - rss_before),
        "store_mb": round(store_bytes / 1e6, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs="+", default=[40000], help="slide side(s) in pixels")
    parser.add_argument("--tissue", type=float, nargs="+", default=[0.3], help="tissue share(s), one per size or one for all")
    parser.add_argument("--net", default="micro", help="micro | pipeline | tiny | small | default | MODEL.safetensors")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    parser.add_argument("--instances", action="store_true", help="also split nuclei and write the GeoJSON")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="where slides and outputs go (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON lines to this file")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tissue-requested", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

    tissues = args.tissue * len(args.size) if len(args.tissue) == 1 else args.tissue
    if len(tissues) != len(args.size):
        parser.error("give one --tissue, or one per --size")
    with tempfile.TemporaryDirectory(prefix="slide_bench_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for size, tissue in zip(args.size, tissues):
            path = workdir / f"synthetic_{size}_{int(100 * tissue)}.svs"
            t = time.perf_counter()
            write_synthetic_slide(path, size, size, mpp=0.25, tissue_fraction=tissue, seed=size)
            print(f"# wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--child", str(path), "--workdir", str(workdir / "out"),
                   "--net", args.net, "--tile", str(args.tile), "--precision", args.precision,
                   "--tissue-requested", str(tissue)]
            cmd += ["--instances"] if args.instances else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            line = proc.stdout.strip().splitlines()[-1]
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as handle:
                    handle.write(line + "\n")
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
