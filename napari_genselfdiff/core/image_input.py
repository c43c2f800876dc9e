"""Turn whatever image a user has into (H, W, 3) RGB, with a clear message for what cannot be used.

Rules (each documented in the user guide):
- uint8: taken as is. uint16: scaled by its own range: if the maximum is <= 4095 the image is taken as
  12-bit (divided by 4095), else divided by 65535. Other integers: by the dtype's maximum.
- float: values within [0, 1] are taken as [0, 1]; within [0, 255] as 8-bit values; anything else
  (negative, or above 255) is refused, since no convention tells what it means.
- (H, W) grayscale: expanded to 3 equal channels when ``allow_gray`` (H&E models expect colour, so the
  caller is told), else refused. (H, W, 4) RGBA: alpha is dropped. (H, W, 2) or > 4 channels: refused.
- (3, H, W) or (4, H, W) channel-first arrays (as some TIFFs store them) are read as channel-last.
- Lazy arrays (dask, zarr, memmap) are read tile by tile; their range is judged from a subsample.
- 3-D stacks or time series (more than one plane): refused here; the napari widget segments the
  displayed slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ImageInputError


@dataclass(frozen=True)
class InputSpec:
    """How to read RGB tiles in [0, 1] out of an image array without converting all of it at once.

    Attributes:
        height, width: image size in pixels.
        layout: "hwc" (channels last), "chw" (channels first) or "hw" (grayscale).
        channels: channels stored (1, 3 or 4); only the first 3 are used.
        scale: stored value that maps to 1.0.
        notes: human-readable remarks on conversions (for the UI and the CLI).
    """

    height: int
    width: int
    layout: str
    channels: int
    scale: float
    notes: tuple[str, ...] = ()


def _extreme(array, fn) -> float:
    """min/max of a numpy, dask or zarr array; lazy arrays are subsampled so nothing big is loaded."""
    if isinstance(array, np.ndarray):
        return float(fn(array))
    h, w = array.shape[:2]
    step = max(1, int(np.sqrt(h * w / 4e6)))
    return float(fn(np.asarray(array[::step, ::step])))


def inspect_image(image, *, allow_gray: bool = True, name: str = "image") -> InputSpec:
    """Decide how an image maps to RGB in [0, 1] (see the module docstring for the rules).

    Args:
        image: (H, W), (H, W, 1|3|4) or (3|4, H, W) numeric array (numpy, or lazy: dask, zarr, memmap).
        allow_gray: expand a grayscale image to 3 channels instead of refusing it.
        name: how to call the image in messages (a file or layer name).

    Raises:
        ImageInputError: the array cannot be read as an RGB image; the message says why and what to do.
    """
    shape = tuple(int(s) for s in image.shape)
    dtype = np.dtype(image.dtype)
    notes: list[str] = []
    if dtype == np.bool_ or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ImageInputError(f"{name}: pixel type {dtype} is not an image; expected real numbers.")
    if len(shape) == 3 and shape[0] in (3, 4) and shape[-1] not in (1, 3, 4):
        layout, channels, (h, w) = "chw", shape[0], shape[1:]
        notes.append("channel-first array read as channel-last")
    elif len(shape) == 2:
        layout, channels, (h, w) = "hw", 1, shape
    elif len(shape) == 3 and shape[-1] in (1, 3, 4):
        layout, channels, (h, w) = "hwc", shape[-1], shape[:2]
    else:
        what = "a 3-D stack or time series" if len(shape) >= 3 else "an array"
        raise ImageInputError(
            f"{name}: shape {shape} looks like {what}, not one RGB image (H, W, 3). "
            "Segment one plane at a time (in napari: the displayed slice)."
        )
    if h < 1 or w < 1:
        raise ImageInputError(f"{name}: the image is empty (shape {shape}).")
    if channels == 1:
        if not allow_gray:
            raise ImageInputError(
                f"{name}: grayscale image (shape {shape}); the model needs an RGB H&E image. "
                "Open the colour image instead."
            )
        notes.append("grayscale expanded to 3 equal channels (the model was trained on colour H&E; expect worse results)")
    elif channels == 4:
        notes.append("alpha channel dropped")

    if dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(dtype, np.integer):
        lo, hi = _extreme(image, np.min), _extreme(image, np.max)
        if lo < 0:
            raise ImageInputError(f"{name}: negative pixel values in a {dtype} image; expected intensities >= 0.")
        if dtype.itemsize >= 2:
            scale = 4095.0 if hi <= 4095 else float(np.iinfo(dtype).max)
            notes.append(f"{dtype} image rescaled by 1/{scale:g}")
        else:
            scale = float(np.iinfo(dtype).max)
    else:
        lo, hi = _extreme(image, np.min), _extreme(image, np.max)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ImageInputError(f"{name}: the image has NaN or infinite pixels; fix or mask them first.")
        if lo < 0:
            raise ImageInputError(
                f"{name}: float image with negative values (min {lo:.3g}); expected [0, 1] or [0, 255]. "
                "Rescale it to [0, 1] first."
            )
        if hi <= 1.0:
            scale = 1.0
        elif hi <= 255.0:
            scale = 255.0
            notes.append("float image in [0, 255] scaled to [0, 1]")
        else:
            raise ImageInputError(
                f"{name}: float image with values up to {hi:.3g}; expected [0, 1] or [0, 255]. Rescale it first."
            )
    return InputSpec(int(h), int(w), layout, int(channels), float(scale), tuple(notes))


def read_tile(image, spec: InputSpec, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The window [y0:y1, x0:x1] as (h, w, 3) float32 RGB in [0, 1] (only this window is read)."""
    if spec.layout == "chw":
        tile = np.moveaxis(np.asarray(image[:3, y0:y1, x0:x1]), 0, -1)
    elif spec.layout == "hw":
        tile = np.asarray(image[y0:y1, x0:x1])[..., None]
    else:
        tile = np.asarray(image[y0:y1, x0:x1, :3])
    if tile.shape[-1] == 1:
        tile = np.repeat(tile, 3, axis=-1)
    rgb = tile.astype(np.float32)
    if spec.scale != 1.0:
        rgb *= np.float32(1.0 / spec.scale)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def to_rgb_float(image, *, allow_gray: bool = True, name: str = "image") -> tuple[np.ndarray, list[str]]:
    """Convert a whole image to (H, W, 3) float32 RGB in [0, 1]; returns ``(rgb, notes)``.

    Raises:
        ImageInputError: as :func:`inspect_image`.
    """
    spec = inspect_image(image, allow_gray=allow_gray, name=name)
    return read_tile(image, spec, 0, spec.height, 0, spec.width), list(spec.notes)
