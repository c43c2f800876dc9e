"""Run a training stage in a child Python process, seen from napari as an ordinary generator.

Why a process and not just a thread: a training step of a small network on a CPU is largely Python
(autograd bookkeeping, patch cropping and augmentation in numpy), so a training THREAD holds the GIL
much of the time; on a busy machine the OS then pre-empts it while it holds the GIL and napari's
main thread waits: we measured GUI stalls of 250-900 ms with a thread on a shared 2-core CPU, against
well under 100 ms with a process. Segmentation is almost all inside torch kernels (which release the
GIL) and stays in a thread.

:func:`train_in_subprocess` is a generator with the same contract as the core's ``pretrain`` and
``finetune``: it yields their :class:`ProgressEvent` objects and returns the model path, or raises
their exceptions. napari runs it in a thread worker whose only work is waiting on a queue. The
panel's :class:`TrainingControl` keeps working: pause / resume / cancel are forwarded to the child
within 50 ms. If the generator is closed (the worker quit) or the parent goes away (the child sees
its stdin close), the child is cancelled, which saves a checkpoint of the last completed step.

The child runs ``python -m napari_genselfdiff.plugin._train_child`` (no napari, no Qt), at a lower
CPU priority (nice +10) so that the GUI stays responsive, with the same torch thread count rule as
the thread workers. Messages are pickles over the child's stdin/stdout; the child's own prints go
to stderr. A child whose run ended normally is kept (at most :data:`MAX_IDLE`, for up to ten
minutes) and takes the next run, so a preview or a fine-tuning after a pretraining does not pay the
child's imports (torch and its compiler stack: several seconds on a small CPU) again.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, BinaryIO

from ..core.errors import GenSelfDiffError
from ._threading import torch_threads

#: seconds the parent waits for a cancelled child to save its checkpoint and exit before killing it
STOP_TIMEOUT_S = 120.0
#: children kept for reuse after their run ended
MAX_IDLE = 1

_idle: list[subprocess.Popen] = []
_idle_lock = threading.Lock()


def send(stream: BinaryIO, message: Any) -> None:
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    """The next message, or ``("eof",)`` when the other side closed the stream."""
    try:
        return pickle.load(stream)
    except (EOFError, OSError, pickle.UnpicklingError):
        return ("eof",)


def _pump(stream: BinaryIO, inbox: queue.Queue) -> None:
    while True:
        message = receive(stream)
        inbox.put(message)
        if message[0] in ("eof", "returned", "error"):
            return


def _spawn() -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("GENSELFDIFF_TORCH_THREADS", str(torch_threads()))
    creationflags = getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0)  # Windows; nice on POSIX
    return subprocess.Popen(
        [sys.executable, "-m", "napari_genselfdiff.plugin._train_child"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, creationflags=creationflags,
    )


def _take() -> subprocess.Popen:
    with _idle_lock:
        while _idle:
            proc = _idle.pop()
            if proc.poll() is None:
                return proc
    return _spawn()


def _close(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """Close the child's pipes (an idle child then exits; a running one cancels first) and reap it."""
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _give_back(proc: subprocess.Popen) -> None:
    with _idle_lock:
        if proc.poll() is None and len(_idle) < MAX_IDLE:
            _idle.append(proc)
            return
    _close(proc)


class TrainingProcessDied(GenSelfDiffError, RuntimeError):
    """The training child ended without a word (killed, crashed); the message says what to do."""


def died_message(code: int, run_dir=None) -> str:
    """What to tell the user when the training child died without a word (killed, crashed)."""
    import signal

    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed ({name}{', e.g. by kill -9 or the out-of-memory killer' if name == 'SIGKILL' else ''})"
    else:
        how = f"ended unexpectedly (exit code {code}); see the terminal for its output"
    text = f"the training process {how}."
    latest = None
    if run_dir:
        try:
            from ..core.training import find_latest_checkpoint, load_checkpoint

            path = find_latest_checkpoint(Path(run_dir).expanduser())
            latest = (path, load_checkpoint(path).step) if path is not None else None
        except Exception:  # a damaged checkpoint: say nothing about it rather than fail here
            latest = None
    if latest is not None:
        text += (f" Its last checkpoint (step {latest[1]}) is kept in {run_dir}; resume from it to continue "
                 "from that step.")
    elif run_dir:
        text += " No checkpoint had been written yet; start the run again."
    return text + " If memory ran out, use a smaller network, batch or patch size."


def train_in_subprocess(stage: str, cfg, control) -> Generator[Any, None, Path | None]:
    """Run ``pretrain(cfg)`` (stage "pretrain") or ``finetune(cfg)`` (stage "finetune") in a child process.

    Stage "preview" returns ``make_grid(sample_preview(**cfg))`` (DDIM samples in one image).

    Args:
        stage: "pretrain", "finetune" or "preview".
        cfg: the stage's configuration dataclass (in-memory arrays are sent to the child), or the
            keyword arguments of ``sample_preview``.
        control: the :class:`TrainingControl` the panel uses (or None); its state is forwarded.

    Yields:
        The run's ProgressEvent objects.

    Returns:
        What the stage returns (the model file path; the preview image).

    Raises:
        The stage's own exceptions (TrainingInputError, MaskInputError, ...), or RuntimeError when the
        child process dies without saying why.
    """
    proc = _take()
    inbox: queue.Queue = queue.Queue()
    forwarded = {"paused": False, "cancelled": False}
    ended = False  # the child reported the end of the run (it can then be reused)

    def forward(command: str) -> None:
        try:
            send(proc.stdin, (command,))
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child is gone; its end shows up as "eof"

    try:
        send(proc.stdin, ("run", stage, cfg))
    except (BrokenPipeError, OSError) as exc:
        _close(proc, timeout=5)
        raise RuntimeError(f"the training process could not be started ({exc}).") from exc
    threading.Thread(target=_pump, args=(proc.stdout, inbox), name="genselfdiff-train-reader", daemon=True).start()
    try:
        while True:
            if control is not None:
                if control.is_cancelled and not forwarded["cancelled"]:
                    forward("cancel")
                    forwarded["cancelled"] = True
                elif not control.is_cancelled:
                    paused = control.is_paused
                    if paused != forwarded["paused"]:
                        forward("pause" if paused else "resume")
                        forwarded["paused"] = paused
            try:
                message = inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            kind = message[0]
            if kind == "event":
                yield message[1]
            elif kind == "returned":
                ended = True
                return message[1]
            elif kind == "error":
                ended = True
                raise message[1]
            else:  # "eof": the child died without a last word
                code = proc.wait()
                raise TrainingProcessDied(died_message(code, getattr(cfg, "out_dir", None)))
    finally:
        if ended:
            _give_back(proc)
        else:
            # The worker was quit (napari closing, the generator closed) or the child died: closing
            # its stdin cancels the run, which saves a checkpoint, and ends the child.
            _close(proc)
