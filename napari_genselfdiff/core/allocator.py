"""Keep freed memory in the process (glibc ``mallopt``) so PyTorch's CPU buffers stop page-faulting.

PyTorch on the CPU frees and re-allocates the same large activation buffers at every layer. With
glibc's defaults, blocks above the (dynamic, at most 32 MiB) mmap threshold go back to the kernel
on free and come back as fresh zeroed pages. Measured here (tiny network, one 512x512 tile forward,
1 thread): 73,600 minor page faults and 0.23 s of system time per tile with the defaults; 2,560
faults and 0.007 s after :func:`keep_freed_memory`, and 8 % less CPU time in all (the benchmark
``allocator`` figure in docs/performance.md). A 128-px training step barely changes (12,300 ->
10,900 faults, 1.5 % of its time): its buffers are small.

The cost: freed memory stays with the process for reuse instead of going back to the system, so
the resident size stays at its peak. The command line and the training processes use it; the
napari process does not (it holds the user's images and should give memory back).

:func:`release_freed_memory` does the opposite, once: glibc ``malloc_trim(0)`` hands the free pages
of every malloc arena back to the kernel. The napari widget calls it when a job ends: each job runs
in a fresh worker thread, glibc gives threads their own arenas, and the pages they freed stayed
resident (napari's resident size grew about 5 MB per fine-tune cycle; benchmarks/finetune_cycles_memory.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory: no mmap-backed blocks, no trimming (Linux/glibc only).

    Idempotent. Returns True when the settings are in force, False where they do not apply
    (another C library or operating system).
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 1 << 30) and mallopt(_M_TOP_PAD, 64 << 20))
    return _done


def release_freed_memory() -> bool:
    """Give the free pages of every glibc malloc arena back to the kernel (``malloc_trim(0)``).

    It walks every arena's free lists (up to a few hundred ms on a busy machine with a large heap) and
    releases the GIL meanwhile, so callers with a GUI run it in a background thread. Returns True when
    glibc released something, False when nothing was released or where it does not apply.
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))


def _glibc_function(name: str):
    """The C library's function ``name`` on Linux, or None (another OS, or a C library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
