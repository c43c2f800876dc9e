"""The on-disk labels of a slide: a chunked, compressed zarr store laid out as OME-Zarr (NGFF 0.4).

``<stem>_labels.zarr/`` holds a multiscale pyramid of uint8 class ids (0 = background): ``0/`` at the
slide's level-0 pixels, ``1/`` 2x coarser, ... down to about 1024 pixels a side, in chunks of
1024 x 1024 (Blosc/zstd). Chunks that hold only background are never written, so glass costs no disk.
Its ``.zattrs`` carry:

- ``multiscales`` (NGFF 0.4): axes y, x in micrometres and a scale transform per level (pixels when the
  slide's resolution is unknown), so napari-ome-zarr, QuPath's OME-Zarr reader and other NGFF tools
  place it over the slide;
- ``image-label``: the class colours;
- ``genselfdiff``: the slide, the model, the classes, the region done, ``complete`` (False until the
  run ends: a run that stops early, e.g. on a full disk, leaves a store with every chunk written so
  far and ``complete: false``), and timings.

Writing goes to ``<name>.partial`` and is renamed to ``<name>`` only at the end, so an existing
store is never replaced by a broken one. While it is written, ``<name>.partial/genselfdiff_resume.json``
(:func:`write_resume`, replaced atomically after every band of labels) records what the run was
(slide, model, settings) and which bands are finished, so a run that was cancelled or killed can be
continued (``core/inference/slide.py``). Chunks are written by zarr's LocalStore, which writes each
chunk file to a temporary name and renames it (zarr >= 3.1.3): a killed run never leaves half a chunk.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = 1024
NGFF_VERSION = "0.4"
PARTIAL = ".partial"
#: The file in an unfinished store that says what is done (see :func:`write_resume`).
RESUME_FILE = "genselfdiff_resume.json"


@dataclass
class LabelsStore:
    """An open labels store: its path, its pyramid (zarr arrays, level 0 first) and its metadata."""

    path: Path
    arrays: list
    mpp: float | None
    attrs: dict[str, Any]

    @property
    def level0(self):
        return self.arrays[0]

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("genselfdiff", {}).get("complete", False))


def _levels(height: int, width: int, smallest: int = 1024) -> list[tuple[int, int]]:
    sizes = [(height, width)]
    while max(sizes[-1]) > smallest and min(sizes[-1]) >= 2:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _compressor():
    import numcodecs

    return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


def ngff_attrs(name: str, sizes: list[tuple[int, int]], mpp: float | None, colors: list[dict] | None) -> dict:
    unit = {"unit": "micrometer"} if mpp else {}
    base = mpp or 1.0
    datasets = []
    for k, (h, w) in enumerate(sizes):
        fy, fx = sizes[0][0] / h, sizes[0][1] / w
        datasets.append({"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [base * fy, base * fx]}]})
    out = {
        "multiscales": [{
            "version": NGFF_VERSION, "name": name,
            "axes": [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}],
            "datasets": datasets,
        }],
    }
    if colors is not None:
        out["image-label"] = {"version": NGFF_VERSION, "colors": colors}
    return out


def create_labels_store(
    path: str | Path,
    height: int,
    width: int,
    *,
    mpp: float | None,
    info: dict[str, Any],
    classes=None,
    dtype=np.uint8,
    chunk: int = CHUNK,
) -> LabelsStore:
    """Create an empty store at ``path`` (replacing what is there: callers use a ``.partial`` path).

    Args:
        path: the store folder.
        height, width: level-0 size (the slide's).
        mpp: level-0 microns per pixel, or None.
        info: the ``genselfdiff`` metadata (slide, model, settings); ``complete`` is set to False.
        classes: ClassInfo records for the colours (optional).
    """
    import zarr

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    sizes = _levels(height, width)
    arrays = [
        group.create_array(str(k), shape=(h, w), chunks=(min(chunk, h), min(chunk, w)), dtype=dtype,
                           fill_value=0, compressors=_compressor(), chunk_key_encoding={"name": "v2", "separator": "/"})
        for k, (h, w) in enumerate(sizes)
    ]
    colors = None
    if classes:
        colors = [{"label-value": int(c.id), "rgba": [int(v) for v in c.color]} for c in classes if c.id > 0]
    attrs = ngff_attrs(path.name.removesuffix(PARTIAL), sizes, mpp, colors)
    attrs["genselfdiff"] = {**json.loads(json.dumps(info, default=str)), "complete": False}
    group.attrs.update(attrs)
    return LabelsStore(path, arrays, mpp, attrs)


def open_labels_store(path: str | Path, mode: str = "r") -> LabelsStore:
    """Open a store written by :func:`create_labels_store` (or any NGFF 0.4 2-D multiscale)."""
    import zarr

    from ..errors import GenSelfDiffError

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode=mode, zarr_format=2)
        attrs = dict(group.attrs)
        datasets = attrs["multiscales"][0]["datasets"]
        arrays = [group[d["path"]] for d in datasets]
        scale = datasets[0]["coordinateTransformations"][0]["scale"]
        has_unit = any("unit" in a for a in attrs["multiscales"][0].get("axes", []))
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for a broken store
        raise GenSelfDiffError(f"{path}: not a readable labels store ({type(exc).__name__}: {exc}).") from exc
    return LabelsStore(path, arrays, float(scale[-1]) if has_unit else None, attrs)


def set_info(store: LabelsStore, **values: Any) -> None:
    """Update the store's ``genselfdiff`` metadata (e.g. ``complete=True``, timings)."""
    import zarr

    group = zarr.open_group(str(store.path), mode="r+", zarr_format=2)
    info = dict(group.attrs.get("genselfdiff", {}))
    info.update(json.loads(json.dumps(values, default=str)))
    group.attrs["genselfdiff"] = info
    store.attrs["genselfdiff"] = info


def read_resume(path: str | Path) -> dict[str, Any] | None:
    """The resume record of an unfinished store, or None (none written, or unreadable)."""
    try:
        record = json.loads((Path(path) / RESUME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_resume(path: str | Path, record: dict[str, Any]) -> None:
    """Replace the store's resume record atomically (temporary file, fsync, rename)."""
    from .atomic import write_text_atomic

    write_text_atomic(Path(path) / RESUME_FILE, json.dumps(record, default=str))


def build_pyramid(store: LabelsStore, region: tuple[int, int, int, int] | None = None, block: int = 4096) -> None:
    """Fill levels 1.. from level 0 by taking every other pixel (labels must not be averaged).

    Args:
        region: (y0, y1, x0, x1) in level-0 pixels that changed; None: everything.
        block: rows/columns read at a time (memory: block^2 bytes).
    """
    h0, w0 = store.arrays[0].shape
    y0, y1, x0, x1 = region or (0, h0, 0, w0)
    for k in range(1, len(store.arrays)):
        src, dst = store.arrays[k - 1], store.arrays[k]
        # The changed region at this level (rounded out to even source pixels).
        y0, x0 = y0 // 2, x0 // 2
        y1, x1 = min((y1 + 1) // 2, dst.shape[0]), min((x1 + 1) // 2, dst.shape[1])
        for by in range(y0, y1, block):
            for bx in range(x0, x1, block):
                ey, ex = min(by + block, y1), min(bx + block, x1)
                part = np.asarray(src[2 * by : 2 * ey : 2, 2 * bx : 2 * ex : 2])
                dst[by : by + part.shape[0], bx : bx + part.shape[1]] = part


def finish_store(partial: Path, final: Path, *, overwrite: bool) -> Path:
    """Rename a finished ``partial`` store onto ``final`` (the old one, with ``overwrite``, goes last)."""
    if final.exists():
        if not overwrite:
            raise FileExistsError(f"{final} appeared while writing; the new labels are kept in {partial}.")
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(final)
    return final
