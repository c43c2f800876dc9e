"""Write synthetic whole-slide TIFFs of any size, tile by tile (for tests, benchmarks and demos).

The slide is H&E-like tissue (pink stroma with purple nuclei) over near-white glass, the tissue
covering a chosen fraction of the slide in smooth blobs. It is written as a tiled, JPEG-compressed,
pyramidal TIFF (levels 4x apart, as Aperio writes them) without ever holding the slide in memory, in
one of four flavours of resolution metadata:

- ``"aperio"``: an Aperio-style .svs layout (level 0, thumbnail, reduced levels) with
  ``MPP = <mpp>`` in the ImageDescription;
- ``"ome"``: an OME-TIFF with SubIFD levels and ``PhysicalSizeX/Y`` in the OME-XML;
- ``"tiff"``: a generic pyramidal TIFF with XResolution/YResolution in pixels per centimetre;
- ``"none"``: a generic pyramidal TIFF with no resolution at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FLAVOURS = ("aperio", "ome", "tiff", "none")
GLASS = (242, 241, 244)


@dataclass(frozen=True)
class SyntheticSlide:
    """What was written: path, size, resolution, levels, and the tissue fraction of the slide."""

    path: Path
    height: int
    width: int
    mpp: float | None
    levels: tuple[tuple[int, int], ...]
    tissue_fraction: float


def _texture_tiles(n: int, tile: int, rng: np.random.Generator) -> np.ndarray:
    """(n, tile, tile, 3) uint8 H&E-like tissue: wavy pink stroma and purple nuclei (4-9 px radius)."""
    yy, xx = np.mgrid[0:tile, 0:tile].astype(np.float32)
    out = np.empty((n, tile, tile, 3), np.uint8)
    purple = np.array([95.0, 60.0, 150.0], np.float32)
    for k in range(n):
        phase = rng.uniform(0, 6.28, 2)
        waves = (np.sin(xx / 7.0 + phase[0] + 3 * np.sin(yy / 23.0)) + np.sin(yy / 11.0 + xx / 31.0 + phase[1])) * 0.5
        img = np.stack([232 - 15 * waves, 165 - 30 * waves, 198 - 20 * waves], -1)
        img += rng.normal(0, 7, img.shape).astype(np.float32)
        for _ in range(tile * tile // 700):
            cy, cx = rng.uniform(0, tile, 2)
            ry, rx = rng.uniform(4, 9, 2)
            y0, y1 = max(int(cy) - 10, 0), min(int(cy) + 11, tile)
            x0, x1 = max(int(cx) - 10, 0), min(int(cx) + 11, tile)
            inside = ((yy[y0:y1, x0:x1] - cy) / ry) ** 2 + ((xx[y0:y1, x0:x1] - cx) / rx) ** 2 <= 1
            img[y0:y1, x0:x1][inside] = purple + rng.normal(0, 12, (int(inside.sum()), 1))
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    return out


class _Tissue:
    """A smooth random field on a coarse grid; tissue where it exceeds the quantile giving the fraction."""

    def __init__(self, height: int, width: int, fraction: float, rng: np.random.Generator, cell: int):
        from scipy import ndimage

        self.cell = cell
        gh, gw = height // cell + 2, width // cell + 2
        field = ndimage.gaussian_filter(rng.normal(size=(gh, gw)), sigma=max(1.5, min(gh, gw) / 8))
        self.field = field.astype(np.float32)
        core = self.field[: max(1, height // cell), : max(1, width // cell)]
        if fraction >= 1:
            self.threshold = -np.inf
        elif fraction <= 0:
            self.threshold = np.inf
        else:
            self.threshold = float(np.quantile(core, 1 - fraction))

    def mask(self, y0: float, x0: float, h: int, w: int, step: float) -> np.ndarray | bool:
        """Tissue at the pixel centres of an (h, w) window whose top-left level-0 pixel is (y0, x0) and
        whose pixels are ``step`` level-0 pixels apart. Returns True/False for uniform windows."""
        c = self.cell
        gy0, gx0 = y0 / c, x0 / c
        gy1, gx1 = (y0 + h * step) / c, (x0 + w * step) / c
        corner = self.field[int(gy0) : int(np.ceil(gy1)) + 2, int(gx0) : int(np.ceil(gx1)) + 2]
        if corner.size and corner.min() > self.threshold:
            return True
        if corner.size and corner.max() <= self.threshold:
            return False
        from scipy import ndimage

        gy = (y0 + (np.arange(h) + 0.5) * step) / c - 0.5
        gx = (x0 + (np.arange(w) + 0.5) * step) / c - 0.5
        coords = np.stack(np.meshgrid(np.clip(gy, 0, None), np.clip(gx, 0, None), indexing="ij"))
        return ndimage.map_coordinates(self.field, coords, order=1, mode="nearest") > self.threshold


def write_synthetic_slide(
    path: str | Path,
    height: int,
    width: int,
    *,
    mpp: float | None = 0.25,
    flavour: str = "aperio",
    tissue_fraction: float = 0.3,
    tile: int = 256,
    n_levels: int | None = None,
    seed: int = 0,
    quality: int = 85,
) -> SyntheticSlide:
    """Write a synthetic slide (see the module docstring); memory stays at a few tiles.

    Args:
        path: the file to write (.svs for ``flavour="aperio"`` by convention, else .tif / .ome.tif).
        height, width: level-0 size in pixels.
        mpp: microns per pixel at level 0 (ignored for ``flavour="none"``).
        flavour: how the resolution is recorded: "aperio", "ome", "tiff" or "none".
        tissue_fraction: share of the slide covered by tissue (0..1), in smooth blobs.
        tile: TIFF tile side (a multiple of 16).
        n_levels: pyramid levels (4x apart); by default down to a level under 2048 pixels a side.
        seed: random seed.
        quality: JPEG quality.
    """
    import tifffile

    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    if n_levels is None:
        n_levels = 1
        while max(height, width) / 4 ** (n_levels - 1) > 2048 and min(height, width) / 4 ** n_levels >= 64:
            n_levels += 1
    sizes = [(max(1, height // 4**k), max(1, width // 4**k)) for k in range(n_levels)]
    tissue = _Tissue(height, width, tissue_fraction, rng, cell=max(64, min(height, width) // 64))
    textures = _texture_tiles(12, tile, rng)
    mean_colour = textures.reshape(-1, 3).mean(0)
    glass = np.clip(np.array(GLASS, np.float32) + rng.normal(0, 1.5, (4, tile, tile, 3)), 0, 255).astype(np.uint8)

    from tifffile import TIFF

    jpeg_args = {"level": quality, "subsampling": (2, 2), "colorspace": "RGB", "outcolorspace": "YCBCR"}

    def encode(tile_pixels: np.ndarray) -> bytes:
        return TIFF.COMPRESSORS[7](np.ascontiguousarray(tile_pixels), **jpeg_args)

    # Uniform tiles (all glass, all tissue) are JPEG-encoded once and their bytes reused: writing a
    # 40000-pixel slide then costs little more than encoding the tissue borders.
    encoded: dict[tuple, bytes] = {}

    def cached(key: tuple, pixels) -> bytes:
        if key not in encoded:
            encoded[key] = encode(pixels() if callable(pixels) else pixels)
        return encoded[key]

    def level_tiles(k: int):
        h, w = sizes[k]
        step = height / h
        coarse = [np.clip(mean_colour + rng.normal(0, 10, (tile, tile, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
        for ty in range(0, h, tile):
            for tx in range(0, w, tile):
                which = (ty // tile * 7919 + tx // tile * 104729) % len(textures)
                # Level 0: H&E texture; coarser levels: the tissue's mean colour with noise.
                stuff = textures[which] if k == 0 else coarse[which % len(coarse)]
                m = tissue.mask(ty * step, tx * step, tile, tile, step)
                if m is True:
                    yield cached(("tissue", k, which if k == 0 else which % len(coarse)), stuff)
                elif m is False:
                    yield cached(("glass", which % len(glass)), glass[which % len(glass)])
                else:
                    yield encode(np.where(m[..., None], stuff, glass[which % len(glass)]))

    def thumbnail(max_side: int = 768) -> np.ndarray:
        f = max(height, width) / max_side
        h, w = max(1, int(height / f)), max(1, int(width / f))
        m = tissue.mask(0.0, 0.0, h, w, f)
        m = np.full((h, w), m) if isinstance(m, bool) else m
        return np.where(m[..., None], mean_colour.astype(np.uint8), np.array(GLASS, np.uint8)).astype(np.uint8)

    # Pre-encoded tiles (bytes) are written as they are; the tags say JPEG, YCbCr 2x2, as tifffile's own.
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}, "subsampling": (2, 2),
            "photometric": "rgb", "tile": (tile, tile)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if flavour == "aperio":
        mpp_text = f"|MPP = {mpp:.4f}" if mpp else ""
        desc0 = (f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) "
                 f"JPEG/RGB Q={quality}|AppMag = 40{mpp_text}|Filename = synthetic")
        with tifffile.TiffWriter(path, bigtiff=True) as tw:
            tw.write(level_tiles(0), shape=(*sizes[0], 3), dtype=np.uint8, description=desc0, metadata=None, **jpeg)
            tw.write(thumbnail(), photometric="rgb", description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> thumbnail", metadata=None)
            for k in range(1, n_levels):
                tw.write(level_tiles(k), shape=(*sizes[k], 3), dtype=np.uint8,
                         description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> {sizes[k][1]}x{sizes[k][0]}",
                         metadata=None, **jpeg)
    else:
        extra: dict = {}
        if flavour == "ome":
            extra["metadata"] = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp,
                                 "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
        else:
            extra["metadata"] = None
            if flavour == "tiff" and mpp:
                extra["resolution"] = (1e4 / mpp, 1e4 / mpp)
                extra["resolutionunit"] = "CENTIMETER"
        with tifffile.TiffWriter(path, bigtiff=True, ome=flavour == "ome") as tw:
            tw.write(level_tiles(0), shape=(*sizes[0], 3), dtype=np.uint8, subifds=n_levels - 1, **extra, **jpeg)
            for k in range(1, n_levels):
                tw.write(level_tiles(k), shape=(*sizes[k], 3), dtype=np.uint8, subfiletype=1, metadata=None, **jpeg)
    return SyntheticSlide(path, height, width, mpp if flavour != "none" else None, tuple(sizes),
                          float(tissue_fraction))
