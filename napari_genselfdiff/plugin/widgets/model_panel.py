"""Model panel: the bundled default model, a file picker, recent models, and what the model is."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from ...core.errors import GenSelfDiffError
from .. import _notify

_NONE = "(choose a model file...)"
_DEFAULT = "Default model (bundled)"


class ModelPanel(QGroupBox):
    """Choose the model: bundled default, recent files, or Browse; shows classes, architecture,
    provenance and the device that will be used."""

    def __init__(self, state, parent=None) -> None:
        super().__init__("Model", parent)
        self.state = state
        self._choices = QComboBox()
        self._choices.setToolTip("The model that segments (and that fine-tuning starts from).")
        self._browse = QPushButton("Browse...")
        self._browse.setToolTip("Open a model file (.safetensors) written by napari-genselfdiff.")
        self._device = QComboBox()
        self._device.addItems(["auto", "cpu", "cuda", "mps"])
        self._device.setToolTip("auto: a CUDA or Apple GPU when present, else the CPU.")
        self._info = QPlainTextEdit()
        self._info.setReadOnly(True)
        self._info.setMaximumHeight(140)
        self._device_label = QLabel()
        self._classes = QLabel()
        self._classes.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self._choices, 1)
        row.addWidget(self._browse)
        device_row = QHBoxLayout()
        device_row.addWidget(QLabel("Device:"))
        device_row.addWidget(self._device)
        device_row.addWidget(self._device_label, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(device_row)
        layout.addWidget(self._classes)
        layout.addWidget(self._info)

        self._choices.activated.connect(self._on_choice)
        self._browse.clicked.connect(self._on_browse)
        self._device.currentTextChanged.connect(self._on_device)
        state.model_changed.connect(self._show)
        state.model_changed.connect(lambda *_: self.refresh_choices())
        self.refresh_choices()
        self._show(None)
        self._load_initial()

    # -- actions (tests call these) ---------------------------------------------------------------

    def load(self, path: str | Path) -> bool:
        """Choose ``path`` as the model; a bad file is reported and the previous model kept."""
        try:
            self.state.set_model(path)
        except GenSelfDiffError as exc:
            _notify.error(f"Cannot use this model: {exc}")
            return False
        except OSError as exc:
            _notify.report(exc, "Opening the model")
            return False
        self.refresh_choices()
        return True

    def refresh_choices(self) -> None:
        from ...core.model_files import bundled_model_path

        self._choices.blockSignals(True)
        self._choices.clear()
        current = str(self.state.model_path) if self.state.model_path else None
        bundled = bundled_model_path()
        if current is None:
            self._choices.addItem(_NONE, None)
        if bundled is not None:
            self._choices.addItem(_DEFAULT, str(bundled))
        for path in self.state.settings.recent_models:
            if bundled is None or Path(path) != bundled:
                self._choices.addItem(Path(path).name, path)
                self._choices.setItemData(self._choices.count() - 1, path, 3)  # tooltip role
        if current is not None:
            index = self._choices.findData(current)
            if index < 0:
                self._choices.addItem(Path(current).name, current)
                index = self._choices.count() - 1
            self._choices.setCurrentIndex(index)
        self._choices.blockSignals(False)

    # -- slots -------------------------------------------------------------------------------------

    def _load_initial(self) -> None:
        from ...core.model_files import bundled_model_path

        bundled = bundled_model_path()
        if bundled is not None:
            self.load(bundled)
            return
        for path in self.state.settings.recent_models:
            if Path(path).is_file():
                try:
                    self.state.set_model(path)
                except (GenSelfDiffError, OSError):
                    continue
                self.refresh_choices()
                return

    def _on_choice(self, index: int) -> None:
        path = self._choices.itemData(index)
        if path and (self.state.model_path is None or str(self.state.model_path) != path):
            if not Path(path).is_file():
                _notify.error(f"Cannot use this model: {path} no longer exists; it was removed from the recent list.")
                self.state.settings.forget_model(path)
                self.refresh_choices()
                return
            self.load(path)

    def _on_browse(self) -> None:
        start = str(self.state.model_path.parent) if self.state.model_path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", start, "Model files (*.safetensors);;All files (*)")
        if path:
            self.load(path)

    def _on_device(self, name: str) -> None:
        self.state.device = name
        self._device_label.setText(f"uses {self.state.resolved_device()}")

    def _show(self, info) -> None:
        self._device_label.setText(f"uses {self.state.resolved_device()}")
        self._classes.setText(class_legend(info.classes) if info is not None and info.classes else "")
        if info is None:
            from ...core.model_files import bundled_model_path

            self._info.setPlainText(
                "No model chosen. No default model is bundled with this version: open a model file "
                "(.safetensors) trained with napari-genselfdiff (Browse...), or fine-tune one in the Train tab."
                if bundled_model_path() is None else
                "No model chosen: pick the default model or a recent one above, or open a file (Browse...)."
            )
            return
        text = f"file: {self.state.model_path}\n{describe_model(info)}"
        if info.head != "classes":
            text = "This is a pretraining (noise) model: it cannot segment, but fine-tuning can start from it.\n" + text
        self._info.setPlainText(text)


def describe_model(info) -> str:
    """The model's summary, with the training data record shortened to one readable line."""
    lines = info.summary().splitlines()
    data = (info.provenance or {}).get("data")
    if isinstance(data, dict):
        parts = []
        if data.get("images") is not None:
            parts.append(f"{data['images']} image(s)")
        folders = [str(f) for f in data.get("folders") or []]
        if folders:
            parts.append("from " + ", ".join(folders))
        if data.get("in_memory_arrays"):
            parts.append(f"{data['in_memory_arrays']} from napari layers")
        if data.get("patches") is not None:
            parts.append(f"{data['patches']} patches")
        lines = [f"data: {', '.join(parts)}" if line.startswith("data: ") else line for line in lines]
    return "\n".join(lines)


def class_legend(classes) -> str:
    """Rich text: a coloured square and the name of each class (background left out)."""
    items = [
        f'<span style="color: rgb({c.color[0]},{c.color[1]},{c.color[2]})">&#9632;</span>&nbsp;{c.name}'
        for c in classes
        if c.id != 0
    ]
    return "Classes: " + " &nbsp; ".join(items)
