"""Training: the loop (Trainer, run), data loading, the recipe's optimizer, schedule and mixing, and processes
under torchrun or SLURM. May import every layer below: records, configuration, network, bottom helpers."""
