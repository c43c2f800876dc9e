"""Fine-tuning on corrections (core/training/corrections.py): the settings the widget starts from reach
the run, the set's stored nuclei reach instance-aware training, and batch-norm statistics can be kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_genselfdiff.core.annotations import AnnotationSet
from napari_genselfdiff.core.progress import run_generator
from napari_genselfdiff.core.training import finetune
from napari_genselfdiff.core.training.corrections import CORRECTION_RECIPE, corrections_config, patch_stride

from conftest import micro_config, random_pair


def _set_with_nuclei(folder):
    aset = AnnotationSet(folder)
    image, labels = random_pair(0, (64, 64), low=60, high=200)
    instances = np.zeros((64, 64), np.int32)
    instances[8:20, 8:20], instances[8:20, 20:30] = 1, 2  # two touching nuclei: one blob in the labels
    labels = (instances > 0).astype(np.uint8)
    aset.add(image, labels, name="a", instances=instances)
    aset.add(image, labels, name="b")  # no nuclei stored
    aset.add(image, labels, name="c", instances=instances)
    aset.add(image, labels, name="c", instances=instances)  # the same name twice
    return aset, instances


def test_the_recipe_and_the_boxes_reach_the_run(tmp_path):
    aset, _ = _set_with_nuclei(tmp_path / "set")
    recipe = CORRECTION_RECIPE.with_(lr=3e-4, loss="dice_ce", betas=(0.9, 0.999), stain_jitter=True, freeze_norm=True,
                                     scale_range=(0.5, 1.5))
    cfg = corrections_config(aset.training_items(), init="scratch", out_dir=str(tmp_path / "run"), recipe=recipe,
                             steps=40, patch=96, seed=3)
    assert (cfg.lr, cfg.loss, cfg.betas, cfg.stain_jitter, cfg.freeze_norm) == (3e-4, "dice_ce", [0.9, 0.999], True, True)
    assert cfg.scale_range == [0.5, 1.5]
    assert (cfg.steps, cfg.patch_size, cfg.stride, cfg.batch, cfg.seed) == (40, 96, patch_stride(96), recipe.batch, 3)
    assert cfg.checkpoint_every == 10  # a model every quarter of the run ("Use the model so far")
    assert len(cfg.pairs) == 4 and cfg.instances is None  # use_instances off
    with pytest.raises(ValueError, match="unknown correction setting"):
        CORRECTION_RECIPE.with_(learning_rate=1)


def test_stored_nuclei_reach_instance_aware_training_by_unique_name(tmp_path):
    aset, instances = _set_with_nuclei(tmp_path / "set")
    assert sorted(aset.training_instances()) == ["a", "c"]
    cfg = corrections_config(aset.training_items(), init="scratch", out_dir=str(tmp_path / "run"),
                             recipe=CORRECTION_RECIPE.with_(use_instances=True), instances=aset.training_instances())
    # "b" has none stored (split from its labels); "c" names two pairs, so neither is trusted
    assert sorted(cfg.instances) == ["a"]
    np.testing.assert_array_equal(cfg.instances["a"], instances)


def _bn_stats(model):
    return [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_norm_keeps_the_batch_norm_statistics(tmp_path, make_model, freeze):
    from napari_genselfdiff.core.model_files import load_model

    arch = dataclasses.replace(micro_config(), norm="batch")
    model, _, path = make_model(arch, classes=("background", "nucleus"))
    before = _bn_stats(model)
    assert before, "the model has batch-norm layers"
    image, labels = random_pair(1, (64, 64), low=60, high=200)
    cfg = corrections_config([("x", image, labels, None)], init=str(path), out_dir=str(tmp_path / "run"),
                             recipe=CORRECTION_RECIPE.with_(freeze_norm=freeze), steps=3, batch=2, patch=32,
                             val_fraction=0.0, precision="fp32")
    out = run_generator(finetune(cfg))
    tuned, _ = load_model(out)
    after = _bn_stats(tuned)
    same = all(torch.equal(a, b) for a, b in zip(before, after))
    assert same is freeze
    weights_moved = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), tuned.state_dict().values())
                        if a.dtype.is_floating_point)
    assert weights_moved


def test_pretraining_can_continue_from_a_models_backbone(tmp_path, make_model):
    """Background pretraining on a lab's unlabeled images may start from the model in use (issue 25):
    its network and backbone weights, a fresh noise head."""
    from napari_genselfdiff.core.model_files import load_model
    from napari_genselfdiff.core.network.unet import HEAD_PREFIX
    from napari_genselfdiff.core.training import PretrainConfig, pretrain

    parent, _, path = make_model(classes=("background", "nucleus"))
    images = [random_pair(s, (64, 64), low=60, high=200)[0] for s in range(2)]
    cfg = PretrainConfig(images=images, out_dir=str(tmp_path / "pre"), init=str(path), arch="tiny", steps=1,
                         batch=2, patch_size=32, stride=32, lr=1e-12, precision="fp32", checkpoint_every=0)
    out = run_generator(pretrain(cfg))
    model, info = load_model(out)
    assert info.head == "noise" and info.architecture.widths == parent.config.widths  # not "tiny"
    params = dict(parent.named_parameters())
    for name, value in model.named_parameters():
        if not name.startswith(HEAD_PREFIX):
            torch.testing.assert_close(value, params[name], atol=1e-6, rtol=0)
    assert info.provenance["parent"] == str(path)


def _distance_from(model, tuned) -> float:
    start = dict(model.named_parameters())
    return float(sum(((w.float() - start[n].float()) ** 2).sum() for n, w in tuned.named_parameters()))


def test_anchor_keeps_the_weights_near_the_starting_models(tmp_path, make_model):
    """L2-SP (FinetuneConfig.anchor): the same run with a strong anchor ends nearer the starting weights."""
    from napari_genselfdiff.core.model_files import load_model

    model, _, path = make_model(classes=("background", "nucleus"))
    image, labels = random_pair(1, (64, 64), low=60, high=200)
    distance = {}
    for anchor in (0.0, 1e4):
        cfg = corrections_config([("x", image, labels, None)], init=str(path), out_dir=str(tmp_path / f"a{anchor}"),
                                 recipe=CORRECTION_RECIPE.with_(anchor=anchor, lr=1e-2), steps=6, batch=2, patch=32,
                                 val_fraction=0.0, precision="fp32")
        assert cfg.anchor == anchor
        tuned, info = load_model(run_generator(finetune(cfg)))
        assert info.provenance["anchor"] == anchor
        distance[anchor] = _distance_from(model, tuned)
    assert distance[0.0] > 0
    assert distance[1e4] < 0.2 * distance[0.0]


def test_anchor_needs_a_starting_model():
    from napari_genselfdiff.core.errors import TrainingInputError
    from napari_genselfdiff.core.training import FinetuneConfig

    with pytest.raises(TrainingInputError, match="anchor"):
        FinetuneConfig(pairs=[], init="scratch", anchor=1.0).check()
    with pytest.raises(TrainingInputError, match="anchor must be >= 0"):
        FinetuneConfig(pairs=[], init="model.safetensors", anchor=-1.0).check()


def test_the_suggested_steps_grow_with_the_corrected_pixels(tmp_path):
    """200 steps per corrected megapixel between the recipe's 200 and 600 (the replay: one image peaks at 200,
    three images gain up to 600); a partial pair counts its corrected regions only."""
    from napari_genselfdiff.core.training.corrections import (
        MAX_SUGGESTED_STEPS,
        corrected_pixels,
        suggested_steps,
    )

    assert [suggested_steps(p) for p in (0, 262_144, 1_000_000, 1_000_001, 2_000_000, 3_000_000, 9_000_000)] == [
        200, 200, 200, 300, 400, 600, MAX_SUGGESTED_STEPS]
    assert suggested_steps(3_000_000, CORRECTION_RECIPE.with_(steps=800)) == 800  # never below the recipe's
    aset = AnnotationSet(tmp_path / "set")
    image, labels = random_pair(0, (200, 300), low=60, high=200)
    aset.add(image, labels, name="whole")
    aset.add(image, labels, name="field", regions=[[[10, 20], [10, 70], [60, 70], [60, 20]]])
    assert corrected_pixels(aset.pairs) == 200 * 300 + 51 * 51  # the polygon with its border pixels
