"""Whole-slide images, read lazily: Aperio .svs, Hamamatsu .ndpi, Leica .scn, pyramidal (OME-)TIFF.

Nothing is read whole. A :class:`Slide` exposes every pyramid level as a lazy array (a zarr array over
the TIFF tiles, through `tiffslide <https://github.com/Bayer-Group/tiffslide>`_, which builds on
tifffile + imagecodecs: pure Python wheels, no system library, and the same tile decoder the rest of
the project already uses; OpenSlide would add a native library for formats we do not need yet) and
reads regions of any level with a bounds check.

Resolution (microns per pixel, "mpp") comes from the file, in this order:

1. the vendor metadata tiffslide parses (Aperio ``MPP = 0.2500`` in the ImageDescription, Leica SCN,
   Philips), and TIFF XResolution/YResolution with a physical ResolutionUnit (cm, mm, um, inch);
2. OME-XML ``Pixels PhysicalSizeX/PhysicalSizeY`` (with their units) for OME-TIFF;
3. a value the user gives (``Slide(path, mpp=0.5)``, ``--mpp`` on the command line), which overrides
   the file.

Values outside 0.05-50 um/px (a 72-dpi default written by an image editor says 352.8 um/px) are
ignored with a note. A slide without a usable resolution opens (for viewing); :meth:`Slide.require_mpp`
raises a :class:`SlideError` that says how to give one when a resolution is needed (resampling to a
model's resolution, GeoJSON in microns).

MIRAX (.mrxs) is not a TIFF and is refused with a message saying how to convert it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import VENDOR_SLIDE_SUFFIXES
from ..errors import GenSelfDiffError
from .resolution import ome_mpp, plausible_mpp

#: Vendor formats that are always whole slides (tiffslide reads them; declared in core/defaults.py).
VENDOR_SUFFIXES = VENDOR_SLIDE_SUFFIXES
#: Suffixes a slide may have; a .tif/.tiff is a slide when it is pyramidal or very large (:func:`is_slide`).
SLIDE_SUFFIXES = VENDOR_SUFFIXES + (".tif", ".tiff")
#: Known slide formats that cannot be read, with what to do instead.
UNSUPPORTED_SUFFIXES = {
    ".mrxs": (
        "MIRAX (.mrxs) slides are a folder of proprietary files, not a TIFF, and are not supported. "
        "Convert the slide to a pyramidal OME-TIFF first (QuPath: File > Export images > OME TIFF; "
        "or `vips tiffsave slide.mrxs slide.tif --tile --pyramid --compression jpeg`)."
    ),
}
#: A flat (one-level) TIFF at least this many pixels is treated as a slide (read lazily, tiled).
LARGE_FLAT_PIXELS = 10000 * 10000
#: Plausible scan resolutions, microns per pixel (100x oil is about 0.06, a 1x overview about 10).
MPP_RANGE = (0.05, 50.0)


class SlideError(GenSelfDiffError, ValueError):
    """A slide cannot be opened or used as asked; the message names the file and what to do."""


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size and its downsample factor relative to level 0."""

    height: int
    width: int
    downsample: float


def is_slide(path: str | Path) -> bool:
    """Whether ``path`` should be handled as a whole slide (lazily, tissue only) rather than read whole.

    True for vendor formats (.svs, .ndpi, .scn, .bif, and .mrxs so that it is refused with a clear
    message), and for TIFFs that are pyramidal (more than one level) or at least
    :data:`LARGE_FLAT_PIXELS` pixels. A TIFF that cannot be parsed is not a slide (the flat-image
    reader then reports what is wrong with it).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VENDOR_SUFFIXES or suffix in UNSUPPORTED_SUFFIXES:
        return True
    if suffix not in (".tif", ".tiff") or not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            if len(series.levels) > 1:
                return True
            shape = series.shape
            axes = series.axes
            h = shape[axes.index("Y")] if "Y" in axes else 0
            w = shape[axes.index("X")] if "X" in axes else 0
            return h * w >= LARGE_FLAT_PIXELS
    except Exception:  # noqa: BLE001 - any parse failure: not a slide, the image reader explains
        return False


class Slide:
    """A whole-slide image opened lazily. Use as a context manager, or call :meth:`close`.

    Args:
        path: a .svs, .ndpi, .scn, .bif or pyramidal/large (OME-)TIFF file.
        mpp: microns per pixel at level 0, overriding the file's (None: from the file).

    Attributes:
        path: the file.
        vendor: tiffslide's format name ("aperio", "hamamatsu", "leica", "generic-tiff", ...).
        levels: the pyramid levels, level 0 first.
        mpp: microns per pixel at level 0 (x and y averaged), or None when unknown.
        mpp_source: where ``mpp`` came from ("file: Aperio MPP", "file: TIFF resolution tags",
            "file: OME PhysicalSizeX", "given"), or None.
        notes: remarks for the user (an implausible resolution ignored, ...).

    Raises:
        SlideError: the file is missing, of an unsupported format, or cannot be parsed as a slide.
    """

    def __init__(self, path: str | Path, *, mpp: float | None = None):
        self.path = Path(path)
        self.notes: list[str] = []
        suffix = self.path.suffix.lower()
        if suffix in UNSUPPORTED_SUFFIXES:
            raise SlideError(f"{self.path}: {UNSUPPORTED_SUFFIXES[suffix]}")
        if not self.path.is_file():
            raise SlideError(f"{self.path}: no such file.")
        try:
            import tiffslide

            self._slide = tiffslide.TiffSlide(self.path)
            props = self._slide.properties
            dims = self._slide.level_dimensions
            downsamples = self._slide.level_downsamples
            group = self._slide.zarr_group
            arrays = [group[str(k)] for k in range(len(dims))]
        except Exception as exc:  # noqa: BLE001 - decoders raise many unrelated types
            raise SlideError(
                f"{self.path}: cannot be read as a whole-slide image ({type(exc).__name__}: {exc}). "
                "Supported: Aperio .svs, Hamamatsu .ndpi, Leica .scn, Ventana .bif and tiled pyramidal "
                "(OME-)TIFF. The file may be truncated or of another format; re-export it from the "
                "scanner software or QuPath (File > Export images > OME TIFF)."
            ) from exc
        self.vendor = str(props.get("tiffslide.vendor") or "generic-tiff")
        self.properties = props
        self.levels = [Level(int(h), int(w), float(d)) for (w, h), d in zip(dims, downsamples)]
        self._arrays = []
        for k, (array, level) in enumerate(zip(arrays, self.levels)):
            if array.ndim == 2:
                raise SlideError(f"{self.path}: level {k} is grayscale ({array.shape}); an RGB H&E slide is needed.")
            if array.ndim != 3 or array.shape[-1] not in (3, 4) or tuple(array.shape[:2]) != (level.height, level.width):
                raise SlideError(
                    f"{self.path}: level {k} has shape {tuple(array.shape)}; expected ({level.height}, "
                    f"{level.width}, 3) RGB. Multi-channel fluorescence and z-stacks are not supported."
                )
            if np.dtype(array.dtype) != np.uint8:
                raise SlideError(f"{self.path}: pixels are {array.dtype}; brightfield slides with 8-bit RGB are supported.")
            self._arrays.append(array)
        self.mpp, self.mpp_source = self._find_mpp(props)
        if mpp is not None:
            given = plausible_mpp(mpp, MPP_RANGE)
            if given is None:
                raise SlideError(
                    f"{self.path}: the given resolution {mpp} um/px is outside {MPP_RANGE[0]}-{MPP_RANGE[1]} um/px."
                )
            if self.mpp is not None and abs(self.mpp - given) / given > 0.01:
                self.notes.append(f"the file says {self.mpp:.4g} um/px ({self.mpp_source}); using the given {given:g}")
            self.mpp, self.mpp_source = given, "given"

    def _find_mpp(self, props: dict[str, Any]) -> tuple[float | None, str | None]:
        candidates: list[tuple[Any, Any, str]] = []
        if props.get("tiffslide.mpp-x") is not None:
            source = "Aperio MPP" if self.vendor == "aperio" and props.get("aperio.MPP") is not None else (
                "TIFF resolution tags" if props.get("tiff.ResolutionUnit") else f"{self.vendor} metadata"
            )
            candidates.append((props.get("tiffslide.mpp-x"), props.get("tiffslide.mpp-y"), source))
        try:
            tf = self._slide.ts_tifffile
            ome = ome_mpp(tf.ome_metadata) if tf.is_ome else None
        except Exception:  # noqa: BLE001 - kerchunk-backed or odd files: no OME metadata
            ome = None
        if ome is not None:
            candidates.insert(0, (ome[0], ome[1], "OME PhysicalSizeX"))
        for mx, my, source in candidates:
            x, y = plausible_mpp(mx, MPP_RANGE), plausible_mpp(my if my is not None else mx, MPP_RANGE)
            if x is not None and y is not None:
                if abs(x - y) / max(x, y) > 0.02:
                    self.notes.append(f"pixels are not square ({x:.4g} x {y:.4g} um); using their mean")
                return (x + y) / 2.0, f"file: {source}"
            self.notes.append(
                f"the file's resolution ({mx} um/px from {source}) is implausible for a slide scan "
                "(an image editor's default dpi?) and was ignored"
            )
        return None, None

    # -- access ----------------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.levels[0].height

    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, 3) of level 0."""
        return (self.height, self.width, 3)

    def level_array(self, level: int = 0):
        """The lazy (H, W, 3|4) uint8 array of a level (a zarr array: slicing reads only those tiles)."""
        self._check_level(level)
        return self._arrays[level]

    def dask_levels(self, chunk: int = 1024) -> list:
        """Every level as a dask array (H, W, 3) with ``chunk``-sided chunks (for napari's multiscale)."""
        import dask.array as da

        out = []
        for k, array in enumerate(self._arrays):
            tile = array.chunks[0] if array.chunks else 256
            side = max(tile, chunk // max(tile, 1) * tile)
            lazy = da.from_array(array, chunks=(side, side, array.shape[-1]), name=f"slide-{id(self)}-{k}",
                                 lock=False, asarray=True, fancy=False)
            out.append(lazy[..., :3])
        return out

    def read_region(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """Pixels [y, y + height) x [x, x + width) of ``level`` as (height, width, 3) uint8.

        Raises:
            SlideError: the region is empty or not entirely inside the level.
        """
        self._check_level(level)
        lv = self.levels[level]
        if width <= 0 or height <= 0:
            raise SlideError(f"{self.path}: empty region {width}x{height} at ({x}, {y}).")
        if x < 0 or y < 0 or x + width > lv.width or y + height > lv.height:
            raise SlideError(
                f"{self.path}: region x {x}..{x + width}, y {y}..{y + height} lies outside level {level} "
                f"(width {lv.width}, height {lv.height} pixels)."
            )
        return np.asarray(self._arrays[level][y : y + height, x : x + width, :3])

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most ``downsample`` (level 0 for <= 1)."""
        best = 0
        for k, lv in enumerate(self.levels):
            if lv.downsample <= downsample * 1.001:
                best = k
        return best

    def require_mpp(self) -> float:
        """The resolution, or a :class:`SlideError` saying how to give one."""
        if self.mpp is None:
            extra = f" ({'; '.join(self.notes)})" if self.notes else ""
            raise SlideError(
                f"{self.path}: the file records no usable resolution (microns per pixel){extra}. "
                "Give it: `--mpp 0.25` for a 40x scan, `--mpp 0.5` for 20x (command line), or type it "
                "in the Resolution field of the slide segmentation widget."
            )
        return self.mpp

    def describe(self) -> str:
        """One line: size, levels, resolution."""
        res = f"{self.mpp:.4g} um/px ({self.mpp_source})" if self.mpp else "resolution unknown"
        return (f"{self.path.name}: {self.vendor}, {self.width}x{self.height} px, {len(self.levels)} level(s) "
                f"(downsamples {', '.join(f'{lv.downsample:g}' for lv in self.levels)}), {res}")

    def _check_level(self, level: int) -> None:
        if not 0 <= level < len(self.levels):
            raise SlideError(f"{self.path}: no level {level}; the slide has levels 0..{len(self.levels) - 1}.")

    def close(self) -> None:
        slide = getattr(self, "_slide", None)
        if slide is not None:
            slide.close()
            self._slide = None

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({str(self.path)!r}, {self.width}x{self.height}, levels={len(self.levels)}, mpp={self.mpp})"
