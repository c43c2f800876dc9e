"""Resolution everywhere: THE one path from an image's microns per pixel to the model's and back.

Images (``genselfdiff segment``, the Segment panel) and whole slides (``inference/slide.py``) share it:

1. **Which resolution.** :func:`choose_resolution` takes, in this order, a value the user gave
   (``--mpp``, the panel's Resolution field: ``given``), what the file or napari layer records
   (``core/io/resolution.py``; a layer's scale in microns: ``recorded``), an estimate from the image
   itself (``estimated``, see 3.), else the model's own resolution (``assumed``). A :class:`Resolution`
   carries the value, that source and a detail ("OME PhysicalSizeX/Y", "--mpp", "median nucleus
   ..."), and every front end prints :meth:`Resolution.describe`. :func:`check_mpp` refuses a given
   value that is 0, negative, or 100x off the model's, naming it and what to type instead.
2. **Resample, segment, map back.** :func:`model_mpp` is the model's resolution (its file's ``mpp``,
   else 0.25, MoNuSeg's 40x). Within :data:`RESAMPLE_TOLERANCE` nothing is resampled. Otherwise the
   image is read through :class:`ResampledView` (bilinear, Gaussian pre-filter when shrinking) at
   ``f = image mpp / model mpp`` model pixels per image pixel, segmented there (nuclei are split at
   the model's resolution, where its splitting parameters were chosen), and labels, instances and the
   uncertainty map are mapped back to the image's own pixels by :func:`map_back` (labels and
   instances: the most frequent of up to 3x3 model pixels under each image pixel; uncertainty: their
   mean). Exports therefore stay in the image's pixels. Slides use the same view and the same
   :func:`map_back`, block by block.
3. **Estimate** (:func:`estimate_mpp`), only for models that can (:func:`estimate_params`: nuclei
   models; a gland model assumes its own resolution). The central part of the image is segmented at
   a few candidate resolutions (:data:`ESTIMATE_CANDIDATES` times the model's); at each, the median
   equivalent diameter of the whole nuclei found, against the training set's median nucleus
   (:data:`TRAINING_NUCLEUS_DIAMETER_UM`, MoNuSeg training masks; computed by
   ``benchmarks/nucleus_size_reference.py``), says what resolution the image would have. The
   candidate that agrees best with itself wins; the estimate is used when it is confident (enough
   nuclei, self-consistent), else the model's resolution is assumed and the note says so. Each probe
   is :data:`ESTIMATE_PROBE` model pixels a side, so estimating costs a fixed few small tiles
   (measured in docs/resolution.md).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import GenSelfDiffError

#: Resolution assumed for models whose file records none: MoNuSeg's 40x scans (about 0.25 um/px).
DEFAULT_MODEL_MPP = 0.25
#: Relative difference of image and model resolutions below which no resampling is done.
RESAMPLE_TOLERANCE = 0.05
#: A given resolution this many times finer or coarser than the model's is refused (a typo, nm, dpi).
MAX_RESOLUTION_RATIO = 100.0
#: The sources of a resolution, as every message words them.
SOURCES = ("given", "recorded", "estimated", "assumed")

# --- the estimator's constants (benchmarks/nucleus_size_reference.py computes them) ---------------

#: Median over the 30 MoNuSeg TRAINING images of each image's median nucleus equivalent diameter in
#: the expert instance masks (23.52 px at 0.25 um/px; the test images were not looked at).
TRAINING_NUCLEUS_DIAMETER_UM = 5.880
#: Candidate resolutions probed, as multiples of the model's (0.25 model: 40x, 20x, 10x).
ESTIMATE_CANDIDATES = (1.0, 2.0, 4.0)
#: Side of each probe, in model pixels (a central crop of the image resampled to the candidate).
ESTIMATE_PROBE = 256
#: A candidate is the image's resolution when its nuclei imply at most this many times it (above: the
#: image is coarser, try the next). Chosen on the training images: 1.11 at most at the right
#: magnification, 1.23 at least one step too fine.
ESTIMATE_RATIO_LIMIT = 1.2
#: The finest candidate is confirmed by the next: more whole nuclei than this in that probe mean the
#: image is coarser still (at 4x too fine the model merges tiny nuclei into blobs of a normal size).
#: On the training images: at most 30 at 40x, at least 37 at 10x.
ESTIMATE_CONFIRM_NUCLEI = 35
#: log2 margin from that limit at which the confidence is full.
ESTIMATE_MARGIN = 0.25
#: Fewest whole nuclei in the chosen probe for any confidence.
ESTIMATE_MIN_NUCLEI = 12
#: Confidence at and above which an estimate is used (else the model's resolution is assumed): on the
#: training images 0.02 put the most resolutions within 15 % over 40x, 20x and 10x (68 of 90; 0.2: 63).
ESTIMATE_MIN_CONFIDENCE = 0.02


class ResolutionError(GenSelfDiffError, ValueError):
    """A resolution cannot be used (0, negative, 100x off the model's); the message says what to type."""


@dataclass(frozen=True)
class Resolution:
    """An image's microns per pixel and where it came from.

    Attributes:
        mpp: microns per pixel.
        source: "given", "recorded", "estimated" or "assumed" (:data:`SOURCES`).
        detail: where exactly ("--mpp", "OME PhysicalSizeX/Y", "layer scale", "model file", ...).
        confidence: for estimates, in [0, 1] (None otherwise).
        estimate: for "assumed" after an unconfident estimate, the value the estimate gave.
    """

    mpp: float
    source: str
    detail: str = ""
    confidence: float | None = None
    estimate: float | None = None

    def describe(self) -> str:
        """"0.5 um/px (given: --mpp)", "0.25 um/px (assumed: the model's; the estimate ... was not confident)"."""
        detail = self.detail
        if self.confidence is not None and self.source == "estimated":
            detail = f"{detail}, confidence {self.confidence:.2f}" if detail else f"confidence {self.confidence:.2f}"
        return f"{self.mpp:.4g} um/px ({self.source}{': ' + detail if detail else ''})"

    def to_dict(self) -> dict[str, Any]:
        out = {"mpp": round(float(self.mpp), 6), "source": self.source, "detail": self.detail}
        if self.confidence is not None:
            out["confidence"] = round(float(self.confidence), 3)
        if self.estimate is not None:
            out["estimate"] = round(float(self.estimate), 6)
        return out


def model_mpp(info) -> tuple[float, str]:
    """The microns per pixel a model was trained at, and where that came from.

    Looks at ``info.mpp`` (model files that record it), then ``provenance["mpp"]`` and
    ``card["mpp"]``; models that record none were trained on MoNuSeg (40x) and get
    :data:`DEFAULT_MODEL_MPP`.
    """
    for where, value in (
        (getattr(info, "mpp_source", "model file"), getattr(info, "mpp", None)),
        ("model provenance", (getattr(info, "provenance", None) or {}).get("mpp")),
        ("model card", (getattr(info, "card", None) or {}).get("mpp")),
    ):
        try:
            v = float(value) if value is not None else None
        except (TypeError, ValueError):
            v = None
        if v and v > 0 and math.isfinite(v):
            return v, where
    return DEFAULT_MODEL_MPP, "default (MoNuSeg, 40x)"


def with_model_mpp(info, mpp: float, where: str):
    """A copy of ``info`` whose network works at ``mpp`` um/px, as a user said (``where``: the option,
    e.g. "--model-mpp"); :func:`model_mpp` then returns it with ``where``. Its training images' resolution
    stays what it was (``input_mpp``: images that record none are still taken as those, and resolution
    estimates still look for the magnifications around it). The file is not changed."""
    training = getattr(info, "input_mpp", None) or model_mpp(info)[0]
    return replace(info, mpp=float(mpp), mpp_source=where, input_mpp=float(training))


def check_mpp(value: Any, net_mpp: float, *, what: str = "the resolution") -> float:
    """``value`` as microns per pixel, or a :class:`ResolutionError` naming it and what to type.

    Refused: not a number, not finite, 0 or negative, or more than :data:`MAX_RESOLUTION_RATIO`
    times finer or coarser than the model's ``net_mpp``.
    """
    typical = "about 0.25 for a 40x scan, 0.5 for 20x, 1.0 for 10x"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ResolutionError(f"{what} {value!r} is not a number; type microns per pixel, {typical}.") from None
    if not math.isfinite(v) or v <= 0:
        raise ResolutionError(
            f"{what} {value} um/px is not a resolution (it must be more than 0); type microns per pixel, {typical}."
        )
    ratio = v / net_mpp
    if ratio > MAX_RESOLUTION_RATIO or ratio < 1.0 / MAX_RESOLUTION_RATIO:
        hint = ""
        if v >= 20:
            hint = (f" If {v:g} is nanometres per pixel, type {v / 1000:g}; if it is dots per inch, it says "
                    "nothing about the microscope.")
        raise ResolutionError(
            f"{what} {v:g} um/px is {ratio if ratio > 1 else 1 / ratio:.0f}x "
            f"{'coarser' if ratio > 1 else 'finer'} than the model's {net_mpp:g} um/px: no H&E scan is segmented "
            f"at that. Type microns per pixel, {typical}.{hint}"
        )
    return v


# --- choosing -------------------------------------------------------------------------------------


def estimate_params(info) -> dict | None:
    """How this model estimates an unknown resolution, or None when it cannot.

    A model file may say so in ``postprocess["resolution_estimate"]`` (``{"method": "nucleus_size",
    "diameter_um": ...}``; ``{"method": null}`` turns it off). Otherwise a model estimates when it is
    a nuclei model: a class named "nucleus"/"nuclei" and nucleus splitting (``postprocess["instances"]``);
    it then uses :data:`TRAINING_NUCLEUS_DIAMETER_UM`. Any other model (glands, ...) cannot.
    """
    post = getattr(info, "postprocess", None) or {}
    explicit = post.get("resolution_estimate") if isinstance(post, dict) else None
    if isinstance(explicit, dict):
        if explicit.get("method") != "nucleus_size":
            return None
        return {"diameter_um": float(explicit.get("diameter_um", TRAINING_NUCLEUS_DIAMETER_UM))}
    names = {str(getattr(c, "name", "")).lower() for c in getattr(info, "classes", [])}
    if names & {"nucleus", "nuclei"} and isinstance(post, dict) and "instances" in post:
        return {"diameter_um": TRAINING_NUCLEUS_DIAMETER_UM}
    return None


def layer_resolution(scale, units=None, metadata: dict | None = None) -> tuple[float | None, str]:
    """The resolution a napari layer carries: the slide reader's record in ``metadata`` (the file's
    mpp), else its Y/X ``scale`` when its ``units`` are microns (napari's default unit "pixel" or a
    scale of 1 without units says nothing). Returns ``(mpp or None, detail)``."""
    record = (metadata or {}).get("slide") or (metadata or {}).get("image") or {}
    mpp = record.get("mpp") if isinstance(record, dict) else None
    if mpp:
        return float(mpp), str(record.get("mpp_source") or "the file")
    names = [str(u).lower().replace("µ", "u").replace("μ", "u") for u in (units or [])]
    to_um = {"um": 1.0, "micrometer": 1.0, "micrometre": 1.0, "micron": 1.0, "nm": 1e-3, "nanometer": 1e-3,
             "mm": 1e3, "millimeter": 1e3}
    if scale is not None and len(names) >= 2 and names[-1] in to_um and names[-2] in to_um:
        sy, sx = float(scale[-2]) * to_um[names[-2]], float(scale[-1]) * to_um[names[-1]]
        if sy > 0 and sx > 0:
            return (sy + sx) / 2.0, "layer scale"
    return None, ""


def choose_resolution(info, *, given: Any = None, recorded: float | None = None, recorded_detail: str = "",
                      given_detail: str = "given") -> Resolution | None:
    """The resolution to segment at when it does not need the image: given (checked), else recorded,
    else None (the caller estimates, when :func:`estimate_params`, or assumes :func:`assumed`)."""
    net, _ = model_mpp(info)
    if given is not None and given != "":
        return Resolution(check_mpp(given, net, what=f"the resolution ({given_detail})"), "given", given_detail)
    if recorded:
        return Resolution(float(recorded), "recorded", recorded_detail or "the file")
    return None


def assumed(info, reason: str = "", estimate: float | None = None) -> Resolution:
    """The resolution of the model's training images, assumed (``reason`` says why): the model's own,
    or its ``input_mpp`` when it works at another (a gland model working at half its images' pixels)."""
    input_mpp = getattr(info, "input_mpp", None)
    if input_mpp:
        detail = "the model's training images'"
        return Resolution(float(input_mpp), "assumed", detail + (f"; {reason}" if reason else ""), estimate=estimate)
    net, where = model_mpp(info)
    detail = "the model's" + (f" ({where})" if where != "model file" else "")
    return Resolution(net, "assumed", detail + (f"; {reason}" if reason else ""), estimate=estimate)


# --- resampling and mapping back ------------------------------------------------------------------


def _span(key, length: int) -> tuple[int, int]:
    start, stop, step = key.indices(length)
    if step != 1:
        raise ValueError("views support contiguous slices only")
    return start, max(start, stop)


class ResampledView:
    """A lazy (H * f, W * f, 3) uint8 view of an (H, W, 3|4) uint8 array, resampled on read (bilinear).

    Output pixel centres map to source coordinates ``(i + 0.5) / f - 0.5``; when shrinking (f < 1) the
    window is first smoothed with a Gaussian of sigma ``(1 / f - 1) / 2`` (as scikit-image's resize).
    Only the source window under the requested slice is read.
    """

    def __init__(self, source, factor: float):
        self.source = source
        self.factor = float(factor)
        h, w = int(source.shape[0]), int(source.shape[1])
        self.src_shape = (h, w)
        self.shape = (max(1, int(round(h * self.factor))), max(1, int(round(w * self.factor))), 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.sigma = max(0.0, (1.0 / self.factor - 1.0) / 2.0)

    def _coords(self, start: int, stop: int, n_src: int) -> np.ndarray:
        return np.clip((np.arange(start, stop) + 0.5) / self.factor - 0.5, 0, n_src - 1)

    def __getitem__(self, key):
        ky, kx = key[0], key[1]
        y0, y1 = _span(ky, self.shape[0])
        x0, x1 = _span(kx, self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        h, w = self.src_shape
        cy, cx = self._coords(y0, y1, h), self._coords(x0, x1, w)
        pad = int(math.ceil(3 * self.sigma)) + 1
        sy0, sy1 = max(int(np.floor(cy[0])) - pad, 0), min(int(np.floor(cy[-1])) + 2 + pad, h)
        sx0, sx1 = max(int(np.floor(cx[0])) - pad, 0), min(int(np.floor(cx[-1])) + 2 + pad, w)
        window = np.asarray(self.source[sy0:sy1, sx0:sx1, :3]).astype(np.float32)
        if self.sigma > 0.3:
            from scipy import ndimage

            window = ndimage.gaussian_filter(window, sigma=(self.sigma, self.sigma, 0), mode="nearest")
        cy, cx = cy - sy0, cx - sx0
        r0 = np.floor(cy).astype(np.intp)
        c0 = np.floor(cx).astype(np.intp)
        r1 = np.minimum(r0 + 1, window.shape[0] - 1)
        c1 = np.minimum(c0 + 1, window.shape[1] - 1)
        wy = (cy - r0).astype(np.float32)[:, None, None]
        wx = (cx - c0).astype(np.float32)[None, :, None]
        rows = window[r0] * (1 - wy) + window[r1] * wy
        out = rows[:, c0] * (1 - wx) + rows[:, c1] * wx
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out if len(key) < 3 else out[..., key[2]]


def source_indices(start: int, stop: int, f: float, offset: int, n: int, phase: float = 0.5) -> np.ndarray:
    """Model pixel under image pixels ``start..stop-1`` (at ``phase`` within each pixel, 0.5 the centre):
    ``floor((i + phase) * f) - offset``, clipped to ``[0, n)``."""
    return np.clip(np.floor((np.arange(start, stop) + phase) * f).astype(np.intp) - offset, 0, n - 1)


def _mode(samples: np.ndarray) -> np.ndarray:
    """The most frequent value over axis 0 (ties: a non-zero value before 0, then the first)."""
    k = samples.shape[0]
    best = samples[0].copy()
    best_count = np.full(best.shape, -1.0, np.float32)
    for i in range(k):
        count = np.zeros(best.shape, np.float32)
        for j in range(k):
            count += samples[i] == samples[j]
        count += 0.5 * (samples[i] != 0)  # a tie between a nucleus and background: the nucleus
        better = count > best_count
        best[better] = samples[i][better]
        best_count[better] = count[better]
    return best


def map_back(model_array, rows: tuple[int, int], cols: tuple[int, int], f: float, *, offset=(0, 0),
             how: str = "mode") -> np.ndarray:
    """Image pixels ``rows[0]..rows[1]-1`` x ``cols[0]..cols[1]-1`` from an array at the model's
    resolution (``f`` model pixels per image pixel; model pixel (0, 0) is image position ``offset``
    times ``1/f``).

    ``how``: "mode" (labels, instances: the most frequent of ``k x k`` samples per image pixel,
    ``k = ceil(f)`` up to 3; nearest for ``f <= 1``), "nearest", or "mean" (a float map: the samples'
    mean). Only the model window under the requested pixels is read, so ``model_array`` may be lazy.
    """
    (y0, y1), (x0, x1) = rows, cols
    n_y, n_x = int(model_array.shape[0]), int(model_array.shape[1])
    k = 1 if how == "nearest" or f <= 1 else min(int(math.ceil(f - 1e-9)), 3)
    phases = [(j + 0.5) / k for j in range(k)]
    ys = [source_indices(y0, y1, f, offset[0], n_y, p) for p in phases]
    xs = [source_indices(x0, x1, f, offset[1], n_x, p) for p in phases]
    ry0, ry1 = min(int(a[0]) for a in ys), max(int(a[-1]) for a in ys) + 1
    rx0, rx1 = min(int(a[0]) for a in xs), max(int(a[-1]) for a in xs) + 1
    window = np.asarray(model_array[ry0:ry1, rx0:rx1])
    samples = np.stack([window[np.ix_(a - ry0, b - rx0)] for a in ys for b in xs])
    if k == 1:
        return samples[0]
    if how == "mean":
        return samples.astype(np.float32).mean(axis=0).astype(window.dtype, copy=False)
    return _mode(samples)


# --- segmenting at a resolution -------------------------------------------------------------------


def _as_uint8_rgb(image, spec):
    """The image as an (H, W, 3|4) uint8 array ResampledView reads (uint8 RGB(A) as it is, lazy ones too)."""
    if np.dtype(image.dtype) == np.uint8 and spec.layout == "hwc" and spec.channels in (3, 4):
        return image
    from ..image_input import read_tile

    rgb = read_tile(image, spec, 0, spec.height, 0, spec.width)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def resample_factor(image_mpp: float, net_mpp: float) -> float:
    """Model pixels per image pixel (1.0 within :data:`RESAMPLE_TOLERANCE`)."""
    f = float(image_mpp) / float(net_mpp)
    return 1.0 if abs(f - 1.0) <= RESAMPLE_TOLERANCE else f


def segment_at_resolution(model, info, image, settings=None, resolution: Resolution | None = None, *,
                          uncertainty: bool = False, name: str = "image") -> Generator[dict, None, tuple]:
    """Segment ``image`` at the model's resolution and map the result back to its pixels.

    ``resolution`` is the image's (None: the model's own, assumed). Yields the progress events of
    :func:`.predict.segment_progressive`; returns ``(SegmentationResult, uncertainty map or None)``
    with labels, instances and the map of the image's (H, W) shape, and a first note saying which
    resolution was used and what was done.
    """
    from ..image_input import inspect_image
    from .predict import InferenceSettings, segment_progressive
    from .uncertainty import segment_with_uncertainty

    settings = settings or InferenceSettings()
    resolution = resolution or assumed(info)
    net, where = model_mpp(info)
    spec = inspect_image(image, allow_gray=settings.allow_gray, name=name)
    f = resample_factor(resolution.mpp, net)
    if f == 1.0:
        source = image
        note = f"resolution {resolution.describe()}; segmented as it is (model {net:.4g} um/px)"
    else:
        source = ResampledView(_as_uint8_rgb(image, spec), f)
        note = (f"resolution {resolution.describe()}; segmented at {f:.3g}x its pixels for the model's "
                f"{net:.4g} um/px ({where}), results mapped back to its {spec.width}x{spec.height} pixels")
    if uncertainty:
        result, umap = yield from segment_with_uncertainty(model, info, source, settings, name=name)
    else:
        result, umap = (yield from segment_progressive(model, info, source, settings, name=name)), None
    if f != 1.0:
        shape = (spec.height, spec.width)
        labels = map_back(result.labels, (0, shape[0]), (0, shape[1]), f)
        instances = result.instances
        if instances is not None:
            from skimage.segmentation import relabel_sequential

            instances = relabel_sequential(map_back(instances, (0, shape[0]), (0, shape[1]), f))[0]
        if umap is not None:
            umap = map_back(umap, (0, shape[0]), (0, shape[1]), f, how="mean")
        notes = [n for n in spec.notes] + [n for n in result.notes if n not in spec.notes]
        changed = {"labels": labels, "instances": instances, "notes": notes}
        cue = getattr(result, "cue", None)  # an instance-aware model's cue maps, (E, h, w)
        if cue is not None:
            changed["cue"] = np.stack([map_back(c, (0, shape[0]), (0, shape[1]), f, how="mean") for c in cue])
        result = replace(result, **changed)
    result.notes.insert(0, note)
    return result, umap


# --- estimating -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One candidate resolution tried: whole nuclei found, their median diameter (model pixels) and
    the resolution they imply (``candidate * reference / median``)."""

    candidate: float
    nuclei: int
    diameter_px: float | None
    implied: float | None

    @property
    def ratio(self) -> float:
        """implied / candidate: about 1 at the image's resolution, larger when the image is coarser."""
        return self.implied / self.candidate if self.implied else math.inf


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate_mpp` found: the estimate (a candidate, None when none fits), the
    resolution the nuclei's size alone implies there (``nucleus_mpp``), a confidence in [0, 1], the
    probes and the :class:`Resolution` to use ("estimated", or "assumed" when not confident)."""

    mpp: float | None
    confidence: float
    probes: tuple[Probe, ...]
    resolution: Resolution
    nucleus_mpp: float | None = None
    seconds: float = 0.0


def whole_nucleus_diameters(instances: np.ndarray) -> np.ndarray:
    """Equivalent diameters (pixels) of the instances that do not touch the array's border."""
    inst = np.asarray(instances)
    if not inst.any():
        return np.zeros(0)
    areas = np.bincount(inst.ravel())
    border = np.unique(np.concatenate([inst[0], inst[-1], inst[:, 0], inst[:, -1]]))
    keep = np.ones(areas.shape, bool)
    keep[0] = False
    keep[border] = False
    keep &= areas > 0
    return np.sqrt(4.0 * areas[keep] / math.pi)


def _central_crop(image, spec, side: int):
    """The central ``side`` x ``side`` window of the image (all of it when smaller) as uint8 RGB."""
    h, w = spec.height, spec.width
    ch, cw = min(side, h), min(side, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    from ..image_input import read_tile

    rgb = read_tile(image, spec, y0, y0 + ch, x0, x0 + cw)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _probe(model, info, image, spec, settings, candidate: float, net: float, reference_px: float, name: str) -> Probe:
    from .predict import segment

    g = candidate / net
    crop = _central_crop(image, spec, int(math.ceil(ESTIMATE_PROBE / g)))
    view = ResampledView(crop, g) if abs(g - 1) > 1e-9 else crop
    result = segment(model, info, view, settings, name=name)
    d = whole_nucleus_diameters(result.instances)
    median = float(np.median(d)) if d.size else None
    return Probe(candidate, int(d.size), median, candidate * reference_px / median if median else None)


def estimate_mpp(model, info, image, settings=None, *, name: str = "image") -> Generator[dict, None, Estimate]:
    """Estimate the resolution of ``image`` from the size of its nuclei.

    The candidates (:data:`ESTIMATE_CANDIDATES` times the resolution of the model's training images: its
    ``input_mpp``, else its own) are tried from the finest: the central part of the image, resampled as if it were at the candidate, is segmented
    (:data:`ESTIMATE_PROBE` model pixels a side) and the median diameter of its whole nuclei is
    compared with a training nucleus. When the image is coarser than the candidate its nuclei come
    out small (``ratio`` = implied / candidate above :data:`ESTIMATE_RATIO_LIMIT`) and the next,
    coarser candidate is tried; the first candidate where they are not too small is the estimate.
    The finest candidate is confirmed by the next one (:data:`ESTIMATE_CONFIRM_NUCLEI`), and when the
    nuclei are too small even at the coarsest, the coarsest is taken with a low confidence. (A candidate finer than the image is not informative the other way: the model splits oversized
    nuclei into pieces of its usual size; measured on the MoNuSeg training images,
    ``benchmarks/nucleus_size_reference.py``.) Scans come at a few magnifications, and the nuclei's
    own size varies by +-25 % between tissues, so the candidate, not the continuous value, is used.

    Yields ``{"stage": "estimating resolution", "done", "total"}``; returns an :class:`Estimate`
    whose ``resolution`` is "estimated" when confident (:data:`ESTIMATE_MIN_CONFIDENCE`), else
    "assumed" (the model's), saying why. Models that cannot estimate (:func:`estimate_params` None)
    get "assumed" without any probe.
    """
    import time

    from ..image_input import inspect_image
    from .predict import InferenceSettings

    started = time.perf_counter()
    params = estimate_params(info)
    if params is None:
        return Estimate(None, 0.0, (), assumed(info, "this model does not estimate resolutions"))
    settings = settings or InferenceSettings()
    spec = inspect_image(image, allow_gray=settings.allow_gray, name=name)
    net, _ = model_mpp(info)
    reference_px = params["diameter_um"] / net  # a typical training nucleus, in model pixels
    # the magnifications tried: around the training images' (a model working at another resolution,
    # --model-mpp, still looks for 40x, 20x, ... scans)
    anchor = getattr(info, "input_mpp", None) or net
    probe_settings = replace(settings, instances=True, tile=max(settings.tile, ESTIMATE_PROBE))
    probes: list[Probe] = []
    total = len(ESTIMATE_CANDIDATES)

    def probe(i: int) -> Probe:
        while len(probes) <= i:
            probes.append(_probe(model, info, image, spec, probe_settings, anchor * ESTIMATE_CANDIDATES[len(probes)],
                                 net, reference_px, name))
        return probes[i]

    chosen, previous, fallback = None, None, False
    for i in range(total):
        yield {"stage": "estimating resolution", "done": len(probes), "total": total}
        here = probe(i)
        if here.implied and here.ratio <= ESTIMATE_RATIO_LIMIT:
            if i == 0 and total > 1:
                yield {"stage": "estimating resolution", "done": len(probes), "total": total}
                if probe(1).nuclei > ESTIMATE_CONFIRM_NUCLEI:
                    continue  # many whole nuclei one step coarser: here tiny nuclei were merged
            chosen = here
            break
        previous = here
    last = probes[-1]
    if chosen is None and last.implied and last.nuclei >= ESTIMATE_MIN_NUCLEI:
        chosen, fallback = last, True  # small even at the coarsest candidate: at least that coarse
    yield {"stage": "estimating resolution", "done": total, "total": total}
    seconds = time.perf_counter() - started
    if chosen is None:
        why = ("no nuclei were found to estimate it from" if not last.implied else
               f"only {last.nuclei} whole nuclei at {last.candidate:g} um/px")
        return Estimate(None, 0.0, tuple(probes), assumed(info, f"the estimate failed: {why}"),
                        nucleus_mpp=last.implied, seconds=seconds)
    confidence = _confidence(chosen, previous, fallback)
    detail = (f"{chosen.nuclei} nuclei of median {chosen.diameter_px * net / chosen.candidate:.3g} px, training "
              f"{params['diameter_um']:.3g} um")
    if confidence >= ESTIMATE_MIN_CONFIDENCE:
        resolution = Resolution(chosen.candidate, "estimated", detail, confidence=confidence)
    else:
        why = (f"only {chosen.nuclei} whole nuclei" if chosen.nuclei < ESTIMATE_MIN_NUCLEI
               else "the nuclei sizes are ambiguous between two magnifications")
        resolution = assumed(info, f"the estimate {chosen.candidate:.3g} um/px was not confident ({why}; "
                                   f"confidence {confidence:.2f})", estimate=chosen.candidate)
    return Estimate(chosen.candidate, confidence, tuple(probes), resolution, nucleus_mpp=chosen.implied,
                    seconds=seconds)


def _confidence(chosen: Probe, previous: Probe | None, fallback: bool) -> float:
    """In [0, 1]: how clearly the chosen probe's nuclei are not too small and the finer probe's before
    it were (log2 margins from :data:`ESTIMATE_RATIO_LIMIT`, full at :data:`ESTIMATE_MARGIN`), times
    whether there were enough nuclei (:data:`ESTIMATE_MIN_NUCLEI`). A fallback to the coarsest
    candidate (its nuclei too small as well) gets a quarter."""
    limit = math.log2(ESTIMATE_RATIO_LIMIT)
    if fallback:
        margin = 0.25
    else:
        margin = (limit - math.log2(chosen.ratio)) / ESTIMATE_MARGIN
        if previous is not None and previous.implied:
            margin = min(margin, (math.log2(previous.ratio) - limit) / ESTIMATE_MARGIN)
    count = 0.0 if chosen.nuclei < ESTIMATE_MIN_NUCLEI else min(1.0, chosen.nuclei / (2.5 * ESTIMATE_MIN_NUCLEI))
    return round(float(np.clip(margin, 0.0, 1.0)) * count, 3)


def resolve_and_segment(model, info, image, settings=None, *, given: Any = None, recorded: float | None = None,
                        recorded_detail: str = "", given_detail: str = "given", uncertainty: bool = False,
                        estimate: bool = True, name: str = "image") -> Generator[dict, None, tuple]:
    """Choose the resolution (:func:`choose_resolution`, else :func:`estimate_mpp` when ``estimate``
    and the model can, else assumed), then :func:`segment_at_resolution`. Returns
    ``(SegmentationResult, uncertainty map or None, Resolution)``."""
    resolution = choose_resolution(info, given=given, recorded=recorded, recorded_detail=recorded_detail,
                                   given_detail=given_detail)
    if resolution is None:
        if estimate and estimate_params(info) is not None:
            found = yield from estimate_mpp(model, info, image, settings, name=name)
            resolution = found.resolution
        else:
            why = "nothing recorded" if estimate_params(info) is None else "nothing recorded, estimating off"
            resolution = assumed(info, why)
    result, umap = yield from segment_at_resolution(model, info, image, settings, resolution,
                                                    uncertainty=uncertainty, name=name)
    return result, umap, resolution


__all__ = [
    "DEFAULT_MODEL_MPP", "ESTIMATE_CANDIDATES", "Estimate", "MAX_RESOLUTION_RATIO", "Probe", "RESAMPLE_TOLERANCE",
    "ResampledView", "Resolution", "ResolutionError", "SOURCES", "TRAINING_NUCLEUS_DIAMETER_UM", "assumed",
    "check_mpp", "choose_resolution", "estimate_mpp", "estimate_params", "layer_resolution", "map_back",
    "model_mpp", "resample_factor", "resolve_and_segment", "segment_at_resolution", "source_indices",
    "whole_nucleus_diameters", "with_model_mpp",
]
