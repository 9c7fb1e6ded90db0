#!/usr/bin/env bash
# Session 11's matrix queue (what ran, in order), for the record and to rerun: each part from a
# worktree pinned at one commit (PYTHONPATH=<worktree>/src), 1 torch thread, one cell at a time,
# into a work dir shared across worktrees. Resumable: a finished cell (summary.json) is skipped.
#   git worktree add --detach /work/wtX <commit>; cd /work/wtX; WORK=/work/bench_work bash benchmarks/queue_session11.sh
set -u
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
WORK=${WORK:-benchmarks/work}
export PYTHONPATH="$PWD/src"
cell() { $PY benchmarks/small_data.py --matrix "$1" --configs $2 --seeds $3 --epochs 100 --threads 1 \
         --set eval_every=5 --name "$4" --work "$WORK"; }
cell crop "ce ce_pad2 ce_pad4" 0 crop100                                    # crop: pad 2 wins on val
cell tune100 "tune_pad2_wdall tune_pad2_wd5e-3 tune_pad2_lr0.1 tune_pad2_lr0.025 tune_pad2_b32 tune_pad2_adamw" 0 tune100
cell tuned tuned "0 1 2" tuned100                                           # tuned = tune_pad2_wdall
cell tuned tuned_fitpad 0 tuned100
# next (not finished in session 11): the paper's parts on the tuned baseline, then their seeds
cell tuned "tuned_ra9 tuned_keeplast" 0 tuned100                          # done in session 11
cell tuned "tuned_lr0.1 tuned_ra5 tuned_warm25 tuned_ema" 0 tuned100
cell tuned "tuned_ra9 tuned_ra5" "1 2" tuned100
