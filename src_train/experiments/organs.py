"""The organ of each MoNuSeg training image, from its TCGA tissue-source-site code (the second field of
the id), for experiments that leave an organ out (the correction-loop replay, issue 25).

Kumar et al. (IEEE TMI 2017) list the six images from sites 18, 21, 38, 49 and 50 as "liver"; those
sites submitted TCGA's lung cohorts (LUAD, LUSC), so they are called lung here.
"""

from __future__ import annotations

ORGANS: dict[str, list[str]] = {
    "lung": ["TCGA-18-5592-01Z-00-DX1", "TCGA-21-5784-01Z-00-DX1", "TCGA-21-5786-01Z-00-DX1",
             "TCGA-38-6178-01Z-00-DX1", "TCGA-49-4488-01Z-00-DX1", "TCGA-50-5931-01Z-00-DX1"],
    "breast": ["TCGA-A7-A13E-01Z-00-DX1", "TCGA-A7-A13F-01Z-00-DX1", "TCGA-AR-A1AK-01Z-00-DX1",
               "TCGA-AR-A1AS-01Z-00-DX1", "TCGA-E2-A14V-01Z-00-DX1", "TCGA-E2-A1B5-01Z-00-DX1"],
    "kidney": ["TCGA-B0-5698-01Z-00-DX1", "TCGA-B0-5710-01Z-00-DX1", "TCGA-B0-5711-01Z-00-DX1",
               "TCGA-HE-7128-01Z-00-DX1", "TCGA-HE-7129-01Z-00-DX1", "TCGA-HE-7130-01Z-00-DX1"],
    "prostate": ["TCGA-CH-5767-01Z-00-DX1", "TCGA-G9-6336-01Z-00-DX1", "TCGA-G9-6348-01Z-00-DX1",
                 "TCGA-G9-6356-01Z-00-DX1", "TCGA-G9-6362-01Z-00-DX1", "TCGA-G9-6363-01Z-00-DX1"],
    "bladder": ["TCGA-DK-A2I6-01A-01-TS1", "TCGA-G2-A2EK-01A-02-TSB"],
    "colon": ["TCGA-AY-A8YK-01A-01-TS1", "TCGA-NH-A8F7-01A-01-TS1"],
    "stomach": ["TCGA-KB-A93J-01A-01-TS1", "TCGA-RD-A8N9-01A-01-TS1"],
}


def organ_of(stem: str) -> str:
    """The organ of a MoNuSeg training image id (KeyError for an unknown id)."""
    for organ, stems in ORGANS.items():
        if stem in stems:
            return organ
    raise KeyError(f"{stem} is not a MoNuSeg training image")
