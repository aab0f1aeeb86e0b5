"""How fast each roadmap step trains and infers, beside the reference implementations, in one run.

    python -m analysis.benchmark [--steps resnet sep_downsample ...] [--reference] [--batch 128] [--size 32]
                                 [--device cpu|cuda] [--dtype fp32|bf16] [--channels-last | --no-channels-last]
                                 [--compile] [--csv FILE] [--data-pipeline [--image-folder] [--train-imgs-per-s N]]

`settings` (the command line, frozen), `models` (what is timed), `machine` (device name, load, matmul peak),
`timing` (throughput and memory), `pipeline` (data loading), `report` (rows, tables, CSV), `__main__` (the CLI).
"""
