#!/usr/bin/env bash
# Issue 24's GPU embedding of the 10M-token corpus in one device call (docs/bench/corpus-scale.md,
# "GPU embedding of a 10M-token corpus", which says how .gpu/embed is made). On the device, from the repo
# root, with .gpu/embed carried: `bash docs/bench/corpus-scale/gpu-embed.sh`. Rehearsed on the CPU with
# PATH (a python3 that blocks what the GPU machine lacks), SKIP_WHEELS=1, WORK, OUT and DUMP (a slice).
set -u
E=$PWD/.gpu/embed
O=${OUT:-/tmp/out}
W=${WORK:-/tmp}  # scratch: model, site-packages, vectors
mkdir -p "$O" "$W"
exec > >(tee -a "$O/log.txt") 2>&1
t0=$(date +%s.%N)
el() { python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')"; }
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$W/site" "$E"/whl/*.whl || exit 1
mkdir -p "$W/model" && cp -r "$E/model/." "$W/model/"
python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('$E/model.safetensors.xz'), open('$W/model/model.safetensors','wb'))"
(cd "$W/model" && sha256sum -c "$E/model.safetensors.sha256") || exit 1
export PYTHONPATH="$W/site" PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1 RAGCACHE_EMBED_DEVICE=auto MODEL="$W/model" SRC="$E/src"
echo "setup done at $(el) s"
python3 - <<'EOF' || exit 1
import os, sys
sys.path.insert(0, os.environ["SRC"])
import pydantic, sentence_transformers, tokenizers, torch, transformers
import ragcache
from ragcache.router.embeddings import SentenceTransformerEmbedder, embed_device
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__,
      "sentence-transformers", sentence_transformers.__version__, "tokenizers", tokenizers.__version__,
      "pydantic", pydantic.VERSION, "ragcache from", ragcache.__file__)
e = SentenceTransformerEmbedder(os.environ["MODEL"], "all-MiniLM-L6-v2")
p = next(e._model.parameters())
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print("embed_device", embed_device(), "model on", p.device, p.dtype, "max_seq_length", e._model.max_seq_length, "gpu", gpu)
EOF
echo "check done at $(el) s"
for n in 1 2; do
  if [ "$n" = 2 ] && [ "$(python3 -c "print(int($(el) > 120))")" = 1 ]; then echo "run 2 skipped at $(el) s"; break; fi
  s=$(date +%s.%N)
  timeout $((n == 1 ? 150 : 100)) python3 "$SRC/scripts/embed_chunks.py" embed "${DUMP:-$E/hotpotqa-all.jsonl.xz}" "$W/run$n" --model "$W/model"
  echo "run $n: exit $?, process wall $(python3 -c "print(f'{$(date +%s.%N) - $s:.2f}')") s"
  cp "$W/run$n/embed.json" "$O/embed-$n.json"
done
cp "$W"/run1/vectors-*.npy "$O/"
ls -l "$W/run1"
echo "all done at $(el) s"
sleep 1  # let tee write the last lines
