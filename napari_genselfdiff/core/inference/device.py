"""Device and precision choice: cuda -> mps -> cpu; bf16 where the hardware computes it natively."""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from ..defaults import Precision  # noqa: F401 - re-exported; the choices are written once, in core/defaults.py


def choose_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available; use --device auto or cpu.")
    return dev


#: Environment variable that overrides the CPU bf16 detection (see :func:`cpu_has_native_bf16`).
FORCE_CPU_BF16_ENV = "GENSELFDIFF_FORCE_CPU_BF16"
_FORCE_VALUES = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def cpu_flags_have_native_bf16(cpuinfo: str) -> bool:
    """True when the flags in ``/proc/cpuinfo`` text include AVX512-BF16 or AMX-BF16."""
    flags = set(cpuinfo.split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=1)
def _detected_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            return cpu_flags_have_native_bf16(handle.read())
    except OSError:
        return False


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX (bf16 is then ~3x faster than fp32 here; elsewhere slower).

    The environment variable ``GENSELFDIFF_FORCE_CPU_BF16`` overrides the detection, read at every
    call: ``1`` (or true/yes/on) acts as if the CPU had native bf16, so ``"auto"`` picks bf16 (where
    the CPU lacks it, PyTorch emulates bf16: slower, but the same code path); ``0`` (or
    false/no/off) acts as if it had not, so ``"auto"`` picks fp32. Unset or empty: detected from
    ``/proc/cpuinfo``. It lets one machine run the test suite as either kind of CPU would, e.g.
    ``GENSELFDIFF_FORCE_CPU_BF16=1 bash scripts/test.sh``; child processes inherit it.
    """
    forced = os.environ.get(FORCE_CPU_BF16_ENV, "").strip().lower()
    if forced:
        if forced not in _FORCE_VALUES:
            raise ValueError(f"{FORCE_CPU_BF16_ENV}={forced!r}: use 1 (as if the CPU had native bf16), "
                             "0 (as if it had not), or leave it unset (detect)")
        return _FORCE_VALUES[forced]
    return _detected_native_bf16()


def choose_precision(device: torch.device, precision: str | Precision = Precision.AUTO) -> Precision:
    """Resolve ``auto``: bf16 on CUDA with bf16 support (else fp16), bf16 on capable CPUs, else fp32."""
    precision = Precision(precision)
    if precision != Precision.AUTO:
        return precision
    if device.type == "cuda":
        return Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP16
    if device.type == "cpu" and cpu_has_native_bf16():
        return Precision.BF16
    return Precision.FP32


def autocast(device: torch.device, precision: Precision):
    """An autocast context for the precision (a no-op for fp32)."""
    if precision == Precision.FP32:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == Precision.BF16 else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
