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
to stderr.
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

from ._threading import torch_threads

#: seconds the parent waits for a cancelled child to save its checkpoint and exit before killing it
STOP_TIMEOUT_S = 120.0


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


def train_in_subprocess(stage: str, cfg, control) -> Generator[Any, None, Path | None]:
    """Run ``pretrain(cfg)`` (stage "pretrain") or ``finetune(cfg)`` (stage "finetune") in a child process.

    Stage "preview" returns ``make_grid(sample_preview(**cfg))`` (DDIM samples in one image).

    Args:
        stage: "pretrain", "finetune" or "preview".
        cfg: the stage's configuration dataclass (in-memory arrays are sent to the child), or the
            keyword arguments of ``sample_preview``.
        control: the :class:`TrainingControl` the panel uses; its state is forwarded to the child.

    Yields:
        The run's ProgressEvent objects.

    Returns:
        The model file path the stage returns.

    Raises:
        The stage's own exceptions (TrainingInputError, MaskInputError, ...), or RuntimeError when the
        child process dies without saying why.
    """
    env = dict(os.environ)
    env.setdefault("GENSELFDIFF_TORCH_THREADS", str(torch_threads()))
    creationflags = getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0)  # Windows; nice on POSIX
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_genselfdiff.plugin._train_child"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, creationflags=creationflags,
    )
    inbox: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, inbox), name="genselfdiff-train-reader", daemon=True)
    reader.start()
    forwarded = {"paused": False, "cancelled": False}
    finished = False

    def forward(command: str) -> None:
        try:
            send(proc.stdin, (command,))
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child is gone; its end shows up as "eof"

    try:
        send(proc.stdin, ("run", stage, cfg))
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
                finished = True
                return message[1]
            elif kind == "error":
                finished = True
                raise message[1]
            else:  # "eof": the child died without a last word
                finished = True
                code = proc.wait()
                raise RuntimeError(
                    f"the training process ended unexpectedly (exit code {code}); see the terminal for its output. "
                    "If memory ran out, use a smaller network, batch or patch size."
                )
    finally:
        if not finished and proc.poll() is None:
            # The worker was quit (napari closing, the generator closed): stop the run cleanly.
            forward("cancel")
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
