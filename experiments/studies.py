"""The studies: which `python run.py -m` sweeps make each table, and with what settings.

Every sweep of a study writes below the study directory (`hydra.sweep.dir`), so `python -m analysis <study dir>`
finds all of its records; a study with several sweeps gives each its own sub-directory.
"""

from collections.abc import Callable
from dataclasses import dataclass

from experiments import ablations
from roadmap import ADOPTED_STEPS, STEP_NAMES

# Fashion-MNIST proxy budget: the 17 tiny-path steps, 1 seed, under 60 minutes on a 2-core CPU. 32k training
# images per step (16k x 2 epochs at the data config's batch 128), at the 220-600 img/s these networks train at
# there (`python -m analysis.benchmark --batch 128 --size 32 --in-chans 1 --num-classes 10`), plus about 25 s per
# run for start-up, FLOP count and evaluation on the 10k test images. The README gives the measured time.
FMNIST_SETTINGS = ("data=fashion_mnist", "data.train_subset=16000", "data.epochs=2")


@dataclass(frozen=True)
class Sweep:
    name: str  # sub-directory of the study directory; "" for a study of one sweep
    overrides: tuple[str, ...]  # Hydra overrides of `python run.py -m`, sweeps (`a,b,c`) included


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    settings: tuple[str, ...]  # overrides shared by every run of the study
    default_seeds: int
    sweeps: Callable[[str], list[Sweep]]  # roadmap name -> sweeps


def roadmap_sweeps(roadmap_name: str) -> list[Sweep]:
    return [Sweep("", ("+step=" + ",".join(STEP_NAMES),))]


def _ablation_sweeps(base_step: str, ablation_list: list[ablations.Ablation]) -> list[Sweep]:
    """The base step itself, then each ablation of it."""
    return [Sweep(base_step, (f"+step={base_step}",))] + [
        Sweep(a.name, (f"+step={a.step}", *a.overrides)) for a in ablation_list]


def leave_one_out_sweeps(roadmap_name: str) -> list[Sweep]:
    return _ablation_sweeps(ADOPTED_STEPS[-1], ablations.leave_one_out(roadmap_name))


def add_one_in_sweeps(roadmap_name: str) -> list[Sweep]:
    return _ablation_sweeps(ADOPTED_STEPS[0], ablations.add_one_in(roadmap_name))


STUDIES = {study.name: study for study in [
    Study("roadmap_fmnist", "every step of the roadmap on Fashion-MNIST 32x32, the embedded proxy "
          "(2-core CPU: 35 min measured)",
          FMNIST_SETTINGS, 1, roadmap_sweeps),
    Study("roadmap_imagenet", "every step of the roadmap in the paper's setting: ImageNet-1K at 224, 300 epochs, "
          "3 seeds (a GPU cluster; give data.root=... and a launcher)", ("data=imagefolder",), 3, roadmap_sweeps),
    Study("leave_one_out", "the roadmap's last network (ConvNeXt-T) with each design change undone alone, on the "
          "Fashion-MNIST proxy", FMNIST_SETTINGS, 1, leave_one_out_sweeps),
    Study("add_one_in", "the roadmap's first network (ResNet-50) with each design change applied alone, on the "
          "Fashion-MNIST proxy", FMNIST_SETTINGS, 1, add_one_in_sweeps),
]}
