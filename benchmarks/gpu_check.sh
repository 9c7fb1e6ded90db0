#!/usr/bin/env bash
# The GPU check of a lent device machine, in one call, every part time-boxed so one failure costs
# only its own part. PARTS picks them (default: all, in this order):
#   train    the shipped fashion-mnist-50 recipe, full 300 epochs, seeds 0-2 at once in the background
#            (data.split_seed = seed, as the matrix's cells); evaluate / predict with TTA / soft
#            ensemble on CUDA once they are done
#   torchrun torchrun (nccl, 1 process), demo recipe, 2 epochs
#   tests    the test suite (or TESTS=...) with CUDA visible
#   speed    gpu_check.py: autocast x memory format, trainer vs bare loop
#   workers  the shipped recipe's training images/s per data.num_workers:threads pair (15 epochs each)
#   screen   k = 10 cells, seeds 0-2, of SCREEN_CONFIGS at 64 px and of SCREEN32_CONFIGS at 32 px (28 px
#            framed, as the bare loop), the matrix's cellk settings, all at once, 1 thread each (small_data.py)
#   bare     bare_loop.py on CUDA at BARE_K images per class, BARE_EPOCHS epochs, seeds 0-2 at once
# speed runs first, on an idle GPU; the other parts after it.
# Prepare here, then run there:
#   .venv/bin/python benchmarks/gpu_data.py --out .gpu/fmnist --seeds 0 1 2     # 5.6 MB, fits the transfer
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl "pillow<13"
#   device run: bash benchmarks/gpu_check.sh   (carry .gpu and .whl; results under $OUT)
set -u
OUT=${OUT:-/tmp/gpu_check_out}
RUNS=/tmp/gpu_runs
PARTS=${PARTS:-train torchrun tests speed workers}
TESTS=${TESTS:-tests}
BUDGET_S=${BUDGET_S:-520}   # collect what there is this long after the start
# TRAIN_EXTRA (e.g. "epochs=1 device=cpu"): a dry run of the trainings on a CPU machine
DATA=(data.root=.gpu/fmnist)
SEEDS="0 1 2"   # of every part; .gpu holds the data of these (gpu_data.py --seeds)
mkdir -p "$OUT" "$RUNS"
start=$(date +%s)
export PYTHONPATH="${SRC:-$PWD/src}" PYTHONUNBUFFERED=1   # SRC: another copy of the package (e.g. one without unfinished edits)
log() { echo "== $(( $(date +%s) - start ))s $*"; }
part() { [[ " $PARTS " == *" $1 "* ]]; }
wait_jobs() { while jobs -r | grep -q . && [ $(( $(date +%s) - start )) -lt "$1" ]; do sleep 5; done; }
exec > >(tee "$OUT/log.txt") 2>&1

log "environment; parts: $PARTS"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import sys, torch, timm, PIL; print(sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__, 'pillow', PIL.__version__, 'cuda', torch.cuda.is_available())"
if python3 -c "import PIL, sys; sys.exit(int(PIL.__version__.split('.')[0]) < 13)"; then
  log "pillow >= 13 here: installing the carried pillow<13 wheel"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/pillow-*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

if part speed; then
  log "speed switches (gpu_check.py), on an idle GPU"
  timeout "${SPEED_S:-200}" python3 benchmarks/gpu_check.py --results "$OUT" --set "${DATA[@]}" || log "gpu_check.py failed or timed out: $?"
fi
if part screen; then
  # data.num_workers=0: a k = 10 epoch is one or two steps, and workers would be started every epoch
  CELL=(--k 10 --seeds $SEEDS --threads 1 --set eval_every=5 epochs=auto sched.warmup_epochs=auto data.num_workers=0 "${DATA[@]}" ${TRAIN_EXTRA:-})
  log "k = 10 screen: ${SCREEN_CONFIGS:=tuned tuned_keeplast tuned_ra9_mixup_wd2e3 tuned_ra9_mixup_wd2e3_keeplast}" \
    "at 64 px; ${SCREEN32_CONFIGS:=tuned tuned_keeplast} at 32 px"
  screen_cells() {  # PX "CONFIGS" SETTINGS...: every cell of CONFIGS x 3 seeds at once, in the background
    local px=$1 configs=$2; shift 2
    # shellcheck disable=SC2086  # configs is a list
    timeout $((BUDGET_S - 30)) python3 benchmarks/small_data.py --matrix mix --configs $configs --jobs $((3 * $(wc -w <<<"$configs"))) \
      --work "$RUNS/screen$px" --results "$OUT" --name screen_k10_${px}px "${CELL[@]}" "$@" > "$RUNS/screen$px.log" 2>&1 &
  }
  screen_cells 64 "$SCREEN_CONFIGS" data.img_size=64 augment.pad=4
  screen_cells 32 "$SCREEN32_CONFIGS" data.img_size=32 data.small_images=pad augment.pad=2
fi
if part bare; then
  log "bare loop on CUDA: ${BARE_K:=100} per class, ${BARE_EPOCHS:=300} epochs, seeds $SEEDS"
  for s in $SEEDS; do
    timeout $((BUDGET_S - 30)) python3 benchmarks/bare_loop.py --seeds $s --per-class "$BARE_K" --epochs "$BARE_EPOCHS" \
      --threads 1 --device "${BARE_DEVICE:-cuda}" --root .gpu/fmnist > "$RUNS/bare_s$s.log" 2>&1 &
  done
fi
if part train; then
  log "fashion-mnist-50, 300 epochs, seeds $SEEDS in parallel"
  for s in $SEEDS; do
    timeout $((BUDGET_S - 50)) python3 -m scarce train --recipe fashion-mnist-50 --out "$RUNS/fm50_s$s" --no-progress \
      "${DATA[@]}" seed=$s data.split_seed=$s threads=3 ${TRAIN_EXTRA:-} > "$RUNS/fm50_s$s.log" 2>&1 &
  done
fi
if part torchrun; then
  log "torchrun, 1 process (nccl), demo recipe 2 epochs"
  timeout 120 python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m scarce train --recipe demo \
    --out "$RUNS/ddp" --no-progress epochs=2 ${TRAIN_EXTRA:-} || log "torchrun failed: $?"
fi
if part tests; then
  log "test suite, CUDA visible (8 workers): $TESTS"
  # shellcheck disable=SC2086  # TESTS is a list of paths
  OMP_NUM_THREADS=1 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider --timeout 120 $TESTS > "$OUT/tests.txt" 2>&1
  log "pytest exit $?: $(tail -n 1 "$OUT/tests.txt")"
fi
if part workers; then
  wait_jobs $((BUDGET_S - 120))
  # session 27: 0 / 2 / 4 / 8 workers at the default threads (16) gave 962 / 2021 / 2749 / 2751 images/s,
  # while three runs at once with 3 threads and 0 workers each trained ~1450: torch threads matter too
  for wt in ${WORKERS_THREADS:-0:16 0:4 4:16 4:4 8:4}; do
    w=${wt%:*} t=${wt#*:}
    timeout 60 python3 -m scarce train --recipe fashion-mnist-50 --out "$RUNS/workers${w}_t$t" --no-progress "${DATA[@]}" \
      epochs=15 eval_every=15 data.num_workers=$w threads=$t ${TRAIN_EXTRA:-} > "$RUNS/workers${w}_t$t.log" 2>&1
    python3 -c "import json, statistics, sys; r = [json.loads(l)['images_per_s'] for l in open(sys.argv[1])][2:]; print(f'workers $w, threads $t: median train images/s {statistics.median(r):.0f} (epochs 2-14)')" \
      "$RUNS/workers${w}_t$t/metrics.jsonl" || log "workers $w threads $t failed"
  done
fi
if part train; then
  wait_jobs $((BUDGET_S - 50))
  for s in $SEEDS; do log "seed $s: $(tail -n 4 "$RUNS/fm50_s$s.log" | tr '\n' ' ')"; done
  if [ -f "$RUNS/fm50_s0/test_metrics.json" ]; then
    log "evaluate / predict --tta 2 / soft ensemble on CUDA"
    timeout 20 python3 -m scarce evaluate "$RUNS/fm50_s0"
    timeout 25 python3 -m scarce ensemble --base "$RUNS/fm50_s0" --members "$RUNS/fm50_s1" "$RUNS/fm50_s2" \
      --method soft --tta 2 --out "$RUNS/soft3.npz"
  fi
fi
if part bare; then
  wait_jobs $((BUDGET_S - 20))
  done_dir=benchmarks/work/bare_loop/bare_loop_k"$BARE_K"_e"$BARE_EPOCHS"
  # shellcheck disable=SC2046,SC2086  # one file per seed
  if ls $(printf "$done_dir/seed%s.json " $SEEDS) > /dev/null 2>&1; then   # the table from the seeds' files, nothing retrained
    python3 benchmarks/bare_loop.py --seeds $SEEDS --per-class "$BARE_K" --epochs "$BARE_EPOCHS" --root .gpu/fmnist
  else log "bare loop: not every seed finished"; tail -n 3 "$RUNS"/bare_s*.log; fi
  cp benchmarks/results/bare_loop_k"$BARE_K"_e"$BARE_EPOCHS".* "$OUT"/ 2>/dev/null
  cp -r "$done_dir" "$OUT"/bare_loop_seeds 2>/dev/null
fi
if part screen; then
  wait_jobs $((BUDGET_S - 20))
  tail -n 3 "$RUNS"/screen*.log
fi
log "collecting"
tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude='*.safetensors' --exclude=checkpoints --exclude='*_members' . 2>/dev/null
log done
