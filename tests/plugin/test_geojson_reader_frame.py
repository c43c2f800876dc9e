"""The napari GeoJSON reader's frame: a QuPath file beside its slide is placed on the slide's level-0
pixels at the slide's microns per pixel (moved here from tests/core, which imports no plugin module)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_genselfdiff.core.annotations.qupath import read_geojson
from napari_genselfdiff.core.export.geojson import labels_to_geojson
from napari_genselfdiff.core.io.slide import Slide
from napari_genselfdiff.core.model_files.classes import default_classes


def test_a_geojson_beside_the_real_slide_takes_its_level0_frame(requires_data, tmp_path):
    from napari_genselfdiff.plugin._geojson_reader import find_image_frame

    path = requires_data("slides", "CMU-1-Small-Region.svs")
    slide = Slide(path)
    h, w = slide.levels[0].height, slide.levels[0].width
    inst = np.zeros((h, w), np.int64)
    inst[700:720, 900:930] = 1  # one object at its level-0 place
    file = tmp_path / "CMU-1-Small-Region.geojson"
    file.write_text(json.dumps(labels_to_geojson((inst > 0).astype(np.uint8), default_classes(["background", "nucleus"]),
                                                 instances=inst)))
    (tmp_path / path.name).symlink_to(path)  # the slide beside the file
    frame = find_image_frame(file, read_geojson(file))
    assert frame["shape"] == (h, w) and frame["mpp"] == pytest.approx(slide.mpp)
