"""The nuclei of a slide, streamed to ``<stem>_nuclei.geojson``.

Nuclei are split (``inference/instances.py``) in blocks of the model-resolution labels with a margin
wider than a nucleus; a nucleus belongs to the block that holds its centroid, so every nucleus is written
once and whole. Each is one Feature of ``export/geojson.py: object_feature`` (the builder the in-memory
export uses too: outline along pixel edges, class vote), scaled to level-0 slide pixels and given its area
in um^2. An instance-aware model's cue waits in a float16 zarr array inside the partial store
(:func:`cue_store`) until the nuclei are written, so an interrupted run keeps it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .slide_views import SlideGeometry

if TYPE_CHECKING:
    from .slide import SlideSettings

#: The cue array's folder inside the partial labels store (removed when the run finishes).
CUE_STORE = "instance_cue"


def cue_store(partial: Path, info, geo: SlideGeometry, *, reopen: bool):
    """A float16 zarr array for an instance-aware model's cue at the model's resolution (None for other
    models), kept in the partial store until the nuclei are written, so an interrupted run keeps it."""
    from .outputs import CUE_CHANNELS

    n = CUE_CHANNELS.get(getattr(info, "output", "classes"), 0)
    if not n:
        return None
    import zarr

    path = partial / CUE_STORE
    if reopen and path.is_dir():
        return zarr.open_array(str(path), mode="r+", zarr_format=2)
    return zarr.open_array(str(path), mode="w", shape=(n, geo.height, geo.width), chunks=(n, 1024, 1024),
                           dtype="float16", fill_value=0, zarr_format=2)


def write_nuclei_geojson(labels, geo: SlideGeometry, info, settings: "SlideSettings", target: Path, *,
                         overwrite: bool, properties: dict, seed: str, cue=None):
    """Split nuclei block by block and stream them to a GeoJSON file (written atomically), yielding
    ``{"stage": "nuclei", "done", "total"}`` per block.

    Args:
        labels: the model-resolution class labels of the window (``geo``), read lazily.
        properties: the collection's ``properties`` (its ``mpp`` gives the features' areas).
        seed: mixed into the features' UUIDs (the slide's stem).
        cue: the instance-aware model's cue beside ``labels``, or None.

    Returns the number of nuclei (as the generator's return value).
    """
    from scipy import ndimage

    from ..export.geojson import class_vote, object_feature
    from ..io.atomic import atomic_path

    classes = {c.id: c for c in info.classes}
    B, M = settings.instance_block, settings.instance_margin
    H, W = geo.height, geo.width
    blocks = [(by, bx) for by in range(0, H, B) for bx in range(0, W, B)]
    scale = 1.0 / geo.f
    n = 0
    px_area_um2 = (properties["mpp"] * scale) ** 2  # one model pixel is 1/f level-0 pixels a side

    def to_slide(geometry: dict) -> dict:
        return _scale_geometry(geometry, scale, geo.oy, geo.ox)

    with atomic_path(target, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write('{"type": "FeatureCollection", "properties": ')
            out.write(json.dumps(properties))
            out.write(', "features": [\n')
            for i, (by, bx) in enumerate(blocks):
                (wy0, wx0), window, inst = _split_block(labels, cue, info, by, bx, B, M, H, W)
                if inst is not None:
                    for value, sl in enumerate(ndimage.find_objects(inst), start=1):
                        if sl is None:
                            continue
                        crop = inst[sl] == value
                        rr, cc = np.nonzero(crop)
                        cy = wy0 + sl[0].start + rr.mean()
                        cx = wx0 + sl[1].start + cc.mean()
                        if not (by <= cy < by + B and bx <= cx < bx + B):
                            continue  # another block owns it
                        feature = object_feature(
                            crop, (wy0 + sl[0].start, wx0 + sl[1].start), class_vote(window[sl], crop), classes,
                            object_type=settings.object_type, id_seed=seed, number=n + 1, transform=to_slide,
                            measurements={"Area um^2": round(float(crop.sum()) * px_area_um2, 2)},
                        )
                        if feature is None:
                            continue
                        n += 1
                        out.write(("," if n > 1 else "") + json.dumps(feature, separators=(",", ":")) + "\n")
                yield {"stage": "nuclei", "done": i + 1, "total": len(blocks)}
            out.write("]}\n")
    return n


def _split_block(labels, cue, info, by: int, bx: int, B: int, M: int, H: int, W: int):
    """Split the block at (by, bx) in a window ``M`` model pixels wider on every side; the margin doubles,
    up to 4 ``M``, while a foreground component that reaches into the block also reaches a window edge
    inside the slide (a gland, or a clump of touching nuclei, wider than the margin: splitting it cut
    would outline or split it wrongly). Splitting is per component (``instances.py``), so a component
    inside the window is split as on the whole slide. (4 x the default 96 px is 476 um at the gland
    model's 1.24 um/px, larger than a colon gland; a larger cap would let dense tissue's long chains of
    touching nuclei grow windows toward the whole slide.)

    Returns ((wy0, wx0), window labels, instances or None for an empty window).
    """
    from .instances import split_nuclei

    largest = 4 * M
    while True:
        wy0, wx0 = max(by - M, 0), max(bx - M, 0)
        wy1, wx1 = min(by + B + M, H), min(bx + B + M, W)
        window = np.asarray(labels[wy0:wy1, wx0:wx1])
        if not window.any():
            return (wy0, wx0), window, None
        if M >= largest or not _cut_component_reaches_block(window > 0, (by - wy0, bx - wx0, B),
                                                              (wy0 > 0, wy1 < H, wx0 > 0, wx1 < W)):
            break
        M *= 2
    cue_window = None if cue is None else np.asarray(cue[:, wy0:wy1, wx0:wx1], dtype=np.float32)
    return (wy0, wx0), window, split_nuclei(window > 0, cue_window, info)


def _cut_component_reaches_block(foreground: np.ndarray, block: tuple[int, int, int], inner: tuple) -> bool:
    """Whether a component of ``foreground`` touches an inner window edge (one that is not the slide's)
    and also the block (``block`` = its top, left and side in window pixels)."""
    from scipy import ndimage

    top, bottom, left, right = inner
    edges = np.zeros(foreground.shape, bool)
    if top:
        edges[0] = True
    if bottom:
        edges[-1] = True
    if left:
        edges[:, 0] = True
    if right:
        edges[:, -1] = True
    if not (edges & foreground).any():
        return False
    components, _ = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    cut = np.unique(components[edges & foreground])
    by, bx, side = block
    inside = components[max(by, 0):by + side, max(bx, 0):bx + side]
    return bool(np.isin(inside[inside > 0], cut).any())


def _scale_geometry(geometry: dict, scale: float, oy: int, ox: int) -> dict:
    """Model-pixel coordinates (window origin at (oy, ox) model pixels) -> level-0 slide pixels."""

    def ring(points):
        return [[round((px + ox) * scale, 3), round((py + oy) * scale, 3)] for px, py in points]

    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in geometry["coordinates"]]}
    return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in poly] for poly in geometry["coordinates"]]}
