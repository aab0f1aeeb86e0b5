"""A design search with Hydra's Optuna sweeper (`+search=`, roadmap.records.search): trials scored from their runs'
records, a study that resumes after kill -9, the Pareto front's analysis, bad search settings in one line."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from conftest import REPO, run_cli

from analysis import search as search_analysis
from analysis.__main__ import main as analysis_main
from roadmap.records.search import OBJECTIVE_FIELDS

# Three switches of conf/search/roadmap.yaml's space searched (act, norm, depthwise), the others fixed by the command
# line as the Optuna sweeper takes them, on the tiny runs' tiny network.
NARROW = ["model.stem=patchify", "model.block=bottleneck", "model.kernel_size=3", "model.fewer_acts=false",
          "model.fewer_norms=false", "model.downsample=strided"]


def study(sweep_dir, name="roadmap") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/optuna.db")


def records(sweep_dir) -> dict:
    return {p.parent: json.loads(p.read_text()) for p in sweep_dir.rglob("result.json")}


def search(tiny_run, sweep_dir, *extra, search_name="roadmap"):
    return run_cli(["-m", f"+search={search_name}", f"hydra.sweep.dir={sweep_dir}", *tiny_run, *NARROW, *extra],
                   sweep_dir.parent)


def test_three_trials_are_scored_from_their_records_and_a_rerun_trains_nothing(tiny_run, tmp_path):
    sweep_dir = tmp_path / "search"
    done = search(tiny_run, sweep_dir, "hydra.sweeper.n_trials=3")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = study(sweep_dir).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    runs = records(sweep_dir)
    assert len(runs) == len({json.dumps(t.params, sort_keys=True) for t in trials})  # one record per design
    by_design = {(r["config"]["model"].get("act", "relu"), r["config"]["model"].get("norm", "batch"),
                  r["config"]["model"].get("depthwise", False)): r for r in runs.values()}
    for trial in trials:
        record = by_design[(trial.params["model.act"], trial.params["model.norm"], trial.params["model.depthwise"])]
        assert trial.values == [record["test_acc1"]]
    for record in runs.values():  # the fields a search may optimise are numbers of a completed run's record
        assert all(isinstance(record[f], (int, float)) for f in OBJECTIVE_FIELDS if not f.startswith("ema_"))

    mtimes = {d: (d / "result.json").stat().st_mtime for d in runs}
    again = search(tiny_run, sweep_dir, "hydra.sweeper.n_trials=3")
    assert again.returncode == 0 and "0 runs trained" in again.stdout + again.stderr
    assert len(study(sweep_dir).trials) == 3
    assert {d: (d / "result.json").stat().st_mtime for d in runs} == mtimes


def test_two_seeds_a_trial_score_their_mean_and_keep_both_records(tiny_run, tmp_path):
    sweep_dir = tmp_path / "search"
    done = search(tiny_run, sweep_dir, "hydra.sweeper.n_trials=1", "search.seeds=2", "seed=3",
                  search_name="roadmap_pareto")
    assert done.returncode == 0, done.stderr[-3000:]
    (trial,) = study(sweep_dir, "roadmap_pareto").trials
    runs = sorted(records(sweep_dir).values(), key=lambda r: r["seed"])
    assert [r["seed"] for r in runs] == [3, 4]
    assert trial.values == pytest.approx([sum(r["test_acc1"] for r in runs) / 2, runs[0]["gflops_conv_linear"]])
    assert trial.user_attrs["seed_values"] == [[r["test_acc1"], r["gflops_conv_linear"]] for r in runs]

    out = tmp_path / "analysis"
    assert analysis_main([str(sweep_dir), "--out", str(out)]) == 0
    (row,) = search_analysis.search_table(search_analysis.aggregate.load_runs([sweep_dir])).itertuples()
    assert row.n == 2 and row.pareto and not math.isnan(row.test_acc1_ci95)
    assert (out / "search_pareto.png").stat().st_size > 0 and "| Pareto |" in (out / "search.md").read_text()


def _running_trials(db) -> int:
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked
        return 0


def _completed_trials(db) -> int:
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_search_killed_mid_trial_continues_without_rerunning_finished_trials(tiny_run, tmp_path):
    sweep_dir, db = tmp_path / "search", tmp_path / "search" / "optuna.db"
    command = [sys.executable, str(REPO / "run.py"), "-m", "+search=roadmap", f"hydra.sweep.dir={sweep_dir}",
               *tiny_run, *NARROW, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    # Killed while a trial's run trains: a trial has finished, another is running and its run directory exists.
    while not (_completed_trials(db) >= 1 and _running_trials(db) == 1
               and len(list(sweep_dir.glob("design=*"))) > _completed_trials(db)) and time.monotonic() < deadline:
        assert process.poll() is None, "the search ended before it could be killed"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {t.number: t.values for t in study(sweep_dir).trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(finished) >= 1
    interrupted = [t.params for t in study(sweep_dir).trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(interrupted) == 1
    before = {d: (d / "result.json").stat().st_mtime for d in records(sweep_dir)}

    done = run_cli(command[2:], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = study(sweep_dir).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3  # n_trials in all, not 3 more
    assert {t.number: t.values for t in complete if t.number in finished} == finished
    assert interrupted[0] in [t.params for t in complete]  # the interrupted design ran again
    after = records(sweep_dir)
    assert all(after[d]["status"] == "completed" for d in after)
    assert {d: (d / "result.json").stat().st_mtime for d in before} == before  # finished runs not retrained


@pytest.mark.parametrize("search_file, extra, says", [
    ("model.nope: choice(1, 2)", [], "search space: model.nope: unknown setting"),
    ("model.act: choice()", [], "search space: model.act=choice(): ValueError while evaluating 'choice()': "
                                "empty choice is not legal"),
    ("model.act: choice(relu, swish)", [], "search space: model.act=swish: model.act='swish': must be one of"),
    ("seed: choice(0, 1)", [], "search space: seed: set by search.seeds"),
    ("model.act: choice(relu, gelu)", ["+search.objectives.accuracy=maximize"],
     "search.objectives.accuracy: names no numeric field of result.json"),
    ("model.act: choice(relu, gelu)", ["search.objectives.test_acc1=up"],
     "search.objectives={'test_acc1': 'up'}: must be a non-empty mapping of result.json fields to maximize or"),
])
def test_bad_search_stops_in_one_line_before_any_trial(tiny_run, tmp_path, search_file, extra, says):
    own = tmp_path / "own" / "search"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - roadmap\n  - _self_\n\n"
                                   f"hydra:\n  sweeper:\n    params:\n      {search_file}\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run_cli(["-m", "--config-dir", str(tmp_path / "own"), "+search=mine", f"hydra.sweep.dir={cwd}/search",
                    *tiny_run, *extra], cwd)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and says in done.stderr, done.stderr
    assert list(cwd.iterdir()) == []


def test_gap_intervals_match_scipy():
    from scipy import stats as scipy_stats

    from analysis import stats

    a, b = [88.1, 89.4, 88.7], [87.0, 87.9, 86.2, 87.5]
    low, high = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert stats.welch_half_width(a, b) == pytest.approx((high - low) / 2)
    # One run against n: the pooled interval with the one run's variance taken to be the others'.
    low, high = scipy_stats.ttest_ind([90.0], b, equal_var=True).confidence_interval()
    assert stats.one_run_gap_half_width(b) == pytest.approx((high - low) / 2)
    assert math.isnan(stats.one_run_gap_half_width([87.0])) and math.isnan(stats.welch_half_width([1.0], b))
