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
        output: the model's output kind (:mod:`..inference.outputs`). For an instance-aware kind
            items are ``(image, class target, regression target (E, s, s), ignore)`` made by
            :mod:`.instance_targets` after the geometric augmentation. By default, "classes".
        instances: (H, W) instance ids per image (None for an image: split from its mask by the
            watershed); only read for instance-aware outputs.
        scale_range: ``(low, high)``: each patch is resampled by a factor drawn log-uniformly from
            this range (0.5: the tissue at half the size, as a 20x scan shows 40x training data),
            images area-averaged, masks and instances by nearest neighbour. By default, None (no
            rescaling).
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
        output: str = "classes",
        instances: Sequence[np.ndarray | None] | None = None,
        scale_range: tuple[float, float] | None = None,
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
        self.output = output
        self.instances = None
        if output != "classes":
            from .instance_targets import instances_from_mask

            given = list(instances) if instances is not None else [None] * len(masks)
            if len(given) != len(masks):
                raise ValueError(f"{len(masks)} masks but {len(given)} instance maps.")
            self.instances = [
                pad_to_patch(np.asarray(g).astype(np.int32), int(size), name=n) if g is not None
                else instances_from_mask(m)
                for g, m, n in zip(given, masks, shown)
            ]
            for inst, m, n in zip(self.instances, self.masks, shown):
                if inst.shape != m.shape:
                    raise ValueError(f"{n}: instance map {inst.shape} and mask {m.shape} differ in size.")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}.")
        self.scale_range = tuple(scale_range) if scale_range is not None else None

    def _window(self, index: int, rng: np.random.Generator) -> tuple[int, tuple[slice, slice], float]:
        """The image, the window to cut and the factor to resample it by (1: the grid patch as it is)."""
        i, y, x = (int(v) for v in self.index.origins[index])
        if self.scale_range is None or self.scale_range == (1.0, 1.0):
            return i, (slice(y, y + self.size), slice(x, x + self.size)), 1.0
        draw = rng.random()
        lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        factor = float(np.exp(lo + (hi - lo) * draw))
        h, w = self.images[i].shape[:2]
        side = int(min(round(self.size / factor), h, w))
        cy, cx = y + self.size // 2, x + self.size // 2
        y0 = int(np.clip(cy - side // 2, 0, h - side))
        x0 = int(np.clip(cx - side // 2, 0, w - side))
        return i, (slice(y0, y0 + side), slice(x0, x0 + side)), self.size / side

    def _resampled(self, array: np.ndarray, factor: float, *, labels: bool) -> np.ndarray:
        if factor == 1.0:
            return array
        if labels:  # nearest neighbour, exactly size x size
            idx = np.minimum((np.arange(self.size) + 0.5) / factor, array.shape[0] - 1).astype(np.intp)
            return array[np.ix_(idx, idx)]
        from skimage.transform import resize

        return resize(array, (self.size, self.size) + array.shape[2:], order=1, anti_aliasing=factor < 1,
                      preserve_range=True).astype(np.float32)

    def __getitem__(self, item) -> tuple[torch.Tensor, ...]:
        index, rng = _seed_of(item)
        i, window, factor = self._window(index, rng)
        patch = self._resampled(self.images[i][window].astype(np.float32) * np.float32(1.0 / 255.0), factor,
                                labels=False)
        mask = self._resampled(self.masks[i][window], factor, labels=True)
        inst = None if self.instances is None else self._resampled(self.instances[i][window], factor, labels=True)
        if self.augmentation is not None:
            if inst is not None:  # the instance ids move with the mask: stacked, augmented, split again
                patch, both = self.augmentation(patch, np.stack([mask.astype(np.int32), inst], -1), rng)
                mask, inst = both[..., 0], both[..., 1]
            else:
                patch, mask = self.augmentation(patch, mask, rng)
        image = torch.from_numpy(self.normalization.apply_numpy(patch))
        ignore = np.ascontiguousarray(mask == UNKNOWN_LABEL) if self.partial else None
        if ignore is not None:
            mask = np.where(ignore, 0, mask)
        if inst is not None:
            from .instance_targets import targets_for

            inst = np.where(ignore, 0, inst) if ignore is not None else inst
            target, regression = targets_for(self.output, np.ascontiguousarray(inst), np.asarray(mask))
            if regression is None:
                regression = np.zeros((0,) + target.shape, np.float32)
            return (image, torch.from_numpy(target), torch.from_numpy(regression),
                    torch.from_numpy(ignore if ignore is not None else np.zeros(target.shape, bool)))
        if ignore is not None:
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
