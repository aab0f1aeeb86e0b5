"""Sweeps through Hydra's launchers: a job that fails or diverges is recorded and counted, not fatal (a job that
cannot be set up stops the sweep before it starts: test_errors.py); finished runs are not redone."""

import json
import os

from conftest import run_cli


def _results(cwd) -> dict[str, dict]:
    return {str(p.parent): json.loads(p.read_text()) for p in (cwd / "runs").rglob("result.json")}


def _without(overrides, key):
    return [o for o in overrides if not o.startswith(f"{key}=")]


def test_joblib_sweep_survives_a_diverging_job(tiny_run, tmp_path):
    # recipe.lr=1e12 makes the loss NaN: that job diverges, the other three complete.
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "recipe.lr=0.05,0.1,0.2,1.0e+12",
            *_without(_without(tiny_run, "runtime.threads"), "runtime.workers"),
            "runtime.workers=1"]  # loader workers inside joblib's workers
    done = run_cli(args, tmp_path, env={"OMP_NUM_THREADS": ""})
    assert done.returncode == 1
    assert "sweep: 4 runs trained (3 completed, 1 diverged, 0 failed)" in done.stdout
    results = _results(tmp_path)
    assert sorted(r["status"] for r in results.values()) == ["completed", "completed", "completed", "diverged"]
    (diverged,) = [r for r in results.values() if r["status"] == "diverged"]
    assert "training loss became" in diverged["error"] and float(diverged["overrides"][0].split("=")[1]) == 1e12
    assert len(set(results)) == 4  # a directory per job
    # Two jobs at a time on this machine's cores: each job's torch gets its share of the threads.
    share = max(1, os.cpu_count() // 2)
    assert {r["torch_threads"] for r in results.values() if r["status"] == "completed"} == {share}


def test_submitit_local_sweep(tiny_run, tmp_path):
    done = run_cli(["-m", "hydra/launcher=submitit_local", "seed=0,1", *tiny_run], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sweep: 2 runs trained (2 completed, 0 diverged, 0 failed)" in done.stdout
    assert sorted(p.rsplit("/", 1)[1] for p in _results(tmp_path)) == ["seed=0", "seed=1"]


def test_rerun_of_a_finished_sweep_trains_nothing(tiny_run, tmp_path):
    args = ["-m", "seed=0,1", *tiny_run]
    assert run_cli(args, tmp_path).returncode == 0
    records = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.name in ("result.json", "weights.pt")}
    again = run_cli(args, tmp_path)
    assert again.returncode == 0
    assert "sweep: 0 runs trained (0 completed, 0 diverged, 0 failed), 2 already complete" in again.stdout
    assert again.stdout.count("already complete, not retrained") == 2
    assert {p: p.read_bytes() for p in records} == records
