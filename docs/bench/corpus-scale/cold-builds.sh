#!/bin/bash
# cold builds for docs/bench/corpus-scale.md (issue 24): each gets its own RAGCACHE_HOME holding only the converted models
cd /work/main
run() {  # name workers corpus
  home=/tmp/h1/home-$1; rm -rf $home /tmp/h1/b/$1; mkdir -p $home
  cp -r /tmp/h1/home/models /tmp/h1/home/onnx $home/
  echo "== $1 workers=$2 corpus=$3 start $(date -u +%H:%M:%S) load $(cat /proc/loadavg)"
  s=$(date +%s.%N)
  RAGCACHE_HOME=$home RAGCACHE_EMBED_WORKERS=$2 .venv/bin/ragcache build $3 --out /tmp/h1/b/$1
  rc=$?
  e=$(date +%s.%N)
  echo "== $1 rc=$rc wall_s=$(echo "$e - $s" | bc) end $(date -u +%H:%M:%S) load $(cat /proc/loadavg)"
}
run sqlite-1 1 corpora/sqlite > /tmp/h1/sqlite-1.txt 2>&1
run sqlite-2 2 corpora/sqlite > /tmp/h1/sqlite-2.txt 2>&1
run hotpotqa-600 2 corpora/hotpotqa-600 > /tmp/h1/hotpotqa-600.txt 2>&1
echo done > /tmp/h1/builds.done
