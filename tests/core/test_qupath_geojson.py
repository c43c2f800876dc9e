"""QuPath GeoJSON in (core/annotations/qupath.py): our export read back pixel for pixel, QuPath's own
format quirks, training targets with complete regions, scoring against GeoJSON, and clear refusals."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from napari_genselfdiff.core.annotations.qupath import (
    lazy_levels,
    parse_geojson,
    rasterize,
    read_geojson,
    read_target,
    training_target,
)
from napari_genselfdiff.core.annotations.regions import UNKNOWN_LABEL
from napari_genselfdiff.core.data.sources import load_pairs
from napari_genselfdiff.core.errors import MaskInputError
from napari_genselfdiff.core.export.geojson import labels_to_geojson
from napari_genselfdiff.core.export.masks import ExportItem, export_items
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.metrics.evaluation import evaluate_dirs
from napari_genselfdiff.core.model_files.classes import default_classes

SAMPLES = Path(__file__).resolve().parents[2] / "napari_genselfdiff" / "samples"
CLASSES = default_classes(["background", "nucleus"])
FOUR = ndimage.generate_binary_structure(2, 1)


@pytest.fixture(scope="module")
def sample_instances() -> np.ndarray:
    return read_array(SAMPLES / "he_nuclei_512_instances.png").astype(np.int64)


def _ids(qfile):
    return np.arange(1, len(qfile.objects) + 1)


# ------------------------------------------------------------------------------------------ round trip


def test_export_then_read_gives_the_same_instances_pixel_for_pixel(sample_instances):
    inst = sample_instances
    collection = labels_to_geojson((inst > 0).astype(np.uint8), CLASSES, instances=inst)
    qfile = parse_geojson(json.loads(json.dumps(collection)))
    assert len(qfile.objects) == len(np.unique(inst)) - 1 > 100
    back = rasterize(qfile.objects, inst.shape, _ids(qfile))
    assert np.array_equal(back, relabel_sequential(inst)[0])
    # the lazy pyramid paints the same level 0, chunk by chunk
    levels = lazy_levels(qfile.objects, _ids(qfile), inst.shape, chunk=96, smallest=64)
    assert [lv.shape for lv in levels] == [(512, 512), (128, 128), (32, 32)]
    assert np.array_equal(np.asarray(levels[0]), back)


def test_class_regions_with_holes_and_diagonal_touches_read_back_exactly(sample_instances):
    # class regions (no instances): merged touching nuclei, plus a ring with a hole, a C shape whose
    # tips touch diagonally (traced as a hole touching the outer ring) and a two-part object
    labels = (sample_instances > 0).astype(np.uint8)
    labels[400:440, 20:60] = 2
    labels[410:430, 30:50] = 0  # a hole
    labels[450:470, 100:120] = 2
    labels[455:465, 105:121] = 0
    labels[454, 120] = 0
    labels[465, 121] = 2  # diagonal to (464, 120)
    qfile = parse_geojson(labels_to_geojson(labels, default_classes(["background", "nucleus", "tumor"])))
    target = training_target(qfile, labels.shape, ["background", "Nucleus", "TUMOR"])
    assert np.array_equal(target.labels, labels)
    assert target.known.all() and "whole image is taken as completely outlined" in target.notes[-1]
    regions = ndimage.label(labels > 0, structure=FOUR)[0]
    assert target.instances.max() == len(qfile.objects) >= regions.max()


def test_partial_export_reads_back_as_the_same_training_mask(tmp_path, sample_instances):
    inst = sample_instances
    labels = (inst > 0).astype(np.uint8)
    known = np.zeros(inst.shape, bool)
    known[50:300, 40:260] = True
    known[350:500, 300:480] = True
    export_items(tmp_path, [ExportItem("he", labels, CLASSES, instances=inst, known=known)], formats=("tif", "geojson"))
    from_tif = read_array(tmp_path / "he_labels.tif")
    target = read_target(tmp_path / "he.geojson", inst.shape, ["background", "nucleus"])
    assert np.array_equal(target.known, known)
    assert np.array_equal(target.labels, from_tif)  # 255 outside the corrected regions, as the export's mask
    assert (target.labels == UNKNOWN_LABEL).sum() == (~known).sum()


@pytest.mark.data
def test_round_trip_on_the_real_slide_in_level0_pixels(requires_data, tmp_path):
    from skimage.filters import threshold_otsu

    from napari_genselfdiff.core.io.slide import Slide

    path = requires_data("slides", "CMU-1-Small-Region.svs")
    slide = Slide(path)
    h, w = slide.levels[0].height, slide.levels[0].width
    y0, x0, size = 700, 900, 640
    red = slide.read_region(x0, y0, size, size)[..., 0].astype(float)
    nuclei = ndimage.binary_opening(red < threshold_otsu(red), iterations=2)  # dark (haematoxylin) tissue
    inst = np.zeros((h, w), np.int64)
    inst[y0:y0 + size, x0:x0 + size] = ndimage.label(nuclei, structure=FOUR)[0]
    assert inst.max() > 100  # real shapes of the slide (holes, touching parts), placed at their level-0 position
    collection = labels_to_geojson((inst > 0).astype(np.uint8), CLASSES, instances=inst)
    file = tmp_path / "CMU-1-Small-Region.geojson"
    file.write_text(json.dumps(collection))
    qfile = read_geojson(file)
    back = rasterize(qfile.objects, (h, w), _ids(qfile))
    assert np.array_equal(back, relabel_sequential(inst)[0])
    # the napari reader's frame of this file: tests/plugin/test_geojson_reader_frame.py


def test_scanline_fill_paints_what_skimage_paints_on_random_polygons():
    from skimage.draw import polygon as fill

    from napari_genselfdiff.core.annotations.qupath import QuPathObject

    rng = np.random.default_rng(7)
    objects, expected = [], []
    for k in range(60):  # star-shaped polygons with float vertices, some beyond the image's edges
        n = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(2, 25, n)
        centre = rng.uniform(-10, 110, 2)
        ring = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)
        objects.append(QuPathObject(kind="detection", polygons=[[ring]]))
        mask = np.zeros((90, 100), bool)
        rr, cc = fill(ring[:, 1] - 0.5, ring[:, 0] - 0.5, mask.shape)
        mask[rr, cc] = True
        expected.append(mask)
    ours = rasterize(objects, (90, 100), np.arange(1, 61))
    theirs = np.zeros((90, 100), np.int64)
    for k, mask in enumerate(expected, start=1):
        theirs[mask] = k  # later objects win
    assert np.array_equal(ours, theirs) and ours.any()
    # a window of the image paints the window's part
    assert np.array_equal(rasterize(objects, (30, 40), np.arange(1, 61), origin=(50, 35)), ours[50:80, 35:75])


# ---------------------------------------------------------------------------------- QuPath's quirks


def _square(x, y, s):
    return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]


def test_qupath_written_objects_read_with_their_quirks():
    """Features as QuPath's PathObjectTypeAdapter writes them (ids, isLocked, measurements, cells with a
    nucleusGeometry, derived classes as "names", colours as arrays or packed ints, legacy forms)."""
    cell_id = str(uuid.uuid4())
    features = [
        {"type": "Feature", "id": cell_id,
         "geometry": {"type": "Polygon", "coordinates": [_square(0, 0, 20)]},
         "nucleusGeometry": {"type": "Polygon", "coordinates": [_square(5, 5, 10)]},
         "properties": {"objectType": "cell", "isLocked": True,
                        "classification": {"names": ["Tumor", "Positive"], "color": [200, 0, 0]},
                        "measurements": {"Nucleus: Area": 100.0, "Cell: Max": "NaN"}}},
        {"type": "Feature", "id": "PathDetectionObject",  # v0.2: the type stood in the id
         "geometry": {"type": "MultiPolygon", "coordinates": [
             [_square(30, 0, 10), _square(33, 3, 4)], [_square(45, 0, 4)]], "plane": {"c": -1, "z": 0, "t": 0}},
         "properties": {"classification": {"name": "Stroma", "colorRGB": -16711936},  # packed 0xFF00FF00
                        "measurements": [{"name": "Area", "value": 84.0}]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(60, 0, 8)]},
         "properties": {"object_type": "detection", "classification": "Immune cells", "color": -65536,
                        "name": "lymphocyte 1"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(0, 0, 100)]},
         "properties": {"objectType": "tile"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(0, 30, 40)]},
         "properties": {"objectType": "annotation", "classification": {"name": "Region*", "color": [0, 0, 180, 128]},
                        "childObjects": [{"type": "Feature", "geometry": {"type": "Polygon",
                                          "coordinates": [_square(2, 32, 6)]},
                                          "properties": {"objectType": "detection"}}]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(90, 90, 5)]},
         "properties": {"objectType": "cell"}},  # a cell without a nucleus
    ]
    qfile = parse_geojson(json.loads(json.dumps(features)))  # a bare list (export without FeatureCollection)
    cell, multi, immune, region, child = qfile.objects
    assert cell.kind == "cell" and cell.id == cell_id and cell.locked
    assert cell.class_name == "Tumor: Positive" and cell.class_color == (200, 0, 0)
    assert cell.bounds == (5.0, 5.0, 15.0, 15.0)  # the nucleus, not the cell
    assert multi.kind == "detection" and multi.id is None and multi.class_color == (0, 255, 0)
    assert len(multi.polygons) == 2 and len(multi.polygons[0]) == 2
    assert immune.class_name == "Immune cells" and immune.color == (255, 0, 0) and immune.name == "lymphocyte 1"
    assert region.kind == "annotation" and region.class_color == (0, 0, 180)
    assert child.kind == "detection"
    assert any("tile" in n for n in qfile.notes) and any("without a nucleusGeometry" in n for n in qfile.notes)
    pixels = rasterize(qfile.objects[:3], (20, 70), [1, 2, 3])
    assert (pixels == 1).sum() == 100 and (pixels[5:15, 5:15] == 1).all()
    assert (pixels == 2).sum() == 100 - 16 + 16 and (pixels[3:7, 33:37] == 0).all()  # hole left empty
    assert (pixels == 3).sum() == 64
    # the same objects as one Feature and as a FeatureCollection
    assert parse_geojson(features[0]).objects[0].id == cell_id
    assert len(parse_geojson({"type": "FeatureCollection", "features": features}).objects) == 5


def test_training_target_matches_class_names_and_regions():
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(2, 2, 6)]},
         "properties": {"objectType": "detection", "classification": {"name": "Tumor", "color": [255, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(12, 2, 6)]},
         "properties": {"objectType": "annotation", "classification": {"name": "stroma", "color": [0, 255, 0]}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(0, 0, 20)]},
         "properties": {"objectType": "annotation"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(15, 15, 5)]},
         "properties": {"objectType": "annotation", "classification": {"name": "Ignore*", "color": [1, 1, 1]}}},
    ]
    target = training_target(parse_geojson(features), (30, 30), ["background", "tumor", "Stroma"])
    assert (target.labels[2:8, 2:8] == 1).all() and (target.labels[2:8, 12:18] == 2).all()  # hand-drawn annotation
    assert (target.labels[20:, :] == UNKNOWN_LABEL).all() and (target.labels[15:20, 15:20] == UNKNOWN_LABEL).all()
    assert target.known.sum() == 400 - 25
    with pytest.raises(MaskInputError, match=r"'Tumor' \(1\) are not among the classes \(background, nucleus\)"):
        training_target(parse_geojson(features[:1]), (30, 30), ["background", "nucleus"])
    unclassified = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(2, 2, 6)]},
                     "properties": {"objectType": "detection"}}]
    assert training_target(parse_geojson(unclassified), (10, 10), ["background", "nucleus"]).labels.sum() == 36
    with pytest.raises(MaskInputError, match="no classification"):
        training_target(parse_geojson(unclassified), (10, 10), ["background", "tumor", "stroma"])
    odd = [dict(features[2], properties={"objectType": "annotation", "classification": {"name": "Necrosis", "color": [1, 2, 3]}})]
    with pytest.raises(MaskInputError, match="'Necrosis' are neither one of the classes"):
        training_target(parse_geojson(odd + features[:1]), (30, 30), ["background", "tumor"])


# ------------------------------------------------------------------------------------- bad input


def test_bad_files_get_clear_messages(tmp_path, sample_instances):
    good = labels_to_geojson((sample_instances > 0).astype(np.uint8), CLASSES, instances=sample_instances)
    cut = tmp_path / "cut.geojson"
    cut.write_text(json.dumps(good)[:5000])
    with pytest.raises(MaskInputError, match=r"cut\.geojson: not valid JSON \(.* at line 1, column \d+\).*cut short"):
        read_geojson(cut)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(MaskInputError, match=r"empty\.geojson: holds no objects \(an empty collection\)"):
        read_geojson(empty)
    (tmp_path / "blank.geojson").write_text("\n")
    with pytest.raises(MaskInputError, match="the file is empty"):
        read_geojson(tmp_path / "blank.geojson")
    with pytest.raises(MaskInputError, match="not QuPath GeoJSON"):
        parse_geojson({"type": "Topology", "objects": {}})
    with pytest.raises(MaskInputError, match="no such file"):
        read_geojson(tmp_path / "missing.geojson")
    # coordinates outside the image: e.g. objects of a whole slide read against a crop of it
    far = tmp_path / "far.geojson"
    far.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(5000, 7000, 12)]},
         "properties": {"objectType": "detection"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(508, 10, 12)]},
         "properties": {"objectType": "detection"}}]}))
    with pytest.raises(MaskInputError, match=r"1 of 2 object\(s\) lie outside the image \(512x512 pixels; .*x 5000\.\.5012"):
        read_target(far, (512, 512), ["background", "nucleus"])


# ------------------------------------------------------------------------------ training and scoring


def test_training_folder_of_geojson_pairs_by_name(tmp_path, sample_instances):
    images, masks = tmp_path / "images", tmp_path / "qupath"
    images.mkdir()
    masks.mkdir()
    (images / "he.png").write_bytes((SAMPLES / "he_nuclei_512.png").read_bytes())
    collection = labels_to_geojson((sample_instances > 0).astype(np.uint8),
                                   default_classes(["background", "Nucleus"]), instances=sample_instances)
    collection["features"].append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[0, 0], [256, 0], [256, 512], [0, 512], [0, 0]]]}, "properties": {"objectType": "annotation"}})
    (masks / "he_labels.geojson").write_text(json.dumps(collection))
    data = load_pairs(num_classes=2, image_dir=images, mask_dir=masks, class_names=["background", "nucleus"])
    mask = data.masks[0]
    assert (mask[:, 256:] == UNKNOWN_LABEL).all()
    assert np.array_equal(mask[:, :256], (sample_instances[:, :256] > 0).astype(np.uint8))
    assert any("50% of the pixels corrected" in n for n in data.notes)


def test_evaluate_scores_against_geojson_ground_truth(tmp_path, sample_instances):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    from napari_genselfdiff.core.io.write import write_labels_tiff

    write_labels_tiff(pred / "he_instances.tif", sample_instances.astype(np.uint16))
    collection = labels_to_geojson((sample_instances > 0).astype(np.uint8), CLASSES, instances=sample_instances)
    (gt / "he.geojson").write_text(json.dumps(collection))
    result = evaluate_dirs(pred, gt, instances=True)
    assert not result["errors"] and result["per_image"]["he"]["aji"] == pytest.approx(1.0)
    # one nucleus missing from the ground truth lowers the score
    collection["features"] = collection["features"][1:]
    (gt / "he.geojson").write_text(json.dumps(collection))
    assert evaluate_dirs(pred, gt, instances=True)["per_image"]["he"]["f1"] < 1.0
    (gt / "he.geojson").write_text("{")
    assert "not valid JSON" in evaluate_dirs(pred, gt, instances=True)["errors"]["he"]
