"""``genselfdiff segment`` and resolutions: --mpp on images is used and reported, what a
file records is used, bad values are refused naming them and what to type."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_genselfdiff.cli.main import main


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model_path(make_model):
    return make_model("micro")[2]  # a random model: no nucleus splitting recorded, so it never estimates


def test_mpp_on_an_image_changes_the_result_and_is_reported(capsys, tmp_path, he_image, model_path):
    Image.fromarray(he_image(48, 64, seed=1)).save(tmp_path / "a.png")
    common = ("--model", model_path, "--device", "cpu", "--precision", "fp32")
    code, plain, _ = run_cli(capsys, "segment", tmp_path / "a.png", "--out", tmp_path / "o1", *common)
    assert code == 0 and "a.png: 64x48 at 0.25 um/px (assumed: the model's" in plain
    code, given, _ = run_cli(capsys, "segment", tmp_path / "a.png", "--out", tmp_path / "o2", "--mpp", "0.5", *common)
    assert code == 0 and "a.png: 64x48 at 0.5 um/px (given: --mpp)" in given
    assert "segmented at 2x its pixels" in given and "mapped back to its 64x48 pixels" in given
    a, b = tifffile.imread(tmp_path / "o1" / "a_labels.tif"), tifffile.imread(tmp_path / "o2" / "a_labels.tif")
    assert a.shape == b.shape == (48, 64) and not np.array_equal(a, b)


def test_model_mpp_on_an_image_is_used_and_reported(capsys, tmp_path, he_image, model_path):
    """--model-mpp works for plain images as for slides (it was once read by slides only, silently)."""
    Image.fromarray(he_image(48, 64, seed=1)).save(tmp_path / "a.png")
    common = ("--model", model_path, "--device", "cpu", "--precision", "fp32", "--mpp", "0.25")
    code, plain, _ = run_cli(capsys, "segment", tmp_path / "a.png", "--out", tmp_path / "o1", *common)
    assert code == 0 and "segmented as it is (model 0.25 um/px)" in plain
    code, given, _ = run_cli(capsys, "segment", tmp_path / "a.png", "--out", tmp_path / "o2", "--model-mpp", "0.5",
                             *common)
    assert code == 0 and "model resolution: 0.5 um/px (--model-mpp; the model's own: 0.25 um/px" in given
    assert "segmented at 0.5x its pixels for the model's 0.5 um/px (--model-mpp)" in given
    a, b = tifffile.imread(tmp_path / "o1" / "a_labels.tif"), tifffile.imread(tmp_path / "o2" / "a_labels.tif")
    assert a.shape == b.shape == (48, 64) and not np.array_equal(a, b)


def test_a_recorded_resolution_is_used_and_named(capsys, tmp_path, he_image, model_path):
    Image.fromarray(he_image(40, 40, seed=2)).save(tmp_path / "r.png", dpi=(50800, 50800))  # 0.5 um/px
    Image.fromarray(he_image(40, 40, seed=2)).save(tmp_path / "d.png", dpi=(72, 72))  # an editor's default
    code, out, _ = run_cli(capsys, "segment", tmp_path / "r.png", tmp_path / "d.png", "--out", tmp_path / "o",
                           "--model", model_path, "--device", "cpu", "--precision", "fp32")
    assert code == 0
    assert "r.png: 40x40 at 0.5 um/px (recorded: PNG pHYs" in out
    assert "d.png: 40x40 at 0.25 um/px (assumed" in out and "no microscope's resolution" in out


@pytest.mark.parametrize("value, words", [("0", "not a resolution"), ("-1", "not a resolution"),
                                          ("40", "160x coarser"), ("0.001", "250x finer")])
def test_bad_mpp_is_refused_with_what_to_type(capsys, tmp_path, he_image, model_path, value, words):
    Image.fromarray(he_image(32, 32)).save(tmp_path / "a.png")
    try:
        code, _, err = run_cli(capsys, "segment", tmp_path / "a.png", "--out", tmp_path / "o", "--model", model_path,
                               "--device", "cpu", f"--mpp={value}")
    except SystemExit as exc:  # argparse's own refusal
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and words in err and value.lstrip("-") in err and "0.25" in err
    assert not (tmp_path / "o" / "a_labels.tif").exists()
