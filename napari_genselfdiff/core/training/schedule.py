"""Learning-rate schedules: a pure function of the step, so a resumed run continues on the same curve.

"constant" is the paper's (Adam, lr 1e-4 throughout). "cosine" warms up linearly over ``warmup``
steps and then decays to zero along a half cosine: with a short budget (a CPU run of a few hundred
steps) it allows a ten times larger peak rate, which the MoNuSeg experiment measured
(docs/results.md).
"""

from __future__ import annotations

import math

from ..errors import TrainingInputError

SCHEDULES = ("constant", "cosine")


def check_schedule(name: str, warmup: int) -> None:
    """Raise TrainingInputError for an unknown schedule or a negative warm-up."""
    if name not in SCHEDULES:
        raise TrainingInputError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {name!r}.")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise TrainingInputError(f"warmup_steps must be a whole number >= 0, got {warmup!r}.")


def learning_rate(step: int, total_steps: int, base_lr: float, schedule: str = "constant", warmup: int = 0) -> float:
    """The learning rate for ``step`` (1-based) of ``total_steps``.

    Args:
        step: the step about to run, 1..total_steps.
        total_steps: the run's length.
        base_lr: the peak rate.
        schedule: "constant" or "cosine".
        warmup: steps of linear warm-up from base_lr / warmup (both schedules).
    """
    if warmup and step <= warmup:
        return base_lr * step / warmup
    if schedule == "constant":
        return base_lr
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
