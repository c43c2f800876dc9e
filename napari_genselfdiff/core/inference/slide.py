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
4. **Instances** (optional). The existing watershed (``inference/instances.py``) runs on blocks of the
   model-resolution labels with a margin wider than a nucleus; a nucleus belongs to the block that
   holds its centroid, so every nucleus is exported once and whole. Its outline (pixel edges, as in
   ``export/geojson.py``) is scaled to level-0 slide pixels and streamed to
   ``<stem>_nuclei.geojson`` (QuPath detections; the collection's ``properties`` carry the
   resolution, each feature its area in um^2).

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
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import shutil
import time
from collections.abc import Generator
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
)


class SlideWriteError(GenSelfDiffError, OSError):
    """Writing the outputs failed (e.g. the disk is full); the message says what was kept where."""


class ResumeError(GenSelfDiffError, ValueError):
    """An unfinished store of another run (other model or settings) is in the way; the message says
    what differs and how to continue it or start over."""


#: How the settings of a run are named when a resume is refused.
_KEY_NAMES = {
    "slide": "slide file", "slide_mpp": "slide resolution (um/px)", "model_mpp": "model resolution (um/px)",
    "model_sha256": "model (weights, architecture, classes)", "region_xywh": "region (x, y, w, h)",
    "tissue_mask": "tissue mask", "tile": "tile", "overlap": "overlap", "max_band_width": "band width",
}
RESUME_VERSION = 1


def model_digest(model, info) -> str:
    """SHA-256 of a network's weights, architecture, classes and normalisation: the same model file
    loaded twice gives the same digest, any other model another one."""
    import torch

    h = hashlib.sha256()
    h.update(repr(getattr(model, "config", "")).encode())
    h.update(json.dumps([[c.id, c.name] for c in info.classes]).encode())
    h.update(repr(getattr(info, "normalization", "")).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _run_key(slide: Slide, slide_mpp: float, net_mpp: float, region, settings: "SlideSettings", digest: str) -> dict:
    """What an unfinished run must share with this one to be continued (JSON-normalised)."""
    key = {
        "slide": {"name": slide.path.name, "width": slide.width, "height": slide.height,
                  "bytes": slide.path.stat().st_size if slide.path.is_file() else None},
        "slide_mpp": round(float(slide_mpp), 6), "model_mpp": round(float(net_mpp), 6),
        "model_sha256": digest, "region_xywh": list(region), "tissue_mask": bool(settings.tissue),
        "tile": settings.inference.tile, "overlap": settings.inference.overlap,
        "max_band_width": settings.inference.max_band_width,
    }
    return json.loads(json.dumps(key))


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new), key=lambda k: list(_KEY_NAMES).index(k) if k in _KEY_NAMES else 99):
        a, b = old.get(name), new.get(name)
        if a != b:
            if name == "model_sha256":
                a, b = f"{str(a)[:12]}...", f"{str(b)[:12]}..."
            out.append(f"{_KEY_NAMES.get(name, name)}: {a} there, {b} now")
    return out


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
        instance_margin: context around each block (model pixels); wider than the largest nucleus.
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
    seconds: float = 0.0
    seconds_network: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("slide", "labels_store", "geojson"):
            out[key] = str(out[key]) if out[key] is not None else None
        return out


# -- lazy views ----------------------------------------------------------------------------------


class WindowView:
    """A rectangular window [y0, y0 + h) x [x0, x0 + w) of a 2-D or 3-D array, read and written lazily."""

    def __init__(self, base, y0: int, x0: int, height: int, width: int):
        self.base, self.y0, self.x0 = base, int(y0), int(x0)
        self.shape = (int(height), int(width)) + tuple(base.shape[2:])
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def _key(self, key):
        key = key if isinstance(key, tuple) else (key,)
        y0, y1 = _span(key[0], self.shape[0])
        x0, x1 = _span(key[1] if len(key) > 1 else slice(None), self.shape[1])
        return (slice(self.y0 + y0, self.y0 + y1), slice(self.x0 + x0, self.x0 + x1)) + tuple(key[2:])

    def __getitem__(self, key):
        return self.base[self._key(key)]

    def __setitem__(self, key, value):
        self.base[self._key(key)] = value


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class _Geometry:
    """Where model pixels lie on the slide: model pixel (ym, xm) of the window is level-0
    ((ym + oy) / f, (xm + ox) / f); ``source`` is the lazy image at model resolution."""

    level: int
    f: float
    source: Any
    oy: int
    ox: int
    height: int
    width: int


def _geometry(slide: Slide, slide_mpp: float, net_mpp: float, region) -> _Geometry:
    f = slide_mpp / net_mpp  # model pixels per level-0 pixel
    if abs(f - 1) <= RESAMPLE_TOLERANCE:
        level, f_eff, source = 0, 1.0, slide.level_array(0)
    else:
        level = slide.best_level(1.0 / f) if f < 1 else 0
        ds = slide.levels[level].downsample
        g = f * ds  # model pixels per level pixel
        if abs(g - 1) <= RESAMPLE_TOLERANCE:
            source, f_eff = slide.level_array(level), 1.0 / ds
        else:
            source = ResampledView(slide.level_array(level), g)
            f_eff = g / ds
    x, y, w, h = region
    oy, ox = int(math.floor(y * f_eff)), int(math.floor(x * f_eff))
    y1 = min(int(math.ceil((y + h) * f_eff)), int(source.shape[0]))
    x1 = min(int(math.ceil((x + w) * f_eff)), int(source.shape[1]))
    return _Geometry(level, f_eff, source, oy, ox, max(1, y1 - oy), max(1, x1 - ox))


def _check_region(slide: Slide, region) -> tuple[int, int, int, int]:
    if region is None:
        return (0, 0, slide.width, slide.height)
    try:
        x, y, w, h = (int(v) for v in region)
    except (TypeError, ValueError) as exc:
        raise SlideError(f"{slide.path}: a region is x, y, width, height in level-0 pixels, not {region!r}.") from exc
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > slide.width or y + h > slide.height:
        raise SlideError(
            f"{slide.path}: region x {x}..{x + w}, y {y}..{y + h} is empty or lies outside the slide "
            f"(width {slide.width}, height {slide.height} pixels at level 0)."
        )
    return x, y, w, h


def _is_disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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


def slide_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


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
    from ..io.labels_store import (
        PARTIAL,
        RESUME_FILE,
        build_pyramid,
        create_labels_store,
        finish_store,
        open_labels_store,
        read_resume,
        set_info,
        write_resume,
    )
    from ..tissue import TissueMask, tissue_mask
    from .predict import segment_progressive

    settings = settings or SlideSettings()
    own = not isinstance(slide, Slide)
    slide = Slide(slide, mpp=settings.mpp) if own else slide
    try:
        out_dir = Path(out_dir)
        stem = stem or slide_stem(slide.path)
        store_path, geojson_path = output_paths(out_dir, stem, suffix)
        geojson_partial = geojson_path.with_name(geojson_path.name + ".partial")
        wanted = [store_path] + ([geojson_path] if settings.instances else [])
        existing = [p for p in wanted if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{slide.path}: output {existing[0]} exists; pass --overwrite to replace it (that discards any "
                "corrections saved in it), or --out another folder."
            )
        slide_mpp = slide.require_mpp()
        net_mpp, net_source = (settings.model_mpp, "given") if settings.model_mpp else model_mpp(info)
        if slide.mpp_source == "given":  # a typo (0, nm, dpi) is refused before any work
            try:
                check_mpp(slide_mpp, net_mpp, what=f"{slide.path}: the given resolution")
            except ValueError as exc:
                raise SlideError(str(exc)) from exc
        region = _check_region(slide, settings.region)
        geo = _geometry(slide, slide_mpp, net_mpp, region)
        notes = list(slide.notes)
        how = "given" if slide.mpp_source == "given" else f"recorded: {str(slide.mpp_source).removeprefix('file: ')}"
        if abs(geo.f - 1) > 1e-9:
            notes.append(
                f"resolution {slide_mpp:.4g} um/px ({how}), model {net_mpp:.4g} um/px ({net_source}): segmented at "
                f"{geo.f:.3g}x the slide's pixels (level {geo.level}), labels mapped back to level 0"
            )
        else:
            notes.append(f"resolution {slide_mpp:.4g} um/px ({how}); segmented as it is (model {net_mpp:.4g} um/px)")
        # An unfinished store of an earlier run: continue it if it was this same run.
        partial = store_path.with_name(store_path.name + PARTIAL)
        key = _run_key(slide, slide_mpp, net_mpp, region, settings, model_digest(model, info))
        earlier = read_resume(partial) if partial.is_dir() and not restart else None
        if earlier is not None and earlier.get("key") != key:
            raise ResumeError(
                f"{slide.path}: {partial} holds an unfinished run with other settings "
                f"({'; '.join(_differences(earlier.get('key') or {}, key))}). Run it again with the same model "
                f"and settings to continue it, or start over (genselfdiff segment --restart; slide widget: "
                f"'Start over'), which discards it."
            )
        if partial.exists() and earlier is None:
            notes.append(f"discarded the unfinished {partial.name} of an earlier run"
                         + (" (--restart)" if restart else " (it recorded no progress to continue from)"))
        start = time.perf_counter()
        timings: dict[str, float] = {}

        # 1. tissue
        yield {"stage": "tissue", "done": 0, "total": 1}
        t = time.perf_counter()
        mask = tissue_mask(slide, mpp=slide_mpp) if settings.tissue else TissueMask.everywhere(slide.height, slide.width)
        timings["tissue_mask"] = time.perf_counter() - t
        yield {"stage": "tissue", "done": 1, "total": 1}

        def tile_filter(y0: int, y1: int, x0: int, x1: int) -> bool:
            f = geo.f
            return mask.any_in((y0 + geo.oy) / f, (y1 + geo.oy) / f, (x0 + geo.ox) / f, (x1 + geo.ox) / f)

        # 2. the store (written as .partial, renamed at the end; continued when an earlier run left it)
        n_classes = len(info.classes)
        record = {
            "slide": str(slide.path), "slide_mpp": slide_mpp, "slide_mpp_source": slide.mpp_source,
            "model": str(getattr(info, "path", "") or ""), "model_mpp": net_mpp, "model_mpp_source": net_source,
            "classes": [{"id": c.id, "name": c.name} for c in info.classes],
            "region_xywh": list(region), "tissue_threshold": mask.threshold,
        }
        resume = {"version": RESUME_VERSION, "key": key, "model": record["model"], "bands": {}, "runs": 1}
        try:
            if earlier is not None:
                store = open_labels_store(partial, mode="r+")
                resume.update(bands=dict(earlier.get("bands") or {}), runs=int(earlier.get("runs") or 1) + 1)
                set_info(store, complete=False, failed=None, resumed_runs=resume["runs"] - 1)
            else:
                store = create_labels_store(partial, slide.height, slide.width, mpp=slide_mpp, info=record,
                                            classes=info.classes, dtype=np.uint8 if n_classes <= 255 else np.uint16)
            write_resume(partial, resume)
        except OSError as exc:
            what = "the disk is full" if _is_disk_full(exc) else str(exc)
            raise SlideWriteError(f"{slide.path}: cannot write {partial}: {what}") from exc

        def band_done(strip: int, rows: int) -> None:
            """Record (atomically) that the labels of a band are written: a later run skips them."""
            resume["bands"][str(strip)] = rows
            write_resume(partial, resume)

        resampled = abs(geo.f - 1) > 1e-9
        scratch = None
        network_seconds = [0.0]
        t_forward = [0.0]

        def pre(_m, _a):
            t_forward[0] = time.perf_counter()

        def post(_m, _a, _o):
            network_seconds[0] += time.perf_counter() - t_forward[0]

        hooks = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
        stage = "writing the labels of the tiles"
        try:
            if resampled:
                import zarr

                scratch_path = partial / "model_resolution"
                if earlier is not None and scratch_path.is_dir():
                    scratch = zarr.open_array(str(scratch_path), mode="r+", zarr_format=2)
                else:
                    scratch = zarr.open_array(str(scratch_path), mode="w", shape=(geo.height, geo.width),
                                              chunks=(1024, 1024), dtype=store.level0.dtype, fill_value=0,
                                              zarr_format=2)
                target = scratch
            else:
                target = WindowView(store.level0, geo.oy, geo.ox, geo.height, geo.width)
            image = WindowView(geo.source, geo.oy, geo.ox, geo.height, geo.width)
            cue = _cue_store(partial, info, geo, reopen=earlier is not None) if settings.instances else None
            t = time.perf_counter()
            gen = segment_progressive(model, info, image, settings.inference, out=target, name=str(slide.path),
                                      tile_filter=tile_filter, resume_bands=resume["bands"], on_band=band_done,
                                      cue_out=cue)
            seg = yield from gen
            if seg.tiles_resumed:
                notes.append(f"continued an interrupted run: {seg.tiles_resumed} of {seg.tiles} tiles were done "
                             f"in {partial.name}, {seg.tiles_computed} computed now")
            timings["tiles"] = time.perf_counter() - t
            tiles_all = _count_all_tiles(geo, model, settings.inference)

            # 3. map back to level 0 (only when resampled)
            x, y, w, h = region
            if resampled:
                stage = "mapping labels to the slide's pixels"
                t = time.perf_counter()
                yield from _map_back(scratch, store.level0, geo, region)
                timings["map_back"] = time.perf_counter() - t

            # 4. instances -> GeoJSON
            nuclei = 0
            if settings.instances:
                stage = "writing the nuclei GeoJSON"
                t = time.perf_counter()
                labels_model = scratch if resampled else target
                # Written beside the old one and renamed with the store at the very end, so a failure
                # before then leaves an earlier GeoJSON as it was.
                nuclei = yield from _write_instances(
                    labels_model, geo, info, settings, geojson_partial, overwrite=True, cue=cue,
                    properties={"slide": str(slide.path), "mpp": slide_mpp, "model_mpp": net_mpp,
                                "coordinates": "level-0 slide pixels, origin top-left corner",
                                "labels_store": store_path.name, "software": "napari-genselfdiff"},
                    seed=stem,
                )
                timings["instances"] = time.perf_counter() - t

            # 5. pyramid, metadata, rename
            stage = "building the coarser levels of the store"
            yield {"stage": "pyramid", "done": 0, "total": 1}
            t = time.perf_counter()
            build_pyramid(store, (y, y + h, x, x + w))
            timings["pyramid"] = time.perf_counter() - t
            yield {"stage": "pyramid", "done": 1, "total": 1}
            if scratch is not None:
                shutil.rmtree(partial / "model_resolution", ignore_errors=True)
            if cue is not None:
                shutil.rmtree(partial / CUE_STORE, ignore_errors=True)
            total_seconds = time.perf_counter() - start
            result = SlideResult(
                slide=slide.path, labels_store=store_path, geojson=geojson_path if settings.instances else None,
                width=slide.width, height=slide.height, mpp=slide_mpp, model_mpp=net_mpp, scale=geo.f,
                tiles=seg.tiles, tiles_all=tiles_all, tissue_fraction=mask.fraction, nuclei=nuclei,
                seconds=total_seconds, seconds_network=network_seconds[0], timings=timings,
                notes=notes + list(seg.notes) + list(mask.notes), tiles_resumed=seg.tiles_resumed,
            )
            set_info(store, complete=True, tiles=seg.tiles, tiles_all=tiles_all, seconds=round(total_seconds, 2),
                     tissue_fraction=round(mask.fraction, 4), nuclei=nuclei, device=seg.device,
                     precision=seg.precision, tiles_resumed=seg.tiles_resumed)
            (partial / RESUME_FILE).unlink(missing_ok=True)
            finish_store(partial, store_path, overwrite=overwrite)
            if settings.instances:
                geojson_partial.replace(geojson_path)
            return result
        except OSError as exc:
            try:
                set_info(store, complete=False, failed=f"{stage}: {exc}")
            except Exception:  # noqa: BLE001 - the disk may be full: the message below still tells
                pass
            what = "the disk is full" if _is_disk_full(exc) else f"writing failed ({exc})"
            raise SlideWriteError(
                f"{slide.path}: {what} while {stage}. Every chunk written so far is kept in {partial} "
                f"(marked incomplete){'; existing outputs were not touched' if existing else ''}. "
                "Free some space and run the same command again: it continues from there."
            ) from exc
        finally:
            for hook in hooks:
                hook.remove()
    finally:
        if own:
            slide.close()


def _count_all_tiles(geo: _Geometry, model, inference: InferenceSettings) -> int:
    """How many tiles the region would take without the tissue mask (for the report)."""
    from .tiling import plan_tiles

    factor = model.config.downsample_factor
    max_tile = max(factor, inference.tile // factor * factor)
    overlap = max(min(inference.overlap, max_tile // 2 - 1), 0)
    return plan_tiles(geo.height, geo.width, max_tile=max_tile, overlap=overlap, multiple=factor).count


def _map_back(scratch, level0, geo: _Geometry, region, block: int = 2048):
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


CUE_STORE = "instance_cue"


def _cue_store(partial: Path, info, geo: _Geometry, *, reopen: bool):
    """A float16 zarr array for an instance-aware model's cue at the model's resolution (None for other
    models), kept in the partial store until the nuclei are written, so an interrupted run keeps it."""
    from .outputs import CUE_CHANNELS

    n = CUE_CHANNELS.get(getattr(info, "output", "classes"), 0)
    if not n:
        return None
    import zarr

    path = partial / CUE_STORE
    if reopen and path.is_dir():
        return zarr.open_array(str(path), mode="r+", zarr_format=2)
    return zarr.open_array(str(path), mode="w", shape=(n, geo.height, geo.width), chunks=(n, 1024, 1024),
                           dtype="float16", fill_value=0, zarr_format=2)


def _write_instances(labels, geo: _Geometry, info, settings: SlideSettings, target: Path, *, overwrite: bool,
                     properties: dict, seed: str, cue=None):
    """Split nuclei block by block and stream them to a GeoJSON file (written atomically).

    Returns the number of nuclei (as the generator's return value).
    """
    import uuid

    from scipy import ndimage

    from ..export.geojson import mask_geometry
    from ..io.atomic import atomic_path
    from .instances import split_nuclei

    classes = {c.id: c for c in info.classes}
    B, M = settings.instance_block, settings.instance_margin
    H, W = geo.height, geo.width
    blocks = [(by, bx) for by in range(0, H, B) for bx in range(0, W, B)]
    scale = 1.0 / geo.f
    n = 0
    px_area_um2 = (properties["mpp"] * scale) ** 2  # one model pixel is 1/f level-0 pixels a side
    with atomic_path(target, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write('{"type": "FeatureCollection", "properties": ')
            out.write(json.dumps(properties))
            out.write(', "features": [\n')
            for i, (by, bx) in enumerate(blocks):
                wy0, wx0 = max(by - M, 0), max(bx - M, 0)
                wy1, wx1 = min(by + B + M, H), min(bx + B + M, W)
                window = np.asarray(labels[wy0:wy1, wx0:wx1])
                if window.any():
                    cue_window = None if cue is None else np.asarray(cue[:, wy0:wy1, wx0:wx1], dtype=np.float32)
                    inst = split_nuclei(window > 0, cue_window, info)
                    for value, sl in enumerate(ndimage.find_objects(inst), start=1):
                        if sl is None:
                            continue
                        crop = inst[sl] == value
                        rr, cc = np.nonzero(crop)
                        cy = wy0 + sl[0].start + rr.mean()
                        cx = wx0 + sl[1].start + cc.mean()
                        if not (by <= cy < by + B and bx <= cx < bx + B):
                            continue  # another block owns it
                        under = window[sl][crop]
                        under = under[under > 0]
                        cls = int(np.bincount(under).argmax()) if under.size else 1
                        geometry = mask_geometry(crop, (wy0 + sl[0].start, wx0 + sl[1].start))
                        if geometry is None:
                            continue
                        geometry = _scale_geometry(geometry, scale, geo.oy, geo.ox)
                        c = classes.get(cls)
                        n += 1
                        feature = {
                            "type": "Feature",
                            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"genselfdiff/{seed}/{n}")),
                            "geometry": geometry,
                            "properties": {
                                "objectType": settings.object_type,
                                "classification": {
                                    "name": c.name if c else f"class {cls}",
                                    "color": [int(v) for v in (c.color[:3] if c else (255, 0, 0))],
                                },
                                "measurements": {"Area um^2": round(float(crop.sum()) * px_area_um2, 2)},
                            },
                        }
                        out.write(("," if n > 1 else "") + json.dumps(feature, separators=(",", ":")) + "\n")
                yield {"stage": "nuclei", "done": i + 1, "total": len(blocks)}
            out.write("]}\n")
    return n


def _scale_geometry(geometry: dict, scale: float, oy: int, ox: int) -> dict:
    """Model-pixel coordinates (window origin at (oy, ox) model pixels) -> level-0 slide pixels."""

    def ring(points):
        return [[round((px + ox) * scale, 3), round((py + oy) * scale, 3)] for px, py in points]

    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in geometry["coordinates"]]}
    return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in poly] for poly in geometry["coordinates"]]}


def segment_slide(model, info, slide, out_dir, settings: SlideSettings | None = None, **kw) -> SlideResult:
    """Headless :func:`segment_slide_progressive`: run it to the end and return the result."""
    from .predict import run_generator

    return run_generator(segment_slide_progressive(model, info, slide, out_dir, settings, **kw))
