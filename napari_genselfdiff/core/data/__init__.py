"""Training data: find and pair files, load images and masks (files or arrays), cut patches, augment.

- folders: image files in folders, image/mask pairing by name (match_key: THE pairing rule).
- sources: folders, files or in-memory arrays -> 8-bit RGB images and class masks (checked).
- patches: grid patch origins, background skipping, mirror padding of small images.
- augment: flips, 90-degree turns, colour jitter, Gaussian blur.
- datasets: unlabeled and paired patch datasets (crop + augment + normalise on demand).
- sampler: the batch of training step N as a pure function of (seed, step, rank).
"""

# The submodules load on first use (PEP 562), so that importing one of them -- e.g. folders.py, whose
# pairing rule core/metrics/evaluation.py uses -- does not import torch (datasets.py).
_WHERE = {
    "FINETUNE_AUGMENTATION": "augment",
    "PRETRAIN_AUGMENTATION": "augment",
    "Augmentation": "augment",
    "PairedPatchDataset": "datasets",
    "PatchDataset": "datasets",
    "batch_for_step": "datasets",
    "Pairing": "folders",
    "find_images": "folders",
    "match_key": "folders",
    "pair_images_with_masks": "folders",
    "BACKGROUND_FRACTION": "patches",
    "WHITE_LEVEL": "patches",
    "PatchIndex": "patches",
    "grid_origins": "patches",
    "index_patches": "patches",
    "pad_to_patch": "patches",
    "StepSampler": "sampler",
    "LoadedImages": "sources",
    "LoadedPairs": "sources",
    "load_images": "sources",
    "load_pairs": "sources",
    "mask_to_classes": "sources",
    "to_uint8_rgb": "sources",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


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
    "match_key",
    "grid_origins",
    "index_patches",
    "load_images",
    "load_pairs",
    "mask_to_classes",
    "pad_to_patch",
    "pair_images_with_masks",
    "to_uint8_rgb",
]
