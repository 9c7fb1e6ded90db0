#!/usr/bin/env bash
# As it ran in session 13: lane A ran as below (members, then tuned_full/tuned_ema seeds 1-2);
# lane B was stopped after 3 minutes and replaced by the 300-epoch budget check at e240f72
# (tuned, tuned_ra9_lsb_before, tuned_full; seeds 0, then the best config's seeds 1-2), and
# lane A went on with tuned_full at 300 epochs: see queue_session14.sh. Lane B's list below
# moved to queue_session14.sh unchanged.
# What the matrix still needs after session 12 (resumable: finished cells are skipped, so cells
# session 12 finished or started are not redone). Two 1-thread lanes at once, each from a
# worktree pinned at one commit:
#   git worktree add --detach /work/wtA e240f72   # RandAugment rows and their members (ImageNet-grey fill, like tuned_ra9)
#   git worktree add --detach /work/wtB 4553683   # rows without RandAugment, members, k = 10 / 100
#   WORK=/work/bench_work bash benchmarks/queue_session13.sh A /work/wtA &
#   WORK=/work/bench_work bash benchmarks/queue_session13.sh B /work/wtB &
set -u
LANE=$1
cd "$2"
PY=${PY:-/work/main/.venv/bin/python}
WORK=${WORK:-benchmarks/work}
export PYTHONPATH="$PWD/src"
cell() { $PY benchmarks/small_data.py --matrix parts --configs $1 --seeds $2 --epochs 100 --threads 1 \
         --set eval_every=5 --name parts100 --work "$WORK"; }
if [ "$LANE" = A ]; then
  cell "tuned_ra9_lsb_before@m1 tuned_ra9_lsb_before@m2 tuned_ra9_lsb_before@m3 tuned_ra9_lsb_before@m4" "0 1 2"
  cell "tuned_full tuned_ema" "1 2"
else
  cell "tuned@m1 tuned@m2 tuned@m3 tuned@m4" "0 1 2"
  cell "tuned_label_smoothing tuned_cosine tuned_cosine_ce tuned_focal_cosine tuned_focal_cosine_authors" "1 2"
  # issue 11's small-input table (base recipe, resized crops, as its seed-0 rows): ~7 / 45 / 28 min per cell
  $PY benchmarks/small_data.py --matrix small_input --configs si_unchanged si_stem si_up64 --seeds 0 1 2 \
      --epochs 100 --threads 1 --set eval_every=5 --name small_input100 --work "$WORK"
  # k = 10 and 100 per class: tuned CE vs the best config, budgets from the data (>= 100 epochs, >= 800 steps)
  $PY benchmarks/small_data.py --matrix parts --configs tuned tuned_ra9_lsb_before --k 10 100 --seeds 0 1 2 \
      --threads 1 --set eval_every=5 epochs=auto sched.warmup_epochs=auto --name k10_100 --work "$WORK"
fi
# then, no training: held-out scores, TTA and the ensembles per data seed
#   $PY benchmarks/small_data_holdout.py --configs <every parts row> --seeds 0 1 2 --work "$WORK"
#   $PY benchmarks/small_data_ensemble.py --config tuned_ra9_lsb_before --members 5 --seeds 0 1 2 --tta 2 \
#       --mixed tuned tuned_ra9 tuned_ra9_lsb_last tuned_ra9_lsb_before tuned_cosine --work "$WORK"
