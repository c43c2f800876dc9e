"""Training from a command line: flags built from the config dataclasses, config files, torchrun
set-up, and a runner that prints progress and turns bad input into a one-line error.

``genselfdiff pretrain`` / ``genselfdiff finetune`` (:mod:`napari_genselfdiff.cli.train`) and the
scripts ``src_train/pretrain.py`` / ``finetune.py`` are this module's two front ends: the same flags,
the same config files, the same messages.

Settings are merged in this order (later wins): the dataclass defaults, the run folder's
``config.json`` (with ``--resume``), the ``--config FILE`` (its "pretrain" / "finetune" section, or
the whole file), then the flags given on the command line. Giving ``--steps`` drops an ``--epochs``
from the files and vice versa.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import typing
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from ..allocator import keep_freed_memory
from ..errors import GenSelfDiffError, TrainingInputError
from ..progress import Returning
from .control import TrainingControl
from .runlog import read_config
from .settings import RunOptions, config_from_json

#: Pairs of settings where giving one on the command line drops the other from config files.
EXCLUSIVE = (("steps", "epochs"), ("arch", "width"))
#: Settings never taken from a run folder's config.json (in-memory data, the resume flag itself).
NOT_RESUMED = ("resume", "pairs", "val_pairs")


def _flag_type(hint: Any) -> tuple[Any, bool]:
    """(element type, is_list) of a dataclass field's type hint (Optional unwrapped)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return _flag_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        return (args[0] if args and args[0] in (int, float, str, bool) else str), True
    return (hint if hint in (int, float, str, bool) else str), False


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of ``cls`` that has help text (see core.training.settings.option)."""
    hints = typing.get_type_hints(cls)
    shared = {f.name for f in dataclasses.fields(RunOptions)}
    fields = dataclasses.fields(cls)
    # The run's own settings (data, network, loss) first, then the shared ones (optimiser, device).
    for f in [f for f in fields if f.name not in shared] + [f for f in fields if f.name in shared]:
        meta = f.metadata
        if not meta.get("help"):
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kind, is_list = _flag_type(hints[f.name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        kwargs: dict[str, Any] = dict(meta.get("argparse") or {})
        kwargs.update(dest=f.name, default=argparse.SUPPRESS, help=f"{meta['help']} (default: {shown})")
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if is_list:
                kwargs.setdefault("nargs", "+")
        parser.add_argument(flag, **kwargs)


def make_parser(cls: type, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of a training command: ``--config``, ``--log-every``, ``--threads`` and one flag per
    documented field of ``cls`` (:class:`.pretrain.PretrainConfig` or :class:`.finetune.FinetuneConfig`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="JSON settings (e.g. src_train/configs/nuclei.json, the recipe of the bundled "
                             "model); flags override it")
    parser.add_argument("--log-every", type=int, default=10, metavar="N",
                        help="print a step line every N steps when not on a terminal")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: torch's choice; 1 is often faster on a busy, shared CPU)")
    add_config_arguments(parser, cls)
    return parser


def _config_file(path: str, section: str) -> dict[str, Any]:
    try:
        values = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingInputError(f"{path}: cannot read the config file ({exc}).") from exc
    if not isinstance(values, dict):
        raise TrainingInputError(f"{path}: the config file must hold a JSON object.")
    if section in values and isinstance(values[section], dict):
        values = values[section]
    return {k: v for k, v in values.items() if not k.startswith("_") and k not in ("pretrain", "finetune")}


def build_config(cls: type, args: argparse.Namespace, section: str) -> Any:
    """The run configuration from defaults, run folder, config file and flags (see the module doc)."""
    given = {k: v for k, v in vars(args).items() if k not in ("config", "log_every", "threads")}
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if given.get("resume"):
        out = given.get("out_dir") or next(f.default for f in dataclasses.fields(cls) if f.name == "out_dir")
        saved = read_config(out) or {}
        values.update({k: v for k, v in saved.items() if k in fields and k not in NOT_RESUMED})
    if getattr(args, "config", None):
        values.update(_config_file(args.config, section))
    for a, b in EXCLUSIVE:
        if a in given and b not in given:
            values.pop(b, None)
        if b in given and a not in given:
            values.pop(a, None)
    values.update(given)
    return config_from_json(cls, values)


def setup_distributed() -> tuple[int, int]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPUs.

    Returns:
        (rank, world size); (0, 1) without torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            # Share the cores: torchrun sets OMP_NUM_THREADS=1 unless told otherwise.
            dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def teardown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _install_signal_handlers(control: TrainingControl, main: bool) -> None:
    """First Ctrl-C (or SIGTERM): cancel after the current step, with a checkpoint. Second: abort."""
    def handler(signum, frame):  # noqa: ARG001
        if control.is_cancelled:
            raise KeyboardInterrupt
        control.cancel()
        if main:
            print("\ncancelling after this step (a checkpoint is written); press Ctrl-C again to abort",
                  file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def consume(events: Generator, *, main: bool, log_every: int) -> tuple[Any, bool]:
    """Run a training generator, printing its events on rank 0; returns (its value, cancelled)."""
    bar = None
    if main and sys.stdout.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="step", dynamic_ncols=True)
    cancelled = False
    run = Returning(events)
    try:
        for event in run:
            cancelled = cancelled or event.kind == "cancelled"
            if not main:
                continue
            if bar is not None:
                if event.kind == "start":
                    bar.reset(total=event.total_steps)
                    bar.update(event.step)
                if event.kind == "step":
                    bar.update(event.step - bar.n)
                    bar.set_postfix(loss=f"{event.loss:.4f}")
                else:
                    bar.write(event.describe())
            elif event.kind != "step" or event.step % max(1, log_every) == 0 or event.step == event.total_steps:
                print(event.describe(), flush=True)
    finally:
        if bar is not None:
            bar.close()
    return run.value, cancelled


def run_main(cls: type, train: Callable, args: argparse.Namespace, section: str) -> int:
    """Set up, train, and report; bad input ends with ``error: <message>`` and exit code 2."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    keep_freed_memory()
    rank, _ = setup_distributed()
    main = rank == 0
    control = TrainingControl()
    _install_signal_handlers(control, main)
    try:
        cfg = build_config(cls, args, section)
        path, cancelled = consume(train(cfg, control), main=main, log_every=args.log_every)
    except GenSelfDiffError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        teardown_distributed()
    if main:
        if cancelled:
            print(f"cancelled; resume with --resume --out {getattr(cfg, 'out_dir', '')}", flush=True)
        elif path is not None:
            print(f"model: {path}", flush=True)
    return 130 if cancelled else 0
