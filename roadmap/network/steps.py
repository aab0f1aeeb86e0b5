"""The roadmap's step order, read from the one place it is written: the parent each `conf/step/*.yaml` extends.

Each step file lists its parent step first in its defaults list. The adopted path is the longest chain from the
root (`resnet`) through steps whose file does not open with `# @branch side` (a header line as Hydra's
`# @package`); every other step is a side branch: the kernel sizes not adopted, and the marked steps, which may
extend the path's end (convnext_v2). Table order lists a step's children together, in natural order (kernel5,
kernel7, kernel9, kernel11), then follows the adopted child.

A folder of the user's own configs on Hydra's search path (`--config-dir DIR`, `hydra.searchpath=[file://DIR]`)
adds the steps of its `step/`: each extends a step, built-in or the user's, is never adopted and comes right after
its parent. `STEPS`, `STEP_NAMES` and `ADOPTED_STEPS` are the built-in steps, read on first use, not on import.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from roadmap.errors import ConfigError


def _conf_dir() -> Path:
    # An installed package carries conf/ inside it (pyproject.toml maps it there); a checkout has it beside it.
    package = Path(__file__).resolve().parents[1]  # roadmap/
    return package / "conf" if (package / "conf").is_dir() else package.parent / "conf"


CONF_DIR = _conf_dir()


@dataclass(frozen=True)
class Step:
    name: str
    parent: str | None
    adopted: bool  # on the path that ends at ConvNeXt; False for side branches and the user's steps
    builtin: bool = True  # a file of the project's conf/step/; False: of a user's folder on the search path


def _parent_of(step_file: Path) -> str | None:
    defaults = yaml.safe_load(step_file.read_text()).get("defaults", [])
    parents = [d for d in defaults if isinstance(d, str) and d != "_self_"]
    return parents[0] if parents else None


def _header(step_file: Path) -> dict[str, str]:
    """The `# @key value` lines that open a config file, as Hydra reads its `# @package` header."""
    header = {}
    for line in filter(None, map(str.strip, step_file.read_text().splitlines())):
        match = re.fullmatch(r"#\s*@(\w+)\s+(\S+)", line)
        if not match:
            break
        header[match[1]] = match[2]
    return header


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _builtin_steps(conf_dir: Path) -> tuple[Step, ...]:
    files = sorted((conf_dir / "step").glob("*.yaml"))
    parents = {f.stem: _parent_of(f) for f in files}
    marked = {f.stem for f in files if _header(f).get("branch") == "side"}
    children: dict[str | None, list[str]] = {}
    for name, parent in parents.items():
        children.setdefault(parent, []).append(name)
    (root,) = children[None]

    def chain(name: str) -> list[str]:
        return chain(parents[name]) + [name] if parents[name] else [name]

    adopted = set(max((c for c in map(chain, parents) if not marked.intersection(c)), key=len))

    def subtree(name: str) -> list[str]:
        return [name] + [n for child in sorted(children.get(name, []), key=_natural_key) for n in subtree(child)]

    order, node = [root], root
    while node is not None:
        for child in sorted(children.get(node, []), key=_natural_key):
            order += [child] if child in adopted else subtree(child)
        node = next((child for child in children.get(node, []) if child in adopted), None)
    return tuple(Step(name, parents[name], name in adopted) for name in order)


def _user_step_parent(step_file: Path) -> str:
    """The parent a user's step file extends; ConfigError, one line naming the file, if it is not a step."""
    what = (f"{step_file}: not a step: a step opens with `# @package _global_`, names its parent step first in its "
            f"defaults list and sets `step: {step_file.stem}`")
    try:
        content = yaml.safe_load(step_file.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{step_file}: not YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(content, dict) or _header(step_file).get("package") != "_global_":
        raise ConfigError(what)
    parent = _parent_of(step_file)
    if parent is None or content.get("step") != step_file.stem:
        raise ConfigError(what)
    return parent


def _user_steps(builtin: tuple[Step, ...], config_dirs: Sequence[Path]) -> tuple[Step, ...]:
    """`builtin` with the steps of each folder's `step/`, each right after its parent (siblings in natural order);
    ConfigError, one line naming the file, for a file there that is not a step, takes the name of another step,
    extends no step or closes a cycle."""
    files = {step.name: None for step in builtin}
    parents: dict[str, str] = {}
    for folder in config_dirs:
        for step_file in sorted((folder / "step").glob("*.yaml")):
            name = step_file.stem
            if name in files:
                other = f"the built-in step {name}" if files[name] is None else files[name]
                raise ConfigError(f"{step_file}: shadows {other}; give the step another name")
            files[name], parents[name] = step_file, _user_step_parent(step_file)
    for name, step_file in ((n, f) for n, f in files.items() if f is not None):
        chain = [name]
        while chain[-1] in parents:
            parent = parents[chain[-1]]
            if parent not in files:
                raise ConfigError(f"{step_file}: extends {parent}, which is no step; choose one of "
                                  f"{', '.join(n for n in files if n != name)}")
            if parent in chain:
                raise ConfigError(f"{step_file}: a cycle of steps: {' extends '.join([*chain, parent])}")
            chain.append(parent)

    children: dict[str, list[str]] = {}
    for name, parent in parents.items():
        children.setdefault(parent, []).append(name)

    def with_descendants(step: Step) -> list[Step]:
        below = sorted(children.get(step.name, []), key=_natural_key)
        return [step] + [s for child in below for s in with_descendants(Step(child, parents[child], False, False))]

    return tuple(s for step in builtin for s in with_descendants(step))


def load_steps(conf_dir: Path = CONF_DIR, config_dirs: Sequence[Path] = ()) -> tuple[Step, ...]:
    """The steps of `conf_dir/step/` (the primary config folder's) in table order, and those of each of the
    user's `config_dirs` (folders on Hydra's search path; one named twice is read once), each right after its
    parent."""
    folders: dict[Path, Path] = {}
    for folder in map(Path, config_dirs):
        folders.setdefault(folder.resolve(), folder)
    return _user_steps(_builtin_steps(conf_dir), list(folders.values()))


def searched_folders(config_sources) -> list[Path]:
    """The user's folders among the config sources Hydra searched (`hydra.runtime.config_sources`): the file
    sources but the primary config's."""
    return [Path(s.path) for s in config_sources if s.schema == "file" and s.provider != "main"]


@cache
def _roadmap_steps() -> tuple[Step, ...]:
    return _builtin_steps(CONF_DIR)


LAZY = {
    "STEPS": lambda: _roadmap_steps(),
    "STEP_NAMES": lambda: tuple(step.name for step in _roadmap_steps()),
    "ADOPTED_STEPS": lambda: tuple(step.name for step in _roadmap_steps() if step.adopted),
}


def __getattr__(name: str):
    if name in LAZY:
        return LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
