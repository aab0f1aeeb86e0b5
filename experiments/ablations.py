"""Single design changes, read off the step list: what each adopted step changes relative to its parent.

`leave_one_out` undoes one change in the roadmap's last network (ConvNeXt-T on the tiny path); `add_one_in` applies
one change to its first (ResNet-50). Both diff the resolved configs `roadmap.compose` gives at a step and at its
parent, so a new step file under `conf/step/` shows up here without any edit.
"""

from dataclasses import dataclass
from functools import cache

from omegaconf import OmegaConf

from roadmap import ADOPTED_STEPS, STEPS, compose


@dataclass(frozen=True)
class Ablation:
    name: str  # without_<step> / with_<step>; also the sweep directory of its runs
    step: str  # the step the runs start from (`+step=`)
    change: str  # the roadmap step whose change is undone or applied
    overrides: tuple[str, ...]  # Hydra overrides on top of `+step=<step>`


def override_value(value) -> str:
    """`value` in Hydra's override grammar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and "${" in value:
        return f"'{value}'"  # a quoted interpolation: the grammar takes no nested ${} unquoted
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value)


@cache
def _resolved(roadmap_name: str, step: str) -> dict:
    """The resolved config at a step, but the model switches the budget decides (`${budget...}`, per the recipe's
    optimizer) stay interpolations: they follow a recipe override by themselves, and a step that sets one
    (sep_downsample's layer scale) is undone by handing it back to the budget, whichever budget runs."""
    cfg = compose([f"roadmap={roadmap_name}", f"+step={step}"])
    raw_model = OmegaConf.to_container(cfg.model, resolve=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["model"] |= {key: v for key, v in raw_model.items() if isinstance(v, str) and "${budget." in v}
    return resolved


def _settings(cfg: dict) -> dict:
    """The part of a resolved config a step may change, keyed by override: `model.<key>` and the recipe choice."""
    return {f"model.{key}": value for key, value in cfg["model"].items()} | {"recipe": cfg["recipe"]["name"]}


def step_changes(roadmap_name: str = "tiny") -> dict[str, dict[str, tuple]]:
    """{adopted step: {override key: (value at its parent, value at the step)}} for every adopted step but the root."""
    changes = {}
    for step in STEPS:
        if step.parent is None or not step.adopted:
            continue
        before = _settings(_resolved(roadmap_name, step.parent))
        after = _settings(_resolved(roadmap_name, step.name))
        changes[step.name] = {key: (before[key], after[key]) for key in after if before[key] != after[key]}
    return changes


def _overrides(values: dict) -> tuple[str, ...]:
    return tuple(f"{key}={override_value(value)}" for key, value in values.items())


def leave_one_out(roadmap_name: str = "tiny") -> list[Ablation]:
    """The roadmap's last network with one step's change set back to the value before that step.

    A key that a later step sets again belongs to that later step and is left alone (on the base path, undoing the
    stage ratio keeps the widths of the width step); when a later step resets every key, as move_up does with
    inverted's block type, the whole change is undone (the block goes back to a plain bottleneck).
    """
    last = ADOPTED_STEPS[-1]
    final = _settings(_resolved(roadmap_name, last))
    ablations = []
    for step, change in step_changes(roadmap_name).items():
        still_set = {key: old for key, (old, new) in change.items() if final[key] == new}
        undo = still_set or {key: old for key, (old, _) in change.items()}
        ablations.append(Ablation(f"without_{step}", last, step, _overrides(undo)))
    return ablations


def add_one_in(roadmap_name: str = "tiny") -> list[Ablation]:
    """The roadmap's first network with one step's change applied alone."""
    first = ADOPTED_STEPS[0]
    return [Ablation(f"with_{step}", first, step, _overrides({key: new for key, (_, new) in change.items()}))
            for step, change in step_changes(roadmap_name).items()]
