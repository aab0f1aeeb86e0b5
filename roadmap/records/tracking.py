"""Experiment trackers beside the run directory's own record (`conf/logger/`): TensorBoard event files and an MLflow
tracking store, both local files. Per iteration (optimizer step): `train/loss`, `train/lr` and `train/imgs_per_s`;
per epoch: the metrics.csv row as `epoch/<column>`, at the iteration that ended the epoch. Only rank 0 logs.
"""

import os
import time
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from roadmap.config import flatten
from roadmap.errors import ConfigError


def _require(package: str, logger: str) -> None:
    try:
        __import__(package)
    except ImportError:
        raise ConfigError(f"logger={logger}: needs the {package} package; pip install -e '.[trackers]'") from None


class TensorBoard:
    """Event files in `<run dir>/tensorboard/`: `tensorboard --logdir runs/` shows every run."""

    def __init__(self, run_dir: Path, first_iteration: int):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run drops what the interrupted attempt logged after its last checkpoint.
        purge_step = first_iteration if first_iteration > 1 else None  # TensorBoard's name for an iteration
        self.writer = SummaryWriter(run_dir / "tensorboard", purge_step=purge_step)

    def log(self, iterations: list[tuple[int, dict[str, float]]]) -> None:
        for iteration, values in iterations:
            for name, value in values.items():
                self.writer.add_scalar(name, value, iteration)

    def close(self, status: str) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per run directory (tagged `run_dir`; a resumed run logs into the same one), its parameters the
    flattened config. A tracking URI without a scheme is a folder: MLflow's file store, no server."""

    def __init__(self, run_dir: Path, cfg: DictConfig, tracking_uri: str, experiment: str):
        if not urlparse(tracking_uri).scheme:
            tracking_uri = Path(tracking_uri).resolve().as_uri()
        if tracking_uri.startswith("file:"):
            # MLflow 3 refuses its file store unless asked: it would rather have a database server.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        _require("mlflow", "mlflow")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.client, self.metric = MlflowClient(tracking_uri), Metric
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        tag = str(run_dir.resolve())
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.run_dir = '{tag}'", max_results=1)
        if runs:
            self.run_id = runs[0].info.run_id
            return
        self.run_id = self.client.create_run(experiment_id, run_name=str(run_dir), tags={"run_dir": tag}).info.run_id
        params = [Param(k, str(v)) for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, iterations: list[tuple[int, dict[str, float]]]) -> None:
        now = int(time.time() * 1000)
        metrics = [self.metric(k, v, now, iteration) for iteration, values in iterations for k, v in values.items()]
        for i in range(0, len(metrics), 1000):  # and at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def close(self, status: str) -> None:
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, "FINISHED" if status == "completed" else "FAILED")


class Trackers:
    """The trackers `cfg.logger` names (none for `logger=csv`), fed by the training loop and the epoch loop."""

    def __init__(self, cfg: DictConfig, run_dir: Path, first_iteration: int, is_writer: bool):
        chosen, self.trackers = cfg.logger, []
        if is_writer and chosen.get("tensorboard") is not None:
            self.trackers.append(TensorBoard(run_dir, first_iteration))
        if is_writer and chosen.get("mlflow") is not None:
            self.trackers.append(MLflow(run_dir, cfg, chosen.mlflow.tracking_uri, chosen.mlflow.experiment))

    def log_iterations(self, iterations: list[tuple[int, dict[str, float]]]) -> None:
        for tracker in self.trackers:
            tracker.log(iterations)

    def log_epoch(self, iteration: int, row: dict) -> None:
        self.log_iterations([(iteration, {f"epoch/{k}": float(v) for k, v in row.items()})])

    def close(self, status: str) -> None:
        for tracker in self.trackers:
            tracker.close(status)


