"""The figures: one row per case, the printed tables and the CSV.

- img/s: batch / median step time over the timed rounds; spread: (max - min) / median of those times.
- ratio (our/theirs): median over rounds of (reference step time / our step time) within the same round, against
  the faster reference (the lower median time among the references of that architecture); > 1: ours faster. A
  reference's row holds ours against it. The ratio of medians is given beside it.
- MFU: 2 x fvcore's conv+linear multiply-accumulates (batch 1, eval mode, the benchmark's input size) x img/s over
  the matmul peak, training counted as 3 x forward; norms, activations and pooling are left out, as the matmul units
  do not run them.
- The CSV shares its field names with run records (result.json): step, roadmap, device, dtype, batch, input_size,
  channels_last, compile, train_imgs_per_s, infer_imgs_per_s, peak_mem_mb, gflops, gflops_conv_linear, params, mfu.
  Reference rows have an empty `step` and name themselves in `model`.
"""

import csv
import statistics

import torch

from roadmap.machines.benchmark.machine import device_name, load_average
from roadmap.machines.benchmark.models import Case
from roadmap.machines.benchmark.pipeline import LoaderSpeed
from roadmap.machines.benchmark.settings import Settings

CSV_FIELDS = ["model", "source", "step", "roadmap", "reference_of", "device", "device_name", "dtype", "batch",
              "input_size", "in_chans", "num_classes", "channels_last", "compile", "threads", "optimizer",
              "train_imgs_per_s", "infer_imgs_per_s", "train_s_median", "infer_s_median", "train_s_spread",
              "infer_s_spread", "peak_mem_mb", "peak_mem_kind", "gflops", "gflops_conv_linear", "params", "mfu",
              "infer_mfu", "peak_tflops", "train_ratio", "infer_ratio", "train_ratio_of_medians",
              "infer_ratio_of_medians", "ratio_against", "compile_train_gain", "compile_infer_gain", "reps",
              "warmup", "torch_version"]
COMPARISON_FIELDS = ["train_ratio", "infer_ratio", "train_ratio_of_medians", "infer_ratio_of_medians",
                     "ratio_against", "compile_train_gain", "compile_infer_gain"]


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over rounds of theirs / ours step time (> 1: ours faster)."""
    return statistics.median(t / o for o, t in zip(ours, theirs)) if ours and theirs else float("nan")


def spread(values: list[float]) -> float:
    """(max - min) / median of the step times: how noisy the measurement was."""
    return (max(values) - min(values)) / statistics.median(values) if values else float("nan")


def step_times(case: Case, mode: str) -> list[float]:
    return case.train_s if mode == "train" else case.infer_s


def comparisons(case: Case) -> dict:
    """The case's ratios to the cases it is linked to: a compiled one to itself eager, our endpoint to the faster
    reference, a reference to our endpoint ("" where there is none)."""
    row = dict.fromkeys(COMPARISON_FIELDS, "")
    if case.eager is not None:
        row["compile_train_gain"] = paired_ratio(case.train_s, case.eager.train_s)
        row["compile_infer_gain"] = paired_ratio(case.infer_s, case.eager.infer_s)
    if case.references:
        against = []
        for mode in ("train", "infer"):
            fastest = min(case.references, key=lambda c: median_or_nan(step_times(c, mode)))
            row[f"{mode}_ratio"] = paired_ratio(step_times(case, mode), step_times(fastest, mode))
            row[f"{mode}_ratio_of_medians"] = (median_or_nan(step_times(fastest, mode))
                                               / median_or_nan(step_times(case, mode)))
            against.append(f"{mode}: {fastest.label}{' CL' if fastest.channels_last else ' NCHW'}")
        row["ratio_against"] = "; ".join(against)
    if case.ours is not None:
        for mode in ("train", "infer"):
            row[f"{mode}_ratio"] = paired_ratio(step_times(case.ours, mode), step_times(case, mode))
            row[f"{mode}_ratio_of_medians"] = (median_or_nan(step_times(case, mode))
                                               / median_or_nan(step_times(case.ours, mode)))
        row["ratio_against"] = f"ours: {case.ours.label}"
    return row


def model_rows(cases: list[Case], settings: Settings, peak: float, peak_mem_kind: str) -> list[dict]:
    """One row per case, in the CSV's fields; `peak` is the matmul peak FLOP/s."""
    rows = []
    for case in cases:
        train_med, infer_med = median_or_nan(case.train_s), median_or_nan(case.infer_s)
        train_ips, infer_ips = settings.batch / train_med, settings.batch / infer_med
        gfl = case.cost["gflops_conv_linear"]
        rows.append({
            "model": case.label, "source": case.source, "step": case.step,
            "roadmap": settings.roadmap if case.source == "ours" else "", "reference_of": case.arch or "",
            "device": settings.device.type, "device_name": device_name(settings.device), "dtype": settings.dtype,
            "batch": settings.batch, "input_size": settings.size, "in_chans": settings.in_chans,
            "num_classes": settings.num_classes, "channels_last": case.channels_last, "compile": case.compiled,
            "threads": torch.get_num_threads(), "optimizer": settings.optimizer, "train_imgs_per_s": train_ips,
            "infer_imgs_per_s": infer_ips, "train_s_median": train_med, "infer_s_median": infer_med,
            "train_s_spread": spread(case.train_s), "infer_s_spread": spread(case.infer_s),
            "peak_mem_mb": case.peak_mem_mb, "peak_mem_kind": peak_mem_kind, "gflops": case.cost["gflops"],
            "gflops_conv_linear": gfl, "params": case.cost["params"], "mfu": 2 * gfl * 1e9 * 3 * train_ips / peak,
            "infer_mfu": 2 * gfl * 1e9 * infer_ips / peak, "peak_tflops": peak / 1e12, "reps": settings.reps,
            "warmup": settings.warmup, "torch_version": torch.__version__, **comparisons(case),
        })
    return rows


def fmt(value, spec: str) -> str:
    if value == "" or value is None:
        return ""
    if isinstance(value, float) and value != value:
        return "n/a"
    return format(value, spec)


def print_models(rows: list[dict], settings: Settings, peak: float, peak_mem_kind: str,
                 loads: tuple[str, str]) -> None:
    """The model table and our/theirs lines; `loads` are the load averages before and after the timing."""
    device = settings.device
    print(f"\n## Benchmark: device {device.type} ({device_name(device)}), dtype {settings.dtype}, batch "
          f"{settings.batch}, input {settings.in_chans}x{settings.size}x{settings.size}, {settings.num_classes} "
          f"classes, channels_last "
          f"{'ours ' + str(settings.channels_last) + (', references both' if settings.reference else '')}, "
          f"compile {'False and True' if settings.compile else 'False'}")
    print(f"torch {torch.__version__}; optimizer {settings.optimizer}; {settings.reps} timed rounds after "
          f"{settings.warmup} warm-up, interleaved, medians; matmul peak {peak / 1e12:.3f} TFLOP/s ({settings.dtype}); "
          f"load average before {loads[0]}, after {loads[1]}")
    print("MFU = 2 x conv+linear GMACs x img/s (x3 for training) / matmul peak (fvcore counts kernel taps over zero"
          " padding that oneDNN skips: on small inputs such as 32x32 MFU can exceed 1). ratio = reference step time"
          " / ours, paired within rounds, median (> 1: ours faster); ours against the faster reference; a reference"
          " row: ours against it. peak MB: " + peak_mem_kind + ".\n")
    head = ["model", "CL", "compile", "train img/s", "infer img/s", "spread t/i", "peak MB", "GFLOPs", "c+l GFLOPs",
            "params M", "MFU train", "MFU infer", "train ratio", "infer ratio"]
    if settings.compile:
        head += ["compile gain t/i"]
    lines = []
    for r in rows:
        line = [r["model"], "y" if r["channels_last"] else "n", "y" if r["compile"] else "n",
                fmt(r["train_imgs_per_s"], ".1f"), fmt(r["infer_imgs_per_s"], ".1f"),
                f"{fmt(r['train_s_spread'], '.2f')}/{fmt(r['infer_s_spread'], '.2f')}",
                fmt(r["peak_mem_mb"], ".0f"), fmt(r["gflops"], ".3f"), fmt(r["gflops_conv_linear"], ".3f"),
                fmt(r["params"] / 1e6, ".2f"), fmt(r["mfu"], ".3f"), fmt(r["infer_mfu"], ".3f"),
                fmt(r["train_ratio"], ".2f"), fmt(r["infer_ratio"], ".2f")]
        if settings.compile:
            line.append(f"{fmt(r['compile_train_gain'], '.2f')}/{fmt(r['compile_infer_gain'], '.2f')}"
                        if r["compile"] else "")
        lines.append(line)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                                enumerate(zip(line, widths))) + " |")
    ours = [r for r in rows if r["source"] == "ours" and r["train_ratio"] != ""]
    if ours:
        print("\nour/theirs (ours against the faster reference; > 1: ours faster):")
        for r in ours:
            same = all(r["params"] == o["params"] for o in rows if o["source"] != "ours"
                       and o["reference_of"] == r["reference_of"])
            print(f"  {r['model']:<16} {'CL' if r['channels_last'] else 'NCHW'}{' +compile' if r['compile'] else ''}"
                  f" vs {r['reference_of']}: train {r['train_ratio']:.2f} (ratio of medians "
                  f"{r['train_ratio_of_medians']:.2f}), infer {r['infer_ratio']:.2f} (ratio of medians "
                  f"{r['infer_ratio_of_medians']:.2f}) [{r['ratio_against']}]"
                  f"{'' if same else '  (parameter counts differ: not the same network)'}")


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def print_loader(speed: LoaderSpeed, settings: Settings) -> None:
    cfg = speed.cfg
    print(f"\n## Data pipeline of the default run ({' '.join(settings.data_override) or 'no overrides'}): "
          f"{cfg.data.name}, step {cfg.step}, recipe {cfg.recipe.name}, batch {speed.batch}, "
          f"{speed.workers} worker(s) (runtime.workers={cfg.runtime.workers}), input "
          f"{cfg.data.channels}x{cfg.data.image_size}x{cfg.data.image_size}, device {settings.device.type} "
          f"({device_name(settings.device)}), channels_last {cfg.runtime.channels_last}, "
          f"amp {speed.amp}, compile {cfg.runtime.compile}")
    print(f"first batch (worker start-up) {speed.first_batch_s:.2f} s; {speed.batches} batches timed for the loader, "
          f"{speed.steps} steps per training measurement; load average {load_average()}\n")
    print("| what | img/s |\n|---|---|")
    for what, ips in [("DataLoader alone", speed.loader_imgs_per_s),
                      ("train steps, batch in memory (mean of before/after)", speed.in_memory_imgs_per_s),
                      ("train steps fed by the DataLoader", speed.fed_imgs_per_s)]:
        print(f"| {what} | {ips:.1f} |")
    print(f"\nloader / model training throughput: {speed.loader_imgs_per_s / speed.in_memory_imgs_per_s:.2f} (> 1: "
          f"the loader alone outpaces training); fed / in-memory training: "
          f"{speed.fed_imgs_per_s / speed.in_memory_imgs_per_s:.2f} (1.00: not limited by the data pipeline)")
