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


def override_key(override: str) -> str:
    """The key or group an override sets: `+step=gelu` -> `step`."""
    return override.split("=", 1)[0].lstrip("+~")


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
    _validate_training(cfg)


def _validate_training(cfg: DictConfig) -> None:
    """The data, recipe and runtime settings run.py reads."""

    def fail(key: str, allowed: str) -> None:
        raise ConfigError(f"{key}={OmegaConf.select(cfg, key)!r}: must be {allowed}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(f"data.root: required for data={cfg.data.name}; set data.root=<folder>")
    for key in ("recipe.batch", "recipe.base_batch", "recipe.epochs", "runtime.batch_per_device"):
        if not is_int(OmegaConf.select(cfg, key)) or OmegaConf.select(cfg, key) <= 0:
            fail(key, "a positive integer")
    if not is_int(cfg.data.val_size) or cfg.data.val_size <= 0:
        fail("data.val_size", "a positive integer")
    if cfg.data.train_subset is not None and (not is_int(cfg.data.train_subset) or cfg.data.train_subset <= 0):
        fail("data.train_subset", "a positive integer or null (the whole train split)")
    low, high = cfg.data.crop_scale
    if not 0 < low <= high <= 1:
        fail("data.crop_scale", "[min, max] with 0 < min <= max <= 1")
    if not 0 < cfg.data.eval_crop_ratio <= 1:
        fail("data.eval_crop_ratio", "in (0, 1]")
    for key, choices in [("recipe.optimizer", ("sgd", "adamw")), ("recipe.schedule", ("step", "cosine")),
                         ("recipe.interpolation", ("bilinear", "bicubic", "nearest")),
                         ("runtime.amp", ("auto", "bf16", "fp16", "off"))]:
        if OmegaConf.select(cfg, key) not in choices:
            fail(key, f"one of {', '.join(choices)}")
    if not 0 <= cfg.recipe.warmup_epochs < cfg.recipe.reference_epochs:
        fail("recipe.warmup_epochs", f"in [0, recipe.reference_epochs={cfg.recipe.reference_epochs})")
    for key in ("recipe.hflip", "recipe.random_erasing", "recipe.mix_switch_prob"):
        if not 0 <= OmegaConf.select(cfg, key) <= 1:
            fail(key, "a probability in [0, 1]")
    if not 0 <= cfg.recipe.label_smoothing < 1:
        fail("recipe.label_smoothing", "in [0, 1)")
    if not 0 < cfg.recipe.ema_decay < 1:
        fail("recipe.ema_decay", "in (0, 1)")
    if not is_int(cfg.runtime.workers) or cfg.runtime.workers < 0:
        fail("runtime.workers", "an integer >= 0 (0: load in the training process)")


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python run.py <overrides>` runs with, composed and validated."""
    check_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    validate(cfg)
    return cfg
