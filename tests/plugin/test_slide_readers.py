"""The napari slide reader: a slide opens as a multiscale layer at its resolution."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_napari_reader_gives_a_multiscale_layer_with_the_resolution(slides):
    from napari.layers import Image

    from napari_genselfdiff.plugin._reader import get_image_reader
    from napari_genselfdiff.plugin._slide_reader import get_slide_reader

    assert get_image_reader(str(slides["ome"])) is None  # the flat reader leaves slides alone
    reader = get_slide_reader(str(slides["ome"]))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(slides["ome"]))
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert [d.shape for d in data] == [(600, 800, 3), (150, 200, 3)]
    assert kwargs["scale"] == (0.5, 0.5)
    meta = kwargs["metadata"]["genselfdiff"]["slide"]
    assert meta["mpp"] == 0.5 and meta["mpp_source"] == "file: OME PhysicalSizeX"
    layer = Image(data, **kwargs)
    assert layer.multiscale and tuple(layer.scale) == (0.5, 0.5)
    _, no_res, _ = get_slide_reader(str(slides["none"]))(str(slides["none"]))[0]
    assert no_res["scale"] == (1.0, 1.0) and "resolution unknown" in no_res["metadata"]["genselfdiff"]["slide"]["notes"][-1]
