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
