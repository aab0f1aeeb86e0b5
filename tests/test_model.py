"""The roadmap network: both endpoints equal torchvision and the ConvNeXt V2 branch timm, every step costs what the
paper says and changes exactly what its name says, and every path builds, runs forward and backward."""

import copy

import pytest
import timm
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

import roadmap
from roadmap.network import fast
from roadmap.network.fast import CroppedConv2d
from roadmap.network.flops import count_cost
from roadmap.network.model import Block, GlobalResponseNorm, LayerNorm2d
from roadmap.network.weights import load_timm_weights

# The paper's GFLOPs (Table 10 / Figure 2), its two misprints corrected as analysis/paper_roadmap.csv notes them.
PAPER_GFLOPS = {
    "resnet": 4.09, "modern_recipe": 4.09, "stage_ratio": 4.53, "patchify": 4.42, "depthwise": 2.35, "width": 5.27,
    "inverted": 4.64, "move_up": 4.07, "kernel5": 4.10, "kernel7": 4.15, "kernel9": 4.21, "kernel11": 4.29,
    "gelu": 4.15, "fewer_acts": 4.15, "fewer_norms": 4.15, "layernorm": 4.15, "sep_downsample": 4.46,
}
IMAGENET = ["data.channels=3", "data.mean=[0.485,0.456,0.406]", "data.std=[0.229,0.224,0.225]",
            "data.num_classes=1000", "data.image_size=224", "budget=paper"]


def imagenet_model(step: str, path: str = "tiny") -> nn.Module:
    return roadmap.build_model(roadmap.compose([f"roadmap={path}", f"+step={step}", *IMAGENET]).model)


def test_every_step_of_the_paper_has_a_paper_gflops_entry():
    # The paper's steps: the adopted path and the branches off it before its end; a branch off ConvNeXt itself
    # (convnext_v2) goes past the paper.
    last = roadmap.ADOPTED_STEPS[-1]
    assert set(PAPER_GFLOPS) == {s.name for s in roadmap.STEPS if s.adopted or s.parent != last}


@pytest.mark.parametrize("fast_path", [False, True])
@pytest.mark.parametrize(
    "step, reference", [("resnet", torchvision.models.resnet50), ("sep_downsample", torchvision.models.convnext_tiny)]
)
def test_endpoint_equals_torchvision(step, reference, fast_path):
    torch.manual_seed(0)
    cfg = roadmap.compose([f"+step={step}", *IMAGENET])
    ours, theirs = roadmap.build_model(cfg.model, fast=fast_path).eval(), reference().eval()
    assert roadmap.load_torchvision_weights(ours, theirs.state_dict()) == reference.__name__
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("fast_path", [False, True])
def test_convnext_v2_equals_timm(fast_path):
    torch.manual_seed(0)
    cfg = roadmap.compose(["+step=convnext_v2", *IMAGENET])
    ours, theirs = roadmap.build_model(cfg.model, fast=fast_path).eval(), timm.create_model("convnextv2_tiny").eval()
    with torch.no_grad():  # timm starts GRN, norms and biases as constants: made distinct, a misplaced one shows
        for p in theirs.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.5)
    assert load_timm_weights(ours, theirs.state_dict()) == "convnextv2_tiny"
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_global_response_norm_has_the_papers_outputs_and_gradients(memory_format):
    torch.manual_seed(0)
    grn = GlobalResponseNorm(6).double()
    with torch.no_grad():
        grn.weight.normal_(), grn.bias.normal_()
    x = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    x[0, 2] = 0  # a map of zeros: its gradient is 0, as the norm's, not NaN
    x = x.contiguous(memory_format=memory_format)

    def papers(x):  # ConvNeXt V2's GRN (its channels-last form, here on NCHW)
        gx = torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + grn.eps)
        return grn.weight[:, None, None] * (x * nx) + grn.bias[:, None, None] + x

    results = []
    for forward in (grn, papers):
        grn.zero_grad()
        inputs = x.clone().requires_grad_()
        out = forward(inputs)
        out.square().sum().backward()
        results.append([out, inputs.grad, grn.weight.grad.clone(), grn.bias.grad.clone()])
    for ours, theirs in zip(*results, strict=True):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, theirs)


def test_loading_weights_into_another_step_fails_clearly():
    with pytest.raises(ValueError, match="not the roadmap's convnext_tiny endpoint"):
        roadmap.load_torchvision_weights(imagenet_model("layernorm"), torchvision.models.convnext_tiny().state_dict())
    with pytest.raises(ValueError, match="not the roadmap's resnet50 endpoint"):
        roadmap.load_torchvision_weights(imagenet_model("resnet", "base"), torchvision.models.resnet50().state_dict())
    with pytest.raises(ValueError, match="not a torchvision resnet50 or convnext_tiny"):
        roadmap.load_torchvision_weights(imagenet_model("resnet"), torchvision.models.squeezenet1_0().state_dict())
    with pytest.raises(ValueError, match="not the roadmap's convnextv2_tiny endpoint"):
        load_timm_weights(imagenet_model("sep_downsample"), timm.create_model("convnextv2_tiny").state_dict())
    with pytest.raises(ValueError, match="not a timm convnextv2_tiny"):
        load_timm_weights(imagenet_model("convnext_v2"), torchvision.models.convnext_tiny().state_dict())


def test_resnet18_state_dict_does_not_load_into_resnet50():
    # resnet18 has the resnet keys but other blocks: rejected by key set, not silently half-loaded.
    with pytest.raises(ValueError, match="not the roadmap's resnet50 endpoint: \\d+ of its tensors have no counterpart"):
        roadmap.load_torchvision_weights(imagenet_model("resnet"), torchvision.models.resnet18().state_dict())


@pytest.mark.parametrize("step", list(PAPER_GFLOPS))
def test_gflops_match_the_paper(step):
    cost = count_cost(imagenet_model(step), in_chans=3, size=224)
    assert cost["gflops_conv_linear"] == pytest.approx(PAPER_GFLOPS[step], abs=0.01)
    assert cost["gflops"] > cost["gflops_conv_linear"]  # fvcore's total adds norms and pooling


def _blocks(model: nn.Module) -> list[Block]:
    return [m for m in model.modules() if isinstance(m, Block)]


def _types(modules) -> list[type]:
    return [type(m) for m in modules]


def _kxk_convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for b in _blocks(model) for m in b.branch if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _stage_depths(model) -> list[int]:
    return [len(stage.blocks) for stage in model.stages]


def _check_stage_ratio(before, after, path):
    expected = {"tiny": [3, 3, 9, 3], "base": [3, 3, 27, 3]}[path]
    assert _stage_depths(after) == expected != _stage_depths(before)
    assert _types(before.stem) == _types(after.stem)


def _check_patchify(before, after, path):
    assert after.stem.conv.kernel_size == after.stem.conv.stride == (4, 4)
    assert before.stem.conv.kernel_size == (7, 7)
    assert _types(after.stem) == [nn.Conv2d, nn.BatchNorm2d]  # keeps the norm, drops activation and pooling
    assert _types(after.stages) == _types(before.stages)


def _check_depthwise(before, after, path):
    assert all(c.groups == 1 for c in _kxk_convs(before))
    assert all(c.groups == c.in_channels == c.out_channels for c in _kxk_convs(after))
    assert len(_kxk_convs(after)) == len(_kxk_convs(before))


def _check_width(before, after, path):
    assert after.stem.conv.out_channels > before.stem.conv.out_channels
    assert _stage_depths(before) == _stage_depths(after)
    assert [b.branch.conv3.out_channels for b in _blocks(after)] == [
        b.branch.conv3.out_channels * after.stem.conv.out_channels // before.stem.conv.out_channels
        for b in _blocks(before)
    ]


def _check_inverted(before, after, path):
    for b_before, b_after in zip(_blocks(before), _blocks(after)):
        # bottleneck: wide -> narrow -> wide residual; inverted: narrow residual -> 4x wide kxk -> narrow
        assert b_after.branch.conv1.out_channels == 4 * b_after.branch.conv3.out_channels
        assert b_before.branch.conv3.out_channels == 4 * b_before.branch.conv1.out_channels
        assert b_after.branch.conv2.kernel_size == b_before.branch.conv2.kernel_size


def _check_move_up(before, after, path):
    for b_before, b_after in zip(_blocks(before), _blocks(after)):
        assert b_before.branch.conv2.groups > 1 and b_before.branch.conv1.kernel_size == (1, 1)
        assert b_after.branch.conv1.groups == b_after.branch.conv1.in_channels > 1  # depthwise conv first
        assert b_after.branch.conv1.out_channels == b_after.branch.conv1.in_channels  # on Cin, not 4*Cout


def _kernel_check(k):
    def check(before, after, path):
        assert {c.kernel_size for c in _kxk_convs(before)} == {(3, 3)}
        assert {c.kernel_size for c in _kxk_convs(after)} == {(k, k)}
        assert [c.padding for c in _kxk_convs(after)] == [(k // 2, k // 2)] * len(_kxk_convs(after))
    return check


def _check_gelu(before, after, path):
    assert _count(after, nn.ReLU) == 0 and _count(after, nn.GELU) == _count(before, nn.ReLU)


def _check_fewer_acts(before, after, path):
    assert all(_count(b, nn.GELU) == 3 for b in _blocks(before))  # two in the branch, one after the add
    for b in _blocks(after):
        assert _count(b, nn.GELU) == 1 and isinstance(b.act, nn.Identity)
        names = list(b.branch._modules)
        assert names.index("act2") == names.index("conv3") - 1  # between the two 1x1 convs


def _check_fewer_norms(before, after, path):
    assert all(_count(b.branch, nn.BatchNorm2d) == 3 for b in _blocks(before))
    for b in _blocks(after):
        names = list(b.branch._modules)
        assert [n for n in names if n.startswith("norm")] == ["norm1"] and names.index("norm1") == 1
    assert _count(after, nn.BatchNorm2d) == _count(before, nn.BatchNorm2d) - 2 * len(_blocks(before))


def _check_layernorm(before, after, path):
    assert _count(after, nn.BatchNorm2d) == 0
    assert _count(after, LayerNorm2d) == _count(before, nn.BatchNorm2d)
    assert all(m.eps == 1e-6 for m in after.modules() if isinstance(m, LayerNorm2d))


def _check_sep_downsample(before, after, path):
    assert [hasattr(s, "downsample") for s in after.stages] == [False, True, True, True]
    assert not any(hasattr(s, "downsample") for s in before.stages)
    assert {c.stride for c in _kxk_convs(before)} == {(1, 1), (2, 2)}
    assert {c.stride for c in _kxk_convs(after)} == {(1, 1)}  # every block keeps its resolution
    assert all(_types(s.downsample) == [LayerNorm2d, nn.Conv2d] for s in list(after.stages)[1:])
    assert _types(after.head) == [nn.AdaptiveAvgPool2d, LayerNorm2d, nn.Flatten, nn.Linear]
    assert all(b.layer_scale is not None for b in _blocks(after))
    assert all(b.layer_scale is None for b in _blocks(before))


def _check_convnext_v2(before, after, path):
    for b_before, b_after in zip(_blocks(before), _blocks(after), strict=True):
        names = list(b_after.branch._modules)
        assert names[names.index("grn") - 1:names.index("grn") + 2] == ["act2", "grn", "conv3"]
        assert b_after.branch.grn.weight.numel() == b_after.branch.conv3.in_channels  # on the 4x hidden width
        assert b_before.layer_scale is not None and b_after.layer_scale is None
    assert _count(before, GlobalResponseNorm) == 0
    assert _types(before.stem) == _types(after.stem) and _types(before.head) == _types(after.head)


def _check_same_network(before, after, path):
    assert str(before) == str(after)


STEP_CHANGES = {
    "modern_recipe": _check_same_network, "stage_ratio": _check_stage_ratio, "patchify": _check_patchify,
    "depthwise": _check_depthwise, "width": _check_width, "inverted": _check_inverted, "move_up": _check_move_up,
    "kernel5": _kernel_check(5), "kernel7": _kernel_check(7), "kernel9": _kernel_check(9),
    "kernel11": _kernel_check(11), "gelu": _check_gelu, "fewer_acts": _check_fewer_acts,
    "fewer_norms": _check_fewer_norms, "layernorm": _check_layernorm, "sep_downsample": _check_sep_downsample,
    "convnext_v2": _check_convnext_v2,
}


def test_every_step_has_a_change_check():
    assert set(STEP_CHANGES) == set(roadmap.STEP_NAMES) - {"resnet"}


@pytest.mark.parametrize("path", ["tiny", "base"])
@pytest.mark.parametrize("step", [s.name for s in roadmap.STEPS if s.parent])
def test_step_changes_what_its_name_says(step, path):
    parent = next(s.parent for s in roadmap.STEPS if s.name == step)
    before, after = imagenet_model(parent, path), imagenet_model(step, path)
    STEP_CHANGES[step](before, after, path)
    cfg_before = roadmap.compose([f"roadmap={path}", f"+step={parent}"])
    cfg_after = roadmap.compose([f"roadmap={path}", f"+step={step}"])
    assert (cfg_before.recipe.name, cfg_after.recipe.name) == (
        ("original", "modern") if step == "modern_recipe" else (cfg_after.recipe.name,) * 2
    )


def test_paths_end_at_convnext_t_and_b():
    tiny = roadmap.compose(["+step=sep_downsample"]).model
    base = roadmap.compose(["roadmap=base", "+step=sep_downsample"]).model
    assert (list(tiny.depths), list(tiny.widths), tiny.drop_path) == ([3, 3, 9, 3], [96, 192, 384, 768], 0.1)
    assert (list(base.depths), list(base.widths), base.drop_path) == ([3, 3, 27, 3], [128, 256, 512, 1024], 0.5)
    assert list(roadmap.compose(["roadmap=base"]).model.depths) == [3, 24, 36, 3]  # ResNet-200


@pytest.mark.parametrize("path", ["tiny", "base"])
@pytest.mark.parametrize("step", roadmap.STEP_NAMES)
def test_every_step_trains_at_32_and_224(step, path):
    # Batch 1 at 224 keeps ResNet-200 affordable; BatchNorm still sees 7x7 values per channel in the last stage.
    for size, data, classes, batch in [(32, [], 10, 2), (224, IMAGENET[:3], 7, 1)]:
        cfg = roadmap.compose([f"roadmap={path}", f"+step={step}", *data, f"data.num_classes={classes}",
                               f"data.image_size={size}"])
        in_chans = cfg.data.channels
        model = roadmap.build_model(cfg.model).train()
        logits = model(torch.randn(batch, in_chans, size, size))
        assert logits.shape == (batch, classes)
        logits.logsumexp(1).mean().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_single_switches_compose_off_the_path():
    # ResNet-50 plus only LayerNorm; ConvNeXt-T minus only the large kernel.
    resnet_ln = roadmap.build_model(roadmap.compose(["model.norm=layer"]).model)
    assert _count(resnet_ln, nn.BatchNorm2d) == 0 and _count(resnet_ln, LayerNorm2d) > 0
    small_kernel = roadmap.compose(["+step=sep_downsample", "model.kernel_size=3"]).model
    assert small_kernel.kernel_size == 3 and small_kernel.downsample == "separate"


def test_separate_downsampling_without_norms_stays_reachable():
    model = roadmap.build_model(roadmap.compose(
        ["+step=sep_downsample", "model.downsample_norm=false", "model.head_norm=false",
         "model.patchify_norm=false"]).model)
    assert all(_types(s.downsample) == [nn.Conv2d] for s in list(model.stages)[1:])
    assert _types(model.stem) == [nn.Conv2d]


def test_drop_path_rises_linearly_over_blocks():
    model = roadmap.build_model(roadmap.compose(["+step=sep_downsample"]).model)
    rates = [b.drop_path.p for b in _blocks(model)[1:]]
    assert rates[-1] == pytest.approx(0.1) and rates == sorted(rates) and isinstance(_blocks(model)[0].drop_path, nn.Identity)


def test_config_is_plain_keyword_arguments():
    cfg = roadmap.compose(["+step=kernel9"])
    kwargs = roadmap.config.model_kwargs(cfg.model)
    assert kwargs["kernel_size"] == 9 and isinstance(kwargs["depths"], tuple)
    assert OmegaConf.is_config(cfg)
    assert str(roadmap.RoadmapNet(**kwargs)) == str(roadmap.build_model(cfg.model, fast=False))


@pytest.mark.parametrize("groups", [1, 8])
@pytest.mark.parametrize("size", [1, 2, 3, 9])
def test_cropped_conv_equals_full_conv_on_small_maps(size, groups):
    torch.manual_seed(0)
    full = nn.Conv2d(8, 16, 7, padding=3, groups=groups)
    cropped = fast.speed_up(copy.deepcopy(full))
    assert isinstance(cropped, CroppedConv2d)
    x = torch.randn(2, 8, size, size)
    torch.testing.assert_close(cropped(x), full(x))
    cropped(x).square().sum().backward()
    full(x).square().sum().backward()
    torch.testing.assert_close(cropped.weight.grad, full.weight.grad)


def _outputs_and_gradients(model: nn.Module, x: torch.Tensor, train: bool) -> list[torch.Tensor]:
    model.train(train).zero_grad()
    torch.manual_seed(1)  # the same drop-path draws
    out = model(x)
    out.square().sum().backward()
    return [out] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("step", ["resnet", "depthwise", "move_up", "fewer_norms", "sep_downsample"])
def test_fast_path_changes_no_outputs_and_no_gradients(step):
    # At 32x32 the last stage's maps are 1x1: every kxk conv there is cropped, and in eval mode BatchNorms fold.
    # In float64: in float32 train-mode BatchNorm over 4 values per channel magnifies the rounding to ~1e-4.
    torch.manual_seed(0)
    model = roadmap.build_model(roadmap.compose([f"+step={step}"]).model).double()
    assert _count(model, CroppedConv2d) > 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # trained-looking statistics, not the identity ones of a fresh norm
            for tensor in (m.weight, m.bias, m.running_mean):
                nn.init.normal_(tensor.data, 0.0, 0.5)
            m.running_var.data.uniform_(0.5, 2.0)
    x = torch.randn(4, 1, 32, 32, dtype=torch.float64)
    for train in (False, True):  # eval first: training updates the running statistics
        fast_path = _outputs_and_gradients(model, x, train)
        with fast.plain(model):
            assert _count(model, CroppedConv2d) == 0
            plain = _outputs_and_gradients(model, x, train)
        for a, b in zip(fast_path, plain, strict=True):
            torch.testing.assert_close(a, b)


def test_flops_are_counted_on_the_network_as_built():
    cfg = roadmap.compose(["+step=sep_downsample"])
    fast_model, plain_model = roadmap.build_model(cfg.model), roadmap.build_model(cfg.model, fast=False)
    assert count_cost(fast_model, 1, 32) == count_cost(plain_model, 1, 32)
    assert _count(fast_model, CroppedConv2d) > 0 == _count(plain_model, CroppedConv2d)  # swapped back after counting


@pytest.mark.parametrize("step", ["resnet", "inverted", "fewer_norms", "layernorm", "sep_downsample", "convnext_v2"])
def test_zero_init_last_starts_every_residual_branch_at_zero(step):
    def branch_outputs(model: nn.Module) -> list[torch.Tensor]:
        outputs = []
        for block in _blocks(model):
            block.branch.register_forward_hook(lambda module, args, out: outputs.append(out))
        model(torch.randn(2, 1, 32, 32)).square().sum().backward()
        return outputs

    torch.manual_seed(0)
    overrides = [f"+step={step}", "model.drop_path=0.0"]
    model = roadmap.build_model(roadmap.compose([*overrides, "model.zero_init_last=true"]).model).train()
    assert not any(out.any() for out in branch_outputs(model))
    # The zeroed scales still learn: the branches do not stay at zero.
    last_norms = [[m for m in b.branch if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))][-1]
                  for b in _blocks(model)]
    assert all(not norm.weight.any() and norm.weight.grad.any() for norm in last_norms)
    unzeroed = roadmap.build_model(roadmap.compose([*overrides, "model.zero_init_last=false"]).model)
    assert all(out.any() for out in branch_outputs(unzeroed))
