"""The roadmap's cost table: one row per step, in roadmap order, counted by fvcore.

    python -m analysis.flops [--roadmap tiny|base] [--size 224] [--csv FILE]
"""

import argparse
import sys
import time

import pandas as pd

import roadmap
from roadmap.flops import count_cost


def input_overrides(in_chans: int, num_classes: int, size: int) -> list[str]:
    """Overrides for a model of this input and output: the data's channels (with a mean and std per channel, which
    the model never sees), classes and image size."""
    per_channel = "[" + ",".join(["0.5"] * in_chans) + "]"
    return [f"data.channels={in_chans}", f"data.mean={per_channel}", f"data.std={per_channel}",
            f"data.num_classes={num_classes}", f"data.image_size={size}"]


def cost_table(roadmap_name: str = "tiny", size: int = 224, in_chans: int = 3, num_classes: int = 1000) -> pd.DataFrame:
    rows = []
    for step in roadmap.STEPS:
        cfg = roadmap.compose([f"roadmap={roadmap_name}", f"+step={step.name}",
                               *input_overrides(in_chans, num_classes, size)])
        cost = count_cost(roadmap.build_model(cfg.model), in_chans, size)
        rows.append({"roadmap": roadmap_name, "step": step.name, "adopted": step.adopted, "input_size": size, **cost})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m analysis.flops", description=__doc__.splitlines()[0])
    parser.add_argument("--roadmap", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (default 224, the paper's)")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        table = cost_table(args.roadmap, args.size)
    except roadmap.ConfigError as e:
        sys.exit(f"error: {e}")
    print(f"Cost of the {args.roadmap} roadmap at {args.size}x{args.size}, batch 1, 3 channels, 1000 classes, "
          f"model in eval mode (fvcore; 1 GFLOP = 1e9 multiply-accumulates):")
    print("  gflops = fvcore total (conv, linear, norms, pooling); gflops_conv_linear = conv + linear only, the "
          "paper's GFLOPs; activations_m = fvcore activation count, millions")
    print(table.drop(columns=["roadmap", "input_size"]).to_string(
        index=False, formatters={"params": "{:,}".format, "gflops": "{:.4f}".format,
                                 "gflops_conv_linear": "{:.4f}".format, "activations_m": "{:.2f}".format}))
    print(f"({time.perf_counter() - start:.1f} s)")
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
