"""Hydra composition and validation: the one place that turns `conf/` plus overrides into a checked config."""

from collections.abc import Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from roadmap import model as model_lib
from roadmap.steps import CONF_DIR, STEP_NAMES


class ConfigError(ValueError):
    """A setting that cannot be honoured; the message is one line naming the setting and what it may be."""


def check_overrides(overrides: Sequence[str]) -> None:
    """Reject an unknown `+step=` before Hydra does (Hydra's own error spans many lines)."""
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.key_or_group != "step" or override.is_delete():
            continue
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value not in STEP_NAMES:
                raise ConfigError(f"step={value}: unknown step; choose one of {', '.join(STEP_NAMES)}")


def model_kwargs(model_cfg: DictConfig) -> dict:
    """The model config as plain keyword arguments of `RoadmapNet` (lists become tuples)."""
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for any setting the run could not honour, before anything is built or written."""
    kwargs = model_kwargs(cfg.model)
    unknown = set(kwargs) - set(model_lib.RoadmapNet.__init__.__kwdefaults__)
    if unknown:
        raise ConfigError(f"model.{sorted(unknown)[0]}: unknown switch; the switches are those of conf/model/resnet.yaml")
    try:
        model_lib.check_arguments(**kwargs)
    except ValueError as e:
        raise ConfigError(f"model.{e}") from None
    smallest = model_lib.min_input_size(len(kwargs["depths"]))
    if cfg.data.image_size < smallest:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size}: must be at least {smallest} for {len(kwargs['depths'])} stages"
        )


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python run.py <overrides>` runs with, composed and validated."""
    check_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    validate(cfg)
    return cfg
