#!/usr/bin/env bash
# One lane of a benchmark matrix: pulls "CONFIG SEED [K [32]]" lines off a shared queue file (under
# flock, so two lanes never take the same cell) and trains each as a 64 px / 300-epoch cell
# (queue_lib.sh's cell300; with K, cellk at K images per class, at 32 px with 32) from the pinned
# worktree, or runs a "bare_loop K EPOCHS SEED" line, until the queue is empty or DEADLINE (UTC
# HH:MM) has passed.
# Cells are resumable: a SIGTERM'd cell writes a checkpoint, and putting its line back continues it.
#   cp benchmarks/queues/session16.txt /tmp/q.txt
#   WORK64=/work/bench16 DEADLINE=07:38 bash benchmarks/queue_worker.sh /work/wtM /tmp/q.txt &   # lane 1
#   WORK64=/work/bench16 DEADLINE=07:38 bash benchmarks/queue_worker.sh /work/wtM /tmp/q.txt &   # lane 2
# Edit the queue file while it runs to reorder what is left. Optional third argument: a PID to wait
# for first (a cell already running outside the queue).
# LANE_CPU=N pins the lane (and its cells) to CPU N. Give each lane its own: unpinned, the two cells
# were seen sharing CPU 0 at ~53 % each while a helper's process had CPU 1 (session 24).
# Linux autogroups: processes of another session (a helper's shell, CI started elsewhere) get an
# equal share as a group, whatever their `nice`; lower such a group with `echo 10 > /proc/PID/autogroup`.
QUEUE=$(realpath "$2")
if [ -n "${LANE_CPU:-}" ]; then taskset -pc "$LANE_CPU" $$ > /dev/null || exit 2; fi
source "$(dirname "$0")/queue_lib.sh" "$1"
DEADLINE=${DEADLINE:-23:59}
# A DEADLINE earlier in the day than now means tomorrow's (a session that crosses midnight).
deadline_s=$(date -u -d "$DEADLINE" +%s) || exit 2
if [ "$deadline_s" -le "$(date -u +%s)" ]; then deadline_s=$((deadline_s + 86400)); fi
if [ -n "${3:-}" ]; then while kill -0 "$3" 2>/dev/null; do sleep 15; done; fi
take_line() { flock "$QUEUE.lock" bash -c 'l=$(head -n 1 "$1"); [ -n "$l" ] && sed -i 1d "$1"; echo "$l"' _ "$QUEUE"; }
while true; do
  if [ "$(date -u +%s)" -ge "$deadline_s" ]; then echo "$(date -u +%T) past $DEADLINE: no new cell"; break; fi
  line=$(take_line)
  [ -z "$line" ] && break
  echo "$(date -u +%T) start $line"
  # shellcheck disable=SC2086  # a line splits into the cell function's arguments
  case "$line" in
    "bare_loop "*) bareloop ${line#bare_loop } ;;
    *) if [ "$(wc -w <<<"$line")" -ge 3 ]; then cellk $line; else cell300 $line; fi ;;
  esac
  status=$?  # before the echo: its $(date) would reset $? to 0 (a failed cell was logged as exit 0)
  if [ "$status" -eq 0 ]; then echo "$(date -u +%T) done $line"; else echo "$(date -u +%T) FAILED $line (exit $status)"; fi
done
