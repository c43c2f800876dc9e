"""Segment a list of images: THE loop that ``genselfdiff segment``/``run`` and the napari widget share.

:func:`segment_images` reads each image (lazily, when it is given as a loader), segments it with
:func:`.predict.segment_progressive` (or :func:`.uncertainty.segment_with_uncertainty`), and yields
plain dicts: progress after every tile batch, then one result or one error per image. A bad image is
reported and the others go on. The front ends only show the events: the command line writes files
and draws a tqdm bar, the widget adds layers and moves its progress bar.

Cancelling: stop iterating and ``close()`` the generator (napari's ``worker.quit()`` does that
between two events); images finished before that have had their result events.

:func:`load_segmentation_model` is the command line's way to a model on a device, refusing
pretraining (noise) models. No Qt, no napari.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

from ..errors import ImageInputError
from ..progress import Returning
from .resolution import ResolutionError

#: An image to segment: ``(name, image)``, the image an array (numpy, dask, zarr, memmap) or a
#: function of no arguments that returns one (called when its turn comes, so a long list of files is
#: never in memory at once, and a file that cannot be read is that image's error); a third element,
#: when present, is the resolution the file or layer records (see :func:`segment_images`).
ImageToSegment = tuple


def load_segmentation_model(model: str, device_name: str):
    """Choose the device and load a class-head model onto it (a bundled model's name or a path, through
    THE resolver, :func:`..model_files.resolve_model`).

    Returns:
        (network, info, device).

    Raises:
        ModelFileError: no such bundled model; a missing, corrupt or pickled file; a pretraining
            (noise) model (the message says what to do).
        ValueError: the device is not available (from :func:`.device.choose_device`).
    """
    from ..model_files import resolve_model
    from .device import choose_device

    device = choose_device(device_name)
    network, info = resolve_model(model, device=device)
    return network, info, device


def segment_images(
    network,
    info,
    images: Sequence[ImageToSegment],
    settings=None,
    uncertainty: bool = False,
    *,
    errors: tuple[type[BaseException], ...] = (ImageInputError, ResolutionError),
    mpp=None,
    mpp_detail: str = "given",
    estimate: bool = True,
) -> Generator[dict, None, int]:
    """Segment each ``(name, image)`` of ``images`` in turn; a generator of plain-dict events.

    Every image goes through the one resolution path (``inference/resolution.py``): segmented at the
    model's resolution and mapped back to its own pixels.

    Args:
        network, info: a class-head model and its metadata (see :func:`load_segmentation_model`).
        images: ``(name, array or loader)`` pairs (see :data:`ImageToSegment`), or triples
            ``(name, array or loader, recorded)`` where ``recorded`` is what the file or layer records:
            a :class:`~..io.resolution.RecordedResolution`, ``(mpp, detail)``, an mpp, or None.
        settings: :class:`.predict.InferenceSettings` (None: the defaults).
        uncertainty: also compute each image's uncertainty map (the entropy of its class
            probabilities).
        errors: the exception types that fail only the image at hand (reported by an error event);
            any other exception ends the whole run. The widget keeps the default (images the core
            refuses); the command line adds unreadable files, write and memory errors.
        mpp: the images' resolution as the user gave it (overrides what they record; checked by
            :func:`.resolution.check_mpp`: a bad value fails each image with its message);
            ``mpp_detail`` says where it was given ("--mpp", "Resolution field").
        estimate: estimate the resolution of images that record none (models that can); False
            assumes the model's.

    Yields:
        ``{"kind": "start", "index", "count", "name"}`` before an image is read;
        ``{"kind": "progress", "index", "count", "name", "stage", "done", "total"}`` after each tile
        batch (stage "tiles"), while estimating (stage "estimating resolution") and before nucleus
        splitting (stage "instances");
        ``{"kind": "result", "index", "count", "name", "image", "result", "resolution", "seconds"}`` per
        image segmented (``result`` a :class:`.predict.SegmentationResult` in the image's pixels, its
        first note the resolution used; ``resolution`` the :class:`.resolution.Resolution`; ``image``
        the array segmented; ``seconds`` from reading to result; with ``uncertainty`` also
        ``"uncertainty"``: the (H, W) map); ``{"kind": "error", "index", "count", "name", "message",
        "error"}`` per image that failed with one of ``errors`` (``message`` is ``str(error)``).

    Returns:
        The number of images segmented.
    """
    from .resolution import resolve_and_segment

    images = list(images)
    count = len(images)
    done = 0
    for index, item in enumerate(images):
        name, source = item[0], item[1]
        recorded_mpp, recorded_detail, recorded_notes = _recorded(item[2] if len(item) > 2 else None)
        where = {"index": index, "count": count, "name": name}
        yield {"kind": "start", **where}
        started = time.perf_counter()
        try:
            image = source() if callable(source) else source
            gen = resolve_and_segment(network, info, image, settings, given=mpp, given_detail=mpp_detail,
                                      recorded=recorded_mpp, recorded_detail=recorded_detail,
                                      uncertainty=uncertainty, estimate=estimate, name=name)
            result, umap, resolution = yield from _progress(gen, where)
            result.notes[1:1] = [n for n in recorded_notes if n not in result.notes]
        except errors as exc:
            yield {"kind": "error", **where, "message": str(exc), "error": exc}
            continue
        done += 1
        event = {"kind": "result", **where, "image": image, "seconds": time.perf_counter() - started,
                 "resolution": resolution}
        if uncertainty:
            event["uncertainty"] = umap
        yield {**event, "result": result}
    return done


def _recorded(hint) -> tuple[float | None, str, tuple[str, ...]]:
    """(mpp, detail, notes) of what an image records (see :func:`segment_images`)."""
    if hint is None:
        return None, "", ()
    if hasattr(hint, "mpp"):
        return hint.mpp, getattr(hint, "detail", "") or "", tuple(getattr(hint, "notes", ()) or ())
    if isinstance(hint, tuple):
        return (float(hint[0]) if hint[0] else None), str(hint[1] if len(hint) > 1 else ""), ()
    return float(hint), "", ()


def _progress(gen: Generator[dict, None, Any], where: dict) -> Generator[dict, None, Any]:
    """Forward ``gen``'s progress events with the image's place added; return its return value."""
    events = Returning(gen)
    try:
        for event in events:
            yield {"kind": "progress", **where, **event}
        return events.value
    finally:
        gen.close()  # cancelled between two tiles: the image's generator ends too


__all__ = ["ImageToSegment", "load_segmentation_model", "segment_images"]
