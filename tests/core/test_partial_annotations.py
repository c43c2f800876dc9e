"""Partial annotations: corrected regions stored with each snapshot, training on them only
(patches from the regions, the loss masked outside), and an export that keeps them apart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_genselfdiff.core.annotations import UNKNOWN_LABEL, AnnotationSet, regions_mask
from napari_genselfdiff.core.data.datasets import PairedPatchDataset, batch_for_step
from napari_genselfdiff.core.data.sampler import StepSampler
from napari_genselfdiff.core.data.sources import load_pairs
from napari_genselfdiff.core.errors import MaskInputError
from napari_genselfdiff.core.losses import LOSSES, SSFocalLoss

from conftest import random_pair


def _pair(seed=0, shape=(64, 80)):
    return random_pair(seed, shape, low=60, high=200)


def test_regions_stored_with_the_snapshot_and_reloaded(tmp_path):
    aset = AnnotationSet(tmp_path / "set")
    image, labels = _pair()
    whole = aset.add(image, labels, name="whole")
    rect = {"type": "rectangle", "points": [[10, 20], [29.4, 39.6]]}
    tri = [[40, 5], [60, 5], [60, 30]]  # an (N, 2) list: a polygon
    part = aset.add(image, labels, name="part", regions=[rect, tri])
    assert not whole.partial and whole.regions is None
    assert part.partial and [r["type"] for r in part.regions] == ["rectangle", "polygon"]

    again = AnnotationSet(tmp_path / "set")
    assert [p.name for p in again.pairs] == ["whole", "part"]
    assert again.load_known(whole.id) is None
    known = again.load_known(part.id)
    assert known.shape == (64, 80) and known[10:30, 20:40].all()
    assert known[50, 10] and not known[0, 0] and not known[45, 28]
    assert 0 < known.mean() < 0.3
    assert "2 region(s)" in again.get(part.id).label
    items = again.training_items()
    assert items[0][3] is None and items[1][3] is not None and items[1][0] == "part"
    # regions that cover everything are a whole-image pair
    full = aset.add(image, labels, name="full", regions=[[[-5, -5], [-5, 90], [70, 90], [70, -5]]])
    assert full.regions is None


def test_old_sets_without_regions_keep_loading(tmp_path):
    aset = AnnotationSet(tmp_path / "set")
    image, labels = _pair()
    pair = aset.add(image, labels, name="old")
    # rewrite the records as version 1 wrote them (no "regions" key, version 1)
    index = json.loads(aset.index_path.read_text())
    index["version"] = 1
    aset.index_path.write_text(json.dumps(index))
    again = AnnotationSet(tmp_path / "set")
    assert again.get(pair.id).regions is None and again.load_known(pair.id) is None
    assert again.repairs == []


def test_region_outside_the_image_and_tiny_regions(tmp_path):
    aset = AnnotationSet(tmp_path / "set")
    image, labels = _pair()
    with pytest.raises(MaskInputError, match="lies outside the image"):
        aset.add(image, labels, name="x", regions=[{"type": "rectangle", "points": [[100, 100], [120, 130]]}])
    with pytest.raises(MaskInputError, match="no corrected region"):
        aset.add(image, labels, name="x", regions=[])
    assert len(aset) == 0
    # a region smaller than a pixel still marks the pixel under it
    assert regions_mask([[[5.1, 5.1], [5.2, 5.1], [5.2, 5.3]]], (10, 10)).sum() >= 1
    # a region half outside is clipped
    mask = regions_mask([{"type": "rectangle", "points": [[-10, -10], [4, 4]]}], (10, 10))
    assert mask[:5, :5].all() and mask.sum() == 25


def test_training_data_samples_regions_and_masks_the_loss():
    image, labels = _pair(shape=(128, 128))
    image[:] = 250  # a nearly empty (white) field ...
    image[70:90, 70:90] = (120, 60, 150)  # ... with a small corrected patch of tissue
    known = np.zeros((128, 128), bool)
    known[70:90, 70:90] = True  # smaller than a 64-px patch
    data = load_pairs(num_classes=2, pairs=[("a", image, labels, known)])
    assert data.masks[0][0, 0] == UNKNOWN_LABEL and "partial annotation" in data.notes[0]
    dataset = PairedPatchDataset(data.images, data.masks, 64, 16)
    assert dataset.partial and len(dataset) > 0 and dataset.index.skipped_unknown > 0
    for i, y, x in dataset.index.origins:  # every patch contains corrected pixels
        assert known[y:y + 64, x:x + 64].any()
    sampler = StepSampler(len(dataset), 4, seed=0)
    x, y, ignore = batch_for_step(dataset, sampler, 1)
    assert ignore.dtype == torch.bool and ignore.shape == y.shape and int(y.max()) <= 1
    assert 0 < ignore.float().mean() < 1

    # labels outside the regions do not change the loss: flip them all and compare
    logits = torch.randn(x.shape[0], 2, 64, 64, requires_grad=True)
    other = torch.where(ignore, 1 - y, y)
    for criterion in (SSFocalLoss(), LOSSES["dice_ce"]()):
        a, _ = criterion(logits, y, ignore)
        b, _ = criterion(logits, other, ignore)
        assert torch.allclose(a, b)
        (grad,) = torch.autograd.grad(a, logits)
        assert float(grad.permute(0, 2, 3, 1)[ignore].abs().max()) == 0.0


def test_whole_pairs_keep_the_two_item_batches():
    image, labels = _pair(shape=(64, 64))
    data = load_pairs(num_classes=2, pairs=[("a", image, labels, None)])
    dataset = PairedPatchDataset(data.images, data.masks, 32, 16)
    assert not dataset.partial and len(dataset[(0, 1)]) == 2


def test_exported_partial_mask_reads_back_as_partial(tmp_path):
    from napari_genselfdiff.core.export import export_annotation_set, rasterize_geometry

    aset = AnnotationSet(tmp_path / "set")
    image, labels = _pair(shape=(48, 64))
    labels[:] = 0
    labels[12:16, 12:16] = 1  # a nucleus inside the region
    labels[40:44, 50:54] = 1  # one outside (not checked by the user)
    from napari_genselfdiff.core.model_files import default_classes

    aset.add(image, labels, name="part", regions=[{"type": "rectangle", "points": [[5, 5], [25, 30]]}],
             classes=default_classes(["background", "nucleus"]))
    report = export_annotation_set(aset, tmp_path / "out", formats=("tif", "geojson"))
    import tifffile

    mask = tifffile.imread(tmp_path / "out" / "part_labels.tif")
    assert mask[0, 0] == UNKNOWN_LABEL and mask[42, 52] == UNKNOWN_LABEL and mask[13, 13] == 1 and mask[6, 6] == 0
    features = json.loads((tmp_path / "out" / "part.geojson").read_text())["features"]
    regions = [f for f in features if f["properties"].get("genselfdiff") == "corrected_region"]
    nuclei = [f for f in features if f not in regions]
    assert len(regions) == 1 and len(nuclei) == 1
    assert np.array_equal(rasterize_geometry(regions[0]["geometry"], (48, 64)), aset.load_known("0001"))
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["unknown_label"] == UNKNOWN_LABEL
    assert len(report.written) == 3
    # the exported mask trains as a partial annotation again
    data = load_pairs(num_classes=2, pairs=[("back", image, mask)])
    assert np.array_equal(data.masks[0] == UNKNOWN_LABEL, ~aset.load_known("0001"))
    # a plain 0/255 binary mask is still a binary mask
    data = load_pairs(num_classes=2, pairs=[("binary", image, (labels * 255).astype(np.uint8))])
    assert set(np.unique(data.masks[0]).tolist()) == {0, 1}


def test_finetune_on_a_partial_pair(tmp_path):
    """The whole fine-tuning path with partial pairs (micro network, 2 steps)."""
    from napari_genselfdiff.core.inference.predict import run_generator
    from napari_genselfdiff.core.training import FinetuneConfig, finetune

    from conftest import micro_config

    image, labels = _pair(shape=(64, 64))
    known = np.zeros((64, 64), bool)
    known[8:24, 8:40] = True
    cfg = FinetuneConfig(pairs=[("a", image, labels, known), ("b", image, labels, None)], out_dir=str(tmp_path / "run"),
                         arch=micro_config(), steps=2, batch=2, patch_size=32, stride=16, val_fraction=0,
                         checkpoint_every=0, device="cpu", precision="fp32", validate_every=0)
    path = run_generator(finetune(cfg))
    assert path is not None and path.exists()
