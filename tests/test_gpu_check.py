"""analysis.gpu_check: `--smoke` runs the GPU check's whole sequence on CPU at tiny sizes and leaves the report and
its tables; the tolerance of the fast-path comparison catches a wrong fast path; the time cap leaves compiled
cases out; the wheels to carry cover what the GPU path imports. What the figures are is not checked: they are a
CPU's."""

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import roadmap
from roadmap.machines.gpu_check import environment, speed, steps, wheels
from roadmap.machines.gpu_check.__main__ import main
from roadmap.machines.gpu_check.plan import SMOKE

REPO = Path(__file__).resolve().parent.parent
PART_KEYS = ["steps", "speed", "loader", "torchrun", "resume"]


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _finite(value: str) -> bool:
    return math.isfinite(float(value))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `--smoke` run for the tests that read its output (a minute or two: five run.py runs among them)."""
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run([sys.executable, "-m", "analysis.gpu_check", "--smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    return out, done


@pytest.mark.slow
def test_report_names_the_machine_and_every_part(smoke):
    out, done = smoke
    report = (out / "report.md").read_text()
    assert done.stdout.strip() == report.strip()  # the command's output is the report
    for fact in [f"| torch | {torch.__version__} |", "| CUDA |", "| Python |", "matmul peak", "--smoke"]:
        assert fact in report
    parts = _rows(out / "parts.csv")
    assert [p["part"] for p in parts] == PART_KEYS
    for part in parts:
        assert part["title"] in report and float(part["seconds"]) > 0
    assert {p["part"]: p["status"] for p in parts if p["part"] != "resume"} == dict.fromkeys(PART_KEYS[:-1], "passed")
    assert done.returncode == (0 if all(p["status"] == "passed" for p in parts) else 1), done.stderr[-2000:]


@pytest.mark.slow
def test_every_step_trains_and_its_fast_path_matches(smoke):
    out, _ = smoke
    trained = _rows(out / "train_steps.csv")
    assert [r["step"] for r in trained] == list(roadmap.STEP_NAMES)
    assert all(r["passed"] == "True" and _finite(r["loss"]) and float(r["grad_norm"]) > 0 for r in trained)
    compared = _rows(out / "fast_path.csv")
    assert [r["step"] for r in compared] == list(roadmap.STEP_NAMES)  # --smoke: one size, 32 px
    for r in compared:
        assert r["passed"] == "True" and float(r["bf16_error"]) > 0
        assert float(r["fast_error"]) <= float(r["tolerance"]) == pytest.approx(2 * float(r["bf16_error"]), 1e-4)
    # From kernel5 on, the last stage's 1x1 map is smaller than the kernel: the cropping path ran.
    cropped = {r["step"]: int(r["cropped_convs"]) for r in compared}
    assert cropped["resnet"] == 0 and cropped["kernel7"] > 0 and cropped["sep_downsample"] > 0


@pytest.mark.slow
def test_speed_rows_cover_ours_and_the_references_eager_and_compiled(smoke):
    out, _ = smoke
    rows = _rows(out / "speed.csv")
    sources = ["torchvision", "timm"] if environment.timm_version() else ["torchvision"]
    expected = {("ours", step, "True", compiled) for step in ("resnet", "sep_downsample") for compiled in
                ("False", "True")}
    expected |= {(source, "", cl, "False") for source in sources for cl in ("False", "True")}
    expected |= {(source, "", "True", "True") for source in sources}
    assert {(r["source"], r["step"], r["channels_last"], r["compile"]) for r in rows} == expected
    assert len(rows) == 4 + 6 * len(sources)  # references: both archs
    for r in rows:
        assert float(r["train_imgs_per_s"]) > 0 and float(r["infer_imgs_per_s"]) > 0 and float(r["mfu"]) > 0
        assert (float(r["compile_train_s"]) > 0) if r["compile"] == "True" else r["compile_train_s"] == ""
        if r["source"] == "ours":
            assert _finite(r["train_ratio"]) and r["ratio_against"]


@pytest.mark.slow
def test_run_py_alone_and_under_torchrun_record_loader_figures(smoke):
    out, _ = smoke
    runs = {r["run"]: r for r in _rows(out / "runs.csv")}
    for name in ("loader", "torchrun"):
        r = runs[name]
        assert (r["returncode"], r["status"], r["world_size"], r["epochs"]) == ("0", "completed", "1", "3")
        assert float(r["train_imgs_per_s"]) > 0 and 0 <= float(r["loader_wait_fraction"]) <= 1
        assert int(r["workers"]) == max(len(os.sched_getaffinity(0)) - 1, 0)  # runtime.workers=auto
        assert json.loads((out / "runs" / name / "result.json").read_text())["status"] == "completed"
        assert (out / r["log"]).is_file()


@pytest.mark.slow
def test_killed_run_is_resumed_and_compared(smoke):
    out, _ = smoke
    (c,) = _rows(out / "resume.csv")
    assert c["killed"] == "True" and 0 < int(c["epochs_at_kill"]) < int(c["epochs"])
    assert c["resumed_after_epoch"] == c["epochs_at_kill"] and c["both_completed"] == "True"
    assert int(c["tensors_compared"]) > 0
    runs = {r["run"]: r for r in _rows(out / "runs.csv")}
    assert runs["deterministic_killed"]["returncode"] == "-9"
    assert runs["deterministic_killed"]["status"] == "no result.json"


@pytest.mark.slow
def test_killed_and_resumed_run_ends_bit_equal(smoke):
    out, _ = smoke
    (c,) = _rows(out / "resume.csv")
    assert c["metrics_equal"] == "True" and c["values_differing"] == "0" and c["passed"] == "True"


def test_tolerance_catches_a_wrong_fast_path(monkeypatch):
    # A LayerNorm step: every stride-1 conv runs as the fast path's CroppedConv2d (none is folded into a norm).
    cfg = steps.step_config("layernorm", SMOKE, SMOKE.crop_size)
    torch.manual_seed(0)
    model = roadmap.build_model(cfg.model).to(memory_format=torch.channels_last)
    right = steps.compare_fast_path("layernorm", model, SMOKE, SMOKE.crop_size, torch.device("cpu"))
    # A few % off at each of those convs: a handful of bf16 roundings per layer, but all in one direction.
    monkeypatch.setattr(roadmap.network.fast.CroppedConv2d, "forward", lambda self, x: nn.Conv2d.forward(self, x) * 1.03)
    wrong = steps.compare_fast_path("layernorm", model, SMOKE, SMOKE.crop_size, torch.device("cpu"))
    assert right["passed"] and not wrong["passed"]
    assert wrong["fast_error"] > 2 * wrong["tolerance"] > 0 and wrong["bf16_error"] == right["bf16_error"]


@pytest.mark.slow
def test_compiled_cases_past_the_cap_are_left_out_and_named():
    result = speed.measure_speed(SMOKE, torch.device("cpu"), timm=False, peak_before=1e9, deadline=time.monotonic())
    assert result.left_out == ["resnet +compile", "torchvision.resnet50 +compile", "sep_downsample +compile",
                               "torchvision.convnext_tiny +compile"]
    assert not any(r["compile"] for r in result.rows)
    assert {r["source"] for r in result.rows} == {"ours", "torchvision"}  # no timm when it is not there
    assert result.peak_flops >= 1e9


def test_without_smoke_a_machine_without_cuda_is_bad_input(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no CUDA device") and "--smoke" in err
    assert not (tmp_path / "report").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--smoke"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: the following arguments")


_IMPORTED_DISTRIBUTIONS = """
import importlib.metadata as metadata, sys
sys.path.insert(0, {repo!r})
import run, roadmap.machines.gpu_check.__main__
owners = metadata.packages_distributions()
print("\\n".join(sorted({{d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])}})))
"""


def test_wheels_cover_what_the_gpu_path_imports():
    loaded = subprocess.run([sys.executable, "-c", _IMPORTED_DISTRIBUTIONS.format(repo=str(REPO))], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    loaded = {wheels.canonicalize_name(d) for d in loaded}
    # Imported distributions that the project or another imported one requires; the rest are optional imports that
    # happen to be installed here (omegaconf's attrs, tabulate's wcwidth, which only optuna's CLI requires).
    required = set(wheels.requirements("convnext-roadmap")).union(*(wheels.requirements(d) for d in loaded))
    needed = loaded & required
    assert needed <= wheels.closure(wheels.PRESENT) | set(wheels.carried())
    assert set(wheels.carried()) >= {"hydra-core", "omegaconf", "fvcore", "antlr4-python3-runtime", "pyyaml"}
    guide = (REPO / "docs" / "gpu.md").read_text()
    assert all(name in guide for name in wheels.carried()), "docs/gpu.md names every wheel to carry"
