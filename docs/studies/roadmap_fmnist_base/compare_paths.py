"""The base path's changes step by step against the tiny path's and the paper's (which has numbers for the tiny path
only): signs and the rank correlation of the changes. Writes Markdown; run from the repository root:

    python docs/studies/roadmap_fmnist_base/compare_paths.py > docs/studies/roadmap_fmnist_base/paths.md

Its Spearman ranks the 13 adopted steps' changes (Δ against the parent), not the steps' accuracies as the
calibration's does (analysis/calibration.py).
"""

import pandas as pd

from analysis.aggregate import markdown_rows, signed_interval_text
from analysis.calibration import LARGE_EFFECT
from analysis.stats import spearman

STUDIES = {"base path, 10 epochs (n = 1)": "docs/studies/roadmap_fmnist_eighth_base/roadmap.csv",
           "base path, 20 epochs (n = 1)": "docs/studies/roadmap_fmnist_base/roadmap.csv",
           "tiny path, 20 epochs (n = 3)": "docs/studies/roadmap_fmnist/roadmap.csv"}
tables = {name: pd.read_csv(path).set_index("step") for name, path in STUDIES.items()}
tiny = tables["tiny path, 20 epochs (n = 3)"]
steps = tiny.index[tiny.adopted & tiny.delta_test_acc1.notna()]
paper = tiny.loc[steps, "paper_delta_acc1"]
large = paper.abs().round(2) >= LARGE_EFFECT

rows = [[f"`{step}`", *(signed_interval_text(t.loc[step, "delta_test_acc1"], t.loc[step, "delta_ci95"])
                         for t in tables.values()), f"{paper[step]:+.2f}"] for step in steps]
print("\n".join(markdown_rows(["step (`+step=`)", *STUDIES, "paper, tiny path"], rows)))
print()
for name, t in tables.items():
    ours = t.loc[steps, "delta_test_acc1"]
    agree = (ours > 0) == (paper > 0)
    with_tiny = "" if t is tiny else (
        f", with the tiny path's {spearman(ours, tiny.loc[steps, 'delta_test_acc1']):.2f}")
    print(f"- {name}: sign of the paper's on {agree.sum()}/{len(steps)} adopted steps and {agree[large].sum()}/"
          f"{large.sum()} large-effect ones; Spearman of the changes with the paper's "
          f"{spearman(ours, paper):.2f}{with_tiny}; ends (ConvNeXt - ResNet) "
          f"{t.loc['sep_downsample', 'test_acc1_mean'] - t.loc['resnet', 'test_acc1_mean']:+.2f}")
