"""Pause, resume and cancel a training run from another thread.

The training generator checks the control between steps; another thread sets it (in the napari
widget's training child process, the thread that reads the GUI's messages: plugin/_train_child.py)::

    control = TrainingControl()
    threading.Thread(target=run_generator, args=(pretrain(cfg, control),)).start()
    control.pause()     # the run yields a "paused" event and blocks before its next step
    control.resume()    # it yields "resumed" and goes on
    control.cancel()    # it checkpoints the last completed step, yields "cancelled" and returns

Cancelling also wakes a paused run. All methods are thread-safe and idempotent.
"""

from __future__ import annotations

import threading


class TrainingControl:
    """Thread-safe pause / resume / cancel flags shared by a GUI (or CLI) and a training loop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._cancelled = False

    def pause(self) -> None:
        """Ask the run to stop before its next step until :meth:`resume` (or :meth:`cancel`)."""
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        """Let a paused run go on."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def cancel(self) -> None:
        """Ask the run to stop for good (it saves a checkpoint of its last completed step first)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    @property
    def is_paused(self) -> bool:
        with self._cond:
            return self._paused and not self._cancelled

    @property
    def is_cancelled(self) -> bool:
        with self._cond:
            return self._cancelled

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        """Block while paused (and not cancelled).

        Args:
            timeout: give up after this many seconds. By default, wait as long as it takes.

        Returns:
            True when the run may go on (resumed or never paused), False when cancelled or timed out
            while still paused.
        """
        with self._cond:
            self._cond.wait_for(lambda: not self._paused or self._cancelled, timeout=timeout)
            return not self._paused and not self._cancelled

    def __repr__(self) -> str:
        return f"TrainingControl(paused={self.is_paused}, cancelled={self.is_cancelled})"
