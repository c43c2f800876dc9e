"""Pretrain panel: diffusion pretraining on unlabeled images, in a child process.

Images come from folders and/or the open image layers (copies of the displayed planes, taken when
Start is pressed). The run writes checkpoints, ``metrics.jsonl`` and ``pretrained.safetensors`` in
its run folder; Pause / Resume / Cancel go through :class:`TrainingControl` (cancel saves a
checkpoint of the last completed step). Preview draws a few DDIM samples from the latest
checkpoint (or the finished model) as an image layer: noise-like blobs early on, H&E-like texture
once the network has learnt something. Training and preview run in a child process (see
:mod:`.._subprocess` for why), so the GUI stays responsive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from ...core.errors import GenSelfDiffError
from ...core.training.corrections import PRETRAINING_WORTH, patch_stride
from .. import _notify
from .._layers import META_KEY
from .._subprocess import train_in_subprocess
from .._threading import start_worker
from ._form import hbox, panel_layout
from ._training_common import (
    FolderList,
    TrainingLifecycle,
    layer_snapshots,
    report_skipped,
    size_fields,
)


class PretrainPanel(QGroupBox, TrainingLifecycle):
    """Self-supervised diffusion pretraining.

    Attributes tests use: ``control`` (the run's TrainingControl), ``run`` (its :class:`TrainingRun`:
    ``events``), ``model_path`` (the pretrained model once done), ``outcome`` ("done", "cancelled",
    "failed"), :meth:`start`, :meth:`pause`, :meth:`resume`, :meth:`stop` (the run lifecycle:
    :class:`TrainingLifecycle`), :meth:`preview`, and the settings widgets ``arch``, ``steps``,
    ``batch``, ``patch``, ``run_dir``, ``use_layers``.

    ``model_ready`` is emitted with the path of the pretrained model when a run returns one.
    """

    model_ready = Signal(object)
    job, title = "pretrain", "Pretraining"

    def __init__(self, state, parent=None) -> None:
        super().__init__("Pretrain on unlabeled images (diffusion)", parent)
        self.state = state
        self._init_lifecycle("Start pretraining", "diffusion loss")
        self.preview_worker = None
        self.previews = 0
        #: a UNetConfig (or preset name) used instead of the Network choice (scripts and tests).
        self.architecture = None

        self.folders = FolderList("Folder of unlabeled H&E images")
        self.use_layers = QCheckBox("open image layers")
        self.use_layers.setChecked(True)
        self.arch, self.patch, self.steps, self.batch = size_fields(
            steps=2000, arch_tooltip="Network size: 'default' is the paper's (needs a GPU); 'small' and 'tiny' suit CPUs."
        )
        self.checkpoint_every = QSpinBox()
        self.checkpoint_every.setRange(0, 1_000_000)
        self.checkpoint_every.setValue(200)
        self.checkpoint_every.setToolTip("Steps between checkpoints (Preview uses the latest one).")
        self.run_dir = QLineEdit(str(self.default_run_dir()))
        self.resume_box = QCheckBox("resume its latest checkpoint")
        self.preview_button = QPushButton("Preview samples")
        self.preview_button.setToolTip("A few DDIM samples from the latest checkpoint, as an image layer.")

        #: what pretraining was measured to add; the dock widget shows it above this panel's folded section
        self.worth = QLabel(PRETRAINING_WORTH)
        self.worth.setWordWrap(True)
        self.worth.setStyleSheet("color: #c8a040;")
        panel_layout(self, [("Images:", self.use_layers), ("", self.folders), ("Network:", self.arch),
                            ("Patch size:", self.patch), ("Steps:", self.steps), ("Batch:", self.batch),
                            ("Checkpoint every:", self.checkpoint_every), ("Run folder:", hbox(self.run_dir, stretch=0)),
                            ("", self.resume_box)],
                     self.controls, self.preview_button)

        self._connect_controls()
        self.preview_button.clicked.connect(lambda: self.preview())

    # -- actions -----------------------------------------------------------------------------------

    def config(self):
        """The :class:`PretrainConfig` the panel's settings describe (images filled in by :meth:`start`)."""
        from ...core.training import PretrainConfig

        return PretrainConfig(
            images=[],
            out_dir=self.run_dir.text().strip(),
            arch=self.architecture or self.arch.currentText(),
            patch_size=int(self.patch.value()),
            stride=patch_stride(self.patch.value()),
            steps=int(self.steps.value()),
            batch=int(self.batch.value()),
            checkpoint_every=int(self.checkpoint_every.value()),
            device=self.state.device,
            precision=self.state.precision,
            resume=self.resume_box.isChecked(),
        )

    def start(self):
        """Start pretraining with the panel's settings; returns the worker or None (with a message)."""
        if self._already_running():
            return None
        cfg = self.config()
        images: list = list(self.folders.folders)
        if self.use_layers.isChecked():
            snapshots, skipped = layer_snapshots(self.state.viewer)
            report_skipped(skipped)
            images += snapshots
        if not images:
            _notify.tell(
                self.controls.status,
                "No unlabeled images to pretrain on: tick 'open image layers' with images open, or add a folder of "
                "images.", "error", toast="No unlabeled images to pretrain on.",
            )
            return None
        cfg.images = images
        if not cfg.out_dir:
            _notify.tell(self.controls.status, "Choose a run folder for the checkpoints and the model.", "error")
            return None
        earlier = self._fresh_run_folder(cfg)
        if earlier is not None:
            _notify.tell(self.controls.status, f"{earlier} holds an earlier run; this run goes to {cfg.out_dir}.",
                         "info", toast="This run goes to a new run folder.")
        return self._launch(cfg, "Preparing patches...")

    def preview(self, n: int = 4, steps: int = 20):
        """Show ``n`` DDIM samples from the latest weights as an image layer; returns the worker."""
        if self.preview_worker is not None:
            return None
        source = self.model_path or (Path(self.run_dir.text()).expanduser() if self.run_dir.text().strip() else None)
        if source is None or not Path(source).exists():
            _notify.tell(self.controls.status, "Nothing to preview yet: start pretraining and wait for its first "
                         "checkpoint.", "error", toast="Nothing to preview yet.")
            return None
        self.preview_button.setEnabled(False)

        def shown(grid: np.ndarray) -> None:
            self.previews += 1
            self.state.viewer.add_image(grid, name=f"pretraining preview {self.previews}", rgb=True,
                                        metadata={META_KEY: {"kind": "preview", "source": str(source)}})

        def done() -> None:
            self.preview_worker = None
            self.preview_button.setEnabled(True)

        self.preview_worker = start_worker(
            train_in_subprocess, "preview", {"source": Path(source), "n": n, "steps": steps, "device": self.state.device},
            None,
            on_returned=shown,
            on_errored=lambda exc: _notify.tell(self.controls.status, f"Cannot preview: {_notify.describe(exc)}",
                                                "error", toast="Cannot preview samples."),
            on_finished=done, start=False,
        )
        worker = self.preview_worker
        worker.start()
        return worker

    # -- worker callbacks --------------------------------------------------------------------------

    def _on_returned(self, path) -> None:
        cancelled = bool(self.run and self.run.cancelled)
        self.outcome = "cancelled" if cancelled else "done"
        self.model_path = Path(path) if path else None
        if cancelled:
            _notify.tell(self.controls.status,
                         f"Pretraining stopped; checkpoint kept in {self.run_dir.text()} (tick 'resume its latest "
                         "checkpoint' to go on)." + (f" Weights so far: {path}" if path else ""),
                         "info", toast="Pretraining stopped; checkpoint kept.")
        else:
            _notify.tell(self.controls.status,
                         f"Pretraining done: {path}. Fine-tuning can start from it (Fine-tune: 'Start from').",
                         "info", toast="Pretraining done.")
        if path:
            self.model_ready.emit(Path(path))

    def _on_errored(self, exc: Exception) -> None:
        self.outcome = "failed"
        text = f"Pretraining failed: {_notify.describe(exc)}" if not isinstance(exc, GenSelfDiffError) else f"Cannot pretrain: {exc}"
        _notify.tell(self.controls.status, text, "error", toast="Pretraining failed; see the Train tab.")
