"""Parts 3-5: real runs of run.py, as a user starts them, on a generated folder of JPEGs at ImageNet's sizes.

3. One process, `runtime.workers=auto`: train img/s and the share of training time spent waiting for the loader.
4. The same under `torchrun --nproc_per_node=1` (NCCL on a GPU, gloo on CPU).
5. `runtime.deterministic=true`: a run killed with SIGKILL after its first checkpoint, then rerun with the same
   command (it resumes), against an uninterrupted run of the same command in another directory: metrics.csv but
   its timings, every tensor and value of the state files both leave (the checkpoint: weights, optimizer,
   schedule, EMA, grad scaler, RNG states; or only the weights) and the test metrics must be equal, bit for bit.

Run directories live in a temporary folder (checkpoints of full-size networks are hundreds of MB); each run's
result.json, metrics.csv and output are copied to the report's folder.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from roadmap.machines.benchmark.pipeline import write_jpeg_folder
from roadmap.machines.gpu_check.plan import Plan
from roadmap.records import checkpoint

REPO = Path(__file__).resolve().parents[3]
TIMING_COLUMNS = ("epoch_seconds", "train_imgs_per_s")  # metrics.csv columns no rerun reproduces
RUN_FIELDS = ["run", "launcher", "step", "returncode", "seconds", "status", "error", "device", "world_size", "workers",
              "epochs", "train_imgs_per_s", "last_epoch_train_imgs_per_s", "loader_imgs_per_s", "loader_wait_fraction",
              "nccl_initialised", "log"]
POLL_S = 0.01
# What a completed run leaves of its state: its last checkpoint, or only its weights (runtime.keep).
STATE_FILES = (checkpoint.CHECKPOINT_NAME, "weights.pt")


def write_image_folder(root: Path, plan: Plan) -> dict:
    """`train/` (two classes) and `val/` of photo-like JPEGs at ImageNet's sizes, as analysis.benchmark's loader
    benchmark writes them: `unique_images` generated, the rest of `folder_images` hard links to them."""
    stats = write_jpeg_folder(root, plan.unique_images)
    generated = sorted((root / "train").rglob("*.JPEG"), key=lambda p: int(p.stem))
    for i in range(len(generated), plan.folder_images):
        os.link(generated[i % len(generated)], root / "train" / f"class{i % 2}" / f"{i}.JPEG")
    return stats | {"train_images": plan.folder_images, "unique_images": len(generated)}


def common_overrides(plan: Plan, root: Path) -> list[str]:
    threads = [f"runtime.threads={plan.run_threads}"] if plan.run_threads else []
    return ["data=imagefolder", f"data.root={root}", "data.num_classes=2", f"data.image_size={plan.image_size}",
            f"data.val_size={plan.val_size}", f"budget.epochs={plan.run_epochs}", "runtime.progress=false",
            *threads, *plan.model_overrides]


def loader_overrides(plan: Plan, root: Path) -> list[str]:
    return [f"+step={plan.loader_step}", *common_overrides(plan, root), f"budget.batch={plan.loader_batch}"]


def resume_overrides(plan: Plan, root: Path) -> list[str]:
    return [f"+step={plan.resume_step}", *common_overrides(plan, root), f"budget.batch={plan.resume_batch}",
            f"budget.train_subset={plan.resume_images}", "runtime.deterministic=true"]


def command(overrides: list[str], run_dir: Path, torchrun: bool = False) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"] if torchrun \
        else [sys.executable]
    return [*launcher, str(REPO / "run.py"), *overrides, f"hydra.run.dir={run_dir}"]


@dataclass
class Launched:
    name: str
    argv: list[str]
    run_dir: Path
    log: Path
    process: subprocess.Popen
    started: float

    def finish(self, deadline: float) -> tuple[int | None, float]:
        """(exit status, or None when killed at `deadline`; seconds since the start)."""
        try:
            returncode = self.process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = None
        return returncode, time.monotonic() - self.started

    def kill(self) -> None:
        """SIGKILL to the run and its loader workers (its own process group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def launch(name: str, argv: list[str], run_dir: Path, logs: Path, env: dict | None = None) -> Launched:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=os.environ | (env or {}))
    return Launched(name, argv, run_dir, log, process, time.monotonic())


def read_record(run_dir: Path) -> tuple[dict, list[dict]]:
    """result.json (or {}) and the metrics.csv rows of a run directory."""
    result_path, metrics_path = run_dir / "result.json", run_dir / "metrics.csv"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    rows = list(csv.DictReader(metrics_path.open())) if metrics_path.is_file() else []
    return result, rows


def keep_record(run_dir: Path, out: Path, name: str) -> None:
    """The run's result.json and metrics.csv under `out/runs/<name>/`."""
    kept = out / "runs" / name
    kept.mkdir(parents=True, exist_ok=True)
    for file in ("result.json", "metrics.csv"):
        if (run_dir / file).is_file():
            shutil.copy(run_dir / file, kept / file)


def run_row(launched: Launched, returncode: int | None, seconds: float, out: Path, launcher: str) -> dict:
    result, rows = read_record(launched.run_dir)
    keep_record(launched.run_dir, out, launched.name)
    log = launched.log.read_text(errors="replace")
    return {
        "run": launched.name, "launcher": launcher, "step": result.get("step", ""),
        "returncode": "killed at the time cap" if returncode is None else returncode, "seconds": seconds,
        "status": result.get("status", "no result.json"), "error": result.get("error") or "",
        "device": result.get("device", ""), "world_size": result.get("world_size", ""),
        "workers": result.get("workers", ""), "epochs": result.get("epochs", len(rows)),
        "train_imgs_per_s": result.get("train_imgs_per_s", ""),
        "last_epoch_train_imgs_per_s": float(rows[-1]["train_imgs_per_s"]) if rows else "",
        "loader_imgs_per_s": result.get("loader_imgs_per_s", ""),
        "loader_wait_fraction": result.get("loader_wait_fraction", ""),
        "nccl_initialised": "NCCL version" in log, "log": str(launched.log.relative_to(out)),
    }


def loader_run(plan: Plan, root: Path, work: Path, out: Path, deadline: float, torchrun: bool) -> dict:
    """One run of the loader's configuration; with `torchrun`, under torchrun with one process. NCCL_DEBUG=VERSION
    makes NCCL print its version when it creates a communicator: the log says whether one was created."""
    name = "torchrun" if torchrun else "loader"
    run_dir = work / name
    launched = launch(name, command(loader_overrides(plan, root), run_dir, torchrun), run_dir, out / "logs",
                      env={"NCCL_DEBUG": "VERSION"} if torchrun else None)
    returncode, seconds = launched.finish(deadline)
    return run_row(launched, returncode, seconds, out, "torchrun --nproc_per_node=1" if torchrun else "python")


def flatten(tree, prefix: str = "") -> dict:
    """Nested dicts and lists as {dotted path: leaf}."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    flat = {}
    for key, value in items:
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def reproducible(states: dict) -> dict:
    """The entries of state files a deterministic rerun must reproduce: all but wall times."""
    return {key: value for key, value in flatten(states).items()
            if not key.endswith(("wall_seconds", *(f".{c}" for c in TIMING_COLUMNS)))}


def differences(a: dict, b: dict) -> tuple[int, list[str]]:
    """(tensors compared, the keys whose values differ in dtype, shape or any bit, or that only one side has)."""
    differ, tensors = sorted(set(a) ^ set(b)), 0
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if torch.is_tensor(x) and torch.is_tensor(y):
            tensors += 1
            same = x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
        else:
            same = x == y
        if not same:
            differ.append(key)
    return tensors, differ


def final_states(a: Path, b: Path) -> tuple[dict, dict]:
    """The state files two completed runs both left, entry by entry: {file: its state} for each."""
    both = [name for name in STATE_FILES if (a / name).is_file() and (b / name).is_file()]
    return tuple({name: checkpoint.load(run_dir / name) for name in both} for run_dir in (a, b))


def resumed_after(log: Path) -> int | None:
    """The epoch a rerun says it resumed after (roadmap.training.train prints `resuming <dir> after epoch N`)."""
    found = re.findall(r"resuming .* after epoch (\d+)", log.read_text(errors="replace"))
    return int(found[-1]) if found else None


def kill_and_resume(plan: Plan, root: Path, work: Path, out: Path, deadline: float) -> tuple[list[dict], dict]:
    """The uninterrupted run and the killed one side by side, then the rerun of the killed one; their run rows and
    the comparison."""
    overrides = resume_overrides(plan, root)
    whole_dir, killed_dir = work / "deterministic_whole", work / "deterministic_killed"
    whole = launch("deterministic_whole", command(overrides, whole_dir), whole_dir, out / "logs")
    killed = launch("deterministic_killed", command(overrides, killed_dir), killed_dir, out / "logs")
    saved = killed_dir / checkpoint.CHECKPOINT_NAME
    while killed.process.poll() is None and not saved.exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    interrupted = killed.process.poll() is None
    if interrupted:
        killed.kill()
    killed_returncode, killed_seconds = killed.finish(deadline)
    state = checkpoint.load(saved)
    epochs_at_kill = len(state["metrics"]) if state else 0
    finished_before_kill = (killed_dir / "result.json").exists()
    rows = [run_row(killed, killed_returncode, killed_seconds, out, "python, SIGKILL after its first checkpoint")]

    resumed = launch("deterministic_resumed", command(overrides, killed_dir), killed_dir, out / "logs")
    rows.append(run_row(resumed, *resumed.finish(deadline), out, "python, the same command again"))
    rows.insert(0, run_row(whole, *whole.finish(deadline), out, "python, uninterrupted"))

    whole_result, whole_rows = read_record(whole_dir)
    resumed_result, resumed_rows = read_record(killed_dir)
    whole_state, resumed_state = final_states(whole_dir, killed_dir)
    compared, differing = differences(reproducible(whole_state), reproducible(resumed_state))
    untimed = [[{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]
               for rows in (whole_rows, resumed_rows)]
    differing_epochs = [i + 1 for i, (a, b) in enumerate(zip(*untimed)) if a != b]
    test_keys = ("test_acc1", "test_acc5", "test_loss")
    comparison = {
        "killed": interrupted and not finished_before_kill, "epochs_at_kill": epochs_at_kill,
        "epochs": plan.run_epochs, "resumed_after_epoch": resumed_after(resumed.log),
        "both_completed": whole_result.get("status") == resumed_result.get("status") == "completed",
        "metrics_equal": len(untimed[0]) == len(untimed[1]) == plan.run_epochs and not differing_epochs,
        "first_differing_epoch": differing_epochs[0] if differing_epochs else "",
        "state_files": " ".join(whole_state), "tensors_compared": compared, "values_differing": len(differing),
        "first_differing": " ".join(differing[:3]),
        "test_metrics_equal": bool(whole_result) and all(whole_result.get(k) == resumed_result.get(k)
                                                          for k in test_keys),
    }
    comparison["passed"] = (comparison["killed"] and 0 < epochs_at_kill < plan.run_epochs
                            and comparison["resumed_after_epoch"] == epochs_at_kill and comparison["both_completed"]
                            and comparison["metrics_equal"] and compared > 0 and not differing
                            and comparison["test_metrics_equal"])
    return rows, comparison


def run_verdict(row: dict) -> tuple[str, str]:
    """(status, note) of a run: passed when it exited 0 with a completed record; capped when killed at the cap."""
    if row["returncode"] == 0 and row["status"] == "completed":
        return "passed", f"exit 0, {row['status']}"
    status = "capped" if not isinstance(row["returncode"], int) else "failed"
    return status, f"exit {row['returncode']}, {row['status']}" + (f": {row['error']}" if row["error"] else "")


def resume_verdict(rows: list[dict], comparison: dict) -> tuple[str, str]:
    """(status, note) of the kill-and-resume part: the runs that did not complete, else what differs."""
    if comparison["passed"]:
        return "passed", f"{comparison['tensors_compared']} tensors equal"
    verdicts = {r["run"]: run_verdict(r) for r in rows if r["run"] != "deterministic_killed"}
    if any(status != "passed" for status, _ in verdicts.values()):
        status = "capped" if any(status == "capped" for status, _ in verdicts.values()) else "failed"
        return status, "; ".join(f"{run}: {note}" for run, (s, note) in verdicts.items() if s != "passed")
    problems = []
    if not comparison["killed"]:
        problems.append("the run ended before it could be killed")
    if comparison["resumed_after_epoch"] != comparison["epochs_at_kill"]:
        problems.append(f"the rerun did not resume after epoch {comparison['epochs_at_kill']}")
    if comparison["first_differing_epoch"]:
        problems.append(f"metrics differ from epoch {comparison['first_differing_epoch']}")
    if comparison["values_differing"]:
        problems.append(f"{comparison['values_differing']} of {comparison['tensors_compared']} tensors differ")
    if not comparison["tensors_compared"]:
        problems.append("no state file to compare")
    if not comparison["test_metrics_equal"]:
        problems.append("test metrics differ")
    return "failed", "; ".join(problems)
