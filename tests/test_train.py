"""The training loop on a tiny network: it learns, records everything, resumes exactly, skips what is done and
stops on divergence."""

import csv
import json
import time

import pytest
import torch

from roadmap import compose
from roadmap.records import checkpoint
from roadmap.training import train
from roadmap.records.record import METRICS_COLUMNS

RESULT_FIELDS = {"step", "roadmap", "data", "seed", "status", "test_acc1", "test_acc5", "best_val_acc1", "best_val_epoch",
                 "epochs", "params", "gflops", "gflops_conv_linear", "input_size", "train_imgs_per_s", "peak_mem_mb",
                 "wall_seconds", "device", "torch_version", "git_commit", "overrides"}


def _run(overrides, run_dir):
    return train.run(compose(overrides), run_dir, overrides)


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_training_learns_and_records_everything(tiny_run, tmp_path):
    overrides = [*tiny_run, "budget.epochs=3", "recipe.ema=true", "recipe.ema_decay=0.9"]
    result = _run(overrides, tmp_path)
    assert result["status"] == "completed"
    saved = json.loads((tmp_path / "result.json").read_text())
    assert RESULT_FIELDS <= set(saved) and saved["status"] == "completed" and saved["epochs"] == 3
    assert saved["overrides"] == overrides and saved["splits"]["test"]["images"] == 200
    assert {"ema_test_acc1", "ema_test_acc5"} <= set(saved)
    rows = _metrics(tmp_path)
    assert list(rows[0]) == [*METRICS_COLUMNS, "ema_val_loss", "ema_val_acc1", "ema_val_acc5"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert saved["best_val_acc1"] == max(float(r["val_acc1"]) for r in rows)
    assert (tmp_path / checkpoint.WEIGHTS_NAME).is_file() and not (tmp_path / checkpoint.CHECKPOINT_NAME).exists()


def test_wall_time_counts_the_data_and_the_model_built_before_the_first_epoch(tiny_run, tmp_path, monkeypatch):
    build_splits = train.build_splits

    def slow_build_splits(*args):
        time.sleep(1.0)
        return build_splits(*args)

    monkeypatch.setattr(train, "build_splits", slow_build_splits)
    result = _run([*tiny_run, "budget.epochs=1"], tmp_path)
    assert result["wall_seconds"] > 1.0 + sum(float(r["epoch_seconds"]) for r in _metrics(tmp_path))


def test_interrupted_run_resumes_to_the_same_result(tiny_run, tmp_path, monkeypatch):
    overrides = [*tiny_run, "budget.epochs=3", "runtime.deterministic=true"]
    uninterrupted = _run(overrides, tmp_path / "whole")

    train_one_epoch = train.Trainer.train_one_epoch

    def interrupted_in_epoch_two(self, epoch, *args, **kwargs):
        if epoch == 1:
            torch.rand(100)  # consume some randomness, as the lost partial epoch did
            raise KeyboardInterrupt
        return train_one_epoch(self, epoch, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "train_one_epoch", interrupted_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _run(overrides, tmp_path / "resumed")
    assert len(_metrics(tmp_path / "resumed")) == 1 and not (tmp_path / "resumed" / "result.json").exists()
    monkeypatch.setattr(train.Trainer, "train_one_epoch", train_one_epoch)
    resumed = _run(overrides, tmp_path / "resumed")

    def without_timing(rows):
        return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "train_imgs_per_s")} for r in rows]

    assert without_timing(_metrics(tmp_path / "resumed")) == without_timing(_metrics(tmp_path / "whole"))
    assert (resumed["test_acc1"], resumed["test_acc5"], resumed["test_loss"]) == (
        uninterrupted["test_acc1"], uninterrupted["test_acc5"], uninterrupted["test_loss"])
    whole, again = (checkpoint.load(tmp_path / d / checkpoint.WEIGHTS_NAME) for d in ("whole", "resumed"))
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, again["model"][name]), name


def test_completed_run_is_not_retrained(tiny_run, tmp_path, monkeypatch):
    first = _run(tiny_run, tmp_path)
    monkeypatch.setattr(train, "Trainer", None)  # any training attempt would fail
    assert _run(tiny_run, tmp_path) == first


def test_non_finite_loss_stops_the_run_as_diverged(tiny_run, tmp_path):
    result = _run([*tiny_run, "recipe.lr=1.0e+12"], tmp_path)
    assert result["status"] == "diverged" and "loss became" in result["error"]
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "diverged"


def test_gradient_accumulation_reaches_the_global_batch(tiny_run):
    assert train.micro_batches_per_iteration(global_batch=4096, batch_per_device=128, world_size=8) == 4
    assert train.micro_batches_per_iteration(global_batch=96, batch_per_device=64, world_size=1) == 2  # 2 x 48
    cfg = compose([*tiny_run, "budget.batch=64", "runtime.batch_per_device=16"])
    from roadmap import build_model
    from roadmap.training.data import build_splits

    trainer = train.Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))
    assert trainer.accumulation == 4 and trainer.train_loader.batch_size == 16 and trainer.iterations_per_epoch == 7


def test_deterministic_runs_set_cublas_workspace_for_deterministic_matmuls(tiny_run, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        train.configure_torch(compose([*tiny_run, "runtime.deterministic=true"]))
        assert train.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
