"""napari reader for whole-slide images (.svs, .ndpi, .scn, .bif, pyramidal/large (OME-)TIFF) and for
the labels stores that slide segmentation writes (``<stem>_labels.zarr``).

A slide opens as ONE multiscale RGB image layer whose levels are lazy dask arrays over the TIFF tiles
(napari reads only the tiles on screen, at the level that fits the zoom). When the file records its
resolution, the layer's ``scale`` is microns per pixel (so napari's scale bar and rulers are in
microns, and a labels layer made for it inherits the scale); the resolution is also in
``layer.metadata["genselfdiff"]["slide"]`` with where it came from. Without a resolution the scale is
1 (pixels) and the metadata says so.

A labels store opens as a multiscale Labels layer with the same scale as its slide.
"""

from __future__ import annotations

import re
from pathlib import Path

#: ``<stem>_labels.zarr`` or ``<stem>_labels-2.zarr``, ``-3``, ... (a store written next to an existing one).
_LABELS_STORE_NAME = re.compile(r"^(?P<stem>.+)_labels(?P<suffix>-\d+)?\.zarr$", re.IGNORECASE)


def _single(path) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(path)


def get_slide_reader(path):
    """npe2 reader hook: a callable for whole slides, None for anything else (flat images, masks)."""
    from ..core.io.slide import SLIDE_SUFFIXES, UNSUPPORTED_SUFFIXES, is_slide

    p = _single(path)
    if p is None or p.suffix.lower() not in SLIDE_SUFFIXES + tuple(UNSUPPORTED_SUFFIXES):
        return None
    if not is_slide(p):
        return None
    return read_slide


def read_slide(path) -> list[tuple]:
    """One multiscale image layer for the slide (raises SlideError with a clear message if unreadable)."""
    from ..core.io.slide import Slide
    from ._layers import META_KEY

    p = _single(path)
    slide = Slide(p)  # kept open: the layer's dask arrays read from it
    levels = slide.dask_levels()
    meta = {
        "slide": {
            "path": str(p),
            "vendor": slide.vendor,
            "mpp": slide.mpp,
            "mpp_source": slide.mpp_source,
            "level_downsamples": [lv.downsample for lv in slide.levels],
            "notes": list(slide.notes) + ([] if slide.mpp else ["resolution unknown: scale is in pixels"]),
        }
    }
    scale = (slide.mpp, slide.mpp) if slide.mpp else (1.0, 1.0)
    kwargs = {
        "name": p.name[: -len(".ome.tif")] if p.name.lower().endswith(".ome.tif") else p.stem,
        "rgb": True,
        "multiscale": len(levels) > 1,
        "scale": scale,
        "contrast_limits": [0, 255],
        "metadata": {META_KEY: meta},
    }
    if slide.mpp:
        kwargs["units"] = ("um", "um")
    data = levels if len(levels) > 1 else levels[0]
    return [(data, kwargs, "image")]


def get_labels_store_reader(path):
    """npe2 reader hook for ``<stem>_labels.zarr`` folders written by slide segmentation."""
    p = _single(path)
    if p is None or not _LABELS_STORE_NAME.match(p.name) or not p.is_dir():
        return None
    return read_labels_store


def store_classes(store) -> list:
    """The classes of a labels store: ids and names from its ``genselfdiff`` record, colours from its
    NGFF ``image-label`` colours, else each id's default class colour; background and nucleus when the
    store records none."""
    from ..core.defaults import class_colour
    from ..core.model_files.classes import ClassInfo, default_classes

    records = (store.attrs.get("genselfdiff") or {}).get("classes") or []
    colours = {int(c["label-value"]): tuple(int(v) for v in c["rgba"])
               for c in (store.attrs.get("image-label") or {}).get("colors") or [] if "label-value" in c}
    try:
        classes = [ClassInfo(id=int(r["id"]), name=str(r.get("name", r["id"])),
                             color=colours.get(int(r["id"]), class_colour(int(r["id"])))) for r in records]
    except (KeyError, TypeError, ValueError):
        classes = []
    if not any(c.id == 0 for c in classes) and classes:
        classes.insert(0, ClassInfo(id=0, name="background", color=class_colour(0)))
    return classes or default_classes(["background", "nucleus"])


def read_labels_store(path) -> list[tuple]:
    """One multiscale Labels layer (lazy) with the store's resolution as scale."""
    from ..core.io.labels_store import open_labels_store
    from ._layers import META_KEY

    p = _single(path)
    store = open_labels_store(p)
    # A fresh dask name per read: napari's dask cache must not show chunks of the store from before a
    # correction was saved (the same arrays would get the same name).
    import uuid

    import dask.array as da

    token = uuid.uuid4().hex
    levels = [da.from_zarr(a, name=f"genselfdiff-labels-{token}-{k}") for k, a in enumerate(store.arrays)]
    scale = (store.mpp, store.mpp) if store.mpp else (1.0, 1.0)
    named = _LABELS_STORE_NAME.match(p.name)
    stem, suffix = (named["stem"], named["suffix"] or "") if named else (p.name, "")
    from ._layers import class_colormap, class_features, classes_to_meta

    classes = store_classes(store)
    kwargs = {
        "name": f"{stem} labels{suffix}",
        "multiscale": len(levels) > 1,
        "scale": scale,
        "opacity": 0.6,
        "colormap": class_colormap(classes),  # each class in its colour (nucleus gold), as in the Segment panel
        "features": class_features(classes),
        "metadata": {META_KEY: {"kind": "classes", "image_layer": stem, "source": str(p),
                                "complete": store.complete, "classes": classes_to_meta(classes)}},
    }
    if store.mpp:
        kwargs["units"] = ("um", "um")
    return [(levels if len(levels) > 1 else levels[0], kwargs, "labels")]
