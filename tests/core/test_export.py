"""Export: TIFF/PNG masks re-read equal, classes.json, QuPath GeoJSON that rasterises back to the objects,
and no file replaced without permission."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from napari_genselfdiff.core.annotations import AnnotationSet
from napari_genselfdiff.core.export import (
    ExportError,
    ExportItem,
    OverwriteRefused,
    export_annotation_set,
    export_items,
    labels_to_geojson,
    rasterize_geometry,
    read_classes_json,
)
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.model_files import default_classes

CLASSES = default_classes(["background", "nucleus", "stroma"])
SAMPLE = Path(__file__).resolve().parents[2] / "napari_genselfdiff" / "samples" / "he_nuclei_512.png"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@functools.lru_cache(maxsize=1)
def _sample_objects():
    """Nuclei of the real H&E sample (dark haematoxylin, split by watershed) as labels + instances."""
    from napari_genselfdiff.core.inference.instances import label_instances

    rgb = read_array(SAMPLE)[..., :3].astype(np.float32)
    nuclei = rgb.mean(-1) < 120
    instances = label_instances(nuclei)
    labels = np.where(instances > 0, 1, 0).astype(np.uint8)
    labels[(labels == 0) & (rgb[..., 0] > 200) & (rgb.mean(-1) < 215)] = 2  # some "stroma"
    return labels, instances


def test_single_pixel_coordinates_follow_qupath():
    labels = np.zeros((5, 6), np.uint8)
    labels[2, 3] = 1
    feature = labels_to_geojson(labels, CLASSES)["features"][0]
    # pixel (row 2, column 3) is the square x in [3, 4], y in [2, 3]
    assert feature["geometry"] == {"type": "Polygon", "coordinates": [[[3, 2], [4, 2], [4, 3], [3, 3], [3, 2]]]}
    assert feature["properties"] == {
        "objectType": "detection", "classification": {"name": "nucleus", "color": list(CLASSES[1].color[:3])}
    }


def test_holes_and_multipart_objects():
    labels = np.zeros((20, 20), np.uint8)
    labels[2:12, 2:12] = 1
    labels[5:8, 5:8] = 0  # a hole
    labels[14:17, 14:17] = 2
    fc = labels_to_geojson(labels, CLASSES, object_type="annotation")
    ring = next(f for f in fc["features"] if f["properties"]["classification"]["name"] == "nucleus")
    assert ring["geometry"]["type"] == "Polygon" and len(ring["geometry"]["coordinates"]) == 2  # exterior + hole
    assert ring["properties"]["objectType"] == "annotation"
    assert np.array_equal(rasterize_geometry(ring["geometry"], labels.shape), labels == 1)
    # one instance in two pieces (touching only at a corner) -> MultiPolygon
    instances = np.zeros((6, 6), np.uint16)
    instances[1, 1] = instances[2, 2] = 1
    fc = labels_to_geojson((instances > 0).astype(np.uint8), CLASSES, instances=instances)
    geometry = fc["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    assert np.array_equal(rasterize_geometry(geometry, instances.shape), instances == 1)


def test_geojson_polygons_rasterise_back_to_the_objects_of_a_real_image():
    labels, instances = _sample_objects()
    fc = labels_to_geojson(labels, CLASSES, instances=instances)
    assert len(fc["features"]) == instances.max() > 50
    ious = [
        _iou(rasterize_geometry(f["geometry"], labels.shape), instances == value)
        for value, f in enumerate(fc["features"], start=1)
    ]
    assert min(ious) >= 0.95, min(ious)
    # without instances: every 4-connected region of each class is one object (on a crop, for speed)
    labels = labels[:160, :160]
    by_class = labels_to_geojson(labels, CLASSES)
    rebuilt = np.zeros_like(labels)
    names = {c.name: c.id for c in CLASSES}
    for f in by_class["features"]:
        rebuilt[rasterize_geometry(f["geometry"], labels.shape)] = names[f["properties"]["classification"]["name"]]
    assert np.array_equal(rebuilt, labels)


def test_export_files_reread_equal(tmp_path):
    labels, instances = _sample_objects()
    report = export_items(tmp_path / "out", [ExportItem("slide_1", labels, CLASSES, instances)])
    names = sorted(p.name for p in report.written)
    assert names == sorted([
        "slide_1_labels.tif", "slide_1_instances.tif", "slide_1_labels.png", "slide_1_instances.png",
        "slide_1.geojson", "classes.json",
    ])
    out = tmp_path / "out"
    for name, expected in (("slide_1_labels.tif", labels), ("slide_1_labels.png", labels),
                           ("slide_1_instances.tif", instances), ("slide_1_instances.png", instances)):
        got = read_array(out / name)
        assert got.shape == expected.shape and np.array_equal(got, expected), name
    assert read_classes_json(out / "classes.json") == CLASSES
    geo = json.loads((out / "slide_1.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == instances.max()


def test_never_overwrites_without_permission(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[2:5, 2:5] = 1
    item = ExportItem("a", labels, CLASSES)
    export_items(tmp_path, [item], formats=("tif", "png"))
    before = (tmp_path / "a_labels.tif").read_bytes()
    changed = ExportItem("a", labels * 2, CLASSES)
    with pytest.raises(OverwriteRefused) as refused:
        export_items(tmp_path, [changed], formats=("tif", "png", "geojson"))
    assert sorted(p.name for p in refused.value.paths) == ["a_labels.png", "a_labels.tif"]
    assert "Nothing was written" in str(refused.value)
    assert (tmp_path / "a_labels.tif").read_bytes() == before and not (tmp_path / "a.geojson").exists()
    export_items(tmp_path, [changed], formats=("tif", "png", "geojson"), overwrite=True)
    assert read_array(tmp_path / "a_labels.tif").max() == 2
    # a classes.json with other classes is a conflict too
    other = ExportItem("b", labels, default_classes(["background", "gland"]))
    with pytest.raises(OverwriteRefused, match="classes.json"):
        export_items(tmp_path, [other], formats=("tif",))


def test_unwritable_folder_and_empty_set(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    labels = np.ones((4, 4), np.uint8)
    with pytest.raises(ExportError, match="cannot write to the export folder"):
        export_items(blocker / "out", [ExportItem("a", labels, CLASSES)])
    with pytest.raises(ExportError, match="annotation set is empty"):
        export_annotation_set(AnnotationSet(tmp_path / "set"), tmp_path / "out")


def test_export_annotation_set(tmp_path):
    aset = AnnotationSet(tmp_path / "set")
    rng = np.random.default_rng(0)
    for name in ("slide 1", "slide 1", "slide/2"):
        aset.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), (rng.random((16, 16)) > 0.5).astype(np.uint8),
                 name=name, classes=CLASSES)
    report = export_annotation_set(aset, tmp_path / "out", formats=("tif",))
    assert sorted(p.name for p in report.written) == [
        "classes.json", "slide_1_0002_labels.tif", "slide_1_labels.tif", "slide_2_labels.tif"
    ]
    assert np.array_equal(read_array(tmp_path / "out" / "slide_2_labels.tif"), aset.load("0003")[1])


def _pixel_squares(mask: np.ndarray):
    """The union of a mask's pixel squares as a shapely geometry (the exact area a polygon must cover)."""
    from shapely.geometry import box
    from shapely.ops import unary_union

    rows, cols = np.nonzero(mask)
    return unary_union([box(c, r, c + 1, r + 1) for r, c in zip(rows.tolist(), cols.tolist())])


def _check_valid_and_exact(features, objects: dict[int, np.ndarray]) -> None:
    """Every feature's geometry is a valid simple (Multi)Polygon covering exactly its object's pixels."""
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    assert len(features) == len(objects)
    for feature, (value, mask) in zip(features, objects.items()):
        geometry = shape(feature["geometry"])
        assert geometry.is_valid, (value, explain_validity(geometry))
        for polygon in getattr(geometry, "geoms", [geometry]):
            for ring in [polygon.exterior, *polygon.interiors]:
                assert ring.is_simple, (value, list(ring.coords))  # no ring passes a point twice
        assert geometry.area == mask.sum()
        assert geometry.symmetric_difference(_pixel_squares(mask)).area == 0, value
        assert np.array_equal(rasterize_geometry(feature["geometry"], mask.shape), mask), value


def test_objects_touching_themselves_at_a_corner_are_valid_polygons():
    """A C shape whose tips meet diagonally, a ring closed only at a corner, a hole touching the edge
    at a corner, two holes meeting at a corner: each a valid simple polygon of exactly its pixels."""
    pytest.importorskip("shapely")
    cases = {
        "C closed diagonally": ["#####.", "#...#.", "#....#", "#...#.", "#####."],
        "ring closed at a corner": ["####.", "#..#.", "#...#", "####."],
        "two holes meeting at a corner": ["######", "#.####", "##.###", "######"],
        "staircase around a hole": [".###..", "##.##.", "#...##", "##.##.", ".###.."],
        "diagonal chain in one part": ["##...", "#.#..", "##.#.", "...##"],
    }
    for name, rows in cases.items():
        mask = np.array([[ch == "#" for ch in row] for row in rows])
        labels = np.pad(mask, 1).astype(np.uint8)
        features = labels_to_geojson(labels, CLASSES)["features"]
        from scipy import ndimage

        parts, n = ndimage.label(labels == 1)
        _check_valid_and_exact(features, {k: parts == k for k in range(1, n + 1)})


def test_every_exported_polygon_is_valid_on_random_and_real_objects():
    """shapely's is_valid on every feature: random blobs (many diagonal contacts) and the real sample's
    nuclei; each polygon still covers exactly its object's pixels (the round trip)."""
    pytest.importorskip("shapely")
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        noise = ndimage.gaussian_filter(rng.normal(size=(48, 48)), 1.2)
        labels = (noise > 0.05).astype(np.uint8) + (noise < -0.15).astype(np.uint8) * 2
        features = labels_to_geojson(labels, CLASSES)["features"]
        objects = {}
        for cls in (1, 2):
            regions, n = ndimage.label(labels == cls)
            objects.update({(cls, k): regions == k for k in range(1, n + 1)})
        _check_valid_and_exact(features, objects)
    labels, instances = _sample_objects()
    features = labels_to_geojson(labels, CLASSES, instances=instances)["features"]
    _check_valid_and_exact(features, {v: instances == v for v in range(1, int(instances.max()) + 1)})


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder that takes no files)")
def test_a_system_folder_that_exists_is_said_to_be_unwritable_not_missing():
    """/proc exists but takes no new file (even for root); the message once said "No such file or
    directory"."""
    with pytest.raises(ExportError) as caught:
        export_items("/proc", [ExportItem("a", np.ones((4, 4), np.uint8), CLASSES)])
    message = str(caught.value)
    assert "permission denied" in message and "the folder exists" in message and "folder of your own" in message
    assert "No such file" not in message


def test_permission_and_read_only_errors_are_named(tmp_path, monkeypatch):
    import errno
    import os
    import tempfile

    def refuse(code):
        def mkstemp(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return mkstemp

    for code, words in ((errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")):
        monkeypatch.setattr(tempfile, "mkstemp", refuse(code))
        with pytest.raises(ExportError, match=words):
            export_items(tmp_path, [ExportItem("a", np.ones((4, 4), np.uint8), CLASSES)])


def test_auto_object_type_follows_the_model_classes():
    """Gland objects become QuPath annotations classified "Gland"; nuclei stay detections."""
    from napari_genselfdiff.core.export.geojson import object_type_of
    from napari_genselfdiff.core.model_files.classes import ClassInfo

    labels = np.zeros((10, 10), np.uint8)
    labels[1:4, 1:4], labels[6:9, 6:9] = 1, 2
    classes = [ClassInfo(0, "background", (0, 0, 0, 0)), ClassInfo(1, "nucleus", (255, 215, 0, 255)),
               ClassInfo(2, "Gland", (0, 160, 255, 255))]
    features = labels_to_geojson(labels, classes)["features"]  # object_type "auto" by default
    kinds = {f["properties"]["classification"]["name"]: f["properties"]["objectType"] for f in features}
    assert kinds == {"nucleus": "detection", "Gland": "annotation"}
    forced = labels_to_geojson(labels, classes, object_type="detection")["features"]
    assert {f["properties"]["objectType"] for f in forced} == {"detection"}
    assert object_type_of("gland") == "annotation" and object_type_of("Tumor") == "detection"
    with pytest.raises(ValueError, match="object_type"):
        labels_to_geojson(labels, classes, object_type="cell")
