"""The run folder: its layout, a write check, ``config.json`` and the ``metrics.jsonl`` event log.

Layout of a run folder::

    config.json            the run configuration (what --resume reuses)
    metrics.jsonl          one JSON object per event (ProgressEvent.to_dict()), appended as it happens
    checkpoints/           training-state checkpoints (see checkpoint.py)
    pretrained.safetensors the pretraining result (noise head) + .json beside it
    best.safetensors       fine-tuning: the best model on the held-out images (+ last.safetensors)
    samples.png            optional: DDIM samples (src_train/sample.py)

Only rank 0 writes (see distributed.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import TrainingInputError
from ..io.atomic import write_text_atomic
from .events import ProgressEvent

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PRETRAINED_FILE = "pretrained.safetensors"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"


def prepare_run_dir(run_dir: str | Path) -> Path:
    """Create the run folder if needed and check that files can be written there.

    Raises:
        TrainingInputError: the folder cannot be created or written (the message names it).
    """
    run_dir = Path(run_dir).expanduser()
    try:
        if run_dir.exists() and not run_dir.is_dir():
            raise TrainingInputError(f"{run_dir}: exists and is not a folder; choose another --out.")
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainingInputError(
            f"{run_dir}: cannot write to this run folder ({exc.strerror or exc}); choose another --out."
        ) from exc
    return run_dir


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    return write_text_atomic(run_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``config.json`` of a run folder, or None when there is none."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingInputError(f"{path}: unreadable run configuration ({exc}).") from exc


class MetricsLog:
    """Appends events to ``metrics.jsonl`` (one line each, flushed so a crash loses nothing written).

    Args:
        run_dir: the run folder.
        enabled: False on ranks other than 0 (then every call does nothing).
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop events after ``step`` (logged by a killed run after its last checkpoint): a resumed
        run then logs every step exactly once."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line).get("step", 0)) <= step:
                    kept.append(line)
            except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                continue  # a line cut short by the kill
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def append(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event.to_dict()) + "\n")
            handle.flush()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every event of ``metrics.jsonl`` (for plots and tests)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
