#!/usr/bin/env bash
# The narrow proxy's speed on this machine (docs/speed.md): the network alone (benchmark) against a whole run with
# each loader, then two single-threaded runs at once against the same two runs one after the other on 2 threads.
# Run from the repository root with nothing else running; writes its logs beside this script.
set -euo pipefail
out=docs/speed/narrow
py=.venv/bin/python
common="budget=fmnist_narrow budget.epochs=1 runtime.progress=false runtime.keep=none"
rm -rf /tmp/speed_narrow
$py -m analysis.benchmark --steps resnet sep_downsample --batch 128 --size 32 --in-chans 1 --num-classes 10 \
    --override budget.width=0.25 --threads 2 --no-timm 2>&1 | grep -v Warning | tee $out/benchmark.txt
# sep_downsample trains under the modern recipe's AdamW, whose step costs more than SGD's
$py -m analysis.benchmark --steps sep_downsample --batch 128 --size 32 --in-chans 1 --num-classes 10 \
    --override budget.width=0.25 --threads 2 --no-timm --optimizer adamw 2>&1 | grep -v Warning | tee $out/benchmark_adamw.txt
for loader in memory workers; do
  for step in resnet sep_downsample; do
    $py run.py +step=$step $common runtime.loader=$loader hydra.run.dir=/tmp/speed_narrow/$loader/$step 2>&1 \
      | grep -E "test top|error" | sed "s/^/$loader $step: /" | tee -a $out/runs.txt
  done
done
docs/speed/eighth/launcher.sh fmnist_narrow 1 $out
