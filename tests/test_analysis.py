"""analysis: run records -> results.csv, the roadmap table with means/stds/counts, exclusions and figures."""

import json
import math
import shutil
import statistics
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml
from matplotlib.image import imread
from omegaconf import OmegaConf

from analysis import __main__ as cli
from analysis import aggregate, plots
from roadmap import STEPS, compose
from roadmap.records.record import RENAMED_FIELDS

SETTINGS = ["budget.epochs=2"]
SEEDS = {  # (data, step) -> seeds run; statuses other than completed below
    **{("fashion_mnist", step.name): [0, 1, 2] for step in STEPS},
    ("fashion_mnist", "kernel9"): [0],
    ("cifar10", "resnet"): [0, 1],
    ("cifar10", "modern_recipe"): [0, 1, 2],
}
NOT_COMPLETED = {
    ("fashion_mnist", "gelu", 2): ("failed", "RuntimeError: out of memory"),
    ("fashion_mnist", "sep_downsample", 1): ("diverged", "loss is nan at epoch 1"),
}
ABLATION = ("fashion_mnist", "sep_downsample", ("model.kernel_size=3",))  # ConvNeXt-T without the 7x7 kernel


def fake_accuracy(data: str, step: str, seed: int, design: tuple = ()) -> float:
    """A deterministic accuracy that differs by dataset, step, seed and design change."""
    index = [s.name for s in STEPS].index(step)
    base = {"fashion_mnist": 88.0, "cifar10": 70.0}[data] + 0.3 * index
    seed_by_step = 0.11 * ((3 * seed + 5 * index) % 4)  # so that paired differences vary over seeds
    return round(base + 0.17 * seed + (seed % 2) * 0.05 + seed_by_step - 0.4 * len(design), 4)


@cache
def hydra_config(data: str, step: str, seed: int, design: tuple) -> str:
    cfg = compose([f"+step={step}", f"seed={seed}", *design])
    cfg.data.name = data
    return OmegaConf.to_yaml(cfg)


def write_run(root: Path, data: str, step: str, seed: int, design: tuple = (), epochs: int = 2) -> Path:
    """A run directory in run.py's record format: result.json, metrics.csv and .hydra/."""
    overrides = [f"+step={step}", f"seed={seed}", f"data={data}", *SETTINGS, *design]
    run_dir = root / "_".join([step, data, f"seed{seed}", *design]).replace("=", "-")
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(hydra_config(data, step, seed, design))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    status, error = ("completed", None) if design else NOT_COMPLETED.get((data, step, seed), ("completed", None))
    acc1 = fake_accuracy(data, step, seed, design)
    record = {
        "step": step, "roadmap": "tiny", "data": data, "seed": seed, "status": status, "error": error,
        "test_acc1": acc1 if status == "completed" else None, "test_acc5": min(100.0, acc1 + 9), "best_val_acc1": acc1,
        "epochs": epochs, "params": 1_000_000 + 1000 * len(step), "gflops": 0.5,
        "gflops_conv_linear": 0.4 + 0.01 * len(step),
        "input_size": 32, "train_imgs_per_s": 500.0 + seed, "peak_mem_mb": 900.0, "wall_seconds": 60.0,
        "device": "cpu", "torch_version": "2.5.0", "git_commit": "abc1234", "overrides": overrides,
        "an_extra_field": "tolerated",
    }
    (run_dir / "result.json").write_text(json.dumps(record))
    pd.DataFrame({
        "epoch": range(1, epochs + 1), "lr": [1e-3] * epochs, "train_loss": [1.0 / e for e in range(1, epochs + 1)],
        "val_loss": [0.5] * epochs, "val_acc1": [acc1 - 5 + 5 * e / epochs for e in range(1, epochs + 1)],
        "val_acc5": [99.0] * epochs, "epoch_seconds": [30.0] * epochs, "train_imgs_per_s": [500.0] * epochs,
    }).to_csv(run_dir / "metrics.csv", index=False)
    return run_dir


def write_runs(root: Path) -> Path:
    for (data, step), seeds in SEEDS.items():
        for seed in seeds:
            write_run(root / "sweep", data, step, seed)
    data, step, design = ABLATION
    for seed in (0, 1):
        write_run(root / "ablation", data, step, seed, design)
    (root / "sweep" / "broken").mkdir()
    (root / "sweep" / "broken" / "result.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return write_runs(tmp_path_factory.mktemp("records"))


@pytest.fixture(scope="module")
def outputs(records, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    assert cli.main([str(records / "sweep"), str(records / "ablation"), "--out", str(out)]) == 0
    return out


def completed_accuracies(data: str, step: str) -> list[float]:
    return [fake_accuracy(data, step, seed) for seed in SEEDS.get((data, step), [])
            if (data, step, seed) not in NOT_COMPLETED]


def test_results_csv_has_every_run_with_record_and_config_fields(records, outputs):
    runs = pd.read_csv(outputs / "results.csv")
    assert len(runs) == sum(map(len, SEEDS.values())) + 2 + 1
    for column in ["step", "roadmap", "data", "seed", "status", "test_acc1", "gflops_conv_linear", "train_imgs_per_s",
                   "git_commit", "an_extra_field", "model.kernel_size", "recipe.name", "run_dir", "excluded"]:
        assert column in runs, column
    kernel7 = runs[(runs.step == "kernel7") & (runs.data == "fashion_mnist") & runs.design.isna()]
    assert set(kernel7["model.kernel_size"]) == {7}
    assert set(runs.status) == {"completed", "failed", "diverged", "unreadable"}


def test_means_stds_and_counts_over_completed_seeds_per_dataset(outputs):
    table = pd.read_csv(outputs / "roadmap.csv")
    assert set(zip(table.data, table.step)) == set(SEEDS)  # one row per (data, step): datasets never mixed
    for row in table.itertuples():
        accuracies = completed_accuracies(row.data, row.step)
        assert row.n == len(accuracies)
        assert row.test_acc1_mean == pytest.approx(statistics.mean(accuracies))
        if len(accuracies) > 1:
            assert row.test_acc1_std == pytest.approx(statistics.stdev(accuracies))
        else:
            assert math.isnan(row.test_acc1_std)


def completed_seeds(data: str, step: str) -> set[int]:
    return {seed for seed in SEEDS.get((data, step), []) if (data, step, seed) not in NOT_COMPLETED}


def test_delta_is_paired_by_seed_against_the_parent_step(outputs):
    table = pd.read_csv(outputs / "roadmap.csv")
    fmnist = table[table.data == "fashion_mnist"].set_index("step")
    parent_of = {step.name: step.parent for step in STEPS}
    for step in ["modern_recipe", "kernel5", "kernel9", "gelu", "fewer_acts", "sep_downsample"]:
        parent = parent_of[step]
        seeds = sorted(completed_seeds("fashion_mnist", step) & completed_seeds("fashion_mnist", parent))
        differences = [fake_accuracy("fashion_mnist", step, s) - fake_accuracy("fashion_mnist", parent, s)
                       for s in seeds]
        row = fmnist.loc[step]
        assert row.delta_test_acc1 == pytest.approx(statistics.mean(differences))
        assert row.delta_n == len(differences)
        if len(differences) == 1:  # kernel9: one seed, no interval, nothing resolved
            assert math.isnan(row.delta_ci95) and not row.resolved
    assert math.isnan(fmnist.loc["resnet", "delta_test_acc1"])
    assert fmnist.loc["fewer_acts", "delta_n"] == 2  # gelu's seed 2 failed: only seeds 0 and 1 pair
    assert fmnist.loc["gelu", "paper_delta_acc1"] == pytest.approx(80.62 - 80.57)  # gelu builds on kernel7


def test_table_follows_step_order_and_marks_side_branches(outputs):
    table = pd.read_csv(outputs / "roadmap.csv")
    fmnist = table[table.data == "fashion_mnist"]
    assert list(fmnist.step) == [step.name for step in STEPS]
    assert list(fmnist.adopted) == [step.adopted for step in STEPS]
    assert fmnist.set_index("step").loc["patchify", "group"] == "macro design"
    assert fmnist.set_index("step").loc["sep_downsample", "paper_gflops"] == pytest.approx(4.46)
    assert fmnist.set_index("step").loc["resnet", "recipe"] == "original"


def test_exclusions_are_reported(records, tmp_path, capsys):
    cli.main([str(records / "sweep"), "--out", str(tmp_path)])
    stdout = capsys.readouterr().out
    assert "3 left out of the means" in stdout
    for word in ["1 failed", "1 diverged", "1 unreadable", "out of memory", "loss is nan"]:
        assert word in stdout


def test_ablation_rows_are_named_and_compared_with_their_step(outputs):
    ablations = pd.read_csv(outputs / "ablations.csv")
    (row,) = ablations.itertuples()
    data, step, design = ABLATION
    assert (row.step, row.ablation, row.design, row.n) == (step, "without_kernel7", "model.kernel_size=3", 2)
    # Paired by seed over the seeds both completed: 0 (the step as is diverged at seed 1 and also ran seed 2).
    difference = fake_accuracy(data, step, 0, design) - fake_accuracy(data, step, 0)
    assert row.delta_test_acc1 == pytest.approx(difference) and row.delta_n == 1
    assert math.isnan(row.delta_ci95) and not row.resolved  # one pair: no interval, nothing resolved
    mean = statistics.mean(fake_accuracy(data, step, seed, design) for seed in (0, 1))
    assert row.delta_test_acc1 != pytest.approx(mean - statistics.mean(completed_accuracies(data, step)))


def test_markdown_headers_say_what_each_number_is(outputs):
    markdown = (outputs / "roadmap.md").read_text()
    for text in ["top-1 (%) test, mean ± 95% CI over n seeds", "paired by seed, ± 95% CI", "no (1 seed)", "GFLOPs (fvcore conv+linear, at 32×32)",
                 "train img/s (measured, cpu)", "paper GFLOPs (at 224×224)", "side branch, not adopted",
                 "## tiny · fashion_mnist · budget.epochs=2", "## tiny · cifar10 · budget.epochs=2"]:
        assert text in markdown


def test_every_file_is_written_and_pngs_have_the_expected_size(outputs):
    table = pd.read_csv(outputs / "roadmap.csv")
    tables = {"results.csv", "roadmap.csv", "roadmap.md", "ablations.csv", "ablations.md",
              "calibration_tiny_fashion_mnist_budget.epochs=2.json", "calibration_tiny_cifar10_budget.epochs=2.md"}
    assert tables <= {p.name for p in outputs.iterdir()}
    for data in ["fashion_mnist", "cifar10"]:
        rows = table[table.data == data]
        stages = rows.group.nunique()
        expected_inches = {
            "roadmap": (16.0, 1.6 + plots.ROW_INCHES * (len(rows) + stages)),
            "accuracy_vs_gflops": (13.0, 6.0),
            "curves": (13.0, 5.0),
        }
        for name, (width, height) in expected_inches.items():
            image = imread(outputs / f"{name}_tiny_{data}_budget.epochs=2.png")
            assert image.shape[:2] == (round(height * plots.DPI), round(width * plots.DPI))
            assert image[..., :3].std() > 0.05  # something is drawn
    assert imread(outputs / "ablations.png").shape[0] > 0


def test_a_single_family_gets_the_plain_file_names(records, tmp_path):
    cli.main([str(records / "sweep" / "resnet_fashion_mnist_seed0"), "--out", str(tmp_path)])
    assert {"roadmap.png", "accuracy_vs_gflops.png", "curves.png"} <= {p.name for p in tmp_path.iterdir()}


def test_summaries_from_results_csv_equal_those_in_memory(records, outputs):
    in_memory = aggregate.roadmap_table(aggregate.load_runs([records / "sweep", records / "ablation"]))
    from_csv = aggregate.roadmap_table(pd.read_csv(outputs / "results.csv"))
    pd.testing.assert_frame_equal(in_memory, from_csv, check_dtype=False)


def test_analysis_of_a_results_csv_equals_that_of_the_run_directories(outputs, tmp_path):
    assert cli.main([str(outputs / "results.csv"), "--out", str(tmp_path)]) == 0
    for name in ["roadmap.csv", "ablations.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name), pd.read_csv(outputs / name))
    for name in ["roadmap.md", "calibration_tiny_fashion_mnist_budget.epochs=2.json",
                 "calibration_tiny_cifar10_budget.epochs=2.md"]:
        assert (tmp_path / name).read_text() == (outputs / name).read_text()
    assert pd.read_csv(tmp_path / "results.csv").shape == pd.read_csv(outputs / "results.csv").shape


def test_records_and_results_csv_written_before_the_field_rename_give_the_same_analysis(records, outputs, tmp_path):
    old_name = {new: old for old, new in RENAMED_FIELDS.items()}
    old_records = tmp_path / "old_records"
    shutil.copytree(records / "sweep", old_records)
    for path in old_records.rglob("result.json"):
        if path.parent.name != "broken":
            record = json.loads(path.read_text())
            path.write_text(json.dumps({old_name.get(key, key): value for key, value in record.items()}))
            assert "acc1" in path.read_text() and "test_acc1" not in path.read_text()
    old_csv = tmp_path / "old_results.csv"
    pd.read_csv(outputs / "results.csv").rename(columns=old_name).to_csv(old_csv, index=False)
    for source in [old_records, old_csv]:
        out = tmp_path / f"from_{source.name}"
        assert cli.main([str(source), *([str(records / "ablation")] if source == old_records else []),
                         "--out", str(out)]) == 0
        pd.testing.assert_frame_equal(pd.read_csv(out / "roadmap.csv"), pd.read_csv(outputs / "roadmap.csv"))


def test_runs_that_failed_before_training_give_results_csv_only(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "early_failure"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({
        "step": "resnet", "roadmap": "tiny", "data": "fashion_mnist", "seed": 0, "status": "failed",
        "error": "DataError: no Fashion-MNIST under data.root", "overrides": []}))
    assert cli.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.csv"]
    assert "failed: DataError: no Fashion-MNIST under data.root" in capsys.readouterr().out


def test_a_bar_too_short_for_its_gflops_gets_them_after_its_value(records):
    table = aggregate.roadmap_table(aggregate.load_runs([records / "sweep"]))
    _, rows = next(iter(table.groupby(aggregate.FAMILY, sort=False)))
    rows = rows.reset_index(drop=True)
    rows.loc[1, "test_acc1_mean"] = rows.test_acc1_mean.min() - 30  # far below the others: a bar a few pixels long
    texts = [t.get_text() for t in plots.roadmap_figure(rows).axes[0].texts]
    short, flops = f"{rows.test_acc1_mean[1]:.2f}", plots._gflops(rows.gflops_conv_linear[1])
    assert f"{short}  ({flops} GFLOPs)" in texts
    assert sum(t.endswith("GFLOPs") for t in texts) == rows.test_acc1_mean.notna().sum() - 1


def lr_sweep_runs() -> pd.DataFrame:
    """A learning-rate sweep as results.csv rows: two steps at three rates, two of them also by another rule."""
    rows = []
    for step, recipe_name in [("modern_recipe", "modern"), ("sep_downsample", "modern")]:
        for lr, settings in [(1e-3, "budget=fmnist_7k recipe.lr=0.001"),
                             (4e-3, "budget=fmnist_7k"),
                             (4e-3, "budget.lr_scaling.adamw=constant budget=fmnist_7k recipe.lr=0.004"),
                             (1.6e-2, "budget=fmnist_7k recipe.lr=0.016")]:
            for seed in (0, 1):
                acc = 80.0 - 1000 * abs(lr - 4e-3) + seed + len(step) / 10
                rows.append({"run_dir": f"runs/{step}/{settings}/seed={seed}", "status": "completed",
                             "roadmap": "tiny", "data": "fashion_mnist", "settings": settings, "step": step,
                             "recipe": recipe_name, "design": "", "excluded": "", "seed": seed, "lr": lr,
                             "lr_rule": f"{lr:g} (constant)", "test_acc1": acc, "test_acc5": 99.0,
                             "best_val_acc1": acc + 0.5})
    return pd.DataFrame(rows)


def test_lr_table_averages_each_rate_over_seeds_and_rules_and_marks_the_best_validation():
    runs = lr_sweep_runs()
    table = aggregate.lr_table(runs)
    assert list(table.step) == ["modern_recipe"] * 3 + ["sep_downsample"] * 3
    assert set(table.settings) == {"budget=fmnist_7k"}  # the lr overrides do not split the family
    for row in table.itertuples():
        cell = runs[(runs.step == row.step) & (runs.lr == row.lr)].test_acc1
        assert row.n == len(cell) == (4 if row.lr == 4e-3 else 2)
        assert row.test_acc1_mean == pytest.approx(statistics.mean(cell))
        assert row.best_val == (row.lr == 4e-3)
    assert "| modern_recipe | modern | 0.004 | 0.004 (constant) | 4 |" in aggregate.lr_markdown(table)


def test_lr_files_are_written_for_an_lr_sweep_only(outputs, tmp_path):
    assert not (outputs / "lr.csv").exists()  # the roadmap fixture runs each step at one rate
    one_rate = lr_sweep_runs().query("lr == 0.004")
    assert aggregate.lr_table(one_rate).empty
    lr_sweep_runs().to_csv(tmp_path / "results.csv", index=False)
    assert cli.main([str(tmp_path / "results.csv"), "--out", str(tmp_path / "out")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "lr.csv"),
                                  aggregate.lr_table(lr_sweep_runs()), check_dtype=False)


def test_a_generated_ablation_is_named_whichever_way_hydra_wrote_its_overrides():
    # A study writes `model.depthwise=false`; Hydra's multirun records each job's overrides as `model.depthwise=False`
    # and an interpolation resolved (`model.layer_scale='1e-06'`).
    def same(generated, recorded):
        return aggregate.same_design(aggregate.design_values(generated), aggregate.design_values(recorded))

    assert same(["model.depthwise=false"], ["model.depthwise=False"])
    assert not same(["model.depthwise=false"], ["model.depthwise=True"])
    assert same(["model.widths=[64,128]", "model.act=relu"], ["model.act=relu", "model.widths=[64, 128]"])
    assert same(["model.init=resnet", "model.layer_scale='${budget.layer_scale.${recipe.optimizer}}'"],
                ["model.layer_scale='1e-06'", "model.init=resnet"])
    assert not same(["model.init=resnet", "model.layer_scale='${budget.x}'"], ["model.init=resnet"])


def test_an_ablation_many_times_the_others_is_named_off_the_axis_not_plotted_across_it():
    rows = pd.DataFrame({"step": "resnet", "roadmap": "tiny", "data": "fashion_mnist", "settings": "",
                         "ablation": ["with_a", "with_b", "with_c"], "delta_test_acc1": [-63.96, -2.04, 1.17],
                         "delta_ci95": [1.28, 1.48, 1.06], "resolved": [True, True, True]})
    ax = plots.ablation_figure(rows).axes[0]
    low, high = ax.get_xlim()
    assert -63.96 < low < -2.04 - 1.48 and high > 1.17 + 1.06
    assert [t.get_text().strip() for t in ax.texts] == ["-63.96 ± 1.28, off the axis"]
    rows.loc[0, "delta_test_acc1"] = -5.0  # no gap: every bar on the axis, none named
    ax = plots.ablation_figure(rows).axes[0]
    assert ax.get_xlim()[0] < -5.0 - 1.28 and not ax.texts
