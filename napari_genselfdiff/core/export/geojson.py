"""Label images -> QuPath-importable GeoJSON: one Feature per object, traced along pixel edges.

Coordinates are pixel units, x to the right and y down, with (0, 0) the top-left CORNER of the
top-left pixel (QuPath's convention): pixel (row r, column c) is the square [c, c+1] x [r, r+1].
Outlines follow the pixel edges exactly (no smoothing), so rasterising a polygon at pixel centres
gives back exactly the object's pixels; straight runs are merged into one segment.

Every polygon is a valid simple polygon (OGC rules, as JTS in QuPath and GEOS in shapely check them):
no ring passes through a point twice. Where an object touches itself only at a pixel corner (two
diagonal pixels of the same 4-connected part, e.g. a C shape whose tips meet diagonally), the outline
is traced as an outer ring plus a hole that touches it at that corner, which is valid, rather than
as one ring that touches itself, which is not.

Objects are each nucleus instance when an instance image is given (its class is the most frequent
class under it), else each 4-connected region of one class. Objects made of several 4-connected parts
become a MultiPolygon; holes become interior rings.

Each Feature carries ``properties = {"objectType": "annotation" | "detection", "classification":
{"name": class name, "color": [r, g, b]}}`` as QuPath writes and reads them (File > Import objects,
or drag the .geojson file onto the image). "detection" objects are light and suit hundreds of nuclei;
"annotation" objects can be edited in QuPath. ``object_type="auto"`` (the default) decides per class,
from the model's class names: objects of a class in ``ANNOTATION_CLASSES`` (glands: large, few,
edited by hand in QuPath) are annotations, every other object (nuclei) a detection.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ..model_files.classes import ClassInfo, default_classes

OBJECT_TYPES = ("detection", "annotation")
OBJECT_TYPE_CHOICES = ("auto",) + OBJECT_TYPES
"""What ``object_type`` may be: "auto" (per class, see `object_type_of`) or one type for every object."""

ANNOTATION_CLASSES = ("gland",)
"""Class names (compared without case) whose objects "auto" exports as QuPath annotations."""


def object_type_of(class_name: str, object_type: str = "auto") -> str:
    """The QuPath object type of an object of ``class_name``: ``object_type`` itself unless it is "auto",
    then "annotation" for a class of ``ANNOTATION_CLASSES`` (e.g. the gland model's "Gland") and
    "detection" for every other class (nuclei)."""
    if object_type != "auto":
        return object_type
    return "annotation" if class_name.strip().lower() in ANNOTATION_CLASSES else "detection"
_FOUR = ndimage.generate_binary_structure(2, 1)

# Directed pixel edges, walked with the object on the right-hand side (screen coordinates, y down),
# so outer rings run clockwise on screen and holes anticlockwise. Each entry: (neighbour offset
# (dr, dc) that must be background, start corner (dx, dy), end corner (dx, dy)) relative to the
# pixel's top-left corner.
_EDGES = (
    ((-1, 0), (0, 0), (1, 0)),  # top: left -> right
    ((0, 1), (1, 0), (1, 1)),  # right: top -> bottom
    ((1, 0), (1, 1), (0, 1)),  # bottom: right -> left
    ((0, -1), (0, 1), (0, 0)),  # left: bottom -> top
)


def _ring_area(ring: np.ndarray) -> float:
    """Shoelace area: positive for outer rings (clockwise on screen), negative for holes."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _simplify(ring: list[tuple[int, int]]) -> np.ndarray:
    """Drop vertices in the middle of straight runs; the ring is given open (no repeated end)."""
    pts = np.asarray(ring, dtype=np.int64)
    prev = np.roll(pts, 1, axis=0)
    nxt = np.roll(pts, -1, axis=0)
    d1, d2 = pts - prev, nxt - pts
    corner = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) != 0
    return pts[corner]


def trace_rings(mask: np.ndarray, *, join_diagonals: bool = False) -> list[np.ndarray]:
    """All boundary rings of a binary mask, along pixel edges.

    Args:
        mask: (H, W) bool.
        join_diagonals: how a pixel corner shared only by two diagonal object pixels (a saddle) is
            walked. False (by default): the diagonal pixels are kept apart (the object read
            4-connected), so two parts touching at a corner get one ring each. True: the walk turns
            across the corner, so each ring passes through it once; use this for ONE 4-connected
            part (what :func:`mask_geometry` traces), where the diagonal pixels belong together and
            keeping them apart would make a ring that touches itself (an invalid polygon).

    Returns:
        A list of (n, 2) int arrays of (x, y) corners, open (first point not repeated). Outer rings
        have positive :func:`_ring_area`, holes negative.
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (dr, dc), (sx, sy), (ex, ey) in _EDGES:
        neighbour = padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc]
        rows, cols = np.nonzero(mask & ~neighbour)
        for r, c in zip(rows.tolist(), cols.tolist()):
            outgoing.setdefault((c + sx, r + sy), []).append((c + ex, r + ey))
    rings: list[np.ndarray] = []
    while outgoing:
        # Start at a vertex with one way out: a saddle vertex is passed twice (by one ring or two).
        start = next((v for v, ends in outgoing.items() if len(ends) == 1), next(iter(outgoing)))
        ring = [start]
        prev = start
        current = _pop_edge(outgoing, start, None, join_diagonals)
        while current != start:
            ring.append(current)
            nxt = _pop_edge(outgoing, current, (current[0] - prev[0], current[1] - prev[1]), join_diagonals)
            prev, current = current, nxt
        rings.append(_simplify(ring))
    return rings


def _pop_edge(outgoing, vertex, heading, join_diagonals: bool = False):
    """Take the edge leaving ``vertex``. At a saddle (two choices) turn right, which keeps the two
    diagonal pixels apart, or with ``join_diagonals`` left, which walks across to the other pixel."""
    choices = outgoing[vertex]
    if len(choices) == 1 or heading is None:
        end = choices.pop(0)
    else:
        hx, hy = heading
        # On screen (y down), the right turn of heading (hx, hy) is (-hy, hx) and the left turn (hy, -hx).
        turn = (hy, -hx) if join_diagonals else (-hy, hx)
        wanted = (vertex[0] + turn[0], vertex[1] + turn[1])
        end = wanted if wanted in choices else choices[0]
        choices.remove(end)
    if not choices:
        del outgoing[vertex]
    return end


def mask_geometry(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> dict[str, Any] | None:
    """GeoJSON geometry (Polygon, or MultiPolygon for several 4-connected parts) of a binary mask.

    Args:
        mask: (H, W) bool mask of one object.
        offset: (row, column) of ``mask[0, 0]`` in the full image.

    Returns:
        The geometry dict, or None for an empty mask.
    """
    parts, n = ndimage.label(mask, structure=_FOUR)
    polygons = []
    for sl, k in zip(ndimage.find_objects(parts), range(1, n + 1)):
        if sl is None:
            continue
        part = parts[sl] == k
        rings = trace_rings(part, join_diagonals=True)  # simple rings (see the module docstring)
        oy, ox = offset[0] + sl[0].start, offset[1] + sl[1].start
        outer = [r for r in rings if _ring_area(r) > 0]
        holes = [r for r in rings if _ring_area(r) < 0]
        if len(outer) != 1:  # pragma: no cover - a 4-connected part has exactly one outer boundary
            raise RuntimeError(f"tracing found {len(outer)} outer rings for one connected part")

        def closed(ring: np.ndarray) -> list[list[int]]:
            pts = (ring + np.array([ox, oy])).tolist()
            return pts + [pts[0]]

        polygons.append([closed(outer[0])] + [closed(h) for h in holes])
    if not polygons:
        return None
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def _class_lookup(classes: Sequence[ClassInfo] | None, top: int) -> dict[int, ClassInfo]:
    fallback = default_classes(["background"] + [f"class {i}" for i in range(1, max(top, 1) + 1)])
    table = {c.id: c for c in fallback}
    table.update({c.id: c for c in classes or ()})
    return table


def class_vote(labels: np.ndarray, mask: np.ndarray) -> int:
    """The class of an object: the most frequent class id > 0 of ``labels`` under ``mask`` (two crops of
    one shape), 1 when there is none."""
    under = labels[mask]
    under = under[under > 0]
    return int(np.bincount(under).argmax()) if under.size else 1


def object_feature(
    mask: np.ndarray,
    offset: tuple[int, int],
    class_id: int,
    classes: Mapping[int, ClassInfo],
    *,
    object_type: str,
    id_seed: str,
    number: int,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    measurements: dict[str, float] | None = None,
) -> dict[str, Any] | None:
    """THE GeoJSON Feature of one object, for both writers (:func:`labels_to_features`, in memory, and the
    whole-slide nuclei stream of ``core/inference/slide_nuclei.py``).

    Args:
        mask: (h, w) bool mask of the object (a crop).
        offset: (row, column) of ``mask[0, 0]`` in the labels.
        class_id: its class (see :func:`class_vote`); an id missing from ``classes`` is "class <id>", red.
        classes: the class records by id.
        object_type: "detection", "annotation" or "auto" (per class, :func:`object_type_of`).
        id_seed, number: the feature's UUID is uuid5 of ``genselfdiff/<id_seed>/<number>``.
        transform: applied to the geometry in pixel coordinates (e.g. scaling to level-0 slide pixels).
        measurements: QuPath measurements ({"Area um^2": ...}); none when None.

    Returns:
        The Feature dict, or None for an empty mask.
    """
    geometry = mask_geometry(mask, offset)
    if geometry is None:
        return None
    if transform is not None:
        geometry = transform(geometry)
    info = classes.get(class_id) or ClassInfo(class_id, f"class {class_id}", (255, 0, 0, 255))
    properties: dict[str, Any] = {
        "objectType": object_type_of(info.name, object_type),
        "classification": {"name": info.name, "color": [int(c) for c in info.color[:3]]},
    }
    if measurements is not None:
        properties["measurements"] = measurements
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"genselfdiff/{id_seed}/{number}")),
        "geometry": geometry,
        "properties": properties,
    }


def labels_to_features(
    labels: np.ndarray,
    classes: Sequence[ClassInfo] | None = None,
    *,
    instances: np.ndarray | None = None,
    object_type: str = "auto",
    id_seed: str = "",
) -> list[dict[str, Any]]:
    """One GeoJSON Feature per object (see the module docstring for what an object is).

    Args:
        labels: (H, W) class ids, 0 = background.
        classes: the classes (names and colours); ids without a record get "class <id>".
        instances: optional (H, W) instance ids; objects are then the instances.
        object_type: "auto" (by default: per class, `object_type_of`: glands are annotations, nuclei
            detections), "detection" (light, for many nuclei) or "annotation" (editable), for all.
        id_seed: text mixed into the features' UUIDs (e.g. the file stem), so ids are stable across
            exports of the same image and distinct between images.

    Returns:
        The Feature dicts, ordered by object (instance id, or class then region).

    Raises:
        ValueError: unknown object type, or shapes that differ.
    """
    if object_type not in OBJECT_TYPE_CHOICES:
        raise ValueError(f"object_type must be one of {OBJECT_TYPE_CHOICES}, not {object_type!r}.")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W); got shape {labels.shape}.")
    table = _class_lookup(classes, int(labels.max(initial=0)))
    objects: list[tuple[int, np.ndarray, tuple[int, int]]] = []  # (class id, mask crop, offset)
    if instances is not None:
        instances = np.asarray(instances)
        if instances.shape != labels.shape:
            raise ValueError(f"instances of shape {instances.shape} differ from labels of shape {labels.shape}.")
        for value, sl in enumerate(ndimage.find_objects(instances), start=1):
            if sl is None:
                continue
            crop = instances[sl] == value
            objects.append((class_vote(labels[sl], crop), crop, (sl[0].start, sl[1].start)))
    else:
        for cls in [int(v) for v in np.unique(labels) if v > 0]:
            regions, _ = ndimage.label(labels == cls, structure=_FOUR)
            for value, sl in enumerate(ndimage.find_objects(regions), start=1):
                if sl is not None:
                    objects.append((cls, regions[sl] == value, (sl[0].start, sl[1].start)))
    features = []
    for number, (cls, crop, offset) in enumerate(objects, start=1):
        feature = object_feature(crop, offset, cls, table, object_type=object_type, id_seed=id_seed, number=number)
        if feature is not None:
            features.append(feature)
    return features


def labels_to_geojson(labels, classes=None, *, instances=None, object_type: str = "auto",
                      id_seed: str = "") -> dict[str, Any]:
    """A GeoJSON FeatureCollection of :func:`labels_to_features` (QuPath imports it as is)."""
    return {
        "type": "FeatureCollection",
        "features": labels_to_features(
            labels, classes, instances=instances, object_type=object_type, id_seed=id_seed
        ),
    }


def rasterize_geometry(geometry: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside a Polygon/MultiPolygon (holes removed); for checks and tests."""
    from skimage.draw import polygon as draw_polygon

    out = np.zeros(shape, bool)
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for rings in polys:
        for k, ring in enumerate(rings):
            pts = np.asarray(ring, float)
            # Pixel (r, c) has its centre at (c + 0.5, r + 0.5); skimage tests integer (r, c).
            rr, cc = draw_polygon(pts[:, 1] - 0.5, pts[:, 0] - 0.5, shape)
            out[rr, cc] = k == 0
    return out
