"""`python run.py` end to end: the run directory, the summary, re-running, and the status of a run that does not
learn (bad command lines: test_errors.py)."""

import json

from conftest import run_cli

from roadmap.records.record import learning_warning


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
    assert "budget.batch=32" in relative[3] and "runtime" not in relative[3]  # how-to-run keys stay out of the name
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "metrics.csv").is_file()
    assert "test top-1" in first.stdout and str(run_dir) in first.stdout and "warning" not in first.stdout
    assert json.loads(result_file.read_text())["warning"] is None

    before = result_file.read_text()
    again = run_cli(args, tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout and str(run_dir) in again.stdout
    assert result_file.read_text() == before


def test_diverged_run_exits_with_its_status(tiny_run, tmp_path):
    done = run_cli([*tiny_run, "recipe.lr=1.0e+12"], tmp_path)
    assert done.returncode == 3
    (result_file,) = _result_files(tmp_path)
    assert json.loads(result_file.read_text())["status"] == "diverged"


def test_run_whose_loss_explodes_is_flagged(tiny_run, tmp_path):
    done = run_cli([*tiny_run, "recipe.lr=100"], tmp_path)  # finite losses, 1e7 in the first epoch
    assert done.returncode == 0, done.stderr
    (result_file,) = _result_files(tmp_path)
    result = json.loads(result_file.read_text())
    assert result["status"] == "completed"
    warning = result["warning"]
    assert warning.startswith("did not learn: test top-1") and "x that of a uniform guess" in warning
    assert f"warning: {warning}" in done.stdout


def test_not_learning_is_chance_level_top1_or_a_training_loss_far_above_a_uniform_guess():
    healthy = [{"train_loss": 0.5}]
    assert learning_warning(healthy, 86.0, 10, 10_000) is None
    assert learning_warning(healthy, 11.0, 10, 10_000) is None  # 10% + 2 standard errors = 10.6%
    assert "10.50% is no better than chance (10.00% for 10 classes)" in learning_warning(healthy, 10.5, 10, 10_000)
    assert "no better than chance" in learning_warning(healthy, 50.0, 3, 30)  # 30 test images: 33% +- 8.6%
    assert learning_warning([{"train_loss": 11.0}], 86.0, 10, 10_000) is None  # < 5 x ln(10) = 11.5
    assert "training loss 12 in the last epoch, 5x" in learning_warning([{"train_loss": 12.0}], 86.0, 10, 10_000)
