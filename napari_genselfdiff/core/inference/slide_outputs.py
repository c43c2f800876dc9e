"""The names of a slide run's outputs: ``<stem>_labels<suffix>.zarr`` and ``<stem>_nuclei<suffix>.geojson``
in the output folder, with the first free suffix when a run must not replace earlier outputs."""

from __future__ import annotations

from pathlib import Path


def slide_stem(path: Path) -> str:
    """The stem a slide's outputs are named by: the file name without its suffix (".ome.tif(f)" whole)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_paths(out_dir: Path, stem: str, suffix: str = "") -> tuple[Path, Path]:
    """(labels store, nuclei GeoJSON) of a slide's stem in ``out_dir``: ``<stem>_labels<suffix>.zarr``
    and ``<stem>_nuclei<suffix>.geojson`` (``suffix`` is "" or "-2", "-3", ...)."""
    return out_dir / f"{stem}_labels{suffix}.zarr", out_dir / f"{stem}_nuclei{suffix}.geojson"


def free_output_suffix(out_dir: str | Path, stem: str, *, instances: bool) -> str:
    """The first suffix ("", "-2", "-3", ...) whose finished outputs do not exist in ``out_dir``.

    Only finished outputs count: an unfinished ``<stem>_labels<suffix>.zarr.partial`` (a cancelled run)
    does not take its name, so running again continues it. Used by the slide widget, which writes a
    new store next to an existing one instead of replacing it (and the corrections saved in it).
    """
    out_dir = Path(out_dir)
    n = 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        store, geojson = output_paths(out_dir, stem, suffix)
        if not store.exists() and not (instances and geojson.exists()):
            return suffix
        n += 1
