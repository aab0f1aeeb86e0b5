"""Checkpoints that survive a kill mid-save and restore a run exactly: weights, optimizer, schedule, EMA, scaler,
RNG states and the epoch reached."""

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from roadmap.files import write_atomically

CHECKPOINT_NAME = "checkpoint.pt"  # all a run needs to go on: written every epoch
WEIGHTS_NAME = "weights.pt"  # what a completed run keeps by default: its weights and EMA weights


class Resumable(Protocol):
    """What a checkpoint saves and restores: the trainer (roadmap.training.train.Trainer) as this module sees it."""

    rank: int
    world_size: int
    model: nn.Module
    ema: nn.Module | None  # an AveragedModel, whose `module` is the EMA network

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def rng_states() -> dict:
    # numpy's state as tensors and ints, so that `torch.load(weights_only=True)` reads it back.
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached_gaussian)}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, state: dict) -> None:
    write_atomically(path, lambda partial: torch.save(state, partial))


def load(path: Path, mmap: bool = False) -> dict | None:
    """The state saved at `path` (tensors on CPU), or None when there is none. `mmap`: tensors are read from the
    file only when used (a quick look at the rest)."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


@dataclass
class RunState:
    """Where a run stands: the metrics row of every finished epoch and the wall time of its earlier attempts.

    Saved at the end of every epoch together with the trainer's state (model, optimizer, schedule, EMA, grad
    scaler) and every process's RNG states; loading restores all of them, so a resumed run goes on exactly.
    """

    config: dict  # the trained config (roadmap.records.fingerprint): a checkpoint says what it is a checkpoint of
    metrics: list[dict] = field(default_factory=list)
    earlier_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def epochs(self) -> int:
        """Epochs finished."""
        return len(self.metrics)

    def wall_seconds(self) -> float:
        """Wall time of the run, over every attempt."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def summary(self) -> dict:
        """The record's fields about the epochs: how many, wall time, best val top-1, mean training speed."""
        fields = {"epochs": self.epochs, "wall_seconds": self.wall_seconds()}
        if self.metrics:
            best = max(self.metrics, key=lambda row: row["val_acc1"])
            fields |= {"best_val_acc1": best["val_acc1"], "best_val_epoch": best["epoch"],
                       "train_imgs_per_s": sum(row["train_imgs_per_s"] for row in self.metrics) / self.epochs}
        return fields

    def save(self, path: Path, trainer: Resumable, rng: list[dict]) -> None:
        """The writer saves the checkpoint; `rng`: every process's `rng_states()`, in rank order."""
        save(path, {"trainer": trainer.state_dict(), "rng": rng, "metrics": self.metrics,
                    "wall_seconds": self.wall_seconds(), "config": self.config})

    @classmethod
    def load(cls, path: Path, trainer: Resumable, config: dict, started: float) -> "RunState":
        """The state saved at `path`, restored into `trainer` and this process's RNGs; a new one when none is.
        The caller has checked that the checkpoint's config is `config` (RunRecord.check_config). `started`: when
        this attempt began (time.perf_counter), its data and model built since."""
        saved = load(path)
        if saved is None:
            return cls(config, started=started)
        trainer.load_state_dict(saved["trainer"])
        # Each process continues its own random stream (rank 0's when the number of processes changed).
        rng = saved["rng"]
        set_rng_states(rng[trainer.rank] if len(rng) == trainer.world_size else rng[0])
        return cls(config, saved["metrics"], saved["wall_seconds"], started)


def keep_after_completion(run_dir: Path, trainer: Resumable, config: dict, keep: str) -> None:
    """What a completed run keeps of its state (`runtime.keep`): `weights` writes WEIGHTS_NAME (the model's
    state dict, the EMA model's or None, the trained config) and drops the checkpoint; `all` keeps the checkpoint;
    `none` drops it. Call it after the result is written: a kill before leaves a run that resumes and completes."""
    if keep == "weights":
        ema = trainer.ema.module.state_dict() if trainer.ema is not None else None
        save(run_dir / WEIGHTS_NAME, {"model": trainer.model.state_dict(), "ema": ema, "config": config})
    if keep != "all":
        (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
