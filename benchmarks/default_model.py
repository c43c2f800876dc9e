"""Segmenting one 1000x1000 H&E image with a bundled model, as `genselfdiff segment` does, with and
without nuclei split into instances.

    python benchmarks/default_model.py [--model default] [--threads 2] [--repeats 3] [--size 1000]
                                       [--instances] [--precision auto ...] [--out FILE.jsonl]

One JSON line per (precision, job): the median wall time of ``core.inference.segment`` (tiling, the
network, blending, argmax; with --instances also the nucleus splitting; no file I/O) over --repeats
runs after one warm-up, the process CPU time, the time inside the network's forward, the model FLOPs
of the tiles computed and their rate against the GEMM peaks measured in the same run (with
--peaks, the default in benchmarks/run.py). A job with instances also gives its ratio to the
labels-only job measured just before it. Precisions: "auto" (what the CLI uses: bf16 where the CPU
computes bf16 natively, else fp32) by default; name several to compare them in one run. On a busy
machine the wall time is inflated by waiting for a core; cpu_s / threads bounds what an idle machine
would take.

To see what a change is worth on a noisy machine, compare variants in one run: ``--memory-format
contiguous channels-last`` (default: the inference default, channels-last unless the network has level
attention) and ``--h-maxima skimage objects`` (the nucleus split's markers by skimage's whole-image
h_maxima, as before 2026-12-07, or object by object, ``core.inference.extrema``: the same markers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import Clock, Emitter, ForwardTimer, forward_flops, machine, measure_peaks, ratios, test_image  # noqa: E402
from skimage.morphology import h_maxima as skimage_h_maxima  # noqa: E402

from napari_genselfdiff.core.inference import (  # noqa: E402
    InferenceSettings,
    instances as instances_module,  # noqa: E402
    segment,
)
from napari_genselfdiff.core.inference.extrema import h_maxima_of_objects  # noqa: E402
from napari_genselfdiff.core.inference.predict import uses_channels_last  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.network.unet import count_parameters  # noqa: E402

#: How the split finds its markers (--h-maxima): both give the same markers (tests/core/test_extrema.py).
MARKERS = {"objects": h_maxima_of_objects, "skimage": skimage_h_maxima}


def model_fields(info, model) -> dict:
    """Which model was measured: its card name, file, output kind and network."""
    arch = info.architecture
    return {"model_name": info.display_name, "model_file": Path(str(info.path)).name, "output": info.output,
            "widths": list(arch.widths), "params_m": count_parameters(model) / 1e6}


def measure(emit: Emitter, *, model: str = "default", size: int = 1000, repeats: int = 3,
            precisions: tuple[str, ...] = ("auto",), instances: bool = True, peaks: dict | None = None,
            tile: int | None = None, memory_formats: tuple[str, ...] = ("default",),
            h_maxima: tuple[str, ...] = ("objects",), flips: tuple[bool, ...] = (False,)) -> list[dict]:
    """Segment a size x size image; one "segment" figure per variant and job (labels, + instances)."""
    net, info = load_model(model)
    image, source = test_image(size)
    records = []
    formats = {"default": None, "contiguous": False, "channels-last": True}
    variants = [(p, f, h, m) for p in precisions for f in memory_formats for h in h_maxima for m in flips]
    try:
        for precision, memory_format, markers, mirrored in variants:
            instances_module.h_maxima_of_objects = MARKERS[markers]
            base = None
            for with_instances in ([False, True] if instances else [False]):
                settings = InferenceSettings(device="cpu", precision=precision, instances=with_instances,
                                             channels_last=formats[memory_format], flips=mirrored,
                                             **({"tile": tile} if tile else {}))
                result = segment(net, info, image, settings)  # warm-up
                walls, cpus, forwards = [], [], []
                for _ in range(repeats):
                    with ForwardTimer() as timer, Clock() as clock:
                        result = segment(net, info, image, settings)
                        labels = np.asarray(result.labels)
                    walls.append(clock.wall)
                    cpus.append(clock.cpu)
                    forwards.append(timer.seconds)
                wall, cpu = statistics.median(walls), statistics.median(cpus)
                th, tw = result.tile_shape
                gflop = forward_flops(net.config, th, tw) * result.tiles * (4 if mirrored else 1) / 1e9
                values = {
                    "job": "labels+instances" if with_instances else "labels", "instances": with_instances,
                    **model_fields(info, net), "source": source, "image": [size, size],
                    "precision": result.precision, "asked_precision": precision, "tiles": result.tiles,
                    "memory_format": "channels-last" if uses_channels_last(net, settings) else "contiguous",
                    "h_maxima": markers, "flips": mirrored,
                    "tile_shape": [th, tw], "wall_s": wall, "all_wall_s": [round(w, 3) for w in walls], "cpu_s": cpu,
                    "forward_s": statistics.median(forwards),
                    "outside_forward_s": statistics.median(w - f for w, f in zip(walls, forwards)),
                    "nucleus_fraction": float((labels > 0).mean()),
                    **ratios(gflop, wall, cpu, peaks or {}),  # the whole job's rate
                }
                # The network's own rate (time inside its forward only), against the same peaks.
                values["network_gflops"] = gflop / values["forward_s"]
                for name, peak in (peaks or {}).items():
                    values[f"network_ratio_{name}_peak"] = values["network_gflops"] / peak["gflops"]
                if with_instances and base is not None:
                    # The splitting runs outside the network: its cost is the growth of the time outside the
                    # forward passes, steadier on a busy machine than the difference of two wall times.
                    values["ratio_to_labels_only"] = wall / base["wall_s"]
                    values["cpu_ratio_to_labels_only"] = cpu / base["cpu_s"]
                    values["instances_extra_s"] = values["outside_forward_s"] - base["outside_forward_s"]
                if with_instances:
                    values["nuclei"] = int(result.instances.max()) if result.instances is not None else None
                record = emit("segment", **values)
                base = base or record
                records.append(record)
    finally:  # the product's split again for whatever runs next in this process
        instances_module.h_maxima_of_objects = h_maxima_of_objects
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="a bundled model's name or a model file (default: default)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--tile", type=int, default=None, help="inference tile (default: InferenceSettings's)")
    p.add_argument("--precision", nargs="+", default=["auto"], help="auto fp32 bf16 ... (default: auto)")
    p.add_argument("--instances", action="store_true", help="also time the job with nuclei split, after each labels-only one")
    p.add_argument("--peaks", action="store_true", help="measure the GEMM peaks first and give ratios to them")
    p.add_argument("--memory-format", nargs="+", default=["default"], choices=["default", "contiguous", "channels-last"])
    p.add_argument("--h-maxima", nargs="+", default=["objects"], choices=sorted(MARKERS),
                   help="the split's markers: object by object (the product) or skimage's whole image (before)")
    p.add_argument("--flips", nargs="+", default=["off"], choices=["off", "on"],
                   help="test-time flips (InferenceSettings.flips) off and/or on (default: off)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON lines to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    emit = Emitter(args.out)
    emit("machine", **machine())
    peaks = measure_peaks(emit) if args.peaks else {}
    measure(emit, model=args.model, size=args.size, repeats=args.repeats, precisions=tuple(args.precision),
            instances=args.instances, peaks=peaks, tile=args.tile, memory_formats=tuple(args.memory_format),
            h_maxima=tuple(args.h_maxima), flips=tuple(f == "on" for f in args.flips))
    return 0


if __name__ == "__main__":
    sys.exit(main())
