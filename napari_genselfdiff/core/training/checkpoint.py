"""Training-state checkpoints: ONE safetensors file per checkpoint, written atomically, never a pickle.

A checkpoint ``<run>/checkpoints/step_00001234.safetensors`` holds

- tensors: ``model.<name>`` (the unwrapped network's state), ``optim.<param>.<key>`` (the
  optimizer's per-parameter state, e.g. Adam's moments and step), ``rng.torch`` / ``rng.cuda.<i>`` /
  ``rng.numpy`` (random generator states);
- JSON in the safetensors header under ``"genselfdiff.checkpoint"``: format version, stage, step,
  epoch, ``model_info`` -- the :class:`..model_files.ModelInfo` of the model the run would export at
  this step (architecture, classes, normalisation, patch size, diffusion settings, provenance: the
  ONE metadata schema, the same as a model file's) --, the run configuration, ``stage_state`` (what
  the stage needs to continue besides the weights: fine-tuning's best held-out score so far), the
  optimizer's structure (param groups, and for each state entry either a tensor key or a plain
  number), the GradScaler state and Python's ``random`` state.

Format 1 (before the ModelInfo was embedded) stored ``architecture`` and one per-stage ``extra``
dict mixing metadata (diffusion, normalization, patch_size, class names) with the best score; such
checkpoints still load: :func:`load_checkpoint` rebuilds their ModelInfo from those entries.

So a checkpoint a user hands us is parsed as JSON and raw tensors only (no code can run on load, unlike
``torch.load`` of a pickle). It is written to a temporary file in the same folder, fsynced and renamed
(:func:`..io.atomic.atomic_path`): a run killed at any moment (even ``kill -9``) leaves the previous
checkpoints intact, and at worst a hidden temporary file that the next run removes. The last ``keep``
checkpoints are kept.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError, TrainingInputError
from ..io.atomic import atomic_path
from ..model_files.classes import default_classes
from ..model_files.schema import ModelInfo
from ..network.config import UNetConfig
from ..network.unet import AttentionUNet
from ..normalization import Normalization
from .distributed import unwrap

CHECKPOINT_DIR = "checkpoints"
METADATA_KEY = "genselfdiff.checkpoint"
FORMAT_VERSION = 2
#: The entries of a format-1 ``extra`` dict that were model metadata (now in ``model_info``).
_V1_METADATA = ("diffusion", "normalization", "patch_size", "classes")
_NAME = re.compile(r"^step_(\d+)\.safetensors$")


@dataclass
class TrainingState:
    """A checkpoint as read back.

    Attributes:
        path: the file.
        step: steps completed.
        epoch: epochs completed (fractional).
        stage: "pretrain" or "finetune".
        info: the :class:`ModelInfo` of the model the run would export at this step.
        config: the run configuration (JSON values).
        stage_state: what the stage needs to continue besides the weights (fine-tuning:
            ``best_score``, ``best_step``, ``best_metrics``).
        model: the network's state dict.
        optimizer: the optimizer's state dict (rebuilt from tensors + JSON).
        scaler: the GradScaler state, or None.
        rng: random states: ``torch`` (ByteTensor), ``cuda`` (list), ``numpy`` (tuple), ``python`` (tuple).
    """

    path: Path
    step: int
    epoch: float
    stage: str
    info: ModelInfo
    config: dict[str, Any] = field(default_factory=dict)
    stage_state: dict[str, Any] = field(default_factory=dict)
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> UNetConfig:
        """The network's :class:`UNetConfig` (that of :attr:`info`)."""
        return self.info.architecture


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.safetensors"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_stale_temporaries(run_dir: str | Path) -> int:
    """Delete temporary files a killed run left in the checkpoint folder; returns how many."""
    folder = checkpoint_dir(run_dir)
    removed = 0
    if folder.is_dir():
        for path in folder.glob(".step_*.tmp*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# ---------------------------------------------------------------------------------- RNG states
def _capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    return tensors, meta


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back the random states of :attr:`TrainingState.rng` (missing entries are left as they are)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        states = rng["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "python" in rng:
        random.setstate(rng["python"])


# ---------------------------------------------------------------------------------- optimizer state
def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    structure: dict[str, Any] = {"param_groups": [], "state": {}}
    for group in state["param_groups"]:
        structure["param_groups"].append(
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
        )
    for pid, entries in state["state"].items():
        described = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                name = f"optim.{pid}.{key}"
                tensors[name] = value.detach().to("cpu").contiguous()
                described[key] = {"tensor": name}
            elif isinstance(value, (bool, int, float)) or value is None:
                described[key] = {"value": value}
            else:
                raise TypeError(f"optimizer state entry {key!r} of type {type(value).__name__} cannot be saved.")
        structure["state"][str(pid)] = described
    return tensors, structure


def _unflatten_optimizer(structure: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()}
        for group in structure["param_groups"]
    ]
    state: dict[int, dict[str, Any]] = {}
    for pid, entries in structure["state"].items():
        state[int(pid)] = {
            key: tensors[desc["tensor"]] if "tensor" in desc else desc["value"] for key, desc in entries.items()
        }
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------- save / load
def save_checkpoint(
    run_dir: str | Path,
    *,
    step: int,
    epoch: float,
    stage: str,
    model: nn.Module,
    model_info: ModelInfo,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    config: dict[str, Any] | None = None,
    stage_state: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a training-state checkpoint atomically and delete all but the last ``keep``.

    Args:
        run_dir: the run folder (the file goes to ``<run_dir>/checkpoints/``).
        step: steps completed.
        epoch: epochs completed.
        stage: "pretrain" or "finetune".
        model: the network (a DistributedDataParallel wrapper is unwrapped).
        model_info: the metadata of the model the run would export now; its architecture must be
            the network's.
        optimizer: its optimizer. By default, none.
        scaler: a ``torch.amp.GradScaler`` (fp16 training). By default, none.
        config: the run configuration as JSON values.
        stage_state: what the stage needs to continue, as JSON values. By default, nothing.
        keep: how many checkpoints to keep (>= 1). By default, 2.

    Returns:
        The checkpoint path.

    Raises:
        ValueError: ``model_info.architecture`` is not the network's configuration.
    """
    from safetensors.torch import save_file

    net = unwrap(model)
    if model_info.architecture != net.config:
        raise ValueError("model_info.architecture differs from the network's configuration.")
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    optim_structure = None
    if optimizer is not None:
        optim_tensors, optim_structure = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
    rng_tensors, rng_meta = _capture_rng()
    tensors.update(rng_tensors)
    meta = {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "step": int(step),
        "epoch": float(epoch),
        "model_info": model_info.to_dict(),
        "config": config or {},
        "stage_state": stage_state or {},
        "optimizer": optim_structure,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_meta,
    }
    path = checkpoint_path(run_dir, step)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    for _, old in list_checkpoints(run_dir)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON part of a checkpoint (cheap: no tensors are read).

    Raises:
        TrainingInputError: not a napari-genselfdiff checkpoint, or unreadable.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise TrainingInputError(f"{path}: cannot read this checkpoint ({exc}); it may be truncated.") from exc
    if raw is None:
        raise TrainingInputError(f"{path}: not a napari-genselfdiff training checkpoint.")
    meta = json.loads(raw)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise TrainingInputError(
            f"{path}: checkpoint format {meta.get('format_version')} is newer than this version "
            f"understands ({FORMAT_VERSION}); update napari-genselfdiff."
        )
    return meta


def _v1_model_info(meta: dict[str, Any], path: Path) -> ModelInfo:
    """The ModelInfo of a format-1 checkpoint, from its architecture and stage extras: pretraining
    stored the diffusion settings, normalisation and patch size; fine-tuning the class names (with
    the default colours, as fine-tuning gave them), normalisation and patch size. Its provenance
    names the stage only."""
    extra = meta.get("extra") or {}
    values: dict[str, Any] = {}
    if "normalization" in extra:
        values["normalization"] = Normalization.from_dict(extra["normalization"])
    if "patch_size" in extra:
        values["patch_size"] = int(extra["patch_size"])
    return ModelInfo(
        architecture=UNetConfig.from_dict(meta["architecture"]),
        classes=default_classes(list(extra["classes"])) if extra.get("classes") else [],
        diffusion=extra.get("diffusion"),
        provenance={"stage": meta.get("stage")},
        path=path,
        **values,
    )


def checkpoint_model_info(meta: dict[str, Any], path: Path) -> ModelInfo:
    """The :class:`ModelInfo` of a checkpoint's metadata (:func:`read_checkpoint_metadata`), of either format.

    Raises:
        TrainingInputError: the metadata is incomplete or malformed.
    """
    try:
        if "model_info" in meta:
            return ModelInfo.from_dict(meta["model_info"], path=path)
        return _v1_model_info(meta, path)
    except (ModelFileError, KeyError, TypeError, ValueError) as exc:
        raise TrainingInputError(f"{path}: the checkpoint's model metadata is unusable ({exc}).") from exc


def load_checkpoint(path: str | Path) -> TrainingState:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU); format-1
    checkpoints too (see the module docstring).

    Raises:
        TrainingInputError: not a checkpoint, unreadable, or of a newer format.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_checkpoint_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise TrainingInputError(f"{path}: cannot read this checkpoint ({exc}); it may be truncated.") from exc
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer = _unflatten_optimizer(meta["optimizer"], tensors) if meta.get("optimizer") else None
    rng: dict[str, Any] = {}
    if "rng.torch" in tensors:
        rng["torch"] = tensors["rng.torch"]
    cuda = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng.cuda."))
    if cuda:
        rng["cuda"] = [v for _, v in cuda]
    meta_rng = meta.get("rng") or {}
    if "rng.numpy" in tensors and "numpy" in meta_rng:
        n = meta_rng["numpy"]
        rng["numpy"] = (n["kind"], tensors["rng.numpy"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    if "python" in meta_rng:
        p = meta_rng["python"]
        rng["python"] = (p["version"], tuple(p["state"]), p["gauss_next"])
    if "stage_state" in meta:
        stage_state = dict(meta["stage_state"] or {})
    else:  # format 1: the best score sat in "extra" beside the metadata
        stage_state = {k: v for k, v in (meta.get("extra") or {}).items() if k not in _V1_METADATA}
    return TrainingState(
        path=path,
        step=int(meta["step"]),
        epoch=float(meta.get("epoch", 0.0)),
        stage=str(meta.get("stage", "")),
        info=checkpoint_model_info(meta, path),
        config=meta.get("config") or {},
        stage_state=stage_state,
        model=model,
        optimizer=optimizer,
        scaler=meta.get("scaler"),
        rng=rng,
    )


def _describe(arch: UNetConfig) -> str:
    return (
        f"widths {'-'.join(map(str, arch.widths))}, {arch.blocks_per_level} blocks/level, "
        f"{arch.head} head ({arch.out_channels} channels)"
        + ("" if arch.level_attention else ", bottleneck attention only")
    )


def check_compatible(state: TrainingState, *, stage: str, architecture: UNetConfig) -> None:
    """Refuse to resume a checkpoint of another stage or architecture.

    Raises:
        TrainingInputError: the message names both architectures and what to do.
    """
    if state.stage != stage:
        raise TrainingInputError(
            f"{state.path.parent.parent}: this run folder holds a {state.stage} run, not a {stage} run; "
            "give another --out folder."
        )
    if state.architecture != architecture:
        raise TrainingInputError(
            f"cannot resume from {state.path}: it was trained with another architecture "
            f"({_describe(state.architecture)}) than this run asks for ({_describe(architecture)}). "
            "Resume with the same --arch/--width (and classes), or start a new run in another --out folder."
        )


def checkpoint_network(path: str | Path) -> tuple[AttentionUNet, ModelInfo]:
    """The network a checkpoint holds, in evaluation mode, and the :class:`ModelInfo` of the model the
    run would export at its step.

    Raises:
        TrainingInputError: not a checkpoint, unreadable.
    """
    state = load_checkpoint(path)
    model = AttentionUNet(state.info.architecture)
    model.load_state_dict(state.model)
    return model.eval(), state.info


def export_checkpoint_model(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the model a run would export at a checkpoint's step as a model file (safetensors + JSON),
    so a model can be used while its run goes on ("Use the model so far" in the widget). ``out`` is
    written atomically and read back.

    Raises:
        TrainingInputError: not a checkpoint, unreadable.
    """
    from .run import save_trained_model

    return save_trained_model(Path(out), *checkpoint_network(checkpoint))
