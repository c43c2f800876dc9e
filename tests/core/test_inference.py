"""Tiled inference: tiles blend seamlessly, cover every image size, and accept every input form.

The networks are the "micro" test configuration (conftest.micro_config), randomly initialised: these
tests check the tiling machinery, not segmentation quality.

Every segmentation here states ``precision="fp32"``: the comparisons (1e-4 equality with a direct
float32 forward, bit-for-bit strips) are float32 facts, and "auto" would pick bf16 on CPUs that
compute it natively. The bf16 path has its own test, with tolerances bf16 justifies
(``test_bf16_inference_stays_close_to_fp32``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_genselfdiff.core.inference import InferenceSettings, plan_tiles, segment, segment_progressive
from napari_genselfdiff.core.inference.tiling import blend_window
from napari_genselfdiff.core.model_files import ModelInfo, default_classes
from napari_genselfdiff.core.network import AttentionUNet
from napari_genselfdiff.core.progress import Returning

from conftest import micro_config, synthetic_he


@pytest.fixture(scope="module")
def micro():
    """(network, info): a random 2-class micro network."""
    torch.manual_seed(0)
    config = micro_config()
    return AttentionUNet(config).eval(), ModelInfo(architecture=config, classes=default_classes(["background", "nucleus"]))


def forward_logits(network, info, rgb_uint8: np.ndarray) -> np.ndarray:
    """The network on the whole (H, W, 3) uint8 image at once: (classes, H, W) logits."""
    x = torch.from_numpy(rgb_uint8.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        return network(info.normalization.apply(x))[0].numpy()


SIDE, TILE, OVERLAP = 256, 160, 48  # 2 x 2 tiles of 152 px overlapping by 48 px


@pytest.fixture(scope="module")
def textured(micro):
    """A SIDE x SIDE textured H&E-like image, its tiled logits and result (2 x 2 tiles)."""
    network, info = micro
    image = synthetic_he(SIDE, SIDE, seed=1)
    logits = np.zeros((2, SIDE, SIDE), np.float32)
    settings = InferenceSettings(tile=TILE, overlap=OVERLAP, device="cpu", precision="fp32")
    result = segment(network, info, image, settings, logits_out=logits)
    return image, logits, result


def test_tiled_blending_equals_a_hand_blend_of_per_tile_forwards(micro, textured):
    # The band buffer must give exactly the raised-cosine blend of independent per-tile forwards:
    # this isolates the blending/banding code from the network's per-tile statistics.
    network, info = micro
    image, logits, result = textured
    plan = plan_tiles(SIDE, SIDE, max_tile=TILE, overlap=OVERLAP, multiple=8)
    assert result.tiles == plan.count == 4
    window = blend_window(plan.tile_h, plan.tile_w, plan.overlap)
    acc = np.zeros((2, SIDE, SIDE))
    weight = np.zeros((SIDE, SIDE))
    for y in plan.ys:
        for x in plan.xs:
            tile = image[y : y + plan.tile_h, x : x + plan.tile_w]
            acc[:, y : y + plan.tile_h, x : x + plan.tile_w] += forward_logits(network, info, tile) * window
            weight[y : y + plan.tile_h, x : x + plan.tile_w] += window
    # Tolerance 1e-4 absolute: float32 sums in another order, channels-last vs contiguous convolutions.
    np.testing.assert_allclose(logits, acc / weight, atol=1e-4)
    assert np.array_equal(result.labels, logits.argmax(0))


def test_tiled_output_matches_whole_image_forward_away_from_borders(micro, textured):
    # Exact equality is impossible: GroupNorm statistics and the bottleneck attention are computed per
    # tile, so a tile sees slightly different normalisation than the whole image (the smaller the tile,
    # the larger the effect). Measured on this image (4 tiles of 152 px): relative RMS 0.045,
    # correlation 0.997, label agreement 0.988, and 100 % where the decision is not marginal.
    # Tolerances, in the central region (32 px from the image border):
    #   - logits: relative RMS error <= 0.08 and correlation >= 0.99;
    #   - labels: >= 97 % agree overall, and >= 99.9 % where the whole-image decision is not marginal
    #     (|logit difference| > 0.1; the per-tile changes of that difference stay below ~0.04).
    network, info = micro
    image, logits, result = textured
    whole = forward_logits(network, info, image)
    centre = (slice(None), slice(32, -32), slice(32, -32))
    tiled_c, whole_c = logits[centre], whole[centre]
    rel_rms = math.sqrt(float(((tiled_c - whole_c) ** 2).mean() / (whole_c**2).mean()))
    assert rel_rms <= 0.08
    assert np.corrcoef(tiled_c.ravel(), whole_c.ravel())[0, 1] >= 0.99
    labels_c, whole_labels_c = result.labels[32:-32, 32:-32], whole.argmax(0)[32:-32, 32:-32]
    assert (labels_c == whole_labels_c).mean() >= 0.97
    confident = np.abs(whole_c[1] - whole_c[0]) > 0.1
    assert confident.mean() > 0.5  # the check below covers most of the image
    assert (labels_c[confident] == whole_labels_c[confident]).mean() >= 0.999


def test_one_tile_image_equals_the_direct_forward(micro):
    network, info = micro
    image = synthetic_he(96, 128, seed=2)  # multiples of 8: no padding, one tile
    logits = np.zeros((2, 96, 128), np.float32)
    result = segment(network, info, image, InferenceSettings(device="cpu", precision="fp32"), logits_out=logits)
    assert result.tiles == 1 and result.tile_shape == (96, 128)
    direct = forward_logits(network, info, image)
    np.testing.assert_allclose(logits, direct, atol=1e-4)  # the blend weights cancel for one tile
    assert np.array_equal(result.labels, direct.argmax(0))


def test_image_smaller_than_one_tile(micro):
    network, info = micro
    image = synthetic_he(37, 53, seed=3)
    result = segment(network, info, image, InferenceSettings(tile=256, device="cpu", precision="fp32"))
    assert result.labels.shape == (37, 53)
    assert result.labels.dtype == np.uint8
    assert result.tiles == 1 and result.tile_shape == (40, 56)  # padded up to multiples of 8
    assert set(np.unique(result.labels)) <= {0, 1}


def test_uint16_and_rgba_inputs_give_the_labels_of_the_uint8_image(micro):
    network, info = micro
    rgb = synthetic_he(64, 80, seed=4)
    settings = InferenceSettings(device="cpu", precision="fp32")
    reference = segment(network, info, rgb, settings).labels
    as_uint16 = rgb.astype(np.uint16) * 257  # full 16-bit range: scaled by 1/65535, same values
    result16 = segment(network, info, as_uint16, settings)
    assert (result16.labels == reference).mean() >= 0.999  # float rounding of x*257/65535 vs x/255
    rgba = np.concatenate([rgb, np.full((64, 80, 1), 128, np.uint8)], axis=-1)
    result_rgba = segment(network, info, rgba, settings)
    assert np.array_equal(result_rgba.labels, reference)
    assert any("alpha" in note for note in result_rgba.notes)


def test_bf16_inference_stays_close_to_fp32(micro):
    # The bf16 path runs on every CPU: natively with AVX512-BF16/AMX, emulated by PyTorch elsewhere
    # (slower, hence one small tile). bf16 keeps 8 significant bits (at most 2^-9 = 0.2 % relative
    # error per rounding), and roundings add up through the network's layers. Measured on this image
    # (emulated bf16): relative RMS error 0.015, correlation 0.9997, 99.5 % of labels equal, and the
    # logit difference between the classes moved by at most 0.026 (four other seeds of network and
    # image: relative RMS 0.009-0.015, at most 0.10 with logits ~3x larger). Tolerances, with margin
    # for another CPU's kernels: relative RMS <= 0.04, correlation >= 0.999, >= 97 % equal labels,
    # and every pixel equal where the fp32 decision is not marginal (|logit difference| > 0.1, 4x the
    # largest change measured here; two thirds of the image).
    network, info = micro
    image = synthetic_he(64, 80, seed=4)
    logits, labels = {}, {}
    for precision in ("fp32", "bf16"):
        logits[precision] = np.zeros((2, 64, 80), np.float32)
        result = segment(network, info, image, InferenceSettings(device="cpu", precision=precision),
                         logits_out=logits[precision])
        assert result.precision == precision and result.tiles == 1
        labels[precision] = result.labels
        assert np.array_equal(labels[precision], logits[precision].argmax(0))
    fp32, bf16 = logits["fp32"], logits["bf16"]
    assert np.isfinite(bf16).all() and not np.array_equal(bf16, fp32)  # bf16 really ran
    rel_rms = math.sqrt(float(((bf16 - fp32) ** 2).mean() / (fp32**2).mean()))
    assert rel_rms <= 0.04
    assert np.corrcoef(bf16.ravel(), fp32.ravel())[0, 1] >= 0.999
    fp32_labels, bf16_labels = labels["fp32"], labels["bf16"]
    assert (bf16_labels == fp32_labels).mean() >= 0.97
    confident = np.abs(fp32[1] - fp32[0]) > 0.1
    assert confident.mean() > 0.5
    assert np.array_equal(bf16_labels[confident], fp32_labels[confident])


def test_memmap_output_is_filled(micro, tmp_path):
    network, info = micro
    image = synthetic_he(72, 200, seed=5)
    settings = InferenceSettings(tile=96, overlap=16, device="cpu", precision="fp32")  # several tiles and bands
    target = np.memmap(tmp_path / "labels.u8", dtype=np.uint8, mode="w+", shape=(72, 200))
    target[:] = 255  # a value no class has: every pixel must be overwritten
    result = segment(network, info, image, settings, out=target)
    assert result.labels is target
    assert result.tiles > 2
    target.flush()
    on_disk = np.fromfile(tmp_path / "labels.u8", dtype=np.uint8).reshape(72, 200)
    assert np.array_equal(on_disk, segment(network, info, image, settings).labels)
    assert on_disk.max() <= 1


def test_progress_events_count_every_tile(micro):
    network, info = micro
    settings = InferenceSettings(tile=96, overlap=16, device="cpu", precision="fp32")
    progress = Returning(segment_progressive(network, info, synthetic_he(72, 200, seed=6), settings))
    events = list(progress)
    result = progress.value
    tiles = [e for e in events if e["stage"] == "tiles"]
    assert tiles[0]["done"] == 0 and tiles[-1]["done"] == tiles[-1]["total"] == result.tiles
    assert [e["done"] for e in tiles] == sorted(e["done"] for e in tiles)


@pytest.mark.parametrize(
    "height, width, max_tile, overlap, multiple",
    [(1000, 1000, 512, 64, 16), (1000, 1000, 1024, 64, 8), (37, 53, 256, 64, 8), (2000, 300, 512, 100, 16),
     (513, 512, 512, 64, 16), (4096, 777, 1024, 128, 32)],
)
def test_plan_tiles_covers_the_image_with_enough_overlap_and_few_tiles(height, width, max_tile, overlap, multiple):
    plan = plan_tiles(height, width, max_tile=max_tile, overlap=overlap, multiple=multiple)
    for length, tile, origins, padded in ((height, plan.tile_h, plan.ys, plan.padded_h),
                                          (width, plan.tile_w, plan.xs, plan.padded_w)):
        assert tile <= max_tile and tile % multiple == 0
        assert padded >= length and padded % multiple == 0 and padded - length < multiple
        assert origins[0] == 0 and origins[-1] + tile == padded  # covered from edge to edge
        for a, b in zip(origins, origins[1:]):
            assert a + tile - b >= overlap  # neighbours overlap by at least the request
        # As few tiles as possible: n tiles of at most max_tile with the overlap cover at most
        # n * max_tile - (n - 1) * overlap pixels, so fewer than n would not reach the edge.
        n = len(origins)
        fewest = 1 if padded <= max_tile else math.ceil((padded - overlap) / (max_tile - overlap))
        assert n == fewest
    assert plan.overhead < 2.0


@pytest.mark.parametrize("width, max_band", [(700, 200), (700, 330), (901, 260)])
def test_column_strips_bound_the_band_and_give_exactly_the_whole_width_result(micro, tmp_path, width, max_band):
    from napari_genselfdiff.core.inference.tiling import column_strips

    network, info = micro
    image = synthetic_he(120, width, seed=8)
    whole_settings = InferenceSettings(tile=96, overlap=16, device="cpu", precision="fp32", max_band_width=None)
    strip_settings = InferenceSettings(tile=96, overlap=16, device="cpu", precision="fp32", max_band_width=max_band)
    plan = plan_tiles(120, width, max_tile=96, overlap=16, multiple=network.config.downsample_factor)
    strips = column_strips(plan, max_band)
    assert len(strips) >= 2
    assert all(s.x1 - s.x0 <= max(max_band, 3 * plan.tile_w) for s in strips)  # the band is bounded
    assert strips[0].keep0 == 0 and strips[-1].keep1 == plan.padded_w
    assert all(a.keep1 == b.keep0 and a.last == b.first for a, b in zip(strips, strips[1:]))  # no gap, no overlap
    whole_logits = np.zeros((2, 120, width), np.float32)
    strip_logits = np.full((2, 120, width), np.nan, np.float32)
    whole = segment(network, info, image, whole_settings, logits_out=whole_logits)
    labels = np.memmap(tmp_path / "labels.u8", dtype=np.uint8, mode="w+", shape=(120, width))
    striped = segment(network, info, image, strip_settings, out=labels, logits_out=strip_logits)
    assert not np.isnan(strip_logits).any()  # every pixel written once the strips are done
    np.testing.assert_array_equal(strip_logits, whole_logits)  # bit for bit: the same tiles, the same sums
    np.testing.assert_array_equal(np.asarray(labels), whole.labels)
    assert whole.tiles == plan.count < striped.tiles == len(plan.ys) * sum(s.last - s.first + 1 for s in strips)


def test_narrow_images_and_heavy_overlaps_keep_one_band(micro):
    from napari_genselfdiff.core.inference.tiling import column_strips

    assert len(column_strips(plan_tiles(100, 300, max_tile=96, overlap=16, multiple=8), None)) == 1
    assert len(column_strips(plan_tiles(100, 300, max_tile=96, overlap=16, multiple=8), 10_000)) == 1
    for overlap, multiple in ((47, 1), (40, 8), (16, 8), (0, 8)):
        plan = plan_tiles(100, 1500, max_tile=96, overlap=overlap, multiple=multiple)
        strips = column_strips(plan, 250)
        # Each kept column is touched only by tiles of its own strip: the split is exact, or there is one band.
        for st in strips:
            outside = [x for i, x in enumerate(plan.xs) if not st.first <= i <= st.last]
            touched = {c for x in outside for c in range(x, x + plan.tile_w)}
            assert not touched & set(range(st.keep0, st.keep1)), (overlap, st)
        assert sum(st.keep1 - st.keep0 for st in strips) == plan.padded_w


def _segment_maps(network, info, image: np.ndarray, flips: bool, cue_channels: int = 0):
    logits = np.zeros((len(info.classes),) + image.shape[:2], np.float32)
    cue = np.zeros((cue_channels,) + image.shape[:2], np.float32) if cue_channels else None
    segment(network, info, np.ascontiguousarray(image), InferenceSettings(device="cpu", precision="fp32", flips=flips),
            logits_out=logits, **({"cue_out": cue} if cue_channels else {}))
    return logits, cue


def test_test_time_flips_make_the_result_independent_of_mirroring(micro):
    network, info = micro
    image = synthetic_he(96, 128, seed=2)  # one tile: the tiling itself is mirror-symmetric
    plain, _ = _segment_maps(network, info, image, False)
    mirrored, _ = _segment_maps(network, info, image[:, ::-1], False)
    assert np.abs(mirrored[:, :, ::-1] - plain).max() > 1e-3  # a random network is not mirror-symmetric
    with_flips, _ = _segment_maps(network, info, image, True)
    for axis in (0, 1):
        other, _ = _segment_maps(network, info, np.flip(image, axis), True)
        np.testing.assert_allclose(np.flip(other, axis + 1), with_flips, atol=1e-4)
    # the mean of the four passes, each flipped back
    direct = np.mean([np.flip(forward_logits(network, info, np.ascontiguousarray(np.flip(image, axes))),
                              tuple(a + 1 for a in axes)) for axes in ((), (0,), (1,), (0, 1))], axis=0)
    np.testing.assert_allclose(with_flips, direct, atol=1e-4)


def test_test_time_flips_turn_the_direction_maps_of_a_hover_output_with_the_image():
    torch.manual_seed(1)
    config = micro_config(out_channels=4)  # background, nucleus, x offset, y offset
    network = AttentionUNet(config).eval()
    info = ModelInfo(architecture=config, classes=default_classes(["background", "nucleus"]), output="hover")
    image = synthetic_he(64, 96, seed=3)
    _, cue = _segment_maps(network, info, image, True, cue_channels=2)
    _, lr = _segment_maps(network, info, image[:, ::-1], True, cue_channels=2)
    _, ud = _segment_maps(network, info, image[::-1], True, cue_channels=2)
    np.testing.assert_allclose(lr[0, :, ::-1], -cue[0], atol=1e-4)  # mirrored left-right: x offsets change sign
    np.testing.assert_allclose(lr[1, :, ::-1], cue[1], atol=1e-4)
    np.testing.assert_allclose(ud[1, ::-1], -cue[1], atol=1e-4)  # upside down: y offsets change sign
    np.testing.assert_allclose(ud[0, ::-1], cue[0], atol=1e-4)
