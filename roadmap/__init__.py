"""ResNet-50 -> ConvNeXt-T, one design step at a time.

The package in layers, each importing only those below it: roadmap.errors and roadmap.files (bottom),
roadmap.network, roadmap.config, roadmap.records, roadmap.training; this module, the public API; roadmap.machines,
which uses it (tests/test_layers.py checks the direction).
"""

from roadmap.config import ConfigError, build_model, compose
from roadmap.network import steps
from roadmap.network.model import RoadmapNet
from roadmap.network.weights import load_torchvision_weights


def __getattr__(name: str):
    # STEPS, STEP_NAMES, ADOPTED_STEPS: read from conf/step/ on first use, not on import.
    if name in steps.LAZY:
        return getattr(steps, name)
    raise AttributeError(f"module 'roadmap' has no attribute {name!r}")


__all__ = ["ADOPTED_STEPS", "STEPS", "STEP_NAMES", "ConfigError", "RoadmapNet", "build_model", "compose",
           "load_torchvision_weights"]
