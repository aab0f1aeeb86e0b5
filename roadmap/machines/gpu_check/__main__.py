"""The command line: `python -m analysis.gpu_check --out DIR [--smoke]`.

Exit status: 0 when no part failed, 1 when one did (its section and note say why), 2 on bad input (one line).
"""

import argparse
import datetime
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from roadmap.machines.benchmark.machine import matmul_peak_flops
from roadmap.machines.gpu_check import environment, report, runs, speed, steps
from roadmap.machines.gpu_check.errors import error_line
from roadmap.machines.gpu_check.plan import GPU, SMOKE, Plan
from roadmap.machines.gpu_check.report import Findings, Part

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"error: {message}\n")


def parse_args(argv: list[str] | None):
    p = OneLineParser(prog="python -m analysis.gpu_check",
                      description="Proves the GPU path in one command: every step in bf16, the fast path, speed "
                                  "against torchvision/timm, run.py with its loader, torchrun, and a killed run "
                                  "resumed bit-equal; writes DIR/report.md and CSVs.")
    p.add_argument("--out", required=True, type=Path, help="folder for report.md, the CSVs, records and logs")
    p.add_argument("--smoke", action="store_true", help="the same sequence on CPU at tiny sizes")
    return p.parse_args(argv)


class Check:
    """The five parts in order, each within its cap and the check's budget; the report after each."""

    def __init__(self, plan: Plan, out: Path, work: Path, command: str):
        self.plan, self.out, self.work, self.device = plan, out, work, torch.device(plan.device)
        self.start = time.monotonic()
        self.deadline = self.start + plan.budget_s
        self.parts = [
            (Part("steps", "every step: bf16 training step, fast path vs plain", plan.steps_cap_s), self.steps),
            (Part("speed", "resnet, sep_downsample vs torchvision/timm, eager and compiled", plan.speed_cap_s),
             self.speed),
            (Part("loader", "run.py on JPEGs, runtime.workers=auto", plan.loader_cap_s), self.loader),
            (Part("torchrun", "the same under torchrun --nproc_per_node=1", plan.torchrun_cap_s), self.torchrun),
            (Part("resume", "deterministic run killed with SIGKILL, resumed: bit-equal", plan.resume_cap_s),
             self.resume),
        ]
        self.findings = Findings(
            plan, command, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            environment.describe(self.device), matmul_peak_flops(self.device, plan.dtype, n=plan.peak_matmul_n),
            [part for part, _ in self.parts])

    def run(self) -> Findings:
        for part, body in self.parts:
            started = time.monotonic()
            part_deadline = min(started + part.cap_s, self.deadline)
            if part_deadline <= started:
                part.status, part.note = "capped", "not started: the check's time budget is spent"
            else:
                try:
                    part.status, part.note = body(part_deadline)
                except Exception as e:
                    part.status, part.note = "error", error_line(e)
                    (self.out / "logs").mkdir(exist_ok=True)
                    (self.out / "logs" / f"{part.key}.traceback").write_text(traceback.format_exc())
            part.seconds = time.monotonic() - started
            self.findings.wall_s = time.monotonic() - self.start
            report.write(self.findings, self.out)
        return self.findings

    def steps(self, deadline: float) -> tuple[str, str]:
        f = self.findings
        f.train_rows, f.fast_rows, f.steps_left = steps.check_steps(self.plan, self.device, deadline)
        return steps.verdict(f.train_rows, f.fast_rows, f.steps_left)

    def speed(self, deadline: float) -> tuple[str, str]:
        f = self.findings
        timm = environment.timm_version() is not None
        f.speed = speed.measure_speed(self.plan, self.device, timm, f.peak_flops, deadline)
        f.peak_flops = f.speed.peak_flops
        notes = [] if timm else ["timm not installed: no timm comparison"]
        notes += [f"{label}: {error}" for label, error in f.speed.compile_errors.items()]
        if f.speed.left_out:
            notes.append(f"not compiled (time cap): {', '.join(f.speed.left_out)}")
        status = "failed" if f.speed.compile_errors else "capped" if f.speed.left_out else "passed"
        return status, "; ".join(notes)

    @property
    def folder(self) -> Path:
        """The generated image folder of parts 3-5, written on first use."""
        root = self.work / "imagefolder"
        if not self.findings.folder:
            self.findings.folder = runs.write_image_folder(root, self.plan)
        return root

    def loader(self, deadline: float, torchrun: bool = False) -> tuple[str, str]:
        row = runs.loader_run(self.plan, self.folder, self.work, self.out, deadline, torchrun)
        self.findings.run_rows.append(row)
        return runs.run_verdict(row)

    def torchrun(self, deadline: float) -> tuple[str, str]:
        return self.loader(deadline, torchrun=True)

    def resume(self, deadline: float) -> tuple[str, str]:
        rows, self.findings.resume = runs.kill_and_resume(self.plan, self.folder, self.work, self.out, deadline)
        self.findings.run_rows += rows
        return runs.resume_verdict(rows, self.findings.resume)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA device on this machine: run it where a GPU is, or give --smoke for the CPU sequence "
              "at tiny sizes", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out}: exists and is not a folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "analysis.gpu_check", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        findings = Check(SMOKE if args.smoke else GPU, args.out, Path(work), command).run()
    print((args.out / "report.md").read_text(), end="")
    return 1 if any(p.status in ("failed", "error") for p in findings.parts) else 0


if __name__ == "__main__":
    sys.exit(main())
