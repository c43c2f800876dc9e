"""The GenSelfDiff attention U-Net: one backbone, a noise head for pretraining, a class head after.

Layout (L levels of widths w_0..w_{L-1}):

    stem 7x7 conv (in -> w_0)
    encoder level i: blocks_per_level ResBlocks (+ linear attention); its output is skip i;
                     a 4x4 stride-2 conv down between levels
    bottleneck: ResBlock, full softmax attention, ResBlock
    decoder level i (deepest first): concat skip i, ResBlocks (+ linear attention);
                     a 4x4 transposed conv up between levels
    final: concat the stem output, a ResBlock, then the 1x1 head
           (stem_stride 2: the stem halves the image; before the head, a transposed conv back to full
           resolution, concat the input image, a 3x3 conv + norm + SiLU)

Every encoder level's output feeds the decoder (the paper's code dropped the first-level skip).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFileError
from .config import UNetConfig
from .layers import Downsample, FullAttention, LinearAttention, ResBlock, TimeEmbedding, Upsample, make_norm

HEAD_PREFIX = "head."


class _Level(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: UNetConfig, temb: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(cin if i == 0 else cout, cout, temb, cfg.groups, cfg.norm) for i in range(cfg.blocks_per_level)
        )
        self.attention = (
            LinearAttention(cout, cfg.attention_heads, cfg.attention_dim_head)
            if cfg.level_attention
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, temb)
        return self.attention(x)


class AttentionUNet(nn.Module):
    """Attention U-Net with a sinusoidal timestep embedding (GenSelfDiff-HIS, section III).

    Args:
        config: the architecture (:class:`UNetConfig`).

    Call ``model(x, t)`` with x of shape [B, in_channels, H, W] (H, W multiples of
    ``config.downsample_factor``, normalised to [-1, 1]) and integer timesteps t of shape [B]; t may be
    omitted for segmentation: the network is then called at ``config.segment_timestep`` (0, the paper's
    t = 0, unless the model was fine-tuned at another t). Returns [B, out_channels, H, W]:
    predicted noise for the "noise" head, class logits for the "classes" head.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        #: keep batch-norm statistics fixed while training (see :meth:`train`); not saved with the weights
        self.freeze_norm_statistics = False
        w = config.widths
        temb = 4 * w[0]
        self.time_embedding = TimeEmbedding(w[0])
        self.stem = nn.Conv2d(config.in_channels, w[0], 7, padding=3, stride=config.stem_stride)

        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        for i, width in enumerate(w):
            self.encoder.append(_Level(w[0] if i == 0 else w[i - 1], width, config, temb))
            if i < len(w) - 1:
                self.down.append(Downsample(width, width))

        self.mid1 = ResBlock(w[-1], w[-1], temb, config.groups, config.norm)
        self.mid_attention = FullAttention(w[-1], config.attention_heads, config.attention_dim_head)
        self.mid2 = ResBlock(w[-1], w[-1], temb, config.groups, config.norm)

        self.decoder = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in reversed(range(len(w))):
            self.decoder.append(_Level(2 * w[i], w[i], config, temb))
            if i > 0:
                self.up.append(Upsample(w[i], w[i - 1]))

        self.final = ResBlock(2 * w[0], w[0], temb, config.groups, config.norm)
        if config.stem_stride > 1:
            # Back to full resolution: the features, upsampled, seen together with the input image.
            self.full_up = Upsample(w[0], w[0])
            self.full_conv = nn.Conv2d(w[0] + config.in_channels, w[0], 3, padding=1)
            self.full_norm = make_norm(config.norm, w[0], config.groups)
        self.head = nn.Conv2d(w[0], config.out_channels, 1)

    def features(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder features before the head: [B, widths[0], H, W] (the one path ``forward`` uses)."""
        factor = self.config.downsample_factor
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"input height and width must be multiples of {factor}; got {tuple(x.shape[-2:])}. "
                "Pad the image (tiled inference does this for you)."
            )
        if t is None:  # segmentation: the timestep the network was fine-tuned at (0 in the paper)
            t = torch.full((x.shape[0],), self.config.segment_timestep, dtype=torch.long, device=x.device)
        temb = self.time_embedding(t)
        stem = self.stem(x)
        h, skips = stem, []
        for i, level in enumerate(self.encoder):
            h = level(h, temb)
            skips.append(h)
            if i < len(self.down):
                h = self.down[i](h)
        h = self.mid2(self.mid_attention(self.mid1(h, temb)), temb)
        for j, level in enumerate(self.decoder):
            h = level(torch.cat([h, skips.pop()], dim=1), temb)
            if j < len(self.up):
                h = self.up[j](h)
        h = self.final(torch.cat([h, stem], dim=1), temb)
        if self.config.stem_stride > 1:
            up = self.full_up(h)
            # the image joins in the features' dtype: under autocast full_conv computes in it anyway, and
            # concatenating bf16 features with the fp32 image first cast the features to fp32 (5 % of a forward)
            h = torch.cat([up, x.to(up.dtype)], dim=1)
            h = F.silu(self.full_norm(self.full_conv(h)))
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, t))

    # ---- heads -------------------------------------------------------------------------------
    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight except the head's."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(HEAD_PREFIX)}

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load every non-head weight from ``state`` (e.g. a pretrained noise model), keeping this head.

        Every key is accounted for: a backbone key missing from ``state``, a key of ``state`` this
        network does not have, or a shape that differs is an error naming the keys, never a layer left
        silently random (the paper's code filtered by prefix and loaded with strict=False).

        Raises:
            ModelFileError: keys or shapes do not match.
        """
        own = self.backbone_state_dict()
        given = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
        missing = sorted(set(own) - set(given))
        unexpected = sorted(set(given) - set(own))
        wrong = sorted(k for k in set(own) & set(given) if own[k].shape != given[k].shape)
        if missing or unexpected or wrong:
            def show(keys: list[str]) -> str:
                return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

            parts = []
            if missing:
                parts.append(f"{len(missing)} missing: {show(missing)}")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
            if wrong:
                parts.append(f"{len(wrong)} with another shape: {show(wrong)}")
            raise ModelFileError(
                "the pretrained weights do not fit this architecture (" + "; ".join(parts) + "). "
                "Use a pretrained model of the same size (widths, blocks, attention)."
            )
        head = {k: v for k, v in self.state_dict().items() if k.startswith(HEAD_PREFIX)}
        self.load_state_dict({**given, **head}, strict=True)

    def train(self, mode: bool = True) -> "AttentionUNet":
        """``nn.Module.train``; with :attr:`freeze_norm_statistics` the batch-norm layers stay in
        evaluation mode (their running statistics are used and kept; their scale and shift still learn)."""
        super().train(mode)
        if mode and self.freeze_norm_statistics:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def with_new_head(self, head: str, out_channels: int) -> "AttentionUNet":
        """A new network with this backbone's weights and a freshly initialised head."""
        model = AttentionUNet(self.config.with_head(head, out_channels))
        model.load_backbone(self.state_dict())
        return model.to(next(self.parameters()).device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


#: model -> (the state it was fused from, the fused copy): see :func:`fused_for_inference`.
_FUSED: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()


def _weights_state(model: nn.Module) -> tuple:
    """Where every parameter and buffer lives and how often it was changed in place (torch counts each
    in-place change, e.g. an optimizer step or load_state_dict, in ``_version``)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple((id(t), t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)


def fused_for_inference(model: AttentionUNet) -> AttentionUNet:
    """An evaluation-mode copy with every BatchNorm folded into the convolution before it.

    A BatchNorm at inference is a per-channel affine map; folding it into the preceding convolution's
    weights and bias gives the same output (to float rounding) without a separate pass over the
    feature maps. Networks without BatchNorm (GroupNorm, the paper's) are returned as they are.
    The original model is left untouched (it may still be trained). The copy is kept until the
    model's weights change (a segmentation called image after image copied and fused the network each
    time: 46 ms of a 0.8 s job).
    """
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model.eval()
    state = _weights_state(model)
    cached = _FUSED.get(model)
    if cached is not None and cached[0] == state:
        return cached[1]
    fused = _fuse(model)
    _FUSED[model] = (state, fused)
    return fused


def _fuse(model: AttentionUNet) -> AttentionUNet:
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    pairs = [("conv1", "norm1"), ("conv2", "norm2"), ("full_conv", "full_norm")]
    for module in fused.modules():
        for conv_name, norm_name in pairs:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
    return fused
