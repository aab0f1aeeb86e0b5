"""analysis.benchmark: the CLI produces one row per model with the settings, the fields shared with run records and
our/theirs ratios. Tiny networks and few rounds: these check what is reported, never how fast anything is."""

import csv
from pathlib import Path

import pytest

from roadmap.machines.benchmark import folder, formats, models, pipeline, report, timing
from roadmap.machines.benchmark.__main__ import main
from roadmap.machines.benchmark.settings import parse_settings
from roadmap.training import shards
from tests.conftest import TINY_MODEL

SHARED_FIELDS = ["step", "roadmap", "device", "dtype", "batch", "input_size", "channels_last", "compile",
                 "train_imgs_per_s", "infer_imgs_per_s", "peak_mem_mb", "gflops", "gflops_conv_linear", "params", "mfu"]
FAST = ["--batch", "2", "--size", "32", "--reps", "2", "--warmup", "1", "--threads", "1", "--override", *TINY_MODEL]


@pytest.fixture
def tiny_references(monkeypatch):
    """References replaced by our own tiny endpoints: the same network as ours, so the ratios are about 1."""
    step_of = {"resnet50": "resnet", "convnext_tiny": "sep_downsample"}
    monkeypatch.setattr(models, "reference_model", lambda source, arch, in_chans, num_classes: models.our_model(
        step_of[arch], "tiny", in_chans, num_classes, 32, TINY_MODEL))


def test_rows_settings_and_ratios(tiny_references, tmp_path, capsys):
    out = tmp_path / "bench.csv"
    rows = main(["--steps", "resnet", "layernorm", "sep_downsample", "--reference", "--timm", "--no-memory",
                           "--csv", str(out), *FAST])
    printed = capsys.readouterr().out
    for setting in ["device cpu", "dtype fp32", "batch 2", "input 3x32x32", "channels_last", "compile False"]:
        assert setting in printed

    ours = [r for r in rows if r["source"] == "ours"]
    refs = [r for r in rows if r["source"] != "ours"]
    assert [r["step"] for r in ours] == ["resnet", "layernorm", "sep_downsample"]
    # torchvision and timm, each architecture in default memory format and channels_last
    assert sorted((r["source"], r["reference_of"], r["channels_last"]) for r in refs) == sorted(
        (s, a, cl) for s in ("torchvision", "timm") for a in ("resnet50", "convnext_tiny") for cl in (False, True))
    for r in rows:
        assert r["train_imgs_per_s"] > 0 and r["infer_imgs_per_s"] > 0 and r["mfu"] > 0 and r["infer_mfu"] > 0
        assert (r["batch"], r["input_size"], r["dtype"], r["device"], r["compile"]) == (2, 32, "fp32", "cpu", False)
        assert r["gflops"] >= r["gflops_conv_linear"] > 0 and r["params"] > 0
    by_step = {r["step"]: r for r in ours}
    assert by_step["layernorm"]["train_ratio"] == ""  # no reference for an intermediate step
    for step, arch in [("resnet", "resnet50"), ("sep_downsample", "convnext_tiny")]:
        row = by_step[step]
        assert row["reference_of"] == arch and row["channels_last"] is True
        assert row["train_ratio"] > 0 and row["infer_ratio"] > 0 and "torchvision" in row["ratio_against"] or \
            "timm" in row["ratio_against"]
        # against the faster reference: no reference's own ratio is lower
        same_arch = [r for r in refs if r["reference_of"] == arch]
        assert all(r["params"] == row["params"] for r in same_arch)
        assert row["train_ratio_of_medians"] == pytest.approx(min(r["train_ratio_of_medians"] for r in same_arch))
    assert "our/theirs" in printed

    with open(out) as f:
        written = list(csv.DictReader(f))
    assert set(SHARED_FIELDS) <= set(written[0]) and len(written) == len(rows)
    assert written[0]["step"] == "resnet" and float(written[0]["train_imgs_per_s"]) > 0


def test_no_channels_last_and_step_only(tmp_path):
    rows = main(["--steps", "patchify", "--no-channels-last", "--no-memory", *FAST])
    assert len(rows) == 1 and rows[0]["channels_last"] is False and rows[0]["reference_of"] == ""


def test_peak_memory_counts_weights_and_activations():
    settings = parse_settings(["--steps", "resnet", "--device", "cpu", *FAST])
    model = models.our_model("resnet", "tiny", 3, 1000, 32, TINY_MODEL)
    case = models.make_case("resnet", "ours", "resnet", None, model, {}, settings, True)
    peak = timing.measure_peak_memory(case, settings)
    params_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert peak > 2 * params_mb  # weights, gradients and momentum at least
    assert "train step" in timing.peak_memory_kind(settings.device)


def test_cases_are_compared_with_the_cases_they_are_linked_to(tiny_references):
    settings = parse_settings(["--steps", "resnet", "layernorm", "--reference", "--no-timm", "--compile",
                               "--device", "cpu", *FAST])
    cases = models.build_cases(settings)
    ours = {(c.step, c.compiled): c for c in cases if c.source == "ours"}
    refs = [c for c in cases if c.source != "ours"]
    # our 2 steps and torchvision's resnet50 in both memory formats, each eager and compiled
    assert len(ours) == 4 and len(refs) == 4
    eager, compiled = ours["resnet", False], ours["resnet", True]
    assert compiled.eager is eager and eager.eager is None and compiled.label == "resnet +compile"
    assert eager.references == [r for r in refs if not r.compiled] and all(r.ours is eager for r in eager.references)
    assert compiled.references == [r for r in refs if r.compiled]
    assert all(r.ours is compiled for r in compiled.references)
    assert ours["layernorm", False].references == [] and ours["layernorm", False].ours is None

    nchw, cl = eager.references
    for case, seconds in [(eager, 1.0), (compiled, 0.5), (nchw, 2.0), (cl, 3.0)]:
        case.train_s, case.infer_s = [seconds] * 3, [seconds / 2] * 3
    row = report.comparisons(eager)
    assert (row["train_ratio"], row["infer_ratio"], row["train_ratio_of_medians"]) == (2.0, 2.0, 2.0)
    assert row["ratio_against"] == "train: torchvision.resnet50 NCHW; infer: torchvision.resnet50 NCHW"
    assert row["compile_train_gain"] == ""
    assert report.comparisons(compiled)["compile_train_gain"] == 2.0  # eager time / compiled time
    assert report.comparisons(cl)["train_ratio"] == 3.0 and report.comparisons(cl)["ratio_against"] == "ours: resnet"
    assert set(report.comparisons(ours["layernorm", False]).values()) == {""}


def test_paired_ratio_is_reference_time_over_ours():
    assert report.paired_ratio([1.0, 2.0, 1.0], [2.0, 2.0, 3.0]) == 2.0  # medians of 2, 1, 3
    assert report.paired_ratio([], [1.0]) != report.paired_ratio([], [1.0])  # nan


def test_unknown_step_is_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--steps", "resnet", "nope"])
    assert "unknown step nope" in capsys.readouterr().err


def test_data_pipeline_of_a_tiny_run(fashion_root, capsys):
    run = [*TINY_MODEL, f"data.root={fashion_root}", "data.val_size=100", "budget.batch=32",
           "runtime.batch_per_device=32", "runtime.workers=0", "runtime.progress=false"]
    main(["--no-models", "--data-pipeline", "--threads", "1", "--data-batches", "2", "--data-steps", "2",
                    "--data-override", *run])
    printed = capsys.readouterr().out
    assert "DataLoader alone" in printed and "fed by the DataLoader" in printed and "batch 32" in printed


@pytest.mark.slow
def test_real_references_equal_our_endpoints_in_size():
    rows = main(["--steps", "resnet", "sep_downsample", "--reference", "--no-timm", "--no-memory",
                           "--batch", "2", "--size", "32", "--reps", "1", "--warmup", "0"])
    for r in rows:
        if r["source"] == "ours":
            assert all(o["params"] == r["params"] for o in rows if o["reference_of"] == r["reference_of"])


def test_image_folder_mode_times_ours_and_timms_pipelines_and_the_cores_to_feed(tmp_path, capsys, monkeypatch):
    gpu_check = tmp_path / "gpu_check"
    gpu_check.mkdir()
    (gpu_check / "speed.csv").write_text(  # as a GPU check writes it: ours eager and compiled, a reference
        "model,source,step,device,device_name,batch,input_size,dtype,compile,train_imgs_per_s\n"
        "sep_downsample,ours,sep_downsample,cuda,H200,128,224,bf16,False,2400\n"
        "sep_downsample,ours,sep_downsample,cuda,H200,128,224,bf16,True,3000\n"
        "torchvision.resnet50,torchvision,,cuda,H200,128,224,bf16,False,2900\n")
    argv = ["--no-models", "--data-pipeline", "--image-folder", "--folder-images", "8", "--folder-batch", "4",
            "--folder-size", "32", "--folder-workers", "1", "--folder-rounds", "1", "--folder-cache", str(tmp_path),
            "--train-imgs-per-s", "1000", "--gpu-check", str(gpu_check)]
    rows = main(argv)
    pipelines = [r for r in rows if "stage" in r]
    assert [(r["recipe"], r["split"], r["stage"]) for r in pipelines] == [
        (name, split, stage) for name in ("original", "modern") for split in ("train", "eval")
        for stage in ("transform, 1 thread", "loader, 1 worker")]
    for r in pipelines:
        assert r["ours_imgs_per_s"] > 0 and r["timm_imgs_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["ours_imgs_per_s"] / r["timm_imgs_per_s"])
    includes = {(r["recipe"], r["split"], r["stage"]): r["includes"] for r in pipelines}
    assert "RandAugment" in includes["modern", "train", "loader, 1 worker"]["timm"]
    assert "erasing" in includes["modern", "train", "loader, 1 worker"]["ours"]  # on the device, a batch at a time
    assert "erasing" not in includes["modern", "train", "transform, 1 thread"]["ours"]
    assert "RandAugment" not in includes["original", "train", "loader, 1 worker"]["ours"]
    assert "to the device" in includes["modern", "eval", "loader, 1 worker"]["ours"]
    one_core = {r["recipe"]: r["ours_per_core"] for r in pipelines if r["split"] == "train" and r["workers"] == 1}
    assert [(r["what"].split(" (")[0], r["recipe"], r["cores"]) for r in rows if "cores" in r] == [
        ("sep_downsample", "modern", pytest.approx(2400 / one_core["modern"])),
        *[("--train-imgs-per-s", name, pytest.approx(1000 / one_core[name])) for name in ("original", "modern")]]
    printed = capsys.readouterr().out
    assert "ours/timm" in printed and "What each row includes" in printed and "cores" in printed
    files = sorted((tmp_path / "benchmark_jpegs_8").rglob("*.JPEG"))
    assert len(files) == 16  # as many for evaluation as for training
    monkeypatch.setattr(folder, "write_jpeg_folder", None)  # the folder is cached, not written again
    assert len(main([*argv[:-2]])) == len(rows) - 1


def test_formats_mode_times_our_loader_on_the_same_jpegs_as_files_shards_and_a_hub_copy(tmp_path, capsys):
    settings = parse_settings(["--no-models", "--data-pipeline", "--image-folder", "--formats", "--folder-images", "8",
                               "--folder-batch", "4", "--folder-size", "32", "--folder-workers", "1",
                               "--folder-rounds", "1", "--folder-cache", str(tmp_path)])
    rows = formats.format_speed(settings)
    assert [(r["format"], r["split"], r["workers"]) for r in rows] == [
        (form, split, 1) for split in ("train", "eval") for form in ("imagefolder", "webdataset", "huggingface")]
    assert all(r["imgs_per_s"] > 0 for r in rows)
    assert [r["vs_imagefolder"] for r in rows if r["format"] == "imagefolder"] == [1.0, 1.0]
    copies = formats.cached_copies(tmp_path / "benchmark_jpegs_8")
    assert shards.read_index(Path(copies["webdataset"][1].split("=")[1]))["splits"]["test"][0][1] == 8
    formats.print_formats(rows, settings)
    assert "| webdataset | train | loader, 1 worker |" in capsys.readouterr().out


def test_timms_pipeline_takes_the_recipes_settings():
    modern = folder.run_config(Path("unused"), "modern", parse_settings([]), 0)
    assert folder.timm_arguments(modern, "train") == {
        "interpolation": "bicubic", "mean": tuple(modern.data.mean), "std": tuple(modern.data.std),
        "scale": (0.08, 1.0), "hflip": 0.5, "color_jitter": None, "auto_augment": "rand-m9-mstd0.5-inc1",
        "re_prob": 0.25, "re_mode": "const"}
    original = folder.run_config(Path("unused"), "original", parse_settings([]), 0)
    train = folder.timm_arguments(original, "train")
    assert (train["auto_augment"], train["re_prob"], train["interpolation"]) == (None, 0.0, "bilinear")
    assert folder.timm_arguments(original, "eval")["crop_pct"] == 0.875


def test_generated_jpegs_are_photo_sized_and_compress_like_photos(tmp_path):
    from PIL import Image

    stats = pipeline.write_jpeg_folder(tmp_path, 6)
    files = sorted((tmp_path / "train").rglob("*.JPEG"))
    assert len(files) == 6 and len(list((tmp_path / "val").rglob("*.JPEG"))) == 2
    for path in files:
        with Image.open(path) as image:
            assert image.format == "JPEG" and max(image.size) in (400, 500) and min(image.size) >= 300
    # Bytes per pixel: noise takes ~3 at this quality, flat colour ~0.05; ImageNet's photos about 0.5-0.8.
    assert 0.25 < stats["mean_kb"] * 1024 / stats["mean_pixels"] < 1.5
