"""Instance-aware outputs: targets, splitting, the loss, the model file's ``output`` and a short training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_genselfdiff.core.data.datasets import PairedPatchDataset
from napari_genselfdiff.core.data.instance_targets import contour_classes, distance_map, hover_maps, targets_for
from napari_genselfdiff.core.errors import ModelFileError
from napari_genselfdiff.core.inference.instances import (
    split_by_contour,
    split_by_distance,
    split_by_hover,
    split_nuclei,
)
from napari_genselfdiff.core.inference.outputs import network_channels, split_output
from napari_genselfdiff.core.losses import DiceCELoss
from napari_genselfdiff.core.losses.instance_aware import InstanceAwareLoss
from napari_genselfdiff.core.model_files import ModelInfo, default_classes
from napari_genselfdiff.core.network.config import PRESETS


def two_touching_discs(size: int = 64) -> np.ndarray:
    """Two discs of radius 10 whose centres are 18 px apart: one foreground blob, two nuclei."""
    yy, xx = np.mgrid[:size, :size]
    inst = np.zeros((size, size), np.int32)
    inst[(yy - 32) ** 2 + (xx - 22) ** 2 <= 100] = 1
    inst[((yy - 32) ** 2 + (xx - 40) ** 2 <= 100) & (inst == 0)] = 2
    return inst


def test_contour_targets_separate_touching_nuclei():
    inst = two_touching_discs()
    target = contour_classes(inst)
    assert set(np.unique(target)) == {0, 1, 2}
    # the interior of the two nuclei are two separate components: the contour runs between them
    from scipy import ndimage

    assert ndimage.label(target == 1)[1] == 2
    assert ((target > 0) == (inst > 0)).all()


def test_distance_and_hover_targets():
    inst = two_touching_discs()
    d = distance_map(inst)[0]
    assert d.max() == pytest.approx(1.0) and d[inst == 0].max() == 0
    assert d[32, 22] == pytest.approx(1.0) and d[32, 40] > 0.85  # disc 2 is cut by disc 1
    hv = hover_maps(inst)
    assert hv.shape == (2, 64, 64) and hv.min() >= -1 and hv.max() <= 1
    # left of a centre the horizontal map is negative, right of it positive
    assert hv[0, 32, 15] < 0 < hv[0, 32, 28]
    assert hv[1, 25, 22] < 0 < hv[1, 39, 22]
    cls, reg = targets_for("hover", inst, (inst > 0).astype(np.uint8))
    assert reg.shape == (2, 64, 64) and set(np.unique(cls)) == {0, 1}


@pytest.mark.parametrize("kind", ["contour", "distance", "hover"])
def test_each_splitter_splits_two_touching_nuclei_from_perfect_cues(kind):
    inst = two_touching_discs()
    fg = inst > 0
    if kind == "contour":
        labels = split_by_contour(fg, (contour_classes(inst) == 1).astype(np.float32))
    elif kind == "distance":
        labels = split_by_distance(fg, distance_map(inst)[0])
    else:
        labels = split_by_hover(fg, hover_maps(inst))
    assert labels.max() == 2
    assert ((labels > 0) == fg).all()
    # each found nucleus lies mostly in one true nucleus
    for value in (1, 2):
        counts = np.bincount(inst[labels == value], minlength=3)
        assert counts.max() / counts.sum() > 0.9


def test_distance_split_by_threshold_markers_and_their_least_size():
    """split_by_distance(threshold=t): cores of the map above t are the markers; cores under min_marker
    pixels are dropped (their nucleus is then flooded from a neighbour or kept whole)."""
    inst = two_touching_discs()
    fg, d = inst > 0, distance_map(inst)[0]
    labels = split_by_distance(fg, d, threshold=0.5)
    assert labels.max() == 2 and ((labels > 0) == fg).all()
    for value in (1, 2):
        counts = np.bincount(inst[labels == value], minlength=3)
        assert counts.max() / counts.sum() > 0.9
    # a core of ~ pi * 5^2 pixels per disc at t = 0.5: a least size above it leaves no marker, and the blob
    # stays one nucleus rather than being lost
    whole = split_by_distance(fg, d, threshold=0.5, min_marker=200)
    assert whole.max() == 1 and ((whole > 0) == fg).all()
    # without threshold the h-maxima rule is used, as model files that record no threshold expect
    np.testing.assert_array_equal(split_by_distance(fg, d), split_by_distance(fg, d, threshold=None))


def test_split_output_contour_gives_two_class_logits():
    raw = torch.randn(2, 3, 8, 8)
    logits, cue = split_output(raw, "contour", 2)
    p = torch.softmax(raw, 1)
    assert torch.allclose(torch.softmax(logits, 1)[:, 1], p[:, 1] + p[:, 2], atol=1e-6)
    assert torch.allclose(cue[:, 0], p[:, 1], atol=1e-6)
    logits, cue = split_output(torch.randn(1, 4, 8, 8), "hover", 2)
    assert logits.shape[1] == 2 and cue.shape[1] == 2 and cue.abs().max() <= 1


def test_model_file_records_output_and_old_files_read_as_classes():
    arch = PRESETS["tiny"].with_head("classes", network_channels("contour", 2))
    info = ModelInfo(architecture=arch, classes=default_classes(["background", "nucleus"]), output="contour")
    values = info.to_dict()
    assert values["output"] == "contour"
    assert ModelInfo.from_dict(values).output == "contour"
    # a file without the key (every file before instance-aware outputs) is a "classes" model
    plain = ModelInfo(architecture=PRESETS["tiny"].with_head("classes", 2), classes=info.classes).to_dict()
    assert "output" not in plain and ModelInfo.from_dict(plain).output == "classes"
    # channels that do not fit the output are refused with the reason
    values["output"] = "hover"
    with pytest.raises(ModelFileError, match="needs 4"):
        ModelInfo.from_dict(values)


def test_split_nuclei_without_cue_falls_back_to_the_watershed():
    inst = two_touching_discs()
    info = ModelInfo(architecture=PRESETS["tiny"].with_head("classes", 3),
                     classes=default_classes(["background", "nucleus"]), output="contour")
    assert split_nuclei(inst > 0, None, info).max() == 2  # distance-transform watershed


def test_instance_aware_loss_falls_when_the_cue_is_right():
    inst = torch.from_numpy(two_touching_discs(32)[16:48, 8:40].copy())
    cls, reg = targets_for("distance", inst.numpy(), (inst.numpy() > 0).astype(np.uint8))
    cls, reg = torch.from_numpy(cls)[None], torch.from_numpy(reg)[None]
    loss = InstanceAwareLoss("distance", DiceCELoss())
    good = torch.cat([torch.stack([(cls == 0), (cls == 1)], 1).float() * 10, torch.logit(reg.clamp(1e-3, 1 - 1e-3))], 1)
    bad = good.clone()
    bad[:, 2] = -good[:, 2]
    assert loss(good, cls, reg)[0] < loss(bad, cls, reg)[0]


def test_cue_weight_scales_only_the_map_term():
    inst = torch.from_numpy(two_touching_discs(32)[16:48, 8:40].copy())
    cls, reg = targets_for("distance", inst.numpy(), (inst.numpy() > 0).astype(np.uint8))
    cls, reg = torch.from_numpy(cls)[None], torch.from_numpy(reg)[None]
    raw = torch.randn(1, 3, *cls.shape[-2:], generator=torch.Generator().manual_seed(0))
    one, parts = InstanceAwareLoss("distance", DiceCELoss())(raw, cls, reg)
    three, _ = InstanceAwareLoss("distance", DiceCELoss(), regression_weight=3.0)(raw, cls, reg)
    torch.testing.assert_close(three - one, 2 * parts["mse"], rtol=1e-5, atol=1e-6)


def test_cue_weight_is_refused_where_there_is_no_map(tmp_path):
    from napari_genselfdiff.core.errors import TrainingInputError
    from napari_genselfdiff.core.progress import run_generator
    from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune

    image = np.full((64, 64, 3), 200, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    for output in ("classes", "contour"):
        cfg = FinetuneConfig(pairs=[("a", image, mask)], out_dir=str(tmp_path / output), arch="tiny", output=output,
                             steps=1, batch=1, patch_size=64, val_fraction=0, cue_weight=3.0)
        with pytest.raises(TrainingInputError, match="cue_weight weighs the loss of a distance or direction map"):
            run_generator(finetune(cfg))
        assert not (tmp_path / output).exists()  # refused before the run folder is made
    with pytest.raises(TrainingInputError, match="cue_weight must be > 0"):
        FinetuneConfig(pairs=[], cue_weight=0).check()


def test_dataset_rescales_and_keeps_instance_ids_with_the_image():
    rng = np.random.default_rng(0)
    inst = np.zeros((128, 128), np.int32)
    inst[20:40, 20:40], inst[60:90, 50:80] = 1, 2
    image = np.where(inst[..., None] > 0, 60, 220).astype(np.uint8) + rng.integers(0, 5, (128, 128, 3)).astype(np.uint8)
    ds = PairedPatchDataset([image], [(inst > 0).astype(np.uint8)], 64, 32, output="contour", instances=[inst],
                            scale_range=(0.5, 0.5), skip_background=False)
    x, target, regression, ignore = ds[(0, 1)]
    assert x.shape == (3, 64, 64) and target.shape == (64, 64) and regression.shape[0] == 0
    # at 0.5x a 128-px window became the 64-px patch: nuclei dark in the image, contour class on them
    dark = x.mean(0) < 0
    assert ((target > 0) == dark).float().mean() > 0.95
    assert not ignore.any()


def test_finetune_contour_runs_and_segments_instances(tmp_path):
    from napari_genselfdiff.core.inference import InferenceSettings, segment
    from napari_genselfdiff.core.model_files import load_model
    from napari_genselfdiff.core.progress import run_generator
    from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune

    torch.manual_seed(0)
    inst = np.zeros((96, 96), np.int32)
    for k, (y, x) in enumerate([(20, 20), (20, 40), (60, 60), (70, 25)], start=1):
        yy, xx = np.mgrid[:96, :96]
        inst[((yy - y) ** 2 + (xx - x) ** 2 <= 81) & (inst == 0)] = k
    image = np.where(inst[..., None] > 0, 70, 215).astype(np.uint8).repeat(3, -1)[..., :3]
    cfg = FinetuneConfig(pairs=[("a", image, (inst > 0).astype(np.uint8))], instances={"a": inst}, out_dir=str(tmp_path),
                         arch="tiny", output="contour", steps=3, batch=2, patch_size=64, stride=32, val_fraction=0,
                         precision="fp32", skip_background=False)
    path = run_generator(finetune(cfg))
    model, info = load_model(path)
    assert info.output == "contour" and model.config.out_channels == 3
    assert info.provenance["loss"]["regression_weight"] == 1.0
    result = segment(model, info, image, InferenceSettings(tile=64, overlap=16, precision="fp32", instances=True))
    assert result.labels.shape == (96, 96) and set(np.unique(result.labels)) <= {0, 1}
    assert result.instances is not None and result.instances.shape == (96, 96)


def test_slides_split_nuclei_with_the_models_cue(tmp_path, monkeypatch):
    """A slide run keeps an instance-aware model's cue beside the labels and splits each block with it."""
    import json

    from napari_genselfdiff.core.inference import InferenceSettings, instances as instances_module
    from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide
    from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide
    from napari_genselfdiff.core.network import AttentionUNet

    from conftest import micro_config

    torch.manual_seed(0)
    arch = micro_config(network_channels("hover", 2))
    net = AttentionUNet(arch).eval()
    with torch.no_grad():  # foreground everywhere, flat direction maps: one split per block's foreground
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    info = ModelInfo(architecture=arch, classes=default_classes(["background", "nucleus"]), output="hover", mpp=0.25)
    slide = write_synthetic_slide(tmp_path / "s.svs", 300, 400, mpp=0.25, flavour="aperio", tissue_fraction=0.5,
                                  tile=128, n_levels=1, seed=1).path
    seen = []
    real = instances_module.split_nuclei

    def spy(foreground, cue, model_info):
        seen.append(None if cue is None else cue.shape)
        return real(foreground, cue, model_info)

    monkeypatch.setattr(instances_module, "split_nuclei", spy)
    fast = InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16)
    result = segment_slide(net, info, slide, tmp_path / "out",
                           SlideSettings(inference=fast, tissue=False, instances=True, instance_block=128,
                                         instance_margin=32))
    assert seen and all(shape is not None and shape[0] == 2 for shape in seen)
    assert json.loads(result.geojson.read_text())["type"] == "FeatureCollection"
    assert not any(p.name == "instance_cue" for p in result.labels_store.rglob("*"))
