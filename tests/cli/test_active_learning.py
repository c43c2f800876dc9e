"""The active-learning experiment script (src_train/experiments/active_learning.py) at a tiny scale: synthetic images, a micro network,
2 rounds of 1 field, 2 steps per round, both strategies, one seed. It checks the mechanics (fields
chosen, never twice, partial pairs trained, scores recorded), not whether ranking beats random."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src_train" / "experiments"))


@pytest.mark.slow
def test_active_learning_tiny(tmp_path, he_image):
    import active_learning as al

    from conftest import micro_config

    images = [he_image(64, 64, seed=s) for s in range(2)]
    gts = [(im.mean(-1) < 130).astype(np.uint8) for im in images]
    records = al.run_experiment(
        train=(["a", "b"], images, gts), test=(images[:1], gts[:1]), seeds=(0,), out=tmp_path,
        init="scratch", arch=micro_config(), k=1, rounds=2, steps=2, field=32, patch=32, batch=2, tile=64,
        device="cpu", precision="fp32", log=lambda *_: None,
    )
    assert [(r["strategy"], r["round"], r["fields"]) for r in records] == [
        ("ranked", 1, 1), ("ranked", 2, 2), ("random", 1, 1), ("random", 2, 2)]
    for strategy in al.STRATEGIES:
        chosen = [(c["image"], c["y"], c["x"]) for r in records if r["strategy"] == strategy for c in r["chosen"]]
        assert len(set(chosen)) == 2  # a corrected field is never chosen again
    assert all(r["corrected_pixels"] == 32 * 32 * r["fields"] for r in records)
    assert all(0.0 <= r["f1"] <= 1.0 and 0.0 <= r["aji"] <= 1.0 for r in records)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2, 1, 2]
    assert "| ranked | 2 |" in (tmp_path / "summary.md").read_text()
