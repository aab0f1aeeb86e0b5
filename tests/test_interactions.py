"""Leave-one-out and add-one-in read together: each change paired by seed in both studies, and flagged where its
effect alone and its effect in context have intervals that do not overlap."""

import math
import statistics

import pandas as pd
import pytest

from analysis import __main__ as cli
from analysis import aggregate

T_975_DF2 = 4.302652729911275
BASE = {"resnet": [80.0, 81.0, 79.5], "sep_downsample": [85.0, 86.0, 84.0]}
# (step, design) -> per-seed change from the step as is
CHANGES = {("resnet", "model.kernel_size=7"): [0.9, 1.0, 1.1],  # kernel 7 alone: +1.0 ± 0.25
           ("sep_downsample", "model.kernel_size=3"): [0.1, 0.0, -0.1],  # undoing it costs ConvNeXt-T nothing
           ("resnet", "model.act=gelu"): [0.1, 0.3, 0.2],  # GELU alone +0.2
           ("sep_downsample", "model.act=relu"): [-0.5, 0.0, -0.25]}  # undoing it costs 0.25, a wide interval


def runs() -> pd.DataFrame:
    rows = [(step, "", seed, acc) for step, accs in BASE.items() for seed, acc in enumerate(accs)]
    rows += [(step, design, seed, BASE[step][seed] + change) for (step, design), changes in CHANGES.items()
             for seed, change in enumerate(changes)]
    return pd.DataFrame([{"run_dir": f"x/{step}/{design}/{seed}", "roadmap": "tiny", "data": "fashion_mnist",
                          "settings": "", "design": design, "excluded": "", "status": "completed",
                          "recipe": "original" if step == "resnet" else "modern", "step": step, "seed": seed,
                          "test_acc1": acc, "test_acc5": 99.0} for step, design, seed, acc in rows])


def half(values):
    return T_975_DF2 * statistics.stdev(values) / math.sqrt(len(values))


def test_ablations_are_paired_by_seed_and_sorted_by_change():
    table = aggregate.ablation_table(runs())
    by_name = table.set_index("ablation")
    for (step, design), changes in CHANGES.items():
        (name,) = table.ablation[(table.step == step) & (table.design == design)]
        assert by_name.loc[name, "delta_test_acc1"] == pytest.approx(statistics.mean(changes))
        assert by_name.loc[name, "delta_ci95"] == pytest.approx(half(changes))
    assert set(table.ablation) == {"with_kernel7", "without_kernel7", "with_gelu", "without_gelu"}
    for _, rows in table.groupby("step"):
        assert list(rows.delta_test_acc1) == sorted(rows.delta_test_acc1)
    assert bool(by_name.loc["with_kernel7", "resolved"]) and not by_name.loc["without_kernel7", "resolved"]


def test_interactions_compare_each_change_alone_and_in_context():
    table = aggregate.interaction_table(aggregate.ablation_table(runs())).set_index("change")
    assert table.loc["kernel7", "alone"] == pytest.approx(1.0)
    assert table.loc["kernel7", "in_context"] == pytest.approx(0.0)  # the sign turned: what the change adds
    assert table.loc["gelu", "in_context"] == pytest.approx(0.25)
    assert table.loc["kernel7", "in_context_ci95"] == pytest.approx(half(CHANGES["sep_downsample",
                                                                                 "model.kernel_size=3"]))
    assert bool(table.loc["kernel7", "differ"]) and not table.loc["gelu", "differ"]
    assert (table.loc["kernel7", "first_step"], table.loc["kernel7", "last_step"]) == ("resnet", "sep_downsample")


def test_the_analysis_writes_the_interaction_table(tmp_path):
    results = tmp_path / "results.csv"
    runs().to_csv(results, index=False)
    assert cli.main([str(results), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "interactions.md").read_text()
    assert "| kernel7 | +1.00 ± 0.25 | 3 | +0.00 ± 0.25 | 3 | **do not overlap** |" in markdown
    assert "| gelu |" in markdown and (tmp_path / "out" / "ablations.png").is_file()


def test_one_study_alone_writes_no_interaction_table(tmp_path):
    only_loo = runs()[~((runs().step == "resnet") & (runs().design != ""))]
    assert aggregate.interaction_table(aggregate.ablation_table(only_loo)).empty
