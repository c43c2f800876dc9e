"""Annotation panel: "Mark as corrected" stores a snapshot of (image, labels) in the annotation set.

The set is a folder (see :mod:`napari_genselfdiff.core.annotations`); every change is on disk at
once, so closing napari (or a crash) loses nothing, and the widget reopens the last folder it used.

Partial annotations: **Corrected** says what was checked: the whole image, the current view, or the
rectangles/polygons (ellipses become polygons) of a Shapes layer. Their outlines go from the Shapes
layer's (or the view's) world coordinates into the image's pixel coordinates and are stored with the
snapshot; pixels outside them are unknown (left out of fine-tuning, set apart at export).

Nuclei follow the corrected labels: when the labels have a nuclei (instances) layer, "Mark as
corrected" first brings it into agreement with the labels (:func:`...core.annotations.sync_instances`:
erased nuclei removed, painted ones split into new nuclei, untouched ones keep their ids), updates the
nuclei layer in the viewer and stores those instances with the pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QGroupBox,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
)

from ...core.errors import GenSelfDiffError, MaskInputError
from .. import _notify
from .._layers import (
    META_KEY,
    class_colormap,
    class_features,
    classes_of,
    classes_to_meta,
    image_layers,
    image_plane,
    labels_layers,
    labels_plane,
    layer_meta,
    nuclei_layer_for,
    paired_image,
)
from ._form import hbox, panel_layout
from ._path_edit import PathEdit

REGION_WHOLE = "whole image"
REGION_VIEW = "current view"
REGION_SHAPES_PREFIX = "shapes: "


class AnnotationPanel(QGroupBox):
    """Store corrected labels as training pairs; list, open and remove them.

    Attributes tests use: ``state.annotations`` (the open set), :meth:`open_folder`,
    :meth:`mark_corrected`, :meth:`remove`.
    """

    def __init__(self, state, parent=None) -> None:
        super().__init__("Corrected images (annotation set)", parent)
        self.state = state
        self._folder_row = PathEdit("Choose the annotation set folder", on_chosen=self.open_folder, dialog_parent=self)
        self._folder = self._folder_row.edit
        self._folder.setToolTip("The annotation set folder; every corrected pair is saved in it at once.")
        self._labels = QComboBox()
        self._labels.setToolTip("The labels layer you corrected.")
        self._image = QComboBox()
        self._image.setToolTip("The image those labels belong to.")
        self._region = QComboBox()
        self._region.setToolTip(
            "What you checked: the whole image, only the current view, or the rectangles/polygons of a Shapes "
            "layer. Pixels outside are 'unknown': fine-tuning leaves them out of the loss."
        )
        self._mark = QPushButton("Mark as corrected")
        self._mark.setToolTip("Save a copy of the image and its labels as it is now (later edits do not change it).")
        self._list = QListWidget()
        self._list.setMinimumHeight(90)
        # whole rows: long names wrap onto a second line instead of running off the dock's edge
        self._list.setWordWrap(True)
        self._list.setTextElideMode(Qt.TextElideMode.ElideNone)
        self._list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._list.setResizeMode(QListView.ResizeMode.Adjust)
        self._open = QPushButton("Open")
        self._open.setToolTip("Add the pair's image and labels to the viewer.")
        self._remove = QPushButton("Remove")
        self._count = QLabel()
        self._status = QLabel()
        self._status.setWordWrap(True)

        panel_layout(self, [("Folder:", self._folder_row), ("Labels:", self._labels), ("Image:", self._image),
                            ("Corrected:", self._region)],
                     self._mark, self._status, self._list, hbox(self._count, self._open, self._remove, stretch=0))

        self._folder.editingFinished.connect(lambda: self.open_folder(self._folder.text()))
        self._mark.clicked.connect(lambda: self.mark_corrected())
        self._remove.clicked.connect(lambda: self.remove())
        self._open.clicked.connect(lambda: self.open_pair())
        self._list.itemDoubleClicked.connect(lambda item: self.open_pair(item.data(256)))
        self._labels.currentTextChanged.connect(self._guess_image)
        viewer = state.viewer
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        state.annotations_changed.connect(self.refresh_list)
        self._refresh_layers()
        self.open_folder(state.default_annotation_folder(), quiet=True)

    # -- folder ------------------------------------------------------------------------------------

    def open_folder(self, folder: str | Path, *, quiet: bool = False) -> bool:
        """Open (or create) the annotation set in ``folder``; reports what a reload repaired."""
        folder = Path(str(folder)).expanduser()
        if self.state.annotations is not None and self.state.annotations.folder == folder:
            self.state.annotations.reload()
            self.state.annotations_changed.emit()  # the list, and the Train tab's suggested steps
            return True
        try:
            aset = self.state.open_annotations(folder)
        except (GenSelfDiffError, OSError) as exc:
            if not quiet:
                _notify.tell(self._status, f"Cannot open the annotation set: {_notify.describe(exc)}", "error",
                             toast="Cannot open this annotation set folder.")
            self._folder.setText(str(self.state.annotations.folder) if self.state.annotations else str(folder))
            return False
        for repair in aset.repairs:
            _notify.warning(f"Annotation set {aset.folder}: {repair}")
        self._folder.setText(str(aset.folder))
        return True

    def refresh_list(self) -> None:
        self._list.clear()
        aset = self.state.annotations
        if aset is None:
            self._count.setText("no annotation set open")
            return
        for pair in aset.pairs:
            item = QListWidgetItem(pair.label)
            item.setToolTip(pair.label)
            item.setData(256, pair.id)  # Qt.UserRole
            self._list.addItem(item)
        self._count.setText(f"{len(aset)} corrected pair(s)")

    # -- layers ------------------------------------------------------------------------------------

    def _refresh_layers(self, *_) -> None:
        from napari.layers import Shapes

        current = self._region.currentText()
        choices = [REGION_WHOLE, REGION_VIEW] + [
            f"{REGION_SHAPES_PREFIX}{layer.name}" for layer in self.state.viewer.layers if isinstance(layer, Shapes)]
        self._region.blockSignals(True)
        self._region.clear()
        self._region.addItems(choices)
        self._region.setCurrentText(current if current in choices else REGION_WHOLE)
        self._region.blockSignals(False)
        for combo, layers in ((self._labels, labels_layers), (self._image, image_layers)):
            current = combo.currentText()
            names = [layer.name for layer in layers(self.state.viewer)]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._follow_selection()

    def _follow_selection(self, event=None) -> None:
        from napari.layers import Labels

        active = self.state.viewer.layers.selection.active
        if isinstance(active, Labels) and self._labels.findText(active.name) >= 0:
            self._labels.setCurrentText(active.name)
        self._guess_image(self._labels.currentText())

    def _guess_image(self, labels_name: str) -> None:
        layer = self._layer(labels_name)
        if layer is None:
            return
        image = paired_image(self.state.viewer, layer)
        if image is not None:
            self._image.setCurrentText(image.name)

    def _layer(self, name: str):
        return self.state.viewer.layers[name] if name in self.state.viewer.layers else None

    def select(self, labels_name: str, image_name: str | None = None, region: str | None = None) -> None:
        """Choose the labels layer (and its image, and what was corrected) as a user would in the combo boxes.

        ``region``: "whole image", "current view", or the name of a Shapes layer.
        """
        self._labels.setCurrentText(labels_name)
        if image_name is not None:
            self._image.setCurrentText(image_name)
        if region is not None:
            self._region.setCurrentText(region if region in (REGION_WHOLE, REGION_VIEW)
                                        else f"{REGION_SHAPES_PREFIX}{region}")

    def _corrected_regions(self, image_layer, shape: tuple[int, int]):
        """The regions chosen in **Corrected**, in the image's pixel coordinates (None: the whole image).

        Raises:
            MaskInputError: no shape to use, or a shape that is not an area (the message says which).
        """
        choice = self._region.currentText() or REGION_WHOLE
        viewer = self.state.viewer
        if choice == REGION_WHOLE:
            return None

        def to_pixels(world_points) -> list[list[float]]:
            ndim = viewer.dims.ndim
            out = []
            for p in world_points:
                point = np.array(viewer.dims.point, dtype=float)[:ndim] if ndim > 2 else np.zeros(2)
                point[-2:] = p[-2:]
                out.append([float(v) for v in np.asarray(image_layer.world_to_data(point))[-2:]])
            return out

        if choice == REGION_VIEW:
            center = np.asarray(viewer.camera.center, dtype=float)[-2:]
            size = getattr(getattr(viewer, "canvas", None), "size", None) or getattr(viewer, "_canvas_size", None)
            if size is None:
                raise MaskInputError("cannot tell the current view's extent; draw the region in a Shapes layer.")
            half = np.asarray(size, dtype=float)[-2:] / float(viewer.camera.zoom) / 2.0
            corners = [center - half, center + half]
            pts = np.asarray(to_pixels(corners))
            return [{"type": "rectangle", "points": pts.tolist()}]
        name = choice[len(REGION_SHAPES_PREFIX):]
        layer = self._layer(name)
        if layer is None:
            raise MaskInputError(f"the Shapes layer '{name}' is gone; choose another in Corrected.")
        if len(layer.data) == 0:
            raise MaskInputError(f"the Shapes layer '{name}' holds no shape: draw rectangles or polygons around "
                                 "what you corrected.")
        regions = []
        for k, (vertices, kind) in enumerate(zip(layer.data, layer.shape_type), start=1):
            vertices = np.asarray(vertices, dtype=float)
            if kind in ("line", "path"):
                raise MaskInputError(f"shape {k} of '{name}' is a {kind}, not an area; draw rectangles or polygons.")
            if kind == "ellipse":  # napari stores an ellipse as its bounding box's 4 corners
                yx = vertices[:, -2:]
                c, r = yx.mean(axis=0), (yx.max(axis=0) - yx.min(axis=0)) / 2.0
                t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
                ring = np.stack([c[0] + r[0] * np.sin(t), c[1] + r[1] * np.cos(t)], axis=1)
                vertices = np.concatenate([np.repeat(vertices[:1, :-2], len(ring), axis=0), ring], axis=1)
            world = [layer.data_to_world(v) for v in vertices]
            regions.append({"type": "polygon", "points": to_pixels(world)})
        return regions

    # -- actions -----------------------------------------------------------------------------------

    def mark_corrected(self):
        """Store the chosen (image, labels) as a new pair; returns it, or None (with a message)."""
        labels_layer = self._layer(self._labels.currentText())
        image_layer = self._layer(self._image.currentText())
        if labels_layer is None:
            _notify.tell(self._status, "Nothing to mark: there is no labels layer. Segment an image first, then "
                         "correct its labels.", "error", toast="Nothing to mark: no labels layer.")
            return None
        if image_layer is None:
            _notify.tell(self._status,
                         f"Nothing to mark: no image layer for '{labels_layer.name}'. Open its image and choose it "
                         "as Image.", "error", toast="Nothing to mark: no image layer.")
            return None
        if self.state.annotations is None and not self.open_folder(self._folder.text() or self.state.default_annotation_folder()):
            return None
        try:
            plane = image_plane(image_layer, self.state.viewer)
            labels = labels_plane(labels_layer, plane)
            meta = layer_meta(labels_layer)
            classes = classes_of(labels_layer, self.state.model_info.classes if self.state.model_info else None)
            top = int(np.max(np.asarray(labels), initial=0))
            if classes and top > max(c.id for c in classes):
                names = ", ".join(f"{c.id} {c.name}" for c in classes)
                raise MaskInputError(
                    f"the labels layer '{labels_layer.name}' holds label {top}, but its classes are {names}. "
                    f"Paint only with these labels (the label number in the layer controls), or erase label {top}."
                )
            instances, synced = self._synced_nuclei(labels_layer, plane, labels)
            regions = self._corrected_regions(image_layer, labels.shape)
            pair = self.state.annotations.add(
                np.asarray(plane.data),
                labels,
                name=image_layer.name + plane.suffix,
                classes=classes,
                instances=instances,
                extra={
                    "labels_layer": labels_layer.name,
                    "model": meta.get("model") or (str(self.state.model_path) if self.state.model_path else None),
                    "slice": list(plane.slice_index),
                    "source": str(getattr(image_layer, "source", None) and image_layer.source.path or ""),
                    "corrected": self._region.currentText() or REGION_WHOLE,
                },
                regions=regions,
            )
        except (GenSelfDiffError, OSError) as exc:
            _notify.tell(self._status, f"Cannot mark as corrected: {_notify.describe(exc)}", "error",
                         toast="Cannot mark as corrected.")
            return None
        self.state.annotations_changed.emit()  # the list, and the Train tab's suggested steps
        if synced:
            nuclei_layer, instances_now, changes = synced
            if changes.changed:
                nuclei_layer.data = instances_now  # the viewer shows what was stored
        part = ""
        if pair.partial:
            part = f" Partial: {len(pair.regions)} region(s), {pair.known_mask().mean():.0%} of the image corrected."
        if synced and synced[2].changed:
            part += f" Nuclei updated from the corrected labels ({synced[2].describe()})."
        _notify.tell(self._status,
                     f"Saved '{pair.name}' as corrected pair {pair.id} ({len(self.state.annotations)} in the set).{part}",
                     "info", toast=f"Saved corrected pair {pair.id}.")
        return pair

    def _synced_nuclei(self, labels_layer, plane, labels):
        """``(instances to store, (nuclei layer, instances, SyncReport))`` for the labels' nuclei layer, in
        agreement with the corrected ``labels``; ``(None, None)`` when the labels have no nuclei layer."""
        from ...core.annotations import sync_instances

        nuclei = nuclei_layer_for(self.state.viewer, labels_layer, plane)
        if nuclei is None:
            return None, None
        split = None
        if self.state.model_info is not None:
            from ...core.inference.instances import splitting_parameters

            split = splitting_parameters(self.state.model_info)
        instances, changes = sync_instances(labels, np.asarray(nuclei.data), split=split)
        return instances, (nuclei, instances, changes)

    def status_text(self) -> str:
        return self._status.text()

    def _selected_id(self) -> str | None:
        item = self._list.currentItem()
        return item.data(256) if item is not None else None

    def remove(self, pair_id: str | None = None) -> bool:
        """Remove a pair (the selected one by default) after asking."""
        aset = self.state.annotations
        pair_id = pair_id or self._selected_id()
        if aset is None or pair_id is None:
            _notify.info("Select a pair in the list to remove it.")
            return False
        try:
            pair = aset.get(pair_id)
            if not self.state.ask("Remove corrected pair", f"Delete pair {pair.id} ('{pair.name}') from the annotation set?"):
                return False
            aset.remove(pair_id)
        except (GenSelfDiffError, OSError) as exc:
            _notify.tell(self._status, f"Cannot remove the pair: {_notify.describe(exc)}", "error",
                         toast="Cannot remove the pair.")
            return False
        self.state.annotations_changed.emit()
        return True

    def open_pair(self, pair_id: str | None = None) -> None:
        """Add a stored pair's image and labels to the viewer (for review)."""
        aset = self.state.annotations
        pair_id = pair_id or self._selected_id()
        if aset is None or pair_id is None:
            _notify.info("Select a pair in the list to open it.")
            return
        try:
            pair = aset.get(pair_id)
            image, labels = aset.load(pair_id)
        except (GenSelfDiffError, OSError) as exc:
            _notify.tell(self._status, f"Cannot open the pair: {_notify.describe(exc)}", "error",
                         toast="Cannot open the pair.")
            return
        viewer = self.state.viewer
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
        viewer.add_image(image, name=f"{pair.name} [pair {pair.id}]", rgb=rgb,
                         metadata={META_KEY: {"kind": "pair", "pair": pair.id}})
        classes = pair.classes or classes_of(None)
        viewer.add_labels(
            labels, name=f"{pair.name} [pair {pair.id}] labels", colormap=class_colormap(classes),
            features=class_features(classes), opacity=0.6,
            metadata={META_KEY: {"kind": "classes", "image_layer": f"{pair.name} [pair {pair.id}]",
                                 "classes": classes_to_meta(classes), "pair": pair.id}},
        )
        if pair.partial:  # the corrected regions, as they were marked
            viewer.add_shapes(
                [np.asarray(r["points"], float) for r in pair.regions],
                shape_type=[r["type"] for r in pair.regions], name=f"{pair.name} [pair {pair.id}] corrected regions",
                edge_color="yellow", face_color="transparent", edge_width=2,
            )
