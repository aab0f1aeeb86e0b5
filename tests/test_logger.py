"""conf/logger/: TensorBoard event files and an MLflow store get every optimizer step and every metrics.csv row,
as the training loop read them; the logger is how a run is watched, not what it is, so it stays out of run names."""

import csv

import pytest
from conftest import run_cli

from roadmap import compose
from roadmap.records import tracking

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

STEPS_PER_EPOCH = 15  # tiny_run: 500 training images in steps of 32


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_and_mlflow_get_each_step_and_epoch(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as roadmap.records.tracking sets it, to read the store here
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = tmp_path / "mlruns"
    done = run_cli([*tiny_run, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={store}",
                    "logger.mlflow.experiment=roadmap-test", "runtime.sync_every=4"], tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("result.json")]
    assert "logger" not in str(run_dir.relative_to(tmp_path))  # a tracker does not change what is trained
    rows = _metrics(run_dir)
    all_steps = list(range(1, 2 * STEPS_PER_EPOCH + 1))

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == all_steps
    for epoch, row in enumerate(rows):  # the epoch's train_loss is the mean of its steps' losses
        epoch_losses = [e.value for e in loss[epoch * STEPS_PER_EPOCH:(epoch + 1) * STEPS_PER_EPOCH]]
        assert sum(epoch_losses) / STEPS_PER_EPOCH == pytest.approx(float(row["train_loss"]), rel=1e-5)
    assert events.Scalars("train/lr")[0].value == pytest.approx(float(rows[0]["lr"]))
    # img/s once per read of the losses: every 4 steps and at the end of each epoch
    assert [e.step for e in events.Scalars("train/imgs_per_s")] == [4, 8, 12, 15, 19, 23, 27, 30]
    assert all(e.value > 0 for e in events.Scalars("train/imgs_per_s"))
    assert [(e.step, e.value) for e in events.Scalars("epoch/val_acc1")] == [
        (STEPS_PER_EPOCH * (i + 1), pytest.approx(float(r["val_acc1"]))) for i, r in enumerate(rows)]

    client = MlflowClient(store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("roadmap-test").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["run_dir"] == str(run_dir.resolve())
    assert run.data.params["budget.batch"] == "32" and run.data.params["logger.mlflow.experiment"] == "roadmap-test"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == all_steps
    assert sorted((m.step, m.value) for m in history) == [(e.step, pytest.approx(e.value)) for e in loss]
    assert client.get_metric_history(run.info.run_id, "epoch/val_acc1")[-1].value == pytest.approx(
        float(rows[-1]["val_acc1"]))


def test_only_rank_0_logs_and_csv_logs_nowhere_else(tmp_path):
    chosen = compose(["logger=tensorboard"])
    assert tracking.Trackers(chosen, tmp_path, 1, is_writer=False).trackers == []
    assert tracking.Trackers(compose([]), tmp_path, 1, is_writer=True).trackers == []
    assert not any(tmp_path.iterdir())
