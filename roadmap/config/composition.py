"""Hydra composition and validation: the one place that turns `conf/` plus overrides into a checked config."""

import difflib
import os
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, InterpolationResolutionError,
                              MissingMandatoryValue, OmegaConfBaseException, ValidationError)

from torch import nn

from roadmap.config import schema
from roadmap.errors import ConfigError
from roadmap.network import model as model_lib
from roadmap.network import steps
from roadmap.network.fast import speed_up
from roadmap.network.steps import CONF_DIR


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


def expand_home(override: str) -> str:
    """`key=~/data` -> `key=/home/me/data`: Hydra's override grammar takes no `~`, and the shell expands none after
    `key=`."""
    match = re.fullmatch(r"(\+{0,2}[A-Za-z_][\w.@/-]*=)(~[^,]*)", override)
    return match[1] + os.path.expanduser(match[2]) if match else override


def parse_overrides(overrides: Sequence[str]) -> list[Override]:
    """The overrides as Hydra parses them; ConfigError naming one it cannot parse."""
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as e:
        raise ConfigError(f"{e.override}: not an override Hydra can parse; quote a value that holds spaces or "
                          f"special characters (key='a value')") from None


def _searchpath(overrides: Sequence[str]) -> list[str]:
    """The entries of a `hydra.searchpath=[...]` override (Hydra reads the first)."""
    return next((o.value() for o in parse_overrides(overrides) if o.get_key_element() == "hydra.searchpath"), [])


def user_config_dirs(overrides: Sequence[str], config_dir: str | Path | None = None) -> list[Path]:
    """The folders of the user's own configs on Hydra's search path: `config_dir` (`--config-dir`), then the
    folders of a `hydra.searchpath=[file://DIR,...]` override."""
    named = [("--config-dir", str(config_dir))] if config_dir is not None else []
    named += [("hydra.searchpath", entry.removeprefix("file://")) for entry in _searchpath(overrides)
              if "://" not in entry or entry.startswith("file://")]
    for setting, folder in named:
        if not Path(folder).is_dir():
            raise ConfigError(f"{setting}: {folder}: no such folder")
    return [Path(folder) for _, folder in named]


def _check_steps(overrides: Sequence[str], step_names: Sequence[str]) -> None:
    """Reject an unknown `+step=` before Hydra does (Hydra's own error spans many lines)."""
    for override in parse_overrides(overrides):
        if override.key_or_group != "step" or override.is_delete():
            continue
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value not in step_names:
                raise ConfigError(f"step={value}: unknown step; choose one of {', '.join(step_names)}")


def model_kwargs(model_cfg: DictConfig) -> dict:
    """The model config as plain keyword arguments of `RoadmapNet` (lists become tuples)."""
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def build_model(model_cfg, *, fast: bool = True) -> nn.Module:
    """The network a `model` config (a DictConfig or a plain mapping of RoadmapNet's arguments) describes.

    `fast` swaps in roadmap.network.fast's modules, which compute the same outputs and gradients with less work;
    `fast=False` gives the network alone.
    """
    model = model_lib.RoadmapNet(**model_kwargs(model_cfg))
    return speed_up(model) if fast else model


def input_overrides(in_chans: int, num_classes: int, size: int) -> list[str]:
    """Overrides for a model of this input and output: the data's channels (with a mean and std per channel, which
    the model never sees), classes and image size."""
    per_channel = "[" + ",".join(["0.5"] * in_chans) + "]"
    return [f"data.channels={in_chans}", f"data.mean={per_channel}", f"data.std={per_channel}",
            f"data.num_classes={num_classes}", f"data.image_size={size}"]


def validate(cfg: DictConfig) -> DictConfig:
    """The config typed by `roadmap.config.schema`; ConfigError, one line naming the setting, for any setting the run
    could not honour. Nothing is built or written."""
    for group, variants in (("data", schema.DATA), ("recipe", schema.RECIPES)):
        if cfg[group].get("name") not in variants:
            raise ConfigError(f"{group}.name={cfg[group].get('name')!r}: must be one of {', '.join(variants)}")
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(f"data.root: required for data={cfg.data.name}; set data.root=<folder>")
    layout = schema.Config(data=schema.DATA[cfg.data.name](), recipe=schema.RECIPES[cfg.recipe.name]())
    try:
        _check_booleans(layout, cfg)
        typed = OmegaConf.merge(OmegaConf.structured(layout), cfg)
        _check_ranges(OmegaConf.to_object(typed))  # resolves every interpolation, checking its type
    except OmegaConfBaseException as e:
        raise ConfigError(_read_setting_error(layout, cfg, e) or _schema_error(layout, e)) from None
    _check_model(typed)
    _check_together(typed)
    return typed


def _check_booleans(layout, cfg: DictConfig, prefix: str = "") -> None:
    """ConfigError for a setting the schema types `bool` (or a mapping of bools) that is not true or false:
    OmegaConf would take 2, 'yes' or 'on' as true. `layout`: a schema dataclass, or an instance choosing the
    dataclasses of its data and recipe."""
    hints = get_type_hints(layout if isinstance(layout, type) else type(layout))
    # The model's switches read budget settings by interpolation: a bad value is named where it is set.
    for name, annotation in sorted(hints.items(), key=lambda item: item[0] == "model"):
        key, chosen = f"{prefix}{name}", getattr(layout, name, None)
        node = type(chosen) if is_dataclass(chosen) else _not_none(annotation)
        if is_dataclass(node):
            _check_booleans(chosen if is_dataclass(chosen) else node, cfg, f"{key}.")
        elif node is bool or (get_origin(node) is dict and get_args(node)[-1] is bool):
            given = OmegaConf.select(cfg, key, default=None)
            values = given.items() if isinstance(given, DictConfig) else [(None, given)]
            for item, value in values:
                if not isinstance(value, bool) and not (value is None and node is not annotation):
                    raise ConfigError(f"{key if item is None else f'{key}.{item}'}={value!r}: must be true or false")


def _check_ranges(node, prefix: str = "") -> None:
    for f in fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            _check_ranges(value, f"{key}.")
        elif "check" in f.metadata and not f.metadata["check"].holds(value):
            raise ConfigError(f"{key}={value!r}: must be {f.metadata['check'].allowed}")


def _read_setting_error(layout: schema.Config, cfg: DictConfig, error: OmegaConfBaseException) -> str | None:
    """The error of a setting that the failed setting's interpolation reads, named as itself: `recipe.optimizer`
    for `model.layer_scale: ${budget.layer_scale.${recipe.optimizer}}`; None if the settings it reads hold."""
    if not isinstance(error, InterpolationResolutionError):
        return None
    interpolation = str(flatten(OmegaConf.to_container(cfg, resolve=False)).get(error.full_key, ""))
    for key in re.findall(r"\$\{([\w.]+)\}", interpolation):
        check, value = _check_of(layout, key), OmegaConf.select(cfg, key, default=None)
        if check is not None and not check.holds(value):
            return f"{key}={value!r}: must be {check.allowed}"
    return None


def _check_of(layout: schema.Config, key: str) -> schema.Check | None:
    """The schema's Check of the setting `key`, if it has one."""
    *groups, name = key.split(".")
    node = layout
    for group in groups:
        chosen = getattr(node, group, None)
        hints = get_type_hints(node if isinstance(node, type) else type(node))
        node = chosen if is_dataclass(chosen) else _not_none(hints.get(group))
        if not is_dataclass(node):
            return None
    field = next((f for f in fields(node) if f.name == name), None)
    return field.metadata.get("check") if field is not None else None


def _unknown_key_error(key: str) -> str:
    """One line for a key no config declares, with the declared key closest to it."""
    group, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, _settings_in(group), n=1)
    hint = f" (did you mean {group + '.' if group else ''}{close[0]}?)" if close else ""
    if group == "model":
        return f"{key}: unknown switch{hint}; the switches are those of conf/model/resnet.yaml"
    return f"{key}: unknown setting{hint}; the settings are those of roadmap/config/schema.py"


def _settings_in(group: str) -> set[str]:
    """The keys the schema declares in `group` ("" for the top level), those of every data or recipe variant."""
    classes = [schema.Config]
    for name in filter(None, group.split(".")):
        classes = [_not_none(get_type_hints(c).get(name)) for c in classes]
        classes = [v for c in classes if is_dataclass(c) for v in
                   {schema.Data: schema.DATA.values(), schema.Recipe: schema.RECIPES.values()}.get(c, [c])]
    return {f.name for c in classes for f in fields(c)}


def _schema_error(layout: schema.Config, error: OmegaConfBaseException) -> str:
    """OmegaConf's error as one line: the setting, its value and the type the schema gives it."""
    key = error.full_key
    if isinstance(error, ConfigKeyError):
        return _unknown_key_error(key)
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


def _composition_error(error: HydraException | OmegaConfBaseException) -> str:
    """Hydra's error as one line."""
    if isinstance(error, MissingConfigException) and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name}: no such config; choose one of {', '.join(error.options)}"
    if isinstance(error.__cause__, ConfigAttributeError | ConfigKeyError):  # `model.kernal_size=3`
        return _unknown_key_error(error.__cause__.full_key)
    return str(error).split("\n\n")[0].replace("\n", " ")


def compose_with_hydra(overrides: Sequence[str] = (), *, config_dir: str | Path | None = None,
                       config_path: str | Path = CONF_DIR, config_name: str = "config") -> DictConfig:
    """The config Hydra composes for `python run.py <overrides>`, its `hydra` node included, before validation;
    keyword arguments as for `compose`."""
    return _compose(overrides, config_dir, config_path, config_name, return_hydra_config=True)


def compose(overrides: Sequence[str] = (), *, config_dir: str | Path | None = None,
            config_path: str | Path = CONF_DIR, config_name: str = "config") -> DictConfig:
    """The config `python run.py <overrides>` runs with, composed and validated; ConfigError, one line, for
    anything Hydra or the schema rejects.

    `config_dir`: a folder of one's own configs added to Hydra's search path, as run.py's `--config-dir` (and as a
    `hydra.searchpath=[file://DIR]` override); the steps of its `step/` are steps. `config_path` and `config_name`:
    the primary config's folder and name, as run.py's `--config-path` and `--config-name` choose them.
    """
    return validate(_compose(overrides, config_dir, config_path, config_name, return_hydra_config=False))


def _compose(overrides: Sequence[str], config_dir: str | Path | None, config_path: str | Path, config_name: str,
             return_hydra_config: bool) -> DictConfig:
    overrides = [expand_home(override) for override in overrides]
    user_dirs = user_config_dirs(overrides, config_dir)
    config_path = Path(config_path).resolve()
    if not config_path.is_dir():
        raise ConfigError(f"--config-path: {config_path}: no such folder")
    step_tree = steps.load_steps(config_path, user_dirs) if user_dirs or config_path != CONF_DIR else steps.STEPS
    _check_steps(overrides, [step.name for step in step_tree])
    try:
        with _initialized(config_path, config_dir):
            return hydra_compose(config_name=config_name, overrides=overrides,
                                 return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_composition_error(e)) from None


@contextmanager
def _initialized(config_path: Path, config_dir: str | Path | None):
    """Hydra's compose API searching the folders run.py's command line has it search: the primary config's, then
    `--config-dir` where Hydra's own command line puts it (before the search path's other entries, so that the
    primary config may be there). The compose API takes one folder: the rest is Hydra's `run_hydra`."""
    search_path = create_config_search_path(str(config_path))
    if config_dir is not None:
        search_path.prepend(provider="command-line", path=f"file://{Path(config_dir).resolve()}",
                            anchor=SearchPathQuery(provider="schema"))
    with initialize_config_dir(config_dir=str(config_path), version_base="1.3"):  # restores Hydra's state on exit
        GlobalHydra.instance().clear()
        Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
        yield
