"""The check's output: `report.md` and one CSV per table, rewritten after every part (a check cut short still
leaves a report of what it did)."""

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from roadmap.machines.benchmark.report import CSV_FIELDS as BENCHMARK_FIELDS
from roadmap.machines.gpu_check import runs, speed, steps
from roadmap.machines.gpu_check.plan import Plan

PART_FIELDS = ["part", "title", "status", "seconds", "cap_s", "note"]
RESUME_FIELDS = ["killed", "epochs_at_kill", "epochs", "resumed_after_epoch", "both_completed", "metrics_equal",
                 "first_differing_epoch", "state_files", "tensors_compared", "values_differing", "first_differing",
                 "test_metrics_equal", "passed"]
CSV_FILES = {  # file: (Findings attribute, fields)
    "parts.csv": ("part_rows", PART_FIELDS),
    "train_steps.csv": ("train_rows", steps.TRAIN_FIELDS),
    "fast_path.csv": ("fast_rows", steps.FAST_FIELDS),
    "speed.csv": ("speed_rows", BENCHMARK_FIELDS + speed.COMPILE_FIELDS),
    "runs.csv": ("run_rows", runs.RUN_FIELDS),
    "resume.csv": ("resume_rows", RESUME_FIELDS),
}


@dataclass
class Part:
    key: str
    title: str
    cap_s: float
    status: str = "not run"  # passed | failed | capped (time cap reached, partly done) | error | not run
    seconds: float = 0.0
    note: str = ""


@dataclass
class Findings:
    """Everything the report shows, filled in part by part."""

    plan: Plan
    command: str
    started: str  # UTC date and time
    machine: dict
    peak_flops: float
    parts: list[Part]
    wall_s: float = 0.0
    train_rows: list[dict] = field(default_factory=list)
    fast_rows: list[dict] = field(default_factory=list)
    steps_left: list[str] = field(default_factory=list)
    speed: "speed.Speed | None" = None
    folder: dict = field(default_factory=dict)
    run_rows: list[dict] = field(default_factory=list)
    resume: dict = field(default_factory=dict)

    @property
    def part_rows(self) -> list[dict]:
        return [{"part": p.key, "title": p.title, "status": p.status, "seconds": p.seconds, "cap_s": p.cap_s,
                 "note": p.note} for p in self.parts]

    @property
    def speed_rows(self) -> list[dict]:
        return self.speed.rows if self.speed else []

    @property
    def resume_rows(self) -> list[dict]:
        return [self.resume] if self.resume else []


def cell(value, spec: str = ".3g") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else format(value, spec)
    return str(value)


def table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(cell(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]


def write_csv(rows: list[dict], fields: list[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def header(f: Findings) -> list[str]:
    plan = f.plan
    done = [p for p in f.parts if p.status != "not run"]
    verdict = ", ".join(f"{sum(p.status == s for p in done)} {s}" for s in ("passed", "failed", "capped", "error")
                        if any(p.status == s for p in done))
    lines = [f"# GPU check: {f.machine['device']}", "",
             f"`{f.command}`, started {f.started} UTC, {f.wall_s:.0f} s wall of its {plan.budget_s:.0f} s budget. "
             f"Parts: {verdict or 'none run yet'}."]
    if plan.smoke:
        lines += ["", "**--smoke**: the same sequence on CPU at tiny sizes (networks of one or two blocks per stage "
                      f"and widths 8-128, {plan.step_size} px, {plan.image_size} px JPEG runs; the references at such "
                      "widths too). Parts 1-2 in bf16 autocast on CPU, run.py's runs at `runtime.amp=auto`: float32 on "
                      f"CPU. torch.compile with backend `{plan.compile_backend}`: Dynamo traces, no code is generated. "
                      "It shows that the check runs; none of its figures says anything about a GPU."]
    peak = (f"{f.peak_flops / 1e12:.3f} TFLOP/s: best of 5 {plan.peak_matmul_n}x{plan.peak_matmul_n}x"
            f"{plan.peak_matmul_n} {plan.dtype} products (torch.mm; on CPU also as a 1x1 conv), measured before part 2 "
            "and after its timing, the higher")
    lines += ["", *table(["machine", ""], [[k, v] for k, v in f.machine.items()]
                         + [[f"{plan.dtype} matmul peak", peak]])]
    lines += ["", "## Parts", "", "Each part runs until its time cap (wall seconds); what a capped part left out is "
              "named in its section.", ""]
    lines += table(["#", "part", "status", "seconds", "cap (s)", "note"],
                   [[str(i), p.title, f"**{p.status}**", f"{p.seconds:.1f}", f"{p.cap_s:.0f}", p.note]
                    for i, p in enumerate(f.parts, 1)])
    return lines


def steps_section(f: Findings) -> list[str]:
    plan = f.plan
    sizes = " and ".join(f"{size} px" for size in dict.fromkeys((plan.step_size, plan.crop_size)))
    lines = ["", "## 1. Every step: a training step, and the fast path against the plain network", "",
             f"Each step of the tiny path (`roadmap.STEP_NAMES`), built by `roadmap.compose` / `roadmap.build_model` "
             f"at the paper's budget (`budget=paper`: its init), 1000 classes, channels_last, {plan.dtype} autocast. "
             f"Training: one step of the step's own optimizer and loss (`roadmap.training.recipe`) on {plan.step_batch} "
             f"random {plan.step_size}x{plan.step_size} images; passed when the loss, every gradient and every "
             "weight after the step are finite. grad norm: L2 norm of all gradients, in float32.", ""]
    lines += table(["step", "loss", "grad norm", "non-finite grads", "passed"],
                   [[r["step"], r.get("loss"), r.get("grad_norm"), r.get("nonfinite_grads"),
                     r["passed"] if not r.get("error") else f"no: {r['error']}"] for r in f.train_rows])
    lines += ["", f"Fast path (`roadmap.network.fast`, what `build_model` returns) against the plain network "
              "(`roadmap.network.fast.plain`), eval mode, the weights after that step with layer scale set to 1 (from 1e-6 "
              "at sep_downsample: at 1e-6 the residual branches, where the fast path acts, barely reach the logits), "
              f"{plan.step_batch} random images at {sizes} ({plan.crop_size} px: the last stages' maps are smaller "
              "than the kernels, which the fast path crops). Error = max |logits - float32 logits| / std of the "
              "float32 logits, the float32 logits being the plain network's with TF32 off: fast error for the fast "
              "path in bf16, bf16 error for the plain network in bf16. Passed when fast error <= 2 x bf16 error: in "
              "bf16 the fast path is another evaluation of the same function (bf16 keeps 8 significant bits, 2^-8 "
              "relative per rounding; the fast path rounds at other places), so it should err about as much as the "
              "plain network; 2 absorbs the noise of a maximum over one batch, and a wrong tap or fold errs in one "
              "direction at every layer, far beyond it (roadmap/machines/gpu_check/steps.py). fast vs plain: the same "
              "measure between the two bf16 logits. Top-1: the share of images whose class is float32's, for each; "
              "reported, not required (random weights leave tiny top-2 margins). cropped convs: convs whose kernel "
              "the fast path cropped on that input.", ""]
    lines += table(["step", "px", "cropped convs", "fast error", "bf16 error", "tolerance", "fast vs plain",
                    "top-1 fast", "top-1 bf16", "passed"],
                   [[r["step"], r["input_size"], r["cropped_convs"], r["fast_error"], r["bf16_error"], r["tolerance"],
                     r["fast_vs_plain"], r["fast_top1_agreement"], r["bf16_top1_agreement"], r["passed"]]
                    for r in f.fast_rows])
    if f.steps_left:
        lines += ["", f"Not checked (time cap): {', '.join(f.steps_left)}."]
    return lines


def speed_section(f: Findings) -> list[str]:
    s = f.speed
    if s is None:
        return []
    settings = s.settings
    timm = "torchvision and timm" if settings.timm else "torchvision (timm is not installed: no timm comparison)"
    lines = ["", "## 2. Speed: resnet and sep_downsample against the reference networks", "",
             f"`analysis.benchmark`'s cases and timing: our `resnet` (= ResNet-50) and `sep_downsample` (= "
             f"ConvNeXt-T) in channels_last, {timm} in both memory formats, each also compiled in channels_last "
             f"(`torch.compile`, backend `{f.plan.compile_backend}`). Batch {settings.batch} of random "
             f"3x{settings.size}x{settings.size} images, {settings.num_classes} classes, {settings.dtype} autocast, "
             f"SGD (momentum 0.9), cudnn.benchmark on; timed rounds: {settings.reps}, after {settings.warmup} "
             "warm-up rounds and one untimed step of each model, every model once per round in alternating "
             "order.", "",
             "- img/s: batch / median step time (a training step: forward, loss, backward, optimizer step; "
             "inference: eval mode, no autograd).",
             f"- MFU: 2 x conv+linear multiply-accumulates (fvcore, batch 1) x img/s (x3 for training) / the "
             f"measured {settings.dtype} matmul peak ({s.peak_flops / 1e12:.3f} TFLOP/s).",
             "- ratio: the faster reference's step time / ours, paired within rounds, median (> 1: ours faster); a "
             "reference's row: ours against it.",
             "- compile s: the first training step and the first inference step of the compiled copy, compilation "
             "included (train / infer).", ""]
    lines += table(["model", "CL", "compiled", "train img/s", "infer img/s", "MFU train", "MFU infer", "train ratio",
                    "infer ratio", "compile s"],
                   [[r["model"], r["channels_last"], r["compile"], f"{r['train_imgs_per_s']:.1f}",
                     f"{r['infer_imgs_per_s']:.1f}", r["mfu"], r["infer_mfu"], r["train_ratio"], r["infer_ratio"],
                     f"{r['compile_train_s']:.1f} / {r['compile_infer_s']:.1f}" if r["compile"] else ""]
                    for r in s.rows])
    targets = [r for r in s.rows if r["source"] == "ours" and r["train_ratio"] != ""]
    if targets:
        lines += ["", "Target (docs/gpu.md): our bf16 training at least as fast as the faster reference:"]
        lines += [f"- {r['model']}: train ratio {r['train_ratio']:.2f} against "
                  f"{r['ratio_against'].split(';')[0].removeprefix('train: ')}: "
                  f"**{'met' if r['train_ratio'] >= 1 else 'not met'}**" for r in targets]
    if s.compile_errors:
        lines += ["", "Compilation failed (the case is left out):"]
        lines += [f"- {label}: {error}" for label, error in s.compile_errors.items()]
    if s.left_out:
        lines += ["", f"Not compiled (their compilation would not fit the time cap): {', '.join(s.left_out)}."]
    return lines


def runs_section(f: Findings) -> list[str]:
    plan = f.plan
    rows = [r for r in f.run_rows if r["run"] in ("loader", "torchrun")]
    if not rows:
        return []
    folder = f.folder
    lines = ["", "## 3-4. run.py on a folder of JPEGs, alone and under torchrun", "",
             f"A generated image folder like the loader benchmark's (`roadmap.machines.benchmark.pipeline`): "
             f"{folder['train_images']} training JPEGs in 2 classes, {folder['unique_images']} of them photo-like "
             f"images at ImageNet's sizes (mean {folder['mean_pixels'] / 1e3:.0f}k pixels, {folder['mean_kb']:.0f} KB, "
             "quality 90), the rest hard links to them (decoding costs the same; the page cache holds them). "
             f"`+step={plan.loader_step}`, `budget.batch={plan.loader_batch}`, {plan.run_epochs} epochs at "
             f"{plan.image_size} px, `data.val_size={plan.val_size}`, everything else run.py's defaults "
             "(`runtime.workers=auto`; `runtime.amp=auto`: bf16 autocast on a GPU that has it, float32 on CPU; "
             "channels_last). Figures from each run's result.json and metrics.csv:", "",
             "- train img/s: training images per second over all processes, mean over epochs; last epoch: its "
             "metrics.csv row (the first epoch includes cuDNN's autotuning and the workers' start).",
             "- loader img/s: what the workers can deliver (images x workers / seconds spent reading, decoding and "
             "augmenting).",
             "- loader wait: the share of training time spent waiting for a batch, mean over epochs.", ""]
    lines += table(["run", "launcher", "status", "workers", "train img/s", "last epoch img/s", "loader img/s",
                    "loader wait", "seconds"],
                   [[r["run"], r["launcher"], f"{r['status']} (exit {r['returncode']})", r["workers"],
                     r["train_imgs_per_s"], r["last_epoch_train_imgs_per_s"], r["loader_imgs_per_s"],
                     r["loader_wait_fraction"], f"{r['seconds']:.1f}"] for r in rows])
    for r in rows:
        if r["error"]:
            lines += ["", f"{r['run']}: {r['error']}"]
        if isinstance(r["loader_wait_fraction"], float):
            met = "met" if r["loader_wait_fraction"] < 0.05 else "not met"
            lines += ["", f"Target (docs/gpu.md) loader wait below 0.05 with the machine's own cores, {r['run']}: "
                          f"{r['loader_wait_fraction']:.3f}, **{met}**."]
    torchrun = [r for r in rows if r["run"] == "torchrun"]
    if torchrun and f.plan.device == "cuda":
        lines += ["", "torchrun, one process: NCCL " + (
            "created a communicator (its `NCCL version` line is in the log, NCCL_DEBUG=VERSION)."
            if torchrun[0]["nccl_initialised"] else
            "printed no version line (NCCL_DEBUG=VERSION): no communicator was created.")
            + " With one process the trainer wraps no DDP (`roadmap.training.distributed.wrap`): no all-reduce ran."]
    elif torchrun:
        lines += ["", "torchrun on CPU: gloo (`roadmap.training.distributed.init`); one process wraps no DDP."]
    return lines


def resume_section(f: Findings) -> list[str]:
    c = f.resume
    if not c:
        return []
    plan = f.plan
    rows = [r for r in f.run_rows if r["run"].startswith("deterministic")]
    lines = ["", "## 5. A deterministic run killed and resumed", "",
             f"`+step={plan.resume_step}` with `runtime.deterministic=true`, `budget.batch={plan.resume_batch}`, "
             f"the folder's first {plan.resume_images} training images, {plan.run_epochs} epochs at {plan.image_size} "
             "px, `runtime.workers=auto`: run twice side by side in two directories; one is killed with SIGKILL (its "
             "process group, loader workers included) as soon as its first end-of-epoch checkpoint exists, then "
             "started again with the same command. Passed when the killed run stopped mid-run, the rerun resumed "
             "after the epoch it had reached, and the two runs' metrics.csv (but its timings), every tensor and "
             "value of the state files both left (checkpoint.pt: weights, optimizer, schedule, EMA, grad scaler, "
             "every process's RNG states; or weights.pt) and the test metrics are equal, bit for bit.", ""]
    lines += table(["run", "launcher", "status", "epochs", "seconds"],
                   [[r["run"], r["launcher"], f"{r['status']} (exit {r['returncode']})", r["epochs"],
                     f"{r['seconds']:.1f}"] for r in rows])
    lines += ["", *table(["", ""], [
        ["killed mid-run", c["killed"]], ["epochs in its checkpoint when killed", c["epochs_at_kill"]],
        ["the rerun resumed after epoch", c["resumed_after_epoch"] if c["resumed_after_epoch"] is not None
         else "it did not say it resumed"],
        ["both completed", c["both_completed"]],
        ["metrics.csv equal but timings", c["metrics_equal"] if c["metrics_equal"] or not c["first_differing_epoch"]
         else f"no: from epoch {c['first_differing_epoch']}"],
        ["state files compared", c["state_files"] or "none: neither run left one"],
        ["tensors compared", c["tensors_compared"]],
        ["values that differ", f"{c['values_differing']}" + (f" (first: {c['first_differing']})"
                                                            if c["first_differing"] else "")],
        ["test metrics equal", c["test_metrics_equal"]], ["passed", f"**{cell(c['passed'])}**"]])]
    for r in rows:
        if r["error"]:
            lines += ["", f"{r['run']}: {r['error']}"]
    return lines


def write(f: Findings, out: Path) -> None:
    """report.md and the CSVs, from what `f` holds so far."""
    for name, (attribute, fields) in CSV_FILES.items():
        write_csv(getattr(f, attribute), fields, out / name)
    lines = header(f) + steps_section(f) + speed_section(f) + runs_section(f) + resume_section(f)
    lines += ["", "## Files", "", "CSV, one row per table row above: " + ", ".join(f"`{n}`" for n in CSV_FILES)
              + "; `runs/<run>/`: each run.py run's result.json and metrics.csv; `logs/`: each run's output and "
              "the traceback of any part that raised."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
