"""The "GenSelfDiff slide segmentation" dock widget: segment a whole slide, its field of view, or the
rectangles drawn in a Shapes layer, into an on-disk labels store shown as a multiscale Labels layer.

It works on image layers opened by the slide reader (``_slide_reader.py``: their metadata name the
slide file and its resolution). Segmentation runs ``core.inference.slide.segment_slide_progressive``
in a background worker (``_threading.py``) with progress in tiles; **Cancel** stops between two tile
batches and keeps what was finished in ``<stem>_labels.zarr.partial``, which is then shown.
**Segment** again with the same slide, model and scope continues it where it stopped (the core
refuses a partial run with other settings and says what differs; **Start over** discards it). The
scope:

- **Whole slide**: tissue tiles of the whole slide;
- **Field of view**: the part of the slide on screen (level-0 pixels under the canvas);
- **Shapes**: the bounding box of the shapes of the chosen Shapes layer (draw a rectangle).

The labels are written to ``<output folder>/<stem>_labels.zarr`` (the slide's folder by default)
and added as a Labels layer over the slide, at its scale. With **Nuclei**, ``<stem>_nuclei.geojson``
is written too (QuPath: File > Import objects). A finished store is never replaced (it may hold
saved corrections): when ``<stem>_labels.zarr`` exists, Segment writes ``<stem>_labels-2.zarr``
(``-3``, ... the first free name; the GeoJSON takes the same suffix), shown as the layer
``<slide> labels-2``, and says so; the old store and its layer stay as they are.

**Correcting.** napari does not paint on multiscale Labels layers (``Labels.editable`` is
``not multiscale`` in napari 0.9.2; the open napari/napari#1587 reports it since napari 0.3). So
**Edit labels here** opens the level-0 labels of the field of view (or of the shapes' bounding box)
as an ordinary in-memory Labels layer placed exactly over the slide (its translate is the region's
offset), to paint and erase with napari's tools. **Save
corrections** writes every such layer back into the store's level 0 and regenerates the coarser levels
under the changed pixels, as one transaction (``core/io/labels_store.py: write_labels_region``), then
reloads the store's layer. Only the region is ever in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from ..core.io.slide import SlideError
from ._layer_insert import insert_in_pieces, run_in_turns
from ._layers import META_KEY
from ._threading import start_worker
from .widgets._bars import set_bar
from .widgets._form import hbox, panel_layout

SCOPES = ("Whole slide", "Field of view", "Shapes")
#: Metadata key of an editable region of a labels store (under ``metadata["genselfdiff"]``).
EDIT_KEY = "slide_edit"
#: Largest region opened for correcting (pixels a side): it is held in memory and drawn as one texture.
EDIT_MAX_SIDE = 8192


def store_source(layer) -> Path | None:
    """The labels store a (multiscale) Labels layer shows, or None."""
    meta = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    source = meta.get("source")
    if not source or EDIT_KEY in meta or getattr(layer, "_type_string", "") != "labels":
        return None
    return Path(source) if str(source).rstrip("/").endswith((".zarr", ".zarr.partial")) else None


def slide_meta(layer) -> dict | None:
    return ((getattr(layer, "metadata", None) or {}).get(META_KEY) or {}).get("slide")


def world_box_to_level0(layer, y0: float, x0: float, y1: float, x1: float, height: int, width: int):
    """A world-coordinate box -> (x, y, w, h) in level-0 pixels of ``layer``, clipped to the slide.

    Returns None when the box misses the slide.
    """
    scale = np.asarray(layer.scale[-2:], float)
    translate = np.asarray(layer.translate[-2:], float)
    (py0, px0), (py1, px1) = (np.array([y0, x0]) - translate) / scale, (np.array([y1, x1]) - translate) / scale
    ya, yb = sorted((py0, py1))
    xa, xb = sorted((px0, px1))
    ya, xa = max(int(np.floor(ya)), 0), max(int(np.floor(xa)), 0)
    yb, xb = min(int(np.ceil(yb)), height), min(int(np.ceil(xb)), width)
    if yb <= ya or xb <= xa:
        return None
    return xa, ya, xb - xa, yb - ya


class SlideSegmentWidget(QWidget):
    """Dock widget (see the module docstring)."""

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.last_result = None
        self.last_saved = None  # changed pixels written by the last Save corrections
        self.slide_combo = QComboBox()
        # The model: a bundled one by name (THE registry, core.model_files.bundled_models; the default
        # model first, chosen) or a file typed or browsed into the same field.
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model_edit = self.model_combo.lineEdit()
        self.model_edit.setPlaceholderText("model file (.safetensors) or a bundled model")
        self._bundled_choices()
        browse = QPushButton("...")
        browse.clicked.connect(self._browse_model)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder (default: the slide's folder)")
        self.mpp_edit = QLineEdit()
        self.mpp_edit.setPlaceholderText("from the file (40x: 0.25, 20x: 0.5)")
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(SCOPES)
        self.shapes_combo = QComboBox()
        self.instances_check = QCheckBox("Nuclei (GeoJSON for QuPath)")
        self.restart_check = QCheckBox("Start over (discard an unfinished run)")
        self.restart_check.setToolTip("By default Segment continues a cancelled or interrupted run of the same "
                                      "slide, model and region; tick this to discard it and start again.")
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(self.segment)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.edit_button = QPushButton("Edit labels here")
        self.edit_button.setToolTip("Open the labels of the field of view (or of the shapes) as a layer you can paint; "
                                    "napari cannot paint multiscale labels.")
        self.edit_button.clicked.connect(self.edit_labels)
        self.save_edits_button = QPushButton("Save corrections")
        self.save_edits_button.setToolTip("Write the painted regions back into the labels store (level 0, and the "
                                          "coarser levels under them).")
        self.save_edits_button.clicked.connect(self.save_corrections)
        self.progress = QProgressBar()
        self.status = QLabel("Open a slide (.svs, .ndpi, .scn, pyramidal TIFF) with File > Open.")
        self.status.setWordWrap(True)

        layout = panel_layout(
            self,
            [("Slide", self.slide_combo), ("Model", hbox(self.model_combo, browse, stretch=0)),
             ("Output", self.out_edit), ("Resolution (um/px)", self.mpp_edit), ("Segment", self.scope_combo),
             ("Shapes layer", self.shapes_combo)],
            self.instances_check, self.restart_check, hbox(self.segment_button, self.cancel_button),
            hbox(self.edit_button, self.save_edits_button), self.progress, self.status)
        layout.addStretch(1)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh)
        self.slide_combo.currentTextChanged.connect(self._show_resolution)
        self._refresh()
        self._show_resolution()

    # -- choices -----------------------------------------------------------------------------------
    def _refresh(self, *_):
        from napari.layers import Image, Shapes

        for combo, kind, keep in ((self.slide_combo, Image, slide_meta), (self.shapes_combo, Shapes, None)):
            current = combo.currentText()
            combo.clear()
            names = [layer.name for layer in self.viewer.layers
                     if isinstance(layer, kind) and (keep is None or keep(layer))]
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)

    def _show_resolution(self, *_) -> None:
        """Fill the resolution field from the slide's file (empty when it records none)."""
        name = self.slide_combo.currentText()
        meta = slide_meta(self.viewer.layers[name]) if name and name in self.viewer.layers else None
        mpp = (meta or {}).get("mpp")
        self.mpp_edit.setText(f"{mpp:g}" if mpp else "")

    def _mpp(self) -> float | None:
        text = self.mpp_edit.text().strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise SlideError(f"resolution '{text}' is not a positive number of microns per pixel (40x: 0.25).")
        return value

    def _bundled_choices(self) -> None:
        """Offer the bundled models (the default one first and chosen), as the Model panel does."""
        from ..core.model_files import bundled_models

        for index, (name, path) in enumerate(bundled_models().items()):
            self.model_combo.addItem(f"{name} (bundled{', default' if index == 0 else ''})", name)
            self.model_combo.setItemData(self.model_combo.count() - 1, str(path), 3)  # tooltip: the file
        self.model_combo.setCurrentIndex(0 if self.model_combo.count() else -1)

    def model_choice(self) -> str:
        """The model to resolve: a bundled model's name when one of the list is shown, else the text
        (a file path or a name).

        Raises:
            SlideError: the field is empty.
        """
        text = self.model_edit.text().strip()
        index = self.model_combo.findText(text)
        if text and index >= 0 and self.model_combo.itemData(index):
            return str(self.model_combo.itemData(index))
        if not text:
            raise SlideError("choose a model: a bundled one from the list, or a model file (...).")
        return str(Path(text).expanduser())

    def inference_settings(self):
        """Device, precision and tile of the annotation widget docked in the same viewer (its Model
        and Segment panels), else the defaults; nuclei are the slide's own option."""
        import dataclasses

        from ..core.inference import InferenceSettings
        from ._state import state_of

        state = state_of(self.viewer)
        chosen = state.inference_settings() if state is not None and state.inference_settings else InferenceSettings()
        return dataclasses.replace(chosen, instances=False)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Model files (*.safetensors)")
        if path:
            self.model_edit.setText(path)

    def _say(self, message: str) -> None:
        self.status.setText(message)

    # -- the region --------------------------------------------------------------------------------
    def region(self, layer, meta) -> tuple[int, int, int, int] | None:
        """The chosen scope as (x, y, w, h) level-0 pixels; None for the whole slide.

        Raises:
            SlideError: the scope cannot be used (no shapes, shapes off the slide, ...).
        """
        scope = self.scope_combo.currentText()
        data0 = layer.data[0] if layer.multiscale else layer.data
        height, width = int(data0.shape[0]), int(data0.shape[1])
        if scope == "Whole slide":
            return None
        if scope == "Field of view":
            center = np.asarray(self.viewer.camera.center[-2:], float)
            zoom = float(self.viewer.camera.zoom)
            canvas = self._canvas_size()
            half = np.asarray(canvas, float) / zoom / 2
            box = world_box_to_level0(layer, *(center - half), *(center + half), height, width)
            if box is None:
                raise SlideError("the slide is not in view; pan to it or choose 'Whole slide'.")
            return box
        name = self.shapes_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise SlideError("no Shapes layer: add one (Layers > New Shapes layer) and draw a rectangle.")
        shapes = self.viewer.layers[name]
        if len(shapes.data) == 0:
            raise SlideError(f"the Shapes layer '{name}' has no shapes; draw a rectangle on the slide.")
        points = np.concatenate([np.asarray(s)[:, -2:] for s in shapes.data])
        world = points * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
        (y0, x0), (y1, x1) = world.min(0), world.max(0)
        box = world_box_to_level0(layer, y0, x0, y1, x1, height, width)
        if box is None:
            raise SlideError(f"the shapes of '{name}' lie outside the slide.")
        return box

    def _canvas_size(self) -> tuple[float, float]:
        try:
            size = self.viewer.window._qt_viewer.canvas.size
            return float(size[0]), float(size[1])
        except Exception:  # noqa: BLE001 - headless or another napari: fall back on a typical canvas
            return 600.0, 800.0

    # -- running -----------------------------------------------------------------------------------
    def segment(self) -> None:
        from ..core.inference.slide import (
            SlideSettings,
            free_output_suffix,
            output_paths,
            segment_slide_progressive,
            slide_stem,
        )
        from ..core.model_files import resolve_model
        from . import _notify

        name = self.slide_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._say("No slide layer: open a slide with File > Open.")
            return
        layer = self.viewer.layers[name]
        meta = slide_meta(layer) or {}
        try:
            region = self.region(layer, meta)
            mpp = self._mpp()
            network, info = resolve_model(self.model_choice())
            inference = self.inference_settings()
        except Exception as exc:  # noqa: BLE001 - shown to the user as a sentence
            self._say(_notify.describe(exc, "segment the slide"))
            return
        slide_path = Path(meta["path"])
        out_dir = Path(self.out_edit.text().strip() or slide_path.parent).expanduser()
        settings = SlideSettings(inference=inference, instances=self.instances_check.isChecked(),
                                 mpp=mpp, region=region)
        # Never replace a finished store (it may hold saved corrections): the first free name,
        # <stem>_labels.zarr, else <stem>_labels-2.zarr, -3, ... (an unfinished .partial keeps its name,
        # so Segment continues it).
        stem = slide_stem(slide_path)
        suffix = free_output_suffix(out_dir, stem, instances=settings.instances)
        store_path = output_paths(out_dir, stem, suffix)[0]
        kept = [path.name for n in range(1, int(suffix[1:]) if suffix else 1)
                if (path := output_paths(out_dir, stem, f"-{n}" if n > 1 else "")[0]).exists()]
        set_bar(self.progress, 0)
        self.segment_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        where = "the whole slide" if region is None else f"x {region[0]}, y {region[1]}, {region[2]} x {region[3]} px"
        self._kept_note = (f" {', '.join(kept)} {'exists and is' if len(kept) == 1 else 'exist and are'} kept as "
                           f"{'it is' if len(kept) == 1 else 'they are'} (with any corrections saved); the new "
                           f"labels are in {store_path.name}." if kept else "")
        self._say(f"Segmenting {where} of {slide_path.name} into {store_path.name} ...{self._kept_note}")
        self._layer, self._out, self._store_path, self._suffix = layer, out_dir, store_path, suffix
        self.worker = start_worker(
            segment_slide_progressive, network, info, slide_path, out_dir, settings, overwrite=False,
            suffix=suffix, restart=self.restart_check.isChecked(), start=False,
            on_yielded=self._progress, on_returned=self._done, on_errored=self._failed,
            on_aborted=self._cancelled, on_finished=self._finished,
        )
        self.worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            self._say("Cancelling after the current tiles ...")

    def _progress(self, event: dict) -> None:
        total = max(int(event.get("total") or 1), 1)
        self.progress.setMaximum(total)
        set_bar(self.progress, int(event.get("done") or 0))
        self.progress.setFormat(f"{event.get('stage', '')}: %v / %m")

    def _done(self, result) -> None:
        self.last_result = result
        self.restart_check.setChecked(False)
        self._show_store(result.labels_store, suffix=self._suffix)
        partial_name = f"{self._layer.name} labels{self._suffix} (cancelled, partial)"
        if partial_name in self.viewer.layers:
            self.viewer.layers.remove(partial_name)
        nuclei = f", {result.nuclei} nuclei -> {result.geojson.name}" if result.geojson else ""
        resumed = f" ({result.tiles_resumed} of them done before, continued)" if result.tiles_resumed else ""
        self._say(f"{result.tiles} of {result.tiles_all} tiles (tissue only){resumed} in {result.seconds:.0f} s -> "
                  f"{result.labels_store}{nuclei}.{self._kept_note}")

    def _failed(self, exc: Exception) -> None:
        from . import _notify

        self._say(_notify.describe(exc, "segment the slide"))

    def _cancelled(self) -> None:
        partial = self._store_path.with_name(self._store_path.name + ".partial")
        if partial.exists():
            self._show_store(partial, suffix=f"{self._suffix} (cancelled, partial)")
        self._say(f"Cancelled; the tiles finished so far are kept in {partial}. Segment again with the same "
                  "settings to continue from there.")

    def _finished(self) -> None:
        self.segment_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.worker = None

    def _show_store(self, path: Path, suffix: str = "") -> None:
        """Add (or replace) the Labels layer ``<slide> labels<suffix>`` of a store over the slide layer
        (a store written next to an existing one has its own suffix, so the old store's layer stays)."""
        from ._slide_reader import read_labels_store

        [(data, kwargs, _)] = read_labels_store(str(path))
        kwargs["name"] = f"{self._layer.name} labels{suffix}"
        kwargs["scale"] = tuple(self._layer.scale[-2:])
        kwargs["translate"] = tuple(self._layer.translate[-2:])
        kwargs["units"] = tuple(self._layer.units[-2:])  # the slide's (napari warns on mixed units)
        if kwargs["name"] in self.viewer.layers:
            self.viewer.layers.remove(kwargs["name"])
        from napari.layers import Labels

        layer = Labels(data, **kwargs)  # what add_labels makes, inserted in pieces (no long GUI stall)
        run_in_turns(insert_in_pieces(self.viewer.layers, len(self.viewer.layers), layer))

    # -- correcting --------------------------------------------------------------------------------
    def _store_layer(self):
        """The labels store layer to correct: the selected one, else the current slide's, else the first."""
        candidates = [layer for layer in self.viewer.layers if store_source(layer) is not None]
        active = self.viewer.layers.selection.active
        if active in candidates:
            return active
        slide = self.slide_combo.currentText()
        for layer in candidates:
            if layer.name == f"{slide} labels":
                return layer
        return candidates[0] if candidates else None

    def edit_labels(self) -> None:
        """Open the chosen scope of the labels store as a paintable layer at its place over the slide."""
        from ..core.io.labels_store import PARTIAL, open_labels_store, read_labels_region
        from . import _notify

        store_layer = self._store_layer()
        if store_layer is None:
            self._say("No labels to correct: segment the slide first, or drag its <stem>_labels.zarr folder "
                      "onto napari.")
            return
        source = store_source(store_layer)
        if source.name.endswith(PARTIAL):
            self._say(f"{source.name} is an unfinished run: Segment again to finish it, then correct it.")
            return
        try:
            data0 = store_layer.data[0] if store_layer.multiscale else store_layer.data
            height, width = int(data0.shape[-2]), int(data0.shape[-1])
            region = self.region(store_layer, None) or (0, 0, width, height)
            x, y, w, h = region
            if max(w, h) > EDIT_MAX_SIDE:
                raise SlideError(
                    f"the region is {w} x {h} pixels; correct at most {EDIT_MAX_SIDE} x {EDIT_MAX_SIDE} at a time: "
                    "zoom in (Field of view) or draw a smaller rectangle (Shapes)."
                )
            labels = read_labels_region(open_labels_store(source), x, y, w, h)
        except Exception as exc:  # noqa: BLE001 - shown to the user as a sentence
            self._say(_notify.describe(exc, "open the labels for correcting"))
            return
        scale = np.asarray(store_layer.scale[-2:], float)
        translate = np.asarray(store_layer.translate[-2:], float) + np.array([y, x], float) * scale
        name = f"{store_layer.name} edit x{x} y{y}"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        layer = self.viewer.add_labels(
            labels, name=name, scale=tuple(scale), translate=tuple(translate), units=tuple(store_layer.units[-2:]),
            opacity=0.8, colormap=store_layer.colormap,  # the class colours of the store
            metadata={META_KEY: {"kind": "classes",
                                 EDIT_KEY: {"store": str(source), "x": x, "y": y, "width": w, "height": h}}},
        )
        layer.selected_label = 1
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self._say(f"Paint or erase in '{name}' (level-0 x {x}, y {y}, {w} x {h} px), then Save corrections.")

    def save_corrections(self) -> None:
        """Write every edited region back into its store, then reload the store's layers."""
        from napari.layers import Labels

        from ..core.io.labels_store import write_labels_region
        from . import _notify

        edits = [layer for layer in self.viewer.layers
                 if isinstance(layer, Labels) and EDIT_KEY in ((layer.metadata or {}).get(META_KEY) or {})]
        if not edits:
            self._say("Nothing to save: open a region with 'Edit labels here' and paint in it first.")
            return
        changed, stores = 0, set()
        for layer in edits:
            edit = layer.metadata[META_KEY][EDIT_KEY]
            try:
                result = write_labels_region(edit["store"], edit["x"], edit["y"], np.asarray(layer.data),
                                             note=f"napari slide widget, layer '{layer.name}'")
            except Exception as exc:  # noqa: BLE001 - shown to the user as a sentence
                self._say(_notify.describe(exc, f"save the corrections of '{layer.name}'"))
                return
            changed += result["changed_pixels"]
            stores.add(str(edit["store"]))
        self._reload_stores(stores)
        self.last_saved = changed
        where = ", ".join(Path(s).name for s in sorted(stores))
        self._say(f"Saved {changed} changed pixels from {len(edits)} region(s) into {where} (level 0 and the "
                  "coarser levels under them).")

    def _reload_stores(self, stores: set[str]) -> None:
        """Show the stores' new content in their (lazy, multiscale) layers."""
        from ._slide_reader import read_labels_store

        for layer in list(self.viewer.layers):
            source = store_source(layer)
            if source is not None and str(source) in stores:
                [(data, _, _)] = read_labels_store(str(source))
                layer.data = data
