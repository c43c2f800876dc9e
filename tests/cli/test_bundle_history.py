"""The model card's training history (src_train/experiments/bundle_model.py: training_history) follows a run's
own record before the card its model file inherited, and cuts a bundled file's history where that file was
replaced since by a model trained from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src_train.experiments.bundle_model import training_history  # noqa: E402


def _record(results: Path, name: str, init: str) -> dict:
    record = {"name": name, "command": f"python recipe.py --name {name} --init {init}",
              "settings": {"init": init, "steps": 10}, "model": str(results / "absent" / f"{name}.safetensors")}
    (results / f"{name}.json").write_text(json.dumps(record))
    return record


def test_history_follows_run_records_and_cuts_a_replaced_bundled_card(tmp_path):
    results, runs, bundled = tmp_path / "results", tmp_path / "runs", tmp_path / "models"
    results.mkdir()
    bundled.mkdir()
    # the bundled file today: its card lists its own history, ending with the run `second` trained from it
    card = {"training_history": [{"run": "first"}, {"run": "second"}]}
    (bundled / "default_nuclei.json").write_text(json.dumps({"card": card, "provenance": {}}))
    # `second` started from the bundled file as it was then (= `first`), `third` from `second`'s run folder,
    # whose model file carries only the card it inherited (without `second`)
    _record(results, "second", str(bundled / "default_nuclei.safetensors"))
    (runs / "second").mkdir(parents=True)
    (runs / "second" / "best.json").write_text(json.dumps({"card": {"training_history": [{"run": "first"}]}}))
    third = _record(results, "third", str(runs / "second" / "best.safetensors"))
    assert [s["run"] for s in training_history(third, results)] == ["first", "second", "third"]
