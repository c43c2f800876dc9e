"""The resolution (microns per pixel) an image file records, when it records a believable one.

:func:`recorded_mpp` reads, without decoding the pixels:

- OME-TIFF: ``Pixels PhysicalSizeX/PhysicalSizeY`` with their units (OME-XML);
- Aperio TIFF/SVS: ``MPP = 0.2520`` in the ImageDescription;
- ImageJ TIFF: ``unit=micron`` in its description with XResolution/YResolution in pixels per micron;
- any TIFF: XResolution/YResolution with a physical ResolutionUnit (inch or centimetre);
- PNG: the ``pHYs`` chunk (pixels per metre); JPEG: the JFIF density (dots per inch or cm).

What an image editor writes by default (72, 96 or 300 dpi: 352.8, 264.6 or 84.7 um/px) is no
microscope's resolution: values outside :data:`IMAGE_MPP_RANGE` are ignored with a note saying so.
Nothing here needs torch or the model; ``core/inference/resolution.py`` decides what to do with the
value (use it, or estimate, or assume the model's).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Recorded resolutions believed for an image, microns per pixel: from 100x oil immersion (about
#: 0.06) to a 2x objective (about 5). Editor defaults (72 dpi = 352.8 um/px) lie far outside.
IMAGE_MPP_RANGE = (0.05, 5.0)

OME_UNITS = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "μm": 1.0, "micron": 1.0, "nm": 1e-3,
             "pm": 1e-6}
_APERIO_MPP = re.compile(r"\bMPP\s*=\s*([0-9.eE+-]+)")
_MICRON_UNITS = ("micron", "microns", "um", "µm", "μm", "\\u00B5m")


@dataclass(frozen=True)
class RecordedResolution:
    """What a file records: ``mpp`` (None when nothing believable), where in the file (``detail``),
    and remarks (an implausible value ignored, non-square pixels)."""

    mpp: float | None
    detail: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def plausible_mpp(value: Any, bounds: tuple[float, float] = IMAGE_MPP_RANGE) -> float | None:
    """``value`` as a float when it is a finite resolution within ``bounds``, else None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or not bounds[0] <= v <= bounds[1]:
        return None
    return v


def ome_mpp(xml: str | None) -> tuple[float, float] | None:
    """(mpp_x, mpp_y) from the first Image's Pixels PhysicalSizeX/Y in OME-XML, or None."""
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.split("}")[-1] != "Pixels":
            continue
        out = []
        for axis in ("X", "Y"):
            size = element.get(f"PhysicalSize{axis}")
            unit = element.get(f"PhysicalSize{axis}Unit", "µm")
            if size is None or unit not in OME_UNITS:
                return None
            try:
                out.append(float(size) * OME_UNITS[unit])
            except ValueError:
                return None
        return out[0], out[1]
    return None


def _rational(value) -> float | None:
    try:
        if isinstance(value, tuple):
            return float(value[0]) / float(value[1]) if float(value[1]) else None
        return float(value)
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None


def _tiff_candidates(path: Path) -> list[tuple[float, float, str]]:
    """(mpp_x, mpp_y, where) for each resolution a TIFF records, the most specific first."""
    import tifffile

    out: list[tuple[float, float, str]] = []
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        if tf.is_ome:
            ome = ome_mpp(tf.ome_metadata)
            if ome is not None:
                out.append((ome[0], ome[1], "OME PhysicalSizeX/Y"))
        description = str(getattr(page, "description", "") or "")
        if description.startswith("Aperio") or "Aperio" in description[:200]:
            match = _APERIO_MPP.search(description)
            v = _rational(match.group(1)) if match else None
            if v is not None:
                out.append((v, v, "Aperio MPP"))
        tags = page.tags
        xres = _rational(tags["XResolution"].value) if "XResolution" in tags else None
        yres = _rational(tags["YResolution"].value) if "YResolution" in tags else xres
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        imagej = (tf.imagej_metadata or {}) if tf.is_imagej else {}
        if xres and yres:
            if str(imagej.get("unit", "")).strip().lower() in _MICRON_UNITS:
                out.append((1.0 / xres, 1.0 / yres, "ImageJ resolution (pixels per micron)"))
            elif unit == 2:  # inch
                out.append((25400.0 / xres, 25400.0 / yres, f"TIFF XResolution {xres:g} dpi"))
            elif unit == 3:  # centimetre
                out.append((1e4 / xres, 1e4 / yres, f"TIFF XResolution {xres:g} pixels/cm"))
    return out


def _pillow_candidates(path: Path) -> list[tuple[float, float, str]]:
    """PNG pHYs / JPEG JFIF density, as Pillow reads them (converted to dots per inch)."""
    from PIL import Image

    with Image.open(path) as im:
        dpi = im.info.get("dpi")
        kind = "PNG pHYs" if im.format == "PNG" else f"{im.format} density"
    if not dpi:
        return []
    dx, dy = (_rational(v) for v in dpi)
    if not dx or not dy or dx <= 0 or dy <= 0:
        return []
    return [(25400.0 / dx, 25400.0 / dy, f"{kind} {dx:.4g} dpi")]


def recorded_mpp(path: str | Path) -> RecordedResolution:
    """The resolution ``path`` records (see the module docstring); never raises for a bad file
    (the pixel reader reports what is wrong with it): an unreadable header records nothing."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff", ".svs"):
            candidates = _tiff_candidates(path)
        elif suffix in (".png", ".jpg", ".jpeg"):
            candidates = _pillow_candidates(path)
        else:
            candidates = []
    except Exception:  # noqa: BLE001 - a corrupt header: nothing recorded, the reader explains
        return RecordedResolution(None)
    notes: list[str] = []
    for mx, my, where in candidates:
        x, y = plausible_mpp(mx), plausible_mpp(my)
        if x is not None and y is not None:
            if abs(x - y) / max(x, y) > 0.02:
                notes.append(f"pixels are not square ({x:.4g} x {y:.4g} um); using their mean")
            return RecordedResolution((x + y) / 2.0, where, tuple(notes))
        notes.append(
            f"the file records {mx:.4g} um/px ({where}), which is no microscope's resolution "
            f"(outside {IMAGE_MPP_RANGE[0]:g}-{IMAGE_MPP_RANGE[1]:g} um/px; an image editor's default?); ignored"
        )
    return RecordedResolution(None, "", tuple(notes))


__all__ = ["IMAGE_MPP_RANGE", "RecordedResolution", "ome_mpp", "plausible_mpp", "recorded_mpp"]
