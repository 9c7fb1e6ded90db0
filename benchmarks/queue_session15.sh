#!/usr/bin/env bash
# What the matrix still needs after session 14 (resumable: finished cells are skipped). Two 1-thread
# lanes at once, each from a worktree pinned at one commit:
#   git worktree add --detach /work/wtA e240f72   # the 300-epoch rows of session 13 (RandAugment grey fill)
#   git worktree add --detach /work/wtM 3a269dc   # mixup / CutMix (session 14)
#   WORK=/work/bench_work WORK300=/work/bench_work300 MIX300=/work/bench_mix300 bash benchmarks/queue_session15.sh A /work/wtM &
#   WORK=/work/bench_work WORK300=/work/bench_work300 MIX300=/work/bench_mix300 bash benchmarks/queue_session15.sh B /work/wtM &
# Session 14 ran the small-input table on the best config (lanes from e240f72 with --set, work dirs
# /work/bench_si_stem and /work/bench_si_up64; results/small_input100.*) and started the best config +
# CutMix / + mixup-and-CutMix at 300 epochs (results/mix300.*, paired against the best config's
# 300-epoch cells). Lane A finishes CutMix, lane B mixup+CutMix; then the leftovers of
# queue_session14.sh (CE at 300 epochs seeds 1-2, minus-focal-cosine at 300, the losses' seeds 1-2,
# tuned CE's members, the bare loop with RandAugment, k = 10 / 100).
set -u
LANE=$1
cd "$2"
PY=${PY:-/work/main/.venv/bin/python}
MIX300=${MIX300:-benchmarks/work_mix300}
export PYTHONPATH="$PWD/src"
B=tuned_ra9_lsb_before
cell300() { $PY benchmarks/small_data.py --matrix mix --configs $1 --seeds $2 --epochs 300 --threads 1 \
   --set eval_every=5 sched.warmup_epochs=45 --name mix300 --work "$MIX300"; }
if [ "$LANE" = A ]; then cell300 ${B}_cutmix "0 1 2"; else cell300 ${B}_mix "0 1 2"; fi
# then: bash benchmarks/queue_session14.sh A|B <worktrees named there> (the leftovers)
# and, no training:
#   $PY benchmarks/paired.py --config $B --name mix300 --variant best300=$WORK300 \
#       --variant cutmix300=$MIX300:${B}_cutmix --variant mix300=$MIX300:${B}_mix
