"""What a run trains, as a plain mapping and a short hash: the key that says whether a record belongs to a config.

The trained config is the resolved config less what does not change the network, its data or how it learns:
`runtime.*`, the logger, a search's settings (`search.*`), and where the data lies (`data.root`, `data.download`,
`data.packaged_dir`, `data.cache_dir`). Model switches at `RoadmapNet`'s defaults are left out too, so that a switch added later with a
default that builds the same network leaves earlier records valid; a switch away from its default is always in.
Likewise `recipe.randaugment_policy` is in only where the paper's RandAugment is trained.
"""

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from roadmap.config import flatten
from roadmap.network.model import RoadmapNet

NOT_TRAINED = ("runtime", "logger", "search")
DATA_LOCATION = ("root", "download", "packaged_dir", "cache_dir")


def trained_config(cfg: DictConfig) -> dict:
    """The resolved settings that decide what a run trains (a validated config, `roadmap.compose`'s)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_TRAINED:
        config.pop(key, None)
    for key in DATA_LOCATION:
        config["data"].pop(key, None)
    defaults = RoadmapNet.__init__.__kwdefaults__
    config["model"] = {key: value for key, value in config["model"].items()
                       if key not in defaults or _plain(defaults[key]) != value}
    recipe = config["recipe"]
    if "randaugment_policy" in recipe and not _paper_randaugment_trained(recipe, config["budget"]):
        del recipe["randaugment_policy"]
    return config


def _paper_randaugment_trained(recipe: dict, budget: dict) -> bool:
    # recipe.randaugment_policy came after records trained with torchvision's RandAugment: it is left out where a
    # run trains as they did, with torchvision's or with none (off, or scaled to magnitude 0 by
    # budget.regularization, as roadmap.training.recipe.as_trained scales it).
    magnitude = round(recipe["randaugment_magnitude"] * budget["regularization"])
    return recipe["randaugment"] and magnitude > 0 and recipe["randaugment_policy"] != "torchvision"


def _plain(default):
    """A RoadmapNet default as it reads in a resolved config (tuples are lists there)."""
    return list(default) if isinstance(default, tuple) else default


def fingerprint(config: dict) -> str:
    """A short hash of a trained config: equal configs, equal fingerprints, whatever the order of their keys."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(recorded: dict, now: dict, limit: int = 3) -> str:
    """The first `limit` settings that differ, as `recipe.lr: recorded 0.1, now 0.2`, `; `-joined."""
    old, new = flatten(recorded), flatten(now)
    keys = [*new, *(key for key in old if key not in new)]
    changed = [key for key in keys if old.get(key, _ABSENT) != new.get(key, _ABSENT)]
    shown = [f"{key}: recorded {_text(old.get(key, _ABSENT))}, now {_text(new.get(key, _ABSENT))}"
             for key in changed[:limit]]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(shown) + more


_ABSENT = object()


def _text(value) -> str:
    if value is _ABSENT:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)
