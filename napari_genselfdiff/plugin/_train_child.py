"""The child side of :mod:`._subprocess`: run training stages (or previews) and stream their events.

No napari, no Qt. Started as ``python -m napari_genselfdiff.plugin._train_child``. Reads
``("run", stage, cfg)`` and control messages (``("pause",)``, ``("resume",)``, ``("cancel",)``)
from stdin; writes ``("event", ProgressEvent)``, then ``("returned", value)`` or
``("error", exception)`` to stdout. After a run it waits for the next ``("run", ...)`` (so the
parent can reuse it without paying for the imports again) and exits after
:data:`IDLE_EXIT_S` seconds without work. A closed stdin (the parent is gone) cancels the current
run, which saves a checkpoint, and ends the process.
"""

from __future__ import annotations

import os
import pickle
import queue
import sys
import threading

#: an idle child exits after this many seconds without a new run
IDLE_EXIT_S = 600.0


class _Dispatcher:
    """Reads stdin in a thread: control messages go to the current run, "run" messages to a queue."""

    def __init__(self, stream, make_control) -> None:
        self.stream = stream
        self.make_control = make_control
        self.runs: queue.Queue = queue.Queue()
        self.control = None
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        from ._subprocess import receive

        while True:
            message = receive(self.stream)
            command = message[0]
            control = self.control
            if command == "run":
                # The run's control exists before any of its pause/cancel messages can arrive.
                self.control = self.make_control()
                self.runs.put((message, self.control))
            elif command == "eof":
                self.closed = True
                if control is not None:
                    control.cancel()
                self.runs.put((message, None))
                return
            elif control is not None:
                {"pause": control.pause, "resume": control.resume, "cancel": control.cancel}.get(command, lambda: None)()


def _preview(**kwargs):
    """DDIM samples tiled in one image (a generator, like the training stages)."""
    from ..core.training import make_grid, sample_preview

    return make_grid(sample_preview(**kwargs))
    yield  # pragma: no cover - makes this a generator


def _run_one(stage: str, cfg, control, channel) -> bool:
    """Run one stage, streaming its events; False when the parent is gone."""
    from ..core.progress import Returning
    from ..core.training import finetune, pretrain
    from ._subprocess import send

    try:
        if stage == "preview":
            gen = _preview(**cfg)
        else:
            gen = (pretrain if stage == "pretrain" else finetune)(cfg, control)
        run = Returning(gen)
        for event in run:
            send(channel, ("event", event))
        send(channel, ("returned", run.value))
        return True
    except BrokenPipeError:
        return False
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot travel is described instead
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
        try:
            send(channel, ("error", exc))
        except BrokenPipeError:
            return False
        return True


def main() -> int:
    # Our channel is the original stdout; anything else printed goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    if hasattr(os, "nice"):
        try:
            os.nice(10)  # the GUI process keeps priority
        except OSError:
            pass
    from ..core.allocator import keep_freed_memory
    from ._threading import configure_torch_threads

    keep_freed_memory()  # this process only trains: keep its buffers (see core/allocator.py)
    configure_torch_threads()
    from ..core.training import TrainingControl  # the imports a run needs, paid while the parent waits

    dispatcher = _Dispatcher(sys.stdin.buffer, TrainingControl)
    while True:
        try:
            message, control = dispatcher.runs.get(timeout=IDLE_EXIT_S)
        except queue.Empty:
            return 0
        if message[0] != "run":
            return 0
        _, stage, cfg = message
        alive = _run_one(stage, cfg, control, channel)
        if not alive or dispatcher.closed:
            return 0


if __name__ == "__main__":
    sys.exit(main())
