"""``genselfdiff segment``: segment image files with a model file and write label TIFFs.

For every image ``<stem>.<ext>`` it writes, into ``--out``:

- ``<stem>_labels.tif``: uint8 class ids (0 = background), deflate-compressed (ImageJ, QuPath,
  scikit-image and tifffile read it);
- ``<stem>_instances.tif`` with ``--instances``: nucleus instance ids, uint16 (uint32 above 65535);
- ``<stem>_overlay.png`` with ``--overlay``: the outlines of the segmented objects on the image.

Whole slides (.svs, .ndpi, .scn, .bif, pyramidal or very large TIFF) take another path
(``segment_slides.py``): ``<stem>_labels.zarr`` and, with ``--instances``, ``<stem>_nuclei.geojson``;
``--workers N`` / ``--scheduler ADDRESS`` run them on a Dask cluster.

Each file is written atomically. A bad input (unreadable, corrupt, a 3-D stack, ...) is reported in
one line and the other images are still segmented; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import GenSelfDiffError
from .common import (
    CommandError,
    add_command,
    add_inference_arguments,
    add_model_argument,
    expand_inputs,
    inference_settings,
)


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "segment", run,
        help="segment image files and write label TIFFs",
        description=(
            "Segment H&E images (.tif .tiff .png .jpg .jpeg .bmp, or folders of them) with a model file "
            "and write <stem>_labels.tif (class ids) per image into --out. Whole slides (.svs .ndpi .scn "
            ".bif, pyramidal or very large TIFF) are segmented on tissue only, at the model's resolution, "
            "into <stem>_labels.zarr (OME-Zarr) and, with --instances, <stem>_nuclei.geojson (QuPath)."
        ),
        example="genselfdiff segment slide1.tif slide2.png --model nuclei.safetensors --out results/",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of image files")
    add_model_argument(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the outputs (created)")
    add_inference_arguments(parser)
    parser.add_argument(
        "--instances", action="store_true",
        help="also split the foreground into nucleus instances and write <stem>_instances.tif",
    )
    parser.add_argument(
        "--overlay", action="store_true", help="also write <stem>_overlay.png: object outlines on the image"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    from .segment_slides import add_slide_arguments

    add_slide_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return segment_files(
        args.images,
        model=args.model,
        out_dir=args.out,
        args=args,
        instances=args.instances,
        write_instances=args.instances,
        overlay=args.overlay,
        overwrite=args.overwrite,
    )


@dataclass
class _Outputs:
    labels: Path
    instances: Path | None
    overlay: Path | None

    def all(self) -> list[Path]:
        return [p for p in (self.labels, self.instances, self.overlay) if p is not None]


def load_for_segmentation(model: str, device_name: str):
    """Resolve and load a class-head model on the chosen device (the core's
    :func:`~napari_genselfdiff.core.inference.driver.load_segmentation_model`).

    Returns:
        (network, info, device).

    Raises:
        ModelFileError: no bundled model, missing/corrupt/pickled file, a pretraining (noise) model
            (the message says what to do).
        CommandError: the device is not available.
    """
    from ..core.inference.driver import load_segmentation_model

    try:
        return load_segmentation_model(model, device_name)
    except GenSelfDiffError:
        raise
    except ValueError as exc:  # the device
        raise CommandError(str(exc)) from exc


def segment_files(
    items: list[str],
    *,
    model: str,
    out_dir: Path,
    args: argparse.Namespace,
    instances: bool,
    write_instances: bool,
    overlay: bool,
    overwrite: bool,
) -> int:
    """Segment each image of ``items`` (files or folders), reporting bad ones without stopping.

    Args:
        items: image files or folders (their image files are taken, sorted).
        model: a model file path or "default".
        out_dir: the output folder (created).
        args: parsed options holding device, precision, tile, overlap and batch.
        instances: compute nucleus instances (for the instances file and/or the overlay outlines).
        write_instances: write ``<stem>_instances.tif``.
        overlay: write ``<stem>_overlay.png``.
        overwrite: replace existing outputs; otherwise an image whose outputs exist is reported and
            skipped.

    Returns:
        0 if every image was segmented, 1 if any failed.

    Raises:
        ModelFileError, CommandError: the model or the device cannot be used (nothing is processed).
    """
    from ..core.inference import choose_precision

    paths, failures = expand_inputs(items)
    for message in failures:
        _report(message)
    from ..core.io.slide import is_slide

    slides = [p for p in paths if is_slide(p)]  # whole slides: lazily, tissue only (segment_slides.py)
    paths = [p for p in paths if p not in slides]
    _check_slide_options(args, n_images=len(paths), n_slides=len(slides))
    cluster = getattr(args, "workers", None) or getattr(args, "scheduler", None)
    if slides and cluster and not paths:  # the workers load the model themselves
        from .segment_slides import segment_slides

        n_failed = len(failures) + segment_slides(slides, model=model, out_dir=out_dir, args=args,
                                                  instances=instances, overwrite=overwrite)
        return _finish(n_failed, len(slides) + len(failures), out_dir)
    network, info, device = load_for_segmentation(model, args.device)
    settings = inference_settings(args, instances=instances)
    given_model_mpp = getattr(args, "model_mpp", None)
    if given_model_mpp is not None:  # images and slides alike work at it (slides: SlideSettings.model_mpp too)
        from ..core.inference.resolution import model_mpp, with_model_mpp

        own = model_mpp(info)
        info = with_model_mpp(info, given_model_mpp, "--model-mpp")
        print(f"model resolution: {given_model_mpp:g} um/px (--model-mpp; the model's own: {own[0]:g} um/px, {own[1]})")
    given_mpp = getattr(args, "mpp", None)
    if given_mpp is not None:  # refused once, before any image, with what to type instead
        from ..core.inference.resolution import ResolutionError, check_mpp, model_mpp

        try:
            check_mpp(given_mpp, model_mpp(info)[0], what="--mpp")
        except ResolutionError as exc:
            raise CommandError(str(exc)) from exc
    precision = choose_precision(device, settings.precision).value
    classes = ", ".join(info.class_names)
    print(f"model: {info.path} (classes: {classes})")
    count = f"{len(paths)} image(s)" + (f" and {len(slides)} slide(s)" if slides else "")
    print(f"device: {device}, precision: {precision}; {count} -> {out_dir}")

    n_failed = len(failures)
    if slides:
        from .segment_slides import segment_slides

        n_failed += segment_slides(slides, model=model, out_dir=out_dir, args=args, instances=instances,
                                   overwrite=overwrite, loaded=(network, info))
    n_failed += _segment_paths(paths, network, info, settings, out_dir, write_instances=write_instances,
                               overlay=overlay, overwrite=overwrite, mpp=given_mpp)
    return _finish(n_failed, len(paths) + len(slides) + len(failures), out_dir)


#: The options of whole slides only (segment_slides.py): (attribute, flag, value when not given).
SLIDE_ONLY_OPTIONS = (("region", "--region", None), ("tissue", "--no-tissue-mask", True),
                      ("restart", "--restart", False), ("workers", "--workers", None), ("scheduler", "--scheduler", None))


def _check_slide_options(args: argparse.Namespace, *, n_images: int, n_slides: int) -> None:
    """Say what the slide-only options given do to plain images, never silently nothing.

    ``--region`` with no slide among the inputs is refused before any work (the user wants part of
    an image: crop it, or give the slide); the others (and ``--region`` beside slides) are noted once:
    plain images are segmented whole, in this process, with no partial store to continue.
    """
    given = [flag for attr, flag, unset in SLIDE_ONLY_OPTIONS if getattr(args, attr, unset) != unset]
    if not given or not n_images:
        return
    if "--region" in given and not n_slides:
        raise CommandError(
            f"--region selects a rectangle of a whole slide (.svs .ndpi .scn .bif, pyramidal TIFF), but the "
            f"{n_images} input(s) are plain images, which are segmented whole; crop the image first (e.g. in "
            "napari or ImageJ) or give the slide."
        )
    print(f"note: {', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to whole slides only; the "
          f"{n_images} plain image(s) are segmented whole, in this process.")


#: What fails one image, not the whole command (torch reports running out of (GPU) memory as a
#: RuntimeError subclass).
_PER_IMAGE_ERRORS = (GenSelfDiffError, CommandError, OSError, ValueError, MemoryError, RuntimeError)


def _segment_paths(paths: list[Path], network, info, settings, out_dir: Path, *, write_instances: bool,
                   overlay: bool, overwrite: bool, mpp: float | None = None) -> int:
    """Segment and write each image over the core's driver (one summary line each, a tqdm bar per
    image, a bad image reported in one line). Each image is segmented at the model's resolution from
    ``mpp`` (--mpp), else what its file records, else an estimate, else the model's; its line says
    which. Returns the number that failed."""
    from tqdm import tqdm

    from ..core.inference.driver import segment_images
    from ..core.io.read import read_array
    from ..core.io.resolution import recorded_mpp

    outputs = [
        _Outputs(
            labels=out_dir / f"{path.stem}_labels.tif",
            instances=out_dir / f"{path.stem}_instances.tif" if write_instances else None,
            overlay=out_dir / f"{path.stem}_overlay.png" if overlay else None,
        )
        for path in paths
    ]
    seen: dict[str, Path] = {}

    def loader(path: Path, out: _Outputs):
        def load():  # called by the driver when the image's turn comes: its refusals are its errors
            stem = path.stem
            if stem in seen:
                raise CommandError(
                    f"{path}: has the same name as {seen[stem]}, so their outputs would collide; "
                    "segment it separately with another --out."
                )
            seen[stem] = path
            existing = [p for p in out.all() if p.exists()]
            if existing and not overwrite:
                raise CommandError(
                    f"{path}: output {existing[0]} exists; pass --overwrite to replace it "
                    "(or choose another --out)."
                )
            return read_array(path)

        return load

    sources = [(str(path), loader(path, out), recorded_mpp(path)) for path, out in zip(paths, outputs)]

    n_failed = 0
    bar = None
    started = 0.0
    try:
        for event in segment_images(network, info, sources, settings, errors=_PER_IMAGE_ERRORS, mpp=mpp,
                                    mpp_detail="--mpp"):
            kind, path = event["kind"], paths[event["index"]]
            if kind == "start":
                started = time.perf_counter()
            elif kind == "progress":
                if bar is None:
                    bar = tqdm(desc=path.name, unit="tile", leave=False, disable=None, file=sys.stderr)
                if event["stage"] in ("tiles", "estimating resolution"):
                    bar.total = event["total"]
                    bar.n = event["done"]
                    bar.refresh()
                else:
                    bar.set_postfix_str(event["stage"])
                continue
            if bar is not None:  # the image's result or error: its bar goes
                bar.close()
                bar = None
            if kind == "error":
                n_failed += 1
                _report(_describe(path, event["error"]))
            elif kind == "result":
                try:
                    _write_one(path, outputs[event["index"]], event["image"], event["result"], info,
                               started=started, overwrite=overwrite, resolution=event.get("resolution"))
                except _PER_IMAGE_ERRORS as exc:
                    n_failed += 1
                    _report(_describe(path, exc))
    finally:
        if bar is not None:
            bar.close()
    return n_failed


def _describe(path: Path, exc: BaseException) -> str:
    """The one-line message of an image that failed."""
    if isinstance(exc, (GenSelfDiffError, CommandError, FileExistsError)):
        return str(exc)
    if isinstance(exc, (OSError, ValueError)):
        return f"{path}: {exc}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{path}: {first}. If memory ran out, try a smaller --tile."


def _finish(n_failed: int, total: int, out_dir: Path) -> int:
    if n_failed:
        done = f"; the other {total - n_failed} were written to {out_dir}" if n_failed < total else ""
        print(f"{n_failed} of {total} input(s) failed{done}.", file=sys.stderr)
        return 1
    return 0


def _report(message: str) -> None:
    """One line per failed input (decoder messages can span lines), on stderr."""
    print("error: " + " ".join(message.split()), file=sys.stderr)


def _write_one(path: Path, outputs: _Outputs, image, result, info, *, started: float, overwrite: bool,
               resolution=None) -> None:
    """Write one image's outputs, printing its conversion notes and one summary line."""
    import numpy as np

    from ..core.io.write import write_labels_tiff, write_overlay_png

    for note in result.notes:
        print(f"note: {path.name}: {note}")
    written = [write_labels_tiff(outputs.labels, result.labels, overwrite=overwrite)]
    if outputs.instances is not None:
        written.append(write_labels_tiff(outputs.instances, result.instances, overwrite=overwrite,
                                         min_dtype=np.uint16))
    if outputs.overlay is not None:
        written.append(write_overlay_png(outputs.overlay, image, result.labels, info.classes,
                                         instances=result.instances, overwrite=overwrite))
    height, width = np.shape(result.labels)
    th, tw = result.tile_shape
    print(
        f"{path.name}: {width}x{height}"
        + (f" at {resolution.describe()}" if resolution is not None else "")
        + f", {result.tiles} tile(s) of {tw}x{th}{', each mirror-averaged (4 passes)' if result.flips else ''}, "
        f"{result.device} {result.precision}, {result.seconds:.1f} s segmenting, {time.perf_counter() - started:.1f} s in all "
        f"-> {', '.join(p.name for p in written)}"
    )
