#!/usr/bin/env bash
# Session 10, third part of the queue (after the bare loop): one seed of each small-input
# config first, the longest first, on 1 thread (the foreground keeps the other core); then the other seeds. Resumable: rerun it.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH="$PWD/src"
while pgrep -f "benchmarks/bare_loop.py" > /dev/null; do sleep 10; done
$PY benchmarks/bare_loop.py --seeds 0 1 2 --epochs 100 --threads 1
run() { $PY benchmarks/small_data.py --matrix small_input --configs "$1" --seeds $2 --epochs 100 --threads 1 --set eval_every=5 --name small_input; }
run si_stem 0; run si_unchanged 0; run si_up64 0
run si_unchanged "1 2"; run si_up64 "1 2"; run si_stem "1 2"
$PY benchmarks/small_data.py --matrix small_input --seeds 0 1 2 --epochs 100 --set eval_every=5 --name small_input --report-only
