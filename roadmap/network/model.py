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
BLOCKS = ("bottleneck", "inverted", "move_up")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
NORMS = ("batch", "layer")
DOWNSAMPLES = ("strided", "separate")
INITS = ("resnet", "convnext")


def make_act(kind: str) -> nn.Module:
    # ReLU in place, as torchvision's: it follows a conv, a norm or the residual add, none of which needs its output.
    return nn.ReLU(inplace=True) if kind == "relu" else ACTIVATIONS[kind]()


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def make_norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else LayerNorm2d(channels, eps=1e-6)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt V2's Global Response Normalization of an NCHW tensor: each channel's L2 norm over the map, over
    the mean of those norms across channels, rescales the channel: y = x + weight * x * norm + bias."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The square root of the summed squares (clamped: a map of zeros has gradient 0, as the norm's), not x.norm,
        # which is slow on CPU on the channels-last maps that the 1x1 conv before hands on (docs/speed.md). Summed in
        # float32 at least, as autocast computes a norm.
        squares = x.to(torch.promote_types(x.dtype, torch.float32)).square()
        norm = squares.sum(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(squares.dtype).tiny).sqrt()
        norm = (norm / (norm.mean(dim=1, keepdim=True) + self.eps)).to(x.dtype)
        return torch.addcmul(self.bias[:, None, None], x, 1 + self.weight[:, None, None] * norm)


def make_stem(kind: str, in_chans: int, width: int, norm: str, act: str, patchify_norm: bool,
              patchify_act: bool) -> nn.Sequential:
    """ResNet's 7x7/2 conv, norm, act and 3x3/2 max pool, or the patchify stem: a 4x4/4 conv [+ norm] [+ act]."""
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
    return nn.Sequential(OrderedDict(layers))


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
    grn: bool
    layer_scale: float

    def out_channels(self, width: int) -> int:
        return width * self.expansion if self.layout == "bottleneck" else width


class Block(nn.Module):
    """y = act(shortcut(x) + drop_path(layer_scale * branch(x))), the last act off with `fewer_acts`.

    The branch is three convs, 1x1 -> kxk -> 1x1 (`bottleneck`, `inverted`) or kxk -> 1x1 -> 1x1 (`move_up`),
    each followed by a norm and, but for the last, an activation, unless `fewer_norms` / `fewer_acts` keep one;
    `grn` puts Global Response Normalization before the last conv, after its activation.
    """

    def __init__(self, opts: BlockOptions, in_channels: int, width: int, stride: int, drop_path: float):
        super().__init__()
        out_channels = opts.out_channels(width)
        hidden = width if opts.layout == "bottleneck" else width * opts.expansion
        if opts.layout == "move_up":
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
            if i == 3 and opts.grn:
                layers.append(("grn", GlobalResponseNorm(cin)))
            groups = cin if (k > 1 and opts.depthwise) else 1
            has_norm = i - 1 in norm_after
            # A conv right before a BatchNorm has no bias, as in torchvision: the norm's shift replaces it.
            bias = not (has_norm and opts.norm == "batch")
            layers.append((f"conv{i}", nn.Conv2d(cin, cout, k, s, padding=k // 2, groups=groups, bias=bias)))
            if has_norm:
                layers.append((f"norm{i}", make_norm(opts.norm, cout)))
            if i - 1 in act_after:
                layers.append((f"act{i}", make_act(opts.act)))
        self.branch = nn.Sequential(OrderedDict(layers))

        if stride != 1 or in_channels != out_channels:
            bias = not (opts.shortcut_norm and opts.norm == "batch")
            projection = [nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias)]
            if opts.shortcut_norm:
                projection.append(make_norm(opts.norm, out_channels))
            self.shortcut = nn.Sequential(*projection)
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
        return self.act(self.shortcut(x) + self.drop_path(branch))


def make_stage(opts: BlockOptions, in_channels: int, width: int, depth: int, downsample: str | None,
               downsample_norm: bool, drop_rates: Sequence[float]) -> nn.Sequential:
    """[separate downsampling: norm + 2x2/2 conv] -> `depth` blocks; `strided` downsampling is the first block's
    stride. `downsample` is None for the first stage, which keeps the stem's resolution."""
    out_channels = opts.out_channels(width)
    layers = []
    if downsample == "separate":
        down = [make_norm(opts.norm, in_channels)] if downsample_norm else []
        layers.append(("downsample", nn.Sequential(*down, nn.Conv2d(in_channels, out_channels, 2, 2))))
        in_channels = out_channels
    stride = 2 if downsample == "strided" else 1
    blocks = [Block(opts, in_channels if j == 0 else out_channels, width, stride if j == 0 else 1, drop_rates[j])
              for j in range(depth)]
    layers.append(("blocks", nn.Sequential(*blocks)))
    return nn.Sequential(OrderedDict(layers))


def make_head(channels: int, num_classes: int, norm: str, head_norm: bool) -> nn.Sequential:
    """Global average pool -> [norm] -> linear classifier."""
    head = [("pool", nn.AdaptiveAvgPool2d(1))]
    if head_norm:
        head.append(("norm", make_norm(norm, channels)))
    head += [("flatten", nn.Flatten(1)), ("fc", nn.Linear(channels, num_classes))]
    return nn.Sequential(OrderedDict(head))


class RoadmapNet(nn.Module):
    """Stem -> stages of blocks -> head."""

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        width_multiplier: float = 1.0,
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
        grn: bool = False,
        layer_scale: float = 0.0,
        drop_path: float = 0.0,
        init: str = "resnet",
        zero_init_last: bool = False,
    ):
        super().__init__()
        check_arguments(
            depths, widths, expansion, in_chans, num_classes, stem, block, kernel_size, act, norm, downsample,
            layer_scale, drop_path, init, width_multiplier=width_multiplier, patchify_norm=patchify_norm,
            patchify_act=patchify_act, depthwise=depthwise, fewer_acts=fewer_acts, fewer_norms=fewer_norms,
            shortcut_norm=shortcut_norm,
            downsample_norm=downsample_norm, head_norm=head_norm, grn=grn, zero_init_last=zero_init_last,
        )
        widths = scaled_widths(widths, width_multiplier)
        opts = BlockOptions(block, expansion, kernel_size, depthwise, act, fewer_acts, norm, fewer_norms,
                            shortcut_norm, grn, layer_scale)
        self.stem = make_stem(stem, in_chans, widths[0], norm, act, patchify_norm, patchify_act)

        drop_rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        stages, channels = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths)):
            stage_rates, drop_rates = drop_rates[:depth], drop_rates[depth:]
            stages.append(make_stage(opts, channels, width, depth, downsample if i > 0 else None, downsample_norm,
                                     stage_rates))
            channels = opts.out_channels(width)
        self.stages = nn.Sequential(*stages)
        self.head = make_head(channels, num_classes, norm, head_norm)
        self._init_weights(init, zero_init_last)

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
                # Each layer after that norm maps zero to zero (zero biases, ReLU/GELU, GRN): the branch starts at 0.
                last_norm = [layer for layer in m.branch if isinstance(layer, (nn.BatchNorm2d, nn.LayerNorm))][-1]
                nn.init.zeros_(last_norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def check_arguments(
    depths: Sequence[int], widths: Sequence[int], expansion: int, in_chans: int, num_classes: int, stem: str,
    block: str, kernel_size: int, act: str, norm: str, downsample: str, layer_scale: float, drop_path: float,
    init: str, width_multiplier: float = 1.0, **flags: bool,
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
    if not width_multiplier > 0:
        fail("width_multiplier", width_multiplier, "> 0")
    if layer_scale < 0:
        fail("layer_scale", layer_scale, ">= 0 (0 turns layer scale off)")
    for name, value in flags.items():
        if not isinstance(value, bool):
            fail(name, value, "true or false")


def scaled_widths(widths: Sequence[int], multiplier: float) -> tuple[int, ...]:
    """Stage widths times `multiplier`, each rounded to the nearest integer (at least 1). The stem takes the first
    stage's width and hidden widths follow from the stages', so every width of the network scales with them."""
    return tuple(max(1, round(width * multiplier)) for width in widths)


def min_input_size(num_stages: int) -> int:
    """Smallest input side every stem and downsampling layer can reduce without reaching zero."""
    return 4 * 2 ** (num_stages - 1)
