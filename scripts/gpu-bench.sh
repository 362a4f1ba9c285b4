#!/usr/bin/env bash
# The GPU run of docs/bench/gpu/ (issues 15 and 25), on the GPU machine.
#   bash scripts/gpu-bench.sh PHASES [args of `python -m ragcache.bench.gpu run` or `… gpu_load run`]
# PHASES: comma list of main, keepwarm, router, local (ragcache.bench.gpu) or of load, offload,
# replicas (ragcache.bench.gpu_load, issue 25; the router wheel travels with the others); `local` alone
# runs `python -m ragcache.bench.gpu_local` and needs no wheel parts. Expects:
#   /tmp/w/part.*   the carried wheel parts (tar of the wheels in docs/bench/gpu/wheels.txt, split -b 58M)
#   $GPU_ROOT       (default .gpu/run) what `python -m ragcache.bench.gpu prepare --root $GPU_ROOT` wrote here
#                   (corpora, model), plus $GPU_ROOT/src/ragcache (a copy of this package) when the tree there is older
#   .gpu/router     the vllm-router wheel (router phase only)
# Writes $OUT/gpu-<TAG>.json, the bench log and the servers' logs. TAG defaults to the phases.
set -uo pipefail
phases=$1; shift; tag=${TAG:-${phases//,/-}}; root=${GPU_ROOT:-.gpu/run}
case ",$phases," in *,load,*|*,offload,*|*,replicas,*) module=ragcache.bench.gpu_load ;; *) module=ragcache.bench.gpu ;; esac
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ "$phases" = local ]; then  # no vLLM: only what the GPU image lacks, as wheels in $GPU_ROOT/whl (pydantic, cachetools)
  if [ -d "$root/whl" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$root"/whl/*.whl 2>&1 | tail -3
  fi
  python3 scripts/gpu_shims.py /tmp/shims || exit 1
  export PYTHONPATH=/tmp/site:$PWD/$root/src:$PWD:/tmp/shims PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
  python3 -m ragcache.bench.gpu_local --root "$root" --out "$OUT/gpu-$tag.json" "$@" 2>&1 | tee "$OUT/bench-$tag.log" \
    | grep -v "Warning\|warn(" | tail -40
  exit "${PIPESTATUS[0]}"
fi
if [ ! -f /tmp/site/.done ]; then
  cd /tmp/w && cat part.* | tar x && cd - >/dev/null || exit 1
  t0=$SECONDS
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/w/*.whl 2>&1 | tail -3
  echo "install took $((SECONDS - t0)) s"; touch /tmp/site/.done
fi
if [ -d .gpu/router ] && [ ! -d /tmp/site/vllm_router ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/router/*.whl 2>&1 | tail -3
fi
# ragcache's entry points (the backend registry) and, where llama-index-core is missing, a stand-in:
# a source tree has neither (scripts/gpu_shims.py). Last on the path, so real packages win.
python3 scripts/gpu_shims.py /tmp/shims || exit 1
# PYTHONSAFEPATH: `python -m` must not import the working tree's ragcache/ ahead of .gpu/run/src.
export PYTHONPATH=/tmp/site:$PWD/$root/src:$PWD:/tmp/shims PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 VLLM_USE_FLASHINFER_SAMPLER=0
python3 -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" 2>&1 | tail -2
python3 -m $module run --root "$root" --out "$OUT/gpu-$tag.json" --phases "$phases" --logs /tmp/logs "$@" 2>&1 \
  | tee "$OUT/bench-$tag.log" | grep -v "^INFO\|Warning" | tail -60
mkdir -p /tmp/logtails && for f in /tmp/logs/*.log; do tail -c 300000 "$f" > "/tmp/logtails/$(basename "$f")"; done
tar czf "$OUT/logs-$tag.tgz" -C /tmp/logtails .  # one file: a call brings back at most eight
ls -la "$OUT"
