"""Fine-tuning on a lab's corrections: the settings the napari widget's Train tab starts from, and the one
function that turns corrected pairs into a :class:`.finetune.FinetuneConfig`.

The widget (``plugin/widgets/finetune_panel.py``) and the correction-loop replay
(``benchmarks/correction_replay.py``, which chose these settings; table in docs/results.md) both build
their run with :func:`corrections_config`, so what the replay measures is what the widget runs.

A corrected pair is ``(name, image, labels, known)`` as :meth:`.annotations.AnnotationSet.training_items`
gives it (``known``: the corrected pixels of a partial pair, None for a whole one), and optionally the
pair's nucleus instances: an instance-aware model (distance, contour or hover output) then learns the
nuclei the pathologist drew, instead of nuclei split again from the labels by a watershed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..defaults import (
    DEFAULT_CLASSES,
    DEFAULT_DEVICE,
    DEFAULT_PRECISION,
    INFERENCE_TILE,
    WIDGET_TRAINING_BATCH,
    WIDGET_TRAINING_PATCH,
)
from .finetune import FinetuneConfig


@dataclass(frozen=True)
class CorrectionRecipe:
    """How fine-tuning on corrections runs (the Train tab's starting values; each with why, for its tooltip).

    Args:
        steps: training steps.
        batch: patches per step.
        patch: patch side in pixels.
        lr: Adam learning rate (constant after ``warmup_steps``).
        betas: Adam betas.
        loss: "dice_ce" or "ss_focal" (:mod:`..losses`).
        stain_jitter: HED stain jitter on every patch.
        warmup_steps: linear learning-rate warm-up.
        grad_clip: clip the gradients' global norm to this (None: no clipping).
        use_instances: train instance-aware outputs on the pairs' stored nuclei (else split from the labels).
        freeze_norm: keep the starting model's batch-norm statistics.
        anchor: L2-SP weight pulling the weights toward the starting model's (0: off).
        scale_range: resample each patch by a factor drawn log-uniformly from this range (None: off).
        elastic: elastic deformation of every patch with its mask (U-Net's; off).
    """

    steps: int = 500
    batch: int = WIDGET_TRAINING_BATCH
    patch: int = WIDGET_TRAINING_PATCH
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    loss: str = "ss_focal"
    stain_jitter: bool = False
    warmup_steps: int = 0
    grad_clip: float | None = None
    use_instances: bool = False
    freeze_norm: bool = False
    anchor: float = 0.0
    scale_range: tuple[float, float] | None = None
    elastic: bool = False

    def with_(self, **changes: Any) -> "CorrectionRecipe":
        """A copy with some settings changed (unknown names are an error)."""
        values = asdict(self)
        unknown = sorted(set(changes) - set(values))
        if unknown:
            raise ValueError(f"unknown correction setting(s): {', '.join(unknown)}")
        values.update(changes)
        return CorrectionRecipe(**values)


#: The Train tab's starting values, chosen on the correction-loop replay's tuning organ (lung, 2 seeds;
#: docs/results.md, "The correction loop, replayed"; benchmarks/correction_replay_sweep.sh). At 200 steps on
#: one corrected image, pixel F1 on lung's other images: the former settings (SS + focal) -0.143; the
#: bundled model's own loss (Dice + CE) -0.055; Dice + CE keeping the starting model's batch-norm
#: statistics +0.040 (updating them from a few corrected patches shrank the predicted nuclei). The gain
#: peaks at 200-300 steps and falls after. lr 5e-4, the stored nuclei as targets, patch rescaling and
#: mixing in two of the base model's own images measured no better. HED stain jitter on the corrected
#: patches (as the bundled model was trained) gained as much and forgot less of the other organs (F1 on
#: them -0.013 instead of -0.024 after one image); on the report organs it then lost 0.003-0.007 F1 on the
#: MoNuSeg test images instead of 0.014, at the same or a larger gain.
CORRECTION_RECIPE = CorrectionRecipe(steps=200, loss="dice_ce", freeze_norm=True, stain_jitter=True)

#: Steps the Train tab suggests per megapixel of corrected pixels (a MoNuSeg image is 1000 x 1000), between
#: the recipe's steps and :data:`MAX_SUGGESTED_STEPS`. On the replay (docs/results.md): after one corrected
#: image or four 256-px fields the gain peaked at 200-300 steps and fell after; after three images it kept
#: rising to 600 (lung: AJI +0.072 at 600 against +0.047 at 200; the report organs +0.085 against +0.058,
#: pixel F1 +0.058 against +0.052, no more forgotten). Two images (400 steps) lie between what was measured.
STEPS_PER_CORRECTED_MEGAPIXEL = 200
MAX_SUGGESTED_STEPS = 600


def corrected_pixels(pairs) -> int:
    """How many pixels the corrections of these annotation pairs (:class:`..annotations.AnnotationPair`) cover:
    a partial pair's corrected regions, a whole pair's every pixel (nothing is loaded but the regions)."""
    return sum(int(np.count_nonzero(pair.known_mask())) if pair.partial else int(np.prod(pair.shape))
               for pair in pairs)


def suggested_steps(pixels: int, recipe: "CorrectionRecipe | None" = None) -> int:
    """The fine-tuning steps for ``pixels`` corrected pixels: :data:`STEPS_PER_CORRECTED_MEGAPIXEL` per megapixel,
    rounded up to a hundred, at least the recipe's steps and at most :data:`MAX_SUGGESTED_STEPS`."""
    floor = (recipe or CORRECTION_RECIPE).steps
    steps = 100 * int(np.ceil(STEPS_PER_CORRECTED_MEGAPIXEL * pixels / 1e6 / 100))
    return int(min(max(steps, floor), max(MAX_SUGGESTED_STEPS, floor)))


#: The L2-SP weight of the Train tab's "keep what it knows elsewhere" (``CorrectionRecipe.anchor`` when
#: checked), chosen on the replay's tuning organ (lung, 2 seeds: anchor 1 and 10 against none,
#: benchmarks/correction_replay_sweep.sh) and reported on the other organs (docs/results.md).
KEEP_ELSEWHERE_ANCHOR = 1.0

#: Why each setting is what it is (the widget's tooltips).
CORRECTION_WHY = {
    "steps": "Steps of fine-tuning. Until you change it, this follows the corrections in the annotation set: 200 per "
             "megapixel corrected (a 1000 x 1000 image), from 200 to 600. On the correction-loop replay "
             "(docs/results.md) the gain on an organ's other images peaked at 200-300 steps after one corrected "
             "image and fell after; after three images it kept rising to 600 steps (AJI +0.085 instead of "
             "+0.058 at 200). 'Use the model so far' lets you try earlier models.",
    "batch": "Patches per step (4 by default, with 128-px patches: the replay's setting; about 0.13 s a step on two "
             "CPU cores with native bf16, so 200 steps take about half a minute).",
    "patch": "Patch side in pixels (128 by default: the replay's setting; larger patches cost more per step).",
    "anchor": "Hold the weights near the starting model's (L2-SP), so the model forgets less of the tissue you "
              "did not correct, at a smaller gain on the tissue you did. Measured on the correction-loop replay "
              "after one corrected image, before the stain jitter became the default: F1 on the MoNuSeg test "
              "images +0.001 instead of -0.014, F1 on the corrected organ's other images +0.028 instead of +0.040 "
              "(docs/results.md); with the stain jitter the defaults lose only 0.003-0.007 there. For a model "
              "used on several tissues. Needs a model to start from.",
}


#: What diffusion pretraining on a lab's own images was measured to add to fine-tuning on its corrections
#: (the replay's pretraining arms, docs/results.md); the Train tab shows it where it offers pretraining.
PRETRAINING_WORTH = (
    "Measured: diffusion pretraining on an organ's images before fine-tuning on one corrected image made the "
    "model worse on that organ's other images than fine-tuning alone in the same CPU time (docs/results.md, "
    "'The correction loop, replayed'). To improve the model in use, correct and fine-tune. Pretraining is for "
    "starting a new model from scratch, on many images, with a GPU."
)


def patch_stride(patch: int) -> int:
    """The patch grid step of the widget's training runs for a patch side: half a patch (at least 16 px),
    so a few corrected images still give enough patches."""
    return max(16, int(patch) // 2)


def pair_instances(items: list[tuple], instances: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The stored nuclei of the pairs, by name, for the ones whose name is unique among ``items``
    (a name shared by two pairs cannot say which nuclei are whose: those are split from their labels)."""
    if not instances:
        return None
    names = Counter(item[0] for item in items)
    out = {name: np.asarray(inst) for name, inst in instances.items() if inst is not None and names[name] == 1}
    return out or None


def corrections_config(
    items: list[tuple],
    *,
    init: str,
    out_dir: str,
    recipe: CorrectionRecipe = CORRECTION_RECIPE,
    instances: dict[str, np.ndarray] | None = None,
    images: str | None = None,
    masks: str | None = None,
    arch: Any = None,
    classes: list[str] | None = None,
    steps: int | None = None,
    batch: int | None = None,
    patch: int | None = None,
    val_fraction: float | None = None,
    device: str = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    seed: int = 0,
    resume: bool = False,
) -> FinetuneConfig:
    """The fine-tuning run on corrected pairs (and, optionally, folders of images and masks).

    Args:
        items: ``(name, image, labels, known)`` pairs (``known`` None for a whole image).
        init: the model file to continue (or a pretrained model, or "scratch").
        out_dir: the run folder.
        recipe: the settings; ``steps``, ``batch`` and ``patch`` override its values (the widget's boxes).
        instances: nucleus instance ids by pair name (used when ``recipe.use_instances``).
        images / masks: folders of more training images and their masks, paired by name.
        arch / classes: the network from scratch, the class names (background first).
        val_fraction: share of whole images held out (None: FinetuneConfig's default).
        device, precision, seed, resume: see :class:`.settings.RunOptions`.
    """
    steps = int(steps if steps is not None else recipe.steps)
    patch = int(patch if patch is not None else recipe.patch)
    cfg = FinetuneConfig(
        images=images, masks=masks, pairs=list(items) or None, out_dir=str(out_dir), init=str(init),
        classes=list(classes or DEFAULT_CLASSES), steps=steps, batch=int(batch if batch is not None else recipe.batch),
        patch_size=patch, stride=patch_stride(patch), lr=recipe.lr, betas=list(recipe.betas), loss=recipe.loss,
        stain_jitter=recipe.stain_jitter, freeze_norm=recipe.freeze_norm, anchor=recipe.anchor,
        warmup_steps=recipe.warmup_steps, grad_clip=recipe.grad_clip,
        scale_range=list(recipe.scale_range) if recipe.scale_range else None, elastic=recipe.elastic,
        validate_every=max(1, steps // 5), val_tile=INFERENCE_TILE, checkpoint_every=max(1, steps // 4),
        device=device, precision=precision, seed=seed, resume=resume,
        instances=pair_instances(list(items), instances) if recipe.use_instances else None,
    )
    if arch is not None:
        cfg.arch = arch
    if val_fraction is not None:
        cfg.val_fraction = val_fraction
    return cfg
