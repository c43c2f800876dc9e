"""Masks as read from a file, reduced to 2-D integer labels: what scoring and training both read.

A grey mask saved as RGB or RGBA, a bool mask, or float labels with whole values become one (H, W)
integer array; anything that is not a mask (colour, probabilities, negative values) is refused with a
message naming the file.
"""

from __future__ import annotations

import numpy as np

from ..errors import MaskInputError


def to_label_image(array: np.ndarray, name: str = "mask") -> np.ndarray:
    """Reduce a mask as read from a file to a 2-D array of non-negative integer labels.

    Args:
        array: (H, W), (H, W, 1), or (H, W, 3|4) with equal colour channels (a grey mask saved as
            RGB or RGBA; the alpha channel is ignored). bool, integer, or float with whole values.
        name: what to call the mask in error messages (e.g. its file path).

    Returns:
        (H, W) integer labels (bool becomes uint8 0/1).

    Raises:
        MaskInputError: colour channels differ, the shape is not an image, values are negative, or
            float values are not whole numbers.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        colour = array[..., :3]
        if np.any(colour != colour[..., :1]):
            raise MaskInputError(
                f"{name}: a colour (H, W, {array.shape[-1]}) image with different R, G and B values "
                "cannot be read as labels. Save the mask as a single-channel image (one label value "
                "per pixel)."
            )
        array = colour[..., 0]
    if array.ndim != 2:
        raise MaskInputError(f"{name}: expected an (H, W) mask, got shape {array.shape}.")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise MaskInputError(
                f"{name}: float values that are not whole numbers look like probabilities; "
                "threshold them into labels first."
            )
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer):
        raise MaskInputError(f"{name}: unsupported pixel type {array.dtype} for a mask.")
    if array.size and array.min() < 0:
        raise MaskInputError(f"{name}: negative label values ({array.min()}); labels must be >= 0.")
    return array
