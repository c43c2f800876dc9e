"""The annotation set: corrected (image, labels) snapshots kept in a folder, safe against crashes.

See :mod:`.store` for the folder layout and the crash-safety rules.
"""

from .instances_sync import SyncReport, sync_instances
from .regions import UNKNOWN_LABEL, check_regions, regions_mask
from .store import INDEX_NAME, AnnotationPair, AnnotationSet, AnnotationSetError

__all__ = [
    "INDEX_NAME",
    "UNKNOWN_LABEL",
    "AnnotationPair",
    "AnnotationSet",
    "AnnotationSetError",
    "SyncReport",
    "check_regions",
    "regions_mask",
    "sync_instances",
]
