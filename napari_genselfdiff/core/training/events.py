"""What a training run reports: one :class:`ProgressEvent` per step, epoch, validation, checkpoint...

Consumers (the CLI's log lines and tqdm bar, the napari widget's loss curve, ``metrics.jsonl``) read
the same events. Kinds:

=============  =====================================================================================
"start"        the run begins (``step`` = the step it starts after: 0, or the resumed step)
"step"         a step finished: ``loss``, ``metrics`` (loss parts), ``samples_per_s``, ``eta_s``
"epoch"        an epoch finished (``epoch`` counts from 1)
"validation"   held-out metrics (fine-tuning): ``metrics`` = {"mean_iou", "iou_<class>", ...}
"checkpoint"   a training-state checkpoint or a model file was written: ``path``
"paused"       the run is paused (blocks until resumed or cancelled)
"resumed"      the run goes on after a pause
"skipped"      a step was skipped (non-finite loss, or fp16 gradient overflow); ``message`` says why
"done"         the run finished; ``path`` = the final model file
"cancelled"    the run stopped on request; ``path`` = the checkpoint of the last completed step
=============  =====================================================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EVENT_KINDS = (
    "start", "step", "epoch", "validation", "checkpoint", "paused", "resumed", "skipped", "done", "cancelled",
)


@dataclass
class ProgressEvent:
    """One thing that happened in a training run.

    Attributes:
        kind: one of :data:`EVENT_KINDS`.
        step: steps completed so far (1-based after the first step).
        total_steps: steps the run will make in all.
        epoch: epochs completed so far (fractional).
        loss: the step's training loss (the mean over all ranks; "step" events), else None.
        metrics: other numbers: loss parts for "step", held-out scores for "validation".
        samples_per_s: training throughput over all ranks (smoothed).
        eta_s: estimated seconds to the end of the run.
        message: a human-readable line (always set for "start", "skipped", "done", "cancelled").
        path: the file written ("checkpoint", "done", "cancelled"), else None.
        stage: "pretrain" or "finetune".
    """

    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    samples_per_s: float | None = None
    eta_s: float | None = None
    message: str = ""
    path: Path | None = None
    stage: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {EVENT_KINDS}.")

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return self.step / self.total_steps if self.total_steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings, non-finite numbers as None), for ``metrics.jsonl``."""
        values = asdict(self)
        values["path"] = str(self.path) if self.path is not None else None

        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return {k: clean(v) for k, v in values.items()}

    def describe(self) -> str:
        """One log line."""
        head = f"[{self.stage or 'train'}] step {self.step}/{self.total_steps}"
        if self.kind == "step":
            parts = [head, f"loss {self.loss:.4f}" if self.loss is not None else "loss n/a"]
            if self.samples_per_s:
                parts.append(f"{self.samples_per_s:.2f} samples/s")
            if self.eta_s is not None:
                parts.append(f"ETA {format_seconds(self.eta_s)}")
            return ", ".join(parts)
        if self.kind == "validation":
            shown = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items() if isinstance(v, (int, float)))
            return f"{head} validation: {shown}" + (f" ({self.message})" if self.message else "")
        text = f"{head} {self.kind}"
        if self.message:
            text += f": {self.message}"
        if self.path is not None and str(self.path) not in self.message:
            text += f" ({self.path})"
        return text


def format_seconds(seconds: float) -> str:
    """'1h02m', '3m05s', '42s'."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
