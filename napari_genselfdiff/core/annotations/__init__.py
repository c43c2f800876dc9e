"""The annotation set: corrected (image, labels) snapshots kept in a folder, safe against crashes.

See :mod:`.store` for the folder layout and the crash-safety rules.
"""

from .store import INDEX_NAME, AnnotationPair, AnnotationSet, AnnotationSetError

__all__ = ["INDEX_NAME", "AnnotationPair", "AnnotationSet", "AnnotationSetError"]
