"""THE defaults: each default and each list of choices is written here once, and every front end (the
command line, the napari widget, the run configurations, the model file schema) reads it from here.

This module imports only the standard library, so that building the command-line parser stays quick
and imports neither numpy nor torch (``tests/cli/test_cli.py`` checks it). ``tests/core/test_defaults.py``
fails when a front end's default differs from the one written here.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

#: Image files read by the readers, the command line and the folder loaders (whole slides aside).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: Vendor whole-slide formats (tiffslide reads them); a .tif/.tiff may be a slide too
#: (core/io/slide.py: SLIDE_SUFFIXES, is_slide).
VENDOR_SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn", ".bif")
#: Slide formats that are recognised but cannot be read (each refused with what to do instead).
UNSUPPORTED_SLIDE_SUFFIXES = (".mrxs",)
#: QuPath GeoJSON files (its "Export objects as GeoJSON"), read as masks for training and as ground
#: truth for scoring (``core/annotations/qupath.py``).
GEOJSON_SUFFIXES = (".geojson",)

# --- inference -------------------------------------------------------------------------------------

#: Largest tile side in pixels: 512 measured 1.34-1.37x faster than 1024 on a CPU (the bottleneck
#: attention is quadratic in tile area) with 5-20x less memory (docs/performance.md).
INFERENCE_TILE = 512
#: Minimum overlap of neighbouring tiles in pixels, blended with a raised-cosine ramp.
INFERENCE_OVERLAP = 64


def overlap_for_tile(tile: int) -> int:
    """The overlap the widget uses with a tile size a person chose: :data:`INFERENCE_OVERLAP`, but at
    most an eighth of the tile (64 for the default 512 px tile, 32 for 256 px)."""
    return min(INFERENCE_OVERLAP, int(tile) // 8)


# --- device and precision --------------------------------------------------------------------------

#: The device names a person can choose (besides "cuda:N", which the run configurations also take).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_DEVICE = "auto"


class Precision(str, Enum):
    """Arithmetic precision; "auto" is resolved by :func:`.inference.device.choose_precision`."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


#: The precision names a person can choose, "auto" first.
PRECISION_CHOICES = tuple(p.value for p in Precision)
DEFAULT_PRECISION = Precision.AUTO.value

# --- training --------------------------------------------------------------------------------------

#: Diffusion steps T of the pretext task (the paper's 1000).
DIFFUSION_TIMESTEPS = 1000

#: Training patch side in pixels (the paper); also the fallback of model files that do not record it.
TRAINING_PATCH = 256
#: Step of the training patch grid in pixels (the paper).
TRAINING_STRIDE = 64
#: Class names of a segmentation model when none are given, background first.
DEFAULT_CLASSES = ("background", "nucleus")

#: Class display colours (RGBA, 0-255) by class id: transparent background, then saturated, non-pink
#: hues a pathologist reads easily on H&E (pink/purple). Read through :func:`class_colour`.
CLASS_PALETTE = (
    (0, 0, 0, 0),
    (255, 215, 0, 255),    # gold
    (0, 200, 255, 255),    # cyan
    (50, 220, 50, 255),    # green
    (255, 100, 0, 255),    # orange
    (160, 90, 255, 255),   # violet
    (255, 255, 255, 255),  # white
    (0, 90, 255, 255),     # blue
)


def class_colour(class_id: int) -> tuple[int, int, int, int]:
    """The default RGBA colour of a class id (the palette repeats every 8 ids; id 0 is transparent).

    Model files store each class's colour (:class:`.model_files.ClassInfo`); this is the colour of a
    class created without one, and the fallback of label images drawn without the model's classes.
    """
    return CLASS_PALETTE[class_id % len(CLASS_PALETTE)] if class_id else CLASS_PALETTE[0]

#: The network a training run builds when none is named (``--arch``; a key of
#: ``core.network.config.PRESETS``): the bundled nuclei model's, which trains on a CPU.
TRAINING_ARCH = "nuclei"

#: The napari widget trains on a CPU in the foreground of someone's work, so its training panels start
#: smaller than the paper's settings: these network presets (cheapest first; every name is a key of
#: ``core.network.config.PRESETS``), this preset, patch side and batch.
WIDGET_PRESETS = ("nuclei", "tiny", "small", "paper")
WIDGET_PRESET = "nuclei"
WIDGET_TRAINING_PATCH = 128
WIDGET_TRAINING_BATCH = 4

# --- bundled sample --------------------------------------------------------------------------------

#: The bundled 512x512 H&E crop (MoNuSeg test image TCGA-2Z-A9J9-01A-01-TS1, CC BY-NC-SA 4.0).
SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "samples" / "he_nuclei_512.png"
#: The crop's expert nucleus outlines (the MoNuSeg instance mask, same crop, relabelled 1..N).
SAMPLE_INSTANCES = SAMPLE_IMAGE.with_name("he_nuclei_512_instances.png")

#: What test-time flips (InferenceSettings.flips) were measured to be worth, as the CLI's help and the
#: Segment panel's tooltip say it (docs/results.md, "After v2").
FLIPS_MEASURED = "held-out MoNuSeg images at 40x: AJI +0.002, PQ +0.008"
