"""Architecture configuration: one dataclass, stored verbatim in every model file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..errors import ModelFileError

#: Normalisation layers a network can use (see :func:`.layers.make_norm`).
NORMS = ("group", "batch")


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild :class:`AttentionUNet` (a model file stores it as JSON).

    Args:
        widths: channels of the 4 (or more) resolution levels. By default 64-128-256-512 as in the paper.
        blocks_per_level: residual blocks per level on each path. By default 2 (the paper).
        in_channels: image channels. By default 3 (RGB).
        out_channels: channels of the head: 3 for the noise head, N for N classes.
        head: "noise" (diffusion pretraining, epsilon prediction) or "classes" (segmentation logits).
        groups: GroupNorm groups. By default 8 (the paper's code).
        norm: "group" (GroupNorm, the paper) or "batch" (BatchNorm: cheaper on a CPU, and folded into
            the convolutions at inference). By default "group".
        attention_heads / attention_dim_head: linear attention at every level, full softmax attention
            at the bottleneck.
        level_attention: use linear attention at every level (the paper). False drops it everywhere
            except the bottleneck (a faster variant; benchmarks say what it costs).
        stem_stride: 1 (the paper: the first level works at full resolution) or 2: the 7x7 stem
            convolution halves the image, every level works at half resolution, and a transposed
            convolution brings the features back to full resolution, where one 3x3 convolution sees
            them together with the input image before the head. About 4 times fewer operations per
            pixel; the output is still one value per input pixel.
        segment_timestep: the timestep index at which a class-head network is called when no t is
            given (segmentation, fine-tuning, every front end). 0 is the paper's "t = 0"; a small t
            (e.g. 50) is the input scale a diffusion-pretrained backbone saw with a little noise.
            Stored in the model file so that inference uses the t the network was trained at;
            written only when it is not 0, so older readers still open ordinary model files.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks_per_level: int = 2
    in_channels: int = 3
    out_channels: int = 3
    head: str = "noise"
    groups: int = 8
    norm: str = "group"
    attention_heads: int = 4
    attention_dim_head: int = 32
    level_attention: bool = True
    stem_stride: int = 1
    segment_timestep: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) < 2:
            raise ValueError("widths needs at least two levels, e.g. (32, 64, 128, 256).")
        for w in self.widths:
            if w % self.groups:
                raise ValueError(f"every width must be divisible by groups={self.groups}; got {w}.")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, not {self.stem_stride!r}.")
        if isinstance(self.segment_timestep, bool) or int(self.segment_timestep) != self.segment_timestep \
                or self.segment_timestep < 0:
            raise ValueError(f"segment_timestep must be an integer >= 0, not {self.segment_timestep!r}.")
        object.__setattr__(self, "segment_timestep", int(self.segment_timestep))
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {self.norm!r}.")
        if self.head not in ("noise", "classes"):
            raise ValueError(f"head must be 'noise' or 'classes', not {self.head!r}.")
        if self.head == "classes" and self.out_channels < 2:
            raise ValueError("a class head needs at least 2 classes (background + one).")

    @property
    def downsample_factor(self) -> int:
        """Input sides must be multiples of this (2 ** (levels - 1))."""
        return 2 ** (len(self.widths) - 1) * self.stem_stride

    def with_head(self, head: str, out_channels: int) -> "UNetConfig":
        """The same backbone with another head."""
        values = asdict(self)
        values.update(head=head, out_channels=out_channels)
        return UNetConfig(**values)

    def with_segment_timestep(self, timestep: int) -> "UNetConfig":
        """The same network called at another timestep when no t is given."""
        return replace(self, segment_timestep=timestep)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["widths"] = list(self.widths)
        if not values["segment_timestep"]:
            del values["segment_timestep"]  # the default; older versions read the file unchanged
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "UNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ModelFileError(
                f"the architecture in this model file has fields this version does not know: "
                f"{sorted(unknown)}. Update napari-genselfdiff."
            )
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"the architecture in this model file is invalid: {exc}") from exc


#: Named sizes. "paper" is the paper's network (43.9 M parameters; called "default" before, see
#: PRESET_ALIASES); "small" is the CPU-friendly one (about 1/4 the width); "nuclei" is the bundled
#: nucleus model's network and the training default (BatchNorm, stride-2 stem, attention only at the
#: bottleneck: about 4x fewer operations per pixel than "tiny"; docs/results.md has the measurements).
PRESETS: dict[str, UNetConfig] = {
    "nuclei": UNetConfig(widths=(24, 48, 96, 192), blocks_per_level=1, norm="batch", stem_stride=2,
                         level_attention=False, attention_dim_head=16),
    "paper": UNetConfig(widths=(64, 128, 256, 512)),
    "small": UNetConfig(widths=(32, 64, 128, 256)),
    "tiny": UNetConfig(widths=(16, 32, 64, 128), attention_dim_head=16),
}

#: Former preset names, still read from old run folders and config files: "default" was the paper's
#: network (renamed "paper", since "default" also named the bundled model and the --arch default).
PRESET_ALIASES: dict[str, str] = {"default": "paper"}
