"""The roadmap's step order, read from the one place it is written: the parent each `conf/step/*.yaml` extends.

Each step file lists its parent step first in its defaults list. The adopted path is the longest chain from the
root (`resnet`); every other step is a side branch (the kernel sizes not adopted). Table order lists a step's
children together, in natural order (kernel5, kernel7, kernel9, kernel11), then follows the adopted child.
`STEPS`, `STEP_NAMES` and `ADOPTED_STEPS` are read on first use, not on import.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml


def _conf_dir() -> Path:
    # An installed package carries conf/ inside it (pyproject.toml maps it there); a checkout has it beside it.
    package = Path(__file__).resolve().parent
    return package / "conf" if (package / "conf").is_dir() else package.parent / "conf"


CONF_DIR = _conf_dir()


@dataclass(frozen=True)
class Step:
    name: str
    parent: str | None
    adopted: bool  # on the path that ends at ConvNeXt; False for side branches


def _parent_of(step_file: Path) -> str | None:
    defaults = yaml.safe_load(step_file.read_text()).get("defaults", [])
    parents = [d for d in defaults if isinstance(d, str) and d != "_self_"]
    return parents[0] if parents else None


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load_steps(conf_dir: Path = CONF_DIR) -> tuple[Step, ...]:
    parents = {f.stem: _parent_of(f) for f in sorted((conf_dir / "step").glob("*.yaml"))}
    children: dict[str | None, list[str]] = {}
    for name, parent in parents.items():
        children.setdefault(parent, []).append(name)
    (root,) = children[None]

    def chain(name: str) -> list[str]:
        return chain(parents[name]) + [name] if parents[name] else [name]

    adopted = set(max((chain(name) for name in parents), key=len))

    def subtree(name: str) -> list[str]:
        return [name] + [n for child in sorted(children.get(name, []), key=_natural_key) for n in subtree(child)]

    order, node = [root], root
    while children.get(node):
        for child in sorted(children[node], key=_natural_key):
            order += [child] if child in adopted else subtree(child)
        node = next(child for child in children[node] if child in adopted)
    return tuple(Step(name, parents[name], name in adopted) for name in order)


@cache
def _roadmap_steps() -> tuple[Step, ...]:
    return load_steps()


LAZY = {
    "STEPS": lambda: _roadmap_steps(),
    "STEP_NAMES": lambda: tuple(step.name for step in _roadmap_steps()),
    "ADOPTED_STEPS": lambda: tuple(step.name for step in _roadmap_steps() if step.adopted),
}


def __getattr__(name: str):
    if name in LAZY:
        return LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
