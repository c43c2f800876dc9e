"""The ONE training loop of both stages: a generator of :class:`.events.ProgressEvent`.

Pretraining and fine-tuning differ only in what they pass in: the batch of step N
(``batches(step)``), the loss (``loss_fn(model, batch, step) -> {"loss": scalar, ...}``), an
optional held-out ``validate`` and what their checkpoints record (the ModelInfo of the model they
would export, and their resume state). The loop owns everything else:

- precision: ``autocast`` in bf16/fp16 where chosen (fp32 on CPUs without native bf16), with a
  GradScaler for fp16; optional channels-last memory format;
- DistributedDataParallel when ``torch.distributed`` is initialised (the model is wrapped here;
  checkpoints hold the unwrapped weights; only rank 0 writes, then all ranks meet at a barrier);
- non-finite losses: the step is skipped on every rank (its "skipped" event says why);
- pause / resume / cancel through :class:`.control.TrainingControl`, checked between steps (a cancel
  saves the last completed step, so nothing finished is lost);
- checkpoints every N steps and at the end; throughput and ETA (smoothed) in every "step" event;
- prefetching the next batch in a thread (on GPUs, where data preparation would otherwise idle it).

Steps count from 1; step N always uses the batch ``batches(N)``, so a resumed run repeats nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..inference.device import Precision, autocast
from ..model_files.schema import ModelInfo
from ..progress import Returning
from .checkpoint import save_checkpoint
from .control import TrainingControl
from .distributed import any_rank, barrier, is_distributed, is_main_process, mean_over_ranks, unwrap
from .events import ProgressEvent
from .runlog import MetricsLog

#: ``loss_fn(model, batch, step)`` -> {"loss": differentiable scalar, other scalars for the log}.
LossFn = Callable[[nn.Module, Any, int], dict[str, torch.Tensor]]
#: ``validate(model, step)``: called on rank 0 with the unwrapped model in eval mode; yields events.
ValidateFn = Callable[[nn.Module, int], Iterator[ProgressEvent]]


@dataclass
class CheckpointPolicy:
    """When and where the loop writes training-state checkpoints.

    Args:
        run_dir: the run folder.
        stage: "pretrain" or "finetune" (stored, and checked on resume).
        model_info: ``model_info(step)`` -> the :class:`ModelInfo` of the model the run would export
            after that step; every checkpoint embeds it.
        every: steps between checkpoints; 0 writes only at the end and on cancel.
        keep: checkpoints to keep. By default, 2.
        config: the run configuration (JSON values) stored in each checkpoint.
        stage_state: called at each save for what the stage needs to continue besides the weights
            (JSON values), e.g. the best validation score so far. By default, nothing.
    """

    run_dir: Path
    stage: str
    model_info: Callable[[int], ModelInfo]
    every: int = 0
    keep: int = 2
    config: dict[str, Any] = field(default_factory=dict)
    stage_state: Callable[[], dict[str, Any]] | None = None


@dataclass
class LoopResult:
    """How the loop ended: ``step`` completed, ``cancelled`` or not, the last checkpoint written."""

    step: int
    cancelled: bool = False
    checkpoint: Path | None = None
    last_loss: float | None = None


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move the network to its device and memory format (before its optimizer loads any state)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def logged(events: Generator[ProgressEvent, None, Any], log: MetricsLog) -> Generator[ProgressEvent, None, Any]:
    """Forward ``events`` while appending each to ``metrics.jsonl``; returns the generator's value."""
    run = Returning(events)
    for event in run:
        log.append(event)
        yield event
    return run.value


def train_loop(
    *,
    model: nn.Module,
    batches: Callable[[int], Any],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    device: torch.device,
    precision: Precision = Precision.FP32,
    start_step: int = 0,
    steps_per_epoch: int | None = None,
    samples_per_step: int = 1,
    channels_last: bool = False,
    control: TrainingControl | None = None,
    checkpoint: CheckpointPolicy | None = None,
    scaler_state: dict[str, Any] | None = None,
    validate: ValidateFn | None = None,
    validate_every: int = 0,
    stage: str = "",
    describe: str = "",
    prefetch: bool | None = None,
    lr_at: Callable[[int], float] | None = None,
    grad_clip: float | None = None,
) -> Generator[ProgressEvent, None, LoopResult]:
    """Train ``model`` from ``start_step`` to ``total_steps``, yielding progress events.

    Args:
        model: the network, already on ``device`` (see :func:`prepare_model`); wrapped in
            DistributedDataParallel here when ``torch.distributed`` is initialised.
        batches: ``batches(step)`` -> this rank's batch (tensors or a tuple of tensors, on the CPU).
        loss_fn: ``loss_fn(model, batch, step)`` -> {"loss": scalar tensor, other scalar tensors}.
            It is called under autocast with the (possibly DDP-wrapped) model and the batch on ``device``.
        optimizer: the optimizer of ``model``'s parameters (its state already loaded on resume).
        total_steps: the step to stop after.
        device: where to train.
        precision: fp32, bf16 or fp16 (fp16 uses a GradScaler). By default, fp32.
        start_step: steps already done (resume). By default, 0.
        steps_per_epoch: for "epoch" events and epoch counts. By default, none.
        samples_per_step: samples per step over all ranks, for samples/s. By default, 1.
        channels_last: feed 4-D inputs in channels-last memory format. By default, False.
        control: pause / resume / cancel from another thread. By default, none.
        checkpoint: when and where to checkpoint. By default, never.
        scaler_state: a GradScaler state to resume (fp16). By default, a fresh scaler.
        validate: held-out evaluation, run on rank 0 every ``validate_every`` steps and at the end.
        validate_every: steps between validations; 0 validates only at the end.
        stage: "pretrain" or "finetune", copied into events.
        describe: appended to the "start" event's message (data, device...).
        prefetch: prepare the next batch in a thread. By default, only on CUDA.
        lr_at: ``lr_at(step)`` -> the learning rate of that step (see :mod:`.schedule`), set on every
            parameter group before the step. By default, the optimizer's rate throughout.
        grad_clip: clip the gradients' global norm to this before each update (fp16: after
            unscaling). By default, no clipping.

    Yields:
        :class:`ProgressEvent` of kinds start, step, epoch, validation, checkpoint, paused, resumed,
        skipped, cancelled (the caller yields "done" after saving its result).

    Returns:
        :class:`LoopResult`.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    main = is_main_process()
    net: nn.Module = model
    if is_distributed():
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == Precision.FP16)
    if scaler_state and scaler.is_enabled():
        scaler.load_state_dict(scaler_state)

    def epoch_of(step: int) -> float:
        return step / steps_per_epoch if steps_per_epoch else 0.0

    def event(kind: str, step: int, **values: Any) -> ProgressEvent:
        return ProgressEvent(kind=kind, step=step, total_steps=total_steps, epoch=epoch_of(step), stage=stage,
                             **values)

    last_saved: tuple[int, Path] | None = None

    def save(step: int) -> Path | None:
        nonlocal last_saved
        if checkpoint is None:
            return None
        if last_saved is not None and last_saved[0] == step:
            return last_saved[1]
        path = None
        if main:
            path = save_checkpoint(
                checkpoint.run_dir, step=step, epoch=epoch_of(step), stage=checkpoint.stage, model=model,
                model_info=checkpoint.model_info(step), optimizer=optimizer, scaler=scaler,
                config=checkpoint.config, stage_state=checkpoint.stage_state() if checkpoint.stage_state else None,
                keep=checkpoint.keep,
            )
            last_saved = (step, path)
        barrier()
        return path

    def run_validation(step: int) -> Iterator[ProgressEvent]:
        if main and validate is not None:
            inner = unwrap(model)
            inner.eval()
            try:
                yield from validate(inner, step)
            finally:
                inner.train()
        barrier()

    use_prefetch = device.type == "cuda" if prefetch is None else prefetch
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch") if use_prefetch else None
    pending: dict[int, Future] = {}

    def fetch(step: int) -> Any:
        future = pending.pop(step, None)
        batch = future.result() if future is not None else batches(step)
        if executor is not None and step < total_steps:
            pending[step + 1] = executor.submit(batches, step + 1)
        return batch

    model.train()
    step = start_step
    last_loss: float | None = None
    ema_time: float | None = None
    resumed = f"resumed after step {start_step}" if start_step else "started"
    message = f"{stage or 'training'} {resumed}; {total_steps} steps in all"
    yield event("start", start_step, message=message + (f"; {describe}" if describe else ""))
    try:
        while step < total_steps:
            if control is not None and control.is_paused and not control.is_cancelled:
                yield event("paused", step, message="paused; resume or cancel")
                control.wait_while_paused()
                if not control.is_cancelled:
                    yield event("resumed", step, message="resumed")
            # Every rank takes part in the check, so a cancel on any process stops them all together.
            if any_rank(control is not None and control.is_cancelled, device):
                path = save(step)
                yield event("cancelled", step, message=f"cancelled after step {step}", path=path)
                return LoopResult(step=step, cancelled=True, checkpoint=path, last_loss=last_loss)

            step += 1
            started = time.perf_counter()
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
            batch = _to_device(fetch(step), device, channels_last)
            with autocast(device, precision):
                out = loss_fn(net, batch, step)
            loss = out["loss"]
            # The mean over ranks: the global batch's loss, and one skip decision for every rank.
            loss_value = mean_over_ranks(float(loss.detach().float().item()), device)
            if not math.isfinite(loss_value):
                optimizer.zero_grad(set_to_none=True)
                yield event("skipped", step, message=f"non-finite loss ({loss_value}); step {step} skipped")
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            scale_before = scaler.get_scale() if scaler.is_enabled() else None
            scaler.step(optimizer)
            scaler.update()
            if scale_before is not None and scaler.get_scale() < scale_before:
                yield event("skipped", step, message="fp16 gradient overflow; the loss scale was lowered")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            ema_time = elapsed if ema_time is None else 0.9 * ema_time + 0.1 * elapsed
            last_loss = loss_value
            parts = {
                k: float(v.detach().float().mean().item())
                for k, v in out.items()
                if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1
            }
            yield event(
                "step", step, loss=loss_value, metrics=parts, samples_per_s=samples_per_step / ema_time,
                eta_s=(total_steps - step) * ema_time,
            )
            if steps_per_epoch and step % steps_per_epoch == 0:
                yield event("epoch", step, message=f"epoch {step // steps_per_epoch} done")
            if validate is not None and ((validate_every and step % validate_every == 0) or step == total_steps):
                yield from run_validation(step)
            if checkpoint is not None and ((checkpoint.every and step % checkpoint.every == 0) or step == total_steps):
                path = save(step)
                if path is not None:
                    yield event("checkpoint", step, message=f"checkpoint of step {step}", path=path)
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return LoopResult(step=step, checkpoint=last_saved[1] if last_saved else None, last_loss=last_loss)
