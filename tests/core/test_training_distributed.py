"""DistributedDataParallel on the CPU: ``torchrun --nproc_per_node=2`` with the gloo backend.

Two processes pretrain a very small network for a few steps; DDP averages their gradients, so both
must end with bit-identical weights. Rank 0 gathers every rank's parameter digest into
``ddp_check.json``. Also checked: only rank 0 writes (one model file, one log), the global batch and
the process count in the provenance, every step logged once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_genselfdiff.core.model_files import load_model
from napari_genselfdiff.core.training import read_metrics

ROOT = Path(__file__).resolve().parents[2]
GLAS = (ROOT / ".." / "shared" / "data" / "glas_unlabeled" / "images").resolve()
ARCH = {"widths": [8, 16, 32], "groups": 4, "attention_heads": 2, "attention_dim_head": 8, "blocks_per_level": 1}


def _images(tmp_path: Path) -> list[str]:
    if GLAS.is_dir():
        return [str(p) for p in sorted(GLAS.glob("*.jpg"))[:2]]
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        image = rng.integers(60, 230, (96, 96, 3)).astype(np.uint8)
        iio.imwrite(tmp_path / f"syn{i}.png", image)
        paths.append(str(tmp_path / f"syn{i}.png"))
    return paths


@pytest.mark.slow
def test_torchrun_two_processes_gloo_keep_identical_weights(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"pretrain": {"arch": ARCH, "timesteps": 100}}))
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(ROOT / "src_train" / "pretrain.py"), "--config", str(config), "--images", *_images(tmp_path),
        "--out", str(out), "--steps", "6", "--batch", "2", "--size", "32", "--stride", "32",
        "--checkpoint-every", "3", "--log-every", "1", "--device", "cpu", "--precision", "fp32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    check = json.loads((out / "ddp_check.json").read_text())
    assert len(check["digests"]) == 2 and check["identical"] is True
    assert done.stdout.count("model: ") == 1  # only rank 0 reports
    steps = [e["step"] for e in read_metrics(out) if e["kind"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]
    _, info = load_model(out / "pretrained.safetensors")
    assert info.provenance["processes"] == 2 and info.provenance["batch"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000003.safetensors",
                                                                      "step_00000006.safetensors"]
