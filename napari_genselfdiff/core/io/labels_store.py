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

**Corrections** (:func:`write_labels_region`): a corrected rectangle of level-0 labels (e.g. a region
painted in napari) is written back as one transaction. Every chunk it changes, at level 0 and in the
coarser levels regenerated from it, is first written to ``<store>/.genselfdiff_edit/`` (a copy of the
array metadata plus the new chunk files); then a manifest listing them is written atomically, and
only then are the chunk files renamed into place (or removed, where a chunk became all background).
A crash before the manifest leaves the store as it was; a crash after it is completed the next time
the store is opened (:func:`recover_edit`). Memory: the corrected rectangle and one chunk.
"""

from __future__ import annotations

import errno
import json
import os
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
#: Where a correction's new chunks wait until they are renamed into place (see :func:`write_labels_region`).
EDIT_DIR = ".genselfdiff_edit"
_MANIFEST = "manifest.json"
#: Largest corrected rectangle written at once (pixels a side): it is held in memory.
MAX_EDIT_SIDE = 16384


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
    """Open a store written by :func:`create_labels_store` (or any NGFF 0.4 2-D multiscale).

    A correction that was interrupted after its manifest was written is completed first
    (:func:`recover_edit`), so a reader never sees half of one.
    """
    import zarr

    from ..errors import GenSelfDiffError

    path = Path(path)
    if (path / EDIT_DIR).exists():
        try:
            recover_edit(path)
        except OSError:
            pass  # a read-only copy: shown as it is on disk
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


# -- corrections -------------------------------------------------------------------------------------


def read_labels_region(store: LabelsStore, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Level-0 labels of the rectangle (x, y, width, height), clipped to the store, as a numpy array."""
    h0, w0 = store.level0.shape
    x0, y0 = max(int(x), 0), max(int(y), 0)
    x1, y1 = min(int(x) + int(width), w0), min(int(y) + int(height), h0)
    return np.asarray(store.level0[y0:max(y0, y1), x0:max(x0, x1)])


def _chunk_path(root: Path, level: int, cy: int, cx: int) -> Path:
    return root / str(level) / str(cy) / str(cx)


def _store_classes(store: LabelsStore) -> dict[int, str]:
    return {int(c["id"]): str(c.get("name", c["id"])) for c in store.attrs.get("genselfdiff", {}).get("classes", [])
            if isinstance(c, dict) and "id" in c}


def write_labels_region(path: str | Path, x: int, y: int, labels: np.ndarray, *, allowed: set[int] | None = None,
                        note: str | None = None) -> dict[str, Any]:
    """Write corrected level-0 labels whose top-left pixel is (x, y) into a store, and regenerate the
    coarser levels under the changed pixels, as one transaction (see the module docstring).

    Only the chunks holding changed pixels are rewritten. Nothing is read or held beyond the
    rectangle and one chunk: the slide never is.

    Args:
        path: the store (``<stem>_labels.zarr``).
        x, y: level-0 column and row of ``labels[0, 0]``.
        labels: (h, w) integer class ids.
        allowed: class ids that may be written; by default the store's classes (0 and the ids in its
            ``genselfdiff.classes``), or any id the store's dtype holds if it records none.
        note: recorded with the edit in the store's ``genselfdiff.edits`` (e.g. who or what).

    Returns:
        ``{"changed_pixels", "region_xywh" (the changed pixels' bounding box, None when nothing
        changed), "chunks" (chunk files rewritten or removed, all levels)}``.

    Raises:
        GenSelfDiffError: the rectangle leaves the store, is too large, or holds ids that are not classes.
    """
    import time

    from ..errors import GenSelfDiffError

    path = Path(path)
    store = open_labels_store(path, mode="r+")
    level0 = store.level0
    h0, w0 = level0.shape
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise GenSelfDiffError(f"{path}: corrections are a 2-D array of class ids, not shape {labels.shape}.")
    if labels.dtype.kind not in "biu":
        raise GenSelfDiffError(f"{path}: corrections must be integer class ids, not {labels.dtype}.")
    x, y = int(x), int(y)
    h, w = labels.shape
    if x < 0 or y < 0 or x + w > w0 or y + h > h0 or h == 0 or w == 0:
        raise GenSelfDiffError(
            f"{path}: the corrected region x {x}..{x + w}, y {y}..{y + h} lies outside the labels "
            f"(width {w0}, height {h0} pixels at level 0); nothing was written."
        )
    if max(h, w) > MAX_EDIT_SIDE:
        raise GenSelfDiffError(f"{path}: a correction is at most {MAX_EDIT_SIDE} pixels a side, not {w} x {h}.")
    if allowed is None:
        classes = _store_classes(store)
        allowed = ({0} | set(classes)) if classes else set(range(np.iinfo(level0.dtype).max + 1))
    values = np.unique(labels)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        names = ", ".join(f"{k} {v}" for k, v in sorted(_store_classes(store).items())) or f"0..{max(allowed)}"
        raise GenSelfDiffError(
            f"{path}: label {bad[0]} is not a class of this store ({names}); paint with one of those ids. "
            "Nothing was written."
        )
    old = np.asarray(level0[y:y + h, x:x + w])
    changed = labels.astype(level0.dtype) != old
    if not changed.any():
        return {"changed_pixels": 0, "region_xywh": None, "chunks": 0}
    rows, cols = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
    by0, by1, bx0, bx1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    region = (x + bx0, y + by0, bx1 - bx0, by1 - by0)

    import zarr

    from .atomic import write_text_atomic

    edit = path / EDIT_DIR
    try:
        if edit.exists():
            shutil.rmtree(edit)
        ops: list[dict[str, Any]] = []
        staged: list = []
        touched: list[set[tuple[int, int]]] = []  # chunks rewritten, per level
        ry0, ry1, rx0, rx1 = y + by0, y + by1, x + bx0, x + bx1  # changed pixels at the current level
        for k, array in enumerate(store.arrays):
            if k > 0:  # the changed region one level down (every other pixel, as build_pyramid)
                ry0, rx0 = ry0 // 2, rx0 // 2
                ry1, rx1 = min((ry1 + 1) // 2, array.shape[0]), min((rx1 + 1) // 2, array.shape[1])
            (edit / str(k)).mkdir(parents=True)
            shutil.copyfile(path / str(k) / ".zarray", edit / str(k) / ".zarray")
            target = zarr.open_array(str(edit / str(k)), mode="r+", zarr_format=2)
            staged.append(target)
            touched.append(set())
            ch, cw = array.chunks
            for cy in range(ry0 // ch, (ry1 - 1) // ch + 1):
                for cx in range(rx0 // cw, (rx1 - 1) // cw + 1):
                    cy0, cx0 = cy * ch, cx * cw
                    cy1, cx1 = min(cy0 + ch, array.shape[0]), min(cx0 + cw, array.shape[1])
                    block = np.asarray(array[cy0:cy1, cx0:cx1]).copy()
                    # The part of this chunk inside the changed region, filled with the new values.
                    py0, py1, px0, px1 = max(ry0, cy0), min(ry1, cy1), max(rx0, cx0), min(rx1, cx1)
                    if k == 0:
                        new = labels[py0 - y:py1 - y, px0 - x:px1 - x]
                    else:
                        new = np.asarray(staged[k - 1][2 * py0:2 * py1:2, 2 * px0:2 * px1:2])
                        # Pixels whose source chunk was not rewritten keep the old level's values.
                        src = np.asarray(store.arrays[k - 1][2 * py0:2 * py1:2, 2 * px0:2 * px1:2])
                        inside = _in_chunks(touched[k - 1], store.arrays[k - 1].chunks, 2 * py0, 2 * py1, 2 * px0,
                                            2 * px1)
                        new = np.where(inside, new, src)
                    block[py0 - cy0:py1 - cy0, px0 - cx0:px1 - cx0] = new
                    target[cy0:cy1, cx0:cx1] = block
                    kind = "put" if _chunk_path(edit, k, cy, cx).exists() else "delete"
                    ops.append({"level": k, "chunk": [cy, cx], "op": kind})
                    touched[k].add((cy, cx))
        write_text_atomic(edit / _MANIFEST, json.dumps({"status": "committed", "ops": ops}))
    except OSError as exc:
        shutil.rmtree(edit, ignore_errors=True)
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        raise GenSelfDiffError(
            f"{path}: {'the disk is full' if full else f'writing failed ({exc})'} while saving the corrections; "
            "the store is unchanged. Free some space and save again."
        ) from exc
    _apply_edit(path, edit, ops)
    edits = list(store.attrs.get("genselfdiff", {}).get("edits", []))[-99:]
    edits.append({"region_xywh": list(region), "changed_pixels": int(changed.sum()),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **({"note": note} if note else {})})
    try:
        set_info(store, edits=edits)
    except OSError:
        pass  # the correction is in the store; only its entry in the log is missing
    return {"changed_pixels": int(changed.sum()), "region_xywh": region, "chunks": len(ops)}


def _in_chunks(chunks: set[tuple[int, int]], shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Which pixels of rows y0:y1:2, columns x0:x1:2 lie in the given chunks (of ``shape``)."""
    ch, cw = shape
    ys, xs = np.arange(y0, y1, 2) // ch, np.arange(x0, x1, 2) // cw
    out = np.zeros((len(ys), len(xs)), bool)
    for cy, cx in chunks:
        out[np.ix_(ys == cy, xs == cx)] = True
    return out


_replace = os.replace  # (a name of its own, so a test can interrupt the renames)


def _apply_edit(path: Path, edit: Path, ops: list[dict[str, Any]]) -> None:
    """Rename the staged chunks into place (idempotent: a put already done is skipped), then drop the edit."""
    for op in ops:
        k, (cy, cx) = op["level"], op["chunk"]
        dest = _chunk_path(path, k, cy, cx)
        if op["op"] == "put":
            src = _chunk_path(edit, k, cy, cx)
            if src.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                _replace(src, dest)
        else:
            dest.unlink(missing_ok=True)
    shutil.rmtree(edit, ignore_errors=True)


def recover_edit(path: str | Path) -> str | None:
    """Finish or drop an interrupted correction of the store at ``path``.

    Returns "completed" (its manifest was written: the renames are finished), "discarded" (it was
    interrupted before: the store is as it was before it), or None (there was none).
    """
    path = Path(path)
    edit = path / EDIT_DIR
    if not edit.exists():
        return None
    try:
        manifest = json.loads((edit / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if manifest and manifest.get("status") == "committed":
        _apply_edit(path, edit, manifest["ops"])
        return "completed"
    shutil.rmtree(edit, ignore_errors=True)
    return "discarded"
