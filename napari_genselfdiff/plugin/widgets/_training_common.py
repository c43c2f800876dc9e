"""What the pretrain and fine-tune panels share: folder lists, run controls, event handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.defaults import WIDGET_PRESET, WIDGET_PRESETS, WIDGET_TRAINING_BATCH, WIDGET_TRAINING_PATCH
from .. import _notify
from .._layers import image_layers, image_plane, layer_meta
from .loss_curve import LossCurve


class FolderList(QWidget):
    """A list of folders with Add / Remove buttons."""

    def __init__(self, caption: str, parent=None) -> None:
        super().__init__(parent)
        self.caption = caption
        self._list = QListWidget()
        self._list.setMaximumHeight(60)
        add, remove = QPushButton("Add folder..."), QPushButton("Remove")
        add.clicked.connect(self._on_add)
        remove.clicked.connect(self._on_remove)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._list)
        layout.addLayout(row)

    @property
    def folders(self) -> list[str]:
        return [self._list.item(i).text() for i in range(self._list.count())]

    def add(self, folder: str | Path) -> None:
        if str(folder) not in self.folders:
            self._list.addItem(str(folder))

    def clear(self) -> None:
        self._list.clear()

    def _on_add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.caption, str(Path.home()))
        if folder:
            self.add(folder)

    def _on_remove(self) -> None:
        for item in self._list.selectedItems():
            self._list.takeItem(self._list.row(item))


def size_fields(*, steps: int, arch_tooltip: str) -> tuple[QComboBox, QSpinBox, QSpinBox, QSpinBox]:
    """The network-size, patch, steps and batch inputs both training panels show (same ranges)."""
    arch = QComboBox()
    arch.addItems(list(WIDGET_PRESETS))
    arch.setCurrentText(WIDGET_PRESET)
    arch.setToolTip(arch_tooltip)
    patch = QSpinBox()
    patch.setRange(32, 1024)
    patch.setSingleStep(32)
    patch.setValue(WIDGET_TRAINING_PATCH)
    patch.setSuffix(" px")
    steps_box = QSpinBox()
    steps_box.setRange(1, 10_000_000)
    steps_box.setValue(steps)
    batch = QSpinBox()
    batch.setRange(1, 256)
    batch.setValue(WIDGET_TRAINING_BATCH)
    return arch, patch, steps_box, batch


def layer_snapshots(viewer) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Copies of the open image layers' displayed planes as ``(name, array)`` (training never sees
    later edits), and the reasons for layers left out (preview layers are never used)."""
    out, skipped = [], []
    for layer in image_layers(viewer):
        if layer_meta(layer).get("kind") == "preview":
            continue  # DDIM samples are not training data
        try:
            plane = image_plane(layer, viewer)
        except Exception as exc:  # noqa: BLE001 - one unusable layer must not stop the others
            skipped.append(f"{layer.name}: {exc}")
            continue
        out.append((plane.name + plane.suffix, np.array(plane.data, copy=True)))
    return out, skipped


class RunControls(QWidget):
    """Start / Pause-Resume / Cancel buttons, a progress bar, a status line and the loss curve."""

    def __init__(self, start_text: str, curve_title: str, parent=None) -> None:
        super().__init__(parent)
        self.start = QPushButton(start_text)
        self.start.setMinimumWidth(60)
        self.pause = QPushButton("Pause")
        self.cancel = QPushButton("Cancel")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.curve = LossCurve(curve_title)
        row = QHBoxLayout()
        row.addWidget(self.start, 1)
        row.addWidget(self.pause)
        row.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.curve)
        self.set_running(False)

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.start.setEnabled(not running)
        self.pause.setEnabled(running)
        self.cancel.setEnabled(running)
        self.pause.setText("Resume" if paused else "Pause")


class TrainingRun:
    """Bookkeeping of one training worker: the event -> UI mapping.

    The panels own one each; ``events`` keeps every event received (tests read it).

    Training progress is shown in the panel (bar, status line, loss curve), not with a napari
    ``progress`` bar: while one exists, napari's animated activity indicator keeps repainting, which
    costs about a third of a CPU core under software OpenGL (measured under Xvfb) -- too much to
    take from a run of hours on a small CPU. Segmentation, which is short, uses napari's bar.
    """

    def __init__(self, controls: RunControls) -> None:
        self.controls = controls
        self.events: list = []

    def on_event(self, event) -> None:
        self.events.append(event)
        c = self.controls
        if event.kind == "step":
            c.curve.add_point(event.step, event.loss)
            c.bar.setValue(int(1000 * min(event.fraction, 1.0)))
            eta = f", about {_seconds(event.eta_s)} left" if event.eta_s is not None else ""
            loss = f"loss {event.loss:.4f}" if event.loss is not None else "loss n/a"
            c.status.setText(f"step {event.step}/{event.total_steps}, {loss}{eta}")
        elif event.kind == "paused":
            c.status.setText(f"Paused at step {event.step}/{event.total_steps}.")
            c.set_running(True, paused=True)
        elif event.kind == "resumed":
            c.set_running(True, paused=False)
        elif event.kind in ("start", "skipped", "validation") and event.message:
            c.status.setText(event.describe())
        elif event.kind in ("done", "cancelled"):
            c.status.setText(event.message or event.kind)

    def close(self) -> None:
        """Nothing to release (kept so the panels' clean-up reads the same for every job)."""


def _seconds(seconds: float) -> str:
    from ...core.training.events import format_seconds

    return format_seconds(seconds)


def report_skipped(skipped: list[str]) -> None:
    for reason in skipped:
        _notify.warning(f"Left out of training: {reason}")
