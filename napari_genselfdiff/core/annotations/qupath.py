"""Read QuPath GeoJSON (objects exported from QuPath, or written by this package) and rasterise it.

What QuPath writes, read from its serializer (qupath/qupath, qupath-core, commit e7662d8 of
2026-08-07: ``qupath/lib/io/QuPathTypeAdapters.java`` PathObjectTypeAdapter and
PathObjectCollectionTypeAdapter, ``GsonTools.java`` PathClassTypeAdapter, ``PathIO.java``
GeoJsonExportOptions, ``ROITypeAdapters.java``):

- File layout: with the FEATURE_COLLECTION option ("Export as FeatureCollection") a
  ``{"type": "FeatureCollection", "features": [...]}``; without it ONE object is written as a bare
  Feature and several as a bare JSON array of Features. QuPath reads all three; so do we.
- A Feature: ``"id"`` (a UUID since v0.4; in v0.2 the Java class name such as "PathCellObject"
  stood there), ``"geometry"`` (the ROI; ``"plane"`` and ``"isEllipse"`` foreign members may sit in
  it), for cells ``"nucleusGeometry"`` (the nucleus ROI, beside the cell's own outline), and
  ``"properties"`` with ``objectType`` ("annotation", "detection", "cell", "tile", "tmaCore";
  older files: ``object_type`` or ``type``; a missing or unknown type is read as an annotation, as
  QuPath does), ``name``, ``color`` (the object's own colour: ``[r, g, b]`` or a packed int),
  ``classification``, ``isLocked`` (only when true), ``measurements`` (an object of name -> number,
  or before v0.4 a list of ``{"name", "value"}``; "NaN"/"Infinity" as strings), ``metadata``,
  ``childObjects``.
- A classification: ``{"name": "Tumor", "color": [r, g, b]}``; a derived class (QuPath's
  "Tumor: Positive") as ``{"names": ["Tumor", "Positive"], "color": [...]}``; the colour may have a
  4th (alpha) value, be a single packed int, or (before v0.4) be ``"colorRGB"``; a bare string is a
  name without colour. Derived names are joined with ": " (PathClass.DELIMITER's default ":" plus
  a space, as ``PathClass.toString()`` shows them).
- Coordinates are image pixels at full resolution (level 0 of a slide), x to the right, y down,
  (0, 0) the top-left CORNER of the top-left pixel (Java2D's convention, which QuPath uses and which
  ``core/export/geojson.py`` writes).

Rasterising (:func:`rasterize`): a pixel belongs to an object when its CENTRE lies inside the
object's area (outer rings minus holes: the even-odd rule), the rule of scikit-image's
``skimage.draw.polygon``, done as one numpy scanline fill over all objects (checked against
scikit-image in the tests; 20,000 nuclei in well under the 2 s target). Our exporter traces outlines along pixel edges, so our export read back gives the same pixels
exactly (tests/core/test_qupath_geojson.py). Objects that overlap: the later one wins, as it is
drawn over the earlier one in QuPath.

What becomes what (:func:`training_target`, the napari reader ``plugin/_geojson_reader.py``):
detections and cells (a cell by its ``nucleusGeometry``; a cell without one is left out, noted) are
objects; annotations are regions that mark where the outlines are complete, unless their class is
one of the model's foreground classes (hand-drawn nuclei: QuPath's brush and wand tools make
annotations), then they are objects too. Tiles, TMA cores and root objects are left out (noted).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MaskInputError
from .regions import UNKNOWN_LABEL

#: the object types kept (QuPath's names); legacy v0.2 Java class names map onto them.
OBJECT_KINDS = ("annotation", "detection", "cell")
_LEGACY_TYPES = {
    "PathAnnotationObject": "annotation", "PathDetectionObject": "detection", "PathCellObject": "cell",
    "PathTileObject": "tile", "TMACoreObject": "tmaCore", "tma_core": "tmaCore", "PathRootObject": "root",
}
_KNOWN_TYPES = {"annotation", "detection", "cell", "tile", "tmaCore", "root"}

#: how QuPath shows a derived class ("Tumor: Positive"): PathClass.DELIMITER (":") and a space.
CLASS_DELIMITER = ": "
#: class names (compared without case) of annotations that mark complete regions and of those that
#: mark regions to leave out; QuPath's "Region*" and "Ignore*" classes, our export's corrected regions.
REGION_CLASSES = ("region*", "region", "corrected region")
IGNORE_CLASSES = ("ignore*", "ignore")


@dataclass
class QuPathObject:
    """One object of a QuPath GeoJSON file.

    Attributes:
        kind: "annotation", "detection" or "cell" (tiles and TMA cores are not kept).
        polygons: each polygon a list of rings, outer ring first, holes after; a ring is an
            (n, 2) float array of (x, y) in pixels (corner convention, see the module docstring).
        class_name: the classification ("Tumor", "Tumor: Positive"), None when unclassified.
        class_color: the classification's (r, g, b), None when it has none.
        color: the object's own (r, g, b) (``properties.color``), None when it has none.
        name: the object's name, None when it has none.
        id: the feature's id (a UUID string for QuPath >= 0.4), None when it has none.
        locked: QuPath's ``isLocked``.
        lines: for annotations drawn as lines or points, their (n, 2) (x, y) points (not rasterised).
    """

    kind: str
    polygons: list[list[np.ndarray]]
    class_name: str | None = None
    class_color: tuple[int, int, int] | None = None
    color: tuple[int, int, int] | None = None
    name: str | None = None
    id: str | None = None
    locked: bool = False
    lines: list[np.ndarray] = field(default_factory=list)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the outer rings (``inf`` bounds when there is no polygon)."""
        if not self.polygons:
            return math.inf, math.inf, -math.inf, -math.inf
        pts = np.concatenate([poly[0] for poly in self.polygons])
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass
class QuPathFile:
    """The objects of one GeoJSON file and what was left out.

    Attributes:
        source: the file (or "GeoJSON" for text given in memory), for messages.
        objects: the objects kept, in file order.
        properties: the FeatureCollection's own ``properties`` (this package's slide export writes
            ``mpp`` there), {} when it has none.
        notes: one line per kind of thing left out or changed.
    """

    source: str
    objects: list[QuPathObject] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[QuPathObject]:
        return [o for o in self.objects if o.kind in kinds]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) over all objects."""
        boxes = np.array([o.bounds for o in self.objects if o.polygons] or [(0.0, 0.0, 0.0, 0.0)])
        return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))


# --------------------------------------------------------------------------------------------- parsing


def _color(value: Any) -> tuple[int, int, int] | None:
    """[r, g, b], [r, g, b, a] or a packed (A)RGB int (Java's signed int) -> (r, g, b); else None."""
    if type(value) is list and len(value) == 3 and all(type(v) is int and 0 <= v <= 255 for v in value):
        return value[0], value[1], value[2]  # the usual [r, g, b]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        packed = int(value) & 0xFFFFFF
        return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return _color(value[0])
        if len(value) in (3, 4) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return tuple(int(min(max(v, 0), 255)) for v in value[:3])  # type: ignore[return-value]
    return None


def parse_classification(value: Any) -> tuple[str | None, tuple[int, int, int] | None]:
    """QuPath's ``classification`` -> (name, (r, g, b) or None); (None, None) when unclassified."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return (value or None), None
    if not isinstance(value, dict) or not value:
        return None, None
    names = value.get("names")
    if isinstance(names, list) and names and value.get("name") is None:
        name = CLASS_DELIMITER.join(str(n) for n in names)
    elif value.get("name") is not None:
        name = str(value["name"])
    else:
        return None, None
    color = _color(value.get("color", value.get("colorRGB")))
    return (name or None), color


def _ring(points: Any, where: str) -> np.ndarray:
    try:
        ring = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise MaskInputError(f"{where}: a ring's coordinates are not numbers.") from None
    if ring.ndim != 2 or ring.shape[1] < 2:
        raise MaskInputError(f"{where}: a ring must be a list of [x, y] positions; got shape {ring.shape}.")
    ring = ring[:, :2]
    if not np.isfinite(ring).all():
        raise MaskInputError(f"{where}: a ring has coordinates that are not finite numbers.")
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]  # GeoJSON rings are closed; the filler wants them open
    return ring


def _geometry(geometry: Any, where: str) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """(polygons, lines/points) of a GeoJSON geometry (GeometryCollections are flattened)."""
    if geometry is None:
        return [], []
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise MaskInputError(f"{where}: 'geometry' is not a GeoJSON geometry (an object with a 'type').")
    kind = geometry["type"]
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        rings = [_ring(r, where) for r in coords or []]
        rings = [r for r in rings if len(r) >= 3]
        return ([rings] if rings else []), []
    if kind == "MultiPolygon":
        polygons = []
        for poly in coords or []:
            rings = [r for r in (_ring(r, where) for r in poly) if len(r) >= 3]
            if rings:
                polygons.append(rings)
        return polygons, []
    if kind == "GeometryCollection":
        polygons, lines = [], []
        for part in geometry.get("geometries") or []:
            p, l = _geometry(part, where)
            polygons += p
            lines += l
        return polygons, lines
    if kind in ("LineString", "MultiPoint"):
        return [], [_ring(coords, where)] if coords else []
    if kind == "MultiLineString":
        return [], [_ring(c, where) for c in coords or []]
    if kind == "Point":
        return [], [_ring([coords], where)] if coords else []
    raise MaskInputError(f"{where}: unknown geometry type {kind!r} (GeoJSON has Polygon, MultiPolygon, "
                         "LineString, Point and their Multi forms).")


def _object_type(feature: dict, properties: dict) -> str:
    for key in ("objectType", "object_type", "type"):
        if isinstance(properties.get(key), str):
            kind = properties[key]
            break
    else:
        kind = feature.get("id") if feature.get("id") in _LEGACY_TYPES else "annotation"
    kind = _LEGACY_TYPES.get(kind, kind)
    return kind if kind in _KNOWN_TYPES else "annotation"  # QuPath: an unknown type is an annotation


def _features(data: Any, source: str) -> tuple[list[Any], dict]:
    """The Features of a FeatureCollection, a bare list, or a single Feature; and the collection's properties."""
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict):
        if data.get("type") == "FeatureCollection" or "features" in data:
            features = data.get("features")
            if not isinstance(features, list):
                raise MaskInputError(f"{source}: a FeatureCollection whose 'features' is not a list.")
            props = data.get("properties")
            return features, props if isinstance(props, dict) else {}
        if data.get("type") == "Feature" or "geometry" in data:
            return [data], {}
    raise MaskInputError(
        f"{source}: not QuPath GeoJSON (expected a FeatureCollection, a list of Features or one Feature; "
        f"found {type(data).__name__}{' of type ' + repr(data.get('type')) if isinstance(data, dict) else ''}). "
        "In QuPath use File > Export objects as GeoJSON.")


def parse_geojson(data: Any, source: str = "GeoJSON", *, cell_part: str = "nucleus",
                  allow_empty: bool = False) -> QuPathFile:
    """Objects of parsed GeoJSON (see the module docstring for the layouts read).

    Args:
        data: the parsed JSON (a dict or a list).
        source: how to call it in messages (the file name).
        cell_part: "nucleus" (by default: a cell is its ``nucleusGeometry``) or "cell" (its outline).
        allow_empty: accept a file without any object (by default refused with a message).

    Raises:
        MaskInputError: not GeoJSON, a malformed geometry, or (unless ``allow_empty``) no object.
    """
    if cell_part not in ("nucleus", "cell"):
        raise ValueError(f"cell_part must be 'nucleus' or 'cell', not {cell_part!r}.")
    features, props = _features(data, source)
    result = QuPathFile(source=source, properties=dict(props))
    left_out: dict[str, int] = {}
    no_nucleus = no_area = 0
    stack = list(reversed(features))
    k = 0
    while stack:
        feature = stack.pop()
        k += 1
        where = f"{source}, feature {k}"
        if not isinstance(feature, dict):
            raise MaskInputError(f"{where}: a Feature must be a JSON object, not {type(feature).__name__}.")
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise MaskInputError(f"{where}: 'properties' must be a JSON object.")
        children = properties.get("childObjects", properties.get("children"))
        if isinstance(children, list):  # "Export objects" with the hierarchy: children follow their parent
            stack.extend(reversed(children))
        kind = _object_type(feature, properties)
        if kind not in OBJECT_KINDS:
            left_out[kind] = left_out.get(kind, 0) + 1
            continue
        geometry = feature.get("geometry")
        if kind == "cell" and cell_part == "nucleus":
            if feature.get("nucleusGeometry") is None:
                no_nucleus += 1
                continue
            geometry = feature["nucleusGeometry"]
        polygons, lines = _geometry(geometry, where)
        if not polygons and (kind != "annotation" or not lines):
            no_area += 1
            continue
        class_name, class_color = parse_classification(properties.get("classification"))
        ident = feature.get("id")
        result.objects.append(QuPathObject(
            kind=kind, polygons=polygons, class_name=class_name, class_color=class_color,
            color=_color(properties.get("color")), name=properties.get("name") if isinstance(properties.get("name"), str) else None,
            id=None if ident is None or ident in _LEGACY_TYPES else str(ident),
            locked=properties.get("isLocked") is True, lines=lines,
        ))
    for kind, n in sorted(left_out.items()):
        result.notes.append(f"{n} {kind} object(s) left out (only annotations, detections and cells are read)")
    if no_nucleus:
        result.notes.append(f"{no_nucleus} cell(s) without a nucleusGeometry left out")
    if no_area:
        result.notes.append(f"{no_area} object(s) without an area (points, lines or empty polygons) left out")
    if not result.objects and not allow_empty:
        what = (f"{len(features)} feature(s), none of them an area" if features
                else "no objects (an empty collection)")
        raise MaskInputError(
            f"{source}: holds {what}. In QuPath select the objects to export (or 'All objects') in "
            "File > Export objects as GeoJSON.")
    return result


def read_geojson(path: str | Path, **kwargs: Any) -> QuPathFile:
    """Read a QuPath GeoJSON file (see :func:`parse_geojson` for the arguments).

    Raises:
        MaskInputError: the file is missing, not UTF-8 JSON (the message gives line and column), or
            not QuPath GeoJSON.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MaskInputError(f"{path}: no such file.") from None
    except UnicodeDecodeError as exc:
        raise MaskInputError(f"{path}: not a text file ({exc.reason} at byte {exc.start}); "
                             "is it really GeoJSON?") from None
    except OSError as exc:
        raise MaskInputError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if not text.strip():
        raise MaskInputError(f"{path}: the file is empty. Export the objects again from QuPath "
                             "(File > Export objects as GeoJSON).")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MaskInputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the file may "
            "be cut short (an export that did not finish) or edited by hand. Export it again from QuPath."
        ) from None
    return parse_geojson(data, path.name, **kwargs)


# ------------------------------------------------------------------------------------------ rasterising


def _edges(objects: Sequence[QuPathObject]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ring edges of the objects: (start (E, 2), end (E, 2), object index (E,))."""
    rings = [ring for obj in objects for poly in obj.polygons for ring in poly]
    if not rings:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(objects)), [sum(len(r) for poly in o.polygons for r in poly) for o in objects])
    start = np.concatenate(rings)
    lengths = np.fromiter((len(r) for r in rings), np.int64, len(rings))
    first = np.cumsum(lengths) - lengths
    nxt = np.arange(1, len(start) + 1)
    nxt[first + lengths - 1] = first  # each ring closes on its first point
    return start, start[nxt], owner


def rasterize(objects: Sequence[QuPathObject], shape: tuple[int, int], values: Sequence[int] | np.ndarray,
              *, out: np.ndarray | None = None, dtype: Any = None,
              origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Paint each object with its value: the pixels whose centres lie inside its area.

    An even-odd scanline fill of all objects at once, in numpy: for each pixel row, the centre line
    y = r + 0.5 crosses the rings of an object at sorted x positions, and the pixels whose centre
    x = c + 0.5 lies between the 1st and 2nd, 3rd and 4th... crossing are the object's (holes and the
    parts of a MultiPolygon fall out of the even-odd rule; an edge spans the rows whose centre lies in
    [y_min, y_max), so a vertex on a centre line counts once). It paints the same pixels as
    scikit-image's ``skimage.draw.polygon`` at pixel centres (tests/core/test_qupath_geojson.py
    checks both on random polygons) about 20x faster for many small objects, which the per-object
    calls cannot be. Objects that overlap: the later one wins.

    Args:
        objects: the objects.
        shape: (H, W) of the image, in the objects' pixel frame (or of a window at ``origin``).
        values: one label per object (e.g. 1..N for instances, class ids for a class map).
        out: an array to paint into (by default a new zero array).
        dtype: of the new array; by default the smallest unsigned type that holds the values.
        origin: (row, column) of the painted window's top-left pixel in the image.
    """
    values = np.asarray(values)
    if len(values) != len(objects):
        raise ValueError(f"{len(values)} values for {len(objects)} objects.")
    fresh = out is None
    if out is None:
        top = int(values.max(initial=0))
        dtype = dtype or (np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32)
        out = np.zeros(tuple(int(s) for s in shape), dtype)
    h, w = out.shape
    oy, ox = origin
    p0, p1, owner = _edges(objects)
    if not len(owner):
        return out
    ymin, ymax = np.minimum(p0[:, 1], p1[:, 1]), np.maximum(p0[:, 1], p1[:, 1])
    # rows r (of the window) whose centre oy + r + 0.5 lies in [ymin, ymax)
    r_lo = np.clip(np.ceil(ymin - 0.5 - oy), 0, h).astype(np.int64)
    r_hi = np.clip(np.ceil(ymax - 0.5 - oy), 0, h).astype(np.int64)
    count = r_hi - r_lo
    keep = count > 0
    p0, p1, owner, r_lo, count = p0[keep], p1[keep], owner[keep], r_lo[keep], count[keep]
    if not len(owner):
        return out
    edge = np.repeat(np.arange(len(owner)), count)
    row = r_lo[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count))
    y0, y1 = p0[edge, 1], p1[edge, 1]
    x0, x1 = p0[edge, 0], p1[edge, 0]
    x = x0 + (row + oy + 0.5 - y0) * (x1 - x0) / (y1 - y0)
    obj = owner[edge]
    order = np.lexsort((x, row, obj))
    x, row, obj = x[order], row[order], obj[order]
    # crossings pair up within each (object, row): [0, 1], [2, 3], ...
    xa, xb, row, obj = x[0::2], x[1::2], row[0::2], obj[0::2]
    c_lo = np.clip(np.ceil(xa - 0.5 - ox), 0, w).astype(np.int64)
    c_hi = np.clip(np.ceil(xb - 0.5 - ox), 0, w).astype(np.int64)
    length = c_hi - c_lo
    keep = length > 0
    c_lo, row, obj, length = c_lo[keep], row[keep], obj[keep], length[keep]
    if fresh and _paint_runs(out, row * w + c_lo, length, values[obj].astype(out.dtype, copy=False)):
        return out
    span = np.repeat(np.arange(len(length)), length)
    flat = row[span] * w + c_lo[span] + (np.arange(len(span)) - np.repeat(np.cumsum(length) - length, length))
    # in object order, so a later object's pixels are written after an earlier one's
    out.reshape(-1)[flat] = values[obj[span]].astype(out.dtype, copy=False)
    return out


def _paint_runs(out: np.ndarray, start: np.ndarray, length: np.ndarray, value: np.ndarray) -> bool:
    """Write runs (flat start, length, value) into a zero ``out`` in one pass, as a run-length decode.

    Returns False (nothing written) when runs overlap: then the caller paints pixel by pixel, in order.
    """
    order = np.argsort(start, kind="stable")
    start, length, value = start[order], length[order], value[order]
    end = start + length
    if len(start) > 1 and bool((start[1:] < end[:-1]).any()):
        return False
    gaps = start - np.concatenate([[0], end[:-1]])
    lengths = np.empty(2 * len(start) + 1, np.int64)
    lengths[0:-1:2], lengths[1::2], lengths[-1] = gaps, length, out.size - (end[-1] if len(end) else 0)
    values = np.zeros(len(lengths), out.dtype)
    values[1::2] = value
    out.reshape(-1)[:] = np.repeat(values, lengths)
    return True


def scaled(obj: QuPathObject, factor: float) -> QuPathObject:
    """A copy of ``obj`` with its coordinates multiplied by ``factor`` (a coarser level: 1 / downsample)."""
    return QuPathObject(kind=obj.kind, polygons=[[ring * factor for ring in poly] for poly in obj.polygons],
                        class_name=obj.class_name, class_color=obj.class_color, color=obj.color, name=obj.name,
                        id=obj.id, locked=obj.locked, lines=[line * factor for line in obj.lines])


def lazy_levels(objects: Sequence[QuPathObject], values: Sequence[int] | np.ndarray, shape: tuple[int, int], *,
                chunk: int = 2048, smallest: int = 2048, dtype: Any = np.int32) -> list[Any]:
    """A lazy pyramid of :func:`rasterize` (dask arrays, chunk by chunk), for images too large to paint whole.

    Level k is downsampled by 4**k (pixel centres tested at that level: a coarse view, not a
    resampling), down to the first level whose longer side is at most ``smallest``. Each chunk
    paints only the objects whose bounds meet it.
    """
    import dask.array as da

    values = np.asarray(values)
    levels = []
    factor = 1
    while True:
        objs = objects if factor == 1 else [scaled(o, 1.0 / factor) for o in objects]
        bounds = np.array([o.bounds for o in objs] or np.zeros((0, 4)))
        h, w = -(-int(shape[0]) // factor), -(-int(shape[1]) // factor)

        def paint(block_info=None, objs=objs, bounds=bounds):
            (r0, r1), (c0, c1) = block_info[None]["array-location"]
            hit = np.nonzero((bounds[:, 2] > c0) & (bounds[:, 0] < c1) & (bounds[:, 3] > r0) & (bounds[:, 1] < r1))[0]
            return rasterize([objs[i] for i in hit], (r1 - r0, c1 - c0), values[hit], dtype=dtype, origin=(r0, c0)) \
                if len(hit) else np.zeros((r1 - r0, c1 - c0), dtype)

        levels.append(da.map_blocks(paint, dtype=dtype, chunks=da.core.normalize_chunks((chunk, chunk), (h, w)),
                                    meta=np.zeros((0, 0), dtype)))
        if max(h, w) <= smallest:
            return levels
        factor *= 4


def check_inside(qfile: QuPathFile, shape: tuple[int, int], objects: Iterable[QuPathObject] | None = None) -> list[str]:
    """Refuse objects that lie entirely outside the (H, W) image; note those that stick out of it.

    Returns:
        Notes (one line when some objects are clipped at the image's edge).

    Raises:
        MaskInputError: some objects cover no pixel of the image (the message says how many, where
            they lie and how large the image is).
    """
    objects = list(qfile.objects if objects is None else objects)
    h, w = int(shape[0]), int(shape[1])
    outside, clipped = [], 0
    for obj in objects:
        if not obj.polygons:
            continue
        x0, y0, x1, y1 = obj.bounds
        if x1 <= 0.5 or y1 <= 0.5 or x0 >= w - 0.5 or y0 >= h - 0.5:
            outside.append(obj)
        elif x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            clipped += 1
    if outside:
        boxes = np.array([o.bounds for o in outside])
        raise MaskInputError(
            f"{qfile.source}: {len(outside)} of {len(objects)} object(s) lie outside the image "
            f"({w}x{h} pixels; those objects span x {boxes[:, 0].min():.0f}..{boxes[:, 2].max():.0f}, "
            f"y {boxes[:, 1].min():.0f}..{boxes[:, 3].max():.0f}). Were they exported from another image, or "
            "from the whole slide this image is a crop of? Export them from this image in QuPath (coordinates "
            "are full-resolution pixels of the image they were drawn on).")
    return [f"{qfile.source}: {clipped} object(s) cut at the image's edge"] if clipped else []


# ------------------------------------------------------------------------------------- class matching


def _lower(name: str | None) -> str | None:
    return None if name is None else name.strip().lower()


def class_ids(objects: Sequence[QuPathObject], class_names: Sequence[str], source: str) -> np.ndarray:
    """The class id of each object: its classification matched to ``class_names`` (without case).

    A derived class ("Tumor: Positive") matches by its whole name, else by its first part. An
    unclassified object is class 1 when there is one foreground class (a nucleus model).

    Raises:
        MaskInputError: names the model does not know (the message lists them with their counts and
            the model's classes), or unclassified objects when there are several foreground classes.
    """
    lookup = {_lower(n): i for i, n in enumerate(class_names)}
    ids = np.zeros(len(objects), np.int64)
    unknown: dict[str, int] = {}
    unclassified = 0
    for k, obj in enumerate(objects):
        name = _lower(obj.class_name)
        if name is None:
            unclassified += 1
            ids[k] = 1
            continue
        found = lookup.get(name, lookup.get(name.split(":")[0].strip()))
        if found is None:
            unknown[obj.class_name] = unknown.get(obj.class_name, 0) + 1  # type: ignore[index]
        else:
            ids[k] = found
    known = ", ".join(class_names)
    if unknown:
        listed = ", ".join(f"'{n}' ({c})" for n, c in sorted(unknown.items(), key=lambda t: -t[1]))
        raise MaskInputError(
            f"{source}: class name(s) {listed} are not among the classes ({known}). Name the classes so "
            f"that they match (e.g. --classes {' '.join(shlex.quote(n) for n in [*class_names[:1], *sorted(unknown)])}), or "
            "rename the classes in QuPath (names are compared without regard to case).")
    if unclassified and len(class_names) > 2:
        raise MaskInputError(
            f"{source}: {unclassified} object(s) have no classification, and with the classes ({known}) "
            "there is no single class to give them. Classify them in QuPath, or train with one foreground class.")
    return ids


# ---------------------------------------------------------------------------------- training targets


@dataclass
class GeoJSONTarget:
    """What one GeoJSON file gives to train or score on.

    Attributes:
        labels: (H, W) class ids; :data:`UNKNOWN_LABEL` outside the complete regions.
        instances: (H, W) object ids 1..N (0 background and outside the regions).
        known: (H, W) bool, the pixels inside the complete regions (all True when the file has no
            region annotation).
        notes: what was left out, and whether the whole image was taken as complete.
    """

    labels: np.ndarray
    instances: np.ndarray
    known: np.ndarray
    notes: list[str] = field(default_factory=list)


def _is_region(obj: QuPathObject, foreground: set[str]) -> bool:
    name = _lower(obj.class_name)
    return obj.kind == "annotation" and (name is None or name not in foreground)


def training_target(qfile: QuPathFile, shape: tuple[int, int], class_names: Sequence[str]) -> GeoJSONTarget:
    """Rasterise a QuPath file for training or scoring over an (H, W) image.

    Objects (see the module docstring) are painted with their class ids (:func:`class_ids`).
    Annotations that are not objects are regions: unclassified ones, QuPath's "Region*" and our
    export's "Corrected region" mark where the outlines are complete; "Ignore*" ones are taken out
    of them again. Outside the complete regions the labels are :data:`UNKNOWN_LABEL` (left out of
    the loss, as the widget's partial annotations are). A file without a region annotation is
    complete over the whole image (said in the notes).

    Raises:
        MaskInputError: objects outside the image, unknown class names, too many classes for
            partial annotations, or an annotation with a class that is neither a model class nor a region.
    """
    shape = (int(shape[0]), int(shape[1]))
    foreground = {_lower(n) for n in class_names[1:]}
    objects = [o for o in qfile.objects if o.polygons and not _is_region(o, foreground)]
    regions = [o for o in qfile.objects if o.polygons and _is_region(o, foreground)]
    other = sorted({o.class_name for o in regions
                    if _lower(o.class_name) not in REGION_CLASSES + IGNORE_CLASSES and o.class_name is not None})
    if other:
        raise MaskInputError(
            f"{qfile.source}: annotation class(es) {', '.join(repr(n) for n in other)} are neither one of the "
            f"classes ({', '.join(class_names)}) nor a region class. Outlines of objects: give them one of the "
            "classes; regions where the outlines are complete: leave them unclassified or class them 'Region*' "
            "('Ignore*' regions are left out).")
    notes = list(qfile.notes) + check_inside(qfile, shape, objects + regions)
    ids = class_ids(objects, class_names, qfile.source)
    instances = rasterize(objects, shape, np.arange(1, len(objects) + 1),
                          dtype=np.int32 if len(objects) >= 65535 else None)
    lookup = np.concatenate([[0], ids]).astype(np.uint8 if len(class_names) <= 256 else np.uint16)
    labels = lookup[instances]
    complete = [o for o in regions if _lower(o.class_name) not in IGNORE_CLASSES]
    ignored = [o for o in regions if _lower(o.class_name) in IGNORE_CLASSES]
    if complete:
        known = rasterize(complete, shape, np.ones(len(complete), np.uint8)).astype(bool)
        notes.append(f"{qfile.source}: {len(complete)} region annotation(s) mark where the outlines are complete; "
                     f"{known.mean():.0%} of the image")
    else:
        known = np.ones(shape, bool)
        notes.append(f"{qfile.source}: no region annotation, so the whole image is taken as completely outlined")
    if ignored:
        known &= ~rasterize(ignored, shape, np.ones(len(ignored), np.uint8)).astype(bool)
    if not known.all():
        if len(class_names) >= UNKNOWN_LABEL:
            raise MaskInputError(f"{qfile.source}: partial annotations need fewer than {UNKNOWN_LABEL} classes.")
        labels = labels.copy()
        labels[~known] = UNKNOWN_LABEL
        instances = np.where(known, instances, 0)
    return GeoJSONTarget(labels=labels, instances=instances, known=known, notes=notes)


def read_target(path: str | Path, shape: tuple[int, int], class_names: Sequence[str]) -> GeoJSONTarget:
    """:func:`training_target` of a GeoJSON file."""
    return training_target(read_geojson(path), shape, class_names)
