"""Budgets: a proxy changes exactly the settings it documents, at every step, and nothing a step decides."""

from functools import cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from roadmap import STEP_NAMES, compose
from roadmap.training import recipe
from roadmap.config import flatten

PROXY_DOC = (Path(__file__).resolve().parent.parent / "docs" / "proxy.md").read_text()  # the budget table
PROXIES = ["fmnist", "fmnist_7k", "fmnist_16k", "fmnist_narrow", "fmnist_eighth", "fmnist_eighth_20ep", "small",
           "cifar"]


@cache
def _resolved(overrides: tuple[str, ...]) -> dict:
    return flatten(OmegaConf.to_container(compose(list(overrides)), resolve=True))


def resolved(overrides: list[str]) -> dict:
    return _resolved(tuple(overrides))


# The model switches a budget decides, and the budget setting each reads.
BUDGET_DECIDED = {"model.zero_init_last": "budget.zero_init_last.{optimizer}",
                  "model.layer_scale": "budget.layer_scale.{optimizer}", "model.width_multiplier": "budget.width"}


@pytest.mark.parametrize("budget", PROXIES)
def test_a_proxy_changes_only_budget_settings_at_every_step(budget):
    # Outside budget/, a budget decides only the init switches it owns (until a step sets one itself).
    for step in STEP_NAMES if budget == "fmnist_7k" else ["resnet", "gelu", "sep_downsample"]:
        paper = resolved([f"+step={step}", "budget=paper"])
        proxy = resolved([f"+step={step}", f"budget={budget}"])
        changed = {key for key in paper.keys() | proxy.keys() if paper.get(key) != proxy.get(key)}
        assert changed and all(key.startswith("budget.") for key in changed - BUDGET_DECIDED.keys()), step
        optimizer = proxy["recipe.optimizer"]
        for key in changed & BUDGET_DECIDED.keys():
            assert proxy[key] == proxy[BUDGET_DECIDED[key].format(optimizer=optimizer)], (step, key)


def test_every_budget_decided_switch_reads_its_budget_setting():
    raw = OmegaConf.to_container(compose([]).model, resolve=False)
    expected = {key: "${" + setting.replace("{optimizer}", "${recipe.optimizer}") + "}"
                for key, setting in BUDGET_DECIDED.items()}
    assert {f"model.{key}": value for key, value in raw.items() if "${budget." in str(value)} == expected


def test_the_proxy_turns_layer_scale_on_for_adamw_only_and_sep_downsample_sets_its_own():
    assert resolved(["+step=resnet"])["model.layer_scale"] == 0  # SGD
    assert resolved(["+step=modern_recipe"])["model.layer_scale"] == 1e-6  # AdamW, same network
    assert resolved(["+step=layernorm", "budget=paper"])["model.layer_scale"] == 0  # the paper: off before step 13
    assert resolved(["+step=sep_downsample", "budget=paper"])["model.layer_scale"] == 1e-6
    assert resolved(["+step=modern_recipe", "budget.layer_scale.adamw=0"])["model.layer_scale"] == 0


@pytest.mark.parametrize("budget", PROXIES)
def test_every_departure_from_the_paper_is_listed_in_the_budget_table(budget):
    paper, proxy = resolved(["budget=paper"]), resolved([f"budget={budget}"])
    changed = {key.split(".")[1] for key in proxy if key.startswith("budget.") and paper.get(key) != proxy[key]}
    for key in changed - {"name"}:
        assert f"`budget.{key}`" in PROXY_DOC, key


def test_the_recipe_as_trained_differs_only_in_the_budgets_regularisers():
    cfg = compose(["+step=sep_downsample", "budget.regularization=0.5"])
    trained = recipe.as_trained(cfg.recipe, cfg.budget)
    changed = {key for key in cfg.recipe if trained[key] != cfg.recipe[key]}
    assert changed == set(recipe.REGULARIZERS)
    assert (trained.mixup_alpha, trained.label_smoothing, trained.randaugment_magnitude) == (0.4, 0.05, 4)
    paper = compose(["+step=sep_downsample", "budget=paper"])
    assert recipe.as_trained(paper.recipe, paper.budget) == paper.recipe  # the paper's budget changes nothing


def test_no_regularisation_turns_every_regulariser_off():
    cfg = compose(["+step=modern_recipe", "budget.regularization=0"])
    trained = recipe.as_trained(cfg.recipe, cfg.budget)
    assert not trained.randaugment and recipe.build_mixer(trained, 10) is None
    assert trained.random_erasing == 0 and trained.label_smoothing == 0


def test_one_spelling_per_setting():
    for key in ["data.epochs=3", "recipe.epochs=3", "recipe.batch=64", "data.train_subset=10", "data.crop_scale=[1,1]"]:
        with pytest.raises(Exception, match=key.split("=")[0].split(".")[1]):
            compose([key])
