"""experiments: studies generated from the step list compose into valid configs and the right commands."""

import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import __main__ as cli
from experiments import ablations
from experiments.studies import STUDIES
from roadmap import ADOPTED_STEPS, STEP_NAMES, compose

CHANGED_STEPS = list(ADOPTED_STEPS[1:])


def resolved(overrides) -> dict:
    return OmegaConf.to_container(compose(overrides), resolve=True)


def test_undoing_and_applying_the_kernel_size():
    undo = {a.change: a for a in ablations.leave_one_out()}["kernel7"]
    apply = {a.change: a for a in ablations.add_one_in()}["kernel7"]
    assert (undo.step, undo.overrides) == ("sep_downsample", ("model.kernel_size=3",))
    assert (apply.step, apply.overrides) == ("resnet", ("model.kernel_size=7",))


def test_recipe_and_multi_key_changes():
    undo = {a.change: a.overrides for a in ablations.leave_one_out()}
    assert undo["modern_recipe"] == ("recipe=original",)
    assert undo["stage_ratio"] == ("model.depths=[3,4,6,3]",)
    assert set(undo["sep_downsample"]) >= {"model.downsample=strided", "model.head_norm=false", "model.init=resnet"}
    assert undo["inverted"] == ("model.block=bottleneck",)  # move_up replaced the block type: undo the whole change


# The model switches a budget sets per optimizer (`${budget...}`; tests/test_budget.py pins which).
BUDGET_DECIDED = {f"model.{key}" for key, value in OmegaConf.to_container(compose([]).model, resolve=False).items()
                  if "${budget." in str(value)}


def test_every_change_once_per_study():
    for generate in (ablations.leave_one_out, ablations.add_one_in):
        assert [a.change for a in generate()] == CHANGED_STEPS


@pytest.mark.parametrize("generate, start", [(ablations.leave_one_out, ADOPTED_STEPS[-1]),
                                             (ablations.add_one_in, ADOPTED_STEPS[0])])
def test_every_override_set_composes_and_changes_only_what_it_names(generate, start):
    base = resolved([f"+step={start}"])
    for ablation in generate():
        cfg = resolved([f"+step={ablation.step}", *ablation.overrides])
        named = {override.split("=", 1)[0] for override in ablation.overrides}
        changed = {f"model.{k}" for k in cfg["model"] if cfg["model"][k] != base["model"][k]}
        changed |= {"recipe"} if cfg["recipe"] != base["recipe"] else set()
        assert changed - BUDGET_DECIDED == named - BUDGET_DECIDED, ablation.name
        for key in (changed & BUDGET_DECIDED) - named:  # the budget's choice, following the recipe's optimizer by itself
            name = key.removeprefix("model.")
            assert cfg["model"][name] == cfg["budget"][name][cfg["recipe"]["optimizer"]], (ablation.name, key)


def test_undoing_a_step_hands_a_budget_decided_switch_back_to_the_budget():
    (undo,) = [a.overrides for a in ablations.leave_one_out() if a.change == "sep_downsample"]
    for budget, layer_scale in [("paper", 0.0), ("fmnist", 1e-6)]:  # AdamW: off in the paper, on in the proxy
        assert compose(["+step=sep_downsample", *undo, f"budget={budget}"]).model.layer_scale == layer_scale


def test_undone_values_are_the_parents_and_applied_values_the_steps():
    changes = ablations.step_changes()
    assert changes["kernel7"] == {"model.kernel_size": (3, 7)}
    assert changes["modern_recipe"] == {"recipe": ("original", "modern")}
    assert set(changes) == set(CHANGED_STEPS)


def test_base_path_stage_ratio_undo_keeps_the_later_widths():
    undo = {a.change: a.overrides for a in ablations.leave_one_out("base")}
    assert undo["stage_ratio"] == ("model.depths=[3,24,36,3]",)


def test_roadmap_fmnist_sweeps_every_step_with_its_settings(tmp_path):
    study = STUDIES["roadmap_fmnist"]
    (command,) = cli.sweep_commands(study, tmp_path, seeds=3, roadmap_name="tiny")
    assert command[1:3] == [str(cli.RUN_PY), "-m"]
    assert f"+step={','.join(STEP_NAMES)}" in command
    assert "seed=0,1,2" in command
    assert f"hydra.sweep.dir={tmp_path}" in command
    for step in STEP_NAMES:  # the study's settings are valid at every step
        compose([*study.settings, f"+step={step}"])


def test_the_8_seed_study_runs_the_adopted_path_alone_as_the_study_runs_it(tmp_path):
    study = STUDIES["roadmap_fmnist_8seeds"]
    assert study.settings == STUDIES["roadmap_fmnist"].settings  # the same runs, so one folder holds both studies'
    (command,) = cli.sweep_commands(study, tmp_path, seeds=study.default_seeds, roadmap_name="tiny")
    assert f"+step={','.join(ADOPTED_STEPS)}" in command and "kernel5" not in " ".join(command)
    assert "seed=0,1,2,3,4,5,6,7" in command


def test_ablation_studies_give_each_sweep_its_own_directory(tmp_path):
    for name, reference in [("leave_one_out", ADOPTED_STEPS[-1]), ("add_one_in", ADOPTED_STEPS[0])]:
        commands = cli.sweep_commands(STUDIES[name], tmp_path, seeds=1, roadmap_name="tiny", overrides=["x.y=1"])
        sweep_dirs = [c[-1] for c in commands]
        assert len(set(sweep_dirs)) == len(commands) == 1 + len(CHANGED_STEPS)
        assert sweep_dirs[0] == f"hydra.sweep.dir={tmp_path / reference}"
        assert all("x.y=1" in c for c in commands)


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, capsys):
    assert cli.main(["add_one_in", "--dry-run", "--seeds", "2", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(CHANGED_STEPS) + 1
    assert shlex.split(lines[-1][2:])[1:] == ["-m", "analysis", str(tmp_path), "--out", str(tmp_path / "analysis")]
    assert "model.kernel_size=7" in shlex.split(lines[[a.change for a in ablations.add_one_in()].index("kernel7") + 1])
    assert not any(Path(tmp_path).iterdir())


def test_a_bad_override_stops_the_study_before_any_run(tmp_path, capsys):
    assert cli.main(["roadmap_fmnist", "model.kernel_size=4", "--out", str(tmp_path)]) == 2
    assert "model.kernel_size=4" in capsys.readouterr().err
    assert not any(Path(tmp_path).iterdir())


def test_an_override_replaces_the_studys_own_for_that_key(tmp_path):
    (command,) = cli.sweep_commands(STUDIES["roadmap_fmnist"], tmp_path, 1, "tiny", ["+step=resnet", "budget.epochs=5"])
    assert [arg for arg in command if arg.startswith(("+step=", "budget.epochs="))] == ["+step=resnet", "budget.epochs=5"]
    assert cli.first_job(command)[:3] == ["roadmap=tiny", "data=fashion_mnist", "budget=fmnist_eighth_20ep"]


def test_lr_study_brackets_each_recipes_rate_by_a_factor_of_four(tmp_path):
    commands = cli.sweep_commands(STUDIES["lr_fmnist"], tmp_path, seeds=1, roadmap_name="tiny")
    for command, base in zip(commands, [0.1, 4e-3]):
        lrs = [float(v) for arg in command if arg.startswith("recipe.lr=") for v in arg.split("=")[1].split(",")]
        assert lrs == pytest.approx([base / 4, base, base * 4])
        compose(cli.first_job(command))


@pytest.mark.parametrize("study_name, roadmap_study, budget", [
    ("length_fmnist", "roadmap_fmnist", "fmnist_eighth_20ep"), ("length_fmnist_eighth", "roadmap_fmnist_eighth",
                                                                "fmnist_eighth"),
    ("length_fmnist_narrow", "roadmap_fmnist_narrow", "fmnist_narrow")])
def test_length_study_runs_the_ends_and_capacity_steps_at_twice_the_budgets_epochs(tmp_path, study_name,
                                                                                    roadmap_study, budget):
    study = STUDIES[study_name]
    assert study.settings == STUDIES[roadmap_study].settings  # paired with that study's runs
    (command,) = cli.sweep_commands(study, tmp_path, seeds=2, roadmap_name="tiny")
    epochs = compose(list(study.settings[:2])).budget.epochs
    assert "+step=resnet,depthwise,width,sep_downsample" in command and f"budget.epochs={2 * epochs}" in command
    assert f"budget={budget}" in command and "seed=0,1" in command
