#!/usr/bin/env bash
# What made the proxy's runs faster after b950274 without changing their numbers (docs/speed.md): the splits held in
# memory (docs/speed/eighth/stacking.py) and GRN (the ConvNeXt V2 step in the benchmark, at b950274 and at c5720d7).
# Run from the repository root with nothing else running; writes docs/speed/eighth/setup.txt.
set -euo pipefail
py=$(pwd)/.venv/bin/python
bench="--steps sep_downsample convnext_v2 --batch 128 --size 32 --in-chans 1 --num-classes 10 --threads 1 --reps 10
       --override model.width_multiplier=0.125 --no-timm"
{
  echo "$ python docs/speed/eighth/stacking.py"
  PYTHONPATH=. $py docs/speed/eighth/stacking.py 2>/dev/null
  for commit in b950274 c5720d7; do
    tree=/tmp/setup_$commit
    rm -rf $tree && git worktree add -f -q $tree $commit
    echo "$ python -m analysis.benchmark $(echo $bench)   # at $commit"
    (cd $tree && $py -m analysis.benchmark $bench 2>/dev/null | grep -E "^\||load average")
    git worktree remove --force $tree
  done
} | tee docs/speed/eighth/setup.txt
