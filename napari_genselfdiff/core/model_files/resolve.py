"""THE way every front end gets a model: a name or a path -> a checked network and its metadata.

The command line (images and slides), the Dask slide tasks, the Segment panel and the slide widget
all call :func:`resolve_model`; names of bundled models ("default", "nuclei", any
``napari_genselfdiff/models/<name>.safetensors``, see :func:`.store.bundled_models`) and file paths
are understood the same way everywhere, and a pretraining (noise) model is refused with one message
(:func:`check_segmentation_model`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileError
from .store import load_model, resolve_model_path


def pretraining_model_message(where: str | Path | None = None) -> str:
    """THE sentence refusing to segment with a pretraining (noise) model (``where``: its file)."""
    what = f"{where} is" if where else "this is"
    return (f"{what} a pretraining (noise) model: it cannot segment. Fine-tune it on corrected images first "
            "(genselfdiff finetune, or the Train tab in napari), or choose a segmentation model.")


def check_segmentation_model(info, where: str | Path | None = None) -> None:
    """Check that ``info`` (a :class:`.schema.ModelInfo`) describes a model that segments: a class
    head that lists its classes.

    Raises:
        ModelFileError: a pretraining (noise) model, or a class head without classes.
    """
    where = where if where is not None else info.path
    if info.head != "classes":
        raise ModelFileError(pretraining_model_message(where))
    if not info.classes:
        raise ModelFileError(f"{where or 'this model'}: a class head without classes in its metadata; "
                             "the file was edited or written by another program.")


def resolve_model(name_or_path: str | Path, device="cpu", *, segmentation: bool = True):
    """Resolve, load and check a model.

    Args:
        name_or_path: a bundled model's name ("default", "nuclei", ...) or a .safetensors file.
        device: where the network goes ("cpu", a ``torch.device``, ...).
        segmentation: refuse models that cannot segment (:func:`check_segmentation_model`); False
            accepts pretraining models too (a start for fine-tuning).

    Returns:
        (network, info): the network in eval mode on ``device`` and its :class:`.schema.ModelInfo`
        (``info.path`` is the file).

    Raises:
        ModelFileError: no such bundled model or file; a corrupt, pickled or foreign file; a model
            that cannot segment when ``segmentation`` is asked.
    """
    path = resolve_model_path(name_or_path)
    if segmentation:  # refuse before reading the weights
        from .store import read_model_info

        check_segmentation_model(read_model_info(path), path)
    return load_model(path, device=device)


__all__ = ["check_segmentation_model", "pretraining_model_message", "resolve_model"]
