"""Model files: exact round trips, and a clear ModelFileError for everything that is not our file.

A model file is safetensors weights with our JSON metadata in its header; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_genselfdiff.core.errors import ModelFileError
from napari_genselfdiff.core.model_files import (
    SCHEMA_VERSION,
    bundled_model_path,
    load_model,
    read_model_info,
    resolve_model_path,
)
from napari_genselfdiff.core.model_files.schema import METADATA_KEY
from napari_genselfdiff.core.network import PRESETS, AttentionUNet

PROVENANCE = {"data": "MoNuSeg train (30 images)", "steps": 1200, "metrics": {"f1": 0.81, "aji": 0.62}}
CARD = {"intended_use": "research on H&E nuclei", "limits": ["40x only"]}


def _metadata(path) -> dict:
    """The metadata as stored in the safetensors header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[METADATA_KEY])


def test_round_trip_keeps_weights_and_metadata_exactly(make_model):
    network, info, path = make_model("micro", classes=("background", "nucleus", "gland"),
                                     provenance=PROVENANCE, card=CARD, patch_size=128)
    loaded, loaded_info = load_model(path)
    assert not loaded.training
    original = network.state_dict()
    assert set(loaded.state_dict()) == set(original)
    assert all(torch.equal(v, original[k]) for k, v in loaded.state_dict().items())
    assert loaded_info.to_dict() == info.to_dict()
    assert loaded_info.path == path
    assert loaded_info.class_names == ["background", "nucleus", "gland"]
    # The human-readable sidecar mirrors the header.
    sidecar = path.with_suffix(".json")
    assert sidecar.is_file()
    assert json.loads(sidecar.read_text()) == _metadata(path)
    assert _metadata(path)["weights_dtype"] == "float32"
    assert read_model_info(path).to_dict() == info.to_dict()  # metadata alone, without the weights


def test_half_precision_round_trip_is_within_fp16_tolerance(make_model):
    network, info, full = make_model("micro", name="full")
    _, _, half = make_model("micro", name="half", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert _metadata(half)["weights_dtype"] == "float16"
    loaded, _ = load_model(half)
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32  # cast back for inference
        # fp16 keeps 11 significant bits: relative error <= 2**-11, plus subnormal flushing near 0.
        np.testing.assert_allclose(value.numpy(), network.state_dict()[key].numpy(), rtol=2**-11, atol=1e-7)


class _Marker:
    """Unpickling this object creates a file: proof that a loader ran pickle code."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".safetensors"])
def test_a_pickle_is_refused_without_being_unpickled(tmp_path, suffix):
    marker = tmp_path / "unpickled.marker"
    path = tmp_path / f"model{suffix}"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _Marker(marker)}, path)
    with open(path, "rb") as handle:  # sanity check: unpickling this file WOULD create the marker
        torch.load(handle, weights_only=False)
    assert marker.exists()
    marker.unlink()
    for load in (load_model, read_model_info):
        with pytest.raises(ModelFileError, match="pickle"):
            load(path)
    assert not marker.exists()


def test_a_truncated_file_is_refused(make_model, tmp_path):
    _, _, path = make_model("micro")
    data = path.read_bytes()
    cut_weights = tmp_path / "cut_weights.safetensors"
    cut_weights.write_bytes(data[: len(data) // 2])  # header intact, weights cut
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(cut_weights)
    cut_header = tmp_path / "cut_header.safetensors"
    cut_header.write_bytes(data[:100])
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(cut_header)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="too short"):
        load_model(empty)


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(1, 255, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError, match="not a safetensors file|corrupt"):
        load_model(path)


def test_a_safetensors_file_without_our_metadata_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file(AttentionUNet(PRESETS["tiny"]).state_dict(), str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="without napari-genselfdiff metadata"):
        load_model(path)


def _rewrite_metadata(path, out, change) -> None:
    """Copy a model file with its metadata changed by ``change(dict)``."""
    from safetensors.torch import load_file

    meta = _metadata(path)
    change(meta)
    save_file(load_file(str(path)), str(out), metadata={METADATA_KEY: json.dumps(meta)})


def test_a_newer_schema_version_is_refused_with_update_advice(make_model, tmp_path):
    _, _, path = make_model("micro")
    newer = tmp_path / "newer.safetensors"
    _rewrite_metadata(path, newer, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(ModelFileError, match=f"version {SCHEMA_VERSION + 1} is newer.*Update"):
        load_model(newer)


def test_weights_of_another_architecture_are_refused(make_model, tmp_path):
    _, _, path = make_model("micro")
    other = tmp_path / "other.safetensors"
    small = PRESETS["small"].with_head("classes", 2).to_dict()
    _rewrite_metadata(path, other, lambda m: m.update(architecture=small))
    with pytest.raises(ModelFileError, match="do not match the architecture.*mis-shaped"):
        load_model(other)


def test_classes_that_do_not_fit_the_head_are_refused(make_model, tmp_path):
    _, _, path = make_model("micro")
    other = tmp_path / "classes.safetensors"
    _rewrite_metadata(path, other, lambda m: m["classes"].pop())
    with pytest.raises(ModelFileError, match="2 output classes"):
        read_model_info(other)


def test_a_missing_file_and_the_unbundled_default_have_clear_messages(tmp_path, monkeypatch):
    from napari_genselfdiff.core.model_files import store

    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent.safetensors")
    monkeypatch.setattr(store, "BUNDLED_DIR", tmp_path / "no-models")  # an install without the bundled file
    assert bundled_model_path() is None
    for name in ("default", "nuclei"):
        with pytest.raises(ModelFileError, match="no default model is bundled.*--model PATH"):
            resolve_model_path(name)


def test_bundled_models_are_found_by_name_and_new_ones_join_the_registry(make_model, tmp_path, monkeypatch):
    """THE registry: every models/<name>.safetensors is offered by its name; "default" and "nuclei" name
    the default model; a path is a path; an unknown name lists the bundled ones."""
    from napari_genselfdiff.core.model_files import bundled_models, resolve_model, store

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("default_nuclei", "glands"):
        path = make_model("micro", name=name)[2]
        path.rename(folder / path.name)
    monkeypatch.setattr(store, "BUNDLED_DIR", folder)
    assert bundled_models() == {"nuclei": folder / "default_nuclei.safetensors", "glands": folder / "glands.safetensors"}
    assert resolve_model_path("default") == resolve_model_path("nuclei") == folder / "default_nuclei.safetensors"
    network, info = resolve_model("glands")
    assert info.path == folder / "glands.safetensors" and info.head == "classes"
    with pytest.raises(ModelFileError, match="'lungs' is neither a model file nor a bundled model.*nuclei, glands"):
        resolve_model("lungs")
    with pytest.raises(ModelFileError, match="no such model file"):
        resolve_model(tmp_path / "lungs.safetensors")


def test_one_refusal_of_a_pretraining_model_for_every_front_end(make_model):
    """resolve_model refuses a noise model (before reading its weights) with THE message; asked for
    a fine-tuning start it loads it."""
    from napari_genselfdiff.core.model_files import pretraining_model_message, resolve_model

    _, _, path = make_model("micro", head="noise", name="noise")
    with pytest.raises(ModelFileError) as caught:
        resolve_model(path)
    assert str(caught.value) == pretraining_model_message(path) and "Fine-tune it" in str(caught.value)
    network, info = resolve_model(path, segmentation=False)
    assert info.head == "noise" and not network.training


def test_saving_refuses_to_overwrite_when_asked(make_model, tmp_path):
    from napari_genselfdiff.core.model_files import save_model

    network, info, path = make_model("micro")
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_model(path, network, info, overwrite=False)
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary file left behind


def test_header_length_starting_with_pickle_byte_still_loads(tmp_path):
    """A safetensors header length can begin with byte 0x80 (pickle's protocol marker): it must load."""
    from napari_genselfdiff.core.model_files import ModelInfo, default_classes, read_model_info, save_model
    from napari_genselfdiff.core.network import AttentionUNet, UNetConfig

    cfg = UNetConfig(widths=(8, 16), groups=4, attention_heads=1, attention_dim_head=8, head="classes", out_channels=2)
    model = AttentionUNet(cfg)
    for pad in range(300):  # the header length moves by one byte per padding character
        info = ModelInfo(cfg, default_classes(["background", "nucleus"]), provenance={"note": " " * pad})
        path = save_model(tmp_path / "m.safetensors", model, info)
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert read_model_info(path).class_names == ["background", "nucleus"]


def test_display_name_says_what_from_which_data_and_when(make_model):
    """Lists show a model's display name (its card's "name"), not best/last/model.safetensors."""
    import datetime

    when = datetime.datetime(2026, 11, 30, 11, 52, tzinfo=datetime.timezone.utc)
    local = when.astimezone()
    provenance = {"stage": "finetune", "date": when.isoformat(), "steps": 30, "parent": "/models/nuclei.safetensors",
                  "data": {"folders": [], "train_images": ["a", "b", "c"], "val_images": [], "in_memory_arrays": 3}}
    _, info, path = make_model("micro", provenance=provenance, name="best")
    expected = f"nucleus, fine-tuned on 3 corrected images, {local.day} {local:%b}"
    assert info.display_name.startswith(expected) and info.display_name.endswith(f"{local:%H:%M}")
    stored = read_model_info(path)
    assert stored.card["name"] == info.display_name == stored.display_name  # written into the card
    # a card's own name wins; a file from a folder of images says which folder
    _, named, _ = make_model("micro", card={"name": "MoNuSeg nuclei v2"}, name="named")
    assert read_model_info(named.path).display_name == "MoNuSeg nuclei v2"
    folder = {"stage": "finetune", "parent": "scratch", "data": {
        "folders": ["/data/monuseg/train"], "train_images": ["x"] * 24, "val_images": ["y"] * 6, "in_memory_arrays": 0}}
    _, from_folder, _ = make_model("micro", classes=("background", "nucleus", "gland"), provenance=folder, name="f")
    assert from_folder.display_name == "nucleus + gland, trained on 24 images from monuseg/train"  # from scratch
    _, noise, _ = make_model(head="noise", provenance={"stage": "pretrain", "data": {"images": 40, "in_memory_arrays": 40}},
                             name="pre")
    assert noise.display_name == "pretraining model, on 40 open images"
