#!/usr/bin/env bash
# Session 15, after queue_session15.sh: the tuned CE baseline at the shipped resolution and the 300-epoch
# budget (64 px, pad 4, warmup 45), 3 seeds, in the same work dir and from the same commit (3a269dc)
# as the best config's 64 px 300-epoch cells, so that "gain over tuned CE" is paired per seed; then
# mixup 0.8 on the best config (seed 0). Resumable; two 1-thread lanes:
#   WORK64=/work/bench_up64_300 bash benchmarks/queue_session15b.sh A /work/wtM &
#   WORK64=/work/bench_up64_300 bash benchmarks/queue_session15b.sh B /work/wtM &
LANE=$1
source "$(dirname "$0")/queue_lib.sh" "$2"  # cd to the worktree; cell300 CONFIG "SEEDS"
if [ "$LANE" = A ]; then cell300 tuned "0 2"; else cell300 tuned 1; cell300 tuned_ra9_lsb_before_mixup 0; fi
# then, no training:
#   $PY benchmarks/paired.py --config tuned_ra9_lsb_before --name up64_300_vs_ce \
#       --variant ce64_300=$WORK64:tuned --variant best64_300=$WORK64
