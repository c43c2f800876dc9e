"""A path field: a line edit with a "..." button that browses for a folder (or a model file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


class PathEdit(QHBoxLayout):
    """``edit`` (the path, stretched) and a narrow "..." button beside it.

    The button opens a folder dialog (or, with ``folder=False``, a ``.safetensors`` file dialog)
    titled ``caption``, starting at the path typed or the home folder. The path chosen is written into
    ``edit``, or, with ``on_chosen``, handed to it instead (it writes the field itself). ``dialog_parent``
    is the dialog's parent widget (None: a top-level dialog).
    """

    def __init__(self, caption: str, folder: bool = True, *, text: str = "",
                 on_chosen: Callable[[str], object] | None = None, dialog_parent: QWidget | None = None) -> None:
        super().__init__()
        self.caption, self.folder = caption, folder
        self._on_chosen, self._dialog_parent = on_chosen, dialog_parent
        self.edit = QLineEdit(text)
        self.button = QPushButton("...")
        self.button.setMaximumWidth(32)
        self.addWidget(self.edit, 1)
        self.addWidget(self.button)
        self.button.clicked.connect(self.browse)

    def browse(self) -> None:
        start = self.edit.text() or str(Path.home())
        if self.folder:
            path = QFileDialog.getExistingDirectory(self._dialog_parent, self.caption, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self._dialog_parent, self.caption, start, "Model files (*.safetensors)")
        if not path:
            return
        if self._on_chosen is not None:
            self._on_chosen(path)
        else:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()
