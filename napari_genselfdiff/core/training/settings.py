"""Shared plumbing of the run configurations (:class:`.pretrain.PretrainConfig`, :class:`.finetune.FinetuneConfig`).

Each configuration is ONE dataclass; its fields carry their command-line help in
``field(metadata=...)`` (see :func:`option`), so ``src_train/_common.py`` builds the argparse flags
from the dataclass and the parameters are written down once. Fields without help (in-memory arrays,
a ready :class:`UNetConfig`) are for the Python API and the napari widget only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION, PRECISION_CHOICES
from ..errors import TrainingInputError
from ..network.config import UNetConfig
from .schedule import SCHEDULES as LR_SCHEDULES, check_schedule


def option(default: Any = None, help: str = "", *, flag: str | None = None, factory: Any = None,
           **argparse_kwargs: Any) -> Any:
    """A dataclass field with its command-line flag.

    Args:
        default: the default value (use ``factory`` for lists).
        help: the flag's help; fields without help get no flag.
        flag: the flag name. By default, ``--`` + the field name with "-" for "_".
        factory: a default factory instead of ``default``.
        argparse_kwargs: extra ``add_argument`` settings (choices, nargs, metavar).
    """
    metadata = {"help": help, "flag": flag, "argparse": argparse_kwargs}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def jsonable(value: Any) -> Any:
    """A JSON-ready copy: paths as strings, arrays as a short description, dataclasses as dicts."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, UNetConfig):
        return value.to_dict()
    if isinstance(value, np.ndarray) or hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<in-memory array {'x'.join(map(str, value.shape))} {value.dtype}>"
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def config_to_json(config: Any) -> dict[str, Any]:
    """A run configuration as JSON values (for config.json, checkpoints and model provenance)."""
    return {f.name: jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_json(cls: type, values: dict[str, Any]) -> Any:
    """Build ``cls`` from JSON values (unknown keys are an error naming them).

    Raises:
        TrainingInputError: unknown or invalid keys.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TrainingInputError(
            f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; known: {', '.join(sorted(known))}."
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise TrainingInputError(f"invalid settings for {cls.__name__}: {exc}") from exc


def check_positive(name: str, value: Any, *, allow_none: bool = False, integer: bool = True) -> None:
    """Raise TrainingInputError unless ``value`` is a positive (integer) number."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive whole number" if integer else "a positive number"
        raise TrainingInputError(f"{name} must be {kind}, got {value!r}.")


def check_stage_options(cfg: Any, *positive: str) -> None:
    """The checks every stage's configuration shares: the patch grid (``patch_size``, ``stride``) and
    the named stage fields are positive whole numbers, the :class:`RunOptions` are in range, and the
    run length (``steps``, ``epochs``) is positive where given.

    Raises:
        TrainingInputError: a setting is out of range (the message names it).
    """
    for name in ("patch_size", "stride", *positive):
        check_positive(name, getattr(cfg, name))
    cfg.check_run_options()
    check_positive("steps", cfg.steps, allow_none=True)
    check_positive("epochs", cfg.epochs, allow_none=True, integer=False)


def check_patch_fits(patch_size: int, architecture: UNetConfig) -> None:
    """Refuse a training patch the network cannot halve down to its bottleneck.

    Raises:
        TrainingInputError: ``patch_size`` is not a multiple of the network's downsampling factor.
    """
    if patch_size % architecture.downsample_factor:
        raise TrainingInputError(
            f"patch size {patch_size} must be a multiple of {architecture.downsample_factor} for this "
            f"network ({len(architecture.widths)} levels)."
        )


def total_steps(steps: int | None, epochs: float | None, steps_per_epoch: int, default_epochs: float) -> int:
    """Steps of a run: ``steps`` when given, else ``epochs`` (or the default) times the epoch length."""
    if steps is not None:
        return int(steps)
    return max(1, int(round((epochs if epochs is not None else default_epochs) * steps_per_epoch)))


@dataclasses.dataclass
class RunOptions:
    """Settings every training run shares: the optimiser's schedule, checkpoints, seed and device.

    :class:`.pretrain.PretrainConfig` and :class:`.finetune.FinetuneConfig` extend it (their fields
    follow these on the command line).

    Args:
        batch: patches per step per process. By default, 8 (the paper).
        lr: Adam learning rate. By default, 1e-4 (the paper).
        lr_schedule / warmup_steps: "constant" (the paper) or "cosine" decay, after a linear warm-up
            (:mod:`.schedule`). By default, constant without warm-up.
        grad_clip: clip the gradients' global norm to this. By default, none (the paper).
        checkpoint_every: steps between checkpoints (0: only at the end). By default, 1000.
        keep_checkpoints: checkpoints kept. By default, 2.
        seed: seeds weights, patch order, augmentation (and diffusion noise). By default, 0.
        device: "auto", "cpu", "cuda", "cuda:N", "mps". precision: "auto", "fp32", "bf16", "fp16".
        channels_last: channels-last memory format. By default, on CUDA only.
        resume: continue from the run folder's latest checkpoint. By default, False.
    """

    batch: int = option(8, "patches per step (per process)")
    lr: float = option(1e-4, "Adam learning rate")
    lr_schedule: str = option("constant", "learning-rate schedule: constant (the paper) or cosine decay to 0",
                              choices=list(LR_SCHEDULES))
    warmup_steps: int = option(0, "steps of linear learning-rate warm-up")
    grad_clip: float | None = option(None, "clip the gradient norm to this (default: no clipping, the paper)")
    checkpoint_every: int = option(1000, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = option(2, "checkpoints to keep")
    seed: int = option(0, "random seed")
    device: str = option(DEFAULT_DEVICE, "auto, cpu, cuda, cuda:N or mps")
    precision: str = option(DEFAULT_PRECISION, ", ".join(PRECISION_CHOICES[:-1]) + " or " + PRECISION_CHOICES[-1],
                            choices=list(PRECISION_CHOICES))
    channels_last: bool | None = option(None, "channels-last memory format (default: on CUDA only)")
    resume: bool = option(False, "continue from the latest checkpoint in the run folder")

    def check_run_options(self) -> None:
        """Validate the shared settings.

        Raises:
            TrainingInputError: a setting is out of range (the message names it).
        """
        check_positive("batch", self.batch)
        check_positive("keep_checkpoints", self.keep_checkpoints)
        check_positive("lr", self.lr, integer=False)
        check_schedule(self.lr_schedule, self.warmup_steps)
        check_positive("grad_clip", self.grad_clip, allow_none=True, integer=False)
        if self.checkpoint_every < 0:
            raise TrainingInputError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}.")

