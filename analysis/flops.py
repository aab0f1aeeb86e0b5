"""The roadmap's cost table: one row per step, in roadmap order, counted by fvcore.

    python -m analysis.flops [--roadmap tiny|base] [--size 224] [--budget paper] [--config-dir DIR] [--steps A,B]
        [--csv FILE]

The paper's networks by default: its budget (`budget=paper`: no layer scale before the last step, which the
Fashion-MNIST proxy adds to every AdamW step), 3 channels, 1000 classes. `--config-dir DIR` adds the steps of one's
own folder (as run.py's `--config-dir`), each right after its parent.
"""

import argparse
import sys
import time
import warnings

import pandas as pd

# fvcore scripts a loss function when imported (by roadmap.network.flops), which recent PyTorch warns about.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

import roadmap  # noqa: E402
from roadmap.config import input_overrides, user_config_dirs  # noqa: E402
from roadmap.network.flops import count_cost  # noqa: E402
from roadmap.network.steps import load_steps  # noqa: E402


def cost_table(roadmap_name: str = "tiny", size: int = 224, in_chans: int = 3, num_classes: int = 1000,
               budget: str = "paper", config_dir=None, step_names=None) -> pd.DataFrame:
    """The cost of each step's network (`step_names`: those only), as `budget` builds it; `config_dir`: a folder
    of one's own configs whose steps count too."""
    steps = load_steps(config_dirs=user_config_dirs([], config_dir))
    unknown = set(step_names or ()) - {step.name for step in steps}
    if unknown:
        raise roadmap.ConfigError(f"--steps: {', '.join(sorted(unknown))}: no such step; choose among "
                                  f"{', '.join(step.name for step in steps)}")
    rows = []
    for step in steps:
        if step_names and step.name not in step_names:
            continue
        cfg = roadmap.compose([f"roadmap={roadmap_name}", f"budget={budget}", f"+step={step.name}",
                               *input_overrides(in_chans, num_classes, size)], config_dir=config_dir)
        cost = count_cost(roadmap.build_model(cfg.model), in_chans, size)
        rows.append({"roadmap": roadmap_name, "step": step.name, "adopted": step.adopted, "builtin": step.builtin,
                     "input_size": size, **cost})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m analysis.flops", description=__doc__.splitlines()[0])
    parser.add_argument("--roadmap", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (default 224, the paper's)")
    parser.add_argument("--budget", default="paper",
                        help="the budget whose networks to count (default paper; the proxies add layer scale)")
    parser.add_argument("--config-dir", help="a folder of one's own configs: the steps of its step/ count too")
    parser.add_argument("--steps", type=lambda text: text.split(","), help="count these steps only: A,B,...")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        table = cost_table(args.roadmap, args.size, budget=args.budget, config_dir=args.config_dir,
                           step_names=args.steps)
    except roadmap.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"Cost of the {args.roadmap} roadmap's networks with budget={args.budget} at {args.size}x{args.size}, "
          f"batch 1, 3 channels, 1000 classes, model in eval mode (fvcore; 1 GFLOP = 1e9 multiply-accumulates):")
    print("  gflops = fvcore total (conv, linear, norms, pooling); gflops_conv_linear = conv + linear only, the "
          "paper's GFLOPs; activations_m = fvcore activation count, millions; builtin = false: a step of your own")
    print(table.drop(columns=["roadmap", "input_size"]).to_string(
        index=False, formatters={"params": "{:,}".format, "gflops": "{:.4f}".format,
                                 "gflops_conv_linear": "{:.4f}".format, "activations_m": "{:.2f}".format}))
    print(f"({time.perf_counter() - start:.1f} s)")
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
