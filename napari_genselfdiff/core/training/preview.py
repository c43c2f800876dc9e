"""DDIM samples from pretraining weights: a quick visual check of what the diffusion model has learnt.

A pretrained model that has learnt H&E texture produces pink/purple tissue-like samples; noise or flat
colour means it has not (yet). The napari widget calls, e.g. after each "checkpoint" event::

    images = sample_preview(run_dir, n=4, steps=20, size=64)    # (4, 64, 64, 3) uint8

``source`` may be a pretrained model file, a training checkpoint, or a run folder (its latest
checkpoint, else its ``pretrained.safetensors``). Either way the settings (diffusion process,
normalisation, patch size) come from the :class:`ModelInfo` the file carries: a checkpoint embeds the
one of the model it would export. Reading from files is safe while the run goes on: checkpoints are
replaced atomically. Do not pass the live training network from another thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..diffusion import GaussianDiffusion, ddim_sample
from ..errors import ModelFileError, TrainingInputError
from ..inference.device import choose_device
from ..model_files import load_model
from ..model_files.schema import ModelInfo
from ..network.unet import AttentionUNet
from ..normalization import Normalization
from .checkpoint import METADATA_KEY, checkpoint_network, find_latest_checkpoint
from .runlog import PRETRAINED_FILE


def _is_checkpoint(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return METADATA_KEY in (handle.metadata() or {})
    except Exception:
        return False


def load_for_sampling(source: Any) -> tuple[AttentionUNet, GaussianDiffusion, Normalization, int]:
    """A noise-head network with its diffusion process, normalisation and training patch size.

    Args:
        source: a model file, a checkpoint file, a run folder, or a ``(model, ModelInfo)`` tuple.

    Raises:
        ModelFileError / TrainingInputError: the source is unreadable, or is a segmentation model.
    """
    if isinstance(source, tuple):
        model, info = source
        return _from_model(model, info)
    path = Path(source).expanduser()
    if path.is_dir():
        for _ in range(3):  # the latest checkpoint may be pruned between finding and reading it
            latest = find_latest_checkpoint(path)
            if latest is None:
                break
            try:
                return _from_checkpoint(latest)
            except TrainingInputError:
                continue
        model_file = path / PRETRAINED_FILE
        if not model_file.is_file():
            raise TrainingInputError(f"{path}: no checkpoint and no {PRETRAINED_FILE} to sample from yet.")
        path = model_file
    if _is_checkpoint(path):
        return _from_checkpoint(path)
    return _from_model(*load_model(path))


def _from_model(model: AttentionUNet, info: ModelInfo,
                what: str = "a segmentation model") -> tuple[AttentionUNet, GaussianDiffusion, Normalization, int]:
    if info.head != "noise" or not info.diffusion:
        raise ModelFileError(
            f"{info.path or 'this model'} is {what}; samples need a pretrained (noise head) model."
        )
    return model, GaussianDiffusion.from_config(**info.diffusion), info.normalization, info.patch_size


def _from_checkpoint(path: Path) -> tuple[AttentionUNet, GaussianDiffusion, Normalization, int]:
    return _from_model(*checkpoint_network(path), what="a fine-tuning checkpoint")


def sample_preview(
    source: Any,
    n: int = 4,
    steps: int = 20,
    *,
    size: int | None = None,
    seed: int = 0,
    eta: float = 0.0,
    device: str = "auto",
) -> np.ndarray:
    """Draw ``n`` DDIM samples from pretraining weights.

    Args:
        source: a pretrained model file, a checkpoint, a run folder, or a ``(model, ModelInfo)`` tuple.
        n: number of samples. By default, 4.
        steps: DDIM steps (more: finer detail, slower). By default, 20.
        size: sample side in pixels, rounded up to the network's multiple. By default, the training
            patch size (smaller is much faster on a CPU).
        seed: the samples' seed (the same seed gives the same starting noise). By default, 0.
        eta: DDIM stochasticity (0 = deterministic). By default, 0.
        device: "auto", "cpu", "cuda", "mps". By default, "auto".

    Returns:
        (n, size, size, 3) uint8 RGB samples.
    """
    model, diffusion, normalization, patch = load_for_sampling(source)
    factor = model.config.downsample_factor
    side = int(math.ceil((size or patch) / factor) * factor)
    dev = choose_device(device)
    model = model.to(dev).eval()
    gen = torch.Generator(device=dev).manual_seed(seed)
    x = ddim_sample(model, diffusion, (n, 3, side, side), steps=min(steps, diffusion.num_timesteps), eta=eta,
                    generator=gen, device=dev)
    rgb = normalization.invert(x.float().cpu())
    return (rgb.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (n, h, w, 3) images into one (rows * (h + pad) - pad, cols * (w + pad) - pad, 3) image (white gaps)."""
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, dtype=images.dtype)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = image
    return grid
