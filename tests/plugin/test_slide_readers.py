"""The napari slide reader: a slide opens as a multiscale layer at its resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> dict[str, Path]:
    """Small slides of every flavour: 600 x 800 px, 40 % tissue, 2 levels."""
    root = tmp_path_factory.mktemp("slides")
    out = {}
    for flavour, name, mpp in [("aperio", "a.svs", 0.25), ("ome", "o.ome.tif", 0.5), ("tiff", "t.tif", 0.5),
                               ("none", "n.tif", None)]:
        out[flavour] = write_synthetic_slide(root / name, 600, 800, mpp=mpp or 0.25, flavour=flavour,
                                             tissue_fraction=0.4, tile=128, n_levels=2, seed=3).path
    return out


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
