"""ResNet-50 -> ConvNeXt-T, one design step at a time."""

from torch import nn

from roadmap.config import ConfigError, compose, model_kwargs
from roadmap.model import RoadmapNet
from roadmap.steps import ADOPTED_STEPS, STEP_NAMES, STEPS
from roadmap.weights import load_torchvision_weights


def build_model(model_cfg) -> nn.Module:
    """The network a `model` config (a DictConfig or a plain mapping of RoadmapNet's arguments) describes."""
    return RoadmapNet(**model_kwargs(model_cfg))


__all__ = ["ADOPTED_STEPS", "STEPS", "STEP_NAMES", "ConfigError", "RoadmapNet", "build_model", "compose",
           "load_torchvision_weights"]
