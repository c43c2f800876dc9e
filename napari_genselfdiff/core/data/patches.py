"""Cut training patches out of whole images: a grid of origins, background skipping, small images.

Patches are never copied out in advance: a :class:`PatchIndex` lists ``(image, y, x)`` origins and
the datasets crop on demand, so the memory used is that of the images (kept as 8-bit RGB), not of
the (heavily overlapping, with the paper's stride 64 for 256 patches) patches.

Rules (also in docs/training.md):

- Grid: origins every ``stride`` pixels along each axis, plus one flush with the far edge, so every
  pixel of an image is in at least one patch (the paper cut 256 patches with stride 64).
- Background: a patch is skipped when more than ``BACKGROUND_FRACTION`` (90 %) of its pixels are
  "white", i.e. ALL three channels above ``WHITE_LEVEL`` (0.85 of full scale, 217 in 8 bits). Glass
  and empty slide areas teach the network nothing about tissue. The test uses every pixel of the
  patch, so a patch with a thin strip of tissue (over 10 %) is kept.
- Partial annotations (``known`` masks): a patch with no corrected pixel is skipped, and the
  background test counts only its corrected pixels, so a corrected region smaller than a patch still
  gives the patches that contain it, even in a mostly empty field.
- Small images: a side shorter than the patch is padded by mirroring (``numpy.pad`` mode
  "symmetric", the same for image and mask, as tiled inference pads). A side shorter than a quarter
  of the patch is refused: the patch would be mostly mirrored copies of a few rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TrainingInputError

WHITE_LEVEL = 0.85
"""A pixel is white (glass, background) when all of R, G and B exceed this fraction of full scale."""

BACKGROUND_FRACTION = 0.9
"""A patch is background, and skipped, when more than this fraction of its pixels are white."""

MIN_SIDE_FRACTION = 0.25
"""Images with a side shorter than this fraction of the patch side are refused (not padded)."""


def grid_origins(length: int, size: int, stride: int) -> list[int]:
    """Patch origins along one axis: every ``stride`` pixels, plus one ending at the edge.

    Args:
        length: image side in pixels (>= size; pad smaller images first).
        size: patch side.
        stride: step between origins (> 0).

    Returns:
        Sorted distinct origins ``o`` with ``0 <= o <= length - size``, the last one ``length - size``.
    """
    if stride <= 0:
        raise ValueError(f"stride must be > 0, got {stride}.")
    if length < size:
        raise ValueError(f"a side of {length} pixels is shorter than the patch ({size}); pad it first.")
    origins = list(range(0, length - size + 1, stride))
    if origins[-1] != length - size:
        origins.append(length - size)
    return origins


def pad_to_patch(image: np.ndarray, size: int, *, name: str = "image") -> np.ndarray:
    """Mirror-pad ``image`` (H, W[, C]) at the bottom and right so both sides are at least ``size``.

    Args:
        image: an RGB image (H, W, 3) or a mask (H, W).
        size: the patch side.
        name: how to call the image in messages.

    Returns:
        ``image`` itself when large enough, else a padded copy (mode "symmetric").

    Raises:
        TrainingInputError: a side is shorter than ``MIN_SIDE_FRACTION * size``.
    """
    h, w = image.shape[:2]
    if h >= size and w >= size:
        return image
    if min(h, w) < MIN_SIDE_FRACTION * size:
        raise TrainingInputError(
            f"{name}: {h}x{w} pixels is too small for {size}-pixel training patches (a side must be at "
            f"least {int(np.ceil(MIN_SIDE_FRACTION * size))} pixels; smaller sides are mirror-padded). "
            "Use a smaller patch size or leave this image out."
        )
    pad = [(0, max(0, size - h)), (0, max(0, size - w))] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="symmetric")


@dataclass(frozen=True)
class PatchIndex:
    """Patch origins over a list of images.

    Attributes:
        size: patch side in pixels.
        origins: (N, 3) int64 array of ``(image index, y, x)``.
        skipped_background: how many grid patches were left out as background.
        per_image: patches kept per image (same order as the images).
        skipped_unknown: patches left out because none of their pixels was marked as corrected.
    """

    size: int
    origins: np.ndarray
    skipped_background: int
    per_image: tuple[int, ...]
    skipped_unknown: int = 0

    def __len__(self) -> int:
        return int(self.origins.shape[0])


def index_patches(
    images: list[np.ndarray],
    size: int,
    stride: int,
    *,
    skip_background: bool = True,
    known: list[np.ndarray | None] | None = None,
) -> PatchIndex:
    """List the grid patches of every image, leaving out background patches.

    Args:
        images: (H, W, 3) uint8 RGB images, each at least ``size`` on both sides (see
            :func:`pad_to_patch`).
        size: patch side.
        stride: grid step (the paper: 64 for 256 patches).
        skip_background: leave out patches that are mostly white (see the module rules). By default, True.
        known: per image, an (H, W) bool mask of corrected pixels (partial annotations) or None (all).
            Patches without a corrected pixel are left out; see the module rules.

    Returns:
        The :class:`PatchIndex`.

    Raises:
        TrainingInputError: no patch is left (every patch is background, or there is no image).
    """
    rows: list[tuple[int, int, int]] = []
    skipped = 0
    skipped_unknown = 0
    per_image = []

    def box(integral: np.ndarray, y: int, x: int) -> int:
        return int(integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x])

    for i, image in enumerate(images):
        h, w = image.shape[:2]
        kept = 0
        mask = None if known is None else known[i]
        if mask is not None:
            mask = np.asarray(mask, bool)
            known_integral = np.pad(mask.cumsum(0, dtype=np.int64).cumsum(1), ((1, 0), (1, 0)))
        if skip_background:
            white = np.all(image[..., :3] > WHITE_LEVEL * 255, axis=-1)
            if mask is not None:
                white = white & mask  # only corrected pixels count
            # Integral image: the white count of any patch in O(1).
            integral = np.pad(white.cumsum(0, dtype=np.int64).cumsum(1), ((1, 0), (1, 0)))
        for y in grid_origins(h, size, stride):
            for x in grid_origins(w, size, stride):
                area = size * size
                if mask is not None:
                    area = box(known_integral, y, x)
                    if area == 0:
                        skipped_unknown += 1
                        continue
                if skip_background:
                    if box(integral, y, x) > BACKGROUND_FRACTION * area:
                        skipped += 1
                        continue
                rows.append((i, y, x))
                kept += 1
        per_image.append(kept)
    if not rows:
        if skipped_unknown and not skipped:
            raise TrainingInputError("no pixel of the images is marked as corrected; there is nothing to train on.")
        if skipped:
            raise TrainingInputError(
                f"all {skipped} patches of the {len(images)} image(s) are background (over "
                f"{BACKGROUND_FRACTION:.0%} white pixels); there is no tissue to train on. Check the "
                "images, or turn background skipping off (--no-skip-background)."
            )
        raise TrainingInputError("there are no images to cut training patches from.")
    origins = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return PatchIndex(size=int(size), origins=origins, skipped_background=skipped, per_image=tuple(per_image),
                      skipped_unknown=skipped_unknown)
