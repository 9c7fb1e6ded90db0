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

if part train; then
  log "fashion-mnist-50, 300 epochs, seeds 0 1 2 in parallel"
  for s in 0 1 2; do
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
if part speed; then
  # on an idle GPU if the trainings are done in time, else beside them (logged)
  wait_jobs $((BUDGET_S - 240))
  log "speed switches (gpu_check.py); trainings still running: $(jobs -r | wc -l)"
  timeout 200 python3 benchmarks/gpu_check.py --results "$OUT" --set "${DATA[@]}" || log "gpu_check.py failed or timed out: $?"
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
  for s in 0 1 2; do log "seed $s: $(tail -n 4 "$RUNS/fm50_s$s.log" | tr '\n' ' ')"; done
  if [ -f "$RUNS/fm50_s0/test_metrics.json" ]; then
    log "evaluate / predict --tta 2 / soft ensemble on CUDA"
    timeout 20 python3 -m scarce evaluate "$RUNS/fm50_s0"
    timeout 25 python3 -m scarce ensemble --base "$RUNS/fm50_s0" --members "$RUNS/fm50_s1" "$RUNS/fm50_s2" \
      --method soft --tta 2 --out "$RUNS/soft3.npz"
  fi
fi
log "collecting"
tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude='*.safetensors' --exclude=checkpoints --exclude='*_members' . 2>/dev/null
log done
