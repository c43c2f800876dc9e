"""Tiled, memory-bounded inference: one forward pass per tile (no sampling, no ensemble)."""

from .device import Precision, choose_device, choose_precision
from .predict import InferenceSettings, SegmentationResult, segment, segment_progressive
from .tiling import TilePlan, plan_tiles

__all__ = [
    "InferenceSettings",
    "Precision",
    "SegmentationResult",
    "TilePlan",
    "choose_device",
    "choose_precision",
    "plan_tiles",
    "segment",
    "segment_progressive",
]
