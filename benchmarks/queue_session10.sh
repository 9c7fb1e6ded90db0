#!/usr/bin/env bash
# The background queue of session 10, run from a worktree pinned at one commit, one cell at a
# time on 1 torch thread (the other core is left to the foreground). Resumable: rerun it.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH="$PWD/src"
$PY benchmarks/bare_loop.py --seeds 0 1 2 --epochs 100 --threads 1
$PY benchmarks/small_data.py --matrix small_input --seeds 0 1 2 --epochs 100 --threads 1 --set eval_every=5 --name small_input
