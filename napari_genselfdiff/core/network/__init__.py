"""The paper's attention U-Net with a timestep embedding, its configuration and its heads."""

from .config import PRESETS, UNetConfig
from .unet import AttentionUNet

__all__ = ["AttentionUNet", "UNetConfig", "PRESETS"]
