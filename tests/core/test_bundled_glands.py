"""The bundled gland model (GlaS): found as ``glands``, at the GlaS resolution, carrying the data's terms,
and segmenting the glands of a held-out GlaS training image (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_genselfdiff.core.export.geojson import labels_to_geojson
from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.resolution import resolve_and_segment
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.metrics import glas_scores
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair
from napari_genselfdiff.core.model_files import bundled_model_path, bundled_models, read_model_info, resolve_model
from napari_genselfdiff.core.progress import run_generator

GLANDS = bundled_model_path("glands")
GLAS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "glas"
pytestmark = pytest.mark.skipif(GLANDS is None, reason="this build bundles no gland model")


def test_gland_model_is_registered_small_and_carries_the_glas_terms():
    assert list(bundled_models())[0] == "nuclei" and "glands" in bundled_models()  # nuclei stay the default
    assert GLANDS.stat().st_size <= 20e6 and GLANDS.with_suffix(".json").is_file()
    info = read_model_info("glands")
    assert info.head == "classes" and [c.name for c in info.classes] == ["background", "Gland"]
    # works at GlaS's pixels shrunk 2x (1.24 um/px); an image that records nothing is taken as GlaS's 0.62
    assert info.mpp == pytest.approx(1.24) and info.input_mpp == pytest.approx(0.62)
    # touching glands are split by the network's own gland distance map, with the splitting chosen on held-out images
    assert info.output == "distance" and {"h", "smooth", "min_size"} <= set(info.postprocess["instances"])
    card = info.card
    for key in ("intended_use", "training_data", "protocol", "metrics", "limits", "licence"):
        assert card.get(key), key
    assert "research use only" in card["licence"].lower()
    assert "MedIA" in card["licence"] or "Medical Image Analysis" in card["licence"]
    assert "TMI" in card["licence"]


def test_gland_model_segments_a_held_out_training_image_and_exports_gland_annotations():
    image_path = GLAS / "images" / "train_4.jpg"  # patient 3: held out from the model's training
    if not image_path.is_file():
        pytest.skip(f"GlaS not found at {GLAS} (../shared/data is absent)")
    model, info = resolve_model("glands")
    image = read_array(image_path)
    settings = InferenceSettings(device="cpu", precision="fp32", instances=True)
    result, _, resolution = run_generator(resolve_and_segment(model, info, image, settings))  # as the CLI does
    assert (resolution.mpp, resolution.source) == (pytest.approx(0.62), "assumed")
    assert result.labels.shape == result.instances.shape == image.shape[:2]
    gt = read_array(GLAS / "masks" / "train_4.png")
    pixel = evaluate_pair((np.asarray(result.labels) > 0).astype(np.uint8), (gt > 0).astype(np.uint8), instances=False)
    objects = glas_scores(np.asarray(result.instances), gt)
    assert pixel["f1"] > 0.75, pixel
    assert objects["f1_object"] > 0.5 and objects["object_dice"] > 0.6, objects
    features = labels_to_geojson(np.asarray(result.labels), info.classes, instances=np.asarray(result.instances))
    props = [f["properties"] for f in features["features"]]
    assert props and all(p["objectType"] == "annotation" and p["classification"]["name"] == "Gland" for p in props)
    json.dumps(features)
