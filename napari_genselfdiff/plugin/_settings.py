"""Small persistent settings: recent model files and the last folders used (no Qt).

Stored as JSON in ``<config dir>/recent.json``; the config dir is ``$GENSELFDIFF_CONFIG_DIR`` when set
(tests point it at a temporary folder), else the platform's user config folder
(``~/.config/napari-genselfdiff`` on Linux). Default data (annotation sets, exports, training runs)
goes under ``$GENSELFDIFF_DATA_DIR``, else the platform's user data folder
(``~/.local/share/napari-genselfdiff`` on Linux). A missing or damaged file just means "no history".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..core.io.atomic import write_text_atomic

APP = "napari-genselfdiff"
CONFIG_ENV = "GENSELFDIFF_CONFIG_DIR"
DATA_ENV = "GENSELFDIFF_DATA_DIR"
MAX_RECENT = 10


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    try:
        from platformdirs import user_config_dir

        return Path(user_config_dir(APP, appauthor=False))
    except ImportError:  # platformdirs comes with napari; fall back to the XDG default
        return Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser() / APP


def data_dir() -> Path:
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    try:
        from platformdirs import user_data_dir

        return Path(user_data_dir(APP, appauthor=False))
    except ImportError:
        return Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser() / APP


class Settings:
    """``recent.json``: ``{"models": [paths, newest first], "folders": {purpose: path}}``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "recent.json"
        self.values: dict[str, Any] = {"models": [], "folders": {}}
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.values["models"] = [str(p) for p in loaded.get("models", []) if isinstance(p, str)]
                self.values["folders"] = {
                    str(k): str(v) for k, v in (loaded.get("folders") or {}).items() if isinstance(v, str)
                }
        except (OSError, ValueError):
            pass

    def save(self) -> None:
        try:
            write_text_atomic(self.path, json.dumps(self.values, indent=2) + "\n")
        except OSError:
            pass  # history is a convenience: a read-only config folder must not break the widget

    @property
    def recent_models(self) -> list[str]:
        return list(self.values["models"])

    def add_recent_model(self, path: str | Path) -> None:
        path = str(Path(path).expanduser().resolve())
        models = [p for p in self.values["models"] if p != path]
        self.values["models"] = [path, *models][:MAX_RECENT]
        self.save()

    def forget_model(self, path: str | Path) -> None:
        path = str(Path(path).expanduser().resolve())
        self.values["models"] = [p for p in self.values["models"] if p != path]
        self.save()

    def folder(self, purpose: str, default: Path) -> Path:
        value = self.values["folders"].get(purpose)
        return Path(value) if value else default

    def set_folder(self, purpose: str, folder: str | Path) -> None:
        self.values["folders"][purpose] = str(Path(folder).expanduser())
        self.save()
