"""Segmentation classes: id, name and display colour, as stored in model files and classes.json."""

from __future__ import annotations

from dataclasses import dataclass

from ..defaults import class_colour
from ..errors import ModelFileError


@dataclass(frozen=True)
class ClassInfo:
    """One class: its label value, a name and an RGBA colour (0-255). Class 0 is background."""

    id: int
    name: str
    color: tuple[int, int, int, int]

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "color": list(self.color)}

    @classmethod
    def from_dict(cls, values: dict) -> "ClassInfo":
        try:
            color = tuple(int(c) for c in values["color"])
            if len(color) == 3:
                color = (*color, 255)
            if len(color) != 4 or not all(0 <= c <= 255 for c in color):
                raise ValueError(f"colour {values['color']} is not RGB(A) in 0-255")
            return cls(id=int(values["id"]), name=str(values["name"]), color=color)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"invalid class record {values!r}: {exc}") from exc

    @property
    def color_float(self) -> tuple[float, float, float, float]:
        return tuple(c / 255.0 for c in self.color)  # type: ignore[return-value]


def default_classes(names: list[str]) -> list[ClassInfo]:
    """Classes for the given names (the first is background), with the default palette."""
    return [ClassInfo(i, n, class_colour(i)) for i, n in enumerate(names)]


def validate_classes(classes: list[ClassInfo], out_channels: int) -> None:
    ids = [c.id for c in classes]
    if ids != list(range(out_channels)):
        raise ModelFileError(
            f"the model has {out_channels} output classes but its class list has ids {ids}; "
            f"expected 0..{out_channels - 1}."
        )
