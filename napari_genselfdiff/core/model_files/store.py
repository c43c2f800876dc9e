"""Save and load model files: safetensors weights + JSON metadata, never a pickle."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..io.atomic import atomic_path, write_text_atomic
from ..network.unet import AttentionUNet
from .schema import METADATA_KEY, ModelInfo

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models"
BUNDLED_DEFAULT = "default_nuclei.safetensors"
_MAX_HEADER = 100 * 1024 * 1024


#: The name "default" stands for this bundled model (the nuclei model).
DEFAULT_MODEL_NAME = "default"


def bundled_name(path: str | Path) -> str:
    """The name a bundled model file is known by: its stem, without a leading ``default_``
    (``default_nuclei.safetensors`` is "nuclei", ``glands.safetensors`` "glands")."""
    stem = Path(path).stem
    return stem[len("default_"):] if stem.startswith("default_") else stem


def bundled_models() -> dict[str, Path]:
    """THE registry of the models shipped inside the package: ``{name: file}``, every
    ``napari_genselfdiff/models/<name>.safetensors``, the default model first. Adding a model to the
    package is adding its file there; every front end then offers it by name."""
    files = sorted(BUNDLED_DIR.glob("*.safetensors"), key=lambda p: (p.name != BUNDLED_DEFAULT, p.name))
    return {bundled_name(path): path for path in files if path.is_file()}


def bundled_model_path(name: str = DEFAULT_MODEL_NAME) -> Path | None:
    """The bundled model called ``name`` ("default": the default model), or None if this build ships
    no such model."""
    if name == DEFAULT_MODEL_NAME:
        path = BUNDLED_DIR / BUNDLED_DEFAULT
        return path if path.is_file() else None
    return bundled_models().get(name)


def is_model_name(model: str | Path) -> bool:
    """Whether ``model`` is written as a model name ("default", "nuclei", ...) rather than a file path:
    no folder separator and no suffix."""
    text = str(model)
    return bool(text) and "/" not in text and "\\" not in text and Path(text).suffix == "" and text not in (".", "..")


def resolve_model_path(model: str | Path) -> Path:
    """Map a bundled model's name ("default", "nuclei", any name of :func:`bundled_models`) to its
    file, and check that a given path exists.

    Raises:
        ModelFileError: no such bundled model, or the file does not exist.
    """
    text = str(model)
    if is_model_name(text) and not Path(text).is_file():
        path = bundled_model_path(text)
        if path is not None:
            return path
        names = list(bundled_models())
        if text == DEFAULT_MODEL_NAME or text == bundled_name(BUNDLED_DEFAULT):
            raise ModelFileError(
                "no default model is bundled in this installation: the file "
                f"napari_genselfdiff/models/{BUNDLED_DEFAULT} is missing (a damaged install, or a source "
                "tree without it). Reinstall napari-genselfdiff, or pass a model file "
                "with --model PATH: fine-tune one in napari's Train tab from a few corrected images, or with "
                "genselfdiff finetune."
            )
        raise ModelFileError(
            f"{text!r} is neither a model file nor a bundled model ("
            + (f"bundled: {', '.join(['default'] + names)}" if names else "none is bundled in this installation")
            + "); pass a .safetensors file or one of those names."
        )
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file.")
    return path


def save_model(path: str | Path, model: AttentionUNet, info: ModelInfo, *, half: bool = False,
               overwrite: bool = True) -> Path:
    """Write ``model`` and ``info`` atomically to ``path`` (.safetensors) and ``<stem>.json`` beside it.

    Args:
        path: target file; the suffix is forced to .safetensors.
        model: the network (unwrapped: not DDP or compiled).
        info: its metadata; ``info.architecture`` must equal ``model.config``. A card without a
            "name" gets the derived display name (:meth:`ModelInfo.derived_name`), in the file and
            in ``info.card``, so that lists show what the model is rather than its file name.
        half: store weights as float16 (halves the file; inference casts back to float32).
        overwrite: replace an existing file (False raises FileExistsError).
    """
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    if info.architecture != model.config:
        raise ValueError("info.architecture differs from the model's configuration.")
    info.validate()
    if not (isinstance(info.card, dict) and info.card.get("name")):
        info.card = {"name": info.derived_name(), **(info.card or {})}
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous()
    meta = info.to_dict()
    meta["weights_dtype"] = "float16" if half else "float32"
    text = json.dumps(meta, indent=2, sort_keys=False)
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: text})
    write_text_atomic(path.with_suffix(".json"), text + "\n")
    return path


def _pickle_error(path: Path) -> ModelFileError:
    return ModelFileError(
        f"{path}: this is a pickled (torch.save) file, not safetensors; it is refused because "
        "unpickling can run arbitrary code. Use a .safetensors model written by napari-genselfdiff "
        "(src_train/ writes them)."
    )


def _read_header(path: Path) -> dict:
    """Parse the safetensors header by hand, so that a corrupt file gets a message, not a panic.

    The file is first read as safetensors (8-byte little-endian header length, then a JSON object);
    only if that fails is it checked for pickle signatures (protocol byte 0x80, or the zip archive of
    torch.save). The order matters: a genuine header length can start with the byte 0x80.
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: '{path.suffix}' files are Python pickles, which can run arbitrary code when "
            "loaded; napari-genselfdiff never unpickles a model file. Use a .safetensors model "
            "written by napari-genselfdiff (src_train/ writes them)."
        )
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ModelFileError(f"{path}: file too short to be a safetensors model (corrupt or empty).")
            (size,) = struct.unpack("<Q", head)
            raw = handle.read(min(size, _MAX_HEADER)) if 2 <= size <= min(_MAX_HEADER, file_size - 8) else b""
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the file ({exc}).") from exc
    if raw[:1] == b"{":
        try:
            header = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{path}: corrupt safetensors header ({exc}).") from exc
        if isinstance(header, dict):
            return header
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise _pickle_error(path)
    raise ModelFileError(f"{path}: not a safetensors model file (corrupt, truncated or another format).")


def read_model_info(path: str | Path) -> ModelInfo:
    """Read only the metadata of a model file (fast; no weights)."""
    path = resolve_model_path(path)
    header = _read_header(path)
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(
            f"{path}: a safetensors file without napari-genselfdiff metadata; it cannot be used "
            "because its architecture, classes and normalisation are unknown."
        )
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the metadata is not valid JSON ({exc}).") from exc
    return ModelInfo.from_dict(values, path=path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[AttentionUNet, ModelInfo]:
    """Load a model file into a network in eval mode.

    Raises:
        ModelFileError: pickle, corrupt file, unknown schema, or weights that do not fit the architecture
            (the message lists missing, unexpected and mis-shaped keys).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = read_model_info(path)
    path = info.path
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the weights cannot be read ({exc}); the file may be truncated.") from exc
    model = AttentionUNet(info.architecture)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ModelFileError(
            f"{path}: the weights do not match the architecture in the metadata "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped keys, e.g. "
            f"{(missing + unexpected + wrong)[:3]}). The file was edited or corrupted."
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval(), info
