"""run.py's checks before launch run once per launch: on rank 0 alone under torchrun, and listing an image folder
once for the checks and the run they launch together."""

import importlib.util
import subprocess
import sys

from conftest import REPO, TINY_MODEL, write_image_folder
from torchvision import datasets

from roadmap import compose
from roadmap.training import data


def _load_run_py():
    spec = importlib.util.spec_from_file_location("run", REPO / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_image_folder_is_listed_once_by_the_checks_and_the_run(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "folder")
    overrides = [*TINY_MODEL, "data=imagefolder", f"data.root={root}", "data.num_classes=3", "data.image_size=32",
                 "data.val_size=20", "budget=small", "budget.batch=32", f"hydra.run.dir={tmp_path / 'run'}"]
    listed = []

    class CountedImageFolder(datasets.ImageFolder):
        def __init__(self, folder, *args, **kwargs):
            listed.append(folder.name)
            super().__init__(folder, *args, **kwargs)

    monkeypatch.setattr(datasets, "ImageFolder", CountedImageFolder)
    data._list_image_folder.cache_clear()
    _load_run_py().check_command_line(overrides)
    cfg = compose(overrides)
    data.build_splits(cfg.data, cfg.budget, cfg.recipe)  # as the run, in the same process, reads it
    assert listed == ["train", "val"]
    data._list_image_folder.cache_clear()


def test_under_torchrun_only_rank_0_checks_and_nothing_is_written(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "run.py"), "recipe.lr=fast"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert (done.stdout + done.stderr).count("error: recipe.lr='fast': must be a number") == 1
    assert list(tmp_path.iterdir()) == []
