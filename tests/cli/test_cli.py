"""The ``genselfdiff`` command line, run in-process through ``main(argv)`` (one subprocess checks the
installed console script). Models are random "micro" networks: these tests check files, messages and
exit codes, not segmentation quality."""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_genselfdiff.cli import common
from napari_genselfdiff.cli.main import main


@pytest.fixture
def inputs(tmp_path, he_image):
    """A good 48x64 PNG, a corrupt TIFF, a 3-D stack TIFF and a grayscale PNG."""
    folder = tmp_path / "images"
    folder.mkdir()
    iio.imwrite(folder / "good.png", he_image(48, 64, seed=1))
    tifffile.imwrite(folder / "broken.tif", he_image(48, 64, seed=3), compression="zlib")
    data = (folder / "broken.tif").read_bytes()
    (folder / "broken.tif").write_bytes(data[: len(data) // 2])  # truncated: the pixels cannot be decoded
    tifffile.imwrite(folder / "stack.tif", np.zeros((3, 16, 16, 3), np.uint8))
    iio.imwrite(folder / "gray.png", he_image(40, 40, seed=2)[..., 0])
    return folder


@pytest.fixture
def model_path(make_model):
    return make_model("micro", card={"intended_use": "tests only"}, provenance={"data": "random"})[2]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_segment_writes_good_images_and_reports_each_bad_one(capsys, tmp_path, inputs, model_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, "segment", inputs / "good.png", inputs / "broken.tif", inputs / "stack.tif", inputs / "gray.png",
        "--model", model_path, "--out", out, "--device", "cpu", "--precision", "fp32",
    )
    assert code == 1
    labels = tifffile.imread(out / "good_labels.tif")
    assert labels.shape == (48, 64) and labels.dtype == np.uint8 and labels.max() <= 1
    assert tifffile.TiffFile(out / "good_labels.tif").pages[0].compression == 8  # Adobe deflate (zlib)
    # Each bad input: exactly one error line naming it; the grayscale image is segmented with a note.
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("broken.tif" in e and "cannot be read" in e for e in errors)
    assert any("stack.tif" in e and "slice" in e for e in errors)
    assert "2 of 4 input(s) failed" in stderr
    assert (out / "gray_labels.tif").is_file()
    assert "note: gray.png: grayscale" in stdout
    assert "device: cpu, precision: fp32" in stdout
    assert re.search(r"good\.png: 64x48 at 0\.25 um/px \(assumed: .*\), 1 tile\(s\) of 64x48, cpu fp32", stdout)
    assert sorted(p.name for p in out.iterdir()) == ["good_labels.tif", "gray_labels.tif"]  # no temp files


@pytest.mark.parametrize("native_bf16, expected", [("1", "bf16"), ("0", "fp32")])
def test_segment_reports_what_auto_precision_resolved_to(capsys, tmp_path, inputs, model_path, monkeypatch,
                                                          native_bf16, expected):
    # The default --precision auto, on each kind of CPU (the detection forced through its environment
    # variable, so this does not depend on the machine): bf16 where the CPU computes it natively,
    # else fp32. The forced bf16 runs emulated on CPUs without it; one 48x64 image keeps that quick.
    from napari_genselfdiff.core.inference.device import FORCE_CPU_BF16_ENV

    monkeypatch.setenv(FORCE_CPU_BF16_ENV, native_bf16)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "segment", inputs / "good.png", "--model", model_path, "--out", out,
                              "--device", "cpu")
    assert code == 0
    assert f"device: cpu, precision: {expected}" in stdout
    assert re.search(rf"good\.png: 64x48 at 0\.25 um/px \(assumed: .*\), 1 tile\(s\) of 64x48, cpu {expected}", stdout)
    labels = tifffile.imread(out / "good_labels.tif")
    assert labels.shape == (48, 64) and labels.max() <= 1
    if expected == "fp32":  # --flips: said on the summary line
        code, stdout, _ = run_cli(capsys, "segment", inputs / "good.png", "--model", model_path, "--out", out,
                                  "--device", "cpu", "--flips", "--overwrite")
        assert code == 0 and "1 tile(s) of 64x48, each mirror-averaged (4 passes), cpu fp32" in stdout


def test_segment_refuses_to_overwrite_unless_asked(capsys, tmp_path, inputs, model_path):
    out = tmp_path / "out"
    args = ("segment", inputs / "good.png", "--model", model_path, "--out", out, "--device", "cpu", "--precision", "fp32")
    assert run_cli(capsys, *args)[0] == 0
    target = out / "good_labels.tif"
    target.write_bytes(b"precious")
    code, _, stderr = run_cli(capsys, *args)
    assert code == 1
    assert "exists; pass --overwrite" in stderr
    assert target.read_bytes() == b"precious"
    assert run_cli(capsys, *args, "--overwrite")[0] == 0
    assert tifffile.imread(target).shape == (48, 64)


def test_segment_a_folder_with_instances_and_overlay(capsys, tmp_path, inputs, model_path):
    folder = tmp_path / "only_good"
    folder.mkdir()
    (inputs / "good.png").rename(folder / "good.png")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        capsys, "segment", folder, "--model", model_path, "--out", out, "--instances", "--overlay",
        "--tile", "48", "--overlap", "8",
    )
    assert code == 0
    instances = tifffile.imread(out / "good_instances.tif")
    assert instances.shape == (48, 64) and instances.dtype == np.uint16
    overlay = iio.imread(out / "good_overlay.png")
    assert overlay.shape == (48, 64, 3) and overlay.dtype == np.uint8
    assert "2 tile(s) of " in stdout


def test_two_inputs_with_the_same_name_do_not_overwrite_each_other(capsys, tmp_path, inputs, model_path):
    other = tmp_path / "other"
    other.mkdir()
    iio.imwrite(other / "good.png", np.zeros((24, 24, 3), np.uint8))
    code, _, stderr = run_cli(
        capsys, "segment", inputs / "good.png", other / "good.png", "--model", model_path, "--out", tmp_path / "o"
    )
    assert code == 1
    assert "same name" in stderr
    assert tifffile.imread(tmp_path / "o" / "good_labels.tif").shape == (48, 64)  # the first one's


@pytest.mark.parametrize("command", [["segment", "x.png", "--out", "o"], ["run"], ["info", "default"]])
def test_default_model_missing_says_how_to_pass_one(capsys, tmp_path, monkeypatch, command):
    from napari_genselfdiff.core.model_files import store

    monkeypatch.setattr(store, "BUNDLED_DIR", tmp_path / "no-models")  # an install without the bundled file
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(capsys, *command, *(["--model", "default"] if command[0] != "info" else []))
    assert code == 2
    assert "no default model is bundled" in stderr and "--model PATH" in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()


def test_a_model_file_that_cannot_be_used_stops_before_any_image(capsys, tmp_path, inputs, make_model):
    code, _, stderr = run_cli(capsys, "segment", inputs / "good.png", "--model", tmp_path / "nope.safetensors",
                              "--out", tmp_path / "o")
    assert code == 2 and "no such model file" in stderr
    noise = make_model("micro", head="noise", name="noise")[2]
    code, _, stderr = run_cli(capsys, "segment", inputs / "good.png", "--model", noise, "--out", tmp_path / "o")
    assert code == 2 and "pretraining (noise) model" in stderr


def test_run_writes_labels_and_overlay(capsys, tmp_path, inputs, model_path):
    out = tmp_path / "out"
    args = ("run", inputs / "good.png", "--model", model_path, "--out", out)
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["good_labels.tif", "good_overlay.png"]
    assert run_cli(capsys, *args)[0] == 0  # a second run replaces its own outputs


def test_evaluate_prints_a_table_and_writes_strict_json(capsys, tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12] = 1
    mask[20:28, 18:30] = 1
    tifffile.imwrite(pred / "a_labels.tif", mask)
    iio.imwrite(gt / "a.png", mask * 255)
    tifffile.imwrite(pred / "b_labels.tif", np.zeros((32, 32), np.uint8))  # empty: infinite HD
    iio.imwrite(gt / "b.png", mask * 255)
    report = tmp_path / "scores" / "eval.json"
    code, stdout, _ = run_cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--json", report)
    assert code == 0
    assert "AJI" in stdout and "mean (n=2)" in stdout
    data = json.loads(report.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert set(data["per_image"]) == {"a", "b"}
    assert set(data["per_image"]["a"]) == {"iou", "f1", "aji", "pq", "dq", "sq", "f1_object", "hd", "hd95", "counts"}
    assert "per-image mean" in stdout and set(data["pooled"]) == {"aji", "pq", "dq", "sq", "f1_object"}
    assert data["per_image"]["a"]["iou"] == 1.0 and data["per_image"]["a"]["hd"] == 0.0
    assert data["per_image"]["b"]["hd"] is None  # infinite in JSON terms
    assert data["n_infinite_hd"] == 1
    assert math.isclose(data["mean"]["iou"], 0.5)
    assert data["errors"] == {} and data["unmatched"] == {"pred": [], "gt": []}


def test_evaluate_of_a_missing_folder_is_a_one_line_error(capsys, tmp_path):
    code, _, stderr = run_cli(capsys, "evaluate", "--pred", tmp_path / "none", "--gt", tmp_path)
    assert code == 2 and "no such folder" in stderr


def test_info_prints_classes_card_and_json(capsys, model_path):
    code, stdout, _ = run_cli(capsys, "info", model_path)
    assert code == 0
    assert "classes: background, nucleus" in stdout
    assert "intended_use: tests only" in stdout and "data: random" in stdout
    code, stdout, _ = run_cli(capsys, "info", model_path, "--json")
    meta = json.loads(stdout)
    assert [c["name"] for c in meta["classes"]] == ["background", "nucleus"]
    assert meta["schema"] == "genselfdiff.model"


def test_gui_without_a_display_explains_instead_of_crashing(capsys, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is for Linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    code, _, stderr = run_cli(capsys, "gui")
    assert code == 2 and "no display" in stderr


def test_parser_defaults_match_the_core():
    from napari_genselfdiff.core.inference import InferenceSettings
    from napari_genselfdiff.core.io.read import IMAGE_SUFFIXES

    assert common.DEFAULT_TILE == InferenceSettings().tile
    parser = argparse.ArgumentParser()
    common.add_inference_arguments(parser)
    assert common.inference_settings(parser.parse_args([]), instances=False).flips is InferenceSettings().flips is False
    assert common.inference_settings(parser.parse_args(["--flips"]), instances=True).flips is True
    assert common.DEFAULT_OVERLAP == InferenceSettings().overlap
    assert common.IMAGE_SUFFIXES == IMAGE_SUFFIXES


def test_console_script_help_is_quick_and_imports_neither_torch_nor_napari():
    code = (
        "import sys; from napari_genselfdiff.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules and 'napari' not in sys.modules, 'heavy import'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "segment" in proc.stdout and "evaluate" in proc.stdout
    script = subprocess.run([sys.executable, "-m", "napari_genselfdiff.cli.main", "--version"],
                            capture_output=True, text=True, timeout=120)
    assert script.returncode == 0 and "genselfdiff" in script.stdout


@pytest.mark.data
def test_segment_a_real_monuseg_image(capsys, tmp_path, requires_data, make_model):
    """A real 1000x1000 MoNuSeg test image through the whole CLI path with the default tile (nothing
    is measured). The network is smaller still than "micro" (no per-level attention) to stay quick."""
    from napari_genselfdiff.core.network import UNetConfig

    images = requires_data("monuseg", "test", "images")
    image = sorted(images.glob("*.tif"))[0]
    nano = UNetConfig(widths=(8, 8, 8, 8), blocks_per_level=1, groups=4, attention_heads=1, attention_dim_head=8,
                      level_attention=False)
    model = make_model(nano, name="nano")[2]
    code, stdout, _ = run_cli(capsys, "segment", image, "--model", model, "--out", tmp_path)
    assert code == 0, stdout
    # default tile 512: 3 x 3 tiles spread evenly
    assert re.search(r"1000x1000 at [0-9.]+ um/px \(.*\), 9 tile\(s\) of 376x376", stdout)
    labels = tifffile.imread(tmp_path / f"{image.stem}_labels.tif")
    assert labels.shape == (1000, 1000) and labels.dtype == np.uint8


@pytest.mark.gui
def test_gui_opens_napari_with_the_widget_docked_and_the_image_open(capsys, monkeypatch, inputs):
    napari = pytest.importorskip("napari")
    seen = {}

    def fake_run(*args, **kwargs):  # instead of entering the Qt event loop: look, then close
        viewer = napari.current_viewer()
        seen["layers"] = [layer.name for layer in viewer.layers]
        seen["docks"] = list(viewer.window.dock_widgets)
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    code, _, stderr = run_cli(capsys, "gui", inputs / "good.png")
    assert code == 0, stderr
    assert "warning" not in stderr
    assert seen["layers"] == ["good"]
    assert any("napari-genselfdiff" in name for name in seen["docks"])


def test_training_from_the_package_genselfdiff_finetune_and_pretrain(capsys, tmp_path):
    """`genselfdiff finetune` / `pretrain` take src_train's flags and config files: a one-step
    fine-tune from scratch writes its models; bad input is one line and exit code 2."""
    import json

    from conftest import synthetic_he

    for name in ("img", "msk"):
        (tmp_path / name).mkdir()
    image = synthetic_he(48, 48, seed=4)
    iio.imwrite(tmp_path / "img" / "a.png", image)
    iio.imwrite(tmp_path / "msk" / "a.png", (image.mean(axis=-1) < 140).astype(np.uint8))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"finetune": {"arch": {"widths": [8, 16], "groups": 4, "attention_heads": 1,
                                                         "attention_dim_head": 8}, "precision": "fp32"}}))
    code, stdout, stderr = run_cli(capsys, "finetune", "--images", tmp_path / "img", "--masks", tmp_path / "msk",
                                   "--init", "scratch", "--config", config, "--steps", "1", "--size", "32",
                                   "--val-fraction", "0", "--device", "cpu", "--out", tmp_path / "run")
    assert code == 0, stderr
    assert f"model: {tmp_path / 'run'}" in stdout and (tmp_path / "run" / "last.safetensors").is_file()
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli(capsys, "pretrain", "--images", tmp_path / "empty", "--out", tmp_path / "r")
    assert code == 2 and stderr.startswith("error: ") and "no image files found" in stderr
    assert len(stderr.strip().splitlines()) == 1
