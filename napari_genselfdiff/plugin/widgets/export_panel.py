"""Export panel: the annotation set's corrected masks (or the selected labels layer) to a folder.

Writes ``<stem>_labels.tif`` + ``.png``, ``<stem>_instances.tif`` when there are nuclei,
``<stem>.geojson`` for QuPath and ``classes.json`` (see :mod:`napari_genselfdiff.core.export`).
Existing files are replaced only after the user says yes. The nuclei exported are those of the
corrected labels (:func:`napari_genselfdiff.core.export.export_items` brings them into agreement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QLabel,
    QPushButton,
    QRadioButton,
)

from ...core.errors import GenSelfDiffError
from .. import _notify
from .._layers import classes_of, layer_meta, nuclei_layer_for
from ._form import hbox, panel_layout
from ._path_edit import PathEdit


class ExportPanel(QGroupBox):
    """Export masks; attributes tests use: :meth:`set_folder`, :meth:`use_layer`, :meth:`export`,
    ``last_report``."""

    def __init__(self, state, parent=None) -> None:
        super().__init__("Export masks", parent)
        self.state = state
        self.last_report = None
        self._from_set = QRadioButton("corrected pairs of the annotation set")
        self._from_layer = QRadioButton("the selected labels layer")
        self._from_set.setChecked(True)
        self._folder_row = PathEdit("Export to folder", text=str(state.settings.folder("export", _default_export())),
                                    dialog_parent=self)
        self._folder = self._folder_row.edit
        self._tif = QCheckBox("TIFF")
        self._png = QCheckBox("PNG")
        self._geojson = QCheckBox("GeoJSON (QuPath)")
        for box in (self._tif, self._png, self._geojson):
            box.setChecked(True)
        self._object_type = QComboBox()
        self._object_type.addItems(["auto", "detection", "annotation"])
        self._object_type.setToolTip(
            "QuPath object type: auto = by class (glands annotations, nuclei detections); detections are "
            "light (many nuclei); annotations can be edited in QuPath."
        )
        self._export = QPushButton("Export")
        self._status = QLabel()
        self._status.setWordWrap(True)

        panel_layout(self, [("Export:", self._from_set), ("", self._from_layer), ("To folder:", self._folder_row),
                            ("Formats:", hbox(self._tif, self._png, self._geojson)),
                            ("QuPath objects:", self._object_type)],
                     self._export, self._status)

        self._export.clicked.connect(lambda: self.export())

    def set_folder(self, folder: str | Path) -> None:
        self._folder.setText(str(folder))

    def use_layer(self, on: bool = True) -> None:
        """Export the selected labels layer (True) or the annotation set (False)."""
        (self._from_layer if on else self._from_set).setChecked(True)

    def _formats(self) -> list[str]:
        return [name for name, box in (("tif", self._tif), ("png", self._png), ("geojson", self._geojson)) if box.isChecked()]

    def _layer_items(self):
        from napari.layers import Labels

        from ...core.export import ExportItem, safe_stem

        layer = self.state.viewer.layers.selection.active
        if not isinstance(layer, Labels):
            raise _UserError("Select a labels layer in the layer list to export it (or export the annotation set).")
        data = np.asarray(layer.data)
        if data.ndim != 2:
            raise _UserError(f"'{layer.name}' has {data.ndim} dimensions; only 2-D labels can be exported.")
        meta = layer_meta(layer)
        if meta.get("kind") == "instances":
            raise _UserError(
                f"'{layer.name}' holds nucleus instances; select the class labels layer (its nuclei are exported with it)."
            )
        classes = classes_of(layer, self.state.model_info.classes if self.state.model_info else None)
        nuclei = nuclei_layer_for(self.state.viewer, layer)  # brought into agreement with the labels by the export
        instances = np.asarray(nuclei.data) if nuclei is not None else None
        stem = safe_stem(layer.name.replace(" labels", ""))
        return [ExportItem(stem=stem, labels=data, classes=classes, instances=instances)]

    def export(self):
        """Export with the panel's choices; asks before replacing files. Returns the report or None."""
        from ...core.export import OverwriteRefused, export_annotation_set, export_items

        folder = self._folder.text().strip()
        if not folder:
            _notify.tell(self._status, "Choose an export folder first.", "error")
            return None
        if Path(folder).expanduser().exists() and not Path(folder).expanduser().is_dir():
            _notify.tell(self._status, f"Cannot export: {folder} is a file, not a folder (Not a directory). "
                         "Choose another folder.", "error", toast="Cannot export: the folder is a file.")
            return None
        options = {"formats": self._formats(), "object_type": self._object_type.currentText()}
        if not options["formats"]:
            _notify.tell(self._status, "Choose at least one format (TIFF, PNG or GeoJSON).", "error")
            return None

        def run(overwrite: bool):
            if self._from_layer.isChecked():
                return export_items(folder, self._layer_items(), overwrite=overwrite, **options)
            if self.state.annotations is None:
                raise _UserError(
                    "No annotation set is open: choose its folder in the Corrected images section, "
                    "or export the selected labels layer."
                )
            return export_annotation_set(self.state.annotations, folder, overwrite=overwrite, **options)

        try:
            try:
                report = run(False)
            except OverwriteRefused as exc:
                question = (
                    f"{len(exc.paths)} file(s) already exist in {folder}, e.g. "
                    f"{', '.join(p.name for p in exc.paths[:3])}. Replace them?"
                )
                if not self.state.ask("Replace existing files?", question):
                    _notify.tell(self._status, "Export cancelled: no file was changed.", "info")
                    return None
                report = run(True)
        except (GenSelfDiffError, _UserError, OSError) as exc:
            text = f"Cannot export: {_notify.describe(exc)}"
            _notify.tell(self._status, text, "error", toast=_export_toast(text))
            return None
        self.state.settings.set_folder("export", report.folder)
        self.last_report = report
        text = f"Exported {report.items} mask(s) to {report.folder} ({len(report.written)} files)."
        for note in report.notes:
            _notify.warning(note)
        _notify.tell(self._status, " ".join([text, *report.notes]), "info",
                     toast=f"Exported {report.items} mask(s) ({len(report.written)} files).")
        return report

    def status_text(self) -> str:
        return self._status.text()


class _UserError(Exception):
    """A message for the user about the panel's inputs."""


def _export_toast(text: str) -> str:
    lowered = text.lower()
    if "annotation set is empty" in lowered:
        return "Nothing to export: no corrected pairs."
    if "cannot write" in lowered:
        return "Cannot export: the folder is not writable."
    return _notify.toast_text(text)


def _default_export() -> Path:
    from .._settings import data_dir

    return data_dir() / "exports"
