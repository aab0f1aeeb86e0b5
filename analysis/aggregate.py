"""Run records -> one row per run -> the roadmap table, with the paper's numbers beside ours.

A run record is a directory holding `result.json` (written by run.py), `metrics.csv` and Hydra's `.hydra/`.
Runs are averaged over seeds only when they agree on everything else: roadmap, data, recipe, step and every other
override. Overrides are sorted into two kinds:
- `design`: `model.*` and `recipe=` overrides, which change what is trained at a step (leave-one-out, add-one-in);
  runs with a design change are ablations of their step and go to the ablation table, not the roadmap table;
- `settings`: every other override that changes what is trained (epochs, subsets, image size, batch, ...), that
  is all but roadmap, data, step, seed and the `runtime.*`/`data.root`-like switches of how a run runs; each
  distinct value of (roadmap, data, settings) is a separate family with its own tables and figures.
"""

import json
import os
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from analysis import stats
from roadmap.config import flatten, override_key
from roadmap.records.record import RENAMED_FIELDS, with_current_names
from roadmap.network.steps import CONF_DIR, Step, load_steps, searched_folders

PAPER_CSV = Path(__file__).with_name("paper_roadmap.csv")
FAMILY = ["roadmap", "data", "settings"]
GROUP = [*FAMILY, "step", "recipe", "design"]
# Overrides that say how rather than what: roadmap, data, step and seed (columns of their own) and the runtime
# switches. run.py's config lists them, to leave them out of run directory names.
_NOT_SETTINGS = set(yaml.safe_load((CONF_DIR / "config.yaml").read_text())
                    ["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"])
_SUMMARIZED = ["test_acc1", "test_acc5", "gflops_conv_linear", "gflops", "params", "train_imgs_per_s", "epochs",
               "input_size", "device"]


def find_results(paths) -> list[Path]:
    """Every `result.json` at or below the given run or sweep directories."""
    found = set()
    for path in map(Path, paths):
        if path.name == "result.json" and path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob("result.json"))
    return sorted(found)


def _load_config(run_dir: Path) -> dict:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation needing Hydra's runtime (`${hydra:...}`): keep it unresolved
        return OmegaConf.to_container(cfg, resolve=False)


def split_overrides(overrides) -> tuple[str, str]:
    """(design, settings): the run's overrides that change what is trained, each sorted and space-joined."""
    design, settings = [], []
    for override in overrides:
        key = override_key(override)
        if key in _NOT_SETTINGS or key.startswith(("runtime.", "hydra.", "hydra/")):
            continue
        (design if key == "recipe" or key.startswith("model.") else settings).append(override)
    return " ".join(sorted(design)), " ".join(sorted(settings))


def design_values(overrides) -> dict[str, object]:
    """Overrides as {key: value} read by Hydra's grammar, so that `model.depthwise=false` as a study writes it
    equals `model.depthwise=False` as a multirun records it; an override the grammar cannot read stays as written."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, values = OverridesParser.create(), {}
    for override in overrides:
        try:
            (parsed,) = parser.parse_overrides([override])
            values[parsed.key_or_group] = parsed.value()
        except Exception:  # noqa: BLE001 - Hydra raises its own OverrideParseException and others
            values[override] = None
    return values


def same_design(generated: dict[str, object], recorded: dict[str, object]) -> bool:
    """Whether a run's recorded overrides are a generated ablation's: the same keys and values, where a generated
    interpolation (`${...}`) takes whatever value a multirun recorded for it, resolved."""
    return generated.keys() == recorded.keys() and all(
        value == recorded[key] or (isinstance(value, str) and "${" in value) for key, value in generated.items())


def load_run(result_path: Path) -> dict:
    """One run as a flat row: every `result.json` field, then the flattened config it was trained under (the
    record wins on a shared key), then derived columns: run_dir, recipe, design, settings, config_source and
    `excluded` (why it is not averaged). The config is the record's own; a record from before runs recorded it
    is joined to its `.hydra/config.yaml`, which a later launch in the same directory may have rewritten."""
    run_dir = result_path.parent
    try:
        record = with_current_names(json.loads(result_path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        record = {"status": "unreadable", "error": f"result.json: {e}"}
    config = record.pop("config", None)
    config_source = "result.json" if config is not None else ".hydra/config.yaml (recorded before runs kept theirs)"
    config = config if config is not None else _load_config(run_dir)
    row = flatten(config) | {key: json.dumps(v) if isinstance(v, dict) else v for key, v in record.items()}
    row["config_source"] = config_source
    overrides = record.get("overrides")
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if overrides is None and overrides_file.is_file():
        overrides = yaml.safe_load(overrides_file.read_text())
    overrides = overrides or []
    row["overrides"] = " ".join(overrides)
    row["design"], row["settings"] = split_overrides(overrides)
    row["run_dir"] = str(run_dir)
    row.setdefault("roadmap", config.get("roadmap", {}).get("name"))
    row.setdefault("data", config.get("data", {}).get("name"))
    row.setdefault("step", config.get("step"))
    row["recipe"] = config.get("recipe", {}).get("name", record.get("recipe"))
    row["config_dirs"] = _user_config_dirs(run_dir)
    row["excluded"] = exclusion_reason(row)
    return row


def _user_config_dirs(run_dir: Path) -> str:
    """The folders of the user's own configs that the run's Hydra searched (`--config-dir`, `hydra.searchpath`),
    as its `.hydra/hydra.yaml` records them, joined by os.pathsep: where its steps not built in are written."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return ""
    sources = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.config_sources", default=None) or []
    return os.pathsep.join(map(str, searched_folders(sources)))


def step_tree(runs: pd.DataFrame, config_dirs=()) -> tuple[Step, ...]:
    """The steps, in table order: the built-in ones and the user's, read from `config_dirs` and from the folders
    the runs' Hydra searched (`config_dirs` column) where they still exist. ConfigError for a broken step file."""
    recorded = runs["config_dirs"].dropna().unique() if "config_dirs" in runs else []
    folders = [*map(Path, config_dirs), *(Path(p) for joined in recorded for p in str(joined).split(os.pathsep) if p)]
    steps = list(load_steps(CONF_DIR, list(dict.fromkeys(f.resolve() for f in folders if f.is_dir()))))
    return tuple(_with_recorded_steps(steps, runs))


def _with_recorded_steps(steps: list[Step], runs: pd.DataFrame) -> list[Step]:
    """`steps` with each step that only the runs' records know (a folder since moved), placed right after its
    recorded parent."""
    if "step_parent" not in runs:
        return steps
    known = {step.name for step in steps}
    recorded = runs[~runs.step.isin(known) & runs.step_parent.isin(known)].drop_duplicates("step")
    for _, run in recorded.iterrows():
        at = next(i for i, step in enumerate(steps) if step.name == run.step_parent) + 1
        steps.insert(at, Step(run.step, run.step_parent, adopted=False, builtin=not _false(run.get("step_builtin"))))
    return steps


def unknown_steps(runs: pd.DataFrame, steps: tuple[Step, ...]) -> list[str]:
    """The steps of `runs` that `steps` lacks: placed last, compared with no parent."""
    known = {step.name for step in steps}
    return [step for step in runs.step.dropna().unique() if step not in known]


def _order(steps: tuple[Step, ...]) -> dict[str, int]:
    return {step.name: i for i, step in enumerate(steps)}


def exclusion_reason(row: dict) -> str:
    """Why a run is left out of the means; empty for a completed run with a test accuracy."""
    status = row.get("status")
    if status != "completed":
        error = str(row.get("error") or "").strip().splitlines()
        return f"{status}: {error[0]}" if error else str(status)
    if pd.isna(row.get("test_acc1")):
        return "completed without test_acc1"
    return ""


def load_runs(paths) -> pd.DataFrame:
    """results.csv: one row per run found below `paths`, or read from a results.csv among them (a shared or
    committed result, whose run directories need not exist here)."""
    paths = [Path(p) for p in paths]
    text = {column: str for column in ["excluded", "design", "settings", "overrides", "error"]}
    tables = [pd.read_csv(p, dtype=text).fillna({c: "" for c in text}).rename(columns=RENAMED_FIELDS)
              for p in paths if p.suffix == ".csv" and p.is_file()]
    records = [load_run(p) for p in find_results(p for p in paths if p.suffix != ".csv")]
    runs = pd.concat([pd.DataFrame(records), *tables], ignore_index=True) if tables else pd.DataFrame(records)
    if runs.empty:
        return runs
    first = ["run_dir", "status", "excluded", *GROUP, "seed", "test_acc1", "test_acc5"]
    return runs[[c for c in first if c in runs] + [c for c in runs if c not in first]]


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """The metrics.csv of every included run without a design change, one row per epoch, with the run's group
    columns and seed."""
    runs = _normalized(runs)
    frames = []
    for _, run in runs[(runs.excluded == "") & (runs.design == "")].iterrows():
        path = Path(run.run_dir) / "metrics.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(**{key: run[key] for key in [*GROUP, "seed"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def family_curves(curves: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The curves of the runs behind `rows` (one family of the roadmap table)."""
    return curves.merge(rows[FAMILY].drop_duplicates(), on=FAMILY)


def _normalized(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with every column summaries read (a run that failed early lacks its measurements) and no NaN in the
    text group columns (pandas reads empty CSV cells back as NaN)."""
    runs = runs.reindex(columns=list(dict.fromkeys([*runs.columns, *_SUMMARIZED])))
    runs[["design", "settings"]] = runs[["design", "settings"]].fillna("")
    runs["excluded"] = runs["excluded"].fillna("")
    return runs


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one run) and n over the seeds of each group's included runs."""
    runs = _normalized(runs)
    included = runs[runs.excluded == ""]
    summary = included.groupby(GROUP, sort=False, dropna=False).agg(
        n=("test_acc1", "size"),
        test_acc1_mean=("test_acc1", "mean"),
        test_acc1_std=("test_acc1", "std"),
        test_acc1_ci95=("test_acc1", stats.t_half_width),
        test_acc5_mean=("test_acc5", "mean"),
        test_acc5_std=("test_acc5", "std"),
        gflops_conv_linear=("gflops_conv_linear", "mean"),
        gflops=("gflops", "mean"),
        params=("params", "mean"),
        train_imgs_per_s=("train_imgs_per_s", "mean"),
        epochs=("epochs", _distinct),
        input_size=("input_size", _distinct),
        device=("device", _distinct),
    )
    return summary.reset_index()


def _distinct(values: pd.Series) -> str:
    """The distinct values as text ("32", not "32.0", from a column that has gaps)."""
    return ", ".join(sorted({str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
                             for v in values.dropna()}))


def paper_numbers() -> pd.DataFrame:
    return pd.read_csv(PAPER_CSV)


def _delta_to_parent(table: pd.DataFrame, column: str) -> pd.Series:
    value_of = dict(zip(table.step, table[column]))
    return table[column] - table.parent.map(lambda parent: value_of.get(parent, float("nan")))


def _paired_changes(runs: pd.DataFrame, family: pd.DataFrame) -> pd.DataFrame:
    """Per step of `family`: the paired change in test top-1 from its parent over the seeds both ran."""
    plain = runs[(runs.excluded == "") & (runs.design == "")]
    plain = plain.merge(family[FAMILY].drop_duplicates(), on=FAMILY)
    by_seed = plain.pivot_table(index="seed", columns="step", values="test_acc1", aggfunc="mean")
    rows = []
    for step, parent in zip(family.step, family.parent):
        if parent in by_seed and step in by_seed:
            rows.append({"step": step} | stats.paired_change(by_seed[step], by_seed[parent]))
        else:
            rows.append({"step": step, "delta_test_acc1": float("nan"), "delta_ci95": float("nan"), "delta_n": 0,
                         "resolved": False})
    return pd.DataFrame(rows)


def _groups(steps: tuple[Step, ...], paper: pd.DataFrame) -> dict[str, str]:
    """The stage of each step: the paper's, else its parent's (a step of one's own sits in its parent's stage)."""
    groups = dict(zip(paper.step, paper.group))
    for step in steps:  # a parent comes before its children
        groups.setdefault(step.name, groups.get(step.parent, "other"))
    return groups


def roadmap_table(runs: pd.DataFrame, steps: tuple[Step, ...] | None = None) -> pd.DataFrame:
    """One row per (family, step) without a design change, in roadmap order (`steps`, by default the `step_tree`
    of the runs), with the paired change from the step's parent (same seeds) and the paper's numbers for that
    step. A step of the user's own is never adopted; its label says so."""
    steps = steps if steps is not None else step_tree(runs)
    by_name = {step.name: step for step in steps}
    summary = summarize(runs)
    runs = _normalized(runs)
    plain = summary[summary.design == ""].drop(columns="design")
    paper = paper_numbers().drop(columns="note")
    families = []
    for (roadmap_name, *_), family in plain.groupby(FAMILY, sort=False):
        family = family.assign(order=family.step.map(_order(steps)).fillna(len(steps)))
        family = family.sort_values("order", kind="stable")
        family = family.merge(paper.drop(columns="group"), on=["roadmap", "step"], how="left")
        family["adopted"] = family.step.map(lambda step: by_name[step].adopted if step in by_name else None)
        family["builtin"] = family.step.map(lambda step: by_name[step].builtin if step in by_name else None)
        family["parent"] = family.step.map(lambda step: by_name[step].parent if step in by_name else None)
        family["group"] = family.step.map(_groups(steps, paper[paper.roadmap == roadmap_name])).fillna("other")
        family["label"] = family.label.fillna(family.step).mask(family.builtin.eq(False), family.step + " (your step)")
        family = family.merge(_paired_changes(runs, family), on="step", how="left")
        family["paper_delta_acc1"] = _delta_to_parent(family, "paper_acc1").round(2)
        families.append(family)
    if not families:
        return pd.DataFrame()
    table = pd.concat(families, ignore_index=True)
    first = [*FAMILY, "order", "group", "step", "label", "adopted", "builtin", "parent", "recipe", "n",
             "test_acc1_mean", "test_acc1_std", "test_acc1_ci95", "delta_test_acc1", "delta_ci95", "delta_n",
             "resolved"]
    return table[first + [c for c in table if c not in first]]


def ablation_table(runs: pd.DataFrame, steps: tuple[Step, ...] | None = None) -> pd.DataFrame:
    """One row per (family, step, design change): the paired change in top-1 from the same step run without it
    (per seed, over the seeds both ran, with its 95% interval), sorted by that change within each family and step.
    Changes that a leave-one-out or add-one-in study generates are named after the roadmap step they undo/apply."""
    from experiments.ablations import add_one_in, leave_one_out  # the studies that generate these changes

    steps = steps if steps is not None else step_tree(runs)
    summary = summarize(runs)
    if not (summary.design != "").any():
        return pd.DataFrame()
    plain = summary[summary.design == ""].set_index([*FAMILY, "step"]).test_acc1_mean
    rows = summary[summary.design != ""].copy()
    generated = [(roadmap_name, ablation, design_values(ablation.overrides)) for roadmap_name in rows.roadmap.unique()
                 for ablation in leave_one_out(roadmap_name) + add_one_in(roadmap_name)]
    def generated_ablation(row):
        recorded = design_values(row.design.split())  # parsed once per row, not once per candidate
        return next((a for name, a, values in generated
                     if (name, a.step) == (row.roadmap, row.step) and same_design(values, recorded)), None)

    matches = [generated_ablation(r) for r in rows.itertuples()]
    rows["ablation"] = [a.name if a else design for a, design in zip(matches, rows.design)]
    rows["change"] = [a.change if a else "" for a in matches]
    rows["base_test_acc1"] = [plain.get((r.roadmap, r.data, r.settings, r.step), float("nan"))
                              for r in rows.itertuples()]
    by_seed = _normalized(runs)
    by_seed = by_seed[by_seed.excluded == ""].groupby([*FAMILY, "step", "design", "seed"]).test_acc1.mean().sort_index()
    paired = [stats.paired_change(by_seed.get((r.roadmap, r.data, r.settings, r.step, r.design), pd.Series()),
                                  by_seed.get((r.roadmap, r.data, r.settings, r.step, ""), pd.Series()))
              for r in rows.itertuples()]
    rows = rows.assign(**pd.DataFrame(paired, index=rows.index))
    order = _order(steps)
    rows = rows.assign(_step_order=rows.step.map(order).fillna(len(steps)))
    rows = rows.sort_values([*FAMILY, "_step_order", "delta_test_acc1"], kind="stable").drop(columns="_step_order")
    first = [*FAMILY, "step", "ablation", "change", "design", "recipe", "n", "test_acc1_mean", "test_acc1_std",
             "base_test_acc1", "delta_test_acc1", "delta_ci95", "delta_n", "resolved"]
    return rows[first + [c for c in rows if c not in first]].reset_index(drop=True)


def interaction_table(ablations: pd.DataFrame) -> pd.DataFrame:
    """For each design change that both ablation studies ran in a family: its effect alone (applied to the roadmap's
    first network, add-one-in) against its effect in context (what undoing it costs the last network, leave-one-out,
    with the sign turned so that both say what the change adds), each paired by seed with its 95% interval; `differ`
    where both intervals exist and do not overlap."""
    generated = ablations[ablations.change != ""]
    alone = generated[generated.ablation.str.startswith("with_")]
    removed = generated[generated.ablation.str.startswith("without_")]
    both = alone.merge(removed, on=[*FAMILY, "change"], suffixes=("_alone", "_removed"))
    if both.empty:
        return pd.DataFrame()
    table = both[[*FAMILY, "change"]].assign(
        first_step=both.step_alone, alone=both.delta_test_acc1_alone, alone_ci95=both.delta_ci95_alone,
        alone_n=both.delta_n_alone, last_step=both.step_removed, in_context=-both.delta_test_acc1_removed,
        in_context_ci95=both.delta_ci95_removed, in_context_n=both.delta_n_removed)
    low_alone, high_alone = table.alone - table.alone_ci95, table.alone + table.alone_ci95
    low_context, high_context = table.in_context - table.in_context_ci95, table.in_context + table.in_context_ci95
    table["differ"] = (high_alone < low_context) | (high_context < low_alone)  # NaN intervals compare False
    return table.reset_index(drop=True)


def interaction_markdown(table: pd.DataFrame) -> str:
    sections = []
    for family, rows in table.groupby(FAMILY, sort=False):
        first, last = rows.first_step.iloc[0], rows.last_step.iloc[0]
        header = ["change", f"Δ top-1 alone (applied to {first}), paired ± 95% CI", "n",
                  f"Δ top-1 in context (what undoing it costs {last}), paired ± 95% CI", "n", "intervals"]
        body = [[row.change, signed_interval_text(row.alone, row.alone_ci95), str(row.alone_n),
                 signed_interval_text(row.in_context, row.in_context_ci95), str(row.in_context_n),
                 "**do not overlap**" if row.differ else "overlap" if row.alone_n > 1 and row.in_context_n > 1
                 else "n/a (1 seed)"] for row in rows.itertuples()]
        sections.append("\n".join([
            f"## {family_name(family)}", "",
            "Each change's effect on its own and in the company of all the others, both as what the change adds "
            "(in context: the last network's top-1 minus that of the same network with this change undone). Where "
            "the intervals do not overlap the change's effect depends on the rest of the design.", "",
            *markdown_rows(header, body)]))
    return "\n\n".join(sections) + "\n"


def _without_lr_overrides(settings: str) -> str:
    return " ".join(o for o in settings.split()
                    if not (override_key(o) == "recipe.lr" or override_key(o).startswith("budget.lr_scaling")))


def lr_table(runs: pd.DataFrame, steps: tuple[Step, ...] | None = None) -> pd.DataFrame:
    """A learning-rate sweep: one row per (family, step, recipe, lr) of the runs without a design change, for the
    steps run at more than one `lr` (the rate they trained with at the budget's batch, from result.json), with
    test top-1 and the best validation top-1 over seeds. Overrides of `recipe.lr` and `budget.lr_scaling` do not
    split a family here: runs at the same `lr` reached by two rules are averaged together."""
    if "lr" not in runs:
        return pd.DataFrame()
    steps = steps if steps is not None else step_tree(runs)
    runs = _normalized(runs).reindex(columns=list(dict.fromkeys([*runs.columns, "lr_rule", "best_val_acc1"])))
    plain = runs[(runs.excluded == "") & (runs.design == "") & runs.lr.notna()].copy()
    plain["settings"] = plain.settings.map(_without_lr_overrides)
    keys = [*FAMILY, "step", "recipe"]
    plain = plain[plain.groupby(keys, sort=False).lr.transform("nunique") > 1]
    if plain.empty:
        return pd.DataFrame()
    table = plain.groupby([*keys, "lr"], sort=False).agg(
        lr_rule=("lr_rule", _distinct),
        n=("test_acc1", "size"),
        test_acc1_mean=("test_acc1", "mean"),
        test_acc1_ci95=("test_acc1", stats.t_half_width),
        best_val_acc1_mean=("best_val_acc1", "mean"),
    ).reset_index()
    table["best_val"] = table.best_val_acc1_mean == table.groupby(keys, sort=False).best_val_acc1_mean.transform("max")
    order = table.step.map(_order(steps)).fillna(len(steps))
    return table.assign(order=order).sort_values([*FAMILY, "order", "recipe", "lr"], kind="stable").drop(
        columns="order").reset_index(drop=True)


def lr_markdown(table: pd.DataFrame) -> str:
    """lr.md: per family, each step's test and validation top-1 at each learning rate; the best validation bold."""
    sections = []
    for family, rows in table.groupby(FAMILY, sort=False):
        header = ["step", "recipe", "lr (at the budget's batch)", "rule", "n", "top-1 (%) test, mean ± 95% CI",
                  "best val top-1 (%), mean"]
        body = [[row.step, row.recipe, f"{row.lr:.3g}", row.lr_rule, str(row.n),
                 _mean_std(row.test_acc1_mean, row.test_acc1_ci95),
                 f"**{row.best_val_acc1_mean:.2f}**" if row.best_val else number_text(row.best_val_acc1_mean, 2)]
                for row in rows.itertuples()]
        sections.append("\n".join([f"## {family_name(family)}", "",
                                   "Seeds are averaged at each lr; bold: the best validation top-1 of the step.", "",
                                   *markdown_rows(header, body)]))
    return "\n\n".join(sections) + "\n"


def family_name(family: tuple) -> str:
    """A family as a short title: roadmap · data · settings."""
    return " · ".join(str(part) for part in family if part)


def number_text(value, digits: int) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def _signed(value, digits: int) -> str:
    return "" if pd.isna(value) else f"{value:+.{digits}f}"


def _mean_std(mean, std, digits: int = 2) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not pd.isna(std) else f"{mean:.{digits}f}"


def signed_interval_text(mean, half, digits: int = 2) -> str:
    if pd.isna(mean):
        return ""
    mean = round(mean, digits) + 0.0  # a mean that rounds to zero prints +0.00, not -0.00
    return f"{mean:+.{digits}f} ± {half:.{digits}f}" if not pd.isna(half) else f"{mean:+.{digits}f}"


def resolved_text(row) -> str:
    if pd.isna(row.delta_test_acc1):
        return ""
    return "yes" if row.resolved else ("no" if row.delta_n > 1 else "no (1 seed)")


def markdown_rows(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def roadmap_markdown(table: pd.DataFrame) -> str:
    """roadmap.md: one section per family; the header of every column says what its number is."""
    sections = []
    for family, rows in table.groupby(FAMILY, sort=False):
        size, device = _distinct(rows.input_size), _distinct(rows.device)
        header = [
            "stage", "step", "top-1 (%) test, mean ± 95% CI over n seeds", "n",
            "Δ top-1 vs previous adopted step, paired by seed, ± 95% CI", "resolved",
            f"GFLOPs (fvcore conv+linear, at {size}×{size})", "params (M)", f"train img/s (measured, {device})",
            "paper top-1 (%) ImageNet-1K", "paper Δ", "paper GFLOPs (at 224×224)",
        ]
        body, previous_group = [], None
        for row in rows.itertuples():
            body.append([
                row.group if row.group != previous_group else "",
                _step_text(row),
                _mean_std(row.test_acc1_mean, row.test_acc1_ci95), str(row.n),
                signed_interval_text(row.delta_test_acc1, row.delta_ci95),
                resolved_text(row),
                number_text(row.gflops_conv_linear, 3), number_text(row.params / 1e6, 2),
                number_text(row.train_imgs_per_s, 0),
                _mean_std(row.paper_acc1, row.paper_acc1_std), _signed(row.paper_delta_acc1, 2),
                number_text(row.paper_gflops, 2),
            ])
            previous_group = row.group
        sections.append("\n".join([
            f"## {family_name(family)}",
            "",
            f"Ours: {_distinct(rows.epochs)} epochs on {family[1]}, top-1 on its test split; only completed runs "
            f"are averaged (Student-t 95% interval, none for n = 1). Δ is against the step's parent in the roadmap, "
            f"the previous adopted step, as the mean of the per-seed differences over the seeds both ran; resolved: "
            f"its interval excludes zero (never with one seed). Paper: Liu et al. 2022, ImageNet-1K at 224×224, "
            f"300 epochs (ResNet-50: 90), std over 3 seeds where given.",
            "",
            *markdown_rows(header, body),
        ]))
    return "\n\n".join(sections) + "\n"


def _step_text(row) -> str:
    """A step as the table names it; one not adopted (false, not unknown) says why."""
    if _false(row.builtin):
        return f"{row.step} (your step, not the paper's)"
    return f"{row.label} (side branch, not adopted)" if _false(row.adopted) else row.label


def _false(flag) -> bool:
    return not pd.isna(flag) and not flag


def ablation_markdown(table: pd.DataFrame) -> str:
    sections = []
    for family, rows in table.groupby(FAMILY, sort=False):
        header = ["network", "ablation", "overrides", "top-1 (%) test, mean ± std over n seeds", "n",
                  "top-1 (%) of the step as is", "Δ top-1, paired by seed, ± 95% CI", "resolved"]
        body = [[row.step, row.ablation, f"`{row.design}`", _mean_std(row.test_acc1_mean, row.test_acc1_std),
                 str(row.n), number_text(row.base_test_acc1, 2),
                 signed_interval_text(row.delta_test_acc1, row.delta_ci95), resolved_text(row)]
                for row in rows.itertuples()]
        sections.append("\n".join([f"## {family_name(family)}", "", *markdown_rows(header, body)]))
    return "\n\n".join(sections) + "\n"
