"""Training data: find and pair files, load images and masks (files or arrays), cut patches, augment.

- folders: image files in folders, image/mask pairing by name.
- sources: folders, files or in-memory arrays -> 8-bit RGB images and class masks (checked).
- patches: grid patch origins, background skipping, mirror padding of small images.
- augment: flips, 90-degree turns, colour jitter, Gaussian blur.
- datasets: unlabeled and paired patch datasets (crop + augment + normalise on demand).
- sampler: the batch of training step N as a pure function of (seed, step, rank).
"""

from .augment import FINETUNE_AUGMENTATION, PRETRAIN_AUGMENTATION, Augmentation
from .datasets import PairedPatchDataset, PatchDataset, batch_for_step
from .folders import Pairing, find_images, pair_images_with_masks
from .patches import (
    BACKGROUND_FRACTION,
    WHITE_LEVEL,
    PatchIndex,
    grid_origins,
    index_patches,
    is_background,
    pad_to_patch,
    white_fraction,
)
from .sampler import StepSampler
from .sources import LoadedImages, LoadedPairs, load_images, load_pairs, mask_to_classes, to_uint8_rgb

__all__ = [
    "BACKGROUND_FRACTION",
    "FINETUNE_AUGMENTATION",
    "PRETRAIN_AUGMENTATION",
    "WHITE_LEVEL",
    "Augmentation",
    "LoadedImages",
    "LoadedPairs",
    "PairedPatchDataset",
    "Pairing",
    "PatchDataset",
    "PatchIndex",
    "StepSampler",
    "batch_for_step",
    "find_images",
    "grid_origins",
    "index_patches",
    "is_background",
    "load_images",
    "load_pairs",
    "mask_to_classes",
    "pad_to_patch",
    "pair_images_with_masks",
    "to_uint8_rgb",
    "white_fraction",
]
