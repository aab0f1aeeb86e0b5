"""The roadmap network: one builder whose keyword arguments are the design steps from ResNet-50 to ConvNeXt-T.

Defaults give torchvision's ResNet-50; `conf/step/*.yaml` says which arguments each roadmap step changes.
This module knows nothing of Hydra: every argument is a plain typed value.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

STEMS = ("resnet", "patchify")
BLOCKS = ("bottleneck", "inverted", "moved_up")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
NORMS = ("batch", "layer")
DOWNSAMPLES = ("strided", "separate")
INITS = ("resnet", "convnext")


def make_act(kind: str) -> nn.Module:
    """ReLU works in place, as torchvision's: it always follows a conv, a norm or the residual add, none of which
    needs its output for backward, and a fresh activation-sized tensor per ReLU costs ~10% of a ResNet-50 training
    step on CPU at 224x224 (allocation and page faults)."""
    return nn.ReLU(inplace=True) if kind == "relu" else ACTIVATIONS[kind]()


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor. On a channels_last tensor both permutes are free views."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class BlockConv2d(nn.Conv2d):
    """A block's conv: nn.Conv2d (same arguments, parameters and outputs) that skips work on small feature maps.

    With a 32x32 input the last stages see 2x2 and 1x1 maps, smaller than a 3x3 or 7x7 kernel's reach: the kernel
    taps that can only ever cover zero padding are cut off (their products are zeros, their weight gradients
    stay zero), and on a 1x1 map the dense conv that remains is a matmul (F.linear). oneDNN spends up to 50x
    longer in the backward of the full-size depthwise conv there. Stride-1 odd kernels with `same` zero padding
    only; under tracing (fvcore) the full conv runs, so FLOP counts stay those of nn.Conv2d. It overrides
    nn.Conv2d's `_conv_forward`, so that the weights ConvNormSequential folds a norm into take the same path.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.stride != (1, 1) or self.dilation != (1, 1) or self.padding_mode != "zeros" or torch.jit.is_tracing():
            return super()._conv_forward(x, weight, bias)
        (kh, kw), (ph, pw), (h, w) = self.kernel_size, self.padding, x.shape[-2:]
        if (kh, kw) != (2 * ph + 1, 2 * pw + 1):
            return super()._conv_forward(x, weight, bias)
        rh, rw = min(ph, h - 1), min(pw, w - 1)  # the taps that reach the map
        if (rh, rw) != (ph, pw):
            weight = weight[:, :, ph - rh:ph + rh + 1, pw - rw:pw + rw + 1]
        if h == w == 1 and self.groups == 1:
            return F.linear(x.flatten(1), weight.flatten(1), bias)[:, :, None, None]
        if (rh, rw) == (ph, pw):
            return super()._conv_forward(x, weight, bias)
        return F.conv2d(x, weight, bias, 1, (rh, rw), 1, self.groups)


class ConvNormSequential(nn.Sequential):
    """nn.Sequential that, at inference, folds each BatchNorm into the conv right before it.

    conv(x, w) * s + (beta - mean * s), s = gamma / sqrt(var + eps), equals conv(x, w * s) + (beta - mean * s): one
    pass over the activations instead of two, the same outputs up to float rounding. Folding rewrites the weight on
    every call, so it happens only where the conv's output is larger than its weight (not on the last stages' small
    maps at 32x32). Training runs the two layers, and so does tracing (fvcore), which then counts the norm's FLOPs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.jit.is_tracing():
            return super().forward(x)
        layers = list(self)
        i = 0
        while i < len(layers):
            layer, norm = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if (isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training
                    and _output_numel(layer, x) > layer.weight.numel()):
                scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
                shift = norm.bias - norm.running_mean * scale
                if layer.bias is not None:
                    shift = shift + layer.bias * scale
                x = layer._conv_forward(x, layer.weight * scale.reshape(-1, 1, 1, 1), shift)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def _output_numel(conv: nn.Conv2d, x: torch.Tensor) -> int:
    (h, w), (sh, sw) = x.shape[-2:], conv.stride
    return x.shape[0] * conv.out_channels * -(-h // sh) * -(-w // sw)


def make_norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else LayerNorm2d(channels, eps=1e-6)


@dataclass(frozen=True)
class BlockOptions:
    """What every block of a network shares."""

    layout: str
    expansion: int
    kernel_size: int
    depthwise: bool
    act: str
    fewer_acts: bool
    norm: str
    fewer_norms: bool
    shortcut_norm: bool
    layer_scale: float

    def out_channels(self, width: int) -> int:
        return width * self.expansion if self.layout == "bottleneck" else width


class Block(nn.Module):
    """y = act(shortcut(x) + drop_path(layer_scale * branch(x))), the last act off with `fewer_acts`.

    The branch is three convs, 1x1 -> kxk -> 1x1 (`bottleneck`, `inverted`) or kxk -> 1x1 -> 1x1 (`moved_up`),
    each followed by a norm and, but for the last, an activation, unless `fewer_norms` / `fewer_acts` keep one.
    """

    def __init__(self, opts: BlockOptions, in_channels: int, width: int, stride: int, drop_path: float):
        super().__init__()
        out_channels = opts.out_channels(width)
        hidden = width if opts.layout == "bottleneck" else width * opts.expansion
        if opts.layout == "moved_up":
            convs = [(in_channels, in_channels, opts.kernel_size, stride), (in_channels, hidden, 1, 1),
                     (hidden, out_channels, 1, 1)]
            kxk_index = 0
        else:
            convs = [(in_channels, hidden, 1, 1), (hidden, hidden, opts.kernel_size, stride),
                     (hidden, out_channels, 1, 1)]
            kxk_index = 1
        # With fewer norms, one norm right after the kxk conv; with fewer activations, one before the last conv.
        norm_after = {kxk_index} if opts.fewer_norms else {0, 1, 2}
        act_after = {1} if opts.fewer_acts else {0, 1}

        layers = []
        for i, (cin, cout, k, s) in enumerate(convs, start=1):
            groups = cin if (k > 1 and opts.depthwise) else 1
            has_norm = i - 1 in norm_after
            # A conv right before a BatchNorm has no bias, as in torchvision: the norm's shift replaces it.
            bias = not (has_norm and opts.norm == "batch")
            layers.append((f"conv{i}", BlockConv2d(cin, cout, k, s, padding=k // 2, groups=groups, bias=bias)))
            if has_norm:
                layers.append((f"norm{i}", make_norm(opts.norm, cout)))
            if i - 1 in act_after:
                layers.append((f"act{i}", make_act(opts.act)))
        self.branch = ConvNormSequential(OrderedDict(layers))

        if stride != 1 or in_channels != out_channels:
            bias = not (opts.shortcut_norm and opts.norm == "batch")
            projection = [BlockConv2d(in_channels, out_channels, 1, stride, bias=bias)]
            if opts.shortcut_norm:
                projection.append(make_norm(opts.norm, out_channels))
            self.shortcut = ConvNormSequential(*projection)
        else:
            self.shortcut = nn.Identity()
        self.layer_scale = (
            nn.Parameter(torch.full((out_channels, 1, 1), opts.layer_scale)) if opts.layer_scale > 0 else None
        )
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.act = nn.Identity() if opts.fewer_acts else make_act(opts.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.branch(x)
        if self.layer_scale is not None:
            branch = branch * self.layer_scale
        branch, shortcut = self.drop_path(branch), self.shortcut(x)
        # The residual add in place, as torchvision's: `branch` is a fresh tensor no backward reads (conv, norm,
        # scale and drop path keep their inputs). Not when autocast left the two in different dtypes: that add
        # promotes, and in place it would round the sum to the branch's dtype.
        if branch.dtype == shortcut.dtype:
            return self.act(branch.add_(shortcut))
        return self.act(shortcut + branch)


def check_arguments(
    depths: Sequence[int], widths: Sequence[int], expansion: int, in_chans: int, num_classes: int, stem: str,
    block: str, kernel_size: int, act: str, norm: str, downsample: str, layer_scale: float, drop_path: float,
    init: str, **flags: bool,
) -> None:
    """Raise ValueError, one line naming the argument and what it may be, for arguments no network can honour."""

    def fail(name: str, value, allowed: str) -> None:
        raise ValueError(f"{name}={value!r}: must be {allowed}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for name, value, choices in [("stem", stem, STEMS), ("block", block, BLOCKS), ("act", act, tuple(ACTIVATIONS)),
                                 ("norm", norm, NORMS), ("downsample", downsample, DOWNSAMPLES), ("init", init, INITS)]:
        if value not in choices:
            fail(name, value, f"one of {', '.join(choices)}")
    for name, values in [("depths", depths), ("widths", widths)]:
        if len(values) == 0 or not all(is_int(v) and v > 0 for v in values):
            fail(name, list(values), "a non-empty list of positive integers")
    if len(depths) != len(widths):
        fail("widths", list(widths), f"as long as depths ({len(depths)} stages)")
    for name, value in [("expansion", expansion), ("in_chans", in_chans), ("num_classes", num_classes)]:
        if not is_int(value) or value <= 0:
            fail(name, value, "a positive integer")
    if not is_int(kernel_size) or kernel_size <= 0 or kernel_size % 2 == 0:
        fail("kernel_size", kernel_size, "an odd positive integer")
    if not 0 <= drop_path < 1:
        fail("drop_path", drop_path, "in [0, 1)")
    if layer_scale < 0:
        fail("layer_scale", layer_scale, ">= 0 (0 turns layer scale off)")
    for name, value in flags.items():
        if not isinstance(value, bool):
            fail(name, value, "true or false")


def min_input_size(num_stages: int) -> int:
    """Smallest input side every stem and downsampling layer can reduce without reaching zero."""
    return 4 * 2 ** (num_stages - 1)


class RoadmapNet(nn.Module):
    """Stem -> stages of blocks -> global average pool -> [norm] -> linear classifier."""

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        expansion: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        stem: str = "resnet",
        patchify_norm: bool = True,
        patchify_act: bool = False,
        depthwise: bool = False,
        block: str = "bottleneck",
        kernel_size: int = 3,
        act: str = "relu",
        fewer_acts: bool = False,
        norm: str = "batch",
        fewer_norms: bool = False,
        shortcut_norm: bool = True,
        downsample: str = "strided",
        downsample_norm: bool = True,
        head_norm: bool = False,
        layer_scale: float = 0.0,
        drop_path: float = 0.0,
        init: str = "resnet",
        zero_init_last: bool = False,
    ):
        super().__init__()
        check_arguments(
            depths, widths, expansion, in_chans, num_classes, stem, block, kernel_size, act, norm, downsample,
            layer_scale, drop_path, init, patchify_norm=patchify_norm, patchify_act=patchify_act,
            depthwise=depthwise, fewer_acts=fewer_acts, fewer_norms=fewer_norms, shortcut_norm=shortcut_norm,
            downsample_norm=downsample_norm, head_norm=head_norm, zero_init_last=zero_init_last,
        )
        opts = BlockOptions(block, expansion, kernel_size, depthwise, act, fewer_acts, norm, fewer_norms,
                            shortcut_norm, layer_scale)
        self.stem = self._make_stem(stem, in_chans, widths[0], norm, act, patchify_norm, patchify_act)

        drop_rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        stages, channels = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths)):
            out_channels = opts.out_channels(width)
            layers = []
            if i > 0 and downsample == "separate":
                down = [make_norm(norm, channels)] if downsample_norm else []
                layers.append(("downsample", nn.Sequential(*down, nn.Conv2d(channels, out_channels, 2, 2))))
                channels = out_channels
            stride = 2 if i > 0 and downsample == "strided" else 1
            blocks = []
            for j in range(depth):
                blocks.append(Block(opts, channels, width, stride if j == 0 else 1, drop_rates.pop(0)))
                channels = out_channels
            layers.append(("blocks", nn.Sequential(*blocks)))
            stages.append(nn.Sequential(OrderedDict(layers)))
        self.stages = nn.Sequential(*stages)

        head = [("pool", nn.AdaptiveAvgPool2d(1))]
        if head_norm:
            head.append(("norm", make_norm(norm, channels)))
        head += [("flatten", nn.Flatten(1)), ("fc", nn.Linear(channels, num_classes))]
        self.head = nn.Sequential(OrderedDict(head))
        self._init_weights(init, zero_init_last)

    @staticmethod
    def _make_stem(kind: str, in_chans: int, width: int, norm: str, act: str, patchify_norm: bool,
                   patchify_act: bool) -> ConvNormSequential:
        if kind == "resnet":
            has_norm, has_act, conv = True, True, nn.Conv2d(in_chans, width, 7, 2, padding=3, bias=norm != "batch")
        else:
            has_norm, has_act = patchify_norm, patchify_act
            conv = nn.Conv2d(in_chans, width, 4, 4, bias=not (has_norm and norm == "batch"))
        layers = [("conv", conv)]
        if has_norm:
            layers.append(("norm", make_norm(norm, width)))
        if has_act:
            layers.append(("act", make_act(act)))
        if kind == "resnet":
            layers.append(("pool", nn.MaxPool2d(3, 2, padding=1)))
        return ConvNormSequential(OrderedDict(layers))

    def _init_weights(self, init: str, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "convnext":
                    nn.init.trunc_normal_(m.weight, std=0.02)
                elif isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None and (init == "convnext" or isinstance(m, nn.Conv2d)):
                    nn.init.zeros_(m.bias)
            if zero_init_last and isinstance(m, Block):
                # Every layer after that norm maps zero to zero (zero biases, ReLU/GELU): the branch starts at 0.
                last_norm = [layer for layer in m.branch if isinstance(layer, (nn.BatchNorm2d, nn.LayerNorm))][-1]
                nn.init.zeros_(last_norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
