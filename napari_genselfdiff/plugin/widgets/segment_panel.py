"""Segment panel: the chosen image layer (or all image layers) -> "<image> labels" Labels layers.

The work runs in a thread worker over :func:`segment_images`, a generator around the core's
``segment_progressive``: "yielded" drives the progress bars, result events add the layers (on the
main thread), "errored" becomes a notification, "finished" re-enables the panel. Cancel quits the
worker between two tiles; images finished before that keep their layers.
"""

from __future__ import annotations

import time
from collections.abc import Generator

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ...core.errors import GenSelfDiffError, ImageInputError
from .. import _notify
from .._layers import META_KEY, class_colormap, class_features, classes_to_meta, image_layers, image_plane
from .._threading import start_worker


def segment_images(network, info, planes: list[tuple[str, object]], settings) -> Generator[dict, None, int]:
    """Segment each ``(name, image)``; yields progress and one result event per image (no Qt).

    Yields:
        ``{"kind": "progress", "index", "count", "name", "stage", "done", "total"}`` after each tile
        batch, ``{"kind": "result", "index", "name", "result": SegmentationResult}`` per image, and
        ``{"kind": "error", "index", "name", "message"}`` for an image the core refuses (the others
        go on).

    Returns:
        The number of images segmented.
    """
    from ...core.inference import segment_progressive

    done = 0
    for index, (name, image) in enumerate(planes):
        gen = segment_progressive(network, info, image, settings, name=name)
        try:
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                yield {"kind": "progress", "index": index, "count": len(planes), "name": name, **event}
        except ImageInputError as exc:
            yield {"kind": "error", "index": index, "name": name, "message": str(exc)}
            continue
        done += 1
        yield {"kind": "result", "index": index, "name": name, "result": result}
    return done


class SegmentPanel(QGroupBox):
    """Segment the chosen image layer, or all image layers, with the chosen model.

    Attributes tests read: ``worker`` (the running worker or None), ``outcome`` ("done",
    "cancelled", "failed" or None), ``added`` (layers added by the last run), ``last_seconds``.
    """

    def __init__(self, state, parent=None) -> None:
        super().__init__("Segment", parent)
        self.state = state
        self.worker = None
        self.outcome: str | None = None
        self.added: list = []
        self.last_seconds = 0.0
        self._planes: dict[int, object] = {}
        self._pbar = None
        self._last_n = 0
        self._started = 0.0

        self._layer = QComboBox()
        self._layer.setToolTip("The image layer to segment (the selected layer by default).")
        self._all = QCheckBox("all image layers")
        self._instances = QCheckBox("also split nuclei (instances layer)")
        self._instances.setToolTip("Adds '<image> nuclei': one label per nucleus, touching nuclei split.")
        self._tile = QSpinBox()
        self._tile.setRange(64, 4096)
        self._tile.setSingleStep(64)
        self._tile.setValue(512)
        self._tile.setSuffix(" px")
        self._tile.setToolTip("Largest tile processed at once; smaller tiles use less memory.")
        self._run = QPushButton("Segment")
        self._cancel = QPushButton("Cancel")
        self._cancel.setEnabled(False)
        self._bar = QProgressBar()
        self._bar.setRange(0, 1000)
        self._bar.setValue(0)
        self._bar.setTextVisible(False)
        self._status = QLabel("")
        self._status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image:", self._layer)
        form.addRow("", self._all)
        form.addRow("Tile size:", self._tile)
        form.addRow("", self._instances)
        buttons = QHBoxLayout()
        buttons.addWidget(self._run, 1)
        buttons.addWidget(self._cancel)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self._bar)
        layout.addWidget(self._status)

        self._run.clicked.connect(lambda: self.run())
        self._cancel.clicked.connect(self.cancel)
        viewer = state.viewer
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        state.model_changed.connect(lambda *_: self._update_enabled())
        self._refresh_layers()

    # -- layer choice ------------------------------------------------------------------------------

    def _refresh_layers(self, *_) -> None:
        current = self._layer.currentText()
        names = [layer.name for layer in image_layers(self.state.viewer)]
        self._layer.blockSignals(True)
        self._layer.clear()
        self._layer.addItems(names)
        active = self.state.viewer.layers.selection.active
        preferred = active.name if active is not None and active.name in names else current
        if preferred in names:
            self._layer.setCurrentText(preferred)
        self._layer.blockSignals(False)
        self._update_enabled()

    def _follow_selection(self, event=None) -> None:
        active = self.state.viewer.layers.selection.active
        if active is not None and self._layer.findText(active.name) >= 0:
            self._layer.setCurrentText(active.name)

    def _update_enabled(self) -> None:
        running = self.state.running("segment")
        self._run.setEnabled(not running)
        self._cancel.setEnabled(running)

    def chosen_layers(self) -> list:
        layers = image_layers(self.state.viewer)
        if self._all.isChecked():
            return layers
        name = self._layer.currentText()
        return [layer for layer in layers if layer.name == name]

    # -- running -----------------------------------------------------------------------------------

    def run(self, layers: list | None = None):
        """Start segmenting ``layers`` (by default the chosen one(s)); returns the worker or None.

        A second call while a segmentation runs starts nothing (and says so).
        """
        if self.state.running("segment"):
            _notify.info("A segmentation is already running; wait for it or press Cancel.")
            return None
        layers = self.chosen_layers() if layers is None else layers
        if not layers:
            _notify.error(
                "No image layer to segment: open an H&E image first (File > Open, or File > Open Sample > "
                "napari-genselfdiff)."
            )
            return None
        try:
            network, info = self.state.network()
        except GenSelfDiffError as exc:
            _notify.error(f"Cannot segment: {exc}")
            return None
        except OSError as exc:
            _notify.report(exc, "Loading the model")
            return None
        if info.head != "classes":
            _notify.error(
                "Cannot segment: the chosen model is a pretraining (noise) model. Fine-tune it on corrected "
                "images first (Train tab), or choose a segmentation model."
            )
            return None

        from ...core.image_input import inspect_image
        from ...core.inference import InferenceSettings

        planes, refused = [], []
        for layer in layers:
            try:
                plane = image_plane(layer, self.state.viewer)
                inspect_image(plane.data, name=f"'{layer.name}'")
            except GenSelfDiffError as exc:
                refused.append(str(exc))
                continue
            planes.append(plane)
        for message in refused:
            _notify.error(f"Cannot segment: {message}")
        if not planes:
            return None

        self._planes = dict(enumerate(planes))
        self.added, self.outcome = [], None
        settings = InferenceSettings(
            tile=int(self._tile.value()),
            overlap=min(64, int(self._tile.value()) // 8),
            device=self.state.device,
            instances=self._instances.isChecked(),
        )
        from napari.utils import progress

        self._pbar = progress(total=1000, desc=f"GenSelfDiff: segmenting {len(planes)} image(s)")
        self._last_n = 0
        self._bar.setValue(0)
        self._status.setText(f"Segmenting {planes[0].name}...")
        self._started = time.perf_counter()
        self.worker = start_worker(
            segment_images,
            network,
            info,
            [(p.name, p.data) for p in planes],
            settings,
            on_yielded=self._on_event,
            on_returned=self._on_returned,
            on_errored=self._on_errored,
            on_aborted=self._on_aborted,
            on_finished=self._on_finished,
            start=False,
        )
        worker = self.worker
        self.state.set_job("segment", worker)
        self._update_enabled()
        worker.start()
        return worker

    def cancel(self) -> None:
        if self.worker is not None and self.state.running("segment"):
            self._status.setText("Cancelling after the current tile...")
            self.worker.quit()

    stop = cancel

    # -- worker callbacks (main thread) ------------------------------------------------------------

    def _on_event(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "progress":
            total = max(int(event["total"]), 1)
            share = (event["index"] + (event["done"] / total if event["stage"] == "tiles" else 1.0)) / event["count"]
            value = int(1000 * min(share, 1.0))
            self._bar.setValue(value)
            if self._pbar is not None and value > self._last_n:
                self._pbar.update(value - self._last_n)
                self._last_n = value
            stage = "splitting nuclei" if event["stage"] == "instances" else f"tile {event['done']}/{event['total']}"
            self._status.setText(f"{event['name']}: {stage} ({event['index'] + 1}/{event['count']})")
        elif kind == "result":
            self._add_layers(self._planes[event["index"]], event["result"])
        elif kind == "error":
            _notify.error(f"Cannot segment: {event['message']}")

    def _add_layers(self, plane, result) -> None:
        info = self.state.model_info
        classes = list(info.classes)
        image = plane.layer
        yx_scale = tuple(image.scale[-2:])
        yx_translate = tuple(image.translate[-2:])
        meta = {
            META_KEY: {
                "kind": "classes",
                "image_layer": image.name,
                "slice": list(plane.slice_index),
                "classes": classes_to_meta(classes),
                "model": str(self.state.model_path),
            }
        }
        labels = self.state.viewer.add_labels(
            result.labels,
            name=f"{image.name} labels{plane.suffix}",
            colormap=class_colormap(classes),
            features=class_features(classes),
            scale=yx_scale,
            translate=yx_translate,
            opacity=0.6,
            metadata=meta,
        )
        self.added.append(labels)
        if result.instances is not None:
            inst_meta = {META_KEY: {**meta[META_KEY], "kind": "instances"}}
            self.added.append(
                self.state.viewer.add_labels(
                    result.instances, name=f"{image.name} nuclei{plane.suffix}", scale=yx_scale,
                    translate=yx_translate, opacity=0.5, metadata=inst_meta, visible=False,
                )
            )
        for note in [*plane.notes, *result.notes]:
            _notify.warning(f"'{image.name}': {note}")
        self.state.viewer.layers.selection.active = labels

    def _on_returned(self, count: int) -> None:
        self.outcome = "done"
        self.last_seconds = time.perf_counter() - self._started
        device = self.state.resolved_device()
        self._status.setText(f"Segmented {count} image(s) in {self.last_seconds:.1f} s on {device}.")
        self._bar.setValue(1000)

    def _on_errored(self, exc: Exception) -> None:
        self.outcome = "failed"
        text = f"Cannot segment: {exc}" if isinstance(exc, GenSelfDiffError) else _notify.describe(exc, "Segmentation")
        _notify.error(text)
        self._status.setText(text)

    def _on_aborted(self) -> None:
        self.outcome = "cancelled"
        kept = f" ({len(self.added)} layer(s) from finished images kept)" if self.added else ""
        self._status.setText(f"Segmentation cancelled{kept}.")
        _notify.info(f"Segmentation cancelled{kept}.")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.state.set_job("segment", None)
        self.worker = None
        self._update_enabled()
