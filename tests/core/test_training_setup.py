"""What both training stages share, written once (core/training/run.py, settings.py, checkpoint.py):
the checks of a configuration, the set-up of network / optimizer / resume, and ONE metadata schema --
a checkpoint embeds the ModelInfo of the model the run would export, and checkpoints of the first
format (architecture + per-stage "extra" dicts) still load, sample and resume exactly. Also: the
paper's protocol is the configurations' defaults plus src_train/configs/paper.json.

The runs are tiny (a 2-level network, 32-pixel patches, a few steps) on a real H&E crop (the bundled
sample and its expert nucleus outlines), so each takes seconds on a 2-core CPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_genselfdiff.core.defaults import SAMPLE_IMAGE, SAMPLE_INSTANCES
from napari_genselfdiff.core.errors import ModelFileError, TrainingInputError
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.model_files import load_model
from napari_genselfdiff.core.progress import run_generator
from napari_genselfdiff.core.training import FinetuneConfig, PretrainConfig, finetune, pretrain, sample_preview
from napari_genselfdiff.core.training.checkpoint import (
    METADATA_KEY,
    find_latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_metadata,
)

ARCH = {"widths": [8, 16], "groups": 4, "attention_heads": 1, "attention_dim_head": 8}
ROOT = Path(__file__).resolve().parents[2]
RUN = dict(patch_size=32, stride=32, batch=2, device="cpu", precision="fp32")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def he_crop() -> tuple[np.ndarray, np.ndarray]:
    """96x96 of the bundled H&E sample and its nucleus mask (0/1)."""
    image = np.asarray(read_array(SAMPLE_IMAGE))[:96, :96, :3].copy()
    mask = (np.asarray(read_array(SAMPLE_INSTANCES))[:96, :96] > 0).astype(np.uint8)
    assert 0.05 < mask.mean() < 0.6  # real nuclei in the crop
    return image, mask


def _pairs(he_crop):
    image, mask = he_crop
    return [("a", image, mask), ("b", image[::-1].copy(), mask[::-1].copy())]


def _finetune_cfg(he_crop, out: Path, steps: int, **more) -> FinetuneConfig:
    values = dict(pairs=_pairs(he_crop), out_dir=str(out), arch=ARCH, steps=steps, checkpoint_every=2,
                  val_fraction=0.5, validate_every=2, val_tile=64, **RUN)
    values.update(more)
    return FinetuneConfig(**values)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def _without_run_details(info_dict: dict) -> dict:
    """A ModelInfo dict without what differs between a checkpoint and the exported file by nature:
    the writing date and the model card (written by save_model), and the final loss (known only at
    the end)."""
    values = json.loads(json.dumps(info_dict))
    values.pop("card", None)
    values["provenance"].pop("date", None)
    values["provenance"].pop("final_loss", None)
    return values


def _as_format_1(path: Path) -> None:
    """Rewrite a checkpoint as the first format wrote it (same tensors): ``architecture`` and one
    ``extra`` dict that mixed the stage's metadata (pretraining: diffusion, normalization,
    patch_size; fine-tuning: class names, normalization, patch_size) with the best score so far."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()[METADATA_KEY])
    info = meta.pop("model_info")
    state = meta.pop("stage_state")
    if meta["stage"] == "pretrain":
        extra = {"diffusion": info["diffusion"], "normalization": info["normalization"],
                 "patch_size": info["patch_size"]}
    else:
        extra = {**state, "classes": [c["name"] for c in info["classes"]], "normalization": info["normalization"],
                 "patch_size": info["patch_size"]}
    old = {"format_version": 1, "stage": meta["stage"], "step": meta["step"], "epoch": meta["epoch"],
           "architecture": info["architecture"], "config": meta["config"], "extra": extra,
           "optimizer": meta["optimizer"], "scaler": meta["scaler"], "rng": meta["rng"]}
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(old)})
    assert "model_info" not in read_checkpoint_metadata(path)


# ------------------------------------------------------------------------------ one metadata schema
def test_a_pretraining_checkpoint_embeds_the_model_info_it_exports(he_crop, tmp_path):
    cfg = PretrainConfig(images=[("a", he_crop[0])], out_dir=str(tmp_path), arch=ARCH, steps=2,
                         checkpoint_every=2, timesteps=50, **RUN)
    path = run_generator(pretrain(cfg))
    state = load_checkpoint(find_latest_checkpoint(tmp_path))
    exported = load_model(path)[1]
    assert state.info.head == "noise" and state.info.diffusion["timesteps"] == 50 and state.info.patch_size == 32
    assert _without_run_details(state.info.to_dict()) == _without_run_details(exported.to_dict())
    assert state.architecture == exported.architecture and state.stage_state == {}
    # the preview reads its settings from that ModelInfo: the checkpoint samples as the model file does
    from_checkpoint = sample_preview(state.path, n=1, steps=2, device="cpu")
    assert from_checkpoint.shape == (1, 32, 32, 3)  # the patch size recorded, not a fallback
    np.testing.assert_array_equal(from_checkpoint, sample_preview(path, n=1, steps=2, device="cpu"))


def test_a_finetuning_checkpoint_embeds_the_model_info_it_exports(he_crop, tmp_path):
    path = run_generator(finetune(_finetune_cfg(he_crop, tmp_path, steps=2, classes=["background", "nuclei"])))
    state = load_checkpoint(find_latest_checkpoint(tmp_path))
    last = load_model(tmp_path / "last.safetensors")[1]
    assert [c.name for c in state.info.classes] == ["background", "nuclei"]
    assert state.info.provenance["metrics"] == last.provenance["metrics"] != {}  # the step-2 validation
    assert _without_run_details(state.info.to_dict()) == _without_run_details(last.to_dict())
    assert state.stage_state["best_step"] == 2 and path.name == "best.safetensors"
    with pytest.raises(ModelFileError, match="is a fine-tuning checkpoint; samples need a pretrained"):
        sample_preview(state.path, n=1, steps=2, device="cpu")


def test_a_first_format_pretraining_checkpoint_loads_and_samples_the_same(he_crop, tmp_path):
    cfg = PretrainConfig(images=[("a", he_crop[0])], out_dir=str(tmp_path), arch=ARCH, steps=2,
                         checkpoint_every=2, timesteps=50, **RUN)
    run_generator(pretrain(cfg))
    path = find_latest_checkpoint(tmp_path)
    new = load_checkpoint(path)
    expected = sample_preview(path, n=2, steps=2, device="cpu")
    _as_format_1(path)
    old = load_checkpoint(path)
    assert old.info.diffusion == new.info.diffusion and old.info.normalization == new.info.normalization
    assert old.info.patch_size == 32 and old.info.classes == [] and old.architecture == new.architecture
    assert old.stage_state == {} and old.step == 2
    np.testing.assert_array_equal(sample_preview(path, n=2, steps=2, device="cpu"), expected)
    np.testing.assert_array_equal(sample_preview(tmp_path, n=2, steps=2, device="cpu"), expected)  # run folder


def test_a_first_format_finetuning_checkpoint_resumes_exactly(he_crop, tmp_path):
    whole = run_generator(finetune(_finetune_cfg(he_crop, tmp_path / "whole", steps=6)))
    run_generator(finetune(_finetune_cfg(he_crop, tmp_path / "split", steps=4)))
    for _, path in list_checkpoints(tmp_path / "split"):
        _as_format_1(path)
    old = load_checkpoint(find_latest_checkpoint(tmp_path / "split"))
    assert [c.name for c in old.info.classes] == ["background", "nucleus"] and old.info.patch_size == 32
    assert set(old.stage_state) == {"best_score", "best_step", "best_metrics"}  # the metadata left "extra"
    resumed = run_generator(finetune(_finetune_cfg(he_crop, tmp_path / "split", steps=6, resume=True)))
    assert resumed.name == whole.name
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_model(resumed)[1].provenance["metrics"] == load_model(whole)[1].provenance["metrics"]
    # the checkpoints written after the resume are of the current format
    assert "model_info" in read_checkpoint_metadata(find_latest_checkpoint(tmp_path / "split"))


# ------------------------------------------------------------------------------ one set of checks
def test_both_stages_refuse_a_patch_the_network_cannot_halve_with_one_message(he_crop, tmp_path):
    arch = {**ARCH, "widths": [8, 16, 16]}  # 3 levels: patches must be multiples of 4
    message = r"patch size 30 must be a multiple of 4 for this network \(3 levels\)"
    with pytest.raises(TrainingInputError, match=message):
        run_generator(pretrain(PretrainConfig(images=[("a", he_crop[0])], out_dir=str(tmp_path / "p"), arch=arch,
                                              steps=1, **{**RUN, "patch_size": 30})))
    with pytest.raises(TrainingInputError, match=message):
        run_generator(finetune(_finetune_cfg(he_crop, tmp_path / "f", steps=1, arch=arch, patch_size=30)))
    for name, value in (("stride", 0), ("steps", -1), ("batch", 0)):
        for cfg in (PretrainConfig(**{name: value}), FinetuneConfig(**{name: value})):
            with pytest.raises(TrainingInputError, match=name):
                cfg.check()


# ------------------------------------------------------------------------------ the paper's protocol
def _common():
    spec = importlib.util.spec_from_file_location("src_train_common_for_setup", ROOT / "src_train" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "src_train"))
    spec.loader.exec_module(module)
    return module


def test_defaults_plus_paper_json_are_the_paper_protocol():
    """The reference code (../shared/notes/reference-code-facts.md): full U-Net, 256 px patches at
    stride 64, T = 1000 scaled-linear with P2 k = gamma = 1, Adam lr 1e-4, batch 8, 100 epochs and
    flips for pretraining; betas (0.5, 0.999), SS + 1.0 focal, 150 epochs, flips + colour jitter +
    blur (no 90-degree turns) for fine-tuning."""
    common = _common()
    paper = ROOT / "src_train" / "configs" / "paper.json"
    pre = common.build_config(PretrainConfig, common.make_parser(PretrainConfig, "").parse_args(
        ["--config", str(paper), "--images", "x"]), "pretrain")
    fine = common.build_config(FinetuneConfig, common.make_parser(FinetuneConfig, "").parse_args(
        ["--config", str(paper)]), "finetune")
    pretrain_module = importlib.import_module("napari_genselfdiff.core.training.pretrain")
    finetune_module = importlib.import_module("napari_genselfdiff.core.training.finetune")
    for cfg in (pre, fine):
        assert (cfg.arch, cfg.patch_size, cfg.stride, cfg.batch, cfg.lr) == ("paper", 256, 64, 8, 1e-4)
        assert (cfg.steps, cfg.epochs, cfg.lr_schedule, cfg.grad_clip) == (None, None, "constant", None)
        assert cfg.flips and not cfg.rot90
    assert (pre.schedule, pre.timesteps, pre.p2_k, pre.p2_gamma) == ("scaled_linear", 1000, 1.0, 1.0)
    assert pretrain_module.PAPER_EPOCHS == 100 and finetune_module.PAPER_EPOCHS == 150
    assert (list(fine.betas), fine.lam, fine.loss) == ([0.5, 0.999], 1.0, "ss_focal")
    assert fine.color_jitter and fine.blur and not fine.stain_jitter
    # paper.json holds only what differs from the defaults
    written = json.loads(paper.read_text())
    for section, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
        default = cls()
        assert all(getattr(default, k) != v for k, v in written[section].items()), section


def test_a_finetuned_model_inherits_its_parents_resolution_and_card(he_crop, tmp_path, make_model):
    """The child of a model recorded at 0.25 um/px is at 0.25 um/px too, and keeps the
    card fields that stay true for it (intended use, limits, licence) with its parent's name."""
    from napari_genselfdiff.core.network import UNetConfig

    card = {"name": "Parent nuclei", "intended_use": "research on H&E", "limits": "40x only",
            "licence": "CC-BY-4.0", "metrics": {"f1": 0.8}}
    _, _, parent = make_model(preset=UNetConfig(**ARCH), name="parent", mpp=0.25, card=card)
    path = run_generator(finetune(_finetune_cfg(he_crop, tmp_path / "child", steps=1, init=str(parent),
                                                validate_every=0, val_fraction=0.0)))
    child = load_model(path)[1]
    assert child.mpp == 0.25
    assert {k: child.card[k] for k in ("intended_use", "limits", "licence")} == {
        k: card[k] for k in ("intended_use", "limits", "licence")}
    assert child.card["fine_tuned_from"] == "Parent nuclei"
    assert "metrics" not in child.card and child.display_name != "Parent nuclei"  # its own name, not the parent's
