#!/usr/bin/env bash
# Idempotent set-up for a fresh Linux machine (Debian/Ubuntu): system libraries for a headless Qt/GL
# display, a virtual environment in .venv, the CPU build of torch pinned BEFORE the project (an
# unpinned torch pulls a multi-GB CUDA build), then the project with its Qt and test extras.
# Set GENSELFDIFF_TORCH to another pin (e.g. "torch==2.13.0 --index-url <cuda index>") on a GPU box.
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
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${GENSELFDIFF_TORCH:-torch==2.13.0}
.venv/bin/python -m pip install -q -e ".[qt,test]"
echo "$want" > "$stamp"
