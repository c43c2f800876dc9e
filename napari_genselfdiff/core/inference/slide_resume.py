"""The resume key of a slide run: what an unfinished ``<stem>_labels.zarr.partial`` must share with a new
run (slide, resolutions, model digest, region, tissue mask, tile, overlap, band width, test-time flips) to be continued
by it, and the :class:`ResumeError` that names the differences when it does not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GenSelfDiffError
from ..io.slide import Slide

if TYPE_CHECKING:
    from .slide import SlideSettings


class ResumeError(GenSelfDiffError, ValueError):
    """An unfinished store of another run (other model or settings) is in the way; the message says
    what differs and how to continue it or start over."""


#: How the settings of a run are named when a resume is refused.
_KEY_NAMES = {
    "slide": "slide file", "slide_mpp": "slide resolution (um/px)", "model_mpp": "model resolution (um/px)",
    "model_sha256": "model (weights, architecture, classes)", "region_xywh": "region (x, y, w, h)",
    "tissue_mask": "tissue mask", "tile": "tile", "overlap": "overlap", "max_band_width": "band width",
    "flips": "test-time flips (--flips)",
}
RESUME_VERSION = 1


def model_digest(model, info) -> str:
    """SHA-256 of a network's weights, architecture, classes and normalisation: the same model file
    loaded twice gives the same digest, any other model another one."""
    import torch

    h = hashlib.sha256()
    h.update(repr(getattr(model, "config", "")).encode())
    h.update(json.dumps([[c.id, c.name] for c in info.classes]).encode())
    h.update(repr(getattr(info, "normalization", "")).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def run_key(slide: Slide, slide_mpp: float, net_mpp: float, region, settings: "SlideSettings", digest: str) -> dict:
    """What an unfinished run must share with this one to be continued (JSON-normalised)."""
    key = {
        "slide": {"name": slide.path.name, "width": slide.width, "height": slide.height,
                  "bytes": slide.path.stat().st_size if slide.path.is_file() else None},
        "slide_mpp": round(float(slide_mpp), 6), "model_mpp": round(float(net_mpp), 6),
        "model_sha256": digest, "region_xywh": list(region), "tissue_mask": bool(settings.tissue),
        "tile": settings.inference.tile, "overlap": settings.inference.overlap,
        "max_band_width": settings.inference.max_band_width,
    }
    if settings.inference.flips:  # only when on: unfinished runs from before the option stay continuable
        key["flips"] = True
    return json.loads(json.dumps(key))


def key_differences(old: dict, new: dict) -> list[str]:
    """The settings two resume keys differ in, in words ("tile: 256 there, 512 now")."""
    out = []
    for name in sorted(set(old) | set(new), key=lambda k: list(_KEY_NAMES).index(k) if k in _KEY_NAMES else 99):
        a, b = old.get(name), new.get(name)
        if a != b:
            if name == "model_sha256":
                a, b = f"{str(a)[:12]}...", f"{str(b)[:12]}..."
            elif name == "flips":
                a, b = ("on" if a else "off"), ("on" if b else "off")
            out.append(f"{_KEY_NAMES.get(name, name)}: {a} there, {b} now")
    return out


def earlier_run(partial: Path, key: dict, *, restart: bool, slide_path: Path) -> dict[str, Any] | None:
    """The resume record of the unfinished store ``partial`` when this run (``key``) continues it; None when
    there is none to continue (no store, no progress recorded, or ``restart``).

    Raises:
        ResumeError: the store holds an unfinished run with other settings.
    """
    from ..io.labels_store import read_resume

    earlier = read_resume(partial) if partial.is_dir() and not restart else None
    if earlier is not None and earlier.get("key") != key:
        raise ResumeError(
            f"{slide_path}: {partial} holds an unfinished run with other settings "
            f"({'; '.join(key_differences(earlier.get('key') or {}, key))}). Run it again with the same model "
            f"and settings to continue it, or start over (genselfdiff segment --restart; slide widget: "
            f"'Start over'), which discards it."
        )
    return earlier
