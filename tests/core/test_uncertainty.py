"""What to correct next: the entropy map, fields ranked by it, and the widget's layer + list."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.inference.uncertainty import entropy_map, rank_fields, segment_with_uncertainty


def test_entropy_is_normalised_and_ranks_the_uncertain_field_first():
    logits = np.zeros((3, 40, 60), np.float32)
    logits[0] = 20.0  # certain everywhere ...
    logits[:, 20:40, 30:60] = 0.0  # ... except one corner: all classes equally likely
    u = entropy_map(logits, rows=7)  # bands of 7 rows give the same map
    assert u.dtype == np.float32 and u.shape == (40, 60)
    assert u[0, 0] < 1e-6 and u[30, 45] == pytest.approx(1.0, abs=1e-5)
    fields = rank_fields(u, 20)
    assert len(fields) == 2 * 3 and (fields[0].y, fields[0].x) == (20, 40)
    assert fields[0].score == pytest.approx(1.0, abs=1e-5) and fields[-1].score < 1e-6
    assert [f.score for f in fields] == sorted((f.score for f in fields), reverse=True)
    # edge fields are smaller; corrected fields are left out
    assert {(f.h, f.w) for f in rank_fields(u, 25)} == {(25, 25), (25, 10), (15, 25), (15, 10)}
    known = np.zeros((40, 60), bool)
    known[20:40, 40:60] = True
    assert (20, 40) not in {(f.y, f.x) for f in rank_fields(u, 20, known=known)}
    with pytest.raises(ValueError):
        entropy_map(np.zeros((1, 4, 4)))


def test_segment_with_uncertainty_matches_plain_segmentation(make_model):
    from napari_genselfdiff.core.inference import InferenceSettings, segment
    from napari_genselfdiff.core.inference.predict import run_generator

    network, info, _ = make_model()
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    settings = InferenceSettings(tile=32, overlap=8, device="cpu", precision="fp32")
    result, u = run_generator(segment_with_uncertainty(network, info, image, settings))
    plain = segment(network, info, image, settings)
    assert np.array_equal(result.labels, plain.labels)
    assert u.shape == (48, 40) and 0.0 <= u.min() and u.max() <= 1.0


def test_flip_uncertainty_is_zero_when_passes_agree_and_one_when_they_contradict():
    from napari_genselfdiff.core.inference.uncertainty import flip_uncertainty

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (3, 30, 20)).astype(np.float32)
    # identical passes: no disagreement, and their mean's entropy is one pass's entropy
    same = [logits, logits.copy(), logits.copy()]
    assert np.abs(flip_uncertainty(same, "flip_disagreement", rows=7)).max() < 1e-5
    assert np.allclose(flip_uncertainty(same, "flip_entropy", rows=7), entropy_map(logits), atol=1e-5)
    # two passes, each certain of another class (K = 2): total disagreement
    a = np.zeros((2, 5, 6), np.float32)
    a[0] = 30.0
    b = a[::-1].copy()
    assert np.allclose(flip_uncertainty([a, b], "flip_disagreement"), 1.0, atol=1e-5)
    assert np.allclose(flip_uncertainty([a, b], "flip_entropy"), 1.0, atol=1e-5)
    # hand-computed: foreground probabilities 0.9 and 0.5 at one pixel
    p1, p2 = 0.9, 0.5
    two = [np.log(np.array([[[1 - p]], [[p]]], np.float32)) for p in (p1, p2)]
    h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)  # noqa: E731
    assert flip_uncertainty(two, "flip_entropy")[0, 0] == pytest.approx(h(0.7), abs=1e-5)
    assert flip_uncertainty(two, "flip_disagreement")[0, 0] == pytest.approx(h(0.7) - (h(p1) + h(p2)) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="method"):
        flip_uncertainty(same, "variance")
    with pytest.raises(ValueError, match="shape"):
        flip_uncertainty([logits, logits[:, :10]])


@pytest.mark.parametrize("method", ["flip_disagreement", "flip_entropy"])
def test_segment_with_flip_uncertainty_matches_passes_over_flipped_images(make_model, method):
    from napari_genselfdiff.core.inference import InferenceSettings, segment
    from napari_genselfdiff.core.inference.predict import run_generator, segment_progressive
    from napari_genselfdiff.core.inference.uncertainty import FLIPS, flip_uncertainty
    from napari_genselfdiff.core.progress import Returning

    network, info, _ = make_model()
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    settings = InferenceSettings(tile=32, overlap=8, device="cpu", precision="fp32")
    events = Returning(segment_with_uncertainty(network, info, image, settings, method=method))
    tiles = [e for e in events if e.get("stage") == "tiles"]
    result, u = events.value
    # the labels are those of the image as it is
    assert np.array_equal(result.labels, segment(network, info, image, settings).labels)
    # progress counts the tiles of all four passes, rising to the end
    one_pass = next(segment_progressive(network, info, image, settings))["total"]
    assert {e["total"] for e in tiles} == {4 * one_pass} and tiles[-1]["done"] == 4 * one_pass
    assert [e["done"] for e in tiles] == sorted(e["done"] for e in tiles)
    # the map is what four separate passes over flipped copies, flipped back, give
    passes = []
    for flip_rows, flip_cols in FLIPS:
        axes = tuple(a for a, f in ((0, flip_rows), (1, flip_cols)) if f)
        flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        logits = np.zeros((2, 48, 40), np.float32)
        run_generator(segment_progressive(network, info, flipped, settings, logits_out=logits))
        passes.append(np.flip(logits, tuple(a + 1 for a in axes)) if axes else logits)
    assert np.allclose(u, flip_uncertainty(passes, method), atol=1e-5)
    assert u.dtype == np.float32 and 0.0 <= u.min() and u.max() <= 1.0 and u.max() > 0
    # channel-first input: the same map
    _, u_chw = run_generator(segment_with_uncertainty(network, info, np.moveaxis(image, -1, 0).copy(), settings,
                                                      method=method))
    assert np.allclose(u_chw, u, atol=1e-5)
    with pytest.raises(ValueError, match="uncertainty method"):
        run_generator(segment_with_uncertainty(network, info, image, settings, method="variance"))
