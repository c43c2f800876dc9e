"""napari writer: a Labels layer -> label TIFF or PNG (and classes.json beside it).

napari's save dialog has already asked before replacing the chosen file, so that file is replaced;
``classes.json`` (the class names and colours, which our reader uses to reopen ``*_labels`` files
with their classes) is written beside it only when absent or identical, never replaced silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for Labels layers (.tif, .tiff, .png).

    Returns:
        The files written (the mask, and classes.json when it was written).
    """
    from ..core.export import CLASSES_FILE, classes_to_json
    from ..core.io.atomic import write_text_atomic
    from ..core.io.write import write_labels_png, write_labels_tiff
    from ..core.model_files.classes import ClassInfo
    from ._layers import META_KEY

    target = Path(path)
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(
            f"napari-genselfdiff writes 2-D label images; this layer has shape {array.shape}. "
            "Save it with napari's built-in writer instead."
        )
    suffix = target.suffix.lower()
    if suffix in (".tif", ".tiff"):
        written = [write_labels_tiff(target, array, overwrite=True)]
    elif suffix == ".png":
        written = [write_labels_png(target, array, overwrite=True)]
    else:
        raise ValueError(f"{target}: choose a .tif, .tiff or .png file name.")
    records = ((meta.get("metadata") or {}).get(META_KEY) or {}).get("classes")
    if records:
        text = classes_to_json([ClassInfo.from_dict(c) for c in records])
        classes_path = target.with_name(CLASSES_FILE)
        if not classes_path.exists():
            written.append(write_text_atomic(classes_path, text, overwrite=False))
        elif classes_path.read_text(encoding="utf-8") != text:
            from napari.utils.notifications import show_warning

            show_warning(
                f"{classes_path} exists with other classes and was left as it is; the class names and "
                f"colours of '{meta.get('name', target.stem)}' were not saved beside {target.name}."
            )
    return [str(p) for p in written]
