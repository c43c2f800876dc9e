"""Resolution everywhere: what files record, refusals, resampling and mapping back, the estimate."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_genselfdiff.core.defaults import SAMPLE_IMAGE
from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.resolution import (
    Resolution,
    ResolutionError,
    assumed,
    check_mpp,
    estimate_mpp,
    estimate_params,
    layer_resolution,
    map_back,
    resolve_and_segment,
    segment_at_resolution,
)
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.io.resolution import recorded_mpp
from napari_genselfdiff.core.progress import run_generator

FAST = InferenceSettings(tile=64, overlap=8, batch=1, device="cpu", precision="fp32")


# -- what files record -----------------------------------------------------------------------------


def _rgb(h=32, w=40):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_tiff_resolution_tags_in_inches_and_centimetres(tmp_path):
    tifffile.imwrite(tmp_path / "inch.tif", _rgb(), resolution=(101600, 101600), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "cm.tif", _rgb(), resolution=(20000, 20000), resolutionunit="CENTIMETER")
    inch, cm = recorded_mpp(tmp_path / "inch.tif"), recorded_mpp(tmp_path / "cm.tif")
    assert inch.mpp == pytest.approx(0.25) and "dpi" in inch.detail
    assert cm.mpp == pytest.approx(0.5) and "pixels/cm" in cm.detail


def test_ome_aperio_and_imagej_records(tmp_path):
    tifffile.imwrite(tmp_path / "a.ome.tif", _rgb(), photometric="rgb",
                     metadata={"PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4, "PhysicalSizeXUnit": "µm",
                               "PhysicalSizeYUnit": "µm"})
    tifffile.imwrite(tmp_path / "aperio.tif", _rgb(), description="Aperio Image Library v12 |AppMag = 20|MPP = 0.4990")
    tifffile.imwrite(tmp_path / "ij.tif", _rgb()[..., 0], imagej=True, resolution=(4.0, 4.0), metadata={"unit": "um"})
    ome, aperio, ij = (recorded_mpp(tmp_path / n) for n in ("a.ome.tif", "aperio.tif", "ij.tif"))
    assert ome.mpp == pytest.approx(0.4) and "OME" in ome.detail
    assert aperio.mpp == pytest.approx(0.499) and aperio.detail == "Aperio MPP"
    assert ij.mpp == pytest.approx(0.25) and "ImageJ" in ij.detail


def test_png_phys_and_jpeg_density(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png", dpi=(50800, 50800))
    Image.fromarray(_rgb()).save(tmp_path / "a.jpg", dpi=(25400, 25400))
    png, jpg = recorded_mpp(tmp_path / "a.png"), recorded_mpp(tmp_path / "a.jpg")
    assert png.mpp == pytest.approx(0.5, rel=1e-3) and "pHYs" in png.detail
    assert jpg.mpp == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("dpi", [72, 96, 300])
def test_image_editor_defaults_are_ignored_with_a_note(tmp_path, dpi):
    Image.fromarray(_rgb()).save(tmp_path / "a.png", dpi=(dpi, dpi))
    tifffile.imwrite(tmp_path / "a.tif", _rgb(), resolution=(dpi, dpi), resolutionunit="INCH")
    for name in ("a.png", "a.tif"):
        found = recorded_mpp(tmp_path / name)
        assert found.mpp is None and "no microscope's resolution" in found.notes[0]


def test_nothing_recorded_and_unreadable_files_record_nothing(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "plain.png")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    assert recorded_mpp(tmp_path / "plain.png").mpp is None
    assert recorded_mpp(tmp_path / "bad.tif").mpp is None


def test_the_bundled_sample_records_monuseg_resolution():
    assert recorded_mpp(SAMPLE_IMAGE).mpp == pytest.approx(0.25, rel=1e-3)


@pytest.mark.data
def test_real_ome_tiff_records_0_227(requires_data):
    found = recorded_mpp(requires_data("slides", "OS-1-detail.ome.tif"))
    assert found.mpp == pytest.approx(0.2271, abs=1e-3) and "OME" in found.detail


def test_layer_scale_in_microns_and_reader_records():
    assert layer_resolution((0.5, 0.5), ("um", "um")) == (0.5, "layer scale")
    assert layer_resolution((500.0, 500.0), ("nm", "nm"))[0] == pytest.approx(0.5)
    assert layer_resolution((1.0, 1.0), ("pixel", "pixel")) == (None, "")
    assert layer_resolution((1.0, 1.0), None, {"slide": {"mpp": 0.499, "mpp_source": "file: Aperio MPP"}}) == (
        0.499, "file: Aperio MPP")


# -- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, words", [(0, "more than 0"), (-0.5, "more than 0"), (30.0, "120x coarser"),
                                          (0.002, "125x finer"), ("abc", "not a number"), (float("nan"), "more than 0")])
def test_bad_resolutions_are_refused_naming_the_value_and_what_to_type(value, words):
    with pytest.raises(ResolutionError) as info:
        check_mpp(value, 0.25, what="--mpp")
    message = str(info.value)
    assert words in message and "0.25 for a 40x scan" in message and "--mpp" in message
    assert (value if isinstance(value, str) else f"{value:g}") in message


def test_nanometres_are_recognised():
    with pytest.raises(ResolutionError, match=r"nanometres per pixel, type 0.25"):
        check_mpp(250, 0.25)
    assert check_mpp("0.5", 0.25) == 0.5


# -- resampling and mapping back -------------------------------------------------------------------


def test_map_back_mode_nearest_and_mean():
    fine = np.zeros((8, 8), np.uint8)
    fine[0:2, 0:2] = [[1, 1], [1, 0]]  # 3 of 4: nucleus
    fine[0:2, 2:4] = [[1, 0], [0, 0]]  # 1 of 4: background
    fine[2:4, 0:2] = [[1, 1], [0, 0]]  # a tie: the nucleus
    back = map_back(fine, (0, 4), (0, 4), 2.0)
    assert back.shape == (4, 4) and back[0, 0] == 1 and back[0, 1] == 0 and back[1, 0] == 1
    assert map_back(fine, (0, 4), (0, 4), 2.0, how="nearest")[0, 0] == fine[1, 1]
    mean = map_back(fine.astype(np.float32), (0, 4), (0, 4), 2.0, how="mean")
    assert mean[0, 0] == pytest.approx(0.75)
    coarse = map_back(np.arange(16).reshape(4, 4), (0, 8), (0, 8), 0.5)  # f < 1: each model pixel twice
    assert coarse.shape == (8, 8) and coarse[0, 0] == coarse[1, 1] == 0 and coarse[2, 2] == 5


@pytest.mark.parametrize("mpp, factor", [(0.5, "2x"), (0.125, "0.5x")])
def test_results_are_mapped_back_to_the_image_pixels(make_model, he_image, mpp, factor):
    net, info, _ = make_model()
    image = he_image(50, 70, seed=4)
    settings = InferenceSettings(**{**FAST.__dict__, "instances": True})
    result, umap = run_generator(segment_at_resolution(net, info, image, settings, Resolution(mpp, "given", "test"),
                                                       uncertainty=True))
    assert result.labels.shape == result.instances.shape == umap.shape == (50, 70)
    assert result.notes[0].startswith(f"resolution {mpp:g} um/px (given: test); segmented at {factor}")
    same, _ = run_generator(segment_at_resolution(net, info, image, settings, None))
    assert "(assumed: the model's" in same.notes[0] and "segmented as it is" in same.notes[0]
    assert not np.array_equal(result.labels, same.labels)


def test_a_recorded_resolution_is_used_and_a_given_one_wins(make_model, he_image):
    net, info, _ = make_model()
    image = he_image(40, 40, seed=5)
    _, _, rec = run_generator(resolve_and_segment(net, info, image, FAST, recorded=0.5, recorded_detail="PNG pHYs"))
    assert (rec.mpp, rec.source, rec.detail) == (0.5, "recorded", "PNG pHYs")
    _, _, given = run_generator(resolve_and_segment(net, info, image, FAST, given="0.3", given_detail="--mpp",
                                                    recorded=0.5))
    assert (given.mpp, given.source) == (0.3, "given")
    with pytest.raises(ResolutionError):
        run_generator(resolve_and_segment(net, info, image, FAST, given=0))


# -- estimating ------------------------------------------------------------------------------------


def test_only_nuclei_models_estimate(make_model, he_image):
    _, gland_info, _ = make_model(classes=("background", "gland"), postprocess={"instances": {}})
    _, plain_info, _ = make_model()  # no nucleus splitting recorded
    net, nuclei_info, _ = make_model(postprocess={"instances": {"min_size": 4}})
    assert estimate_params(gland_info) is None and estimate_params(plain_info) is None
    assert estimate_params(nuclei_info) is not None
    off = make_model(postprocess={"instances": {}, "resolution_estimate": {"method": None}})[1]
    assert estimate_params(off) is None
    found = run_generator(estimate_mpp(net, gland_info, he_image(64, 64)))
    assert found.resolution.source == "assumed" and "does not estimate" in found.resolution.detail and not found.probes


@pytest.fixture(scope="module")
def bundled():
    from napari_genselfdiff.core.inference.driver import load_segmentation_model

    try:
        net, info, _ = load_segmentation_model("default", "cpu")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no bundled model: {exc}")
    return net, info


def _shrink(image, k):
    h, w = image.shape[0] // k * k, image.shape[1] // k * k
    return np.rint(image[:h, :w, :3].reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))).astype(np.uint8)


@pytest.mark.parametrize("k", [1, 2])
def test_the_bundled_model_estimates_the_sample_at_40x_and_20x(bundled, k):
    net, info = bundled
    image = _shrink(read_array(SAMPLE_IMAGE), k)  # the MoNuSeg crop (0.25 um/px), shrunk: nothing recorded
    found = run_generator(estimate_mpp(net, info, image, FAST))
    assert found.mpp == pytest.approx(0.25 * k)
    assert found.resolution.source == "estimated" and found.confidence > 0.5 and found.probes[-1].nuclei >= 12
    # from the finest candidate (confirmed by the next), stopping at the first that fits
    assert [p.candidate for p in found.probes] == [0.25, 0.5]
    assumed_res = assumed(info)
    assert assumed_res.mpp == 0.25 and assumed_res.source == "assumed"


def test_a_model_working_at_another_resolution_still_estimates_and_assumes_the_training_scans(bundled):
    """--model-mpp 0.32 on an unrecorded 40x image: the estimate still says 0.25 (40x), so the image is resampled to
    0.32; before, the candidates followed the working resolution and the image was taken as 0.32 and left as it was."""
    from napari_genselfdiff.core.inference.resolution import model_mpp, with_model_mpp

    net, info = bundled
    working = with_model_mpp(info, 0.32, "--model-mpp")
    assert model_mpp(working) == (0.32, "--model-mpp") and model_mpp(info)[0] == 0.25
    found = run_generator(estimate_mpp(net, working, read_array(SAMPLE_IMAGE)[..., :3], FAST))
    assert found.mpp == pytest.approx(0.25) and found.resolution.source == "estimated"
    assert assumed(working).mpp == 0.25  # unrecorded images that cannot be estimated: taken as its training scans


def test_a_blank_image_is_not_estimated(bundled):
    net, info = bundled
    found = run_generator(estimate_mpp(net, info, np.full((300, 300, 3), 235, np.uint8), FAST))
    assert found.resolution.source == "assumed" and found.resolution.mpp == 0.25
    assert "estimate failed" in found.resolution.describe() or "not confident" in found.resolution.describe()


def test_a_slide_given_100x_off_is_refused_before_any_work(tmp_path, make_model):
    from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide
    from napari_genselfdiff.core.io.slide import SlideError
    from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

    net, info, _ = make_model()
    path = write_synthetic_slide(tmp_path / "s.tif", 256, 256, mpp=0.5, flavour="tiff", tissue_fraction=0.4,
                                 tile=128, n_levels=2, seed=1).path
    with pytest.raises(SlideError, match=r"30 um/px is 120x coarser .* 0.25 for a 40x scan"):
        segment_slide(net, info, path, tmp_path / "out", SlideSettings(inference=FAST, mpp=30))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_model_working_below_its_images_resolution_takes_unrecorded_images_as_its_training_images(
        make_model, he_image, tmp_path):
    """A gland model that works at 1.24 um/px on GlaS images of 0.62 (input_mpp) segments an image that
    records nothing at half its pixels, as it was trained; the model file keeps input_mpp; a recorded
    resolution still wins; a model without input_mpp assumes its own resolution (segmented as it is)."""
    from napari_genselfdiff.core.model_files import load_model, save_model

    net, info, _ = make_model(classes=("background", "gland"), postprocess={"instances": {}})
    info.mpp, info.input_mpp = 1.24, 0.62
    path = save_model(tmp_path / "glands.safetensors", net, info)
    net, info = load_model(path)
    assert (info.mpp, info.input_mpp) == (1.24, 0.62) and "taken as 0.62 um/px" in info.summary()
    image = he_image(48, 64, seed=6)
    result, _, res = run_generator(resolve_and_segment(net, info, image, FAST))
    assert (res.mpp, res.source) == (0.62, "assumed") and "training images'" in res.detail
    assert "segmented at 0.5x its pixels" in result.notes[0] and result.labels.shape == (48, 64)
    _, _, rec = run_generator(resolve_and_segment(net, info, image, FAST, recorded=0.5, recorded_detail="TIFF"))
    assert (rec.mpp, rec.source) == (0.5, "recorded")
    info.input_mpp = None
    same, _, res = run_generator(resolve_and_segment(net, info, image, FAST))
    assert (res.mpp, res.source) == (1.24, "assumed") and "segmented as it is" in same.notes[0]
