"""Training: data windows and batches, schedule, checkpoints, the training loop."""
