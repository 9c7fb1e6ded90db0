#!/usr/bin/env bash
# What the matrix still needs after session 14 (resumable: finished cells are skipped, a stopped cell
# continues from its checkpoint). Two 1-thread lanes at once, from a worktree pinned at 3a269dc:
#   git worktree add --detach /work/wtM 3a269dc
#   WORK64=/work/bench_up64_300 bash benchmarks/queue_session15.sh A /work/wtM &
#   WORK64=/work/bench_up64_300 bash benchmarks/queue_session15.sh B /work/wtM &
# Session 14 settled the small-input table (upsampling to 64 px won: fashion-mnist-50 ships it) and
# started, at 64 px and 300 epochs (~45 min per cell on 1 AVX2 thread), the best config (lane A) and
# the best config + CutMix 1.0 (lane B), seeds 0-2: paired, same commit, same work dir. Seed 0 of
# both finished (83.87 / 83.46: results/up64_300.*); seed 1 of both was stopped part-way at the end
# of session 14 and resumes from its checkpoint. Then the
# leftovers of queue_session14.sh at 32 px (CE at 300 epochs seeds 1-2, minus-focal-cosine at 300,
# the losses' seeds 1-2, tuned CE's members, the bare loop with RandAugment, k = 10 / 100), which
# should move to 64 px if the matrix is rerun at the shipped resolution.
set -u
LANE=$1
cd "$2"
PY=${PY:-/work/main/.venv/bin/python}
WORK64=${WORK64:-benchmarks/work_up64_300}
export PYTHONPATH="$PWD/src"
B=tuned_ra9_lsb_before
cell300() { $PY benchmarks/small_data.py --matrix mix --configs $1 --seeds $2 --epochs 300 --threads 1 \
   --set eval_every=5 sched.warmup_epochs=45 data.img_size=64 augment.pad=4 --name up64_300 --work "$WORK64"; }
if [ "$LANE" = A ]; then cell300 $B "0 1 2"; else cell300 ${B}_cutmix "0 1 2"; fi
# then, no training:
#   $PY benchmarks/paired.py --config $B --name up64_300 --variant best64_100=/work/bench_si_up64 \
#       --variant best64_300=$WORK64 --variant cutmix64_300=$WORK64:${B}_cutmix
