"""A run's record is true to the config it was trained under: it is reused or resumed only under the same trained
config, refused in one line otherwise, and a completed run keeps its weights, not its optimizer state."""

import json

import pytest
import torch
from conftest import interrupt_at_second_epoch, run_cli

from roadmap import build_model, compose
from roadmap.records import checkpoint
from roadmap.training import train
from roadmap.records.fingerprint import differences, fingerprint, trained_config
from roadmap.records.record import RecordMismatch, RunRecord


def _run(overrides, run_dir):
    return train.run(compose(overrides), run_dir, overrides)


def test_trained_config_leaves_out_how_a_run_runs_and_model_switches_at_their_defaults(tiny_run):
    config = trained_config(compose(tiny_run))
    assert "runtime" not in config and "logger" not in config and "root" not in config["data"]
    assert "depthwise" not in config["model"] and config["model"]["widths"] == [8, 16, 32, 64]
    assert trained_config(compose([*tiny_run, "+step=depthwise"]))["model"]["depthwise"] is True
    assert fingerprint(config) == fingerprint(trained_config(compose([*tiny_run, "runtime.threads=2"])))
    assert fingerprint(config) != fingerprint(trained_config(compose([*tiny_run, "recipe.lr=0.2"])))


def test_differences_name_the_first_settings_that_differ():
    recorded = {"recipe": {"lr": 0.1, "name": "original"}, "seed": 0, "gone": 1}
    now = {"recipe": {"lr": 0.2, "name": "original"}, "seed": 1}
    assert differences(recorded, now) == ("recipe.lr: recorded 0.1, now 0.2; seed: recorded 0, now 1; "
                                          "gone: recorded 1, now (absent)")
    assert differences(recorded, now, limit=1) == "recipe.lr: recorded 0.1, now 0.2 and 2 more"


def test_a_completed_run_is_not_reused_under_another_config(tiny_run, tmp_path):
    first = _run(tiny_run, tmp_path)
    assert first["config_fingerprint"] == fingerprint(first["config"])
    before = (tmp_path / "result.json").read_text()
    with pytest.raises(RecordMismatch, match=r"recipe\.lr: recorded 0\.1, now 0\.2"):
        _run([*tiny_run, "recipe.lr=0.2"], tmp_path)
    assert (tmp_path / "result.json").read_text() == before


def test_an_interrupted_run_is_not_resumed_under_another_config(tiny_run, tmp_path, monkeypatch):
    interrupt_at_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_run, tmp_path)
    saved = (tmp_path / checkpoint.CHECKPOINT_NAME).read_bytes()
    assert not (tmp_path / "result.json").exists()
    with pytest.raises(RecordMismatch, match=r"budget\.epochs: recorded 2, now 3"):
        _run([*tiny_run, "budget.epochs=3"], tmp_path)
    assert (tmp_path / checkpoint.CHECKPOINT_NAME).read_bytes() == saved


def test_a_record_from_before_configs_were_recorded_is_read_and_says_so(tiny_run, tmp_path):
    first = _run(tiny_run, tmp_path)
    old = {k: v for k, v in first.items() if k not in ("config", "config_fingerprint")}
    (tmp_path / "result.json").write_text(json.dumps(old))
    note = RunRecord(tmp_path).check_config(trained_config(compose(tiny_run)))
    assert "recorded before runs recorded their config" in note
    assert _run(tiny_run, tmp_path)["test_acc1"] == first["test_acc1"]


@pytest.mark.parametrize("keep, files", [("weights", {"weights.pt"}), ("all", {"checkpoint.pt"}), ("none", set())])
def test_a_completed_run_keeps_what_runtime_keep_says(tiny_run, tmp_path, keep, files):
    _run([*tiny_run, "recipe.ema=true", f"runtime.keep={keep}"], tmp_path)
    assert {p.name for p in tmp_path.glob("*.pt")} == files
    if keep == "weights":
        saved = checkpoint.load(tmp_path / checkpoint.WEIGHTS_NAME)
        model = build_model(compose(tiny_run).model)
        model.load_state_dict(saved["model"])
        model.load_state_dict(saved["ema"])
        assert saved["config"] == json.loads((tmp_path / "result.json").read_text())["config"]
        assert not any("optimizer" in key for key in saved)


def _tamper_recorded_lr(result_file, lr):
    result = json.loads(result_file.read_text())
    result["config"]["recipe"]["lr"] = lr
    result_file.write_text(json.dumps(result))


def test_run_py_refuses_a_record_of_another_config_before_writing_anything(tiny_run, tmp_path):
    assert run_cli(tiny_run, tmp_path).returncode == 0
    (result_file,) = (tmp_path / "runs").rglob("result.json")
    _tamper_recorded_lr(result_file, 0.3)  # as if conf/recipe/original.yaml's lr had been 0.3 then
    written = {p: p.stat().st_mtime_ns for p in result_file.parent.rglob("*")}

    again = run_cli(tiny_run, tmp_path)
    assert again.returncode == 2
    (line,) = again.stderr.strip().splitlines()
    run_dir = result_file.parent.relative_to(tmp_path)
    assert line.startswith(f"error: {run_dir}: holds a run trained under another config")
    assert "recipe.lr: recorded 0.3, now 0.1" in line
    assert {p: p.stat().st_mtime_ns for p in result_file.parent.rglob("*")} == written  # .hydra/ included


def test_a_sweep_names_each_job_whose_record_differs_before_the_first_job_starts(tiny_run, tmp_path):
    assert run_cli(["-m", "seed=0,1", *tiny_run], tmp_path).returncode == 0
    result_file = next(p for p in (tmp_path / "runs").rglob("result.json") if p.parent.name == "seed=1")
    _tamper_recorded_lr(result_file, 0.3)
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*")}

    again = run_cli(["-m", "seed=0,1,2", *tiny_run], tmp_path)
    assert again.returncode == 2
    (line,) = again.stderr.strip().splitlines()
    assert line.startswith("error: job 2 of 3 (seed=1): ") and "recipe.lr: recorded 0.3, now 0.1" in line
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*")} == written


@pytest.mark.parametrize("override", ["model.depthwise=2", "runtime.progress=1", "budget.zero_init_last.sgd=yes"])
def test_booleans_are_booleans(tiny_run, tmp_path, override):
    done = run_cli([*tiny_run, override], tmp_path)
    key, value = override.split("=")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: {key}={value if value.isdigit() else repr(value)}: must be true or false"]
    assert not (tmp_path / "runs").exists()


def test_weights_load_into_the_plain_network(tiny_run, tmp_path):
    _run(tiny_run, tmp_path)
    plain = build_model(compose(tiny_run).model, fast=False)
    plain.load_state_dict(checkpoint.load(tmp_path / checkpoint.WEIGHTS_NAME)["model"])
    assert all(torch.isfinite(p).all() for p in plain.parameters())


def test_the_analysis_takes_a_runs_facts_from_its_record(tiny_run, tmp_path):
    from analysis.aggregate import load_run

    assert run_cli([*tiny_run, "+step=patchify"], tmp_path).returncode == 0
    (result_file,) = (tmp_path / "runs").rglob("result.json")
    result = json.loads(result_file.read_text())
    assert (result["step_parent"], result["step_adopted"], result["step_builtin"]) == ("stage_ratio", True, True)
    hydra_config = result_file.parent / ".hydra" / "config.yaml"
    hydra_config.write_text(hydra_config.read_text().replace("epochs: 2", "epochs: 99"))  # a later launch's

    row = load_run(result_file)
    assert row["budget.epochs"] == 2 and row["model.stem"] == "patchify" and row["config_source"] == "result.json"
    old = {k: v for k, v in result.items() if k not in ("config", "config_fingerprint")}
    result_file.write_text(json.dumps(old))
    row = load_run(result_file)
    assert row["budget.epochs"] == 99 and row["config_source"].startswith(".hydra/config.yaml")
