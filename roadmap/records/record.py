"""The record a run leaves in its directory: `metrics.csv` (a row per epoch), `result.json` and the checkpoint.

Every file is replaced atomically, so a kill never leaves half a record. Only the writer (rank 0 under torchrun)
writes; the others read.
"""

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from roadmap.errors import ConfigError
from roadmap.files import write_atomically
from roadmap.network.steps import CONF_DIR, load_steps, searched_folders
from roadmap.records import checkpoint
from roadmap.records.checkpoint import CHECKPOINT_NAME
from roadmap.records.fingerprint import differences, fingerprint

METRICS_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_acc1", "val_acc5", "epoch_seconds",
                   "train_imgs_per_s"]
EMA_COLUMNS = ["ema_val_loss", "ema_val_acc1", "ema_val_acc5"]
SWEEP_ID_ENV = "ROADMAP_SWEEP_ID"  # set by the sweep callback: marks the records a sweep wrote

# What the headline numbers of result.json measure.
FIELD_NOTES = {
    "test_acc1": "top-1 % on the test split, final weights",
    "test_acc5": "top-5 % on the test split, final weights",
    "best_val_acc1": "best per-epoch top-1 % on the val split (see best_val_epoch)",
    "gflops": "fvcore total (conv, linear, norms, pooling) at input_size, batch 1, eval mode",
    "gflops_conv_linear": "conv + linear multiply-accumulates: the paper's GFLOPs",
    "train_imgs_per_s": "training images per second over all processes, mean over epochs",
    "wall_seconds": "wall time of the run from reading its data to its test result, summed over resumed attempts",
    "warning": "null, or why a completed run did not learn (chance-level top-1 or an exploded training loss)",
    "config": "the resolved settings that decide what was trained (roadmap.records.fingerprint.trained_config)",
    "config_fingerprint": "hash of config: a run is reused or resumed only under a config with the same one",
    "step_parent": "the step this one changes, as the roadmap stood when the run was launched",
    "step_adopted": "whether the step is on the path from ResNet-50 to ConvNeXt (false: a side branch)",
    "step_builtin": "whether the step is the project's (false: a step of the user's own folder)",
}


# Fields of records written before their rename, and their names now: analysis reads both.
RENAMED_FIELDS = {"acc1": "test_acc1", "acc5": "test_acc5", "ema_acc1": "ema_test_acc1", "ema_acc5": "ema_test_acc5",
                  "best_acc1": "best_val_acc1", "best_epoch": "best_val_epoch"}


def with_current_names(record: dict) -> dict:
    """A record (result.json, or a row of results.csv) with its fields under today's names."""
    return {RENAMED_FIELDS.get(key, key): value for key, value in record.items()}


# A training loss this many times that of a uniform guess has exploded, whatever the recipe's smoothing or mixing.
EXPLODED_LOSS_FACTOR = 5


def learning_warning(rows: list[dict], test_acc1: float, num_classes: int, test_images: int) -> str | None:
    """Why a run that completed with finite losses did not learn, or None. It did not if its test top-1 is within
    two standard errors (over `test_images`) of chance, 100 / num_classes, or if its last epoch's training loss
    is more than EXPLODED_LOSS_FACTOR x ln(num_classes), the loss of a uniform guess, where training starts."""
    chance = 1 / num_classes
    reasons = []
    if test_acc1 <= 100 * (chance + 2 * math.sqrt(chance * (1 - chance) / test_images)):
        reasons.append(f"test top-1 {test_acc1:.2f}% is no better than chance ({100 * chance:.2f}% for {num_classes} "
                       "classes)")
    start, last = math.log(num_classes), rows[-1]["train_loss"]
    if last > EXPLODED_LOSS_FACTOR * start:
        reasons.append(f"training loss {last:.4g} in the last epoch, {last / start:.0f}x that of a uniform guess")
    if not reasons:
        return None
    return f"did not learn: {'; '.join(reasons)}; try a lower recipe.lr or a smaller budget (budget=small)"


def git_commit() -> str | None:
    """The commit the code ran at, `+dirty` when the working tree differs from it."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def step_facts(name: str) -> dict:
    """Where the step sits in the roadmap this run's Hydra composed (the user's folders on its search path
    included): its parent, whether it is on the adopted path, whether it is built in. Empty when not found."""
    folders = searched_folders(HydraConfig.get().runtime.config_sources) if HydraConfig.initialized() else []
    step = next((step for step in load_steps(CONF_DIR, folders) if step.name == name), None)
    if step is None:
        return {}
    return {"step_parent": step.parent, "step_adopted": step.adopted, "step_builtin": step.builtin}


class RecordMismatch(ConfigError):
    """A run directory holds a run of another trained config: it is neither reused nor resumed."""


class RunRecord:
    def __init__(self, run_dir: Path, is_writer: bool = True):
        self.run_dir, self.is_writer = Path(run_dir), is_writer
        self.result_path = self.run_dir / "result.json"
        self.metrics_path = self.run_dir / "metrics.csv"
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME

    def read_result(self) -> dict | None:
        try:
            return with_current_names(json.loads(self.result_path.read_text()))
        except (OSError, json.JSONDecodeError):
            return None

    def completed_result(self) -> dict | None:
        """The result of a completed run, or None: the one test of whether a run is done (and not to be retrained)."""
        result = self.read_result()
        return result if result is not None and result.get("status") == "completed" else None

    def check_config(self, config: dict) -> str | None:
        """ConfigError, naming this directory and the first settings that differ, when it holds a completed or
        interrupted run of another trained config: reusing or resuming it would record a config it never ran.
        A note when its record predates recorded configs and so cannot be checked; else None."""
        # The config of a completed run is its result's, of an interrupted one its checkpoint's.
        saved = self.completed_result() or checkpoint.load(self.checkpoint_path, mmap=True)
        if saved is None:
            return None
        recorded = saved.get("config")
        if recorded is None:
            return f"{self.run_dir}: recorded before runs recorded their config; not checked against today's"
        if fingerprint(recorded) != fingerprint(config):
            raise RecordMismatch(f"{self.run_dir}: holds a run trained under another config "
                                 f"({differences(recorded, config)}); move or delete that directory to train this "
                                 "config there, or give hydra.run.dir=<dir>")
        return None

    def base_result(self, cfg: DictConfig, overrides: list[str], config: dict | None = None) -> dict:
        """The fields that say what was run; `config`: its trained config, where the config could be resolved."""
        fields = {
            "step": cfg.step, "roadmap": cfg.roadmap.name, "data": cfg.data.name, "recipe": cfg.recipe.name,
            "seed": cfg.seed, "overrides": list(overrides), "run_dir": str(self.run_dir),
            "torch_version": torch.__version__, "git_commit": git_commit(),
            "sweep_id": os.environ.get(SWEEP_ID_ENV), "field_notes": FIELD_NOTES,
        }
        if config is not None:
            fields |= {"config": config, "config_fingerprint": fingerprint(config)}
        return fields | step_facts(cfg.step)

    def write_result(self, result: dict) -> None:
        if self.is_writer:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self.result_path, lambda partial: partial.write_text(json.dumps(result, indent=2) + "\n"))

    def write_metrics(self, rows: list[dict]) -> None:
        """The whole table, rewritten from the rows kept in the checkpoint, so it always matches it."""
        if not self.is_writer:
            return
        columns = METRICS_COLUMNS + [c for c in EMA_COLUMNS if rows and c in rows[0]]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.metrics_path, lambda partial: partial.write_text(out.getvalue()))


class SweepSummary(Callback):
    """Ends a multirun with one line counting its runs by status, and a non-zero exit status if any did not
    complete. The jobs of this sweep are told apart by the id it puts in their environment (and so in their
    records): a job that failed still ran, and its record says why."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.time()
        os.environ[SWEEP_ID_ENV] = uuid.uuid4().hex

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_id, sweep_dir = os.environ.pop(SWEEP_ID_ENV), Path(config.hydra.sweep.dir)
        ran, skipped = [], 0
        for path in sweep_dir.rglob("result.json"):
            result = RunRecord(path.parent).read_result() or {}
            if result.get("sweep_id") == sweep_id:
                ran.append(result)
            elif (path.parent / ".hydra" / "overrides.yaml").stat().st_mtime >= self.started:
                skipped += 1  # launched by this sweep, found complete
        counts = Counter(r.get("status") for r in ran)
        not_completed = [r for r in ran if r.get("status") != "completed"]
        for result in ran:
            if result in not_completed:
                print(f"{result['status']}: {result['run_dir']}: {result.get('error')}", file=sys.stderr)
            elif result.get("warning"):
                print(f"warning: {result['run_dir']}: {result['warning']}", file=sys.stderr)
        print(f"sweep: {len(ran)} runs trained ({counts['completed']} completed, {counts['diverged']} diverged, "
              f"{counts['failed']} failed), {skipped} already complete; records under {sweep_dir}")
        if not_completed:
            sys.exit(1)
