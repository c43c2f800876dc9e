"""Precision choice: what "auto" resolves to on each kind of CPU, independent of the machine running this.

CPUs with native bf16 (AVX512-BF16 or AMX) get bf16, the others fp32. The detection reads
/proc/cpuinfo; the tests here replace it (or force it through ``GENSELFDIFF_FORCE_CPU_BF16``) so both
kinds are checked on every machine.
"""

from __future__ import annotations

import pytest
import torch

from napari_genselfdiff.core.inference import device as device_module
from napari_genselfdiff.core.inference.device import (
    FORCE_CPU_BF16_ENV,
    Precision,
    choose_precision,
    cpu_flags_have_native_bf16,
    cpu_has_native_bf16,
)

CPU = torch.device("cpu")


@pytest.fixture
def detected(monkeypatch):
    """``detected(native)``: make the CPU detection answer ``native``, with no forcing variable set."""

    def set_native(native: bool) -> None:
        monkeypatch.delenv(FORCE_CPU_BF16_ENV, raising=False)
        monkeypatch.setattr(device_module, "_detected_native_bf16", lambda: native)

    return set_native


@pytest.mark.parametrize("native, expected", [(True, Precision.BF16), (False, Precision.FP32)])
def test_auto_resolves_to_bf16_only_on_cpus_with_native_bf16(detected, native, expected):
    detected(native)
    assert cpu_has_native_bf16() is native
    assert choose_precision(CPU) == expected
    assert choose_precision(CPU, "auto") == expected
    assert choose_precision(CPU, Precision.AUTO) == expected
    # An explicit precision is kept whatever the CPU.
    for explicit in ("fp32", "bf16", "fp16"):
        assert choose_precision(CPU, explicit) == Precision(explicit)


@pytest.mark.parametrize("native", [True, False])
def test_segmentation_with_default_settings_uses_what_auto_resolved_to(detected, make_model, native):
    from napari_genselfdiff.core.inference import InferenceSettings, segment

    from conftest import synthetic_he

    detected(native)
    network, info, _ = make_model("micro")
    result = segment(network, info, synthetic_he(16, 24), InferenceSettings(device="cpu"))  # precision "auto"
    assert result.precision == ("bf16" if native else "fp32")
    assert result.labels.shape == (16, 24)


def test_cpuinfo_flags():
    avx2_only = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni\n"
    assert not cpu_flags_have_native_bf16(avx2_only)
    assert cpu_flags_have_native_bf16(avx2_only.replace("avx512_vnni", "avx512_vnni avx512_bf16"))
    assert cpu_flags_have_native_bf16(avx2_only.replace("avx512_vnni", "amx_bf16 amx_tile"))
    assert not cpu_flags_have_native_bf16("")


@pytest.mark.parametrize("value, native", [("1", True), ("true", True), (" ON ", True), ("0", False),
                                           ("false", False), ("off", False)])
def test_environment_variable_overrides_the_detection(monkeypatch, value, native):
    monkeypatch.setattr(device_module, "_detected_native_bf16", lambda: not native)  # the opposite
    monkeypatch.setenv(FORCE_CPU_BF16_ENV, value)
    assert cpu_has_native_bf16() is native
    assert choose_precision(CPU) == (Precision.BF16 if native else Precision.FP32)


def test_unset_or_empty_variable_detects_and_a_bad_value_is_an_error(monkeypatch):
    monkeypatch.setattr(device_module, "_detected_native_bf16", lambda: True)
    monkeypatch.setenv(FORCE_CPU_BF16_ENV, "")
    assert cpu_has_native_bf16() is True
    monkeypatch.delenv(FORCE_CPU_BF16_ENV)
    assert cpu_has_native_bf16() is True
    monkeypatch.setenv(FORCE_CPU_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match=FORCE_CPU_BF16_ENV):
        cpu_has_native_bf16()
