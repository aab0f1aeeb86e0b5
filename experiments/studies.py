"""The studies: which `python run.py -m` sweeps make each table, and with what settings.

Every sweep of a study writes below the study directory (`hydra.sweep.dir`), so `python -m analysis <study dir>`
finds all of its records; a study with several sweeps gives each its own sub-directory.
"""

from collections.abc import Callable
from dataclasses import dataclass

from experiments import ablations
from roadmap.config import compose
from roadmap.network.steps import Step

# The Fashion-MNIST proxy (conf/budget/fmnist_eighth_20ep.yaml): networks at an eighth of the paper's widths for
# 20 epochs, two single-threaded jobs at once (joblib), which trained 1.60x faster than one job after another on
# both cores (docs/speed.md).
FMNIST_SETTINGS = ("data=fashion_mnist", "budget=fmnist_eighth_20ep", "hydra/launcher=joblib")
# The same networks for 10 epochs (conf/budget/fmnist_eighth.yaml), the proxy before it.
EIGHTH_SETTINGS = ("data=fashion_mnist", "budget=fmnist_eighth", "hydra/launcher=joblib")
# The proxy before those (conf/budget/fmnist_7k.yaml), full-width networks on 7k images: its runs go one at a time on
# every core; on a 2-core CPU that finished a run every 2.0 min, two single-threaded jobs at once one every 3.1 min.
FMNIST_7K_SETTINGS = ("data=fashion_mnist", "budget=fmnist_7k")
# The pilot at a quarter of the paper's widths (conf/budget/fmnist_narrow.yaml).
NARROW_SETTINGS = ("data=fashion_mnist", "budget=fmnist_narrow", "hydra/launcher=joblib")
LENGTH_STEPS = ("resnet", "depthwise", "width", "sep_downsample")  # the two ends and the steps that change capacity


@dataclass(frozen=True)
class Sweep:
    name: str  # sub-directory of the study directory; "" for a study of one sweep
    overrides: tuple[str, ...]  # Hydra overrides of `python run.py -m`, sweeps (`a,b,c`) included


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    settings: tuple[str, ...]  # overrides shared by every run of the study, how to launch them included
    default_seeds: int
    sweeps: Callable[[str, tuple[Step, ...]], list[Sweep]]  # (roadmap name, the steps, one's own too) -> sweeps
    # The override that runs each design with `seeds` seeds: a sweep of `seed`, or a search's `search.seeds`.
    seeds_override: Callable[[int], str] = lambda seeds: "seed=" + ",".join(map(str, range(seeds)))


def roadmap_sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:
    return [Sweep("", ("+step=" + ",".join(step.name for step in steps),))]


def _adopted(steps: tuple[Step, ...]) -> list[str]:
    return [step.name for step in steps if step.adopted]


def adopted_sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:
    """The adopted path alone: every step whose change against its parent the calibration pairs with the paper's."""
    return [Sweep("", ("+step=" + ",".join(_adopted(steps)),))]


def _ablation_sweeps(base_step: str, ablation_list: list[ablations.Ablation]) -> list[Sweep]:
    """The base step itself, then each ablation of it."""
    return [Sweep(base_step, (f"+step={base_step}",))] + [
        Sweep(a.name, (f"+step={a.step}", *a.overrides)) for a in ablation_list]


def lr_sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:
    """Each recipe's learning rate at 1/4, 1 and 4 times the value its budget rule gives, on the steps that start
    and end its part of the roadmap: the measurement behind the proxy's rule (conf/budget/fmnist.yaml)."""
    return [Sweep("original", ("+step=resnet", "recipe.lr=0.025,0.1,0.4")),
            Sweep("modern", ("+step=modern_recipe,sep_downsample", "recipe.lr=1e-3,4e-3,1.6e-2"))]


def leave_one_out_sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:
    return _ablation_sweeps(_adopted(steps)[-1], ablations.leave_one_out(roadmap_name))


def add_one_in_sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:
    return _ablation_sweeps(_adopted(steps)[0], ablations.add_one_in(roadmap_name))


def length_sweeps(settings: tuple[str, ...]) -> Callable[[str, tuple[Step, ...]], list[Sweep]]:
    """The ends and the capacity steps at twice the budget's length: paired by seed with the same steps of a
    roadmap study (`python -m analysis.compare`), it says whether learning has ended at the budget's length."""
    def sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:  # composes when run, not at import
        epochs = compose([s for s in settings if not s.startswith("hydra/")]).budget.epochs
        return [Sweep("", ("+step=" + ",".join(LENGTH_STEPS), f"budget.epochs={2 * epochs}"))]
    return sweeps


# A design search (conf/search/roadmap_pareto.yaml: test top-1 up, GFLOPs down, NSGA-II) on `budget=fmnist_eighth`,
# the proxy's networks and data at 10 epochs, half of fmnist_eighth_20ep's: its runs took 100 s on average (2 at
# once on an idle 2-core CPU, roadmap_fmnist_eighth); on the CPU shared with another study, trials went by pairs
# every 6.7 min (the slower of two runs), so 12 trials take about 40 min. The roadmap at the same budget, 3 seeds,
# is the committed roadmap_fmnist_eighth.
SEARCH_SETTINGS = ("data=fashion_mnist", "budget=fmnist_eighth", "hydra/launcher=joblib", "+search=roadmap_pareto",
                   "hydra.sweeper.n_trials=12")


def search_sweeps(roadmap_name: str, steps: tuple[Step, ...]) -> list[Sweep]:
    return [Sweep("", ())]


STUDIES = {study.name: study for study in [
    Study("roadmap_fmnist", "every step of the roadmap on Fashion-MNIST 32x32 at an eighth of the paper's widths on "
          "20k images for 20 epochs, the embedded proxy, 3 seeds (2-core CPU: see docs/proxy.md for the measured "
          "time)", FMNIST_SETTINGS, 3, roadmap_sweeps),
    Study("roadmap_fmnist_8seeds", "the roadmap's adopted steps (no side branches) on the same proxy at 8 seeds, "
          "the n that resolves more of the steps' changes; its runs are roadmap_fmnist's, so with --out "
          "runs/roadmap_fmnist it trains only the seeds that study lacks", FMNIST_SETTINGS, 8, adopted_sweeps),
    Study("length_fmnist", "where learning ends on the proxy (budget=fmnist_eighth_20ep): ResNet-50, depthwise, width "
          "and ConvNeXt-T at twice its epochs, 2 seeds; compare with roadmap_fmnist", FMNIST_SETTINGS, 2,
          length_sweeps(FMNIST_SETTINGS)),
    Study("roadmap_fmnist_eighth", "every step of the roadmap on Fashion-MNIST 32x32 at an eighth of the paper's "
          "widths on 20k images for 10 epochs (budget=fmnist_eighth), the proxy before roadmap_fmnist, 3 seeds",
          EIGHTH_SETTINGS, 3, roadmap_sweeps),
    Study("length_fmnist_eighth", "where learning ends on budget=fmnist_eighth: ResNet-50, depthwise, width and "
          "ConvNeXt-T at twice its epochs, 2 seeds; compare with roadmap_fmnist_eighth", EIGHTH_SETTINGS, 2,
          length_sweeps(EIGHTH_SETTINGS)),
    Study("roadmap_fmnist_7k", "every step of the roadmap on Fashion-MNIST 32x32 at the paper's widths on 7k "
          "images (budget=fmnist_7k), the proxy before roadmap_fmnist_eighth, 3 seeds", FMNIST_7K_SETTINGS, 3,
          roadmap_sweeps),
    Study("lr_fmnist", "the learning-rate rule of the Fashion-MNIST proxy: each recipe's lr at 1/4, 1 and 4 times "
          "its base value, on the first and last step it trains (budget=fmnist_7k)", FMNIST_7K_SETTINGS, 1,
          lr_sweeps),
    Study("roadmap_fmnist_narrow", "every step of the roadmap on Fashion-MNIST 32x32 at a quarter of the paper's "
          "widths on 20k images (budget=fmnist_narrow), 3 seeds", NARROW_SETTINGS, 3, roadmap_sweeps),
    Study("length_fmnist_narrow", "where learning ends on budget=fmnist_narrow: ResNet-50, depthwise, width and "
          "ConvNeXt-T at twice its epochs, 2 seeds; compare with roadmap_fmnist_narrow", NARROW_SETTINGS, 2,
          length_sweeps(NARROW_SETTINGS)),
    Study("roadmap_imagenet", "every step of the roadmap in the paper's setting: ImageNet-1K at 224, each recipe's "
          "epochs (90 original, 300 modern), 3 seeds (a GPU cluster; give data.root=... and a launcher)",
          ("data=imagefolder",), 3, roadmap_sweeps),
    Study("leave_one_out", "the roadmap's last network (ConvNeXt-T) with each design change undone alone, on the "
          "Fashion-MNIST proxy (budget=fmnist_eighth_20ep), 3 seeds", FMNIST_SETTINGS, 3, leave_one_out_sweeps),
    Study("add_one_in", "the roadmap's first network (ResNet-50) with each design change applied alone, on the "
          "Fashion-MNIST proxy (budget=fmnist_eighth_20ep), 3 seeds", FMNIST_SETTINGS, 3, add_one_in_sweeps),
    Study("search_fmnist", "a search of the roadmap's design switches for test top-1 against GFLOPs (Optuna, "
          "NSGA-II, 12 trials, 1 seed each) on budget=fmnist_eighth; compare with roadmap_fmnist_eighth",
          SEARCH_SETTINGS, 1, search_sweeps, lambda seeds: f"search.seeds={seeds}"),
]}
