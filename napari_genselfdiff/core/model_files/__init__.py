"""Model files: safetensors weights with JSON metadata (architecture, classes, normalisation, provenance)."""

from .classes import ClassInfo, default_classes
from .resolve import check_segmentation_model, pretraining_model_message, resolve_model
from .schema import SCHEMA_NAME, SCHEMA_VERSION, ModelInfo
from .store import (
    bundled_model_path,
    bundled_models,
    load_model,
    read_model_info,
    resolve_model_path,
    save_model,
)

__all__ = [
    "ClassInfo",
    "ModelInfo",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "bundled_model_path",
    "bundled_models",
    "check_segmentation_model",
    "default_classes",
    "load_model",
    "pretraining_model_message",
    "read_model_info",
    "resolve_model",
    "resolve_model_path",
    "save_model",
]
