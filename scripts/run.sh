#!/usr/bin/env bash
# Set up (idempotent) and run the main job headless: segment the bundled H&E sample (or the images
# given as arguments) with the bundled default model; writes labels TIFFs and overlay PNGs to ./out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/genselfdiff run "$@"
