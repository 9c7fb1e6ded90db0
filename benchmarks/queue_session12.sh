#!/usr/bin/env bash
# Session 12's matrix queue, as it ran (the lsb_before members ran in lane B's process, at e240f72): the paper's parts on the tuned baseline (seed 0 first, so a cut-short
# queue has every row), then the 5-member ensembles' extra members. Two lanes run at once: on 2
# cores, two 1-thread cells each run at the speed of one alone (3.5 s/epoch, measured), whereas
# multi-threaded cells contend. Each lane runs from a worktree pinned at one commit; resumable
# (finished cells are skipped), one cell at a time per lane.
#   git worktree add --detach /work/wtA e240f72; git worktree add --detach /work/wtB 4553683
#   WORK=/work/bench_work bash benchmarks/queue_session12.sh A /work/wtA &
#   WORK=/work/bench_work bash benchmarks/queue_session12.sh B /work/wtB &
set -u
LANE=$1
cd "${2:-$(dirname "$0")/..}"
PY=${PY:-/work/main/.venv/bin/python}
WORK=${WORK:-benchmarks/work}
export PYTHONPATH="$PWD/src"
cell() { $PY benchmarks/small_data.py --matrix parts --configs $1 --seeds $2 --epochs 100 --threads 1 \
         --set eval_every=5 --name parts100 --work "$WORK"; }
if [ "$LANE" = A ]; then  # RandAugment parts, at e240f72 like the tuned_ra9 rows (RandAugment fill: ImageNet grey)
  cell "tuned_warm25 tuned_ema tuned_ra9_lsb_last tuned_ra9_lsb_before tuned_full" 0
  cell "tuned_ra9_lsb_last tuned_ra9_lsb_before" "1 2"
  cell "tuned_full_no_ra tuned_full_no_ema tuned_full_no_lsb tuned_full_no_fcl tuned_full_no_drop tuned_full_no_re" 0
  cell "tuned_ra9_lsb_before@m1 tuned_ra9_lsb_before@m2 tuned_ra9_lsb_before@m3 tuned_ra9_lsb_before@m4" 0
else                      # no RandAugment: the same at any commit since augment.fill (4553683)
  cell "tuned_ra9_edge tuned_norm" 0   # (tuned_ra9_edge at fa0e2ab)
  cell "tuned_label_smoothing tuned_cosine tuned_cosine_ce tuned_focal_cosine tuned_focal_cosine_authors" 0
  cell "tuned@m1 tuned@m2 tuned@m3 tuned@m4" 0
fi
