"""Layer helpers: which plane of an image layer to segment, and Labels layers with class names/colours.

The rules for image layers (each message is shown to the user as it is):

- an RGB(A) layer: its (H, W, C) data; the labels get its (H, W) shape;
- a 2-D grayscale layer: used as it is (the core expands it to RGB and says so);
- a non-RGB layer of shape (H, W, 3|4) (RGB opened without the RGB flag): read as RGB, with a note;
- a 3-D stack or time series: the plane currently displayed (``viewer.dims``), said in a note and
  in the labels layer's name; refused in the 3-D view, or when the displayed axes are not the last two;
- a multiscale (pyramid) layer: its full-resolution level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import ImageInputError, MaskInputError
from ..core.model_files.classes import ClassInfo, default_classes

#: key of the plugin's record in ``layer.metadata``
META_KEY = "genselfdiff"


@dataclass
class ImagePlane:
    """The 2-D image to segment, taken from a layer."""

    layer: Any
    data: Any
    notes: list[str] = field(default_factory=list)
    slice_index: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def yx_shape(self) -> tuple[int, int]:
        shape = tuple(int(s) for s in self.data.shape)
        if len(shape) == 3 and shape[0] in (3, 4) and shape[-1] not in (1, 3, 4):
            return shape[1], shape[2]
        return shape[0], shape[1]

    @property
    def suffix(self) -> str:
        """" (slice 4)" for a plane of a stack, "" otherwise (for layer names)."""
        if not self.slice_index:
            return ""
        return " (slice " + ", ".join(str(i) for i in self.slice_index) + ")"


def image_layers(viewer) -> list:
    """The H&E image layers: every Image layer except the maps this plugin derives (uncertainty)."""
    from napari.layers import Image

    return [layer for layer in viewer.layers
            if isinstance(layer, Image) and layer_meta(layer).get("kind") != "uncertainty"]


def labels_layers(viewer) -> list:
    from napari.layers import Labels

    return [layer for layer in viewer.layers if isinstance(layer, Labels)]


def image_plane(layer, viewer) -> ImagePlane:
    """The 2-D (H, W[, C]) image of ``layer`` to segment (see the module docstring).

    Raises:
        ImageInputError: the layer is shown in 3-D or with other displayed axes than its Y and X.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    notes: list[str] = []
    if getattr(layer, "multiscale", False):
        notes.append("multiscale image: the full-resolution level is segmented")
    lead = layer.ndim - 2
    if not layer.rgb and data.ndim == 3 and data.shape[-1] in (3, 4):
        notes.append(f"layer '{layer.name}' is shown as a stack of {data.shape[-1]} planes; read as one RGB image")
        return ImagePlane(layer, data, notes)
    if lead <= 0:
        return ImagePlane(layer, data, notes)
    ndim = viewer.dims.ndim
    if viewer.dims.ndisplay != 2:
        raise ImageInputError(
            f"'{layer.name}' is a stack shown in the 3-D view; switch to the 2-D view and choose the slice "
            "to segment (napari segments the displayed slice)."
        )
    if list(viewer.dims.displayed) != [ndim - 2, ndim - 1]:
        raise ImageInputError(
            f"'{layer.name}': the displayed axes are not the image's Y and X (the axes were rolled or "
            "transposed); reset the axis order so that Y and X are shown, then segment."
        )
    point = layer.world_to_data(viewer.dims.point)
    index = tuple(
        int(np.clip(round(float(p)), 0, int(s) - 1)) for p, s in zip(point[:lead], data.shape[:lead])
    )
    plane = data[index]
    what = "time series or stack" if lead == 1 else f"{lead + 2}-D stack"
    notes.append(
        f"'{layer.name}' is a {what} of shape {tuple(data.shape)}; only the displayed slice "
        f"{index if lead > 1 else index[0]} was segmented"
    )
    return ImagePlane(layer, plane, notes, index)


def class_colormap(classes: list[ClassInfo]):
    """A napari DirectLabelColormap: each class id in its colour, background transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[int | None, tuple[float, ...]] = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
    for cls in classes:
        if cls.id != 0:
            colors[cls.id] = cls.color_float
    return DirectLabelColormap(color_dict=colors)


def class_features(classes: list[ClassInfo]):
    """The features table napari shows in the status bar ("class: nucleus") under the cursor."""
    import pandas as pd

    return pd.DataFrame({"index": [c.id for c in classes], "class": [c.name for c in classes]})


def classes_to_meta(classes: list[ClassInfo]) -> list[dict]:
    return [c.to_dict() for c in classes]


def classes_of(layer, fallback: list[ClassInfo] | None = None) -> list[ClassInfo]:
    """The classes recorded on a labels layer (by this plugin or the reader), else ``fallback``,
    else default names for the values present."""
    meta = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    records = meta.get("classes")
    if records:
        try:
            return [ClassInfo.from_dict(c) for c in records]
        except Exception:  # noqa: BLE001 - a hand-edited record: fall back to the defaults
            pass
    if fallback:
        return list(fallback)
    top = int(np.max(np.asarray(layer.data), initial=0)) if layer is not None else 1
    return default_classes(["background"] + [f"class {i}" for i in range(1, max(top, 1) + 1)])


def layer_meta(layer) -> dict:
    return dict((getattr(layer, "metadata", None) or {}).get(META_KEY) or {})


def instances_word(classes) -> str:
    """What a model's instances are called in layer names and labels: "glands" for a gland model (a class
    named Gland), else "nuclei"."""
    names = {str(getattr(c, "name", c)).lower() for c in classes or ()}
    return "glands" if "gland" in names else "nuclei"


def paired_image(viewer, labels_layer):
    """The image layer a labels layer was made from (recorded by the segment panel, else by name)."""
    name = layer_meta(labels_layer).get("image_layer")
    candidates = image_layers(viewer)
    for layer in candidates:
        if layer.name == name:
            return layer
    base = labels_layer.name
    for suffix in (" labels", " nuclei", " glands", "_labels", "_instances"):
        if suffix in base:
            base = base.split(suffix)[0]
            break
    for layer in candidates:
        if layer.name == base:
            return layer
    return None


def labels_plane(labels_layer, plane: ImagePlane) -> np.ndarray:
    """The labels of ``labels_layer`` for an image plane, checked against the image's (H, W).

    Raises:
        MaskInputError: the shapes differ (the message gives both).
    """
    data = np.asarray(labels_layer.data)
    if data.ndim > 2 and plane.slice_index and data.shape[: len(plane.slice_index)] == plane.layer.data.shape[: len(plane.slice_index)]:
        data = data[plane.slice_index]
    if data.shape != plane.yx_shape:
        raise MaskInputError(
            f"the labels layer '{labels_layer.name}' has shape {tuple(data.shape)} but the image "
            f"'{plane.name}' is {plane.yx_shape} (height, width); they must match pixel for pixel. "
            "Pick the labels made from this image, or segment it again."
        )
    return data


def nuclei_layer_for(viewer, labels_layer, plane: ImagePlane | None = None):
    """The nucleus instances layer that goes with ``labels_layer``, or None.

    The Segment panel gives a result's labels and nuclei one ``result`` id; without one (layers made
    elsewhere) the nuclei layer is found by name: ``<labels name with ' nuclei' for ' labels'>``, or
    ``<image> nuclei<slice>``. A layer of another shape is not taken.
    """
    from napari.layers import Labels

    shape = np.shape(labels_layer.data)
    result = layer_meta(labels_layer).get("result")
    candidates = [layer for layer in viewer.layers if isinstance(layer, Labels) and layer is not labels_layer
                  and np.shape(layer.data) == shape]
    if result:
        for layer in candidates:
            meta = layer_meta(layer)
            if meta.get("kind") == "instances" and meta.get("result") == result:
                return layer
    names = []
    for word in ("nuclei", "glands"):
        if " labels" in labels_layer.name:
            names.append(labels_layer.name.replace(" labels", f" {word}"))
        if plane is not None:
            names.append(f"{plane.layer.name} {word}{plane.suffix}")
    for name in names:
        for layer in candidates:
            meta = layer_meta(layer)
            if layer.name == name and not (result and meta.get("result") and meta.get("result") != result):
                return layer
    return None
