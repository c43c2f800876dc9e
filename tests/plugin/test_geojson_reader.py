"""Dropping a QuPath GeoJSON on napari: detections/cells as one Labels layer over the image beside it,
annotations as Shapes, and a clear error for a broken file."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.segmentation import relabel_sequential

from napari_genselfdiff.core.io.read import read_array

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "napari_genselfdiff" / "samples"
sys.path.insert(0, str(ROOT / "benchmarks"))

from qupath_geojson import qupath_cells  # noqa: E402 - benchmarks/ is put on the path above


def test_qupath_cells_and_region_open_over_their_image(make_napari_viewer, tmp_path):
    from napari.layers import Labels, Shapes

    inst = read_array(SAMPLES / "he_nuclei_512_instances.png").astype(np.int64)
    shutil.copy(SAMPLES / "he_nuclei_512.png", tmp_path / "he.png")
    features = qupath_cells(inst)
    features.append({"type": "Feature", "id": "4f6c4f9e-2b7b-4d0a-9a52-1b2f1d9e0c11",
                     "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [300, 10], [300, 250], [10, 250], [10, 10]]]},
                     "properties": {"objectType": "annotation", "isLocked": True,
                                    "classification": {"name": "Region*", "color": [0, 0, 180]}}})
    (tmp_path / "he.geojson").write_text(json.dumps(features))  # a bare list: export without FeatureCollection

    viewer = make_napari_viewer()
    viewer.open(tmp_path / "he.png", plugin="napari-genselfdiff")
    layers = viewer.open(tmp_path / "he.geojson", plugin="napari-genselfdiff")
    objects = next(layer for layer in layers if isinstance(layer, Labels))
    region = next(layer for layer in layers if isinstance(layer, Shapes))
    assert objects.name == "he objects" and objects.data.shape == (512, 512)  # the frame of he.png
    assert np.array_equal(objects.data, relabel_sequential(inst)[0])  # each nucleus (not the cell) one id
    table = objects.features.set_index("index")
    k = int(objects.data[inst == inst.max()][0])
    assert table.loc[k, "class"] in ("Tumor", "Immune cells") and table.loc[k, "objectType"] == "cell"
    colour = objects.colormap.map(np.array([k]))[0]
    expected = (200, 0, 0) if table.loc[k, "class"] == "Tumor" else (160, 90, 160)
    assert np.allclose(colour[:3], np.array(expected) / 255, atol=1e-3)
    # QuPath corners (10, 10)..(300, 250) -> napari data coordinates of pixel centres
    assert region.nshapes == 1 and np.allclose(region.data[0].min(axis=0), [9.5, 9.5])
    assert np.allclose(region.data[0].max(axis=0), [249.5, 299.5]) and region.features["class"][0] == "Region*"


def test_broken_geojson_is_refused_with_its_reason(tmp_path):
    from napari_genselfdiff.core.errors import MaskInputError
    from napari_genselfdiff.plugin._geojson_reader import get_geojson_reader

    (tmp_path / "cut.geojson").write_text('{"type": "FeatureCollection", "features": [{"type": "Feat')
    reader = get_geojson_reader(str(tmp_path / "cut.geojson"))
    with pytest.raises(MaskInputError, match="not valid JSON .*line 1, column"):
        reader(str(tmp_path / "cut.geojson"))
    assert get_geojson_reader(str(tmp_path / "x.tif")) is None


def test_large_frames_open_as_a_lazy_pyramid_with_the_same_pixels(tmp_path, monkeypatch):
    from napari.layers import Labels

    from napari_genselfdiff.plugin import _geojson_reader

    inst = read_array(SAMPLES / "he_nuclei_512_instances.png").astype(np.int64)
    (tmp_path / "big.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": qupath_cells(inst, kind="detection")}))
    monkeypatch.setattr(_geojson_reader, "DENSE_PIXELS", 100_000)  # as if the objects spanned a whole slide
    data, kwargs, kind = _geojson_reader.read_geojson_layers(tmp_path / "big.geojson")[0]
    assert kind == "labels" and type(data).__module__.startswith("dask")  # painted chunk by chunk when shown
    extent = data.shape  # no image beside the file: from (0, 0) to the objects' far corner
    assert np.array_equal(np.asarray(data), relabel_sequential(inst)[0][: extent[0], : extent[1]])
    assert Labels(data, **kwargs).data is data
