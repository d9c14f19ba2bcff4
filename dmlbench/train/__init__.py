"""Training: the loop, optimizers and schedules, checkpoints, several processes,
measurement of a running step (time, memory), and pretraining the glyph backbone."""
