"""Export label masks for other tools: TIFF + PNG masks, instance masks, classes.json and GeoJSON.

For an image called ``<stem>`` the export folder receives::

    <stem>_labels.tif      class ids (0 = background), deflate TIFF (the same as `genselfdiff segment`)
    <stem>_labels.png      the same as an 8/16-bit grayscale PNG
    <stem>_instances.tif   nucleus instance ids, when there are instances (and a PNG if <= 65535)
    <stem>.geojson         one QuPath object per nucleus/region (see :mod:`.geojson`)
    classes.json           the class ids, names and colours, shared by the folder's masks

Instances follow the labels: before anything is written, each item's instances are brought into
agreement with its (corrected) labels by :func:`..annotations.instances_sync.sync_instances` (erased
nuclei removed, painted ones split into new instances, untouched ids kept); the report's notes say
what changed.

Partial annotations (an item with a ``known`` mask): the masks hold ``UNKNOWN_LABEL`` (255) at the
pixels outside the corrected regions (instances: 0 there), the GeoJSON holds the objects inside the
regions plus one "annotation" feature per corrected region (classification "Corrected region",
``properties.genselfdiff = "corrected_region"``), and classes.json records ``"unknown_label": 255``.

The napari reader of this plugin reopens ``*_labels.tif`` / ``*_labels.png`` with ``classes.json``
beside them as a Labels layer with the class names and colours.

Nothing existing is replaced unless the caller passes ``overwrite=True``: every target is checked
BEFORE anything is written, so a refused export writes nothing (:class:`OverwriteRefused` lists the
files). A ``classes.json`` with the same content is not a conflict.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..annotations.regions import UNKNOWN_LABEL
from ..errors import GenSelfDiffError
from ..io.atomic import write_text_atomic
from ..io.write import write_labels_png, write_labels_tiff
from ..model_files.classes import ClassInfo
from .geojson import labels_to_geojson, mask_geometry

#: QuPath class of the corrected-region outlines in the GeoJSON of a partial annotation.
REGION_CLASS = "Corrected region"

FORMATS = ("tif", "png", "geojson")
CLASSES_FILE = "classes.json"
CLASSES_FORMAT = "genselfdiff.classes"


class ExportError(GenSelfDiffError):
    """The export cannot be done (empty set, unwritable folder, mismatched classes)."""


class OverwriteRefused(ExportError, FileExistsError):
    """Some target files exist and the caller did not allow replacing them; nothing was written.

    Attributes:
        paths: the existing files that would have been replaced.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        shown = ", ".join(p.name for p in self.paths[:5]) + (
            f" and {len(self.paths) - 5} more" if len(self.paths) > 5 else ""
        )
        folder = self.paths[0].parent if self.paths else ""
        super().__init__(f"{len(self.paths)} file(s) already exist in {folder}: {shown}. Nothing was written.")


@dataclass
class ExportItem:
    """One mask to export.

    Attributes:
        stem: file name stem (made safe for file systems by :func:`safe_stem`).
        labels: (H, W) class ids.
        classes: their classes (names and colours).
        instances: optional (H, W) instance ids.
        known: optional (H, W) bool mask of the corrected pixels (a partial annotation); None: all.
    """

    stem: str
    labels: np.ndarray
    classes: list[ClassInfo] = field(default_factory=list)
    instances: np.ndarray | None = None
    known: np.ndarray | None = None

    @property
    def partial(self) -> bool:
        return self.known is not None and not bool(np.all(self.known))


def region_features(known: np.ndarray, id_seed: str = "") -> list[dict]:
    """One QuPath "annotation" Feature per connected corrected region of a (H, W) bool mask."""
    import uuid

    from scipy import ndimage

    parts, n = ndimage.label(np.asarray(known, bool))
    features = []
    for k, sl in enumerate(ndimage.find_objects(parts), start=1):
        if sl is None:
            continue
        geometry = mask_geometry(parts[sl] == k, (sl[0].start, sl[1].start))
        if geometry is None:
            continue
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"genselfdiff/{id_seed}/region/{k}")),
            "geometry": geometry,
            "properties": {"objectType": "annotation", "genselfdiff": "corrected_region",
                           "classification": {"name": REGION_CLASS, "color": [255, 200, 0]}},
        })
    return features


def _partial_arrays(item: ExportItem) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(labels for files, instances for files, labels for GeoJSON, instances for GeoJSON) of an item."""
    if not item.partial:
        return item.labels, item.instances, item.labels, item.instances
    known = np.asarray(item.known, bool)
    inside = np.where(known, item.labels, 0)
    files = inside.astype(np.promote_types(inside.dtype, np.uint8))
    files[~known] = UNKNOWN_LABEL
    inst = None if item.instances is None else np.where(known, item.instances, 0)
    return files, inst, inside, inst


@dataclass
class ExportReport:
    """What an export wrote."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    items: int = 0
    notes: list[str] = field(default_factory=list)


def safe_stem(name: str) -> str:
    """A file-name stem from a layer or image name: letters, digits, '.', '_', '-' kept, others '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "image"
    return stem[:120]


def classes_to_json(classes: Sequence[ClassInfo], *, partial: bool = False) -> str:
    values = {"format": CLASSES_FORMAT, "classes": [c.to_dict() for c in classes]}
    if partial:
        values["unknown_label"] = UNKNOWN_LABEL  # pixels outside the corrected regions
    return json.dumps(values, indent=2) + "\n"


def read_classes_json(path: str | Path) -> list[ClassInfo]:
    """Read a classes.json (ours: ``{"classes": [...]}``, or a bare list of ``{id, name, color}``).

    Raises:
        ExportError: the file is unreadable or malformed.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        records = values["classes"] if isinstance(values, dict) else values
        return [ClassInfo.from_dict(c) for c in records]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, GenSelfDiffError) as exc:
        raise ExportError(f"{path}: not a readable classes.json ({exc}).") from exc


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it.

    Raises:
        ExportError: it cannot be created or written (the message names the folder and the reason).
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".genselfdiff-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(_unwritable(folder, exc)) from exc
    return folder


def _unwritable(folder: Path, exc: OSError) -> str:
    """Why files cannot be written in ``folder`` and what to do, in words that match what the user sees
    (a folder that exists is never said to be missing)."""
    import errno

    where = f"cannot write to the export folder {folder}"
    own = "Choose a folder of your own, e.g. one in your home folder."
    if folder.is_dir():
        if exc.errno == errno.EROFS:
            return f"{where}: it is on a read-only file system. {own}"
        if exc.errno == errno.ENOSPC:
            return f"{where}: no space left on the device. Free some space or choose a folder on another disk."
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOENT):
            # ENOENT here: a system folder (such as /proc) that exists but takes no new files
            return (f"{where}: permission denied (the folder exists, but no file can be created in it: a system "
                    f"folder, or one you may not write to). {own}")
    reason = exc.strerror or str(exc)
    return f"{where} ({reason}). {own}"


def _targets(folder: Path, item: ExportItem, formats: Sequence[str]) -> list[tuple[str, Path]]:
    out = []
    if "tif" in formats:
        out.append(("labels_tif", folder / f"{item.stem}_labels.tif"))
        if item.instances is not None:
            out.append(("instances_tif", folder / f"{item.stem}_instances.tif"))
    if "png" in formats:
        out.append(("labels_png", folder / f"{item.stem}_labels.png"))
        if item.instances is not None and int(np.max(item.instances, initial=0)) <= 65535:
            out.append(("instances_png", folder / f"{item.stem}_instances.png"))
    if "geojson" in formats:
        out.append(("geojson", folder / f"{item.stem}.geojson"))
    return out


def export_items(
    folder: str | Path,
    items: Sequence[ExportItem],
    *,
    formats: Sequence[str] = FORMATS,
    object_type: str = "auto",
    overwrite: bool = False,
) -> ExportReport:
    """Write every item's files and one classes.json into ``folder``.

    Args:
        folder: the export folder (created).
        items: the masks; their stems must be distinct.
        formats: any of "tif", "png", "geojson". By default all three.
        object_type: QuPath object type of the GeoJSON features: "auto" (glands annotations, nuclei
            detections, by class name; see :func:`.geojson.object_type_of`), "detection" or "annotation".
        overwrite: replace existing files. By default an existing target raises
            :class:`OverwriteRefused` before anything is written.

    Raises:
        ExportError: nothing to export, an unknown format, an unwritable folder, repeated stems, or
            items whose classes disagree (they would need two classes.json).
        OverwriteRefused: targets exist and ``overwrite`` is False.
    """
    if not items:
        raise ExportError("nothing to export: the annotation set is empty. Mark at least one image as corrected first.")
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}.")
    stems = [i.stem for i in items]
    if len(set(stems)) != len(stems):
        raise ExportError(f"two masks would get the same file name ({sorted(s for s in stems if stems.count(s) > 1)[0]}).")
    classes = next((i.classes for i in items if i.classes), [])
    for item in items:
        if item.classes and [c.to_dict() for c in item.classes] != [c.to_dict() for c in classes]:
            raise ExportError(
                f"'{item.stem}' uses other classes ({', '.join(c.name for c in item.classes)}) than "
                f"'{items[0].stem}' ({', '.join(c.name for c in classes)}); one folder holds one classes.json. "
                "Export them to separate folders."
            )
    folder = check_writable(folder)
    report = ExportReport(folder=folder, items=len(items))
    items = [_synced(item, report.notes) for item in items]
    plan = [(item, kind, path) for item in items for kind, path in _targets(folder, item, formats)]
    classes_path = folder / CLASSES_FILE
    partial = any(i.partial for i in items)
    if partial and len(classes) >= UNKNOWN_LABEL:
        raise ExportError(f"partial annotations need fewer than {UNKNOWN_LABEL} classes ({UNKNOWN_LABEL} marks "
                          "the pixels outside the corrected regions).")
    classes_text = classes_to_json(classes, partial=partial) if classes else None
    conflicts = [path for _, _, path in plan if path.exists()]
    if classes_text is not None and classes_path.exists():
        try:
            same = classes_path.read_text(encoding="utf-8") == classes_text
        except OSError:
            same = False
        if not same:
            conflicts.append(classes_path)
    if conflicts and not overwrite:
        raise OverwriteRefused(conflicts)

    try:
        for item, kind, path in plan:
            labels, instances, geo_labels, geo_instances = _partial_arrays(item)
            if kind == "labels_tif":
                report.written.append(write_labels_tiff(path, labels, overwrite=overwrite))
            elif kind == "instances_tif":
                report.written.append(write_labels_tiff(path, instances, overwrite=overwrite, min_dtype=np.uint16))
            elif kind == "labels_png":
                report.written.append(write_labels_png(path, labels, overwrite=overwrite))
            elif kind == "instances_png":
                report.written.append(write_labels_png(path, instances, overwrite=overwrite))
            elif kind == "geojson":
                collection = labels_to_geojson(
                    geo_labels, item.classes or classes, instances=geo_instances,
                    object_type=object_type, id_seed=item.stem,
                )
                if item.partial:
                    collection["features"] += region_features(item.known, id_seed=item.stem)
                report.written.append(write_text_atomic(path, json.dumps(collection) + "\n", overwrite=overwrite))
        if classes_text is not None:
            if not classes_path.exists() or classes_path.read_text(encoding="utf-8") != classes_text:
                write_text_atomic(classes_path, classes_text, overwrite=True)
            report.written.append(classes_path)
    except OSError as exc:
        raise ExportError(
            f"writing to {folder} failed ({exc.strerror or exc}); {len(report.written)} file(s) were written "
            "before the error. Check the free space and permissions."
        ) from exc
    if "png" in formats:
        skipped = [i.stem for i in items if i.instances is not None and int(np.max(i.instances, initial=0)) > 65535]
        if skipped:
            report.notes.append(f"no instance PNG for {', '.join(skipped)}: more than 65535 nuclei (TIFF written)")
    return report


def _synced(item: ExportItem, notes: list[str]) -> ExportItem:
    """The item with its instances in agreement with its labels (a note when they changed)."""
    if item.instances is None:
        return item
    from dataclasses import replace

    from ..annotations.instances_sync import sync_instances

    instances, changes = sync_instances(item.labels, item.instances)
    if not changes.changed:
        return item
    notes.append(f"instances of {item.stem} updated to agree with its corrected labels ({changes.describe()})")
    return replace(item, instances=instances)


def export_annotation_set(aset, folder: str | Path, **kwargs) -> ExportReport:
    """Export every pair of an :class:`..annotations.AnnotationSet` (stems from the pairs' names).

    Keyword arguments are those of :func:`export_items`.

    Raises:
        ExportError: the set is empty (and as :func:`export_items`).
    """
    if len(aset) == 0:
        raise ExportError(
            "the annotation set is empty: nothing to export. Mark at least one image as corrected first "
            "(or export the selected labels layer)."
        )
    items, seen = [], set()
    for pair in aset.pairs:
        stem = safe_stem(pair.name)
        if stem in seen:
            stem = f"{stem}_{pair.id}"
        seen.add(stem)
        _, labels = aset.load(pair.id)
        items.append(
            ExportItem(stem=stem, labels=labels, classes=list(pair.classes), instances=aset.load_instances(pair.id),
                       known=aset.load_known(pair.id))
        )
    return export_items(folder, items, **kwargs)
