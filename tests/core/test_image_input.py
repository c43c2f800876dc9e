"""Image input rules (core.image_input): what each pixel type and layout means, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.errors import ImageInputError
from napari_genselfdiff.core.image_input import inspect_image, read_tile, to_rgb_float

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_uint8_is_taken_as_is():
    rgb, notes = to_rgb_float(RGB8)
    assert rgb.dtype == np.float32 and rgb.shape == (12, 10, 3)
    np.testing.assert_allclose(rgb, RGB8 / 255.0, rtol=1e-6)
    assert notes == []


def test_uint16_up_to_4095_is_read_as_12_bit():
    image = RNG.integers(0, 4096, (8, 8, 3)).astype(np.uint16)
    image[0, 0, 0] = 4095
    spec = inspect_image(image)
    assert spec.scale == 4095.0
    rgb, notes = to_rgb_float(image)
    np.testing.assert_allclose(rgb, image / 4095.0, rtol=1e-6)
    assert rgb.max() == 1.0
    assert any("4095" in n for n in notes)


def test_uint16_above_4095_is_read_as_16_bit():
    image = RNG.integers(0, 4096, (8, 8, 3)).astype(np.uint16)
    image[0, 0, 0] = 4096  # one value above 12 bits: the full 16-bit range
    assert inspect_image(image).scale == 65535.0
    rgb, _ = to_rgb_float(image)
    np.testing.assert_allclose(rgb, image / 65535.0, rtol=1e-6)


def test_float_in_0_1_is_taken_as_is():
    image = RNG.random((6, 7, 3)).astype(np.float32)
    rgb, notes = to_rgb_float(image)
    np.testing.assert_allclose(rgb, image)
    assert inspect_image(image).scale == 1.0


def test_float_in_0_255_is_scaled():
    image = RGB8.astype(np.float64)
    rgb, notes = to_rgb_float(image)
    np.testing.assert_allclose(rgb, RGB8 / 255.0, rtol=1e-6)
    assert any("[0, 255]" in n for n in notes)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((4, 4, 3), -0.5, np.float32), "negative"),
        (np.full((4, 4, 3), 300.0, np.float32), "up to 300"),
        (np.array([[[0.1, np.nan, 0.2]]], np.float32), "NaN"),
        (np.array([[[0.1, np.inf, 0.2]]], np.float64), "NaN or infinite"),
        (np.full((4, 4, 3), -1, np.int16), "negative"),
        (np.zeros((4, 4, 3), bool), "not an image"),
        (np.zeros((10, 12, 2), np.uint8), "not one RGB image"),
        (np.zeros((10, 12, 5), np.uint8), "not one RGB image"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_values_and_shapes_without_a_clear_meaning_are_refused(image, message):
    with pytest.raises(ImageInputError, match=message):
        inspect_image(image, name="slide.tif")
    with pytest.raises(ImageInputError, match="slide.tif"):  # messages name the input
        inspect_image(image, name="slide.tif")


def test_grayscale_is_expanded_with_a_note():
    gray = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    rgb, notes = to_rgb_float(gray)
    assert rgb.shape == (9, 11, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 2]) and np.array_equal(rgb[..., 0], rgb[..., 1])
    np.testing.assert_allclose(rgb[..., 0], gray / 255.0, rtol=1e-6)
    assert any("grayscale" in n for n in notes)
    single = to_rgb_float(gray[..., None])[0]  # (H, W, 1) is grayscale too
    np.testing.assert_array_equal(single, rgb)


def test_grayscale_is_refused_when_not_allowed():
    with pytest.raises(ImageInputError, match="grayscale.*RGB"):
        inspect_image(np.zeros((9, 11), np.uint8), allow_gray=False)


def test_rgba_alpha_is_dropped():
    rgba = np.concatenate([RGB8, np.zeros((12, 10, 1), np.uint8)], axis=-1)  # fully transparent alpha
    rgb, notes = to_rgb_float(rgba)
    np.testing.assert_allclose(rgb, RGB8 / 255.0, rtol=1e-6)
    assert any("alpha" in n for n in notes)


@pytest.mark.parametrize("channels", [3, 4])
def test_channel_first_is_read_as_channel_last(channels):
    image = np.moveaxis(np.concatenate([RGB8, np.full((12, 10, 1), 9, np.uint8)], -1)[..., :channels], -1, 0)
    spec = inspect_image(image)
    assert (spec.layout, spec.height, spec.width) == ("chw", 12, 10)
    rgb, notes = to_rgb_float(image)
    np.testing.assert_allclose(rgb, RGB8 / 255.0, rtol=1e-6)
    assert any("channel-first" in n for n in notes)


@pytest.mark.parametrize("shape", [(5, 12, 10, 3), (5, 12, 10), (2, 3, 12, 10)])
def test_a_stack_is_refused_with_a_message_about_slices(shape):
    with pytest.raises(ImageInputError, match="slice") as info:
        inspect_image(np.zeros(shape, np.uint8), name="stack.tif")
    assert "3-D stack" in str(info.value) or "stack" in str(info.value)


def test_read_tile_reads_only_the_window_in_every_layout():
    chw = np.moveaxis(RGB8, -1, 0)
    for image in (RGB8, chw, RGB8[..., 0]):
        spec = inspect_image(image)
        tile = read_tile(image, spec, 2, 7, 3, 9)
        assert tile.shape == (5, 6, 3)
        full, _ = to_rgb_float(image)
        np.testing.assert_array_equal(tile, full[2:7, 3:9])


def test_a_corrupt_tiff_is_said_to_be_corrupt_not_empty(tmp_path):
    """A TIFF header over garbage (tifffile finds no page) once said "the image is empty (shape
    (0,))"; it must say the file is corrupt."""
    from napari_genselfdiff.core.io.read import read_array

    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\xf0\xff\xff\x7f" + bytes(range(256)) * 16)  # first page far past the end
    with pytest.raises(ImageInputError) as caught:
        read_array(path)
    message = str(caught.value)
    assert "corrupt or unreadable" in message and "empty" not in message and "shape" not in message
