"""Turn run records into the roadmap table and figures.

    python -m analysis <run or sweep dirs, or a results.csv it wrote...> --out DIR [--config-dir DIR]

Writes results.csv (one row per run), roadmap.csv/.md and roadmap.png, calibration.json/.md (agreement with the
paper), accuracy_vs_gflops.png and curves.png (when the runs' metrics.csv files are there), plus
ablations.csv/.md/.png when some runs change a step's design (leave-one-out, add-one-in), lr.csv/.md when a
step ran at several learning rates, and search.csv/.md and search_pareto.png for a design search's runs (`+search=`:
its trials, Pareto front and gap to the path, analysis/search.py). With several families of runs (roadmap, data,
settings) each figure and calibration file is written once per family, its name suffixed with the family.

Steps of one's own (`step/*.yaml` of a folder on Hydra's search path) are read from the folders the runs searched,
as their `.hydra/hydra.yaml` records them, and from `--config-dir`: each is compared with its parent and listed
right after it, marked as not the paper's.
"""

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from analysis import aggregate, calibration, plots, search
from roadmap.errors import ConfigError
from roadmap.network.steps import Step


def _suffix(family: tuple, several: bool) -> str:
    if not several:
        return ""
    return "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", "_".join(str(part) for part in family if part)).strip("_")


def report_exclusions(runs: pd.DataFrame) -> None:
    excluded = runs[runs.excluded.fillna("") != ""]
    print(f"{len(runs)} runs found, {len(runs) - len(excluded)} averaged, {len(excluded)} left out of the means")
    for status, count in excluded.status.value_counts().items():
        print(f"  left out: {count} {status}")
    for run in excluded.itertuples():
        print(f"    {run.run_dir}: {run.excluded}")


def write_outputs(runs: pd.DataFrame, out: Path, steps: tuple[Step, ...] | None = None) -> list[Path]:
    """Every table and figure for `runs` under `out`; returns the files written. `steps`: the step tree, by
    default `aggregate.step_tree(runs)`."""
    steps = steps if steps is not None else aggregate.step_tree(runs)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.csv"]
    runs.to_csv(written[-1], index=False)
    written += search.write_search(runs, out)
    runs = runs[~search.searched(runs)]  # a search's trials are no ablations of a step

    table = aggregate.roadmap_table(runs, steps)
    if not table.empty:
        table.to_csv(out / "roadmap.csv", index=False)
        (out / "roadmap.md").write_text(aggregate.roadmap_markdown(table))
        written += [out / "roadmap.csv", out / "roadmap.md"]
        curves = aggregate.load_curves(runs)
        if curves.empty:
            print("curves.png: not drawn: no metrics.csv in the runs' directories (a results.csv keeps no "
                  "per-epoch metrics; give the run directories to draw it)")
        families = list(table.groupby(aggregate.FAMILY, sort=False))
        for family, rows in families:
            suffix = _suffix(family, len(families) > 1)
            block = calibration.calibration(rows)
            print(f"calibration ({aggregate.family_name(family)}): {calibration.summary_line(block)}")
            written += [out / f"calibration{suffix}.json", out / f"calibration{suffix}.md"]
            written[-2].write_text(calibration.to_json(block))
            written[-1].write_text(calibration.to_markdown(block))
            figures = {"roadmap": plots.roadmap_figure(rows, calibration.summary_line(block)),
                       "accuracy_vs_gflops": plots.accuracy_vs_gflops_figure(rows)}
            if not curves.empty:
                figures["curves"] = plots.curves_figure(rows, aggregate.family_curves(curves, rows))
            for name, figure in figures.items():
                written.append(out / f"{name}{suffix}.png")
                figure.savefig(written[-1])

    lrs = aggregate.lr_table(runs, steps)
    if not lrs.empty:
        lrs.to_csv(out / "lr.csv", index=False)
        (out / "lr.md").write_text(aggregate.lr_markdown(lrs))
        written += [out / "lr.csv", out / "lr.md"]

    ablations = aggregate.ablation_table(runs, steps)
    if not ablations.empty:
        ablations.to_csv(out / "ablations.csv", index=False)
        (out / "ablations.md").write_text(aggregate.ablation_markdown(ablations))
        written += [out / "ablations.csv", out / "ablations.md"]
        families = list(ablations.groupby(aggregate.FAMILY, sort=False))
        for family, rows in families:
            written.append(out / f"ablations{_suffix(family, len(families) > 1)}.png")
            plots.ablation_figure(rows).savefig(written[-1])
        interactions = aggregate.interaction_table(ablations)
        if not interactions.empty:
            interactions.to_csv(out / "interactions.csv", index=False)
            (out / "interactions.md").write_text(aggregate.interaction_markdown(interactions))
            written += [out / "interactions.csv", out / "interactions.md"]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path,
                        help="run or sweep directories, searched for result.json, or results.csv files written earlier")
    parser.add_argument("--out", type=Path, required=True, help="directory for the tables and figures")
    parser.add_argument("--config-dir", type=Path, action="append", default=[],
                        help="a folder of one's own configs whose step/ holds steps the runs ran (as run.py's "
                             "--config-dir; the folders the runs searched are read from their records)")
    args = parser.parse_args(argv)

    missing = [path for path in [*args.sources, *args.config_dir] if not path.exists()]
    if missing:
        print(f"error: {missing[0]}: no such file or directory", file=sys.stderr)
        return 2
    runs = aggregate.load_runs(args.sources)
    if runs.empty:
        print(f"no result.json below {' '.join(map(str, args.sources))}", file=sys.stderr)
        return 1
    try:
        steps = aggregate.step_tree(runs, args.config_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for step in aggregate.unknown_steps(runs, steps):
        print(f"step {step}: no step file for it (conf/step/, the runs' config folders, --config-dir): listed last, "
              f"compared with no parent; give --config-dir DIR, the folder holding step/{step}.yaml")
    report_exclusions(runs)
    for path in write_outputs(runs, args.out, steps):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
