"""Shared fixtures: small model files, synthetic H&E-like images, and the real-data folder.

Kept general: test files add their own specific fixtures. Everything here is quick on a 2-core CPU:
networks are the "tiny" preset or the even smaller :data:`MICRO` configuration, images are small.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Real public data (MoNuSeg, GlaS), outside the repository; absent on a user's fresh machine.
DATA_DIR = ROOT.parent / "shared" / "data"

#: Largest GUI-thread stall (ms) the plugin tests accept while a job runs. Generous on purpose: the
#: suite runs on shared 2-core machines where other processes and the worker thread's share of the
#: GIL delay the 10 ms timer by a few hundred ms at times. It still catches the failure it is for, a
#: job running on the main thread, which blocks the event loop for its whole run (seconds). The
#: figure itself is printed by the tests ("[stall] ...") and recorded by the benchmark
#: (``benchmarks/run.py --only ui``: the ``ui_stall`` record's ``max_gap_ms``).
GUI_STALL_LIMIT_MS = 1000.0


def pytest_report_header(config) -> str:
    """Say which kind of CPU the precision choice treats this one as (bf16 or fp32 for "auto")."""
    import os

    from napari_genselfdiff.core.inference.device import FORCE_CPU_BF16_ENV, cpu_has_native_bf16

    forced = os.environ.get(FORCE_CPU_BF16_ENV, "").strip()
    how = f"forced by {FORCE_CPU_BF16_ENV}={forced}" if forced else f"detected; set {FORCE_CPU_BF16_ENV}=1/0 to force"
    return f"genselfdiff: CPU native bf16: {cpu_has_native_bf16()} ({how}), so precision 'auto' on CPU is " + (
        "bf16" if cpu_has_native_bf16() else "fp32")


def micro_config(out_channels: int = 2, head: str = "classes"):
    """A U-Net far smaller than the "tiny" preset (about 0.15 M parameters), for tests that only
    need the real code path, not a useful network. 4 levels, so sides must be multiples of 8."""
    from napari_genselfdiff.core.network import UNetConfig

    return UNetConfig(
        widths=(8, 16, 16, 32), blocks_per_level=1, groups=4, attention_heads=2, attention_dim_head=8,
        head=head, out_channels=out_channels,
    )


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., tuple[object, object, Path]]:
    """Factory: build a randomly initialised network, save it as a model file in ``tmp_path``.

    Call ``make_model(preset="tiny"|"micro"|<UNetConfig>, classes=("background", "nucleus"),
    head="classes", seed=0, name="model", half=False, **info_fields)``; returns
    ``(network, info, path)``. ``head="noise"`` makes a pretraining model (no classes).
    """
    from napari_genselfdiff.core.model_files import ModelInfo, default_classes, save_model
    from napari_genselfdiff.core.network import PRESETS, AttentionUNet, UNetConfig

    def factory(preset="micro", classes=("background", "nucleus"), head="classes", seed=0, name="model",
                half=False, **info_fields):
        import torch

        if isinstance(preset, UNetConfig):
            base = preset
        elif preset == "micro":
            base = micro_config()
        else:
            base = PRESETS[preset]
        out = len(classes) if head == "classes" else base.in_channels
        config = base.with_head(head, out)
        torch.manual_seed(seed)
        network = AttentionUNet(config).eval()
        info = ModelInfo(
            architecture=config,
            classes=default_classes(list(classes)) if head == "classes" else [],
            **info_fields,
        )
        path = save_model(tmp_path / f"{name}.safetensors", network, info, half=half)
        info.path = path
        return network, info, path

    return factory


def synthetic_he(height: int, width: int, *, seed: int = 0, nuclei: int | None = None) -> np.ndarray:
    """A textured H&E-like (H, W, 3) uint8 image: pink eosin stroma with fibre-like texture and
    purple haematoxylin nuclei (ellipses of 4-12 px radius with darker chromatin grain).

    Args:
        height, width: image size.
        seed: random seed (the same seed gives the same image).
        nuclei: number of nuclei. By default one per 700 pixels (MoNuSeg-like density).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Stroma: pink with low-frequency waves and pixel noise, so no two tiles look alike.
    waves = (np.sin(xx / 7.0 + 3 * np.sin(yy / 23.0)) + np.sin(yy / 11.0 + xx / 31.0)) * 0.5
    stroma = np.stack([235 - 15 * waves, 170 - 30 * waves, 200 - 20 * waves], axis=-1)
    image = stroma + rng.normal(0, 8, (height, width, 3))
    n = nuclei if nuclei is not None else max(1, height * width // 700)
    purple = np.array([95.0, 60.0, 150.0])
    for _ in range(n):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(4, 12, size=2)
        angle = rng.uniform(0, np.pi)
        # Only the nucleus's bounding box is computed (12 px covers any rotation of the ellipse).
        y0, y1 = max(int(cy) - 12, 0), min(int(cy) + 13, height)
        x0, x1 = max(int(cx) - 12, 0), min(int(cx) + 13, width)
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        inside = u * u + v * v <= 1.0
        grain = rng.normal(0, 15, (int(inside.sum()), 1))
        image[y0:y1, x0:x1][inside] = purple + grain
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def inline_widget(make_napari_viewer, tmp_path, monkeypatch):
    """``(viewer, widget)``: the plugin docked in a new viewer, settings isolated under ``tmp_path``,
    workers run inline (GENSELFDIFF_NOTHREADS) and fp32 (the behaviour under test, not the precision:
    exact and fast on every kind of CPU)."""
    from napari_genselfdiff.plugin._testing import isolate, open_widget

    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")
    return viewer, widget


@pytest.fixture
def slide_widget(make_napari_viewer, make_model, monkeypatch):
    """``open(slide, out) -> (viewer, image, widget, model)``: ``slide`` opened in a new viewer through
    the plugin's reader, and the slide segmentation widget over it with a micro model file (``model``)
    and ``out`` as its output folder; workers run inline (GENSELFDIFF_NOTHREADS)."""

    def open_(slide: Path, out: Path):
        from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget

        monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
        _, _, model = make_model()
        viewer = make_napari_viewer()
        [image] = viewer.open(str(slide), plugin="napari-genselfdiff")
        widget = SlideSegmentWidget(viewer)
        widget.model_edit.setText(str(model))
        widget.out_edit.setText(str(out))
        return viewer, image, widget, model

    return open_


def random_pair(seed: int = 0, shape: tuple[int, int] = (24, 32), *, low: int = 0,
                high: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """A random (H, W, 3) uint8 image with values in [low, high) and (H, W) 0/1 labels (about 30 % ones)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(low, high, (*shape, 3), dtype=np.uint8)
    labels = (rng.random(shape) > 0.7).astype(np.uint8)
    return image, labels


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch CPU thread (deterministic, and fair to a loaded machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def he_image() -> Callable[..., np.ndarray]:
    """The :func:`synthetic_he` generator: ``he_image(height, width, seed=0)``."""
    return synthetic_he


@pytest.fixture
def data_dir() -> Path:
    """``../shared/data`` (may not exist; use :func:`requires_data` to skip cleanly)."""
    return DATA_DIR


@pytest.fixture
def requires_data() -> Callable[..., Path]:
    """``requires_data(*parts)``: the path ``../shared/data/<parts>``, or skip the test with a message
    saying what is missing (a user's fresh machine has no shared data). Mark such tests
    ``@pytest.mark.data``."""

    def check(*parts: str) -> Path:
        path = DATA_DIR.joinpath(*parts)
        if not path.exists():
            pytest.skip(
                f"needs the public data set at {path} (../shared/data relative to the project; "
                "see ../shared/data/README.md); it is not on this machine"
            )
        return path

    return check


@pytest.fixture
def disk_full_after():
    """``with disk_full_after(n):`` the slide labels store accepts ``n`` band writes, then every write fails
    with ENOSPC ("No space left on device"), as on a full disk; the store writes normally again after."""
    import contextlib
    import errno

    from napari_genselfdiff.core.inference.slide import WindowView

    @contextlib.contextmanager
    def full_after(n: int):
        original, calls = WindowView.__setitem__, {"n": 0}

        def write(self, key, value):
            calls["n"] += 1
            if calls["n"] > n:
                raise OSError(errno.ENOSPC, "No space left on device")
            original(self, key, value)

        WindowView.__setitem__ = write
        try:
            yield
        finally:
            WindowView.__setitem__ = original

    return full_after


def _synthetic_slide(*args, **kwargs):
    from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

    return write_synthetic_slide(*args, **kwargs)


@pytest.fixture(scope="session")
def slides(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic slides of every resolution flavour: 600 x 800 px, 40 % tissue, 2 levels (read only)."""
    root = tmp_path_factory.mktemp("slides")
    out = {}
    for flavour, name, mpp in [("aperio", "a.svs", 0.25), ("ome", "o.ome.tif", 0.5), ("tiff", "t.tif", 0.5),
                               ("none", "n.tif", None)]:
        out[flavour] = _synthetic_slide(root / name, 600, 800, mpp=mpp or 0.25, flavour=flavour,
                                        tissue_fraction=0.4, tile=128, n_levels=2, seed=3).path
    return out


@pytest.fixture(scope="session")
def slide_files(tmp_path_factory) -> dict[str, Path]:
    """Two synthetic slides for the resume tests: .svs at 0.25 um/px, a TIFF at 0.5 um/px (read only)."""
    root = tmp_path_factory.mktemp("resume_slides")
    return {
        "svs": _synthetic_slide(root / "s.svs", 600, 800, mpp=0.25, tissue_fraction=0.6, tile=128, n_levels=2,
                                seed=4).path,
        # 0.5 um/px: segmented at 2x for a 0.25 um/px model (the resampled path, with its scratch array).
        "half": _synthetic_slide(root / "h.tif", 300, 400, mpp=0.5, flavour="tiff", tissue_fraction=0.6,
                                 tile=128, n_levels=2, seed=5).path,
    }
