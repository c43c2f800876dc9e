"""Segment a whole slide: tissue tiles only, at the model's resolution, labels streamed to a zarr store.

What :func:`segment_slide_progressive` does, and what it holds in memory:

1. **Tissue.** A low-resolution tissue mask (``core/tissue.py``, Otsu on saturation) decides which
   tiles are computed; glass tiles are neither read nor segmented, so time grows with the tissue
   area, not the slide's.
2. **Resolution.** The model's microns per pixel (:func:`model_mpp`: its file's ``mpp``, else 0.25,
   MoNuSeg's 40x) and the slide's (from the file, or given) set a scale. Within 5 % no resampling is
   done. Otherwise the tiles are read from the pyramid level nearest above the model's resolution
   and resampled on the fly (bilinear; Gaussian pre-filter when shrinking) — a 20x slide (0.5 um/px)
   is segmented at 2x its pixels for a 40x model — and the labels are mapped back to the slide's
   level-0 pixels (nearest neighbour) block by block.
3. **Tiles -> store.** :func:`.predict.segment_progressive` blends tiles in a band of two tile rows
   (at most 8192 pixels wide) and writes labels band by band into the level-0 array of the store
   (``core/io/labels_store.py``: OME-Zarr, 1024-pixel chunks, background chunks never written).
   Then the coarser levels of the store are filled. Peak memory: the model, one band, and one
   4096^2 block; never the slide.
4. **Instances** (optional, ``slide_nuclei.py``). The existing watershed (``inference/instances.py``)
   runs on blocks of the model-resolution labels with a margin wider than a nucleus; a nucleus belongs
   to the block that holds its centroid, so every nucleus is exported once and whole. Its Feature (the
   one builder of ``export/geojson.py``: outline along pixel edges, class vote) is scaled to level-0
   slide pixels and streamed to ``<stem>_nuclei.geojson`` (QuPath detections; the collection's
   ``properties`` carry the resolution, each feature its area in um^2).

**Resume.** The store is written as ``<stem>_labels.zarr.partial``. After every band of labels its
``genselfdiff_resume.json`` is replaced atomically with the bands finished so far and what the run
was (slide, resolution, region, tissue mask, model weights, tile, overlap). A run that was cancelled,
killed or stopped by a full disk leaves that store; the same command run again continues it: finished
bands are neither computed nor written again (the tile rows just above the first unfinished band are
recomputed for the blending, so the labels equal those of an uninterrupted run), then the later stages
(mapping back, nuclei, pyramid) run as usual. A partial store of another run (another model, region,
tile size, ...) is refused with a :class:`ResumeError` naming the differences; ``restart=True``
discards it.

Bad input is reported as a :class:`~..io.slide.SlideError` (unreadable slide, no resolution, a
region outside the slide) or, for a full disk while writing, as a :class:`SlideWriteError` that
names the ``.partial`` store holding every chunk written so far.

This module holds the run (:func:`segment_slide_progressive`, one step per stage above), its settings and
result; beside it: ``slide_outputs.py`` (output names), ``slide_resume.py`` (the resume key,
:class:`ResumeError`), ``slide_views.py`` (region, geometry at model resolution, :class:`WindowView`),
``slide_nuclei.py`` (the streaming nuclei GeoJSON writer). Their public names are re-exported here.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenSelfDiffError
from ..io.slide import Slide, SlideError
from .predict import InferenceSettings

# The one resolution path images and slides share (re-exported here for older callers).
from .resolution import (  # noqa: F401
    DEFAULT_MODEL_MPP,
    RESAMPLE_TOLERANCE,
    ResampledView,
    _span,
    check_mpp,
    map_back,
    model_mpp,
    with_model_mpp,
)
from .slide_nuclei import CUE_STORE, cue_store, write_nuclei_geojson
from .slide_outputs import free_output_suffix, output_paths, slide_stem
from .slide_resume import RESUME_VERSION, ResumeError, earlier_run, model_digest, run_key
from .slide_views import SlideGeometry, WindowView, check_region, slide_geometry

__all__ = [
    "CUE_STORE",
    "RESUME_VERSION",
    "ResumeError",
    "SlideResult",
    "SlideSettings",
    "SlideWriteError",
    "WindowView",
    "free_output_suffix",
    "model_digest",
    "output_paths",
    "segment_slide",
    "segment_slide_progressive",
    "slide_stem",
]

#: The model-resolution labels of a resampled run, inside the partial store (removed when it finishes).
SCRATCH_STORE = "model_resolution"


class SlideWriteError(GenSelfDiffError, OSError):
    """Writing the outputs failed (e.g. the disk is full); the message says what was kept where."""


@dataclass
class SlideSettings:
    """How to segment a slide.

    Args:
        inference: tile size, overlap, device, precision, batch (see :class:`InferenceSettings`).
        instances: also split nuclei and write ``<stem>_nuclei.geojson``.
        tissue: skip glass (tissue mask); False segments every tile.
        mpp: the slide's level-0 microns per pixel, overriding the file's (None: from the file).
        model_mpp: the model's microns per pixel, overriding :func:`model_mpp`.
        region: (x, y, width, height) in level-0 pixels to segment; None: the whole slide.
        object_type: "detection" (light, QuPath's default for many cells) or "annotation".
        instance_block: side of the blocks (model pixels) that nuclei are split in.
        instance_margin: context around each block (model pixels); wider than the largest nucleus. It
            doubles (up to 4x) around a block that an object wider than it reaches into (a gland).
    """

    inference: InferenceSettings = field(default_factory=InferenceSettings)
    instances: bool = False
    tissue: bool = True
    mpp: float | None = None
    model_mpp: float | None = None
    region: tuple[int, int, int, int] | None = None
    object_type: str = "detection"
    instance_block: int = 2048
    instance_margin: int = 96


@dataclass
class SlideResult:
    """What a slide run wrote and how long each part took."""

    slide: Path
    labels_store: Path
    geojson: Path | None
    width: int
    height: int
    mpp: float
    model_mpp: float
    scale: float
    tiles: int
    tiles_all: int
    tissue_fraction: float
    nuclei: int = 0
    tiles_resumed: int = 0  # tiles an interrupted earlier run had finished (continued, not recomputed)
    flips: bool = False  # each tile averaged over its mirror images (InferenceSettings.flips)
    seconds: float = 0.0
    seconds_network: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("slide", "labels_store", "geojson"):
            out[key] = str(out[key]) if out[key] is not None else None
        return out


# -- the run ---------------------------------------------------------------------------------------


def segment_slide_progressive(
    model,
    info,
    slide: Slide | str | Path,
    out_dir: str | Path,
    settings: SlideSettings | None = None,
    *,
    overwrite: bool = False,
    stem: str | None = None,
    restart: bool = False,
    suffix: str = "",
) -> Generator[dict, None, SlideResult]:
    """Segment a slide into ``out_dir`` (see the module docstring), yielding progress dicts
    ``{"stage", "done", "total"}``; the generator's return value is a :class:`SlideResult`.

    Outputs: ``<stem>_labels.zarr`` (always) and ``<stem>_nuclei.geojson`` (with instances). An
    unfinished ``<stem>_labels.zarr.partial`` of the same run is continued; ``restart`` discards it.
    ``suffix`` ("-2", ...) names the outputs ``<stem>_labels<suffix>.zarr`` and
    ``<stem>_nuclei<suffix>.geojson`` (see :func:`free_output_suffix`).

    Raises:
        SlideError: unreadable slide, no resolution, region outside the slide.
        FileExistsError: an output exists and ``overwrite`` is False (checked before any work).
        ResumeError: an unfinished store of a run with other settings is there (checked before any work).
        SlideWriteError: writing failed (disk full, ...); what was written is kept and named.
    """
    settings = settings or SlideSettings()
    own = not isinstance(slide, Slide)
    slide = Slide(slide, mpp=settings.mpp) if own else slide
    try:
        run = _plan_run(model, info, slide, Path(out_dir), settings, overwrite=overwrite, stem=stem,
                        restart=restart, suffix=suffix)
        start = time.perf_counter()
        mask = yield from _tissue(slide, settings, run)                         # tissue
        store, resume = _open_store(slide, info, run, mask)                     # the store
        with _network_clock(model) as network_seconds:
            try:
                seg, labels, cue = yield from _segment_tiles(                   # tiles -> store
                    model, info, slide, settings, run, mask, store, resume)
                tiles_all = _count_all_tiles(run.geo, model, settings.inference)
                if run.geo.resampled:                                           # map back to level 0
                    run.stage = "mapping labels to the slide's pixels"
                    yield from _timed(run.timings, "map_back", _map_back(labels, store.level0, run.geo, run.region))
                nuclei = 0
                if settings.instances:                                          # instances -> GeoJSON
                    run.stage = "writing the nuclei GeoJSON"
                    nuclei = yield from _timed(run.timings, "instances", _write_nuclei(slide, info, settings, run,
                                                                                      labels, cue))
                run.stage = "building the coarser levels of the store"          # pyramid, metadata, rename
                yield from _pyramid(store, run)
                return _finish(slide, settings, run, store, seg, mask, cue, start=start, tiles_all=tiles_all,
                               nuclei=nuclei, network_seconds=network_seconds[0], overwrite=overwrite)
            except OSError as exc:
                raise _write_error(slide, run, store, exc) from exc
    finally:
        if own:
            slide.close()


def segment_slide(model, info, slide, out_dir, settings: SlideSettings | None = None, **kw) -> SlideResult:
    """Headless :func:`segment_slide_progressive`: run it to the end and return the result."""
    from .predict import run_generator

    return run_generator(segment_slide_progressive(model, info, slide, out_dir, settings, **kw))


# -- its steps -------------------------------------------------------------------------------------


@dataclass
class _Run:
    """A slide run as settled before any work (outputs, resolutions, region, resume), and as it goes."""

    store_path: Path
    geojson_path: Path
    partial: Path  # the labels store while written (``<store>.partial``)
    existing: list[Path]  # outputs of an earlier run that this one will replace
    stem: str
    slide_mpp: float
    net_mpp: float
    net_source: str  # where the model's resolution came from ("given", the model file, the default)
    region: tuple[int, int, int, int]
    geo: SlideGeometry
    key: dict
    earlier: dict | None  # the resume record of the unfinished run this one continues
    notes: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    stage: str = "writing the labels of the tiles"  # what a write error happened in

    @property
    def geojson_partial(self) -> Path:
        """The nuclei GeoJSON while written, renamed with the store at the very end."""
        return self.geojson_path.with_name(self.geojson_path.name + ".partial")


def _plan_run(model, info, slide: Slide, out_dir: Path, settings: SlideSettings, *, overwrite: bool,
              stem: str | None, restart: bool, suffix: str) -> _Run:
    """Everything checked before any work: existing outputs, resolutions, region, an earlier run's store."""
    from ..io.labels_store import PARTIAL

    stem = stem or slide_stem(slide.path)
    store_path, geojson_path = output_paths(out_dir, stem, suffix)
    wanted = [store_path] + ([geojson_path] if settings.instances else [])
    existing = [p for p in wanted if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{slide.path}: output {existing[0]} exists; pass --overwrite to replace it (that discards any "
            "corrections saved in it), or --out another folder."
        )
    slide_mpp = slide.require_mpp()
    if settings.model_mpp:
        info = with_model_mpp(info, settings.model_mpp, "given")
    net_mpp, net_source = model_mpp(info)
    if slide.mpp_source == "given":  # a typo (0, nm, dpi) is refused before any work
        try:
            check_mpp(slide_mpp, net_mpp, what=f"{slide.path}: the given resolution")
        except ValueError as exc:
            raise SlideError(str(exc)) from exc
    region = check_region(slide, settings.region)
    geo = slide_geometry(slide, slide_mpp, net_mpp, region)
    notes = list(slide.notes)
    how = "given" if slide.mpp_source == "given" else f"recorded: {str(slide.mpp_source).removeprefix('file: ')}"
    if geo.resampled:
        notes.append(
            f"resolution {slide_mpp:.4g} um/px ({how}), model {net_mpp:.4g} um/px ({net_source}): segmented at "
            f"{geo.f:.3g}x the slide's pixels (level {geo.level}), labels mapped back to level 0"
        )
    else:
        notes.append(f"resolution {slide_mpp:.4g} um/px ({how}); segmented as it is (model {net_mpp:.4g} um/px)")
    # An unfinished store of an earlier run: continue it if it was this same run.
    partial = store_path.with_name(store_path.name + PARTIAL)
    key = run_key(slide, slide_mpp, net_mpp, region, settings, model_digest(model, info))
    earlier = earlier_run(partial, key, restart=restart, slide_path=slide.path)
    if partial.exists() and earlier is None:
        notes.append(f"discarded the unfinished {partial.name} of an earlier run"
                     + (" (--restart)" if restart else " (it recorded no progress to continue from)"))
    return _Run(store_path=store_path, geojson_path=geojson_path, partial=partial, existing=existing, stem=stem,
                slide_mpp=slide_mpp, net_mpp=net_mpp, net_source=net_source, region=region, geo=geo, key=key,
                earlier=earlier, notes=notes)


def _tissue(slide: Slide, settings: SlideSettings, run: _Run):
    """The tissue mask (everywhere without ``settings.tissue``)."""
    from ..tissue import TissueMask, tissue_mask

    yield {"stage": "tissue", "done": 0, "total": 1}
    t = time.perf_counter()
    mask = tissue_mask(slide, mpp=run.slide_mpp) if settings.tissue else TissueMask.everywhere(slide.height,
                                                                                               slide.width)
    run.timings["tissue_mask"] = time.perf_counter() - t
    yield {"stage": "tissue", "done": 1, "total": 1}
    return mask


def _open_store(slide: Slide, info, run: _Run, mask):
    """The labels store, written as ``.partial`` (renamed at the end), or the earlier run's to continue;
    returns it and the resume record (written)."""
    from ..io.labels_store import create_labels_store, open_labels_store, set_info, write_resume

    record = {
        "slide": str(slide.path), "slide_mpp": run.slide_mpp, "slide_mpp_source": slide.mpp_source,
        "model": str(getattr(info, "path", "") or ""), "model_mpp": run.net_mpp, "model_mpp_source": run.net_source,
        "classes": [{"id": c.id, "name": c.name} for c in info.classes],
        "region_xywh": list(run.region), "tissue_threshold": mask.threshold,
    }
    resume = {"version": RESUME_VERSION, "key": run.key, "model": record["model"], "bands": {}, "runs": 1}
    try:
        if run.earlier is not None:
            store = open_labels_store(run.partial, mode="r+")
            resume.update(bands=dict(run.earlier.get("bands") or {}), runs=int(run.earlier.get("runs") or 1) + 1)
            set_info(store, complete=False, failed=None, resumed_runs=resume["runs"] - 1)
        else:
            n_classes = len(info.classes)
            store = create_labels_store(run.partial, slide.height, slide.width, mpp=run.slide_mpp, info=record,
                                        classes=info.classes, dtype=np.uint8 if n_classes <= 255 else np.uint16)
        write_resume(run.partial, resume)
    except OSError as exc:
        what = "the disk is full" if _is_disk_full(exc) else str(exc)
        raise SlideWriteError(f"{slide.path}: cannot write {run.partial}: {what}") from exc
    return store, resume


@contextmanager
def _network_clock(model):
    """The seconds spent in the network's forward passes (a one-item list, filled while inside)."""
    seconds = [0.0]
    t_forward = [0.0]

    def pre(_m, _a):
        t_forward[0] = time.perf_counter()

    def post(_m, _a, _o):
        seconds[0] += time.perf_counter() - t_forward[0]

    hooks = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    try:
        yield seconds
    finally:
        for hook in hooks:
            hook.remove()


def _segment_tiles(model, info, slide: Slide, settings: SlideSettings, run: _Run, mask, store, resume):
    """The tissue tiles into the store (or, resampled, into a model-resolution scratch array in it), band by
    band, each finished band recorded for a resume; returns (the segmentation, the model-resolution labels,
    the cue array or None)."""
    from ..io.labels_store import write_resume
    from .predict import segment_progressive

    geo, partial = run.geo, run.partial

    def tile_filter(y0: int, y1: int, x0: int, x1: int) -> bool:
        f = geo.f
        return mask.any_in((y0 + geo.oy) / f, (y1 + geo.oy) / f, (x0 + geo.ox) / f, (x1 + geo.ox) / f)

    def band_done(strip: int, rows: int) -> None:
        """Record (atomically) that the labels of a band are written: a later run skips them."""
        resume["bands"][str(strip)] = rows
        write_resume(partial, resume)

    if geo.resampled:
        import zarr

        scratch_path = partial / SCRATCH_STORE
        if run.earlier is not None and scratch_path.is_dir():
            target = zarr.open_array(str(scratch_path), mode="r+", zarr_format=2)
        else:
            target = zarr.open_array(str(scratch_path), mode="w", shape=(geo.height, geo.width),
                                     chunks=(1024, 1024), dtype=store.level0.dtype, fill_value=0, zarr_format=2)
    else:
        target = WindowView(store.level0, geo.oy, geo.ox, geo.height, geo.width)
    cue = cue_store(partial, info, geo, reopen=run.earlier is not None) if settings.instances else None
    t = time.perf_counter()
    seg = yield from segment_progressive(model, info, geo.image(), settings.inference, out=target,
                                         name=str(slide.path), tile_filter=tile_filter,
                                         resume_bands=resume["bands"], on_band=band_done, cue_out=cue)
    if seg.tiles_resumed:
        run.notes.append(f"continued an interrupted run: {seg.tiles_resumed} of {seg.tiles} tiles were done "
                         f"in {partial.name}, {seg.tiles_computed} computed now")
    run.timings["tiles"] = time.perf_counter() - t
    return seg, target, cue


def _timed(timings: dict[str, float], name: str, steps):
    """Run the generator ``steps`` through, its seconds into ``timings[name]``; returns its value."""
    t = time.perf_counter()
    value = yield from steps
    timings[name] = time.perf_counter() - t
    return value


def _count_all_tiles(geo: SlideGeometry, model, inference: InferenceSettings) -> int:
    """How many tiles the region would take without the tissue mask (for the report)."""
    from .tiling import plan_tiles

    factor = model.config.downsample_factor
    max_tile = max(factor, inference.tile // factor * factor)
    overlap = max(min(inference.overlap, max_tile // 2 - 1), 0)
    return plan_tiles(geo.height, geo.width, max_tile=max_tile, overlap=overlap, multiple=factor).count


def _map_back(scratch, level0, geo: SlideGeometry, region, block: int = 2048):
    """Level-0 labels from the model-resolution ones, block by block (:func:`.resolution.map_back`:
    the most frequent model label under each slide pixel)."""
    x, y, w, h = region
    blocks = [(by, bx) for by in range(y, y + h, block) for bx in range(x, x + w, block)]
    for i, (by, bx) in enumerate(blocks):
        ey, ex = min(by + block, y + h), min(bx + block, x + w)
        src = map_back(scratch, (by, ey), (bx, ex), geo.f, offset=(geo.oy, geo.ox))  # as images do
        if src.any():
            level0[by:ey, bx:ex] = src
        yield {"stage": "mapping labels", "done": i + 1, "total": len(blocks)}


def _write_nuclei(slide: Slide, info, settings: SlideSettings, run: _Run, labels, cue):
    """The nuclei GeoJSON, written beside the old one and renamed with the store at the very end, so a
    failure before then leaves an earlier GeoJSON as it was; returns the number of nuclei."""
    properties = {"slide": str(slide.path), "mpp": run.slide_mpp, "model_mpp": run.net_mpp,
                  "coordinates": "level-0 slide pixels, origin top-left corner",
                  "labels_store": run.store_path.name, "software": "napari-genselfdiff"}
    return (yield from write_nuclei_geojson(labels, run.geo, info, settings, run.geojson_partial, overwrite=True,
                                            cue=cue, properties=properties, seed=run.stem))


def _pyramid(store, run: _Run):
    """The coarser levels of the store over the region."""
    from ..io.labels_store import build_pyramid

    x, y, w, h = run.region
    yield {"stage": "pyramid", "done": 0, "total": 1}
    t = time.perf_counter()
    build_pyramid(store, (y, y + h, x, x + w))
    run.timings["pyramid"] = time.perf_counter() - t
    yield {"stage": "pyramid", "done": 1, "total": 1}


def _finish(slide: Slide, settings: SlideSettings, run: _Run, store, seg, mask, cue, *, start: float,
            tiles_all: int, nuclei: int, network_seconds: float, overwrite: bool) -> SlideResult:
    """Scratch arrays removed, the store's metadata completed, the outputs renamed into place."""
    from ..io.labels_store import RESUME_FILE, finish_store, set_info

    if run.geo.resampled:
        shutil.rmtree(run.partial / SCRATCH_STORE, ignore_errors=True)
    if cue is not None:
        shutil.rmtree(run.partial / CUE_STORE, ignore_errors=True)
    total_seconds = time.perf_counter() - start
    result = SlideResult(
        slide=slide.path, labels_store=run.store_path, geojson=run.geojson_path if settings.instances else None,
        width=slide.width, height=slide.height, mpp=run.slide_mpp, model_mpp=run.net_mpp, scale=run.geo.f,
        tiles=seg.tiles, tiles_all=tiles_all, tissue_fraction=mask.fraction, nuclei=nuclei,
        seconds=total_seconds, seconds_network=network_seconds, timings=run.timings,
        notes=run.notes + list(seg.notes) + list(mask.notes), tiles_resumed=seg.tiles_resumed,
        flips=settings.inference.flips,
    )
    set_info(store, complete=True, tiles=seg.tiles, tiles_all=tiles_all, seconds=round(total_seconds, 2),
             tissue_fraction=round(mask.fraction, 4), nuclei=nuclei, device=seg.device,
             precision=seg.precision, tiles_resumed=seg.tiles_resumed)
    (run.partial / RESUME_FILE).unlink(missing_ok=True)
    finish_store(run.partial, run.store_path, overwrite=overwrite)
    if settings.instances:
        run.geojson_partial.replace(run.geojson_path)
    return result


def _write_error(slide: Slide, run: _Run, store, exc: OSError) -> SlideWriteError:
    """The store marked failed (when the disk still lets it be), and the one error that says what is kept."""
    from ..io.labels_store import set_info

    try:
        set_info(store, complete=False, failed=f"{run.stage}: {exc}")
    except Exception:  # noqa: BLE001 - the disk may be full: the message below still tells
        pass
    what = "the disk is full" if _is_disk_full(exc) else f"writing failed ({exc})"
    return SlideWriteError(
        f"{slide.path}: {what} while {run.stage}. Every chunk written so far is kept in {run.partial} "
        f"(marked incomplete){'; existing outputs were not touched' if run.existing else ''}. "
        "Free some space and run the same command again: it continues from there."
    )


def _is_disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
