"""Fine-tune panel: train the segmentation model on the corrected pairs, in a child process
(:mod:`.._subprocess`), so the GUI stays responsive.

The training data are the annotation set's pairs (snapshots already on disk, so editing labels
while fine-tuning changes nothing in the run) plus, optionally, a folder of images with a folder of
masks paired by name. While fine-tuning runs, a running pretraining is paused (and resumed after).
On success the widget switches to the new model and offers to re-segment the open images that are
not in the annotation set.

With fewer than :data:`MIN_IMAGES_FOR_SCORE` training images nothing is held out (one held-out
image gives a score that says little about accuracy): all of them train, the last model is kept,
and the panel says that there is no held-out score. The greyed-out Network box shows the network of
the model that fine-tuning starts from (a model file brings its own).

Every run's last word (done, stopped, failed, and why) stays in the panel's status line until the
next run; notifications carry a short sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QLineEdit,
    QPushButton,
)

from ...core.defaults import DEFAULT_CLASSES, WIDGET_PRESETS
from ...core.errors import GenSelfDiffError
from ...core.training.corrections import CORRECTION_RECIPE, CORRECTION_WHY, KEEP_ELSEWHERE_ANCHOR
from .. import _notify
from .._layers import image_layers, layer_meta
from ._form import panel_layout
from ._path_edit import PathEdit
from ._training_common import TrainingLifecycle, size_fields
from .model_panel import MIN_IMAGES_FOR_SCORE, model_name

START_CURRENT = "the current model"
START_PRETRAINED = "the pretrained model (Pretrain section below)"
START_SCRATCH = "scratch (no pretraining)"
PRESET_NAMES = WIDGET_PRESETS


def architecture_text(arch) -> str:
    """A network as the Network box shows it: "tiny (16-32-64-128)", or "custom (8-16-16-32)"."""
    from ...core.network import PRESETS

    widths = "-".join(str(w) for w in arch.widths)
    for name in PRESET_NAMES:
        if PRESETS[name].with_head(arch.head, arch.out_channels) == arch:
            return f"{name} ({widths})"
    return f"custom ({widths})"


class LoadedModel(NamedTuple):
    """A fine-tune's model file, loaded (network, info) in the worker thread."""

    path: Path
    network: Any
    info: Any


def finetune_and_load(job: str, cfg, control):
    """The training child's run (:func:`.._subprocess.train_in_subprocess`), then, in this worker
    thread, the model it wrote loaded and checked as :meth:`PluginState.set_model` would (a
    :class:`LoadedModel`): the GUI thread only switches to it. A model that does not load is returned
    as its path, for the panel to report."""
    from ...core.model_files import resolve_model
    from . import _training_common

    path = yield from _training_common.train_in_subprocess(job, cfg, control)
    if path is None or (control is not None and control.is_cancelled):
        return path
    try:
        return LoadedModel(Path(path), *resolve_model(path, device="cpu", segmentation=False))
    except (GenSelfDiffError, OSError):
        return path


def export_latest(run_dir: str):
    """The worker job of "Use the model so far": the run folder's latest checkpoint written as a model
    file beside it (``model-so-far-step-<N>.safetensors``) and loaded (a :class:`LoadedModel`), or None
    when the run has no checkpoint yet."""
    from ...core.model_files import resolve_model
    from ...core.training import find_latest_checkpoint
    from ...core.training.checkpoint import export_checkpoint_model, read_checkpoint_metadata

    checkpoint = find_latest_checkpoint(run_dir)
    if checkpoint is None:
        return None
    step = int(read_checkpoint_metadata(checkpoint)["step"])
    path = export_checkpoint_model(checkpoint, Path(run_dir) / f"model-so-far-step-{step:06d}.safetensors")
    return LoadedModel(path, *resolve_model(path, device="cpu", segmentation=False))
    yield  # a generator function (start_worker runs generators); nothing is yielded


class FinetunePanel(QGroupBox, TrainingLifecycle):
    """Supervised fine-tuning on the annotation set.

    Attributes tests use: ``control``, ``run`` (``events``), ``model_path``, ``outcome`` (the run
    lifecycle: :class:`TrainingLifecycle`), ``paused_pretraining`` (whether this run paused a
    pretraining), ``resegment_worker``, and the widgets ``start_from``, ``steps``, ``batch``,
    ``patch``, ``arch``, ``run_dir``, ``use_set``.
    """

    job, title = "finetune", "Fine-tuning"

    def __init__(self, state, pretrain_panel=None, segment_panel=None, parent=None) -> None:
        super().__init__("Fine-tune on the corrected pairs", parent)
        self.state = state
        self.pretrain_panel = pretrain_panel
        self.segment_panel = segment_panel
        self._init_lifecycle("Start fine-tuning", "segmentation loss")
        self.paused_pretraining = False
        self.resegment_worker = None
        #: (number of training images or None, whether too few to hold one out) of the last config()
        self.planned: tuple[int | None, bool] = (None, False)
        #: a UNetConfig (or preset name) used instead of the Network choice (scripts and tests).
        self.architecture = None

        self.use_set = QCheckBox("corrected pairs of the annotation set")
        self.use_set.setChecked(True)
        self.images = PathEdit("Folder of training images")
        self.masks = PathEdit("Folder of their masks (same names)")
        self.start_from = QComboBox()
        self.start_from.addItems([START_CURRENT, START_PRETRAINED, START_SCRATCH])
        self.start_from.setToolTip(
            "The current model continues training; a pretrained (diffusion) model gets a new class head."
        )
        self.arch, self.patch, self.steps, self.batch = size_fields(
            steps=CORRECTION_RECIPE.steps, patch=CORRECTION_RECIPE.patch, batch=CORRECTION_RECIPE.batch,
            arch_tooltip="Network size when starting from scratch (a model file brings its own).",
        )
        for box, key in ((self.steps, "steps"), (self.patch, "patch"), (self.batch, "batch")):
            box.setToolTip(CORRECTION_WHY[key])
        #: the Steps box follows the annotation set's corrections (suggested_steps) until the user changes it
        self.steps_follow_corrections = True
        self._setting_steps = False
        self._corrected: int | None = None  # the corrected pixels the Steps box was last set from
        self.steps.valueChanged.connect(self._on_steps_changed)
        self.keep_elsewhere = QCheckBox("keep what it knows elsewhere")
        self.keep_elsewhere.setChecked(CORRECTION_RECIPE.anchor > 0)
        self.keep_elsewhere.setToolTip(CORRECTION_WHY["anchor"])
        self._scratch_arch = self.arch.currentText()
        self.run_dir = QLineEdit(str(self.default_run_dir()))
        self.resume_box = QCheckBox("resume its latest checkpoint")
        self.resume_box.setToolTip(
            "Continue the run in the Run folder from its latest checkpoint (after a crash or a Cancel) "
            "instead of starting a new run folder."
        )

        self.use_so_far = QPushButton("Use the model so far")
        self.use_so_far.setEnabled(False)
        self.use_so_far.setToolTip(
            "Fine-tuning writes a model every quarter of its steps. Switch to the latest one now and be offered "
            "to re-segment your other open images with it; training goes on, and its final model replaces "
            "this one when it ends."
        )
        self.use_so_far.clicked.connect(lambda: self.use_model_so_far())
        self.so_far_worker = None

        panel_layout(self, [("Train on:", self.use_set), ("+ images:", self.images), ("+ masks:", self.masks),
                            ("Start from:", self.start_from), ("Network:", self.arch), ("Patch size:", self.patch),
                            ("Steps:", self.steps), ("Batch:", self.batch), ("", self.keep_elsewhere),
                            ("Run folder:", self.run_dir),
                            ("", self.resume_box), ("", self.use_so_far)],
                     self.controls)

        self.start_from.currentTextChanged.connect(lambda *_: self.sync_network())
        self.arch.activated.connect(lambda *_: self._remember_arch())
        state.model_changed.connect(lambda *_: self.sync_network())
        if pretrain_panel is not None and hasattr(pretrain_panel, "model_ready"):
            pretrain_panel.model_ready.connect(lambda *_: self.sync_network())
        state.annotations_changed.connect(self.follow_corrections)
        self.use_set.toggled.connect(lambda *_: self.follow_corrections())
        self.sync_network()
        self.follow_corrections()
        self._connect_controls()

    # -- configuration ------------------------------------------------------------------------------

    def _on_steps_changed(self, _value: int) -> None:
        if not self._setting_steps:
            self.steps_follow_corrections = False  # the user's number from now on

    def _following(self):
        """The annotation set whose corrections the Steps box follows now, or None."""
        aset = self.state.annotations
        return aset if self.steps_follow_corrections and self.use_set.isChecked() else None

    def steps_note(self) -> str:
        """Why the Steps box holds its number, when it follows the corrections (else "")."""
        from ...core.training.corrections import MAX_SUGGESTED_STEPS, STEPS_PER_CORRECTED_MEGAPIXEL

        if self._following() is None or self._corrected is None:
            return ""
        return (f" ({self._corrected / 1e6:.1f} megapixels corrected: {self.steps.value()} steps, "
                f"{STEPS_PER_CORRECTED_MEGAPIXEL} per megapixel, from {CORRECTION_RECIPE.steps} to {MAX_SUGGESTED_STEPS})")

    def follow_corrections(self) -> None:
        """Set the Steps box from the corrections in the annotation set (:func:`suggested_steps`: more steps
        for more corrected pixels), unless the user has set it."""
        from ...core.training.corrections import corrected_pixels, suggested_steps

        aset = self._following()
        if aset is None:
            return
        self._corrected = corrected_pixels(aset.pairs)
        self._setting_steps = True
        try:
            self.steps.setValue(suggested_steps(self._corrected))
        finally:
            self._setting_steps = False

    def status_text(self) -> str:
        return self.controls.status.text()

    def _remember_arch(self) -> None:
        if self.arch.isEnabled() and self.arch.currentText() in PRESET_NAMES:
            self._scratch_arch = self.arch.currentText()

    def _start_architecture(self):
        """The network of the model fine-tuning would start from, or None (scratch, or no model yet)."""
        choice = self.start_from.currentText()
        if choice == START_CURRENT:
            return self.state.model_info.architecture if self.state.model_info is not None else None
        if choice == START_PRETRAINED:
            path = self.pretrain_panel.model_path if self.pretrain_panel is not None else None
            if path is None:
                return None
            from ...core.model_files import read_model_info

            try:
                return read_model_info(path).architecture
            except (GenSelfDiffError, OSError):
                return None
        return None

    def sync_network(self) -> None:
        """The Network box: editable for scratch; otherwise greyed out, showing the start model's network."""
        scratch = self.start_from.currentText() == START_SCRATCH
        self.arch.blockSignals(True)
        while self.arch.count() > len(PRESET_NAMES):
            self.arch.removeItem(self.arch.count() - 1)
        if scratch:
            self.arch.setCurrentText(self._scratch_arch)
            self.arch.setToolTip("Network size of a model trained from scratch: 'small' and 'tiny' suit CPUs.")
        else:
            arch = self._start_architecture()
            if self.start_from.currentText() == START_CURRENT:
                text = architecture_text(arch) if arch is not None else "(no model chosen)"
                where = "the current model"
            else:
                text = architecture_text(arch) if arch is not None else "(no pretrained model yet)"
                where = "the pretrained model"
            self.arch.addItem(text)
            self.arch.setCurrentIndex(self.arch.count() - 1)
            self.arch.setToolTip(f"The network of {where}: fine-tuning keeps it (a model file brings its own).")
        self.arch.setEnabled(scratch)
        self.arch.blockSignals(False)
        self.keep_elsewhere.setEnabled(not scratch)  # nothing to keep when training from scratch

    def _count_images(self, pairs: list, images: str | None) -> int | None:
        """How many training images there will be (None when a folder cannot be listed)."""
        from ...core.io.read import IMAGE_SUFFIXES

        count = len(pairs)
        if images:
            try:
                count += sum(1 for p in Path(images).expanduser().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            except OSError:
                return None
        return count

    def _init_model(self) -> str:
        choice = self.start_from.currentText()
        if choice == START_SCRATCH:
            return "scratch"
        if choice == START_PRETRAINED:
            path = self.pretrain_panel.model_path if self.pretrain_panel is not None else None
            if path is None:
                raise _UserError("No pretrained model yet: run pretraining to the end first, or start from the current model.")
            return str(path)
        if self.state.model_path is None:
            raise _UserError(
                "No current model to start from: choose a model in the Segment tab, or start from the "
                "pretrained model or from scratch."
            )
        return str(self.state.model_path)

    def _class_names(self) -> list[str]:
        info = self.state.model_info
        if self.start_from.currentText() == START_CURRENT and info is not None and info.classes:
            return [c.name for c in info.classes]
        aset = self.state.annotations
        if aset is not None and aset.classes:
            return [c.name for c in aset.classes]
        if info is not None and info.classes:
            return [c.name for c in info.classes]
        return list(DEFAULT_CLASSES)

    def _check_classes(self, aset) -> None:
        """Refuse continuing a model whose classes differ from the annotation set's (the labels would be misread)."""
        info = self.state.model_info
        if self.start_from.currentText() != START_CURRENT or info is None or not info.classes or not len(aset):
            return
        wanted = {c.name for p in aset.pairs for c in p.classes} or {c.name for c in aset.classes}
        names = [c.name for c in info.classes]
        ids = {c.id: c.name for p in aset.pairs for c in p.classes}
        if any(i >= len(names) or names[i] != n for i, n in ids.items()) or not wanted <= set(names):
            have = ", ".join(f"{i} {n}" for i, n in sorted(ids.items()))
            raise _UserError(
                f"the annotation set's classes ({have}) differ from the current model's "
                f"({', '.join(f'{i} {n}' for i, n in enumerate(names))}). Start from the pretrained model or from "
                "scratch (a new class head learns the set's classes), or choose a model with these classes."
            )

    def config(self):
        """The :class:`FinetuneConfig` the panel describes, with the annotation set's pairs loaded.

        Raises:
            _UserError / GenSelfDiffError: no data, no model to start from (message for the user).
        """
        from ...core.training.corrections import corrections_config

        pairs, instances = [], None
        aset = self.state.annotations
        if self.use_set.isChecked() and aset is not None:
            pairs = aset.training_items()  # (name, image, labels, corrected-pixels mask or None)
            instances = aset.training_instances() if CORRECTION_RECIPE.use_instances else None  # read only when used
            self._check_classes(aset)
        images, masks = self.images.text() or None, self.masks.text() or None
        if bool(images) != bool(masks):
            raise _UserError("Give both a folder of images and a folder of their masks, or neither.")
        if not pairs and not images:
            raise _UserError(
                "Nothing to fine-tune on: the annotation set is empty. Correct a segmentation and press "
                "'Mark as corrected' (Correct tab), or give folders of images and masks."
            )
        run_dir = self.run_dir.text().strip()
        if not run_dir:
            raise _UserError("Choose a run folder for the checkpoints and the model.")
        count = self._count_images(pairs, images)
        few = count is not None and count < MIN_IMAGES_FOR_SCORE
        keep = self.keep_elsewhere.isChecked() and self.keep_elsewhere.isEnabled()
        cfg = corrections_config(
            pairs, init=self._init_model(), out_dir=run_dir, instances=instances, images=images, masks=masks,
            recipe=CORRECTION_RECIPE.with_(anchor=KEEP_ELSEWHERE_ANCHOR if keep else 0.0),
            arch=self.architecture or self._scratch_arch, classes=self._class_names(),
            steps=int(self.steps.value()), batch=int(self.batch.value()), patch=int(self.patch.value()),
            device=self.state.device, precision=self.state.precision, resume=self.resume_box.isChecked(),
        )
        if few:
            cfg.val_fraction = 0.0  # nothing held out: all images train, the last model is kept
        self.planned = (count, few)
        return cfg

    # -- actions -----------------------------------------------------------------------------------

    def start(self):
        """Start fine-tuning; returns the worker or None (with a message)."""
        if self._already_running():
            return None
        try:
            cfg = self.config()
        except (_UserError, GenSelfDiffError, OSError) as exc:
            text = f"Cannot fine-tune: {_notify.describe(exc) if not isinstance(exc, _UserError) else exc}"
            _notify.tell(self.controls.status, text, "error")
            return None
        self._fresh_run_folder(cfg)
        self.paused_pretraining = False
        if self.pretrain_panel is not None and self.state.running("pretrain") and not self.pretrain_panel.is_paused:
            self.pretrain_panel.pause(by="fine-tuning")
            self.paused_pretraining = True
            _notify.info("Pretraining paused while fine-tuning runs.")
        count, few = self.planned
        what = f"{len(cfg.pairs or [])} corrected pair(s)" + (" and a folder of images" if cfg.images else "")
        what += self.steps_note()
        held = (f" Fewer than {MIN_IMAGES_FOR_SCORE} images: all of them train and nothing is held out, so there "
                "will be no held-out score." if few else "")
        return self._launch(cfg, f"Preparing {what}...{held}")

    def use_model_so_far(self):
        """Switch to the running fine-tune's latest checkpoint (exported and loaded in a worker thread),
        then offer to re-segment; returns the worker, or None when nothing runs."""
        from .._threading import start_worker

        if not self.state.running(self.job) or self.so_far_worker is not None:
            return None
        self.use_so_far.setEnabled(False)
        self.so_far_worker = start_worker(
            export_latest, self.run_dir.text(), on_returned=self._on_so_far, on_errored=self._on_so_far_error,
            on_finished=self._so_far_finished,
        )
        return self.so_far_worker

    def _on_so_far(self, loaded) -> None:
        if loaded is None:
            _notify.tell(self.controls.status, "No model written yet: the first one comes after a quarter of the steps.",
                         "info")
            return
        try:
            self.state.set_model(loaded.path, (loaded.network, loaded.info))
        except (GenSelfDiffError, OSError) as exc:
            self._on_so_far_error(exc)
            return
        _notify.tell(self.controls.status,
                     f"Now segmenting with '{model_name(loaded.path)}' ({loaded.path}), the model so far; fine-tuning "
                     "goes on and its final model replaces it. No held-out score yet.", "info",
                     toast="The fine-tune's model so far is in use.")
        self.offer_resegment()

    def _on_so_far_error(self, exc: Exception) -> None:
        _notify.tell(self.controls.status, f"Cannot use the model so far: {_notify.describe(exc)}", "error")

    def _so_far_finished(self) -> None:
        self.so_far_worker = None
        self.use_so_far.setEnabled(self.state.running(self.job))

    # -- worker callbacks --------------------------------------------------------------------------

    def _on_event(self, event) -> None:
        super()._on_event(event)
        if event.kind == "checkpoint" and self.so_far_worker is None:
            self.use_so_far.setEnabled(True)
            self.use_so_far.setText(f"Use the model so far (step {event.step})")

    def _job_function(self):
        return finetune_and_load

    def _on_returned(self, path) -> None:
        loaded = None
        if isinstance(path, LoadedModel):
            path, loaded = path.path, (path.network, path.info)
        cancelled = bool(self.run and self.run.cancelled)
        self.model_path = Path(path) if path else None
        if cancelled or path is None:
            self.outcome = "cancelled"
            kept = f" Its weights so far: {path}." if path else ""
            _notify.tell(self.controls.status,
                         f"Fine-tuning stopped; the model in use is unchanged. Checkpoint in {self.run_dir.text()}.{kept}",
                         "info", toast="Fine-tuning stopped; model unchanged.")
            return
        self.outcome = "done"
        try:
            self.state.set_model(path, loaded)
        except (GenSelfDiffError, OSError) as exc:
            _notify.tell(self.controls.status,
                         f"Fine-tuning finished but its model cannot be used: {_notify.describe(exc)}", "error",
                         toast="Fine-tuned model cannot be used.")
            return
        done = next((e for e in reversed(self.run.events) if e.kind == "done"), None) if self.run else None
        info = self.state.model_info
        val = (info.provenance.get("data") or {}).get("val_images") if isinstance(info.provenance.get("data"), dict) else None
        if val:
            score = ", ".join(f"{k} {v:.3f}" for k, v in (done.metrics if done else {}).items()
                              if k in ("mean_iou", "mean_f1") and isinstance(v, (int, float)))
            held = f" Held-out score on {len(val)} image(s): {score}." if score else ""
        else:
            held = (f" No held-out score: fewer than {MIN_IMAGES_FOR_SCORE} images, all used for training."
                    if self.planned[1] else " No held-out score: nothing was held out.")
        steps = f" after {done.step} steps" if done is not None else ""
        _notify.tell(self.controls.status,
                     f"Fine-tuning done{steps}: now segmenting with '{model_name(path)}' ({path}).{held}",
                     "info", toast="Fine-tuning done; the new model is in use.")
        self.offer_resegment()

    def other_images(self) -> list:
        """Open image layers that are not in the annotation set (by name), previews and opened pairs left out."""
        done = {p.name for p in self.state.annotations.pairs} if self.state.annotations is not None else set()
        return [
            layer for layer in image_layers(self.state.viewer)
            if layer.name not in done and layer_meta(layer).get("kind") not in ("preview", "pair")
        ]

    def offer_resegment(self):
        layers = self.other_images()
        if not layers or self.segment_panel is None:
            return None
        names = ", ".join(layer.name for layer in layers[:4]) + (" ..." if len(layers) > 4 else "")
        if not self.state.ask(
            "Re-segment with the new model?",
            f"Segment the {len(layers)} open image(s) not in the annotation set ({names}) with the fine-tuned "
            "model? Their unedited labels are replaced; for edited ones you are asked.",
        ):
            return None
        self.resegment_worker = self.segment_panel.run(layers)
        return self.resegment_worker

    def _on_errored(self, exc: Exception) -> None:
        from .._subprocess import TrainingProcessDied

        self.outcome = "failed"
        text = f"Cannot fine-tune: {exc}" if isinstance(exc, GenSelfDiffError) else _notify.describe(exc, "Fine-tuning")
        if isinstance(exc, TrainingProcessDied) and "last checkpoint" in str(exc):
            text += " To continue: tick 'resume its latest checkpoint' and press Start fine-tuning."
        _notify.tell(self.controls.status, text, "error", toast="Fine-tuning failed; see the Train tab.")

    def _after_finished(self) -> None:
        """A pretraining this run paused goes on; the run's final model replaces any model so far."""
        self.use_so_far.setEnabled(False)
        self.use_so_far.setText("Use the model so far")
        if self.paused_pretraining and self.pretrain_panel is not None:
            self.paused_pretraining = False
            if self.pretrain_panel.paused_by == "fine-tuning":
                self.pretrain_panel.resume()
                _notify.info("Pretraining resumed.")  # the fine-tuning's last word stays in its status line


class _UserError(Exception):
    """A message for the user about the panel's inputs."""
