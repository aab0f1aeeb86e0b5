"""The configuration: Hydra composition of `conf/`, the schema of every setting, and the network a config builds.
May import the network (its signature) and the bottom helpers (roadmap.errors, roadmap.files); nothing above."""

from roadmap.config.composition import (build_model, compose, compose_with_hydra, expand_home, flatten,
                                        input_overrides, model_kwargs, override_key, parse_overrides,
                                        user_config_dirs, validate)
from roadmap.errors import ConfigError

__all__ = ["ConfigError", "build_model", "compose", "compose_with_hydra", "expand_home", "flatten", "input_overrides",
           "model_kwargs", "override_key", "parse_overrides", "user_config_dirs", "validate"]
