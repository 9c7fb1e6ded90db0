#!/usr/bin/env bash
# Session 12's matrix queue, in order: the paper's parts on the tuned baseline (seed 0 first, so a
# cut-short queue has every row), then the 5-member ensembles' extra members. Run from a worktree
# pinned at one commit, 1 torch thread, one cell at a time; resumable (finished cells are skipped).
#   git worktree add --detach /work/wtX <commit>; cd /work/wtX; WORK=/work/bench_work bash benchmarks/queue_session12.sh
set -u
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
WORK=${WORK:-benchmarks/work}
export PYTHONPATH="$PWD/src"
cell() { $PY benchmarks/small_data.py --matrix "$1" --configs $2 --seeds $3 --epochs 100 --threads 1 \
         --set eval_every=5 --name "$4" --work "$WORK"; }
cell tuned "tuned_warm25 tuned_ema" 0 tuned100
cell parts "tuned_ra9_lsb_last tuned_ra9_lsb_before tuned_label_smoothing tuned_cosine tuned_cosine_ce \
            tuned_focal_cosine tuned_focal_cosine_authors tuned_full" 0 parts100
cell parts "tuned@m1 tuned@m2 tuned@m3 tuned@m4" 0 members100
