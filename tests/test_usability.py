"""What a new user meets first: the cost table of the paper's networks, a path with ~, a misspelt key, a step chosen
without its +, an analysis of a results.csv alone, the labels of the accuracy-against-compute figure."""

import os
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

import roadmap
from analysis import __main__ as analysis_cli
from analysis import aggregate, flops, plots

REPO = Path(__file__).resolve().parent.parent


def test_the_cost_table_counts_the_papers_networks_unless_told_otherwise():
    # The README's table: ResNet-50 with the modern recipe has 25,557,032 parameters, as torchvision's resnet50.
    paper = flops.cost_table(size=32, step_names=["modern_recipe"])
    assert paper.params.tolist() == [25_557_032]
    proxy = flops.cost_table(size=32, budget="fmnist", step_names=["modern_recipe"])
    assert proxy.params[0] > 25_557_032  # the proxy's layer scale on every AdamW step


def test_a_path_starting_with_home_is_expanded():
    assert roadmap.compose(["data.root=~/data"]).data.root == os.path.expanduser("~/data")


def test_run_py_takes_a_path_starting_with_home(tmp_path):
    done = run_cli(["data.root=~/data", "--cfg", "job"], tmp_path, env={"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert f"root: {tmp_path}/data" in done.stdout


@pytest.mark.parametrize("override, says", [
    ("model.kernal_size=3", "model.kernal_size: unknown switch (did you mean model.kernel_size?); the switches are"),
    ("+model.kernal_size=3", "model.kernal_size: unknown switch (did you mean model.kernel_size?)"),
    ("budget.epoch=3", "budget.epoch: unknown setting (did you mean budget.epochs?); the settings are"),
    ("recipe.warmup=5", "recipe.warmup: unknown setting (did you mean recipe.warmup_epochs?)"),
    ("runtime.devcie=cpu", "runtime.devcie: unknown setting (did you mean runtime.device?)"),
    ("data.image_sise=64", "data.image_sise: unknown setting (did you mean data.image_size?)"),
    ("seeed=1", "seeed: unknown setting (did you mean seed?)"),
    ("model.attention=true", "model.attention: unknown switch; the switches are"),
])
def test_an_unknown_key_is_named_with_the_closest_known_one(override, says):
    with pytest.raises(roadmap.ConfigError) as error:
        roadmap.compose([override])
    assert str(error.value).startswith(says) and "\n" not in str(error.value)


@pytest.mark.parametrize("overrides, says", [
    (["step=patchify"], "Could not override 'step'. No match in the defaults list. To append to your default list "
                        "use +step=patchify"),
    (["recipe=adam"], "recipe=adam: no such config; choose one of modern, original"),
    (["+seed=1"], "Could not append to config. An item is already at 'seed'."),
    (["~nope"], "Could not delete from config. 'nope' does not exist."),
    (["model.widths=[8,16"], "model.widths=[8,16: not an override Hydra can parse; quote a value"),
    (["recipe.optimizer=lamb"], "recipe.optimizer='lamb': must be one of sgd, adamw"),
])
def test_every_composition_error_is_a_config_error_of_one_line(overrides, says):
    with pytest.raises(roadmap.ConfigError) as error:
        roadmap.compose(overrides)
    assert str(error.value).startswith(says) and "\n" not in str(error.value)


def _runs(steps: list[str]) -> pd.DataFrame:
    """results.csv rows of two seeds of each step."""
    return pd.DataFrame([{"run_dir": f"runs/{step}/seed={seed}", "status": "completed", "excluded": "",
                          "roadmap": "tiny", "data": "fashion_mnist", "settings": "", "design": "", "step": step,
                          "recipe": "original", "seed": seed, "test_acc1": 80.0 + i + seed, "test_acc5": 99.0,
                          "params": 1e6, "gflops_conv_linear": 0.1, "input_size": 32}
                         for i, step in enumerate(steps) for seed in (0, 1)])


def test_an_analysis_of_a_results_csv_says_why_it_draws_no_curves(tmp_path, capsys):
    _runs(["resnet", "modern_recipe"]).to_csv(tmp_path / "results.csv", index=False)
    assert analysis_cli.main([str(tmp_path / "results.csv"), "--out", str(tmp_path / "out")]) == 0
    assert "curves.png: not drawn: no metrics.csv in the runs' directories" in capsys.readouterr().out
    assert not (tmp_path / "out" / "curves.png").exists() and (tmp_path / "out" / "roadmap.png").exists()


def test_no_two_labels_of_the_accuracy_against_compute_figure_overlap():
    runs = aggregate.load_runs([REPO / "docs" / "studies" / "roadmap_fmnist" / "results.csv"])
    rows = aggregate.roadmap_table(runs)
    figure = plots.accuracy_vs_gflops_figure(rows)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    for ax in figure.axes:  # the labels alone, without the lines that join some of them to their markers
        labels = [Text.get_window_extent(text, renderer) for text in ax.texts if text.get_text() in set(rows.label)]
        assert len(labels) == rows[["test_acc1_mean", "paper_acc1"][figure.axes.index(ax)]].notna().sum()
        assert not [pair for pair in combinations(labels, 2) if pair[0].overlaps(pair[1])]
        assert all(ax.bbox.contains(label.x0, label.y0) and ax.bbox.contains(label.x1, label.y1) for label in labels)
