"""Patch datasets for the two training stages, over images held in memory as 8-bit RGB.

- :class:`PatchDataset`: unlabeled patches for diffusion pretraining -> normalised (3, s, s) tensors.
- :class:`PairedPatchDataset`: image patches with their class masks for fine-tuning ->
  ((3, s, s) float32, (s, s) int64), plus an (s, s) bool ignore mask when some mask holds unknown
  pixels (:data:`..annotations.regions.UNKNOWN_LABEL`, partial annotations).

Both take images that are already loaded (see :mod:`.sources`: folders, files or the napari
widget's arrays), pad images smaller than a patch by mirroring, index grid patches without copying
them (:mod:`.patches`) and crop + augment on demand. Item ``(index, seed)`` is a pure function of
both (an ``int`` item uses the index as the seed), so :func:`batch_for_step` is reproducible.
Images are normalised with the ONE normalisation stored in model files
(:data:`..normalization.DEFAULT_NORMALIZATION` unless given).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..annotations.regions import UNKNOWN_LABEL
from ..normalization import DEFAULT_NORMALIZATION, Normalization
from .augment import FINETUNE_AUGMENTATION, PRETRAIN_AUGMENTATION, Augmentation
from .patches import PatchIndex, index_patches, pad_to_patch
from .sampler import StepSampler


def _seed_of(item) -> tuple[int, np.random.Generator]:
    if isinstance(item, tuple):
        index, seed = item
        return int(index), np.random.default_rng([int(seed), int(index)])
    return int(item), np.random.default_rng(int(item))


class PatchDataset(Dataset):
    """Unlabeled grid patches of RGB images, augmented and normalised.

    Args:
        images: (H, W, 3) uint8 RGB images.
        size: patch side in pixels.
        stride: grid step. By default, ``size // 4`` (the paper: 64 for 256).
        skip_background: leave out mostly-white patches (:mod:`.patches`). By default, True.
        augmentation: applied to every patch. By default, the paper's pretraining flips.
        normalization: maps [0, 1] RGB to the network's input range. By default, to [-1, 1].
        names: image names, for messages. By default, "image 1", "image 2", ...
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        size: int,
        stride: int | None = None,
        *,
        skip_background: bool = True,
        augmentation: Augmentation | None = PRETRAIN_AUGMENTATION,
        normalization: Normalization = DEFAULT_NORMALIZATION,
        names: Sequence[str] | None = None,
        known: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
        self.size = int(size)
        self.images = [pad_to_patch(np.asarray(img), self.size, name=n) for img, n in zip(images, names)]
        self.index: PatchIndex = index_patches(
            self.images, self.size, int(stride or max(1, self.size // 4)), skip_background=skip_background,
            known=known,  # (padded) corrected-pixel masks of partial annotations; see .patches
        )
        self.augmentation = augmentation
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.index)

    def _crop(self, index: int) -> tuple[int, int, int, np.ndarray]:
        i, y, x = (int(v) for v in self.index.origins[index])
        patch = self.images[i][y : y + self.size, x : x + self.size]
        return i, y, x, patch.astype(np.float32) * np.float32(1.0 / 255.0)

    def __getitem__(self, item) -> torch.Tensor:
        index, rng = _seed_of(item)
        _, _, _, patch = self._crop(index)
        if self.augmentation is not None:
            patch, _ = self.augmentation(patch, None, rng)
        return torch.from_numpy(self.normalization.apply_numpy(patch))


class PairedPatchDataset(PatchDataset):
    """Grid patches of images with the matching patches of their class masks.

    Args:
        images: (H, W, 3) uint8 RGB images.
        masks: (H, W) integer class maps, one per image.
        size, stride, skip_background, normalization, names: as :class:`PatchDataset`.
        augmentation: by default, the paper's fine-tuning set (flips, jitter, blur) + 90-degree turns.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        size: int,
        stride: int | None = None,
        *,
        skip_background: bool = True,
        augmentation: Augmentation | None = FINETUNE_AUGMENTATION,
        normalization: Normalization = DEFAULT_NORMALIZATION,
        names: Sequence[str] | None = None,
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks.")
        shown = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
        masks = [pad_to_patch(np.asarray(m), int(size), name=n) for m, n in zip(masks, shown)]
        # Partial annotations: uint8 masks mark uncorrected pixels UNKNOWN_LABEL (see .sources); only
        # patches with corrected pixels are kept, and items then carry an ignore mask for the loss.
        known = [m != UNKNOWN_LABEL if m.dtype == np.uint8 and (m == UNKNOWN_LABEL).any() else None for m in masks]
        self.partial = any(k is not None for k in known)
        super().__init__(images, size, stride, skip_background=skip_background, augmentation=augmentation,
                         normalization=normalization, names=names, known=known if self.partial else None)
        self.masks = masks

    def __getitem__(self, item) -> tuple[torch.Tensor, ...]:
        index, rng = _seed_of(item)
        i, y, x, patch = self._crop(index)
        mask = self.masks[i][y : y + self.size, x : x + self.size]
        if self.augmentation is not None:
            patch, mask = self.augmentation(patch, mask, rng)
        image = torch.from_numpy(self.normalization.apply_numpy(patch))
        if self.partial:
            ignore = np.ascontiguousarray(mask == UNKNOWN_LABEL)
            mask = np.where(ignore, 0, mask)
            return image, torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64)), torch.from_numpy(ignore)
        return image, torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))


def batch_for_step(dataset: PatchDataset, sampler: StepSampler, step: int):
    """This rank's batch at 1-based ``step``: (B, 3, s, s), or a tuple (images, masks (B, s, s)[, ignore (B, s, s)]).

    A pure function of the dataset, the sampler's seed/rank and ``step`` (see :mod:`.sampler`).
    """
    seed = int(sampler.rng(step).integers(2**62))
    items = [dataset[(int(index), seed + k)] for k, index in enumerate(sampler.indices(step))]
    if isinstance(items[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*items))
    return torch.stack(items)
