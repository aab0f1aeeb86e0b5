"""analysis.compare: two studies of the same steps, paired by seed."""

import math
import statistics

import pandas as pd
import pytest
from scipy.stats import t as student_t

from analysis import compare

BASE = {("resnet", 0): 76.0, ("resnet", 1): 77.0, ("resnet", 2): 75.5,
        ("modern_recipe", 0): 75.0, ("modern_recipe", 1): 76.5, ("modern_recipe", 2): 74.0,
        ("gelu", 0): 78.0}
OTHER = {("resnet", 0): 76.0, ("resnet", 1): 77.0, ("resnet", 2): 75.5,
         ("modern_recipe", 0): 80.0, ("modern_recipe", 1): 80.1, ("modern_recipe", 2): 79.2,
         ("modern_recipe", 3): 90.0,  # no seed 3 in BASE: in OTHER's mean, not in the paired change
         ("kernel7", 0): 80.0}  # only in OTHER: no row


def study(accuracies: dict, excluded: tuple = ()) -> pd.DataFrame:
    return pd.DataFrame([{"step": step, "seed": seed, "test_acc1": acc, "design": "",
                          "excluded": "diverged" if (step, seed) in excluded else ""}
                         for (step, seed), acc in accuracies.items()])


def test_means_and_paired_changes_against_an_independent_computation():
    table = compare.paired_studies(study(BASE), study(OTHER, excluded=(("resnet", 2),))).set_index("step")
    assert list(table.index) == ["resnet", "modern_recipe"]  # roadmap order, steps both ran
    differences = [OTHER[("modern_recipe", s)] - BASE[("modern_recipe", s)] for s in (0, 1, 2)]
    half = student_t.ppf(0.975, 2) * statistics.stdev(differences) / math.sqrt(3)
    row = table.loc["modern_recipe"]
    assert row.base_test_acc1_mean == pytest.approx(statistics.mean([75.0, 76.5, 74.0]))
    assert row.other_test_acc1_mean == pytest.approx(statistics.mean([80.0, 80.1, 79.2, 90.0]))
    assert (row.base_n, row.other_n, row.delta_n) == (3, 4, 3)
    assert row.delta_test_acc1 == pytest.approx(statistics.mean(differences))
    assert row.delta_ci95 == pytest.approx(half) and row.resolved
    resnet = table.loc["resnet"]  # the excluded run leaves out its seed: two identical pairs, nothing resolved
    assert (resnet.other_n, resnet.delta_n, resnet.delta_test_acc1, resnet.resolved) == (2, 2, 0.0, False)


def test_the_command_prints_and_writes_the_table_and_names_a_bad_path(tmp_path, capsys):
    study(BASE).to_csv(tmp_path / "a.csv", index=False)
    study(OTHER).to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "compare.md"
    assert compare.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--labels", "sqrt", "constant",
                         "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    assert "change sqrt → constant, paired by seed, ± 95% CI" in printed
    assert "| `modern_recipe` | 75.17 | 3 | 82.33 | 4 | +4.60 ±" in printed
    assert compare.main([str(tmp_path / "a.csv"), str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file or directory" in capsys.readouterr().err


def test_a_study_of_several_families_is_refused(tmp_path, capsys):
    twice = pd.concat([study(BASE), study(BASE)])
    twice.to_csv(tmp_path / "twice.csv", index=False)
    study(OTHER).to_csv(tmp_path / "b.csv", index=False)
    assert compare.main([str(tmp_path / "twice.csv"), str(tmp_path / "b.csv")]) == 2
    assert "several runs of one step and seed" in capsys.readouterr().err


def test_a_users_step_is_compared_right_after_its_recorded_parent():
    def with_user_steps(accuracies: dict) -> pd.DataFrame:
        runs = study(accuracies)
        runs["step_parent"] = runs.step.map({"my_k3": "resnet"})  # a user's step whose folder is gone
        return runs
    user = {("my_k3", 0): 70.0, ("my_k3", 1): 71.0, ("orphan", 0): 60.0, ("orphan", 1): 61.0}
    table = compare.paired_studies(with_user_steps(BASE | user), with_user_steps(OTHER | user))
    assert list(table.step) == ["resnet", "my_k3", "modern_recipe", "orphan"]  # a step no record places: last
    assert table.set_index("step").loc["my_k3"].delta_test_acc1 == 0.0
