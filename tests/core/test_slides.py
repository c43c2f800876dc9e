"""Whole-slide images: the lazy reader, resolution, tissue mask, slide segmentation to a zarr
store with GeoJSON nuclei, bad input. Every slide is written here by tifffile (core/io/synthetic_slide.py).

Fast tests use small slides (a few hundred pixels, the "micro" network, 128-pixel tiles); the one slow
test writes a 20480 x 20480 slide and only reads regions and the tissue mask.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from napari_genselfdiff.core.inference import InferenceSettings, segment
from napari_genselfdiff.core.inference.slide import (
    ResampledView,
    SlideSettings,
    SlideWriteError,
    model_mpp,
    segment_slide,
)
from napari_genselfdiff.core.io.labels_store import open_labels_store
from napari_genselfdiff.core.io.slide import Slide, SlideError, is_slide
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide
from napari_genselfdiff.core.tissue import tissue_mask

FAST = InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16)


# -- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flavour, mpp, source",
    [("aperio", 0.25, "Aperio MPP"), ("ome", 0.5, "OME PhysicalSizeX"), ("tiff", 0.5, "TIFF resolution tags"),
     ("none", None, None)],
)
def test_slide_levels_and_resolution_from_the_file(slides, flavour, mpp, source):
    with Slide(slides[flavour]) as slide:
        assert (slide.height, slide.width) == (600, 800)
        assert [(lv.height, lv.width) for lv in slide.levels] == [(600, 800), (150, 200)]
        assert slide.levels[1].downsample == pytest.approx(4.0)
        assert slide.mpp == (pytest.approx(mpp) if mpp else None)
        assert (slide.mpp_source or "").endswith(source or "")
        level1 = slide.level_array(1)
        assert not isinstance(level1, np.ndarray)  # lazy
        region = slide.read_region(10, 20, 30, 40, level=0)
        assert region.shape == (40, 30, 3) and region.dtype == np.uint8
        np.testing.assert_array_equal(region, np.asarray(slide.level_array(0)[20:60, 10:40, :3]))
        assert [a.shape for a in slide.dask_levels()] == [(600, 800, 3), (150, 200, 3)]


def test_missing_resolution_is_a_clear_error_only_when_needed(slides, tmp_path, make_model):
    with Slide(slides["none"]) as slide:
        assert slide.mpp is None  # it opens for viewing
        with pytest.raises(SlideError, match="no usable resolution.*--mpp"):
            slide.require_mpp()
    with Slide(slides["none"], mpp=0.5) as slide:
        assert slide.require_mpp() == 0.5 and slide.mpp_source == "given"
    net, info, _ = make_model()
    with pytest.raises(SlideError, match="--mpp"):
        segment_slide(net, info, slides["none"], tmp_path / "out", SlideSettings(inference=FAST))
    assert not (tmp_path / "out").exists()  # nothing started


def test_unreadable_and_unsupported_slides(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(SlideError, match="broken.svs: cannot be read as a whole-slide image"):
        Slide(bad)
    mrxs = tmp_path / "x.mrxs"
    mrxs.write_bytes(b"")
    with pytest.raises(SlideError, match="MIRAX.*OME-TIFF"):
        Slide(mrxs)
    with pytest.raises(SlideError, match="no such file"):
        Slide(tmp_path / "missing.svs")


def test_implausible_resolution_is_ignored_with_a_note(tmp_path):
    import tifffile

    path = tmp_path / "dpi.tif"
    with tifffile.TiffWriter(path) as tw:  # 72 dpi, what image editors write: 352.8 um/px
        tw.write(np.zeros((256, 256, 3), np.uint8), tile=(128, 128), resolution=(72, 72), resolutionunit="INCH",
                 subifds=1, photometric="rgb")
        tw.write(np.zeros((128, 128, 3), np.uint8), tile=(128, 128), subfiletype=1, photometric="rgb")
    with Slide(path) as slide:
        assert slide.mpp is None
        assert any("implausible" in n for n in slide.notes)


def test_region_outside_the_slide(slides):
    with Slide(slides["aperio"]) as slide:
        with pytest.raises(SlideError, match="outside level 0 \\(width 800, height 600"):
            slide.read_region(790, 0, 20, 10)
        with pytest.raises(SlideError, match="no level 5"):
            slide.read_region(0, 0, 1, 1, level=5)


def test_is_slide(slides, tmp_path):
    import tifffile

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((64, 64, 3), np.uint8))
    assert not is_slide(flat)
    assert all(is_slide(p) for p in slides.values())
    assert is_slide(tmp_path / "anything.svs")


# -- napari reader ---------------------------------------------------------------------------------


def test_napari_manifest_lists_the_slide_readers():
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "napari.yaml").read_text())
    readers = {r["command"]: r for r in manifest["contributions"]["readers"]}
    assert "*.svs" in readers["napari-genselfdiff.get_slide_reader"]["filename_patterns"]
    order = [r["command"] for r in manifest["contributions"]["readers"]]
    assert order.index("napari-genselfdiff.get_slide_reader") < order.index("napari-genselfdiff.get_image_reader")


# -- tissue mask -----------------------------------------------------------------------------------


def test_tissue_mask_finds_the_tissue_and_skips_glass(tmp_path):
    for fraction in (0.0, 0.3, 1.0):
        path = write_synthetic_slide(tmp_path / f"f{fraction}.tif", 1024, 1024, flavour="tiff", tile=128,
                                     tissue_fraction=fraction, n_levels=2).path
        with Slide(path) as slide:
            mask = tissue_mask(slide, margin_um=0)
            if fraction == 0:
                assert mask.fraction == 0 and not mask.any_in(0, 1024, 0, 1024)
            elif fraction == 1:
                assert mask.fraction == 1
            else:
                assert 0.2 < mask.fraction < 0.4
                # Where the mask says glass, the slide is glass (bright, grey).
                ys, xs = np.nonzero(~mask.mask)
                k = len(ys) // 2
                y, x = int(ys[k] * mask.downsample), int(xs[k] * mask.downsample)
                px = slide.read_region(x, y, 4, 4).astype(int)
                assert px.min() > 200 and np.ptp(px, axis=-1).max() < 20


# -- tile filter in the tiled inference -------------------------------------------------------------


def test_tile_filter_skips_tiles_and_keeps_the_rest_identical(make_model, he_image):
    net, info, _ = make_model()
    image = he_image(256, 384, seed=1)
    full = segment(net, info, image, FAST)
    kept = []

    def left_only(y0, y1, x0, x1):
        kept.append((y0, x0))
        return x0 < 128

    part = segment(net, info, image, FAST, out=np.full((256, 384), 7, np.uint8), tile_filter=left_only)
    assert part.tiles < full.tiles
    # Columns only kept tiles cover are identical; columns no kept tile reaches are left untouched.
    np.testing.assert_array_equal(part.labels[:, :100], full.labels[:, :100])
    assert (part.labels[:, 300:] == 7).all()


# -- slide segmentation ----------------------------------------------------------------------------


def test_slide_segmentation_equals_in_memory_segmentation(slides, tmp_path, make_model):
    net, info, _ = make_model()
    result = segment_slide(net, info, slides["aperio"], tmp_path,
                           SlideSettings(inference=FAST, tissue=False))
    store = open_labels_store(tmp_path / "a_labels.zarr")
    assert store.complete and store.mpp == 0.25
    assert [a.shape for a in store.arrays] == [(600, 800)]
    with Slide(slides["aperio"]) as slide:
        image = slide.read_region(0, 0, 800, 600)
    expected = segment(net, info, image, FAST).labels
    np.testing.assert_array_equal(np.asarray(store.level0), expected)
    assert result.tiles == result.tiles_all and result.scale == 1.0
    assert store.attrs["multiscales"][0]["axes"][0]["unit"] == "micrometer"


def test_tissue_only_tiles_and_labels_only_on_tissue(slides, tmp_path, make_model):
    net, info, _ = make_model()
    result = segment_slide(net, info, slides["aperio"], tmp_path, SlideSettings(inference=FAST))
    assert 0 < result.tiles < result.tiles_all
    labels = np.asarray(open_labels_store(result.labels_store).level0)
    with Slide(slides["aperio"]) as slide:
        mask = tissue_mask(slide)
    for y, x in zip(*np.nonzero(labels)):
        assert mask.any_in(y - 128, y + 128, x - 128, x + 128)
        break


def test_resampling_to_the_model_resolution(slides, tmp_path, make_model):
    # A 0.5 um/px slide and a 0.25 um/px model: segmented at 2x, labels back at the slide's pixels.
    net, info, _ = make_model()
    assert model_mpp(info) == (0.25, "default (MoNuSeg, 40x)")
    result = segment_slide(net, info, slides["tiff"], tmp_path,
                           SlideSettings(inference=FAST, tissue=False, region=(0, 0, 200, 160)))
    assert result.scale == pytest.approx(2.0) and any("2x" in n for n in result.notes)
    store = open_labels_store(result.labels_store)
    assert store.level0.shape == (600, 800) and not (store.path / "model_resolution").exists()
    with Slide(slides["tiff"]) as slide:
        up = ResampledView(slide.level_array(0), 2.0)[0:320, 0:400]
    # Back to the slide's pixels as images are (resolution.map_back): each slide pixel takes the most
    # frequent of the 2x2 model pixels under it, a 2-2 tie going to the nucleus.
    fine = segment(net, info, up, FAST).labels
    expected = (fine.reshape(160, 2, 200, 2).sum(axis=(1, 3)) >= 2).astype(fine.dtype)
    np.testing.assert_array_equal(np.asarray(store.level0[:160, :200]), expected)
    assert not np.asarray(store.level0[160:, :]).any() and not np.asarray(store.level0[:, 200:]).any()
    # A model that records its resolution is segmented at it: no resampling here.
    info.mpp = 0.5
    assert model_mpp(info) == (0.5, "model file")
    again = segment_slide(net, info, slides["tiff"], tmp_path / "b", SlideSettings(inference=FAST, region=(0, 0, 64, 64)))
    assert again.scale == 1.0


def test_resampled_view_is_the_same_read_whole_or_in_tiles(slides):
    with Slide(slides["aperio"]) as slide:
        for factor in (2.0, 0.6):
            view = ResampledView(slide.level_array(0), factor)
            whole = view[0:200, 0:240]
            tiles = np.concatenate([np.concatenate([view[y:y + 100, x:x + 120] for x in (0, 120)], 1) for y in (0, 100)])
            np.testing.assert_array_equal(whole, tiles)
        same = ResampledView(slide.level_array(0), 1.0)[5:50, 7:70]
        np.testing.assert_array_equal(same, slide.read_region(7, 5, 63, 45))


def test_model_resolution_round_trips_and_old_files_load(make_model):
    from napari_genselfdiff.core.model_files import load_model

    _, _, old = make_model(name="old")
    _, info_old = load_model(old)
    assert info_old.mpp is None and "not recorded" in info_old.summary()
    _, _, new = make_model(name="new", mpp=0.5)
    _, info_new = load_model(new)
    assert info_new.mpp == 0.5 and "0.5 um/px" in info_new.summary()


def test_region_and_nuclei_geojson_in_level0_coordinates(slides, tmp_path, make_model):
    from napari_genselfdiff.core.export.geojson import rasterize_geometry
    from napari_genselfdiff.core.inference.instances import label_instances

    net, info, _ = make_model()
    region = (96, 64, 320, 288)  # x, y, w, h
    result = segment_slide(net, info, slides["aperio"], tmp_path,
                           SlideSettings(inference=FAST, tissue=False, instances=True, region=region,
                                         instance_block=128, instance_margin=48))
    labels = np.asarray(open_labels_store(result.labels_store).level0)
    x, y, w, h = region
    outside = labels.copy()
    outside[y:y + h, x:x + w] = 0
    assert not outside.any() and labels[y:y + h, x:x + w].any()
    doc = json.loads(result.geojson.read_text())
    assert doc["type"] == "FeatureCollection" and doc["properties"]["mpp"] == 0.25
    features = doc["features"]
    assert len(features) == result.nuclei > 0
    painted = np.zeros(labels.shape, np.int32)
    for feature in features:
        assert feature["properties"]["objectType"] == "detection"
        assert feature["properties"]["measurements"]["Area um^2"] > 0
        painted += rasterize_geometry(feature["geometry"], labels.shape)
    assert painted.max() <= 1  # every nucleus exported once, no overlaps across blocks
    inside = painted[y:y + h, x:x + w].astype(bool)
    assert not painted[labels == 0].any()  # polygons lie on the foreground
    # Block-wise splitting finds what splitting the whole region at once finds (up to seams).
    whole = label_instances(labels[y:y + h, x:x + w] > 0)
    assert abs(int(whole.max()) - len(features)) <= max(2, 0.05 * whole.max())
    assert abs(inside.sum() - (whole > 0).sum()) <= 0.05 * (whole > 0).sum()


def test_region_outside_the_slide_is_refused_before_any_work(slides, tmp_path, make_model):
    net, info, _ = make_model()
    with pytest.raises(SlideError, match="outside the slide"):
        segment_slide(net, info, slides["aperio"], tmp_path / "out", SlideSettings(inference=FAST, region=(700, 0, 200, 10)))
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_not_replaced_without_overwrite(slides, tmp_path, make_model):
    net, info, _ = make_model()
    settings = SlideSettings(inference=FAST, region=(0, 0, 64, 64))
    segment_slide(net, info, slides["aperio"], tmp_path, settings)
    with pytest.raises(FileExistsError, match="--overwrite"):
        segment_slide(net, info, slides["aperio"], tmp_path, settings)
    segment_slide(net, info, slides["aperio"], tmp_path, settings, overwrite=True)


def test_full_disk_keeps_what_was_written(slides, tmp_path, make_model, disk_full_after):
    net, info, _ = make_model()
    settings = SlideSettings(inference=FAST, tissue=False)
    first = segment_slide(net, info, slides["aperio"], tmp_path, settings)
    before = np.asarray(open_labels_store(first.labels_store).level0)
    with disk_full_after(2), pytest.raises(SlideWriteError, match="disk is full.*kept in .*a_labels.zarr.partial"):
        segment_slide(net, info, slides["aperio"], tmp_path, settings, overwrite=True)
    # The earlier result is intact; the partial store holds the bands written before the failure.
    np.testing.assert_array_equal(np.asarray(open_labels_store(first.labels_store).level0), before)
    partial = open_labels_store(tmp_path / "a_labels.zarr.partial")
    assert not partial.complete and "No space left" in partial.attrs["genselfdiff"]["failed"]
    assert np.asarray(partial.level0).any()


# -- a large slide (>= 20000 x 20000) ---------------------------------------------------------------


@pytest.mark.slow
def test_large_slide_regions_and_tissue_mask_without_reading_it_whole(tmp_path):
    import resource

    path = tmp_path / "large.svs"
    start = time.perf_counter()
    written = write_synthetic_slide(path, 20480, 20480, mpp=0.25, tissue_fraction=0.3, seed=5)
    assert len(written.levels) >= 3
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with Slide(path) as slide:
        assert (slide.width, slide.height, slide.mpp) == (20480, 20480, 0.25)
        mask = tissue_mask(slide)
        assert 0.25 < mask.fraction < 0.45  # 30 % plus the 20 um margin
        region = slide.read_region(10000, 12000, 512, 512)
        assert region.shape == (512, 512, 3)
        corner = slide.read_region(20480 - 100, 20480 - 100, 100, 100)
        assert corner.shape == (100, 100, 3)
        with pytest.raises(SlideError):
            slide.read_region(20480 - 100, 0, 101, 1)
    seconds = time.perf_counter() - t
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    # The slide is 1.26 GB of pixels; reading the mask and regions must not come near that.
    assert grown_mb < 400, grown_mb  # (its time is printed, not asserted: benchmarks/ measures speed)
    print(f"wrote in {t - start:.1f} s; mask + regions in {seconds:.1f} s, peak RSS +{grown_mb:.0f} MB")


@pytest.mark.slow
def test_slide_benchmark_prints_its_figures(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "slide.py"), "--size", "768", "--tissue", "0.3",
                           "--tile", "256", "--threads", "1", "--workdir", str(tmp_path), "--out", str(tmp_path / "f.jsonl")],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("peak_rss_mb", "peak_above_start_mb", "seconds_per_tissue_megapixel", "share_outside_network",
                "tiles", "tiles_whole_slide"):
        assert figures[key] is not None, key
    assert 0 <= figures["share_outside_network"] <= 1
    assert figures["tiles"] <= figures["tiles_whole_slide"]
    assert json.loads((tmp_path / "f.jsonl").read_text().splitlines()[-1]) == figures


def test_an_object_wider_than_the_block_margin_is_written_whole_and_once(tmp_path, make_model):
    """A gland-sized object that crosses a block border by more than the margin: the margin grows
    around that block, so the object is outlined whole (its area) and written once."""
    from napari_genselfdiff.core.export.geojson import rasterize_geometry
    from napari_genselfdiff.core.inference.slide_nuclei import write_nuclei_geojson
    from napari_genselfdiff.core.inference.slide_views import SlideGeometry
    from napari_genselfdiff.core.progress import run_generator

    _, info, _ = make_model()
    labels = np.zeros((256, 256), np.uint8)
    labels[40:100, 50:110] = 1  # 60 x 60, crossing the border at 64 by 36 px (margin 8)
    labels[150:160, 150:160] = 1  # a small one, far from any border
    geo = SlideGeometry(level=0, f=1.0, source=None, oy=0, ox=0, height=256, width=256)
    settings = SlideSettings(inference=FAST, instances=True, instance_block=64, instance_margin=8)
    target = tmp_path / "objects.geojson"
    n = run_generator(write_nuclei_geojson(labels, geo, info, settings, target, overwrite=False,
                                           properties={"mpp": 0.25}, seed="t"))
    features = json.loads(target.read_text())["features"]
    assert n == len(features) == 2
    painted = sum(rasterize_geometry(f["geometry"], labels.shape).astype(np.int32) for f in features)
    assert painted.max() == 1 and np.array_equal(painted > 0, labels > 0)
