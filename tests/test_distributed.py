"""Data parallelism: two gloo processes on CPU train exactly what one process trains with the same global batch."""

import os
import socket
import subprocess
import sys
import warnings

import pytest
import torch
import torch.multiprocessing
from conftest import REPO, TINY_MODEL, run_cli

from roadmap import build_model, compose
from roadmap.records import checkpoint
from roadmap.training import distributed, train
from roadmap.training.data import build_splits

# BatchNorm-free (LayerNorm) and without random augmentation: the two runs see the same images in the same steps.
SAME_RUN = ["+step=layernorm", "recipe=original", "budget.batch=32", "budget.epochs=2", "recipe.hflip=0",
            "budget.crop_scale=[1.0,1.0]", "data.val_size=101", "budget.train_subset=128", "runtime.workers=0",
            "runtime.progress=false"]


def _torchrun(args, cwd, nproc: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(REPO / "run.py"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_two_processes_train_what_one_process_trains(tiny_run, tmp_path):
    args = [*tiny_run, *SAME_RUN, "runtime.keep=all"]
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


def _train_one_epoch_each_format(rank: int, port: int, data_root: str) -> None:
    """One process of two: an epoch of ConvNeXt (1x1 and depthwise kernels) in channels_last, then in NCHW."""
    os.environ |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port)}
    distributed.init()
    torch.set_num_threads(1)
    # DDP warns once per process: the NCHW epoch runs warning-free only if the channels_last one did too.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for channels_last in (True, False):
            cfg = compose(["+step=sep_downsample", *TINY_MODEL, f"data.root={data_root}", "data.val_size=100",
                           "budget.batch=32", "budget.train_subset=128", "runtime.batch_per_device=8",
                           "runtime.workers=auto", "runtime.threads=1", "runtime.progress=false",
                           f"runtime.channels_last={channels_last}"])
            trainer = train.Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))
            trainer.train_one_epoch(0)
            params = list(trainer.model.parameters())
            # The gradients are views into DDP's few buckets, not tensors of their own copied into them.
            assert len({p.grad.untyped_storage().data_ptr() for p in params}) < len(params) / 4
    assert not [str(w.message) for w in caught if "strides" in str(w.message)]
    # auto: the machine's cores shared by the two processes, less one each
    assert trainer.workers == max(len(os.sched_getaffinity(0)) // 2 - 1, 0)
    distributed.shutdown()


def test_gradients_have_their_buckets_layout(fashion_root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_train_one_epoch_each_format, args=(port, str(fashion_root)), nprocs=2)
