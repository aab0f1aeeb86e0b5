"""A study's wall time replayed from its records: each run's recorded `wall_seconds` plus the seconds of its job
that the record leaves out (`--outside`), dispatched in the sweep's order (step, then seed) to whichever of the
launcher's workers is free first, as joblib does. Replayed with the seconds a study measured, it should give its
measured time back; with the savings made since, it estimates the study's time today.

    python docs/speed/eighth/study_time.py RESULTS_CSV --outside S [--rerun RESULTS_CSV --rerun-steps STEP ...
        --rerun-outside S]

`--rerun`: records of the same runs (step and seed) trained again; those of `--rerun-steps` replace the study's.
"""

import argparse
import heapq

import pandas as pd

from roadmap.network.steps import load_steps

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("results", help="the study's results.csv")
parser.add_argument("--outside", type=float, required=True, help="seconds of each job outside its wall_seconds")
parser.add_argument("--rerun", help="results.csv of runs trained again")
parser.add_argument("--rerun-steps", nargs="+", default=[])
parser.add_argument("--rerun-outside", type=float, default=0.0)
parser.add_argument("--workers", type=int, default=2)
args = parser.parse_args()

seconds = {(r.step, r.seed): r.wall_seconds + args.outside for r in pd.read_csv(args.results).itertuples()}
if args.rerun:
    seconds |= {(r.step, r.seed): r.wall_seconds + args.rerun_outside for r in pd.read_csv(args.rerun).itertuples()
                if r.step in args.rerun_steps}
order = [step.name for step in load_steps()]
free_at = [0.0] * args.workers
for job in sorted(seconds, key=lambda job: (order.index(job[0]), job[1])):
    heapq.heappush(free_at, heapq.heappop(free_at) + seconds[job])
print(f"{len(seconds)} jobs on {args.workers} workers: {max(free_at) / 60:.1f} min from the first job's start to the "
      f"last one's end")
