"""Stage 2: supervised fine-tuning for segmentation (paper sec. III-C), from a pretrained model or from scratch.

The pretrained U-Net's noise head is replaced by a class head (every other weight is loaded and
accounted for; see :meth:`AttentionUNet.load_backbone`), the network is called at t = 0, and the
whole of it is trained with L_SSFL = L_SS + lambda * L_FL (lambda = 1), Adam lr 1e-4, betas
(0.5, 0.999), batch 8, flips + colour jitter + blur (+ 90-degree turns). Starting from a fine-tuned
model with the same number of classes keeps its class head (continued training on new annotations).

Every ``validate_every`` steps (and at the end) the held-out images are segmented WHOLE and scored
per class (:mod:`.validation`); the model with the best ``mean_iou`` is kept as ``best.safetensors``.

Use from Python (the napari widget runs it in a child process, ``plugin/_subprocess.py``)::

    cfg = FinetuneConfig(pairs=[(image_array, labels_array), ...], init="runs/pre/pretrained.safetensors",
                         out_dir="runs/ft", classes=["background", "nucleus"], steps=500)
    model_path = run_generator(finetune(cfg, control))   # core.progress; or "yield from" it

On the command line: ``python src_train/finetune.py --images DIR --masks DIR --init MODEL --out RUN``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.augment import Augmentation
from ..data.datasets import PairedPatchDataset, batch_for_step
from ..data.sampler import StepSampler
from ..data.sources import LoadedPairs, load_pairs
from ..defaults import DEFAULT_CLASSES, DIFFUSION_TIMESTEPS, TRAINING_ARCH, TRAINING_PATCH, TRAINING_STRIDE
from ..errors import TrainingInputError
from ..losses import LOSSES, SSFocalLoss
from ..losses.instance_aware import CUE_WEIGHT, InstanceAwareLoss
from ..model_files import ModelInfo, default_classes, load_model
from ..model_files.outputs import OUTPUT_KINDS, check_output, network_channels
from ..network.config import PRESETS, UNetConfig
from ..network.unet import AttentionUNet
from ..normalization import DEFAULT_NORMALIZATION, Normalization
from .architecture import resolve_architecture
from .control import TrainingControl
from .distributed import barrier, unwrap
from .events import ProgressEvent
from .run import (
    base_provenance,
    data_summary,
    describe_notes,
    describe_patches,
    log_done,
    open_run,
    run_stage,
    save_trained_model,
    start_model,
    write_replica_check,
)
from .runlog import BEST_FILE, LAST_FILE
from .settings import RunOptions, check_patch_fits, check_stage_options, option, total_steps
from .validation import SELECTION_METRIC, validate_images

PAPER_EPOCHS = 150


@dataclass
class FinetuneConfig(RunOptions):
    """Settings of a fine-tuning run.

    The defaults are the paper's protocol (its reference code: SS + lambda * focal loss with
    lambda 1, Adam lr 1e-4 with betas (0.5, 0.999), batch 8, 150 epochs, 256-pixel patches at
    stride 64, flips + colour jitter + blur) with ONE exception: random 90-degree turns (``rot90``)
    are on, which the paper does not use (tissue has no preferred orientation, so the turns only
    add variety); ``src_train/configs/paper.json`` turns them off to run the paper's protocol.

    Args:
        images / masks: folders of images and of their masks, paired by name (see
            :mod:`..data.folders`). Masks hold class ids 0..K-1 (0/255 binary masks are accepted).
        pairs: in-memory ``(image, mask)`` or ``(name, image, mask)`` tuples (the napari widget's
            layer snapshots), used with or instead of the folders.
        val_images / val_masks / val_pairs: an explicit held-out set; by default ``val_fraction`` of
            the images (whole images, chosen with ``seed``) is held out.
        out_dir: the run folder.
        init: a pretrained (or fine-tuned) model file, or "scratch". By default, "scratch".
        arch / width: the network when training from scratch (a model file brings its own).
        classes: class names, background first. By default, ["background", "nucleus"].
        val_fraction: share of images held out for validation. By default, 0.2.
        steps / epochs: run length; steps win. By default, 150 epochs (the paper).
        betas: Adam betas. By default, (0.5, 0.999) (the reference code).
        lam: weight of the focal term. By default, 1.0.
        flips / rot90 / color_jitter / blur: augmentation. By default, all on (rot90: not the paper's).
        patch_size / stride / skip_background: patching. By default, 256 / 64 / True.
        validate_every: steps between validations (0: only at the end). By default, once per epoch.
        val_tile: inference tile side for validation. By default, 1024.
        timestep: the timestep index at which the network is called while fine-tuning, stored in
            the model file so that every later use calls it there. By default, the parent model's
            (0 for a pretrained noise model or from scratch: the paper's t = 0).
        batch, lr, lr_schedule, warmup_steps, grad_clip, checkpoint_every, keep_checkpoints, seed,
            device, precision, channels_last, resume: see :class:`.settings.RunOptions`. grad_clip
            tames the SS loss's spikes on patches with almost no foreground, whose standardised
            maps blow up (measured in the MoNuSeg runs: single steps at 15-20x the median loss).
    """

    images: str | None = option(None, "folder of training images", metavar="DIR")
    masks: str | None = option(None, "folder of masks, paired with images by name", metavar="DIR")
    pairs: list[Any] | None = None
    val_images: str | None = option(None, "folder of held-out images (instead of --val-fraction)", metavar="DIR")
    val_masks: str | None = option(None, "folder of held-out masks", metavar="DIR")
    val_pairs: list[Any] | None = None
    out_dir: str = option("runs/finetune", "run folder: checkpoints, metrics.jsonl, best/last model files",
                          flag="--out", metavar="RUN_DIR")
    init: str = option("scratch", "pretrained model file to start from, or 'scratch'", metavar="PRETRAINED")
    arch: Any = option(TRAINING_ARCH, "network size preset (when training from scratch)", choices=sorted(PRESETS))
    width: int | None = option(None, "base width W (from scratch): widths W,2W,4W,8W")
    classes: list[str] = option(factory=lambda: list(DEFAULT_CLASSES), help="class names, background first",
                                nargs="+", metavar="NAME")
    val_fraction: float = option(0.2, "share of the images held out for validation (whole images)")
    steps: int | None = option(None, "training steps (wins over --epochs)")
    epochs: float | None = option(None, f"passes over all patches (default {PAPER_EPOCHS} when --steps is not given)")
    betas: list[float] = option(factory=lambda: [0.5, 0.999], help="Adam betas", nargs=2, metavar="B")
    lam: float = option(1.0, "weight lambda of the focal loss (L = SS + lambda * focal)")
    loss: str = option("ss_focal", "objective: ss_focal (the paper: SS + lambda * focal) or dice_ce "
                       "(cross-entropy + soft Dice)", choices=sorted(LOSSES))
    stain_jitter: bool = option(False, "HED stain jitter on every patch (not in the paper)")
    stain_strength: float = option(1.0, "the stain jitter's scale and shift, as a multiple of its defaults "
                                   "(0.25 and 0.04 in optical density)")
    flips: bool = option(True, "random flips")
    rot90: bool = option(True, "random 90-degree rotations")
    elastic: bool = option(False, "elastic deformation of every patch with its mask (U-Net's: a 3 x 3 lattice of "
                           "random displacements, 10 px standard deviation; not in the paper)")
    color_jitter: bool = option(True, "colour jitter (brightness 0.5, contrast 0.4, p 0.3)")
    blur: bool = option(True, "Gaussian blur (p 0.3)")
    patch_size: int = option(TRAINING_PATCH, "patch side in pixels", flag="--size")
    stride: int = option(TRAINING_STRIDE, "patch grid step in pixels")
    skip_background: bool = option(True, "leave out patches that are over 90%% white")
    validate_every: int | None = option(None, "steps between validations (0: only at the end; default: every epoch)")
    val_tile: int = option(1024, "inference tile side for validation")
    timestep: int | None = option(None, "timestep index the network is called at (default: the parent model's; "
                                  "0 from scratch or from a pretrained noise model, as in the paper)")
    output: str | None = option(None, "what the head outputs besides classes: classes (nuclei split afterwards by a "
                                "watershed), contour, distance or hover (instance-aware; default: the parent "
                                "model's, classes from scratch)", choices=list(OUTPUT_KINDS))
    scale_range: list[float] | None = option(None, "resample each training patch by a factor drawn log-uniformly "
                                             "from LOW HIGH (e.g. 0.5 1.5: tolerance of 20x scans); default: none",
                                             nargs=2, metavar="F")
    freeze_norm: bool = option(False, "keep the batch-norm statistics of the model fine-tuning starts from (small "
                               "batches from a few corrected images would otherwise overwrite them)")
    cue_weight: float = option(CUE_WEIGHT, "weight of an instance-aware output's map loss (distance or direction "
                               "maps) against the class loss; only for those outputs")
    anchor: float = option(0.0, "L2-SP (Li et al., ICML 2018): add anchor/2 x the squared distance of the weights "
                           "from the starting model's to the loss, so fine-tuning on a few images forgets less of "
                           "what the starting model knew; 0: off. Needs a starting model (--init)")
    instances: dict[str, Any] | None = None  # image name -> (H, W) instance ids (instance-aware outputs)

    def check(self) -> None:
        """Validate the settings.

        Raises:
            TrainingInputError: a setting is out of range (the message names it).
        """
        check_stage_options(self, "val_tile")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise TrainingInputError(f"betas must be two numbers in [0, 1), got {self.betas}.")
        if not 0 <= self.val_fraction < 1:
            raise TrainingInputError(f"val_fraction must lie in [0, 1), got {self.val_fraction}.")
        if self.loss not in LOSSES:
            raise TrainingInputError(f"loss must be one of {', '.join(sorted(LOSSES))}, got {self.loss!r}.")
        if self.lam < 0:
            raise TrainingInputError(f"lam must be >= 0, got {self.lam}.")
        if self.timestep is not None and (isinstance(self.timestep, bool) or self.timestep < 0):
            raise TrainingInputError(f"timestep must be an index >= 0 (0: the paper's t = 0), got {self.timestep}.")
        if self.validate_every is not None and self.validate_every < 0:
            raise TrainingInputError(f"validate_every must be >= 0, got {self.validate_every}.")
        if self.output is not None:
            try:
                check_output(self.output, len(self.classes))
            except ValueError as exc:
                raise TrainingInputError(str(exc)) from exc
        if not self.cue_weight > 0:
            raise TrainingInputError(f"cue_weight must be > 0, got {self.cue_weight}.")
        if not self.anchor >= 0:
            raise TrainingInputError(f"anchor must be >= 0 (0: off), got {self.anchor}.")
        if self.anchor > 0 and str(self.init).lower() == "scratch":
            raise TrainingInputError("anchor pulls the weights toward the starting model's, but training starts "
                                     "from scratch: give --init a model file, or leave anchor at 0.")
        if not self.stain_strength > 0:
            raise TrainingInputError(f"stain_strength must be > 0, got {self.stain_strength}.")
        if self.stain_strength != 1.0 and not self.stain_jitter:
            raise TrainingInputError(f"stain_strength {self.stain_strength} sets the stain jitter's strength, but the "
                                     "stain jitter is off: turn it on (--stain-jitter) or leave the strength at 1.")
        if self.scale_range is not None and (len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]):
            raise TrainingInputError(f"scale_range must be LOW HIGH with 0 < LOW <= HIGH, got {self.scale_range}.")
        names = list(self.classes)
        if len(names) < 2:
            raise TrainingInputError(f"give at least two classes (background first), got {names}.")
        if len(set(names)) != len(names):
            raise TrainingInputError(f"class names must differ, got {names}.")


#: the parts of a parent's model card that stay true for a model fine-tuned from it (its name, data,
#: history and scores describe the parent only)
INHERITED_CARD_FIELDS = ("intended_use", "limits", "licence")


def inherited_card(parent_info: ModelInfo | None) -> dict[str, Any] | None:
    """The card a fine-tuned model starts with: the parent's :data:`INHERITED_CARD_FIELDS` and its name
    as ``fine_tuned_from``; None without a parent card (the child's name is derived when it is saved)."""
    card = parent_info.card if parent_info is not None and isinstance(parent_info.card, dict) else None
    if not card:
        return None
    out = {key: card[key] for key in INHERITED_CARD_FIELDS if key in card}
    out["fine_tuned_from"] = parent_info.display_name
    return out


def output_kind(cfg: FinetuneConfig, parent_info: ModelInfo | None) -> str:
    """The output kind of the fine-tuned model: the configured one, else the parent's (classes from scratch)."""
    if cfg.output is not None:
        return cfg.output
    return parent_info.output if parent_info is not None and parent_info.head == "classes" else "classes"


def _initial_network(cfg: FinetuneConfig, num_classes: int) -> tuple[AttentionUNet | None, ModelInfo | None, UNetConfig]:
    """The parent model (or None for scratch) and the architecture of the fine-tuned network."""
    if str(cfg.init).lower() == "scratch":
        channels = network_channels(output_kind(cfg, None), num_classes)
        parent, info, arch = None, None, resolve_architecture(cfg.arch, cfg.width).with_head("classes", channels)
    else:
        parent, info = load_model(cfg.init)
        arch = info.architecture.with_head("classes", network_channels(output_kind(cfg, info), num_classes))
    if cfg.timestep is not None:
        steps = int(((info.diffusion if info else None) or {}).get("timesteps", DIFFUSION_TIMESTEPS))
        if cfg.timestep >= steps:
            raise TrainingInputError(
                f"timestep {cfg.timestep} is outside the diffusion process's 0..{steps - 1}; "
                "a small index such as 50 (or 0, the paper's t = 0) is what --timestep is for.")
        arch = arch.with_segment_timestep(cfg.timestep)
    return parent, info, arch


def _at_timestep(build, timestep: int):
    """``build`` whose network is called at ``timestep`` when no t is given (its config says so)."""
    def at_timestep() -> AttentionUNet:
        net = build()
        net.config = net.config.with_segment_timestep(timestep)
        return net
    return at_timestep


def starting_weights(parent: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """A float copy of the parent model's parameters, taken before training (or a resume) changes them."""
    return {} if parent is None else {name: w.detach().float().clone() for name, w in parent.named_parameters()}


def anchor_pairs(model: torch.nn.Module, start: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, its starting value) for every parameter of ``model`` that the parent model has (same
    name and shape; a new head has none): what L2-SP (``FinetuneConfig.anchor``) pulls toward. The
    starting values are the parent's (:func:`starting_weights`), so a resumed run anchors to the same weights."""
    pairs = []
    for name, w in model.named_parameters():
        w0 = start.get(name)
        if w0 is not None and w0.shape == w.shape:
            pairs.append((w, w0.to(w.device)))
    return pairs


def _split(data: LoadedPairs, cfg: FinetuneConfig) -> tuple[list[int], list[int], str]:
    """Indices of training and held-out images (whole images), and a note."""
    n = len(data.images)
    if cfg.val_fraction <= 0:
        return list(range(n)), [], "no held-out validation (val_fraction 0); the last model is kept"
    if n < 2:
        return list(range(n)), [], "only one image: no held-out validation; the last model is kept"
    n_val = min(n - 1, max(1, int(round(cfg.val_fraction * n))))
    order = np.random.default_rng([cfg.seed, 0x5A1]).permutation(n)
    val = sorted(int(i) for i in order[:n_val])
    return [i for i in range(n) if i not in val], val, f"{n - n_val} training and {n_val} held-out image(s)"


def finetune(cfg: FinetuneConfig, control: TrainingControl | None = None) -> Generator[ProgressEvent, None, Path | None]:
    """Fine-tune for segmentation; a generator of progress events that returns the best model path.

    Args:
        cfg: the settings.
        control: pause / resume / cancel from another thread. By default, none.

    Yields:
        :class:`ProgressEvent`; "validation" events carry the held-out metrics; the last is "done"
        or "cancelled".

    Returns:
        ``<out_dir>/best.safetensors`` (best held-out ``mean_iou``), or ``last.safetensors`` when
        nothing is held out. On cancel: the best model so far, else the last weights; None if no
        step was completed.

    Raises:
        TrainingInputError: bad settings, no pairs, unwritable run folder, a resume that does not fit.
        MaskInputError: a mask does not fit its image, or has more classes than configured.
        ModelFileError: the init model cannot be used.
    """
    cfg.check()
    classes = default_classes(list(cfg.classes))
    num_classes = len(classes)
    parent, parent_info, arch = _initial_network(cfg, num_classes)
    normalization: Normalization = parent_info.normalization if parent_info else DEFAULT_NORMALIZATION
    output = output_kind(cfg, parent_info)
    if cfg.cue_weight != CUE_WEIGHT and output in ("classes", "contour"):
        raise TrainingInputError(f"cue_weight weighs the loss of a distance or direction map, but this model's output "
                                 f"is {output!r}, which has none: leave cue_weight at {CUE_WEIGHT:g} or train a "
                                 "distance or hover output (--output).")
    check_patch_fits(cfg.patch_size, arch)
    ctx = open_run(cfg, stage="finetune", architecture=arch)

    data = load_pairs(num_classes=num_classes, image_dir=cfg.images, mask_dir=cfg.masks, pairs=cfg.pairs,
                      class_names=cfg.classes)
    if cfg.val_images or cfg.val_masks or cfg.val_pairs:
        val_data = load_pairs(num_classes=num_classes, image_dir=cfg.val_images, mask_dir=cfg.val_masks,
                              pairs=cfg.val_pairs, class_names=cfg.classes)
        train_idx, val_idx = list(range(len(data.images))), []
        split_note = f"{len(train_idx)} training and {len(val_data.images)} held-out image(s) (given)"
        val_images, val_masks, val_names = val_data.images, val_data.masks, val_data.names
    else:
        train_idx, val_idx, split_note = _split(data, cfg)
        val_images = [data.images[i] for i in val_idx]
        val_masks = [data.masks[i] for i in val_idx]
        val_names = [data.names[i] for i in val_idx]
    dataset = PairedPatchDataset(
        [data.images[i] for i in train_idx], [data.masks[i] for i in train_idx], cfg.patch_size, cfg.stride,
        skip_background=cfg.skip_background,
        augmentation=Augmentation(flips=cfg.flips, rot90=cfg.rot90, color_jitter=cfg.color_jitter, blur=cfg.blur,
                                  stain=cfg.stain_jitter, stain_scale=Augmentation.stain_scale * cfg.stain_strength,
                                  stain_shift=Augmentation.stain_shift * cfg.stain_strength, elastic=cfg.elastic),
        normalization=normalization, names=[data.names[i] for i in train_idx],
        output=output, instances=[(cfg.instances or {}).get(data.names[i]) for i in train_idx],
        scale_range=tuple(cfg.scale_range) if cfg.scale_range else None,
    )
    sampler = StepSampler(len(dataset), cfg.batch, cfg.seed, ctx.rank, ctx.world)
    steps = total_steps(cfg.steps, cfg.epochs, sampler.steps_per_epoch, PAPER_EPOCHS)
    validate_every = sampler.steps_per_epoch if cfg.validate_every is None else cfg.validate_every

    if parent is None:
        build, head_note = (lambda: AttentionUNet(arch)), "new class head on a network trained from scratch"
    elif (parent_info.head == "classes" and parent_info.output == output
          and parent.config.with_segment_timestep(arch.segment_timestep) == arch):
        build, head_note = (lambda: parent), "kept the parent model's class head (same classes)"
    else:
        build = lambda: parent.with_new_head("classes", arch.out_channels)  # noqa: E731
        head_note = f"new class head ({output} output) on the backbone of {cfg.init}"
    if parent is not None and parent.config.segment_timestep != arch.segment_timestep:
        head_note += f"; called at timestep {arch.segment_timestep}"
        build = _at_timestep(build, arch.segment_timestep)
    start_weights = starting_weights(parent) if cfg.anchor > 0 else {}
    model, optimizer = start_model(ctx, build, cfg, betas=tuple(cfg.betas))
    if cfg.freeze_norm:
        unwrap(model).freeze_norm_statistics = True
    resumed = dict(ctx.state.stage_state) if ctx.state is not None else {}
    best: dict[str, Any] = {
        "best_score": resumed.get("best_score"),
        "best_step": resumed.get("best_step"),
        "best_metrics": resumed.get("best_metrics"),
    }
    latest: dict[str, Any] = {"step": None, "metrics": None}  # the most recent validation

    criterion = SSFocalLoss(lam=cfg.lam) if cfg.loss == "ss_focal" else LOSSES[cfg.loss]()
    if output != "classes":
        criterion = InstanceAwareLoss(output, criterion, cfg.cue_weight)

    def batches(step: int):
        return batch_for_step(dataset, sampler, step)

    anchored = anchor_pairs(unwrap(model), start_weights)

    def with_anchor(total: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not anchored:
            return {"loss": total, **parts}
        pull = 0.5 * cfg.anchor * sum(((w.float() - w0) ** 2).sum() for w, w0 in anchored)
        return {"loss": total + pull, **parts, "anchor": pull.detach()}

    def loss_fn(net: torch.nn.Module, batch, step: int) -> dict[str, torch.Tensor]:
        if output != "classes":  # instance-aware: (images, class targets, cue targets, ignore)
            x, y, regression, ignore = batch
            total, parts = criterion(net(x).float(), y, regression, ignore if bool(ignore.any()) else None)
            return with_anchor(total, parts)
        x, y, *ignore = batch  # ignore: pixels outside the corrected regions (partial annotations)
        logits = net(x)  # t = None: config.segment_timestep (0 unless --timestep: the paper's t = 0)
        total, parts = criterion(logits.float(), y, ignore[0] if ignore else None)
        return with_anchor(total, parts)

    summary = data_summary(data, dataset, train_images=[data.names[i] for i in train_idx], val_images=val_names)
    parent_path = None if parent_info is None else str(parent_info.path)

    def provenance(step: int, metrics: dict[str, float] | None, cancelled: bool) -> dict[str, Any]:
        values = base_provenance(ctx, cfg, stage="finetune", steps=step, epochs=sampler.epoch(step),
                                 cancelled=cancelled)
        values.update(
            data=summary, parent=parent_path or "scratch",
            parent_stage=(parent_info.provenance.get("stage") if parent_info else None),
            metrics=metrics or {}, selected_by=f"{SELECTION_METRIC} on whole held-out images" if val_images else "last step",
            betas=list(cfg.betas), lam=cfg.lam, anchor=cfg.anchor,
            loss=criterion.to_config(),
            augmentation={"flips": cfg.flips, "rot90": cfg.rot90, "color_jitter": cfg.color_jitter, "blur": cfg.blur,
                          "stain_jitter": cfg.stain_jitter, "stain_strength": cfg.stain_strength, "elastic": cfg.elastic,
                          "scale_range": list(cfg.scale_range) if cfg.scale_range else None},
        )
        return values

    def model_info(step: int, metrics: dict[str, float] | None, cancelled: bool = False) -> ModelInfo:
        return ModelInfo(
            architecture=arch, classes=classes, normalization=normalization, patch_size=cfg.patch_size,
            postprocess=parent_info.postprocess if parent_info and parent_info.output == output else None,
            output=output,
            provenance=provenance(step, metrics, cancelled),
            mpp=parent_info.mpp if parent_info else None,
            input_mpp=parent_info.input_mpp if parent_info else None,
            card=inherited_card(parent_info),
        )

    def validate(net: torch.nn.Module, step: int) -> Iterator[ProgressEvent]:
        metrics = validate_images(net, model_info(step, None), val_images, val_masks, device=str(ctx.device),
                                  precision=ctx.precision.value, tile=cfg.val_tile, channels_last=ctx.channels_last)
        score = metrics[SELECTION_METRIC]
        latest.update(step=step, metrics=metrics)
        improved = best["best_score"] is None or score > best["best_score"]
        if improved:
            best.update(best_score=score, best_step=step, best_metrics=metrics)
            path = save_trained_model(ctx.run_dir / BEST_FILE, net, model_info(step, metrics))
        message = (f"new best {SELECTION_METRIC} {score:.4f}" if improved
                   else f"best {SELECTION_METRIC} {best['best_score']:.4f} at step {best['best_step']}")
        yield ProgressEvent(kind="validation", step=step, total_steps=steps, epoch=sampler.epoch(step),
                            metrics=metrics, message=message, stage="finetune")
        if improved:
            yield ProgressEvent(kind="checkpoint", step=step, total_steps=steps, epoch=sampler.epoch(step),
                                message=f"best model so far written to {path}", path=path, stage="finetune")

    lines = [f"{split_note}; {describe_patches(cfg, dataset, sampler.steps_per_epoch)}; {head_note}; "
             f"device {ctx.device}, precision {ctx.precision.value}"]
    result = yield from run_stage(
        ctx, cfg, stage="finetune", model=model, optimizer=optimizer, batches=batches, loss_fn=loss_fn,
        total_steps=steps, steps_per_epoch=sampler.steps_per_epoch,
        describe="; ".join(lines + describe_notes(ctx, data)), control=control,
        model_info=lambda step: model_info(step, latest["metrics"] if latest["step"] == step else None),
        stage_state=lambda: dict(best),
        validate=validate if val_images else None, validate_every=validate_every,
    )
    write_replica_check(ctx, model)
    if result.cancelled and result.step == 0 and best["best_score"] is None:
        return None
    last = None
    if ctx.main:
        last_metrics = latest["metrics"] if latest["step"] == result.step else None
        last = save_trained_model(ctx.run_dir / LAST_FILE, unwrap(model), model_info(result.step, last_metrics, result.cancelled))
    barrier()
    best_path = ctx.run_dir / BEST_FILE
    path = best_path if val_images and best["best_score"] is not None else last
    if not result.cancelled:
        outcome = (f"best {SELECTION_METRIC} {best['best_score']:.4f} at step {best['best_step']}"
                   if best["best_score"] is not None else "no held-out validation")
        yield log_done(ctx, stage="finetune", result=result, total_steps=steps, epoch=sampler.epoch(result.step),
                       message=f"fine-tuning done ({outcome}); model: {path}", path=path, metrics=best["best_metrics"])
    return path if ctx.main else None
