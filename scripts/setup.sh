#!/usr/bin/env bash
# Idempotent set-up for a fresh Linux machine (Debian/Ubuntu): system libraries for a headless Qt/GL
# display, a virtual environment in .venv, torch BEFORE the project, then the project with its GUI
# and test extras (`pip install -e ".[gui,test]"`).
# The torch build is chosen, and said: with an NVIDIA GPU (nvidia-smi lists one) the default PyPI
# build (CUDA), else the CPU build from PyTorch's CPU index (a plain `pip install torch` would fetch
# the multi-GB CUDA build on a machine that cannot use it). Set GENSELFDIFF_TORCH to any pip
# arguments to choose yourself (e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.genselfdiff-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

apt_pkgs="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-randr0 \
libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 \
libdbus-1-3 libfontconfig1 python3-venv"
missing=""
for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
torch_version=2.13.0
cpu_index=https://download.pytorch.org/whl/cpu
if [ -n "${GENSELFDIFF_TORCH:-}" ]; then
  torch_args="$GENSELFDIFF_TORCH"; echo "setup: torch as GENSELFDIFF_TORCH says: $torch_args"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
  torch_args="torch==$torch_version"; echo "setup: NVIDIA GPU found (nvidia-smi): the CUDA build of torch $torch_version"
else
  # The CPU index names its x86-64 builds <version>+cpu; elsewhere (ARM) the version alone finds them.
  if [ "$(uname -m)" = "x86_64" ]; then pin="torch==$torch_version+cpu"; else pin="torch==$torch_version"; fi
  torch_args="$pin --extra-index-url $cpu_index"
  echo "setup: no NVIDIA GPU found (no nvidia-smi, or it lists none): the CPU build of torch $torch_version ($cpu_index)"
fi
# A CPU wheel that pip already finds (a local wheel folder or index in pip's own configuration) is used
# as it is; the CPU index is asked only when none is found, so a machine without access to it does not
# wait on retries.
if [ -z "${GENSELFDIFF_TORCH:-}" ] && [ -n "${pin:-}" ] && .venv/bin/python -m pip install -q "$pin" 2>/dev/null; then
  echo "setup: $pin found where pip looks by default (its wheel folders and indexes)"
else
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $torch_args
fi
.venv/bin/python -c "import torch; print('setup: installed torch', torch.__version__, '(CUDA ' + str(torch.version.cuda) + ')' if torch.version.cuda else '(CPU build)')"
.venv/bin/python -m pip install -q -e ".[gui,test]"
echo "$want" > "$stamp"
