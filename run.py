"""Train and test one roadmap variant and leave its record: `python run.py +step=<name> [data=...] [seed=...]`.

Without arguments: step 0 (ResNet-50, original recipe) on Fashion-MNIST. The run directory is named after what
was run; running the same command again resumes an interrupted run or reports a completed one. `-m` sweeps
(see conf/hydra/launcher/ for parallel and SLURM launchers; torchrun for data parallelism).
"""

import itertools
import sys
import traceback
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# fvcore scripts a loss function when imported (by roadmap.flops), which recent PyTorch warns about.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
# conf/hydra/launcher/ ships full settings (every field, with _target_) under the launcher plugins' own names, so
# Hydra's check of them against the plugins' schemas, which it says it will drop, is not needed.
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")

from roadmap import distributed, train  # noqa: E402
from roadmap.config import ConfigError, compose, validate  # noqa: E402
from roadmap.data import build_splits, check_batch_fits  # noqa: E402
from roadmap.record import RunRecord  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 3}
_FLAGS_WITH_VALUE = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-p", "--package"}
# Hydra answers these itself and trains nothing.
_INFO_FLAGS = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion",
               "--experimental-rerun"}


def _command_line_overrides(argv: list[str]) -> tuple[list[str], bool]:
    """(the overrides on a Hydra command line, whether it asks for a multirun)."""
    overrides, multirun, skip = [], False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides, multirun


def _one_line(error: Exception) -> str:
    if isinstance(error, MissingConfigException) and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name}: no such config; choose one of {', '.join(error.options)}"
    return str(error).split("\n\n")[0].replace("\n", " ")


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The overrides of each job of a `-m` sweep, expanded as Hydra's basic sweeper does (a key's last override
    wins; the cartesian product of the swept values)."""
    per_key = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        per_key[key] = ([f"{key}={value}" for value in override.sweep_string_iterator()]
                        if override.is_sweep_override() else [override.input_line])
    return [list(job) for job in itertools.product(*per_key.values())]


def check_job(overrides: list[str], checked_data: set[str]) -> None:
    """Everything about a job that can be known before training: its settings, its device, its data and splits
    (loaded once per distinct data and budget settings in `checked_data`)."""
    cfg = compose(overrides)
    train.resolve_device(cfg.runtime.device)
    data = OmegaConf.to_yaml(cfg.data, resolve=True) + OmegaConf.to_yaml(cfg.budget, resolve=True)
    if data not in checked_data:
        check_batch_fits(build_splits(cfg.data, cfg.budget, cfg.recipe), cfg.data, cfg.budget)
        checked_data.add(data)


def check_command_line(argv: list[str]) -> None:
    """Exit with one line, before Hydra creates anything, if any job of the command line could not be set up."""
    if _INFO_FLAGS & set(argv):
        return
    overrides, multirun = _command_line_overrides(argv)
    job, checked_data = "", set()
    try:
        jobs = sweep_jobs(overrides) if multirun else [overrides]
        swept = [i for i, values in enumerate(zip(*jobs)) if len(set(values)) > 1]
        for number, overrides in enumerate(jobs, 1):
            if multirun:
                swept_values = " ".join(overrides[i] for i in swept)
                job = f"job {number} of {len(jobs)}" + (f" ({swept_values})" if swept_values else "") + ": "
            check_job(overrides, checked_data)
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        print(f"error: {job}{_one_line(e)}", file=sys.stderr)
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
    """Run and record one job. Every outcome ends in result.json; nothing propagates but an interrupt."""
    record = RunRecord(run_dir, is_writer=distributed.rank() == 0)
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


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    distributed.init()
    try:
        result = run_job(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
    finally:
        distributed.shutdown()
    # A sweep goes on past a failed job (its record says why); a single run exits with its status.
    if hydra_cfg.mode == RunMode.RUN and result["status"] != "completed":
        sys.exit(EXIT_CODES[result["status"]])


if __name__ == "__main__":
    check_command_line(sys.argv[1:])
    if distributed.rank_from_env() > 0:
        # Every torchrun process runs the same job in the same directory; only rank 0 writes Hydra's files.
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    main()
