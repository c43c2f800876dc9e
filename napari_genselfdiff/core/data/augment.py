"""Training augmentations of the paper's code (sec. IV-C): flips, colour jitter, Gaussian blur (+ 90-degree turns).

Geometric ones (flips, 90-degree rotations) move the image and its mask together; photometric ones
(colour jitter, blur) change the image only. All draw from the ``numpy.random.Generator`` they are
given, so a batch is a pure function of its seed (needed for exact resume and for distributed ranks).

Parameters follow the reference code: colour jitter with brightness 0.5 and contrast 0.4 (factors
drawn uniformly from [0.5, 1.5] and [0.6, 1.4], torchvision's ``ColorJitter`` semantics) applied with
probability 0.3; Gaussian blur with sigma uniform in [0.1, 2.0] (torchvision's default range)
applied with probability 0.3. Rotations by 90 degrees are not in the paper; H&E tissue has no
preferred orientation, so they are on by default for fine-tuning and off for pretraining (which
follows the paper's flips only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# H, E and DAB stain vectors (Ruifrok & Johnston 2001, as in scikit-image) and their inverse.
_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
_RGB_FROM_HED = (_RGB_FROM_HED / np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)).astype(np.float32)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED).astype(np.float32)

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale uses for the contrast mean.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def flip_rotate(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, *,
                flips: bool = True, rot90: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Random horizontal/vertical flips and a random multiple of 90 degrees, the same for both arrays.

    Args:
        image: (h, w, C) array (square when ``rot90``).
        mask: (h, w) array or None.
        rng: random generator.
        flips: draw a horizontal and a vertical flip, each with probability 0.5.
        rot90: draw a rotation by 0, 90, 180 or 270 degrees.
    """
    arrays = [image] if mask is None else [image, mask]
    flip_x, flip_y, k = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(4))
    if flips and flip_x:
        arrays = [a[:, ::-1] for a in arrays]
    if flips and flip_y:
        arrays = [a[::-1] for a in arrays]
    if rot90 and k:
        arrays = [np.rot90(a, k, axes=(0, 1)) for a in arrays]
    arrays = [np.ascontiguousarray(a) for a in arrays]
    return arrays[0], (arrays[1] if mask is not None else None)


def color_jitter(image: np.ndarray, rng: np.random.Generator, *, brightness: float = 0.5,
                 contrast: float = 0.4) -> np.ndarray:
    """Scale brightness, then contrast (around the mean grey level), by random factors; clip to [0, 1].

    Args:
        image: (h, w, 3) float32 in [0, 1].
        rng: random generator.
        brightness: the factor is uniform in [max(0, 1 - brightness), 1 + brightness].
        contrast: the factor is uniform in [max(0, 1 - contrast), 1 + contrast].
    """
    b = rng.uniform(max(0.0, 1.0 - brightness), 1.0 + brightness)
    c = rng.uniform(max(0.0, 1.0 - contrast), 1.0 + contrast)
    out = np.clip(image * np.float32(b), 0.0, 1.0)
    mean = float((out @ _LUMA).mean())
    return np.clip(np.float32(c) * out + np.float32((1.0 - c) * mean), 0.0, 1.0).astype(np.float32)


def stain_jitter(image: np.ndarray, rng: np.random.Generator, *, scale: float = 0.25,
                 shift: float = 0.04) -> np.ndarray:
    """Perturb the stains: in haematoxylin-eosin-DAB optical density space (Ruifrok & Johnston), scale each stain by a factor uniform in [1 - scale, 1 + scale] and shift
    it by one uniform in [-shift, shift] (Tellez et al. 2018, "HED jitter"), then back to RGB.

    Stands in for the colour differences between hospitals, stain batches and scanners.

    Args:
        image: (h, w, 3) float32 in [0, 1].
        rng: random generator (6 draws).
        scale / shift: jitter strengths.
    """
    alpha = rng.uniform(1.0 - scale, 1.0 + scale, size=3)
    beta = rng.uniform(-shift, shift, size=3)
    # Optical density (Beer-Lambert) -> stain amounts with scikit-image's H-E-DAB stain vectors, and back:
    # an exact round trip (skimage's rgb2hed/hed2rgb pair rescales and is not one).
    od = -np.log(np.clip(image, 1e-3, 1.0))
    stains = od @ _HED_FROM_RGB
    stains = stains * alpha.astype(np.float32) + beta.astype(np.float32)
    return np.clip(np.exp(-(stains @ _RGB_FROM_HED)), 0.0, 1.0).astype(np.float32)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, *, sigma: tuple[float, float] = (0.1, 2.0)) -> np.ndarray:
    """Blur each channel with a Gaussian of random sigma (uniform in ``sigma``), mirrored at the edges."""
    s = rng.uniform(*sigma)
    return ndimage.gaussian_filter(image, sigma=(s, s, 0), mode="reflect").astype(np.float32)


def elastic_deform(image: np.ndarray, labels: np.ndarray | None, rng: np.random.Generator, *, sigma: float = 10.0,
                   grid: int = 3) -> tuple[np.ndarray, np.ndarray | None]:
    """Elastic deformation as in U-Net (Ronneberger et al. 2015, sec. 3.1): random displacement vectors on a
    coarse ``grid`` x ``grid`` lattice, normal with standard deviation ``sigma`` pixels, interpolated
    smoothly (bicubic) to every pixel; the image resampled bilinearly, the labels by nearest neighbour so
    that ids (classes, instance ids) stay ids. Edges are mirrored.

    Args:
        image: (h, w, C) float32 array.
        labels: (h, w) or (h, w, L) integer array moved with the image, or None.
        rng: random generator (2 x grid x grid draws).
        sigma: displacement standard deviation at the lattice points, in pixels.
        grid: lattice points per side (>= 2).
    """
    h, w = image.shape[:2]
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    # Bicubic interpolation of the lattice to the patch (ndimage.zoom, order 3: the lattice's corners on the
    # patch's corner pixels, its output exactly h x w).
    fields = [ndimage.zoom(c, (h / grid, w / grid), order=3, mode="nearest", grid_mode=False) for c in coarse]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    coords = np.stack([rows + fields[0].astype(np.float32), cols + fields[1].astype(np.float32)])
    out = np.empty_like(image)
    for c in range(image.shape[2]):
        out[..., c] = ndimage.map_coordinates(image[..., c], coords, order=1, mode="mirror")
    if labels is None:
        return out, None
    planes = labels[..., None] if labels.ndim == 2 else labels
    moved = np.stack([ndimage.map_coordinates(planes[..., k], coords, order=0, mode="mirror")
                      for k in range(planes.shape[2])], -1)
    return out, (moved[..., 0] if labels.ndim == 2 else moved)


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations to apply, and how often.

    Args:
        flips: random horizontal and vertical flips. By default, True (the paper).
        rot90: random rotations by multiples of 90 degrees. By default, True.
        color_jitter: brightness/contrast jitter. By default, True (the paper's fine-tuning).
        blur: Gaussian blur. By default, True (the paper's fine-tuning).
        jitter_p: probability of the colour jitter. By default, 0.3.
        blur_p: probability of the blur. By default, 0.3.
        brightness / contrast: jitter strengths. By default, 0.5 / 0.4.
        stain: HED stain jitter (:func:`stain_jitter`) on every patch. By default, False (not in the
            paper; the shipped nucleus model uses it, see docs/results.md).
        stain_scale / stain_shift: its strengths. By default, 0.25 / 0.04 (a range like that between labs).
        elastic: elastic deformation (:func:`elastic_deform`) of every patch with its mask. By default,
            False (not in the paper; U-Net's augmentation for few annotated images).
        elastic_sigma / elastic_grid: its displacement (pixels) and lattice. By default, 10 / 3 (U-Net's).
    """

    flips: bool = True
    rot90: bool = True
    color_jitter: bool = True
    blur: bool = True
    jitter_p: float = 0.3
    blur_p: float = 0.3
    brightness: float = 0.5
    contrast: float = 0.4
    stain: bool = False
    stain_scale: float = 0.25
    stain_shift: float = 0.04
    elastic: bool = False
    elastic_sigma: float = 10.0
    elastic_grid: int = 3

    def __call__(self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment a (h, w, 3) float32 [0, 1] patch and its optional (h, w) mask.

        Every draw happens whether or not the augmentation is enabled, so that switching one off
        does not change the random numbers the others see.
        """
        image, mask = flip_rotate(image, mask, rng, flips=self.flips, rot90=self.rot90)
        jitter_draw, blur_draw = rng.random(), rng.random()
        if self.color_jitter and jitter_draw < self.jitter_p:
            image = color_jitter(image, rng, brightness=self.brightness, contrast=self.contrast)
        if self.blur and blur_draw < self.blur_p:
            image = gaussian_blur(image, rng)
        if self.stain:  # last, so that it changes none of the draws above
            image = stain_jitter(image, rng, scale=self.stain_scale, shift=self.stain_shift)
        if self.elastic:  # drawn last as well (geometric, but the photometric steps act per pixel or nearly)
            image, mask = elastic_deform(image, mask, rng, sigma=self.elastic_sigma, grid=self.elastic_grid)
        return image, mask


#: The paper's pretraining augmentation: flips only.
PRETRAIN_AUGMENTATION = Augmentation(flips=True, rot90=False, color_jitter=False, blur=False)

#: The paper's fine-tuning augmentation (flips, jitter, blur) plus 90-degree rotations.
FINETUNE_AUGMENTATION = Augmentation()
