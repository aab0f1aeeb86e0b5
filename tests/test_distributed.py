"""Data parallelism: two gloo processes on CPU train exactly what one process trains with the same global batch."""

import subprocess
import sys

import pytest
import torch
from conftest import REPO, run_cli

from roadmap import checkpoint

# BatchNorm-free (LayerNorm) and without random augmentation: the two runs see the same images in the same steps.
SAME_RUN = ["+step=layernorm", "recipe=original", "recipe.batch=32", "recipe.epochs=2", "recipe.hflip=0",
            "data.crop_scale=[1.0,1.0]", "data.val_size=101", "data.train_subset=128", "runtime.workers=0",
            "runtime.progress=false"]


def _torchrun(args, cwd, nproc: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(REPO / "run.py"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_two_processes_train_what_one_process_trains(tiny_run, tmp_path):
    args = [*tiny_run, *SAME_RUN]
    one = run_cli([*args, "hydra.run.dir=one"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _torchrun([*args, "hydra.run.dir=two", "runtime.batch_per_device=16"], tmp_path, nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]

    single, parallel = (checkpoint.load(tmp_path / d / checkpoint.CHECKPOINT_NAME) for d in ("one", "two"))
    assert [r["val_acc1"] for r in single["metrics"]] == pytest.approx([r["val_acc1"] for r in parallel["metrics"]])
    for name, weight in single["trainer"]["model"].items():
        torch.testing.assert_close(parallel["trainer"]["model"][name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert len(parallel["rng"]) == 2  # each process's random stream, for resuming

    # One record, written by rank 0; every image of the val split counted once.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        ".hydra", "checkpoint.pt", "metrics.csv", "result.json", "run.log"]
    result = (tmp_path / "two" / "result.json").read_text()
    assert '"world_size": 2' in result and '"status": "completed"' in result
    assert two.stdout.count("test top-1") == 1
