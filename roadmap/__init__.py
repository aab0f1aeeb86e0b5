"""ResNet-50 -> ConvNeXt-T, one design step at a time."""

from torch import nn

from roadmap import steps
from roadmap.config import ConfigError, compose, model_kwargs
from roadmap.fast import speed_up
from roadmap.model import RoadmapNet
from roadmap.weights import load_torchvision_weights


def build_model(model_cfg, *, fast: bool = True) -> nn.Module:
    """The network a `model` config (a DictConfig or a plain mapping of RoadmapNet's arguments) describes.

    `fast` swaps in roadmap.fast's modules, which compute the same outputs and gradients with less work;
    `fast=False` gives the network alone.
    """
    model = RoadmapNet(**model_kwargs(model_cfg))
    return speed_up(model) if fast else model


def __getattr__(name: str):
    # STEPS, STEP_NAMES, ADOPTED_STEPS: read from conf/step/ on first use, not on import.
    if name in steps.LAZY:
        return getattr(steps, name)
    raise AttributeError(f"module 'roadmap' has no attribute {name!r}")


__all__ = ["ADOPTED_STEPS", "STEPS", "STEP_NAMES", "ConfigError", "RoadmapNet", "build_model", "compose",
           "load_torchvision_weights"]
