"""An installed project, not an editable checkout, finds its configs: conf/ ships inside the package."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import roadmap

REPO = Path(__file__).resolve().parent.parent

# Imports the installed roadmap, checks that importing it read no step file, composes a step.
_COMPOSE = """
import yaml
reads = []
safe_load = yaml.safe_load
yaml.safe_load = lambda *args, **kwargs: reads.append(args) or safe_load(*args, **kwargs)
import roadmap
assert not reads, "import roadmap read a config file"
cfg = roadmap.compose(["+step=gelu"])
print(roadmap.__file__, roadmap.network.steps.CONF_DIR, cfg.model.act, roadmap.STEP_NAMES[-1], sep="\\n")
"""


@pytest.mark.slow
def test_installed_package_composes_a_step_from_another_folder(tmp_path):
    # Built from a copy: a build writes build/ and *.egg-info/ into the tree it builds.
    source, site, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "elsewhere"
    for name in ("roadmap", "conf", "analysis", "experiments", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True)
    shipped = site / "roadmap" / "conf"
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.yaml")) == sorted(
        p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml"))  # pyproject.toml lists every folder

    elsewhere.mkdir()
    env = os.environ | {"PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", _COMPOSE], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    module, conf_dir, act, last_step = out.stdout.split()
    assert (Path(module).parent, Path(conf_dir)) == (site / "roadmap", shipped)
    assert (act, last_step) == ("gelu", roadmap.STEP_NAMES[-1])
