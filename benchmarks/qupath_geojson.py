"""Open and rasterise a QuPath GeoJSON of 20,000 nuclei; prints one JSON line (and --out appends it).

    python benchmarks/qupath_geojson.py [--nuclei 20000] [--out docs/results/qupath_geojson.jsonl]

Two files, as QuPath writes them ("Export objects as GeoJSON" with "Export as FeatureCollection"):
``detection``: one detection per nucleus (what QuPath's nucleus detectors, StarDist and this
plugin's export write); ``cell``: one cell per nucleus, the cell outline (the nucleus grown by 3
pixels) in ``geometry`` and the nucleus in ``nucleusGeometry`` (QuPath's cell detection), so about
2.5x the bytes. Each feature has a UUID ``id``, a classification ("Tumor" or "Immune cells",
QuPath's default colours) and a measurements object. The nuclei are the bundled sample's
expert outlines (``napari_genselfdiff/samples/he_nuclei_512_instances.png``) repeated on a grid of
512-pixel tiles until there are ``--nuclei`` of them.

Figures, one JSON line per file (wall seconds, best of ``--repeat``; ``*_cpu_s`` the process CPU
seconds of the same call, which a busy machine does not inflate):
- ``parse_s``: ``read_geojson`` (JSON + objects);
- ``open_s``: ``plugin/_geojson_reader.py: read_geojson_layers``, what dropping the file on napari
  runs before napari builds the layer: parse, frame, labels painted, colours, features table
  (target: under 5 s);
- ``rasterize_s``: ``rasterize`` of the parsed objects into the labels (target: under 2 s);
- ``layer_s``: napari's ``Labels`` layer built from that data (no window).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "napari_genselfdiff" / "samples" / "he_nuclei_512_instances.png"
TUMOR, IMMUNE = ("Tumor", [200, 0, 0]), ("Immune cells", [160, 90, 160])  # QuPath's default class colours


def qupath_cells(instances: np.ndarray, *, n: int | None = None, origin: tuple[int, int] = (0, 0),
                 seed: str = "bench", kind: str = "cell") -> list[dict]:
    """QuPath-style cell Features of an instance image (see the module docstring), offset by origin (x, y)."""
    from scipy import ndimage

    from napari_genselfdiff.core.export.geojson import mask_geometry

    features = []
    for value, sl in enumerate(ndimage.find_objects(instances), start=1):
        if sl is None:
            continue
        crop = instances[sl] == value
        nucleus = mask_geometry(crop, (sl[0].start, sl[1].start))
        pad = np.pad(crop, 3)
        cell = mask_geometry(ndimage.binary_dilation(pad, iterations=3), (sl[0].start - 3, sl[1].start - 3))
        area = int(crop.sum())
        name, colour = TUMOR if area > 250 else IMMUNE

        def shift(geometry):
            def ring(points):
                return [[x + origin[0], y + origin[1]] for x, y in points]
            if geometry["type"] == "Polygon":
                return {"type": "Polygon", "coordinates": [ring(r) for r in geometry["coordinates"]]}
            return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in p] for p in geometry["coordinates"]]}

        feature = {
            "type": "Feature", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{origin}/{value}")),
            "geometry": shift(cell if kind == "cell" else nucleus),
            "properties": {"objectType": kind, "classification": {"name": name, "color": colour},
                           "measurements": {"Nucleus: Area px^2": area}},
        }
        if kind == "cell":
            feature["nucleusGeometry"] = shift(nucleus)
            feature["properties"]["measurements"]["Cell: Area px^2"] = round(area * 2.1, 1)
        features.append(feature)
        if n is not None and len(features) >= n:
            break
    return features


def big_collection(nuclei: int, kind: str = "cell") -> tuple[dict, tuple[int, int]]:
    """A FeatureCollection of ``nuclei`` cells tiled from the sample, and the (H, W) it covers."""
    from napari_genselfdiff.core.io.read import read_array

    inst = read_array(SAMPLE).astype(np.int64)
    per_tile = int(len(np.unique(inst)) - 1)
    tiles = -(-nuclei // per_tile)
    cols = int(np.ceil(np.sqrt(tiles)))
    rows = -(-tiles // cols)
    tile_features = qupath_cells(inst, kind=kind)
    features = []
    for k in range(tiles):
        ox, oy = (k % cols) * 512, (k // cols) * 512
        for f in tile_features:
            g = json.loads(json.dumps(f))
            for key in ("geometry", "nucleusGeometry")[: len(g) - 3]:
                geom = g[key]
                polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
                for poly in polys:
                    for ring in poly:
                        for p in ring:
                            p[0] += ox
                            p[1] += oy
            g["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tile{k}/{f['id']}"))
            features.append(g)
            if len(features) == nuclei:
                break
    return {"type": "FeatureCollection", "features": features}, (rows * 512, cols * 512)


def measure(kind: str, nuclei: int, repeat: int) -> dict:
    """The figures of one file of ``nuclei`` objects of ``kind`` (see the module docstring)."""
    from napari.layers import Labels

    from napari_genselfdiff.core.annotations.qupath import rasterize, read_geojson
    from napari_genselfdiff.plugin._geojson_reader import read_geojson_layers

    collection, shape = big_collection(nuclei, kind)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{kind}s.geojson"
        path.write_text(json.dumps(collection))
        del collection
        size_mb = path.stat().st_size / 1e6
        read_geojson_layers(path)  # warm imports (napari's colormap module) once, not timed

        def best(fn):
            walls, cpus, out = [], [], None
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            return round(min(walls), 3), round(min(cpus), 3), out

        parse_s, parse_cpu, qfile = best(lambda: read_geojson(path))
        ids = np.arange(1, len(qfile.objects) + 1)
        rasterize_s, rasterize_cpu, labels = best(lambda: rasterize(qfile.objects, shape, ids))
        open_s, open_cpu, layers = best(lambda: read_geojson_layers(path))
        data, kwargs, _ = layers[0]
        layer_s, layer_cpu, _ = best(lambda: Labels(data, **kwargs))
    assert np.array_equal(data, labels)
    return {
        "benchmark": "qupath_geojson", "objects": kind, "nuclei": len(qfile.objects), "file_mb": round(size_mb, 1),
        "labels_shape": list(labels.shape), "labelled_pixels": int((labels > 0).sum()),
        "parse_s": parse_s, "parse_cpu_s": parse_cpu, "open_s": open_s, "open_cpu_s": open_cpu,
        "rasterize_s": rasterize_s, "rasterize_cpu_s": rasterize_cpu, "layer_s": layer_s, "layer_cpu_s": layer_cpu,
        "targets": {"open_s": 5.0, "rasterize_s": 2.0}, "ok": open_s < 5.0 and rasterize_s < 2.0, "repeat": repeat,
        "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nuclei", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="append the JSON line to this file")
    args = parser.parse_args(argv)

    for kind in ("detection", "cell"):
        record = measure(kind, args.nuclei, args.repeat)
        line = json.dumps(record)
        print(line, flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
