"""What a machine with torch and torchvision, but none of this project's other dependencies and no internet, needs
to run the GPU check: the distributions to carry there as wheels, read from this environment's installed metadata,
and the pip commands that fetch them here and install them there.

    python -m roadmap.machines.gpu_check.wheels [--dir wheels] [--python-version 3.10 3.12 ...] [--platform TAG] [--timm]

Pure-Python distributions are fetched with `pip wheel`, which also builds the ones PyPI has only as source
(fvcore, iopath, antlr4-python3-runtime) into wheels; compiled ones (PyYAML, pandas) are downloaded for the target's
Python version and platform.
"""

import argparse
import importlib.metadata as metadata
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What run.py, roadmap and analysis.gpu_check import beyond the standard library, torch and torchvision
# (tests/test_gpu_check.py checks this against what importing them loads).
IMPORTED = ("hydra-core", "omegaconf", "fvcore", "pandas", "tqdm", "pyyaml")
# What the GPU machine has: torch and torchvision, with everything they require.
PRESENT = ("torch", "torchvision")
DEFAULT_PLATFORM = "manylinux_2_28_x86_64"


def requirements(name: str) -> list[str]:
    """The distributions `name` requires on this machine (environment markers evaluated, no extras)."""
    required = []
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            required.append(canonicalize_name(requirement.name))
    return required


def closure(names) -> set[str]:
    """`names` and everything they require, recursively, as installed here."""
    found, pending = set(), [canonicalize_name(n) for n in names]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending += requirements(name)
    return found


def carried(imported=IMPORTED) -> dict[str, str]:
    """{distribution: version installed here} of what the GPU machine lacks to import `imported`."""
    return {name: metadata.version(name) for name in sorted(closure(imported) - closure(PRESENT))}


def is_pure(name: str) -> bool:
    """Whether the installed distribution is pure Python (its wheel's `Root-Is-Purelib`)."""
    wheel = metadata.distribution(name).read_text("WHEEL") or ""
    return "Root-Is-Purelib: true" in wheel


def commands(folder: str, python_versions: list[str], platform: str, imported=IMPORTED) -> tuple[list[str], str]:
    """(the commands that fill `folder` here, the command that installs from it there)."""
    pins = carried(imported)
    pure = " ".join(f"{n}=={v}" for n, v in pins.items() if is_pure(n))
    compiled = " ".join(f"{n}=={v}" for n, v in pins.items() if not is_pure(n))
    fetch = [f"pip wheel --no-deps -w {folder} {pure}"]
    fetch += [f"pip download --no-deps --only-binary=:all: --platform {platform} --python-version {version} "
              f"-d {folder} {compiled}" for version in python_versions]
    return fetch, f"pip install --no-index --find-links {folder} {' '.join(pins)}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m roadmap.machines.gpu_check.wheels", description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="wheels", help="the folder the wheels go to (default: wheels)")
    p.add_argument("--python-version", nargs="+", default=[f"{sys.version_info.major}.{sys.version_info.minor}"],
                   help="the GPU machine's Python version(s), for the compiled wheels (default: this one's)")
    p.add_argument("--platform", default=DEFAULT_PLATFORM,
                   help=f"the GPU machine's platform tag (default {DEFAULT_PLATFORM}; ARM: manylinux_2_28_aarch64)")
    p.add_argument("--timm", action="store_true", help="also timm (installed here), for the timm comparison")
    args = p.parse_args(argv)
    fetch, install = commands(args.dir, args.python_version, args.platform, IMPORTED + ("timm",) * args.timm)
    print("# here, with internet:")
    print("\n".join(fetch))
    print("# there, after copying the folder:")
    print(install)


if __name__ == "__main__":
    main()
