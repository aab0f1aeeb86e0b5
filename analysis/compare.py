"""Two studies of the same steps, paired by seed: what a change of setting does to each step.

    python -m analysis.compare BASE OTHER [--labels NAME NAME] [--out FILE.md]

BASE and OTHER are run directories or results.csv files, as for `python -m analysis`, each holding one study (say
the roadmap at two learning rates). Per step: each study's test top-1 mean over its seeds and the change from BASE to
OTHER, the mean of the per-seed differences with its 95% interval (runs with the same seed share their data order).
`python -m analysis` cannot make this table: given both studies it averages runs that agree on every override, and
two studies that ran as each one's default differ in none.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis import aggregate, stats


def accuracy_by_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Test top-1 of the included runs without a design change, one row per seed, one column per step."""
    plain = runs[(runs.excluded == "") & (runs.design == "")]
    if plain.duplicated(["step", "seed"]).any():
        raise ValueError("a study holds several runs of one step and seed (several families): compare one family")
    return plain.pivot(index="seed", columns="step", values="test_acc1")


def paired_studies(base: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """One row per step both studies ran, in roadmap order (a user's step right after its parent, a step no
    folder or record places last): n and mean of each, and the paired change."""
    base_acc, other_acc = accuracy_by_seed(base), accuracy_by_seed(other)
    both = pd.concat([base, other], ignore_index=True)
    steps = aggregate.step_tree(both)
    order = [s.name for s in steps] + aggregate.unknown_steps(both, steps)
    rows = []
    for step in [name for name in order if name in base_acc and name in other_acc]:
        a, b = base_acc[step].dropna(), other_acc[step].dropna()
        rows.append({"step": step, "base_n": len(a), "base_test_acc1_mean": a.mean(), "other_n": len(b),
                     "other_test_acc1_mean": b.mean()} | stats.paired_change(b, a))
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, labels: tuple[str, str]) -> str:
    header = ["step", f"{labels[0]}: test top-1 (%), mean over n seeds", "n",
              f"{labels[1]}: test top-1 (%), mean over n seeds", "n",
              f"change {labels[0]} → {labels[1]}, paired by seed, ± 95% CI", "resolved"]
    rows = [[f"`{r.step}`", aggregate.number_text(r.base_test_acc1_mean, 2), str(r.base_n),
             aggregate.number_text(r.other_test_acc1_mean, 2), str(r.other_n),
             aggregate.signed_interval_text(r.delta_test_acc1, r.delta_ci95), aggregate.resolved_text(r)]
            for r in table.itertuples()]
    return "\n".join(aggregate.markdown_rows(header, rows)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="run directory or results.csv of the first study")
    parser.add_argument("other", type=Path, help="run directory or results.csv of the second study")
    parser.add_argument("--labels", nargs=2, default=None, metavar="NAME", help="column names (default: the paths)")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)

    for path in (args.base, args.other):
        if not path.exists():
            print(f"error: {path}: no such file or directory", file=sys.stderr)
            return 2
    base, other = aggregate.load_runs([args.base]), aggregate.load_runs([args.other])
    for path, runs in ((args.base, base), (args.other, other)):
        if runs.empty:
            print(f"error: {path}: no result.json or runs in it", file=sys.stderr)
            return 1
    try:
        table = paired_studies(base, other)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = to_markdown(table, tuple(args.labels or (str(args.base), str(args.other))))
    print(markdown, end="")
    if args.out:
        args.out.write_text(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
