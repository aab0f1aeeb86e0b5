"""A design search's runs (`+search=`, roadmap.records.search) -> its trials, their Pareto front of test top-1
against GFLOPs, and how they stand against the roadmap's path run at the same settings.

A trial is a design (its `model.*` and `recipe=` overrides) in a family (roadmap, data, settings); its numbers are
the mean over its seeds' runs, with a 95% Student-t interval where n > 1. The path is the same family's runs of the
adopted steps without a design change (a roadmap study's records or results.csv, given to `python -m analysis` with
the search's). A trial is above the path when its mean top-1 beats that of every path step at equal or fewer GFLOPs;
the gap's interval says whether that is beyond the seed noise: Welch's over both sides' seeds, or for a trial of one
seed the path step's seed spread taken as the trial's too; with one seed of the path step it says nothing.
"""

import math

import pandas as pd
from matplotlib.figure import Figure

from analysis import aggregate, stats
from roadmap.config import override_key

SHOWN = 10  # rows of the best-trials table besides the Pareto front


def is_search_run(overrides: str) -> bool:
    return any(override_key(o) == "search" for o in str(overrides).split())


def searched(runs: pd.DataFrame) -> pd.Series:
    """Which of `runs` a search ran (`+search=` among their overrides)."""
    overrides = runs["overrides"] if "overrides" in runs else pd.Series("", index=runs.index)
    return overrides.fillna("").map(is_search_run).astype(bool)


def trials(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, design) of the search's included runs: n, top-1 mean and interval, GFLOPs, params, the
    switches, and whether the trial is on the Pareto front (no other trial has at least its top-1 at no more
    GFLOPs, and is better in one)."""
    runs = aggregate._normalized(runs)
    found = runs[searched(runs) & (runs.excluded == "")]
    if found.empty:
        return pd.DataFrame()
    table = found.groupby([*aggregate.FAMILY, "design"], sort=False).agg(
        n=("test_acc1", "size"), test_acc1_mean=("test_acc1", "mean"), test_acc1_ci95=("test_acc1", stats.t_half_width),
        gflops_conv_linear=("gflops_conv_linear", "mean"), params=("params", "mean"),
        seeds=("seed", lambda s: ",".join(str(int(v)) for v in sorted(s)))).reset_index()
    table["switches"] = table.design.str.replace("model.", "", regex=False)
    table["pareto"] = [pareto_optimal(table[table[aggregate.FAMILY].eq(row[aggregate.FAMILY]).all(axis=1)], row)
                       for _, row in table.iterrows()]
    return table.sort_values(["pareto", "test_acc1_mean"], ascending=False, ignore_index=True)


def pareto_optimal(table: pd.DataFrame, row) -> bool:
    at_most = table[(table.gflops_conv_linear <= row.gflops_conv_linear) & (table.test_acc1_mean >= row.test_acc1_mean)]
    better = (at_most.gflops_conv_linear < row.gflops_conv_linear) | (at_most.test_acc1_mean > row.test_acc1_mean)
    return not better.any()


def path(runs: pd.DataFrame) -> pd.DataFrame:
    """The adopted steps' runs without a design change, not the search's: one row per (family, step)."""
    runs = aggregate._normalized(runs)
    plain = runs[~searched(runs) & (runs.design == "") & (runs.excluded == "")]
    if "step_adopted" in plain:
        plain = plain[plain.step_adopted.map(lambda v: str(v).lower() != "false")]
    if plain.empty:
        return pd.DataFrame()
    return plain.groupby([*aggregate.FAMILY, "step"], sort=False).agg(
        n=("test_acc1", "size"), test_acc1_mean=("test_acc1", "mean"), test_acc1_ci95=("test_acc1", stats.t_half_width),
        gflops_conv_linear=("gflops_conv_linear", "mean"),
        values=("test_acc1", list)).reset_index()


def against_path(trial, steps: pd.DataFrame, trial_values: list[float]) -> dict:
    """The best path step at equal or fewer GFLOPs than the trial, and the trial's top-1 gap to it."""
    cheaper = steps[steps.gflops_conv_linear <= trial.gflops_conv_linear * (1 + 1e-9)]
    if cheaper.empty:
        return {"path_step": "", "path_n": 0, "path_acc1": math.nan, "gap": math.nan, "gap_ci95": math.nan}
    best = cheaper.loc[cheaper.test_acc1_mean.idxmax()]
    return {"path_step": best.step, "path_n": best.n, "path_acc1": best.test_acc1_mean,
            "gap": trial.test_acc1_mean - best.test_acc1_mean,
            "gap_ci95": (stats.one_run_gap_half_width(best["values"]) if len(trial_values) == 1
                         else stats.welch_half_width(trial_values, best["values"]))}


def search_table(runs: pd.DataFrame) -> pd.DataFrame:
    """`trials` with each trial's gap to the path at equal or fewer GFLOPs (empty columns where no path ran)."""
    table, steps = trials(runs), path(runs)
    if table.empty:
        return table
    runs = aggregate._normalized(runs)
    rows = []
    for _, trial in table.iterrows():
        family_steps = (steps[steps[aggregate.FAMILY].eq(trial[aggregate.FAMILY]).all(axis=1)]
                        if not steps.empty else steps)
        values = runs[(runs.design == trial.design) & runs[aggregate.FAMILY].eq(trial[aggregate.FAMILY]).all(axis=1)
                      & searched(runs) & (runs.excluded == "")].test_acc1.tolist()
        rows.append(against_path(trial, family_steps, values) if not family_steps.empty else
                    {"path_step": "", "path_n": 0, "path_acc1": math.nan, "gap": math.nan, "gap_ci95": math.nan})
    return pd.concat([table, pd.DataFrame(rows)], axis=1)


def verdict(table: pd.DataFrame) -> str:
    """One sentence: whether some trial is above the path at equal GFLOPs, and whether beyond the noise."""
    compared = table[table.path_step != ""]
    if compared.empty:
        return "No path to compare with: give a roadmap study's records or results.csv at the same settings too."
    above = compared[compared.gap > 0]
    resolved = above[above.gap > above.gap_ci95.fillna(math.inf)]
    n_trials = f"{len(compared)} trials (n = {_n_text(compared.n)} seeds each)"
    if above.empty:
        return f"No trial of {n_trials} is above the path at equal or fewer GFLOPs."
    best = above.loc[above.gap.idxmax()]
    text = (f"{len(above)} of {n_trials} are above the path at equal or fewer GFLOPs; the largest gap is "
            f"{best.gap:+.2f} points top-1 ({best.switches}: {best.test_acc1_mean:.2f}%, n = {best.n}, against "
            f"{best.path_step}: {best.path_acc1:.2f}%, n = {best.path_n}, "
            f"{_interval(best.gap_ci95)}).")
    if resolved.empty:
        return text + " None is beyond the seed noise (no gap's 95% interval excludes 0)."
    return text + f" {len(resolved)} beyond the seed noise (95% interval of the gap excludes 0)."


def _interval(half: float) -> str:
    return "no interval: one seed of the path step" if math.isnan(half) else f"95% interval ±{half:.2f}"


def _n_text(ns: pd.Series) -> str:
    low, high = int(ns.min()), int(ns.max())
    return str(low) if low == high else f"{low}-{high}"


def markdown(table: pd.DataFrame) -> str:
    lines = ["# Design search: test top-1 against GFLOPs", "",
             f"{len(table)} trials (distinct designs); top-1: mean over a trial's seeds (n), ± the 95% Student-t "
             "half width where n > 1; GFLOPs: conv + linear (the paper's count) at the runs' input size. "
             "`path step`: the adopted roadmap step with the best mean top-1 at equal or fewer GFLOPs, run at the same "
             "settings; gap: the trial's mean less that step's, ± its 95% half width (Welch's; for a trial of one "
             "seed, t(n-1) s sqrt(1 + 1/n) with the path step's seed std s over its n seeds).", "",
             verdict(table), "",
             "| | switches | n | top-1 % | GFLOPs | params (M) | path step (n) | path top-1 % | gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    shown = pd.concat([table[table.pareto], table[~table.pareto].head(SHOWN)])
    for _, row in shown.iterrows():
        top1 = f"{row.test_acc1_mean:.2f}" + ("" if math.isnan(row.test_acc1_ci95) else f" ± {row.test_acc1_ci95:.2f}")
        gap = "" if math.isnan(row.gap) else f"{row.gap:+.2f}" + (
            "" if math.isnan(row.gap_ci95) else f" ± {row.gap_ci95:.2f}")
        path_step = f"{row.path_step} ({row.path_n})" if row.path_step else ""
        path_acc = "" if math.isnan(row.path_acc1) else f"{row.path_acc1:.2f}"
        lines.append(f"| {'Pareto' if row.pareto else ''} | {row.switches} | {row.n} | {top1} | "
                     f"{row.gflops_conv_linear:.5f} | {row.params / 1e6:.3f} | {path_step} | {path_acc} | {gap} |")
    if len(table) > len(shown):
        lines += ["", f"{len(table) - len(shown)} more trials in search.csv."]
    return "\n".join(lines) + "\n"


def pareto_figure(table: pd.DataFrame, steps: pd.DataFrame, paper: pd.DataFrame) -> Figure:
    """Trials (grey), their Pareto front (line), the path's steps run at the same settings (blue) on the bottom
    and left axes; the paper's path (ImageNet top-1 against 224 px GFLOPs, light blue) on the top and right axes."""
    fig = Figure(figsize=(10, 6.5), dpi=100)
    ax = fig.add_subplot(111)
    ax.errorbar(table.gflops_conv_linear, table.test_acc1_mean, yerr=table.test_acc1_ci95.fillna(0), fmt="o",
                color="#808080", alpha=0.7, label="search trials (mean, 95% interval where n > 1)")
    front = table[table.pareto].sort_values("gflops_conv_linear")
    ax.step(front.gflops_conv_linear, front.test_acc1_mean, where="post", color="#c0392b", label="Pareto front")
    ax.plot(front.gflops_conv_linear, front.test_acc1_mean, "o", color="#c0392b")
    if not steps.empty:
        ax.errorbar(steps.gflops_conv_linear, steps.test_acc1_mean, yerr=steps.test_acc1_ci95.fillna(0), fmt="s-",
                    color="#3b6fb6", label="roadmap path, same settings (mean, 95% interval)")
        for _, step in steps.iterrows():
            ax.annotate(step.step, (step.gflops_conv_linear, step.test_acc1_mean), fontsize=7, color="#3b6fb6",
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("GFLOPs (conv + linear) at the runs' input size")
    ax.set_ylabel("test top-1 % (this search's data)")
    ax.legend(loc="lower right", fontsize=8)
    if not paper.empty:
        theirs = fig.add_subplot(111, frame_on=False)
        theirs.plot(paper.paper_gflops, paper.paper_acc1, "^--", color="#9ab6dd", label="paper's path (ImageNet)")
        for _, step in paper.iterrows():
            theirs.annotate(step.step, (step.paper_gflops, step.paper_acc1), fontsize=6, color="#7f9cc4",
                            xytext=(3, -8), textcoords="offset points")
        theirs.xaxis.tick_top()
        theirs.yaxis.tick_right()
        theirs.xaxis.set_label_position("top")
        theirs.yaxis.set_label_position("right")
        theirs.set_xlabel("paper: GFLOPs at 224 px", color="#7f9cc4")
        theirs.set_ylabel("paper: ImageNet-1K top-1 %", color="#7f9cc4")
        theirs.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def write_search(runs: pd.DataFrame, out) -> list:
    """search.csv, search.md and search_pareto.png under `out` when `runs` hold a search's; the files written."""
    table = search_table(runs)
    if table.empty:
        return []
    written = [out / "search.csv", out / "search.md", out / "search_pareto.png"]
    table.to_csv(written[0], index=False)
    written[1].write_text(markdown(table))
    steps = path(runs)
    roadmaps = set(table.roadmap)
    paper = aggregate.paper_numbers()
    paper = paper[paper.roadmap.isin(roadmaps) & paper.paper_gflops.notna()
                  & ~paper.note.fillna("").str.contains("side branch")]
    pareto_figure(table, steps, paper).savefig(written[2])
    print(f"search: {verdict(table)}")
    return written
