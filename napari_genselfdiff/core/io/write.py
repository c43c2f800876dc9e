"""Write label images and outline overlays, atomically (no Qt: the CLI and the napari export share it).

- :func:`write_labels_tiff`: a label image (class ids or instance ids) as a single-page, deflate
  (zlib) compressed TIFF, which ImageJ/Fiji, QuPath, scikit-image and tifffile all read. BigTIFF is
  used automatically when the pixels need more than 2 GiB.
- :func:`write_labels_png`: the same as a grayscale PNG (8-bit when every label is below 256, else
  16-bit), for tools that do not read TIFF.
- :func:`render_overlay` / :func:`write_overlay_png`: the outlines of the segmented objects drawn in
  their class colours on the RGB image, for a quick look without napari.

Every writer goes through :func:`..io.atomic.atomic_path`: the file appears complete or not at all,
and an existing file is replaced only when asked (``overwrite=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_path

_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


def label_dtype(labels, *, min_dtype=np.uint8) -> np.dtype:
    """The smallest unsigned integer type, at least ``min_dtype``, that holds every label.

    Args:
        labels: (H, W) array of non-negative integer labels (numpy or anything ``np.asarray`` reads).
        min_dtype: never choose a type narrower than this (e.g. ``np.uint16`` for instance ids, so that
            files of one kind share one type). By default ``np.uint8``.

    Raises:
        ValueError: the labels are not integers, are negative, or exceed the uint64 range.
    """
    array = np.asarray(labels)
    if array.dtype == bool:
        return np.dtype(min_dtype)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, not {array.dtype}.")
    if array.size == 0:
        return np.dtype(min_dtype)
    if np.issubdtype(array.dtype, np.signedinteger) and int(array.min()) < 0:
        raise ValueError(f"labels must be >= 0; found {int(array.min())}.")
    top = int(array.max())
    for candidate in _UNSIGNED:
        if np.dtype(candidate).itemsize >= np.dtype(min_dtype).itemsize and top <= np.iinfo(candidate).max:
            return np.dtype(candidate)
    raise ValueError(f"label {top} does not fit in 64 bits.")  # pragma: no cover - int64 always fits


def _as_labels(labels, min_dtype) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(f"a label image must be 2-D (H, W); got shape {array.shape}.")
    dtype = label_dtype(array, min_dtype=min_dtype)
    return array if array.dtype == dtype else array.astype(dtype)


def write_labels_tiff(path: str | Path, labels, *, overwrite: bool = False, min_dtype=np.uint8) -> Path:
    """Write a 2-D label image as a deflate-compressed TIFF, atomically.

    Args:
        path: the target file (.tif or .tiff).
        labels: (H, W) non-negative integer (or bool) labels; numpy arrays and memmaps are written as
            they are, without a float copy.
        overwrite: replace an existing file. By default an existing file raises FileExistsError and is
            left untouched.
        min_dtype: the narrowest pixel type to store; the smallest unsigned type that holds the largest
            label is used (uint8 for class ids; pass ``np.uint16`` for instance ids). By default uint8.

    Returns:
        The path written.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is False.
        ValueError: the labels are not a 2-D array of non-negative integers.
    """
    import tifffile

    path = Path(path)
    array = _as_labels(labels, min_dtype)
    with atomic_path(path, overwrite=overwrite) as tmp:
        # zlib = Adobe Deflate (TIFF compression 8): lossless and read by ImageJ, QuPath and
        # libtiff-based tools; no predictor, which a few readers mishandle for 32-bit data.
        tifffile.imwrite(
            tmp,
            array,
            photometric="minisblack",
            compression="zlib",
            bigtiff=array.nbytes > 2**31,
            metadata=None,
        )
    return path


def write_labels_png(path: str | Path, labels, *, overwrite: bool = False) -> Path:
    """Write a 2-D label image as a grayscale PNG, atomically: 8-bit below 256 labels, else 16-bit.

    Args:
        path: the target file (.png).
        labels: (H, W) non-negative integer (or bool) labels, at most 65535.
        overwrite: replace an existing file. By default an existing file raises FileExistsError.

    Returns:
        The path written.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is False.
        ValueError: not 2-D non-negative integers, or a label above 65535 (PNG has no 32-bit
            grayscale; write a TIFF instead).
    """
    import imageio.v3 as iio

    path = Path(path)
    array = _as_labels(labels, np.uint8)
    if array.dtype.itemsize > 2:
        raise ValueError(
            f"label {int(array.max())} does not fit in a 16-bit PNG (at most 65535 labels); "
            "write a TIFF instead."
        )
    with atomic_path(path, overwrite=overwrite) as tmp:
        iio.imwrite(tmp, array, extension=".png")
    return path


def _class_colours(classes, n: int) -> np.ndarray:
    """(n, 3) uint8 colours for label values 0..n-1 from ClassInfo-like records or (r, g, b[, a])."""
    from ..defaults import class_colour

    colours = np.zeros((max(n, 1), 3), np.uint8)
    for value in range(1, n):
        colours[value] = class_colour(value)[:3]
    for index, record in enumerate(classes or ()):
        value = getattr(record, "id", index)
        colour = getattr(record, "color", record)
        if 0 <= value < n:
            colours[value] = tuple(int(c) for c in colour[:3])
    return colours


def render_overlay(
    rgb,
    labels,
    classes: Sequence | None = None,
    *,
    instances=None,
    thickness: int = 1,
) -> np.ndarray:
    """Draw the outlines of the segmented objects on an image.

    Args:
        rgb: (H, W, 3) uint8 RGB image; any other image the segmentation accepts (uint16, float,
            grayscale, RGBA, channel-first) is converted by the rules of :mod:`..image_input`.
        labels: (H, W) class ids (0 = background).
        classes: the model's classes (``ClassInfo`` records of the model file, or (r, g, b[, a]) tuples
            indexed by class id) whose colours are used; missing ones get the default palette.
        instances: optional (H, W) instance ids; when given, each instance is outlined (so touching
            nuclei are drawn apart), in the colour of its class. By default the outlines of the
            connected regions of each class.
        thickness: outline width in pixels (drawn inside the object, so it never covers a neighbour).
            By default 1.

    Returns:
        (H, W, 3) uint8 RGB: the image with coloured outlines.

    Raises:
        ValueError: the label and image shapes differ.
        ImageInputError: the image cannot be read as RGB.
    """
    from skimage.segmentation import find_boundaries

    image = np.asarray(rgb)
    if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3):
        from ..image_input import to_rgb_float

        rgb01, _ = to_rgb_float(image, name="overlay image")
        image = (rgb01 * 255.0 + 0.5).astype(np.uint8)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels of shape {labels.shape} do not fit an image of shape {image.shape[:2]}.")
    regions = labels if instances is None else np.asarray(instances)
    if regions.shape != labels.shape:
        raise ValueError(f"instances of shape {regions.shape} differ from labels of shape {labels.shape}.")
    # "inner" boundaries lie on the object's own pixels, whose class gives the colour.
    edges = find_boundaries(regions, connectivity=1, mode="inner", background=0) & (labels > 0)
    for _ in range(max(thickness, 1) - 1):
        edges |= find_boundaries(np.where(edges, 0, regions), connectivity=1, mode="inner") & (labels > 0)
    n = int(labels.max(initial=0)) + 1
    out = image.copy()
    out[edges] = _class_colours(classes, n)[labels[edges]]
    return out


def write_overlay_png(
    path: str | Path,
    rgb_uint8,
    labels,
    classes: Sequence | None = None,
    *,
    instances=None,
    thickness: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write :func:`render_overlay` of the image, labels and classes as an RGB PNG, atomically.

    Args:
        path: the target file (.png).
        rgb_uint8, labels, classes, instances, thickness: as :func:`render_overlay`.
        overwrite: replace an existing file. By default an existing file raises FileExistsError.

    Returns:
        The path written.
    """
    import imageio.v3 as iio

    path = Path(path)
    overlay = render_overlay(rgb_uint8, labels, classes, instances=instances, thickness=thickness)
    with atomic_path(path, overwrite=overwrite) as tmp:
        iio.imwrite(tmp, overlay, extension=".png")
    return path
