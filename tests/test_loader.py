"""The training DataLoader sized to the machine: `runtime.workers=auto` from the cores this process may use,
persistent workers and a prefetch depth to match, and the loader's own speed in result.json."""

import json

import pytest

from roadmap import build_model, compose
from roadmap.training import distributed, train
from roadmap.training.data import build_splits


@pytest.mark.parametrize("cores, sharing, workers", [(8, 1, 7), (8, 4, 1), (16, 3, 4), (2, 2, 0), (1, 1, 0)])
def test_auto_workers_share_the_affinity_and_leave_a_core_to_each_trainer(monkeypatch, cores, sharing, workers):
    monkeypatch.setattr(train.os, "sched_getaffinity", lambda pid: set(range(100, 100 + cores)))
    monkeypatch.setattr(distributed, "processes_sharing", lambda cpus: sharing if len(cpus) == cores else None)
    assert train.loader_workers("auto") == workers
    assert train.loader_workers(3) == 3  # an integer wins


def _trainer(overrides):
    cfg = compose(overrides)
    return train.Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))


@pytest.mark.parametrize("workers, prefetch", [(1, 4), (2, 2)])
def test_workers_persist_and_keep_batches_in_flight(tiny_run, workers, prefetch):
    trainer = _trainer([*tiny_run, "runtime.loader=workers", f"runtime.workers={workers}"])
    for loader in (trainer.train_loader, trainer.val_loader):
        assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (workers, True, prefetch)
    assert not trainer.test_loader.persistent_workers  # read once
    assert not trainer.train_loader.pin_memory  # CPU: nothing to pin for


def test_deterministic_runs_restart_training_workers_each_epoch(tiny_run):
    # Persistent workers would go on with their random streams, which a resumed run cannot reproduce.
    trainer = _trainer([*tiny_run, "runtime.loader=workers", "runtime.workers=1", "runtime.deterministic=true"])
    assert not trainer.train_loader.persistent_workers and trainer.val_loader.persistent_workers


def test_result_records_workers_and_the_loaders_speed(tiny_run, tmp_path):
    overrides = [*tiny_run, "runtime.loader=workers", "runtime.workers=auto", "budget.epochs=1"]
    result = train.run(compose(overrides), tmp_path, overrides)
    assert result["status"] == "completed"
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["workers"] == train.loader_workers("auto")
    # The loader decodes and augments 32x32 images far faster than the network trains on them.
    assert saved["loader_imgs_per_s"] > saved["train_imgs_per_s"] > 0
    assert 0 <= saved["loader_wait_fraction"] < 1
