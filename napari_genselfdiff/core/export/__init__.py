"""Export masks for other tools: TIFF/PNG label images, instance masks, classes.json, QuPath GeoJSON."""

from .geojson import OBJECT_TYPES, labels_to_features, labels_to_geojson, mask_geometry, rasterize_geometry, trace_rings
from .masks import (
    CLASSES_FILE,
    FORMATS,
    ExportError,
    ExportItem,
    ExportReport,
    OverwriteRefused,
    check_writable,
    classes_to_json,
    export_annotation_set,
    export_items,
    read_classes_json,
    safe_stem,
)

__all__ = [
    "CLASSES_FILE",
    "FORMATS",
    "OBJECT_TYPES",
    "ExportError",
    "ExportItem",
    "ExportReport",
    "OverwriteRefused",
    "check_writable",
    "classes_to_json",
    "export_annotation_set",
    "export_items",
    "labels_to_features",
    "labels_to_geojson",
    "mask_geometry",
    "rasterize_geometry",
    "read_classes_json",
    "safe_stem",
    "trace_rings",
]
