"""Choose the network for a run: a preset name, a base width, or a full :class:`UNetConfig`."""

from __future__ import annotations

from typing import Any

from ..defaults import TRAINING_ARCH
from ..errors import TrainingInputError
from ..network.config import PRESET_ALIASES, PRESETS, UNetConfig


def resolve_architecture(arch: str | UNetConfig | dict[str, Any] = TRAINING_ARCH, width: int | None = None) -> UNetConfig:
    """The backbone configuration of a run (its head is set by the stage).

    Args:
        arch: a preset name ("nuclei" the bundled model's network, "paper" 64-512 as in the paper,
            "small" 32-256, "tiny" 16-128; the former name "default" reads as "paper", see
            :data:`PRESET_ALIASES`), a :class:`UNetConfig`, or its dict (as in a JSON config file).
        width: base width W; the widths become (W, 2W, 4W, 8W, ...) with the other settings of ``arch``.
            By default, the widths of ``arch``.

    Raises:
        TrainingInputError: unknown preset, or an invalid configuration.
    """
    if isinstance(arch, UNetConfig):
        config = arch
    elif isinstance(arch, dict):
        try:
            config = UNetConfig(**arch)
        except (TypeError, ValueError) as exc:
            raise TrainingInputError(f"invalid architecture {arch}: {exc}") from exc
    elif arch in PRESETS:
        config = PRESETS[arch]
    elif arch in PRESET_ALIASES:  # an old run folder or config file
        config = PRESETS[PRESET_ALIASES[arch]]
    else:
        raise TrainingInputError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(PRESETS))}.")
    if width is not None:
        values = config.to_dict()
        values["widths"] = [width * 2**i for i in range(len(config.widths))]
        values["attention_dim_head"] = min(config.attention_dim_head, max(8, width))
        try:
            config = UNetConfig(**values)
        except (TypeError, ValueError) as exc:
            raise TrainingInputError(f"--width {width}: {exc}") from exc
    return config
