"""napari reader for QuPath GeoJSON (``*.geojson``: QuPath's "Export objects as GeoJSON", with or
without "Export as FeatureCollection", and what this plugin exports).

A file opens as up to two layers (parsing and rasterising: ``core/annotations/qupath.py``):

- **detections and cells** (a cell by its nucleus) as ONE Labels layer ``<stem> objects``: one id per
  object (1..N in file order), each coloured by its classification's colour (else the object's own,
  else the default palette), with a features table (``class``, ``name``, ``objectType``, ``id``,
  ``locked``) so napari's status bar shows "class: Tumor" under the cursor;
- **annotations** as a Shapes layer ``<stem> annotations``: one polygon per ring (napari's shapes have
  no holes, so a hole is drawn as its own outline), edges in the class colour, lines as paths.

The frame is the image's pixel frame, level 0 for slides: the pixel (row r, column c) of the labels is
the pixel QuPath calls (x, y) = (c, r). The labels cover the image when it is known, else the objects
from (0, 0) to their far corner. The image is found, in this order: the slide named in the
collection's ``properties.slide`` (this plugin's slide export); an image or slide beside the file
with the same name (``core/data/folders.py: match_key``; ``X.geojson`` or ``X_nuclei.geojson`` with
``X.svs``, ``X.tif``, ...). A slide gives the layers its scale (microns per pixel), so they lie over
the slide layer; without one the scale is pixels. Over ``DENSE_PIXELS`` pixels the labels are a lazy
multiscale pyramid, painted chunk by chunk as napari shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.annotations.qupath import (
    QuPathFile,
    QuPathObject,
    check_inside,
    lazy_levels,
    rasterize,
    read_geojson,
)
from ..core.data.folders import match_key
from ..core.defaults import GEOJSON_SUFFIXES, class_colour

#: labels larger than this many pixels open as a lazy multiscale pyramid instead of one array.
DENSE_PIXELS = 1 << 27
_OWN_SUFFIX = "_nuclei"  # the slide export's <stem>_nuclei.geojson


def get_geojson_reader(path):
    """npe2 reader hook for ``*.geojson`` files."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(Path(p).suffix.lower() in GEOJSON_SUFFIXES for p in paths):
        return None
    return read_geojson_files


def read_geojson_files(path) -> list[tuple]:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[tuple] = []
    for p in paths:
        layers += read_geojson_layers(p)
    return layers


def _image_frame(path: Path) -> tuple[tuple[int, int] | None, float | None, str | None]:
    """(level-0 (H, W), microns per pixel, image name) of an image or slide file, from its header."""
    from ..core.io.slide import is_slide

    try:
        if is_slide(path):
            from ..core.io.slide import Slide

            slide = Slide(path)
            level = slide.levels[0]
            return (level.height, level.width), slide.mpp, path.stem
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                series = tf.series[0]
                axes, shape = series.axes, series.shape
                return (int(shape[axes.index("Y")]), int(shape[axes.index("X")])), None, path.stem
        from PIL import Image

        with Image.open(path) as im:
            return (int(im.size[1]), int(im.size[0])), None, path.stem
    except Exception:  # noqa: BLE001 - an unreadable neighbour: the frame falls back to the objects
        return None, None, None


def find_image_frame(path: Path, qfile: QuPathFile) -> dict[str, Any]:
    """The image the objects were drawn on: {"shape", "mpp", "image", "how"} (see the module docstring)."""
    from ..core.io.read import IMAGE_SUFFIXES
    from ..core.io.slide import SLIDE_SUFFIXES

    mpp = qfile.properties.get("mpp")
    mpp = float(mpp) if isinstance(mpp, (int, float)) and mpp > 0 else None
    slide = qfile.properties.get("slide")
    candidates: list[Path] = []
    if isinstance(slide, str):
        candidates.append(Path(slide))
    key = match_key(path)
    keys = {key, key[: -len(_OWN_SUFFIX)] if key.lower().endswith(_OWN_SUFFIX) else key}
    suffixes = set(IMAGE_SUFFIXES) | set(SLIDE_SUFFIXES)
    try:
        candidates += sorted(p for p in path.parent.iterdir()
                             if p.is_file() and p.suffix.lower() in suffixes and match_key(p) in keys)
    except OSError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            shape, image_mpp, name = _image_frame(candidate)
            if shape is not None:
                return {"shape": shape, "mpp": image_mpp or mpp, "image": name,
                        "how": f"frame of {candidate.name}"}
    return {"shape": None, "mpp": mpp, "image": None,
            "how": "no image found beside the file: the labels reach from (0, 0) to the objects' far corner"}


def _rgba(obj: QuPathObject, index: int) -> tuple[float, float, float, float]:
    rgb = obj.class_color or obj.color
    if rgb is None:
        return tuple(c / 255.0 for c in class_colour(index))  # type: ignore[return-value]
    return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, 1.0)


def read_geojson_layers(path) -> list[tuple]:
    """The layers of one GeoJSON file (see the module docstring).

    Raises:
        MaskInputError: broken JSON, not GeoJSON, no object, or objects outside the known image.
    """
    import pandas as pd

    from ._layers import META_KEY

    path = Path(path)
    qfile = read_geojson(path)
    frame = find_image_frame(path, qfile)
    notes = list(qfile.notes) + [frame["how"]]
    if frame["shape"] is not None:
        notes += check_inside(qfile, frame["shape"])
    _, _, x1, y1 = qfile.bounds
    shape = frame["shape"] or (max(int(np.ceil(y1)), 1), max(int(np.ceil(x1)), 1))
    scale = (frame["mpp"], frame["mpp"]) if frame["mpp"] else (1.0, 1.0)
    common: dict[str, Any] = {"scale": scale}
    if frame["mpp"]:
        common["units"] = ("um", "um")
    image = frame["image"] or path.stem.removesuffix(_OWN_SUFFIX)
    names: dict[str | None, int] = {}  # class name -> palette index (first seen first)
    layers: list[tuple] = []

    objects = qfile.of_kind("detection", "cell")
    if objects:
        ids = np.arange(1, len(objects) + 1)
        indexes = [names.setdefault(o.class_name, len(names) + 1) for o in objects]
        if shape[0] * shape[1] <= DENSE_PIXELS:
            data: Any = rasterize(objects, shape, ids, dtype=np.int32 if len(objects) >= 65535 else None)
            multiscale = False
        else:
            levels = lazy_levels(objects, ids, shape)
            data, multiscale = (levels if len(levels) > 1 else levels[0]), len(levels) > 1
        colors = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
        colors.update({int(i): _rgba(o, k) for i, o, k in zip(ids, objects, indexes)})
        features = pd.DataFrame({
            "index": np.concatenate([[0], ids]),
            "class": ["background"] + [o.class_name or "Unclassified" for o in objects],
            "name": [""] + [o.name or "" for o in objects],
            "objectType": [""] + [o.kind for o in objects],
            "id": [""] + [o.id or "" for o in objects],
            "locked": [False] + [o.locked for o in objects],
        })
        from napari.utils.colormaps import DirectLabelColormap

        meta = {"kind": "instances", "image_layer": image, "source": str(path), "format": "qupath-geojson",
                "classes": sorted({o.class_name or "Unclassified" for o in objects}), "notes": notes}
        layers.append((data, {"name": f"{image} objects", "opacity": 0.6, "multiscale": multiscale,
                              "colormap": DirectLabelColormap(color_dict=colors), "features": features,
                              "metadata": {META_KEY: meta}, **common}, "labels"))

    annotations = qfile.of_kind("annotation")
    if annotations:
        shapes, kinds, edge, cls, label = [], [], [], [], []
        for obj in annotations:
            colour = _rgba(obj, names.setdefault(obj.class_name, len(names) + 1))
            rings = [(ring, "polygon") for poly in obj.polygons for ring in poly] + [(line, "path") for line in obj.lines if len(line) > 1]
            for ring, kind in rings:
                # QuPath (x, y) corner coordinates -> napari (row, col): pixel (r, c) has its centre at (r, c)
                shapes.append(np.stack([ring[:, 1] - 0.5, ring[:, 0] - 0.5], axis=1))
                kinds.append(kind)
                edge.append(colour)
                cls.append(obj.class_name or "Unclassified")
                label.append(obj.name or "")
        if not shapes:
            return layers
        meta = {"kind": "qupath_annotations", "image_layer": image, "source": str(path), "notes": notes}
        layers.append((shapes, {"name": f"{image} annotations", "shape_type": kinds, "edge_color": edge,
                                "face_color": "transparent", "edge_width": 2,
                                "features": pd.DataFrame({"class": cls, "name": label}),
                                "metadata": {META_KEY: meta}, **common}, "shapes"))
    return layers
