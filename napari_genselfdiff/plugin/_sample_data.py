"""Sample data: a 512x512 H&E crop with many nuclei.

The crop comes from MoNuSeg test image TCGA-2Z-A9J9-01A-01-TS1 (Kumar et al., IEEE TMI 2017 and
2020; from TCGA), licensed CC BY-NC-SA 4.0: non-commercial use, with attribution, share-alike.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "he_nuclei_512.png"
ATTRIBUTION = (
    "MoNuSeg (Kumar et al. 2017/2020), image TCGA-2Z-A9J9-01A-01-TS1, 512x512 crop; CC BY-NC-SA 4.0"
)


def he_nuclei_sample():
    """The bundled H&E crop as an RGB image layer."""
    from ..core.io.read import read_array

    data = read_array(SAMPLE)
    return [(data[..., :3], {"name": "H&E nuclei (MoNuSeg)", "rgb": True, "metadata": {"attribution": ATTRIBUTION}}, "image")]
