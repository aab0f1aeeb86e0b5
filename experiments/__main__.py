"""Run a study end to end: its `python run.py -m` sweeps, then `python -m analysis` on their records.

    python -m experiments                      # list the studies
    python -m experiments STUDY [--seeds N] [--roadmap tiny|base] [--out DIR] [--dry-run] [OVERRIDE ...]

OVERRIDEs are passed to every sweep, e.g. `hydra/launcher=joblib` to run jobs in parallel, or `data.root=...`.
Rerunning a study skips the runs it already completed (run.py does) and redoes the analysis.
"""

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from experiments.studies import STUDIES, Study
from roadmap import ConfigError, compose
from roadmap.config import override_key

RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def sweep_commands(study: Study, study_dir: Path, seeds: int, roadmap_name: str, overrides=()) -> list[list[str]]:
    """The `python run.py -m ...` command of each of the study's sweeps. An override given here replaces the
    study's own for the same key (e.g. `budget.epochs=5`, or `+step=resnet,gelu` to run part of a roadmap)."""
    replaced = {override_key(override) for override in overrides}
    commands = []
    for sweep in study.sweeps(roadmap_name):
        own = [f"roadmap={roadmap_name}", *study.settings, *sweep.overrides, "seed=" + ",".join(map(str, range(seeds)))]
        commands.append([sys.executable, str(RUN_PY), "-m", *(o for o in own if override_key(o) not in replaced), *overrides,
                         f"hydra.sweep.dir={study_dir / sweep.name}"])
    return commands


def first_job(command: list[str]) -> list[str]:
    """The overrides of a sweep command's first job: each sweep (`key=a,b,c`) at its first value."""
    overrides = [arg for arg in command[3:] if not arg.startswith("hydra")]
    return [f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
            for o in OverridesParser.create().parse_overrides(overrides)]


def analysis_command(study_dir: Path) -> list[str]:
    return [sys.executable, "-m", "analysis", str(study_dir), "--out", str(study_dir / "analysis")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="studies:\n" + "\n".join(f"  {s.name}: {s.description}"
                                                                     for s in STUDIES.values()))
    parser.add_argument("study", nargs="?", choices=list(STUDIES))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every sweep")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the study's, 1 or 3)")
    parser.add_argument("--roadmap", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--out", type=Path, help="study directory (default: runs/STUDY)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_intermixed_args(argv)
    if args.study is None:
        parser.print_help()
        return 0

    study = STUDIES[args.study]
    study_dir = (args.out or Path("runs") / study.name).resolve()
    commands = sweep_commands(study, study_dir, args.seeds or study.default_seeds, args.roadmap, args.overrides)
    try:  # a bad override fails here in one line, not later in every job of every sweep
        for command in commands:
            compose(first_job(command))
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    commands.append(analysis_command(study_dir))
    start, failed = time.monotonic(), 0
    for command in commands:
        print("$ " + shlex.join(command), flush=True)
        if not args.dry_run:
            failed += subprocess.run(command).returncode != 0
    if not args.dry_run:
        print(f"{study.name}: {len(commands)} commands in {(time.monotonic() - start) / 60:.1f} min, {failed} failed; "
              f"tables and figures in {study_dir / 'analysis'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
