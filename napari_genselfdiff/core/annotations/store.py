"""A folder of corrected (image, labels) snapshots with an index, written so that a crash loses nothing.

Layout of an annotation set folder::

    <folder>/
      annotation_set.json          the index: format, version, classes, and one record per pair
      pairs/
        0001/                      one folder per snapshot (ids count up and are never reused)
          image.tif                the image as it was when marked corrected (dtype and channels kept)
          labels.tif               the corrected class labels (H, W)
          instances.tif            optional nucleus instance ids (H, W)
          pair.json                the pair's own record (the same as its index entry)

Partial annotations: a pair's record may hold ``regions``, the corrected regions (rectangles and
polygons in pixel coordinates, see :mod:`.regions`); pixels outside them are unknown. A pair without
``regions`` (every pair of a set written before version 2) was corrected as a whole image.

Crash safety (each step is atomic on POSIX file systems, and every file is fsynced before it is
renamed into place):

- *add*: the pair is written into ``pairs/.tmp-<id>``, which is renamed to ``pairs/<id>`` only when
  complete; then the index is rewritten atomically. A crash between the two leaves a complete pair
  folder that is not in the index: :meth:`AnnotationSet.reload` finds it through its ``pair.json``
  and puts it back in the index.
- *remove*: ``pairs/<id>`` is renamed to ``pairs/.removed-<id>``, the index is rewritten, then the
  folder is deleted. Leftover ``.tmp-*`` and ``.removed-*`` folders are deleted on reload, so a pair
  being removed when the crash came never comes back, and a half-written one never appears.

The index is therefore a cache of the ``pair.json`` files, which are the truth; a deleted or corrupt
index is rebuilt from them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenSelfDiffError, MaskInputError
from ..io.atomic import atomic_path, write_text_atomic
from ..model_files.classes import ClassInfo
from .regions import check_regions, is_whole_image, regions_mask

INDEX_NAME = "annotation_set.json"
FORMAT = "genselfdiff.annotations"
VERSION = 2
"""Version 2 added the optional per-pair ``regions`` (version 1 sets load unchanged)."""
PAIR_RECORD = "pair.json"


class AnnotationSetError(GenSelfDiffError):
    """The annotation set folder cannot be used (not writable, foreign files, unknown pair)."""


@dataclass
class AnnotationPair:
    """One corrected snapshot.

    Attributes:
        id: folder name under ``pairs/`` ("0001", "0002", ...).
        name: the image's name (the napari layer or file it came from).
        shape: the labels' (H, W).
        created: seconds since the epoch when it was marked corrected.
        classes: the class list the labels use (id, name, colour).
        has_instances: whether ``instances.tif`` was stored.
        extra: free-form provenance (model file, source path, slice index ...).
        folder: the pair's folder (set when read from disk).
        regions: the corrected regions (see :mod:`.regions`); None: the whole image was corrected.
    """

    id: str
    name: str
    shape: tuple[int, int]
    created: float
    classes: list[ClassInfo] = field(default_factory=list)
    has_instances: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    regions: list[dict[str, Any]] | None = None

    @property
    def partial(self) -> bool:
        """True when only some regions of the image were marked as corrected."""
        return self.regions is not None

    def known_mask(self) -> np.ndarray:
        """(H, W) bool: the corrected pixels (all True for a whole-image pair)."""
        return regions_mask(self.regions, self.shape)

    def to_dict(self) -> dict[str, Any]:
        values = {
            "id": self.id,
            "name": self.name,
            "shape": list(self.shape),
            "created": self.created,
            "classes": [c.to_dict() for c in self.classes],
            "has_instances": self.has_instances,
            "extra": self.extra,
        }
        if self.regions is not None:
            values["regions"] = self.regions
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], folder: Path | None = None) -> "AnnotationPair":
        return cls(
            id=str(values["id"]),
            name=str(values.get("name", values["id"])),
            shape=tuple(int(s) for s in values["shape"]),  # type: ignore[arg-type]
            created=float(values.get("created", 0.0)),
            classes=[ClassInfo.from_dict(c) for c in values.get("classes") or []],
            has_instances=bool(values.get("has_instances", False)),
            extra=dict(values.get("extra") or {}),
            folder=folder,
            regions=list(values["regions"]) if values.get("regions") is not None else None,
        )

    @property
    def label(self) -> str:
        """One line for a list widget: name, size and when."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        part = ""
        if self.regions is not None:
            share = float(self.known_mask().mean())
            part = f", {len(self.regions)} region(s), {share:.0%} corrected"
        return f"{self.id}  {self.name}  ({self.shape[1]}x{self.shape[0]}{part}, {when})"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    with atomic_path(path) as tmp:
        photometric = "rgb" if array.ndim == 3 and array.shape[-1] in (3, 4) else "minisblack"
        tifffile.imwrite(tmp, array, photometric=photometric, compression="zlib", metadata=None)


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    if labels.ndim != 2:
        raise MaskInputError(f"{what} must be 2-D (H, W); got shape {labels.shape}.")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise MaskInputError(f"{what} must hold integer label values, not {labels.dtype}.")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and int(labels.min()) < 0:
        raise MaskInputError(f"{what} holds negative values; labels must be >= 0.")
    return labels


def image_yx_shape(image: np.ndarray) -> tuple[int, int]:
    """(H, W) of an (H, W) or (H, W, C) image."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 2, 3, 4)):
        return int(image.shape[0]), int(image.shape[1])
    raise MaskInputError(
        f"the image has shape {image.shape}; an annotation pair needs one 2-D image, (H, W) or (H, W, C)."
    )


class AnnotationSet:
    """The corrected pairs stored in one folder (see the module docstring for the layout).

    Args:
        folder: the set's folder; created if missing (with ``create=True``).
        create: create the folder and an empty index if there is none. By default True.

    Raises:
        AnnotationSetError: the folder cannot be created or written, or its index is another format.
    """

    def __init__(self, folder: str | Path, *, create: bool = True) -> None:
        self.folder = Path(folder).expanduser()
        self._pairs: dict[str, AnnotationPair] = {}
        self.classes: list[ClassInfo] = []
        #: what :meth:`reload` had to repair (recovered or dropped pairs), for the UI to show.
        self.repairs: list[str] = []
        if not self.folder.exists():
            if not create:
                raise AnnotationSetError(f"{self.folder}: no such annotation set folder.")
            try:
                self.folder.mkdir(parents=True)
            except OSError as exc:
                raise AnnotationSetError(
                    f"{self.folder}: cannot create the annotation set folder ({exc.strerror or exc}). "
                    "Choose another folder."
                ) from exc
        if not self.folder.is_dir():
            raise AnnotationSetError(f"{self.folder} is a file, not a folder; choose a folder for the annotation set.")
        self.reload()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.folder / INDEX_NAME

    @property
    def pairs_dir(self) -> Path:
        return self.folder / "pairs"

    def reload(self) -> list[AnnotationPair]:
        """Re-read the folder: the index, then every pair folder (repairing what a crash left).

        Returns:
            The pairs, oldest first.
        """
        self.repairs = []
        index: dict[str, Any] = {}
        if self.index_path.exists():
            try:
                index = json.loads(self.index_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                self.repairs.append(f"the index {INDEX_NAME} was unreadable ({exc}); rebuilt from the pair folders")
                index = {}
            if not isinstance(index, dict) or (index and index.get("format") != FORMAT):
                raise AnnotationSetError(
                    f"{self.index_path} is not a napari-genselfdiff annotation set index; choose another folder."
                )
            if int(index.get("version", VERSION)) > VERSION:
                raise AnnotationSetError(
                    f"{self.index_path} was written by a newer napari-genselfdiff (version {index.get('version')}); "
                    "update napari-genselfdiff to open it."
                )
        try:
            self.classes = [ClassInfo.from_dict(c) for c in index.get("classes") or []]
        except GenSelfDiffError:
            self.classes = []
        listed = {str(p.get("id")): p for p in index.get("pairs") or [] if isinstance(p, dict)}

        pairs: dict[str, AnnotationPair] = {}
        if self.pairs_dir.is_dir():
            for sub in sorted(self.pairs_dir.iterdir()):
                if not sub.is_dir():
                    continue
                if sub.name.startswith((".tmp-", ".removed-")):
                    shutil.rmtree(sub, ignore_errors=True)  # an interrupted add or remove
                    continue
                record = sub / PAIR_RECORD
                if not (record.is_file() and (sub / "image.tif").is_file() and (sub / "labels.tif").is_file()):
                    if sub.name in listed:
                        self.repairs.append(f"pair {sub.name} is incomplete on disk and was left out")
                    continue
                try:
                    pair = AnnotationPair.from_dict(json.loads(record.read_text(encoding="utf-8")), folder=sub)
                except (OSError, ValueError, KeyError, TypeError, GenSelfDiffError) as exc:
                    self.repairs.append(f"pair {sub.name}: unreadable record ({exc}); left out")
                    continue
                if pair.id != sub.name:
                    pair.id = sub.name
                if pair.id not in listed:
                    self.repairs.append(f"pair {pair.id} ({pair.name}) was missing from the index; recovered")
                pairs[pair.id] = pair
        for missing in sorted(set(listed) - set(pairs)):
            if not any(missing in r for r in self.repairs):
                self.repairs.append(f"pair {missing} is listed in the index but its folder is gone; dropped")
        self._pairs = dict(sorted(pairs.items()))
        if self.repairs or (self.index_path.exists() is False):
            self._write_index()
        return self.pairs

    @property
    def pairs(self) -> list[AnnotationPair]:
        """The pairs, oldest first."""
        return list(self._pairs.values())

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self):
        return iter(self.pairs)

    def __contains__(self, pair_id: object) -> bool:
        return str(pair_id) in self._pairs

    def get(self, pair_id: str) -> AnnotationPair:
        try:
            return self._pairs[str(pair_id)]
        except KeyError:
            raise AnnotationSetError(f"no pair {pair_id!r} in the annotation set at {self.folder}.") from None

    def load(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The stored ``(image, labels)`` arrays of one pair (fresh arrays, safe to modify)."""
        import tifffile

        pair = self.get(pair_id)
        folder = self.pairs_dir / pair.id
        try:
            return tifffile.imread(folder / "image.tif"), tifffile.imread(folder / "labels.tif")
        except Exception as exc:  # tifffile raises several types for damaged files
            raise AnnotationSetError(f"pair {pair.id} ({pair.name}) cannot be read: {exc}") from exc

    def load_instances(self, pair_id: str) -> np.ndarray | None:
        import tifffile

        pair = self.get(pair_id)
        path = self.pairs_dir / pair.id / "instances.tif"
        return tifffile.imread(path) if pair.has_instances and path.is_file() else None

    def training_instances(self) -> dict[str, np.ndarray]:
        """The stored nucleus instances of the pairs that have them, by pair name (the fine-tuning of an
        instance-aware model learns these nuclei; see :func:`..training.corrections.corrections_config`)."""
        out = {}
        for pair in self.pairs:
            inst = self.load_instances(pair.id)
            if inst is not None:
                out[pair.name] = inst
        return out

    def load_known(self, pair_id: str) -> np.ndarray | None:
        """(H, W) bool of the corrected pixels of a partial pair, or None for a whole-image pair."""
        pair = self.get(pair_id)
        return pair.known_mask() if pair.partial else None

    def training_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every pair as ``(image, labels)`` arrays, oldest first (whole images; see :meth:`training_items`)."""
        return [self.load(p.id) for p in self.pairs]

    def training_items(self) -> list[tuple]:
        """Every pair as ``(name, image, labels, known)``, oldest first: the fine-tuning input.

        ``known`` is the (H, W) bool mask of corrected pixels for a partial pair, None for a whole one.
        """
        return [(p.name, *self.load(p.id), self.load_known(p.id)) for p in self.pairs]

    # -- writing ---------------------------------------------------------------------------------

    def _next_id(self) -> str:
        used = [int(p.id) for p in self.pairs if p.id.isdigit()]
        if self.pairs_dir.is_dir():
            used += [
                int(m.group(1))
                for sub in self.pairs_dir.iterdir()
                if (m := re.fullmatch(r"(?:\.tmp-|\.removed-)?(\d+)", sub.name))
            ]
        return f"{max(used, default=0) + 1:04d}"

    def _write_index(self) -> None:
        values = {
            "format": FORMAT,
            "version": VERSION,
            "classes": [c.to_dict() for c in self.classes],
            "pairs": [p.to_dict() for p in self.pairs],
        }
        try:
            write_text_atomic(self.index_path, json.dumps(values, indent=2) + "\n")
        except OSError as exc:
            raise AnnotationSetError(
                f"{self.folder}: cannot write the annotation set index ({exc.strerror or exc}). "
                "Check the folder's permissions or choose another folder."
            ) from exc

    def add(
        self,
        image,
        labels,
        *,
        name: str,
        classes: list[ClassInfo] | None = None,
        instances=None,
        extra: dict[str, Any] | None = None,
        regions: list[Any] | None = None,
    ) -> AnnotationPair:
        """Store a snapshot of ``(image, labels)`` as a new pair (copies are written at once).

        Args:
            image: (H, W) or (H, W, C) image (any dtype; stored as it is).
            labels: (H, W) non-negative integer class labels.
            name: the image's name, shown in lists and used as the file stem at export.
            classes: the classes the labels use (by default the set's current classes).
            instances: optional (H, W) nucleus instance ids.
            extra: provenance stored with the pair (model file, source path, slice ...).
            regions: the corrected regions (rectangles/polygons in pixel coordinates, see
                :mod:`.regions`); pixels outside them are unknown. By default (None) the whole image.
                Regions that together cover the whole image are stored as a whole-image pair.

        Raises:
            MaskInputError: the labels are not 2-D integers or their shape differs from the image's,
                or a region is malformed or lies outside the image.
            AnnotationSetError: the folder cannot be written (nothing is changed then).
        """
        image = np.array(image, copy=True)
        labels = _check_labels(np.array(labels, copy=True), f"labels for '{name}'")
        yx = image_yx_shape(image)
        if labels.shape != yx:
            raise MaskInputError(
                f"the labels for '{name}' have shape {labels.shape} but the image is {yx} (height, width); "
                "they must match pixel for pixel. Segment the image again or pick the labels made from it."
            )
        inst = None
        if instances is not None:
            inst = _check_labels(np.array(instances, copy=True), f"instances for '{name}'")
            if inst.shape != yx:
                raise MaskInputError(f"the instances for '{name}' have shape {inst.shape}, the image {yx}.")
        if regions is not None:
            regions = check_regions(regions, yx)
            if is_whole_image(regions, yx):
                regions = None
        if classes:
            self.classes = list(classes)
        pair = AnnotationPair(
            id=self._next_id(),
            name=str(name),
            shape=yx,
            created=time.time(),
            classes=list(classes or self.classes),
            has_instances=inst is not None,
            extra=dict(extra or {}),
            regions=regions,
        )
        final = self.pairs_dir / pair.id
        tmp = self.pairs_dir / f".tmp-{pair.id}"
        try:
            tmp.mkdir(parents=True)
            _write_tiff(tmp / "image.tif", image)
            _write_tiff(tmp / "labels.tif", labels)
            if inst is not None:
                _write_tiff(tmp / "instances.tif", inst)
            write_text_atomic(tmp / PAIR_RECORD, json.dumps(pair.to_dict(), indent=2) + "\n")
            _fsync_dir(tmp)
            os.replace(tmp, final)
            _fsync_dir(self.pairs_dir)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise AnnotationSetError(
                f"{self.folder}: cannot store the pair ({exc.strerror or exc}). "
                "Check the folder's permissions and free space, or choose another folder."
            ) from exc
        pair.folder = final
        self._pairs[pair.id] = pair
        self._write_index()
        return pair

    def remove(self, pair_id: str) -> AnnotationPair:
        """Delete one pair from the set and the disk.

        Raises:
            AnnotationSetError: no such pair, or the folder cannot be changed.
        """
        pair = self.get(pair_id)
        folder = self.pairs_dir / pair.id
        doomed = self.pairs_dir / f".removed-{pair.id}"
        try:
            if folder.exists():
                os.replace(folder, doomed)
                _fsync_dir(self.pairs_dir)
        except OSError as exc:
            raise AnnotationSetError(f"cannot remove pair {pair.id} ({exc.strerror or exc}).") from exc
        del self._pairs[pair.id]
        self._write_index()
        shutil.rmtree(doomed, ignore_errors=True)
        return pair
