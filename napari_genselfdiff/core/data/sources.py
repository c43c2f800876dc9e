"""Turn what a user trains on (folders, files, in-memory arrays) into 8-bit RGB images and class masks.

Both front-ends end here: the CLI passes folders, the napari widget passes snapshots of
``(image, labels)`` layer arrays. Images go through :func:`..image_input.to_rgb_float` (the same
rules as inference) and are kept as (H, W, 3) uint8, which is lossless for the usual 8-bit H&E
images and a quarter of the memory of float32.

- An image or mask file that cannot be read is SKIPPED and listed in ``skipped`` (with the reason);
  the run goes on with the others.
- A mask must have the image's height and width, and values below the number of classes; a binary
  mask stored as 0/255 is read as classes {0, 1}. Anything else is an error naming the file.
- Partial annotations: an in-memory pair may carry a 4th element, the (H, W) bool mask of corrected
  pixels (None: all); a mask file may mark unknown pixels with :data:`UNKNOWN_LABEL` (255, what the
  export writes) when it also holds class ids other than 0 (a mask of only 0 and 255 stays a binary
  mask). Unknown pixels are stored as :data:`UNKNOWN_LABEL` in ``LoadedPairs.masks`` and are left out
  of the loss (:class:`.datasets.PairedPatchDataset`). Needs at most 255 classes.
- QuPath GeoJSON masks (``.geojson``, :func:`..annotations.qupath.read_target`): the objects are
  rasterised to class ids (class names matched to ``class_names``), and the pixels outside the
  region annotations are unknown, as above; a file without a region annotation covers the whole
  image (said in ``notes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..annotations.regions import UNKNOWN_LABEL
from ..defaults import GEOJSON_SUFFIXES
from ..errors import ImageInputError, MaskInputError, TrainingInputError
from ..image_input import to_rgb_float
from ..io.masks import to_label_image
from ..io.read import read_array
from .folders import find_images, pair_images_with_masks

#: One source of training images: a folder, a file, an array, or a (name, array) tuple.
TrainingImageSource = Union[str, Path, np.ndarray, tuple]


@dataclass
class LoadedImages:
    """Unlabeled images ready for patching.

    Attributes:
        names: a name per image (file name, or "array N" / the given name for arrays).
        images: (H, W, 3) uint8 RGB arrays.
        skipped: (name, reason) for every file that could not be used.
        notes: conversions that were made (e.g. "grayscale expanded"), one line each.
        folders: the folders the files came from (for provenance).
        arrays: how many of the images were given as in-memory arrays.
    """

    names: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    arrays: int = 0


@dataclass
class LoadedPairs(LoadedImages):
    """Images with class masks; ``masks[i]`` is (H, W) uint8 (uint16 above 255 classes) of ``images[i]``."""

    masks: list[np.ndarray] = field(default_factory=list)


def to_uint8_rgb(array: Any, name: str) -> tuple[np.ndarray, list[str]]:
    """An image array as (H, W, 3) uint8 RGB, with the conversion notes.

    Raises:
        ImageInputError: the array is not an image (see :mod:`..image_input`).
    """
    array = np.asarray(array) if not hasattr(array, "shape") else array
    if getattr(array, "dtype", None) == np.uint8 and array.ndim == 3 and array.shape[-1] in (3, 4):
        return np.ascontiguousarray(np.asarray(array[..., :3])), []
    rgb, notes = to_rgb_float(array, name=name)
    return (rgb * 255.0 + 0.5).astype(np.uint8), [f"{name}: {n}" for n in notes]


def mask_to_classes(mask: Any, num_classes: int, shape: tuple[int, int], name: str,
                    class_names: Sequence[str] | None = None) -> np.ndarray:
    """Check a mask against its image and the classes, and return it as (H, W) class ids.

    Args:
        mask: (H, W) labels (or a grey mask saved as RGB); bool, integers or whole floats.
        num_classes: number of classes K (background included).
        shape: the image's (H, W).
        name: how to call the mask in messages.
        class_names: the configured class names, for messages.

    Returns:
        uint8 (uint16 when K > 256) class ids in [0, K).

    Raises:
        MaskInputError: shape differs from the image, values >= K (other than a 0/255 binary mask),
            or the mask is not a label image.
    """
    labels = to_label_image(np.asarray(mask), name)
    if labels.shape != tuple(shape):
        raise MaskInputError(
            f"{name}: mask shape {labels.shape[0]}x{labels.shape[1]} differs from its image "
            f"({shape[0]}x{shape[1]}); a mask must cover its image pixel for pixel."
        )
    top = int(labels.max(initial=0))
    unknown = None
    if top >= num_classes:
        values = np.unique(labels)
        if set(values.tolist()) <= {0, 255}:
            labels = labels > 0  # a binary mask saved as 0/255
        elif num_classes < UNKNOWN_LABEL and int(values[-1]) == UNKNOWN_LABEL and (
                len(values) < 2 or int(values[-2]) < num_classes):
            unknown = labels == UNKNOWN_LABEL  # an exported partial annotation: 255 = not corrected
            labels = np.where(unknown, 0, labels)
        else:
            named = f" ({', '.join(class_names)})" if class_names else ""
            raise MaskInputError(
                f"{name}: the mask has label value {top}, but {num_classes} classes{named} allow only "
                f"0..{num_classes - 1}. Name more classes (e.g. --classes background nucleus gland), or "
                "if this is an instance map (one id per nucleus) convert it to classes first."
            )
    labels = labels.astype(np.uint8 if num_classes <= 256 else np.uint16)
    if unknown is not None:
        labels[unknown] = UNKNOWN_LABEL
    return labels


def _geojson_classes(path: Path, shape: tuple[int, int], num_classes: int,
                     class_names: Sequence[str] | None, notes: list[str]) -> np.ndarray:
    """Class ids (UNKNOWN_LABEL outside the complete regions) of a QuPath GeoJSON mask."""
    from ..annotations.qupath import read_target
    from ..defaults import DEFAULT_CLASSES

    names = list(class_names) if class_names else list(DEFAULT_CLASSES) if num_classes == len(DEFAULT_CLASSES) else []
    if len(names) != num_classes:
        raise MaskInputError(f"{path}: GeoJSON classes are matched by name; give the {num_classes} class names.")
    target = read_target(path, shape, names)
    notes += [line for line in target.notes if "partial annotation" not in line]
    return target.labels


def mark_unknown(labels: np.ndarray, known: Any, name: str, num_classes: int) -> np.ndarray:
    """``labels`` with the pixels outside ``known`` (H, W bool) set to :data:`UNKNOWN_LABEL`.

    Raises:
        MaskInputError: ``known`` has another shape, or there are too many classes for partial masks.
    """
    known = np.asarray(known, dtype=bool)
    if known.shape != labels.shape:
        raise MaskInputError(f"{name}: the corrected-region mask has shape {known.shape}, the mask {labels.shape}.")
    if known.all():
        return labels
    if num_classes >= UNKNOWN_LABEL:
        raise MaskInputError(f"{name}: partial annotations need fewer than {UNKNOWN_LABEL} classes.")
    labels = labels.copy()
    labels[~known] = UNKNOWN_LABEL
    return labels


def _expand(sources: Any) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name, file path or array) for every image source (folders are listed), and the folders."""
    if sources is None:
        return [], []
    if isinstance(sources, (str, Path, np.ndarray)) or (
        isinstance(sources, tuple) and len(sources) == 2 and isinstance(sources[0], str)
        and hasattr(sources[1], "shape")
    ):
        sources = [sources]
    items: list[tuple[str, Any]] = []
    folders: list[str] = []
    for k, source in enumerate(sources, start=1):
        if isinstance(source, tuple):
            items.append((str(source[0]), source[1]))
        elif hasattr(source, "shape"):
            items.append((f"array {k}", source))
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                items += [(str(p), p) for p in find_images(path)]
                folders.append(str(path))
            elif path.is_file():
                items.append((str(path), path))
            else:
                raise TrainingInputError(f"{path}: no such folder or file.")
    return items, folders


def load_images(sources: TrainingImageSource | Sequence[TrainingImageSource]) -> LoadedImages:
    """Read unlabeled images from folders, files and arrays.

    Args:
        sources: one source or a list of them: a folder (its image files, see
            :func:`.folders.find_images`), an image file, an array, or a ``(name, array)`` tuple.

    Returns:
        :class:`LoadedImages`; unreadable files are in ``skipped``.

    Raises:
        TrainingInputError: no source given, a folder or file does not exist or holds no image, or
            no image at all could be read.
    """
    result = LoadedImages()
    items, result.folders = _expand(sources)
    if not items:
        raise TrainingInputError("no training images given; pass one or more image folders.")
    for name, item in items:
        try:
            array = read_array(item) if isinstance(item, Path) else item
            rgb, notes = to_uint8_rgb(array, Path(name).name)
        except ImageInputError as exc:
            result.skipped.append((name, str(exc)))
            continue
        result.names.append(name)
        result.images.append(rgb)
        result.arrays += not isinstance(item, Path)
        result.notes += notes
    if not result.images:
        reasons = "; ".join(f"{n}: {r}" for n, r in result.skipped[:3])
        raise TrainingInputError(f"none of the {len(items)} image(s) could be read ({reasons}).")
    return result


def load_pairs(
    *,
    num_classes: int,
    image_dir: str | Path | None = None,
    mask_dir: str | Path | None = None,
    pairs: Sequence[tuple] | None = None,
    class_names: Sequence[str] | None = None,
) -> LoadedPairs:
    """Read image/mask pairs from two folders (paired by name) and/or in-memory pairs.

    Args:
        num_classes: number of classes K; mask values must lie in [0, K) (0/255 binary accepted).
        image_dir: folder of images.
        mask_dir: folder of masks (required with ``image_dir``).
        pairs: ``(image, mask)``, ``(name, image, mask)`` or ``(name, image, mask, known)`` tuples; image
            and mask are arrays or paths; ``known`` is the (H, W) bool mask of corrected pixels of a
            partial annotation (None: the whole image).
        class_names: the class names, for messages.

    Returns:
        :class:`LoadedPairs`; pairs with an unreadable image or mask file are in ``skipped``.

    Raises:
        TrainingInputError: nothing given, a folder is missing or empty, no pair, or no pair readable.
        MaskInputError: a mask does not fit its image or the classes (the message names the file).
    """
    result = LoadedPairs()
    items: list[tuple[str, Any, Any, Any]] = []
    if image_dir is not None or mask_dir is not None:
        if image_dir is None or mask_dir is None:
            raise TrainingInputError("give both an image folder and a mask folder (--images and --masks).")
        pairing = pair_images_with_masks(image_dir, mask_dir)
        items += [(str(img), img, msk, None) for img, msk in pairing.pairs]
        result.skipped += [(str(p), "no mask with the same name") for p in pairing.images_without_mask]
        result.notes += [f"mask without image, not used: {p}" for p in pairing.masks_without_image]
        result.notes += pairing.ambiguous
        result.folders += [str(Path(image_dir).expanduser()), str(Path(mask_dir).expanduser())]
    for k, pair in enumerate(pairs or [], start=1):
        if len(pair) == 4:
            items.append((str(pair[0]), pair[1], pair[2], pair[3]))
        elif len(pair) == 3:
            items.append((str(pair[0]), pair[1], pair[2], None))
        elif len(pair) == 2:
            items.append((f"pair {k}", pair[0], pair[1], None))
        else:
            raise TrainingInputError(
                "each in-memory pair must be (image, mask), (name, image, mask) or (name, image, mask, known).")
    if not items:
        raise TrainingInputError("no training pairs given; pass an image folder and a mask folder.")
    for name, image, mask, known in items:
        short = Path(name).name
        try:
            image_array = read_array(image) if isinstance(image, (str, Path)) else image
            rgb, notes = to_uint8_rgb(image_array, short)
            geojson = isinstance(mask, (str, Path)) and Path(mask).suffix.lower() in GEOJSON_SUFFIXES
            mask_array = None if geojson else read_array(mask) if isinstance(mask, (str, Path)) else mask
        except ImageInputError as exc:
            result.skipped.append((name, str(exc)))
            continue
        mask_name = str(mask) if isinstance(mask, (str, Path)) else f"{short} (mask)"
        if geojson:
            labels = _geojson_classes(Path(mask), rgb.shape[:2], num_classes, class_names, result.notes)
        else:
            labels = mask_to_classes(mask_array, num_classes, rgb.shape[:2], mask_name, class_names)
        if known is not None:
            labels = mark_unknown(labels, known, mask_name, num_classes)
        if num_classes < UNKNOWN_LABEL and labels.dtype == np.uint8:
            share = float((labels != UNKNOWN_LABEL).mean()) if labels.size else 1.0
            if share < 1.0:
                if share == 0.0:
                    result.skipped.append((name, "no pixel is marked as corrected"))
                    continue
                result.notes.append(f"{short}: partial annotation, {share:.0%} of the pixels corrected "
                                    "(the rest is left out of the loss)")
        result.names.append(name)
        result.images.append(rgb)
        result.masks.append(labels)
        result.arrays += not isinstance(image, (str, Path))
        result.notes += notes
    if not result.images:
        reasons = "; ".join(f"{n}: {r}" for n, r in result.skipped[:3])
        raise TrainingInputError(f"none of the {len(items)} image/mask pair(s) could be read ({reasons}).")
    return result
