"""Find training images in folders and pair them with their masks by file name.

- Image files: .tif, .tiff, .png, .jpg, .jpeg, .bmp (any case), directly in the folder (not in
  sub-folders), sorted by name. Hidden files (starting with ".") are ignored.
- Masks may also be QuPath GeoJSON files (``.geojson``, :mod:`..annotations.qupath`): ``img1.geojson``
  pairs with ``img1.tif`` by the same rule.
- Pairing: an image and a mask pair when their stems are equal after removing ONE trailing
  ``_mask``, ``_labels`` or ``_instances`` (any case) from either (:func:`match_key`), so
  ``TCGA-1.tif`` pairs with ``TCGA-1.png``, ``TCGA-1_mask.png`` or ``TCGA-1_labels.tif``. This is
  THE pairing rule: ``genselfdiff evaluate`` (``core/metrics/evaluation.py``) pairs predictions
  with ground truth by the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import GEOJSON_SUFFIXES
from ..errors import TrainingInputError
from ..io.read import IMAGE_SUFFIXES

MATCH_SUFFIXES = ("_labels", "_mask", "_instances")
"""Trailing stem suffixes ignored when pairing files ("TCGA-XX_labels.tif" pairs with "TCGA-XX.png")."""
INSTANCE_SUFFIX = "_instances"
"""The suffix of instance label files (``genselfdiff segment --instances`` writes X_instances.tif)."""


def match_key(path: Path) -> str:
    """The name a file is paired by: its stem without one trailing "_labels", "_mask" or "_instances".

    Args:
        path: an image or mask file.

    Returns:
        e.g. "TCGA-XX" for "TCGA-XX_labels.tif", "TCGA-XX_instances.tif", "TCGA-XX_mask.png" and
        "TCGA-XX.png".
    """
    stem = path.stem
    for suffix in MATCH_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def find_images(folder: str | Path, *, what: str = "image", suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Args:
        folder: the folder to search.
        what: what the files are, for messages ("image", "mask").
        suffixes: the file suffixes looked for (lower case). By default, the image suffixes.

    Raises:
        TrainingInputError: the folder does not exist, is not a folder, or holds no image file.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise TrainingInputError(f"{folder}: no such folder.")
    if not folder.is_dir():
        raise TrainingInputError(f"{folder}: not a folder; give the folder that holds the {what} files.")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )
    if not files:
        raise TrainingInputError(
            f"{folder}: no {what} files found (looked for {', '.join(suffixes)} directly in the folder)."
        )
    return files


@dataclass
class Pairing:
    """The result of :func:`pair_images_with_masks`.

    Attributes:
        pairs: (image, mask) paths, sorted by image name.
        images_without_mask: image files no mask pairs with.
        masks_without_image: mask files no image pairs with.
        ambiguous: messages for names shared by several files of one folder (those are left out).
    """

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)


def _by_key(files: list[Path], ambiguous: list[str]) -> dict[str, Path]:
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(match_key(path), []).append(path)
    for key, paths in groups.items():
        if len(paths) > 1:
            ambiguous.append(
                f"several files in {paths[0].parent} pair by the name '{key}' "
                f"({', '.join(p.name for p in paths)}); they are left out. Keep one."
            )
    return {key: paths[0] for key, paths in groups.items() if len(paths) == 1}


def pair_images_with_masks(image_dir: str | Path, mask_dir: str | Path) -> Pairing:
    """Pair the images of ``image_dir`` with the masks of ``mask_dir`` by name (see the module rules).

    Raises:
        TrainingInputError: a folder is missing or empty, or no image pairs with a mask (the message
            shows a few names of each side so a naming mismatch is easy to see).
    """
    images = find_images(image_dir, what="image")
    masks = find_images(mask_dir, what="mask", suffixes=IMAGE_SUFFIXES + GEOJSON_SUFFIXES)
    result = Pairing()
    by_image = _by_key(images, result.ambiguous)
    by_mask = _by_key(masks, result.ambiguous)
    for key in sorted(by_image):
        if key in by_mask:
            result.pairs.append((by_image[key], by_mask[key]))
        else:
            result.images_without_mask.append(by_image[key])
    result.masks_without_image = [by_mask[k] for k in sorted(by_mask.keys() - by_image.keys())]
    if not result.pairs:
        def some(paths: list[Path]) -> str:
            names = [p.name for p in paths[:3]]
            return ", ".join(names) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")

        raise TrainingInputError(
            f"no image in {image_dir} has a mask in {mask_dir} with the same name "
            f"(images: {some(images)}; masks: {some(masks)}). A mask pairs with an image of the same "
            "name, optionally ending in _mask or _labels (e.g. img1.tif and img1_mask.png or img1.geojson)."
        )
    return result
