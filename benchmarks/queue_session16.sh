#!/usr/bin/env bash
# What the matrix needs after session 15, all at the shipped resolution and budget (64 px, pad 4,
# 300 epochs, warmup 45), in the work dir and from the commit (3a269dc) of the best config's cells,
# so that every row is paired per seed with them. Resumable: finished cells are skipped, a stopped
# cell continues from its checkpoint (tuned CE seeds 0-1 were started in session 15). Two 1-thread
# lanes, about 40 minutes a cell:
#   git worktree add --detach /work/wtM 3a269dc
#   WORK64=/work/bench_up64_300 bash benchmarks/queue_session16.sh A /work/wtM &
#   WORK64=/work/bench_up64_300 bash benchmarks/queue_session16.sh B /work/wtM &
# Lane A: the tuned CE baseline (3 seeds; the "gain over tuned CE" at the shipped budget), then the
# paper's full recipe (seed 0). Lane B: mixup 0.8 on the best config (3 seeds), then mixup + CutMix.
LANE=$1
source "$(dirname "$0")/queue_lib.sh" "$2"  # cd to the worktree; cell300 CONFIG "SEEDS"
if [ "$LANE" = A ]; then
  cell300 tuned "0 1 2"
  cell300 tuned_full 0
else
  cell300 tuned_ra9_lsb_before_mixup "0 1 2"
  cell300 tuned_ra9_lsb_before_mix 0
fi
# then, no training (main's venv):
#   benchmarks/paired.py --config tuned_ra9_lsb_before --name up64_300_parts --variant best=$WORK64 \
#       --variant ce=$WORK64:tuned --variant mixup=$WORK64:tuned_ra9_lsb_before_mixup
#   a mixed ensemble of 64 px / 300-epoch members (links in /work/bench_mixed: best64_300,
#   cutmix64_300, ce64_300, ...): benchmarks/small_data_ensemble.py --config best64_300 --members 0 --mixed ...
