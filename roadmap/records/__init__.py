"""A run's record: result.json and metrics.csv, checkpoints, the trained config's fingerprint, metric trackers.
May import the configuration, the network and the bottom helpers; nothing of training."""
