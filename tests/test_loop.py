"""The training loop reads its losses on the host only every `runtime.sync_every` optimizer steps, and still stops
at the first non-finite step, naming it."""

import math

import pytest

from roadmap import build_model, compose
from roadmap.training import distributed, train
from roadmap.training.data import build_splits


def _trainer(overrides):
    cfg = compose(overrides)
    return train.Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))


@pytest.fixture
def reads(monkeypatch):
    """Every sum over processes, the loop's one host read (and, under torchrun, collective) of its losses."""
    calls = []
    all_sum = distributed.all_sum
    monkeypatch.setattr(distributed, "all_sum", lambda values: calls.append(len(values)) or all_sum(values))
    return calls


def test_losses_are_read_every_sync_every_steps(tiny_run, reads):
    trainer = _trainer([*tiny_run, "budget.batch=32", "runtime.batch_per_device=16", "runtime.sync_every=4"])
    logged = []
    metrics = trainer.train_one_epoch(0, logged.extend)
    assert trainer.accumulation == 2 and trainer.iterations_per_epoch == 15
    # 15 steps: reads of 4, 4, 4 and 3 steps, then the epoch's images and loader times
    assert reads == [4, 4, 4, 3, 3]
    assert [step for step, _ in logged] == list(range(1, 16))
    assert metrics["train_loss"] == pytest.approx(sum(v["train/loss"] for _, v in logged) / 15)


def test_first_non_finite_step_is_named_although_read_later(tiny_run, reads):
    trainer = _trainer([*tiny_run, "runtime.sync_every=4"])
    loss_fn, calls = trainer.loss_fn, []

    def nan_from_step_6(logits, labels):
        calls.append(1)
        return loss_fn(logits, labels) * (math.nan if len(calls) >= 6 else 1.0)

    trainer.loss_fn = nan_from_step_6
    with pytest.raises(train.Diverged, match=r"training loss became nan at epoch 1, iteration 6 \(lr "):
        trainer.train_one_epoch(0)
    assert len(calls) == 8 and len(reads) == 2  # found at the read after step 8
