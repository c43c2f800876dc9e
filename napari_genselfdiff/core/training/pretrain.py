"""Stage 1: self-supervised diffusion pretraining on unlabeled images (paper sec. III-B, eq. 8).

The attention U-Net with a noise head learns to predict the noise added to patches of unlabeled H&E
images, with the P2-weighted loss ``1 / (k + SNR(t))^gamma * ||eps - eps_theta(x_t, t)||^2``
(k = gamma = 1), t uniform over T = 1000 steps of the "scaled linear" schedule. The result is a model
file (noise head) whose backbone initialises fine-tuning.

Use from Python (the napari widget runs it in a child process, ``plugin/_subprocess.py``)::

    from napari_genselfdiff.core.training import PretrainConfig, TrainingControl, pretrain
    control = TrainingControl()
    cfg = PretrainConfig(images=["slides/"], out_dir="runs/pre", arch="small", steps=2000)
    gen = pretrain(cfg, control)
    for event in gen:            # ProgressEvent: kind, step, loss, samples_per_s, eta_s, ...
        ...
    # the model path is the generator's return value (core.progress.run_generator returns it)

``images`` may hold folders, files, arrays or ``(name, array)`` tuples. On the command line:
``python src_train/pretrain.py --images DIR --out RUN`` (see docs/training.md).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.augment import Augmentation
from ..data.datasets import PatchDataset, batch_for_step
from ..data.sampler import StepSampler
from ..data.sources import load_images
from ..defaults import DIFFUSION_TIMESTEPS, TRAINING_ARCH, TRAINING_PATCH, TRAINING_STRIDE
from ..diffusion import SCHEDULES, GaussianDiffusion
from ..errors import TrainingInputError
from ..model_files import ModelInfo, load_model
from ..network.config import PRESETS, UNetConfig
from ..network.unet import AttentionUNet
from ..normalization import DEFAULT_NORMALIZATION
from .architecture import resolve_architecture
from .control import TrainingControl
from .distributed import barrier, unwrap
from .events import ProgressEvent
from .run import (
    RunContext,
    base_provenance,
    data_summary,
    describe_notes,
    describe_patches,
    log_done,
    open_run,
    run_stage,
    save_trained_model,
    start_model,
    step_seed,
    write_replica_check,
)
from .runlog import PRETRAINED_FILE
from .settings import RunOptions, check_patch_fits, check_stage_options, option, total_steps

PAPER_EPOCHS = 100


@dataclass
class PretrainConfig(RunOptions):
    """Settings of a pretraining run (defaults: the paper's protocol).

    Args:
        images: image folders, files, arrays or (name, array) tuples.
        out_dir: the run folder (checkpoints, metrics.jsonl, the model file).
        arch: network preset ("nuclei", the bundled model's, by default; "paper" as in the paper, "small",
            "tiny"), or a UNetConfig / its dict.
        init: a model file (a segmentation model, or an earlier pretraining) whose backbone the run
            continues from, with a fresh noise head; its network replaces ``arch``. By default, "scratch".
        width: base width W (widths W, 2W, 4W, 8W) instead of the preset's. By default, the preset's.
        patch_size: training patch side. By default, 256 (the paper).
        stride: patch grid step. By default, 64 (the paper).
        steps: training steps; wins over ``epochs``. By default, derived from ``epochs``.
        epochs: passes over all patches. By default, 100 (the paper) when ``steps`` is not given.
        schedule, timesteps, p2_k, p2_gamma: the diffusion process. By default, the paper's.
        flips / rot90: augmentation. By default, flips only (the paper).
        skip_background: leave out mostly-white patches. By default, True.
        batch, lr, lr_schedule, warmup_steps, grad_clip, checkpoint_every, keep_checkpoints, seed,
            device, precision, channels_last, resume: see :class:`.settings.RunOptions` (the seed also
            draws the timesteps and the noise).
    """

    images: list[Any] = option(factory=list, help="image folders (or files) of unlabeled H&E images",
                               nargs="+", metavar="DIR")
    out_dir: str = option("runs/pretrain", "run folder: checkpoints, metrics.jsonl, the model file",
                          flag="--out", metavar="RUN_DIR")
    arch: Any = option(TRAINING_ARCH, "network size preset", choices=sorted(PRESETS))
    init: str = option("scratch", "a model file whose backbone pretraining continues from (its head is replaced "
                       "by a noise head; it brings its own network), or 'scratch'", metavar="MODEL")
    width: int | None = option(None, "base width W: widths W,2W,4W,8W (overrides the preset's widths)")
    patch_size: int = option(TRAINING_PATCH, "patch side in pixels", flag="--size")
    stride: int = option(TRAINING_STRIDE, "patch grid step in pixels")
    steps: int | None = option(None, "training steps (wins over --epochs)")
    epochs: float | None = option(None, f"passes over all patches (default {PAPER_EPOCHS} when --steps is not given)")
    schedule: str = option("scaled_linear", "noise schedule", choices=list(SCHEDULES))
    timesteps: int = option(DIFFUSION_TIMESTEPS, "diffusion steps T")
    p2_k: float = option(1.0, "P2 weighting k")
    p2_gamma: float = option(1.0, "P2 weighting gamma (0: unweighted L_simple)")
    flips: bool = option(True, "random horizontal/vertical flips")
    rot90: bool = option(False, "random 90-degree rotations")
    skip_background: bool = option(True, "leave out patches that are over 90%% white")

    def check(self) -> UNetConfig:
        """Validate the settings; returns the network configuration (noise head).

        Raises:
            TrainingInputError: a setting is out of range (the message names it).
        """
        check_stage_options(self, "timesteps")
        arch = resolve_architecture(self.arch, self.width).with_head("noise", 3)
        check_patch_fits(self.patch_size, arch)
        return arch


def _diffusion(cfg: PretrainConfig) -> GaussianDiffusion:
    try:
        return GaussianDiffusion.from_config(schedule=cfg.schedule, timesteps=int(cfg.timesteps),
                                             p2_k=cfg.p2_k, p2_gamma=cfg.p2_gamma)
    except ValueError as exc:
        raise TrainingInputError(f"diffusion settings: {exc}") from exc


def _save_result(ctx: RunContext, model: AttentionUNet, info: ModelInfo) -> Path | None:
    path = None
    if ctx.main:
        path = save_trained_model(ctx.run_dir / PRETRAINED_FILE, model, info)
    barrier()
    return path


def pretrain(cfg: PretrainConfig, control: TrainingControl | None = None) -> Generator[ProgressEvent, None, Path | None]:
    """Run diffusion pretraining; a generator of progress events that returns the model file path.

    Args:
        cfg: the settings.
        control: pause / resume / cancel from another thread. By default, none.

    Yields:
        :class:`ProgressEvent` (see :mod:`.events`); the last is "done" or "cancelled".

    Returns:
        ``<out_dir>/pretrained.safetensors`` (noise head; diffusion settings and provenance in its
        metadata). On cancel, the same file with the weights of the last completed step, or None if
        no step was completed.

    Raises:
        TrainingInputError: bad settings, no usable images, unwritable run folder, or a resume that
            does not fit (another architecture or stage).
    """
    arch = cfg.check()
    parent = None
    normalization = DEFAULT_NORMALIZATION
    if cfg.init and cfg.init != "scratch":
        parent, parent_info = load_model(cfg.init)
        arch = parent.config.with_head("noise", 3)
        normalization = parent_info.normalization
        check_patch_fits(cfg.patch_size, arch)
    diffusion = _diffusion(cfg)
    ctx = open_run(cfg, stage="pretrain", architecture=arch)
    data = load_images(cfg.images)
    dataset = PatchDataset(
        data.images, cfg.patch_size, cfg.stride, skip_background=cfg.skip_background,
        augmentation=Augmentation(flips=cfg.flips, rot90=cfg.rot90, color_jitter=False, blur=False),
        normalization=normalization, names=data.names,
    )
    sampler = StepSampler(len(dataset), cfg.batch, cfg.seed, ctx.rank, ctx.world)
    steps = total_steps(cfg.steps, cfg.epochs, sampler.steps_per_epoch, PAPER_EPOCHS)

    build = (lambda: AttentionUNet(arch)) if parent is None else (lambda: parent.with_new_head("noise", 3))
    model, optimizer = start_model(ctx, build, cfg)

    def batches(step: int) -> torch.Tensor:
        return batch_for_step(dataset, sampler, step)

    def loss_fn(net: torch.nn.Module, x0: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        # Timesteps and noise from a per-(step, rank) generator: a resumed run draws the same ones.
        gen = torch.Generator(device=x0.device).manual_seed(step_seed(cfg.seed, step, ctx.rank, 0xD1F))
        out = diffusion.training_loss(net, x0, generator=gen)
        return {"loss": out["loss"], "mse": out["mse"].mean()}

    summary = data_summary(data, dataset, images=len(data.images))
    lines = [f"{len(data.images)} image(s), {describe_patches(cfg, dataset, sampler.steps_per_epoch)}, "
             + (f"continued from the backbone of {cfg.init}, " if parent is not None else "")
             + f"device {ctx.device}, precision {ctx.precision.value}"]

    def model_info(step: int, cancelled: bool = False, **provenance: Any) -> ModelInfo:
        """The metadata of the model file after ``step`` (checkpoints embed it too)."""
        values = base_provenance(ctx, cfg, stage="pretrain", steps=step, epochs=sampler.epoch(step),
                                 cancelled=cancelled)
        values.update(data=summary, parent=str(cfg.init) if parent is not None else "scratch", **provenance)
        return ModelInfo(architecture=arch, classes=[], normalization=normalization,
                         patch_size=cfg.patch_size, diffusion=diffusion.to_config(), provenance=values)

    result = yield from run_stage(
        ctx, cfg, stage="pretrain", model=model, optimizer=optimizer, batches=batches, loss_fn=loss_fn,
        total_steps=steps, steps_per_epoch=sampler.steps_per_epoch,
        describe="; ".join(lines + describe_notes(ctx, data)), control=control, model_info=model_info,
    )
    write_replica_check(ctx, model)
    if result.cancelled and result.step == 0:
        return None
    path = _save_result(ctx, unwrap(model),
                        model_info(result.step, result.cancelled, final_loss=result.last_loss))
    if not result.cancelled:
        yield log_done(ctx, stage="pretrain", result=result, total_steps=steps, epoch=sampler.epoch(result.step),
                       message=f"pretraining done; model written to {path}", path=path)
    return path
