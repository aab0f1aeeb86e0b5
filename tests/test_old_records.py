"""A record written before the package moved into layers (tests/data/record_before_layers, made by run.py at
73ada73 with the overrides below, `runtime.keep=all`) is still a record: reused when complete, resumed from its
checkpoint when its result is gone, to the same test top-1."""

import json
import shutil

import pytest
from conftest import REPO, run_cli

from analysis import aggregate

OLD_RUN = REPO / "tests" / "data" / "record_before_layers"
OVERRIDES = ["model.depths=[1,1,1,1]", "model.widths=[4,8,8,16]", "data.val_size=100", "budget.batch=32",
             "budget.epochs=2", "runtime.batch_per_device=32", "runtime.workers=0", "runtime.threads=1",
             "runtime.progress=false", "runtime.keep=all"]


def _copy(tmp_path):
    run_dir = tmp_path / "old_run"
    shutil.copytree(OLD_RUN, run_dir)
    return run_dir


def test_a_complete_old_record_is_reused(fashion_root, tmp_path):
    run_dir = _copy(tmp_path)
    before = (run_dir / "result.json").read_text()
    done = run_cli([*OVERRIDES, f"data.root={fashion_root}", f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "already complete" in done.stdout
    assert (run_dir / "result.json").read_text() == before


def test_an_old_checkpoint_resumes_to_the_same_result(fashion_root, tmp_path):
    run_dir = _copy(tmp_path)
    recorded = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").unlink()
    done = run_cli([*OVERRIDES, f"data.root={fashion_root}", f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"resuming {run_dir} after epoch 2" in done.stderr and "epoch 1/2" not in done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs"] == 2
    assert result["config_fingerprint"] == recorded["config_fingerprint"]
    # The same weights tested again: the same top-1; the loss to float32's rounding, which another CPU's kernels
    # may do differently from the CPU that wrote the record (1.9821436 there, 1.9821435 on an Intel Xeon).
    assert result["test_acc1"] == recorded["test_acc1"]
    assert result["test_loss"] == pytest.approx(recorded["test_loss"], rel=1e-6)


def test_an_old_record_is_read_by_the_analysis(tmp_path):
    recorded = json.loads((OLD_RUN / "result.json").read_text())
    (row,) = aggregate.load_runs([_copy(tmp_path)]).to_dict("records")
    assert row["step"] == "resnet" and row["test_acc1"] == recorded["test_acc1"]
    assert row["gflops"] == recorded["gflops"]
