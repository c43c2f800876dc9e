"""Start (or resume) a run: the set-up both stages share before the loop begins.

- the run folder is created and checked for writing; temporary files of a killed run are removed;
- a folder that already holds checkpoints is only reused with ``resume=True`` (no silent overwrite);
  ``resume=True`` on a folder without checkpoints starts a new run (so a job script can always pass it);
- the latest checkpoint must be of the same stage and architecture (else a clear error);
- ``metrics.jsonl`` keeps the events up to the resumed step; ``config.json`` records the configuration;
- device (cuda -> mps -> cpu, ``cuda:LOCAL_RANK`` under torchrun) and precision (bf16 on GPUs and
  bf16-capable CPUs, fp32 elsewhere) are chosen.
"""

from __future__ import annotations

import datetime
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ..errors import TrainingInputError
from ..inference.device import Precision, choose_device, choose_precision
from ..model_files import ModelInfo, read_model_info, save_model
from ..network.config import UNetConfig
from .checkpoint import (
    TrainingState,
    check_compatible,
    find_latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
)
from .distributed import barrier, gather_digests, is_main_process, local_device, rank, world_size
from ..io.atomic import write_text_atomic
from .runlog import METRICS_FILE, MetricsLog, prepare_run_dir, write_config

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


def open_run(
    *,
    out_dir: str | Path,
    stage: str,
    architecture: UNetConfig,
    resume: bool,
    device: str,
    precision: str,
    channels_last: bool | None,
    config_json: dict[str, Any],
) -> RunContext:
    """Prepare the run folder, find the checkpoint to resume, choose device and precision.

    Raises:
        TrainingInputError: unwritable folder, checkpoints present without ``resume``, a checkpoint
            of another stage or architecture, or a device that is not available.
    """
    main = is_main_process()
    notes: list[str] = []
    run_dir = Path(out_dir).expanduser()
    prepare_run_dir(run_dir)  # on every rank, so that all of them fail alike instead of waiting for rank 0
    if main:
        remove_stale_temporaries(run_dir)
    barrier()
    latest = find_latest_checkpoint(run_dir)
    state = None
    if latest is not None and not resume:
        raise TrainingInputError(
            f"{run_dir} already holds a run (latest checkpoint: {latest.name}). Pass --resume to continue "
            "it, or choose another --out folder."
        )
    if resume:
        if latest is None:
            notes.append(f"no checkpoint in {run_dir}; starting a new run")
        else:
            state = load_checkpoint(latest)
            check_compatible(state, stage=stage, architecture=architecture)
            notes.append(f"resuming from {latest} (step {state.step})")
    try:
        dev = local_device(choose_device(device))
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from exc
    prec = choose_precision(dev, precision)
    log = MetricsLog(run_dir, enabled=main)
    if main:
        if state is not None:
            log.truncate_after(state.step)
        else:
            (run_dir / METRICS_FILE).unlink(missing_ok=True)
        write_config(run_dir, config_json)
    barrier()
    return RunContext(
        run_dir=run_dir,
        device=dev,
        precision=prec,
        channels_last=dev.type == "cuda" if channels_last is None else bool(channels_last),
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


def base_provenance(ctx: RunContext, *, stage: str, steps: int, epochs: float, cancelled: bool) -> dict[str, Any]:
    """The provenance entries every trained model file carries."""
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
