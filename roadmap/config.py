"""Hydra composition and validation: the one place that turns `conf/` plus overrides into a checked config."""

import re
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from typing import get_args, get_origin, get_type_hints

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from roadmap import model as model_lib
from roadmap import schema, steps
from roadmap.steps import CONF_DIR


class ConfigError(ValueError):
    """A run that cannot be set up as configured (a setting, or the data or device it names); the message is one
    line naming the setting and what it may be. The one exception type of setup errors: run.py prints it, no
    traceback, and exits with status 2 (or records the job as failed, when only the job could find it)."""


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested mapping as one level of dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
            if value not in steps.STEP_NAMES:
                raise ConfigError(f"step={value}: unknown step; choose one of {', '.join(steps.STEP_NAMES)}")


def model_kwargs(model_cfg: DictConfig) -> dict:
    """The model config as plain keyword arguments of `RoadmapNet` (lists become tuples)."""
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def validate(cfg: DictConfig) -> DictConfig:
    """The config typed by `roadmap.schema`; ConfigError, one line naming the setting, for any setting the run
    could not honour. Nothing is built or written."""
    for group, variants in (("data", schema.DATA), ("recipe", schema.RECIPES)):
        if cfg[group].get("name") not in variants:
            raise ConfigError(f"{group}.name={cfg[group].get('name')!r}: must be one of {', '.join(variants)}")
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(f"data.root: required for data={cfg.data.name}; set data.root=<folder>")
    layout = schema.Config(data=schema.DATA[cfg.data.name](), recipe=schema.RECIPES[cfg.recipe.name]())
    try:
        typed = OmegaConf.merge(OmegaConf.structured(layout), cfg)
        _check_ranges(OmegaConf.to_object(typed))  # resolves every interpolation, checking its type
    except OmegaConfBaseException as e:
        raise ConfigError(_schema_error(layout, e)) from None
    _check_model(typed)
    _check_together(typed)
    return typed


def _check_ranges(node, prefix: str = "") -> None:
    for f in fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            _check_ranges(value, f"{key}.")
        elif "check" in f.metadata and not f.metadata["check"].holds(value):
            raise ConfigError(f"{key}={value!r}: must be {f.metadata['check'].allowed}")


def _schema_error(layout: schema.Config, error: OmegaConfBaseException) -> str:
    """OmegaConf's error as one line: the setting, its value and the type the schema gives it."""
    key = error.full_key
    if isinstance(error, ConfigKeyError):
        if key.startswith("model."):
            return f"{key}: unknown switch; the switches are those of conf/model/resnet.yaml"
        return f"{key}: unknown setting; the settings are those of roadmap/schema.py"
    if isinstance(error, MissingMandatoryValue):
        return f"{key}: missing; set {key}=<value>"
    if isinstance(error, ValidationError):
        return f"{key}={error.value!r}: must be {_type_words(_field_type(layout, key))}"
    return f"{key}: {error.msg.splitlines()[0]}"  # e.g. an interpolation to a key that does not exist


def _field_type(layout: schema.Config, key: str):
    """The annotation of `key` (`model.depths[0]`: an element of a list) in the schema."""
    node = type(layout)
    for name, index in re.findall(r"(\w+)|\[(\d+)\]", key):
        node = _not_none(node)
        node = get_args(node)[-1] if index else get_type_hints(node)[name]
        if node is schema.Data or node is schema.Recipe:
            node = type(getattr(layout, name))
    return node


def _not_none(annotation):
    """`X` for `X | None`."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if type(None) in get_args(annotation) else annotation


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _type_words(annotation) -> str:
    if _not_none(annotation) is not annotation:
        return f"{_type_words(_not_none(annotation))} or null"
    if get_origin(annotation) is list:
        return f"a list of {_type_words(get_args(annotation)[0]).removeprefix('a ').removeprefix('an ')}s"
    if get_origin(annotation) is dict or is_dataclass(annotation):
        return "a mapping"
    return _TYPE_WORDS.get(annotation, str(annotation))


def _check_model(cfg: DictConfig) -> None:
    kwargs = model_kwargs(cfg.model)
    try:
        model_lib.check_arguments(**kwargs)
    except ValueError as e:
        raise ConfigError(f"model.{e}") from None
    for switch, data_key in (("in_chans", "channels"), ("num_classes", "num_classes")):
        if kwargs[switch] != cfg.data[data_key]:
            raise ConfigError(f"model.{switch}={kwargs[switch]}: must equal data.{data_key}={cfg.data[data_key]} "
                              f"(data={cfg.data.name}); leave it unset, it follows the data")
    smallest = model_lib.min_input_size(len(kwargs["depths"]))
    if cfg.data.image_size < smallest:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size}: must be at least {smallest} for {len(kwargs['depths'])} stages"
        )


def _check_together(cfg: DictConfig) -> None:
    """Settings that constrain each other."""
    for key in ("mean", "std"):
        if len(cfg.data[key]) != cfg.data.channels:
            raise ConfigError(f"data.{key}={list(cfg.data[key])}: must hold one value per channel "
                              f"(data.channels={cfg.data.channels})")
    if cfg.recipe.optimizer not in cfg.budget.lr_scaling:
        raise ConfigError(f"budget.lr_scaling={dict(cfg.budget.lr_scaling)}: must give a rule for "
                          f"recipe.optimizer={cfg.recipe.optimizer}")
    if not cfg.recipe.warmup_epochs < cfg.recipe.reference_epochs:
        raise ConfigError(f"recipe.warmup_epochs={cfg.recipe.warmup_epochs}: must be less than "
                          f"recipe.reference_epochs={cfg.recipe.reference_epochs}")


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python run.py <overrides>` runs with, composed and validated."""
    check_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return validate(cfg)
