"""Seed intervals, paired step differences and the calibration block, against values worked out by hand."""

import json
import math
import statistics

import pandas as pd
import pytest

from analysis import __main__ as cli
from analysis import aggregate, calibration

T_975_DF2 = 4.302652729911275  # Student-t 97.5% quantile, 2 degrees of freedom (printed tables)
ACCURACY = {  # step -> test top-1 of seeds 0, 1, 2
    "resnet": [80.0, 81.0, 79.0],
    "modern_recipe": [82.0, 82.5, 81.0],  # +2.0, +1.5, +2.0: agrees with the paper's +2.69, resolved
    "stage_ratio": [81.0, 82.0, 80.5],  # -1.0, -0.5, -0.5: disagrees with +0.54, not resolved
    "patchify": [83.0, 84.0, 82.0],  # +2.0, +2.0, +1.5: agrees with +0.15 (a small effect)
    "depthwise": [80.0, 80.5, 79.0],  # -3.0, -3.5, -3.0: agrees with -1.23, resolved
}
PARENT = {"modern_recipe": "resnet", "stage_ratio": "modern_recipe", "patchify": "stage_ratio",
          "depthwise": "patchify"}
PAPER = {"resnet": 76.13, "modern_recipe": 78.82, "stage_ratio": 79.36, "patchify": 79.51, "depthwise": 78.28}


def runs_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"run_dir": f"elsewhere/{step}/seed={seed}", "roadmap": "tiny", "data": "fashion_mnist", "settings": "",
         "design": "", "excluded": "",
         "status": "completed", "recipe": "original" if step == "resnet" else "modern", "step": step, "seed": seed,
         "test_acc1": acc1, "test_acc5": 99.0}
        for step, accuracies in ACCURACY.items() for seed, acc1 in enumerate(accuracies)])


def half_width(values: list[float]) -> float:
    return T_975_DF2 * statistics.stdev(values) / math.sqrt(len(values))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return aggregate.roadmap_table(runs_frame()).set_index("step")


def test_mean_and_95_percent_interval_over_seeds(table):
    for step, accuracies in ACCURACY.items():
        assert table.loc[step, "test_acc1_mean"] == pytest.approx(statistics.mean(accuracies))
        assert table.loc[step, "test_acc1_ci95"] == pytest.approx(half_width(accuracies))


def test_change_from_the_parent_is_paired_by_seed(table):
    for step, parent in PARENT.items():
        differences = [a - b for a, b in zip(ACCURACY[step], ACCURACY[parent])]
        half = half_width(differences)
        assert table.loc[step, "delta_test_acc1"] == pytest.approx(statistics.mean(differences))
        assert table.loc[step, "delta_ci95"] == pytest.approx(half)
        assert table.loc[step, "resolved"] == (abs(statistics.mean(differences)) > half)
    # The paired interval is far narrower than the unpaired one: the seeds' shared spread cancels.
    assert table.loc["depthwise", "delta_ci95"] < table.loc["depthwise", "test_acc1_ci95"] / 2
    assert list(table.resolved[list(PARENT)]) == [True, False, True, True]


def test_one_seed_gives_no_interval_and_resolves_nothing():
    runs = runs_frame()
    one_seed = aggregate.roadmap_table(runs[runs.seed == 0]).set_index("step")
    assert one_seed.loc["depthwise", "delta_test_acc1"] == pytest.approx(-3.0)
    assert math.isnan(one_seed.loc["depthwise", "delta_ci95"])
    assert math.isnan(one_seed.loc["depthwise", "test_acc1_ci95"])
    assert not one_seed.resolved.any()


def test_calibration_block(table):
    block = calibration.calibration(table.reset_index())
    ours = {step: statistics.mean(values) for step, values in ACCURACY.items()}
    rank = {name: {step: i for i, step in enumerate(sorted(values, key=values.get))}
            for name, values in [("ours", ours), ("paper", PAPER)]}
    n = len(ours)
    spearman = 1 - 6 * sum((rank["ours"][s] - rank["paper"][s]) ** 2 for s in ours) / (n * (n * n - 1))
    assert spearman == pytest.approx(0.8)
    assert block["spearman"] == pytest.approx(spearman, abs=1e-4)
    assert (block["n_steps"], block["n_seeds"]) == (5, 3)
    assert block["sign_agreement_adopted"] == {"agree": 3, "of": 4, "fraction": 0.75}
    # Large effects (paper |Δ| >= 0.5): modern recipe, stage ratio, depthwise; patchify (+0.15) is not one.
    assert block["sign_agreement_large"]["agree"] == 2 and block["sign_agreement_large"]["of"] == 3
    assert (block["resolved_large"], block["agree_and_resolved_large"]) == (2, 2)
    assert block["disagreeing_steps"] == ["stage_ratio"]


def test_spearman_over_adopted_steps_leaves_the_side_branches_out():
    side = pd.DataFrame([{**runs_frame().iloc[0].to_dict(), "step": "kernel5", "recipe": "modern", "seed": seed,
                          "run_dir": f"elsewhere/kernel5/seed={seed}", "test_acc1": 70.0} for seed in range(3)])
    block = calibration.calibration(aggregate.roadmap_table(pd.concat([runs_frame(), side])))
    assert (block["n_steps"], block["n_adopted_steps"]) == (6, 5)
    assert block["spearman_adopted"] == pytest.approx(0.8, abs=1e-4)  # the five adopted steps, as above
    ranks_ours, ranks_paper = [2, 4, 3, 5, 1, 0], [0, 2, 3, 4, 1, 5]  # kernel5: last here, first in the paper
    d2 = sum((a - b) ** 2 for a, b in zip(ranks_ours, ranks_paper))
    assert block["spearman"] == pytest.approx(1 - 6 * d2 / (6 * 35), abs=1e-4)


def test_analysis_cli_writes_the_calibration_files(tmp_path, capsys):
    results = tmp_path / "results.csv"
    runs_frame().to_csv(results, index=False)
    assert cli.main([str(results), "--out", str(tmp_path / "out")]) == 0
    block = json.loads((tmp_path / "out" / "calibration.json").read_text())
    for key in ["spearman", "spearman_adopted", "n_steps", "n_seeds", "sign_agreement_adopted", "sign_agreement_large", "resolved_large",
                "disagreeing_steps"]:
        assert key in block
    assert "Steps whose change disagrees in sign with the paper's: stage_ratio" in \
        (tmp_path / "out" / "calibration.md").read_text()
    assert "sign agrees with the paper on 3/4 adopted steps" in capsys.readouterr().out


def test_a_missing_source_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nowhere.csv"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()
