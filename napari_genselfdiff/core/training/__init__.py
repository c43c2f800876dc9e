"""Headless training: diffusion pretraining, fine-tuning, and what the napari widget needs to drive them.

Public API (stable; the napari widget and src_train/ use it):

- ``pretrain(PretrainConfig, control=None)`` and ``finetune(FinetuneConfig, control=None)``:
  generators of :class:`ProgressEvent` whose return value is the model file path (the napari
  widget runs them in a child process, ``plugin/_subprocess.py``, and streams the events back for
  the live loss curve, then the path). Data may be folders, files or in-memory arrays.
- :class:`TrainingControl`: ``pause()``, ``resume()``, ``cancel()`` from the GUI thread.
- ``sample_preview(source, n=4, steps=20, size=None) -> (n, H, W, 3) uint8``: DDIM samples from a
  pretrained model file, a checkpoint, or a run folder's latest checkpoint; ``make_grid`` tiles them.
- ``find_latest_checkpoint(run_dir)``, ``read_metrics(run_dir)`` (the events of ``metrics.jsonl``).

Module map: control, events, loop (the one generic loop), checkpoint (safetensors + JSON, atomic;
each embeds the ModelInfo of the model it would export), run (what both stages share: run folder
set-up and resume, the network and optimizer, running the loop, provenance), runlog (the run
folder's files: config.json, metrics.jsonl, the model file names), distributed (DDP helpers),
settings (config dataclass plumbing and the checks both stages share), architecture, validation
(whole-image held-out scores), pretrain, finetune, preview.
"""

from .architecture import resolve_architecture
from .checkpoint import find_latest_checkpoint, load_checkpoint
from .control import TrainingControl
from .events import EVENT_KINDS, ProgressEvent
from .finetune import FinetuneConfig, finetune
from .loop import CheckpointPolicy, LoopResult, train_loop
from .pretrain import PretrainConfig, pretrain
from .preview import make_grid, sample_preview
from .runlog import read_metrics

__all__ = [
    "EVENT_KINDS",
    "CheckpointPolicy",
    "FinetuneConfig",
    "LoopResult",
    "PretrainConfig",
    "ProgressEvent",
    "TrainingControl",
    "find_latest_checkpoint",
    "finetune",
    "load_checkpoint",
    "make_grid",
    "pretrain",
    "read_metrics",
    "resolve_architecture",
    "sample_preview",
    "train_loop",
]
