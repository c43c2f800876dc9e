"""Run generator jobs in napari thread workers, or inline when ``GENSELFDIFF_NOTHREADS`` is set.

Every long job of the widget is a generator (the core's ``*_progressive`` functions and the trainers):
it yields progress and returns its result. :func:`start_worker` runs it

- by default in a napari ``GeneratorWorker`` (a QThreadPool thread): ``yielded`` drives progress
  bars, ``returned`` receives the result, ``errored`` the exception, ``finished`` always comes last
  (also after ``aborted``, when :meth:`quit` stopped it between two yields);
- with ``GENSELFDIFF_NOTHREADS=1`` (the ONE switch; read at each start, so tests can set it) in the
  calling thread, emitting the same callbacks in the same order, so a test can click and then assert
  without waiting.

Errors are not relayed to napari's generic error notification (which would show a traceback dialog);
the panels turn them into sentences (:mod:`._notify`).

The worker lowers torch to ``max(1, CPUs - 1)`` intra-op threads (``$GENSELFDIFF_TORCH_THREADS``
overrides it): the main (GUI) thread keeps a core, and on small or shared machines one torch thread
per spare core is also faster than oversubscribing them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Generator
from typing import Any

from ..core.progress import Returning

NOTHREADS_ENV = "GENSELFDIFF_NOTHREADS"
TORCH_THREADS_ENV = "GENSELFDIFF_TORCH_THREADS"


def threads_disabled() -> bool:
    return os.environ.get(NOTHREADS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def torch_threads() -> int:
    value = os.environ.get(TORCH_THREADS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, (os.cpu_count() or 2) - 1)


def configure_torch_threads() -> int:
    """Set torch's intra-op thread count for background jobs (see the module docstring)."""
    import torch

    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


class _Signal:
    """The part of a Qt signal the panels use: connect and emit (for the synchronous worker)."""

    def __init__(self) -> None:
        self._slots: list[Callable] = []

    def connect(self, slot: Callable) -> None:
        self._slots.append(slot)

    def emit(self, *args) -> None:
        for slot in list(self._slots):
            slot(*args)


class SyncWorker:
    """A stand-in for napari's GeneratorWorker that runs the generator in the calling thread."""

    def __init__(self, func: Callable[..., Generator], *args, **kwargs) -> None:
        self._func, self._args, self._kwargs = func, args, kwargs
        self.started, self.yielded, self.returned = _Signal(), _Signal(), _Signal()
        self.errored, self.aborted, self.finished = _Signal(), _Signal(), _Signal()
        self.abort_requested = False
        self.is_running = False

    def quit(self) -> None:
        self.abort_requested = True

    def start(self) -> None:
        self.is_running = True
        self.started.emit()
        try:
            gen = self._func(*self._args, **self._kwargs)
            events = Returning(gen)
            # like napari's worker: the abort flag is read before every step, the first one included
            for value in () if self.abort_requested else events:
                self.yielded.emit(value)
                if self.abort_requested:
                    break
            if self.abort_requested:
                gen.close()
                self.aborted.emit()
            else:
                self.returned.emit(events.value)
        except Exception as exc:  # noqa: BLE001 - handed to the errored callbacks, like the thread worker
            self.errored.emit(exc)
        finally:
            self.is_running = False
            self.finished.emit()


@functools.lru_cache(maxsize=1)
def _quiet_worker_class():
    from napari.qt.threading import GeneratorWorker

    class QuietGeneratorWorker(GeneratorWorker):
        """napari's GeneratorWorker without its generic error relay (the panels report errors)."""

        def _relay_error(self, exc: Exception) -> None:
            pass

    return QuietGeneratorWorker


def _with_torch_threads(func: Callable[..., Generator]) -> Callable[..., Generator]:
    def job(*args, **kwargs):
        configure_torch_threads()
        return (yield from func(*args, **kwargs))

    job.__name__ = getattr(func, "__name__", "job")
    return job


def start_worker(
    func: Callable[..., Generator],
    *args,
    on_yielded: Callable[[Any], None] | None = None,
    on_returned: Callable[[Any], None] | None = None,
    on_errored: Callable[[Exception], None] | None = None,
    on_aborted: Callable[[], None] | None = None,
    on_finished: Callable[[], None] | None = None,
    start: bool = True,
    **kwargs,
):
    """Start ``func(*args, **kwargs)`` (a generator function) as a worker and return the worker.

    The callbacks run in the main thread (queued Qt signals) or inline without threads; ``finished``
    always runs last. The worker offers ``quit()``, ``is_running`` and ``abort_requested``. With
    ``start=False`` the caller starts it (``worker.start()``), e.g. after keeping a reference that
    a synchronous run's callbacks need.
    """
    job = _with_torch_threads(func)
    if threads_disabled():
        worker = SyncWorker(job, *args, **kwargs)
    else:
        from napari.qt.threading import create_worker

        worker = create_worker(
            job, *args, _start_thread=False, _worker_class=_quiet_worker_class(), _ignore_errors=True, **kwargs
        )
    for signal, slot in (
        (worker.yielded, on_yielded),
        (worker.returned, on_returned),
        (worker.errored, on_errored),
        (worker.aborted, on_aborted),
        (worker.finished, on_finished),
    ):
        if slot is not None:
            signal.connect(slot)
    if start:
        worker.start()
    return worker
