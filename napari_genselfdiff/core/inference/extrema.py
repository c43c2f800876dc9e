"""h-maxima of a map that is zero outside its objects (a distance map), object by object.

:func:`skimage.morphology.h_maxima` reconstructs the whole image by dilation, which sorts every pixel;
on a predicted distance map of a 1000x1000 image that was 0.31 s, three quarters of splitting its
nuclei. A map that is 0 on the background and positive on objects separates into independent problems:
two 8-connected objects are joined only through background pixels, where the reconstruction is capped
at 0, so what reaches an object from anywhere else is one constant (``min(0, M)``, M the largest marker
of the whole image). :func:`h_maxima_of_objects` therefore reconstructs each object in its own bounding
box, framed by background pixels that carry that constant, and returns exactly what ``h_maxima`` returns
(tests/core/test_extrema.py compares them on random and predicted maps).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima, reconstruction

_EIGHT = np.ones((3, 3), bool)


def h_maxima_of_objects(image: np.ndarray, h: float) -> np.ndarray:
    """(H, W) uint8: 1 on the regional maxima at least ``h`` high, as ``skimage.morphology.h_maxima(image, h)``.

    Args:
        image: (H, W) float map, >= 0 everywhere and exactly 0 outside the objects.
        h: the least height of a maximum above the saddle to any higher one (> 0).
    """
    image = np.asarray(image)
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.floating) or h <= 0:
        return h_maxima(image, h)
    if image.size == 0 or h > np.ptp(image):
        return np.zeros(image.shape, np.uint8)
    if image.min() < 0:
        return h_maxima(image, h)
    # skimage's marker: h below the image, less a relative rounding margin
    shifted = image - h - 2 * np.finfo(image.dtype).resolution * np.abs(image)
    # what every object receives through the background: the reconstruction is capped at 0 there
    outside = min(0.0, float(shifted.max()))
    objects, _ = ndimage.label(image > 0, structure=_EIGHT)
    out = np.zeros(image.shape, np.uint8)
    height, width = image.shape
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        rows, cols = box
        y0, y1 = max(rows.start - 1, 0), min(rows.stop + 1, height)
        x0, x1 = max(cols.start - 1, 0), min(cols.stop + 1, width)
        mine = objects[y0:y1, x0:x1] == index
        mask = np.where(mine, image[y0:y1, x0:x1], 0).astype(image.dtype, copy=False)
        seed = np.where(mine, shifted[y0:y1, x0:x1], outside).astype(shifted.dtype, copy=False)
        rec = reconstruction(seed, mask, method="dilation", footprint=_EIGHT)
        out[y0:y1, x0:x1] |= ((mask - rec >= h) & mine).astype(np.uint8)
    return out
