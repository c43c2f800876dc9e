"""core.io.write: label TIFF/PNG files other tools read back exactly, and outline overlays."""

from __future__ import annotations

import os
import stat

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_genselfdiff.core.io.write import (
    label_dtype,
    render_overlay,
    write_labels_png,
    write_labels_tiff,
    write_overlay_png,
)
from napari_genselfdiff.core.model_files import default_classes


def two_squares() -> np.ndarray:
    labels = np.zeros((20, 30), np.int64)
    labels[2:8, 2:10] = 1
    labels[10:18, 12:28] = 2
    return labels


@pytest.mark.parametrize(
    "top, min_dtype, expected",
    [(1, np.uint8, np.uint8), (255, np.uint8, np.uint8), (256, np.uint8, np.uint16), (1, np.uint16, np.uint16),
     (70000, np.uint8, np.uint32)],
)
def test_tiff_round_trip_uses_the_smallest_type_that_holds_the_labels(tmp_path, top, min_dtype, expected):
    labels = two_squares()
    labels[0, 0] = top
    path = write_labels_tiff(tmp_path / "x_labels.tif", labels, min_dtype=min_dtype)
    back = tifffile.imread(path)
    assert back.dtype == expected
    np.testing.assert_array_equal(back, labels)
    page = tifffile.TiffFile(path).pages[0]
    assert page.compression == 8  # Adobe deflate: read by ImageJ/Fiji, QuPath, libtiff
    from skimage import io as skio

    np.testing.assert_array_equal(skio.imread(path), labels)


def test_tiff_refuses_what_is_not_a_label_image(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        write_labels_tiff(tmp_path / "a.tif", -two_squares())
    with pytest.raises(ValueError, match="integers"):
        write_labels_tiff(tmp_path / "a.tif", two_squares().astype(float))
    with pytest.raises(ValueError, match="2-D"):
        write_labels_tiff(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8))
    assert not list(tmp_path.iterdir())
    assert label_dtype(np.zeros((3, 3), bool)) == np.uint8


def test_existing_files_are_kept_unless_overwrite_and_new_files_are_readable(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        write_labels_tiff(path, two_squares())
    assert path.read_bytes() == b"keep"
    write_labels_tiff(path, two_squares(), overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(path), two_squares())
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]  # no temporary file left
    # Permissions follow the umask like any new file (not mkstemp's owner-only 0600).
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_png_is_8_bit_below_256_labels_and_16_bit_above(tmp_path):
    small = write_labels_png(tmp_path / "small.png", two_squares())
    assert iio.imread(small).dtype == np.uint8
    np.testing.assert_array_equal(iio.imread(small), two_squares())
    many = two_squares() * 300
    big = write_labels_png(tmp_path / "big.png", many)
    assert iio.imread(big).dtype == np.uint16
    np.testing.assert_array_equal(iio.imread(big), many)
    with pytest.raises(ValueError, match="TIFF"):
        write_labels_png(tmp_path / "huge.png", two_squares() * 40000)


def test_overlay_draws_inner_outlines_in_class_colours(tmp_path):
    labels = two_squares()
    image = np.full((20, 30, 3), 200, np.uint8)
    classes = default_classes(["background", "nucleus", "gland"])
    overlay = render_overlay(image, labels, classes)
    gold, cyan = np.array(classes[1].color[:3]), np.array(classes[2].color[:3])
    assert (overlay[2, 2] == gold).all() and (overlay[7, 9] == gold).all()  # corners of square 1
    assert (overlay[10, 20] == cyan).all()  # top edge of square 2
    assert (overlay[4, 5] == 200).all() and (overlay[0, 0] == 200).all()  # inside and background
    assert (overlay[1, 2] == 200).all()  # the outline is drawn inside the object, never outside
    path = write_overlay_png(tmp_path / "o.png", image, labels, classes)
    np.testing.assert_array_equal(iio.imread(path), overlay)


def test_overlay_with_instances_separates_touching_objects():
    labels = np.zeros((10, 20), np.uint8)
    labels[2:8, 2:18] = 1  # one class region ...
    instances = np.zeros((10, 20), np.uint16)
    instances[2:8, 2:10], instances[2:8, 10:18] = 1, 2  # ... made of two touching nuclei
    image = np.zeros((10, 20, 3), np.uint8)
    merged = render_overlay(image, labels)
    split = render_overlay(image, labels, instances=instances)
    assert not merged[5, 9].any() and not merged[5, 10].any()
    assert split[5, 9].any() and split[5, 10].any()  # the shared border is outlined on both sides


def test_overlay_accepts_other_image_types():
    labels = two_squares()
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    reference = render_overlay(rgb, labels)
    np.testing.assert_array_equal(render_overlay(rgb.astype(np.float32) / 255, labels), reference)
    rgba = np.concatenate([rgb, np.zeros((20, 30, 1), np.uint8)], -1)
    np.testing.assert_array_equal(render_overlay(rgba, labels), reference)
    assert render_overlay(rgb[..., 0], labels).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="do not fit"):
        render_overlay(rgb, labels[:10])
