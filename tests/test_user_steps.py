"""Steps in a folder of one's own, found as Hydra finds configs (`--config-dir DIR`, `hydra.searchpath=[file://DIR]`,
`roadmap.compose(config_dir=DIR)`): a step everywhere (run.py, sweeps, studies, analysis, cost table), and a broken
step file stopped in one line before anything is written."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli
from omegaconf import OmegaConf

import roadmap
from analysis import __main__ as analysis_cli
from analysis import flops
from experiments import __main__ as experiments_cli
from roadmap.network.steps import CONF_DIR, load_steps


def step_file(name: str, parent: str, body: str = "") -> str:
    return f"# @package _global_\ndefaults:\n  - {parent}\n  - _self_\n\nstep: {name}\n{body}"


def folder_of_steps(root: Path, **files: str) -> Path:
    (root / "step").mkdir(parents=True)
    for name, text in files.items():
        (root / "step" / f"{name}.yaml").write_text(text)
    return root


@pytest.fixture
def my_steps(tmp_path) -> Path:
    """ConvNeXt-T with a 3x3 depthwise kernel, a 5x5 kernel after kernel7, and a step built on the first."""
    return folder_of_steps(tmp_path / "my_steps",
                           my_k3=step_file("my_k3", "sep_downsample", "model:\n  kernel_size: 3\n"),
                           my_k3_relu=step_file("my_k3_relu", "my_k3", "model:\n  act: relu\n"),
                           my_k5=step_file("my_k5", "kernel7", "model:\n  kernel_size: 5\n"))


@pytest.mark.parametrize("how", ["config_dir", "searchpath"])
def test_a_step_of_ones_own_composes_as_hydra_finds_it(my_steps, how):
    if how == "config_dir":
        cfg = roadmap.compose(["+step=my_k3_relu"], config_dir=my_steps)
    else:
        cfg = roadmap.compose([f"hydra.searchpath=[file://{my_steps}]", "+step=my_k3_relu"])
    assert (cfg.step, cfg.model.kernel_size, cfg.model.act, cfg.model.downsample) == ("my_k3_relu", 3, "relu",
                                                                                      "separate")
    with pytest.raises(roadmap.ConfigError, match="step=my_k3_relu: unknown step"):
        roadmap.compose(["+step=my_k3_relu"])


def test_a_step_of_ones_own_comes_right_after_its_parent_and_is_never_adopted(my_steps):
    steps = load_steps(config_dirs=[my_steps])
    names = [step.name for step in steps]
    assert names == [*roadmap.STEP_NAMES[:roadmap.STEP_NAMES.index("kernel7") + 1], "my_k5",
                     *roadmap.STEP_NAMES[roadmap.STEP_NAMES.index("kernel7") + 1:
                                         roadmap.STEP_NAMES.index("sep_downsample") + 1],
                     "my_k3", "my_k3_relu", *roadmap.STEP_NAMES[roadmap.STEP_NAMES.index("sep_downsample") + 1:]]
    mine = {step.name: step for step in steps if not step.builtin}
    assert {name: (step.parent, step.adopted) for name, step in mine.items()} == {
        "my_k3": ("sep_downsample", False), "my_k3_relu": ("my_k3", False), "my_k5": ("kernel7", False)}
    assert [step for step in steps if step.builtin] == list(roadmap.STEPS)


BROKEN = {
    "a parent that does not exist": ({"mine": step_file("mine", "kernel8")},
                                     "step/mine.yaml: extends kernel8, which is no step; choose one of resnet"),
    "a cycle": ({"a": step_file("a", "b"), "b": step_file("b", "a")},
                "step/a.yaml: a cycle of steps: a extends b extends a"),
    "a built-in step's name": ({"kernel7": step_file("kernel7", "move_up")},
                               "step/kernel7.yaml: shadows the built-in step kernel7; give the step another name"),
    "no package header": ({"mine": "defaults:\n  - gelu\n  - _self_\nstep: mine\n"}, "step/mine.yaml: not a step"),
    "no parent": ({"mine": "# @package _global_\nstep: mine\n"}, "step/mine.yaml: not a step"),
    "another step's name inside": ({"mine": step_file("other", "gelu")}, "step/mine.yaml: not a step"),
    "not YAML": ({"mine": "# @package _global_\ndefaults: [gelu\n"}, "step/mine.yaml: not YAML"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_step_file_fails_in_one_line_naming_it(tmp_path, case):
    files, says = BROKEN[case]
    folder = folder_of_steps(tmp_path / "broken", **files)
    for kwargs, overrides in [({"config_dir": folder}, []), ({}, [f"hydra.searchpath=[file://{folder}]"])]:
        with pytest.raises(roadmap.ConfigError) as error:
            roadmap.compose(overrides, **kwargs)
        assert says in str(error.value) and str(folder) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("flag", ["--config-dir", "hydra.searchpath"])
def test_run_py_stops_on_a_broken_step_file_before_anything_is_written(tmp_path, flag):
    folder = folder_of_steps(tmp_path / "broken", a=step_file("a", "b"), b=step_file("b", "a"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = ["--config-dir", str(folder)] if flag == "--config-dir" else [f"hydra.searchpath=[file://{folder}]"]
    done = run_cli([*args, "+step=resnet"], cwd)
    assert done.returncode == 2
    assert done.stderr == f"error: {folder}/step/a.yaml: a cycle of steps: a extends b extends a\n"
    assert list(cwd.iterdir()) == []


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(roadmap.ConfigError, match=f"--config-dir: {tmp_path}/nope: no such folder"):
        roadmap.compose([], config_dir=tmp_path / "nope")
    with pytest.raises(roadmap.ConfigError, match=f"hydra.searchpath: {tmp_path}/nope: no such folder"):
        roadmap.compose([f"hydra.searchpath=[file://{tmp_path}/nope]"])


@pytest.mark.parametrize("flag", ["--config-name", "--config-path"])
def test_run_py_checks_the_primary_config_that_config_name_and_config_path_choose(tmp_path, flag):
    # A primary config of one's own (a bad seed in it): the checks compose it, as Hydra will.
    folder = tmp_path / "mine"
    if flag == "--config-name":
        folder.mkdir()
        (folder / "my_config.yaml").write_text("defaults:\n  - config\n  - _self_\n\nseed: -1\n")
        args = ["--config-dir", str(folder), "--config-name", "my_config"]
    else:
        shutil.copytree(CONF_DIR, folder)
        (folder / "config.yaml").write_text((CONF_DIR / "config.yaml").read_text().replace("seed: 0", "seed: -1"))
        args = ["--config-path", str(folder)]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run_cli(args, cwd)
    assert (done.returncode, done.stderr) == (2, "error: seed=-1: must be an integer >= 0\n")
    assert list(cwd.iterdir()) == []


def test_studies_take_the_folder(my_steps, tmp_path, capsys):
    out = tmp_path / "study"
    assert experiments_cli.main(["roadmap_fmnist", "--dry-run", "--seeds", "1", "--out", str(out),
                                 "--config-dir", str(my_steps)]) == 0
    sweep, analysis = [line.split()[1:] for line in capsys.readouterr().out.splitlines()]
    assert sweep[sweep.index("--config-dir") + 1] == str(my_steps)
    (steps,) = [arg.removeprefix("+step=").split(",") for arg in sweep if arg.startswith("+step=")]
    assert steps == [step.name for step in load_steps(config_dirs=[my_steps])]
    assert analysis[-2:] == ["--config-dir", str(my_steps)]
    assert experiments_cli.main(["roadmap_fmnist", "--dry-run", "+step=my_k3", "--out", str(out)]) == 2
    assert "step=my_k3: unknown step" in capsys.readouterr().err


def test_studies_stop_on_a_broken_step_file_before_anything_is_written(tmp_path, capsys):
    folder = folder_of_steps(tmp_path / "broken", kernel7=step_file("kernel7", "move_up"))
    out = tmp_path / "study"
    assert experiments_cli.main(["roadmap_fmnist", "--out", str(out), "--config-dir", str(folder)]) == 2
    assert capsys.readouterr().err == f"error: {folder}/step/kernel7.yaml: shadows the built-in step kernel7; " \
                                      "give the step another name\n"
    assert not out.exists()


def write_run(root: Path, step: str, seed: int, accuracy: float, config_dirs: list[Path]) -> None:
    """A run directory as run.py leaves it, its Hydra searching `config_dirs` (.hydra/hydra.yaml)."""
    run_dir = root / f"{step}_seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = roadmap.compose([f"+step={step}", f"seed={seed}"], config_dir=config_dirs[0] if config_dirs else None)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    sources = [{"path": "/somewhere/conf", "schema": "file", "provider": "main"}]
    sources += [{"path": str(folder), "schema": "file", "provider": "command-line"} for folder in config_dirs]
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"config_sources": sources}}}))
    (run_dir / "result.json").write_text(json.dumps({
        "step": step, "roadmap": "tiny", "data": "fashion_mnist", "seed": seed, "status": "completed",
        "test_acc1": accuracy, "test_acc5": 99.0, "params": 1000, "gflops": 0.1, "gflops_conv_linear": 0.1,
        "input_size": 32, "train_imgs_per_s": 100.0, "epochs": 2, "device": "cpu",
        "overrides": [f"+step={step}", f"seed={seed}"]}))


@pytest.fixture
def records(my_steps, tmp_path) -> Path:
    root = tmp_path / "runs"
    for seed in (0, 1):
        for step, accuracy in [("kernel7", 79.0), ("my_k5", 79.2), ("kernel9", 79.1), ("sep_downsample", 81.0),
                               ("my_k3", 80.5)]:
            write_run(root, step, seed, accuracy + seed / 10 + (step == "my_k3") * seed / 10, [my_steps])
    return root


def test_analysis_pairs_a_step_of_ones_own_with_its_parent_and_says_it_is_not_the_papers(records, tmp_path):
    out = tmp_path / "out"
    assert analysis_cli.main([str(records), "--out", str(out)]) == 0
    table = pd.read_csv(out / "roadmap.csv").set_index("step")
    assert list(table.index) == ["kernel7", "my_k5", "kernel9", "sep_downsample", "my_k3"]
    mine = table.loc["my_k3"]
    assert (mine.parent, mine.adopted, mine.builtin, mine.group) == ("sep_downsample", False, False, "micro design")
    assert mine.delta_test_acc1 == pytest.approx(-0.45) and mine.delta_n == 2  # paired by seed: -0.5, -0.4
    assert mine.label == "my_k3 (your step)" and pd.isna(mine.paper_acc1)
    assert "| my_k3 (your step, not the paper's) |" in (out / "roadmap.md").read_text()


def test_analysis_of_a_results_csv_takes_the_folder_from_config_dir(records, my_steps, tmp_path, capsys):
    assert analysis_cli.main([str(records), "--out", str(tmp_path / "first")]) == 0
    moved = tmp_path / "moved_steps"
    my_steps.rename(moved)  # the folder the runs recorded is gone
    capsys.readouterr()
    assert analysis_cli.main([str(tmp_path / "first" / "results.csv"), "--out", str(tmp_path / "unpaired")]) == 0
    assert "step my_k3: no step file for it" in capsys.readouterr().out
    assert pd.isna(pd.read_csv(tmp_path / "unpaired" / "roadmap.csv").set_index("step").loc["my_k3", "parent"])
    assert analysis_cli.main([str(tmp_path / "first" / "results.csv"), "--out", str(tmp_path / "again"),
                              "--config-dir", str(moved)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "roadmap.csv"),
                                  pd.read_csv(tmp_path / "first" / "roadmap.csv"))


def test_analysis_stops_on_a_broken_step_file_before_anything_is_written(records, tmp_path, capsys):
    folder = folder_of_steps(tmp_path / "broken", mine=step_file("mine", "kernel8"))
    out = tmp_path / "out"
    assert analysis_cli.main([str(records), "--out", str(out), "--config-dir", str(folder)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {folder}/step/mine.yaml: extends kernel8, which is no step")
    assert not out.exists()


def test_the_cost_table_counts_a_step_of_ones_own(my_steps):
    table = flops.cost_table(size=32, config_dir=my_steps, step_names=["sep_downsample", "my_k3"]).set_index("step")
    assert list(table.index) == ["sep_downsample", "my_k3"]
    assert not table.loc["my_k3", "builtin"] and not table.loc["my_k3", "adopted"]
    # 3x3 instead of 7x7 depthwise kernels: 40 weights fewer per channel of every block.
    widths, depths = [96, 192, 384, 768], [3, 3, 9, 3]
    fewer = sum(40 * width * depth for width, depth in zip(widths, depths))
    assert table.loc["sep_downsample", "params"] - table.loc["my_k3", "params"] == fewer
