"""How far a proxy study agrees with the paper: the calibration block of one family of the roadmap table.

- sign agreement: the paired change of each adopted step from its parent has the sign of the paper's change, over
  every adopted step and over the large-effect ones (paper |Δ| >= LARGE_EFFECT), with how many of those are resolved
  (their 95% interval excludes zero);
- Spearman: the rank correlation of the steps' mean test top-1 with the paper's ImageNet top-1, side branches
  included, and over the adopted steps alone; and the steps whose change disagrees in sign.
The score measures the proxy; it is not a knob to tune the proxy against.
"""

import json

import pandas as pd

from analysis import aggregate, stats

LARGE_EFFECT = 0.5  # paper |Δ top-1| (points) at which a step counts as a large effect


def _steps_with_change(rows: pd.DataFrame) -> pd.DataFrame:
    """Adopted steps with a parent, our paired change and the paper's change."""
    adopted = rows[rows.adopted.fillna(False).astype(bool) & rows.parent.notna()]
    return adopted[adopted.delta_test_acc1.notna() & adopted.paper_delta_acc1.notna()]


def _spearman(rows: pd.DataFrame) -> float | None:
    value = stats.spearman(rows.test_acc1_mean.reset_index(drop=True), rows.paper_acc1.reset_index(drop=True))
    return None if pd.isna(value) else round(value, 4)


def _agreement(agrees: pd.Series) -> dict:
    return {"agree": int(agrees.sum()), "of": len(agrees), "fraction": float(agrees.mean()) if len(agrees) else None}


def calibration(rows: pd.DataFrame) -> dict:
    """The calibration block of one family of `aggregate.roadmap_table`."""
    changed = _steps_with_change(rows)
    agrees = (changed.delta_test_acc1 > 0) == (changed.paper_delta_acc1 > 0)
    is_large = changed.paper_delta_acc1.abs().round(2) >= LARGE_EFFECT
    large, large_agrees = changed[is_large], agrees[is_large]
    ranked = rows[rows.test_acc1_mean.notna() & rows.paper_acc1.notna()]
    ranked_adopted = ranked[ranked.adopted.fillna(False).astype(bool)]
    return {
        "roadmap": rows.roadmap.iloc[0], "data": rows.data.iloc[0], "settings": rows.settings.iloc[0],
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
        "steps": [{"step": r.step, "delta_test_acc1": round(r.delta_test_acc1, 3),
                   "delta_ci95": None if pd.isna(r.delta_ci95) else round(r.delta_ci95, 3), "delta_n": int(r.delta_n),
                   "resolved": bool(r.resolved), "paper_delta_acc1": r.paper_delta_acc1,
                   "large": bool(large_step), "agrees": bool(a)}
                  for r, a, large_step in zip(changed.itertuples(), agrees, is_large)],
    }


def to_json(block: dict) -> str:
    return json.dumps(block, indent=2) + "\n"


def summary_line(block: dict) -> str:
    """One line for figures and the console."""
    adopted, large = block["sign_agreement_adopted"], block["sign_agreement_large"]
    spearman = "n/a" if block["spearman"] is None else f"{block['spearman']:.2f}"
    seeds = f"{block['n_seeds']} seed(s)" + (f" ({block['n_seeds_min']} for some steps)"
                                              if block["n_seeds_min"] != block["n_seeds"] else "")
    return (f"sign agrees with the paper on {adopted['agree']}/{adopted['of']} adopted steps and on "
            f"{large['agree']}/{large['of']} large-effect ones ({block['agree_and_resolved_large']} of those resolved); "
            f"Spearman {spearman} over {block['n_steps']} steps; {seeds}")


def to_markdown(block: dict) -> str:
    """calibration.md: the headline figures, then one row per adopted step."""
    header = ["step", "Δ top-1 ours, paired ± 95% CI", "seeds", "resolved", "paper Δ", "large effect",
              "sign agrees"]
    body = []
    for s in block["steps"]:
        ours = f"{s['delta_test_acc1']:+.2f}" + ("" if s["delta_ci95"] is None else f" ± {s['delta_ci95']:.2f}")
        body.append([s["step"], ours, str(s["delta_n"]), "yes" if s["resolved"] else "no",
                     f"{s['paper_delta_acc1']:+.2f}", "yes" if s["large"] else "", "yes" if s["agrees"] else "**no**"])
    disagreeing = ", ".join(block["disagreeing_steps"]) or "none"
    return "\n".join([
        f"## Calibration against the paper: {block['roadmap']} · {block['data']}"
        + (f" · {block['settings']}" if block["settings"] else ""),
        "",
        f"- {summary_line(block)}.",
        f"- Large effect: paper |Δ| >= {block['large_effect_threshold']} points; resolved: the paired 95% interval "
        f"excludes zero ({block['resolved_large']} of the {block['sign_agreement_large']['of']} large-effect steps, "
        f"whatever their sign).",
        f"- Spearman over the adopted steps alone (no side branches): "
        f"{'n/a' if block['spearman_adopted'] is None else format(block['spearman_adopted'], '.2f')} over "
        f"{block['n_adopted_steps']} steps.",
        f"- Steps whose change disagrees in sign with the paper's: {disagreeing}.",
        "",
        *aggregate.markdown_rows(header, body),
    ]) + "\n"
