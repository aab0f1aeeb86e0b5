"""How far a proxy study agrees with the paper: the calibration block of one family of the roadmap table.

It answers "does this step help, and how sure is that?", so it compares changes, each step's paired change from its
parent (mean over seeds) against the paper's change:
- Spearman and Pearson correlation of the changes, over the adopted steps and with the side branches (each against
  its parent);
- the scale: our changes as a multiple of the paper's, a least-squares slope through the origin with its 95% interval
  (a proxy that compresses every change to a third has slope 0.33);
- sign agreement over every adopted step and over the large-effect ones (paper |Δ| >= LARGE_EFFECT), with how many of
  those are resolved (their 95% interval excludes zero), and the steps whose change disagrees in sign.
The paper gives per-step numbers for the tiny path (ResNet-50 -> ConvNeXt-T) only; a path without them (the base path)
is compared with the tiny path's change of the step of the same name, and every figure says so.
Second, labelled as such: the rank correlation of the steps' mean accuracies with the paper's, which a proxy that
compresses the changes below its seed noise cannot reproduce even where every change agrees.
The score measures the proxy; it is not a knob to tune the proxy against.
"""

import json
import math

import pandas as pd
from scipy import stats as scipy_stats

from analysis import aggregate, stats

LARGE_EFFECT = 0.5  # paper |Δ top-1| (points) at which a step counts as a large effect
REFERENCE_PATH = "tiny"  # the one path the paper gives per-step numbers for


def _with_paper_changes(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """`rows` with the paper's change per step, and the path it comes from: the family's own, else, where the paper
    has none for that path, the reference path's change of the same step (same name, same parent)."""
    if rows.paper_delta_acc1.notna().any():
        return rows, rows.roadmap.iloc[0]
    paper = aggregate.paper_numbers()
    accuracy = paper[paper.roadmap == REFERENCE_PATH].set_index("step").paper_acc1
    change = rows.step.map(accuracy) - rows.parent.map(accuracy)
    return rows.assign(paper_delta_acc1=change.round(2)), REFERENCE_PATH


def _steps_with_change(rows: pd.DataFrame, adopted_only: bool = True) -> pd.DataFrame:
    """Steps with a parent, our paired change and the paper's change: adopted ones, or side branches too."""
    with_parent = rows[rows.parent.notna() & rows.delta_test_acc1.notna() & rows.paper_delta_acc1.notna()]
    return with_parent[with_parent.adopted.fillna(False).astype(bool)] if adopted_only else with_parent


def _rounded(value: float) -> float | None:
    return None if pd.isna(value) else round(value, 4)


def _spearman(rows: pd.DataFrame) -> float | None:
    return _rounded(stats.spearman(rows.test_acc1_mean.reset_index(drop=True), rows.paper_acc1.reset_index(drop=True)))


def _change_correlations(changed: pd.DataFrame) -> dict:
    ours, paper = changed.delta_test_acc1.reset_index(drop=True), changed.paper_delta_acc1.reset_index(drop=True)
    return {"spearman": _rounded(stats.spearman(ours, paper)), "pearson": _rounded(stats.pearson(ours, paper)),
            "n": len(changed)}


def change_scale(ours: pd.Series, paper: pd.Series) -> dict:
    """Least squares of `ours` = slope x `paper` (no intercept: a step that changes nothing in the paper should
    change nothing here), with the 95% Student-t interval of the slope (n - 1 degrees of freedom)."""
    x, y = paper.to_numpy(float), ours.to_numpy(float)
    n, sxx = len(x), float((x * x).sum())
    if n < 2 or sxx == 0:
        return {"slope": None, "ci95": None, "n": n}
    slope = float((x * y).sum()) / sxx
    residual_var = float(((y - slope * x) ** 2).sum()) / (n - 1)
    half = scipy_stats.t.ppf((1 + stats.CONFIDENCE) / 2, n - 1) * math.sqrt(residual_var / sxx)
    return {"slope": round(slope, 4), "ci95": round(float(half), 4), "n": n}


def _agreement(agrees: pd.Series) -> dict:
    return {"agree": int(agrees.sum()), "of": len(agrees), "fraction": float(agrees.mean()) if len(agrees) else None}


def calibration(rows: pd.DataFrame) -> dict:
    """The calibration block of one family of `aggregate.roadmap_table`."""
    rows, paper_path = _with_paper_changes(rows)
    changed = _steps_with_change(rows)
    agrees = (changed.delta_test_acc1 > 0) == (changed.paper_delta_acc1 > 0)
    is_large = changed.paper_delta_acc1.abs().round(2) >= LARGE_EFFECT
    large, large_agrees = changed[is_large], agrees[is_large]
    ranked = rows[rows.test_acc1_mean.notna() & rows.paper_acc1.notna()]
    ranked_adopted = ranked[ranked.adopted.fillna(False).astype(bool)]
    return {
        "roadmap": rows.roadmap.iloc[0], "data": rows.data.iloc[0], "settings": rows.settings.iloc[0],
        "paper_path": paper_path,
        "changes_adopted": _change_correlations(changed),
        "changes_with_branches": _change_correlations(_steps_with_change(rows, adopted_only=False)),
        "change_scale": change_scale(changed.delta_test_acc1, changed.paper_delta_acc1),
        # The accuracy ranking: the steps' mean top-1 against the paper's (side branches included, then without).
        "spearman": _spearman(ranked),
        "n_steps": len(ranked),
        "spearman_adopted": _spearman(ranked_adopted),
        "n_adopted_steps": len(ranked_adopted),
        "n_seeds": int(rows.n.max()),
        "n_seeds_min": int(rows.n.min()),
        "sign_agreement_adopted": _agreement(agrees),
        "sign_agreement_large": _agreement(large_agrees),
        "resolved_large": int(large.resolved.sum()),
        "agree_and_resolved_large": int((large_agrees & large.resolved).sum()),
        "large_effect_threshold": LARGE_EFFECT,
        "disagreeing_steps": changed.step[~agrees].tolist(),
        # Unrounded: calibration.md rounds them once, as roadmap.md does, so both print the same figures.
        "steps": [{"step": r.step, "delta_test_acc1": float(r.delta_test_acc1),
                   "delta_ci95": None if pd.isna(r.delta_ci95) else float(r.delta_ci95), "delta_n": int(r.delta_n),
                   "resolved": bool(r.resolved), "paper_delta_acc1": r.paper_delta_acc1,
                   "large": bool(large_step), "agrees": bool(a)}
                  for r, a, large_step in zip(changed.itertuples(), agrees, is_large)],
    }


def to_json(block: dict) -> str:
    return json.dumps(block, indent=2) + "\n"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def scale_text(scale: dict) -> str:
    if scale["slope"] is None:
        return "n/a"
    return f"{scale['slope']:.2f}" + ("" if pd.isna(scale["ci95"]) else f" ± {scale['ci95']:.2f}")


def _paper_changes_text(block: dict) -> str:
    if block["paper_path"] == block["roadmap"]:
        return "the paper's"
    return f"the paper's {block['paper_path']}-path ones (it has none for {block['roadmap']})"


def summary_line(block: dict) -> str:
    """One line for figures and the console: the changes first, then the accuracy ranking."""
    adopted, large, changes = block["sign_agreement_adopted"], block["sign_agreement_large"], block["changes_adopted"]
    seeds = f"{block['n_seeds']} seed(s)" + (f" ({block['n_seeds_min']} for some steps)"
                                              if block["n_seeds_min"] != block["n_seeds"] else "")
    return (f"steps' changes against {_paper_changes_text(block)}: Spearman {_figure(changes['spearman'])}, Pearson "
            f"{_figure(changes['pearson'])} over {changes['n']} adopted steps, ours = "
            f"{scale_text(block['change_scale'])} x the paper's; sign agrees on {adopted['agree']}/{adopted['of']} "
            f"adopted steps and {large['agree']}/{large['of']} large-effect ones "
            f"({block['agree_and_resolved_large']} of those resolved); accuracy ranking: Spearman "
            f"{_figure(block['spearman'])} over {block['n_steps']} steps; {seeds}")


def to_markdown(block: dict) -> str:
    """calibration.md: the headline figures, then one row per adopted step."""
    borrowed = f" ({block['paper_path']} path)" if block["paper_path"] != block["roadmap"] else ""
    header = ["step", "Δ top-1 ours, paired ± 95% CI", "seeds", "resolved", f"paper Δ{borrowed}", "large effect",
              "sign agrees"]
    body = []
    for s in block["steps"]:
        ours = aggregate.signed_interval_text(s["delta_test_acc1"], s["delta_ci95"])
        body.append([s["step"], ours, str(s["delta_n"]), "yes" if s["resolved"] else "no",
                     f"{s['paper_delta_acc1']:+.2f}", "yes" if s["large"] else "", "yes" if s["agrees"] else "**no**"])
    disagreeing = ", ".join(block["disagreeing_steps"]) or "none"
    return "\n".join([
        f"## Calibration against the paper{borrowed}: {block['roadmap']} · {block['data']}"
        + (f" · {block['settings']}" if block["settings"] else ""),
        "",
        f"- {summary_line(block)}.",
        f"- Changes with the side branches (each against its parent): Spearman "
        f"{_figure(block['changes_with_branches']['spearman'])}, Pearson "
        f"{_figure(block['changes_with_branches']['pearson'])} over {block['changes_with_branches']['n']} steps.",
        "- Scale: least squares of our paired changes on the paper's through the origin, with its 95% interval.",
        f"- Large effect: paper |Δ| >= {block['large_effect_threshold']} points; resolved: the paired 95% interval "
        f"excludes zero ({block['resolved_large']} of the {block['sign_agreement_large']['of']} large-effect steps, "
        f"whatever their sign).",
        f"- Accuracy ranking over the adopted steps alone (no side branches): Spearman "
        f"{'n/a' if block['spearman_adopted'] is None else format(block['spearman_adopted'], '.2f')} over "
        f"{block['n_adopted_steps']} steps.",
        f"- Steps whose change disagrees in sign with the paper's: {disagreeing}.",
        "",
        *aggregate.markdown_rows(header, body),
    ]) + "\n"
