"""Segmenting a slide again never replaces a finished labels store silently: the store may
hold corrections saved from napari (core/io/labels_store.py: write_labels_region). The slide widget
writes the new labels next to it (``<stem>_labels-2.zarr``, ``-3``, ...: the first free name) and says
so; the CLI refuses and names the store and ``--overwrite``.

Slides are synthetic (core/io/synthetic_slide.py), the network is the "micro" U-Net of conftest.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.slide import SlideSettings, free_output_suffix, segment_slide
from napari_genselfdiff.core.io.labels_store import open_labels_store, read_labels_region, write_labels_region
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

FAST = InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16)


def _files(store: Path) -> dict[str, str]:
    """Every file of a store, by relative path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


def test_the_free_suffix_skips_finished_outputs_only(tmp_path):
    assert free_output_suffix(tmp_path, "s", instances=False) == ""
    (tmp_path / "s_labels.zarr.partial").mkdir()  # a cancelled run keeps its name: Segment continues it
    assert free_output_suffix(tmp_path, "s", instances=False) == ""
    (tmp_path / "s_labels.zarr").mkdir()
    (tmp_path / "s_labels-2.zarr").mkdir()
    assert free_output_suffix(tmp_path, "s", instances=False) == "-3"
    (tmp_path / "s_nuclei-3.geojson").write_text("{}")  # with nuclei, the GeoJSON's name must be free too
    assert free_output_suffix(tmp_path, "s", instances=False) == "-3"
    assert free_output_suffix(tmp_path, "s", instances=True) == "-4"


def test_the_core_refuses_to_replace_a_corrected_store_without_overwrite(tmp_path, make_model):
    slide = write_synthetic_slide(tmp_path / "s.svs", 600, 800, mpp=0.25, tissue_fraction=0.6, tile=128,
                                  n_levels=2, seed=4).path
    net, info, _ = make_model()
    first = segment_slide(net, info, slide, tmp_path / "out", SlideSettings(inference=FAST, region=(0, 0, 300, 200)))
    patch = 1 - read_labels_region(open_labels_store(first.labels_store), 20, 30, 64, 48)
    write_labels_region(first.labels_store, 20, 30, patch)
    before = _files(first.labels_store)
    with pytest.raises(FileExistsError, match=r"s_labels\.zarr exists; pass --overwrite to replace it \(that "
                                              r"discards any corrections saved in it\), or --out another folder"):
        segment_slide(net, info, slide, tmp_path / "out", SlideSettings(inference=FAST, region=(400, 300, 200, 200)))
    assert _files(first.labels_store) == before
    assert not (tmp_path / "out" / "s_labels.zarr.partial").exists()  # refused before any work


