"""The roadmap network computed with less work: the same outputs and gradients, up to float rounding.

`speed_up(model)` swaps two kinds of module of a built network for subclasses that skip work; parameters, buffers
and state_dict keys stay as they are (torch.nn.utils.parametrize swaps classes the same way). `roadmap.build_model`
applies it unless given `fast=False`; `plain(model)` swaps the classes back inside a `with` block, so that FLOP
counting traces the network as built.

- A conv that keeps the map size (stride 1, `same` zero padding) skips the kernel taps that can only cover
  padding. With a 32x32 input the last stages see 2x2 and 1x1 maps, smaller than a 3x3 or 7x7 kernel's reach; the
  products of those taps are zeros and their weight gradients stay zero. On a 1x1 map the dense conv that remains
  is a matmul. oneDNN spends up to 50x longer in the backward of the full-size depthwise conv there.
- In eval mode, a BatchNorm right after a conv is folded into it: one pass over the activations instead of two.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def _keeps_size(conv: nn.Conv2d) -> bool:
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
    return (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and (kh, kw) == (2 * ph + 1, 2 * pw + 1))


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`conv` applied to `x` with the given weight and bias, without the taps that reach only padding."""
    if not _keeps_size(conv):
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    (ph, pw), (h, w) = conv.padding, x.shape[-2:]
    rh, rw = min(ph, h - 1), min(pw, w - 1)  # the taps that reach the map
    if (rh, rw) != (ph, pw):
        weight = weight[:, :, ph - rh:ph + rh + 1, pw - rw:pw + rw + 1]
    if h == w == 1 and conv.groups == 1:
        return F.linear(x.flatten(1), weight.flatten(1), bias)[:, :, None, None]
    return F.conv2d(x, weight, bias, 1, (rh, rw), 1, conv.groups)


class CroppedConv2d(nn.Conv2d):
    """nn.Conv2d, stride 1 with `same` zero padding, that skips the kernel taps that can only cover padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv(self, x, self.weight, self.bias)


def _folds(conv: nn.Module, norm: nn.Module | None) -> bool:
    return isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and isinstance(norm, nn.BatchNorm2d)


class BatchNormFoldingSequential(nn.Sequential):
    """nn.Sequential that, in eval mode, folds each BatchNorm into the conv right before it.

    conv(x, w) * s + (beta - mean * s), s = gamma / sqrt(var + eps), equals conv(x, w * s) + (beta - mean * s).
    The folded weight is recomputed on every call (training changes it), so folding happens only where the conv's
    output is larger than its weight (not on the last stages' small maps at 32x32).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        layers, i = list(self), 0
        while i < len(layers):
            layer, norm = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if _folds(layer, norm) and not norm.training and _output_numel(layer, x) > layer.weight.numel():
                scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
                shift = norm.bias - norm.running_mean * scale
                if layer.bias is not None:
                    shift = shift + layer.bias * scale
                x = _conv(layer, x, layer.weight * scale.reshape(-1, 1, 1, 1), shift)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def _output_numel(conv: nn.Conv2d, x: torch.Tensor) -> int:
    (h, w), (sh, sw) = x.shape[-2:], conv.stride
    return x.shape[0] * conv.out_channels * -(-h // sh) * -(-w // sw)


def speed_up(model: nn.Module) -> nn.Module:
    """Swap the fast subclasses into `model`, in place, and return it."""
    for m in model.modules():
        if type(m) is nn.Conv2d and _keeps_size(m):
            m.__class__ = CroppedConv2d
        elif type(m) is nn.Sequential and any(_folds(a, b) for a, b in zip(m, list(m)[1:])):
            m.__class__ = BatchNormFoldingSequential
    return model


@contextmanager
def plain(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, `model` computes as built: each fast module is back in the class it was built as."""
    fast = [(m, type(m)) for m in model.modules() if type(m) in (CroppedConv2d, BatchNormFoldingSequential)]
    for m, cls in fast:
        m.__class__ = cls.__base__
    try:
        yield model
    finally:
        for m, cls in fast:
            m.__class__ = cls
