"""Take the screenshot of docs/usage.md "From QuPath and back": a QuPath-style GeoJSON opened over its image.

    xvfb-run -a .venv/bin/python docs/make_qupath_screenshot.py

The GeoJSON is what QuPath's "Export objects as GeoJSON" writes for cells (a UUID id, the cell
outline, the nucleus in ``nucleusGeometry``, a classification with its colour, measurements; the
writer is ``benchmarks/qupath_geojson.py: qupath_cells``) of the bundled sample's expert nuclei, plus
two annotations: a locked "Region*" rectangle where the outlines are complete, and a hand-drawn
"Tumor" annotation with a hole. Both files are dropped on napari as a user would (``viewer.open``
with this plugin); the picture is ``viewer.screenshot(canvas_only=False)`` of the real window.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGES = Path(__file__).resolve().parent / "images"
SAMPLES = ROOT / "napari_genselfdiff" / "samples"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _settle(ms: int = 400) -> None:
    from qtpy.QtCore import QCoreApplication, QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()
    QCoreApplication.processEvents()


def main() -> int:
    import imageio.v3 as iio
    import napari
    from qupath_geojson import qupath_cells

    from napari_genselfdiff.core.io.read import read_array

    work = Path(tempfile.mkdtemp(prefix="genselfdiff-qupath-"))
    shutil.copy(SAMPLES / "he_nuclei_512.png", work / "he_nuclei_512.png")
    inst = read_array(SAMPLES / "he_nuclei_512_instances.png").astype(np.int64)
    features = qupath_cells(inst, seed="docs")
    features.append({"type": "Feature", "id": "0b8e8f8a-6f1e-4a39-9a57-2d8c1f0a1c01",
                     "geometry": {"type": "Polygon", "coordinates": [[[40, 40], [330, 40], [330, 300], [40, 300], [40, 40]]]},
                     "properties": {"objectType": "annotation", "isLocked": True,
                                    "classification": {"name": "Region*", "color": [0, 0, 180]}}})
    features.append({"type": "Feature", "id": "0b8e8f8a-6f1e-4a39-9a57-2d8c1f0a1c02",
                     "geometry": {"type": "Polygon", "coordinates": [
                         [[360, 330], [490, 340], [500, 480], [370, 470], [360, 330]],
                         [[400, 380], [450, 380], [450, 430], [400, 430], [400, 380]]]},
                     "properties": {"objectType": "annotation", "name": "tumour nest",
                                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                                    "measurements": {"Area px^2": 17000.0}}})
    geojson = work / "he_nuclei_512.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))

    viewer = napari.Viewer(title="napari-genselfdiff")
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(work / "he_nuclei_512.png", plugin="napari-genselfdiff")
    layers = viewer.open(geojson, plugin="napari-genselfdiff")
    objects = next(layer for layer in layers if layer._type_string == "labels")
    viewer.layers.selection.active = objects
    viewer.reset_view()
    # the status bar as when the cursor rests on a nucleus: its class from the QuPath classification
    k = int(objects.data[256, 256] or objects.data[objects.data > 0][0])
    row = objects.features.set_index("index").loc[k]
    viewer.status = f"{objects.name} [{k}]: class {row['class']}, objectType {row['objectType']}"
    _settle(1200)
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / "17_qupath_geojson.png"
    iio.imwrite(path, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {path}; layers: {[layer.name for layer in viewer.layers]}", flush=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
