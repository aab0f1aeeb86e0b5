#!/usr/bin/env bash
# The study's launcher at an eighth of the widths (docs/speed.md): two single-threaded runs at once against the same
# two runs one after the other on 2 threads. Run from the repository root with nothing else running; writes
# launcher.txt beside this script.
set -euo pipefail
out=docs/speed_eighth
py=.venv/bin/python
common="budget=fmnist_eighth budget.epochs=2 runtime.progress=false runtime.keep=none"
rm -rf /tmp/speed_eighth
start=$(date +%s.%N)
for step in resnet sep_downsample; do
  $py run.py +step=$step $common runtime.threads=2 hydra.run.dir=/tmp/speed_eighth/sequential/$step >/dev/null 2>&1
done
middle=$(date +%s.%N)
for step in resnet sep_downsample; do
  $py run.py +step=$step $common runtime.threads=1 hydra.run.dir=/tmp/speed_eighth/parallel/$step >/dev/null 2>&1 &
done
wait
end=$(date +%s.%N)
printf "two runs (resnet, sep_downsample, 2 epochs of fmnist_eighth): one after the other on 2 threads %.1f s, both at once on 1 thread each %.1f s\n" \
  "$(echo "$middle - $start" | bc)" "$(echo "$end - $middle" | bc)" | tee $out/launcher.txt
