"""Read image and mask files into numpy arrays, with a clear error for anything unreadable.

TIFFs go through tifffile (imagecodecs decodes LZW, as in MoNuSeg's train images); PNG, JPEG and BMP
through scikit-image's imageio plugin. Nothing is converted here: callers decide what the pixels mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..defaults import IMAGE_SUFFIXES  # noqa: F401 - re-exported; written once, in core/defaults.py
from ..errors import ImageInputError


def read_array(path: str | Path) -> np.ndarray:
    """Read one image file as stored (no dtype or channel conversion).

    Args:
        path: a .tif/.tiff/.png/.jpg/.jpeg/.bmp file.

    Returns:
        The pixel array, (H, W) or (H, W, C) (TIFF pages beyond the first series are ignored).

    Raises:
        ImageInputError: the file is missing, of an unknown type, or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageInputError(
            f"{path}: unsupported file type '{suffix}'. Use one of {', '.join(IMAGE_SUFFIXES)}."
        )
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path, series=0, level=0)
        else:
            import imageio.v3 as iio

            array = iio.imread(path)
    except Exception as exc:  # decoders raise many unrelated types; the user needs the file and why
        raise ImageInputError(
            f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}). "
            "The file may be corrupt or truncated; re-export it from the scanner software."
        ) from exc
    array = np.asarray(array)
    if array.ndim < 2:  # e.g. a TIFF header over garbage: tifffile finds no page and returns shape (0,)
        raise ImageInputError(
            f"{path}: the file is corrupt or unreadable: no image could be decoded from it "
            f"({path.stat().st_size} bytes, no readable image page). Re-export or copy it again from its source."
        )
    if array.size == 0:
        raise ImageInputError(f"{path}: the image is empty (shape {array.shape}).")
    return array
