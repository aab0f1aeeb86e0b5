"""Train and test one roadmap variant and leave its record: `python run.py +step=<name> [data=...] [seed=...]`.

Without arguments: step 0 (ResNet-50, original recipe) on Fashion-MNIST. The run directory is named after what
was run; running the same command again resumes an interrupted run or reports a completed one. `-m` sweeps
(see conf/hydra/launcher/ for parallel and SLURM launchers; torchrun for data parallelism).
"""

import argparse
import itertools
import sys
import traceback
import warnings
from pathlib import Path

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# fvcore scripts a loss function when imported (by roadmap.network.flops), which recent PyTorch warns about.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
# conf/hydra/launcher/ ships full settings (every field, with _target_) under the launcher plugins' own names, so
# Hydra's check of them against the plugins' schemas, which it says it will drop, is not needed.
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")

from roadmap.config import (ConfigError, compose_with_hydra, expand_home, parse_overrides,  # noqa: E402
                            validate)
from roadmap.records.fingerprint import trained_config  # noqa: E402
from roadmap.records.record import RecordMismatch, RunRecord  # noqa: E402
from roadmap.training import distributed, train  # noqa: E402
from roadmap.training.data import build_splits, check_batch_fits  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 3, "refused": EXIT_BAD_INPUT}
CONFIG_PATH, CONFIG_NAME = "conf", "config"  # @hydra.main's, which --config-path and --config-name replace
# Hydra answers these itself and trains nothing.
_INFO_ARGUMENTS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")


def config_sources(args: argparse.Namespace) -> dict:
    """Where the command line has Hydra read its configs (`--config-dir`, `--config-path`, `--config-name`), as
    keyword arguments of `roadmap.compose`."""
    return {"config_dir": args.config_dir,
            "config_path": Path(__file__).parent.resolve() / (args.config_path or CONFIG_PATH),
            "config_name": args.config_name or CONFIG_NAME}


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The overrides of each job of a `-m` sweep, expanded as Hydra's basic sweeper does (a key's last override
    wins; the cartesian product of the swept values)."""
    per_key = {}
    for override in parse_overrides(overrides):
        key = override.get_key_element()
        per_key[key] = ([f"{key}={value}" for value in override.sweep_string_iterator()]
                        if override.is_sweep_override() else [override.input_line])
    return [list(job) for job in itertools.product(*per_key.values())]


def job_run_dir(composed: DictConfig, multirun: bool) -> Path:
    """The directory Hydra will give the job it composed (`compose_with_hydra`'s config, `hydra` node included)."""
    HydraConfig.instance().set_config(composed)  # for ${hydra:job.override_dirname}
    hydra = composed.hydra
    return Path(f"{hydra.sweep.dir}/{hydra.sweep.subdir}" if multirun else hydra.run.dir)


def check_job(overrides: list[str], checked_data: set[str], multirun: bool, sources: dict) -> None:
    """Everything about a job that can be known before training: its settings, its device, whether its run
    directory holds a run of another config, its data and splits (loaded once per distinct data and budget
    settings in `checked_data`; the run this process launches reuses an image folder's listing)."""
    composed = compose_with_hydra(overrides, **sources)  # composed once: the job's settings and its directory
    run_dir = job_run_dir(composed, multirun)
    cfg = validate(OmegaConf.masked_copy(composed, [key for key in composed if key != "hydra"]))
    train.resolve_device(cfg.runtime.device)
    RunRecord(run_dir).check_config(trained_config(cfg))
    if multirun and cfg.search is not None:
        from roadmap.records.search import check_search  # optuna: imported by searches only

        check_search(composed, overrides, sources["config_dir"])
    data = OmegaConf.to_yaml(cfg.data, resolve=True) + OmegaConf.to_yaml(cfg.budget, resolve=True)
    if data not in checked_data:
        check_batch_fits(build_splits(cfg.data, cfg.budget, cfg.recipe), cfg.data, cfg.budget)
        checked_data.add(data)


def hydra_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line as Hydra's own parser reads it; ConfigError, one line, where Hydra would print its usage."""
    parser = get_args_parser()

    def fail(message: str):
        if message.startswith("unrecognized arguments"):
            message += " (Hydra takes its flags, -m and --config-dir among them, before the overrides)"
        raise ConfigError(message)

    parser.error = fail
    return parser.parse_args(argv)


def check_command_line(argv: list[str]) -> None:
    """Exit with one line, before Hydra creates anything, if any job of the command line could not be set up.
    The command line is read by Hydra's own parser, so the checks see the configs Hydra will."""
    job, checked_data = "", set()
    try:
        args = hydra_arguments(argv)
        if any(getattr(args, name) for name in _INFO_ARGUMENTS):
            return
        jobs = sweep_jobs(args.overrides) if args.multirun else [args.overrides]
        swept = [i for i, values in enumerate(zip(*jobs)) if len(set(values)) > 1]
        for number, overrides in enumerate(jobs, 1):
            if args.multirun:
                swept_values = " ".join(overrides[i] for i in swept)
                job = f"job {number} of {len(jobs)}" + (f" ({swept_values})" if swept_values else "") + ": "
            check_job(overrides, checked_data, args.multirun, config_sources(args))
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        print(f"error: {job}{str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _summary(result: dict) -> str:
    where = f"record: {result['run_dir']}"
    if result["status"] != "completed":
        return f"{result['status']}: {result.get('error')}\n{where}"
    if result.get("warning"):
        where = f"warning: {result['warning']}\n{where}"
    return (f"test top-1 {result['test_acc1']:.2f}%  top-5 {result['test_acc5']:.2f}%  |  "
            f"{result['params'] / 1e6:.2f}M params, {result['gflops_conv_linear']:.3f} GFLOPs (conv+linear) at "
            f"{result['input_size']}px  |  {result['train_imgs_per_s']:.0f} train img/s  |  "
            f"{result['wall_seconds'] / 60:.1f} min\n{where}")


def run_job(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Run and record one job. Every outcome but one ends in result.json; nothing propagates but an interrupt.
    The exception: a directory holding a run of another config is left as it is (status `refused`)."""
    record = RunRecord(run_dir, is_writer=distributed.rank() == 0)
    try:
        note = record.check_config(trained_config(validate(cfg)))
    except RecordMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return {"status": "refused", "error": str(e), "run_dir": str(run_dir)}
    except ConfigError:
        note = None  # the run records it below
    if note:
        print(f"note: {note}", file=sys.stderr)
    previous = record.completed_result()
    if previous is not None:
        print(f"already complete, not retrained\n{_summary(previous)}")
        return previous
    try:
        result = train.run(validate(cfg), run_dir, overrides)
    except ConfigError as e:
        result = record.base_result(cfg, overrides) | {"status": "failed", "error": str(e)}
    except Exception as e:
        traceback.print_exc()
        result = record.base_result(cfg, overrides) | {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    else:
        if distributed.rank() == 0:
            print(_summary(result))
        return result
    record.write_result(result)
    print(f"error: {result['error']}", file=sys.stderr)
    return result


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def main(cfg: DictConfig) -> list[float] | None:
    hydra_cfg = HydraConfig.get()
    distributed.init()
    try:
        result = run_job(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
    finally:
        distributed.shutdown()
    # A sweep goes on past a failed job (its record says why); a single run exits with its status.
    if hydra_cfg.mode == RunMode.RUN and result["status"] != "completed":
        sys.exit(EXIT_CODES[result["status"]])
    if cfg.get("search") is not None:  # a search's trial (+search=...): its objectives, from the record
        from roadmap.records.search import objective_values

        return objective_values(result, list(cfg.search.objectives))
    return None


if __name__ == "__main__":
    sys.argv[1:] = map(expand_home, sys.argv[1:])  # data.root=~/data: Hydra's grammar takes no ~
    if distributed.rank_from_env() == 0:
        check_command_line(sys.argv[1:])
    else:
        # Every torchrun process runs the same job in the same directory; only rank 0 writes Hydra's files.
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    # Under torchrun the checks run once, on rank 0, while the other processes wait here: if rank 0 exits on a bad
    # command line, torchrun stops them before Hydra creates anything.
    distributed.init()
    distributed.barrier()
    main()
