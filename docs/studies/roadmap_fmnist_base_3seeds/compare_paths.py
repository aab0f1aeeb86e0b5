"""The base path's changes step by step against the tiny path's on the same proxy and the paper's (which has numbers
for the tiny path only): each paired by seed with its 95% interval, signs, which are resolved, and the rank
correlation of the changes. Writes Markdown; run from the repository root:

    python docs/studies/roadmap_fmnist_base_3seeds/compare_paths.py > docs/studies/roadmap_fmnist_base_3seeds/paths.md

Its Spearman ranks the 13 adopted steps' changes (Δ against the parent), as analysis/calibration.py does.
"""

import pandas as pd

from analysis import aggregate, stats
from analysis.compare import accuracy_by_seed
from analysis.calibration import LARGE_EFFECT

FOLDERS = {"base path": "docs/studies/roadmap_fmnist_base_3seeds", "tiny path": "docs/studies/roadmap_fmnist_5seeds"}
tables, folders = {}, {}
for path, folder in FOLDERS.items():
    table = pd.read_csv(f"{folder}/roadmap.csv").set_index("step")
    pairs = table.delta_n[table.adopted & (table.delta_n > 0)]  # seeds paired, per adopted step
    name = f"{path} (n = {pairs.min()})" if pairs.min() == pairs.max() else f"{path} (n = {pairs.min()}-{pairs.max()})"
    tables[name], folders[name] = table, folder
base, tiny = tables.values()
steps = tiny.index[tiny.adopted & tiny.delta_test_acc1.notna()]
paper = tiny.loc[steps, "paper_delta_acc1"]
large = paper.abs().round(2) >= LARGE_EFFECT


def change_text(table: pd.DataFrame, step: str) -> str:
    row = table.loc[step]
    text = aggregate.signed_interval_text(row.delta_test_acc1, row.delta_ci95)
    return f"**{text}**" if row.resolved else text


rows = [[f"`{step}`", *(change_text(t, step) for t in tables.values()), f"{paper[step]:+.2f}",
         "yes" if large[step] else ""] for step in steps]
print("\n".join(aggregate.markdown_rows(["step (`+step=`)", *tables, "paper, tiny path", "large effect"], rows)))
print("\nBold: resolved (the paired 95% interval excludes zero).\n")
for name, t in tables.items():
    ours, resolved = t.loc[steps, "delta_test_acc1"], t.loc[steps, "resolved"].astype(bool)
    agree = (ours > 0) == (paper > 0)
    by_seed = accuracy_by_seed(aggregate.load_runs([f"{folders[name]}/results.csv"]))
    ends = stats.paired_change(by_seed["sep_downsample"], by_seed["resnet"])
    with_tiny = ""
    if t is not tiny:
        same = [s for s in steps if resolved[s] and tiny.resolved[s] and (ours[s] > 0) == (tiny.delta_test_acc1[s] > 0)]
        with_tiny = (f", with the tiny path's {stats.spearman(ours, tiny.loc[steps, 'delta_test_acc1']):.2f}; resolved "
                     f"on both paths with the same sign: {', '.join(same) or 'none'}")
    print(f"- {name}: sign of the paper's on {agree.sum()}/{len(steps)} adopted steps and {agree[large].sum()}/"
          f"{large.sum()} large-effect ones, {(agree & resolved)[large].sum()} of those resolved; Spearman of the "
          f"changes with the paper's {stats.spearman(ours, paper):.2f}{with_tiny}; ends (ConvNeXt - ResNet, paired) "
          f"{aggregate.signed_interval_text(ends['delta_test_acc1'], ends['delta_ci95'])}")
