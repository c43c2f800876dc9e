"""Segment panel: the chosen image layer (or all image layers) -> "<image> labels" Labels layers.

The work runs in a thread worker over the core's :func:`~napari_genselfdiff.core.inference.driver.segment_images`
(the loop ``genselfdiff segment`` runs too): "yielded" drives the progress bars, result events add
the layers (on the main thread), error events and "errored" become notifications, "finished"
re-enables the panel. Cancel quits the worker between two tiles; images finished before that keep
their layers.

The status line ends every job with its last word (done, cancelled or failed, with the reason and
any notes), which stays until the next job; progress that arrives after that word is ignored.

Where the result goes: ``<image> labels`` takes its image's placement (the scale and translate of
its Y and X axes) and sits in the layer list directly above its image, so it never covers another
image. Segmenting an image again replaces the labels it got last time when they are unedited; when
they were edited, the user is asked, and "No" adds the new result as a separate layer (above the
old one) instead, and the old labels keep their ``<image> nuclei`` layer (each labels layer and
its nuclei share a ``result`` id in their metadata): nothing the user chose to keep is replaced.

Which model made a layer: every result layer's metadata holds the model file and its name
(``model``, ``model_name``), and the status line names the model and the layers it made; a
fine-tuned model that was never scored on held-out images is said to be unchecked, and a higher
mean uncertainty than the image's previous result is reported.

What to correct next: with **uncertainty map** ticked, each segmentation also gives
``<image> uncertainty`` (the normalised entropy of the class probabilities, a hidden image layer
just above the image's result layers) and the **Correct next** list: the image's 256x256 fields ranked by mean uncertainty.
Clicking a row moves the view to that field. The computation is the core's
(:mod:`napari_genselfdiff.core.inference.uncertainty`); this panel only shows it.

Keeping the GUI responsive when a result arrives: what can be computed without napari (the label
images' fingerprints, the class colour map and features table, the uncertainty map's mean and ranked
fields) is computed in the worker thread (:func:`segment_prepared`), and the main thread adds the
result's layers one per event-loop turn (labels, nuclei, uncertainty map, then the selection and the
notes; a Labels layer's editing overlays in turns of their own: :mod:`.._layer_insert`), so the viewer
repaints and answers in between (``benchmarks/ui_layers.py``). The worker's
later callbacks (progress, the end of the job) wait for those steps, so the job ends after its
layers are in; without threads (``GENSELFDIFF_NOTHREADS``) the steps run at once.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator
from functools import partial

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from ...core.defaults import FLIPS_MEASURED, INFERENCE_TILE, overlap_for_tile
from ...core.errors import GenSelfDiffError
from ...core.inference.driver import segment_images
from ...core.progress import Returning
from .. import _notify
from .._layer_insert import insert_in_pieces
from .._layers import (
    META_KEY,
    class_colormap,
    class_features,
    classes_to_meta,
    image_layers,
    image_plane,
    instances_word,
    layer_meta,
)
from .._threading import start_worker, threads_disabled
from ._bars import set_bar
from ._form import hbox, panel_layout


def _unchecked(info) -> str | None:
    """A plain warning when ``info`` is a fine-tuned model never scored on held-out images, else None."""
    provenance = getattr(info, "provenance", None) or {}
    if provenance.get("stage") != "finetune" or provenance.get("metrics"):
        return None
    return (f"'{info.display_name}' is a fine-tuned model that was not checked: it has no held-out score "
            "(too few corrected images to hold one out), so nothing says it is better than the model it "
            "started from; compare its labels with the previous ones before relying on them")


def layer_resolution_of(layer) -> tuple[float | None, str]:
    """``(mpp, where)`` a layer records: the reader's record of its file, or a scale in microns."""
    from ...core.inference.resolution import layer_resolution

    return layer_resolution(getattr(layer, "scale", None), getattr(layer, "units", None), layer_meta(layer))


def _digest(data) -> str:
    """A fingerprint of a label image: tells whether the user has edited a result since it was added."""
    array = np.ascontiguousarray(np.asarray(data))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


#: the delay between two main-thread steps: a timer (not a 0 ms call, which Qt may run before the
#: repaint and the other timers that are due)
STEP_DELAY_MS = 1
_DONE = object()


def _prepare(event: dict, classes) -> None:
    """Add to a result event what the main thread would otherwise compute (see the module docstring):
    ``digests`` of the labels and nuclei, the class ``colormap`` and ``features``, and for an
    uncertainty map its ``uncertainty_mean`` and ranked ``fields``."""
    from ...core.inference.uncertainty import rank_fields

    result = event["result"]
    event["digests"] = {"labels": _digest(result.labels),
                        "instances": _digest(result.instances) if result.instances is not None else None}
    event["colormap"], event["features"] = class_colormap(classes), class_features(classes)
    umap = event.get("uncertainty")
    if umap is not None:
        event["uncertainty_mean"] = float(np.mean(umap))
        event["fields"] = rank_fields(umap)


def segment_prepared(network, info, *args, **kwargs):
    """:func:`segment_images` (same arguments, events and return value), each result event prepared
    for the panel by :func:`_prepare` in the thread that runs it."""
    gen = segment_images(network, info, *args, **kwargs)
    events = Returning(gen)
    try:
        for event in events:
            if event.get("kind") == "result":
                _prepare(event, list(info.classes))
            yield event
    finally:
        gen.close()  # a cancelled job closes its generator between two tiles
    return events.value


def _insert_above(layers, layer, above) -> Generator[None, None, None]:
    """Insert ``layer`` directly above ``above`` in the layer list (on top when ``above`` is not there),
    in pieces (:func:`insert_in_pieces`: a generator of main-thread steps)."""
    yield from insert_in_pieces(layers, layers.index(above) + 1 if above is not None and above in layers
                                else len(layers), layer)


class SegmentPanel(QGroupBox):
    """Segment the chosen image layer, or all image layers, with the chosen model.

    Attributes tests read: ``worker`` (the running worker or None), ``outcome`` ("done",
    "cancelled", "failed" or None), ``added`` (layers added or replaced by the last run),
    ``last_seconds``, :meth:`status_text` (the status line).
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
        self._notes: list[str] = []
        #: main-thread steps of the results that arrived, one per event-loop turn (see the module docstring)
        self._steps: deque[Callable[[], None]] = deque()
        self._stepping = False
        self._inner: list | None = None  # the steps a running step queues (they go right after it)

        self._layer = QComboBox()
        self._layer.setToolTip("The image layer to segment (the selected layer by default).")
        self._all = QCheckBox("all image layers")
        self._instances = QCheckBox("also split nuclei (instances layer)")
        self._instances.setToolTip("Adds '<image> nuclei': one label per nucleus, touching nuclei split.")
        self._uncertainty = QCheckBox("uncertainty map + fields to correct next")
        self._uncertainty.setChecked(True)
        self._uncertainty.setToolTip(
            "Adds '<image> uncertainty' (entropy of the class probabilities) and lists the image's fields, most "
            "uncertain first: click one to go there."
        )
        self._flips = QCheckBox("average over mirror images (4x slower)")
        self._flips.setToolTip(
            "Test-time flips: each tile also goes through the network mirrored three ways and the results are "
            f"averaged. Slightly better nuclei ({FLIPS_MEASURED}) for four times the "
            "network's time; also used by the slide widget docked beside this one."
        )
        self._next = QListWidget()
        self._next.setToolTip("Fields of the last segmented image, most uncertain first; click a row to go there.")
        self._next.setMaximumHeight(120)
        #: the ranked fields of the last result: (image layer, [Field, ...])
        self.fields: tuple[object, list] = (None, [])
        self._flipped = False  # whether the running or last job averaged over mirror images
        self._tile = QSpinBox()
        self._tile.setRange(64, 4096)
        self._tile.setSingleStep(64)
        self._tile.setValue(INFERENCE_TILE)
        self._tile.setSuffix(" px")
        self._tile.setToolTip("Largest tile processed at once; smaller tiles use less memory.")
        # The image's resolution: filled from the layer (the file's record, or a scale in microns),
        # editable; empty: estimated from the nuclei (nuclei models), else the model's is assumed.
        self._mpp = QLineEdit()
        self._mpp.setPlaceholderText("not recorded: estimated")
        self._mpp.setToolTip(
            "Microns per pixel of the image (40x: about 0.25, 20x: about 0.5). Filled from the file or the "
            "layer's scale when they record it; type another value to override. Empty: estimated from the "
            "nuclei, else the model's own resolution is assumed. The image is resampled to the model's "
            "resolution and the results mapped back to its pixels."
        )
        self._mpp_filled: tuple[str, str] = ("", "")  # (text, where) as filled from the layer
        self._run = QPushButton("Segment")
        self._cancel = QPushButton("Cancel")
        self._cancel.setEnabled(False)
        self._bar = QProgressBar()
        self._bar.setRange(0, 1000)
        self._bar.setValue(0)  # not shown yet: nothing to repaint
        self._bar.setTextVisible(False)
        self._status = QLabel("")
        self._status.setWordWrap(True)

        panel_layout(self, [("Image:", self._layer), ("", self._all), ("Resolution (um/px):", self._mpp),
                            ("Tile size:", self._tile), ("", self._instances), ("", self._uncertainty),
                            ("", self._flips)],
                     hbox(self._run, self._cancel, stretch=0), self._bar, self._status,
                     QLabel("Correct next (mean uncertainty of 256x256 fields):"), self._next)

        self._run.clicked.connect(lambda: self.run())
        self._next.currentRowChanged.connect(lambda row: self.go_to_field(row))
        self._cancel.clicked.connect(self.cancel)
        viewer = state.viewer
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._layer.currentTextChanged.connect(lambda *_: self._fill_resolution())
        state.model_changed.connect(lambda *_: self._update_enabled())
        state.model_changed.connect(lambda *_: self._describe_empty_resolution())
        self._refresh_layers()
        self._describe_empty_resolution()

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
        self._fill_resolution()
        self._update_enabled()

    def _follow_selection(self, event=None) -> None:
        active = self.state.viewer.layers.selection.active
        if active is not None and self._layer.findText(active.name) >= 0:
            self._layer.setCurrentText(active.name)

    def _fill_resolution(self) -> None:
        """Put the chosen layer's recorded resolution in the field (unless the user typed one)."""
        if self._mpp.text().strip() and self._mpp.text().strip() != self._mpp_filled[0]:
            return  # the user's own value stays
        layers = self.chosen_layers()
        mpp, where = layer_resolution_of(layers[0]) if layers else (None, "")
        text = f"{mpp:.4g}" if mpp else ""
        self._mpp.setText(text)
        self._mpp_filled = (text, where)

    def resolution_choice(self, layer) -> tuple[object, tuple[float | None, str]]:
        """``(given, recorded)`` for a layer: the field's value when the user typed it (``given``),
        else what the layer records as ``(mpp, where)`` (``recorded``; the field shows it)."""
        text = self._mpp.text().strip()
        recorded = layer_resolution_of(layer)
        if text and text != self._mpp_filled[0]:
            return text, recorded
        return None, recorded

    def status_text(self) -> str:
        return self._status.text()

    def _describe_empty_resolution(self) -> None:
        """The empty Resolution field says what happens: a nuclei model estimates, another model assumes
        the resolution of its training images (the gland model: 0.62 um/px)."""
        from ...core.inference.resolution import assumed, estimate_params

        info = self.state.model_info
        self._instances.setText(f"also split {instances_word(info.classes if info else ())} (instances layer)")
        if info is None or estimate_params(info) is not None:
            self._mpp.setPlaceholderText("not recorded: estimated")
        else:
            self._mpp.setPlaceholderText(f"not recorded: {assumed(info).mpp:g} assumed")

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

    def inference_settings(self):
        """The :class:`InferenceSettings` of the panel's fields and the Model panel's device and
        precision (the overlap follows the tile: :func:`core.defaults.overlap_for_tile`)."""
        from ...core.inference import InferenceSettings

        tile = int(self._tile.value())
        return InferenceSettings(tile=tile, overlap=overlap_for_tile(tile), device=self.state.device,
                                 precision=self.state.precision, instances=self._instances.isChecked(),
                                 flips=self._flips.isChecked())

    def run(self, layers: list | None = None):
        """Start segmenting ``layers`` (by default the chosen one(s)); returns the worker or None.

        A second call while a segmentation runs starts nothing (and says so).
        """
        if self.state.running("segment"):
            _notify.info("A segmentation is already running.")
            return None
        layers = self.chosen_layers() if layers is None else layers
        if not layers:
            _notify.tell(
                self._status,
                "No image layer to segment: open an H&E image first (File > Open, or File > Open Sample > "
                "napari-genselfdiff).", "error", toast="No image layer to segment.",
            )
            return None
        try:
            network, info = self.state.network()
        except GenSelfDiffError as exc:
            _notify.tell(self._status, f"Cannot segment: {exc}", "error")
            return None
        except OSError as exc:
            _notify.tell(self._status, _notify.describe(exc, "Loading the model"), "error",
                         toast="Cannot load the model.")
            return None
        from ...core.model_files import check_segmentation_model

        try:
            check_segmentation_model(info, "the chosen model")
        except GenSelfDiffError as exc:
            _notify.tell(self._status, f"Cannot segment: {exc}", "error", toast="Cannot segment with this model.")
            return None

        from ...core.image_input import inspect_image

        planes, refused = [], []
        for layer in layers:
            try:
                plane = image_plane(layer, self.state.viewer)
                inspect_image(plane.data, name=f"'{layer.name}'")
            except GenSelfDiffError as exc:
                refused.append((layer.name, f"Cannot segment: {exc}"))
                continue
            planes.append(plane)
        for name, _ in refused:  # the reasons go to the status line
            _notify.error(f"Cannot segment '{name}'." if len(name) <= 24 else "Cannot segment an image.")
        refused = [message for _, message in refused]
        if not planes:
            self._status.setText(" ".join(refused))
            return None

        self._planes = dict(enumerate(planes))
        self.added, self.outcome = [], None
        self._notes = list(refused)
        unchecked = _unchecked(info)
        if unchecked:
            self._notes.append(unchecked)
        settings = self.inference_settings()
        self._flipped = settings.flips  # said when the job ends (the box may change meanwhile)
        given, _ = self.resolution_choice(planes[0].layer)
        if given is not None:  # a typed value: checked now, with what to type instead
            from ...core.inference.resolution import ResolutionError, check_mpp, model_mpp

            try:
                given = check_mpp(given, model_mpp(info)[0], what="the Resolution field:")
            except ResolutionError as exc:
                _notify.tell(self._status, f"Cannot segment: {exc}", "error", toast="Check the resolution.")
                return None
        # napari's progress bar (a widget: tens of ms) is made in the next event-loop turn, before the
        # job's first event is handled (see _queue)
        self._pbar = None
        self._queue(partial(self._open_progress, f"GenSelfDiff: segmenting {len(planes)} image(s)"))
        self._last_n = 0
        set_bar(self._bar, 0)
        self._status.setText(f"Segmenting {planes[0].name}...")
        self._started = time.perf_counter()
        self.worker = start_worker(
            segment_prepared,
            network,
            info,
            [(p.name, p.data, layer_resolution_of(p.layer)) for p in planes],
            settings,
            self._uncertainty.isChecked(),
            mpp=given,
            mpp_detail="Resolution field",
            on_yielded=self._in_order(self._on_event),
            on_returned=self._in_order(self._on_returned),
            on_errored=self._in_order(self._on_errored),
            on_aborted=self._in_order(self._on_aborted),
            on_finished=self._in_order(self._on_finished),
            start=False,
        )
        worker = self.worker
        self.state.set_job("segment", worker)
        self._update_enabled()
        worker.start()
        return worker

    def _open_progress(self, desc: str) -> None:
        from napari.utils import progress

        self._pbar = progress(total=1000, desc=desc)

    def cancel(self) -> None:
        if self.worker is not None and self.state.running("segment"):
            self._status.setText("Cancelling after the current tile...")
            self.worker.quit()

    stop = cancel

    # -- main-thread steps -------------------------------------------------------------------------

    def _in_order(self, callback: Callable) -> Callable:
        """``callback`` as a worker callback: called at once, unless layer steps are pending; then
        after them (so the job's progress and end keep their order behind its results)."""
        def call(*args) -> None:
            if self._stepping or self._steps:
                self._steps.append(partial(callback, *args))
                self._start_stepping()
            else:
                callback(*args)

        return call

    def _queue(self, *steps: Callable) -> None:
        """Run ``steps`` one per event-loop turn (all at once without threads): after the queued ones,
        or, when queued by a running step, right after that step, before what was queued before.

        A step that returns a generator goes on from each of its ``yield``s in a later turn
        (:meth:`_go_on`), before the steps queued after it.
        """
        for step in steps:
            if self._inner is not None:
                self._inner.append(step)
            else:
                self._steps.append(step)
        self._start_stepping()

    def _go_on(self, steps: Generator) -> None:
        """Run ``steps`` to its next ``yield`` now, and the rest as the next step."""
        if next(steps, _DONE) is not _DONE:
            self._queue(partial(self._go_on, steps))

    def _start_stepping(self) -> None:
        if self._stepping or not self._steps:
            return
        self._stepping = True
        if threads_disabled():
            try:
                while self._steps:
                    self._do_step(self._steps.popleft())
            finally:
                self._stepping = False
        else:
            QTimer.singleShot(STEP_DELAY_MS, self._next_step)

    def _do_step(self, step: Callable) -> None:
        outer, self._inner = self._inner, []
        try:
            more = step()
            if isinstance(more, Generator):
                self._go_on(more)
        finally:
            inner, self._inner = self._inner, outer
            self._steps.extendleft(reversed(inner))

    def _next_step(self) -> None:
        try:
            if self._steps:
                self._do_step(self._steps.popleft())
        finally:
            if self._steps:
                QTimer.singleShot(STEP_DELAY_MS, self._next_step)
            else:
                self._stepping = False

    # -- worker callbacks (main thread) ------------------------------------------------------------

    def _on_event(self, event: dict) -> None:
        if self.outcome is not None:
            return  # the job has had its last word (a late progress event must not replace it)
        kind = event["kind"]
        if kind == "progress":
            total = max(int(event["total"]), 1)
            within = {"tiles": event["done"] / total, "estimating resolution": 0.0}.get(event["stage"], 1.0)
            share = (event["index"] + within) / event["count"]
            value = int(1000 * min(share, 1.0))
            stage = {"instances": "splitting nuclei", "estimating resolution": "estimating the resolution"}.get(
                event["stage"], f"tile {event['done']}/{event['total']}")
            # The text first: updating napari's progress bar may process pending events, among them
            # the job's end, whose message must come last.
            self._status.setText(f"{event['name']}: {stage} ({event['index'] + 1}/{event['count']})")
            set_bar(self._bar, value)
            if self._pbar is not None and value > self._last_n:
                step, self._last_n = value - self._last_n, value
                self._pbar.update(step)
        elif kind == "result":
            plane, made = self._planes[event["index"]], {}
            steps = [lambda: self._add_layers(plane, event["result"], event.get("resolution"), event, made)]
            if event["result"].instances is not None:
                steps.append(lambda: self._add_nuclei(plane, event, made))
            if event.get("uncertainty") is not None:
                steps.append(lambda: self._add_uncertainty(plane, event["uncertainty"], event))
            steps.append(lambda: self._finish_result(plane, event["result"], made["labels"]))
            self._queue(*steps)
        elif kind == "error":
            message = f"Cannot segment: {event['message']}"
            self._notes.append(message)
            _notify.error(message)

    def _add_layers(self, plane, result, resolution=None, prepared: dict | None = None, made: dict | None = None):
        """The result's labels layer, added or replaced over the next event-loop turns; ``made`` receives
        ``meta``, the layer (``labels``) and ``kept_old`` for the nuclei step. ``prepared``: the result
        event with what :func:`_prepare` computed."""
        prepared = prepared if prepared is not None else {}
        made = made if made is not None else {}
        info = self.state.model_info
        classes = list(info.classes)
        image = plane.layer
        meta = {
            "kind": "classes",
            "image_layer": image.name,
            "slice": list(plane.slice_index),
            "classes": classes_to_meta(classes),
            "model": str(self.state.model_path),
            "model_name": info.display_name,
            "result": uuid.uuid4().hex,  # the labels and nuclei of one result share it
        }
        if resolution is not None:
            meta["resolution"] = resolution.to_dict()
        digests = prepared.get("digests") or {}
        made["meta"] = meta
        self._go_on(self._placed(made, "labels", plane, f"{image.name} labels{plane.suffix}", result.labels, meta,
                                 above=image, mode="ask", digest=digests.get("labels"),
                                 colormap=prepared.get("colormap") or class_colormap(classes),
                                 features=prepared["features"] if "features" in prepared else class_features(classes),
                                 opacity=0.6))

    def _placed(self, made: dict, key: str, *args, **kwargs):
        """:meth:`_place`, its layer in ``made[key]`` (and ``made["kept_old"]`` for the labels)."""
        layer, kept_old = yield from self._place(*args, **kwargs)
        self.added.append(layer)
        made[key] = layer
        if key == "labels":
            made["kept_old"] = kept_old

    def _add_nuclei(self, plane, event: dict, made: dict):
        """The result's nuclei layer, following its labels: a new layer when the edited labels were
        kept, else the previous one replaced."""
        image = plane.layer
        word = instances_word(self.state.model_info.classes if self.state.model_info else ())
        return self._placed(made, "nuclei", plane, f"{image.name} {word}{plane.suffix}", event["result"].instances,
                            {**made["meta"], "kind": "instances"}, above=made["labels"],
                            mode="new" if made["kept_old"] else "replace",
                            digest=(event.get("digests") or {}).get("instances"), opacity=0.5, visible=False)

    def _finish_result(self, plane, result, labels) -> None:
        """The last step of a result: the labels become the selected layer (not the uncertainty map
        added after them), so the brush and eraser keys act on them; the notes are told."""
        if labels in self.state.viewer.layers:
            self.state.viewer.layers.selection.active = labels
        image = plane.layer
        for note in [*plane.notes, *result.notes]:
            self._notes.append(f"'{image.name}': {note}")
            if not note.startswith("resolution "):  # the resolution used goes to the status line only
                _notify.warning(f"'{image.name}': {note}")

    def _place(self, plane, name: str, data, meta: dict, *, above, mode: str, digest: str | None = None, **kwargs):
        """Put ``data`` where the user expects it; a generator of main-thread steps (the layer is made,
        then inserted in a later turn) that returns ``(layer, kept_old)``.

        The layer this panel made last time for the same image, slice and kind gets the new data when
        it is unedited; when it was edited, ``mode`` decides: "ask" the user, "replace", or "new"
        (only "ask" fingerprints the old layer). Otherwise (or when the user keeps the edit:
        ``kept_old``) a new Labels layer ``name`` is added with its image's placement, directly above
        ``above`` (or above the kept layer). ``digest``: ``data``'s fingerprint, when already computed.
        """
        viewer = self.state.viewer
        image = plane.layer
        placement = {"scale": tuple(image.scale[-2:]), "translate": tuple(image.translate[-2:])}
        meta = {**meta, "digest": digest or _digest(data)}
        previous = self._previous(meta)
        if previous is not None:
            # "new": the labels this layer follows were kept, so it is kept too (edited or not)
            replace = mode == "replace" or (mode == "ask" and (not self._edited(previous) or self.state.ask(
                "Replace the edited labels?",
                f"'{previous.name}' has been edited since it was segmented. Replace it with the new result? "
                "(No keeps it and adds the new result as a separate layer.)",
            )))
            if replace:
                previous.data = data
                previous.metadata = {**previous.metadata, META_KEY: meta}
                previous.scale, previous.translate = placement["scale"], placement["translate"]
                for key in ("colormap", "features"):
                    if key in kwargs:
                        setattr(previous, key, kwargs[key])
                previous.refresh()
                return previous, False
            yield
            above = previous
        from napari.layers import Labels

        layer = Labels(data, name=name, metadata={META_KEY: meta}, **placement, **kwargs)  # what add_labels makes
        yield
        yield from _insert_above(viewer.layers, layer, above)
        return layer, previous is not None

    @staticmethod
    def _edited(layer) -> bool:
        return layer_meta(layer).get("digest") != _digest(layer.data)

    def _previous(self, meta: dict):
        """The newest Labels layer this panel made for the same image, slice and kind, or None."""
        from napari.layers import Labels

        found = None
        for layer in self.state.viewer.layers:  # bottom to top: the last match is the newest
            old = layer_meta(layer)
            if isinstance(layer, Labels) and all(old.get(key) == meta[key] for key in ("kind", "image_layer", "slice")):
                found = layer
        return found

    def _add_uncertainty(self, plane, umap, prepared: dict | None = None):
        """The uncertainty layer (replaced on re-segmentation: nobody edits it) and the ranked fields
        (``prepared``: the result event, with the map's mean and fields when :func:`_prepare` made them);
        a generator of main-thread steps (see :meth:`_queue`)."""
        from ...core.inference.uncertainty import rank_fields

        prepared = prepared if prepared is not None else {}
        viewer = self.state.viewer
        image = plane.layer
        name = f"{image.name} uncertainty{plane.suffix}"
        info = self.state.model_info
        meta = {"kind": "uncertainty", "image_layer": image.name, "slice": list(plane.slice_index),
                "model": str(self.state.model_path), "model_name": info.display_name if info else None,
                "mean": prepared["uncertainty_mean"] if "uncertainty_mean" in prepared else float(np.mean(umap))}
        placement = {"scale": tuple(image.scale[-2:]), "translate": tuple(image.translate[-2:])}
        if name in viewer.layers and layer_meta(viewer.layers[name]).get("kind") == "uncertainty":
            layer = viewer.layers[name]
            before = layer_meta(layer)
            if isinstance(before.get("mean"), float) and meta["mean"] > before["mean"] + 0.005:
                self._notes.append(
                    f"'{image.name}{plane.suffix}': mean uncertainty rose from {before['mean']:.3f} "
                    f"({before.get('model_name') or 'the previous model'}) to {meta['mean']:.3f} with "
                    f"'{meta['model_name']}': the new model is less sure of this image")
            layer.data = umap
            layer.metadata = {**layer.metadata, META_KEY: meta}
        else:
            from napari.layers import Image

            layer = Image(umap, name=name, colormap="magma", opacity=0.5, blending="additive",
                          contrast_limits=(0.0, 1.0), visible=False, metadata={META_KEY: meta}, **placement)
            yield
            layers = viewer.layers
            # directly above this image's result layers (the labels stay directly above their image)
            ours = [lay for lay in self.added if lay in layers] or ([image] if image in layers else [])
            yield from _insert_above(layers, layer, max(ours, key=layers.index) if ours else None)
            yield
        self.fields = (image, prepared["fields"] if "fields" in prepared else rank_fields(umap))
        self._next.blockSignals(True)
        self._next.clear()
        for k, field in enumerate(self.fields[1], start=1):
            item = QListWidgetItem(f"{k}. {image.name}{plane.suffix}: {field.label()}")
            self._next.addItem(item)
        self._next.setCurrentRow(-1)
        self._next.blockSignals(False)

    def go_to_field(self, row: int) -> bool:
        """Move the view to the ``row``-th field of the ranking (centred, zoomed to fit); False if none."""
        image, fields = self.fields
        if image is None or not 0 <= row < len(fields) or image not in self.state.viewer.layers:
            return False
        field = fields[row]
        viewer = self.state.viewer
        lo = np.asarray(image.data_to_world([*([0] * (image.ndim - 2)), field.y - 0.5, field.x - 0.5]))[-2:]
        hi = np.asarray(image.data_to_world([*([0] * (image.ndim - 2)), field.y + field.h - 0.5,
                                              field.x + field.w - 0.5]))[-2:]
        center = list(viewer.camera.center)
        center[-2:] = ((lo + hi) / 2.0).tolist()
        viewer.camera.center = tuple(center)
        size = getattr(getattr(viewer, "canvas", None), "size", None)
        if size is not None:
            extent = np.maximum(np.abs(hi - lo), 1e-6)
            viewer.camera.zoom = float(np.min(np.asarray(size, float)[-2:] / extent)) * 0.95
        return True

    def _with_notes(self, text: str) -> str:
        return " ".join([text, *(n if n.rstrip().endswith((".", ")")) else n + "." for n in self._notes)])

    def _on_returned(self, count: int) -> None:
        self.outcome = "done"
        self.last_seconds = time.perf_counter() - self._started
        device = self.state.resolved_device()
        set_bar(self._bar, 1000)
        info = self.state.model_info
        made = [layer.name for layer in self.added if layer_meta(layer).get("kind") == "classes"]
        shown = ", ".join(f"'{name}'" for name in made[:3]) + (f" and {len(made) - 3} more" if len(made) > 3 else "")
        model = f" with '{info.display_name}'" if info is not None else ""
        flipped = ", each tile mirror-averaged" if self._flipped else ""
        text = f"Segmented {count} image(s) in {self.last_seconds:.1f} s on {device}{model}{flipped}" + (
            f": {shown}." if made else ".")
        if count == 0:
            text = "No image was segmented."
        _notify.tell(self._status, self._with_notes(text), "info" if count else "error",
                     toast=f"Segmented {count} image(s) in {self.last_seconds:.1f} s." if count else None)

    def _on_errored(self, exc: Exception) -> None:
        self.outcome = "failed"
        text = f"Cannot segment: {exc}" if isinstance(exc, GenSelfDiffError) else _notify.describe(exc, "Segmentation")
        _notify.tell(self._status, self._with_notes(text), "error", toast=_notify.toast_text(text))

    def _on_aborted(self) -> None:
        self.outcome = "cancelled"
        set_bar(self._bar, 0)  # nothing half-done is left showing
        kept = f" ({len(self.added)} layer(s) from finished images kept)" if self.added else ""
        _notify.tell(self._status, self._with_notes(f"Segmentation cancelled{kept}."), "info",
                     toast="Segmentation cancelled.")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.state.set_job("segment", None)
        self.worker = None
        self._update_enabled()
