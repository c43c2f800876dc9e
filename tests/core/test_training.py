"""Tests for headless training: data, control, checkpoints, both stages, resume after kill -9, CLI errors.

Everything runs on the CPU with a network far smaller than the "tiny" preset (widths 8-16-32, one
block per level) on 32-pixel patches, single-threaded (on a shared 2-core machine two torch threads
stall each other). Real images come from ../shared/data (GlaS for pretraining, MoNuSeg for
fine-tuning); synthetic H&E-like images stand in when that folder is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_genselfdiff.core.data import (
    Augmentation,
    PairedPatchDataset,
    PatchDataset,
    StepSampler,
    batch_for_step,
    grid_origins,
    index_patches,
    load_images,
    load_pairs,
    pad_to_patch,
    pair_images_with_masks,
)
from napari_genselfdiff.core.errors import MaskInputError, TrainingInputError
from napari_genselfdiff.core.inference import InferenceSettings, segment
from napari_genselfdiff.core.model_files import ModelInfo, load_model
from napari_genselfdiff.core.network import AttentionUNet, UNetConfig
from napari_genselfdiff.core.progress import Returning
from napari_genselfdiff.core.training import (
    FinetuneConfig,
    PretrainConfig,
    ProgressEvent,
    TrainingControl,
    find_latest_checkpoint,
    finetune,
    load_checkpoint,
    make_grid,
    pretrain,
    read_metrics,
    sample_preview,
)
from napari_genselfdiff.core.training.checkpoint import restore_rng, save_checkpoint
from napari_genselfdiff.core.training.distributed import parameter_digest

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT / ".." / "shared" / "data").resolve()
GLAS = DATA / "glas_unlabeled" / "images"
MONUSEG = DATA / "monuseg" / "train"
ARCH = {"widths": [8, 16, 32], "groups": 4, "attention_heads": 2, "attention_dim_head": 8, "blocks_per_level": 1}
PATCH = 32


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _synthetic_he(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A pink H&E-like image with purple 'nuclei' and their binary mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(size // 8):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(3, 7)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = np.where(mask[..., None] > 0, [110, 50, 150], [235, 170, 200]).astype(np.float32)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _glas_sources(n: int = 3) -> list:
    if GLAS.is_dir():
        return sorted(GLAS.glob("*.jpg"))[:n]
    return [(f"synthetic {i}", _synthetic_he(i, 128)[0]) for i in range(n)]


def _monuseg_pairs(n: int = 3, size: int = 64) -> list:
    from napari_genselfdiff.core.io.read import read_array

    if MONUSEG.is_dir():
        images = sorted((MONUSEG / "images").glob("*.tif"))[:n]
        return [
            (p.stem, read_array(p)[200 : 200 + size, 200 : 200 + size], read_array(MONUSEG / "masks" / f"{p.stem}.png")[200 : 200 + size, 200 : 200 + size])
            for p in images
        ]
    return [(f"synthetic {i}", *_synthetic_he(10 + i, size)) for i in range(n)]


def _drain(gen):
    """Run a training generator; returns (events, return value)."""
    events = Returning(gen)
    return list(events), events.value


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"src_train_{name}", ROOT / "src_train" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "src_train"))
    spec.loader.exec_module(module)
    return module


def _write_config(path: Path, **extra) -> Path:
    # fp32: these runs test behaviour, and "auto" would be (emulated, slow) bf16 on a forced bf16 run.
    path.write_text(json.dumps({"pretrain": {"arch": ARCH, "timesteps": 100, "precision": "fp32", **extra},
                                "finetune": {"arch": ARCH, "precision": "fp32", **extra}}))
    return path


# ------------------------------------------------------------------------------------------- data
def test_grid_covers_the_image_and_background_patches_are_skipped():
    assert grid_origins(100, 32, 32) == [0, 32, 64, 68]
    assert grid_origins(32, 32, 8) == [0]
    image = np.full((64, 128, 3), 250, np.uint8)  # white glass on the right...
    image[:, :64] = (200, 120, 170)                # ...tissue on the left
    index = index_patches([image], 32, 32)
    assert index.skipped_background == 4 and len(index) == 4
    assert set(index.origins[:, 2].tolist()) == {0, 32}
    with pytest.raises(TrainingInputError, match="background"):
        index_patches([np.full((64, 64, 3), 255, np.uint8)], 32, 32)


def test_small_images_are_mirror_padded_and_tiny_ones_refused():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    padded = pad_to_patch(image, 32)
    assert padded.shape == (32, 32, 3)
    np.testing.assert_array_equal(padded[:20, :30], image)
    np.testing.assert_array_equal(padded[20, :30], image[19])  # symmetric: the edge row is repeated first
    with pytest.raises(TrainingInputError, match="too small"):
        pad_to_patch(np.zeros((5, 40, 3), np.uint8), 32, name="sliver.png")


def test_augmentation_moves_image_and_mask_together_and_is_seeded():
    mask = np.random.default_rng(0).integers(0, 3, (16, 16)).astype(np.uint8)
    image = np.repeat((mask / 2.0)[..., None], 3, axis=2).astype(np.float32)
    aug = Augmentation(color_jitter=False, blur=False)
    for seed in range(8):
        out_image, out_mask = aug(image, mask, np.random.default_rng(seed))
        np.testing.assert_allclose(out_image[..., 0] * 2, out_mask)
    photometric = Augmentation(flips=False, rot90=False, jitter_p=1.0, blur_p=1.0)
    out_a, out_mask = photometric(image, mask, np.random.default_rng(1))
    out_b, _ = photometric(image, mask, np.random.default_rng(1))
    np.testing.assert_array_equal(out_mask, mask)  # photometric changes leave the mask alone
    assert not np.allclose(out_a, image) and np.array_equal(out_a, out_b)


def test_sampler_epochs_cover_every_patch_and_ranks_do_not_overlap():
    one = StepSampler(10, 3, seed=1)
    first_epoch = np.concatenate([one.indices(s) for s in range(1, one.steps_per_epoch + 1)])
    assert set(first_epoch.tolist()) == set(range(10))
    ranks = [StepSampler(12, 3, seed=1, rank=r, world=2) for r in range(2)]
    assert not set(ranks[0].indices(1).tolist()) & set(ranks[1].indices(1).tolist())
    np.testing.assert_array_equal(StepSampler(10, 3, seed=1).indices(7), one.indices(7))


def test_datasets_accept_files_and_arrays(tmp_path):
    import imageio.v3 as iio

    image, mask = _synthetic_he(0, 40)
    iio.imwrite(tmp_path / "a.png", image)
    loaded = load_images([tmp_path, ("layer", image)])
    assert loaded.names == [str(tmp_path / "a.png"), "layer"] and loaded.arrays == 1
    dataset = PatchDataset(loaded.images, PATCH, 8)
    batch = batch_for_step(dataset, StepSampler(len(dataset), 4, 0), 1)
    assert batch.shape == (4, 3, PATCH, PATCH) and batch.min() >= -1 and batch.max() <= 1
    paired = PairedPatchDataset([image], [mask], PATCH, 8)
    x, y = batch_for_step(paired, StepSampler(len(paired), 2, 0), 3)
    assert x.shape == (2, 3, PATCH, PATCH) and y.shape == (2, PATCH, PATCH) and y.dtype == torch.int64


def test_pairing_by_name_binary_masks_and_unreadable_files(tmp_path):
    import imageio.v3 as iio

    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    image, mask = _synthetic_he(1, 40)
    iio.imwrite(tmp_path / "img" / "s1.png", image)
    iio.imwrite(tmp_path / "img" / "s2.png", image)
    (tmp_path / "img" / "s3.png").write_bytes(b"not a png")
    iio.imwrite(tmp_path / "msk" / "s1_mask.png", mask * 255)  # 0/255 binary mask
    iio.imwrite(tmp_path / "msk" / "s2_labels.png", mask)
    iio.imwrite(tmp_path / "msk" / "s3.png", mask)
    pairing = pair_images_with_masks(tmp_path / "img", tmp_path / "msk")
    assert [p[0].name for p in pairing.pairs] == ["s1.png", "s2.png", "s3.png"]
    data = load_pairs(num_classes=2, image_dir=tmp_path / "img", mask_dir=tmp_path / "msk")
    assert len(data.images) == 2 and [Path(n).name for n, _ in data.skipped] == ["s3.png"]
    assert "cannot be read" in data.skipped[0][1]
    np.testing.assert_array_equal(data.masks[0], mask)  # 255 read as class 1


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_messages(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingInputError, match="no image files found"):
        load_images(tmp_path / "empty")
    image, mask = _synthetic_he(2, 40)
    with pytest.raises(MaskInputError, match="differs from its image"):
        load_pairs(num_classes=2, pairs=[("a", image, mask[:30])])
    bad = mask.copy()
    bad[0, 0] = 3
    with pytest.raises(MaskInputError, match=r"label value 3, but 2 classes \(background, nucleus\)"):
        load_pairs(num_classes=2, pairs=[("a", image, bad)], class_names=["background", "nucleus"])


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    import imageio.v3 as iio

    pre, fine = _load_script("pretrain"), _load_script("finetune")
    (tmp_path / "empty").mkdir()
    assert pre.main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no image files found" in err and "Traceback" not in err

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert pre.main(["--images", str(GLAS if GLAS.is_dir() else tmp_path), "--out", str(blocker / "run")]) == 2
    assert "cannot write to this run folder" in capsys.readouterr().err

    for d in ("img", "msk"):
        (tmp_path / d).mkdir()
    image, mask = _synthetic_he(3, 40)
    iio.imwrite(tmp_path / "img" / "a.png", image)
    iio.imwrite(tmp_path / "msk" / "b.png", mask)
    args = ["--images", str(tmp_path / "img"), "--masks", str(tmp_path / "msk"), "--out", str(tmp_path / "r2")]
    assert fine.main(args) == 2
    assert "has a mask" in capsys.readouterr().err  # no pairs

    iio.imwrite(tmp_path / "msk" / "a.png", mask[:20])
    assert fine.main(args) == 2
    assert "differs from its image" in capsys.readouterr().err

    three = mask.copy()
    three[:5, :5] = 2
    iio.imwrite(tmp_path / "msk" / "a.png", three)
    assert fine.main(args) == 2
    assert "label value 2, but 2 classes" in capsys.readouterr().err
    assert fine.main(args + ["--classes", "background", "nucleus", "gland", "--steps", "1", "--size", "32",
                             "--config", str(_write_config(tmp_path / "c.json")), "--val-fraction", "0"]) == 0


def test_config_layering(tmp_path):
    common = _load_script("_common")
    parser = common.make_parser(PretrainConfig, "test")
    cfg_file = _write_config(tmp_path / "c.json", epochs=3, batch=4)
    cfg = common.build_config(PretrainConfig, parser.parse_args(["--config", str(cfg_file), "--steps", "7"]), "pretrain")
    assert (cfg.steps, cfg.epochs, cfg.batch, cfg.timesteps, cfg.arch) == (7, None, 4, 100, ARCH)
    cfg = common.build_config(PretrainConfig, parser.parse_args(["--config", str(cfg_file), "--batch", "2"]), "pretrain")
    assert (cfg.epochs, cfg.batch) == (3, 2)
    for name in ("paper", "cpu", "nuclei"):
        for section, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
            values = common._config_file(str(ROOT / "src_train" / "configs" / f"{name}.json"), section)
            cls(**values).check()


def test_training_builds_the_shipped_network_by_default_and_its_recipe_is_a_config_file():
    """--arch defaults to the bundled model's network; src_train/configs/nuclei.json is the recipe that
    made it (its network, loss and stain jitter); the former preset name "default" reads as "paper"."""
    from napari_genselfdiff.core.model_files import bundled_model_path, read_model_info
    from napari_genselfdiff.core.network.config import PRESETS
    from napari_genselfdiff.core.training import resolve_architecture

    common = _load_script("_common")
    assert PretrainConfig().arch == FinetuneConfig().arch == "nuclei"
    assert resolve_architecture() == PRESETS["nuclei"]
    assert resolve_architecture("default") == PRESETS["paper"] and "default" not in PRESETS
    parser = common.make_parser(FinetuneConfig, "test")
    cfg = common.build_config(FinetuneConfig, parser.parse_args(
        ["--config", str(ROOT / "src_train" / "configs" / "nuclei.json")]), "finetune")
    assert (cfg.loss, cfg.stain_jitter, cfg.lr, cfg.lr_schedule, cfg.grad_clip) == ("dice_ce", True, 2e-3, "cosine", 1.0)
    if bundled_model_path() is not None:
        shipped = read_model_info(bundled_model_path()).architecture
        assert resolve_architecture(cfg.arch).with_head("classes", 2) == shipped.with_head("classes", 2)


# ------------------------------------------------------------------------------------------- control & checkpoints
def test_training_control_flags_from_another_thread():
    control = TrainingControl()
    assert control.wait_while_paused(timeout=0.01)
    control.pause()
    assert control.is_paused and not control.wait_while_paused(timeout=0.01)
    threading.Timer(0.05, control.resume).start()
    assert control.wait_while_paused(timeout=5)
    control.pause()
    threading.Timer(0.05, control.cancel).start()
    assert not control.wait_while_paused(timeout=5)
    assert control.is_cancelled and not control.is_paused


def test_checkpoint_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = AttentionUNet(UNetConfig(**ARCH))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.randn(1, 3, 16, 16), torch.tensor([3])).square().mean().backward()
    optimizer.step()
    info = ModelInfo(architecture=model.config, classes=[], patch_size=16,
                     diffusion={"schedule": "scaled_linear", "timesteps": 10, "p2_k": 1.0, "p2_gamma": 1.0})
    path = save_checkpoint(tmp_path, step=5, epoch=0.5, stage="pretrain", model=model, model_info=info,
                           optimizer=optimizer, config={"a": 1}, stage_state={"b": 2})
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    expected_next = torch.rand(3)
    state = load_checkpoint(path)
    assert (state.step, state.stage, state.config, state.stage_state) == (5, "pretrain", {"a": 1}, {"b": 2})
    assert state.info.to_dict() == info.to_dict() and state.architecture == model.config
    fresh = AttentionUNet(UNetConfig(**ARCH))
    fresh.load_state_dict(state.model)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3, betas=(0.5, 0.999))
    fresh_opt.load_state_dict(state.optimizer)
    for key, value in optimizer.state_dict()["state"][0].items():
        torch.testing.assert_close(fresh_opt.state_dict()["state"][0][key], value)
    assert fresh_opt.param_groups[0]["betas"] == (0.5, 0.999)
    restore_rng(state.rng)
    torch.testing.assert_close(torch.rand(3), expected_next)
    for step in (6, 7):
        save_checkpoint(tmp_path, step=step, epoch=0, stage="pretrain", model=model, model_info=info, keep=2)
    assert find_latest_checkpoint(tmp_path).name == "step_00000007.safetensors"
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2


# ------------------------------------------------------------------------------------------- the two stages
@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """One short pretraining run on real GlaS patches, shared by the tests that need a pretrained model."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrain")
    cfg = PretrainConfig(images=_glas_sources(3), out_dir=str(out), arch=ARCH, patch_size=PATCH, stride=PATCH,
                         steps=60, batch=8, lr=2e-3, seed=0, checkpoint_every=30, timesteps=1000, precision="fp32")
    events, path = _drain(pretrain(cfg))
    return out, path, events


def test_pretraining_loss_falls(pretrained_run):
    out, path, events = pretrained_run
    losses = [e.loss for e in events if e.kind == "step"]
    assert len(losses) == 60 and all(np.isfinite(losses))
    first, last = np.mean(losses[:15]), np.mean(losses[-15:])
    assert last < 0.5 * first, (first, last)  # about 0.2 for seeds 0-2
    assert events[-1].kind == "done" and events[-1].path == path
    model, info = load_model(path)
    assert info.head == "noise" and info.diffusion["timesteps"] == 1000
    assert info.provenance["steps"] == 60 and info.provenance["data"]["images"] == 3
    logged = read_metrics(out)
    assert [e["step"] for e in logged if e["kind"] == "step"] == list(range(1, 61))
    assert all(e["samples_per_s"] > 0 and e["eta_s"] >= 0 for e in logged if e["kind"] == "step")


def test_sample_preview_from_model_file_and_run_folder(pretrained_run, tmp_path):
    out, path, _ = pretrained_run
    samples = sample_preview(path, n=2, steps=3, size=16, device="cpu")
    assert samples.shape == (2, 16, 16, 3) and samples.dtype == np.uint8
    again = sample_preview(out, n=2, steps=3, size=16, device="cpu")  # the latest checkpoint: same weights
    np.testing.assert_array_equal(samples, again)
    assert make_grid(samples, cols=2, pad=2).shape == (16, 34, 3)
    sample = _load_script("sample")
    assert sample.main(["--model", str(path), "--out", str(tmp_path / "s.png"), "--n", "2", "--steps", "2",
                        "--size", "16", "--device", "cpu"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def _check_segmentation_model(path, pairs, parent):
    model, info = load_model(path)
    assert info.head == "classes" and info.class_names == ["background", "nucleus"]
    assert info.provenance["parent"] == parent and "mean_iou" in info.provenance["metrics"]
    result = segment(model, info, pairs[0][1], InferenceSettings(device="cpu", precision="fp32", tile=64))
    assert result.labels.shape == pairs[0][1].shape[:2] and result.labels.max() <= 1


def test_finetune_from_pretrained_and_from_scratch(pretrained_run, tmp_path):
    _, pretrained, _ = pretrained_run
    pairs = _monuseg_pairs(3)
    for init, out in ((str(pretrained), tmp_path / "ft"), ("scratch", tmp_path / "scratch")):
        cfg = FinetuneConfig(pairs=pairs, out_dir=str(out), init=init, arch=ARCH, patch_size=PATCH, stride=PATCH,
                             steps=6, batch=4, validate_every=3, checkpoint_every=0, val_fraction=0.34,
                             precision="fp32")
        events, path = _drain(finetune(cfg))
        validations = [e for e in events if e.kind == "validation"]
        assert [e.step for e in validations] == [3, 6]
        assert {"iou_background", "iou_nucleus", "f1_nucleus", "mean_iou", "mean_f1"} <= set(validations[0].metrics)
        assert path.name == "best.safetensors" and (out / "last.safetensors").is_file()
        assert events[-1].kind == "done"
        _check_segmentation_model(path, pairs, str(pretrained) if init != "scratch" else "scratch")


def test_pause_resume_cancel_from_another_thread_then_resume(tmp_path):
    control = TrainingControl()
    cfg = PretrainConfig(images=_glas_sources(2), out_dir=str(tmp_path / "run"), arch=ARCH, patch_size=PATCH,
                         stride=PATCH, steps=8, batch=2, timesteps=100, checkpoint_every=0, precision="fp32")
    events: list[ProgressEvent] = []
    result: dict = {}

    def worker():
        _, result["path"] = _drain(_forward(pretrain(cfg, control), events))

    thread = threading.Thread(target=worker)
    thread.start()
    _wait_for(lambda: any(e.kind == "step" for e in events))
    control.pause()
    _wait_for(lambda: any(e.kind == "paused" for e in events))
    paused_at = len(events)
    time.sleep(0.3)
    assert len(events) == paused_at  # nothing happens while paused
    control.resume()
    _wait_for(lambda: any(e.kind == "resumed" for e in events))
    control.cancel()
    thread.join(timeout=60)
    assert not thread.is_alive()
    kinds = [e.kind for e in events]
    assert kinds.index("paused") < kinds.index("resumed") < kinds.index("cancelled")
    cancelled = events[-1]
    assert cancelled.kind == "cancelled" and cancelled.step < 8
    state = load_checkpoint(cancelled.path)  # the cancel kept a loadable checkpoint of the last step
    assert state.step == cancelled.step
    assert load_model(result["path"])[1].provenance["cancelled"] is True

    cfg.resume = True
    resumed, path = _drain(pretrain(cfg))
    assert resumed[0].kind == "start" and resumed[0].step == cancelled.step
    assert [e.step for e in resumed if e.kind == "step"] == list(range(cancelled.step + 1, 9))
    assert load_model(path)[1].provenance["steps"] == 8

    # Stopped and resumed, the run ends with the very weights of an uninterrupted run: batches,
    # timesteps and noise depend on (seed, step) only, and the optimizer state is restored exactly.
    cfg.out_dir, cfg.resume = str(tmp_path / "straight"), False
    _, straight = _drain(pretrain(cfg))
    assert parameter_digest(load_model(straight)[0]) == parameter_digest(load_model(path)[0])


def _forward(gen, sink):
    events = Returning(gen)
    for event in events:
        sink.append(event)
        yield event
    return events.value


def _wait_for(condition, timeout: float = 300.0) -> None:  # generous: CI machines can be loaded
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


# ------------------------------------------------------------------------------------------- kill -9 and resume
@pytest.mark.slow
def test_kill_9_then_resume_finishes_with_the_same_step_count(tmp_path, capsys):
    cfg_file = _write_config(tmp_path / "c.json")
    out = tmp_path / "run"
    images = [str(p) if isinstance(p, Path) else None for p in _glas_sources(2)]
    if None in images:  # no shared data: write the synthetic images to files
        import imageio.v3 as iio

        images = []
        for i in range(2):
            iio.imwrite(tmp_path / f"syn{i}.png", _synthetic_he(i, 96)[0])
            images.append(str(tmp_path / f"syn{i}.png"))
    args = [sys.executable, str(ROOT / "src_train" / "pretrain.py"), "--config", str(cfg_file), "--images", *images,
            "--out", str(out), "--steps", "40", "--batch", "2", "--size", str(PATCH), "--stride", str(PATCH),
            "--checkpoint-every", "4", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: list((out / "checkpoints").glob("step_*.safetensors")) if (out / "checkpoints").is_dir() else False)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "pretrained.safetensors").exists()
    saved = load_checkpoint(find_latest_checkpoint(out)).step
    assert 4 <= saved < 40

    done = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"(step {saved})" in done.stdout
    steps = [e["step"] for e in read_metrics(out) if e["kind"] == "step"]
    assert steps == list(range(1, 41))  # every step exactly once: none lost, none repeated
    assert load_model(out / "pretrained.safetensors")[1].provenance["steps"] == 40

    # Resuming with another architecture is refused with a clear message.
    pre = _load_script("pretrain")
    assert pre.main(["--images", *images, "--out", str(out), "--resume", "--arch", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "another architecture" in err and "widths 8-16-32" in err and "widths 16-32-64-128" in err
    # And a new run into a folder that holds one must say so.
    assert pre.main(["--images", *images, "--out", str(out), "--config", str(cfg_file)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_evaluate_script_prints_a_table(tmp_path, capsys):
    import imageio.v3 as iio

    for d in ("pred", "gt"):
        (tmp_path / d).mkdir()
    _, mask = _synthetic_he(5, 32)
    iio.imwrite(tmp_path / "gt" / "a.png", mask * 255)
    iio.imwrite(tmp_path / "pred" / "a_labels.png", mask)
    evaluate = _load_script("evaluate")
    assert evaluate.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                          "--json", str(tmp_path / "r.json")]) == 0
    assert "IoU" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["mean"]["iou"] == 1.0


def test_stain_jitter_changes_colour_within_range_and_is_identity_at_zero_strength():
    from napari_genselfdiff.core.data.augment import Augmentation, stain_jitter

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(0.6, 0.15, (32, 32, 3)), 0.05, 0.95).astype(np.float32)
    same = stain_jitter(image, np.random.default_rng(1), scale=0.0, shift=0.0)
    assert np.abs(same - image).max() < 1e-3
    jittered = stain_jitter(image, np.random.default_rng(1))
    assert jittered.dtype == np.float32 and jittered.min() >= 0 and jittered.max() <= 1
    assert np.abs(jittered - image).mean() > 1e-3
    # Stain jitter is drawn last: turning it on leaves the geometric draws (and the mask) unchanged.
    mask = (rng.random((32, 32)) > 0.5).astype(np.uint8)
    _, m1 = Augmentation(stain=False)(image, mask, np.random.default_rng(5))
    _, m2 = Augmentation(stain=True)(image, mask, np.random.default_rng(5))
    assert np.array_equal(m1, m2)


def test_stain_strength_and_elastic_reach_the_augmentation_are_recorded_and_checked(tmp_path, monkeypatch):
    import dataclasses
    import importlib

    from napari_genselfdiff.core.data.augment import Augmentation

    made = []
    recording = dataclasses.dataclass(frozen=True)(
        type("Recording", (Augmentation,), {"__post_init__": lambda self: made.append(self)}))
    monkeypatch.setattr(importlib.import_module("napari_genselfdiff.core.training.finetune"), "Augmentation", recording)
    common = dict(pairs=_monuseg_pairs(1), arch=ARCH, patch_size=PATCH, stride=PATCH, steps=1, batch=2,
                  validate_every=0, checkpoint_every=0, val_fraction=0.0, precision="fp32")
    out = Returning(finetune(FinetuneConfig(out_dir=str(tmp_path / "run"), stain_jitter=True, stain_strength=2.0,
                                            **common)))
    list(out)
    assert (made[-1].stain, made[-1].stain_scale, made[-1].stain_shift) == (True, 0.5, 0.08)
    info = load_model(out.value)[1]
    assert info.provenance["augmentation"]["stain_strength"] == 2.0
    assert made[-1].elastic is False and info.provenance["augmentation"]["elastic"] is False
    bent = Returning(finetune(FinetuneConfig(out_dir=str(tmp_path / "elastic"), elastic=True, **common)))
    list(bent)
    assert made[-1].elastic is True and load_model(bent.value)[1].provenance["augmentation"]["elastic"] is True
    with pytest.raises(TrainingInputError, match="stain jitter is off"):
        FinetuneConfig(out_dir=str(tmp_path / "off"), stain_strength=2.0, **common).check()
    with pytest.raises(TrainingInputError, match="stain_strength must be > 0"):
        FinetuneConfig(out_dir=str(tmp_path / "zero"), stain_jitter=True, stain_strength=0.0, **common).check()


def test_elastic_deformation_moves_image_labels_and_instance_ids_together():
    """Elastic deformation (U-Net's): the image and its labels go through the same smooth displacement, ids
    stay ids (nearest neighbour), it really bends shapes, it is seeded, and it is drawn after every other
    augmentation, so switching it on leaves the other draws as they were."""
    from napari_genselfdiff.core.data.augment import Augmentation, elastic_deform

    inst = np.zeros((96, 96), np.int32)
    inst[10:40, 10:50], inst[50:90, 30:80] = 3, 7  # two "glands"
    image = np.repeat((inst / 7.0)[..., None], 3, axis=2).astype(np.float32)
    both = np.stack([(inst > 0).astype(np.int32), inst], -1)
    out, moved = elastic_deform(image, both, np.random.default_rng(0), sigma=6.0)
    assert out.shape == image.shape and moved.shape == both.shape and moved.dtype == both.dtype
    assert set(np.unique(moved[..., 1])) <= {0, 3, 7} and np.array_equal(moved[..., 0] > 0, moved[..., 1] > 0)
    # where the labels say "gland 7", the image shows gland 7's grey (up to the bilinear blend at its border)
    inside = ndimage.binary_erosion(moved[..., 1] == 7, iterations=2)
    assert inside.sum() > 500 and np.allclose(out[..., 0][inside], 1.0, atol=1e-5)
    assert not np.array_equal(moved[..., 1], inst)  # the shapes moved: a test that can fail
    again, moved_again = elastic_deform(image, both, np.random.default_rng(0), sigma=6.0)
    assert np.array_equal(out, again) and np.array_equal(moved, moved_again)
    still, kept = elastic_deform(image, inst, np.random.default_rng(0), sigma=0.0)
    assert np.array_equal(kept, inst) and np.allclose(still, image, atol=1e-6)  # no displacement: no change
    # drawn last: without the deformation the earlier draws (flips, turns) come out the same
    plain = Augmentation(color_jitter=False, blur=False)
    bent = Augmentation(color_jitter=False, blur=False, elastic=True, elastic_sigma=0.0)
    assert np.array_equal(plain(image, inst, np.random.default_rng(4))[1], bent(image, inst, np.random.default_rng(4))[1])


def test_finetune_at_a_small_timestep_is_stored_and_used_by_inference(pretrained_run, tmp_path):
    """--timestep 50: the network is fine-tuned at t = 50, the model file says so, segmentation calls it at
    t = 50 (not 0), and a later fine-tune from that file keeps t = 50 unless told otherwise."""
    _, pretrained, _ = pretrained_run
    pairs = _monuseg_pairs(2)
    common = dict(pairs=pairs, arch=ARCH, patch_size=PATCH, stride=PATCH, steps=2, batch=4, validate_every=0,
                  checkpoint_every=0, val_fraction=0.0, precision="fp32")
    _, path = _drain(finetune(FinetuneConfig(out_dir=str(tmp_path / "t50"), init=str(pretrained), timestep=50,
                                             **common)))
    model, info = load_model(path)
    assert info.architecture.segment_timestep == 50 and model.config.segment_timestep == 50
    x = torch.from_numpy(pairs[0][1][:PATCH, :PATCH]).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        default, at_50, at_0 = model(x), model(x, torch.tensor([50])), model(x, torch.tensor([0]))
    torch.testing.assert_close(default, at_50)
    assert (default - at_0).abs().max() > 1e-4  # the embedding of t matters: a test that can fail
    result = segment(model, info, pairs[0][1], InferenceSettings(device="cpu", precision="fp32", tile=64))
    assert result.labels.shape == pairs[0][1].shape[:2]
    # a child of the t = 50 model keeps t = 50; an explicit --timestep 0 goes back to the paper's t = 0
    _, child = _drain(finetune(FinetuneConfig(out_dir=str(tmp_path / "child"), init=str(path), **common)))
    assert load_model(child)[1].architecture.segment_timestep == 50
    _, back = _drain(finetune(FinetuneConfig(out_dir=str(tmp_path / "t0"), init=str(path), timestep=0, **common)))
    assert load_model(back)[1].architecture.segment_timestep == 0
    with pytest.raises(TrainingInputError, match="outside the diffusion process"):
        _drain(finetune(FinetuneConfig(out_dir=str(tmp_path / "bad"), init=str(pretrained), timestep=1000, **common)))


def test_segment_timestep_zero_is_not_written_so_older_readers_open_the_file():
    assert "segment_timestep" not in UNetConfig().to_dict()
    config = UNetConfig().with_segment_timestep(50)
    assert config.to_dict()["segment_timestep"] == 50 and UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="segment_timestep"):
        UNetConfig(segment_timestep=-1)
