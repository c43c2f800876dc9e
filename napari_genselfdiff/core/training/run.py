"""Start (or resume) a run and drive it: everything both stages (pretrain.py, finetune.py) share
around their data and loss, written once.

- the run folder is created and checked for writing; temporary files of a killed run are removed;
- a folder that already holds checkpoints is only reused with ``resume=True`` (no silent overwrite);
  ``resume=True`` on a folder without checkpoints starts a new run (so a job script can always pass it);
- the latest checkpoint must be of the same stage and architecture (else a clear error);
- ``metrics.jsonl`` keeps the events up to the resumed step; ``config.json`` records the configuration;
- device (cuda -> mps -> cpu, ``cuda:LOCAL_RANK`` under torchrun) and precision (bf16 on GPUs and
  bf16-capable CPUs, fp32 elsewhere) are chosen (:func:`open_run`);
- the network and its Adam optimizer start from the seed, or from the checkpoint's weights, optimizer
  and random states (:func:`start_model`);
- the one training loop runs with the run's options, logging every event (:func:`run_stage`);
- the provenance every trained model file carries, and the summaries of the data (:func:`base_provenance`,
  :func:`data_summary`, :func:`describe_patches`), and the final "done" event (:func:`log_done`).
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ..errors import TrainingInputError
from ..inference.device import Precision, choose_device, choose_precision
from ..io.atomic import write_text_atomic
from ..model_files import ModelInfo, read_model_info, save_model
from ..network.config import UNetConfig
from .checkpoint import (
    TrainingState,
    check_compatible,
    find_latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng,
)
from .control import TrainingControl
from .distributed import barrier, gather_digests, is_main_process, local_device, rank, world_size
from .events import ProgressEvent
from .loop import CheckpointPolicy, LoopResult, LossFn, ValidateFn, logged, prepare_model, train_loop
from .runlog import METRICS_FILE, MetricsLog, prepare_run_dir, write_config
from .schedule import learning_rate
from .settings import RunOptions, config_to_json

DDP_CHECK_FILE = "ddp_check.json"


@dataclass
class RunContext:
    """What a stage needs to know about its run.

    Attributes:
        run_dir: the run folder.
        device, precision, channels_last: where and how to compute.
        rank, world, main: the distributed position (0, 1, True in a single process).
        log: the ``metrics.jsonl`` writer (inactive on ranks > 0).
        state: the checkpoint to resume from, or None for a new run.
        notes: lines worth telling the user (e.g. "no checkpoint found, starting a new run").
    """

    run_dir: Path
    device: torch.device
    precision: Precision
    channels_last: bool
    rank: int
    world: int
    main: bool
    log: MetricsLog
    state: TrainingState | None
    notes: list[str]

    @property
    def start_step(self) -> int:
        return self.state.step if self.state is not None else 0


def open_run(cfg: RunOptions, *, stage: str, architecture: UNetConfig) -> RunContext:
    """Prepare the run folder, find the checkpoint to resume, choose device and precision.

    Args:
        cfg: the stage's configuration (its ``out_dir``, ``resume``, ``device``, ``precision``,
            ``channels_last``; all of it is written to ``config.json``).
        stage: "pretrain" or "finetune".
        architecture: the network the run trains (a checkpoint to resume must have the same).

    Raises:
        TrainingInputError: unwritable folder, checkpoints present without ``resume``, a checkpoint
            of another stage or architecture, or a device that is not available.
    """
    main = is_main_process()
    notes: list[str] = []
    run_dir = Path(cfg.out_dir).expanduser()
    prepare_run_dir(run_dir)  # on every rank, so that all of them fail alike instead of waiting for rank 0
    if main:
        remove_stale_temporaries(run_dir)
    barrier()
    latest = find_latest_checkpoint(run_dir)
    state = None
    if latest is not None and not cfg.resume:
        raise TrainingInputError(
            f"{run_dir} already holds a run (latest checkpoint: {latest.name}). Pass --resume to continue "
            "it, or choose another --out folder."
        )
    if cfg.resume:
        if latest is None:
            notes.append(f"no checkpoint in {run_dir}; starting a new run")
        else:
            state = load_checkpoint(latest)
            check_compatible(state, stage=stage, architecture=architecture)
            notes.append(f"resuming from {latest} (step {state.step})")
    try:
        dev = local_device(choose_device(cfg.device))
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from exc
    prec = choose_precision(dev, cfg.precision)
    log = MetricsLog(run_dir, enabled=main)
    if main:
        if state is not None:
            log.truncate_after(state.step)
        else:
            (run_dir / METRICS_FILE).unlink(missing_ok=True)
        write_config(run_dir, config_to_json(cfg))
    barrier()
    return RunContext(
        run_dir=run_dir,
        device=dev,
        precision=prec,
        channels_last=dev.type == "cuda" if cfg.channels_last is None else bool(cfg.channels_last),
        rank=rank(),
        world=world_size(),
        main=main,
        log=log,
        state=state,
        notes=notes,
    )


def step_seed(seed: int, step: int, rank: int, purpose: int) -> int:
    """A 62-bit seed for one purpose (noise, timesteps...) at one step on one rank."""
    return int(np.random.default_rng([seed, purpose, step, rank]).integers(2**62))


def start_model(ctx: RunContext, build: Callable[[], torch.nn.Module], cfg: RunOptions,
                **adam: Any) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The network on its device and its Adam optimizer, new or where the resumed checkpoint left them.

    Args:
        ctx: the run (:func:`open_run`); ``ctx.state`` is the checkpoint to resume, if any.
        build: makes the network. It is called after ``torch.manual_seed(cfg.seed)``, so a new
            network (or a new head) starts from the same weights on every rank (DDP also broadcasts
            rank 0's).
        cfg: the run options (``seed``, ``lr``).
        adam: further ``torch.optim.Adam`` settings (e.g. ``betas``).

    Returns:
        (model, optimizer): on resume with the checkpoint's weights and optimizer state, and the
        random generators put back where the checkpoint left them.
    """
    torch.manual_seed(cfg.seed)
    model = build()
    if ctx.state is not None:
        model.load_state_dict(ctx.state.model)
    model = prepare_model(model, ctx.device, ctx.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, **adam)
    if ctx.state is not None:
        if ctx.state.optimizer is not None:
            optimizer.load_state_dict(ctx.state.optimizer)
        restore_rng(ctx.state.rng)
    return model, optimizer


def run_stage(
    ctx: RunContext,
    cfg: RunOptions,
    *,
    stage: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Any],
    loss_fn: LossFn,
    total_steps: int,
    steps_per_epoch: int,
    describe: str,
    control: TrainingControl | None,
    model_info: Callable[[int], ModelInfo],
    stage_state: Callable[[], dict[str, Any]] | None = None,
    validate: ValidateFn | None = None,
    validate_every: int = 0,
) -> Generator[ProgressEvent, None, LoopResult]:
    """Run :func:`.loop.train_loop` with the run's device, precision, schedule, checkpoints and resume
    point, appending every event to ``metrics.jsonl``; returns the loop's :class:`LoopResult`.

    Args:
        ctx, cfg: the run and its options.
        stage: "pretrain" or "finetune".
        model, optimizer: from :func:`start_model`.
        batches, loss_fn, validate, validate_every: what the stage trains on and how it scores (see
            :func:`.loop.train_loop`).
        total_steps, steps_per_epoch: the run's length.
        describe: data and device, for the "start" event.
        control: pause / resume / cancel.
        model_info: ``model_info(step)`` -> the ModelInfo of the model the run would export after
            that step, embedded in each checkpoint.
        stage_state: the stage's resume state written into each checkpoint (e.g. the best score so far).
    """
    return (yield from logged(
        train_loop(
            model=model, batches=batches, loss_fn=loss_fn, optimizer=optimizer, total_steps=total_steps,
            device=ctx.device, precision=ctx.precision, start_step=ctx.start_step,
            steps_per_epoch=steps_per_epoch, samples_per_step=cfg.batch * ctx.world,
            channels_last=ctx.channels_last, control=control,
            lr_at=lambda step: learning_rate(step, total_steps, cfg.lr, cfg.lr_schedule, cfg.warmup_steps),
            grad_clip=cfg.grad_clip,
            checkpoint=CheckpointPolicy(run_dir=ctx.run_dir, stage=stage, model_info=model_info,
                                        every=cfg.checkpoint_every, keep=cfg.keep_checkpoints,
                                        config=config_to_json(cfg), stage_state=stage_state),
            scaler_state=ctx.state.scaler if ctx.state is not None else None,
            validate=validate, validate_every=validate_every,
            stage=stage, describe=describe,
        ),
        ctx.log,
    ))


def data_summary(data: Any, dataset: Any, **images: Any) -> dict[str, Any]:
    """What a model was trained on, for its provenance: the folders, ``images`` (the stage's image
    counts or names), in-memory arrays, patches, background patches and files left out."""
    return {
        "folders": data.folders,
        **images,
        "in_memory_arrays": data.arrays,
        "patches": len(dataset),
        "background_patches_skipped": dataset.index.skipped_background,
        "files_skipped": [n for n, _ in data.skipped],
    }


def describe_patches(cfg: Any, dataset: Any, steps_per_epoch: int) -> str:
    """"N patches of P px (B background patches skipped), S steps per epoch", for the "start" event."""
    return (f"{len(dataset)} patches of {cfg.patch_size} px ({dataset.index.skipped_background} background "
            f"patches skipped), {steps_per_epoch} steps per epoch")


def describe_notes(ctx: RunContext, data: Any) -> list[str]:
    """The lines after the first of the "start" event: files skipped, data and run notes."""
    return [f"skipped {n}: {r}" for n, r in data.skipped] + data.notes + ctx.notes


def log_done(ctx: RunContext, *, stage: str, result: LoopResult, total_steps: int, epoch: float, message: str,
             path: Path | None, metrics: dict[str, float] | None = None) -> ProgressEvent:
    """The final "done" event of a completed run, appended to ``metrics.jsonl`` (the caller yields it)."""
    done = ProgressEvent(kind="done", step=result.step, total_steps=total_steps, epoch=epoch,
                         loss=result.last_loss, metrics=metrics or {}, message=message, path=path, stage=stage)
    ctx.log.append(done)
    return done


def base_provenance(ctx: RunContext, cfg: Any, *, stage: str, steps: int, epochs: float,
                    cancelled: bool) -> dict[str, Any]:
    """The provenance entries every trained model file carries: the run (stage, length, date,
    software, device) and the options both stages share (batch over all processes, patch grid,
    learning rate and its schedule, gradient clipping, seed)."""
    return {
        "stage": stage,
        "steps": steps,
        "epochs": round(epochs, 4),
        "cancelled": cancelled,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": f"napari-genselfdiff {__version__}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(ctx.device),
        "precision": ctx.precision.value,
        "processes": ctx.world,
        "batch": cfg.batch * ctx.world,
        "patch_size": cfg.patch_size,
        "stride": cfg.stride,
        "lr": cfg.lr,
        "lr_schedule": cfg.lr_schedule,
        "warmup_steps": cfg.warmup_steps,
        "grad_clip": cfg.grad_clip,
        "seed": cfg.seed,
    }


def write_replica_check(ctx: RunContext, model: torch.nn.Module) -> list[str]:
    """Under DDP: every rank's weight digest, written by rank 0 to ``ddp_check.json``; all must agree.

    DDP keeps replicas identical by broadcasting rank 0's weights at the start and averaging
    gradients every step; this records that it did (a cheap end-of-run check, one hash per rank).
    """
    digests = gather_digests(model)
    if ctx.main and ctx.world > 1:
        write_text_atomic(
            ctx.run_dir / DDP_CHECK_FILE,
            json.dumps({"digests": digests, "identical": len(set(digests)) == 1}, indent=2) + "\n",
        )
    return digests


def save_trained_model(path: Path, model: torch.nn.Module, info: ModelInfo) -> Path:
    """:func:`save_model`, then read the file's metadata back, so a run never ends on an unusable file."""
    written = save_model(path, model, info)
    read_model_info(written)
    return written
