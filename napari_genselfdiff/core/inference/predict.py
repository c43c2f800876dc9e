"""Segment an image of any size: tiles -> one forward pass each (t = 0) -> blended logits -> labels.

Memory is bounded by the tile batch and one band of tile rows, never by the image: logits are blended
in a band buffer (classes x (2 * tile height) x padded width) and each band is turned into labels and
written to the output as soon as no later tile touches it. The output can be any array supporting
slice assignment (numpy, np.memmap, zarr), so a whole slide is written tile row by tile row.

:func:`segment_progressive` is a generator that yields progress dicts and returns the result (the
napari widget runs it in a thread worker; :func:`segment` runs it to completion headless).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION, INFERENCE_OVERLAP, INFERENCE_TILE
from ..image_input import InputSpec, inspect_image, read_tile
from ..model_files.schema import ModelInfo
from ..network.unet import AttentionUNet, fused_for_inference
from ..progress import run_generator  # also imported from here by callers
from .device import autocast, choose_device, choose_precision
from .outputs import CUE_CHANNELS, split_output
from .tiling import TilePlan, blend_window, column_strips, plan_tiles


@dataclass
class InferenceSettings:
    """How to run inference.

    Args:
        tile: largest tile side in pixels (a multiple of the network's downsampling factor). By default
            512 (``core.defaults.INFERENCE_TILE``): measured 1.34-1.37x faster than 1024 on this CPU
            (the bottleneck attention is quadratic in tile area) with 5-20x less memory
            (docs/performance.md); tiles shrink to cover the image evenly, so the overlap waste stays small.
        overlap: minimum overlap of neighbouring tiles, blended with a raised-cosine ramp. By default 64
            (``core.defaults.INFERENCE_OVERLAP``).
        batch: tiles per forward pass. By default 1 on CPU (no gain from batching there), 8 on GPU.
        device: "auto" (cuda -> mps -> cpu), "cpu", "cuda", "mps".
        precision: "auto" (bf16 on GPUs and bf16-capable CPUs, else fp32), "fp32", "bf16", "fp16".
        channels_last: use the channels-last memory format. By default None: channels-last unless the
            network has level attention (:func:`uses_channels_last`). Measured on the bundled nuclei
            model (no level attention), 1000x1000, one thread, AVX-512 CPU: 1.5x faster in bf16, 1.2x
            in fp32; networks with level attention were 1.2-1.4x faster contiguous (a copy in
            ``LinearAttention``; docs/performance.md).
        instances: also split the foreground into nucleus instances (distance-transform watershed).
        allow_gray: expand grayscale images to RGB instead of refusing them.
        flips: test-time flips: each tile also goes through the network flipped left-right, up-down and
            both, and the four outputs, flipped back, are averaged (direction maps of a ``hover`` output
            change sign with their flip). 4x the network's time; the result no longer depends on which way
            the image is mirrored. Measured through ``genselfdiff segment`` on the 6 held-out MoNuSeg
            training images with the v2 recipe: AJI +0.002 / +0.005, PQ +0.008 / +0.009 at 40x / 20x
            (docs/results.md, "After v2"). Off by default.
        max_band_width: widest blending band in pixels. Wider images are segmented in vertical strips
            of tile columns (neighbours share one tile column, so the result is identical), which
            keeps memory flat for whole-slide widths at about 6 % more tiles. By default 8192; None:
            one band as wide as the image.
    """

    tile: int = INFERENCE_TILE
    overlap: int = INFERENCE_OVERLAP
    batch: int | None = None
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    channels_last: bool | None = None
    instances: bool = False
    allow_gray: bool = True
    max_band_width: int | None = 8192
    flips: bool = False


@dataclass
class SegmentationResult:
    """Labels (H, W) with class ids, optional instance ids, and what was done to get them."""

    labels: Any
    instances: np.ndarray | None = None
    cue: np.ndarray | None = None  # (E, H, W) cue of an instance-aware output, when instances were asked for
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    tiles: int = 0
    tile_shape: tuple[int, int] = (0, 0)
    tiles_computed: int = 0  # forward passes in this run (with ``resume_bands``: fewer than ``tiles``)
    tiles_resumed: int = 0  # tiles an earlier run had finished (``resume_bands``)
    flips: bool = False  # test-time flips (:attr:`InferenceSettings.flips`): each tile averaged over 4 passes


def uses_channels_last(model: AttentionUNet, settings: InferenceSettings) -> bool:
    """Whether inference runs in the channels-last memory format: as asked, else unless the network has
    level attention (its ``LinearAttention`` copies channels-last inputs)."""
    if settings.channels_last is not None:
        return bool(settings.channels_last)
    config = getattr(model, "config", None)
    return not getattr(config, "level_attention", True)


#: The flips of test-time augmentation (:attr:`InferenceSettings.flips`): none, left-right, up-down, both: a
#: group, so the average over it is the same whichever way the input was mirrored.
FLIP_AXES = ((), (-1,), (-2,), (-2, -1))


def network_output(model: AttentionUNet, x: torch.Tensor, *, flips: bool = False, output: str = "classes",
                   n_classes: int = 2) -> torch.Tensor:
    """The network's raw output for a batch of tiles; with ``flips``, the mean over :data:`FLIP_AXES` of the
    output of the flipped tiles flipped back (fp32), the horizontal/vertical maps of a ``hover`` output
    negated along their own flip (an x offset changes sign when the image is mirrored left-right)."""
    if not flips:
        return model(x)
    total = None
    for axes in FLIP_AXES:
        y = model(torch.flip(x, axes) if axes else x).float()
        if axes:
            y = torch.flip(y, axes)
            if output == "hover":  # channels n_classes (x offset) and n_classes + 1 (y offset)
                sign = torch.ones(y.shape[1], dtype=y.dtype, device=y.device)
                if -1 in axes:
                    sign[n_classes] = -1
                if -2 in axes:
                    sign[n_classes + 1] = -1
                y = y * sign[None, :, None, None]
        total = y if total is None else total + y
    return total / len(FLIP_AXES)


def _argmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the class axis of (C, h, w) logits (first maximum wins, as torch.argmax).

    A comparison per class is 13x (2 classes: 53x) faster than torch.argmax(0) here, which reduced
    over a strided axis and took 70 % of the non-network time of a large image.
    """
    if logits.shape[0] == 2:
        return (logits[1] > logits[0]).to(torch.uint8)
    best = logits[0].clone()
    index = torch.zeros(best.shape, dtype=torch.int32)
    for c in range(1, logits.shape[0]):
        better = logits[c] > best
        best = torch.where(better, logits[c], best)
        index[better] = c
    return index


def _tile_batch(image, spec: InputSpec, plan: TilePlan, origins: list[tuple[int, int]]) -> np.ndarray:
    """(n, h, w, 3) float32 tiles; parts beyond the image are filled by mirror padding."""
    out = np.empty((len(origins), plan.tile_h, plan.tile_w, 3), np.float32)
    for i, (y, x) in enumerate(origins):
        y1, x1 = min(y + plan.tile_h, spec.height), min(x + plan.tile_w, spec.width)
        tile = read_tile(image, spec, y, y1, x, x1)
        pad_h, pad_w = plan.tile_h - tile.shape[0], plan.tile_w - tile.shape[1]
        if pad_h or pad_w:
            tile = np.pad(tile, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        out[i] = tile
    return out


def segment_progressive(
    model: AttentionUNet,
    info: ModelInfo,
    image,
    settings: InferenceSettings | None = None,
    *,
    out=None,
    logits_out=None,
    cue_out=None,
    name: str = "image",
    tile_filter=None,
    resume_bands: dict[int, int] | None = None,
    on_band=None,
) -> Generator[dict, None, SegmentationResult]:
    """Segment ``image``, yielding ``{"stage", "done", "total"}`` after every tile batch.

    Args:
        model: a class-head network (see :func:`..model_files.load_model`); moved to the device.
        info: its metadata (normalisation, classes, instance post-processing).
        image: (H, W, 3|4), (H, W) or (3|4, H, W) array, in memory or lazy (dask/zarr/memmap).
        settings: inference settings; by default :class:`InferenceSettings()`.
        out: optional (H, W) array to write labels into (e.g. a memmap or zarr array for huge images).
        logits_out: optional (classes, H, W) float array that receives the blended logits band by band
            (e.g. for probability maps, or to compare tiled and whole-image outputs); None skips them.
        cue_out: optional (E, H, W) array that receives the blended cue of an instance-aware output
            (:mod:`.outputs`) band by band, e.g. a zarr array for a slide whose nuclei are split
            block by block afterwards; by default the cue is kept in memory only when
            ``settings.instances`` asks for nuclei.
        name: how to call the image in messages.
        tile_filter: optional ``f(y0, y1, x0, x1) -> bool`` over tile windows (image pixels); tiles for
            which it is False are neither read nor computed (e.g. glass on a slide: see
            ``inference/slide.py``). Pixels that no computed tile covers are background, and rows of a
            band that no computed tile covers are not written to ``out`` at all (a new zarr store
            then keeps no chunk for them); None computes every tile.
        resume_bands: ``{strip index: tile rows finished}`` of an earlier, interrupted run writing into
            the same ``out`` (what ``on_band`` reported). Those rows are neither computed nor written
            again; the tile rows whose tiles reach below them are recomputed (without writing) so that
            the blending, and so the labels, are exactly those of an uninterrupted run.
        on_band: optional ``f(strip index, tile rows finished)`` called after each band of labels has
            been written to ``out`` (slide segmentation records it in the store to resume from).

    Returns (as the generator's return value): a :class:`SegmentationResult`.

    Raises:
        ImageInputError: the image cannot be segmented (message says why).
        ValueError: the model is a pretraining (noise) model, or settings are invalid.
    """
    settings = settings or InferenceSettings()
    if info.head != "classes":
        raise ValueError("this is a pretraining (noise) model; segmentation needs a fine-tuned model with classes.")
    spec = inspect_image(image, allow_gray=settings.allow_gray, name=name)
    device = choose_device(settings.device)
    precision = choose_precision(device, settings.precision)
    batch = settings.batch or (8 if device.type == "cuda" else 1)
    factor = model.config.downsample_factor
    max_tile = max(factor, settings.tile // factor * factor)
    overlap = min(settings.overlap, max_tile // 2 - 1)
    plan = plan_tiles(spec.height, spec.width, max_tile=max_tile, overlap=max(overlap, 0), multiple=factor)
    n_classes = len(info.classes)
    n_cue = CUE_CHANNELS.get(info.output, 0)
    # the cue of an instance-aware output (inference/outputs.py), kept for the splitting only
    cue = cue_out if cue_out is not None or not n_cue else (
        np.zeros((n_cue, spec.height, spec.width), np.float32) if settings.instances else None)
    if cue is not None and tuple(cue.shape) != (n_cue, spec.height, spec.width):
        raise ValueError(f"cue_out shape {tuple(cue.shape)} differs from {(n_cue, spec.height, spec.width)}.")
    label_dtype = np.uint8 if n_classes <= 255 else np.uint16
    labels = out if out is not None else np.zeros((spec.height, spec.width), label_dtype)
    if tuple(labels.shape) != (spec.height, spec.width):
        raise ValueError(f"output shape {labels.shape} differs from the image's {(spec.height, spec.width)}.")
    if logits_out is not None and tuple(logits_out.shape) != (n_classes, spec.height, spec.width):
        raise ValueError(
            f"logits_out shape {tuple(logits_out.shape)} differs from {(n_classes, spec.height, spec.width)}."
        )

    model = fused_for_inference(model.to(device))
    memory_format = torch.channels_last if uses_channels_last(model, settings) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    window = torch.from_numpy(blend_window(plan.tile_h, plan.tile_w, max(plan.overlap, 1)))
    strips = column_strips(plan, settings.max_band_width)
    band_h = 2 * plan.tile_h

    def wanted(y: int, x: int) -> bool:
        return tile_filter is None or bool(tile_filter(y, min(y + plan.tile_h, spec.height),
                                                       x, min(x + plan.tile_w, spec.width)))

    # The tiles to compute, per strip and tile row (all of them without a filter).
    todo = [[[(y, x) for x in plan.xs[st.first : st.last + 1] if wanted(y, x)] for y in plan.ys] for st in strips]
    start = time.perf_counter()
    resume_bands = {int(k): int(v) for k, v in (resume_bands or {}).items()}
    # Tile rows already finished per strip, and the first row to compute again for the blending: the
    # first whose tiles reach below the finished rows (earlier rows add nothing there).
    finished = [min(max(resume_bands.get(s, 0), 0), len(plan.ys)) for s in range(len(strips))]
    first_row = [
        k if k in (0, len(plan.ys)) else next(j for j in range(k + 1) if plan.ys[j] + plan.tile_h > plan.ys[k])
        for k in finished
    ]
    total = sum(len(row) for rows in todo for row in rows)
    done = resumed = sum(len(row) for rows, k in zip(todo, finished) for row in rows[:k])
    computed = 0
    yield {"stage": "tiles", "done": done, "total": total}
    for s, (strip, strip_rows) in enumerate(zip(strips, todo)):
        if finished[s] == len(plan.ys):
            continue  # done by an earlier run
        # The blending band: two tile rows high, the strip's tiles wide; memory is bounded by the
        # tile size and max_band_width, whatever the image's size.
        acc = torch.zeros((n_classes + n_cue, band_h, strip.x1 - strip.x0), dtype=torch.float32)
        weight = torch.zeros((band_h, strip.x1 - strip.x0), dtype=torch.float32)
        keep0, keep1 = strip.keep0, min(strip.keep1, spec.width)
        k0, k1 = keep0 - strip.x0, keep1 - strip.x0
        band_top = plan.ys[first_row[s]]  # image row of acc[:, 0]

        def flush(until: int, write: bool = True) -> None:
            """Write rows [band_top, until) of the kept columns as labels and shift the band up."""
            nonlocal band_top
            rows = until - band_top
            if rows <= 0:
                return
            y1 = min(until, spec.height) if write else band_top
            c0, c1 = k0, k1
            if tile_filter is not None and y1 > band_top and k1 > k0:
                # Only the columns some computed tile covers are written (the rest stays as in `out`).
                cols = torch.nonzero(weight[: y1 - band_top, k0:k1].amax(0) > 0).flatten()
                c0, c1 = (k0 + int(cols[0]), k0 + int(cols[-1]) + 1) if len(cols) else (k0, k0)
            if y1 > band_top and c1 > c0:
                w = weight[: y1 - band_top, c0:c1]
                # Pixels no computed tile covers (tile_filter) have weight 0 and logits 0: background.
                blended = acc[:, : y1 - band_top, c0:c1] / (w if tile_filter is None else w.clamp_min(1e-12))
                logits = blended[:n_classes]
                x0, x1 = strip.x0 + c0, strip.x0 + c1
                labels[band_top:y1, x0:x1] = _argmax_classes(logits).numpy().astype(label_dtype, copy=False)
                if logits_out is not None:
                    logits_out[:, band_top:y1, x0:x1] = logits.numpy()
                if cue is not None:
                    cue[:, band_top:y1, x0:x1] = blended[n_classes:].numpy()
            acc[:, : band_h - rows] = acc[:, rows:].clone()
            acc[:, band_h - rows :] = 0
            weight[: band_h - rows] = weight[rows:].clone()
            weight[band_h - rows :] = 0
            band_top = until

        with torch.inference_mode():
            for r in range(first_row[s], len(plan.ys)):
                row = strip_rows[r]
                for b in range(0, len(row), batch):
                    origins = row[b : b + batch]
                    tiles = torch.from_numpy(_tile_batch(image, spec, plan, origins)).permute(0, 3, 1, 2)
                    x_in = info.normalization.apply(tiles).to(device).contiguous(memory_format=memory_format)
                    with autocast(device, precision):
                        logits = network_output(model, x_in, flips=settings.flips, output=info.output,
                                                n_classes=n_classes)
                    logits = torch.cat([t for t in split_output(logits.float(), info.output, n_classes)
                                        if t is not None], dim=1).cpu()
                    for (ty, tx), tile_logits in zip(origins, logits):
                        oy, ox = ty - band_top, tx - strip.x0
                        acc[:, oy : oy + plan.tile_h, ox : ox + plan.tile_w] += tile_logits * window
                        weight[oy : oy + plan.tile_h, ox : ox + plan.tile_w] += window
                    computed += len(origins)
                    if r >= finished[s]:
                        done += len(origins)
                    yield {"stage": "tiles", "done": done, "total": total}
                next_top = plan.ys[r + 1] if r + 1 < len(plan.ys) else plan.padded_h
                flush(next_top, write=r >= finished[s])  # rows an earlier run finished stay as they are
                if on_band is not None and r >= finished[s]:
                    on_band(s, r + 1)

    notes = list(spec.notes)
    instances = None
    if settings.instances:
        yield {"stage": "instances", "done": 0, "total": 1}
        from .instances import split_nuclei

        instances = split_nuclei(np.asarray(labels) > 0, None if cue is None else np.asarray(cue), info)
        yield {"stage": "instances", "done": 1, "total": 1}
    return SegmentationResult(
        labels=labels,
        instances=instances,
        cue=cue if cue_out is None else None,
        notes=notes,
        seconds=time.perf_counter() - start,
        device=str(device),
        precision=precision.value,
        tiles=total,
        tile_shape=(plan.tile_h, plan.tile_w),
        tiles_computed=computed,
        tiles_resumed=resumed,
        flips=settings.flips,
    )


def segment(model: AttentionUNet, info: ModelInfo, image, settings: InferenceSettings | None = None, **kw) -> SegmentationResult:
    """Headless :func:`segment_progressive`: run it to the end and return the result."""
    return run_generator(segment_progressive(model, info, image, settings, **kw))
