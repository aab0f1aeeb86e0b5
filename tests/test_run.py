"""`python run.py` end to end: the run directory, the summary, re-running, and one-line errors on bad input."""

import json

import pytest
from conftest import run_cli


def _result_files(cwd):
    return sorted((cwd / "runs").rglob("result.json"))


def test_run_records_under_a_name_and_is_not_retrained(tiny_run, tmp_path):
    args = ["seed=3", *tiny_run]
    first = run_cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    (result_file,) = _result_files(tmp_path)
    run_dir = result_file.parent
    relative = run_dir.relative_to(tmp_path / "runs").parts
    assert relative[:3] == ("tiny", "fashion_mnist", "resnet") and relative[-1] == "seed=3"
    assert "recipe.batch=32" in relative[3] and "runtime" not in relative[3]  # how-to-run keys stay out of the name
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "metrics.csv").is_file()
    assert "test top-1" in first.stdout and str(run_dir) in first.stdout

    before = result_file.read_text()
    again = run_cli(args, tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout and str(run_dir) in again.stdout
    assert result_file.read_text() == before


@pytest.mark.parametrize("bad, says", [
    (["+step=nope"], "step=nope: unknown step"),
    (["nope=1"], "Could not override 'nope'"),
    (["data=nope"], "data=nope: no such config"),
    (["data.root={tmp}/empty", "data.packaged_dir={tmp}/none"], "dataset-fashion-mnist"),
])
def test_bad_input_stops_before_anything_is_written(tmp_path, bad, says):
    done = run_cli([arg.format(tmp=tmp_path) for arg in bad], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and says in done.stderr
    assert not (tmp_path / "runs").exists()


def test_diverged_run_exits_with_its_status(tiny_run, tmp_path):
    done = run_cli([*tiny_run, "recipe.lr=1.0e+12"], tmp_path)
    assert done.returncode == 3
    (result_file,) = _result_files(tmp_path)
    assert json.loads(result_file.read_text())["status"] == "diverged"
