"""h-maxima object by object (core.inference.extrema) returns exactly skimage's h_maxima."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import h_maxima

from napari_genselfdiff.core.inference.extrema import h_maxima_of_objects


def distance_like(seed: int, shape=(160, 200), blobs: int = 40) -> np.ndarray:
    """A map that is 0 outside blobs and dome-shaped (with ripples and plateaus) inside, as a
    predicted nucleus distance map: touching blobs, blobs on the image border, tiny flat blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.float32)
    for _ in range(blobs):
        cy, cx = rng.integers(-5, shape[0] + 5), rng.integers(-5, shape[1] + 5)
        r = rng.uniform(2, 14)
        dome = np.clip(1 - np.hypot(yy - cy, xx - cx) / r, 0, None) * rng.uniform(0.05, 1.0)
        out = np.maximum(out, dome.astype(np.float32))
    ripples = rng.normal(0, 0.02, shape).astype(np.float32)
    out = np.where(out > 0, np.clip(out + ripples, 1e-3, None), 0).astype(np.float32)
    out[out > 0.8] = np.round(out[out > 0.8], 1)  # plateaus: maxima that span several pixels
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("h", [0.02, 0.1, 0.3])
def test_h_maxima_of_objects_equals_skimage_on_distance_like_maps(seed, h):
    image = distance_like(seed)
    expected = h_maxima(image, h)
    got = h_maxima_of_objects(image, h)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert expected.sum() > 0  # the case is not empty


def test_h_maxima_of_objects_equals_skimage_on_a_distance_transform_and_a_smoothed_map():
    blobs = distance_like(7) > 0
    edt = ndimage.distance_transform_edt(blobs)  # float64, as label_instances passes it
    np.testing.assert_array_equal(h_maxima_of_objects(edt, 1.0), h_maxima(edt, 1.0))
    smooth = np.where(blobs, ndimage.gaussian_filter(distance_like(7), 1.0), 0).astype(np.float32)
    np.testing.assert_array_equal(h_maxima_of_objects(smooth, 0.1), h_maxima(smooth, 0.1))


def test_objects_too_low_for_h_anywhere_and_empty_maps():
    low = distance_like(3) * 0.05  # every dome below h: skimage's constant through the background is < 0
    np.testing.assert_array_equal(h_maxima_of_objects(low, 0.04), h_maxima(low, 0.04))
    empty = np.zeros((20, 30), np.float32)
    assert h_maxima_of_objects(empty, 0.1).sum() == 0
    full = np.full((20, 30), 0.5, np.float32)  # one object filling the image, a plateau
    np.testing.assert_array_equal(h_maxima_of_objects(full + distance_like(1, (20, 30), 3), 0.1),
                                  h_maxima(full + distance_like(1, (20, 30), 3), 0.1))


def test_maps_with_negative_values_fall_back_to_skimage():
    image = distance_like(2) - 0.1
    np.testing.assert_array_equal(h_maxima_of_objects(image, 0.1), h_maxima(image, 0.1))
