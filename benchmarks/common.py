"""What every benchmark shares: JSON-line output, timing, the machine's description, the GEMM peaks
measured in the same run (the denominators of every ratio), FLOP counting and the test image.

Each benchmark file imports this module (``from common import ...``, benchmarks/ is the script's
folder); nothing here imports tests/ or src_train/. Figures that depend on the machine are printed as
JSON lines, never asserted against a time.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package, when the benchmark runs from a source checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: The first of these test images is cut to the benchmark's size (the 14 MoNuSeg test images are 1000x1000).
MONUSEG_TEST = ROOT.parent / "shared" / "data" / "monuseg" / "test" / "images"


class Emitter:
    """Prints each figure as one JSON line (and appends it to ``out`` when given); keeps them all."""

    def __init__(self, out: Path | None = None) -> None:
        self.out, self.figures = out, []
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("")

    def __call__(self, figure: str, **values) -> dict:
        record = {"figure": figure, **values}
        record.setdefault("threads", torch.get_num_threads())
        record["load1"] = round(os.getloadavg()[0], 2)
        record = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
        self.figures.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if self.out is not None:
            with self.out.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        return record


class Clock:
    """Wall time and process CPU time (user + system, all threads) of a ``with`` block."""

    def __enter__(self) -> Clock:
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
    """Run the block with ``n`` torch CPU threads (None: leave torch's choice)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def machine() -> dict:
    """The CPU, its cores and vector extensions, and whether it computes bf16 natively
    (``native_bf16``: the avx512_bf16 or amx_bf16 flag, as ``grep avx512_bf16 /proc/cpuinfo`` shows;
    ``auto`` precision picks bf16 there, fp32 elsewhere), torch and Python versions."""
    from napari_genselfdiff.core.inference.device import cpu_has_native_bf16

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    flags = cpu_flags()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": model, "cores": os.cpu_count(), "isa": isa,
            "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
            "auto_precision_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
            "python": platform.python_version(), "load1": round(os.getloadavg()[0], 2)}


def _rate(fn, flops: float, seconds: float) -> dict:
    fn()  # warm-up (library initialisation, primitive creation)
    times = []
    with Clock() as clock:
        start = time.perf_counter()
        while len(times) < 2 or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return {"gflops": flops * len(times) / clock.wall / 1e9, "gflops_best": flops / min(times) / 1e9,
            "gflops_per_cpu_s": flops * len(times) / max(clock.cpu, 1e-9) / 1e9, "reps": len(times),
            "wall_s": clock.wall, "cpu_s": clock.cpu}


def measure_peaks(emit: Emitter, seconds: float = 1.0, n: int = 1024) -> dict:
    """fp32 and bf16 GEMM (``torch.mm``, n x n) rates in this run: {"fp32": record, "bf16": record}."""
    peaks = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        peaks[name] = emit("gemm_peak", dtype=name, n=n, **_rate(lambda: torch.mm(a, b), 2.0 * n**3, seconds))
    return peaks


def ratios(gflop: float, wall: float, cpu: float, peaks: dict) -> dict:
    """Achieved GFLOP/s and its ratios to the GEMM peaks measured in this run (per wall second and,
    less sensitive to other processes taking the cores, per CPU second)."""
    out = {"gflop": gflop, "gflops": gflop / wall}
    for name, peak in peaks.items():
        out[f"ratio_{name}_peak"] = out["gflops"] / peak["gflops"]
        out[f"ratio_{name}_peak_cpu"] = (gflop / max(cpu, 1e-9)) / peak["gflops_per_cpu_s"]
    return out


def forward_flops(config, h: int, w: int) -> float:
    """Model FLOPs of one (1, 3, h, w) forward pass (convolutions, matmuls, attention), counted on the
    meta device: nothing is computed."""
    from torch.utils.flop_counter import FlopCounterMode

    from napari_genselfdiff.core.network import AttentionUNet

    with torch.device("meta"):
        model = AttentionUNet(config)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, config.in_channels, h, w))
    return float(counter.get_total_flops())


def test_image(size: int) -> tuple[np.ndarray, str]:
    """A size x size RGB uint8 H&E image and where it came from: a crop of the first MoNuSeg test
    image (../shared/data/monuseg), else the bundled sample (512x512) mirrored to the size."""
    from napari_genselfdiff.core.defaults import SAMPLE_IMAGE
    from napari_genselfdiff.core.io.read import read_array

    files = sorted(glob.glob(str(MONUSEG_TEST / "*.tif")))
    if files:
        image = read_array(files[0])[..., :3]
        if image.shape[0] >= size and image.shape[1] >= size:
            return np.ascontiguousarray(image[:size, :size]), f"monuseg:{Path(files[0]).name}"
    sample = read_array(SAMPLE_IMAGE)[..., :3]
    pad = ((0, max(0, size - sample.shape[0])), (0, max(0, size - sample.shape[1])), (0, 0))
    tiled = np.pad(sample, pad, mode="symmetric")
    return np.ascontiguousarray(tiled[:size, :size]), f"sample:{Path(SAMPLE_IMAGE).name} (mirrored)"


class ForwardTimer:
    """Adds up the time spent inside ``AttentionUNet.forward`` during a ``with`` block: the network's
    share of a segmentation (the class's method is wrapped, so the fused copy inference runs counts too)."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def __enter__(self) -> ForwardTimer:
        from napari_genselfdiff.core.network import AttentionUNet

        self._cls, self._forward = AttentionUNet, AttentionUNet.forward
        timer, forward = self, self._forward

        def timed(module, *args, **kwargs):
            start = time.perf_counter()
            try:
                return forward(module, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start
                timer.calls += 1

        AttentionUNet.forward = timed
        return self

    def __exit__(self, *exc) -> None:
        self._cls.forward = self._forward


class MemorySampler:
    """Samples /proc/self/status every few ms: the peak of anonymous memory (tensors, heap; not the
    file-backed pages of memory-mapped images) and of all resident memory. Linux only (zeros elsewhere)."""

    FIELDS = ("RssAnon", "VmRSS")

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak_anon, self.peak_rss = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @classmethod
    def read(cls) -> dict:
        values = dict.fromkeys(cls.FIELDS, 0)
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                name = line.split(":", 1)[0]
                if name in cls.FIELDS:
                    values[name] = int(line.split()[1]) * 1024
        return values

    def _sample(self) -> None:
        values = self.read()
        self.peak_anon = max(self.peak_anon, values["RssAnon"])
        self.peak_rss = max(self.peak_rss, values["VmRSS"])

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
