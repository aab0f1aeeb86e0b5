"""Run a study end to end: its `python run.py -m` sweeps, then `python -m analysis` on their records.

    python -m experiments                      # list the studies
    python -m experiments STUDY [--seeds N] [--roadmap tiny|base] [--out DIR] [--config-dir DIR] [--dry-run]
        [OVERRIDE ...]

OVERRIDEs are passed to every sweep, e.g. `hydra/launcher=joblib` to run jobs in parallel, or `data.root=...`.
`--config-dir DIR`, a folder of one's own configs, goes to every run and to the analysis, as run.py's: the steps of
its `step/` join the roadmap studies. Rerunning a study skips the runs it already completed (run.py does) and
redoes the analysis.
"""

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hydra._internal.utils import get_args_parser

from experiments.studies import STUDIES, Study
from roadmap import ConfigError, compose
from roadmap.config import expand_home, override_key, parse_overrides, user_config_dirs
from roadmap.network.steps import Step, load_steps

RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def sweep_commands(study: Study, study_dir: Path, seeds: int, roadmap_name: str, overrides=(),
                   steps: tuple[Step, ...] | None = None, config_dir: Path | None = None) -> list[list[str]]:
    """The `python run.py -m ...` command of each of the study's sweeps. An override given here replaces the
    study's own for the same key (e.g. `budget.epochs=5`, or `+step=resnet,gelu` to run part of a roadmap).
    `steps`: the steps, by default the built-in ones; `config_dir`: run.py's `--config-dir`."""
    replaced = {override_key(override) for override in overrides}
    config_dir_flag = ["--config-dir", str(config_dir)] if config_dir is not None else []
    commands = []
    for sweep in study.sweeps(roadmap_name, steps if steps is not None else load_steps()):
        own = [f"roadmap={roadmap_name}", *study.settings, *sweep.overrides, study.seeds_override(seeds)]
        commands.append([sys.executable, str(RUN_PY), "-m", *config_dir_flag,
                         *(o for o in own if override_key(o) not in replaced), *overrides,
                         f"hydra.sweep.dir={study_dir / sweep.name}"])
    return commands


def first_job(command: list[str]) -> list[str]:
    """The overrides of a sweep command's first job: each sweep (`key=a,b,c`) at its first value; of Hydra's own
    settings only the search path, which decides the configs."""
    overrides = [arg for arg in get_args_parser().parse_args(command[2:]).overrides
                 if not arg.startswith("hydra") or override_key(arg) == "hydra.searchpath"]
    return [f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
            for o in parse_overrides(map(expand_home, overrides))]


def analysis_command(study_dir: Path, config_dir: Path | None = None) -> list[str]:
    config_dir_flag = ["--config-dir", str(config_dir)] if config_dir is not None else []
    return [sys.executable, "-m", "analysis", str(study_dir), "--out", str(study_dir / "analysis"), *config_dir_flag]


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
    parser.add_argument("--config-dir", type=Path,
                        help="a folder of one's own configs, as run.py's --config-dir: its steps join the study")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_intermixed_args(argv)
    if args.study is None:
        parser.print_help()
        return 0

    study = STUDIES[args.study]
    study_dir = (args.out or Path("runs") / study.name).resolve()
    config_dir = args.config_dir.resolve() if args.config_dir else None
    try:  # a bad override or step file fails here in one line, not later in every job of every sweep
        steps = load_steps(config_dirs=user_config_dirs(args.overrides, config_dir))
        commands = sweep_commands(study, study_dir, args.seeds or study.default_seeds, args.roadmap, args.overrides,
                                  steps, config_dir)
        for command in commands:
            compose(first_job(command), config_dir=config_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    commands.append(analysis_command(study_dir, config_dir))
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
