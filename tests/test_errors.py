"""Bad command lines through `python run.py`: exit status 2, one line naming the setting, nothing written."""

import pytest
import torch
from conftest import run_cli

from roadmap import compose
from roadmap.network.steps import CONF_DIR


@pytest.mark.parametrize("bad, says", [
    (["recipe.lr=fast"], "recipe.lr='fast': must be a number"),
    (["seed=1.5"], "seed=1.5: must be an integer"),
    (["+model.attention=true"], "model.attention: unknown switch"),
    (["model.in_chans=3"], "model.in_chans=3: must equal data.channels=1"),
    (["budget.batch=1000"], "budget.batch=1000: must be at most the 500 training images"),
    (["data.val_size=600"], "data.val_size=600: must be less than the 600 images"),
    (["hydra/launcher=nope"], "hydra/launcher=nope: no such config; choose one of basic, joblib, submitit_local"),
    (["+step=patchyfy"], "step=patchyfy: unknown step"),
    (["nope=1"], "nope: unknown setting; the settings are those of roadmap/config/schema.py"),
    (["recipe.optimizer=lamb"], "recipe.optimizer='lamb': must be one of sgd, adamw"),
    (["model.kernal_size=3"], "model.kernal_size: unknown switch (did you mean model.kernel_size?)"),
    (["data=nope"], "data=nope: no such config; choose one of cifar10, cifar100, fashion_mnist, huggingface, imagefolder, webdataset"),
    (["data.root={tmp}/empty", "data.packaged_dir={tmp}/none", "data.download=false"],
     "install the Debian package dataset-fashion-mnist"),
    (["-m", "budget.batch=16,1000"], "job 2 of 2 (budget.batch=1000): budget.batch=1000: must be at most the 500"),
    (["-m", "seed=0,1", "hydra/launcher=nope"], "job 1 of 2 (seed=0): hydra/launcher=nope: no such config"),
    pytest.param(["runtime.device=cuda"], "runtime.device=cuda: this machine has no cuda (0 cuda device(s))",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
])
def test_bad_command_line_stops_in_one_line_before_anything_is_written(tiny_run, tmp_path, bad, says):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    replaced = {arg.split("=")[0] for arg in bad}
    base = [arg for arg in tiny_run if arg.split("=")[0] not in replaced]  # 500 training images, 100 for val
    flags = [arg for arg in bad if arg.startswith("-")]  # before the overrides, as Hydra takes them
    done = run_cli([*flags, *base, *(arg.format(tmp=tmp_path) for arg in bad if arg not in flags)], cwd)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and says in done.stderr
    assert list(cwd.iterdir()) == []



@pytest.mark.parametrize("group", ["data", "budget", "recipe", "roadmap", "logger"])
def test_every_config_file_fits_the_schema(group):
    # A key added to conf/ without its field in roadmap/config/schema.py fails every run that composes it.
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        compose([f"{group}={option}", "data.root=/data"])
