#!/usr/bin/env bash
# Two single-threaded runs at once against the same two runs one after the other on 2 threads (docs/speed.md).
# Usage: launcher.sh [BUDGET] [EPOCHS] [OUT_DIR] (default: fmnist_eighth, 2 epochs, this script's folder). Run from
# the repository root with nothing else running; writes OUT_DIR/launcher.txt.
set -euo pipefail
budget=${1:-fmnist_eighth}
epochs=${2:-2}
out=${3:-docs/speed/eighth}
py=.venv/bin/python
common="budget=$budget budget.epochs=$epochs runtime.progress=false runtime.keep=none"
scratch=/tmp/launcher_$budget
rm -rf $scratch
start=$(date +%s.%N)
for step in resnet sep_downsample; do
  $py run.py +step=$step $common runtime.threads=2 hydra.run.dir=$scratch/sequential/$step >/dev/null 2>&1
done
middle=$(date +%s.%N)
for step in resnet sep_downsample; do
  $py run.py +step=$step $common runtime.threads=1 hydra.run.dir=$scratch/parallel/$step >/dev/null 2>&1 &
done
wait
end=$(date +%s.%N)
printf "two runs (resnet, sep_downsample, %s epoch(s) of %s): one after the other on 2 threads %.1f s, both at once on 1 thread each %.1f s\n" \
  "$epochs" "$budget" "$(echo "$middle - $start" | bc)" "$(echo "$end - $middle" | bc)" | tee $out/launcher.txt
