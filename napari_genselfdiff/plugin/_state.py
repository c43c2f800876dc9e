"""What the panels of one dock widget share: the viewer, the model, the annotation set, the jobs.

One instance per widget (no module-level singleton), so two viewers never mix their state. Tests set
its attributes directly (e.g. ``state.ask = lambda title, text: True`` answers every question).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import QObject, Signal

from ..core.defaults import DEFAULT_DEVICE, DEFAULT_PRECISION
from ..core.errors import ModelFileError
from ._settings import Settings, data_dir


def _ask_with_dialog(parent) -> Callable[[str, str], bool]:
    def ask(title: str, text: str) -> bool:
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    return ask


#: The state of the annotation widget docked in each viewer (by id of the viewer), so that the slide
#: widget of the same viewer segments with the Model panel's device and precision and the Segment
#: panel's tile. Weak: a closed widget's state goes away.
_BY_VIEWER: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def state_of(viewer) -> PluginState | None:
    """The :class:`PluginState` of the annotation widget in ``viewer``, or None if none is docked."""
    return _BY_VIEWER.get(_viewer_key(viewer))


def _viewer_key(viewer) -> int:
    """The viewer's identity; napari hands plugin widgets a proxy of the viewer, so unwrap it."""
    return id(getattr(viewer, "__wrapped__", viewer))


class PluginState(QObject):
    """Shared state of the panels.

    Attributes:
        viewer: the napari viewer.
        settings: recent models and folders (persisted).
        model_path, model_info: the chosen model file and its metadata (None until one is chosen).
        device: "auto", "cpu", "cuda" or "mps" (the device inference and training use).
        precision: "auto", "fp32", "bf16" or "fp16" (the precision segmentation, fine-tuning and
            pretraining compute in). "auto" (the default) means bf16 on GPUs with bf16 and on CPUs
            with native bf16 (AVX512-BF16, AMX), fp16 on other GPUs, else fp32; "fp32" computes the
            same numbers on every kind of CPU (the plugin's tests choose it).
        annotations: the open :class:`..core.annotations.AnnotationSet` (None until opened).
        jobs: running workers by name ("segment", "pretrain", "finetune"), from start to finished.
        ask: ``ask(title, text) -> bool``; a Yes/No dialog by default.
        inference_settings: ``() -> InferenceSettings`` of the Segment panel (tile, overlap, device,
            precision), set by the widget; None until then. The slide widget reads it.
    """

    model_changed = Signal(object)
    annotations_changed = Signal()
    jobs_changed = Signal()

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.settings = Settings()
        self.model_path: Path | None = None
        self.model_info = None
        self.device = DEFAULT_DEVICE
        self.precision = DEFAULT_PRECISION
        self._network = None
        self.annotations = None
        self.jobs: dict[str, object] = {}
        self.ask: Callable[[str, str], bool] = _ask_with_dialog(parent)
        self.inference_settings: Callable[[], object] | None = None
        _BY_VIEWER[_viewer_key(viewer)] = self

    # -- model -------------------------------------------------------------------------------------

    def set_model(self, path: str | Path, loaded: tuple | None = None):
        """Choose a model file: load and check it (metadata and weights), remember it, tell the panels.

        The weights are loaded here, on the CPU, so a corrupt or mismatched file is reported when it
        is chosen, not in the middle of a job; inference moves the network to its device.
        ``loaded``: ``(network, info)`` of ``path`` already loaded that way (the fine-tune panel loads
        its new model in its worker thread, so the GUI does not wait for it).

        Raises:
            ModelFileError: missing, corrupt, pickled or foreign file (nothing changes then).
        """
        from ..core.model_files import resolve_model

        if loaded is not None:
            network, info = loaded
        else:  # fine-tuning may start from a noise model
            network, info = resolve_model(path, device="cpu", segmentation=False)
        path = info.path
        self.model_path, self.model_info, self._network = Path(path), info, network
        if path != _bundled():
            self.settings.add_recent_model(path)
        self.model_changed.emit(info)
        return info

    def clear_model(self) -> None:
        self.model_path, self.model_info, self._network = None, None, None
        self.model_changed.emit(None)

    def network(self):
        """The chosen model's network and info.

        Raises:
            ModelFileError: no model chosen.
        """
        if self.model_path is None or self._network is None:
            hint = ("pick a model file (.safetensors) or 'Default model (bundled)' in the Model section first"
                    if _bundled() is not None else
                    "pick a model file (.safetensors) in the Model section first "
                    "(the bundled default model is missing from this installation)")
            raise ModelFileError(f"no model chosen: {hint}.")
        return self._network, self.model_info

    def resolved_device(self) -> str:
        from ..core.inference import choose_device, choose_precision

        try:
            device = choose_device(self.device)
        except ValueError as exc:
            return f"unavailable ({exc})"
        return f"{device} ({choose_precision(device, self.precision).value})"

    # -- annotation set ---------------------------------------------------------------------------

    def default_annotation_folder(self) -> Path:
        return self.settings.folder("annotations", data_dir() / "annotations")

    def open_annotations(self, folder: str | Path):
        """Open (or create) the annotation set in ``folder`` and remember it.

        Raises:
            AnnotationSetError: the folder cannot be used (nothing changes then).
        """
        from ..core.annotations import AnnotationSet

        aset = AnnotationSet(folder)
        self.annotations = aset
        self.settings.set_folder("annotations", aset.folder)
        self.annotations_changed.emit()
        return aset

    # -- jobs -------------------------------------------------------------------------------------

    def running(self, name: str) -> bool:
        """A job is running from the click that started it until its ``finished`` callback."""
        return name in self.jobs

    def running_jobs(self) -> list[str]:
        return [name for name in self.jobs if self.running(name)]

    def set_job(self, name: str, worker) -> None:
        if worker is None:
            self.jobs.pop(name, None)
            _release_freed_memory_soon()
        else:
            self.jobs[name] = worker
        self.jobs_changed.emit()


def _release_freed_memory_soon() -> None:
    """After a job: hand the pages its worker thread freed back to the system, in a background thread.

    Each job runs in a new worker thread with its own glibc malloc arena, whose freed pages otherwise
    stay resident (napari's memory grew by a few MB per fine-tune cycle without this; see
    benchmarks/finetune_cycles_memory.py).
    """
    import threading

    from ..core.allocator import release_freed_memory

    threading.Thread(target=release_freed_memory, name="genselfdiff-release-memory", daemon=True).start()


def _bundled() -> Path | None:
    from ..core.model_files import bundled_model_path

    return bundled_model_path()
