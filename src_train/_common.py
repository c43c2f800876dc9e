"""What the training scripts share: the repository on sys.path, and the core's command-line training
(:mod:`napari_genselfdiff.core.training.command`: flags built from the config dataclasses, config
files, torchrun set-up, the runner), which ``genselfdiff pretrain`` / ``finetune`` use too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_genselfdiff.core.training.command import (  # noqa: E402,F401
    EXCLUSIVE,
    NOT_RESUMED,
    _config_file,
    add_config_arguments,
    build_config,
    consume,
    make_parser,
    run_main,
    setup_distributed,
    teardown_distributed,
)
