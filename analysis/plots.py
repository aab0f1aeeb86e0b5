"""The roadmap's figures, for one family of runs (roadmap, data, settings) each.

Figures are built on `matplotlib.figure.Figure`, which renders with Agg and touches no pyplot state, so they work
headless and in a notebook alike. Sizes are fixed in inches at `DPI`, so a PNG's pixel size is known in advance.
"""

import math
import textwrap

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox
from matplotlib.ticker import MaxNLocator

DPI = 100
ADOPTED_COLOR = "#3b6fb6"
PAPER_COLOR = "#9ab6dd"
SIDE_BRANCH_COLOR = "#b8b8b8"
SIDE_BRANCH_HATCH = "///"
ROW_INCHES = 0.3


def _slots(rows: pd.DataFrame) -> list[tuple[str, object]]:
    """Top-to-bottom rows of the bar charts: ("group", name) before each stage, then ("step", row)."""
    slots, previous = [], None
    for row in rows.itertuples():
        if row.group != previous:
            slots.append(("group", row.group))
            previous = row.group
        slots.append(("step", row))
    return slots


def roadmap_figure_size(rows: pd.DataFrame) -> tuple[float, float]:
    """(width, height) in inches of `roadmap_figure(rows)`."""
    with_paper = rows.paper_acc1.notna().any()
    return (16.0 if with_paper else 11.0), 1.6 + ROW_INCHES * len(_slots(rows))


def _axis_range(values: pd.Series, errors: pd.Series) -> tuple[float, float]:
    low, high = (values - errors.fillna(0)).min(), (values + errors.fillna(0)).max()
    pad = max(0.5, 0.15 * (high - low))
    return math.floor(low - pad), math.ceil(high + pad)


def _bars(ax, rows: pd.DataFrame, accuracy: str, accuracy_std: str, gflops: str) -> None:
    """Paper Figure 2 style: one bar per step starting at the axis' left edge, GFLOPs written on the bar."""
    left, right = _axis_range(rows[accuracy], rows[accuracy_std])
    ax.set_xlim(left, right)
    for y, (kind, row) in enumerate(_slots(rows)):
        if kind == "group" or pd.isna(getattr(row, accuracy)):
            continue
        value, std, flops = getattr(row, accuracy), getattr(row, accuracy_std), getattr(row, gflops)
        adopted = _is_adopted(row)
        color = (ADOPTED_COLOR if accuracy == "test_acc1_mean" else PAPER_COLOR) if adopted else SIDE_BRANCH_COLOR
        ax.barh(y, value - left, left=left, height=0.7, color=color,
                hatch=None if adopted else SIDE_BRANCH_HATCH, edgecolor="white" if adopted else "#808080",
                xerr=None if pd.isna(std) else std, error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "black"})
        label = f"{value:.2f}"
        if not pd.isna(flops):
            if value - left > 0.2 * (right - left):
                ax.text(left + 0.01 * (right - left), y, f"{_gflops(flops)} GFLOPs", va="center", ha="left",
                        fontsize=7.5, color="white" if adopted else "black")
            else:  # too short a bar to hold it
                label += f"  ({_gflops(flops)} GFLOPs)"
        ax.text(value + (0 if pd.isna(std) else std) + 0.01 * (right - left), y, label, va="center", fontsize=7.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _gflops(value: float) -> str:
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _legend(fig: Figure, side_branch_hatch: str | None) -> None:
    fig.legend(handles=[Patch(color=ADOPTED_COLOR, label="adopted"),
                        Patch(facecolor=SIDE_BRANCH_COLOR, hatch=side_branch_hatch, edgecolor="#808080",
                              label="side branch, not adopted")],
               loc="outside lower center", ncols=2, fontsize=8)


def roadmap_figure(rows: pd.DataFrame, agreement: str | None = None) -> Figure:
    """One family's roadmap table as the paper's Figure 2: bars per step grouped by stage (mean ± 95% CI over
    seeds), the paired change of each step from its parent beside the paper's change, and the paper's own numbers
    (ImageNet-1K, 224×224) when the paper has them, each on its own axis. `agreement`: a line under the title."""
    slots = _slots(rows)
    with_paper = rows.paper_acc1.notna().any()
    width, height = roadmap_figure_size(rows)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ratios = [3, 2, 3] if with_paper else [3, 2]
    axes = fig.subplots(1, len(ratios), sharey=True, squeeze=False, width_ratios=ratios)[0]
    size = ", ".join(sorted({str(s) for s in rows.input_size}))
    _bars(axes[0], rows, "test_acc1_mean", "test_acc1_ci95", "gflops_conv_linear")
    n = ", ".join(str(v) for v in sorted(rows.n.unique()))
    axes[0].set_xlabel(f"top-1 (%) on the test set,\nmean ± 95% CI over {n} seed(s)")
    axes[0].set_title(f"this project: {rows.data.iloc[0]}, GFLOPs at {size}×{size}", fontsize=10)
    _changes(axes[1], rows, with_paper)
    if with_paper:
        _bars(axes[2], rows, "paper_acc1", "paper_acc1_std", "paper_gflops")
        axes[2].set_xlabel("top-1 (%), ImageNet-1K\n(± std over 3 seeds where given)")
        axes[2].set_title("paper (Liu et al. 2022): ImageNet-1K, GFLOPs at 224×224", fontsize=10)
    axes[0].set_yticks(range(len(slots)), [item if kind == "group" else item.label for kind, item in slots])
    for tick, (kind, _) in zip(axes[0].get_yticklabels(), slots):
        tick.set_fontweight("bold" if kind == "group" else "normal")
        tick.set_fontsize(9 if kind == "group" else 8.5)
    axes[0].set_ylim(len(slots) - 0.5, -0.5)
    _legend(fig, SIDE_BRANCH_HATCH)
    _suptitle(fig, "ResNet → ConvNeXt roadmap, GFLOPs (fvcore conv+linear) on the bars", rows, agreement)
    return fig


def _changes(ax, rows: pd.DataFrame, with_paper: bool) -> None:
    """Each step's paired change from its parent (95% CI; hollow where the interval includes zero) and, as
    diamonds, the paper's change."""
    for y, (kind, row) in enumerate(_slots(rows)):
        if kind == "group" or pd.isna(row.delta_test_acc1):
            continue
        color = ADOPTED_COLOR if _is_adopted(row) else SIDE_BRANCH_COLOR
        ax.barh(y, row.delta_test_acc1, height=0.6, color=color if row.resolved else "white", edgecolor=color,
                xerr=None if pd.isna(row.delta_ci95) else row.delta_ci95,
                error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "black"})
        if with_paper and not pd.isna(row.paper_delta_acc1):
            ax.plot(row.paper_delta_acc1, y, marker="D", color="#d62728", markersize=4, linestyle="none")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_xlabel("Δ top-1 (points) vs the previous adopted step,\npaired by seed ± 95% CI"
                  + ("; ◆ the paper's Δ" if with_paper else ""))
    ax.set_title("change per step (filled: resolved, CI excludes 0)", fontsize=10)


def _suptitle(fig: Figure, what: str, rows: pd.DataFrame, agreement: str | None = None) -> None:
    """`what` for this family of runs, its settings (the overrides all its runs share) and the agreement with the
    paper each on a line of their own."""
    first = rows.iloc[0]
    settings = f"\nrun with {first.settings}" if pd.notna(first.settings) and first.settings else ""
    agreement = "\n" + textwrap.fill(f"agreement with the paper: {agreement}", 150) if agreement else ""
    fig.suptitle(f"{what} ({first.roadmap} path, {first.data}){settings}{agreement}", fontsize=11)


def accuracy_vs_gflops_figure(rows: pd.DataFrame) -> Figure:
    """Top-1 against GFLOPs, marker area by our parameter counts (the paper's panel has none), the adopted path
    joined in roadmap order."""
    with_paper = rows.paper_acc1.notna().any()
    fig = Figure(figsize=(13.0 if with_paper else 7.0, 6.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2 if with_paper else 1, squeeze=False)[0]
    size = ", ".join(sorted({str(s) for s in rows.input_size}))
    panels = [(axes[0], "gflops_conv_linear", "test_acc1_mean", "test_acc1_ci95",
               f"this project: {rows.data.iloc[0]} at {size}×{size}",
               f"GFLOPs (fvcore conv+linear, at {size}×{size})")]
    if with_paper:
        panels.append((axes[1], "paper_gflops", "paper_acc1", "paper_acc1_std", "paper: ImageNet-1K at 224×224",
                       "GFLOPs (at 224×224)"))
    adopted = rows.adopted.fillna(True).astype(bool)
    labelled = []
    for ax, x, y, y_std, title, xlabel in panels:
        area = 20 + 280 * rows.params / rows.params.max() if ax is axes[0] else pd.Series(60, index=rows.index)
        path = rows[adopted]
        ax.plot(path[x], path[y], color=ADOPTED_COLOR, alpha=0.4, zorder=1)
        ax.errorbar(rows[x], rows[y], yerr=rows[y_std], fmt="none", ecolor="black", elinewidth=1, capsize=2, zorder=2)
        ax.scatter(rows[x], rows[y], s=area, c=[ADOPTED_COLOR if a else SIDE_BRANCH_COLOR for a in adopted],
                   edgecolors="black", linewidths=0.5, zorder=3)
        ax.set(title=title, xlabel=xlabel, ylabel="top-1 (%)")
        ax.grid(alpha=0.3)
        shown = rows[x].notna() & rows[y].notna()
        labelled.append((ax, rows[x][shown], rows[y][shown], rows.label[shown], area[shown]))
    axes[0].text(0.99, 0.01, "marker area ∝ parameters", transform=axes[0].transAxes, ha="right", va="bottom",
                 fontsize=8, color="#555555")
    _legend(fig, None)
    _suptitle(fig, "Accuracy against compute", rows)
    for panel in labelled:
        _label_points(fig, *panel)
    return fig


LABEL_FONTSIZE = 7.5
# Where a label may go, in order of preference: (right or left of the marker, lines above or below the point).
LABEL_SPOTS = [(side, rise) for rise in (0, 1, -1, 2, -2, 3, -3, 4, -4) for side in (1, -1)]
LABEL_GAP = 2  # pixels between a marker and its label


def _label_points(fig: Figure, ax, xs: pd.Series, ys: pd.Series, labels: pd.Series, areas: pd.Series) -> None:
    """Each point's label beside its marker (`areas`: scatter sizes in points²), at the first of LABEL_SPOTS where
    it overlaps no marker, no label and no other text of the axes and stays inside them (else where it overlaps
    least); a thin line joins a label set off higher or lower to its marker. Placed in pixels of the final
    layout: call it once the figure holds everything else."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()  # runs the constrained layout, which fixes the data-to-pixel transform
    px_per_pt = fig.dpi / 72
    points = ax.transData.transform(list(zip(xs, ys)))
    radii = [math.sqrt(area / math.pi) * px_per_pt for area in areas]
    taken = [Bbox.from_bounds(x - r, y - r, 2 * r, 2 * r) for (x, y), r in zip(points, radii)]
    taken += [text.get_window_extent(renderer) for text in ax.texts]
    frame = ax.get_window_extent(renderer)
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        (px, py), radius, label = points[i], radii[i], labels.iloc[i]
        probe = ax.text(0, 0, label, fontsize=LABEL_FONTSIZE)
        width, height = probe.get_window_extent(renderer).size
        probe.remove()

        def box(side: int, rise: int) -> Bbox:
            left = px + side * (radius + LABEL_GAP) - (width if side < 0 else 0)
            return Bbox.from_bounds(left, py + rise * (height + 1) - height / 2, width, height)

        def clash(spot: tuple[int, int]) -> float:
            b = box(*spot)
            outside = not (frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1)
            return sum(_overlap(b, other) for other in taken) + outside * width * height

        side, rise = min(LABEL_SPOTS, key=clash)
        taken.append(box(side, rise))
        leader = {"arrowstyle": "-", "color": "#888888", "linewidth": 0.5, "shrinkA": 0,
                  "shrinkB": radius / px_per_pt}
        text = ax.annotate(label, (xs.iloc[i], ys.iloc[i]), textcoords="offset points",
                           xytext=(side * (radius + LABEL_GAP) / px_per_pt, rise * (height + 1) / px_per_pt),
                           ha="left" if side > 0 else "right", va="center", fontsize=LABEL_FONTSIZE,
                           arrowprops=leader if rise else None)
        text.set_in_layout(False)


def _overlap(a: Bbox, b: Bbox) -> float:
    """The area two boxes share."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def curves_figure(rows: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Validation top-1 and loss per epoch, one line per step (mean over its seeds). Validation loss rather than
    training loss: the modern recipe's MixUp/CutMix and label smoothing make training losses incomparable."""
    fig = Figure(figsize=(13.0, 5.0), dpi=DPI, layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    colors = colormaps["viridis"]
    for i, row in enumerate(rows.itertuples()):
        step_curves = curves[(curves.step == row.step) & (curves.recipe == row.recipe)]
        if step_curves.empty:
            continue
        mean = step_curves.groupby("epoch")[["val_acc1", "val_loss"]].mean()
        style = {"color": colors(i / max(1, len(rows) - 1)),
                 "linestyle": "-" if _is_adopted(row) else "--", "marker": "o", "markersize": 3, "label": row.label}
        acc_ax.plot(mean.index, mean.val_acc1, **style)
        loss_ax.plot(mean.index, mean.val_loss, **style)
    acc_ax.set(xlabel="epoch", ylabel="validation top-1 (%)", title="validation top-1, mean over seeds")
    loss_ax.set(xlabel="epoch", ylabel="validation loss", title="validation loss, mean over seeds")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="step (dashed: side branch)",
                   title_fontsize=8)
    _suptitle(fig, "Training curves", rows)
    return fig


def _is_adopted(row) -> bool:
    return True if pd.isna(row.adopted) else bool(row.adopted)


def _off_axis(deltas: pd.Series, errors: pd.Series, factor: float = 4.0) -> pd.Series:
    """The bars past a gap: sorted by extent (|change| + interval), each from the first that is more than `factor`
    times the one before (and than 0.5 points) on."""
    extent = deltas.abs() + errors
    ordered = extent.sort_values()
    for previous, value in zip(ordered, ordered.iloc[1:]):
        if value > factor * max(previous, 0.5):
            return extent >= value
    return extent > extent.max()


def ablation_figure(rows: pd.DataFrame) -> Figure:
    """Change in top-1 from each ablation, against its step run without the ablation's overrides: paired by seed,
    with its 95% interval; filled where the interval excludes zero. The rows in the table's order (sorted by change)."""
    fig = Figure(figsize=(8.0, 1.4 + ROW_INCHES * len(rows)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    y = range(len(rows))
    colors = [ADOPTED_COLOR if d >= 0 else "#c44e52" for d in rows.delta_test_acc1]
    bars = ax.barh(y, rows.delta_test_acc1.fillna(0), color=colors, edgecolor=colors,
                   xerr=rows.delta_ci95, error_kw={"elinewidth": 1, "capsize": 2})
    for bar, resolved in zip(bars, rows.resolved):
        if not resolved:
            bar.set_facecolor("none")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), [f"{r.ablation} ({r.step})" for r in rows.itertuples()], fontsize=8.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.margins(x=0.15)
    off_axis = _off_axis(rows.delta_test_acc1.fillna(0), rows.delta_ci95.fillna(0))
    if off_axis.any():  # a change many times the others' (a network that fails to train) would flatten them
        kept = rows[~off_axis]
        ax.set_xlim(*_axis_range(kept.delta_test_acc1.fillna(0), kept.delta_ci95))
        low, high = ax.get_xlim()
        for i, row in zip(y, rows.itertuples()):
            if off_axis.iloc[i]:
                left = row.delta_test_acc1 < 0
                ax.text(low if left else high, i, f" {row.delta_test_acc1:+.2f} ± {row.delta_ci95:.2f}, off the axis ",
                        ha="left" if left else "right", va="center", fontsize=8, color="white",
                        bbox={"facecolor": colors[i], "edgecolor": "none", "pad": 1})
    ax.set_xlabel("Δ top-1 (%) against the step as is, paired by seed, ± 95% CI\n"
                  "(filled: resolved, CI excludes 0)")
    ax.grid(axis="x", alpha=0.3)
    _suptitle(fig, "Ablations", rows)
    return fig
