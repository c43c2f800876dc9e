"""Sample data: a 512x512 H&E crop with many nuclei.

The crop comes from MoNuSeg test image TCGA-2Z-A9J9-01A-01-TS1 (Kumar et al., IEEE TMI 2017 and
2020; from TCGA), licensed CC BY-NC-SA 4.0: non-commercial use, with attribution, share-alike.
"""

from __future__ import annotations

from ..core.defaults import (
    SAMPLE_IMAGE as SAMPLE,  # noqa: F401 - the paths are written once there
    SAMPLE_INSTANCES,
)

ATTRIBUTION = (
    "MoNuSeg (Kumar et al. 2017/2020), image TCGA-2Z-A9J9-01A-01-TS1, 512x512 crop; CC BY-NC-SA 4.0"
)


def he_nuclei_sample():
    """The bundled H&E crop as an RGB image layer."""
    from ..core.io.read import read_array

    data = read_array(SAMPLE)
    from ..core.io.resolution import recorded_mpp
    from ._layers import META_KEY

    recorded = recorded_mpp(SAMPLE)  # the crop's PNG records MoNuSeg's 0.25 um/px (pHYs)
    meta = {"attribution": ATTRIBUTION}
    if recorded.mpp:
        meta[META_KEY] = {"image": {"path": str(SAMPLE), "mpp": recorded.mpp, "mpp_source": recorded.detail}}
    return [(data[..., :3], {"name": "H&E nuclei (MoNuSeg)", "rgb": True, "metadata": meta}, "image")]


def he_nuclei_with_truth_sample():
    """The bundled H&E crop and its expert nucleus instances (a Labels layer), to compare a result with."""
    from ..core.io.read import read_array

    truth = read_array(SAMPLE_INSTANCES).astype("int32")
    return he_nuclei_sample() + [
        (truth, {"name": "H&E nuclei: expert outlines", "opacity": 0.5, "metadata": {"attribution": ATTRIBUTION}},
         "labels")
    ]
