"""`genselfdiff segment` on whole slides, locally and over a Dask distributed LocalCluster."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from napari_genselfdiff.cli.main import main
from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.slide import SlideSettings
from napari_genselfdiff.core.io.labels_store import open_labels_store
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

TILE = ["--tile", "128", "--overlap", "16", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_slides")
    write_synthetic_slide(root / "one.svs", 384, 512, mpp=0.25, tissue_fraction=0.5, tile=128, n_levels=2, seed=1)
    write_synthetic_slide(root / "two.ome.tif", 384, 512, mpp=0.5, flavour="ome", tissue_fraction=0.5, tile=128,
                          n_levels=2, seed=2)
    (root / "broken.svs").write_bytes(b"II*\x00" + b"\x00" * 64)
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_slide_writes_the_store_and_geojson(slide_dir, tmp_path, make_model, capsys):
    _, _, model = make_model()
    code, out, err = run_cli(capsys, "segment", slide_dir / "one.svs", "--model", model, "--out", tmp_path / "res",
                             "--instances", "--region", "0,0,256,192", *TILE)
    assert code == 0, err
    assert "one.svs: 512x384 px at 0.25 um/px" in out and "one_labels.zarr" in out
    store = open_labels_store(tmp_path / "res" / "one_labels.zarr")
    assert store.complete and store.level0.shape == (384, 512)
    doc = json.loads((tmp_path / "res" / "one_nuclei.geojson").read_text())
    assert doc["properties"]["mpp"] == 0.25
    for feature in doc["features"]:
        xs = [p[0] for p in feature["geometry"]["coordinates"][0]] if feature["geometry"]["type"] == "Polygon" else [0]
        assert 0 <= min(xs) and max(xs) <= 256
    # Again without --overwrite: refused, nothing replaced.
    code, _, err = run_cli(capsys, "segment", slide_dir / "one.svs", "--model", model, "--out", tmp_path / "res", *TILE)
    assert code == 1 and "exists; pass --overwrite" in err


def test_bad_slides_are_reported_and_the_others_finished(slide_dir, tmp_path, make_model, capsys):
    _, _, model = make_model()
    code, out, err = run_cli(capsys, "segment", slide_dir, "--model", model, "--out", tmp_path / "res",
                             "--region", "0,0,128,128", *TILE)
    assert code == 1
    assert "broken.svs: cannot be read as a whole-slide image" in err
    assert "1 of 3 input(s) failed" in err
    assert (tmp_path / "res" / "one_labels.zarr").is_dir() and (tmp_path / "res" / "two_labels.zarr").is_dir()
    code, _, err = run_cli(capsys, "segment", slide_dir / "one.svs", "--model", model, "--out", tmp_path / "r2",
                           "--region", "500,0,100,100", *TILE)
    assert code == 1 and "outside the slide" in err
    assert not (tmp_path / "r2" / "one_labels.zarr").exists()


def test_mpp_flag_gives_a_resolution_to_a_slide_without_one(tmp_path, make_model, capsys):
    _, _, model = make_model()
    path = write_synthetic_slide(tmp_path / "nores.tif", 256, 256, flavour="none", tile=128, n_levels=2).path
    code, _, err = run_cli(capsys, "segment", path, "--model", model, "--out", tmp_path / "o", *TILE)
    assert code == 1 and "no usable resolution" in err and "--mpp" in err
    code, out, err = run_cli(capsys, "segment", path, "--model", model, "--out", tmp_path / "o", "--mpp", "0.25", *TILE)
    assert code == 0, err
    assert open_labels_store(tmp_path / "o" / "nores_labels.zarr").mpp == 0.25


def test_slides_over_a_local_dask_cluster_of_two_workers(slide_dir, tmp_path, make_model):
    from napari_genselfdiff.core.inference.slide_cluster import segment_slides_on_cluster

    _, _, model = make_model()
    settings = SlideSettings(inference=InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16),
                             region=(0, 0, 128, 128))
    slides = [slide_dir / "one.svs", slide_dir / "broken.svs", slide_dir / "two.ome.tif"]
    seen = []
    reports = segment_slides_on_cluster(slides, model, tmp_path / "out", settings, workers=2, processes=False,
                                        on_result=seen.append)
    assert len(reports) == 3 and seen == reports
    by_name = {r["slide"].split("/")[-1]: r for r in reports}
    assert not by_name["broken.svs"]["ok"] and "cannot be read" in by_name["broken.svs"]["error"]
    assert by_name["one.svs"]["ok"] and by_name["two.ome.tif"]["ok"]
    for stem in ("one", "two"):
        store = open_labels_store(tmp_path / "out" / f"{stem}_labels.zarr")
        assert store.complete and np.asarray(store.level0).shape == (384, 512)


def test_cli_workers_flag_runs_on_a_cluster(slide_dir, tmp_path, make_model, capsys, monkeypatch):
    from napari_genselfdiff.core.inference import slide_cluster

    calls = {}

    def fake(slides, model_path, out_dir, settings, **kw):
        calls.update(kw, slides=list(slides), model=model_path)
        reports = [{"slide": slides[0], "ok": False, "error": f"{slides[0]}: boom"}]
        for r in reports:
            kw["on_result"](r)
        return reports

    monkeypatch.setattr(slide_cluster, "segment_slides_on_cluster", fake)
    _, _, model = make_model()
    code, out, err = run_cli(capsys, "segment", slide_dir / "one.svs", "--model", model, "--out", tmp_path,
                             "--scheduler", "tcp://127.0.0.1:1", *TILE)
    assert code == 1 and "boom" in err and "scheduler tcp://127.0.0.1:1" in out
    assert calls["scheduler"] == "tcp://127.0.0.1:1" and calls["model"].endswith("model.safetensors")


def test_the_real_cli_cluster_path_with_threads(slide_dir, tmp_path, make_model, capsys, monkeypatch):
    from napari_genselfdiff.core.inference import slide_cluster

    monkeypatch.setattr(slide_cluster, "segment_slides_on_cluster",
                        functools.partial(slide_cluster.segment_slides_on_cluster, processes=False))
    _, _, model = make_model()
    code, out, err = run_cli(capsys, "segment", slide_dir / "one.svs", slide_dir / "broken.svs", "--model", model,
                             "--out", tmp_path / "o", "--workers", "2", "--region", "0,0,128,128", *TILE)
    assert code == 1, err
    assert "one.svs: 512x384 px" in out and "broken.svs: cannot be read" in err
    assert (tmp_path / "o" / "one_labels.zarr").is_dir()


@pytest.mark.gui
def test_napari_opens_a_slide_and_its_labels_store_as_multiscale_layers(slide_dir, tmp_path, make_model,
                                                                         make_napari_viewer):
    from napari_genselfdiff.core.inference.slide import segment_slide

    net, info, _ = make_model()
    result = segment_slide(net, info, slide_dir / "two.ome.tif", tmp_path,
                           SlideSettings(inference=InferenceSettings(device="cpu", tile=128, overlap=16),
                                         region=(0, 0, 128, 128)))
    viewer = make_napari_viewer()
    [image] = viewer.open(str(slide_dir / "two.ome.tif"), plugin="napari-genselfdiff")
    assert image.multiscale and image.rgb and tuple(image.scale) == (0.5, 0.5)
    assert [tuple(level.shape) for level in image.data] == [(384, 512, 3), (96, 128, 3)]
    assert image.metadata["genselfdiff"]["slide"]["mpp_source"] == "file: OME PhysicalSizeX"
    [labels] = viewer.open(str(result.labels_store), plugin="napari-genselfdiff")
    assert labels._type_string == "labels" and tuple(labels.scale) == (0.5, 0.5)
    assert (labels.data[0] if labels.multiscale else labels.data).shape == (384, 512)
    # The labels lie over the slide: same world extent.
    np.testing.assert_allclose(labels.extent.world, image.extent.world[:, :2])


@pytest.mark.gui
def test_slide_widget_segments_a_drawn_rectangle_exactly_there(slide_dir, tmp_path, make_model, make_napari_viewer,
                                                               monkeypatch):
    from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget

    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    _, _, model = make_model()
    viewer = make_napari_viewer()
    [image] = viewer.open(str(slide_dir / "one.svs"), plugin="napari-genselfdiff")
    # A rectangle in world coordinates (microns at 0.25 um/px): level-0 rows 40..140, columns 60..260.
    viewer.add_shapes([[[10.0, 15.0], [10.0, 65.0], [35.0, 65.0], [35.0, 15.0]]], shape_type="rectangle",
                      name="regions")
    widget = SlideSegmentWidget(viewer)
    assert widget.slide_combo.currentText() == image.name
    widget.model_edit.setText(str(model))
    widget.out_edit.setText(str(tmp_path))
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("regions")
    assert widget.region(image, None) == (60, 40, 200, 100)
    widget.segment_button.click()
    result = widget.last_result
    assert result is not None, widget.status.text()
    labels_layer = viewer.layers[f"{image.name} labels"]
    assert tuple(labels_layer.scale) == tuple(image.scale)
    labels = np.asarray(open_labels_store(result.labels_store).level0)
    inside = labels[40:140, 60:260].copy()
    labels[40:140, 60:260] = 0
    assert not labels.any() and inside.any()
    # No shapes: a sentence, no run.
    viewer.layers["regions"].data = []
    widget.segment_button.click()
    assert "has no shapes" in widget.status.text()
    assert widget.mpp_edit.text() == "0.25"  # from the file
    widget.mpp_edit.setText("abc")
    widget.scope_combo.setCurrentText("Whole slide")
    widget.segment_button.click()
    assert "not a positive number" in widget.status.text()


def test_slide_only_options_on_plain_images_are_refused_or_said(tmp_path, make_model, he_image, capsys):
    """--region on plain images only is refused before any work; the other slide-only options are named in a note
    (they were once ignored without a word)."""
    from PIL import Image

    _, _, model = make_model("micro")
    Image.fromarray(he_image(40, 48, seed=3)).save(tmp_path / "a.png")
    code, out, err = run_cli(capsys, "segment", tmp_path / "a.png", "--model", model, "--out", tmp_path / "r",
                             "--region", "0,0,16,16", *TILE)
    assert code == 2 and "--region selects a rectangle of a whole slide" in err and "crop the image" in err
    assert not (tmp_path / "r" / "a_labels.tif").exists()
    code, out, err = run_cli(capsys, "segment", tmp_path / "a.png", "--model", model, "--out", tmp_path / "n",
                             "--no-tissue-mask", "--restart", *TILE)
    assert code == 0, err
    assert "note: --no-tissue-mask, --restart apply to whole slides only; the 1 plain image(s) are segmented whole" in out
    assert (tmp_path / "n" / "a_labels.tif").exists()
    code, out, _ = run_cli(capsys, "segment", tmp_path / "a.png", "--model", model, "--out", tmp_path / "p", *TILE)
    assert code == 0 and "whole slides only" not in out
