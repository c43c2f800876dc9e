"""ONNX Runtime vs. PyTorch on one tile: is an ONNX backend worth adding? (optional dependencies)

    pip install onnxruntime onnx
    OMP_NUM_THREADS=1 python benchmarks/onnx_compare.py --net tiny --size 512 [--level-attention]

Exports a random-weight network of the preset with the TorchScript exporter (opset 17, dynamic height
and width), checks that both give the same logits, and prints one JSON line: the best of 3 forward
passes for each, single-threaded, measured in the same run. docs/performance.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src_train"))

from bench_step import _time_steps  # noqa: E402

from napari_genselfdiff.core.network import PRESETS, AttentionUNet, UNetConfig  # noqa: E402


def best_of(fn, n: int = 3) -> float:
    """The fastest of ``n`` timed calls after one warm-up (src_train/bench_step.py's timing loop)."""
    return min(_time_steps(fn, warmup=1, steps=n))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--level-attention", action="store_true")
    args = p.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        print("error: onnxruntime is not installed (pip install onnxruntime onnx).", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    values = PRESETS[args.net].to_dict()
    values["level_attention"] = args.level_attention
    model = AttentionUNet(UNetConfig(**values).with_head("classes", 2)).eval()
    x = torch.randn(1, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        start = time.perf_counter()
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}})
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        with torch.inference_mode():
            reference = model(x).numpy()
            diff = float(np.abs(session.run(None, {"x": xn})[0] - reference).max())
            torch_s = best_of(lambda: model(x))
        ort_s = best_of(lambda: session.run(None, {"x": xn}))
    print(json.dumps({"figure": "onnx_runtime", "network": args.net, "level_attention": args.level_attention,
                      "tile": args.size, "threads": 1, "torch_s": torch_s, "onnxruntime_s": ort_s,
                      "speedup": torch_s / ort_s, "max_abs_logit_diff": diff, "export_s": export_s,
                      "onnxruntime": ort.__version__, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
