"""The computing core (and the headless CLI) must work where Qt and napari cannot even be imported.

A fresh interpreter gets an import hook that refuses every GUI package, imports every module under
napari_genselfdiff.core and the CLI modules, and segments a small image: this is what a cluster node
without a display (or without the GUI extras) runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = {blocked!r}

    class NoGui(importlib.abc.MetaPathFinder):
        refused = []

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                self.refused.append(name)
                raise ImportError(f"{{name}} is blocked: the core must not import GUI packages")
            return None

    finder = NoGui()
    sys.meta_path.insert(0, finder)

    import numpy as np
    import torch
    import napari_genselfdiff.core as core

    modules = [core.__name__] + [
        info.name for info in pkgutil.walk_packages(core.__path__, prefix=core.__name__ + ".")
    ]
    for name in modules:
        importlib.import_module(name)
    for name in ("cli", "cli.main", "cli.common", "cli.segment", "cli.evaluate", "cli.info", "cli.run",
                 "cli.gui"):
        importlib.import_module("napari_genselfdiff." + name)
    from napari_genselfdiff.cli.main import build_parser
    build_parser()

    from napari_genselfdiff.core.inference import InferenceSettings, segment
    from napari_genselfdiff.core.model_files import ModelInfo, default_classes
    from napari_genselfdiff.core.network import AttentionUNet, UNetConfig

    torch.manual_seed(0)
    config = UNetConfig(widths=(8, 16), groups=4, attention_heads=1, attention_dim_head=8,
                        head="classes", out_channels=2)
    info = ModelInfo(architecture=config, classes=default_classes(["background", "nucleus"]))
    image = np.random.default_rng(0).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    result = segment(AttentionUNet(config), info, image, InferenceSettings(device="cpu", precision="fp32"), name="x")
    assert result.labels.shape == (30, 44), result.labels.shape

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("modules", len(modules))
    print("refused", sorted(set(finder.refused)))
    print("OK")
    """
)


def test_core_imports_and_segments_without_any_gui_package(tmp_path):
    script = tmp_path / "no_qt.py"
    script.write_text(SCRIPT.format(blocked=BLOCKED))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("OK")
    n_modules = int(proc.stdout.split("modules ")[1].split()[0])
    assert n_modules >= 20  # the walk really found the core's subpackages


# --- layers inside the core -------------------------------------------------------------------------

CORE = __import__("pathlib").Path(__file__).resolve().parents[2] / "napari_genselfdiff" / "core"
# The bottom rooms of the core: they read and write files and know nothing of models, training,
# inference or scoring, so everything above may use them without an import cycle.
LOWER_ROOMS = ("io",)
HIGHER_ROOMS = ("model_files", "training", "inference", "metrics", "data", "network", "annotations",
                "export", "diffusion", "losses")


def _imported_rooms(path) -> set[str]:
    """The core sub-packages a module imports by relative import (``from ..x import``, also inside
    functions)."""
    import ast

    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
            rooms.add(node.module.split(".")[0])
    return rooms


def test_io_imports_no_higher_layer_of_the_core():
    for room in LOWER_ROOMS:
        for path in sorted((CORE / room).glob("*.py")):
            upward = _imported_rooms(path) & set(HIGHER_ROOMS)
            assert not upward, f"core/{room}/{path.name} imports upward into {sorted(upward)}"


def test_training_data_imports_no_scoring():
    """Scoring pairs its files by the data's rule (metrics -> data.folders), so the data must not
    import the scoring back: masks become labels in core/io (io/masks.py: to_label_image)."""
    for path in sorted((CORE / "data").glob("*.py")):
        assert "metrics" not in _imported_rooms(path), f"core/data/{path.name} imports core/metrics"


def test_scoring_and_file_pairing_import_no_torch():
    """``genselfdiff evaluate`` and the folder pairing stay quick: neither loads torch."""
    code = (
        "import sys\n"
        "import napari_genselfdiff.core.metrics.evaluation\n"
        "from napari_genselfdiff.core.data.folders import match_key, pair_images_with_masks\n"
        "from napari_genselfdiff.core.data import match_key as same\n"
        "assert same is match_key\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_core_tests_use_no_napari():
    """tests/core checks the core alone: no napari viewer, no qtbot, no plugin module (GUI checks live
    in tests/plugin), so it runs where the GUI extra is not installed."""
    import re
    from pathlib import Path

    pattern = re.compile(r"make_napari_viewer|\bqtbot\b|^\s*(import|from) napari(\s|\.layers|\.)|napari_genselfdiff\.plugin",
                         re.M)
    offenders = {}
    for path in sorted((Path(__file__).parent).glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        hits = [m.group(0).strip() for m in pattern.finditer(path.read_text(encoding="utf-8"))]
        hits = [h for h in hits if not h.startswith(("import napari_genselfdiff", "from napari_genselfdiff"))
                or "napari_genselfdiff.plugin" in h]
        if hits:
            offenders[path.name] = sorted(set(hits))
    assert not offenders, offenders
