"""The child side of :mod:`._subprocess`: run one training stage (or a preview) and stream its events.

No napari, no Qt. Started as ``python -m napari_genselfdiff.plugin._train_child``. Reads ``("run", stage, cfg)`` and
then control messages (``("pause",)``, ``("resume",)``, ``("cancel",)``) from stdin; writes
``("event", ProgressEvent)``, then ``("returned", path)`` or ``("error", exception)`` to stdout.
A closed stdin (the parent is gone) cancels the run, which saves a checkpoint.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading


def _listen(stream, control) -> None:
    from ._subprocess import receive

    while True:
        message = receive(stream)
        command = message[0]
        if command == "pause":
            control.pause()
        elif command == "resume":
            control.resume()
        elif command in ("cancel", "eof"):
            control.cancel()
            return


def _preview(**kwargs):
    """DDIM samples tiled in one image (a generator, like the training stages)."""
    from ..core.training import make_grid, sample_preview

    return make_grid(sample_preview(**kwargs))
    yield  # pragma: no cover - makes this a generator


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
    from ._subprocess import receive, send
    from ._threading import configure_torch_threads

    inbox = sys.stdin.buffer
    message = receive(inbox)
    if message[0] != "run":
        return 2
    _, stage, cfg = message
    configure_torch_threads()
    from ..core.training import TrainingControl, finetune, pretrain

    control = TrainingControl()
    threading.Thread(target=_listen, args=(inbox, control), daemon=True).start()
    try:
        if stage == "preview":
            gen = _preview(**cfg)
        else:
            gen = (pretrain if stage == "pretrain" else finetune)(cfg, control)
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                send(channel, ("returned", stop.value))
                break
            send(channel, ("event", event))
    except BrokenPipeError:
        return 1
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
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
