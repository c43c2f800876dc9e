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

from ..errors import TrainingInputError
from ..network.config import UNetConfig


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


def total_steps(steps: int | None, epochs: float | None, steps_per_epoch: int, default_epochs: float) -> int:
    """Steps of a run: ``steps`` when given, else ``epochs`` (or the default) times the epoch length."""
    if steps is not None:
        return int(steps)
    return max(1, int(round((epochs if epochs is not None else default_epochs) * steps_per_epoch)))
