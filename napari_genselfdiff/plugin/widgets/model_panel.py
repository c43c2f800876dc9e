"""Model panel: the bundled default model, a file picker, recent models, and what the model is.

Models are listed by their display name (what, from which data, when; see
:attr:`~napari_genselfdiff.core.model_files.ModelInfo.display_name`), with the file in the tooltip.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
)

from ...core.defaults import DEVICE_CHOICES, PRECISION_CHOICES
from ...core.errors import GenSelfDiffError
from .. import _notify
from ._form import hbox, panel_layout

_NONE = "(choose a model file...)"
_DEFAULT = "Default model (bundled)"
#: the precisions the panel offers (see PluginState.precision)
PRECISIONS = PRECISION_CHOICES
#: fewer training images than this: no held-out score (one held-out image says nothing general)
MIN_IMAGES_FOR_SCORE = 3
_names: dict[tuple[str, float], str] = {}


def model_name(path: str | Path) -> str:
    """The display name of a model file (cached by path and modification time); the file name when
    the file cannot be read."""
    path = Path(path)
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return f"{path.name} (missing)"
    if key not in _names:
        from ...core.model_files import read_model_info

        try:
            _names[key] = read_model_info(path).display_name
        except (GenSelfDiffError, OSError):
            _names[key] = f"{path.name} (unreadable)"
    return _names[key]


class ModelPanel(QGroupBox):
    """Choose the model: bundled default, recent files, or Browse; shows classes, architecture,
    provenance, and the device and precision that will be used (both can be chosen)."""

    def __init__(self, state, parent=None) -> None:
        super().__init__("Model", parent)
        self.state = state
        self._choices = QComboBox()
        self._choices.setToolTip("The model that segments (and that fine-tuning starts from).")
        self._browse = QPushButton("Browse...")
        self._browse.setToolTip("Open a model file (.safetensors) written by napari-genselfdiff.")
        self._device = QComboBox()
        self._device.addItems(list(DEVICE_CHOICES))
        self._device.setToolTip("auto: a CUDA or Apple GPU when present, else the CPU.")
        self._precision = QComboBox()
        self._precision.addItems(PRECISIONS)
        self._precision.setToolTip(
            "Precision of segmentation and training. auto: bf16 on GPUs and on CPUs with native bf16 "
            "(AVX512-BF16 or AMX), else fp32. fp32: the same numbers on every machine (slower where bf16 is native)."
        )
        self._info = QPlainTextEdit()
        self._info.setReadOnly(True)
        self._info.setMaximumHeight(140)
        self._device_label = QLabel()
        self._classes = QLabel()
        self._classes.setWordWrap(True)
        self._status = QLabel()
        self._status.setWordWrap(True)

        self._device_label.setWordWrap(True)  # "uses cuda (bf16)" wraps rather than widening the dock
        panel_layout(self, [], hbox(self._choices, self._browse, stretch=0),
                     hbox(QLabel("Device:"), self._device, self._precision, self._device_label, stretch=3),
                     self._classes, self._info, self._status)

        self._choices.activated.connect(self._on_choice)
        self._browse.clicked.connect(self._on_browse)
        self._device.currentTextChanged.connect(self._on_device)
        self._precision.currentTextChanged.connect(self._on_precision)
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
            _notify.tell(self._status, f"Cannot use this model: {exc} The previous model stays in use.", "error",
                         toast="Cannot use this model file.")
            return False
        except OSError as exc:
            _notify.tell(self._status, _notify.describe(exc, "Opening the model"), "error",
                         toast="Cannot open this model file.")
            return False
        self._status.setText("")
        self.refresh_choices()
        return True

    def set_precision(self, name: str) -> None:
        """Choose the precision ("auto", "fp32", "bf16", "fp16") as the user would in its list.

        Raises:
            ValueError: not one of those.
        """
        if name not in PRECISIONS:
            raise ValueError(f"precision {name!r}: use one of {', '.join(PRECISIONS)}")
        self._precision.setCurrentText(name)

    def status_text(self) -> str:
        return self._status.text()

    def choices(self) -> list[tuple[str, str | None, str]]:
        """The list as shown: (text, model file, tooltip) of each entry."""
        return [(self._choices.itemText(i), self._choices.itemData(i), self._choices.itemData(i, 3) or "")
                for i in range(self._choices.count())]

    def refresh_choices(self) -> None:
        from ...core.model_files import bundled_model_path, bundled_models

        self._choices.blockSignals(True)
        self._choices.clear()
        current = str(self.state.model_path) if self.state.model_path else None
        bundled = bundled_model_path()
        shipped = set(bundled_models().values())
        if current is None:
            self._choices.addItem(_NONE, None)
        if bundled is not None:
            self._choices.addItem(_DEFAULT, str(bundled))
            self._choices.setItemData(self._choices.count() - 1, f"{model_name(bundled)}\n{bundled}", 3)
        for name, path in bundled_models().items():  # the other bundled models (THE registry), by name
            if path != bundled:
                self._choices.addItem(f"{name} (bundled)", str(path))
                self._choices.setItemData(self._choices.count() - 1, f"{model_name(path)}\n{path}", 3)
        paths = [str(p) for p in self.state.settings.recent_models if Path(p) not in shipped]
        if current is not None and current not in paths and Path(current) not in shipped:
            paths.append(current)
        names = [model_name(p) for p in paths]
        for path, name in zip(paths, names):
            if names.count(name) > 1:  # e.g. best and last of one run: the file tells them apart
                name = f"{name} [{Path(path).name}]"
            self._choices.addItem(name, path)
            self._choices.setItemData(self._choices.count() - 1, path, 3)  # tooltip role: the file
        if current is not None:
            self._choices.setCurrentIndex(max(self._choices.findData(current), 0))
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
                _notify.tell(self._status, f"Cannot use this model: {path} no longer exists; it was removed from the "
                             "recent list.", "error", toast="This model file no longer exists.")
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

    def _on_precision(self, name: str) -> None:
        self.state.precision = name
        self._device_label.setText(f"uses {self.state.resolved_device()}")

    def _show(self, info) -> None:
        self._device_label.setText(f"uses {self.state.resolved_device()}")
        self._classes.setText(class_legend(info.classes) if info is not None and info.classes else "")
        if info is None:
            from ...core.model_files import bundled_model_path

            self._info.setPlainText(
                "No model chosen. The bundled default model is missing from this installation: open a model file "
                "(.safetensors) trained with napari-genselfdiff (Browse...), or fine-tune one in the Train tab."
                if bundled_model_path() is None else
                "No model chosen: pick the default model or a recent one above, or open a file (Browse...)."
            )
            return
        text = f"{info.display_name}\nfile: {self.state.model_path}\n{describe_model(info)}"
        if info.head != "classes":
            text = "This is a pretraining (noise) model: it cannot segment, but fine-tuning can start from it.\n" + text
        self._info.setPlainText(text)


def describe_model(info) -> str:
    """The model's summary, with the training data record in words: which images trained it, which
    validated it, and the held-out score only when there was enough data for one to mean something."""
    lines = info.summary().splitlines()
    prov = info.provenance or {}
    data = prov.get("data")
    if not isinstance(data, dict):
        return "\n".join(lines)
    where = []
    folders = [str(f) for f in data.get("folders") or []]
    if data.get("in_memory_arrays"):
        where.append("corrected pairs of the annotation set" if prov.get("stage") == "finetune" else "open image layers")
    if folders:
        where.append(", ".join(folders))
    source = f" from {' and '.join(where)}" if where else ""
    patches = f", {data['patches']} patches" if data.get("patches") is not None else ""
    train, val = data.get("train_images"), data.get("val_images")
    replaced: list[str] = []
    if isinstance(train, list) and isinstance(val, list):
        total = len(train) + len(val)
        replaced.append(f"trained on: {_images(train)}{source}{patches}")
        if val and total >= MIN_IMAGES_FOR_SCORE:
            replaced.append(f"validated on: {_images(val)} (held out; the model with the best score on them was kept)")
        elif val:
            replaced.append(f"validated on: {_images(val)}; no held-out score shown: with fewer than "
                            f"{MIN_IMAGES_FOR_SCORE} images one held-out image says little about accuracy")
        else:
            replaced.append("validated on: nothing held out" + (
                f" (fewer than {MIN_IMAGES_FOR_SCORE} images: all trained); no held-out score"
                if total < MIN_IMAGES_FOR_SCORE else "; no held-out score"))
        show_score = bool(val) and total >= MIN_IMAGES_FOR_SCORE
    else:
        count = data.get("images")
        replaced.append(f"data: {count} image(s){source}{patches}" if count is not None else f"data:{source}{patches}")
        show_score = True
    out = []
    for line in lines:
        if line.startswith("data: "):
            out.extend(replaced)
        elif line.startswith("metrics: ") and not show_score:
            continue
        elif line.startswith("metrics: "):
            out.append("held-out " + line)
        else:
            out.append(line)
    return "\n".join(out)


def _images(names: list) -> str:
    shown = ", ".join(str(n) for n in names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{len(names)} image{'s' if len(names) != 1 else ''} ({shown})" if names else "0 images"


def class_legend(classes) -> str:
    """Rich text: a coloured square and the name of each class (background left out)."""
    items = [
        f'<span style="color: rgb({c.color[0]},{c.color[1]},{c.color[2]})">&#9632;</span>&nbsp;{c.name}'
        for c in classes
        if c.id != 0
    ]
    return "Classes: " + " &nbsp; ".join(items)
