"""A search of the roadmap's design space by Hydra's Optuna sweeper: `python run.py -m +search=roadmap` (conf/search/).

Each trial is `search.seeds` runs of one design (one run per seed, each with its own record, so a seed's run is
reused or resumed as any run is), and its objectives are the means over those runs of the record's fields named by
`search.objectives`, which run.py returns. The study is stored in the sweep directory (`hydra.sweeper.storage`):
`hydra.sweeper.n_trials` counts its trials in all, so the same command after a kill runs only the trials left, and
a trial the kill interrupted is run again with the same design, its runs resuming from their checkpoints. One
sweeper drives a study at a time; its launcher (joblib, submitit) runs the trials' runs in parallel.
"""

import hashlib
import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.errors import HydraException
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from roadmap.config import ConfigError, compose, override_key

log = logging.getLogger(__name__)

# The numeric fields of a completed run's result.json that a search may optimise (docs/records.md).
OBJECTIVE_FIELDS = ("test_acc1", "test_acc5", "best_val_acc1", "ema_test_acc1", "ema_test_acc5", "params", "gflops",
                    "gflops_conv_linear", "train_imgs_per_s", "wall_seconds", "peak_mem_mb")
INTERRUPTED = "interrupted"  # user attribute of a trial left running by a killed search


def objective_values(result: dict, objectives: Sequence[str]) -> list[float] | None:
    """The run's objectives from its record, in order; None for a run that did not complete (its trial fails)."""
    if result.get("status") != "completed":
        return None
    return [float(result[field]) for field in objectives]


def search_space(params: DictConfig | None, arguments: Sequence[str] = ()) -> tuple[dict, dict]:
    """Optuna's distributions and the fixed settings of `hydra.sweeper.params` plus the command line's overrides,
    as the Optuna sweeper reads them; ConfigError, one line, for one it cannot parse (an empty `choice()`)."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    try:
        distributions, fixed = create_params_from_overrides(lines)
    except HydraException as e:
        bad = next(line for line in lines if _unparsable(line))
        raise ConfigError(f"search space: {bad}: {str(e).splitlines()[1].strip()}") from None
    for name in fixed:
        distributions.pop(name, None)
    return distributions, fixed


def _unparsable(line: str) -> bool:
    try:
        OverridesParser.create().parse_override(line)
    except HydraException:
        return True
    return False


def check_search(composed: DictConfig, overrides: Sequence[str], config_dir=None) -> None:
    """ConfigError, one line, for a search that could not run, before any trial: an objective that names no field
    of the record, `seed` in the search space (search.seeds sets it), or a switch of the search space that is not a
    setting or a value of it that a run would refuse (each value is composed with the command line's overrides)."""
    for field in composed.search.objectives:
        if field not in OBJECTIVE_FIELDS:
            raise ConfigError(f"search.objectives.{field}: names no numeric field of result.json; one of "
                              f"{', '.join(OBJECTIVE_FIELDS)}")
    distributions, _ = search_space(composed.hydra.sweeper.get("params"))
    if "seed" in distributions:
        raise ConfigError("search space: seed: set by search.seeds (seeds seed..seed+seeds-1), not searched")
    task = OmegaConf.masked_copy(composed, [key for key in composed if key != "hydra"])
    overrides = [o for o in overrides if not override_key(o).startswith(("hydra.", "hydra/"))
                 or override_key(o) == "hydra.searchpath"]  # a run composes no Hydra settings
    for key, distribution in distributions.items():
        if OmegaConf.select(task, key.lstrip("+"), default=_ABSENT) is _ABSENT:
            raise ConfigError(f"search space: {key}: unknown setting; the settings are those of "
                              "roadmap/config/schema.py")
        for value in distribution.choices if hasattr(distribution, "choices") else ():
            try:
                compose([*overrides, f"{key}={value}"], config_dir=config_dir)
            except ConfigError as e:
                raise ConfigError(f"search space: {key}={value}: {e}") from None


_ABSENT = object()


class SearchSweeper(OptunaSweeperImpl):
    """Hydra's Optuna sweeper (hydra-optuna-sweeper), with a trial scored by the mean of its seeds' runs, the study's
    directions taken from `search.objectives`, and `n_trials` the study's total (module docstring)."""

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.seeds = list(range(config.seed, config.seed + config.search.seeds))
        self.direction = list(config.search.objectives.values())

    def sweep(self, arguments: list[str]) -> None:
        distributions, fixed = search_space(self.params, arguments)
        if self.storage and str(self.storage).startswith("sqlite:///"):
            Path(str(self.storage).removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    directions=self.direction, load_if_exists=True)
        requeued = requeue_interrupted(study)
        done = len(finished_trials(study))
        log.info(f"Study {study.study_name} in {self.storage}: {done} trials finished before, {requeued} interrupted "
                 f"and queued again; {max(self.n_trials - done, 0)} to run of n_trials={self.n_trials}, "
                 f"{len(self.seeds)} run(s) each")
        while (left := self.n_trials - len(finished_trials(study))) > 0:
            trials = [study.ask() for _ in range(min(left, self.n_jobs))]
            designs = self._configure_trials(trials, distributions, fixed)
            jobs = [(*design, f"seed={seed}", f"hydra.sweep.subdir='{self.design_dir(design)}/seed={seed}'")
                    for design in designs for seed in self.seeds]
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for i, trial in enumerate(trials):
                tell(study, trial, returns[i * len(self.seeds):(i + 1) * len(self.seeds)], self.seeds)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            front = study.best_trials
            log.info(f"{len(complete)} trials complete; Pareto front ({len(front)}): "
                     + "; ".join(f"trial {t.number}: {t.values}" for t in front))
        OmegaConf.save(OmegaConf.create({"name": "optuna", "study_name": study.study_name, "storage": self.storage,
                                         "objectives": dict(zip(self.config.search.objectives, self.direction)),
                                         "seeds": self.seeds,
                                         "pareto_front": [{"number": t.number, "params": t.params, "values": t.values}
                                                          for t in (study.best_trials if complete else [])]}),
                       Path(self.config.hydra.sweep.dir) / "optimization_results.yaml")


    def design_dir(self, design: Sequence[str]) -> str:
        """The trial's runs' directory below the sweep's, named by a hash of its design, so that a design run again
        reuses its records; Hydra's `key=value,...` name of ten switches is too long for a file name. Settings of
        how to run (`hydra.job.config.override_dirname.exclude_keys`) do not change it."""
        how = set(self.config.hydra.job.config.override_dirname.exclude_keys) - {"roadmap", "data", "step"}
        what = sorted(line for line in design if override_key(line) not in how)
        return f"design={hashlib.sha256(chr(10).join(what).encode()).hexdigest()[:12]}"


def finished_trials(study: optuna.Study) -> list:
    """The trials that count towards n_trials: complete or failed, not those a kill interrupted."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if INTERRUPTED not in t.user_attrs]


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark the trials a killed search left running as failed and interrupted, and queue their designs again."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params)
    return len(running)


def tell(study: optuna.Study, trial: optuna.Trial, returns: list, seeds: list[int]) -> None:
    """Score the trial by the mean over its seeds' runs of each objective, keeping each seed's values; a trial with
    a run that did not complete fails."""
    values = [ret.return_value if ret.status == JobStatus.COMPLETED else None for ret in returns]
    trial.set_user_attr("seeds", seeds)
    trial.set_user_attr("seed_values", values)
    if any(v is None or any(math.isnan(x) for x in v) for v in values):
        log.warning(f"trial {trial.number}: a run did not complete (its record says why); the trial fails")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, [statistics.fmean(objective) for objective in zip(*values)])
