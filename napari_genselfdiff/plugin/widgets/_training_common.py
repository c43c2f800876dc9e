"""What the pretrain and fine-tune panels share: folder lists, run controls, event handling, and the
run lifecycle (:class:`TrainingLifecycle`: start, pause, resume, stop, finish, run-folder naming)."""

from __future__ import annotations

import time
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
from .._settings import data_dir
from .._subprocess import train_in_subprocess
from .._threading import start_worker
from ._bars import set_bar
from .loss_curve import LossCurve


class FolderList(QWidget):
    """A list of folders with Add / Remove buttons."""

    def __init__(self, caption: str, parent=None) -> None:
        super().__init__(parent)
        self.caption = caption
        self._list = QListWidget()
        self._list.setMaximumHeight(80)  # room for its minimum (about 70 px), so it is never squeezed
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


def size_fields(*, steps: int, arch_tooltip: str, patch: int = WIDGET_TRAINING_PATCH,
                batch: int = WIDGET_TRAINING_BATCH) -> tuple[QComboBox, QSpinBox, QSpinBox, QSpinBox]:
    """The network-size, patch, steps and batch inputs both training panels show (same ranges)."""
    arch = QComboBox()
    arch.addItems(list(WIDGET_PRESETS))
    arch.setCurrentText(WIDGET_PRESET)
    arch.setToolTip(arch_tooltip)
    patch_box = QSpinBox()
    patch_box.setRange(32, 1024)
    patch_box.setSingleStep(32)
    patch_box.setValue(patch)
    patch_box.setSuffix(" px")
    steps_box = QSpinBox()
    steps_box.setRange(1, 10_000_000)
    steps_box.setValue(steps)
    batch_box = QSpinBox()
    batch_box.setRange(1, 256)
    batch_box.setValue(batch)
    return arch, patch_box, steps_box, batch_box


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


_STAGE_WORDS = {"finetune": "Fine-tuning", "pretrain": "Pretraining"}


def _plain(line: str) -> str:
    """A log line without its "[stage] " tag, for the status line."""
    import re

    return re.sub(r"^\[\w+\] ", "", line)


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
            set_bar(c.bar, int(1000 * min(event.fraction, 1.0)))
            eta = f", about {_seconds(event.eta_s)} left" if event.eta_s is not None else ""
            loss = f"loss {event.loss:.4f}" if event.loss is not None else "loss n/a"
            c.status.setText(f"step {event.step}/{event.total_steps}, {loss}{eta}")
        elif event.kind == "paused":
            c.status.setText(f"Paused at step {event.step}/{event.total_steps}.")
            c.set_running(True, paused=True)
        elif event.kind == "resumed":
            c.set_running(True, paused=False)
        elif event.kind == "start":
            # the log line ("[finetune] step 0/40 start: <data split; patches; ...>") is for the log file
            what = _STAGE_WORDS.get(event.stage or "", "Training")
            c.status.setText(f"{what} resumed at step {event.step} of {event.total_steps}." if event.step else
                             f"{what} started: {event.total_steps} steps; the first one may take a moment.")
        elif event.kind in ("skipped", "validation") and event.message:
            c.status.setText(_plain(event.describe()))
        elif event.kind in ("done", "cancelled"):
            c.status.setText(event.message or event.kind)
            if event.kind == "cancelled":
                set_bar(c.bar, 0)  # nothing half-done left showing (the status line says where it stopped)

    @property
    def cancelled(self) -> bool:
        """Whether the run ended by a Cancel (its last event says so)."""
        return bool(self.events) and self.events[-1].kind == "cancelled"


class TrainingLifecycle:
    """The lifecycle of a training run, the same in the pretrain and fine-tune panels (mixed into
    their ``QGroupBox``): one run at a time, a fresh run folder unless resuming, the child process
    started over :func:`.._subprocess.train_in_subprocess`, Pause / Resume / Cancel through its
    ``TrainingControl``, and the clean-up when it ends.

    A panel sets ``job`` (its job name in ``PluginState`` and the child's task: "pretrain" or
    "finetune") and ``title`` ("Pretraining", "Fine-tuning"), calls :meth:`_init_lifecycle` in its
    ``__init__`` (it makes ``self.controls``) and :meth:`_connect_controls` once its own ``start()``
    exists, and writes ``_on_returned(path)``, ``_on_errored(exc)`` and, if it needs one,
    ``_after_finished()``. It needs ``self.state`` and a ``self.run_dir`` line edit.

    Attributes tests read: ``worker``, ``control``, ``run`` (the :class:`TrainingRun`), ``model_path``,
    ``outcome`` ("done", "cancelled", "failed" or None), ``paused_by``, :attr:`is_paused`.
    """

    job: str = ""
    title: str = ""

    def _init_lifecycle(self, start_text: str, curve_title: str) -> None:
        self.worker = None
        self.control = None
        self.run: TrainingRun | None = None
        self.model_path: Path | None = None
        self.outcome: str | None = None
        self.paused_by: str | None = None
        self.controls = RunControls(start_text, curve_title)

    def _connect_controls(self) -> None:
        self.controls.start.clicked.connect(lambda: self.start())
        self.controls.pause.clicked.connect(self._on_pause_clicked)
        self.controls.cancel.clicked.connect(self.stop)

    def default_run_dir(self) -> Path:
        """Where a run goes unless the user says otherwise: ``<data dir>/runs/<job>``."""
        return data_dir() / "runs" / self.job

    def _already_running(self) -> bool:
        """True (and says so) when this panel's run is going: a second Start starts nothing."""
        if self.state.running(self.job):
            _notify.info(f"{self.title} is already running.")
            return True
        return False

    def _fresh_run_folder(self, cfg) -> Path | None:
        """Never mix two runs in one folder: when ``cfg.out_dir`` holds an earlier run's checkpoints
        and the run does not resume it, the run goes to ``<folder>-<YYYYmmdd-HHMMSS>`` instead (shown
        in the Run folder field). Returns the earlier folder when it did, else None."""
        from ...core.training import find_latest_checkpoint

        run_dir = Path(cfg.out_dir).expanduser()
        if cfg.resume or not run_dir.is_dir() or find_latest_checkpoint(run_dir) is None:
            return None
        cfg.out_dir = str(run_dir.with_name(f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        self.run_dir.setText(cfg.out_dir)
        return run_dir

    def _launch(self, cfg, status: str):
        """Start the run of ``cfg`` in the training child, with ``status`` in the status line; returns
        the worker."""
        from ...core.training import TrainingControl

        self.control = TrainingControl()
        self.model_path, self.outcome = None, None
        self.controls.curve.clear()
        self.run = TrainingRun(self.controls)
        self.controls.status.setText(status)
        self.worker = start_worker(
            self._job_function(), self.job, cfg, self.control,
            on_yielded=self._on_event, on_returned=self._on_returned, on_errored=self._on_errored,
            on_finished=self._on_finished, start=False,
        )
        worker = self.worker
        self.state.set_job(self.job, worker)
        self.controls.set_running(True)
        worker.start()
        return worker

    def _job_function(self):
        """The generator function the worker runs with ``(job, cfg, control)``: the training child."""
        return train_in_subprocess

    def pause(self, by: str | None = None) -> None:
        """Pause before the next step (``by`` names who paused, e.g. "fine-tuning")."""
        if self.control is not None and self.state.running(self.job) and not self.control.is_paused:
            self.control.pause()
            self.paused_by = by
            self.controls.set_running(True, paused=True)
            self.controls.status.setText("Pausing after the current step..." if by is None
                                         else f"Paused while {by} runs.")

    def resume(self) -> None:
        if self.control is not None and self.state.running(self.job):
            self.control.resume()
            self.paused_by = None
            self.controls.set_running(True, paused=False)

    def stop(self) -> None:
        """Cancel: the run saves a checkpoint of its last completed step and ends."""
        if self.control is not None and self.state.running(self.job):
            self.controls.status.setText("Stopping: saving a checkpoint of the last completed step...")
            self.control.cancel()

    @property
    def is_paused(self) -> bool:
        return bool(self.control is not None and self.control.is_paused and self.state.running(self.job))

    def _on_pause_clicked(self) -> None:
        if self.is_paused:
            self.resume()
        else:
            self.pause()

    def _on_event(self, event) -> None:
        self.run.on_event(event)
        if event.kind == "paused" and self.paused_by:
            self.controls.status.setText(f"Paused at step {event.step}/{event.total_steps} while {self.paused_by} runs.")

    def _on_finished(self) -> None:
        self.state.set_job(self.job, None)
        self.worker = None
        self.paused_by = None
        self.controls.set_running(False)
        self._after_finished()

    def _after_finished(self) -> None:
        """What a panel does once its run has ended (nothing by default)."""


def _seconds(seconds: float) -> str:
    from ...core.training.events import format_seconds

    return format_seconds(seconds)


def report_skipped(skipped: list[str]) -> None:
    for reason in skipped:
        _notify.warning(f"Left out of training: {reason}")
