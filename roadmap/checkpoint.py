"""Checkpoints that survive a kill mid-save and restore a run exactly: weights, optimizer, schedule, EMA, scaler,
RNG states and the epoch reached."""

import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


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


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` a temporary file in the same folder, then rename it over `path`: a kill leaves the old file whole."""
    partial = path.with_name(f".{path.name}.partial{os.getpid()}")
    write(partial)
    os.replace(partial, path)


def save(path: Path, state: dict) -> None:
    write_atomically(path, lambda partial: torch.save(state, partial))


def load(path: Path) -> dict | None:
    """The state saved at `path` (tensors on CPU), or None when there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
