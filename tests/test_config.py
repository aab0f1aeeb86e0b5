"""Composition, the step list, and one-line errors for every setting the builder cannot honour."""

import pytest
import yaml

import roadmap
from roadmap.network.steps import CONF_DIR, load_steps


def test_step_order_is_the_papers():
    assert roadmap.STEP_NAMES == (
        "resnet", "modern_recipe", "stage_ratio", "patchify", "depthwise", "width", "inverted", "move_up",
        "kernel5", "kernel7", "kernel9", "kernel11", "gelu", "fewer_acts", "fewer_norms", "layernorm",
        "sep_downsample", "convnext_v2",
    )
    side_branches = [s.name for s in roadmap.STEPS if not s.adopted]
    assert side_branches == ["kernel5", "kernel9", "kernel11", "convnext_v2"]


def test_each_step_file_names_itself_and_extends_its_parent():
    for step in roadmap.STEPS:
        cfg = roadmap.compose([f"+step={step.name}"])
        assert cfg.step == step.name
        text = yaml.safe_load((CONF_DIR / "step" / f"{step.name}.yaml").read_text())
        assert text["step"] == step.name


def test_step_order_follows_the_files(tmp_path):
    # The order is read from the files: a new step appended to the chain shows up last without code changes.
    (tmp_path / "step").mkdir()
    for f in (CONF_DIR / "step").glob("*.yaml"):
        (tmp_path / "step" / f.name).write_text(f.read_text())
    (tmp_path / "step" / "extra.yaml").write_text("defaults:\n  - sep_downsample\n  - _self_\nstep: extra\n")
    steps = load_steps(tmp_path)
    assert [s.name for s in steps][-1] == "extra" and steps[-1].adopted
    assert [s.name for s in steps][:-1] == list(roadmap.STEP_NAMES)
    # Marked a side branch in its header, a step is off the adopted path even where it would extend it.
    (tmp_path / "step" / "extra.yaml").write_text("# @branch side\n" + (tmp_path / "step" / "extra.yaml").read_text())
    assert [s.name for s in load_steps(tmp_path) if s.adopted] == list(roadmap.ADOPTED_STEPS)


def test_no_step_is_resnet50_with_the_original_recipe():
    cfg = roadmap.compose([])
    assert (cfg.step, cfg.recipe.name, list(cfg.model.depths)) == ("resnet", "original", [3, 4, 6, 3])


def test_command_line_beats_the_step():
    cfg = roadmap.compose(["+step=sep_downsample", "recipe=original", "model.kernel_size=5"])
    assert (cfg.recipe.name, cfg.model.kernel_size, cfg.model.downsample) == ("original", 5, "separate")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+step=patchyfy"], "step=patchyfy: unknown step; choose one of resnet, modern_recipe"),
        (["+step=kernel7,nope"], "step=nope: unknown step"),
        (["model.block=transformer"], "model.block='transformer': must be one of bottleneck, inverted, move_up"),
        (["model.norm=group"], "model.norm='group': must be one of batch, layer"),
        (["model.act=swish"], "model.act='swish': must be one of relu, gelu"),
        (["model.stem=conv"], "model.stem='conv': must be one of resnet, patchify"),
        (["model.downsample=pool"], "model.downsample='pool': must be one of strided, separate"),
        (["model.kernel_size=4"], "model.kernel_size=4: must be an odd positive integer"),
        (["model.kernel_size=0"], "model.kernel_size=0: must be an odd positive integer"),
        (["model.kernel_size=-3"], "model.kernel_size=-3: must be an odd positive integer"),
        (["model.depths=[3,4,6]"], "model.widths=[64, 128, 256, 512]: must be as long as depths (3 stages)"),
        (["model.widths=[64,0,256,512]"], "model.widths=[64, 0, 256, 512]: must be a non-empty list of positive"),
        (["model.depths=[]", "model.widths=[]"], "model.depths=[]: must be a non-empty list"),
        (["model.drop_path=1.0"], "model.drop_path=1.0: must be in [0, 1)"),
        (["model.drop_path=-0.1"], "model.drop_path=-0.1: must be in [0, 1)"),
        (["model.layer_scale=-1"], "model.layer_scale=-1.0: must be >= 0"),
        (["model.depthwise=maybe"], "model.depthwise='maybe': must be true or false"),
        (["+model.attention=true"], "model.attention: unknown switch"),
        (["data.image_size=16"], "data.image_size=16: must be at least 32 for 4 stages"),
        (["recipe.randaugment_policy=tf"], "recipe.randaugment_policy='tf': must be one of paper, torchvision"),
        (["budget.lr_scaling.adamw=cubic"], "budget.lr_scaling={'sgd': 'linear', 'adamw': 'cubic'}: must be a rule "
                                             "per optimizer, each linear, sqrt, constant"),
        (["budget.layer_scale.adamw=-1e-6"], "budget.layer_scale={'sgd': 0.0, 'adamw': -1e-06}: must be each >= 0"),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_setting(overrides, message):
    with pytest.raises(roadmap.ConfigError) as error:
        roadmap.compose(overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_arguments_fail_before_any_module_is_built():
    with pytest.raises(ValueError, match="kernel_size=2"):
        roadmap.RoadmapNet(kernel_size=2)


def test_zero_init_last_is_the_budgets_choice_for_the_recipes_optimizer():
    assert roadmap.compose([]).model.zero_init_last is True  # SGD on the Fashion-MNIST proxy
    assert roadmap.compose(["+step=gelu"]).model.zero_init_last is False  # AdamW there: torchvision's init
    assert roadmap.compose(["data=imagefolder", "data.root=/data"]).model.zero_init_last is False  # the paper's
    assert roadmap.compose(["budget.zero_init_last.sgd=false"]).model.zero_init_last is False
