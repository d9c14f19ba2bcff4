"""What a method costs, worked out without running it for real: tunable parameters,
accelerator memory of a training step, inference FLOPs, size of the saved state."""
