"""Model files: safetensors weights with JSON metadata (architecture, classes, normalisation, provenance)."""

from .classes import ClassInfo, default_classes
from .schema import SCHEMA_NAME, SCHEMA_VERSION, ModelInfo
from .store import bundled_model_path, load_model, read_model_info, resolve_model_path, save_model

__all__ = [
    "ClassInfo",
    "ModelInfo",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "bundled_model_path",
    "default_classes",
    "load_model",
    "read_model_info",
    "resolve_model_path",
    "save_model",
]
