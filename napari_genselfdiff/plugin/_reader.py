"""napari readers: H&E images, and label masks written by this plugin (or `genselfdiff segment`).

How a mask is recognised: its file name ends with ``_labels`` or ``_instances`` before the suffix
(``slide1_labels.tif``, ``slide1_labels.png``, ``slide1_instances.tif``: the names our writer, the
export panel and the CLI give), and its pixels are a 2-D integer array. It opens as a Labels layer;
for ``*_labels`` files a ``classes.json`` in the same folder supplies the class names and colours
(napari then shows "class: nucleus" under the cursor). Any other file, or a "labels" file that is
not a 2-D integer array, opens as an image.

Images: .tif/.tiff (LZW and other compressed TIFFs through tifffile + imagecodecs), .png, .jpg,
.jpeg, .bmp. Channel-first (3|4, H, W) TIFFs are turned channel-last so napari shows them in colour.
The resolution a file records (``core/io/resolution.py``) goes to ``metadata["genselfdiff"]["image"]``
(``mpp``, ``mpp_source``), where the Segment panel's Resolution field reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.io.read import IMAGE_SUFFIXES, read_array

MASK_ENDINGS = ("_labels", "_instances")


def _paths(path) -> list[str] | None:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):
        return None
    return [str(p) for p in paths]


def is_mask_name(path) -> bool:
    return Path(path).stem.lower().endswith(MASK_ENDINGS)


def get_image_reader(path):
    """npe2 reader hook for H&E images (files named like masks go to :func:`get_labels_reader`)."""
    paths = _paths(path)
    if paths is None or any(is_mask_name(p) for p in paths):
        return None
    from ..core.io.slide import is_slide

    if any(is_slide(p) for p in paths):  # pyramidal or huge TIFFs: the lazy slide reader (_slide_reader.py)
        return None
    return read_files


def get_labels_reader(path):
    """npe2 reader hook for ``*_labels.*`` / ``*_instances.*`` masks."""
    paths = _paths(path)
    if paths is None or not all(is_mask_name(p) for p in paths):
        return None
    return read_files


def read_files(path) -> list[tuple]:
    """Read each file as an image or a mask layer (see the module docstring)."""
    return [_read_one(Path(p)) for p in _paths(path) or []]


def _read_one(path: Path) -> tuple:
    data = read_array(path)
    if is_mask_name(path) and data.ndim == 2 and np.issubdtype(data.dtype, np.integer):
        return _labels_layer(path, data)
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
        data = np.moveaxis(data, 0, -1)
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    kwargs = {"name": path.stem, "rgb": rgb}
    from ..core.io.resolution import recorded_mpp

    recorded = recorded_mpp(path)  # the Segment panel resamples to the model's resolution from it
    if recorded.mpp is not None or recorded.notes:
        from ._layers import META_KEY

        kwargs["metadata"] = {META_KEY: {"image": {"path": str(path), "mpp": recorded.mpp,
                                                   "mpp_source": recorded.detail, "notes": list(recorded.notes)}}}
    return data, kwargs, "image"


def _labels_layer(path: Path, data: np.ndarray) -> tuple:
    from ..core.export import CLASSES_FILE, ExportError, read_classes_json
    from ._layers import META_KEY, class_colormap, class_features, classes_to_meta

    stem = path.stem
    kind = "instances" if stem.lower().endswith("_instances") else "classes"
    image_name = stem[: -len("_instances")] if kind == "instances" else stem[: -len("_labels")]
    meta = {"kind": kind, "image_layer": image_name, "source": str(path)}
    kwargs: dict = {"name": f"{image_name} {'nuclei' if kind == 'instances' else 'labels'}", "opacity": 0.6}
    classes_file = path.with_name(CLASSES_FILE)
    if kind == "classes" and classes_file.is_file():
        try:
            classes = read_classes_json(classes_file)
        except ExportError:
            classes = []
        if classes:
            meta["classes"] = classes_to_meta(classes)
            kwargs["colormap"] = class_colormap(classes)
            kwargs["features"] = class_features(classes)
    kwargs["metadata"] = {META_KEY: meta}
    return data, kwargs, "labels"
