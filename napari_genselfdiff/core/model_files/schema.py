"""The metadata schema of a model file, version 1.

Stored as JSON under the key ``"genselfdiff"`` of the safetensors header (so weights and metadata
travel as ONE file), and mirrored in a human-readable ``<stem>.json`` beside it::

    {
      "schema": "genselfdiff.model", "schema_version": 1,
      "architecture": {...UNetConfig...},          # rebuilds the network
      "head": "noise" | "classes",
      "classes": [{"id": 0, "name": "background", "color": [r, g, b, a]}, ...],   # [] for noise
      "normalization": {"scheme": ..., "mean": [..], "std": [..]},
      "patch_size": 256,                            # training patch side (not the inference tile)
      "diffusion": {...} | null,                    # schedule, T, p2 k and gamma (pretraining)
      "postprocess": {"instances": {...}} | null,   # nucleus splitting defaults
      "provenance": {"data": .., "steps": .., "date": .., "metrics": {..}, "parent": .., "software": ..},
      "card": {...} | null,                         # model card: name, intended use, limits
      "mpp": 0.25,                                  # optional: microns per pixel the network works at
      "input_mpp": 0.62,                            # optional: the training images' own, when not mpp
      "output": "contour"                           # optional: the output kind (absent: "classes")
    }

``output`` (:mod:`..inference.outputs`) says what the class head gives besides class logits: an
instance-aware model's cue (contour class, distance map or HoVer maps) and so how
``postprocess["instances"]`` splits nuclei. Absent means "classes" (every file written before
instance-aware outputs existed), so older files keep working unchanged.

``mpp`` is optional and may be absent (files written before it existed, or models whose training
resolution is unknown); slide segmentation then assumes 0.25 um/px, MoNuSeg's 40x
(``core/inference/slide.py``). It needs no new schema version: readers ignore keys they do not know.

``input_mpp`` is optional too: the resolution of the images a model was trained FROM when it works at
another one (the gland model works at 1.24 um/px on GlaS images of 0.62 um/px, shrunk 2x for context).
An image that records no resolution is assumed to be like those images (``input_mpp``) and resampled to
``mpp``; absent, it is assumed to be at ``mpp`` itself.

A model's **display name** (:attr:`ModelInfo.display_name`) is what lists show instead of the file
name: ``card["name"]`` when the card has one (:func:`.store.save_model` writes one into every model
file it saves), else one derived from the provenance: what the model segments, how and from which
data it was trained, and when, e.g. "nucleus, fine-tuned on 3 corrected images, 30 Nov 11:52".
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import TRAINING_PATCH
from ..errors import ModelFileError
from ..network.config import UNetConfig
from ..normalization import Normalization
from .classes import ClassInfo, validate_classes
from .outputs import network_channels

SCHEMA_NAME = "genselfdiff.model"
SCHEMA_VERSION = 1
METADATA_KEY = "genselfdiff"


@dataclass
class ModelInfo:
    """Everything a model file says about its network, except the weights."""

    architecture: UNetConfig
    classes: list[ClassInfo]
    normalization: Normalization = field(default_factory=Normalization)
    patch_size: int = TRAINING_PATCH
    diffusion: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] | None = None
    mpp: float | None = None
    output: str = "classes"
    input_mpp: float | None = None
    path: Path | None = None
    #: Where ``mpp`` came from when it is not the file's: the option a user overrode it with (never saved).
    mpp_source: str = "model file"

    @property
    def head(self) -> str:
        return self.architecture.head

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def display_name(self) -> str:
        """The name lists show (see the module docstring): the card's "name", else :meth:`derived_name`."""
        name = (self.card or {}).get("name") if isinstance(self.card, dict) else None
        return str(name) if name else self.derived_name()

    def derived_name(self) -> str:
        """What, from which data, when: "nucleus, fine-tuned on 3 corrected images, 30 Nov 11:52"."""
        prov = self.provenance or {}
        stage, data = prov.get("stage"), training_data(prov)
        if self.head == "classes":
            parts = [" + ".join(c.name for c in self.classes if c.id != 0) or "segmentation model"]
            # fine-tuned: from a parent model; a "finetune" run from scratch is plain training
            verb = "fine-tuned" if stage == "finetune" and prov.get("parent") not in (None, "", "scratch") else "trained"
            parts.append(f"{verb} on {data}" if data else (verb if stage else ""))
        else:
            parts = ["pretraining model", f"on {data}" if data else ""]
        parts.append(_short_date(prov.get("date")))
        if prov.get("cancelled"):
            parts.append("stopped early")
        return ", ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "architecture": self.architecture.to_dict(),
            "head": self.architecture.head,
            "classes": [c.to_dict() for c in self.classes],
            "normalization": self.normalization.to_dict(),
            "patch_size": int(self.patch_size),
            "diffusion": self.diffusion,
            "postprocess": self.postprocess,
            "provenance": self.provenance,
            "card": self.card,
            **({"mpp": float(self.mpp)} if self.mpp is not None else {}),
            **({"output": self.output} if self.output != "classes" else {}),
            **({"input_mpp": float(self.input_mpp)} if self.input_mpp is not None else {}),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], path: Path | None = None) -> "ModelInfo":
        where = f"{path}: " if path else ""
        if not isinstance(values, dict) or values.get("schema") != SCHEMA_NAME:
            raise ModelFileError(f"{where}not a napari-genselfdiff model file (no '{SCHEMA_NAME}' metadata).")
        version = values.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise ModelFileError(f"{where}invalid schema_version {version!r}.")
        if version > SCHEMA_VERSION:
            raise ModelFileError(
                f"{where}model file schema version {version} is newer than this napari-genselfdiff "
                f"understands ({SCHEMA_VERSION}). Update napari-genselfdiff."
            )
        try:
            arch = UNetConfig.from_dict(dict(values["architecture"]))
            classes = [ClassInfo.from_dict(c) for c in values.get("classes") or []]
            info = cls(
                architecture=arch,
                classes=classes,
                normalization=Normalization.from_dict(values["normalization"]),
                patch_size=int(values.get("patch_size", TRAINING_PATCH)),
                diffusion=values.get("diffusion"),
                postprocess=values.get("postprocess"),
                provenance=dict(values.get("provenance") or {}),
                card=values.get("card"),
                mpp=float(values["mpp"]) if values.get("mpp") is not None else None,
                output=str(values.get("output") or "classes"),
                input_mpp=float(values["input_mpp"]) if values.get("input_mpp") is not None else None,
                path=path,
            )
        except ModelFileError as exc:
            raise ModelFileError(f"{where}{exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}the metadata is incomplete or malformed ({exc}).") from exc
        info.validate()
        return info

    def validate(self) -> None:
        if self.architecture.head == "classes":
            if self.output == "classes":
                validate_classes(self.classes, self.architecture.out_channels)
            try:
                channels = network_channels(self.output, len(self.classes))
            except ValueError as exc:
                raise ModelFileError(str(exc)) from exc
            validate_classes(self.classes, len(self.classes))
            if channels != self.architecture.out_channels:
                raise ModelFileError(
                    f"the network has {self.architecture.out_channels} output channels but a {self.output!r} "
                    f"output with {len(self.classes)} classes needs {channels}.")
        elif self.classes:
            raise ModelFileError("a noise (pretraining) model must not list segmentation classes.")
        for name, value in (("mpp", self.mpp), ("input_mpp", self.input_mpp)):
            if value is not None and not 0.01 <= value <= 100:
                raise ModelFileError(f"{name} {value} (microns per pixel) is outside 0.01-100.")
        if self.patch_size % self.architecture.downsample_factor:
            raise ModelFileError(
                f"patch_size {self.patch_size} is not a multiple of {self.architecture.downsample_factor}."
            )

    def summary(self) -> str:
        """A few lines for `genselfdiff info` and the widget's model panel."""
        arch = self.architecture
        lines = [
            f"head: {arch.head} ({arch.out_channels} channels)"
            + (f", output {self.output} (instance-aware)" if self.output != "classes" else ""),
            f"architecture: widths {'-'.join(map(str, arch.widths))}, {arch.blocks_per_level} blocks/level, "
            f"attention {'every level + bottleneck' if arch.level_attention else 'bottleneck only'}",
            f"classes: {', '.join(self.class_names) if self.classes else '(none: pretraining model)'}",
            f"patch size: {self.patch_size}",
            (f"resolution: {self.mpp:g} um/px" if self.mpp is not None
             else "resolution: not recorded (slides: 0.25 um/px, 40x, assumed)")
            + (f"; images that record none are taken as {self.input_mpp:g} um/px (its training images')"
               if self.input_mpp is not None else ""),
            f"normalisation: {self.normalization.scheme}",
        ]
        prov = self.provenance
        for key in ("data", "steps", "epochs", "date", "parent", "software"):
            if key in prov and prov[key] not in (None, ""):
                lines.append(f"{key}: {prov[key]}")
        if prov.get("metrics"):
            metrics = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in prov["metrics"].items()
            )
            lines.append(f"metrics: {metrics}")
        return "\n".join(lines)


def training_data(provenance: dict[str, Any]) -> str:
    """The training images of a provenance record in a few words ("3 corrected images", "24 images
    from monuseg/train"), or "" when it does not say."""
    data = provenance.get("data")
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return ""
    train = data.get("train_images")
    count = len(train) if isinstance(train, list) else data.get("images")
    if not isinstance(count, int):
        return ""
    arrays = int(data.get("in_memory_arrays") or 0)
    folders = ["/".join(Path(str(f)).parts[-2:]) or str(f) for f in data.get("folders") or []]
    noun = "image" if count == 1 else "images"
    if arrays and not folders:
        kind = "corrected " if provenance.get("stage") == "finetune" else "open "
        return f"{count} {kind}{noun}"
    if folders:
        return f"{count} {noun} from {', '.join(folders)}"
    return f"{count} {noun}"


def _short_date(value: Any) -> str:
    """An ISO date as "30 Nov 11:52" in local time (with the year when it is not this year)."""
    if not value:
        return ""
    try:
        when = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone()
    year = "" if when.year == datetime.datetime.now().year else f" {when.year}"
    return f"{when.day} {when:%b}{year} {when:%H:%M}"
