"""Load torchvision's `resnet50` / `convnext_tiny` weights into the roadmap's two endpoints, and timm's
`convnextv2_tiny` weights into its ConvNeXt V2 side branch."""

import re

import torch
from torch import nn

_RESNET_KEYS = [
    (r"^conv1\.", "stem.conv."),
    (r"^bn1\.", "stem.norm."),
    (r"^layer(\d)\.(\d+)\.conv(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.conv{m[3]}."),
    (r"^layer(\d)\.(\d+)\.bn(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.norm{m[3]}."),
    (r"^layer(\d)\.(\d+)\.downsample\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.shortcut."),
    (r"^fc\.", "head.fc."),
]
# torchvision's ConvNeXt: features = [stem, stage 1, downsample, stage 2, ...]; block = [dwconv, permute, norm,
# linear, gelu, linear, permute]; classifier = [norm, flatten, linear].
_CONVNEXT_KEYS = [
    (r"^features\.0\.0\.", "stem.conv."),
    (r"^features\.0\.1\.", "stem.norm."),
    (r"^features\.(\d+)\.([01])\.(weight|bias)$",
     lambda m: f"stages.{int(m[1]) // 2}.downsample.{m[2]}.{m[3]}" if int(m[1]) % 2 == 0 else m[0]),
    (r"^features\.(\d+)\.(\d+)\.block\.(\d)\.",
     lambda m: f"stages.{int(m[1]) // 2}.blocks.{m[2]}.branch.{ {'0': 'conv1', '2': 'norm1', '3': 'conv2', '5': 'conv3'}[m[3]]}."),
    (r"^features\.(\d+)\.(\d+)\.layer_scale", lambda m: f"stages.{int(m[1]) // 2}.blocks.{m[2]}.layer_scale"),
    (r"^classifier\.0\.", "head.norm."),
    (r"^classifier\.2\.", "head.fc."),
]
# timm's ConvNeXt V2 names stage downsampling and head as ours; block = [conv_dw, norm, mlp.fc1 (a Linear), mlp.act,
# mlp.grn, mlp.fc2 (a Linear)].
_CONVNEXT_V2_BLOCK = {"conv_dw": "conv1", "norm": "norm1", "mlp.fc1": "conv2", "mlp.grn": "grn", "mlp.fc2": "conv3"}
_CONVNEXT_V2_KEYS = [
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.norm."),
    (r"^(stages\.\d+\.blocks\.\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.grn|mlp\.fc2)\.",
     lambda m: f"{m[1]}.branch.{_CONVNEXT_V2_BLOCK[m[2]]}."),
]
_TORCHVISION = {"resnet50": ("fc.weight", _RESNET_KEYS), "convnext_tiny": ("classifier.2.weight", _CONVNEXT_KEYS)}
_TIMM = {"convnextv2_tiny": ("stages.0.blocks.0.mlp.grn.weight", _CONVNEXT_V2_KEYS)}


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        key, n = re.subn(pattern, replacement, key, count=1)
        if n:
            return key
    return key


def load_torchvision_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> str:
    """Copy a torchvision `resnet50` or `convnext_tiny` state dict into `model` and return which one it was.

    Raises ValueError when the state dict is neither, or when `model` is not the matching roadmap endpoint
    (step `resnet` or `sep_downsample` of the tiny roadmap, any class count that matches the classifier).
    """
    return _load(model, state_dict, _TORCHVISION, "a torchvision resnet50 or convnext_tiny")


def load_timm_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> str:
    """Copy a timm `convnextv2_tiny` state dict into step `convnext_v2` of the tiny roadmap; return its name.

    Raises ValueError when the state dict is not one, or when `model` is not that step.
    """
    return _load(model, state_dict, _TIMM, "a timm convnextv2_tiny")


def _load(model: nn.Module, state_dict: dict[str, torch.Tensor], references: dict, description: str) -> str:
    reference = next((name for name, (marker, _) in references.items() if marker in state_dict), None)
    if reference is None:
        raise ValueError(f"not {description} state dict (keys {list(state_dict)[:3]} ...)")
    rules = references[reference][1]
    target = model.state_dict()
    renamed = {_rename(k, rules): v for k, v in state_dict.items()}
    missing, unexpected = sorted(set(target) - set(renamed)), sorted(set(renamed) - set(target))
    if missing or unexpected:
        problems = [f"{len(missing)} of its tensors have no counterpart (first: {missing[0]})"] if missing else []
        if unexpected:
            problems.append(f"{len(unexpected)} of {reference}'s fit nowhere (first: {unexpected[0]})")
        raise ValueError(f"the model is not the roadmap's {reference} endpoint: {'; '.join(problems)}")
    converted = {}
    for key, value in renamed.items():
        if value.dim() == 2 and target[key].dim() == 4:  # a Linear acting on channels -> a 1x1 conv
            value = value[:, :, None, None]
        if value.shape != target[key].shape:
            raise ValueError(
                f"the model is not the roadmap's {reference} endpoint: {key} is {tuple(target[key].shape)} "
                f"but {reference} has {tuple(value.shape)}"
            )
        converted[key] = value
    model.load_state_dict(converted)
    return reference
