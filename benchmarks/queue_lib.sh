# Sourced by the queue scripts from session 16 on: `source queue_lib.sh WORKTREE` enters the worktree
# pinned for a table and defines cell300 CONFIG "SEEDS": one 1-thread cell of the 64 px, 300-epoch
# budget (pad 4, warmup 45, val every 5 epochs) in $WORK64, resumable; cellk CONFIG SEED K: the same
# at K images per class (K val too) with the `small` recipe's auto budget: at least 300 epochs and
# 2400 optimizer steps (k=10: 2400 epochs of 1 step), 15 % warmup, results up64_k<K>.
set -u
cd "$1"
PY=${PY:-/work/main/.venv/bin/python}
WORK64=${WORK64:-benchmarks/work_up64_300}
WORK32=${WORK32:-${WORK64}_px32}
export PYTHONPATH="$PWD/src"
cell300() { $PY benchmarks/small_data.py --matrix mix --configs $1 --seeds $2 --epochs 300 --threads 1 \
   --set eval_every=5 sched.warmup_epochs=45 data.img_size=64 augment.pad=4 --name up64_300 --work "$WORK64"; }
# cellk CONFIG SEED K 32: the same with the 28 px images in a 32 px frame (the bare loop's input; the
# recipes keep the stem), shifts of +-2 px, in WORK32 (default WORK64_px32), results up32_k<K>.
# bareloop K EPOCHS SEED: bare_loop.py at K images per class (its per-seed files resume it).
cellk() {
  local size=(data.img_size=64 augment.pad=4) px=64 work=$WORK64
  if [ "${4:-64}" = 32 ]; then size=(data.img_size=32 data.small_images=pad augment.pad=2) px=32 work=$WORK32; fi
  $PY benchmarks/small_data.py --matrix mix --configs $1 --seeds $2 --k $3 --threads 1 --set eval_every=5 epochs=auto \
    sched.warmup_epochs=auto "${size[@]}" --name up${px}_k$3 --work "$work"
}
bareloop() { $PY benchmarks/bare_loop.py --per-class $1 --epochs $2 --seeds $3 --threads 1; }
