"""``genselfdiff segment`` for whole slides: .svs, .ndpi, .scn, .bif and pyramidal/large (OME-)TIFF.

Slides are segmented on tissue only, at the model's resolution, into ``<stem>_labels.zarr`` (an
OME-Zarr labels pyramid at the slide's pixels) and, with ``--instances``, ``<stem>_nuclei.geojson``
(one QuPath detection per nucleus in level-0 slide coordinates). With ``--workers N`` or
``--scheduler ADDRESS`` the slides run on a Dask cluster, one slide per task
(``core/inference/slide_cluster.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CommandError


def add_slide_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("whole slides (.svs .ndpi .scn .bif, pyramidal or very large TIFF)")
    group.add_argument("--mpp", type=_microns_per_pixel("--mpp"), default=None, metavar="UM",
                       help="the images' and slides' microns per pixel, overriding what the files record (40x: "
                            "about 0.25, 20x: about 0.5). Without it: the file's, else an estimate from the "
                            "nuclei (nuclei models), else the model's; each output line says which")
    group.add_argument("--model-mpp", type=_microns_per_pixel("--model-mpp"), default=None, metavar="UM",
                       help="the model's microns per pixel, for images and slides (default: from the model file, "
                            "else 0.25)")
    group.add_argument("--region", type=_region, default=None, metavar="X,Y,W,H",
                       help="segment only this rectangle, in level-0 slide pixels")
    group.add_argument("--no-tissue-mask", dest="tissue", action="store_false",
                       help="segment glass too (by default tiles without tissue are skipped)")
    group.add_argument("--restart", action="store_true",
                       help="discard an unfinished <stem>_labels.zarr.partial left by a cancelled or killed run "
                            "and start over (by default the same command continues it)")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="segment the slides on a local Dask cluster of N worker processes, one slide per task")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="segment the slides on a running Dask scheduler (e.g. tcp://10.0.0.5:8786); the model, "
                            "slides and --out must be at the same paths on its workers")


def slide_settings(args: argparse.Namespace, *, instances: bool):
    from ..core.inference.slide import SlideSettings
    from .common import inference_settings

    return SlideSettings(
        inference=inference_settings(args, instances=False),
        instances=instances,
        tissue=getattr(args, "tissue", True),
        mpp=getattr(args, "mpp", None),
        model_mpp=getattr(args, "model_mpp", None),
        region=getattr(args, "region", None),
    )


def _report(message: str) -> None:
    print("error: " + " ".join(message.split()), file=sys.stderr)


def _summary(result: dict) -> str:
    share = 1 - result["seconds_network"] / result["seconds"] if result["seconds"] else 0.0
    line = (
        f"{Path(result['slide']).name}: {result['width']}x{result['height']} px at {result['mpp']:.4g} um/px, "
        f"tissue {100 * result['tissue_fraction']:.0f} %, {result['tiles']} of {result['tiles_all']} tiles"
        f"{' (each mirror-averaged, 4 passes)' if result.get('flips') else ''}, "
        f"{result['seconds']:.1f} s ({100 * share:.0f} % outside the network) -> {Path(result['labels_store']).name}"
    )
    if result.get("geojson"):
        line += f", {Path(result['geojson']).name} ({result['nuclei']} nuclei)"
    return line


def segment_slides(paths: list[Path], *, model: str, out_dir: Path, args: argparse.Namespace, instances: bool,
                   overwrite: bool, loaded=None) -> int:
    """Segment each slide, reporting failures one line each. Returns the number that failed."""
    from ..core.errors import GenSelfDiffError

    settings = slide_settings(args, instances=instances)
    restart = bool(getattr(args, "restart", False))
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is not None and workers < 1:
        raise CommandError(f"--workers must be at least 1, not {workers}.")
    if workers or scheduler:
        from ..core.inference.slide_cluster import segment_slides_on_cluster
        from ..core.model_files import check_segmentation_model, read_model_info, resolve_model_path

        model_path = resolve_model_path(model)
        check_segmentation_model(read_model_info(model_path))  # before any worker starts
        where = f"scheduler {scheduler}" if scheduler else f"a local cluster of {workers} worker(s)"
        print(f"{len(paths)} slide(s) on {where} -> {out_dir}")
        failed = [0]

        def show(report: dict) -> None:
            if report["ok"]:
                print(_summary(report["result"]))
                for note in report["result"].get("notes", []):
                    print(f"note: {Path(report['slide']).name}: {note}")
            else:
                failed[0] += 1
                _report(report["error"])

        try:
            segment_slides_on_cluster([str(p.resolve()) for p in paths], str(Path(model_path).resolve()),
                                      str(out_dir.resolve()), settings, workers=workers, scheduler=scheduler,
                                      overwrite=overwrite, restart=restart, on_result=show)
        except (OSError, TimeoutError) as exc:
            raise CommandError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from exc
        return failed[0]

    from tqdm import tqdm

    from ..core.inference.slide import segment_slide_progressive
    from ..core.progress import Returning

    network, info = loaded
    n_failed = 0
    for path in paths:
        try:
            events = Returning(segment_slide_progressive(network, info, path, out_dir, settings,
                                                         overwrite=overwrite, restart=restart))
            with tqdm(desc=path.name, unit="tile", leave=False, disable=None, file=sys.stderr) as bar:
                for event in events:
                    bar.set_postfix_str(event["stage"])
                    bar.total, bar.n = event["total"], event["done"]
                    bar.refresh()
            result = events.value
            print(_summary(result.to_dict()))
            for note in result.notes:
                print(f"note: {path.name}: {note}")
        except (GenSelfDiffError, FileExistsError) as exc:
            n_failed += 1
            _report(str(exc))
        except (OSError, ValueError, RuntimeError, MemoryError) as exc:
            n_failed += 1
            _report(f"{path}: {exc}")
    return n_failed


def _microns_per_pixel(option: str):
    """The argparse type of ``option``: microns per pixel > 0 (the model's range is checked once the
    model is loaded); a refusal says what to type."""
    hint = f"type microns per pixel, e.g. {option} 0.25 for a 40x scan, {option} 0.5 for 20x"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text} is not a number; {hint}") from exc
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} um/px is not a resolution (it must be more than 0); {hint}")
        return value

    return parse


def _region(text: str) -> tuple[int, int, int, int]:
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a region is X,Y,W,H in level-0 pixels, not {text}") from exc
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise argparse.ArgumentTypeError(f"a region needs X, Y >= 0 and W, H > 0, not {text}")
    return x, y, w, h
