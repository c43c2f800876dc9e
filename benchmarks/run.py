"""Performance benchmarks in one command: one JSON line per figure on stdout (and in --out).

    python benchmarks/run.py [--quick] [--threads N] [--out FIGURES.jsonl] [--only PIECE ...]

Pieces (all by default, in this order):

- ``peaks``: fp32 and bf16 GEMM (and 3x3 convolution) throughput measured in this run: the
  denominators of every ratio printed afterwards.
- ``segment``: one 1000x1000 MoNuSeg image (the first of ../shared/data/monuseg/test/images, else
  a synthetic H&E-like image) segmented by random-weight tiny, small and default networks with the
  default :class:`InferenceSettings`: wall and CPU time, model FLOPs over the tiles actually
  computed (``torch.utils.flop_counter``), achieved GFLOP/s, ratios to the peaks, and the tiling
  overhead (segment time / the time of one forward pass over the whole image).
- ``compare``: the same image with one setting changed at a time (the memory format the default
  does not use, tile 512 instead of 1024, level attention off, the other torch thread count, and
  glibc malloc keeping freed memory instead of returning it to the kernel, in child processes).
- ``train``: training patches/s for pretraining and fine-tuning at the sizes of
  src_train/configs/cpu.json (reusing src_train/bench_step.py's timing loop).
- ``large``: synthetic RGB images as an np.memmap (2500, 5000 and 10000 pixels square, to show
  time linear in the area and memory flat) and as a tiled JPEG TIFF read lazily tile by tile
  (10000x10000), segmented into an np.memmap of labels; each run is a fresh child process, so its
  peak memory is its own. Two "networks": ``pipeline``, a 1x1-convolution stand-in that measures
  everything except the network (all sizes), and ``nano``, a 10 k-parameter U-Net (up to
  --large-net-max, 5000): any real network at 10000x10000 takes far longer than the 10-minute
  budget on a 2-core CPU (its time per megapixel is in the ``segment`` figures).
- ``ui``: the largest napari event-loop stall while segmenting, as measured and printed by
  tests/plugin/test_plugin_segment.py::test_gui_stall_while_segmenting (run with pytest in a child).

The full run takes about 500 CPU-seconds (under 10 minutes on an idle 2-core machine; about twice
that when other jobs hold the cores). ``--quick`` shrinks everything (a 256x256 crop, comparisons
on 128x128, 64-pixel batch-2 training patches, images up to 2000x2000, no ``ui``) so that it
finishes in about a minute; tests/cli/test_benchmarks_smoke.py runs its pieces on even smaller sizes.
On a busy machine use ``--threads 1``: two threads contending with other processes were 2.5-3x
slower than one here. Every figure records the torch thread count, the load average
when it was taken and the process CPU seconds next to the wall time: on a shared machine wall times
are upper bounds, and ratios taken in the same run are the trustworthy numbers.
docs/performance.md has the figures measured on the development machine and what bounds each.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from napari_genselfdiff.core.allocator import keep_freed_memory  # noqa: E402
from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.model_files import ModelInfo, default_classes  # noqa: E402
from napari_genselfdiff.core.network import PRESETS, AttentionUNet, UNetConfig  # noqa: E402
from napari_genselfdiff.core.network.unet import count_parameters  # noqa: E402

MONUSEG = ROOT.parent / "shared" / "data" / "monuseg" / "test" / "images"
PIECES = ("peaks", "segment", "compare", "train", "large", "ui")
VARIANTS = ("channels_last", "tile", "level_attention", "threads", "malloc")
#: A 5-level network far smaller than "tiny" (about 10 k parameters, 7 GFLOP per megapixel), used for
#: the large images: it runs every layer type (convolutions, GroupNorm, bottleneck attention), so the
#: pipeline around it is the real one, but a 10000x10000 image takes minutes instead of hours.
NANO = UNetConfig(widths=(4, 8, 8, 16, 16), blocks_per_level=1, groups=4, attention_heads=1,
                  attention_dim_head=4, level_attention=False)
#: glibc settings that keep freed blocks in the heap instead of unmapping them: without them every
#: large activation is a fresh mmap whose pages the kernel zero-fills on first touch.
#: The child flag that calls core.allocator.keep_freed_memory() (what the CLI and training processes do).
KEEP_FREED_FLAG = "--keep-freed-memory"


# ---------------------------------------------------------------------------------------------
# Output and measurement helpers
# ---------------------------------------------------------------------------------------------
class Emitter:
    """Prints each figure as one JSON line and appends it to the --out file."""

    def __init__(self, out: Path | None, mode: str) -> None:
        self.out, self.mode, self.figures = out, mode, []
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("")

    def __call__(self, figure: str, **values) -> dict:
        record = {"figure": figure, **values}
        record.setdefault("threads", torch.get_num_threads())
        record["mode"] = self.mode
        record["load1"] = round(os.getloadavg()[0], 2)
        record = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
        self.figures.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if self.out is not None:
            with self.out.open("a") as handle:
                handle.write(line + "\n")
        return record


class Clock:
    """Wall and process CPU time (user + system, all threads) of a ``with`` block."""

    def __enter__(self) -> "Clock":
        self._r0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.user = r1.ru_utime - self._r0.ru_utime
        self.sys = r1.ru_stime - self._r0.ru_stime
        self.cpu = self.user + self.sys
        self.minflt = r1.ru_minflt - self._r0.ru_minflt


@contextlib.contextmanager
def torch_threads(n: int | None):
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def machine() -> dict:
    model = platform.processor() or platform.machine()
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
        for line in text.splitlines():
            if line.startswith("model name") and model in ("", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return {"cpu": model, "cores": os.cpu_count(), "isa": isa, "torch": torch.__version__,
            "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------
# Peaks
# ---------------------------------------------------------------------------------------------
def _rate(fn, flops: float, seconds: float) -> dict:
    fn()  # warm-up (library initialisation, primitive creation)
    times = []
    with Clock() as clock:
        start = time.perf_counter()
        while not times or (time.perf_counter() - start < seconds) or len(times) < 2:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return {"gflops": flops * len(times) / clock.wall / 1e9, "gflops_best": flops / min(times) / 1e9,
            "gflops_per_cpu_s": flops * len(times) / max(clock.cpu, 1e-9) / 1e9, "reps": len(times),
            "wall_s": clock.wall, "cpu_s": clock.cpu}


def measure_peaks(emit: Emitter, quick: bool, seconds: float | None = None) -> dict:
    """GEMM (torch.mm) and 3x3 convolution rates in fp32 and bf16; returns {name: record}."""
    seconds = seconds or (0.5 if quick else 2.0)
    peaks = {}
    for dtype, n in ((torch.float32, 1024 if quick else 2048), (torch.bfloat16, 256)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        name = "fp32" if dtype == torch.float32 else "bf16"
        peaks[name] = emit("gemm_peak", dtype=name, n=n, **_rate(lambda: torch.mm(a, b), 2.0 * n**3, seconds))
    for dtype in (torch.float32, torch.bfloat16):
        c, s = 64, (128 if dtype == torch.float32 else 64)
        x = torch.randn(1, c, s, s, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
        name = "fp32" if dtype == torch.float32 else "bf16"
        conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
        peaks[f"conv_{name}"] = emit("conv3x3_rate", dtype=name, shape=[1, c, s, s], channels_last=True,
                                     **_rate(conv, 2.0 * 9 * c * c * s * s, seconds / 2))
    return peaks


def ratios(gflop: float, wall: float, cpu: float, peaks: dict) -> dict:
    """Achieved GFLOP/s and its ratio to the fp32 and bf16 GEMM peaks of this run."""
    out = {"gflop": gflop, "gflops": gflop / wall}
    if "fp32" in peaks:
        out["ratio_fp32_peak"] = out["gflops"] / peaks["fp32"]["gflops"]
        # Per CPU-second: less sensitive to the share of the cores other processes take.
        out["ratio_fp32_peak_cpu"] = (gflop / max(cpu, 1e-9)) / peaks["fp32"]["gflops_per_cpu_s"]
    if "bf16" in peaks:
        out["ratio_bf16_peak"] = out["gflops"] / peaks["bf16"]["gflops"]
    return out


# ---------------------------------------------------------------------------------------------
# Networks, images, FLOPs
# ---------------------------------------------------------------------------------------------
class PipelineOnly(torch.nn.Module):
    """A stand-in for the network: one 1x1 convolution (RGB -> 2 logits, a few milliseconds per tile).
    Segmenting with it times and sizes everything around the network (reading tiles, normalising,
    blending, argmax, writing labels), so the pipeline's own cost per megapixel and its memory can be
    measured on a 10000x10000 image in seconds."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.head = torch.nn.Conv2d(3, config.out_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(x)


def net_config(name: str, level_attention: bool | None = None) -> UNetConfig:
    base = NANO if name in ("nano", "pipeline") else PRESETS[name]
    if level_attention is not None:
        base = replace(base, level_attention=level_attention)
    return base.with_head("classes", 2)


def make_model(config: UNetConfig, seed: int = 0, pipeline_only: bool = False) -> tuple[AttentionUNet, ModelInfo]:
    """A random-weight class-head network and its metadata (the time per image is a trained one's)."""
    torch.manual_seed(seed)
    model = (PipelineOnly(config) if pipeline_only else AttentionUNet(config)).eval()
    info = ModelInfo(architecture=config, classes=default_classes(["background", "nucleus"]),
                     provenance={"data": "none (random initialisation, for timing only)"})
    return model, info


_FLOPS: dict = {}


def forward_flops(config: UNetConfig, h: int, w: int) -> float:
    """Model FLOPs of one (1, 3, h, w) forward pass, counted on the meta device (nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    key = (config, h, w)
    if key not in _FLOPS:
        with torch.device("meta"):
            model = AttentionUNet(config)
            with FlopCounterMode(display=False) as counter:
                model(torch.empty(1, config.in_channels, h, w))
        _FLOPS[key] = float(counter.get_total_flops())
    return _FLOPS[key]


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import synthetic_he  # the test suite's H&E-like generator

        return synthetic_he(h, w, seed=seed)
    except ImportError:  # pytest absent: a plain textured pink/purple image does for timing
        rng = np.random.default_rng(seed)
        base = np.array([220, 150, 190], np.float32) + rng.normal(0, 25, (h, w, 3))
        return np.clip(base, 0, 255).astype(np.uint8)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(ROOT / "tests"))


def test_image(size: int) -> tuple[np.ndarray, str]:
    """A size x size crop of the first MoNuSeg test image, or a synthetic one when the data is absent."""
    files = sorted(glob.glob(str(MONUSEG / "*.tif")))
    if files:
        import tifffile

        image = tifffile.imread(files[0])[..., :3]
        if image.shape[0] >= size and image.shape[1] >= size:
            return np.ascontiguousarray(image[:size, :size]), f"monuseg:{Path(files[0]).name}"
    return synthetic_image(size, size), "synthetic_he"


class ForwardTimer:
    """Forward hooks that add up the time spent inside ``model.forward`` (to separate the network's
    time from tiling, reading, blending and writing)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seconds, self.calls, self._t = 0.0, 0, 0.0
        self._handles = [model.register_forward_pre_hook(self._pre), model.register_forward_hook(self._post)]

    def _pre(self, *_):
        self._t = time.perf_counter()

    def _post(self, *_):
        self.seconds += time.perf_counter() - self._t
        self.calls += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------
# Segmentation of one image
# ---------------------------------------------------------------------------------------------
def run_segment(image: np.ndarray, config: UNetConfig, settings: InferenceSettings, peaks: dict,
                threads: int | None = None) -> dict:
    """Segment once; returns the figure's values (times, FLOPs over the tiles computed, ratios)."""
    model, info = make_model(config)
    with torch_threads(threads):
        # Warm the libraries up on a small input so the timed run does not pay one-off initialisation.
        with torch.inference_mode():
            model(torch.zeros(1, 3, 2 * config.downsample_factor, 2 * config.downsample_factor))
        timer = ForwardTimer(model)
        before = MemorySampler.read()
        with MemorySampler(0.01) as memory, Clock() as clock:
            result = segment(model, info, image, settings)
        timer.remove()
        used_threads = torch.get_num_threads()
    th, tw = result.tile_shape
    gflop = forward_flops(config, th, tw) * result.tiles / 1e9
    h, w = image.shape[:2]
    values = {
        "image": f"{h}x{w}", "network": _net_name(config), "params_m": count_parameters(model) / 1e6,
        "level_attention": config.level_attention, "tile": settings.tile,
        "overlap": min(settings.overlap, max(config.downsample_factor, settings.tile) // 2 - 1),
        "channels_last": settings.channels_last, "precision": result.precision, "tiles": result.tiles,
        "tile_shape": [th, tw], "threads": used_threads,
        "wall_s": clock.wall, "cpu_s": clock.cpu, "sys_s": clock.sys, "forward_s": timer.seconds,
        "outside_forward_s": clock.wall - timer.seconds,
        "pixels_computed_per_image_pixel": result.tiles * th * tw / float(h * w),
        **ratios(gflop, clock.wall, clock.cpu, peaks),
        # Memory the segmentation added on top of what the process held (the tile's activations,
        # the blending band, the labels): sampled every 10 ms, so short spikes can be missed.
        "peak_extra_anon_mb": (memory.peak_anon - before["RssAnon"]) / 1024.0**2,
    }
    if result.tiles == 1 and (th, tw) == (h, w):
        # One tile that is the whole image: its forward pass is "one forward over the same pixels".
        values["single_forward_s"] = timer.seconds
        values["tiling_overhead"] = clock.wall / timer.seconds
    return values


def _net_name(config: UNetConfig) -> str:
    for name, preset in {**PRESETS, "nano": NANO}.items():
        if preset.widths == config.widths and preset.blocks_per_level == config.blocks_per_level:
            return name
    return "-".join(map(str, config.widths))


def piece_segment(emit: Emitter, args, peaks: dict) -> dict:
    image, source = test_image(args.size)
    baselines = {}
    settings = InferenceSettings(tile=args.tile) if args.tile else InferenceSettings()
    for net in args.nets:
        values = run_segment(image, net_config(net), settings, peaks, args.threads)
        baselines[net] = values
        emit("segment", source=source, **values)
    return baselines


def piece_compare(emit: Emitter, args, peaks: dict, baselines: dict) -> None:
    """One setting changed at a time against the defaults, on ``--compare-net``."""
    size = args.compare_size
    image, source = test_image(size)
    net = args.compare_net
    base = baselines.get(net) if size == args.size and not args.tile else None
    if base is None and set(args.variants) - {"malloc"}:
        base = run_segment(image, net_config(net), InferenceSettings(), peaks, args.threads)
        emit("segment", source=source, **base)
    single = base.get("single_forward_s") if base else None
    small_tile = 512 if size > 512 else max(64, size // 2)
    flipped = not InferenceSettings().channels_last
    variants = [
        ("channels_last", flipped, dict(settings=InferenceSettings(channels_last=flipped))),
        ("tile", small_tile, dict(settings=InferenceSettings(tile=small_tile))),
        ("level_attention", False, dict(config=net_config(net, level_attention=False))),
        ("threads", 2 if torch.get_num_threads() == 1 else 1,
         dict(threads=2 if torch.get_num_threads() == 1 else 1)),
    ]
    defaults = InferenceSettings()
    for changed, value, kw in variants:
        if changed not in args.variants:
            continue
        values = run_segment(image, kw.get("config", net_config(net)), kw.get("settings", defaults), peaks,
                             kw.get("threads", args.threads))
        if single and "tiling_overhead" not in values:
            values["tiling_overhead"] = values["wall_s"] / single
        emit("compare", source=source, changed=changed, value=value, baseline_wall_s=base["wall_s"],
             speedup_vs_default=base["wall_s"] / values["wall_s"],
             cpu_speedup_vs_default=base["cpu_s"] / values["cpu_s"], **values)
    # glibc malloc tuning: a process-wide setting, so both sides run in fresh child processes, on at
    # most a 512-pixel image (two forward passes per side).
    if "malloc" not in args.variants:
        return
    size = min(size, 512)
    sides = {}
    for label, extra in (("default", []), ("keep_freed_memory", [KEEP_FREED_FLAG])):
        sides[label] = child(["--child", "forward", "--net", net, "--size", str(size), *extra], {}, args)
    if all(sides.values()):
        d, k = sides["default"], sides["keep_freed_memory"]
        emit("compare", source="random input (forward passes only)", changed="malloc", value="keep_freed_memory",
             network=net, image=f"{size}x{size}", how="core.allocator.keep_freed_memory()", threads=d["threads"],
             baseline_wall_s=d["wall_s"], baseline_cpu_s=d["cpu_s"], baseline_sys_s=d["sys_s"],
             baseline_minflt=d["minflt"], wall_s=k["wall_s"], cpu_s=k["cpu_s"], sys_s=k["sys_s"],
             minflt=k["minflt"], speedup_vs_default=d["wall_s"] / k["wall_s"],
             cpu_speedup_vs_default=d["cpu_s"] / k["cpu_s"],
             first_pass_cpu_s=[d["first_cpu_s"], k["first_cpu_s"]],
             first_pass_sys_s=[d["first_sys_s"], k["first_sys_s"]],
             first_pass_cpu_speedup=d["first_cpu_s"] / k["first_cpu_s"],
             note="second forward pass in a fresh process (first pass: first_pass_*, [default, tuned])")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def piece_train(emit: Emitter, args, peaks: dict) -> None:
    sys.path.insert(0, str(ROOT / "src_train"))
    from bench_step import _time_steps, make_train_step  # src_train/bench_step.py's step and timing loop
    from torch.utils.flop_counter import FlopCounterMode

    from napari_genselfdiff.core.diffusion import GaussianDiffusion
    from napari_genselfdiff.core.inference.device import Precision
    from napari_genselfdiff.core.losses import SSFocalLoss

    config_file = ROOT / "src_train" / "configs" / "cpu.json"
    configured = json.loads(config_file.read_text())
    diffusion, ss_focal = GaussianDiffusion.from_config(), SSFocalLoss()
    gen = torch.Generator().manual_seed(0)
    with torch_threads(args.threads):
        for stage in ("pretrain", "finetune"):
            section = configured[stage]
            arch, size, batch = section["arch"], int(section["patch_size"]), int(section["batch"])
            if args.quick:
                size, batch = args.train_size, args.train_batch
            base = PRESETS[arch]
            cfg = base if stage == "pretrain" else base.with_head("classes", 2)
            torch.manual_seed(0)
            model = AttentionUNet(cfg).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            x = torch.rand(batch, 3, size, size) * 2 - 1
            y = torch.randint(0, 2, (batch, size, size))

            step = make_train_step(stage, model, opt, x, y, diffusion=diffusion, ss_focal=ss_focal,
                                   generator=gen, device=torch.device("cpu"), precision=Precision.FP32)
            with FlopCounterMode(display=False) as counter:  # also the warm-up step
                step()
            gflop = counter.get_total_flops() / 1e9
            with Clock() as clock:
                times = _time_steps(step, 0, args.train_steps)
            med = statistics.median(times)
            emit("train", stage=stage, network=arch, config=str(config_file.relative_to(ROOT)),
                 configured_patch=int(section["patch_size"]), configured_batch=int(section["batch"]),
                 patch=size, batch=batch, steps=len(times), step_s_median=med, step_s=times,
                 patches_per_s=batch / med, cpu_s_per_step=clock.cpu / len(times),
                 **ratios(gflop, med, clock.cpu / len(times), peaks))


# ---------------------------------------------------------------------------------------------
# Large images (each in a child process)
# ---------------------------------------------------------------------------------------------
class LazyTiledTiff:
    """A tiled TIFF page as a read-only (H, W, C) array that decodes only the tiles a slice touches
    (what a whole-slide reader does; zarr is not needed)."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self._tif = tifffile.TiffFile(path)
        page = self._tif.pages[0]
        if not page.is_tiled or page.planarconfig != 1:
            raise ValueError(f"{path}: not a tiled, chunky (RGB-interleaved) TIFF")
        self._page, self._decode = page, page.decode
        self.shape, self.dtype, self.ndim = tuple(page.shape), page.dtype, len(page.shape)
        self._th, self._tw = page.tilelength, page.tilewidth
        self._across = math.ceil(self.shape[1] / self._tw)
        self.tiles_decoded = 0

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        ys, xs = (list(key) + [slice(None)] * 2)[:2]
        rest = tuple(key[2:])
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        out = np.empty((y1 - y0, x1 - x0, self.shape[2]), self.dtype)
        fh = self._tif.filehandle
        for ty in range(y0 // self._th, (y1 - 1) // self._th + 1):
            for tx in range(x0 // self._tw, (x1 - 1) // self._tw + 1):
                index = ty * self._across + tx
                fh.seek(self._page.dataoffsets[index])
                data = fh.read(self._page.databytecounts[index])
                tile = self._decode(data, index, jpegtables=self._page.jpegtables)[0]
                tile = tile.reshape(tile.shape[-3:])  # (tile h, tile w, samples)
                ty0, tx0 = ty * self._th, tx * self._tw
                sy0, sy1 = max(y0, ty0), min(y1, ty0 + self._th)
                sx0, sx1 = max(x0, tx0), min(x1, tx0 + self._tw)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0]
                self.tiles_decoded += 1
        return out[(slice(None), slice(None), *rest)] if rest else out


def make_memmap_image(path: Path, size: int, block: np.ndarray) -> None:
    """A size x size x 3 uint8 memmap filled block by block (flipped copies of one H&E-like block)."""
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(size, size, 3))
    b = block.shape[0]
    for i, y in enumerate(range(0, size, b)):
        for j, x in enumerate(range(0, size, b)):
            tile = block[:: (-1) ** i, :: (-1) ** j]
            image[y : y + b, x : x + b] = tile[: min(b, size - y), : min(b, size - x)]
    image.flush()
    del image


def make_tiled_tiff(path: Path, source: Path, tile: int = 256) -> None:
    """Write the memmap image ``source`` as a tiled JPEG TIFF (as whole-slide scanners do), tile by tile."""
    import tifffile

    image = np.load(source, mmap_mode="r")
    h, w = image.shape[:2]

    def tiles():
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                block = np.zeros((tile, tile, 3), np.uint8)
                part = image[y : y + tile, x : x + tile]
                block[: part.shape[0], : part.shape[1]] = part
                yield block

    try:
        tifffile.imwrite(path, tiles(), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile),
                         photometric="rgb", compression="jpeg", compressionargs={"level": 90})
    except Exception:  # no JPEG codec (imagecodecs absent): uncompressed tiles
        tifffile.imwrite(path, tiles(), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb")


class MemorySampler:
    """Samples /proc/self/status every few ms: the peak of anonymous memory (heap, tensors), which
    excludes the file-backed pages of memory-mapped images and labels, and the peak of all RSS."""

    FIELDS = ("RssAnon", "RssFile", "VmRSS", "VmHWM")

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak_anon, self.peak_rss = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @classmethod
    def read(cls) -> dict:
        values = {}
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                name = line.split(":", 1)[0]
                if name in cls.FIELDS:
                    values[name] = int(line.split()[1]) * 1024
        if not values:  # not Linux: psutil, else the peak from getrusage
            try:
                import psutil

                rss = psutil.Process().memory_info().rss
                values = {"RssAnon": rss, "RssFile": 0, "VmRSS": rss, "VmHWM": rss}
            except ImportError:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                values = {"RssAnon": peak, "RssFile": 0, "VmRSS": peak, "VmHWM": peak}
        return values

    def _run(self) -> None:
        while not self._stop.is_set():
            values = self.read()
            self.peak_anon = max(self.peak_anon, values["RssAnon"])
            self.peak_rss = max(self.peak_rss, values["VmRSS"])
            time.sleep(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        values = self.read()
        self.peak_anon = max(self.peak_anon, values["RssAnon"])
        self.peak_rss = max(self.peak_rss, values["VmRSS"], values["VmHWM"])


def child_large(args) -> dict:
    """(in a child process) Segment one large image into a memmap of labels; time and memory."""
    path = Path(args.path)
    if args.source == "tiff":
        image = LazyTiledTiff(path)
    else:
        image = np.load(path, mmap_mode="r")
    h, w = image.shape[:2]
    model, info = make_model(net_config(args.net), pipeline_only=args.net == "pipeline")
    out_path = Path(args.tmp) / f"labels_{args.source}_{h}.npy"
    labels = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(h, w))
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))  # warm-up
    with contextlib.suppress(OSError):  # reset the kernel's peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    before = MemorySampler.read()
    settings = InferenceSettings()
    with MemorySampler() as memory, Clock() as clock:
        result = segment(model, info, image, settings, out=labels)
    labels.flush()
    th, tw = result.tile_shape
    nonzero = float(np.asarray(labels[:: max(1, h // 512), :: max(1, w // 512)]).mean())
    del labels
    with contextlib.suppress(OSError):
        out_path.unlink()
    mb = 1024.0**2
    return {
        "image": f"{h}x{w}", "source": args.source, "network": args.net, "megapixels": h * w / 1e6,
        "tiles": result.tiles, "tile_shape": [th, tw], "threads": torch.get_num_threads(),
        "wall_s": clock.wall, "cpu_s": clock.cpu, "sys_s": clock.sys,
        "s_per_megapixel": clock.wall / (h * w / 1e6), "cpu_s_per_megapixel": clock.cpu / (h * w / 1e6),
        "gflop": (forward_flops(net_config(args.net), th, tw) * result.tiles / 1e9) if args.net != "pipeline" else 0.0,
        "image_mb": h * w * 3 / mb, "labels_mb": h * w / mb,
        "rss_before_mb": before["VmRSS"] / mb, "anon_before_mb": before["RssAnon"] / mb,
        "peak_anon_mb": memory.peak_anon / mb,
        "peak_extra_anon_mb": (memory.peak_anon - before["RssAnon"]) / mb,
        "peak_rss_mb": memory.peak_rss / mb,
        "peak_extra_rss_mb": (memory.peak_rss - before["VmRSS"]) / mb,
        "labels_mean": nonzero,
        "tiff_tiles_decoded": getattr(image, "tiles_decoded", None),
    }


def child_forward(args) -> dict:
    """(in a child process) One timed forward pass of ``--net`` at ``--size`` (for the malloc comparison)."""
    model, _ = make_model(net_config(args.net))
    fmt = torch.channels_last if InferenceSettings().channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(1, 3, args.size, args.size).contiguous(memory_format=fmt)
    with torch.inference_mode():
        with Clock() as first:  # a fresh process's first image (the heap grows here either way)
            model(x)
        with Clock() as clock:  # every later tile or image
            model(x)
    return {"wall_s": clock.wall, "cpu_s": clock.cpu, "sys_s": clock.sys, "minflt": clock.minflt,
            "first_wall_s": first.wall, "first_cpu_s": first.cpu, "first_sys_s": first.sys,
            "threads": torch.get_num_threads()}


def child(extra_args: list[str], env: dict, args) -> dict | None:
    """Run ``run.py --child ...`` in a fresh process; returns its JSON line (None if it failed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *extra_args]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        print(f"# child {' '.join(extra_args)} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def piece_large(emit: Emitter, args) -> None:
    tmp = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="gsd_bench_"))
    tmp.mkdir(parents=True, exist_ok=True)
    block = synthetic_image(512, 512, seed=1)
    made, written = [], {}
    try:
        runs = [(net, "memmap", s) for net in args.large_nets for s in args.large_sizes]
        runs += [(net, "tiff", s) for net in args.large_nets for s in args.tiff_sizes]
        # A real network only up to --large-net-max (its time per megapixel is already linear there).
        runs = [r for r in runs if r[0] == "pipeline" or r[2] <= args.large_net_max]
        for net, source, size in runs:
            npy = tmp / f"image_{size}.npy"
            if not npy.exists():
                make_memmap_image(npy, size, block)
                made.append(npy)
            path = npy
            if source == "tiff":
                path = tmp / f"image_{size}.tif"
                if not path.exists():
                    with Clock() as made_clock:
                        make_tiled_tiff(path, npy)
                    made.append(path)
                    written[path] = made_clock.wall
            values = child(["--child", "large", "--source", source, "--path", str(path), "--net", net,
                            "--tmp", str(tmp)], {}, args)
            if values is None:
                continue
            values["file_mb"] = path.stat().st_size / 1024.0**2
            if source == "tiff":
                values["tiff_write_s"] = written.get(path)
                values["tiff_tile"] = 256
            emit("large", **values)
    finally:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        if not args.tmp:
            with contextlib.suppress(OSError):
                tmp.rmdir()


def large_summary(emit: Emitter, figures: list[dict]) -> None:
    """Time per megapixel and memory across sizes: linear time means a flat s/Mpx, flat memory a flat peak."""
    for net in dict.fromkeys(f["network"] for f in figures if f["figure"] == "large"):
        rows = [f for f in figures if f["figure"] == "large" and f["source"] == "memmap" and f["network"] == net]
        if len(rows) >= 2:
            _scaling(emit, sorted(rows, key=lambda f: f["megapixels"]))


def _scaling(emit: Emitter, rows: list[dict]) -> None:
    small, big = rows[0], rows[-1]
    area_ratio = big["megapixels"] / small["megapixels"]
    emit("large_scaling", sizes=[f["image"] for f in rows], network=big["network"], threads=big["threads"],
         area_ratio=area_ratio, time_ratio=big["wall_s"] / small["wall_s"],
         cpu_time_ratio=big["cpu_s"] / small["cpu_s"],
         time_ratio_over_area_ratio=(big["wall_s"] / small["wall_s"]) / area_ratio,
         s_per_megapixel=[f["s_per_megapixel"] for f in rows],
         cpu_s_per_megapixel=[f["cpu_s_per_megapixel"] for f in rows],
         peak_extra_anon_mb=[f["peak_extra_anon_mb"] for f in rows],
         peak_extra_rss_mb=[f["peak_extra_rss_mb"] for f in rows],
         image_and_labels_mb=[f["image_mb"] + f["labels_mb"] for f in rows])


# ---------------------------------------------------------------------------------------------
# UI stall (measured by the plugin's test)
# ---------------------------------------------------------------------------------------------
UI_TEST = "tests/plugin/test_plugin_segment.py::test_gui_stall_while_segmenting"


def piece_ui(emit: Emitter, args) -> None:
    """Run the plugin's stall test (pytest -s) and read the '[stall] ... max GUI gap X ms' line."""
    import re

    cmd = [sys.executable, "-m", "pytest", UI_TEST, "-s", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        text = proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        text, proc = str(exc), None
    match = re.search(r"\[stall\] (.*?max GUI gap ([0-9.]+) ms.*)", text)
    emit("ui_stall", max_gap_ms=float(match.group(2)) if match else None,
         line=match.group(1).strip() if match else None, source=UI_TEST,
         command="python " + " ".join(cmd[1:]), threads=None,
         passed=bool(proc and proc.returncode == 0), wall_s=time.perf_counter() - start,
         note=None if match else "the test did not print its [stall] line (napari/pytest-qt missing?)")


# ---------------------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, well under two minutes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON lines to this file")
    parser.add_argument("--only", nargs="+", choices=PIECES, default=None, help="run only these pieces")
    parser.add_argument("--size", type=int, default=None, help="side of the segmented image (1000; quick 256)")
    parser.add_argument("--nets", nargs="+", default=None, choices=sorted(PRESETS) + ["nano"],
                        help="networks for 'segment' (tiny small default; quick tiny small)")
    parser.add_argument("--tile", type=int, default=None,
                        help="tile for 'segment' (default: InferenceSettings().tile)")
    parser.add_argument("--compare-net", default="tiny", choices=sorted(PRESETS) + ["nano"],
                        help="network for 'compare' (tiny: one setting at a time costs a run each)")
    parser.add_argument("--compare-size", type=int, default=None,
                        help="image side for 'compare' (default: --size; quick 128)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="which settings 'compare' changes (default: all)")
    parser.add_argument("--large-nets", nargs="+", default=["pipeline", "nano"],
                        choices=sorted(PRESETS) + ["nano", "pipeline"],
                        help="'pipeline' (a 1x1-convolution stand-in: the cost of everything but the "
                             "network) and 'nano' (a ~10 k-parameter 5-level U-Net)")
    parser.add_argument("--large-net-max", type=int, default=None,
                        help="largest side segmented with a real network in 'large' (5000; quick 1000)")
    parser.add_argument("--large-sizes", nargs="*", type=int, default=None,
                        help="memmap image sides (2500 5000 10000; quick 1000 2000)")
    parser.add_argument("--tiff-sizes", nargs="*", type=int, default=None,
                        help="tiled TIFF image sides (10000; quick 2000)")
    parser.add_argument("--peak-seconds", type=float, default=None,
                        help="how long each peak is measured (2; quick 0.5)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps (2; quick 1)")
    parser.add_argument("--train-size", type=int, default=64, help="quick mode's training patch side")
    parser.add_argument("--train-batch", type=int, default=2, help="quick mode's training batch")
    parser.add_argument("--tmp", default=None, help="folder for the large image files (default: a temp folder)")
    # Internal: one measurement in a fresh child process.
    parser.add_argument("--child", choices=["large", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=["memmap", "tiff"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--net", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument(KEEP_FREED_FLAG, dest="keep_freed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    q = args.quick
    args.size = args.size or (256 if q else 1000)
    args.compare_size = args.compare_size or (128 if q else args.size)
    args.nets = args.nets or (["tiny", "small"] if q else ["nuclei", "tiny", "small", "paper"])
    if args.large_sizes is None:
        args.large_sizes = [1000, 2000] if q else [2500, 5000, 10000]
    args.tiff_sizes = args.tiff_sizes if args.tiff_sizes is not None else ([2000] if q else [10000])
    args.train_steps = args.train_steps or (1 if q else 2)
    if args.large_net_max is None:
        args.large_net_max = 1000 if q else 5000
    args.only = args.only or [p for p in PIECES if not (q and p == "ui")]
    return args


def run(args: argparse.Namespace) -> list[dict]:
    """Run the pieces named in ``args.only``; returns the figures (also printed)."""
    emit = Emitter(args.out, "quick" if args.quick else "full")
    start = time.perf_counter()
    with torch_threads(args.threads):
        emit("machine", **machine(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             command="python benchmarks/run.py " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("run.py") else None,
             pieces=args.only)
        peaks = measure_peaks(emit, args.quick, args.peak_seconds) if "peaks" in args.only else {}
        baselines = piece_segment(emit, args, peaks) if "segment" in args.only else {}
        if "compare" in args.only:
            piece_compare(emit, args, peaks, baselines)
        if "train" in args.only:
            piece_train(emit, args, peaks)
        if "large" in args.only:
            piece_large(emit, args)
            large_summary(emit, emit.figures)
        if "ui" in args.only:
            piece_ui(emit, args)
        emit("total", wall_s=time.perf_counter() - start, figures=len(emit.figures))
    return emit.figures


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.keep_freed:
            keep_freed_memory()
        values = child_large(args) if args.child == "large" else child_forward(args)
        print(json.dumps(values), flush=True)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
