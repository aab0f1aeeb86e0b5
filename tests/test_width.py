"""`budget.width` sizes every network of the roadmap without changing what any step means: at every width a budget
uses, on both paths, the width step widens by the paper's ratio (exactly where the scaled widths are whole numbers,
else as rounding to the nearest integer gives it), the inverted bottleneck expands 4x and the depthwise conv has one
group per channel."""

import pytest
import yaml
from torch import nn

from roadmap import RoadmapNet, build_model, compose
from roadmap.network.steps import CONF_DIR


def _budget_widths() -> set[float]:
    widths = set()
    for path in (CONF_DIR / "budget").glob("*.yaml"):
        widths.add(compose([f"budget={path.stem}"]).budget.width)
    return widths


def _kxk_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The first block's kxk conv of each stage."""
    return [next(m for m in stage.blocks[0].branch if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1)
            for stage in model.stages]


def _network(roadmap: str, step: str, width: float) -> nn.Module:
    return build_model(compose([f"roadmap={roadmap}", f"+step={step}", f"budget.width={width}"]).model, fast=False)


def test_the_budgets_use_narrower_networks_than_the_paper():
    assert 1.0 in _budget_widths() and min(_budget_widths()) < 1.0
    assert compose(["budget=paper"]).budget.width == 1.0


@pytest.mark.parametrize("roadmap", ["tiny", "base"])
@pytest.mark.parametrize("width", sorted(_budget_widths()))
def test_every_step_keeps_its_meaning_at_every_budget_width(roadmap, width):
    paths = yaml.safe_load((CONF_DIR / "roadmap" / f"{roadmap}.yaml").read_text())

    before, after = (_kxk_convs(_network(roadmap, step, width)) for step in ("depthwise", "width"))
    # the paper's widths, each rounded: the paper's ratio wherever both scale to whole numbers
    for paper_widths, convs in (("stage_ratio_widths", before), ("convnext_widths", after)):
        assert [conv.out_channels for conv in convs] == [round(w * width) for w in paths[paper_widths]]
    assert all(conv.groups == conv.in_channels == conv.out_channels for conv in before + after)  # depthwise

    inverted = _network(roadmap, "inverted", width)
    for stage in inverted.stages:
        conv1, conv3 = (m for m in stage.blocks[0].branch if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))
        assert conv1.out_channels == 4 * conv3.out_channels
    assert inverted.stem.conv.out_channels == round(paths["convnext_widths"][0] * width)


def test_a_width_multiplier_scales_every_width_and_rounds():
    network = RoadmapNet(width_multiplier=0.25)
    assert [stage.blocks[0].branch.conv1.out_channels for stage in network.stages] == [16, 32, 64, 128]
    assert network.head.fc.in_features == 4 * 128
