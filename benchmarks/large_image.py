"""Large images: time per megapixel and peak memory of ``segment`` on memory-mapped RGB images of
growing size, labels written into a memory-mapped array band by band.

    python benchmarks/large_image.py [--sizes 2500 5000 10000] [--nets pipeline nano] [--threads 1]
                                     [--net-max 5000] [--out FILE.jsonl]

Each (network, size) runs in a fresh child process, so its peak memory is its own. The image is
flipped copies of the bundled sample. Two stand-ins for the network keep 10000x10000 inside minutes on
a small CPU: ``pipeline``, a 1x1 convolution (everything except the network: reading, normalising,
blending, the class decision, writing), and ``nano``, a 5-level U-Net of about 10 k parameters (every
layer type), used up to --net-max. "peak_extra_anon_mb" is the growth of anonymous memory (tensors,
the blending band), which leaves out the file-backed pages of the mapped image and labels.
A ``large_scaling`` figure per network compares the smallest and largest size (time ratio over area
ratio: 1 means time linear in the area). Whole slides (tiled, pyramidal TIFFs read lazily through
core/io/slide.py): benchmarks/slide.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import Clock, Emitter, MemorySampler, forward_flops, test_image  # noqa: E402

from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.model_files import ModelInfo, default_classes  # noqa: E402
from napari_genselfdiff.core.network import AttentionUNet, UNetConfig  # noqa: E402

#: About 10 k parameters, 7 GFLOP per megapixel: the real pipeline around a network that runs every layer type.
NANO = UNetConfig(widths=(4, 8, 8, 16, 16), blocks_per_level=1, groups=4, attention_heads=1,
                  attention_dim_head=4, level_attention=False).with_head("classes", 2)


class PipelineOnly(torch.nn.Module):
    """A 1x1 convolution standing in for the network (a few milliseconds per tile)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = NANO
        self.head = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(x)


def make_image(path: Path, size: int) -> None:
    """A size x size x 3 uint8 .npy of flipped copies of a 512x512 H&E image, written block by block."""
    block, _ = test_image(512)
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(size, size, 3))
    for i, y in enumerate(range(0, size, 512)):
        for j, x in enumerate(range(0, size, 512)):
            tile = block[:: (-1) ** i, :: (-1) ** j]
            image[y : y + 512, x : x + 512] = tile[: min(512, size - y), : min(512, size - x)]
    image.flush()
    del image


def child(path: Path, net: str, tmp: Path) -> dict:
    """(in the child process) Segment the memmap at ``path`` into a memmap of labels; time and memory."""
    torch.manual_seed(0)
    model = (PipelineOnly() if net == "pipeline" else AttentionUNet(NANO)).eval()
    info = ModelInfo(architecture=NANO, classes=default_classes(["background", "nucleus"]),
                     provenance={"data": "none (random weights, for timing only)"})
    image = np.load(path, mmap_mode="r")
    h, w = image.shape[:2]
    out_path = tmp / f"labels_{os.getpid()}.npy"
    labels = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(h, w))
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))  # warm-up
    before = MemorySampler.read()
    with MemorySampler() as memory, Clock() as clock:
        result = segment(model, info, image, InferenceSettings(device="cpu", precision="fp32"), out=labels)
    labels.flush()
    del labels
    out_path.unlink(missing_ok=True)
    th, tw = result.tile_shape
    mb, mpx = 1024.0**2, h * w / 1e6
    return {"image": f"{h}x{w}", "network": net, "megapixels": mpx, "tiles": result.tiles, "tile_shape": [th, tw],
            "threads": torch.get_num_threads(), "wall_s": clock.wall, "cpu_s": clock.cpu,
            "s_per_megapixel": clock.wall / mpx, "cpu_s_per_megapixel": clock.cpu / mpx,
            "gflop": 0.0 if net == "pipeline" else forward_flops(NANO, th, tw) * result.tiles / 1e9,
            "image_mb": h * w * 3 / mb, "labels_mb": h * w / mb,
            "peak_extra_anon_mb": (memory.peak_anon - before["RssAnon"]) / mb, "peak_rss_mb": memory.peak_rss / mb}


def run_child(path: Path, net: str, tmp: Path, threads: int | None) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--nets", net, "--tmp", str(tmp)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"# large_image child {net} {path.name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(emit: Emitter, *, quick: bool = False, threads: int | None = None, sizes: list[int] | None = None,
            nets: tuple[str, ...] = ("pipeline", "nano"), net_max: int | None = None) -> list[dict]:
    sizes = sizes or ([500, 1000] if quick else [2500, 5000, 10000])
    net_max = net_max or (1000 if quick else 5000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gsd_bench_large_") as folder:
        tmp = Path(folder)
        for size in sizes:
            path = tmp / f"image_{size}.npy"
            make_image(path, size)
            for net in nets:
                if net != "pipeline" and size > net_max:
                    continue
                values = run_child(path, net, tmp, threads)
                if values is not None:
                    rows.append(emit("large", **values))
            path.unlink()
    for net in nets:
        mine = sorted((r for r in rows if r["network"] == net), key=lambda r: r["megapixels"])
        if len(mine) >= 2:
            small, big = mine[0], mine[-1]
            area = big["megapixels"] / small["megapixels"]
            emit("large_scaling", network=net, sizes=[r["image"] for r in mine], area_ratio=area,
                 time_ratio_over_area_ratio=big["wall_s"] / small["wall_s"] / area,
                 cpu_time_ratio_over_area_ratio=big["cpu_s"] / small["cpu_s"] / area,
                 peak_extra_anon_mb=[r["peak_extra_anon_mb"] for r in mine])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="image sides (2500 5000 10000)")
    p.add_argument("--nets", nargs="+", choices=["pipeline", "nano"], default=["pipeline", "nano"])
    p.add_argument("--net-max", type=int, default=None, help="largest side for nano (5000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="500 and 1000 pixels")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.nets[0], args.tmp)), flush=True)
        return 0
    measure(Emitter(args.out), quick=args.quick, threads=args.threads, sizes=args.sizes, nets=tuple(args.nets),
            net_max=args.net_max)
    return 0


if __name__ == "__main__":
    sys.exit(main())
