"""docs/extending.md works as written: its marked bash blocks run in order, on a tiny network and data."""

import os
import re
import subprocess
import sys

import pandas as pd
from conftest import REPO

DOC = REPO / "docs" / "extending.md"
MARK = "<!-- run by tests/test_extending_doc.py -->"
# The roadmap's stage layouts shrunk (the steps read them from roadmap/), in a folder of the test's own.
MINI_ROADMAP = """defaults:
  - tiny
  - _self_

name: mini
resnet_depths: [1, 1, 1, 1]
resnet_widths: [8, 16, 32, 64]
stage_ratio_depths: [1, 1, 1, 1]
stage_ratio_widths: [8, 16, 32, 64]
convnext_widths: [8, 16, 32, 64]
"""


def marked_blocks(text: str) -> list[str]:
    return re.findall(re.escape(MARK) + r"\n```bash\n(.*?)```", text, flags=re.DOTALL)


def tiny(command: str, fashion_root, test_configs) -> str:
    """The command on tiny networks (a roadmap of tiny stages, so that the runs stay in the roadmap table) and a
    tiny Fashion-MNIST, in one thread; the cost table at 32x32."""
    if command.startswith(("python run.py", "python -m experiments")):
        return " ".join([command, f"hydra.searchpath=[file://{test_configs}]", "roadmap=mini",
                         f"data.root={fashion_root}", "data.val_size=100", "budget.batch=32", "budget.epochs=1",
                         "budget.train_subset=128", "runtime.batch_per_device=32", "runtime.workers=0",
                         "runtime.threads=1", "runtime.progress=false"])
    if command.startswith("python -m analysis.flops"):
        return command + " --size 32"
    return command


def test_the_docs_commands_run_as_written(fashion_root, tmp_path):
    for name in ("run.py", "conf", "experiments", "analysis"):  # the commands run from the repository root
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "test_configs" / "roadmap").mkdir(parents=True)
    (tmp_path / "test_configs" / "roadmap" / "mini.yaml").write_text(MINI_ROADMAP)
    env = os.environ | {"PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    blocks = marked_blocks(DOC.read_text())
    assert len(blocks) == 4
    outputs = []
    for block in blocks:
        lines = [tiny(line, fashion_root, tmp_path / "test_configs") for line in block.splitlines()]
        script = "\n".join(["set -e", *lines])
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)

    assert len(list((tmp_path / "runs" / "mini" / "fashion_mnist" / "my_k3").rglob("result.json"))) == 1
    table = pd.read_csv(tmp_path / "runs" / "my_study" / "analysis" / "roadmap.csv")
    assert list(table.step) == ["sep_downsample", "my_k3"]
    mine = table.set_index("step").loc["my_k3"]
    assert (mine.parent, mine.builtin, mine.n, mine.delta_n) == ("sep_downsample", False, 2, 2)
    markdown = (tmp_path / "runs" / "my_study" / "analysis" / "roadmap.md").read_text()
    assert "my_k3 (your step, not the paper's)" in markdown
    counted = re.findall(r"^\s*(\w+)\s+(?:True|False)\s+(True|False)", outputs[-1], flags=re.MULTILINE)
    assert counted == [("sep_downsample", "True"), ("my_k3", "False")]
